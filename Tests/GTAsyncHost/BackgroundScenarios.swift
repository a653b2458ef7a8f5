// Kernel.start: a kernel hosted by async code.
//
// kernel-start: an async main starts a kernel, spawns from a task, from a
//   hundred tasks at once and from a plain OS thread, awaits the values,
//   runs GreenThread.await inside a green thread, shuts down; spawning
//   after that throws `kernelStopped`, and a second kernel can start.
// kernel-shutdown-waits: shutdown returns only after the last green thread
//   (one sleeping 300 ms) has finished.
// kernel-start-while-running: a second Kernel.start throws alreadyRunning.
// value-cancel: a task awaiting JoinHandle.value is cancelled: the green
//   thread is cancelled with it (its 10 s sleep ends early) and value
//   returns what the thread then returned, well before 10 s.
import Foundation
import GreenThreads

let backgroundScenarios: [String: Scenario] = [
    "kernel-start": .async(kernelStart),
    "kernel-shutdown-waits": .async(kernelShutdownWaits),
    "kernel-start-while-running": .async(kernelStartWhileRunning),
    "value-cancel": .async(valueCancel),
]

@Sendable func kernelStart() async throws {
    let kernel = try Kernel.start(KernelConfiguration(workers: 2))
    check(Kernel.isRunning && kernel.isRunning, "kernel not running after start")
    let shared = GreenLocked(0)

    // From this task.
    let a = try kernel.spawn(name: "a") { () -> Bool in
        try shared.withLock { $0 += 1 }
        return GreenThread.isInKernel
    }
    let aOnGreen = try await a.value
    check(aOnGreen, "a did not run on a green thread")

    // A green thread that itself awaits async code.
    let b = try kernel.spawn(name: "b") {
        try GreenThread.await {
            try await Task.sleep(for: .milliseconds(20))
            return 42
        }
    }
    let bValue = try await b.value
    check(bValue == 42, "b")

    // From a hundred tasks at once.
    let sum = try await withThrowingTaskGroup(of: Int.self) { group in
        for i in 0..<100 {
            group.addTask {
                try await kernel.spawn {
                    try shared.withLock { $0 += 1 }
                    return i * 2
                }.value
            }
        }
        return try await group.reduce(0, +)
    }
    check(sum == 9900, "sum \(sum)")

    // From a plain OS thread; the handle comes back through a lock.
    let fromThread = GreenLocked<JoinHandle<String>?>(nil)
    let spawned = SharedFlag()
    Thread {
        let h = try! kernel.spawn(name: "from-os-thread") { "hello from \(GreenThread.current.name)" }
        try! fromThread.withLock { $0 = h }
        spawned.set()
    }.start()
    while !spawned.isSet { try await Task.sleep(for: .milliseconds(1)) }
    let greeting = try await fromThread.withLock { $0 }!.value
    print("greeting=\(greeting)")

    try await kernel.shutdown()
    check(!Kernel.isRunning && !kernel.isRunning, "still running after shutdown")
    print("count=\(try shared.withLock { $0 })")
    do {
        _ = try kernel.spawn { 0 }
        check(false, "spawn after shutdown did not throw")
    } catch GreenThreadError.kernelStopped {
        print("after_shutdown=kernelStopped")
    }
    try await kernel.shutdown()  // a second shutdown returns at once

    let again = try Kernel.start(KernelConfiguration(workers: 1))
    let seven = try await again.spawn { 7 }.value
    check(seven == 7, "second kernel")
    try await again.shutdown()
    print("OK")
}

@Sendable func kernelShutdownWaits() async throws {
    let kernel = try Kernel.start(KernelConfiguration(workers: 1))
    let finished = SharedFlag()
    try kernel.spawn(name: "sleeper") {
        GreenThread.sleep(for: .milliseconds(300))
        finished.set()
    }
    let start = nowMilliseconds()
    try await kernel.shutdown()
    let elapsed = nowMilliseconds() - start
    print("shutdown_ms=\(Int(elapsed))")
    check(finished.isSet, "shutdown returned before the sleeper finished")
    print("OK")
}

@Sendable func kernelStartWhileRunning() async throws {
    let kernel = try Kernel.start(KernelConfiguration(workers: 1))
    do {
        _ = try Kernel.start()
        check(false, "a second Kernel.start did not throw")
    } catch KernelError.alreadyRunning {
        print("second=alreadyRunning")
    }
    try await kernel.shutdown()
    print("OK")
}

@Sendable func valueCancel() async throws {
    let kernel = try Kernel.start(KernelConfiguration(workers: 1))
    let h = try kernel.spawn(name: "sleeper") { () -> Bool in
        GreenThread.sleep(for: .seconds(10))
        return GreenThread.current.isCancelled
    }
    let start = nowMilliseconds()
    let waiter = Task { try await h.value }
    try await Task.sleep(for: .milliseconds(50))
    waiter.cancel()
    let cancelled = try await waiter.value
    let elapsed = nowMilliseconds() - start
    print("thread_saw_cancel=\(cancelled)")
    print("elapsed_ms=\(Int(elapsed))")
    check(cancelled, "the green thread was not cancelled")
    check(elapsed < 5000, "value waited \(elapsed) ms")
    try await kernel.shutdown()
    print("OK")
}
