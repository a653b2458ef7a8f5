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
/// ```swift
/// let requestID = GreenThreadLocal<Int>(default: 0)
/// try GreenThread.spawn { requestID.value = 7; handle() }   // handle() sees 7
/// ```
public final class GreenThreadLocal<Value>: @unchecked Sendable {
    private let defaultValue: Value
    private var key = pthread_key_t()
    /// Slot number in each thread's table: unique for the process's life, so
    /// a new local never sees values left by a deallocated one.
    private let slot: UInt64

    /// Creates a slot whose value is `default` until a thread sets its own.
    ///
    /// ```swift
    /// let scratch = GreenThreadLocal<[UInt8]>(default: [])
    /// ```
    public init(default defaultValue: Value) {
        self.defaultValue = defaultValue
        self.slot = greenThreadLocalSlots.add(1, ordering: .relaxed).oldValue
        pthread_key_create(&key) { raw in
            Unmanaged<AnyObject>.fromOpaque(raw!).release()
        }
    }

    deinit { pthread_key_delete(key) }

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
                GreenThread.current.locals[slot] = newValue
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
