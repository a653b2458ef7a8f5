// Priority: one of 32 strict scheduling levels. A ready thread of a higher
// level always runs before any thread of a lower one; threads of one level
// share the CPU round-robin, one time slice each.

/// The scheduling priority of a green thread: a level from 0 (lowest) to 31
/// (highest). Higher levels always run first; equal levels take turns.
///
/// ```swift
/// let urgent = try Priority(level: 28)
/// let handle = try GreenThread.spawn(priority: urgent) { serveRequest() }
/// ```
public struct Priority: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// The level, 0...31.
    public let level: Int

    /// The number of levels; valid levels are `0..<Priority.levelCount`.
    public static let levelCount = 32

    /// Creates a priority, throwing `GreenThreadError.invalidPriority` for a
    /// level outside 0...31.
    public init(level: Int) throws(GreenThreadError) {
        guard (0..<Priority.levelCount).contains(level) else {
            throw GreenThreadError.invalidPriority(level)
        }
        self.level = level
    }

    init(unchecked level: Int) { self.level = level }

    public static let lowest = Priority(unchecked: 0)
    public static let low = Priority(unchecked: 8)
    public static let normal = Priority(unchecked: 16)
    public static let high = Priority(unchecked: 24)
    public static let highest = Priority(unchecked: 31)

    public static func < (a: Priority, b: Priority) -> Bool { a.level < b.level }

    public var description: String { "\(level)" }
}
