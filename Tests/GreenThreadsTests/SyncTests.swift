// The synchronization kit's behaviour, each test one scenario of
// gt-test-host in a child process (see HostProcess.swift); the scenario's
// header in Tests/GTTestHost/SyncScenarios.swift tells its story: who holds
// what, who waits, and each thread's priority at each step. The scenarios
// check their own steps; the tests re-check the figures they print.
import Testing

extension GreenThreadsTests {
    @Suite("Mutexes, priority inheritance and the sync kit")
    struct SyncTests {
        // MARK: Priority inheritance

        @Test func ownerInheritsTheWaitersPriorityAndDropsOnRelease() throws {
            let r = try Host.expectOK("mutex-inheritance-simple", timeout: .seconds(30))
            #expect(r.value("low_inside") == "20" && r.value("low_after") == "4", "\(r)")
        }

        @Test func inheritanceFollowsAChainThreeLinksDeep() throws {
            let r = try Host.expectOK("mutex-inheritance-chain", timeout: .seconds(30))
            #expect(r.value("levels_with_t4_waiting") == "24,24,24", "\(r)")
        }

        @Test func releasingNotTheLastMutexDropsToWhatRemainingWaitersRequire() throws {
            let r = try Host.expectOK("mutex-release-non-lifo", timeout: .seconds(30))
            #expect(r.value("after_A") == "12" && r.value("after_B") == "4", "\(r)")
        }

        @Test func timeoutOfTheTopWaiterRestoresTheOwnersPriority() throws {
            let r = try Host.expectOK("mutex-timeout-restores-owner", timeout: .seconds(30))
            #expect(r.value("high_got") == "Optional(false)", "\(r)")
        }

        @Test func setPriorityOfAWaiterPropagatesAlongTheChainAndRequeuesIt() throws {
            try Host.expectOK("mutex-setpriority-propagates", timeout: .seconds(30))
        }

        @Test func waitersAreServedByPriorityFIFOWithinALevel() throws {
            let r = try Host.expectOK("mutex-waiters-served-by-priority", timeout: .seconds(30))
            #expect(r.value("order") == #"["w4", "w1", "w2", "w5", "w0", "w3"]"#, "\(r)")
        }

        /// Mars Pathfinder on one worker: with inheritance the high thread waits
        /// about the rest of the low thread's 20 ms critical section; without,
        /// also for the medium spinners' 200 ms. About 10x apart; 3x asserted.
        @Test func marsPathfinderHighWaitIsBoundedByTheCriticalSectionNotTheSpinners() throws {
            let r = try Host.expectOK("mutex-pathfinder", timeout: .seconds(60))
            let withPI = r.number("high_wait_pi_ms") ?? .infinity
            let withoutPI = r.number("high_wait_nopi_ms") ?? 0
            #expect(withPI <= 40, "with inheritance high waited \(withPI) ms for a 20 ms critical section\n\(r)")
            #expect(withoutPI >= 3 * withPI, "ratio \(withoutPI / withPI)\n\(r)")
        }

        @Test func aLockThatWouldMakeAChainLongerThanTheWalkBoundIsRefused() throws {
            let r = try Host.expectOK("mutex-chain-too-deep", timeout: .seconds(60))
            #expect(r.value("refused") == "[1025]", "\(r)")
        }

        // MARK: Robustness and misuse

        @Test func ownerDeathHandsTheMutexOnWithOwnerDied() throws {
            let r = try Host.expectOK("mutex-owner-death", timeout: .seconds(30))
            #expect(r.stdout.contains("'dead1' ended while holding mutex"), "\(r)")
        }

        @Test func locksThatWouldCloseCyclesOfTwoAndThreeThrowDeadlock() throws {
            let r = try Host.expectOK("mutex-deadlock-cycles", timeout: .seconds(30))
            #expect(r.stdout.contains("would deadlock (a cycle of 2 threads)"), "\(r)")
            #expect(r.stdout.contains("would deadlock (a cycle of 3 threads)"), "\(r)")
        }

        @Test func misuseGetsAlreadyOwnedNotOwnerAndNotInKernel() throws {
            let r = try Host.expectOK("mutex-misuse-errors", timeout: .seconds(30))
            #expect(r.stdout.contains("which it already holds"), "\(r)")
            #expect(r.stdout.contains("tried to release mutex"), "\(r)")
            #expect(r.stdout.contains("nobody holds it"), "\(r)")
        }

        // MARK: Condition, semaphore, channel

        @Test func conditionSignalWakesTheHighestPriorityWaiterFirst() throws {
            try Host.expectOK("condition-signal-wakes-highest-priority-first", timeout: .seconds(30))
        }

        @Test func conditionWaitQueuesAtThePriorityLeftAfterReleasingTheMutex() throws {
            try Host.expectOK("condition-wait-drops-inherited-priority", timeout: .seconds(30))
        }

        @Test func conditionTimeoutReturnsFalseHoldingTheMutexAndBroadcastWakesAll() throws {
            try Host.expectOK("condition-timeout-and-broadcast", timeout: .seconds(30))
        }

        @Test func cancelledWaitersLeaveConditionAndSemaphoreQueuesAndSignalsReachTheLiveOnes() throws {
            let r = try Host.expectOK("cancelled-waiters-leave-condition-and-semaphore-queues", timeout: .seconds(30))
            #expect(r.value("order") == #"["s25 cancelled", "c20 cancelled", "c12", "s9", "c5"]"#, "\(r)")
        }

        /// Every kind of wait ends early through its object's `withdraw`
        /// (mutex, condition, semaphore, channel send and receive, join,
        /// sleep, I/O readiness): no entry is left behind, and the event that
        /// comes later reaches the live waiter (scenario in
        /// Tests/GTTestHost/WaitScenarios.swift). Fails when a withdraw does
        /// nothing (checked for each kind when it was written).
        @Test func timedOutAndCancelledWaitersOfEveryKindAreWithdrawn() throws {
            let r = try Host.expectOK("withdrawn-waiters-leave-every-queue", timeout: .seconds(30))
            #expect(r.value("served") == #"["mutex->k5", "condition->k5", "semaphore->k5", "channel-send->5", "#
                        + #""channel-receive->7", "join->k5", "io-read->free"]"#, "\(r)")
            #expect(r.value("invariants_after_all") == "ok", "\(r)")
        }

        /// Joiners cancelled from the front, the middle and the end of a
        /// thread's joiner list leave it, and a joiner that comes after them
        /// is still woken (the intrusive JoinerList in GreenThread.swift).
        @Test func cancelledJoinersLeaveTheListFromAnyPlace() throws {
            let r = try Host.expectOK("cancelled-joiners-leave-any-place", timeout: .seconds(30))
            #expect(r.value("joins") == "q0=cancelled,q1=joined,q2=cancelled,q3=joined,q4=joined,"
                        + "q5=cancelled,q6=joined", "\(r)")
            #expect(r.value("invariants_after_joiner_cancels") == "ok", "\(r)")
            #expect(r.value("invariants_after_joins") == "ok", "\(r)")
        }

        /// Thousands of waiters on one object: cancellations out of the middle
        /// of a level, raises to the back of another, then service in strict
        /// priority order, FIFO within a level (WaitQueue's per-level FIFOs).
        @Test func thousandsOfWaitersAreServedByPriorityThenArrival() throws {
            let r = try Host.expectOK("many-waiters-keep-priority-fifo-order", timeout: .seconds(60))
            #expect(r.value("served") == "2700", "\(r)")
            #expect(r.value("invariants_after_cancel_and_raise") == "ok", "\(r)")
        }

        @Test func semaphoreCountsHandsPermitsByPriorityAndTimesOut() throws {
            try Host.expectOK("semaphore-counts-priority-and-timeout", timeout: .seconds(30))
        }

        @Test func rendezvousChannelSendWaitsForAReceiver() throws {
            try Host.expectOK("channel-rendezvous", timeout: .seconds(30))
        }

        @Test func bufferedChannelKeepsOrderAndCloseReleasesEveryWaiter() throws {
            try Host.expectOK("channel-buffered-and-close", timeout: .seconds(30))
        }

        @Test func channelServesSendersAndReceiversByPriority() throws {
            try Host.expectOK("channel-waiters-in-priority-order", timeout: .seconds(30))
        }

        @Test func outsideAKernelNonBlockingCallsWorkAndBlockingOnesFailClearly() throws {
            try Host.expectOK("sync-outside-kernel", timeout: .seconds(30))
        }

        // MARK: Stress and cost

        /// Thousands of threads, random priorities, subsets of mutexes in a
        /// global order, random timeouts, non-LIFO releases, priority changes;
        /// every invariant of the whole kernel checked each millisecond, and the
        /// touched chain after every contended step (debug builds). The seed is
        /// the first line of the output shown on failure.
        @Test func randomizedStressKeepsEveryInvariantAndFinishes() throws {
            let r = try Host.expectOK("sync-stress", ["--threads", "2000"],
                                      environment: ["GT_DUMP_ON": "SIGQUIT"], timeout: .seconds(90))
            #expect((r.number("acquisitions") ?? 0) > 2000, "\(r)")
        }

        /// lock, yield, unlock in one function on two workers: the inline
        /// owner read after the yield must see the OS thread it resumed on
        /// (the hazard shows in optimized builds; docs/sync.md).
        @Test func unlockAfterAYieldThatMovedTheThreadFindsItsOwner() throws {
            try Host.expectOK("mutex-owner-read-after-migration", timeout: .seconds(60))
        }

        /// Smoke run of the fast-path measurement (figures only mean something
        /// in a release build; docs/sync.md has them).
        @Test func fastPathMeasurementRuns() throws {
            let r = try Host.expectOK("sync-fast-path", ["--iterations", "20000"], timeout: .seconds(60))
            #expect(r.number("greenmutex_uncontended_ns") != nil, "\(r)")
        }
    }
}
