// Scenarios for locks and blocking calls that belong to the OS thread
// (BRIEF.md "Foreign locks", hazards 7 and 11): a preempted green thread
// must keep its OS thread, and a processor whose OS thread blocks in the OS
// must be handed on. Run with `--workers 1|2`; `--disable-fix handoff` turns
// off the monitor's hand-off to show the blocking scenarios fail without it.
import CGreenCore
import Dispatch
import GreenThreads
import GTLockAudit
import GTSnapshot
import Glibc
import Synchronization

/// One kind of lock the program's own code may hold when preemption strikes.
/// Shared by the lockers, so Sendable; the pthread and stdio kinds are
/// `@unchecked` because the lock they wrap is itself the synchronization
/// (a pointer to it is all the class holds).
private protocol ForeignLock: AnyObject, Sendable {
    func withLock(_ body: () -> Void)
}

private final class SwiftMutexLock: ForeignLock {
    let mutex = Mutex<Int>(0)
    func withLock(_ body: () -> Void) { mutex.withLock { value in value += 1; body() } }
}

private final class PthreadMutexLock: ForeignLock, @unchecked Sendable {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    init(recursive: Bool) {
        mutex = .allocate(capacity: 1)
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        if recursive { pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_RECURSIVE)) }
        pthread_mutex_init(mutex, &attr)
        pthread_mutexattr_destroy(&attr)
        self.recursive = recursive
    }
    let recursive: Bool
    func withLock(_ body: () -> Void) {
        pthread_mutex_lock(mutex)
        if recursive { pthread_mutex_lock(mutex) }  // nested, as recursive users do
        body()
        if recursive { pthread_mutex_unlock(mutex) }
        pthread_mutex_unlock(mutex)
    }
}

private final class PthreadRWLock: ForeignLock, @unchecked Sendable {
    let lock: UnsafeMutablePointer<pthread_rwlock_t>
    init() {
        lock = .allocate(capacity: 1)
        pthread_rwlock_init(lock, nil)
    }
    func withLock(_ body: () -> Void) {
        pthread_rwlock_wrlock(lock)
        body()
        pthread_rwlock_unlock(lock)
    }
}

private final class FileLock: ForeignLock, @unchecked Sendable {
    let file: UnsafeMutablePointer<FILE> = fopen("/dev/null", "w")!
    func withLock(_ body: () -> Void) {
        flockfile(file)
        body()
        funlockfile(file)
    }
}

private func foreignLock(_ kind: String) -> ForeignLock {
    switch kind {
    case "swift-mutex": return SwiftMutexLock()
    case "pthread-mutex": return PthreadMutexLock(recursive: false)
    case "recursive-mutex": return PthreadMutexLock(recursive: true)
    case "rwlock": return PthreadRWLock()
    case "flockfile": return FileLock()
    default:
        check(false, "unknown lock kind \(kind)")
        fatalError()
    }
}

/// Threads inside the critical section right now: more than one is a
/// broken mutual exclusion.
private let insideLock = Atomic<Int>(0)
private let exclusionBroken = Atomic<Int>(0)
/// Preemptions that landed inside the lock, all threads.
private let preemptedInsideTotal = Atomic<Int>(0)

let foreignLockScenarios: [String: Scenario] = [
    "foreign-lock": {
        // Eight green threads, 1 ms slices, each repeatedly taking the lock
        // and computing ~30 us inside it (a call-free spin, so ticks land
        // inside the critical section). Preemption must never let a second
        // green thread onto the holder's OS thread: with the first design
        // (an in-place switch) Synchronization.Mutex trapped ("Recursive
        // call to lock Mutex"), pthread mutexes and rwlocks hung, and
        // recursive mutexes and flockfile let two threads in at once.
        let kind = option("kind") ?? "pthread-mutex"
        let lock = foreignLock(kind)
        let millis = intOption("ms", 1500)
        let (acquisitions, preemptions, preemptedInside) = try Kernel.run(
            KernelConfiguration(workers: intOption("workers", 1), timeSlice: .milliseconds(1))
        ) { () -> (Int, UInt64, Int) in
            // Run `ms`, and on (up to ten times as long) until a preemption
            // has landed inside the lock: with two workers contending, most
            // ticks land while a thread waits, not while it holds, and on a
            // loaded machine 6 s gave 24 preemptions in all.
            let start = gt_clock_monotonic_ns()
            let deadline = start + Int64(millis) * 1_000_000
            let hardDeadline = start + 10 * Int64(millis) * 1_000_000
            @Sendable func goOn() -> Bool {
                let now = gt_clock_monotonic_ns()
                return now < deadline || (now < hardDeadline && preemptedInsideTotal.load(ordering: .relaxed) == 0)
            }
            let handles = try (0..<8).map { i in
                try GreenThread.spawn(name: "locker\(i)") { () -> (Int, Int) in
                    var count = 0, inside = 0
                    let me = GreenThread.current
                    while goOn() {
                        lock.withLock {
                            if insideLock.add(1, ordering: .acquiringAndReleasing).newValue != 1 {
                                exclusionBroken.add(1, ordering: .relaxed)
                            }
                            let before = me.statistics.preemptions
                            spin(nanoseconds: 30_000)
                            if me.statistics.preemptions != before {
                                inside += 1
                                preemptedInsideTotal.add(1, ordering: .relaxed)
                            }
                            insideLock.subtract(1, ordering: .acquiringAndReleasing)
                        }
                        count += 1
                    }
                    return (count, inside)
                }
            }
            let results = try handles.map { try $0.join() }
            return (results.map(\.0).reduce(0, +), handles.map { $0.thread.statistics.preemptions }.reduce(0, +),
                    results.map(\.1).reduce(0, +))
        }
        print("kind=\(kind)\nacquisitions=\(acquisitions)\npreemptions=\(preemptions)")
        print("preempted_inside=\(preemptedInside)\nexclusion_broken=\(exclusionBroken.load(ordering: .relaxed))")
        check(exclusionBroken.load(ordering: .relaxed) == 0, "two green threads were inside the \(kind) at once")
        check(preemptedInside > 0, "no preemption landed inside the lock: the scenario proves nothing")
        print("OK")
    },

    "blocking-handoff": {
        // One processor. A ticker sleeps 1 ms at a time while another green
        // thread blocks its OS thread in the OS for 300 ms: a plain read of
        // an empty pipe, a DispatchSemaphore signalled by a third green
        // thread, or a pthread mutex held across usleep by one thread and
        // wanted by another. The monitor must hand the processor on, so the
        // ticker keeps ticking (without the hand-off it stops for the whole
        // block, or the kernel hangs).
        let kind = option("kind") ?? "read"
        let blockMs = intOption("ms", 300)
        let ticksDuringBlock = try Kernel.run(
            KernelConfiguration(workers: intOption("workers", 1), timeSlice: .milliseconds(10))
        ) { () -> Int in
            let blocking = AtomicCell<Bool>(false)
            let done = AtomicCell<Bool>(false)
            // Same priority as the blocked thread: a higher one would get
            // the processor by its wake-up's preemption signal, which also
            // knocks the blocked OS thread out of its call; only the
            // monitor's hand-off helps an equal.
            let ticker = try GreenThread.spawn(name: "ticker") { () -> Int in
                var ticks = 0
                while !done.atomic.load(ordering: .acquiring) {
                    GreenThread.sleep(for: .milliseconds(1))
                    if blocking.atomic.load(ordering: .acquiring) { ticks += 1 }
                }
                return ticks
            }
            switch kind {
            case "read":
                var pair: [Int32] = [0, 0]
                check(pipe(&pair) == 0, "pipe")
                let fds = pair
                let writer = fds[1]
                var attr = pthread_attr_t()
                pthread_attr_init(&attr)
                var t = pthread_t()
                let delay = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
                delay[0] = writer
                delay[1] = Int32(blockMs)
                pthread_create(&t, &attr, { raw in
                    let p = raw!.assumingMemoryBound(to: Int32.self)
                    usleep(UInt32(p[1]) * 1000)
                    var byte: UInt8 = 1
                    _ = write(p[0], &byte, 1)
                    return nil
                }, delay)
                let reader = try GreenThread.spawn(name: "reader") { () -> Int in
                    blocking.atomic.store(true, ordering: .releasing)
                    var byte: UInt8 = 0
                    let n = read(fds[0], &byte, 1)  // blocks this OS thread
                    blocking.atomic.store(false, ordering: .releasing)
                    return n
                }
                let got = try reader.join()
                check(got == 1, "read returned \(got)")
                pthread_join(t, nil)
            case "semaphore":
                let semaphore = DispatchSemaphore(value: 0)
                let waiter = try GreenThread.spawn(name: "waiter") {
                    blocking.atomic.store(true, ordering: .releasing)
                    semaphore.wait()  // blocks this OS thread
                    blocking.atomic.store(false, ordering: .releasing)
                }
                let signaller = try GreenThread.spawn(name: "signaller") {
                    GreenThread.sleep(for: .milliseconds(blockMs))
                    semaphore.signal()
                }
                try signaller.join()
                try waiter.join()
            case "pthread-sleep":
                let mutex = PthreadMutexLock(recursive: false)
                let holder = try GreenThread.spawn(name: "holder") {
                    mutex.withLock {
                        blocking.atomic.store(true, ordering: .releasing)
                        usleep(UInt32(blockMs) * 1000)  // blocks this OS thread holding the lock
                        blocking.atomic.store(false, ordering: .releasing)
                    }
                }
                let wanter = try GreenThread.spawn(name: "wanter") {
                    GreenThread.sleep(for: .milliseconds(20))
                    mutex.withLock {}  // blocks another OS thread until the holder is done
                }
                try holder.join()
                try wanter.join()
            default:
                check(false, "unknown kind \(kind)")
            }
            done.atomic.store(true, ordering: .releasing)
            return try ticker.join()
        }
        print("kind=\(kind)\nticks_during_block=\(ticksDuringBlock)")
        // A 1 ms ticker across a 300 ms block: a hand-off within a few ms
        // leaves well over a third of the ticks; without one, none.
        check(ticksDuringBlock >= blockMs / 3, "the ticker stopped while a thread was blocked: \(ticksDuringBlock) ticks")
        print("OK")
    },

    "snapshot-os-threads": {
        // Three call-free spinners on one processor with 1 ms slices: once
        // each was preempted, a snapshot shows their OS threads parked with
        // them, the processor's hand-offs, and each parked spinner's own
        // frames (its trace comes from the context saved when it parked).
        let (snapshot, spinnerIDs) = try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .milliseconds(1))) {
            () -> (KernelSnapshot?, [UInt64]) in
            GreenThread.current.setPriority(.highest)
            let spinners = try (0..<3).map { i in try GreenThread.spawn(name: "parker\(i)") { spinUntilStopped() } }
            let spinnerIDs = spinners.map(\.thread.id)
            let deadline = gt_clock_monotonic_ns() + 10_000_000_000
            while spinners.contains(where: { $0.thread.statistics.preemptions == 0 }) && gt_clock_monotonic_ns() < deadline {
                GreenThread.sleep(for: .milliseconds(20))
            }
            let snapshot = Kernel.snapshot(includeStacks: true)
            stopFlag.store(true, ordering: .relaxed)
            for s in spinners { _ = try s.join() }
            return (snapshot, spinnerIDs)
        }
        guard let snapshot, let osThreads = snapshot.osThreads else {
            check(false, "no OS threads in the snapshot")
            return
        }
        let parked = osThreads.filter { $0.role == .parked }
        print("os_threads=\(osThreads.map { "\($0.id):\($0.role.rawValue)" }.joined(separator: ","))")
        print("parked=\(parked.count)\npark_handoffs=\(snapshot.workers[0].parkHandoffs ?? 0)")
        check(parked.count >= 2, "expected the waiting spinners' OS threads parked: \(osThreads)")
        check(parked.allSatisfy { $0.threadID.map(spinnerIDs.contains) == true }, "parked with a spinner: \(parked)")
        check((snapshot.workers[0].parkHandoffs ?? 0) > 0, "no park hand-off counted")
        for p in parked {
            let t = snapshot.thread(id: p.threadID!)!
            let frames = t.trace?.frames.map(\.symbol) ?? []
            check(frames.contains { ($0 ?? "").contains("spinUntilStopped") },
                  "parked thread \(t.id)'s trace misses its own frame: \(frames)")
        }
        print("OK")
    },

    "kernel-lock-holder-takes-no-foreign-lock": {
        // The rule behind the rehearsal (Kernel/Rehearsal.swift): the kernel
        // lock's holder never waits for a pthread lock (the Swift runtime's
        // caches, libc's), since a parked thread may hold it. The test host
        // interposes pthread_mutex_lock and the rwlocks (Tests/GTLockAudit)
        // and counts the ones taken with the kernel lock held, while the
        // program's part of the run exercises the scheduler: preemptions and
        // their hand-offs, a processor retaken from an OS thread blocked in
        // the OS, the sync kit with timeouts, spawns and exits on every
        // worker, the blocking pool and the netpoller. `--disable-fix
        // rehearsal` shows the first uses counted.
        let workers = intOption("workers", 2)
        try Kernel.run(KernelConfiguration(workers: workers, timeSlice: .milliseconds(1))) {
            gt_lock_audit_enable(1)
            defer { gt_lock_audit_enable(0) }
            let spinners = try (0..<(workers + 1)).map { i in
                try GreenThread.spawn(name: "audit-spinner\(i)") {
                    let t0 = gt_clock_monotonic_ns()
                    while gt_clock_monotonic_ns() - t0 < 60_000_000 {}
                }
            }
            let mutex = GreenMutex(name: "audit")
            let condition = GreenCondition(name: "audit")
            let channel = GreenChannel<Int>(capacity: 0, name: "audit")
            let semaphore = GreenSemaphore(value: 0, name: "audit")
            let users = try (0..<8).map { i in
                try GreenThread.spawn(name: "audit-user\(i)", priority: .high) {
                    for round in 0..<20 {
                        try? mutex.lock()
                        if round % 5 == 0 { _ = try? condition.wait(mutex, timeout: .microseconds(100)) }
                        try? mutex.unlock()
                        _ = try? mutex.lock(timeout: .microseconds(20))
                        if mutex.owner === GreenThread.current { try? mutex.unlock() }
                        if i % 2 == 0 { try? channel.send(round) } else { _ = channel.receive() }
                        semaphore.signal()
                        _ = semaphore.wait(timeout: .microseconds(50))
                        GreenThread.sleep(for: .microseconds(100))
                        GreenThread.yield()
                    }
                }
            }
            // An OS-thread block longer than the hand-off threshold: the
            // monitor retakes the processor.
            let blocker = try GreenThread.spawn(name: "audit-blocker") { _ = usleep(5_000) }
            let pooled = try GreenThread.spawn(name: "audit-pool") {
                for _ in 0..<4 { _ = try? GreenThread.blocking { usleep(1_000) } }
            }
            var fds: [Int32] = [0, 0]
            check(pipe(&fds) == 0, "pipe")
            let readEnd = fds[0]
            let reader = try GreenThread.spawn(name: "audit-reader") {
                var byte: UInt8 = 0
                _ = try? withUnsafeMutableBytes(of: &byte) { try GreenIO.read(readEnd, into: $0) }
            }
            GreenThread.sleep(for: .milliseconds(2))
            var one: UInt8 = 1
            _ = try withUnsafeBytes(of: &one) { try GreenIO.write(fds[1], from: $0) }
            let many = try (0..<500).map { _ in try GreenThread.spawn { GreenThread.yield() } }
            for h in many { try h.join() }
            for h in users + spinners + [blocker, pooled, reader] { _ = try h.join() }
            close(fds[0])
            close(fds[1])
        }
        let violations = gt_lock_audit_violations()
        print("violations=\(violations)")
        if violations > 0 { gt_lock_audit_report() }
        check(violations == 0, "the kernel lock's holder took \(violations) pthread locks (stacks on stderr)")
        print("OK")
    },
]
