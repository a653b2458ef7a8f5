// GreenIOError: the one error type of the I/O layer (GreenIO, the TCP types,
// the netpoller). It names the operation that failed and carries the errno
// the system reported, or the errno that best describes a failure the
// library detected itself (a descriptor closed while a thread waited on it:
// EBADF; a connect that took longer than its timeout: ETIMEDOUT).
import Glibc

/// A failed I/O operation: which one, and the system's error number.
///
/// ```swift
/// import Glibc
///
/// func handshake(_ stream: GreenTCPStream) throws {
///     guard try stream.read(upToCount: 5) == Array("hello".utf8) else {
///         throw GreenIOError(operation: "handshake", errno: EPROTO, detail: "unexpected greeting")
///     }
/// }
/// try Kernel.run {
///     do {
///         let stream = try GreenTCPStream.connect(host: "127.0.0.1", port: 9, timeout: .seconds(1))
///         defer { stream.close() }
///         try handshake(stream)
///     } catch let error as GreenIOError where error.errno == ECONNREFUSED {
///         print("\(error.operation): nobody listens")          // "connect to 127.0.0.1:9: nobody listens"
///     } catch let error as GreenIOError where error.isClosed {
///         print("closed under us: \(error.detail ?? "")")
///     } catch {
///         print(error)   // "handshake failed: unexpected greeting (Protocol error, errno 71)"
///     }
/// }
/// ```
public struct GreenIOError: Error, Equatable, CustomStringConvertible {
    /// The call that failed ("read", "connect", "accept", "epoll_ctl", ...).
    public var operation: String
    /// The error number (`Glibc.ECONNRESET`, ...).
    public var errno: Int32
    /// What the library adds to the system's text, if anything ("closed
    /// while this thread waited on it").
    public var detail: String?

    public init(operation: String, errno: Int32, detail: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        let text = String(cString: strerror(errno))
        if let detail { return "\(operation) failed: \(detail) (\(text), errno \(errno))" }
        return "\(operation) failed: \(text) (errno \(errno))"
    }

    /// The descriptor was closed, by this or another thread, while the
    /// operation waited on it or before it began.
    public var isClosed: Bool { errno == EBADF }

    static func closed(_ operation: String, fd: Int32) -> GreenIOError {
        GreenIOError(operation: operation, errno: EBADF, detail: "descriptor \(fd) was closed")
    }
}
