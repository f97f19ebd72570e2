#!/usr/bin/env bash
# The Compose stack, live: builds its images from what is on this machine,
# brings it up, checks it, and tears it all down again.
#
# usage: bash deploy/smoke.sh GATEWAY_BIN [PROFILE...]   (e.g. target/debug/gateway)
#
# Run as root. Needs: docker (Debian: docker.io) and docker-compose (or the
# `docker compose` plugin), prometheus (Debian's binary goes into the image),
# python3 with PyYAML, rustc, ldd.
#
# Uses the engine named by DOCKER_HOST; without it, starts its own (dockerd
# --bridge=none --iptables=false, its own socket, data and exec roots, beside
# any engine already running) and stops it again at the end. SMOKE_COMPOSE
# picks the compose command ("docker compose" or "docker-compose").
#
# Nothing leaves 127.0.0.0/8: every service runs on the host network on
# 127.0.0.1 ports picked free now (deploy/docker-compose.local.yml). PROFILEs
# are compose profiles to enable; with two gateway services or more it also
# checks that a publish crosses from one gateway to another.
#
# The last line, on success:
#   deploy smoke passed: <N> gateways, <M> Prometheus targets up, alert <name> fired
# followed, with two gateways or more, by ", a publish crossed from <B> to <A>",
# and with a nats service by ", alert GatewayNatsDisconnected fired with NATS
# stopped" (checked on the second gateway once NATS is stopped).
# With the profile `cluster` the unclustered `gateway` service is left out
# (its two nodes and NATS replace it).
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: bash deploy/smoke.sh GATEWAY_BIN [PROFILE...]" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEWAY_BIN=$(cd "$(dirname "$1")" 2>/dev/null && pwd)/$(basename "$1") || true
shift
PROFILES=("$@")
cd "$ROOT"
[[ -x "$GATEWAY_BIN" ]] || { echo "smoke.sh: $GATEWAY_BIN is not an executable file" >&2; exit 2; }

STEP="start"
step() { STEP=$1; echo; echo "== $1"; }
die() { echo "  FAIL: $*" >&2; echo >&2; echo "deploy smoke FAILED in: $STEP" >&2; exit 1; }
ok() { echo "  ok: $*"; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (${2:-})"; }

# A python3 that has PyYAML (Debian's python3-yaml is the system one's).
PY=""
for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import yaml' 2>/dev/null; then PY=$cand; break; fi
done
[[ -n "$PY" ]] || die "no python3 with PyYAML (Debian: apt-get install python3-yaml)"
HELPER=(env PYTHONDONTWRITEBYTECODE=1 "$PY" deploy/smoke.py)
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

RUN="r$$$(date +%s)"
PROJECT="gatewaysmoke$RUN"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-smoke.XXXXXX")
chmod 755 "$TMP"   # the containers' users read the generated config from here
CONTEXTS="$TMP/contexts"
mkdir -p "$CONTEXTS"
OWN_ENGINE=""
DOCKERD_PID=""
COMPOSE=()
UP=""
PIDS=()
PASSED=""

# Network state before anything starts: the engine must leave it as it was.
net_state() {
    ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sort
    if command -v iptables-save >/dev/null 2>&1; then
        iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' || true
    fi
}
net_state > "$TMP/net.before"

# The production file with the local override, merged by `compose config`
# and without the published ports (see smoke.py plan).
merged() { "${COMPOSE[@]}" -p "$PROJECT" -f deploy/docker-compose.yml -f deploy/docker-compose.local.yml "$@"; }
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$CONTEXTS/compose.yml" "$@"; }

leftovers() {
    local label="label=com.docker.compose.project=$PROJECT"
    docker ps -aq --filter "$label"
    docker network ls -q --filter "$label"
    docker volume ls -q --filter "$label"
    docker images -q "gateway-smoke/*:$RUN"
}

teardown() {
    local status=$? pid
    trap - EXIT
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    if [[ $status != 0 && -n "$UP" ]]; then
        echo; echo "== logs (failure)"
        compose logs --no-color --tail 40 2>&1 | tail -120
    fi
    echo; echo "== tear down"
    if [[ -f "$CONTEXTS/compose.yml" ]] && docker version >/dev/null 2>&1; then
        compose down --volumes --rmi all --remove-orphans --timeout 30 >"$TMP/down.log" 2>&1 \
            || { cat "$TMP/down.log" >&2; status=1; }
        local left
        left=$(leftovers)
        if [[ -n "$left" ]]; then
            echo "  FAIL: left behind: $(echo "$left" | tr '\n' ' ')" >&2; status=1
        else
            echo "  ok: no container, network, volume or image of project $PROJECT is left"
        fi
    fi
    if [[ -n "$OWN_ENGINE" ]]; then
        if [[ -n "$DOCKERD_PID" ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
            kill -TERM "$DOCKERD_PID"
            for _ in $(seq 1 150); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
            if kill -0 "$DOCKERD_PID" 2>/dev/null; then
                echo "  FAIL: dockerd did not stop within 30 s" >&2; kill -KILL "$DOCKERD_PID"; status=1
            fi
            wait "$DOCKERD_PID" 2>/dev/null
        fi
        # dockerd keeps its default network namespace mounted at
        # EXEC_ROOT/netns/default after it stops.
        local mnt
        for mnt in $(awk -v root="$TMP/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r); do
            umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
        done
        if grep -q " $TMP/" /proc/mounts; then
            echo "  FAIL: mounts left under $TMP: $(grep " $TMP/" /proc/mounts | awk '{print $2}' | tr '\n' ' ')" >&2
            status=1
        elif pgrep -f -- "$TMP/" >/dev/null; then
            echo "  FAIL: processes of the engine still run: $(pgrep -a -f -- "$TMP/" | tr '\n' ' ')" >&2
            status=1
        else
            echo "  ok: the engine this check started is stopped (containerd too), nothing of it is mounted"
        fi
    fi
    net_state > "$TMP/net.after"
    if diff "$TMP/net.before" "$TMP/net.after" > "$TMP/net.diff"; then
        echo "  ok: network interfaces and iptables rules as before"
    else
        echo "  FAIL: network interfaces or iptables rules changed:" >&2; cat "$TMP/net.diff" >&2; status=1
    fi
    if grep -q " $TMP/" /proc/mounts; then
        echo "  (kept $TMP: something is still mounted under it)" >&2
    else
        rm -rf "$TMP"
    fi
    if [[ $status == 0 && -n "$PASSED" ]]; then
        echo; echo "$PASSED"
    elif [[ $status == 0 ]]; then
        status=1
    else
        echo "deploy smoke FAILED in: $STEP" >&2
    fi
    exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
step "container engine"
need docker "Debian: apt-get install docker.io"
if [[ -n "${DOCKER_HOST:-}" ]]; then
    docker version >/dev/null 2>&1 || die "no engine answers at DOCKER_HOST=$DOCKER_HOST"
    echo "  using the engine at DOCKER_HOST=$DOCKER_HOST; it is left running"
else
    need dockerd "Debian: apt-get install docker.io"
    [[ $(id -u) == 0 ]] || die "starting dockerd needs root"
    OWN_ENGINE=1
    export DOCKER_HOST="unix://$TMP/docker.sock"
    start_dockerd() { # extra dockerd flags
        dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
            --data-root "$TMP/engine" --exec-root "$TMP/exec" --pidfile "$TMP/dockerd.pid" \
            --host "$DOCKER_HOST" "$@" > "$TMP/dockerd.log" 2>&1 &
        DOCKERD_PID=$!
        for _ in $(seq 1 150); do
            docker version >/dev/null 2>&1 && return 0
            kill -0 "$DOCKERD_PID" 2>/dev/null || return 1
            sleep 0.2
        done
        return 1
    }
    if ! start_dockerd; then
        echo "  dockerd did not start with the default storage driver:" >&2
        tail -5 "$TMP/dockerd.log" >&2
        kill "$DOCKERD_PID" 2>/dev/null; wait "$DOCKERD_PID" 2>/dev/null || true
        echo "  retrying with --storage-driver=vfs"
        start_dockerd --storage-driver=vfs || { tail -20 "$TMP/dockerd.log" >&2; die "dockerd did not start"; }
    fi
    echo "  started dockerd (pid $DOCKERD_PID) with --bridge=none --iptables=false, data under $TMP"
fi
echo "  engine $(docker version --format '{{.Server.Version}}'), storage driver $(docker info --format '{{.Driver}}')"

if [[ -n "${SMOKE_COMPOSE:-}" ]]; then
    read -r -a COMPOSE <<< "$SMOKE_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    die "neither the docker compose plugin nor docker-compose is installed (Debian: apt-get install docker-compose)"
fi
echo "  compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -1))"

# ---------------------------------------------------------------------------
step "build contexts from this machine (nothing is pulled)"
need rustc "the Rust toolchain"
need ldd "Debian: libc-bin"
# stage ROOTFS SRC DEST: SRC at DEST in ROOTFS, with the libraries it links
# against and their loader at the paths the loader looks for them.
stage() {
    local rootfs=$1 src=$2 dest=$3 lib
    install -D -m 0755 "$src" "$rootfs$dest"
    if command -v strip >/dev/null 2>&1; then strip --strip-debug "$rootfs$dest" 2>/dev/null || true; fi
    for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
        [[ -e "$rootfs$lib" ]] || install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
    done
}
# One stage_NAME per build context the local override names
# (${SMOKE_CONTEXTS}/NAME): each writes CONTEXTS/NAME/{Dockerfile,rootfs/}.
stage_gateway() {
    local ctx="$CONTEXTS/gateway" copies dest
    mkdir -p "$ctx/rootfs"
    rustc --edition 2024 -C opt-level=2 -C strip=symbols deploy/healthcheck.rs -o "$TMP/gateway-healthcheck"
    copies=$("${HELPER[@]}" runtime-copies)
    for dest in $copies; do
        case "$(basename "$dest")" in
            gateway) stage "$ctx/rootfs" "$GATEWAY_BIN" "$dest" ;;
            gateway-healthcheck) stage "$ctx/rootfs" "$TMP/gateway-healthcheck" "$dest" ;;
            *) die "deploy/Dockerfile copies $dest from its builder: smoke.sh does not know what that is" ;;
        esac
    done
    "${HELPER[@]}" local-dockerfile "$ctx/rootfs" "$ctx/Dockerfile"
    ok "gateway: deploy/Dockerfile's runtime stage on $(cd "$ctx/rootfs" && find . -type f | sed 's#^\.##' | sort | tr '\n' ' ')"
}
stage_prometheus() {
    local ctx="$CONTEXTS/prometheus"
    need prometheus "Debian: apt-get install prometheus"
    mkdir -p "$ctx/rootfs" "$ctx/data"
    stage "$ctx/rootfs" "$(command -v prometheus)" /bin/prometheus
    cp deploy/local/prometheus.Dockerfile "$ctx/Dockerfile"
    ok "prometheus: $(prometheus --version 2>&1 | head -1)"
}
stage_nats() {
    local ctx="$CONTEXTS/nats"
    need nats-server "Debian: apt-get install nats-server"
    mkdir -p "$ctx/rootfs"
    stage "$ctx/rootfs" "$(command -v nats-server)" /nats-server
    cp deploy/local/nats.Dockerfile "$ctx/Dockerfile"
    ok "nats: $(nats-server --version 2>&1 | head -1)"
}
contexts=$(grep -E '^[[:space:]]*context:' deploy/docker-compose.local.yml \
    | grep -oE '\}/[A-Za-z0-9_-]+[[:space:]]*$' | tr -d '}/ ' | sort -u)
for name in $contexts; do
    declare -F "stage_$name" >/dev/null || die "the local override builds $name: smoke.sh has no stage_$name"
    "stage_$name"
done

# ---------------------------------------------------------------------------
step "compose configuration: host network, 127.0.0.1 ports picked free"
export SMOKE_RUN=$RUN SMOKE_CONTEXTS=$CONTEXTS
export GATEWAY_ADMIN_TOKEN
GATEWAY_ADMIN_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
if [[ ${#PROFILES[@]} -gt 0 ]]; then
    COMPOSE_PROFILES=$(IFS=,; echo "${PROFILES[*]}")
    export COMPOSE_PROFILES
    echo "  profiles: $COMPOSE_PROFILES"
fi
# The nofile limit the engine can grant: a process without CAP_SYS_RESOURCE
# cannot raise its hard limit, and containers inherit the engine's.
SMOKE_NOFILE=$(ulimit -Hn)
if [[ $SMOKE_NOFILE == unlimited || $SMOKE_NOFILE -gt 65536 ]]; then SMOKE_NOFILE=65536; fi
if [[ -z "$OWN_ENGINE" ]]; then SMOKE_NOFILE=65536; fi
export SMOKE_NOFILE
for var in $(grep -o 'SMOKE_[A-Z0-9_]*_PORT\b' deploy/docker-compose.local.yml | sort -u); do
    export "$var=$(free_port)"
done
merged config > "$TMP/merged.yml" 2> "$TMP/compose-config.err" \
    || { cat "$TMP/compose-config.err" >&2; die "compose config failed"; }
"${HELPER[@]}" plan "$TMP/merged.yml" "$CONTEXTS" || die "the local stack is not confined to 127.0.0.1"
chmod 644 "$CONTEXTS/prometheus.yml"
mapfile -t GATEWAYS < "$CONTEXTS/gateways.tsv"
N=${#GATEWAYS[@]}
PROM="127.0.0.1:$SMOKE_PROMETHEUS_PORT"

# ---------------------------------------------------------------------------
step "build the images, start the stack"
compose build > "$TMP/build.log" 2>&1 || { tail -40 "$TMP/build.log" >&2; die "compose build failed"; }
for image in $(docker images --format '{{.Repository}}:{{.Tag}}' "gateway-smoke/*:$RUN"); do
    ok "built $image ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1 / 1e6}'))"
done
UP=1
compose up -d --no-build > "$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; die "compose up failed"; }
compose ps

# ---------------------------------------------------------------------------
step "every gateway serves: a client session, an admin push"
for row in "${GATEWAYS[@]}"; do
    IFS=$'\t' read -r name client admin <<< "$row"
    "${HELPER[@]}" wait-healthy "$admin" 60 || die "$name is not healthy"
    "${HELPER[@]}" session "$client" || die "client session on $name"
    "${HELPER[@]}" push "$client" "$admin" "$GATEWAY_ADMIN_TOKEN" || die "admin push on $name"
done
if [[ $N -ge 2 ]]; then
    step "a publish crosses gateways"
    IFS=$'\t' read -r name_a client_a _ <<< "${GATEWAYS[0]}"
    IFS=$'\t' read -r name_b client_b _ <<< "${GATEWAYS[1]}"
    "${HELPER[@]}" cross "$client_a" "$client_b" 15 || die "a publish on $name_b did not reach $name_a"
    if [[ " ${PROFILES[*]:-} " == *" cluster "* ]]; then
        step "a client that comes back recovers what it missed (history in JetStream)"
        IFS=$'\t' read -r _ _ admin_b <<< "${GATEWAYS[1]}"
        "${HELPER[@]}" recover "$client_a" "$admin_b" "$GATEWAY_ADMIN_TOKEN" 30 \
            || die "a client of $name_a did not recover what $name_b published"
        RECOVERED=1
    fi
fi

# ---------------------------------------------------------------------------
step "Prometheus scrapes every gateway"
M=$("${HELPER[@]}" targets "$PROM" gateway "$N" 60) || die "not every gateway is an up target"
ok "$N gateway targets up, $M targets up in all (http://$PROM/api/v1/targets)"

# ---------------------------------------------------------------------------
IFS=$'\t' read -r STOPPED stopped_client stopped_admin <<< "${GATEWAYS[0]}"
step "docker stop $STOPPED: it drains, and an alert goes off"
"${HELPER[@]}" hold "$stopped_client" "$TMP/held" &
PIDS+=($!)
for _ in $(seq 1 50); do [[ -e "$TMP/held.connected" ]] && break; sleep 0.1; done
[[ -e "$TMP/held.connected" ]] || die "could not hold a client on $STOPPED"
compose stop "$STOPPED" > "$TMP/stop.log" 2>&1 || { cat "$TMP/stop.log" >&2; die "compose stop $STOPPED failed"; }
container=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$STOPPED" | head -1)
code=$(docker inspect --format '{{.State.ExitCode}}' "$container")
[[ $code == 0 ]] || die "$STOPPED exited $code after docker stop, not 0"
wait "${PIDS[-1]}" 2>/dev/null || true
grep -q 'KICK shutdown' "$TMP/held" || die "the held client did not read KICK shutdown (read: $(tr '\n' '|' < "$TMP/held"))"
ok "$STOPPED exited 0; its client read KICK shutdown"
read -r ALERT STATE < <("${HELPER[@]}" alert "$PROM" "$stopped_admin" 60) || die "no alert about the stopped gateway"
ok "alert $ALERT is $STATE for $stopped_admin (http://$PROM/api/v1/alerts)"

CUT=""
if grep -qx nats <(compose config --services); then
    IFS=$'\t' read -r _ _ other_admin <<< "${GATEWAYS[1]}"
    step "docker stop nats: the nodes left are cut off, and an alert goes off"
    compose stop nats > "$TMP/stop.log" 2>&1 || { cat "$TMP/stop.log" >&2; die "compose stop nats failed"; }
    read -r CUT CUT_STATE < <("${HELPER[@]}" alert "$PROM" "$other_admin" 60 GatewayNatsDisconnected) \
        || die "no GatewayNatsDisconnected alert about $other_admin with NATS stopped"
    ok "alert $CUT is $CUT_STATE for $other_admin"
fi

STEP="tear down"
PASSED="deploy smoke passed: $N gateways, $M Prometheus targets up, alert $ALERT fired"
[[ $N -ge 2 ]] && PASSED+=", a publish crossed from $name_b to $name_a"
[[ -n "${RECOVERED:-}" ]] && PASSED+=", a client of $name_a recovered what $name_b published while it was away"
[[ -n "$CUT" ]] && PASSED+=", alert $CUT fired with NATS stopped"
exit 0
