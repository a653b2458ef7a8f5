// ThreadGroup: structured green threads. `withThreadGroup` gives its body a
// group to spawn into and does not return before every thread spawned in it
// has finished: no thread outlives the scope that started it, as with a
// Swift TaskGroup.
//
// Errors: the first error a member throws (in time, not in spawn order)
// cancels every other member (`GreenThread.cancel()`: a cooperative request
// they observe at their next sleep, join, await, timed wait or
// checkCancellation) and is rethrown by `withThreadGroup` once all have
// finished. An error thrown by the body itself cancels the members too and
// takes precedence. Cancelling the thread that runs `withThreadGroup`
// cancels the members.
//
// Invariants (guarded by the kernel lock, through withSyncLock):
// - `members` lists every thread spawned in the group, in spawn order;
//   `joined` of them have been joined. Once `closed`, spawning throws.
// - `firstError` is set once, by the first member that throws.
// - Threads are cancelled outside the lock (cancel takes it itself).
import CGreenCore

/// The threads of one `withThreadGroup` scope. Spawn into it with `spawn`;
/// members may spawn further members (the group is Sendable).
///
/// ```swift
/// try Kernel.run {
///     let found = GreenLocked<Int?>(nil)
///     try withThreadGroup { group in
///         for shard in 0..<4 {
///             try group.spawn(name: "search-\(shard)") {
///                 guard shard == 2 else { return GreenThread.sleep(for: .seconds(5)) }   // the slow shards
///                 try found.withLock { $0 = shard }
///                 group.cancelAll()          // the others' sleeps end now
///             }
///         }
///     }
///     print(try found.withLock { $0 } ?? -1)  // 2
/// }
/// ```
public final class GreenThreadGroup: @unchecked Sendable {
    // --- kernel lock ---
    @exclusivity(unchecked) private var members: [GreenThread] = []
    @exclusivity(unchecked) private var firstError: (any Error)?
    @exclusivity(unchecked) private var closed = false
    @exclusivity(unchecked) private var cancelled = false
    /// Spawns that passed the `closed` check and have not yet appended.
    @exclusivity(unchecked) private var spawnsInFlight = 0

    fileprivate init() {}

    /// Spawns a member. Same parameters as `GreenThread.spawn`.
    ///
    /// - Throws: `GreenThreadError.threadGroupEnded` once the scope has ended;
    ///   what `GreenThread.spawn` throws.
    @discardableResult
    public func spawn<T>(name: String? = nil, priority: Priority = .normal, stackSize: Int? = nil,
                         _ body: sending @escaping () throws -> T) throws -> JoinHandle<T> {
        let open = withSyncLock { _ -> Bool in
            guard !closed else { return false }
            spawnsInFlight += 1
            return true
        }
        guard open else { throw GreenThreadError.threadGroupEnded }
        let handle: JoinHandle<T>
        do {
            handle = try GreenThread.spawn(name: name, priority: priority, stackSize: stackSize) { [self] in
            do {
                return try body()
            } catch {
                memberFailed(error)
                throw error
            }
        }
        } catch {
            withSyncLock { _ in spawnsInFlight -= 1 }
            throw error
        }
        let cancelNow = withSyncLock { _ -> Bool in
            members.append(handle.thread)
            spawnsInFlight -= 1
            return cancelled
        }
        if cancelNow { handle.thread.cancel() }
        return handle
    }

    /// Cancels every member (a cooperative request).
    public func cancelAll() {
        let threads = withSyncLock { _ -> [GreenThread] in
            cancelled = true
            return members
        }
        for t in threads { t.cancel() }
    }

    private func memberFailed(_ error: any Error) {
        let first = withSyncLock { _ -> Bool in
            guard firstError == nil else { return false }
            firstError = error
            return true
        }
        if first { cancelAll() }
    }

    /// Joins members until none is left unjoined, then closes the group.
    /// Cancelling the joining thread cancels the members; the joins go on.
    fileprivate func joinAll(_ kernel: KernelCore) {
        enum Step { case join(GreenThread), wait, done }
        var next = 0
        while true {
            let step = withSyncLock { _ -> Step in
                if next < members.count { return .join(members[next]) }
                // A member between its check and its append: let it finish.
                if spawnsInFlight > 0 { return .wait }
                closed = true
                return .done
            }
            let member: GreenThread
            switch step {
            case .join(let m): member = m
            case .wait: GreenThread.yield(); continue
            case .done: return
            }
            if !kernel.joinObservingCancellation(member) {
                cancelAll()
                kernel.join(member)
            }
            next += 1
        }
    }

    fileprivate var error: (any Error)? { withSyncLock { _ in firstError } }
}

/// Runs `body` with a group of green threads and returns once every thread
/// spawned into it has finished.
///
/// ```swift
/// try Kernel.run {
///     let results = GreenLocked([Int]())
///     try withThreadGroup { group in
///         for i in 1...4 {
///             try group.spawn { try results.withLock { $0.append(i * i) } }
///         }
///     }
///     print(try results.withLock { $0.sorted() })   // [1, 4, 9, 16]
/// }
/// ```
///
/// - Throws: the body's error, else the first error a member threw (the
///   other members are cancelled when it is thrown);
///   `GreenThreadError.notInKernel` outside a green thread.
public func withThreadGroup<R>(_ body: (GreenThreadGroup) throws -> R) throws -> R {
    guard let me = currentGreenThread() else { throw GreenThreadError.notInKernel(operation: "withThreadGroup") }
    let group = GreenThreadGroup()
    let outcome = Result { try body(group) }
    if case .failure = outcome { group.cancelAll() }
    if me.isCancelled { group.cancelAll() }
    group.joinAll(me.kernel)
    if case .failure(let error) = outcome { throw error }
    if let error = group.error { throw error }
    return try outcome.get()
}
