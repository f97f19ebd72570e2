# What the side-by-side bench scripts (ws.sh, admin.sh) share: their
# common options, the release build, the output folder, and starting and
# stopping one gateway. Sourced, not run.

ROUNDS=3
DURATION=5
WARMUP=1
BUILD=1
OUT=""
SERVER_PID=""

# common_option NAME VALUE: takes one of the options every script has;
# sets TAKEN to how many arguments it used, 0 when NAME is not one of them.
common_option() {
    TAKEN=2
    case "$1" in
        --rounds) ROUNDS=$2 ;;
        --duration) DURATION=$2 ;;
        --warmup) WARMUP=$2 ;;
        --out) OUT=$2 ;;
        --no-build) BUILD=0; TAKEN=1 ;;
        *) TAKEN=0 ;;
    esac
}

# prepare_run NAME: builds the release binaries (unless --no-build) and
# makes the output folder target/bench/NAME-<time>/ with results.jsonl.
prepare_run() {
    if [ "$BUILD" = 1 ]; then
        cargo build --release -p gateway -p gateway-bench
    fi
    GATEWAY_BIN=target/release/gateway
    BENCH_BIN=target/release/gateway-bench
    OUT=${OUT:-target/bench/$1-$(date -u +%Y%m%dT%H%M%SZ)}
    mkdir -p "$OUT"
    RESULTS="$OUT/results.jsonl"
    : > "$RESULTS"
    git rev-parse --short HEAD > "$OUT/commit" 2>/dev/null || true
}

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

# start_gateway LOG ARGS...: starts the gateway on free loopback ports with
# ARGS, its output in $OUT/LOG.out and .err, and waits for its READY line:
# sets SERVER_PID and READY_LINE; returns 1 when none came.
start_gateway() {
    local log=$1
    shift
    "$GATEWAY_BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
        > "$OUT/$log.out" 2> "$OUT/$log.err" &
    SERVER_PID=$!
    READY_LINE=""
    for _ in $(seq 1 150); do
        READY_LINE=$(grep -m1 '^READY ' "$OUT/$log.out" 2>/dev/null || true)
        [ -n "$READY_LINE" ] && return 0
        sleep 0.1
    done
    echo "$(basename "$0"): the gateway printed no READY line" >&2
    stop_server
    return 1
}

# ready_field NAME: the address READY_LINE gives for NAME (client, admin, ws).
ready_field() {
    sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$READY_LINE"
}
