// What a finishing thread leaves behind in the synchronization kit.
//
// Called by the scheduler's exit path with the kernel lock held, before the
// thread is marked finished and its joiners are woken, on the finishing
// thread's own worker (so its robust list, which only it touches, is safe to
// walk).
//
// Owner death (robust-mutex semantics, as POSIX PTHREAD_MUTEX_ROBUST and
// Linux's robust futex list): every mutex the thread still holds is released
// so that no locker hangs on it.
// - With waiters: the top waiter becomes the owner at once (the same handoff
//   as unlock) and its lock call throws `GreenMutexError.ownerDied`, holding
//   the mutex.
// - Without: the owner word becomes `ownerDiedFree`; the uncontended CAS of
//   the next lock() fails on it, so that locker takes the contended path,
//   acquires the mutex and gets `.ownerDied` too.
// Either way exactly one locker learns of the death; it repairs the
// protected state and unlocks as usual (there is no separate "consistent"
// step as in POSIX: the report is the caller's cue). Priority inherited
// through these mutexes moves to the new owners, like any handoff.

extension KernelCore {
    /// Releases what `thread` still holds when it ends. Mutexes it owns are
    /// handed on to their next waiter with `GreenMutexError.ownerDied`
    /// (robust-mutex semantics); see Sync/GreenMutex.swift.
    func releaseHeldObjects(of thread: GreenThread) {
        let me = UInt(bitPattern: Unmanaged.passUnretained(thread).toOpaque())
        while let listed = thread.heldMutexes {
            let mutex = listed.takeUnretainedValue()
            // Unlink first: the handoff's new owner links it into its own list.
            thread.heldMutexes = mutex.heldNext
            mutex.heldNext?.takeUnretainedValue().heldPrev = nil
            mutex.heldNext = nil
            mutex.heldPrev = nil
            let w = mutex.word.load(ordering: .relaxed)
            precondition(w & GreenMutex.ownerMask == me,
                         "\(thread) ends with \(mutex) on its robust list, but the owner word is \(w)")
            // Named here, not before the loop: the name may be formatted
            // from the id, and most threads end holding nothing.
            let identity = ThreadIdentity(thread)
            if mutex.waiters.isEmpty {
                mutex.diedOwner = identity
                mutex.word.store(GreenMutex.ownerDiedFree, ordering: .releasing)
            } else {
                mutex.handOff(from: thread, outcome: .ownerDied(identity), self)
            }
        }
        precondition(thread.contendedMutexes.isEmpty,
                     "\(thread) ends with contended mutexes not on its robust list: \(thread.contendedMutexes)")
    }
}
