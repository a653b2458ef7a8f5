// context.c: the first frame of a new green thread, built to match the
// layout in gt_frame.h that gt_switch pops.
#include "gt_core.h"
#include "gt_frame.h"
#include <string.h>

extern void gt_trampoline(void);

// Static checks that keep C, assembly and Swift in agreement.
#if defined(__x86_64__)
_Static_assert(GT_FRAME_SIZE == 72, "x86-64 switch frame: 6 registers, 16 bytes of control words, return address");
_Static_assert(GT_FRAME_SIZE % 16 == 8, "saved sp must be 8 mod 16, as right after a call");
#elif defined(__aarch64__)
_Static_assert(GT_FRAME_SIZE == 176, "aarch64 switch frame: 12 GPRs, 8 d-registers, FPCR, FPSR");
_Static_assert(GT_A64_FPSR == GT_A64_FPCR + 8, "FPCR and FPSR are stored as one pair");
_Static_assert(GT_FRAME_SIZE % 16 == 0, "sp must stay 16-byte aligned on aarch64");
#endif
_Static_assert(offsetof(gt_thread_core, sp) == 0, "the switch stores the saved sp at offset 0");
_Static_assert(sizeof(((gt_thread_core *)0)->exclusivity) == 2 * sizeof(void *),
               "Swift's per-task exclusivity context is two pointers");

size_t gt_switch_frame_size(void) { return GT_FRAME_SIZE; }

void gt_thread_core_set_name(gt_thread_core *core, const char *name) {
    if (name) {
        strncpy(core->name, name, GT_NAME_CAPACITY - 1);
        core->name[GT_NAME_CAPACITY - 1] = 0;
    } else {
        core->name[0] = 0;  // unnamed: messages print "thread-<id>" (no formatting per spawn)
    }
}

void *gt_context_make(void *stack_top, void (*entry)(void *), void *arg) {
    uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
    // A zeroed root record (null return address and frame pointer) sits above
    // the first frame so that frame-pointer walks end at the thread's root.
    top -= GT_ROOT_PAD;
    memset((void *)top, 0, GT_ROOT_PAD);
    unsigned char *frame = (unsigned char *)(top - GT_FRAME_SIZE);
    memset(frame, 0, GT_FRAME_SIZE);
#if defined(__x86_64__)
    // After gt_switch pops this frame and returns, rsp == top (16-aligned),
    // so the trampoline's call leaves the entry function correctly aligned.
    *(uint32_t *)(frame + GT_X64_MXCSR) = 0x1F80;  // all exceptions masked, round to nearest
    *(uint16_t *)(frame + GT_X64_FPUCW) = 0x037F;  // x87 default: extended precision, masked
    *(void **)(frame + GT_X64_R12) = (void *)entry;
    *(void **)(frame + GT_X64_R13) = arg;
    *(void **)(frame + GT_X64_RIP) = (void *)gt_trampoline;
#elif defined(__aarch64__)
    *(void **)(frame + GT_A64_X19) = (void *)entry;
    *(void **)(frame + GT_A64_X20) = arg;
    *(void **)(frame + GT_A64_X30) = (void *)gt_trampoline;
    *(uint64_t *)(frame + GT_A64_FPCR) = 0;        // round to nearest, no flush-to-zero
#endif
    return frame;
}

// Stack-depth measurement (tests and the stack-size documentation): paints
// `window` bytes starting `gap` bytes below the caller's stack pointer, so a
// later call to gt_stack_paint_depth can tell how deep code run in between
// went. The gap keeps this function's own frame out of the painted region.
#define GT_PAINT 0xA5

__attribute__((noinline)) void *gt_stack_paint(size_t gap, size_t window) {
    unsigned char *sp = __builtin_frame_address(0);
    unsigned char *bottom = sp - gap - window;
    for (size_t i = 0; i < window; i++) ((volatile unsigned char *)bottom)[i] = GT_PAINT;
    return bottom;
}

size_t gt_stack_paint_depth(const void *bottom, size_t window) {
    const unsigned char *b = bottom;
    size_t i = 0;
    while (i < window && b[i] == GT_PAINT) i++;
    return window - i;  // bytes from the top of the painted window that were written
}
