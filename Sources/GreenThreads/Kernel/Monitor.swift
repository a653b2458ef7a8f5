// Monitor: the kernel's OS thread that runs no green threads. It wakes
// sleepers and times out timed waits at their deadlines, waking an idle
// worker or preempting a lower-priority thread for them (Scheduler's
// makeReady), so a deadline is met even while every worker is busy. Later
// duties (handing off the run queue of a worker blocked in the OS) belong
// here too, like Go's sysmon.
import CGreenCore
import Glibc

extension KernelCore {
    /// The monitor wakes at least this often for housekeeping, such as giving
    /// back the memory of stacks freed in a burst (100 ms: ten cheap wake-ups
    /// a second bound how long that memory lingers).
    static let housekeepingInterval: Int64 = 100_000_000

    /// The monitor's loop; returns when the kernel shuts down.
    func runMonitor() {
        lock.lock()
        while !shuttingDown {
            let now = gt_clock_monotonic_ns()
            while let top = timers.earliest, top.deadline <= now {
                _ = timers.popEarliest()
                let thread = top.thread
                guard top.generation == thread.timerGeneration,
                      thread.runState == .sleeping || thread.runState == .blocked else { continue }
                thread.timeoutAction?(thread)
                thread.timeoutAction = nil
                makeReady(thread, reason: .timedOut)
            }
            // A stale entry may have been all that kept an all-idle kernel
            // from being declared deadlocked.
            if checkForDeadlock() { break }
            let untilDeadline = timers.earliest.map { max(0, $0.deadline - now) } ?? Int64.max
            let seq = gt_atomic_load_u32(monitorWord)
            lock.unlock()
            // Housekeeping: return the memory of stacks freed in bulk.
            StackPool.shared.trimExcess()  // returns at once when nothing is in excess
            _ = gt_sys_futex_wait(monitorWord, seq, min(untilDeadline, KernelCore.housekeepingInterval))
            lock.lock()
        }
        lock.unlock()
    }
}
