// The correctness sweep (issue 10): one regression test per race or hazard
// found in review, each a scenario of gt-test-host (see HostProcess.swift)
// whose header in Tests/GTTestHost/CorrectnessScenarios.swift tells the
// story. Each was shown to fail with its fix reverted.
import Testing

extension GreenThreadsTests {
    @Suite("Correctness sweep: races found in review")
    struct CorrectnessTests {
        /// The monitor is stalled (test hook) right after a timed-out waiter
        /// cleared the hasWaiters bit, and the owner unlocks lock-free in that
        /// window: the owner must still drop back to its base priority.
        @Test func timedOutWaiterLeavesNoStaleBoostWhenTheOwnerUnlocksMeanwhile() throws {
            let r = try Host.expectOK("mutex-timeout-stale-boost-replay", timeout: .seconds(30))
            #expect(r.value("low_inside") == "20" && r.value("low_after") == "4", "\(r)")
        }

        /// The same race with the public API only: 64 low owners and high
        /// timed waiters on 2 workers, OS threads spinning beside them, a
        /// monitor the OS may deschedule (GT_MONITOR_FIFO=0).
        @Test func ownersNeverKeepABoostAfterTimedWaitersGiveUpUnderLoad() throws {
            let r = try Host.expectOK("mutex-timeout-race-public-api", ["--pairs", "64", "--load", "2"],
                                      environment: ["GT_MONITOR_FIFO": "0"], timeout: .seconds(60))
            #expect(r.value("stale_boosts") == "0", "\(r)")
            #expect((r.number("timeouts") ?? 0) > 0, "\(r)")
        }
    }
}

extension GreenThreadsTests.CorrectnessTests {
    /// A join-cycle deadlock is declared while an OS thread keeps using the
    /// sync kit (KernelCore.running, then the kernel lock): the report must
    /// not take `running` under the kernel lock. Hangs without the fix.
    @Test func deadlockReportDoesNotTakeTheRunningLockUnderTheKernelLock() throws {
        let r = try Host.expectOK("deadlock-report-while-an-os-thread-uses-the-sync-kit", timeout: .seconds(30))
        #expect(r.value("cycles") == "1", "\(r)")
    }

    @Test func waitsAnOSThreadMaySignalAreNoDeadlock() throws {
        let r = try Host.expectOK("no-deadlock-while-an-os-thread-may-signal", timeout: .seconds(30))
        #expect(r.value("got") == "Optional(7)", "\(r)")
    }

    @Test func aSemaphoreDeadlockIsReportedOnceNoOutsideThreadCanSignal() throws {
        let r = try Host.expectOK("deadlock-on-a-semaphore-reported-once-outside-threads-end", timeout: .seconds(30))
        #expect((r.number("semaphore_deadlock_ms") ?? 0) >= 300, "\(r)")
        #expect((r.number("join_deadlock_ms") ?? .infinity) < 1000, "\(r)")
    }

    @Test(arguments: ["registry", "timer"])
    func threadLocalDeinitsRunOnTheThreadNotUnderTheKernelLock(via: String) throws {
        let r = try Host.expectOK("thread-local-deinit-may-use-the-sync-kit", ["--via", via], timeout: .seconds(30))
        #expect(r.value("deinit_signalled") == "true", "\(r)")
    }

    @Test func threadLocalCreationThrowsWhenTheOSHasNoKeyLeft() throws {
        let r = try Host.expectOK("thread-local-keys-exhausted-throws", timeout: .seconds(30))
        #expect(r.stdout.contains("pthread_key_create failed"), "\(r)")
    }

    /// Relative and absolute clock_nanosleep interrupted by the program's
    /// own signal on a worker: EINTR either way; the absolute one leaves
    /// `remain` untouched (it got uninitialized bytes before).
    @Test func clockNanosleepEINTRReportsTheRemainderOnlyForRelativeSleeps() throws {
        let r = try Host.expectOK("clock-nanosleep-eintr-table", timeout: .seconds(30))
        #expect(r.stdout.contains("absolute: rc=4 remain=12345.678"), "\(r)")
    }
}

extension GreenThreadsTests.CorrectnessTests {
    /// Every CAS of the contended lock path is made to fail (the owner
    /// toggles the mutex lock-free between read and CAS, 1000 times): one
    /// hold of the kernel lock makes at most 64 attempts, then lets go.
    @Test func contendedLockCASRetriesUnderTheKernelLockAreBounded() throws {
        let r = try Host.expectOK("mutex-contended-cas-retries-are-bounded", timeout: .seconds(30))
        #expect((r.number("max_attempts_per_kernel_lock") ?? .infinity) <= 64, "\(r)")
    }
}
