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
// threads cost no allocation. Links, heads and tails are unretained: a queued
// thread is kept alive by the kernel's thread registry, and only the kernel
// lock's holder touches a queue (guarded by KernelLock).

import CGreenCore

struct RunQueue {
    /// Heads and tails per level, unretained like the links: in a measured
    /// yield ping-pong, retain/release of strong references was two thirds
    /// of all the time. `pop` returns an unretained reference too; callers
    /// on the switch path use it through `_withUnsafeGuaranteedRef`.
    private let heads: UnsafeMutablePointer<Unmanaged<GreenThread>?>
    private let tails: UnsafeMutablePointer<Unmanaged<GreenThread>?>
    /// Bit n is set when level n has a ready thread.
    private(set) var bitmap: UInt32 = 0
    private(set) var count = 0

    init() {
        heads = .allocate(capacity: Priority.levelCount)
        heads.initialize(repeating: nil, count: Priority.levelCount)
        tails = .allocate(capacity: Priority.levelCount)
        tails.initialize(repeating: nil, count: Priority.levelCount)
    }

    /// Frees the lists' storage (the kernel calls it once, at its end).
    func deallocate() {
        heads.deallocate()
        tails.deallocate()
    }

    var isEmpty: Bool { bitmap == 0 }

    /// The highest level with a ready thread, or -1.
    var highestLevel: Int { bitmap == 0 ? -1 : 31 - bitmap.leadingZeroBitCount }
    /// The lowest level with a ready thread, or 32 when none is ready.
    var lowestLevel: Int { bitmap == 0 ? 32 : bitmap.trailingZeroBitCount }

    /// Appends `thread` to the FIFO of its effective priority.
    mutating func push(_ thread: GreenThread) {
        precondition(thread.queuedLevel < 0, "green thread \(thread.id) '\(thread.name)' queued twice")
        let level = thread.effectivePriorityLevel
        let ref = Unmanaged.passUnretained(thread)
        thread.queuedLevel = level
        thread.runNext = nil
        thread.runPrev = tails[level]
        if let tail = tails[level] {
            tail._withUnsafeGuaranteedRef { $0.runNext = ref }
        } else {
            heads[level] = ref
        }
        tails[level] = ref
        // Published only when the highest ready level rises (the
        // preemption handler and spinners read it without the lock).
        if bitmap >> UInt32(level) == 0 { gt_set_highest_ready(Int32(level)) }
        bitmap |= 1 << UInt32(level)
        count += 1
    }

    /// Removes and returns the first thread of the highest non-empty level.
    mutating func pop() -> Unmanaged<GreenThread>? {
        let level = highestLevel
        guard level >= 0, let head = heads[level] else { return nil }
        head._withUnsafeGuaranteedRef { remove($0) }
        return head
    }

    /// Like `pop`, but a head that owes a whole `slice` (in tick periods) of
    /// debt repays it by moving to the back of its level, if it has company.
    mutating func popFair(slice: Int32) -> Unmanaged<GreenThread>? {
        let level = highestLevel
        guard level >= 0, let head = heads[level] else { return nil }
        head._withUnsafeGuaranteedRef { head in
            if slice > 0, head.runNext != nil, let core = head.core, core.pointee.debt_periods >= slice {
                core.pointee.debt_periods -= slice
                remove(head)
                push(head)
            }
        }
        return pop()
    }

    /// The most recently queued thread of the highest ready level that is
    /// parked with its OS thread, looking at most `limit` threads back from
    /// the tail; removed. (The monitor's guess at the holder of the lock a
    /// blocked OS thread waits for: Monitor.swift.)
    mutating func removeLatestParked(limit: Int) -> GreenThread? {
        let level = highestLevel
        guard level >= 0 else { return nil }
        var t = tails[level]?.takeUnretainedValue()
        var looked = 0
        while let thread = t, looked < limit {
            if thread.boundMachine != nil {
                remove(thread)
                return thread
            }
            t = thread.runPrev?.takeUnretainedValue()
            looked += 1
        }
        return nil
    }

    /// Removes `thread` from whichever FIFO holds it (priority changes).
    mutating func remove(_ thread: GreenThread) {
        let level = thread.queuedLevel
        precondition(level >= 0, "green thread \(thread.id) is not in the run queue")
        let prev = thread.runPrev, next = thread.runNext
        if let prev { prev._withUnsafeGuaranteedRef { $0.runNext = next } } else { heads[level] = next }
        if let next { next._withUnsafeGuaranteedRef { $0.runPrev = prev } } else { tails[level] = prev }
        if heads[level] == nil {
            bitmap &= ~(1 << UInt32(level))
            if bitmap >> UInt32(level) == 0 { gt_set_highest_ready(Int32(highestLevel)) }  // it was the highest
        }
        thread.runNext = nil
        thread.runPrev = nil
        thread.queuedLevel = -1
        count -= 1
    }
}
