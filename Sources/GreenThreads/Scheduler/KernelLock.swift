// KernelLock: the lock that guards the scheduler's shared state (run queue,
// idle workers, timers, thread registry, wait queues).
//
// Why not Synchronization.Mutex: this lock is taken by one green thread and
// released by another context on the same OS thread (a switch hands the held
// lock to whichever context resumes, which releases it after the outgoing
// context is saved), which Mutex's scoped withLock cannot express.
//
// A priority-inheriting futex (CGreenCore/state.c: the word holds the
// owner's tid): a waiter that sleeps on it lends its OS priority to the
// owner. The monitor runs SCHED_FIFO and takes this lock on every wake-up;
// with a plain futex, a worker that the OS took off the CPU while holding
// it kept the monitor waiting until the OS's next tick (4 ms), which was
// the whole tail of the priority wake-up latency. Lock and unlock always
// happen on one OS thread (the switch protocol hands the lock between
// contexts of one Machine), as a PI futex requires.
//
// Holders are always inside a critical section (preemption disabled), so a
// holder is never preempted by us while others spin or sleep on it, and the
// SIGVTALRM handler can take it: the interrupted code on that OS thread
// cannot hold it.
import CGreenCore

final class KernelLock: @unchecked Sendable {
    // The futex word needs a stable address: see the note above gt_atomic_*.
    private let word: UnsafeMutablePointer<UInt32>

    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: 0)
    }

    deinit { word.deallocate() }

    @inline(__always)
    func lock() { gt_pi_lock(word) }

    /// One attempt, without waiting: for the crash dump, whose signal
    /// handler must not block on a lock the crashed thread may hold.
    func tryLock() -> Bool { gt_pi_try_lock(word) != 0 }

    @inline(__always)
    func unlock() { gt_pi_unlock(word) }

    /// Lets `gt_kernel_lock_held_by_caller` find this word (the test host's
    /// lock audit asks it).
    func noteAsRunningKernelLock() { gt_note_kernel_lock(word) }
    static func noteNoKernelRunning() { gt_note_kernel_lock(nil) }
}
