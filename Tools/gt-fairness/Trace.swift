// Trace: how a thread sees its own scheduling, from its own side, through
// the public API only. A traced thread runs its work in small steps and
// reads the time-stamp counter after each; a jump between two readings
// longer than `gapTicks` means it was switched out (by the green kernel, the
// OS, or a cooperative pool). It then logs the interval it ran, with the OS
// thread it ran on (its green worker) and the CPU. From these intervals come
// the CPU shares, the worst scheduling delay and the timeline.
//
// The loop itself makes no calls (the counter read is one instruction), so
// for the call-free workload every preemption tick lands at a safe point;
// logging an interval calls pthread_self() only at interval boundaries.
#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import Glibc
import Synchronization

enum TSC {
    /// The time-stamp counter (x86-64 rdtscp), or CLOCK_MONOTONIC ns elsewhere.
    @inline(__always) static func now() -> UInt64 {
        #if arch(x86_64)
        var aux: UInt32 = 0
        return __rdtscp(&aux)
        #else
        return UInt64(monotonicNanoseconds())
        #endif
    }

    /// The counter and the CPU it was read on (rdtscp's TSC_AUX holds the CPU number on Linux).
    @inline(__always) static func nowAndCPU() -> (UInt64, UInt32) {
        #if arch(x86_64)
        var aux: UInt32 = 0
        let t = __rdtscp(&aux)
        return (t, aux & 0xfff)
        #else
        return (UInt64(monotonicNanoseconds()), UInt32(max(0, sched_getcpu())))
        #endif
    }

    /// Counter ticks per second, measured once against CLOCK_MONOTONIC (50 ms).
    static let ticksPerSecond: Double = {
        let n0 = monotonicNanoseconds(), t0 = now()
        var n1 = n0
        while n1 - n0 < 50_000_000 { n1 = monotonicNanoseconds() }
        let t1 = now()
        return Double(t1 &- t0) / (Double(n1 - n0) / 1e9)
    }()

    static func ticks(seconds: Double) -> UInt64 { UInt64(seconds * ticksPerSecond) }
    static func seconds(_ ticks: UInt64) -> Double { Double(ticks) / ticksPerSecond }
}

func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// One stretch of time a thread ran without a gap.
struct RunInterval: Codable, Sendable {
    var start: UInt64
    var end: UInt64
    /// pthread_self() of the OS thread it ran on (a green worker, a pool thread).
    var osThread: UInt
    var cpu: UInt32
}

/// The measurement window, shared by every thread of a run. The
/// coordinator opens it once all threads exist and closes it when the
/// process has used a budget of CPU time (so a busy machine, which takes
/// our CPUs away, lengthens the window instead of shortening what it
/// measures), or after a wall-clock limit.
final class Window: Sendable {
    let start = Atomic<UInt64>(.max)
    let end = Atomic<UInt64>(.max)
    /// Threads that have started running.
    let started = Atomic<Int>(0)

    @inline(__always) var isOver: Bool { TSC.now() >= end.load(ordering: .relaxed) }

    func open(after delaySeconds: Double) {
        start.store(TSC.now() + TSC.ticks(seconds: delaySeconds), ordering: .releasing)
    }

    func close() { end.store(TSC.now(), ordering: .releasing) }

    /// Run by the coordinator: opens the window, waits until the process
    /// has used `cpuSeconds` of CPU in it (or `maxSeconds` of wall time),
    /// then closes it. `sleep` parks the coordinator between checks.
    /// `atStart` and `atEnd` run right after the window opens and closes.
    /// The coordinator wakes rarely: each time it sleeps for the CPU time
    /// still to go divided by the `capacity` (the CPUs the run can use: it
    /// cannot be used up sooner), so its own wake-ups, which preempt a
    /// measured thread when it outranks them, stay few (a dozen or so per
    /// window) and do not skew the shares.
    func measure(cpuSeconds: Double, maxSeconds: Double, capacity: Int, sleep: (Double) -> Void,
                 atStart: () -> Void = {}, atEnd: () -> Void = {}) {
        open(after: 0.01)
        sleep(0.01)
        while TSC.now() < start.load(ordering: .relaxed) { sleep(0.001) }
        atStart()
        let cpu0 = processCPUSeconds(), wall0 = TSC.now()
        while true {
            let left = cpuSeconds - (processCPUSeconds() - cpu0), wallLeft = maxSeconds - TSC.seconds(TSC.now() - wall0)
            if left <= 0 || wallLeft <= 0 { break }
            sleep(min(wallLeft, max(0.001, left / Double(capacity))))
        }
        close()
        atEnd()
    }

    /// Length of the part of [a, b] inside the window.
    func overlap(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let s = start.load(ordering: .acquiring), e = end.load(ordering: .acquiring)
        guard s != .max else { return 0 }
        let lo = max(a, s), hi = min(b, e)
        return hi > lo ? hi - lo : 0
    }

    /// The window's length (after it closed).
    var ticks: UInt64 { end.load(ordering: .acquiring) - start.load(ordering: .acquiring) }
}

/// CPU time used by the whole process (all threads).
func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// What one thread observed of its own scheduling. Written only by that
/// thread while it runs; read by the coordinator after it has finished.
final class ThreadTrace: @unchecked Sendable {
    let index: Int
    let priorityLevel: Int
    let role: String
    /// Ticks it ran inside the window.
    var runTicks: UInt64 = 0
    /// Longest gap (switched out) that overlapped the window, in ticks.
    var worstGapTicks: UInt64 = 0
    /// Gaps (switched out) inside the window.
    var gaps = 0
    /// Time switched out while it wanted to run, inside the window: its
    /// gaps plus how late it woke from sleeps.
    var waitTicks: UInt64 = 0
    /// Longest delay from a sleep's deadline to running again, in ticks.
    var worstWakeDelayTicks: UInt64 = 0
    /// Longest wait for the shared lock, in ticks, and locks taken.
    var worstLockWaitTicks: UInt64 = 0
    var locks = 0
    /// Sleeps done, and blocking joins done.
    var sleeps = 0
    var blocks = 0
    var intervals: [RunInterval] = []
    let capacity: Int
    var dropped = 0
    /// Work steps done (for throughput).
    var steps: UInt64 = 0
    /// Filled in after a green run: the library's own counters.
    var preemptions: UInt64 = 0
    var deferredPreemptions: UInt64 = 0

    init(index: Int, priorityLevel: Int, role: String, capacity: Int) {
        self.index = index
        self.priorityLevel = priorityLevel
        self.role = role
        self.capacity = capacity
        intervals.reserveCapacity(capacity)
    }

    /// Closes the interval [start, end] the thread just ran.
    @inline(never) func log(start: UInt64, end: UInt64, cpu: UInt32, window: Window) {
        runTicks &+= window.overlap(start, end)
        if intervals.count < capacity {
            intervals.append(RunInterval(start: start, end: end, osThread: UInt(bitPattern: Int(bitPattern: pthread_self())), cpu: cpu))
        } else {
            dropped += 1
        }
    }

    /// Records that the thread was off the CPU from `from` to `to`.
    @inline(__always) func gap(from: UInt64, to: UInt64, window: Window) {
        let inside = window.overlap(from, to)
        if inside > 0 {
            gaps += 1
            waitTicks &+= inside
            worstGapTicks = max(worstGapTicks, to - from)
        }
    }
}

/// A unit of work a traced thread repeats.
protocol WorkKind {
    /// Does one step of work on `state`. Inlined into the traced loop.
    static func step(_ state: inout UInt64)
}

/// Call-free arithmetic: 64 xorshift steps (about 100 ns).
enum SpinWork: WorkKind {
    @inline(__always) static func step(_ state: inout UInt64) {
        var x = state
        for _ in 0..<64 {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
        }
        state = x
    }
}

final class Node {
    var value: UInt64
    var next: Node?
    init(_ value: UInt64, next: Node?) {
        self.value = value
        self.next = next
    }
}

/// Heavy in allocation and reference counting: most of its time is in
/// malloc/free and swift_retain/release, where preemption must be deferred.
enum AllocWork: WorkKind {
    @inline(never) static func step(_ state: inout UInt64) {
        var list: Node? = nil
        for i in 0..<4 { list = Node(state &+ UInt64(i), next: list) }
        var sum: UInt64 = 0
        var n = list
        while let node = n { sum &+= node.value; n = node.next }
        let array = [sum, state, sum ^ state]
        state = array.reduce(0, &+) | 1
    }
}

/// Runs `Work` steps until the window closes, or until the thread has run
/// `runBudget` ticks in this call (a duty-cycled thread's CPU burst),
/// logging every interval it ran. `gapTicks`: a longer pause between two
/// counter readings is a switch.
@inline(__always)
func tracedLoop<Work: WorkKind>(_: Work.Type, trace: ThreadTrace, window: Window, gapTicks: UInt64,
                                runBudget: UInt64 = .max) {
    var state = UInt64(trace.index + 1) | 1
    var (last, cpu) = TSC.nowAndCPU()
    var runStart = last
    var ranBefore: UInt64 = 0  // ticks run in this call before runStart
    var steps: UInt64 = 0
    while true {
        Work.step(&state)
        steps &+= 1
        let now = TSC.now()
        if now &- last > gapTicks {
            trace.log(start: runStart, end: last, cpu: cpu, window: window)
            trace.gap(from: last, to: now, window: window)
            ranBefore &+= last - runStart
            runStart = now
            cpu = TSC.nowAndCPU().1
        }
        last = now
        if now >= window.end.load(ordering: .relaxed) || ranBefore &+ (now - runStart) >= runBudget { break }
    }
    trace.log(start: runStart, end: last, cpu: cpu, window: window)
    trace.steps &+= steps
    if state == 0 { print("") }  // keeps the work
}
