// preempt.c: the SIGVTALRM handler, the per-worker timers, and the table of
// code ranges where a preemption must be deferred.
//
// The design is written up at the top of Sources/GreenThreads/Preemption/
// Preemption.swift and in docs/preemption.md. In short: the handler runs on
// the interrupted green thread's own stack; when the point is safe it asks
// the Swift scheduler (the `preempt` hook) to switch away right there, so the
// kernel-built signal frame keeps the thread's whole register file until the
// thread is resumed and returns through it (sigreturn restores everything,
// signal mask included).
//
// A point is safe when all of these hold:
//   1. this OS thread is a worker running a green thread (not its idle context);
//   2. the kernel is not inside its own critical section (`critical == 0`);
//   3. the thread is not inside GreenThread.withoutPreemption or a swift_once
//      initializer (`no_preempt == 0`);
//   4. the interrupted PC is outside the core's gt_core_text section and
//      outside every deny-listed image (libc, loader, vdso, Swift runtime,
//      Foundation, Dispatch, libunwind, libstdc++, libgcc_s).
// Otherwise the preemption is left pending: it is honoured when the critical
// section or no-preempt region ends, or by a one-shot retry timer.
#include "gt_core.h"
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define GT_CORE_TEXT __attribute__((section("gt_core_text"), noinline, used))

extern __thread gt_worker_state gt_tls_state;
extern char __start_gt_core_text[];
extern char __stop_gt_core_text[];

static gt_hooks gt_installed_hooks;
void gt_install_hooks(gt_hooks hooks) { gt_installed_hooks = hooks; }
void gt_yield_pending(void) { if (gt_installed_hooks.yield_pending) gt_installed_hooks.yield_pending(); }

// Issue 6: set once by unwind.c before any trace request is posted.
static _Atomic(gt_trace_hook) gt_installed_trace_hook;
void gt_set_trace_hook(gt_trace_hook hook) { atomic_store(&gt_installed_trace_hook, hook); }

// ---------------------------------------------------------------------------
// The unsafe-PC table. Built before workers start, read by handlers without
// locks or allocation: ranges are published by a release store of the count.

#define GT_MAX_RANGES 512
typedef struct { uintptr_t start, end; } gt_range;
static gt_range gt_ranges[GT_MAX_RANGES];
static _Atomic int gt_range_count;

// Images whose code may hold a lock (malloc arenas, stdio, the loader lock,
// Swift metadata caches and swift_once, Dispatch queues) or is not ours to
// interrupt (the vdso). Matched against the file name's prefix.
static const char *const gt_unsafe_images[] = {
    "libc.so", "libc-", "ld-linux", "ld64.so", "linux-vdso", "linux-gate",
    "libpthread", "libdl.so", "librt.so", "libm.so",
    "libswift",            // libswiftCore, _Concurrency, Synchronization, Glibc, ...
    "libFoundation", "lib_Foundation", "libdispatch", "libBlocksRuntime",
    "libicu", "libunwind", "libstdc++", "libgcc_s", "libc++",
};

static int gt_image_is_unsafe(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (*base == '\0') return 0;  // the main executable: the program's own code
    for (size_t i = 0; i < sizeof gt_unsafe_images / sizeof gt_unsafe_images[0]; i++) {
        if (strncmp(base, gt_unsafe_images[i], strlen(gt_unsafe_images[i])) == 0) return 1;
    }
    return 0;
}

static int gt_collect_ranges(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    int *n = data;
    if (!gt_image_is_unsafe(info->dlpi_name ? info->dlpi_name : "")) return 0;
    for (int i = 0; i < info->dlpi_phnum && *n < GT_MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        gt_ranges[*n].start = info->dlpi_addr + ph->p_vaddr;
        gt_ranges[*n].end = gt_ranges[*n].start + ph->p_memsz;
        (*n)++;
    }
    return 0;
}

static int gt_range_compare(const void *a, const void *b) {
    uintptr_t x = ((const gt_range *)a)->start, y = ((const gt_range *)b)->start;
    return x < y ? -1 : x > y;
}

// The images a stack walk itself relies on (their locks, their tables).
static gt_range gt_unwinder_ranges[16];
static int gt_unwinder_range_count;

static int gt_collect_unwinder(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    const char *path = info->dlpi_name ? info->dlpi_name : "";
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "ld-linux", 8) && strncmp(base, "ld64.so", 7) && strncmp(base, "libunwind", 9) &&
        strncmp(base, "libgcc_s", 8) && strncmp(base, "linux-vdso", 10)) return 0;
    for (int i = 0; i < info->dlpi_phnum && gt_unwinder_range_count < 16; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        gt_unwinder_ranges[gt_unwinder_range_count].start = info->dlpi_addr + ph->p_vaddr;
        gt_unwinder_ranges[gt_unwinder_range_count].end = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        gt_unwinder_range_count++;
    }
    return 0;
}

int gt_pc_in_unwinder(uintptr_t pc) {
    for (int i = 0; i < gt_unwinder_range_count; i++) {
        if (pc >= gt_unwinder_ranges[i].start && pc < gt_unwinder_ranges[i].end) return 1;
    }
    return 0;
}

int gt_unsafe_ranges_build(void) {
    atomic_store_explicit(&gt_range_count, 0, memory_order_release);
    int n = 0;
    dl_iterate_phdr(gt_collect_ranges, &n);
    qsort(gt_ranges, (size_t)n, sizeof(gt_range), gt_range_compare);
    gt_unwinder_range_count = 0;
    dl_iterate_phdr(gt_collect_unwinder, NULL);
    gt_hijack_init();
    atomic_store_explicit(&gt_range_count, n, memory_order_release);
    return n;
}

int gt_unsafe_range_count(void) { return atomic_load_explicit(&gt_range_count, memory_order_acquire); }

int gt_pc_is_unsafe(uintptr_t pc) {
    if (pc >= (uintptr_t)__start_gt_core_text && pc < (uintptr_t)__stop_gt_core_text) return 1;
    int n = atomic_load_explicit(&gt_range_count, memory_order_acquire);
    int lo = 0, hi = n - 1;
    while (lo <= hi) {  // the last range starting at or below pc
        int mid = (lo + hi) / 2;
        if (gt_ranges[mid].start <= pc) lo = mid + 1; else hi = mid - 1;
    }
    return hi >= 0 && pc < gt_ranges[hi].end;
}

// ---------------------------------------------------------------------------
// The handler.

static uintptr_t gt_interrupted_pc(const ucontext_t *uc) {
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#endif
}

static void gt_arm_retry(gt_worker_state *w);

// Lies in gt_core_text: after a resumed thread lowers `critical` below, a
// second SIGVTALRM landing in the rest of this function is deferred rather
// than nesting another signal frame on the thread's stack.
GT_CORE_TEXT static void gt_on_sigvtalrm(int sig, siginfo_t *info, void *context) {
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
    gt_thread_core *t = w->current;
    if (t == NULL || !w->preemption_enabled) goto out;  // idle context

    // Is a preemption due? A waker asked for one, a deferred one is pending,
    // or the running thread has used its time slice. The slice is counted in
    // periods of the tick's CPU-time clock, not in wall time: time the OS
    // takes the worker away does not count against the green thread that was
    // on it (measured: under CPU contention, wall-time slices skewed equal
    // spinners' shares by up to 40%; CPU-time slices by under 8%). Periods
    // that pass between two of the kernel's timer checks arrive as one
    // signal with an overrun count.
    if (info->si_code == SI_TIMER && info->si_value.sival_int == 1) {
        w->slice_periods += 1 + (uint32_t)(info->si_overrun > 0 ? info->si_overrun : 0);
    }
    int requested = __atomic_exchange_n(&w->preempt_requested, 0, __ATOMIC_ACQUIRE);
    int expired = w->slice_periods >= w->periods_per_slice;
    if (!requested && !expired && !w->preempt_pending) goto out;

    ucontext_t *uc = context;
    int locked = w->critical > 0 || t->no_preempt > 0;
    int unsafe_pc = gt_fix_enabled(GT_FIX_PC_CHECK) && gt_pc_is_unsafe(gt_interrupted_pc(uc));
    if (locked || unsafe_pc) {
        if (!w->preempt_pending) { t->deferrals++; w->deferrals++; }
        w->preempt_pending = 1;
        if (!locked) {  // else the bracket's exit honours it
            // In libc or the runtime: preempt on its return to program
            // code (hijack.c), with the retry timer as the fallback.
            gt_hijack_try(t, uc);
            gt_arm_retry(w);
            t->retries++;
        }
        goto out;
    }
    gt_hijack_undo(t);  // preempted here first: the return address goes back

    // Safe: switch away from inside the handler. The bracket is raised here
    // and lowered by this thread when it resumes; the next context lowers
    // its own. SIGVTALRM stays blocked (the kernel blocked it for the
    // handler): whoever resumes next unblocks it unless it resumes in a
    // handler of its own, where sigreturn restores its mask.
    w->preempt_pending = 0;
    w->critical++;
    w->sigvt_blocked = 1;
    t->preempt_context = uc;
    if (gt_installed_hooks.preempt) gt_installed_hooks.preempt();
    t->preempt_context = NULL;
    w = gt_self();  // possibly another OS thread now
    w->sigvt_blocked = 0;  // sigreturn below restores the interrupted mask
    w->critical--;
out:
    if (gt_fix_enabled(GT_FIX_ERRNO)) errno = saved_errno;
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
    // failing with EINTR. No SA_ONSTACK: the handler must run on the green
    // thread's own stack, since it may switch away from inside it. An empty
    // sa_mask: the handler may switch to a thread that never returns through
    // it, so it must not block anything beyond SIGVTALRM itself.
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

static int64_t gt_retry_ns_value = 100000;

int gt_worker_timers_start(gt_worker_state *w, int64_t tick_ns, int64_t retry_ns) {
    gt_retry_ns_value = retry_ns;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;  // this worker only, never another thread
    sev.sigev_signo = SIGVTALRM;
    sev.sigev_notify_thread_id = w->tid;
    sev.sigev_value.sival_int = 1;
    // The tick counts this worker's CPU time: a worker blocked in a system
    // call or idle accrues none, so it is neither woken nor interrupted.
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &w->tick_timer) != 0) return -1;
    sev.sigev_value.sival_int = 2;
    // The retry is wall-clock: CPU-time timers only fire on the kernel's
    // scheduler tick (4 ms at 250 Hz), far too coarse to retry a deferral.
    if (timer_create(CLOCK_MONOTONIC, &sev, &w->retry_timer) != 0) {
        int e = errno;
        timer_delete(w->tick_timer);
        errno = e;
        return -1;
    }
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = tick_ns / 1000000000;
    its.it_value.tv_nsec = tick_ns % 1000000000;
    its.it_interval = its.it_value;
    if (timer_settime(w->tick_timer, 0, &its, NULL) != 0) {
        int e = errno;
        timer_delete(w->tick_timer);
        timer_delete(w->retry_timer);
        errno = e;
        return -1;
    }
    w->timers_armed = 1;
    return 0;
}

void gt_worker_timers_stop(gt_worker_state *w) {
    if (!w->timers_armed) return;
    timer_delete(w->tick_timer);
    timer_delete(w->retry_timer);
    w->timers_armed = 0;
}

// Retries of one pending preemption: the first GT_RETRY_FLAT come at the base
// delay (a thread that lives in libc or the Swift runtime needs dozens of
// tries to be caught at a safe point: at 97% unsafe, 33 on average); later
// ones back off (2x, 4x, ... 32x), so a thread that sits in a long system
// call with a preemption pending does not draw a signal every few
// microseconds. Both counts reset when the worker switches threads.
#define GT_RETRY_FLAT 48
#define GT_RETRY_MAX_SHIFT (GT_RETRY_FLAT + 5)

static void gt_arm_retry(gt_worker_state *w) {
    if (!w->timers_armed) return;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    int extra = w->retry_shift > GT_RETRY_FLAT ? w->retry_shift - GT_RETRY_FLAT : 0;
    int64_t ns = gt_retry_ns_value << extra;
    if (w->retry_shift < GT_RETRY_MAX_SHIFT) w->retry_shift++;
    its.it_value.tv_sec = ns / 1000000000;
    its.it_value.tv_nsec = ns % 1000000000;
    timer_settime(w->retry_timer, 0, &its, NULL);  // async-signal-safe
    w->retries++;
}

void gt_after_switch_signals(gt_worker_state *w) {
    if (!w->sigvt_blocked) return;
    w->sigvt_blocked = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGVTALRM);
    // Paid only after a switch out of a handler (a 190 ns system call).
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
