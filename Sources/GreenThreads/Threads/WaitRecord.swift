// WaitRecord: what a blocked thread waits on, kept in its control block so
// that deadlock reports, snapshots and gt-ps can say who waits on what.

/// What a blocked or sleeping thread is waiting for.
public struct WaitRecord: Sendable, Equatable, CustomStringConvertible {
    /// The kind of object: "join", "sleep", "mutex", "condition", ...
    public var kind: String
    /// Identity of the object waited on (stable while it exists).
    public var objectID: UInt64
    /// The thread that must act to release the waiter, if one is known
    /// (the joined thread, the mutex owner).
    public var ownerThreadID: UInt64?
    /// The owner's name, if known.
    public var ownerName: String?

    public init(kind: String, objectID: UInt64, ownerThreadID: UInt64? = nil, ownerName: String? = nil) {
        self.kind = kind
        self.objectID = objectID
        self.ownerThreadID = ownerThreadID
        self.ownerName = ownerName
    }

    public var description: String {
        var s = "\(kind) 0x\(String(objectID, radix: 16))"
        if let owner = ownerThreadID { s += " held by thread \(owner)" + (ownerName.map { " '\($0)'" } ?? "") }
        return s
    }
}

/// Why a block ended.
enum WakeReason {
    case none, woken, timedOut
}
