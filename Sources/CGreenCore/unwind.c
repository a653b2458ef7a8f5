// unwind.c: stack traces of green threads with libunwind, trace requests to
// other workers, and the fatal-signal dump of every green thread.
//
// Owns: the raw capture of traces (program counters) from the calling
// context, a parked thread's switch frame, or a signal frame; symbol and
// image lookup for the Swift symbolizer (never in a handler); the
// trace-request protocol answered by the SIGVTALRM handler (preempt.c calls
// the hook registered here); the fatal-signal handlers for SIGILL, SIGFPE
// and SIGABRT (fault.c owns SIGSEGV/SIGBUS and calls gt_crash_dump), whose
// dump is raw (PCs, images, offsets); and the SIGQUIT handler, which only
// wakes the snapshot server's thread (the on-demand dump is a snapshot).
//
// Invariants:
// - Everything reachable from a signal handler (capture, trace requests,
//   the dump) allocates nothing, takes no lock but the kernel lock through
//   the walker (bounded, CrashDump.swift), and looks no symbol up: output
//   is write(2), images come from /proc/self/maps. Names, demangling and
//   trimming of the kernel's frames live in Swift (GTSnapshot), once.
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
#include <fcntl.h>
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
    out->parks = __atomic_load_n(&w->parks, __ATOMIC_RELAXED);
    out->slice_start = __atomic_load_n(&w->slice_start, __ATOMIC_RELAXED);
    out->tid = __atomic_load_n(&w->tid, __ATOMIC_RELAXED);
    out->is_worker = __atomic_load_n(&w->is_worker, __ATOMIC_RELAXED);
}


// ---------------------------------------------------------------------------
// The fatal-signal dump: formatted into static buffers, written with write(2)
// to stderr and, when a dump directory is set, to a file there.
//
// It looks nothing up: no dladdr, no libunwind name lookup (both may take
// the loader's lock, which the crashed thread may hold). Each frame is its
// raw PC with the image that maps it and the offset in that image, from
// /proc/self/maps read with open/read (async-signal-safe system calls).
// `gt-ps --dump` symbolizes, demangles, trims the kernel's frames and groups
// the result (GTSnapshot's CrashDumpText: the one place that knows the
// text form and the trimming rules).
//
// The thread list comes from the walker (Swift, CrashDump.swift), which
// takes the kernel lock before it reads the registry, so no thread is
// reaped under it, and keeps it until `release` (the end of the dump): the
// scheduler stays frozen, so parked threads' saved frames stay put.

typedef struct { int fd[2]; size_t len; char buf[4096]; } gt_out;

static void gt_write_all(int fd, const char *p, size_t n) {
    size_t done = 0;
    while (fd >= 0 && done < n) {
        ssize_t k = write(fd, p + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
}

static void gt_out_flush(gt_out *o) {
    gt_write_all(o->fd[0], o->buf, o->len);
    gt_write_all(o->fd[1], o->buf, o->len);
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

// A thread name between quotes: bytes below 0x20, 0x7f, the quote and the
// backslash are written as \xNN, so a name cannot forge lines or terminal
// escapes, and the reader (CrashDumpText) finds the closing quote.
static void gt_out_name(gt_out *o, const char *name) {
    gt_out_char(o, '\'');
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '\'' || *p == '\\') {
            gt_out_str(o, "\\x");
            gt_out_char(o, "0123456789abcdef"[*p >> 4]);
            gt_out_char(o, "0123456789abcdef"[*p & 15]);
        } else {
            gt_out_char(o, (char)*p);
        }
    }
    gt_out_char(o, '\'');
}

static const char *gt_signal_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    case SIGTRAP: return "SIGTRAP";
    default: return "signal";
    }
}

// --- images, from /proc/self/maps --------------------------------------------

// 256 KiB holds the maps of a large process (a few thousand mappings of
// ~100 bytes; stack slabs are one mapping each, guards do not split them).
// Executable mappings are what frames can be in; a few hundred images is
// far more than a Swift server loads.
#define GT_MAPS_BYTES (256 * 1024)
#define GT_MAX_IMAGES 512
static char gt_maps[GT_MAPS_BYTES];          // guarded by gt_dump_busy
typedef struct { uintptr_t start, end, base; const char *path; } gt_image;
static gt_image gt_images[GT_MAX_IMAGES];    // guarded by gt_dump_busy
static int gt_image_count;

static uintptr_t gt_parse_hex(const char **p) {
    uintptr_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        if (c >= '0' && c <= '9') v = v * 16 + (uintptr_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v = v * 16 + (uintptr_t)(c - 'a' + 10);
        else return v;
    }
}

// Reads the maps and keeps each executable file mapping with its image's
// load base: the start of the image's first mapping minus its file offset
// (maps are sorted by address, and the first mapping of an ELF image maps
// offset 0 at the load base). A frame's image offset is pc - base, what
// addr2line -e <image> wants.
static void gt_images_load(void) {
    gt_image_count = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    size_t len = 0;
    for (;;) {
        ssize_t k = read(fd, gt_maps + len, sizeof gt_maps - 1 - len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        len += (size_t)k;
        if (len == sizeof gt_maps - 1) break;
    }
    close(fd);
    gt_maps[len] = 0;
    const char *last_path = NULL;
    size_t last_path_len = 0;
    uintptr_t last_base = 0;
    for (char *line = gt_maps; *line && gt_image_count < GT_MAX_IMAGES;) {
        char *end = line;
        while (*end && *end != '\n') end++;
        int more = *end == '\n';
        *end = 0;
        // start-end perms offset dev inode path
        const char *p = line;
        uintptr_t start = gt_parse_hex(&p);
        if (*p == '-') p++;
        uintptr_t stop = gt_parse_hex(&p);
        while (*p == ' ') p++;
        int executable = p[0] && p[1] && p[2] == 'x';
        while (*p && *p != ' ') p++;
        while (*p == ' ') p++;
        uintptr_t offset = gt_parse_hex(&p);
        for (int field = 0; field < 2; field++) {  // dev, inode
            while (*p == ' ') p++;
            while (*p && *p != ' ') p++;
        }
        while (*p == ' ') p++;
        if (*p == '/') {
            size_t n = strlen(p);
            if (last_path == NULL || n != last_path_len || memcmp(p, last_path, n) != 0) {
                last_path = p;
                last_path_len = n;
                last_base = start - offset;
            }
            if (executable) gt_images[gt_image_count++] = (gt_image){start, stop, last_base, p};
        }
        line = more ? end + 1 : end;
    }
}

static const gt_image *gt_image_of(uintptr_t pc) {
    for (int i = 0; i < gt_image_count; i++) {
        if (pc >= gt_images[i].start && pc < gt_images[i].end) return &gt_images[i];
    }
    return NULL;
}

// --- the dump ---------------------------------------------------------------

static const char *const gt_state_names[] = {"ready", "running", "blocked", "sleeping", "finished"};

// Threads listed at most: 2048 x 88 bytes of table. A dump of more is cut
// (and says so); the live view (gt-ps) has no such limit.
#define GT_DUMP_MAX_THREADS 2048
static gt_dump_thread gt_dump_table[GT_DUMP_MAX_THREADS];  // guarded by gt_dump_busy
static int gt_dump_count, gt_dump_dropped;
static _Atomic(gt_dump_walker) gt_walker;
static _Atomic(gt_dump_walker) gt_walker_release;
static void *_Atomic gt_walker_kernel;
static _Atomic int gt_dump_busy;
static gt_trace gt_dump_trace;            // guarded by gt_dump_busy
static gt_trace_request gt_dump_request;  // guarded by gt_dump_busy; lives for the process
static char gt_dump_dir[512];             // set before the handlers are installed

void gt_dump_set_walker(gt_dump_walker walker, gt_dump_walker release, void *kernel) {
    atomic_store(&gt_walker_kernel, kernel);
    atomic_store(&gt_walker_release, release);
    atomic_store(&gt_walker, walker);
}

int gt_dump_set_directory(const char *dir) {
    size_t n = dir ? strlen(dir) : 0;
    if (n >= sizeof gt_dump_dir - 32) return -1;  // room for "/gt-<pid>.crash"
    if (n > 0) memcpy(gt_dump_dir, dir, n);
    gt_dump_dir[n] = 0;
    return 0;
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

// Every frame of `trace`, raw: `#3 0x000055d5f0e3c1a2 /path/app+0x3c1a2`,
// with `*` after the index for an interrupted (exact) PC.
static void gt_dump_frames(gt_out *o, const gt_trace *trace) {
    for (int i = 0; i < trace->count; i++) {
        gt_out_str(o, "    #");
        gt_out_dec(o, i);
        gt_out_str(o, trace->exact[i] ? "* " : " ");
        gt_out_hex(o, trace->pc[i], 12);
        const gt_image *image = gt_image_of(trace->pc[i]);
        if (image != NULL) {
            gt_out_char(o, ' ');
            gt_out_str(o, image->path);
            gt_out_char(o, '+');
            gt_out_hex(o, trace->pc[i] - image->base, 1);
        }
        gt_out_char(o, '\n');
    }
    if (trace->truncated) gt_out_str(o, "    ...\n");
    if (trace->count == 0) gt_out_str(o, "    (no frames)\n");
}

// Header line of one thread (CrashDumpText parses it):
// thread 3 'name' blocked on mutex 0x1f held by thread 2 'other', priority 8/24 (boosted), 5 switches, 1 preemptions
static void gt_dump_header(gt_out *o, const gt_dump_thread *t) {
    gt_thread_core *c = t->core;
    gt_out_str(o, "thread ");
    gt_out_dec(o, (int64_t)c->id);
    gt_out_char(o, ' ');
    gt_out_name(o, c->name);
    gt_out_char(o, ' ');
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
            if (owner != NULL) { gt_out_char(o, ' '); gt_out_name(o, owner->core->name); }
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
        // 100 ms: a worker answers in microseconds unless it sits where a
        // walk is unsafe; a dying process should not wait long for one.
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

// The dump file: <dir>/gt-<pid>.crash, created exclusively (an old dump of
// a recycled pid is kept, and this one goes to stderr only).
static int gt_dump_file_open(void) {
    if (gt_dump_dir[0] == 0) return -1;
    char path[sizeof gt_dump_dir];
    size_t n = strlen(gt_dump_dir);
    memcpy(path, gt_dump_dir, n);
    char digits[16];
    int d = 0;
    for (int pid = getpid(); pid > 0 && d < 16; pid /= 10) digits[d++] = (char)('0' + pid % 10);
    const char *prefix = "/gt-";
    for (const char *p = prefix; *p; p++) path[n++] = *p;
    while (d > 0) path[n++] = digits[--d];
    const char *suffix = ".crash";
    for (const char *p = suffix; *p; p++) path[n++] = *p;
    path[n] = 0;
    return open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

void gt_dump_all(int fd, int sig, void *ucontext) {
    static gt_out out;  // guarded by gt_dump_busy
    gt_dump_walker walker = atomic_load(&gt_walker);
    gt_dump_walker release = atomic_load(&gt_walker_release);
    void *kernel = atomic_load(&gt_walker_kernel);
    if (walker == NULL || kernel == NULL) return;
    // One dump at a time; a second one (two threads crashing together)
    // waits up to a second, then gives up.
    for (int i = 0; atomic_exchange(&gt_dump_busy, 1); i++) {
        if (i == 1000) return;
        gt_sleep_ns(1000000);
    }
    gt_out *o = &out;
    o->fd[0] = fd;
    o->fd[1] = gt_dump_file_open();
    o->len = 0;
    gt_dump_count = 0;
    gt_dump_dropped = 0;
    gt_images_load();
    int32_t locked = 0;
    walker(kernel, &locked);
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
        gt_out_char(o, ' ');
        gt_out_name(o, current->name);
    } else {
        gt_out_str(o, "OS thread ");
        gt_out_dec(o, (int64_t)gt_sys_gettid().value);
        gt_out_str(o, " (not a green thread)");
    }
    gt_out_str(o, "; dump of all green threads, pid ");
    gt_out_dec(o, getpid());
    gt_out_str(o, ", monotonic ");  // the clock of sleep deadlines, for the time left
    gt_out_dec(o, gt_now_ns());
    gt_out_str(o, "\n(raw frames: `gt-ps --dump FILE` names, demangles and groups them)\n");
    if (!locked) {
        gt_out_str(o, "(the kernel lock stayed busy, most likely held by the crashed thread: "
                      "threads listed without it)\n");
    }
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
    gt_out_str(o, "\nend of dump\n");
    gt_out_flush(o);
    if (o->fd[1] >= 0) close(o->fd[1]);
    if (release != NULL && locked) release(kernel, &locked);
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

// SIGQUIT only wakes the snapshot server's thread, which takes the dump in
// Swift like any snapshot (under the kernel lock, symbolized, demangled):
// the handler writes one byte to the server's pipe. The pipe is
// non-blocking: a burst of SIGQUITs fills it and the extra bytes are
// dropped, which loses nothing (one dump answers them all).
static struct sigaction gt_previous_quit;
static int gt_quit_installed;
static _Atomic int gt_quit_fd = -1;

static void gt_on_quit(int sig, siginfo_t *info, void *ucontext) {
    (void)sig; (void)info; (void)ucontext;
    int saved_errno = errno;  // the interrupted code's errno
    int fd = atomic_load_explicit(&gt_quit_fd, memory_order_relaxed);
    char byte = 'q';
    if (fd >= 0) (void)!write(fd, &byte, 1);
    errno = saved_errno;
}

int gt_quit_dump_install(int notify_fd) {
    atomic_store(&gt_quit_fd, notify_fd);
    if (gt_quit_installed) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = gt_on_quit;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGQUIT, &sa, &gt_previous_quit) != 0) return -1;
    gt_quit_installed = 1;
    return 0;
}

void gt_quit_dump_uninstall(void) {
    if (!gt_quit_installed) return;
    sigaction(SIGQUIT, &gt_previous_quit, NULL);
    gt_quit_installed = 0;
    atomic_store(&gt_quit_fd, -1);
}
