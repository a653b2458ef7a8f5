// gt-test-host: runs one test scenario in its own process, so that tests of
// a kernel (which arms signals and may deadlock or crash on a bug) fail one
// at a time with their output. Usage: gt-test-host <scenario> [options].
// A scenario prints `key=value` lines for the test to check, and "OK" when
// its own assertions passed.
import CGreenCore
import GreenThreads
@_exported import GTHostSupport  // check, option, intOption: for every scenario file
@preconcurrency import Glibc  // stdout: a C global, set up here before any thread starts

/// A scenario: runs on the main thread, which `Kernel.run` takes over as a
/// program's main would. Sendable, so that the compiler checks what every
/// scenario shares between threads (Swift 6 language mode).
typealias Scenario = @Sendable () throws -> Void

/// Turns off one hazard fix (`--disable-fix errno`) to show the test fails without it.
func applyFixOptions() {
    if let fix = option("disable-fix") {
        let old = gt_fix_set(fix, 0)
        check(old != -2, "--disable-fix needs a debug build of the test host (release builds compile the switches out)")
        check(old >= 0, "unknown fix \(fix)")
    }
}

// Each area keeps its scenarios in its own file.
let scenarios: [String: Scenario] = [
    foundationScenarios, stackScenarios, microScenarios, preemptionScenarios, syncScenarios, debugScenarios, benchmarkScenarios,
    foreignLockScenarios, ioScenarios, schedulerScenarios, waitScenarios,
].reduce(into: [:]) { all, part in all.merge(part) { a, _ in a } }

setvbuf(stdout, nil, _IOLBF, 0)
let name = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : ""
guard let scenario = scenarios[name] else {
    print("unknown scenario '\(name)'; known: \(scenarios.keys.sorted().joined(separator: ", "))")
    exit(2)
}
applyFixOptions()
do {
    try scenario()
} catch {
    print("ERROR: \(error)")
    exit(3)
}
