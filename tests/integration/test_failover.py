#!/usr/bin/env python3
"""test_failover.py - issue 12: several brokers in --amqp-url.

Two independent single nodes, A and B (scripts/broker.sh; no cluster
needed), each with a user `fo` of its own password.  A gateway and a worker
get both URLs, B first, while B is down: both connect to A.  With B back
and A killed (-9), both fail over to B, the gateway answers 200 again within
a couple of seconds, and meanwhile every call is answered at once with a
documented error (503 with Retry-After, 502 for a call in flight, 504
no_server while B has no worker yet: independent nodes have separate
queues).  Logs and /metrics name the node each is on and count the
failover; neither password appears in any log, both URLs appear masked."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PASSWORDS = {"A": "pwA-4e7c1", "B": "pwB-9d2f8"}
# Failover itself takes ~0.1 s (the first retry goes at once to the next
# node; connect + login + declare on loopback).  The bound is for a loaded
# 2-core machine under ASan; the old single-URL gateway never comes back at
# all while A is down.
FAILOVER_BOUND_S = 10.0
ENV = None
B = None
URLS = None
GW = None
WORKER = None
WORKER_METRICS = None


def port_of(url):
    return int(re.search(r":(\d+)/", url).group(1))


def add_user(broker, password):
    broker.ctl("add_user", "fo", password)
    broker.ctl("set_permissions", "-p", "/", "fo", ".*", ".*", ".*")


def setUpModule():
    global ENV, B, URLS, GW, WORKER, WORKER_METRICS
    ENV = harness.setup_env("failover")
    try:
        B = harness.Broker(os.path.join(ENV.dir, "broker-b"))
        B.start()
        add_user(ENV.broker, PASSWORDS["A"])
        add_user(B, PASSWORDS["B"])
        url_a = f"amqp://fo:{PASSWORDS['A']}@127.0.0.1:{port_of(ENV.url)}/%2F"
        url_b = f"amqp://fo:{PASSWORDS['B']}@127.0.0.1:{port_of(B.url)}/%2F"
        URLS = {"A": url_a, "B": url_b}
        B.stop_node()  # keeps its ports and users for restart()
        both = f"{url_b},{url_a}"
        WORKER_METRICS = harness.free_port()
        WORKER = ENV.start_worker(args=["--amqp-url", both, "--metrics-listen",
                                        f"127.0.0.1:{WORKER_METRICS}"])
        GW = ENV.start_gateway(args=["--amqp-url", both])
    except BaseException:
        ENV.stop()
        if B is not None:
            B.stop()
        raise


def tearDownModule():
    try:
        if B is not None:
            ENV.problems.extend(B.stop())
    finally:
        harness.teardown_env(ENV)


def metrics(port):
    r = harness.get(port, "/metrics", timeout=10)
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def node(which):
    return f"127.0.0.1:{port_of(URLS[which])}"


def masked(which):
    return URLS[which].replace(PASSWORDS[which], "***")


class Failover(unittest.TestCase):
    def test_1_both_on_the_live_node(self):
        r = harness.get(GW.port, "/fib/10")
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.json["fib"], "55")
        gw = metrics(GW.port)
        self.assertEqual(gw.get(f'fibgw_amqp_node_info{{node="{node("A")}"}}'), 1, gw)
        self.assertEqual(gw["fibgw_amqp_failovers_total"], 0)
        w = metrics(WORKER_METRICS)
        self.assertEqual(w.get(f'fibw_amqp_node_info{{node="{node("A")}"}}'), 1, w)
        self.assertEqual(w["fibw_amqp_failovers_total"], 0)
        # Where each is: the log says so too.
        self.assertTrue(GW.wait_events("amqp_connected", node=node("A"), url=masked("A")),
                        GW.log_tail())
        self.assertTrue(WORKER.wait_events("ready", node=node("A"), url=masked("A")),
                        WORKER.log_tail())

    def test_2_kill_the_node_fail_over(self):
        B.restart()
        harness.Call(GW.port, "/fib/20")  # may be in flight at the kill
        ENV.broker.kill_node()
        killed = time.monotonic()
        answers = []
        while True:
            r = harness.get(GW.port, "/fib/30", timeout=10)
            answers.append(r)
            if r.status == 200:
                break
            if time.monotonic() - killed > FAILOVER_BOUND_S:
                self.fail(f"no 200 within {FAILOVER_BOUND_S} s of the kill; last "
                          f"{harness.show(r)}\n{GW.log_tail()}\n{WORKER.log_tail()}")
            time.sleep(0.02)
        outage = time.monotonic() - killed
        print(f"\nfailover: first 200 {outage * 1000:.0f} ms after kill -9 of the "
              f"gateway's and the worker's node ({len(answers) - 1} calls before)",
              file=sys.stderr)
        self.assertEqual(answers[-1].json["fib"], str(harness.fib(30)))
        for r in answers[:-1]:
            self.assertIn(r.json.get("code") if r.json else None,
                          ("broker_unavailable", "connection_lost", "no_server"),
                          harness.show(r))
            if r.status == 503:
                self.assertTrue(r.headers.get("Retry-After"), harness.show(r))
        # Both moved to B, said so, and counted it.
        self.assertTrue(GW.wait_events("amqp_failover", **{"from": node("A"), "to": node("B")}),
                        GW.log_tail())
        self.assertTrue(WORKER.wait_events("ready", node=node("B"), url=masked("B")),
                        WORKER.log_tail())
        gw = metrics(GW.port)
        self.assertEqual(gw.get(f'fibgw_amqp_node_info{{node="{node("B")}"}}'), 1, gw)
        self.assertNotIn(f'fibgw_amqp_node_info{{node="{node("A")}"}}', gw)
        self.assertEqual(gw["fibgw_amqp_failovers_total"], 1)
        w = metrics(WORKER_METRICS)
        self.assertEqual(w.get(f'fibw_amqp_node_info{{node="{node("B")}"}}'), 1, w)
        self.assertEqual(w["fibw_amqp_failovers_total"], 1)

    def test_3_every_password_masked(self):
        for p in (GW, WORKER):
            log = p.log()
            for which, pw in PASSWORDS.items():
                self.assertNotIn(pw, log, f"{p.name} logs the password of {which}")
            start = p.events("starting")[0]
            self.assertEqual(sorted(start["amqp_url"].split(",")),
                             sorted([masked("A"), masked("B")]), start)


if __name__ == "__main__":
    unittest.main()
