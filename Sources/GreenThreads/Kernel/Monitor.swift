// Monitor: the kernel's OS thread that runs no green threads (Go's sysmon).
// Its duties, each pass:
//   1. timers: wake sleepers and time out timed waits at their deadlines,
//      waking an idle processor or preempting a lower-priority thread for
//      them (makeReady), so a deadline is met even while every CPU is busy;
//   2. returned Machines: a Machine that parked after losing its processor
//      (park.c's returned list) has its thread requeued, bound to it;
//   3. hand-off of blocked Machines: a processor whose Machine has been
//      blocked in the OS (a blocking read, a pthread lock held by a parked
//      thread, a semaphore, a page-fault storm) for `blockedHandoffAfter` is
//      taken from it and given to a spare Machine; when the blocked Machine
//      comes back to green code without a processor it parks (it is poked
//      with a signal as soon as it uses CPU again);
//   4. spares: keep `processors.count` spare Machines ready, so a
//      preemption never waits for pthread_create (which is not
//      async-signal-safe, so the handler cannot call it), and retire extras;
//   5. join Machines that have exited and give back their stacks;
//   6. with I/O in use, poll epoll without waiting while the netpoller's
//      thread does not watch (IO/Netpoller.swift).
// Duties 4 and 5 are run by the keeper thread on the monitor's request
// (`runKeeper` below): the monitor itself never allocates nor takes a lock
// that a parked thread may hold.
//
// "Blocked in the OS" is observed, not declared: we cannot mark every
// blocking call a program may make (Go's entersyscall). A processor is
// retaken when, over a whole threshold, it made no switch, its Machine used
// no CPU time, is not inside a critical section of ours, and its OS thread
// sleeps ('S' or 'D' in /proc). A Machine that is merely waiting for a CPU
// is runnable ('R') and keeps its processor.
import CGreenCore
import Glibc

extension KernelCore {
    /// The monitor wakes at least this often for housekeeping, such as giving
    /// back the memory of stacks freed in a burst (100 ms: ten cheap wake-ups
    /// a second bound how long that memory lingers).
    static let housekeepingInterval: Int64 = 100_000_000

    /// While every processor is busy with threads no waiter on I/O
    /// outranks, readiness waits for this look at most (1 ms: a tenth of the
    /// default slice, so a woken thread still gets its turn within about a
    /// slice; Go's sysmon looks every 10 ms).
    static let unwatchedIOLookInterval: Int64 = 1_000_000

    /// The monitor's loop; returns when the kernel shuts down.
    func runMonitor() {
        var watch = [ProcessorWatch](repeating: ProcessorWatch(), count: processors.count)
        let threshold = configuration.blockedHandoffAfter.nanosecondsClamped
        lock.lock()
        while !shuttingDown {
            let now = gt_clock_monotonic_ns()
            fireTimers(now: now)
            while let r = gt_returned_pop() { requeueReturned(Machine.from(r)) }
            let busy = hazardFix(GT_FIX_HANDOFF)
                ? retakeBlockedProcessors(now: now, threshold: threshold, watch: &watch) : false
            pokeReturnedMachines()
            // Readiness nobody watches while every processor is busy with
            // threads no waiter on I/O outranks: seen here, at least every
            // millisecond (the look below), like Go's sysmon poll.
            if busy, let poller { _ = poller.pollNow(for: nil) }
            // A stale entry may have been all that kept an all-idle kernel
            // from being declared deadlocked.
            if checkForDeadlock() { break }
            let create = spareMachineWork()
            if create > 0 || timers.wantsGrowth || exitedMachines > 0 {
                keeperMachinesToStart += create
                wakeKeeper()
            }
            var untilNext = timers.earliest.map { max(0, $0.deadline - now) } ?? Int64.max
            untilNext = min(untilNext, KernelCore.housekeepingInterval)
            // While a processor runs a thread, look again within half the
            // threshold; an all-idle kernel sleeps until it has work.
            if busy { untilNext = min(untilNext, max(threshold / 2, 100_000)) }
            // With I/O in use, the look that finds readiness nobody watches
            // (above) comes at least every millisecond, whatever the threshold.
            if busy && poller != nil { untilNext = min(untilNext, KernelCore.unwatchedIOLookInterval) }
            monitorSleepsLong = !busy
            // Set under the lock: a deadline added from here on either sees
            // this alarm and brings it forward, or was seen above.
            monitorAlarmAt = now + untilNext
            gt_monitor_arm(monitorTimerFD, monitorAlarmAt)
            lock.unlock()
            gt_monitor_wait(monitorEventFD, monitorTimerFD)
            lock.lock()
        }
        lock.unlock()
    }

    // MARK: The keeper

    /// The keeper: the monitor's errand runner (Go's template thread). It
    /// starts and joins Machines, grows the timer heap and trims the stack
    /// pool. All of that allocates or takes libc's locks (pthread_create
    /// allocates the new thread's TLS), and a parked thread may hold any of
    /// those; the monitor, which is what resumes parked threads when OS
    /// threads block, must never wait for one, so it delegates. If the
    /// keeper waits for a lock a parked thread holds, the monitor's hand-offs
    /// get that thread resumed.
    func runKeeper() {
        while true {
            let seq = gt_atomic_load_u32(keeperWord)
            let (create, stop, grow): (Int, Bool, Bool) = withCriticalLock {
                let n = keeperMachinesToStart
                keeperMachinesToStart = 0
                return (n, shuttingDown, timers.wantsGrowth)
            }
            if stop { return }
            if grow { growTimerStorage() }
            for _ in 0..<create { startSpareMachine() }
            if create > 0 { retryPendingPreemptions() }
            joinExitedMachines()
            // Return the memory of stacks freed in bulk.
            StackPool.shared.trimExcess()  // returns at once when nothing is in excess
            _ = gt_sys_futex_wait(keeperWord, seq, KernelCore.housekeepingInterval)
        }
    }

    func wakeKeeper() { gt_wake_word(keeperWord) }

    /// Duty 1. Kernel lock held.
    private func fireTimers(now: Int64) {
        while let top = timers.earliest, top.deadline <= now {
            _ = timers.popEarliest()
            let thread = top.thread
            guard top.generation == thread.timerGeneration,
                  thread.runState == .sleeping || thread.runState == .blocked else { continue }
            // The object takes the thread off its queue (no closure per
            // wait: WaitRecord.swift); makeReady clears the wait.
            thread.wait?.target?.withdraw(thread)
            makeReady(thread, reason: .timedOut)
        }
    }

    /// Duty 3. Returns whether any processor is running a thread. Kernel lock held.
    private func retakeBlockedProcessors(now: Int64, threshold: Int64, watch: inout [ProcessorWatch]) -> Bool {
        var busy = false
        for p in processors {
            guard let m = p.heldBy, let thread = p.current, m.current === thread, let ms = m.state else {
                watch[p.index] = ProcessorWatch()
                continue
            }
            busy = true
            let cpu = gt_thread_cpu_ns_of(m.pthread)
            var w = watch[p.index]
            if w.thread != thread.id || w.switches != p.switches || w.cpuNanoseconds != cpu {
                watch[p.index] = ProcessorWatch(thread: thread.id, switches: p.switches, cpuNanoseconds: cpu, since: now)
                continue
            }
            guard now - w.since >= threshold, !m.isParked,
                  gt_atomic_load_u32(UnsafeMutableRawPointer(ms).advanced(by: KernelCore.criticalOffset)
                    .assumingMemoryBound(to: UInt32.self)) == 0 else { continue }
            let osState = gt_os_thread_state(ms.pointee.tid)
            guard osState == CChar(UInt8(ascii: "S")) || osState == CChar(UInt8(ascii: "D")) else {
                w.since = now  // runnable, waiting for a CPU: look again later
                watch[p.index] = w
                continue
            }
            guard gt_processor_retake(ms, p.opaque) != 0 else { continue }
            // `m` goes on running `thread` without a processor; the thread
            // stays .running (it is, in the OS) until its Machine parks.
            p.heldBy = nil
            p.current = nil
            p.blockedHandoffs &+= 1
            // (Capacity reserved: no allocation under the lock; a Machine
            // not watched parks at its next tick instead.)
            if blockedMachines.count < blockedMachines.capacity {
                blockedMachines.append(BlockedMachine(machine: m, cpuNanoseconds: cpu))
            }
            watch[p.index] = ProcessorWatch()
            // A Machine blocked in the OS most often waits for a lock that a
            // preempted thread holds (stdio, malloc, the program's own
            // mutexes), and the holder was most likely preempted recently:
            // resume the latest parked thread of the top level first, rather
            // than start one more thread that may block on the same lock.
            // Measured (64 threads printing under 1 ms slices): without it,
            // a preempted holder of stdout's lock cost one hand-off per
            // waiter in turn and throughput fell by up to 6x.
            if let holder = runQueue.removeLatestParked(limit: KernelCore.parkedScanLimit) {
                hand(p, toParked: holder)
            } else {
                give(p)
            }
        }
        return busy
    }

    /// Gives a processor nobody holds to a spare Machine, or to a new one.
    /// Kernel lock held.
    func give(_ p: Processor) {
        if let spare = gt_spare_pop() {
            hand(p, to: Machine.from(spare))
        } else {
            pendingProcessors.append(p)  // started by the monitor, outside the lock
        }
    }

    /// Duty 3, second half: a blocked Machine that uses CPU again is running
    /// green code without a processor: ask it to park now rather than at
    /// its next tick. Kernel lock held.
    private func pokeReturnedMachines() {
        guard !blockedMachines.isEmpty else { return }
        blockedMachines.removeEvery { b in
            let m = b.machine
            guard let ms = m.state, m.current != nil, m.processor == nil, !m.isParked else { return true }
            let cpu = gt_thread_cpu_ns_of(m.pthread)
            if cpu != b.cpuNanoseconds {
                // Without preemption there is no handler: it parks at its
                // next library entry (gt_exit_critical) instead.
                if configuration.preemption { gt_request_preemption(ms) }
                return true
            }
            return false
        }
    }

    /// Duty 4: how many spares to start; retires extras. Kernel lock held.
    private func spareMachineWork() -> Int {
        guard configuration.preemption else { return pendingProcessors.count }
        let target = processors.count
        let spares = Int(gt_spare_count())
        if spares > 2 * target {
            // Retire the extras: they wake, leave the pool and exit.
            var extra = spares - 2 * target
            // Never the caller of Kernel.run: it returns only at shutdown.
            for m in machines where extra > 0 && m.osThread != nil && m.processor == nil
                && m.current == nil && !m.retiring {
                // One read: see KernelCore.beginShutdown.
                guard let ms = m.state else { continue }
                m.retiring = true
                gt_park_wake(ms)
                extra -= 1
            }
        }
        let room = max(0, configuration.maxOSThreads - machines.count - startingMachines)
        let wanted = max(0, target - spares - startingMachines) + pendingProcessors.count
        let create = min(wanted, room)
        startingMachines += create
        return create
    }

    /// Doubles the timer heap's storage: allocated here, without the lock,
    /// adopted under it, the old storage freed after.
    private func growTimerStorage() {
        var fresh: [TimerHeap.Entry] = []
        fresh.reserveCapacity(2 * timers.capacity)
        let old = withCriticalLock { timers.adopt(fresh) }
        _ = old  // freed here, outside the lock
    }

    /// A preemption that found no spare Machine stays pending on its
    /// Machine until the next tick (up to 4 ms here); with spares started,
    /// ask those Machines again now.
    private func retryPendingPreemptions() {
        withCriticalLock {
            for m in machines {
                guard let ms = m.state, m.current != nil, ms.pointee.preempt_pending != 0 else { continue }
                gt_request_preemption(ms)
            }
        }
    }

    /// Duty 5: joins Machines whose loop has returned, one at a time, each
    /// taken out of `machines` (and the monitor's watch list) under the lock
    /// and joined, and released, outside it.
    private func joinExitedMachines() {
        while let m = withCriticalLock({ () -> Machine? in
            guard let i = machines.indexOfFirst(where: { $0.exited }) else { return nil }
            let m = machines.remove(at: i)
            exitedMachines -= 1
            blockedMachines.removeEvery { $0.machine === m }
            return m
        }) {
            joinMachine(m)
        }
    }

    /// Starts one Machine (outside the kernel lock): it takes a processor
    /// the monitor could not give to a spare, or joins the spare pool.
    func startSpareMachine() {
        let p = withCriticalLock { pendingProcessors.popLast() }
        do {
            try startMachine(holding: p)
        } catch {
            withCriticalLock {
                startingMachines -= 1
                if let p { pendingProcessors.append(p) }
            }
            gt_write_stderr("GreenThreads: cannot start an OS thread: \(error)\n")
        }
    }

    /// Starts a Machine on a new OS thread with a stack from the pool. It
    /// runs `p` if given, else waits as a spare. Call without the kernel lock.
    func startMachine(holding p: Processor?) throws {
        let m = Machine(kernel: self)  // allocated outside the lock
        withCriticalLock { register(m) }
        do {
            let stack = try withCriticalLock { try StackPool.shared.allocate(size: KernelCore.machineStackSize) }
            m.stack = stack
            m.osThread = try OSThread.start(name: "gt-m\(m.id)", blockingPreemptionSignal: false, stack: stack) {
                [kernel = self] in
                m.attachAndRun(handing: {
                    kernel.withCriticalLock {
                        kernel.startingMachines = max(0, kernel.startingMachines - 1)
                        if let p { kernel.hand(p, to: m) }
                    }
                })
            }
        } catch {
            withCriticalLock {
                machines.removeEvery { $0 === m }
                if let stack = m.stack { StackPool.shared.release(stack) }
            }
            throw error
        }
    }

    /// Adds a Machine to the kernel's list (capacity reserved). Kernel lock held.
    func register(_ m: Machine) {
        m.id = nextMachineID
        nextMachineID += 1
        machines.append(m)
    }

    /// Makes `m` (attached, not holding anything) the holder of `p`. Kernel lock held.
    func hand(_ p: Processor, to m: Machine) {
        p.heldBy = m
        gt_park_resume(m.state, p.opaque)
    }

    func joinMachine(_ m: Machine) {
        m.osThread?.join()
        if let stack = m.stack {
            withCriticalLock { StackPool.shared.release(stack) }
        }
        m.stack = nil
    }

    /// Bytes of OS stack for a Machine: its scheduling loop is shallow, but
    /// glibc keeps the thread's control block and static TLS at its top, and
    /// a SIGVTALRM landing in the scheduling context runs here too. Untouched
    /// pages cost nothing (measured RSS per parked Machine: docs/preemption.md).
    static let machineStackSize = 64 * 1024

    /// How far back the monitor looks for a parked thread to resume after
    /// a hand-off (a bounded scan under the lock: 64 threads is a few
    /// hundred nanoseconds).
    static let parkedScanLimit = 64

    static let criticalOffset = MemoryLayout<gt_worker_state>.offset(of: \gt_worker_state.critical)!
}

/// What the monitor saw of one processor at its last look.
struct ProcessorWatch {
    var thread: UInt64 = 0
    var switches: UInt64 = 0
    var cpuNanoseconds: Int64 = -1
    var since: Int64 = 0
}

/// A Machine whose processor the monitor took while it was blocked.
struct BlockedMachine {
    /// Unowned: the keeper takes a Machine off this list, under the lock,
    /// before it joins and releases it (a release here could free memory
    /// under the lock).
    unowned(unsafe) let machine: Machine
    let cpuNanoseconds: Int64
}
