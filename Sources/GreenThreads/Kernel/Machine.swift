// Machine: one OS thread of the kernel (Go's M). It runs green threads while
// it holds a Processor; its own OS stack is its scheduling context, where
// the loop below picks the next ready thread, hands its processor to a
// parked thread's Machine, idles, or waits as a spare. Its per-OS-thread C
// state (gt_worker_state, in TLS) is what the signal handlers read.
//
// Roles, all visible in snapshots:
//   running  holds a processor and runs a green thread (or idles on it);
//   parked   sleeps inside the SIGVTALRM handler of the green thread it was
//            running when preempted, until the scheduler picks that thread
//            again and hands it a processor (park.c): the thread keeps its
//            OS thread, so nothing the thread left in OS-thread state
//            (lock owners, thread-locals) is ever seen by another thread;
//   spare    holds nothing and waits to be handed a processor by a parking
//            Machine (the monitor keeps a few ready, Monitor.swift);
//   blocked  the monitor took its processor while it was blocked in the OS;
//            it runs its green thread without a processor until it parks
//            (at its next tick, library entry, or the monitor's signal).
//
// Field guards: `current`, `previous`, `previousAction` and `resumeNext` are
// touched by this Machine's OS thread with the kernel lock held (others read
// `current` under the lock). `idleContext` is touched only by this OS
// thread, inside critical sections. `retiring` and `exited` take the lock.
import CGreenCore
import Glibc

final class Machine: @unchecked Sendable {
    /// Set when registered with the kernel (kernel lock).
    @exclusivity(unchecked) var id = -1
    /// The kernel, unretained; the switch path uses it through
    /// _withUnsafeGuaranteedRef (an unowned(unsafe) load costs a
    /// retain/release pair per use).
    let kernelRef: Unmanaged<KernelCore>
    var kernel: KernelCore { kernelRef.takeUnretainedValue() }

    /// This Machine's OS-thread state; valid from `attach` to `detach`.
    @exclusivity(unchecked) var state: UnsafeMutablePointer<gt_worker_state>!
    // Unretained: the kernel's registry keeps every live thread alive, and a
    // thread is reaped only after it stopped being current and previous.
    // (Strong or unowned references here cost retain/release pairs on every
    // switch: the switch path reads them through _withUnsafeGuaranteedRef.)
    @exclusivity(unchecked) var currentRef: Unmanaged<GreenThread>?
    @exclusivity(unchecked) var previousRef: Unmanaged<GreenThread>?
    @exclusivity(unchecked) var previousAction: SwitchAction = .none
    /// A parked thread picked by a cooperative switch: once this Machine is
    /// back in its scheduling context, its processor goes to that thread's
    /// own Machine.
    @exclusivity(unchecked) var resumeNext: Unmanaged<GreenThread>?
    /// Set by a thread that blocked at this level with only lower threads
    /// ready: the scheduling context lingers before it picks (`linger`).
    @exclusivity(unchecked) var lingerLevel = -1

    /// The thread it runs, for everything off the switch path.
    var current: GreenThread? {
        get { currentRef?.takeUnretainedValue() }
        // Not Optional.map: unspecialized (a debug build) it asks the Swift
        // runtime for metadata, under the kernel lock (Kernel/Rehearsal.swift).
        set { if let t = newValue { currentRef = Unmanaged.passUnretained(t) } else { currentRef = nil } }
    }
    /// Saved stack pointer of the scheduling context while a green thread runs.
    let idleContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Asked by the monitor to leave the spare pool (kernel lock).
    @exclusivity(unchecked) var retiring = false
    /// Its scheduling loop has returned; the OS thread may be joined (kernel lock).
    @exclusivity(unchecked) var exited = false

    /// The pthread the kernel started for it; nil for Kernel.run's caller.
    var osThread: OSThread?
    /// Its pthread_t, for its CPU-time clock (set by `attach`).
    @exclusivity(unchecked) var pthread: UInt = 0
    /// Its OS stack, from the library's guarded slabs; nil for the caller.
    var stack: GreenStack?
    private var altStack: UnsafeMutableRawPointer?
    private var altStackSize = 0
    private var previousAltStack = stack_t()
    private var savedState = gt_worker_state()

    init(kernel: KernelCore) {
        kernelRef = Unmanaged.passUnretained(kernel)
        idleContext = .allocate(capacity: 1)
        idleContext.initialize(to: nil)
    }

    deinit { idleContext.deallocate() }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    static func from(_ state: UnsafeMutablePointer<gt_worker_state>) -> Machine {
        Unmanaged<Machine>.fromOpaque(state.pointee.machine).takeUnretainedValue()
    }

    @inline(__always)
    static func ref(_ state: UnsafeMutablePointer<gt_worker_state>) -> Unmanaged<Machine> {
        Unmanaged<Machine>.fromOpaque(state.pointee.machine)
    }

    /// The processor this Machine holds (park.c keeps the authoritative
    /// word). Stable while the kernel lock is held by this Machine.
    var processor: Processor? { processorRef?.takeUnretainedValue() }

    /// The same, unretained, for the switch path.
    @inline(__always)
    var processorRef: Unmanaged<Processor>? {
        guard let state, let raw = gt_held_processor(state) else { return nil }
        return Unmanaged<Processor>.fromOpaque(raw)
    }

    /// The index of the processor it holds, for snapshots.
    var index: Int? { processor?.index }

    /// Whether it is parked with a preempted thread (atomic read).
    var isParked: Bool {
        guard let state else { return false }
        return gt_atomic_load_u32(UnsafeMutableRawPointer(state).advanced(by: Machine.parkedOffset)
            .assumingMemoryBound(to: UInt32.self)) != 0
    }

    private static let parkedOffset = MemoryLayout<gt_worker_state>.offset(of: \gt_worker_state.parked)!

    /// The runtime's view of `base_exclusivity` (an opaque buffer).
    private static func baseAccesses(_ ws: UnsafeMutablePointer<gt_worker_state>) -> UnsafeMutablePointer<CChar> {
        let offset = MemoryLayout<gt_worker_state>.offset(of: \gt_worker_state.base_exclusivity)!
        return (UnsafeMutableRawPointer(ws) + offset).assumingMemoryBound(to: CChar.self)
    }

    // MARK: Attaching the OS thread

    /// Makes the calling OS thread this Machine: TLS state, alternate signal
    /// stack, Swift's exclusivity TLS, and the preemption tick.
    func attach() throws {
        let ws = gt_self()!
        savedState = ws.pointee
        ws.pointee = gt_worker_state()
        ws.pointee.machine = opaque
        ws.pointee.tid = Int32(gt_sys_gettid().value)
        pthread = UInt(pthread_self())
        ws.pointee.preemption_enabled = kernel.configuration.preemption ? 1 : 0
        state = ws
        var mem: UnsafeMutableRawPointer?
        var size = 0
        if gt_altstack_setup(&mem, &size, &previousAltStack) == 0 {
            altStack = mem
            altStackSize = size
        }
        ws.pointee.errno_location = gt_errno_location()
        // Set aside the exclusivity accesses the OS thread has open, so that
        // from here its access set is empty outside green threads and holds
        // only the running thread's inside one: a switch then restores a
        // thread's set only if it saved one (Scheduler.swift). This first
        // use also allocates the runtime's TLS, outside any signal handler.
        swift_task_exitThreadLocalContext(Machine.baseAccesses(ws))
        // SIGVTALRM must reach this thread (a host thread may block it).
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGVTALRM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        ws.pointee.is_worker = 1
        if kernel.configuration.preemption {
            let slice = kernel.configuration.timeSlice.nanosecondsClamped
            // Tick at a quarter slice (at least 1 ms), so a thread switched
            // in mid-period still gets a whole slice within a quarter. The
            // kernel checks CPU-time timers on its scheduler tick (4 ms at
            // 250 Hz); periods that pass between checks arrive as one signal
            // with an overrun count, which the handler adds up.
            let tick = max(1_000_000, slice / 4)
            ws.pointee.periods_per_slice = UInt32(max(1, (slice + tick - 1) / tick))
            ws.pointee.tick_ns = tick
            if gt_worker_timers_start(ws, tick) != 0 {
                // The Machine stays attached and runs threads, unpreempted.
                throw KernelError.system(call: "timer_create", errno: gt_errno_get())
            }
        }
    }

    /// Undoes `attach` on the calling OS thread.
    func detach() {
        let ws = gt_self()!
        if getenv("GT_DEBUG_WORKERS") != nil {
            gt_write_stderr("machine \(id): ticks=\(ws.pointee.ticks) preemptions=\(ws.pointee.preemptions) deferrals=\(ws.pointee.deferrals) parks=\(ws.pointee.parks) no_spare=\(ws.pointee.no_spare)\n")
        }
        gt_worker_timers_stop(ws)
        ws.pointee.is_worker = 0
        gt_altstack_teardown(altStack, altStackSize, &previousAltStack)
        altStack = nil
        swift_task_enterThreadLocalContext(Machine.baseAccesses(ws))
        ws.pointee = savedState
        state = nil
    }

    /// Runs the Machine on the calling OS thread until the kernel shuts down
    /// or the monitor retires it as a spare. `handing` runs once attached,
    /// to give it a processor (or none: it starts as a spare).
    func attachAndRun(handing: () -> Void) {
        do { try attach() } catch {
            // Without its tick this Machine still runs threads, unpreempted;
            // say so rather than stop the kernel.
            gt_write_stderr("GreenThreads: OS thread \(id): \(error)\n")
        }
        handing()
        runLoop()
        detach()
        kernel.withCriticalLock {
            exited = true
            kernel.exitedMachines += 1
        }
        kernel.wakeMonitor()  // to be joined
    }

    // MARK: The scheduling context

    /// The scheduling context's loop. Holds one critical count throughout.
    func runLoop() {
        let ws = gt_enter_critical()!
        precondition(ws.pointee.critical == 1, "OS thread \(id) started inside a critical section")
        gt_unpin_self(ws)  // handed a processor before it first ran
        kernel.lock.lock()
        while !kernel.shuttingDown {
            if let resume = resumeNext?.takeUnretainedValue() {
                // A cooperative switch picked a parked thread: give it our processor.
                resumeNext = nil
                kernel.resumeParked(resume, from: self)
                continue
            }
            guard let p = processor else {
                if !waitAsSpare() { break }
                continue
            }
            if let from = ws.pointee.handoff_from {
                // A Machine parked with its preempted thread and gave us its processor.
                ws.pointee.handoff_from = nil
                kernel.requeueParked(Machine.from(from), on: p, by: self)
            }
            if lingerLevel >= 0 {
                let level = lingerLevel
                lingerLevel = -1
                linger(on: p, for: level)
            }
            if let picked = kernel.pickNext(p) {
                kernel.noteProcessorBusy()
                if picked._withUnsafeGuaranteedRef({ $0.isBound }) {
                    kernel.resumeParked(picked.takeUnretainedValue(), from: self)
                } else {
                    kernel.switchTo(picked, on: self, action: .none)  // returns with the lock released
                    kernel.lock.lock()
                }
                continue
            }
            idle(on: p, ws)
        }
        kernel.lock.unlock()
        _ = gt_exit_critical()
    }

    /// Nothing is ready: sleep on the processor (its futex, or the
    /// netpoller's epoll set) until `makeReady` wakes it,
    /// the monitor retakes nothing (an idle processor is never retaken), or
    /// the kernel stops. Kernel lock held; returns with it held.
    private func idle(on p: Processor, _ ws: UnsafeMutablePointer<gt_worker_state>) {
        // Readiness that arrived while every processor was busy, if the
        // poller thread did not watch (Netpoller.swift).
        if let poller = kernel.poller, poller.pollNow(for: p) { return }
        if spinForWork(on: p) { return }
        p.isIdle = true
        kernel.idleProcessors.append(p)
        if kernel.checkForDeadlock() { return }
        while p.isIdle && !kernel.shuttingDown {
            // With I/O in use, one idle processor waits in epoll itself, so
            // readiness runs its threads here without a hand-over (Netpoller.swift).
            if let w = kernel.poller, w.waitWhileIdle(p) { continue }
            let seq = gt_atomic_load_u32(&ws.pointee.park_word)
            kernel.lock.unlock()
            gt_park_wait(ws, seq, -1)
            kernel.lock.lock()
        }
        if p.isIdle {  // shutting down while idle
            p.isIdle = false
            kernel.idleProcessors.removeEvery { $0 === p }
        }
    }

    /// Go's spinning rule: before it sleeps, one processor at a time looks
    /// for work for a few microseconds without the lock, and while one does,
    /// `makeReady` wakes no one (the spinner will take the thread). A program
    /// that spawns or wakes threads every few microseconds then pays no
    /// futex wake-up (and no sleep) per thread: measured on spawn+join of
    /// 100k threads, 2.8 futex calls per spawn before. Returns whether work
    /// (or shutdown) was found; kernel lock held on entry and on return.
    private func spinForWork(on p: Processor) -> Bool {
        guard kernel.spinningProcessors == 0, !kernel.shuttingDown else { return false }
        kernel.spinningProcessors += 1
        kernel.lock.unlock()
        let deadline = gt_clock_monotonic_ns() + Machine.spinNanoseconds
        var paused = 0
        // The ready level is published with every run-queue change
        // (gt_set_highest_ready); a stale read costs one more look.
        while !kernel.stopRequested.load(ordering: .relaxed) {
            if gt_highest_ready() >= 0 && !leftToItsWaker() { break }
            Machine.pauseBetweenLooks()
            paused += Machine.pausesPerLook
            if paused >= 64 {
                paused = 0
                if gt_clock_monotonic_ns() > deadline { break }
                // Give the CPU away every few microseconds: with more
                // runnable OS threads than CPUs (the monitor, a parked
                // thread's Machine, another program) the thread that will
                // make work ready may be waiting for this very CPU, and a
                // spin that kept it for its whole OS slice would delay the
                // work it waits for. Alone on its CPU the call returns at
                // once (a system call every 64 pauses, a few microseconds).
                // Measured on spawn+join of 100k threads, 2 workers, a
                // shared machine: 1.78 s -> 1.48 s (medians of 9).
                _ = gt_sys_sched_yield()
            }
        }
        kernel.lock.lock()
        kernel.spinningProcessors -= 1
        guard !kernel.runQueue.isEmpty || kernel.shuttingDown else { return false }
        // It takes one thread; if more wait and no one else looks, wake a
        // sleeper to look (it spins in turn).
        if kernel.runQueue.count > 1, let other = kernel.idleProcessors.popLast() { kernel.wake(other) }
        return true
    }

    /// Pauses between two looks at the published ready level. The running
    /// processors write that word twice per hand-off (a push, then the pop
    /// of the thread they switch to), and every look by a spinner takes the
    /// line from their cache: looking after every pause cost a channel
    /// ping-pong on 2 workers 118-142 ns per hop; every 16 pauses (about
    /// 0.35 us here, at most a few us on CPUs with slow pauses, against
    /// 5-50 us to wake a sleeping processor), 104-114 ns.
    static let pausesPerLook = 16

    @inline(__always)
    static func pauseBetweenLooks() {
        for _ in 0..<pausesPerLook { gt_cpu_relax() }
    }

    /// Ready work was just handed off (`KernelCore.readiedForHandOff`): a
    /// green thread on a processor made it ready at a level no higher than
    /// its own, and will often block a moment later, so that its own
    /// processor runs it on the CPU whose cache holds both. Waits up to
    /// `handOffGraceNanoseconds` for that; returns true if the work was
    /// taken meanwhile (the spinner looks on), false if it is still there
    /// for this processor to take. Go's spinning threads wait the same way
    /// before they steal a processor's `runnext`. Measured on a channel
    /// ping-pong, 2 workers (with `pausesPerLook`): taking at once moved a
    /// thread to the other processor in 1.1-1.5% of hops and woke a
    /// sleeping processor every 100-200 hops, 104-119 ns per hop; with the
    /// wait, 0.05-0.1% and one in 1,500, 80-81 ns (one worker: 73-77 ns).
    private func leftToItsWaker() -> Bool {
        guard kernel.readiedForHandOff.load(ordering: .relaxed) else { return false }
        let end = gt_clock_monotonic_ns() + Machine.handOffGraceNanoseconds
        while gt_highest_ready() >= 0 {
            Machine.pauseBetweenLooks()
            if gt_clock_monotonic_ns() > end { return false }
        }
        return true
    }

    /// How long a spinner leaves handed-off work to its waker's processor: a
    /// few hand-offs' time, far below a time slice or the wake-up latency.
    /// A waker that keeps running delays its thread's start by at most this.
    static let handOffGraceNanoseconds: Int64 = 2_000

    /// How long a processor spins for work before it sleeps: a few times the
    /// gap between spawns in a spawning loop, small against a time slice.
    static let spinNanoseconds: Int64 = 50_000

    /// A thread blocked at `level` with only lower threads ready, while
    /// threads at `level` wait on I/O (Scheduler.shouldLinger): before this
    /// processor starts (or resumes, by a hand-off) a lower thread, it sleeps
    /// up to `lingerNanoseconds` on its park word for the next event of
    /// `level`. A `makeReady` of any thread above what was ready when it
    /// began (the I/O event's thread, or a thread between the two levels,
    /// which must not wait for the linger to end) claims it and wakes it
    /// instead of preempting anyone, so a request-reply server beside
    /// low-priority CPU work takes its next request here with one futex
    /// wake-up, not a preemption (a signal, a park and two OS-thread
    /// hand-offs). It sleeps rather than spins: a spinner that gave its CPU
    /// away with sched_yield came back late (the OS runs whoever took the
    /// CPU to the end of its slice) and the quick route's p99 rose by a
    /// fifth; one that never yielded kept the CPU from the threads that
    /// make the events. The lower threads lose at most `lingerNanoseconds`
    /// per block, and none while the CPU goes to another OS thread.
    /// Kernel lock held on entry and on return.
    private func linger(on p: Processor, for level: Int) {
        // Asked again: the kernel lock was let go across the switch here.
        guard kernel.shouldLinger(from: level), !kernel.shuttingDown else { return }
        let ws: UnsafeMutablePointer<gt_worker_state> = state
        p.lingersAbove = kernel.runQueue.highestLevel  // >= 0: shouldLinger found a lower thread
        kernel.lingeringProcessors.append(p)
        let seen = gt_atomic_load_u32(&ws.pointee.park_word)
        kernel.lock.unlock()
        gt_park_wait(ws, seen, Machine.lingerNanoseconds)
        kernel.lock.lock()
        if p.lingersAbove < 0 {
            p.lingersServed &+= 1  // claimed by makeReady
        } else {
            p.lingersAbove = -1
            kernel.lingeringProcessors.removeEvery { $0 === p }
            p.lingersTimedOut &+= 1
        }
    }

    /// How long `linger` waits: a few times the gap between requests that
    /// 32 connections bring to one processor at 60k requests/s, small against
    /// a time slice. Measured with gt-http beside its heavy route: 50 us and
    /// 200 us gave the same throughput; 50 us costs the low threads less.
    static let lingerNanoseconds: Int64 = 50_000

    /// Waits in the spare pool until a parking Machine hands this one a
    /// processor (true) or the monitor retires it or the kernel stops
    /// (false). Kernel lock held; returns with it held.
    private func waitAsSpare() -> Bool {
        let ws: UnsafeMutablePointer<gt_worker_state> = state
        gt_spare_push(ws)
        while true {
            let seq = gt_atomic_load_u32(&ws.pointee.park_word)
            if processor != nil { return true }
            if retiring || kernel.shuttingDown {
                if gt_spare_remove(ws) != 0 { return false }
                // A parking Machine popped us just now: its processor is on the way.
                retiring = false
            }
            kernel.lock.unlock()
            gt_park_wait(ws, seq, -1)
            kernel.lock.lock()
        }
    }
}
