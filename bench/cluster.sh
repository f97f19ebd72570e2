#!/usr/bin/env bash
# Cross-node fanout beside the same load on one node, in one run: a real
# nats-server on free ports (its monitoring endpoint included), two gateway
# nodes joined through it, then `gateway-bench cluster` in turn with
#   one-node  publishers and every subscriber on node 1;
#   two-node  publishers on node 1, subscribers spread over nodes 1 and 2.
# The order flips every round. One table of medians over rounds: deliveries/s,
# delivery p99, and NATS in_msgs/out_msgs per client publish (/varz deltas).
#
#   bench/cluster.sh [--rounds N] [--duration SECS] [--warmup SECS]
#                    [--subscribers N] [--publishers N] [--no-build] [--out DIR]
#
# Results go to target/bench/cluster-<time>/ (results.jsonl, table.md, logs).
# Exit status 1 when a run failed or broke a correctness condition.
#
# Where the cluster stops (docs/cluster.md, "Limits"): with --users and
# --nodes it runs bench/cluster_scale.py instead: N users over K nodes and
# one node without NATS, logins, memory, one topic per user, broadcasts,
# and a node killed under its users (the reconnect storm).
#
#   bench/cluster.sh --users N --nodes K [--parallel N] [--broadcasts N]
#                    [--producers N] [--topic-steps N] [--gateway PATH]
#                    [--no-build] [--out DIR]
# (--gateway: the node binary to run, another build to compare; the load is
# still target/release/gateway-bench.)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# start_nats, start_node and stop_started; its option defaults are set
# again below.
. bench/lib.sh

ROUNDS=3
DURATION=5
WARMUP=1
SUBSCRIBERS=1000
PUBLISHERS=4
BUILD=1
OUT=""
USERS=""
NODES=""
SCALE_ARGS=()
FANOUT_ONLY=()
need_value() { # OPTION ARGC: an option that takes a value must have one
    [ "$2" -ge 2 ] || { echo "cluster.sh: $1 needs a value" >&2; exit 2; }
}
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds|--duration|--warmup|--subscribers|--publishers|--users|--nodes|--parallel|--broadcasts|--producers|--topic-steps|--gateway|--out)
            need_value "$1" $# ;;
    esac
    case "$1" in
        --users) USERS=$2; shift ;;
        --nodes) NODES=$2; shift ;;
        --parallel|--broadcasts|--producers|--topic-steps|--gateway) SCALE_ARGS+=("$1" "$2"); shift ;;
        --rounds) ROUNDS=$2; FANOUT_ONLY+=("$1"); shift ;;
        --duration) DURATION=$2; FANOUT_ONLY+=("$1"); shift ;;
        --warmup) WARMUP=$2; FANOUT_ONLY+=("$1"); shift ;;
        --subscribers) SUBSCRIBERS=$2; FANOUT_ONLY+=("$1"); shift ;;
        --publishers) PUBLISHERS=$2; FANOUT_ONLY+=("$1"); shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

command -v nats-server >/dev/null || { echo "cluster.sh: nats-server not found (apt-get install nats-server)" >&2; exit 2; }
if [ -n "$USERS$NODES" ] || [ ${#SCALE_ARGS[@]} -gt 0 ]; then
    if [ -z "$USERS" ] || [ -z "$NODES" ]; then
        echo "cluster.sh: --users and --nodes go together" >&2
        exit 2
    fi
    [ ${#FANOUT_ONLY[@]} -eq 0 ] || { echo "cluster.sh: ${FANOUT_ONLY[*]} not with --users (the fanout comparison's options)" >&2; exit 2; }
    for v in "$USERS" "$NODES"; do
        [[ "$v" =~ ^[0-9]+$ ]] || { echo "cluster.sh: --users and --nodes take whole numbers, not '$v'" >&2; exit 2; }
    done
    if [ "$BUILD" = 1 ]; then
        cargo build --release -p gateway -p gateway-bench
    fi
    [ -z "$OUT" ] || SCALE_ARGS+=(--out "$OUT")
    exec python3 bench/cluster_scale.py --users "$USERS" --nodes "$NODES" "${SCALE_ARGS[@]}"
fi
if [ "$BUILD" = 1 ]; then
    cargo build --release -p gateway -p gateway-bench
fi
GATEWAY_BIN=target/release/gateway
BENCH_BIN=target/release/gateway-bench
OUT=${OUT:-target/bench/cluster-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
START=$(date +%s)

# Stopped on exit, whatever happens.
trap stop_started EXIT
# NATS on free ports, its monitoring endpoint too; two nodes on it.
# shellcheck disable=SC2119 # core NATS: no arguments
start_nats
start_node n1; N1=$CLIENT; N1_PID=$NODE_PID
start_node n2; N2=$CLIENT

run_case() { # LABEL SUBSCRIBER_TARGETS ROUND
    echo "round $3: $1" >&2
    "$BENCH_BIN" --target "$N1" --pid "$N1_PID" --label "$1" --duration "$DURATION" \
        --warmup "$WARMUP" --quiet cluster --subscribers "$SUBSCRIBERS" \
        --publishers "$PUBLISHERS" --topic "bench.cluster.r$3.$1" \
        --subscriber-targets "$2" --nats-monitor "$MONITOR" >> "$RESULTS" || true
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="one-node two-node"; else order="two-node one-node"; fi
    for c in $order; do
        if [ "$c" = one-node ]; then run_case one-node "$N1" "$round"
        else run_case two-node "$N1,$N2" "$round"; fi
    done
done

{
    echo "$ROUNDS round(s), ${DURATION}s measured after ${WARMUP}s warm-up, $SUBSCRIBERS subscribers, $PUBLISHERS publishers on n1;"
    echo "$(nproc) CPUs ($(cpu_model)) shared by nats-server, both nodes and the load generator;"
    run_stamp
    echo
    PYTHONPATH=bench python3 - "$RESULTS" <<'PY'
import sys
import side_by_side
rows = side_by_side.load(sys.argv[1])
figs = [
    ("deliveries/s", lambda r: r["deliveries_per_sec"], "{:,.0f}"),
    ("delivery p99 µs", lambda r: r["latency"]["p99_us"], "{:,.0f}"),
    ("NATS in_msgs per publish", lambda r: r["nats"]["in_per_publish"], "{:.2f}"),
    ("NATS out_msgs per publish", lambda r: r["nats"]["out_per_publish"], "{:.2f}"),
]
side_by_side.table(rows, figs, "figure", ("one-node", "one node"), ("two-node", "two nodes"),
                   "two/one", second_over_first=True)
side_by_side.failures(rows)
PY
} | tee "$OUT/table.md"
echo "cluster.sh: results in $OUT" >&2
if grep -q '"ok":false' "$RESULTS"; then exit 1; fi
