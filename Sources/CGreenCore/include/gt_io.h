// gt_io.h: the I/O system calls of the netpoller, GreenIO, the TCP types and
// the blocking pool, one wrapper each (io.c). Same rule as sys.c: errno is
// read in C right after the call and returned with the result, so Swift
// code never reads errno itself.
#ifndef GT_IO_H
#define GT_IO_H
#include "gt_core.h"
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Readiness bits, named for what they mean to a waiter (the epoll values).
enum {
    GT_IO_READABLE = 0x001,  // EPOLLIN
    GT_IO_WRITABLE = 0x004,  // EPOLLOUT
    GT_IO_ERROR = 0x008,     // EPOLLERR
    GT_IO_HANGUP = 0x010,    // EPOLLHUP
    GT_IO_PEER_CLOSED = 0x2000,  // EPOLLRDHUP
};
/// epoll_ctl operations (the EPOLL_CTL_* values).
enum { GT_IO_CTL_ADD = 1, GT_IO_CTL_DEL = 2, GT_IO_CTL_MOD = 3 };

// --- descriptors (EINTR: retried; see io.c for each call's rule) ---
gt_sysresult gt_io_read(int fd, void *buffer, size_t count);
gt_sysresult gt_io_write(int fd, const void *buffer, size_t count);
/// send(2) with MSG_NOSIGNAL (sockets only).
gt_sysresult gt_io_send(int fd, const void *buffer, size_t count);
/// close(2), never retried: Linux frees the descriptor even when it fails
/// with EINTR, and a retry could close a descriptor another thread just got.
gt_sysresult gt_io_close(int fd);
/// value = the fd's status flags (F_GETFL).
gt_sysresult gt_io_get_flags(int fd);
gt_sysresult gt_io_set_nonblocking(int fd);
/// poll(2) on one descriptor for `events` (GT_IO_* bits) for at most
/// `timeout_ns` (-1: no limit). value = the returned events, 0 on timeout.
/// EINTR: waits again for the time left.
gt_sysresult gt_io_poll(int fd, int events, int64_t timeout_ns);
/// A pipe, both ends close-on-exec; `nonblocking` sets O_NONBLOCK on both.
gt_sysresult gt_io_pipe(int fds[2], int nonblocking);

// --- epoll and eventfd ---
gt_sysresult gt_io_epoll_create(void);
/// Adds (`op` 1), modifies (3) or deletes (2) `fd`; `events` are GT_IO_*
/// bits, plus `edge` for EPOLLET; `data` comes back with each event.
gt_sysresult gt_io_epoll_ctl(int epfd, int op, int fd, uint32_t events, int edge, uint64_t data);
/// epoll_wait(2) for at most `timeout_ms` (-1: no limit): fills `events`
/// and `data` (parallel arrays: struct epoll_event is packed on x86-64,
/// which Swift cannot import). value = count. EINTR: value 0, no error (the
/// caller's loop waits again, with its own idea of the time left).
gt_sysresult gt_io_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms);
/// epoll_pwait(2): gt_io_epoll_wait with `mask` as the signal mask during
/// the wait (NULL: the thread's own).
gt_sysresult gt_io_epoll_pwait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms,
                               const sigset_t *mask);
/// An idle processor's Machine about to wait in epoll (Netpoller.swift):
/// blocks SIGVTALRM and stores in `wait_mask` the mask to wait with (the
/// previous one, SIGVTALRM unblocked).
void gt_io_idle_wait_begin(sigset_t *wait_mask);
/// Restores the mask `gt_io_idle_wait_begin` saved.
void gt_io_idle_wait_end(const sigset_t *wait_mask);
/// Ends the epoll_pwait of the Machine with kernel thread id `tid` (a
/// SIGVTALRM, which the handler ignores there).
void gt_io_idle_wait_interrupt(int tid);
/// A non-blocking, close-on-exec eventfd.
gt_sysresult gt_io_eventfd_create(void);
/// Adds 1 to an eventfd (wakes an epoll_wait that watches it).
gt_sysresult gt_io_eventfd_signal(int fd);

// --- sockets ---
/// Parses a numeric IPv4 or IPv6 address into `storage` with `port`;
/// value = the address length, error EINVAL when `host` is not numeric.
gt_sysresult gt_io_parse_address(const char *host, uint16_t port, struct sockaddr_storage *storage);
/// getaddrinfo(3) for a TCP address (may block: callers run it on the
/// blocking pool). value = the address length; error = a negative EAI_*
/// code (as -code), or errno for EAI_SYSTEM.
gt_sysresult gt_io_resolve(const char *host, uint16_t port, struct sockaddr_storage *storage);
/// A description of a getaddrinfo error (gai_strerror).
const char *gt_io_resolve_error(int code);
/// A non-blocking, close-on-exec TCP socket of `family`.
gt_sysresult gt_io_tcp_socket(int family);
/// SO_REUSEADDR, bind, listen.
gt_sysresult gt_io_bind_listen(int fd, const struct sockaddr_storage *address, int length, int backlog);
/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; EINTR retried.
gt_sysresult gt_io_accept(int fd);
/// connect(2) on a non-blocking socket: value 0 connected, error
/// EINPROGRESS while it completes (EINTR is reported as EINPROGRESS: the
/// connection goes on in the background, POSIX says).
gt_sysresult gt_io_connect(int fd, const struct sockaddr_storage *address, int length);
/// The pending socket error (SO_ERROR) as `error`, value 0.
gt_sysresult gt_io_socket_error(int fd);
/// TCP_NODELAY on.
gt_sysresult gt_io_set_nodelay(int fd);
/// value = the bound port (getsockname).
gt_sysresult gt_io_local_port(int fd);

// --- process limits ---
/// Raises RLIMIT_NOFILE's soft limit to its hard limit; value = the new soft limit.
gt_sysresult gt_io_raise_fd_limit(void);

#ifdef __cplusplus
}
#endif
#endif
