// Scenarios of the correctness sweep (issue 10): each pins one race or
// hazard found in review. Where the race needs an unlucky schedule, the
// scenario replays it deterministically with a test hook that stalls the
// kernel between two steps (SyncTestHooks, set only here); a second
// scenario repeats the race with the public API only, under load.
//
// Each header tells the story: who holds what, who waits, what must hold.
import CGreenCore
@_spi(TestHooks) import GreenThreads
import Glibc
import Synchronization

/// Spins the calling OS thread until `condition` holds or `seconds` pass;
/// returns whether it held. For hooks, which run under the kernel lock and
/// must not call into the kernel.
func spinOS(seconds: Int64, until condition: () -> Bool) -> Bool {
    let deadline = gt_clock_monotonic_ns() + seconds * 1_000_000_000
    while !condition() {
        if gt_clock_monotonic_ns() > deadline { return false }
        gt_cpu_relax()
    }
    return true
}

let correctnessScenarios: [String: () throws -> Void] = [
    "mutex-timeout-stale-boost-replay": {
        // Story (2 workers, no preemption ticks, so only the hook decides the interleaving):
        //  1. low (4) locks M and spins on worker A, calling nothing.            low 4
        //  2. high (20) M.lock(timeout: 50 ms) from worker B: queues, blocks.   low 20
        //  3. high's deadline: the monitor runs the timeout under the kernel lock. The hook stalls it
        //     right after it clears M's hasWaiters bit, until low has unlocked M, which it can do
        //     lock-free now (one CAS: the bit is clear).
        //  4. The monitor goes on. low then reads its priority (under the kernel lock, so after the
        //     timeout finished): it must be back at 4, and every invariant must hold.
        // The bug (issue 10): the timeout cleared the bit before recomputing, and recomputed whoever
        // the word named by then (nobody): low kept 20 ("inherited priority 20, recomputed -1").
        let stalled = Atomic<Int>(0), unlocked = Atomic<Int>(0), hookGaveUp = Atomic<Int>(0)
        SyncTestHooks.mutexTimeout = { step in
            guard step == .hasWaitersCleared else { return }
            stalled.store(1, ordering: .releasing)
            if !spinOS(seconds: 5, until: { unlocked.load(ordering: .acquiring) == 1 }) {
                hookGaveUp.store(1, ordering: .relaxed)
            }
        }
        defer { SyncTestHooks.mutexTimeout = nil }
        var lowInside = -1, lowAfter = -1, highGot: Bool?
        var violations: [String] = []
        try Kernel.run(KernelConfiguration(workers: 2, preemption: false)) {
            direct()
            let m = GreenMutex(name: "M")
            let holding = Atomic<Int>(0)
            let low = try spawnAt("low", 4) {
                try m.lock()
                holding.store(1, ordering: .releasing)
                let stalledSeen = spinOS(seconds: 10) { stalled.load(ordering: .acquiring) == 1 }
                check(stalledSeen, "the monitor never reached the hook")
                // Nothing that takes the kernel lock until the unlock: the
                // stalled monitor holds it.
                try m.unlock()
                unlocked.store(1, ordering: .releasing)
                lowAfter = myLevel
                violations = SyncInvariants.violations()
            }
            waitUntil("low holds M") { holding.load(ordering: .acquiring) == 1 }
            let high = try spawnAt("high", 20) { highGot = try m.lock(timeout: .milliseconds(50)) }
            waitUntil("high waits") { isBlocked(high, on: "mutex") }
            lowInside = level(low)
            try high.join()
            try low.join()
        }
        print("low_inside=\(lowInside)\nlow_after=\(lowAfter)\nhigh_got=\(String(describing: highGot))")
        check(hookGaveUp.load(ordering: .relaxed) == 0, "low never unlocked while the monitor was stalled")
        check(highGot == false, "high's timed lock returned \(String(describing: highGot))")
        check(lowInside == 20, "low at \(lowInside) while high waited, want 20")
        check(lowAfter == 4, "low at \(lowAfter) after releasing everything: a stale boost, want its base 4")
        check(violations.isEmpty, "invariants broken:\n" + violations.joined(separator: "\n"))
        print("OK")
    },

    "mutex-timeout-race-public-api": {
        // Story (public API only; 2 workers, 1 ms slices, OS threads spinning beside the kernel so
        // that the monitor is descheduled now and then): --pairs (64) pairs, each a low owner (4) and
        // a high waiter (20) on the pair's own mutex. The owner locks, works 0-100 us, unlocks; the
        // waiter locks with a random 1-100 us timeout, so its timeouts land while the owner runs on
        // the other worker. After each unlock the owner holds nothing, so it must not be boosted:
        // every boost seen then is stale (the timed-out waiter's, never taken back). Reported as
        // stale_boosts; it must be 0, and the run must see timeouts (or it proved nothing).
        let pairs = intOption("pairs", 64)
        let durationMs = Int64(intOption("ms", 2000))
        let loadThreads = intOption("load", 2)
        let holdUs = UInt64(intOption("hold-us", 100)), timeoutUs = UInt64(intOption("timeout-us", 100))
        let pauseUs = UInt64(intOption("pause-us", 200))
        let stop = Atomic<Bool>(false)
        let loaders = (0..<loadThreads).map { _ in
            OSWorker { while !stop.load(ordering: .relaxed) { gt_cpu_relax() } }
        }
        let stale = Atomic<Int>(0), timeouts = Atomic<Int>(0), acquisitions = Atomic<Int>(0)
        var firstStale = ""
        try Kernel.run(KernelConfiguration(workers: 2, timeSlice: .milliseconds(1))) {
            direct()
            let end = gt_clock_monotonic_ns() + durationMs * 1_000_000
            var handles: [JoinHandle<Void>] = []
            for p in 0..<pairs {
                let m = GreenMutex(name: "pair\(p)")
                handles.append(try spawnAt("owner\(p)", 4) {
                    var r = SplitMix64(seed: UInt64(p) &* 7919)
                    while gt_clock_monotonic_ns() < end {
                        try m.lock()
                        spin(nanoseconds: Int64(r.next() % (holdUs * 1000 + 1)))
                        try m.unlock()
                        let me = GreenThread.current
                        if me.isBoosted {
                            if stale.add(1, ordering: .relaxed).oldValue == 0 {
                                firstStale = "\(me) at \(me.effectivePriority) (base \(me.priority)) after releasing everything"
                            }
                        }
                        GreenThread.yield()
                    }
                })
                handles.append(try spawnAt("waiter\(p)", 20) {
                    var r = SplitMix64(seed: UInt64(p) &* 104_729)
                    while gt_clock_monotonic_ns() < end {
                        if try m.lock(timeout: .microseconds(Int64(1 + r.next() % timeoutUs))) {
                            acquisitions.add(1, ordering: .relaxed)
                            try m.unlock()
                        } else {
                            timeouts.add(1, ordering: .relaxed)
                        }
                        GreenThread.sleep(for: .microseconds(Int64(r.next() % (pauseUs + 1))))
                    }
                })
            }
            for h in handles { try h.join() }
            let v = SyncInvariants.violations()
            check(v.isEmpty, "invariants broken at the end:\n" + v.prefix(20).joined(separator: "\n"))
        }
        stop.store(true, ordering: .relaxed)
        for l in loaders { l.join() }
        print("pairs=\(pairs)\nstale_boosts=\(stale.load(ordering: .relaxed))")
        print("timeouts=\(timeouts.load(ordering: .relaxed))\nwaiter_acquisitions=\(acquisitions.load(ordering: .relaxed))")
        if !firstStale.isEmpty { print("first_stale=\(firstStale)") }
        check(timeouts.load(ordering: .relaxed) > 0, "no timed lock ever timed out: the race was not exercised")
        check(stale.load(ordering: .relaxed) == 0, "\(stale.load(ordering: .relaxed)) stale boosts; first: \(firstStale)")
        print("OK")
    },
]
