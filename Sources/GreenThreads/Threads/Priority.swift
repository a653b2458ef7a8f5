// Priority: one of 32 strict scheduling levels. A ready thread of a higher
// level always runs before any thread of a lower one; threads of one level
// share the CPU round-robin, one time slice each.

/// The scheduling priority of a green thread: a level from 0 (lowest) to 31
/// (highest). Higher levels always run first; equal levels take turns.
///
/// ```swift
/// let urgent = try Priority(level: 28)
/// try Kernel.run {
///     let handle = try GreenThread.spawn(priority: urgent) { serveRequest() }
///     try handle.join()
/// }
/// let levels: [Priority] = [.lowest, .low, .normal, .high, .highest]
/// print(levels.map(\.level))                    // [0, 8, 16, 24, 31]
/// print(urgent > .high, Priority.levelCount)    // true 32
/// ```
public struct Priority: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// The level, 0...31.
    public let level: Int

    /// The number of levels; valid levels are `0..<Priority.levelCount`.
    public static let levelCount = 32

    /// Creates a priority, throwing `GreenThreadError.invalidPriority` for a
    /// level outside 0...31.
    ///
    /// ```swift
    /// let belowNormal = try Priority(level: Priority.normal.level - 1)
    /// ```
    public init(level: Int) throws(GreenThreadError) {
        guard (0..<Priority.levelCount).contains(level) else {
            throw GreenThreadError.invalidPriority(level)
        }
        self.level = level
    }

    init(unchecked level: Int) { self.level = level }

    /// Level 0: runs only when nothing else is ready.
    public static let lowest = Priority(unchecked: 0)
    /// Level 8: background work (batch jobs, compaction).
    public static let low = Priority(unchecked: 8)
    /// Level 16: the default, and the main thread's.
    public static let normal = Priority(unchecked: 16)
    /// Level 24: latency-sensitive work that mostly waits (requests, events).
    public static let high = Priority(unchecked: 24)
    /// Level 31: supervisors and watchdogs; keep their work short.
    public static let highest = Priority(unchecked: 31)

    public static func < (a: Priority, b: Priority) -> Bool { a.level < b.level }

    /// The level, as a number: "16".
    public var description: String { "\(level)" }
}
