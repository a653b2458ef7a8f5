// Report: the results as a terminal table, as JSON, and as the gt-bench
// section of docs/benchmarks.md, each with the machine, the date and the
// command that produced it.
//
// Ratios: within a group every row is divided by the group's reference row
// (marked *). Every metric is lower-is-better, so a ratio above 1 means the
// reference (GreenThreads, or "preemption off") leads by that factor.
import Foundation

struct Machine: Codable {
    var onlineCPUs: Int
    var usableCPUs: Int
    var cpuModel: String
    var kernel: String
    var swift: String

    static func current(usableCPUs: Int) -> Machine {
        let cpuinfo = ProcMemory.read("/proc/cpuinfo")
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return Machine(onlineCPUs: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), usableCPUs: usableCPUs,
                       cpuModel: model, kernel: release, swift: swiftVersion())
    }

    private static func swiftVersion() -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["swift", "--version"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return "unknown" }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n")
            .first { $0.contains("Swift version") }.map(String.init) ?? "unknown"
    }

    var summary: String {
        "\(onlineCPUs) CPUs online (\(usableCPUs) usable), \(cpuModel), Linux \(kernel), \(swift)"
    }
}

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

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`
/// in a Markdown file (appending the section when it is absent), so that
/// gt-bench, gt-fairness and hand-written analysis share one file.
func rewriteMarkdownSection(file: String, name: String, body: String) throws {
    let begin = "<!-- \(name):begin -->", end = "<!-- \(name):end -->"
    let section = "\(begin)\n\(body)\n\(end)"
    var text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? "# Benchmarks\n"
    if let b = text.range(of: begin), let e = text.range(of: end, range: b.upperBound..<text.endIndex) {
        text.replaceSubrange(b.lowerBound..<e.upperBound, with: section)
    } else {
        if !text.hasSuffix("\n") { text += "\n" }
        text += "\n" + section + "\n"
    }
    try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent,
                                            withIntermediateDirectories: true)
    try text.write(toFile: file, atomically: true, encoding: .utf8)
}

/// The command line that reproduces this run, including how it was built
/// (read off the executable's path: .../<scratch>/<triple>/<config>/gt-bench).
func reproducingCommand(tool: String) -> String {
    let args = CommandLine.arguments.dropFirst().joined(separator: " ")
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().pathComponents
    let cwd = FileManager.default.currentDirectoryPath
    if exe.count >= 4 {
        let config = exe[exe.count - 2]
        let scratchPath = exe.dropLast(3).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
        let scratch = scratchPath.hasPrefix(cwd + "/") ? String(scratchPath.dropFirst(cwd.count + 1)) : scratchPath
        if config == "release" || config == "debug" {
            let scratchFlag = scratch == ".build" ? "" : " --scratch-path \(scratch)"
            return "swift run -c \(config)\(scratchFlag) \(tool)" + (args.isEmpty ? "" : " " + args)
        }
    }
    return tool + (args.isEmpty ? "" : " " + args)
}

func isoDate() -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    return f.string(from: Date())
}
