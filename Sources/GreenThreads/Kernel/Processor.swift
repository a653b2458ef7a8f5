// Processor: the right to run green threads (Go's P). There are
// `KernelConfiguration.workers` of them; an OS thread (Machine) runs green
// threads only while it holds one, and a processor is held by at most one
// Machine at a time. A processor moves between Machines when its Machine
// parks with a preempted thread (park.c), when a parked thread is picked
// again (its own Machine gets the processor back), and when the monitor
// retakes it from a Machine blocked in the OS (Monitor.swift).
//
// Field guards: every field is read and written with the kernel lock held,
// except the statistics marked "holder", which only the holding Machine
// updates (snapshots read them racily, as counters).
import CGreenCore

final class Processor: @unchecked Sendable {
    let index: Int
    unowned(unsafe) let kernel: KernelCore

    /// The green thread running on this processor, or nil (kernel lock).
    @exclusivity(unchecked) var currentRef: Unmanaged<GreenThread>?
    var current: GreenThread? {
        get { currentRef?.takeUnretainedValue() }
        // Not Optional.map: unspecialized (a debug build) it asks the Swift
        // runtime for metadata, under the kernel lock (Kernel/Rehearsal.swift).
        set { if let t = newValue { currentRef = Unmanaged.passUnretained(t) } else { currentRef = nil } }
    }
    /// The Machine holding this processor, or nil while it is being handed
    /// over (kernel lock). The C field `processor` of that Machine's state is
    /// the authority (park.c); this is the scheduler's view of it.
    @exclusivity(unchecked) unowned(unsafe) var heldBy: Machine?
    /// Whether it waits for work in its Machine's scheduling loop (kernel lock).
    @exclusivity(unchecked) var isIdle = false
    /// While it lingers (Machine.linger): the highest level that was ready
    /// when it began, which a thread made ready must outrank to claim it;
    /// -1 when not lingering or claimed (kernel lock).
    @exclusivity(unchecked) var lingersAbove = -1
    /// Lingers that a `makeReady` claimed, and that timed out (kernel lock).
    @exclusivity(unchecked) var lingersServed: UInt64 = 0
    @exclusivity(unchecked) var lingersTimedOut: UInt64 = 0
    /// Moving average of preempted slices, in tick periods x16 (deficit
    /// round-robin, Scheduler.chargePreemptedSlice; holder).
    @exclusivity(unchecked) var averagePeriodsX16: Int32 = 0
    /// Preemptions taken on this processor (holder).
    @exclusivity(unchecked) var preemptions: UInt64 = 0
    /// Times its Machine parked and it went to a spare Machine (holder).
    @exclusivity(unchecked) var parkHandoffs: UInt64 = 0
    /// Times it went back to a parked thread's own Machine (holder).
    @exclusivity(unchecked) var resumeHandoffs: UInt64 = 0
    /// Times the monitor took it from a Machine blocked in the OS (kernel lock).
    @exclusivity(unchecked) var blockedHandoffs: UInt64 = 0
    /// Times its Machine was woken from idle sleep to look for work (kernel
    /// lock): what Go's spinning rule keeps low (Machine.spinForWork).
    @exclusivity(unchecked) var idleWakeups: UInt64 = 0
    /// Switches made on it; the monitor compares it across polls (holder).
    @exclusivity(unchecked) var switches: UInt64 = 0

    init(index: Int, kernel: KernelCore) {
        self.index = index
        self.kernel = kernel
    }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
}
