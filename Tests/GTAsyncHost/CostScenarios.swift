// Costs, for docs/async.md (run on a release build; nothing is asserted
// beyond the results being right):
// locked-cost: nanoseconds per uncontended withLock of GreenLocked, of
//   GreenMutex.withLock and of Synchronization.Mutex on a green thread,
//   and of GreenLocked and Mutex on a plain OS thread.
// spawn-join-cost: nanoseconds per spawn and join of a thread returning an
//   Int, one at a time (the join path: completion, cancellable join).
// await-cost: microseconds per GreenThread.await of an operation that
//   returns at once (a Task's creation, run and the wake-up), one thread.
// wait-handoff-cost: nanoseconds per hand-off of a turn between two green
//   threads on one worker through untimed waits: a GreenCondition (wait
//   and signal under its mutex), and two GreenSemaphores, once with wait()
//   and once with waitUnlessCancelled() (the cancellation hook: a closure
//   per blocking wait).
import GreenThreads
import Synchronization

let costScenarios: [String: Scenario] = [
    "locked-cost": .sync(lockedCost),
    "await-cost": .sync(awaitCost),
    "spawn-join-cost": .sync(spawnJoinCost),
    "wait-handoff-cost": .sync(waitHandoffCost),
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

/// A turn two threads pass back and forth; `value` is guarded by `mutex`.
final class Turn: @unchecked Sendable {
    let mutex = GreenMutex()
    var value = 0  // guarded by `mutex`
}

func waitHandoffCost() throws {
    let n = intOption("iterations", 200_000)
    try Kernel.run(KernelConfiguration(workers: 1)) {
        /// Nanoseconds per hand-off: `play(me)` runs n rounds in each of
        /// two threads, one hand-off per round each; best of three runs.
        func handoffs(_ play: @escaping @Sendable (Int) throws -> Void) throws -> Double {
            var best = Double.infinity
            for _ in 0..<3 {
                let start = nowMilliseconds()
                let players = try (0..<2).map { me in try GreenThread.spawn { try play(me) } }
                for p in players { try p.join() }
                best = min(best, (nowMilliseconds() - start) * 1e6 / Double(2 * n))
            }
            return best
        }
        let condition = GreenCondition()
        let turn = Turn()
        let conditionNs = try handoffs { me in
            for _ in 0..<n {
                try turn.mutex.withLock {
                    while turn.value != me { try condition.wait(turn.mutex) }
                    turn.value = 1 - me
                }
                condition.signal()
            }
        }
        // Player 0 starts: its semaphore holds the first permit.
        let plainTurns = [GreenSemaphore(value: 1), GreenSemaphore(value: 0)]
        let plainNs = try handoffs { me in
            for _ in 0..<n {
                plainTurns[me].wait()
                plainTurns[1 - me].signal()
            }
        }
        let cancellableTurns = [GreenSemaphore(value: 1), GreenSemaphore(value: 0)]
        let cancellableNs = try handoffs { me in
            for _ in 0..<n {
                try cancellableTurns[me].waitUnlessCancelled()
                cancellableTurns[1 - me].signal()
            }
        }
        print("condition_wait_handoff_ns=\(conditionNs)")
        print("semaphore_wait_handoff_ns=\(plainNs)")
        print("semaphore_wait_unless_cancelled_handoff_ns=\(cancellableNs)")
    }
    print("OK")
}
