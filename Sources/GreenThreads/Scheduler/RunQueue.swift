// RunQueue: the ready threads, one FIFO per priority level and a bitmap of
// the non-empty levels, so finding the highest ready level is one
// leading-zero count (O(1)) and push/pop/remove are O(1).
//
// Fairness within a level is deficit round-robin: a slice ends on the
// worker's CPU-time tick, which the kernel checks only at its own tick, so
// a slice can run long (more so when the OS runs the worker in short
// bursts). A preempted thread that used more than the worker's average slice
// carries the excess as debt (in its gt_thread_core); when it reaches the
// head of its level owing a whole average slice, it repays one by going to
// the back instead of running. One skip per pick keeps a pick O(1).
//
// The FIFOs are intrusive (links live in GreenThread): a million ready
// threads cost no allocation. Links are unowned(unsafe): a queued thread is
// kept alive by the kernel's thread registry, and only the kernel lock's
// holder touches a queue (guarded by KernelLock).

struct RunQueue {
    private var heads = [GreenThread?](repeating: nil, count: Priority.levelCount)
    private var tails = [GreenThread?](repeating: nil, count: Priority.levelCount)
    /// Bit n is set when level n has a ready thread.
    private(set) var bitmap: UInt32 = 0
    private(set) var count = 0

    var isEmpty: Bool { bitmap == 0 }

    /// The highest level with a ready thread, or -1.
    var highestLevel: Int { bitmap == 0 ? -1 : 31 - bitmap.leadingZeroBitCount }

    /// Appends `thread` to the FIFO of its effective priority.
    mutating func push(_ thread: GreenThread) {
        precondition(thread.queuedLevel < 0, "green thread \(thread.id) '\(thread.name)' queued twice")
        let level = thread.effectivePriorityLevel
        thread.queuedLevel = level
        thread.runNext = nil
        thread.runPrev = tails[level]
        if let tail = tails[level] { tail.runNext = thread } else { heads[level] = thread }
        tails[level] = thread
        bitmap |= 1 << UInt32(level)
        count += 1
    }

    /// Removes and returns the first thread of the highest non-empty level.
    mutating func pop() -> GreenThread? {
        let level = highestLevel
        guard level >= 0, let thread = heads[level] else { return nil }
        remove(thread)
        return thread
    }

    /// Like `pop`, but a head that owes a whole `slice` (in tick periods) of
    /// debt repays it by moving to the back of its level, if it has company.
    mutating func popFair(slice: Int32) -> GreenThread? {
        let level = highestLevel
        guard level >= 0, let head = heads[level] else { return nil }
        if slice > 0, head.runNext != nil, let core = head.core, core.pointee.debt_periods >= slice {
            core.pointee.debt_periods -= slice
            remove(head)
            push(head)
        }
        return pop()
    }

    /// Removes `thread` from whichever FIFO holds it (priority changes).
    mutating func remove(_ thread: GreenThread) {
        let level = thread.queuedLevel
        precondition(level >= 0, "green thread \(thread.id) is not in the run queue")
        if let prev = thread.runPrev { prev.runNext = thread.runNext } else { heads[level] = thread.runNext }
        if let next = thread.runNext { next.runPrev = thread.runPrev } else { tails[level] = thread.runPrev }
        if heads[level] == nil { bitmap &= ~(1 << UInt32(level)) }
        thread.runNext = nil
        thread.runPrev = nil
        thread.queuedLevel = -1
        count -= 1
    }
}
