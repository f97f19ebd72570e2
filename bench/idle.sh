#!/usr/bin/env bash
# Idle memory per connection over every transport, side by side in one
# run: plain TCP, TLS, WebSocket and secure WebSocket, the transports
# alternating each round, and one table of medians with each one's ratio
# to plain TCP, beside the server CPU each connection took to set up (for
# tls and wss, mostly the handshake). Each case starts a fresh gateway (TLS
# with a self-signed certificate made with openssl in the output folder)
# and holds --connections idle subscribed connections (10 000 by default).
#
#   bench/idle.sh [--rounds N] [--connections N] [--no-build] [--out DIR]
#                 [--before BIN]
#
# --before BIN: an earlier build of the gateway, run beside this one on
# every transport in every round (the two alternating), so the table shows
# both and their ratio, before and after a change, from one run.
# Results go to target/bench/idle-<time>/ (results.jsonl, table.md, logs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

. bench/lib.sh
CONNECTIONS=10000
BEFORE_BIN=""
while [ $# -gt 0 ]; do
    common_option "$1" "${2:-}"
    if [ "$TAKEN" = 0 ]; then
        case "$1" in
            --connections) CONNECTIONS=$2; TAKEN=2 ;;
            --before) BEFORE_BIN=$2; TAKEN=2 ;;
            -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
            *) echo "idle.sh: unknown option $1" >&2; exit 2 ;;
        esac
    fi
    shift "$TAKEN"
done
check_before
prepare_run idle
AFTER_BIN=$GATEWAY_BIN
trap stop_server EXIT

# Not a CA: rustls refuses a CA certificate as a server's.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$OUT/tls-key.pem" -out "$OUT/tls-cert.pem" -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost \
    -addext basicConstraints=critical,CA:FALSE > "$OUT/tls-cert.log" 2>&1

# run_case TRANSPORT LOGNAME BUILD, TRANSPORT one of tcp tls ws wss, BUILD
# after (this build) or before (--before); a run of the earlier build is
# labelled TRANSPORT@before.
run_case() {
    local transport=$1 log=$2 build=$3 server=() bench=(--transport tcp) field=client
    local label=$transport
    GATEWAY_BIN=$AFTER_BIN
    if [ "$build" = before ]; then
        GATEWAY_BIN=$BEFORE_BIN; label="$transport@before"
    fi
    case "$transport" in
        tls|wss) server=(--tls-cert "$OUT/tls-cert.pem" --tls-key "$OUT/tls-key.pem")
                 bench+=(--tls-ca "$OUT/tls-cert.pem") ;;
    esac
    case "$transport" in
        ws|wss) server+=(--ws-listen 127.0.0.1:0); bench[1]=ws; field=ws ;;
    esac
    start_gateway "$log" --max-connections $((CONNECTIONS + 100)) "${server[@]}" || return 1
    "$BENCH_BIN" --target "$(ready_field "$field")" --admin "$(ready_field admin)" \
        --pid "$SERVER_PID" --label "$label" --quiet "${bench[@]}" \
        idle --connections "$CONNECTIONS" >> "$RESULTS" || true
    stop_server
}

transports="tcp tls ws wss"
builds="after"
[ -n "$BEFORE_BIN" ] && builds="after before"
for round in $(seq 1 "$ROUNDS"); do
    for transport in $transports; do
        for build in $builds; do
            echo "round $round/$ROUNDS: idle over $transport ($build)" >&2
            run_case "$transport" "r$round-$transport-$build" "$build"
        done
        # The other build first next time.
        builds="$(echo "$builds" | awk '{print $2, $1}')"
    done
    # Another order next round, so drift falls on every transport.
    transports="$(echo "$transports" | awk '{print $4, $1, $2, $3}')"
done

python3 - "$RESULTS" > "$OUT/table.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def runs(label, key):
    return [r["results"][key] for r in rows
            if r.get("server") == label and r.get("ok") and r.get("results", {}).get(key) is not None]
def median(xs):
    return statistics.median(xs) if xs else None
def fmt(x, spec):
    return "-" if x is None else format(x, spec)
def ratio(a, b):
    return None if a is None or not b else a / b
before = any(r.get("server", "").endswith("@before") for r in rows)
head = "| transport | RSS KiB per idle connection | / tcp | server CPU µs per connection set up |"
line = "| --- | ---: | ---: | ---: |"
if before:
    head += " before: KiB | before: CPU µs | KiB after/before | CPU after/before |"
    line += " ---: | ---: | ---: | ---: |"
print(head + " rounds |")
print(line + " ---: |")
tcp = median(runs("tcp", "rss_per_conn_kib"))
for t in ("tcp", "tls", "ws", "wss"):
    kib = runs(t, "rss_per_conn_kib")
    if not kib:
        continue
    m, cpu = median(kib), median(runs(t, "server_cpu_us_per"))
    out = f"| {t} | {m:.2f} | {fmt(ratio(m, tcp), '.2f')} | {fmt(cpu, '.1f')} |"
    if before:
        bm = median(runs(t + "@before", "rss_per_conn_kib"))
        bcpu = median(runs(t + "@before", "server_cpu_us_per"))
        out += f" {fmt(bm, '.2f')} | {fmt(bcpu, '.1f')} | {fmt(ratio(m, bm), '.2f')} | {fmt(ratio(cpu, bcpu), '.2f')} |"
    print(out + f" {len(kib)} |")
failed = [r for r in rows if not r.get("ok")]
for r in failed:
    print(f"\nfailed: {r.get('server')}: {r.get('error') or r.get('failures')}")
PY
cat "$OUT/table.md"
echo "results in $OUT" >&2
