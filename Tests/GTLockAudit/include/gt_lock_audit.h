// gt_lock_audit.h: the test host's audit of one rule of the kernel: the
// holder of the kernel lock never waits for a lock that a green thread can
// hold. A thread parked by a preemption keeps every lock it holds (park.c),
// and only the kernel lock's holder can resume it, so such a wait stops
// every OS thread of the kernel (seen: the Swift runtime's metadata cache
// lock, taken by the scheduler's first use of a generic type while a parked
// thread was instantiating another one).
#ifndef GT_LOCK_AUDIT_H
#define GT_LOCK_AUDIT_H

#include <stdint.h>

/// Starts or stops counting (0 stops). Counting starts off.
void gt_lock_audit_enable(int on);
/// pthread mutex and rwlock acquisitions made while the caller held the
/// kernel lock, since the last reset. Only a preemptive kernel outside the
/// rehearsal counts (gt_note_kernel_lock), and libunwind's own lock does
/// not: no thread is ever parked inside libunwind (allocator.c). Set
/// GT_LOCK_AUDIT=<file> to count for a whole run and append what was found
/// to <file> at exit.
int64_t gt_lock_audit_violations(void);
void gt_lock_audit_reset(void);
/// Writes the return addresses of the first recorded violations to stderr,
/// symbolized where the dynamic symbol table can (backtrace_symbols_fd).
void gt_lock_audit_report(void);

#endif
