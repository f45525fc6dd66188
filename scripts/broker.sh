#!/usr/bin/env bash
# broker.sh - a private, throwaway RabbitMQ node for the tests and for run.sh.
#
#   scripts/broker.sh start DIR    start a node whose whole state lives in DIR;
#                                  prints its AMQP URL and writes it to DIR/amqp_url
#   scripts/broker.sh stop DIR     stop that node and every process it started
#   scripts/broker.sh status DIR   exit 0 when the node in DIR is running
#   scripts/broker.sh restart DIR  start the node in DIR again (stopping it first
#                                  if it runs) with the same name, ports, cookie
#                                  and data; prints the same AMQP URL
#   scripts/broker.sh ctl DIR ARGS...  run rabbitmqctl ARGS against that node
#
# The node listens on 127.0.0.1 only, on free ports, with its own epmd
# (ERL_EPMD_PORT), its own cookie (DIR/home/.erlang.cookie), data and logs
# under DIR and no plugins, so several nodes (and a system RabbitMQ) can run
# side by side.  Never touches the system service or /var/lib/rabbitmq.
#
# Environment: BROKER_START_TIMEOUT (seconds, default 60);
# BROKER_FULL_PLUGIN_PATH=1 to skip the start-up shortcut described below.
set -euo pipefail

readonly START_TIMEOUT=${BROKER_START_TIMEOUT:-60}
# Ports for the node are drawn from here: below Linux's ephemeral range
# (32768-60999), so client sockets and free_port() (bind to port 0) never
# take them between our check and the node's bind.
readonly PORT_MIN=20000 PORT_MAX=32000

die() { echo "broker.sh: $*" >&2; exit 1; }
log() { echo "broker.sh: $*" >&2; }

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

# ---------------------------------------------------------------- locating RabbitMQ

# Prints the directory holding RabbitMQ's own rabbitmq-server/rabbitmq-env
# scripts (not Debian's /usr/sbin wrappers, which su to the rabbitmq user).
find_rabbit_sbin() {
    local c real
    for c in "${RABBITMQ_SBIN_DIR:-}" /usr/lib/rabbitmq/bin /usr/lib/rabbitmq/sbin \
             "$(dirname "$(command -v rabbitmq-server 2>/dev/null || echo /nonexistent)")"; do
        [ -n "$c" ] && [ -e "$c/rabbitmq-server" ] && [ -e "$c/rabbitmq-env" ] || continue
        real=$(readlink -f "$c/rabbitmq-server")
        dirname "$real"
        return 0
    done
    return 1
}

# ---------------------------------------------------------------- ports

port_free() {
    if command -v ss >/dev/null 2>&1; then
        [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
    else
        ! tcp_open "$1"
    fi
}

# pick_ports [COUNT]: prints COUNT (default 3) distinct free ports.
pick_ports() {
    local count=${1:-3} picked=() p tries=0
    while [ "${#picked[@]}" -lt "$count" ]; do
        tries=$((tries + 1))
        [ "$tries" -lt 500 ] || die "no free port found in $PORT_MIN-$PORT_MAX"
        p=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % (PORT_MAX - PORT_MIN)))
        [[ " ${picked[*]:-} " == *" $p "* ]] && continue
        port_free "$p" && picked+=("$p")
    done
    echo "${picked[@]}"
}

# True once something on 127.0.0.1:$1 answers the AMQP 0-9-1 protocol header
# with a method frame (connection.start): the broker accepts AMQP clients.
amqp_ready() {
    local fd b=
    { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    { printf 'AMQP\0\0\x09\x01' >&"$fd"; } 2>/dev/null || true
    IFS= read -r -N 1 -t 2 b <&"$fd" 2>/dev/null || true
    exec {fd}>&-
    [[ $b == $'\x01' ]]
}

tcp_open() {
    local fd
    { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    exec {fd}>&-
}

# ---------------------------------------------------------------- processes

# Every process of a node carries FIBRPC_BROKER_DIR=<DIR> in its environment
# (children inherit it), which is how stop finds leftovers without matching
# on process names.
# (Zombies have an empty environ and are not listed.)
marked_pids() {
    local f
    for f in $(grep -lzxF "FIBRPC_BROKER_DIR=$1" /proc/[0-9]*/environ 2>/dev/null); do
        f=${f#/proc/}
        echo "${f%/environ}"
    done
}

# True while PID runs.  A zombie counts as gone: our processes are reparented
# to init, which may take a while to reap them.
alive() {
    local stat
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# wait_gone SECONDS PID... : true when all PIDs have exited in time.
wait_gone() {
    local deadline=$((SECONDS + $1)) p left
    shift
    while :; do
        left=0
        for p in "$@"; do alive "$p" && left=1; done
        [ "$left" = 0 ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# ---------------------------------------------------------------- node environment

# Sets (and exports) everything a node or its CLI needs, from DIR/broker.env.
load_env() {
    local dir=$1
    [ -f "$dir/broker.env" ] || return 1
    # shellcheck source=/dev/null
    . "$dir/broker.env"
    export HOME="$dir/home"
    export RABBITMQ_NODENAME="$NODENAME"
    export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_LOGS="$dir/log/rabbit.log"
    export RABBITMQ_PID_FILE="$dir/rabbit.pid"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$AMQP_PORT"
    export RABBITMQ_DIST_PORT="$DIST_PORT"
    export ERL_EPMD_PORT="$EPMD_PORT"
    export ERL_EPMD_ADDRESS=127.0.0.1
    # Erlang distribution on loopback only, for every VM started with this
    # environment: the node, the one it spawns to check epmd, rabbitmqctl.
    export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
    unset RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS RABBITMQ_CTL_ERL_ARGS
    unset RABBITMQ_SCRIPTS_DIR RABBITMQ_PLUGINS_DIR RABBITMQ_ENABLED_PLUGINS
}

# Start-up shortcut: RabbitMQ puts every app of its plugins directory (~75) on
# the Erlang code path, and boot loads every module of every loaded app while
# searching that path; with only the ~20 apps `rabbit` needs it starts about a
# second faster.  Builds DIR/rmq (symlinks only) with RabbitMQ's scripts and
# the dependency closure of `rabbit`; prints its sbin dir, or nothing when the
# layout is not the expected one (then the stock directory is used).
make_trimmed_home() {
    local dir=$1 sbin=$2 home plugins app deps todo seen=" " found d
    home=$(dirname "$sbin")
    plugins="$home/plugins"
    [ -d "$plugins" ] && [ -d "$home/escript" ] || return 0
    rm -rf "$dir/rmq"
    mkdir -p "$dir/rmq/sbin" "$dir/rmq/plugins"
    ln -s "$home/escript" "$dir/rmq/escript"
    ln -s "$sbin"/* "$dir/rmq/sbin/"
    todo=(rabbit)
    while [ "${#todo[@]}" -gt 0 ]; do
        app=${todo[0]}
        todo=("${todo[@]:1}")
        [[ $seen == *" $app "* ]] && continue
        seen+="$app "
        # An app is a directory <app>-<version> (or plain <app>) with ebin/<app>.app;
        # apps not found here are OTP's and already on the path.
        found=
        for d in "$plugins/$app" "$plugins/$app"-[0-9]*; do
            [ -f "$d/ebin/$app.app" ] && { found=$d; break; }
        done
        [ -n "$found" ] || continue
        ln -s "$found" "$dir/rmq/plugins/"
        deps=$(tr -d ' \t\n' <"$found/ebin/$app.app" |
               grep -o '{applications,\[[^]]*\]' | head -n 1 |
               sed 's/^{applications,\[//; s/\]$//; s/,/ /g') || deps=
        # shellcheck disable=SC2206
        todo+=($deps)
    done
    if ! compgen -G "$dir/rmq/plugins/rabbit*/ebin/rabbit.app" >/dev/null; then
        rm -rf "$dir/rmq"
        return 0
    fi
    echo "$dir/rmq/sbin"
}

# ---------------------------------------------------------------- start

# write_node DIR AMQP DIST EPMD COOKIE [SHARED_EPMD]: a fresh node's files
# in DIR (data, logs, cookie, config, broker.env); any old state goes.
# With SHARED_EPMD=1 the node uses an epmd someone else runs on EPMD (a
# cluster's, scripts/cluster.sh) instead of starting its own.
write_node() {
    local dir=$1 amqp=$2 dist=$3 epmd=$4 cookie=$5 shared=${6:-}
    rm -rf "${dir:?}/home" "$dir/mnesia" "$dir/log" "$dir/rmq"
    rm -f "$dir"/rabbitmq.conf "$dir"/enabled_plugins "$dir"/rabbitmq-env.conf \
          "$dir"/broker.env "$dir"/amqp_url "$dir"/*.pid
    mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"

    (umask 077; printf '%s' "$cookie" >"$dir/home/.erlang.cookie")
    chmod 400 "$dir/home/.erlang.cookie"
    echo '[].' >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf" # keep /etc/rabbitmq/rabbitmq-env.conf out
    cat >"$dir/rabbitmq.conf" <<EOF
# Private test/dev node created by scripts/broker.sh.
listeners.tcp.1 = 127.0.0.1:$amqp
loopback_users.guest = true
log.console = false
log.file.level = info
EOF
    cat >"$dir/broker.env" <<EOF
NODENAME=fibrpc-$amqp@localhost
AMQP_PORT=$amqp
DIST_PORT=$dist
EPMD_PORT=$epmd
SHARED_EPMD=$shared
EOF
}

new_cookie() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# start_once DIR SBIN [reuse]: with reuse, starts the node DIR already
# describes (broker.env, cookie, config, data) on its recorded ports.
start_once() {
    local dir=$1 sbin=$2 reuse=${3:-} ports amqp dist epmd
    if [ -n "$reuse" ]; then
        # shellcheck source=/dev/null
        read -r amqp epmd < <(. "$dir/broker.env"; echo "$AMQP_PORT $EPMD_PORT")
        rm -f "$dir"/amqp_url "$dir"/*.pid
        launch_node "$dir" "$sbin" "$amqp" "$epmd"
        return
    fi
    ports=$(pick_ports) || return 1
    read -r amqp dist epmd <<<"$ports"
    write_node "$dir" "$amqp" "$dist" "$epmd" "$(new_cookie)"
    launch_node "$dir" "$sbin" "$amqp" "$epmd"
}

# start_epmd DIR PORT: an epmd of DIR's own on 127.0.0.1:PORT, in the
# foreground (no -daemon) so that its pid (DIR/epmd.pid) is known, marked
# as DIR's like a node.  Fails when it cannot listen (port taken).
start_epmd() {
    local dir=$1 epmd=$2
    mkdir -p "$dir/log"
    (
        export FIBRPC_BROKER_DIR="$dir"
        export ERL_EPMD_PORT="$epmd" ERL_EPMD_ADDRESS=127.0.0.1
        cd "$dir"
        setsid epmd -port "$epmd" -address 127.0.0.1 </dev/null >"$dir/log/epmd.log" 2>&1 &
        echo $! >"$dir/epmd.pid"
    )
    for _ in $(seq 100); do
        tcp_open "$epmd" && return 0
        alive "$(cat "$dir/epmd.pid")" || { cat "$dir/log/epmd.log" >&2; return 1; }
        sleep 0.02
    done
    tcp_open "$epmd"
}

# launch_node DIR SBIN AMQP_PORT EPMD_PORT: starts epmd and the node that
# DIR's files describe, and waits until it accepts AMQP.  Returns 3 when a
# port was taken, 1 on any other failure.
launch_node() {
    local dir=$1 sbin=$2 amqp=$3 epmd=$4 server_sbin trimmed shared
    mkdir -p "$dir/log"
    # shellcheck source=/dev/null
    shared=$(. "$dir/broker.env"; echo "${SHARED_EPMD:-}")
    if [ "$shared" = 1 ]; then
        tcp_open "$epmd" || { log "the shared epmd on port $epmd is not running"; return 1; }
    else
        start_epmd "$dir" "$epmd" || return 3
    fi

    server_sbin=$sbin
    if [ "${BROKER_FULL_PLUGIN_PATH:-0}" != 1 ]; then
        trimmed=$(make_trimmed_home "$dir" "$sbin") || trimmed=
        [ -n "$trimmed" ] && server_sbin=$trimmed
    fi
    (
        load_env "$dir"
        export FIBRPC_BROKER_DIR="$dir"
        if [ "$server_sbin" != "$sbin" ]; then
            export RABBITMQ_SCRIPTS_DIR="$server_sbin"
            export RABBITMQ_PLUGINS_DIR="$dir/rmq/plugins"
        fi
        cd "$dir"
        setsid "$server_sbin/rabbitmq-server" </dev/null >"$dir/log/server.out" 2>&1 &
        echo $! >"$dir/server.pid"
    )

    local deadline=$((SECONDS + START_TIMEOUT)) server
    server=$(cat "$dir/server.pid")
    while ! amqp_ready "$amqp"; do
        if ! alive "$server"; then
            if grep -qs eaddrinuse "$dir/log/rabbit.log" "$dir/log/server.out"; then
                return 3 # a port was taken after we checked it: try others
            fi
            log "RabbitMQ exited during start-up"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "RabbitMQ did not accept AMQP on 127.0.0.1:$amqp within ${START_TIMEOUT}s"
            return 1
        fi
        sleep 0.05
    done
    echo "amqp://guest:guest@127.0.0.1:$amqp/%2F" >"$dir/amqp_url"
    return 0
}

show_logs() {
    local dir=$1 f
    for f in "$dir/log/server.out" "$dir/log/rabbit.log" "$dir/log/epmd.log"; do
        [ -s "$f" ] || continue
        echo "----- tail of $f" >&2
        tail -n 40 "$f" >&2
    done
}

cmd_start() {
    local dir=$1 sbin t0 rc attempt
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if cmd_status "$dir" 2>/dev/null; then
        cat "$dir/amqp_url"
        return 0
    fi
    command -v epmd >/dev/null 2>&1 || die "epmd not found (install rabbitmq-server / erlang-base)"
    sbin=$(find_rabbit_sbin) || die "RabbitMQ not found (apt-get install rabbitmq-server)"
    t0=$(date +%s%N)
    for attempt in 1 2 3; do
        rc=0
        start_once "$dir" "$sbin" || rc=$?
        [ "$rc" = 0 ] && break
        if [ "$rc" != 3 ] || [ "$attempt" = 3 ]; then
            show_logs "$dir"
            stop_node "$dir" >/dev/null 2>&1 || true
            die "failed to start RabbitMQ in $dir"
        fi
        log "port collision, retrying with other ports"
        stop_node "$dir" >/dev/null 2>&1 || true
    done
    log "RabbitMQ node $(. "$dir/broker.env"; echo "$NODENAME") up in $((($(date +%s%N) - t0) / 1000000)) ms"
    cat "$dir/amqp_url"
}

# ---------------------------------------------------------------- stop

stop_node() {
    local dir=$1 sbin beam pids p
    beam=$(cat "$dir/rabbit.pid" 2>/dev/null || true)
    if [ -f "$dir/broker.env" ] && alive "$beam"; then
        sbin=$(find_rabbit_sbin || true)
        if [ -n "$sbin" ]; then
            (
                load_env "$dir"
                cd "$dir"
                timeout 30 "$sbin/rabbitmqctl" -q -n "$NODENAME" stop </dev/null >/dev/null 2>&1
            ) || log "rabbitmqctl stop failed; terminating the node"
        fi
        wait_gone 15 "$beam" || true
    fi
    # Whatever is left (node that ignored stop, the wrapper shell,
    # erl_child_setup, inet_gethost, epmd): TERM, then KILL.
    pids=$(marked_pids "$dir")
    # shellcheck disable=SC2086
    if [ -n "$pids" ]; then
        kill -TERM $pids 2>/dev/null || true
        wait_gone 5 $pids || { kill -KILL $pids 2>/dev/null || true; wait_gone 5 $pids || true; }
    fi
    pids=$(marked_pids "$dir")
    if [ -n "$pids" ]; then
        log "processes still running after stop:"
        for p in $pids; do ps -o pid=,args= -p "$p" >&2 || true; done
        return 1
    fi
    rm -f "$dir/amqp_url"
    return 0
}

cmd_stop() {
    local dir=$1
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    stop_node "$dir"
}

cmd_restart() {
    local dir=$1 sbin t0
    [ -f "$dir/broker.env" ] || die "no node in $dir (start it first)"
    dir=$(cd "$dir" && pwd)
    sbin=$(find_rabbit_sbin) || die "RabbitMQ not found (apt-get install rabbitmq-server)"
    stop_node "$dir" >/dev/null || die "could not stop the node in $dir"
    t0=$(date +%s%N)
    # The ports were the node's a moment ago and lie below the ephemeral
    # range; should one be taken meanwhile, the node cannot come back as it was.
    if ! start_once "$dir" "$sbin" reuse; then
        show_logs "$dir"
        stop_node "$dir" >/dev/null 2>&1 || true
        die "failed to restart RabbitMQ in $dir on its old ports"
    fi
    # shellcheck source=/dev/null
    log "RabbitMQ node $(. "$dir/broker.env"; echo "$NODENAME") up again in $((($(date +%s%N) - t0) / 1000000)) ms"
    cat "$dir/amqp_url"
}

# Runs rabbitmqctl with the node's environment (cookie, epmd port, name).
cmd_ctl() {
    local dir=$1 sbin
    shift
    [ -f "$dir/broker.env" ] || die "no node in $dir"
    dir=$(cd "$dir" && pwd)
    sbin=$(find_rabbit_sbin) || die "RabbitMQ not found (apt-get install rabbitmq-server)"
    load_env "$dir"
    cd "$dir"
    exec "$sbin/rabbitmqctl" -n "$NODENAME" "$@" </dev/null
}

cmd_status() {
    local dir=$1 amqp
    [ -f "$dir/broker.env" ] && [ -f "$dir/amqp_url" ] || return 1
    amqp=$(. "$dir/broker.env"; echo "$AMQP_PORT")
    alive "$(cat "$dir/rabbit.pid" 2>/dev/null || true)" && amqp_ready "$amqp"
}

broker_main() {
    [ $# -ge 2 ] || usage
    case $1 in
    ctl) shift; cmd_ctl "$@" ;;
    start) [ $# -eq 2 ] || usage; cmd_start "$2" ;;
    stop) [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
    status) [ $# -eq 2 ] || usage; cmd_status "$2" ;;
    restart) [ $# -eq 2 ] || usage; cmd_restart "$2" ;;
    *) usage ;;
    esac
}

# Sourced (scripts/cluster.sh does so): the functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    broker_main "$@"
fi
