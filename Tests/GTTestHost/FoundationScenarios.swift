// Scenarios for the foundation: spawn/join, priorities, round-robin, sleep,
// many threads, stacks, overflow, invalid input, deadlock, FP state.
import CGreenCore
import GreenThreads
import Glibc

/// Hides a value from the optimizer (so FP operations happen at run time,
/// under the thread's rounding mode).
@inline(never) func opaque<T>(_ x: T) -> T { x }

struct Boom: Error, Equatable { var code: Int }

/// A one-worker cooperative kernel: ordering tests need determinism.
let cooperative = KernelConfiguration(workers: 1, preemption: false)

let foundationScenarios: [String: Scenario] = [
    "spawn-join": {
        let value = try Kernel.run(cooperative) { () -> Int in
            let a = try GreenThread.spawn(name: "adder") { (1...100).reduce(0, +) }
            let b = try GreenThread.spawn { () -> Int in throw Boom(code: 7) }
            check(a.thread.name == "adder", "name \(a.thread.name)")
            check(b.thread.name == "thread-\(b.thread.id)", "default name \(b.thread.name)")
            do {
                _ = try b.join()
                check(false, "join should rethrow")
            } catch let e as Boom {
                check(e.code == 7, "error code \(e.code)")
            }
            // A second join of a finished thread returns the same result.
            let first = try a.join(), second = try a.join()
            check(first == 5050 && second == 5050, "join result")
            check(a.isFinished && a.thread.state == .finished, "finished state")
            return try a.join()
        }
        check(value == 5050, "Kernel.run result \(value)")
        // The body's error comes out of Kernel.run.
        do {
            try Kernel.run(cooperative) { throw Boom(code: 9) }
            check(false, "Kernel.run should rethrow")
        } catch let e as Boom {
            check(e.code == 9, "body error")
        }
        print("OK")
    },

    "priority-order": {
        // Preemptive kernel, one worker, a slice longer than the test: main
        // runs at .normal. A higher thread preempts it at spawn; an equal one
        // waits for main to block; a lower one runs last.
        let log = Log()
        try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .seconds(5))) {
            let low = try GreenThread.spawn(name: "low", priority: .low) { log.add("low") }
            let high = try GreenThread.spawn(name: "high", priority: .high) { log.add("high") }
            let normal = try GreenThread.spawn(name: "normal", priority: .normal) { log.add("normal") }
            log.add("main")
            let top = try GreenThread.spawn(name: "top", priority: .highest) { log.add("top") }
            _ = try [low, high, normal, top].map { try $0.join() }
        }
        print("order=\(log.all.joined(separator: ","))")
        check(log.all == ["high", "main", "top", "normal", "low"], "order \(log.all)")
        print("OK")
    },

    "priority-order-cooperative": {
        // Cooperative kernel: no switch until main blocks in join; then the
        // ready threads run strictly by priority.
        let log = Log()
        try Kernel.run(cooperative) {
            let handles = try [(Priority.low, "low"), (.high, "high"), (.normal, "normal"), (.highest, "top")].map { (p, tag) in
                try GreenThread.spawn(name: tag, priority: p) { log.add(tag) }
            }
            log.add("main")
            for h in handles { try h.join() }
        }
        check(log.all == ["main", "top", "high", "normal", "low"], "order \(log.all)")
        print("OK")
    },

    "round-robin": {
        let log = Log()
        try Kernel.run(cooperative) {
            let handles = try ["a", "b", "c"].map { (tag: String) in
                try GreenThread.spawn(name: tag) {
                    for i in 0..<3 { log.add("\(tag)\(i)"); GreenThread.yield() }
                }
            }
            for h in handles { try h.join() }
        }
        let expected = ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
        check(log.all == expected, "round-robin order \(log.all)")
        print("OK")
    },

    "sleep-order": {
        let log = Log()
        let clock = ContinuousClock()
        let elapsed = try Kernel.run(KernelConfiguration(workers: 2)) { () -> Duration in
            let start = clock.now
            let handles = try [60, 20, 40].map { ms in
                try GreenThread.spawn(name: "sleep\(ms)") {
                    GreenThread.sleep(for: .milliseconds(ms))
                    log.add("\(ms)")
                }
            }
            for h in handles { try h.join() }
            return clock.now - start
        }
        check(log.all == ["20", "40", "60"], "wake order \(log.all)")
        check(elapsed >= .milliseconds(60), "slept at least 60 ms: \(elapsed)")
        print("elapsed_ms=\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)")
        print("OK")
    },

    "many-threads": {
        // N threads alive at once: each parks on a yield until all exist.
        let n = intOption("count", 100_000)
        try Kernel.run(KernelConfiguration(workers: 1, preemption: false)) {
            let started = Counter()
            var handles: [JoinHandle<Int>] = []
            handles.reserveCapacity(n)
            for i in 0..<n {
                handles.append(try GreenThread.spawn(stackSize: 32 * 1024) { () -> Int in
                    started.add()
                    GreenThread.yield()
                    return i
                })
            }
            var sum = 0
            for h in handles { sum += try h.join() }
            check(started.count == n, "all \(n) threads ran: \(started.count)")
            check(sum == n * (n - 1) / 2, "results \(sum)")
        }
        print("carved=\(Kernel.stackStatistics.stacksCarved)")
        print("OK")
    },

    "stack-reuse": {
        try Kernel.run(cooperative) {
            for _ in 0..<2000 { _ = try GreenThread.spawn { 1 }.join() }
        }
        let carvedAfterFirst = Kernel.stackStatistics.stacksCarved
        try Kernel.run(cooperative) {
            for _ in 0..<2000 { _ = try GreenThread.spawn { 1 }.join() }
        }
        let stats = Kernel.stackStatistics
        print("carved=\(stats.stacksCarved) cached=\(stats.stacksCached)")
        // Sequential threads reuse one cached stack (plus main's).
        check(carvedAfterFirst <= 4, "first kernel carved \(carvedAfterFirst) stacks")
        check(stats.stacksCarved == carvedAfterFirst, "second kernel carved new stacks: \(stats.stacksCarved)")
        print("OK")
    },

    "overflow": {
        @inline(never) func recurse(_ depth: Int, _ sink: UnsafeMutablePointer<Int>) -> Int {
            var frame = (depth, depth, depth, depth, depth, depth, depth, depth)
            return withUnsafeMutablePointer(to: &frame) { p in
                sink.pointee &+= p.pointee.0
                return depth == 0 ? 0 : recurse(depth - 1, sink) &+ p.pointee.7
            }
        }
        try Kernel.run(cooperative) {
            let t = try GreenThread.spawn(name: "deep-recursion", stackSize: 64 * 1024) { () -> Int in
                let sink = UnsafeMutablePointer<Int>.allocate(capacity: 1)
                sink.initialize(to: 0)
                return recurse(1_000_000, sink)
            }
            _ = try t.join()
        }
        print("returned without overflowing")
    },

    "invalid-input": {
        do { _ = try Priority(level: 32); check(false, "32 accepted") } catch let e as GreenThreadError {
            check(e == .invalidPriority(32), "\(e)")
            print("priority: \(e)")
        }
        do { _ = try Priority(level: -1); check(false, "-1 accepted") } catch GreenThreadError.invalidPriority {}
        let top = try Priority(level: 31)
        check(top == .highest && Priority.low < .normal && Priority.normal < .high, "priority order")
        do { _ = try GreenThread.spawn { 1 }; check(false, "spawn outside kernel") } catch let e as GreenThreadError {
            print("outside: \(e)")
        }
        GreenThread.yield()                       // outside: sched_yield
        GreenThread.sleep(for: .milliseconds(1))  // outside: nanosleep
        check(!GreenThread.isInKernel, "isInKernel outside")
        do {
            try Kernel.run(KernelConfiguration(workers: 0)) {}
            check(false, "0 workers accepted")
        } catch let e as KernelError { print("workers: \(e)") }
        try Kernel.run(cooperative) {
            check(GreenThread.isInKernel, "isInKernel inside")
            do { _ = try GreenThread.spawn(stackSize: 0) { 1 }; check(false, "zero stack") } catch let e as GreenThreadError {
                print("stack: \(e)")
            }
            do { _ = try GreenThread.spawn(stackSize: 1000) { 1 }; check(false, "tiny stack") } catch GreenThreadError.invalidStackSize {}
            do { try Kernel.run { }; check(false, "nested kernel") } catch let e as KernelError {
                print("nested: \(e)")
            }
            // A thread joining itself is refused.
            let box = Log()
            let selfHandle = Shared<JoinHandle<Void>?>(nil)
            let h = try GreenThread.spawn {
                GreenThread.yield()
                do { try selfHandle.value!.join() } catch let e as GreenThreadError { box.add("\(e)") } catch {}
            }
            selfHandle.value = h
            try h.join()
            check(box.all.count == 1 && box.all[0].contains("join itself"), "self join: \(box.all)")
            print("self-join: \(box.all[0])")
        }
        // Kernels run in sequence in one process.
        let one = try Kernel.run(cooperative) { 1 }, two = try Kernel.run(cooperative) { 2 }
        check(one == 1 && two == 2, "sequential kernels")
        print("OK")
    },

    "current-outside": {
        print(GreenThread.current.id)
    },

    "deadlock": {
        do {
            try Kernel.run(KernelConfiguration(workers: 2)) {
                let second = Shared<JoinHandle<Void>?>(nil)
                let first = try GreenThread.spawn(name: "first") {
                    GreenThread.sleep(for: .milliseconds(10))
                    try second.value!.join()
                }
                second.value = try GreenThread.spawn(name: "second") { try first.join() }
                try first.join()
            }
            check(false, "deadlock not detected")
        } catch let KernelError.deadlock(report) {
            print(report)
            check(report.cycles.count == 1 && report.cycles[0].count == 2, "one cycle of two: \(report.cycles)")
            check(report.threads.count == 3, "three live threads: \(report.threads.count)")
        }
        // The process can run another kernel afterwards.
        let after = try Kernel.run(cooperative) { 42 }
        check(after == 42, "kernel after deadlock")
        print("OK")
    },

    "fp-state": {
        // snprintf with doubles and long doubles on green stacks (alignment),
        // and per-thread rounding modes kept across switches (MXCSR/x87/FPCR).
        try Kernel.run(cooperative) {
            let modes: [Int32] = [FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO]
            let handles = try modes.map { mode in
                try GreenThread.spawn(name: "round-\(mode)") { () -> String in
                    fesetround(mode)
                    var out = ""
                    for i in 0..<50 {
                        GreenThread.yield()
                        check(fegetround() == mode, "rounding mode lost: \(fegetround()) != \(mode)")
                        var buf = [CChar](repeating: 0, count: 64)
                        _ = withVaList([Double(i) + 0.125, 2.5]) { vsnprintf(&buf, 64, "%.3f %.1f", $0) }
                        out = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                        check(out == "\(i).125 2.5", "snprintf gave \(out)")
                        let third = opaque(1.0) / opaque(3.0)
                        let expected: Double = mode == FE_UPWARD ? 0.33333333333333337 : 0.3333333333333333
                        check(third == expected || mode == FE_TONEAREST, "division rounding \(third)")
                    }
                    fesetround(FE_TONEAREST)
                    return out
                }
            }
            for h in handles { _ = try h.join() }
            var buf = [CChar](repeating: 0, count: 64)
            _ = withVaList([3.25]) { vsnprintf(&buf, 64, "%.2f", $0) }
            check(buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } == "3.25", "main snprintf")
        }
        print("OK")
    },

    "thread-local": {
        let local = try GreenThreadLocal<Int>(default: -1)
        local.value = 99  // this OS thread's own value
        try Kernel.run(KernelConfiguration(workers: 2)) {
            check(local.value == -1, "main starts at the default")
            let handles = try (0..<8).map { i in
                try GreenThread.spawn {
                    local.value = i
                    for _ in 0..<20 {
                        GreenThread.yield()
                        check(local.value == i, "thread \(i) sees \(local.value)")
                    }
                }
            }
            for h in handles { try h.join() }
            check(local.value == -1, "main unaffected")
        }
        check(local.value == 99, "OS-thread value kept: \(local.value)")
        print("OK")
    },

    "multi-worker": {
        let workers = intOption("workers", 2)
        let sum = try Kernel.run(KernelConfiguration(workers: workers)) { () -> Int in
            let handles = try (0..<200).map { i in
                try GreenThread.spawn(priority: try Priority(level: i % 32)) { () -> Int in
                    var x = 0
                    for j in 0..<2000 { x &+= j; if j % 500 == 0 { GreenThread.yield() } }
                    GreenThread.sleep(for: .microseconds(100))
                    return x &+ i
                }
            }
            return try handles.reduce(0) { $0 + (try $1.join()) }
        }
        check(sum == 200 * 1999000 + 199 * 200 / 2, "sum \(sum)")
        print("OK")
    },

    "priority-change": {
        let log = Log()
        try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .seconds(5))) {
            let a = try GreenThread.spawn(name: "a", priority: .low) { log.add("a") }
            let b = try GreenThread.spawn(name: "b", priority: .low) { log.add("b") }
            // Raising b above main makes it run at once, before a.
            b.thread.setPriority(.high)
            log.add("main")
            check(b.thread.priority == .high && b.thread.effectivePriority == .high, "b's priority")
            try a.join()
            try b.join()
            // Lowering itself below a ready thread yields to it.
            let c = try GreenThread.spawn(name: "c", priority: .normal) { log.add("c") }
            GreenThread.current.setPriority(.low)
            log.add("main-low")
            try c.join()
        }
        check(log.all == ["b", "main", "a", "c", "main-low"], "order \(log.all)")
        print("OK")
    },
]

/// Measures how much stack a call needs on a green thread: paints the
/// region below the caller's frame, runs `body`, and finds the deepest byte
/// it changed. Used to justify the default stack size (docs/architecture.md).
@inline(never) func measureStackUse(_ body: () -> Void) -> Int {
    let gap = 512, window = 40 * 1024
    let bottom = gt_stack_paint(gap, window)!
    body()
    return gap + gt_stack_paint_depth(bottom, window)
}

let stackScenarios: [String: Scenario] = [
    "stack-depth": {
        // Cold first use of each operation, on a 128 KiB green stack.
        let results = try Kernel.run(cooperative) {
            try GreenThread.spawn(stackSize: 128 * 1024) { () -> [(String, Int)] in
                var results: [(String, Int)] = []
                let x = 42, y = 3.5
                results.append(("print with interpolation", measureStackUse { print("value \(x) and \(y)") }))
                results.append(("dictionary inserts", measureStackUse {
                    var d: [String: [Int]] = [:]
                    for i in 0..<100 { d["k\(i)"] = [i] }
                    _ = d.count
                }))
                results.append(("string sort", measureStackUse {
                    var a = (0..<200).map { "s\(($0 * 7919) % 200)" }
                    a.sort()
                    _ = a.first
                }))
                return results
            }.join()
        }
        for (what, bytes) in results { print("stack_\(String(what.map { $0 == " " ? "_" : $0 }))=\(bytes)") }
        print("OK")
    },
]

let microScenarios: [String: Scenario] = [
    "yield-pingpong": {
        // Two threads yielding to each other on one worker: ns per switch.
        let rounds = intOption("rounds", 2_000_000)
        let ns = try Kernel.run(KernelConfiguration(workers: 1, preemption: option("preemption") == "on")) { () -> Double in
            let a = try GreenThread.spawn { for _ in 0..<rounds { GreenThread.yield() } }
            let b = try GreenThread.spawn { for _ in 0..<rounds { GreenThread.yield() } }
            let start = gt_clock_monotonic_ns()
            try a.join()
            try b.join()
            return Double(gt_clock_monotonic_ns() - start) / Double(2 * rounds)
        }
        print("ns_per_switch=\(ns)")
        print("OK")
    },
]
