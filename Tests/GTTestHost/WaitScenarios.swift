// Scenarios for waits that end without their event (see main.swift): a
// deadline that passes or a cancellation takes the waiter off what it waits
// on through that object's `withdraw` (Threads/WaitRecord.swift), for every
// kind of wait. Each kind gets a "keeper": a live waiter of lower priority
// queued on the same object the whole time, so that `SyncInvariants`
// checks that object's queue after each early end, and so that the event
// that finally comes must reach the keeper: an entry left behind by the
// withdrawn waiter (higher priority, so it would be served first) would
// take it, or crash the scenario.
//
// One worker, main at 31 directing, as in SyncScenarios.swift.
import CGreenCore
import GreenThreads
import Glibc

/// The violations now, checked empty.
private func checkInvariants(_ step: String) {
    let v = SyncInvariants.violations()
    check(v.isEmpty, "after \(step): \(v)")
    print("invariants_after_\(step)=ok")
}

/// Cancels `h` while it waits on `kind` and waits until it has ended.
private func cancelWhileWaiting<T>(_ h: JoinHandle<T>, on kind: String) {
    waitUntil("\(h.thread.name) waits on \(kind)") {
        [.blocked, .sleeping].contains(h.thread.state) && h.thread.waitingOn?.kind == kind
    }
    h.cancel()
    waitUntil("\(h.thread.name) ended") { h.isFinished }
}

let waitScenarios: [String: Scenario] = [
    "withdrawn-waiters-leave-every-queue": {
        // Story (one worker; main at 31 directs). For each kind of wait, a keeper at 5 waits untimed on
        // the object, then a waiter at 20 (above the keeper: a stale entry of it would be served first)
        // waits with a 20 ms deadline, where the kind has one, and another at 20 is cancelled while it
        // waits. After each ends, the invariants hold (its entry left the queue, a mutex owner's
        // inherited priority fell back to the keeper's 5), and the event that finally comes reaches
        // the keeper:
        //   mutex: holder h (2) holds M; timed t20 gives up (h back to 5), cancelled c20 throws
        //          cancelled (h back to 5); h unlocks: the keeper k5 gets M.
        //   condition: k5 waits on C; t20 times out, c20 throws conditionWaitCancelled, both holding M
        //          again; one signal wakes k5.
        //   semaphore: k5 waits on S; t20 times out, c20 throws cancelled; one signal gives k5 the
        //          permit and S stays at 0.
        //   channel-send: k5 sends 5 into a rendezvous; c20's send of 20 is cancelled (a channel has
        //          no deadline); main receives 5.
        //   channel-receive: k5 receives; c20's receive is cancelled (nil); main sends 7: k5 gets it.
        //   join: k5 and c20 join j (blocked on a gate); c20 is cancelled (cancelled error, off j's
        //          joiners); the gate opens: k5's join returns.
        //   sleep: s20 sleeps 10 s and is cancelled: it returns at once.
        //   io-read: on an empty pipe t20 waits 20 ms and times out, c20 waits 10 s and is cancelled;
        //          after each the descriptor's read slot is free: main's own 1 ms wait is not refused
        //          as busy.
        try Kernel.run(oneWorker()) {
            direct()
            let log = Log()

            // Mutex.
            let m = GreenMutex(name: "M")
            let release = GreenSemaphore(value: 0, name: "release-M")
            let h = try spawnAt("h", 2) { try m.lock(); release.wait(); try m.unlock() }
            waitUntil("h holds M") { m.owner === h.thread }
            let k = try spawnAt("k5", 5) { try m.withLock { log.add("mutex->k5") } }
            waitUntil("k5 waits on M") { isBlocked(k, on: "mutex") }
            let t = try spawnAt("t20", 20) { try m.lock(timeout: .milliseconds(20)) }
            waitUntil("t20 waits on M") { isBlocked(t, on: "mutex") }
            check(level(h) == 20, "h inherits 20 from t20, has \(level(h))")
            let r1 = try t.join()
            check(r1 == false, "t20's timed lock did not time out")
            check(level(h) == 5, "after t20's timeout h has \(level(h)), want the keeper's 5")
            checkInvariants("mutex_timeout")
            let c = try spawnAt("c20", 20) { () -> String in
                do { try m.lock(); return "locked" } catch GreenMutexError.cancelled { return "cancelled" }
            }
            cancelWhileWaiting(c, on: "mutex")
            let r2 = try c.join()
            check(r2 == "cancelled", "c20's lock: \(r2)")
            check(level(h) == 5, "after c20's cancellation h has \(level(h)), want 5")
            checkInvariants("mutex_cancel")
            release.signal()
            try h.join()
            try k.join()

            // Condition.
            let cm = GreenMutex(name: "CM"), cond = GreenCondition(name: "C")
            let ck = try spawnAt("k5", 5) { try cm.withLock { try cond.wait(cm); log.add("condition->k5") } }
            waitUntil("k5 waits on C") { isBlocked(ck, on: "condition") }
            let ct = try spawnAt("t20", 20) { try cm.withLock { try cond.wait(cm, timeout: .milliseconds(20)) } }
            let r3 = try ct.join()
            check(r3 == false, "t20's timed condition wait was signalled")
            checkInvariants("condition_timeout")
            let cc = try spawnAt("c20", 20) { () -> String in
                try cm.lock()
                defer { try? cm.unlock() }
                do { try cond.wait(cm); return "signalled" } catch GreenMutexError.conditionWaitCancelled {
                    return cm.owner === GreenThread.current ? "cancelled" : "cancelled without CM"
                }
            }
            cancelWhileWaiting(cc, on: "condition")
            let r4 = try cc.join()
            check(r4 == "cancelled", "c20's condition wait: \(r4)")
            checkInvariants("condition_cancel")
            cond.signal()
            try ck.join()

            // Semaphore.
            let s = GreenSemaphore(value: 0, name: "S")
            let sk = try spawnAt("k5", 5) { s.wait(); log.add("semaphore->k5") }
            waitUntil("k5 waits on S") { isBlocked(sk, on: "semaphore") }
            let st = try spawnAt("t20", 20) { s.wait(timeout: .milliseconds(20)) }
            let r5 = try st.join()
            check(r5 == false, "t20's timed semaphore wait got a permit")
            checkInvariants("semaphore_timeout")
            let sc = try spawnAt("c20", 20) { () -> String in
                do { try s.waitUnlessCancelled(); return "permit" } catch { return "cancelled" }
            }
            cancelWhileWaiting(sc, on: "semaphore")
            let r6 = try sc.join()
            check(r6 == "cancelled", "c20's semaphore wait: \(r6)")
            checkInvariants("semaphore_cancel")
            s.signal()
            try sk.join()
            check(s.value == 0, "S has \(s.value) permits: the signal did not go to k5")

            // Channel send.
            let out = GreenChannel<Int>(capacity: 0, name: "out")
            let ok = try spawnAt("k5", 5) { try out.send(5) }
            waitUntil("k5 waits to send") { isBlocked(ok, on: "channel-send") }
            let oc = try spawnAt("c20", 20) { () -> String in
                do { try out.send(20); return "sent" } catch GreenChannelError.cancelled { return "cancelled" }
            }
            cancelWhileWaiting(oc, on: "channel-send")
            let r7 = try oc.join()
            check(r7 == "cancelled", "c20's send: \(r7)")
            checkInvariants("channel_send_cancel")
            let got = out.receive()
            check(got == 5, "received \(got as Any), want the keeper's 5")
            try ok.join()
            log.add("channel-send->\(got ?? -1)")

            // Channel receive.
            let inbox = GreenChannel<Int>(capacity: 0, name: "in")
            let ik = try spawnAt("k5", 5) { inbox.receive() }
            waitUntil("k5 waits to receive") { isBlocked(ik, on: "channel-receive") }
            let ic = try spawnAt("c20", 20) { inbox.receive() }
            cancelWhileWaiting(ic, on: "channel-receive")
            let r8 = try ic.join()
            check(r8 == nil, "c20's cancelled receive got a value")
            checkInvariants("channel_receive_cancel")
            try inbox.send(7)
            let kept = try ik.join()
            check(kept == 7, "k5 received \(kept as Any), want 7")
            log.add("channel-receive->\(kept ?? -1)")

            // Join.
            let gate = GreenSemaphore(value: 0, name: "gate")
            let j = try spawnAt("j", 2) { gate.wait() }
            let jk = try spawnAt("k5", 5) { try j.join(); log.add("join->k5") }
            waitUntil("k5 joins j") { isBlocked(jk, on: "join") }
            let jc = try spawnAt("c20", 20) { () -> String in
                do { try j.join(); return "joined" } catch GreenThreadError.cancelled { return "cancelled" }
            }
            cancelWhileWaiting(jc, on: "join")
            let r9 = try jc.join()
            check(r9 == "cancelled", "c20's join: \(r9)")
            checkInvariants("join_cancel")
            gate.signal()
            try jk.join()

            // Sleep.
            let t0 = gt_clock_monotonic_ns()
            let sleeper = try spawnAt("s20", 20) { GreenThread.sleep(for: .seconds(10)) }
            cancelWhileWaiting(sleeper, on: "sleep")
            try sleeper.join()
            check(gt_clock_monotonic_ns() - t0 < 5_000_000_000, "the cancelled sleep went on")
            checkInvariants("sleep_cancel")

            // I/O readiness on a pipe nobody writes.
            var pair: [Int32] = [0, 0]
            check(gt_io_pipe(&pair, 1).value == 0, "pipe")
            let fds = pair
            let rt = try spawnAt("t20", 20) { try GreenIO.waitReadable(fds[0], timeout: .milliseconds(20)) }
            let r10 = try rt.join()
            check(r10 == false, "t20's timed read wait saw data")
            let freeAfterTimeout = try GreenIO.waitReadable(fds[0], timeout: .milliseconds(1))  // EBUSY if t20 stayed
            check(freeAfterTimeout == false, "after the timeout")
            let rc = try spawnAt("c20", 20) { try GreenIO.waitReadable(fds[0], timeout: .seconds(10)) }
            cancelWhileWaiting(rc, on: "io-read")
            let r11 = try rc.join()
            check(r11 == false, "c20's cancelled read wait saw data")
            let freeAfterCancel = try GreenIO.waitReadable(fds[0], timeout: .milliseconds(1))
            check(freeAfterCancel == false, "after the cancellation")
            log.add("io-read->free")
            try GreenIO.close(fds[0])
            try GreenIO.close(fds[1])

            checkInvariants("all")
            print("served=\(log.all)")
            check(log.all == ["mutex->k5", "condition->k5", "semaphore->k5", "channel-send->5",
                              "channel-receive->7", "join->k5", "io-read->free"], "served \(log.all)")
        }
        print("OK")
    },
    "cancelled-joiners-leave-any-place": {
        // Story (one worker; main at 31 directs): j (2) waits on a gate; six joiners q0..q5 (levels
        // 5..10) join it one after another, so they are listed in that order. The first (q0), a middle
        // one (q2) and the last (q5) are cancelled, each while blocked; the invariants hold. A
        // seventh, q6, joins after them: it must be linked after the new last joiner (q4), not after
        // the cancelled q5. The gate opens: q1, q3, q4 and q6 all return from join; a joiner left
        // unlinked would never wake (the scenario times out).
        try Kernel.run(oneWorker()) {
            direct()
            let gate = GreenSemaphore(value: 0, name: "gate")
            let j = try spawnAt("j", 2) { gate.wait() }
            var joiners: [JoinHandle<String>] = []
            func addJoiner(_ i: Int) throws {
                let h = try spawnAt("q\(i)", 5 + i) { () -> String in
                    do { try j.join(); return "joined" } catch GreenThreadError.cancelled { return "cancelled" }
                }
                waitUntil("q\(i) joins j") { isBlocked(h, on: "join") }
                joiners.append(h)
            }
            for i in 0..<6 { try addJoiner(i) }
            for i in [0, 2, 5] { cancelWhileWaiting(joiners[i], on: "join") }
            checkInvariants("joiner_cancels")
            try addJoiner(6)
            gate.signal()
            var results: [String] = []
            for h in joiners { results.append("\(h.thread.name)=\(try h.join())") }
            print("joins=\(results.joined(separator: ","))")
            checkInvariants("joins")
        }
        print("OK")
    },
    "many-waiters-keep-priority-fifo-order": {
        // Story (one worker; main at 31 directs): `waiters` threads (3000) queue on one semaphore at
        // levels spread over 2-29 in a scrambled order of spawning; main waits on a gate that a bell at
        // level 1 opens, so the bell runs (strict priority) only once every waiter has queued, and
        // nothing preempts them on the way (a preempted thread would go to the back of its level):
        // each level's waiters arrive in the order they were spawned. Every tenth (i % 10 == 3) is
        // cancelled while queued (it leaves the middle of its level's FIFO); then every seventh of the
        // others (i % 7 == 0) is raised to 30, in ascending i (each goes to the back of level 30).
        // The invariants hold; one signal per remaining waiter serves them: the raised ones in the
        // order they were raised, then level 29 down to 2, each level in order of arrival.
        let n = intOption("waiters", 3000)
        let log = Log()
        try Kernel.run(oneWorker()) {
            direct()
            let s = GreenSemaphore(value: 0, name: "S")
            let levelOf = { (i: Int) in 2 + (i * 7919) % 28 }
            var handles: [JoinHandle<Void>] = []
            for i in 0..<n {
                handles.append(try spawnAt("w\(i)", levelOf(i)) {
                    do {
                        try s.waitUnlessCancelled()
                        log.add("\(i)")
                    } catch {}
                })
            }
            let gate = GreenSemaphore(value: 0, name: "gate")
            let bell = try spawnAt("bell", 1) { gate.signal() }
            gate.wait()
            try bell.join()
            check(handles.allSatisfy { isBlocked($0, on: "semaphore") }, "every waiter queued before the bell")
            let cancelled = Set((0..<n).filter { $0 % 10 == 3 })
            for i in cancelled.sorted() { handles[i].cancel() }
            waitUntil("the cancelled waiters end") { cancelled.allSatisfy { handles[$0].isFinished } }
            let raised = (0..<n).filter { $0 % 7 == 0 && !cancelled.contains($0) }
            for i in raised { handles[i].thread.setPriority(priority(30)) }
            checkInvariants("cancel_and_raise")
            let left = (0..<n).filter { !cancelled.contains($0) }
            for _ in left { s.signal() }
            for h in handles { try h.join() }
            let raisedSet = Set(raised)
            var expected = raised
            for level in stride(from: 29, through: 2, by: -1) {
                expected += left.filter { !raisedSet.contains($0) && levelOf($0) == level }
            }
            let served = log.all.map { Int($0)! }
            print("served=\(served.count)")
            print("expected=\(expected.count)")
            if let k = zip(served, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                check(false, "service order differs at \(k): served \(served[k]), expected \(expected[k])")
            }
            check(served == expected, "service order")
        }
        print("OK")
    },

]
