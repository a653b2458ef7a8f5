// Netpoller: one epoll instance per kernel, and the OS thread that waits in
// it (Go's netpoll, first design). A green thread whose non-blocking call
// would block (EAGAIN) parks here until its descriptor is ready, its
// deadline passes, or the descriptor is closed; the worker runs other
// threads meanwhile.
//
// Design.
// - Registration: a descriptor is added once, edge-triggered, for reading
//   and writing at the same time (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET),
//   the first time a thread must wait on it. An edge-triggered registration
//   stays armed: no epoll_ctl per wait. It is removed by `forget` (GreenIO.close,
//   GreenTCPStream.close) or when the kernel ends.
// - Per descriptor and direction (read, write) a `PollDescriptor` keeps one
//   of three states, guarded by the kernel lock (Go's pollDesc rg/wg):
//     idle      no thread waits, no unconsumed edge;
//     ready     an edge arrived while nobody waited (`readReady`);
//     waiting   a thread is parked (`readWaiter`).
//   A waiter first consumes a `ready` edge (and retries its call) and parks
//   only when there is none; the poller wakes a waiter or records `ready`.
//   Both happen under the kernel lock, the lock that also guards the run
//   queue, so the check-then-park of a waiter and the poller's wake-up are
//   one atomic step: no lost wake-up. Edges are only hints: the woken
//   thread retries its call, and an EAGAIN just parks it again.
// - Epoll's data word carries the descriptor number and a generation, so an
//   event that was queued for a descriptor number before it was closed and
//   reused is recognised as stale and ignored.
// - Close: `forget` marks the descriptor closing and wakes both waiters,
//   which then fail with EBADF (GreenIOError.isClosed): never a hang.
// - Idle: the poller thread sleeps in epoll_wait with no timeout (no CPU);
//   `stop` writes to an eventfd registered in the same epoll set.
// - An idle processor waits here too (Go's design; `SchedulerPoller`): one idle
//   processor at a time waits in epoll_pwait on the same set instead of its
//   futex, and delivers what it gets itself, so a request-reply connection
//   is served by one OS thread with no hand-over. Linux wakes one epoll
//   waiter per event, the one that began waiting last (checked on this
//   kernel: 2,000 of 2,000 wake-ups went to the later of two waiters), and
//   the poller thread has usually waited longer, so the idle processor gets
//   the events whenever it waits. The poller thread stays for the time when
//   every processor is busy and a waiter outranks a running or ready
//   thread: readiness then still wakes its thread at once, and `makeReady`
//   preempts a lower-priority one (priorities across I/O). Otherwise it
//   sleeps on a futex, and processors that run out of work, and the
//   monitor, poll without waiting ("Who watches while every processor is
//   busy" below).
//   Nothing is handed between the two (a role hand-over was measured slower,
//   docs/io.md). The idle processor's wake-up (`interrupt`) is a SIGVTALRM
//   sent to its Machine, blocked from before the kernel lock is released to
//   the atomic unblock of epoll_pwait, so none is lost (io.c); an eventfd in
//   the shared set could wake the poller thread instead.
//   Timers stay with the monitor (one timerfd for the kernel): its wake-up
//   of a sleeper reaches an idle processor here through `interrupt`.
//
// Lock order: kernel lock only. The poller thread and the idle processor
// take it once per batch of events (up to `eventBatch`), never while in
// epoll_wait.
import CGreenCore
import Glibc

/// Which readiness a waiter needs.
enum IODirection {
    case read, write

    var waitReason: WaitReason { self == .read ? .ioRead : .ioWrite }
}

/// How a wait for readiness ended.
enum PollOutcome {
    case ready, timedOut, closed
}

/// The readiness state of one registered descriptor (kernel lock).
final class PollDescriptor: WaitTarget {
    let fd: Int32
    let generation: UInt32
    // Unowned: a recorded waiter is parked, and the kernel's registry keeps
    // every live thread alive; the field is cleared before it is woken.
    @exclusivity(unchecked) unowned(unsafe) var readWaiter: GreenThread?   // kernel lock
    @exclusivity(unchecked) unowned(unsafe) var writeWaiter: GreenThread?  // kernel lock
    @exclusivity(unchecked) var readReady = false    // kernel lock: an unconsumed edge
    @exclusivity(unchecked) var writeReady = false   // kernel lock
    @exclusivity(unchecked) var closing = false      // kernel lock
    /// The level each waiter was counted at (Netpoller.waitersAtLevel; kernel lock).
    @exclusivity(unchecked) var readWaiterLevel = 0
    @exclusivity(unchecked) var writeWaiterLevel = 0

    /// A timed wait's deadline passed, or its thread was cancelled: the
    /// slot of the direction it waits in is freed. Kernel lock held.
    func withdraw(_ thread: GreenThread) {
        let level: Int
        if thread.wait?.reason == .ioWrite {
            writeWaiter = nil
            level = writeWaiterLevel
        } else {
            readWaiter = nil
            level = readWaiterLevel
        }
        thread.kernel.externalWaitEnded()
        netpoller.waiterLeft(level: level)
    }

    /// Its netpoller, which outlives every registration (kernel lock).
    unowned(unsafe) let netpoller: Netpoller

    init(fd: Int32, generation: UInt32, netpoller: Netpoller) {
        self.fd = fd
        self.generation = generation
        self.netpoller = netpoller
    }

    var epollData: UInt64 { UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd)) }
}

final class Netpoller: KernelService, SchedulerPoller {
    /// Events taken per epoll_wait: one lock acquisition serves this many
    /// wake-ups (256 fills a few pages of stack in io.c's buffer; bursts
    /// beyond it are served by the next call without a sleep).
    static let eventBatch: Int32 = 256
    /// The data word of the stop eventfd: no descriptor has generation ~0.
    static let stopToken = UInt64.max

    unowned(unsafe) let kernel: KernelCore
    let epollFD: Int32
    let stopFD: Int32
    /// Registered descriptors, indexed by descriptor number (kernel lock).
    @exclusivity(unchecked) private var table: [PollDescriptor?] = []
    @exclusivity(unchecked) private var nextGeneration: UInt32 = 1   // kernel lock
    private var thread: OSThread?
    /// Event buffers of `poll`, allocated once: only the poller thread
    /// touches them.
    private let eventBits = UnsafeMutablePointer<UInt32>.allocate(capacity: Int(Netpoller.eventBatch))
    private let eventData = UnsafeMutablePointer<UInt64>.allocate(capacity: Int(Netpoller.eventBatch))
    /// Threads parked here per priority level, and the levels with any (kernel lock).
    @exclusivity(unchecked) private var waitersAtLevel = [Int32](repeating: 0, count: Priority.levelCount)
    @exclusivity(unchecked) private var waiterLevelMask: UInt32 = 0
    /// The poller thread sleeps on its futex instead of epoll (kernel lock):
    /// no thread that a waiter here outranks runs or is ready.
    @exclusivity(unchecked) private var pollerThreadSleeps = false
    @exclusivity(unchecked) private var stopping = false
    /// The poller thread's futex word (bumped by each wake-up).
    private let pollerWord = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// The idle processor waiting here (kernel lock); the Machine holding it
    /// is the one in epoll_pwait (an idle processor is never retaken).
    @exclusivity(unchecked) unowned(unsafe) private var idleWaiter: Processor?
    /// The idle processor is delivering its events (kernel lock): a
    /// wake-up of it needs no signal.
    @exclusivity(unchecked) private var idleWaiterDelivering = false
    /// The idle processor's event buffers (only the processor in
    /// `idleWaiter` touches them).
    private let idleBits = UnsafeMutablePointer<UInt32>.allocate(capacity: Int(Netpoller.eventBatch))
    private let idleData = UnsafeMutablePointer<UInt64>.allocate(capacity: Int(Netpoller.eventBatch))

    /// Creates the epoll set and the stop eventfd and starts the poller
    /// thread. Kernel lock held (KernelCore.service).
    init(kernel: KernelCore) throws {
        self.kernel = kernel
        pollerWord.initialize(to: 0)
        let ep = gt_io_epoll_create()
        guard ep.value >= 0 else { throw GreenIOError(operation: "epoll_create1", errno: ep.error) }
        epollFD = Int32(ep.value)
        let ev = gt_io_eventfd_create()
        guard ev.value >= 0 else {
            _ = gt_io_close(epollFD)
            throw GreenIOError(operation: "eventfd", errno: ev.error)
        }
        stopFD = Int32(ev.value)
        let add = gt_io_epoll_ctl(epollFD, Int32(GT_IO_CTL_ADD), stopFD, UInt32(GT_IO_READABLE), 0, Netpoller.stopToken)
        guard add.value == 0 else {
            _ = gt_io_close(stopFD)
            _ = gt_io_close(epollFD)
            throw GreenIOError(operation: "epoll_ctl", errno: add.error)
        }
        do {
            // SIGVTALRM blocked: it only preempts green threads on workers.
            thread = try OSThread.start(name: "gt-netpoller", blockingPreemptionSignal: true) { [self] in
                Netpoller.raiseToRealtimeIfPermitted()
                while waitUntilWatchNeeded(), poll(timeoutMs: -1) {}
            }
        } catch {
            _ = gt_io_close(stopFD)
            _ = gt_io_close(epollFD)
            throw error
        }
        kernel.poller = self
    }

    deinit {
        eventBits.deallocate()
        eventData.deallocate()
        idleBits.deallocate()
        idleData.deallocate()
        pollerWord.deallocate()
    }

    /// A wake-up from I/O is only as prompt as the poller thread gets a
    /// CPU: on a loaded machine an ordinary thread waits behind every other
    /// runnable task (measured: quick-request p99 of tens of ms under a load
    /// average of 10). Like the monitor (Kernel.swift), where permitted
    /// (CAP_SYS_NICE or RLIMIT_RTPRIO) it runs SCHED_FIFO at the lowest
    /// real-time priority: it only ever sleeps in epoll_wait and does
    /// microseconds of work per batch (at most `eventBatch` wake-ups), so it
    /// cannot starve the machine. GT_NETPOLLER_FIFO=0 keeps it ordinary.
    static func raiseToRealtimeIfPermitted() {
        let optOut = getenv("GT_NETPOLLER_FIFO").map { String(cString: $0) == "0" } ?? false
        if !optOut { _ = gt_raise_to_realtime(1) }
    }

    /// The netpoller of the current green thread's kernel. Kernel lock held.
    static func of(_ kernel: KernelCore) throws -> Netpoller {
        try kernel.service(Netpoller.self) { try Netpoller(kernel: kernel) }
    }

    // MARK: The event step

    /// One epoll_wait of at most `timeoutMs` (-1: no limit), then every
    /// wake-up it brought, under one hold of the kernel lock. Returns false
    /// once the stop eventfd fired.
    func poll(timeoutMs: Int32) -> Bool {
        while true {
            let r = gt_io_epoll_wait(epollFD, eventBits, eventData, Netpoller.eventBatch, timeoutMs)
            precondition(r.value >= 0, "epoll_wait on the netpoller's set failed: errno \(r.error)")
            if r.value == 0 {
                if timeoutMs >= 0 { return true }
                continue  // EINTR (a program's signal): wait again
            }
            let stopped = kernel.withCriticalLock { deliver(count: Int(r.value), bits: eventBits, data: eventData) }
            return !stopped
        }
    }

    /// Applies a batch of events from `bits`/`data`; returns whether the
    /// stop token was among them. Kernel lock held.
    @discardableResult
    private func deliver(count: Int, bits: UnsafeMutablePointer<UInt32>, data: UnsafeMutablePointer<UInt64>) -> Bool {
        var stopped = false
        for i in 0..<count {
            if data[i] == Netpoller.stopToken {
                stopped = true
            } else {
                deliver(events: bits[i], data: data[i])
            }
        }
        return stopped
    }

    /// Applies one event to its descriptor. Kernel lock held.
    private func deliver(events: UInt32, data: UInt64) {
        let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
        let generation = UInt32(truncatingIfNeeded: data >> 32)
        guard fd >= 0, Int(fd) < table.count, let pd = table[Int(fd)], pd.generation == generation else {
            return  // queued before its descriptor was forgotten
        }
        let broken = UInt32(GT_IO_ERROR | GT_IO_HANGUP)
        if events & (UInt32(GT_IO_READABLE | GT_IO_PEER_CLOSED) | broken) != 0 {
            if let t = pd.readWaiter {
                pd.readWaiter = nil
                wake(t, countedAt: pd.readWaiterLevel)
            } else {
                pd.readReady = true
            }
        }
        if events & (UInt32(GT_IO_WRITABLE) | broken) != 0 {
            if let t = pd.writeWaiter {
                pd.writeWaiter = nil
                wake(t, countedAt: pd.writeWaiterLevel)
            } else {
                pd.writeReady = true
            }
        }
    }

    private func wake(_ thread: GreenThread, countedAt level: Int) {
        kernel.externalWaitEnded()
        waiterLeft(level: level)
        kernel.makeReady(thread)
    }

    // MARK: Who watches while every processor is busy

    // The poller thread is needed only while a thread that some waiter here
    // outranks runs or is ready: readiness must then be seen at once, since
    // the woken thread preempts it or must run before it. Otherwise (every
    // running and ready thread is at or above every waiter's level) the
    // woken thread would only queue behind its peers, so readiness can wait
    // for the next processor that runs out of work (`pollNow` before it
    // spins or idles, then its epoll wait) or for the monitor's look, at
    // least every millisecond while processors are busy (Monitor.swift): one
    // epoll_wait then serves a batch instead of one poller wake-up per
    // event. Measured with wrk's 32 connections on the quick route: with
    // the poller thread always watching it took 0.7 wake-ups per request
    // and 40% of a CPU, and the server 39-48k req/s; gated, 74-80k (docs/io.md).
    //
    // The switch to "needed" is made where a thread below
    // `kernel.ioWatchLevel` starts running or is made ready (the scheduler
    // calls `watchNeeded`) and where a waiter parks here above such a
    // thread; the switch back is lazy: the poller thread looks after each
    // batch and sleeps on its futex when it is no longer needed. A waiter
    // counts at the level it parked with (a priority inherited while it
    // waits is not seen here: the monitor's look still finds its event).

    /// Kernel lock held.
    private func waiterArrived(level: Int) {
        waitersAtLevel[level] += 1
        waiterLevelMask |= 1 << UInt32(level)
        publishWatchLevel()
        if pollerThreadSleeps && kernel.anyThreadRunsOrIsReady(below: level) { watchNeeded() }
    }

    /// Kernel lock held.
    func waiterLeft(level: Int) {
        waitersAtLevel[level] -= 1
        if waitersAtLevel[level] == 0 { waiterLevelMask &= ~(1 << UInt32(level)) }
        publishWatchLevel()
    }

    private func publishWatchLevel() {
        kernel.ioWatchLevel = waiterLevelMask == 0 ? -1 : 31 - waiterLevelMask.leadingZeroBitCount
    }

    func watchNeeded() {
        guard pollerThreadSleeps else { return }
        pollerThreadSleeps = false
        wakePollerThread()
    }

    /// Kernel lock held.
    private func wakePollerThread() { gt_wake_word(pollerWord) }

    /// The poller thread, before each epoll_wait: sleeps while it is not
    /// needed. Returns false once the netpoller stops.
    private func waitUntilWatchNeeded() -> Bool {
        kernel.withCriticalLock {
            while !stopping && !(kernel.ioWatchLevel >= 0 && kernel.anyThreadRunsOrIsReady(below: kernel.ioWatchLevel)) {
                pollerThreadSleeps = true
                let seen = gt_atomic_load_u32(pollerWord)
                kernel.lock.unlock()
                _ = gt_sys_futex_wait(pollerWord, seen, -1)
                kernel.lock.lock()
            }
            pollerThreadSleeps = false
            return !stopping
        }
    }

    func pollNow(for p: Processor?) -> Bool {
        // While the poller thread watches, it sees readiness first; with a
        // processor in epoll, so does that one. The idle buffers are free
        // while no processor waits here (`idleWaiter`, kernel lock held).
        guard pollerThreadSleeps, idleWaiter == nil, waiterLevelMask != 0 else { return false }
        let r = gt_io_epoll_wait(epollFD, idleBits, idleData, Netpoller.eventBatch, 0)
        guard r.value > 0 else { return false }
        // The first thread made ready is the caller's to run: no wake-up for
        // it (makeReady treats it as taken by a spinner).
        if p != nil { kernel.spinningProcessors += 1 }
        let before = kernel.runQueue.count
        deliver(count: Int(r.value), bits: idleBits, data: idleData)  // the stop token is the poller thread's
        if p != nil { kernel.spinningProcessors -= 1 }
        return kernel.runQueue.count > before
    }

    // MARK: An idle processor waits here

    func waitWhileIdle(_ p: Processor) -> Bool {
        guard idleWaiter == nil else { return false }
        idleWaiter = p
        var waitMask = sigset_t()
        gt_io_idle_wait_begin(&waitMask)  // before the unlock: see io.c
        while p.isIdle && !kernel.shuttingDown {
            kernel.lock.unlock()
            let r = gt_io_epoll_pwait(epollFD, idleBits, idleData, Netpoller.eventBatch, -1, &waitMask)
            kernel.lock.lock()
            precondition(r.value >= 0, "epoll_pwait on the netpoller's set failed: errno \(r.error)")
            if r.value > 0 { deliverOnIdle(p, count: Int(r.value)) }
        }
        idleWaiter = nil
        gt_io_idle_wait_end(&waitMask)  // a pending interrupt is taken here, and ignored
        return true
    }

    func interrupt(_ p: Processor) -> Bool {
        guard p === idleWaiter else { return false }
        if !idleWaiterDelivering, let ws = p.heldBy?.state {
            gt_io_idle_wait_interrupt(ws.pointee.tid)
        }
        return true
    }

    /// The idle processor's batch. It goes last among the idle processors,
    /// so the first thread its events make ready wakes it (no signal) and
    /// only further ones wake others. Kernel lock held.
    private func deliverOnIdle(_ p: Processor, count: Int) {
        if let i = kernel.idleProcessors.indexOfLast(where: { $0 === p }), i != kernel.idleProcessors.count - 1 {
            kernel.idleProcessors.remove(at: i)
            kernel.idleProcessors.append(p)
        }
        idleWaiterDelivering = true
        deliver(count: count, bits: idleBits, data: idleData)  // the stop token is the poller thread's
        idleWaiterDelivering = false
    }

    // MARK: Waiting

    /// The descriptor's record, registering it with epoll on first use.
    /// Kernel lock held.
    private func descriptor(_ fd: Int32, operation: String) throws -> PollDescriptor {
        if Int(fd) < table.count, let pd = table[Int(fd)] { return pd }
        let pd = PollDescriptor(fd: fd, generation: nextGeneration, netpoller: self)
        nextGeneration = nextGeneration &+ 1
        if nextGeneration == UInt32.max { nextGeneration = 1 }  // ~0 would collide with stopToken
        let events = UInt32(GT_IO_READABLE | GT_IO_WRITABLE | GT_IO_PEER_CLOSED)
        let r = gt_io_epoll_ctl(epollFD, Int32(GT_IO_CTL_ADD), fd, events, 1, pd.epollData)
        guard r.value == 0 else {
            if r.error == EPERM {
                throw GreenIOError(operation: operation, errno: EPERM,
                                   detail: "descriptor \(fd) has no readiness to wait for (a regular file?): "
                                       + "read it inside GreenThread.blocking { ... }")
            }
            throw GreenIOError(operation: "epoll_ctl", errno: r.error)
        }
        if Int(fd) >= table.count {
            table.append(contentsOf: repeatElement(nil, count: max(Int(fd) + 1 - table.count, table.count)))
        }
        table[Int(fd)] = pd
        return pd
    }

    /// Parks the current green thread until `fd` is ready for `direction`,
    /// `deadline` (CLOCK_MONOTONIC ns) passes, or the descriptor is
    /// forgotten. Kernel lock held at critical count 1 (withBlockingSection).
    func wait(_ fd: Int32, for direction: IODirection, deadline: Int64?,
              operation: String) throws -> PollOutcome {
        let pd = try descriptor(fd, operation: operation)
        if pd.closing { return .closed }
        switch direction {
        case .read where pd.readReady:
            pd.readReady = false
            return .ready
        case .write where pd.writeReady:
            pd.writeReady = false
            return .ready
        default:
            break
        }
        if let deadline, deadline <= gt_clock_monotonic_ns() { return .timedOut }
        let me = GreenThread.current
        let busy = direction == .read ? pd.readWaiter : pd.writeWaiter
        guard busy == nil else {
            throw GreenIOError(operation: operation, errno: EBUSY,
                               detail: "\(busy!) already waits to \(direction) descriptor \(fd); "
                                   + "one thread per direction may wait on a descriptor")
        }
        let level = me.effectivePriorityLevel
        if direction == .read {
            pd.readWaiter = me
            pd.readWaiterLevel = level
        } else {
            pd.writeWaiter = me
            pd.writeWaiterLevel = level
        }
        kernel.externalWaitBegan()
        waiterArrived(level: level)
        // When the deadline wins (or, for a timed wait, a cancellation), the
        // monitor calls `pd.withdraw` under the kernel lock.
        let reason = kernel.blockCurrent(on: ThreadWait(direction.waitReason, objectID: UInt64(fd), target: pd,
                                                        interruptible: deadline != nil),
                                         state: .blocked, deadline: deadline)
        if pd.closing { return .closed }
        return reason == .timedOut ? .timedOut : .ready
    }

    /// Drops `fd`'s registration before the program closes it: both waiters
    /// wake and fail with EBADF. Kernel lock held.
    func forget(_ fd: Int32) {
        guard fd >= 0, Int(fd) < table.count, let pd = table[Int(fd)] else { return }
        table[Int(fd)] = nil
        pd.closing = true
        if let t = pd.readWaiter {
            pd.readWaiter = nil
            wake(t, countedAt: pd.readWaiterLevel)
        }
        if let t = pd.writeWaiter {
            pd.writeWaiter = nil
            wake(t, countedAt: pd.writeWaiterLevel)
        }
        // Closing the descriptor removes it from the set only when no other
        // descriptor shares its open file (dup, fork): remove it here.
        _ = gt_io_epoll_ctl(epollFD, Int32(GT_IO_CTL_DEL), fd, 0, 0, 0)
    }

    // MARK: KernelService

    func stop() {
        kernel.withCriticalLock {
            kernel.poller = nil  // the workers have stopped: nobody waits here
            stopping = true
            wakePollerThread()
        }
        _ = gt_io_eventfd_signal(stopFD)
        thread?.join()
        thread = nil
        _ = gt_io_close(stopFD)
        _ = gt_io_close(epollFD)
    }
}
