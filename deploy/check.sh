#!/usr/bin/env bash
# Checks of the deployment files that need no container engine.
#
# usage: bash deploy/check.sh GATEWAY_BIN      (e.g. target/debug/gateway)
#
# Needs: docker-compose (Debian's package; `docker compose` also works),
# promtool and prometheus (Debian: prometheus), python3 with PyYAML (Debian:
# python3-yaml), nats-server (Debian: nats-server), rustc and cargo. Everything it starts listens on 127.0.0.1
# only and is stopped on exit.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: bash deploy/check.sh GATEWAY_BIN" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEWAY_BIN=$(cd "$(dirname "$1")" 2>/dev/null && pwd)/$(basename "$1") || true
cd "$ROOT"
[[ -x "$GATEWAY_BIN" ]] || { echo "check.sh: $1 is not an executable file" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/deploy-check.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STEP=""
step() { STEP=$1; echo; echo "== $1"; }
die() { echo "  FAIL: $*" >&2; echo >&2; echo "deploy check FAILED in: $STEP" >&2; exit 1; }
ok() { echo "  ok: $*"; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (${2:-})"; }

# A python3 that has PyYAML (Debian's python3-yaml is the system one's).
PY=""
for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import yaml' 2>/dev/null; then PY=$cand; break; fi
done
[[ -n "$PY" ]] || die "no python3 with PyYAML (Debian: apt-get install python3-yaml)"
HELPER=(env PYTHONDONTWRITEBYTECODE=1 "$PY" deploy/check_deploy.py)

# Free TCP port on 127.0.0.1 (for Prometheus, which cannot report its own).
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# http_status URL [HEADER]: prints the HTTP status code (000 when unreachable).
http_status() {
    "$PY" - "$@" <<'EOF'
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    k, v = sys.argv[2].split(": ", 1)
    req.add_header(k, v)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read()
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print("000")
EOF
}
http_body() { "$PY" -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }

echo "deploy check: gateway binary $GATEWAY_BIN"
echo "python: $PY; tools: $(command -v docker-compose || echo 'no docker-compose'), $(command -v promtool || echo 'no promtool'), $(command -v prometheus || echo 'no prometheus')"

# ---------------------------------------------------------------------------
step "compose file: docker-compose config"
# check_deploy.py reads the normalized file: docker-compose v1 writes YAML,
# the v2 plugin JSON (YAML reads both).
if command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
    CONFIG=(config)
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
    CONFIG=(config --format json)
else
    die "neither docker-compose nor the docker compose plugin is installed (Debian: apt-get install docker-compose)"
fi
echo "  using: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -1))"
# The caller's GATEWAY_* / port variables must not change what is checked.
CENV=(env -u GATEWAY_ADMIN_TOKEN -u GATEWAY_MAX_CONNECTIONS -u GATEWAY_CLIENT_PORTS -u GATEWAY_ADMIN_PORTS
      -u RUST_LOG -u PROMETHEUS_PORT -u GRAFANA_PORT -u GRAFANA_ADMIN_PASSWORD -u NATS_MONITOR_PORT
      -u GATEWAY_NODE1_CLIENT_PORT -u GATEWAY_NODE1_ADMIN_PORT -u GATEWAY_NODE2_CLIENT_PORT -u GATEWAY_NODE2_ADMIN_PORT)
"${CENV[@]}" "${COMPOSE[@]}" -f deploy/docker-compose.yml "${CONFIG[@]}" > "$TMP/compose.yml" 2> "$TMP/compose.err" \
    || { cat "$TMP/compose.err" >&2; die "docker-compose config rejected deploy/docker-compose.yml"; }
ok "deploy/docker-compose.yml is valid ($(grep -c '' "$TMP/compose.yml") lines normalized)"
"${CENV[@]}" GATEWAY_CLIENT_PORTS=7000-7003 GATEWAY_ADMIN_PORTS=9000-9003 \
    "${COMPOSE[@]}" -f deploy/docker-compose.yml "${CONFIG[@]}" > "$TMP/compose-scaled.yml" 2> "$TMP/compose.err" \
    || { cat "$TMP/compose.err" >&2; die "docker-compose config rejected the port ranges used for scaling"; }
ok "valid with port ranges for 4 replicas (GATEWAY_CLIENT_PORTS=7000-7003 GATEWAY_ADMIN_PORTS=9000-9003)"
"${CENV[@]}" "${COMPOSE[@]}" -f deploy/docker-compose.yml config --services > "$TMP/services" 2>/dev/null \
    || die "docker-compose config --services failed"
for s in gateway prometheus grafana; do
    grep -qx "$s" "$TMP/services" || die "service $s missing from deploy/docker-compose.yml"
done
ok "services: $(tr '\n' ' ' < "$TMP/services")"

"${CENV[@]}" "${COMPOSE[@]}" -f deploy/docker-compose.yml --profile cluster "${CONFIG[@]}" > "$TMP/compose-cluster.yml" 2> "$TMP/compose.err" \
    || { cat "$TMP/compose.err" >&2; die "docker-compose config rejected the profile cluster"; }
ok "valid with --profile cluster ($("${CENV[@]}" "${COMPOSE[@]}" -f deploy/docker-compose.yml --profile cluster config --services | tr '\n' ' '))"

# ---------------------------------------------------------------------------
step "Prometheus configuration and alert rules: promtool"
need promtool "Debian: apt-get install prometheus"
promtool check config deploy/prometheus.yml || die "promtool check config deploy/prometheus.yml"
promtool check rules deploy/alerts.yml || die "promtool check rules deploy/alerts.yml"
promtool test rules deploy/alerts.test.yml || die "alert rule unit tests (deploy/alerts.test.yml) failed"

# ---------------------------------------------------------------------------
step "Grafana dashboards and provisioning: JSON and YAML parse"
for f in deploy/grafana/dashboards/*.json; do
    "$PY" -m json.tool "$f" > /dev/null || die "$f is not valid JSON"
    ok "$f parses as JSON"
done
for f in deploy/grafana/provisioning/*/*.yml deploy/docker-compose.yml deploy/docker-compose.local.yml deploy/prometheus.yml deploy/alerts.yml; do
    "$PY" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f" || die "$f is not valid YAML"
done
ok "provisioning and deploy YAML files parse"
"${HELPER[@]}" exprs-as-rules "$TMP/dashboard-rules.yml" || die "could not extract the dashboard queries"
promtool check rules "$TMP/dashboard-rules.yml" > "$TMP/promtool.out" 2>&1 \
    || { cat "$TMP/promtool.out" >&2; die "a dashboard query is not valid PromQL"; }
ok "every dashboard query parses as PromQL (promtool)"

# ---------------------------------------------------------------------------
step "Dockerfile, compose, Prometheus and Grafana agree with each other and with the gateway's flags"
"${HELPER[@]}" static "$GATEWAY_BIN" "$TMP/compose.yml" || die "consistency checks failed (see FAIL lines above)"
"${HELPER[@]}" cluster "$TMP/compose-cluster.yml" || die "the profile cluster is not consistent (see FAIL lines above)"

# ---------------------------------------------------------------------------
step "Dockerfile dependency layer: the workspace loads from manifests and placeholder sources"
need cargo
mkdir -p "$TMP/stage"
"${HELPER[@]}" stage-manifests "$TMP/stage" || die "could not stage the manifests the Dockerfile copies"
(cd "$TMP/stage" && sh "$ROOT/deploy/docker/stub-sources.sh" $(grep -o 'stub-sources [^>]*' "$ROOT/deploy/Dockerfile" | cut -d' ' -f2-)) \
    > "$TMP/stubs" || die "deploy/docker/stub-sources.sh failed"
ok "stub-sources created $(wc -l < "$TMP/stubs") placeholder files"
if ! (cd "$TMP/stage" && cargo metadata --locked --offline --format-version 1 > /dev/null 2> "$TMP/meta.err"); then
    (cd "$TMP/stage" && cargo metadata --locked --format-version 1 > /dev/null 2> "$TMP/meta.err") \
        || { cat "$TMP/meta.err" >&2; die "cargo cannot load the stubbed workspace with --locked (is Cargo.lock current and committed?)"; }
fi
ok "cargo metadata --locked resolves the stubbed workspace (the Dockerfile's dependency build can start)"
if git rev-parse --git-dir >/dev/null 2>&1; then
    git ls-files --error-unmatch Cargo.lock >/dev/null 2>&1 && ok "Cargo.lock is tracked by git" \
        || echo "  warning: Cargo.lock exists but is not committed; the image build copies it and builds --locked"
fi

# ---------------------------------------------------------------------------
step "health probe: deploy/healthcheck.rs compiles"
need rustc
rustc --edition 2024 -C opt-level=2 deploy/healthcheck.rs -o "$TMP/gateway-healthcheck" 2> "$TMP/rustc.err" \
    || { cat "$TMP/rustc.err" >&2; die "deploy/healthcheck.rs does not compile"; }
ok "built $TMP/gateway-healthcheck"

# ---------------------------------------------------------------------------
step "the gateway starts with the container's environment (image ENV + compose environment)"
mapfile -t GENV < <("${HELPER[@]}" gateway-env "$TMP/compose.yml")
printf '  %s\n' "${GENV[@]}" | sed 's/\(GATEWAY_ADMIN_TOKEN=\).*/\1<set>/'
TOKEN=""
for kv in "${GENV[@]}"; do [[ $kv == GATEWAY_ADMIN_TOKEN=* ]] && TOKEN=${kv#GATEWAY_ADMIN_TOKEN=}; done
SHUTDOWN=10
for kv in "${GENV[@]}"; do [[ $kv == GATEWAY_SHUTDOWN_TIMEOUT=* ]] && SHUTDOWN=${kv#GATEWAY_SHUTDOWN_TIMEOUT=}; done
# Flags override the listen addresses: loopback, ports chosen by the kernel.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" "${GENV[@]}" \
    "$GATEWAY_BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    > "$TMP/gateway.out" 2> "$TMP/gateway.err" &
GW_PID=$!
PIDS+=("$GW_PID")
READY=""
for _ in $(seq 1 150); do
    READY=$(grep -m1 '^READY ' "$TMP/gateway.out" 2>/dev/null || true)
    [[ -n "$READY" ]] && break
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$READY" ]]; then
    echo "  gateway stdout:"; sed 's/^/    /' "$TMP/gateway.out" >&2
    echo "  gateway stderr:"; tail -20 "$TMP/gateway.err" | sed 's/^/    /' >&2
    kill -0 "$GW_PID" 2>/dev/null && die "no READY line from the gateway within 15 s" \
        || die "the gateway exited before READY with the compose environment"
fi
CLIENT=$(sed -n 's/.*client=\([^ ]*\).*/\1/p' <<< "$READY")
ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<< "$READY")
[[ $CLIENT == 127.0.0.1:* && $ADMIN == 127.0.0.1:* ]] || die "unexpected READY line: $READY"
ok "$READY"

st=$(http_status "http://$ADMIN/healthz"); [[ $st == 200 ]] || die "GET /healthz answered $st, not 200"
ok "GET /healthz 200: $(http_body "http://$ADMIN/healthz")"
st=$(http_status "http://$ADMIN/readyz"); [[ $st == 200 ]] || die "GET /readyz answered $st, not 200"
ok "GET /readyz 200"
st=$(http_status "http://$ADMIN/metrics"); [[ $st == 200 ]] || die "GET /metrics answered $st without a token (Prometheus scrapes without one)"
ok "GET /metrics 200 without a token while GATEWAY_ADMIN_TOKEN is set"
if [[ -n "$TOKEN" ]]; then
    st=$(http_status "http://$ADMIN/api/v1/stats")
    st_auth=$(http_status "http://$ADMIN/api/v1/stats" "Authorization: Bearer $TOKEN")
    if [[ $st == 404 && $st_auth == 404 ]]; then
        echo "  NOTE: this gateway build does not serve /api/v1/stats (404 with and without the token):"
        echo "        the compose token's protection of /api/* is NOT checked"
    else
        [[ $st == 401 ]] || die "GET /api/v1/stats without the token answered $st, not 401 (GATEWAY_ADMIN_TOKEN from compose not enforced)"
        [[ $st_auth == 200 ]] || die "GET /api/v1/stats with the compose token answered $st_auth, not 200"
        ok "/api/v1/stats: 401 without the token, 200 with it"
    fi
fi
"$TMP/gateway-healthcheck" "$ADMIN" || die "the image's health probe failed against the running gateway"
GATEWAY_ADMIN_LISTEN="0.0.0.0:${ADMIN##*:}" "$TMP/gateway-healthcheck" \
    || die "the health probe failed reading GATEWAY_ADMIN_LISTEN=0.0.0.0:PORT (as in the image)"
ok "health probe: exit 0 against $ADMIN (argument) and against 0.0.0.0:${ADMIN##*:} (from GATEWAY_ADMIN_LISTEN)"
DEAD_PORT=$(free_port)
if "$TMP/gateway-healthcheck" "127.0.0.1:$DEAD_PORT" 2>/dev/null; then die "the health probe passed against a closed port"; fi
ok "health probe: non-zero against a closed port"

# ---------------------------------------------------------------------------
step "profile cluster: a node starts with gateway-node-1's environment and joins a real nats-server"
need nats-server "Debian: apt-get install nats-server"
NATS_PORT=$(free_port)
nats-server --addr 127.0.0.1 --port "$NATS_PORT" > "$TMP/nats.log" 2>&1 &
PIDS+=("$!")
mapfile -t NENV < <("${HELPER[@]}" gateway-env "$TMP/compose-cluster.yml" gateway-node-1)
# The compose file's nats://nats:4222 is the nats service's name on the
# compose network; here the same server runs on a loopback port.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" "${NENV[@]}" GATEWAY_NATS_URL="nats://127.0.0.1:$NATS_PORT" \
    "$GATEWAY_BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    > "$TMP/node.out" 2> "$TMP/node.err" &
NODE_PID=$!
PIDS+=("$NODE_PID")
NODE_READY=""
for _ in $(seq 1 150); do
    NODE_READY=$(grep -m1 '^READY ' "$TMP/node.out" 2>/dev/null || true)
    [[ -n "$NODE_READY" ]] && break
    kill -0 "$NODE_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -n "$NODE_READY" ]] || { tail -20 "$TMP/node.err" >&2; die "no READY line from the node with gateway-node-1's environment"; }
NODE_CLIENT=$(sed -n 's/.*client=\([^ ]*\).*/\1/p' <<< "$NODE_READY")
NODE_ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<< "$NODE_READY")
ok "$NODE_READY"
for i in $(seq 1 100); do
    http_body "http://$NODE_ADMIN/healthz" 2>/dev/null | grep -q '"nats": *"connected"' && break
    [[ $i == 100 ]] && { tail -5 "$TMP/node.err" >&2; die "the node did not report \"nats\": \"connected\" on /healthz within 10 s"; }
    sleep 0.1
done
ok "GET /healthz: $(http_body "http://$NODE_ADMIN/healthz")"

# ---------------------------------------------------------------------------
# The alert rules themselves are promtool's (check rules, test rules, above).
step "a real Prometheus scrapes the gateway and the node and runs every dashboard and rule query"
need prometheus "Debian: apt-get install prometheus"
"${HELPER[@]}" prom-config "$ADMIN,$NODE_ADMIN" "$TMP/prometheus.yml" || die "could not write the Prometheus config"
promtool check config "$TMP/prometheus.yml" > /dev/null || die "generated Prometheus config is invalid"
PROM_PORT=$(free_port)
PROM="http://127.0.0.1:$PROM_PORT"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" > "$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
PIDS+=("$PROM_PID")
for i in $(seq 1 300); do
    [[ $(http_status "$PROM/-/ready") == 200 ]] && break
    kill -0 "$PROM_PID" 2>/dev/null || { tail -20 "$TMP/prometheus.log" >&2; die "prometheus exited at start-up"; }
    [[ $i == 300 ]] && { tail -20 "$TMP/prometheus.log" >&2; die "prometheus not ready within 30 s"; }
    sleep 0.1
done
ok "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') ready on 127.0.0.1:$PROM_PORT"
"${HELPER[@]}" wait-up "$PROM" 30 || { tail -20 "$TMP/prometheus.log" >&2; die "Prometheus never scraped the gateway"; }
"${HELPER[@]}" traffic "$CLIENT"
"${HELPER[@]}" traffic "$NODE_CLIENT"
sleep 3   # a few more scrapes, so rates have two samples around the traffic
# The node exports every family the single gateway does, and the cluster's.
"${HELPER[@]}" promql "$PROM" "$NODE_ADMIN" || die "dashboard or rule queries failed against the real gateway's metrics"

# ---------------------------------------------------------------------------
step "SIGTERM (docker stop) drains the gateway: KICK shutdown, exit 0 within the shutdown timeout"
"$PY" deploy/check_deploy.py hold-client "$CLIENT" "$TMP/held" &
HOLD_PID=$!
PIDS+=("$HOLD_PID")
for i in $(seq 1 50); do [[ -e "$TMP/held.connected" ]] && break; sleep 0.1; done
[[ -e "$TMP/held.connected" ]] || die "could not connect a client to $CLIENT"
sleep 0.5
START=$(date +%s.%N)
kill -TERM "$GW_PID"
LIMIT=$(( ${SHUTDOWN%.*} + 5 ))
for _ in $(seq 1 $(( LIMIT * 10 ))); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$GW_PID" 2>/dev/null; then die "the gateway still runs ${LIMIT}s after SIGTERM (shutdown timeout ${SHUTDOWN}s)"; fi
set +e; wait "$GW_PID"; RC=$?; set -e
ELAPSED=$("$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$START" "$(date +%s.%N)")
[[ $RC == 0 ]] || { tail -5 "$TMP/gateway.err" >&2; die "the gateway exited $RC after SIGTERM, not 0"; }
ok "gateway exited 0, ${ELAPSED}s after SIGTERM (stop_grace_period leaves more)"
for _ in $(seq 1 50); do kill -0 "$HOLD_PID" 2>/dev/null || break; sleep 0.1; done
wait "$HOLD_PID" 2>/dev/null || true
grep -q 'KICK shutdown' "$TMP/held" || die "the connected client did not get KICK shutdown (got: $(head -c 200 "$TMP/held" | tr '\n' '|'))"
ok "the connected client read: $(tr '\n' '|' < "$TMP/held")"

if grep -q '^GATEWAY_LOG_FORMAT=json$' <(printf '%s\n' "${GENV[@]}"); then
    "$PY" - "$TMP/gateway.err" <<'EOF' || die "with GATEWAY_LOG_FORMAT=json a stderr line was not JSON"
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8", errors="replace") if l.strip()]
for l in lines:
    json.loads(l)
print(f"  ok: all {len(lines)} stderr lines are JSON objects (GATEWAY_LOG_FORMAT=json from compose)")
EOF
fi
[[ $(grep -c '' "$TMP/gateway.out") == 1 ]] || die "the gateway printed more than the READY line on stdout"
ok "stdout held only the READY line"

echo
echo "deploy check passed"
