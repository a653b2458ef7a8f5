// CrashDumpText: reads the fatal-signal dump that CGreenCore/unwind.c
// writes (to stderr, and to $GT_DUMP_DIR/gt-<pid>.crash) back into a
// KernelSnapshot whose frames are raw (pc, image, offset), for `gt-ps
// --dump` to symbolize, trim (FrameTrimming) and render like a live
// snapshot. The writer is async-signal-safe C and looks nothing up; this
// reader is the only other place that knows the format:
//
//   GreenThreads: SIGSEGV (11) in green thread 3 'crasher'; dump of all green threads, pid 4242, monotonic 81234567
//   (raw frames: ...)
//
//   thread 2 'parked' sleeping on sleep 0x3fe, priority 16/16, 5 switches, 0 preemptions
//       #0 0x000055d5f0e3c1a2 /path/app+0x3c1a2
//       #1* ...                      (* : an interrupted PC, not a return address)
//       (running on worker 1: its worker did not answer)
//
//   end of dump
//
// Names are quoted with ', \, and control bytes as \xNN. Lines that are not
// part of a dump (other stderr output around it) are skipped, so a saved
// stderr renders as well as the dump file.

/// A crash dump read back.
package struct CrashDump {
    package var signalName: String
    package var signalNumber: Int
    /// The green thread that crashed, if it was one.
    package var crashedThreadID: UInt64?
    package var processID: Int32
    /// Notes the dump printed about itself (the kernel lock stayed busy ...).
    package var notes: [String]
    /// Threads as a snapshot (no workers, raw frames), oldest first, and
    /// the interrupted OS thread's trace when the crash was not in a green thread.
    package var snapshot: KernelSnapshot
    package var osThreadTrace: StackTrace?
}

package enum CrashDumpText {
    package struct FormatError: Error, CustomStringConvertible {
        package var description: String
    }

    /// Parses the first dump in `text`.
    package static func parse(_ text: String) throws -> CrashDump {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let start = lines.firstIndex(where: { $0.hasPrefix("GreenThreads: ") && $0.contains("; dump of all green threads, pid ") }) else {
            throw FormatError(description: "no GreenThreads crash dump in the input (a line 'GreenThreads: SIG... dump of all green threads, pid N')")
        }
        var dump = try header(lines[start])
        var threads: [ThreadSnapshot] = []
        var current: ThreadSnapshot?
        var osTrace: [StackFrame]?
        var frames: [StackFrame] = []
        var truncated = false
        var note: String?
        func finish() {
            let trace = StackTrace(origin: .parked, frames: frames, truncated: truncated, note: note)
            if var t = current {
                t.trace = StackTrace(origin: t.state == .running ? (t.id == dump.crashedThreadID ? .current : .running) : .parked,
                                     frames: frames, truncated: truncated, note: note)
                threads.append(t)
            } else if osTrace != nil {
                osTrace = trace.frames
            }
            current = nil
            frames = []
            truncated = false
            note = nil
        }
        for line in lines[(start + 1)...] {
            if line == "end of dump" { break }
            if line.hasPrefix("thread ") {
                finish()
                current = try threadHeader(line)
            } else if line == "interrupted OS thread:" {
                finish()
                osTrace = []
            } else if line.hasPrefix("    #") {
                frames.append(try frame(line))
            } else if line == "    ..." {
                truncated = true
            } else if line.hasPrefix("    (") && line.hasSuffix(")") {
                let text = String(line.dropFirst(5).dropLast())
                if text != "no frames" { note = text }
            } else if line.hasPrefix("(") && current == nil && osTrace == nil {
                dump.notes.append(String(line.dropFirst().dropLast()))
            }
        }
        if osTrace != nil && current == nil {
            osTrace = frames
            frames = []
        } else {
            finish()
        }
        if let os = osTrace { dump.osThreadTrace = StackTrace(origin: .current, frames: os) }
        dump.snapshot = KernelSnapshot(processID: dump.processID, processName: "", wallClockNanoseconds: 0,
                                       monotonicNanoseconds: dump.snapshot.monotonicNanoseconds, includesStacks: true, kernelRunning: true,
                                       threadsSpawned: UInt64(threads.count), threads: threads, workers: [])
        return dump
    }

    /// `GreenThreads: SIGSEGV (11) in green thread 3 'crasher'; dump of all green threads, pid 4242`
    static func header(_ line: String) throws -> CrashDump {
        var s = Scanner(line)
        try s.expect("GreenThreads: ")
        let name = s.word()
        try s.expect(" (")
        let number = try s.integer()
        try s.expect(") in ")
        var crashed: UInt64?
        if s.skip("green thread ") {
            crashed = UInt64(try s.integer())
            s.skip(" ")
            _ = try s.quoted()
        } else {
            s.skip(until: ";")
        }
        try s.expect("; dump of all green threads, pid ")
        let pid = try s.integer()
        let monotonic = s.skip(", monotonic ") ? Int64(try s.integer()) : 0
        let empty = KernelSnapshot(processID: Int32(pid), processName: "", wallClockNanoseconds: 0, monotonicNanoseconds: monotonic,
                                   includesStacks: true, kernelRunning: true, threadsSpawned: 0, threads: [], workers: [])
        return CrashDump(signalName: name, signalNumber: number, crashedThreadID: crashed, processID: Int32(pid),
                         notes: [], snapshot: empty, osThreadTrace: nil)
    }

    /// `thread 3 'name' blocked on worker 1 on mutex 0x1f held by thread 2 'o', priority 8/24 (boosted), 5 switches, 1 preemptions`
    static func threadHeader(_ line: String) throws -> ThreadSnapshot {
        var s = Scanner(line)
        try s.expect("thread ")
        let id = UInt64(try s.integer())
        try s.expect(" ")
        let name = try s.quoted()
        try s.expect(" ")
        let stateWord = s.word()
        guard let state = ThreadState(rawValue: stateWord) else {
            throw FormatError(description: "unknown thread state '\(stateWord)' in: \(line)")
        }
        var worker: Int?
        if s.skip(" on worker ") { worker = try s.integer() }
        var wait: WaitSnapshot?
        if s.skip(" on ") {
            let kind = s.word()
            try s.expect(" 0x")
            let object = try s.hex()
            var owner: UInt64?
            var ownerName: String?
            if s.skip(" held by thread ") {
                owner = UInt64(try s.integer())
                if s.skip(" ") { ownerName = try s.quoted() }
            }
            wait = WaitSnapshot(kind: kind, objectID: object, ownerThreadID: owner, ownerName: ownerName, since: nil)
        }
        try s.expect(", priority ")
        let base = try s.integer()
        try s.expect("/")
        let effective = try s.integer()
        s.skip(" (boosted)")
        try s.expect(", ")
        let switches = UInt64(try s.integer())
        try s.expect(" switches, ")
        let preemptions = UInt64(try s.integer())
        return ThreadSnapshot(id: id, name: name, state: state, basePriority: base, effectivePriority: effective,
                              worker: worker, cpuTimeNanoseconds: 0, switches: switches, preemptions: preemptions,
                              deferredPreemptions: 0, wait: wait, stack: StackUsage(sizeBytes: 0, usedBytes: 0, residentBytes: 0),
                              trace: nil)
    }

    /// `    #3 0x000055d5f0e3c1a2 /path/app+0x3c1a2` (`#3*` for an interrupted PC).
    static func frame(_ line: String) throws -> StackFrame {
        var s = Scanner(line)
        try s.expect("    #")
        _ = try s.integer()
        let exact = s.skip("*")
        try s.expect(" 0x")
        let pc = try s.hex()
        var image: String?
        var offset: UInt64?
        if s.skip(" ") {
            let rest = s.rest
            guard let plus = rest.lastIndex(of: "+"), rest[rest.index(after: plus)...].hasPrefix("0x"),
                  let value = UInt64(rest[rest.index(plus, offsetBy: 3)...], radix: 16) else {
                throw FormatError(description: "bad frame image in: \(line)")
            }
            image = String(rest[..<plus])
            offset = value
        }
        return StackFrame(pc: pc, symbol: nil, offset: 0, function: nil, image: image, imageOffset: offset,
                          interrupted: exact ? true : nil)
    }

    /// A tiny cursor over one line.
    struct Scanner {
        private let chars: [Character]
        private var at = 0
        private let line: String

        init(_ line: String) {
            self.line = line
            chars = Array(line)
        }

        var rest: String { String(chars[at...]) }

        @discardableResult
        mutating func skip(_ literal: String) -> Bool {
            let lit = Array(literal)
            guard at + lit.count <= chars.count, Array(chars[at..<(at + lit.count)]) == lit else { return false }
            at += lit.count
            return true
        }

        mutating func skip(until c: Character) { while at < chars.count && chars[at] != c { at += 1 } }

        mutating func expect(_ literal: String) throws {
            guard skip(literal) else { throw FormatError(description: "expected '\(literal)' at column \(at + 1) of: \(line)") }
        }

        /// Letters, digits, '-' and '_' (a state, a wait kind, a signal name).
        mutating func word() -> String {
            let start = at
            while at < chars.count, chars[at].isLetter || chars[at].isNumber || chars[at] == "-" || chars[at] == "_" { at += 1 }
            return String(chars[start..<at])
        }

        mutating func integer() throws -> Int {
            let start = at
            if at < chars.count && chars[at] == "-" { at += 1 }
            while at < chars.count, chars[at].isASCII, chars[at].isNumber { at += 1 }
            guard let v = Int(String(chars[start..<at])) else { throw FormatError(description: "expected a number at column \(start + 1) of: \(line)") }
            return v
        }

        mutating func hex() throws -> UInt64 {
            let start = at
            while at < chars.count, chars[at].isHexDigit { at += 1 }
            guard let v = UInt64(String(chars[start..<at]), radix: 16) else { throw FormatError(description: "expected hex digits at column \(start + 1) of: \(line)") }
            return v
        }

        /// A 'quoted' name with \xNN escapes.
        mutating func quoted() throws -> String {
            try expect("'")
            var bytes: [UInt8] = []
            while at < chars.count && chars[at] != "'" {
                if chars[at] == "\\", at + 3 < chars.count, chars[at + 1] == "x",
                   let b = UInt8(String(chars[(at + 2)...(at + 3)]), radix: 16) {
                    bytes.append(b)
                    at += 4
                } else {
                    bytes += Array(String(chars[at]).utf8)
                    at += 1
                }
            }
            try expect("'")
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}
