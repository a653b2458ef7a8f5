// Cancellation and scoped threads.
//
// cancel-sleep: a thread sleeping 10 s is cancelled after 50 ms and wakes
//   at once; a cancelled thread's next sleep does not sleep.
// cancel-join: A joins B (B sleeps 500 ms); A is cancelled after 50 ms:
//   its join throws `cancelled` at once; B runs on to its end.
// cancel-timed-waits: a thread in lock(timeout: 10 s) on a held mutex, one
//   in a semaphore wait(timeout: 10 s) and one in a condition
//   wait(_:timeout: 10 s) are cancelled: each returns false at once, and
//   the mutex owner's inherited priority drops back to its base.
// cancel-mutex-lock: main (16) holds M; `locker` (24) waits in the untimed
//   lock() and boosts main to 24; a GreenLocked waiter queues too. Both are
//   cancelled: lock() throws `cancelled` (not acquired), withLock throws
//   without running its body, and main drops back to 16. A cancelled
//   thread still takes a free mutex.
// cancel-channel-waits: a receiver waiting on an empty channel and a sender
//   waiting on a rendezvous channel are cancelled: the receiver gets nil,
//   the sender throws `cancelled` and its value is never delivered; the
//   channel then carries the next value as usual.
// cancel-untimed-waits (one worker; main directs):
//   1. `sem` waits in `semaphore.waitUnlessCancelled()` on an empty
//      semaphore; `cond` holds C and waits in the untimed `condition.wait(C)`
//      inside `C.withLock`. main takes C while both wait, then cancels both.
//   2. `sem` throws `GreenThreadError.cancelled` at once, with no permit.
//      `cond` is woken at once, but retakes C before it throws (the
//      retake ignores cancellation): it waits for C, which main holds for
//      another 100 ms; then `conditionWaitCancelled` reaches it holding C,
//      and withLock releases C.
//   3. Neither queue keeps a cancelled waiter: the next signal of each goes
//      to a live waiter, and the count stays exact.
//   4. On a thread cancelled before it waits: waitUnlessCancelled takes an
//      available permit, and throws at once on an empty semaphore; the
//      condition wait throws at once, holding its mutex.
//   5. The non-throwing `semaphore.wait()` is not interrupted: cancelled, it
//      goes on waiting and returns with the permit a later signal brings.
// cancel-await: a thread awaiting a 10 s Task.sleep is cancelled: the task
//   is cancelled and await throws its CancellationError at once.
// group-error-cancels-siblings: in withThreadGroup one member throws after
//   20 ms; its sibling sleeping 10 s is cancelled; withThreadGroup throws
//   the member's error once both have finished.
// group-joins-every-member: members (and a member's own member) that sleep
//   100 ms have all finished when withThreadGroup returns; a spawn into the
//   group after that throws `threadGroupEnded`.
// check-cancellation: a loop calling checkCancellation stops by throwing.
import GreenThreads

let cancellationScenarios: [String: Scenario] = [
    "cancel-sleep": .sync(cancelSleep),
    "cancel-join": .sync(cancelJoin),
    "cancel-timed-waits": .sync(cancelTimedWaits),
    "cancel-channel-waits": .sync(cancelChannelWaits),
    "cancel-mutex-lock": .sync(cancelMutexLock),
    "cancel-untimed-waits": .sync(cancelUntimedWaits),
    "cancel-await": .sync(cancelAwait),
    "group-error-cancels-siblings": .sync(groupErrorCancelsSiblings),
    "group-joins-every-member": .sync(groupJoinsEveryMember),
    "check-cancellation": .sync(checkCancellationStops),
]

/// Runs `body` in a kernel of one worker.
func inKernel(_ body: sending @escaping () throws -> Void) throws {
    try Kernel.run(KernelConfiguration(workers: 1), body)
}

func cancelSleep() throws {
    try inKernel {
        let start = nowMilliseconds()
        let sleeper = try GreenThread.spawn { () -> (Double, Double) in
            GreenThread.sleep(for: .seconds(10))
            let woke = nowMilliseconds()
            GreenThread.sleep(for: .seconds(10))  // cancelled already: returns at once
            return (woke, nowMilliseconds())
        }
        GreenThread.sleep(for: .milliseconds(50))
        sleeper.cancel()
        let (woke, second) = try sleeper.join()
        print("woke_after_ms=\(Int(woke - start))")
        print("second_sleep_ms=\(Int(second - woke))")
        check(woke - start < 2000, "the sleep was not interrupted")
        check(second - woke < 50, "a cancelled thread slept")
    }
    print("OK")
}

func cancelJoin() throws {
    try inKernel {
        let b = try GreenThread.spawn(name: "B") { () -> Int in
            GreenThread.sleep(for: .milliseconds(500))
            return 5
        }
        let a = try GreenThread.spawn(name: "A") { () -> String in
            do {
                _ = try b.join()
                return "joined"
            } catch let error as GreenThreadError {
                return "\(error)"
            }
        }
        let start = nowMilliseconds()
        GreenThread.sleep(for: .milliseconds(50))
        a.cancel()
        let outcome = try a.join()
        let elapsed = nowMilliseconds() - start
        print("a=\(outcome)")
        check(outcome.contains("was cancelled"), "A's join ended with '\(outcome)'")
        check(elapsed < 400, "A's join waited \(elapsed) ms")
        let bValue = try b.join()
        check(bValue == 5, "B")
        check(!b.thread.isCancelled, "B was cancelled too")
    }
    print("OK")
}

func cancelTimedWaits() throws {
    try inKernel {
        let mutex = GreenMutex(name: "M")
        let semaphore = GreenSemaphore(value: 0)
        let condition = GreenCondition()
        let conditionMutex = GreenMutex(name: "C")
        try mutex.lock()
        let locker = try GreenThread.spawn(name: "locker", priority: .high) {
            try mutex.lock(timeout: .seconds(10))
        }
        let waiter = try GreenThread.spawn(name: "sem") { semaphore.wait(timeout: .seconds(10)) }
        let condWaiter = try GreenThread.spawn(name: "cond") { () -> Bool in
            try conditionMutex.withLock { try condition.wait(conditionMutex, timeout: .seconds(10)) }
        }
        while locker.thread.waitingOn == nil || waiter.thread.waitingOn == nil || condWaiter.thread.waitingOn == nil {
            GreenThread.sleep(for: .milliseconds(1))
        }
        let boosted = GreenThread.current.effectivePriority.level
        let start = nowMilliseconds()
        locker.cancel()
        waiter.cancel()
        condWaiter.cancel()
        let got = (try locker.join(), try waiter.join(), try condWaiter.join())
        let elapsed = nowMilliseconds() - start
        let after = GreenThread.current.effectivePriority.level
        try mutex.unlock()
        print("results=\(got.0),\(got.1),\(got.2)")
        print("owner_boosted=\(boosted)")
        print("owner_after=\(after)")
        check(!got.0 && !got.1 && !got.2, "a cancelled timed wait reported success")
        check(elapsed < 2000, "the cancelled waits took \(elapsed) ms")
        check(boosted == Priority.high.level && after == Priority.normal.level,
              "owner priority \(boosted) -> \(after)")
        // Started after cancellation: the wait does not begin.
        let late = try GreenThread.spawn { () -> (Bool, Double) in
            GreenThread.current.cancel()
            let before = nowMilliseconds()
            let got = semaphore.wait(timeout: .seconds(2))
            return (got, nowMilliseconds() - before)
        }
        let (lateGot, lateMs) = try late.join()
        print("late_wait_ms=\(Int(lateMs))")
        check(!lateGot && lateMs < 1000, "a timed wait started on a cancelled thread (\(lateMs) ms)")
    }
    print("OK")
}

func cancelAwait() throws {
    try inKernel {
        let awaiter = try GreenThread.spawn { () -> String in
            do {
                try GreenThread.await { try await Task.sleep(for: .seconds(10)) }
                return "returned"
            } catch is CancellationError {
                return "CancellationError"
            }
        }
        let start = nowMilliseconds()
        GreenThread.sleep(for: .milliseconds(50))
        awaiter.cancel()
        let outcome = try awaiter.join()
        let elapsed = nowMilliseconds() - start
        print("outcome=\(outcome)")
        print("elapsed_ms=\(Int(elapsed))")
        check(outcome == "CancellationError", outcome)
        check(elapsed < 2000, "await took \(elapsed) ms after cancel")
    }
    print("OK")
}

func groupErrorCancelsSiblings() throws {
    try inKernel {
        let siblingSawCancel = SharedFlag()
        let start = nowMilliseconds()
        do {
            try withThreadGroup { group in
                try group.spawn(name: "failing") {
                    GreenThread.sleep(for: .milliseconds(20))
                    throw ScenarioError(code: 3)
                }
                try group.spawn(name: "sibling") {
                    GreenThread.sleep(for: .seconds(10))
                    if GreenThread.current.isCancelled { siblingSawCancel.set() }
                }
            }
            check(false, "withThreadGroup did not throw")
        } catch let error as ScenarioError {
            print("group_error=\(error.code)")
        }
        let elapsed = nowMilliseconds() - start
        print("elapsed_ms=\(Int(elapsed))")
        check(siblingSawCancel.isSet, "the sibling was not cancelled, or had not finished")
        check(elapsed < 2000, "the group took \(elapsed) ms")
    }
    print("OK")
}

func groupJoinsEveryMember() throws {
    try inKernel {
        let finished = SharedCounter()
        var escaped: GreenThreadGroup?
        let value = try withThreadGroup { group -> String in
            escaped = group
            for _ in 0..<10 {
                try group.spawn {
                    GreenThread.sleep(for: .milliseconds(100))
                    finished.increment()
                }
            }
            try group.spawn {
                try group.spawn {  // a member's member joins the same scope
                    GreenThread.sleep(for: .milliseconds(150))
                    finished.increment()
                }
            }
            return "body done"
        }
        print("finished_at_return=\(finished.value)")
        check(value == "body done", value)
        check(finished.value == 11, "\(finished.value) of 11 members had finished")
        do {
            try escaped!.spawn {}
            check(false, "a spawn after the scope did not throw")
        } catch GreenThreadError.threadGroupEnded {
            print("late_spawn=threadGroupEnded")
        }
    }
    print("OK")
}

func checkCancellationStops() throws {
    try inKernel {
        let looper = try GreenThread.spawn { () -> String in
            do {
                while true {
                    try GreenThread.checkCancellation()
                    GreenThread.yield()
                }
            } catch {
                return "\(error)"
            }
        }
        GreenThread.sleep(for: .milliseconds(20))
        looper.cancel()
        let outcome = try looper.join()
        print("outcome=\(outcome)")
        check(outcome.contains("was cancelled"), outcome)
    }
    print("OK")
}

func cancelChannelWaits() throws {
    try inKernel {
        let empty = GreenChannel<Int>(capacity: 1, name: "empty")
        let rendezvous = GreenChannel<Int>(capacity: 0, name: "rendezvous")
        let receiver = try GreenThread.spawn(name: "receiver") { () -> String in
            let got = empty.receive()
            return "\(got.map(String.init) ?? "nil") cancelled=\(GreenThread.current.isCancelled)"
        }
        let sender = try GreenThread.spawn(name: "sender") { () -> String in
            do {
                try rendezvous.send(1)
                return "delivered"
            } catch {
                return "\(error)"
            }
        }
        while receiver.thread.waitingOn == nil || sender.thread.waitingOn == nil {
            GreenThread.sleep(for: .milliseconds(1))
        }
        let start = nowMilliseconds()
        receiver.cancel()
        sender.cancel()
        let (r, s) = (try receiver.join(), try sender.join())
        let elapsed = nowMilliseconds() - start
        print("receiver=\(r)")
        print("sender=\(s)")
        check(r == "nil cancelled=true", "receiver got \(r)")
        check(s.contains("was cancelled while it waited to send"), "sender: \(s)")
        check(elapsed < 1000, "the cancelled channel waits took \(elapsed) ms")
        // The cancelled value is gone; the next one goes through.
        let late = try GreenThread.spawn { rendezvous.receive() }
        try rendezvous.send(2)
        let next = try late.join()
        print("next=\(next.map(String.init) ?? "nil")")
        check(next == 2, "the channel delivered \(String(describing: next)) after the cancelled send")
    }
    print("OK")
}

func cancelMutexLock() throws {
    try inKernel {
        let mutex = GreenMutex(name: "M")
        let locked = GreenLocked(0, name: "L")
        let bodyRan = SharedFlag()
        try mutex.lock()
        let locker = try GreenThread.spawn(name: "locker", priority: .high) { () -> String in
            do {
                try mutex.lock()
                return "acquired"
            } catch {
                return "\(error)"
            }
        }
        let holder = try GreenThread.spawn(name: "holder") {
            try locked.withLock { _ in GreenThread.sleep(for: .seconds(10)) }  // cancelled too: wakes early
        }
        while holder.thread.waitingOn?.kind != "sleep" { GreenThread.sleep(for: .milliseconds(1)) }
        let lockedWaiter = try GreenThread.spawn(name: "locked-waiter") { () -> String in
            do {
                try locked.withLock { _ in bodyRan.set() }
                return "acquired"
            } catch {
                return "\(error)"
            }
        }
        while locker.thread.waitingOn == nil || lockedWaiter.thread.waitingOn == nil {
            GreenThread.sleep(for: .milliseconds(1))
        }
        let boosted = GreenThread.current.effectivePriority.level
        let start = nowMilliseconds()
        locker.cancel()
        lockedWaiter.cancel()
        let lockerOutcome = try locker.join()
        let waiterOutcome = try lockedWaiter.join()
        let elapsed = nowMilliseconds() - start
        let after = GreenThread.current.effectivePriority.level
        print("locker=\(lockerOutcome)")
        print("locked_waiter=\(waiterOutcome)")
        print("owner_boosted=\(boosted)")
        print("owner_after=\(after)")
        check(lockerOutcome.contains("was cancelled while it waited for mutex"), lockerOutcome)
        check(waiterOutcome.contains("was cancelled while it waited"), waiterOutcome)
        check(!bodyRan.isSet, "withLock ran its body for a cancelled waiter")
        check(elapsed < 1000, "the cancelled lock waits took \(elapsed) ms")
        check(boosted == Priority.high.level && after == Priority.normal.level, "owner \(boosted) -> \(after)")
        try mutex.unlock()
        holder.cancel()
        try holder.join()
        // A cancelled thread still takes a free mutex.
        let late = try GreenThread.spawn { () -> Bool in
            GreenThread.current.cancel()
            try mutex.lock()
            try mutex.unlock()
            return true
        }
        let lateTook = try late.join()
        check(lateTook, "a cancelled thread could not take a free mutex")
    }
    print("OK")
}

func cancelUntimedWaits() throws {
    try inKernel {
        GreenThread.current.setPriority(.highest)  // main directs
        let semaphore = GreenSemaphore(value: 0, name: "S")
        let condition = GreenCondition(name: "C-cond")
        let mutex = GreenMutex(name: "C")
        // 1. Both wait, untimed.
        let sem = try GreenThread.spawn(name: "sem") { () -> String in
            do {
                try semaphore.waitUnlessCancelled()
                return "took a permit"
            } catch {
                return "\(error)"
            }
        }
        let cond = try GreenThread.spawn(name: "cond") { () -> (String, Bool) in
            var heldAtError = false
            do {
                try mutex.withLock {
                    do {
                        try condition.wait(mutex)
                    } catch {
                        heldAtError = mutex.owner === GreenThread.current
                        throw error
                    }
                }
                return ("signalled", heldAtError)
            } catch {
                return ("\(error)", heldAtError)
            }
        }
        while sem.thread.waitingOn?.kind != "semaphore" || cond.thread.waitingOn?.kind != "condition" {
            GreenThread.sleep(for: .milliseconds(1))
        }
        try mutex.lock()
        let start = nowMilliseconds()
        sem.cancel()
        cond.cancel()
        // 2. sem ends at once; cond waits for C, which main holds.
        let semOutcome = try sem.join()
        let semMs = nowMilliseconds() - start
        GreenThread.sleep(for: .milliseconds(100))
        let condRetaking = cond.thread.waitingOn?.kind ?? "none"
        try mutex.unlock()
        let (condOutcome, condHeld) = try cond.join()
        let condMs = nowMilliseconds() - start
        print("sem=\(semOutcome)")
        print("sem_ms=\(Int(semMs))")
        print("cond=\(condOutcome)")
        print("cond_retaking_waits_on=\(condRetaking)")
        print("cond_held_at_error=\(condHeld)")
        check(semOutcome.contains("was cancelled"), "sem: \(semOutcome)")
        check(semMs < 1000, "the cancelled semaphore wait took \(semMs) ms")
        check(condRetaking == "mutex", "after the cancel, cond waits on \(condRetaking), not on C")
        check(condOutcome.contains("was cancelled while it waited on condition")
              && condOutcome.contains("holds mutex"), "cond: \(condOutcome)")
        check(condHeld, "the cancelled condition wait threw without holding C")
        check(condMs < 2000, "the cancelled condition wait took \(condMs) ms")
        check(mutex.owner == nil, "withLock left C held")
        // 3. The queues hold no cancelled waiter; the count is exact.
        check(semaphore.value == 0, "a cancelled wait changed the count: \(semaphore.value)")
        let nextSem = try GreenThread.spawn(name: "next-sem") { () -> Bool in
            try semaphore.waitUnlessCancelled()
            return true
        }
        let nextCond = try GreenThread.spawn(name: "next-cond") { () -> Bool in
            try mutex.withLock { try condition.wait(mutex) }
            return true
        }
        while nextSem.thread.waitingOn == nil || nextCond.thread.waitingOn?.kind != "condition" {
            GreenThread.sleep(for: .milliseconds(1))
        }
        semaphore.signal()
        condition.signal()
        let nextGot = (try nextSem.join(), try nextCond.join())
        print("next=\(nextGot.0),\(nextGot.1)")
        check(semaphore.value == 0, "the signal went to the count, not to the live waiter")
        // 4. Cancelled before waiting.
        let late = try GreenThread.spawn(name: "late") { () -> (String, String, String, Bool) in
            GreenThread.current.cancel()
            try semaphore.waitUnlessCancelled()  // a permit is there: taken
            let took = "took"
            let empty: String
            do {
                try semaphore.waitUnlessCancelled()
                empty = "took"
            } catch {
                empty = "\(error)"
            }
            var held = false
            let condition2 = GreenCondition()
            let waited: String
            do {
                try mutex.withLock {
                    do { try condition2.wait(mutex) } catch {
                        held = mutex.owner === GreenThread.current
                        throw error
                    }
                }
                waited = "returned"
            } catch {
                waited = "\(error)"
            }
            return (took, empty, waited, held)
        }
        semaphore.signal()
        let lateStart = nowMilliseconds()
        let (lateFull, lateEmpty, lateCond, lateHeld) = try late.join()
        let lateMs = nowMilliseconds() - lateStart
        print("late_full=\(lateFull)")
        print("late_empty=\(lateEmpty.contains("was cancelled") ? "cancelled" : lateEmpty)")
        print("late_cond=\(lateCond.contains("was cancelled while it waited on condition") ? "cancelled" : lateCond)")
        check(lateFull == "took" && lateEmpty.contains("was cancelled"), "late: \(lateFull), \(lateEmpty)")
        check(lateCond.contains("was cancelled while it waited on condition") && lateHeld, "late cond: \(lateCond) \(lateHeld)")
        check(lateMs < 1000, "waits on a cancelled thread took \(lateMs) ms")
        check(semaphore.value == 0, "count \(semaphore.value) after the late thread")
        // 5. The non-throwing wait() goes on waiting.
        let plain = try GreenThread.spawn(name: "plain") { () -> Bool in
            semaphore.wait()
            return GreenThread.current.isCancelled
        }
        while plain.thread.waitingOn?.kind != "semaphore" { GreenThread.sleep(for: .milliseconds(1)) }
        plain.cancel()
        GreenThread.sleep(for: .milliseconds(50))
        let plainStillWaits = plain.thread.waitingOn?.kind == "semaphore"
        semaphore.signal()
        let plainSawCancel = try plain.join()
        print("plain_wait_after_cancel=\(plainStillWaits ? "waiting" : "ended")")
        check(plainStillWaits && plainSawCancel, "the non-throwing wait() ended on cancellation")
        check(semaphore.value == 0, "the plain waiter did not take the permit")
    }
    print("OK")
}
