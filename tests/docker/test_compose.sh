#!/usr/bin/env bash
# test_compose.sh [single] [cluster] - brings the compose stacks up with
# podman, one after the other (both when no argument names one), and checks
# what a user of each would see.  Tears each stack down, pass or fail.
#   single: docker/compose.yaml.  GET /fib/30 from the host answers
#     {"n":30,"fib":"832040"}, the gateway and the workers run as a
#     non-root user, both workers consume the request queue, every
#     container's HEALTHCHECK passes.
#   cluster: docker/compose.cluster.yaml.  The three nodes form one
#     cluster, /fib/30 answers on both gateways, the request queue is a
#     quorum queue with a member on each node, both workers consume it,
#     every HEALTHCHECK passes.
#
# Slow (minutes from cold), so not part of ctest.  Needs root, as the
# rootful podman of shared/CONTAINERS.md; installs and configures what is
# missing, the way that file describes:
#   - podman, podman-compose, runc, debootstrap, curl (apt-get);
#   - /etc/containers/containers.conf.d/50-fibrpc-test.conf: runc (crun fails
#     on hybrid cgroups) and ulimits that root may set;
#   - an image named debian:bookworm-slim, made with debootstrap, when none
#     exists (no registry can be reached here);
#   - a stand-in for rabbitmq:4-management built from Debian's
#     rabbitmq-server (tests/docker/rabbitmq-standin.Dockerfile), unless an
#     image of that name that is not our stand-in is already there.
# Images are named without a registry; podman finds such short names among
# local images (as localhost/NAME) without asking any registry, so
# registries.conf is left alone.
# Exits 0 with "SKIP" only when podman cannot be installed (no root, no
# apt-get, or the install fails).
#
# Environment:
#   FIBRPC_COMPOSE_WAIT_S   how long to wait for /fib/30 (and for the
#                           cluster's nodes) once a stack is up, default 180
#   FIBRPC_DOCKER_LOG_DIR   where logs go, default build/docker-test
#   GATEWAY_PORT            host port for the (first) gateway (127.0.0.1
#                           only), default a free one
#   KEEP=1                  leave the (last) stack running (for poking at it)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

STANDIN_DOCKERFILE=$ROOT/tests/docker/rabbitmq-standin.Dockerfile
BASE_IMAGE=debian:bookworm-slim
RABBITMQ_IMAGE=rabbitmq:4-management
STACKS=("$@")
[ "${#STACKS[@]}" -gt 0 ] || STACKS=(single cluster)
for stack in "${STACKS[@]}"; do
    case $stack in single | cluster) ;; *) echo "usage: $0 [single] [cluster]" >&2; exit 2 ;; esac
done
# The stack under test: compose_file, PROJECT and SERVICES, set by use_stack.
COMPOSE_FILE=
PROJECT=
SERVICES=()
WAIT_S=${FIBRPC_COMPOSE_WAIT_S:-180}
LOG_DIR=${FIBRPC_DOCKER_LOG_DIR:-$ROOT/build/docker-test}
CONF_DROPIN=/etc/containers/containers.conf.d/50-fibrpc-test.conf
EXPECTED='{"n":30,"fib":"832040"}'

say() { printf '[docker-test] %s\n' "$*" >&2; }
skip() {
    say "SKIP: $*"
    exit 0
}

T0=$SECONDS
timings=()
passed=0
phase_start=$SECONDS
phase_name=
# phase NAME: closes the previous phase (recording its duration), opens NAME.
phase() {
    if [ -n "$phase_name" ]; then
        timings+=("$(printf '%5d s  %s' $((SECONDS - phase_start)) "$phase_name")")
    fi
    phase_name=$1
    phase_start=$SECONDS
    [ -n "$phase_name" ] && say "== $phase_name"
    return 0
}
ok() {
    passed=$((passed + 1))
    say "ok: $*"
}

# ---- root, podman --------------------------------------------------------

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n --preserve-env=FIBRPC_COMPOSE_WAIT_S,FIBRPC_DOCKER_LOG_DIR,GATEWAY_PORT,KEEP \
            bash "$0" "$@"
    fi
    skip "podman cannot be installed or configured: needs root (or sudo without a password)"
fi

mkdir -p "$LOG_DIR"
phase "tools"
need=()
for tool in podman podman-compose runc debootstrap curl; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 ||
        skip "podman cannot be installed: missing ${need[*]} and no apt-get"
    say "installing ${need[*]} (log: $LOG_DIR/apt.log)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } \
        >"$LOG_DIR/apt.log" 2>&1; then
        tail -n 20 "$LOG_DIR/apt.log" >&2
        command -v podman >/dev/null 2>&1 || skip "podman cannot be installed (apt-get failed)"
        say "FAIL: podman is there but apt-get could not install the rest: ${need[*]}"
        exit 1
    fi
fi
command -v podman >/dev/null 2>&1 || skip "podman cannot be installed"
for tool in podman-compose runc debootstrap curl; do
    command -v "$tool" >/dev/null 2>&1 || { say "FAIL: $tool missing after install"; exit 1; }
done

# crun fails on this kind of host (hybrid cgroups), and podman's default
# ulimits are above what root may set here: a drop-in, rewritten only when it
# differs, so an /etc/containers/containers.conf of the machine stays as is.
conf='# written by tests/docker/test_compose.sh (see shared/CONTAINERS.md)
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"'
if [ "$(cat "$CONF_DROPIN" 2>/dev/null)" != "$conf" ]; then
    say "writing $CONF_DROPIN"
    mkdir -p "$(dirname "$CONF_DROPIN")"
    printf '%s\n' "$conf" >"$CONF_DROPIN"
fi
say "$(podman --version), $(podman-compose version 2>/dev/null | grep -i 'podman-compose' | head -n 1)"

# ---- cleanup -------------------------------------------------------------

rootfs=
stack_up=0
compose() { podman-compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }
# service NAME: the name of that service's container in this project.
service() {
    podman ps -a --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}
dump_logs() {
    local svc c
    podman ps -a --filter "label=com.docker.compose.project=$PROJECT" >&2 || true
    for svc in "${SERVICES[@]}"; do
        c=$(service "$svc") || continue
        [ -n "$c" ] || continue
        say "---- last lines of $svc ($c)"
        podman logs --tail 25 "$c" >&2 2>&1 || true
    done
}
# stack_down [keep]: takes the stack under test down (with keep and KEEP=1,
# leaves it running and says how to stop it).
stack_down() {
    [ "$stack_up" = 1 ] || return 0
    stack_up=0
    if [ -n "${1:-}" ] && [ "${KEEP:-0}" = 1 ]; then
        say "KEEP=1: leaving project $PROJECT running; stop it with:"
        say "  podman-compose -p $PROJECT -f $COMPOSE_FILE down -t 1"
        return 0
    fi
    phase "down ($PROJECT)"
    compose down -t 1 >"$LOG_DIR/down-$PROJECT.log" 2>&1 ||
        say "podman-compose down failed: $LOG_DIR/down-$PROJECT.log"
    # podman-compose 1.0 leaves the project's network behind.
    podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" |
        xargs -r podman network rm -f >>"$LOG_DIR/down-$PROJECT.log" 2>&1 || true
}
teardown() {
    local rc=$?
    trap - EXIT
    if [ "$rc" != 0 ] && [ "$stack_up" = 1 ]; then
        dump_logs
    fi
    stack_down keep
    [ -n "$rootfs" ] && rm -rf "$rootfs"
    phase ""
    say "timings:"
    printf '[docker-test] %s\n' "${timings[@]}" >&2
    say "total $((SECONDS - T0)) s"
    if [ "$rc" = 0 ]; then
        say "PASS"
        echo "docker: $passed passed, 0 failed"
    else
        say "FAIL (logs in $LOG_DIR)"
        echo "docker: $passed passed, 1 failed"
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fail() {
    say "FAIL: $*"
    exit 1
}

# ---- images --------------------------------------------------------------

# The stand-in for the official debian:bookworm-slim: Debian's own packages,
# slimmed the way the official image is (no docs, man pages or locales; apt
# keeps no caches), with the host's apt sources when it is Debian bookworm.
make_base_image() {
    local mirror=
    rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/fibrpc-rootfs.XXXXXX")
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    fi
    say "debootstrap --variant=minbase bookworm ${mirror:-(default mirror)} (log: $LOG_DIR/debootstrap.log)"
    debootstrap --variant=minbase bookworm "$rootfs" ${mirror:+"$mirror"} \
        >"$LOG_DIR/debootstrap.log" 2>&1 || {
        tail -n 20 "$LOG_DIR/debootstrap.log" >&2
        fail "debootstrap failed"
    }
    if [ -r /etc/apt/sources.list.d/debian.sources ] &&
        grep -q '^Suites:.*bookworm' /etc/apt/sources.list.d/debian.sources; then
        cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
        rm -f "$rootfs/etc/apt/sources.list"
    fi
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - "$BASE_IMAGE" \
        >"$LOG_DIR/import.log" 2>&1 || fail "podman import failed: $LOG_DIR/import.log"
    rm -rf "$rootfs"
    rootfs=
}

phase "base image"
if podman image exists "$BASE_IMAGE"; then
    say "$BASE_IMAGE is there"
else
    make_base_image
fi

phase "rabbitmq image"
label=
if podman image exists "$RABBITMQ_IMAGE"; then
    label=$(podman image inspect --format '{{index .Labels "fibrpc.test.stand-in"}}' "$RABBITMQ_IMAGE")
fi
if podman image exists "$RABBITMQ_IMAGE" && [ "$label" != rabbitmq ]; then
    say "using the $RABBITMQ_IMAGE image found here"
else
    say "building the stand-in $RABBITMQ_IMAGE (log: $LOG_DIR/rabbitmq-build.log)"
    podman build --format docker -t "$RABBITMQ_IMAGE" -f "$STANDIN_DOCKERFILE" \
        "$(dirname "$STANDIN_DOCKERFILE")" >"$LOG_DIR/rabbitmq-build.log" 2>&1 || {
        tail -n 30 "$LOG_DIR/rabbitmq-build.log" >&2
        fail "building the rabbitmq stand-in failed"
    }
fi

# ---- up ------------------------------------------------------------------

# free_port DEFAULT: a port free on 127.0.0.1 now, or DEFAULT without python3.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
        2>/dev/null || echo "$1"
}
# podman builds OCI images by default, and the OCI format has no HEALTHCHECK.
export BUILDAH_FORMAT=docker

# use_stack NAME FILE SERVICE...: the stack the next steps work on.
use_stack() {
    PROJECT=fibrpctest$$$1
    COMPOSE_FILE=$ROOT/docker/$2
    shift 2
    SERVICES=("$@")
}

# up [SERVICE...]: podman-compose up -d --build (those services only).
up() {
    local log=$LOG_DIR/up-$PROJECT.log
    say "podman-compose -p $PROJECT -f ${COMPOSE_FILE#"$ROOT"/} up -d --build $* (log: $log)"
    stack_up=1
    compose up -d --build "$@" >>"$log" 2>&1 || {
        grep -v -e '^STEP' -e '^\[' "$log" | tail -n 30 >&2
        fail "podman-compose up failed"
    }
}

# wait_fib30 BASE SERVICE...: until BASE/fib/30 answers right; fails early
# when one of the services stops running.
wait_fib30() {
    local base=$1 body="" svc c state deadline=$((SECONDS + WAIT_S))
    shift
    while :; do
        body=$(curl -sS --max-time 5 "$base/fib/30" 2>/dev/null) || body=
        [ "$body" = "$EXPECTED" ] && break
        for svc in "$@"; do
            c=$(service "$svc")
            state=$(podman inspect --format '{{.State.Status}}' "$c" 2>/dev/null || echo missing)
            [ "$state" = running ] || fail "$svc is $state"
        done
        [ "$SECONDS" -lt "$deadline" ] || fail "no $EXPECTED from $base/fib/30 within $WAIT_S s (last answer: ${body:-none})"
        sleep 1
    done
    ok "GET $base/fib/30 from the host: $body (after $((SECONDS - phase_start)) s)"
}

# healthy SERVICE...: each one's HEALTHCHECK, run now (podman runs them on a
# timer only under systemd), passes within 60 s.
healthy() {
    local svc c deadline out
    for svc in "$@"; do
        c=$(service "$svc")
        deadline=$((SECONDS + 60))
        until podman healthcheck run "$c" >/dev/null 2>&1; do
            [ "$SECONDS" -lt "$deadline" ] || {
                podman inspect --format '{{json .State.Health}}' "$c" >&2 || true
                fail "$svc's healthcheck does not pass"
            }
            sleep 2
        done
        out=$(podman inspect --format '{{range .State.Health.Log}}{{println .Output}}{{end}}' "$c" |
            grep -v '^[[:space:]]*$' | tail -n 1) || out=
        ok "$svc healthy${out:+: $out}"
    done
}

# non_root SERVICE...: the uids of each container's main process, as the
# host sees them (not the image's metadata), are not 0.
non_root() {
    local svc c pid ruid euid suid fsuid u
    for svc in "$@"; do
        c=$(service "$svc")
        pid=$(podman inspect --format '{{.State.Pid}}' "$c")
        read -r ruid euid suid fsuid < <(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")
        for u in "$ruid" "$euid" "$suid" "$fsuid"; do
            [ "$u" != 0 ] || fail "$svc runs as root (Uid: $ruid $euid $suid $fsuid)"
        done
        ok "$svc runs as uid $euid ($(tr '\0' ' ' <"/proc/$pid/cmdline"))"
    done
}

# consumers RABBITMQ_SERVICE COUNT: rpc_queue gets COUNT consumers within 30 s.
consumers() {
    local rmq n deadline=$((SECONDS + 30))
    rmq=$(service "$1")
    while :; do
        n=$(podman exec "$rmq" rabbitmqctl -q list_queues name consumers 2>/dev/null |
            awk '$1 == "rpc_queue" { print $2 }') || n=
        [ "$n" = "$2" ] && break
        [ "$SECONDS" -lt "$deadline" ] || fail "rpc_queue has ${n:-no} consumers, not $2"
        sleep 1
    done
    ok "rpc_queue has $2 consumers"
}

healthz() {
    local code
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$1/healthz") || code=
    [ "$code" = 200 ] || fail "GET $1/healthz from the host: ${code:-no answer}, not 200"
    ok "GET $1/healthz from the host: 200"
}

# ---- single --------------------------------------------------------------

test_single() {
    local base
    use_stack s compose.yaml rabbitmq gateway worker-1 worker-2
    GATEWAY_PUBLISH=127.0.0.1:${GATEWAY_PORT:-$(free_port 8080)}
    MANAGEMENT_PUBLISH=127.0.0.1:$(free_port 15672)
    export GATEWAY_PUBLISH MANAGEMENT_PUBLISH # compose.yaml reads these
    base=http://$GATEWAY_PUBLISH

    phase "single: build and up"
    up
    # podman-compose 1.0 starts the services in order but does not wait for
    # service_healthy; the gateway and the workers reconnect until the broker
    # is up, so the stack still comes up by itself.
    phase "single: until /fib/30 answers"
    wait_fib30 "$base" gateway worker-1 worker-2
    phase "single: checks"
    non_root gateway worker-1 worker-2
    consumers rabbitmq 2
    healthy rabbitmq gateway worker-1 worker-2
    healthz "$base"
}

# ---- cluster -------------------------------------------------------------

# cluster_json RABBITMQ_SERVICE ARGS...: rabbitmqctl ARGS --formatter json
# in that node's container.
cluster_json() {
    local c
    c=$(service "$1")
    shift
    podman exec "$c" rabbitmqctl -q "$@" --formatter json
}

test_cluster() {
    local base1 base2 n deadline q
    use_stack c compose.cluster.yaml rabbitmq-1 rabbitmq-2 rabbitmq-3 \
        gateway-1 gateway-2 worker-1 worker-2
    GATEWAY_PUBLISH=127.0.0.1:$(free_port 8080)
    GATEWAY2_PUBLISH=127.0.0.1:$(free_port 8081)
    MANAGEMENT_PUBLISH=127.0.0.1:$(free_port 15672)
    RABBITMQ_COOKIE=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    export GATEWAY_PUBLISH GATEWAY2_PUBLISH MANAGEMENT_PUBLISH RABBITMQ_COOKIE
    base1=http://$GATEWAY_PUBLISH
    base2=http://$GATEWAY2_PUBLISH

    # What docker compose does by itself (depends_on: service_healthy) and
    # podman-compose 1.0 does not: the nodes first, the programs once the
    # three are healthy, so that the workers declare the quorum queue in
    # the whole cluster.
    phase "cluster: the three nodes"
    up rabbitmq-1 rabbitmq-2 rabbitmq-3
    healthy rabbitmq-1 rabbitmq-2 rabbitmq-3
    deadline=$((SECONDS + WAIT_S))
    while :; do
        n=$(cluster_json rabbitmq-1 cluster_status 2>/dev/null |
            python3 -c 'import json, sys; print(len(json.load(sys.stdin)["running_nodes"]))' 2>/dev/null) || n=
        [ "$n" = 3 ] && break
        [ "$SECONDS" -lt "$deadline" ] || fail "rabbitmq-1 sees ${n:-no} running nodes in its cluster, not 3"
        sleep 1
    done
    ok "one cluster of 3 nodes (after $((SECONDS - phase_start)) s)"

    phase "cluster: build and up the rest"
    up
    phase "cluster: until /fib/30 answers on both gateways"
    wait_fib30 "$base1" gateway-1 worker-1 worker-2
    wait_fib30 "$base2" gateway-2 worker-1 worker-2

    phase "cluster: checks"
    q=$(cluster_json rabbitmq-2 list_queues name type members online |
        python3 -c 'import json, sys
q = [r for r in json.load(sys.stdin) if r["name"] == "rpc_queue"]
print(q[0]["type"], len(set(q[0]["members"])), len(set(q[0]["online"])))') ||
        fail "rpc_queue not found"
    [ "$q" = "quorum 3 3" ] || fail "rpc_queue (type, members, online): $q, not quorum 3 3"
    ok "rpc_queue is a quorum queue with a member on each of the 3 nodes, all online"
    # (A quorum queue's consumer count in list_queues is the asked node's
    # own view; each worker says when it consumes.)
    for svc in worker-1 worker-2; do
        podman logs "$(service "$svc")" 2>&1 | grep -q 'msg=ready .*queue=rpc_queue' ||
            fail "$svc does not consume rpc_queue"
    done
    ok "both workers consume rpc_queue"
    non_root gateway-1 gateway-2 worker-1 worker-2
    healthy rabbitmq-1 rabbitmq-2 rabbitmq-3 gateway-1 gateway-2 worker-1 worker-2
    healthz "$base1"
    healthz "$base2"
}

for stack in "${STACKS[@]}"; do
    "test_$stack"
    [ "$stack" = "${STACKS[-1]}" ] || stack_down
done
