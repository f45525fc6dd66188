#!/usr/bin/env bash
# run.sh - install what is missing, build, and run everything in the
# foreground: a private RabbitMQ node (unless AMQP_URL names a broker), two
# fib-workers and rpc-gateway.  Logs go to the terminal, one line per event,
# prefixed with the program's name.  Ctrl-C (or SIGTERM) stops all it started.
#
# Environment:
#   AMQP_URL          use this broker (or comma-separated list of a cluster's
#                     nodes) instead of starting a private node
#   BROKER_NODES      N > 1: start a private N-node cluster instead
#                     (scripts/cluster.sh); the workers declare a quorum
#                     queue, every program gets every node's URL
#   GATEWAY_LISTEN    where the gateway listens, default 0.0.0.0:8080
#   WORKERS           how many fib-workers, default 2
#   FIBRPC_STATE_DIR  the private node's data and logs, default build/run
# The programs' other environment settings (RPC_QUEUE, FIB_MAX_N, ...) pass
# through; see `build/bin/rpc-gateway --help`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

LISTEN=${GATEWAY_LISTEN:-0.0.0.0:8080}
WORKERS=${WORKERS:-2}
NODES=${BROKER_NODES:-1}
[[ $NODES =~ ^[1-9]$ ]] || { echo "run.sh: BROKER_NODES must be 1-9, not $NODES" >&2; exit 2; }
STATE=${FIBRPC_STATE_DIR:-$ROOT/build/run}

if [ -t 2 ]; then
    say() { printf '\033[1m[run]\033[0m %s\n' "$*" >&2; }
else
    say() { printf '[run] %s\n' "$*" >&2; }
fi

bash scripts/deps.sh
say "building (Release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

pids=()
names=()
broker_dir=
cluster_dir=

cleanup() {
    local i deadline
    trap - INT TERM EXIT
    if [ "${#pids[@]}" -gt 0 ]; then
        say "stopping ${names[*]}"
        # Gateway first (it is last in the list), then the workers.
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
            kill -TERM "${pids[i]}" 2>/dev/null || true
        done
        deadline=$((SECONDS + 10))
        for i in "${!pids[@]}"; do
            while kill -0 "${pids[i]}" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
                sleep 0.1
            done
            if kill -0 "${pids[i]}" 2>/dev/null; then
                say "${names[i]} did not stop in 10 s: killing it"
                kill -KILL "${pids[i]}" 2>/dev/null || true
            fi
        done
        wait 2>/dev/null || true
    fi
    if [ -n "$broker_dir" ]; then
        say "stopping the private RabbitMQ node"
        bash scripts/broker.sh stop "$broker_dir" || true
    fi
    if [ -n "$cluster_dir" ]; then
        say "stopping the private RabbitMQ cluster"
        bash scripts/cluster.sh stop "$cluster_dir" || true
    fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

# Prefixes each line with [name]; ignores Ctrl-C so that it keeps printing
# while the programs shut down.
prefix() {
    trap '' INT TERM
    exec sed -u "s/^/[$1] /"
}

# Starts a program in its own session (Ctrl-C reaches only this script, which
# then stops the programs in order), logging through prefix().
start() {
    local name=$1
    shift
    setsid "$@" </dev/null > >(prefix "$name") 2>&1 &
    pids+=("$!")
    names+=("$name")
}

worker_args=()
if [ -n "${AMQP_URL:-}" ]; then
    url=$AMQP_URL
    say "using the broker named by AMQP_URL"
elif [ "$NODES" -gt 1 ]; then
    cluster_dir=$STATE/cluster
    say "starting a private $NODES-node RabbitMQ cluster in $cluster_dir"
    url=$(bash scripts/cluster.sh start "$cluster_dir" "$NODES")
    # Replicated on every node: the queue outlives any one node.
    worker_args=(--queue-type quorum)
    say "nodes: $url"
    say "  kill -9 one:  bash scripts/cluster.sh kill $cluster_dir 1"
    say "  and back:     bash scripts/cluster.sh restart $cluster_dir 1"
else
    broker_dir=$STATE/broker
    say "starting a private RabbitMQ node in $broker_dir"
    url=$(bash scripts/broker.sh start "$broker_dir")
fi

for i in $(seq "$WORKERS"); do
    start "worker-$i" build/bin/fib-worker --amqp-url "$url" "${worker_args[@]}"
done
start gateway build/bin/rpc-gateway --amqp-url "$url" --listen "$LISTEN"

host=${LISTEN%:*}
port=${LISTEN##*:}
case $host in 0.0.0.0 | "" | "*" | "[::]" | "::") host=127.0.0.1 ;; esac
case $host in *:*) [[ $host == \[* ]] || host="[$host]" ;; esac
base="http://$host:$port"

ready=0
for _ in $(seq 300); do
    if curl -fsS -o /dev/null --max-time 2 "$base/fib/0" 2>/dev/null; then
        ready=1
        break
    fi
    for i in "${!pids[@]}"; do
        kill -0 "${pids[i]}" 2>/dev/null || { say "${names[i]} exited during start-up"; exit 1; }
    done
    sleep 0.1
done
[ "$ready" = 1 ] || { say "the gateway did not answer $base/fib/0 within 30 s"; exit 1; }

say "ready: gateway on $LISTEN, $WORKERS workers.  Try:"
say "  curl -s $base/fib/90"
say "  curl -s '$base/fib/1000?timeout_ms=2000'"
say "Ctrl-C stops everything."

# Until one of them exits (or Ctrl-C).
set +e
wait -n "${pids[@]}"
rc=$?
set -e
for i in "${!pids[@]}"; do
    kill -0 "${pids[i]}" 2>/dev/null || say "${names[i]} exited (status $rc)"
done
exit 1
