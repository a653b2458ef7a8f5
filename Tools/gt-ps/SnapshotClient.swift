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
        let payload = try readExactly(fd, length, path: path, deadline: deadline)
        do {
            return try JSONDecoder().decode(DebugResponse.self, from: Data(payload))
        } catch {
            throw ClientError.decode("\(error)")
        }
    }

    /// A snapshot, or the server's error.
    static func snapshot(pid: Int32, stacks: Bool, timeout: Double) throws -> KernelSnapshot {
        let path = try socketPath(for: pid)
        let response = try send(DebugRequest(command: .snapshot, includeStacks: stacks), to: path, timeout: timeout)
        guard response.ok, let snapshot = response.snapshot else {
            throw ClientError.server("process \(pid): \(response.error ?? "no snapshot in the response")")
        }
        return snapshot
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
