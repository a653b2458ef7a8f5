// audit.c: interposes pthread_mutex_lock and the rwlock acquisitions for the
// test host (see gt_lock_audit.h). The executable's definitions come first
// in symbol lookup, so libswiftCore's and libc's other users call these;
// each forwards to the next definition (libc's) found at load time.
#define _GNU_SOURCE
#include "gt_lock_audit.h"
#include "gt_core.h"
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdlib.h>

typedef int (*gt_lock_fn)(void *);

static gt_lock_fn gt_real_mutex_lock, gt_real_rdlock, gt_real_wrlock;
static atomic_int gt_audit_on;
static atomic_llong gt_audit_count;

enum { GT_AUDIT_KEPT = 64, GT_AUDIT_DEPTH = 24 };
static void *gt_audit_frames[GT_AUDIT_KEPT][GT_AUDIT_DEPTH];
static int gt_audit_depth[GT_AUDIT_KEPT];
static __thread int gt_audit_inside;
static int gt_audit_seen(int i);  // backtrace() may lock: do not count ourselves

// Resolved on first use: the Swift runtime takes locks while it registers
// the executable's metadata, before any constructor of ours has run.
static gt_lock_fn gt_resolve(gt_lock_fn *slot, const char *name) {
    gt_lock_fn f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (f == NULL) {
        f = (gt_lock_fn)dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    }
    return f;
}

// Whether `caller` lies in libunwind. Its locks are held only while a thread
// runs libunwind's code, where no thread is ever parked (allocator.c counts
// its image as busy), so the kernel's stack traces may take them; and the
// audit's own backtrace takes them too.
static int gt_audit_in_libunwind(void *caller) {
    Dl_info info;
    return dladdr(caller, &info) && info.dli_fname != NULL && strstr(info.dli_fname, "libunwind") != NULL;
}

static void gt_audit_check(void *caller) {
    if (!atomic_load_explicit(&gt_audit_on, memory_order_relaxed) || gt_audit_inside) return;
    if (!gt_kernel_lock_held_by_caller() || gt_audit_in_libunwind(caller)) return;
    gt_audit_inside = 1;
    long long n = atomic_fetch_add(&gt_audit_count, 1);
    if (n < GT_AUDIT_KEPT) gt_audit_depth[n] = backtrace(gt_audit_frames[n], GT_AUDIT_DEPTH);
    gt_audit_inside = 0;
}

int pthread_mutex_lock(pthread_mutex_t *m) {
    gt_audit_check(__builtin_return_address(0));
    return gt_resolve(&gt_real_mutex_lock, "pthread_mutex_lock")(m);
}

int pthread_rwlock_rdlock(pthread_rwlock_t *l) {
    gt_audit_check(__builtin_return_address(0));
    return gt_resolve(&gt_real_rdlock, "pthread_rwlock_rdlock")(l);
}

int pthread_rwlock_wrlock(pthread_rwlock_t *l) {
    gt_audit_check(__builtin_return_address(0));
    return gt_resolve(&gt_real_wrlock, "pthread_rwlock_wrlock")(l);
}

void gt_lock_audit_enable(int on) { atomic_store(&gt_audit_on, on); }

// GT_LOCK_AUDIT=<file>: audit the whole run of any scenario and append what
// was found to <file> at exit (a survey of the scenarios, not a test).
static void gt_audit_survey_report(void) {
    const char *path = getenv("GT_LOCK_AUDIT");
    long long n = atomic_load(&gt_audit_count);
    if (path == NULL || n == 0) return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return;
    char cmd[256] = "";
    int cfd = open("/proc/self/cmdline", O_RDONLY);
    if (cfd >= 0) {
        ssize_t len = read(cfd, cmd, sizeof cmd - 1);
        close(cfd);
        for (ssize_t i = 0; i < len; i++) if (cmd[i] == 0) cmd[i] = ' ';
    }
    dprintf(fd, "=== %s: %lld\n", cmd, n);
    for (int i = 0; i < n && i < GT_AUDIT_KEPT; i++) {
        if (gt_audit_seen(i)) continue;
        dprintf(fd, "--- %d ---\n", i + 1);
        backtrace_symbols_fd(gt_audit_frames[i], gt_audit_depth[i], fd);
    }
    close(fd);
}

__attribute__((constructor)) static void gt_audit_survey(void) {
    if (getenv("GT_LOCK_AUDIT") == NULL) return;
    atomic_store(&gt_audit_on, 1);
    atexit(gt_audit_survey_report);
}
int64_t gt_lock_audit_violations(void) { return atomic_load(&gt_audit_count); }
void gt_lock_audit_reset(void) { atomic_store(&gt_audit_count, 0); }

// Whether trace i repeats an earlier one (the same call sites).
static int gt_audit_seen(int i) {
    for (int j = 0; j < i; j++) {
        if (gt_audit_depth[j] == gt_audit_depth[i] &&
            memcmp(gt_audit_frames[j], gt_audit_frames[i], sizeof(void *) * (size_t)gt_audit_depth[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

void gt_lock_audit_report(void) {
    long long n = atomic_load(&gt_audit_count);
    for (int i = 0; i < n && i < GT_AUDIT_KEPT; i++) {
        if (gt_audit_seen(i)) continue;
        dprintf(2, "--- lock taken with the kernel lock held (%d of %lld) ---\n", i + 1, n);
        backtrace_symbols_fd(gt_audit_frames[i], gt_audit_depth[i], 2);
    }
}
