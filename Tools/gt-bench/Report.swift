// Report: the results as a terminal table, as JSON, and as the gt-bench
// section of docs/benchmarks.md, each with the machine, the date and the
// command that produced it.
//
// Ratios: within a group every row is divided by the group's reference row
// (marked *). Every metric is lower-is-better, so a ratio above 1 means the
// reference (GreenThreads, or "preemption off") leads by that factor.
import Foundation
import GTToolSupport

struct Report: Codable {
    var machine: Machine
    var date: String
    var command: String
    var rows: [Row]
    var seconds: Double

    /// Groups in first-appearance order, each with its rows.
    var groups: [(String, [Row])] {
        var order: [String] = []
        var byGroup: [String: [Row]] = [:]
        for r in rows {
            if byGroup[r.group] == nil { order.append(r.group) }
            byGroup[r.group, default: []].append(r)
        }
        return order.map { ($0, byGroup[$0]!) }
    }

    static func ratio(_ row: Row, in rows: [Row]) -> String {
        guard !row.isReference else { return "*" }
        guard let ref = rows.first(where: { $0.isReference })?.value, let v = row.value, ref.median > 0 else { return "-" }
        return String(format: "%.2fx", v.median / ref.median)
    }

    static func number(_ x: Double) -> String {
        let a = abs(x)
        if a >= 100 { return String(format: "%.0f", x) }
        if a >= 10 { return String(format: "%.1f", x) }
        if a >= 1 { return String(format: "%.2f", x) }
        return String(format: "%.3g", x)
    }

    static func figure(_ row: Row) -> (String, String) {
        if let v = row.value {
            return ("\(number(v.median)) \(row.metric)", "\(number(v.min))-\(number(v.max)) (\(v.reps))")
        }
        return ("failed", row.error ?? "")
    }

    static let legend = """
        ratio = this row's median / the reference row's (*) median. Every figure is lower-is-better, \
        so a ratio above 1 means the reference leads by that factor. Spread: fastest-slowest repetition \
        (repetitions in parentheses).
        """

    var terminalTable: String {
        var lines = ["gt-bench: \(machine.summary)", "date: \(date)", "command: \(command)", ""]
        let header = ["runtime", "median", "spread (reps)", "ratio", "notes"]
        for (group, rows) in groups {
            lines.append("== \(group)")
            var table = [header]
            for r in rows {
                let (median, spread) = Report.figure(r)
                let who = r.source == ExternalPeers.source ? r.runtime + " [peers]" : r.runtime
                table.append([who, median, spread, Report.ratio(r, in: rows), r.note ?? ""])
            }
            let widths = (0..<header.count).map { c in table.map { $0[c].count }.max()! }
            for cells in table {
                lines.append("  " + cells.enumerated().map { i, cell in
                    i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                }.joined(separator: "  "))
            }
            lines.append("")
        }
        lines.append(Report.legend)
        lines.append(String(format: "total run time %.1f s", seconds))
        return lines.joined(separator: "\n")
    }

    var markdown: String {
        var md = [
            "## gt-bench results",
            "",
            "- Machine: \(machine.summary)",
            "- Date: \(date)",
            "- Command: `\(command)`",
            "- Run time: \(String(format: "%.0f", seconds)) s",
            "",
            Report.legend + " Rows marked [peers] come from `Tools/peers/run.sh`, run in the same invocation.",
            "",
            "| workload | runtime | median | spread (reps) | ratio | notes |",
            "|---|---|---:|---|---:|---|",
        ]
        for (group, rows) in groups {
            for (i, r) in rows.enumerated() {
                let (median, spread) = Report.figure(r)
                let who = r.source == ExternalPeers.source ? r.runtime + " [peers]" : r.runtime
                let cells = [i == 0 ? "**\(group)**" : "", who, median, spread, Report.ratio(r, in: rows), r.note ?? ""]
                md.append("| " + cells.map { $0.replacingOccurrences(of: "|", with: "/") }.joined(separator: " | ") + " |")
            }
        }
        return md.joined(separator: "\n")
    }
}
