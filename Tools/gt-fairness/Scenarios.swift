// Scenarios: what the threads of a fairness run do, and how each runtime
// runs them. A plan lists the threads (role, priority level, behaviour);
// the same plan runs on GreenThreads, on POSIX threads (CFS) and on Swift
// tasks (the cooperative pool), each thread tracing itself (Trace.swift).
import Glibc

/// How one thread behaves.
enum Behaviour: Sendable {
    /// Call-free arithmetic, never yielding.
    case spin
    /// Allocation and reference counting, never yielding.
    case alloc
    /// Runs `run` seconds of CPU, then sleeps `sleep` seconds, repeatedly.
    case sleeper(run: Double, sleep: Double)
    /// Runs `run` seconds of CPU, then starts a child that works `child`
    /// seconds and blocks joining it, repeatedly.
    case blocker(run: Double, child: Double)
    /// Holds the run's shared lock for `critical` seconds of CPU, then works
    /// `outside` seconds without it, repeatedly (the low thread of an
    /// inversion).
    case lockHolder(critical: Double, outside: Double)
    /// Sleeps `sleep` seconds, then takes the shared lock, works `critical`
    /// seconds of CPU and releases it, repeatedly (the high thread).
    case lockTaker(sleep: Double, critical: Double)
}

struct ThreadPlan: Sendable {
    var role: String
    /// Priority as a GreenThreads level (0...31); mapped to nice values for
    /// pthreads and TaskPriority for tasks.
    var level: Int
    var behaviour: Behaviour
}

enum ScenarioKind: String, CaseIterable, Sendable {
    /// N equal-priority call-free spinners.
    case spin
    /// N equal-priority allocation-heavy loops (preemption often deferred).
    case alloc
    /// Spinners with sleepers and blockers among them (half, a quarter, a quarter).
    case mixed
    /// Two duty-cycled .high threads (25% of a CPU each), N .normal
    /// spinners and one .low spinner: higher levels get all they ask for,
    /// equal ones share the rest, the lowest gets what is left (nothing).
    case priority
    /// Priority inversion (the Mars Pathfinder story): a .low thread takes
    /// a lock for 2 ms of CPU whenever it gets to run, a .high thread wakes
    /// every 4 ms and needs the lock, N .normal threads run 4 ms and pause
    /// 1 ms (so the .low one gets in now and then). With priority
    /// inheritance the .high thread's wait is bounded by one critical
    /// section; without it, by the .normal threads' runs.
    case inversion

    var summary: String {
        switch self {
        case .spin: return "equal call-free spinners"
        case .alloc: return "equal allocation/refcount-heavy loops"
        case .mixed: return "spinners + sleepers + blockers"
        case .priority: return "2 high (25% duty) + N normal spinners + 1 low spinner"
        case .inversion: return "low lock holder + high lock taker + N normal threads (4 ms on, 1 ms off)"
        }
    }
}

struct ScenarioPlan: Sendable {
    var kind: ScenarioKind
    var n: Int
    var threads: [ThreadPlan]
    /// The role whose members must share equally (Jain's index is theirs).
    var equalRole: String

    static func make(_ kind: ScenarioKind, n: Int) -> ScenarioPlan {
        let normal = 16, high = 24, low = 8
        switch kind {
        case .spin:
            return ScenarioPlan(kind: kind, n: n, threads: Array(repeating: ThreadPlan(role: "spinner", level: normal, behaviour: .spin), count: n),
                                equalRole: "spinner")
        case .alloc:
            return ScenarioPlan(kind: kind, n: n, threads: Array(repeating: ThreadPlan(role: "alloc", level: normal, behaviour: .alloc), count: n),
                                equalRole: "alloc")
        case .mixed:
            let spinners = max(1, n / 2), sleepers = max(1, (n - spinners) / 2), blockers = max(0, n - spinners - sleepers)
            return ScenarioPlan(kind: kind, n: n, threads:
                Array(repeating: ThreadPlan(role: "spinner", level: normal, behaviour: .spin), count: spinners)
                + Array(repeating: ThreadPlan(role: "sleeper", level: normal, behaviour: .sleeper(run: 0.002, sleep: 0.003)), count: sleepers)
                + Array(repeating: ThreadPlan(role: "blocker", level: normal, behaviour: .blocker(run: 0.002, child: 0.001)), count: blockers),
                equalRole: "spinner")
        case .priority:
            return ScenarioPlan(kind: kind, n: n, threads:
                Array(repeating: ThreadPlan(role: "high", level: high, behaviour: .sleeper(run: 0.002, sleep: 0.006)), count: 2)
                + Array(repeating: ThreadPlan(role: "normal", level: normal, behaviour: .spin), count: n)
                + [ThreadPlan(role: "low", level: low, behaviour: .spin)],
                equalRole: "normal")
        case .inversion:
            return ScenarioPlan(kind: kind, n: n, threads:
                [ThreadPlan(role: "low-holder", level: low, behaviour: .lockHolder(critical: 0.002, outside: 0.001)),
                 ThreadPlan(role: "high-taker", level: high, behaviour: .lockTaker(sleep: 0.004, critical: 0.0005))]
                + Array(repeating: ThreadPlan(role: "normal", level: normal, behaviour: .sleeper(run: 0.004, sleep: 0.001)), count: n),
                equalRole: "normal")
        }
    }
}

/// What one run of a plan on one runtime produced.
struct RunOutcome {
    var runtime: Runtime
    var traces: [ThreadTrace]
    var windowTicks: UInt64
    var windowStart: UInt64
    /// Workers (green), CPUs (pthread) or pool threads (tasks): the capacity.
    var capacity: Int
    /// pthread_self of green worker 0 (the thread that called Kernel.run).
    var mainOSThread: UInt
    /// GreenThreads only: each thread's time in the window as the library
    /// accounts it (ThreadStatistics.cpuTicks, time-stamp counter between
    /// its switches), in plan order.
    var accountedTicks: [UInt64]? = nil
}

enum Runtime: String, CaseIterable, Sendable {
    case green, pthread, tasks

    var label: String {
        switch self {
        case .green: return "GreenThreads"
        case .pthread: return "pthread (CFS)"
        case .tasks: return "Swift tasks"
        }
    }
}

/// Settings shared by every run.
struct RunSettings: Sendable {
    /// CPU time (all threads) the window lasts for.
    var cpuSeconds: Double
    /// Wall-clock limit of the window.
    var maxSeconds: Double
    var gapTicks: UInt64
    var workers: Int
    var sliceMilliseconds: Int
    var intervalCapacity: Int
}

/// The parts of a thread's body that do not depend on the runtime; the
/// runtime supplies how to sleep and how to block on a child.
struct ThreadBody {
    let plan: ThreadPlan
    let trace: ThreadTrace
    let window: Window
    let settings: RunSettings

    /// `withLock` runs its argument holding the run's one shared lock.
    func run(sleep: (Double) -> Void, blockOnChild: (Double) -> Void, withLock: (() -> Void) -> Void = { $0() }) {
        window.started.add(1, ordering: .relaxed)
        switch plan.behaviour {
        case .lockHolder(let critical, let outside):
            while !window.isOver {
                withLock { burst(critical) }
                burst(outside)
            }
        case .lockTaker(let pause, let critical):
            while !window.isOver {
                let due = TSC.now() + TSC.ticks(seconds: pause)
                sleep(pause)
                noteWake(due: due)
                if window.isOver { break }
                let asked = TSC.now()
                withLock {
                    noteLockWait(since: asked)
                    burst(critical)
                }
            }
        case .spin:
            tracedLoop(SpinWork.self, trace: trace, window: window, gapTicks: settings.gapTicks)
        case .alloc:
            tracedLoop(AllocWork.self, trace: trace, window: window, gapTicks: settings.gapTicks)
        case .sleeper(let run, let pause):
            while !window.isOver {
                tracedLoop(SpinWork.self, trace: trace, window: window, gapTicks: settings.gapTicks,
                           runBudget: TSC.ticks(seconds: run))
                if window.isOver { break }
                let due = TSC.now() + TSC.ticks(seconds: pause)
                sleep(pause)
                noteWake(due: due)
            }
        case .blocker(let run, let child):
            while !window.isOver {
                tracedLoop(SpinWork.self, trace: trace, window: window, gapTicks: settings.gapTicks,
                           runBudget: TSC.ticks(seconds: run))
                if window.isOver { break }
                blockOnChild(child)
                trace.blocks += 1
            }
        }
    }

    /// Traced work until the thread has run `seconds` of CPU.
    func burst(_ seconds: Double) {
        tracedLoop(SpinWork.self, trace: trace, window: window, gapTicks: settings.gapTicks,
                   runBudget: TSC.ticks(seconds: seconds))
    }

    func noteLockWait(since asked: UInt64) {
        let waited = TSC.now() - asked
        trace.locks += 1
        if window.overlap(asked, asked + waited) > 0 { trace.worstLockWaitTicks = max(trace.worstLockWaitTicks, waited) }
    }

    func noteWake(due: UInt64) {
        let now = TSC.now()
        trace.sleeps += 1
        if now > due {
            let late = window.overlap(due, now)
            trace.waitTicks &+= late
            if late > 0 { trace.worstWakeDelayTicks = max(trace.worstWakeDelayTicks, now - due) }
        }
    }
}

/// Work for a blocker's child: spins `seconds` without tracing.
func childWork(_ seconds: Double) {
    let end = TSC.now() + TSC.ticks(seconds: seconds)
    var x: UInt64 = 1
    while TSC.now() < end { SpinWork.step(&x) }
    if x == 0 { print("") }
}

extension ThreadBody {
    /// The same behaviour for a Swift task: sleeping and blocking suspend
    /// it; the lock is an OS-level lock, as async code uses one.
    func runAsync(sleep: (Double) async -> Void, blockOnChild: (Double) async -> Void,
                  withLock: (() -> Void) -> Void) async {
        switch plan.behaviour {
        case .spin, .alloc, .lockHolder:
            run(sleep: { _ in }, blockOnChild: { _ in }, withLock: withLock)
        case .lockTaker(let pause, let critical):
            window.started.add(1, ordering: .relaxed)
            while !window.isOver {
                let due = TSC.now() + TSC.ticks(seconds: pause)
                await sleep(pause)
                noteWake(due: due)
                if window.isOver { break }
                let asked = TSC.now()
                withLock {
                    noteLockWait(since: asked)
                    burst(critical)
                }
            }
        case .sleeper(let run, let pause):
            window.started.add(1, ordering: .relaxed)
            while !window.isOver {
                tracedLoop(SpinWork.self, trace: trace, window: window, gapTicks: settings.gapTicks,
                           runBudget: TSC.ticks(seconds: run))
                if window.isOver { break }
                let due = TSC.now() + TSC.ticks(seconds: pause)
                await sleep(pause)
                noteWake(due: due)
            }
        case .blocker(let run, let child):
            window.started.add(1, ordering: .relaxed)
            while !window.isOver {
                tracedLoop(SpinWork.self, trace: trace, window: window, gapTicks: settings.gapTicks,
                           runBudget: TSC.ticks(seconds: run))
                if window.isOver { break }
                await blockOnChild(child)
                trace.blocks += 1
            }
        }
    }
}
