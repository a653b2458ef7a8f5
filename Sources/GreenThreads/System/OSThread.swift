// OSThread: a plain pthread running a Swift closure, for the kernel's OS
// threads (Machines), the monitor and the debug server. The monitor and the
// debug server get the OS default stack (8 MiB reserved: there is one of
// each); Machines, which may number thousands (one per preempted CPU-bound
// thread), get a small stack from the library's guarded slabs, which costs
// neither a mapping of its own nor RSS beyond the pages it touches.
import CGreenCore
import Glibc
import Synchronization

final class OSThread: @unchecked Sendable {
    private var handle = pthread_t()
    private let body: () -> Void
    private let name: String
    private let blocksPreemptionSignal: Bool

    private init(name: String, blocks: Bool, body: @escaping () -> Void) {
        self.name = name
        self.body = body
        self.blocksPreemptionSignal = blocks
    }

    static func start(name: String, blockingPreemptionSignal: Bool,
                      stack: GreenStack? = nil,
                      _ body: @escaping () -> Void) throws -> OSThread {
        let t = OSThread(name: name, blocks: blockingPreemptionSignal, body: body)
        let context = Unmanaged.passRetained(t).toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        // Explicit, ordinary scheduling: threads inherit their creator's
        // policy by default, and the monitor (which starts spare Machines)
        // runs SCHED_FIFO where permitted; a FIFO Machine running a spinner
        // would starve the monitor and every ordinary thread on its CPU.
        var param = sched_param()
        pthread_attr_setinheritsched(&attr, Int32(PTHREAD_EXPLICIT_SCHED))
        pthread_attr_setschedpolicy(&attr, Int32(SCHED_OTHER))
        pthread_attr_setschedparam(&attr, &param)
        if let stack {
            // glibc puts the thread's control block and static TLS at the
            // top of a caller-provided stack and never frees it: the stack
            // goes back to the pool only after pthread_join.
            pthread_attr_setstack(&attr, stack.low, stack.high - stack.low)
        }
        let rc = pthread_create(&t.handle, &attr, { raw in
            let t = Unmanaged<OSThread>.fromOpaque(raw!).takeRetainedValue()
            t.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<OSThread>.fromOpaque(context).release()
            throw KernelError.system(call: "pthread_create", errno: rc)
        }
        return t
    }

    /// OS threads started here whose body is running. Each thread counts
    /// itself from inside (after it exists, before it ends), so this never
    /// exceeds the threads that exist: the deadlock rule relies on that
    /// (Sync/DeadlockRule.swift). Relaxed: a count, ordered by nothing.
    static var liveCount: Int { live.load(ordering: .relaxed) }
    private static let live = Atomic<Int>(0)

    private func run() {
        OSThread.live.add(1, ordering: .relaxed)
        defer { OSThread.live.subtract(1, ordering: .relaxed) }
        name.withCString { gt_set_thread_name($0) }
        if blocksPreemptionSignal {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGVTALRM)
            pthread_sigmask(SIG_BLOCK, &set, nil)
        }
        body()
    }

    func join() {
        pthread_join(handle, nil)
    }
}
