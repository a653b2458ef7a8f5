// TimerHeap: deadlines of sleeping threads and of timed waits, a binary
// min-heap on CLOCK_MONOTONIC nanoseconds. Entries are never removed early:
// a thread woken before its deadline bumps its timerGeneration, and the
// monitor skips entries whose generation no longer matches. Guarded by the
// kernel lock.
//
// No allocation under the lock (KernelCore.swift explains why): the storage
// is reserved ahead, and the keeper grows it outside the lock when it is
// half full (`wantsGrowth`, Monitor.swift), swapping the entries into the new storage
// under the lock and freeing the old one after.
//
// An entry keeps its thread alive, so a stale entry may hold the last
// reference to a finished thread, and dropping it (pop, dropStale) frees
// the thread under the kernel lock. That runs no program code: a thread's
// GreenThreadLocal values are dropped when its body returns
// (GreenThread.tearDownLocals), and its body closure before that. (The
// free itself never waits for a parked thread: CGreenCore/allocator.c.) A
// heap of abandoned threads (after a deadlock) is dropped outside the lock
// (KernelCore.abandonBlockedThreads).

struct TimerHeap {
    struct Entry {
        var deadline: Int64
        var generation: UInt64
        var thread: GreenThread
    }

    private var entries: [Entry]

    init(capacity: Int = 1024) {
        entries = []
        entries.reserveCapacity(capacity)
    }

    /// More than half the reserved storage is in use: the monitor should
    /// grow it before an insert has to allocate under the lock.
    var wantsGrowth: Bool { entries.count * 2 >= entries.capacity }
    var capacity: Int { entries.capacity }

    /// Moves the entries into `storage` (reserved by the caller outside the
    /// lock, empty, at least twice as large) and returns the old storage for
    /// the caller to free outside the lock. Kernel lock held.
    mutating func adopt(_ storage: [Entry]) -> [Entry] {
        var fresh = storage
        precondition(fresh.isEmpty && fresh.capacity >= entries.count, "timer storage too small")
        // One by one: append(contentsOf:) is a protocol extension, whose
        // witness tables a debug build fetches under the runtime's lock on
        // first use (ArrayUnderKernelLock.swift).
        var i = 0
        while i < entries.count {
            fresh.append(entries[i])
            i += 1
        }
        swap(&fresh, &entries)
        return fresh
    }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
    var earliest: Entry? { entries.first }

    /// Adds an entry; returns true when it became the earliest deadline.
    mutating func insert(deadline: Int64, generation: UInt64, thread: GreenThread) -> Bool {
        entries.append(Entry(deadline: deadline, generation: generation, thread: thread))
        var i = entries.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard entries[i].deadline < entries[parent].deadline else { break }
            entries.swapAt(i, parent)
            i = parent
        }
        return i == 0
    }

    /// Removes and returns the earliest entry.
    mutating func popEarliest() -> Entry? {
        guard !entries.isEmpty else { return nil }
        entries.swapAt(0, entries.count - 1)
        let top = entries.removeLast()
        siftDown(0)
        return top
    }

    /// Moves the entry at `i` down until both children are later.
    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < entries.count && entries[l].deadline < entries[m].deadline { m = l }
            if r < entries.count && entries[r].deadline < entries[m].deadline { m = r }
            if m == i { return }
            entries.swapAt(i, m)
            i = m
        }
    }

    /// Drops entries whose thread no longer waits on them, so that
    /// `isEmpty` means "no thread will ever be woken by a timer".
    mutating func dropStale() {
        entries.removeEvery { $0.generation != $0.thread.timerGeneration }  // in place
        // Heapify in place, bottom-up (no allocation under the lock; a plain
        // loop, not a stride: ArrayUnderKernelLock.swift).
        var start = entries.count / 2 - 1
        while start >= 0 {
            siftDown(start)
            start -= 1
        }
    }
}
