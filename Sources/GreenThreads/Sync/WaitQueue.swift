// WaitQueue: the threads blocked on one sync object, in the order they are
// to be served: highest effective priority first, FIFO within a level.
//
// Owns: `SyncWaiter` (a thread's entry: its thread, the object, its queue
// links, how the wait ended) and `WaitQueue` (one intrusive FIFO per
// priority level and a bitmap of the non-empty levels, like the run queue).
//
// Every operation is O(1) in the number of waiters: insert appends to its
// level's FIFO, the top is the head of the highest set bit's FIFO, remove
// unlinks. (A sorted array moved its tail on every insert: 100,000 threads
// waiting on one semaphore spent 42% of their spawn time in memmove, under
// the kernel lock.)
//
// No allocation per wait: each thread has one `SyncWaiter`, made at its
// first wait on a sync object and reused by every later one (a thread waits
// on one object at a time), and queues hold entries unretained (the thread
// owns its entry, and a queued thread is alive: the registry keeps it). A
// queue's table of level heads is allocated at its first waiter, so an
// object nobody ever waits on costs no table.
//
// Invariants (all guarded by the kernel lock):
// - Level n's FIFO is a circular doubly linked list whose head is
//   `heads[n]`; bit n of `bitmap` is set exactly when it is non-empty, and
//   `count` is the number of entries over all levels.
// - A queued waiter's `queue` is its queue's table (`heads`), nil when not
//   queued; its `level` is the level of the FIFO that holds it and equals
//   its thread's `effectivePriorityLevel`: when the thread's priority
//   changes while it waits, the scheduler calls `syncWaiterPriorityChanged`
//   (PriorityInheritance.swift), which requeues it.
// - A requeued waiter goes behind the waiters already at its new level
//   (FIFO by time of arrival at that level, as Linux's rt_mutex waiter tree
//   orders equal priorities).
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
    var objectWords: UnretainedExistential<any SyncWaitObject>?
    var objectRef: (any SyncWaitObject)? { objectWords?.value }
    /// The queue key: the thread's effective priority when (re)queued.
    var level = 0
    /// The table of the queue that holds it (its identity), nil when not queued.
    var queue: UnsafeMutableRawPointer?
    /// Neighbours in its level's circular FIFO, unretained like the entry.
    var next: Unmanaged<SyncWaiter>?
    var prev: Unmanaged<SyncWaiter>?
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
        begin(on: UnretainedExistential(object))
    }

    /// The same, for an object that keeps its existential's words (a
    /// generic channel: making one from `self` looks up its witness table).
    @inline(__always)
    func begin(on object: UnretainedExistential<any SyncWaitObject>) {
        objectWords = object
        outcome = .waiting
        element = nil
    }
}

/// Waiters of one object, highest effective priority first, FIFO within a
/// level. Noncopyable: it owns its table of level heads.
struct WaitQueue: ~Copyable {
    /// Head of each level's circular FIFO; allocated at the first insert.
    /// Unretained (see the file header): no reference counting per wait.
    private var heads: UnsafeMutablePointer<Unmanaged<SyncWaiter>?>?
    /// Bit n is set when level n has a waiter.
    private var bitmap: UInt32 = 0
    private(set) var count = 0

    init() {}

    deinit { heads?.deallocate() }

    var isEmpty: Bool { count == 0 }

    /// The level of the top waiter, or -1 when empty.
    var topLevel: Int { bitmap == 0 ? -1 : 31 - bitmap.leadingZeroBitCount }

    /// The waiter to serve next.
    var top: SyncWaiter? {
        let level = topLevel
        guard level >= 0, let heads else { return nil }
        return heads[level]?.takeUnretainedValue()
    }

    /// Waiters from the top down (the order they would be served).
    var inServiceOrder: [SyncWaiter] {
        var all: [SyncWaiter] = []
        guard let heads else { return all }
        all.reserveCapacity(count)
        var levels = bitmap
        while levels != 0 {
            let level = 31 - levels.leadingZeroBitCount
            levels &= ~(1 << UInt32(level))
            let head = heads[level]!
            var e = head
            repeat {
                all.append(e.takeUnretainedValue())
                e = e._withUnsafeGuaranteedRef { $0.next! }
            } while e.toOpaque() != head.toOpaque()
        }
        return all
    }

    /// Queues `waiter` behind every waiter of its level or above.
    mutating func insert(_ waiter: SyncWaiter) {
        precondition(waiter.queue == nil, "\(waiter.thread) queued on two wait queues")
        let table = heads ?? WaitQueue.makeTable()
        heads = table
        let level = waiter.threadRef._withUnsafeGuaranteedRef { $0.effectivePriorityLevel }
        let entry = Unmanaged.passUnretained(waiter)
        waiter.level = level
        waiter.queue = UnsafeMutableRawPointer(table)
        if let head = table[level] {
            // Append: between the tail (head.prev) and the head.
            let tail = head._withUnsafeGuaranteedRef { $0.prev! }
            waiter.next = head
            waiter.prev = tail
            tail._withUnsafeGuaranteedRef { $0.next = entry }
            head._withUnsafeGuaranteedRef { $0.prev = entry }
        } else {
            waiter.next = entry
            waiter.prev = entry
            table[level] = entry
            bitmap |= 1 << UInt32(level)
        }
        count += 1
    }

    /// Removes and returns the top waiter.
    mutating func popTop() -> SyncWaiter? { popTopRef()?.takeUnretainedValue() }

    /// The same, unretained, for serving paths that use it through
    /// `_withUnsafeGuaranteedRef` (no retain/release per hand-off).
    mutating func popTopRef() -> Unmanaged<SyncWaiter>? {
        let level = topLevel
        guard level >= 0, let top = heads![level] else { return nil }
        top._withUnsafeGuaranteedRef { unlink($0) }
        return top
    }

    /// Removes `waiter`; returns false if it was not queued here.
    @discardableResult
    mutating func remove(_ waiter: SyncWaiter) -> Bool {
        guard contains(waiter) else { return false }
        unlink(waiter)
        return true
    }

    /// Moves `waiter` to the tail of its thread's current level.
    mutating func requeue(_ waiter: SyncWaiter) {
        precondition(remove(waiter), "\(waiter.thread) requeued on a queue that does not hold it")
        insert(waiter)
    }

    func contains(_ waiter: SyncWaiter) -> Bool {
        heads != nil && waiter.queue == UnsafeMutableRawPointer(heads)
    }

    /// Removes every waiter, in service order.
    mutating func removeAll() -> [SyncWaiter] {
        let all = inServiceOrder
        for waiter in all { unlink(waiter) }
        return all
    }

    /// Unlinks a waiter this queue holds.
    private mutating func unlink(_ waiter: SyncWaiter) {
        let table = heads!
        let level = waiter.level
        let entry = Unmanaged.passUnretained(waiter)
        let next = waiter.next!, prev = waiter.prev!
        if next.toOpaque() == entry.toOpaque() {
            table[level] = nil
            bitmap &= ~(1 << UInt32(level))
        } else {
            prev._withUnsafeGuaranteedRef { $0.next = next }
            next._withUnsafeGuaranteedRef { $0.prev = prev }
            if table[level]?.toOpaque() == entry.toOpaque() { table[level] = next }
        }
        waiter.next = nil
        waiter.prev = nil
        waiter.queue = nil
        count -= 1
    }

    private static func makeTable() -> UnsafeMutablePointer<Unmanaged<SyncWaiter>?> {
        let table = UnsafeMutablePointer<Unmanaged<SyncWaiter>?>.allocate(capacity: Priority.levelCount)
        table.initialize(repeating: nil, count: Priority.levelCount)
        return table
    }

    /// Problems with the queue's links and keys (for SyncInvariants).
    /// `caller`, the thread running the check, may be queued and still
    /// running: it is between queueing itself and blocking.
    func invariantViolations(of name: String, caller: GreenThread?) -> [String] {
        var problems: [String] = []
        var seen = 0
        if let heads {
            for level in 0..<Priority.levelCount {
                let bitSet = bitmap & (1 << UInt32(level)) != 0
                guard let head = heads[level] else {
                    if bitSet { problems.append("\(name): level \(level) marked non-empty but has no waiter") }
                    continue
                }
                if !bitSet { problems.append("\(name): level \(level) has waiters but is marked empty") }
                var e = head
                repeat {
                    let w = e.takeUnretainedValue()
                    seen += 1
                    if w.level != level { problems.append("\(name): \(w.thread) in level \(level)'s FIFO keyed \(w.level)") }
                    if w.queue != UnsafeMutableRawPointer(heads) { problems.append("\(name): \(w.thread) is linked here but names another queue") }
                    guard let next = w.next, next.takeUnretainedValue().prev?.toOpaque() == e.toOpaque() else {
                        problems.append("\(name): broken links after \(w.thread)")
                        break
                    }
                    e = next
                } while e.toOpaque() != head.toOpaque() && seen <= count
            }
        } else if bitmap != 0 {
            problems.append("\(name): levels marked non-empty without a table")
        }
        if seen != count { problems.append("\(name): \(seen) waiters linked but count is \(count)") }
        for e in inServiceOrder where seen == count {
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
