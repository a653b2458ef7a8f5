// CrashDump: the Swift half of the fatal-signal dump (the C half,
// CGreenCore/unwind.c, installs the handlers, walks stacks and prints raw
// frames). The on-demand (SIGQUIT) dump is not here: it is a snapshot,
// taken by the snapshot server's thread (SnapshotServer.swift).
//
// The walker below runs inside a signal handler, on a thread that may have
// crashed anywhere, even holding the kernel lock. What makes its registry
// walk safe: reaping (the only thing that frees a GreenThread, or unlinks
// it) runs under the kernel lock. So the walker takes the lock first,
// trying for `lockPatienceNanoseconds` without blocking, and keeps it until
// the dump ends (`crashDumpRelease`): nothing is reaped, spawned or switched
// meanwhile, and parked threads' saved frames stay put. If the lock stays
// busy that long, its holder is stuck or is the crashed thread itself
// (a crash inside the scheduler); either way no one reaps while it is held,
// and the walk goes ahead without it (the dump says so). The one window
// left: a stuck holder that lets go during the walk, and a reap right then.
//
// It allocates nothing and holds no strong reference (unowned(unsafe)
// locals: no retain or release, which could free an object inside a
// handler). Its code paths are run once when the kernel starts (`prewarm`),
// so no Swift metadata is instantiated for the first time inside a handler
// (that takes a lock).
import CGreenCore
import Glibc

/// Called by gt_dump_all with the kernel registered by DebugSession.
let crashDumpWalker: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> Void = { raw, locked in
    guard let raw else { return }
    Unmanaged<KernelCore>.fromOpaque(raw)._withUnsafeGuaranteedRef { kernel in
        let got = CrashDump.lock(kernel)
        locked?.pointee = got ? 1 : 0
        CrashDump.walk(kernel, emit: true)
    }
}

/// Called by gt_dump_all when the dump is written: drops the lock.
let crashDumpRelease: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> Void = { raw, locked in
    guard let raw, locked?.pointee == 1 else { return }
    Unmanaged<KernelCore>.fromOpaque(raw)._withUnsafeGuaranteedRef { $0.lock.unlock() }
}

enum CrashDump {
    /// Threads listed at most (a corrupt registry must not loop forever).
    static let walkLimit = 1 << 20
    /// How long the dump tries for the kernel lock: holders keep it for
    /// microseconds, so 200 ms means it will not come (see the top), and a
    /// dying process should not wait longer.
    static let lockPatienceNanoseconds: Int64 = 200_000_000

    /// Takes the kernel lock by polling (a signal handler must not block).
    static func lock(_ kernel: KernelCore) -> Bool {
        let deadline = gt_clock_monotonic_ns() + lockPatienceNanoseconds
        while !kernel.lock.tryLock() {
            if gt_clock_monotonic_ns() >= deadline { return false }
            var nap = timespec(tv_sec: 0, tv_nsec: 100_000)
            nanosleep(&nap, nil)
        }
        return true
    }

    /// Adds every live thread, oldest first, to the C dump table.
    static func walk(_ kernel: KernelCore, emit: Bool) {
        // The registry is newest first: find the oldest, then walk back.
        unowned(unsafe) var t: GreenThread? = kernel.registryHead
        var steps = 0
        while let next = t?.registryNext, steps < walkLimit {
            t = next
            steps += 1
        }
        steps = 0
        while let thread = t, steps < walkLimit {
            var entry = gt_dump_thread()
            fill(&entry, from: thread)
            if emit { _ = gt_dump_add(&entry) }
            t = thread.registryPrev
            steps += 1
        }
    }

    private static func fill(_ entry: inout gt_dump_thread, from thread: GreenThread) {
        entry.core = thread.core
        entry.state = stateCode(thread.runState)
        entry.base_priority = Int32(truncatingIfNeeded: thread.basePriorityLevel)
        entry.effective_priority = Int32(truncatingIfNeeded: thread.effectivePriorityLevel)
        unowned(unsafe) let worker: Machine? = thread.runningOn
        entry.worker = Int32(truncatingIfNeeded: worker?.index ?? -1)
        entry.worker_state = worker?.state
        // The control block's ThreadWait, not a WaitRecord: no string is
        // built in the handler (the kind is a static string, the owner read
        // through the unretained target).
        guard let wait = thread.wait else { return }
        entry.wait_object = wait.objectID
        entry.wait_owner = wait.target?.waitOwner?.id ?? 0
        let kind = wait.reason.kind
        withUnsafeMutableBytes(of: &entry.wait_kind) { out in
            var i = 0
            kind.withUTF8Buffer { bytes in
                for byte in bytes where i < out.count - 1 {
                    out[i] = byte
                    i += 1
                }
            }
            out[i] = 0
        }
    }

    private static func stateCode(_ state: GreenThread.State) -> Int32 {
        switch state {
        case .ready: return Int32(GT_DUMP_READY)
        case .running: return Int32(GT_DUMP_RUNNING)
        case .blocked: return Int32(GT_DUMP_BLOCKED)
        case .sleeping: return Int32(GT_DUMP_SLEEPING)
        case .finished: return Int32(GT_DUMP_FINISHED)
        }
    }

    /// Runs the walker's code once outside any handler (see the top).
    static func prewarm(_ kernel: KernelCore) {
        _ = gt_enter_critical()
        if lock(kernel) {
            walk(kernel, emit: false)
            kernel.lock.unlock()
        }
        KernelCore.exitCritical()
    }
}
