// KernelHandle: a kernel running in the background, for async programs.
// `Kernel.start` runs the ordinary `Kernel.run` on an OS thread of its own
// ("gt-kernel", which becomes worker 0) with a main green thread that only
// waits for `shutdown`; so this file depends on `Kernel.run`'s contract, not
// on how workers are built. Code on any thread (a task, a plain OS thread, a
// green thread) spawns into it with `handle.spawn` and awaits results with
// `JoinHandle.value`.
//
// Life of a handle:
//   starting  -> the gt-kernel thread's main green thread attaches the
//                kernel and opens the handle (`accepting`), then parks;
//   running   -> spawns are accepted;
//   stopping  -> `shutdown()` closed the handle; once no spawn is in flight
//                the main green thread is released and returns; Kernel.run
//                then waits for every green thread, as it always does;
//   stopped   -> Kernel.run returned on the gt-kernel thread; its outcome
//                (nil, or the error it threw, such as a deadlock report) is
//                handed to every `shutdown()` caller.
//
// Invariants (guarded by the kernel lock, `kernel.lock`, taken with
// withCriticalLock from any thread):
// - `accepting` is true from attach until shutdown; a spawn reserves itself
//   (`spawnsInFlight += 1`) while it holds the lock and sees `accepting`,
//   and the main green thread is released only when `accepting` is false and
//   no spawn is in flight. So every accepted spawn starts its thread while
//   the main thread is alive, the kernel cannot begin to shut down under it,
//   and `runQueue` (freed when Kernel.run ends) is never touched after.
// - `kernel` is a strong reference, so the lock stays valid after the run.
// `outcome`/`stopWaiters` are guarded by `stopLock` (a Synchronization
// Mutex: only taken from outside green threads, or on the gt-kernel OS
// thread after its kernel has stopped).
//
// Lock order: kernel lock and stopLock are never held together.
import CGreenCore
import Synchronization

extension Kernel {
    /// Starts a kernel in the background and returns a handle to it, for
    /// programs whose `main` is async. Its worker OS threads are its own
    /// (the caller's thread is not taken over, unlike `Kernel.run`).
    ///
    /// ```swift
    /// let kernel = try Kernel.start()
    /// let answer = try kernel.spawn(name: "compute") { 6 * 7 }
    /// print(try await answer.value)   // 42
    /// try await kernel.shutdown()
    /// ```
    ///
    /// - Throws: what `Kernel.run` throws when it cannot start
    ///   (`KernelError.alreadyRunning`, configuration and system errors).
    public static func start(_ configuration: KernelConfiguration = KernelConfiguration()) throws -> Handle {
        try configuration.validate()
        let handle = Handle()
        let started = ExternalEvent()  // fired by attach, or by the run's end if it never attached
        let thread = try OSThread.start(name: "gt-kernel", blockingPreemptionSignal: false) {
            let outcome: (any Error)?
            do {
                try Kernel.run(configuration) {
                    handle.attach(GreenThread.current.kernel, started: started)
                    _ = handle.release.wait(.kernelHandle, cancellable: false)
                }
                outcome = nil
            } catch {
                outcome = error
            }
            handle.stopped(outcome)
            started.fire()
        }
        _ = started.wait(.kernelStart, cancellable: false)
        if !handle.isAttached {
            thread.join()
            throw handle.stopError ?? KernelError.system(call: "Kernel.start", errno: 0)
        }
        handle.osThread.withLock { $0 = thread }
        return handle
    }

    /// A kernel started with `Kernel.start`: spawn green threads into it
    /// from any thread or task, and `shutdown()` it when done.
    ///
    /// ```swift
    /// func answer(_ kernel: Kernel.Handle) async throws -> String {
    ///     guard kernel.isRunning else { return "stopped" }
    ///     let reply = try kernel.spawn(name: "reply", priority: .high) { "pong" }
    ///     return try await reply.value
    /// }
    /// let kernel = try Kernel.start()
    /// print(try await answer(kernel))   // pong
    /// try await kernel.shutdown()       // waits for every green thread
    /// ```
    public final class Handle: @unchecked Sendable {
        // --- kernel lock (see the file header) ---
        @exclusivity(unchecked) private var kernel: KernelCore?
        @exclusivity(unchecked) private var accepting = false
        @exclusivity(unchecked) private var spawnsInFlight = 0

        /// Set once, before `start` returns (written by the gt-kernel
        /// thread before it fires `started`).
        private var attachedFlag = false

        /// Parks the main green thread until shutdown releases it.
        fileprivate var release: ExternalEvent!

        // --- stopLock ---
        private struct StopState {
            var stopped = false
            var outcome: (any Error)?
            var waiters: [CheckedContinuation<Void, Never>] = []
        }
        private let stopLock = Mutex(StopState())
        fileprivate let osThread = Mutex<OSThread?>(nil)

        fileprivate init() {}

        fileprivate var isAttached: Bool { attachedFlag }
        fileprivate var stopError: (any Error)? { stopLock.withLock { $0.outcome } }

        /// On the main green thread: opens the handle.
        fileprivate func attach(_ core: KernelCore, started: ExternalEvent) {
            release = ExternalEvent()
            core.withCriticalLock {
                kernel = core
                accepting = true
            }
            attachedFlag = true
            started.fire()
        }

        /// On the gt-kernel OS thread once Kernel.run returned. Closes the
        /// handle first, should the run have ended without `shutdown` (a
        /// spawn must never reach a kernel whose run queue is gone).
        fileprivate func stopped(_ outcome: (any Error)?) {
            if let kernel = lockedKernel() {
                kernel.withCriticalLock { accepting = false }
            }
            let waiters = stopLock.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.stopped = true
                state.outcome = outcome
                defer { state.waiters = [] }
                return state.waiters
            }
            for w in waiters { w.resume() }
        }

        /// Whether the kernel accepts new threads (a snapshot).
        public var isRunning: Bool {
            guard let kernel = lockedKernel() else { return false }
            return kernel.withCriticalLock { accepting }
        }

        private func lockedKernel() -> KernelCore? {
            // Written once, before `start` returned the handle.
            attachedFlag ? kernel : nil
        }

        /// Starts a green thread in this kernel. Callable from any thread or
        /// task (it does not wait for the thread: await `value` or `join()`
        /// the handle it returns).
        ///
        /// - Throws: `GreenThreadError.kernelStopped` once `shutdown()` has
        ///   begun; `.invalidStackSize` below `GreenThread.minimumStackSize`;
        ///   `.outOfStackMemory`.
        @discardableResult
        public func spawn<T>(name: String? = nil, priority: Priority = .normal, stackSize: Int? = nil,
                             _ body: sending @escaping () throws -> T) throws -> JoinHandle<T> {
            guard let kernel = lockedKernel() else { throw GreenThreadError.kernelStopped }
            let size = stackSize ?? kernel.configuration.defaultStackSize
            guard size >= GreenThread.minimumStackSize else {
                throw GreenThreadError.invalidStackSize(size, minimum: GreenThread.minimumStackSize)
            }
            let reserved = kernel.withCriticalLock { () -> Bool in
                guard accepting else { return false }
                spawnsInFlight += 1
                return true
            }
            guard reserved else { throw GreenThreadError.kernelStopped }
            defer { finishSpawn(kernel) }
            let completion = JoinCompletion<T>()
            let thread = try kernel.createThread(name: name, priority: priority, stackSize: size) {
                completion.complete(Result { try body() })
            }
            kernel.withCriticalLock { kernel.start(thread) }
            return JoinHandle(thread: thread, completion: completion)
        }

        /// Ends a reservation; the last one after shutdown releases main.
        private func finishSpawn(_ kernel: KernelCore) {
            let releaseMain = kernel.withCriticalLock { () -> Bool in
                spawnsInFlight -= 1
                return !accepting && spawnsInFlight == 0
            }
            if releaseMain { release.fire() }
        }

        /// Stops accepting threads, waits for every green thread to finish
        /// and for the workers to stop, without blocking the calling OS
        /// thread. Any number of callers may wait; each gets the outcome.
        ///
        /// - Throws: the error the kernel's run ended with, such as
        ///   `KernelError.deadlock` when its remaining threads blocked forever.
        public func shutdown() async throws {
            if let kernel = lockedKernel() {
                let releaseMain = kernel.withCriticalLock { () -> Bool in
                    guard accepting else { return false }
                    accepting = false
                    return spawnsInFlight == 0
                }
                if releaseMain { release.fire() }
            }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let done = stopLock.withLock { state -> Bool in
                    if state.stopped { return true }
                    state.waiters.append(c)
                    return false
                }
                if done { c.resume() }
            }
            // The gt-kernel thread resumed us as its last act: joining it is
            // a wait of microseconds, and frees its OS resources.
            if let thread = osThread.withLock({ t -> OSThread? in defer { t = nil }; return t }) {
                thread.join()
            }
            if let error = stopLock.withLock({ $0.outcome }) { throw error }
        }
    }
}
