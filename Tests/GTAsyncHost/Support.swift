// Helpers shared by the scenarios: checks that stop the process with a
// message, command-line options, and a monotonic clock in milliseconds.
@preconcurrency import Glibc
import Synchronization

/// A scenario: synchronous ones run on the main thread (Kernel.run takes
/// it over as a program's main would), async ones in a task.
enum Scenario: Sendable {
    case sync(@Sendable () throws -> Void)
    case async(@Sendable () async throws -> Void)
}

/// Stops the scenario with a message the test shows.
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
           file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        print("CHECK FAILED at \(file):\(line): \(message())")
        fflush(stdout)
        exit(1)
    }
}

/// `--name value` from the command line.
func option(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: "--" + name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

func intOption(_ name: String, _ fallback: Int) -> Int { option(name).flatMap { Int($0) } ?? fallback }

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
