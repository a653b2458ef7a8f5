// Runs one scenario of the gt-test-host executable in a child process with a
// timeout. Everything that starts a kernel or arms signals runs this way, so
// a deadlock, a crash or a stray signal fails one test with its output
// instead of hanging or killing the test runner.
import Foundation
import Testing

struct HostResult: CustomStringConvertible {
    var status: Int32
    var signaled: Bool
    var timedOut: Bool
    var stdout: String
    var stderr: String
    var elapsed: Duration
    /// Where the whole output of a timed-out child was kept (the description shows only its end).
    var keptOutput: String? = nil

    var succeeded: Bool { !timedOut && !signaled && status == 0 }
    /// Succeeded and printed "OK": the scenario's own checks passed.
    var isOK: Bool { succeeded && stdout.contains("OK") }

    var description: String {
        let how = timedOut ? "timed out" : signaled ? "killed by signal \(status)" : "exit status \(status)"
        let kept = keptOutput.map { " (whole output kept in \($0))" } ?? ""
        return "\(how) after \(elapsed)\(kept)\n--- stdout ---\n\(stdout.suffix(4000))\n--- stderr ---\n\(stderr.suffix(4000))"
    }

    /// The value of a `key=value` line the scenario printed.
    func value(_ key: String) -> String? {
        for line in stdout.split(separator: "\n") where line.hasPrefix(key + "=") {
            return String(line.dropFirst(key.count + 1))
        }
        return nil
    }

    func number(_ key: String) -> Double? { value(key).flatMap(Double.init) }
}

enum Host {
    static var executable: URL { executable(named: "gt-test-host") }

    /// An executable of this package, built beside the test bundle.
    static func builtProgram(_ name: String) -> URL { executable(named: name) }

    /// A host executable built beside the test runner: gt-test-host, or
    /// gt-async-host (the Swift 6 mode scenarios of issue 14).
    static func executable(named name: String) -> URL {
        // CI runs the preemption suites again against a host built with
        // --static-swift-stdlib (Tools/ci-static.sh): GT_TEST_HOST names it.
        if name == "gt-test-host", let path = ProcessInfo.processInfo.environment["GT_TEST_HOST"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return me.deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Runs `<host> <scenario> <arguments>`; kills it after `timeout`.
    static func run(_ scenario: String, _ arguments: [String] = [],
                    environment: [String: String] = [:],
                    timeout: Duration = .seconds(60),
                    host: String = "gt-test-host") throws -> HostResult {
        try run(program: executable(named: host), [scenario] + arguments, environment: environment, timeout: timeout)
    }

    /// Runs `program <arguments>`; kills it after `timeout`.
    static func run(program: URL, _ arguments: [String],
                    environment: [String: String] = [:],
                    timeout: Duration = .seconds(60)) throws -> HostResult {
        let process = Process()
        process.executableURL = program
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        // A crash should print our report, not wait for Swift's backtracer.
        env["SWIFT_BACKTRACE"] = "enable=no"
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let dir = FileManager.default.temporaryDirectory
        let outURL = dir.appendingPathComponent("gt-host-\(UUID().uuidString).out")
        let errURL = dir.appendingPathComponent("gt-host-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let clock = ContinuousClock()
        let start = clock.now
        try process.run()
        var timedOut = false
        var osThreads = ""
        while process.isRunning {
            if clock.now - start > timeout {
                timedOut = true
                osThreads = osThreadStates(process.processIdentifier)
                // A hang should leave evidence: with GT_DUMP_ON=SIGQUIT the
                // child prints every green thread's trace and goes on.
                if env["GT_DUMP_ON"]?.uppercased() == "SIGQUIT" {
                    kill(process.processIdentifier, SIGQUIT)
                    let asked = clock.now
                    while process.isRunning && clock.now - asked < .seconds(3) { Thread.sleep(forTimeInterval: 0.05) }
                }
                kill(process.processIdentifier, SIGKILL)
                break
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        process.waitUntilExit()
        try out.close()
        try err.close()
        let stdout = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        var kept: String? = nil
        if timedOut {
            let path = dir.appendingPathComponent("gt-host-timeout-\(process.processIdentifier).txt").path
            let text = "\(program.lastPathComponent) \(arguments.joined(separator: " "))\n"
                + "--- OS threads at the timeout ---\n\(osThreads)--- stdout ---\n\(stdout)\n--- stderr ---\n\(stderr)"
            if FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) { kept = path }
        }
        return HostResult(status: process.terminationStatus,
                          signaled: process.terminationReason == .uncaughtSignal,
                          timedOut: timedOut, stdout: stdout, stderr: stderr,
                          elapsed: clock.now - start, keptOutput: kept)
    }

    /// One line per OS thread of `pid`: name, scheduler state (R: running
    /// or runnable, S: sleeping), the kernel function it sleeps in and its
    /// system call with arguments (a futex address shows who waits on what).
    /// Taken before a hung child is killed: spinning and sleeping hangs
    /// look alike from outside.
    static func osThreadStates(_ pid: Int32) -> String {
        let dir = "/proc/\(pid)/task"
        guard let tids = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return "(no /proc)\n" }
        func read(_ path: String) -> String {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return tids.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.map { tid in
            let stat = read("\(dir)/\(tid)/stat")
            // The state follows the parenthesized name, which may hold spaces.
            let state = stat.split(separator: ")").last?.split(separator: " ").first.map(String.init) ?? "?"
            return "\(tid) \(read("\(dir)/\(tid)/comm")) \(state) wchan=\(read("\(dir)/\(tid)/wchan")) syscall=\(read("\(dir)/\(tid)/syscall"))\n"
        }.joined()
    }

    /// Runs a scenario whose own check is a measurement that another
    /// process on this shared machine can spoil (an OS thread denied its
    /// CPU for a few milliseconds): up to `attempts` runs, returning the
    /// first that succeeds. A hang or a crash is never load: it fails at once.
    @discardableResult
    static func expectOKMeasured(_ scenario: String, _ arguments: [String] = [],
                                 attempts: Int = 3, timeout: Duration = .seconds(60),
                                 sourceLocation: SourceLocation = #_sourceLocation) throws -> HostResult {
        var result = try run(scenario, arguments, timeout: timeout)
        var runs = 1
        while runs < attempts && !result.isOK && !result.timedOut && !result.signaled {
            result = try run(scenario, arguments, timeout: timeout)
            runs += 1
        }
        #expect(result.isOK, "\(scenario), \(runs) runs: \(result)",
                sourceLocation: sourceLocation)
        return result
    }

    /// Runs a scenario that must succeed and print "OK".
    @discardableResult
    static func expectOK(_ scenario: String, _ arguments: [String] = [],
                         environment: [String: String] = [:],
                         timeout: Duration = .seconds(60),
                         host: String = "gt-test-host",
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> HostResult {
        let result = try run(scenario, arguments, environment: environment, timeout: timeout, host: host)
        #expect(result.isOK, "\(scenario): \(result)",
                sourceLocation: sourceLocation)
        return result
    }
}
