// DebugSocket: the system calls of the snapshot server (Unix domain socket,
// created and accepted close-on-exec; peer credentials; poll; non-blocking
// reads and writes) and its socket directory.
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
        // Close-on-exec from creation (no fcntl window for a fork to
        // inherit it); non-blocking, so the accept loop stops at EAGAIN.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
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
        // Only the owner may connect (the directory is private too). The
        // backlog holds a burst of connections between two polls (the loop
        // accepts them all at once, up to `SnapshotServer.maxClients`).
        if chmod(path, 0o600) != 0 || Glibc.listen(fd, 128) != 0 {
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

    /// Accepts a connection: non-blocking (the server polls), and
    /// close-on-exec from its first instant (accept4 with SOCK_CLOEXEC: a
    /// separate fcntl would leave a window in which a fork by another
    /// thread inherits the connection).
    @inline(never)
    static func accept(_ listener: Int32) -> SocketResult {
        let fd = gt_accept_cloexec(listener)
        guard fd >= 0 else { return SocketResult(value: -1, error: errno) }
        return SocketResult(value: Int(fd), error: 0)
    }

    @inline(never)
    static func peerCredentials(_ fd: Int32) -> PeerCredentials? {
        var credentials = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        let rc = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length)
        return rc == 0 && Int(length) == MemoryLayout<PeerCredentials>.size ? credentials : nil
    }

    /// poll(2) for at most `timeoutNanoseconds` (rounded up to a
    /// millisecond, capped at a minute: the loop re-polls). -1 on EINTR.
    @inline(never)
    static func poll(_ fds: inout [pollfd], timeoutNanoseconds: Int64) -> Int32 {
        let ms = Int32(min((timeoutNanoseconds + 999_999) / 1_000_000, 60_000))
        let rc = Glibc.poll(&fds, nfds_t(fds.count), ms)
        return rc < 0 && errno == EINTR ? -1 : max(rc, 0)
    }

    /// Reads what is available, at most `count` bytes, without waiting:
    /// [] when nothing is there yet, nil at EOF or on an error.
    @inline(never)
    static func receiveSome(_ fd: Int32, upTo count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, count) }
        if n > 0 { return Array(bytes.prefix(n)) }
        if n == 0 { return nil }
        let e = errno
        return e == EAGAIN || e == EINTR ? [] : nil
    }

    /// Sends what the socket takes of `bytes[from...]` without waiting:
    /// the count sent (0 when full), or -1 when the peer is gone or on an
    /// error. MSG_NOSIGNAL: a client that went away gives EPIPE, not a
    /// SIGPIPE that would kill the process.
    @inline(never)
    static func sendSome(_ fd: Int32, _ bytes: [UInt8], from offset: Int) -> Int {
        guard offset < bytes.count else { return 0 }
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
        if n >= 0 { return n }
        let e = errno
        return e == EAGAIN || e == EINTR ? 0 : -1
    }

    /// Writes all of `bytes` to a blocking descriptor (stderr, for the dump).
    @inline(never)
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            return false
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
