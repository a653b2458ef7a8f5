// hijack.c: preempting threads that live in libc or the Swift runtime.
//
// A thread that spends nearly all its time inside deny-listed images
// (printing, allocating, hashing in libswiftCore) is rarely interrupted at a
// safe PC: the retry timer may need dozens of tries. Instead, when a due
// preemption lands there, the handler walks the interrupted stack with
// libunwind to the first frame of program code and replaces the return
// address by which the unsafe code will return to it with
// gt_hijack_trampoline (x86-64 only for now). When the unsafe code returns,
// the thread is in program code, holding no libc or runtime lock, and the
// trampoline yields if the preemption is still due. .NET suspends threads
// for its collector the same way ("return address hijacking").
//
// Rules that keep it safe:
//   - no walk when the PC is in the loader, libunwind or libgcc_s (their
//     locks and tables are what the walk itself uses), nor when a lock of
//     ours is held (the caller checks critical and no_preempt);
//   - the walk is bounded (16 frames) and the slot must be a memory slot
//     inside the thread's own stack holding exactly the return address;
//   - every frame below the program frame must be unsafe, and no unsafe
//     frame may appear below that program frame within the walk: program
//     code called back from inside libc (a dl_iterate_phdr callback) is not
//     a safe point;
//   - one hijack per thread at a time; it is undone when the thread is
//     preempted by other means first (gt_hijack_undo).
// Stack traces taken while a hijack is in place stop at the trampoline, and
// a C++ exception unwinding through the hijacked frame would not find it:
// Swift code does not throw C++ exceptions through libc or the runtime.
#include "gt_core.h"
#include <string.h>
#include <ucontext.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#define GT_CORE_TEXT __attribute__((section("gt_core_text"), noinline, used))

extern __thread gt_worker_state gt_tls_state;
extern void gt_hijack_trampoline(void);

static int gt_hijack_supported(void) {
#if defined(__x86_64__)
    static int supported = -1;
    if (supported < 0) {
        // XSAVE with AVX state enabled by the OS (CPUID.1:ECX.OSXSAVE, XCR0 bits 1-2).
        unsigned a, b, c, d;
        __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
        int ok = (c >> 27) & 1;
        if (ok) {
            unsigned lo, hi;
            __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            ok = (lo & 7) == 7;
        }
        supported = ok;
    }
    return supported && gt_fix_enabled(GT_FIX_HIJACK);
#else
    return 0;
#endif
}

void gt_hijack_init(void) {
    (void)gt_hijack_supported();
    // Per-thread caches: the walk runs in signal handlers on every worker.
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
}

// Why attempts did not hijack, for GT_DEBUG_WORKERS (see gt_hijack_debug).
enum { GT_SKIP_UNSUPPORTED, GT_SKIP_BUSY, GT_SKIP_TOP_SAFE, GT_SKIP_UNWINDER, GT_SKIP_SAVE_LOC,
       GT_SKIP_STEP, GT_SKIP_NO_PROGRAM_FRAME, GT_SKIP_SLOT, GT_SKIP_CALLBACK, GT_SKIP_COUNT };
static unsigned long gt_hijack_skips[GT_SKIP_COUNT];
#define SKIP(why) do { __atomic_fetch_add(&gt_hijack_skips[why], 1, __ATOMIC_RELAXED); return 0; } while (0)
int gt_hijack_try(gt_thread_core *t, void *context) {
    if (!gt_hijack_supported()) SKIP(GT_SKIP_UNSUPPORTED);
    if (t->hijack_slot != NULL) SKIP(GT_SKIP_BUSY);
    unw_cursor_t cursor;
    if (unw_init_local2(&cursor, (unw_context_t *)context, UNW_INIT_SIGNAL_FRAME) != 0) return 0;
    uintptr_t *slot = NULL;
    uintptr_t target = 0;
    for (int depth = 0; depth < 16; depth++) {
        unw_word_t ip = 0;
        unw_get_reg(&cursor, UNW_REG_IP, &ip);
        if (!gt_pc_is_unsafe((uintptr_t)ip)) {
            if (depth == 0) SKIP(GT_SKIP_TOP_SAFE);
            // This frame's PC is the return address into program code; its
            // save location is the slot the unsafe callee will return through.
            unw_save_loc_t loc;
            if (unw_get_save_loc(&cursor, UNW_REG_IP, &loc) != 0 || loc.type != UNW_SLT_MEMORY) SKIP(GT_SKIP_SAVE_LOC);
            slot = (uintptr_t *)loc.u.addr;
            target = (uintptr_t)ip;
            break;
        }
        if (gt_pc_in_unwinder((uintptr_t)ip)) SKIP(GT_SKIP_UNWINDER);
        if (unw_step(&cursor) <= 0) SKIP(GT_SKIP_STEP);
    }
    if (target == 0) SKIP(GT_SKIP_NO_PROGRAM_FRAME);
    if ((void *)slot < t->stack_low || (void *)(slot + 1) > t->stack_high || *slot != target) SKIP(GT_SKIP_SLOT);
    // Below the program frame, a few more frames must be program code too.
    for (int depth = 0; depth < 8; depth++) {
        if (unw_step(&cursor) <= 0) break;
        unw_word_t ip = 0;
        unw_get_reg(&cursor, UNW_REG_IP, &ip);
        if (gt_pc_is_unsafe((uintptr_t)ip)) SKIP(GT_SKIP_CALLBACK);
    }
    t->hijack_slot = slot;
    t->hijack_return = target;
    *slot = (uintptr_t)gt_hijack_trampoline;
    return 1;
}

void gt_hijack_undo(gt_thread_core *t) {
    if (t->hijack_slot == NULL) return;
    if (*t->hijack_slot == (uintptr_t)gt_hijack_trampoline) *t->hijack_slot = t->hijack_return;
    t->hijack_slot = NULL;
    t->hijack_return = 0;
}

// Called by the trampoline, on the thread's stack, in program context.
GT_CORE_TEXT uintptr_t gt_hijack_return(void) {
    gt_worker_state *w = &gt_tls_state;
    gt_thread_core *t = w->current;
    uintptr_t target = t->hijack_return;
    t->hijack_slot = NULL;
    t->hijack_return = 0;
    t->hijacks++;
    if (w->preempt_pending && w->critical == 0 && t->no_preempt == 0) gt_yield_pending();
    return target;
}

#include <stdio.h>

// Diagnostics only (never called from a handler): snprintf is fine here.
void gt_hijack_debug(void) {
    char buf[256];
    unsigned long *k = gt_hijack_skips;
    snprintf(buf, sizeof buf, "hijack skipped: unsupported=%lu busy=%lu top-safe=%lu unwinder=%lu save-loc=%lu "
             "step=%lu no-program-frame=%lu slot=%lu callback=%lu\n",
             k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]);
    gt_write_stderr(buf);
}
