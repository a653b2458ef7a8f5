// SyncErrors: what the synchronization kit throws when a caller misuses it
// or when a mutex's previous owner died. Every error names the threads and
// objects involved by id and name (the objects may be gone by the time the
// error is read, so errors copy identities rather than hold references).

/// A green thread as named in an error: its id and name.
///
/// ```swift
/// func report(_ error: GreenMutexError) {
///     if case .ownerDied(let previous, let mutex) = error {
///         print("\(previous) died holding \(mutex)")   // "thread 7 'writer' died holding mutex 3 'log'"
///         print(previous.id, previous.name)             // 7 writer
///     }
/// }
/// // Errors are Equatable: a test can compare one with the identity it expects.
/// let writer = ThreadIdentity(id: 7, name: "writer")
/// ```
public struct ThreadIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The thread's `GreenThread.id`.
    public var id: UInt64
    /// The thread's `GreenThread.name`.
    public var name: String

    /// Names a thread by id and name.
    public init(id: UInt64, name: String) {
        self.id = id
        self.name = name
    }

    init(_ thread: GreenThread) {
        self.init(id: thread.id, name: thread.name)
    }

    /// "thread 7 'writer'".
    public var description: String { "thread \(id) '\(name)'" }
}

/// A sync object (mutex, condition, semaphore, channel) as named in an error.
///
/// ```swift
/// func report(_ error: GreenMutexError) {
///     if case .alreadyOwned(_, let mutex) = error {
///         print(mutex.kind, mutex.id, mutex.name)      // mutex 3 accounts
///         print(mutex)                                 // mutex 3 'accounts'
///     }
/// }
/// // Errors are Equatable: a test can compare one with the identity it expects.
/// let accounts = SyncObjectIdentity(kind: "mutex", id: 3, name: "accounts")
/// ```
public struct SyncObjectIdentity: Sendable, Hashable, CustomStringConvertible {
    /// "mutex", "condition", "semaphore" or "channel".
    public var kind: String
    /// The object's `id`, unique among sync objects for the process's life.
    public var id: UInt64
    /// The object's `name`.
    public var name: String

    /// Names a sync object by kind, id and name.
    public init(kind: String, id: UInt64, name: String) {
        self.kind = kind
        self.id = id
        self.name = name
    }

    /// "mutex 3 'accounts'".
    public var description: String { "\(kind) \(id) '\(name)'" }
}

/// Misuse of a `GreenMutex`, or news that its previous owner died.
///
/// ```swift
/// func withAccounts(_ accounts: GreenMutex) throws {
///     do {
///         try accounts.lock()
///     } catch .ownerDied {
///         repairSharedState()         // we hold the mutex: its last owner died inside
///     } catch .deadlock(let cycle) {
///         print("not waiting forever: \(cycle.count) threads in a cycle")
///         throw GreenMutexError.deadlock(cycle: cycle)
///     }
///     defer { try? accounts.unlock() }
///     useSharedState()
/// }
/// ```
public enum GreenMutexError: Error, Equatable, CustomStringConvertible {
    /// One link of a wait-for cycle: `thread` waits for `mutex`, which the
    /// thread of the next link holds (the last link's mutex is held by the
    /// first link's thread).
    ///
    /// ```swift
    /// func describe(_ cycle: [GreenMutexError.WaitLink]) -> String {
    ///     cycle.map { "\($0.thread.name) waits for \($0.mutex.name)" }.joined(separator: ", ")
    /// }
    /// ```
    public struct WaitLink: Sendable, Equatable, CustomStringConvertible {
        /// The waiting thread.
        public var thread: ThreadIdentity
        /// The mutex it waits for.
        public var mutex: SyncObjectIdentity
        /// "thread 2 'a' waits for mutex 5 'left'".
        public var description: String { "\(thread) waits for \(mutex)" }
    }

    /// The calling thread already holds the mutex (GreenMutex is not recursive).
    case alreadyOwned(thread: ThreadIdentity, mutex: SyncObjectIdentity)
    /// The calling thread tried to release (or wait on a condition with) a
    /// mutex that `owner` holds, or that nobody holds (`owner` nil).
    case notOwner(thread: ThreadIdentity, owner: ThreadIdentity?, mutex: SyncObjectIdentity)
    /// The previous owner ended while holding the mutex. The lock call that
    /// throws this has acquired the mutex: the caller holds it, should
    /// repair the state the mutex protects, and then unlocks as usual.
    case ownerDied(previousOwner: ThreadIdentity, mutex: SyncObjectIdentity)
    /// Blocking would close a wait-for cycle: every thread in `cycle` would
    /// wait forever. The lock is not acquired and the caller does not wait.
    case deadlock(cycle: [WaitLink])
    /// The chain of owners to walk for priority inheritance and deadlock
    /// detection is longer than `GreenMutex.maxChainDepth` (Linux's
    /// `max_lock_depth` plays the same role). The lock is not acquired.
    case chainTooDeep(limit: Int, mutex: SyncObjectIdentity)
    /// A blocking call outside a green thread (outside `Kernel.run`).
    case notInKernel(operation: String)
    /// The thread was cancelled (`GreenThread.cancel()`) while it waited for
    /// the mutex, or before: the lock is not acquired.
    case cancelled(thread: ThreadIdentity, mutex: SyncObjectIdentity)
    /// The thread was cancelled (`GreenThread.cancel()`) while it waited on
    /// `condition` in the untimed `GreenCondition.wait(_:)`, or before: the
    /// wait ended without a signal, and, unlike `.cancelled`, the caller
    /// holds `mutex` again (the wait retakes it before it throws, as on
    /// every return).
    case conditionWaitCancelled(thread: ThreadIdentity, condition: SyncObjectIdentity, mutex: SyncObjectIdentity)

    /// A sentence naming the threads and the mutex, and what to do.
    public var description: String {
        switch self {
        case .cancelled(let thread, let mutex):
            return "\(thread) was cancelled while it waited for \(mutex): the lock is not acquired"
        case .conditionWaitCancelled(let thread, let condition, let mutex):
            return "\(thread) was cancelled while it waited on \(condition): no signal came, and it holds \(mutex) again"
        case .alreadyOwned(let thread, let mutex):
            return "\(thread) tried to lock \(mutex), which it already holds (GreenMutex is not recursive)"
        case .notOwner(let thread, let owner, let mutex):
            let holder = owner.map { "it is held by \($0)" } ?? "nobody holds it"
            return "\(thread) tried to release \(mutex), but \(holder)"
        case .ownerDied(let previous, let mutex):
            return "\(previous) ended while holding \(mutex); the caller now holds it: "
                + "repair the state it protects, then unlock it"
        case .deadlock(let cycle):
            guard let first = cycle.first else { return "deadlock" }
            var parts: [String] = []
            for (i, link) in cycle.enumerated() {
                let holder = cycle[(i + 1) % cycle.count].thread
                parts.append("\(link.thread) waits for \(link.mutex) held by \(holder)")
            }
            return "locking \(first.mutex) would deadlock (a cycle of \(cycle.count) threads): "
                + parts.joined(separator: "; ")
        case .chainTooDeep(let limit, let mutex):
            return "locking \(mutex) would make a chain of more than \(limit) blocked owners "
                + "(GreenMutex.maxChainDepth); refused rather than walked without bound"
        case .notInKernel(let operation):
            return "\(operation) needs a green thread: call it inside Kernel.run { ... }"
        }
    }
}

/// Misuse of a `GreenChannel`.
///
/// ```swift
/// func offer(_ value: Int, to channel: GreenChannel<Int>) -> Bool {
///     do {
///         try channel.send(value)
///         return true
///     } catch .closed {
///         return false                // nobody will receive it
///     } catch {
///         print(error)                // cancelled, or would wait outside a green thread
///         return false
///     }
/// }
/// ```
public enum GreenChannelError: Error, Equatable, CustomStringConvertible {
    /// `send` on a closed channel (or the channel closed while the sender
    /// waited): the value was not delivered.
    case closed
    /// A send that must wait, outside a green thread (outside `Kernel.run`).
    case notInKernel(operation: String)
    /// The sender was cancelled (`GreenThread.cancel()`) while it waited, or
    /// before: the value was not delivered.
    case cancelled(threadID: UInt64)

    /// A sentence saying which operation failed and why.
    public var description: String {
        switch self {
        case .closed:
            return "send on a closed channel: the value was not delivered"
        case .cancelled(let id):
            return "green thread \(id) was cancelled while it waited to send: the value was not delivered"
        case .notInKernel(let operation):
            return "\(operation) would wait, which needs a green thread: call it inside Kernel.run { ... }"
        }
    }
}
