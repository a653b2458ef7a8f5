// test.c: standalone aarch64 test of gt_switch / gt_trampoline / gt_context_make
// (GreenThreads, switch_arm64_aapcs_elf_gas.S). Runs under qemu-aarch64.
#define _GNU_SOURCE
#include "gt_core.h"
#include "gt_frame.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <fenv.h>
#include <signal.h>
#include <unistd.h>
#include <execinfo.h>
#include <sys/mman.h>
#include <sys/wait.h>

#if !defined(__aarch64__)
#error "aarch64 only"
#endif

extern void gt_trampoline(void);

static int failures, passes;
#define CHECK(cond, ...) do { if (cond) passes++; else { failures++; \
    printf("  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); printf(__VA_ARGS__); printf("\n"); } } while (0)

static inline uint64_t read_sp(void) { uint64_t v; __asm__ volatile("mov %0, sp" : "=r"(v)); return v; }
static inline uint64_t read_fpcr(void) { uint64_t v; __asm__ volatile("mrs %0, fpcr" : "=r"(v)); return v; }
static inline void write_fpcr(uint64_t v) { __asm__ volatile("msr fpcr, %0" :: "r"(v)); }
// Strips a pointer-authentication code (saved LRs are signed under pac-ret); a NOP without PAuth.
static inline void *strip_pac(void *p) {
    register void *x30 __asm__("x30") = p;
    __asm__("hint #7" : "+r"(x30));   // xpaclri
    return x30;
}

// ---------------------------------------------------------------------------
// regcheck_switch(save, load, seed): written entirely in assembly so the
// compiler cannot keep anything for us. Saves its own caller's callee-saved
// registers, loads x19..x28 with seed+19..seed+28 and d8..d15 with
// seed+108..seed+115, sets x29 = sp, calls gt_switch(save, load), and on
// return compares every one of them (and sp) with what it loaded.
// Returns a bit mask of the registers that changed: bits 0-9 x19-x28,
// bits 10-17 d8-d15, bit 18 x29, bit 19 sp. 0 means all intact.
__asm__(
"    .text\n"
"    .globl regcheck_switch\n"
"    .type regcheck_switch,%function\n"
"    .p2align 4\n"
"regcheck_switch:\n"
"    stp  x29, x30, [sp, #-176]!\n"
"    stp  x19, x20, [sp, #16]\n"
"    stp  x21, x22, [sp, #32]\n"
"    stp  x23, x24, [sp, #48]\n"
"    stp  x25, x26, [sp, #64]\n"
"    stp  x27, x28, [sp, #80]\n"
"    stp  d8,  d9,  [sp, #96]\n"
"    stp  d10, d11, [sp, #112]\n"
"    stp  d12, d13, [sp, #128]\n"
"    stp  d14, d15, [sp, #144]\n"
"    mov  x9, sp\n"
"    stp  x2,  x9,  [sp, #160]\n"       // seed and our sp, kept in memory
"    add  x19, x2, #19\n"
"    add  x20, x2, #20\n"
"    add  x21, x2, #21\n"
"    add  x22, x2, #22\n"
"    add  x23, x2, #23\n"
"    add  x24, x2, #24\n"
"    add  x25, x2, #25\n"
"    add  x26, x2, #26\n"
"    add  x27, x2, #27\n"
"    add  x28, x2, #28\n"
"    add  x9, x2, #108\n  fmov d8,  x9\n"
"    add  x9, x2, #109\n  fmov d9,  x9\n"
"    add  x9, x2, #110\n  fmov d10, x9\n"
"    add  x9, x2, #111\n  fmov d11, x9\n"
"    add  x9, x2, #112\n  fmov d12, x9\n"
"    add  x9, x2, #113\n  fmov d13, x9\n"
"    add  x9, x2, #114\n  fmov d14, x9\n"
"    add  x9, x2, #115\n  fmov d15, x9\n"
"    mov  x29, sp\n"
// clobber every caller-saved register we can, to show they need not survive
"    mov  x3, #-1\n  mov x4, #-1\n  mov x5, #-1\n  mov x6, #-1\n  mov x7, #-1\n"
"    mov  x8, #-1\n  mov x10, #-1\n  mov x11, #-1\n  mov x12, #-1\n  mov x16, #-1\n  mov x17, #-1\n"
"    movi v16.2d, #0xffffffffffffffff\n  movi v31.2d, #0xffffffffffffffff\n"
"    bl   gt_switch\n"
"    ldp  x2, x10, [sp, #160]\n"        // seed, expected sp
"    mov  x0, #0\n"
"    mov  x11, #1\n"
#define CHK_X(reg, off, bit) \
"    add  x9, x2, #" #off "\n  cmp " #reg ", x9\n  lsl x12, x11, #" #bit "\n  csel x12, xzr, x12, eq\n  orr x0, x0, x12\n"
CHK_X(x19, 19, 0) CHK_X(x20, 20, 1) CHK_X(x21, 21, 2) CHK_X(x22, 22, 3) CHK_X(x23, 23, 4)
CHK_X(x24, 24, 5) CHK_X(x25, 25, 6) CHK_X(x26, 26, 7) CHK_X(x27, 27, 8) CHK_X(x28, 28, 9)
#define CHK_D(reg, off, bit) \
"    add  x9, x2, #" #off "\n  fmov x13, " #reg "\n  cmp x13, x9\n  lsl x12, x11, #" #bit "\n  csel x12, xzr, x12, eq\n  orr x0, x0, x12\n"
CHK_D(d8, 108, 10) CHK_D(d9, 109, 11) CHK_D(d10, 110, 12) CHK_D(d11, 111, 13)
CHK_D(d12, 112, 14) CHK_D(d13, 113, 15) CHK_D(d14, 114, 16) CHK_D(d15, 115, 17)
"    mov  x9, sp\n"
"    cmp  x29, x10\n  lsl x12, x11, #18\n  csel x12, xzr, x12, eq\n  orr x0, x0, x12\n"
"    cmp  x9,  x10\n  lsl x12, x11, #19\n  csel x12, xzr, x12, eq\n  orr x0, x0, x12\n"
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
"    .size regcheck_switch, .-regcheck_switch\n"
);
uint64_t regcheck_switch(void **save, void *load, uint64_t seed);

// ---------------------------------------------------------------------------
// Stacks: 64 KiB usable, with a PROT_NONE guard page below.
#define STACK_SIZE (64 * 1024)
#define PAGE 4096
static void *stack_alloc(void **low) {
    unsigned char *m = mmap(NULL, STACK_SIZE + PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("mmap"); exit(2); }
    mprotect(m, PAGE, PROT_NONE);
    if (low) *low = m + PAGE;
    return m + PAGE + STACK_SIZE;   // top (16-aligned: page aligned)
}

// ---------------------------------------------------------------------------
// (a) entry, argument, alignment, root frame record, initial FPCR.
static void *main_sp;
static struct {
    void *arg; uint64_t sp; uintptr_t fp; void *prev_fp; void *lr;
    uint64_t fpcr; int round; int ran;
} a_seen;

__attribute__((noinline)) static void entry_a(void *arg) {
    a_seen.ran = 1;
    a_seen.arg = arg;
    a_seen.sp = read_sp();
    a_seen.fp = (uintptr_t)__builtin_frame_address(0);
    a_seen.prev_fp = ((void **)a_seen.fp)[0];   // saved x29 of the trampoline
    a_seen.lr = strip_pac(((void **)a_seen.fp)[1]); // return address into gt_trampoline
    a_seen.fpcr = read_fpcr();
    a_seen.round = fegetround();
    void *dummy;
    gt_switch(&dummy, main_sp);
    abort();
}

static void test_a(void) {
    printf("(a) new context: entry, argument, alignment\n");
    void *low;
    unsigned char *top = stack_alloc(&low);
    // Dirty the stack so the zeroing in gt_context_make is observable.
    memset(low, 0xA5, STACK_SIZE);
    // Try several misaligned stack_top values; gt_context_make rounds down.
    for (int mis = 0; mis < 16; mis += 8) {
        memset(&a_seen, 0, sizeof a_seen);
        void *sp = gt_context_make(top - mis, entry_a, (void *)0x1234567890abcdefULL);
        uintptr_t rtop = ((uintptr_t)(top - mis) & ~(uintptr_t)15) - GT_ROOT_PAD;
        CHECK((uintptr_t)sp == rtop - GT_FRAME_SIZE, "sp=%p", sp);
        CHECK(gt_switch_frame_size() == 176, "%zu", gt_switch_frame_size());
        // main runs with a non-default rounding mode and FZ: the new thread must not inherit them.
        fesetround(FE_UPWARD);
        uint64_t main_fpcr = read_fpcr();
        write_fpcr(main_fpcr | (1u << 24));
        gt_switch(&main_sp, sp);
        uint64_t after = read_fpcr();
        CHECK(after == (main_fpcr | (1u << 24)), "main FPCR after=%#llx", (unsigned long long)after);
        write_fpcr(main_fpcr);
        CHECK(fegetround() == FE_UPWARD, "main round=%d", fegetround());
        fesetround(FE_TONEAREST);
        CHECK(a_seen.ran, "entry did not run");
        CHECK(a_seen.arg == (void *)0x1234567890abcdefULL, "arg=%p", a_seen.arg);
        CHECK(a_seen.sp % 16 == 0, "sp=%#llx", (unsigned long long)a_seen.sp);
        CHECK(a_seen.fp % 16 == 0, "fp=%#lx", (unsigned long)a_seen.fp);
        CHECK(a_seen.sp < rtop && a_seen.sp > rtop - 256, "sp=%#llx rtop=%#lx", (unsigned long long)a_seen.sp, (unsigned long)rtop);
        CHECK(a_seen.prev_fp == NULL, "root fp=%p", a_seen.prev_fp);
        CHECK((uintptr_t)a_seen.lr > (uintptr_t)gt_trampoline && (uintptr_t)a_seen.lr < (uintptr_t)gt_trampoline + 32,
              "lr=%p trampoline=%p", a_seen.lr, (void *)gt_trampoline);
        CHECK(a_seen.fpcr == 0, "initial FPCR=%#llx", (unsigned long long)a_seen.fpcr);
        CHECK(a_seen.round == FE_TONEAREST, "initial round=%d", a_seen.round);
        CHECK(((uint64_t *)rtop)[0] == 0 && ((uint64_t *)rtop)[1] == 0, "root pad not zero");
        printf("    stack_top-%d: arg=%p entry sp=%#llx (mod16=%llu) fp=%#lx caller fp=%p lr=gt_trampoline+%ld fpcr=%#llx round=%s\n",
               mis, a_seen.arg, (unsigned long long)a_seen.sp, (unsigned long long)(a_seen.sp % 16),
               (unsigned long)a_seen.fp, a_seen.prev_fp, (long)((uintptr_t)a_seen.lr - (uintptr_t)gt_trampoline),
               (unsigned long long)a_seen.fpcr, a_seen.round == FE_TONEAREST ? "nearest" : "OTHER");
    }
}

// ---------------------------------------------------------------------------
// (b)+(c) ping-pong main -> G1 -> G2 -> main, with register and FPCR checks.
#define ROUNDS 5000
enum { CTX_MAIN, CTX_G1, CTX_G2, NCTX };
static void *ctx_sp[NCTX];
static const int ctx_round[NCTX] = { FE_TONEAREST, FE_UPWARD, FE_DOWNWARD };
static const uint64_t ctx_fz[NCTX] = { 0, 1u << 24, 0 };   // G1 also runs with flush-to-zero
static const char *ctx_name[NCTX] = { "main", "G1", "G2" };
static uint64_t reg_errors[NCTX], fp_errors[NCTX], fz_errors[NCTX], arith_errors[NCTX], switches[NCTX];

// 1/3 rounded per mode: the result's low bit tells up vs down.
static double third(void) { volatile double one = 1.0, three = 3.0; return one / three; }
static double third_expected[NCTX];

static void check_fp(int me) {
    if (fegetround() != ctx_round[me]) fp_errors[me]++;
    if ((read_fpcr() & (1u << 24)) != ctx_fz[me]) fz_errors[me]++;
    double t = third();
    if (memcmp(&t, &third_expected[me], sizeof t) != 0) arith_errors[me]++;
}

static void setup_fp(int me) {
    fesetround(ctx_round[me]);
    write_fpcr((read_fpcr() & ~(uint64_t)(1u << 24)) | ctx_fz[me]);
}

static void ping(int me, int rounds) {
    int next = (me + 1) % NCTX;
    for (int i = 0; i < rounds; i++) {
        uint64_t seed = ((uint64_t)(me + 1) << 56) | ((uint64_t)i << 16);
        uint64_t bad = regcheck_switch(&ctx_sp[me], ctx_sp[next], seed);
        switches[me]++;
        if (bad) {
            if (reg_errors[me]++ < 3) printf("  %s round %d: registers changed, mask %#llx\n", ctx_name[me], i, (unsigned long long)bad);
        }
        check_fp(me);
        // Do some real FP and calls between switches so the compiler uses d8-d15 too.
        volatile double x = i;
        char buf[32];
        snprintf(buf, sizeof buf, "%.1f", x * 0.5);
    }
}

static void green_entry(void *arg) {
    int me = (int)(intptr_t)arg;
    setup_fp(me);
    ping(me, ROUNDS);
    // Final hand-off around the ring so everyone finishes.
    void *dummy;
    for (;;) gt_switch(&dummy, ctx_sp[(me + 1) % NCTX]);
}

static void test_bc(void) {
    printf("(b)(c) ping-pong main->G1->G2->main x%d, x19-x28/d8-d15/x29/sp + FPCR per context\n", ROUNDS);
    for (int c = 0; c < NCTX; c++) {
        setup_fp(c);
        third_expected[c] = third();
    }
    fesetround(FE_TONEAREST); write_fpcr(read_fpcr() & ~(uint64_t)(1u << 24));
    CHECK(memcmp(&third_expected[1], &third_expected[2], 8) != 0, "rounding mode has no effect (emulator?)");
    ctx_sp[CTX_G1] = gt_context_make(stack_alloc(NULL), green_entry, (void *)(intptr_t)CTX_G1);
    ctx_sp[CTX_G2] = gt_context_make(stack_alloc(NULL), green_entry, (void *)(intptr_t)CTX_G2);
    setup_fp(CTX_MAIN);
    // The first switch into each green thread starts it; the rest resume.
    ping(CTX_MAIN, ROUNDS);
    for (int c = 0; c < NCTX; c++) {
        printf("    %-4s: switches=%llu reg-errors=%llu round-errors=%llu fz-errors=%llu arith-errors=%llu\n",
               ctx_name[c], (unsigned long long)switches[c], (unsigned long long)reg_errors[c],
               (unsigned long long)fp_errors[c], (unsigned long long)fz_errors[c], (unsigned long long)arith_errors[c]);
        CHECK(switches[c] >= ROUNDS - 1, "%s switches=%llu", ctx_name[c], (unsigned long long)switches[c]);
        CHECK(reg_errors[c] == 0, "%s", ctx_name[c]);
        CHECK(fp_errors[c] == 0, "%s", ctx_name[c]);
        CHECK(fz_errors[c] == 0, "%s", ctx_name[c]);
        CHECK(arith_errors[c] == 0, "%s", ctx_name[c]);
    }
}

// ---------------------------------------------------------------------------
// (d) varargs doubles / long double formatting on a green stack, and an unwind.
static char d_buf[4][128];
static int d_bt;
static void fmt_entry(void *arg) {
    (void)arg;
    volatile double a = 3.14159265358979, b = -2.5e-3, c = 1e100;
    volatile long double ld = 1.0L / 3.0L;
    snprintf(d_buf[0], sizeof d_buf[0], "%f %f %.3e", a, b, c);
    snprintf(d_buf[1], sizeof d_buf[1], "%.30Lf", ld);
    snprintf(d_buf[2], sizeof d_buf[2], "%d %f %d %f %d %f %d %f %d %f",
             1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5);
    printf("    on green stack (sp mod 16 = %llu): long double printf: %.20Lf\n",
           (unsigned long long)(read_sp() % 16), ld);
    fflush(stdout);
    void *frames[32];
    d_bt = backtrace(frames, 32);     // libgcc unwinder must stop at gt_trampoline
    void *dummy;
    gt_switch(&dummy, main_sp);
}

static void test_d(void) {
    printf("(d) snprintf/printf of double and long double on a green stack\n");
    void *sp = gt_context_make(stack_alloc(NULL), fmt_entry, NULL);
    gt_switch(&main_sp, sp);
    printf("    \"%s\"\n    \"%s\"\n    \"%s\"\n    backtrace frames=%d\n", d_buf[0], d_buf[1], d_buf[2], d_bt);
    CHECK(strcmp(d_buf[0], "3.141593 -0.002500 1.000e+100") == 0, "%s", d_buf[0]);
    CHECK(strcmp(d_buf[1], "0.333333333333333333333333333333") == 0, "%s", d_buf[1]);
    CHECK(strcmp(d_buf[2], "1 1.500000 2 2.500000 3 3.500000 4 4.500000 5 5.500000") == 0, "%s", d_buf[2]);
    CHECK(d_bt >= 2 && d_bt < 32, "backtrace frames=%d", d_bt);
}

// ---------------------------------------------------------------------------
// (e) an entry that returns hits the trampoline's brk.
static void returning_entry(void *arg) { (void)arg; }

static void test_e(void) {
    printf("(e) entry returns -> trampoline traps\n");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        void *sp = gt_context_make(stack_alloc(NULL), returning_entry, NULL);
        gt_switch(&main_sp, sp);
        _exit(0);   // must not get here
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) printf("    child killed by signal %d (%s)\n", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else printf("    child exited with status %d\n", WEXITSTATUS(st));
    CHECK(WIFSIGNALED(st) && (WTERMSIG(st) == SIGTRAP || WTERMSIG(st) == SIGILL), "status %#x", st);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_a();
    test_bc();
    test_d();
    test_e();
    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
