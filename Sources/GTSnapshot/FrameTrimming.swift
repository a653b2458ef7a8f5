// FrameTrimming: which frames of a raw trace are the kernel's own, and the
// trim that drops them: the one definition, used by the library's
// symbolizer (live snapshots) and by gt-ps (crash dumps, which are raw).
//
// A parked thread's innermost frames are gt_switch and the scheduler's
// block path, a captured trace's the capture functions: users see their
// code from the first frame outside these (GreenThread.sleep,
// JoinHandle.join, ...). The run of kernel frames may include system-library
// frames (a futex wait inside KernelLock), so the trim goes to the last
// kernel frame of that run; a thread blocked in read(2) from its own code
// keeps its libc frame, since no kernel frame follows it. At the outer end
// the thread-entry frames (gt_trampoline, greenThreadEntry, runThreadBody)
// and everything beyond them are dropped.

package enum FrameTrimming {
    /// Mangled-name prefixes of the kernel's switch and capture code.
    static let kernelPrefixes = [
        "gt_",                                    // the C core: gt_switch, handlers, capture
        "$s12GreenThreads10KernelCoreC",          // the scheduler and its switch paths
        "$s12GreenThreads10KernelLockC",          // its lock, when a trace ends there
        "$s12GreenThreads14preemptionHook",       // the SIGVTALRM handler's switch
        "$s12GreenThreads16yieldPendingHook",
        "$s12GreenThreads12TraceCaptureO",        // Debug/TraceCapture.swift
        "$s12GreenThreads0A6ThreadC10stackTrace", // GreenThread.stackTrace()
        "$s12GreenThreads6KernelO8snapshot",      // Kernel.snapshot(includeStacks:), for its caller's trace
    ]
    /// Mangled-name prefixes of the thread-entry frames.
    static let rootPrefixes = ["gt_trampoline", "$s12GreenThreads16greenThreadEntry", "$s12GreenThreads13runThreadBody"]
    /// File-name prefixes of the C library, the loader and the vdso.
    static let systemLibraryPrefixes = ["libc.so", "libc-", "ld-linux", "ld64.so", "linux-vdso", "libpthread"]

    package static func isKernel(symbol: String) -> Bool {
        kernelPrefixes.contains { symbol.hasPrefix($0) }
    }

    package static func isThreadRoot(symbol: String) -> Bool { rootPrefixes.contains { symbol.hasPrefix($0) } }

    package static func isSystemLibrary(path: String) -> Bool {
        let file = path.split(separator: "/").last.map(String.init) ?? path
        return systemLibraryPrefixes.contains { file.hasPrefix($0) }
    }

    /// `frames` (innermost first) without the kernel's leading run and the
    /// thread-entry frames at the outer end.
    package static func trim(_ frames: [StackFrame]) -> [StackFrame] {
        var cut = 0
        for (i, frame) in frames.enumerated() {
            if let symbol = frame.symbol, isKernel(symbol: symbol) {
                cut = i + 1
            } else if !(frame.image.map(isSystemLibrary) ?? false) {
                break
            }
        }
        var kept: [StackFrame] = []
        for frame in frames[cut...] {
            if let symbol = frame.symbol, isThreadRoot(symbol: symbol) { break }
            kept.append(frame)
        }
        return kept
    }
}
