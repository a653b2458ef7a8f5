// fault.c: stack-overflow detection. A green thread that overflows its stack
// touches the guard region below it; the SIGSEGV handler, running on the
// worker's alternate signal stack (the faulting stack is unusable), finds the
// slab and stack the address belongs to, prints which thread overflowed which
// stack with a backtrace, and aborts. Any other fault goes to the handler
// that was installed before ours (Swift's crash backtracer by default) or to
// the default action.
//
// Everything here is async-signal-safe: the slab table is append-only and
// published with release stores; messages are formatted into a stack buffer
// and written with write(2).
#include "gt_core.h"
#include "gt_unwind.h"  // gt_crash_dump (issue 6)
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

extern __thread gt_worker_state gt_tls_state;

typedef struct { uintptr_t base, length, stride, guard; } gt_slab;
static gt_slab gt_slabs[GT_MAX_SLABS];
static _Atomic int gt_slab_count;

int gt_slab_register(void *base, size_t length, size_t stride, size_t guard) {
    // Registration happens under the Swift stack pool's lock, so one writer.
    int n = atomic_load_explicit(&gt_slab_count, memory_order_relaxed);
    if (n >= GT_MAX_SLABS) return -1;
    gt_slabs[n] = (gt_slab){(uintptr_t)base, length, stride, guard};
    atomic_store_explicit(&gt_slab_count, n + 1, memory_order_release);
    return 0;
}

// Returns the slab index whose guard region holds `addr`, with the stack's
// usable size, or -1.
static int gt_guard_lookup(uintptr_t addr, size_t *stack_size) {
    int n = atomic_load_explicit(&gt_slab_count, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        const gt_slab *s = &gt_slabs[i];
        if (addr < s->base || addr >= s->base + s->length || s->guard == 0) continue;
        if ((addr - s->base) % s->stride < s->guard) {
            *stack_size = s->stride - s->guard;
            return i;
        }
        return -1;
    }
    return -1;
}

// --- tiny async-signal-safe formatting --------------------------------------

typedef struct { char buf[1024]; size_t len; } gt_line;

static void gt_put(gt_line *l, const char *s) {
    while (*s && l->len < sizeof l->buf - 1) l->buf[l->len++] = *s++;
}

static void gt_put_u(gt_line *l, uint64_t v) {
    char tmp[24]; int i = 0;
    do { tmp[i++] = (char)('0' + v % 10); v /= 10; } while (v && i < 24);
    while (i && l->len < sizeof l->buf - 1) l->buf[l->len++] = tmp[--i];
}

static void gt_put_hex(gt_line *l, uint64_t v) {
    char tmp[16]; int i = 0;
    gt_put(l, "0x");
    do { tmp[i++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v && i < 16);
    while (i && l->len < sizeof l->buf - 1) l->buf[l->len++] = tmp[--i];
}

static void gt_flush(gt_line *l) {
    l->buf[l->len] = 0;
    gt_write_stderr(l->buf);
    l->len = 0;
}

// Prints the interrupted context's frames. Addresses and mangled names only:
// demangling allocates, which a fault handler must not do (pipe the output
// through swift-demangle).
static void gt_print_backtrace(ucontext_t *uc) {
    unw_cursor_t cursor;
    if (unw_init_local2(&cursor, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) != 0) return;
    gt_line l = {.len = 0};
    for (int depth = 0; depth < 64; depth++) {
        unw_word_t pc = 0, off = 0;
        unw_get_reg(&cursor, UNW_REG_IP, &pc);
        char name[256];
        gt_put(&l, "  #"); gt_put_u(&l, (uint64_t)depth); gt_put(&l, " "); gt_put_hex(&l, pc);
        if (unw_get_proc_name(&cursor, name, sizeof name, &off) == 0) {
            gt_put(&l, " "); gt_put(&l, name); gt_put(&l, " + "); gt_put_u(&l, off);
        }
        gt_put(&l, "\n");
        gt_flush(&l);
        if (unw_step(&cursor) <= 0) break;
    }
}

static struct sigaction gt_previous_segv, gt_previous_bus;
static int gt_fault_installed;

static void gt_chain(int sig, siginfo_t *info, void *context) {
    struct sigaction *prev = sig == SIGBUS ? &gt_previous_bus : &gt_previous_segv;
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction) { prev->sa_sigaction(sig, info, context); return; }
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    // Default action: restore it. A real fault (si_code > 0) needs nothing
    // more: returning runs the faulting instruction again, which faults
    // again and the kernel terminates the process with the right signal. A
    // signal sent by kill, tgkill or raise (si_code <= 0: SI_USER, SI_TKILL,
    // SI_QUEUE) has no instruction to repeat: returning would swallow it, so
    // it is sent again, to this thread; it is blocked while the handler runs
    // and is delivered, with the default action, as the handler returns.
    signal(sig, SIG_DFL);
    if (info == NULL || info->si_code <= 0) raise(sig);
}

static void gt_on_fault(int sig, siginfo_t *info, void *context) {
    size_t stack_size = 0;
    uintptr_t addr = (uintptr_t)info->si_addr;
    // si_addr is a fault address only for a real fault (si_code > 0); for a
    // kill(2) the same bytes hold the sender's pid and uid.
    if (sig != SIGSEGV || info->si_code <= 0 || gt_guard_lookup(addr, &stack_size) < 0) {
        gt_crash_dump(sig, context);  // issue 6: every green thread's trace, then the usual chain
        gt_chain(sig, info, context);
        return;
    }
    gt_line l = {.len = 0};
    gt_thread_core *t = gt_tls_state.current;
    if (t != NULL && addr >= (uintptr_t)t->guard_low && addr < (uintptr_t)t->stack_low) {
        gt_put(&l, "green thread "); gt_put_u(&l, t->id);
        gt_put(&l, " '");
        if (t->name[0]) gt_put(&l, t->name); else { gt_put(&l, "thread-"); gt_put_u(&l, t->id); }
        gt_put(&l, "' overflowed its ");
    } else {
        gt_put(&l, "a green thread overflowed its ");
    }
    gt_put_u(&l, stack_size / 1024);
    gt_put(&l, " KiB stack (fault at "); gt_put_hex(&l, addr);
    gt_put(&l, "); raise stackSize in GreenThread.spawn or KernelConfiguration.defaultStackSize\n");
    gt_flush(&l);
    gt_print_backtrace(context);
    // Abort without running Swift's crash reporter on top: the report above
    // is the useful one, and the reporter would fault again on this stack.
    signal(SIGABRT, SIG_DFL);
    abort();
}

int gt_fault_handler_install(void) {
    if (gt_fault_installed) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = gt_on_fault;
    // SA_ONSTACK: the faulting stack has no room left. SIGVTALRM is blocked
    // while this runs: a preemption on the alternate stack would strand a
    // frame there that the next fault would overwrite.
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;  // a fault inside the handler kills the process
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGVTALRM);
    if (sigaction(SIGSEGV, &sa, &gt_previous_segv) != 0) return -1;
    if (sigaction(SIGBUS, &sa, &gt_previous_bus) != 0) return -1;
    gt_fault_installed = 1;
    return 0;
}

// 64 KiB: libunwind's walk and the message buffers run on this stack.
#define GT_ALTSTACK_SIZE (64 * 1024)

int gt_altstack_setup(void **out_mem, size_t *out_size, stack_t *previous) {
    void *mem = mmap(NULL, GT_ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return -1;
    stack_t ss = {.ss_sp = mem, .ss_size = GT_ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, previous) != 0) {
        munmap(mem, GT_ALTSTACK_SIZE);
        return -1;
    }
    *out_mem = mem;
    *out_size = GT_ALTSTACK_SIZE;
    return 0;
}

void gt_altstack_teardown(void *mem, size_t size, const stack_t *previous) {
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(previous && !(previous->ss_flags & SS_DISABLE) ? previous : &ss, NULL);
    if (mem) munmap(mem, size);
}
