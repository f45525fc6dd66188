#!/usr/bin/env python3
"""outage.py - bench/run.sh's cluster outage figure: how long callers go
without a 200 when the gateway's RabbitMQ node is killed (kill -9), as in
tests/integration/test_cluster.py's scenario 2.

On a running cluster (scripts/cluster.sh, --cluster-dir): two fib-workers
on node 0, which leads the quorum queue; then, REPS times: a new gateway on
node 1 or 2 (the other nodes refuse connections while it connects; it gets
every node's URL), load from harness.Load (4 clients calling /fib/<n> in a
loop), kill -9 of the gateway's node; the window is from the kill to the
first 200 of a call sent after it (the clients' clocks), and the gateway's
own link down -> up time (its log).  Then the node comes back and the queue
has its three members again.  Prints one line per repetition and a summary
line, `outage_ms min=... median=... max=...`.

Uses the integration tests' harness (tests/integration/harness.py); needs
Debian's python3 with python3-pika, and the programs in FIBRPC_BIN_DIR (or
build/bin)."""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "integration"))
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster-dir", required=True, help="scripts/cluster.sh's DIR")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--queue", default="bench_outage")
    ap.add_argument("--timeout-ms", type=int, default=5000, help="each call's ?timeout_ms=")
    args = ap.parse_args()

    cluster = harness.Cluster(args.cluster_dir, args.nodes)
    cluster.attach()
    env = harness.Env("bench-outage", broker=cluster)
    windows = []
    try:
        with cluster.only(0):  # the first worker declares the queue: it leads on node 0
            for _ in range(2):
                env.start_worker(queue=args.queue, args=["--queue-type", "quorum"])
        for rep in range(1, args.reps + 1):
            node = 1 + (rep - 1) % (args.nodes - 1)
            cluster.wait_quorum(args.queue, online=args.nodes)
            with cluster.only(node):
                gw = env.start_gateway(queue=args.queue, timeout_ms=args.timeout_ms)
            load = harness.Load([gw.port], timeout_ms=args.timeout_ms, name=f"rep{rep}").start()
            load.wait_calls(20)
            killed = time.time()
            cluster.kill_node(node)
            first = load.wait_calls(1, since=killed, timeout=60)
            calls = load.stop()
            if not first:
                print(f"outage rep={rep} node={node}: no 200 within 60 s; "
                      f"{harness.summary(calls)}", flush=True)
                return 1
            window = min(c.done for c in first) - killed
            down = [e for e in gw.events("amqp_disconnected") if harness.log_time(e) >= killed]
            up = [e for e in gw.events("amqp_connected") if harness.log_time(e) >= killed]
            link = (f"{(harness.log_time(up[0]) - harness.log_time(down[0])) * 1000:.0f}"
                    if down and up else "?")
            during = [c for c in calls if c.sent < min(c.done for c in first) and c.done >= killed]
            bad = [c for c in calls if c.error]
            windows.append(window * 1000)
            print(f"outage rep={rep} node={node} first_200_ms={window * 1000:.0f} "
                  f"link_down_to_up_ms={link} meanwhile: {harness.summary(during)}"
                  f"{f'; {len(bad)} WRONG or hung' if bad else ''}", flush=True)
            env.stop_proc(gw)
            cluster.restart_node(node)
        print(f"outage_ms min={min(windows):.0f} median={statistics.median(windows):.0f} "
              f"max={max(windows):.0f} reps={len(windows)}", flush=True)
        return 0
    finally:
        env.stop()
        if env.problems:
            print("outage.py: " + "; ".join(env.problems), file=sys.stderr)
        env.remove()


if __name__ == "__main__":
    sys.exit(main())
