#!/usr/bin/env python3
"""test_metrics.py - GET /metrics is valid Prometheus text (`promtool check
metrics` is clean) and counts what happened: after known traffic (200s,
400s, a timeout whose reply comes late and is dropped, a no-server answer)
every series moved by exactly that much.

Behind the gateway a scripted server (contract.ScriptedServer) answers F(n)
at once, except n = 13, which it answers after the caller's timeout."""

import os
import re
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract  # noqa: E402
import harness  # noqa: E402

QUEUE = "metrics_q"
LATE_N = 13
TIMEOUT_MS = 200
LATE_S = 0.6
MAX_INFLIGHT = 77

PROMTOOL = None
ENV = None
GW = None
SERVER = None

# family -> TYPE
FAMILIES = {
    "fibgw_build_info": "gauge",
    "fibgw_http_requests_total": "counter",
    "fibgw_http_problems_total": "counter",
    "fibgw_http_request_duration_seconds": "histogram",
    "fibgw_calls_in_flight": "gauge",
    "fibgw_calls_in_flight_max": "gauge",
    "fibgw_replies_dropped_total": "counter",
    "fibgw_amqp_reconnects_total": "counter",
    "fibgw_amqp_failovers_total": "counter",
    "fibgw_amqp_node_info": "gauge",
    "fibgw_amqp_connected": "gauge",
    "fibgw_amqp_blocked": "gauge",
    "fibgw_queue_consumers": "gauge",
    "fibgw_queue_no_server": "gauge",
    "fibgw_route_requests_total": "counter",
    "fibgw_route_problems_total": "counter",
    "fibgw_route_request_duration_seconds": "histogram",
}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def parse(text):
    """{(name, frozenset(labels)): float}, {family: type}, {family: help}."""
    samples, types, helps = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line.startswith("# HELP "):
            _, _, name, text_ = line.split(" ", 3)
            helps[name] = text_
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if m is None:
                raise AssertionError(f"unparsable sample line {line!r}")
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples, types, helps


def key(name, **labels):
    return (name, frozenset(labels.items()))


class Scraper:
    """GET /metrics, counting its own requests (each is a 200 the next
    scrape shows)."""

    def __init__(self, port):
        self.port = port
        self.count = 0

    def __call__(self):
        r = harness.get(self.port, "/metrics")
        self.count += 1
        assert r.status == 200, harness.show(r)
        return r.body.decode()

    def wait(self, name, value, timeout=harness.READY_TIMEOUT, **labels):
        deadline = time.monotonic() + timeout
        while True:
            text = self()
            if parse(text)[0].get(key(name, **labels)) == value:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} never became {value}:\n{text}")
            time.sleep(0.05)


def setUpModule():
    global ENV, GW, SERVER

    def start(env):
        global GW, SERVER
        script = lambda n: ("fib", LATE_S if n == LATE_N else 0)  # noqa: E731
        SERVER = contract.ScriptedServer(env.url, QUEUE, script).start_and_wait()
        GW = env.start_gateway(queue=QUEUE, max_inflight=MAX_INFLIGHT,
                               ready_path="/readyz", ready_status=200)
        env.wait_consumers_seen(GW)

    ENV = harness.setup_env("metrics", start)


def tearDownModule():
    if SERVER is not None:
        SERVER.stop()
    harness.teardown_env(ENV)


class MetricsTest(unittest.TestCase):
    def promtool(self, text):
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""),
                         f"promtool check metrics:\n{text}")

    def test_metrics_count_the_traffic(self):
        scrape = Scraper(GW.port)
        before_text = scrape()
        self.promtool(before_text)
        before = parse(before_text)[0]

        # The traffic: 5 x 200, 3 x 400 invalid_n, 1 x 400 n_out_of_range,
        # 1 x 504 timeout (its reply comes late: 1 dropped), 1 x 504 no_server.
        for n in range(1, 6):
            r = harness.get(GW.port, f"/fib/{n}")
            self.assertEqual((r.status, r.json), (200, {"n": n, "fib": str(harness.fib(n))}),
                             harness.show(r))
        for _ in range(3):
            harness.assert_problem(self, harness.get(GW.port, "/fib/abc"), 400, "invalid_n")
        harness.assert_problem(self, harness.get(GW.port, "/fib/100001"), 400,
                               "n_out_of_range")
        r = harness.get(GW.port, f"/fib/{LATE_N}?timeout_ms={TIMEOUT_MS}")
        harness.assert_problem(self, r, 504, "timeout")
        scrape.wait("fibgw_replies_dropped_total",
                    before[key("fibgw_replies_dropped_total")] + 1, timeout=LATE_S + 10)
        SERVER.stop()  # the queue's only consumer goes away
        # no_server once a zero has lasted (reads for 1 s)
        scrape.wait("fibgw_queue_no_server", 1, timeout=10, queue=QUEUE)
        harness.assert_problem(self, harness.get(GW.port, "/fib/10"), 504, "no_server")

        scrapes = scrape.count
        text = scrape()
        self.promtool(text)
        after, types, helps = parse(text)

        def delta(name, **labels):
            k = key(name, **labels)
            self.assertIn(k, after, f"series {name}{labels} missing:\n{text}")
            return after[k] - before.get(k, 0)

        # Every family, with HELP and the right TYPE.
        for family, kind in FAMILIES.items():
            with self.subTest(family=family):
                self.assertEqual(types.get(family), kind, f"TYPE of {family}")
                self.assertTrue(helps.get(family), f"HELP of {family}")
        # The node the gateway is connected to: the broker's host:port.
        node = urllib.parse.urlsplit(ENV.url).netloc.rsplit("@", 1)[-1]
        self.assertEqual([dict(k[1]) for k in after if k[0] == "fibgw_amqp_node_info"],
                         [{"node": node}])
        self.assertEqual(after[key("fibgw_amqp_node_info", node=node)], 1)
        self.assertEqual(delta("fibgw_amqp_failovers_total"), 0)

        # Requests by status: the /metrics scrapes are 200s too.
        requests = {code: delta("fibgw_http_requests_total", code=code)
                    for code in ("200", "400", "504")}
        self.assertEqual(requests, {"200": 5 + scrapes, "400": 4, "504": 2})
        others = {k: v - before.get(k, 0) for k, v in after.items()
                  if k[0] == "fibgw_http_requests_total"
                  and dict(k[1])["code"] not in requests and v != before.get(k, 0)}
        self.assertEqual(others, {}, "other statuses moved")

        # Problems by code: exactly these moved.
        problems = {dict(k[1])["code"]: v - before.get(k, 0) for k, v in after.items()
                    if k[0] == "fibgw_http_problems_total"}
        self.assertEqual(sorted(problems), sorted(contract.problem_codes()),
                         "fibgw_http_problems_total has one series per problem code")
        moved = {c: d for c, d in problems.items() if d}
        self.assertEqual(moved, {"invalid_n": 3, "n_out_of_range": 1, "timeout": 1,
                                 "no_server": 1})

        # Per route: the fib route counts its own calls, labelled by the
        # route's name (never by a raw path): the problems above, and the
        # 200s that were calls (not the scrapes).
        route_problems = {dict(k[1])["code"]: v - before.get(k, 0)
                          for k, v in after.items()
                          if k[0] == "fibgw_route_problems_total"
                          and dict(k[1])["route"] == "fib" and v != before.get(k, 0)}
        self.assertEqual(route_problems, moved)
        self.assertEqual({dict(k[1])["route"] for k in after
                          if k[0].startswith("fibgw_route_")}, {"fib"})
        self.assertEqual(delta("fibgw_route_requests_total", route="fib", code="504"), 2)
        self.assertEqual(delta("fibgw_route_requests_total", route="fib", code="400"), 4)
        self.assertEqual(delta("fibgw_route_request_duration_seconds_count", route="fib"),
                         sum(delta("fibgw_route_requests_total", route="fib", code=c)
                             for c in ("200", "400", "504")))

        # The duration histogram: cumulative buckets ending in +Inf == _count,
        # which counts every request; the timeout took >= 200 ms.
        h = "fibgw_http_request_duration_seconds"
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                          if k[0] == h + "_bucket"), key=lambda b: b[0])
        self.assertGreaterEqual(len(buckets), 5)
        self.assertEqual(buckets[-1][0], float("inf"))
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts), "buckets are cumulative")
        self.assertEqual(buckets[-1][1], after[key(h + "_count")])
        self.assertEqual(delta(h + "_count"), sum(requests.values()))
        self.assertGreaterEqual(delta(h + "_sum"), TIMEOUT_MS / 1000)
        le_100ms = [v - before.get(key(h + "_bucket", le=_le(le)), 0)
                    for le, v in buckets if le == 0.1]
        self.assertEqual(len(le_100ms), 1, "a le=0.1 bucket")
        self.assertLessEqual(le_100ms[0], sum(requests.values()) - 1,
                             "the 200 ms timeout is above the 0.1 s bucket")

        # Calls, replies, the AMQP link.
        self.assertEqual(after[key("fibgw_calls_in_flight")], 0)
        self.assertEqual(after[key("fibgw_calls_in_flight_max")], MAX_INFLIGHT)
        self.assertEqual(delta("fibgw_replies_dropped_total"), 1)
        self.assertEqual(after[key("fibgw_amqp_reconnects_total")], 0)
        self.assertEqual(after[key("fibgw_amqp_connected")], 1)
        self.assertEqual(after[key("fibgw_amqp_blocked")], 0)
        self.assertEqual(after[key("fibgw_queue_consumers", queue=QUEUE)], 0)
        self.assertEqual(after[key("fibgw_queue_no_server", queue=QUEUE)], 1)
        build = [k for k in after if k[0] == "fibgw_build_info"]
        self.assertEqual(len(build), 1)
        self.assertRegex(dict(build[0][1]).get("version", ""), r"^\d+\.\d+\.\d+")
        self.assertEqual(after[build[0]], 1)


def _le(value):
    """The le label as the gateway prints it (%g)."""
    return "+Inf" if value == float("inf") else f"{value:g}"


if __name__ == "__main__":
    PROMTOOL = contract.need_program(
        "promtool", "apt-get install prometheus (scripts/deps.sh)")
    harness.main()
