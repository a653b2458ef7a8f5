// The async bridge (issue 14): GreenLocked, GreenThread.await, a kernel
// hosted by async code (Kernel.start), cancellation and thread groups. Each
// test runs one scenario of gt-async-host (Swift 6 language mode) in a
// child process; the scenario headers in Tests/GTAsyncHost tell each story,
// the scenarios check their own steps, and the tests re-check the figures.
import Testing

extension GreenThreadsTests {
    @Suite("Swift 6 and async: GreenLocked, await, Kernel.start, cancellation")
    struct AsyncTests {
        @discardableResult
        private func expectOK(_ scenario: String, _ arguments: [String] = [],
                              timeout: Duration = .seconds(30),
                              sourceLocation: SourceLocation = #_sourceLocation) throws -> HostResult {
            try Host.expectOK(scenario, arguments, timeout: timeout, host: "gt-async-host",
                              sourceLocation: sourceLocation)
        }

        // MARK: GreenThread.await

        @Test func thousandAwaitsOfA200msSleepFinishInAbout200msBesideASpinner() throws {
            let r = try expectOK("await-thousand")
            let elapsed = try #require(r.number("elapsed_ms"), "\(r)")
            // 200 ms of sleep, plus spawning 1000 threads and the spinner's
            // slices on a loaded 2-core machine; serial awaits would take 200 s.
            #expect(elapsed >= 200 && elapsed < 1000, "\(r)")
            #expect((r.number("spinner_spins") ?? 0) > 0, "\(r)")
        }

        @Test func awaitRunsTheTaskAtThePriorityBandOfTheCaller() throws {
            let r = try expectOK("await-priority")
            // TaskPriority raw values: background 9, utility 17, medium 21, high 25.
            #expect(r.value("priorities") == "0:9,8:17,16:21,24:25,31:25", "\(r)")
        }

        @Test func awaitRethrowsTheOperationsError() throws {
            let r = try expectOK("await-rethrows")
            #expect(r.value("caught") == "7", "\(r)")
        }

        @Test func awaitOutsideAKernelBlocksTheCallingOSThread() throws {
            let r = try expectOK("await-outside-kernel")
            #expect(r.value("value") == "done" && (r.number("elapsed_ms") ?? 0) >= 50, "\(r)")
        }

        // MARK: GreenLocked

        @Test func greenLockedCountsExactlyFromGreenAndOSThreadsAtOnce() throws {
            let r = try expectOK("locked-counter")
            #expect(r.value("total") == "100000", "\(r)")
        }

        @Test func greenLockedHolderInheritsTheWaitersPriority() throws {
            let r = try expectOK("locked-inheritance")
            #expect(r.value("low_inside") == "24" && r.value("low_after") == "8", "\(r)")
        }

        @Test func greenThreadWaitingForAnOSThreadHolderIsNoDeadlock() throws {
            let r = try expectOK("locked-green-waits-for-os-thread")
            #expect(r.value("seen") == "written by the OS thread", "\(r)")
        }

        @Test func osThreadWaitingForAGreenHolderIsWokenByTheRelease() throws {
            let r = try expectOK("locked-os-waits-for-green", timeout: .seconds(20))
            #expect((r.number("os_wake_after_release_ms") ?? 1e9) < 50, "\(r)")
        }

        @Test func greenLockedWorksWithNoKernelRunning() throws {
            let r = try expectOK("locked-outside-kernel")
            #expect(r.value("total") == "60000", "\(r)")
        }

        @Test func relockingAGreenLockedThrowsAlreadyOwnedOnAnyThread() throws {
            try expectOK("locked-relock-throws")
        }

        // MARK: Kernel.start

        @Test func asyncCodeStartsAKernelSpawnsAwaitsAndShutsDown() throws {
            let r = try expectOK("kernel-start")
            #expect(r.value("count") == "101" && r.value("after_shutdown") == "kernelStopped", "\(r)")
            #expect(r.value("greeting") == "hello from from-os-thread", "\(r)")
        }

        @Test func shutdownWaitsForTheLastGreenThread() throws {
            let r = try expectOK("kernel-shutdown-waits")
            #expect((r.number("shutdown_ms") ?? 0) >= 290, "\(r)")
        }

        @Test func secondKernelStartThrowsAlreadyRunning() throws {
            let r = try expectOK("kernel-start-while-running")
            #expect(r.value("second") == "alreadyRunning", "\(r)")
        }

        @Test func cancelledTaskAwaitingValueCancelsTheGreenThread() throws {
            let r = try expectOK("value-cancel")
            #expect(r.value("thread_saw_cancel") == "true" && (r.number("elapsed_ms") ?? 1e9) < 5000, "\(r)")
        }

        // MARK: Cancellation and thread groups

        @Test func cancelEndsASleepAndLaterSleepsDoNotSleep() throws {
            let r = try expectOK("cancel-sleep")
            #expect((r.number("woke_after_ms") ?? 1e9) < 2000 && (r.number("second_sleep_ms") ?? 1e9) < 50, "\(r)")
        }

        @Test func cancelledJoinerThrowsCancelledAndTheJoinedThreadRunsOn() throws {
            try expectOK("cancel-join")
        }

        @Test func cancelEndsTimedWaitsAndRestoresTheOwnersPriority() throws {
            let r = try expectOK("cancel-timed-waits")
            #expect(r.value("results") == "false,false,false", "\(r)")
            #expect(r.value("owner_boosted") == "24" && r.value("owner_after") == "16", "\(r)")
        }

        @Test func cancelledLockWaitThrowsCancelledAndTheOwnerDropsBack() throws {
            let r = try expectOK("cancel-mutex-lock")
            #expect(r.value("owner_boosted") == "24" && r.value("owner_after") == "16", "\(r)")
        }

        @Test func cancelEndsUntimedSemaphoreAndConditionWaitsAlsoWhileTheyWait() throws {
            let r = try expectOK("cancel-untimed-waits")
            #expect(r.value("sem")?.contains("was cancelled") == true && (r.number("sem_ms") ?? 1e9) < 1000, "\(r)")
            #expect(r.value("cond_retaking_waits_on") == "mutex" && r.value("cond_held_at_error") == "true", "\(r)")
            #expect(r.value("next") == "true,true", "\(r)")
            #expect(r.value("late_full") == "took" && r.value("late_empty") == "cancelled"
                    && r.value("late_cond") == "cancelled", "\(r)")
            #expect(r.value("plain_wait_after_cancel") == "waiting", "\(r)")
        }

        @Test func cancelledChannelWaitersGetNilOrThrowAndTheChannelGoesOn() throws {
            let r = try expectOK("cancel-channel-waits")
            #expect(r.value("receiver") == "nil cancelled=true" && r.value("next") == "2", "\(r)")
        }

        @Test func cancelledAwaitCancelsItsTask() throws {
            let r = try expectOK("cancel-await")
            #expect(r.value("outcome") == "CancellationError", "\(r)")
        }

        @Test func groupMemberErrorCancelsSiblingsAndIsRethrown() throws {
            let r = try expectOK("group-error-cancels-siblings")
            #expect(r.value("group_error") == "3" && (r.number("elapsed_ms") ?? 1e9) < 2000, "\(r)")
        }

        @Test func groupReturnsOnlyAfterEveryMemberFinished() throws {
            let r = try expectOK("group-joins-every-member")
            #expect(r.value("finished_at_return") == "11" && r.value("late_spawn") == "threadGroupEnded", "\(r)")
        }

        @Test func checkCancellationThrowsOnceCancelled() throws {
            try expectOK("check-cancellation")
        }

        // MARK: The kept program

        @Test func asyncDemoServesEveryRequestBesideACPUBoundThread() throws {
            let r = try Host.run("", timeout: .seconds(60), host: "gt-async-demo")
            #expect(r.succeeded && r.stdout.contains("served 50 of 50 requests"), "\(r)")
        }
    }
}
