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
