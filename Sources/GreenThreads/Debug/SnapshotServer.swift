// SnapshotServer: serves KernelSnapshots to gt-ps on a Unix domain socket
// (DebugProtocol: length-prefixed JSON, one request per connection), and
// prints the on-demand dump when SIGQUIT asks for it (GT_DUMP_ON=SIGQUIT).
//
// It runs on its own OS thread, which never runs green threads and blocks
// SIGVTALRM, so a process whose workers are all stuck still answers. It
// reads kernel state only through KernelCore.captureSnapshot and
// `summary`, under the kernel lock, which it holds for one copy of the
// thread list (plus at most one short trace request per busy worker):
// never while it waits on a client.
//
// Clients are served concurrently by one poll loop: each connection is a
// small state machine (reading its request, then writing its response)
// with a deadline of its own, so a client that sends nothing costs the
// others nothing; it is dropped at its deadline. At most `maxClients`
// connections are open at once; one more gets a "busy" error and is
// closed, and the refusal is counted. The work for a request (a capture)
// runs on this thread between polls: a client waits at most for the
// captures of the requests that completed before its own.
//
// Defences, in order: the socket is 0600 in a 0700 directory; the peer's
// uid (SO_PEERCRED) must be ours or root's, else it gets a refusal and is
// counted; a request must arrive whole within `requestTimeoutNanoseconds`
// and be at most DebugProtocol.maxRequestBytes of valid JSON in the current
// protocol version, else it gets an error response and is dropped (counted).
// None of this touches the green threads.
//
// Fields: the counters are atomics (read by captures on this thread and by
// `statistics` anywhere); the file descriptors are fixed after `start`; the
// client table belongs to the server's thread.
import CGreenCore
import FoundationEssentials
import GTSnapshot
import Glibc
import GTSnapshot
import Synchronization

final class SnapshotServer: @unchecked Sendable {
    /// A request must arrive whole within this time: a client that stalls
    /// is dropped (others are not kept waiting by it meanwhile).
    static let requestTimeoutNanoseconds: Int64 = 1_000_000_000
    /// Time for a client to take a whole response (large snapshots).
    static let responseTimeoutNanoseconds: Int64 = 10_000_000_000
    /// Connections open at once. Each costs a descriptor and a small
    /// buffer; 64 is far more than the monitoring agents and people that
    /// inspect one process, and keeps the poll set small.
    static let maxClients = 64

    let socketPath: String?
    private let listener: Int32
    /// The read end of a pipe that `stop` writes to, waking every poll.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// The pipe the SIGQUIT handler writes one byte to (non-blocking).
    let dumpRead: Int32
    let dumpWrite: Int32
    /// The kernel outlives the server: Kernel.run stops the server first.
    private unowned(unsafe) let kernel: KernelCore
    private var thread: OSThread?

    private let served = Atomic<UInt64>(0)
    private let refused = Atomic<UInt64>(0)
    private let refusedBusy = Atomic<UInt64>(0)
    private let bad = Atomic<UInt64>(0)

    private init(kernel: KernelCore, path: String?, listener: Int32, wake: (Int32, Int32), dump: (Int32, Int32)) {
        self.kernel = kernel
        self.socketPath = path
        self.listener = listener
        (wakeRead, wakeWrite) = wake
        (dumpRead, dumpWrite) = dump
    }

    /// Whether the environment turns the socket off (GT_DEBUG_SERVER=0).
    static var disabledByEnvironment: Bool {
        guard let value = getenv("GT_DEBUG_SERVER") else { return false }
        return ["0", "off", "no", "false"].contains(String(cString: value).lowercased())
    }

    /// Starts the server thread, or says on stderr why it cannot (the
    /// kernel runs on). `listen` false: no socket, only the SIGQUIT dump.
    static func start(kernel: KernelCore, listen: Bool) -> SnapshotServer? {
        var path: String?
        var listener: Int32 = -1
        if listen {
            switch openSocket() {
            case .success(let opened): (path, listener) = opened
            case .failure(let problem):
                warn("snapshot server disabled: \(problem.description)")
                return nil
            }
        }
        guard let wake = makePipe(), let dump = makePipe() else {
            if listener >= 0 { close(listener) }
            if let path { unlink(path) }
            warn("snapshot server disabled: pipe failed")
            return nil
        }
        let server = SnapshotServer(kernel: kernel, path: path, listener: listener, wake: wake, dump: dump)
        do {
            server.thread = try OSThread.start(name: "gt-debug", blockingPreemptionSignal: true) { server.run() }
        } catch {
            server.closeAll()
            warn("snapshot server disabled: \(error)")
            return nil
        }
        return server
    }

    private struct Problem: Error, CustomStringConvertible { var description: String }

    /// Creates the socket in the private directory (see DebugSocket).
    private static func openSocket() -> Result<(String, Int32), Problem> {
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
        if let problem { return .failure(Problem(description: problem)) }
        DebugSocket.removeStaleSockets(in: dir)
        let path = dir + "/" + DebugProtocol.socketName(pid: getpid())
        let listening = DebugSocket.listen(at: path)
        guard !listening.failed else {
            return .failure(Problem(description: "cannot listen at \(path): \(String(cString: strerror(listening.error)))"))
        }
        return .success((path, Int32(listening.value)))
    }

    /// A close-on-exec, non-blocking pipe (read end, write end).
    private static func makePipe() -> (Int32, Int32)? {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return (fds[0], fds[1])
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
        if let socketPath { unlink(socketPath) }
        if listener >= 0 { close(listener) }
        for fd in [wakeRead, wakeWrite, dumpRead, dumpWrite] { close(fd) }
    }

    var statistics: DebugServerStatistics {
        DebugServerStatistics(socketPath: socketPath ?? "", requestsServed: served.load(ordering: .relaxed),
                              refusedPeers: refused.load(ordering: .relaxed), badRequests: bad.load(ordering: .relaxed),
                              refusedBusy: refusedBusy.load(ordering: .relaxed), maxClients: SnapshotServer.maxClients)
    }

    private static func warn(_ message: String) {
        "GreenThreads: \(message) (set GT_DEBUG_SERVER=0 to silence)\n".withCString { gt_write_stderr($0) }
    }

    // MARK: The loop

    /// One connection in progress.
    private struct Client {
        var fd: Int32
        var deadline: Int64
        /// Bytes read so far (header, then payload), while reading.
        var input: [UInt8] = []
        /// The framed response and how much of it went out, once answered.
        var output: [UInt8]?
        var written = 0
    }

    private func run() {
        var clients: [Client] = []
        defer { for c in clients { close(c.fd) } }
        while true {
            // Poll set: wake pipe, dump pipe, listener, then one per client.
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: dumpRead, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            for c in clients {
                fds.append(pollfd(fd: c.fd, events: Int16(c.output == nil ? POLLIN : POLLOUT), revents: 0))
            }
            let now = gt_clock_monotonic_ns()
            let next = clients.map(\.deadline).min().map { max(0, $0 - now) } ?? 60_000_000_000
            let rc = DebugSocket.poll(&fds, timeoutNanoseconds: next)
            if rc < 0 { continue }  // EINTR
            if fds[0].revents != 0 { return }  // stopping
            if fds[1].revents != 0 { drainDumpPipe(); printDump() }
            // Clients first (their revents index the current table), then
            // deadlines, then new connections.
            var keep: [Client] = []
            let after = gt_clock_monotonic_ns()
            for (i, var c) in clients.enumerated() {
                let events = fds[3 + i].revents
                var open = true
                if events != 0 { open = progress(&c) }
                if open && after >= c.deadline {
                    if c.output == nil { bad.add(1, ordering: .relaxed) }  // slow, or silent
                    open = false
                }
                if open { keep.append(c) } else { close(c.fd) }
            }
            clients = keep
            if fds[2].revents != 0 { acceptAll(&clients) }
        }
    }

    /// Accepts every pending connection: checks the peer and the cap.
    private func acceptAll(_ clients: inout [Client]) {
        while true {
            let accepted = DebugSocket.accept(listener)
            guard !accepted.failed else { return }  // EAGAIN: none left (or EMFILE: next poll)
            let fd = Int32(accepted.value)
            guard let peer = DebugSocket.peerCredentials(fd), peer.uid == geteuid() || peer.uid == 0 else {
                refused.add(1, ordering: .relaxed)
                refuse(fd, "permission denied: only uid \(geteuid()) or root may inspect process \(getpid())")
                continue
            }
            guard clients.count < SnapshotServer.maxClients else {
                refusedBusy.add(1, ordering: .relaxed)
                refuse(fd, "busy: \(SnapshotServer.maxClients) connections are open; try again")
                continue
            }
            clients.append(Client(fd: fd, deadline: gt_clock_monotonic_ns() + SnapshotServer.requestTimeoutNanoseconds))
        }
    }

    /// Answers with an error and closes, without waiting: a short frame
    /// fits a fresh socket's buffer, and a refused peer gets no more time.
    private func refuse(_ fd: Int32, _ message: String) {
        if let payload = try? JSONEncoder().encode(DebugResponse(error: message)) {
            _ = DebugSocket.sendSome(fd, DebugProtocol.frame(Array(payload)), from: 0)
        }
        close(fd)
    }

    /// Moves one client on; false when its connection is done.
    private func progress(_ c: inout Client) -> Bool {
        if let output = c.output {
            let n = DebugSocket.sendSome(c.fd, output, from: c.written)
            guard n >= 0 else { return false }  // gone, or an error
            c.written += n
            return c.written < output.count
        }
        // Reading: the 4-byte header, then the payload it announces.
        if c.input.count < 4 {
            guard receive(&c, upTo: 4 - c.input.count) else { return false }
            guard c.input.count == 4 else { return true }
        }
        let length = DebugProtocol.payloadLength(header: Array(c.input.prefix(4)))
        guard length <= DebugProtocol.maxRequestBytes else {
            bad.add(1, ordering: .relaxed)
            answer(&c, DebugResponse(error: "request of \(length) bytes exceeds \(DebugProtocol.maxRequestBytes)"))
            return true
        }
        if c.input.count < 4 + length {
            guard receive(&c, upTo: 4 + length - c.input.count) else { return false }
            guard c.input.count == 4 + length else { return true }
        }
        answer(&c, respond(to: Array(c.input.dropFirst(4))))
        return true
    }

    /// Reads what is there (non-blocking); false at EOF or an error, which
    /// ends a request before it was whole (counted).
    private func receive(_ c: inout Client, upTo count: Int) -> Bool {
        guard let chunk = DebugSocket.receiveSome(c.fd, upTo: count) else {
            bad.add(1, ordering: .relaxed)
            return false
        }
        c.input += chunk
        return true
    }

    private func answer(_ c: inout Client, _ response: DebugResponse) {
        // FoundationEssentials' encoder: measured as fast as the streaming
        // writer it replaced (docs/gt-ps.md, "What a snapshot costs").
        c.output = DebugProtocol.frame((try? JSONEncoder().encode(response)).map(Array.init) ?? [])
        c.written = 0
        c.deadline = gt_clock_monotonic_ns() + SnapshotServer.responseTimeoutNanoseconds
    }

    private func respond(to payload: [UInt8]) -> DebugResponse {
        let request: DebugRequest
        do {
            request = try DebugRequest.parse(payload)
        } catch {
            bad.add(1, ordering: .relaxed)
            return DebugResponse(error: "bad request: \(error)")
        }
        served.add(1, ordering: .relaxed)
        switch request.command {
        case .ping:
            return DebugResponse(snapshot: nil)
        case .summary:
            var summary = kernel.captureSummary()
            summary.server = statistics
            return DebugResponse(summary: summary)
        case .snapshot:
            var snapshot = kernel.captureSnapshot(includeStacks: request.includeStacks, lockHeld: false)
            snapshot.server = statistics
            return DebugResponse(snapshot: snapshot)
        }
    }

    // MARK: The on-demand dump (SIGQUIT)

    private func drainDumpPipe() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while bytes.withUnsafeMutableBytes({ read(dumpRead, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// The dump: a snapshot with traces, in its text form, on stderr.
    private func printDump() {
        let snapshot = kernel.captureSnapshot(includeStacks: true, lockHeld: false)
        let text = "\nGreenThreads: SIGQUIT (\(SIGQUIT)) received; dump of all green threads, the program continues\n"
            + snapshot.text() + "\nend of dump\n"
        _ = DebugSocket.writeAll(STDERR_FILENO, Array(text.utf8))
    }
}
