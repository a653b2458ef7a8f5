// The text form of a snapshot: what Kernel.snapshot's description, deadlock
// reports, and `gt-ps --stacks` print, and what the crash dump (written in C,
// CGreenCore/unwind.c, without demangling) imitates line for line:
//
//   thread 4 'b' blocked on join 0x3 held by thread 3 'a', priority 16/16, ...
//       #0 0x55d5f0e3c1a2 JoinHandle.join() + 50 (gt-test-host)
//       #1 ...

extension KernelSnapshot: CustomStringConvertible {
    /// The text form with traces (when the snapshot has them).
    public var description: String { text() }

    /// The text form: a summary, the workers, every thread with its trace
    /// (`stacks`), and the wait-for cycles.
    public func text(stacks: Bool = true) -> String {
        guard kernelRunning else { return "no GreenThreads kernel is running in pid \(processID) (\(processName))" }
        var lines = ["GreenThreads kernel in pid \(processID) (\(processName)): \(threads.count) live threads, "
                     + "\(workers.count) workers, \(threadsSpawned) spawned"]
        for w in workers { lines.append(w.line(threads: self)) }
        for t in threads {
            lines.append("")
            lines.append(t.headerLine(now: monotonicNanoseconds))
            if stacks, let trace = t.trace { lines += trace.lines(indent: "    ") }
        }
        if !waitGraph.cycles.isEmpty {
            lines.append("")
            lines.append("wait-for cycles (deadlocked threads):")
            for cycle in waitGraph.cycles { lines.append("    " + cycleDescription(cycle)) }
        }
        return lines.joined(separator: "\n")
    }

    /// `thread 7 'a' -> thread 8 'b' -> thread 7 'a'`
    public func cycleDescription(_ cycle: [UInt64]) -> String {
        (cycle + cycle.prefix(1)).map { id in "thread \(id) '\(printable(thread(id: id)?.name ?? "?"))'" }
            .joined(separator: " -> ")
    }
}

extension WorkerSnapshot {
    func line(threads snapshot: KernelSnapshot) -> String {
        let doing: String
        if let id = currentThreadID {
            doing = "running thread \(id) '\(printable(snapshot.thread(id: id)?.name ?? "?"))'"
        } else {
            doing = isIdle ? "idle" : "in its scheduler"
        }
        return "worker \(index) (tid \(osThreadID)): \(doing); \(ticks) ticks, \(preemptions) preemptions, "
            + "\(deferrals) deferred; hand-offs \(parkHandoffs ?? 0) park, \(resumeHandoffs ?? 0) resume, "
            + "\(blockedHandoffs ?? 0) blocked; \(idleWakeups ?? 0) idle wake-ups; "
            + "lingers \(lingersServed ?? 0) served, \(lingersTimedOut ?? 0) timed out"
    }
}

extension ThreadSnapshot {
    /// What it waits on, as in `join 0x3 held by thread 3 'a'`; a sleep as
    /// the time left (its object id is the monotonic deadline).
    public func waitDescription(now monotonicNanoseconds: Int64) -> String? {
        guard let wait else { return nil }
        if wait.kind == "sleep" {
            let left = Int64(bitPattern: wait.objectID) - monotonicNanoseconds
            return "sleep, \(formatNanoseconds(UInt64(max(0, left)))) left"
        }
        var s = "\(wait.kind) \(hex(wait.objectID))"
        if let name = wait.objectName { s += " '\(printable(name))'" }
        if let owner = wait.ownerThreadID {
            s += " held by thread \(owner)" + (wait.ownerName.map { " '\(printable($0))'" } ?? "")
        }
        if let since = wait.sinceMonotonicNanoseconds, monotonicNanoseconds > since {
            s += " for \(formatNanoseconds(UInt64(monotonicNanoseconds - since)))"
        }
        return s
    }

    /// The thread's line in the text form.
    public func headerLine(now monotonicNanoseconds: Int64) -> String {
        var s = "thread \(id) '\(printable(name))' \(state.rawValue)"
        if let worker { s += " on worker \(worker)" }
        if let wait = waitDescription(now: monotonicNanoseconds) { s += " on \(wait)" }
        s += ", priority \(basePriority)/\(effectivePriority)"
        if isBoosted { s += " (boosted)" }
        s += ", \(switches) switches, \(preemptions) preemptions (\(deferredPreemptions) deferred)"
        s += ", cpu \(formatNanoseconds(cpuTimeNanoseconds)), stack \(formatBytes(stack.usedBytes))/\(formatBytes(stack.sizeBytes))"
        if let held = heldMutexes, !held.isEmpty {
            s += ", holds " + held.map { "'\(printable($0.name))'" }.joined(separator: ", ")
        }
        return s
    }
}

/// `850 ns`, `12.3 us`, `4.56 ms`, `1.234 s`.
package func formatNanoseconds(_ ns: UInt64) -> String {
    func fixed(_ value: UInt64, _ unit: UInt64, _ decimals: Int) -> String {
        // Whole and fraction apart: value * scale could overflow for huge
        // values (a sleep "forever" has a deadline near Int64.max).
        let scale = UInt64([1, 10, 100, 1000][decimals])
        var whole = value / unit
        var frac = (value % unit * scale + unit / 2) / unit
        if frac == scale { whole += 1; frac = 0 }
        guard decimals > 0 else { return "\(whole)" }
        let digits = String(frac)
        return "\(whole)." + String(repeating: "0", count: decimals - digits.count) + digits
    }
    switch ns {
    case ..<1_000: return "\(ns) ns"
    case ..<1_000_000: return fixed(ns, 1_000, 1) + " us"
    case ..<1_000_000_000: return fixed(ns, 1_000_000, 2) + " ms"
    default: return fixed(ns, 1_000_000_000, 3) + " s"
    }
}

/// `512 B`, `12K`, `64K`, `1.5M`: compact sizes for tables and headers.
package func formatBytes(_ bytes: Int) -> String {
    switch bytes {
    case ..<1024: return "\(bytes)B"
    case ..<(1 << 20): return "\((bytes + 512) / 1024)K"
    case ..<(10 << 20):
        let tenths = (bytes * 10 + (1 << 19)) >> 20
        return "\(tenths / 10).\(tenths % 10)M"
    default: return "\((bytes + (1 << 19)) >> 20)M"
    }
}

/// `text` safe to print on a terminal: control characters (C0, DEL, C1:
/// a thread name could otherwise move the cursor, clear the screen or
/// forge lines) are written as `\xNN` / `\u{NNNN}`, and the backslash as
/// `\\`, so the output says exactly which bytes the name holds.
package func printable(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\\" }) else {
        return text
    }
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar.value {
        case 0x5C: out += "\\\\"
        case ..<0x20, 0x7F:
            let digits = String(scalar.value, radix: 16)
            out += "\\x" + (digits.count == 1 ? "0" : "") + digits
        case 0x80...0x9F: out += "\\u{" + String(scalar.value, radix: 16) + "}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}
