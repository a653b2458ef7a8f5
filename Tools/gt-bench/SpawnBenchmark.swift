// Spawn+join with every thread alive at once: start N threads, wait until
// all N have checked in and parked on a gate, read the memory they hold,
// open the gate and join them all. The clock runs from the first spawn to
// the last join, less the time spent reading /proc while they were parked.
//
// Every repetition runs in a fresh child process (`gt-bench --spawn-child`),
// as Tools/peers does, so each one is cold: no stack cache, no warmed
// malloc arena or thread-stack cache from an earlier repetition.
//
//   GreenThreads: children join a "gate" green thread that ends when the
//                 gate opens (a real park: blocked threads cost no CPU); the
//                 parent waits for the last check-in on a semaphore.
//   pthread:      default attributes (8 MiB stacks), a condition-variable gate.
//   Swift tasks:  withTaskGroup child tasks parked on checked continuations.
import Foundation
import GreenThreads
import Synchronization

/// What one child process measured.
struct SpawnChildResult: Codable {
    var seconds: Double?
    var rssPerThreadBytes: Double?
    var stackBytesPerThread: Double?
    var error: String?
}

enum SpawnRuntime: String, CaseIterable {
    case green, pthread, tasks

    var label: String {
        switch self {
        case .green: return "GreenThreads"
        case .pthread: return "pthread (8 MiB stacks)"
        case .tasks: return "Swift withTaskGroup"
        }
    }
}

enum SpawnBenchmark {
    // MARK: Parent: repetitions in child processes

    static func run(sizes: [Int], pthreadMax: Int, reps: Int, timeout: Double, progress: (String) -> Void) -> [Row] {
        var rows: [Row] = []
        for n in sizes {
            var results: [SpawnRuntime: [SpawnChildResult]] = [:]
            var failed: [SpawnRuntime: String] = [:]
            let runtimes = SpawnRuntime.allCases.filter { $0 != .pthread || n <= pthreadMax }
            for rep in 0..<reps {
                for runtime in runtimes where failed[runtime] == nil {
                    progress("spawn \(sizeLabel(n)) \(runtime.label) rep \(rep + 1)/\(reps)")
                    let r = runChild(runtime, n: n, timeout: timeout)
                    if let e = r.error { failed[runtime] = e } else { results[runtime, default: []].append(r) }
                }
            }
            let size = sizeLabel(n)
            for runtime in runtimes {
                let ref = runtime == .green
                if let e = failed[runtime] {
                    rows.append(Row(group: "spawn+join \(size), all alive", runtime: runtime.label, metric: "ms", error: e, reference: ref))
                    continue
                }
                let rs = results[runtime] ?? []
                rows.append(Row(group: "spawn+join \(size), all alive", runtime: runtime.label, metric: "ms",
                                values: rs.compactMap { $0.seconds.map { $0 * 1000 } }, reference: ref))
                rows.append(Row(group: "RSS per live thread, \(size)", runtime: runtime.label, metric: "B/thread",
                                values: rs.compactMap { $0.rssPerThreadBytes }, reference: ref))
                let stacks = rs.compactMap { $0.stackBytesPerThread }
                if !stacks.isEmpty {
                    let pages = Spread(stacks).median / 4096
                    rows.append(Row(group: "stack resident per thread, \(size)", runtime: runtime.label, metric: "B/thread",
                                    values: stacks, reference: ref, note: String(format: "%.2f pages", pages)))
                }
            }
        }
        return rows
    }

    /// Runs one repetition in a fresh process of this executable.
    static func runChild(_ runtime: SpawnRuntime, n: Int, timeout: Double) -> SpawnChildResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["--spawn-child", runtime.rawValue, "--spawn-n", String(n)]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        do { try process.run() } catch { return SpawnChildResult(error: "could not start child: \(error)") }
        let start = Date()
        while process.isRunning {
            if Date().timeIntervalSince(start) > timeout { process.terminate() }
            Thread.sleep(forTimeInterval: 0.01)
        }
        process.waitUntilExit()
        // One short JSON line: it fits the pipe's buffer, so reading after exit is safe.
        let data = out.fileHandleForReading.readDataToEndOfFile()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            return SpawnChildResult(error: "child \(runtime.rawValue) n=\(n) ended with status \(process.terminationStatus)"
                + (process.terminationReason == .uncaughtSignal ? " (signal)" : ""))
        }
        guard let line = String(data: data, encoding: .utf8)?.split(separator: "\n").last,
              let result = try? JSONDecoder().decode(SpawnChildResult.self, from: Data(line.utf8)) else {
            return SpawnChildResult(error: "child \(runtime.rawValue) n=\(n) printed no result")
        }
        return result
    }

    // MARK: Child: one measurement

    static func child(_ runtime: SpawnRuntime, n: Int) -> SpawnChildResult {
        do {
            switch runtime {
            case .green: return try greenChild(n: n)
            case .pthread: return pthreadChild(n: n)
            case .tasks: return tasksChild(n: n)
            }
        } catch {
            return SpawnChildResult(error: "\(error)")
        }
    }

    private final class Gate: @unchecked Sendable {
        let alive = Atomic<Int>(0)
    }

    /// Join handles in storage allocated and touched before the RSS
    /// baseline, like the peers' thread arrays: only the threads' own
    /// memory counts.
    private final class HandleTable: @unchecked Sendable {
        let slots: UnsafeMutablePointer<JoinHandle<Void>>
        let count: Int
        init(count: Int) {
            self.count = count
            slots = .allocate(capacity: count)
            UnsafeMutableRawPointer(slots).initializeMemory(as: UInt8.self, repeating: 0,
                                                            count: count * MemoryLayout<JoinHandle<Void>>.stride)
        }
        deinit { slots.deallocate() }  // handles are deinitialized by the run that filled them
    }

    static func greenChild(n: Int) throws -> SpawnChildResult {
        let log = AddressLog(count: n)
        let handles = HandleTable(count: n)
        let gate = Gate()
        // Parked, as the peers are (Go: WaitGroup and a channel; Boost and
        // pthread: a condition variable): the last child to check in signals
        // `allAlive`; the gate thread waits on `opening`. Polling with short
        // sleeps instead would time the monitor's timer path (two monitor
        // wake-ups per sleep), not spawning.
        let allAlive = GreenSemaphore(value: 0, name: "all alive")
        let opening = GreenSemaphore(value: 0, name: "gate")
        return try Kernel.run {
            ProcMemory.resetPeak()
            let baseline = ProcMemory.residentBytes
            let t0 = monotonicNanoseconds()
            let gateThread = try GreenThread.spawn(name: "gate") { opening.wait() }
            for i in 0..<n {
                (handles.slots + i).initialize(to: try GreenThread.spawn {
                    log.recordStackAddress(at: i)
                    if gate.alive.add(1, ordering: .acquiringAndReleasing).newValue == n { allAlive.signal() }
                    try gateThread.join()
                })
            }
            allAlive.wait()
            let r0 = monotonicNanoseconds()
            let peak = ProcMemory.peakResidentBytes
            let stack = log.stackResidentBytes()
            let r1 = monotonicNanoseconds()
            opening.signal()
            for i in 0..<n { try handles.slots[i].join() }
            try gateThread.join()
            let t1 = monotonicNanoseconds()
            handles.slots.deinitialize(count: n)
            return SpawnChildResult(seconds: Double(t1 - t0 - (r1 - r0)) / 1e9,
                                    rssPerThreadBytes: Double(peak - baseline) / Double(n),
                                    stackBytesPerThread: Double(stack) / Double(n))
        }
    }

    private final class PGate: @unchecked Sendable {
        let cond = PCondition()
        var alive = 0        // guarded by cond.mutex
        var target = Int.max // guarded by cond.mutex
        var open = false     // guarded by cond.mutex
    }

    static func pthreadChild(n: Int) -> SpawnChildResult {
        let log = AddressLog(count: n)
        let tids = UnsafeMutablePointer<pthread_t>.allocate(capacity: n)
        tids.initialize(repeating: pthread_t(), count: n)
        defer { tids.deallocate() }
        let gate = PGate()
        ProcMemory.resetPeak()
        let baseline = ProcMemory.residentBytes
        let t0 = monotonicNanoseconds()
        var created = 0
        var failure: String?
        for i in 0..<n {
            let tid = PThread.start {
                log.recordStackAddress(at: i)
                gate.cond.locked {
                    gate.alive += 1
                    if gate.alive == gate.target { gate.cond.broadcast() }
                    gate.cond.wait(until: { gate.open })
                }
            }
            guard let tid else {
                failure = "pthread_create failed after \(created) threads: \(String(cString: strerror(errno)))"
                break
            }
            tids[i] = tid
            created += 1
        }
        gate.cond.locked {
            gate.target = created
            gate.cond.wait(until: { gate.alive == created })
        }
        let r0 = monotonicNanoseconds()
        let peak = ProcMemory.peakResidentBytes
        let stack = log.stackResidentBytes()
        let r1 = monotonicNanoseconds()
        gate.cond.locked {
            gate.open = true
            gate.cond.broadcast()
        }
        for i in 0..<created { PThread.join(tids[i]) }
        let t1 = monotonicNanoseconds()
        if let failure { return SpawnChildResult(error: failure) }
        return SpawnChildResult(seconds: Double(t1 - t0 - (r1 - r0)) / 1e9,
                                rssPerThreadBytes: Double(peak - baseline) / Double(n),
                                stackBytesPerThread: Double(stack) / Double(n))
    }

    /// Parks child tasks until opened; resumes the parent once all N arrived.
    private final class TaskGate: Sendable {
        struct State {
            var alive = 0
            var open = false
            var parked: [CheckedContinuation<Void, Never>] = []
            var parent: CheckedContinuation<Void, Never>?
        }
        let n: Int
        let state = Mutex(State())

        init(n: Int) { self.n = n }

        func checkInAndWait() async {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let parent: CheckedContinuation<Void, Never>? = state.withLock { s in
                    s.alive += 1
                    s.parked.append(c)
                    if s.alive == n, let p = s.parent { s.parent = nil; return p }
                    return nil
                }
                parent?.resume()
            }
        }

        func waitForAll() async {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { s in
                    if s.alive == n { return true }
                    s.parent = c
                    return false
                }
                if ready { c.resume() }
            }
        }

        func openGate() {
            let parked = state.withLock { s in
                s.open = true
                let p = s.parked
                s.parked = []
                return p
            }
            for c in parked { c.resume() }
        }
    }

    static func tasksChild(n: Int) -> SpawnChildResult {
        runOnCooperativePool {
            let gate = TaskGate(n: n)
            ProcMemory.resetPeak()
            let baseline = ProcMemory.residentBytes
            let t0 = monotonicNanoseconds()
            var r0: Int64 = 0, r1: Int64 = 0, peak = 0
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<n { group.addTask { await gate.checkInAndWait() } }
                await gate.waitForAll()
                r0 = monotonicNanoseconds()
                peak = ProcMemory.peakResidentBytes
                r1 = monotonicNanoseconds()
                gate.openGate()
                await group.waitForAll()
            }
            let t1 = monotonicNanoseconds()
            return SpawnChildResult(seconds: Double(t1 - t0 - (r1 - r0)) / 1e9,
                                    rssPerThreadBytes: Double(peak - baseline) / Double(n))
        }
    }
}
