// GreenThreadLocal: storage with one value per green thread.
//
// OS thread-locals (`pthread_getspecific`, C `__thread`, and anything built
// on them: Foundation's Thread.current, Dispatch's current queue, Swift's
// task-local fallback) belong to the worker OS thread, so every green thread
// that runs on a worker sees the same value, and a preempted thread may
// resume on another worker and see a different one. A GreenThreadLocal
// follows the green thread instead. On an OS thread that is not running a
// green thread, each OS thread has its own value.
import Glibc
import Synchronization

/// Slot numbers handed to GreenThreadLocal instances.
private let greenThreadLocalSlots = Atomic<UInt64>(1)

/// A value with one copy per green thread.
///
/// `Value` is Sendable: the default value is shared by every thread that
/// has not set its own, and a thread's value may be read and written from
/// whichever worker OS thread the thread runs on.
///
/// ```swift
/// let requestID = try GreenThreadLocal<Int>(default: 0)
/// try Kernel.run {
///     let request = try GreenThread.spawn { requestID.value = 7; serveRequest() }   // serveRequest() sees 7
///     try request.join()
///     print(requestID.value)                    // 0: the main thread's own copy
/// }
/// ```
public final class GreenThreadLocal<Value: Sendable>: @unchecked Sendable {
    private let defaultValue: Value
    private var key = pthread_key_t()
    /// Slot number in each thread's table: unique for the process's life, so
    /// a new local never sees values left by a deallocated one.
    private let slot: UInt64

    /// Creates a slot whose value is `default` until a thread sets its own.
    ///
    /// - Throws: `GreenThreadError.threadLocalKeyUnavailable` when the OS
    ///   has no thread-local key left for it (each local keeps one, for
    ///   code outside green threads; glibc allows 1024 per process). Without
    ///   a key the local would alias key 0, another library's.
    ///
    /// ```swift
    /// let scratch = try GreenThreadLocal<[UInt8]>(default: [])
    /// ```
    public init(default defaultValue: Value) throws {
        self.defaultValue = defaultValue
        self.slot = greenThreadLocalSlots.add(1, ordering: .relaxed).oldValue
        let rc = pthread_key_create(&key) { raw in
            Unmanaged<AnyObject>.fromOpaque(raw!).release()
        }
        // pthread functions return the error number; errno is not set.
        guard rc == 0 else { throw GreenThreadError.threadLocalKeyUnavailable(errno: rc) }
        hasKey = true
    }

    /// Whether `key` was created (deinit runs for a throwing init too).
    private var hasKey = false

    deinit { if hasKey { pthread_key_delete(key) } }

    private final class Box { var value: Any; init(_ v: Any) { value = v } }

    /// This green thread's value (or this OS thread's, outside green threads).
    public var value: Value {
        get {
            if GreenThread.isInKernel {
                return GreenThread.current.locals[slot] as? Value ?? defaultValue
            }
            guard let raw = pthread_getspecific(key) else { return defaultValue }
            return (Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue() as! Box).value as! Value
        }
        set {
            if GreenThread.isInKernel {
                let thread = GreenThread.current
                // Set by a local's deinit while the thread ends: dropped
                // here, on the thread (see GreenThread.tearDownLocals).
                guard !thread.localsTornDown else { return }
                thread.locals[slot] = newValue
                return
            }
            if let raw = pthread_getspecific(key) {
                (Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue() as! Box).value = newValue
            } else {
                pthread_setspecific(key, Unmanaged.passRetained(Box(newValue) as AnyObject).toOpaque())
            }
        }
    }
}
