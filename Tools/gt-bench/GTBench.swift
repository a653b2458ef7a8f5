// gt-bench: GreenThreads measured side by side with what users would pick
// instead (POSIX threads, Swift tasks, and through Tools/peers Go, Boost.Fiber
// and Boost.Context), in one run on one machine. Every figure is the median
// of several repetitions with the spread, and a ratio against the group's
// reference row measured in the same run (BRIEF.md, Targets).
//
//   gt-bench                 full run, terminal table
//   gt-bench --quick         everything small (CI smoke test, under a minute)
//   gt-bench --json          the report as JSON on stdout
//   gt-bench --markdown      also rewrite the gt-bench section of docs/benchmarks.md
//   gt-bench --peers         also run Tools/peers/run.sh and merge its figures
import ArgumentParser
import Foundation
import GTToolSupport
import GreenThreads

enum Workload: String, CaseIterable, ExpressibleByArgument {
    case spawn, switching = "switch", mutex, channel, preemption, wakeup, mixed
}

struct GTBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gt-bench",
        abstract: "Benchmarks GreenThreads against OS threads, Swift tasks and external peers, as ratios from one run.")

    @Flag(help: "Run every workload small: a CI smoke test under a minute.")
    var quick = false

    @Flag(help: "Print the report as JSON on stdout instead of the table.")
    var json = false

    @Flag(help: "Rewrite the gt-bench section of the Markdown file (see --markdown-file).")
    var markdown = false

    @Option(help: "The file --markdown rewrites.")
    var markdownFile = "docs/benchmarks.md"

    @Flag(help: "Run the external peers (Tools/peers/run.sh: Go, Boost, C++ pthreads) and merge their figures.")
    var peers = false

    @Option(help: "Repetitions of each figure (default 5, or 3 with --quick).")
    var reps: Int?

    @Option(help: "Only these workloads (comma-separated: \(Workload.allCases.map(\.rawValue).joined(separator: ","))).",
            transform: { try $0.split(separator: ",").map { s in
                guard let w = Workload(rawValue: String(s)) else { throw ValidationError("unknown workload \(s)") }
                return w
            } })
    var only: [Workload]?

    @Option(help: "Spawn sizes (comma-separated; default 10000,100000,1000000, or 10000 with --quick).",
            transform: { try $0.split(separator: ",").map { s in
                guard let n = Int(s), n > 0 else { throw ValidationError("bad size \(s)") }
                return n
            } })
    var spawnSizes: [Int]?

    @Option(help: .hidden) var spawnChild: String?
    @Option(help: .hidden) var spawnN: Int?

    mutating func run() throws {
        if let child = spawnChild {
            guard let runtime = SpawnRuntime(rawValue: child), let n = spawnN else {
                throw ValidationError("--spawn-child needs green|pthread|tasks and --spawn-n")
            }
            let result = SpawnBenchmark.child(runtime, n: n)
            let data = try JSONEncoder().encode(result)
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let started = monotonicNanoseconds()
        let reps = max(1, self.reps ?? (quick ? 3 : 5))
        let selected = Set(only ?? Workload.allCases)
        let progress: (String) -> Void = { message in
            FileHandle.standardError.write(Data("gt-bench: \(message)\n".utf8))
        }
        progress("calibrated \(Int(burnStepsPerMicrosecond)) work steps per microsecond")
        var rows: [Row] = []

        if selected.contains(.spawn) {
            let sizes = spawnSizes ?? (quick ? [10_000] : [10_000, 100_000, 1_000_000])
            rows += SpawnBenchmark.run(sizes: sizes, pthreadMax: 100_000, reps: reps, timeout: 300, progress: progress)
        }
        if selected.contains(.switching) {
            rows += try SwitchBenchmark.run(rounds: quick ? 100_000 : 1_000_000, reps: reps, progress: progress)
        }
        if selected.contains(.mutex) {
            rows += try SyncBenchmarks.runMutex(iterations: quick ? 1_000_000 : 10_000_000, reps: reps, progress: progress)
        }
        if selected.contains(.channel) {
            rows += try SyncBenchmarks.runChannel(rounds: quick ? 100_000 : 1_000_000, reps: reps, progress: progress)
        }
        if selected.contains(.preemption) {
            rows += try PreemptionBenchmark.run(workMilliseconds: quick ? 300 : 2000, reps: reps, progress: progress)
            rows += try MachineBenchmark.run(spinners: quick ? 1000 : 10_000, reps: reps, progress: progress)
        }
        if selected.contains(.wakeup) {
            rows += try WakeupLatencyBenchmark.run(rounds: quick ? 100 : 1000, periodMicroseconds: 3000,
                                                   reps: reps, progress: progress)
        }
        if selected.contains(.mixed) {
            rows += try MixedWorkloadBenchmark.run(seconds: quick ? 0.5 : 3, reps: quick ? 1 : reps, progress: progress)
        }
        if peers {
            rows += ExternalPeers.run(quick: quick, message: progress)
        }
        let report = Report(machine: Machine.current(usableCPUs: KernelConfiguration.usableCPUs),
                            date: isoDate(), command: reproducingCommand(tool: "gt-bench"),
                            rows: sortedForReading(rows),
                            seconds: Double(monotonicNanoseconds() - started) / 1e9)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.terminalTable)
        }
        if markdown {
            try rewriteMarkdownSection(file: markdownFile, name: "gt-bench", body: report.markdown)
            progress("rewrote the gt-bench section of \(markdownFile)")
        }
    }

    /// Keeps each group together (in-process rows first, then the peers'),
    /// groups in the order they were first measured.
    private func sortedForReading(_ rows: [Row]) -> [Row] {
        var order: [String] = []
        for r in rows where !order.contains(r.group) { order.append(r.group) }
        return order.flatMap { g in
            rows.filter { $0.group == g && $0.source != ExternalPeers.source }
                + rows.filter { $0.group == g && $0.source == ExternalPeers.source }
        }
    }
}
