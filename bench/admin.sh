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

ROUNDS=3
DURATION=5
WARMUP=1
CONNECTIONS=8
TLS=1
BUILD=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --plain) TLS=0 ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "admin.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$BUILD" = 1 ]; then
    cargo build --release -p gateway -p gateway-bench
fi
GATEWAY_BIN=target/release/gateway
BENCH_BIN=target/release/gateway-bench
OUT=${OUT:-target/bench/admin-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
git rev-parse --short HEAD > "$OUT/commit" 2>/dev/null || true

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

# run_case MODE LOGNAME, MODE being kept-alive or per-request
run_case() {
    local mode=$1 log=$2
    "$GATEWAY_BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "${SERVER_TLS[@]}" \
        > "$OUT/$log.out" 2> "$OUT/$log.err" &
    SERVER_PID=$!
    local line=""
    for _ in $(seq 1 150); do
        line=$(grep -m1 '^READY ' "$OUT/$log.out" 2>/dev/null || true)
        [ -n "$line" ] && break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        echo "admin.sh: the gateway printed no READY line" >&2
        stop_server
        return 1
    fi
    local admin target flag=()
    admin=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<< "$line")
    target=$(sed -n 's/.*client=\([^ ]*\).*/\1/p' <<< "$line")
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
