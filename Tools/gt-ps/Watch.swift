// Watch: `gt-ps <pid> --watch <seconds>`, like top -H: a snapshot every
// interval, CPU% over that interval (from the threads' CPU-time counters
// and the snapshots' monotonic clocks, not since the thread started), the
// busiest threads first.
//
// On a terminal (stdin and stdout both ttys) the screen is redrawn in place,
// the rows are cut to the screen's height, and single keys change the sort
// (c cpu%, t cpu time, p priority, i id, n name, s state, w waited) or quit
// (q); the terminal is put in non-canonical no-echo mode for that and given
// back on exit, on q, Ctrl-C or SIGTERM. In a pipe it prints each refresh
// after the last, separated by a blank line, and reads no keys.
import Foundation
import GTSnapshot
import Glibc

/// The terminal's settings before raw mode, for the signal handlers.
nonisolated(unsafe) private var savedTerminal = termios()
nonisolated(unsafe) private var terminalSaved = false

private func restoreTerminal() {
    if terminalSaved { tcsetattr(STDIN_FILENO, TCSANOW, &savedTerminal) }
}

struct Watch {
    let command: GTPS
    let pid: Int32
    let interval: Double

    static let keys: [Character: SortKey] = ["c": .rate, "t": .cpu, "p": .pri, "i": .id, "n": .name, "s": .state, "w": .waited]

    func run() throws {
        let interactive = isatty(STDIN_FILENO) != 0 && isatty(STDOUT_FILENO) != 0
        if interactive { enterRawMode() }
        defer { if interactive { restoreTerminal(); print("", terminator: "") } }
        var sort = command.sort ?? .rate
        var previous: KernelSnapshot?
        while true {
            let (snapshot, _) = try command.fetch(pid)
            var context = TableContext(snapshot: snapshot)
            if let previous { context.cpuPercent = Watch.rates(from: previous, to: snapshot) }
            previous = snapshot
            var deadline = Date().addingTimeInterval(interval)
            redraw: while true {
                draw(snapshot, context, sort: sort, interactive: interactive)
                guard interactive else {
                    Thread.sleep(forTimeInterval: interval)
                    break redraw
                }
                switch readKey(until: deadline) {
                case nil: break redraw  // the interval is over: refresh
                case "q"?, "Q"?: return
                case let key?:
                    if let k = Watch.keys[Character(key.lowercased())] { sort = k }
                    deadline = max(deadline, Date())  // redraw now, refresh at the same time
                }
            }
        }
    }

    /// Percent of one CPU each thread used between two snapshots.
    static func rates(from old: KernelSnapshot, to new: KernelSnapshot) -> [UInt64: Double] {
        let wall = Double(new.monotonicNanoseconds - old.monotonicNanoseconds)
        guard wall > 0 else { return [:] }
        let before = Dictionary(old.threads.map { ($0.id, $0.cpuTimeNanoseconds) }, uniquingKeysWith: { a, _ in a })
        var out: [UInt64: Double] = [:]
        for t in new.threads {
            // A thread that started in between ran at most since then: from 0.
            let was = before[t.id] ?? 0
            // Capped at one CPU: a running thread's counter advances in whole
            // ticked periods, so one interval can be credited a little more
            // than it lasted (103% was seen on a loaded machine).
            out[t.id] = t.cpuTimeNanoseconds >= was ? min(100, Double(t.cpuTimeNanoseconds - was) / wall * 100) : 0
        }
        return out
    }

    private func draw(_ snapshot: KernelSnapshot, _ context: TableContext, sort: SortKey, interactive: Bool) {
        let help = interactive ? "sorted by \(sort.rawValue); keys: c cpu%  t cpu  p pri  i id  n name  s state  w waited  q quit"
                               : "sorted by \(sort.rawValue), every \(interval)s"
        var lines = command.page(snapshot, context: context, sort: sort, extraSummary: help)
        if interactive {
            var size = winsize()
            if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_row > 2 {
                lines = Array(lines.prefix(Int(size.ws_row) - 1))  // the busiest rows fit; no scrolling
            }
            print("\u{1B}[H\u{1B}[2J" + lines.joined(separator: "\r\n"), terminator: "")
        } else {
            print(lines.joined(separator: "\n"))
            print("")
        }
        fflush(nil)  // every stream: the refresh must show before the wait
    }

    /// One key typed before `deadline`, or nil when it passes.
    private func readKey(until deadline: Date) -> String? {
        while true {
            let ms = Int32(max(0, min(deadline.timeIntervalSinceNow * 1000, 60_000)))
            var p = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            let rc = poll(&p, 1, ms)
            if rc < 0 && errno == EINTR { continue }
            guard rc > 0 else { return nil }
            var byte: UInt8 = 0
            guard read(STDIN_FILENO, &byte, 1) == 1 else { return "q" }  // EOF on the terminal: stop
            return String(UnicodeScalar(byte))
        }
    }

    /// Non-canonical, no echo: keys arrive one by one and are not shown.
    /// ISIG stays on, so Ctrl-C still interrupts (the handler restores).
    private func enterRawMode() {
        guard tcgetattr(STDIN_FILENO, &savedTerminal) == 0 else { return }
        terminalSaved = true
        var raw = savedTerminal
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig) { s in
                restoreTerminal()
                _exit(128 + s)
            }
        }
    }
}
