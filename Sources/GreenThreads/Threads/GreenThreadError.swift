// Errors a caller can cause at run time. Each says what went wrong in words a
// person can act on; broken kernel invariants are preconditions instead.

import Glibc

/// Misuse of the green-thread API.
///
/// ```swift
/// try Kernel.run {
///     do {
///         _ = try GreenThread.spawn(stackSize: 4096) { serveRequest() }
///     } catch GreenThreadError.invalidStackSize(_, let minimum) {
///         print("at least \(minimum) bytes")   // at least 32768 bytes
///     } catch let error as GreenThreadError {
///         print(error)                        // any other misuse, said in words
///     }
/// }
/// ```
public enum GreenThreadError: Error, Equatable, CustomStringConvertible {
    /// A priority level outside 0...31.
    case invalidPriority(Int)
    /// A stack size below `GreenThread.minimumStackSize`.
    case invalidStackSize(Int, minimum: Int)
    /// A green-thread operation outside `Kernel.run`.
    case notInKernel(operation: String)
    /// A thread tried to join itself, which could never finish.
    case joinedSelf(threadID: UInt64)
    /// No memory for another stack.
    case outOfStackMemory(stackSize: Int, errno: Int32)
    /// A `GreenThreadLocal` could not get the OS thread-local key it keeps
    /// for code outside green threads (`pthread_key_create` failed: EAGAIN
    /// when the process already holds PTHREAD_KEYS_MAX keys, 1024 on glibc).
    case threadLocalKeyUnavailable(errno: Int32)
    /// The calling thread was cancelled (`GreenThread.cancel()`), so the wait
    /// it was in, or was about to start, ended without its event.
    case cancelled(threadID: UInt64)
    /// `Kernel.Handle.spawn` after `shutdown()` began or the kernel stopped.
    case kernelStopped
    /// `GreenThreadGroup.spawn` after its `withThreadGroup` scope ended.
    case threadGroupEnded

    /// A sentence saying what went wrong and what is allowed.
    public var description: String {
        switch self {
        case .invalidPriority(let level):
            return "invalid priority level \(level): levels are 0...\(Priority.levelCount - 1)"
        case .invalidStackSize(let size, let minimum):
            return "invalid stack size \(size) bytes: the minimum is \(minimum) bytes (\(minimum / 1024) KiB)"
        case .notInKernel(let operation):
            return "\(operation) needs a running kernel: call it inside Kernel.run { ... }"
        case .joinedSelf(let id):
            return "green thread \(id) tried to join itself, which would wait forever"
        case .outOfStackMemory(let size, let errno):
            return "cannot map a \(size / 1024) KiB stack (errno \(errno))"
        case .threadLocalKeyUnavailable(let errno):
            let why = errno == EAGAIN ? "the process already uses every OS thread-local key (PTHREAD_KEYS_MAX)"
                : String(cString: strerror(errno))
            return "cannot create a GreenThreadLocal: pthread_key_create failed: \(why) (errno \(errno))"
        case .cancelled(let id):
            return "green thread \(id) was cancelled: the wait ended without its event"
        case .kernelStopped:
            return "the background kernel is shutting down or stopped: it accepts no new threads"
        case .threadGroupEnded:
            return "spawn into a thread group whose withThreadGroup scope has ended"
        }
    }
}
