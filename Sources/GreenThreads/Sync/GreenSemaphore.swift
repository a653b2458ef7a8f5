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
        _ = wait(deadline: nil, operation: "GreenSemaphore.wait()")
    }

    /// Takes a permit, waiting at most `timeout`.
    /// - Returns: true with a permit taken, false when the timeout passed.
    ///
    /// ```swift
    /// func query(_ connections: GreenSemaphore) throws -> Int? {
    ///     guard connections.wait(timeout: .milliseconds(100)) else { return nil }   // busy
    ///     defer { connections.signal() }
    ///     return try compute()
    /// }
    /// ```
    public func wait(timeout: Duration) -> Bool {
        wait(deadline: syncDeadline(after: timeout), operation: "GreenSemaphore.wait(timeout:)")
    }

    private func wait(deadline: Int64?, operation: String) -> Bool {
        guard let me = currentGreenThread() else {
            let took = withSyncLock { _ -> Bool in
                guard permits > 0 else { return false }
                permits -= 1
                return true
            }
            precondition(took, "\(operation) on \(self) with no permit outside a green thread would wait forever: "
                + "call it inside Kernel.run { ... }")
            return true
        }
        let kernel = me.kernel
        return kernel.withBlockingSection { () -> Bool in
            if permits > 0 {
                permits -= 1
                return true
            }
            if let deadline, deadline <= gt_clock_monotonic_ns() { return false }
            let waiter = SyncWaiter(thread: me, object: self)
            waiters.insert(waiter)
            let outcome = kernel.blockAsWaiter(waiter, record: WaitRecord(kind: "semaphore", objectID: id, objectName: name),
                                               deadline: deadline) { [self] waiter in
                waiters.remove(waiter)
            }
            return outcome == .granted
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
