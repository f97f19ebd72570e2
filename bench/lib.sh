# What the bench scripts share: their
# common options, the release build, the output folder, starting and
# stopping one gateway, and the lines that head a table. Sourced, not run.

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

# check_before: exits when --before named something that is not an
# executable (the scripts that compare against an earlier build).
check_before() {
    if [ -n "${BEFORE_BIN:-}" ] && [ ! -x "$BEFORE_BIN" ]; then
        echo "$(basename "$0"): --before $BEFORE_BIN is not an executable" >&2
        exit 2
    fi
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

# What the cluster scripts (cluster.sh, history_cluster.sh) share: the
# processes they start, stopped on exit (`trap stop_started EXIT`), a
# nats-server on free ports and gateway nodes joined to it.
STARTED=()
stop_started() {
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null || true; done
}

# start_nats [ARGS...]: nats-server on free loopback ports with ARGS (e.g.
# -js -sd DIR), its log in $OUT/nats.log; sets NATS_URL and MONITOR (its
# monitoring address), or exits.
start_nats() {
    local ports=""
    mkdir -p "$OUT/nats"
    nats-server "$@" -a 127.0.0.1 -p -1 -m -1 --ports_file_dir "$OUT/nats" \
        > "$OUT/nats.log" 2>&1 &
    STARTED+=("$!")
    for _ in $(seq 1 100); do
        ports=$(cat "$OUT"/nats/*.ports 2>/dev/null || true)
        [ -n "$ports" ] && break
        sleep 0.1
    done
    [ -n "$ports" ] || { echo "$(basename "$0"): nats-server wrote no ports file" >&2; exit 1; }
    NATS_URL=$(jq -r '.nats[0]' <<< "$ports")
    MONITOR=$(jq -r '.monitoring[0]' <<< "$ports" | sed 's#^http://##; s#/.*##')
}

# start_node NAME [FLAGS...]: a gateway joined to NATS_URL as node NAME,
# with FLAGS, its output in $OUT/NAME.out and .err; sets CLIENT, ADMIN and
# NODE_PID, or exits.
start_node() {
    local name=$1 line=""
    shift
    "$GATEWAY_BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --nats-url "$NATS_URL" --node-id "$name" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" &
    NODE_PID=$!
    STARTED+=("$NODE_PID")
    for _ in $(seq 1 150); do
        line=$(grep -m1 '^READY ' "$OUT/$name.out" 2>/dev/null || true)
        [ -n "$line" ] && break
        sleep 0.1
    done
    [ -n "$line" ] || { echo "$(basename "$0"): $name printed no READY line" >&2; exit 1; }
    CLIENT=$(sed -n 's/.*client=\([^ ]*\).*/\1/p' <<< "$line")
    ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<< "$line")
}

# cpu_model: the machine's CPU model, for the line that heads a table.
cpu_model() {
    sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1
}

# run_stamp: when the run ended, the load average then, how long it took
# (from START, seconds since the epoch) and the commit it ran.
run_stamp() {
    echo "$(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(( $(date +%s) - START ))s; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
}
