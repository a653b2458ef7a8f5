// Scenarios for the fairness tests (Tests/GreenThreadsTests/FairnessTests.swift):
// small versions of gt-fairness's scenarios whose checks do not depend on
// the machine's speed.
//
// How a thread's CPU share is measured: each spinner reads the time-stamp
// counter after every few dozen arithmetic steps and sums the stretches in
// which consecutive readings are less than 20 us apart, inside the
// measurement window. A longer pause means it was switched out (by the green
// scheduler or by the host). So the shares are what each thread really ran,
// with no help from the library's own accounting. The loop makes no calls
// (gt_tsc is an inline instruction), so every preemption tick lands at a
// safe point.
//
// The window is measured in CPU time, not wall time: it closes when the
// process has used `--cpu-ms` of CPU since it opened, so a busy machine that
// takes our CPUs away lengthens the window instead of shrinking the number
// of time slices it holds.
import CGreenCore
import GreenThreads
import Glibc
import Synchronization

/// The measurement window in time-stamp-counter ticks, and the stop flag.
final class FairnessWindow: Sendable {
    let start = Atomic<UInt64>(.max)
    let end = Atomic<UInt64>(.max)
    let stop = Atomic<Bool>(false)

    /// Run by the coordinator (a green thread above the measured ones):
    /// opens the window, waits until the process used `cpuMs` of CPU, closes
    /// it. It wakes rarely (each sleep is the CPU still to go over the
    /// `workers`, which cannot use it up sooner): every wake-up of a thread
    /// that outranks the spinners preempts one of them, and frequent ones
    /// would skew the shares being measured.
    func measure(cpuMs: Int, workers: Int) {
        GreenThread.sleep(for: .milliseconds(10))
        start.store(gt_tsc(), ordering: .releasing)
        let cpu0 = processCPUNanoseconds()
        while true {
            let left = Int64(cpuMs) * 1_000_000 - (processCPUNanoseconds() - cpu0)
            if left <= 0 { break }
            GreenThread.sleep(for: .nanoseconds(max(1_000_000, left / Int64(workers))))
        }
        end.store(gt_tsc(), ordering: .releasing)
        stop.store(true, ordering: .releasing)
    }

    /// Ticks of [a, b] inside the window.
    func overlap(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let lo = max(a, start.load(ordering: .acquiring)), hi = min(b, end.load(ordering: .acquiring))
        return hi > lo ? hi - lo : 0
    }
}

func processCPUNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// A pause between two counter readings longer than this is a switch.
let switchGapTicks = gt_tsc_frequency() / 50_000  // 20 us

/// Spins until the window closes; returns the ticks it ran inside the window.
@inline(never) func observedSpin(_ window: FairnessWindow, seed: UInt64) -> UInt64 {
    var x = seed | 1
    var last = gt_tsc(), runStart = last
    var ran: UInt64 = 0
    while !window.stop.load(ordering: .relaxed) {
        for _ in 0..<64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17 }
        let now = gt_tsc()
        if now &- last > switchGapTicks {
            ran &+= window.overlap(runStart, last)
            runStart = now
        }
        last = now
    }
    if x == 0 { print("") }  // keeps the work
    return ran &+ window.overlap(runStart, last)
}

/// Spins until this thread has run `ticks` (its own running time, pauses
/// excluded); returns the counter readings when it first and last ran.
@inline(never) func spinOwnTime(_ ticks: UInt64) -> (first: UInt64, last: UInt64) {
    var x: UInt64 = 1
    let first = gt_tsc()
    var last = first, ran: UInt64 = 0
    while ran < ticks {
        for _ in 0..<64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17 }
        let now = gt_tsc()
        if now &- last <= switchGapTicks { ran &+= now &- last }
        last = now
    }
    if x == 0 { print("") }
    return (first, last)
}

/// --preemption off gives the cooperative kernel, to show the checks fail.
func fairnessConfiguration(workers: Int) -> KernelConfiguration {
    KernelConfiguration(workers: intOption("workers", workers), timeSlice: .milliseconds(intOption("slice-ms", 1)),
                        preemption: option("preemption") != "off")
}

/// Shares relative to a fair share (1 = exactly fair), printed as a list.
func relativeShares(_ ticks: [UInt64]) -> [Double] {
    let mean = Double(ticks.reduce(0, +)) / Double(ticks.count)
    return ticks.map { mean > 0 ? Double($0) / mean : 0 }
}

let benchmarkScenarios: [String: Scenario] = [
    "fairness-equal-spinners": {
        // N equal call-free spinners share the workers for `--cpu-ms` of CPU.
        // Invariants: Jain's index of their running times >= --min-jain, and
        // every one ran (none starved).
        let n = intOption("threads", 10)
        let cpuMs = intOption("cpu-ms", 1000)
        let minJain = Double(option("min-jain") ?? "0.95")!
        let window = FairnessWindow()
        let config = fairnessConfiguration(workers: 2)
        let (ran, preemptions) = try Kernel.run(config) { () -> ([UInt64], UInt64) in
            GreenThread.current.setPriority(.highest)
            let spinners = try (0..<n).map { i in
                try GreenThread.spawn(name: "spin\(i)") { observedSpin(window, seed: UInt64(i)) }
            }
            window.measure(cpuMs: cpuMs, workers: config.workers)
            return (try spinners.map { try $0.join() }, spinners.reduce(0) { $0 + $1.thread.statistics.preemptions })
        }
        let shares = relativeShares(ran)
        let jainIndex = jain(ran.map { Double($0) })
        print("jain=\(jainIndex)")
        print("min_share=\(shares.min()!)\nmax_share=\(shares.max()!)")
        print("starved=\(ran.filter { $0 == 0 }.count)")
        print("preemptions=\(preemptions)")
        print("window_ms=\(Double(window.end.load(ordering: .relaxed) - window.start.load(ordering: .relaxed)) / Double(gt_tsc_frequency()) * 1000)")
        check(!ran.contains(0), "\(ran.filter { $0 == 0 }.count) of \(n) equal spinners never ran: shares \(shares)")
        check(jainIndex >= minJain, "Jain's index \(jainIndex) < \(minJain); shares relative to fair: \(shares)")
        print("OK")
    },

    "fairness-mixed-no-starvation": {
        // Spinners, sleepers (1 ms of work, 2 ms asleep) and blockers (1 ms
        // of work, then join a child that works 1 ms) at one priority.
        // Invariant: every thread of every kind runs in the window, and the
        // spinners share what is left evenly (Jain >= 0.9).
        let n = intOption("threads", 12)
        let cpuMs = intOption("cpu-ms", 1000)
        let window = FairnessWindow()
        let third = max(1, n / 3)
        let config = fairnessConfiguration(workers: 2)
        let (spinnerRan, sleeperRounds, blockerRounds) = try Kernel.run(config) { () -> ([UInt64], [Int], [Int]) in
            GreenThread.current.setPriority(.highest)
            let ms = gt_tsc_frequency() / 1000
            let spinners = try (0..<third).map { i in
                try GreenThread.spawn(name: "spin\(i)") { observedSpin(window, seed: UInt64(i)) }
            }
            let sleepers = try (0..<third).map { i in
                try GreenThread.spawn(name: "sleep\(i)") { () -> Int in
                    var rounds = 0
                    while !window.stop.load(ordering: .relaxed) {
                        let (first, _) = spinOwnTime(ms)
                        GreenThread.sleep(for: .milliseconds(2))
                        if window.overlap(first, gt_tsc()) > 0 { rounds += 1 }
                    }
                    return rounds
                }
            }
            let blockers = try (0..<third).map { i in
                try GreenThread.spawn(name: "block\(i)") { () -> Int in
                    var rounds = 0
                    while !window.stop.load(ordering: .relaxed) {
                        let (first, _) = spinOwnTime(ms)
                        try GreenThread.spawn(name: "child\(i)") { _ = spinOwnTime(ms) }.join()
                        if window.overlap(first, gt_tsc()) > 0 { rounds += 1 }
                    }
                    return rounds
                }
            }
            window.measure(cpuMs: cpuMs, workers: config.workers)
            return (try spinners.map { try $0.join() }, try sleepers.map { try $0.join() },
                    try blockers.map { try $0.join() })
        }
        let spinnerJain = jain(spinnerRan.map { Double($0) })
        print("spinner_jain=\(spinnerJain)")
        print("spinner_shares=\(relativeShares(spinnerRan))")
        print("sleeper_rounds=\(sleeperRounds)\nblocker_rounds=\(blockerRounds)")
        check(!spinnerRan.contains(0), "a spinner starved: \(spinnerRan)")
        check(!sleeperRounds.contains(0), "a sleeper never ran in the window: \(sleeperRounds)")
        check(!blockerRounds.contains(0), "a blocker never ran in the window: \(blockerRounds)")
        check(spinnerJain >= 0.9, "spinners' Jain's index \(spinnerJain)")
        print("OK")
    },

    "fairness-strict-priority": {
        // One worker. The coordinator (highest) creates, all before any can
        // run, two threads at each of .low, .normal and .high, each needing
        // `--work-ms` of its own running time. Strict priority: no thread
        // runs while a higher one is ready, so every .normal thread starts
        // after both .high ones ended and every .low one after both
        // .normal ones; equal ones share: each .high thread starts before
        // the other .high thread ends (round-robin, not one after the other).
        let workTicks = UInt64(intOption("work-ms", 60)) * gt_tsc_frequency() / 1000
        let spans = try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .milliseconds(intOption("slice-ms", 1)))) {
            () -> [String: [(first: UInt64, last: UInt64)]] in
            GreenThread.current.setPriority(.highest)
            let levels: [(String, Priority)] = [("low", .low), ("normal", .normal), ("high", .high)]
            var handles: [(String, JoinHandle<(first: UInt64, last: UInt64)>)] = []
            for (name, priority) in levels {
                for i in 0..<2 {
                    handles.append((name, try GreenThread.spawn(name: "\(name)\(i)", priority: priority) {
                        spinOwnTime(workTicks)
                    }))
                }
            }
            var spans: [String: [(first: UInt64, last: UInt64)]] = [:]
            for (name, h) in handles { spans[name, default: []].append(try h.join()) }
            return spans
        }
        let (high, normal, low) = (spans["high"]!, spans["normal"]!, spans["low"]!)
        for (name, s) in [("high", high), ("normal", normal), ("low", low)] {
            print("\(name)=\(s.map { "\($0.first)-\($0.last)" }.joined(separator: ","))")
        }
        let highEnd = high.map(\.last).max()!, normalEnd = normal.map(\.last).max()!
        check(normal.allSatisfy { $0.first >= highEnd }, "a .normal thread ran before both .high threads had finished")
        check(low.allSatisfy { $0.first >= normalEnd }, "a .low thread ran before both .normal threads had finished")
        for (name, s) in [("high", high), ("normal", normal), ("low", low)] {
            check(s[0].first < s[1].last && s[1].first < s[0].last,
                  "the two \(name) threads ran one after the other instead of sharing the worker")
        }
        print("OK")
    },

    "fairness-priority-two-workers": {
        // Two workers, two .high spinners that each need `--work-ms` of
        // running time and two .low spinners: while both .high threads are
        // ready they hold both workers, so no .low thread starts before the
        // first .high thread ends.
        let workTicks = UInt64(intOption("work-ms", 60)) * gt_tsc_frequency() / 1000
        let (highs, lows) = try Kernel.run(KernelConfiguration(workers: 2, timeSlice: .milliseconds(1))) {
            () -> ([(first: UInt64, last: UInt64)], [(first: UInt64, last: UInt64)]) in
            GreenThread.current.setPriority(.highest)
            // Highs first: the idle second worker takes the first thread spawned.
            let high = try (0..<2).map { i in try GreenThread.spawn(name: "high\(i)", priority: .high) { spinOwnTime(workTicks) } }
            let low = try (0..<2).map { i in try GreenThread.spawn(name: "low\(i)", priority: .low) { spinOwnTime(workTicks) } }
            return (try high.map { try $0.join() }, try low.map { try $0.join() })
        }
        print("high=\(highs)\nlow=\(lows)")
        let firstHighEnd = highs.map(\.last).min()!
        check(lows.allSatisfy { $0.first >= firstHighEnd }, "a .low thread ran while both .high threads were ready")
        print("OK")
    },
]
