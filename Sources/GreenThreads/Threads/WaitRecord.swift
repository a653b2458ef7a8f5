// WaitRecord: what a blocked thread waits on, kept in its control block so
// that deadlock reports, snapshots and gt-ps can say who waits on what.
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
