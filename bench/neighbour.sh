#!/usr/bin/env bash
# What one client asking one thing at a time gets from the gateway, alone
# on the machine and beside a CPU-bound neighbour on the server's core:
# the cost, to latency, of a worker that yields its core before it sleeps
# (conn-actor/src/park.rs). The gateway runs with one worker on CPU
# --server-cpu (default 0), the load generator (one thread, echo with one
# connection and one ping in flight) on --client-cpu (default 1), and in
# the `neighbour` case a busy loop on the server's CPU for the length of
# the run. Each case starts a fresh gateway; the cases alternate each
# round, and the table gives the median over rounds with the lowest and
# highest.
#
#   bench/neighbour.sh [--rounds N] [--duration SECS] [--warmup SECS]
#                      [--no-build] [--out DIR] [--before BIN]
#                      [--server-cpu N] [--client-cpu N]
#
# --before BIN: an earlier build of the gateway, run beside this one in
# every case of every round, for a before/after from one run.
# Results go to target/bench/neighbour-<time>/ (results.jsonl, table.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

. bench/lib.sh
ROUNDS=5
DURATION=2
WARMUP=0.5
BEFORE_BIN=""
SERVER_CPU=0
CLIENT_CPU=1
while [ $# -gt 0 ]; do
    common_option "$1" "${2:-}"
    if [ "$TAKEN" = 0 ]; then
        case "$1" in
            --before) BEFORE_BIN=$2; TAKEN=2 ;;
            --server-cpu) SERVER_CPU=$2; TAKEN=2 ;;
            --client-cpu) CLIENT_CPU=$2; TAKEN=2 ;;
            -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
            *) echo "neighbour.sh: unknown option $1" >&2; exit 2 ;;
        esac
    fi
    shift "$TAKEN"
done
check_before
prepare_run neighbour
AFTER_BIN=$GATEWAY_BIN
START=$(date +%s)
NEIGHBOUR=""
stop_all() {
    [ -n "$NEIGHBOUR" ] && kill "$NEIGHBOUR" 2>/dev/null
    stop_server
}
trap stop_all EXIT

# run_case BUILD CASE: BUILD after (this build) or before (--before), CASE
# alone or neighbour.
run_case() {
    local build=$1 case=$2 label=gateway
    GATEWAY_BIN=$AFTER_BIN
    if [ "$build" = before ]; then GATEWAY_BIN=$BEFORE_BIN; label=gateway@before; fi
    start_gateway "$label-$case" --workers 1 || return 1
    # Every thread of it, the worker included, once READY says they exist.
    taskset -a -p -c "$SERVER_CPU" "$SERVER_PID" > /dev/null
    if [ "$case" = neighbour ]; then
        taskset -c "$SERVER_CPU" sh -c 'while :; do :; done' &
        NEIGHBOUR=$!
    fi
    taskset -c "$CLIENT_CPU" "$BENCH_BIN" --target "$(ready_field client)" \
        --admin "$(ready_field admin)" --label "$label" --variant "$case" --quiet \
        --threads 1 --duration "$DURATION" --warmup "$WARMUP" \
        echo --connections 1 --depth 1 >> "$RESULTS" || true
    if [ -n "$NEIGHBOUR" ]; then
        kill "$NEIGHBOUR" 2>/dev/null || true
        wait "$NEIGHBOUR" 2>/dev/null || true
        NEIGHBOUR=""
    fi
    stop_server
}

builds="after"
[ -n "$BEFORE_BIN" ] && builds="after before"
for round in $(seq 1 "$ROUNDS"); do
    for case in alone neighbour; do
        for build in $builds; do
            echo "neighbour.sh: round $round $case $build" >&2
            run_case "$build" "$case"
        done
    done
    builds=$(tr ' ' '\n' <<< "$builds" | tac | tr '\n' ' ')
done

{
    echo "One client, one ping in flight: the server on CPU $SERVER_CPU with one worker,"
    echo "the client on CPU $CLIENT_CPU; $ROUNDS round(s) of ${DURATION}s after ${WARMUP}s;"
    echo "$(cpu_model), $(run_stamp)"
    echo
    PYTHONPATH=bench python3 - "$RESULTS" <<'EOF'
import statistics, sys
from collections import defaultdict
import side_by_side
rows = side_by_side.load(sys.argv[1])
runs = defaultdict(list)
for r in rows:
    if r.get("ok"):
        res, lat = r["results"], r["results"]["latency"]
        runs[(r["variant"], r["server"])].append(
            (res["msgs_per_sec"], lat["p50_us"], lat["p99_us"], lat["p999_us"]))
print("| case | build | msgs/s | p50 µs | p99 µs | p99.9 µs | rounds |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for (case, server), got in sorted(runs.items()):
    cells = []
    for i in range(4):
        xs = [run[i] for run in got]
        cells.append("%.0f (%.0f–%.0f)" % (statistics.median(xs), min(xs), max(xs)))
    print("| %s | %s | %s | %d |" % (case, server, " | ".join(cells), len(got)))
side_by_side.failures(rows)
EOF
} | tee "$OUT/table.md"
echo "neighbour.sh: results in $OUT" >&2
