#!/usr/bin/env python3
"""test_quorum.py - issue 12: quorum request queues and poison requests.

fib-worker --queue-type quorum --delivery-limit 2 declares the request
queue as a quorum queue (x-queue-type) with x-delivery-limit 2, and serves
it.  A poison request, one a worker dies on (tests/integration/crasher.py
exits without acking it), comes back with x-delivery-count 1; the real
worker then answers it worker_crashed instead of computing it again, and
acks it: its caller gets 502 worker_crashed long before its timeout, the
queue is empty, and other calls are unaffected."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

QUEUE = "fibrpc_quorum"
FLAGS = ["--queue-type", "quorum", "--delivery-limit", "2"]
POISON = 77
POISON_TIMEOUT_MS = 60000  # the caller would wait this long without the limit
CRASHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crasher.py")
ENV = None
GW = None


def setUpModule():
    global ENV, GW

    def start(env):
        global GW
        env.start_worker(queue=QUEUE, args=FLAGS)
        GW = env.start_gateway(queue=QUEUE)

    ENV = harness.setup_env("quorum", start)


def tearDownModule():
    harness.teardown_env(ENV)


class Quorum(unittest.TestCase):
    def test_1_declared_quorum(self):
        out = ENV.broker.ctl("list_queues", "name", "type", "arguments")
        line = [ln for ln in out.splitlines() if ln.startswith(QUEUE + "\t")]
        self.assertEqual(len(line), 1, out)
        self.assertIn("quorum", line[0])
        self.assertIn("x-delivery-limit", line[0])
        r = harness.get(GW.port, "/fib/10")
        self.assertEqual((r.status, r.json["fib"]), (200, "55"), harness.show(r))

    def test_2_poison_answered_worker_crashed(self):
        first = ENV.procs[0]  # the real worker; the crasher takes its place
        ENV.stop_proc(first)
        ENV.broker.wait_consumers_gone(QUEUE)
        crasher = ENV.start_python("crasher", CRASHER, [ENV.url, QUEUE, str(POISON)])
        ENV.broker.wait_consumers(QUEUE, 1, procs=[crasher])
        # The gateway sees the crasher (its consumer count), then the call.
        ENV.wait_http(GW, "/fib/11")
        t0 = time.monotonic()
        poison = harness.Call(GW.port, f"/fib/{POISON}?timeout_ms={POISON_TIMEOUT_MS}",
                              timeout=POISON_TIMEOUT_MS / 1000 + 30)
        self.assertEqual(crasher.wait(60), 3, crasher.log_tail())
        crasher.stopped_by_us = crasher.checked = True  # it was meant to die
        self.assertIn(f"crashing on n={POISON}", crasher.log())

        # Back in the queue, delivered once before: the next worker answers.
        worker = ENV.start_worker(queue=QUEUE, args=FLAGS)
        poison.join(POISON_TIMEOUT_MS / 1000 + 30)
        self.assertIsNone(poison.error)
        elapsed = poison.done_at - t0
        harness.assert_problem(self, poison.resp, 502, "worker_crashed", "poison call")
        self.assertEqual(poison.resp.json["worker_error"]["type"], "worker_crashed")
        self.assertLess(elapsed, POISON_TIMEOUT_MS / 1000 / 2, "answered long before its timeout")
        ev = worker.wait_events("rejected", error="worker_crashed")
        self.assertEqual(len(ev), 1, worker.log_tail())
        self.assertEqual(ev[0]["delivered_before"], "1")
        self.assertEqual(worker.events("served"), [], "the poison was computed again")

        # Gone from the queue, and the others are served (once the gateway's
        # consumer count, 0 while no worker was there, has seen the worker).
        ENV.wait_http(GW, "/fib/5")
        for n in (10, 20, 30):
            r = harness.get(GW.port, f"/fib/{n}")
            self.assertEqual((r.status, r.json["fib"]), (200, str(harness.fib(n))),
                             harness.show(r))
        self.assertEqual(ENV.broker.queue_info(QUEUE), (0, 1))


if __name__ == "__main__":
    unittest.main()
