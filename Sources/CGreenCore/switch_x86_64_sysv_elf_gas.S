// gt_switch for x86-64, System V ABI, ELF, GNU as.
//
//   void gt_switch(void **save_sp /* rdi */, void *load_sp /* rsi */);
//
// Saves exactly what the System V ABI makes callee-saved, plus the two
// control words a green thread may change and expects to keep (SSE MXCSR and
// the x87 control word: rounding mode, exception masks, precision). Caller-
// saved registers are dead across the call by definition, so they are not
// saved. A preempted thread does not come through here: the kernel saved its
// whole register file in the signal frame (see Preemption/Preemption.swift).
//
// Saved frame, offsets from the saved stack pointer (see gt_frame.h):
//
//   +72  (caller's frame)
//   +64  return address          <- new thread: gt_trampoline
//   +56  rbp                     <- new thread: 0 (ends frame-pointer chains)
//   +48  rbx
//   +40  r12                     <- new thread: entry function
//   +32  r13                     <- new thread: entry argument
//   +24  r14
//   +16  r15
//   +8   (padding)
//   +4   x87 control word (2 bytes)
//   +0   MXCSR (4 bytes)         <- saved sp (8 mod 16, as right after a call)
//
// Both routines live in the gt_core_text section: the SIGVTALRM handler never
// preempts a PC inside it (the linker defines __start/__stop_gt_core_text).

#include "gt_frame.h"

#if defined(__x86_64__)

    .section gt_core_text,"ax",@progbits
    .globl  gt_switch
    .type   gt_switch,@function
    .p2align 4
gt_switch:
    .cfi_startproc
    pushq   %rbp                    // callee-saved registers, in frame order
    .cfi_adjust_cfa_offset 8
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    subq    $16, %rsp               // room for the two control words
    .cfi_adjust_cfa_offset 16
    stmxcsr GT_X64_MXCSR(%rsp)      // SSE rounding mode and exception masks
    fnstcw  GT_X64_FPUCW(%rsp)      // x87 precision and rounding control

    movq    %rsp, (%rdi)            // publish the outgoing context
    movq    %rsi, %rsp              // adopt the incoming one

    ldmxcsr GT_X64_MXCSR(%rsp)      // restore its control words ...
    fldcw   GT_X64_FPUCW(%rsp)
    addq    $16, %rsp
    popq    %r15                    // ... and its callee-saved registers
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret                             // into its gt_switch caller, or gt_trampoline
    .cfi_endproc
    .size   gt_switch,.-gt_switch

// First code of every green thread: gt_switch "returns" here with the entry
// function in r12 and its argument in r13, and rsp 16-byte aligned.
    .globl  gt_trampoline
    .type   gt_trampoline,@function
    .p2align 4
gt_trampoline:
    .cfi_startproc
    .cfi_undefined rip              // the root frame: unwinders stop here
    xorl    %ebp, %ebp
    movq    %r13, %rdi
    callq   *%r12                   // never returns: a thread exits by switching away
    ud2                             // trap rather than run into garbage
    .cfi_endproc
    .size   gt_trampoline,.-gt_trampoline

#endif

// Outside the guard: on other architectures this file assembles to an empty
// object, and an object without this note makes GNU ld mark the whole
// program's stack executable.
    .section .note.GNU-stack,"",%progbits
