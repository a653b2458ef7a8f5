// GreenThread.await: the bridge from a green thread to async code. The
// operation runs as a Swift Task on the concurrency runtime's own threads,
// never inline on the green thread: a task's state (its current task,
// task-locals, executor) belongs to the OS thread it runs on, which green
// threads share and migrate between (BRIEF hazard 8). Only the calling green
// thread parks, on an ExternalEvent that the Task fires when it finishes, so
// its worker goes on running other green threads meanwhile.
//
// Invariant: the Task writes `outcome` before it fires the event, and the
// waiter reads it after the event fired (the kernel lock, or the futex word's
// release/acquire outside a kernel, orders the two).
import CGreenCore

/// The Task's outcome, handed to the waiting thread (see the invariant).
private final class AwaitOutcome<T: Sendable>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

extension GreenThread {
    /// Runs an async operation from a green thread and returns its result,
    /// parking only the calling green thread until it finishes.
    ///
    /// The operation runs as a `Task` whose priority follows the caller's
    /// effective priority (levels 0-7 `.background`, 8-15 `.utility`,
    /// 16-23 `.medium`, 24-31 `.high`). If the calling thread is cancelled
    /// (`cancel()`) while it waits, the Task is cancelled and `await` goes
    /// on waiting for what it returns or throws (for `Task.sleep`, a
    /// `CancellationError`).
    ///
    /// Outside a green thread it blocks the calling OS thread until the
    /// operation finishes, as `sleep` and `yield` act outside a kernel; never
    /// call it so from a task on the cooperative pool, which it would block.
    ///
    /// ```swift
    /// try Kernel.run {
    ///     let page = try GreenThread.await {
    ///         try await Task.sleep(for: .milliseconds(10))
    ///         return "fetched"
    ///     }
    ///     print(page)
    /// }
    /// ```
    ///
    /// - Throws: the operation's error.
    public static func `await`<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = AwaitOutcome<T>()
        let done = ExternalEvent()
        let priority = currentGreenThread().map { TaskPriority(greenLevel: $0.effectivePriorityLevel) }
        let task = Task(priority: priority) {
            do {
                outcome.result = .success(try await operation())
            } catch {
                outcome.result = .failure(error)
            }
            done.fire()
        }
        if !done.wait(.await, cancellable: true) {
            task.cancel()
            _ = done.wait(.await, cancellable: false)
        }
        guard let result = outcome.result else {
            preconditionFailure("GreenThread.await: the task fired its event without a result")
        }
        return try result.get()
    }
}

extension TaskPriority {
    /// The task priority for a green-thread priority level: the 32 levels
    /// fall into the four bands Swift's runtime distinguishes, in order.
    init(greenLevel level: Int) {
        switch level {
        case ..<Priority.low.level: self = .background
        case ..<Priority.normal.level: self = .utility
        case ..<Priority.high.level: self = .medium
        default: self = .high
        }
    }
}
