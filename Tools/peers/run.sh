#!/usr/bin/env bash
# Builds and runs GreenThreads' external peer benchmarks (Go goroutines,
# Boost.Context, Boost.Fiber, pthreads) and prints their JSON lines on stdout.
# Messages go to stderr, so `run.sh > peers.jsonl` keeps only the figures.
#
#   run.sh [--quick] [--install]
#
#   --quick    spawn 10000 only and a tenth of the iterations (about 20 s)
#   --install  first apt-get install the toolchain and libraries (as root)
#
# Without --install nothing is installed: a peer whose toolchain or library is
# missing is skipped with a message, and the others still run. Binaries go to
# bin/ (git-ignored) and are rebuilt only when their source or build command
# changes. Exit status: 0 when every peer that could be built ran, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$here/bin"
# wrk drives the HTTP servers of http-bench.sh (issue 13); curl checks they are up.
packages=(golang-go libboost-context-dev libboost-fiber-dev wrk curl)

quick=()
install=false
for arg in "$@"; do
    case "$arg" in
        --quick) quick=(-quick) ;;
        --full) quick=() ;;
        --install) install=true ;;
        -h | --help)
            sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "run.sh: unknown option $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

say() { echo "run.sh: $*" >&2; }

install_packages() {
    if [[ $(id -u) -ne 0 ]]; then
        say "--install needs root (apt-get install -y ${packages[*]})"
        exit 1
    fi
    # A fresh machine has no package lists yet: update only when a package
    # has no candidate, so a second --install does not hit the network.
    local pkg
    for pkg in "${packages[@]}"; do
        if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then
            apt-get update >&2
            break
        fi
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}" >&2
}

# Rebuilds $1 when it is missing, older than source $2, or was built by a
# different command than $3 (recorded beside it), e.g. once Boost appears.
needs_build() {
    local binary="$1" source="$2" command="$3"
    [[ ! -x "$binary" || "$source" -nt "$binary" ]] && return 0
    [[ "$(cat "$binary.cmd" 2>/dev/null)" != "$command" ]]
}

build_go() {
    if ! command -v go >/dev/null; then
        say "go not on PATH: skipping the go peer (apt-get install golang-go, or run.sh --install)"
        return 1
    fi
    local command="go build -o $bin/peers-go ."
    if needs_build "$bin/peers-go" "$here/go/peers.go" "$command"; then
        say "building go peer ($(go version))"
        # Standard library only: no module download, so no network.
        (cd "$here/go" && GOFLAGS=-mod=mod $command) || { say "go build failed"; return 2; }
        echo "$command" > "$bin/peers-go.cmd"
    fi
}

build_cpp() {
    local cxx="${CXX:-g++}"
    if ! command -v "$cxx" >/dev/null; then
        say "$cxx not found: skipping boost-context, boost-fiber and pthread peers"
        return 1
    fi
    local flags=(-O2 -std=c++17 -Wall -Wextra)
    local libs=(-lpthread)
    # The same headers that peers.cpp's __has_include test looks for.
    if printf '#include <boost/fiber/all.hpp>\n#include <boost/context/fiber.hpp>\n' |
        "$cxx" -std=c++17 -x c++ -E - >/dev/null 2>&1; then
        libs=(-lboost_fiber -lboost_context -lpthread)
    else
        say "Boost.Context/Boost.Fiber headers absent: skipping boost-context and boost-fiber," \
            "building pthread only (apt-get install libboost-context-dev libboost-fiber-dev, or run.sh --install)"
        flags+=(-DPEERS_WITH_BOOST=0)
    fi
    local command="$cxx ${flags[*]} -o $bin/peers-cpp $here/cpp/peers.cpp ${libs[*]}"
    if needs_build "$bin/peers-cpp" "$here/cpp/peers.cpp" "$command"; then
        say "building C++ peers ($("$cxx" --version | head -n1))"
        $command || { say "C++ build failed (are the Boost libraries installed, not only the headers?)"; return 2; }
        echo "$command" > "$bin/peers-cpp.cmd"
    fi
}

$install && install_packages
mkdir -p "$bin"

status=0
built=()
# A skipped peer (return 1) is not a failure; a broken build (2) is.
if build_go; then built+=("$bin/peers-go"); elif [[ $? -eq 2 ]]; then status=1; fi
if build_cpp; then built+=("$bin/peers-cpp"); elif [[ $? -eq 2 ]]; then status=1; fi

for program in "${built[@]}"; do
    say "running $(basename "$program") ${quick[*]:-(full)}"
    "$program" "${quick[@]}" || { say "$(basename "$program") failed"; status=1; }
done
exit "$status"
