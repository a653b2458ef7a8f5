// state.c: the per-OS-thread state (TLS) and the preempt-disable bracket.
//
// Why these are out-of-line C functions: a green thread may switch OS
// threads at any cooperative switch (yield, block), so no caller may cache a
// TLS address across one; each call computes it anew, and being in their own
// translation unit keeps the compiler from hoisting it. A preemption between
// any two instructions here is harmless: a preempted thread keeps its OS
// thread (park.c), and the handler restores the count it found.
#include "gt_core.h"
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#define GT_CORE_TEXT __attribute__((section("gt_core_text"), noinline, used))

// initial-exec: the address is %fs/tpidr_el0 plus a link-time constant, no
// call into the loader (whose code we would refuse to preempt anyway).
__thread gt_worker_state gt_tls_state __attribute__((tls_model("initial-exec")));

GT_CORE_TEXT gt_worker_state *gt_self(void) { return &gt_tls_state; }

GT_CORE_TEXT gt_worker_state *gt_enter_critical(void) {
    gt_worker_state *w = &gt_tls_state;
    w->critical++;
    return w;
}

extern int gt_highest_ready_level;

// A preemption deferred by a critical section or no-preempt region is worth
// honouring if someone of at least this thread's priority is ready; an M
// whose processor the monitor took must park whatever is ready.
static int gt_should_park(gt_worker_state *w) {
    gt_thread_core *t = w->current;
    if (t == NULL || !w->is_worker || t->no_preempt != 0) return 0;
    if (__atomic_load_n(&w->processor, __ATOMIC_ACQUIRE) == NULL) return 1;
    if (!w->preempt_pending || !w->preemption_enabled) return 0;
    if (__atomic_load_n(&gt_highest_ready_level, __ATOMIC_RELAXED) >= t->effective_level) return 1;
    w->preempt_pending = 0;
    return 0;
}

GT_CORE_TEXT int gt_exit_critical(void) {
    gt_worker_state *w = &gt_tls_state;
    if (--w->critical == 0) return gt_should_park(w);
    return 0;
}

intptr_t gt_tls_state_offset;

// Before any green thread can exist (the library is loaded before main).
__attribute__((constructor)) static void gt_tls_state_offset_init(void) {
    gt_tls_state_offset = (char *)&gt_tls_state - gt_thread_pointer();
}

GT_CORE_TEXT int gt_on_green_thread(void) {
    return gt_tls_state.is_worker && gt_tls_state.current != NULL;
}

GT_CORE_TEXT void gt_no_preempt_enter(void) {
    gt_thread_core *t = gt_tls_state.current;
    if (t) t->no_preempt++;
}

GT_CORE_TEXT int gt_no_preempt_exit(void) {
    gt_worker_state *w = &gt_tls_state;
    gt_thread_core *t = w->current;
    if (t && --t->no_preempt == 0 && w->critical == 0) return gt_should_park(w);
    return 0;
}

void gt_request_preemption(gt_worker_state *worker) {
    // Relaxed is enough for the flag: the tgkill below is a full barrier in
    // the kernel, and the handler re-checks the run queue under its lock.
    __atomic_store_n(&worker->preempt_requested, 1, __ATOMIC_RELAXED);
    int tid = __atomic_load_n(&worker->tid, __ATOMIC_RELAXED);
    if (tid > 0) gt_sys_tgkill(tid, SIGVTALRM);
}

int gt_errno_get(void) { return errno; }
void gt_errno_set(int value) { errno = value; }
int *gt_errno_location(void) { return &errno; }

void gt_write_stderr(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t k = write(2, s, n);
        if (k < 0) { if (errno == EINTR) continue; return; }
        s += k; n -= (size_t)k;
    }
}

// Hazard fixes that regression tests switch off to prove they fail without
// them (debug builds only; see gt_fix_set in gt_core.h).
#if defined(DEBUG) && DEBUG
int gt_fix_flags[GT_FIX_COUNT] = {1, 1, 1, 1, 1, 1};
static const char *const gt_fix_names[GT_FIX_COUNT] = {"errno", "exclusivity", "eintr", "handoff", "allocator", "rehearsal"};

int gt_fix_set(const char *name, int enabled) {
    for (int i = 0; i < GT_FIX_COUNT; i++) {
        if (strcmp(name, gt_fix_names[i]) == 0) {
            int old = gt_fix_flags[i];
            gt_fix_flags[i] = enabled;
            return old;
        }
    }
    return -1;
}
#else
int gt_fix_set(const char *name, int enabled) {
    (void)name;
    (void)enabled;
    return -2;
}
#endif

int gt_fix_is_enabled(int which) { return which >= 0 && which < GT_FIX_COUNT ? gt_fix_enabled(which) : 1; }


// The kernel lock (Scheduler/KernelLock.swift) as a priority-inheriting
// futex: the word holds the owner's tid (0 when free; the kernel adds
// FUTEX_WAITERS when someone sleeps on it). A waiter that sleeps lends its
// priority to the owner, so when the monitor (SCHED_FIFO) waits for a
// worker that the OS has taken off the CPU while it held the lock, the
// worker runs at once instead of after the OS's next tick (measured: the
// monitor's wait for the lock had a p99 of 3.9 ms, the wake-up p99's whole
// tail, with a plain futex). Here, not in Swift: the tid is per OS thread.
static uint32_t gt_lock_tid(void) {
    gt_worker_state *w = &gt_tls_state;
    if (w->is_worker && w->tid > 0) return (uint32_t)w->tid;
    return (uint32_t)syscall(SYS_gettid);  // the monitor, keeper, poller, outside threads
}

GT_CORE_TEXT int gt_pi_try_lock(uint32_t *word) {
    uint32_t free_word = 0;
    return __atomic_compare_exchange_n(word, &free_word, gt_lock_tid(), 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

// How long a waiter spins before it sleeps in the kernel, in CPU pauses.
// Workers spin long: the kernel lock is held for tens of nanoseconds at a
// time, and two workers yielding in turn, each giving up after 100 pauses,
// went to FUTEX_LOCK_PI on one acquisition in 200 (4 yielding threads on 2
// workers: 208-259 ns per yield per worker; with 1024 and the backoff,
// 64-68 ns; one worker alone: 31 ns). The monitor and the poller run
// SCHED_FIFO and give up sooner: a holder preempted on their CPU runs only
// once they sleep, and the futex lends it their priority.
enum { GT_WORKER_SPIN = 1024, GT_SERVICE_SPIN = 100 };

static uint64_t gt_pi_sleeps;  // acquisitions that went to the kernel

uint64_t gt_pi_lock_sleeps(void) { return __atomic_load_n(&gt_pi_sleeps, __ATOMIC_RELAXED); }

GT_CORE_TEXT void gt_pi_lock(uint32_t *word) {
    if (gt_spin_acquire(word, gt_lock_tid(), gt_tls_state.is_worker ? GT_WORKER_SPIN : GT_SERVICE_SPIN)) return;
    __atomic_fetch_add(&gt_pi_sleeps, 1, __ATOMIC_RELAXED);
    // The kernel takes it for us (the word then holds our tid). EINTR and
    // EAGAIN (the owner is exiting) are retried.
    while (syscall(SYS_futex, word, FUTEX_LOCK_PI_PRIVATE, 0, NULL, NULL, 0) != 0) {}
}

static uint32_t *gt_kernel_lock_word;

void gt_note_kernel_lock(uint32_t *word) { __atomic_store_n(&gt_kernel_lock_word, word, __ATOMIC_RELEASE); }

int gt_kernel_lock_held_by_caller(void) {
    uint32_t *word = __atomic_load_n(&gt_kernel_lock_word, __ATOMIC_ACQUIRE);
    return word != NULL && (__atomic_load_n(word, __ATOMIC_RELAXED) & FUTEX_TID_MASK) == gt_lock_tid();
}

GT_CORE_TEXT void gt_pi_unlock(uint32_t *word) {
    uint32_t owner = gt_lock_tid();
    if (__atomic_compare_exchange_n(word, &owner, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) return;
    // FUTEX_WAITERS is set: the kernel hands the lock to the top waiter.
    syscall(SYS_futex, word, FUTEX_UNLOCK_PI_PRIVATE, 0, NULL, NULL, 0);
}
