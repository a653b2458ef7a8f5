// DeadlockRule: when "every live thread is blocked and no timer is armed"
// really means that nothing can ever run again.
//
// The kernel sees every green thread, but not the program's other OS
// threads, and the sync kit lets any OS thread end some waits (docs/sync.md,
// rule 8): signal a semaphore or a condition, send into or receive from a
// channel, close one. So a blocked thread's wait is hopeless only if
// nobody who could end it can ever run:
// - a mutex wait: only the owner, a green thread, ends it (an OS thread can
//   never hold a GreenMutex); a join: only the joined green thread; a
//   sleep or timed wait: a timer, which keeps the kernel from this check.
//   With every green thread blocked, these are hopeless.
// - a wait on a semaphore, condition or channel: hopeless only if no OS
//   thread outside the kernel exists. One that exists may hold a reference
//   to the object and end the wait at any time, even one that has never
//   touched a sync object yet (a helper that signals once, a second later).
//
// "No OS thread outside the kernel" is counted, not guessed: the process's
// thread count (num_threads in /proc/self/stat) minus the kernel's own
// threads (OSThread.liveCount: workers, monitor, debug server; each counts
// itself from inside, so that count never exceeds the real one) minus the
// thread blocked in Kernel.run. Counting errs one way only: a kernel
// thread starting or ending, or an unreadable /proc, makes it report
// outside threads that may not exist, which only delays the report. Zero
// stays zero: with every green thread blocked, only an existing OS thread
// could start a new one. (A program's SIGEV_THREAD timer that has not fired
// yet has no thread: such a program's waits can be reported too early; the
// limit is in docs/sync.md.)
//
// While outside threads exist the kernel is not declared deadlocked; the
// monitor repeats the check at its housekeeping interval (100 ms), so the
// report follows the last outside thread's end by at most that. Cost: one
// read of /proc/self/stat, only in that all-blocked state.
//
// Kernel lock held throughout (called from KernelCore.checkForDeadlock).
import Glibc

extension KernelCore {
    /// Whether some blocked thread waits on an object an OS thread outside
    /// the kernel could still signal, and such a thread exists. Kernel lock
    /// held, every worker idle.
    func someWaitMayEndFromOutside() -> Bool {
        var endableFromOutside = false
        forEachLiveThread { thread in
            // A queued sync waiter that is not a mutex waiter: semaphore,
            // condition, channel (the objects rule 8 lets OS threads use).
            if let waiter = thread.syncWaiter, waiter.object.asMutex == nil { endableFromOutside = true }
        }
        guard endableFromOutside else { return false }
        return KernelCore.outsideOSThreadsMayExist()
    }

    /// Whether the process may have OS threads other than this kernel's
    /// own and the one blocked in Kernel.run (see the file header).
    static func outsideOSThreadsMayExist() -> Bool {
        guard let total = processThreadCount() else { return true }  // unknown: assume they may
        return total - OSThread.liveCount - 1 > 0
    }

    /// num_threads of this process (field 20 of /proc/self/stat), or nil.
    /// The command name (field 2) is in parentheses and may hold spaces
    /// and parentheses itself, so fields are counted after the last ')'.
    static func processThreadCount() -> Int? {
        guard let stat = readSmallFile("/proc/self/stat", limit: 4096),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 20 is fields[17].
        guard fields.count > 17 else { return nil }
        return Int(fields[17])
    }
}
