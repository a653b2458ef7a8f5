// SyncTestHooks: points where the test host can stall the kernel between two
// steps of a path, to replay an interleaving that otherwise needs a lucky
// schedule (the monitor descheduled at the wrong instant).
//
// Only the test host sets them (`@_spi(TestHooks) import GreenThreads`);
// everybody else leaves them nil, and a hook point then costs one load and
// a branch, on paths that are already slow (a timed-out wait, a deadlock
// being declared, a lock that found the mutex held and took the kernel
// lock), never on an uncontended path.
//
// Guard: written before `Kernel.run` starts (so before the kernel's OS
// threads exist: pthread_create orders the write before their reads), and
// read by kernel threads under the kernel lock. A hook runs with the kernel
// lock held and must not call into the kernel; it may spin or sleep the OS
// thread and read atomics.

/// Hooks for tests of the synchronization kit. Not API.
@_spi(TestHooks)
public enum SyncTestHooks {
    /// The steps of a timed-out mutex wait (`GreenMutex` on the monitor).
    public enum MutexTimeoutStep: Sendable {
        /// The waiter left the queue; nothing else changed yet.
        case waiterRemoved
        /// The hasWaiters bit was cleared (or left set, for remaining
        /// waiters): from here on the owner may unlock without the lock.
        case hasWaitersCleared
    }

    /// Called at each step of a mutex wait's timeout, kernel lock held.
    nonisolated(unsafe) public static var mutexTimeout: ((MutexTimeoutStep) -> Void)?

    /// Called in the contended lock path under the kernel lock, between
    /// reading the owner word and the CAS on it, with the attempt's number
    /// since the kernel lock was taken (1, 2, ...).
    nonisolated(unsafe) public static var contendedLockAttempt: ((Int) -> Void)?

    /// Called when the kernel has found every thread blocked, before it
    /// builds the deadlock report, kernel lock held.
    nonisolated(unsafe) public static var deadlockDetected: (() -> Void)?
}
