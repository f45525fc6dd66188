#!/usr/bin/env python3
"""test_shutdown.py - graceful stop (README, "Graceful stop").

Gateway: on SIGTERM or SIGINT it stops accepting (new connections are
refused) and closes every idle kept-alive connection before reading
anything more from it; a request it had begun to read is answered (503
shutting_down); the calls in flight finish (a slow fake worker answers 20
of them after ~1 s; one that is never answered ends at its own timeout with
504); every answer from the signal on carries Connection: close; it writes
every answer, then exits 0.  No request the gateway has read goes
unanswered: a request that races the close either gets an answer or was
never read (no log line, never published).  Also when the broker dies while
it drains: the calls then fail at once, and each caller still gets that
answer.

Worker: on SIGTERM while it computes it still replies (the caller gets 200),
acks, and exits 0; nothing is left in the queue."""

import errno
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SLOW_QUEUE = "fibrpc_shutdown_slow"
WORK_QUEUE = "fibrpc_shutdown_work"
SLOW_S = 1.0      # the fake's reply delay
NEVER_N = 99      # the fake never answers this n
BIG_N = 10_000_000
ENV = None
FAKE = None
GW_WORK = None


def fake_delay(n):
    if n == NEVER_N:
        return None
    return 0.0 if n < 5 else SLOW_S  # n < 5: readiness probes


def setUpModule():
    global ENV

    def start(env):
        global FAKE, GW_WORK
        FAKE = harness.ReplyingFake(env.url, SLOW_QUEUE, fake_delay).start_and_wait()
        GW_WORK = env.start_gateway(queue=WORK_QUEUE, max_n=BIG_N, timeout_ms=30000,
                                    ready_path="/nope", ready_status=None)

    ENV = harness.setup_env("shutdown", start)


def tearDownModule():
    if FAKE is not None:
        FAKE.stop()
    harness.teardown_env(ENV)


def connect_refused(port):
    """True when a new TCP connection to the port is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    finally:
        s.close()


def Call(port, path):
    return harness.Call(port, path, timeout=30)


def active_connections(port):
    """fibgw_http_connections{state="active"} from /metrics (the scrape's
    own connection included)."""
    r = harness.get(port, "/metrics")
    m = re.search(r'^fibgw_http_connections\{state="active"\} (\d+)$',
                  r.body.decode(), re.M)
    if m is None:
        raise AssertionError(f"no active-connections gauge in /metrics:\n{r.body[:2000]!r}")
    return int(m.group(1))


def read_response(sock):
    """One HTTP response from a raw socket: (status, headers, parsed JSON
    body); raises http.client errors when the connection closes first."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    body = resp.read()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return harness.Response(resp.status, resp.headers, body, parsed, 0)


def closed_without_answer(sock):
    """Waits for the peer to close; True when it closed without sending a
    byte.  The wait is for an event the gateway owes us at once; 10 s only
    keeps a broken gateway from hanging the test."""
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class GatewayStopTest(unittest.TestCase):
    def stop_gateway_with_calls_in_flight(self, sig, never_answered):
        gw = ENV.start_gateway(queue=SLOW_QUEUE, timeout_ms=10000)
        # Kept-alive connections from before the signal, both idle after a
        # first answer: `idle` sends nothing more, `late` sends a request
        # right after the signal.
        conns = {}
        for name in ("idle", "late"):
            c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            c.request("GET", "/nope")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 404)
            conns[name] = c
        # A request whose head is half sent before the signal: the gateway
        # has read its request line, so it owes it an answer.  Wait until
        # the gateway says so (2 = this one and the scrape itself).
        partial = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        partial.sendall(b"GET /fib/40 HTTP/1.1\r\nHost: t\r\nX-Request-Id: partial-1\r\n")
        deadline = time.monotonic() + 10
        while active_connections(gw.port) < 2:
            self.assertLess(time.monotonic(), deadline, "the half-sent head was never read")
            time.sleep(0.01)

        before = len(FAKE.snapshot())
        ns = list(range(10, 30))  # 20 calls: each answer must still be written
        calls = [Call(gw.port, f"/fib/{n}") for n in ns]
        if never_answered:
            calls.append(Call(gw.port, f"/fib/{NEVER_N}?timeout_ms=2500"))
        t_calls = time.monotonic()
        self.assertTrue(FAKE.wait_requests(before + len(calls)),
                        "the calls did not reach the fake worker")
        t_sig = time.monotonic()
        gw.signal(sig)
        late_id = "late-" + uuid.uuid4().hex[:8]
        late = conns["late"]
        late_box = {}

        def send_late():
            try:
                late.request("GET", "/fib/41", headers={"X-Request-Id": late_id})
                r = late.getresponse()
                late_box["resp"] = harness.Response(r.status, r.headers, r.read(), None, 0)
            except (OSError, http.client.HTTPException) as e:
                late_box["resp"] = e
        late_thread = threading.Thread(target=send_late, daemon=True)
        late_thread.start()

        # New connections are refused soon after the signal.
        refused_at = None
        while time.monotonic() - t_sig < 2.0:
            if connect_refused(gw.port):
                refused_at = time.monotonic()
                break
            time.sleep(0.01)
        self.assertIsNotNone(refused_at, "new connections still accepted 2 s after the signal")

        # The idle connection is closed without a byte sent.
        self.assertTrue(closed_without_answer(conns["idle"].sock),
                        "the idle kept-alive connection got bytes instead of a close")
        conns["idle"].close()

        # The half-read request is answered, and its connection closed.
        partial.sendall(b"\r\n")
        try:
            resp = read_response(partial)
        except (OSError, http.client.HTTPException) as e:
            self.fail(f"a request the gateway had begun to read got no answer: {e!r}")
        harness.assert_problem(self, resp, 503, "shutting_down", "half-read request")
        self.assertEqual(resp.headers.get("Connection"), "close")
        self.assertTrue(closed_without_answer(partial), "bytes after the last answer")
        partial.close()

        # The calls in flight still get their answers, each closing its
        # connection...
        for c in calls:
            c.join(30)
        for n, c in zip(ns, calls):
            self.assertIsNone(c.error, f"/fib/{n}: {c.error!r}")
            self.assertEqual(c.resp.status, 200, harness.show(c.resp))
            self.assertEqual(c.resp.json, {"n": n, "fib": str(harness.fib(n))})
            self.assertEqual(c.resp.headers.get("Connection"), "close")
            self.assertGreater(c.done_at, t_sig, "answered before the signal: test too slow")
        if never_answered:
            c = calls[-1]
            self.assertIsNone(c.error, f"never-answered call: {c.error!r}")
            harness.assert_problem(self, c.resp, 504, "timeout", "never-answered call")
            self.assertLess(c.done_at - t_calls, 2.5 + 1.0)
        # ...and then the gateway exits 0, without waiting longer than that.
        rc = gw.wait(15)
        exited_at = time.monotonic()
        self.assertEqual(rc, 0, f"exit status after {signal.Signals(sig).name}:\n"
                                f"{gw.log_tail()}")
        last = max(c.done_at for c in calls)
        self.assertLess(exited_at - last, 2.0, "the gateway lingered after its last call")
        self.assertTrue(gw.events("stopping"), "no msg=stopping in the gateway's log")
        self.assertEqual(gw.events("stopped_with_unanswered"), [])

        # The request sent on the idle connection right after the signal
        # raced its close (and the signal's delivery).  Either way nothing
        # is lost: answered (200 when it was read before the drain began,
        # else 503), or never read (no log line) and so never published.
        late_thread.join(30)
        late_resp = late_box.get("resp")
        self.assertIsNotNone(late_resp, "the racing request neither answered nor closed")
        logged = [e for e in gw.events("request") if e.get("request_id") == late_id]
        published = [p for _, _, p in FAKE.snapshot()
                     if (p.headers or {}).get("x-request-id") == late_id]
        late.close()
        if isinstance(late_resp, Exception):
            self.assertEqual(logged, [], f"read but not answered: {late_resp!r}")
            self.assertEqual(published, [], "never answered but published")
            how = f"closed unread ({type(late_resp).__name__})"
        else:
            self.assertEqual(len(logged), 1, logged)
            if late_resp.status == 200:
                self.assertEqual(json.loads(late_resp.body), {"n": 41, "fib": str(harness.fib(41))})
            else:
                self.assertEqual(late_resp.status, 503, harness.show(late_resp))
            how = f"answered {late_resp.status}"
        print(f"\n  {signal.Signals(sig).name}: refused new connections after "
              f"{refused_at - t_sig:.3f} s, last call answered {last - t_sig:.3f} s and "
              f"exit {exited_at - t_sig:.3f} s after the signal; the racing request was "
              f"{how}", file=sys.stderr)

    def test_sigterm_finishes_calls_in_flight_and_exits_0(self):
        self.stop_gateway_with_calls_in_flight(signal.SIGTERM, never_answered=False)

    def test_sigint_waits_for_calls_up_to_their_timeout_and_exits_0(self):
        self.stop_gateway_with_calls_in_flight(signal.SIGINT, never_answered=True)

    def test_broker_lost_while_stopping_every_call_still_answered(self):
        """SIGTERM with 20 calls in flight, then the broker crashes: the
        calls end at once (502/503), and each caller still gets that answer
        before the gateway exits 0, not a closed connection."""
        gw = ENV.start_gateway(queue=SLOW_QUEUE, timeout_ms=10000)
        before = len(FAKE.snapshot())
        calls = [Call(gw.port, f"/fib/{NEVER_N}") for _ in range(20)]
        self.assertTrue(FAKE.wait_requests(before + len(calls)),
                        "the calls did not reach the fake worker")
        gw.signal(signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while not connect_refused(gw.port) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            t_kill = time.monotonic()
            ENV.broker.kill_node()
            for c in calls:
                c.join(20)
            lost = [repr(c.error) for c in calls if c.error is not None]
            self.assertEqual(lost, [], f"{len(lost)} of {len(calls)} callers got no HTTP "
                                       f"answer at all")
            for c in calls:
                self.assertIn(c.resp.status, (502, 503), harness.show(c.resp))
                harness.assert_problem(self, c.resp, c.resp.status, what=c.path)
                self.assertLess(c.done_at - t_kill, 2.0, "calls did not fail at once")
            self.assertEqual(gw.wait(15), 0, gw.log_tail())
        finally:
            ENV.broker.restart()
            ENV.broker.wait_consumers(SLOW_QUEUE, 1)


class WorkerStopTest(unittest.TestCase):
    def test_sigterm_while_computing_replies_acks_and_exits_0(self):
        digits, lead, trail = harness.fib_summary(BIG_N)
        outcomes = []
        for attempt in range(1, 4):
            worker = ENV.start_worker(queue=WORK_QUEUE, max_n=BIG_N)
            ENV.wait_http(GW_WORK, "/fib/1", 200)  # the gateway sees the worker
            rid = f"worker-stop-{attempt}-{uuid.uuid4().hex[:8]}"
            base = worker.cpu_ticks()
            box = {}

            def run(rid=rid, box=box):
                box["resp"] = harness.get(GW_WORK.port, f"/fib/{BIG_N}",
                                          headers={"X-Request-Id": rid}, timeout=60)
            t = threading.Thread(target=run, daemon=True)
            t.start()
            deadline = time.monotonic() + 15
            while (worker.cpu_ticks() - base < 3 and "resp" not in box
                   and time.monotonic() < deadline):
                time.sleep(0.002)
            t_sig = time.time()
            worker.signal(signal.SIGTERM)
            rc = worker.wait(15)
            t.join(60)
            self.assertEqual(rc, 0, f"worker exit status after SIGTERM:\n{worker.log_tail()}")
            served = [e for e in worker.events("served") if e.get("request_id") == rid]
            if not served or harness.log_time(served[0]) < t_sig:
                outcomes.append(f"attempt {attempt}: SIGTERM did not land mid-computation "
                                f"(served: {served})")
                continue
            r = box.get("resp")
            self.assertIsNotNone(r, "no answer")
            self.assertEqual(r.status, 200, harness.show(r))
            got = r.json["fib"]
            self.assertEqual((len(got), got[:len(lead)], got[-len(trail):]),
                             (digits, lead, trail), "wrong F(10^7)")
            stopping = worker.events("stopping")
            self.assertTrue(stopping, "no msg=stopping in the worker's log")
            self.assertGreaterEqual(harness.log_time(stopping[0]), harness.log_time(served[0]))
            # Acked before it left: nothing went back to the queue.
            self.assertEqual(ENV.broker.queue_info(WORK_QUEUE), (0, 0),
                             "(messages, consumers) after the worker stopped")
            return
        self.fail("could not SIGTERM the worker while it computed, in 3 attempts:\n  "
                  + "\n  ".join(outcomes))


if __name__ == "__main__":
    harness.main()
