// Errors a caller can cause at run time. Each says what went wrong in words a
// person can act on; broken kernel invariants are preconditions instead.

/// Misuse of the green-thread API.
///
/// ```swift
/// do {
///     _ = try GreenThread.spawn(stackSize: 4096) { work() }
/// } catch let error as GreenThreadError {
///     print(error)   // "invalid stack size 4096 bytes: the minimum is 32768 bytes (32 KiB)"
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
        }
    }
}
