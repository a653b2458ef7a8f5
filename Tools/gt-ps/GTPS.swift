// gt-ps: lists the green threads of a running GreenThreads process, like
// `ps -L` / `top -H` for OS threads, and renders crash dumps. See
// docs/gt-ps.md.
//
// Exit status: 0 success; 1 --deadlocks found a wait-for cycle; 2 the
// process (or dump file) could not be read (no socket, refused, no answer).
import ArgumentParser
import Foundation
import GTSnapshot
import Glibc

extension ThreadState: ExpressibleByArgument {}

enum SortKey: String, ExpressibleByArgument, CaseIterable {
    case id, name, state, cpu, rate = "cpu%", pri, waited

    /// `a` before `b`: most first for quantities, ids as the tie-break.
    func ordered(_ a: ThreadSnapshot, _ b: ThreadSnapshot, _ c: TableContext) -> Bool {
        func waited(_ t: ThreadSnapshot) -> Int64 {
            guard let since = t.wait?.sinceMonotonicNanoseconds, t.wait?.kind != "sleep" else { return -1 }
            return c.snapshot.monotonicNanoseconds - since
        }
        switch self {
        case .id: return a.id < b.id
        case .name: return (a.name, a.id) < (b.name, b.id)
        case .state: return (a.state.rawValue, a.id) < (b.state.rawValue, b.id)
        case .cpu: return (a.cpuTimeNanoseconds, b.id) > (b.cpuTimeNanoseconds, a.id)
        case .rate: return (c.cpuPercent[a.id] ?? -1, b.id) > (c.cpuPercent[b.id] ?? -1, a.id)
        case .pri: return (a.effectivePriority, b.id) > (b.effectivePriority, a.id)
        case .waited: return (waited(a), b.id) > (waited(b), a.id)
        }
    }
}

struct GTPS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gt-ps",
        abstract: "Show the green threads of a running GreenThreads program, or render a crash dump.",
        discussion: """
            Without a pid, lists this user's processes that serve GreenThreads snapshots. \
            With one, prints a table of its green threads: ID, NAME, STATE, PRI (base/effective, \
            * when raised by priority inheritance), WK (worker), CPU, SW (switches), \
            PRE (preemptions), WAIT (what it waits on, whose move it is, and the rest of the \
            owner chain), STACK (used/size); --format picks others (cpu%, waited, held). \
            --stacks groups identical stacks (--stacks=all: one per thread). \
            Exit status: 0 ok, 1 wait-for cycles found (--deadlocks), 2 cannot inspect.
            """)

    @Argument(help: "The process to inspect.")
    var pid: Int32?

    @Flag(help: "Print the stacks, threads with identical stacks grouped with their count (--stacks=all: each thread's under its row).")
    var stacks = false

    @Flag(name: .customLong("all-stacks"), help: ArgumentHelp(visibility: .hidden))
    var allStacks = false

    @Flag(help: "Print the snapshot's JSON as the process wrote it (GTSnapshot.KernelSnapshot).")
    var json = false

    @Option(help: ArgumentHelp("Refresh every <seconds>, like top: CPU% over each interval, busiest first; keys c/p/i/n/s/w sort, q quits.", valueName: "seconds"))
    var watch: Double?

    @Option(help: "Order of the rows: id, name, state, cpu, cpu% (most first), pri (highest effective first), waited (longest first).")
    var sort: SortKey?

    @Option(help: "Only threads in this state: ready, running, blocked, sleeping.")
    var state: ThreadState?

    @Option(help: ArgumentHelp("Only threads whose name matches: a glob (fnmatch) if it has * ? or [, else a substring.", valueName: "pattern"))
    var name: String?

    @Option(help: ArgumentHelp("At most this many rows (after sorting).", valueName: "n"))
    var limit: Int?

    @Option(help: ArgumentHelp("Columns, like ps -o: a comma list of \(TableColumn.all.map(\.key).joined(separator: ",")).", valueName: "columns"))
    var format: String?

    @Flag(help: "Print the wait-for cycles (deadlocks) with their traces; exit 1 if there are any.")
    var deadlocks = false

    @Flag(help: "Do not cut lines to the terminal width (80 columns in a pipe).")
    var wide = false

    @Flag(name: .customLong("no-lines"), help: "Do not look up file:line with addr2line.")
    var noLines = false

    @Option(help: ArgumentHelp("Render a crash dump (GT_DUMP_DIR/gt-<pid>.crash, or a saved stderr).", valueName: "file"))
    var dump: String?

    @Option(help: ArgumentHelp("Seconds to wait for the process's answer.", valueName: "seconds"))
    var timeout: Double = 10

    func validate() throws {
        if let dump {
            if pid != nil || watch != nil || json || deadlocks { throw ValidationError("--dump takes a file, not a pid, --watch, --json or --deadlocks") }
            if !FileManager.default.isReadableFile(atPath: dump) { throw ValidationError("cannot read \(dump)") }
            return
        }
        if watch != nil && pid == nil { throw ValidationError("--watch needs a pid") }
        if let watch, watch <= 0 { throw ValidationError("--watch needs a positive number of seconds") }
        if let limit, limit < 1 { throw ValidationError("--limit needs a positive number") }
        if pid == nil && (stacks || allStacks || json || deadlocks || state != nil || name != nil || limit != nil) {
            throw ValidationError("--stacks, --json, --state, --name, --limit and --deadlocks need a pid")
        }
        if watch != nil && (json || deadlocks) { throw ValidationError("--watch shows the table: not with --json or --deadlocks") }
        if let format { _ = try columns(format) }
    }

    private func columns(_ format: String) throws -> [TableColumn] {
        do { return try TableColumn.parse(format) } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        if let dump { return try renderDump(dump) }
        guard let pid else { return try listProcesses() }
        if let watch { return try Watch(command: self, pid: pid, interval: watch).run() }
        let (snapshot, raw) = try fetch(pid)
        if json {
            FileHandle.standardOutput.write(Data(raw))
            FileHandle.standardOutput.write(Data("\n".utf8))
            if deadlocks && !snapshot.waitGraph.cycles.isEmpty { throw ExitCode(1) }
        } else if deadlocks {
            if printDeadlocks(annotated(snapshot)) { throw ExitCode(1) }
        } else {
            for line in page(annotated(snapshot), context: nil) { print(line) }
        }
    }

    /// A snapshot (with stacks when they will be shown), or exit 2.
    func fetch(_ pid: Int32) throws -> (KernelSnapshot, ArraySlice<UInt8>) {
        do {
            return try SnapshotClient.snapshot(pid: pid, stacks: stacks || allStacks || deadlocks, timeout: timeout)
        } catch {
            FileHandle.standardError.write(Data("gt-ps: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    /// file:line in the frames, when asked for stacks and addr2line is there.
    private func annotated(_ snapshot: KernelSnapshot) -> KernelSnapshot {
        var s = snapshot
        if (stacks || allStacks || deadlocks) && !noLines { SourceLines.annotate(&s) }
        return s
    }

    var isTerminal: Bool { isatty(STDOUT_FILENO) != 0 }

    /// 80 columns in a pipe, the terminal's width on one (at least 80);
    /// --wide lays the table out at 132 columns and cuts nothing.
    var width: Int {
        if wide { return 132 }
        guard isTerminal else { return 80 }
        var size = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 80 ? Int(size.ws_col) : 80
    }

    func table(watching: Bool) -> ThreadTable {
        let color = isTerminal && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        var t = ThreadTable(width: width, color: color, clips: !wide)
        let keys = (watching ? TableColumn.watchKeys : TableColumn.defaultKeys).joined(separator: ",")
        t.columns = (try? TableColumn.parse(format ?? keys)) ?? t.columns
        return t
    }

    /// The rows to show: filtered by --state and --name, sorted, limited.
    func rows(_ snapshot: KernelSnapshot, context: TableContext, sort key: SortKey) -> [ThreadSnapshot] {
        var threads = snapshot.threads
        if let state { threads = threads.filter { $0.state == state } }
        if let name { threads = threads.filter { matches($0.name, name) } }
        threads.sort { key.ordered($0, $1, context) }
        if let limit { threads = Array(threads.prefix(limit)) }
        return threads
    }

    private func matches(_ text: String, _ pattern: String) -> Bool {
        if pattern.contains(where: { "*?[".contains($0) }) { return fnmatch(pattern, text, 0) == 0 }
        return text.contains(pattern)
    }

    /// The table (and the stacks) of one snapshot. `context` carries the
    /// CPU rates in --watch; `sort` overrides --sort there.
    func page(_ snapshot: KernelSnapshot, context: TableContext?, sort: SortKey? = nil, extraSummary: String? = nil) -> [String] {
        guard snapshot.kernelRunning else { return ["pid \(snapshot.processID) \(printable(snapshot.processName)): no kernel running"] }
        let ctx = context ?? TableContext(snapshot: snapshot)
        let table = self.table(watching: context != nil)
        let threads = rows(snapshot, context: ctx, sort: sort ?? self.sort ?? .id)
        var lines = table.render(ctx, threads: threads, traces: allStacks, extraSummary: extraSummary)
        if stacks && !allStacks {
            lines.append("")
            lines += StackGroups.render(StackGroups.group(threads), table: table)
        }
        if !snapshot.waitGraph.cycles.isEmpty {
            lines.append("")
            lines.append(table.fit("wait-for cycles: \(snapshot.waitGraph.cycles.count) (gt-ps --deadlocks \(snapshot.processID))"))
        }
        return lines
    }

    /// Prints the cycles with the traces of their threads; true if any.
    private func printDeadlocks(_ snapshot: KernelSnapshot) -> Bool {
        let cycles = snapshot.waitGraph.cycles
        let table = ThreadTable(width: width, color: false, clips: !wide)
        guard !cycles.isEmpty else {
            print("pid \(snapshot.processID) \(printable(snapshot.processName)): no wait-for cycles among \(snapshot.threads.count) threads")
            return false
        }
        print("pid \(snapshot.processID) \(printable(snapshot.processName)): \(cycles.count) wait-for cycle(s), deadlocked:")
        for cycle in cycles {
            print("")
            print(table.fit("deadlock: " + snapshot.cycleDescription(cycle)))
            for id in cycle {
                guard let t = snapshot.thread(id: id) else { continue }
                print(table.fit("  " + t.headerLine(now: snapshot.monotonicNanoseconds)))
                if let trace = t.trace { for line in table.frameLines(trace) { print(table.fit(line)) } }
            }
        }
        return true
    }

    /// `--dump FILE`: the crash dump, symbolized, trimmed and grouped.
    private func renderDump(_ path: String) throws {
        let text: String
        let dump: CrashDump
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
            dump = try CrashDumpText.parse(text)
        } catch {
            FileHandle.standardError.write(Data("gt-ps: \(path): \(error)\n".utf8))
            throw ExitCode(2)
        }
        var snapshot = dump.snapshot
        if let problem = SourceLines.annotate(&snapshot) {
            FileHandle.standardError.write(Data("gt-ps: \(problem); frames stay raw\n".utf8))
        }
        for i in snapshot.threads.indices {
            guard var trace = snapshot.threads[i].trace else { continue }
            trace.frames = FrameTrimming.trim(trace.frames)
            snapshot.threads[i].trace = trace
        }
        let table = ThreadTable(width: width, color: false, clips: !wide)
        let crashed = dump.crashedThreadID.map { id in "green thread \(id) '\(printable(snapshot.thread(id: id)?.name ?? "?"))'" }
            ?? "an OS thread that is not a green thread"
        print(table.fit("crash dump of pid \(dump.processID): \(dump.signalName) (\(dump.signalNumber)) in \(crashed)"))
        for note in dump.notes where !note.hasPrefix("raw frames") { print(table.fit("(\(note))")) }
        print(table.fit("\(snapshot.threads.count) threads"))
        if let os = dump.osThreadTrace {
            var trace = os
            var s = KernelSnapshot(processID: 0, processName: "", wallClockNanoseconds: 0, monotonicNanoseconds: 0,
                                   includesStacks: true, kernelRunning: true, threadsSpawned: 0,
                                   threads: [ThreadSnapshot(id: 0, name: "", state: .running, basePriority: 0, effectivePriority: 0,
                                                            worker: nil, cpuTimeNanoseconds: 0, switches: 0, preemptions: 0,
                                                            deferredPreemptions: 0, wait: nil,
                                                            stack: StackUsage(sizeBytes: 0, usedBytes: 0, residentBytes: 0), trace: os)],
                                   workers: [])
            SourceLines.annotate(&s)
            trace = s.threads[0].trace ?? os
            print("")
            print("interrupted OS thread:")
            for line in table.frameLines(trace, indent: "    ") { print(table.fit(line)) }
        }
        if allStacks {
            for t in snapshot.threads {
                print("")
                print(table.fit(t.headerLine(now: snapshot.monotonicNanoseconds)))
                if let trace = t.trace { for line in table.frameLines(trace, indent: "    ") { print(table.fit(line)) } }
            }
        } else {
            for group in StackGroups.group(snapshot.threads) {
                print("")
                let noun = group.threads.count == 1 ? "thread" : "threads"
                print(table.fit("\(group.threads.count) \(noun):"))
                for t in group.threads { print(table.fit("  " + t.headerLine(now: snapshot.monotonicNanoseconds))) }
                for line in table.frameLines(group.trace, indent: "    ") { print(table.fit(line)) }
            }
        }
        if !snapshot.waitGraph.cycles.isEmpty {
            print("")
            print("wait-for cycles (deadlocked threads):")
            for cycle in snapshot.waitGraph.cycles { print(table.fit("    " + snapshot.cycleDescription(cycle))) }
        }
    }

    /// `gt-ps` alone: this user's GreenThreads processes, from the cheap
    /// summary request (no thread is copied in the process).
    private func listProcesses() throws {
        let processes = SnapshotClient.servedProcesses()
        guard !processes.isEmpty else {
            print("no GreenThreads processes of this user (searched \(SnapshotClient.directories().joined(separator: ", ")))")
            return
        }
        let table = ThreadTable(width: width, color: false, clips: !wide)
        print("  PID NAME                 THREADS RUNNING BLOCKED WORKERS SPAWNED SOCKET")
        for p in processes {
            let name = ((try? String(contentsOfFile: "/proc/\(p.pid)/comm", encoding: .utf8)) ?? "?")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            var columns = "-       -       -       -       -"
            do {
                let s = try SnapshotClient.summary(path: p.socketPath, timeout: min(timeout, 2))
                columns = [s.threads, s.running, s.blocked, s.workers].map { pad(String($0), 7) }.joined(separator: " ")
                    + " " + pad(String(s.threadsSpawned), 7)
            } catch {
                columns = "(\(error))"
            }
            let line = pad(String(p.pid), 5) + " " + printable(name).padding(toLength: 20, withPad: " ", startingAt: 0) + " "
                + columns + " " + p.socketPath
            print(table.fit(line))
        }
    }

    private func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
}
