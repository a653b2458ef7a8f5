// WaitQueue: the threads blocked on one sync object, in the order they are
// to be served: highest effective priority first, FIFO within a level.
//
// Owns: `SyncWaiter` (one blocked call's entry: its thread, its queue key,
// how the wait ended) and `WaitQueue` (a sorted array of entries).
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

/// A sync object that threads can wait on. Guarded by the kernel lock.
protocol SyncWaitObject: AnyObject {
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

/// One blocked call's entry in a wait queue. Lives for one wait.
class SyncWaiter {
    let thread: GreenThread
    /// The object whose queue holds this waiter (strong: the cycle object ->
    /// queue -> waiter -> object lasts only while the waiter is queued).
    let object: any SyncWaitObject
    /// The queue key: the thread's effective priority when (re)queued.
    var level: Int
    /// Order of arrival at `level` (unique per queue, increasing).
    var ticket: UInt64 = 0
    var outcome: WaitOutcome = .waiting
    /// A channel waiter's value slot, in the waiting thread's own frame
    /// (GreenChannel.swift); nil for other objects.
    var element: UnsafeMutableRawPointer?

    init(thread: GreenThread, object: any SyncWaitObject) {
        self.thread = thread
        self.object = object
        self.level = thread.effectivePriorityLevel
    }
}

/// Waiters of one object, highest effective priority first, FIFO within a level.
struct WaitQueue {
    /// Sorted by (level ascending, ticket descending): the top is last.
    private var entries: [SyncWaiter] = []
    private var nextTicket: UInt64 = 0

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    /// The waiter to serve next.
    var top: SyncWaiter? { entries.last }

    /// The level of the top waiter, or -1 when empty.
    var topLevel: Int { entries.last?.level ?? -1 }

    /// Waiters from the top down (the order they would be served).
    var inServiceOrder: ReversedCollection<[SyncWaiter]> { entries.reversed() }

    /// Queues `waiter` behind every waiter of its level or above.
    mutating func insert(_ waiter: SyncWaiter) {
        waiter.level = waiter.thread.effectivePriorityLevel
        waiter.ticket = nextTicket
        nextTicket &+= 1
        // Lower bound: the first entry whose level is >= the new level. The
        // new ticket is the largest, so the new entry sorts before every
        // entry of its level (it is served after them) and after all lower.
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].level < waiter.level { low = mid + 1 } else { high = mid }
        }
        entries.insert(waiter, at: low)
    }

    /// Removes and returns the top waiter.
    mutating func popTop() -> SyncWaiter? {
        entries.popLast()
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
        while low < high {
            let mid = (low + high) / 2
            let e = entries[mid]
            if e === waiter { return mid }
            if e.level < waiter.level || (e.level == waiter.level && e.ticket > waiter.ticket) {
                low = mid + 1
            } else {
                high = mid
            }
        }
        return nil
    }

    /// Removes every waiter, in service order.
    mutating func removeAll() -> [SyncWaiter] {
        let all = Array(entries.reversed())
        entries.removeAll()
        return all
    }

    /// Problems with the queue's order and keys (for SyncInvariants).
    /// `caller`, the thread running the check, may be queued and still
    /// running: it is between queueing itself and blocking.
    func invariantViolations(of name: String, caller: GreenThread?) -> [String] {
        var problems: [String] = []
        for (i, e) in entries.enumerated() {
            if i > 0 {
                let p = entries[i - 1]
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
            let stateOK = e.thread.runState == .blocked || (e.thread === caller && e.thread.runState == .running)
            if !stateOK || e.outcome != .waiting {
                problems.append("\(name): queued \(e.thread) is \(e.thread.runState) with outcome \(e.outcome)")
            }
        }
        return problems
    }
}
