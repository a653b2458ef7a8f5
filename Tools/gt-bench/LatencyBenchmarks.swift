// Latency under CPU load, recorded in HdrHistogram (ns, 3 significant
// digits); each repetition's p50/p99/max is one value of the figure.
//
// Priority wake-up: low-priority spinners (two per CPU, call-free loops)
// fill every worker; a high-priority thread sleeps to an absolute deadline
// every `period` and records how late it starts running.
//   GreenThreads: GreenThread.sleep (the monitor wakes it and preempts a
//                 spinner at once, not at the next tick).
//   pthread:      SCHED_OTHER threads; a waker thread sleeps to the deadline
//                 and signals a condition variable the measured thread waits on.
//   SCHED_FIFO:   the machine's floor: an OS thread at the lowest real-time
//                 priority sleeps to the deadline itself (clock_nanosleep) among
//                 the same spinners. GreenThreads' monitor is such a thread, so
//                 its wake-up cannot be more prompt than this; on a virtual
//                 machine the floor's tail moves with the host (an interrupt to
//                 a vCPU the host is not running waits for it), so the two are
//                 measured side by side. Omitted where SCHED_FIFO is not permitted.
//
// CPU-mixed: N compute threads spin while M request threads each wake every
// `period` (staggered), do ~50 us of work and record the time from the
// request's intended arrival to its completion.
//   GreenThreads: requests at .high, compute at .low, preemption on.
//   pthread:      the same threads under CFS.
//   Swift tasks:  requests at .high, compute at .background on the
//                 cooperative pool; a spinning task is never preempted, so
//                 requests wait until the compute tasks stop.
//   Swift tasks, compute calling Task.yield() about every millisecond: what
//                 a careful async programmer must do by hand.
import GreenThreads
import Glibc
import Histogram
import Synchronization

/// A latency histogram in nanoseconds, up to 100 s.
func latencyHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 100_000_000_000,
                      numberOfSignificantValueDigits: .three)
}

/// A stop flag shared by spinners (relaxed loads in a call-free loop).
final class StopFlag: Sendable {
    let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// Spins on call-free work until `stop` is set; returns the work's result.
@inline(never) func spin(until stop: StopFlag) -> UInt64 {
    var x: UInt64 = 1
    while !stop.isSet {
        for _ in 0..<256 { x = workStep(x) }
    }
    return x
}

/// Runs `body` while `count` OS threads spin on call-free work; they stop
/// and are joined when it returns.
func whileOSThreadsSpin<T>(_ count: Int, _ body: () -> T) -> T {
    let stop = StopFlag()
    let spinners = (0..<count).map { _ in PThread.start { blackHole(spin(until: stop)) }! }
    defer {
        stop.set()
        for s in spinners { PThread.join(s) }
    }
    return body()
}

/// Per-repetition percentiles, collected into p50/p99/max rows.
struct LatencyFigures {
    var p50: [Double] = [], p99: [Double] = [], max: [Double] = []
    var samples = 0

    mutating func add(_ h: Histogram<UInt64>) {
        p50.append(Double(h.valueAtPercentile(50)) / 1000)
        p99.append(Double(h.valueAtPercentile(99)) / 1000)
        max.append(Double(h.max) / 1000)
        samples += Int(h.totalCount)
    }

    func rows(_ group: String, runtime: String, reference: Bool) -> [Row] {
        let note = "\(samples) samples"
        return [
            Row(group: group + " p50", runtime: runtime, metric: "us", values: p50, reference: reference, note: note),
            Row(group: group + " p99", runtime: runtime, metric: "us", values: p99, reference: reference, note: note),
            Row(group: group + " max", runtime: runtime, metric: "us", values: max, reference: reference, note: note),
        ]
    }
}

enum WakeupLatencyBenchmark {
    static let group = "priority wake-up latency, spinners on every CPU,"

    static func run(rounds: Int, periodMicroseconds: Int, reps: Int, progress: (String) -> Void) throws -> [Row] {
        var green = LatencyFigures(), pthread = LatencyFigures(), floor = LatencyFigures()
        for rep in 0..<reps {
            progress("wake-up latency rep \(rep + 1)/\(reps)")
            green.add(try greenRun(rounds: rounds, periodNs: Int64(periodMicroseconds) * 1000))
            pthread.add(pthreadRun(rounds: rounds, periodNs: Int64(periodMicroseconds) * 1000))
            if let h = fifoFloorRun(rounds: rounds, periodNs: Int64(periodMicroseconds) * 1000) { floor.add(h) }
        }
        var rows = green.rows(group, runtime: "GreenThreads .high over .low spinners", reference: true)
            + pthread.rows(group, runtime: "pthread SCHED_OTHER, condvar", reference: false)
        if floor.samples > 0 {
            rows += floor.rows(group, runtime: "SCHED_FIFO OS thread, clock_nanosleep (the machine's floor)", reference: false)
        }
        return rows
    }

    /// The floor: a SCHED_FIFO thread sleeping to each deadline among the
    /// same spinners; nil when real-time priority is not permitted.
    static func fifoFloorRun(rounds: Int, periodNs: Int64) -> Histogram<UInt64>? {
        whileOSThreadsSpin(2 * PThread.allowedCPUs().count) {
            let result = ResultBox<Histogram<UInt64>>()  // stays nil without SCHED_FIFO
            let sleeper = PThread.start {
                var param = sched_param(sched_priority: 1)
                guard pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0 else { return }
                var h = latencyHistogram()
                var deadline = monotonicNanoseconds() + periodNs
                for _ in 0..<rounds {
                    sleepOSThread(until: deadline)
                    _ = h.record(UInt64(max(0, monotonicNanoseconds() - deadline)))
                    deadline += periodNs
                }
                result.value = h
            }!
            PThread.join(sleeper)
            return result.value
        }
    }

    static func greenRun(rounds: Int, periodNs: Int64) throws -> Histogram<UInt64> {
        let workers = KernelConfiguration.usableCPUs
        return try Kernel.run(KernelConfiguration(workers: workers)) {
            let stop = StopFlag()
            let spinners = try (0..<2 * workers).map { i in
                try GreenThread.spawn(name: "spin\(i)", priority: .low) { spin(until: stop) }
            }
            let high = try GreenThread.spawn(name: "high", priority: .high) { () -> Histogram<UInt64> in
                var h = latencyHistogram()
                var deadline = monotonicNanoseconds() + periodNs
                for _ in 0..<rounds {
                    GreenThread.sleep(for: .nanoseconds(max(0, deadline - monotonicNanoseconds())))
                    _ = h.record(UInt64(max(0, monotonicNanoseconds() - deadline)))
                    deadline += periodNs
                }
                stop.set()
                return h
            }
            let h = try high.join()
            for s in spinners { blackHole(try s.join()) }
            return h
        }
    }

    private final class Wake: @unchecked Sendable {
        let cond = PCondition()
        var deadline: Int64 = 0   // guarded by cond.mutex
        var generation = 0        // guarded by cond.mutex
        var done = false          // guarded by cond.mutex
    }

    static func pthreadRun(rounds: Int, periodNs: Int64) -> Histogram<UInt64> {
        whileOSThreadsSpin(2 * PThread.allowedCPUs().count) { condvarWakeups(rounds: rounds, periodNs: periodNs) }
    }

    /// A waker sleeps to each deadline and signals a condition variable the
    /// measured thread waits on.
    private static func condvarWakeups(rounds: Int, periodNs: Int64) -> Histogram<UInt64> {
        let wake = Wake()
        let result = ResultBox<Histogram<UInt64>>()
        let waiter = PThread.start {
            var h = latencyHistogram()
            var seen = 0
            pthread_mutex_lock(wake.cond.mutex)
            while true {
                while wake.generation == seen && !wake.done { pthread_cond_wait(wake.cond.cond, wake.cond.mutex) }
                if wake.generation == seen { break }
                seen = wake.generation
                _ = h.record(UInt64(max(0, monotonicNanoseconds() - wake.deadline)))
            }
            pthread_mutex_unlock(wake.cond.mutex)
            result.value = h
        }!
        var deadline = monotonicNanoseconds() + periodNs
        for _ in 0..<rounds {
            sleepOSThread(until: deadline)
            wake.cond.locked {
                wake.deadline = deadline
                wake.generation += 1
                wake.cond.signal()
            }
            deadline += periodNs
        }
        wake.cond.locked {
            wake.done = true
            wake.cond.signal()
        }
        PThread.join(waiter)
        return result.value!
    }
}

enum MixedWorkloadBenchmark {
    struct Shape {
        var computeThreads: Int
        var requestThreads: Int
        var periodNs: Int64
        var workSteps: Int
        var durationNs: Int64
        var rounds: Int { Int(durationNs / periodNs) }
        var label: String {
            "CPU-mixed: \(computeThreads) compute + \(requestThreads) request threads, request latency"
        }
    }

    static func run(seconds: Double, reps: Int, progress: (String) -> Void) throws -> [Row] {
        let cpus = KernelConfiguration.usableCPUs
        let shape = Shape(computeThreads: 2 * cpus, requestThreads: 4, periodNs: 5_000_000,
                          workSteps: Int(50 * burnStepsPerMicrosecond), durationNs: Int64(seconds * 1e9))
        var green = LatencyFigures(), pthread = LatencyFigures(), tasks = LatencyFigures(), yielding = LatencyFigures()
        for rep in 0..<reps {
            progress("CPU-mixed rep \(rep + 1)/\(reps)")
            green.add(try greenRun(shape))
            pthread.add(pthreadRun(shape))
            tasks.add(tasksRun(shape, yieldEveryMicroseconds: nil))
            yielding.add(tasksRun(shape, yieldEveryMicroseconds: 1000))
        }
        return green.rows(shape.label, runtime: "GreenThreads, requests .high, preemption", reference: true)
            + pthread.rows(shape.label, runtime: "pthread (CFS)", reference: false)
            + tasks.rows(shape.label, runtime: "Swift tasks, requests .high, compute .background", reference: false)
            + yielding.rows(shape.label, runtime: "Swift tasks, compute yields every 1 ms", reference: false)
    }

    /// The k-th intended arrival of request thread j.
    static func arrival(_ start: Int64, _ shape: Shape, thread j: Int, round k: Int) -> Int64 {
        start + Int64(k) * shape.periodNs + Int64(j) * shape.periodNs / Int64(shape.requestThreads)
    }

    static func greenRun(_ shape: Shape) throws -> Histogram<UInt64> {
        try Kernel.run(KernelConfiguration()) {
            let stop = StopFlag()
            let compute = try (0..<shape.computeThreads).map { i in
                try GreenThread.spawn(name: "compute\(i)", priority: .low) { spin(until: stop) }
            }
            let start = monotonicNanoseconds() + 5_000_000
            let requests = try (0..<shape.requestThreads).map { j in
                try GreenThread.spawn(name: "request\(j)", priority: .high) { () -> Histogram<UInt64> in
                    var h = latencyHistogram()
                    for k in 0..<shape.rounds {
                        let due = arrival(start, shape, thread: j, round: k)
                        let wait = due - monotonicNanoseconds()
                        if wait > 0 { GreenThread.sleep(for: .nanoseconds(wait)) }
                        blackHole(burn(shape.workSteps, seed: UInt64(k)))
                        _ = h.record(UInt64(max(0, monotonicNanoseconds() - due)))
                    }
                    return h
                }
            }
            var total = latencyHistogram()
            for r in requests { total.add(try r.join()) }
            stop.set()
            for c in compute { blackHole(try c.join()) }
            return total
        }
    }

    static func pthreadRun(_ shape: Shape) -> Histogram<UInt64> {
        let results = whileOSThreadsSpin(shape.computeThreads) { () -> [ResultBox<Histogram<UInt64>>] in
            let start = monotonicNanoseconds() + 5_000_000
            let results = (0..<shape.requestThreads).map { _ in ResultBox<Histogram<UInt64>>() }
            let requests = (0..<shape.requestThreads).map { j in
                PThread.start {
                    var h = latencyHistogram()
                    for k in 0..<shape.rounds {
                        let due = arrival(start, shape, thread: j, round: k)
                        sleepOSThread(until: due)
                        blackHole(burn(shape.workSteps, seed: UInt64(k)))
                        _ = h.record(UInt64(max(0, monotonicNanoseconds() - due)))
                    }
                    results[j].value = h
                }!
            }
            for r in requests { PThread.join(r) }
            return results
        }
        var total = latencyHistogram()
        for r in results { total.add(r.value!) }
        return total
    }

    static func tasksRun(_ shape: Shape, yieldEveryMicroseconds: Int?) -> Histogram<UInt64> {
        let stop = StopFlag()
        // The compute tasks never give their pool threads back, so only an
        // OS thread can end the run: it stops them after the window.
        let start = monotonicNanoseconds() + 5_000_000
        let stopper = PThread.start {
            sleepOSThread(until: start + shape.durationNs)
            stop.set()
        }!
        let chunk = yieldEveryMicroseconds.map { Int(Double($0) * burnStepsPerMicrosecond) }
        let total = runOnCooperativePool { () -> Histogram<UInt64> in
            await withTaskGroup(of: Histogram<UInt64>?.self) { group in
                for _ in 0..<shape.computeThreads {
                    group.addTask(priority: .background) {
                        if let chunk {
                            var x: UInt64 = 1
                            while !stop.isSet {
                                x = burn(chunk, seed: x)
                                await Task.yield()
                            }
                            blackHole(x)
                        } else {
                            blackHole(spin(until: stop))
                        }
                        return nil
                    }
                }
                for j in 0..<shape.requestThreads {
                    group.addTask(priority: .high) {
                        var h = latencyHistogram()
                        let clock = ContinuousClock()
                        for k in 0..<shape.rounds {
                            let due = arrival(start, shape, thread: j, round: k)
                            let wait = due - monotonicNanoseconds()
                            if wait > 0 { try? await Task.sleep(until: clock.now + .nanoseconds(wait), clock: clock) }
                            blackHole(burn(shape.workSteps, seed: UInt64(k)))
                            _ = h.record(UInt64(max(0, monotonicNanoseconds() - due)))
                        }
                        return h
                    }
                }
                var total = latencyHistogram()
                for await h in group { if let h { total.add(h) } }
                return total
            }
        }
        PThread.join(stopper)
        return total
    }
}
