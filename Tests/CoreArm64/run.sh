#!/usr/bin/env bash
# Tests the aarch64 core on an x86-64 machine, under qemu-user. Not part of
# `swift test`: it needs
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
# and skips (exit 0, with a message) when they are missing.
#
# 1. The context switch (switch_arm64_aapcs_elf_gas.S, gt_frame.h,
#    context.c): switch_test.c in several builds (gcc -O2/-O0/static, return-
#    address signing), then deliberately broken copies of the switch
#    ("mutants"), each of which it must catch.
# 2. The preemption path: preempt_test.c, built from the core's own
#    preempt.c, park.c, state.c, sys.c, context.c and switch, with a worker
#    and a spare OS thread attached as Machines. A call-free loop holding
#    values in x2-x28 and v0-v30 is preempted by the real CPU-time tick and
#    by gt_request_preemption; the SIGVTALRM handler parks the worker on the
#    green stack and hands its processor to the spare, which hands it back
#    (the scheduler's part of park.c's protocol, done in Swift by
#    Machine.swift and Scheduler.swift, is played by the spare). Checked:
#    every register, FPCR and errno after 30 preemptions, the park and
#    preemption counts, the no-spare path, and deferral in critical sections
#    and no-preempt regions (gt_exit_critical / gt_park_pending). Run first
#    natively on x86-64 (validating the test itself), then for aarch64 in
#    -O2/-O0/pac-ret/-singlestep builds, then against mutants of the handler,
#    park and critical-section code. What qemu-user cannot show: signal
#    frames as a real aarch64 kernel builds them (qemu writes its own),
#    interruption at any instruction (only between translated blocks,
#    unless -singlestep), weak memory ordering (the guest runs on x86's
#    stronger order) and real timing. The Swift layer is not run on aarch64.
# 3. The rest of the C core builds warning-free for aarch64.
set -u
cd "$(dirname "$0")"
S=../../Sources/CGreenCore
ASM=$S/switch_arm64_aapcs_elf_gas.S
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
QEMU="qemu-aarch64 -L /usr/aarch64-linux-gnu"
CC="aarch64-linux-gnu-gcc -I$S/include -I$S -g -Wall -Wextra -fno-omit-frame-pointer -frounding-math"
fail=0

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    echo "skipped: aarch64 cross compiler or qemu-user missing"
    exit 0
fi

check_run() {  # name, command...: the test's last line must report 0 failed
    local name=$1; shift
    local result
    result=$("$@" 2>&1 | grep -v 'uncaught target signal 5' | tail -1)
    echo "$name: $result"
    [[ $result == *" 0 failed"* ]] || fail=1
}

run() {  # name, qemu options, build flags...
    local name=$1 qopts=$2; shift 2
    $CC "$@" switch_test.c $S/context.c $ASM -o "$OUT/$name" -lm || { echo "$name: build failed"; fail=1; return; }
    check_run "$name" timeout 120 $QEMU $qopts "$OUT/$name"
}

run gcc-O2 "" -O2
run gcc-O0 "" -O0
run gcc-static "" -O2 -static
run gcc-pac-ret "-cpu max" -O2 -mbranch-protection=pac-ret+leaf

# Each mutant breaks the switch in one way; the test must catch every one.
mutant() {  # name, sed expression
    local m="$OUT/$1.S"
    sed "$2" $ASM > "$m"
    cmp -s "$m" $ASM && { echo "mutant $1: did not apply"; fail=1; return; }
    $CC -O2 switch_test.c $S/context.c "$m" -o "$OUT/$1" -lm || { fail=1; return; }
    if timeout 60 $QEMU "$OUT/$1" > "$OUT/$1.log" 2>&1; then
        echo "mutant $1: NOT caught"; fail=1
    else
        echo "mutant $1: caught"
    fi
}
mutant no_fpcr_restore  '/msr     fpcr, x9/d'
mutant d14_wrong_slot   's/ldp     d14, d15, \[sp, #GT_A64_D14\]/ldp     d14, d15, [sp, #GT_A64_D12]/'
mutant d8_not_saved     's/stp     d8,  d9,  \[sp, #GT_A64_D8\]/str     d9, [sp, #GT_A64_D8+8]/'
mutant x28_not_restored 's/ldp     x27, x28, \[sp, #GT_A64_X27\]/ldr     x27, [sp, #GT_A64_X27]/'
mutant x19_x20_swapped  's/ldp     x19, x20, \[sp, #GT_A64_X19\]/ldp     x20, x19, [sp, #GT_A64_X19]/'
mutant misaligned_entry 's/^    blr     x19/    sub     sp, sp, #8\n    blr     x19/'

# The preemption path (preempt_test.c). fault.c includes libunwind.h (no
# aarch64 headers in the packages above), so its two alternate-stack
# functions, which use none of it, are cut out of it into altstack.c.
{ echo '#include "gt_core.h"'; echo '#include <sys/mman.h>'; sed -n '/^#define GT_ALTSTACK_SIZE/,$p' $S/fault.c; } > "$OUT/altstack.c"
grep -q '^int gt_altstack_setup' "$OUT/altstack.c" || { echo "altstack.c: gt_altstack_setup not found in fault.c"; fail=1; }
PREEMPT_SRC="preempt_test.c $S/preempt.c $S/park.c $S/state.c $S/sys.c $S/context.c $OUT/altstack.c"
PFLAGS="-std=gnu11 -D_GNU_SOURCE -Werror"

# Natively first: the test itself is right on x86-64 (real kernel signal frames).
if [ "$(uname -m)" = x86_64 ] && command -v gcc >/dev/null; then
    HOSTCC="gcc -I$S/include -I$S -g -Wall -Wextra -fno-omit-frame-pointer"
    for o in -O2 -O0; do
        $HOSTCC $PFLAGS $o $PREEMPT_SRC $S/switch_x86_64_sysv_elf_gas.S -o "$OUT/host-preempt$o" -lpthread ||
            { echo "preempt x86-64 $o: build failed"; fail=1; continue; }
        PREEMPT_TEST_MIN_POINTS=5 check_run "preempt x86-64 native $o" timeout 60 "$OUT/host-preempt$o"
    done
fi

run_preempt() {  # name, qemu options, build flags...
    local name=$1 qopts=$2; shift 2
    $CC $PFLAGS "$@" $PREEMPT_SRC $ASM -o "$OUT/preempt-$name" -lpthread || { echo "preempt $name: build failed"; fail=1; return; }
    check_run "preempt $name" timeout 120 $QEMU $qopts "$OUT/preempt-$name"
}

run_preempt gcc-O2 "" -O2
run_preempt gcc-O0 "" -O0
run_preempt gcc-pac-ret "-cpu max" -O2 -mbranch-protection=pac-ret+leaf
# qemu delivers signals only between translated blocks: without
# -singlestep the loop is always interrupted at its first instruction
# (preempt_test.c); with it, the test asks for 5 distinct points at least.
PREEMPT_TEST_MIN_POINTS=5 run_preempt gcc-O2-singlestep "-singlestep" -O2

# Each mutant breaks the handler, the park path or the critical section
# in one way; the preemption test must catch every one (its first
# failure is shown).
mutant_preempt() {  # name, core file, sed expression
    local name=$1 file=$2 m="$OUT/$1-$(basename "$2")"
    sed "$3" "$file" > "$m"
    cmp -s "$m" "$file" && { echo "mutant $name: did not apply"; fail=1; return; }
    local src=${PREEMPT_SRC/$file/$m}
    $CC $PFLAGS -O2 $src $ASM -o "$OUT/$name" -lpthread || { echo "mutant $name: build failed"; fail=1; return; }
    if timeout 60 $QEMU "$OUT/$name" > "$OUT/$name.log" 2>&1; then
        echo "mutant $name: NOT caught"; fail=1
    else
        echo "mutant $name: caught ($(grep -m1 -o 'FAIL.*' "$OUT/$name.log" | cut -c1-110))"
    fi
}
mutant_preempt errno_not_restored     $S/preempt.c 's/^    errno = saved_errno;$/    (void)saved_errno;/'
mutant_preempt critical_not_deferring $S/preempt.c 's/if (w->critical > 0 || t->no_preempt > 0 ||/if (t->no_preempt > 0 ||/'
mutant_preempt handler_on_altstack    $S/preempt.c 's/sa.sa_flags = SA_SIGINFO | SA_RESTART;/sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;/'
mutant_preempt handler_bumps_x23      $S/preempt.c 's/^out:$/out:\n    ((ucontext_t *)context)->uc_mcontext.regs[23]++;/'
mutant_preempt park_skips_wait        $S/park.c    's/if (__atomic_load_n(&w->processor, __ATOMIC_ACQUIRE) != NULL) break;/break;/'
mutant_preempt exit_ignores_pending   $S/state.c   's/if (--w->critical == 0) return gt_should_park(w);/--w->critical;/'

# The rest of the C core (the preemption handler, the park and hand-off of
# Machines, system calls, I/O) must build warning-free for aarch64 in debug
# and release flavours. Files that include libunwind.h are left out: the
# cross libunwind headers are not part of the packages above.
for f in $S/*.c; do
    grep -q '<libunwind.h>' "$f" && continue
    for flags in "-O2" "-O0 -DDEBUG=1"; do
        $CC -std=gnu11 -D_GNU_SOURCE -Werror $flags -c "$f" -o "$OUT/core.o" ||
            { echo "core $(basename "$f") $flags: build failed"; fail=1; }
    done
done
echo "core C files for aarch64: built"

[ $fail = 0 ] && echo "aarch64 core: all checks passed" || echo "aarch64 core: FAILURES"
exit $fail
