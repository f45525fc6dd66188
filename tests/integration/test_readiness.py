#!/usr/bin/env python3
"""test_readiness.py - /readyz for several gateways behind a load balancer,
and the drain delay (cluster issue; README, "Readiness and the drain
delay").

- /readyz is this gateway's own state: 200 while connected to RabbitMQ,
  workers or not (the body still counts them: consumers 0, then 1 once a
  worker comes), because "no worker" would take every gateway out at once;
  a call still gets 504 no_server.  503 broker_unavailable without a broker.
- On SIGTERM /readyz turns 503 shutting_down at once: also for a request
  that was half read when the signal came (and with no drain delay).
- --drain-delay-ms: from the signal on /readyz says 503, and everything
  else is served as before, on new connections and kept-alive ones, with
  no Connection: close; SIGHUP still reloads; a second SIGTERM ends the
  delay, and then the graceful stop runs as always (connections refused,
  exit 0).  The delay lasts as long as asked: the gateway's own log puts
  its drain at least --drain-delay-ms after the signal."""

import errno
import http.client
import json
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ENV = None
WORKER = None
NOBODY = "fibrpc_readiness_nobody"  # a queue no worker consumes


def setUpModule():
    global ENV

    def start(env):
        global WORKER
        WORKER = env.start_worker()

    ENV = harness.setup_env("readiness", start)


def tearDownModule():
    harness.teardown_env(ENV)


def connect_refused(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    finally:
        s.close()


def ask(conn, path):
    """One request on a kept-alive connection: harness.Response."""
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return harness.Response(r.status, r.headers, body, parsed, 0)


class ReadyTest(unittest.TestCase):
    def test_ready_without_workers_and_calls_get_no_server(self):
        ENV.broker.declare_queue(NOBODY)
        gw = ENV.start_gateway(queue=NOBODY, ready_path="/readyz")
        try:
            r = harness.get(gw.port, "/readyz")
            self.assertEqual(r.status, 200, harness.show(r))
            self.assertEqual(r.json, {"status": "ready", "queue": NOBODY, "consumers": 0,
                                      "queues": {NOBODY: 0}, "blocked": False,
                                      "calls_in_flight": 0})
            r = harness.get(gw.port, "/fib/5")
            harness.assert_problem(self, r, 504, "no_server")
            self.assertLess(r.elapsed, 2.0, "no_server is answered at once")
            # A worker comes: the body counts it, the status was 200 anyway.
            w = ENV.start_worker(queue=NOBODY)
            try:
                r = ENV.wait_consumers_seen(gw, 1)
                self.assertEqual(r.json["consumers"], 1)
                self.assertEqual(harness.get(gw.port, "/fib/5").json, {"n": 5, "fib": "5"})
            finally:
                ENV.stop_proc(w)
        finally:
            ENV.stop_proc(gw)

    def test_not_ready_without_a_broker(self):
        dead = f"amqp://guest:guest@127.0.0.1:{harness.free_port()}/"
        port = harness.free_port()
        argv = [harness.binary("rpc-gateway"), "--amqp-url", dead,
                "--listen", f"127.0.0.1:{port}"]
        gw = harness.Proc(ENV._unique("rpc-gateway"), argv, ENV.dir)
        gw.port = port
        ENV.procs.append(gw)
        try:
            r = ENV.wait_http(gw, "/readyz", 503)
            harness.assert_problem(self, r, 503, "broker_unavailable")
            self.assertEqual(r.headers.get("Retry-After"), "1")
        finally:
            ENV.stop_proc(gw)


class StopTest(unittest.TestCase):
    def test_sigterm_turns_readyz_503_at_once(self):
        """No drain delay: a /readyz whose head was half read when SIGTERM
        came is answered 503 shutting_down (it was 200 a moment before)."""
        gw = ENV.start_gateway(ready_path="/readyz")
        ENV.wait_consumers_seen(gw)
        partial = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        try:
            partial.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\n")
            # The gateway has the request line once the gauge counts it
            # (2: this one and the scrape).
            deadline = time.monotonic() + 10
            while True:
                m = harness.get(gw.port, "/metrics").body.decode()
                if 'fibgw_http_connections{state="active"} 2' in m:
                    break
                self.assertLess(time.monotonic(), deadline, "the half-sent head was not read")
                time.sleep(0.01)
            gw.signal(signal.SIGTERM)
            self.assertTrue(gw.wait_events("stopping"), gw.log_tail())
            partial.sendall(b"\r\n")
            resp = http.client.HTTPResponse(partial)
            resp.begin()
            body = resp.read()
            r = harness.Response(resp.status, resp.headers, body, json.loads(body), 0)
            harness.assert_problem(self, r, 503, "shutting_down", "/readyz after SIGTERM")
            self.assertEqual(r.json["detail"], "the gateway is stopping")
            self.assertEqual(r.headers.get("Connection"), "close")
        finally:
            partial.close()
        self.assertEqual(gw.wait(20), 0, gw.log_tail())

    def test_drain_delay_keeps_serving_until_a_second_signal(self):
        gw = ENV.start_gateway(args=["--drain-delay-ms", "600000"])
        ENV.wait_consumers_seen(gw)
        kept = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        try:
            self.assertEqual(ask(kept, "/readyz").status, 200)
            gw.signal(signal.SIGTERM)
            ev = gw.wait_events("stopping")
            self.assertEqual(ev[0]["drain_delay_ms"], "600000", gw.log_tail())

            # Unready at once...
            r = harness.get(gw.port, "/readyz")
            harness.assert_problem(self, r, 503, "shutting_down", "new connection")
            self.assertEqual(r.headers.get("Retry-After"), "1")
            # ...while everything else is served as before, on new
            # connections and on the kept one, which stays open.
            for n in (10, 11):
                r = harness.get(gw.port, f"/fib/{n}")
                self.assertEqual(r.json, {"n": n, "fib": str(harness.fib(n))})
                self.assertIsNone(r.headers.get("Connection"))
                r = ask(kept, f"/fib/{n}")
                self.assertEqual(r.json, {"n": n, "fib": str(harness.fib(n))})
                self.assertIsNone(r.headers.get("Connection"))
            # (A shutting_down answer closes its connection, /readyz's too.)
            r = ask(kept, "/readyz")
            harness.assert_problem(self, r, 503, "shutting_down", "kept-alive connection")
            self.assertEqual(r.headers.get("Connection"), "close")
            self.assertEqual(harness.get(gw.port, "/healthz").status, 200)
            # SIGHUP still reloads and does not end the delay.
            gw.popen.send_signal(signal.SIGHUP)
            self.assertTrue(gw.wait_events("reloading"), gw.log_tail())
            self.assertEqual(harness.get(gw.port, "/fib/12").status, 200)
            self.assertEqual(gw.events("draining"), [])

            # A second SIGTERM ends the delay: the graceful stop follows.
            t_cut = time.monotonic()
            gw.signal(signal.SIGTERM)
            self.assertTrue(gw.wait_events("drain_delay_cut"), gw.log_tail())
            deadline = time.monotonic() + 10
            while not connect_refused(gw.port):
                self.assertLess(time.monotonic(), deadline,
                                "new connections still accepted after the delay ended")
                time.sleep(0.01)
            print(f"\n  refused {time.monotonic() - t_cut:.3f} s after the second SIGTERM",
                  file=sys.stderr)
        finally:
            kept.close()
        self.assertEqual(gw.wait(20), 0, gw.log_tail())
        self.assertEqual(gw.events("stopped_with_unanswered"), [])

    def test_drain_delay_lasts_as_long_as_asked(self):
        delay_ms = 1500
        gw = ENV.start_gateway(args=["--drain-delay-ms", str(delay_ms)])
        gw.signal(signal.SIGTERM)
        self.assertEqual(gw.wait(20), 0, gw.log_tail())
        stopping, draining = gw.events("stopping"), gw.events("draining")
        self.assertTrue(stopping and draining, gw.log_tail())
        waited = harness.log_time(draining[0]) - harness.log_time(stopping[0])
        # Log times have millisecond resolution; the upper bound only says
        # it did end (a loaded machine may wake the thread late).
        self.assertGreaterEqual(waited, delay_ms / 1000 - 0.002)
        self.assertLess(waited, delay_ms / 1000 + 10)
        self.assertEqual(gw.events("drain_delay_cut"), [])


if __name__ == "__main__":
    harness.main()
