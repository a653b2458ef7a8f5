// ProcMemory: resident memory as the kernel reports it in /proc/self.
// RSS per live thread = (VmHWM read while all N threads are parked - VmRSS
// read just before the first spawn) / N, the definition Tools/peers uses.
// Stack bytes touched = the resident bytes (smaps "Rss") of the mappings
// that hold the threads' stacks, found by the address of a local variable
// each thread reports, divided by N.
import Glibc

enum ProcMemory {
    /// The whole text of a /proc file (their sizes read as 0, so read to EOF).
    static func read(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A `Name:   1234 kB` field of /proc/self/status, in bytes.
    static func statusBytes(_ field: String) -> Int {
        for line in read("/proc/self/status").split(separator: "\n") where line.hasPrefix(field + ":") {
            let digits = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "0"
            return (Int(digits) ?? 0) * 1024
        }
        return 0
    }

    static var residentBytes: Int { statusBytes("VmRSS") }
    static var peakResidentBytes: Int { statusBytes("VmHWM") }

    /// Resets VmHWM to the current RSS (Linux: writing 5 to clear_refs), so
    /// a peak measured later is this run's, not start-up's.
    static func resetPeak() {
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = write(fd, "5", 1)
        close(fd)
    }

    /// Resident bytes of every mapping that contains at least one of
    /// `addresses` (sorted ascending).
    static func residentBytesOfMappings(containing addresses: UnsafeBufferPointer<UInt>) -> Int {
        var total = 0
        var inside = false
        for line in read("/proc/self/smaps").split(separator: "\n", omittingEmptySubsequences: true) {
            if let first = line.first, first.isHexDigit, let dash = line.firstIndex(of: "-"),
               let space = line.firstIndex(of: " "), dash < space,
               let start = UInt(line[line.startIndex..<dash], radix: 16),
               let end = UInt(line[line.index(after: dash)..<space], radix: 16) {
                inside = containsAny(addresses, from: start, to: end)
            } else if inside && line.hasPrefix("Rss:") {
                let digits = line.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "0"
                total += (Int(digits) ?? 0) * 1024
            }
        }
        return total
    }

    /// Whether a sorted buffer holds a value in `start..<end` (binary search).
    private static func containsAny(_ sorted: UnsafeBufferPointer<UInt>, from start: UInt, to end: UInt) -> Bool {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < start { lo = mid + 1 } else { hi = mid }
        }
        return lo < sorted.count && sorted[lo] < end
    }
}

/// A preallocated, pre-touched array of N addresses that threads fill in
/// (touched before the RSS baseline, so it is not counted as thread memory).
final class AddressLog: @unchecked Sendable {
    let slots: UnsafeMutableBufferPointer<UInt>

    init(count: Int) {
        slots = .allocate(capacity: max(count, 1))
        slots.initialize(repeating: 0)
    }

    deinit { slots.deallocate() }

    /// Records the address of a local variable of the calling thread: a
    /// point inside its stack.
    @inline(never) func recordStackAddress(at index: Int) {
        var marker = index
        withUnsafeMutablePointer(to: &marker) { slots[index] = UInt(bitPattern: $0) }
    }

    /// Resident stack bytes of the recorded threads' stacks.
    func stackResidentBytes() -> Int {
        let sorted = slots.filter { $0 != 0 }.sorted()
        return sorted.withUnsafeBufferPointer { ProcMemory.residentBytesOfMappings(containing: $0) }
    }
}
