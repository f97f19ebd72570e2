#!/usr/bin/env bash
# History in a cluster (docs/protocol.md section 13): a real nats-server
# with JetStream on free ports, two gateway nodes with history on topics
# `hist.*` and `bench-recover` only, then in one run:
#   - cross-node fanout (publishers on n1, subscribers over n1 and n2) on a
#     topic with history (through the stream) beside one without (core
#     NATS), alternating each round: deliveries/s, client publishes/s,
#     delivery p99;
#   - recovery of --missed messages on n2 of what was published through
#     n1's admin API, one client at a time (p50, p99), then a storm of
#     --storm-clients clients each recovering --storm-missed at once.
#
#   bench/history_cluster.sh [--rounds N] [--duration SECS] [--warmup SECS]
#       [--subscribers N] [--publishers N] [--missed N] [--recoveries N]
#       [--storm-clients N] [--storm-missed N] [--no-build] [--out DIR]
#
# Results go to target/bench/history-cluster-<time>/ (results.jsonl,
# table.md, logs). Exit status 1 when a run failed or broke a correctness
# condition (a message missing, twice or out of order).
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
MISSED=1000
RECOVERIES=100
STORM_CLIENTS=1000
STORM_MISSED=100
BUILD=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --subscribers) SUBSCRIBERS=$2; shift ;;
        --publishers) PUBLISHERS=$2; shift ;;
        --missed) MISSED=$2; shift ;;
        --recoveries) RECOVERIES=$2; shift ;;
        --storm-clients) STORM_CLIENTS=$2; shift ;;
        --storm-missed) STORM_MISSED=$2; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "history_cluster.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

command -v nats-server >/dev/null || { echo "history_cluster.sh: nats-server not found (apt-get install nats-server)" >&2; exit 2; }
command -v jq >/dev/null || { echo "history_cluster.sh: jq not found (apt-get install jq)" >&2; exit 2; }
if [ "$BUILD" = 1 ]; then
    cargo build --release -p gateway -p gateway-bench
fi
GATEWAY_BIN=target/release/gateway
BENCH_BIN=target/release/gateway-bench
OUT=${OUT:-target/bench/history-cluster-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
START=$(date +%s)

trap stop_started EXIT
start_nats -js -sd "$OUT/js"
# Nodes with history on the topics of this run only.
HISTORY_FLAGS=(--history-size $(( MISSED > STORM_MISSED ? MISSED * 2 : STORM_MISSED * 2 ))
    --history-recover-max "$MISSED" --history-topics 'hist.*,bench-recover')
start_node n1 "${HISTORY_FLAGS[@]}"; N1=$CLIENT; N1_ADMIN=$ADMIN; N1_PID=$NODE_PID
start_node n2 "${HISTORY_FLAGS[@]}"; N2=$CLIENT; N2_PID=$NODE_PID
sleep 2  # the nodes hear each other (heartbeats)

fanout() { # LABEL TOPIC ROUND
    echo "round $3: fanout, $1" >&2
    "$BENCH_BIN" --target "$N1" --pid "$N1_PID" --label "$1" --duration "$DURATION" \
        --warmup "$WARMUP" --quiet cluster --subscribers "$SUBSCRIBERS" \
        --publishers "$PUBLISHERS" --topic "$2" \
        --subscriber-targets "$N1,$N2" --nats-monitor "$MONITOR" >> "$RESULTS" || true
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="history core"; else order="core history"; fi
    for c in $order; do
        if [ "$c" = history ]; then fanout history "hist.r$round" "$round"
        else fanout core "core.r$round" "$round"; fi
    done
done

echo "recoveries of $MISSED, one at a time, on n2 of what n1 published" >&2
"$BENCH_BIN" --target "$N2" --admin "$N1_ADMIN" --pid "$N2_PID" --label recover-one \
    --quiet recover --clients "$RECOVERIES" --missed "$MISSED" --parallel 1 >> "$RESULTS" || true
echo "a storm: $STORM_CLIENTS clients each recovering $STORM_MISSED at once" >&2
"$BENCH_BIN" --target "$N2" --admin "$N1_ADMIN" --pid "$N2_PID" --label recover-storm \
    --quiet recover --clients "$STORM_CLIENTS" --missed "$STORM_MISSED" >> "$RESULTS" || true

{
    echo "$ROUNDS round(s) of fanout, ${DURATION}s measured after ${WARMUP}s warm-up, $SUBSCRIBERS subscribers over n1 and n2, $PUBLISHERS publishers on n1;"
    echo "$(nproc) CPUs ($(cpu_model)) shared by nats-server (JetStream, file store), both nodes and the load generator;"
    run_stamp
    echo
    PYTHONPATH=bench python3 - "$RESULTS" <<'PY'
import sys
import side_by_side
rows = side_by_side.load(sys.argv[1])
figs = [
    ("deliveries/s", lambda r: r["deliveries_per_sec"], "{:,.0f}"),
    ("client publishes/s", lambda r: r["published"] / r["seconds"], "{:,.0f}"),
    ("missing or reordered", lambda r: r["missing"] + r["reordered"], "{:.0f}"),
    ("delivery p99 µs", lambda r: r["latency"]["p99_us"], "{:,.0f}"),
    ("NATS in_msgs per publish", lambda r: r["nats"]["in_per_publish"], "{:.2f}"),
    ("NATS out_msgs per publish", lambda r: r["nats"]["out_per_publish"], "{:.2f}"),
]
side_by_side.table(rows, figs, "fanout figure", ("history", "history (stream)"),
                   ("core", "core NATS"), "history/core", second_over_first=False)
print()
print("| recovery | clients | missed each | p50 | p99 | all live | missing or twice |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    if r.get("scenario") != "recover" or not r.get("ok"):
        continue
    res, params = r["results"], r.get("params", {})
    lat = res.get("recovery", {})
    print(f"| {r['server']} | {params.get('clients')} | {params.get('missed')} | "
          f"{lat.get('p50_us', 0) / 1000:.2f} ms | {lat.get('p99_us', 0) / 1000:.2f} ms | "
          f"{res.get('all_live_secs', 'n/a')} s | {res.get('missing_or_duplicated')} |")
side_by_side.failures(rows)
PY
} | tee "$OUT/table.md"
echo "history_cluster.sh: results in $OUT" >&2
if grep -q '"ok":false' "$RESULTS"; then exit 1; fi
