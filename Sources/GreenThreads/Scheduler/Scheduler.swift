// Scheduler: every path that switches an OS thread (Machine) from one
// context to another, and the small interface that the rest of the library
// (sleep, join, sync primitives) uses: block the current thread, make a
// thread ready, change a priority.
//
// The switch protocol. A context switch happens only
//   - with the kernel lock held, and
//   - with this OS thread's critical count at exactly 1 (preemption off).
// The outgoing context records what should happen to it (`SwitchAction`) in
// its Machine, then `gt_switch`es. The resumed context, on the same OS
// thread, runs `finishSwitch`: it completes the outgoing context's action
// (requeue a yielded thread, reap a finished one), releases the kernel lock,
// restores its own errno and exclusivity access set. Then it lowers the count
// it raised before it switched out. Because a yielded thread is requeued only
// after its context is saved, no other Machine can pick it up half-saved.
//
// Only cooperative switches come here (yield, block, exit, and the
// scheduling loop starting a thread). A preempted thread never switches: its
// Machine parks with it (CGreenCore/park.c) and the thread waits in the run
// queue "bound" to that Machine (`boundMachine`). Picking a bound thread
// hands the processor to its Machine instead of switching to it; from a
// green thread that takes a detour through the scheduling context
// (`resumeNext`), since the handing Machine must leave the green stack first.
//
// Scheduling policy: strict priority across the 32 levels, FIFO within a
// level. A yield or an expired time slice gives the CPU to the first ready
// thread of the same or a higher level (round-robin); a thread made ready at
// a higher level than a running one preempts it at once (see
// `preemptLowerIfNeeded`). A processor whose thread parks where threads of
// that level wait on I/O, with only lower threads ready, first waits up to
// 50 us for the next such event (`shouldLinger`, Machine.linger), so I/O work
// beside low CPU work does not preempt once per event.
import CGreenCore
import Glibc

/// What the context that resumes must do with the one that switched out.
enum SwitchAction {
    /// Nothing: the idle context, or a thread that parked itself.
    case none
    /// Put it back at the tail of its run-queue level (yield, preemption).
    case requeue
    /// It finished: free its stack and drop it from the registry.
    case exit
}

/// First code of every green thread, reached through gt_trampoline. Runs
/// with the kernel lock held and the critical count raised by the context
/// that switched to it. Never returns: the thread ends by switching away.
let greenThreadEntry: @convention(c) (UnsafeMutableRawPointer?) -> Void = { argument in
    KernelCore.finishSwitch()
    KernelCore.exitCritical()
    runThreadBody(argument!)
    KernelCore.exitCurrentThread()
}

/// Runs the thread's body. A separate function, so that every reference it
/// takes is released when it returns, before the thread's last switch (a
/// frame that never returns would leak what it holds).
@inline(never)
private func runThreadBody(_ argument: UnsafeMutableRawPointer) {
    let thread = Unmanaged<GreenThread>.fromOpaque(argument).takeUnretainedValue()
    let body = thread.body
    thread.body = nil
    body?()
    thread.tearDownLocals()  // outside the kernel lock: the values' deinits may use green primitives
}

extension KernelCore {
    // MARK: The switch

    /// Switches Machine `m` from its current context to `next` (nil: its
    /// scheduling context). Requires the kernel lock and a critical count
    /// of 1; returns when the outgoing context is resumed, with the lock
    /// released (see the protocol above).
    /// `now` is the time-stamp that ends the outgoing thread's slice and
    /// starts the next one's: a caller that has just read it passes it on
    /// (a read costs about 18 ns on this virtual machine).
    func switchTo(_ next: Unmanaged<GreenThread>?, on m: Machine, action: SwitchAction, now: UInt64 = gt_tsc()) {
        let (save, load) = prepareSwitch(to: next, on: m, action: action, now: now)
        gt_switch(save, load)
        KernelCore.finishSwitch()
    }

    /// Picks what the current thread of `m` switches to when it stops
    /// running: the next unbound ready thread, or the scheduling context
    /// (which hands the processor to a picked parked thread's Machine, or
    /// waits as a spare when the monitor took the processor away).
    func switchAway(from m: Machine, action: SwitchAction, now: UInt64 = gt_tsc(), lingerFrom level: Int = -1) {
        switchTo(pickSwitchTarget(m, lingerFrom: level), on: m, action: action, now: now)
    }

    @inline(__always)
    func pickSwitchTarget(_ m: Machine, lingerFrom level: Int = -1) -> Unmanaged<GreenThread>? {
        guard let p = m.processorRef else { return nil }
        if level >= 0 && shouldLinger(from: level) {
            // The scheduling context lingers (Machine.linger), then picks.
            m.lingerLevel = level
            return nil
        }
        guard let next = p._withUnsafeGuaranteedRef({ pickNext($0) }) else { return nil }
        if next._withUnsafeGuaranteedRef({ $0.isBound }) {
            m.resumeNext = next
            return nil
        }
        return next
    }

    /// Everything before the switch instruction: account the outgoing
    /// thread's CPU time, save its errno and exclusivity access set, and
    /// install `next` as the Machine's current context.
    @inline(__always)
    func prepareSwitch(to next: Unmanaged<GreenThread>?, on m: Machine, action: SwitchAction, now: UInt64)
        -> (UnsafeMutablePointer<UnsafeMutableRawPointer?>, UnsafeMutableRawPointer)
    {
        let ws: UnsafeMutablePointer<gt_worker_state> = m.state
        precondition(ws.pointee.critical == 1,
                     "switch with critical count \(ws.pointee.critical) on OS thread \(m.id): a switch must be made at count 1")
        let save: UnsafeMutablePointer<UnsafeMutableRawPointer?>
        // One time-stamp read per switch (`now`): it ends the outgoing
        // thread's time and starts the next's.
        if let prev = m.currentRef {
            let core = prev._withUnsafeGuaranteedRef { prev in
                prev.runningOn = nil
                return prev.core!
            }
            core.pointee.cpu_ticks &+= now &- ws.pointee.slice_start
            core.pointee.cpu_tick_ns &+= UInt64(ws.pointee.slice_periods) &* UInt64(ws.pointee.tick_ns)
            if hazardFix(GT_FIX_ERRNO) { core.pointee.saved_errno = ws.pointee.errno_location.pointee }
            if hazardFix(GT_FIX_EXCLUSIVITY) {
                swift_task_exitThreadLocalContext(KernelCore.exclusivityState(core))
            }
            // sp is the block's first field (static-asserted in context.c).
            save = UnsafeMutableRawPointer(core).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        } else {
            save = m.idleContext
        }
        m.previousRef = m.currentRef
        m.previousAction = action
        ws.pointee.slice_start = now
        let p = m.processorRef
        let load: UnsafeMutableRawPointer
        if let next {
            let (core, level) = next._withUnsafeGuaranteedRef { next in
                next.runState = .running
                next.runningOn = m
                return (next.core!, next.effectivePriorityLevel)
            }
            if level < ioWatchLevel { poller?.watchNeeded() }
            m.currentRef = next
            p?._withUnsafeGuaranteedRef { p in
                p.currentRef = next
                p.switches &+= 1
            }
            ws.pointee.current = core
            ws.pointee.current_owner = core.pointee.owner
            load = core.pointee.sp!
        } else {
            m.currentRef = nil
            p?._withUnsafeGuaranteedRef { p in
                if p.heldBy === m { p.currentRef = nil }
            }
            ws.pointee.current = nil
            ws.pointee.current_owner = nil
            load = m.idleContext.pointee!
        }
        return (save, load)
    }

    static func exclusivityState(_ core: UnsafeMutablePointer<gt_thread_core>) -> UnsafeMutablePointer<CChar> {
        let offset = MemoryLayout<gt_thread_core>.offset(of: \gt_thread_core.exclusivity)!
        return (UnsafeMutableRawPointer(core) + offset).assumingMemoryBound(to: CChar.self)
    }

    /// Runs in the context that was just switched to (see the protocol).
    static func finishSwitch() {
        let ws = gt_self()!  // critical count is raised: this OS thread stays ours
        Machine.ref(ws)._withUnsafeGuaranteedRef { m in
            m.kernelRef._withUnsafeGuaranteedRef { kernel in kernel.finishSwitch(on: m, ws) }
        }
    }

    @inline(__always)
    private func finishSwitch(on m: Machine, _ ws: UnsafeMutablePointer<gt_worker_state>) {
        if let previous = m.previousRef {
            previous._withUnsafeGuaranteedRef { previous in
                switch m.previousAction {
                case .requeue:
                    // With its processor gone (retaken while it was blocked in
                    // the OS), no one here will look at the queue: wake someone.
                    if m.processorRef == nil {
                        makeReady(previous)
                    } else {
                        runQueue.push(previous)
                        // A yielded thread is for any processor: a spinner takes it at once.
                        if spinningProcessors > 0 { noteSpinnersReady(handedOff: false) }
                    }
                case .exit: reap(previous)
                case .none: break
                }
            }
            m.previousRef = nil
        }
        m.previousAction = .none
        guard let current = m.currentRef else {
            lock.unlock()
            return
        }
        let core = current._withUnsafeGuaranteedRef { $0.core! }
        core.pointee.switches &+= 1
        ws.pointee.slice_periods = 0  // slice_start was set by the switcher, on this OS thread
        ws.pointee.preempt_pending = 0
        lock.unlock()
        // This OS thread's access set is empty here (Machine.attach set
        // aside its own; the outgoing thread's was saved): a thread that
        // saved none has nothing to restore, and skipping the call saves a
        // lookup of the runtime's TLS (general-dynamic from libswiftCore).
        if hazardFix(GT_FIX_EXCLUSIVITY) {
            if core.pointee.exclusivity.0 != 0 {
                swift_task_enterThreadLocalContext(KernelCore.exclusivityState(core))
            } else {
                #if DEBUG
                // What the skip relies on: entering an empty set would find
                // this OS thread's set empty and change nothing.
                swift_task_enterThreadLocalContext(KernelCore.exclusivityState(core))
                precondition(core.pointee.exclusivity.0 == 0,
                             "exclusivity accesses left open on OS thread \(m.id) across a switch")
                #endif
            }
        }
        if hazardFix(GT_FIX_ERRNO) { ws.pointee.errno_location.pointee = core.pointee.saved_errno }
    }

    /// The next thread to run on processor `p`. Kernel lock held.
    @inline(__always)
    func pickNext(_ p: Processor) -> Unmanaged<GreenThread>? {
        runQueue.popFair(slice: (p.averagePeriodsX16 + 8) / 16)
    }

    /// Deficit round-robin (RunQueue.swift): a thread preempted after using
    /// more tick periods than the processor's average slice owes the excess;
    /// one that used less is forgiven what it owed, up to the difference.
    /// Debt is capped at sixteen average slices (measured under a load
    /// average of 6: a cap of four left 7-16% spreads between equal
    /// spinners, sixteen none above 5% in ten runs), so even a slice the OS
    /// stretched a lot is repaid over turns rather than by starving anyone.
    static func chargePreemptedSlice(_ core: UnsafeMutablePointer<gt_thread_core>, periods: UInt64,
                                     on p: Processor) {
        let used = Int32(clamping: periods)
        var average16 = p.averagePeriodsX16
        if average16 == 0 { average16 = used * 16 }
        average16 += (used * 16 - average16) / 8  // moving average over ~8 slices
        p.averagePeriodsX16 = average16
        let average = max(1, (average16 + 8) / 16)
        core.pointee.debt_periods = min(16 * average, max(0, core.pointee.debt_periods + used - average))
    }

    // MARK: Parked threads

    /// A Machine parked with its preempted thread and handed processor `p`
    /// to `by` (a spare, now in its scheduling context): the thread goes to
    /// the run queue bound to its Machine. Kernel lock held.
    func requeueParked(_ parked: Machine, on p: Processor, by m: Machine) {
        let thread = parked.current!
        p.heldBy = m
        p.current = nil
        p.preemptions &+= 1
        p.parkHandoffs &+= 1
        KernelCore.chargePreemptedSlice(thread.core!, periods: thread.core!.pointee.parked_periods, on: p)
        thread.runningOn = nil
        thread.runState = .ready
        thread.boundMachine = parked
        runQueue.push(thread)
        if spinningProcessors > 0 { noteSpinnersReady(handedOff: false) }
    }

    /// A Machine parked after the monitor took its processor (it was blocked
    /// in the OS): the thread waits for any processor. Kernel lock held.
    func requeueReturned(_ machine: Machine) {
        let thread = machine.current!
        thread.runningOn = nil
        thread.boundMachine = machine
        makeReady(thread)
    }

    /// Hands the processor of `m` (in its scheduling context) to the Machine
    /// parked with `thread`, which resumes it; `m` is left without one.
    /// Kernel lock held.
    func resumeParked(_ thread: GreenThread, from m: Machine) {
        guard let p = m.processor else {
            // Lost meanwhile (cannot happen with the lock held by a Machine
            // in its scheduling context, which the monitor never retakes).
            preconditionFailure("OS thread \(m.id) handing off a processor it does not hold")
        }
        _ = gt_processor_retake(m.state, p.opaque)
        hand(p, toParked: thread)
    }

    /// Gives processor `p`, held by no one, to the Machine parked with
    /// `thread`, which resumes it. Kernel lock held.
    func hand(_ p: Processor, toParked thread: GreenThread) {
        let target = thread.boundMachine!
        thread.boundMachine = nil
        let ts: UnsafeMutablePointer<gt_worker_state> = target.state
        p.heldBy = target
        p.current = thread
        p.resumeHandoffs &+= 1
        p.switches &+= 1
        if thread.effectivePriorityLevel < ioWatchLevel { poller?.watchNeeded() }
        thread.runState = .running
        thread.runningOn = target
        thread.core!.pointee.switches &+= 1
        // Its fresh slice starts now; these are read by `target` only after
        // it sees the processor (release store in gt_park_resume).
        ts.pointee.slice_start = gt_tsc()
        ts.pointee.slice_periods = 0
        ts.pointee.preempt_pending = 0
        gt_park_resume(ts, p.opaque)
    }

    // MARK: Yield

    /// Gives the CPU to the first ready thread of the same or a higher
    /// level, or keeps it with a fresh slice if there is none. Returns
    /// false, doing nothing, when not called on a green thread.
    @discardableResult
    static func yieldCurrent() -> Bool {
        let ws = gt_enter_critical()!
        guard ws.pointee.is_worker != 0, let core = ws.pointee.current else {
            _ = gt_exit_critical()
            return false
        }
        // Nothing of this thread's level or above is ready anywhere (the
        // level the run queue publishes, as the tick handler reads it):
        // keep running with a fresh slice, without the kernel lock. A yield
        // in a loop that nobody waits behind then costs no shared write; with
        // two workers each yielding alone it was a lock round trip between
        // the CPUs per call. A thread made ready just after this read is
        // seen at the next yield, as if this one had come a moment earlier.
        // Without a processor (retaken while blocked in the OS) the slow
        // path hands the thread back to the scheduler.
        if gt_highest_ready() < core.pointee.effective_level && gt_held_processor(ws) != nil {
            startFreshSlice(core, ws)
            exitCritical()
            return true
        }
        Machine.ref(ws)._withUnsafeGuaranteedRef { m in
            m.kernelRef._withUnsafeGuaranteedRef { kernel in
                kernel.lock.lock()
                kernel.switchToReadyPeer(on: m)
            }
        }
        exitCritical()
        return true
    }

    /// With the lock held and the critical count at 1: switches to the first
    /// ready thread whose level is at least the current thread's, or, if
    /// there is none, starts a fresh time slice. Returns with the lock
    /// released.
    func switchToReadyPeer(on m: Machine) {
        let ws: UnsafeMutablePointer<gt_worker_state> = m.state
        let keepsRunning = m.currentRef!._withUnsafeGuaranteedRef { current in
            guard m.processorRef != nil && runQueue.highestLevel < current.effectivePriorityLevel else {
                current.runState = .ready
                return false
            }
            // Nothing of equal or higher priority is ready: keep running.
            KernelCore.startFreshSlice(current.core!, ws)
            return true
        }
        if keepsRunning {
            lock.unlock()
            return
        }
        switchAway(from: m, action: .requeue)
    }

    /// A yield that keeps the CPU: charges the slice so far to the thread
    /// and starts a new one. The thread's own Machine, in a critical section.
    @inline(__always)
    static func startFreshSlice(_ core: UnsafeMutablePointer<gt_thread_core>,
                                _ ws: UnsafeMutablePointer<gt_worker_state>) {
        let now = gt_tsc()
        core.pointee.cpu_ticks &+= now &- ws.pointee.slice_start
        core.pointee.cpu_tick_ns &+= UInt64(ws.pointee.slice_periods) &* UInt64(ws.pointee.tick_ns)
        ws.pointee.slice_start = now
        ws.pointee.slice_periods = 0
    }

    // MARK: Blocking and waking

    /// Blocks the current thread until `makeReady` (or the deadline, if any).
    /// The caller holds the kernel lock at critical count 1 and has put the
    /// thread on whatever wait queue will wake it. Returns with the lock held
    /// again and why the block ended. When the deadline passes first (or,
    /// for an interruptible wait, the thread is cancelled) the monitor calls
    /// `wait.target.withdraw` under the lock to take the thread off that
    /// queue (Monitor.swift, Threads/Cancellation.swift). `wait` is a few
    /// stores into the control block: no allocation (WaitRecord.swift).
    func blockCurrent(on wait: ThreadWait, state: GreenThread.State = .blocked,
                      deadline: Int64? = nil) -> WakeReason {
        // Unretained, as on the switch path (Machine.swift): the Machine
        // runs this code, and its current thread is the caller.
        Machine.ref(gt_self()!)._withUnsafeGuaranteedRef { m in
            m.currentRef!._withUnsafeGuaranteedRef { current in
                block(current, on: m, wait, state: state, deadline: deadline)
            }
        }
    }

    /// blockCurrent's body, on guaranteed references.
    @inline(__always)
    private func block(_ current: GreenThread, on m: Machine, _ wait: ThreadWait, state: GreenThread.State,
                       deadline: Int64?) -> WakeReason {
        // Set first: `withdraw` may read it (a channel: which queue).
        current.wait = wait
        // Issue 14: a wait that observes cancellation does not start on a
        // cancelled thread (Threads/Cancellation.swift).
        if current.refusesToBlock(state: state, wait) {
            wait.target?.withdraw(current)
            current.wait = nil
            return .timedOut
        }
        current.runState = state
        current.wakeReason = .none
        if let deadline {
            current.timerGeneration &+= 1
            if timers.insert(deadline: deadline, generation: current.timerGeneration, thread: current) {
                monitorMustLook(by: deadline)  // a new earliest deadline
            }
        }
        // One time-stamp for both: the wait's start and the switch.
        let now = gt_tsc()
        current.wait!.startTick = now
        switchAway(from: m, action: .none, now: now, lingerFrom: current.effectivePriorityLevel)
        lock.lock()
        if deadline != nil { current.timerGeneration &+= 1 }  // invalidates a pending timer entry
        return current.wakeReason
    }

    /// Makes a blocked, sleeping or new thread ready to run. Kernel lock held.
    func makeReady(_ thread: GreenThread, reason: WakeReason = .woken) {
        thread.runState = .ready
        thread.wait = nil
        thread.wakeReason = reason
        runQueue.push(thread)
        if thread.effectivePriorityLevel < ioWatchLevel { poller?.watchNeeded() }
        // A spinning processor takes it (Machine.spinForWork): no wake-up.
        // A spinner starts only with the queue empty, so the queue holds
        // only what arrived since; beyond one thread per spinner, wake or
        // preempt as usual (priorities hold across processors).
        if runQueue.count <= spinningProcessors {
            noteSpinnersReady(handedOff: isHandOff(of: thread))
            return
        }
        // A processor lingering for work above what it would run takes it
        // (Machine.linger).
        if let i = lingeringProcessors.indexOfFirst(where: { $0.lingersAbove < thread.effectivePriorityLevel }) {
            let p = lingeringProcessors.remove(at: i)
            p.lingersAbove = -1
            if let m = p.heldBy, let ms = m.state { gt_park_wake(ms) }
            return
        }
        if let idle = idleProcessors.popLast() {
            wake(idle)
            return
        }
        preemptLowerIfNeeded(for: thread.effectivePriorityLevel)
    }

    /// Whether `thread`, made ready now, is handed off: the caller is a
    /// green thread holding a processor, at a level no lower than
    /// `thread`'s, so `thread` would not run ahead of it anyway, and if the
    /// caller blocks soon (a channel or mutex hand-off, a join, a signal)
    /// its own processor runs `thread` (Machine.leftToItsWaker).
    @inline(__always)
    private func isHandOff(of thread: GreenThread) -> Bool {
        guard let ws = gt_self(), ws.pointee.is_worker != 0, let core = ws.pointee.current,
              gt_held_processor(ws) != nil else { return false }
        return core.pointee.effective_level >= Int32(thread.effectivePriorityLevel)
    }

    /// Tells spinners how the thread they would find became ready (see
    /// `readiedForHandOff`). Kernel lock held.
    @inline(__always)
    func noteSpinnersReady(handedOff: Bool) {
        // Stored only when it changes: the line stays in the waker's cache.
        if readiedForHandOff.load(ordering: .relaxed) != handedOff {
            readiedForHandOff.store(handedOff, ordering: .relaxed)
        }
    }

    /// Whether a processor whose thread blocks at `level` should wait a
    /// little for more work of that level before it starts a lower thread:
    /// only a lower thread is ready, and threads at `level` or above wait on
    /// I/O, whose next event would otherwise preempt the lower thread again
    /// (a signal and two OS-thread hand-offs). Kernel lock held.
    @inline(__always)
    func shouldLinger(from level: Int) -> Bool {
        guard ioWatchLevel >= level else { return false }
        let ready = runQueue.highestLevel
        return ready >= 0 && ready < level
    }

    /// Whether a thread below `level` runs on a processor or is ready to.
    /// Kernel lock held.
    func anyThreadRunsOrIsReady(below level: Int) -> Bool {
        runQueue.lowestLevel < level || anyProcessorRuns(below: level)
    }

    /// Whether a processor runs a thread below `level`. Kernel lock held.
    func anyProcessorRuns(below level: Int) -> Bool {
        // Array's own members only (ArrayUnderKernelLock.swift).
        processors.withUnsafeBufferPointer { all in
            var i = 0
            while i < all.count {
                if let t = all[i].currentRef, t._withUnsafeGuaranteedRef({ $0.effectivePriorityLevel }) < level {
                    return true
                }
                i += 1
            }
            return false
        }
    }

    /// Wakes an idle processor's Machine from its idle sleep. Kernel lock held.
    func wake(_ p: Processor) {
        p.isIdle = false
        p.idleWakeups &+= 1
        if let w = poller, w.interrupt(p) {
            // It waited in the netpoller's epoll_wait: interrupted there.
        } else if let m = p.heldBy {
            gt_park_wake(m.state)
        }
        noteProcessorBusy()
    }

    /// A processor starts running a thread, which may block in the OS: a
    /// monitor in its long sleep should watch it (one wake-up per long
    /// sleep). Kernel lock held.
    @inline(__always)
    func noteProcessorBusy() {
        if monitorSleepsLong {
            monitorSleepsLong = false
            wakeMonitor()
        }
    }

    /// A thread of `level` is ready and no processor is idle: if some
    /// processor runs a lower-priority thread, preempt the lowest one now
    /// rather than at its next tick. Kernel lock held.
    func preemptLowerIfNeeded(for level: Int) {
        // Runs on every wake-up: indices and unretained reads, so the scan
        // counts no references (the processors live as long as the kernel).
        var victim = -1
        var lowest = level
        processors.withUnsafeBufferPointer { all in
            for i in all.indices {
                guard let running = all[i].currentRef else { continue }
                let runningLevel = running._withUnsafeGuaranteedRef { $0.effectivePriorityLevel }
                if runningLevel < lowest {
                    lowest = runningLevel
                    victim = i
                }
            }
        }
        if victim >= 0 { preempt(processors[victim]) }
    }

    /// Asks the Machine running on `p` to preempt its thread: at once by
    /// signal, or, when the asker is that Machine itself (inside a critical
    /// section), when the section ends (gt_exit_critical parks it).
    private func preempt(_ p: Processor) {
        guard let m = p.heldBy, let ms = m.state else { return }
        let ws = gt_self()!
        if ws == ms {
            ws.pointee.preempt_pending = 1
        } else if configuration.preemption {
            gt_request_preemption(ms)
        }
    }

    // MARK: Priority

    /// Sets a thread's base priority and moves it to its new level. Kernel lock held.
    func changeBasePriority(of thread: GreenThread, to level: Int) {
        thread.basePriorityLevel = level
        updateEffectivePriority(of: thread)
    }

    /// Recomputes `effectivePriorityLevel` from the base and inherited levels
    /// and applies the change: requeue if ready, preempt or yield if running.
    /// Kernel lock held.
    func updateEffectivePriority(of thread: GreenThread) {
        let level = max(thread.basePriorityLevel, thread.inheritedPriorityLevel)
        let old = thread.effectivePriorityLevel
        guard level != old else { return }
        thread.effectivePriorityLevel = level
        if thread.runState == .running && level < ioWatchLevel { poller?.watchNeeded() }
        switch thread.runState {
        case .ready where thread.queuedLevel >= 0:
            runQueue.remove(thread)
            runQueue.push(thread)
            if level > old { preemptLowerIfNeeded(for: level) }
        case .running where level < old && runQueue.highestLevel > level:
            // It now ranks below a ready thread: give way.
            if let p = thread.runningOn?.processor, p.current === thread { preempt(p) }
        case .blocked where thread.syncWaiter != nil:
            // Sync hook: a thread queued on a mutex, condition, semaphore or
            // channel moves to its new place in that queue, and for a mutex
            // the change flows on along the chain of owners (priority
            // inheritance, Sync/PriorityInheritance.swift).
            syncWaiterPriorityChanged(thread)
        default:
            break
        }
    }

    // MARK: Sleep, join, exit

    /// Parks the current thread until `deadline` (CLOCK_MONOTONIC ns).
    func sleepCurrent(until deadline: Int64) {
        _ = gt_enter_critical()
        lock.lock()
        _ = blockCurrent(on: ThreadWait(.sleep, objectID: UInt64(bitPattern: deadline)),
                         state: .sleeping, deadline: deadline)
        lock.unlock()
        KernelCore.exitCritical()
    }

    /// Blocks the current thread until `thread` has finished.
    func join(_ thread: GreenThread) {
        _ = gt_enter_critical()
        lock.lock()
        let me = GreenThread.current
        while thread.runState != .finished {
            thread.joiners.append(me)
            // Not interruptible: only the thread's end wakes this join.
            _ = blockCurrent(on: ThreadWait(.join, objectID: thread.id, target: thread))
        }
        lock.unlock()
        KernelCore.exitCritical()
    }

    /// Ends the current thread: wakes its joiners and switches away for good.
    static func exitCurrentThread() -> Never {
        let (save, load) = prepareExit()
        gt_switch(save, load)
        preconditionFailure("a finished green thread was resumed")
    }

    /// All of the exit path that holds references; returns only raw
    /// pointers so the never-returning frame above holds none.
    @inline(never)
    private static func prepareExit() -> (UnsafeMutablePointer<UnsafeMutableRawPointer?>, UnsafeMutableRawPointer) {
        let m = Machine.from(gt_enter_critical()!)
        let kernel = m.kernel
        kernel.lock.lock()
        let current = m.current!
        kernel.releaseHeldObjects(of: current)
        current.runState = .finished
        current.joiners.removeAll { kernel.makeReady($0) }
        kernel.liveThreads -= 1
        if kernel.liveThreads == 0 { kernel.beginShutdown() }
        return kernel.prepareSwitch(to: kernel.pickSwitchTarget(m), on: m, action: .exit, now: gt_tsc())
    }
}
