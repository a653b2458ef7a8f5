#!/usr/bin/env bash
# Tests the aarch64 context switch (switch_arm64_aapcs_elf_gas.S, gt_frame.h,
# context.c) on an x86-64 machine: cross-compiles switch_test.c and runs it
# under qemu-user, in several builds (gcc -O2/-O0/static, return-address
# signing, clang), then checks that deliberately broken copies of the switch
# ("mutants") are each caught. Not part of `swift test`: it needs
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
# and skips (exit 0, with a message) when they are missing.
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

run() {  # name, qemu options, build flags...
    local name=$1 qopts=$2; shift 2
    $CC "$@" switch_test.c $S/context.c $ASM -o "$OUT/$name" -lm || { echo "$name: build failed"; fail=1; return; }
    local result
    result=$(timeout 120 $QEMU $qopts "$OUT/$name" 2>&1 | grep -v 'uncaught target signal 5' | tail -1)
    echo "$name: $result"
    [[ $result == *" 0 failed"* ]] || fail=1
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

[ $fail = 0 ] && echo "aarch64 switch: all checks passed" || echo "aarch64 switch: FAILURES"
exit $fail
