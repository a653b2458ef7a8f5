// Cancellation: a cooperative request that a green thread stop. Like a Swift
// Task's, it is a flag the thread observes, never a forced stop: a thread
// runs on until it reaches a point that checks the flag.
//
// Which waits observe it. A wait is interrupted by cancellation when it can
// end without its event and say so through its signature:
//   - `GreenThread.sleep(for:)` returns early (and does not sleep at all on
//     a cancelled thread);
//   - `JoinHandle.join()` throws `GreenThreadError.cancelled`;
//   - `GreenThread.await` cancels its Task and returns what the Task does;
//   - every timed wait (`GreenMutex.lock(timeout:)`,
//     `GreenCondition.wait(_:timeout:)`, `GreenSemaphore.wait(timeout:)`)
//     ends as if its timeout passed: it returns false;
//   - `GreenMutex.lock()` (and so `withLock`, `GreenLocked.withLock`)
//     throws `GreenMutexError.cancelled` without acquiring (a free mutex is
//     still taken: only waiting is refused);
//   - the untimed `GreenCondition.wait(_:)` throws
//     `GreenMutexError.conditionWaitCancelled` once it has retaken the
//     mutex (its retaking ignores cancellation on purpose: the caller holds
//     the mutex whenever the wait returns or reports a cancellation);
//   - `GreenSemaphore.waitUnlessCancelled()` throws
//     `GreenThreadError.cancelled` without a permit (an available one is
//     still taken);
//   - `GreenChannel.send` throws `GreenChannelError.cancelled` (the value is
//     not delivered) and `receive` returns nil.
// Not interrupted: `GreenSemaphore.wait()`, which cannot report failure
// (returning would claim a permit it does not have; its signature is binding
// since issue 5): `waitUnlessCancelled()` is its cancellable form.
//
// Mechanism: a wait is interruptible exactly when the thread sleeps or its
// `ThreadWait` says so (`interruptible`: timed waits and the cancellable
// ones above). `cancel()` calls `wait.target.withdraw(thread)`, the object's
// own way to take the thread off the queue or slot it waits in
// (WaitRecord.swift), and makes the thread ready under the kernel lock: the
// path the monitor takes when a deadline passes. `blockCurrent` refuses to
// start such a wait on a thread already cancelled.
import CGreenCore
import Synchronization

extension GreenThread {
    /// Whether `cancel()` was called on this thread. Never reset.
    ///
    /// ```swift
    /// func work(on chunks: [Int]) {
    ///     for chunk in chunks where !GreenThread.current.isCancelled { process(chunk) }
    /// }
    /// ```
    public var isCancelled: Bool { cancellationRequested.load(ordering: .acquiring) }

    /// Asks the thread to stop: sets `isCancelled` and ends the waits that
    /// observe cancellation, the one it is in now included (docs/async.md,
    /// "Cancellation", lists them; `GreenSemaphore.wait()` is the one that
    /// does not).
    /// Callable from any thread, a task or a plain OS thread included, also
    /// after the thread finished (then it does nothing).
    ///
    /// ```swift
    /// try Kernel.run {
    ///     let poller = try GreenThread.spawn {
    ///         while !GreenThread.current.isCancelled { GreenThread.sleep(for: .seconds(1)) }
    ///     }
    ///     GreenThread.sleep(for: .milliseconds(50))
    ///     poller.thread.cancel()         // its sleep ends now, not in up to a second
    ///     try poller.join()
    /// }
    /// ```
    public func cancel() {
        // Release: what the canceller wrote before is visible to a thread
        // that sees the flag.
        guard !cancellationRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // withSyncLock finds the running kernel from any thread. A thread
        // that has not finished belongs to it (one kernel runs at a time, and
        // every thread of an earlier one finished or was abandoned as
        // finished); `kernel` is not read: it may name a kernel that is gone.
        withSyncLock { running in
            guard let running, runState != .finished else { return }
            interruptCancellableWait(running)
        }
    }

    /// Ends the wait this thread is in if it observes cancellation. Kernel lock held.
    private func interruptCancellableWait(_ kernel: KernelCore) {
        switch runState {
        case .sleeping:
            kernel.makeReady(self, reason: .timedOut)
        case .blocked where wait?.interruptible == true:
            wait?.target?.withdraw(self)
            kernel.makeReady(self, reason: .timedOut)  // clears `wait`: no second withdraw
        default:
            break  // running, ready or finished; or a wait that ignores cancellation (see the file header)
        }
    }

    /// Throws `GreenThreadError.cancelled` if the calling green thread was
    /// cancelled; does nothing outside a green thread.
    ///
    /// ```swift
    /// func work(on chunks: [Int]) throws {
    ///     for chunk in chunks {
    ///         try GreenThread.checkCancellation()
    ///         process(chunk)
    ///     }
    /// }
    /// ```
    public static func checkCancellation() throws(GreenThreadError) {
        guard let me = currentGreenThread(), me.isCancelled else { return }
        throw GreenThreadError.cancelled(threadID: me.id)
    }

    /// Whether a block of `state` for `wait` observes cancellation and this
    /// thread is cancelled: then it must not start. Kernel lock held.
    func refusesToBlock(state: State, _ wait: ThreadWait) -> Bool {
        (state == .sleeping || wait.interruptible) && isCancelled
    }
}
