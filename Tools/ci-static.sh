#!/usr/bin/env bash
# Builds the test host with --static-swift-stdlib (how Swift servers are
# usually shipped on Linux: the runtime then lives in the executable) and
# runs the preemption and OS-thread-lock suites against it. The first
# preemption design aborted at start in such builds ("cannot find the Swift
# runtime's swift_once") and treated the runtime's code as program code.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --static-swift-stdlib --product gt-test-host --scratch-path .build-static
host="$(swift build --static-swift-stdlib --scratch-path .build-static --show-bin-path)/gt-test-host"
# The runtime must really be inside: no libswiftCore among its libraries.
if ldd "$host" | grep -q libswiftCore; then
    echo "ci-static: $host links libswiftCore dynamically" >&2
    exit 1
fi
# Every preemption and OS-thread-lock test but the two that measure shares
# and counts (they run once, in the full suite).
GT_TEST_HOST="$host" swift test --filter 'ForeignLockTests|PreemptionTests/(callFree|errno|exclusivity|lazyGlobal|threadLivingInLibc|noSpurious|floatingPoint|wokenHigh|withoutPreemption|hostThat|stray)'
