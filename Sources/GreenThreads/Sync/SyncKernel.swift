// SyncKernel: how the sync primitives reach the scheduler. They use only
// the interface Scheduler.swift offers (withCriticalLock, blockCurrent,
// makeReady, updateEffectivePriority); this file adds the small glue they
// share: finding the kernel lock from any thread, the bracket around a
// blocking call and the queued wait with its early end (`withdrawWaiter`),
// object identities, and deadlines.
//
// Which lock guards a sync object: the kernel lock of the running kernel.
// One kernel runs at a time in a process, so that is one lock for all
// objects, the same one that guards the run queue; a wait-queue change and
// the wake-up it causes are therefore one atomic step (no lost wake-up).
//
// Lock order: KernelCore.running (only for callers on OS threads that are
// not green threads) -> kernel lock.
//
// Who may call what: an operation that can finish without waiting (signal,
// close, tryLock, a send into a buffered channel with room) works from any
// thread, a plain OS thread included, while a kernel runs. An operation that
// must wait needs a green thread: the throwing ones throw `notInKernel`, the
// non-throwing ones (GreenSemaphore.wait, GreenChannel.receive) stop the
// program with a message saying so, since waiting would hang the OS thread
// with nobody able to wake it.
import CGreenCore
import Synchronization

/// Identities of sync objects: unique for the process's life.
enum SyncObjectIDs {
    private static let next = Atomic<UInt64>(1)
    static func make() -> UInt64 { next.add(1, ordering: .relaxed).oldValue }
}

/// The green thread running this code, or nil on any other OS thread.
@inline(__always)
func currentGreenThread() -> GreenThread? {
    guard let raw = gt_current_owner() else { return nil }
    return Unmanaged<GreenThread>.fromOpaque(raw).takeUnretainedValue()
}

/// CLOCK_MONOTONIC nanoseconds `timeout` from now, saturating.
func syncDeadline(after timeout: Duration) -> Int64 {
    let now = gt_clock_monotonic_ns()
    let ns = timeout.nanosecondsClamped
    return ns > Int64.max - now ? Int64.max : now + ns
}

/// Runs `body` with the lock that guards every sync object held, from any
/// thread. On a green thread: its kernel's lock, in a critical section. On
/// another OS thread: the running kernel's lock, or, when no kernel runs,
/// only `KernelCore.running` (no green thread exists to race with, and
/// holding it keeps a kernel from starting meanwhile). `body` gets the
/// kernel (nil when none runs) and must not block.
func withSyncLock<R>(_ body: (KernelCore?) -> R) -> R {
    if let raw = gt_current_owner() {
        // Unretained: the running thread and its kernel are alive; signal,
        // close and the other wakers take this path on every call.
        return Unmanaged<GreenThread>.fromOpaque(raw)._withUnsafeGuaranteedRef { me in
            me.kernelRef._withUnsafeGuaranteedRef { kernel in kernel.withCriticalLock { body(kernel) } }
        }
    }
    // Mutex.withLock wants a `sending` result; R leaves through a box that
    // never escapes this frame.
    let box = ResultBox<R>()
    KernelCore.running.withLock { running in
        if let kernel = running {
            box.result = kernel.withCriticalLock { body(kernel) }
        } else {
            box.result = body(nil)
        }
    }
    return box.result!
}

private final class ResultBox<R>: @unchecked Sendable {
    var result: R?
}

extension KernelCore {
    /// The bracket around code that may block the current green thread:
    /// raises the critical count to exactly 1 (callers are never inside a
    /// critical section: sync primitives are called from thread code) and
    /// takes the kernel lock, the state `blockCurrent` requires, and undoes
    /// both afterwards. `body` runs with the lock held and may call
    /// `blockCurrent` any number of times.
    @inline(__always)
    func withBlockingSection<R>(_ body: () -> R) -> R {
        _ = gt_enter_critical()
        lock.lock()
        let result = body()
        lock.unlock()
        KernelCore.exitCritical()
        return result
    }

    /// Blocks the current thread, queued as `waiter` (its own, reused
    /// entry), until whoever dequeues it sets its outcome and makes it
    /// ready, or until `deadline`. Kernel lock held at critical count 1
    /// (inside `withBlockingSection`); the caller has already inserted
    /// `waiter` into its object's queue. A timeout (the monitor) or, for a
    /// `cancellable` wait, `GreenThread.cancel()` (Threads/Cancellation.swift)
    /// ends the wait through the object's `withdraw`, which calls
    /// `withdrawWaiter` below: outcome `.timedOut` (issue 14). Timed waits
    /// are always cancellable.
    func blockAsWaiter(_ waiter: SyncWaiter, on object: any SyncWaitObject, _ reason: WaitReason, objectID: UInt64,
                       deadline: Int64?, cancellable: Bool = false) -> WaitOutcome {
        blockAsWaiter(waiter, on: UnretainedExistential(object as any WaitTarget), reason, objectID: objectID,
                      deadline: deadline, cancellable: cancellable)
    }

    /// The same, with the object's existential words made ahead (GreenChannel).
    func blockAsWaiter(_ waiter: SyncWaiter, on object: UnretainedExistential<any WaitTarget>, _ reason: WaitReason,
                       objectID: UInt64, deadline: Int64?, cancellable: Bool = false) -> WaitOutcome {
        // `object` is the caller's own (it is running a method of it), and
        // the thread is reached unretained: no retain/release here.
        waiter.threadRef._withUnsafeGuaranteedRef { $0.syncWaiter = waiter }
        let wait = ThreadWait(reason, objectID: objectID, targetWords: object,
                              interruptible: deadline != nil || cancellable)
        let wake = blockCurrent(on: wait, deadline: deadline)
        let stillQueued = waiter.threadRef._withUnsafeGuaranteedRef { $0.syncWaiter != nil }
        precondition(!stillQueued && waiter.outcome != .waiting,
                     "\(waiter.thread) woke (\(wake)) from \(reason.kind) 0x\(String(objectID, radix: 16)) "
                        + "still queued, outcome \(waiter.outcome)")
        waiter.objectWords = nil
        return waiter.outcome
    }

    /// The shared half of a sync object's `withdraw`: ends `thread`'s wait
    /// with `.timedOut` and returns its entry, for the object to take off
    /// its queue. Kernel lock held; the thread is queued on that object.
    func withdrawWaiter(_ thread: GreenThread) -> SyncWaiter {
        guard let waiter = thread.syncWaiter else {
            preconditionFailure("\(thread) withdrawn from a sync object it is not queued on")
        }
        waiter.outcome = .timedOut
        thread.syncWaiter = nil
        return waiter
    }

    /// Takes `waiter` off duty with `outcome` and makes its thread ready.
    /// The caller has removed it from its queue. Kernel lock held.
    func serve(_ waiter: SyncWaiter, _ outcome: WaitOutcome) {
        waiter.outcome = outcome
        // Guaranteed: a queued thread is alive (the registry keeps it).
        waiter.threadRef._withUnsafeGuaranteedRef { thread in
            thread.syncWaiter = nil
            makeReady(thread)
        }
    }

    /// The same for an entry just taken off its queue, unretained.
    @inline(__always)
    func serve(_ waiter: Unmanaged<SyncWaiter>, _ outcome: WaitOutcome) {
        waiter._withUnsafeGuaranteedRef { serve($0, outcome) }
    }
}

extension GreenThread {
    /// What the thread is blocked on right now (kind, object, owner if
    /// any), or nil when it is not blocked: a snapshot, read under the
    /// kernel lock. Sync primitives record it on every blocking call.
    ///
    /// ```swift
    /// func whyStuck(_ thread: GreenThread) {
    ///     if let wait = thread.waitingOn {
    ///         print("\(thread.name) waits on \(wait)")   // "high waits on mutex 0x3 held by thread 2 'low'"
    ///     }
    /// }
    /// ```
    public var waitingOn: WaitRecord? {
        // Built here, from the control block's allocation-free ThreadWait.
        withSyncLock { _ in runState == .blocked || runState == .sleeping ? wait?.record() : nil }
    }
}
