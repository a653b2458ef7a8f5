// gt-async-demo: an async program (Swift 6 language mode) that hosts a
// green-thread kernel in the background. It starts the kernel, keeps one
// CPU-bound green thread that never yields busy at low priority, and serves
// fifty "requests" from Swift tasks: each request is a high-priority green
// thread that calls async code (GreenThread.await) and records itself in
// state shared through GreenLocked. Then it awaits every result and shuts
// the kernel down. `swift run gt-async-demo`.
import GreenThreads

@main
struct AsyncDemo {
    static func main() async throws {
        let requests = 50
        let kernel = try Kernel.start()
        let served = GreenLocked([String]())

        // Never yields, never calls anything: preemption keeps it from
        // starving the requests. (A plain loop, so that even a debug build
        // spends its time in this code, where a preemption may land, rather
        // than in the standard library's unspecialized generics.)
        let crunch = try kernel.spawn(name: "crunch", priority: .low) { () -> Int in
            var total = 0, i = 0
            while i < 200_000_000 {
                total &+= i
                i &+= 1
            }
            return total
        }

        let clock = ContinuousClock()
        let latencies = try await withThrowingTaskGroup(of: Duration.self) { group in
            for i in 0..<requests {
                group.addTask {
                    let start = clock.now
                    let request = try kernel.spawn(name: "request-\(i)", priority: .high) { () -> String in
                        // Async code runs as a Task; only this green thread parks.
                        let body = try GreenThread.await {
                            try await Task.sleep(for: .milliseconds(20))
                            return "response \(i)"
                        }
                        try served.withLock { $0.append(GreenThread.current.name) }
                        return body
                    }
                    _ = try await request.value
                    return clock.now - start
                }
            }
            var all: [Duration] = []
            for try await latency in group { all.append(latency) }
            return all
        }

        let total = try await crunch.value
        try await kernel.shutdown()

        let sorted = latencies.sorted()
        let count = try served.withLock { $0.count }
        print("served \(count) of \(requests) requests beside a CPU-bound thread")
        print("request latency (20 ms of it asleep in Task.sleep): "
            + "median \(milliseconds(sorted[sorted.count / 2])) ms, max \(milliseconds(sorted.last!)) ms")
        print("crunch result: \(total)")
        guard count == requests else { throw DemoError.missingRequests(count) }
    }
}

func milliseconds(_ d: Duration) -> Int {
    Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
}

enum DemoError: Error {
    case missingRequests(Int)
}
