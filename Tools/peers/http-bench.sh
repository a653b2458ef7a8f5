#!/usr/bin/env bash
# The I/O benchmark (issue 13): wrk against three thread-per-connection or
# event-loop HTTP/1.1 servers with the same routes, one after another on
# this machine, in one run:
#   gt-http               GreenThreads, thread per connection (Tools/examples/gt-http)
#   nio-http --heavy loop SwiftNIO, heavy work on the event loop (Tools/peers/nio)
#   nio-http --heavy pool SwiftNIO, heavy work on an NIOThreadPool
#   go-http               Go net/http (Tools/peers/go/http)
# For each: 32 connections on /quick alone; then 32 on /quick while 8 more
# keep /heavy (10 ms of CPU per request) busy. Prints a markdown table of
# the quick route's requests/s and p50/p99 latency.
#
#   http-bench.sh [--duration 5] [--skip-build] [--only gt-http|nio-loop|nio-pool|go-http]
#
# Needs wrk and go (run.sh --install); builds gt-http (release) in the main
# package and nio-http in Tools/peers/nio (its own package: the main one
# never builds NIO). A server that cannot be built is skipped with a message.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$here/bin"
duration=5
build=true
only=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) duration="$2"; shift ;;
        --skip-build) build=false ;;
        --only) only="$2"; shift ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "http-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
say() { echo "http-bench: $*" >&2; }
command -v wrk >/dev/null || { say "wrk not found (apt-get install wrk, or run.sh --install)"; exit 1; }
mkdir -p "$bin"

if $build; then
    (cd "$root" && swift build -c release --product gt-http >&2) || say "gt-http build failed"
    (cd "$here/nio" && swift build -c release >&2) || say "nio-http build failed (is swift-nio reachable?)"
    if command -v go >/dev/null; then
        (cd "$here/go" && go build -o "$bin/go-http" ./http) || say "go-http build failed"
    fi
fi
gt="$root/.build/release/gt-http"
nio="$here/nio/.build/release/nio-http"
gohttp="$bin/go-http"

# "requests/s p50 p99" of one wrk --latency report on stdin (latencies in ms).
summarize() {
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v
        }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

# bench NAME PORT COMMAND...: starts the server, runs both phases, stops it.
bench() {
    local name="$1" port="$2"
    shift 2
    [[ -x "$1" ]] || { say "$name: $1 missing, skipped"; return; }
    "$@" --port "$port" >&2 &
    local pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/quick" 2>/dev/null && break
        sleep 0.1
    done
    wrk -t2 -c32 -d1s "http://127.0.0.1:$port/quick" >/dev/null 2>&1  # warm-up
    local alone beside
    alone=$(wrk -t2 -c32 -d"${duration}s" --latency "http://127.0.0.1:$port/quick" | summarize)
    wrk -t1 -c8 -d"$((duration + 2))s" "http://127.0.0.1:$port/heavy" > "$bin/heavy-$name.txt" 2>&1 &
    local heavy=$!
    sleep 1
    beside=$(wrk -t2 -c32 -d"${duration}s" --latency "http://127.0.0.1:$port/quick" | summarize)
    wait "$heavy"
    local heavyRate
    heavyRate=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$bin/heavy-$name.txt")
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    read -r a_rps a_p50 a_p99 <<< "$alone"
    read -r b_rps b_p50 b_p99 <<< "$beside"
    printf '| %s | %s req/s, p50 %s ms, p99 %s ms | %s req/s, p50 %s ms, p99 %s ms | %s |\n' \
        "$name" "$a_rps" "$a_p50" "$a_p99" "$b_rps" "$b_p50" "$b_p99" "$heavyRate"
}

command -v curl >/dev/null || { say "curl not found"; exit 1; }
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "wrk: 32 connections on /quick for ${duration}s; beside: plus 8 connections on /heavy (10 ms CPU each)"
echo
echo "| server | quick route alone | quick route beside the heavy route | heavy req/s |"
echo "|---|---|---|---|"
want() { [[ -z "$only" || "$only" == "$1" ]]; }
want gt-http && bench gt-http 8080 "$gt"
want nio-loop && bench "nio-http (heavy on the event loop)" 8081 "$nio" --heavy loop
want nio-pool && bench "nio-http (heavy on NIOThreadPool)" 8083 "$nio" --heavy pool
want go-http && bench go-http 8082 "$gohttp"
