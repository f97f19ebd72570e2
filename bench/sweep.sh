#!/usr/bin/env bash
# Sweeps how the load is generated: runs named shapes of echo and fanout
# (each a set of gateway-bench flags) against the gateway and the baseline,
# alternating them, and prints one table per shape of gateway/baseline
# ratios (gateway-bench report). The question it answers: on which
# property of the load generator does the gateway's margin depend?
#
#   bench/sweep.sh [--rounds N] [--duration SECS] [--warmup SECS]
#                  [--shapes "f-w16 f-w16-b1 e-frame ..."] [--no-build]
#                  [--out DIR] [--pinned]
#
# Unpinned by default, with the servers at as many workers as CPUs and the
# load generator on the same cores: the configuration an independent load
# generator found the margin gone in. --pinned puts the server on CPU 0
# with one worker and the load generator on CPU 1 with one thread, as
# run.sh's pinned configuration.
# Each server's system calls are counted over the whole case with
# `perf stat` tracepoints where perf can (root, or perf_event_paranoid
# low enough): send and receive calls per 1000 units of work are what the
# load's shape changes most, and unlike CPU time they do not depend on
# what else runs on the machine. They are added to each result line under
# results.syscalls_per_1000 (fanout: per delivery over the whole run;
# echo: per message, the count estimated as the measured rate times the
# warm-up and the measured window).
# Shapes (the name is the result line's variant):
#   f-w32        fanout, window 32, up to 16 publishes per write (the matrix)
#   f-w16, f-w4  the same with a window of 16 and 4
#   f-w16-b1     window 16, one publish per write
#   f-w16-b4     window 16, up to 4 publishes per write
#   f-w16-frame  window 16, up to 16 publishes, one write each, back to back
#   f-w16-spread window 16, up to 16 per write, yielding after each write
#   f-w16-b1-spread   one publish per write, yielding after each
#   f-w16-t1, f-w16-t4  the load generator with 1 and 4 threads
#   f-w16-rb1k   each client reads at most 1 KiB at a time
#   f-w16-pubfirst    publishers connect before subscribers
#   e            echo, 100 connections x 16 in flight (the matrix)
#   e-frame      echo, one write per ping
#   e-spread     echo, yielding after each write
#   e-frame-spread    both
#   e-t1, e-t4   the load generator with 1 and 4 threads
#   e-rb1k       each client reads at most 1 KiB at a time
#   e-d4         echo, 4 in flight per connection
# GATEWAY_BIN and BASELINE_BIN replace the two servers' binaries; with
# OLD_GATEWAY_BIN set, an earlier gateway build runs in every round too,
# labelled gateway-old (in the result lines, not in the table), for a
# before/after of a gateway change beside the baseline in one run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. bench/lib.sh

SHAPES="f-w32 f-w16 f-w4 f-w16-b1 f-w16-b4 f-w16-frame f-w16-spread f-w16-b1-spread f-w16-t1 f-w16-t4 f-w16-rb1k f-w16-pubfirst e e-frame e-spread e-frame-spread e-t1 e-t4 e-rb1k e-d4"
PINNED=0
while [ $# -gt 0 ]; do
    common_option "$1" "${2:-}"
    if [ "$TAKEN" = 0 ]; then
        case "$1" in
            --shapes) SHAPES=$2; TAKEN=2 ;;
            --pinned) PINNED=1; TAKEN=1 ;;
            -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
            *) echo "sweep.sh: unknown option $1" >&2; exit 2 ;;
        esac
    fi
    shift "$TAKEN"
done

# shape NAME: sets SCEN and ARGS (global flags first, then the scenario's).
shape() {
    local f="fanout --subscribers 1000 --publishers 4"
    local e="echo --connections 100 --depth 16 --payload 64"
    case "$1" in
        f-w32) ARGS="$f --window 32" ;;
        f-w16) ARGS="$f --window 16" ;;
        f-w4) ARGS="$f --window 4" ;;
        f-w16-b1) ARGS="$f --window 16 --batch 1" ;;
        f-w16-b4) ARGS="$f --window 16 --batch 4" ;;
        f-w16-frame) ARGS="$f --window 16 --write-split frame" ;;
        f-w16-spread) ARGS="$f --window 16 --spread" ;;
        f-w16-b1-spread) ARGS="$f --window 16 --batch 1 --spread" ;;
        f-w16-t1) ARGS="--threads 1 $f --window 16" ;;
        f-w16-t4) ARGS="--threads 4 $f --window 16" ;;
        f-w16-rb1k) ARGS="--read-buffer 1024 $f --window 16" ;;
        f-w16-pubfirst) ARGS="$f --window 16 --connect-order publishers-first" ;;
        e) ARGS="$e" ;;
        e-frame) ARGS="$e --write-split frame" ;;
        e-spread) ARGS="$e --spread" ;;
        e-frame-spread) ARGS="$e --write-split frame --spread" ;;
        e-t1) ARGS="--threads 1 $e" ;;
        e-t4) ARGS="--threads 4 $e" ;;
        e-rb1k) ARGS="--read-buffer 1024 $e" ;;
        e-d4) ARGS="echo --connections 100 --depth 4 --payload 64" ;;
        *) echo "sweep.sh: unknown shape $1" >&2; exit 2 ;;
    esac
    case "$1" in f-*) SCEN=fanout ;; *) SCEN=echo ;; esac
}
for s in $SHAPES; do shape "$s"; done

if [ "$BUILD" = 1 ]; then
    cargo build --release -p gateway -p gateway-bench --bins
fi
GATEWAY_BIN=${GATEWAY_BIN:-target/release/gateway}
BASELINE_BIN=${BASELINE_BIN:-target/release/gateway-baseline}
BENCH_BIN=target/release/gateway-bench
OUT=${OUT:-target/bench/sweep-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
CONFIG=default
WORKERS=$(nproc)
PIN_SERVER=(); PIN_LOAD=()
if [ "$PINNED" = 1 ]; then
    CONFIG=pinned; WORKERS=1
    PIN_SERVER=(taskset -c 0); PIN_LOAD=(taskset -c 1)
fi
HAVE_PERF=0
if command -v perf >/dev/null 2>&1 \
    && perf stat -e syscalls:sys_enter_sendto -- true >/dev/null 2>&1; then
    HAVE_PERF=1
fi
EVENTS=syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex

trap stop_server EXIT

# run_one KIND SHAPE ROUND
run_one() {
    local kind=$1 name=$2 round=$3 bin=$BASELINE_BIN log
    [ "$kind" = gateway ] && bin=$GATEWAY_BIN
    [ "$kind" = gateway-old ] && bin=$OLD_GATEWAY_BIN
    log="$OUT/$name-$kind-r$round"
    shape "$name"
    "${PIN_SERVER[@]}" "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --workers "$WORKERS" > "$log.out" 2> "$log.err" &
    SERVER_PID=$!
    local line=""
    for _ in $(seq 1 150); do
        line=$(grep -m1 '^READY ' "$log.out" 2>/dev/null || true)
        [ -n "$line" ] && break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        echo "sweep.sh: $kind printed no READY line" >&2
        stop_server
        return
    fi
    local client admin perf_pid=""
    client=$(sed -n 's/.*client=\([^ ]*\).*/\1/p' <<< "$line")
    admin=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<< "$line")
    if [ "$HAVE_PERF" = 1 ]; then
        perf stat -x, -e "$EVENTS" -p "$SERVER_PID" -o "$log.perf" &
        perf_pid=$!
    fi
    echo "sweep.sh: round $round $name $kind" >&2
    local threads=()
    [ "$PINNED" = 1 ] && threads=(--threads 1)
    # shellcheck disable=SC2086
    "${PIN_LOAD[@]}" "$BENCH_BIN" --target "$client" --admin "$admin" --pid "$SERVER_PID" \
        --label "$kind" --config "$CONFIG" --variant "$name" --quiet "${threads[@]}" \
        --duration "$DURATION" --warmup "$WARMUP" $ARGS > "$log.json" || true
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    stop_server
    add_syscalls "$log"
}

# add_syscalls LOG: appends LOG.json to the results, with the system calls
# per 1000 units of work from LOG.perf where there is one.
add_syscalls() {
    local log=$1 units counts="{}"
    [ -s "$log.json" ] || return 0
    if [ -s "$log.perf" ]; then
        units=$(jq -r --argjson span "$(awk -v a="$DURATION" -v b="$WARMUP" 'BEGIN { print a + b }')" \
            'if .scenario == "fanout" then .results.received_total
             else (.results.msgs_per_sec // 0) * $span end' "$log.json")
        counts=$(awk -F, -v u="$units" '$3 ~ /^syscalls:sys_enter_/ && u > 0 {
                sub(/^syscalls:sys_enter_/, "", $3)
                printf "%s\"%s\":%.1f", (n++ ? "," : ""), $3, $1 * 1000 / u
            } END { }' "$log.perf")
        counts="{$counts}"
    fi
    jq -c --argjson s "$counts" '.results.syscalls_per_1000 = $s' "$log.json" >> "$RESULTS"
}

START=$(date +%s)
N=0
for round in $(seq 1 "$ROUNDS"); do
    for name in $SHAPES; do
        order="gateway baseline"
        [ $(( (N + round) % 2 )) = 0 ] && order="baseline gateway"
        if [ -n "${OLD_GATEWAY_BIN:-}" ]; then
            case $(( (N + round) % 3 )) in
                0) order="gateway-old gateway baseline" ;;
                1) order="gateway baseline gateway-old" ;;
                *) order="baseline gateway-old gateway" ;;
            esac
        fi
        N=$((N + 1))
        for kind in $order; do run_one "$kind" "$name" "$round"; done
    done
done

{
    echo "Sweep: $ROUNDS round(s), ${DURATION}s measured after ${WARMUP}s warm-up, configuration $CONFIG;"
    echo "$(nproc) CPUs ($(cpu_model)),"
    echo "$(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(( $(date +%s) - START ))s;"
    echo "built from commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo
    "$BENCH_BIN" report --no-verdicts "$RESULTS"
} | tee "$OUT/table.md"
echo "sweep.sh: results in $OUT" >&2
BAD=$(grep -c '"ok":false' "$RESULTS" || true)
if [ "$BAD" -gt 0 ]; then
    echo "sweep.sh: $BAD run(s) failed or broke a correctness condition" >&2
    exit 1
fi
