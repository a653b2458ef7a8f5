// GreenTCPListener: a listening TCP socket whose accept() parks only the
// calling green thread. The socket is non-blocking and close-on-exec;
// accepted streams are too, with TCP_NODELAY (request/response protocols
// would otherwise wait for Nagle's delayed ACKs).
//
// Invariants: `descriptor` is the socket until close() swaps in -1 (atomic:
// close may run on another thread while one waits in accept, which then
// fails with EBADF).
import CGreenCore
import Glibc
import Synchronization

/// A TCP listener for green threads.
///
/// ```swift
/// try Kernel.run {
///     let listener = try GreenTCPListener(host: "127.0.0.1", port: 0)
///     print("listening on \(listener.port), descriptor \(listener.fileDescriptor)")
///     let server = try GreenThread.spawn {
///         while let client = try? listener.accept() {   // fails with EBADF once closed
///             try GreenThread.spawn { defer { client.close() }; try serve(client) }
///         }
///     }
///     GreenThread.sleep(for: .seconds(10))
///     listener.close()                                  // ends the accept loop
///     try server.join()
/// }
/// ```
public final class GreenTCPListener: @unchecked Sendable {
    private let descriptor: Atomic<Int32>
    /// The bound port (the one the system chose when created with port 0).
    public let port: UInt16

    /// Binds `host`:`port` (0: any free port) and listens.
    /// - Throws: `GreenIOError` (EADDRINUSE, EACCES, ...).
    public init(host: String = "127.0.0.1", port: UInt16 = 0, backlog: Int = 1024) throws {
        let address = try SocketAddress.resolve(host: host, port: port, operation: "listen")
        let s = gt_io_tcp_socket(address.family)
        guard s.value >= 0 else { throw GreenIOError(operation: "socket", errno: s.error) }
        let fd = Int32(s.value)
        var storage = address.storage
        let bound = gt_io_bind_listen(fd, &storage, address.length, Int32(clamping: backlog))
        guard bound.value == 0 else {
            _ = gt_io_close(fd)
            throw GreenIOError(operation: "bind/listen \(host):\(port)", errno: bound.error)
        }
        let local = gt_io_local_port(fd)
        guard local.value >= 0 else {
            _ = gt_io_close(fd)
            throw GreenIOError(operation: "getsockname", errno: local.error)
        }
        self.port = UInt16(local.value)
        descriptor = Atomic(fd)
    }

    deinit { close() }

    /// The socket's descriptor, or -1 once closed.
    public var fileDescriptor: Int32 { descriptor.load(ordering: .acquiring) }

    /// Waits for the next connection and returns it.
    /// - Throws: `GreenIOError`; EBADF (`isClosed`) once the listener is closed,
    ///   also for a thread that was waiting in accept.
    public func accept() throws -> GreenTCPStream {
        let fd = fileDescriptor
        guard fd >= 0 else { throw GreenIOError.closed("accept", fd: fd) }
        let client = Int32(try GreenIO.retrying(fd, .read, operation: "accept") { gt_io_accept(fd) })
        _ = gt_io_set_nodelay(client)  // best effort: a failure only costs latency
        return GreenTCPStream(descriptor: client)
    }

    /// Closes the listener; a thread waiting in `accept` fails with EBADF.
    /// Closing twice does nothing.
    public func close() {
        let fd = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        if fd >= 0 { try? GreenIO.close(fd) }
    }
}
