// StackStatistics: what the process-wide stack pool has mapped and cached.

/// Counters of the process-wide stack pool.
///
/// ```swift
/// let s = Kernel.stackStatistics
/// print("\(s.stacksCarved) stacks in \(s.slabsMapped) slabs, \(s.stacksCached) cached for reuse")
/// ```
public struct StackStatistics: Sendable, Equatable {
    /// Slab mappings made (each holds many stacks).
    public var slabsMapped: Int
    /// Stacks ever carved from slabs; a reused stack is not counted again.
    public var stacksCarved: Int
    /// Freed stacks waiting for reuse.
    public var stacksCached: Int
}

extension Kernel {
    /// The stack pool's counters (process-wide, across kernels).
    ///
    /// ```swift
    /// let before = Kernel.stackStatistics
    /// try Kernel.run {
    ///     for _ in 0..<100 { try GreenThread.spawn { serveRequest() }.join() }
    /// }
    /// print(Kernel.stackStatistics.stacksCarved - before.stacksCarved)   // a handful, not 100: freed stacks are reused
    /// ```
    public static var stackStatistics: StackStatistics {
        StackPool.shared.statistics()
    }
}
