// Measurements of the processor / OS-thread split (issue 11): what one
// preemption costs end to end, and what CPU-bound threads cost in OS
// threads and memory (each preempted thread keeps its OS thread).
import CGreenCore
import GreenThreads
import Glibc
import Synchronization

/// Time-stamp of the last loop iteration of whichever spinner ran last,
/// and which one it was.
private let lastTick = Atomic<UInt64>(0)
private let lastRunner = Atomic<Int>(-1)

/// Reads a "Key: value kB" line of /proc/self/status.
func procStatus(_ key: String) -> Int {
    guard let f = fopen("/proc/self/status", "r") else { return -1 }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, f) != nil {
        let s = String(cString: line)
        if s.hasPrefix(key + ":") {
            return Int(s.dropFirst(key.count + 1).split(separator: " ").first ?? "") ?? -1
        }
    }
    return -1
}

let machineScenarios: [String: () throws -> Void] = [
    "preemption-gap": {
        // Two call-free spinners share one processor with 1 ms slices. Each
        // iteration stamps the counter; when the runner changes, the time
        // since the other's last stamp is one preemption end to end: the
        // signal, the handler, and (this design) the park, the spare OS
        // thread taking over and handing the processor to the other
        // thread's own OS thread; (the first design) the in-handler switch.
        let seconds = intOption("seconds", 2)
        var gaps: [UInt64] = []
        gaps.reserveCapacity(100_000)
        let gapLock = Mutex<[UInt64]>([])
        try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .milliseconds(1))) {
            let deadline = gt_clock_monotonic_ns() + Int64(seconds) * 1_000_000_000
            let spinners = try (0..<2).map { me in
                try GreenThread.spawn(name: "gap\(me)") { () -> [UInt64] in
                    var mine: [UInt64] = []
                    mine.reserveCapacity(50_000)
                    while gt_clock_monotonic_ns() < deadline {
                        for _ in 0..<200 {
                            // The stamp is read after the other's: a stamp taken
                            // before a preemption would be older than theirs.
                            if lastRunner.load(ordering: .relaxed) != me {
                                let before = lastTick.load(ordering: .relaxed)
                                let now = gt_tsc()
                                if before != 0 && now > before && mine.count < 50_000 { mine.append(now &- before) }
                                lastRunner.store(me, ordering: .relaxed)
                            }
                            lastTick.store(gt_tsc(), ordering: .relaxed)
                        }
                    }
                    return mine
                }
            }
            for s in spinners { gapLock.withLock { $0.append(contentsOf: try! s.join()) } }
        }
        gaps = gapLock.withLock { $0 }.sorted()
        check(gaps.count > 20, "too few switches: \(gaps.count)")
        let us = { (q: Double) -> Double in
            Double(gaps[min(gaps.count - 1, Int(Double(gaps.count) * q))]) / Double(gt_tsc_frequency()) * 1e6
        }
        print("switches=\(gaps.count)")
        print("gap_p50_us=\(us(0.5))\ngap_p90_us=\(us(0.9))\ngap_p99_us=\(us(0.99))")
        print("OK")
    },

    "cpu-bound-machines": {
        // N call-free spinners on the configured processors with 1 ms slices,
        // until every one has been preempted at least once (so each holds an
        // OS thread of its own while it waits): OS threads and RSS then.
        let n = intOption("threads", 10_000)
        let stop = Atomic<Bool>(false)
        var osThreads = 0, rssKiB = 0, baseThreads = 0, baseRSS = 0
        var preempted = 0
        try Kernel.run(KernelConfiguration(workers: intOption("workers", 2), timeSlice: .milliseconds(1))) {
            GreenThread.current.setPriority(.highest)
            baseThreads = procStatus("Threads")
            baseRSS = procStatus("VmRSS")
            let spinners = try (0..<n).map { i in
                try GreenThread.spawn(name: "cpu\(i)") { () -> Int in
                    var x = i
                    while !stop.load(ordering: .relaxed) { x = x &* 6364136223846793005 &+ 1 }
                    return x
                }
            }
            let deadline = gt_clock_monotonic_ns() + Int64(intOption("seconds", 120)) * 1_000_000_000
            while gt_clock_monotonic_ns() < deadline {
                GreenThread.sleep(for: .milliseconds(200))
                preempted = spinners.reduce(0) { $0 + ($1.thread.statistics.preemptions > 0 ? 1 : 0) }
                if preempted == n { break }
            }
            osThreads = procStatus("Threads")
            rssKiB = procStatus("VmRSS")
            stop.store(true, ordering: .relaxed)
            for s in spinners { _ = try s.join() }
        }
        print("threads=\(n)\npreempted_once=\(preempted)")
        print("os_threads=\(osThreads)\nos_threads_before=\(baseThreads)")
        print("rss_kib=\(rssKiB)\nrss_kib_before=\(baseRSS)")
        print("rss_per_thread_kib=\(Double(rssKiB - baseRSS) / Double(n))")
        print("OK")
    },
]
