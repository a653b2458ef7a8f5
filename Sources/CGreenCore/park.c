// park.c: a preempted green thread keeps its OS thread.
//
// The rule (BRIEF.md, "Processors and OS threads"): no green thread runs on
// an OS thread whose state belongs to an asynchronously preempted one. That
// state is whatever the program's code left there, seen or unseen by us: the
// owner of a Synchronization.Mutex or pthread mutex (the tid), a recursive
// lock's count, flockfile, swift_once's lock, errno, the exclusivity access
// set, any library's thread-locals. So a preemption never switches green
// threads on the interrupted OS thread ("M"). Instead the M parks, inside
// the SIGVTALRM handler on the thread's own stack, and hands its processor
// ("P": the right to run green threads) to a spare M, which goes on
// scheduling. When the scheduler picks the preempted thread again, the P is
// handed back to that thread's own M, which wakes, returns from the handler,
// and sigreturn restores every register. Cooperative switches (yield, block,
// exit) are well-defined points and stay user-space switches on one M.
//
// Who writes what:
//   - `processor` of an M: set by whoever hands it a P (gt_park_resume, or
//     gt_park for a spare), cleared by its own M when it parks or gives the
//     P away, or by the monitor when it retakes the P of an M blocked in the
//     OS (gt_processor_retake, a compare-and-swap, so a retake and a park
//     never both succeed). Release stores / acquire loads: the fields the
//     giver prepared for the M are visible once the M sees its processor.
//   - the spare stack and the returned list: the park lock below.
//   - `park_word`: bumped by whoever wakes the M; the M sleeps on it.
//
// Async-signal safety: the handler parks through gt_park, which touches only
// atomics, the park lock and futexes. The park lock is a small futex lock
// (a short spin, then a sleep) that is only ever taken with preemption
// deferred on the taking M (in the handler, SIGVTALRM is blocked; in Swift,
// the critical count is raised; the monitor blocks SIGVTALRM), so no M can
// interrupt itself while holding it. Holders keep it for a few instructions.
//
// The Swift scheduler does the rest outside any handler: the spare M that
// received a P requeues the parked thread (Kernel/Machine.swift), the
// monitor requeues threads whose M parked after losing its P and keeps the
// stack of spare Ms topped up (Kernel/Monitor.swift).
#include "gt_core.h"
#include <errno.h>
#include <sched.h>
#include <ucontext.h>

extern __thread gt_worker_state gt_tls_state;

static uint32_t gt_park_lock_word;
static gt_worker_state *gt_spares;       // park lock
static int gt_spare_total;               // park lock
static gt_worker_state *gt_returned;     // park lock
static int gt_monitor_fd = -1;           // the monitor's eventfd; set before any M starts
int gt_highest_ready_level = -1;
// The CPUs a Machine may run on, restored after a hand-off pinned it.
static cpu_set_t gt_usable_cpus;
static int gt_pin_handoffs;  // 1 when pinning is possible (affinity readable)

// 0 free, 1 held, 2 held with a sleeper. After a short spin a waiter sleeps
// on the futex instead of spinning or calling sched_yield: the monitor and
// the netpoller run SCHED_FIFO, so one that woke on the CPU of a holder the
// OS had just preempted would spin until that CPU's load balancer moved the
// holder (sched_yield gives way only to other real-time threads). Measured
// under load with 1 ms slices: 5 contended acquisitions in 6,045 cost 7.8
// million spins and 39,000 sched_yield calls, about 5% of the process's CPU.
// Futex calls are async-signal-safe, so the handler may still take the lock.
static void gt_park_lock(void) {
    uint32_t *word = &gt_park_lock_word;
    if (gt_spin_acquire(word, 1, 100)) return;
    while (__atomic_exchange_n(word, 2, __ATOMIC_ACQUIRE) != 0) gt_sys_futex_wait(word, 2, -1);
}

static void gt_park_unlock(void) {
    if (__atomic_exchange_n(&gt_park_lock_word, 0, __ATOMIC_RELEASE) == 2) {
        gt_sys_futex_wake(&gt_park_lock_word, 1);
    }
}

void gt_park_setup(int monitor_event_fd) {
    gt_pin_handoffs = sched_getaffinity(0, sizeof gt_usable_cpus, &gt_usable_cpus) == 0 &&
                      CPU_COUNT(&gt_usable_cpus) > 1;
    gt_park_lock();
    gt_monitor_fd = monitor_event_fd;
    gt_spares = NULL;
    gt_spare_total = 0;
    __atomic_store_n(&gt_returned, NULL, __ATOMIC_RELAXED);
    gt_park_unlock();
    __atomic_store_n(&gt_highest_ready_level, -1, __ATOMIC_RELAXED);
}

void gt_wake_word(uint32_t *word) {
    __atomic_fetch_add(word, 1, __ATOMIC_RELEASE);
    gt_sys_futex_wake(word, 1);
}

static void gt_wake_monitor(void) {
    int fd = gt_monitor_fd;
    if (fd >= 0) gt_monitor_wake(fd);
}

// Hand-offs stay on one CPU (BRIEF.md: a futex hand-off costs about 1 us
// between two OS threads on the same CPU and about 40 us across CPUs on
// this kind of virtual machine, where the idle CPU must be woken): the
// giver, which is about to sleep, pins the taker to its own CPU before
// waking it; the taker, once running, widens its affinity again.
static void gt_pin_to_this_cpu(gt_worker_state *w) {
    if (!gt_pin_handoffs) return;
    int cpu = sched_getcpu();
    if (cpu < 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(__atomic_load_n(&w->tid, __ATOMIC_RELAXED), sizeof one, &one) == 0) {
        __atomic_store_n(&w->pinned, 1, __ATOMIC_RELEASE);
    }
}

void gt_unpin_self(gt_worker_state *w) {
    if (__atomic_load_n(&w->pinned, __ATOMIC_ACQUIRE) == 0) return;
    __atomic_store_n(&w->pinned, 0, __ATOMIC_RELAXED);
    sched_setaffinity(0, sizeof gt_usable_cpus, &gt_usable_cpus);
}

void gt_park_wait(gt_worker_state *w, uint32_t seen, int64_t timeout_ns) {
    gt_sys_futex_wait(&w->park_word, seen, timeout_ns);
    gt_unpin_self(w);
}

void gt_park_wake(gt_worker_state *w) { gt_wake_word(&w->park_word); }

void gt_park_resume(gt_worker_state *w, void *p) {
    gt_pin_to_this_cpu(w);
    __atomic_store_n(&w->processor, p, __ATOMIC_RELEASE);
    gt_wake_word(&w->park_word);
}


int gt_processor_retake(gt_worker_state *w, void *p) {
    void *expected = p;
    return __atomic_compare_exchange_n(&w->processor, &expected, NULL, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

void gt_set_highest_ready(int level) { __atomic_store_n(&gt_highest_ready_level, level, __ATOMIC_RELAXED); }
int gt_highest_ready(void) { return __atomic_load_n(&gt_highest_ready_level, __ATOMIC_RELAXED); }

// Park lock held.
static gt_worker_state *gt_spare_pop_locked(void) {
    gt_worker_state *w = gt_spares;
    if (w != NULL) {
        gt_spares = w->next_spare;
        w->next_spare = NULL;
        gt_spare_total--;
    }
    return w;
}

void gt_spare_push(gt_worker_state *w) {
    gt_park_lock();
    w->next_spare = gt_spares;
    gt_spares = w;
    gt_spare_total++;
    gt_park_unlock();
}

int gt_spare_remove(gt_worker_state *w) {
    gt_park_lock();
    int removed = 0;
    for (gt_worker_state **link = &gt_spares; *link != NULL; link = &(*link)->next_spare) {
        if (*link == w) {
            *link = w->next_spare;
            w->next_spare = NULL;
            gt_spare_total--;
            removed = 1;
            break;
        }
    }
    gt_park_unlock();
    return removed;
}

int gt_spare_count(void) { return __atomic_load_n(&gt_spare_total, __ATOMIC_RELAXED); }

gt_worker_state *gt_returned_pop(void) {
    // The monitor asks on every pass; the list is almost always empty. A
    // push is followed by a wake-up of the monitor, so a stale empty read
    // is seen again on the pass that wake-up causes.
    if (__atomic_load_n(&gt_returned, __ATOMIC_ACQUIRE) == NULL) return NULL;
    gt_park_lock();
    gt_worker_state *w = gt_returned;
    if (w != NULL) {
        __atomic_store_n(&gt_returned, w->next_returned, __ATOMIC_RELAXED);
        w->next_returned = NULL;
    }
    gt_park_unlock();
    return w;
}

int gt_park(gt_worker_state *w, void *context) {
    gt_thread_core *t = w->current;
    // A deferred preemption (not in a handler) has no signal frame: capture
    // one for stack traces, first, so no local set below lives across the
    // call (getcontext "returns twice" to the compiler).
    ucontext_t here;
    if (context == NULL) {
        getcontext(&here);
        context = &here;
    }
    // Step 1: find who takes over. With our processor: a spare M (none ready:
    // the preemption waits, and the monitor is asked for spares). Without
    // one (the monitor took it while we were blocked in the OS): nobody; the
    // monitor requeues the thread.
    gt_park_lock();
    void *p = __atomic_exchange_n(&w->processor, NULL, __ATOMIC_ACQ_REL);
    gt_worker_state *spare = NULL;
    if (p != NULL) {
        spare = gt_spare_pop_locked();
        if (spare == NULL) {
            __atomic_store_n(&w->processor, p, __ATOMIC_RELEASE);
            gt_park_unlock();
            w->no_spare++;
            gt_wake_monitor();
            return 0;
        }
    } else {
        w->next_returned = gt_returned;
        __atomic_store_n(&gt_returned, w, __ATOMIC_RELEASE);
    }
    // Step 2: account the slice and leave the context for stack traces.
    uint64_t now = gt_tsc();
    t->cpu_ticks += now - w->slice_start;
    t->cpu_tick_ns += (uint64_t)w->slice_periods * (uint64_t)w->tick_ns;
    t->parked_periods = w->slice_periods;
    t->preempt_context = context;
    __atomic_store_n(&w->parked, 1, __ATOMIC_RELEASE);
    gt_park_unlock();
    // Step 3: hand over. The spare reads `handoff_from` after it sees its
    // processor (release/acquire on `processor`).
    if (spare != NULL) {
        spare->handoff_from = w;
        gt_park_resume(spare, p);
    } else {
        gt_wake_monitor();
    }
    w->parks++;
    // Step 4: sleep until a processor is handed back. The word is read
    // before the check, so a hand-off between the two wakes the wait.
    for (;;) {
        uint32_t seen = __atomic_load_n(&w->park_word, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&w->processor, __ATOMIC_ACQUIRE) != NULL) break;
        gt_sys_futex_wait(&w->park_word, seen, -1);
    }
    gt_unpin_self(w);
    t->preempt_context = NULL;
    __atomic_store_n(&w->parked, 0, __ATOMIC_RELEASE);
    return 1;
}

void gt_park_pending(void) {
    gt_worker_state *w = &gt_tls_state;
    if (!w->is_worker || w->current == NULL) return;
    int saved_errno = errno;  // the caller's errno: it is the thread's own
    w->critical++;
    w->preempt_pending = 0;
    if (!gt_park(w, NULL)) w->preempt_pending = 1;
    w->critical--;
    errno = saved_errno;
}

gt_worker_state *gt_spare_pop(void) {
    gt_park_lock();
    gt_worker_state *w = gt_spare_pop_locked();
    gt_park_unlock();
    return w;
}
