// KernelConfiguration: the knobs of one kernel run, with defaults chosen and
// justified in docs/architecture.md and docs/preemption.md.

/// How a kernel runs: how many workers, how long a time slice, how big a
/// stack, and whether threads are preempted.
///
/// ```swift
/// var config = KernelConfiguration()             // the defaults described below
/// config.workers = min(2, KernelConfiguration.usableCPUs)
/// config.timeSlice = .milliseconds(5)            // more interactive among equals
/// config.defaultStackSize = 128 * 1024           // deep recursion in every thread
/// config.preemption = true
/// config.blockedHandoffAfter = .milliseconds(1)  // hand on a blocked processor sooner
/// config.maxOSThreads = 4096
/// config.debugServer = false                     // no gt-ps socket
/// try Kernel.run(config) { serveRequest() }
/// ```
public struct KernelConfiguration: Sendable {
    /// Worker OS threads that run green threads. Default: the CPUs this
    /// process may use (affinity mask, capped by a cgroup CPU quota).
    public var workers: Int
    /// CPU time a thread runs before another of its priority gets the CPU.
    /// Default 10 ms: long enough that preemption costs under 0.1% (one
    /// preemption is a few microseconds), short enough for interactive
    /// latency among equals. The kernel's scheduler tick (4 ms at 250 Hz)
    /// rounds CPU-time timers, so slices below 4 ms act as about 4 ms.
    public var timeSlice: Duration
    /// Stack bytes per thread when `spawn` is not given a size. Default
    /// 64 KiB: Swift's first `print` with interpolation needs 11.5 KiB,
    /// Foundation's `String(format:)` 16 KiB, and a preemption frame about
    /// 3.5 KiB; 64 KiB leaves room for real work. Untouched pages cost no
    /// memory, so a parked thread still costs one or two pages.
    public var defaultStackSize: Int
    /// Whether time slices are enforced by SIGVTALRM. `false` gives a
    /// cooperative kernel: threads switch only when they yield or block.
    public var preemption: Bool
    /// No longer used: a preempted thread keeps its OS thread, so every
    /// point outside the kernel's own critical sections is safe and no
    /// preemption is retried (docs/preemption.md). Kept so programs that
    /// set it still build.
    @available(*, deprecated, message: "preemptions are no longer deferred for unsafe code; this has no effect")
    public var preemptionRetry: Duration {
        get { .microseconds(50) }
        set {}
    }
    /// How long a processor's OS thread may stay blocked in the OS (a
    /// blocking system call, a pthread lock held by a preempted thread, a
    /// semaphore) before the monitor gives the processor to another OS
    /// thread, so the other green threads keep running. Default 2 ms: the
    /// monitor looks at busy processors every half of it, which costs about
    /// 0.1% of a CPU here (docs/preemption.md); Go's sysmon retakes after
    /// 20 us to 10 ms.
    public var blockedHandoffAfter: Duration = .milliseconds(2)
    /// Most OS threads the kernel runs at once. A green thread preempted
    /// while others wait keeps its OS thread until it runs again, so CPU-bound
    /// threads cost one OS thread each (about 16 KiB of kernel memory and a
    /// page or two of stack). Past the cap, a preemption that needs a spare OS
    /// thread waits until one is free (the running thread keeps the CPU).
    /// Default 16,384: enough for gt-fairness's 10,000 spinners, far below
    /// this machine's threads-max.
    public var maxOSThreads: Int = 16_384
    /// Whether the kernel serves snapshots to `gt-ps` on a Unix domain
    /// socket ($XDG_RUNTIME_DIR/gt/<pid>.sock, else /tmp/gt-<uid>/), from an
    /// OS thread of its own (docs/gt-ps.md). Default true; the environment
    /// variable GT_DEBUG_SERVER=0 turns it off too. Set after `init`:
    /// `var c = KernelConfiguration(); c.debugServer = false`.
    public var debugServer: Bool = true

    /// A configuration; every argument has the default described at its
    /// property. `Kernel.run` checks the values and throws
    /// `KernelError.invalidConfiguration` for one out of range.
    ///
    /// ```swift
    /// try Kernel.run(KernelConfiguration(workers: 1, preemption: false)) { serveRequest() }   // cooperative
    /// let spare = KernelConfiguration(workers: max(1, KernelConfiguration.usableCPUs - 1))  // leave a CPU free
    /// ```
    public init(
        workers: Int = KernelConfiguration.usableCPUs,
        timeSlice: Duration = .milliseconds(10),
        defaultStackSize: Int = 64 * 1024,
        preemption: Bool = true
    ) {
        self.workers = workers
        self.timeSlice = timeSlice
        self.defaultStackSize = defaultStackSize
        self.preemption = preemption
    }

    /// The CPUs this process may use: its affinity mask, capped by a cgroup
    /// CPU quota when one is set.
    public static var usableCPUs: Int { UsableCPUs.count() }

    func validate() throws {
        guard workers >= 1 && workers <= 1024 else {
            throw KernelError.invalidConfiguration("workers must be 1...1024, got \(workers)")
        }
        guard timeSlice > .zero else {
            throw KernelError.invalidConfiguration("timeSlice must be positive, got \(timeSlice)")
        }
        guard blockedHandoffAfter > .zero else {
            throw KernelError.invalidConfiguration("blockedHandoffAfter must be positive, got \(blockedHandoffAfter)")
        }
        guard maxOSThreads >= workers + 1 else {
            throw KernelError.invalidConfiguration("maxOSThreads must exceed workers (\(workers)), got \(maxOSThreads)")
        }
        guard defaultStackSize >= GreenThread.minimumStackSize else {
            throw GreenThreadError.invalidStackSize(defaultStackSize, minimum: GreenThread.minimumStackSize)
        }
    }
}
