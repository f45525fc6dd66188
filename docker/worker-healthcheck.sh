#!/bin/bash
# worker-healthcheck.sh - the worker image's HEALTHCHECK: healthy while the
# worker holds an established TCP connection, i.e. its AMQP connection.
#
# The worker serves no HTTP and has no status command, and "the process is
# alive" says nothing here: the worker is the container's PID 1, so the
# container stops when it does.  What an operator wants to know is whether it
# is connected to the broker (it reconnects by itself with backoff while it
# is not).  Its only TCP socket is that connection, so this looks in the
# container's own /proc/net/tcp and tcp6 for an ESTABLISHED socket (state 01)
# owned by this user, the one the worker runs as.  No extra package needed.
# Limits: with a shared network namespace (--network host) another program of
# the same uid could count; a connection open during a failing AMQP login
# counts for a moment (the retries of the HEALTHCHECK smooth that out).
set -u

uid=$(id -u)
for table in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$table" ] || continue
    # sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
    while read -r _ _ remote state _ _ _ owner _; do
        if [ "$state" = 01 ] && [ "$owner" = "$uid" ]; then
            echo "connected: a TCP connection to port $((16#${remote##*:}))"
            exit 0
        fi
    done <"$table"
done
echo "unhealthy: no established connection to the broker" >&2
exit 1
