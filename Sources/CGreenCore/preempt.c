// preempt.c: the SIGVTALRM handler and the per-OS-thread CPU-time tick.
//
// The design is written up at the top of Sources/GreenThreads/Preemption/
// Preemption.swift and in docs/preemption.md. In short: each OS thread of
// the kernel (M) has a timer on its own CPU-time clock that sends it
// SIGVTALRM; the handler runs on the interrupted green thread's stack and,
// when a preemption is due and allowed, parks the M there with its thread
// and hands the M's processor to a spare M (park.c). It never switches to
// another green thread on this OS thread, so no code that the program runs
// can ever see its OS-thread state (lock owners, thread-locals, errno) taken
// over by another green thread: any point outside our own critical sections
// is a safe point.
//
// A preemption is due when the running thread has used its slice (counted
// in tick periods of CPU time), when a waker asked for it (a higher-priority
// thread became ready), or when the monitor took this M's processor away
// while it was blocked in the OS. It is allowed unless
//   1. the kernel is inside its own critical section (`critical > 0`), or
//   2. the thread is inside GreenThread.withoutPreemption (`no_preempt > 0`).
// Otherwise it stays pending and is honoured when the section ends
// (gt_exit_critical / gt_no_preempt_exit return 1; gt_park_pending).
//
// The same signal, sent with tgkill, also asks for a running thread's stack
// trace and ends an idle processor's epoll_pwait (io.c); in a Machine's
// scheduling context (no current thread) the handler does nothing else.
#include "gt_core.h"
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

extern __thread gt_worker_state gt_tls_state;
extern int gt_highest_ready_level;

// Issue 6: set once by unwind.c before any trace request is posted.
static _Atomic(gt_trace_hook) gt_installed_trace_hook;
void gt_set_trace_hook(gt_trace_hook hook) { atomic_store(&gt_installed_trace_hook, hook); }

// Whether a thread of at least `t`'s priority is ready. A stale answer is
// harmless: a missed waiter is signalled again by its waker
// (gt_request_preemption), a phantom one costs two hand-offs.
static int gt_someone_waits(const gt_thread_core *t) {
    return __atomic_load_n(&gt_highest_ready_level, __ATOMIC_RELAXED) >= t->effective_level;
}

// Nobody to give way to: the thread keeps the CPU with a fresh slice.
static void gt_slice_restart(gt_worker_state *w, gt_thread_core *t) {
    uint64_t now = gt_tsc();
    t->cpu_ticks += now - w->slice_start;
    t->cpu_tick_ns += (uint64_t)w->slice_periods * (uint64_t)w->tick_ns;
    w->slice_start = now;
    w->slice_periods = 0;
}

static void gt_on_sigvtalrm(int sig, siginfo_t *info, void *context) {
    (void)sig;
    int saved_errno = errno;  // the interrupted code's errno, restored on return (hazard 1)
    gt_worker_state *w = &gt_tls_state;
    if (!w->is_worker) goto out;  // a stray signal on a host thread: ignore it
    // Issue 6: another thread asked for the running thread's stack trace
    // (gt-ps, Kernel.snapshot, a dump). First, so the trace shows the thread
    // as it was interrupted; the hook only walks `context` into the
    // request's pre-allocated buffer (unwind.c), then the tick goes on as usual.
    void *trace_request = __atomic_exchange_n(&w->trace_request, NULL, __ATOMIC_ACQ_REL);
    if (trace_request != NULL) {
        gt_trace_hook hook = atomic_load(&gt_installed_trace_hook);
        if (hook != NULL) hook(w, trace_request, context);
    }
    w->ticks++;
    // Taken even in the scheduling context: a request that found no thread
    // to preempt must not end the slice of the next one (issue 10).
    int requested = __atomic_exchange_n(&w->preempt_requested, 0, __ATOMIC_ACQUIRE);
    gt_thread_core *t = w->current;
    if (t == NULL || !w->preemption_enabled) goto out;  // the M's scheduling context

    // Step 1: is a preemption due? The slice is counted in periods of this
    // M's CPU-time clock, not in wall time: time the OS takes the M away does
    // not count against the green thread on it (measured: under CPU
    // contention, wall-time slices skewed equal spinners' shares by up to
    // 40%; CPU-time slices by under 8%). Periods that pass between two of the
    // kernel's timer checks arrive as one signal with an overrun count.
    if (info->si_code == SI_TIMER && info->si_value.sival_int == 1) {
        w->slice_periods += 1 + (uint32_t)(info->si_overrun > 0 ? info->si_overrun : 0);
    }
    int lost = __atomic_load_n(&w->processor, __ATOMIC_ACQUIRE) == NULL;
    int expired = w->slice_periods >= w->periods_per_slice;
    if (!lost && !requested && !expired && !w->preempt_pending) goto out;

    // Step 2: is anyone to give way to? If not, a fresh slice; an M without
    // a processor must park whatever is ready.
    if (!lost && !gt_someone_waits(t)) {
        if (expired) gt_slice_restart(w, t);
        w->preempt_pending = 0;
        goto out;
    }

    // Step 3: allowed here? Inside our critical sections or a no-preempt
    // region it waits for the section's end; inside the allocator, for the
    // next tick.
    if (w->critical > 0 || t->no_preempt > 0 ||
        (gt_fix_enabled(GT_FIX_ALLOCATOR) && gt_allocator_busy(context))) {
        if (!w->preempt_pending) { t->deferrals++; w->deferrals++; }
        w->preempt_pending = 1;
        goto out;
    }

    // Step 4: park this M with its thread until the scheduler picks it
    // again (park.c). The count is raised for the duration so that nothing
    // on this M treats the parked thread as preemptible twice.
    w->critical++;
    w->preempt_pending = 0;
    if (gt_park(w, context)) {
        t->preemptions++;
        w->preemptions++;
    } else {
        w->preempt_pending = 1;  // no spare M yet: the next tick retries
    }
    w->critical--;
out:
    errno = saved_errno;
}

static struct sigaction gt_previous_sigvtalrm;
static int gt_sigvtalrm_installed;

int gt_preemption_install(void) {
    if (gt_sigvtalrm_installed) return 0;
    struct sigaction old;
    sigaction(SIGVTALRM, NULL, &old);
    int ours = (old.sa_flags & SA_SIGINFO) && old.sa_sigaction == gt_on_sigvtalrm;
    if (!ours && (old.sa_flags & SA_SIGINFO ? old.sa_sigaction != NULL
                                            : (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))) {
        errno = EBUSY;  // the host program handles SIGVTALRM: refuse to take it over
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = gt_on_sigvtalrm;
    // SA_RESTART: restartable system calls continue after a tick instead of
    // failing with EINTR. No SA_ONSTACK: the handler parks on the green
    // thread's own stack, so its frame (and the signal frame with the whole
    // register file) stays with the thread; a parked M's alternate stack
    // stays free for a SIGSEGV. SIGVTALRM itself is blocked while the
    // handler runs (no SA_NODEFER): a parked M never nests a second one.
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGVTALRM, &sa, &gt_previous_sigvtalrm) != 0) return -1;
    gt_sigvtalrm_installed = 1;
    return 0;
}

void gt_preemption_uninstall(void) {
    if (!gt_sigvtalrm_installed) return;
    sigaction(SIGVTALRM, &gt_previous_sigvtalrm, NULL);
    gt_sigvtalrm_installed = 0;
}

// ---------------------------------------------------------------------------
// Timers.

int gt_worker_timers_start(gt_worker_state *w, int64_t tick_ns) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;  // this M only, never another thread
    sev.sigev_signo = SIGVTALRM;
    sev.sigev_notify_thread_id = w->tid;
    sev.sigev_value.sival_int = 1;
    // The tick counts this M's CPU time: an M blocked in a system call,
    // parked or idle accrues none, so it is neither woken nor interrupted.
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &w->tick_timer) != 0) return -1;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = tick_ns / 1000000000;
    its.it_value.tv_nsec = tick_ns % 1000000000;
    its.it_interval = its.it_value;
    if (timer_settime(w->tick_timer, 0, &its, NULL) != 0) {
        int e = errno;
        timer_delete(w->tick_timer);
        errno = e;
        return -1;
    }
    w->timers_armed = 1;
    return 0;
}

void gt_worker_timers_stop(gt_worker_state *w) {
    if (!w->timers_armed) return;
    timer_delete(w->tick_timer);
    w->timers_armed = 0;
}
