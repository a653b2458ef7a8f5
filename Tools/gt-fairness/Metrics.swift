// Metrics: what a run's traces say about fairness.
//   share      a thread's running time in the window / all threads' running time
//   Jain       (sum x)^2 / (n * sum x^2) over the equal-priority group's
//              running times: 1 when all are equal, 1/n when one takes all
//   max/min    the equal group's largest running time over its smallest
//              (infinite when one was starved)
//   starved    members of the equal group that never ran in the window
//   delay      the longest a member of the equal group waited, switched
//              out, inside the window
import Foundation

enum SummaryMath {
    /// A thread's waiting time in the window; one that never ran in it
    /// waited all of it (every thread of a plan wants the CPU at the start).
    static func waited(_ t: ThreadTrace, _ o: RunOutcome) -> UInt64 {
        t.runTicks == 0 ? o.windowTicks : min(t.waitTicks, o.windowTicks)
    }
}

func jainIndex(_ xs: [Double]) -> Double {
    let sum = xs.reduce(0, +), squares = xs.reduce(0) { $0 + $1 * $1 }
    return squares > 0 ? sum * sum / (Double(xs.count) * squares) : 0
}

struct RoleSummary: Codable {
    var role: String
    var threads: Int
    var level: Int
    /// This role's running time as a fraction of the run's capacity
    /// (window x workers or CPUs).
    var capacityShare: Double
    /// Mean per-thread running time / window (how much of one CPU each got).
    var perThreadCPU: Double
    /// Mean per-thread time spent wanting to run but switched out (or woken
    /// late), as a fraction of the window: near 0 when a level gets all the
    /// CPU it asks for.
    var waited: Double
    var worstWakeDelayMs: Double?
    /// Longest wait for the shared lock (inversion scenario).
    var worstLockWaitMs: Double?
}

struct RunSummary: Codable {
    var scenario: String
    var n: Int
    var runtime: String
    var windowSeconds: Double
    var capacity: Int
    var jain: Double
    /// GreenThreads: Jain's index of the same group by the library's own
    /// accounting (ThreadStatistics.cpuTicks), which counts time a worker
    /// was descheduled by the host as the running thread's.
    var accountedJain: Double?
    var maxOverMin: Double?
    var starved: Int
    var equalThreads: Int
    var worstDelayMs: Double
    var meanRunIntervalMs: Double
    var utilization: Double
    var preemptions: UInt64?
    var deferredPreemptions: UInt64?
    /// Per-thread share of the equal group's time x group size (1 = a fair share).
    var relativeShares: [Double]
    var roles: [RoleSummary]
    var droppedIntervals: Int

    init(plan: ScenarioPlan, outcome o: RunOutcome) {
        scenario = plan.kind.rawValue
        n = plan.n
        runtime = o.runtime.label
        windowSeconds = TSC.seconds(o.windowTicks)
        capacity = o.capacity
        let equal = o.traces.filter { $0.role == plan.equalRole }
        let times = equal.map { Double($0.runTicks) }
        let mean = times.reduce(0, +) / Double(max(1, times.count))
        equalThreads = equal.count
        jain = jainIndex(times)
        if let accounted = o.accountedTicks {
            accountedJain = jainIndex(zip(o.traces, accounted).filter { $0.0.role == plan.equalRole }.map { Double($0.1) })
        }
        let lo = times.min() ?? 0, hi = times.max() ?? 0
        maxOverMin = lo > 0 ? hi / lo : nil
        starved = times.filter { $0 == 0 }.count
        worstDelayMs = TSC.seconds(equal.map(\.worstGapTicks).max() ?? 0) * 1000
        relativeShares = times.map { mean > 0 ? $0 / mean : 0 }
        let intervals = o.traces.flatMap(\.intervals).filter { $0.end > o.windowStart }
        let meanInterval = intervals.isEmpty ? 0 : intervals.reduce(0.0) { $0 + Double($1.end - $1.start) } / Double(intervals.count)
        meanRunIntervalMs = TSC.seconds(UInt64(meanInterval)) * 1000
        let capacityTicks = Double(o.windowTicks) * Double(o.capacity)
        utilization = o.traces.reduce(0.0) { $0 + Double($1.runTicks) } / capacityTicks
        if o.runtime == .green {
            preemptions = o.traces.reduce(0) { $0 + $1.preemptions }
            deferredPreemptions = o.traces.reduce(0) { $0 + $1.deferredPreemptions }
        }
        var roleOrder: [String] = []
        for t in o.traces where !roleOrder.contains(t.role) { roleOrder.append(t.role) }
        roles = roleOrder.map { role in
            let members = o.traces.filter { $0.role == role }
            let total = members.reduce(0.0) { $0 + Double($1.runTicks) }
            let wake = members.map(\.worstWakeDelayTicks).max() ?? 0
            return RoleSummary(role: role, threads: members.count, level: members[0].priorityLevel,
                               capacityShare: total / capacityTicks,
                               perThreadCPU: total / Double(members.count) / Double(o.windowTicks),
                               waited: members.reduce(0.0) { $0 + Double(SummaryMath.waited($1, o)) } / Double(members.count) / Double(o.windowTicks),
                               worstWakeDelayMs: members.contains { $0.sleeps > 0 } ? TSC.seconds(wake) * 1000 : nil,
                               worstLockWaitMs: members.contains { $0.locks > 0 }
                                   ? TSC.seconds(members.map(\.worstLockWaitTicks).max() ?? 0) * 1000 : nil)
        }
        droppedIntervals = o.traces.reduce(0) { $0 + $1.dropped }
    }

    /// The relative shares, listed for small N and summarized for large N.
    var sharesText: String {
        let sorted = relativeShares.sorted()
        func f(_ x: Double) -> String { String(format: "%.2f", x) }
        if relativeShares.count <= 12 { return relativeShares.map(f).joined(separator: " ") }
        let p = { (q: Double) in sorted[min(sorted.count - 1, Int(q * Double(sorted.count - 1)))] }
        return "min \(f(sorted.first!)) p10 \(f(p(0.1))) median \(f(p(0.5))) p90 \(f(p(0.9))) max \(f(sorted.last!))"
    }

    var rolesText: String {
        roles.map { r in
            var s = String(format: "%@ x%d (level %d): %.1f%% of capacity, %.1f%% of a CPU each, waited %.1f%% of the time",
                           r.role, r.threads, r.level, r.capacityShare * 100, r.perThreadCPU * 100, r.waited * 100)
            if let w = r.worstWakeDelayMs { s += String(format: ", worst wake delay %.2f ms", w) }
            if let w = r.worstLockWaitMs { s += String(format: ", worst lock wait %.2f ms", w) }
            return s
        }.joined(separator: "; ")
    }
}
