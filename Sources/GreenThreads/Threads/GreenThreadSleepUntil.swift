// Sleeping until an absolute deadline. The kernel's timers run on
// CLOCK_MONOTONIC nanoseconds (the timer heap, the monitor's futex waits);
// a `ContinuousClock.Instant` is converted once, at the call, from its
// distance to now, so a deadline passed to several sleeps stays one fixed
// point in time.
import CGreenCore

extension GreenThread {
    /// Suspends the calling thread until `deadline` without occupying its
    /// worker. A deadline in the past returns after a yield. Outside a
    /// kernel it sleeps the OS thread.
    ///
    /// ```swift
    /// let start = ContinuousClock.now
    /// for i in 1...10 {
    ///     GreenThread.sleep(until: start + .milliseconds(100 * i))   // no drift
    ///     serveRequest()
    /// }
    /// ```
    public static func sleep(until deadline: ContinuousClock.Instant) {
        let ns = (deadline - .now).nanosecondsClamped  // 0 for a past deadline
        let target = gt_clock_monotonic_ns() &+ ns
        guard gt_on_green_thread() != 0 else {
            if ns > 0 { _ = gt_sys_nanosleep(ns) }
            return
        }
        guard ns > 0 else { return yield() }
        GreenThread.current.kernel.sleepCurrent(until: target)
    }
}
