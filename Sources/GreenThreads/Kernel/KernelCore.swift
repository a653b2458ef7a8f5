// KernelCore: the state of one running kernel: its processors and OS
// threads (Machines), the ready threads, the sleepers' timer heap, the
// registry of live threads, and the bookkeeping that ends the run (last
// thread finished, or deadlock).
//
// Lock order: KernelLock (this file's `lock`) -> StackPool's lock -> the
// park lock (CGreenCore/park.c). Every field marked "kernel lock" is read
// and written only with `lock` held, and `lock` is only taken inside a
// critical section (preemption disabled), or on the monitor thread, which
// runs no green threads.
//
// The kernel lock's holder waits for nothing a parked thread may hold. A
// thread may be parked (preempted) almost anywhere in the program, holding
// any lock the program or its libraries use: stdio's, the program's own,
// the Swift runtime's. A lock holder that waited for one of those would
// wait for a thread that only the lock holder can resume: every OS thread
// of the kernel would stop. So no user code runs under the kernel lock, and
// the one outside component it relies on, the memory allocator (Swift code
// under the lock may allocate and free), is never held by a parked thread
// (CGreenCore/allocator.c). The scheduler's own paths keep clear of the
// allocator anyway (storage reserved ahead: `reserveSchedulerStorage`, the
// timer heap grown by the keeper outside the lock, each thread's first
// joiner slot), and the monitor never allocates at all (Monitor.swift).
// The Swift runtime's caches (metadata, witness tables, key paths) take
// its locks only when they are filled: the first `Kernel.run` walks the
// scheduler's paths before the program's code runs (Rehearsal.swift), and
// code under the lock searches its arrays through Array's own members
// (ArrayUnderKernelLock.swift). The test host checks the rule itself: it
// interposes pthread_mutex_lock and counts what the lock's holder takes.
//
// The switch protocol (Scheduler.swift) hands the held lock across a
// context switch: the context that resumes releases it, after the outgoing
// context is fully saved. That is what makes it safe for another worker to
// pick a thread the moment it becomes visible in the run queue.
import CGreenCore
import Glibc
import Synchronization

final class KernelCore: @unchecked Sendable {
    let configuration: KernelConfiguration
    let lock = KernelLock()

    @exclusivity(unchecked) var runQueue = RunQueue()          // kernel lock
    @exclusivity(unchecked) var processors: [Processor] = []   // set before start, then read-only
    @exclusivity(unchecked) var idleProcessors: [Processor] = [] // kernel lock
    /// Processors looking for work before they sleep (Machine.spinForWork; kernel lock).
    @exclusivity(unchecked) var spinningProcessors = 0
    /// Processors lingering for work above their `lingersAbove` before they
    /// start a lower thread, not yet claimed by a `makeReady` (Machine.linger; kernel lock).
    @exclusivity(unchecked) var lingeringProcessors: [Processor] = []
    /// Mirrors `shuttingDown` for spinners, which poll without the lock.
    let stopRequested = Atomic<Bool>(false)
    /// Whether the thread a spinner would find was handed off: made ready
    /// by a green thread on a processor, at a level no higher than the
    /// waker's (Scheduler.noteSpinnersReady; Machine.leftToItsWaker). Written under
    /// the kernel lock, only while a processor spins; spinners read it
    /// without the lock.
    let readiedForHandOff = Atomic<Bool>(false)
    /// Every Machine started and not yet joined (kernel lock).
    @exclusivity(unchecked) var machines: [Machine] = []
    @exclusivity(unchecked) var nextMachineID = 0              // kernel lock
    /// Machines the monitor is starting (kernel lock).
    @exclusivity(unchecked) var startingMachines = 0
    /// Processors retaken or never held, waiting for a new Machine (kernel lock).
    @exclusivity(unchecked) var pendingProcessors: [Processor] = []
    /// Machines whose processor the monitor took while they were blocked (monitor, kernel lock).
    @exclusivity(unchecked) var blockedMachines: [BlockedMachine] = []
    /// The monitor sleeps past the blocked-Machine poll: no processor was
    /// busy at its last look (kernel lock).
    @exclusivity(unchecked) var monitorSleepsLong = true
    @exclusivity(unchecked) var liveThreads = 0                // kernel lock
    @exclusivity(unchecked) var threadsSpawned: UInt64 = 0     // kernel lock
    @exclusivity(unchecked) var timers = TimerHeap()           // kernel lock
    @exclusivity(unchecked) var shuttingDown = false           // kernel lock
    @exclusivity(unchecked) var deadlockReport: DeadlockReport? // kernel lock
    /// Head of the intrusive list of live threads; the list holds one
    /// retain on each (Unmanaged), dropped when the thread is reaped.
    @exclusivity(unchecked) unowned(unsafe) var registryHead: GreenThread? // kernel lock
    /// Threads parked on an event from outside the kernel (I/O readiness,
    /// the blocking pool): not a deadlock while any exist (IO/KernelServices.swift).
    @exclusivity(unchecked) var externalWaiters = 0                      // kernel lock
    /// Per-kernel services with their own OS threads (IO/KernelServices.swift).
    @exclusivity(unchecked) var services: [ObjectIdentifier: any KernelService] = [:] // kernel lock
    /// The netpoller's side of the scheduler, once it runs (IO/KernelServices.swift). Kernel lock.
    @exclusivity(unchecked) var poller: (any SchedulerPoller)?
    /// The highest priority level of a thread parked on I/O, or -1: a
    /// processor that starts a thread below it tells `poller` (kernel lock).
    @exclusivity(unchecked) var ioWatchLevel = -1

    /// The monitor sleeps on these two descriptors (gt_monitor_wait): an
    /// eventfd written to wake it now (`wakeMonitor`, park.c), and a timerfd
    /// armed for the earliest time it must look again. -1 until
    /// `openMonitorDescriptors`.
    private(set) var monitorEventFD: Int32 = -1
    private(set) var monitorTimerFD: Int32 = -1
    /// When the monitor's timer fires (CLOCK_MONOTONIC ns; kernel lock). A
    /// thread that adds an earlier deadline re-arms the timer instead of
    /// waking the monitor (`monitorMustLook`).
    @exclusivity(unchecked) var monitorAlarmAt: Int64 = .max
    /// Futex word the keeper sleeps on (Monitor.swift).
    let keeperWord: UnsafeMutablePointer<UInt32>
    /// Spare Machines the monitor asked the keeper to start (kernel lock).
    @exclusivity(unchecked) var keeperMachinesToStart = 0
    /// Machines whose loop returned, not yet joined by the keeper (kernel lock).
    @exclusivity(unchecked) var exitedMachines = 0

    /// Thread ids are unique for the process's life, across kernels.
    static let nextThreadID = Atomic<UInt64>(1)
    /// The first `Kernel.run`'s rehearsal (Rehearsal.swift); set before it starts.
    var isRehearsal = false

    /// The running kernel, for code outside its green threads (the snapshot
    /// server, signal-driven dumps): the one global pointer the library
    /// keeps. Set for the duration of `Kernel.run`.
    static let running = Mutex<KernelCore?>(nil)

    init(configuration: KernelConfiguration) {
        self.configuration = configuration
        keeperWord = .allocate(capacity: 1)
        keeperWord.initialize(to: 0)
    }

    deinit {
        if monitorEventFD >= 0 { gt_monitor_close(monitorEventFD, monitorTimerFD) }
        keeperWord.deallocate()
    }

    /// Opens the monitor's eventfd and timerfd, before any thread starts.
    func openMonitorDescriptors() throws {
        var event: Int32 = -1, timer: Int32 = -1
        let error = gt_monitor_open(&event, &timer)
        guard error == 0 else { throw KernelError.system(call: "eventfd/timerfd_create", errno: error) }
        monitorEventFD = event
        monitorTimerFD = timer
    }

    /// The kernel lock's holder never allocates on the scheduler's paths:
    /// a parked thread may have been preempted inside malloc holding its
    /// arena's lock, and a lock holder that waited for it would stop every
    /// OS thread (resuming the parked one needs the kernel lock). So the
    /// scheduler's arrays get their whole capacity up front.
    func reserveSchedulerStorage() {
        idleProcessors.reserveCapacity(processors.count)
        lingeringProcessors.reserveCapacity(processors.count)
        pendingProcessors.reserveCapacity(processors.count)
        blockedMachines.reserveCapacity(4 * processors.count)
        machines.reserveCapacity(configuration.maxOSThreads + 1)
    }

    // MARK: Critical sections

    /// Runs `body` with preemption disabled and the kernel lock held. `body`
    /// must not switch threads.
    @inline(__always)
    func withCriticalLock<R>(_ body: () throws -> R) rethrows -> R {
        _ = gt_enter_critical()
        lock.lock()
        defer {
            lock.unlock()
            KernelCore.exitCritical()
        }
        return try body()
    }

    /// Leaves a critical section, honouring a preemption that came due
    /// inside it: the thread parks with its OS thread, as in the handler
    /// (the caller may hold OS locks: this is not a cooperative switch).
    @inline(__always)
    static func exitCritical() {
        if gt_exit_critical() != 0 { gt_park_pending() }
    }

    // MARK: Thread creation and the registry

    /// Creates a thread with its stack and first frame; `start` makes it run.
    func createThread(name: String?, priority: Priority, stackSize: Int,
                      body: @escaping () -> Void) throws -> GreenThread {
        let id = isRehearsal ? Rehearsal.threadIDs.add(1, ordering: .relaxed).oldValue
                             : KernelCore.nextThreadID.add(1, ordering: .relaxed).oldValue
        let thread = GreenThread(id: id, name: name, priority: priority, kernel: self)
        thread.body = body
        let size = StackPool.roundedSize(stackSize)
        _ = gt_enter_critical()  // the pool's lock is never held by a preemptible thread
        defer { KernelCore.exitCritical() }
        let stack = try StackPool.shared.allocate(size: size)
        // The C control block sits at the top of the stack, 64-byte aligned
        // (one cache line apart from the first frame below it).
        let blockAddress = UInt(bitPattern: stack.high - MemoryLayout<gt_thread_core>.stride) & ~UInt(63)
        let blockRaw = UnsafeMutableRawPointer(bitPattern: blockAddress)!
        let core = blockRaw.bindMemory(to: gt_thread_core.self, capacity: 1)
        core.initialize(to: gt_thread_core())
        core.pointee.id = id
        if let name = thread.givenName {
            name.withCString { gt_thread_core_set_name(core, $0) }
        } else {
            gt_thread_core_set_name(core, nil)
        }
        core.pointee.effective_level = Int32(thread.effectivePriorityLevel)
        core.pointee.stack_low = stack.low
        core.pointee.stack_high = blockRaw
        core.pointee.guard_low = stack.base
        let opaque = Unmanaged.passUnretained(thread).toOpaque()
        core.pointee.owner = opaque
        core.pointee.sp = gt_context_make(blockRaw, greenThreadEntry, opaque)
        thread.stack = stack
        thread.core = core
        return thread
    }

    /// Registers a created thread and makes it ready. Kernel lock held.
    func start(_ thread: GreenThread) {
        _ = Unmanaged.passRetained(thread)  // the registry's reference
        thread.registryNext = registryHead
        thread.registryPrev = nil
        registryHead?.registryPrev = thread
        registryHead = thread
        liveThreads += 1
        threadsSpawned += 1
        makeReady(thread)
    }

    /// Frees a finished thread's stack and drops the registry's reference.
    /// Kernel lock held; no context runs on the thread's stack any more.
    func reap(_ thread: GreenThread) {
        if thread.core != nil {
            thread.finalCounters = thread.countersKernelLocked
            thread.core = nil
        }
        if let stack = thread.stack {
            StackPool.shared.release(stack)
            thread.stack = nil
        }
        unregister(thread)
    }

    private func unregister(_ thread: GreenThread) {
        if let prev = thread.registryPrev { prev.registryNext = thread.registryNext } else { registryHead = thread.registryNext }
        thread.registryNext?.registryPrev = thread.registryPrev
        thread.registryNext = nil
        thread.registryPrev = nil
        Unmanaged.passUnretained(thread).release()
    }

    /// Live threads, newest first. Kernel lock held.
    func forEachLiveThread(_ body: (GreenThread) -> Void) {
        var t = registryHead
        while let thread = t {
            body(thread)
            t = thread.registryNext
        }
    }

    // MARK: Shutdown

    /// Stops the workers and the monitor. Kernel lock held.
    func beginShutdown() {
        shuttingDown = true
        stopRequested.store(true, ordering: .relaxed)
        while let p = idleProcessors.popLast() { wake(p) }
        // `state` is read once: a Machine that is leaving clears it in
        // `detach` without the kernel lock, so a second read may be nil,
        // and gt_park_wake(nil) dereferences it (seen once under load in
        // the --static-swift-stdlib run of the foreign-lock scenario). A
        // Machine still listed has not been joined, so the state its first
        // read names is still mapped.
        for m in machines {
            if let ms = m.state { gt_park_wake(ms) }
        }
        wakeMonitor()
        wakeKeeper()
    }

    func wakeMonitor() {
        gt_monitor_wake(monitorEventFD)
    }

    /// The monitor must look by `deadline` (a new earliest timer): brings its
    /// alarm forward if it would fire later; no wake-up now. Kernel lock held
    /// (the monitor sets its alarm under the lock before it sleeps).
    func monitorMustLook(by deadline: Int64) {
        guard deadline < monitorAlarmAt else { return }
        monitorAlarmAt = deadline
        gt_monitor_arm(monitorTimerFD, deadline)
    }

    /// Called by a worker about to idle: if every worker is idle, no thread
    /// sleeps or waits with a timeout, and threads are still alive, nothing
    /// can ever wake them. Kernel lock held.
    func checkForDeadlock() -> Bool {
        guard !shuttingDown, idleProcessors.count == processors.count, liveThreads > 0, runQueue.isEmpty,
              externalWaiters == 0, !machines.containsAny(where: { $0.current != nil }),
              // Issue 14: code outside the kernel may still wake a parked thread.
              ExternalEvent.parkedCount.load(ordering: .relaxed) == 0 else {
            return false
        }
        timers.dropStale()
        guard timers.isEmpty else { return false }
        // A wait an OS thread outside the kernel may still end is not
        // hopeless while such a thread exists (Sync/DeadlockRule.swift).
        guard !someWaitMayEndFromOutside() else { return false }
        SyncTestHooks.deadlockDetected?()
        var threads: [DeadlockReport.Entry] = []
        let clock = WaitClock.now
        forEachLiveThread { t in
            threads.append(.init(threadID: t.id, name: t.name, state: t.runState,
                                 priority: t.basePriorityLevel, waitingOn: t.wait?.record(at: clock)))
        }
        deadlockReport = DeadlockReport(threads: threads.reversed(), kernel: self)
        beginShutdown()
        return true
    }

    /// After a deadlock: the blocked threads can never run; give their
    /// stacks back and drop them. Objects their frames referenced leak.
    /// The thread objects (their locals, their wait entries with channel
    /// values) and the timer heap are dropped after the lock is released:
    /// those deinits may be a program's code.
    func abandonBlockedThreads() {
        let (abandoned, oldTimers) = withCriticalLock { () -> ([GreenThread], TimerHeap) in
            var threads: [GreenThread] = []
            while let t = registryHead {
                // A thread queued on a sync object stays allocated, as the
                // object (referenced from the abandoned frames) does: the
                // queue holds its entry unretained, and the thread owns it.
                if t.syncWaiter != nil { _ = Unmanaged.passRetained(t) }
                threads.append(t)
                t.runState = .finished
                reap(t)
            }
            liveThreads = 0
            var heap = TimerHeap()
            swap(&heap, &timers)
            return (threads, heap)
        }
        _ = consume abandoned
        _ = consume oldTimers
    }
}
