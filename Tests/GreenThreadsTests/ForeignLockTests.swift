// Locks and blocking calls that belong to the OS thread (BRIEF.md "Foreign
// locks", hazards 7 and 11). Each lock kind with 1 and 2 processors: a
// preempted holder keeps its OS thread, so the lock keeps its mutual
// exclusion and never traps or hangs. Each blocking call on one processor:
// the monitor hands the processor on, so a ticker keeps ticking; without
// the hand-off (`--disable-fix handoff`) it stops or the kernel hangs.
//
// Shown to fail on the first design (an in-place switch inside the
// handler), 2026-12-02: swift-mutex trapped ("Recursive call to lock
// Mutex"), pthread-mutex and rwlock hung with 1 and 2 workers,
// recursive-mutex and flockfile reported exclusion_broken > 0.
import Testing

extension GreenThreadsTests {
    @Suite("OS-thread locks and blocking calls")
    struct ForeignLockTests {
        static let kinds = ["swift-mutex", "pthread-mutex", "rwlock", "recursive-mutex", "flockfile"]

        @Test(arguments: kinds, [1, 2])
        func lockHeldAcrossPreemptionKeepsMutualExclusion(kind: String, workers: Int) throws {
            let r = try Host.expectOK("foreign-lock", ["--kind", kind, "--workers", "\(workers)"], timeout: .seconds(30))
            #expect(r.value("exclusion_broken") == "0", "\(r)")
            #expect((r.number("preempted_inside") ?? 0) > 0, "\(r)")
        }

        @Test(arguments: ["read", "semaphore", "pthread-sleep"])
        func blockedOSThreadHandsItsProcessorOn(kind: String) throws {
            try Host.expectOKMeasured("blocking-handoff", ["--kind", kind], timeout: .seconds(30))
            let without = try Host.run("blocking-handoff", ["--kind", kind, "--disable-fix", "handoff"],
                                       timeout: .seconds(5))
            #expect(!without.succeeded, "the ticker should stop without the hand-off: \(without)")
        }

        /// The rule that keeps a parked thread's locks from stopping the
        /// kernel: the kernel lock's holder takes no pthread lock (the test
        /// host interposes them). Seen before the rehearsal: a spare OS
        /// thread in `requeueParked` waited for the Swift runtime's metadata
        /// lock that the parked thread held, and every OS thread stopped
        /// (`blockingPoolServesHigherPriorityCallersFirst` timed out under load).
        @Test(arguments: [1, 2])
        func kernelLockHolderTakesNoForeignLock(workers: Int) throws {
            let r = try Host.expectOK("kernel-lock-holder-takes-no-foreign-lock", ["--workers", "\(workers)"],
                                      timeout: .seconds(60))
            #expect(r.value("violations") == "0", "\(r)")
            let without = try Host.run("kernel-lock-holder-takes-no-foreign-lock",
                                       ["--workers", "\(workers)", "--disable-fix", "rehearsal"], timeout: .seconds(60))
            #expect(!without.succeeded && (without.number("violations") ?? 0) > 0,
                    "without the rehearsal the scheduler's first uses take the runtime's locks: \(without)")
        }

        @Test func snapshotShowsOSThreadsParkedWithTheirPreemptedThreads() throws {
            let r = try Host.expectOK("snapshot-os-threads", timeout: .seconds(30))
            #expect((r.number("parked") ?? 0) >= 2, "\(r)")
            #expect((r.number("park_handoffs") ?? 0) > 0, "\(r)")
        }
    }
}
