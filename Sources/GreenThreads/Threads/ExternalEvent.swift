// ExternalEvent: a one-shot event that one thread waits for and any thread
// (a green thread, a worker, a plain OS thread, a Swift task on the
// cooperative pool) fires. It is how code outside the kernel wakes a green
// thread: GreenThread.await parks on one until its Task finishes, and the
// main green thread of a background kernel (Kernel.start) parks on one until
// `shutdown`.
//
// Invariants:
// - `word` goes from 0 (pending) to 1 (fired) once. On a green thread the
//   waiter reads it and `fire` writes it under the kernel lock of `kernel`,
//   so a fire either happens before the waiter checks (it does not park) or
//   finds it parked (`parked` set) and makes it ready: no lost wake-up.
// - The waiter sees the word set only after `fire` has released the kernel
//   lock, and `kernel` is a strong reference: a waiter that returns and
//   lets its kernel end cannot free the lock under a `fire` still using it.
// - While a green thread is parked here, `ExternalEvent.parkedCount` counts
//   it: the deadlock check (KernelCore.checkForDeadlock) does not call a
//   kernel deadlocked while something outside it may still wake a thread.
//
// Lock order: kernel lock only.
import CGreenCore
import Synchronization

final class ExternalEvent: @unchecked Sendable, WaitTarget {
    /// Green threads parked on external events (and OS threads holding a
    /// GreenLocked, which green threads may wait for): while it is not 0 an
    /// all-idle kernel is not deadlocked. Changed under the kernel lock, read
    /// by the deadlock check under it (relaxed: the lock orders them).
    static let parkedCount = Atomic<Int>(0)

    /// 0 pending, 1 fired; a futex word when the waiter is an OS thread.
    private let word: UnsafeMutablePointer<UInt32>
    /// The kernel whose lock guards `parked`; nil when the waiter is not a
    /// green thread (then the futex carries the wake-up).
    private let kernel: KernelCore?
    /// The green thread parked on this event (kernel lock).
    @exclusivity(unchecked) private var parked: GreenThread?

    /// An event for the calling thread to wait on.
    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: 0)
        kernel = currentGreenThread()?.kernel
    }

    deinit { word.deallocate() }

    /// Waits until the event fires. On a green thread only that thread
    /// parks; elsewhere the OS thread blocks in a futex.
    ///
    /// - Parameter cancellable: when true, a green thread that is or gets
    ///   cancelled (GreenThread.cancel) stops waiting.
    /// - Returns: true when fired, false when cancellation ended the wait.
    func wait(_ reason: WaitReason, cancellable: Bool) -> Bool {
        guard let me = currentGreenThread(), let kernel else {
            while gt_atomic_load_u32(word) == 0 {
                _ = gt_sys_futex_wait(word, 0, -1)  // EINTR and spurious wake-ups: the loop rechecks
            }
            return true
        }
        // A cancellation (GreenThread.cancel) calls `withdraw` below and
        // makes the thread ready; an uncancellable wait ends only by `fire`.
        let wait = ThreadWait(reason, objectID: UInt64(UInt(bitPattern: word)), target: self,
                              interruptible: cancellable)
        return kernel.withBlockingSection { () -> Bool in
            while gt_atomic_load_u32(word) == 0 {
                if cancellable && me.isCancelled { return false }
                parked = me
                ExternalEvent.parkedCount.add(1, ordering: .relaxed)
                _ = kernel.blockCurrent(on: wait)
                if parked != nil { unpark() }  // spurious: fire or cancel clear it
            }
            return true
        }
    }

    /// The parked thread is cancelled. Kernel lock held.
    func withdraw(_ thread: GreenThread) { unpark() }

    /// Kernel lock held.
    private func unpark() {
        parked = nil
        ExternalEvent.parkedCount.subtract(1, ordering: .relaxed)
    }

    /// Fires the event, waking its waiter. Callable from any thread, once or
    /// more (later calls do nothing).
    func fire() {
        guard let kernel else {
            gt_atomic_store_u32(word, 1)  // release: what the firer wrote before is visible to the waiter
            _ = gt_sys_futex_wake(word, 1)
            return
        }
        kernel.withCriticalLock {
            gt_atomic_store_u32(word, 1)
            if let thread = parked {
                unpark()
                kernel.makeReady(thread)
            }
        }
    }
}
