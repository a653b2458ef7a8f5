// StackGroups: `--stacks` in Go's goroutine-dump `debug=1` form: threads
// whose traces are identical (the same program counters, innermost first)
// are printed once, with their count and ids, largest group first.
// `--stacks=all` prints every trace under its thread's row instead.
import GTSnapshot

struct StackGroup {
    var threads: [ThreadSnapshot]
    var trace: StackTrace
}

enum StackGroups {
    /// Groups `threads` by trace; threads without a trace are left out.
    static func group(_ threads: [ThreadSnapshot]) -> [StackGroup] {
        var order: [[UInt64]] = []
        var byKey: [[UInt64]: StackGroup] = [:]
        for t in threads {
            guard let trace = t.trace else { continue }
            // A trace without frames groups by its note (e.g. "not started yet").
            var key = trace.frames.map(\.pc)
            if key.isEmpty { key = [UInt64(truncatingIfNeeded: (trace.note ?? "").hashValue)] }
            if byKey[key] == nil {
                order.append(key)
                byKey[key] = StackGroup(threads: [], trace: trace)
            }
            byKey[key]!.threads.append(t)
        }
        // Largest first; ties in first-seen order (oldest thread first).
        return order.enumerated().map { ($0.offset, byKey[$0.element]!) }
            .sorted { ($0.1.threads.count, -$0.0) > ($1.1.threads.count, -$1.0) }
            .map(\.1)
    }

    /// The text of the groups, fitted by `table`.
    static func render(_ groups: [StackGroup], table: ThreadTable) -> [String] {
        let threads = groups.reduce(0) { $0 + $1.threads.count }
        var lines = [table.fit("stacks: \(threads) threads, \(groups.count) distinct (--stacks=all: one per thread)")]
        for g in groups {
            lines.append("")
            let states = Set(g.threads.map(\.state.rawValue)).sorted().joined(separator: "/")
            let who = g.threads.prefix(8).map { "\($0.id) '\(printable($0.name))'" }.joined(separator: ", ")
                + (g.threads.count > 8 ? ", ..." : "")
            let noun = g.threads.count == 1 ? "thread" : "threads"
            lines.append(table.fit("\(g.threads.count) \(noun) (\(states)): \(who)"))
            lines += table.frameLines(g.trace, indent: "    ").map(table.fit)
        }
        return lines
    }
}
