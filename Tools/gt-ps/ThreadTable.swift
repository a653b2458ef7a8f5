// ThreadTable: the `ps -L`/`top -H`-like view of a snapshot, fitted to a
// width (80 columns unless the terminal is wider, or --wide), in the
// columns `--format` names (like `ps -o`):
//
//   ID NAME          STATE    PRI     WK    CPU    SW  PRE WAIT          STACK
//
// Fixed columns keep their width; the flexible ones (NAME, WAIT, HELD)
// share what is left by weight, so rows never wrap. Every text that comes
// from the program (names) goes through `printable`, so a thread name
// cannot move the cursor or forge a row. Colour (state only) only on a
// terminal, never in a pipe, and never with NO_COLOR set.
import Foundation
import GTSnapshot

/// One column of the table.
struct TableColumn: Sendable {
    /// The `--format` key.
    var key: String
    var title: String
    /// Fixed width, or 0 for a flexible column with `weight`.
    var width: Int
    var weight = 0
    var right: Bool
    var cell: @Sendable (ThreadSnapshot, TableContext) -> String

    /// Every column, in the order `--format help` lists them.
    static let all: [TableColumn] = [
        TableColumn(key: "id", title: "ID", width: 2, right: true) { t, _ in String(t.id) },
        TableColumn(key: "name", title: "NAME", width: 0, weight: 45, right: false) { t, _ in printable(t.name) },
        TableColumn(key: "state", title: "STATE", width: 8, right: false) { t, _ in t.state.rawValue },
        TableColumn(key: "pri", title: "PRI", width: 6, right: false) { t, _ in
            "\(t.basePriority)/\(t.effectivePriority)" + (t.isBoosted ? "*" : "")
        },
        TableColumn(key: "wk", title: "WK", width: 2, right: true) { t, _ in t.worker.map(String.init) ?? "-" },
        TableColumn(key: "cpu", title: "CPU", width: 6, right: true) { t, _ in seconds(t.cpuTimeNanoseconds) },
        TableColumn(key: "cpu%", title: "CPU%", width: 5, right: true) { t, c in
            c.cpuPercent[t.id].map { percent($0) } ?? "-"
        },
        TableColumn(key: "sw", title: "SW", width: 5, right: true) { t, _ in compact(t.switches, 5) },
        TableColumn(key: "pre", title: "PRE", width: 4, right: true) { t, _ in compact(t.preemptions, 4) },
        TableColumn(key: "wait", title: "WAIT", width: 0, weight: 55, right: false) { t, c in waitCell(t, c.snapshot) },
        TableColumn(key: "waited", title: "WAITED", width: 6, right: true) { t, c in
            guard let since = t.wait?.sinceMonotonicNanoseconds, t.wait?.kind != "sleep",
                  c.snapshot.monotonicNanoseconds > since else { return "" }
            return seconds(UInt64(c.snapshot.monotonicNanoseconds - since))
        },
        TableColumn(key: "held", title: "HELD", width: 0, weight: 30, right: false) { t, _ in
            guard let held = t.heldMutexes else { return "?" }
            return held.map { printable($0.name) }.joined(separator: ",")
        },
        TableColumn(key: "stack", title: "STACK", width: 9, right: true) { t, _ in
            "\(formatBytes(t.stack.usedBytes))/\(formatBytes(t.stack.sizeBytes))"
        },
    ]

    static let defaultKeys = ["id", "name", "state", "pri", "wk", "cpu", "sw", "pre", "wait", "stack"]
    /// --watch adds the rate and the wait time.
    static let watchKeys = ["id", "name", "state", "pri", "wk", "cpu%", "cpu", "pre", "wait", "waited", "stack"]

    /// The columns of a `--format` list (`id,name,cpu%`), or why not.
    static func parse(_ format: String) throws -> [TableColumn] {
        try format.split(separator: ",").map { raw in
            let key = raw.trimmingCharacters(in: .whitespaces).lowercased()
            guard let column = all.first(where: { $0.key == key }) else {
                throw FormatListError(key: key)
            }
            return column
        }
    }
}

struct FormatListError: Error, CustomStringConvertible {
    var key: String
    var description: String {
        "unknown column '\(key)' in --format; known: " + TableColumn.all.map(\.key).joined(separator: ",")
    }
}

/// What cells need besides their thread.
struct TableContext {
    var snapshot: KernelSnapshot
    /// CPU use over the last refresh interval, percent of one CPU, by thread id.
    var cpuPercent: [UInt64: Double] = [:]
}

/// `mutex(ps-mutex):2 lock-holder>5`: the kind, the object's name, the
/// owner (whose move it is) and the rest of the owner chain; a sleep as the
/// time left.
func waitCell(_ t: ThreadSnapshot, _ s: KernelSnapshot) -> String {
    guard let wait = t.wait else { return "" }
    if wait.kind == "sleep" {
        return "sleep " + seconds(UInt64(max(0, Int64(bitPattern: wait.objectID) - s.monotonicNanoseconds)))
    }
    var text = wait.kind + (wait.objectName.map { "(\(printable($0)))" } ?? "")
    guard let owner = wait.ownerThreadID else { return text }
    text += ":\(owner)" + (wait.ownerName.map { " \(printable($0))" } ?? "")
    for next in s.ownerChain(from: t.id).dropFirst() { text += ">\(next)" }
    return text
}

extension KernelSnapshot {
    /// The owners a waiter depends on, in order (its owner, that owner's
    /// owner, ...), stopping before a repeat (a cycle).
    func ownerChain(from id: UInt64) -> [UInt64] {
        var chain: [UInt64] = []
        var seen: Set<UInt64> = [id]
        var at = thread(id: id)
        while let owner = at?.wait?.ownerThreadID, seen.insert(owner).inserted, chain.count < 64 {
            chain.append(owner)
            at = thread(id: owner)
        }
        return chain
    }
}

struct ThreadTable {
    /// Columns the table is laid out in.
    var width: Int
    var color: Bool
    /// Whether lines are cut at `width` (not with --wide).
    var clips = true
    var columns: [TableColumn] = try! TableColumn.parse(TableColumn.defaultKeys.joined(separator: ","))

    /// The summary, the workers, the header and one row per thread; with
    /// `traces` each row's frames under it (--stacks=all).
    func render(_ context: TableContext, threads: [ThreadSnapshot], traces: Bool, extraSummary: String? = nil) -> [String] {
        let snapshot = context.snapshot
        var lines = summary(snapshot).map(fit)
        if let extraSummary { lines.append(fit(extraSummary)) }
        for w in snapshot.workers { lines.append(fit(workerLine(w, snapshot))) }
        if let line = osThreadLine(snapshot) { lines.append(fit(line)) }
        lines.append("")
        let laid = layout(threads)
        lines.append(row(laid.map(\.title), laid))
        for t in threads {
            lines.append(row(laid.map { $0.cell(t, context) }, laid, state: t.state))
            if traces, let trace = t.trace { lines += frameLines(trace).map(fit) }
        }
        if threads.contains(where: \.isBoosted) && laid.contains(where: { $0.key == "pri" }) {
            lines.append("")
            lines.append(fit("* priority raised by inheritance (base/effective)"))
        }
        return lines
    }

    /// The columns with their widths for this width and these rows.
    private func layout(_ threads: [ThreadSnapshot]) -> [TableColumn] {
        var laid = columns
        for i in laid.indices where laid[i].key == "id" {
            laid[i].width = max(2, threads.map { String($0.id).count }.max() ?? 2)
        }
        let fixed = laid.reduce(0) { $0 + $1.width } + max(0, laid.count - 1)
        let weights = laid.reduce(0) { $0 + $1.weight }
        let rest = max(8 * laid.filter { $0.weight > 0 }.count, width - fixed)
        var given = 0
        let flexible = laid.indices.filter { laid[$0].weight > 0 }
        for (n, i) in flexible.enumerated() {
            laid[i].width = n == flexible.count - 1 ? rest - given : rest * laid[i].weight / max(1, weights)
            given += laid[i].width
        }
        return laid
    }

    /// Two lines: the process, then the threads by state.
    func summary(_ s: KernelSnapshot) -> [String] {
        let counts = ThreadState.allCases.compactMap { state -> String? in
            let n = s.threads.filter { $0.state == state }.count
            return n > 0 ? "\(n) \(state.rawValue)" : nil
        }
        return ["pid \(s.processID) \(printable(s.processName)): \(s.threads.count) threads, \(s.workers.count) workers, "
                    + "\(s.threadsSpawned) spawned",
                "threads: " + (counts.isEmpty ? "none" : counts.joined(separator: ", "))]
    }

    /// `worker 0 tid 4242 runs 3 'name'  ticks 812 pre 40 def 3 retry 9`
    func workerLine(_ w: WorkerSnapshot, _ s: KernelSnapshot) -> String {
        let doing = w.currentThreadID.map { id in "runs \(id) '\(printable(s.thread(id: id)?.name ?? "?"))'" }
            ?? (w.isIdle ? "idle" : "scheduling")
        return "worker \(w.index) tid \(w.osThreadID) \(doing)  ticks \(w.ticks) pre \(w.preemptions) "
            + "def \(w.deferrals) handoff \(w.parkHandoffs ?? 0)/\(w.resumeHandoffs ?? 0)/\(w.blockedHandoffs ?? 0)"
    }

    /// `os threads: 2 running, 5 parked, 2 spare, 1 blocked (tid 4250 with 7)`
    func osThreadLine(_ s: KernelSnapshot) -> String? {
        guard let all = s.osThreads else { return nil }
        let order: [OSThreadSnapshot.Role] = [.running, .scheduling, .parked, .spare, .blocked]
        let counts = order.compactMap { role -> String? in
            let n = all.filter { $0.role == role }.count
            return n == 0 ? nil : "\(n) \(role.rawValue)"
        }
        let blocked = all.filter { $0.role == .blocked }.prefix(3)
            .map { "tid \($0.osThreadID) with \($0.threadID.map(String.init) ?? "?")" }
        return "os threads: " + (counts.isEmpty ? "none" : counts.joined(separator: ", "))
            + (blocked.isEmpty ? "" : " (blocked: " + blocked.joined(separator: ", ") + ")")
    }

    /// Frame lines under a row: function and offset, then the image if it
    /// fits, then file:line when known.
    func frameLines(_ trace: StackTrace, indent: String = "      ") -> [String] {
        var out = trace.frames.enumerated().map { i, f -> String in
            var s = "\(indent)#\(i) \(printable(f.compactName))"
            if f.symbol != nil && f.offset != 0 { s += " + \(f.offset)" }  // 0: unknown (named by addr2line)
            if let image = f.imageName, !clips || s.count + image.count + 3 <= width {
                s += f.symbol == nil ? " (\(image)+0x\(String(f.imageOffset ?? 0, radix: 16)))" : " (\(image))"
            }
            if let line = f.sourceLocation, !clips || s.count + line.count + 4 <= width { s += " at \(line)" }
            return s
        }
        if trace.truncated { out.append(indent + "...") }
        if let note = trace.note { out.append(indent + "(\(printable(note)))") }
        return out
    }

    private func row(_ cells: [String], _ columns: [TableColumn], state: ThreadState? = nil) -> String {
        var parts: [String] = []
        for (i, (cell, column)) in zip(cells, columns).enumerated() {
            let last = i == columns.count - 1
            var text = clip(cell, column.width)
            let pad = String(repeating: " ", count: max(0, column.width - text.count))
            text = column.right ? pad + text : (last ? text : text + pad)
            if color, column.key == "state", let state { text = paint(text, state) }
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

/// Seconds in at most 6 characters: `0.012s`, `12.34s`, `12:34`, `123h`.
func seconds(_ ns: UInt64) -> String {
    let s = Double(ns) / 1e9
    if s < 10 { return fixed(s, 3) + "s" }
    if s < 100 { return fixed(s, 2) + "s" }
    if s < 3600 { let m = Int(s) / 60, r = Int(s) % 60; return "\(m):" + (r < 10 ? "0\(r)" : "\(r)") }
    return "\(Int(s) / 3600)h"
}

/// `97.3`, `100`, `0.0`: a percentage in at most 5 characters.
func percent(_ p: Double) -> String { p >= 99.95 ? String(Int(p.rounded())) : fixed(p, 1) }

private func fixed(_ v: Double, _ decimals: Int) -> String {
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
