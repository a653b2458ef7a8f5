// JoinHandle: waits for a spawned thread and hands back its result or error.
import CGreenCore

/// Holds a thread's outcome until it is joined. Written once by the thread
/// itself before it finishes; read by joiners after they see it finished
/// (the kernel lock orders the two).
@usableFromInline
final class JoinCompletion<T>: @unchecked Sendable {
    @usableFromInline var result: Result<T, any Error>?
    @usableFromInline init() {}
}

/// A handle to a spawned green thread.
///
/// ```swift
/// let h = try GreenThread.spawn { try compute() }
/// let value = try h.join()   // rethrows compute()'s error
/// ```
public struct JoinHandle<T>: @unchecked Sendable {
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
    /// - Throws: the thread's error; `GreenThreadError.joinedSelf` when a
    ///   thread joins itself; `GreenThreadError.notInKernel` when called
    ///   outside a kernel before the thread finished.
    ///
    /// ```swift
    /// let sizes = try files.map { f in try GreenThread.spawn { try size(of: f) } }
    /// let total = try sizes.map { try $0.join() }.reduce(0, +)
    /// ```
    public func join() throws -> T {
        if gt_on_green_thread() != 0 {
            if GreenThread.current === thread { throw GreenThreadError.joinedSelf(threadID: thread.id) }
            thread.kernel.join(thread)
        } else if completion.result == nil {
            throw GreenThreadError.notInKernel(operation: "JoinHandle.join")
        }
        guard let result = completion.result else {
            preconditionFailure("\(thread) finished without a result")
        }
        return try result.get()
    }

    /// Whether the thread has finished (a snapshot).
    public var isFinished: Bool { thread.runState == .finished }
}
