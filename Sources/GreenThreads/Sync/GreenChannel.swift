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
    final class Waiter: SyncWaiter {
        var value: T?
    }

    // --- kernel lock ---
    @exclusivity(unchecked) private var buffer: RingBuffer<T>
    @exclusivity(unchecked) var senders = WaitQueue()
    @exclusivity(unchecked) var receivers = WaitQueue()
    @exclusivity(unchecked) private(set) var closed = false

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
    }

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
    public func send(_ value: sending T) throws(GreenChannelError) {
        var value: T? = value
        guard let me = currentGreenThread() else {
            switch withSyncLock({ kernel in offer(&value, kernel) }) {
            case .delivered: return
            case .closed: throw GreenChannelError.closed
            case .mustWait: throw GreenChannelError.notInKernel(operation: "GreenChannel.send")
            }
        }
        let kernel = me.kernel
        let outcome = kernel.withBlockingSection { () -> WaitOutcome in
            switch offer(&value, kernel) {
            case .delivered: return .granted
            case .closed: return .closed
            case .mustWait: break
            }
            let waiter = Waiter(thread: me, object: self)
            waiter.value = value.take()
            senders.insert(waiter)
            // Cancelling the sender takes it off the queue (outcome
            // .timedOut: a channel has no timeouts); its value is dropped.
            return kernel.blockAsWaiter(waiter, record: WaitRecord(kind: "channel-send", objectID: id, objectName: name),
                                        deadline: nil, cancellable: true) { [self] waiter in
                senders.remove(waiter)
            }
        }
        if outcome == .closed { throw GreenChannelError.closed }
        if outcome == .timedOut { throw GreenChannelError.cancelled(threadID: me.id) }
    }

    private enum Offer { case delivered, closed, mustWait }

    /// Sends without waiting if the channel allows it: to the top waiting
    /// receiver, or into the buffer. Kernel lock held.
    private func offer(_ value: inout T?, _ kernel: KernelCore?) -> Offer {
        if closed { return .closed }
        if let kernel, let receiver = receivers.popTop() {
            (receiver as! Waiter).value = value.take()
            kernel.serve(receiver, .granted)
            return .delivered
        }
        if buffer.count < capacity {
            buffer.append(value.take()!)
            return .delivered
        }
        return .mustWait
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
    public func receive() -> sending T? {
        // Each value was sent (disconnected from its sender) and goes to
        // exactly one receiver, so handing it out as `sending` is sound;
        // the compiler cannot see that through the buffer's storage.
        nonisolated(unsafe) let value = receiveValue()
        return value
    }

    private func receiveValue() -> T? {
        guard let me = currentGreenThread() else {
            let result = withSyncLock { kernel -> (value: T?, ready: Bool) in
                if let value = takeReady(kernel) { return (value, true) }
                return (nil, closed)
            }
            precondition(result.ready, "GreenChannel.receive() on empty \(self) outside a green thread would wait forever: "
                + "call it inside Kernel.run { ... }")
            return result.value
        }
        let kernel = me.kernel
        return kernel.withBlockingSection { () -> T? in
            if let value = takeReady(kernel) { return value }
            if closed { return nil }
            let waiter = Waiter(thread: me, object: self)
            receivers.insert(waiter)
            // Cancelling the receiver takes it off the queue: it gets nil.
            let outcome = kernel.blockAsWaiter(waiter, record: WaitRecord(kind: "channel-receive", objectID: id, objectName: name),
                                               deadline: nil, cancellable: true) { [self] waiter in
                receivers.remove(waiter)
            }
            return outcome == .granted ? waiter.value.take() : nil
        }
    }

    /// The next value without waiting: from the buffer (refilled from the
    /// top waiting sender) or, for a rendezvous, from the top sender.
    /// Kernel lock held.
    private func takeReady(_ kernel: KernelCore?) -> T? {
        if let value = buffer.popFirst() {
            if let kernel, let sender = senders.popTop() {
                buffer.append((sender as! Waiter).value.take()!)
                kernel.serve(sender, .granted)
            }
            return value
        }
        if let kernel, let sender = senders.popTop() {
            let value = (sender as! Waiter).value.take()
            kernel.serve(sender, .granted)
            return value
        }
        return nil
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
        // The blocked senders' values leave the channel here; they are
        // dropped after the kernel lock is released, since a value's deinit
        // may use any green primitive (and the lock is not recursive).
        let dropped = withSyncLock { kernel -> [T] in
            closed = true
            guard let kernel else { return [] }
            var values: [T] = []
            for waiter in receivers.removeAll() { kernel.serve(waiter, .closed) }
            for waiter in senders.removeAll() {
                if let value = (waiter as! Waiter).value.take() { values.append(value) }
                kernel.serve(waiter, .closed)
            }
            return values
        }
        _ = consume dropped
    }
}

extension GreenChannel: SyncWaitObject {
    func requeue(_ waiter: SyncWaiter) {
        if senders.contains(waiter) { senders.requeue(waiter) } else { receivers.requeue(waiter) }
    }

    func isQueued(_ waiter: SyncWaiter) -> Bool { senders.contains(waiter) || receivers.contains(waiter) }

    func invariantViolations(caller: GreenThread?) -> [String] {
        var problems = senders.invariantViolations(of: "\(self) senders", caller: caller)
            + receivers.invariantViolations(of: "\(self) receivers", caller: caller)
        if !receivers.isEmpty && (buffer.count > 0 || !senders.isEmpty) {
            problems.append("\(self): \(receivers.count) receivers wait while \(buffer.count) values "
                + "and \(senders.count) senders are ready (lost wake-up)")
        }
        if !senders.isEmpty && buffer.count < capacity {
            problems.append("\(self): \(senders.count) senders wait with room in the buffer (lost wake-up)")
        }
        if closed && !(senders.isEmpty && receivers.isEmpty) {
            problems.append("\(self) is closed with threads still waiting")
        }
        return problems
    }
}

/// A fixed-capacity FIFO of values (the channel's buffer).
struct RingBuffer<T> {
    private var slots: [T?]
    private var head = 0
    private(set) var count = 0

    init(capacity: Int) { slots = Array(repeating: nil, count: capacity) }

    mutating func append(_ value: T) {
        precondition(count < slots.count, "channel buffer overflow")
        slots[(head + count) % slots.count] = value
        count += 1
    }

    mutating func popFirst() -> T? {
        guard count > 0 else { return nil }
        let value = slots[head].take()
        head = (head + 1) % slots.count
        count -= 1
        return value
    }
}
