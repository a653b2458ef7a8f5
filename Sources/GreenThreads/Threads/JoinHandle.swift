// JoinHandle: waits for a spawned thread and hands back its result or error,
// from a green thread (`join()`) or from async code (`value`).
//
// Sendable, honestly: a handle is Sendable only when its result is, so
// Swift 6 rejects a non-Sendable result travelling to another thread through
// a shared handle (any number of joiners read the one result).
import CGreenCore
import Synchronization

/// Holds a thread's outcome until it is joined. Written once, by the thread
/// itself before it finishes; read by green joiners after they see it
/// finished (the kernel lock orders the two) and by async waiters, which it
/// resumes.
///
/// `stateLock` guards `stored` and `waiters`. It is a spin lock taken with
/// preemption disabled (gt_enter_critical): no green thread can be switched
/// out holding it, so no other green thread on that OS thread can spin on
/// it, and its holder on a plain OS thread holds it for a few stores. It is
/// never held while resuming a continuation.
///
/// The generic half is inlinable, so a caller's spawn and join are
/// specialized for its `T`: unspecialized, every copy of a `Result<T, _>?`
/// asks the runtime's metadata cache for its type (about an eighth of a
/// spawn+join, measured). The lock and the waiters live in the
/// non-generic base.
@usableFromInline
class JoinState: @unchecked Sendable {
    private let stateLock = Atomic<Bool>(false)
    // Unchecked exclusivity: these are guarded by `stateLock`; the
    // runtime's dynamic check costs a TLS lookup per access (seen in a
    // spawn+join profile).
    @usableFromInline @exclusivity(unchecked) final var waiters: [CheckedContinuation<Void, Never>] = []
    /// Set with the outcome (under the lock), for the non-generic checks.
    @usableFromInline @exclusivity(unchecked) final var isComplete = false

    @usableFromInline init() {}

    @usableFromInline final func lockState() {
        _ = gt_enter_critical()
        // Acquire pairs with the release below: the previous holder's stores are visible.
        while !stateLock.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            gt_cpu_relax()
        }
    }

    @usableFromInline final func unlockState() {
        stateLock.store(false, ordering: .releasing)
        KernelCore.exitCritical()
    }

    /// Blocks the calling green thread until `thread` has finished; outside
    /// a green thread, succeeds only if the outcome is already there.
    @usableFromInline final func waitUntilFinished(_ thread: GreenThread) throws {
        if gt_on_green_thread() != 0 {
            if GreenThread.current === thread { throw GreenThreadError.joinedSelf(threadID: thread.id) }
            if !thread.kernel.joinObservingCancellation(thread) {
                throw GreenThreadError.cancelled(threadID: GreenThread.current.id)
            }
            return
        }
        lockState()
        let complete = isComplete
        unlockState()
        if !complete { throw GreenThreadError.notInKernel(operation: "JoinHandle.join") }
    }

    /// Resumes async waiters taken from `waiters` under the lock (after it
    /// is released: a continuation may run code at once).
    @usableFromInline final func resume(_ list: [CheckedContinuation<Void, Never>]) {
        for w in list { w.resume() }
    }
}

@usableFromInline
final class JoinCompletion<T>: JoinState, @unchecked Sendable {
    @usableFromInline @exclusivity(unchecked) var stored: Result<T, any Error>?  // guarded by stateLock

    @inlinable override init() {}

    /// The outcome once the thread's body has returned or thrown.
    @inlinable var result: Result<T, any Error>? {
        get {
            lockState()
            defer { unlockState() }
            return stored
        }
        set { if let newValue { complete(newValue) } }
    }

    /// Records the outcome and resumes every async waiter.
    @inlinable func complete(_ outcome: Result<T, any Error>) {
        lockState()
        stored = outcome
        isComplete = true
        let list = waiters
        waiters = []
        unlockState()
        resume(list)
    }

    /// Suspends the calling task until the outcome is recorded.
    func waitAsync() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lockState()
            let ready = stored != nil
            if !ready { waiters.append(c) }
            unlockState()
            if ready { c.resume() }
        }
    }
}

/// A handle to a spawned green thread.
///
/// ```swift
/// try Kernel.run {
///     let h = try GreenThread.spawn(name: "compute") { try compute() }
///     print(h.thread.name, h.isFinished)   // compute false, most likely
///     print(try h.join())                  // rethrows compute()'s error
///     let idle = try GreenThread.spawn { GreenThread.sleep(for: .seconds(60)) }
///     idle.cancel()                        // its sleep ends at once
///     try idle.join()
/// }
/// ```
public struct JoinHandle<T> {
    /// The spawned thread.
    public let thread: GreenThread
    @usableFromInline let completion: JoinCompletion<T>

    @usableFromInline
    init(thread: GreenThread, completion: JoinCompletion<T>) {
        self.thread = thread
        self.completion = completion
    }

    /// Waits until the thread finishes and returns its result, rethrowing
    /// the error it threw. Any number of threads may join one thread.
    ///
    /// A joiner that is cancelled (`GreenThread.cancel()`) stops waiting
    /// and throws `GreenThreadError.cancelled`; the joined thread runs on.
    ///
    /// - Throws: the thread's error; `GreenThreadError.joinedSelf` when a
    ///   thread joins itself; `.cancelled` when the joiner is cancelled;
    ///   `.notInKernel` when called outside a kernel before the thread
    ///   finished (use `value` from async code).
    ///
    /// ```swift
    /// func totalSize(of files: [String]) throws -> Int {
    ///     let sizes = try files.map { f in try GreenThread.spawn { try size(of: f) } }
    ///     return try sizes.map { try $0.join() }.reduce(0, +)
    /// }
    /// ```
    @inlinable  // specialized in the caller, like spawn (JoinCompletion)
    public func join() throws -> T {
        try completion.waitUntilFinished(thread)
        guard let result = completion.result else {
            preconditionFailure("\(thread) finished without a result")
        }
        return try result.get()
    }

    /// Asks the thread to stop (`GreenThread.cancel()`).
    public func cancel() { thread.cancel() }

    /// Whether the thread has finished (a snapshot). Read under the kernel
    /// lock, which guards the thread's state (see `GreenThread.state`).
    public var isFinished: Bool { withSyncLock { _ in thread.runState == .finished } }
}

extension JoinHandle: @unchecked Sendable where T: Sendable {}

extension JoinHandle where T: Sendable {
    /// The thread's result, awaited from async code without blocking the
    /// calling OS thread (the task suspends; the thread's end resumes it).
    /// Usable from any task, inside or outside a kernel.
    ///
    /// Cancellation: if the awaiting task is cancelled, the green thread is
    /// cancelled too (`cancel()`), and `value` goes on waiting for the
    /// outcome the thread then produces (often `GreenThreadError.cancelled`
    /// or `CancellationError` from the waits it observes). It never returns
    /// before the thread's body has ended, so nothing is left running that
    /// the task believes finished.
    ///
    /// ```swift
    /// let kernel = try Kernel.start()
    /// let sum = try kernel.spawn { (1...100).reduce(0, +) }
    /// print(try await sum.value)   // 5050
    /// try await kernel.shutdown()
    /// ```
    public var value: T {
        get async throws {
            let thread = self.thread
            await withTaskCancellationHandler {
                await completion.waitAsync()
            } onCancel: {
                thread.cancel()
            }
            guard let result = completion.result else {
                preconditionFailure("\(thread) resumed its awaiters without a result")
            }
            return try result.get()
        }
    }
}

extension KernelCore {
    /// Blocks the current thread until `thread` has finished, or until the
    /// current thread is cancelled. Returns false when cancelled first.
    func joinObservingCancellation(_ thread: GreenThread) -> Bool {
        withBlockingSection { () -> Bool in
            let me = GreenThread.current
            while thread.runState != .finished {
                if me.isCancelled { return false }
                thread.joiners.append(me)
                // A cancellation (Cancellation.swift) takes us off the
                // joiners through the joined thread's `withdraw` below.
                _ = blockCurrent(on: ThreadWait(.join, objectID: thread.id, target: thread, interruptible: true))
            }
            return true
        }
    }
}

/// A thread is what its joiners wait on.
extension GreenThread: WaitTarget {
    /// A cancelled joiner leaves the joiners. Kernel lock held.
    func withdraw(_ thread: GreenThread) { joiners.remove(thread) }
    /// The joined thread must end for the joiner to go on.
    var waitOwner: GreenThread? { self }
}
