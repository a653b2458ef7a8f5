// DebugSession: everything the debugging support starts with a kernel and
// stops with it: the trace-request hook, the crash and SIGQUIT dumps, and
// the snapshot server. Kernel.run starts it once the main thread exists and
// stops it before the kernel goes away.
//
// Switches:
//   - KernelConfiguration.debugServer = false, or GT_DEBUG_SERVER=0 in the
//     environment: no socket, no server thread.
//   - GT_DUMP_ON=SIGQUIT: SIGQUIT prints every green thread's trace to
//     stderr and the program continues (like Go and the JVM): the handler
//     wakes the snapshot server's thread (started for it even without a
//     socket), which prints a symbolized snapshot. Off by
//     default: SIGQUIT's default action (quit with a core) is the contract
//     of most programs, and Swift's backtracer may own it. When on, SIGQUIT
//     is unblocked on Kernel.run's thread (worker 0) while the kernel runs.
//   - Crash dumps on SIGSEGV (not a guard hit), SIGBUS, SIGILL, SIGFPE and
//     SIGABRT are always on: they only add output before the usual end.
//     GT_DUMP_DIR=<dir>: also written to <dir>/gt-<pid>.crash, which
//     `gt-ps --dump FILE` renders.
import CGreenCore
import Glibc

final class DebugSession {
    private let kernel: KernelCore
    private var server: SnapshotServer?
    private var quitDump = false
    /// Whether SIGQUIT was blocked on the thread that runs Kernel.run.
    private var quitWasBlocked = false

    private init(kernel: KernelCore) { self.kernel = kernel }

    static func start(_ kernel: KernelCore) -> DebugSession {
        let session = DebugSession(kernel: kernel)
        gt_trace_support_install(kernel.configuration.preemption ? 1 : 0)
        CrashDump.prewarm(kernel)
        if let dir = getenv("GT_DUMP_DIR"), gt_dump_set_directory(dir) != 0 {
            "GreenThreads: GT_DUMP_DIR is too long; crash dumps go to stderr only\n".withCString { gt_write_stderr($0) }
        }
        gt_dump_set_walker(crashDumpWalker, crashDumpRelease, Unmanaged.passUnretained(kernel).toOpaque())
        if gt_crash_handlers_install() != 0 {
            "GreenThreads: cannot install the crash-dump handlers; crashes will not list green threads\n"
                .withCString { gt_write_stderr($0) }
        }
        let wantsQuitDump = getenv("GT_DUMP_ON").map { String(cString: $0).uppercased() == "SIGQUIT" } ?? false
        let wantsSocket = kernel.configuration.debugServer && !SnapshotServer.disabledByEnvironment
        if wantsSocket || wantsQuitDump {
            session.server = SnapshotServer.start(kernel: kernel, listen: wantsSocket)
        }
        if wantsQuitDump, let server = session.server {
            session.quitDump = gt_quit_dump_install(server.dumpWrite) == 0
            // Asked for explicitly, so make SIGQUIT deliverable: a process
            // may start with it blocked everywhere (test runners and some
            // supervisors spawn children so). This thread becomes worker 0
            // and keeps it unblocked until the kernel stops.
            var set = sigset_t(), old = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGQUIT)
            pthread_sigmask(SIG_UNBLOCK, &set, &old)
            session.quitWasBlocked = sigismember(&old, SIGQUIT) == 1
        }
        return session
    }

    func stop() {
        if quitDump { gt_quit_dump_uninstall() }  // before the pipe it writes to closes
        server?.stop()
        server = nil
        if quitWasBlocked {  // Kernel.run's thread, as at start
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGQUIT)
            pthread_sigmask(SIG_BLOCK, &set, nil)
        }
        gt_dump_set_walker(nil, nil, nil)
        gt_dump_set_directory(nil)
        // The SIGVTALRM handler goes away with the kernel: no more requests.
        gt_trace_support_install(0)
    }
}
