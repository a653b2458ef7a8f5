// WaitForGraph: who waits for whom (a blocked thread -> the thread that must
// act to release it: the joined thread, the mutex owner), and the cycles in
// it. A cycle is a deadlock among its threads, whatever the rest of the
// program does.
//
// Each thread waits on at most one object, so each node has at most one
// outgoing edge: following edges from any node either ends or enters exactly
// one cycle, and one pass over the nodes finds every cycle in O(n).

/// The wait-for graph of a snapshot.
public struct WaitForGraph: Codable, Sendable, Equatable {
    /// One edge per waiting thread whose release depends on a known thread.
    public var edges: [WaitForEdge]
    /// Each cycle lists thread ids, each waiting on the next and the last on
    /// the first, starting at its smallest id; cycles sorted by that id.
    public var cycles: [[UInt64]]

    public init(edges: [WaitForEdge]) {
        self.edges = edges
        self.cycles = WaitForGraph.findCycles(edges)
    }

    /// The graph of the threads' wait records.
    public init(threads: [ThreadSnapshot]) {
        self.init(edges: threads.compactMap { t in
            guard let wait = t.wait, let owner = wait.ownerThreadID else { return nil }
            return WaitForEdge(waiter: t.id, owner: owner, kind: wait.kind, objectID: wait.objectID)
        })
    }

    /// Cycles of a graph with at most one outgoing edge per node.
    public static func findCycles(_ edges: [WaitForEdge]) -> [[UInt64]] {
        var next: [UInt64: UInt64] = [:]
        for e in edges { next[e.waiter] = e.owner }
        var cycles: [[UInt64]] = []
        var done: Set<UInt64> = []
        for start in edges.map(\.waiter) where !done.contains(start) {
            var path: [UInt64] = []
            var position: [UInt64: Int] = [:]
            var node: UInt64? = start
            while let n = node, !done.contains(n) {
                if let at = position[n] {
                    let cycle = Array(path[at...])
                    let first = cycle.firstIndex(of: cycle.min()!)!
                    cycles.append(Array(cycle[first...] + cycle[..<first]))
                    break
                }
                position[n] = path.count
                path.append(n)
                node = next[n]
            }
            done.formUnion(path)
        }
        return cycles.sorted { $0[0] < $1[0] }
    }
}

/// `waiter` cannot go on until `owner` acts on the object.
public struct WaitForEdge: Codable, Sendable, Equatable {
    public var waiter: UInt64
    public var owner: UInt64
    public var kind: String
    public var objectID: UInt64

    public init(waiter: UInt64, owner: UInt64, kind: String, objectID: UInt64) {
        self.waiter = waiter
        self.owner = owner
        self.kind = kind
        self.objectID = objectID
    }
}
