// FairnessReport: the runs as terminal tables, JSON, and the gt-fairness
// section of docs/benchmarks.md (machine, date, command, the Jain table).
import Foundation
import GTToolSupport

struct FairnessReport: Codable {
    var machine: Machine
    var date: String
    var command: String
    var sliceMs: Int
    var workers: Int
    var runs: [RunSummary]
    var seconds: Double

    static func line(_ s: RunSummary) -> String {
        var text = String(format: "%@ N=%d %@: Jain %.4f, max/min %@, starved %d/%d, worst delay %.1f ms, mean run %.2f ms, utilization %.0f%%",
                          s.scenario, s.n, s.runtime, s.jain, s.maxOverMin.map { String(format: "%.2f", $0) } ?? "inf",
                          s.starved, s.equalThreads, s.worstDelayMs, s.meanRunIntervalMs, s.utilization * 100)
        if let p = s.preemptions, let d = s.deferredPreemptions { text += ", preemptions \(p) (deferred \(d))" }
        if let a = s.accountedJain { text += String(format: ", Jain by the library's accounting %.4f", a) }
        return text
    }

    var terminalText: String {
        var lines = ["gt-fairness: \(machine.summary)", "date: \(date)", "command: \(command)",
                     "GreenThreads: \(workers) workers, \(sliceMs) ms slice", ""]
        var keys: [String] = []
        for r in runs where !keys.contains("\(r.scenario) \(r.n)") { keys.append("\(r.scenario) \(r.n)") }
        for key in keys {
            let group = runs.filter { "\($0.scenario) \($0.n)" == key }
            let first = group[0]
            let kind = ScenarioKind(rawValue: first.scenario)!
            lines.append(String(format: "== %@ (%@), N=%d, window %.2f s", first.scenario, kind.summary, first.n, first.windowSeconds))
            let header = ["runtime", "Jain", "(accounted)", "max/min", "starved", "worst delay", "mean run", "util", "preempt (deferred)", "shares / fair share"]
            var table = [header]
            for s in group {
                table.append([s.runtime, String(format: "%.4f", s.jain), s.accountedJain.map { String(format: "%.4f", $0) } ?? "-", s.maxOverMin.map { String(format: "%.2f", $0) } ?? "inf",
                              "\(s.starved)/\(s.equalThreads)", String(format: "%.1f ms", s.worstDelayMs),
                              String(format: "%.2f ms", s.meanRunIntervalMs), String(format: "%.0f%%", s.utilization * 100),
                              s.preemptions.map { "\($0) (\(s.deferredPreemptions ?? 0))" } ?? "-", s.sharesText])
            }
            let widths = (0..<header.count).map { c in table.map { $0[c].count }.max()! }
            for cells in table {
                lines.append("  " + cells.enumerated().map { i, cell in
                    i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                }.joined(separator: "  "))
            }
            if kind == .priority || kind == .mixed || kind == .inversion {
                for s in group { lines.append("  \(s.runtime): \(s.rolesText)") }
            }
            lines.append("")
        }
        lines.append("Jain's index over the equal-priority group's running time in the window (1 = perfectly even, 1/N = one thread took all); "
                     + "(accounted): the same by GreenThreads' own per-thread accounting (ThreadStatistics.cpuTicks). "
                     + "worst delay: longest time a member of that group was switched out. mean run: average uninterrupted run (the effective slice).")
        lines.append(String(format: "total run time %.1f s", seconds))
        return lines.joined(separator: "\n")
    }

    var markdown: String {
        let runtimes = Runtime.allCases.map(\.label).filter { label in runs.contains { $0.runtime == label } }
        var md = [
            "## gt-fairness results",
            "",
            "- Machine: \(machine.summary)",
            "- Date: \(date)",
            "- Command: `\(command)`",
            "- GreenThreads: \(workers) workers, \(sliceMs) ms time slice; run time \(String(format: "%.0f", seconds)) s",
            "",
            "Jain's index of the equal-priority threads' CPU time over the window (1 = even, 1/N = one thread took all), "
                + "with the worst scheduling delay (longest a thread of that group waited, switched out). "
                + "Shares come from each thread's own clock readings (gaps over 20 us count as switched out).",
            "",
            "| scenario | N | window | " + runtimes.map { "\($0) Jain (max/min, worst delay)" }.joined(separator: " | ")
                + " | GreenThreads preemptions (deferred) |",
            "|---|---:|---:|" + runtimes.map { _ in "---|" }.joined() + "---|",
        ]
        var keys: [String] = []
        for r in runs where !keys.contains("\(r.scenario) \(r.n)") { keys.append("\(r.scenario) \(r.n)") }
        for key in keys {
            let group = runs.filter { "\($0.scenario) \($0.n)" == key }
            let cells = runtimes.map { label -> String in
                guard let s = group.first(where: { $0.runtime == label }) else { return "-" }
                let ratio = s.maxOverMin.map { String(format: "%.2f", $0) } ?? "inf"
                return String(format: "%.4f (%@, %.1f ms)", s.jain, ratio, s.worstDelayMs)
                    + (s.starved > 0 ? " **\(s.starved) starved**" : "")
            }
            let green = group.first { $0.preemptions != nil }
            let preempt = green.map { "\($0.preemptions!) (\($0.deferredPreemptions!))" } ?? "-"
            md.append("| \(group[0].scenario) | \(group[0].n) | \(String(format: "%.2f s", group[0].windowSeconds)) | "
                      + cells.joined(separator: " | ") + " | \(preempt) |")
        }
        let roleRuns = runs.filter { $0.scenario != ScenarioKind.spin.rawValue && $0.scenario != ScenarioKind.alloc.rawValue }
        if !roleRuns.isEmpty {
            md.append("")
            md.append("What each role got (share of the run's capacity, window x CPUs; per-thread share of one CPU):")
            md.append("")
            for s in roleRuns { md.append("- \(s.scenario) N=\(s.n), \(s.runtime): \(s.rolesText)") }
        }
        return md.joined(separator: "\n")
    }
}
