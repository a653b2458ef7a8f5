// StackTrace: the symbolized frames of one green thread, innermost first,
// with the kernel's own switch frames already trimmed.

/// A stack trace: frames from the innermost (where the thread is) outward.
///
/// ```swift
/// let trace = GreenThread.stackTrace()
/// print(trace)                        // one line per frame
/// trace.frames.map(\.displayName)     // demangled function names
/// ```
public struct StackTrace: Codable, Sendable, CustomStringConvertible {
    /// Where the registers the walk started from came from.
    public enum Origin: String, Codable, Sendable {
        /// The calling thread itself.
        case current
        /// A thread switched out at a blocking call, a yield or before its
        /// first run: the frame the context switch saved.
        case parked
        /// A thread switched out by the timer: the signal frame on its stack.
        case preempted
        /// A thread running on another worker, which walked its own stack
        /// when asked with a signal.
        case running
        /// No trace could be taken; `note` says why.
        case unavailable
    }

    public var origin: Origin
    public var frames: [StackFrame]
    /// The walk stopped at its frame limit before the thread's root.
    public var truncated: Bool
    /// Why the trace is missing or partial, if it is.
    public var note: String?

    public init(origin: Origin, frames: [StackFrame], truncated: Bool = false, note: String? = nil) {
        self.origin = origin
        self.frames = frames
        self.truncated = truncated
        self.note = note
    }

    /// Display names of the frames, innermost first.
    public var functionNames: [String] { frames.map(\.displayName) }

    /// One line per frame, as in the snapshot's text form.
    public var description: String { lines(indent: "").joined(separator: "\n") }

    /// The frame lines, each prefixed with `indent`.
    public func lines(indent: String) -> [String] {
        var out = frames.enumerated().map { indent + $0.element.line(index: $0.offset) }
        if truncated { out.append(indent + "...") }
        if let note { out.append(indent + "(\(note))") } else if frames.isEmpty { out.append(indent + "(no frames)") }
        return out
    }
}

/// One frame of a trace.
public struct StackFrame: Codable, Sendable, Hashable {
    /// The program counter: the interrupted instruction for the innermost
    /// frame of a preempted or running thread, else a return address.
    public var pc: UInt64
    /// The symbol containing `pc` as the linker knows it (Swift names are
    /// mangled), if any.
    public var symbol: String?
    /// Bytes from the symbol's start to `pc`.
    public var offset: UInt64
    /// The demangled name (Swift or C++), or nil when `symbol` is a plain C name.
    public var function: String?
    /// A short form for narrow displays: `GreenThread.sleep(for:)` rather
    /// than `static GreenThreads.GreenThread.sleep(for: Swift.Duration) -> ()`.
    public var shortName: String?
    /// Path of the executable or shared object holding `pc`.
    public var image: String?
    /// `pc` relative to the image's load address: what
    /// `addr2line -f -C -e <image> <imageOffset>` wants (position-independent
    /// images; `-1` the offset for return addresses to land on the call).
    public var imageOffset: UInt64?
    /// `file.swift:42`, where debug information has it (gt-ps fills it in
    /// with addr2line; the library does not look it up). Optional: added
    /// in format 1; older writers omit it.
    public var sourceLocation: String?
    /// True when `pc` is an interrupted instruction rather than a return
    /// address (look up `imageOffset` itself, not the byte before it). Nil
    /// means a return address. Optional: added in format 1.
    public var interrupted: Bool?

    public init(pc: UInt64, symbol: String?, offset: UInt64, function: String?, shortName: String? = nil,
                image: String?, imageOffset: UInt64?, sourceLocation: String? = nil, interrupted: Bool? = nil) {
        self.pc = pc
        self.symbol = symbol
        self.offset = offset
        self.function = function
        self.shortName = shortName
        self.image = image
        self.imageOffset = imageOffset
        self.sourceLocation = sourceLocation
        self.interrupted = interrupted
    }

    /// The demangled name, else the symbol, else "???".
    public var displayName: String { function ?? symbol ?? "???" }

    /// The short name when there is one, else `displayName`.
    public var compactName: String { shortName ?? displayName }

    /// The last path component of `image`.
    public var imageName: String? {
        guard let image else { return nil }
        return image.split(separator: "/").last.map(String.init) ?? image
    }

    /// `#3 0x55d5f0e3c1a2 JoinHandle.join() + 50 (app)`: the text form's
    /// frame line, with the short name (the full one is in `function`).
    public func line(index: Int) -> String {
        var s = "#\(index) \(hex(pc, width: 12)) \(compactName)"
        if symbol != nil { s += " + \(offset)" }
        if let imageName {
            // An unnamed frame gets its image offset, for addr2line.
            s += symbol == nil ? " (\(imageName)+\(hex(imageOffset ?? 0)))" : " (\(imageName))"
        }
        if let sourceLocation { s += " at \(sourceLocation)" }
        return s
    }
}

/// `0x` and at least `width` lower-case hex digits.
func hex(_ value: UInt64, width: Int = 1) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, width - digits.count)) + digits
}
