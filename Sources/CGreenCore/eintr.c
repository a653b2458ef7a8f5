// eintr.c: no spurious EINTR from our preemption signals (hazard 5).
//
// SA_RESTART makes the kernel restart most interrupted system calls (read,
// write, wait, futex, ...) after a SIGVTALRM. The sleeps are never restarted:
// nanosleep and clock_nanosleep fail with EINTR whenever a handler runs. A
// preemption tick can land while a green thread sleeps in the kernel (the
// one-shot retry timer is wall-clock), so without help the program would see
// EINTR from a sleep that no signal of its own interrupted.
//
// The program's calls to the sleep functions bind to these definitions (the
// executable defines the symbols). Each calls the C library's function (found
// with dlsym(RTLD_NEXT)) and, when it fails with EINTR while this OS thread
// took one of our SIGVTALRMs during the call, sleeps again for the time left.
// A program's own signal that lands in the same call is then absorbed too:
// the sleep continues, as with SA_RESTART. Outside a kernel the functions
// pass straight through.
#include "gt_core.h"
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

extern __thread gt_worker_state gt_tls_state;

// In gt_core_text: a preemption between reading the tick counter and entering
// the system call could move the thread to another worker.
#define GT_CORE_TEXT __attribute__((section("gt_core_text"), noinline, used))

typedef int (*gt_nanosleep_fn)(const struct timespec *, struct timespec *);
typedef int (*gt_clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

static gt_nanosleep_fn gt_real_nanosleep(void) {
    static _Atomic(gt_nanosleep_fn) f;
    gt_nanosleep_fn g = atomic_load_explicit(&f, memory_order_acquire);
    if (!g) { g = (gt_nanosleep_fn)dlsym(RTLD_NEXT, "nanosleep"); atomic_store_explicit(&f, g, memory_order_release); }
    return g;
}

static gt_clock_nanosleep_fn gt_real_clock_nanosleep(void) {
    static _Atomic(gt_clock_nanosleep_fn) f;
    gt_clock_nanosleep_fn g = atomic_load_explicit(&f, memory_order_acquire);
    if (!g) { g = (gt_clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep"); atomic_store_explicit(&f, g, memory_order_release); }
    return g;
}

// A sleeping thread is in a system call, where it is never preempted (the PC
// is in libc), so it stays on this OS thread and the tick counter read before
// and after the call belongs to the same worker.
static int gt_absorbs_eintr(void) {
    return gt_tls_state.is_worker && gt_fix_enabled(GT_FIX_EINTR);
}

GT_CORE_TEXT int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request, struct timespec *remain) {
    gt_clock_nanosleep_fn real = gt_real_clock_nanosleep();
    if (!gt_absorbs_eintr()) return real(clock, flags, request, remain);
    // An absolute sleep has no remainder: the kernel never writes `rest`
    // for it, and POSIX leaves the caller's `remain` unused, so it is only
    // copied out for relative sleeps (copying it for TIMER_ABSTIME handed
    // the caller uninitialized stack bytes).
    const int absolute = (flags & TIMER_ABSTIME) != 0;
    struct timespec left = *request, rest = {0, 0};
    for (;;) {
        uint64_t ticks = gt_tls_state.ticks;
        int rc = real(clock, flags, &left, &rest);
        if (rc != EINTR || gt_tls_state.ticks == ticks) {
            if (rc == EINTR && remain && !absolute) *remain = rest;
            return rc;
        }
        if (!absolute) left = rest;  // absolute deadlines stay as they are
    }
}

GT_CORE_TEXT int nanosleep(const struct timespec *request, struct timespec *remain) {
    gt_nanosleep_fn real = gt_real_nanosleep();
    if (!gt_absorbs_eintr()) return real(request, remain);
    struct timespec left = *request, rest = {0, 0};
    for (;;) {
        uint64_t ticks = gt_tls_state.ticks;
        int rc = real(&left, &rest);
        if (rc == 0 || errno != EINTR || gt_tls_state.ticks == ticks) {
            if (rc != 0 && errno == EINTR && remain) *remain = rest;
            return rc;
        }
        left = rest;
    }
}

int usleep(useconds_t usec) {
    struct timespec ts = {usec / 1000000, (long)(usec % 1000000) * 1000};
    return nanosleep(&ts, NULL);
}

unsigned int sleep(unsigned int seconds) {
    struct timespec ts = {seconds, 0}, rest = {0, 0};
    if (nanosleep(&ts, &rest) != 0 && errno == EINTR) return (unsigned int)rest.tv_sec + (rest.tv_nsec > 0);
    return 0;
}
