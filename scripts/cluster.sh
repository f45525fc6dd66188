#!/usr/bin/env bash
# cluster.sh - a private, throwaway RabbitMQ cluster on loopback, for the tests,
# run.sh and the benchmark; its nodes are scripts/broker.sh nodes.
#
#   scripts/cluster.sh start DIR [N]     start an N-node cluster (default 3) whose
#                                        state lives in DIR; prints the AMQP URL
#                                        list (comma-separated, node 1 first) and
#                                        writes it to DIR/amqp_urls
#   scripts/cluster.sh stop DIR          stop every node and the cluster's epmd
#   scripts/cluster.sh status DIR [I]    exit 0 when every node (or node I) runs
#   scripts/cluster.sh urls DIR          print the AMQP URL list again
#   scripts/cluster.sh kill DIR I        kill -9 node I's Erlang VM (a crash);
#                                        prints its pid
#   scripts/cluster.sh restart DIR I     start node I again (stopping what is left
#                                        of it first): same name, ports and data;
#                                        it rejoins the cluster by itself
#   scripts/cluster.sh stop-node DIR I   stop node I cleanly, keeping its state
#   scripts/cluster.sh ctl DIR I ARGS... run rabbitmqctl ARGS against node I
#   scripts/cluster.sh queues DIR I ARGS... run rabbitmq-queues ARGS against node I
#
# Nodes are numbered from 1 and live in DIR/node1 .. DIR/nodeN, each with its
# own AMQP and distribution ports, data and logs (as broker.sh makes them),
# one Erlang cookie for all and one epmd (DIR/epmd.pid, its port in
# DIR/cluster.env).  Node 1 forms the cluster; the others join it
# (rabbitmqctl stop_app, join_cluster, start_app).  Declare quorum queues
# only once start has returned: a queue's members are the nodes in the
# cluster when it is declared.  Never touches the system service.
#
# Environment: BROKER_START_TIMEOUT (seconds per node, default 60).
set -euo pipefail

# broker.sh's functions (ports, processes, a node's files, launching and
# stopping a node); sourcing it runs nothing.
# shellcheck source=broker.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/broker.sh"

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

usage() {
    sed -n '2,20s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

node_dir() { echo "$1/node$2"; }

node_count() {
    # shellcheck source=/dev/null
    (. "$1/cluster.env" && echo "$NODES")
}

node_name() {
    # shellcheck source=/dev/null
    (. "$1/broker.env" && echo "$NODENAME")
}

# check_index DIR I: I names one of the cluster's nodes.
check_index() {
    local n
    [ -f "$1/cluster.env" ] || die "no cluster in $1 (start it first)"
    n=$(node_count "$1")
    if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt "$n" ]; then
        die "no node $2 in $1 (nodes 1-$n)"
    fi
}

# ctl_node NODEDIR TOOL ARGS...: a RabbitMQ CLI tool against that node.
ctl_node() {
    local dir=$1 tool=$2 sbin
    shift 2
    sbin=$(find_rabbit_sbin) || die "RabbitMQ not found (apt-get install rabbitmq-server)"
    (
        load_env "$dir"
        cd "$dir"
        timeout 120 "$sbin/$tool" -q -n "$NODENAME" "$@" </dev/null
    )
}

write_urls() {
    local dir=$1 n i urls=
    n=$(node_count "$dir")
    for i in $(seq "$n"); do
        # shellcheck source=/dev/null
        urls+="${urls:+,}amqp://guest:guest@127.0.0.1:$(. "$(node_dir "$dir" "$i")/broker.env"; echo "$AMQP_PORT")/%2F"
    done
    echo "$urls" >"$dir/amqp_urls"
}

# ---------------------------------------------------------------- start

# start_cluster_once DIR N SBIN: returns 3 when a port was taken.
start_cluster_once() {
    local dir=$1 n=$2 sbin=$3 picked ports=() epmd cookie i nd amqp dist first pids=() rc=0 p
    picked=$(pick_ports $((1 + 2 * n))) || return 1
    read -r -a ports <<<"$picked"
    epmd=${ports[0]}
    rm -rf "$dir"/node* "$dir/log"
    rm -f "$dir/cluster.env" "$dir/amqp_urls" "$dir/epmd.pid"
    printf 'NODES=%s\nEPMD_PORT=%s\n' "$n" "$epmd" >"$dir/cluster.env"
    start_epmd "$dir" "$epmd" || return 3
    cookie=$(new_cookie)
    for i in $(seq "$n"); do
        nd=$(node_dir "$dir" "$i")
        mkdir -p "$nd"
        amqp=${ports[$((2 * i - 1))]}
        dist=${ports[$((2 * i))]}
        write_node "$nd" "$amqp" "$dist" "$epmd" "$cookie" 1
    done
    # The nodes boot side by side (most of a node's start-up is its own
    # Erlang VM loading code; they do not need each other for that).
    for i in $(seq "$n"); do
        nd=$(node_dir "$dir" "$i")
        # shellcheck source=/dev/null
        amqp=$(. "$nd/broker.env"; echo "$AMQP_PORT")
        launch_node "$nd" "$sbin" "$amqp" "$epmd" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do
        wait "$p" || { p=$?; [ "$rc" = 3 ] || rc=$p; }
    done
    [ "$rc" = 0 ] || return "$rc"

    # Then one at a time, each of the others joins node 1.
    first=$(node_name "$(node_dir "$dir" 1)")
    for i in $(seq 2 "$n"); do
        nd=$(node_dir "$dir" "$i")
        # (The CLI prints harmless errors about tables of the node it
        # stopped; they go to the node's join.log.)
        if ! { ctl_node "$nd" rabbitmqctl stop_app &&
            ctl_node "$nd" rabbitmqctl join_cluster "$first" &&
            ctl_node "$nd" rabbitmqctl start_app; } >>"$nd/log/join.log" 2>&1; then
            log "node $i ($(node_name "$nd")) could not join $first:"
            cat "$nd/log/join.log" >&2
            return 1
        fi
    done
    wait_all_running "$dir" 60 || return 1
    write_urls "$dir"
}

# wait_all_running DIR SECONDS: until node 1 sees every node running.
wait_all_running() {
    local dir=$1 deadline=$((SECONDS + $2)) n running
    n=$(node_count "$dir")
    while :; do
        running=$(ctl_node "$(node_dir "$dir" 1)" rabbitmqctl eval \
            'length(rabbit_nodes:all_running()).' 2>/dev/null) || running=0
        [ "$running" = "$n" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "only ${running:-0} of $n nodes running after $2 s"
            return 1
        fi
        sleep 0.2
    done
}

show_cluster_logs() {
    local dir=$1 d
    [ -s "$dir/log/epmd.log" ] && { echo "----- $dir/log/epmd.log" >&2; cat "$dir/log/epmd.log" >&2; }
    for d in "$dir"/node*; do
        [ -d "$d" ] && show_logs "$d"
    done
}

cmd_cluster_start() {
    local dir=$1 n=$2 sbin t0 rc attempt
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 9 ]; then
        die "N must be 1-9, not $n"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/cluster.env" ] && [ "$(node_count "$dir")" = "$n" ] &&
        cmd_cluster_status "$dir" 2>/dev/null; then
        cat "$dir/amqp_urls"
        return 0
    fi
    cmd_cluster_stop "$dir" >/dev/null 2>&1 || true
    command -v epmd >/dev/null 2>&1 || die "epmd not found (install rabbitmq-server / erlang-base)"
    sbin=$(find_rabbit_sbin) || die "RabbitMQ not found (apt-get install rabbitmq-server)"
    t0=$(now_ms)
    for attempt in 1 2 3; do
        rc=0
        start_cluster_once "$dir" "$n" "$sbin" || rc=$?
        [ "$rc" = 0 ] && break
        if [ "$rc" != 3 ] || [ "$attempt" = 3 ]; then
            show_cluster_logs "$dir"
            cmd_cluster_stop "$dir" >/dev/null 2>&1 || true
            die "failed to start a $n-node RabbitMQ cluster in $dir"
        fi
        log "port collision, retrying with other ports"
        cmd_cluster_stop "$dir" >/dev/null 2>&1 || true
    done
    log "RabbitMQ cluster of $n nodes up in $(($(now_ms) - t0)) ms"
    cat "$dir/amqp_urls"
}

# ---------------------------------------------------------------- the others

cmd_cluster_stop() {
    local dir=$1 d rc=0 pids stoppers=()
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    # All nodes at once: stopped one by one, each would wait for the others
    # to take over its queues.
    for d in "$dir"/node*; do
        [ -d "$d" ] || continue
        stop_node "$d" &
        stoppers+=($!)
    done
    for d in "${stoppers[@]}"; do
        wait "$d" || rc=1
    done
    # The epmd, and anything else marked as the cluster's.
    pids=$(marked_pids "$dir")
    # shellcheck disable=SC2086
    if [ -n "$pids" ]; then
        kill -TERM $pids 2>/dev/null || true
        wait_gone 5 $pids || { kill -KILL $pids 2>/dev/null || true; wait_gone 5 $pids || rc=1; }
    fi
    rm -f "$dir/amqp_urls"
    return "$rc"
}

cmd_cluster_status() {
    local dir=$1 i n
    [ -f "$dir/cluster.env" ] || return 1
    if [ -n "${2:-}" ]; then
        check_index "$dir" "$2"
        cmd_status "$(node_dir "$dir" "$2")"
        return
    fi
    n=$(node_count "$dir")
    for i in $(seq "$n"); do
        cmd_status "$(node_dir "$dir" "$i")" || return 1
    done
}

cmd_kill() {
    local dir=$1 i=$2 nd pid
    check_index "$dir" "$i"
    nd=$(node_dir "$dir" "$i")
    pid=$(cat "$nd/rabbit.pid" 2>/dev/null || true)
    alive "$pid" || die "node $i is not running"
    kill -KILL "$pid"
    echo "$pid"
}

cmd_node_restart() {
    local dir=$1 i=$2 nd sbin t0 epmd
    check_index "$dir" "$i"
    dir=$(cd "$dir" && pwd)
    nd=$(node_dir "$dir" "$i")
    sbin=$(find_rabbit_sbin) || die "RabbitMQ not found (apt-get install rabbitmq-server)"
    # shellcheck source=/dev/null
    epmd=$(. "$dir/cluster.env"; echo "$EPMD_PORT")
    tcp_open "$epmd" || die "the cluster's epmd (port $epmd) is not running"
    stop_node "$nd" >/dev/null || die "could not stop what is left of node $i"
    t0=$(now_ms)
    if ! start_once "$nd" "$sbin" reuse; then
        show_logs "$nd"
        stop_node "$nd" >/dev/null 2>&1 || true
        die "failed to restart node $i on its old ports"
    fi
    log "node $i ($(node_name "$nd")) up again in $(($(now_ms) - t0)) ms"
    cat "$nd/amqp_url"
}

cmd_node_stop() {
    local dir=$1 i=$2
    check_index "$dir" "$i"
    dir=$(cd "$dir" && pwd)
    stop_node "$(node_dir "$dir" "$i")"
}

cluster_main() {
    [ $# -ge 2 ] || usage
    local cmd=$1 dir=$2
    shift 2
    case $cmd in
    start)
        [ $# -le 1 ] || usage
        cmd_cluster_start "$dir" "${1:-3}"
        ;;
    stop) [ $# -eq 0 ] || usage; cmd_cluster_stop "$dir" ;;
    status) [ $# -le 1 ] || usage; cmd_cluster_status "$dir" "${1:-}" ;;
    urls)
        [ $# -eq 0 ] || usage
        [ -f "$dir/amqp_urls" ] || die "no cluster running in $dir"
        cat "$dir/amqp_urls"
        ;;
    kill) [ $# -eq 1 ] || usage; cmd_kill "$dir" "$1" ;;
    restart) [ $# -eq 1 ] || usage; cmd_node_restart "$dir" "$1" ;;
    stop-node) [ $# -eq 1 ] || usage; cmd_node_stop "$dir" "$1" ;;
    ctl | queues)
        [ $# -ge 2 ] || usage
        check_index "$dir" "$1"
        local nd
        nd=$(node_dir "$(cd "$dir" && pwd)" "$1")
        shift
        if [ "$cmd" = ctl ]; then
            ctl_node "$nd" rabbitmqctl "$@"
        else
            ctl_node "$nd" rabbitmq-queues "$@"
        fi
        ;;
    *) usage ;;
    esac
}

cluster_main "$@"
