// Kernel: the public entry point. `Kernel.run` turns the calling OS thread
// into worker 0, starts the other workers and the monitor, runs the body as
// the main green thread, and returns once every green thread has finished.
//
// One kernel runs at a time in a process (the signal handlers and the
// per-OS-thread state are process-wide); kernels may run one after another.
import CGreenCore
import Glibc
import Synchronization

/// Why `Kernel.run` could not run or finish.
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

        let kernel = KernelCore(configuration: configuration)
        kernel.workers = (0..<configuration.workers).map { Worker(index: $0, kernel: kernel) }
        KernelCore.running.withLock { $0 = kernel }
        defer { KernelCore.running.withLock { $0 = nil } }
        let completion = JoinCompletion<T>()
        let main = try kernel.createThread(name: "main", priority: .normal,
                                           stackSize: configuration.defaultStackSize) {
            completion.result = Result { try body() }
        }
        kernel.withCriticalLock { kernel.start(main) }
        // Issue 6: trace requests, crash/SIGQUIT dumps and the gt-ps snapshot
        // server (Debug/DebugSession.swift); stopped before `running` is cleared.
        let debugging = DebugSession.start(kernel)
        defer { debugging.stop() }

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
        var others: [OSThread] = []
        var startError: (any Error)?
        for worker in kernel.workers.dropFirst() {
            do {
                others.append(try OSThread.start(name: "gt-worker-\(worker.index)", blockingPreemptionSignal: false) {
                    do { try worker.attach() } catch {
                        // Without its timers this worker still runs threads,
                        // unpreempted; say so rather than stop the kernel.
                        gt_write_stderr("GreenThreads: worker \(worker.index): \(error)\n")
                    }
                    worker.runLoop()
                    worker.detach()
                })
            } catch {
                startError = error
                break
            }
        }
        let worker0 = kernel.workers[0]
        if startError == nil {
            do { try worker0.attach() } catch {
                startError = error
                worker0.detach()
            }
        }
        if startError != nil {
            // Too few OS threads to run as configured: shut down cleanly.
            kernel.withCriticalLock { kernel.beginShutdown() }
        } else {
            worker0.runLoop()
            worker0.detach()
        }
        for t in others { t.join() }
        kernel.stopServices()  // the netpoller and the blocking pool (IO/)
        kernel.withCriticalLock { kernel.beginShutdown() }
        monitor.join()
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
