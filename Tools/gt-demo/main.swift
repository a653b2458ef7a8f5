// gt-demo: a small CPU-mixed workload on green threads.
//
// Four compute threads at low priority crunch primes in loops that never
// yield; a high-priority "server" thread wakes every 10 ms to answer a
// request; a normal-priority thread spawns short-lived helpers. Preemption
// keeps the compute threads sharing the CPU fairly, and priority scheduling
// lets the server answer promptly although the CPU is always busy. At the end
// the demo prints what ran, at which priority, for how long.
//
//   swift run -c release gt-demo [seconds]
import GreenThreads
import Glibc

/// Counts primes below `limit` by trial division: a CPU-bound loop with no calls.
@inline(never) func countPrimes(below limit: Int) -> Int {
    var count = 0
    var n = 2
    while n < limit {
        var isPrime = true
        var d = 2
        while d * d <= n {
            if n % d == 0 { isPrime = false; break }
            d += 1
        }
        if isPrime { count += 1 }
        n += 1
    }
    return count
}

func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

func milliseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

let seconds = CommandLine.arguments.dropFirst().first.flatMap(Double.init) ?? 2.0
let configuration = KernelConfiguration()

print("GreenThreads demo: \(configuration.workers) worker(s), \(configuration.timeSlice) slices, \(seconds) s")

let report = try Kernel.run(configuration) { () -> [(GreenThread, String)] in
    let deadline = monotonicNanoseconds() + Int64(seconds * 1e9)
    var rows: [(GreenThread, String)] = []

    // Compute threads: low priority, never yield.
    let compute = try (0..<4).map { i in
        try GreenThread.spawn(name: "compute-\(i)", priority: .low) { () -> Int in
            var rounds = 0
            while monotonicNanoseconds() < deadline {
                _ = countPrimes(below: 20_000)
                rounds += 1
            }
            return rounds
        }
    }

    // Server: high priority, sleeps until the next request is due.
    let server = try GreenThread.spawn(name: "server", priority: .high) { () -> [Int64] in
        var delays: [Int64] = []
        var due = monotonicNanoseconds() + 10_000_000
        while due < deadline {
            GreenThread.sleep(for: .nanoseconds(due - monotonicNanoseconds()))
            delays.append(monotonicNanoseconds() - due)   // how late the answer starts
            _ = countPrimes(below: 2_000)                 // the request's work
            due += 10_000_000
        }
        return delays
    }

    // Spawner: normal priority, many short-lived helpers.
    let spawner = try GreenThread.spawn(name: "spawner", priority: .normal) { () -> Int in
        var spawned = 0
        while monotonicNanoseconds() < deadline {
            let helpers = try (0..<100).map { _ in try GreenThread.spawn { countPrimes(below: 200) } }
            for h in helpers { _ = try h.join() }
            spawned += helpers.count
            GreenThread.sleep(for: .milliseconds(50))
        }
        return spawned
    }

    for h in compute { rows.append((h.thread, "\(try h.join()) rounds of primes")) }
    var delays = try server.join().sorted()
    if delays.isEmpty { delays = [0] }
    let p50 = Double(delays[delays.count / 2]) / 1e3, p99 = Double(delays[delays.count * 99 / 100]) / 1e3
    rows.append((server.thread, "\(delays.count) requests, start delay p50 \(Int(p50)) us, p99 \(Int(p99)) us"))
    rows.append((spawner.thread, "\(try spawner.join()) helper threads spawned and joined"))
    return rows
}

print(pad("THREAD", 11) + pad("PRIORITY", 9) + pad("CPU ms", 9) + pad("SWITCHES", 9) + pad("PREEMPTED", 10) + "RESULT")
for (thread, result) in report {
    let s = thread.statistics
    print(pad(thread.name, 11) + pad("\(thread.priority.level)", 9) + pad(String(Int(milliseconds(s.cpuTime))), 9)
          + pad("\(s.switches)", 9) + pad("\(s.preemptions)", 10) + result)
}
