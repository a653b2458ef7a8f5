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
/// ```swift
/// let jobs = GreenChannel<Int>(capacity: 16)
/// let worker = try GreenThread.spawn {
///     while let job = jobs.receive() { process(job) }   // nil once closed and drained
/// }
/// for i in 0..<100 { try jobs.send(i) }
/// jobs.close()
/// try worker.join()
/// ```
public final class GreenChannel<T>: @unchecked Sendable, CustomStringConvertible {
    public let id: UInt64
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
    public init(capacity: Int, name: String? = nil) {
        precondition(capacity >= 0, "GreenChannel(capacity: \(capacity)): capacity cannot be negative")
        let id = SyncObjectIDs.make()
        self.id = id
        self.name = name ?? "channel-\(id)"
        self.capacity = capacity
        self.buffer = RingBuffer(capacity: capacity)
    }

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
    ///   `.notInKernel` when it would wait outside a green thread.
    public func send(_ value: T) throws {
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
            return kernel.blockAsWaiter(waiter, record: WaitRecord(kind: "channel-send", objectID: id, objectName: name),
                                        deadline: nil, onTimeout: nil)
        }
        if outcome == .closed { throw GreenChannelError.closed }
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
    /// - Returns: the value, or nil once the channel is closed and drained.
    ///
    /// Outside a green thread it returns a value or nil if it can do so at
    /// once, and otherwise stops the program with a message: waiting there
    /// could never end.
    public func receive() -> T? {
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
            let outcome = kernel.blockAsWaiter(waiter, record: WaitRecord(kind: "channel-receive", objectID: id, objectName: name),
                                               deadline: nil, onTimeout: nil)
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
    public func close() {
        withSyncLock { kernel in
            closed = true
            guard let kernel else { return }
            for waiter in receivers.removeAll() { kernel.serve(waiter, .closed) }
            for waiter in senders.removeAll() {
                (waiter as! Waiter).value = nil
                kernel.serve(waiter, .closed)
            }
        }
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
