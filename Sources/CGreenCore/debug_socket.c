// debug_socket.c: the snapshot server's system calls that Swift's Glibc
// module does not export (accept4 is a GNU extension). See gt_unwind.h.
#include "gt_unwind.h"
#include <sys/socket.h>

int gt_accept_cloexec(int listener) {
    return accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}
