// gt_frame.h: the layout of the frame gt_switch saves, shared by the assembly
// files (which push and pop it) and context.c (which builds the first frame of
// a new thread). Offsets are from the saved stack pointer. context.c
// static-asserts the sizes, so a change on one side cannot go unnoticed.
#ifndef GT_FRAME_H
#define GT_FRAME_H

#if defined(__x86_64__)
// offset -> content (72 bytes; the saved sp is 8 mod 16, as after a call)
#define GT_X64_MXCSR   0   // 4 bytes: SSE control/status (rounding, masks)
#define GT_X64_FPUCW   4   // 2 bytes: x87 control word (precision, rounding)
#define GT_X64_R15    16
#define GT_X64_R14    24
#define GT_X64_R13    32   // new thread: entry argument
#define GT_X64_R12    40   // new thread: entry function
#define GT_X64_RBX    48
#define GT_X64_RBP    56
#define GT_X64_RIP    64   // return address (new thread: gt_trampoline)
#define GT_FRAME_SIZE 72
#elif defined(__aarch64__)
// offset -> content (176 bytes, 16-byte aligned as AAPCS64 requires of sp)
#define GT_A64_X19     0   // new thread: entry function
#define GT_A64_X20     8   // new thread: entry argument
#define GT_A64_X21    16
#define GT_A64_X23    32
#define GT_A64_X25    48
#define GT_A64_X27    64
#define GT_A64_X29    80   // frame pointer
#define GT_A64_X30    88   // link register (new thread: gt_trampoline)
#define GT_A64_D8     96
#define GT_A64_D10   112
#define GT_A64_D12   128
#define GT_A64_D14   144
#define GT_A64_FPCR  160   // floating-point control (rounding mode, flush-to-zero)
#define GT_A64_FPSR  168   // floating-point status (sticky exception flags)
#define GT_FRAME_SIZE 176
#endif

// Bytes left zeroed above a new thread's first frame: a null return address
// and frame pointer, so frame-pointer walkers stop at the thread's root.
#define GT_ROOT_PAD 16

#endif
