// Rehearsal: the first preemptive `Kernel.run` of a process first runs a
// short kernel of its own that walks the scheduler's paths once, before any
// of the program's code runs on green threads.
//
// Why. A preempted thread keeps every lock it holds while parked (park.c),
// and only the kernel lock's holder can resume it. So the kernel lock's
// holder must never wait for a lock that a green thread can hold (the rule
// the test host's lock audit checks, Tests/GTLockAudit). The scheduler is
// Swift code, and Swift code takes the runtime's locks the first time a
// process needs a type's metadata, a witness table or a key path, and in
// debug builds for every generic type the unspecialized code touches
// (`Optional.map` over an `Unmanaged<GreenThread>`). Seen under load: the
// main thread was parked inside the metadata cache of `Optional` (its
// first use of some `Optional<T>`) when a spare OS thread, holding the
// kernel lock in `requeueParked`, asked that cache for its first
// `Optional<Unmanaged<GreenThread>>`: every OS thread of the kernel stopped.
// Those caches are filled once per process and read without a lock after,
// so walking the paths once, with nothing else running, fills what the
// kernel itself needs. The allocator, whose locks are taken every time, is
// the other dependency and has its own rule (allocator.c).
//
// What it covers: spawn, first run, yield, join and exit on every worker;
// blocking and waking through a semaphore, a contended mutex with
// inheritance, a timed-out mutex wait, a condition, a channel; sleeping on
// a timer; `SyncInvariants.violations()` and a snapshot (gt-ps's path);
// a deadlock cycle refused with its report; a preemption's park and
// hand-off to a spare OS thread and back (forced, not waited for); the
// blocking pool and the netpoller. It costs about 3 ms once per process. A path it does not walk (say, the
// monitor retaking a processor from an OS thread blocked in a system call)
// fills its caches the first time it runs, as before; the audit's scenario
// runs the rest of the kernel's paths to find them.
import CGreenCore
import Glibc
import Synchronization

enum Rehearsal {
    /// Guarded by `Kernel.run`'s one-kernel-at-a-time flag.
    nonisolated(unsafe) static var isDue = true

    /// The program's worker count and preemption, a slice long enough that
    /// no timer preempts the rehearsal (it parks its threads itself), no
    /// debug server.
    static func configuration(like program: KernelConfiguration) -> KernelConfiguration {
        var c = KernelConfiguration(workers: program.workers, timeSlice: .seconds(10),
                                    defaultStackSize: program.defaultStackSize, preemption: true)
        c.debugServer = false
        return c
    }

    /// Numbers of the rehearsal's threads, far from the program's (which
    /// start at 1 with its main thread, as if no rehearsal had run).
    static let threadIDs = Atomic<UInt64>(1 << 63)

    /// The main green thread of the rehearsal kernel. Errors end it early:
    /// a rehearsal that cannot finish leaves the rest to first use.
    static func run(workers: Int) {
        guard hazardFix(GT_FIX_REHEARSAL) else { return }
        try? walkThreadsAndWaits(workers: workers)
        try? walkParkAndHandOff()
        try? walkDeadlockCycle()
        try? walkServices()
    }

    private static func walkThreadsAndWaits(workers: Int) throws {
        let mutex = GreenMutex(name: "rehearsal")
        let condition = GreenCondition(name: "rehearsal")
        let semaphore = GreenSemaphore(value: 0, name: "rehearsal")
        let channel = GreenChannel<Int>(capacity: 0, name: "rehearsal")
        let buffered = GreenChannel<Int>(capacity: 1, name: "rehearsal")
        try mutex.lock()
        // One thread per worker, so that spawns wake idle processors.
        let spawned = try (0..<max(2, workers)).map { i in
            try GreenThread.spawn(name: "rehearsal-\(i)", priority: .high) {
                GreenThread.yield()
                if i == 0 {
                    try? mutex.lock()          // contended: inheritance, then a hand-off
                    try? mutex.unlock()
                    semaphore.signal()
                    try? channel.send(1)
                    try? buffered.send(2)
                } else {
                    _ = semaphore.wait(timeout: .milliseconds(1))
                }
            }
        }
        GreenThread.yield()
        _ = SyncInvariants.violations()   // public, under the lock, while rehearsal-0 waits
        // A snapshot (without stacks: symbolizing them costs 3-4 ms here)
        // and a running thread's trace slot, a lazy global of a C type.
        _ = Kernel.snapshot(includeStacks: false)
        _ = TraceCapture.request
        try mutex.unlock()
        _ = channel.receive()
        _ = buffered.receive()
        let holder = try GreenThread.spawn(name: "rehearsal-holder") {
            try? mutex.lock()
            GreenThread.sleep(for: .microseconds(200))
            try? mutex.unlock()
        }
        GreenThread.yield()
        _ = try? mutex.lock(timeout: .microseconds(50))   // times out: withdrawn from the queue
        if mutex.owner === GreenThread.current { try? mutex.unlock() }
        try holder.join()
        try mutex.lock()
        _ = try? condition.wait(mutex, timeout: .microseconds(50))
        try mutex.unlock()
        for w in spawned { try w.join() }
    }

    /// Parks a thread as a preemption would (a pending preemption honoured
    /// when a critical section ends), with a peer of its level ready: its
    /// OS thread parks, a spare takes the processor and requeues it, and
    /// picking it again hands the processor back.
    private static func walkParkAndHandOff() throws {
        let peer = try GreenThread.spawn(name: "rehearsal-peer") {
            for _ in 0..<4 { GreenThread.yield() }
        }
        let parker = try GreenThread.spawn(name: "rehearsal-parker") {
            for _ in 0..<2 {
                let ws = gt_enter_critical()!
                ws.pointee.preempt_pending = 1
                KernelCore.exitCritical()
                GreenThread.yield()
            }
        }
        try parker.join()
        try peer.join()
    }

    /// Two threads that each hold the mutex the other wants: whichever
    /// closes the cycle gets `.deadlock` (the report is built under the
    /// lock), does not acquire, and lets go of what it holds.
    private static func walkDeadlockCycle() throws {
        let a = GreenMutex(name: "rehearsal-a"), b = GreenMutex(name: "rehearsal-b")
        let holdsA = GreenSemaphore(value: 0, name: "rehearsal")
        try b.lock()
        let crosser = try GreenThread.spawn(name: "rehearsal-crosser") {
            try? a.lock()
            holdsA.signal()
            if (try? b.lock()) != nil { try? b.unlock() }
            try? a.unlock()
        }
        holdsA.wait()
        let gotA = (try? a.lock()) != nil
        try b.unlock()
        if gotA { try a.unlock() }
        try crosser.join()
    }

    private static func walkServices() throws {
        try GreenThread.blocking {}
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        defer { close(fds[0]); close(fds[1]) }
        let readEnd = fds[0]
        let reader = try GreenThread.spawn(name: "rehearsal-reader") {
            _ = try? GreenIO.waitReadable(readEnd, timeout: .milliseconds(100))
        }
        GreenThread.sleep(for: .microseconds(100))
        var byte: UInt8 = 1
        _ = try withUnsafeBytes(of: &byte) { try GreenIO.write(fds[1], from: $0) }
        try reader.join()
    }
}
