// gt_hijack_trampoline for x86-64, System V ABI, ELF, GNU as.
//
// A preemption that lands inside libc or the Swift runtime cannot be taken
// there (hijack.c). Instead the handler may replace the return address by
// which that code will return into the program with the address of this
// trampoline. The code returns here, at the first instruction outside the
// unsafe image, with the program's caller frame intact. We save what a
// return may carry (rax, rdx and, for Swift's calling convention, rcx, r8,
// plus the FP/vector state: xmm0-3 and x87 st0 hold return values), call
// gt_hijack_return, which yields if the preemption is still due and gives
// back the original return address, restore, and return there.
//
// Frame while the C function runs (addresses grow upward):
//
//   rbp+8    the original return address (filled in from gt_hijack_return)
//   rbp+0    saved rbp
//   rbp-8    rax   rbp-16 rdx   rbp-24 rcx   rbp-32 rsi   rbp-40 rdi
//   rbp-48   r8    rbp-56 r9    rbp-64 r10   rbp-72 r11
//   ...      XSAVE area (1024 bytes, 64-byte aligned) <- rsp
//
// On entry rsp is the caller's stack pointer after its call returned: the
// red zone below it is free (a function that calls cannot keep data there).

#include "gt_frame.h"

#if defined(__x86_64__)

    .section gt_core_text,"ax",@progbits
    .globl  gt_hijack_trampoline
    .type   gt_hijack_trampoline,@function
    .p2align 4
gt_hijack_trampoline:
    subq    $8, %rsp                // slot for the real return address
    pushq   %rbp
    movq    %rsp, %rbp
    pushq   %rax                    // integer return registers (and scratch the
    pushq   %rdx                    // C call below may clobber)
    pushq   %rcx
    pushq   %rsi
    pushq   %rdi
    pushq   %r8
    pushq   %r9
    pushq   %r10
    pushq   %r11
    subq    $1024, %rsp             // XSAVE area for x87, SSE and AVX state
    andq    $-64, %rsp
    xorl    %eax, %eax              // the XSAVE header must start zeroed
    movl    $8, %ecx
    leaq    512(%rsp), %rdi
1:  movq    %rax, (%rdi)
    addq    $8, %rdi
    decl    %ecx
    jnz     1b
    movl    $7, %eax                // x87 | SSE | AVX
    xorl    %edx, %edx
    xsave   (%rsp)
    call    gt_hijack_return        // may switch threads; returns the address
    movq    %rax, 8(%rbp)
    movl    $7, %eax
    xorl    %edx, %edx
    xrstor  (%rsp)
    leaq    -72(%rbp), %rsp
    popq    %r11
    popq    %r10
    popq    %r9
    popq    %r8
    popq    %rdi
    popq    %rsi
    popq    %rcx
    popq    %rdx
    popq    %rax
    popq    %rbp
    ret                             // to the hijacked function's real caller
    .size   gt_hijack_trampoline,.-gt_hijack_trampoline

#endif

// Outside the guard: see switch_x86_64_sysv_elf_gas.S.
    .section .note.GNU-stack,"",%progbits
