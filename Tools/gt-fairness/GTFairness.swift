// gt-fairness: how evenly GreenThreads shares the CPU, beside POSIX threads
// (CFS) and Swift tasks running the same scenarios (Scenarios.swift): CPU
// shares per thread, Jain's fairness index, max/min ratio, starved threads,
// preemptions taken and deferred, the worst scheduling delay, and for mixed
// priorities what each level got. `--timeline out.svg` draws one run as a
// Gantt chart (Timeline.swift).
//
// Window: every run measures until the process has used enough CPU time
// for each thread to get `--rounds` time slices (N x slice of CPU per round,
// the slice taken as at least 4 ms, the kernel tick that rounds CPU-time
// timers here), at least --min-cpu seconds of CPU and at most --max-seconds
// of wall time. Measuring CPU rather than wall time keeps the number of
// rounds the same when other processes take our CPUs away.
import ArgumentParser
import Foundation
import GTToolSupport
import GreenThreads

struct GTFairness: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gt-fairness",
        abstract: "CPU fairness of GreenThreads beside pthreads (CFS) and Swift tasks: Jain's index, shares, delays.")

    @Flag(help: "Small scenarios only (N up to 100, short windows): under a minute.")
    var quick = false

    @Flag(help: "Print the results as JSON on stdout instead of the tables.")
    var json = false

    @Flag(help: "Rewrite the gt-fairness section of the Markdown file (see --markdown-file).")
    var markdown = false

    @Option(help: "The file --markdown rewrites.")
    var markdownFile = "docs/benchmarks.md"

    @Option(help: "Write an SVG timeline of one GreenThreads run (see --timeline-scenario) to this path.")
    var timeline: String?

    @Option(help: "Scenario drawn by --timeline.")
    var timelineScenario: String = ScenarioKind.priority.rawValue

    @Option(help: "N for the --timeline run.")
    var timelineThreads = 4

    @Option(help: "Window of the --timeline run, in seconds.")
    var timelineSeconds = 0.2

    @Option(help: "Scenarios (comma-separated: \(ScenarioKind.allCases.map(\.rawValue).joined(separator: ","))).",
            transform: { try $0.split(separator: ",").map { s in
                guard let k = ScenarioKind(rawValue: String(s)) else { throw ValidationError("unknown scenario \(s)") }
                return k
            } })
    var scenarios: [ScenarioKind]?

    @Option(help: "Thread counts (comma-separated; default 2,10,100,1000,10000, or 2,10,100 with --quick).",
            transform: { try $0.split(separator: ",").map { s in
                guard let n = Int(s), n > 0 else { throw ValidationError("bad count \(s)") }
                return n
            } })
    var threads: [Int]?

    @Option(help: "Runtimes (comma-separated: green,pthread,tasks).",
            transform: { try $0.split(separator: ",").map { s in
                guard let r = Runtime(rawValue: String(s)) else { throw ValidationError("unknown runtime \(s)") }
                return r
            } })
    var runtimes: [Runtime] = Runtime.allCases

    @Option(help: "Time slices each thread should get in the window (default 6, or 4 with --quick).")
    var rounds: Double?

    @Option(help: "Least CPU time a window lasts for, seconds (default 1, or 0.5 with --quick).")
    var minCpu: Double?

    @Option(help: "Longest window, wall-clock seconds.")
    var maxSeconds = 150.0

    @Option(help: "Largest N run on pthreads: N spinning OS threads take the whole machine from everything else.")
    var maxOSThreads = 1000

    @Option(help: "GreenThreads time slice in milliseconds.")
    var sliceMs = 1

    @Option(help: "GreenThreads workers (default: the usable CPUs).")
    var workers: Int?

    @Option(help: "A pause longer than this (microseconds) between a thread's own clock readings counts as being switched out.")
    var gapMicroseconds = 20.0

    mutating func run() throws {
        let started = monotonicNanoseconds()
        let workers = self.workers ?? KernelConfiguration.usableCPUs
        let say: (String) -> Void = { FileHandle.standardError.write(Data("gt-fairness: \($0)\n".utf8)) }

        if let path = timeline {
            try drawTimeline(to: path, workers: workers, say: say)
            if scenarios == nil && threads == nil && !quick { return }
        }

        let kinds = scenarios ?? ScenarioKind.allCases
        let sizes = threads ?? (quick ? [2, 10, 100] : [2, 10, 100, 1000, 10_000])
        var results: [RunSummary] = []
        for kind in kinds {
            for n in self.sizes(for: kind, from: sizes) {
                let plan = ScenarioPlan.make(kind, n: n)
                let settings = self.settings(for: plan, workers: workers)
                for runtime in runtimes {
                    if runtime == .pthread && plan.threads.count > maxOSThreads {
                        say("\(kind.rawValue) N=\(n) on pthreads skipped: more than --max-os-threads \(maxOSThreads) spinning OS threads "
                            + "starve every other process on the machine for the whole window")
                        continue
                    }
                    say(String(format: "%@ N=%d on %@, window %.2f s of CPU", kind.rawValue, n, runtime.label, settings.cpuSeconds))
                    let outcome = try run(plan, on: runtime, settings)
                    let summary = RunSummary(plan: plan, outcome: outcome)
                    results.append(summary)
                    if !json { say(FairnessReport.line(summary)) }
                }
            }
        }
        let report = FairnessReport(machine: Machine.current(usableCPUs: KernelConfiguration.usableCPUs),
                                    date: isoDate(), command: reproducingCommand(tool: "gt-fairness"),
                                    sliceMs: sliceMs, workers: workers, runs: results,
                                    seconds: Double(monotonicNanoseconds() - started) / 1e9)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.terminalText)
        }
        if markdown {
            try rewriteMarkdownSection(file: markdownFile, name: "gt-fairness", body: report.markdown)
            say("rewrote the gt-fairness section of \(markdownFile)")
        }
    }

    /// Scenarios whose threads sleep, block or allocate stop at 1,000 threads;
    /// the priority scenario uses the sizes up to 100 (N normal spinners).
    func sizes(for kind: ScenarioKind, from all: [Int]) -> [Int] {
        switch kind {
        case .spin: return all
        case .alloc, .mixed: return all.filter { $0 <= 1000 && $0 >= 2 }
        case .priority, .inversion: return all.filter { $0 <= 100 && $0 >= 2 }
        }
    }

    func settings(for plan: ScenarioPlan, workers: Int) -> RunSettings {
        let effectiveSlice = max(Double(sliceMs) / 1000, 0.004)
        let rounds = self.rounds ?? (quick ? 4 : 6)
        let minimum = minCpu ?? (quick ? 0.5 : 1)
        let cpu = max(minimum, rounds * Double(plan.threads.count) * effectiveSlice)
        return RunSettings(cpuSeconds: cpu, maxSeconds: maxSeconds, gapTicks: TSC.ticks(seconds: gapMicroseconds / 1e6), workers: workers,
                           sliceMilliseconds: sliceMs,
                           intervalCapacity: max(64, min(8192, 4_000_000 / plan.threads.count)))
    }

    func run(_ plan: ScenarioPlan, on runtime: Runtime, _ settings: RunSettings) throws -> RunOutcome {
        switch runtime {
        case .green: return try GreenRunner.run(plan, settings)
        case .pthread: return try PThreadRunner.run(plan, settings)
        case .tasks: return try TaskRunner.run(plan, settings)
        }
    }

    func drawTimeline(to path: String, workers: Int, say: (String) -> Void) throws {
        guard let kind = ScenarioKind(rawValue: timelineScenario) else {
            throw ValidationError("unknown --timeline-scenario \(timelineScenario)")
        }
        let plan = ScenarioPlan.make(kind, n: timelineThreads)
        var settings = self.settings(for: plan, workers: workers)
        settings.cpuSeconds = timelineSeconds * Double(workers)
        settings.maxSeconds = timelineSeconds
        settings.intervalCapacity = 20_000
        say("timeline: \(kind.rawValue) N=\(timelineThreads) on GreenThreads, \(workers) workers, \(sliceMs) ms slice")
        let outcome = try GreenRunner.run(plan, settings)
        let summary = RunSummary(plan: plan, outcome: outcome)
        let title = "GreenThreads, \(kind.rawValue) N=\(timelineThreads): \(workers) workers, \(sliceMs) ms slice"
            + String(format: ", Jain %.3f", summary.jain)
        try Timeline.svg(plan: plan, outcome: outcome, title: title, subtitle: kind.summary).write(toFile: path, atomically: true, encoding: .utf8)
        say("wrote \(path): \(FairnessReport.line(summary))")
    }
}
