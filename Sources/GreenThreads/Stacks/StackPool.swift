// StackPool: fixed-size stacks carved from large slab mappings, each with a
// guard region below it, cached for reuse. Process-wide: kernels come and go
// (tests run several in one process), stacks and their guards stay.
//
// Why slabs: one mapping per stack would hit vm.max_map_count (65530 by
// default) long before a million threads. A slab is one MAP_NORESERVE
// mapping (virtual space only; the kernel commits a page on first touch) cut
// into [guard | stack] strides. Guards are installed with
// madvise(MADV_GUARD_INSTALL) (Linux 6.13+), which marks page-table entries
// and does not split the mapping. On older kernels each guard is an
// mprotect(PROT_NONE) that splits the mapping in three, so those are limited
// to a budget of mappings; stacks beyond it get no guard (said once on stderr).
//
// Why stacks never move or grow: Swift code holds raw pointers into its
// stack (withUnsafe..., C interop), so a stack is fixed for the thread's life.
//
// Layout of one stride (addresses grow upward; stacks grow downward):
//
//   base ........ base+guard ................................ base+stride
//   [ guard region | usable stack ...... | gt_thread_core (control block) ]
//                  ^ stack_low           ^ initial sp          ^ stack_high
//
// Invariants: every field is guarded by `lock`, which is only taken inside a
// kernel critical section (a holder is never preempted). A stack is in
// exactly one of: a free list, a live thread, or not yet carved.
import CGreenCore
import Glibc

struct GreenStack {
    /// Lowest address of the guard region (the stride's base).
    let base: UnsafeMutableRawPointer
    let guardSize: Int
    /// Usable bytes, control block included.
    let size: Int

    var low: UnsafeMutableRawPointer { base + guardSize }
    var high: UnsafeMutableRawPointer { base + guardSize + size }
}

final class StackPool: @unchecked Sendable {
    static let shared = StackPool()

    /// Bytes of guard below each stack: larger than one page so that a
    /// function with a big frame cannot step over it (stack clash).
    static let guardSize = 16 * 1024
    /// Freed stacks kept with their pages committed, per size class. Freeing
    /// makes no system call; the monitor trims the excess beyond this every
    /// 100 ms (`trimExcess`), returning their pages in coalesced ranges.
    static let hotLimit = 4096
    /// Virtual bytes per slab (at most `maxStacksPerSlab` stacks).
    static let slabBytes = 512 * 1024 * 1024
    static let maxStacksPerSlab = 8192

    enum GuardMode { case madvise, mprotect(budget: Int), none }

    /// A class, so the free lists are mutated in place (a struct copied out
    /// of the dictionary would copy its arrays on every allocation).
    private final class SizeClass {
        let size: Int
        @exclusivity(unchecked) var hot: [GreenStack] = []
        @exclusivity(unchecked) var cold: [GreenStack] = []
        @exclusivity(unchecked) var slabNext: UnsafeMutableRawPointer?
        @exclusivity(unchecked) var slabEnd: UnsafeMutableRawPointer?
        /// Strides below this address in the current slab have their guard.
        @exclusivity(unchecked) var guardedEnd: UnsafeMutableRawPointer?
        init(size: Int) { self.size = size }
    }

    // Unchecked exclusivity: every field is guarded by `lock`, and the
    // runtime's dynamic checks (a TLS lookup per access) were 5% of a
    // spawn+join in a profile of 100k threads alive at once.
    private let lock = KernelLock()
    @exclusivity(unchecked) private var classes: [Int: SizeClass] = [:]  // guarded by lock
    /// The class used last: nearly every thread has the default size, so
    /// most calls skip the dictionary's hashing (guarded by lock).
    @exclusivity(unchecked) private var lastClass: SizeClass?
    @exclusivity(unchecked) private var guardMode: GuardMode             // guarded by lock
    @exclusivity(unchecked) private var warned: Set<String> = []         // guarded by lock
    @exclusivity(unchecked) private(set) var slabsMapped = 0             // guarded by lock
    @exclusivity(unchecked) private(set) var stacksCarved = 0            // guarded by lock

    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    private init() {
        // GT_GUARD_MODE=mprotect forces the old-kernel path (tests use it).
        if let mode = getenv("GT_GUARD_MODE"), String(cString: mode) == "mprotect" {
            guardMode = .mprotect(budget: StackPool.mprotectBudget())
        } else {
            guardMode = .madvise
        }
    }

    /// Guard mappings allowed with mprotect: each costs two extra mappings;
    /// leave half of vm.max_map_count to the program and its libraries.
    private static func mprotectBudget() -> Int {
        let maxMaps = readSmallFile("/proc/sys/vm/max_map_count").flatMap {
            Int($0.filter { !$0.isWhitespace })
        } ?? 65530
        return maxMaps / 4
    }

    /// Rounds a requested stack size up to whole pages.
    static func roundedSize(_ size: Int) -> Int {
        (size + pageSize - 1) / pageSize * pageSize
    }

    /// A stack of exactly `size` bytes (a multiple of the page size).
    /// Caller is inside a critical section.
    func allocate(size: Int) throws -> GreenStack {
        lock.lock()
        defer { lock.unlock() }
        let sizeClass = sizeClass(size)
        if let stack = sizeClass.hot.popLast() ?? sizeClass.cold.popLast() { return stack }
        let stride = StackPool.guardSize + size
        if sizeClass.slabNext == nil || sizeClass.slabNext! + stride > sizeClass.slabEnd! {
            let count = max(1, min(StackPool.maxStacksPerSlab, StackPool.slabBytes / stride))
            var base: UnsafeMutableRawPointer?
            let r = gt_sys_mmap(count * stride, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, &base)
            guard r.error == 0, let base else {
                throw GreenThreadError.outOfStackMemory(stackSize: size, errno: r.error)
            }
            if gt_slab_register(base, count * stride, stride, StackPool.guardSize) != 0 {
                // The fault handler's table is full: these stacks still work,
                // but an overflow would be reported as a plain SIGSEGV.
                warnOnce("GreenThreads: slab table full; overflow messages unavailable for new stacks\n")
            }
            sizeClass.slabNext = base
            sizeClass.slabEnd = base + count * stride
            sizeClass.guardedEnd = base
            slabsMapped += 1
        }
        let base = sizeClass.slabNext!
        sizeClass.slabNext = base + stride
        stacksCarved += 1
        if base >= sizeClass.guardedEnd! {
            installGuards(from: base, stride: stride, upTo: sizeClass.slabEnd!, sizeClass: sizeClass)
        }
        return GreenStack(base: base, guardSize: StackPool.guardSize, size: size)
    }

    /// Returns a stack to the pool. Caller is inside a critical section and
    /// no thread runs on the stack any more. No system call: see `trimExcess`.
    func release(_ stack: GreenStack) {
        lock.lock()
        sizeClass(stack.size).hot.append(stack)
        lock.unlock()
    }

    /// Gives back the pages of hot stacks beyond `hotLimit` (MADV_DONTNEED
    /// keeps the addresses and, since Linux 6.13, the guard markers) and moves
    /// them to the cold lists. Called by the monitor thread, which runs no
    /// green threads; the system calls run outside the pool's lock.
    func trimExcess() {
        var excess: [GreenStack] = []
        lock.lock()
        for c in classes.values where c.hot.count > StackPool.hotLimit {
            excess += c.hot[StackPool.hotLimit...]
            c.hot.removeSubrange(StackPool.hotLimit...)
        }
        lock.unlock()
        guard !excess.isEmpty else { return }
        excess.sort { $0.base < $1.base }
        // Adjacent strides are released with one call.
        var i = 0
        while i < excess.count {
            var j = i
            while j + 1 < excess.count && excess[j + 1].base == excess[j].high && excess[j + 1].size == excess[i].size { j += 1 }
            _ = gt_sys_madvise(excess[i].low, excess[j].high - excess[i].low, MADV_DONTNEED)
            i = j + 1
        }
        lock.lock()
        for stack in excess { sizeClass(stack.size).cold.append(stack) }
        lock.unlock()
    }

    private func sizeClass(_ size: Int) -> SizeClass {
        if let c = lastClass, c.size == size { return c }
        let c = classes[size] ?? SizeClass(size: size)
        classes[size] = c
        lastClass = c
        return c
    }

    func statistics() -> StackStatistics {
        _ = gt_enter_critical()
        lock.lock()
        let cached = classes.values.reduce(0) { $0 + $1.hot.count + $1.cold.count }
        let s = StackStatistics(slabsMapped: slabsMapped, stacksCarved: stacksCarved, stacksCached: cached)
        lock.unlock()
        KernelCore.exitCritical()
        return s
    }

    /// Guards strides installed per batch: one system call for the next 64
    /// stacks of a slab (a batch costs ~60 us here, so spawning a few threads
    /// pays little for it).
    static let guardBatch = 64
    @exclusivity(unchecked) private var batchGuardsWork = true  // guarded by lock

    /// Installs guards for the strides from `base` on, in one batch when the
    /// kernel supports it, else for `base` alone.
    private func installGuards(from base: UnsafeMutableRawPointer, stride: Int,
                               upTo end: UnsafeMutableRawPointer, sizeClass: SizeClass) {
        if case .madvise = guardMode, batchGuardsWork {
            let count = min(StackPool.guardBatch, (end - base) / stride)
            let r = gt_sys_guard_install_batch(base, stride, StackPool.guardSize, Int32(count))
            if r.error == 0 && r.value > 0 {
                sizeClass.guardedEnd = base + Int(r.value) * stride
                return
            }
            batchGuardsWork = false  // no process_madvise guard support: one call per stack
        }
        installGuard(at: base)
        sizeClass.guardedEnd = base + stride
    }

    /// Installs the guard below one new stack. The stride keeps its layout
    /// even when no protection could be installed.
    private func installGuard(at base: UnsafeMutableRawPointer) {
        switch guardMode {
        case .madvise:
            let r = gt_sys_madvise(base, StackPool.guardSize, GT_MADV_GUARD_INSTALL)
            if r.error == 0 { return }
            // EINVAL: a kernel older than 6.13. Fall back, and say so once.
            guardMode = .mprotect(budget: StackPool.mprotectBudget())
            warnOnce("GreenThreads: MADV_GUARD_INSTALL unavailable (errno \(r.error)); "
                     + "using mprotect guard pages within a budget of mappings\n")
            installGuard(at: base)
        case .mprotect(let budget):
            if budget > 0, gt_sys_mprotect(base, StackPool.guardSize, PROT_NONE).error == 0 {
                guardMode = .mprotect(budget: budget - 1)
                return
            }
            guardMode = .none
            warnOnce("GreenThreads: guard-page budget exhausted (vm.max_map_count); "
                     + "new stacks have no overflow guard\n")
        case .none:
            break
        }
    }

    private func warnOnce(_ message: String) {
        guard warned.insert(message).inserted else { return }
        message.withCString { gt_write_stderr($0) }
    }
}
