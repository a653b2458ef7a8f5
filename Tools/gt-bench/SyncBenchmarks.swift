// Mutex and channel workloads.
//
// Mutex, uncontended: one thread, `iterations` lock+unlock pairs on a lock
// nobody else touches (ns per pair).
//   GreenThreads: GreenMutex lock()/unlock() on one worker.
//   peers: pthread_mutex_t, Synchronization.Mutex.withLock, on an OS thread.
// Mutex, contended: two threads each do iterations/2 lock, increment,
// unlock on one lock (wall time / all pairs): throughput under contention,
// the definition Tools/peers uses.
//   GreenThreads: two green threads on two workers, one GreenMutex.
//   peers: two OS threads on pthread_mutex_t, or on Synchronization.Mutex.
// Channel ping-pong: a value bounced between two threads through a pair of
// channels, ns per one-way hand-off.
//   GreenThreads: two rendezvous GreenChannels (capacity 0), one worker;
//   and the same on every worker (the spinning processor must leave each
//   hand-off to the waker's: rates with 2 workers may not collapse).
//   peer: two AsyncStreams between two tasks on the default pool.
import GreenThreads
import Glibc
import Synchronization

enum SyncBenchmarks {
    static let uncontendedGroup = "mutex, uncontended lock+unlock"
    static let contendedGroup = "mutex, contended (2 threads)"
    static let channelGroup = "channel ping-pong (one-way hand-off)"

    static func runMutex(iterations: Int, reps: Int, progress: (String) -> Void) throws -> [Row] {
        var gu: [Double] = [], gc: [Double] = [], pu: [Double] = [], pc: [Double] = [], su: [Double] = [], sc: [Double] = []
        _ = try greenUncontended(iterations / 10)  // warm-up
        for rep in 0..<reps {
            progress("mutex rep \(rep + 1)/\(reps)")
            settle()
            gu.append(try greenUncontended(iterations))
            settle()
            pu.append(pthreadUncontended(iterations))
            settle()
            su.append(swiftMutexUncontended(iterations))
            settle()
            gc.append(try greenContended(iterations / 4))
            settle()
            pc.append(pthreadContended(iterations / 4))
            settle()
            sc.append(swiftMutexContended(iterations / 4))
        }
        let workers = KernelConfiguration.usableCPUs
        return [
            Row(group: uncontendedGroup, runtime: "GreenMutex", metric: "ns/op", values: gu, reference: true),
            Row(group: uncontendedGroup, runtime: "pthread_mutex", metric: "ns/op", values: pu),
            Row(group: uncontendedGroup, runtime: "Synchronization.Mutex", metric: "ns/op", values: su),
            Row(group: contendedGroup, runtime: "GreenMutex, 2 green threads on \(workers) workers", metric: "ns/op",
                values: gc, reference: true),
            Row(group: contendedGroup, runtime: "pthread_mutex, 2 OS threads", metric: "ns/op", values: pc),
            Row(group: contendedGroup, runtime: "Synchronization.Mutex, 2 OS threads", metric: "ns/op", values: sc),
        ]
    }

    static func runChannel(rounds: Int, reps: Int, progress: (String) -> Void) throws -> [Row] {
        var green: [Double] = [], greenAll: [Double] = [], stream: [Double] = []
        let workers = KernelConfiguration.usableCPUs
        for rep in 0..<reps {
            progress("channel rep \(rep + 1)/\(reps)")
            settle()
            green.append(try greenChannelPingPong(rounds, workers: 1))
            if workers > 1 {
                settle()
                greenAll.append(try greenChannelPingPong(rounds, workers: workers))
            }
            settle()
            stream.append(asyncStreamPingPong(max(1000, rounds / 10)))
        }
        var rows = [
            Row(group: channelGroup, runtime: "GreenChannel rendezvous (1 worker)", metric: "ns", values: green, reference: true),
        ]
        if workers > 1 {
            rows.append(Row(group: channelGroup, runtime: "GreenChannel rendezvous (\(workers) workers)", metric: "ns",
                            values: greenAll))
        }
        rows.append(Row(group: channelGroup, runtime: "AsyncStream between two tasks", metric: "ns", values: stream))
        return rows
    }

    // MARK: GreenThreads

    static func greenUncontended(_ iterations: Int) throws -> Double {
        try Kernel.run(KernelConfiguration(workers: 1)) {
            let m = GreenMutex(name: "bench")
            let t0 = monotonicNanoseconds()
            for _ in 0..<iterations {
                try m.lock()
                try m.unlock()
            }
            return Double(monotonicNanoseconds() - t0) / Double(iterations)
        }
    }

    private final class GreenCounter: @unchecked Sendable {
        let mutex = GreenMutex(name: "bench")
        var value = 0  // guarded by mutex
    }

    static func greenContended(_ iterations: Int) throws -> Double {
        try Kernel.run(KernelConfiguration(workers: KernelConfiguration.usableCPUs)) {
            let c = GreenCounter()
            let t0 = monotonicNanoseconds()
            let handles = try (0..<2).map { i in
                try GreenThread.spawn(name: "locker\(i)") {
                    for _ in 0..<iterations / 2 {
                        try c.mutex.lock()
                        c.value &+= 1
                        try c.mutex.unlock()
                    }
                }
            }
            for h in handles { try h.join() }
            let elapsed = monotonicNanoseconds() - t0
            precondition(c.value == iterations / 2 * 2, "GreenMutex lost an increment: \(c.value)")
            return Double(elapsed) / Double(iterations)
        }
    }

    static func greenChannelPingPong(_ rounds: Int, workers: Int) throws -> Double {
        try Kernel.run(KernelConfiguration(workers: workers)) {
            let ping = GreenChannel<Int>(capacity: 0), pong = GreenChannel<Int>(capacity: 0)
            let t0 = monotonicNanoseconds()
            let echo = try GreenThread.spawn(name: "echo") {
                while let v = ping.receive() { try pong.send(v) }
            }
            for i in 0..<rounds {
                try ping.send(i)
                _ = pong.receive()
            }
            ping.close()
            try echo.join()
            return Double(monotonicNanoseconds() - t0) / Double(2 * rounds)
        }
    }

    // MARK: Peers: pthread_mutex and Synchronization.Mutex on OS threads

    static func pthreadUncontended(_ iterations: Int) -> Double {
        let m = PCondition()
        let t0 = monotonicNanoseconds()
        for _ in 0..<iterations {
            pthread_mutex_lock(m.mutex)
            pthread_mutex_unlock(m.mutex)
        }
        return Double(monotonicNanoseconds() - t0) / Double(iterations)
    }

    private final class Counter: @unchecked Sendable {
        let m = PCondition()
        var value = 0  // guarded by m.mutex
        let swiftMutex = Mutex(0)
    }

    static func pthreadContended(_ iterations: Int) -> Double {
        let c = Counter()
        let start = PairStart()
        let body = {
            start.arrive()
            for _ in 0..<iterations / 2 {
                pthread_mutex_lock(c.m.mutex)
                c.value &+= 1
                pthread_mutex_unlock(c.m.mutex)
            }
        }
        let t0 = monotonicNanoseconds()
        let a = PThread.start(body)!, b = PThread.start(body)!
        PThread.join(a)
        PThread.join(b)
        return Double(monotonicNanoseconds() - t0) / Double(iterations)
    }

    static func swiftMutexUncontended(_ iterations: Int) -> Double {
        let m = Mutex(0)
        let t0 = monotonicNanoseconds()
        for _ in 0..<iterations { m.withLock { $0 &+= 1 } }
        return Double(monotonicNanoseconds() - t0) / Double(iterations)
    }

    static func swiftMutexContended(_ iterations: Int) -> Double {
        let c = Counter()
        let start = PairStart()
        let body = {
            start.arrive()
            for _ in 0..<iterations / 2 { c.swiftMutex.withLock { $0 &+= 1 } }
        }
        let t0 = monotonicNanoseconds()
        let a = PThread.start(body)!, b = PThread.start(body)!
        PThread.join(a)
        PThread.join(b)
        return Double(monotonicNanoseconds() - t0) / Double(iterations)
    }

    // MARK: Peer: AsyncStream ping-pong between two tasks

    static func asyncStreamPingPong(_ rounds: Int) -> Double {
        runOnCooperativePool {
            let (toPong, pingOut) = AsyncStream<Int>.makeStream(bufferingPolicy: .unbounded)
            let (toPing, pongOut) = AsyncStream<Int>.makeStream(bufferingPolicy: .unbounded)
            let t0 = monotonicNanoseconds()
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    var it = toPong.makeAsyncIterator()
                    while let v = await it.next() {
                        pongOut.yield(v)
                        if v == rounds { break }
                    }
                    pongOut.finish()
                }
                group.addTask {
                    var it = toPing.makeAsyncIterator()
                    for i in 1...rounds {
                        pingOut.yield(i)
                        _ = await it.next()
                    }
                    pingOut.finish()
                }
            }
            return Double(monotonicNanoseconds() - t0) / Double(2 * rounds)
        }
    }
}
