// SnapshotServer: serves KernelSnapshots to gt-ps on a Unix domain socket
// (DebugProtocol: length-prefixed JSON, one request per connection).
//
// It runs on its own OS thread, which never runs green threads and blocks
// SIGVTALRM, so a process whose workers are all stuck still answers. It
// reads kernel state only through KernelCore.captureSnapshot, under the
// kernel lock, which it holds for one copy of the thread list (plus at most
// one short trace request per busy worker): never while it waits on a client.
//
// Defences, in order: the socket is 0600 in a 0700 directory; the peer's
// uid (SO_PEERCRED) must be ours or root's, else it gets a refusal and is
// counted; a request must arrive whole within `requestTimeoutNanoseconds`
// and be at most DebugProtocol.maxRequestBytes of valid JSON in the current
// protocol version, else it gets an error response and is dropped (counted).
// One connection is served at a time, so a slow client delays others by at
// most the timeout; none of this touches the green threads.
//
// Fields: the counters are atomics (read by captures on this thread and by
// `statistics` anywhere); the file descriptors are fixed after `start`.
import CGreenCore
import Glibc
import GTSnapshot
import Synchronization

final class SnapshotServer: @unchecked Sendable {
    /// A request must arrive whole within this time: a client that stalls
    /// is dropped so the next one is served.
    static let requestTimeoutNanoseconds: Int64 = 1_000_000_000
    /// Time for a client to take a whole response (large snapshots).
    static let responseTimeoutNanoseconds: Int64 = 10_000_000_000

    let socketPath: String
    private let listener: Int32
    /// The read end of a pipe that `stop` writes to, waking every poll.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// The kernel outlives the server: Kernel.run stops the server first.
    private unowned(unsafe) let kernel: KernelCore
    private var thread: OSThread?

    private let served = Atomic<UInt64>(0)
    private let refused = Atomic<UInt64>(0)
    private let bad = Atomic<UInt64>(0)

    private init(kernel: KernelCore, path: String, listener: Int32, wake: (Int32, Int32)) {
        self.kernel = kernel
        self.socketPath = path
        self.listener = listener
        (wakeRead, wakeWrite) = wake
    }

    /// Whether the environment turns the server off (GT_DEBUG_SERVER=0).
    static var disabledByEnvironment: Bool {
        guard let value = getenv("GT_DEBUG_SERVER") else { return false }
        return ["0", "off", "no", "false"].contains(String(cString: value).lowercased())
    }

    /// Starts serving, or says on stderr why it cannot (the kernel runs on).
    static func start(kernel: KernelCore) -> SnapshotServer? {
        var environment: [String: String] = [:]
        for key in ["GT_DEBUG_SOCKET_DIR", "XDG_RUNTIME_DIR"] {
            if let v = getenv(key) { environment[key] = String(cString: v) }
        }
        var dir = DebugProtocol.socketDirectory(environment: environment, uid: geteuid())
        var problem = DebugSocket.prepareDirectory(dir)
        if problem != nil && environment["GT_DEBUG_SOCKET_DIR"] == nil {
            // $XDG_RUNTIME_DIR unusable (unset parent, another user's): the fallback.
            dir = DebugProtocol.fallbackSocketDirectory(uid: geteuid())
            problem = DebugSocket.prepareDirectory(dir)
        }
        if let problem {
            warn("snapshot server disabled: \(problem)")
            return nil
        }
        DebugSocket.removeStaleSockets(in: dir)
        let path = dir + "/" + DebugProtocol.socketName(pid: getpid())
        let listening = DebugSocket.listen(at: path)
        guard !listening.failed else {
            warn("snapshot server disabled: cannot listen at \(path): \(String(cString: strerror(listening.error)))")
            return nil
        }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            close(Int32(listening.value))
            unlink(path)
            warn("snapshot server disabled: pipe failed")
            return nil
        }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let server = SnapshotServer(kernel: kernel, path: path, listener: Int32(listening.value),
                                    wake: (pipeFDs[0], pipeFDs[1]))
        do {
            server.thread = try OSThread.start(name: "gt-debug", blockingPreemptionSignal: true) { server.run() }
        } catch {
            server.closeAll()
            warn("snapshot server disabled: \(error)")
            return nil
        }
        return server
    }

    /// Stops the thread and removes the socket. Returns once no request is
    /// in progress.
    func stop() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        thread?.join()
        thread = nil
        closeAll()
    }

    private func closeAll() {
        unlink(socketPath)
        close(listener)
        close(wakeRead)
        close(wakeWrite)
    }

    var statistics: DebugServerStatistics {
        DebugServerStatistics(socketPath: socketPath, requestsServed: served.load(ordering: .relaxed),
                              refusedPeers: refused.load(ordering: .relaxed), badRequests: bad.load(ordering: .relaxed))
    }

    private static func warn(_ message: String) {
        "GreenThreads: \(message) (set GT_DEBUG_SERVER=0 to silence)\n".withCString { gt_write_stderr($0) }
    }

    // MARK: The loop

    private func run() {
        while DebugSocket.wait(listener, events: Int16(POLLIN), wake: wakeRead, deadline: Int64.max) {
            let accepted = DebugSocket.accept(listener)
            guard !accepted.failed else { continue }  // the client gave up already, or EMFILE: try again
            let fd = Int32(accepted.value)
            serve(fd)
            close(fd)
        }
    }

    /// One connection: check the peer, read one request, answer it.
    private func serve(_ fd: Int32) {
        let deadline = gt_clock_monotonic_ns() + SnapshotServer.requestTimeoutNanoseconds
        guard let peer = DebugSocket.peerCredentials(fd), peer.uid == geteuid() || peer.uid == 0 else {
            refused.add(1, ordering: .relaxed)
            respond(fd, DebugResponse(error: "permission denied: only uid \(geteuid()) or root may inspect process \(getpid())"))
            return
        }
        guard let header = DebugSocket.read(fd, count: 4, wake: wakeRead, deadline: deadline) else {
            bad.add(1, ordering: .relaxed)  // slow, or hung up before a whole header
            return
        }
        let length = DebugProtocol.payloadLength(header: header)
        guard length <= DebugProtocol.maxRequestBytes else {
            bad.add(1, ordering: .relaxed)
            respond(fd, DebugResponse(error: "request of \(length) bytes exceeds \(DebugProtocol.maxRequestBytes)"))
            return
        }
        guard let payload = DebugSocket.read(fd, count: length, wake: wakeRead, deadline: deadline) else {
            bad.add(1, ordering: .relaxed)
            return
        }
        let request: DebugRequest
        do {
            request = try DebugRequest.parse(payload)
        } catch {
            bad.add(1, ordering: .relaxed)
            respond(fd, DebugResponse(error: "bad request: \(error)"))
            return
        }
        served.add(1, ordering: .relaxed)
        switch request.command {
        case .ping:
            respond(fd, DebugResponse(snapshot: nil))
        case .snapshot:
            var snapshot = kernel.captureSnapshot(includeStacks: request.includeStacks, lockHeld: false)
            snapshot.server = statistics
            respond(fd, DebugResponse(snapshot: snapshot))
        }
    }

    private func respond(_ fd: Int32, _ response: DebugResponse) {
        guard let payload = try? JSONWriter.encode(response) else { return }
        let deadline = gt_clock_monotonic_ns() + SnapshotServer.responseTimeoutNanoseconds
        _ = DebugSocket.write(fd, DebugProtocol.frame(payload), wake: wakeRead, deadline: deadline)
    }
}
