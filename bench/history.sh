#!/usr/bin/env bash
# History on beside history off: the same gateway build, the fanout
# scenario (1000 subscribers, 4 publishers), in one run, the two
# alternating, and one table of medians over rounds with the on/off ratio
# of server CPU per delivery. "on" is --history-size 1000 (every publish
# stored first, plain subscribers), "off" the default.
#
#   bench/history.sh [--rounds N] [--duration SECS] [--warmup SECS]
#                    [--no-build] [--out DIR]
#
# Results go to target/bench/history-<time>/ (results.jsonl, table.md, logs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

. bench/lib.sh
while [ $# -gt 0 ]; do
    common_option "$1" "${2:-}"
    if [ "$TAKEN" = 0 ]; then
        case "$1" in
            -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
            *) echo "history.sh: unknown option $1" >&2; exit 2 ;;
        esac
    fi
    shift "$TAKEN"
done
prepare_run history
trap stop_server EXIT

# run_case MODE LOGNAME, MODE being on or off
run_case() {
    local mode=$1 log=$2 flags=()
    [ "$mode" = on ] && flags=(--history-size 1000)
    start_gateway "$log" "${flags[@]}" || return 1
    "$BENCH_BIN" --target "$(ready_field client)" --admin "$(ready_field admin)" \
        --pid "$SERVER_PID" --label "$mode" --duration "$DURATION" --warmup "$WARMUP" \
        --quiet fanout >> "$RESULTS" || true
    stop_server
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="off on"; else order="on off"; fi
    for mode in $order; do
        echo "round $round/$ROUNDS: history $mode" >&2
        run_case "$mode" "r$round-$mode"
    done
done

python3 - "$RESULTS" > "$OUT/table.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| figure | history on | history off | on / off | rounds |")
print("| --- | --- | --- | --- | --- |")
for name, key in [("deliveries/s", "deliveries_per_sec"), ("server CPU µs per delivery", "server_cpu_us_per")]:
    values = {}
    for row in rows:
        v = row.get("results", {}).get(key)
        if row.get("ok") and v is not None:
            values.setdefault(row["server"], []).append(v)
    on, off = values.get("on", []), values.get("off", [])
    if on and off:
        a, b = statistics.median(on), statistics.median(off)
        print(f"| {name} | {a:g} | {b:g} | {a / b:.3f} | {min(len(on), len(off))} |")
missing = [r for r in rows if r.get("results", {}).get("missing")]
print(f"\nmissing deliveries in any run: {sum(r['results']['missing'] for r in missing)}")
PY
cat "$OUT/table.md"
echo "results in $OUT" >&2
