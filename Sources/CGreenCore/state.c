// state.c: the per-OS-thread state (TLS) and the preempt-disable bracket.
//
// Why these are out-of-line C functions in the gt_core_text section: a green
// thread may be preempted between any two instructions outside that section
// and resumed on another OS thread. Reading "this OS thread's state" and
// raising its count must therefore happen where no preemption can land; the
// SIGVTALRM handler defers every PC inside gt_core_text. Being in their own
// translation unit also keeps callers from caching a TLS address across a
// switch (each call computes it anew).
#include "gt_core.h"
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

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

GT_CORE_TEXT int gt_exit_critical(void) {
    gt_worker_state *w = &gt_tls_state;
    if (--w->critical == 0 && w->preempt_pending && w->current != NULL &&
        w->current->no_preempt == 0 && w->preemption_enabled) {
        return 1;
    }
    return 0;
}

GT_CORE_TEXT void *gt_current_owner(void) {
    gt_thread_core *t = gt_tls_state.is_worker ? gt_tls_state.current : NULL;
    return t ? t->owner : NULL;
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
    if (t && --t->no_preempt == 0 && w->preempt_pending && w->critical == 0 && w->preemption_enabled) {
        return 1;
    }
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

void gt_write_stderr(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t k = write(2, s, n);
        if (k < 0) { if (errno == EINTR) continue; return; }
        s += k; n -= (size_t)k;
    }
}

// Hazard fixes that regression tests switch off to prove they fail without them.
int gt_fix_flags[GT_FIX_COUNT] = {1, 1, 1, 1, 1, 1};
static const char *const gt_fix_names[GT_FIX_COUNT] = {"errno", "exclusivity", "pc-check", "swift-once", "eintr", "hijack"};

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

