// RunProvenance: what gt-bench and gt-fairness record beside every result
// (the machine, the date, the command that reproduces the run) and how they
// share docs/benchmarks.md (each rewrites only its own marked section).
import Foundation

/// The machine a run was measured on.
public struct Machine: Codable, Sendable {
    public var onlineCPUs: Int
    public var usableCPUs: Int
    public var cpuModel: String
    public var kernel: String
    public var swift: String

    public static func current(usableCPUs: Int) -> Machine {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return Machine(onlineCPUs: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), usableCPUs: usableCPUs,
                       cpuModel: model, kernel: release, swift: swiftVersion())
    }

    private static func swiftVersion() -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["swift", "--version"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return "unknown" }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n")
            .first { $0.contains("Swift version") }.map(String.init) ?? "unknown"
    }

    public var summary: String {
        "\(onlineCPUs) CPUs online (\(usableCPUs) usable), \(cpuModel), Linux \(kernel), \(swift)"
    }
}

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`
/// in a Markdown file (appending the section when it is absent), so that
/// gt-bench, gt-fairness and hand-written analysis share one file.
public func rewriteMarkdownSection(file: String, name: String, body: String) throws {
    let begin = "<!-- \(name):begin -->", end = "<!-- \(name):end -->"
    let section = "\(begin)\n\(body)\n\(end)"
    var text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? "# Benchmarks\n"
    if let b = text.range(of: begin), let e = text.range(of: end, range: b.upperBound..<text.endIndex) {
        text.replaceSubrange(b.lowerBound..<e.upperBound, with: section)
    } else {
        if !text.hasSuffix("\n") { text += "\n" }
        text += "\n" + section + "\n"
    }
    try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent,
                                            withIntermediateDirectories: true)
    try text.write(toFile: file, atomically: true, encoding: .utf8)
}

/// The command line that reproduces this run, including how it was built
/// (read off the executable's path: .../<scratch>/<triple>/<config>/<tool>).
public func reproducingCommand(tool: String) -> String {
    let args = CommandLine.arguments.dropFirst().joined(separator: " ")
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().pathComponents
    let cwd = FileManager.default.currentDirectoryPath
    guard exe.count >= 4, ["release", "debug"].contains(exe[exe.count - 2]) else {
        return tool + (args.isEmpty ? "" : " " + args)
    }
    let scratchPath = exe.dropLast(3).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
    let scratch = scratchPath.hasPrefix(cwd + "/") ? String(scratchPath.dropFirst(cwd.count + 1)) : scratchPath
    let scratchFlag = scratch == ".build" ? "" : " --scratch-path \(scratch)"
    return "swift run -c \(exe[exe.count - 2])\(scratchFlag) \(tool)" + (args.isEmpty ? "" : " " + args)
}

/// Now, as an ISO 8601 timestamp.
public func isoDate() -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    return f.string(from: Date())
}
