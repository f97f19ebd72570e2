#!/usr/bin/env bash
# WebSocket beside TCP (contract section 12): the same gateway build, the
# same scenarios, in one run, the transports alternating, and one table of
# medians over rounds with the ws/tcp ratio of each.
#
#   bench/ws.sh [--rounds N] [--duration SECS] [--warmup SECS]
#               [--only "echo fanout churn idle"] [--no-build] [--out DIR]
#
# Each case starts a fresh gateway with both a TCP and a WebSocket
# listener (so memory figures start clean), runs one gateway-bench scenario
# over one transport (`--transport tcp` with lines framing, or
# `--transport ws`), and stops the gateway. Within a round the order of the
# two transports flips every case and again each round. Results go to
# target/bench/ws-<time>/ (results.jsonl, table.md, server logs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ROUNDS=3
DURATION=5
WARMUP=1
ONLY="echo fanout churn idle"
BUILD=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "ws.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$BUILD" = 1 ]; then
    cargo build --release -p gateway -p gateway-bench
fi
GATEWAY_BIN=target/release/gateway
BENCH_BIN=target/release/gateway-bench
OUT=${OUT:-target/bench/ws-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
git rev-parse --short HEAD > "$OUT/commit" 2>/dev/null || true

SERVER_PID=""
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

# run_case TRANSPORT SCENARIO LOGNAME
run_case() {
    local transport=$1 scenario=$2 log=$3
    "$GATEWAY_BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --ws-listen 127.0.0.1:0 > "$OUT/$log.out" 2> "$OUT/$log.err" &
    SERVER_PID=$!
    local line=""
    for _ in $(seq 1 150); do
        line=$(grep -m1 '^READY ' "$OUT/$log.out" 2>/dev/null || true)
        [ -n "$line" ] && break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        echo "ws.sh: the gateway printed no READY line" >&2
        stop_server
        return 1
    fi
    local admin target
    admin=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<< "$line")
    if [ "$transport" = ws ]; then
        target=$(sed -n 's/.*ws=\([^ ]*\).*/\1/p' <<< "$line")
    else
        target=$(sed -n 's/.*client=\([^ ]*\).*/\1/p' <<< "$line")
    fi
    "$BENCH_BIN" --target "$target" --admin "$admin" --pid "$SERVER_PID" \
        --transport "$transport" --label "$transport" --duration "$DURATION" \
        --warmup "$WARMUP" --quiet "$scenario" >> "$RESULTS" || true
    stop_server
}

flip=0
for round in $(seq 1 "$ROUNDS"); do
    for scenario in $ONLY; do
        if [ "$flip" = 0 ]; then order="tcp ws"; else order="ws tcp"; fi
        flip=$((1 - flip))
        for transport in $order; do
            echo "round $round: $scenario over $transport" >&2
            run_case "$transport" "$scenario" "r$round-$scenario-$transport"
        done
    done
    flip=$((1 - flip))
done

python3 - "$RESULTS" > "$OUT/table.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
figures = [
    ("echo", "msgs/s", "msgs_per_sec"),
    ("fanout", "deliveries/s", "deliveries_per_sec"),
    ("churn", "connect+HELLO+QUIT cycles/s", "cycles_per_sec"),
    ("idle", "RSS KiB per idle connection", "rss_per_conn_kib"),
]
print("| scenario | figure | tcp | ws | ws/tcp | rounds |")
print("| --- | --- | --- | --- | --- | --- |")
for scenario, name, key in figures:
    values = {}
    for t in ("tcp", "ws"):
        values[t] = [r["results"][key] for r in rows
                     if r.get("scenario") == scenario and r.get("server") == t
                     and r.get("ok") and key in r.get("results", {})]
    if not values["tcp"] or not values["ws"]:
        continue
    tcp, ws = statistics.median(values["tcp"]), statistics.median(values["ws"])
    ratio = ws / tcp if tcp else float("nan")
    print(f"| {scenario} | {name} | {tcp:,.2f} | {ws:,.2f} | {ratio:.3f} | {len(values['ws'])} |")
failed = [r for r in rows if not r.get("ok")]
for r in failed:
    print(f"\nfailed: {r.get('scenario')} over {r.get('server')}: {r.get('error') or r.get('failures')}")
PY
cat "$OUT/table.md"
echo "results in $OUT" >&2
