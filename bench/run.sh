#!/usr/bin/env bash
# Runs the benchmark matrix against the gateway and the plain-tokio baseline,
# alternating the two, and prints one table of gateway/baseline ratios.
#
#   bench/run.sh [--quick] [--rounds N] [--framing lines|length]
#                [--only "echo churn ..."] [--no-build] [--out DIR]
#                [--profile release|profiling]
#
# The 2 cores are divided: the server under test runs alone on CPU
# $SERVER_CPU (default 0) with one worker thread, the load generator on CPU
# $LOADGEN_CPU (default 1) with one runtime thread, both pinned with taskset.
# Each case starts a fresh server (so memory figures start clean), reads its
# READY line, runs one gateway-bench scenario, and stops the server.
# Within a round the order gateway/baseline flips every case, and flips again
# each round, so slow drift of the machine falls on both alike; the table
# shows the median over rounds.
#
# --quick: short runs and small counts, for a smoke check (under a minute
# once built). Results go to target/bench/<time>/ (results.jsonl, table.md,
# server logs). Exit status 1 when a run failed or broke a correctness
# condition; performance verdicts do not change it.
#
# --profile profiling: build and run both servers with line tables
# (target/profiling/), to attach perf to one; the release profile, the
# default and what the figures are taken with, ships no debug info.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=0
ROUNDS=""
FRAMING=lines
ONLY="echo churn churn-pool-off fanout idle kick"
BUILD=1
OUT=""
PROFILE=release
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --framing) FRAMING=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        --profile) PROFILE=$2; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-1}
    DURATION=2; WARMUP=0.5
    ECHO_ARGS="--connections 20 --depth 16 --payload 64"
    CHURN_ARGS="--concurrency 8"
    FANOUT_ARGS="--subscribers 100 --publishers 2"
    IDLE_ARGS="--connections 1000 --settle-ms 300"
    KICK_ARGS="--connections 100 --bytes 65536"
else
    ROUNDS=${ROUNDS:-3}
    DURATION=10; WARMUP=2
    ECHO_ARGS="--connections 100 --depth 16 --payload 64"
    CHURN_ARGS="--concurrency 32"
    FANOUT_ARGS="--subscribers 1000 --publishers 4"
    IDLE_ARGS="--connections 10000"
    KICK_ARGS="--connections 1000 --bytes 262144"
fi

OUT=${OUT:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

if command -v taskset >/dev/null 2>&1; then
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PIN_LOAD=(taskset -c "$LOADGEN_CPU")
else
    echo "run.sh: taskset not found; server and load generator are not pinned" >&2
    PIN_SERVER=(); PIN_LOAD=()
fi

# What is about to be built.
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain -- gateway conn-actor pool-manager metrics bench 2>/dev/null | head -c 1)

GATEWAY_BIN=target/$PROFILE/gateway
BASELINE_BIN=target/$PROFILE/gateway-baseline
BENCH_BIN=target/$PROFILE/gateway-bench
GATEWAY_MISSING=""
if [ "$BUILD" = 1 ]; then
    cargo build --profile "$PROFILE" -p gateway-bench --bins >&2
    if ! cargo build --profile "$PROFILE" -p gateway --bin gateway > "$OUT/gateway-build.log" 2>&1; then
        GATEWAY_MISSING="the gateway did not build (see $OUT/gateway-build.log)"
        echo "run.sh: $GATEWAY_MISSING; its figures will be pending" >&2
    fi
fi
if [ -z "$GATEWAY_MISSING" ] && [ ! -x "$GATEWAY_BIN" ]; then
    GATEWAY_MISSING="no $GATEWAY_BIN"
fi

json_escape() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/ }
    s=${s//$'\r'/}
    printf '%s' "${s//$'\n'/ | }"
}

# Writes a result line for a case that could not run.
record_error() { # server scenario variant message
    local variant=null
    [ -n "$3" ] && variant="\"$3\""
    printf '{"scenario":"%s","server":"%s","variant":%s,"framing":"%s","ok":false,"error":"%s"}\n' \
        "$2" "$1" "$variant" "$FRAMING" "$(json_escape "$4")" >> "$RESULTS"
}

SERVER_PID=""; CLIENT=""; ADMIN=""
# start_server KIND LOGNAME EXTRA_ARGS...: sets SERVER_PID, CLIENT, ADMIN.
start_server() {
    local kind=$1 log=$2; shift 2
    local bin=$BASELINE_BIN
    [ "$kind" = gateway ] && bin=$GATEWAY_BIN
    "${PIN_SERVER[@]}" "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --framing "$FRAMING" --workers 1 "$@" > "$OUT/$log.out" 2> "$OUT/$log.err" &
    SERVER_PID=$!
    local line=""
    for _ in $(seq 1 150); do
        line=$(grep -m1 '^READY ' "$OUT/$log.out" 2>/dev/null || true)
        [ -n "$line" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        return 1
    fi
    CLIENT=$(sed -n 's/.*client=\([^ ]*\).*/\1/p' <<< "$line")
    ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<< "$line")
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap stop_server EXIT

# run_case KIND SCENARIO VARIANT "SERVER_ARGS" "BENCH_ARGS"
run_case() {
    local kind=$1 scenario=$2 variant=$3 server_args=$4 bench_args=$5
    local log="$kind-$scenario${variant:+-$variant}-r$ROUND"
    if [ "$kind" = gateway ] && [ -n "$GATEWAY_MISSING" ]; then
        record_error "$kind" "$scenario" "$variant" "$GATEWAY_MISSING"
        return
    fi
    # shellcheck disable=SC2086
    if ! start_server "$kind" "$log" $server_args; then
        record_error "$kind" "$scenario" "$variant" \
            "server did not print READY: $(tail -n 3 "$OUT/$log.err" 2>/dev/null)"
        return
    fi
    echo "run.sh: round $ROUND $kind $scenario${variant:+ ($variant)}" >&2
    local vflag=()
    [ -n "$variant" ] && vflag=(--variant "$variant")
    # shellcheck disable=SC2086
    "${PIN_LOAD[@]}" "$BENCH_BIN" --target "$CLIENT" --admin "$ADMIN" --pid "$SERVER_PID" \
        --label "$kind" "${vflag[@]}" --framing "$FRAMING" --threads 1 \
        --duration "$DURATION" --warmup "$WARMUP" \
        "$scenario" $bench_args >> "$RESULTS" || true
    stop_server
}

case_args() { # SCENARIO -> sets SCEN VARIANT SERVER_ARGS BENCH_ARGS KINDS
    VARIANT=""; SERVER_ARGS=""; KINDS="gateway baseline"
    case "$1" in
        echo) SCEN=echo; BENCH_ARGS=$ECHO_ARGS ;;
        churn) SCEN=churn; BENCH_ARGS=$CHURN_ARGS ;;
        churn-pool-off) SCEN=churn; VARIANT=pool-off; SERVER_ARGS="--pool-max-idle 0"
            BENCH_ARGS=$CHURN_ARGS; KINDS=gateway ;;
        fanout) SCEN=fanout; BENCH_ARGS=$FANOUT_ARGS ;;
        idle) SCEN=idle; BENCH_ARGS=$IDLE_ARGS; SERVER_ARGS="--max-connections 12000" ;;
        kick) SCEN=kick; BENCH_ARGS=$KICK_ARGS ;;
        *) echo "run.sh: unknown scenario $1" >&2; exit 2 ;;
    esac
}

START=$(date +%s)
N=0
for ROUND in $(seq 1 "$ROUNDS"); do
    for c in $ONLY; do
        case_args "$c"
        order=$KINDS
        if [ "$KINDS" = "gateway baseline" ] && [ $(( (N + ROUND) % 2 )) = 0 ]; then
            order="baseline gateway"
        fi
        N=$((N + 1))
        for kind in $order; do
            run_case "$kind" "$SCEN" "$VARIANT" "$SERVER_ARGS" "$BENCH_ARGS"
        done
    done
done

{
    echo "Matrix: $( [ "$QUICK" = 1 ] && echo quick || echo full ), framing $FRAMING, $ROUNDS round(s), ${DURATION}s measured after ${WARMUP}s warm-up;"
    echo "server on CPU $SERVER_CPU, load generator on CPU $LOADGEN_CPU; $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(( $(date +%s) - START ))s;"
    echo "built from commit $COMMIT$( [ -n "$DIRTY" ] && echo ' with uncommitted changes under gateway/, conn-actor/, pool-manager/, metrics/ or bench/' )."
    echo
    "$BENCH_BIN" report "$RESULTS"
} | tee "$OUT/table.md"
echo "run.sh: results in $OUT" >&2
# The exit status reflects runs that failed or broke a correctness condition
# (errors, missing or reordered messages, lost bytes); the performance
# verdicts in the table do not change it.
BAD=$(grep -c '"ok":false' "$RESULTS" || true)
if [ "$BAD" -gt 0 ]; then
    echo "run.sh: $BAD run(s) failed or broke a correctness condition (see 'Problems seen')" >&2
    exit 1
fi
