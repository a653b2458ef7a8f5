// GreenThread: the control block of one green thread (the Swift half; the
// C half, gt_thread_core, lives at the top of its stack) and the public API
// to spawn, identify, prioritize, yield and sleep.
//
// Field guards: fields marked "kernel lock" are read and written only with
// the kernel lock held (they are @exclusivity(unchecked): the lock, not the
// runtime's access tracking, keeps them consistent, and the runtime's
// tracking would cost a call on every scheduler step). "Own thread" fields
// are touched only by the thread itself.
import CGreenCore
import Glibc
import Synchronization

/// A green thread: a thread scheduled by GreenThreads in user space, with a
/// small stack, preempted by time slices and scheduled by priority.
///
/// ```swift
/// try Kernel.run {
///     let worker = try GreenThread.spawn(name: "worker", priority: .high) {
///         (1...1_000).reduce(0, +)
///     }
///     print(try worker.join())   // 500500
///     let t = worker.thread
///     print(t.id, t.name, t.priority, t.state)   // <id> worker 24 finished
///     print(t.cpuTime, t.statistics.switches)    // its CPU time and how often it ran
/// }
///
/// func report(_ thread: GreenThread) {
///     if thread.isBoosted {                      // a waiter of higher priority lends it its own
///         print("\(thread.name) runs at \(thread.effectivePriority), its own is \(thread.priority)")
///     }
/// }
/// ```
public final class GreenThread: @unchecked Sendable, CustomStringConvertible {
    /// Unique within the process.
    public let id: UInt64
    /// The name given at spawn, or "thread-<id>".
    public var name: String { givenName ?? "thread-\(id)" }
    /// Kept optional so that spawning an unnamed thread formats no string.
    let givenName: String?

    /// What a thread is doing, as reported by `state` and snapshots.
    ///
    /// ```swift
    /// func describe(_ thread: GreenThread) -> String {
    ///     switch thread.state {
    ///     case .ready, .running: return "on its way"
    ///     case .blocked: return "waits on \(thread.waitingOn.map { "\($0)" } ?? "something")"
    ///     case .sleeping: return "asleep"
    ///     case .finished: return "done"
    ///     }
    /// }
    /// ```
    public enum State: String, Sendable, Codable {
        /// Waiting for a worker to run it.
        case ready
        /// Running on a worker now.
        case running
        /// Waiting on a mutex, condition, semaphore, channel or join.
        case blocked
        /// In `GreenThread.sleep(for:)`.
        case sleeping
        /// Returned or threw; its result waits in its `JoinHandle`.
        case finished
    }

    // --- scheduling (kernel lock) ---
    @exclusivity(unchecked) var basePriorityLevel: Int
    /// Highest priority inherited from waiters (priority inheritance), or -1.
    @exclusivity(unchecked) var inheritedPriorityLevel = -1
    @exclusivity(unchecked) var effectivePriorityLevel: Int {
        // Mirrored for the SIGVTALRM handler's "is anyone of my level
        // waiting" check (preempt.c), which cannot take the kernel lock.
        didSet { core?.pointee.effective_level = Int32(effectivePriorityLevel) }
    }
    @exclusivity(unchecked) var runState: State = .ready
    /// Run-queue links, unretained (RunQueue.swift: no reference counting
    /// on the switch path).
    @exclusivity(unchecked) var runNext: Unmanaged<GreenThread>?
    @exclusivity(unchecked) var runPrev: Unmanaged<GreenThread>?
    /// The run-queue level this thread is queued at, or -1 when not queued.
    @exclusivity(unchecked) var queuedLevel = -1
    /// The OS thread running this thread, while it runs.
    @exclusivity(unchecked) unowned(unsafe) var runningOn: Machine?
    /// While preempted: the OS thread parked with it, which must get the
    /// processor when the thread is picked again (Scheduler.swift).
    /// (Unretained storage: the switch path tests it on every pick.)
    @exclusivity(unchecked) var boundMachineRef: Unmanaged<Machine>?
    var boundMachine: Machine? {
        get { boundMachineRef?.takeUnretainedValue() }
        // Not Optional.map: unspecialized (a debug build) it asks the Swift
        // runtime for metadata, under the kernel lock (Kernel/Rehearsal.swift).
        set { if let m = newValue { boundMachineRef = Unmanaged.passUnretained(m) } else { boundMachineRef = nil } }
    }
    var isBound: Bool { boundMachineRef != nil }

    // --- registry of live threads (kernel lock) ---
    @exclusivity(unchecked) unowned(unsafe) var registryNext: GreenThread?
    @exclusivity(unchecked) unowned(unsafe) var registryPrev: GreenThread?

    // --- waiting (kernel lock) ---
    /// What the thread is blocked on while it is blocked or sleeping, nil
    /// otherwise: a small value with no strings or references counted
    /// (WaitRecord.swift); the public `WaitRecord` is built from it when read.
    /// A deadline or a cancellation ends an interruptible wait through
    /// `wait.target.withdraw` (Monitor.swift, Cancellation.swift).
    @exclusivity(unchecked) var wait: ThreadWait?
    /// Why the last block ended.
    @exclusivity(unchecked) var wakeReason: WakeReason = .none
    /// Generation of the thread's timer entry: stale heap entries are skipped.
    @exclusivity(unchecked) var timerGeneration: UInt64 = 0
    /// Threads blocked in join() on this one.
    @exclusivity(unchecked) var joiners = JoinerList()
    /// The next thread in the joiner list this thread is on (kernel lock):
    /// a thread joins one thread at a time, so one link serves.
    @exclusivity(unchecked) var nextJoiner: Unmanaged<GreenThread>?

    // --- synchronization kit (Sync/; added for GreenMutex and friends) ---
    /// This thread's entry in the wait queue of the sync object it is
    /// blocked on, or nil (kernel lock). Unretained: it is `ownWaiter`.
    @exclusivity(unchecked) unowned(unsafe) var syncWaiter: SyncWaiter?
    /// The one wait-queue entry this thread ever uses, made at its first
    /// wait on a sync object and reused by every later one: a thread is
    /// queued on at most one object at a time (own thread). Held +1 by
    /// hand (released in deinit), so that handing it out counts nothing.
    @exclusivity(unchecked) private var ownWaiter: Unmanaged<SyncWaiter>?
    /// Held priority-inheritance mutexes that have waiters: their top
    /// waiters make up `inheritedPriorityLevel` (kernel lock).
    @exclusivity(unchecked) var contendedMutexes: [GreenMutex] = []
    /// Head of the robust list of every mutex this thread holds, released
    /// with `ownerDied` if the thread ends (own thread: the uncontended lock
    /// path links it without a lock; the exit path reads it on this thread).
    /// (Unmanaged: no retain/release on that path; a listed mutex is alive.)
    @usableFromInline @exclusivity(unchecked) var heldMutexes: Unmanaged<GreenMutex>?

    // --- stack and C control block (kernel lock; nil once finished) ---
    @exclusivity(unchecked) var stack: GreenStack?
    @exclusivity(unchecked) var core: UnsafeMutablePointer<gt_thread_core>?
    /// The control block's counters, kept after the stack is gone: raw,
    /// because building a ThreadStatistics (its Durations) at every reap
    /// was 2% of a spawn+join; it is built when someone asks.
    @exclusivity(unchecked) var finalCounters = FinalCounters()
    struct FinalCounters {
        var cpuTicks: UInt64 = 0, switches: UInt64 = 0, preemptions: UInt64 = 0,
            deferrals: UInt64 = 0, tickNanoseconds: UInt64 = 0
    }

    // --- own thread ---
    @exclusivity(unchecked) var body: (() -> Void)?
    /// GreenThreadLocal values, by slot. Emptied by `tearDownLocals` when
    /// the body returns, so that dropping the thread object (at reap, under
    /// the kernel lock, or wherever its last reference goes: a JoinHandle,
    /// a stale timer entry) runs no deinit of a program's value.
    @exclusivity(unchecked) var locals: [UInt64: Any] = [:]
    /// Set once the locals are torn down: a value set after that (by a
    /// local's own deinit) is dropped at once instead of stored.
    @exclusivity(unchecked) var localsTornDown = false

    // --- any thread ---
    /// Set once by `cancel()` (Cancellation.swift); never cleared.
    let cancellationRequested = Atomic<Bool>(false)

    /// The kernel that runs this thread, unretained (it outlives its
    /// threads): `kernelRef` for paths that must count no references.
    let kernelRef: Unmanaged<KernelCore>
    var kernel: KernelCore { kernelRef.takeUnretainedValue() }

    init(id: UInt64, name: String?, priority: Priority, kernel: KernelCore) {
        self.id = id
        self.givenName = name
        self.basePriorityLevel = priority.level
        self.effectivePriorityLevel = priority.level
        self.kernelRef = Unmanaged.passUnretained(kernel)
    }

    /// `ownWaiter`, made on first use. Called by the thread itself before
    /// it takes the kernel lock to wait (so the one allocation is not made
    /// under the lock); the caller then queues it with `SyncWaiter.begin`.
    func ownSyncWaiter() -> Unmanaged<SyncWaiter> {
        if let w = ownWaiter { return w }
        let w = Unmanaged.passRetained(SyncWaiter(thread: self))
        ownWaiter = w
        return w
    }

    deinit { ownWaiter?.release() }

    /// "green thread 7 'worker'".
    public var description: String { "green thread \(id) '\(name)'" }

    /// Rounds of `tearDownLocals`, as POSIX's PTHREAD_DESTRUCTOR_ITERATIONS
    /// (4 in glibc): a deinit that keeps setting locals cannot loop forever.
    static let localTeardownRounds = 4

    /// Drops this thread's GreenThreadLocal values, on the thread itself,
    /// once its body has returned (Scheduler's runThreadBody), outside the
    /// kernel lock: their deinits may use any green primitive. A deinit
    /// may set a local again; those values are dropped in the next round,
    /// and after the last round as soon as they are set. Own thread.
    func tearDownLocals() {
        for round in 0..<GreenThread.localTeardownRounds {
            if round == GreenThread.localTeardownRounds - 1 { localsTornDown = true }
            guard !locals.isEmpty else { break }
            // Swap out first: a deinit that runs below then finds an empty
            // table, not the one being destroyed.
            var dropped: [UInt64: Any] = [:]
            swap(&dropped, &locals)
            dropped.removeAll()
        }
        localsTornDown = true
    }

    // MARK: Identity and state

    /// The green thread running this code.
    ///
    /// Outside `Kernel.run` there is none: calling this there stops the
    /// program with a message saying so. Use `GreenThread.isInKernel` to check.
    ///
    /// ```swift
    /// print("running on \(GreenThread.current.name)")
    /// ```
    public static var current: GreenThread {
        guard let owner = gt_current_owner() else {
            fatalError("GreenThread.current called outside a green thread: run this code inside Kernel.run { ... }")
        }
        return Unmanaged<GreenThread>.fromOpaque(owner).takeUnretainedValue()
    }

    /// Whether the calling code runs on a green thread.
    ///
    /// ```swift
    /// func who() -> String {
    ///     GreenThread.isInKernel ? GreenThread.current.name : "a plain OS thread"
    /// }
    /// ```
    public static var isInKernel: Bool { gt_on_green_thread() != 0 }

    // The getters below read fields that the kernel lock guards, so they
    // take it (withSyncLock: this kernel's lock from a green thread, the
    // running kernel's from an OS thread, none once no kernel runs). A
    // plain read would race with the scheduler on another worker (a data
    // race ThreadSanitizer reports), and `isBoosted` would compare a base
    // and an effective level from two different moments. Each is a
    // snapshot: it may change right after the read.

    /// The base priority, as given at spawn or by `setPriority(_:)`.
    public var priority: Priority { withSyncLock { _ in Priority(unchecked: basePriorityLevel) } }

    /// The priority the scheduler uses: the base priority, raised while the
    /// thread holds a mutex that a higher-priority thread waits for.
    public var effectivePriority: Priority { withSyncLock { _ in Priority(unchecked: effectivePriorityLevel) } }

    /// Whether `effectivePriority` is raised above `priority` by inheritance.
    public var isBoosted: Bool { withSyncLock { _ in effectivePriorityLevel > basePriorityLevel } }

    /// The thread's state.
    public var state: State { withSyncLock { _ in runState } }

    /// Changes the base priority. Takes effect at once: a ready thread moves
    /// to its new run-queue level, a running thread that now ranks below a
    /// ready one is preempted, and inherited priorities along a chain of
    /// mutexes are recomputed.
    ///
    /// ```swift
    /// GreenThread.current.setPriority(.high)   // this request is interactive
    /// ```
    public func setPriority(_ priority: Priority) {
        kernel.withCriticalLock { kernel.changeBasePriority(of: self, to: priority.level) }
    }

    /// CPU time spent running, measured with the time-stamp counter at each
    /// switch (no system call on the switch path).
    public var cpuTime: Duration { statistics.cpuTime }

    /// Counters of this thread's scheduling history (a snapshot, read
    /// under the kernel lock: the counters live in the C control block at
    /// the top of the stack, which is freed when the thread is reaped).
    public var statistics: ThreadStatistics { withSyncLock { _ in statisticsKernelLocked } }

    /// `statistics` for callers that hold the kernel lock.
    var statisticsKernelLocked: ThreadStatistics {
        let c = countersKernelLocked
        var s = ThreadStatistics()
        s.cpuTicks = c.cpuTicks
        s.switches = c.switches
        s.preemptions = c.preemptions
        s.deferredPreemptions = c.deferrals
        s.tickedCPUTime = .nanoseconds(Int64(c.tickNanoseconds))
        return s
    }

    /// The counters, live from the control block or kept after the end. Kernel lock held.
    var countersKernelLocked: FinalCounters {
        guard let core else { return finalCounters }
        return FinalCounters(cpuTicks: core.pointee.cpu_ticks, switches: core.pointee.switches,
                             preemptions: core.pointee.preemptions, deferrals: core.pointee.deferrals,
                             tickNanoseconds: core.pointee.cpu_tick_ns)
    }

    // MARK: Spawning

    /// The smallest stack a thread may ask for. Swift's runtime needs more
    /// stack than C (11.5 KiB for the first `print` with interpolation) and a
    /// preemption signal frame takes about 3.5 KiB more.
    ///
    /// ```swift
    /// try Kernel.run {
    ///     let leaf = try GreenThread.spawn(stackSize: GreenThread.minimumStackSize) { process(1) }   // shallow work
    ///     try leaf.join()
    /// }
    /// ```
    public static let minimumStackSize = 32 * 1024

    /// Starts a new green thread running `body`.
    ///
    /// - Parameters:
    ///   - name: shown in stack traces, `gt-ps` and overflow messages.
    ///   - priority: its base priority (default `.normal`).
    ///   - stackSize: bytes of stack (default `KernelConfiguration.defaultStackSize`),
    ///     at least `minimumStackSize`.
    ///   - body: what the thread runs; its result or error is the handle's.
    /// - Returns: a handle to wait for the thread's result.
    ///
    /// `body` is `sending`: it may run on another worker OS thread at the same
    /// time as the spawner, so it cannot share non-Sendable state with it,
    /// and it is not isolated to the spawner's actor (a closure formed in
    /// `@MainActor` code would otherwise trap on a worker other than the main
    /// thread).
    /// - Throws: `GreenThreadError.notInKernel` outside a green thread (from
    ///   other threads and tasks, spawn through a `Kernel.Handle`, see
    ///   `Kernel.start`), `.invalidStackSize` for a stack below the minimum.
    ///
    /// ```swift
    /// func nesting(_ n: Int) -> Int { n == 0 ? 0 : 1 + nesting(n - 1) }   // a frame per level
    /// try Kernel.run {
    ///     let parser = try GreenThread.spawn(name: "parser", priority: .low, stackSize: 256 * 1024) {
    ///         nesting(2_000)             // deep recursion: a larger stack
    ///     }
    ///     print(try parser.join())       // 2000
    /// }
    /// ```
    @discardableResult
    @inlinable  // specialized in the caller: no generic metadata lookup per spawn
    public static func spawn<T>(
        name: String? = nil,
        priority: Priority = .normal,
        stackSize: Int? = nil,
        _ body: sending @escaping () throws -> T
    ) throws -> JoinHandle<T> {
        let completion = JoinCompletion<T>()
        // Captured as a `let`: the `sending` parameter itself is captured in a
        // box whose every read is a dynamic exclusivity check (a TLS lookup).
        let run = body
        let thread = try spawnThread(name: name, priority: priority, stackSize: stackSize) {
            completion.complete(Result { try run() })
        }
        return JoinHandle(thread: thread, completion: completion)
    }

    /// The type-independent part of `spawn`: validate, create, start.
    @usableFromInline
    static func spawnThread(name: String?, priority: Priority, stackSize: Int?,
                            _ body: @escaping () -> Void) throws -> GreenThread {
        guard gt_on_green_thread() != 0 else { throw GreenThreadError.notInKernel(operation: "GreenThread.spawn") }
        let kernel = GreenThread.current.kernel
        let size = stackSize ?? kernel.configuration.defaultStackSize
        guard size >= minimumStackSize else {
            throw GreenThreadError.invalidStackSize(size, minimum: minimumStackSize)
        }
        let thread = try kernel.createThread(name: name, priority: priority, stackSize: size, body: body)
        kernel.withCriticalLock { kernel.start(thread) }
        return thread
    }

    // MARK: Yielding and sleeping

    /// Gives the CPU to another ready thread of the same or higher priority,
    /// if there is one. Outside a kernel it yields the OS thread
    /// (`sched_yield`).
    ///
    /// ```swift
    /// import Synchronization
    ///
    /// let done = Atomic<Bool>(false)
    /// try Kernel.run {
    ///     try GreenThread.spawn { serveRequest(); done.store(true, ordering: .releasing) }
    ///     while !done.load(ordering: .acquiring) { GreenThread.yield() }   // let it run meanwhile
    /// }
    /// ```
    public static func yield() {
        if !KernelCore.yieldCurrent() { _ = gt_sys_sched_yield() }
    }

    /// Suspends the calling thread for at least `duration` without occupying
    /// its worker (a timer heap, not a spin). Outside a kernel it sleeps the
    /// OS thread (`nanosleep`).
    ///
    /// A cancelled thread (`cancel()`) does not sleep: the call returns at
    /// once, and a sleep in progress ends when the thread is cancelled.
    /// ```swift
    /// for _ in 0..<10 {
    ///     serveRequest()
    ///     GreenThread.sleep(for: .milliseconds(10))   // the worker runs other threads meanwhile
    /// }
    /// ```
    public static func sleep(for duration: Duration) {
        let ns = duration.nanosecondsClamped
        guard gt_on_green_thread() != 0 else {
            if ns > 0 { _ = gt_sys_nanosleep(ns) }
            return
        }
        guard ns > 0 else { return yield() }
        if GreenThread.current.isCancelled { return }
        GreenThread.current.kernel.sleepCurrent(until: gt_clock_monotonic_ns() &+ ns)
    }

    /// Runs `body` with preemption disabled for the calling thread: no time
    /// slice ends inside it (a slice that ends meanwhile ends right after).
    /// Regions nest. The thread can still block (a mutex, a channel) inside.
    ///
    /// ```swift
    /// let elapsed = GreenThread.withoutPreemption {
    ///     let start = ContinuousClock.now
    ///     serveRequest()                     // no time slice ends inside the measurement
    ///     return ContinuousClock.now - start
    /// }
    /// ```
    public static func withoutPreemption<R>(_ body: () throws -> R) rethrows -> R {
        gt_no_preempt_enter()
        defer {
            if gt_no_preempt_exit() != 0 { gt_park_pending() }
        }
        return try body()
    }
}

/// Scheduling counters of one thread.
///
/// ```swift
/// func report(_ thread: GreenThread) {
///     let s = thread.statistics
///     print("\(s.cpuTime) on the CPU, \(s.switches) switches, \(s.preemptions) preempted")
///     print("\(s.deferredPreemptions) preemptions deferred to the end of a critical section")
///     print("\(s.tickedCPUTime) by the CPU-time tick, \(s.cpuTicks) TSC ticks")
/// }
/// ```
public struct ThreadStatistics: Sendable, Equatable {
    /// Time-stamp counter ticks spent running.
    public var cpuTicks: UInt64 = 0
    /// Times the thread was switched in.
    public var switches: UInt64 = 0
    /// Times it was preempted (time slice, or a higher-priority thread
    /// became ready); each time its OS thread parked with it.
    public var preemptions: UInt64 = 0
    /// Times a due preemption waited for the end of a kernel critical
    /// section or a `withoutPreemption` region.
    public var deferredPreemptions: UInt64 = 0

    /// CPU time as the worker's CPU-time tick saw it (preemptive kernels):
    /// unlike `cpuTime`, time the OS took the worker away is not included;
    /// the resolution is the tick period (a quarter slice, at least 1 ms).
    public var tickedCPUTime: Duration = .zero

    /// `cpuTicks` converted with the counter's measured frequency.
    public var cpuTime: Duration {
        let hz = gt_tsc_frequency()
        let seconds = cpuTicks / hz
        let rest = cpuTicks % hz
        return .seconds(Int64(seconds)) + .nanoseconds(Int64(Double(rest) * 1e9 / Double(hz)))
    }
}

extension Duration {
    /// Whole nanoseconds, clamped to Int64 (negative durations become 0).
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        if seconds >= Int64.max / 1_000_000_000 { return Int64.max }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// The threads blocked in join() on one thread (kernel lock), in order of
/// arrival: an intrusive list through each joiner's `nextJoiner`, so
/// joining never allocates under the kernel lock. Unretained: a blocked
/// joiner is kept alive by the kernel's registry.
struct JoinerList {
    private var head: Unmanaged<GreenThread>?
    private var tail: Unmanaged<GreenThread>?

    mutating func append(_ thread: GreenThread) {
        let ref = Unmanaged.passUnretained(thread)
        thread.nextJoiner = nil
        if let last = tail { last.takeUnretainedValue().nextJoiner = ref } else { head = ref }
        tail = ref
    }

    /// Takes `thread` off the list, if it is on it (a cancelled joiner;
    /// rare, so a walk).
    mutating func remove(_ thread: GreenThread) {
        let target = Unmanaged.passUnretained(thread).toOpaque()
        var previous: Unmanaged<GreenThread>?
        var cursor = head
        while let current = cursor {
            let next = current.takeUnretainedValue().nextJoiner
            if current.toOpaque() == target {
                if let p = previous { p.takeUnretainedValue().nextJoiner = next } else { head = next }
                if tail?.toOpaque() == target { tail = previous }
                thread.nextJoiner = nil
                return
            }
            previous = current
            cursor = next
        }
    }

    /// Calls `body` on each joiner in order of arrival (SyncInvariants).
    func forEach(_ body: (GreenThread) -> Void) {
        var cursor = head
        while let current = cursor {
            let thread = current.takeUnretainedValue()
            cursor = thread.nextJoiner
            body(thread)
        }
    }

    /// Empties the list, calling `body` on each joiner in order of arrival.
    /// Each link is read before `body` runs, since waking a joiner may let
    /// it join again.
    mutating func removeAll(_ body: (GreenThread) -> Void) {
        var cursor = head
        head = nil
        tail = nil
        while let current = cursor {
            let thread = current.takeUnretainedValue()
            cursor = thread.nextJoiner
            thread.nextJoiner = nil
            body(thread)
        }
    }
}
