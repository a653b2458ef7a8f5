// unwind.c: stack traces of green threads with libunwind, trace requests to
// other workers, and the crash / SIGQUIT dump of every green thread.
//
// Owns: the raw capture of traces (program counters) from the calling
// context, a parked thread's switch frame, or a signal frame; symbol and
// image lookup; the trace-request protocol answered by the SIGVTALRM handler
// (preempt.c calls the hook registered here); the fatal-signal handlers for
// SIGILL, SIGFPE and SIGABRT (fault.c owns SIGSEGV/SIGBUS and calls
// gt_crash_dump) and the optional SIGQUIT dump.
//
// Invariants:
// - Everything reachable from a signal handler (capture, trace requests,
//   the dump) allocates nothing and takes no lock: libunwind's local
//   unwinding is signal-safe (libunwind(3)), buffers are static or on the
//   stack, output is write(2). Demangling allocates and lives elsewhere
//   (gt_demangle, called from Swift only).
// - A walk only starts from a consistent stack: a parked thread's saved
//   frame, a signal frame, or the caller's own context. A worker asked for
//   its running thread's trace walks it only when the interrupted stack
//   pointer lies in that thread's stack (not mid-switch), the PC is outside
//   the core's switch code and the dynamic loader, and enough stack is left.
// - A trace request is a small state machine (gt_unwind.h) whose memory
//   lives for the process: a handler that takes a request the asker just
//   withdrew finds it in another state and leaves it alone.
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "gt_unwind.h"
#include "gt_frame.h"
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

extern __thread gt_worker_state gt_tls_state;
extern char __start_gt_core_text[];
extern char __stop_gt_core_text[];

// ---------------------------------------------------------------------------
// Capture.

// Walks `cursor` outward into `out`. `exact` says whether the first PC is an
// interrupted instruction rather than a return address.
static int gt_walk(unw_cursor_t *cursor, gt_trace *out, int exact) {
    out->count = 0;
    out->truncated = 0;
    for (;;) {
        unw_word_t ip = 0;
        if (unw_get_reg(cursor, UNW_REG_IP, &ip) != 0 || ip == 0) break;
        if (out->count == GT_TRACE_MAX_FRAMES) {
            out->truncated = 1;
            break;
        }
        out->pc[out->count] = (uintptr_t)ip;
        out->exact[out->count] = (uint8_t)exact;
        out->count++;
        // Past a signal trampoline the next PC was interrupted, not called.
        exact = unw_is_signal_frame(cursor) > 0;
        if (unw_step(cursor) <= 0) break;
    }
    return out->count;
}

// noinline: the walk must start in a frame of its own, which the
// GreenThreads-level trim then drops by name (gt_ prefix).
__attribute__((noinline)) int gt_trace_current(gt_trace *out) {
    unw_context_t context;
    unw_cursor_t cursor;
    out->count = 0;
    if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) return -1;
    return gt_walk(&cursor, out, 0);
}

// A context as it is right after gt_switch returned into the parked thread:
// the callee-saved registers from the saved frame, the stack pointer above
// it, and the return address as the PC. Everything else is dead across the
// call, so the unwinder needs nothing more.
static int gt_context_from_switch_frame(unw_context_t *context, const void *sp) {
    const unsigned char *frame = sp;
    if (unw_getcontext(context) != 0) return -1;  // a well-formed context to overwrite
#if defined(__x86_64__)
    greg_t *g = context->uc_mcontext.gregs;
    g[REG_RIP] = *(const greg_t *)(frame + GT_X64_RIP);
    g[REG_RSP] = (greg_t)(uintptr_t)(frame + GT_FRAME_SIZE);
    g[REG_RBP] = *(const greg_t *)(frame + GT_X64_RBP);
    g[REG_RBX] = *(const greg_t *)(frame + GT_X64_RBX);
    g[REG_R12] = *(const greg_t *)(frame + GT_X64_R12);
    g[REG_R13] = *(const greg_t *)(frame + GT_X64_R13);
    g[REG_R14] = *(const greg_t *)(frame + GT_X64_R14);
    g[REG_R15] = *(const greg_t *)(frame + GT_X64_R15);
#elif defined(__aarch64__)
    // x19..x30 are stored in order from GT_A64_X19 (see gt_frame.h).
    // Not exercised on this project's x86-64 CI machine.
    for (int r = 19; r <= 30; r++) {
        context->uc_mcontext.regs[r] = *(const uint64_t *)(frame + GT_A64_X19 + (r - 19) * 8);
    }
    context->uc_mcontext.sp = (uint64_t)(uintptr_t)(frame + GT_FRAME_SIZE);
    context->uc_mcontext.pc = *(const uint64_t *)(frame + GT_A64_X30);
#endif
    return 0;
}

int gt_trace_switch_frame(const void *sp, gt_trace *out) {
    unw_context_t context;
    unw_cursor_t cursor;
    out->count = 0;
    if (sp == NULL || gt_context_from_switch_frame(&context, sp) != 0) return -1;
    if (unw_init_local(&cursor, &context) != 0) return -1;
    return gt_walk(&cursor, out, 0);
}

int gt_trace_ucontext(void *ucontext, gt_trace *out) {
    unw_cursor_t cursor;
    out->count = 0;
    // The kernel's ucontext_t is what libunwind's x86-64/aarch64
    // unw_context_t is; UNW_INIT_SIGNAL_FRAME: the PC was interrupted.
    if (unw_init_local2(&cursor, (unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME) != 0) return -1;
    return gt_walk(&cursor, out, 1);
}

// ---------------------------------------------------------------------------
// Symbols.

// libunwind's lookup by address (the local accessor reads .symtab as well as
// .dynsym, so static functions are named too). Signal-safe for local
// unwinding (unw_get_proc_name(3)). The dump also uses dladdr, which takes
// the loader's recursive lock: a thread holding it (dlopen) finishes first;
// the crashing thread itself, if it crashed in the loader, re-enters it.
static int gt_symbol_lookup_unw(uintptr_t pc, int exact, char *name, size_t size, uint64_t *offset) {
    uintptr_t lookup = exact ? pc : pc - 1;
    unw_accessors_t *a = unw_get_accessors(unw_local_addr_space);
    unw_word_t off = 0;
    if (a == NULL || a->get_proc_name == NULL) return -1;
    if (a->get_proc_name(unw_local_addr_space, lookup, name, size, &off, NULL) != 0) return -1;
    *offset = (uint64_t)off + (pc - lookup);
    return 0;
}

int gt_symbol_lookup(uintptr_t pc, int exact, char *name, size_t size, uint64_t *offset) {
    uintptr_t lookup = exact ? pc : pc - 1;
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    // Fast path: an exported symbol whose extent (st_size) covers the PC.
    if (dladdr1((void *)lookup, &info, (void **)&sym, RTLD_DL_SYMENT) != 0 && info.dli_sname != NULL &&
        sym != NULL && lookup >= (uintptr_t)info.dli_saddr && lookup < (uintptr_t)info.dli_saddr + sym->st_size) {
        size_t n = strlen(info.dli_sname);
        if (n >= size) n = size - 1;
        memcpy(name, info.dli_sname, n);
        name[n] = 0;
        *offset = pc - (uintptr_t)info.dli_saddr;
        return 0;
    }
    // A static function: libunwind reads .symtab too. In a stripped image
    // (libc) it only has the exports and names the nearest one before the
    // PC, another function: the unwind tables say where the PC's function
    // starts, and a name that starts elsewhere is dropped (no name is
    // better than a wrong one).
    if (gt_symbol_lookup_unw(pc, exact, name, size, offset) != 0) return -1;
    unw_proc_info_t proc;
    if (unw_get_proc_info_by_ip(unw_local_addr_space, lookup, &proc, NULL) == 0 && proc.start_ip != 0 &&
        pc - *offset != proc.start_ip) {
        return -1;
    }
    return 0;
}

int gt_image_lookup(uintptr_t pc, const char **path, uintptr_t *base) {
    Dl_info info;
    if (dladdr((void *)pc, &info) == 0 || info.dli_fname == NULL) return -1;
    *path = info.dli_fname;
    *base = (uintptr_t)info.dli_fbase;
    return 0;
}

typedef char *(*gt_cxa_demangle_fn)(const char *, char *, size_t *, int *);

char *gt_demangle(const char *name) {
    if (name[0] == '$' || (name[0] == '_' && (name[1] == 'T' || name[1] == '$'))) {
        return swift_demangle(name, strlen(name), NULL, NULL, 0);
    }
    if (name[0] == '_' && name[1] == 'Z') {
        // Looked up at run time: libstdc++ is loaded (the Swift runtime
        // needs it) but not linked by this target.
        static _Atomic(gt_cxa_demangle_fn) cxa;
        gt_cxa_demangle_fn f = atomic_load_explicit(&cxa, memory_order_acquire);
        if (f == NULL) {
            f = (gt_cxa_demangle_fn)dlsym(RTLD_DEFAULT, "__cxa_demangle");
            if (f == NULL) return NULL;
            atomic_store_explicit(&cxa, f, memory_order_release);
        }
        int status = 0;
        char *out = f(name, NULL, NULL, &status);
        return status == 0 ? out : NULL;
    }
    return NULL;
}

typedef char *(*gt_short_demangle_fn)(const char *, size_t, char *, size_t *);

char *gt_demangle_short(const char *name) {
    static _Atomic(gt_short_demangle_fn) fn;
    static _Atomic int looked_up;
    gt_short_demangle_fn f = atomic_load_explicit(&fn, memory_order_acquire);
    if (f == NULL) {
        if (atomic_load(&looked_up)) return NULL;
        f = (gt_short_demangle_fn)dlsym(RTLD_DEFAULT, "_swift_backtrace_demangle");
        atomic_store(&looked_up, 1);
        if (f == NULL) return NULL;
        atomic_store_explicit(&fn, f, memory_order_release);
    }
    return f(name, strlen(name), NULL, NULL);
}

// The kernel's own switch and capture code, by mangled name prefix. A
// parked thread's innermost frames are gt_switch and the scheduler's block
// path; a captured trace's are the capture functions. Users see their code
// from the first frame outside these (GreenThread.sleep, JoinHandle.join, ...).
static const char *const gt_kernel_prefixes[] = {
    "gt_",                                   // the C core: gt_switch, handlers, capture
    "$s12GreenThreads10KernelCoreC",         // the scheduler and its switch paths
    "$s12GreenThreads10KernelLockC",         // its lock, when a trace ends there
    "$s12GreenThreads14preemptionHook",      // the SIGVTALRM handler's switch
    "$s12GreenThreads16yieldPendingHook",
    "$s12GreenThreads12TraceCaptureO",       // Debug/TraceCapture.swift
    "$s12GreenThreads0A6ThreadC10stackTrace",// GreenThread.stackTrace()
    "$s12GreenThreads6KernelO8snapshot",     // Kernel.snapshot(includeStacks:), for its caller's trace
};

static const char *const gt_root_prefixes[] = {
    "gt_trampoline",
    "$s12GreenThreads16greenThreadEntry",
    "$s12GreenThreads13runThreadBody",
};

static int gt_has_prefix(const char *name, const char *const *prefixes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    }
    return 0;
}

int gt_symbol_is_kernel(const char *name) {
    return gt_has_prefix(name, gt_kernel_prefixes, sizeof gt_kernel_prefixes / sizeof gt_kernel_prefixes[0]);
}

int gt_path_is_system_library(const char *path) {
    static const char *const system[] = {"libc.so", "libc-", "ld-linux", "ld64.so", "linux-vdso", "libpthread"};
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return gt_has_prefix(base, system, sizeof system / sizeof system[0]);
}

int gt_symbol_is_thread_root(const char *name) {
    return gt_has_prefix(name, gt_root_prefixes, sizeof gt_root_prefixes / sizeof gt_root_prefixes[0]);
}

// ---------------------------------------------------------------------------
// Trace requests.

// The dynamic loader's code: a walk must not start there (libunwind calls
// dl_iterate_phdr, and the interrupted loader may be halfway through
// changing the list it walks). Built once, before any request.
#define GT_LOADER_RANGES 8
static uintptr_t gt_loader_start[GT_LOADER_RANGES], gt_loader_end[GT_LOADER_RANGES];
static int gt_loader_count;
static _Atomic int gt_signals_enabled;

static int gt_collect_loader(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    const char *path = info->dlpi_name ? info->dlpi_name : "";
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "ld-linux", 8) != 0 && strncmp(base, "ld64.so", 7) != 0) return 0;
    for (int i = 0; i < info->dlpi_phnum && gt_loader_count < GT_LOADER_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        gt_loader_start[gt_loader_count] = info->dlpi_addr + ph->p_vaddr;
        gt_loader_end[gt_loader_count] = gt_loader_start[gt_loader_count] + ph->p_memsz;
        gt_loader_count++;
    }
    return 0;
}

static int gt_pc_in_loader(uintptr_t pc) {
    for (int i = 0; i < gt_loader_count; i++) {
        if (pc >= gt_loader_start[i] && pc < gt_loader_end[i]) return 1;
    }
    return 0;
}

// Stack the hook needs on the interrupted green stack to run libunwind
// (a cursor is 1 KiB, a DWARF step a few more). A deep thread is declined
// rather than pushed into its guard.
#define GT_TRACE_HEADROOM (12 * 1024)

static uintptr_t gt_uc_pc(const ucontext_t *uc) {
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#else
    return (uintptr_t)uc->uc_mcontext.pc;
#endif
}

static uintptr_t gt_uc_sp(const ucontext_t *uc) {
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#else
    return (uintptr_t)uc->uc_mcontext.sp;
#endif
}

// Puts a request back for the next signal: the point was not safe to walk.
// The pointer goes back first, while the request is still TAKEN (which the
// asker never withdraws): once it is POSTED again, an asker that times out
// finds the pointer in the slot and removes it, leaving nothing stale behind.
static void gt_trace_retry_later(gt_worker_state *w, gt_trace_request *r) {
    void *none = NULL;
    __atomic_compare_exchange_n(&w->trace_request, &none, r, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    __atomic_store_n(&r->state, GT_TRACE_POSTED, __ATOMIC_RELEASE);
}

// The hook preempt.c calls at the top of the SIGVTALRM handler when this
// worker's `trace_request` was set. Runs on the interrupted stack.
static void gt_trace_on_request(gt_worker_state *w, void *request, void *ucontext) {
    gt_trace_request *r = request;
    int32_t expected = GT_TRACE_POSTED;
    if (!__atomic_compare_exchange_n(&r->state, &expected, GT_TRACE_TAKEN, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        return;  // withdrawn by the asker (timed out)
    }
    if (r->worker != w) {  // a stale pointer to a request since reused for another worker
        __atomic_store_n(&r->state, GT_TRACE_POSTED, __ATOMIC_RELEASE);
        return;
    }
    gt_thread_core *t = w->current;
    if (t == NULL || t != r->target) {
        r->reason = GT_TRACE_NOT_RUNNING;
        __atomic_store_n(&r->state, GT_TRACE_DECLINED, __ATOMIC_RELEASE);
        return;
    }
    ucontext_t *uc = ucontext;
    uintptr_t pc = gt_uc_pc(uc), sp = gt_uc_sp(uc);
    uintptr_t low = (uintptr_t)t->stack_low, high = (uintptr_t)t->stack_high;
    // Mid-switch (the stack pointer is still on the previous context's
    // stack), in the switch code, or in the loader: try at the next signal.
    if (sp < low || sp >= high || gt_pc_in_loader(pc) ||
        (pc >= (uintptr_t)__start_gt_core_text && pc < (uintptr_t)__stop_gt_core_text)) {
        gt_trace_retry_later(w, r);
        return;
    }
    char probe;
    uintptr_t here = (uintptr_t)&probe;
    if (here >= low && here < high && here - low < GT_TRACE_HEADROOM) {
        r->reason = GT_TRACE_NO_HEADROOM;
        __atomic_store_n(&r->state, GT_TRACE_DECLINED, __ATOMIC_RELEASE);
        return;
    }
    gt_trace_ucontext(ucontext, &r->trace);
    __atomic_store_n(&r->state, GT_TRACE_DONE, __ATOMIC_RELEASE);
}

void gt_trace_support_install(int signals_enabled) {
    static _Atomic int installed;
    if (!atomic_exchange(&installed, 1)) {
        dl_iterate_phdr(gt_collect_loader, NULL);
        gt_set_trace_hook(gt_trace_on_request);
    }
    atomic_store(&gt_signals_enabled, signals_enabled);
}

static void gt_sleep_ns(long ns) {
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

static int64_t gt_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Re-signalling period: a declined point (mid-switch, loader) usually
// passes within microseconds; 1 ms keeps the worker's extra signals to a
// few per request.
#define GT_TRACE_KICK_NS 1000000
// How long a handler may hold a withdrawn request before it is given up:
// a walk takes microseconds; only a descheduled worker takes longer.
#define GT_TRACE_GRACE_NS 200000000

int gt_trace_request_post(gt_trace_request *r, gt_worker_state *w, gt_thread_core *target) {
    if (!atomic_load(&gt_signals_enabled) || w == NULL) return GT_TRACE_UNAVAILABLE;
    // Only the asker writes these, before the request is visible as POSTED
    // (the release store below); a handler reads them after its acquire CAS.
    r->worker = w;
    r->target = target;
    r->reason = 0;
    r->trace.count = 0;
    r->trace.truncated = 0;
    __atomic_store_n(&r->state, GT_TRACE_POSTED, __ATOMIC_RELEASE);
    void *slot = NULL;
    if (!__atomic_compare_exchange_n(&w->trace_request, &slot, r, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED) && slot != r) {
        __atomic_store_n(&r->state, GT_TRACE_IDLE, __ATOMIC_RELEASE);
        return GT_TRACE_BUSY;  // another asker (a dump) is using this worker's slot
    }
    return GT_TRACE_OK;
}

int gt_trace_request_wait(gt_trace_request *r, int tid, int64_t timeout_ns) {
    int64_t start = gt_now_ns(), kick = 0;
    for (;;) {
        int32_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
        if (s == GT_TRACE_DONE) return GT_TRACE_OK;
        if (s == GT_TRACE_DECLINED) return r->reason;
        int64_t now = gt_now_ns();
        if (s == GT_TRACE_POSTED && now - start >= timeout_ns) {
            int32_t expected = GT_TRACE_POSTED;
            if (__atomic_compare_exchange_n(&r->state, &expected, GT_TRACE_IDLE, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                return GT_TRACE_TIMED_OUT;
            }
            continue;  // a handler took it meanwhile: its answer is microseconds away
        }
        if (s == GT_TRACE_TAKEN && now - start >= timeout_ns + GT_TRACE_GRACE_NS) return GT_TRACE_ABANDONED;
        if (s == GT_TRACE_POSTED && now >= kick) {
            if (tid > 0) gt_sys_tgkill(tid, SIGVTALRM);
            kick = now + GT_TRACE_KICK_NS;
        }
        gt_sleep_ns(20000);
    }
}

void gt_trace_request_unpost(gt_trace_request *r, gt_worker_state *w) {
    void *mine = r;
    __atomic_compare_exchange_n(&w->trace_request, &mine, NULL, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

int gt_trace_request_run(gt_trace_request *r, gt_worker_state *w, gt_thread_core *target, int64_t timeout_ns) {
    int posted = gt_trace_request_post(r, w, target);
    if (posted != GT_TRACE_OK) return posted;
    int outcome = gt_trace_request_wait(r, __atomic_load_n(&w->tid, __ATOMIC_RELAXED), timeout_ns);
    gt_trace_request_unpost(r, w);
    return outcome;
}

void gt_worker_counters_read(const gt_worker_state *w, gt_worker_counters *out) {
    out->ticks = __atomic_load_n(&w->ticks, __ATOMIC_RELAXED);
    out->preemptions = __atomic_load_n(&w->preemptions, __ATOMIC_RELAXED);
    out->deferrals = __atomic_load_n(&w->deferrals, __ATOMIC_RELAXED);
    out->retries = __atomic_load_n(&w->parks, __ATOMIC_RELAXED);  // parks (the field kept its name for the snapshot)
    out->slice_start = __atomic_load_n(&w->slice_start, __ATOMIC_RELAXED);
    out->tid = __atomic_load_n(&w->tid, __ATOMIC_RELAXED);
    out->is_worker = __atomic_load_n(&w->is_worker, __ATOMIC_RELAXED);
}

// ---------------------------------------------------------------------------
// The dump: formatted into a static buffer, written with write(2).

typedef struct { int fd; size_t len; char buf[4096]; } gt_out;

static void gt_out_flush(gt_out *o) {
    size_t done = 0;
    while (done < o->len) {
        ssize_t k = write(o->fd, o->buf + done, o->len - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    o->len = 0;
}

static void gt_out_char(gt_out *o, char c) {
    if (o->len == sizeof o->buf) gt_out_flush(o);
    o->buf[o->len++] = c;
}

static void gt_out_str(gt_out *o, const char *s) { while (*s) gt_out_char(o, *s++); }

static void gt_out_dec(gt_out *o, int64_t v) {
    char digits[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    if (v < 0) gt_out_char(o, '-');
    do { digits[n++] = (char)('0' + u % 10); u /= 10; } while (u != 0);
    while (n > 0) gt_out_char(o, digits[--n]);
}

// `width` hex digits at least, with a 0x prefix.
static void gt_out_hex(gt_out *o, uint64_t v, int width) {
    char digits[16];
    int n = 0;
    do { digits[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v != 0);
    gt_out_str(o, "0x");
    for (int i = n; i < width; i++) gt_out_char(o, '0');
    while (n > 0) gt_out_char(o, digits[--n]);
}

static const char *gt_signal_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    case SIGQUIT: return "SIGQUIT";
    case SIGTRAP: return "SIGTRAP";
    default: return "signal";
    }
}

static const char *const gt_state_names[] = {"ready", "running", "blocked", "sleeping", "finished"};

#define GT_DUMP_MAX_THREADS 2048
static gt_dump_thread gt_dump_table[GT_DUMP_MAX_THREADS];
static int gt_dump_count, gt_dump_dropped;
static _Atomic(gt_dump_walker) gt_walker;
static void *_Atomic gt_walker_kernel;
static _Atomic int gt_dump_busy;
static gt_trace gt_dump_trace;            // guarded by gt_dump_busy
static gt_trace_request gt_dump_request;  // guarded by gt_dump_busy; lives for the process

void gt_dump_set_walker(gt_dump_walker walker, void *kernel) {
    atomic_store(&gt_walker_kernel, kernel);
    atomic_store(&gt_walker, walker);
}

int gt_dump_add(const gt_dump_thread *thread) {
    if (gt_dump_count == GT_DUMP_MAX_THREADS) {
        gt_dump_dropped++;
        return -1;
    }
    gt_dump_table[gt_dump_count++] = *thread;
    return 0;
}

static const gt_dump_thread *gt_dump_find(uint64_t id) {
    for (int i = 0; i < gt_dump_count; i++) {
        if (gt_dump_table[i].core != NULL && gt_dump_table[i].core->id == id) return &gt_dump_table[i];
    }
    return NULL;
}

// How many innermost frames are the kernel's: the run of kernel frames
// (and system-library frames among them) up to its last kernel frame.
static int gt_dump_kernel_prefix(const gt_trace *trace) {
    char name[256];
    int cut = 0;
    for (int i = 0; i < trace->count; i++) {
        uint64_t offset = 0;
        if (gt_symbol_lookup(trace->pc[i], trace->exact[i], name, sizeof name, &offset) == 0 &&
            gt_symbol_is_kernel(name)) {
            cut = i + 1;
            continue;
        }
        const char *path;
        uintptr_t base;
        if (gt_image_lookup(trace->pc[i], &path, &base) != 0 || !gt_path_is_system_library(path)) break;
    }
    return cut;
}

// The frames of `trace`, minus the kernel's switch frames at the inner end
// and its thread-entry frames at the outer end, as in the snapshot's text.
static void gt_dump_frames(gt_out *o, const gt_trace *trace) {
    char name[256];
    int index = 0;
    for (int i = gt_dump_kernel_prefix(trace); i < trace->count; i++) {
        uint64_t offset = 0;
        int named = gt_symbol_lookup(trace->pc[i], trace->exact[i], name, sizeof name, &offset) == 0;
        if (named && gt_symbol_is_thread_root(name)) break;
        gt_out_str(o, "    #");
        gt_out_dec(o, index++);
        gt_out_str(o, " ");
        gt_out_hex(o, trace->pc[i], 12);
        gt_out_str(o, " ");
        gt_out_str(o, named ? name : "???");
        if (named) { gt_out_str(o, " + "); gt_out_dec(o, (int64_t)offset); }
        const char *path;
        uintptr_t base;
        if (gt_image_lookup(trace->pc[i], &path, &base) == 0) {
            const char *file = strrchr(path, '/');
            gt_out_str(o, " (");
            gt_out_str(o, file ? file + 1 : path);
            if (!named) { gt_out_str(o, "+"); gt_out_hex(o, trace->pc[i] - base, 1); }  // for addr2line
            gt_out_str(o, ")");
        }
        gt_out_char(o, '\n');
    }
    if (trace->truncated) gt_out_str(o, "    ...\n");
    if (index == 0) gt_out_str(o, "    (no frames)\n");
}

// Header line of one thread, the same shape as KernelSnapshot's text form.
static void gt_dump_header(gt_out *o, const gt_dump_thread *t) {
    gt_thread_core *c = t->core;
    gt_out_str(o, "thread ");
    gt_out_dec(o, (int64_t)c->id);
    gt_out_str(o, " '");
    gt_out_str(o, c->name);
    gt_out_str(o, "' ");
    gt_out_str(o, t->state >= 0 && t->state <= GT_DUMP_FINISHED ? gt_state_names[t->state] : "?");
    if (t->worker >= 0) { gt_out_str(o, " on worker "); gt_out_dec(o, t->worker); }
    if (t->wait_kind[0] != 0) {
        gt_out_str(o, " on ");
        gt_out_str(o, t->wait_kind);
        gt_out_str(o, " ");
        gt_out_hex(o, t->wait_object, 1);
        if (t->wait_owner != 0) {
            gt_out_str(o, " held by thread ");
            gt_out_dec(o, (int64_t)t->wait_owner);
            const gt_dump_thread *owner = gt_dump_find(t->wait_owner);
            if (owner != NULL) { gt_out_str(o, " '"); gt_out_str(o, owner->core->name); gt_out_str(o, "'"); }
        }
    }
    gt_out_str(o, ", priority ");
    gt_out_dec(o, t->base_priority);
    gt_out_str(o, "/");
    gt_out_dec(o, t->effective_priority);
    if (t->effective_priority > t->base_priority) gt_out_str(o, " (boosted)");
    gt_out_str(o, ", ");
    gt_out_dec(o, (int64_t)c->switches);
    gt_out_str(o, " switches, ");
    gt_out_dec(o, (int64_t)c->preemptions);
    gt_out_str(o, " preemptions\n");
}

// One thread's trace, from wherever its registers are (see the top).
static void gt_dump_thread_trace(gt_out *o, const gt_dump_thread *t, int is_self, void *ucontext) {
    gt_trace *trace = &gt_dump_trace;
    if (is_self) {
        gt_trace_ucontext(ucontext, trace);
    } else if (t->state == GT_DUMP_RUNNING && t->worker_state != NULL) {
        // A request a handler still holds is never reused (unwind.c top).
        static int request_lost;
        int r = request_lost ? GT_TRACE_TIMED_OUT
                             : gt_trace_request_run(&gt_dump_request, t->worker_state, t->core, 100000000);
        if (r == GT_TRACE_ABANDONED) request_lost = 1;
        if (r != GT_TRACE_OK) {
            gt_out_str(o, "    (running on worker ");
            gt_out_dec(o, t->worker);
            gt_out_str(o, r == GT_TRACE_UNAVAILABLE ? ": no trace without preemption signals)\n"
                                                    : ": its worker did not answer)\n");
            return;
        }
        trace = &gt_dump_request.trace;
    } else if (t->core->preempt_context != NULL) {
        gt_trace_ucontext(t->core->preempt_context, trace);
    } else {
        gt_trace_switch_frame(t->core->sp, trace);
    }
    gt_dump_frames(o, trace);
}

void gt_dump_all(int fd, int sig, void *ucontext) {
    static gt_out out;  // guarded by gt_dump_busy
    gt_dump_walker walker = atomic_load(&gt_walker);
    void *kernel = atomic_load(&gt_walker_kernel);
    if (walker == NULL || kernel == NULL) return;
    // One dump at a time; a second one (two threads crashing together)
    // waits up to a second, then gives up.
    for (int i = 0; atomic_exchange(&gt_dump_busy, 1); i++) {
        if (i == 1000) return;
        gt_sleep_ns(1000000);
    }
    gt_out *o = &out;
    o->fd = fd;
    o->len = 0;
    gt_dump_count = 0;
    gt_dump_dropped = 0;
    walker(kernel);
    gt_worker_state *self = &gt_tls_state;
    gt_thread_core *current = self->is_worker ? self->current : NULL;
    gt_out_str(o, "\nGreenThreads: ");
    gt_out_str(o, gt_signal_name(sig));
    gt_out_str(o, " (");
    gt_out_dec(o, sig);
    gt_out_str(o, ") in ");
    if (current != NULL) {
        gt_out_str(o, "green thread ");
        gt_out_dec(o, (int64_t)current->id);
        gt_out_str(o, " '");
        gt_out_str(o, current->name);
        gt_out_str(o, "'");
    } else {
        gt_out_str(o, "OS thread ");
        gt_out_dec(o, (int64_t)gt_sys_gettid().value);
        gt_out_str(o, " (not a green thread)");
    }
    gt_out_str(o, sig == SIGQUIT ? "; dump of all green threads, the program continues\n"
                                 : "; dump of all green threads\n");
    gt_out_str(o, "(names are mangled: pipe through swift-demangle)\n");
    if (current == NULL) {
        gt_out_str(o, "\ninterrupted OS thread:\n");
        gt_trace_ucontext(ucontext, &gt_dump_trace);
        gt_dump_frames(o, &gt_dump_trace);
    }
    for (int i = 0; i < gt_dump_count; i++) {
        const gt_dump_thread *t = &gt_dump_table[i];
        if (t->core == NULL) continue;
        gt_out_char(o, '\n');
        gt_dump_header(o, t);
        gt_dump_thread_trace(o, t, t->core == current, ucontext);
    }
    if (gt_dump_dropped > 0) {
        gt_out_str(o, "\n... and ");
        gt_out_dec(o, gt_dump_dropped);
        gt_out_str(o, " more threads not shown\n");
    }
    gt_out_char(o, '\n');
    gt_out_flush(o);
    atomic_store(&gt_dump_busy, 0);
}

// ---------------------------------------------------------------------------
// Fatal-signal and SIGQUIT handlers.

void gt_crash_dump(int sig, void *ucontext) {
    static _Atomic int dumped;
    if (atomic_exchange(&dumped, 1)) return;  // once: a fault inside the dump goes straight on
    gt_dump_all(2, sig, ucontext);
}

static const int gt_fatal_signals[] = {SIGILL, SIGFPE, SIGABRT};
#define GT_FATAL_COUNT (int)(sizeof gt_fatal_signals / sizeof gt_fatal_signals[0])
static struct sigaction gt_previous_fatal[GT_FATAL_COUNT];

static void gt_on_fatal(int sig, siginfo_t *info, void *ucontext) {
    gt_crash_dump(sig, ucontext);
    for (int i = 0; i < GT_FATAL_COUNT; i++) {
        if (gt_fatal_signals[i] != sig) continue;
        struct sigaction *prev = &gt_previous_fatal[i];
        if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction != NULL) {
            prev->sa_sigaction(sig, info, ucontext);  // Swift's backtracer, by default
            return;
        }
        if (!(prev->sa_flags & SA_SIGINFO) && prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
            prev->sa_handler(sig);
            return;
        }
    }
    // The default action: re-raised, it is delivered when this handler
    // returns (the signal is blocked meanwhile) and ends the process.
    signal(sig, SIG_DFL);
    raise(sig);
}

int gt_crash_handlers_install(void) {
    static _Atomic int installed;
    if (atomic_exchange(&installed, 1)) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = gt_on_fatal;
    // SA_ONSTACK: on a worker the fault may have left no usable stack; the
    // worker's alternate stack (fault.c) takes the dump. SIGVTALRM blocked:
    // a preemption on the alternate stack would strand a frame there.
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGVTALRM);
    for (int i = 0; i < GT_FATAL_COUNT; i++) {
        if (sigaction(gt_fatal_signals[i], &sa, &gt_previous_fatal[i]) != 0) return -1;
    }
    return 0;
}

static struct sigaction gt_previous_quit;
static int gt_quit_installed;

static void gt_on_quit(int sig, siginfo_t *info, void *ucontext) {
    (void)info;
    int saved_errno = errno;  // the interrupted code's errno
    gt_dump_all(2, sig, ucontext);
    errno = saved_errno;
}

int gt_quit_dump_install(void) {
    if (gt_quit_installed) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = gt_on_quit;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGVTALRM);
    if (sigaction(SIGQUIT, &sa, &gt_previous_quit) != 0) return -1;
    gt_quit_installed = 1;
    return 0;
}

void gt_quit_dump_uninstall(void) {
    if (!gt_quit_installed) return;
    sigaction(SIGQUIT, &gt_previous_quit, NULL);
    gt_quit_installed = 0;
}
