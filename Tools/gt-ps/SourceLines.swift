// SourceLines: file:line for frames, and names for the raw frames of a
// crash dump, from addr2line (binutils), run once per image with every
// address of that image on its standard input (batched: one process per
// image, not per frame). libdw would do it in-process, but it is not a
// dependency of the project; without addr2line, frames keep what they had.
//
// Addresses: `imageOffset` is pc minus the image's load base, what
// `addr2line -e <image>` wants for position-independent images. A return
// address points after its call, so the byte before it is looked up (else a
// call at the end of a function would name the next line, or function).
import Foundation
import GTSnapshot

enum SourceLines {
    /// addr2line on $PATH, if any.
    static let tool: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/addr2line"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }()

    /// One lookup: the function's linkage name and `file:line`, either may be unknown.
    struct Answer {
        var symbol: String?
        var location: String?
    }

    /// Fills `sourceLocation` (and, for frames without a symbol, `symbol`,
    /// `function` and `shortName`) in every frame of `snapshot`. Returns why
    /// not, if it could not (no addr2line).
    @discardableResult
    static func annotate(_ snapshot: inout KernelSnapshot) -> String? {
        guard let tool else { return "addr2line not found: no file:line" }
        // Every (image, address) once.
        var wanted: [String: Set<UInt64>] = [:]
        for t in snapshot.threads {
            for f in t.trace?.frames ?? [] {
                if let image = f.image, let address = lookupAddress(f) { wanted[image, default: []].insert(address) }
            }
        }
        var answers: [String: [UInt64: Answer]] = [:]
        for (image, addresses) in wanted {
            answers[image] = run(tool, image: image, addresses: addresses.sorted())
        }
        for i in snapshot.threads.indices {
            guard var trace = snapshot.threads[i].trace else { continue }
            trace.frames = trace.frames.map { frame in
                var f = frame
                guard let image = f.image, let address = lookupAddress(f), let a = answers[image]?[address] else { return f }
                f.sourceLocation = a.location
                if f.symbol == nil, let symbol = a.symbol {
                    f.symbol = symbol
                    f.function = Demangler.full(symbol)
                    f.shortName = Demangler.short(symbol)
                }
                return f
            }
            snapshot.threads[i].trace = trace
        }
        return nil
    }

    private static func lookupAddress(_ f: StackFrame) -> UInt64? {
        guard let offset = f.imageOffset else { return nil }
        return f.interrupted == true || offset == 0 ? offset : offset - 1
    }

    /// `addr2line -f -e image` with the addresses on stdin: two lines each
    /// (function, file:line); `??` means unknown.
    private static func run(_ tool: String, image: String, addresses: [UInt64]) -> [UInt64: Answer] {
        guard FileManager.default.fileExists(atPath: image) else { return [:] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-f", "-e", image]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return [:] }
        // Written from another thread: addr2line answers as it reads, and a
        // full output pipe would otherwise stall both sides.
        let text = addresses.map { "0x" + String($0, radix: 16) }.joined(separator: "\n") + "\n"
        let writer = Thread {
            input.fileHandleForWriting.write(Data(text.utf8))
            try? input.fileHandleForWriting.close()
        }
        writer.start()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        var out: [UInt64: Answer] = [:]
        for (i, address) in addresses.enumerated() where 2 * i + 1 < lines.count {
            let function = String(lines[2 * i]), location = String(lines[2 * i + 1])
            out[address] = Answer(symbol: function == "??" ? nil : function,
                                  location: shorten(location))
        }
        return out
    }

    /// `/long/path/Sources/App/File.swift:42 (discriminator 3)` -> `File.swift:42`
    /// (the table is narrow; --json keeps the frames' images in full).
    /// Nil when addr2line knows no line (`??:0`, `file:?`, `<compiler-generated>`).
    private static func shorten(_ location: String) -> String? {
        let plain = location.split(separator: " ").first.map(String.init) ?? location
        guard !plain.hasPrefix("??"), !plain.hasPrefix("<"), !plain.hasSuffix(":?"), !plain.hasSuffix(":0") else { return nil }
        return plain.split(separator: "/").last.map(String.init) ?? plain
    }
}

/// Demangling with the Swift runtime's own demangler (gt-ps links it), and
/// the short form its crash backtracer prints, when the runtime has it.
enum Demangler {
    @_silgen_name("swift_demangle")
    private static func swift_demangle(_ mangled: UnsafePointer<CChar>?, _ length: Int, _ output: UnsafeMutablePointer<CChar>?,
                                       _ outputSize: UnsafeMutablePointer<Int>?, _ flags: UInt32) -> UnsafeMutablePointer<CChar>?

    private typealias ShortDemangle = @convention(c) (UnsafePointer<CChar>?, Int, UnsafeMutablePointer<CChar>?,
                                                      UnsafeMutablePointer<Int>?) -> UnsafeMutablePointer<CChar>?
    private static let shortForm: ShortDemangle? = {
        guard let p = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "_swift_backtrace_demangle") else { return nil }
        return unsafeBitCast(p, to: ShortDemangle.self)
    }()

    static func full(_ symbol: String) -> String? {
        symbol.withCString { name in
            guard let out = swift_demangle(name, strlen(name), nil, nil, 0) else { return nil }
            defer { free(out) }
            return String(cString: out)
        }
    }

    static func short(_ symbol: String) -> String? {
        guard let shortForm, full(symbol) != nil else { return nil }
        return symbol.withCString { name in
            guard let out = shortForm(name, strlen(name), nil, nil) else { return nil }
            defer { free(out) }
            return String(cString: out)
        }
    }
}
