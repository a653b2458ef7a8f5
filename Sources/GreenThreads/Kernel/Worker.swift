// Worker: one OS thread that runs green threads. Its own OS stack is its
// idle context: the loop there picks the next ready thread, and sleeps on a
// futex when there is none. Its per-OS-thread C state (gt_worker_state, in
// TLS) is what the signal handlers read.
//
// Field guards: `current`, `previous`, `previousAction`, `isIdle` are
// touched by this worker with the kernel lock held (other threads read
// `current` under the lock to choose whom to preempt). `idleContext` is
// touched only by this worker's OS thread, inside critical sections.
import CGreenCore
import Glibc

final class Worker: @unchecked Sendable {
    let index: Int
    unowned(unsafe) let kernel: KernelCore

    /// This worker's OS-thread state; valid from `attach` to `detach`.
    @exclusivity(unchecked) var state: UnsafeMutablePointer<gt_worker_state>!
    // Unowned: the kernel's registry keeps every live thread alive, and a
    // thread is reaped only after it stopped being current and previous.
    // (Strong references here cost a retain/release pair per switch.)
    @exclusivity(unchecked) unowned(unsafe) var current: GreenThread?
    @exclusivity(unchecked) unowned(unsafe) var previous: GreenThread?
    @exclusivity(unchecked) var previousAction: SwitchAction = .none
    @exclusivity(unchecked) var isIdle = false
    /// Saved stack pointer of the idle context while a green thread runs.
    let idleContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Futex word the idle loop sleeps on; bumped by `wake`.
    let wakeWord: UnsafeMutablePointer<UInt32>

    private var altStack: UnsafeMutableRawPointer?
    private var altStackSize = 0
    private var previousAltStack = stack_t()
    private var savedState = gt_worker_state()
    var osThread: pthread_t?

    init(index: Int, kernel: KernelCore) {
        self.index = index
        self.kernel = kernel
        idleContext = .allocate(capacity: 1)
        idleContext.initialize(to: nil)
        wakeWord = .allocate(capacity: 1)
        wakeWord.initialize(to: 0)
    }

    deinit {
        idleContext.deallocate()
        wakeWord.deallocate()
    }

    /// Wakes this worker from its idle sleep. Kernel lock held.
    func wake() {
        isIdle = false
        _ = gt_atomic_fetch_add_u32(wakeWord, 1)
        _ = gt_sys_futex_wake(wakeWord, 1)
    }

    /// Makes the calling OS thread this worker: TLS state, alternate signal
    /// stack, Swift's exclusivity TLS, and the preemption timers.
    func attach() throws {
        let ws = gt_self()!
        savedState = ws.pointee
        ws.pointee = gt_worker_state()
        ws.pointee.worker = Unmanaged.passUnretained(self).toOpaque()
        ws.pointee.tid = Int32(gt_sys_gettid().value)
        ws.pointee.preemption_enabled = kernel.configuration.preemption ? 1 : 0
        state = ws
        var mem: UnsafeMutableRawPointer?
        var size = 0
        if gt_altstack_setup(&mem, &size, &previousAltStack) == 0 {
            altStack = mem
            altStackSize = size
        }
        // Allocate the runtime's exclusivity TLS now, outside any signal
        // handler (the first access allocates it).
        var empty: (UInt, UInt) = (0, 0)
        withUnsafeMutableBytes(of: &empty) { raw in
            let p = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            swift_task_enterThreadLocalContext(p)
            swift_task_exitThreadLocalContext(p)
        }
        // SIGVTALRM must reach this thread (a host thread may block it).
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGVTALRM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        ws.pointee.is_worker = 1
        if kernel.configuration.preemption {
            let slice = kernel.configuration.timeSlice.nanosecondsClamped
            // Tick at a quarter slice (at least 1 ms), so a thread switched
            // in mid-period still gets a whole slice within a quarter. The
            // kernel checks CPU-time timers on its scheduler tick (4 ms at
            // 250 Hz); periods that pass between checks arrive as one signal
            // with an overrun count, which the handler adds up.
            let tick = max(1_000_000, slice / 4)
            ws.pointee.periods_per_slice = UInt32(max(1, (slice + tick - 1) / tick))
            ws.pointee.tick_ns = tick
            let retry = kernel.configuration.preemptionRetry.nanosecondsClamped
            if gt_worker_timers_start(ws, tick, retry) != 0 {
                // The worker stays attached and runs threads, unpreempted.
                throw KernelError.system(call: "timer_create", errno: gt_errno_get())
            }
        }
    }

    /// Undoes `attach` on the calling OS thread.
    func detach() {
        let ws = gt_self()!
        if getenv("GT_DEBUG_WORKERS") != nil {
            gt_hijack_debug()
            gt_write_stderr("worker \(index): ticks=\(ws.pointee.ticks) preemptions=\(ws.pointee.preemptions) deferrals=\(ws.pointee.deferrals) retries=\(ws.pointee.retries)\n")
        }
        gt_worker_timers_stop(ws)
        ws.pointee.is_worker = 0
        gt_altstack_teardown(altStack, altStackSize, &previousAltStack)
        altStack = nil
        ws.pointee = savedState
        state = nil
    }

    /// The idle context's loop: run ready threads until the kernel shuts down.
    func runLoop() {
        let ws = gt_enter_critical()!  // the idle context always holds one count
        precondition(ws.pointee.critical == 1, "worker \(index) started inside a critical section")
        kernel.lock.lock()
        while !kernel.shuttingDown {
            if let next = kernel.pickNext(ws) {
                kernel.switchTo(next, on: self, action: .none)  // returns with the lock released
                kernel.lock.lock()
                continue
            }
            isIdle = true
            kernel.idleWorkers.append(self)
            if kernel.checkForDeadlock() { break }
            while isIdle && !kernel.shuttingDown {
                let seq = gt_atomic_load_u32(wakeWord)
                kernel.lock.unlock()
                _ = gt_sys_futex_wait(wakeWord, seq, -1)
                kernel.lock.lock()
            }
            if isIdle {  // shutting down while idle
                isIdle = false
                kernel.idleWorkers.removeAll { $0 === self }
            }
        }
        kernel.lock.unlock()
        _ = gt_exit_critical()
    }
}
