// ExternalPeers: runs Tools/peers/run.sh (Go goroutines, Boost.Context,
// Boost.Fiber, pthreads from C++) beside gt-bench and turns its JSON lines
// into rows of the same groups, so one table holds every runtime. The peers
// summarize their own repetitions (median, min, max); the definitions are
// shared (Tools/peers/README.md). Missing script or toolchains: skipped
// with a message, never an error.
import Foundation

enum ExternalPeers {
    static let source = "Tools/peers"

    /// Finds run.sh: under the current directory, else beside this source tree.
    static func script() -> String? {
        let candidates = [
            FileManager.default.currentDirectoryPath + "/Tools/peers/run.sh",
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("peers/run.sh").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func run(quick: Bool, message: (String) -> Void) -> [Row] {
        guard let script = script() else {
            message("external peers skipped: Tools/peers/run.sh not found")
            return []
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script] + (quick ? ["--quick"] : [])
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError  // its progress and skip messages
        do { try process.run() } catch {
            message("external peers skipped: \(error)")
            return []
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            message("Tools/peers/run.sh exited with status \(process.terminationStatus); using the lines it printed")
        }
        let rows = String(decoding: data, as: UTF8.self).split(separator: "\n").flatMap { line -> [Row] in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return [] }
            return ExternalPeers.rows(from: object)
        }
        if rows.isEmpty { message("external peers: no figures (toolchains missing? see Tools/peers/README.md)") }
        return rows
    }

    static func rows(from o: [String: Any]) -> [Row] {
        guard let peer = o["peer"] as? String, let workload = o["workload"] as? String else { return [] }
        let variant = o["variant"] as? String
        func spread(_ key: String, scale: Double = 1) -> Spread? {
            guard let m = number(o[key]) else { return nil }
            return Spread(median: m * scale, min: (number(o[key + "_min"]) ?? m) * scale,
                          max: (number(o[key + "_max"]) ?? m) * scale, reps: Int(number(o["reps"]) ?? 1))
        }
        switch workload {
        case "spawn":
            guard let n = number(o["n"]).map({ Int($0) }) else { return [] }
            let size = sizeLabel(n)
            let runtime = label(peer)
            if let error = o["error"] as? String {
                return [Row(group: "spawn+join \(size), all alive", runtime: runtime, metric: "ms", error: error, source: source)]
            }
            var rows: [Row] = []
            if let s = spread("seconds", scale: 1000) {
                rows.append(Row(group: "spawn+join \(size), all alive", runtime: runtime, metric: "ms", spread: s, source: source))
            }
            if let s = spread("rss_per_thread_bytes") {
                rows.append(Row(group: "RSS per live thread, \(size)", runtime: runtime, metric: "B/thread", spread: s, source: source))
            }
            return rows
        case "switch":
            guard let s = spread("ns_per_switch") else { return [] }
            // Channel ping-pongs sit with GreenChannel, the rest with yield.
            let group = (variant ?? "").contains("chan") ? SyncBenchmarks.channelGroup : SwitchBenchmark.group
            return [Row(group: group, runtime: label(peer) + " " + (variant ?? ""), metric: "ns",
                        spread: s, source: source)]
        case "mutex":
            guard let s = spread("ns_per_op") else { return [] }
            let group = variant == "contended" ? SyncBenchmarks.contendedGroup : SyncBenchmarks.uncontendedGroup
            return [Row(group: group, runtime: label(peer), metric: "ns/op", spread: s, source: source)]
        default:
            return []
        }
    }

    static func label(_ peer: String) -> String {
        switch peer {
        case "go": return "Go goroutines"
        case "boost-fiber": return "Boost.Fiber"
        case "boost-context": return "Boost.Context"
        case "pthread": return "pthread (C++)"
        default: return peer
        }
    }

    private static func number(_ any: Any?) -> Double? {
        if let d = any as? Double { return d }
        if let i = any as? Int { return Double(i) }
        if let n = any as? NSNumber { return n.doubleValue }
        return nil
    }
}
