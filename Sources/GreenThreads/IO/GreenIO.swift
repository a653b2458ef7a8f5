// GreenIO: waiting for and moving bytes on descriptors without stalling the
// kernel. On a green thread a call that would block parks only that thread
// on the kernel's netpoller (Netpoller.swift); on any other OS thread (no
// kernel, or a plain thread beside one) the same calls are plain blocking
// calls on the calling thread, like `yield` and `sleep`.
//
// Descriptors the program owns: GreenIO registers a descriptor with the
// netpoller the first time a thread must wait on it, and keeps it until
// `GreenIO.close` (which also wakes its waiters with EBADF). A descriptor
// closed with Glibc's `close` instead leaves a stale registration: a new
// descriptor with the same number would never see readiness. Close through
// GreenIO (or call `GreenIO.forget` first).
//
// Blocking-mode descriptors: a `read` on a descriptor without O_NONBLOCK
// would block the worker, so inside a kernel GreenIO first checks
// readiness with a zero-timeout poll(2) and parks until the descriptor is
// ready, and writes at most PIPE_BUF bytes per call, the amount POLLOUT
// promises room for (descriptors in non-blocking mode skip both: EAGAIN
// parks).
// Regular files are always "ready" and block briefly in the kernel's disk
// path: use `GreenThread.blocking` for slow storage.
import CGreenCore
import Glibc

/// Readiness waits and reads/writes on descriptors the program owns, which
/// park only the calling green thread.
///
/// ```swift
/// import Glibc
///
/// try Kernel.run {
///     var fds: [Int32] = [0, 0]
///     guard pipe(&fds) == 0 else { throw GreenIOError(operation: "pipe", errno: errno) }
///     let (input, output) = (fds[0], fds[1])
///     let reader = try GreenThread.spawn {
///         defer { try? GreenIO.close(input) }      // wakes any waiter, then closes
///         guard try GreenIO.waitReadable(input, timeout: .seconds(1)) else { return 0 }
///         var byte: UInt8 = 0
///         return try withUnsafeMutableBytes(of: &byte) { try GreenIO.read(input, into: $0) }
///     }
///     _ = try GreenIO.waitWritable(output)
///     _ = try [UInt8]([42]).withUnsafeBytes { try GreenIO.write(output, from: $0) }
///     print(try reader.join())                     // 1
///     GreenIO.forget(output)                       // about to close it with Glibc's close
///     Glibc.close(output)
/// }
/// ```
public enum GreenIO {
    /// Waits until `fd` can be read without blocking (data, end of stream,
    /// or an error to report), or `timeout` passes.
    /// - Returns: true when readable, false when the timeout passed.
    /// - Throws: `GreenIOError` (EBADF, `isClosed`) when the descriptor is
    ///   closed while the thread waits; EBUSY when another green thread
    ///   already waits to read it.
    public static func waitReadable(_ fd: Int32, timeout: Duration? = nil) throws -> Bool {
        try wait(fd, for: .read, deadline: timeout.map(syncDeadline(after:)), operation: "waitReadable")
    }

    /// Waits until `fd` can be written without blocking, or `timeout` passes.
    /// - Returns: true when writable, false when the timeout passed.
    public static func waitWritable(_ fd: Int32, timeout: Duration? = nil) throws -> Bool {
        try wait(fd, for: .write, deadline: timeout.map(syncDeadline(after:)), operation: "waitWritable")
    }

    /// Reads up to `buffer.count` bytes, waiting until at least one byte or
    /// the end of the stream is there.
    /// - Returns: the number of bytes read; 0 at the end of the stream.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try transfer(fd, .read, operation: "read") { limit in
            gt_io_read(fd, buffer.baseAddress, min(buffer.count, limit))
        }
    }

    /// Writes up to `buffer.count` bytes, waiting until at least one can be
    /// written. A peer that went away fails with EPIPE (the program's
    /// SIGPIPE disposition applies: sockets from GreenTCPStream never raise it).
    /// - Returns: the number of bytes written.
    public static func write(_ fd: Int32, from buffer: UnsafeRawBufferPointer) throws -> Int {
        try transfer(fd, .write, operation: "write") { limit in
            gt_io_write(fd, buffer.baseAddress, min(buffer.count, limit))
        }
    }

    /// Closes `fd`, first waking every green thread that waits on it (they
    /// fail with EBADF).
    public static func close(_ fd: Int32) throws {
        forget(fd)
        let r = gt_io_close(fd)
        if r.value < 0 { throw GreenIOError(operation: "close", errno: r.error) }
    }

    /// Drops the running kernel's registration of `fd` and wakes its
    /// waiters with EBADF, without closing it: call it before handing the
    /// descriptor to code that closes it some other way.
    public static func forget(_ fd: Int32) {
        withSyncLock { kernel in kernel?.existingService(Netpoller.self)?.forget(fd) }
    }

    // MARK: Shared by the TCP types

    /// Waits for `direction` on `fd` until `deadline` (nil: no limit).
    /// Returns false when the deadline passed first.
    static func wait(_ fd: Int32, for direction: IODirection, deadline: Int64?,
                     operation: String) throws -> Bool {
        guard let me = currentGreenThread() else {
            let events = direction == .read ? GT_IO_READABLE : GT_IO_WRITABLE
            let timeout = deadline.map { max(0, $0 - gt_clock_monotonic_ns()) } ?? -1
            let r = gt_io_poll(fd, Int32(events), timeout)
            guard r.value >= 0 else { throw GreenIOError(operation: operation, errno: r.error) }
            if r.value & Int(POLLNVAL) != 0 { throw GreenIOError.closed(operation, fd: fd) }
            return r.value != 0
        }
        let kernel = me.kernel
        let outcome = kernel.withBlockingSection {
            Result { try Netpoller.of(kernel).wait(fd, for: direction, deadline: deadline, operation: operation) }
        }
        switch try outcome.get() {
        case .ready: return true
        case .timedOut: return false
        case .closed: throw GreenIOError.closed(operation, fd: fd)
        }
    }

    /// A call on a non-blocking descriptor, repeated after each wait until
    /// it does not fail with EAGAIN. `deadline` nil: no limit; when it
    /// passes, ETIMEDOUT.
    @inline(__always)
    static func retrying(_ fd: Int32, _ direction: IODirection, deadline: Int64? = nil, operation: String,
                         _ call: () -> gt_sysresult) throws -> Int {
        while true {
            let r = call()
            if r.value >= 0 { return r.value }
            guard r.error == EAGAIN || r.error == EWOULDBLOCK else {
                throw GreenIOError(operation: operation, errno: r.error)
            }
            guard try wait(fd, for: direction, deadline: deadline, operation: operation) else {
                throw GreenIOError(operation: operation, errno: ETIMEDOUT, detail: "the timeout passed")
            }
        }
    }

    /// A blocking-mode write that poll(2) reported writable is only sure not
    /// to block for this many bytes (POSIX: POLLOUT on a pipe means PIPE_BUF
    /// bytes of room), so on a green thread it writes at most that much.
    static let blockingModeWriteLimit = 4096

    /// `call(limit)` once `fd` is ready: for a descriptor the program owns,
    /// whose mode (blocking or not) GreenIO does not control. `limit` caps
    /// the byte count of the call.
    private static func transfer(_ fd: Int32, _ direction: IODirection, operation: String,
                                 _ call: (Int) -> gt_sysresult) throws -> Int {
        let flags = gt_io_get_flags(fd)
        guard flags.value >= 0 else { throw GreenIOError(operation: operation, errno: flags.error) }
        if flags.value & Int(O_NONBLOCK) != 0 || currentGreenThread() == nil {
            // Non-blocking: EAGAIN parks (or polls, off a green thread).
            // Blocking mode off a green thread: the plain blocking call.
            return try retrying(fd, direction, operation: operation) { call(Int.max) }
        }
        let limit = direction == .write ? blockingModeWriteLimit : Int.max
        // Blocking mode on a green thread: call only once poll(2) says the
        // call will not block, otherwise park on the netpoller and look again.
        let events = direction == .read ? GT_IO_READABLE : GT_IO_WRITABLE
        while true {
            let ready = gt_io_poll(fd, Int32(events), 0)
            guard ready.value >= 0 else { throw GreenIOError(operation: operation, errno: ready.error) }
            if ready.value & Int(POLLNVAL) != 0 { throw GreenIOError.closed(operation, fd: fd) }
            if ready.value != 0 {
                let r = call(limit)
                guard r.value >= 0 else { throw GreenIOError(operation: operation, errno: r.error) }
                return r.value
            }
            _ = try wait(fd, for: direction, deadline: nil, operation: operation)
        }
    }
}
