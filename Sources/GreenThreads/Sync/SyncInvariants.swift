// SyncInvariants: executable statements of the sync kit's invariants.
//
// Debug builds check the objects an operation touched after every contended
// mutex step (`debugVerify`: the mutex, its queue, and its chain of owners)
// and stop with a precondition failure naming the broken invariant. Tests
// and debugging sessions can check the whole kernel at any moment with
// `SyncInvariants.violations()`.
//
// What is checked:
// - priority: every thread's inherited level equals the recomputed one (the
//   top waiters of the PI mutexes it holds), and effective = max(base,
//   inherited);
// - bookkeeping: `contendedMutexes` lists exactly the PI mutexes the thread
//   owns that have waiters; a queued thread's `syncWaiter` is its entry and
//   its wait names the object that queues it; every joiner listed on a
//   thread is blocked joining that thread (a cancelled joiner withdrew);
// - queues: sorted by effective priority, FIFO within a level, each entry
//   keyed by its thread's current effective priority, every queued thread
//   blocked;
// - no lost wake-up: a mutex with waiters has an owner and its hasWaiters
//   bit set; a semaphore with waiters has no permit; a channel has no
//   waiting receiver while values or senders are ready for it, and no
//   waiting sender while there is room or a receiver.

/// Checks of the synchronization kit's invariants, for tests and debugging.
///
/// ```swift
/// try Kernel.run {
///     let shared = GreenLocked(0)
///     let workers = try (0..<8).map { _ in try GreenThread.spawn { try shared.withLock { $0 += 1 } } }
///     let problems = SyncInvariants.violations()       // while they contend
///     precondition(problems.isEmpty, problems.joined(separator: "\n"))
///     for w in workers { try w.join() }
/// }
/// ```
public enum SyncInvariants {
    /// Every broken invariant of the running kernel's threads and the sync
    /// objects they wait on or hold, as sentences; empty when all hold.
    /// Takes the kernel lock; costs O(threads + waiters).
    public static func violations() -> [String] {
        let caller = currentGreenThread()
        return withSyncLock { kernel in kernel?.syncInvariantViolations(caller: caller) ?? [] }
    }
}

extension KernelCore {
    /// All threads and the objects they wait on or hold. Kernel lock held.
    func syncInvariantViolations(caller: GreenThread?) -> [String] {
        var problems: [String] = []
        var seen = Set<ObjectIdentifier>()
        forEachLiveThread { thread in
            problems += threadInvariantViolations(thread)
            var objects: [any SyncWaitObject] = thread.contendedMutexes
            if let waiter = thread.syncWaiter { objects.append(waiter.object) }
            for object in objects where seen.insert(ObjectIdentifier(object)).inserted {
                problems += object.invariantViolations(caller: caller)
            }
        }
        return problems
    }

    /// One thread's priority and bookkeeping. Kernel lock held.
    func threadInvariantViolations(_ thread: GreenThread) -> [String] {
        var problems: [String] = []
        let inherited = computedInheritedLevel(of: thread)
        if thread.inheritedPriorityLevel != inherited {
            problems.append("\(thread): inherited priority \(thread.inheritedPriorityLevel), recomputed \(inherited)")
        }
        let effective = max(thread.basePriorityLevel, inherited)
        if thread.runState != .finished && thread.effectivePriorityLevel != effective {
            problems.append("\(thread): effective priority \(thread.effectivePriorityLevel), "
                + "expected max(base \(thread.basePriorityLevel), inherited \(inherited)) = \(effective)")
        }
        for (i, mutex) in thread.contendedMutexes.enumerated() {
            if mutex.ownerThread !== thread || mutex.waiters.isEmpty || !mutex.priorityInheritance {
                problems.append("\(thread) lists \(mutex) as contended, but its owner is "
                    + "\(mutex.ownerThread.map { "\($0)" } ?? "nobody") with \(mutex.waiters.count) waiters")
            }
            if thread.contendedMutexes[..<i].contains(where: { $0 === mutex }) {
                problems.append("\(thread) lists \(mutex) twice as contended")
            }
        }
        thread.joiners.forEach { joiner in
            guard joiner.runState == .blocked, let wait = joiner.wait, wait.reason == .join,
                  wait.target === thread else {
                problems.append("\(thread) lists \(joiner) as a joiner, but it is \(joiner.runState) "
                    + "on \(joiner.wait.map { "\($0.record())" } ?? "nothing")")
                return
            }
        }
        if let waiter = thread.syncWaiter {
            if waiter.thread !== thread || !waiter.object.isQueued(waiter) {
                problems.append("\(thread) has a wait entry that is not queued on its object")
            }
        } else if thread.runState == .blocked, let wait = thread.wait, wait.reason.isSyncQueue {
            problems.append("\(thread) is blocked on \(wait.record()) without a wait entry (lost wake-up)")
        }
        return problems
    }

    #if DEBUG
    /// After a contended step on `mutex`: the mutex, its queue, and the
    /// first 64 threads on its chain of owners (further is rare, and would
    /// make deep-chain tests quadratic in debug builds; the whole-kernel
    /// check covers it) must satisfy the invariants. Stops the program
    /// naming the broken one. `previousOwner`: a thread that owned `mutex`
    /// until this step and whose inherited level the step changed (a
    /// timeout: the word may name another thread by now), checked as well.
    /// Kernel lock held.
    func debugVerify(_ mutex: GreenMutex, caller: GreenThread?, previousOwner: GreenThread? = nil) {
        var problems = mutex.invariantViolations(caller: caller)
        if let previousOwner, previousOwner !== mutex.ownerThread {
            problems += threadInvariantViolations(previousOwner)
        }
        var current: GreenMutex? = mutex
        for _ in 0..<64 {
            guard let m = current, let owner = m.ownerThread else { break }
            problems += threadInvariantViolations(owner)
            current = owner.syncWaiter?.object.asMutex
        }
        precondition(problems.isEmpty, "sync invariant broken:\n  " + problems.joined(separator: "\n  "))
    }
    #endif
}

extension GreenMutex {
    /// The mutex's own invariants. Kernel lock held.
    func invariantViolations(caller: GreenThread?) -> [String] {
        var problems = waiters.invariantViolations(of: "\(self)", caller: caller)
        let w = word.load(ordering: .relaxed)
        let contended = w & GreenMutex.hasWaiters != 0
        if contended != !waiters.isEmpty {
            problems.append("\(self): hasWaiters is \(contended) with \(waiters.count) waiters")
        }
        if !waiters.isEmpty {
            guard let owner = ownerThread else {
                problems.append("\(self) is free with \(waiters.count) waiters (lost wake-up)")
                return problems
            }
            if priorityInheritance && !owner.contendedMutexes.contains(where: { $0 === self }) {
                problems.append("\(self) has waiters but is not on its owner \(owner)'s contended list")
            }
            if owner.runState == .finished {
                problems.append("\(self) is owned by finished \(owner)")
            }
        }
        return problems
    }
}
