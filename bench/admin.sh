#!/usr/bin/env bash
# Admin publishes over HTTPS: connections kept alive against one connection
# (and one TLS handshake) per request, the same gateway build, in one run,
# the two modes alternating, and one table of medians over rounds with the
# ratio kept-alive / per-request.
#
#   bench/admin.sh [--rounds N] [--duration SECS] [--warmup SECS]
#                  [--connections N] [--plain] [--no-build] [--out DIR]
#
# Each case starts a fresh gateway whose admin listener speaks TLS (a
# self-signed certificate made with openssl in the output directory), runs
# `gateway-bench admin` with --connections publishers in flight (8 by
# default), and stops the gateway. --plain speaks plain HTTP instead.
# Results go to target/bench/admin-<time>/ (results.jsonl, table.md, logs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

. bench/lib.sh
CONNECTIONS=8
TLS=1
while [ $# -gt 0 ]; do
    common_option "$1" "${2:-}"
    if [ "$TAKEN" = 0 ]; then
        case "$1" in
            --connections) CONNECTIONS=$2; TAKEN=2 ;;
            --plain) TLS=0; TAKEN=1 ;;
            -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
            *) echo "admin.sh: unknown option $1" >&2; exit 2 ;;
        esac
    fi
    shift "$TAKEN"
done
prepare_run admin

SERVER_TLS=()
BENCH_TLS=()
if [ "$TLS" = 1 ]; then
    # Not a CA: rustls refuses a CA certificate as a server's.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$OUT/tls-key.pem" -out "$OUT/tls-cert.pem" -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost \
        -addext basicConstraints=critical,CA:FALSE > "$OUT/tls-cert.log" 2>&1
    SERVER_TLS=(--admin-tls-cert "$OUT/tls-cert.pem" --admin-tls-key "$OUT/tls-key.pem")
    BENCH_TLS=(--tls-ca "$OUT/tls-cert.pem")
fi

trap stop_server EXIT

# run_case MODE LOGNAME, MODE being kept-alive or per-request
run_case() {
    local mode=$1 log=$2
    start_gateway "$log" "${SERVER_TLS[@]}" || return 1
    local admin target flag=()
    admin=$(ready_field admin)
    target=$(ready_field client)
    [ "$mode" = per-request ] && flag=(--per-request)
    "$BENCH_BIN" --target "$target" --admin "$admin" --pid "$SERVER_PID" "${BENCH_TLS[@]}" \
        --label "$mode" --duration "$DURATION" --warmup "$WARMUP" --quiet \
        admin --connections "$CONNECTIONS" "${flag[@]}" >> "$RESULTS" || true
    stop_server
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="kept-alive per-request"; else order="per-request kept-alive"; fi
    for mode in $order; do
        echo "round $round/$ROUNDS: $mode" >&2
        run_case "$mode" "r$round-$mode"
    done
done

python3 - "$RESULTS" > "$OUT/table.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
figures = [
    ("publishes/s", "publishes_per_sec"),
    ("server CPU µs per publish", "server_cpu_us_per"),
    ("p99 latency µs", "p99"),
]
def value(row, key):
    results = row.get("results", {})
    if key == "p99":
        return (results.get("latency") or {}).get("p99_us")
    return results.get(key)
print("| figure | kept-alive | per-request | kept-alive / per-request | rounds |")
print("| --- | --- | --- | --- | --- |")
for name, key in figures:
    values = {}
    for row in rows:
        v = value(row, key)
        if row.get("ok") and v is not None:
            values.setdefault(row["server"], []).append(v)
    a, b = values.get("kept-alive", []), values.get("per-request", [])
    if not a or not b:
        print(f"| {name} | - | - | - | 0 |")
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    ratio = f"{ma / mb:.2f}" if mb else "-"
    print(f"| {name} | {ma:g} | {mb:g} | {ratio} | {min(len(a), len(b))} |")
PY
cat "$OUT/table.md"
echo "results in $OUT" >&2
