// gt_switch for aarch64, AAPCS64, ELF, GNU as.
//
//   void gt_switch(void **save_sp /* x0 */, void *load_sp /* x1 */);
//
// Saves exactly what AAPCS64 makes callee-saved (x19-x28, the frame pointer
// x29, the link register x30, the low 64 bits of v8-v15, i.e. d8-d15) plus
// FPCR and FPSR: the rounding mode and the sticky exception flags a green
// thread may set and expects to keep (x86-64 keeps both in MXCSR). A preempted thread does not come through here: the kernel saved
// its whole register file in the signal frame.
//
// Saved frame, offsets from the saved stack pointer (see gt_frame.h):
//
//   +176 (caller's frame)
//   +168 FPSR
//   +160 FPCR
//   +144 d14 d15
//   +128 d12 d13
//   +112 d10 d11
//   +96  d8  d9
//   +80  x29 x30                 <- new thread: 0, gt_trampoline
//   +64  x27 x28
//   +48  x25 x26
//   +32  x23 x24
//   +16  x21 x22
//   +0   x19 x20                 <- saved sp; new thread: entry, argument
//
// Both routines live in the gt_core_text section: the SIGVTALRM handler never
// preempts a PC inside it.

#include "gt_frame.h"

#if defined(__aarch64__)

    .section gt_core_text,"ax",%progbits
    .globl  gt_switch
    .type   gt_switch,%function
    .p2align 4
gt_switch:
    .cfi_startproc
    sub     sp, sp, #GT_FRAME_SIZE
    .cfi_adjust_cfa_offset GT_FRAME_SIZE
    stp     x19, x20, [sp, #GT_A64_X19]     // callee-saved integer registers
    stp     x21, x22, [sp, #GT_A64_X21]
    stp     x23, x24, [sp, #GT_A64_X23]
    stp     x25, x26, [sp, #GT_A64_X25]
    stp     x27, x28, [sp, #GT_A64_X27]
    stp     x29, x30, [sp, #GT_A64_X29]     // frame pointer and return address
    stp     d8,  d9,  [sp, #GT_A64_D8]      // callee-saved SIMD halves
    stp     d10, d11, [sp, #GT_A64_D10]
    stp     d12, d13, [sp, #GT_A64_D12]
    stp     d14, d15, [sp, #GT_A64_D14]
    mrs     x9, fpcr                        // rounding mode, FZ, DN
    mrs     x10, fpsr                       // sticky exception flags
    stp     x9, x10, [sp, #GT_A64_FPCR]

    mov     x9, sp                          // publish the outgoing context
    str     x9, [x0]
    mov     sp, x1                          // adopt the incoming one

    ldp     x9, x10, [sp, #GT_A64_FPCR]
    msr     fpcr, x9
    msr     fpsr, x10
    ldp     x19, x20, [sp, #GT_A64_X19]
    ldp     x21, x22, [sp, #GT_A64_X21]
    ldp     x23, x24, [sp, #GT_A64_X23]
    ldp     x25, x26, [sp, #GT_A64_X25]
    ldp     x27, x28, [sp, #GT_A64_X27]
    ldp     x29, x30, [sp, #GT_A64_X29]
    ldp     d8,  d9,  [sp, #GT_A64_D8]
    ldp     d10, d11, [sp, #GT_A64_D10]
    ldp     d12, d13, [sp, #GT_A64_D12]
    ldp     d14, d15, [sp, #GT_A64_D14]
    add     sp, sp, #GT_FRAME_SIZE
    ret                                     // to x30: the gt_switch caller, or gt_trampoline
    .cfi_endproc
    .size   gt_switch,.-gt_switch

// First code of every green thread: gt_switch "returns" here with the entry
// function in x19 and its argument in x20, and sp 16-byte aligned.
    .globl  gt_trampoline
    .type   gt_trampoline,%function
    .p2align 4
gt_trampoline:
    .cfi_startproc
    .cfi_undefined x30                      // the root frame: unwinders stop here
    mov     x29, #0
    mov     x0, x20
    blr     x19                             // never returns: a thread exits by switching away
    brk     #0x1                            // trap rather than run into garbage
    .cfi_endproc
    .size   gt_trampoline,.-gt_trampoline

#endif

// Outside the guard: on other architectures this file assembles to an empty
// object, and an object without this note makes GNU ld (x86-64) mark the whole
// program's stack executable. `%progbits` is accepted by both GNU as and clang.
    .section .note.GNU-stack,"",%progbits
