// Preemption overhead: the same call-free CPU-bound work (xorshift steps, no
// calls, so every tick lands at a safe point and is taken) run by 2 threads
// per worker with preemption off, and on at 10 ms and 1 ms slices. The
// figure is the process's CPU time for the fixed work (wall time is shown in
// the notes; CPU time does not grow while other processes hold our CPUs).
// Repetitions interleave the three configurations, so drift in the
// machine's speed hits all of them alike, and alternate their order (off
// first, then last), so a steady drift does not favour either end. There
// are three times `reps` of them: on this machine one pair of 2-second runs
// differs by up to 3-5% with no preemption at all, and the target is 1%, so
// the median needs more pairs than the other figures.
import GreenThreads
import Glibc

enum PreemptionBenchmark {
    static let group = "preemption overhead (fixed CPU-bound work)"

    struct Run {
        var cpuSeconds: Double
        var wallSeconds: Double
        var preemptions: UInt64
    }

    static func run(workMilliseconds: Double, reps: Int, progress: (String) -> Void) throws -> [Row] {
        let workers = KernelConfiguration.usableCPUs
        let threads = 2 * workers
        let steps = Int(workMilliseconds * 1000 * burnStepsPerMicrosecond / Double(threads) * Double(workers))
        let configs: [(String, KernelConfiguration)] = [
            ("preemption off", KernelConfiguration(workers: workers, preemption: false)),
            ("10 ms slice", KernelConfiguration(workers: workers, timeSlice: .milliseconds(10))),
            ("1 ms slice", KernelConfiguration(workers: workers, timeSlice: .milliseconds(1))),
        ]
        var runs = [[Run]](repeating: [], count: configs.count)
        _ = try once(configs[0].1, threads: threads, steps: steps / 10)  // warm-up
        let rounds = 3 * reps
        for round in 0..<rounds {
            progress("preemption rep \(round + 1)/\(rounds)")
            let order = round % 2 == 0 ? Array(configs.indices) : configs.indices.reversed()
            for i in order {
                runs[i].append(try once(configs[i].1, threads: threads, steps: steps))
            }
        }
        return configs.indices.map { i in
            let r = runs[i]
            let wall = Spread(r.map { $0.wallSeconds })
            let perSecond = Spread(r.map { Double($0.preemptions) / $0.wallSeconds }).median
            var note = String(format: "wall %.3f s [%.3f-%.3f]", wall.median, wall.min, wall.max)
            if i > 0 {
                // The paired overhead of each repetition against the "off" run beside it.
                let paired = Spread(zip(r, runs[0]).map { ($0.cpuSeconds / $1.cpuSeconds - 1) * 100 })
                // Processor time lost per preemption: the extra wall time
                // on every worker, over the preemptions taken (the signal,
                // the park, the two hand-offs, and the wake-ups' latency).
                let lost = Spread(zip(r, runs[0]).map { on, off in
                    (on.wallSeconds - off.wallSeconds) * Double(workers) / Double(max(1, on.preemptions)) * 1e6
                })
                note += String(format: "; paired overhead %+.2f%% [%+.2f..%+.2f]; %.0f preemptions/s; %.0f us of processor time per preemption",
                               paired.median, paired.min, paired.max, perSecond, lost.median)
            }
            return Row(group: group, runtime: "GreenThreads, \(configs[i].0), \(threads) threads on \(workers) workers",
                       metric: "CPU s", values: r.map { $0.cpuSeconds }, reference: i == 0, note: note)
        }
    }

    static func once(_ config: KernelConfiguration, threads: Int, steps: Int) throws -> Run {
        try Kernel.run(config) {
            let c0 = processCPUNanoseconds()
            let t0 = monotonicNanoseconds()
            let handles = try (0..<threads).map { i in
                try GreenThread.spawn(name: "burn\(i)") { burn(steps, seed: UInt64(i + 1)) }
            }
            for h in handles { blackHole(try h.join()) }
            let t1 = monotonicNanoseconds()
            let c1 = processCPUNanoseconds()
            let preemptions = handles.reduce(0) { $0 + $1.thread.statistics.preemptions }
            return Run(cpuSeconds: Double(c1 - c0) / 1e9, wallSeconds: Double(t1 - t0) / 1e9, preemptions: preemptions)
        }
    }
}
