#!/usr/bin/env python3
"""test_timeout.py - a call nobody answers ends in 504 problem JSON after the
requested, default or capped timeout, and the AMQP request carries an
expiration no longer than that timeout.

A recording consumer takes the requests from the queue and never replies."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

QUEUE = "fibrpc_timeout_probe"
ENV = None
GW_DEFAULT = None  # --timeout-ms 700
GW_CAPPED = None   # --timeout-ms 400 --max-timeout-ms 500
PROBE = None


def setUpModule():
    global ENV, PROBE

    def start(env):
        global GW_DEFAULT, GW_CAPPED, PROBE
        PROBE = harness.FakeConsumer(env.url, QUEUE).start_and_wait()
        GW_DEFAULT = env.start_gateway(queue=QUEUE, timeout_ms=700,
                                       ready_path="/nope", ready_status=None)
        GW_CAPPED = env.start_gateway(queue=QUEUE, timeout_ms=400, max_timeout_ms=500,
                                      ready_path="/nope", ready_status=None)

    ENV = harness.setup_env("timeout", start)


def tearDownModule():
    if PROBE is not None:
        PROBE.stop()
    harness.teardown_env(ENV)


class TimeoutTest(unittest.TestCase):
    def expect_timeout(self, gw, path, low, high):
        r = harness.get(gw.port, path)
        harness.assert_problem(self, r, 504, code="timeout", what=f"GET {path}")
        self.assertGreaterEqual(r.elapsed, low, f"GET {path}: 504 after {r.elapsed:.3f} s")
        self.assertLess(r.elapsed, high, f"GET {path}: 504 after {r.elapsed:.3f} s")
        return r

    def test_timeout_from_query(self):
        self.expect_timeout(GW_DEFAULT, "/fib/10?timeout_ms=300", 0.25, 1.5)

    def test_default_timeout(self):
        self.expect_timeout(GW_DEFAULT, "/fib/11", 0.65, 2.0)

    def test_timeout_capped_by_max(self):
        self.expect_timeout(GW_CAPPED, "/fib/12?timeout_ms=60000", 0.45, 1.5)
        # However many digits: capped, not refused (README, "Timeouts").
        self.expect_timeout(GW_CAPPED, "/fib/12?timeout_ms=" + "9" * 20, 0.45, 1.5)

    def test_request_message_expiration(self):
        cases = [(GW_DEFAULT, 13, "?timeout_ms=300", 300),
                 (GW_DEFAULT, 14, "", 700),
                 (GW_CAPPED, 15, "?timeout_ms=60000", 500)]
        for gw, n, query, limit in cases:
            with self.subTest(n=n, query=query):
                r = harness.get(gw.port, f"/fib/{n}{query}")
                self.assertEqual(r.status, 504, harness.show(r))
                m = PROBE.wait_for(lambda body, props, n=n: body == str(n).encode())
                self.assertIsNotNone(m, f"request for n={n} never reached the queue")
                _, body, props = m
                self.assertTrue(props.reply_to, "request without reply_to")
                self.assertTrue(props.correlation_id, "request without correlation_id")
                self.assertIsNotNone(props.expiration,
                                     f"request for n={n} has no AMQP expiration")
                self.assertRegex(props.expiration, r"^[0-9]+$",
                                 "expiration must be decimal milliseconds")
                self.assertGreater(int(props.expiration), 0)
                self.assertLessEqual(int(props.expiration), limit,
                                     f"expiration {props.expiration} ms exceeds the "
                                     f"{limit} ms timeout")

    def test_correlation_ids_are_unique(self):
        for n in (16, 17, 18):
            harness.get(GW_DEFAULT.port, f"/fib/{n}?timeout_ms=300")
        ids = [props.correlation_id for _, _, props in PROBE.snapshot()]
        self.assertEqual(len(ids), len(set(ids)), f"correlation ids repeat: {ids}")


if __name__ == "__main__":
    harness.main()
