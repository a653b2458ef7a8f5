// Scheduler: every path that switches a worker from one context to another,
// and the small interface that the rest of the library (sleep, join, sync
// primitives) uses: block the current thread, make a thread ready, change a
// priority.
//
// The switch protocol. A context switch happens only
//   - with the kernel lock held, and
//   - with this OS thread's critical count at exactly 1 (preemption off).
// The outgoing context records what should happen to it (`SwitchAction`) in
// its worker, then `gt_switch`es. The resumed context, on the same OS thread,
// runs `finishSwitch`: it completes the outgoing context's action (requeue a
// yielded thread, reap a finished one), releases the kernel lock, restores
// its own errno and exclusivity access set, and unblocks SIGVTALRM if a
// switch out of a signal handler left it blocked. Then it lowers the count
// it raised before it switched out. Because a yielded thread is requeued only
// after its context is saved, no other worker can pick it up half-saved.
//
// Scheduling policy: strict priority across the 32 levels, FIFO within a
// level. A yield or an expired time slice gives the CPU to the first ready
// thread of the same or a higher level (round-robin); a thread made ready at
// a higher level than a running one preempts it at once (see
// `preemptLowerIfNeeded`).
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
}

extension KernelCore {
    // MARK: The switch

    /// Switches worker `w` from its current context to `next` (nil: the
    /// worker's idle context). Requires the kernel lock and a critical count
    /// of 1; returns when the outgoing context is resumed, with the lock
    /// released (see the protocol above).
    func switchTo(_ next: GreenThread?, on w: Worker, action: SwitchAction) {
        let (save, load) = prepareSwitch(to: next, on: w, action: action)
        gt_switch(save, load)
        KernelCore.finishSwitch()
    }

    /// Everything before the switch instruction: account the outgoing
    /// thread's CPU time, save its errno and exclusivity access set, and
    /// install `next` as the worker's current context.
    @inline(__always)
    func prepareSwitch(to next: GreenThread?, on w: Worker, action: SwitchAction)
        -> (UnsafeMutablePointer<UnsafeMutableRawPointer?>, UnsafeMutableRawPointer)
    {
        let ws: UnsafeMutablePointer<gt_worker_state> = w.state
        precondition(ws.pointee.critical == 1,
                     "switch with critical count \(ws.pointee.critical) on worker \(w.index): a switch must be made at count 1")
        let save: UnsafeMutablePointer<UnsafeMutableRawPointer?>
        // One time-stamp read per switch (about 18 ns on this virtual
        // machine): it ends the outgoing thread's time and starts the next's.
        let now = gt_tsc()
        if let prev = w.current {
            let core = prev.core!
            core.pointee.cpu_ticks &+= now &- ws.pointee.slice_start
            core.pointee.cpu_tick_ns &+= UInt64(ws.pointee.slice_periods) &* UInt64(ws.pointee.tick_ns)
            if gt_fix_enabled(Int32(GT_FIX_ERRNO)) != 0 { core.pointee.saved_errno = gt_errno_get() }
            if gt_fix_enabled(Int32(GT_FIX_EXCLUSIVITY)) != 0 {
                swift_task_exitThreadLocalContext(KernelCore.exclusivityState(core))
            }
            prev.runningOn = nil
            // sp is the block's first field (static-asserted in context.c).
            save = UnsafeMutableRawPointer(core).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        } else {
            save = w.idleContext
        }
        w.previous = w.current
        w.previousAction = action
        ws.pointee.slice_start = now
        let load: UnsafeMutableRawPointer
        if let next {
            next.runState = .running
            next.runningOn = w
            w.current = next
            ws.pointee.current = next.core
            load = next.core!.pointee.sp!
        } else {
            w.current = nil
            ws.pointee.current = nil
            load = w.idleContext.pointee!
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
        let w = worker(of: ws)
        let kernel = w.kernel
        if let previous = w.previous {
            switch w.previousAction {
            case .requeue: kernel.runQueue.push(previous)
            case .exit: kernel.reap(previous)
            case .none: break
            }
            w.previous = nil
        }
        w.previousAction = .none
        guard let current = w.current else {
            kernel.lock.unlock()
            gt_after_switch_signals(ws)
            return
        }
        let core = current.core!
        core.pointee.switches &+= 1
        ws.pointee.slice_periods = 0  // slice_start was set by the switcher, on this OS thread
        ws.pointee.preempt_pending = 0
        ws.pointee.retry_shift = 0
        kernel.lock.unlock()
        if gt_fix_enabled(Int32(GT_FIX_EXCLUSIVITY)) != 0 {
            swift_task_enterThreadLocalContext(exclusivityState(core))
        }
        if core.pointee.preempt_context == nil {
            gt_after_switch_signals(ws)
        } else {
            ws.pointee.sigvt_blocked = 0  // it resumes in its handler; sigreturn restores its mask
        }
        if gt_fix_enabled(Int32(GT_FIX_ERRNO)) != 0 { gt_errno_set(core.pointee.saved_errno) }
    }

    /// The next thread to run on the worker whose state is `ws`. Kernel lock held.
    @inline(__always)
    func pickNext(_ ws: UnsafeMutablePointer<gt_worker_state>) -> GreenThread? {
        runQueue.popFair(slice: (ws.pointee.average_periods_x16 + 8) / 16)
    }

    /// Deficit round-robin (RunQueue.swift): a thread preempted after using
    /// more tick periods than the worker's average slice owes the excess;
    /// one that used less is forgiven what it owed, up to the difference.
    /// Debt is capped at sixteen average slices (measured under a load
    /// average of 6: a cap of four left 7-16% spreads between equal
    /// spinners, sixteen none above 5% in ten runs), so even a slice the OS
    /// stretched a lot is repaid over turns rather than by starving anyone.
    static func chargePreemptedSlice(_ core: UnsafeMutablePointer<gt_thread_core>,
                                     _ ws: UnsafeMutablePointer<gt_worker_state>) {
        let used = Int32(ws.pointee.slice_periods)
        var average16 = ws.pointee.average_periods_x16
        if average16 == 0 { average16 = used * 16 }
        average16 += (used * 16 - average16) / 8  // moving average over ~8 slices
        ws.pointee.average_periods_x16 = average16
        let average = max(1, (average16 + 8) / 16)
        core.pointee.debt_periods = min(16 * average, max(0, core.pointee.debt_periods + used - average))
    }

    // MARK: Yield and preemption

    /// Gives the CPU to the first ready thread of the same or a higher
    /// level. `preempting`: the time slice ended (counts as a preemption).
    static func yieldCurrent(preempting: Bool) {
        let ws = gt_enter_critical()!
        guard ws.pointee.is_worker != 0, ws.pointee.current != nil else {
            _ = gt_exit_critical()
            return
        }
        let w = worker(of: ws)
        w.kernel.lock.lock()
        if preempting { ws.pointee.preempt_pending = 0 }
        _ = w.kernel.switchToReadyPeer(on: w, preempting: preempting)
        exitCritical()
    }

    /// With the lock held and the critical count at 1: switches to the first
    /// ready thread whose level is at least the current thread's, or, if
    /// there is none, starts a fresh time slice. Returns with the lock
    /// released; true if it switched.
    func switchToReadyPeer(on w: Worker, preempting: Bool) -> Bool {
        let ws: UnsafeMutablePointer<gt_worker_state> = w.state
        let current = w.current!
        guard runQueue.highestLevel >= current.effectivePriorityLevel, let next = pickNext(ws) else {
            // Nothing of equal or higher priority is ready: keep running.
            let now = gt_tsc()
            current.core!.pointee.cpu_ticks &+= now &- ws.pointee.slice_start
            current.core!.pointee.cpu_tick_ns &+= UInt64(ws.pointee.slice_periods) &* UInt64(ws.pointee.tick_ns)
            ws.pointee.slice_start = now
            ws.pointee.slice_periods = 0
            ws.pointee.retry_shift = 0
            lock.unlock()
            return false
        }
        if preempting {
            current.core!.pointee.preemptions &+= 1
            ws.pointee.preemptions &+= 1
            KernelCore.chargePreemptedSlice(current.core!, ws)
        }
        current.runState = .ready
        switchTo(next, on: w, action: .requeue)
        return true
    }

    // MARK: Blocking and waking

    /// Blocks the current thread until `makeReady` (or the deadline, if any).
    /// The caller holds the kernel lock at critical count 1 and has put the
    /// thread on whatever wait queue will wake it. Returns with the lock held
    /// again and why the block ended. `onTimeout` runs under the lock when
    /// the deadline passes first, to take the thread off that wait queue.
    func blockCurrent(on record: WaitRecord, state: GreenThread.State = .blocked,
                      deadline: Int64? = nil,
                      onTimeout: ((GreenThread) -> Void)? = nil) -> WakeReason {
        let ws = gt_self()!
        let w = KernelCore.worker(of: ws)
        let current = w.current!
        // Issue 14: a wait that observes cancellation does not start on a
        // cancelled thread (Threads/Cancellation.swift).
        if current.refusesToBlock(state: state, onTimeout: onTimeout) {
            onTimeout?(current)
            return .timedOut
        }
        current.runState = state
        current.waitRecord = record
        current.wakeReason = .none
        current.timeoutAction = onTimeout
        if let deadline {
            current.timerGeneration &+= 1
            if timers.insert(deadline: deadline, generation: current.timerGeneration, thread: current) {
                wakeMonitor()  // a new earliest deadline
            }
        }
        switchTo(pickNext(ws), on: w, action: .none)
        lock.lock()
        current.timeoutAction = nil
        if deadline != nil { current.timerGeneration &+= 1 }  // invalidates a pending timer entry
        return current.wakeReason
    }

    /// Makes a blocked, sleeping or new thread ready to run. Kernel lock held.
    func makeReady(_ thread: GreenThread, reason: WakeReason = .woken) {
        thread.runState = .ready
        thread.waitRecord = nil
        thread.wakeReason = reason
        runQueue.push(thread)
        if let idle = idleWorkers.popLast() {
            idle.wake()
            return
        }
        preemptLowerIfNeeded(for: thread.effectivePriorityLevel)
    }

    /// A thread of `level` is ready and no worker is idle: if some worker
    /// runs a lower-priority thread, preempt the lowest one now rather than
    /// at its next tick. Kernel lock held.
    func preemptLowerIfNeeded(for level: Int) {
        var victim: Worker?
        var lowest = level
        for w in workers {
            if let running = w.current, running.effectivePriorityLevel < lowest {
                lowest = running.effectivePriorityLevel
                victim = w
            }
        }
        guard let victim else { return }
        let ws = gt_self()!
        if ws.pointee.is_worker != 0 && ws.pointee.worker == Unmanaged.passUnretained(victim).toOpaque() {
            // The waker runs on the victim's worker: switch when it leaves
            // its critical section (gt_exit_critical sees the pending flag).
            ws.pointee.preempt_pending = 1
        } else if configuration.preemption {
            gt_request_preemption(victim.state)
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
        switch thread.runState {
        case .ready where thread.queuedLevel >= 0:
            runQueue.remove(thread)
            runQueue.push(thread)
            if level > old { preemptLowerIfNeeded(for: level) }
        case .running where level < old && runQueue.highestLevel > level:
            // It now ranks below a ready thread: give way.
            if let w = thread.runningOn {
                let ws = gt_self()!
                if ws.pointee.is_worker != 0 && ws.pointee.worker == Unmanaged.passUnretained(w).toOpaque() {
                    ws.pointee.preempt_pending = 1
                } else if configuration.preemption {
                    gt_request_preemption(w.state)
                }
            }
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
        _ = blockCurrent(on: WaitRecord(kind: "sleep", objectID: UInt64(bitPattern: deadline)),
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
            _ = blockCurrent(on: WaitRecord(kind: "join", objectID: thread.id,
                                            ownerThreadID: thread.id, ownerName: thread.name))
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
        let ws = gt_enter_critical()!
        let w = worker(of: ws)
        let kernel = w.kernel
        kernel.lock.lock()
        let current = w.current!
        kernel.releaseHeldObjects(of: current)
        current.runState = .finished
        for joiner in current.joiners { kernel.makeReady(joiner) }
        current.joiners = []
        kernel.liveThreads -= 1
        if kernel.liveThreads == 0 { kernel.beginShutdown() }
        return kernel.prepareSwitch(to: kernel.pickNext(ws), on: w, action: .exit)
    }
}

// MARK: Hooks called from the C core

/// The SIGVTALRM handler's decision to preempt, made safe: runs on the
/// interrupted thread's stack with the critical count at 1.
let preemptionHook: @convention(c) () -> Int32 = {
    let ws = gt_self()!
    let w = KernelCore.worker(of: ws)
    guard w.current != nil else { return 0 }
    w.kernel.lock.lock()
    return w.kernel.switchToReadyPeer(on: w, preempting: true) ? 1 : 0
}

/// A no-preempt region in C (swift_once) ended with a preemption pending.
let yieldPendingHook: @convention(c) () -> Void = {
    KernelCore.yieldCurrent(preempting: true)
}
