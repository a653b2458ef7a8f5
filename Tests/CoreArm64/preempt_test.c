// preempt_test.c: the preemption path of the C core, run for real on one
// worker Machine and one spare, without Swift. Built by run.sh for aarch64
// (under qemu-user) and natively for x86-64, from the core's own files:
// preempt.c (the SIGVTALRM handler and CPU-time tick), park.c (parking and
// hand-offs), state.c (TLS state, critical sections), sys.c, context.c, the
// architecture's switch, and gt_altstack_setup/teardown cut out of fault.c
// by run.sh (fault.c includes libunwind.h, whose aarch64 headers are not
// installed; the two functions use none of it).
//
// The story (each step is checked; the scheduler's part, done in Swift by
// Machine.swift and Scheduler.swift, is played by the spare thread here):
//   - worker W attaches as a Machine the way Machine.attach does (TLS state,
//     alternate signal stack, SIGVTALRM unblocked, its CPU-time tick with
//     gt_worker_timers_start), waits in gt_park_wait until the driver hands
//     it the processor (Kernel's hand(_:to:) is gt_park_resume), and enters
//     a green context (gt_context_make, gt_switch) that runs five phases of
//     a call-free loop holding live values in every register it can (see
//     spin_registers below). After each phase it records every register,
//     the FP control word and errno for the driver (main) to check.
//   1. Nobody else is ready (highest ready level -1): slices expire and are
//      restarted; W never parks.
//   2. Someone is ready, but no spare Machine exists yet: the handler's park
//      fails, the preemption stays pending and the monitor's word is bumped.
//      Then spare S starts and waits as a spare (gt_spare_push,
//      gt_park_wait, as Machine.waitAsSpare). Each expired slice now parks W
//      inside the handler on the green stack (gt_park) and hands the
//      processor to S; S finds `handoff_from` (requeueParked), checks the
//      parked Machine and its saved context, and hands the processor back
//      (resumeParked: gt_processor_retake, then hand(_:toParked:): fresh
//      slice fields and gt_park_resume). W wakes in the handler and returns
//      to the interrupted loop. At least 20 such preemptions.
//   3. The slice is made endless; the driver asks for 10 preemptions with
//      gt_request_preemption (tgkill), each honoured by exactly one park.
//   4. Inside gt_enter_critical a requested preemption is deferred (one
//      `deferrals` count for two requests and the ticks that follow, no
//      park); gt_exit_critical returns 1 and gt_park_pending parks once,
//      with errno kept.
//   5. The same for a withoutPreemption region (gt_no_preempt_enter/exit).
//   W switches back to its scheduling context; the driver retires S.
//
// qemu-user (7.2) runs all of it: timer_create on CLOCK_THREAD_CPUTIME_ID
// with SIGEV_THREAD_ID (si_code SI_TIMER, si_overrun), tgkill, futexes,
// sigaltstack, sched_setaffinity, and it delivers the signal into a loop
// with no calls and no system calls. So nothing is worked around: the ticks
// are the real timer's. What it does differently: it delivers signals only
// between translated blocks, so the loop is always interrupted at its first
// instruction unless qemu runs with -singlestep (run.sh has a build for
// that); it writes the guest's signal frame itself (what is tested is
// qemu's frame and sigreturn, not a real aarch64 kernel's); and it runs the
// weakly ordered guest on x86's stronger memory order, so a missing
// barrier in park.c would mostly go unseen.
//
// Stub: gt_allocator_busy lives in allocator.c, which walks the interrupted
// stack with libunwind (no aarch64 headers here). The stub answers "not in
// the allocator" (the loop never is) and sets errno, standing in for the
// calls on the handler's path that can fail and set it (a futex wait that
// finds its word already changed: EAGAIN; sched_setaffinity). Those fail
// only in races, so without the stub's errno the check below would rarely
// see a handler that forgot to restore errno (tried: run.sh's
// errno_not_restored mutant then passes). With it, errno survives the
// handler only because the handler restores it (hazard 1).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "gt_core.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static int failures, passes;  // touched by the driver (main) only
#define CHECK(cond, ...) do { if (cond) passes++; else { failures++; \
    printf("  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); printf(__VA_ARGS__); printf("\n"); } } while (0)

// ---------------------------------------------------------------------------
// The stub (see the header).
static uint64_t allocator_checks;  // handler calls, on W only
int gt_allocator_busy(void *context) {
    (void)context;
    allocator_checks++;
    errno = EDOM;  // see above
    return 0;
}

// ---------------------------------------------------------------------------
// spin_registers(stop, table, dump): written in assembly so that the
// compiler keeps nothing for us. Loads the registers of the set below from
// `table`, then loops until *stop != 0, adding 1 to every one of them on
// each pass (so each holds table value + passes, changing all the time).
// On exit stores them, the pass count, the stop pointer register and the FP
// control word into `dump`. Saves and restores what the ABI makes
// callee-saved, so it is a normal function to its callers.
//
// dump/table layout, in 64-bit words:
//   [0, 28)    general-purpose registers (GPR_COUNT used)
//   [28, 90)   vector registers, two words each (VEC_COUNT used)
//   [90]       passes      [91] stop pointer as found at exit
//   [92]       FPCR/MXCSR at exit    [93] FPCR/MXCSR set before the loop
//              (round toward zero: a preempted thread keeps its FP mode)
#define W_GPR 0
#define W_VEC 28
#define W_PASSES 90
#define W_STOP 91
#define W_FPCTL_END 92
#define W_FPCTL_SET 93
#define SPIN_WORDS 94

#if defined(__aarch64__)
// x2-x28 (x18 included: Linux leaves it to user code) and v0-v30 in full
// (128 bits; d8-d15 are their low halves); x0 holds the stop pointer, x1
// the pass count, v31 the increment, x30 is the loop's scratch.
#define GPR_COUNT 27
#define VEC_COUNT 31
static const char *const gpr_name[GPR_COUNT] = {
    "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15",
    "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28"};
#define VEC_PREFIX "v"
#define LDP_X(a, b, off) "    ldp  " #a ", " #b ", [x1, #" #off "]\n"
#define STP_X(a, b, off) "    stp  " #a ", " #b ", [x30, #" #off "]\n"
#define LDP_Q(a, b, off) "    ldp  " #a ", " #b ", [x30, #" #off "]\n"
#define STP_Q(a, b, off) "    stp  " #a ", " #b ", [x30, #" #off "]\n"
#define ADDX(r) "    add  " #r ", " #r ", #1\n"
#define ADDV(r) "    add  " #r ".2d, " #r ".2d, v31.2d\n"
__asm__(
"    .text\n"
"    .globl spin_registers\n"
"    .type spin_registers,%function\n"
"    .p2align 4\n"
"spin_registers:\n"
"    stp  x29, x30, [sp, #-176]!\n"
"    mov  x29, sp\n"
"    stp  x19, x20, [sp, #16]\n"
"    stp  x21, x22, [sp, #32]\n"
"    stp  x23, x24, [sp, #48]\n"
"    stp  x25, x26, [sp, #64]\n"
"    stp  x27, x28, [sp, #80]\n"
"    stp  d8,  d9,  [sp, #96]\n"
"    stp  d10, d11, [sp, #112]\n"
"    stp  d12, d13, [sp, #128]\n"
"    stp  d14, d15, [sp, #144]\n"
"    mrs  x9, fpcr\n"
"    stp  x2, x9, [sp, #160]\n"              // dump pointer and the caller's FPCR
"    orr  x9, x9, #0xc00000\n"              // RMode = round toward zero
"    msr  fpcr, x9\n"
"    str  x9, [x2, #744]\n"                 // dump[W_FPCTL_SET]
"    add  x30, x1, #224\n"                  // table vectors
LDP_Q(q0, q1, 0) LDP_Q(q2, q3, 32) LDP_Q(q4, q5, 64) LDP_Q(q6, q7, 96)
LDP_Q(q8, q9, 128) LDP_Q(q10, q11, 160) LDP_Q(q12, q13, 192) LDP_Q(q14, q15, 224)
LDP_Q(q16, q17, 256) LDP_Q(q18, q19, 288) LDP_Q(q20, q21, 320) LDP_Q(q22, q23, 352)
LDP_Q(q24, q25, 384) LDP_Q(q26, q27, 416) LDP_Q(q28, q29, 448)
"    ldr  q30, [x30, #480]\n"
"    mov  x9, #1\n"
"    dup  v31.2d, x9\n"
"    ldr  x28, [x1, #208]\n"
LDP_X(x26, x27, 192) LDP_X(x24, x25, 176) LDP_X(x22, x23, 160) LDP_X(x20, x21, 144)
LDP_X(x18, x19, 128) LDP_X(x16, x17, 112) LDP_X(x14, x15, 96) LDP_X(x12, x13, 80)
LDP_X(x10, x11, 64) LDP_X(x8, x9, 48) LDP_X(x6, x7, 32) LDP_X(x4, x5, 16)
LDP_X(x2, x3, 0)
"    mov  x1, #0\n"
"    .globl spin_loop_begin\n"
"spin_loop_begin:\n"
"1:  ldr  x30, [x0]\n"
"    cbnz x30, 2f\n"
ADDX(x1)
ADDX(x2) ADDX(x3) ADDX(x4) ADDX(x5) ADDX(x6) ADDX(x7) ADDX(x8) ADDX(x9) ADDX(x10) ADDX(x11)
ADDX(x12) ADDX(x13) ADDX(x14) ADDX(x15) ADDX(x16) ADDX(x17) ADDX(x18) ADDX(x19) ADDX(x20)
ADDX(x21) ADDX(x22) ADDX(x23) ADDX(x24) ADDX(x25) ADDX(x26) ADDX(x27) ADDX(x28)
ADDV(v0) ADDV(v1) ADDV(v2) ADDV(v3) ADDV(v4) ADDV(v5) ADDV(v6) ADDV(v7) ADDV(v8) ADDV(v9)
ADDV(v10) ADDV(v11) ADDV(v12) ADDV(v13) ADDV(v14) ADDV(v15) ADDV(v16) ADDV(v17) ADDV(v18)
ADDV(v19) ADDV(v20) ADDV(v21) ADDV(v22) ADDV(v23) ADDV(v24) ADDV(v25) ADDV(v26) ADDV(v27)
ADDV(v28) ADDV(v29) ADDV(v30)
"    b    1b\n"
"2:\n"
"    .globl spin_loop_end\n"
"spin_loop_end:\n"
"    ldr  x30, [sp, #160]\n"                // dump pointer
"    str  x1, [x30, #720]\n"                // dump[W_PASSES]
"    str  x0, [x30, #728]\n"                // dump[W_STOP]
STP_X(x2, x3, 0) STP_X(x4, x5, 16) STP_X(x6, x7, 32) STP_X(x8, x9, 48) STP_X(x10, x11, 64)
STP_X(x12, x13, 80) STP_X(x14, x15, 96) STP_X(x16, x17, 112) STP_X(x18, x19, 128)
STP_X(x20, x21, 144) STP_X(x22, x23, 160) STP_X(x24, x25, 176) STP_X(x26, x27, 192)
"    str  x28, [x30, #208]\n"
"    mrs  x9, fpcr\n"
"    str  x9, [x30, #736]\n"                // dump[W_FPCTL_END]
"    add  x30, x30, #224\n"
STP_Q(q0, q1, 0) STP_Q(q2, q3, 32) STP_Q(q4, q5, 64) STP_Q(q6, q7, 96)
STP_Q(q8, q9, 128) STP_Q(q10, q11, 160) STP_Q(q12, q13, 192) STP_Q(q14, q15, 224)
STP_Q(q16, q17, 256) STP_Q(q18, q19, 288) STP_Q(q20, q21, 320) STP_Q(q22, q23, 352)
STP_Q(q24, q25, 384) STP_Q(q26, q27, 416) STP_Q(q28, q29, 448)
"    str  q30, [x30, #480]\n"
"    ldr  x9, [sp, #168]\n"                 // the caller's FPCR back
"    msr  fpcr, x9\n"
"    ldp  x19, x20, [sp, #16]\n"
"    ldp  x21, x22, [sp, #32]\n"
"    ldp  x23, x24, [sp, #48]\n"
"    ldp  x25, x26, [sp, #64]\n"
"    ldp  x27, x28, [sp, #80]\n"
"    ldp  d8,  d9,  [sp, #96]\n"
"    ldp  d10, d11, [sp, #112]\n"
"    ldp  d12, d13, [sp, #128]\n"
"    ldp  d14, d15, [sp, #144]\n"
"    ldp  x29, x30, [sp], #176\n"
"    ret\n"
"    .size spin_registers, .-spin_registers\n"
);
#elif defined(__x86_64__)
// rbx rcx rdx rsi rbp r8-r15 and xmm0-xmm14; rdi holds the stop pointer,
// rax the pass count, xmm15 the increment.
#define GPR_COUNT 13
#define VEC_COUNT 15
static const char *const gpr_name[GPR_COUNT] = {
    "rbx", "rcx", "rdx", "rsi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
#define VEC_PREFIX "xmm"
#define ADDQ(r) "    addq $1, %" #r "\n"
#define PADD(r) "    paddq %xmm15, %" #r "\n"
__asm__(
"    .text\n"
"    .globl spin_registers\n"
"    .type spin_registers,@function\n"
"    .p2align 4\n"
"spin_registers:\n"
"    pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
"    pushq %rdx\n"                          // dump pointer, at 16(%rsp) below
"    subq $16, %rsp\n"                      // 0: MXCSR scratch, 4: caller's MXCSR, 8: pass count
"    stmxcsr 4(%rsp)\n"
"    movl 4(%rsp), %eax\n"
"    orl  $0x6000, %eax\n"                  // RC = round toward zero
"    movl %eax, (%rsp)\n"
"    ldmxcsr (%rsp)\n"
"    movq %rax, 744(%rdx)\n"                // dump[W_FPCTL_SET] (upper half of rax is zero)
"    movdqu 224(%rsi), %xmm0\n  movdqu 240(%rsi), %xmm1\n  movdqu 256(%rsi), %xmm2\n"
"    movdqu 272(%rsi), %xmm3\n  movdqu 288(%rsi), %xmm4\n  movdqu 304(%rsi), %xmm5\n"
"    movdqu 320(%rsi), %xmm6\n  movdqu 336(%rsi), %xmm7\n  movdqu 352(%rsi), %xmm8\n"
"    movdqu 368(%rsi), %xmm9\n  movdqu 384(%rsi), %xmm10\n movdqu 400(%rsi), %xmm11\n"
"    movdqu 416(%rsi), %xmm12\n movdqu 432(%rsi), %xmm13\n movdqu 448(%rsi), %xmm14\n"
"    movl $1, %eax\n  movq %rax, %xmm15\n  punpcklqdq %xmm15, %xmm15\n"
"    movq 0(%rsi), %rbx\n  movq 8(%rsi), %rcx\n  movq 16(%rsi), %rdx\n  movq 32(%rsi), %rbp\n"
"    movq 40(%rsi), %r8\n  movq 48(%rsi), %r9\n  movq 56(%rsi), %r10\n  movq 64(%rsi), %r11\n"
"    movq 72(%rsi), %r12\n movq 80(%rsi), %r13\n movq 88(%rsi), %r14\n  movq 96(%rsi), %r15\n"
"    movq 24(%rsi), %rsi\n"
"    xorl %eax, %eax\n"
"    .globl spin_loop_begin\n"
"spin_loop_begin:\n"
"1:  cmpq $0, (%rdi)\n"
"    jne  2f\n"
ADDQ(rax)
ADDQ(rbx) ADDQ(rcx) ADDQ(rdx) ADDQ(rsi) ADDQ(rbp) ADDQ(r8) ADDQ(r9) ADDQ(r10) ADDQ(r11)
ADDQ(r12) ADDQ(r13) ADDQ(r14) ADDQ(r15)
PADD(xmm0) PADD(xmm1) PADD(xmm2) PADD(xmm3) PADD(xmm4) PADD(xmm5) PADD(xmm6) PADD(xmm7)
PADD(xmm8) PADD(xmm9) PADD(xmm10) PADD(xmm11) PADD(xmm12) PADD(xmm13) PADD(xmm14)
"    jmp  1b\n"
"2:\n"
"    .globl spin_loop_end\n"
"spin_loop_end:\n"
"    movq %rax, 8(%rsp)\n"
"    movq 16(%rsp), %rax\n"                 // dump pointer
"    movq %rbx, 0(%rax)\n  movq %rcx, 8(%rax)\n  movq %rdx, 16(%rax)\n  movq %rsi, 24(%rax)\n"
"    movq %rbp, 32(%rax)\n movq %r8, 40(%rax)\n  movq %r9, 48(%rax)\n   movq %r10, 56(%rax)\n"
"    movq %r11, 64(%rax)\n movq %r12, 72(%rax)\n movq %r13, 80(%rax)\n  movq %r14, 88(%rax)\n"
"    movq %r15, 96(%rax)\n"
"    movdqu %xmm0, 224(%rax)\n  movdqu %xmm1, 240(%rax)\n  movdqu %xmm2, 256(%rax)\n"
"    movdqu %xmm3, 272(%rax)\n  movdqu %xmm4, 288(%rax)\n  movdqu %xmm5, 304(%rax)\n"
"    movdqu %xmm6, 320(%rax)\n  movdqu %xmm7, 336(%rax)\n  movdqu %xmm8, 352(%rax)\n"
"    movdqu %xmm9, 368(%rax)\n  movdqu %xmm10, 384(%rax)\n movdqu %xmm11, 400(%rax)\n"
"    movdqu %xmm12, 416(%rax)\n movdqu %xmm13, 432(%rax)\n movdqu %xmm14, 448(%rax)\n"
"    movq %rdi, 728(%rax)\n"                // dump[W_STOP]
"    movq 8(%rsp), %rcx\n"
"    movq %rcx, 720(%rax)\n"                // dump[W_PASSES]
"    stmxcsr (%rsp)\n"
"    movl (%rsp), %ecx\n"
"    movq %rcx, 736(%rax)\n"                // dump[W_FPCTL_END]
"    ldmxcsr 4(%rsp)\n"                     // the caller's MXCSR back
"    addq $16, %rsp\n"
"    popq %rdx\n"
"    popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
"    ret\n"
"    .size spin_registers, .-spin_registers\n"
);
#else
#error "aarch64 or x86-64 only"
#endif
void spin_registers(volatile uint64_t *stop, const uint64_t *table, uint64_t *dump);
extern char spin_loop_begin[], spin_loop_end[];

// ---------------------------------------------------------------------------
// The Machines, the processor, the green thread.

// 1 ms, the library's shortest tick (Machine.attach); the kernel delivers
// CPU-time ticks on its scheduler tick, so periods may arrive in overruns.
#define TICK_NS 1000000
// Two periods, as a 2 ms time slice gets (slice / 4, at least 1 ms).
#define PERIODS_PER_SLICE 2
// Phase 3 to 5: a slice that never expires, so only requests preempt.
#define ENDLESS_SLICE (1u << 30)
// Enough hand-offs that both hand-back orders (before and after W sleeps
// in its futex, see requeue_and_resume) happen many times each.
#define SLICE_PREEMPTIONS 20
#define REQUESTED_PREEMPTIONS 10
// Generous: qemu on a loaded 2-CPU machine. A wait that runs out fails the
// test (a broken preemption path usually shows up as a hang).
#define DEADLINE_NS (20LL * 1000000000)
// Room for a signal frame with SVE state (qemu -cpu max) and the handler,
// many times over; the green code itself needs little.
#define GREEN_STACK_SIZE (256 * 1024)

typedef struct machine {
    const char *name;
    pthread_t thread;
    gt_worker_state *state;  // published once attached
    void *altstack;
    size_t altstack_size;
    stack_t previous_altstack;
    int altstack_ok;
} machine;

static machine worker = {.name = "worker"}, spare = {.name = "spare"};
static int processor;              // the one processor: only its address matters
static int monitor_event_fd, monitor_timer_fd;  // park.c writes the eventfd when it wants the monitor
static uint64_t monitor_asked;     // wake-ups read from it so far

// The monitor's wake-ups posted by park.c, so far (drains the eventfd).
static uint64_t monitor_asks(void) {
    uint64_t posted = 0;
    if (read(monitor_event_fd, &posted, sizeof posted) == (ssize_t)sizeof posted) monitor_asked += posted;
    return monitor_asked;
}
static gt_thread_core green;
static void *green_stack;
static void *worker_idle_sp;       // W's scheduling context while green runs
static int spare_retiring, worker_done, spare_done;  // atomics

// Machine.attach, for the calling OS thread.
static gt_worker_state *attach(machine *m) {
    gt_worker_state *ws = gt_self();
    memset(ws, 0, sizeof *ws);
    ws->machine = m;
    ws->tid = (int32_t)gt_sys_gettid().value;
    ws->preemption_enabled = 1;
    m->altstack_ok = gt_altstack_setup(&m->altstack, &m->altstack_size, &m->previous_altstack) == 0;
    // Painted: the SIGVTALRM handler must never run there (no SA_ONSTACK).
    if (m->altstack_ok) memset(m->altstack, 0xA5, m->altstack_size);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGVTALRM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    ws->is_worker = 1;
    ws->tick_ns = TICK_NS;
    ws->periods_per_slice = PERIODS_PER_SLICE;
    if (gt_worker_timers_start(ws, TICK_NS) != 0) {
        printf("  %s: gt_worker_timers_start: %s\n", m->name, strerror(errno));
    }
    __atomic_store_n(&m->state, ws, __ATOMIC_RELEASE);
    return ws;
}

static int altstack_untouched(const machine *m) {
    if (!m->altstack_ok) return 0;
    const unsigned char *p = m->altstack;
    for (size_t i = 0; i < m->altstack_size; i++) if (p[i] != 0xA5) return 0;
    return 1;
}

static int worker_altstack_clean;
static gt_worker_state worker_final;  // W's state as it detached (its TLS goes with the thread)

// Machine.detach.
static void detach(machine *m) {
    gt_worker_state *ws = gt_self();
    gt_worker_timers_stop(ws);
    ws->is_worker = 0;
    if (m == &worker) {
        worker_final = *ws;
        worker_altstack_clean = altstack_untouched(m);
    }
    gt_altstack_teardown(m->altstack, m->altstack_size, &m->previous_altstack);
}

static uint64_t load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static int load32(const volatile int32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static uintptr_t context_pc(const ucontext_t *uc) {
#if defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#endif
}

static uintptr_t context_sp(const ucontext_t *uc) {
#if defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#endif
}

static int on_green_stack(uintptr_t a) {
    return a >= (uintptr_t)green.stack_low && a < (uintptr_t)green.stack_high;
}

// ---------------------------------------------------------------------------
// The green thread: five phases of the loop, results kept for the driver.

static volatile uint64_t stop[6];  // stop[k]: the driver ends phase k's loop
static int phase;                  // atomic: the phase whose loop runs (or is about to)

typedef struct spin_record {
    uint64_t table[SPIN_WORDS], dump[SPIN_WORDS];
    int errno_set, errno_after;
} spin_record;
static spin_record spins[6];

typedef struct deferral_record {
    uint64_t parks_before, parks_inside, parks_after;
    uint64_t deferrals_before, deferrals_after, thread_deferrals_before, thread_deferrals_after;
    uint64_t preemptions_before, preemptions_after;
    int pending_inside, exit_result, pending_after, errno_after;
} deferral_record;
static deferral_record deferral[2];  // [0] critical section, [1] no-preempt region
static uint64_t phase3_preemptions_before;

// Distinct values per phase, register and lane (so a swap, a lost upper
// half or a value from another phase shows).
static void fill_table(uint64_t *table, int k) {
    memset(table, 0, SPIN_WORDS * sizeof *table);
    for (int i = 0; i < GPR_COUNT; i++) table[W_GPR + i] = 0x1000000000000000ull * (uint64_t)k + 0x10000ull * (uint64_t)(i + 1);
    for (int i = 0; i < 2 * VEC_COUNT; i++) table[W_VEC + i] = 0xF00000000000000ull + 0x100000000ull * (uint64_t)k + 0x1000000ull * (uint64_t)(i + 1);
}

// errno is set right before the loop and read right after it: only the
// handler runs in between.
static void spin_phase(int k) {
    spin_record *r = &spins[k];
    fill_table(r->table, k);
    r->errno_set = 1000 + k;  // beyond every E* code: only a restore can bring it back
    errno = r->errno_set;
    __atomic_store_n(&phase, k, __ATOMIC_RELEASE);
    spin_registers(&stop[k], r->table, r->dump);
    r->errno_after = errno;
}

// Before a phase that counts exactly: the spare is back on its stack and no
// preemption is left pending from the phase before (a pending one parks at
// the next tick even with the slice endless).
static void wait_quiet(gt_worker_state *w) {
    while (gt_spare_count() != 1 || w->preempt_pending) gt_cpu_relax();
}

// Phases 4 and 5: a requested preemption inside a section is deferred and
// honoured at its end. `region` 0: gt_enter_critical; 1: withoutPreemption.
static void deferral_phase(int k, int region) {
    gt_worker_state *w = gt_self();
    deferral_record *d = &deferral[region];
    wait_quiet(w);
    if (region == 0) gt_enter_critical(); else gt_no_preempt_enter();
    d->parks_before = w->parks;
    d->deferrals_before = w->deferrals;
    d->thread_deferrals_before = green.deferrals;
    d->preemptions_before = w->preemptions;
    spin_phase(k);
    d->parks_inside = w->parks;
    d->pending_inside = w->preempt_pending;
    d->exit_result = region == 0 ? gt_exit_critical() : gt_no_preempt_exit();
    errno = 4000 + k;  // beyond every E* code, as above
    if (d->exit_result) gt_park_pending();
    d->errno_after = errno;
    d->parks_after = w->parks;
    d->pending_after = w->preempt_pending;
    d->deferrals_after = w->deferrals;
    d->thread_deferrals_after = green.deferrals;
    d->preemptions_after = w->preemptions;
}

static void green_main(void *arg) {
    (void)arg;
    // The switch in was made with the critical count raised; the context
    // that resumes lowers it (gt_core.h's invariant).
    (void)gt_exit_critical();
    gt_worker_state *w = gt_self();
    spin_phase(1);                       // nobody waits: slices restart
    spin_phase(2);                       // no spare, then slice preemptions
    w->periods_per_slice = ENDLESS_SLICE;
    wait_quiet(w);
    phase3_preemptions_before = w->preemptions;
    spin_phase(3);                       // requested preemptions
    deferral_phase(4, 0);
    deferral_phase(5, 1);
    gt_enter_critical();
    w->current = NULL;
    gt_switch(&green.sp, worker_idle_sp);
    abort();  // never resumed
}

// ---------------------------------------------------------------------------
// Worker W.

static void *worker_main(void *arg) {
    (void)arg;
    gt_worker_state *w = attach(&worker);
    // Wait for the processor, as a new Machine does before its run loop.
    for (;;) {
        uint32_t seen = gt_atomic_load_u32(&w->park_word);
        if (gt_held_processor(w) != NULL) break;
        gt_park_wait(w, seen, -1);
    }
    void *sp = gt_context_make((char *)green_stack + GREEN_STACK_SIZE, green_main, NULL);
    w->current = &green;
    w->slice_start = gt_tsc();
    w->slice_periods = 0;
    green.switches++;
    gt_enter_critical();
    gt_switch(&worker_idle_sp, sp);
    (void)gt_exit_critical();
    detach(&worker);
    __atomic_store_n(&worker_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

// ---------------------------------------------------------------------------
// Spare S: Machine.runLoop/waitAsSpare with the scheduler's part
// (requeueParked, resumeParked, hand(_:toParked:)) for one parked thread.
// What it sees is counted here and judged by the driver.

static struct {
    uint64_t handoffs;          // processors received from a parking Machine
    uint64_t without_handoff;   // a processor without `handoff_from`
    uint64_t wrong_machine, not_parked, holds_processor, wrong_current;
    uint64_t context_off_stack, sp_off_stack, pc_in_loop;
    uint64_t short_slice;       // a slice preemption in phase 2 before the slice was used
    uint64_t retake_failed, unparked_before_resume;
} seen;

// Where in the loop the preemptions landed (distinct instructions). A real
// CPU interrupts at any instruction; qemu-user delivers signals only
// between translated blocks, so without -singlestep every preemption lands
// on the loop's first instruction (seen: 1 point in 30; with -singlestep,
// about 25 in 30).
#define MAX_POINTS 256
static uintptr_t points[MAX_POINTS];
static int point_count;

static void note_interrupted_pc(uintptr_t offset) {
    for (int i = 0; i < point_count; i++) if (points[i] == offset) return;
    if (point_count < MAX_POINTS) points[point_count++] = offset;
}

static int wait_as_spare(gt_worker_state *ws) {
    gt_spare_push(ws);
    for (;;) {
        uint32_t word = gt_atomic_load_u32(&ws->park_word);
        if (gt_held_processor(ws) != NULL) return 1;
        if (__atomic_load_n(&spare_retiring, __ATOMIC_ACQUIRE) && gt_spare_remove(ws)) return 0;
        gt_park_wait(ws, word, -1);
    }
}

static void requeue_and_resume(gt_worker_state *ws, gt_worker_state *from, void *p) {
    seen.handoffs++;
    // requeueParked: the Machine is parked with its thread and its context.
    if (from != worker.state) seen.wrong_machine++;
    if (!__atomic_load_n(&from->parked, __ATOMIC_ACQUIRE)) seen.not_parked++;
    if (gt_held_processor(from) != NULL) seen.holds_processor++;
    if (from->current != &green) seen.wrong_current++;
    const ucontext_t *uc = green.preempt_context;
    if (uc == NULL || !on_green_stack((uintptr_t)uc)) {
        seen.context_off_stack++;  // the signal frame (or getcontext's) lives on the green stack
    } else {
        if (!on_green_stack(context_sp(uc))) seen.sp_off_stack++;
        uintptr_t pc = context_pc(uc);
        if (pc >= (uintptr_t)spin_loop_begin && pc < (uintptr_t)spin_loop_end) {
            seen.pc_in_loop++;
            note_interrupted_pc(pc - (uintptr_t)spin_loop_begin);
        }
    }
    if (__atomic_load_n(&phase, __ATOMIC_ACQUIRE) == 2 && green.parked_periods < PERIODS_PER_SLICE) seen.short_slice++;
    // Some time "runs another thread" on the processor, so that W is asleep
    // in its futex when the processor comes back (every other hand-off; the
    // rest come back before it may have slept).
    if (seen.handoffs & 1) gt_sys_nanosleep(200000);
    if (!__atomic_load_n(&from->parked, __ATOMIC_ACQUIRE)) seen.unparked_before_resume++;
    // resumeParked, then hand(_:toParked:).
    if (!gt_processor_retake(ws, p)) seen.retake_failed++;
    from->slice_start = gt_tsc();
    from->slice_periods = 0;
    from->preempt_pending = 0;
    gt_park_resume(from, p);
}

static void *spare_main(void *arg) {
    (void)arg;
    gt_worker_state *ws = attach(&spare);
    gt_enter_critical();  // the scheduling context holds one count throughout
    for (;;) {
        void *p = gt_held_processor(ws);
        if (p == NULL) {
            if (!wait_as_spare(ws)) break;
            continue;
        }
        gt_worker_state *from = ws->handoff_from;
        ws->handoff_from = NULL;
        if (from == NULL) {
            seen.without_handoff++;
            gt_processor_retake(ws, p);  // nothing to run: drop it
            continue;
        }
        requeue_and_resume(ws, from, p);
    }
    (void)gt_exit_critical();
    detach(&spare);
    __atomic_store_n(&spare_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

// ---------------------------------------------------------------------------
// The driver (main).

static void report_and_exit(void) {
    printf("%d passed, %d failed\n", passes, failures);
    fflush(stdout);
    _exit(failures ? 1 : 0);
}

static const char *waiting_for;
static int64_t deadline;

static void timed_out(void) {
    gt_worker_state *w = worker.state;
    failures++;
    printf("  FAIL timeout waiting for %s (phase %d; worker ticks=%llu preemptions=%llu parks=%llu deferrals=%llu "
           "no_spare=%llu pending=%d; spare handoffs=%llu)\n", waiting_for, __atomic_load_n(&phase, __ATOMIC_ACQUIRE),
           w ? (unsigned long long)load64(&w->ticks) : 0, w ? (unsigned long long)load64(&w->preemptions) : 0,
           w ? (unsigned long long)load64(&w->parks) : 0, w ? (unsigned long long)load64(&w->deferrals) : 0,
           w ? (unsigned long long)load64(&w->no_spare) : 0, w ? load32(&w->preempt_pending) : 0,
           (unsigned long long)load64(&seen.handoffs));
    report_and_exit();  // the worker may be stuck: nothing more to learn
}

#define WAIT_UNTIL(cond) do { waiting_for = #cond; deadline = gt_clock_monotonic_ns() + DEADLINE_NS; \
    while (!(cond)) { if (gt_clock_monotonic_ns() > deadline) timed_out(); gt_sys_nanosleep(100000); } } while (0)

static int phase_is(int k) { return __atomic_load_n(&phase, __ATOMIC_ACQUIRE) == k; }

static void check_spin(int k, const char *what) {
    const spin_record *r = &spins[k];
    uint64_t passes_made = r->dump[W_PASSES];
    char bad[512] = "";
    size_t n = 0;
    for (int i = 0; i < GPR_COUNT; i++) {
        if (r->dump[W_GPR + i] != r->table[W_GPR + i] + passes_made && n < sizeof bad - 16)
            n += (size_t)snprintf(bad + n, sizeof bad - n, " %s", gpr_name[i]);
    }
    for (int i = 0; i < 2 * VEC_COUNT; i++) {
        if (r->dump[W_VEC + i] != r->table[W_VEC + i] + passes_made && n < sizeof bad - 16)
            n += (size_t)snprintf(bad + n, sizeof bad - n, " %s%d.d[%d]", VEC_PREFIX, i / 2, i % 2);
    }
    CHECK(passes_made > 0, "phase %d (%s): the loop made no pass", k, what);
    CHECK(n == 0, "phase %d (%s): registers changed across preemption:%s", k, what, bad);
    CHECK(r->dump[W_STOP] == (uint64_t)(uintptr_t)&stop[k], "phase %d: stop pointer register %#llx", k,
          (unsigned long long)r->dump[W_STOP]);
    CHECK(r->dump[W_FPCTL_END] == r->dump[W_FPCTL_SET], "phase %d: FP control %#llx, set %#llx", k,
          (unsigned long long)r->dump[W_FPCTL_END], (unsigned long long)r->dump[W_FPCTL_SET]);
    CHECK(r->errno_after == r->errno_set, "phase %d (%s): errno %d after the loop, %d before (hazard 1)", k, what,
          r->errno_after, r->errno_set);
    printf("    phase %d (%s): %llu passes, %d GPRs + %d vector registers + FP control + errno intact: %s\n", k, what,
           (unsigned long long)passes_made, GPR_COUNT, VEC_COUNT, n == 0 && r->errno_after == r->errno_set ? "yes" : "NO");
}

static void check_deferral(int region, const char *what) {
    const deferral_record *d = &deferral[region];
    CHECK(d->parks_inside == d->parks_before, "%s: parked %llu times inside", what,
          (unsigned long long)(d->parks_inside - d->parks_before));
    CHECK(d->pending_inside == 1, "%s: preempt_pending %d at the end of the section", what, d->pending_inside);
    CHECK(d->deferrals_after == d->deferrals_before + 1, "%s: %llu deferrals for one due preemption", what,
          (unsigned long long)(d->deferrals_after - d->deferrals_before));
    CHECK(d->thread_deferrals_after == d->thread_deferrals_before + 1, "%s: thread counted %llu deferrals", what,
          (unsigned long long)(d->thread_deferrals_after - d->thread_deferrals_before));
    CHECK(d->exit_result == 1, "%s: the section's exit returned %d, not 1", what, d->exit_result);
    // gt_park_pending parks once; a tick landing between the exit and that
    // call may park first through the handler (then twice, one counted as a
    // preemption): harmless, and allowed here.
    uint64_t by_handler = d->preemptions_after - d->preemptions_before;
    CHECK(by_handler <= 1 && d->parks_after == d->parks_inside + 1 + by_handler,
          "%s: %llu parks after the section, %llu by the handler", what,
          (unsigned long long)(d->parks_after - d->parks_inside), (unsigned long long)by_handler);
    CHECK(d->pending_after == 0, "%s: still pending after gt_park_pending", what);
    CHECK(d->errno_after == 4000 + (region == 0 ? 4 : 5), "%s: errno %d after gt_park_pending", what, d->errno_after);
    printf("    %s: deferred (1 deferral, no park), honoured at its end by gt_park_pending (%llu park)\n", what,
           (unsigned long long)(d->parks_after - d->parks_inside));
}

// Phase 4/5 driving: two requests and some ticks inside the section.
static void drive_deferral(int k, int region) {
    gt_worker_state *w = worker.state;
    WAIT_UNTIL(phase_is(k));
    uint64_t ticks = load64(&w->ticks);
    gt_request_preemption(w);
    // (A park instead of a deferral ends the wait too: check_deferral reports it.)
    WAIT_UNTIL(load64(&w->deferrals) == deferral[region].deferrals_before + 1 ||
               load64(&w->parks) != deferral[region].parks_before);
    gt_request_preemption(w);
    WAIT_UNTIL(load64(&w->ticks) >= ticks + 4);  // both requests and two timer ticks
    stop[k] = 1;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("preemption path: SIGVTALRM handler, park and hand-off, critical-section deferral (%s)\n",
#if defined(__aarch64__)
           "aarch64"
#else
           "x86-64"
#endif
    );
    CHECK(gt_monitor_open(&monitor_event_fd, &monitor_timer_fd) == 0, "gt_monitor_open: %s", strerror(errno));
    gt_park_setup(monitor_event_fd);
    CHECK(gt_preemption_install() == 0, "gt_preemption_install: %s", strerror(errno));
    green_stack = mmap(NULL, GREEN_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (green_stack == MAP_FAILED) { perror("mmap"); return 2; }
    green.id = 1;
    green.stack_low = green_stack;
    green.stack_high = (char *)green_stack + GREEN_STACK_SIZE;
    green.effective_level = 0;
    gt_thread_core_set_name(&green, "spinner");

    pthread_create(&worker.thread, NULL, worker_main, NULL);
    WAIT_UNTIL(__atomic_load_n(&worker.state, __ATOMIC_ACQUIRE) != NULL);
    gt_worker_state *w = worker.state;
    CHECK(worker.altstack_ok, "worker: gt_altstack_setup failed");
    CHECK(w->timers_armed, "worker: CPU-time tick not armed");
    gt_park_resume(w, &processor);  // Kernel's hand(_:to:)

    // Phase 1: slices expire, nobody is ready (gt_park_setup left the
    // ready level at -1): fresh slices, no park.
    WAIT_UNTIL(phase_is(1));
    uint64_t cpu_tick_ns = load64(&green.cpu_tick_ns);
    WAIT_UNTIL(load64(&w->ticks) >= 6 && load64(&green.cpu_tick_ns) > cpu_tick_ns);
    stop[1] = 1;
    CHECK(load64(&w->parks) == 0 && load64(&w->preemptions) == 0, "parks=%llu preemptions=%llu with nobody ready",
          (unsigned long long)load64(&w->parks), (unsigned long long)load64(&w->preemptions));
    printf("    phase 1: %llu ticks, slices restarted (%llu ns of ticks charged), no park\n",
           (unsigned long long)load64(&w->ticks), (unsigned long long)load64(&green.cpu_tick_ns));

    // Phase 2: a thread of the same level is ready. No spare yet: the
    // preemption stays pending and the monitor is asked, twice.
    WAIT_UNTIL(phase_is(2));
    gt_set_highest_ready(0);
    WAIT_UNTIL(load64(&w->no_spare) >= 2 && monitor_asks() >= 2);
    CHECK(load64(&w->parks) == 0, "parked without a spare");
    // Pending between ticks; each tick's handler clears it for a moment
    // while it tries to park again, so look more than once.
    int pending_seen = 0;
    for (int i = 0; i < 2000 && !pending_seen; i++) {
        pending_seen = load32(&w->preempt_pending) == 1;
        if (!pending_seen) gt_sys_nanosleep(1000);
    }
    CHECK(pending_seen, "no spare: preemption not left pending");
    printf("    phase 2: no spare: %llu preemptions put off, monitor asked %llu times\n",
           (unsigned long long)load64(&w->no_spare), (unsigned long long)monitor_asks());
    pthread_create(&spare.thread, NULL, spare_main, NULL);
    WAIT_UNTIL(load64(&w->preemptions) >= SLICE_PREEMPTIONS);
    stop[2] = 1;

    // Phase 3: requested preemptions, one at a time.
    WAIT_UNTIL(phase_is(3));
    for (int i = 0; i < REQUESTED_PREEMPTIONS; i++) {
        uint64_t before = load64(&w->preemptions);
        gt_request_preemption(w);
        WAIT_UNTIL(load64(&w->preemptions) > before);
    }
    uint64_t requested = load64(&w->preemptions) - phase3_preemptions_before;
    stop[3] = 1;

    drive_deferral(4, 0);
    drive_deferral(5, 1);
    WAIT_UNTIL(__atomic_load_n(&worker_done, __ATOMIC_ACQUIRE));
    pthread_join(worker.thread, NULL);
    __atomic_store_n(&spare_retiring, 1, __ATOMIC_RELEASE);
    gt_park_wake(spare.state);
    WAIT_UNTIL(__atomic_load_n(&spare_done, __ATOMIC_ACQUIRE));
    pthread_join(spare.thread, NULL);

    // Everything the threads recorded.
    check_spin(1, "nobody ready");
    check_spin(2, "slice preemptions");
    check_spin(3, "requested preemptions");
    check_spin(4, "critical section");
    check_spin(5, "no-preempt region");
    CHECK(requested == REQUESTED_PREEMPTIONS, "%llu preemptions for %d requests", (unsigned long long)requested,
          REQUESTED_PREEMPTIONS);
    check_deferral(0, "critical section");
    check_deferral(1, "no-preempt region");

    w = &worker_final;
    uint64_t preemptions = w->preemptions, parks = w->parks;
    uint64_t pending_parks = 2;  // gt_park_pending, phases 4 and 5
    CHECK(preemptions >= SLICE_PREEMPTIONS + REQUESTED_PREEMPTIONS, "%llu preemptions", (unsigned long long)preemptions);
    CHECK(green.preemptions == preemptions, "thread counted %llu preemptions, worker %llu",
          (unsigned long long)green.preemptions, (unsigned long long)preemptions);
    CHECK(parks == preemptions + pending_parks, "parks=%llu preemptions=%llu", (unsigned long long)parks,
          (unsigned long long)preemptions);
    CHECK(seen.handoffs == parks, "spare received %llu processors for %llu parks", (unsigned long long)seen.handoffs,
          (unsigned long long)parks);
    CHECK(seen.without_handoff == 0, "%llu processors without handoff_from", (unsigned long long)seen.without_handoff);
    CHECK(seen.wrong_machine == 0 && seen.wrong_current == 0, "handoff_from/current wrong %llu/%llu times",
          (unsigned long long)seen.wrong_machine, (unsigned long long)seen.wrong_current);
    CHECK(seen.not_parked == 0, "the parking Machine was not marked parked %llu times", (unsigned long long)seen.not_parked);
    CHECK(seen.holds_processor == 0, "the parked Machine kept its processor %llu times", (unsigned long long)seen.holds_processor);
    CHECK(seen.unparked_before_resume == 0, "the parked Machine ran on before its processor came back %llu times",
          (unsigned long long)seen.unparked_before_resume);
    CHECK(seen.context_off_stack == 0, "saved context not on the green stack %llu times", (unsigned long long)seen.context_off_stack);
    CHECK(seen.sp_off_stack == 0, "interrupted sp not on the green stack %llu times", (unsigned long long)seen.sp_off_stack);
    // A tick may land between two phases (outside the loop) and park
    // there: at most one per phase boundary after phase 2.
    CHECK(seen.pc_in_loop + 4 >= preemptions && seen.pc_in_loop >= SLICE_PREEMPTIONS,
          "%llu of %llu preemptions interrupted the loop", (unsigned long long)seen.pc_in_loop,
          (unsigned long long)preemptions);
    // run.sh sets this where interruptions can land anywhere (natively, and
    // under qemu -singlestep): the registers were then checked mid-iteration.
    const char *min_points = getenv("PREEMPT_TEST_MIN_POINTS");
    if (min_points) CHECK(point_count >= atoi(min_points), "preemptions landed at only %d distinct instructions of the loop",
                          point_count);
    CHECK(seen.short_slice == 0, "%llu slice preemptions before the slice was used", (unsigned long long)seen.short_slice);
    CHECK(seen.retake_failed == 0, "gt_processor_retake failed %llu times", (unsigned long long)seen.retake_failed);
    CHECK(green.preempt_context == NULL && w->parked == 0, "left parked state behind");
    CHECK(allocator_checks > 0, "the handler never reached its allocator check");
    CHECK(worker_altstack_clean, "the worker's alternate signal stack was written (a handler ran there)");
    printf("    %llu preemptions (%llu interrupting the loop, at %d distinct instructions), %llu parks, %llu hand-offs "
           "to the spare and back, %llu ticks, %llu deferrals; the alternate stack untouched\n",
           (unsigned long long)preemptions, (unsigned long long)seen.pc_in_loop, point_count, (unsigned long long)parks,
           (unsigned long long)seen.handoffs, (unsigned long long)w->ticks, (unsigned long long)w->deferrals);
    gt_preemption_uninstall();
    report_and_exit();
}
