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

/// A kernel body that deadlocks through green threads only: two threads
/// join each other (after a 10 ms sleep, so both exist), and main joins one.
func joinEachOther() throws {
    let second = Shared<JoinHandle<Void>?>(nil)
    let first = try GreenThread.spawn(name: "first") {
        GreenThread.sleep(for: .milliseconds(10))
        try second.value!.join()
    }
    second.value = try GreenThread.spawn(name: "second") { try first.join() }
    try first.join()
}

let correctnessScenarios: [String: Scenario] = [
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
        let stalled = AtomicCell<Int>(0), unlocked = AtomicCell<Int>(0), hookGaveUp = AtomicCell<Int>(0)
        SyncTestHooks.mutexTimeout = { step in
            guard step == .hasWaitersCleared else { return }
            stalled.atomic.store(1, ordering: .releasing)
            if !spinOS(seconds: 5, until: { unlocked.atomic.load(ordering: .acquiring) == 1 }) {
                hookGaveUp.atomic.store(1, ordering: .relaxed)
            }
        }
        defer { SyncTestHooks.mutexTimeout = nil }
        let (lowInside, lowAfter, violations, highGot) = try Kernel.run(KernelConfiguration(workers: 2, preemption: false)) {
            () -> (Int, Int, [String], Bool?) in
            direct()
            let m = GreenMutex(name: "M")
            let holding = AtomicCell<Int>(0)
            let low = try spawnAt("low", 4) { () -> (Int, [String]) in
                try m.lock()
                holding.atomic.store(1, ordering: .releasing)
                let stalledSeen = spinOS(seconds: 10) { stalled.atomic.load(ordering: .acquiring) == 1 }
                check(stalledSeen, "the monitor never reached the hook")
                // Nothing that takes the kernel lock until the unlock: the
                // stalled monitor holds it.
                try m.unlock()
                unlocked.atomic.store(1, ordering: .releasing)
                return (myLevel, SyncInvariants.violations())
            }
            waitUntil("low holds M") { holding.atomic.load(ordering: .acquiring) == 1 }
            let high = try spawnAt("high", 20) { try m.lock(timeout: .milliseconds(50)) }
            waitUntil("high waits") { isBlocked(high, on: "mutex") }
            let lowInside = level(low)
            let highGot = try high.join()
            let (lowAfter, violations) = try low.join()
            return (lowInside, lowAfter, violations, highGot)
        }
        print("low_inside=\(lowInside)\nlow_after=\(lowAfter)\nhigh_got=\(String(describing: highGot))")
        check(hookGaveUp.atomic.load(ordering: .relaxed) == 0, "low never unlocked while the monitor was stalled")
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
        let stop = AtomicCell<Bool>(false)
        let loaders = (0..<loadThreads).map { _ in
            OSWorker { while !stop.atomic.load(ordering: .relaxed) { gt_cpu_relax() } }
        }
        let stale = AtomicCell<Int>(0), timeouts = AtomicCell<Int>(0), acquisitions = AtomicCell<Int>(0)
        let firstStaleSeen = Shared("")
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
                            if stale.atomic.add(1, ordering: .relaxed).oldValue == 0 {
                                firstStaleSeen.value = "\(me) at \(me.effectivePriority) (base \(me.priority)) after releasing everything"
                            }
                        }
                        GreenThread.yield()
                    }
                })
                handles.append(try spawnAt("waiter\(p)", 20) {
                    var r = SplitMix64(seed: UInt64(p) &* 104_729)
                    while gt_clock_monotonic_ns() < end {
                        if try m.lock(timeout: .microseconds(Int64(1 + r.next() % timeoutUs))) {
                            acquisitions.atomic.add(1, ordering: .relaxed)
                            try m.unlock()
                        } else {
                            timeouts.atomic.add(1, ordering: .relaxed)
                        }
                        GreenThread.sleep(for: .microseconds(Int64(r.next() % (pauseUs + 1))))
                    }
                })
            }
            for h in handles { try h.join() }
            let v = SyncInvariants.violations()
            check(v.isEmpty, "invariants broken at the end:\n" + v.prefix(20).joined(separator: "\n"))
        }
        stop.atomic.store(true, ordering: .relaxed)
        for l in loaders { l.join() }
        print("pairs=\(pairs)\nstale_boosts=\(stale.atomic.load(ordering: .relaxed))")
        print("timeouts=\(timeouts.atomic.load(ordering: .relaxed))\nwaiter_acquisitions=\(acquisitions.atomic.load(ordering: .relaxed))")
        let firstStale = firstStaleSeen.value
        if !firstStale.isEmpty { print("first_stale=\(firstStale)") }
        check(timeouts.atomic.load(ordering: .relaxed) > 0, "no timed lock ever timed out: the race was not exercised")
        check(stale.atomic.load(ordering: .relaxed) == 0, "\(stale.atomic.load(ordering: .relaxed)) stale boosts; first: \(firstStale)")
        print("OK")
    },

    "deadlock-report-while-an-os-thread-uses-the-sync-kit": {
        // Story (2 workers): two threads join each other, so the kernel declares a deadlock, while a
        // plain OS thread keeps reading a semaphore's value (withSyncLock: KernelCore.running, then
        // the kernel lock). The hook holds the kernel lock 50 ms as the report starts, so the OS
        // thread is surely waiting for it while holding `running`. The report must not take
        // `running` under the kernel lock (the bug: both threads hung). Fails by timeout otherwise.
        let stop = AtomicCell<Bool>(false)
        let probe = GreenSemaphore(value: 0)
        let reads = AtomicCell<Int>(0)
        let hammer = OSWorker {
            while !stop.atomic.load(ordering: .relaxed) {
                _ = probe.value
                reads.atomic.add(1, ordering: .relaxed)
            }
        }
        SyncTestHooks.deadlockDetected = { usleep(50_000) }
        defer { SyncTestHooks.deadlockDetected = nil }
        var cycles: [[UInt64]] = []
        do {
            try Kernel.run(KernelConfiguration(workers: 2)) { try joinEachOther() }
            check(false, "deadlock not detected")
        } catch let KernelError.deadlock(report) {
            cycles = report.cycles
        }
        stop.atomic.store(true, ordering: .relaxed)
        hammer.join()
        print("cycles=\(cycles.count)\nos_thread_reads=\(reads.atomic.load(ordering: .relaxed))")
        check(cycles.count == 1, "one cycle: \(cycles)")
        check(reads.atomic.load(ordering: .relaxed) > 0, "the OS thread never read the semaphore")
        print("OK")
    },

    "no-deadlock-while-an-os-thread-may-signal": {
        // Story (2 workers): main waits on a semaphore that only a plain OS thread signals, 300 ms
        // later, then receives from a channel that the OS thread sends on 100 ms after that. Every
        // green thread is blocked meanwhile, but the kernel is not deadlocked: docs/sync.md lets an
        // OS thread signal and send. The bug: KernelError.deadlock after a few milliseconds.
        let sem = GreenSemaphore(value: 0, name: "from-os-thread")
        let ch = GreenChannel<Int>(capacity: 1, name: "from-os-thread")
        let helper = OSWorker {
            usleepOS(300_000)
            sem.signal()
            usleepOS(100_000)
            do { try ch.send(7) } catch { print("send failed: \(error)") }
        }
        var got: Int?
        var waitedMs: Int64 = 0
        do {
            (got, waitedMs) = try Kernel.run(KernelConfiguration(workers: 2)) { () -> (Int?, Int64) in
                let t0 = gt_clock_monotonic_ns()
                sem.wait()
                let got = ch.receive()
                return (got, (gt_clock_monotonic_ns() - t0) / 1_000_000)
            }
        } catch {
            helper.join()
            check(false, "Kernel.run threw \(error)")
        }
        helper.join()
        print("got=\(String(describing: got))\nwaited_ms=\(waitedMs)")
        check(got == 7, "main received \(String(describing: got))")
        check(waitedMs >= 350, "main waited only \(waitedMs) ms")
        print("OK")
    },

    "deadlock-on-a-semaphore-reported-once-outside-threads-end": {
        // Story (2 workers): main waits on a semaphore nobody will signal. A plain OS thread exists
        // for 300 ms and ends without signalling. While it exists the kernel cannot know it will
        // not signal, so the deadlock is reported only after it ended (within the monitor's 100 ms
        // check interval, and well under 3 s); a join cycle (green threads only) is reported at once
        // even while an OS thread exists.
        let sem = GreenSemaphore(value: 0, name: "never-signalled")
        let helper = OSWorker { usleepOS(300_000) }
        let t0 = gt_clock_monotonic_ns()
        var elapsedMs: Int64 = -1
        do {
            try Kernel.run(KernelConfiguration(workers: 2)) { sem.wait() }
            check(false, "deadlock not detected")
        } catch let KernelError.deadlock(report) {
            elapsedMs = (gt_clock_monotonic_ns() - t0) / 1_000_000
            check(report.threads.count == 1, "one live thread: \(report.threads.count)")
        }
        helper.join()
        print("semaphore_deadlock_ms=\(elapsedMs)")
        check(elapsedMs >= 300 && elapsedMs < 3000, "reported after \(elapsedMs) ms; the OS thread lived 300 ms")

        let bystander = OSWorker { usleepOS(2_000_000) }
        let t1 = gt_clock_monotonic_ns()
        var joinMs: Int64 = -1
        do {
            try Kernel.run(KernelConfiguration(workers: 2)) { try joinEachOther() }
            check(false, "join deadlock not detected")
        } catch KernelError.deadlock {
            joinMs = (gt_clock_monotonic_ns() - t1) / 1_000_000
        }
        bystander.join()
        print("join_deadlock_ms=\(joinMs)")
        check(joinMs >= 0 && joinMs < 1000, "a join cycle reported after \(joinMs) ms with an OS thread alive")
        print("OK")
    },

    "thread-local-deinit-may-use-the-sync-kit": {
        // Story (2 workers): a thread sets a GreenThreadLocal to an object whose deinit locks a
        // GreenMutex and signals a semaphore, then ends; nobody keeps its JoinHandle. --via registry:
        // the kernel's own references to the finished thread go last (registry, worker), under the
        // kernel lock. --via timer: the thread was woken early from a timed wait, so a stale timer
        // entry holds it until the monitor drops it under the kernel lock at the old deadline.
        // Either way the deinit must run on the thread when its body returns, and main must see the
        // signal within 5 s. The bug: the values lived as long as the thread object; the timer
        // variant hung the kernel (deinit under the non-recursive kernel lock), the registry variant
        // never saw the signal.
        final class UsesSyncKitOnDeinit: Sendable {
            let dropped: GreenSemaphore, m: GreenMutex
            init(_ dropped: GreenSemaphore, _ m: GreenMutex) { self.dropped = dropped; self.m = m }
            deinit {
                try? m.withLock {}
                dropped.signal()
            }
        }
        let via = option("via") ?? "registry"
        check(via == "registry" || via == "timer", "--via registry|timer, not \(via)")
        let local = try GreenThreadLocal<UsesSyncKitOnDeinit?>(default: nil)
        let seen = try Kernel.run(KernelConfiguration(workers: 2)) { () -> Bool in
            let dropped = GreenSemaphore(value: 0), wake = GreenSemaphore(value: 0)
            let m = GreenMutex(name: "used-by-deinit")
            // In a function of its own, so that the JoinHandle is released
            // when it returns (a debug build keeps `_ =` results to the end
            // of the enclosing scope).
            @inline(never) func startHolder() throws {
                _ = try GreenThread.spawn(name: "local-holder") {
                    local.value = UsesSyncKitOnDeinit(dropped, m)
                    if via == "timer" { _ = wake.wait(timeout: .milliseconds(300)) }
                }
            }
            try startHolder()
            if via == "timer" {
                GreenThread.sleep(for: .milliseconds(20))
                wake.signal()
            }
            let seen = dropped.wait(timeout: .seconds(5))
            // Past the stale entry's deadline: the monitor has dropped it.
            if via == "timer" { GreenThread.sleep(for: .milliseconds(500)) }
            return seen
        }
        print("via=\(via)\ndeinit_signalled=\(seen)")
        check(seen, "the local's deinit never signalled")
        print("OK")
    },

    "thread-local-keys-exhausted-throws": {
        // Story: GreenThreadLocals are created until the OS has no thread-local key left (glibc:
        // PTHREAD_KEYS_MAX, 1024, minus what the process already uses). The next one must throw
        // GreenThreadError.threadLocalKeyUnavailable, not silently share key 0 with another library.
        var locals: [GreenThreadLocal<Int>] = []
        var thrown: GreenThreadError?
        for i in 0..<4096 {
            do {
                locals.append(try GreenThreadLocal<Int>(default: i))
            } catch let error as GreenThreadError {
                thrown = error
                break
            }
        }
        print("created=\(locals.count)\nerror=\(thrown.map { "\($0)" } ?? "none")")
        guard case .threadLocalKeyUnavailable(let e)? = thrown else {
            check(false, "no error after \(locals.count) locals")
            return
        }
        check(e == EAGAIN, "errno \(e), want EAGAIN")
        // The locals that were created still work, each with its own value.
        locals[0].value = 10
        locals[locals.count - 1].value = 20
        check(locals[0].value == 10 && locals[locals.count - 1].value == 20, "values alias")
        print("OK")
    },

    "clock-nanosleep-eintr-table": {
        // Story (1 worker, no preemption, so only the program's own signal interrupts): main sleeps
        // with clock_nanosleep, and a plain OS thread sends the worker SIGUSR1 (a handler without
        // SA_RESTART) 100 ms into it. Cases: relative and absolute (TIMER_ABSTIME), each with
        // `remain` preset to a marker. EINTR reaches the program either way (its own signal); a
        // relative sleep reports the time left (0 < left < 2 s); an absolute one leaves `remain`
        // alone (the bug: it received uninitialized stack bytes).
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: the sleep fails with EINTR
        check(sigaction(SIGUSR1, &action, nil) == 0, "sigaction")
        // A test runner may start us with SIGUSR1 blocked; this OS thread
        // becomes worker 0, where the sleeps run.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGUSR1)
        check(pthread_sigmask(SIG_UNBLOCK, &unblock, nil) == 0, "pthread_sigmask")
        let marker = timespec(tv_sec: 12345, tv_nsec: 678)
        let results = try Kernel.run(KernelConfiguration(workers: 1, preemption: false)) { () -> [String] in
            var results: [String] = []
            let worker = pthread_self()
            for absolute in [false, true] {
                let sender = OSWorker {
                    usleepOS(100_000)
                    pthread_kill(worker, SIGUSR1)
                }
                var request = timespec(tv_sec: 2, tv_nsec: 0)
                if absolute {
                    var now = timespec()
                    clock_gettime(CLOCK_MONOTONIC, &now)
                    request.tv_sec += now.tv_sec
                    request.tv_nsec = now.tv_nsec
                }
                var remain = marker
                let rc = clock_nanosleep(CLOCK_MONOTONIC, absolute ? TIMER_ABSTIME : 0, &request, &remain)
                sender.join()
                let name = absolute ? "absolute" : "relative"
                results.append("\(name): rc=\(rc) remain=\(remain.tv_sec).\(remain.tv_nsec)")
                check(rc == EINTR, "\(name): rc \(rc), want EINTR")
                if absolute {
                    check(remain.tv_sec == marker.tv_sec && remain.tv_nsec == marker.tv_nsec,
                          "absolute sleep wrote remain = \(remain.tv_sec) s \(remain.tv_nsec) ns")
                } else {
                    let left = Int64(remain.tv_sec) * 1_000_000_000 + Int64(remain.tv_nsec)
                    check(left > 0 && left < 2_000_000_000, "relative sleep left \(left) ns")
                }
            }
            return results
        }
        print(results.joined(separator: "\n"))
        print("OK")
    },

    "mutex-contended-cas-retries-are-bounded": {
        // Story (2 workers, no preemption ticks): owner (16) holds M and spins on worker A, calling
        // nothing but M's lock-free fast paths. locker (16) calls M.lock() on worker B and takes the
        // kernel lock. The hook runs between its read of the word and its CAS, and each time makes
        // owner toggle M (unlock, or lock again) without the kernel lock, so every CAS fails: --toggles
        // (1000) times in a row. The attempts under one hold of the kernel lock must stay within
        // GreenMutex's bound (64), the lock being let go in between; then owner stops toggling, ends
        // holding or not, and locker gets M. The bug: one hold of the kernel lock for all 1000.
        let toggles = intOption("toggles", 1000)
        let requested = AtomicCell<Int>(0), done = AtomicCell<Int>(0), maxAttempt = AtomicCell<Int>(0)
        let ownerSpinning = AtomicCell<Bool>(false)
        SyncTestHooks.contendedLockAttempt = { attempt in
            if attempt > maxAttempt.atomic.load(ordering: .relaxed) { maxAttempt.atomic.store(attempt, ordering: .relaxed) }
            guard ownerSpinning.atomic.load(ordering: .acquiring), requested.atomic.load(ordering: .relaxed) < toggles else { return }
            let n = requested.atomic.add(1, ordering: .releasing).newValue
            _ = spinOS(seconds: 5) { done.atomic.load(ordering: .acquiring) >= n }
        }
        defer { SyncTestHooks.contendedLockAttempt = nil }
        let lockerGot = try Kernel.run(KernelConfiguration(workers: 2, preemption: false)) { () -> Bool in
            let m = GreenMutex(name: "M")
            let owner = try GreenThread.spawn(name: "owner") {
                try m.lock()
                var held = true
                ownerSpinning.atomic.store(true, ordering: .releasing)
                while done.atomic.load(ordering: .relaxed) < toggles {
                    let target = requested.atomic.load(ordering: .acquiring)
                    if target > done.atomic.load(ordering: .relaxed) {
                        if held { try m.unlock() } else { check(m.tryLock(), "owner could not retake M") }
                        held.toggle()
                        done.atomic.add(1, ordering: .releasing)
                    } else {
                        gt_cpu_relax()
                    }
                }
                ownerSpinning.atomic.store(false, ordering: .releasing)
                if held { try m.unlock() }
            }
            waitUntil("owner holds M") { ownerSpinning.atomic.load(ordering: .acquiring) }
            let locker = try GreenThread.spawn(name: "locker") { () -> Bool in
                try m.lock()
                try m.unlock()
                return true
            }
            let lockerGot = try locker.join()
            try owner.join()
            return lockerGot
        }
        print("toggles=\(done.atomic.load(ordering: .relaxed))\nmax_attempts_per_kernel_lock=\(maxAttempt.atomic.load(ordering: .relaxed))")
        check(lockerGot, "locker never got M")
        check(done.atomic.load(ordering: .relaxed) == toggles, "owner toggled \(done.atomic.load(ordering: .relaxed)) times")
        check(maxAttempt.atomic.load(ordering: .relaxed) <= 64,
              "\(maxAttempt.atomic.load(ordering: .relaxed)) CAS attempts under one hold of the kernel lock")
        print("OK")
    },
]
