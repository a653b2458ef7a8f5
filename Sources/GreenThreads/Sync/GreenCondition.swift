// GreenCondition: a condition variable for green threads, used with a
// GreenMutex.
//
// Owns: the queue of threads waiting to be signalled.
//
// Invariants (kernel lock):
// - A waiter releases the mutex and queues itself in one kernel-locked
//   step, then blocks in the same critical section: a signal sent after the
//   release finds it queued (no lost wake-up). It releases first, so that
//   its queue entry carries the priority it has once it no longer inherits
//   through that mutex.
// - signal() wakes the waiter of highest effective priority (FIFO within a
//   level), broadcast() all of them in that order; waiters are requeued when
//   their priority changes while they wait.
// - A woken waiter retakes the mutex through the ordinary lock path (with
//   priority inheritance, handoff, and owner-died reporting) before wait
//   returns; it is not moved onto the mutex's queue directly.
// - Cancellation (`GreenThread.cancel()`) ends both waits, before or while
//   they wait for a signal: the waiter leaves the queue in the kernel-locked
//   step that ends its wait (a later signal goes to a live waiter), then
//   retakes the mutex ignoring cancellation, so the caller always holds the
//   mutex when the wait returns or reports the cancellation (issue 14).
import CGreenCore

/// A condition variable: threads wait, with a `GreenMutex` held, until
/// another thread signals that the state they wait for may have changed.
///
/// ```swift
/// final class Jobs: @unchecked Sendable {
///     let m = GreenMutex(name: "jobs"), ready = GreenCondition(name: "jobs-ready")
///     var items: [Int] = []                 // guarded by `m`
///     var closed = false                    // guarded by `m`
/// }
/// let jobs = Jobs()
/// try Kernel.run {
///     let consumer = try GreenThread.spawn {
///         try jobs.m.withLock {
///             while true {
///                 while jobs.items.isEmpty && !jobs.closed { try jobs.ready.wait(jobs.m) }
///                 if jobs.items.isEmpty { return }           // closed and drained
///                 process(jobs.items.removeFirst())
///             }
///         }
///     }
///     for i in 0..<10 {
///         try jobs.m.withLock { jobs.items.append(i) }
///         jobs.ready.signal()                // wakes one waiter
///     }
///     try jobs.m.withLock { jobs.closed = true }
///     jobs.ready.broadcast()                 // wakes them all: each sees `closed`
///     try consumer.join()
///     print(jobs.ready.name, jobs.ready.id)  // jobs-ready <id>
/// }
/// ```
public final class GreenCondition: @unchecked Sendable, CustomStringConvertible {
    /// Unique among sync objects for the process's life.
    public let id: UInt64
    /// The name given at creation, or "condition-<id>".
    public let name: String

    // --- kernel lock ---
    @exclusivity(unchecked) var waiters = WaitQueue()

    /// Creates a condition with no waiters; `name` is shown in `gt-ps`.
    ///
    /// ```swift
    /// let notEmpty = GreenCondition(name: "queue-not-empty")
    /// ```
    public init(name: String? = nil) {
        let id = SyncObjectIDs.make()
        self.id = id
        self.name = name ?? "condition-\(id)"
    }

    /// "condition 6 'queue-not-empty'".
    public var description: String { "condition \(id) '\(name)'" }

    var identity: SyncObjectIdentity { SyncObjectIdentity(kind: "condition", id: id, name: name) }

    /// Releases `mutex`, waits for a signal, and retakes `mutex` before
    /// returning. As with every condition variable, recheck the predicate
    /// in a loop: another thread may change the state between the signal
    /// and the return.
    ///
    /// - Throws: `GreenMutexError.notOwner` when the caller does not hold
    ///   `mutex`; `.notInKernel` outside a green thread (neither waits);
    ///   `.conditionWaitCancelled` when the calling thread is cancelled
    ///   (`GreenThread.cancel()`) before or while it waits for a signal (the
    ///   caller holds `mutex` again: the wait retakes it first);
    ///   `.ownerDied` when retaking `mutex` finds that its holder ended (the
    ///   caller holds it); `.deadlock` when retaking it would close a cycle
    ///   (the caller then does not hold it).
    ///
    /// ```swift
    /// final class Inbox: @unchecked Sendable {
    ///     let m = GreenMutex(), notEmpty = GreenCondition()
    ///     var items: [Int] = []                            // guarded by `m`
    ///     func take() throws -> Int {
    ///         try m.lock()
    ///         defer { try? m.unlock() }
    ///         while items.isEmpty { try notEmpty.wait(m) }  // `m` is free while it waits
    ///         return items.removeFirst()
    ///     }
    /// }
    /// ```
    public func wait(_ mutex: GreenMutex) throws(GreenMutexError) {
        // Untimed: only a cancellation ends it without a signal.
        guard try wait(mutex, deadline: nil, operation: "GreenCondition.wait") else {
            let me = GreenThread.current
            throw GreenMutexError.conditionWaitCancelled(thread: ThreadIdentity(me), condition: identity,
                                                         mutex: mutex.identity)
        }
    }

    /// Like `wait(_:)`, but gives up waiting for a signal after `timeout`,
    /// or when the calling thread is cancelled before or while it waits.
    /// The mutex is held again when it returns either way.
    /// - Returns: true when signalled, false when the timeout passed first
    ///   or the thread was cancelled (`isCancelled` tells them apart).
    ///
    /// ```swift
    /// final class Inbox: @unchecked Sendable {
    ///     let m = GreenMutex(), notEmpty = GreenCondition()
    ///     var items: [Int] = []                            // guarded by `m`
    ///     func take() throws -> Int? {
    ///         try m.withLock {
    ///             while items.isEmpty {
    ///                 if try !notEmpty.wait(m, timeout: .seconds(1)) { return nil }   // idle: give up
    ///             }
    ///             return items.removeFirst()
    ///         }
    ///     }
    /// }
    /// ```
    public func wait(_ mutex: GreenMutex, timeout: Duration) throws(GreenMutexError) -> Bool {
        try wait(mutex, deadline: syncDeadline(after: timeout), operation: "GreenCondition.wait(_:timeout:)")
    }

    private func wait(_ mutex: GreenMutex, deadline: Int64?, operation: String) throws(GreenMutexError) -> Bool {
        guard let me = currentGreenThread() else { throw GreenMutexError.notInKernel(operation: operation) }
        let kernel = me.kernel
        let mine = UInt(bitPattern: Unmanaged.passUnretained(me).toOpaque())
        if mutex.word.load(ordering: .relaxed) & GreenMutex.ownerMask != mine {
            throw GreenMutexError.notOwner(thread: ThreadIdentity(me), owner: mutex.owner.map(ThreadIdentity.init),
                                           mutex: mutex.identity)
        }
        // The thread's own entry, made once outside the lock, used unretained.
        let outcome = me.ownSyncWaiter()._withUnsafeGuaranteedRef { waiter in
            kernel.withBlockingSection { () -> WaitOutcome in
                // Release first: handing the mutex on may drop our inherited
                // priority, and the queue entry is keyed by the priority we wait
                // with. Both steps hold the kernel lock, so no signal falls between.
                mutex.releaseHoldingKernelLock(by: me, kernel)
                waiter.begin(on: self)
                waiters.insert(waiter)
                // Cancellable timed or not: a timeout or a cancellation takes the
                // waiter off the queue under this lock (`withdraw`), so no
                // signal is lost on it.
                return kernel.blockAsWaiter(waiter, on: self, .condition, objectID: id, deadline: deadline, cancellable: true)
            }
        }
        // Retaken whether or not the thread was cancelled meanwhile: the
        // caller holds the mutex when wait returns or reports the
        // cancellation (issue 14).
        try mutex.lockIgnoringCancellation()
        return outcome == .granted
    }

    /// Wakes the waiting thread of highest priority, if any. Callable from
    /// any thread, with or without the mutex held.
    ///
    /// ```swift
    /// final class Inbox: @unchecked Sendable {
    ///     let m = GreenMutex(), notEmpty = GreenCondition()
    ///     var items: [Int] = []                            // guarded by `m`
    ///     func put(_ item: Int) throws {
    ///         try m.withLock { items.append(item) }
    ///         notEmpty.signal()                            // one waiter takes it
    ///     }
    /// }
    /// ```
    public func signal() {
        withSyncLock { kernel in
            guard let kernel, let waiter = waiters.popTop() else { return }
            kernel.serve(waiter, .granted)
        }
    }

    /// Wakes every waiting thread, highest priority first.
    ///
    /// ```swift
    /// final class Inbox: @unchecked Sendable {
    ///     let m = GreenMutex(), notEmpty = GreenCondition()
    ///     var closed = false                               // guarded by `m`
    ///     func close() throws {
    ///         try m.withLock { closed = true }
    ///         notEmpty.broadcast()                         // every waiter rechecks and sees it
    ///     }
    /// }
    /// ```
    public func broadcast() {
        withSyncLock { kernel in
            guard let kernel else { return }
            for waiter in waiters.removeAll() { kernel.serve(waiter, .granted) }
        }
    }
}

extension GreenCondition: SyncWaitObject {
    func requeue(_ waiter: SyncWaiter) { waiters.requeue(waiter) }
    func withdraw(_ thread: GreenThread) { waiters.remove(thread.kernel.withdrawWaiter(thread)) }
    var waitObjectName: String? { name }
    func isQueued(_ waiter: SyncWaiter) -> Bool { waiters.contains(waiter) }
    func invariantViolations(caller: GreenThread?) -> [String] {
        waiters.invariantViolations(of: "\(self)", caller: caller)
    }
}
