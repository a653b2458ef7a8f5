// BlockingPool: a bounded pool of OS threads for calls that must block (a C
// library without a non-blocking mode, disk I/O, getaddrinfo), and the
// public `GreenThread.blocking`. The caller parks like any waiter; its
// worker runs other green threads meanwhile.
//
// Design. Per kernel, started on first use (KernelServices.swift). Jobs
// wait in a queue ordered by the caller's effective priority at the call,
// FIFO within a level, so a high-priority caller's job starts first when
// every pool thread is busy. Pool threads are created on demand up to
// `limit` and then kept until the kernel ends, each parked on its own
// futex word while idle (the Worker pattern: the waker takes it off the
// idle list, so one wake-up is never counted twice). Pool threads block
// SIGVTALRM: they run no green threads and must not be preempted.
//
// Lock: everything here is guarded by the kernel lock, the same lock that
// parks and wakes the callers, so a job that finishes while its caller is
// still parking cannot lose the wake-up. The job's body runs without it.
//
// Why 32 threads by default (GT_BLOCKING_THREADS overrides, 1...1024): each
// costs a task and an 8 MiB stack reservation (virtual, little RSS), and
// blocking calls are mostly waiting: 32 cover tens of overlapping DNS or
// disk waits, more than a 2-core machine's storage can serve in parallel.
import CGreenCore
import Glibc

/// One call handed to the pool (kernel lock, except `run`).
final class BlockingJob {
    let level: Int
    let sequence: UInt64
    /// Runs the caller's body and stores its result; called on a pool thread.
    let run: () -> Void
    @exclusivity(unchecked) var done = false                            // kernel lock
    // Unowned: the caller is parked while recorded (the registry keeps it
    // alive), and the field is cleared before it is woken.
    @exclusivity(unchecked) unowned(unsafe) var waiter: GreenThread?     // kernel lock

    init(level: Int, sequence: UInt64, run: @escaping () -> Void) {
        self.level = level
        self.sequence = sequence
        self.run = run
    }

    /// Order of service: higher level first, then first come.
    func runsBefore(_ other: BlockingJob) -> Bool {
        level != other.level ? level > other.level : sequence < other.sequence
    }
}

/// A binary heap of jobs by `runsBefore`.
struct BlockingJobQueue {
    private var heap: [BlockingJob] = []
    var isEmpty: Bool { heap.isEmpty }

    mutating func push(_ job: BlockingJob) {
        heap.append(job)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].runsBefore(heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> BlockingJob? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var best = i
            if l < heap.count && heap[l].runsBefore(heap[best]) { best = l }
            if r < heap.count && heap[r].runsBefore(heap[best]) { best = r }
            if best == i { break }
            heap.swapAt(i, best)
            i = best
        }
        return top
    }

    mutating func remove(_ job: BlockingJob) -> Bool {
        // Kernel lock held: Array's own members only (ArrayUnderKernelLock.swift).
        guard let i = heap.indexOfFirst(where: { $0 === job }) else { return false }
        var rest = heap
        rest.remove(at: i)
        heap = []
        var k = 0
        while k < rest.count {
            push(rest[k])
            k += 1
        }
        return true
    }
}

/// One OS thread of the pool.
final class BlockingPoolThread {
    let wakeWord = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    @exclusivity(unchecked) var isIdle = false  // kernel lock
    var osThread: OSThread?                     // set by its creator, read by stop

    init() { wakeWord.initialize(to: 0) }
    deinit { wakeWord.deallocate() }

    /// Kernel lock held.
    func wake() {
        isIdle = false
        _ = gt_atomic_fetch_add_u32(wakeWord, 1)
        _ = gt_sys_futex_wake(wakeWord, 1)
    }
}

final class BlockingPool: KernelService {
    unowned(unsafe) let kernel: KernelCore
    let limit: Int
    @exclusivity(unchecked) private var queue = BlockingJobQueue()       // kernel lock
    @exclusivity(unchecked) private var threads: [BlockingPoolThread] = [] // kernel lock
    @exclusivity(unchecked) private var idle: [BlockingPoolThread] = []    // kernel lock
    @exclusivity(unchecked) private var stopping = false                  // kernel lock
    @exclusivity(unchecked) private var nextSequence: UInt64 = 0           // kernel lock

    init(kernel: KernelCore) {
        self.kernel = kernel
        let configured = getenv("GT_BLOCKING_THREADS").flatMap { Int(String(cString: $0)) }
        limit = min(1024, max(1, configured ?? 32))
    }

    /// Kernel lock held.
    static func of(_ kernel: KernelCore) -> BlockingPool {
        kernel.service(BlockingPool.self) { BlockingPool(kernel: kernel) }
    }

    /// Runs `job` on a pool thread and parks the calling green thread until
    /// it is done. Called outside any critical section.
    func runAndWait(_ me: GreenThread, _ body: @escaping () -> Void) throws {
        // 1. Queue the job; wake an idle pool thread or reserve a new one.
        let (job, newThread) = kernel.withCriticalLock { () -> (BlockingJob, BlockingPoolThread?) in
            let job = BlockingJob(level: me.effectivePriorityLevel, sequence: nextSequence, run: body)
            nextSequence &+= 1
            queue.push(job)
            if let t = idle.popLast() {
                t.wake()
                return (job, nil)
            }
            guard threads.count < limit else { return (job, nil) }  // a busy thread will take it
            let t = BlockingPoolThread()
            threads.append(t)
            return (job, t)
        }
        // 2. Start the reserved thread outside the lock (pthread_create takes
        //    glibc's locks: preemption off meanwhile).
        if let t = newThread {
            _ = gt_enter_critical()
            let started = Result { try OSThread.start(name: "gt-blocking", blockingPreemptionSignal: true) { [self] in
                serve(t)
            } }
            KernelCore.exitCritical()
            switch started {
            case .success(let os):
                kernel.withCriticalLock { t.osThread = os }
            case .failure(let error):
                let unserved = kernel.withCriticalLock { () -> Bool in
                    threads.removeEvery { $0 === t }
                    // With no thread at all, nobody would ever run the job.
                    return threads.isEmpty && queue.remove(job)
                }
                if unserved { throw error }
            }
        }
        // 3. Park until a pool thread has run it.
        kernel.withBlockingSection {
            while !job.done {
                job.waiter = me
                kernel.externalWaitBegan()
                _ = kernel.blockCurrent(on: ThreadWait(.blockingCall, objectID: job.sequence))
            }
        }
    }

    /// A pool thread's loop: take the best job, run it, wake its caller.
    private func serve(_ me: BlockingPoolThread) {
        kernel.lock.lock()
        while true {
            if let job = queue.pop() {
                kernel.lock.unlock()
                job.run()
                kernel.lock.lock()
                job.done = true
                if let caller = job.waiter {
                    job.waiter = nil
                    kernel.externalWaitEnded()
                    kernel.makeReady(caller)
                }
                kernel.lock.unlock()
                // The job holds the caller's closure and result: if this is
                // the last reference, their deinits run here, not under the
                // kernel lock (ARC could otherwise release it right after
                // its last use above).
                withExtendedLifetime(job) {}
                kernel.lock.lock()
                continue
            }
            if stopping { break }
            me.isIdle = true
            idle.append(me)
            while me.isIdle && !stopping {
                let seq = gt_atomic_load_u32(me.wakeWord)
                kernel.lock.unlock()
                _ = gt_sys_futex_wait(me.wakeWord, seq, -1)
                kernel.lock.lock()
            }
        }
        kernel.lock.unlock()
    }

    /// Every caller has its result (the kernel ends only when every green
    /// thread has finished), so the threads are idle: wake and join them.
    func stop() {
        let all = kernel.withCriticalLock { () -> [BlockingPoolThread] in
            stopping = true
            for t in idle { t.wake() }
            idle = []
            return threads
        }
        for t in all { t.osThread?.join() }
    }
}

extension GreenThread {
    /// Runs `body`, a call that may block its OS thread (a C library call,
    /// disk I/O, `getaddrinfo`, `DispatchSemaphore.wait`), on a bounded pool
    /// of OS threads, parking only the calling green thread meanwhile; its
    /// worker keeps running other threads. The caller's priority orders the
    /// pool's queue when every pool thread is busy. Outside a kernel `body`
    /// simply runs on the calling thread.
    ///
    /// ```swift
    /// let text = try GreenThread.blocking {
    ///     try String(contentsOfFile: "/etc/hostname", encoding: .utf8)
    /// }
    /// ```
    ///
    /// `body` runs on another OS thread: it must not use green-thread
    /// operations that wait (they would block a pool thread), and its
    /// thread-local state is the pool thread's.
    /// - Returns: what `body` returns.
    /// - Throws: what `body` throws; `KernelError.system` if no pool thread
    ///   can be started at all.
    public static func blocking<T>(_ body: @escaping () throws -> T) throws -> T {
        guard let me = currentGreenThread() else { return try body() }
        let box = BlockingResult<T>()
        let pool = me.kernel.withCriticalLock { BlockingPool.of(me.kernel) }
        try pool.runAndWait(me) { box.result = Result { try body() } }
        // The kernel lock ordered the pool thread's write before this read.
        return try box.result!.get()
    }
}

/// The result of a blocking call, written by the pool thread before it
/// takes the kernel lock to wake the caller.
private final class BlockingResult<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
