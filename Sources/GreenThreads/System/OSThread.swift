// OSThread: a plain pthread running a Swift closure, for the workers and the
// monitor. Their stacks are the OS default (8 MiB reserved): there are only
// a handful of them.
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
                      _ body: @escaping () -> Void) throws -> OSThread {
        let t = OSThread(name: name, blocks: blockingPreemptionSignal, body: body)
        let context = Unmanaged.passRetained(t).toOpaque()
        let rc = pthread_create(&t.handle, nil, { raw in
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
