// Kernel: the public entry point. `Kernel.run` makes the calling OS thread
// the first of the kernel's OS threads (holding processor 0), starts one
// for each other processor and the monitor, runs the body as the main green
// thread, and returns once every green thread has finished.
//
// One kernel runs at a time in a process (the signal handlers and the
// per-OS-thread state are process-wide); kernels may run one after another.
import CGreenCore
import Glibc
import Synchronization

/// Why `Kernel.run` could not run or finish.
///
/// ```swift
/// do {
///     try Kernel.run(KernelConfiguration(workers: 0)) { serveRequest() }
/// } catch KernelError.invalidConfiguration(let what) {
///     print(what)                 // "workers must be 1...1024, got 0"
/// } catch KernelError.signalInUse {
///     try Kernel.run(KernelConfiguration(preemption: false)) { serveRequest() }
/// } catch let error as KernelError {
///     print(error)                // a sentence saying what to change
/// }
/// ```
public enum KernelError: Error, CustomStringConvertible {
    /// `Kernel.run` was called while a kernel is running in this process.
    case alreadyRunning
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// The host program already handles the preemption signal; the kernel
    /// does not take it over. Run with `preemption: false`, or free the signal.
    case signalInUse(signal: Int32)
    /// The process runs with a CET shadow stack, which hand-written context
    /// switches break.
    case shadowStackEnabled
    /// A system call failed while starting the kernel.
    case system(call: String, errno: Int32)
    /// Every live thread is blocked and nothing can wake any of them.
    case deadlock(DeadlockReport)

    /// What went wrong and, where there is one, what to do about it.
    public var description: String {
        switch self {
        case .alreadyRunning:
            return "a kernel is already running in this process: Kernel.run cannot nest or run concurrently"
        case .invalidConfiguration(let what):
            return "invalid kernel configuration: \(what)"
        case .signalInUse(let signal):
            return "signal \(signal) (SIGVTALRM) already has a handler in this program; "
                + "GreenThreads needs it for preemption (or use KernelConfiguration(preemption: false))"
        case .shadowStackEnabled:
            return "the process runs with a CET shadow stack, which green-thread switches cannot support; "
                + "run without it (GLIBC_TUNABLES=glibc.cpu.x86_shstk=off)"
        case .system(let call, let errno):
            return "\(call) failed while starting the kernel: \(String(cString: strerror(errno))) (errno \(errno))"
        case .deadlock(let report):
            return report.description
        }
    }
}

/// The green-thread kernel.
///
/// ```swift
/// let total = try Kernel.run {
///     let parts = try (0..<4).map { i in
///         try GreenThread.spawn { (i * 1000..<(i + 1) * 1000).reduce(0, +) }
///     }
///     return try parts.map { try $0.join() }.reduce(0, +)
/// }
/// ```
public enum Kernel {
    private static let active = Atomic<Bool>(false)

    /// Whether a kernel is running in this process.
    ///
    /// ```swift
    /// if !Kernel.isRunning {
    ///     try Kernel.run { serveRequest() }
    /// }
    /// ```
    public static var isRunning: Bool { active.load(ordering: .acquiring) }

    /// Runs `body` as the main green thread of a new kernel and returns its
    /// result once every green thread has finished (threads spawned and never
    /// joined included). The calling OS thread becomes worker 0.
    ///
    /// `body` is `sending`: once preempted it may resume on another worker
    /// OS thread, so it is not isolated to the caller's actor.
    ///
    /// - Throws: `KernelError.alreadyRunning` if a kernel is running;
    ///   `KernelError.deadlock` if every thread blocks forever; the body's
    ///   own error; configuration and system errors.
    ///
    /// ```swift
    /// let configuration = KernelConfiguration(workers: 2, timeSlice: .milliseconds(5))
    /// let sum = try Kernel.run(configuration) {
    ///     let half = try GreenThread.spawn { (1...500).reduce(0, +) }
    ///     return (501...1000).reduce(0, +) + (try half.join())
    /// }
    /// print(sum)                      // 500500
    /// ```
    public static func run<T>(_ configuration: KernelConfiguration = KernelConfiguration(),
                              _ body: sending @escaping () throws -> T) throws -> T {
        try configuration.validate()
        guard active.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            throw KernelError.alreadyRunning
        }
        defer { active.store(false, ordering: .releasing) }
        try Preemption.checkShadowStack()
        try Preemption.install(enabled: configuration.preemption)
        defer { Preemption.uninstall() }
        // Only preemption parks threads, so only then can a thread hold a
        // runtime lock that the scheduler would wait for (Rehearsal.swift).
        if configuration.preemption && Rehearsal.isDue {
            Rehearsal.isDue = false
            _ = try? runKernel(Rehearsal.configuration(like: configuration), rehearsal: true) {
                Rehearsal.run(workers: configuration.workers)
            }
        }
        return try runKernel(configuration, rehearsal: false, body)
    }

    /// One kernel, from its first OS thread to the last. The rehearsal's
    /// has no trace, dump or snapshot services.
    private static func runKernel<T>(_ configuration: KernelConfiguration, rehearsal: Bool,
                                     _ body: sending @escaping () throws -> T) throws -> T {
        let kernel = KernelCore(configuration: configuration)
        kernel.isRehearsal = rehearsal
        kernel.processors = (0..<configuration.workers).map { Processor(index: $0, kernel: kernel) }
        kernel.reserveSchedulerStorage()
        try kernel.openMonitorDescriptors()
        gt_park_setup(kernel.monitorEventFD)
        // After the last Machine is joined: a descriptor number kept past
        // close could be the program's next file.
        defer { gt_park_setup(-1) }
        KernelCore.running.withLock { $0 = kernel }
        defer { KernelCore.running.withLock { $0 = nil } }
        // For the lock audit, only where the rule matters: with preemption
        // (only it parks threads), and not in the rehearsal (nothing of the
        // program runs during it).
        if configuration.preemption && !rehearsal { kernel.lock.noteAsRunningKernelLock() }
        defer { KernelLock.noteNoKernelRunning() }
        let completion = JoinCompletion<T>()
        let main = try kernel.createThread(name: "main", priority: .normal,
                                           stackSize: configuration.defaultStackSize) {
            completion.result = Result { try body() }
        }
        kernel.withCriticalLock { kernel.start(main) }
        // Issue 6: trace requests, crash/SIGQUIT dumps and the gt-ps snapshot
        // server (Debug/DebugSession.swift); stopped before `running` is cleared.
        let session = rehearsal ? nil : DebugSession.start(kernel)
        defer { session?.stop() }

        let monitor = try OSThread.start(name: "gt-monitor", blockingPreemptionSignal: true) {
            gt_set_timer_slack_ns(1)
            // Wake-ups are only as prompt as the monitor gets a CPU: with
            // workers spinning on every CPU, the OS may run it milliseconds
            // late. Where permitted (CAP_SYS_NICE or RLIMIT_RTPRIO), it runs
            // SCHED_FIFO at the lowest real-time priority; it only ever
            // sleeps on a futex and does microseconds of work per wake-up.
            // GT_MONITOR_FIFO=0 keeps it an ordinary thread.
            let optOut = getenv("GT_MONITOR_FIFO").map { String(cString: $0) == "0" } ?? false
            if !optOut { _ = gt_raise_to_realtime(1) }
            kernel.runMonitor()
        }
        let keeper = try OSThread.start(name: "gt-keeper", blockingPreemptionSignal: true) { kernel.runKeeper() }
        // The calling OS thread becomes the first Machine, holding processor
        // 0; the others get Machines of their own; the monitor starts spares.
        let caller = Machine(kernel: kernel)
        kernel.withCriticalLock { kernel.register(caller) }
        var startError: (any Error)?
        for p in kernel.processors.dropFirst() {
            do { try kernel.startMachine(holding: p) } catch {
                startError = error
                break
            }
        }
        // One spare per processor from the start, so that the first
        // preemptions need not wait for the monitor to start them.
        if startError == nil && configuration.preemption {
            for _ in kernel.processors {
                kernel.withCriticalLock { kernel.startingMachines += 1 }
                kernel.startSpareMachine()
            }
            // Until they are in the pool (microseconds; bounded at 100 ms), or
            // the kernel is already ending: a short body can finish on the
            // other processors meanwhile, and spares of an ending kernel never
            // join the pool (every such run waited the whole 100 ms).
            var waits = 0
            while waits < 1000 && Int(gt_spare_count()) < kernel.processors.count
                && !kernel.withCriticalLock({ kernel.shuttingDown }) {
                _ = gt_sys_nanosleep(100_000)
                waits += 1
            }
        }
        if startError == nil {
            do { try caller.attach() } catch {
                startError = error
                caller.detach()
            }
        }
        if startError != nil {
            // Too few OS threads to run as configured: shut down cleanly.
            kernel.withCriticalLock { kernel.beginShutdown() }
        } else {
            kernel.withCriticalLock { kernel.hand(kernel.processors[0], to: caller) }
            caller.runLoop()
            caller.detach()
        }
        kernel.withCriticalLock {
            caller.exited = true
            kernel.exitedMachines += 1
            kernel.beginShutdown()
        }
        monitor.join()
        keeper.join()
        // The keeper joined the Machines that exited before it stopped;
        // the rest are joined here.
        while let m = kernel.withCriticalLock({ kernel.machines.popLast() }) {
            if m !== caller { kernel.joinMachine(m) }
        }
        kernel.stopServices()  // the netpoller and the blocking pool (IO/)
        StackPool.shared.trimExcess()
        kernel.runQueue.deallocate()

        if let startError {
            kernel.abandonBlockedThreads()
            throw startError
        }
        if let report = kernel.deadlockReport {
            kernel.abandonBlockedThreads()
            throw KernelError.deadlock(report)
        }
        guard let result = completion.result else {
            preconditionFailure("kernel finished but the main green thread left no result")
        }
        return try result.get()
    }
}
