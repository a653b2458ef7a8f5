// GreenLocked: a value-owning mutex, shaped like Synchronization.Mutex, built
// on GreenMutex (priority inheritance, deadlock detection, owner-died and
// handoff all come from there: this file adds no locking policy of its own).
// Because it owns the value and hands it out only inside `withLock`, Swift 6
// checks what GreenMutex cannot: that the guarded state is touched only
// under the lock.
//
// Plain OS threads (a task on the cooperative pool, the program's main
// thread beside a background kernel) use it too. GreenMutex's owner word
// names a GreenThread, so an OS thread takes it under a stand-in owner: a
// GreenThread control block, one per OS thread (`ForeignOwner`), never
// scheduled, on no run queue, belonging to no running kernel. To GreenMutex
// it is an owner like any other: green waiters queue behind it and lend it
// their priority (which changes nothing: the OS schedules that thread), and
// its release hands the mutex to the top green waiter under the kernel lock.
//
// Waiting, by who waits for whom:
//   green for green   GreenMutex: park, priority inheritance, handoff.
//   green for OS      GreenMutex: park; the OS thread's release hands over.
//   OS for anyone     poll the owner word; between polls sleep on
//                     `foreignWake`, a futex every release of this lock
//                     bumps when `foreignWaiters` says an OS thread sleeps.
// An OS thread is never queued in GreenMutex (it has no green thread to
// make ready), so it may take the lock ahead of queued green waiters only
// when the word is free (a free mutex has no queued waiters: GreenMutex
// hands over on release), never by stealing a handoff.
//
// Invariants:
// - `value` is touched only by the holder of `mutex`.
// - While an OS thread holds the mutex it counts in
//   `ExternalEvent.parkedCount`: a green thread waiting for it is not part
//   of a deadlock the kernel could detect (the OS thread will release).
// - Release-then-wake (Dekker): a releaser stores the word, then a seq_cst
//   fence, then reads `foreignWaiters`; an OS waiter adds itself to
//   `foreignWaiters` (seq_cst), reads `foreignWake`, then re-reads the word
//   (seq_cst) before it sleeps on that value. Either the waiter sees the
//   release, or the releaser sees the waiter and bumps the futex.
//
// Lock order: kernel lock only (via GreenMutex and withSyncLock).
import CGreenCore
import Glibc
import Synchronization

/// A value protected by a green-thread mutex with priority inheritance.
///
/// Use it instead of a `GreenMutex` beside shared variables: the value can
/// only be reached inside `withLock`, so Swift 6 checks the sharing. It works
/// from green threads (which park while they wait, and lend their priority
/// to the holder) and from plain OS threads and tasks (which block their
/// OS thread while they wait).
///
/// ```swift
/// let counter = GreenLocked(0)
/// try Kernel.run {
///     let workers = try (0..<4).map { _ in
///         try GreenThread.spawn { try counter.withLock { $0 += 1 } }
///     }
///     for w in workers { try w.join() }
/// }
/// print(try counter.withLock { $0 })   // 4
///
/// let cache = GreenLocked([String: Int](), name: "cache")   // shown in errors and gt-ps
/// print(cache.name)                                         // cache
/// ```
public final class GreenLocked<Value: ~Copyable>: @unchecked Sendable {
    // The green-thread path of withLock is @inlinable (specialized for the
    // caller's Value and R, and GreenMutex's uncontended lock and unlock are
    // inlined into it), so these are @usableFromInline.
    @usableFromInline let mutex: GreenMutex
    // Guarded by `mutex` (see the file header).
    @usableFromInline var value: Value
    /// OS threads sleeping on `foreignWake` (or about to).
    @usableFromInline let foreignWaiters = Atomic<Int>(0)
    /// Bumped by a release that sees `foreignWaiters` > 0; a futex word.
    @usableFromInline let foreignWake: UnsafeMutablePointer<UInt32>

    /// Creates a lock owning `value`.
    public convenience init(_ value: consuming sending Value) {
        self.init(value, name: nil)
    }

    /// Creates a lock owning `value`, named in errors, deadlock reports and
    /// `gt-ps`, with priority inheritance on or off (default on).
    public init(_ value: consuming sending Value, name: String?, priorityInheritance: Bool = true) {
        self.mutex = GreenMutex(name: name, priorityInheritance: priorityInheritance)
        self.value = value
        foreignWake = .allocate(capacity: 1)
        foreignWake.initialize(to: 0)
    }

    deinit { foreignWake.deallocate() }

    /// The underlying mutex's name.
    public var name: String { mutex.name }

    /// Runs `body` with exclusive access to the value, waiting for the lock
    /// as long as it takes, and releases it afterwards (also when `body`
    /// throws).
    ///
    /// - Throws: what `body` throws; `GreenMutexError.alreadyOwned` when the
    ///   calling thread (green or not) already holds this lock, `.deadlock(cycle:)`
    ///   when waiting would close a wait-for cycle, `.cancelled` when the
    ///   waiting green thread is cancelled (in none of these does `body`
    ///   run); `.ownerDied` when a green thread ended inside `body`
    ///   (the value may be half-updated: `body` does not run, and the lock
    ///   is free again for the caller to repair the value).
    @inlinable
    public func withLock<R: ~Copyable>(_ body: (inout sending Value) throws -> sending R) throws -> sending R {
        if gt_current_owner() != nil {
            try lockOnGreenThread()
            defer { unlockOnGreenThread() }
            return try body(&value)
        }
        return try withLockOnOSThread(body)
    }

    // MARK: Green threads: GreenMutex as it is

    @inlinable
    func lockOnGreenThread() throws(GreenMutexError) {
        do {
            try mutex.lock()
        } catch {
            if case .ownerDied = error { unlockOnGreenThread() }
            throw error
        }
    }

    @inlinable
    func unlockOnGreenThread() {
        do { try mutex.unlock() } catch {
            preconditionFailure("GreenLocked.withLock: \(error)")
        }
        wakeForeignWaiters()
    }

    // MARK: OS threads: a stand-in owner

    @usableFromInline
    func withLockOnOSThread<R: ~Copyable>(_ body: (inout sending Value) throws -> sending R) throws -> sending R {
        let owner = ForeignOwner.current
        try lockOnOSThread(owner)
        defer { unlockOnOSThread(owner) }
        return try body(&value)
    }

    private func lockOnOSThread(_ owner: ForeignOwner) throws(GreenMutexError) {
        let mine = owner.word
        // Only this OS thread stores its stand-in's address, so reading it
        // back means this thread holds the lock: waiting would never end.
        if mutex.word.load(ordering: .relaxed) & GreenMutex.ownerMask == mine {
            throw GreenMutexError.alreadyOwned(thread: ThreadIdentity(owner.thread), mutex: mutex.identity)
        }
        // Counted before the word can name it (the waiter's acquire load of
        // the word, under the kernel lock, then sees the count).
        ExternalEvent.parkedCount.add(1, ordering: .relaxed)
        while true {
            let w = mutex.word.load(ordering: .sequentiallyConsistent)
            if w == 0 {
                if mutex.word.compareExchange(expected: 0, desired: mine, ordering: .acquiringAndReleasing).exchanged {
                    return
                }
                continue
            }
            if w == GreenMutex.ownerDiedFree {
                try takeFromDeadOwner(owner)
                continue
            }
            sleepUntilReleased(seenWord: w)
        }
    }

    /// The last green owner ended holding the mutex: claim it, clear that
    /// state, and report it (as the green path does). Throws only when it
    /// was this call that claimed it.
    private func takeFromDeadOwner(_ owner: ForeignOwner) throws(GreenMutexError) {
        let previous = withSyncLock { _ -> ThreadIdentity? in
            guard mutex.word.compareExchange(expected: GreenMutex.ownerDiedFree, desired: 0,
                                             ordering: .acquiringAndReleasing).exchanged else { return nil }
            defer { mutex.diedOwner = nil }
            return mutex.diedOwner
        }
        guard let previous else { return }
        ExternalEvent.parkedCount.subtract(1, ordering: .relaxed)
        wakeForeignWaiters()
        throw GreenMutexError.ownerDied(previousOwner: previous, mutex: mutex.identity)
    }

    private func sleepUntilReleased(seenWord: UInt) {
        foreignWaiters.add(1, ordering: .sequentiallyConsistent)
        let seq = gt_atomic_load_u32(foreignWake)
        if mutex.word.load(ordering: .sequentiallyConsistent) == seenWord {
            // A green owner's release, or a handoff between green threads,
            // bumps the word; EINTR and spurious returns just poll again.
            _ = gt_sys_futex_wait(foreignWake, seq, -1)
        }
        foreignWaiters.subtract(1, ordering: .relaxed)
    }

    private func unlockOnOSThread(_ owner: ForeignOwner) {
        let mine = owner.word
        if !mutex.word.compareExchange(expected: mine, desired: 0, ordering: .releasing).exchanged {
            // Green threads queued meanwhile (hasWaiters): hand over to the
            // top one under the kernel lock, as GreenMutex's unlock does.
            withSyncLock { kernel in
                guard !mutex.word.compareExchange(expected: mine, desired: 0, ordering: .releasing).exchanged else {
                    return
                }
                guard let kernel else {
                    preconditionFailure("\(mutex) has green waiters but no kernel runs")
                }
                mutex.releaseContended(by: owner.thread, kernel)
            }
        }
        ExternalEvent.parkedCount.subtract(1, ordering: .relaxed)
        wakeForeignWaiters()
    }

    /// After any release: wake sleeping OS waiters (see the file header).
    /// The fence is the releaser's half of the Dekker pair: without it the
    /// load below could be ordered before the release of the word.
    @inlinable
    func wakeForeignWaiters() {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard foreignWaiters.load(ordering: .sequentiallyConsistent) > 0 else { return }
        _ = gt_atomic_fetch_add_u32(foreignWake, 1)
        _ = gt_sys_futex_wake(foreignWake, Int32.max)
    }
}

/// The stand-in owner of a GreenMutex held by a plain OS thread: a green
/// thread control block that is never scheduled. Its kernel is a
/// placeholder that never runs (a GreenThread must name one; nothing on the
/// paths an owner goes through reads it: they take the waiter's kernel).
/// One per OS thread, made on its first GreenLocked call and kept in a
/// pthread key (released when the thread exits): an OS thread holding
/// several locks is one owner to each, and relocking one it holds is seen.
private final class ForeignOwner {
    static let placeholderKernel = KernelCore(configuration: KernelConfiguration())

    static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { raw in
            Unmanaged<ForeignOwner>.fromOpaque(raw!).release()
        }
        precondition(rc == 0, "pthread_key_create failed (\(rc)): out of thread-specific keys")
        return key
    }()

    /// The calling OS thread's stand-in.
    static var current: ForeignOwner {
        if let raw = pthread_getspecific(key) {
            return Unmanaged<ForeignOwner>.fromOpaque(raw).takeUnretainedValue()
        }
        let owner = ForeignOwner()
        pthread_setspecific(key, Unmanaged.passRetained(owner).toOpaque())
        return owner
    }

    let thread: GreenThread

    private init() {
        let id = KernelCore.nextThreadID.add(1, ordering: .relaxed).oldValue
        thread = GreenThread(id: id, name: "os-thread \(gt_sys_gettid().value)", priority: .lowest,
                             kernel: ForeignOwner.placeholderKernel)
    }

    /// The owner word naming it (a GreenThread address: 16-byte aligned).
    var word: UInt { UInt(bitPattern: Unmanaged.passUnretained(thread).toOpaque()) }
}
