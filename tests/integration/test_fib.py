#!/usr/bin/env python3
"""test_fib.py - GET /fib/<n> through the real chain (gateway -> RabbitMQ ->
fib-worker -> gateway) answers the exact F(n), checked against an independent
Python computation."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (re-executes under /usr/bin/python3 when needed)

ENV = None
GW = None


def setUpModule():
    global ENV, GW

    def start(env):
        global GW
        env.start_worker()
        GW = env.start_gateway()

    ENV = harness.setup_env("fib", start)


def tearDownModule():
    harness.teardown_env(ENV)


class FibTest(unittest.TestCase):
    def check(self, path, n):
        r = harness.get(GW.port, path)
        msg = f"GET {path}: {harness.show(r)}"
        self.assertEqual(r.status, 200, msg)
        self.assertEqual(harness.media_type(r), "application/json", msg)
        self.assertIsInstance(r.json, dict, msg)
        self.assertEqual(set(r.json), {"n", "fib"}, msg)
        self.assertIs(type(r.json["n"]), int, msg)
        self.assertEqual(r.json["n"], n, msg)
        self.assertIsInstance(r.json["fib"], str, msg)
        expected = str(harness.fib(n))
        got = r.json["fib"]
        if got != expected:  # F(100000) is 20899 digits: say where it differs
            at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
                      min(len(got), len(expected)))
            self.fail(f"GET {path}: F({n}) wrong: {len(got)} digits, expected "
                      f"{len(expected)}; first difference at digit {at}: "
                      f"got {got[at:at + 20]!r}..., expected {expected[at:at + 20]!r}...")

    def test_small(self):
        for n in (0, 1, 2):
            with self.subTest(n=n):
                self.check(f"/fib/{n}", n)

    def test_uint64_boundary(self):
        # F(93) is the largest that fits in uint64 and F(92) in int64.
        for n in (92, 93, 94):
            with self.subTest(n=n):
                self.check(f"/fib/{n}", n)

    def test_large(self):
        for n in (1000, 100000):
            with self.subTest(n=n):
                self.check(f"/fib/{n}", n)

    def test_known_values(self):
        # Independent of harness.fib too.
        r = harness.get(GW.port, "/fib/10")
        self.assertEqual(r.json, {"n": 10, "fib": "55"}, harness.show(r))
        r = harness.get(GW.port, "/fib/93")
        self.assertEqual(r.json, {"n": 93, "fib": "12200160415121876738"}, harness.show(r))

    def test_leading_zeros(self):
        self.check("/fib/007", 7)
        self.check("/fib/0000", 0)

    def test_timeout_parameter_accepted(self):
        # A valid ?timeout_ms= does not change the answer.
        r = harness.get(GW.port, "/fib/20?timeout_ms=5000")
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.json, {"n": 20, "fib": "6765"}, harness.show(r))


if __name__ == "__main__":
    harness.main()
