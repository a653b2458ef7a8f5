// WaitRecord: what a blocked thread waits on.
//
// Two forms. `ThreadWait` is what the control block keeps while a thread
// waits: a typed reason (Go's `waitReason`), the object's id, an unretained
// reference to the object (its `WaitTarget`), and the start as a raw
// time-stamp-counter tick. Setting it costs a few stores: no allocation, no
// string, no reference count, so every blocking call (mutex, condition,
// semaphore, channel, join, sleep, I/O, external event) records it for free.
// `WaitRecord` (= `WaitSnapshot`, with strings: kind, owner and object
// names) is the public form; it is built from a `ThreadWait` only when
// somebody reads it (`GreenThread.waitingOn`, snapshots and gt-ps, deadlock
// reports), under the kernel lock. The crash dump, in a signal handler,
// reads the `ThreadWait` itself (`WaitReason.kind` is a static string).
//
// `WaitTarget` is the object's side of a wait: `withdraw` takes a thread
// off whatever queue or slot holds it when its wait ends without its
// event (the monitor at a deadline, `GreenThread.cancel()`), in place of a
// per-wait closure; the two detail accessors fill in the public record.
//
// Invariants (kernel lock):
// - A thread's `wait` is set by `blockCurrent` and cleared by `makeReady`:
//   it is non-nil exactly while the thread is blocked or sleeping.
// - While it is set, `target` is alive: every wait happens inside a call on
//   its object (lock, wait, send, receive, join, the poller's wait), whose
//   frame keeps the object alive until the wait returns.
// - `withdraw` runs at most once per wait, with the kernel lock held and the
//   thread still blocked; `makeReady` follows at once and clears `wait`.
import CGreenCore
import GTSnapshot

/// What a blocked or sleeping thread is waiting for: the snapshot module's
/// type, so a thread's control block and a snapshot of it share one
/// definition.
///
/// ```swift
/// func holder(of thread: GreenThread) -> String? {
///     guard let wait: WaitRecord = thread.waitingOn, wait.kind == "mutex" else { return nil }
///     return wait.ownerName ?? "nobody"
/// }
/// ```
public typealias WaitRecord = WaitSnapshot

/// Why a block ended.
enum WakeReason {
    case none, woken, timedOut
}

/// What a thread waits on: one case per kind of wait. `kind` is the text
/// snapshots, gt-ps and crash dumps show (part of the snapshot format: do
/// not rename).
enum WaitReason: UInt8 {
    case mutex, condition, semaphore, channelSend, channelReceive, join, sleep
    case ioRead, ioWrite, blockingCall
    /// External events (ExternalEvent.swift): a Task awaited by
    /// `GreenThread.await`, a background kernel's start and its handle.
    case await, kernelStart, kernelHandle

    /// The snapshot's `kind`.
    var kind: StaticString {
        switch self {
        case .mutex: return "mutex"
        case .condition: return "condition"
        case .semaphore: return "semaphore"
        case .channelSend: return "channel-send"
        case .channelReceive: return "channel-receive"
        case .join: return "join"
        case .sleep: return "sleep"
        case .ioRead: return "io-read"
        case .ioWrite: return "io-write"
        case .blockingCall: return "blocking-call"
        case .await: return "await"
        case .kernelStart: return "kernel-start"
        case .kernelHandle: return "kernel-handle"
        }
    }

    /// A wait on a sync object's queue (the thread then has a `syncWaiter`).
    var isSyncQueue: Bool {
        switch self {
        case .mutex, .condition, .semaphore, .channelSend, .channelReceive: return true
        default: return false
        }
    }
}

/// The object a thread waits on, seen from the wait: how to take a thread
/// off it when the wait ends early, and what the public record names.
/// Kernel lock held for all three.
protocol WaitTarget: AnyObject {
    /// `thread`'s wait on this object ends without its event (deadline or
    /// cancellation): take it off the queue or slot that holds it, and
    /// repair what depended on it. The caller makes the thread ready.
    func withdraw(_ thread: GreenThread)
    /// The thread that must act to end the wait (a mutex's owner, the
    /// joined thread), if any. Allocates nothing (the crash dump calls it).
    var waitOwner: GreenThread? { get }
    /// The object's name for the record (a mutex's, a channel's), if any.
    var waitObjectName: String? { get }
}

extension WaitTarget {
    var waitOwner: GreenThread? { nil }
    var waitObjectName: String? { nil }
}

/// An existential of a class-bound protocol (`any WaitTarget`, `any
/// SyncWaitObject`) kept as its two words: the object and its witness
/// table, without a reference count. Why not `unowned(unsafe) var`: loading
/// one makes a strong copy, a retain/release pair per load, which was a
/// quarter of a channel hand-off (the channel, a generic class, keeps its
/// existentials made once, and each wait copied them out twice). Copying
/// these words is two plain moves; `value` makes a counted reference again,
/// for the paths that call through it (timeouts, cancellation, records).
/// The holder keeps the object alive, as for any unretained reference.
struct UnretainedExistential<Existential> {
    private let words: (UnsafeRawPointer, UnsafeRawPointer)

    @inline(__always)
    init(_ value: Existential) {
        words = unsafeBitCast(value, to: (UnsafeRawPointer, UnsafeRawPointer).self)
    }

    /// The bit cast yields an unowned value, which the compiler copies (a
    /// retain) wherever it needs an owned one and releases after: counts
    /// stay balanced (checked with a deinit probe, -O and -Onone).
    @inline(__always)
    var value: Existential { unsafeBitCast(words, to: Existential.self) }
}

/// One wait, in the control block (see the file header). Plain stores to
/// set: the target is unretained, the reason a byte.
struct ThreadWait {
    var reason: WaitReason
    /// The object's identity (a sync object's id, the joined thread's id, a
    /// descriptor, a job's sequence number, an event's address; for a
    /// sleep, its deadline on the monotonic clock, as a bit pattern).
    var objectID: UInt64
    /// The object waited on, unretained; nil for a sleep or a blocking call.
    var targetWords: UnretainedExistential<any WaitTarget>?
    var target: (any WaitTarget)? { targetWords?.value }
    /// Whether a deadline or `cancel()` ends the wait through
    /// `target.withdraw` (Threads/Cancellation.swift).
    var interruptible: Bool
    /// gt_tsc() when the wait began (converted to the monotonic clock only
    /// when a record is built).
    var startTick: UInt64 = 0

    init(_ reason: WaitReason, objectID: UInt64, target: (any WaitTarget)? = nil, interruptible: Bool = false) {
        self.init(reason, objectID: objectID, targetWords: target.map { UnretainedExistential($0) },
                  interruptible: interruptible)
    }

    @inline(__always)
    init(_ reason: WaitReason, objectID: UInt64, targetWords: UnretainedExistential<any WaitTarget>?,
         interruptible: Bool) {
        self.reason = reason
        self.objectID = objectID
        self.targetWords = targetWords
        self.interruptible = interruptible
    }
}

/// The two clocks read once for a batch of records (a snapshot): a wait's
/// start tick becomes a monotonic time by its distance from `tick`.
struct WaitClock {
    var monotonicNanoseconds: Int64
    var tick: UInt64
    static var now: WaitClock { WaitClock(monotonicNanoseconds: gt_clock_monotonic_ns(), tick: gt_tsc()) }
}

extension ThreadWait {
    /// The public record. Kernel lock held (it reads the owner and names
    /// through `target`, alive while the thread waits).
    func record(at clock: WaitClock = .now) -> WaitRecord {
        let owner = target?.waitOwner
        let elapsedTicks = clock.tick > startTick ? clock.tick - startTick : 0
        let elapsed = Int64(clamping: UInt64(Double(elapsedTicks) * 1e9 / Double(gt_tsc_frequency())))
        return WaitRecord(kind: reason.kind.description, objectID: objectID, ownerThreadID: owner?.id,
                          ownerName: owner?.name, since: clock.monotonicNanoseconds &- elapsed,
                          objectName: target?.waitObjectName)
    }
}
