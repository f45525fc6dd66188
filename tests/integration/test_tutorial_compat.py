#!/usr/bin/env python3
"""test_tutorial_compat.py - our wire format is the RabbitMQ RPC tutorial's:
the tutorial's own client works against fib-worker, and the tutorial's own
server works behind rpc-gateway (tests/integration/tutorial/)."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ENV = None
QUEUE = "rpc_queue"  # hard-coded in the tutorial's programs
CLIENT = os.path.join(harness.TUTORIAL_DIR, "rpc_client.py")
SERVER = os.path.join(harness.TUTORIAL_DIR, "rpc_server.py")


def setUpModule():
    global ENV
    ENV = harness.setup_env("tutorial")


def tearDownModule():
    harness.teardown_env(ENV)


class TutorialCompatTest(unittest.TestCase):
    def setUp(self):
        # Our worker declares rpc_queue durable, the tutorial's server
        # transient: each test starts without it.
        ENV.broker.delete_queue(QUEUE)
        self.started = []

    def tearDown(self):
        for p in reversed(self.started):
            ENV.stop_proc(p)
        ENV.broker.delete_queue(QUEUE)

    def test_tutorial_client_against_our_worker(self):
        self.started.append(ENV.start_worker())
        try:
            r = subprocess.run([harness.SYSTEM_PYTHON, "-u", CLIENT, ENV.url],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=60)
        except subprocess.TimeoutExpired as e:
            self.fail(f"tutorial client got no answer within 60 s; output: {e.stdout!r}\n"
                      f"worker log:\n{self.started[0].log_tail()}")
        self.assertEqual(r.returncode, 0, f"tutorial client failed:\n{r.stdout}{r.stderr}")
        self.assertIn(" [.] Got 832040", r.stdout, r.stdout + r.stderr)

    def test_tutorial_server_behind_our_gateway(self):
        server = ENV.start_python("tutorial-server", SERVER, [ENV.url])
        self.started.append(server)
        ENV.broker.wait_consumers(QUEUE, 1, procs=[server])
        gw = ENV.start_gateway()  # default queue: rpc_queue
        self.started.append(gw)

        r = harness.get(gw.port, "/fib/20")
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(harness.media_type(r), "application/json", harness.show(r))
        self.assertEqual(r.json, {"n": 20, "fib": "6765"}, harness.show(r))
        self.assertIn(" [.] fib(20)", server.log(), "the tutorial server did not see n=20")


if __name__ == "__main__":
    harness.main()
