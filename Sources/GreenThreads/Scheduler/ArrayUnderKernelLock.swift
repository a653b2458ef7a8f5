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

    /// Removes, in place and in order, every element that satisfies
    /// `shouldRemove`.
    mutating func removeEvery(where shouldRemove: (Element) -> Bool) {
        var i = 0
        while i < count {
            if shouldRemove(self[i]) { remove(at: i) } else { i += 1 }
        }
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
