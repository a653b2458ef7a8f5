// Preemption: how a running green thread is interrupted at the end of its
// time slice, or when a higher-priority thread becomes ready, without ever
// letting another green thread see the OS-thread state it leaves behind.
//
// The design
// ----------
// The kernel runs green threads on OS threads ("Machines", Go's M) that
// hold one of `workers` processors (Go's P: the right to run green code).
// Each Machine has a POSIX timer on its own CPU-time clock
// (timer_create(CLOCK_THREAD_CPUTIME_ID) with SIGEV_THREAD_ID), ticking
// every quarter slice, which delivers SIGVTALRM to that Machine only. A
// waker that made a higher-priority thread ready signals the Machine with
// tgkill (`gt_request_preemption`). The handler (CGreenCore/preempt.c) runs
// on the interrupted green thread's own stack.
//
// The rule. No green thread runs on an OS thread whose state belongs to an
// asynchronously preempted one. Whatever the interrupted code holds that is
// owned by the OS thread — a Synchronization.Mutex or pthread mutex (the
// owner is the tid), a recursive lock's count, flockfile, swift_once's lock,
// errno, Swift's exclusivity access set, any library's thread-locals —
// stays with that OS thread. So the handler does not switch: it parks the
// Machine, right there inside the handler, and hands its processor to a
// spare Machine (CGreenCore/park.c), which requeues the preempted thread
// "bound" to its parked Machine and goes on scheduling. When the scheduler
// picks the thread again, the processor goes back to its Machine, which
// returns from the handler; sigreturn restores every register, the signal
// mask and the FP state. Because of the rule, every point outside the
// kernel's own critical sections is a safe point: no table of unsafe code,
// no deferral inside libc or the runtime, no wrapper around swift_once.
//
// A preemption waits only
//   1. inside a kernel critical section (`critical > 0`),
//   2. inside `GreenThread.withoutPreemption` (`no_preempt > 0`), or
//   3. inside the memory allocator (CGreenCore/allocator.c): the kernel's
//      own code allocates under its lock, and must never wait for an arena
//      lock held by a parked thread;
// 1 and 2 are honoured when the section ends (gt_exit_critical returns 1; the
// thread parks exactly as in the handler: the caller may hold OS locks, so
// even this is not a cooperative switch), 3 at the next tick. When no spare Machine is ready
// the preemption stays pending and the monitor starts spares and asks again.
//
// Cooperative switches (yield, sleep, join, green waits, exit) are
// well-defined points and stay user-space switches on one Machine; they save
// and restore errno and the exclusivity access set per green thread
// (Scheduler.swift), since the next thread on that Machine may be any other.
// Holding an OS lock across a cooperative switch (blocking on a green
// primitive inside Mutex.withLock) remains unsafe, like holding a lock
// across `await`.
//
// Blocking in the OS. A Machine blocked in a system call, or on a pthread
// lock held by a parked thread, keeps its processor from running anything.
// The monitor (Kernel/Monitor.swift) retakes such a processor after
// `blockedHandoffAfter` and gives it to another Machine; the blocked one
// parks when it returns to green code without a processor.
//
// Invariants
//   - A switch happens only at critical count 1 with the kernel lock held;
//     the resumed context lowers its own count (Scheduler.swift).
//   - The handler never switches and never calls into Swift: it touches
//     atomics, the park lock and futexes only (async-signal-safe), so it is
//     safe whatever the interrupted code holds.
//   - The kernel lock's holder waits for nothing a parked thread may hold:
//     no allocation, no user code under it (Kernel/KernelCore.swift).
//   - SA_RESTART: system calls interrupted by a tick restart. The sleeps,
//     which never restart, are wrapped (CGreenCore/eintr.c) so that our
//     signals never surface as EINTR.
import CGreenCore
import Glibc

enum Preemption {
    /// Installs the fault and preemption handlers and the hooks, and builds
    /// the unsafe-PC table. Throws if the host owns SIGVTALRM.
    static func install(enabled: Bool) throws {
        if gt_fault_handler_install() != 0 {
            throw KernelError.system(call: "sigaction(SIGSEGV)", errno: gt_errno_get())
        }
        _ = gt_tsc_frequency()  // measured once, before any handler needs it
        guard enabled else { return }
        gt_allocator_ranges_build()
        if gt_preemption_install() != 0 {
            let e = gt_errno_get()
            if e == EBUSY { throw KernelError.signalInUse(signal: SIGVTALRM) }
            throw KernelError.system(call: "sigaction(SIGVTALRM)", errno: e)
        }
    }

    static func uninstall() {
        gt_preemption_uninstall()
    }

    /// Refuses to run under a CET shadow stack (x86-64): gt_switch changes
    /// stacks without the shadow stack knowing, so the first return would
    /// fault.
    static func checkShadowStack() throws {
        if gt_shadow_stack_enabled() != 0 { throw KernelError.shadowStackEnabled }
    }
}

/// Whether hazard fix `fix` is on. Release builds keep every fix with no
/// test at all (the switch path asks this twice per switch); debug builds,
/// which the test hosts are, let a regression test switch one off
/// (`gt_fix_set`) to show it fails without it.
@inline(__always)
func hazardFix(_ fix: Int) -> Bool {
    #if DEBUG
    return gt_fix_is_enabled(Int32(fix)) != 0
    #else
    return true
    #endif
}
