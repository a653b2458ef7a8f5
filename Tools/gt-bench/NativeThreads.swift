// NativeThreads: the peers users would pick instead of green threads, as
// small wrappers: POSIX threads (with a condition-variable gate and CPU
// pinning) and a bridge that runs Swift-concurrency code to completion
// from synchronous code.
import Dispatch
import Foundation
import Glibc

/// Holds a closure across pthread_create's C boundary.
private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

enum PThread {
    /// Starts an OS thread with the system's default attributes (8 MiB
    /// stack under the default `ulimit -s`); nil when pthread_create fails.
    static func start(_ body: @escaping () -> Void) -> pthread_t? {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(box).release()
            return nil
        }
        return tid
    }

    static func join(_ tid: pthread_t) { pthread_join(tid, nil) }

    /// The CPUs this process may run on (Cpus_allowed_list in /proc/self/status).
    static func allowedCPUs() -> [Int] {
        let line = ProcMemory.read("/proc/self/status").split(separator: "\n")
            .first { $0.hasPrefix("Cpus_allowed_list:") }
        var cpus: [Int] = []
        for part in (line?.split(separator: ":").last ?? "").split(separator: ",") {
            let bounds = part.trimmingCharacters(in: .whitespaces).split(separator: "-").compactMap { Int($0) }
            if bounds.count == 2 { cpus += Array(bounds[0]...bounds[1]) } else if let c = bounds.first { cpus.append(c) }
        }
        return cpus.isEmpty ? [0] : cpus
    }

    /// sched_setaffinity, which the Glibc module does not export (it is a
    /// _GNU_SOURCE declaration): looked up once with dlsym.
    private typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
    private static let setAffinity: SetAffinity? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_setaffinity") else { return nil }  // RTLD_DEFAULT
        return unsafeBitCast(sym, to: SetAffinity.self)
    }()

    /// Pins the calling OS thread to `cpus`.
    @discardableResult
    static func pinCurrent(to cpus: [Int]) -> Bool {
        guard let setAffinity else { return false }
        var mask = [UInt64](repeating: 0, count: 16)
        for c in cpus where c < 1024 { mask[c / 64] |= 1 << UInt64(c % 64) }
        return mask.withUnsafeBytes { setAffinity(0, $0.count, $0.baseAddress!) } == 0
    }
}

/// A mutex and condition variable at stable addresses (they must not move).
final class PCondition: @unchecked Sendable {
    let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` with the mutex held.
    func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// With the mutex held: waits until `done()` holds.
    func wait(until done: () -> Bool) {
        while !done() { pthread_cond_wait(cond, mutex) }
    }

    func broadcast() { pthread_cond_broadcast(cond) }
    func signal() { pthread_cond_signal(cond) }
}

/// Runs async code to completion from synchronous code, on the default
/// (cooperative) executor, and returns its result.
func runOnCooperativePool<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let done = DispatchSemaphore(value: 0)
    let result = ResultBox<T>()
    Task.detached {
        result.value = await body()
        done.signal()
    }
    done.wait()
    return result.value!
}

/// Written once by a task before it signals; read after the signal.
final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

/// Sleeps the calling OS thread until the CLOCK_MONOTONIC time `deadline` (ns).
func sleepOSThread(until deadline: Int64) {
    var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
}
