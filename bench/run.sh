#!/usr/bin/env bash
# run.sh - the benchmark: in one run on this machine, measures the raw AMQP
# RPC ceiling (rpc-ceiling), the gateway under wrk (the fib route, a raw
# route to the same workers, and without publisher confirms), heavy calls
# with 1 and 2 workers, 10,000 calls waiting at once, RSS after 10k vs 1M
# requests, and a 3-node cluster with a quorum queue against one node
# (throughput, and the outage when the gateway's node is killed); prints
# every figure, a summary table, and the performance targets next to the
# figures they apply to (met or not).  Loopback only; private RabbitMQ nodes;
# every process it starts is stopped again, also on Ctrl-C.
#
# Environment, with its defaults:
#   DURATION=10       seconds per measurement (ceiling, wrk, heavy)
#   WARMUP=1          seconds of unmeasured load before each ceiling/wrk run
#   PREFETCH=64       fib-worker --prefetch for the ceiling and wrk runs
#   HEAVY_N=100000    n of the heavy calls;  HEAVY_CONNS=8  wrk connections
#   MANY=10000        connections (= calls in flight) of the many-waiting run
#   IDLE=10000        kept-alive idle connections of the idle-memory run
#   LEAK_WARM=10000   requests before the first RSS reading of the leak run
#   LEAK_REQUESTS=1000000  requests before the second
#   OUTAGE_REPS=5     kill -9 repetitions of the cluster's outage figure
#   SKIP_CEILING=1 SKIP_GATEWAY=1 SKIP_RAW=1 SKIP_CONFIRMS=1 SKIP_HEAVY=1
#   SKIP_MANY=1 SKIP_IDLE=1 SKIP_LEAK=1 SKIP_CLUSTER=1
#                     skip that part (ratios need both ceiling and gateway)
#   PERF=1            perf record the gateway during the 64-connection run
#   BUILD_DIR=build   where to build (Release);  OUT_DIR=bench/out  logs
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
PREFETCH=${PREFETCH:-64}
HEAVY_N=${HEAVY_N:-100000}
HEAVY_CONNS=${HEAVY_CONNS:-8}
MANY=${MANY:-10000}
IDLE=${IDLE:-10000}
LEAK_WARM=${LEAK_WARM:-10000}
LEAK_REQUESTS=${LEAK_REQUESTS:-1000000}
OUTAGE_REPS=${OUTAGE_REPS:-5}
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
OUT_DIR=${OUT_DIR:-$ROOT/bench/out}
PY=/usr/bin/python3 # Debian's: the one python3-pika is installed for
[ -x "$PY" ] || PY=python3

BIN=$BUILD_DIR/bin
STAMP=$(date +%Y%m%d-%H%M%S)
LOGS=$OUT_DIR/$STAMP
mkdir -p "$LOGS"

say() { printf '[bench] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- processes

# name -> pid of everything started in the background, for cleanup().
declare -A PIDS=()
FG_PID= # the child run_child waits for
WORK=
broker_dir=
cluster_dir=

stop_pid() { # stop_pid PID: TERM, then KILL after 10 s
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop() { # stop NAME
    local pid=${PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    stop_pid "$pid"
    unset "PIDS[$1]"
}

cleanup() {
    local name
    trap - INT TERM EXIT
    if [ -n "$FG_PID" ]; then stop_pid "$FG_PID"; fi
    for name in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    done
    for name in "${!PIDS[@]}"; do stop "$name"; done
    if [ -n "$broker_dir" ]; then
        bash scripts/broker.sh stop "$broker_dir" >/dev/null 2>&1 ||
            say "could not stop the broker in $broker_dir"
    fi
    if [ -n "$cluster_dir" ]; then
        bash scripts/cluster.sh stop "$cluster_dir" >/dev/null 2>&1 ||
            say "could not stop the cluster in $cluster_dir"
    fi
    if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
    trim_logs
}

# The workers log a line per call (~200 MB over a run): keep their first
# and last lines and every warning.
trim_logs() {
    local f n
    for f in "$LOGS"/worker*.log; do
        if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" -le 1048576 ]; then continue; fi
        n=$(wc -l <"$f")
        {
            head -n 5 "$f"
            echo "[bench: $n lines in all; only warnings/errors and the last 20 lines kept]"
            tail -n +6 "$f" | head -n -20 | grep -E 'level=(warn|error)' || true
            tail -n 20 "$f"
        } >"$f.trim" && mv "$f.trim" "$f"
    done
}
trap 'say "interrupted: stopping everything"; cleanup; exit 130' INT
trap 'say "terminated: stopping everything"; cleanup; exit 143' TERM
trap cleanup EXIT

# start NAME CMD...: runs CMD in its own session (so Ctrl-C reaches only this
# script, which then stops everything), stdout+stderr to $LOGS/NAME.log.
start() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
    PIDS[$name]=$!
}

alive() { [ -n "${PIDS[$1]:-}" ] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

# run_child CMD...: runs CMD and waits for it, in a way Ctrl-C still stops
# this script: wrk catches SIGINT itself, and bash does not run its INT trap
# when a foreground child survives the signal.  Here the child runs in the
# background (so it ignores SIGINT), the trap interrupts `wait` and stops it.
run_child() {
    local rc
    "$@" &
    FG_PID=$!
    wait "$FG_PID" && rc=0 || rc=$?
    FG_PID=
    return "$rc"
}

# A port below Linux's ephemeral range (so 10,000 client sockets cannot take
# it) that nothing listens on.
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] && { echo "$p"; return; }
    done
    die "no free port"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
nfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ---------------------------------------------------------------- programs

workers_ready() { # workers_ready COUNT: wait until COUNT workers logged ready
    local want=$1 have i
    for _ in $(seq 300); do
        have=0
        for i in $(seq "$want"); do
            grep -qs 'msg=ready' "$LOGS/worker$i-$phase.log" && have=$((have + 1))
        done
        [ "$have" -ge "$want" ] && return 0
        sleep 0.1
    done
    die "fib-workers not ready (see $LOGS)"
}

# start_workers COUNT PREFETCH [ARGS...]: (re)starts COUNT fib-workers on
# $URL (or $WORKER_URL), with ARGS.
phase=0
start_workers() {
    local count=$1 prefetch=$2 i
    shift 2
    stop_workers
    phase=$((phase + 1))
    for i in $(seq "$count"); do
        start "worker$i-$phase" "$BIN/fib-worker" --amqp-url "${WORKER_URL:-$URL}" \
            --prefetch "$prefetch" "$@"
    done
    workers_ready "$count"
}

stop_workers() {
    local name
    for name in "${!PIDS[@]}"; do
        [[ $name == worker* ]] && stop "$name"
    done
    return 0
}

# start_gateway NAME PORT ARGS...: starts rpc-gateway on $URL (or
# $GATEWAY_URL), waits for HTTP.
start_gateway() {
    local name=$1 port=$2
    shift 2
    start "$name" "$BIN/rpc-gateway" --amqp-url "${GATEWAY_URL:-$URL}" \
        --listen "127.0.0.1:$port" --log-level warn "$@"
    for _ in $(seq 300); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/fib/x" && return 0
        alive "$name" || die "$name exited at start (see $LOGS/$name.log)"
        sleep 0.1
    done
    die "$name does not answer HTTP"
}

# wait_200 PORT: until /fib/10 answers 200 (AMQP link up, workers seen).
wait_200() {
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            "http://127.0.0.1:$1/fib/10")" = 200 ] && return 0
        sleep 0.1
    done
    die "the gateway on :$1 never answered /fib/10 with 200"
}

# ---------------------------------------------------------------- wrk

# wrk_run NAME ARGS...: runs wrk --latency, keeps its output in $LOGS/NAME.txt
# and sets W_RPS W_REQS W_P50 W_P99 (µs) W_NON2XX W_SOCKERR.
wrk_run() {
    local name=$1 out
    shift
    out=$LOGS/$name.txt
    run_child wrk --latency "$@" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    read -r W_RPS W_REQS W_P50 W_P99 W_NON2XX W_SOCKERR < <(awk '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return v * 1000
            if (v ~ /m$/)  return v * 60e6
            if (v ~ /s$/)  return v * 1e6
            return v + 0
        }
        /^Requests\/sec:/            { rps = $2 }
        / requests in /              { reqs = $1 }
        $1 == "50%"                  { p50 = us($2) }
        $1 == "99%"                  { p99 = us($2) }
        /Non-2xx or 3xx responses:/  { non = $NF }
        /Socket errors:/             { gsub(",", ""); err = $4 + $6 + $8 + $10 }
        END { printf "%.0f %d %.0f %.0f %d %d\n", rps, reqs, p50, p99, non, err }
    ' "$out")
}

# ---------------------------------------------------------------- CPU

# Where the CPU goes: clock ticks used so far by the broker, the workers and
# the gateway, and CPU seconds of this script's finished children (the
# client: rpc-ceiling or wrk).  cpu_mark before a run, cpu_per_call after.
TICK=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_now() {
    local w=0 name
    # `times` must run in this shell, not in a $(...) subshell, to see our
    # children; its second line is theirs: "0m1.23s 0m0.45s".
    times >"$WORK/times"
    for name in "${!PIDS[@]}"; do
        [[ $name == worker* ]] && w=$((w + $(ticks "${PIDS[$name]}")))
    done
    CPU_NOW="$(ticks "$(cat "$broker_dir/rabbit.pid")") $w $(ticks "${PIDS[gw]:-0}") $(
        awk 'NR == 2 {
            t = 0
            for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
            printf "%.2f", t }' "$WORK/times")"
}
cpu_mark() { cpu_now; CPU_MARK=$CPU_NOW; }
# cpu_per_call KEY CALLS: sets R[cpu_KEY] to µs of CPU per call, per part,
# and R[gwcpu_KEY] and R[clcpu_KEY] to the gateway's and the client's as
# numbers (empty when there were no calls).
cpu_per_call() {
    local out
    cpu_now
    out=$(awk -v a="$CPU_MARK" -v b="$CPU_NOW" -v n="$2" -v hz="$TICK" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        if (n <= 0) { print "n/a"; exit }
        br = (y[1] - x[1]) / hz * 1e6 / n; wk = (y[2] - x[2]) / hz * 1e6 / n
        gw = (y[3] - x[3]) / hz * 1e6 / n; cl = (y[4] - x[4]) * 1e6 / n
        printf "broker %.0f, workers %.0f, gateway %.1f, client %.0f; total %.0f\n", br, wk, gw, cl, br + wk + gw + cl
        printf "%.1f\n%.1f\n", gw, cl }')
    { # without calls the two numbers are empty (read sets them, and fails)
        IFS= read -r "R[cpu_$1]"
        read -r "R[gwcpu_$1]" || true
        read -r "R[clcpu_$1]" || true
    } <<<"$out"
}

# ---------------------------------------------------------------- results

declare -A R=() # figure -> value, for the summary

ceiling_run() { # ceiling_run K
    local line
    cpu_mark
    line=$("$BIN/rpc-ceiling" --amqp-url "$URL" --inflight "$1" \
        --duration "$DURATION" --warmup "$WARMUP" 2>>"$LOGS/ceiling.err") ||
        { cat "$LOGS/ceiling.err" >&2; die "rpc-ceiling failed"; }
    echo "$line" | tee -a "$LOGS/ceiling.txt"
    R[ceil_cps_$1]=$(sed -n 's/.*calls_per_s=\([0-9]*\).*/\1/p' <<<"$line")
    # wrk corrects its percentiles for coordinated omission; compare like
    # with like (the raw ones are kept for the notes).
    R[ceil_p50_$1]=$(sed -n 's/.* wrk_p50_us=\([0-9]*\).*/\1/p' <<<"$line")
    R[ceil_p99_$1]=$(sed -n 's/.* wrk_p99_us=\([0-9]*\).*/\1/p' <<<"$line")
    R[ceil_raw_$1]="raw p50/p99 $(sed -n 's/.* p50_us=\([0-9]*\).* p99_us=\([0-9]*\).*/\1\/\2/p' <<<"$line") us"
    R[ceil_err_$1]=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
    R[ceil_load_$1]=$(load)
    # The CPU was spent over warm-up + window: count the calls of both.
    cpu_per_call "ceil_$1" "$(awk -v r="${R[ceil_cps_$1]}" -v d="$DURATION" \
        -v w="$WARMUP" 'BEGIN { printf "%.0f", r * (d + w) }')"
}

gw_warnings() { # gw_warnings NAME: warn/error lines the gateway logged
    local f=$LOGS/$1.log
    [ -f "$f" ] || return 0
    if grep -qE 'level=(warn|error)' "$f"; then
        say "$1 logged $(grep -cE 'level=(warn|error)' "$f") warn/error lines, e.g.:"
        grep -E 'level=(warn|error)' "$f" | sed 's/^ts=[^ ]* //' | sort | uniq -c |
            sort -rn | head -5 >&2
    fi
}

check_alive() { # check_alive NAME: complain loudly when it died
    if ! alive "$1"; then
        wait "${PIDS[$1]}" 2>/dev/null && rc=0 || rc=$?
        say "!!! $1 is not running any more (exit status $rc); tail of its log:"
        tail -n 20 "$LOGS/$1.log" >&2 || true
        R[crash_$1]=$rc
        unset "PIDS[$1]"
        return 1
    fi
}

# ================================================================ set-up

setup() {
    command -v wrk >/dev/null || die "wrk is missing: apt-get install -y wrk"
    command -v curl >/dev/null || die "curl is missing: apt-get install -y curl"
    "$PY" -c 'import pika' 2>/dev/null || die "pika is missing: apt-get install -y python3-pika"

    # 10,000 connections need 10,000 descriptors in the gateway and in the client.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    [ "$(ulimit -n)" -ge $((MANY + 200)) ] ||
        say "open-file limit $(ulimit -n) is below MANY=$MANY: that run will fail"

    if ! grep -qs '^CMAKE_BUILD_TYPE:STRING=Release$' "$BUILD_DIR/CMakeCache.txt"; then
        say "configuring a Release build in $BUILD_DIR"
        cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$LOGS/cmake.log" ||
            { cat "$LOGS/cmake.log" >&2; die "cmake failed"; }
    fi
    say "building in $BUILD_DIR"
    cmake --build "$BUILD_DIR" -j "$(nproc)" --target rpc-gateway fib-worker rpc-ceiling \
        >>"$LOGS/cmake.log" 2>&1 || { tail -n 30 "$LOGS/cmake.log" >&2; die "build failed"; }

    WORK=$(mktemp -d /tmp/fibrpc-bench.XXXXXX)
    broker_dir=$WORK/broker
    say "starting a private RabbitMQ node (logs: $LOGS)"
    URL=$(bash scripts/broker.sh start "$broker_dir" 2>>"$LOGS/broker.log")
    say "machine: $(nproc) cores, load $(load); git $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD -- gateway worker 2>/dev/null || echo ' + uncommitted changes in gateway/ or worker/')"
    R[load_start]=$(load)
}

# ================================================================ 1. ceiling

phase_ceiling() {
    say "1. ceiling: rpc-ceiling, 2 workers at prefetch $PREFETCH, ${DURATION}s each (load $(load))"
    ceiling_run 1
    ceiling_run 64
}

# ================================================================ 2. gateway

phase_gateway() {
    say "2. gateway: wrk on /fib/10, ${DURATION}s each (load $(load))"
    URL_10=http://127.0.0.1:$GW_PORT/fib/10
    run_child wrk -t2 -c64 -d"$WARMUP"s "$URL_10" >/dev/null 2>&1 || true
    cpu_mark
    wrk_run wrk-c1 -t1 -c1 -d"$DURATION"s "$URL_10"
    cpu_per_call gw_1 "$W_REQS"
    R[gw_rps_1]=$W_RPS R[gw_p50_1]=$W_P50 R[gw_p99_1]=$W_P99
    R[gw_bad_1]=$((W_NON2XX + W_SOCKERR)) R[gw_load_1]=$(load)
    say "   c=1:  $W_RPS req/s  p50 ${W_P50}us  p99 ${W_P99}us  non-2xx $W_NON2XX  socket errors $W_SOCKERR"
    if [ "${PERF:-0}" = 1 ] && command -v perf >/dev/null; then
        perf record -F 999 -g -o "$LOGS/perf-gw-c64.data" -p "${PIDS[gw]}" \
            -- sleep "$DURATION" >"$LOGS/perf-record.log" 2>&1 &
        PIDS[perf]=$!
    fi
    cpu_mark
    wrk_run wrk-c64 -t2 -c64 -d"$DURATION"s "$URL_10"
    cpu_per_call gw_64 "$W_REQS"
    R[gw_rps_64]=$W_RPS R[gw_p50_64]=$W_P50 R[gw_p99_64]=$W_P99
    R[gw_bad_64]=$((W_NON2XX + W_SOCKERR)) R[gw_load_64]=$(load)
    say "   c=64: $W_RPS req/s  p50 ${W_P50}us  p99 ${W_P99}us  non-2xx $W_NON2XX  socket errors $W_SOCKERR"
    if [ -n "${PIDS[perf]:-}" ]; then
        wait "${PIDS[perf]}" || true
        unset 'PIDS[perf]'
        perf report -i "$LOGS/perf-gw-c64.data" --stdio --no-children \
            --sort dso,symbol 2>/dev/null | grep -v '^#' | grep '%' |
            head -40 >"$LOGS/perf-gw-c64.txt" || true
        say "   perf: top of $LOGS/perf-gw-c64.txt:"
        head -15 "$LOGS/perf-gw-c64.txt" >&2 || true
    fi
    # The HTTP layer alone, through the same gateway: /healthz needs no
    # AMQP, so its CPU per request is what libmicrohttpd, the socket and
    # our handler cost without a call: with the ceiling client's own CPU
    # per call (the AMQP side's work), the floor under the gateway's.
    cpu_mark
    wrk_run wrk-healthz-c64 -t2 -c64 -d"$DURATION"s "http://127.0.0.1:$GW_PORT/healthz"
    cpu_per_call http_64 "$W_REQS"
    R[http_rps_64]=$W_RPS
    say "   /healthz c=64 (no AMQP): $W_RPS req/s, gateway CPU ${R[gwcpu_http_64]} us per request"
    check_alive gw || true
    gw_warnings gw
}

# ================================================================ 3. raw route

# The same calls through a raw route (routes file: POST /raw/fib, body "10",
# to the same queue and workers): what a raw route costs next to fib.
phase_raw() {
    local url=http://127.0.0.1:$GW_PORT/raw/fib
    say "3. raw route: wrk POST /raw/fib (body 10), ${DURATION}s each (load $(load))"
    run_child wrk -t2 -c64 -d"$WARMUP"s -s bench/post_raw.lua "$url" >/dev/null 2>&1 || true
    cpu_mark
    wrk_run wrk-raw-c1 -t1 -c1 -d"$DURATION"s -s bench/post_raw.lua "$url"
    cpu_per_call raw_1 "$W_REQS"
    R[raw_rps_1]=$W_RPS R[raw_p50_1]=$W_P50 R[raw_p99_1]=$W_P99
    R[raw_bad_1]=$((W_NON2XX + W_SOCKERR)) R[raw_load_1]=$(load)
    say "   c=1:  $W_RPS req/s  p50 ${W_P50}us  p99 ${W_P99}us  non-2xx $W_NON2XX  socket errors $W_SOCKERR"
    cpu_mark
    wrk_run wrk-raw-c64 -t2 -c64 -d"$DURATION"s -s bench/post_raw.lua "$url"
    cpu_per_call raw_64 "$W_REQS"
    R[raw_rps_64]=$W_RPS R[raw_p50_64]=$W_P50 R[raw_p99_64]=$W_P99
    R[raw_bad_64]=$((W_NON2XX + W_SOCKERR)) R[raw_load_64]=$(load)
    say "   c=64: $W_RPS req/s  p50 ${W_P50}us  p99 ${W_P99}us  non-2xx $W_NON2XX  socket errors $W_SOCKERR"
    # The fib route once more, right after: the load on a shared machine
    # drifts over a run, so raw is set against fib before and after it.
    wrk_run wrk-c64-again -t2 -c64 -d"$DURATION"s "http://127.0.0.1:$GW_PORT/fib/10"
    R[gw_rps_64_again]=$W_RPS
    if [ -n "${R[gw_rps_64]:-}" ]; then
        R[gw_rps_64_around]=$(( (R[gw_rps_64] + W_RPS) / 2 ))
    else
        R[gw_rps_64_around]=$W_RPS
    fi
    say "   fib again, c=64: $W_RPS req/s (the fib route before and after raw: ${R[gw_rps_64]:-n/a} and $W_RPS)"
    check_alive gw || true
}

# ================================================================ 3b. confirms

# The fib route at 64 connections once more, from a gateway with publisher
# confirms off: what confirms cost (the broker's work to confirm, our
# bookkeeping), set against the 64-connection run of phase 2.
phase_confirms() {
    local port url
    port=$(free_port)
    start_gateway gw-noconf "$port" --confirms 0
    wait_200 "$port"
    url=http://127.0.0.1:$port/fib/10
    say "3b. confirms off: wrk on /fib/10, 64 connections then 1, ${DURATION}s each (load $(load))"
    run_child wrk -t2 -c64 -d"$WARMUP"s "$url" >/dev/null 2>&1 || true
    PIDS[gw_saved]=${PIDS[gw]}
    PIDS[gw]=${PIDS[gw-noconf]} # cpu_now reads the gateway as "gw"
    cpu_mark
    wrk_run wrk-noconf-c64 -t2 -c64 -d"$DURATION"s "$url"
    cpu_per_call noconf_64 "$W_REQS"
    R[noconf_rps_64]=$W_RPS R[noconf_p50_64]=$W_P50 R[noconf_p99_64]=$W_P99
    R[noconf_bad_64]=$((W_NON2XX + W_SOCKERR)) R[noconf_load_64]=$(load)
    cpu_mark
    wrk_run wrk-noconf-c1 -t1 -c1 -d"$DURATION"s "$url"
    cpu_per_call noconf_1 "$W_REQS"
    R[noconf_rps_1]=$W_RPS R[noconf_p50_1]=$W_P50
    PIDS[gw]=${PIDS[gw_saved]}
    unset 'PIDS[gw_saved]'
    say "   c=64: ${R[noconf_rps_64]} req/s  p50 ${R[noconf_p50_64]}us  p99 ${R[noconf_p99_64]}us  non-2xx+socket errors ${R[noconf_bad_64]}"
    say "   c=1:  ${R[noconf_rps_1]} req/s  p50 ${R[noconf_p50_1]}us"
    check_alive gw-noconf || true
    stop gw-noconf
}

# ================================================================ 4. heavy

phase_heavy() {
    local w
    URL_H=http://127.0.0.1:$GW_PORT/fib/$HEAVY_N
    for w in 1 2; do
        start_workers "$w" 1
        wait_200 "$GW_PORT"
        say "4. heavy: /fib/$HEAVY_N, $w worker(s) at prefetch 1, wrk -c$HEAVY_CONNS (load $(load))"
        wrk_run "wrk-heavy-w$w" -t2 -c"$HEAVY_CONNS" -d"$DURATION"s "$URL_H"
        R[heavy_rps_$w]=$W_RPS R[heavy_p50_$w]=$W_P50 R[heavy_bad_$w]=$((W_NON2XX + W_SOCKERR))
        R[heavy_load_$w]=$(load)
        say "   $w worker(s): $W_RPS req/s  p50 ${W_P50}us  non-2xx $W_NON2XX  socket errors $W_SOCKERR"
    done
    check_alive gw || true
}

# ================================================================ 5. many waiting

phase_many() {
    local gw_pid gate
    say "5. many waiting: $MANY connections, one call each, against a slow fake worker (load $(load))"
    start slow "$PY" -u bench/slow_worker.py --amqp-url "$URL" --queue slow_queue \
        --release-at "$MANY" --linger 3 --max-hold 60
    for _ in $(seq 300); do grep -qsx ready "$LOGS/slow.log" && break; sleep 0.1; done
    grep -qsx ready "$LOGS/slow.log" || die "slow_worker.py did not start (see $LOGS/slow.log)"
    MANY_PORT=$(free_port)
    start_gateway gw-many "$MANY_PORT" --queue slow_queue \
        --max-inflight $((MANY + 1000)) --max-connections $((MANY + 1000)) --max-connections-per-ip $((MANY + 1000)) \
        --timeout-ms 120000 --max-timeout-ms 120000 --idle-timeout-s 300
    # Ready when a call is published (it times out; the slow worker drops it).
    for _ in $(seq 300); do
        curl -s --max-time 2 "http://127.0.0.1:$MANY_PORT/fib/10?timeout_ms=1" |
            grep -q '"code": *"timeout"' && break
        sleep 0.1
    done
    gw_pid=${PIDS[gw-many]}
    R[many_rss_idle]=$(rss_kib "$gw_pid") R[many_fds_idle]=$(nfds "$gw_pid")
    # Peak RSS and fds, sampled twice a second while the run lasts.
    (
        max_rss=0 max_fd=0
        while kill -0 "$gw_pid" 2>/dev/null; do
            r=$(rss_kib "$gw_pid") f=$(nfds "$gw_pid")
            [ "$r" -gt "$max_rss" ] && max_rss=$r
            [ "$f" -gt "$max_fd" ] && max_fd=$f
            echo "$max_rss $max_fd" >"$LOGS/many-peak.txt"
            sleep 0.5
        done
    ) &
    PIDS[sampler]=$!
    start many "$PY" -u bench/many_clients.py --port "$MANY_PORT" \
        --connections "$MANY" --path /fib/10 --expect '"fib":"55"' --keep-open 3
    # All calls are in flight once the slow worker holds MANY of them.
    gate=0
    for _ in $(seq 1200); do
        grep -qs '^holding' "$LOGS/slow.log" && { gate=1; break; }
        alive many || break
        sleep 0.1
    done
    if [ "$gate" = 1 ]; then
        R[many_held]=$(sed -n 's/^holding //p' "$LOGS/slow.log")
        R[many_rss]=$(rss_kib "$gw_pid") R[many_fds]=$(nfds "$gw_pid")
        R[many_load]=$(load)
        say "   all in flight: slow worker holds ${R[many_held]}; gateway RSS $(mib "${R[many_rss]}") MiB, ${R[many_fds]} fds"
    else
        say "   !!! the slow worker never held $MANY calls: $(tail -n 2 "$LOGS/slow.log" | tr '\n' ' ')"
    fi
    # Then the same connections, answered and idle (keep-alive).
    for _ in $(seq 1200); do
        grep -qs '^answered' "$LOGS/many.log" && break
        alive many || break
        sleep 0.1
    done
    if grep -qs '^answered' "$LOGS/many.log"; then
        sleep 1
        R[many_rss_after]=$(rss_kib "$gw_pid") R[many_fds_after]=$(nfds "$gw_pid")
        say "   all answered, connections still open: gateway RSS $(mib "${R[many_rss_after]}") MiB, ${R[many_fds_after]} fds"
    fi
    wait "${PIDS[many]}" && R[many_ok]=yes || R[many_ok]=no
    unset "PIDS[many]"
    R[many_line]=$(grep '^many ' "$LOGS/many.log" || echo "many: no result (see $LOGS/many.log)")
    say "   ${R[many_line]}"
    grep -s '^many_clients:' "$LOGS/many.log" >&2 || true
    read -r 'R[many_peak_rss]' 'R[many_peak_fds]' <"$LOGS/many-peak.txt" || true
    R[many_hwm]=$(hwm_kib "$gw_pid")
    say "   gateway peak: VmHWM $(mib "${R[many_hwm]}") MiB, sampled max RSS $(mib "${R[many_peak_rss]:-0}") MiB, max fds ${R[many_peak_fds]:-?} (idle before: $(mib "${R[many_rss_idle]}") MiB, ${R[many_fds_idle]} fds)"
    check_alive gw-many || true
    gw_warnings gw-many
    stop sampler
    stop gw-many
    stop slow
}

# ================================================================ 5b. idle

# What an idle kept-alive connection costs: the gateway's RSS before and
# after IDLE connections that each had one answer (/healthz: no AMQP call,
# so nothing but the connection is left behind) and stay open.
phase_idle() {
    local gw_pid port
    say "5b. idle connections: $IDLE kept-alive connections after one answer each (load $(load))"
    port=$(free_port)
    start_gateway gw-idle "$port" --max-connections $((IDLE + 1000)) \
        --max-connections-per-ip $((IDLE + 1000)) --idle-timeout-s 300
    gw_pid=${PIDS[gw-idle]}
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz"
    sleep 1
    R[idle_rss0]=$(rss_kib "$gw_pid")
    start idle "$PY" -u bench/many_clients.py --port "$port" --connections "$IDLE" \
        --path /healthz --expect '"status":"ok"' --keep-open 5
    for _ in $(seq 1200); do
        grep -qs '^answered' "$LOGS/idle.log" && break
        alive idle || break
        sleep 0.1
    done
    if grep -qs '^answered' "$LOGS/idle.log"; then
        sleep 1
        R[idle_rss]=$(rss_kib "$gw_pid") R[idle_n]=$IDLE
        R[idle_kib]=$(awk -v a="${R[idle_rss0]}" -v b="${R[idle_rss]}" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }')
        say "   RSS $(mib "${R[idle_rss0]}") MiB before, $(mib "${R[idle_rss]}") MiB with $IDLE idle connections: ${R[idle_kib]} KiB each"
    else
        say "   !!! the idle connections were not all answered (see $LOGS/idle.log)"
    fi
    wait "${PIDS[idle]}" || true
    unset "PIDS[idle]"
    check_alive gw-idle || true
    stop gw-idle
}

# ================================================================ 6. leak

phase_leak() {
    local gw_pid total bad chunk
    start_workers 2 "$PREFETCH"
    LEAK_PORT=$(free_port)
    start_gateway gw-leak "$LEAK_PORT"
    wait_200 "$LEAK_PORT"
    gw_pid=${PIDS[gw-leak]}
    URL_10=http://127.0.0.1:$LEAK_PORT/fib/10
    say "6. leak: gateway RSS after $LEAK_WARM and after $LEAK_REQUESTS requests (load $(load))"
    # wrk has no request budget (a script's thread:stop() still waits out
    # -d), so run it in slices until the count is reached.
    total=0 bad=0 chunk=0
    while [ "$total" -lt "$LEAK_WARM" ] && alive gw-leak; do
        chunk=$((chunk + 1))
        wrk_run "wrk-leak-warm-$chunk" -t2 -c64 -d1s "$URL_10"
        total=$((total + W_REQS)) bad=$((bad + W_NON2XX + W_SOCKERR))
        [ "$W_REQS" -gt 0 ] || { say "   !!! no request completed in 1 s"; break; }
    done
    R[leak_rss_warm]=$(rss_kib "$gw_pid") R[leak_n_warm]=$total
    say "   after $total requests: RSS $(mib "${R[leak_rss_warm]}") MiB"
    while [ "$total" -lt "$LEAK_REQUESTS" ] && alive gw-leak; do
        chunk=$((chunk + 1))
        wrk_run "wrk-leak-$chunk" -t2 -c64 -d"$DURATION"s "$URL_10"
        total=$((total + W_REQS)) bad=$((bad + W_NON2XX + W_SOCKERR))
        say "   after $total requests: RSS $(mib "$(rss_kib "$gw_pid")") MiB ($W_RPS req/s)"
        [ "$W_REQS" -gt 0 ] || { say "   !!! no request completed in ${DURATION}s"; break; }
    done
    sleep 1 # let the gateway close wrk's last connections
    R[leak_rss_end]=$(rss_kib "$gw_pid") R[leak_n_end]=$total R[leak_bad]=$bad
    R[leak_fds_end]=$(nfds "$gw_pid") R[leak_load]=$(load)
    check_alive gw-leak || true
    gw_warnings gw-leak
    stop gw-leak
}

# ================================================================ 7. cluster

# wrk_c64 NAME PORT: the gateway phase's 64-connection run on /fib/10 (after
# a warm-up); sets W_* as wrk_run does.
wrk_c64() {
    local url=http://127.0.0.1:$2/fib/10
    run_child wrk -t2 -c64 -d"$WARMUP"s "$url" >/dev/null 2>&1 || true
    wrk_run "$1" -t2 -c64 -d"$DURATION"s "$url"
}

phase_cluster() {
    local port t0 line
    say "7. cluster: 3 nodes and a quorum queue against 1 node and a classic queue, wrk /fib/10 at 64 connections, 2 workers at prefetch $PREFETCH (load $(load))"
    # One node, classic queue: the set-up's node, as in 2., measured again
    # here so that both figures are taken back to back.
    start_workers 2 "$PREFETCH"
    port=$(free_port)
    start_gateway gw-single "$port"
    wait_200 "$port"
    wrk_c64 wrk-single-c64 "$port"
    R[cl_single_rps]=$W_RPS R[cl_single_p50]=$W_P50 R[cl_single_p99]=$W_P99
    R[cl_single_bad]=$((W_NON2XX + W_SOCKERR))
    say "   1 node, classic:  $W_RPS req/s  p50 ${W_P50}us  p99 ${W_P99}us  non-2xx $W_NON2XX  socket errors $W_SOCKERR"
    check_alive gw-single || true
    stop gw-single
    stop_workers

    cluster_dir=$WORK/cluster
    t0=$SECONDS
    CLUSTER_URL=$(bash scripts/cluster.sh start "$cluster_dir" 3 2>>"$LOGS/cluster.log") ||
        { tail -n 30 "$LOGS/cluster.log" >&2; die "the cluster did not start"; }
    R[cl_start_s]=$((SECONDS - t0))
    say "   cluster of 3 up in ${R[cl_start_s]} s"
    WORKER_URL=$CLUSTER_URL start_workers 2 "$PREFETCH" --queue bench_quorum --queue-type quorum
    port=$(free_port)
    GATEWAY_URL=$CLUSTER_URL start_gateway gw-cluster "$port" --queue bench_quorum
    wait_200 "$port"
    wrk_c64 wrk-cluster-c64 "$port"
    R[cl_quorum_rps]=$W_RPS R[cl_quorum_p50]=$W_P50 R[cl_quorum_p99]=$W_P99
    R[cl_quorum_bad]=$((W_NON2XX + W_SOCKERR)) R[cl_load]=$(load)
    say "   3 nodes, quorum:  $W_RPS req/s  p50 ${W_P50}us  p99 ${W_P99}us  non-2xx $W_NON2XX  socket errors $W_SOCKERR"
    check_alive gw-cluster || true
    gw_warnings gw-cluster
    stop gw-cluster
    stop_workers

    say "   outage: kill -9 of the gateway's node -> first 200, $OUTAGE_REPS times (bench/outage.py)"
    FIBRPC_BIN_DIR=$BIN "$PY" -u bench/outage.py --cluster-dir "$cluster_dir" \
        --reps "$OUTAGE_REPS" >"$LOGS/outage.log" 2>&1 || say "   !!! outage.py failed (see $LOGS/outage.log)"
    grep '^outage' "$LOGS/outage.log" | sed 's/^/   /' >&2 || true
    line=$(grep '^outage_ms ' "$LOGS/outage.log" || true)
    R[cl_outage]=${line#outage_ms }
    bash scripts/cluster.sh stop "$cluster_dir" >/dev/null 2>&1 || say "could not stop the cluster"
    cluster_dir=
}

# ================================================================ summary

v() { echo "${R[$1]:-n/a}"; }
ratio() { # ratio A B: A/B with 2 decimals, n/a when either is missing
    awk -v a="${R[$1]:-}" -v b="${R[$2]:-}" 'BEGIN {
        if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'
}
ms() { awk -v u="${R[$1]:-}" 'BEGIN { if (u == "") print "n/a"; else printf "%.3f", u / 1000 }'; }
added_ms() {
    awk -v g="${R[gw_p50_1]:-}" -v c="${R[ceil_p50_1]:-}" 'BEGIN {
        if (g == "" || c == "") print "n/a"; else printf "%.3f", (g - c) / 1000 }'
}

# target LABEL VALUE OP LIMIT UNIT: one line of the targets table; OP is
# "<=" or ">=", or "" for a figure only reported.  VALUE n/a (not measured
# in this run) says so.
target() {
    awk -v l="$1" -v v="$2" -v op="$3" -v t="$4" -v u="$5" 'BEGIN {
        if (v == "" || v == "n/a") { printf "%-60s %10s  %s %s %s  not measured\n", l, "n/a", op, t, u; exit }
        if (op == "") { printf "%-60s %10s  %s\n", l, v, u; exit }
        ok = (op == "<=") ? (v + 0 <= t + 0) : (v + 0 >= t + 0)
        printf "%-60s %10s  %s %s %s  %s\n", l, v, op, t, u, ok ? "met" : "NOT MET" }'
}

# The performance targets (README "Benchmark"), each beside its figure.
targets() {
    local raw_added=n/a
    [ -n "${R[raw_p50_1]:-}" ] && [ -n "${R[ceil_p50_1]:-}" ] &&
        raw_added=$(awk -v g="${R[raw_p50_1]}" -v c="${R[ceil_p50_1]}" 'BEGIN { printf "%.3f", (g - c) / 1000 }')
    echo
    echo "targets (gateway CPU from /proc over the run's calls; load at start ${R[load_start]})"
    target "gateway CPU per call, fib, 64 connections" "$(v gwcpu_gw_64)" "<=" 15 us
    target "gateway CPU per call, fib, 1 connection (reported)" "$(v gwcpu_gw_1)" "" "" us
    target "gateway/ceiling, fib, 64 connections" "$(ratio gw_rps_64 ceil_cps_64)" ">=" 0.75 ""
    target "p50 added at 1 connection, fib" "$(added_ms)" "<=" 0.05 ms
    target "gateway CPU per call, raw route, 64 connections" "$(v gwcpu_raw_64)" "<=" 15 us
    target "gateway CPU per call, raw route, 1 connection (reported)" "$(v gwcpu_raw_1)" "" "" us
    target "gateway/ceiling, raw route, 64 connections" "$(ratio raw_rps_64 ceil_cps_64)" ">=" 0.75 ""
    target "p50 added at 1 connection, raw route" "$raw_added" "<=" 0.05 ms
    target "gateway CPU per call, confirms off, 64 connections" "$(v gwcpu_noconf_64)" "<=" 15 us
    target "gateway CPU per call, confirms off, 1 connection (reported)" "$(v gwcpu_noconf_1)" "" "" us
    target "RSS with $MANY calls in flight (MiB)" "$([ -n "${R[many_rss]:-}" ] && mib "${R[many_rss]}" || echo n/a)" "<=" 60 MiB
    target "memory per idle kept-alive connection (KiB)" "$(v idle_kib)" "<=" 4 KiB
}

summary() {
    {
        echo
        echo "== fib-rpc benchmark $STAMP: $(nproc) cores, load at start ${R[load_start]}, at end $(load)"
        echo "(p50/p99 as wrk reports them, corrected for coordinated omission, also for rpc-ceiling)"
        printf '%-44s %12s %10s %10s  %s\n' "measurement" "req/s" "p50 ms" "p99 ms" "notes"
        if [ -n "${R[ceil_cps_1]:-}" ]; then
            printf '%-44s %12s %10s %10s  %s\n' "ceiling, 1 in flight (rpc-ceiling)" \
                "$(v ceil_cps_1)" "$(ms ceil_p50_1)" "$(ms ceil_p99_1)" "errors $(v ceil_err_1); ${R[ceil_raw_1]}; load ${R[ceil_load_1]}"
            printf '%-44s %12s %10s %10s  %s\n' "ceiling, 64 in flight (rpc-ceiling)" \
                "$(v ceil_cps_64)" "$(ms ceil_p50_64)" "$(ms ceil_p99_64)" "errors $(v ceil_err_64); ${R[ceil_raw_64]}; load ${R[ceil_load_64]}"
        fi
        if [ -n "${R[gw_rps_1]:-}" ]; then
            printf '%-44s %12s %10s %10s  %s\n' "gateway, 1 connection (wrk /fib/10)" \
                "$(v gw_rps_1)" "$(ms gw_p50_1)" "$(ms gw_p99_1)" "non-2xx+socket errors $(v gw_bad_1); load ${R[gw_load_1]}"
            printf '%-44s %12s %10s %10s  %s\n' "gateway, 64 connections (wrk /fib/10)" \
                "$(v gw_rps_64)" "$(ms gw_p50_64)" "$(ms gw_p99_64)" "non-2xx+socket errors $(v gw_bad_64); load ${R[gw_load_64]}"
            printf '%-44s %12s %10s %10s  %s\n' "ratio gateway/ceiling, 1 connection" "$(ratio gw_rps_1 ceil_cps_1)" "" "" ""
            printf '%-44s %12s %10s %10s  %s\n' "ratio gateway/ceiling, 64 connections" "$(ratio gw_rps_64 ceil_cps_64)" "" "" "target >= 0.75"
            printf '%-44s %12s %10s %10s  %s\n' "added round trip at 1 connection (p50, ms)" "$(added_ms)" "" "" "target <= 0.05"
        printf '%-44s %s\n' "CPU per call (us), ceiling at 64" "$(v cpu_ceil_64)"
        printf '%-44s %s\n' "CPU per call (us), gateway at 64" "$(v cpu_gw_64)"
        printf '%-44s %s\n' "CPU per call (us), gateway at 1" "$(v cpu_gw_1)"
        printf '%-44s %s\n' "CPU per request (us), /healthz at 64" \
            "gateway $(v gwcpu_http_64) ($(v http_rps_64) req/s): the HTTP side alone, no AMQP"
        printf '%-44s %s\n' "  floor under the gateway's CPU per call" \
            "$(awk -v h="${R[gwcpu_http_64]:-}" -v c="${R[clcpu_ceil_64]:-}" 'BEGIN {
                if (h == "" || c == "") { print "n/a"; exit }
                printf "%.1f us: /healthz %.1f + the ceiling client %.1f", h + c, h, c }')"
        fi
        if [ -n "${R[raw_rps_1]:-}" ]; then
            printf '%-44s %12s %10s %10s  %s\n' "raw route, 1 connection (POST /raw/fib)" \
                "$(v raw_rps_1)" "$(ms raw_p50_1)" "$(ms raw_p99_1)" "non-2xx+socket errors $(v raw_bad_1); load ${R[raw_load_1]}"
            printf '%-44s %12s %10s %10s  %s\n' "raw route, 64 connections (POST /raw/fib)" \
                "$(v raw_rps_64)" "$(ms raw_p50_64)" "$(ms raw_p99_64)" "non-2xx+socket errors $(v raw_bad_64); load ${R[raw_load_64]}"
            printf '%-44s %12s %10s %10s  %s\n' "ratio raw route/fib route, 1 connection" "$(ratio raw_rps_1 gw_rps_1)" "" "" ""
            printf '%-44s %12s %10s %10s  %s\n' "ratio raw route/fib route, 64 connections" "$(ratio raw_rps_64 gw_rps_64_around)" "" "" "target >= 0.9; fib: mean of the runs before and after raw"
            printf '%-44s %s\n' "CPU per call (us), raw route at 64" "$(v cpu_raw_64)"
            printf '%-44s %s\n' "CPU per call (us), raw route at 1" "$(v cpu_raw_1)"
        fi
        if [ -n "${R[noconf_rps_64]:-}" ]; then
            printf '%-44s %12s %10s %10s  %s\n' "gateway, 64 connections, confirms off" \
                "$(v noconf_rps_64)" "$(ms noconf_p50_64)" "$(ms noconf_p99_64)" "non-2xx+socket errors $(v noconf_bad_64); load ${R[noconf_load_64]}"
            printf '%-44s %12s %10s %10s  %s\n' "ratio confirms on/off, 64 connections" "$(ratio gw_rps_64 noconf_rps_64)" "" "" "target >= 0.9"
            printf '%-44s %s\n' "CPU per call (us), confirms off at 64" "$(v cpu_noconf_64)"
            printf '%-44s %s\n' "CPU per call (us), confirms off at 1" "$(v cpu_noconf_1)"
        fi
        if [ -n "${R[heavy_rps_1]:-}" ]; then
            printf '%-44s %12s %10s %10s  %s\n' "heavy /fib/$HEAVY_N, 1 worker" "$(v heavy_rps_1)" "$(ms heavy_p50_1)" "" "errors $(v heavy_bad_1); load ${R[heavy_load_1]}"
            printf '%-44s %12s %10s %10s  %s\n' "heavy /fib/$HEAVY_N, 2 workers" "$(v heavy_rps_2)" "$(ms heavy_p50_2)" "" "errors $(v heavy_bad_2); load ${R[heavy_load_2]}"
            printf '%-44s %12s %10s %10s  %s\n' "heavy scale factor 2 workers / 1" "$(ratio heavy_rps_2 heavy_rps_1)" "" "" "2 cores shared with broker, gateway, wrk"
        fi
        if [ -n "${R[many_line]:-}" ]; then
            printf '%-44s %12s  %s\n' "$MANY calls waiting: all answered 200" "$(v many_ok)" "${R[many_line]}"
            printf '%-44s %12s  %s\n' "  gateway RSS while all wait (MiB)" "$(mib "${R[many_rss]:-0}")" "peak VmHWM $(mib "${R[many_hwm]:-0}") MiB; idle $(mib "${R[many_rss_idle]:-0}") MiB; target <= 60"
            printf '%-44s %12s  %s\n' "  gateway open fds while all wait" "$(v many_fds)" "peak sampled $(v many_peak_fds); idle $(v many_fds_idle)"
            printf '%-44s %12s  %s\n' "  RSS once answered, connections open (MiB)" "$(mib "${R[many_rss_after]:-0}")" "fds $(v many_fds_after)"
        fi
        if [ -n "${R[idle_kib]:-}" ]; then
            printf '%-44s %12s  %s\n' "$(v idle_n) idle kept-alive connections: RSS (MiB)" "$(mib "${R[idle_rss]:-0}")" \
                "before them $(mib "${R[idle_rss0]:-0}") MiB: $(v idle_kib) KiB each; target <= 4"
        fi
        if [ -n "${R[leak_rss_end]:-}" ]; then
            printf '%-44s %12s  %s\n' "leak: RSS after $(v leak_n_warm) requests (MiB)" "$(mib "${R[leak_rss_warm]}")" ""
            printf '%-44s %12s  %s\n' "leak: RSS after $(v leak_n_end) requests (MiB)" "$(mib "${R[leak_rss_end]}")" \
                "growth $(awk -v a="${R[leak_rss_warm]}" -v b="${R[leak_rss_end]}" 'BEGIN { printf "%+d KiB", b - a }'); non-2xx+socket errors $(v leak_bad); fds $(v leak_fds_end)"
        fi
        if [ -n "${R[cl_quorum_rps]:-}" ]; then
            printf '%-44s %12s %10s %10s  %s\n' "1 node, classic queue (wrk c64 /fib/10)" \
                "$(v cl_single_rps)" "$(ms cl_single_p50)" "$(ms cl_single_p99)" "non-2xx+socket errors $(v cl_single_bad)"
            printf '%-44s %12s %10s %10s  %s\n' "3 nodes, quorum queue (wrk c64 /fib/10)" \
                "$(v cl_quorum_rps)" "$(ms cl_quorum_p50)" "$(ms cl_quorum_p99)" "non-2xx+socket errors $(v cl_quorum_bad); load ${R[cl_load]}; cluster up in $(v cl_start_s) s"
            printf '%-44s %12s %10s %10s  %s\n' "ratio 3-node quorum / 1-node classic" "$(ratio cl_quorum_rps cl_single_rps)" "" "" ""
            printf '%-44s %s\n' "outage, kill -9 of the gateway's node (ms)" "${R[cl_outage]:-n/a} (to the first 200)"
        fi
        targets
        for k in "${!R[@]}"; do
            [[ $k == crash_* ]] && echo "!!! ${k#crash_} died during the run (exit status ${R[$k]})"
        done
        echo "logs: $LOGS"
    } | tee "$LOGS/summary.txt"
}

# ================================================================ main

# Everything runs from here, so bash has read the whole file before it
# starts (editing the script during a run cannot derail it).
main() {
    setup
    start_workers 2 "$PREFETCH"
    [ "${SKIP_CEILING:-0}" = 1 ] || phase_ceiling
    GW_PORT=$(free_port)
    if [ "${SKIP_GATEWAY:-0}" != 1 ] || [ "${SKIP_HEAVY:-0}" != 1 ]; then
        # the fib route as without --routes, and a raw route to its queue
        cat >"$WORK/routes.json" <<'JSON'
{"routes": [
  {"name": "fib", "kind": "fib", "method": "GET", "path": "/fib/{n}", "queue": "rpc_queue"},
  {"name": "rawfib", "method": "POST", "path": "/raw/fib", "queue": "rpc_queue"}
]}
JSON
        start_gateway gw "$GW_PORT" --routes "$WORK/routes.json"
        wait_200 "$GW_PORT"
    fi
    [ "${SKIP_GATEWAY:-0}" = 1 ] || phase_gateway
    if [ "${SKIP_GATEWAY:-0}" != 1 ] && [ "${SKIP_RAW:-0}" != 1 ] && alive gw; then phase_raw; fi
    if [ "${SKIP_GATEWAY:-0}" != 1 ] && [ "${SKIP_CONFIRMS:-0}" != 1 ]; then phase_confirms; fi
    if [ "${SKIP_HEAVY:-0}" != 1 ] && alive gw; then phase_heavy; fi
    stop gw
    [ "${SKIP_MANY:-0}" = 1 ] || phase_many
    [ "${SKIP_IDLE:-0}" = 1 ] || phase_idle
    [ "${SKIP_LEAK:-0}" = 1 ] || phase_leak
    [ "${SKIP_CLUSTER:-0}" = 1 ] || phase_cluster
    summary
}

main "$@"
