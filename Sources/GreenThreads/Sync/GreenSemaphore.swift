// GreenSemaphore: a counting semaphore for green threads.
//
// Owns: the permit count and the queue of waiting threads.
//
// Invariants (kernel lock):
// - `permits > 0` only while nobody waits (a waiter with a permit available
//   would be a lost wake-up): signal() hands its permit straight to the top
//   waiter instead of adding it to the count, so a thread arriving later
//   cannot take it first (the same handoff argument as GreenMutex).
// - Waiters are served by effective priority, FIFO within a level, and
//   requeued when their priority changes.
// - A waiter that leaves without a permit (timeout, or cancellation of
//   `wait(timeout:)` and `waitUnlessCancelled()`) is taken off the queue in
//   the same kernel-locked step that ends its wait, so no signal is ever
//   handed to it. `wait()` ignores cancellation: it cannot report one.
// A semaphore has no owner, so waiting on one lends no priority.
import CGreenCore

/// A counting semaphore: `wait()` takes a permit, waiting until one is
/// available; `signal()` returns one.
///
/// ```swift
/// let slots = GreenSemaphore(value: 2, name: "slots")   // at most two at a time
/// try Kernel.run {
///     let users = try (0..<8).map { _ in
///         try GreenThread.spawn {
///             slots.wait()
///             defer { slots.signal() }
///             useSharedResource()
///         }
///     }
///     for user in users { try user.join() }
///     print(slots.name, slots.id, slots.value)   // slots <id> 2
/// }
/// ```
public final class GreenSemaphore: @unchecked Sendable, CustomStringConvertible {
    /// Unique among sync objects for the process's life.
    public let id: UInt64
    /// The name given at creation, or "semaphore-<id>".
    public let name: String

    // --- kernel lock ---
    @exclusivity(unchecked) var permits: Int
    @exclusivity(unchecked) var waiters = WaitQueue()

    /// Creates a semaphore holding `value` permits (at least 0).
    ///
    /// ```swift
    /// let connections = GreenSemaphore(value: 8, name: "db-connections")
    /// ```
    public init(value: Int, name: String? = nil) {
        precondition(value >= 0, "GreenSemaphore(value: \(value)): the initial count cannot be negative")
        let id = SyncObjectIDs.make()
        self.id = id
        self.name = name ?? "semaphore-\(id)"
        self.permits = value
    }

    /// "semaphore 4 'db-connections'".
    public var description: String { "semaphore \(id) '\(name)'" }

    /// The permits available now (a snapshot).
    public var value: Int { withSyncLock { _ in permits } }

    /// Takes a permit, waiting as long as it takes.
    ///
    /// Cancellation (`GreenThread.cancel()`) does not end this wait: it has
    /// no way to say it returned without a permit. A thread that may be
    /// cancelled (a `withThreadGroup` member, a thread a task awaits) waits
    /// with `waitUnlessCancelled()` or `wait(timeout:)` instead.
    ///
    /// Outside a green thread it takes a permit if one is available and
    /// otherwise stops the program with a message: waiting there could never
    /// end.
    ///
    /// ```swift
    /// func query(_ connections: GreenSemaphore) throws -> Int {
    ///     connections.wait()                 // one of the pool's permits
    ///     defer { connections.signal() }
    ///     return try compute()
    /// }
    /// ```
    public func wait() {
        guard let me = currentGreenThread() else { return takeOutsideGreenThread(operation: "GreenSemaphore.wait()") }
        _ = block(me, deadline: nil, cancellable: false)
    }

    /// Takes a permit, waiting as long as it takes unless the calling
    /// thread is cancelled (`GreenThread.cancel()`), before or while it
    /// waits: then it throws without a permit, and the permit the thread
    /// would have had stays for the next waiter. Like a mutex, a cancelled
    /// thread still takes a permit that is available: only waiting is
    /// refused.
    ///
    /// - Throws: `GreenThreadError.cancelled` when the thread was cancelled
    ///   (no permit taken); `.notInKernel` outside a green thread when no
    ///   permit is available (waiting there could never end).
    ///
    /// ```swift
    /// func runAll(_ jobs: [Int], slots: GreenSemaphore) throws {
    ///     try withThreadGroup { group in
    ///         for job in jobs {
    ///             try group.spawn {
    ///                 try slots.waitUnlessCancelled()   // a failing sibling cancels the queue
    ///                 defer { slots.signal() }
    ///                 process(job)
    ///             }
    ///         }
    ///     }
    /// }
    /// ```
    public func waitUnlessCancelled() throws(GreenThreadError) {
        guard let me = currentGreenThread() else {
            guard takeAvailablePermit() else {
                throw GreenThreadError.notInKernel(operation: "GreenSemaphore.waitUnlessCancelled() with no permit")
            }
            return
        }
        // Untimed, so only a cancellation ends the wait without a permit.
        guard block(me, deadline: nil, cancellable: true) else { throw GreenThreadError.cancelled(threadID: me.id) }
    }

    /// Takes a permit, waiting at most `timeout`, and not at all once the
    /// calling thread is cancelled (`GreenThread.cancel()`).
    /// - Returns: true with a permit taken, false when the timeout passed or
    ///   the thread was cancelled (`isCancelled` tells them apart).
    ///
    /// ```swift
    /// func query(_ connections: GreenSemaphore) throws -> Int? {
    ///     guard connections.wait(timeout: .milliseconds(100)) else { return nil }   // busy
    ///     defer { connections.signal() }
    ///     return try compute()
    /// }
    /// ```
    public func wait(timeout: Duration) -> Bool {
        guard let me = currentGreenThread() else {
            takeOutsideGreenThread(operation: "GreenSemaphore.wait(timeout:)")
            return true
        }
        // Timed waits observe cancellation through their timeout path anyway.
        return block(me, deadline: syncDeadline(after: timeout), cancellable: true)
    }

    /// Takes a permit if one is available now. Any thread.
    private func takeAvailablePermit() -> Bool {
        withSyncLock { _ -> Bool in
            guard permits > 0 else { return false }
            permits -= 1
            return true
        }
    }

    /// A non-throwing wait outside a green thread: a permit, or a stop with
    /// a message (nothing could ever wake this OS thread).
    private func takeOutsideGreenThread(operation: String) {
        precondition(takeAvailablePermit(), "\(operation) on \(self) with no permit outside a green thread would wait "
            + "forever: call it inside Kernel.run { ... }")
    }

    /// Takes a permit on green thread `me`, waiting until `deadline` (nil:
    /// no limit) or, when `cancellable`, until the thread is cancelled.
    /// Returns whether it took one.
    private func block(_ me: GreenThread, deadline: Int64?, cancellable: Bool) -> Bool {
        let kernel = me.kernel
        // The thread's own entry, made once outside the lock, used unretained.
        return me.ownSyncWaiter()._withUnsafeGuaranteedRef { waiter in
            kernel.withBlockingSection { () -> Bool in
                if permits > 0 {
                    permits -= 1
                    return true
                }
                if let deadline, deadline <= gt_clock_monotonic_ns() { return false }
                waiter.begin(on: self)
                waiters.insert(waiter)
                // Ended without a permit (timeout or cancellation): off the queue
                // under the same lock (`withdraw`), so no signal is handed to it.
                let outcome = kernel.blockAsWaiter(waiter, on: self, .semaphore, objectID: id, deadline: deadline,
                                                   cancellable: cancellable)
                return outcome == .granted
            }
        }
    }

    /// Returns a permit: the waiting thread of highest priority gets it, or
    /// the count grows by one. Callable from any thread.
    ///
    /// ```swift
    /// try Kernel.run {
    ///     let done = GreenSemaphore(value: 0)
    ///     try GreenThread.spawn { serveRequest(); done.signal() }
    ///     done.wait()                        // until serveRequest() is done
    /// }
    /// ```
    public func signal() {
        withSyncLock { kernel in
            if let kernel, let waiter = waiters.popTop() {
                kernel.serve(waiter, .granted)
            } else {
                permits += 1
            }
        }
    }
}

extension GreenSemaphore: SyncWaitObject {
    func requeue(_ waiter: SyncWaiter) { waiters.requeue(waiter) }
    func withdraw(_ thread: GreenThread) { waiters.remove(thread.kernel.withdrawWaiter(thread)) }
    var waitObjectName: String? { name }
    func isQueued(_ waiter: SyncWaiter) -> Bool { waiters.contains(waiter) }
    func invariantViolations(caller: GreenThread?) -> [String] {
        var problems = waiters.invariantViolations(of: "\(self)", caller: caller)
        if permits > 0 && !waiters.isEmpty {
            problems.append("\(self) has \(permits) permits and \(waiters.count) waiters (lost wake-up)")
        }
        if permits < 0 { problems.append("\(self) has a negative count \(permits)") }
        return problems
    }
}
