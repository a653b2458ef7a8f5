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
// - An idle processor waits here too (Go's design; `IdleWait`): one idle
//   processor at a time waits in epoll_pwait on the same set instead of its
//   futex, and delivers what it gets itself, so a request-reply connection
//   is served by one OS thread with no hand-over. Linux wakes one epoll
//   waiter per event, the one that began waiting last (checked on this
//   kernel: 2,000 of 2,000 wake-ups went to the later of two waiters), and
//   the poller thread has usually waited longer, so the idle processor gets
//   the events whenever it waits. The poller thread stays for the time when
//   every processor is busy: readiness then still wakes a thread at once,
//   and `makeReady` preempts a lower-priority one (priorities across I/O).
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

    /// A timed wait's deadline passed, or its thread was cancelled: the
    /// slot of the direction it waits in is freed. Kernel lock held.
    func withdraw(_ thread: GreenThread) {
        if thread.wait?.reason == .ioWrite { writeWaiter = nil } else { readWaiter = nil }
        thread.kernel.externalWaitEnded()
    }

    init(fd: Int32, generation: UInt32) {
        self.fd = fd
        self.generation = generation
    }

    var epollData: UInt64 { UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd)) }
}

final class Netpoller: KernelService, IdleWait {
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
    /// The idle processor waiting here, and its Machine's state (kernel lock).
    @exclusivity(unchecked) unowned(unsafe) private var idleWaiter: Processor?
    @exclusivity(unchecked) private var idleWaiterState: UnsafeMutablePointer<gt_worker_state>?
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
                while poll(timeoutMs: -1) {}
            }
        } catch {
            _ = gt_io_close(stopFD)
            _ = gt_io_close(epollFD)
            throw error
        }
        kernel.idleWait = self
    }

    deinit {
        eventBits.deallocate()
        eventData.deallocate()
        idleBits.deallocate()
        idleData.deallocate()
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
            var keepRunning = true
            kernel.withCriticalLock {
                for i in 0..<Int(r.value) {
                    if eventData[i] == Netpoller.stopToken {
                        keepRunning = false
                        continue
                    }
                    deliver(events: eventBits[i], data: eventData[i])
                }
            }
            return keepRunning
        }
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
                wake(t)
            } else {
                pd.readReady = true
            }
        }
        if events & (UInt32(GT_IO_WRITABLE) | broken) != 0 {
            if let t = pd.writeWaiter {
                pd.writeWaiter = nil
                wake(t)
            } else {
                pd.writeReady = true
            }
        }
    }

    private func wake(_ thread: GreenThread) {
        kernel.externalWaitEnded()
        kernel.makeReady(thread)
    }

    // MARK: An idle processor waits here (IdleWait)

    func waitWhileIdle(_ p: Processor, state: UnsafeMutablePointer<gt_worker_state>) -> Bool {
        guard idleWaiter == nil else { return false }
        idleWaiter = p
        idleWaiterState = state
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
        idleWaiterState = nil
        gt_io_idle_wait_end(&waitMask)  // a pending interrupt is taken here, and ignored
        return true
    }

    func interrupt(_ p: Processor) -> Bool {
        guard p === idleWaiter else { return false }
        if !idleWaiterDelivering, let ws = idleWaiterState {
            gt_io_idle_wait_interrupt(ws.pointee.tid)
        }
        return true
    }

    /// The idle processor's batch. It goes last among the idle processors,
    /// so the first thread its events make ready wakes it (no signal) and
    /// only further ones wake others. Kernel lock held.
    private func deliverOnIdle(_ p: Processor, count: Int) {
        if let i = kernel.idleProcessors.lastIndex(where: { $0 === p }), i != kernel.idleProcessors.count - 1 {
            kernel.idleProcessors.remove(at: i)
            kernel.idleProcessors.append(p)
        }
        idleWaiterDelivering = true
        for i in 0..<count where idleData[i] != Netpoller.stopToken {  // the stop token is the poller thread's
            deliver(events: idleBits[i], data: idleData[i])
        }
        idleWaiterDelivering = false
    }

    // MARK: Waiting

    /// The descriptor's record, registering it with epoll on first use.
    /// Kernel lock held.
    private func descriptor(_ fd: Int32, operation: String) throws -> PollDescriptor {
        if Int(fd) < table.count, let pd = table[Int(fd)] { return pd }
        let pd = PollDescriptor(fd: fd, generation: nextGeneration)
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
        if direction == .read { pd.readWaiter = me } else { pd.writeWaiter = me }
        kernel.externalWaitBegan()
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
            wake(t)
        }
        if let t = pd.writeWaiter {
            pd.writeWaiter = nil
            wake(t)
        }
        // Closing the descriptor removes it from the set only when no other
        // descriptor shares its open file (dup, fork): remove it here.
        _ = gt_io_epoll_ctl(epollFD, Int32(GT_IO_CTL_DEL), fd, 0, 0, 0)
    }

    // MARK: KernelService

    func stop() {
        kernel.withCriticalLock { kernel.idleWait = nil }  // the workers have stopped: nobody waits here
        _ = gt_io_eventfd_signal(stopFD)
        thread?.join()
        thread = nil
        _ = gt_io_close(stopFD)
        _ = gt_io_close(epollFD)
    }
}
