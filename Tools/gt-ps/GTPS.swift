// gt-ps: lists the green threads of a running GreenThreads process, like
// `ps -H` / `top -H` for OS threads. See docs/gt-ps.md.
//
// Exit status: 0 success; 1 --deadlocks found a wait-for cycle; 2 the
// process could not be inspected (no socket, refused, no answer).
import ArgumentParser
import Foundation
import GTSnapshot
import Glibc

extension ThreadState: ExpressibleByArgument {}

enum SortKey: String, ExpressibleByArgument, CaseIterable {
    case id, cpu, pri
}

struct GTPS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gt-ps",
        abstract: "Show the green threads of a running GreenThreads program.",
        discussion: """
            Without a pid, lists this user's processes that serve GreenThreads snapshots. \
            With one, prints a table of its green threads: ID, NAME, STATE, PRI (base/effective, \
            * when raised by priority inheritance), WK (worker), CPU, SW (switches), \
            PRE (preemptions), WAIT (what it waits on and whose move it is), STACK (used/size). \
            Exit status: 0 ok, 1 wait-for cycles found (--deadlocks), 2 cannot inspect.
            """)

    @Argument(help: "The process to inspect.")
    var pid: Int32?

    @Flag(help: "Print each thread's symbolized stack trace under its row.")
    var stacks = false

    @Flag(help: "Print the snapshot as JSON (the format of GTSnapshot.KernelSnapshot).")
    var json = false

    @Option(help: ArgumentHelp("Refresh every <seconds>, like top (Ctrl-C stops).", valueName: "seconds"))
    var watch: Double?

    @Option(help: "Order of the rows: id, cpu (most first) or pri (highest effective first).")
    var sort: SortKey = .id

    @Option(help: "Only threads in this state: ready, running, blocked, sleeping.")
    var state: ThreadState?

    @Flag(help: "Print the wait-for cycles (deadlocks) with their traces; exit 1 if there are any.")
    var deadlocks = false

    @Flag(help: "Do not cut lines to the terminal width (80 columns in a pipe).")
    var wide = false

    @Option(help: ArgumentHelp("Seconds to wait for the process's answer.", valueName: "seconds"))
    var timeout: Double = 10

    func validate() throws {
        if watch != nil && pid == nil { throw ValidationError("--watch needs a pid") }
        if let watch, watch <= 0 { throw ValidationError("--watch needs a positive number of seconds") }
        if pid == nil && (stacks || json || deadlocks || state != nil) {
            throw ValidationError("--stacks, --json, --state and --deadlocks need a pid")
        }
    }

    func run() throws {
        guard let pid else { return try listProcesses() }
        repeat {
            let snapshot: KernelSnapshot
            do {
                snapshot = try SnapshotClient.snapshot(pid: pid, stacks: stacks || deadlocks, timeout: timeout)
            } catch {
                FileHandle.standardError.write(Data("gt-ps: \(error)\n".utf8))
                throw ExitCode(2)
            }
            if watch != nil && isTerminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            if json {
                try printJSON(snapshot)
            } else if deadlocks {
                if printDeadlocks(snapshot) { throw ExitCode(1) }
            } else {
                printTable(snapshot)
            }
            if let watch {
                if !isTerminal { print("") }
                fflush(nil)  // every stream: the refresh must show before the sleep
                Thread.sleep(forTimeInterval: watch)
            }
        } while watch != nil
    }

    private var isTerminal: Bool { isatty(STDOUT_FILENO) != 0 }

    /// 80 columns in a pipe, the terminal's width on one (at least 80);
    /// --wide lays the table out at 132 columns and cuts nothing.
    private var width: Int {
        if wide { return 132 }
        guard isTerminal else { return 80 }
        var size = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 80 ? Int(size.ws_col) : 80
    }

    private func printTable(_ snapshot: KernelSnapshot) {
        guard snapshot.kernelRunning else {
            print("pid \(snapshot.processID) \(snapshot.processName): no kernel running")
            return
        }
        var threads = snapshot.threads
        if let state { threads = threads.filter { $0.state == state } }
        switch sort {
        case .id: threads.sort { $0.id < $1.id }
        case .cpu: threads.sort { ($0.cpuTimeNanoseconds, $1.id) > ($1.cpuTimeNanoseconds, $0.id) }
        case .pri: threads.sort { ($0.effectivePriority, $1.id) > ($1.effectivePriority, $0.id) }
        }
        let color = isTerminal && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        let table = ThreadTable(width: width, color: color, stacks: stacks, clips: !wide)
        for line in table.render(snapshot, threads: threads) { print(line) }
        if !snapshot.waitGraph.cycles.isEmpty {
            print("")
            print(table.fit("wait-for cycles: \(snapshot.waitGraph.cycles.count) (gt-ps --deadlocks \(snapshot.processID))"))
        }
    }

    /// Prints the cycles with the traces of their threads; true if any.
    private func printDeadlocks(_ snapshot: KernelSnapshot) -> Bool {
        let cycles = snapshot.waitGraph.cycles
        let table = ThreadTable(width: width, color: false, stacks: true, clips: !wide)
        guard !cycles.isEmpty else {
            print("pid \(snapshot.processID) \(snapshot.processName): no wait-for cycles among \(snapshot.threads.count) threads")
            return false
        }
        print("pid \(snapshot.processID) \(snapshot.processName): \(cycles.count) wait-for cycle(s), deadlocked:")
        for cycle in cycles {
            print("")
            print("deadlock: " + snapshot.cycleDescription(cycle))
            for id in cycle {
                guard let t = snapshot.thread(id: id) else { continue }
                print(table.fit("  " + t.headerLine(now: snapshot.monotonicNanoseconds)))
                if let trace = t.trace { for line in table.frameLines(trace) { print(table.fit(line)) } }
            }
        }
        return true
    }

    private func printJSON(_ snapshot: KernelSnapshot) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(snapshot), as: UTF8.self))
        if deadlocks && !snapshot.waitGraph.cycles.isEmpty { throw ExitCode(1) }
    }

    /// `gt-ps` alone: this user's GreenThreads processes.
    private func listProcesses() throws {
        let processes = SnapshotClient.servedProcesses()
        guard !processes.isEmpty else {
            print("no GreenThreads processes of this user (searched \(SnapshotClient.directories().joined(separator: ", ")))")
            return
        }
        print("  PID NAME                 THREADS WORKERS SPAWNED SOCKET")
        for p in processes {
            let name = ((try? String(contentsOfFile: "/proc/\(p.pid)/comm", encoding: .utf8)) ?? "?")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            var columns = "-       -       -"
            if let response = try? SnapshotClient.send(DebugRequest(command: .snapshot), to: p.socketPath, timeout: min(timeout, 2)) {
                if let s = response.snapshot {
                    columns = pad(String(s.threads.count), 7) + " " + pad(String(s.workers.count), 7) + " "
                        + pad(String(s.threadsSpawned), 7)
                } else {
                    columns = "(\(response.error ?? "no answer"))"
                }
            }
            let line = pad(String(p.pid), 5) + " " + name.padding(toLength: 20, withPad: " ", startingAt: 0) + " "
                + columns + " " + p.socketPath
            print(ThreadTable(width: width, color: false, stacks: false, clips: !wide).fit(line))
        }
    }

    private func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
}
