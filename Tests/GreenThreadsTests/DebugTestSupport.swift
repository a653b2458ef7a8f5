// Helpers for the debug tests: a scenario process that keeps running while
// a test inspects it (LiveHost), running the gt-ps tool, and a raw socket
// client for sending malformed requests.
import Foundation
import Glibc
import Testing

/// A child process's stdout and stderr, captured in files (a pipe could
/// fill up and stall the child while the test waits for it).
final class CapturedOutput {
    private let out: URL
    private let err: URL

    init() {
        let tag = UUID().uuidString.prefix(8)
        out = URL(fileURLWithPath: "/tmp/gt-out-\(tag).out")
        err = URL(fileURLWithPath: "/tmp/gt-out-\(tag).err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    }

    /// Points the process's output at the files and its input at /dev/null.
    func attach(to process: Process) throws {
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
    }

    var stdout: String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: err, encoding: .utf8)) ?? "" }

    func remove() {
        try? FileManager.default.removeItem(at: out)
        try? FileManager.default.removeItem(at: err)
    }
}

/// A gt-test-host scenario that runs until the test is done with it. It
/// serves snapshots in a socket directory of its own, prints "ready pid=N"
/// when its threads are in place, and ends when `stopFile` appears.
final class LiveHost {
    let process = Process()
    let socketDirectory: String
    let stopFile: String
    private let output = CapturedOutput()

    var pid: Int32 { process.processIdentifier }
    var socketPath: String { socketDirectory + "/\(pid).sock" }
    var stdout: String { output.stdout }
    var stderr: String { output.stderr }
    /// The environment tools need to find this process's socket.
    var toolEnvironment: [String: String] { ["GT_DEBUG_SOCKET_DIR": socketDirectory] }

    init(_ scenario: String, _ arguments: [String] = [], environment: [String: String] = [:],
         readyTimeout: Duration = .seconds(30)) throws {
        let tag = UUID().uuidString.prefix(8)
        socketDirectory = "/tmp/gt-test-\(tag)"  // created 0700 by the server
        stopFile = "/tmp/gt-test-\(tag).stop"
        process.executableURL = Host.executable
        process.arguments = [scenario, "--stop-file", stopFile] + arguments
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"
        env["GT_DEBUG_SOCKET_DIR"] = socketDirectory
        for (k, v) in environment { env[k] = v }
        process.environment = env
        try output.attach(to: process)
        try process.run()
        let clock = ContinuousClock()
        let start = clock.now
        while !stdout.contains("ready pid=") {
            guard process.isRunning, clock.now - start < readyTimeout else {
                let why = process.isRunning ? "not ready after \(readyTimeout)" : "exited early"
                kill()
                throw HostError("\(scenario) \(why)\n--- stdout ---\n\(stdout)\n--- stderr ---\n\(stderr)")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Asks the scenario to end and waits for it; returns whether it exited 0.
    @discardableResult
    func finish(timeout: Duration = .seconds(20)) -> Bool {
        _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
        let clock = ContinuousClock()
        let start = clock.now
        while process.isRunning && clock.now - start < timeout { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill() }
        process.waitUntilExit()
        cleanUp()
        return process.terminationReason == .exit && process.terminationStatus == 0
    }

    func kill() {
        if process.isRunning { Glibc.kill(pid, SIGKILL) }
        process.waitUntilExit()
        cleanUp()
    }

    private func cleanUp() {
        output.remove()
        try? FileManager.default.removeItem(atPath: stopFile)
        try? FileManager.default.removeItem(atPath: socketDirectory)
    }

    deinit { if process.isRunning { kill() } }
}

struct HostError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct ToolResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var description: String { "exit \(status)\n--- stdout ---\n\(stdout)\n--- stderr ---\n\(stderr)" }
}

enum Tool {
    /// A product built next to the test host (`gt-ps`).
    static func path(_ name: String) -> String {
        Host.executable.deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Runs `command` (e.g. [gt-ps, pid]) and returns its output.
    static func run(_ command: [String], environment: [String: String] = [:],
                    timeout: Duration = .seconds(30)) throws -> ToolResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = nil
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let output = CapturedOutput()
        defer { output.remove() }
        try output.attach(to: process)
        try process.run()
        let clock = ContinuousClock()
        let start = clock.now
        while process.isRunning && clock.now - start < timeout { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return ToolResult(status: process.terminationStatus, stdout: output.stdout, stderr: output.stderr)
    }

    static func gtPS(_ arguments: [String], host: LiveHost) throws -> ToolResult {
        try run([path("gt-ps")] + arguments, environment: host.toolEnvironment)
    }
}

/// A raw client: sends `bytes` on a new connection (optionally pausing
/// after them) and returns what the server answered before closing.
enum RawClient {
    static func exchange(_ path: String, _ bytes: [UInt8], pauseAfter: Double = 0, timeout: Double = 5) -> [UInt8] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8))
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { return [] }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if !bytes.isEmpty { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        if pauseAfter > 0 { Thread.sleep(forTimeInterval: pauseAfter) }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            answer += chunk[0..<n]
        }
        return answer
    }
}

/// SplitMix64: a small seeded generator, so a failing fuzz case can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
