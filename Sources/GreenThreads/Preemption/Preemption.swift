// Preemption: how a running green thread is interrupted at the end of its
// time slice, or when a higher-priority thread becomes ready, and switched
// out at a safe point.
//
// The design
// ----------
// Each worker OS thread has a POSIX timer on its own CPU-time clock
// (timer_create(CLOCK_THREAD_CPUTIME_ID) with SIGEV_THREAD_ID), ticking every
// quarter slice. The tick delivers SIGVTALRM to that worker only. The handler
// (CGreenCore/preempt.c) runs on the interrupted green thread's own stack and
// preempts when the thread has run a whole slice (time-stamp counter since it
// was switched in), or when a waker asked for it (`gt_request_preemption`,
// a tgkill from the thread that made a higher-priority thread ready).
//
// Safe points. A preemption is taken only when
//   1. the worker is not in a kernel critical section (`critical == 0`: the
//      scheduler's own code, holding the kernel lock, never is preempted);
//   2. the thread is not in `GreenThread.withoutPreemption` or in a lazy
//      global's initializer (swift_once, wrapped in CGreenCore/once.c);
//   3. the interrupted PC is outside the core's gt_core_text section and
//      outside libc, the dynamic loader, the vdso, the Swift runtime and
//      overlays, Foundation, Dispatch, libunwind, libstdc++ and libgcc_s: a
//      sorted table of their code ranges, built once per kernel with
//      dl_iterate_phdr and binary-searched in the handler without locks or
//      allocation. Code there may hold a lock (malloc's arenas and its
//      non-atomic per-thread cache, stdio's recursive FILE lock, the loader
//      lock, the runtime's metadata caches) that the next thread on this
//      worker could need: preempting there would deadlock the worker.
// Otherwise the preemption stays pending. It is honoured when the critical
// section or no-preempt region ends (a cooperative yield then); when the
// unsafe code returns to the program (x86-64: the handler replaces the return
// address into the first program frame with a trampoline that yields,
// CGreenCore/hijack.c); or by a one-shot CLOCK_MONOTONIC retry timer
// (50 us, then backing off): CPU-time timers only fire on the kernel's
// scheduler tick (4 ms at 250 Hz). Measured: two threads calling memset in a
// loop were preempted once a second with retries alone, 124 times with the
// return-address hijack.
//
// The switch: from inside the handler. When the kernel delivers SIGVTALRM it
// has already saved the interrupted thread's entire register file (general
// registers, flags, the full FP/SIMD state including AVX-512, and the signal
// mask) in the signal frame on the thread's stack. The handler calls the
// scheduler, which switches to the next thread with the ordinary cooperative
// switch. The preempted thread's "saved context" is then just a cooperative
// switch point inside its own handler; when it is resumed it returns from
// the handler and sigreturn restores everything exactly. The rejected
// alternative, Go's injected call (rewrite the signal context to call an
// assembly stub that saves every register itself, stepping over the 128-byte
// red zone), needs per-architecture save code for every vector extension
// present and future; the in-handler switch gets them from the kernel. Its
// costs: the handler runs on the green stack (no SA_ONSTACK for SIGVTALRM;
// only the SIGSEGV handler uses the worker's alternate stack), so every stack
// needs room for a signal frame (about 3.5 KiB with AVX-512), and the next
// thread must have SIGVTALRM unblocked (the kernel blocks it for the
// handler): a thread resumed through a cooperative switch unblocks it
// (gt_after_switch_signals, one system call, paid only after a preemption),
// a thread resumed inside its own handler gets its mask back from sigreturn.
//
// Invariants
//   - A switch happens only at critical count 1 with the kernel lock held;
//     the resumed context lowers its own count (Scheduler.swift). The handler
//     raises the count before it switches and lowers it after it resumes, so
//     a second SIGVTALRM that lands between the resumption and sigreturn is
//     deferred (the handler's code is itself in gt_core_text), never nested.
//   - Per green thread, the switch saves and restores errno and Swift's
//     exclusivity access set (swift_task_exit/enterThreadLocalContext), the
//     two pieces of per-OS-thread state that code interrupted at an arbitrary
//     point may have live.
//   - A thread preempted at a safe point holds no runtime or libc lock, so it
//     may resume on any worker.
//   - SA_RESTART: system calls interrupted by a tick restart. The sleeps,
//     which never restart, are wrapped (CGreenCore/eintr.c) so that our
//     signals never surface as EINTR.
import CGreenCore
import Glibc

enum Preemption {
    /// Installs the fault and preemption handlers and the hooks, and builds
    /// the unsafe-PC table. Throws if the host owns SIGVTALRM.
    static func install(enabled: Bool) throws {
        gt_install_hooks(gt_hooks(preempt: preemptionHook, yield_pending: yieldPendingHook))
        if gt_fault_handler_install() != 0 {
            throw KernelError.system(call: "sigaction(SIGSEGV)", errno: gt_errno_get())
        }
        _ = gt_tsc_frequency()  // measured once, before any handler needs it
        guard enabled else { return }
        _ = gt_unsafe_ranges_build()
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
