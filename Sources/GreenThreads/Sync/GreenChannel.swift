// GreenChannel: a typed FIFO channel between green threads, buffered or a
// rendezvous (capacity 0), which can be closed.
//
// Owns: the ring buffer of values, the queues of blocked senders (each
// holding the value it offers) and blocked receivers.
//
// Invariants (kernel lock):
// - Values leave in the order they entered: the buffer first, then the
//   values of blocked senders, served by the senders' priority.
// - No lost wake-up: receivers wait only while the buffer is empty and no
//   sender waits; senders wait only while the buffer is full (always, for a
//   rendezvous) and no receiver waits. Each operation that changes this
//   hands over directly: a send to a waiting receiver gives it the value; a
//   receive from a full buffer pulls the top sender's value in behind.
// - A rendezvous send returns once a receiver has taken its value.
// - After close() nobody waits: blocked receivers get nil (after the buffer
//   is drained, which happens first since they wait only on an empty one),
//   blocked senders get GreenChannelError.closed and their values are
//   dropped; later sends throw, later receives drain the buffer then get nil.
// - Both queues serve the highest effective priority first, FIFO within a
//   level, and requeue a waiter whose priority changes.
// - A waiting thread's value lives in a slot in its own frame (Go's
//   sudog.elem): `SyncWaiter.element` points at it while it waits. A
//   blocked sender's slot holds its value until a receiver moves it out; a
//   blocked receiver's slot is empty until a sender (or the buffer) moves a
//   value in. The peer moves the value slot to slot, under the lock, before
//   it serves the waiter. The hot paths never build a `T?` or any other
//   generic type over T: each such type costs a metadata lookup in the
//   runtime's cache per use (a quarter of a rendezvous hand-off, measured).
//   So `send` and `receive` are inlinable shells that build the value's
//   slot (and the `T?` result) in the caller, where T is usually concrete,
//   around cores that take the slot; and the channel's existentials as a
//   wait object (`GreenChannel<T>`'s metadata and witness tables) are made
//   once, at init, and kept as plain words (UnretainedExistential), so a
//   wait copies them without a reference count.
import CGreenCore

/// A channel that carries values of type `T` from senders to receivers, in
/// order. With capacity 0 it is a rendezvous: each send waits for a receive.
///
/// Values move: `send` takes a `sending` value (the sender gives up every
/// reference to it) and `receive` returns it as `sending` to the one
/// receiver that takes it, so a channel may carry non-Sendable values and
/// Swift 6 still rejects a value that stays shared with its sender.
///
/// ```swift
/// let jobs = GreenChannel<Int>(capacity: 16, name: "jobs")
/// try Kernel.run {
///     let worker = try GreenThread.spawn {
///         while let job = jobs.receive() { process(job) }   // nil once closed and drained
///     }
///     for i in 0..<100 { try jobs.send(i) }
///     print(jobs.name, jobs.id, jobs.count, "of", jobs.capacity)   // jobs <id> <waiting> of 16
///     jobs.close()
///     try worker.join()
///     print(jobs.isClosed)                                 // true
/// }
/// ```
public final class GreenChannel<T>: @unchecked Sendable, CustomStringConvertible {
    /// Unique among sync objects for the process's life.
    public let id: UInt64
    /// The name given at creation, or "channel-<id>".
    public let name: String
    /// How many values wait in the channel without a receiver (0: rendezvous).
    public let capacity: Int

    /// A blocked sender's or receiver's entry, carrying the value across.
    // --- kernel lock ---
    @exclusivity(unchecked) private var buffer: RingBuffer<T>
    @exclusivity(unchecked) var senders = WaitQueue()
    @exclusivity(unchecked) var receivers = WaitQueue()
    @exclusivity(unchecked) private(set) var closed = false
    /// `self` as a wait object and as a wait target, made once (see the file header).
    private var waitObject: UnretainedExistential<any SyncWaitObject>!
    private var waitTarget: UnretainedExistential<any WaitTarget>!

    /// Creates an open channel holding up to `capacity` values (0: rendezvous).
    ///
    /// ```swift
    /// let requests = GreenChannel<[UInt8]>(capacity: 64, name: "requests")
    /// let handoff = GreenChannel<Int>(capacity: 0)    // each send waits for a receive
    /// ```
    public init(capacity: Int, name: String? = nil) {
        precondition(capacity >= 0, "GreenChannel(capacity: \(capacity)): capacity cannot be negative")
        let id = SyncObjectIDs.make()
        self.id = id
        self.name = name ?? "channel-\(id)"
        self.capacity = capacity
        self.buffer = RingBuffer(capacity: capacity)
        waitObject = UnretainedExistential(self)
        waitTarget = UnretainedExistential(self)
    }

    deinit { buffer.deallocate() }

    /// "channel 5 'requests'".
    public var description: String { "channel \(id) '\(name)'" }

    /// Whether `close()` was called.
    public var isClosed: Bool { withSyncLock { _ in closed } }

    /// Values buffered now (a snapshot).
    public var count: Int { withSyncLock { _ in buffer.count } }

    // MARK: Send

    /// Sends `value`: hands it to a waiting receiver, or buffers it, or
    /// waits (always, for a rendezvous, until a receiver takes it).
    ///
    /// - Throws: `GreenChannelError.closed` if the channel is closed, or is
    ///   closed while the sender waits (the value is then not delivered);
    ///   `.cancelled` when the waiting sender is cancelled
    ///   (`GreenThread.cancel()`: the value is not delivered either);
    ///   `.notInKernel` when it would wait outside a green thread.
    ///
    /// ```swift
    /// final class Request {                          // not Sendable: it moves, it is not shared
    ///     var line: String
    ///     init(_ line: String) { self.line = line }
    /// }
    /// func submit(_ lines: [String], to requests: GreenChannel<Request>) throws {
    ///     for line in lines { try requests.send(Request(line)) }
    /// }
    /// ```
    @inlinable
    public func send(_ value: sending T) throws(GreenChannelError) {
        let error = withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buffer -> GreenChannelError? in
            let slot = buffer.baseAddress!
            slot.initialize(to: value)
            return send(movingFrom: slot)
        }
        if let error { throw error }
    }

    /// `send`'s core: sends the value initialized in `slot`, which is left
    /// uninitialized either way. Returns nil when delivered, or why not.
    @usableFromInline
    func send(movingFrom slot: UnsafeMutablePointer<T>) -> GreenChannelError? {
        let outcome = sendFromSlot(slot)
        // Not delivered (closed, cancelled, or no green thread to wait on):
        // the value is dropped here, outside the kernel lock, since its
        // deinit may use any green primitive.
        if outcome != .granted { slot.deinitialize(count: 1) }
        switch outcome {
        case .granted: return nil
        case .closed: return .closed
        case .waiting: return .notInKernel(operation: "GreenChannel.send")
        default: return .cancelled(threadID: GreenThread.current.id)
        }
    }

    /// Sends the value in `slot` (moved out when delivered). Returns
    /// .granted (delivered), .closed, .timedOut (the waiting sender was
    /// cancelled) or .waiting (it would wait, outside a green thread).
    private func sendFromSlot(_ slot: UnsafeMutablePointer<T>) -> WaitOutcome {
        guard let raw = gt_current_owner() else {
            return withSyncLock { kernel in offer(slot, KernelCore.unretained(kernel)) }
        }
        return withOwnWaiter(raw) { waiter, kernel in sendOrWait(slot, waiter, kernel) }
    }

    /// Runs `body` with the running thread's own wait-queue entry (made
    /// once, outside the lock) and its kernel, all reached unretained: no
    /// reference counting per send or receive. `raw` is gt_current_owner().
    @inline(__always)
    private func withOwnWaiter<R>(_ raw: UnsafeMutableRawPointer, _ body: (SyncWaiter, KernelCore) -> R) -> R {
        Unmanaged<GreenThread>.fromOpaque(raw)._withUnsafeGuaranteedRef { me in
            me.kernelRef._withUnsafeGuaranteedRef { kernel in
                me.ownSyncWaiter()._withUnsafeGuaranteedRef { waiter in body(waiter, kernel) }
            }
        }
    }

    private func sendOrWait(_ slot: UnsafeMutablePointer<T>, _ waiter: SyncWaiter, _ kernel: KernelCore) -> WaitOutcome {
        kernel.withBlockingSection { () -> WaitOutcome in
            let offered = offer(slot, Unmanaged.passUnretained(kernel))
            guard offered == .waiting else { return offered }
            waiter.begin(on: waitObject)
            waiter.element = UnsafeMutableRawPointer(slot)
            senders.insert(waiter)
            // Cancelling the sender takes it off the queue (`withdraw`;
            // outcome .timedOut: a channel has no timeouts); it drops its value.
            return kernel.blockAsWaiter(waiter, on: waitTarget, .channelSend, objectID: id, deadline: nil,
                                        cancellable: true)
        }
    }

    /// Sends without waiting if the channel allows it: to the top waiting
    /// receiver, or into the buffer. Returns .granted, .closed or .waiting
    /// (must wait). Kernel lock held.
    private func offer(_ slot: UnsafeMutablePointer<T>, _ kernel: Unmanaged<KernelCore>?) -> WaitOutcome {
        if closed { return .closed }
        if let kernel, let receiver = receivers.popTopRef() {
            // The kernel travels unretained and no closure captures it: an
            // optional `kernel` bound by `if let` was retained around each
            // serve (a pair per hand-off).
            let into = receiver._withUnsafeGuaranteedRef { $0.element! }
            into.assumingMemoryBound(to: T.self).moveInitialize(from: slot, count: 1)
            kernel._withUnsafeGuaranteedRef { $0.serve(receiver, .granted) }
            return .granted
        }
        if buffer.count < capacity {
            buffer.append(movingFrom: slot)
            return .granted
        }
        return .waiting
    }

    // MARK: Receive

    /// Receives the next value, waiting for one if needed.
    ///
    /// - Returns: the value, or nil once the channel is closed and drained,
    ///   or when the waiting receiver is cancelled (`GreenThread.cancel()`;
    ///   `GreenThread.current.isCancelled` tells the two apart).
    ///
    /// Outside a green thread it returns a value or nil if it can do so at
    /// once, and otherwise stops the program with a message: waiting there
    /// could never end.
    ///
    /// ```swift
    /// func serve(_ requests: GreenChannel<Int>) {
    ///     while let request = requests.receive() { process(request) }   // ends once closed and drained
    /// }
    /// ```
    @inlinable
    public func receive() -> sending T? {
        // Each value was sent (disconnected from its sender) and goes to
        // exactly one receiver, so handing it out as `sending` is sound;
        // the compiler cannot see that through the buffer's storage.
        nonisolated(unsafe) let value = withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buffer -> T? in
            let slot = buffer.baseAddress!
            return receive(into: slot) ? slot.move() : nil
        }
        return value
    }

    /// `receive`'s core: moves the next value into `slot` (uninitialized);
    /// false when there is none (closed and drained, or the waiting
    /// receiver was cancelled).
    @usableFromInline
    func receive(into slot: UnsafeMutablePointer<T>) -> Bool {
        guard let raw = gt_current_owner() else {
            let outcome = withSyncLock { kernel -> WaitOutcome in
                if takeReady(into: slot, KernelCore.unretained(kernel)) { return .granted }
                return closed ? .closed : .waiting
            }
            precondition(outcome != .waiting, "GreenChannel.receive() on empty \(self) outside a green thread would wait forever: "
                + "call it inside Kernel.run { ... }")
            return outcome == .granted
        }
        return withOwnWaiter(raw) { waiter, kernel in receiveOrWait(into: slot, waiter, kernel) }
    }

    private func receiveOrWait(into slot: UnsafeMutablePointer<T>, _ waiter: SyncWaiter, _ kernel: KernelCore) -> Bool {
        kernel.withBlockingSection { () -> Bool in
            if takeReady(into: slot, Unmanaged.passUnretained(kernel)) { return true }
            if closed { return false }
            waiter.begin(on: waitObject)
            waiter.element = UnsafeMutableRawPointer(slot)
            receivers.insert(waiter)
            // Cancelling the receiver takes it off the queue (`withdraw`): it gets nil.
            let outcome = kernel.blockAsWaiter(waiter, on: waitTarget, .channelReceive, objectID: id, deadline: nil,
                                               cancellable: true)
            return outcome == .granted
        }
    }

    /// Moves the next value into `slot` without waiting: from the buffer
    /// (refilled from the top waiting sender) or, for a rendezvous, from the
    /// top sender. Kernel lock held.
    private func takeReady(into slot: UnsafeMutablePointer<T>, _ kernel: Unmanaged<KernelCore>?) -> Bool {
        if buffer.count > 0 {
            buffer.popFirst(movingInto: slot)
            if let kernel, let sender = senders.popTopRef() {
                let from = sender._withUnsafeGuaranteedRef { $0.element! }
                buffer.append(movingFrom: from.assumingMemoryBound(to: T.self))
                kernel._withUnsafeGuaranteedRef { $0.serve(sender, .granted) }
            }
            return true
        }
        if let kernel, let sender = senders.popTopRef() {
            let from = sender._withUnsafeGuaranteedRef { $0.element! }
            slot.moveInitialize(from: from.assumingMemoryBound(to: T.self), count: 1)
            kernel._withUnsafeGuaranteedRef { $0.serve(sender, .granted) }
            return true
        }
        return false
    }

    // MARK: Close

    /// Closes the channel: waiting receivers get nil, waiting senders
    /// `GreenChannelError.closed`; later sends throw, later receives drain
    /// what is buffered and then get nil. Closing twice does nothing more.
    ///
    /// ```swift
    /// func feed(_ jobs: [Int], to queue: GreenChannel<Int>) throws {
    ///     for job in jobs { try queue.send(job) }
    ///     queue.close()                  // the workers' receive loops end once it is drained
    /// }
    /// ```
    public func close() {
        withSyncLock { kernel in
            closed = true
            guard let kernel else { return }
            for waiter in receivers.removeAll() { kernel.serve(waiter, .closed) }
            // A blocked sender keeps its value in its own slot and drops it
            // itself once woken, outside the kernel lock (a value's deinit
            // may use any green primitive, and the lock is not recursive).
            for waiter in senders.removeAll() { kernel.serve(waiter, .closed) }
        }
    }
}

extension GreenChannel: SyncWaitObject {
    func requeue(_ waiter: SyncWaiter) {
        if senders.contains(waiter) { senders.requeue(waiter) } else { receivers.requeue(waiter) }
    }

    func isQueued(_ waiter: SyncWaiter) -> Bool { senders.contains(waiter) || receivers.contains(waiter) }

    /// The thread's wait says which queue holds it.
    func withdraw(_ thread: GreenThread) {
        let sending = thread.wait?.reason == .channelSend
        let waiter = thread.kernel.withdrawWaiter(thread)
        if sending { senders.remove(waiter) } else { receivers.remove(waiter) }
    }

    var waitObjectName: String? { name }

    func invariantViolations(caller: GreenThread?) -> [String] {
        // `description`, not `self`: interpolating a GreenChannel<T> looks up
        // its conformance for the program's T (a runtime lock on first use,
        // under the kernel lock: Kernel/Rehearsal.swift).
        var problems = senders.invariantViolations(of: "\(description) senders", caller: caller)
            + receivers.invariantViolations(of: "\(description) receivers", caller: caller)
        if !receivers.isEmpty && (buffer.count > 0 || !senders.isEmpty) {
            problems.append("\(description): \(receivers.count) receivers wait while \(buffer.count) values "
                + "and \(senders.count) senders are ready (lost wake-up)")
        }
        if !senders.isEmpty && buffer.count < capacity {
            problems.append("\(description): \(senders.count) senders wait with room in the buffer (lost wake-up)")
        }
        if closed && !(senders.isEmpty && receivers.isEmpty) {
            problems.append("\(description) is closed with threads still waiting")
        }
        return problems
    }
}

/// A fixed-capacity FIFO of values (the channel's buffer): raw storage, so
/// that no `T?` is ever built (see the file's note on metadata lookups).
struct RingBuffer<T> {
    private let slots: UnsafeMutablePointer<T>
    private let capacity: Int
    private var head = 0
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        slots = .allocate(capacity: max(1, capacity))
    }

    /// Drops the values left and frees the storage (the channel's deinit).
    mutating func deallocate() {
        while count > 0 {
            (slots + head).deinitialize(count: 1)
            head = (head + 1) % capacity
            count -= 1
        }
        slots.deallocate()
    }

    mutating func append(movingFrom source: UnsafeMutablePointer<T>) {
        precondition(count < capacity, "channel buffer overflow")
        (slots + (head + count) % capacity).moveInitialize(from: source, count: 1)
        count += 1
    }

    mutating func popFirst(movingInto target: UnsafeMutablePointer<T>) {
        precondition(count > 0, "channel buffer underflow")
        target.moveInitialize(from: slots + head, count: 1)
        head = (head + 1) % capacity
        count -= 1
    }
}
