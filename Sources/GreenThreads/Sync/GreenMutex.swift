// GreenMutex: a non-recursive, robust, priority-inheritance mutex for green
// threads.
//
// Owns: the owner word and its two paths (uncontended, contended), the
// handoff on unlock, and each thread's robust list of held mutexes. The
// chain walk (priority inheritance, deadlock detection) is in
// PriorityInheritance.swift; owner death in ThreadExit.swift; the checks of
// the invariants below in SyncInvariants.swift.
//
// The owner word (`word`) is the owner's GreenThread address (16-byte
// aligned, so the two low bits are free) or'ed with flags:
//     0                     free
//     owner                 held, nobody waits
//     owner | hasWaiters    held, waiters queued: unlock must take the slow path
//     ownerDiedFree (2)     free, and the last owner ended holding it: the
//                           next locker gets the lock and `.ownerDied`
// Uncontended lock is one CAS 0 -> owner, uncontended unlock one CAS
// owner -> 0: no kernel lock, no system call, no scheduler. Every other
// transition happens under the kernel lock.
//
// Invariants:
// - Under the kernel lock, `hasWaiters` is set exactly when `waiters` is
//   non-empty (a locker sets it before queueing and clears it if it ends up
//   not queueing). While it is set, only kernel-lock holders change the
//   word: the owner's unlock CAS expects the bare owner address and fails.
// - A mutex with waiters has an owner (a free mutex with waiters would be a
//   lost wake-up): unlock hands the mutex straight to the top waiter.
// - The owner word names a live thread: a thread that ends releases every
//   mutex on its robust list (ThreadExit.swift) before it is reaped.
// - The robust list (`heldMutexes` on the thread, `heldNext`/`heldPrev`
//   here) holds exactly the mutexes the thread owns, once it returns from
//   the lock call; it is touched only by the owning thread itself (lock,
//   unlock, its own exit), so the fast path needs no lock for it. A free
//   mutex's links are stale and never read: pushHeld writes both.
// - A mutex with priority inheritance and waiters is on its owner's
//   `contendedMutexes` list, and only then (PriorityInheritance.swift).
//
// Handoff. Unlock with waiters gives the mutex directly to the top waiter
// (highest effective priority, FIFO within a level) instead of waking it to
// retry. With wake-and-retry, a thread of any priority that runs first
// could take the mutex meanwhile ("barging"), and the high-priority waiter
// would wait again, for a thread it may not even boost: unbounded inversion
// through the back door. Handoff makes the bound in the priority-inheritance
// argument hold (the top waiter waits only for the critical sections ahead
// of it) and makes the order of service exactly the queue order. Its price
// is throughput under heavy contention among equals (the releasing thread
// cannot retake the mutex in the same slice: a lock convoy); Linux's
// rt_mutex pays the same price for the same reason, allowing only
// higher-priority "steals".
//
// Lock order: kernel lock only (there is no per-mutex lock).
import CGreenCore
import Synchronization

/// A mutual-exclusion lock for green threads, with priority inheritance,
/// deadlock detection and robust (owner-died) semantics.
///
/// - Not recursive: locking it again from its owner throws
///   `GreenMutexError.alreadyOwned`; unlocking from another thread throws
///   `GreenMutexError.notOwner`.
/// - Priority inheritance: while threads wait, the owner runs at the highest
///   effective priority among them, transitively along chains of mutexes.
/// - A `lock()` that would close a wait-for cycle throws
///   `GreenMutexError.deadlock(cycle:)` instead of hanging.
/// - If the owner ends while holding it, the next `lock()` acquires it and
///   throws `GreenMutexError.ownerDied`: the caller then holds the mutex,
///   repairs the state it protects, and unlocks it as usual.
///
/// For new code prefer `GreenLocked`, which is built on this mutex and owns
/// the value it guards, so that Swift 6 checks the sharing. A `GreenMutex`
/// guards state the compiler cannot connect to it: the type that holds both
/// must vouch for itself with `@unchecked Sendable`.
///
/// ```swift
/// final class Account: @unchecked Sendable {
///     let lock = GreenMutex(name: "account")
///     var balance = 0                      // guarded by `lock`
/// }
/// let account = Account()
/// try Kernel.run {
///     let workers = try (0..<4).map { _ in
///         try GreenThread.spawn { try account.lock.withLock { account.balance += 1 } }
///     }
///     for w in workers { try w.join() }
///     print(account.lock.name, account.lock.id, account.lock.owner?.name ?? "free")   // account <id> free
/// }
/// ```
public final class GreenMutex: @unchecked Sendable, CustomStringConvertible {
    /// The longest chain of blocked owners a lock walks (T1 waits for a
    /// mutex held by T2, which waits for one held by T3, ...). A lock whose
    /// walk would go further throws `.chainTooDeep` rather than walking
    /// without bound. 1024, as Linux's default `max_lock_depth`: real chains
    /// are a handful of links; a walk of 1024 costs tens of microseconds
    /// under the kernel lock, which bounds what one lock call can stall.
    ///
    /// ```swift
    /// print(GreenMutex.maxChainDepth)   // 1024
    /// ```
    public static let maxChainDepth = 1024

    /// Unique among sync objects for the process's life.
    public let id: UInt64
    /// The name given at creation, or "mutex-<id>".
    public let name: String
    /// Whether waiters lend their priority to the owner. Off only to show
    /// what inheritance prevents (the Mars Pathfinder test).
    ///
    /// ```swift
    /// let bus = GreenMutex(name: "bus", priorityInheritance: false)   // the 1997 bug, on purpose
    /// print(bus.priorityInheritance)                                   // false
    /// ```
    public let priorityInheritance: Bool

    /// The owner word (see the file header). The uncontended paths below
    /// are @inlinable, so this and the few members they touch are
    /// @usableFromInline: inlined into the caller, lock+unlock is two CASes,
    /// two calls that read the current thread, and four stores of links.
    @usableFromInline let word = Atomic<UInt>(0)
    @usableFromInline static let hasWaiters: UInt = 1
    static let ownerDiedFree: UInt = 2
    @usableFromInline static let ownerMask: UInt = ~3

    // --- kernel lock ---
    /// Threads blocked in lock(), highest effective priority first.
    @exclusivity(unchecked) var waiters = WaitQueue()
    /// Who ended holding the mutex, while it is free in ownerDiedFree state.
    @exclusivity(unchecked) var diedOwner: ThreadIdentity?

    // --- the owner's robust list (touched only by the owning thread) ---
    // Unmanaged, not unowned(unsafe): loading an unowned(unsafe) reference
    // makes a strong copy (a retain/release pair, ~10 ns on the fast path).
    // A mutex on a list is kept alive by its owner, who is about to use it.
    @usableFromInline @exclusivity(unchecked) var heldNext: Unmanaged<GreenMutex>?
    @usableFromInline @exclusivity(unchecked) var heldPrev: Unmanaged<GreenMutex>?

    /// Creates an unlocked mutex.
    /// - Parameters:
    ///   - name: shown in errors, deadlock reports and `gt-ps`.
    ///   - priorityInheritance: whether waiters boost the owner (default true).
    ///
    /// ```swift
    /// let accounts = GreenMutex(name: "accounts")
    /// ```
    public init(name: String? = nil, priorityInheritance: Bool = true) {
        let id = SyncObjectIDs.make()
        self.id = id
        self.name = name ?? "mutex-\(id)"
        self.priorityInheritance = priorityInheritance
    }

    /// A mutex dropped while held is on its owner's robust list. Dropped by
    /// the owner itself (say, a thread that ends holding a mutex nothing
    /// else references): it leaves the list, and nobody can lock it again,
    /// so nobody needs `.ownerDied`. Dropped by another thread while held:
    /// the owner has lost every reference to it and can never unlock it,
    /// and unlinking from another thread's list would race with its fast
    /// path, so that is a precondition failure naming both.
    deinit {
        let owner = word.load(ordering: .acquiring) & GreenMutex.ownerMask
        guard owner != 0 else { return }
        guard let me = gt_current_owner(), UInt(bitPattern: me) == owner else {
            let holder = Unmanaged<GreenThread>.fromOpaque(UnsafeRawPointer(bitPattern: owner)!).takeUnretainedValue()
            preconditionFailure("\(self) was deallocated while \(holder) holds it, by code outside that thread: "
                + "unlock a mutex before dropping the last reference to it")
        }
        unlinkHeld(by: me)
    }

    /// "mutex 3 'accounts'".
    public var description: String { "mutex \(id) '\(name)'" }

    var identity: SyncObjectIdentity { SyncObjectIdentity(kind: "mutex", id: id, name: name) }

    /// The thread holding the mutex, or nil. A snapshot: it may change right
    /// after the read.
    public var owner: GreenThread? { withSyncLock { _ in ownerThread } }

    /// The owner named by the word. Kernel lock held (the lock keeps the
    /// owner from ending meanwhile, so the reference is valid).
    var ownerThread: GreenThread? {
        let owner = word.load(ordering: .acquiring) & GreenMutex.ownerMask
        guard owner != 0 else { return nil }
        return Unmanaged<GreenThread>.fromOpaque(UnsafeRawPointer(bitPattern: owner)!).takeUnretainedValue()
    }

    // MARK: Lock

    /// Waits until the calling thread holds the mutex.
    ///
    /// - Throws: `.alreadyOwned` if the caller holds it; `.deadlock(cycle:)`
    ///   if waiting would close a wait-for cycle; `.chainTooDeep`;
    ///   `.cancelled` when the waiting thread is cancelled
    ///   (`GreenThread.cancel()`; a free mutex is still taken);
    ///   `.notInKernel` outside a green thread (none of these acquire it);
    ///   `.ownerDied` when the previous owner ended holding it (this one
    ///   does acquire it: the caller holds the mutex).
    ///
    /// ```swift
    /// func transfer(_ accounts: GreenMutex) throws {
    ///     try accounts.lock()
    ///     defer { try? accounts.unlock() }
    ///     useSharedState()                   // one thread at a time in here
    /// }
    /// ```
    @inlinable
    public func lock() throws(GreenMutexError) {
        // gt_current_owner is inline (gt_core.h): a preempted thread keeps
        // its OS thread, so reading "this OS thread's current thread" cannot
        // be split, and the volatile read of the thread pointer is redone
        // after any switch.
        if let me = gt_current_owner(),
           // Uncontended: one CAS; acquire ordering pairs with the release
           // of the previous unlock, so the protected data is visible.
           word.compareExchange(expected: 0, desired: UInt(bitPattern: me), successOrdering: .acquiring,
                                failureOrdering: .relaxed).exchanged {
            pushHeld(by: me)
            return
        }
        try lockSlowPath()
    }

    /// lock() when the CAS failed or outside a green thread.
    @usableFromInline @inline(never)
    func lockSlowPath() throws(GreenMutexError) {
        guard let me = gt_current_owner() else { throw GreenMutexError.notInKernel(operation: "GreenMutex.lock") }
        _ = try lockContended(me, deadline: nil, cancellable: true)
    }

    /// lock() for a caller that must end up holding the mutex whether or
    /// not its thread is cancelled (a condition wait retaking it). Issue 14.
    func lockIgnoringCancellation() throws(GreenMutexError) {
        guard let me = gt_current_owner() else { throw GreenMutexError.notInKernel(operation: "GreenMutex.lock") }
        if word.compareExchange(expected: 0, desired: UInt(bitPattern: me), successOrdering: .acquiring,
                                failureOrdering: .relaxed).exchanged {
            pushHeld(by: me)
            return
        }
        _ = try lockContended(me, deadline: nil, cancellable: false)
    }

    /// Like `lock()`, but gives up after `timeout`.
    /// - Returns: true when the caller holds the mutex, false on timeout.
    /// - Throws: as `lock()`.
    ///
    /// ```swift
    /// func transferSoon(_ accounts: GreenMutex) throws -> Bool {
    ///     guard try accounts.lock(timeout: .milliseconds(50)) else { return false }   // busy: retry later
    ///     defer { try? accounts.unlock() }
    ///     useSharedState()
    ///     return true
    /// }
    /// ```
    public func lock(timeout: Duration) throws(GreenMutexError) -> Bool {
        guard let me = gt_current_owner() else { throw GreenMutexError.notInKernel(operation: "GreenMutex.lock(timeout:)") }
        if word.compareExchange(expected: 0, desired: UInt(bitPattern: me), successOrdering: .acquiring,
                                failureOrdering: .relaxed).exchanged {
            pushHeld(by: me)
            return true
        }
        return try lockContended(me, deadline: syncDeadline(after: timeout), cancellable: false)
    }

    /// Takes the mutex if it is free, without waiting.
    ///
    /// Returns false when another thread holds it, when the caller already
    /// holds it, outside a green thread, and when its last owner ended
    /// holding it (tryLock cannot report `.ownerDied`: use `lock()`, which
    /// acquires such a mutex and throws `.ownerDied`).
    ///
    /// ```swift
    /// func flushIfIdle(_ accounts: GreenMutex) {
    ///     if accounts.tryLock() {
    ///         defer { try? accounts.unlock() }
    ///         useSharedState()
    ///     }                                  // else: somebody else is at it
    /// }
    /// ```
    public func tryLock() -> Bool {
        guard let me = gt_current_owner() else { return false }
        if word.compareExchange(expected: 0, desired: UInt(bitPattern: me), successOrdering: .acquiring,
                                failureOrdering: .relaxed).exchanged {
            pushHeld(by: me)
            return true
        }
        return false
    }

    /// CPU pauses (each tens of nanoseconds: 22 ns on this machine's AMD
    /// EPYC) a contended lock spends before it parks, when the kernel has
    /// more than one worker: a few short critical sections, far below a park
    /// and wake-up. Between looks at the word it waits 1, 2, 4 ... up to
    /// `maxSpinPause` pauses: a spinner that looked after every pause kept
    /// the word's cache line away from the owner, whose unlock and next
    /// lock then waited for it. Measured in gt-bench (2 threads on 2
    /// workers, 3 runs each): 43-48 ns/op looking after every pause, 21-22
    /// with a cap of 4, 16-19 with 8, 12-13 with 32 (pthread_mutex 27-38).
    static let spinPausesBeforeParking = 256
    static let maxSpinPause = 32

    /// CAS attempts step 1 of the contended path makes under the kernel
    /// lock before it lets the lock go and starts over. Each failure means
    /// another thread changed the word without the lock (a lock or an
    /// unlock), so that thread made progress; but the kernel lock, and with
    /// it every worker's scheduling, must not wait on a race this thread may
    /// keep losing. 64 failed CASes on a contended line are a few
    /// microseconds, about one ordinary hold of the kernel lock.
    static let casAttemptsUnderKernelLock = 64

    /// What the contended path decided, under the kernel lock.
    private enum Contended {
        case acquired, acquiredOwnerDied(ThreadIdentity), timedOut, failed(GreenMutexError)
        /// Step 1 lost its race `casAttemptsUnderKernelLock` times: retry
        /// with the kernel lock released.
        case retry
    }

    /// The lock path once the CAS failed: takes the kernel lock, then
    /// acquires, queues and blocks, or fails. Returns false on timeout.
    @inline(never)
    private func lockContended(_ me: UnsafeMutableRawPointer, deadline: Int64?,
                               cancellable: Bool) throws(GreenMutexError) -> Bool {
        let threadRef = Unmanaged<GreenThread>.fromOpaque(me)
        // Only the owner sets its own address, so a word naming us is stable.
        if word.load(ordering: .relaxed) & GreenMutex.ownerMask == UInt(bitPattern: me) {
            throw GreenMutexError.alreadyOwned(thread: ThreadIdentity(threadRef.takeUnretainedValue()), mutex: identity)
        }
        // With several workers the owner may be running right now and about
        // to unlock: spin briefly before parking. Without this, two threads
        // contending from two workers paid a cross-worker wake-up for every
        // operation (a handoff convoy: 526 ns/op against pthread_mutex's
        // 36 ns in gt-bench). The spin reads only the word, never the owner,
        // backs off between looks (`maxSpinPause`), and reaches the thread
        // and kernel unretained: a spin that wins counts no references.
        let processorCount = threadRef._withUnsafeGuaranteedRef { thread in
            thread.kernelRef._withUnsafeGuaranteedRef { $0.processors.count }
        }
        if processorCount > 1 {
            var pause = 1, spent = 0
            while spent < GreenMutex.spinPausesBeforeParking {
                if word.load(ordering: .relaxed) == 0,
                   word.compareExchange(expected: 0, desired: UInt(bitPattern: me), successOrdering: .acquiring,
                                        failureOrdering: .relaxed).exchanged {
                    pushHeld(by: me)
                    return true
                }
                for _ in 0..<pause { gt_cpu_relax() }
                spent += pause
                pause = min(2 * pause, GreenMutex.maxSpinPause)
            }
        }
        let thread = threadRef.takeUnretainedValue()
        let kernel = thread.kernel
        // The thread's own entry, made once before the kernel lock is
        // taken, used unretained.
        let waiter = thread.ownSyncWaiter()
        var result = kernel.withBlockingSection {
            acquireOrWait(thread, waiter, kernel, deadline: deadline, cancellable: cancellable)
        }
        while case .retry = result {
            // Let the racing threads run with the lock free, then start over.
            gt_cpu_relax()
            if let deadline, deadline <= gt_clock_monotonic_ns() { return false }
            result = kernel.withBlockingSection {
                acquireOrWait(thread, waiter, kernel, deadline: deadline, cancellable: cancellable)
            }
        }
        switch result {
        case .retry:
            preconditionFailure("unreachable: the loop above consumes .retry")
        case .acquired:
            pushHeld(by: me)
            return true
        case .acquiredOwnerDied(let previous):
            pushHeld(by: me)
            throw GreenMutexError.ownerDied(previousOwner: previous, mutex: identity)
        case .timedOut:
            return false
        case .failed(let error):
            throw error
        }
    }

    /// Kernel lock held, critical count 1. The steps, in order:
    private func acquireOrWait(_ me: GreenThread, _ waiterRef: Unmanaged<SyncWaiter>, _ kernel: KernelCore,
                               deadline: Int64?, cancellable: Bool) -> Contended {
        let mine = UInt(bitPattern: Unmanaged.passUnretained(me).toOpaque())
        // 1. Take the mutex if it is free (also in the owner-died state), or
        //    set hasWaiters so that the owner's unlock comes to the kernel
        //    lock. Loop: the owner may release it (one CAS) meanwhile, and
        //    others may take it; bounded (casAttemptsUnderKernelLock).
        var attempt = 0
        while true {
            guard attempt < GreenMutex.casAttemptsUnderKernelLock else { return .retry }
            attempt += 1
            let w = word.load(ordering: .acquiring)
            SyncTestHooks.contendedLockAttempt?(attempt)
            if w == 0 {
                if cas(0, mine) { return .acquired }
            } else if w == GreenMutex.ownerDiedFree {
                if cas(w, mine) {
                    let previous = diedOwner!
                    diedOwner = nil
                    return .acquiredOwnerDied(previous)
                }
            } else if w & GreenMutex.hasWaiters != 0 || cas(w, w | GreenMutex.hasWaiters) {
                break
            }
        }
        // From here on only kernel-lock holders change the word.
        let owner = ownerThread!
        // 2. A deadline already past (lock(timeout: .zero)): fail now.
        if let deadline, deadline <= gt_clock_monotonic_ns() {
            clearHasWaitersIfIdle()
            return .timedOut
        }
        // 3. Waiting must not close a cycle nor make a chain too long to walk.
        if let error = kernel.chainError(locking: self, by: me) {
            clearHasWaitersIfIdle()
            return .failed(error)
        }
        // 4. Queue by effective priority, lend it along the chain of owners.
        return waiterRef._withUnsafeGuaranteedRef { waiter in
            queueAndWait(me, waiter, owner, kernel, deadline: deadline, cancellable: cancellable)
        }
    }

    /// Steps 4 and 5 of acquireOrWait. Kernel lock held, hasWaiters set.
    private func queueAndWait(_ me: GreenThread, _ waiter: SyncWaiter, _ owner: GreenThread, _ kernel: KernelCore,
                              deadline: Int64?, cancellable: Bool) -> Contended {
        waiter.begin(on: self)
        waiters.insert(waiter)
        me.syncWaiter = waiter
        kernel.mutexWaitersChanged(self, owner: owner)
        #if DEBUG
        kernel.debugVerify(self, caller: me)
        #endif
        // 5. Block until an unlock hands the mutex over, the owner dies, the
        //    deadline passes, or (cancellable) the thread is cancelled.
        //    A timeout or cancellation ends it through `withdraw` below.
        let outcome = kernel.blockAsWaiter(waiter, on: self, .mutex, objectID: id, deadline: deadline, cancellable: cancellable)
        switch outcome {
        case .granted: return .acquired
        case .ownerDied(let previous): return .acquiredOwnerDied(previous)
        case .timedOut where deadline == nil:  // only cancellation ends an untimed wait early
            return .failed(.cancelled(thread: ThreadIdentity(me), mutex: identity))
        case .timedOut: return .timedOut
        case .waiting, .closed: preconditionFailure("\(me) woke from \(self) with outcome \(outcome)")
        }
    }

    /// `waiter`'s deadline passed before a handoff (monitor, kernel lock):
    /// it leaves the queue, and the owner's priority drops to what the
    /// remaining waiters require. The order is the point (issue 10): the
    /// owner is read and recomputed while hasWaiters is still set, because
    /// only then is the owner word stable; once the bit is clear the owner
    /// may unlock lock-free (and another thread lock) at any moment, and an
    /// owner found by reading the word afterwards may not be the one that
    /// inherited from this waiter.
    private func timedOut(_ waiter: SyncWaiter, _ kernel: KernelCore) {
        // The waiter was queued until now, so the bit is set and the mutex
        // has an owner (a mutex with waiters is held).
        let owner = ownerThread!
        waiters.remove(waiter)
        SyncTestHooks.mutexTimeout?(.waiterRemoved)
        kernel.mutexWaitersChanged(self, owner: owner)
        clearHasWaitersIfIdle()
        SyncTestHooks.mutexTimeout?(.hasWaitersCleared)
        #if DEBUG
        // The old owner's invariants too: after the bit is cleared the
        // word may name somebody else, and the old owner is the thread
        // whose inherited level this timeout had to lower.
        kernel.debugVerify(self, caller: nil, previousOwner: owner)
        #endif
    }

    @inline(__always)
    private func cas(_ expected: UInt, _ desired: UInt) -> Bool {
        word.compareExchange(expected: expected, desired: desired, successOrdering: .acquiringAndReleasing,
                             failureOrdering: .relaxed).exchanged
    }

    /// Clears hasWaiters when nobody is queued. Kernel lock held; the bit
    /// is set, so the word is stable.
    private func clearHasWaitersIfIdle() {
        guard waiters.isEmpty else { return }
        let w = word.load(ordering: .relaxed)
        word.store(w & ~GreenMutex.hasWaiters, ordering: .releasing)
    }

    // MARK: Unlock

    /// Releases the mutex. If threads wait, the one of highest effective
    /// priority (the longest waiting among equals) becomes the owner at once.
    ///
    /// - Throws: `.notOwner` when the caller does not hold it;
    ///   `.notInKernel` outside a green thread (which can hold no mutex).
    ///
    /// ```swift
    /// func deposit(_ accounts: GreenMutex) throws {
    ///     try accounts.lock()
    ///     useSharedState()
    ///     try accounts.unlock()              // from another thread: throws .notOwner
    /// }
    /// ```
    @inlinable
    public func unlock() throws(GreenMutexError) {
        if let me = gt_current_owner() {
            let mine = UInt(bitPattern: me)
            // Only the owner stores its own address, so reading it back
            // proves ownership (relaxed: our own earlier write).
            let w = word.load(ordering: .relaxed)
            if w == mine {
                // Off the robust list before the release: once released,
                // the next owner links this mutex into its own list.
                unlinkHeld(by: me)
                // Uncontended: one CAS; release ordering publishes the
                // protected data. It fails if a waiter set hasWaiters since.
                if word.compareExchange(expected: mine, desired: 0, successOrdering: .releasing,
                                        failureOrdering: .relaxed).exchanged {
                    return
                }
                releaseSlowPath(me)
                return
            }
        }
        try unlockSlowPath()
    }

    /// unlock() when the word is not the bare caller's address: contended,
    /// not the owner, or outside a green thread.
    @usableFromInline @inline(never)
    func unlockSlowPath() throws(GreenMutexError) {
        guard let me = gt_current_owner() else { throw GreenMutexError.notInKernel(operation: "GreenMutex.unlock") }
        guard word.load(ordering: .relaxed) & GreenMutex.ownerMask == UInt(bitPattern: me) else {
            throw notOwnerError(me)
        }
        unlinkHeld(by: me)
        releaseSlowPath(me)
    }

    /// Releases with waiters (or a waiter that just left) under the kernel
    /// lock. The caller owns the mutex and has unlinked it.
    @usableFromInline @inline(never)
    func releaseSlowPath(_ me: UnsafeMutableRawPointer) {
        let thread = Unmanaged<GreenThread>.fromOpaque(me).takeUnretainedValue()
        let kernel = thread.kernel
        kernel.withCriticalLock {
            if !cas(UInt(bitPattern: me), 0) { releaseContended(by: thread, kernel) }
        }
    }

    /// Unlock with hasWaiters set: hand over to the top waiter. Kernel lock
    /// held; the caller owns the mutex, has unlinked it from its list, and
    /// failed to CAS the bare owner word to 0 under the lock, so the bit is
    /// set and (invariant) a waiter is queued.
    func releaseContended(by me: GreenThread, _ kernel: KernelCore) {
        precondition(!waiters.isEmpty, "\(self) marked contended with no waiter (lost wake-up)")
        handOff(from: me, outcome: .granted, kernel)
        #if DEBUG
        kernel.debugVerify(self, caller: me)
        #endif
    }

    /// Releases the mutex with the kernel lock already held (condition
    /// waits). The caller owns it.
    func releaseHoldingKernelLock(by me: GreenThread, _ kernel: KernelCore) {
        let opaque = Unmanaged.passUnretained(me).toOpaque()
        unlinkHeld(by: opaque)
        if cas(UInt(bitPattern: opaque), 0) { return }
        releaseContended(by: me, kernel)
    }

    /// Makes the top waiter the owner and wakes it with `outcome`; moves
    /// this mutex's weight in priority inheritance from `previous` (the old
    /// owner: unlocking, or ending) to the new owner. Kernel lock held.
    func handOff(from previous: GreenThread, outcome: WaitOutcome, _ kernel: KernelCore) {
        let waiter = waiters.popTop()!
        let next = waiter.thread
        let nextWord = UInt(bitPattern: Unmanaged.passUnretained(next).toOpaque())
            | (waiters.isEmpty ? 0 : GreenMutex.hasWaiters)
        word.store(nextWord, ordering: .releasing)
        waiter.outcome = outcome
        next.syncWaiter = nil
        if priorityInheritance {
            // The old owner no longer inherits through this mutex; its
            // priority drops to what its other mutexes' waiters require.
            previous.contendedMutexes.removeEvery { $0 === self }
            kernel.recomputeInheritance(of: previous)
            // The new owner inherits from the waiters left behind.
            if !waiters.isEmpty { next.contendedMutexes.append(self) }
            kernel.recomputeInheritance(of: next)
        }
        // Waiters left behind now wait for the new owner: their records
        // read the owner from the word when built (`waitOwner`), so there
        // is nothing to update per waiter.
        kernel.makeReady(next)
    }

    private func notOwnerError(_ me: UnsafeMutableRawPointer) -> GreenMutexError {
        let thread = Unmanaged<GreenThread>.fromOpaque(me).takeUnretainedValue()
        let holder = thread.kernel.withCriticalLock { ownerThread.map(ThreadIdentity.init) }
        return .notOwner(thread: ThreadIdentity(thread), owner: holder, mutex: identity)
    }

    // MARK: Scoped locking

    /// Runs `body` holding the mutex and releases it afterwards, also when
    /// `body` throws.
    ///
    /// If the previous owner ended holding the mutex, `withLock` releases it
    /// again without running `body` and throws `.ownerDied`: the mutex is
    /// never left held after withLock returns. To repair the protected state
    /// instead, call `lock()`, which keeps the mutex held when it throws
    /// `.ownerDied`.
    ///
    /// ```swift
    /// final class Ledger: @unchecked Sendable {
    ///     let lock = GreenMutex(name: "ledger")
    ///     var balances: [String: Int] = [:]  // guarded by `lock`
    ///     func total() throws -> Int { try lock.withLock { balances.values.reduce(0, +) } }
    /// }
    /// ```
    @inlinable
    public func withLock<R>(_ body: () throws -> R) throws -> R {
        do {
            try lock()
        } catch {
            if case .ownerDied = error { try unlock() }
            throw error
        }
        defer {
            do { try unlock() } catch {
                preconditionFailure("GreenMutex.withLock: \(error) (did the body unlock \(self) itself?)")
            }
        }
        return try body()
    }

    // MARK: The robust list

    /// Links this mutex at the head of the owner's list. Owner's own thread.
    @inlinable
    func pushHeld(by me: UnsafeMutableRawPointer) {
        let this = Unmanaged.passUnretained(self)
        // _withUnsafeGuaranteedRef: the thread is running this code and the
        // listed mutexes are alive (see the fields); no retain/release.
        Unmanaged<GreenThread>.fromOpaque(me)._withUnsafeGuaranteedRef { thread in
            let head = thread.heldMutexes
            heldPrev = nil
            heldNext = head
            head?._withUnsafeGuaranteedRef { $0.heldPrev = this }
            thread.heldMutexes = this
        }
    }

    /// Unlinks this mutex from the owner's list. Owner's own thread.
    @inlinable
    func unlinkHeld(by me: UnsafeMutableRawPointer) {
        let next = heldNext, prev = heldPrev
        if let prev {
            prev._withUnsafeGuaranteedRef { $0.heldNext = next }
        } else {
            Unmanaged<GreenThread>.fromOpaque(me)._withUnsafeGuaranteedRef { $0.heldMutexes = next }
        }
        next?._withUnsafeGuaranteedRef { $0.heldPrev = prev }
        // The links stay stale: a free mutex's links are never read, and
        // pushHeld writes both (one store fewer per unlock).
    }
}

extension GreenMutex: SyncWaitObject {
    func requeue(_ waiter: SyncWaiter) { waiters.requeue(waiter) }
    var asMutex: GreenMutex? { self }
    func isQueued(_ waiter: SyncWaiter) -> Bool { waiters.contains(waiter) }

    /// Timed out (monitor) or cancelled (GreenThread.cancel), kernel lock
    /// held: issue 10's ordered removal (`timedOut`).
    func withdraw(_ thread: GreenThread) {
        let kernel = thread.kernel
        timedOut(kernel.withdrawWaiter(thread), kernel)
    }

    /// The owner named by the word: a mutex with waiters has one.
    var waitOwner: GreenThread? { ownerThread }
    var waitObjectName: String? { name }
}
