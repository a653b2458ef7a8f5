// once.c: lazy global initializers must never be preempted (hazard 4).
//
// Swift runs a global's initializer through swift_once, which holds a lock
// owned by the OS thread for the duration. If green thread A were preempted
// inside the initializer and B, on the same worker, touched the same global,
// B would wait on a lock its own OS thread holds: the runtime's lock attempt
// fails with EDEADLK and retries forever with B's PC inside libswiftCore, so
// B is never preempted and A never resumes. Moving A elsewhere does not help
// (the unlock would then come from the wrong OS thread).
//
// The program's calls to swift_once bind to this definition (the executable
// defines the symbol, so the static link resolves to it before
// libswiftCore's): it marks the calling green thread non-preemptible for the
// duration and calls the runtime's swift_once, found with
// dlsym(RTLD_NEXT). Calls from inside the Swift libraries themselves reach
// the runtime directly; their PCs are in deny-listed images, so they are
// never preempted anyway. An initializer that blocks on a green primitive
// still lets other threads run on the worker: that remains unsafe (see
// docs/preemption.md).
#include "gt_core.h"
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>

#define GT_CORE_TEXT __attribute__((section("gt_core_text"), noinline, used))

extern __thread gt_worker_state gt_tls_state;

typedef void (*gt_swift_once_fn)(void *predicate, void (*fn)(void *), void *context);
static _Atomic(gt_swift_once_fn) gt_real_swift_once;

static gt_swift_once_fn gt_resolve_swift_once(void) {
    gt_swift_once_fn f = atomic_load_explicit(&gt_real_swift_once, memory_order_acquire);
    if (f == NULL) {
        f = (gt_swift_once_fn)dlsym(RTLD_NEXT, "swift_once");
        if (f == NULL) {
            gt_write_stderr("GreenThreads: cannot find the Swift runtime's swift_once\n");
            abort();
        }
        atomic_store_explicit(&gt_real_swift_once, f, memory_order_release);
    }
    return f;
}

// Reads the current thread inside gt_core_text (no preemption can split the
// read), then keeps the thread's own control block: it stays valid wherever
// the thread runs.
GT_CORE_TEXT static gt_thread_core *gt_once_begin(void) {
    gt_thread_core *t = gt_tls_state.is_worker ? gt_tls_state.current : NULL;
    if (t != NULL && gt_fix_enabled(GT_FIX_SWIFT_ONCE)) {
        t->no_preempt++;
        return t;
    }
    return NULL;
}

void swift_once(void *predicate, void (*fn)(void *), void *context) {
    gt_swift_once_fn real = gt_resolve_swift_once();
    gt_thread_core *t = gt_once_begin();
    real(predicate, fn, context);
    if (t != NULL && gt_no_preempt_exit()) {
        // A tick was deferred while the initializer ran: honour it now.
        gt_yield_pending();
    }
}
