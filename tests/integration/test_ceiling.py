#!/usr/bin/env python3
"""test_ceiling.py - bench/ceiling.c, the figure the gateway is measured
against, still works: it publishes the tutorial's message, or with
--like-gateway exactly the gateway's (built by gateway/publisher.c), and a
real fib-worker answers every call correctly.  A smoke test of the
benchmark's tool, not a measurement: no timing is asserted."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ENV = None
CALLS = 300


def setUpModule():
    global ENV
    ENV = harness.setup_env("ceiling", lambda env: env.start_worker())


def tearDownModule():
    harness.teardown_env(ENV)


class CeilingTest(unittest.TestCase):
    def run_ceiling(self, *args):
        r = subprocess.run([harness.binary("rpc-ceiling"), "--amqp-url", ENV.url,
                            "--calls", str(CALLS), "--inflight", "4", "--n", "30", *args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, f"rpc-ceiling failed:\n{r.stdout}{r.stderr}")
        fields = dict(re.findall(r"(\w+)=(\S+)", r.stdout))
        # calls: answered with the right F(30); errors: anything else (a
        # wrong body, an error reply, an unknown id, no reply).
        self.assertEqual(fields.get("calls"), str(CALLS), r.stdout)
        self.assertEqual(fields.get("errors"), "0", r.stdout)
        return r.stdout

    def test_tutorial_message(self):
        self.run_ceiling()

    def test_like_gateway(self):
        self.run_ceiling("--like-gateway")


if __name__ == "__main__":
    harness.main()
