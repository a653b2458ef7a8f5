// The shared state scenarios use across green threads and OS threads, each
// Sendable without `@unchecked`, so that Swift 6 checks every crossing.
//
// Why `Synchronization.Mutex` inside `GreenThread.withoutPreemption`, and not
// GreenLocked: the scenarios measure scheduling and priorities, and a green
// lock could block and lend priority, changing the story a scenario tells.
// A Mutex held only without preemption, around a few instructions that
// never block, is never held across a switch: no other green thread can run
// on the holder's OS thread meanwhile, so its owner-is-the-OS-thread check
// (BRIEF "Foreign locks") cannot trap, and holders on other workers are
// spun past in nanoseconds. The same calls work on plain OS threads (the
// main thread reads results after `Kernel.run` returns), where
// `withoutPreemption` does nothing.
import GreenThreads
import Synchronization

/// Lines appended by several threads, read once they are done.
final class Log: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ s: String) { GreenThread.withoutPreemption { lines.withLock { $0.append(s) } } }
    var all: [String] { GreenThread.withoutPreemption { lines.withLock { $0 } } }
}

/// A value one thread sets and others read (a result leaving a green
/// thread, a handle passed to a peer).
final class Shared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    var value: Value {
        get { GreenThread.withoutPreemption { storage.withLock { $0 } } }
        set { GreenThread.withoutPreemption { storage.withLock { $0 = newValue } } }
    }
    /// Updates the value in place, atomically with respect to other updates.
    func update<R>(_ body: (inout Value) -> R) -> R {
        GreenThread.withoutPreemption { storage.withLock { body(&$0) } }
    }
}

/// A counter shared by green threads (a class: closures capture it by reference).
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ n: Int = 1) { value.wrappingAdd(n, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// A flag shared by green threads.
final class Flag: Sendable {
    private let value: Atomic<Bool>
    init(_ v: Bool) { value = Atomic(v) }
    func set(_ v: Bool) { value.store(v, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// An atomic that closures sent to other threads can capture: `Atomic` is
/// not copyable, so a closure captures a local one by reference, which
/// Swift 6 refuses to send. `cell.atomic` is the atomic itself (its
/// orderings must be literal at each call, so they cannot be forwarded).
final class AtomicCell<Value: AtomicRepresentable & Sendable>: Sendable {
    let atomic: Atomic<Value>
    init(_ value: Value) { atomic = Atomic(value) }
}
