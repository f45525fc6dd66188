#!/bin/bash
# gateway-healthcheck.sh - the gateway image's HEALTHCHECK: GET /healthz from
# the gateway's own listener; healthy only on a 200 status line.  Plain bash
# (/dev/tcp), because the slim runtime image has no curl or wget and adding
# one only for this would pull a dozen packages into every image.
#
# Where to connect comes from GATEWAY_LISTEN, as the gateway reads it (an
# address given with --listen instead is not seen here).  An optional first
# argument is the path to ask for, default /healthz.
set -u

path=${1:-/healthz}
listen=${GATEWAY_LISTEN:-0.0.0.0:8080}
port=${listen##*:}
host=${listen%:*}
host=${host#[}
host=${host%]}
case $host in
    "" | "*" | 0.0.0.0) host=127.0.0.1 ;;
    ::) host=::1 ;;
esac

# (The braces keep bash's own "connection refused" out of the health log.)
if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
    echo "unhealthy: cannot connect to $host port $port" >&2
    exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
if ! IFS= read -r -t 3 status <&3; then
    echo "unhealthy: no answer to GET $path" >&2
    exit 1
fi
status=${status%$'\r'}
# The status line goes to the container's health log either way.
case $status in
    "HTTP/1."[01]" 200 "*)
        echo "GET $path: $status"
        exit 0
        ;;
esac
echo "unhealthy: GET $path: $status" >&2
exit 1
