// Runners: one plan on one runtime. Each creates every thread, opens the
// measurement window 10 ms after the last one exists, and collects the
// traces once all have seen the window close.
import Dispatch
import GreenThreads
import Glibc

/// Fresh traces for a plan.
func makeTraces(_ plan: ScenarioPlan, capacity: Int) -> [ThreadTrace] {
    plan.threads.enumerated().map { i, t in
        ThreadTrace(index: i, priorityLevel: t.level, role: t.role, capacity: capacity)
    }
}

enum GreenRunner {
    static func run(_ plan: ScenarioPlan, _ settings: RunSettings) throws -> RunOutcome {
        let traces = makeTraces(plan, capacity: settings.intervalCapacity)
        let window = Window()
        let mainOS = UInt(bitPattern: Int(bitPattern: pthread_self()))  // becomes worker 0
        let accounted = ResultBox<[UInt64]>()
        let config = KernelConfiguration(workers: settings.workers, timeSlice: .milliseconds(settings.sliceMilliseconds))
        let lock = GreenMutex(name: "shared")  // priority inheritance on (the default)
        try Kernel.run(config) {
            // The coordinator outranks every thread of the plan, so it
            // creates them all and opens the window on time.
            GreenThread.current.setPriority(.highest)
            var handles: [JoinHandle<Void>] = []
            handles.reserveCapacity(plan.threads.count)
            for (i, t) in plan.threads.enumerated() {
                let body = ThreadBody(plan: t, trace: traces[i], window: window, settings: settings)
                handles.append(try GreenThread.spawn(name: "\(t.role)\(i)", priority: try Priority(level: t.level)) {
                    body.run(sleep: { GreenThread.sleep(for: .nanoseconds(Int64($0 * 1e9))) },
                             blockOnChild: { seconds in
                                 let child = try? GreenThread.spawn(name: "child", priority: try Priority(level: t.level)) {
                                     childWork(seconds)
                                 }
                                 try? child?.join()
                             },
                             withLock: { critical in
                                 try? lock.lock()
                                 critical()
                                 try? lock.unlock()
                             })
                })
            }
            // The library's own account of each thread's time (updated at
            // every switch), read as the window opens and closes.
            var before: [UInt64] = []
            window.measure(cpuSeconds: settings.cpuSeconds, maxSeconds: settings.maxSeconds, capacity: settings.workers,
                           sleep: { GreenThread.sleep(for: .nanoseconds(Int64($0 * 1e9))) },
                           atStart: { before = handles.map { $0.thread.statistics.cpuTicks } },
                           atEnd: { accounted.value = zip(handles, before).map { $0.thread.statistics.cpuTicks &- $1 } })
            for (i, h) in handles.enumerated() {
                try h.join()
                let s = h.thread.statistics
                traces[i].preemptions = s.preemptions
                traces[i].deferredPreemptions = s.deferredPreemptions
            }
        }
        return RunOutcome(runtime: .green, traces: traces, windowTicks: window.ticks,
                          windowStart: window.start.load(ordering: .acquiring), capacity: settings.workers, mainOSThread: mainOS,
                          accountedTicks: accounted.value)
    }
}

/// Holds a closure across pthread_create's C boundary.
private final class ThreadStart {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

enum PThreadRunner {
    /// Starts an OS thread with default attributes; nil if pthread_create fails.
    static func start(_ body: @escaping () -> Void) -> pthread_t? {
        let box = Unmanaged.passRetained(ThreadStart(body)).toOpaque()
        var tid = pthread_t()
        guard pthread_create(&tid, nil, { arg in
            Unmanaged<ThreadStart>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box) == 0 else {
            Unmanaged<ThreadStart>.fromOpaque(box).release()
            return nil
        }
        return tid
    }

    /// Priority levels map to nice values: .high (24) -> -10, .normal -> 0,
    /// .low (8) -> 19 (CFS weights, not strict priority).
    static func nice(for level: Int) -> Int32 {
        level > 16 ? -10 : level < 16 ? 19 : 0
    }

    static func run(_ plan: ScenarioPlan, _ settings: RunSettings) throws -> RunOutcome {
        let traces = makeTraces(plan, capacity: settings.intervalCapacity)
        let window = Window()
        let lock = SharedLock()
        var tids: [pthread_t] = []
        for (i, t) in plan.threads.enumerated() {
            let body = ThreadBody(plan: t, trace: traces[i], window: window, settings: settings)
            let niceValue = nice(for: t.level)
            guard let tid = start({
                // Linux keeps nice per thread: who = 0 is the calling thread.
                if niceValue != 0 { setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceValue) }
                body.run(sleep: sleepOSThread, blockOnChild: { seconds in
                    if let child = start({ childWork(seconds) }) { pthread_join(child, nil) }
                }, withLock: lock.withLock)
            }) else {
                window.open(after: 0)
                window.close()
                for tid in tids { pthread_join(tid, nil) }
                throw FairnessError.cannotStart("pthread_create failed after \(i) threads: \(String(cString: strerror(errno)))")
            }
            tids.append(tid)
        }
        // The coordinator must get the CPU to close the window on time while
        // N spinners compete with it: nice -20 when allowed (root), else as is.
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        let niceBefore = getpriority(which, 0)
        setpriority(which, 0, -20)
        window.measure(cpuSeconds: settings.cpuSeconds, maxSeconds: settings.maxSeconds, capacity: cpuCount, sleep: sleepOSThread)
        setpriority(which, 0, niceBefore)
        for tid in tids { pthread_join(tid, nil) }
        return RunOutcome(runtime: .pthread, traces: traces, windowTicks: window.ticks,
                          windowStart: window.start.load(ordering: .acquiring),
                          capacity: PThreadRunner.cpuCount, mainOSThread: 0)
    }

    static var cpuCount: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
}

/// The pthread and task runs' shared lock: a plain pthread mutex (no
/// priority inheritance: under SCHED_OTHER the kernel's PI mutexes change
/// nothing), which is what such code uses.
final class SharedLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(mutex, nil) }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    func withLock(_ body: () -> Void) {
        pthread_mutex_lock(mutex)
        body()
        pthread_mutex_unlock(mutex)
    }
}

/// Parks the calling OS thread for `seconds`.
func sleepOSThread(_ seconds: Double) {
    var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9)), rest = timespec()
    while nanosleep(&ts, &rest) != 0 && errno == EINTR { ts = rest }
}

enum FairnessError: Error, CustomStringConvertible {
    case cannotStart(String)
    var description: String {
        switch self { case .cannotStart(let why): return why }
    }
}

/// Written once by a task before it signals; read after the signal.
final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

enum TaskRunner {
    static func priority(for level: Int) -> TaskPriority {
        level > 16 ? .high : level < 16 ? .background : .medium
    }

    static func run(_ plan: ScenarioPlan, _ settings: RunSettings) throws -> RunOutcome {
        let traces = makeTraces(plan, capacity: settings.intervalCapacity)
        let window = Window()
        let lock = SharedLock()
        let done = DispatchSemaphore(value: 0), added = DispatchSemaphore(value: 0)
        let bodies = plan.threads.enumerated().map { i, t in
            ThreadBody(plan: t, trace: traces[i], window: window, settings: settings)
        }
        let planBox = ResultBox<[ThreadBody]>()
        planBox.value = bodies
        Task.detached {
            await withTaskGroup(of: Void.self) { group in
                for body in planBox.value! {
                    group.addTask(priority: priority(for: body.plan.level)) {
                        await body.runAsync(sleep: { s in try? await Task.sleep(nanoseconds: UInt64(s * 1e9)) },
                                            blockOnChild: { s in
                                                let child = Task(priority: priority(for: body.plan.level)) { childWork(s) }
                                                await child.value
                                            }, withLock: lock.withLock)
                    }
                }
                added.signal()
            }
            done.signal()
        }
        // The spinning tasks never give their pool threads back, so the
        // window is measured from this OS thread.
        added.wait()
        window.measure(cpuSeconds: settings.cpuSeconds, maxSeconds: settings.maxSeconds, capacity: PThreadRunner.cpuCount, sleep: sleepOSThread)
        done.wait()
        return RunOutcome(runtime: .tasks, traces: traces, windowTicks: window.ticks,
                          windowStart: window.start.load(ordering: .acquiring),
                          capacity: PThreadRunner.cpuCount, mainOSThread: 0)
    }
}

extension ThreadBody: @unchecked Sendable {}
