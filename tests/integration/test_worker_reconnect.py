#!/usr/bin/env python3
"""test_worker_reconnect.py - issue 12: the worker reconnects as fast as the
gateway.  Its old schedule (200 ms doubling to 5 s) dominated recovery: 0.6
to 5.4 s after a broker restart.  Now it is the gateway's (common/urls.h):
the first attempt after a loss at once, then jittered retries whose
ceilings double from 100 ms to a 2 s cap.

The broker is stopped long enough for the schedule to reach its cap (the
worker's log says so: evidence, not a sleep), then started again on the
same ports; the worker consumes again soon after, and every wait it logged
lies in the schedule."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

QUEUE = "fibrpc_reconnect"
# Ceilings of the schedule, attempt by attempt; then the cap.
CEILINGS = [100, 200, 400, 800, 1600]
CAP_MS = 2000
# Restart to consuming: at most one capped wait (2 s) plus a connect and a
# declare.  The bound leaves room for a loaded machine under ASan; the
# schedule itself is checked exactly below.
RECOVERY_BOUND_S = 4.0
ENV = None
WORKER = None
GW = None


def setUpModule():
    global ENV, WORKER, GW

    def start(env):
        global WORKER, GW
        WORKER = env.start_worker(queue=QUEUE)
        GW = env.start_gateway(queue=QUEUE)

    ENV = harness.setup_env("worker-reconnect", start)


def tearDownModule():
    harness.teardown_env(ENV)


class Reconnect(unittest.TestCase):
    def test_restart(self):
        ENV.broker.stop_node()
        # Failed attempts until the schedule is at its cap (6 of them).
        fails = WORKER.wait_events("connect_failed", count=len(CEILINGS) + 1, timeout=60)
        self.assertGreater(len(fails), len(CEILINGS), WORKER.log_tail())
        ENV.broker.restart()
        up = time.monotonic()
        ENV.broker.wait_consumers(QUEUE, 1, procs=[WORKER])
        recovery = time.monotonic() - up
        print(f"\nworker consuming again {recovery * 1000:.0f} ms after the broker "
              f"accepted AMQP", file=sys.stderr)
        self.assertLess(recovery, RECOVERY_BOUND_S, WORKER.log_tail())

        # The loss: reconnect at once (to the next node, here the same).
        lost = WORKER.events("disconnected")
        self.assertEqual([e["retry_ms"] for e in lost], ["0"], WORKER.log_tail())
        # Then the jittered schedule, first retry within 100 ms, cap 2 s.
        waits = [int(e["retry_ms"]) for e in WORKER.events("connect_failed")]
        for i, ms in enumerate(waits):
            ceiling = CEILINGS[i] if i < len(CEILINGS) else CAP_MS
            self.assertTrue(ceiling // 2 <= ms <= ceiling,
                            f"wait {i} was {ms} ms, not in [{ceiling // 2}, {ceiling}]: "
                            f"{waits}")
        # And it serves again, through the gateway.
        r = ENV.wait_http(GW, "/fib/12")
        self.assertEqual(r.json["fib"], "144")
        self.assertTrue(WORKER.wait_events("ready", count=2), WORKER.log_tail())


if __name__ == "__main__":
    unittest.main()
