// Scenarios for the sync area (see main.swift): GreenMutex with priority
// inheritance, deadlock detection and owner death; GreenCondition,
// GreenSemaphore, GreenChannel; Mars Pathfinder; a seeded stress run; and
// the fast-path measurement.
//
// Most scenarios run on one worker with 5 s time slices, so that only
// priorities and blocking decide who runs: the main thread raises itself to
// 31 and directs the others, parking in 1 ms sleeps (`waitUntil`, `Gate`)
// whenever they should move. A waking main thread preempts whoever runs, so
// its checks see the others' state between their steps.
//
// Each scenario's header tells its story: who holds what, who waits, and
// the effective priority each thread must have at each step.
import CGreenCore
import GreenThreads
import Glibc
import Synchronization

// MARK: Helpers

/// One worker, preemption on only for wake-ups (5 s slices): deterministic.
func oneWorker() -> KernelConfiguration {
    KernelConfiguration(workers: 1, timeSlice: .seconds(5))
}

func priority(_ level: Int) -> Priority { try! Priority(level: level) }

@discardableResult
func spawnAt<T>(_ name: String, _ level: Int, _ body: sending @escaping () throws -> T) throws -> JoinHandle<T> {
    try GreenThread.spawn(name: name, priority: priority(level), body)
}

/// The effective priority level of a spawned thread.
func level<T>(_ handle: JoinHandle<T>) -> Int { handle.thread.effectivePriority.level }

var myLevel: Int { GreenThread.current.effectivePriority.level }

/// Parks the calling thread in 1 ms sleeps until `condition` holds; fails
/// the scenario after `timeoutMs`.
func waitUntil(_ what: @autoclosure () -> String, timeoutMs: Int64 = 5000, _ condition: () -> Bool) {
    let deadline = gt_clock_monotonic_ns() + timeoutMs * 1_000_000
    while !condition() {
        check(gt_clock_monotonic_ns() < deadline, "timed out waiting until \(what())")
        GreenThread.sleep(for: .milliseconds(1))
    }
}

/// A numbered gate the director opens step by step; threads park at it in
/// 1 ms sleeps (never blocked on a sync object, so the gate itself lends no
/// priority and takes no lock).
final class Gate: Sendable {
    private let step = Atomic<Int>(0)
    func open(_ n: Int) { step.store(n, ordering: .releasing) }
    func wait(_ n: Int) {
        while step.load(ordering: .acquiring) < n { GreenThread.sleep(for: .milliseconds(1)) }
    }
}

/// The director: main at the highest priority.
func direct() { GreenThread.current.setPriority(.highest) }

func isBlocked<T>(_ h: JoinHandle<T>, on kind: String) -> Bool {
    h.thread.state == .blocked && h.thread.waitingOn?.kind == kind
}

/// The first error `body` throws, or nil.
func errorOf(_ body: () throws -> Void) -> (any Error)? {
    do { try body(); return nil } catch { return error }
}

/// SplitMix64: a small seeded generator, so a failing stress run can be
/// replayed with its workload.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: Scenarios

let syncScenarios: [String: Scenario] = [
    mutexScenarios, primitiveScenarios, syncMeasurementScenarios, correctnessScenarios,
]
    .reduce(into: [:]) { all, part in all.merge(part) { a, _ in a } }

let mutexScenarios: [String: Scenario] = [
    "mutex-inheritance-simple": {
        // Story (one worker; main at 31 directs):
        //  1. low (4) locks M and parks at a gate holding it.     low 4
        //  2. high (20) calls M.lock() and blocks on M.            low 20 (inherited), high 20, blocked on M held by low
        //  3. The gate opens; low unlocks M. M passes straight
        //     to high, which preempts low at once.                 low 4, high runs before low's next line
        let log = Log()
        let (lowInside, lowAfter) = try Kernel.run(oneWorker()) { () -> (Int, Int) in
            direct()
            let m = GreenMutex(name: "M")
            let gate = Gate()
            let low = try spawnAt("low", 4) { () -> (Int, Int) in
                try m.lock()
                gate.wait(1)
                let inside = myLevel
                try m.unlock()
                let after = myLevel
                log.add("low continued")
                return (inside, after)
            }
            waitUntil("low holds M") { m.owner === low.thread }
            check(level(low) == 4, "low at \(level(low)) before anyone waits")
            let high = try spawnAt("high", 20) {
                try m.lock()
                log.add("high acquired")
                try m.unlock()
            }
            waitUntil("high blocks on M") { isBlocked(high, on: "mutex") }
            check(level(low) == 20 && low.thread.isBoosted, "low at \(level(low)) while high waits")
            let record = high.thread.waitingOn
            check(record?.objectID == m.id && record?.ownerThreadID == low.thread.id && record?.ownerName == "low",
                  "high's wait record: \(String(describing: record))")
            print("high_waits_on=\(record!)")
            gate.open(1)
            let levels = try low.join()
            try high.join()
            return levels
        }
        print("low_inside=\(lowInside)\nlow_after=\(lowAfter)\nevents=\(log.all)")
        check(lowInside == 20, "low ran its critical section at \(lowInside), not 20")
        check(lowAfter == 4, "low at \(lowAfter) after unlocking, not its base 4")
        check(log.all == ["high acquired", "low continued"], "high did not run at once: \(log.all)")
        print("OK")
    },

    "mutex-inheritance-chain": {
        // Story: a chain three links deep (one worker; main at 31 directs).
        //  1. t1 (2) locks A, parks at the gate.              t1 2
        //  2. t2 (4) locks B, then waits for A.                t1 4
        //  3. t3 (6) locks C, then waits for B.                t2 6, t1 6 (two links)
        //  4. t4 (24) waits for C.                             t3 24, t2 24, t1 24 (three links)
        //  5. Gate: t1 unlocks A -> t1 2; A passes to t2, still 24 (t3 waits for its B, and t4 for t3's C).
        //     t2 unlocks A, B -> t2 4; B to t3 (24). t3 unlocks B, C -> t3 6; C to t4.
        let (after, t2WithA) = try Kernel.run(oneWorker()) { () -> ([String: Int], Int) in
            direct()
            let a = GreenMutex(name: "A"), b = GreenMutex(name: "B"), c = GreenMutex(name: "C")
            let gate = Gate()
            let t1 = try spawnAt("t1", 2) { () -> Int in
                try a.lock(); gate.wait(1); try a.unlock()
                return myLevel
            }
            waitUntil("t1 holds A") { a.owner === t1.thread }
            let t2 = try spawnAt("t2", 4) { () -> (Int, Int) in
                try b.lock(); try a.lock()
                let withA = myLevel
                try a.unlock(); try b.unlock()
                return (withA, myLevel)
            }
            waitUntil("t2 waits for A") { isBlocked(t2, on: "mutex") }
            check(level(t1) == 4, "t1 at \(level(t1)) with t2 (4) waiting")
            let t3 = try spawnAt("t3", 6) { () -> Int in
                try c.lock(); try b.lock()
                try b.unlock(); try c.unlock()
                return myLevel
            }
            waitUntil("t3 waits for B") { isBlocked(t3, on: "mutex") }
            check(level(t2) == 6 && level(t1) == 6, "two links: t2 \(level(t2)), t1 \(level(t1)); want 6, 6")
            let t4 = try spawnAt("t4", 24) { try c.lock(); try c.unlock() }
            waitUntil("t4 waits for C") { isBlocked(t4, on: "mutex") }
            print("levels_with_t4_waiting=\(level(t3)),\(level(t2)),\(level(t1))")
            check(level(t3) == 24 && level(t2) == 24 && level(t1) == 24,
                  "three links: t3 \(level(t3)), t2 \(level(t2)), t1 \(level(t1)); want 24 each")
            check(SyncInvariants.violations().isEmpty, "\(SyncInvariants.violations())")
            gate.open(1)
            let after1 = try t1.join()
            let (t2WithA, after2) = try t2.join()
            let after3 = try t3.join()
            try t4.join()
            return (["t1": after1, "t2": after2, "t3": after3], t2WithA)
        }
        print("after=\(after.sorted { $0.key < $1.key })\nt2_with_A=\(t2WithA)")
        check(after == ["t1": 2, "t2": 4, "t3": 6], "levels after release: \(after)")
        check(t2WithA == 24, "t2 at \(t2WithA) while holding A and B with t3/t4 behind it")
        print("OK")
    },

    "mutex-release-non-lifo": {
        // Story: release in any order (one worker; main at 31 directs).
        //  1. low (4) locks A, then B; parks.                 low 4
        //  2. h1 (20) waits for A; h2 (12) waits for B.        low 20
        //  3. low unlocks A first (not the last one taken).    A to h1, which runs at once; low 12: what B's
        //                                                      waiter requires, not its base 4 (FreeRTOS keeps
        //                                                      20 until the last release; Zephyr assumes LIFO)
        //  4. low unlocks B.                                   B to h2; low 4
        let afterAShared = Shared(-1)  // main polls it while low runs on
        let afterB = try Kernel.run(oneWorker()) { () -> Int in
            direct()
            let a = GreenMutex(name: "A"), b = GreenMutex(name: "B")
            let gate = Gate()
            let low = try spawnAt("low", 4) { () -> Int in
                try a.lock(); try b.lock()
                gate.wait(1)
                try a.unlock()
                afterAShared.value = myLevel
                gate.wait(2)
                try b.unlock()
                return myLevel
            }
            waitUntil("low holds A and B") { b.owner === low.thread }
            let h1 = try spawnAt("h1", 20) { try a.withLock {} }
            let h2 = try spawnAt("h2", 12) { try b.withLock {} }
            waitUntil("h1 and h2 wait") { isBlocked(h1, on: "mutex") && isBlocked(h2, on: "mutex") }
            check(level(low) == 20, "low at \(level(low)) with h1 (20) and h2 (12) waiting")
            gate.open(1)
            waitUntil("h1 got A and finished") { h1.isFinished }
            waitUntil("low released A") { afterAShared.value >= 0 }
            check(level(low) == 12, "after releasing A low is at \(level(low)), want 12 (h2 still waits for B)")
            gate.open(2)
            let afterB = try low.join()
            for h in [h1, h2] { try h.join() }
            return afterB
        }
        let afterA = afterAShared.value
        print("after_A=\(afterA)\nafter_B=\(afterB)")
        check(afterA == 12, "low at \(afterA) right after releasing A, want 12")
        check(afterB == 4, "low at \(afterB) after releasing B, want its base 4")
        print("OK")
    },

    "mutex-timeout-restores-owner": {
        // Story: the top waiter gives up (one worker; main at 31 directs).
        //  1. low (4) locks A; parks.                         low 4
        //  2. high (20) A.lock(timeout: 200 ms); mid (12)
        //     A.lock(). Both block.                            low 20
        //  3. high's deadline passes: lock returns false.      low 12 (mid still waits), not 20, not 4
        //  4. low unlocks A: A to mid.                         low 4
        //  5. Alone: solo (16) times out on B held by low2 (2): low2 back to 2.
        let (highGot, highWaitedMs, lowAfter) = try Kernel.run(oneWorker()) { () -> (Bool?, Int64, Int) in
            direct()
            let a = GreenMutex(name: "A")
            let gate = Gate()
            let low = try spawnAt("low", 4) { () -> Int in
                try a.lock(); gate.wait(1); try a.unlock()
                return myLevel
            }
            waitUntil("low holds A") { a.owner === low.thread }
            let high = try spawnAt("high", 20) { () -> (Bool?, Int64) in
                let t0 = gt_clock_monotonic_ns()
                let got = try a.lock(timeout: .milliseconds(200))
                return (got, (gt_clock_monotonic_ns() - t0) / 1_000_000)
            }
            let mid = try spawnAt("mid", 12) { try a.withLock {} }
            waitUntil("high and mid wait") { isBlocked(high, on: "mutex") && isBlocked(mid, on: "mutex") }
            check(level(low) == 20, "low at \(level(low)) with high waiting")
            waitUntil("high timed out") { high.isFinished }
            check(level(low) == 12, "after high's timeout low is at \(level(low)), want 12 (mid waits)")
            check(mid.thread.state == .blocked, "mid should still wait")
            gate.open(1)
            let lowAfter = try low.join()
            let (highGot, highWaitedMs) = try high.join()
            try mid.join()

            let b = GreenMutex(name: "B")
            let low2 = try spawnAt("low2", 2) { try b.lock(); gate.wait(2); try b.unlock() }
            waitUntil("low2 holds B") { b.owner === low2.thread }
            let solo = try spawnAt("solo", 16) { try b.lock(timeout: .milliseconds(30)) }
            waitUntil("solo waits") { isBlocked(solo, on: "mutex") }
            check(level(low2) == 16, "low2 at \(level(low2)) with solo waiting")
            let soloGot = try solo.join()
            check(!soloGot, "solo got B while low2 held it")
            check(level(low2) == 2, "low2 at \(level(low2)) after its only waiter timed out, want 2")
            check(SyncInvariants.violations().isEmpty, "\(SyncInvariants.violations())")
            gate.open(2)
            try low2.join()
            return (highGot, highWaitedMs, lowAfter)
        }
        print("high_got=\(String(describing: highGot))\nhigh_waited_ms=\(highWaitedMs)\nlow_after=\(lowAfter)")
        check(highGot == false, "high's timed lock returned \(String(describing: highGot))")
        check(highWaitedMs >= 200 && highWaitedMs < 2000, "high waited \(highWaitedMs) ms for a 200 ms timeout")
        check(lowAfter == 4, "low at \(lowAfter) after unlocking")
        print("OK")
    },

    "mutex-setpriority-propagates": {
        // Story: priority changes flow along a chain (one worker; main at 31 directs).
        //  1. t1 (4) locks A; parks. t2 (6) locks B, waits for A.
        //     t3 (8) waits for B. x (10) waits for A.            t2 8, t1 10 (x is A's top waiter)
        //  2. main raises t3 to 28.                              t2 28, t1 28 (two links)
        //  3. main lowers t3 to 2.                               t2 6 (its base), t1 10 (x)
        //  4. main raises t2, a waiter in the middle, to 16.     t2 moves ahead of x in A's queue; t1 16
        //  5. Gate: t1 unlocks A. A goes to t2 before x.         t1 4
        let log = Log()
        try Kernel.run(oneWorker()) {
            direct()
            let a = GreenMutex(name: "A"), b = GreenMutex(name: "B")
            let gate = Gate()
            let t1 = try spawnAt("t1", 4) { try a.lock(); gate.wait(1); try a.unlock() }
            waitUntil("t1 holds A") { a.owner === t1.thread }
            let t2 = try spawnAt("t2", 6) {
                try b.lock(); try a.lock()
                log.add("t2 got A")
                try a.unlock(); try b.unlock()
            }
            waitUntil("t2 waits for A") { isBlocked(t2, on: "mutex") }
            let t3 = try spawnAt("t3", 8) { try b.withLock {} }
            waitUntil("t3 waits for B") { isBlocked(t3, on: "mutex") }
            let x = try spawnAt("x", 10) { try a.withLock { log.add("x got A") } }
            waitUntil("x waits for A") { isBlocked(x, on: "mutex") }
            check(level(t2) == 8 && level(t1) == 10, "start: t2 \(level(t2)) t1 \(level(t1)); want 8, 10")

            t3.thread.setPriority(priority(28))
            check(level(t2) == 28 && level(t1) == 28, "t3 raised to 28: t2 \(level(t2)) t1 \(level(t1))")
            t3.thread.setPriority(priority(2))
            check(level(t2) == 6 && level(t1) == 10, "t3 lowered to 2: t2 \(level(t2)) t1 \(level(t1)); want 6, 10")
            t2.thread.setPriority(priority(16))
            check(level(t2) == 16 && level(t1) == 16, "t2 raised to 16: t2 \(level(t2)) t1 \(level(t1))")
            check(SyncInvariants.violations().isEmpty, "\(SyncInvariants.violations())")
            gate.open(1)
            for h in [t1, t2, t3] { try h.join() }
            try x.join()
            check(level(t1) == 4, "t1 at \(level(t1)) at the end")
        }
        print("events=\(log.all)")
        check(log.all == ["t2 got A", "x got A"], "A went to x before t2 (t2 was not requeued): \(log.all)")
        print("OK")
    },

    "mutex-owner-death": {
        // Story: owners that end holding a mutex (one worker; main at 31 directs).
        //  1. dead1 (4) locks M and ends without unlocking while w (20) waits for M.
        //     dead1 runs at 20 until it ends. w's lock() throws ownerDied naming dead1, and w holds M.
        //     w unlocks; main's next lock of M is ordinary.
        //  2. dead2 locks N and ends; nobody waits. tryLock(N) is false; main's lock() throws ownerDied
        //     holding N; after an unlock N is ordinary again.
        //  3. dead3 locks P and ends. P.withLock { } throws ownerDied without running its body and leaves
        //     P free.
        //  4. dead4 drops mutexes it holds (the last references): they leave its robust list; its exit
        //     finds nothing stale.
        let (wError, wHeld, deadLevel) = try Kernel.run(oneWorker()) { () -> (GreenMutexError?, Bool, Int) in
            direct()
            let m = GreenMutex(name: "M"), n = GreenMutex(name: "N"), p = GreenMutex(name: "P")
            let gate = Gate()
            let dead1 = try spawnAt("dead1", 4) { () -> Int in
                try m.lock()
                gate.wait(1)
                return myLevel
            }
            waitUntil("dead1 holds M") { m.owner === dead1.thread }
            let w = try spawnAt("w", 20) { () -> (GreenMutexError?, Bool) in
                var wError: GreenMutexError?
                do { try m.lock() } catch let e as GreenMutexError { wError = e }
                let wHeld = m.owner === GreenThread.current
                try m.unlock()
                return (wError, wHeld)
            }
            waitUntil("w waits") { isBlocked(w, on: "mutex") }
            gate.open(1)
            let deadLevel = try dead1.join()
            let (wError, wHeld) = try w.join()
            try m.lock()  // ordinary again: must not throw
            try m.unlock()

            let dead2 = try spawnAt("dead2", 8) { try n.lock() }
            try dead2.join()
            check(n.owner == nil, "N still names a dead owner")
            check(!n.tryLock(), "tryLock took a mutex whose owner died")
            switch errorOf({ try n.lock() }) {
            case GreenMutexError.ownerDied(let previous, let mutex)?:
                print("n_error=\(GreenMutexError.ownerDied(previousOwner: previous, mutex: mutex))")
                check(previous.name == "dead2" && mutex.name == "N", "ownerDied names \(previous), \(mutex)")
            case let other: check(false, "lock after dead2 ended: \(String(describing: other))")
            }
            check(n.owner === GreenThread.current, "main does not hold N after ownerDied")
            try n.unlock()
            check(n.tryLock(), "N not ordinary after the repair")
            try n.unlock()

            let dead3 = try spawnAt("dead3", 8) { try p.lock() }
            try dead3.join()
            var ran = false
            let e3 = errorOf { try p.withLock { ran = true } }
            check(!ran, "withLock ran its body after the owner died")
            guard case GreenMutexError.ownerDied? = e3 else {
                check(false, "withLock: \(String(describing: e3))"); return (wError, wHeld, deadLevel)
            }
            check(p.owner == nil, "withLock left P held after ownerDied")
            try p.withLock { ran = true }
            check(ran, "P unusable after ownerDied")

            // 4. Mutexes dropped while held by their own thread leave its robust list cleanly.
            let dead4 = try spawnAt("dead4", 8) {
                let kept = GreenMutex(name: "kept")
                try kept.lock()
                do {
                    let local = GreenMutex(name: "local")
                    try local.lock()
                }  // `local` deallocated here, held
                let other = GreenMutex(name: "other")
                try other.lock()
                try other.unlock()
                try kept.unlock()
                try GreenMutex(name: "last").lock()  // ends holding one nothing else references
            }
            try dead4.join()
            return (wError, wHeld, deadLevel)
        }
        print("w_error=\(String(describing: wError))\ndead_level=\(deadLevel)")
        guard case .ownerDied(let previous, let mutex)? = wError else {
            check(false, "w got \(String(describing: wError)), want ownerDied"); return
        }
        check(previous.name == "dead1" && mutex.name == "M", "ownerDied names \(previous) and \(mutex)")
        check(wHeld, "w did not hold M after ownerDied")
        check(deadLevel == 20, "dead1 ran at \(deadLevel) with w waiting, want 20")
        print("OK")
    },

    "mutex-deadlock-cycles": {
        // Story: locks that would close a cycle throw instead of hanging (one worker; all threads 10).
        //  Cycle of 2: t1 holds A, waits for B; t2 holds B and calls A.lock(): deadlock(cycle: t2 waits
        //    for A held by t1, t1 waits for B held by t2). t2 does not block; it releases B, t1 proceeds.
        //  Cycle of 3: u1 holds A waits for B; u2 holds B waits for C; u3 holds C and calls A.lock():
        //    a cycle of three links, starting with u3.
        let (cycles, messages) = try Kernel.run(oneWorker()) { () -> ([[GreenMutexError.WaitLink]], [String]) in
            var cycles: [[GreenMutexError.WaitLink]] = []
            var messages: [String] = []
            direct()
            for n in [2, 3] {
                let mutexes = (0..<n).map { GreenMutex(name: String(UnicodeScalar(UInt8(65 + $0)))) }
                let gate = Gate()
                // Each returns the cycle its lock reported, if any.
                var handles: [JoinHandle<[GreenMutexError.WaitLink]?>] = []
                // Each thread i holds mutex i; all but the last then wait for mutex i+1.
                for i in 0..<n {
                    handles.append(try spawnAt("\(n == 2 ? "t" : "u")\(i + 1)", 10) { () -> [GreenMutexError.WaitLink]? in
                        var reported: [GreenMutexError.WaitLink]?
                        try mutexes[i].lock()
                        gate.wait(1)
                        if i < n - 1 {
                            try mutexes[i + 1].lock()
                            try mutexes[i + 1].unlock()
                        } else {
                            gate.wait(2)
                            do {
                                try mutexes[0].lock()
                                check(false, "the cycle-closing lock succeeded")
                            } catch GreenMutexError.deadlock(let cycle) {
                                reported = cycle
                            }
                        }
                        try mutexes[i].unlock()
                        return reported
                    })
                }
                waitUntil("all hold their mutex") { mutexes.indices.allSatisfy { mutexes[$0].owner === handles[$0].thread } }
                gate.open(1)
                waitUntil("all but the last wait") { handles.dropLast().allSatisfy { isBlocked($0, on: "mutex") } }
                gate.open(2)
                for h in handles {
                    if let cycle = try h.join() {
                        cycles.append(cycle)
                        messages.append("\(GreenMutexError.deadlock(cycle: cycle))")
                    }
                }
            }
            return (cycles, messages)
        }
        for m in messages { print("message=\(m)") }
        check(cycles.count == 2, "\(cycles.count) cycles reported")
        let names = cycles.map { $0.map { "\($0.thread.name)>\($0.mutex.name)" } }
        print("cycles=\(names)")
        check(names[0] == ["t2>A", "t1>B"], "cycle of 2: \(names[0])")
        check(names[1] == ["u3>A", "u1>B", "u2>C"], "cycle of 3: \(names[1])")
        check(messages[0].contains("thread") && messages[0].contains("'t1'") && messages[0].contains("mutex")
              && messages[0].contains("'A'"), "message: \(messages[0])")
        print("OK")
    },

    "mutex-chain-too-deep": {
        // Story (one worker, all at 10): t0 locks M0 and parks. Each t(i), i = 1...1025 in turn, locks
        // M(i) and then waits for M(i-1): a chain t(i) -> M(i-1) -> t(i-1) -> ... -> t0. t1024's wait makes
        // a chain of 1024 blocked owners to walk (GreenMutex.maxChainDepth); t1025's would make 1025, so
        // its lock throws chainTooDeep and t1025 does not wait. The gate opens and the chain unwinds.
        // (main waits on a semaphore meanwhile: no wake-ups that would reorder equal-priority threads.)
        let n = GreenMutex.maxChainDepth + 1
        let refusedBy = Shared<[Int]>([]), refusal = Shared("")
        try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .seconds(5), defaultStackSize: 32 * 1024)) {
            direct()
            let mutexes = (0...n).map { GreenMutex(name: "M\($0)") }
            let gate = Gate()
            let attempted = GreenSemaphore(value: 0)
            var handles: [JoinHandle<Void>] = [try spawnAt("t0", 10) { try mutexes[0].lock(); gate.wait(1); try mutexes[0].unlock() }]
            for i in 1...n {
                handles.append(try spawnAt("t\(i)", 10) {
                    try mutexes[i].lock()
                    do {
                        try mutexes[i - 1].lock()
                        try mutexes[i - 1].unlock()
                    } catch GreenMutexError.chainTooDeep(let limit, let mutex) {
                        refusedBy.update { $0.append(i) }
                        refusal.value = "\(GreenMutexError.chainTooDeep(limit: limit, mutex: mutex))"
                    }
                    if i == n { attempted.signal() }
                    try mutexes[i].unlock()
                })
            }
            // Wait blocked, not polling: a polling director would preempt
            // the thread running at each wake-up and reorder the others.
            attempted.wait()
            let blocked = handles.filter { isBlocked($0, on: "mutex") }.count
            check(blocked == n - 1, "\(blocked) threads wait in the chain, want \(n - 1)")
            gate.open(1)
            for h in handles { try h.join() }
        }
        let refused = refusedBy.value, message = refusal.value
        print("refused=\(refused)\nmessage=\(message)")
        check(refused == [n], "refused \(refused), want only t\(n)")
        check(message.contains("more than \(GreenMutex.maxChainDepth)"), message)
        print("OK")
    },

    "mutex-misuse-errors": {
        // Story: misuse gets typed errors with readable messages (one worker).
        //  Outside Kernel.run: lock -> notInKernel; tryLock -> false.
        //  main locks M twice -> alreadyOwned; other unlocks M -> notOwner naming main; main unlocks a
        //  free mutex -> notOwner (nobody holds it); other's lock(timeout:) on M -> false after the timeout,
        //  lock(timeout: .zero) -> false at once; condition wait without M -> notOwner.
        let outside = GreenMutex(name: "outside")
        let e0 = errorOf { try outside.lock() }
        print("outside_error=\(String(describing: e0))")
        guard case GreenMutexError.notInKernel? = e0 else { check(false, "lock outside: \(String(describing: e0))"); return }
        check(!outside.tryLock(), "tryLock outside a kernel succeeded")
        check("\(e0!)".contains("Kernel.run"), "message: \(e0!)")
        try Kernel.run(oneWorker()) {
            direct()
            let m = GreenMutex(name: "M")
            try m.lock()
            let e1 = errorOf { try m.lock() }
            print("already_owned=\(String(describing: e1))")
            guard case GreenMutexError.alreadyOwned(let t, let mx)? = e1, t.name == "main", mx.name == "M" else {
                check(false, "relock: \(String(describing: e1))"); return
            }
            check(!m.tryLock(), "tryLock by the owner succeeded")
            let other = try spawnAt("other", 10) { () -> (String, Bool, Int64, Bool) in
                let e = errorOf { try m.unlock() }
                let t0 = gt_clock_monotonic_ns()
                let timed = try m.lock(timeout: .milliseconds(20))
                let waited = gt_clock_monotonic_ns() - t0
                let zero = try m.lock(timeout: .zero)
                return ("\(String(describing: e))", timed, waited, zero)
            }
            let (notOwner, timed, waited, zero) = try other.join()
            print("not_owner=\(notOwner)")
            check(notOwner.contains("notOwner") || notOwner.contains("tried to release"), notOwner)
            check(notOwner.contains("'other'") && notOwner.contains("'main'"), notOwner)
            check(!timed && waited >= 20_000_000, "timed lock: \(timed) after \(waited) ns")
            check(!zero, "lock(timeout: .zero) on a held mutex succeeded")
            try m.unlock()
            let e2 = errorOf { try m.unlock() }
            print("free_unlock=\(String(describing: e2))")
            guard case GreenMutexError.notOwner(_, nil, _)? = e2 else { check(false, "unlock free: \(String(describing: e2))"); return }
            let c = GreenCondition(name: "C")
            let e3 = errorOf { try c.wait(m) }
            guard case GreenMutexError.notOwner? = e3 else { check(false, "wait without M: \(String(describing: e3))"); return }
            let freeTimed = try m.lock(timeout: .zero)
            check(freeTimed, "lock(timeout: .zero) on a free mutex failed")
            try m.unlock()
            check(SyncInvariants.violations().isEmpty, "\(SyncInvariants.violations())")
        }
        print("OK")
    },

    "mutex-waiters-served-by-priority": {
        // Story: main (31) holds M; six threads queue for it, levels 5, 10, 10, 3, 12, 10 in that order
        // of arrival. Each handoff goes to the highest waiter, the longest waiting among equals:
        // w4 (12), w1, w2, w5 (10, in arrival order), w0 (5), w3 (3).
        let log = Log()
        try Kernel.run(oneWorker()) {
            direct()
            let m = GreenMutex(name: "M")
            try m.lock()
            let levels = [5, 10, 10, 3, 12, 10]
            var handles: [JoinHandle<Void>] = []
            for (i, l) in levels.enumerated() {
                let h = try spawnAt("w\(i)", l) { try m.withLock { log.add("w\(i)") } }
                handles.append(h)
                waitUntil("w\(i) queues") { isBlocked(h, on: "mutex") }
            }
            try m.unlock()
            for h in handles { try h.join() }
        }
        print("order=\(log.all)")
        check(log.all == ["w4", "w1", "w2", "w5", "w0", "w3"], "service order \(log.all)")
        print("OK")
    },

    "mutex-pathfinder": {
        // Story (Mars Pathfinder, 1997), one worker, preemption on:
        //  1. low (8) locks the bus mutex and works inside it for `cs-ms` of CPU.
        //  2. Medium spinners (16) start; high (24) wants the bus.
        //  With inheritance: low runs at 24 ahead of the spinners; high waits about the rest of low's
        //    critical section.
        //  Without (GreenMutex(priorityInheritance: false)): low waits behind the spinners at 8; high
        //    waits for the spinners' whole run as well.
        let csMs = Int64(intOption("cs-ms", 20))
        let spinMs = Int64(intOption("spin-ms", 200))
        let spinners = intOption("spinners", 2)
        func run(inheritance: Bool) throws -> Int64 {
            try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .milliseconds(10))) { () -> Int64 in
                direct()
                let bus = GreenMutex(name: "bus", priorityInheritance: inheritance)
                let low = try spawnAt("low", 8) {
                    try bus.withLock { spin(nanoseconds: csMs * 1_000_000) }
                }
                waitUntil("low holds the bus") { bus.owner === low.thread }
                let mediums = try (0..<spinners).map { i in
                    try spawnAt("medium\(i)", 16) { spin(nanoseconds: spinMs * 1_000_000) }
                }
                let high = try spawnAt("high", 24) { () -> Int64 in
                    let t0 = gt_clock_monotonic_ns()
                    try bus.withLock {}
                    return gt_clock_monotonic_ns() - t0
                }
                let waited = try high.join()
                try low.join()
                for m in mediums { try m.join() }
                return waited
            }
        }
        let withPI = try run(inheritance: true)
        let withoutPI = try run(inheritance: false)
        let ratio = Double(withoutPI) / Double(max(withPI, 1))
        print("cs_ms=\(csMs)\nspin_ms=\(spinMs)\nspinners=\(spinners)")
        print("high_wait_pi_ms=\(Double(withPI) / 1e6)\nhigh_wait_nopi_ms=\(Double(withoutPI) / 1e6)\nratio=\(ratio)")
        check(withPI <= 2 * csMs * 1_000_000, "with inheritance high waited \(withPI / 1_000_000) ms, more than 2x the \(csMs) ms critical section")
        check(withoutPI >= Int64(spinners) * spinMs * 1_000_000 / 2, "without inheritance high waited only \(withoutPI / 1_000_000) ms")
        check(ratio >= 3, "ratio \(ratio) < 3")
        print("OK")
    },

    "sync-stress": {
        // Story: thousands of threads of random priorities lock random subsets of a few mutexes in a
        // global order (so no cycle can form), some with random timeouts, release them in random order,
        // change their own priority now and then, and one in 64 rounds end holding what they took (the
        // next locker gets ownerDied and the mutex), while a checker at 31 changes random threads'
        // priorities and checks every invariant of the whole kernel each millisecond. Debug builds also
        // check the touched mutex and its owner chain after every contended step inside the library.
        // The seed fixes the workload (not the interleaving); it is printed first.
        let seed = option("seed").flatMap(UInt64.init) ?? UInt64(gt_clock_monotonic_ns()) & 0xFFFF_FFFF
        print("seed=\(seed)")
        let threads = intOption("threads", 2000)
        let mutexCount = intOption("mutexes", 8)
        let rounds = intOption("rounds", 3)
        let workers = intOption("workers", 2)
        let (acquisitions, timeouts, checks, exclusionErrors, ownerDied, violations) = try Kernel.run(
            KernelConfiguration(workers: workers, timeSlice: .milliseconds(1))
        ) { () -> (Int, Int, Int, Int, Int, [String]) in
            direct()
            let mutexes = (0..<mutexCount).map { GreenMutex(name: "m\($0)") }
            // holders[k]: the thread inside mutex k, or -1 (guarded by mutex k
            // itself; raw memory so threads on two workers write disjoint slots).
            // Unchecked on purpose: the mutexes are what this scenario tests.
            nonisolated(unsafe) let holders = UnsafeMutablePointer<Int>.allocate(capacity: mutexCount)
            holders.initialize(repeating: -1, count: mutexCount)
            defer { holders.deallocate() }
            let exclusion = AtomicCell<Int>(0)
            let done = AtomicCell<Int>(0)
            // Atomics, not a Synchronization.Mutex: an OS-thread lock held by a
            // preempted green thread would be "recursively" locked by the next
            // green thread on the same worker.
            let acquired = AtomicCell<Int>(0), gaveUpTotal = AtomicCell<Int>(0), ownerDiedCount = AtomicCell<Int>(0)
            var handles: [JoinHandle<Void>] = []
            var rng = SplitMix64(seed: seed)
            for t in 0..<threads {
                let threadSeed = rng.next()
                let lvl = Int(rng.next() % 31)
                handles.append(try spawnAt("s\(t)", lvl) {
                    var r = SplitMix64(seed: threadSeed)
                    var got = 0, gaveUp = 0
                    defer {
                        acquired.atomic.add(got, ordering: .relaxed)
                        gaveUpTotal.atomic.add(gaveUp, ordering: .relaxed)
                        done.atomic.add(1, ordering: .relaxed)
                    }
                    for _ in 0..<rounds {
                        // A random subset, taken in index order.
                        let subset = (0..<mutexCount).filter { _ in r.next() % 3 == 0 }
                        var held: [Int] = []
                        for k in subset {
                            let timeout: Duration? = r.next() % 4 == 0 ? .microseconds(Int64(r.next() % 2000)) : nil
                            do {
                                if let timeout {
                                    guard try mutexes[k].lock(timeout: timeout) else { gaveUp += 1; break }
                                } else {
                                    try mutexes[k].lock()
                                }
                            } catch GreenMutexError.ownerDied {
                                // Its last owner ended holding it; we hold it now.
                                ownerDiedCount.atomic.add(1, ordering: .relaxed)
                                holders[k] = -1
                            }
                            if holders[k] != -1 { exclusion.atomic.add(1, ordering: .relaxed) }
                            holders[k] = t
                            held.append(k)
                            got += 1
                        }
                        // Work inside: spin, or yield so others pile up behind us.
                        if r.next() % 2 == 0 { spin(nanoseconds: Int64(r.next() % 20_000)) } else { GreenThread.yield() }
                        if r.next() % 8 == 0 { GreenThread.current.setPriority(priority(Int(r.next() % 31))) }
                        // Now and then end while holding them (owner death).
                        if !held.isEmpty && r.next() % 64 == 0 { return }
                        // Release in random order.
                        held.shuffle(using: &r)
                        for k in held {
                            if holders[k] != t { exclusion.atomic.add(1, ordering: .relaxed) }
                            holders[k] = -1
                            try mutexes[k].unlock()
                        }
                    }
                })
            }
            let spawned = handles
            let checker = try spawnAt("checker", 31) { () -> (checks: Int, violations: [String]) in
                var r = SplitMix64(seed: seed ^ 0xC0FFEE)
                var checks = 0
                var lastDone = -1, lastProgress = gt_clock_monotonic_ns()
                while done.atomic.load(ordering: .relaxed) < threads {
                    let v = SyncInvariants.violations()
                    checks += 1
                    if !v.isEmpty { return (checks, v) }
                    // A lost wake-up leaves a thread waiting forever: no
                    // progress for 5 s is reported with who waits on what.
                    let now = gt_clock_monotonic_ns(), finished = done.atomic.load(ordering: .relaxed)
                    if finished != lastDone { lastDone = finished; lastProgress = now }
                    if now - lastProgress > 5_000_000_000 {
                        let stuck = spawned.filter { !$0.isFinished }.prefix(20).map {
                            "no progress for 5 s: \($0.thread) \($0.thread.state) on \(String(describing: $0.thread.waitingOn))"
                        }
                        print("seed=\(seed) stuck:\n" + stuck.joined(separator: "\n"))
                        exit(1)
                    }
                    for _ in 0..<4 {
                        let h = spawned[Int(r.next() % UInt64(threads))]
                        if !h.isFinished { h.thread.setPriority(priority(Int(r.next() % 31))) }
                    }
                    GreenThread.sleep(for: .milliseconds(1))
                }
                return (checks, [])
            }
            for h in handles { try h.join() }
            var (checks, violations) = try checker.join()
            let final = SyncInvariants.violations()
            if violations.isEmpty { violations = final }
            for (k, m) in mutexes.enumerated() { check(m.owner == nil, "m\(k) still held at the end") }
            return (acquired.atomic.load(ordering: .relaxed), gaveUpTotal.atomic.load(ordering: .relaxed), checks,
                    exclusion.atomic.load(ordering: .relaxed), ownerDiedCount.atomic.load(ordering: .relaxed), violations)
        }
        print("acquisitions=\(acquisitions)\ntimeouts=\(timeouts)\nowner_died=\(ownerDied)\nchecks=\(checks)")
        check(violations.isEmpty, "seed \(seed): invariants broken:\n" + violations.prefix(20).joined(separator: "\n"))
        check(exclusionErrors == 0, "seed \(seed): \(exclusionErrors) mutual-exclusion violations")
        check(acquisitions > threads, "seed \(seed): only \(acquisitions) acquisitions")
        check(checks > 0, "the checker never ran")
        check(ownerDied > 0 || threads < 500, "seed \(seed): no locker ever saw an owner die")
        print("OK")
    },
]

let primitiveScenarios: [String: Scenario] = [
    "condition-signal-wakes-highest-priority-first": {
        // Story (one worker; main at 31 directs): c5 (5), c20a (20), c12 (12), c20b (20) each lock M and
        // wait on C, in that order. main signals four times, parking between signals: they return from
        // wait in the order c20a, c20b (FIFO among equals), c12, c5, each holding M.
        let log = Log()
        try Kernel.run(oneWorker()) {
            direct()
            let m = GreenMutex(name: "M"), c = GreenCondition(name: "C")
            var handles: [JoinHandle<Void>] = []
            for (name, l) in [("c5", 5), ("c20a", 20), ("c12", 12), ("c20b", 20)] {
                let h = try spawnAt(name, l) {
                    try m.lock()
                    try c.wait(m)
                    check(m.owner === GreenThread.current, "\(name) returned from wait without M")
                    log.add(name)
                    try m.unlock()
                }
                handles.append(h)
                waitUntil("\(name) waits") { isBlocked(h, on: "condition") }
            }
            check(m.owner == nil, "a waiter kept M while waiting")
            for i in 1...4 {
                c.signal()
                waitUntil("signal \(i) served") { log.all.count == i }
            }
            c.signal()  // nobody waits: a no-op
            for h in handles { try h.join() }
        }
        print("order=\(log.all)")
        check(log.all == ["c20a", "c20b", "c12", "c5"], "wake order \(log.all)")
        print("OK")
    },

    "condition-wait-drops-inherited-priority": {
        // Story (one worker; main at 31 directs): low (3) holds M; high (25) waits for M: low runs at 25.
        // low calls C.wait(M): M passes to high and low, now waiting on C, is back to 3 and queued on C
        // at 3 (not 25). mid (10) then waits on C too: one signal wakes mid first. Every invariant holds
        // at each step.
        let log = Log()
        try Kernel.run(oneWorker()) {
            direct()
            let m = GreenMutex(name: "M"), c = GreenCondition(name: "C")
            let gate = Gate()
            let low = try spawnAt("low", 3) {
                try m.lock()
                gate.wait(1)
                try c.wait(m)
                log.add("low")
                try m.unlock()
            }
            waitUntil("low holds M") { m.owner === low.thread }
            let high = try spawnAt("high", 25) { try m.withLock {} }
            waitUntil("high waits for M") { isBlocked(high, on: "mutex") }
            check(level(low) == 25, "low at \(level(low)) with high waiting")
            gate.open(1)
            waitUntil("low waits on C") { isBlocked(low, on: "condition") }
            try high.join()
            check(level(low) == 3, "low waits on C at \(level(low)), want 3")
            let v = SyncInvariants.violations()
            check(v.isEmpty, "\(v)")
            let mid = try spawnAt("mid", 10) { try m.withLock { try c.wait(m); log.add("mid") } }
            waitUntil("mid waits on C") { isBlocked(mid, on: "condition") }
            c.signal()
            waitUntil("one woke") { !log.all.isEmpty }
            c.signal()
            try low.join()
            try mid.join()
        }
        print("order=\(log.all)")
        check(log.all == ["mid", "low"], "wake order \(log.all)")
        print("OK")
    },

    "condition-timeout-and-broadcast": {
        // Story (one worker; main at 31): main waits on C with a 30 ms timeout and nobody signals:
        // wait returns false after >= 30 ms with M held again. Then s (10) signals after 10 ms while main
        // waits with a 5 s timeout: true, well before 5 s. Then three waiters (3, 9, 6) wait on C and one
        // broadcast wakes all, highest first.
        let log = Log()
        try Kernel.run(oneWorker()) {
            direct()
            let m = GreenMutex(name: "M"), c = GreenCondition(name: "C")
            try m.lock()
            let t0 = gt_clock_monotonic_ns()
            let signalled = try c.wait(m, timeout: .milliseconds(30))
            let waited = gt_clock_monotonic_ns() - t0
            print("timeout_wait_ms=\(waited / 1_000_000)")
            check(!signalled && waited >= 30_000_000, "timed wait: \(signalled) after \(waited) ns")
            check(m.owner === GreenThread.current, "M not held after a timed-out wait")
            let s = try spawnAt("s", 10) { GreenThread.sleep(for: .milliseconds(10)); c.signal() }
            let t1 = gt_clock_monotonic_ns()
            let got = try c.wait(m, timeout: .seconds(5))
            let waited2 = gt_clock_monotonic_ns() - t1
            check(got && waited2 < 2_000_000_000, "signalled wait: \(got) after \(waited2) ns")
            try m.unlock()
            try s.join()
            var handles: [JoinHandle<Void>] = []
            for (name, l) in [("b3", 3), ("b9", 9), ("b6", 6)] {
                let h = try spawnAt(name, l) { try m.withLock { try c.wait(m); log.add(name) } }
                handles.append(h)
                waitUntil("\(name) waits") { isBlocked(h, on: "condition") }
            }
            c.broadcast()
            for h in handles { try h.join() }
        }
        print("broadcast_order=\(log.all)")
        check(log.all == ["b9", "b6", "b3"], "broadcast order \(log.all)")
        print("OK")
    },

    "cancelled-waiters-leave-condition-and-semaphore-queues": {
        // Story (one worker; main at 31 directs): c5 (5), c20 (20), c12 (12) wait on C (untimed, M
        // released); s9 (9), s25 (25) wait on S in waitUnlessCancelled. main cancels c20 and s25, the
        // top waiter of each queue, while they wait: both end at once, c20 with conditionWaitCancelled
        // holding M again, s25 with cancelled. No cancelled waiter stays queued and S keeps no permit
        // beside a waiter (every invariant holds), so the next signals go to the live ones in priority
        // order: C to c12 then c5; S's first permit to s9, the second to the count. Each runs by
        // priority once ready: s25 before c20, and s9 (9) before c5 (5), made ready together.
        let log = Log()
        try Kernel.run(oneWorker()) {
            direct()
            let m = GreenMutex(name: "M"), c = GreenCondition(name: "C")
            let s = GreenSemaphore(value: 0, name: "S")
            var conditionWaiters: [JoinHandle<Void>] = []
            for (name, l) in [("c5", 5), ("c20", 20), ("c12", 12)] {
                let h = try spawnAt(name, l) {
                    try m.lock()
                    do {
                        try c.wait(m)
                        log.add(name)
                    } catch GreenMutexError.conditionWaitCancelled(let thread, let condition, let mutex) {
                        check(m.owner === GreenThread.current, "\(name) reported its cancellation without M")
                        check(thread.name == name && condition.name == "C" && mutex.name == "M",
                              "the error names \(thread), \(condition), \(mutex)")
                        log.add("\(name) cancelled")
                    }
                    try m.unlock()
                }
                conditionWaiters.append(h)
                waitUntil("\(name) waits on C") { isBlocked(h, on: "condition") }
            }
            var semaphoreWaiters: [JoinHandle<Void>] = []
            for (name, l) in [("s9", 9), ("s25", 25)] {
                let h = try spawnAt(name, l) {
                    do {
                        try s.waitUnlessCancelled()
                        log.add(name)
                    } catch GreenThreadError.cancelled {
                        log.add("\(name) cancelled")
                    }
                }
                semaphoreWaiters.append(h)
                waitUntil("\(name) waits on S") { isBlocked(h, on: "semaphore") }
            }
            conditionWaiters[1].cancel()
            semaphoreWaiters[1].cancel()
            waitUntil("the cancelled waiters ended") { conditionWaiters[1].isFinished && semaphoreWaiters[1].isFinished }
            let v = SyncInvariants.violations()
            check(v.isEmpty, "after the cancellations: \(v)")
            check(isBlocked(conditionWaiters[0], on: "condition") && isBlocked(conditionWaiters[2], on: "condition"),
                  "a live condition waiter left the queue")
            c.signal()
            waitUntil("c12 woke") { conditionWaiters[2].isFinished }
            c.signal()
            s.signal()
            s.signal()
            for h in conditionWaiters + semaphoreWaiters { try h.join() }
            check(s.value == 1, "S holds \(s.value) permits, want 1 (one went to s9)")
            check(SyncInvariants.violations().isEmpty, "at the end: \(SyncInvariants.violations())")
        }
        print("order=\(log.all)")
        check(log.all == ["s25 cancelled", "c20 cancelled", "c12", "s9", "c5"], "order \(log.all)")
        print("OK")
    },

    "semaphore-counts-priority-and-timeout": {
        // Story (one worker; main at 31): S starts with 2 permits: two waits pass at once, a third with a
        // 20 ms timeout returns false. Waiters w3 (3), w15 (15), w9 (9) block on S; three signals hand
        // the permits straight to w15, w9, w3 (the count stays 0: no later arrival could take them).
        // A timed waiter that gave up does not get a later permit: the count grows instead.
        let log = Log()
        try Kernel.run(oneWorker()) {
            direct()
            let s = GreenSemaphore(value: 2, name: "S")
            s.wait()
            check(s.wait(timeout: .seconds(1)), "second permit")
            check(s.value == 0, "value \(s.value) after two waits")
            let t0 = gt_clock_monotonic_ns()
            check(!s.wait(timeout: .milliseconds(20)), "a third permit appeared")
            check(gt_clock_monotonic_ns() - t0 >= 20_000_000, "timed wait returned early")
            var handles: [JoinHandle<Void>] = []
            for (name, l) in [("w3", 3), ("w15", 15), ("w9", 9)] {
                let h = try spawnAt(name, l) { s.wait(); log.add(name) }
                handles.append(h)
                waitUntil("\(name) waits") { isBlocked(h, on: "semaphore") }
            }
            for _ in 0..<3 {
                s.signal()
                check(s.value == 0, "a permit went to the count while threads waited")
            }
            for h in handles { try h.join() }
            let late = try spawnAt("late", 10) { s.wait(timeout: .milliseconds(10)) }
            let lateGot = try late.join()
            check(!lateGot, "late got a permit")
            s.signal()
            check(s.value == 1, "value \(s.value): the permit went to a waiter that had given up")
        }
        print("order=\(log.all)")
        check(log.all == ["w15", "w9", "w3"], "service order \(log.all)")
        print("OK")
    },

    "channel-rendezvous": {
        // Story (one worker; main at 31): on a capacity-0 channel, sender (10) sends 1 and blocks: no
        // receiver. main receives 1 at once from the waiting sender, which then finishes. Then receiver
        // (10) blocks on an empty channel; main's send(7) hands 7 to it directly without blocking main.
        let received = try Kernel.run(oneWorker()) { () -> Int? in
            direct()
            let ch = GreenChannel<Int>(capacity: 0, name: "R")
            let sender = try spawnAt("sender", 10) { try ch.send(1) }
            waitUntil("sender blocks") { isBlocked(sender, on: "channel-send") }
            check(ch.count == 0, "a rendezvous buffered a value")
            check(ch.receive() == 1, "main did not get the sender's value")
            try sender.join()
            let receiver = try spawnAt("receiver", 10) { ch.receive() }
            waitUntil("receiver blocks") { isBlocked(receiver, on: "channel-receive") }
            try ch.send(7)
            return try receiver.join()
        }
        check(received == 7, "receiver got \(String(describing: received))")
        print("OK")
    },

    "channel-buffered-and-close": {
        // Story (one worker; main at 31): capacity 2: main sends 1, 2 without blocking; s3 (10) sends 3
        // and blocks (full). main receives 1, which pulls 3 into the buffer and releases s3; then 2, 3.
        // Close: r1, r2 block on the empty channel; close() gives both nil. A value buffered before close
        // is still received, then nil; send after close throws .closed; a sender blocked on a full
        // channel when it closes gets .closed.
        let (results, sendAfterClose, blockedSenderError) = try Kernel.run(oneWorker()) {
            () -> ([Int?], (any Error)?, (any Error)?) in
            var results: [Int?] = []
            direct()
            let ch = GreenChannel<Int>(capacity: 2, name: "B")
            try ch.send(1)
            try ch.send(2)
            check(ch.count == 2, "count \(ch.count)")
            let s3 = try spawnAt("s3", 10) { try ch.send(3) }
            waitUntil("s3 blocks on the full channel") { isBlocked(s3, on: "channel-send") }
            results.append(ch.receive())
            check(ch.count == 2, "the waiting sender's value was not pulled in: count \(ch.count)")
            try s3.join()
            results.append(ch.receive())
            results.append(ch.receive())

            let r1 = try spawnAt("r1", 10) { ch.receive() }
            let r2 = try spawnAt("r2", 12) { ch.receive() }
            waitUntil("r1, r2 block") { isBlocked(r1, on: "channel-receive") && isBlocked(r2, on: "channel-receive") }
            ch.close()
            results.append(try r1.join())
            results.append(try r2.join())
            check(ch.isClosed, "isClosed false after close")

            let d = GreenChannel<Int>(capacity: 1, name: "D")
            try d.send(5)
            let full = try spawnAt("full", 10) { () -> (any Error)? in errorOf { try d.send(6) } }
            waitUntil("full blocks") { isBlocked(full, on: "channel-send") }
            d.close()
            d.close()  // twice: nothing more
            let blockedSenderError = try full.join()
            let sendAfterClose = errorOf { try d.send(9) }
            results.append(d.receive())
            results.append(d.receive())
            return (results, sendAfterClose, blockedSenderError)
        }
        print("results=\(results)\nsend_after_close=\(String(describing: sendAfterClose))")
        check(results == [1, 2, 3, nil, nil, 5, nil], "results \(results)")
        guard case GreenChannelError.closed? = sendAfterClose, case GreenChannelError.closed? = blockedSenderError else {
            check(false, "errors: \(String(describing: sendAfterClose)), \(String(describing: blockedSenderError))"); return
        }
        print("OK")
    },

    "channel-waiters-in-priority-order": {
        // Story (one worker; main at 31): rendezvous channel. Receivers r4 (4), r18 (18), r9 (9) block;
        // main sends 1, 2, 3: r18 gets 1, r9 2, r4 3. Then senders s4 (4) sending 40, s18 (18) 180,
        // s9 (9) 90 block; main receives 180, 90, 40.
        let (got, order) = try Kernel.run(oneWorker()) { () -> ([String: Int], [Int?]) in
            var got: [String: Int] = [:]
            var order: [Int?] = []
            direct()
            let ch = GreenChannel<Int>(capacity: 0, name: "P")
            var receivers: [(String, JoinHandle<Int?>)] = []
            for (name, l) in [("r4", 4), ("r18", 18), ("r9", 9)] {
                let h = try spawnAt(name, l) { ch.receive() }
                receivers.append((name, h))
                waitUntil("\(name) waits") { isBlocked(h, on: "channel-receive") }
            }
            for v in 1...3 { try ch.send(v) }
            for (name, h) in receivers { got[name] = try h.join() }
            var handles: [JoinHandle<Void>] = []
            for (name, l, v) in [("s4", 4, 40), ("s18", 18, 180), ("s9", 9, 90)] {
                let h = try spawnAt(name, l) { try ch.send(v) }
                handles.append(h)
                waitUntil("\(name) waits") { isBlocked(h, on: "channel-send") }
            }
            for _ in 0..<3 { order.append(ch.receive()) }
            for h in handles { try h.join() }
            return (got, order)
        }
        print("receivers=\(got.sorted { $0.key < $1.key })\nsenders_order=\(order)")
        check(got == ["r18": 1, "r9": 2, "r4": 3], "receivers got \(got)")
        check(order == [180, 90, 40], "senders served \(order)")
        print("OK")
    },

    "sync-outside-kernel": {
        // Story: no kernel runs. Operations that need no waiting work; those that would wait fail
        // clearly (throw) instead of hanging. (The non-throwing waits stop the program with a message;
        // that path is not exercised here.)
        let s = GreenSemaphore(value: 1)
        s.wait()          // a permit is there: fine without a kernel
        s.signal()
        check(s.value == 1, "semaphore value \(s.value)")
        let ch = GreenChannel<Int>(capacity: 1)
        try ch.send(1)    // room in the buffer
        let e = errorOf { try ch.send(2) }
        print("full_send_error=\(String(describing: e))")
        guard case GreenChannelError.notInKernel? = e else { check(false, "full send: \(String(describing: e))"); return }
        check(ch.receive() == 1, "receive")
        ch.close()
        check(ch.receive() == nil, "closed and drained")
        let c = GreenCondition()
        c.signal()
        c.broadcast()
        let ce = errorOf { try c.wait(GreenMutex()) }
        guard case GreenMutexError.notInKernel? = ce else { check(false, "condition wait: \(String(describing: ce))"); return }
        print("OK")
    },
]

// MARK: Measurement

/// Nanoseconds per iteration of `body(iterations)`, best of `reps` runs.
func nsPerOp(_ iterations: Int, reps: Int = 3, _ body: (Int) throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<reps {
        let t0 = gt_clock_monotonic_ns()
        try body(iterations)
        best = min(best, Double(gt_clock_monotonic_ns() - t0) / Double(iterations))
    }
    return best
}

/// Two OS threads run `body` at once (both start it together); returns
/// wall nanoseconds.
func twoOSThreads(_ body: @escaping @Sendable () -> Void) -> Int64 {
    let started = AtomicCell<Int>(0)
    let t0 = gt_clock_monotonic_ns()
    let run: @Sendable () -> Void = {
        started.atomic.add(1, ordering: .relaxed)
        while started.atomic.load(ordering: .relaxed) < 2 {}
        body()
    }
    let a = OSWorker(run), b = OSWorker(run)
    a.join()
    b.join()
    return gt_clock_monotonic_ns() - t0
}

let syncMeasurementScenarios: [String: Scenario] = [
    "mutex-owner-read-after-migration": {
        // Each thread takes its own mutex, yields inside it (on two workers
        // a yield may resume it on the other OS thread) and unlocks, all in
        // one function, so an optimizing compiler sees lock's and unlock's
        // inline reads of "this OS thread's current thread" around the
        // yield. Were the second read to reuse the first's TLS address, an
        // unlock after a move would look at the other OS thread and throw
        // notOwner. Counts the moves, so a run that never moved says so.
        let threads = intOption("threads", 8), rounds = intOption("rounds", 3000)
        let (failures, moves) = try Kernel.run(KernelConfiguration(workers: 2)) { () -> (Int, Int) in
            let handles = try (0..<threads).map { i in
                try GreenThread.spawn(name: "m\(i)") { () -> (Int, Int) in
                    let m = GreenMutex(name: "own\(i)")
                    var failures = 0, moves = 0
                    for _ in 0..<rounds {
                        let before = gt_sys_gettid().value
                        do {
                            try m.lock()
                            GreenThread.yield()
                            try m.unlock()
                        } catch {
                            failures += 1
                            try? m.unlock()
                        }
                        if gt_sys_gettid().value != before { moves += 1 }
                    }
                    return (failures, moves)
                }
            }
            return try handles.map { try $0.join() }.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
        }
        print("moves=\(moves) failures=\(failures)")
        check(failures == 0, "\(failures) unlocks after a yield failed")
        check(moves > 0, "no thread changed OS thread: nothing was tested")
        print("OK")
    },

    "sync-fast-path": {
        // Uncontended lock+unlock on one green thread: GreenMutex (one CAS each way plus the robust
        // list), Synchronization.Mutex, pthread_mutex (default type), all in this one run. Then
        // contended handoffs: two green threads on one worker that each take the mutex and yield inside
        // it, so every acquisition is a handoff to a blocked waiter plus a switch; the same pattern
        // with two OS threads and pthread_mutex + sched_yield; and plain 2-thread contention on
        // pthread_mutex and on GreenMutex with two workers. Build with -c release for real figures.
        let n = intOption("iterations", 2_000_000)
        let k = max(1000, n / 20)
        let only = option("only")  // run the measurements whose key starts with this (profiling)
        // Filled in on the main green thread and on this OS thread, one after the other.
        let measured = Shared<[(String, Double)]>([])
        @Sendable func measure(_ key: String, _ iterations: Int, perIteration: Double = 1,
                               _ body: (Int) throws -> Void) rethrows {
            guard only.map({ key.hasPrefix($0) }) ?? true else { return }
            let ns = try nsPerOp(iterations, body) / perIteration
            measured.update { $0.append((key, ns)) }
        }
        // A raw pthread mutex, shared on purpose by the OS threads measured below.
        nonisolated(unsafe) let pm = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(pm, nil)
        try Kernel.run(KernelConfiguration(workers: 1)) {
            let gm = GreenMutex(name: "bench")
            let sm = Mutex<Int>(0)
            try measure("greenmutex_uncontended_ns", n) { n in
                for _ in 0..<n { try gm.lock(); try gm.unlock() }
            }
            try measure("greenmutex_trylock_ns", n) { n in
                for _ in 0..<n { _ = gm.tryLock(); try gm.unlock() }
            }
            try measure("greenmutex_withlock_ns", n) { n in
                var x = 0
                for _ in 0..<n { try gm.withLock { x &+= 1 } }
                check(x == n, "count")
            }
            measure("synchronization_mutex_ns", n) { n in
                for _ in 0..<n { sm.withLock { $0 &+= 1 } }
            }
            measure("pthread_mutex_ns", n) { n in
                for _ in 0..<n { pthread_mutex_lock(pm); pthread_mutex_unlock(pm) }
            }
            // The floor under a handoff: a yield between two green threads.
            try measure("green_yield_switch_ns", k, perIteration: 2) { k in
                let hs = try (0..<2).map { i in
                    try GreenThread.spawn(name: "y\(i)") { for _ in 0..<k { GreenThread.yield() } }
                }
                for h in hs { try h.join() }
            }
            // Two acquisitions (two handoffs) per iteration.
            try measure("greenmutex_handoff_one_worker_ns", k, perIteration: 2) { k in
                let hs = try (0..<2).map { i in
                    try GreenThread.spawn(name: "h\(i)") {
                        for _ in 0..<k { try gm.lock(); GreenThread.yield(); try gm.unlock() }
                    }
                }
                for h in hs { try h.join() }
            }
        }
        measure("pthread_handoff_yield_2threads_ns", k / 4, perIteration: 2) { k in
            _ = twoOSThreads { for _ in 0..<k { pthread_mutex_lock(pm); sched_yield(); pthread_mutex_unlock(pm) } }
        }
        measure("pthread_contended_2threads_ns", k, perIteration: 2) { n in
            _ = twoOSThreads { for _ in 0..<n { pthread_mutex_lock(pm); pthread_mutex_unlock(pm) } }
        }
        try Kernel.run(KernelConfiguration(workers: 2)) {
            let gm = GreenMutex(name: "bench2")
            try measure("greenmutex_contended_2workers_ns", k, perIteration: 2) { k in
                let started = AtomicCell<Int>(0)
                let hs = try (0..<2).map { i in
                    try GreenThread.spawn(name: "c\(i)") {
                        started.atomic.add(1, ordering: .relaxed)
                        while started.atomic.load(ordering: .relaxed) < 2 { GreenThread.yield() }
                        for _ in 0..<k { try gm.lock(); try gm.unlock() }
                    }
                }
                for h in hs { try h.join() }
            }
        }
        pthread_mutex_destroy(pm)
        pm.deallocate()
        for (key, value) in measured.value { print("\(key)=\((value * 10).rounded() / 10)") }
        print("OK")
    },
]
