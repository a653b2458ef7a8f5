// io.c: the I/O system calls, one wrapper each (declared in gt_io.h).
//
// errno: read right after each call and returned with the result, as in
// sys.c (a green thread may be preempted and resumed on another OS thread
// between any two instructions of Swift code, and Swift runtime calls may
// clobber errno before a later read).
//
// EINTR. Our own SIGVTALRM is installed with SA_RESTART and blocked on the
// threads that wait in the OS (the poller, the blocking pool), but a
// program's own handlers may lack SA_RESTART, and some calls are never
// restarted whatever the flag says (poll, epoll_wait, connect). The rule for
// each call:
//   read, write, accept4  retried: nothing happened, the call is repeated;
//   poll                  waits again for the time left to the deadline;
//   epoll_wait            returns 0 events: the poller's loop waits again;
//   connect               reported as EINPROGRESS: the connection goes on
//                         in the background (POSIX), the caller waits for
//                         writability like any non-blocking connect;
//   close                 never retried: Linux has freed the descriptor.
// The cases are tested with a table (Tests/GTTestHost/IOScenarios.swift,
// "io-eintr-table"): each call blocked while SIGUSR1 (no SA_RESTART) hits.
#include "gt_io.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline gt_sysresult gt_io_result(long value) {
    gt_sysresult r = {value, value < 0 ? errno : 0};
    return r;
}

gt_sysresult gt_io_read(int fd, void *buffer, size_t count) {
    for (;;) {
        long n = read(fd, buffer, count);
        if (n >= 0 || errno != EINTR) return gt_io_result(n);
    }
}

gt_sysresult gt_io_write(int fd, const void *buffer, size_t count) {
    for (;;) {
        long n = write(fd, buffer, count);
        if (n >= 0 || errno != EINTR) return gt_io_result(n);
    }
}

gt_sysresult gt_io_send(int fd, const void *buffer, size_t count) {
    for (;;) {
        // MSG_NOSIGNAL: a peer that went away is an EPIPE error for the
        // writer, not a SIGPIPE that ends the process.
        long n = send(fd, buffer, count, MSG_NOSIGNAL);
        if (n >= 0 || errno != EINTR) return gt_io_result(n);
    }
}

gt_sysresult gt_io_close(int fd) {
    int rc = close(fd);
    if (rc < 0 && errno == EINTR) { gt_sysresult r = {0, 0}; return r; }  // freed anyway
    return gt_io_result(rc);
}

gt_sysresult gt_io_get_flags(int fd) { return gt_io_result(fcntl(fd, F_GETFL)); }

gt_sysresult gt_io_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return gt_io_result(flags);
    if (flags & O_NONBLOCK) { gt_sysresult r = {0, 0}; return r; }
    return gt_io_result(fcntl(fd, F_SETFL, flags | O_NONBLOCK));
}

gt_sysresult gt_io_poll(int fd, int events, int64_t timeout_ns) {
    int64_t deadline = timeout_ns < 0 ? -1 : gt_clock_monotonic_ns() + timeout_ns;
    struct pollfd p = {.fd = fd, .events = (short)(events & (POLLIN | POLLOUT | POLLRDHUP))};
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - gt_clock_monotonic_ns();
            if (left < 0) left = 0;
            // Round up: a poll that returns a little early would report a
            // timeout before the deadline.
            int64_t left_ms = (left + 999999) / 1000000;
            ms = left_ms > 0x7fffffff ? 0x7fffffff : (int)left_ms;
        }
        int rc = poll(&p, 1, ms);
        if (rc > 0) { gt_sysresult r = {p.revents, 0}; return r; }
        if (rc == 0) {
            if (deadline < 0 || gt_clock_monotonic_ns() >= deadline) { gt_sysresult r = {0, 0}; return r; }
            continue;  // woke a little early (clamped milliseconds)
        }
        if (errno != EINTR) return gt_io_result(rc);
    }
}

gt_sysresult gt_io_pipe(int fds[2], int nonblocking) {
    return gt_io_result(pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)));
}

gt_sysresult gt_io_epoll_create(void) { return gt_io_result(epoll_create1(EPOLL_CLOEXEC)); }

gt_sysresult gt_io_epoll_ctl(int epfd, int op, int fd, uint32_t events, int edge, uint64_t data) {
    struct epoll_event e = {.events = events | (edge ? EPOLLET : 0), .data.u64 = data};
    return gt_io_result(epoll_ctl(epfd, op, fd, &e));
}

gt_sysresult gt_io_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms) {
    return gt_io_epoll_pwait(epfd, events, data, capacity, timeout_ms, NULL);
}

gt_sysresult gt_io_epoll_pwait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms,
                               const sigset_t *mask) {
    struct epoll_event buffer[256];
    if (capacity > 256) capacity = 256;
    int n = epoll_pwait(epfd, buffer, capacity, timeout_ms, mask);
    if (n < 0) {
        if (errno == EINTR) { gt_sysresult r = {0, 0}; return r; }
        return gt_io_result(n);
    }
    for (int i = 0; i < n; i++) {
        events[i] = buffer[i].events;
        data[i] = buffer[i].data.u64;
    }
    gt_sysresult r = {n, 0};
    return r;
}

// The idle processor's wait (IO/Netpoller.swift, "An idle processor waits
// here"): SIGVTALRM, the wake-up sent by tgkill, is blocked from before the
// kernel lock is released until epoll_pwait unblocks it atomically, so a
// wake-up sent in between stays pending and ends the wait at once: none is
// lost. The handler ignores a SIGVTALRM that is not a timer tick in a
// Machine's scheduling context, which is where the idle processor waits.
void gt_io_idle_wait_begin(sigset_t *wait_mask) {
    sigset_t preemption;
    sigemptyset(&preemption);
    sigaddset(&preemption, SIGVTALRM);
    pthread_sigmask(SIG_BLOCK, &preemption, wait_mask);
    sigdelset(wait_mask, SIGVTALRM);
}

void gt_io_idle_wait_end(const sigset_t *wait_mask) { pthread_sigmask(SIG_SETMASK, wait_mask, NULL); }

void gt_io_idle_wait_interrupt(int tid) {
    if (tid > 0) syscall(SYS_tgkill, getpid(), tid, SIGVTALRM);
}

gt_sysresult gt_io_eventfd_create(void) { return gt_io_result(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)); }

gt_sysresult gt_io_eventfd_signal(int fd) {
    uint64_t one = 1;
    for (;;) {
        long n = write(fd, &one, sizeof one);
        if (n >= 0 || errno != EINTR) return gt_io_result(n);
    }
}

gt_sysresult gt_io_parse_address(const char *host, uint16_t port, struct sockaddr_storage *storage) {
    memset(storage, 0, sizeof *storage);
    struct sockaddr_in *v4 = (struct sockaddr_in *)storage;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        gt_sysresult r = {sizeof *v4, 0};
        return r;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)storage;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        gt_sysresult r = {sizeof *v6, 0};
        return r;
    }
    gt_sysresult r = {-1, EINVAL};
    return r;
}

gt_sysresult gt_io_resolve(const char *host, uint16_t port, struct sockaddr_storage *storage) {
    struct addrinfo hints, *list = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &list);
    if (rc != 0) {
        gt_sysresult r = {-1, rc == EAI_SYSTEM ? errno : rc};
        if (rc != EAI_SYSTEM) r.error = rc < 0 ? rc : -rc;  // EAI_* codes are negative in glibc
        return r;
    }
    gt_sysresult r = {-1, -EAI_NONAME};
    for (struct addrinfo *a = list; a; a = a->ai_next) {
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
        memset(storage, 0, sizeof *storage);
        memcpy(storage, a->ai_addr, a->ai_addrlen);
        if (a->ai_family == AF_INET) ((struct sockaddr_in *)storage)->sin_port = htons(port);
        else ((struct sockaddr_in6 *)storage)->sin6_port = htons(port);
        r.value = a->ai_addrlen;
        r.error = 0;
        break;
    }
    freeaddrinfo(list);
    return r;
}

const char *gt_io_resolve_error(int code) { return gai_strerror(code); }

gt_sysresult gt_io_tcp_socket(int family) {
    return gt_io_result(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
}

gt_sysresult gt_io_bind_listen(int fd, const struct sockaddr_storage *address, int length, int backlog) {
    int one = 1;
    // A restarted server may bind the port while old connections linger in TIME_WAIT.
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) return gt_io_result(-1);
    if (bind(fd, (const struct sockaddr *)address, (socklen_t)length) < 0) return gt_io_result(-1);
    return gt_io_result(listen(fd, backlog));
}

gt_sysresult gt_io_accept(int fd) {
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0 || errno != EINTR) return gt_io_result(c);
    }
}

gt_sysresult gt_io_connect(int fd, const struct sockaddr_storage *address, int length) {
    int rc = connect(fd, (const struct sockaddr *)address, (socklen_t)length);
    if (rc < 0 && errno == EINTR) { gt_sysresult r = {-1, EINPROGRESS}; return r; }
    return gt_io_result(rc);
}

gt_sysresult gt_io_socket_error(int fd) {
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) return gt_io_result(-1);
    gt_sysresult r = {0, error};
    return r;
}

gt_sysresult gt_io_set_nodelay(int fd) {
    int one = 1;
    return gt_io_result(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
}

gt_sysresult gt_io_local_port(int fd) {
    struct sockaddr_storage s;
    socklen_t length = sizeof s;
    if (getsockname(fd, (struct sockaddr *)&s, &length) < 0) return gt_io_result(-1);
    uint16_t port = s.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&s)->sin6_port
                                            : ((struct sockaddr_in *)&s)->sin_port;
    gt_sysresult r = {ntohs(port), 0};
    return r;
}

gt_sysresult gt_io_raise_fd_limit(void) {
    struct rlimit l;
    if (getrlimit(RLIMIT_NOFILE, &l) < 0) return gt_io_result(-1);
    if (l.rlim_cur < l.rlim_max) {
        l.rlim_cur = l.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &l) < 0) return gt_io_result(-1);
    }
    gt_sysresult r = {(long)l.rlim_cur, 0};
    return r;
}
