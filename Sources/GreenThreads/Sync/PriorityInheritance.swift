// PriorityInheritance: the chain walk. A thread's effective priority is
//
//     effective = max(base, inherited)
//     inherited = max over the PI mutexes it holds that have waiters
//                 of the effective priority of their top waiter   (-1: none)
//
// and because a waiter's effective priority may itself be inherited, the
// rule is transitive: T1 waits for M1 held by T2, which waits for M2 held by
// T3: T3 runs at least at T1's priority. This file keeps that equation true
// after every event that can change a term of it, anywhere along a chain:
//
//   event                                   where the walk starts
//   a waiter queues (lock)                  the mutex it queues on
//   the top waiter leaves (timeout)         that mutex, before its
//                                           hasWaiters bit is cleared
//   unlock, in any order                    handOff: old and new owner
//   owner death                             handOff, from ThreadExit.swift
//   setPriority of a queued waiter          Scheduler.updateEffectivePriority
//                                           -> syncWaiterPriorityChanged
//   setPriority of an owner                 the same, or the run queue
//
// Unlike FreeRTOS (which restores the base priority only when a task
// releases its last mutex) and Zephyr (whose k_mutex assumes LIFO release
// and walks no chain), `inherited` is recomputed from every mutex still held
// (`contendedMutexes`), so a release in any order drops the priority to
// exactly what the remaining waiters require. Like Linux's rt_mutex, the
// walk is iterative and bounded (`GreenMutex.maxChainDepth`, Linux's
// max_lock_depth) and stops as soon as a link's priority does not change
// (nothing further up can change either).
//
// Deadlock detection walks the same chain (owner -> the mutex that owner
// waits for -> its owner ...) before a locker queues: a walk that comes back
// to the locker is a cycle. It must see the whole chain, so unlike the boost
// walk it never stops early; it is bounded by the same limit. Cycles can
// only be closed by a thread starting to wait: a handoff gives the mutex to a
// thread that stops waiting, so it adds no edge out of a waiting thread.
//
// Everything here runs with the kernel lock held; the walk changes run-queue
// levels and preempts through Scheduler.updateEffectivePriority only.
import CGreenCore
import Synchronization

extension KernelCore {
    /// The inherited level `thread` should have, from its held PI mutexes
    /// with waiters. Kernel lock held.
    func computedInheritedLevel(of thread: GreenThread) -> Int {
        var level = -1
        for mutex in thread.contendedMutexes { level = max(level, mutex.waiters.topLevel) }
        return level
    }

    /// Recomputes `thread`'s inherited level and lets the scheduler apply
    /// the change (run-queue level, preemption, or its place in the queue it
    /// waits in). Kernel lock held.
    func recomputeInheritance(of thread: GreenThread) {
        thread.inheritedPriorityLevel = computedInheritedLevel(of: thread)
        updateEffectivePriority(of: thread)
    }

    /// `mutex`'s waiters changed (one arrived, left, or moved): keep it on
    /// `owner`'s `contendedMutexes` exactly while it has waiters, then walk
    /// the chain from it. Kernel lock held, and `mutex`'s hasWaiters bit
    /// still set: while it is set only kernel-lock holders change the owner
    /// word, so `owner` (read by the caller under that same condition) is
    /// the owner throughout. A caller that cleared the bit first would let
    /// the owner unlock lock-free in between, and the old owner would keep
    /// the boost (the stale-boost bug of issue 10). The owner is passed, not
    /// re-read, so the walk cannot start from whoever holds the mutex next.
    func mutexWaitersChanged(_ mutex: GreenMutex, owner: GreenThread) {
        precondition(mutex.word.load(ordering: .relaxed) & GreenMutex.hasWaiters != 0,
                     "\(mutex): waiters changed with hasWaiters clear (owner \(owner)): recompute before clearing it")
        guard mutex.priorityInheritance else { return }
        let listed = owner.contendedMutexes.containsAny { $0 === mutex }
        if mutex.waiters.isEmpty {
            if listed { owner.contendedMutexes.removeEvery { $0 === mutex } }
        } else if !listed {
            owner.contendedMutexes.append(mutex)
        }
        propagatePriority(from: mutex, owner: owner)
    }

    /// Scheduler hook: `thread`, queued on a sync object, changed effective
    /// priority (setPriority, or inheritance through a mutex it holds).
    /// Moves it in that queue; if the object is a mutex, the change flows on
    /// to the mutex's owner. Kernel lock held.
    func syncWaiterPriorityChanged(_ thread: GreenThread) {
        guard let waiter = thread.syncWaiter else { return }
        waiter.object.requeue(waiter)
        // A queued waiter keeps the mutex's hasWaiters bit set: the owner
        // word is stable under the kernel lock.
        if let mutex = waiter.object.asMutex, let owner = mutex.ownerThread {
            propagatePriority(from: mutex, owner: owner)
        }
    }

    /// The chain walk: `start`'s top waiter may have changed; bring the
    /// owners along the chain up to date, from `startOwner` (the owner of
    /// `start`, passed by the caller: see mutexWaitersChanged). Kernel lock
    /// held. Every later link is a mutex some owner waits for, so it has
    /// waiters and its hasWaiters bit set, and its owner word is stable.
    func propagatePriority(from start: GreenMutex, owner startOwner: GreenThread) {
        var mutex = start
        var nextOwner: GreenThread? = startOwner
        for _ in 0..<GreenMutex.maxChainDepth {
            // 1. Only a held mutex with inheritance lends priority.
            guard mutex.priorityInheritance, let owner = nextOwner else { return }
            // 2. The owner's inherited level, from every PI mutex it still
            //    holds (not only this one: any release order stays exact).
            let inherited = computedInheritedLevel(of: owner)
            // 3. Unchanged: nothing further up can change. Stop.
            guard inherited != owner.inheritedPriorityLevel else { return }
            owner.inheritedPriorityLevel = inherited
            // 4. An owner that is not waiting for a mutex ends the chain: the
            //    scheduler applies its new level (moves it in the run queue
            //    and preempts a lower running thread at once if it is ready,
            //    yields if it runs and now ranks below a ready thread, or
            //    requeues it in a condition/semaphore/channel queue).
            guard let waiter = owner.syncWaiter, let next = waiter.object.asMutex else {
                updateEffectivePriority(of: owner)
                return
            }
            // 5. The owner waits for `next`: apply its effective level here
            //    (a blocked thread is in no run queue), move it to its new
            //    place in `next`'s queue, and continue with `next`'s owner.
            //    Done inline rather than through updateEffectivePriority so
            //    that the walk stays a loop, not a recursion.
            let effective = max(owner.basePriorityLevel, inherited)
            guard effective != owner.effectivePriorityLevel else { return }
            owner.effectivePriorityLevel = effective
            next.waiters.requeue(waiter)
            mutex = next
            nextOwner = next.ownerThread
        }
        // Longer than the bound: lock() refuses to start such a chain
        // (chainError), but a chain can still grow at its running end. The
        // threads beyond the bound keep their priority until a walk reaches
        // them, as in Linux.
        KernelCore.warnChainTruncatedOnce(at: start)
    }

    /// Deadlock detection: whether `me` waiting for `mutex` would close a
    /// wait-for cycle, or make a chain longer than the walk's bound. Walks
    /// owner -> the mutex it waits for -> that mutex's owner ... to the end.
    /// Kernel lock held; changes nothing.
    func chainError(locking mutex: GreenMutex, by me: GreenThread) -> GreenMutexError? {
        var current = mutex
        for _ in 0..<GreenMutex.maxChainDepth {
            guard let owner = current.ownerThread else { return nil }
            if owner === me { return .deadlock(cycle: cycle(from: mutex, by: me)) }
            guard let next = owner.syncWaiter?.object.asMutex else { return nil }
            current = next
        }
        return .chainTooDeep(limit: GreenMutex.maxChainDepth, mutex: mutex.identity)
    }

    /// The links of the cycle that `chainError` found: `me` waits for
    /// `mutex`, its owner waits for the next mutex, ..., back to `me`.
    private func cycle(from mutex: GreenMutex, by me: GreenThread) -> [GreenMutexError.WaitLink] {
        var links = [GreenMutexError.WaitLink(thread: ThreadIdentity(me), mutex: mutex.identity)]
        var current = mutex
        while let owner = current.ownerThread, owner !== me, let next = owner.syncWaiter?.object.asMutex {
            links.append(.init(thread: ThreadIdentity(owner), mutex: next.identity))
            current = next
        }
        return links
    }

    private static let chainWarningGiven = Atomic<Bool>(false)

    private static func warnChainTruncatedOnce(at mutex: GreenMutex) {
        guard !chainWarningGiven.exchange(true, ordering: .relaxed) else { return }
        gt_write_stderr("GreenThreads: a priority-inheritance walk from \(mutex) passed "
            + "GreenMutex.maxChainDepth (\(GreenMutex.maxChainDepth)) blocked owners and stopped there\n")
    }
}
