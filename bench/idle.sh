#!/usr/bin/env bash
# Idle memory per connection over every transport, side by side in one
# run: plain TCP, TLS, WebSocket and secure WebSocket, the transports
# alternating each round, and one table of medians with each one's ratio
# to plain TCP. Each case starts a fresh gateway (TLS with a self-signed
# certificate made with openssl in the output folder) and holds
# --connections idle subscribed connections (10 000 by default).
#
#   bench/idle.sh [--rounds N] [--connections N] [--no-build] [--out DIR]
#
# Results go to target/bench/idle-<time>/ (results.jsonl, table.md, logs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

. bench/lib.sh
CONNECTIONS=10000
while [ $# -gt 0 ]; do
    common_option "$1" "${2:-}"
    if [ "$TAKEN" = 0 ]; then
        case "$1" in
            --connections) CONNECTIONS=$2; TAKEN=2 ;;
            -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
            *) echo "idle.sh: unknown option $1" >&2; exit 2 ;;
        esac
    fi
    shift "$TAKEN"
done
prepare_run idle
trap stop_server EXIT

# Not a CA: rustls refuses a CA certificate as a server's.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$OUT/tls-key.pem" -out "$OUT/tls-cert.pem" -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost \
    -addext basicConstraints=critical,CA:FALSE > "$OUT/tls-cert.log" 2>&1

# run_case TRANSPORT LOGNAME, TRANSPORT one of tcp tls ws wss
run_case() {
    local transport=$1 log=$2 server=() bench=(--transport tcp) field=client
    case "$transport" in
        tls|wss) server=(--tls-cert "$OUT/tls-cert.pem" --tls-key "$OUT/tls-key.pem")
                 bench+=(--tls-ca "$OUT/tls-cert.pem") ;;
    esac
    case "$transport" in
        ws|wss) server+=(--ws-listen 127.0.0.1:0); bench[1]=ws; field=ws ;;
    esac
    start_gateway "$log" --max-connections $((CONNECTIONS + 100)) "${server[@]}" || return 1
    "$BENCH_BIN" --target "$(ready_field "$field")" --admin "$(ready_field admin)" \
        --pid "$SERVER_PID" --label "$transport" --quiet "${bench[@]}" \
        idle --connections "$CONNECTIONS" >> "$RESULTS" || true
    stop_server
}

transports="tcp tls ws wss"
for round in $(seq 1 "$ROUNDS"); do
    for transport in $transports; do
        echo "round $round/$ROUNDS: idle over $transport" >&2
        run_case "$transport" "r$round-$transport"
    done
    # Another order next round, so drift falls on every transport.
    transports="$(echo "$transports" | awk '{print $4, $1, $2, $3}')"
done

python3 - "$RESULTS" > "$OUT/table.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
values = {}
for row in rows:
    v = row.get("results", {}).get("rss_per_conn_kib")
    if row.get("ok") and v is not None:
        values.setdefault(row["server"], []).append(v)
tcp = statistics.median(values["tcp"]) if values.get("tcp") else None
print("| transport | RSS KiB per idle connection | / tcp | rounds |")
print("| --- | ---: | ---: | ---: |")
for t in ("tcp", "tls", "ws", "wss"):
    if values.get(t):
        m = statistics.median(values[t])
        ratio = f"{m / tcp:.2f}" if tcp else "-"
        print(f"| {t} | {m:.2f} | {ratio} | {len(values[t])} |")
failed = [r for r in rows if not r.get("ok")]
for r in failed:
    print(f"\nfailed: {r.get('server')}: {r.get('error') or r.get('failures')}")
PY
cat "$OUT/table.md"
echo "results in $OUT" >&2
