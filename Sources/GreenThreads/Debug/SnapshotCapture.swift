// SnapshotCapture: builds a KernelSnapshot of the running kernel, and the
// public `Kernel.snapshot(includeStacks:)`.
//
// A capture runs on an OS thread that runs no green threads (the snapshot
// server; a short-lived thread when a green thread asks), in phases:
//   1. Under the kernel lock, once: copy every live thread's fields and
//      counters and every worker's: one consistent moment, so the wait-for
//      graph cannot show a cycle that never existed.
//   1b. With stacks, under the kernel lock again, `traceBatch` threads at a
//      time: raw traces of switched-out threads. Holding the lock freezes
//      the scheduler: no thread is switched in or out, so a saved frame is
//      stable. Between batches the scheduler runs, so a capture of 100,000
//      threads does not stall it for the whole walk. A running thread's
//      trace is a request to its worker (TraceCapture), posted under the
//      lock but awaited without it: the thread may be in its own
//      preemption path, waiting for the lock with SIGVTALRM masked.
//   2. Without the lock: stack high-water marks (mincore on the stacks,
//      which stay mapped: slabs are never unmapped) and symbolization.
// Nothing slow happens under the lock: no symbol lookup, no system call but
// the trace requests' signals.
//
// Lock order: TraceCapture.requestLock -> kernel lock.
import CGreenCore
import GTSnapshot
import Glibc
import GTSnapshot

extension Kernel {
    /// A snapshot of the running kernel: every live thread (state,
    /// priorities, counters, what it waits on, stack use, and with
    /// `includeStacks` its trace), every worker, and the wait-for cycles.
    /// Without a running kernel, an empty snapshot (`kernelRunning` false).
    ///
    /// ```swift
    /// let snapshot = Kernel.snapshot(includeStacks: true)
    /// print(snapshot)                              // text form, with traces
    /// if !snapshot.waitGraph.cycles.isEmpty {       // deadlocked threads
    ///     print("deadlock: \(snapshot.waitGraph.cycles)")
    /// }
    /// ```
    ///
    /// Called from a green thread, the capture runs on a short-lived OS
    /// thread while the caller's worker waits (a few milliseconds); the
    /// caller's own trace is its current stack.
    public static func snapshot(includeStacks: Bool = true) -> KernelSnapshot {
        guard let kernel = KernelCore.running.withLock({ $0 }) else { return SnapshotCapture.noKernel() }
        guard GreenThread.isInKernel else {
            return kernel.captureSnapshot(includeStacks: includeStacks, lockHeld: false)
        }
        // The caller's trace now, from its own context; the capture thread
        // would otherwise have to interrupt this worker to get it.
        let me = GreenThread.current.id
        let own = includeStacks ? TraceCapture.current() : nil
        let result = SnapshotResult()
        do {
            let thread = try OSThread.start(name: "gt-snapshot", blockingPreemptionSignal: true) {
                result.snapshot = kernel.captureSnapshot(includeStacks: includeStacks, lockHeld: false,
                                                         callerTrace: own.map { (me, $0) })
            }
            thread.join()
        } catch {
            // No OS thread to spare: counters and states only, taken here
            // inside a critical section (the kernel lock's rule).
            _ = gt_enter_critical()
            var s = kernel.captureSnapshot(includeStacks: false, lockHeld: false)
            s.includesStacks = false
            KernelCore.exitCritical()
            return s
        }
        return result.snapshot!
    }
}

/// Hands the capture thread's result back to the green thread that joins it.
private final class SnapshotResult: @unchecked Sendable {
    var snapshot: KernelSnapshot?
}

/// One thread's fields, copied under the kernel lock.
private struct ThreadRecord {
    var id: UInt64
    var name: String
    var state: ThreadState
    var basePriority: Int
    var effectivePriority: Int
    var worker: Int?
    var cpuTicks: UInt64
    var switches: UInt64
    var preemptions: UInt64
    var deferrals: UInt64
    var wait: WaitRecord?
    var stack: GreenStack?
    var trace: RawTrace?
    var held: [HeldMutex]?
}

enum SnapshotCapture {
    static func noKernel() -> KernelSnapshot {
        KernelSnapshot(processID: getpid(), processName: processName(),
                       wallClockNanoseconds: wallClockNanoseconds(), monotonicNanoseconds: gt_clock_monotonic_ns(),
                       includesStacks: false, kernelRunning: false, threadsSpawned: 0, threads: [], workers: [])
    }

    static func processName() -> String {
        (readSmallFile("/proc/self/comm") ?? "?").filter { $0 != "\n" }
    }

    static func wallClockNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// TSC ticks to nanoseconds, without overflow.
    static func nanoseconds(ticks: UInt64) -> UInt64 {
        let hz = gt_tsc_frequency()
        guard hz > 0 else { return 0 }
        let wide = ticks.multipliedFullWidth(by: 1_000_000_000)
        guard wide.high < hz else { return UInt64.max }
        return hz.dividingFullWidth(wide).quotient
    }

    /// The high-water mark and resident bytes of a stack, from mincore(2):
    /// the kernel reports which pages are in memory without us touching any.
    static func usage(of stack: GreenStack) -> StackUsage {
        let page = StackPool.pageSize
        let pages = stack.size / page
        var resident = [UInt8](repeating: 0, count: pages)
        let rc = resident.withUnsafeMutableBufferPointer { mincore(stack.low, stack.size, $0.baseAddress) }
        guard rc == 0 else { return StackUsage(sizeBytes: stack.size, usedBytes: 0, residentBytes: 0) }
        let lowest = resident.firstIndex { $0 & 1 != 0 }
        let used = lowest.map { (pages - $0) * page } ?? 0
        let count = resident.reduce(0) { $0 + Int($1 & 1) }
        return StackUsage(sizeBytes: stack.size, usedBytes: used, residentBytes: count * page)
    }
}

extension KernelCore {
    /// Threads traced per hold of the kernel lock: a walk costs a few
    /// microseconds per frame, so a batch holds the lock for well under a
    /// millisecond, and a capture of many thousands of threads lets the
    /// scheduler run between batches.
    static let traceBatch = 64

    /// A snapshot of this kernel (see the top of the file). `lockHeld`: the
    /// caller holds the kernel lock (the deadlock report); no running
    /// thread is traced then. `callerTrace`: the trace of a green thread
    /// that waits for this capture, taken by itself.
    func captureSnapshot(includeStacks: Bool, lockHeld: Bool,
                         callerTrace: (UInt64, RawTrace)? = nil) -> KernelSnapshot {
        var records: [ThreadRecord] = []
        var workerList: [WorkerSnapshot] = []
        var machineList: [OSThreadSnapshot] = []
        var threads: [GreenThread] = []
        var spawned: UInt64 = 0
        // Phase 1: one consistent copy of states, counters and wait edges
        // (the wait-for graph must come from one moment, or it could show
        // a cycle that never existed).
        if !lockHeld { lock.lock() }
        spawned = threadsSpawned
        (records, threads, workerList) = collectLocked()
        machineList = collectMachinesLocked()
        if !lockHeld { lock.unlock() }
        // Phase 1b: traces, in batches. A trace is taken where the thread
        // is at that moment; one that changed state since phase 1 says so
        // through its origin (e.g. `running` for a thread listed as ready).
        if includeStacks {
            let traceAll = {
                var running: [Int] = []
                for start in stride(from: 0, to: threads.count, by: KernelCore.traceBatch) {
                    if !lockHeld { self.lock.lock() }
                    for i in start..<min(start + KernelCore.traceBatch, threads.count) {
                        if let trace = self.traceUnlessRunning(threads[i], traceRunning: !lockHeld, callerTrace: callerTrace) {
                            records[i].trace = trace
                        } else {
                            running.append(i)
                        }
                    }
                    if !lockHeld { self.lock.unlock() }
                }
                for i in running { records[i].trace = self.traceRunning(threads[i], callerTrace: callerTrace) }
            }
            if lockHeld { traceAll() } else { TraceCapture.requestLock.withLock { _ in traceAll() } }
        }
        threads = []  // our references to finished threads may be the last ones: drop them here, unlocked
        var heldByID: [UInt64: String] = [:]
        for r in records { for m in r.held ?? [] { heldByID[m.id] = m.name } }
        let snapshots = records.map { r in
            ThreadSnapshot(
                id: r.id, name: r.name, state: r.state, basePriority: r.basePriority,
                effectivePriority: r.effectivePriority, worker: r.worker,
                cpuTimeNanoseconds: SnapshotCapture.nanoseconds(ticks: r.cpuTicks), switches: r.switches,
                preemptions: r.preemptions, deferredPreemptions: r.deferrals,
                wait: r.wait.map { named($0, held: heldByID) },  // WaitRecord is WaitSnapshot
                stack: r.stack.map(SnapshotCapture.usage) ?? StackUsage(sizeBytes: 0, usedBytes: 0, residentBytes: 0),
                trace: r.trace?.symbolized(), heldMutexes: r.held)
        }
        return KernelSnapshot(processID: getpid(), processName: SnapshotCapture.processName(),
                              wallClockNanoseconds: SnapshotCapture.wallClockNanoseconds(),
                              monotonicNanoseconds: gt_clock_monotonic_ns(), includesStacks: includeStacks,
                              kernelRunning: true, threadsSpawned: spawned, threads: snapshots, workers: workerList,
                              osThreads: machineList)
    }

    /// The kernel's OS threads and their roles. Kernel lock held.
    private func collectMachinesLocked() -> [OSThreadSnapshot] {
        machines.compactMap { m -> OSThreadSnapshot? in
            guard let ms = m.state, !shuttingDown else { return nil }
            var c = gt_worker_counters()
            gt_worker_counters_read(ms, &c)
            let p = m.processor
            let role: OSThreadSnapshot.Role
            if m.isParked { role = .parked }
            else if p != nil { role = m.current == nil ? .scheduling : .running }
            else if m.current != nil { role = .blocked }
            else { role = .spare }
            return OSThreadSnapshot(id: m.id, osThreadID: c.tid, role: role, processor: p?.index,
                                    threadID: m.current?.id, parks: c.parks)
        }
    }

    /// Phase 1, kernel lock held: copy what the snapshot needs, oldest
    /// thread first (the registry is newest first).
    private func collectLocked() -> ([ThreadRecord], [GreenThread], [WorkerSnapshot]) {
        var records: [ThreadRecord] = []
        var threads: [GreenThread] = []
        let clock = WaitClock.now  // one reading for every thread's wait
        forEachLiveThread { t in
            var r = ThreadRecord(id: t.id, name: t.name, state: ThreadState(rawValue: t.runState.rawValue) ?? .ready,
                                 basePriority: t.basePriorityLevel, effectivePriority: t.effectivePriorityLevel,
                                 worker: t.runningOn?.index, cpuTicks: 0, switches: 0, preemptions: 0, deferrals: 0,
                                 wait: t.wait?.record(at: clock), stack: t.stack)
            if let core = t.core {
                r.cpuTicks = core.pointee.cpu_ticks
                r.switches = core.pointee.switches
                r.preemptions = core.pointee.preemptions
                r.deferrals = core.pointee.deferrals
                if let w = t.runningOn, let ws = w.state, !shuttingDown {
                    // Add the slice in progress: cpu_ticks is settled at each switch.
                    var c = gt_worker_counters()
                    gt_worker_counters_read(ws, &c)
                    let now = gt_tsc()
                    if now > c.slice_start { r.cpuTicks &+= now - c.slice_start }
                }
            }
            if t.runningOn == nil { r.held = heldMutexes(of: t) }
            records.append(r)
            threads.append(t)
        }
        let workerList = processors.map { p -> WorkerSnapshot in
            var c = gt_worker_counters()
            if let ws = p.heldBy?.state, !shuttingDown { gt_worker_counters_read(ws, &c) }
            var w = WorkerSnapshot(index: p.index, osThreadID: c.tid, currentThreadID: p.current?.id, isIdle: p.isIdle,
                                   ticks: c.ticks, preemptions: c.preemptions, deferrals: c.deferrals, retries: 0)
            w.parkHandoffs = p.parkHandoffs
            w.resumeHandoffs = p.resumeHandoffs
            w.blockedHandoffs = p.blockedHandoffs
            w.idleWakeups = p.idleWakeups
            w.lingersServed = p.lingersServed
            w.lingersTimedOut = p.lingersTimedOut
            return w
        }
        return (records.reversed(), threads.reversed(), workerList)
    }

    /// The robust list of a thread that is not running (kernel lock held):
    /// only its owner changes the list, and a switched-out owner cannot
    /// until the scheduler, frozen by the lock, resumes it; the listed
    /// mutexes stay alive while held (GreenMutex.swift). A bound keeps a
    /// corrupt list from looping.
    private func heldMutexes(of t: GreenThread) -> [HeldMutex] {
        var out: [HeldMutex] = []
        var m = t.heldMutexes
        while let current = m, out.count < 4096 {
            current._withUnsafeGuaranteedRef { mutex in
                out.append(HeldMutex(id: mutex.id, name: mutex.name))
                m = mutex.heldNext
            }
        }
        return out
    }

    /// A wait record with the name of the mutex waited on, when its owner's
    /// list named it.
    private func named(_ wait: WaitRecord, held: [UInt64: String]) -> WaitRecord {
        guard wait.objectName == nil, wait.kind == "mutex", let name = held[wait.objectID] else { return wait }
        var named = wait
        named.objectName = name
        return named
    }

    /// Counts for a `summary` request: one pass under the kernel lock,
    /// nothing copied per thread.
    func captureSummary() -> KernelSummary {
        var counts: [ThreadState: Int] = [:]
        var total = 0
        lock.lock()
        forEachLiveThread { t in
            counts[ThreadState(rawValue: t.runState.rawValue) ?? .ready, default: 0] += 1
            total += 1
        }
        let spawned = threadsSpawned, workerCount = processors.count
        lock.unlock()
        return KernelSummary(processID: getpid(), processName: SnapshotCapture.processName(), kernelRunning: true,
                             threads: total, ready: counts[.ready] ?? 0, running: counts[.running] ?? 0,
                             blocked: counts[.blocked] ?? 0, sleeping: counts[.sleeping] ?? 0,
                             workers: workerCount, threadsSpawned: spawned)
    }

    /// A thread's raw trace if it is not running now (kernel lock held);
    /// nil for a running thread, whose trace needs a request (see
    /// `traceRunning`). With `traceRunning` false (the deadlock report) a
    /// running thread gets a note instead.
    private func traceUnlessRunning(_ t: GreenThread, traceRunning: Bool, callerTrace: (UInt64, RawTrace)?) -> RawTrace? {
        if let (id, trace) = callerTrace, id == t.id { return trace }
        guard let core = t.core, t.runState != .finished else {
            return RawTrace(origin: .unavailable, note: "finished while the snapshot was taken")
        }
        guard let w = t.runningOn else { return TraceCapture.switchedOut(core) }
        return traceRunning ? nil : RawTrace(origin: .unavailable, note: "running on worker \(w.index ?? -1)")
    }

    /// A running thread's trace: a request posted under the kernel lock
    /// (which keeps the worker, and so its state block, alive: a worker only
    /// exits after `shuttingDown` is set under the lock), awaited without
    /// it, then withdrawn under it. The worker's handler checks it is still
    /// running this thread. TraceCapture.requestLock held.
    private func traceRunning(_ t: GreenThread, callerTrace: (UInt64, RawTrace)?) -> RawTrace {
        var outcome = Int32(GT_TRACE_NOT_RUNNING)
        var index = -1
        for _ in 0..<TraceCapture.runningAttempts {
            lock.lock()
            if let trace = traceUnlessRunning(t, traceRunning: true, callerTrace: callerTrace) {
                lock.unlock()  // it stopped running meanwhile: traced where it is now
                return trace
            }
            guard !shuttingDown, let w = t.runningOn, let ws = w.state, let core = t.core else {
                lock.unlock()
                return RawTrace(origin: .unavailable, note: "the kernel is shutting down")
            }
            index = w.index ?? -1
            let tid = ws.pointee.tid
            let request = TraceCapture.request  // awaitRunning may replace it
            outcome = gt_trace_request_post(request, ws, core)
            lock.unlock()
            guard outcome == Int32(GT_TRACE_OK) else { break }
            let (trace, result) = TraceCapture.awaitRunning(tid: tid)
            lock.lock()
            if !shuttingDown { gt_trace_request_unpost(request, ws) }
            lock.unlock()
            if let trace { return trace }
            outcome = result
            guard outcome == Int32(GT_TRACE_NOT_RUNNING) else { break }  // else it moved: look again
        }
        return TraceCapture.unavailable(outcome, workerIndex: index)
    }
}
