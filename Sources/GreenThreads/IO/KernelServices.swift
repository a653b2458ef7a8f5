// KernelServices: per-kernel helpers with their own OS threads (the
// netpoller, the blocking pool), started on first use and stopped when the
// kernel ends. The scheduler knows them only through this protocol: it
// keeps the registry (`KernelCore.services`) and calls `stopServices` once
// every green thread has finished; it never calls into IO/ otherwise.
//
// Invariants: a service is registered at most once per kernel (kernel lock);
// `stop` runs exactly once, on the OS thread that ran `Kernel.run`, without
// the kernel lock, after the workers stopped: no green thread can use the
// service any more.
import CGreenCore

protocol KernelService: AnyObject {
    /// Stops the service's OS threads and frees its descriptors.
    func stop()
}

/// What the scheduler calls on the netpoller (IO/Netpoller.swift), which
/// sets `KernelCore.poller` under the kernel lock when it starts and clears
/// it when it stops: an idle processor may wait in its epoll set instead of
/// its futex, a processor that runs out of work polls it, and the poller
/// thread is told when a processor starts running a thread that a waiter on
/// I/O outranks (`KernelCore.ioWatchLevel`).
protocol SchedulerPoller: AnyObject {
    /// Waits on behalf of idle processor `p`, held by the calling Machine,
    /// until `p` is woken or the kernel shuts down. Returns false at once,
    /// without waiting, if another processor waits here already. Kernel
    /// lock held on entry and on return.
    func waitWhileIdle(_ p: Processor) -> Bool
    /// Ends the wait of `p` if it waits here (true); false when it does not,
    /// and the caller wakes its futex as usual. Kernel lock held.
    func interrupt(_ p: Processor) -> Bool
    /// A processor ran out of work, or the monitor looks while every
    /// processor is busy: take what is ready without waiting, if the poller
    /// thread does not watch. `p`: the processor that will run the first
    /// thread made ready (nil for the monitor). Returns whether any thread
    /// was made ready. Kernel lock held.
    func pollNow(for p: Processor?) -> Bool
    /// A processor runs a thread below `KernelCore.ioWatchLevel`: readiness
    /// must be seen at once (it may preempt that thread), so the poller
    /// thread watches. Kernel lock held.
    func watchNeeded()
}

extension KernelCore {
    /// The kernel's service of type `S`, created by `make` on first use.
    /// Kernel lock held (`make` runs under it: it must not block on green
    /// primitives; starting an OS thread is fine, once per kernel).
    func service<S: KernelService>(_ type: S.Type, make: () throws -> S) rethrows -> S {
        let key = ObjectIdentifier(type)
        if let existing = services[key] {
            // The registry maps each type's identifier to an instance of it.
            return unsafeDowncast(existing, to: S.self)
        }
        let created = try make()
        services[key] = created
        return created
    }

    /// The kernel's service of type `S` if one was started. Kernel lock held.
    func existingService<S: KernelService>(_ type: S.Type) -> S? {
        services[ObjectIdentifier(type)].map { unsafeDowncast($0, to: S.self) }
    }

    /// Stops every service (Kernel.run, after the workers stopped).
    func stopServices() {
        let all = withCriticalLock { () -> [any KernelService] in
            let list = Array(services.values)
            services = [:]
            return list
        }
        for s in all { s.stop() }  // without the lock: stop joins OS threads
    }

    /// Records that the current thread is about to park on an event from
    /// outside the kernel (descriptor readiness, the blocking pool): while
    /// any such thread exists, an all-idle kernel is waiting, not
    /// deadlocked. Kernel lock held; balanced by `externalWaitEnded`.
    func externalWaitBegan() { externalWaiters += 1 }

    /// Kernel lock held.
    func externalWaitEnded() {
        precondition(externalWaiters > 0, "external wait count would go negative")
        externalWaiters -= 1
    }
}
