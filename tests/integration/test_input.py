#!/usr/bin/env python3
"""test_input.py - bad input gets 400 problem JSON and never reaches
RabbitMQ; unknown paths get 404, other methods 405 with Allow.

The gateway here serves its own queue, consumed by a recording consumer
instead of a worker: everything the gateway publishes is seen."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

QUEUE = "fibrpc_input_probe"
ENV = None
GW = None
PROBE = None

BAD_INPUT = [
    "/fib/-1",
    "/fib/abc",
    "/fib/1.5",
    "/fib/1e3",
    "/fib/+5",
    "/fib/0x10",
    "/fib/%2010",        # encoded space
    "/fib/10%20",
    "/fib/1%00",         # encoded NUL
    "/fib/%00",
    "/fib/" + "1" * 30,  # 30 digits
    "/fib/" + "9" * 20,  # overflows uint64
    "/fib/4294967296",   # overflows uint32
    "/fib/100001",       # over the default --max-n 100000
    "/fib/10/extra",
    "/fib/",             # empty
    "/fib/10?timeout_ms=abc",
    "/fib/10?timeout_ms=-5",
    "/fib/10?timeout_ms=1.5",
]

# One rule for n (README "Behaviour"): digits only, any number of them;
# above --max-n is n_out_of_range whatever the length.  The rest of
# BAD_INPUT is invalid_n or invalid_timeout.
OUT_OF_RANGE = {
    "/fib/" + "1" * 30,
    "/fib/" + "1" * 21,
    "/fib/" + "9" * 20,
    "/fib/4294967296",
    "/fib/100001",
}
BAD_INPUT.append("/fib/" + "1" * 21)

NOT_FOUND = ["/index.html", "/nope", "/healthz/x", "/fibx/1", "/FIB/1", "/fib10"]


def setUpModule():
    global ENV, GW, PROBE

    def start(env):
        global GW, PROBE
        PROBE = harness.FakeConsumer(env.url, QUEUE).start_and_wait()
        GW = env.start_gateway(queue=QUEUE, ready_path="/readyz", ready_status=200)
        env.wait_consumers_seen(GW)  # the probe: no_server otherwise

    ENV = harness.setup_env("input", start)


def tearDownModule():
    if PROBE is not None:
        PROBE.stop()
    harness.teardown_env(ENV)


class InputTest(unittest.TestCase):
    # Runs first (unittest sorts by name): the control request at the end
    # proves that nothing published before it reached the queue.
    def test_0_bad_input_is_400_and_never_published(self):
        for path in BAD_INPUT:
            with self.subTest(path=path):
                r = harness.get(GW.port, path)
                code = ("n_out_of_range" if path in OUT_OF_RANGE else
                        "invalid_timeout" if "timeout_ms" in path else "invalid_n")
                harness.assert_problem(self, r, 400, code=code, what=f"GET {path}")

        # Control: a valid request is published (and times out: nobody replies).
        # Messages on one channel arrive in order, so once the control message is
        # here any earlier publish would be too.
        r = harness.get(GW.port, "/fib/12345?timeout_ms=300")
        harness.assert_problem(self, r, 504, what="control request GET /fib/12345")
        m = PROBE.wait_for(lambda body, props: body == b"12345")
        self.assertIsNotNone(m, "the control request never reached the queue: "
                                "the probe cannot see what the gateway publishes")
        published = [body for _, body, _ in PROBE.snapshot()]
        self.assertEqual(published, [b"12345"],
                         "bad requests reached RabbitMQ (bodies published, in order)")

    def test_not_found(self):
        for path in NOT_FOUND:
            with self.subTest(path=path):
                harness.assert_problem(self, harness.get(GW.port, path), 404,
                                       what=f"GET {path}")

    def test_method_not_allowed(self):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                r = harness.http_request(GW.port, method, "/fib/10", body=b"")
                harness.assert_problem(self, r, 405, what=f"{method} /fib/10")
                allow = r.headers.get("Allow")
                self.assertIsNotNone(allow, f"{method} /fib/10: no Allow header")
                allowed = {m.strip().upper() for m in allow.split(",")}
                self.assertIn("GET", allowed, f"{method} /fib/10: Allow: {allow}")
                self.assertNotIn(method, allowed, f"{method} /fib/10: Allow: {allow}")


if __name__ == "__main__":
    harness.main()
