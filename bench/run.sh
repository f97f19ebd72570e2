#!/usr/bin/env bash
# Runs the benchmark matrix against the gateway and the plain-tokio baseline,
# alternating the two, and prints one table of gateway/baseline ratios.
#
#   bench/run.sh [--quick] [--rounds N] [--framing lines|length]
#                [--only "echo churn ..."] [--no-build] [--out DIR]
#                [--profile release|profiling]
#                [--configs "pinned default"] [--workers "1 2 8"]
#                [--server-cpus LIST] [--loadgen-cpus LIST]
#                [--duration SECS] [--warmup SECS] [--tls | --tls-both]
#
# --tls: the gateway speaks TLS (a self-signed certificate made with openssl
# in the output directory, marked as no CA: rustls refuses a CA certificate
# as a server's) and the load generator with it; the baseline
# column is then the same gateway over plain TCP, so the ratios are the
# cost of TLS. GATEWAY_BIN and BASELINE_BIN name other binaries to compare
# (say, two builds of the gateway, the baseline column being the older).
# --tls-both: both servers speak TLS; with BASELINE_BIN an earlier gateway
# build, the table is an A/B of two builds over TLS (handshake CPU in
# churn, record CPU in echo).
#
# Each server configuration runs the whole matrix (--configs, both by default):
#   pinned   the server on CPU set --server-cpus (default 0) with one worker
#            thread, the load generator on --loadgen-cpus (default 1) with one
#            runtime thread, both pinned with taskset;
#   default  how users run it: nothing pinned, the server with as many
#            workers as the machine has CPUs, the load generator on the same
#            cores with as many threads;
#   workers-N (--workers "1 2 8" makes one per count; the scaling run) the
#            server with N workers, on --server-cpus and the load generator on
#            --loadgen-cpus where those are given, else unpinned; the report
#            then adds how CPU per unit of work grows from the fewest workers
#            to the most.
# Every scenario reports server CPU per unit of work (/proc/PID/stat over
# the measured window) beside its throughput.
# Each case starts a fresh server (so memory figures start clean), reads its
# READY line, runs one gateway-bench scenario, and stops the server.
# Within a round the order gateway/baseline flips every case, and flips again
# each round, so slow drift of the machine falls on both alike; the table
# shows the median over rounds, and each ratio is the median of the per-round
# ratios with their lowest and highest.
#
# --quick: short runs and small counts, for a smoke check (under a minute
# once built); its table has no targets or verdicts, which 2-second runs
# cannot support. Results go to target/bench/<time>/ (results.jsonl,
# table.md, server logs). Exit status 1 when a run failed or broke a
# correctness condition; performance verdicts do not change it.
#
# --profile profiling: build and run both servers with line tables
# (target/profiling/), to attach perf to one; the release profile, the
# default and what the figures are taken with, ships no debug info.
# SERVER_CPU and LOADGEN_CPU in the environment are the defaults of
# --server-cpus and --loadgen-cpus for the pinned configuration.
# GATEWAY_BIN and BASELINE_BIN replace the two servers' binaries: with
# BASELINE_BIN set to an earlier gateway build, the table is an A/B of two
# gateway builds (the "baseline" column is then the earlier build).
# idle-tls and idle-wss run the gateway alone, over TLS and over WebSocket
# on TLS (a self-signed certificate as --tls makes), beside its plain idle
# case in the same table; IDLE_ARGS applies to all three.
# ECHO_ARGS, CHURN_ARGS, FANOUT_ARGS, IDLE_ARGS and KICK_ARGS replace a
# scenario's gateway-bench arguments, for loads sized to a larger machine:
#   FANOUT_ARGS="--subscribers 5000 --publishers 8" bench/run.sh --workers 8
# echo-frame, fanout-w16 and fanout-w4 are the matrix's shallow-queue
# shapes: echo with one write per ping, fanout with a window of 16 and 4
# (fanout's own is 32); their rows are held to at most the baseline's CPU
# per unit of work. bench/sweep.sh sweeps the load generator's other knobs.
set -euo pipefail

# Scenario arguments from the environment win over the defaults below.
ECHO_ARGS_ENV=${ECHO_ARGS:-}; CHURN_ARGS_ENV=${CHURN_ARGS:-}; FANOUT_ARGS_ENV=${FANOUT_ARGS:-}
IDLE_ARGS_ENV=${IDLE_ARGS:-}; KICK_ARGS_ENV=${KICK_ARGS:-}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# stop_server, shared with ws.sh and admin.sh (this script sets its own
# defaults below).
. bench/lib.sh

QUICK=0
ROUNDS=""
FRAMING=lines
ONLY="echo echo-frame churn churn-pool-off fanout fanout-w16 fanout-w4 idle idle-tls idle-wss kick"
BUILD=1
OUT=""
PROFILE=release
CONFIGS="pinned default"
WORKERS=""
SERVER_CPUS=""
LOADGEN_CPUS=""
DURATION_OPT=""
WARMUP_OPT=""
TLS=0
TLS_BOTH=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --framing) FRAMING=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        --profile) PROFILE=$2; shift ;;
        --configs) CONFIGS=$2; shift ;;
        --workers) WORKERS=$2; shift ;;
        --server-cpus) SERVER_CPUS=$2; shift ;;
        --loadgen-cpus) LOADGEN_CPUS=$2; shift ;;
        --duration) DURATION_OPT=$2; shift ;;
        --warmup) WARMUP_OPT=$2; shift ;;
        --tls) TLS=1 ;;
        --tls-both) TLS=1; TLS_BOTH=1 ;;
        -h|--help) sed -n '2,66p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "$WORKERS" ]; then
    CONFIGS=""
    for n in $WORKERS; do
        case "$n" in
            ''|*[!0-9]*) echo "run.sh: --workers takes counts, got $n" >&2; exit 2 ;;
        esac
        CONFIGS="$CONFIGS workers-$n"
    done
fi
for c in $CONFIGS; do
    case "$c" in
        pinned|default|workers-[0-9]*) ;;
        *) echo "run.sh: unknown configuration $c (pinned, default, workers-N)" >&2; exit 2 ;;
    esac
done
NCPU=$(nproc)
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
ECHO_ARGS=${ECHO_ARGS_ENV:-$ECHO_ARGS}
CHURN_ARGS=${CHURN_ARGS_ENV:-$CHURN_ARGS}
FANOUT_ARGS=${FANOUT_ARGS_ENV:-$FANOUT_ARGS}
IDLE_ARGS=${IDLE_ARGS_ENV:-$IDLE_ARGS}
KICK_ARGS=${KICK_ARGS_ENV:-$KICK_ARGS}

DURATION=${DURATION_OPT:-$DURATION}
WARMUP=${WARMUP_OPT:-$WARMUP}

OUT=${OUT:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

HAVE_TASKSET=1
if ! command -v taskset >/dev/null 2>&1; then
    HAVE_TASKSET=0
    echo "run.sh: taskset not found; server and load generator are not pinned" >&2
fi

# set_config NAME: how the servers and the load generator run under it:
# PIN_SERVER, PIN_LOAD (command prefixes), SERVER_WORKERS, LOAD_THREADS
# (empty: the load generator's default, the CPUs it may use) and DESCRIBE.
set_config() {
    CONFIG=$1
    PIN_SERVER=(); PIN_LOAD=(); LOAD_THREADS=""
    local scpus=$SERVER_CPUS lcpus=$LOADGEN_CPUS
    case "$1" in
        pinned)
            scpus=${scpus:-${SERVER_CPU:-0}}; lcpus=${lcpus:-${LOADGEN_CPU:-1}}
            SERVER_WORKERS=1; LOAD_THREADS=1 ;;
        default)
            scpus=""; lcpus=""; SERVER_WORKERS=$NCPU ;;
        workers-*)
            SERVER_WORKERS=${1#workers-} ;;
    esac
    if [ "$HAVE_TASKSET" = 1 ]; then
        [ -n "$scpus" ] && PIN_SERVER=(taskset -c "$scpus")
        [ -n "$lcpus" ] && PIN_LOAD=(taskset -c "$lcpus")
    fi
    DESCRIBE="$1: server with $SERVER_WORKERS worker(s) on $( [ ${#PIN_SERVER[@]} -gt 0 ] && echo "CPU $scpus" || echo "any CPU" ),"
    DESCRIBE="$DESCRIBE load generator with ${LOAD_THREADS:-its default} thread(s) on $( [ ${#PIN_LOAD[@]} -gt 0 ] && echo "CPU $lcpus" || echo "any CPU" )"
}

# What is about to be built.
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$( (git status --porcelain -- gateway conn-actor pool-manager metrics registry bench 2>/dev/null || true) | head -c 1)

GATEWAY_BIN=${GATEWAY_BIN:-target/$PROFILE/gateway}
if [ "$TLS" = 1 ]; then
    BASELINE_BIN=${BASELINE_BIN:-$GATEWAY_BIN}
else
    BASELINE_BIN=${BASELINE_BIN:-target/$PROFILE/gateway-baseline}
fi
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

GATEWAY_TLS_ARGS=""; BENCH_TLS_ARGS=""
NEED_CERT=$TLS
case " $ONLY " in *" idle-tls "*|*" idle-wss "*) NEED_CERT=1 ;; esac
if [ "$NEED_CERT" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$OUT/tls-key.pem" -out "$OUT/tls-cert.pem" -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost \
        -addext basicConstraints=critical,CA:FALSE > "$OUT/tls-cert.log" 2>&1
fi
CERT_ARGS="--tls-cert $OUT/tls-cert.pem --tls-key $OUT/tls-key.pem"
CA_ARGS="--tls-ca $OUT/tls-cert.pem"
if [ "$TLS" = 1 ]; then
    GATEWAY_TLS_ARGS=$CERT_ARGS
    BENCH_TLS_ARGS=$CA_ARGS
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
    printf '{"scenario":"%s","server":"%s","variant":%s,"config":"%s","framing":"%s","ok":false,"error":"%s"}\n' \
        "$2" "$1" "$variant" "$CONFIG" "$FRAMING" "$(json_escape "$4")" >> "$RESULTS"
}

SERVER_PID=""; CLIENT=""; ADMIN=""; WS=""
# start_server KIND LOGNAME EXTRA_ARGS...: sets SERVER_PID, CLIENT, ADMIN
# and WS (the WebSocket listener's address, where there is one).
start_server() {
    local kind=$1 log=$2; shift 2
    local bin=$BASELINE_BIN
    [ "$kind" = gateway ] && bin=$GATEWAY_BIN
    "${PIN_SERVER[@]}" "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --framing "$FRAMING" --workers "$SERVER_WORKERS" "$@" > "$OUT/$log.out" 2> "$OUT/$log.err" &
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
    WS=$(sed -n 's/.*ws=\([^ ]*\).*/\1/p' <<< "$line")
}

trap stop_server EXIT

# run_case KIND SCENARIO VARIANT "SERVER_ARGS" "BENCH_ARGS"
run_case() {
    local kind=$1 scenario=$2 variant=$3 server_args=$4 bench_args=$5
    local log="$CONFIG-$kind-$scenario${variant:+-$variant}-r$ROUND"
    if [ "$kind" = gateway ] && [ -n "$GATEWAY_MISSING" ]; then
        record_error "$kind" "$scenario" "$variant" "$GATEWAY_MISSING"
        return
    fi
    local tls_server="" tls_bench=""
    # A case over TLS of its own (idle-tls, idle-wss) brings its flags.
    if { [ "$kind" = gateway ] || [ "$TLS_BOTH" = 1 ]; } && [ "$OWN_TLS" = 0 ]; then
        tls_server=$GATEWAY_TLS_ARGS; tls_bench=$BENCH_TLS_ARGS
    fi
    # shellcheck disable=SC2086
    if ! start_server "$kind" "$log" $server_args $tls_server; then
        record_error "$kind" "$scenario" "$variant" \
            "server did not print READY: $(tail -n 3 "$OUT/$log.err" 2>/dev/null)"
        return
    fi
    echo "run.sh: round $ROUND $CONFIG $kind $scenario${variant:+ ($variant)}" >&2
    local vflag=() tflag=()
    [ -n "$variant" ] && vflag=(--variant "$variant")
    [ -n "$LOAD_THREADS" ] && tflag=(--threads "$LOAD_THREADS")
    local target=$CLIENT
    [ "$TARGET_WS" = 1 ] && target=$WS
    # shellcheck disable=SC2086
    "${PIN_LOAD[@]}" "$BENCH_BIN" --target "$target" --admin "$ADMIN" --pid "$SERVER_PID" \
        --label "$kind" --config "$CONFIG" "${vflag[@]}" "${tflag[@]}" --framing "$FRAMING" $tls_bench \
        --duration "$DURATION" --warmup "$WARMUP" \
        "$scenario" $bench_args >> "$RESULTS" || true
    stop_server
}

case_args() { # SCENARIO -> sets SCEN VARIANT SERVER_ARGS BENCH_ARGS KINDS OWN_TLS TARGET_WS
    VARIANT=""; SERVER_ARGS=""; KINDS="gateway baseline"; OWN_TLS=0; TARGET_WS=0
    case "$1" in
        echo) SCEN=echo; BENCH_ARGS=$ECHO_ARGS ;;
        churn) SCEN=churn; BENCH_ARGS=$CHURN_ARGS ;;
        churn-pool-off) SCEN=churn; VARIANT=pool-off; SERVER_ARGS="--pool-max-idle 0"
            BENCH_ARGS=$CHURN_ARGS; KINDS=gateway ;;
        fanout) SCEN=fanout; BENCH_ARGS=$FANOUT_ARGS ;;
        # Shallow queues: the server finds fewer frames per wake-up, which
        # is what the gateway's margin depends on (docs/benchmarks.md,
        # "Does the efficiency hold for other load generators").
        echo-frame) SCEN=echo; VARIANT=frame; BENCH_ARGS="$ECHO_ARGS --write-split frame" ;;
        fanout-w16) SCEN=fanout; VARIANT=w16; BENCH_ARGS="$FANOUT_ARGS --window 16" ;;
        fanout-w4) SCEN=fanout; VARIANT=w4; BENCH_ARGS="$FANOUT_ARGS --window 4" ;;
        idle) SCEN=idle; BENCH_ARGS=$IDLE_ARGS; SERVER_ARGS="--max-connections 12000" ;;
        idle-tls) SCEN=idle; VARIANT=tls; KINDS=gateway; OWN_TLS=1
            SERVER_ARGS="--max-connections 12000 $CERT_ARGS"; BENCH_ARGS="$IDLE_ARGS $CA_ARGS" ;;
        idle-wss) SCEN=idle; VARIANT=wss; KINDS=gateway; OWN_TLS=1; TARGET_WS=1
            SERVER_ARGS="--max-connections 12000 --ws-listen 127.0.0.1:0 $CERT_ARGS"
            BENCH_ARGS="$IDLE_ARGS $CA_ARGS --transport ws" ;;
        kick) SCEN=kick; BENCH_ARGS=$KICK_ARGS ;;
        *) echo "run.sh: unknown scenario $1" >&2; exit 2 ;;
    esac
}

START=$(date +%s)
N=0
for ROUND in $(seq 1 "$ROUNDS"); do
    for config in $CONFIGS; do
        set_config "$config"
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
done

{
    echo "Matrix: $( [ "$QUICK" = 1 ] && echo quick || echo full ), framing $FRAMING$( [ "$TLS" = 1 ] && if [ "$TLS_BOTH" = 1 ]; then echo ", both over TLS (baseline $BASELINE_BIN)"; else echo ', gateway over TLS, baseline the same gateway over TCP'; fi ), $ROUNDS round(s), ${DURATION}s measured after ${WARMUP}s warm-up;"
    echo "$NCPU CPUs ($(cpu_model)); configurations:"
    for config in $CONFIGS; do set_config "$config"; echo "- $DESCRIBE;"; done
    for scenario in $ONLY; do
        case_args "$scenario"
        echo "- $scenario: gateway-bench $SCEN $BENCH_ARGS${SERVER_ARGS:+, servers with $SERVER_ARGS};"
    done
    echo "$(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(( $(date +%s) - START ))s;"
    echo "built from commit $COMMIT$( [ -n "$DIRTY" ] && echo ' with uncommitted changes under gateway/, conn-actor/, pool-manager/, metrics/, registry/ or bench/' )."
    if [ "$QUICK" = 1 ]; then
        echo "A quick run is a smoke check: its cases are too short for the performance targets, so the table has no verdicts; the exit status says only whether a run failed or broke a correctness condition."
    else
        echo "The verdicts hold each figure to its target; they do not change the exit status, which says only whether a run failed or broke a correctness condition."
    fi
    echo
    verdicts=()
    [ "$QUICK" = 1 ] && verdicts=(--no-verdicts)
    "$BENCH_BIN" report "${verdicts[@]}" "$RESULTS"
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
