// sys.c: every system call the library makes, one wrapper each.
//
// errno is per OS thread and a green thread can be preempted and moved to
// another OS thread between any two of its instructions; Swift code may also
// run runtime calls (retain/release, allocation) that clobber errno between a
// call and a later read. So each wrapper reads errno in C right after the
// call and returns it with the result: callers never read errno themselves.
#include "gt_core.h"
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

static inline gt_sysresult gt_result(long value) {
    gt_sysresult r = {value, value < 0 ? errno : 0};
    return r;
}

gt_sysresult gt_sys_mmap(size_t length, int prot, int flags, void **out) {
    void *p = mmap(NULL, length, prot, flags, -1, 0);
    if (p == MAP_FAILED) { gt_sysresult r = {-1, errno}; *out = NULL; return r; }
    *out = p;
    gt_sysresult r = {0, 0};
    return r;
}

gt_sysresult gt_sys_munmap(void *addr, size_t length) { return gt_result(munmap(addr, length)); }
gt_sysresult gt_sys_madvise(void *addr, size_t length, int advice) { return gt_result(madvise(addr, length, advice)); }
gt_sysresult gt_sys_mprotect(void *addr, size_t length, int prot) { return gt_result(mprotect(addr, length, prot)); }

gt_sysresult gt_sys_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    // FUTEX_PRIVATE_FLAG: the word is never shared with another process.
    return gt_result(syscall(SYS_futex, addr, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, expected, tsp, NULL, 0));
}

gt_sysresult gt_sys_futex_wake(uint32_t *addr, int count) {
    return gt_result(syscall(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, NULL, NULL, 0));
}

gt_sysresult gt_sys_gettid(void) { return gt_result(syscall(SYS_gettid)); }

gt_sysresult gt_sys_tgkill(int tid, int sig) {
    return gt_result(syscall(SYS_tgkill, getpid(), tid, sig));
}

gt_sysresult gt_sys_nanosleep(int64_t ns) {
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    // The kernel's own sleeps restart after our signals instead of failing.
    for (;;) {
        int rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts);
        if (rc != EINTR) { gt_sysresult r = {rc ? -1 : 0, rc}; return r; }
    }
}

gt_sysresult gt_sys_sched_yield(void) { return gt_result(sched_yield()); }

int64_t gt_clock_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t gt_thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// The counter's frequency, measured once per process. On aarch64 the
// architecture reports it; on x86-64 we time the TSC against CLOCK_MONOTONIC
// over 5 ms (an invariant TSC is assumed: every x86-64 CPU of the last decade
// and every KVM guest with constant_tsc has one).
static _Atomic uint64_t gt_tsc_hz;

uint64_t gt_tsc_frequency(void) {
    uint64_t hz = atomic_load_explicit(&gt_tsc_hz, memory_order_relaxed);
    if (hz) return hz;
#if defined(__aarch64__)
    __asm__ __volatile__("mrs %0, cntfrq_el0" : "=r"(hz));
#else
    int64_t t0 = gt_clock_monotonic_ns();
    uint64_t c0 = gt_tsc();
    struct timespec ts = {0, 5000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    int64_t t1 = gt_clock_monotonic_ns();
    uint64_t c1 = gt_tsc();
    hz = (uint64_t)((double)(c1 - c0) * 1e9 / (double)(t1 - t0));
#endif
    if (hz == 0) hz = 1000000000;
    atomic_store_explicit(&gt_tsc_hz, hz, memory_order_relaxed);
    return hz;
}

#include <pthread.h>
#include <sched.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>

int gt_monitor_open(int *event_fd, int *timer_fd) {
    int e = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e < 0) return errno;
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (t < 0) {
        int error = errno;
        close(e);
        return error;
    }
    *event_fd = e;
    *timer_fd = t;
    return 0;
}

void gt_monitor_close(int event_fd, int timer_fd) {
    close(event_fd);
    close(timer_fd);
}

void gt_monitor_arm(int timer_fd, int64_t deadline_ns) {
    // 0 would disarm the timer: a deadline at or before the epoch means "now".
    if (deadline_ns < 1) deadline_ns = 1;
    struct itimerspec when = {
        .it_value = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000},
    };
    timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &when, NULL);
}

void gt_monitor_wake(int event_fd) {
    uint64_t one = 1;
    // Fails only when the counter would overflow: it is then already set.
    ssize_t n = write(event_fd, &one, sizeof one);
    (void)n;
}

void gt_monitor_wait(int event_fd, int timer_fd) {
    struct pollfd fds[2] = {{.fd = event_fd, .events = POLLIN}, {.fd = timer_fd, .events = POLLIN}};
    // A signal (EINTR) only makes the monitor look early.
    if (poll(fds, 2, -1) > 0 && (fds[0].revents & POLLIN)) {
        uint64_t posted;
        ssize_t n = read(event_fd, &posted, sizeof posted);  // clears it
        (void)n;
    }
    // The timer's expiry count is cleared by the next gt_monitor_arm.
}

int gt_affinity_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}

void gt_set_thread_name(const char *name) {
    char buf[16];  // the kernel keeps 15 characters
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    pthread_setname_np(pthread_self(), buf);
}

void gt_set_timer_slack_ns(unsigned long ns) {
    // The default slack (50 us) lets the kernel delay a timed futex wait
    // that much; the monitor's wake-ups of sleepers must be prompt.
    prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0);
}

int gt_raise_to_realtime(int priority) {
    struct sched_param param = {.sched_priority = priority};
    int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
    return rc == 0 ? 0 : -rc;
}

int gt_shadow_stack_enabled(void) {
#if defined(__x86_64__)
    unsigned long features = 0;
    // ARCH_SHSTK_STATUS (Linux 6.6+); older kernels fail with EINVAL: no shadow stack.
    if (syscall(SYS_arch_prctl, 0x5005, &features) == 0) return (features & 1) != 0;
#endif
    return 0;
}

#include <sys/uio.h>

// Installs `count` guard regions of `guard` bytes at `first`, `first +
// stride`, ... with one process_madvise(2) call on our own pidfd instead of
// one madvise(2) each (0.9 us instead of 1.4 us per guard here). Returns the
// number installed, or -1 with the error (callers then fall back to madvise).
gt_sysresult gt_sys_guard_install_batch(void *first, size_t stride, size_t guard, int count) {
    static int pidfd = -1;
    static pid_t pidfd_owner;
    gt_sysresult r = {-1, 0};
    if (pidfd < 0 || pidfd_owner != getpid()) {  // after fork, the pidfd names the parent
        if (pidfd >= 0) close(pidfd);
        pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        if (pidfd < 0) { r.error = errno; return r; }
        pidfd_owner = getpid();
    }
    struct iovec iov[256];  // below UIO_MAXIOV (1024)
    if (count > 256) count = 256;
    for (int i = 0; i < count; i++) {
        iov[i].iov_base = (char *)first + (size_t)i * stride;
        iov[i].iov_len = guard;
    }
    long done = syscall(SYS_process_madvise, pidfd, iov, (size_t)count, GT_MADV_GUARD_INSTALL, 0);
    if (done < 0) { r.error = errno; return r; }
    r.value = done == (long)(count * guard) ? count : (long)(done / (long)guard);
    return r;
}

int64_t gt_thread_cpu_ns_of(unsigned long thread) {
    clockid_t clock;
    if (pthread_getcpuclockid((pthread_t)thread, &clock) != 0) return -1;
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0) return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

char gt_os_thread_state(int tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    // "tid (comm) S ...": comm may hold spaces and parentheses; the state
    // follows the last ')'.
    char *close_paren = strrchr(buf, ')');
    if (close_paren == NULL || close_paren[1] != ' ') return 0;
    return close_paren[2];
}
