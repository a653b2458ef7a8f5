// ArrayUnderKernelLock: the searches and removals the kernel makes on its
// arrays while it holds the kernel lock, through Array's own members only,
// and an Optional wrap without Optional.map.
//
// The rule they keep (Kernel/Rehearsal.swift): the kernel lock's holder
// never waits for a lock that a parked thread may hold. The standard
// library's `contains(where:)`, `firstIndex(where:)` and `removeAll(where:)`
// are protocol extensions; in a debug build each call site asks the Swift
// runtime for the array's conformance witness tables, under the runtime's
// lock, the first time it runs (and `removeAll` again the first time it
// actually removes). Array's own subscript, count and remove(at:) need
// only the array's metadata, which exists as soon as the array does. The
// test host's lock audit (Tests/GTLockAudit) found every site below.
extension Array {
    /// Whether an element satisfies `predicate`.
    func containsAny(where predicate: (Element) -> Bool) -> Bool {
        indexOfFirst(where: predicate) != nil
    }

    /// The first index whose element satisfies `predicate`.
    func indexOfFirst(where predicate: (Element) -> Bool) -> Int? {
        var i = 0
        while i < count {
            if predicate(self[i]) { return i }
            i += 1
        }
        return nil
    }

    /// The last index whose element satisfies `predicate`.
    func indexOfLast(where predicate: (Element) -> Bool) -> Int? {
        var i = count - 1
        while i >= 0 {
            if predicate(self[i]) { return i }
            i -= 1
        }
        return nil
    }

    /// Removes, in place and keeping the order of the rest, every element
    /// that satisfies `shouldRemove` (asked once per element, in order).
    /// Linear: the kept elements move down once and the tail goes from the
    /// end. A first version removed each from the middle (quadratic, and
    /// slow in a debug build, under the kernel lock: the timer heap can hold
    /// thousands of stale entries); beside a CPU hog the 2,000-thread sync
    /// stress test then stopped making progress in about 1 run in 4 (none
    /// in 30 since).
    mutating func removeEvery(where shouldRemove: (Element) -> Bool) {
        var kept = 0
        var i = 0
        while i < count {
            if !shouldRemove(self[i]) {
                if kept != i { self[kept] = self[i] }
                kept += 1
            }
            i += 1
        }
        while count > kept { remove(at: count - 1) }
    }
}

extension KernelCore {
    /// `kernel.map { Unmanaged.passUnretained($0) }` without Optional.map,
    /// which a debug build leaves unspecialized (a metadata request).
    static func unretained(_ kernel: KernelCore?) -> Unmanaged<KernelCore>? {
        if let kernel { return Unmanaged.passUnretained(kernel) }
        return nil
    }
}
