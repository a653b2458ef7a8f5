// The foundation's behaviour, each test one scenario of gt-test-host in a
// child process (see HostProcess.swift).
import Testing

extension GreenThreadsTests {
    @Suite("Threads, scheduling and stacks")
    struct FoundationTests {
        @Test func spawnedThreadsReturnResultsAndErrorsThroughJoin() throws {
            try Host.expectOK("spawn-join")
        }

        @Test func higherPriorityThreadsRunFirstAndPreemptAtSpawn() throws {
            try Host.expectOK("priority-order")
        }

        @Test func cooperativeKernelRunsReadyThreadsStrictlyByPriority() throws {
            try Host.expectOK("priority-order-cooperative")
        }

        @Test func equalPriorityThreadsTakeTurnsOnYield() throws {
            try Host.expectOK("round-robin")
        }

        @Test func sleepersWakeInDeadlineOrder() throws {
            try Host.expectOK("sleep-order")
        }

        @Test func setPriorityMovesReadyAndRunningThreadsAtOnce() throws {
            try Host.expectOK("priority-change")
        }

        @Test func hundredThousandThreadsAliveAtOnce() throws {
            let r = try Host.expectOK("many-threads", ["--count", "100000"], timeout: .seconds(120))
            #expect(r.value("carved").flatMap(Int.init).map { $0 >= 100_000 } == true)
        }

        @Test func finishedThreadsStacksAreReused() throws {
            try Host.expectOK("stack-reuse")
        }

        @Test func threadsRunOnSeveralWorkers() throws {
            try Host.expectOK("multi-worker", ["--workers", "2"])
            try Host.expectOK("multi-worker", ["--workers", "4"])
        }

        @Test func floatingPointStateAndAlignmentHoldOnGreenStacks() throws {
            try Host.expectOK("fp-state")
        }

        @Test func greenThreadLocalsAreIndependentPerThread() throws {
            try Host.expectOK("thread-local")
        }

        @Test func invalidInputGetsClearErrors() throws {
            let r = try Host.expectOK("invalid-input")
            #expect(r.stdout.contains("invalid priority level 32"))
            #expect(r.stdout.contains("needs a running kernel"))
            #expect(r.stdout.contains("invalid stack size 0 bytes"))
            #expect(r.stdout.contains("already running"))
            #expect(r.stdout.contains("tried to join itself"))
        }

        @Test func currentOutsideKernelStopsWithAClearMessage() throws {
            let r = try Host.run("current-outside")
            #expect(!r.succeeded && !r.timedOut)
            #expect(r.stderr.contains("GreenThread.current called outside a green thread"), "\(r)")
        }

        @Test func allThreadsBlockedThrowsADeadlockReport() throws {
            let r = try Host.expectOK("deadlock")
            #expect(r.stdout.contains("deadlock"))
            #expect(r.stdout.contains("'first'") && r.stdout.contains("'second'"))
            #expect(r.stdout.contains("cycle: "))
        }

        @Test func stackOverflowIsReportedWithTheThreadsName() throws {
            let r = try Host.run("overflow")
            #expect(r.signaled && r.status == 6, "expected SIGABRT: \(r)")
            #expect(r.stderr.contains("green thread ") && r.stderr.contains("'deep-recursion' overflowed its 64 KiB stack"), "\(r)")
            #expect(!r.stdout.contains("returned"))
        }

        @Test func stackOverflowIsCaughtWithMprotectGuardsToo() throws {
            let r = try Host.run("overflow", environment: ["GT_GUARD_MODE": "mprotect"])
            #expect(r.signaled && r.status == 6, "expected SIGABRT: \(r)")
            #expect(r.stderr.contains("'deep-recursion' overflowed its 64 KiB stack"), "\(r)")
        }
    }
}
