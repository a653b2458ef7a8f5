// DebugSocket: the system calls of the snapshot server (Unix domain socket,
// peer credentials, poll with deadlines) and its socket directory.
//
// Each wrapper is @inline(never) and reads errno right after its call, as
// CGreenCore/sys.c does for the kernel's calls: nothing between the call
// and the read may clobber errno. They run on the server's OS thread only.
//
// The directory ($XDG_RUNTIME_DIR/gt, else /tmp/gt-<uid>; see
// DebugProtocol.socketDirectory) must be a real directory owned by us with
// no access for group or others: the socket's 0600 mode is the first
// barrier, the directory's 0700 the second, the SO_PEERCRED check the third.
import CGreenCore
import Glibc
import GTSnapshot

struct SocketResult {
    var value: Int
    var error: Int32
    var failed: Bool { value < 0 }
}

/// The peer of a connection, from SO_PEERCRED (the layout of `struct
/// ucred`, which Swift's Glibc module does not export: pid, uid, gid).
struct PeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

enum DebugSocket {
    @inline(never)
    static func listen(at path: String) -> SocketResult {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return SocketResult(value: -1, error: errno) }
        var address = sockaddr_un()
        guard fill(&address, path) else {
            close(fd)
            return SocketResult(value: -1, error: ENAMETOOLONG)
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            return SocketResult(value: -1, error: e)
        }
        // Only the owner may connect (the directory is private too).
        if chmod(path, 0o600) != 0 || Glibc.listen(fd, 16) != 0 {
            let e = errno
            close(fd)
            unlink(path)
            return SocketResult(value: -1, error: e)
        }
        return SocketResult(value: Int(fd), error: 0)
    }

    private static func fill(_ address: inout sockaddr_un, _ path: String) -> Bool {
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        return withUnsafeMutableBytes(of: &address.sun_path) { raw in
            guard bytes.count < raw.count else { return false }
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
            return true
        }
    }

    /// Accepts a connection, non-blocking (the server polls with deadlines).
    @inline(never)
    static func accept(_ listener: Int32) -> SocketResult {
        let fd = Glibc.accept(listener, nil, nil)  // accept4 is not exported to Swift
        guard fd >= 0 else { return SocketResult(value: -1, error: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return SocketResult(value: Int(fd), error: 0)
    }

    @inline(never)
    static func peerCredentials(_ fd: Int32) -> PeerCredentials? {
        var credentials = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        let rc = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length)
        return rc == 0 && Int(length) == MemoryLayout<PeerCredentials>.size ? credentials : nil
    }

    /// Waits until `fd` is ready for `events` or `wake` is readable, at most
    /// until `deadline` (CLOCK_MONOTONIC ns). True when `fd` is ready.
    @inline(never)
    static func wait(_ fd: Int32, events: Int16, wake: Int32, deadline: Int64) -> Bool {
        while true {
            let left = deadline - gt_clock_monotonic_ns()
            guard left > 0 else { return false }
            var fds = [pollfd(fd: fd, events: events, revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, Int32(min(left / 1_000_000 + 1, 60_000)))
            if rc < 0 {
                if errno == EINTR { continue }
                return false
            }
            if fds[1].revents != 0 { return false }  // the server is stopping
            if fds[0].revents != 0 { return true }
        }
    }

    /// Reads exactly `count` bytes before `deadline`, or nil (EOF, error,
    /// timeout, or stop).
    static func read(_ fd: Int32, count: Int, wake: Int32, deadline: Int64) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, count - done) }
            if n > 0 { done += n; continue }
            if n == 0 { return nil }
            let e = errno
            guard e == EAGAIN || e == EINTR else { return nil }
            guard wait(fd, events: Int16(POLLIN), wake: wake, deadline: deadline) else { return nil }
        }
        return bytes
    }

    /// Writes all of `bytes` before `deadline`. MSG_NOSIGNAL: a client that
    /// went away gives EPIPE, not a SIGPIPE that would kill the process.
    static func write(_ fd: Int32, _ bytes: [UInt8], wake: Int32, deadline: Int64) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n > 0 { done += n; continue }
            let e = errno
            guard n < 0, e == EAGAIN || e == EINTR else { return false }
            guard wait(fd, events: Int16(POLLOUT), wake: wake, deadline: deadline) else { return false }
        }
        return true
    }

    // MARK: The directory

    /// Creates the socket directory (0700) if needed and checks that it is
    /// private: a directory (not a symlink), ours, no group/other access.
    /// Returns nil, or why it cannot be used.
    static func prepareDirectory(_ dir: String) -> String? {
        if mkdir(dir, 0o700) != 0 && errno != EEXIST {
            return "cannot create \(dir): \(String(cString: strerror(errno)))"
        }
        var st = stat()
        guard lstat(dir, &st) == 0 else { return "cannot stat \(dir): \(String(cString: strerror(errno)))" }
        guard st.st_mode & S_IFMT == S_IFDIR else { return "\(dir) is not a directory" }
        guard st.st_uid == geteuid() else { return "\(dir) belongs to uid \(st.st_uid), not to us" }
        guard st.st_mode & 0o077 == 0 else { return "\(dir) is accessible to others (mode \(String(st.st_mode & 0o777, radix: 8)))" }
        return nil
    }

    /// Removes sockets of processes that no longer exist (a process killed
    /// before its kernel stopped leaves its socket behind), and a leftover
    /// of our own pid.
    static func removeStaleSockets(in dir: String) {
        guard let d = opendir(dir) else { return }
        defer { closedir(d) }
        let me = getpid()
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = DebugProtocol.pid(fromSocketName: name) else { continue }
            if pid == me || (kill(pid, 0) != 0 && errno == ESRCH) {
                unlink(dir + "/" + name)
            }
        }
    }
}
