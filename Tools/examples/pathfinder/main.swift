// gt-example-pathfinder: the Mars Pathfinder priority inversion (1997), run
// twice on one worker, printing who ran when.
//
// The story: a low-priority thread (8) locks the "bus" mutex and needs
// `cs` ms of CPU inside it. Two medium-priority threads (16) then start
// crunching for `spin` ms each, and a high-priority thread (24) asks for the
// bus.
// - Without inheritance (`GreenMutex(priorityInheritance: false)`) the
//   mediums outrank low, so low cannot finish its critical section and high
//   waits for the mediums' whole run: an unbounded inversion. On Mars, the
//   watchdog then reset the spacecraft.
// - With inheritance (GreenMutex's default) low runs at high's priority
//   while high waits, finishes its critical section ahead of the mediums,
//   and high's wait is bounded by the rest of that section.
//
// The main thread watches at the highest priority: every millisecond it
// wakes (preempting whoever runs), notes which thread ran last, and goes
// back to sleep; low notes its own effective priority at the end of its
// critical section. It then prints one row per
// thread with a '#' in each 5 ms column (wider if the run took over half a
// second) where that thread ran.
//
//   swift run gt-example-pathfinder [cs-ms] [spin-ms]
import Glibc
import GreenThreads
import Synchronization

let arguments = CommandLine.arguments.dropFirst().compactMap(Int.init)
let csMs = arguments.first ?? 30
let spinMs = arguments.dropFirst().first ?? 100
let minimumColumnMs = 5

func nowNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Which threads ran since the watcher last looked: each worker loop sets
/// its row's bit, the watcher swaps in 0. A set of bits, not the last
/// runner: on a busy machine the watcher's samples stretch, and a thread
/// that ran a millisecond between two of them must still show. Lock-free:
/// a lock here would itself be contended.
final class LastRunner: Sendable {
    let row = Atomic<Int>(0)
    /// High has asked for the bus (low reads its boost only after that).
    let highAsked = Atomic<Bool>(false)
}

/// Burns `milliseconds` of the calling thread's own running time: wall-clock
/// gaps longer than 200 us are time another thread had the CPU and do not
/// count. Marks `row` (its bit) as running on every step.
func work(milliseconds: Int, row: Int, _ last: LastRunner) {
    var done: Int64 = 0
    var before = nowNanoseconds()
    while done < Int64(milliseconds) * 1_000_000 {
        last.row.bitwiseOr(1 << row, ordering: .relaxed)
        let now = nowNanoseconds()
        if now - before < 200_000 { done += now - before }
        before = now
    }
}

struct Event {
    var atNanoseconds: Int64
    var text: String
}

struct Run {
    var events: [Event]
    /// Per sample: (time, the rows that ran since the last one, as bits).
    var samples: [(Int64, Int)]
    var highWaitNanoseconds: Int64

    func time(of text: String) -> Int64 { events.first { $0.text == text }?.atNanoseconds ?? -1 }
    /// Whether high got the bus before both mediums were done.
    var highGotTheBusBeforeTheMediumsWereDone: Bool {
        time(of: "high gets the bus") < min(time(of: "medium-0 done"), time(of: "medium-1 done"))
    }
    /// Whether high got the bus only after both mediums were done.
    var highGotTheBusAfterTheMediumsWereDone: Bool {
        time(of: "high gets the bus") > max(time(of: "medium-0 done"), time(of: "medium-1 done"))
    }
}

let rows = ["high", "medium-0", "medium-1", "low"]

func run(inheritance: Bool) throws -> Run {
    // One worker: every thread competes for one CPU, as on the spacecraft.
    try Kernel.run(KernelConfiguration(workers: 1, timeSlice: .milliseconds(10))) { () -> Run in
        GreenThread.current.setPriority(.highest)
        let t0 = nowNanoseconds()
        let last = LastRunner()
        var events: [Event] = []
        func note(_ text: String) { events.append(Event(atNanoseconds: nowNanoseconds() - t0, text: text)) }
        let bus = GreenMutex(name: "bus", priorityInheritance: inheritance)

        let low = try GreenThread.spawn(name: "low", priority: .low) { () -> [Event] in
            var mine: [Event] = []
            try bus.withLock {
                mine.append(Event(atNanoseconds: nowNanoseconds() - t0, text: "low locks the bus"))
                let base = GreenThread.current.priority.level
                work(milliseconds: csMs, row: 4, last)
                // Read by low itself at the end of its section, once high
                // waits for the bus: the watcher's 1 ms samples can miss a
                // boost that lasts about a millisecond.
                while !last.highAsked.load(ordering: .acquiring) { GreenThread.yield() }
                let boosted = GreenThread.current.effectivePriority.level
                if boosted != base {
                    mine.append(Event(atNanoseconds: nowNanoseconds() - t0,
                                      text: "low's effective priority \(base) -> \(boosted)"))
                }
                mine.append(Event(atNanoseconds: nowNanoseconds() - t0, text: "low unlocks the bus"))
            }
            return mine
        }
        // Spawned once low is inside its critical section.
        var mediums: [JoinHandle<[Event]>] = []
        var high: JoinHandle<(wait: Int64, events: [Event])>?
        func startTheOthers() throws {
            mediums = try (0..<2).map { i in
                try GreenThread.spawn(name: "medium-\(i)", priority: .normal) { () -> [Event] in
                    work(milliseconds: spinMs, row: 2 + i, last)
                    return [Event(atNanoseconds: nowNanoseconds() - t0, text: "medium-\(i) done")]
                }
            }
            note("medium-0 and medium-1 start crunching")
            high = try GreenThread.spawn(name: "high", priority: .high) { () -> (wait: Int64, events: [Event]) in
                let asked = nowNanoseconds()
                var mine = [Event(atNanoseconds: asked - t0, text: "high asks for the bus")]
                last.highAsked.store(true, ordering: .releasing)
                try bus.withLock {
                    mine.append(Event(atNanoseconds: nowNanoseconds() - t0, text: "high gets the bus"))
                    work(milliseconds: 1, row: 1, last)
                }
                return (nowNanoseconds() - asked, mine)
            }
        }

        // Watch every millisecond until everyone is done.
        var samples: [(Int64, Int)] = []
        var lowLockedAt: Int64?
        while !(low.isFinished && high?.isFinished == true && mediums.allSatisfy(\.isFinished)) {
            GreenThread.sleep(for: .milliseconds(1))
            let now = nowNanoseconds() - t0
            samples.append((now, last.row.exchange(0, ordering: .relaxed)))
            if lowLockedAt == nil, bus.owner === low.thread { lowLockedAt = now }
            // Low has had 5 ms inside its critical section: start the others.
            if high == nil, let since = lowLockedAt, now - since >= 5_000_000 { try startTheOthers() }
        }
        let highResult = try high!.join()
        events += try low.join() + mediums.flatMap { try $0.join() } + highResult.events
        return Run(events: events.sorted { $0.atNanoseconds < $1.atNanoseconds },
                   samples: samples, highWaitNanoseconds: highResult.wait)
    }
}

func milliseconds(_ ns: Int64) -> String {
    let tenths = (ns + 50_000) / 100_000
    return "\(tenths / 10).\(tenths % 10)"
}

func printRun(_ title: String, _ run: Run) {
    print(title)
    for e in run.events {
        let t = milliseconds(e.atNanoseconds)
        print(String(repeating: " ", count: max(0, 8 - t.count)) + t + " ms  " + e.text)
    }
    let end = run.samples.last?.0 ?? 0
    // 5 ms a column, wider when a busy machine stretched the run: at most
    // 100 columns.
    let columnMs = max(minimumColumnMs, Int((end + 99_999_999) / 100_000_000))
    let columns = Int(end / Int64(columnMs * 1_000_000)) + 1
    var ruler = ""
    for c in stride(from: 0, to: columns, by: 10) {
        let label = "\(c * columnMs)"
        ruler += label + String(repeating: " ", count: max(1, 10 - label.count))
    }
    while ruler.last == " " { ruler.removeLast() }
    print("  who ran when (one column = \(columnMs) ms):")
    print("  ms        " + ruler)
    for (i, name) in rows.enumerated() {
        var line = [Character](repeating: ".", count: columns)
        for (t, ran) in run.samples where ran & (1 << (i + 1)) != 0 {
            line[Int(t / Int64(columnMs * 1_000_000))] = "#"
        }
        print("  " + name + String(repeating: " ", count: 10 - name.count) + String(line))
    }
    print("  high waited \(milliseconds(run.highWaitNanoseconds)) ms for the bus")
    print()
}

print("Mars Pathfinder on one worker: low (8) holds the bus for \(csMs) ms of CPU, "
      + "two mediums (16) crunch \(spinMs) ms each, high (24) wants the bus")
print()
let without = try run(inheritance: false)
printRun("without priority inheritance: GreenMutex(name: \"bus\", priorityInheritance: false)", without)
let with = try run(inheritance: true)
printRun("with priority inheritance: GreenMutex(name: \"bus\")", with)

// The inversion, judged by order rather than by milliseconds (a busy machine
// stretches every wall-clock time): with inheritance high gets the bus while
// the mediums still crunch; without, only after both are done.
let bounded = with.highGotTheBusBeforeTheMediumsWereDone
let inverted = without.highGotTheBusAfterTheMediumsWereDone
print("high's wait: \(milliseconds(with.highWaitNanoseconds)) ms with inheritance (before the mediums finished), "
      + "\(milliseconds(without.highWaitNanoseconds)) ms without (after they finished): "
      + (bounded && inverted ? "OK" : "NOT as expected"))
if !(bounded && inverted) { exit(1) }
