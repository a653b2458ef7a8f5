// The I/O layer's behaviour (IO/), each test one scenario of gt-test-host in
// a child process (HostProcess.swift); the scenarios' header in
// Tests/GTTestHost/IOScenarios.swift tells each story. The scenarios check
// their own steps; the tests re-check the figures they print.
import Testing

extension GreenThreadsTests {
    @Suite("Netpoller, GreenIO, TCP and the blocking pool")
    struct IOTests {
        /// 10,000 connections (or as many as RLIMIT_NOFILE's hard limit
        /// allows: two descriptors each), all open at once, every message
        /// echoed, a low-priority spinner progressing; RSS bounded.
        @Test func tenThousandLoopbackConnectionsEchoWhileALowPriorityThreadProgresses() throws {
            let r = try Host.expectOK("io-echo", timeout: .seconds(120))
            let perConnection = r.number("rss_kib_per_connection") ?? .infinity
            #expect(perConnection < 64, "\(r)")
            #expect((r.number("connections") ?? 0) >= 5000, "\(r)")
        }

        @Test func anIdleKernelWithTenThousandThreadsParkedOnSocketsUsesNoCPU() throws {
            let r = try Host.expectOK("io-idle-cpu", timeout: .seconds(60))
            // The monitor's housekeeping wakes ten times a second: well under 1%.
            #expect((r.number("idle_cpu_ms_per_s") ?? .infinity) < 10, "\(r)")
        }

        @Test func sixtyFourBlockingCallsRunInParallelWhileOtherThreadsRun() throws {
            let r = try Host.expectOK("io-blocking-pool", timeout: .seconds(30))
            #expect((r.number("elapsed_ms") ?? .infinity) < 1000, "\(r)")
        }

        @Test func blockingPoolServesHigherPriorityCallersFirst() throws {
            let r = try Host.expectOK("io-blocking-priority", environment: ["GT_BLOCKING_THREADS": "1"],
                                      timeout: .seconds(30))
            #expect(r.value("order") == "high1,high2,normal,low1,low2", "\(r)")
        }

        @Test func closeWakesAThreadWaitingOnTheDescriptorWithAnError() throws {
            let r = try Host.expectOK("io-close-wakes-waiter", timeout: .seconds(30))
            #expect(r.value("acceptor") == "closed" && r.value("pipe_waiter") == "closed", "\(r)")
        }

        @Test func readinessAndConnectTimeoutsExpireOnTimeInAnIdleKernel() throws {
            try Host.expectOK("io-timeouts", timeout: .seconds(30))
        }

        @Test func threadsParkedOnIOOrTheBlockingPoolAreNotADeadlock() throws {
            let r = try Host.expectOK("io-waiting-is-not-deadlock", timeout: .seconds(30))
            #expect(r.value("read_from_outside") == "1" && r.value("blocking_alone") == "5", "\(r)")
        }

        /// Without the PIPE_BUF cap the first write fills the pipe and blocks
        /// the only worker with the reader on it: the test times out.
        @Test func blockingModeWritesNeverBlockTheWorker() throws {
            let r = try Host.expectOK("io-blocking-mode-pipe", timeout: .seconds(30))
            #expect(r.value("written") == "262144", "\(r)")
        }

        @Test func sleepUntilHonoursAbsoluteDeadlines() throws {
            try Host.expectOK("io-sleep-until", timeout: .seconds(30))
        }

        /// The poller thread waits in epoll only while a processor runs a
        /// thread that a waiter on I/O outranks; otherwise the monitor's look
        /// finds readiness. Without that look the reader beside a spinner of
        /// its own level waits until the spinner ends (checked: about 500 ms).
        @Test func thePollerThreadWatchesOnlyWhileAWaiterOutranksARunningThread() throws {
            let r = try Host.expectOK("io-poller-watches-when-outranked", timeout: .seconds(60))
            #expect(r.stdout.contains("spinner=low poller_wchan=") && r.stdout.contains("spinner=normal poller_wchan="), "\(r)")
        }

        /// A processor whose thread parks on I/O with only a lower thread
        /// ready waits briefly for the next event of its level, so a
        /// request-reply loop beside a low spinner is served without a
        /// preemption per reply. Without the linger (checked) lingers_served
        /// is 0 and there is a park hand-off per reply.
        @Test func aProcessorLingersForIOBeforeItStartsALowerThread() throws {
            let r = try Host.expectOK("io-linger-before-a-lower-thread", timeout: .seconds(60))
            #expect((r.number("lingers_served") ?? 0) >= 1, "\(r)")
        }

        /// With I/O in use an idle processor waits in epoll_pwait, and
        /// timers, pool completions, readiness and spawns all reach it
        /// there. Without the wake-up of a processor in epoll (its
        /// SIGVTALRM) the first timer never fires: the test times out.
        @Test(arguments: [1, 2])
        func anIdleProcessorWaitsInEpollAndEveryWakeUpReachesIt(workers: Int) throws {
            let r = try Host.expectOK("io-idle-processor-in-epoll", ["--workers", "\(workers)"],
                                      timeout: .seconds(60))
            #expect((r.number("machines_in_epoll") ?? 0) >= 1, "\(r)")
            #expect(r.value("pipe_bytes") == "100", "\(r)")
            if workers > 1 { #expect(r.value("spawned") == "200", "\(r)") }
        }

        @Test func outsideAKernelTheCallsBlockTheCallingOSThread() throws {
            try Host.expectOK("io-outside-kernel", timeout: .seconds(30))
        }

        /// Table: read, write, poll with a timeout, accept, stream read on a
        /// plain thread, and the netpoller's epoll_wait, each hit by
        /// SIGUSR1 without SA_RESTART while it waits.
        @Test func interruptedCallsRetryOrWaitForTheTimeLeft() throws {
            let r = try Host.expectOK("io-eintr-table", timeout: .seconds(30))
            for name in ["read-blocking-pipe", "write-full-blocking-pipe", "poll-timeout", "accept",
                         "stream-read", "netpoller-epoll-wait"] {
                #expect(r.stdout.contains("case=\(name) "), "case \(name) did not run\n\(r)")
            }
        }
    }
}
