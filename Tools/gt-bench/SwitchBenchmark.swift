// Yield ping-pong: two threads that take turns on one CPU, in ns per
// one-way switch (elapsed / (2 x rounds)).
//
//   GreenThreads:   one worker, two threads each calling GreenThread.yield();
//                   and two such threads per worker on every worker, in ns
//                   per yield per worker (the workers share the kernel lock:
//                   rates with 2 workers may not collapse against 1).
//   pthread yield:  two OS threads pinned to one CPU, each calling sched_yield.
//   pthread condvar: a token passed back and forth under a mutex and two
//                   condition variables, pinned to one CPU (a kernel context
//                   switch per pass) and unpinned (cross-core wake-ups).
//   Swift tasks:    two tasks each calling Task.yield() on the default pool.
//
// Yield with nobody waiting: one thread per worker (or per CPU), each
// calling yield in a loop with nothing else ready, in ns per call: what a
// cooperative loop that yields "just in case" pays.
//
//   GreenThreads:   one thread on each worker (the default count).
//   pthread:        one OS thread on each CPU calling sched_yield.
import GreenThreads
import Glibc

enum SwitchBenchmark {
    static let group = "yield ping-pong (one-way switch)"

    static func run(rounds: Int, reps: Int, progress: (String) -> Void) throws -> [Row] {
        var green: [Double] = [], pyield: [Double] = [], condOne: [Double] = [], condTwo: [Double] = [], tasks: [Double] = []
        var greenAlone: [Double] = [], pthreadAlone: [Double] = [], greenShared: [Double] = []
        let cpus = PThread.allowedCPUs()
        // Kernel switches cost microseconds: fewer rounds keep the run short.
        let osRounds = max(1000, rounds / 20)
        for rep in 0..<reps {
            progress("switch rep \(rep + 1)/\(reps)")
            settle()
            green.append(try greenYield(rounds: rounds))
            if cpus.count > 1 {
                settle()
                greenShared.append(try greenYieldShared(rounds: rounds, workers: cpus.count))
            }
            settle()
            pyield.append(pthreadYield(rounds: osRounds, cpu: cpus[0]))
            settle()
            condOne.append(pthreadCondvar(rounds: osRounds, cpus: [cpus[0]]))
            settle()
            if cpus.count > 1 { condTwo.append(pthreadCondvar(rounds: osRounds, cpus: Array(cpus.prefix(2)), split: true)) }
            settle()
            tasks.append(taskYield(rounds: rounds))
            settle()
            greenAlone.append(try greenYieldAlone(rounds: rounds, workers: cpus.count))
            settle()
            pthreadAlone.append(pthreadYieldAlone(rounds: osRounds, cpus: cpus))
        }
        var rows = [
            Row(group: group, runtime: "GreenThreads yield (1 worker)", metric: "ns", values: green, reference: true),
        ]
        if !greenShared.isEmpty {
            rows.append(Row(group: group, runtime: "GreenThreads yield, 2 threads per worker (\(cpus.count) workers)",
                            metric: "ns", values: greenShared))
        }
        rows += [
            Row(group: group, runtime: "pthread sched_yield (1 CPU)", metric: "ns", values: pyield),
            Row(group: group, runtime: "pthread condvar (1 CPU)", metric: "ns", values: condOne),
        ]
        if !condTwo.isEmpty {
            rows.append(Row(group: group, runtime: "pthread condvar (2 CPUs)", metric: "ns", values: condTwo))
        }
        rows.append(Row(group: group, runtime: "Swift tasks Task.yield", metric: "ns", values: tasks))
        let alone = "yield with nobody waiting (one thread per worker)"
        rows.append(Row(group: alone, runtime: "GreenThreads yield (\(cpus.count) workers)", metric: "ns",
                        values: greenAlone, reference: true))
        rows.append(Row(group: alone, runtime: "pthread sched_yield (\(cpus.count) CPUs)", metric: "ns",
                        values: pthreadAlone))
        return rows
    }

    /// Two threads per worker, each yielding `rounds / 2` times: ns per
    /// yield per worker (elapsed x workers / yields).
    static func greenYieldShared(rounds: Int, workers: Int) throws -> Double {
        try Kernel.run(KernelConfiguration(workers: workers)) {
            let each = rounds / 2
            let t0 = monotonicNanoseconds()
            let threads = try (0..<2 * workers).map { i in
                try GreenThread.spawn(name: "shared\(i)") { for _ in 0..<each { GreenThread.yield() } }
            }
            for t in threads { try t.join() }
            return Double(monotonicNanoseconds() - t0) * Double(workers) / Double(2 * workers * each)
        }
    }

    static func greenYieldAlone(rounds: Int, workers: Int) throws -> Double {
        try Kernel.run(KernelConfiguration(workers: workers)) {
            let t0 = monotonicNanoseconds()
            let threads = try (0..<workers).map { i in
                try GreenThread.spawn(name: "alone\(i)") { for _ in 0..<rounds { GreenThread.yield() } }
            }
            for t in threads { try t.join() }
            return Double(monotonicNanoseconds() - t0) / Double(rounds)
        }
    }

    static func pthreadYieldAlone(rounds: Int, cpus: [Int]) -> Double {
        let t0 = monotonicNanoseconds()
        let threads = cpus.map { cpu in
            PThread.start {
                PThread.pinCurrent(to: [cpu])
                for _ in 0..<rounds { sched_yield() }
            }!
        }
        for t in threads { PThread.join(t) }
        return Double(monotonicNanoseconds() - t0) / Double(rounds)
    }

    static func greenYield(rounds: Int) throws -> Double {
        try Kernel.run(KernelConfiguration(workers: 1)) {
            let t0 = monotonicNanoseconds()
            let a = try GreenThread.spawn(name: "ping") { for _ in 0..<rounds { GreenThread.yield() } }
            let b = try GreenThread.spawn(name: "pong") { for _ in 0..<rounds { GreenThread.yield() } }
            try a.join()
            try b.join()
            return Double(monotonicNanoseconds() - t0) / Double(2 * rounds)
        }
    }

    static func pthreadYield(rounds: Int, cpu: Int) -> Double {
        let start = PairStart()
        let body = {
            PThread.pinCurrent(to: [cpu])
            start.arrive()
            for _ in 0..<rounds { sched_yield() }
        }
        let t0 = monotonicNanoseconds()
        let a = PThread.start(body)!, b = PThread.start(body)!
        PThread.join(a)
        PThread.join(b)
        return Double(monotonicNanoseconds() - t0) / Double(2 * rounds)
    }

    private final class Token: @unchecked Sendable {
        let cond = PCondition()
        let other = PCondition()  // only its cond is used: one condvar per direction
        var turn = 0              // guarded by cond.mutex
    }

    static func pthreadCondvar(rounds: Int, cpus: [Int], split: Bool = false) -> Double {
        let token = Token()
        func player(_ me: Int, cpu: [Int]) -> () -> Void {
            return {
                PThread.pinCurrent(to: cpu)
                let mine = me == 0 ? token.cond.cond : token.other.cond
                let theirs = me == 0 ? token.other.cond : token.cond.cond
                pthread_mutex_lock(token.cond.mutex)
                for _ in 0..<rounds {
                    while token.turn != me { pthread_cond_wait(mine, token.cond.mutex) }
                    token.turn = 1 - me
                    pthread_cond_signal(theirs)
                }
                pthread_mutex_unlock(token.cond.mutex)
            }
        }
        let t0 = monotonicNanoseconds()
        let a = PThread.start(player(0, cpu: split ? [cpus[0]] : cpus))!
        let b = PThread.start(player(1, cpu: split ? [cpus[1]] : cpus))!
        PThread.join(a)
        PThread.join(b)
        return Double(monotonicNanoseconds() - t0) / Double(2 * rounds)
    }

    static func taskYield(rounds: Int) -> Double {
        runOnCooperativePool {
            let t0 = monotonicNanoseconds()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<2 { group.addTask { for _ in 0..<rounds { await Task.yield() } } }
            }
            return Double(monotonicNanoseconds() - t0) / Double(2 * rounds)
        }
    }
}

/// Both threads of a pair start their timed loop together.
final class PairStart: @unchecked Sendable {
    let cond = PCondition()
    var arrived = 0  // guarded by cond.mutex

    func arrive() {
        cond.locked {
            arrived += 1
            if arrived == 2 { cond.broadcast() }
            cond.wait(until: { arrived >= 2 })
        }
    }
}
