// WaitQueue: the threads blocked on one sync object, in the order they are
// to be served: highest effective priority first, FIFO within a level.
//
// Owns: `SyncWaiter` (a thread's entry: its thread, the object, its queue
// key, how the wait ended) and `WaitQueue` (a sorted array of entries).
//
// No allocation per wait: each thread has one `SyncWaiter`, made at its
// first wait on a sync object and reused by every later one (a thread waits
// on one object at a time), and queues hold entries unretained (the thread
// owns its entry, and a queued thread is alive: the registry keeps it). The
// array keeps its capacity when entries leave, so a queue that has held n
// waiters queues n again without growing.
//
// Invariants (all guarded by the kernel lock):
// - `entries` is sorted by (level ascending, ticket descending), so the top
//   waiter (highest level, oldest ticket in it) is the last element: popping
//   it is O(1); inserting is a binary search plus a move of the tail.
// - A queued waiter's `level` equals its thread's `effectivePriorityLevel`:
//   when the thread's priority changes while it waits, the scheduler calls
//   `syncWaiterPriorityChanged` (PriorityInheritance.swift), which requeues it.
// - A requeued waiter gets a new ticket: it goes behind the waiters already
//   at its new level (FIFO by time of arrival at that level, as Linux's
//   rt_mutex waiter tree orders equal priorities).
// - A thread is queued on at most one object at a time; its `syncWaiter`
//   field points at its entry while queued and is nil otherwise.

/// How a blocked call on a sync object ended. Set by whoever takes the
/// waiter off its queue, before making its thread ready.
enum WaitOutcome: Equatable {
    /// Still queued.
    case waiting
    /// Served: the mutex was handed over, the semaphore permit given, the
    /// condition signalled, the channel value delivered or taken.
    case granted
    /// A mutex was handed over because its owner ended while holding it.
    case ownerDied(ThreadIdentity)
    /// The deadline passed first; the waiter was taken off its queue.
    case timedOut
    /// The channel was closed while the thread waited.
    case closed
}

/// A sync object that threads can wait on. Guarded by the kernel lock. Its
/// `withdraw` (WaitTarget) takes a timed-out or cancelled waiter off its
/// queue: see `KernelCore.withdrawWaiter`.
protocol SyncWaitObject: WaitTarget {
    /// `waiter`'s thread changed effective priority: move it to its new
    /// place in this object's queue. Does not propagate further.
    func requeue(_ waiter: SyncWaiter)
    /// The mutex whose owner a waiter of this object waits for (priority
    /// inheritance and deadlock detection follow it), or nil.
    var asMutex: GreenMutex? { get }
    /// Whether `waiter` is in this object's queue.
    func isQueued(_ waiter: SyncWaiter) -> Bool
    /// Human-readable problems with this object's state, for the invariant
    /// checks (SyncInvariants.swift). Empty when all holds. `caller` is the
    /// thread running the check (it may be queued and not yet blocked).
    func invariantViolations(caller: GreenThread?) -> [String]
}

extension SyncWaitObject {
    var asMutex: GreenMutex? { nil }
}

/// A thread's entry in a wait queue, reused for each of its waits (see the
/// file header). Kernel lock for every field but `thread`.
final class SyncWaiter {
    /// The owning thread (unretained: it owns this entry). Unmanaged, so
    /// that the serving path can use it without a retain/release pair.
    let threadRef: Unmanaged<GreenThread>
    var thread: GreenThread { threadRef.takeUnretainedValue() }
    /// The object whose queue holds this waiter, while queued (unretained:
    /// the waiting thread is inside a call on the object, which keeps it
    /// alive until the wait returns).
    unowned(unsafe) var objectRef: (any SyncWaitObject)?
    /// The queue key: the thread's effective priority when (re)queued.
    var level = 0
    /// Order of arrival at `level` (unique per queue, increasing).
    var ticket: UInt64 = 0
    var outcome: WaitOutcome = .waiting
    /// A channel waiter's value slot, in the waiting thread's own frame
    /// (GreenChannel.swift); nil for other objects.
    var element: UnsafeMutableRawPointer?

    init(thread: GreenThread) {
        self.threadRef = Unmanaged.passUnretained(thread)
    }

    /// The object waited on. Only while queued (or just served).
    var object: any SyncWaitObject { objectRef! }

    /// Starts a wait on `object`: a fresh outcome, no value slot. Kernel
    /// lock held; the thread is not queued anywhere.
    func begin(on object: any SyncWaitObject) {
        objectRef = object
        outcome = .waiting
        element = nil
    }
}

/// Waiters of one object, highest effective priority first, FIFO within a level.
struct WaitQueue {
    /// Sorted by (level ascending, ticket descending): the top is last.
    /// Unretained (see the file header): no reference counting per wait.
    private var entries: [Unmanaged<SyncWaiter>] = []
    private var nextTicket: UInt64 = 0

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    /// The waiter to serve next.
    var top: SyncWaiter? { entries.last?.takeUnretainedValue() }

    /// The level of the top waiter, or -1 when empty.
    var topLevel: Int { entries.last.map { $0._withUnsafeGuaranteedRef { $0.level } } ?? -1 }

    /// Waiters from the top down (the order they would be served).
    var inServiceOrder: [SyncWaiter] { entries.reversed().map { $0.takeUnretainedValue() } }

    /// Queues `waiter` behind every waiter of its level or above.
    mutating func insert(_ waiter: SyncWaiter) {
        waiter.level = waiter.threadRef._withUnsafeGuaranteedRef { $0.effectivePriorityLevel }
        waiter.ticket = nextTicket
        nextTicket &+= 1
        // Lower bound: the first entry whose level is >= the new level. The
        // new ticket is the largest, so the new entry sorts before every
        // entry of its level (it is served after them) and after all lower.
        var low = 0, high = entries.count
        let level = waiter.level
        while low < high {
            let mid = (low + high) / 2
            if entries[mid]._withUnsafeGuaranteedRef({ $0.level }) < level { low = mid + 1 } else { high = mid }
        }
        entries.insert(Unmanaged.passUnretained(waiter), at: low)
    }

    /// Removes and returns the top waiter.
    mutating func popTop() -> SyncWaiter? {
        entries.popLast()?.takeUnretainedValue()
    }

    /// Removes `waiter`; returns false if it was not queued here.
    @discardableResult
    mutating func remove(_ waiter: SyncWaiter) -> Bool {
        guard let i = index(of: waiter) else { return false }
        entries.remove(at: i)
        return true
    }

    /// Moves `waiter` to the tail of its thread's current level.
    mutating func requeue(_ waiter: SyncWaiter) {
        precondition(remove(waiter), "\(waiter.thread) requeued on a queue that does not hold it")
        insert(waiter)
    }

    func contains(_ waiter: SyncWaiter) -> Bool { index(of: waiter) != nil }

    /// Binary search on the unique key (level, ticket).
    private func index(of waiter: SyncWaiter) -> Int? {
        var low = 0, high = entries.count
        let target = Unmanaged.passUnretained(waiter).toOpaque()
        let level = waiter.level, ticket = waiter.ticket
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].toOpaque() == target { return mid }
            let below = entries[mid]._withUnsafeGuaranteedRef { e in
                e.level < level || (e.level == level && e.ticket > ticket)
            }
            if below { low = mid + 1 } else { high = mid }
        }
        return nil
    }

    /// Removes every waiter, in service order.
    mutating func removeAll() -> [SyncWaiter] {
        let all = inServiceOrder
        entries.removeAll()
        return all
    }

    /// Problems with the queue's order and keys (for SyncInvariants).
    /// `caller`, the thread running the check, may be queued and still
    /// running: it is between queueing itself and blocking.
    func invariantViolations(of name: String, caller: GreenThread?) -> [String] {
        var problems: [String] = []
        let all = entries.map { $0.takeUnretainedValue() }
        for (i, e) in all.enumerated() {
            if i > 0 {
                let p = all[i - 1]
                if !(p.level < e.level || (p.level == e.level && p.ticket > e.ticket)) {
                    problems.append("\(name): wait queue out of order at \(i): "
                        + "(\(p.level), \(p.ticket)) before (\(e.level), \(e.ticket))")
                }
            }
            if e.level != e.thread.effectivePriorityLevel {
                problems.append("\(name): \(e.thread) queued at level \(e.level) but its effective priority is \(e.thread.effectivePriorityLevel)")
            }
            if e.thread.syncWaiter !== e {
                problems.append("\(name): \(e.thread) is queued but its syncWaiter is another entry")
            }
            if e.thread.runState == .blocked && (e.thread.wait?.target == nil || e.thread.wait?.target !== e.objectRef) {
                problems.append("\(name): \(e.thread) is queued but its wait names another object")
            }
            let stateOK = e.thread.runState == .blocked || (e.thread === caller && e.thread.runState == .running)
            if !stateOK || e.outcome != .waiting {
                problems.append("\(name): queued \(e.thread) is \(e.thread.runState) with outcome \(e.outcome)")
            }
        }
        return problems
    }
}
