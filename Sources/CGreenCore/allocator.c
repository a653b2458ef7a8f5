// allocator.c: a thread is never parked while it holds the memory
// allocator's locks.
//
// The one exception to "every point outside the kernel's own critical
// sections is a safe point" (park.c), and why it is not a list of unsafe
// code: a parked thread keeps whatever it holds, and every other thread
// copes by blocking in the OS until the monitor hands its processor on
// (Monitor.swift). The kernel itself is the exception to that coping: its
// scheduler runs Swift code with the kernel lock held, and Swift code may
// allocate or free (a wait-queue entry, a closure, the last reference to an
// object). If it waited there for an arena lock held by a parked thread, it
// would wait, holding the kernel lock, for a thread that only the kernel
// lock's holder can resume: every OS thread of the kernel stops (seen in the
// libc stress test and the sync stress test before this file existed). So
// the kernel does not park a thread that is inside the allocator it depends
// on. That is one component, found by its entry points (whatever `malloc`
// resolves to: glibc's, or an allocator the program interposes), not a list
// of images.
//
// The test: a bounded libunwind walk of the interrupted context, run only
// when the interrupted PC lies in the allocator's image (a thread spinning
// in memset costs one or two steps; one in program code costs nothing),
// looking for a frame inside an allocator entry point (the arena lock is
// taken and released inside malloc/free/realloc/..., whose frame stays on
// the stack around the internal functions that run under it). A PC in the
// dynamic loader, libunwind or libgcc_s is never walked (the walk itself
// takes their locks and reads their tables) and counts as busy.
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "gt_core.h"
#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <ucontext.h>

typedef struct { uintptr_t start, end; } gt_span;

// Allocator entry points (glibc has about 20; an interposed allocator the
// same names).
#define GT_ALLOCATOR_SPANS 32
static gt_span gt_entry[GT_ALLOCATOR_SPANS];
static int gt_entry_count;
// The executable segments of the image that holds `malloc`.
#define GT_IMAGE_SPANS 4
static gt_span gt_image[GT_IMAGE_SPANS];
static int gt_image_count;
// Images a walk must not start in.
#define GT_NO_WALK_SPANS 16
static gt_span gt_no_walk[GT_NO_WALK_SPANS];
static int gt_no_walk_count;
// Frames walked at most. Allocator frames sit within a few frames of the
// interrupted PC (malloc -> _int_malloc -> sysmalloc -> mmap); the walk also
// stops at the first frame outside the allocator's image.
#define GT_ALLOCATOR_WALK_DEPTH 12

static const char *const gt_entry_names[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "malloc_trim", "mallinfo", "mallinfo2",
    "malloc_stats", "malloc_info", "mallopt", "__libc_malloc", "__libc_free",
    "__libc_calloc", "__libc_realloc", "__libc_memalign", "__libc_valloc", "__libc_pvalloc",
};

static int gt_in(const gt_span *spans, int n, uintptr_t pc) {
    for (int i = 0; i < n; i++) {
        if (pc >= spans[i].start && pc < spans[i].end) return 1;
    }
    return 0;
}

static void gt_add_segments(struct dl_phdr_info *info, gt_span *spans, int *n, int cap) {
    for (int i = 0; i < info->dlpi_phnum && *n < cap; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        spans[*n].start = info->dlpi_addr + ph->p_vaddr;
        spans[*n].end = spans[*n].start + ph->p_memsz;
        (*n)++;
    }
}

static int gt_collect_images(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    uintptr_t malloc_address = (uintptr_t)data;
    // The image holding malloc: does one of its segments contain it?
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && malloc_address >= start && malloc_address < start + ph->p_memsz) {
            gt_add_segments(info, gt_image, &gt_image_count, GT_IMAGE_SPANS);
            break;
        }
    }
    const char *path = info->dlpi_name ? info->dlpi_name : "";
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!strncmp(base, "ld-linux", 8) || !strncmp(base, "ld64.so", 7) || !strncmp(base, "libunwind", 9) ||
        !strncmp(base, "libgcc_s", 8) || !strncmp(base, "linux-vdso", 10)) {
        gt_add_segments(info, gt_no_walk, &gt_no_walk_count, GT_NO_WALK_SPANS);
    }
    return 0;
}

void gt_allocator_ranges_build(void) {
    gt_entry_count = 0;
    gt_image_count = 0;
    gt_no_walk_count = 0;
    for (size_t i = 0; i < sizeof gt_entry_names / sizeof gt_entry_names[0]; i++) {
        void *p = dlsym(RTLD_DEFAULT, gt_entry_names[i]);
        if (p == NULL || gt_entry_count == GT_ALLOCATOR_SPANS) continue;
        Dl_info info;
        const ElfW(Sym) *sym = NULL;
        if (!dladdr1(p, &info, (void **)&sym, RTLD_DL_SYMENT) || sym == NULL || sym->st_size == 0) continue;
        uintptr_t start = (uintptr_t)p;
        if (gt_in(gt_entry, gt_entry_count, start)) continue;  // an alias (malloc is __libc_malloc)
        gt_entry[gt_entry_count].start = start;
        gt_entry[gt_entry_count].end = start + sym->st_size;
        gt_entry_count++;
    }
    dl_iterate_phdr(gt_collect_images, dlsym(RTLD_DEFAULT, "malloc"));
}

int gt_allocator_span_count(void) { return gt_entry_count; }

static uintptr_t gt_context_pc(const ucontext_t *uc) {
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#endif
}

int gt_allocator_busy(void *context) {
    uintptr_t pc = gt_context_pc(context);
    if (gt_in(gt_no_walk, gt_no_walk_count, pc)) return 1;
    if (!gt_in(gt_image, gt_image_count, pc)) return 0;
    if (gt_in(gt_entry, gt_entry_count, pc)) return 1;
    unw_cursor_t cursor;
    // unw_context_t is the ucontext on these targets (libunwind's own
    // definition); UNW_INIT_SIGNAL_FRAME: the PC was interrupted, not a return.
    if (unw_init_local2(&cursor, (unw_context_t *)context, UNW_INIT_SIGNAL_FRAME) != 0) return 1;
    for (int depth = 0; depth < GT_ALLOCATOR_WALK_DEPTH; depth++) {
        // No caller found (0) or a failed step (< 0): inside the allocator's
        // image the walk cannot tell, so it does not guess. Returning "not
        // busy" here let a thread park holding an arena lock when a step
        // failed (suspected in the rare sync-stress stall: seven OS threads
        // asleep on one glibc lock word, the kernel lock's holder among them).
        if (unw_step(&cursor) <= 0) return 1;
        unw_word_t ip = 0;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0) return 1;
        if (gt_in(gt_entry, gt_entry_count, (uintptr_t)ip)) return 1;
        if (!gt_in(gt_image, gt_image_count, (uintptr_t)ip)) return 0;  // back in the caller's code
    }
    return 1;  // deeper than any allocator path: do not guess
}
