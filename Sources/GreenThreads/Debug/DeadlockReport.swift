// DeadlockReport: what `Kernel.run` throws when every live thread is blocked
// and nothing (no timer, no running thread) can ever wake one: who waits on
// what, the wait-for cycles among them, like Go's "all goroutines are
// asleep - deadlock!", and a KernelSnapshot with every thread's trace, so
// the description shows where each thread of a cycle is stuck.
//
// Built by KernelCore.checkForDeadlock with the kernel lock held, on a
// worker's idle context or the monitor (OS stacks, no green thread): the
// moment every thread is parked, so every trace comes from a saved switch
// frame and none needs a signal.
import GTSnapshot

/// The threads of a deadlocked kernel and what each waits on.
///
/// ```swift
/// do {
///     try Kernel.run {
///         let never = GreenSemaphore(value: 0, name: "never")
///         never.wait()                          // nobody will ever signal it
///     }
/// } catch KernelError.deadlock(let report) {
///     print(report)                             // every thread, each cycle, their traces
///     let entries: [DeadlockReport.Entry] = report.threads
///     for t in entries {
///         print(t.threadID, t.name, t.state, t.priority, t.waitingOn?.kind ?? "-")   // <id> main blocked 16 semaphore
///     }
///     print(report.cycles)                      // []: one thread waiting, no cycle
///     print(report.snapshot?.threads.count ?? 0)
/// }
/// ```
public struct DeadlockReport: Sendable, CustomStringConvertible {
    /// One live thread of a deadlocked kernel.
    public struct Entry: Sendable {
        /// The thread's `GreenThread.id`.
        public var threadID: UInt64
        /// The thread's `GreenThread.name`.
        public var name: String
        /// Its state: `.blocked` (or `.sleeping` with no deadline that can pass).
        public var state: GreenThread.State
        /// Its effective priority level (inherited priority included).
        public var priority: Int
        /// What it waits on, and who holds that, if anyone.
        public var waitingOn: WaitRecord?
    }

    /// Every live thread at the time of the deadlock, oldest first.
    public var threads: [Entry]

    /// The kernel at the time of the deadlock, with every thread's trace.
    public var snapshot: KernelSnapshot?

    /// Kernel lock held (see the top of the file). The kernel is passed in,
    /// not looked up in `KernelCore.running`: that lock ranks before the
    /// kernel lock (an OS thread's withSyncLock takes `running`, then the
    /// kernel lock), so taking it here, under the kernel lock, could hang
    /// both threads (issue 10).
    init(threads: [Entry], kernel: KernelCore) {
        self.threads = threads
        snapshot = kernel.captureSnapshot(includeStacks: true, lockHeld: true)
    }

    /// Wait-for cycles: each a list of thread ids where each waits on the
    /// next and the last on the first.
    public var cycles: [[UInt64]] {
        WaitForGraph.findCycles(threads.compactMap { t in
            guard let wait = t.waitingOn, let owner = wait.ownerThreadID else { return nil }
            return WaitForEdge(waiter: t.threadID, owner: owner, kind: wait.kind, objectID: wait.objectID)
        })
    }

    /// Like Go's "all goroutines are asleep - deadlock!": one line per
    /// thread, then each cycle with where each of its threads is stuck.
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
            // Where each thread of the cycle is stuck.
            for id in cycle {
                guard let snapshot, let t = snapshot.thread(id: id) else { continue }
                lines.append("    " + t.headerLine(now: snapshot.monotonicNanoseconds))
                lines += t.trace?.lines(indent: "        ") ?? []
            }
        }
        return lines.joined(separator: "\n")
    }
}
