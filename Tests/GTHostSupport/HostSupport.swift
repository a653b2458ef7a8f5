// What both test hosts (gt-test-host, gt-async-host) give their scenarios:
// a check that stops the process with a message the test shows, and
// `--name value` options from the command line.
@preconcurrency import Glibc  // stdout: a C global, only flushed here

/// Stops the scenario with a message the test shows.
public func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                  file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        print("CHECK FAILED at \(file):\(line): \(message())")
        fflush(stdout)
        exit(1)
    }
}

/// `--name value` from the command line.
public func option(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: "--" + name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

public func intOption(_ name: String, _ fallback: Int) -> Int { option(name).flatMap { Int($0) } ?? fallback }
