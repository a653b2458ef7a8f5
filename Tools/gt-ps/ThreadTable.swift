// ThreadTable: the `ps -H`/`top -H`-like view of a snapshot, fitted to a
// width (80 columns unless the terminal is wider, or --wide).
//
//   ID NAME          STATE    PRI     WK    CPU    SW  PRE WAIT          STACK
//
// Fixed columns keep their width; NAME and WAIT share what is left, so the
// rows never wrap. Colour (state only) only on a terminal, never in a pipe,
// and never with NO_COLOR set.
import GTSnapshot

struct ThreadTable {
    /// Columns the table is laid out in.
    var width: Int
    var color: Bool
    var stacks: Bool
    /// Whether lines are cut at `width` (not with --wide).
    var clips = true

    private struct Column {
        var title: String
        var width: Int
        var right: Bool
    }

    /// The header, summary and one row per thread (with frames under it).
    func render(_ snapshot: KernelSnapshot, threads: [ThreadSnapshot]) -> [String] {
        var lines = summary(snapshot).map(fit)
        for w in snapshot.workers { lines.append(fit(workerLine(w, snapshot))) }
        lines.append("")
        let idWidth = max(2, threads.map { String($0.id).count }.max() ?? 2)
        let fixed = [Column(title: "ID", width: idWidth, right: true),
                     Column(title: "STATE", width: 8, right: false),
                     Column(title: "PRI", width: 6, right: false),
                     Column(title: "WK", width: 2, right: true),
                     Column(title: "CPU", width: 6, right: true),
                     Column(title: "SW", width: 5, right: true),
                     Column(title: "PRE", width: 4, right: true),
                     Column(title: "STACK", width: 9, right: true)]
        // Ten columns, nine single-space gaps; NAME gets 45% of the rest.
        let rest = max(16, width - fixed.reduce(0) { $0 + $1.width } - 9)
        let nameWidth = rest * 45 / 100
        let columns = [fixed[0], Column(title: "NAME", width: nameWidth, right: false)] + fixed[1...6]
            + [Column(title: "WAIT", width: rest - nameWidth, right: false), fixed[7]]
        lines.append(row(columns.map(\.title), columns))
        for t in threads {
            let cells = [String(t.id), t.name, t.state.rawValue, priority(t),
                         t.worker.map(String.init) ?? "-", cpu(t.cpuTimeNanoseconds),
                         compact(t.switches, 5), compact(t.preemptions, 4),
                         wait(t, now: snapshot.monotonicNanoseconds),
                         "\(formatBytes(t.stack.usedBytes))/\(formatBytes(t.stack.sizeBytes))"]
            lines.append(row(cells, columns, state: t.state))
            if stacks, let trace = t.trace {
                lines += frameLines(trace).map(fit)
            }
        }
        if threads.contains(where: \.isBoosted) {
            lines.append("")
            lines.append(fit("* priority raised by inheritance (base/effective)"))
        }
        return lines
    }

    /// Two lines: the process, then the threads by state.
    func summary(_ s: KernelSnapshot) -> [String] {
        let counts = ThreadState.allCases.compactMap { state -> String? in
            let n = s.threads.filter { $0.state == state }.count
            return n > 0 ? "\(n) \(state.rawValue)" : nil
        }
        return ["pid \(s.processID) \(s.processName): \(s.threads.count) threads, \(s.workers.count) workers, "
                    + "\(s.threadsSpawned) spawned",
                "threads: " + (counts.isEmpty ? "none" : counts.joined(separator: ", "))]
    }

    /// `worker 0 tid 4242 runs 3 'name'  ticks 812 pre 40 def 3 retry 9`
    func workerLine(_ w: WorkerSnapshot, _ s: KernelSnapshot) -> String {
        let doing = w.currentThreadID.map { id in "runs \(id) '\(s.thread(id: id)?.name ?? "?")'" }
            ?? (w.isIdle ? "idle" : "scheduling")
        return "worker \(w.index) tid \(w.osThreadID) \(doing)  ticks \(w.ticks) pre \(w.preemptions) "
            + "def \(w.deferrals) retry \(w.retries)"
    }

    /// Frame lines under a row: function and offset, then the image if it fits.
    func frameLines(_ trace: StackTrace) -> [String] {
        var out = trace.frames.enumerated().map { i, f -> String in
            var s = "      #\(i) \(f.compactName)"
            if f.symbol != nil { s += " + \(f.offset)" }
            if let image = f.imageName, !clips || s.count + image.count + 3 <= width { s += " (\(image))" }
            return s
        }
        if trace.truncated { out.append("      ...") }
        if let note = trace.note { out.append("      (\(note))") }
        return out
    }

    private func priority(_ t: ThreadSnapshot) -> String {
        "\(t.basePriority)/\(t.effectivePriority)" + (t.isBoosted ? "*" : "")
    }

    private func wait(_ t: ThreadSnapshot, now: Int64) -> String {
        guard let wait = t.wait else { return "" }
        if wait.kind == "sleep" {
            return "sleep " + cpu(UInt64(max(0, Int64(bitPattern: wait.objectID) - now)))
        }
        guard let owner = wait.ownerThreadID else { return wait.kind }
        return "\(wait.kind):\(owner)" + (wait.ownerName.map { " \($0)" } ?? "")
    }

    /// Seconds in at most 6 characters: `0.012s`, `12.34s`, `12:34`, `123h`.
    func cpu(_ ns: UInt64) -> String {
        let s = Double(ns) / 1e9
        if s < 10 { return String(format3(s, 3)) + "s" }
        if s < 100 { return String(format3(s, 2)) + "s" }
        if s < 3600 { let m = Int(s) / 60, r = Int(s) % 60; return "\(m):" + (r < 10 ? "0\(r)" : "\(r)") }
        return "\(Int(s) / 3600)h"
    }

    private func format3(_ v: Double, _ decimals: Int) -> String {
        let scale = [1.0, 10.0, 100.0, 1000.0][decimals]
        let n = Int((v * scale).rounded())
        let whole = n / Int(scale), frac = String(n % Int(scale))
        return "\(whole)." + String(repeating: "0", count: decimals - frac.count) + frac
    }

    /// A count in `width` characters: `12345`, `123k`, `45M`.
    func compact(_ n: UInt64, _ width: Int) -> String {
        let plain = String(n)
        if plain.count <= width { return plain }
        for (div, unit) in [(UInt64(1_000), "k"), (1_000_000, "M"), (1_000_000_000, "G")] {
            let s = "\(n / div)\(unit)"
            if s.count <= width { return s }
        }
        return "\(n / 1_000_000_000_000)T"
    }

    private func row(_ cells: [String], _ columns: [Column], state: ThreadState? = nil) -> String {
        var parts: [String] = []
        for (i, (cell, column)) in zip(cells, columns).enumerated() {
            let last = i == columns.count - 1
            var text = clip(cell, column.width)
            let pad = String(repeating: " ", count: column.width - text.count)
            text = column.right ? pad + text : (last ? text : text + pad)
            if color, column.title == "STATE", let state { text = paint(text, state) }
            parts.append(text)
        }
        return parts.joined(separator: " ")
    }

    private func paint(_ text: String, _ state: ThreadState) -> String {
        let code: String
        switch state {
        case .running: code = "32"   // green
        case .ready: code = "36"     // cyan
        case .blocked: code = "31"   // red
        case .sleeping: code = "33"  // yellow
        case .finished: code = "2"   // dim
        }
        return "\u{1B}[\(code)m\(text)\u{1B}[0m"
    }

    /// `text` cut to `width` characters, marked with "…" when cut.
    func clip(_ text: String, _ width: Int) -> String {
        guard text.count > width else { return text }
        guard width > 1 else { return String(text.prefix(width)) }
        return String(text.prefix(width - 1)) + "…"
    }

    func fit(_ line: String) -> String { clips ? clip(line, width) : line }
}
