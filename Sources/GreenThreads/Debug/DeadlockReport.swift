// DeadlockReport: what `Kernel.run` throws when every live thread is blocked
// and nothing (no timer, no running thread) can ever wake one: who waits on
// what, and the wait-for cycles among them, like Go's "all goroutines are
// asleep - deadlock!".

/// The threads of a deadlocked kernel and what each waits on.
public struct DeadlockReport: Sendable, CustomStringConvertible {
    public struct Entry: Sendable {
        public var threadID: UInt64
        public var name: String
        public var state: GreenThread.State
        public var priority: Int
        public var waitingOn: WaitRecord?
    }

    /// Every live thread at the time of the deadlock, oldest first.
    public var threads: [Entry]

    /// Wait-for cycles: each a list of thread ids where each waits on the next.
    public var cycles: [[UInt64]] {
        var edges: [UInt64: UInt64] = [:]
        for t in threads { if let owner = t.waitingOn?.ownerThreadID { edges[t.threadID] = owner } }
        var cycles: [[UInt64]] = []
        var done: Set<UInt64> = []
        for start in threads.map(\.threadID) where !done.contains(start) {
            var path: [UInt64] = []
            var position: [UInt64: Int] = [:]
            var node: UInt64? = start
            while let n = node, !done.contains(n) {
                if let at = position[n] {
                    cycles.append(Array(path[at...]))
                    break
                }
                position[n] = path.count
                path.append(n)
                node = edges[n]
            }
            done.formUnion(path)
        }
        return cycles
    }

    public var description: String {
        var lines = ["all green threads are blocked: deadlock! (\(threads.count) live)"]
        for t in threads {
            let wait = t.waitingOn.map { " on \($0)" } ?? ""
            lines.append("  thread \(t.threadID) '\(t.name)' [\(t.state.rawValue), priority \(t.priority)]\(wait)")
        }
        let names = Dictionary(threads.map { ($0.threadID, $0.name) }, uniquingKeysWith: { a, _ in a })
        for cycle in cycles {
            let path = (cycle + [cycle[0]]).map { "\($0) '\(names[$0] ?? "?")'" }.joined(separator: " -> ")
            lines.append("  cycle: \(path)")
        }
        return lines.joined(separator: "\n")
    }
}
