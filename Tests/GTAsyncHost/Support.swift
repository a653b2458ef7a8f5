// Helpers shared by the scenarios: a monotonic clock in milliseconds and
// shared flags (check and the options come from GTHostSupport).
@_exported import GTHostSupport
import Glibc
import Synchronization

/// A scenario: synchronous ones run on the main thread (Kernel.run takes
/// it over as a program's main would), async ones in a task.
enum Scenario: Sendable {
    case sync(@Sendable () throws -> Void)
    case async(@Sendable () async throws -> Void)
}

/// Milliseconds on CLOCK_MONOTONIC.
func nowMilliseconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
}

/// A flag and a counter shared between threads (an Atomic is not copyable,
/// so closures capture this box).
final class SharedFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}

final class SharedCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// An error a scenario throws on purpose.
struct ScenarioError: Error, Equatable {
    var code: Int
}
