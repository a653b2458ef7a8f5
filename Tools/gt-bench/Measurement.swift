// Measurement: what one benchmark figure is (a row of the results table)
// and how repetitions become one: the median, with the fastest and slowest
// repetition beside it as the spread. Every figure gt-bench prints is made
// here from values measured in this run; nothing is remembered between runs.
import Glibc
import Synchronization

/// The median and extremes of a figure's repetitions.
struct Spread: Codable, Sendable {
    var median: Double
    var min: Double
    var max: Double
    var reps: Int

    init(_ values: [Double]) {
        precondition(!values.isEmpty, "a figure needs at least one repetition")
        let sorted = values.sorted()
        let mid = sorted.count / 2
        median = sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
        min = sorted.first!
        max = sorted.last!
        reps = sorted.count
    }

    /// A figure summarized elsewhere (the external peers' JSON).
    init(median: Double, min: Double, max: Double, reps: Int) {
        self.median = median
        self.min = min
        self.max = max
        self.reps = reps
    }
}

/// One row of the results table: one runtime's figure for one workload.
///
/// Rows that share `group` are compared with the group's reference row
/// (GreenThreads, or "preemption off" for the overhead group): the ratio
/// is this row's median divided by the reference's. Every metric here is
/// lower-is-better, so a ratio above 1 means the reference leads.
struct Row: Codable, Sendable {
    /// Workload and size, e.g. "spawn+join 100k"; rows of one group are compared.
    var group: String
    /// What ran: "GreenThreads", "pthread", "Swift tasks", "go", ...
    var runtime: String
    /// Unit of the figure: "ms", "ns/switch", "B/thread", "us p99", ...
    var metric: String
    var value: Spread?
    /// Why there is no value (e.g. "pthread_create failed after 32,700 threads").
    var error: String?
    /// The row every other row of its group is divided by.
    var isReference: Bool
    /// Where the row came from: "gt-bench" or "Tools/peers".
    var source: String
    /// Extra facts shown in the notes column (preemptions, threads reached, ...).
    var note: String?

    init(group: String, runtime: String, metric: String, values: [Double],
         reference: Bool = false, source: String = "gt-bench", note: String? = nil) {
        self.group = group
        self.runtime = runtime
        self.metric = metric
        self.value = values.isEmpty ? nil : Spread(values)
        self.isReference = reference
        self.source = source
        self.note = note
    }

    init(group: String, runtime: String, metric: String, spread: Spread,
         source: String, note: String? = nil) {
        self.init(group: group, runtime: runtime, metric: metric, values: [], source: source, note: note)
        self.value = spread
    }

    init(group: String, runtime: String, metric: String, error: String,
         reference: Bool = false, source: String = "gt-bench") {
        self.init(group: group, runtime: runtime, metric: metric, values: [], reference: reference, source: source)
        self.error = error
    }
}

/// Wall-clock time in nanoseconds (CLOCK_MONOTONIC, through the vdso).
@inline(__always) func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Lets the previous run wind down before a nanosecond-scale figure is
/// timed: the Swift-task runs leave Dispatch's worker threads busy for a
/// while after they return. Measured on the green yield (1 worker): 58-78 ns
/// straight after the pthread and Swift-task runs of the same repetition,
/// 38-41 ns after a 300 ms pause or with those runs left out. The peers run
/// in processes of their own, alone, so every runtime gets the same quiet start.
func settle() {
    usleep(200_000)
}

/// CPU time of the whole process (all its threads), user plus system, in
/// nanoseconds. Unlike wall time it does not grow while the machine's other
/// work keeps our threads off the CPU.
func processCPUNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Human-readable size: "10k", "100k", "1M".
func sizeLabel(_ n: Int) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 { return "\(n / 1_000_000)M" }
    if n >= 1_000 && n % 1_000 == 0 { return "\(n / 1_000)k" }
    return "\(n)"
}

/// A call-free unit of CPU work: one xorshift64 step, which the optimizer
/// cannot fold into a closed form (it does fold a linear congruential
/// loop). Loops of it contain no calls, so a preemption tick always lands
/// at a safe point.
@inline(__always) func workStep(_ x: UInt64) -> UInt64 {
    var x = x
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    return x
}

/// Where work results go: a store the optimizer must keep, which also stops
/// it from moving the (otherwise pure) work across the clock reads around it.
let workSink = Atomic<UInt64>(0)

/// Runs `iterations` work steps and publishes the result to `workSink`.
@inline(never) @discardableResult
func burn(_ iterations: Int, seed: UInt64 = 1) -> UInt64 {
    var x = seed | 1
    for _ in 0..<iterations { x = workStep(x) }
    workSink.store(x, ordering: .relaxed)
    return x
}

/// Keeps a computed value alive so the work that made it is not removed.
@inline(never) func blackHole(_ x: UInt64) {
    workSink.store(x, ordering: .relaxed)
}

/// Work steps per microsecond on this machine, measured once (20 ms of work).
let burnStepsPerMicrosecond: Double = {
    _ = burn(1_000_000)
    var best = 0.0
    for _ in 0..<3 {
        let t0 = monotonicNanoseconds()
        let steps = 2_000_000
        blackHole(burn(steps))
        let dt = Double(monotonicNanoseconds() - t0) / 1000
        best = Swift.max(best, Double(steps) / dt)
    }
    return best
}()
