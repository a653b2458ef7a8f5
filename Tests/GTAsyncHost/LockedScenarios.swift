// GreenLocked: a value-owning mutex with priority inheritance, from green
// threads and plain OS threads.
//
// locked-counter: two workers; eight green threads and two OS threads each
//   add 1 to one GreenLocked<Int> 10,000 times, all at once: the total is
//   exact. A non-Sendable class inside the lock is mutated the same way.
// locked-inheritance: one worker. `low` (8) holds the lock and spawns
//   `high` (24), which waits for it: while it waits, low runs at 24;
//   after the release low is back at 8 and high got the lock.
// locked-green-waits-for-os-thread: one worker. An OS thread holds the lock
//   200 ms; the only green thread waits for it. Every worker idles with a
//   thread blocked, which is no deadlock: the OS thread releases, the
//   green thread gets the value the OS thread wrote.
// locked-os-waits-for-green: a green thread holds the lock 200 ms; an OS
//   thread waiting for it is woken by the release (a futex, not a poll):
//   it gets the lock within milliseconds of the release.
// locked-outside-kernel: no kernel at all; three OS threads share a count.
// locked-relock-throws: a thread that already holds the lock and asks for
//   it again gets `alreadyOwned` instead of waiting for itself forever, on
//   a green thread and on a plain OS thread alike.
import Foundation
import GreenThreads

let lockedScenarios: [String: Scenario] = [
    "locked-counter": .sync(lockedCounter),
    "locked-inheritance": .sync(lockedInheritance),
    "locked-green-waits-for-os-thread": .sync(lockedGreenWaitsForOSThread),
    "locked-os-waits-for-green": .sync(lockedOSWaitsForGreen),
    "locked-outside-kernel": .sync(lockedOutsideKernel),
    "locked-relock-throws": .sync(lockedRelockThrows),
]

/// A non-Sendable value: only GreenLocked makes sharing it legal.
final class Tally {
    var count = 0
    var log: [Int] = []
}

/// Starts an OS thread (not a green thread, not a task) running `body`.
func startOSThread(_ body: @escaping @Sendable () -> Void) {
    Thread(block: body).start()
}

/// Waits, from a green thread or an OS thread, until `counter` reaches `n`.
func waitUntil(_ counter: SharedCounter, reaches n: Int) {
    while counter.value < n { GreenThread.sleep(for: .milliseconds(1)) }
}

func lockedCounter() throws {
    let perThread = intOption("iterations", 10_000)
    let count = GreenLocked(0)
    let tally = GreenLocked(Tally())
    let osDone = SharedCounter()
    try Kernel.run(KernelConfiguration(workers: 2)) {
        for _ in 0..<2 {
            startOSThread {
                for i in 0..<perThread {
                    try! count.withLock { $0 += 1 }
                    try! tally.withLock { $0.count += 1; if i % 1000 == 0 { $0.log.append(i) } }
                }
                osDone.increment()
            }
        }
        let greens = try (0..<8).map { _ in
            try GreenThread.spawn {
                for i in 0..<perThread {
                    try count.withLock { $0 += 1 }
                    try tally.withLock { $0.count += 1; if i % 1000 == 0 { $0.log.append(i) } }
                }
            }
        }
        for g in greens { try g.join() }
        waitUntil(osDone, reaches: 2)
    }
    let total = try count.withLock { $0 }
    let tallied = try tally.withLock { $0.count }
    check(total == 10 * perThread, "count \(total), expected \(10 * perThread)")
    check(tallied == 10 * perThread, "tally \(tallied), expected \(10 * perThread)")
    print("total=\(total)")
    print("OK")
}

func lockedInheritance() throws {
    let lock = GreenLocked([String](), name: "L")
    try Kernel.run(KernelConfiguration(workers: 1)) {
        let low = try GreenThread.spawn(name: "low", priority: .low) { () -> (Int, Int) in
            var high: JoinHandle<Void>?
            let inside = try lock.withLock { log -> Int in
                log.append("low")
                let h = try GreenThread.spawn(name: "high", priority: .high) {
                    try lock.withLock { $0.append("high") }
                }
                high = h
                while h.thread.waitingOn == nil { GreenThread.yield() }
                return GreenThread.current.effectivePriority.level
            }
            let after = GreenThread.current.effectivePriority.level
            try high?.join()
            return (inside, after)
        }
        let (inside, after) = try low.join()
        print("low_inside=\(inside)")
        print("low_after=\(after)")
        check(inside == Priority.high.level, "low ran at \(inside) while high waited")
        check(after == Priority.low.level, "low kept \(after) after the release")
    }
    let order = try lock.withLock { $0 }
    check(order == ["low", "high"], "order \(order)")
    print("OK")
}

func lockedGreenWaitsForOSThread() throws {
    let lock = GreenLocked("initial")
    let holding = SharedFlag()
    try Kernel.run(KernelConfiguration(workers: 1)) {
        startOSThread {
            try! lock.withLock { value in
                holding.set()
                usleep(200_000)
                value = "written by the OS thread"
            }
        }
        while !holding.isSet { GreenThread.sleep(for: .milliseconds(1)) }
        let seen = try lock.withLock { $0 }
        print("seen=\(seen)")
        check(seen == "written by the OS thread", "green thread saw '\(seen)'")
    }
    print("OK")
}

func lockedOSWaitsForGreen() throws {
    let lock = GreenLocked(0.0)
    let holding = SharedFlag()
    let osDone = SharedCounter()
    let waited = GreenLocked(0.0)
    try Kernel.run(KernelConfiguration(workers: 1)) {
        let holder = try GreenThread.spawn(name: "holder") {
            try lock.withLock { releasedAt in
                holding.set()
                GreenThread.sleep(for: .milliseconds(200))
                releasedAt = nowMilliseconds()
            }
        }
        while !holding.isSet { GreenThread.yield() }
        startOSThread {
            let gotAt = nowMilliseconds()
            let releasedAt = try! lock.withLock { $0 }
            let lateness = nowMilliseconds() - max(releasedAt, gotAt)
            try! waited.withLock { $0 = lateness }
            osDone.increment()
        }
        try holder.join()
        waitUntil(osDone, reaches: 1)
    }
    let lateness = try waited.withLock { $0 }
    print("os_wake_after_release_ms=\(lateness)")
    check(lateness < 50, "the OS thread got the lock \(lateness) ms after the release")
    print("OK")
}

func lockedOutsideKernel() throws {
    let count = GreenLocked(0)
    let done = SharedCounter()
    for _ in 0..<3 {
        startOSThread {
            for _ in 0..<20_000 { try! count.withLock { $0 += 1 } }
            done.increment()
        }
    }
    waitUntil(done, reaches: 3)
    let total = try count.withLock { $0 }
    check(total == 60_000, "count \(total)")
    print("total=\(total)")
    print("OK")
}

/// The error a nested withLock of `lock` throws, as text.
func relockError(_ lock: GreenLocked<Int>) -> String {
    do {
        try lock.withLock { _ in try lock.withLock { _ in } }
        return "none"
    } catch {
        return "\(error)"
    }
}

func lockedRelockThrows() throws {
    let lock = GreenLocked(0, name: "R")
    let onOSThread = relockError(lock)
    print("os_thread=\(onOSThread)")
    check(onOSThread.contains("which it already holds"), onOSThread)
    try Kernel.run(KernelConfiguration(workers: 1)) {
        let onGreen = relockError(lock)
        print("green_thread=\(onGreen)")
        check(onGreen.contains("which it already holds"), onGreen)
    }
    let after = try lock.withLock { $0 }
    check(after == 0, "the lock is still usable")
    print("OK")
}
