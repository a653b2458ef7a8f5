// TraceCapture: raw traces (program counters) of green threads, taken where
// the thread's registers are, and their symbolized, trimmed form.
//
// Where the registers are (see gt_unwind.h):
//   - the calling thread: its own context (`current`);
//   - a parked thread: the frame gt_switch saved (`parked`);
//   - a preempted thread: the signal frame on its stack (`preempted`);
//   - a thread running on another worker: that worker walks its own
//     interrupted context when asked with a signal (`running`).
// Trimming (GTSnapshot's FrameTrimming, shared with gt-ps's crash dumps):
// the innermost frames inside the kernel's switch and capture code and the
// outermost thread-entry frames are dropped, so a trace starts at
// GreenThread.sleep, JoinHandle.join, or the user's code, and ends at the
// thread's body.
//
// Lock order: `requestLock` -> the kernel lock. `requestLock` guards the one
// trace-request slot and is taken only by OS threads that run no green
// thread (the snapshot server, Kernel.snapshot's capture thread).
import CGreenCore
import GTSnapshot
import Synchronization

/// A trace before symbolization.
struct RawTrace {
    var pcs: [UInt] = []
    var exact: [Bool] = []
    var truncated = false
    var origin: StackTrace.Origin
    var note: String?

    init(origin: StackTrace.Origin, note: String? = nil) {
        self.origin = origin
        self.note = note
    }

    /// Copies a C trace.
    init(_ raw: UnsafePointer<gt_trace>, origin: StackTrace.Origin) {
        self.origin = origin
        let count = Int(max(0, raw.pointee.count))
        withUnsafeBytes(of: raw.pointee.pc) { pcs = Array($0.bindMemory(to: UInt.self).prefix(count)) }
        withUnsafeBytes(of: raw.pointee.exact) { exact = $0.prefix(count).map { $0 != 0 } }
        truncated = raw.pointee.truncated != 0
    }

    /// Symbolizes and trims (see the top of the file). Not in a signal handler.
    func symbolized() -> StackTrace {
        let frames = FrameTrimming.trim(zip(pcs, exact).map { Symbolizer.frame(pc: $0, exact: $1) })
        var note = self.note
        if note == nil && frames.isEmpty && origin == .parked { note = "not started yet" }
        return StackTrace(origin: origin, frames: frames, truncated: truncated, note: note)
    }
}

enum TraceCapture {
    /// How long a worker has to answer a trace request. It only waits when
    /// the worker's thread sits where a walk is unsafe (mid-switch, in the
    /// loader) or has SIGVTALRM blocked. The asker holds no lock meanwhile.
    static let requestTimeoutNanoseconds: Int64 = 50_000_000

    /// Attempts at tracing a running thread that keeps moving (switched out
    /// or migrated between the post and the answer).
    static let runningAttempts = 3

    /// The trace-request slot, guarded by `requestLock`. Never freed: a late
    /// handler may still look at it (unwind.c); a request a handler still
    /// holds after a timeout is abandoned and replaced.
    nonisolated(unsafe) private(set) static var request = makeRequest()
    static let requestLock = Mutex<Void>(())

    private static func makeRequest() -> UnsafeMutablePointer<gt_trace_request> {
        let p = UnsafeMutablePointer<gt_trace_request>.allocate(capacity: 1)
        p.initialize(to: gt_trace_request())
        return p
    }

    /// The calling thread's trace. `@inline(never)`: its frame and the C
    /// capture's are the innermost ones, which trimming drops by name.
    @inline(never)
    static func current() -> RawTrace {
        let raw = UnsafeMutablePointer<gt_trace>.allocate(capacity: 1)  // 1.2 KiB: off the green stack
        defer { raw.deallocate() }
        _ = gt_trace_current(raw)
        return RawTrace(raw, origin: .current)
    }

    /// A switched-out thread's trace. The kernel lock is held, so the thread
    /// cannot be resumed while its stack is read.
    static func switchedOut(_ core: UnsafeMutablePointer<gt_thread_core>) -> RawTrace {
        let raw = UnsafeMutablePointer<gt_trace>.allocate(capacity: 1)
        defer { raw.deallocate() }
        if let context = core.pointee.preempt_context {
            _ = gt_trace_ucontext(context, raw)
            return RawTrace(raw, origin: .preempted)
        }
        _ = gt_trace_switch_frame(core.pointee.sp, raw)
        return RawTrace(raw, origin: .parked)
    }

    /// Waits for the answer to a request posted to the worker with `tid`
    /// (`requestLock` held, kernel lock not held). Returns the trace, or the
    /// outcome when there is none.
    static func awaitRunning(tid: Int32) -> (RawTrace?, Int32) {
        let outcome = gt_trace_request_wait(request, tid, requestTimeoutNanoseconds)
        if outcome == Int32(GT_TRACE_ABANDONED) { request = makeRequest() }  // the old one leaks, on purpose
        guard outcome == Int32(GT_TRACE_OK) else { return (nil, outcome) }
        return (withUnsafePointer(to: &request.pointee.trace) { RawTrace($0, origin: .running) }, outcome)
    }

    /// Why a running thread has no trace.
    static func unavailable(_ outcome: Int32, workerIndex: Int) -> RawTrace {
        let why: String
        switch outcome {
        case Int32(GT_TRACE_NO_HEADROOM): why = "too little stack left to walk it safely"
        case Int32(GT_TRACE_UNAVAILABLE): why = "no trace of a running thread without preemption signals"
        case Int32(GT_TRACE_NOT_RUNNING): why = "it kept moving while being traced"
        case Int32(GT_TRACE_BUSY): why = "a dump was using its worker"
        default: why = "worker \(workerIndex) did not answer in time"
        }
        return RawTrace(origin: .unavailable, note: "running on worker \(workerIndex): \(why)")
    }
}

extension GreenThread {
    /// The stack trace of the calling code: symbolized frames from the
    /// caller outward, without the kernel's own frames. Works on any thread,
    /// green or not.
    ///
    /// ```swift
    /// let trace = GreenThread.stackTrace()
    /// print(trace)              // "#0 0x55... myapp.handle(request:) + 42 (myapp)" ...
    /// ```
    @inline(never)
    public static func stackTrace() -> StackTrace {
        TraceCapture.current().symbolized()
    }
}
