// KernelSnapshot: what a running GreenThreads kernel looks like at one
// moment: its threads (state, priorities, counters, what each waits on, its
// stack use and trace), its workers, and the wait-for graph with its cycles.
//
// This module is shared by the library, which builds and serves snapshots,
// and by the tools (gt-ps), which read them: it depends on the toolchain
// only, and its types are plain Codable values. The JSON form is versioned
// (`formatVersion`): a field is only ever added (optional, so older readers
// ignore it); a change in meaning bumps the version. New per-kernel lists
// (processors, OS threads) go beside `workers` as optional arrays.

#if canImport(Glibc)
import Glibc
#endif

/// A snapshot of a running kernel.
///
/// ```swift
/// let snapshot = Kernel.snapshot(includeStacks: true)
/// for t in snapshot.threads where t.state == .blocked { print(t.headerLine) }
/// print(snapshot)          // the text form, traces included
/// ```
public struct KernelSnapshot: Codable, Sendable {
    /// The version of this format written by this build.
    public static let formatVersion = 1

    /// The format version this snapshot was written with.
    public var version: Int
    /// The process the kernel runs in.
    public var processID: Int32
    public var processName: String
    /// When the snapshot was taken: wall clock (CLOCK_REALTIME) and the
    /// monotonic clock that sleep deadlines use, in nanoseconds.
    public var wallClockNanoseconds: Int64
    public var monotonicNanoseconds: Int64
    /// Whether threads carry traces (`Kernel.snapshot(includeStacks:)`).
    public var includesStacks: Bool
    /// Whether a kernel was running (false: the lists are empty).
    public var kernelRunning: Bool
    /// Threads spawned by this kernel so far, finished ones included.
    public var threadsSpawned: UInt64
    /// Live threads, oldest first.
    public var threads: [ThreadSnapshot]
    public var workers: [WorkerSnapshot]
    /// The kernel's OS threads and what each does (issue 11). Optional:
    /// added in format 1; older writers omit it.
    public var osThreads: [OSThreadSnapshot]?
    /// Who waits for whom, with the cycles (deadlocks) among them.
    public var waitGraph: WaitForGraph
    /// The snapshot server's counters, when a server answered.
    public var server: DebugServerStatistics?

    public init(version: Int = KernelSnapshot.formatVersion, processID: Int32, processName: String,
                wallClockNanoseconds: Int64, monotonicNanoseconds: Int64, includesStacks: Bool,
                kernelRunning: Bool, threadsSpawned: UInt64, threads: [ThreadSnapshot],
                workers: [WorkerSnapshot], osThreads: [OSThreadSnapshot]? = nil,
                server: DebugServerStatistics? = nil) {
        self.version = version
        self.processID = processID
        self.processName = processName
        self.wallClockNanoseconds = wallClockNanoseconds
        self.monotonicNanoseconds = monotonicNanoseconds
        self.includesStacks = includesStacks
        self.kernelRunning = kernelRunning
        self.threadsSpawned = threadsSpawned
        self.threads = threads
        self.workers = workers
        self.osThreads = osThreads
        self.waitGraph = WaitForGraph(threads: threads)
        self.server = server
    }

    /// The thread with this id, if it is in the snapshot.
    public func thread(id: UInt64) -> ThreadSnapshot? { threads.first { $0.id == id } }
}

/// What a thread is doing.
public enum ThreadState: String, Codable, Sendable, CaseIterable {
    case ready, running, blocked, sleeping, finished
}

/// One green thread in a snapshot.
public struct ThreadSnapshot: Codable, Sendable {
    public var id: UInt64
    public var name: String
    public var state: ThreadState
    /// Priority levels (0...31): as set, and as scheduled (raised by
    /// priority inheritance while a higher-priority thread waits on it).
    public var basePriority: Int
    public var effectivePriority: Int
    /// The worker running it (state `running`), else nil.
    public var worker: Int?
    public var cpuTimeNanoseconds: UInt64
    /// Times switched in; times its slice was ended by the timer; times a
    /// due preemption had to wait for a safe point.
    public var switches: UInt64
    public var preemptions: UInt64
    public var deferredPreemptions: UInt64
    /// What it waits on (blocked or sleeping), else nil.
    public var wait: WaitSnapshot?
    public var stack: StackUsage
    /// Its stack trace, when the snapshot includes stacks.
    public var trace: StackTrace?
    /// The GreenMutexes it holds, most recently locked first. Nil when not
    /// known: a running thread's list changes under the reader (it is the
    /// owner's own, unlocked); the mutexes others wait for are still in
    /// their `wait`. Added in format 1 as an optional (older writers omit it).
    public var heldMutexes: [HeldMutex]?

    public init(id: UInt64, name: String, state: ThreadState, basePriority: Int, effectivePriority: Int,
                worker: Int?, cpuTimeNanoseconds: UInt64, switches: UInt64, preemptions: UInt64,
                deferredPreemptions: UInt64, wait: WaitSnapshot?, stack: StackUsage, trace: StackTrace?,
                heldMutexes: [HeldMutex]? = nil) {
        self.id = id
        self.name = name
        self.state = state
        self.basePriority = basePriority
        self.effectivePriority = effectivePriority
        self.worker = worker
        self.cpuTimeNanoseconds = cpuTimeNanoseconds
        self.switches = switches
        self.preemptions = preemptions
        self.deferredPreemptions = deferredPreemptions
        self.wait = wait
        self.stack = stack
        self.trace = trace
        self.heldMutexes = heldMutexes
    }

    /// Whether the effective priority is raised above the base by inheritance.
    public var isBoosted: Bool { effectivePriority > basePriority }
}

/// A mutex a thread holds.
public struct HeldMutex: Codable, Sendable, Equatable {
    public var id: UInt64
    public var name: String

    public init(id: UInt64, name: String) {
        self.id = id
        self.name = name
    }
}

/// What a blocked or sleeping thread waits on. The library keeps the same
/// value in each thread's control block (`GreenThreads.WaitRecord`), made
/// when the wait begins.
public struct WaitSnapshot: Codable, Sendable, Equatable, CustomStringConvertible {
    /// "join", "sleep", "mutex", "condition", ...
    public var kind: String
    /// The object's identity (for a sleep: its deadline on the monotonic clock).
    public var objectID: UInt64
    /// The thread that must act to release the waiter (the joined thread,
    /// the mutex owner), if known.
    public var ownerThreadID: UInt64?
    public var ownerName: String?
    /// When the wait began, on the monotonic clock (the snapshot's
    /// `monotonicNanoseconds` minus this is how long it has waited).
    /// Optional: added in format 1; older writers omit it.
    public var sinceMonotonicNanoseconds: Int64?
    /// The name of the object waited on (a mutex's name), when known.
    public var objectName: String?

    /// `since` defaults to now: a record is made as its wait begins.
    public init(kind: String, objectID: UInt64, ownerThreadID: UInt64? = nil, ownerName: String? = nil,
                since: Int64? = WaitSnapshot.monotonicNow(), objectName: String? = nil) {
        self.kind = kind
        self.objectID = objectID
        self.ownerThreadID = ownerThreadID
        self.ownerName = ownerName
        self.sinceMonotonicNanoseconds = since
        self.objectName = objectName
    }

    /// CLOCK_MONOTONIC in nanoseconds (the clock of sleep deadlines and of
    /// `KernelSnapshot.monotonicNanoseconds`; the vDSO makes it ~20 ns).
    public static func monotonicNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    public var description: String {
        var s = "\(kind) 0x\(String(objectID, radix: 16))"
        if let owner = ownerThreadID { s += " held by thread \(owner)" + (ownerName.map { " '\(printable($0))'" } ?? "") }
        return s
    }
}

/// A thread's stack: its size and how much of it was ever touched.
public struct StackUsage: Codable, Sendable, Equatable {
    /// Usable bytes (the control block at the top included).
    public var sizeBytes: Int
    /// High-water mark: bytes from the top of the stack down to the lowest
    /// page ever touched, measured with mincore(2) without touching a page.
    /// A recycled stack keeps the pages its earlier owners touched.
    public var usedBytes: Int
    /// Pages of the stack in memory, in bytes.
    public var residentBytes: Int

    public init(sizeBytes: Int, usedBytes: Int, residentBytes: Int) {
        self.sizeBytes = sizeBytes
        self.usedBytes = usedBytes
        self.residentBytes = residentBytes
    }
}

/// One worker (OS thread) of the kernel.
public struct WorkerSnapshot: Codable, Sendable {
    public var index: Int
    /// Its kernel thread id (as shown by `top -H`, gdb, perf), 0 before it started.
    public var osThreadID: Int32
    /// The thread it runs, nil while idle.
    public var currentThreadID: UInt64?
    public var isIdle: Bool
    /// On the OS thread that holds this processor now: SIGVTALRM
    /// deliveries, preemptions taken, and preemptions deferred (critical
    /// section, withoutPreemption, inside malloc).
    public var ticks: UInt64
    public var preemptions: UInt64
    public var deferrals: UInt64
    /// Retry timers of the first preemption design; always 0 since
    /// preempted threads keep their OS thread (nothing is retried). Kept so
    /// that format 1 readers still decode.
    public var retries: UInt64
    /// Hand-offs of this processor (issue 11; optional, format 1): to a
    /// spare OS thread when its OS thread parked with a preempted thread, to
    /// a parked thread's own OS thread when that thread resumed, and taken
    /// by the monitor from an OS thread blocked in the OS.
    public var parkHandoffs: UInt64?
    public var resumeHandoffs: UInt64?
    public var blockedHandoffs: UInt64?
    /// Times its OS thread was woken from idle sleep to look for work
    /// (issue 12; optional, format 1). A processor that finds work while it
    /// spins before sleeping needs no wake-up.
    public var idleWakeups: UInt64?
    /// Times it waited briefly for I/O work at the level of a thread that
    /// blocked, rather than start a lower thread: claimed by such work, and
    /// timed out (issue 13; optional, format 1).
    public var lingersServed: UInt64?
    public var lingersTimedOut: UInt64?

    public init(index: Int, osThreadID: Int32, currentThreadID: UInt64?, isIdle: Bool,
                ticks: UInt64, preemptions: UInt64, deferrals: UInt64, retries: UInt64) {
        self.index = index
        self.osThreadID = osThreadID
        self.currentThreadID = currentThreadID
        self.isIdle = isIdle
        self.ticks = ticks
        self.preemptions = preemptions
        self.deferrals = deferrals
        self.retries = retries
    }
}

/// One OS thread of the kernel (a "Machine").
public struct OSThreadSnapshot: Codable, Sendable, Equatable {
    /// What it does: runs green code holding a processor (or schedules on
    /// it), sleeps inside the handler with the preempted thread it keeps,
    /// waits as a spare, or is blocked in the OS after the monitor took its
    /// processor.
    public enum Role: String, Codable, Sendable {
        case running, scheduling, parked, spare, blocked
    }
    /// The kernel's number for it (gt-m<id> in top -H).
    public var id: Int
    /// Its kernel thread id, 0 before it started.
    public var osThreadID: Int32
    public var role: Role
    /// The processor it holds, if any.
    public var processor: Int?
    /// The green thread it runs or keeps, if any.
    public var threadID: UInt64?
    /// Times it parked with a preempted thread.
    public var parks: UInt64

    public init(id: Int, osThreadID: Int32, role: Role, processor: Int?, threadID: UInt64?, parks: UInt64) {
        self.id = id
        self.osThreadID = osThreadID
        self.role = role
        self.processor = processor
        self.threadID = threadID
        self.parks = parks
    }
}

/// The snapshot server's counters since the kernel started.
public struct DebugServerStatistics: Codable, Sendable, Equatable {
    public var socketPath: String
    public var requestsServed: UInt64
    /// Connections from another user, refused after the SO_PEERCRED check.
    public var refusedPeers: UInt64
    /// Requests dropped as malformed, oversized or too slow.
    public var badRequests: UInt64
    /// Connections refused because `maxClients` were already open.
    /// Optional: added in format 1; older writers omit it.
    public var refusedBusy: UInt64?
    /// The most connections the server keeps open at once.
    public var maxClients: Int?

    public init(socketPath: String, requestsServed: UInt64, refusedPeers: UInt64, badRequests: UInt64,
                refusedBusy: UInt64? = nil, maxClients: Int? = nil) {
        self.socketPath = socketPath
        self.requestsServed = requestsServed
        self.refusedPeers = refusedPeers
        self.badRequests = badRequests
        self.refusedBusy = refusedBusy
        self.maxClients = maxClients
    }
}

/// The answer to a `summary` request: counts only, taken under the kernel
/// lock in one pass without copying any thread, so a tool can ask every
/// process of a machine for it.
public struct KernelSummary: Codable, Sendable, Equatable {
    public var processID: Int32
    public var processName: String
    public var kernelRunning: Bool
    public var threads: Int
    public var ready: Int
    public var running: Int
    public var blocked: Int
    public var sleeping: Int
    public var workers: Int
    public var threadsSpawned: UInt64
    public var server: DebugServerStatistics?

    public init(processID: Int32, processName: String, kernelRunning: Bool, threads: Int, ready: Int,
                running: Int, blocked: Int, sleeping: Int, workers: Int, threadsSpawned: UInt64,
                server: DebugServerStatistics? = nil) {
        self.processID = processID
        self.processName = processName
        self.kernelRunning = kernelRunning
        self.threads = threads
        self.ready = ready
        self.running = running
        self.blocked = blocked
        self.sleeping = sleeping
        self.workers = workers
        self.threadsSpawned = threadsSpawned
        self.server = server
    }
}
