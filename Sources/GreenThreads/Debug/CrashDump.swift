// CrashDump: the Swift half of the fatal-signal and SIGQUIT dumps (the C
// half, CGreenCore/unwind.c, installs the handlers, walks stacks and prints).
//
// The walker below runs inside a signal handler, on a thread that may have
// crashed anywhere, even holding the kernel lock. So it takes no lock (the
// registry is read as it is: a dump is best effort, and a thread being
// spawned or reaped at that instant may be missed), allocates nothing, and
// holds no strong reference (unowned(unsafe) locals: no retain or release,
// which could free an object inside a handler). It copies each live
// thread's fields into the C dump table and returns. Its code paths are run
// once when the kernel starts (`prewarm`), so no Swift metadata is
// instantiated for the first time inside a handler (that takes a lock).
import CGreenCore

/// Called by gt_dump_all with the kernel registered by DebugSession.
let crashDumpWalker: @convention(c) (UnsafeMutableRawPointer?) -> Void = { raw in
    guard let raw else { return }
    Unmanaged<KernelCore>.fromOpaque(raw)._withUnsafeGuaranteedRef { CrashDump.walk($0, emit: true) }
}

enum CrashDump {
    /// Threads listed at most (a corrupt registry must not loop forever).
    static let walkLimit = 1 << 20

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
        guard let wait = thread.waitRecord else { return }
        entry.wait_object = wait.objectID
        entry.wait_owner = wait.ownerThreadID ?? 0
        withUnsafeMutableBytes(of: &entry.wait_kind) { out in
            var i = 0
            for byte in wait.kind.utf8 where i < out.count - 1 {
                out[i] = byte
                i += 1
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
        kernel.lock.lock()
        walk(kernel, emit: false)
        kernel.lock.unlock()
        KernelCore.exitCritical()
    }
}
