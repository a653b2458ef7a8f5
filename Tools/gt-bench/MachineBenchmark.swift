// What the processor / OS-thread split costs (issue 11):
//   - one preemption (PreemptionBenchmark's notes): the processor time
//     lost per preemption, from the paired wall and CPU times;
//   - one blocked hand-off: a thread blocks its OS thread in read(2) on an
//     empty pipe while an equal thread waits to run; the figure is the time
//     from the block to the other thread running (the monitor's detection
//     plus the hand-off);
//   - OS threads and RSS with N CPU-bound threads, once every one has been
//     preempted (each then holds an OS thread of its own while it waits).
import CGreenCore
import GreenThreads
import Glibc
import Synchronization

// Shared by the measuring threads (globals: the closures given to spawn are
// `sending`, so they capture no local state of the caller).
private let blockedAt = Atomic<UInt64>(0)
private let ranAt = Atomic<UInt64>(0)
private let spinStop = Atomic<Bool>(false)

enum MachineBenchmark {
    static let group = "blocked OS thread hand-off"
    static let memoryGroup = "CPU-bound threads: OS threads and RSS"

    static func run(spinners: Int, reps: Int, progress: (String) -> Void) throws -> [Row] {
        var handoffs: [Double] = []
        for rep in 0..<reps {
            progress("blocked hand-off rep \(rep + 1)/\(reps)")
            handoffs.append(try blockedHandoffMicroseconds())
        }
        progress("\(spinners) CPU-bound threads")
        let memory = try cpuBoundThreads(spinners)
        return [
            Row(group: group, runtime: "GreenThreads, blocked read(2) to the next thread running", metric: "us",
                values: handoffs, reference: true,
                note: "blockedHandoffAfter \(KernelConfiguration().blockedHandoffAfter)"),
            Row(group: memoryGroup, runtime: "GreenThreads, \(spinners) spinners on \(memory.workers) workers",
                metric: "OS threads", values: [Double(memory.osThreads)], reference: true,
                note: "\(memory.preempted) preempted at least once; \(memory.osThreadsBefore) OS threads before"),
            Row(group: memoryGroup, runtime: "GreenThreads, \(spinners) spinners, RSS per thread", metric: "KiB",
                values: [memory.rssPerThreadKiB]),
        ]
    }

    /// Time from a thread blocking its OS thread in read(2) to an equal peer
    /// running, on one processor, in microseconds.
    static func blockedHandoffMicroseconds() throws -> Double {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return -1 }
        defer { close(fds[0]); close(fds[1]) }
        let readEnd = fds[0], writeEnd = fds[1]
        try Kernel.run(KernelConfiguration(workers: 1)) {
            let reader = try GreenThread.spawn(name: "reader") {
                var byte: UInt8 = 0
                blockedAt.store(gt_tsc(), ordering: .relaxed)
                _ = read(readEnd, &byte, 1)
            }
            let peer = try GreenThread.spawn(name: "peer") {
                ranAt.store(gt_tsc(), ordering: .relaxed)
                var byte: UInt8 = 1
                _ = write(writeEnd, &byte, 1)  // lets the reader finish
            }
            try peer.join()
            try reader.join()
        }
        return Double(ranAt.load(ordering: .relaxed) &- blockedAt.load(ordering: .relaxed))
            / Double(gt_tsc_frequency()) * 1e6
    }

    struct Memory {
        var workers: Int, osThreads: Int, osThreadsBefore: Int, preempted: Int, rssPerThreadKiB: Double
    }

    static func cpuBoundThreads(_ n: Int) throws -> Memory {
        let workers = KernelConfiguration.usableCPUs
        spinStop.store(false, ordering: .relaxed)
        return try Kernel.run(KernelConfiguration(workers: workers, timeSlice: .milliseconds(1))) { () -> Memory in
            GreenThread.current.setPriority(.highest)
            let before = ProcMemory.residentBytes
            let threadsBefore = osThreadCount()
            let spinners = try (0..<n).map { i in
                try GreenThread.spawn(name: "cpu\(i)") { () -> Int in
                    var x = i
                    while !spinStop.load(ordering: .relaxed) { x = x &* 6364136223846793005 &+ 1 }
                    return x
                }
            }
            var preempted = 0
            let deadline = monotonicNanoseconds() + 180_000_000_000
            while monotonicNanoseconds() < deadline {
                GreenThread.sleep(for: .milliseconds(250))
                preempted = spinners.reduce(0) { $0 + ($1.thread.statistics.preemptions > 0 ? 1 : 0) }
                if preempted == n { break }
            }
            let memory = Memory(workers: workers, osThreads: osThreadCount(), osThreadsBefore: threadsBefore,
                                preempted: preempted,
                                rssPerThreadKiB: Double(ProcMemory.residentBytes - before) / 1024 / Double(n))
            spinStop.store(true, ordering: .relaxed)
            for s in spinners { blackHole(UInt64(truncatingIfNeeded: try s.join())) }
            return memory
        }
    }

    static func osThreadCount() -> Int {
        for line in ProcMemory.read("/proc/self/status").split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(line.dropFirst(8).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? -1
        }
        return -1
    }
}
