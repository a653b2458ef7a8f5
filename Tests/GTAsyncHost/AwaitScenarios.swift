// GreenThread.await: green threads calling async code.
//
// await-thousand: one worker. A spinner that never calls anything hogs it at
//   normal priority (preemption gives the CPU back every slice); meanwhile
//   1000 green threads each await a 200 ms Task.sleep. Only the awaiting
//   threads park, so all 1000 finish in about 200 ms (not 1000 x 200 ms, as
//   they would if an await blocked the worker), and the spinner keeps
//   running throughout.
// await-priority: a thread of each band awaits a task that reports its
//   Task.currentPriority: it follows the caller's effective priority.
// await-rethrows: the operation's error reaches the caller unchanged.
// await-outside-kernel: on a plain OS thread await blocks that thread.
import GreenThreads

let awaitScenarios: [String: Scenario] = [
    "await-thousand": .sync(awaitThousand),
    "await-priority": .sync(awaitPriority),
    "await-rethrows": .sync(awaitRethrows),
    "await-outside-kernel": .sync(awaitOutsideKernel),
]

func awaitThousand() throws {
    let threads = intOption("threads", 1000)
    let sleepMs = intOption("sleep-ms", 200)
    let workers = intOption("workers", 1)
    let stop = SharedFlag()
    try Kernel.run(KernelConfiguration(workers: workers)) {
        let spinner = try GreenThread.spawn(name: "spinner") { () -> Int in
            var spins = 0
            while !stop.isSet { spins &+= 1 }
            return spins
        }
        GreenThread.yield()  // let the spinner take the worker first
        let start = nowMilliseconds()
        let handles = try (0..<threads).map { i in
            try GreenThread.spawn(name: "awaiter-\(i)") {
                try GreenThread.await {
                    try await Task.sleep(for: .milliseconds(sleepMs))
                    return i
                }
            }
        }
        var sum = 0
        for h in handles { sum += try h.join() }
        let elapsed = nowMilliseconds() - start
        stop.set()
        let spins = try spinner.join()
        check(sum == threads * (threads - 1) / 2, "sum \(sum)")
        check(spins > 0, "the spinner never ran")
        print("elapsed_ms=\(Int(elapsed))")
        print("spinner_spins=\(spins)")
        print("spinner_preemptions=\(spinner.thread.statistics.preemptions)")
    }
    print("OK")
}

func awaitPriority() throws {
    try Kernel.run(KernelConfiguration(workers: 1)) {
        var seen: [String] = []
        for level in [0, 8, 16, 24, 31] {
            let h = try GreenThread.spawn(priority: try Priority(level: level)) {
                try GreenThread.await { Task.currentPriority.rawValue }
            }
            seen.append("\(level):\(try h.join())")
        }
        print("priorities=\(seen.joined(separator: ","))")
    }
    print("OK")
}

func awaitRethrows() throws {
    try Kernel.run(KernelConfiguration(workers: 1)) {
        do {
            _ = try GreenThread.await { () async throws -> Int in
                try await Task.sleep(for: .milliseconds(5))
                throw ScenarioError(code: 7)
            }
            check(false, "await returned instead of throwing")
        } catch let error as ScenarioError {
            print("caught=\(error.code)")
        }
    }
    print("OK")
}

func awaitOutsideKernel() throws {
    check(!GreenThread.isInKernel, "expected a plain OS thread")
    let start = nowMilliseconds()
    let value = try GreenThread.await {
        try await Task.sleep(for: .milliseconds(50))
        return "done"
    }
    print("value=\(value)")
    print("elapsed_ms=\(Int(nowMilliseconds() - start))")
    print("OK")
}
