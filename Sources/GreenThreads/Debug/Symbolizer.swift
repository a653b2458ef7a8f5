// Symbolizer: program counters to frames (symbol + offset, image, demangled
// name), outside signal handlers only: dladdr may take the loader lock and
// demangling allocates (BRIEF.md hazard 10).
//
// Lookups are cached per PC for the process (code addresses stay valid while
// their image is loaded; the cache is dropped wholesale when it grows past
// `cacheLimit`, so an unloaded image's stale names cannot accumulate).
//
// Lock: `cache` is a leaf lock. Green threads hold it only inside
// `withoutPreemption` (a preempted holder would block every other thread of
// its worker that symbolizes).
import CGreenCore
import Glibc
import GTSnapshot
import Synchronization

enum Symbolizer {
    /// Lookups kept before the cache is cleared.
    static let cacheLimit = 65_536

    private struct Key: Hashable {
        var pc: UInt
        var exact: Bool
    }

    private static let cache = Mutex<[Key: StackFrame]>([:])

    /// The absolute path of the running executable (/proc/self/exe).
    private static let mainExecutable: String? = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }()

    /// The frame for `pc`; `exact`: an interrupted instruction rather than a
    /// return address (see gt_trace in gt_unwind.h).
    static func frame(pc: UInt, exact: Bool) -> StackFrame {
        let key = Key(pc: pc, exact: exact)
        if let hit = GreenThread.withoutPreemption({ cache.withLock { $0[key] } }) { return hit }
        let frame = lookUp(pc: pc, exact: exact)
        GreenThread.withoutPreemption {
            cache.withLock {
                if $0.count >= cacheLimit { $0.removeAll(keepingCapacity: true) }
                $0[key] = frame
            }
        }
        return frame
    }

    private static func lookUp(pc: UInt, exact: Bool) -> StackFrame {
        var symbol: String?
        var offset: UInt64 = 0
        var function: String?
        var shortName: String?
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 1024) { buffer in
            guard gt_symbol_lookup(pc, exact ? 1 : 0, buffer.baseAddress, buffer.count, &offset) == 0 else { return }
            symbol = String(cString: buffer.baseAddress!)
            if let demangled = gt_demangle(buffer.baseAddress) {
                function = String(cString: demangled)
                free(demangled)
            }
            if function != nil, let short = gt_demangle_short(buffer.baseAddress) {
                shortName = String(cString: short)
                free(short)
            }
        }
        var path: UnsafePointer<CChar>?
        var base: UInt = 0
        var image: String?
        var imageOffset: UInt64?
        if gt_image_lookup(pc, &path, &base) == 0, let path {
            image = String(cString: path)
            // The loader names the main executable as it was started
            // (argv[0], often relative): tools want a path that works anywhere.
            if image?.hasPrefix("/") == false, let exe = mainExecutable,
               exe.hasSuffix("/" + (image!.split(separator: "/").last.map(String.init) ?? "")) {
                image = exe
            }
            imageOffset = UInt64(pc &- base)
        }
        return StackFrame(pc: UInt64(pc), symbol: symbol, offset: offset, function: function,
                          shortName: shortName, image: image, imageOffset: imageOffset,
                          interrupted: exact ? true : nil)
    }
}
