// Costs, for docs/async.md (run on a release build; nothing is asserted
// beyond the results being right):
// locked-cost: nanoseconds per uncontended withLock of GreenLocked, of
//   GreenMutex.withLock and of Synchronization.Mutex on a green thread,
//   and of GreenLocked and Mutex on a plain OS thread.
// spawn-join-cost: nanoseconds per spawn and join of a thread returning an
//   Int, one at a time (the join path: completion, cancellable join).
// await-cost: microseconds per GreenThread.await of an operation that
//   returns at once (a Task's creation, run and the wake-up), one thread.
import GreenThreads
import Synchronization

let costScenarios: [String: Scenario] = [
    "locked-cost": .sync(lockedCost),
    "await-cost": .sync(awaitCost),
    "spawn-join-cost": .sync(spawnJoinCost),
]

/// Nanoseconds per iteration of `body`, best of five rounds.
func nanosecondsPerIteration(_ iterations: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<5 {
        let start = nowMilliseconds()
        for _ in 0..<iterations { try body() }
        best = min(best, (nowMilliseconds() - start) * 1e6 / Double(iterations))
    }
    return best
}

final class MutexBox: @unchecked Sendable {
    let mutex = GreenMutex()
    var value = 0  // guarded by `mutex`
}

func lockedCost() throws {
    let n = intOption("iterations", 2_000_000)
    let locked = GreenLocked(0)
    let box = MutexBox()
    let stdMutex = Mutex(0)
    let report = GreenLocked([String]())
    try Kernel.run(KernelConfiguration(workers: 1)) {
        let a = try nanosecondsPerIteration(n) { try locked.withLock { $0 &+= 1 } }
        let b = try nanosecondsPerIteration(n) { try box.mutex.withLock { box.value &+= 1 } }
        let c = nanosecondsPerIteration(n) { stdMutex.withLock { $0 &+= 1 } }
        try report.withLock {
            $0 += ["green_greenlocked_ns=\(a)", "green_greenmutex_ns=\(b)", "green_std_mutex_ns=\(c)"]
        }
    }
    let d = try nanosecondsPerIteration(n) { try locked.withLock { $0 &+= 1 } }
    let e = nanosecondsPerIteration(n) { stdMutex.withLock { $0 &+= 1 } }
    for line in try report.withLock({ $0 }) { print(line) }
    print("os_greenlocked_ns=\(d)")
    print("os_std_mutex_ns=\(e)")
    print("OK")
}

func awaitCost() throws {
    let n = intOption("iterations", 20_000)
    try Kernel.run(KernelConfiguration(workers: 1)) {
        var sum = 0
        let ns = try nanosecondsPerIteration(n) { sum &+= try GreenThread.await { 1 } }
        check(sum == 5 * n, "sum \(sum)")
        print("await_us=\(ns / 1000)")
    }
    print("OK")
}

func spawnJoinCost() throws {
    let n = intOption("iterations", 100_000)
    try Kernel.run(KernelConfiguration(workers: 1)) {
        var sum = 0
        let ns = try nanosecondsPerIteration(n) { sum &+= try GreenThread.spawn { 1 }.join() }
        check(sum == 5 * n, "sum \(sum)")
        print("spawn_join_ns=\(ns)")
    }
    print("OK")
}
