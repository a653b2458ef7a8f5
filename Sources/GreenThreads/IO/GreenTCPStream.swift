// GreenTCPStream: a connected TCP socket whose reads, writes and connect
// park only the calling green thread (and block the calling OS thread
// elsewhere). Non-blocking, close-on-exec, TCP_NODELAY; writes use
// MSG_NOSIGNAL, so a vanished peer is an EPIPE error, never a SIGPIPE.
//
// Invariants: `descriptor` is the socket until close() swaps in -1 (atomic;
// a thread parked on it wakes with EBADF). One thread may read while
// another writes; two threads reading at once fail with EBUSY when both
// must wait. A call already inside the kernel when another thread closes
// the stream may see the descriptor number reused (POSIX close semantics):
// close a stream only once its users are done with it or parked on it.
import CGreenCore
import Glibc
import Synchronization

/// A TCP connection for green threads.
///
/// ```swift
/// import Glibc
///
/// let stream = try GreenTCPStream.connect(host: "127.0.0.1", port: 8080, timeout: .seconds(2))
/// defer { stream.close() }
/// var on: Int32 = 1                            // options the type does not wrap
/// setsockopt(stream.fileDescriptor, SOL_SOCKET, SO_KEEPALIVE, &on, socklen_t(MemoryLayout<Int32>.size))
/// try stream.write(Array("ping\n".utf8))
/// let reply = try stream.read(upToCount: 64)   // [] at end of stream
/// var header = [UInt8](repeating: 0, count: 4)
/// let count = try header.withUnsafeMutableBytes { try stream.read(into: $0) }   // 0 at end of stream
/// ```
public final class GreenTCPStream: @unchecked Sendable {
    private let descriptor: Atomic<Int32>

    init(descriptor fd: Int32) {
        descriptor = Atomic(fd)
    }

    deinit { close() }

    /// The socket's descriptor, or -1 once closed.
    public var fileDescriptor: Int32 { descriptor.load(ordering: .acquiring) }

    /// Connects to `host`:`port`, waiting at most `timeout` (nil: as long as
    /// the system tries).
    /// - Throws: `GreenIOError`: ECONNREFUSED, ETIMEDOUT when the timeout
    ///   passed, EHOSTUNREACH for a name that does not resolve, ...
    public static func connect(host: String, port: UInt16, timeout: Duration? = nil) throws -> GreenTCPStream {
        let deadline = timeout.map(syncDeadline(after:))
        let address = try SocketAddress.resolve(host: host, port: port, operation: "connect")
        let s = gt_io_tcp_socket(address.family)
        guard s.value >= 0 else { throw GreenIOError(operation: "socket", errno: s.error) }
        let fd = Int32(s.value)
        let stream = GreenTCPStream(descriptor: fd)  // closes fd on every error path below
        var storage = address.storage
        let r = gt_io_connect(fd, &storage, address.length)
        if r.value != 0 {
            guard r.error == EINPROGRESS else {
                // EAGAIN from a TCP connect: no free local port (Linux).
                let detail = r.error == EAGAIN ? "no free local port (ephemeral ports in use or in TIME_WAIT)" : nil
                throw GreenIOError(operation: "connect to \(host):\(port)", errno: r.error, detail: detail)
            }
            guard try GreenIO.wait(fd, for: .write, deadline: deadline, operation: "connect") else {
                throw GreenIOError(operation: "connect to \(host):\(port)", errno: ETIMEDOUT,
                                   detail: "no connection within \(timeout!)")
            }
            let status = gt_io_socket_error(fd)
            guard status.error == 0 else {
                throw GreenIOError(operation: "connect to \(host):\(port)", errno: status.error)
            }
        }
        _ = gt_io_set_nodelay(fd)  // best effort: a failure only costs latency
        return stream
    }

    /// Reads up to `buffer.count` bytes, waiting for at least one.
    /// - Returns: the count read; 0 at the end of the stream.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let fd = fileDescriptor
        guard fd >= 0 else { throw GreenIOError.closed("read", fd: fd) }
        return try GreenIO.retrying(fd, .read, operation: "read") { gt_io_read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Reads up to `count` bytes, waiting for at least one.
    /// - Returns: the bytes read; empty at the end of the stream.
    public func read(upToCount count: Int) throws -> [UInt8] {
        precondition(count >= 0, "read(upToCount: \(count)): the count cannot be negative")
        var got = 0
        let bytes = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            got = try read(into: UnsafeMutableRawBufferPointer(buffer))
            initialized = got
        }
        return bytes
    }

    /// Writes every byte of `buffer`, waiting as often as needed.
    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        let fd = fileDescriptor
        guard fd >= 0 else { throw GreenIOError.closed("write", fd: fd) }
        var offset = 0
        while offset < buffer.count {
            let rest = UnsafeRawBufferPointer(rebasing: buffer[offset...])
            offset += try GreenIO.retrying(fd, .write, operation: "write") {
                gt_io_send(fd, rest.baseAddress, rest.count)
            }
        }
    }

    /// Writes every byte of `bytes`.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Closes the connection; threads waiting on it fail with EBADF.
    /// Closing twice does nothing.
    public func close() {
        let fd = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        if fd >= 0 { try? GreenIO.close(fd) }
    }
}
