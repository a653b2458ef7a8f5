// Scenarios for the debug area (see main.swift): stack traces of parked,
// preempted and running threads, stack high-water marks, deadlock reports,
// crash and SIGQUIT dumps, a kill(2)-sent SIGSEGV/SIGBUS, and long-running
// targets for gt-ps.
//
// The functions threads park or spin in are named (debug...) and
// @inline(never), and do work after each call, so the calls are neither
// inlined nor tail calls: each stays a frame that the traces must show.
import CGreenCore
import GreenThreads
import GTSnapshot
import Glibc
import Synchronization

let debugRelease = Atomic<Bool>(false)
let debugSink = Atomic<Int>(0)

@inline(never) func debugParkOuter() {
    debugParkMiddle()
    debugSink.add(1, ordering: .relaxed)
}

@inline(never) func debugParkMiddle() {
    debugParkInner()
    debugSink.add(1, ordering: .relaxed)
}

/// Sleeps in short naps until `debugRelease`: parked (sleeping) almost always.
@inline(never) func debugParkInner() {
    while !debugRelease.load(ordering: .relaxed) { GreenThread.sleep(for: .milliseconds(20)) }
    debugSink.add(1, ordering: .relaxed)
}

/// A stop flag read through a local reference: in a debug build each read
/// of a global calls its accessor (and swift_once), which would put calls,
/// and deferred preemptions, into the spin loop.
final class DebugFlag: Sendable {
    let raised = Atomic<Bool>(false)
}
let debugStopFlag = DebugFlag()

/// A loop without calls, until `debugStopFlag` is raised.
@inline(never) func debugSpinUntilStopped() -> Int {
    let flag = debugStopFlag
    var n = 0
    while !flag.raised.load(ordering: .relaxed) { n &+= 1 }
    return n
}

@inline(never) func debugCurrentOuter() -> StackTrace {
    let t = debugCurrentInner()
    debugSink.add(1, ordering: .relaxed)
    return t
}

@inline(never) func debugCurrentInner() -> StackTrace {
    let t = GreenThread.stackTrace()
    debugSink.add(1, ordering: .relaxed)
    return t
}

/// Recursion with about 1 KiB of stack per level.
@inline(never) func debugRecurse(_ depth: Int) -> Int {
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1000) { buffer in
        buffer.initialize(repeating: UInt8(truncatingIfNeeded: depth))
        return depth == 0 ? Int(buffer[999]) : debugRecurse(depth - 1) &+ Int(buffer[depth % 1000])
    }
}

@inline(never) func debugJoinPartner(_ handle: () -> JoinHandle<Void>?) throws {
    GreenThread.sleep(for: .milliseconds(20))  // let the partner start
    try handle()!.join()
    debugSink.add(1, ordering: .relaxed)
}

@inline(never) func debugCrashNow(_ how: String) {
    debugSink.add(1, ordering: .relaxed)
    switch how {
    case "abort": abort()
    case "trap": fatalError("debugCrashNow asked to trap")
    default: UnsafeMutablePointer<Int>(bitPattern: 8)!.pointee = 42  // SIGSEGV, not on a guard
    }
    debugSink.add(1, ordering: .relaxed)
}

/// Holds `m` and burns CPU until `debugStop`, yielding now and then.
@inline(never) func debugHoldAndSpin(_ m: GreenMutex) throws {
    try m.lock()
    while !debugStopFlag.raised.load(ordering: .relaxed) { _ = debugSpinFor(microseconds: 200) }
    try m.unlock()
}

@inline(never) func debugSpinFor(microseconds: Int64) -> Int {
    let end = gt_clock_monotonic_ns() + microseconds * 1000
    var n = 0
    while gt_clock_monotonic_ns() < end { n &+= 1 }
    return n
}

/// Polls for the test's stop file (created when it is done with us).
@inline(never) func debugWaitForStopFile() {
    let path = option("stop-file") ?? "/nonexistent"
    while access(path, F_OK) != 0 { GreenThread.sleep(for: .milliseconds(25)) }
}

/// Takes snapshots until `predicate` holds for the thread named `name`.
func debugAwaitThread(_ name: String, stacks: Bool = true, timeoutMs: Int = 5000,
                      _ predicate: (ThreadSnapshot) -> Bool) -> (KernelSnapshot, ThreadSnapshot) {
    let deadline = gt_clock_monotonic_ns() + Int64(timeoutMs) * 1_000_000
    var last: KernelSnapshot?
    while gt_clock_monotonic_ns() < deadline {
        let s = Kernel.snapshot(includeStacks: stacks)
        if let t = s.threads.first(where: { $0.name == name }), predicate(t) { return (s, t) }
        last = s
        GreenThread.sleep(for: .milliseconds(10))
    }
    check(false, "thread '\(name)' never reached the expected state; last snapshot:\n\(last.map { "\($0)" } ?? "none")")
    fatalError()
}

/// The spinner's trace starts in its call-free loop (Atomic.load is
/// transparent, so always inlined): the innermost frame is the spinning
/// function, and no kernel frame shows.
func debugCheckSpinner(_ trace: StackTrace) {
    check(trace.functionNames.first?.contains("debugSpinUntilStopped") == true, "first frame:\n\(trace)")
}

/// Checks that `names` appear in the trace's frames in this order (innermost first).
func debugCheckOrder(_ trace: StackTrace, _ names: [String]) {
    let functions = trace.functionNames
    var at = -1
    for name in names {
        guard let i = functions.indices.first(where: { $0 > at && functions[$0].contains(name) }) else {
            check(false, "'\(name)' missing or out of order in:\n\(trace)")
            return
        }
        at = i
    }
}

let debugScenarios: [String: Scenario] = [
    "trace-parked": {
        // A thread parked (sleeping) three calls deep: its trace, from the
        // saved switch frame, names the three functions innermost first,
        // after the sleep itself and without the kernel's switch frames.
        try Kernel.run(KernelConfiguration(workers: 2)) {
            let parked = try GreenThread.spawn(name: "parked") { debugParkOuter() }
            let (_, t) = debugAwaitThread("parked") { $0.state == .sleeping }
            let trace = t.trace!
            print(trace)
            check(trace.origin == .parked, "origin \(trace.origin)")
            debugCheckOrder(trace, ["GreenThread.sleep", "debugParkInner", "debugParkMiddle", "debugParkOuter"])
            check(!trace.functionNames.contains { $0.contains("KernelCore") || $0.contains("gt_switch") },
                  "kernel frames were not trimmed:\n\(trace)")
            check(trace.functionNames.first?.contains("GreenThread.sleep") == true, "first frame: \(trace)")
            debugRelease.store(true, ordering: .relaxed)
            try parked.join()
        }
        print("OK")
    },
    "trace-current": {
        // GreenThread.stackTrace() on the calling thread starts at its caller.
        try Kernel.run(KernelConfiguration(workers: 1)) {
            let trace = try GreenThread.spawn(name: "self-tracer") { debugCurrentOuter() }.join()
            print(trace)
            check(trace.origin == .current, "origin \(trace.origin)")
            check(trace.functionNames.first?.contains("debugCurrentInner") == true, "first frame:\n\(trace)")
            debugCheckOrder(trace, ["debugCurrentInner", "debugCurrentOuter"])
        }
        print("OK")
    },
    "trace-preempted": {
        // One worker: while main takes the snapshot, the spinner is switched
        // out by the timer; its trace comes from the signal frame and starts
        // in the spinning function.
        try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .milliseconds(2))) {
            let spinner = try GreenThread.spawn(name: "spinner") { _ = debugSpinUntilStopped() }
            let (_, t) = debugAwaitThread("spinner") { $0.preemptions > 0 && $0.state == .ready }
            let trace = t.trace!
            print(trace)
            debugStopFlag.raised.store(true, ordering: .relaxed)
            try spinner.join()
            check(trace.origin == .preempted, "origin \(trace.origin)")
            debugCheckSpinner(trace)
        }
        print("OK")
    },
    "trace-running": {
        // Two workers: the spinner runs on the other worker while main asks
        // for a snapshot; that worker walks its own stack when signalled.
        try Kernel.run(KernelConfiguration(workers: 2)) {
            let spinner = try GreenThread.spawn(name: "remote-spinner") { _ = debugSpinUntilStopped() }
            let (s, t) = debugAwaitThread("remote-spinner") { $0.state == .running }
            let trace = t.trace!
            print(trace)
            print("worker=\(t.worker ?? -1)")
            debugStopFlag.raised.store(true, ordering: .relaxed)
            try spinner.join()
            check(trace.origin == .running, "origin \(trace.origin): \(trace)")
            debugCheckSpinner(trace)
            let main = s.threads.first { $0.name == "main" }!
            // The caller's own trace: its current stack, from its caller on.
            check(main.trace?.functionNames.first?.contains("debugAwaitThread") == true,
                  "main's own trace:\n\(main.trace.map { "\($0)" } ?? "none")")
        }
        print("OK")
    },
    "stack-high-water": {
        // A stack size no other thread uses: a fresh stride, so the mark
        // starts low. After ~300 KiB of recursion the mark (mincore) covers it.
        let size = 1024 * 1024 + 3 * 4096
        try Kernel.run(KernelConfiguration(workers: 2)) {
            let phase = AtomicCell<Int>(0)
            let deep = try GreenThread.spawn(name: "deep", stackSize: size) {
                while phase.atomic.load(ordering: .relaxed) == 0 { GreenThread.sleep(for: .milliseconds(5)) }
                _ = debugRecurse(300)
                phase.atomic.store(2, ordering: .relaxed)
                while phase.atomic.load(ordering: .relaxed) == 2 { GreenThread.sleep(for: .milliseconds(5)) }
            }
            let (_, before) = debugAwaitThread("deep", stacks: false) { $0.state == .sleeping }
            phase.atomic.store(1, ordering: .relaxed)
            while phase.atomic.load(ordering: .relaxed) != 2 { GreenThread.sleep(for: .milliseconds(5)) }
            let (_, after) = debugAwaitThread("deep", stacks: false) { $0.state == .sleeping }
            phase.atomic.store(3, ordering: .relaxed)
            try deep.join()
            print("size=\(after.stack.sizeBytes) before=\(before.stack.usedBytes) after=\(after.stack.usedBytes)")
            check(before.stack.sizeBytes >= size - 4096, "size \(before.stack.sizeBytes)")
            check(before.stack.usedBytes > 0 && before.stack.usedBytes < 128 * 1024, "before: \(before.stack)")
            check(after.stack.usedBytes >= before.stack.usedBytes + 250 * 1024, "grew too little: \(before.stack) -> \(after.stack)")
            check(after.stack.usedBytes <= after.stack.sizeBytes, "mark beyond the stack: \(after.stack)")
        }
        print("OK")
    },
    "deadlock-report": {
        // Two threads join each other and nothing else can run: the
        // deadlock report prints the cycle with both threads' traces.
        do {
            try Kernel.run(KernelConfiguration(workers: 2)) {
                let a = Shared<JoinHandle<Void>?>(nil), b = Shared<JoinHandle<Void>?>(nil)
                a.value = try GreenThread.spawn(name: "cycle-a") { try debugJoinPartner { b.value } }
                b.value = try GreenThread.spawn(name: "cycle-b") { try debugJoinPartner { a.value } }
                try a.value!.join()
            }
            check(false, "deadlock not detected")
        } catch let KernelError.deadlock(report) {
            print(report)
            check(report.snapshot != nil, "no snapshot in the report")
            check(report.description.contains("cycle: "), "no cycle line")
            let traced = report.description.split(separator: "\n").filter { $0.contains("debugJoinPartner") }.count
            check(traced >= 2, "both cycle threads' traces should show debugJoinPartner: \(traced)")
        }
        print("OK")
    },
    "crash-dump": {
        // --how segv|abort|trap: a thread crashes while others are parked
        // in named functions; the dump lists them all before the process dies.
        let how = option("how") ?? "segv"
        try Kernel.run(KernelConfiguration(workers: 2)) {
            _ = try GreenThread.spawn(name: "parked") { debugParkOuter() }
            _ = debugAwaitThread("parked", stacks: false) { $0.state == .sleeping }
            try GreenThread.spawn(name: "crasher") { debugCrashNow(how) }.join()
        }
        print("survived the crash")
    },
    "quit-dump": {
        // GT_DUMP_ON=SIGQUIT: the dump is printed and the program goes on.
        try Kernel.run(KernelConfiguration(workers: 2)) {
            let parked = try GreenThread.spawn(name: "parked") { debugParkOuter() }
            let spinner = try GreenThread.spawn(name: "quit-spinner") { _ = debugSpinUntilStopped() }
            _ = debugAwaitThread("parked", stacks: false) { $0.state == .sleeping }
            if option("raise-unblocked") != nil {
                // The control without GT_DUMP_ON: make sure SIGQUIT can land
                // (a test runner may have it blocked) and send it to this OS
                // thread, without a migration in between.
                GreenThread.withoutPreemption {
                    var set = sigset_t()
                    sigemptyset(&set)
                    sigaddset(&set, SIGQUIT)
                    pthread_sigmask(SIG_UNBLOCK, &set, nil)
                    raise(SIGQUIT)
                }
            } else {
                kill(getpid(), SIGQUIT)  // to the process: the library made it deliverable
            }
            GreenThread.sleep(for: .milliseconds(300))
            debugRelease.store(true, ordering: .relaxed)
            debugStopFlag.raised.store(true, ordering: .relaxed)
            try parked.join()
            try spinner.join()
        }
        print("OK")
    },
    "ps-target": {
        // The gt-ps end-to-end target: a low-priority holder of a mutex that
        // a high-priority thread waits for (so the holder is boosted), a
        // sleeper, a spinner, a joiner; runs until the test's stop file.
        try Kernel.run(KernelConfiguration(workers: 2)) {
            let m = GreenMutex(name: "ps-mutex")
            let holder = try GreenThread.spawn(name: "lock-holder", priority: .low) { try debugHoldAndSpin(m) }
            _ = debugAwaitThread("lock-holder", stacks: false) { _ in m.owner != nil }
            let waiter = try GreenThread.spawn(name: "lock-waiter", priority: .high) { try m.withLock {} }
            let sleeper = try GreenThread.spawn(name: "sleeper") { debugParkOuter() }
            let spinner = try GreenThread.spawn(name: "spinner") { _ = debugSpinUntilStopped() }
            let joiner = try GreenThread.spawn(name: "joiner") { try sleeper.join() }
            // Two threads parked by one closure (identical stacks: one group
            // in gt-ps --stacks); the first one's name would clear a terminal
            // and forge a line if printed raw.
            let pool = try ["evil\u{1B}[2J\nname\u{7}", "pool"].map { name in
                try GreenThread.spawn(name: name) { debugParkOuter() }
            }
            _ = debugAwaitThread("lock-waiter", stacks: false) { $0.state == .blocked }
            _ = debugAwaitThread("lock-holder", stacks: false) { $0.isBoosted }
            _ = debugAwaitThread("joiner", stacks: false) { $0.state == .blocked }
            print("ready pid=\(getpid())")
            debugWaitForStopFile()
            debugStopFlag.raised.store(true, ordering: .relaxed)
            debugRelease.store(true, ordering: .relaxed)
            for h in [holder, waiter, spinner] { try h.join() }
            try joiner.join()
            for h in pool { try h.join() }
        }
        print("OK")
    },
    "kill-self": {
        // --signal segv|bus: the process sends itself the signal with
        // kill(2) (si_code SI_USER). The fault handler must not swallow it:
        // the process dies of that signal and never prints "survived".
        let sig = option("signal") == "bus" ? SIGBUS : SIGSEGV
        try Kernel.run(KernelConfiguration(workers: 1)) {
            kill(getpid(), sig)
            GreenThread.sleep(for: .milliseconds(300))
        }
        print("survived")
    },
    "ps-cycle": {
        // Two threads join each other (a deadlock among them) while another
        // keeps sleeping, so the kernel as a whole is not deadlocked. The
        // test kills the process when done.
        try Kernel.run(KernelConfiguration(workers: 2)) {
            let a = Shared<JoinHandle<Void>?>(nil), b = Shared<JoinHandle<Void>?>(nil)
            a.value = try GreenThread.spawn(name: "cycle-a") { try debugJoinPartner { b.value } }
            b.value = try GreenThread.spawn(name: "cycle-b") { try debugJoinPartner { a.value } }
            _ = debugAwaitThread("cycle-b", stacks: false) { $0.state == .blocked }
            _ = debugAwaitThread("cycle-a", stacks: false) { $0.state == .blocked }
            print("ready pid=\(getpid())")
            debugWaitForStopFile()
            _exit(0)  // the cycle never ends: leave without waiting for it
        }
    },
]
