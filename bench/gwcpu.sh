#!/usr/bin/env bash
# gwcpu.sh - the gateway's CPU per call, quickly: starts BIN_DIR's
# rpc-gateway (with the given arguments) against a broker and fib-workers
# already running at $AMQP_URL, runs wrk on /fib/10 (or $PATHQ, with
# $SCRIPT as wrk's -s) at 64 connections REPS times, then at 1 connection,
# and prints the gateway's CPU per call from /proc: the median, each run,
# and each thread's share (us per call / context switches per call; the
# threads in creation order: main, HTTP, AMQP).  With SYSCALLS=1, perf stat
# counts each thread's system calls per request during one more 64-
# connection run.  For comparing two builds on a noisy machine, alternate
# them and compare medians; bench/run.sh is the full benchmark.
#
#   AMQP_URL=amqp://... bench/gwcpu.sh build/bin fib --log-level warn
#
# Environment: AMQP_URL (required), SECS=5 per run, REPS=3, PATHQ=/fib/10,
# SCRIPT (a wrk lua script), SYSCALLS=1.
set -u
[ $# -ge 2 ] || { sed -n '2,16s/^# \{0,1\}//p' "$0" >&2; exit 2; }
BIN=$1 LABEL=$2
shift 2
: "${AMQP_URL:?set AMQP_URL to a broker with fib-workers consuming rpc_queue}"
SECS=${SECS:-5} REPS=${REPS:-3} PATHQ=${PATHQ:-/fib/10}
WRK_S=()
[ -n "${SCRIPT:-}" ] && WRK_S=(-s "$SCRIPT")
PORT=$((20000 + RANDOM % 10000))
TICK=$(getconf CLK_TCK)
LOG=$(mktemp /tmp/gwcpu-"$LABEL".XXXXXX.log)

setsid "$BIN/rpc-gateway" --amqp-url "$AMQP_URL" --listen "127.0.0.1:$PORT" "$@" >"$LOG" 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null; wait $GW 2>/dev/null' EXIT
for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/fib/10")" = 200 ] && break
    sleep 0.05
done
URL=http://127.0.0.1:$PORT$PATHQ

ticks() { awk '{ print $14 + $15 }' "/proc/$GW/stat"; }
threads() { # per thread, in tid order: ticks and context switches
    local t
    for t in $(ls "/proc/$GW/task" | sort -n); do
        printf '%s %s ' "$(awk '{ print $14 + $15 }' "/proc/$GW/task/$t/stat")" \
            "$(awk '/ctxt_switches/ { s += $2 } END { print s }' "/proc/$GW/task/$t/status")"
    done
}
run() { # run CONNS: one line "us_per_call calls p50 | per thread"
    local t=2 a b ta tb out
    [ "$1" = 1 ] && t=1
    a=$(ticks) ta=$(threads)
    out=$(wrk -t"$t" -c"$1" -d"$SECS"s --latency "${WRK_S[@]}" "$URL" 2>&1)
    b=$(ticks) tb=$(threads)
    awk -v a="$a" -v b="$b" -v hz="$TICK" -v ta="$ta" -v tb="$tb" \
        -v n="$(awk '/ requests in /{ print $1 }' <<<"$out")" \
        -v p="$(awk '$1 == "50%" { print $2 }' <<<"$out")" 'BEGIN {
        split(ta, x, " "); split(tb, y, " "); s = ""
        for (i = 1; i <= length(x); i += 2)
            s = s sprintf(" %.1f/%.2f", (y[i] - x[i]) / hz * 1e6 / n, (y[i + 1] - x[i + 1]) / n)
        printf "%.1f %d p50=%s |%s\n", (b - a) / hz * 1e6 / n, n, p, s }'
}
median() { awk '{ print $1 }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

wrk -t2 -c64 -d1s "${WRK_S[@]}" "$URL" >/dev/null 2>&1 # warm-up
r64=$(for _ in $(seq "$REPS"); do run 64; done)
r1=$(run 1)
echo "$LABEL: c64 median $(median <<<"$r64") us/call; c1 $(median <<<"$r1") us/call; load $(cut -d' ' -f1 /proc/loadavg)"
sed 's/^/  c64: /' <<<"$r64"
sed 's/^/  c1:  /' <<<"$r1"

if [ "${SYSCALLS:-0}" = 1 ] && command -v perf >/dev/null; then
    ev=$(for s in epoll_ctl epoll_wait recvfrom sendmsg sendto poll read write ioctl getsockopt setsockopt futex clock_gettime; do
        printf 'syscalls:sys_enter_%s,' "$s"; done)
    wrk -t2 -c64 -d$((SECS + 2))s "${WRK_S[@]}" "$URL" >/dev/null 2>&1 &
    W=$!
    sleep 1
    # The request count is read inside perf's window, so both cover the
    # same span (perf takes a while to attach).
    export PORT
    perf stat --per-thread -e "${ev%,}",context-switches -p "$GW" -o "$LOG.perf" -- \
        bash -c 'cnt() { curl -s "http://127.0.0.1:$PORT/metrics" |
                         awk "/^fibgw_http_requests_total/ { s += \$NF } END { print s }"; }
                 a=$(cnt); sleep '"$SECS"'; echo $(($(cnt) - a))' >"$LOG.n" 2>/dev/null
    wait "$W"
    n=$(cat "$LOG.n")
    echo "  syscalls per request at 64 connections ($n requests), by thread:"
    awk -v n="$n" '/syscalls:|context-switches/ {
            split($1, a, "-"); tid = a[length(a)]; ev = $3; sub("syscalls:sys_enter_", "", ev)
            v = $2; gsub(",", "", v); if (v + 0 > 0) out[tid] = out[tid] sprintf(" %s=%.2f", ev, v / n) }
        END { for (t in out) print "    tid " t ":" out[t] }' "$LOG.perf" | sort
fi
rm -f "$LOG" "$LOG.perf" "$LOG.n"
