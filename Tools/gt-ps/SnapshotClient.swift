// SnapshotClient: finds the sockets of GreenThreads processes and asks them
// for snapshots (DebugProtocol: one length-prefixed JSON request, one
// response per connection).
//
// Where sockets are: the directory a process of that user would choose
// (DebugProtocol.socketDirectory: $GT_DEBUG_SOCKET_DIR, $XDG_RUNTIME_DIR/gt,
// /tmp/gt-<uid>), for this user and, given a pid, for the process's owner
// (root may inspect anyone's processes; the server allows it).
import Foundation
import GTSnapshot
import Glibc

enum ClientError: Error, CustomStringConvertible {
    case noSocket(pid: Int32, searched: [String])
    case noProcess(pid: Int32)
    case connect(path: String, errno: Int32)
    case io(path: String, what: String)
    case server(String)
    case decode(String)

    var description: String {
        switch self {
        case .noSocket(let pid, let searched):
            return "process \(pid) serves no GreenThreads snapshots (no \(pid).sock in \(searched.joined(separator: ", "))); "
                + "is it running a kernel, with the debug server on (GT_DEBUG_SERVER)?"
        case .noProcess(let pid): return "no process \(pid)"
        case .connect(let path, let e): return "cannot connect to \(path): \(String(cString: strerror(e)))"
        case .io(let path, let what): return "\(path): \(what)"
        case .server(let message): return message
        case .decode(let message): return "unreadable response: \(message)"
        }
    }
}

/// A GreenThreads process found by its socket.
struct ServedProcess {
    var pid: Int32
    var socketPath: String
}

enum SnapshotClient {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// Directories where a socket of `pid` (or of any of our processes) may be.
    static func directories(forOwnerOf pid: Int32? = nil) -> [String] {
        var uids = [geteuid()]
        if let pid, let owner = owner(of: pid), owner != geteuid() { uids.append(owner) }
        var dirs: [String] = []
        for uid in uids {
            var env = uid == geteuid() ? environment : [:]
            if uid != geteuid() { env["XDG_RUNTIME_DIR"] = "/run/user/\(uid)" }
            if let override = environment["GT_DEBUG_SOCKET_DIR"] { env["GT_DEBUG_SOCKET_DIR"] = override }
            dirs.append(DebugProtocol.socketDirectory(environment: env, uid: uid))
            dirs.append(DebugProtocol.fallbackSocketDirectory(uid: uid))  // a process without XDG_RUNTIME_DIR
        }
        var seen = Set<String>()
        return dirs.filter { seen.insert($0).inserted }
    }

    /// The uid owning a process, from /proc.
    static func owner(of pid: Int32) -> UInt32? {
        var st = stat()
        return stat("/proc/\(pid)", &st) == 0 ? st.st_uid : nil
    }

    static func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

    /// The socket of `pid`.
    static func socketPath(for pid: Int32) throws -> String {
        guard isAlive(pid) else { throw ClientError.noProcess(pid: pid) }
        let dirs = directories(forOwnerOf: pid)
        for dir in dirs {
            let path = dir + "/" + DebugProtocol.socketName(pid: pid)
            if access(path, F_OK) == 0 { return path }
        }
        throw ClientError.noSocket(pid: pid, searched: dirs)
    }

    /// Live processes with a socket in this user's directories, by pid.
    static func servedProcesses() -> [ServedProcess] {
        var found: [Int32: ServedProcess] = [:]
        for dir in directories() {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            for name in names {
                guard let pid = DebugProtocol.pid(fromSocketName: name), isAlive(pid), found[pid] == nil else { continue }
                found[pid] = ServedProcess(pid: pid, socketPath: dir + "/" + name)
            }
        }
        return found.values.sorted { $0.pid < $1.pid }
    }

    /// Sends one request and returns the decoded response.
    static func send(_ request: DebugRequest, to path: String, timeout: Double) throws -> DebugResponse {
        try decode(sendRaw(request, to: path, timeout: timeout))
    }

    static func decode(_ payload: [UInt8]) throws -> DebugResponse {
        do {
            return try JSONDecoder().decode(DebugResponse.self, from: Data(payload))
        } catch {
            throw ClientError.decode("\(error)")
        }
    }

    /// Sends one request and returns the response's payload as it came.
    static func sendRaw(_ request: DebugRequest, to path: String, timeout: Double) throws -> [UInt8] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError.connect(path: path, errno: errno) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let fits = withUnsafeMutableBytes(of: &address.sun_path) { raw -> Bool in
            guard bytes.count < raw.count else { return false }
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
            return true
        }
        guard fits else { throw ClientError.connect(path: path, errno: ENAMETOOLONG) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw ClientError.connect(path: path, errno: errno) }
        let deadline = Date().addingTimeInterval(timeout)
        let frame = DebugProtocol.frame(try JSONEncoder().encode(request).map { $0 })
        do {
            try writeAll(fd, frame, path: path, deadline: deadline)
        } catch {
            // A server that refuses us answers without reading and closes:
            // the write may fail (EPIPE) while its answer waits to be read.
        }
        let header = try readExactly(fd, 4, path: path, deadline: deadline)
        let length = DebugProtocol.payloadLength(header: header)
        guard length <= DebugProtocol.maxResponseBytes else {
            throw ClientError.io(path: path, what: "response of \(length) bytes is too large")
        }
        return try readExactly(fd, length, path: path, deadline: deadline)
    }

    /// A snapshot, or the server's error; with the snapshot's JSON exactly
    /// as the process wrote it (for --json, which passes it through).
    static func snapshot(pid: Int32, stacks: Bool, timeout: Double) throws -> (KernelSnapshot, ArraySlice<UInt8>) {
        let path = try socketPath(for: pid)
        let payload = try sendRaw(DebugRequest(command: .snapshot, includeStacks: stacks), to: path, timeout: timeout)
        let response = try decode(payload)
        guard response.ok, let snapshot = response.snapshot else {
            throw ClientError.server("process \(pid): \(response.error ?? "no snapshot in the response")")
        }
        guard let raw = JSONMember.topLevel("snapshot", in: payload) else {
            throw ClientError.decode("no top-level 'snapshot' member")
        }
        return (snapshot, raw)
    }

    /// A summary; from a full snapshot (without stacks) when the process
    /// is older than the summary command.
    static func summary(path: String, timeout: Double) throws -> KernelSummary {
        let response = try send(DebugRequest(command: .summary), to: path, timeout: timeout)
        if response.ok, let summary = response.summary { return summary }
        if response.error?.contains("unknown command") == true,
           let s = try send(DebugRequest(command: .snapshot), to: path, timeout: timeout).snapshot {
            func n(_ state: ThreadState) -> Int { s.threads.filter { $0.state == state }.count }
            return KernelSummary(processID: s.processID, processName: s.processName, kernelRunning: s.kernelRunning,
                                 threads: s.threads.count, ready: n(.ready), running: n(.running), blocked: n(.blocked),
                                 sleeping: n(.sleeping), workers: s.workers.count, threadsSpawned: s.threadsSpawned,
                                 server: s.server)
        }
        throw ClientError.server(response.error ?? "no summary in the response")
    }

    private static func waitReady(_ fd: Int32, _ events: Int16, path: String, deadline: Date) throws {
        var p = pollfd(fd: fd, events: events, revents: 0)
        let ms = Int32(max(0, min(deadline.timeIntervalSinceNow * 1000, 600_000)))
        let rc = poll(&p, 1, ms)
        if rc == 0 { throw ClientError.io(path: path, what: "no answer in time") }
        if rc < 0 && errno != EINTR { throw ClientError.io(path: path, what: String(cString: strerror(errno))) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String, deadline: Date) throws {
        var done = 0
        while done < bytes.count {
            try waitReady(fd, Int16(POLLOUT), path: path, deadline: deadline)
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw ClientError.io(path: path, what: String(cString: strerror(errno)))
            }
            done += n
        }
    }

    private static func readExactly(_ fd: Int32, _ count: Int, path: String, deadline: Date) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            try waitReady(fd, Int16(POLLIN), path: path, deadline: deadline)
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, count - done) }
            if n == 0 { throw ClientError.io(path: path, what: "connection closed early") }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw ClientError.io(path: path, what: String(cString: strerror(errno)))
            }
            done += n
        }
        return bytes
    }
}

/// Finds a member of a JSON object's top level without decoding: the
/// bytes of its value, exactly as written. The response was decoded
/// already, so the input is known to be valid JSON.
enum JSONMember {
    private static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")

    static func topLevel(_ name: String, in bytes: [UInt8]) -> ArraySlice<UInt8>? {
        let key = Array("\"\(name)\"".utf8)
        var depth = 0
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == quote {
                let start = i
                i = stringEnd(bytes, from: i)
                guard depth == 1, Array(bytes[start..<i]) == key else { continue }
                var j = skipSpace(bytes, from: i)
                guard j < bytes.count, bytes[j] == UInt8(ascii: ":") else { continue }
                j = skipSpace(bytes, from: j + 1)
                return bytes[j..<valueEnd(bytes, from: j)]
            }
            if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") { depth += 1 }
            if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") { depth -= 1 }
            i += 1
        }
        return nil
    }

    /// One past the closing quote of the string starting at `i`.
    private static func stringEnd(_ bytes: [UInt8], from i: Int) -> Int {
        var j = i + 1
        while j < bytes.count && bytes[j] != quote { j += bytes[j] == backslash ? 2 : 1 }
        return min(j + 1, bytes.count)
    }

    private static func skipSpace(_ bytes: [UInt8], from i: Int) -> Int {
        var j = i
        while j < bytes.count && [0x20, 0x0A, 0x0D, 0x09].contains(bytes[j]) { j += 1 }
        return j
    }

    /// One past the end of the value starting at `i`.
    private static func valueEnd(_ bytes: [UInt8], from i: Int) -> Int {
        var depth = 0
        var j = i
        while j < bytes.count {
            let b = bytes[j]
            if b == quote {
                j = stringEnd(bytes, from: j)
                if depth == 0 { return j }
                continue
            }
            if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") { depth += 1 }
            if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") {
                if depth == 0 { return j }  // a scalar ended by its container
                depth -= 1
                if depth == 0 { return j + 1 }
            }
            if depth == 0 && b == UInt8(ascii: ",") { return j }
            j += 1
        }
        return j
    }
}
