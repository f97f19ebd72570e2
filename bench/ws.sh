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

. bench/lib.sh
ONLY="echo fanout churn idle"
while [ $# -gt 0 ]; do
    common_option "$1" "${2:-}"
    if [ "$TAKEN" = 0 ]; then
        case "$1" in
            --only) ONLY=$2; TAKEN=2 ;;
            -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
            *) echo "ws.sh: unknown option $1" >&2; exit 2 ;;
        esac
    fi
    shift "$TAKEN"
done
prepare_run ws

trap stop_server EXIT

# run_case TRANSPORT SCENARIO LOGNAME
run_case() {
    local transport=$1 scenario=$2 log=$3
    start_gateway "$log" --ws-listen 127.0.0.1:0 || return 1
    local admin target
    admin=$(ready_field admin)
    if [ "$transport" = ws ]; then
        target=$(ready_field ws)
    else
        target=$(ready_field client)
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
