// gt-async-host: the scenarios of the async bridge (issue 14), in Swift 6
// language mode, each run in its own process by the tests (like
// gt-test-host). Usage: gt-async-host <scenario> [--name value ...]. A
// scenario prints `key=value` lines for the test to check, and "OK" when
// its own checks passed. Shared state goes through GreenLocked or atomics:
// the compiler checks every crossing.
import GreenThreads
@preconcurrency import Glibc

setvbuf(stdout, nil, _IOLBF, 0)
let scenarios: [String: Scenario] = [
    awaitScenarios, lockedScenarios, backgroundScenarios, cancellationScenarios, costScenarios,
].reduce(into: [:]) { all, part in all.merge(part) { a, _ in a } }

let name = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : ""
guard let scenario = scenarios[name] else {
    print("unknown scenario '\(name)'; known: \(scenarios.keys.sorted().joined(separator: ", "))")
    exit(2)
}
do {
    switch scenario {
    case .sync(let run): try run()        // on the main thread, like a program's main
    case .async(let run): try await run() // a task, as an async main runs
    }
} catch {
    print("ERROR: \(error)")
    exit(3)
}
