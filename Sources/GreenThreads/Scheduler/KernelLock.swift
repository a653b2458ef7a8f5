// KernelLock: the lock that guards the scheduler's shared state (run queue,
// idle workers, timers, thread registry, wait queues).
//
// Why not Synchronization.Mutex: this lock is taken by one green thread and
// released by another context on the same OS thread (a switch hands the held
// lock to whichever context resumes, which releases it after the outgoing
// context is saved), which Mutex's scoped withLock cannot express.
//
// Three-state futex lock (0 free, 1 held, 2 held with waiters). Holders are
// always inside a critical section (preemption disabled), so a holder is
// never preempted while others spin or sleep on it, and the SIGVTALRM
// handler can take it: the interrupted code on that OS thread cannot hold it.
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
    func lock() {
        if gt_atomic_cas_u32(word, 0, 1) != 0 { return }
        lockContended()
    }

    @inline(never)
    private func lockContended() {
        // Spin briefly: holders keep the lock for a few hundred nanoseconds.
        for _ in 0..<100 {
            if gt_atomic_load_u32(word) == 0, gt_atomic_cas_u32(word, 0, 1) != 0 { return }
            gt_cpu_relax()
        }
        while gt_atomic_exchange_u32(word, 2) != 0 {
            _ = gt_sys_futex_wait(word, 2, -1)
        }
    }

    /// One attempt, without waiting: for the crash dump, whose signal
    /// handler must not block on a lock the crashed thread may hold.
    func tryLock() -> Bool { gt_atomic_cas_u32(word, 0, 1) != 0 }

    @inline(__always)
    func unlock() {
        if gt_atomic_exchange_u32(word, 0) == 2 {
            _ = gt_sys_futex_wake(word, 1)
        }
    }
}
