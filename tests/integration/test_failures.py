#!/usr/bin/env python3
"""test_failures.py - every failure gets a fast, honest answer (issue 3,
points 1-4): no server (504 no_server at once), timeouts (504 timeout on
time), worker errors forwarded (4xx / 502 worker_error / 502 bad_reply), and
late, duplicate or unknown replies dropped, logged and never seen by another
caller.

Misbehaving peers are the fakes of fakes.py, each on its own queue behind
its own gateway; the worker-rejection case uses a real fib-worker."""

import collections
import os
import statistics
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import fakes  # noqa: E402

ENV = None
GW = {}     # name -> gateway Proc
FAKE = {}   # name -> fake server

# The bounds.
NO_SERVER_MAX_S = 0.100      # "well under 100 ms after the request"
TIMEOUT_SLACK_S = 0.100      # "within +-100 ms of the request's timeout"
# The gateway refreshes the consumer count every 100 ms while it is zero and
# every 1000 ms otherwise, and believes a zero once it lasted 1000 ms
# (gateway/watch.h); allow a broker round trip and a loaded machine.
CONSUMER_APPEARS_MAX_S = 1.0
CONSUMER_GONE_MAX_S = 2.6
# Gateway start-ups hammered by test_no_server_from_the_first_moment.
STARTUP_ATTEMPTS = 6
STARTUP_CALLERS = 6

# Garbage replies, by the n asked for (the fake answers n with this).
ERR_CT = fakes.ERROR_CONTENT_TYPE
GARBAGE = {
    0: (b"12a", "text/plain"),                      # also the readiness probe
    1: (b"", "text/plain"),
    2: (b"007", "text/plain"),
    3: (bytes([0, 0xFF, 0xFE, 0x80, 0x0A, 0x35]), "application/octet-stream"),
    4: (b"{not json", ERR_CT),
    5: (b"", ERR_CT),
    6: (b'{"message": "type is missing"}', ERR_CT),
    7: (b'["internal", "not an object"]', ERR_CT),
    8: (b'{"type": 5, "message": "type is not a string"}', ERR_CT),
    9: (b'{"type": "internal"}', ERR_CT),            # message missing
    10: (b'{"type": "internal", "message": "json, wrong content type"}', "text/plain"),
    11: (b"-5", "text/plain"),
    12: (b" 55", "text/plain"),
    13: (b"1e3", None),                              # no content type at all
    14: (b"9" * (4 * 1024 * 1024 + 1), "text/plain"),  # digits, but over the size cap
}


def garbage_for(n):
    return GARBAGE.get(n, (b"12a", "text/plain"))


WORKER_ERRORS = {
    0: ("internal", "fake worker failure"),
    1: ("internal", "disk on fire while computing F(1)"),
    2: ("expired", "the deadline passed before the work started"),
    3: ("internal", "non-ASCII survives: \u00fcn\u00efc\u00f8d\u00e9 \u2713"),
}


def worker_error_for(n):
    return WORKER_ERRORS.get(n, WORKER_ERRORS[0])


def setUpModule():
    global ENV

    def start(env):
        url = env.url
        # 1. no server: a queue that does not exist, one without consumers.
        GW["missing"] = env.start_gateway(queue="fibrpc_missing", timeout_ms=3000,
                                          ready_path="/fib/1", ready_status=504)
        env.broker.declare_queue("fibrpc_idle")
        GW["idle"] = env.start_gateway(queue="fibrpc_idle", timeout_ms=3000,
                                       ready_path="/fib/1", ready_status=504)
        # A worker's own exclusive queue: the gateway may not read it.
        FAKE["exclusive"] = fakes.FibServer(url, "fibrpc_exclusive",
                                            declare="exclusive").start_and_wait()
        GW["exclusive"] = env.start_gateway(queue="fibrpc_exclusive")
        # 2. timeout: a consumer that never replies.
        FAKE["silent"] = fakes.SilentServer(url, "fibrpc_silent").start_and_wait()
        GW["silent"] = env.start_gateway(queue="fibrpc_silent",
                                         ready_path="/fib/1?timeout_ms=50",
                                         ready_status=504)
        # 3. worker failures.
        env.start_worker(queue="fibrpc_small", max_n=50)
        GW["small"] = env.start_gateway(queue="fibrpc_small")  # default --max-n
        FAKE["werr"] = fakes.WorkerErrorServer(url, "fibrpc_werr",
                                               error=worker_error_for).start_and_wait()
        GW["werr"] = start_linked_gateway(env, queue="fibrpc_werr")
        FAKE["garbage"] = fakes.GarbageServer(url, "fibrpc_garbage",
                                              reply=garbage_for).start_and_wait()
        GW["garbage"] = start_linked_gateway(env, queue="fibrpc_garbage")
        # 4. late, duplicate and unknown replies.
        FAKE["twice"] = fakes.TwiceServer(url, "fibrpc_twice",
                                          second=fakes.wrong_answer).start_and_wait()
        GW["twice"] = env.start_gateway(queue="fibrpc_twice")
        FAKE["unknown"] = fakes.UnknownIdServer(
            url, "fibrpc_unknown", then_right=lambda n: n < 10000).start_and_wait()
        GW["unknown"] = env.start_gateway(queue="fibrpc_unknown")
        FAKE["late"] = fakes.LateServer(url, "fibrpc_late", delay=0.4).start_and_wait()
        GW["late"] = env.start_gateway(queue="fibrpc_late")

    ENV = harness.setup_env("failures", start)


def tearDownModule():
    fakes.stop_all()
    harness.teardown_env(ENV)


# --------------------------------------------------------------------- helpers


def start_linked_gateway(env, probe="/fib/0", **kw):
    """A gateway whose AMQP link is up: `probe` gets an answer other than
    503 (whatever the fake behind it makes of the probe; checking that is
    the tests' job, not the set-up's)."""
    gw = env.start_gateway(ready_path="/fib/", ready_status=None, **kw)
    deadline = time.monotonic() + harness.READY_TIMEOUT
    while True:
        r = harness.get(gw.port, probe)
        if r.status != 503:
            return gw
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{gw.name}: AMQP link not up: {harness.show(r)}\n"
                               + gw.log_tail())
        time.sleep(0.05)


def dropped_lines(gw):
    return [ln for ln in gw.lines() if "msg=reply_dropped " in ln]


def suppressed(gw):
    """Drops the gateway counted but did not log one by one (it writes at
    most DROP_LOG_PER_S reply_dropped lines a second, then one
    reply_dropped_suppressed count=N line)."""
    return sum(int(e.get("count", 0)) for e in gw.events("reply_dropped_suppressed"))


def wait_dropped(gw, count, timeout=10.0):
    """(reply_dropped lines, drops accounted for: lines + suppressed), once
    at least `count` are accounted for (or whatever there is after
    `timeout`; the summary of a busy second comes up to ~1 s later)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = dropped_lines(gw)
        total = len(lines) + suppressed(gw)
        if total >= count or time.monotonic() >= deadline:
            return lines, total
        time.sleep(0.05)


DROP_LOG_PER_S = 20  # gateway/rpc.c


def assert_rate_limited(tc, gw):
    """No second holds more than DROP_LOG_PER_S reply_dropped lines: any
    2 * DROP_LOG_PER_S + 1 of them in a row (two windows may meet at a
    boundary) span more than a second (log timestamps have ms precision)."""
    ts = sorted(harness.log_time(e) for e in gw.events("reply_dropped"))
    n = 2 * DROP_LOG_PER_S
    for i in range(len(ts) - n):
        tc.assertGreater(ts[i + n] - ts[i], 0.99, "reply_dropped lines not rate-limited")


def metric(gw, name):
    """The value of an unlabelled metric from the gateway's /metrics, or None
    when the gateway has no such endpoint or metric."""
    r = harness.get(gw.port, "/metrics")
    if r.status != 200:
        return None
    for line in r.body.decode("utf-8", "replace").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def concurrent_gets(port, paths, timeout=30.0):
    """GETs every path at once (one connection each, all connected before
    any request is sent).  Returns a list of Response or exception."""
    results = [None] * len(paths)
    barrier = threading.Barrier(len(paths), timeout=timeout)

    def one(i, path):
        try:
            barrier.wait()
            results[i] = harness.get(port, path, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[i] = e

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return results


_startups = iter(range(1, 1 << 30))


def startup_burst(queue, timeout_ms):
    """Starts a gateway on `queue` while STARTUP_CALLERS threads call it
    without pause (from before it listens until 200 ms after its first
    no_server), then stops it.  Returns [(code or status, seconds)] of every
    answered call."""
    port = harness.free_port()
    argv = [harness.binary("rpc-gateway"), "--amqp-url", ENV.url,
            "--listen", f"127.0.0.1:{port}", "--queue", queue,
            "--timeout-ms", str(timeout_ms)]
    halt = threading.Event()
    first = threading.Event()
    got = []
    lock = threading.Lock()

    def caller():
        while not halt.is_set():
            try:
                r = harness.get(port, "/fib/5", timeout=timeout_ms / 1000 + 5)
            except OSError:  # not listening yet
                time.sleep(0.002)
                continue
            code = (r.json or {}).get("code") or r.status
            with lock:
                got.append((code, r.elapsed))
            if code == "no_server":
                first.set()

    threads = [threading.Thread(target=caller) for _ in range(STARTUP_CALLERS)]
    for t in threads:
        t.start()
    gw = None
    try:
        gw = harness.Proc(f"rpc-gateway-startup-{next(_startups)}", argv, ENV.dir)
        ENV.procs.append(gw)
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while not first.wait(0.05):
            if not gw.running() or time.monotonic() > deadline:
                break
        time.sleep(0.2)
    finally:
        halt.set()
        for t in threads:
            t.join(timeout_ms / 1000 + 10)
        if gw is not None:
            ENV.stop_proc(gw)
    return got


def fmt_ms(values):
    return ", ".join(f"{v * 1000:.1f}" for v in values) + " ms"


class Base(unittest.TestCase):
    maxDiff = None

    def assert_counted(self, gw, total):
        """Every drop accounted for in the log is also counted in /metrics
        (when the gateway has it)."""
        value = metric(gw, "fibgw_replies_dropped_total")
        if value is not None:
            self.assertEqual(value, total,
                             "fibgw_replies_dropped_total vs drops in the log")

    def assert_fib(self, resp, n, what=""):
        msg = f"{what} GET /fib/{n}: {harness.show(resp)}"
        self.assertEqual(resp.status, 200, msg)
        self.assertIsInstance(resp.json, dict, msg)
        self.assertEqual(resp.json.get("n"), n, msg)
        self.assertEqual(resp.json.get("fib"), str(harness.fib(n)),
                         f"{what} GET /fib/{n} got someone else's answer: {harness.show(resp)}")

    def assert_no_server_fast(self, gw, what, count=9):
        """`count` calls all get 504 no_server; the median well under 100 ms,
        and none waited for its timeout.  Returns the elapsed times."""
        times = []
        for i in range(count):
            # the calls' timeout is 3 s: give up soon after it
            r = harness.get(gw.port, f"/fib/{10 + i}", timeout=6)
            harness.assert_problem(self, r, 504, code="no_server", what=f"{what} #{i}")
            self.assertIn("detail", r.json)
            times.append(r.elapsed)
        med = statistics.median(times)
        print(f"\n  {what}: no_server in {fmt_ms(times)} (median {med * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms)", file=sys.stderr)
        self.assertLess(med, NO_SERVER_MAX_S, f"{what}: no_server took {fmt_ms(times)}")
        # A single slow one on a loaded machine is tolerable; one that waited
        # for the call's timeout (3 s here) is not.
        self.assertLess(max(times), 1.0, f"{what}: no_server took {fmt_ms(times)}")
        return times


# --------------------------------------------------------------------- 1. no server


class NoServerTest(Base):
    def test_missing_queue(self):
        self.assert_no_server_fast(GW["missing"], "missing queue")
        # The gateway only looks (passive declare): it must not create the queue.
        self.assertIsNone(ENV.broker.queue_info("fibrpc_missing"),
                          "the gateway declared the request queue itself")

    def test_queue_without_consumers(self):
        self.assertEqual(ENV.broker.queue_info("fibrpc_idle"), (0, 0))
        self.assert_no_server_fast(GW["idle"], "queue without consumers")
        # Nothing was published into the queue for nobody to read.
        self.assertEqual(ENV.broker.queue_info("fibrpc_idle"), (0, 0))

    def test_a_queue_the_gateway_may_not_read_is_not_nobody(self):
        # A worker's exclusive queue: the gateway's passive declare gets
        # 405 RESOURCE_LOCKED.  That says nothing of who consumes: calls
        # are published and answered (it was taken for a missing queue:
        # every call 504 no_server, though a worker was serving).
        gw = GW["exclusive"]
        before = len(FAKE["exclusive"].requests)
        for n in (10, 20, 30):
            self.assert_fib(harness.get(gw.port, f"/fib/{n}"), n, "exclusive queue")
        self.assertTrue(gw.wait_events("amqp_check_refused", code="405"), gw.log_tail())
        self.assertEqual(len(FAKE["exclusive"].requests), before + 3)

    def test_consumer_comes_and_goes(self):
        queue = "fibrpc_comeback"
        ENV.broker.declare_queue(queue)
        gw = ENV.start_gateway(queue=queue, timeout_ms=3000,
                               ready_path="/fib/1", ready_status=504)
        self.assert_no_server_fast(gw, "before any worker", count=3)

        # (c) a worker appears: calls succeed within about a second.
        worker = ENV.start_worker(queue=queue)  # returns once the broker sees it
        t0 = time.monotonic()
        seen = []
        while True:
            r = harness.get(gw.port, "/fib/10?timeout_ms=2000")
            seen.append((round(time.monotonic() - t0, 3), r.status,
                         (r.json or {}).get("code")))
            if r.status == 200:
                break
            harness.assert_problem(self, r, 504, code="no_server",
                                   what="while the worker is being noticed")
            self.assertLess(time.monotonic() - t0, CONSUMER_APPEARS_MAX_S,
                            f"still no_server {CONSUMER_APPEARS_MAX_S} s after a "
                            f"consumer appeared: {seen}")
            time.sleep(0.02)
        appeared = time.monotonic() - t0
        self.assert_fib(r, 10)
        self.assertLess(appeared, CONSUMER_APPEARS_MAX_S, f"{seen}")

        # (d) the last consumer goes away: calls switch to no_server within
        # about a second.  Until the gateway notices, calls are published into
        # the queue and time out (100 ms here).  Timed from when the broker
        # reports no consumer (as (c) is timed from when it reports one):
        # the worker's exit is not yet the broker's count, and on a loaded
        # machine the broker can take a while to process the goodbye.
        ENV.stop_proc(worker)
        ENV.broker.wait_consumers_gone(queue)
        t0 = time.monotonic()
        seen = []
        while True:
            r = harness.get(gw.port, "/fib/11?timeout_ms=100")
            code = (r.json or {}).get("code")
            seen.append((round(time.monotonic() - t0, 3), r.status, code))
            if code == "no_server":
                break
            harness.assert_problem(self, r, 504, code="timeout",
                                   what="after the last worker stopped")
            self.assertLess(time.monotonic() - t0, CONSUMER_GONE_MAX_S,
                            f"no no_server within {CONSUMER_GONE_MAX_S} s of the last "
                            f"consumer leaving: {seen}")
        gone = time.monotonic() - t0
        harness.assert_problem(self, r, 504, code="no_server")
        self.assertLess(r.elapsed, NO_SERVER_MAX_S, harness.show(r))
        print(f"\n  consumer appeared -> 200 after {appeared * 1000:.0f} ms; "
              f"consumer gone -> no_server after {gone * 1000:.0f} ms", file=sys.stderr)
        self.assertLess(gone, CONSUMER_GONE_MAX_S, f"{seen}")

    def test_no_server_from_the_first_moment(self):
        """While the gateway connects, calls get 503 broker_unavailable; from
        the moment it admits calls, calls to a queue nobody consumes get
        no_server at once.  None may be published into the idle queue to
        wait for its timeout (the consumer count must be known before the
        first call is admitted).  Several client threads call without pause
        across the gateway's start-up, a few times over, to land calls right
        as the link comes up."""
        queue = "fibrpc_idle_start"
        ENV.broker.declare_queue(queue)
        wrong = []
        for attempt in range(STARTUP_ATTEMPTS):
            got = startup_burst(queue, timeout_ms=1000)
            codes = collections.Counter(c for c, _ in got)
            self.assertIn("no_server", codes, f"attempt {attempt}: {dict(codes)}")
            # (how fast no_server is, is measured above, without the crowd)
            wrong += [(attempt, c, round(t, 3)) for c, t in got
                      if c not in ("broker_unavailable", "no_server")]
        self.assertEqual(wrong, [], "calls during start-up that got neither 503 "
                         "broker_unavailable nor 504 no_server (attempt, code, seconds)")
        self.assertEqual(ENV.broker.queue_info(queue), (0, 0))

    def test_queue_deleted_under_the_gateway(self):
        """The gateway still believes someone consumes (its count is up to a
        second old), but the queue is gone: the mandatory publish comes back
        (basic.return) and the caller gets no_server at once."""
        queue = "fibrpc_vanish"
        fake = fakes.FibServer(ENV.url, queue).start_and_wait()
        try:
            gw = ENV.start_gateway(queue=queue, timeout_ms=3000)
            self.assert_fib(harness.get(gw.port, "/fib/7"), 7)
            ENV.broker.delete_queue(queue)
            self.assert_no_server_fast(gw, "queue deleted", count=5)
            self.assertIsNone(ENV.broker.queue_info(queue))
        finally:
            fake.stop()


# --------------------------------------------------------------------- 2. timeout


class TimeoutTest(Base):
    def test_timeout_on_time(self):
        gw = GW["silent"]
        times = []
        for i in range(5):
            n = 40 + i
            r = harness.get(gw.port, f"/fib/{n}?timeout_ms=300")
            harness.assert_problem(self, r, 504, code="timeout", what=f"GET /fib/{n}")
            times.append(r.elapsed)
            # the call really reached the (silent) consumer
            self.assertIsNotNone(FAKE["silent"].wait_for(lambda q, n=n: q.n == n, 5),
                                 f"request for n={n} never reached the queue")
        errors = [t - 0.300 for t in times]
        print(f"\n  timeout_ms=300 answered after {fmt_ms(times)} "
              f"(error {min(errors) * 1000:+.1f} .. {max(errors) * 1000:+.1f} ms)",
              file=sys.stderr)
        # Never early: a deadline is not cut short.
        for t in times:
            self.assertGreaterEqual(t, 0.300 - 0.002, f"504 timeout after {fmt_ms(times)}")
        # On time: the median within TIMEOUT_SLACK_S, so one call a loaded
        # machine held back cannot decide it.  A deadline the loop missed
        # would be answered at its next wake-up (up to 1 s later) or at the
        # default timeout (5 s): every call under 1 s rules both out.
        self.assertLessEqual(statistics.median(times) - 0.300, TIMEOUT_SLACK_S,
                             f"504 timeout after {fmt_ms(times)}, not 300 + 100 ms")
        self.assertLess(max(times), 1.0, f"504 timeout after {fmt_ms(times)}")


# --------------------------------------------------------------------- 3. worker failures


class WorkerFailureTest(Base):
    def test_worker_rejects_n_over_its_own_max(self):
        gw = GW["small"]
        self.assert_fib(harness.get(gw.port, "/fib/50"), 50)
        r = harness.get(gw.port, "/fib/60")
        harness.assert_problem(self, r, 400, code="worker_rejected", what="GET /fib/60")
        we = r.json.get("worker_error")
        self.assertIsInstance(we, dict, harness.show(r))
        self.assertEqual(we.get("type"), "out_of_range", harness.show(r))
        self.assertIsInstance(we.get("message"), str, harness.show(r))
        self.assertIn("50", we["message"], "the worker's message names its limit: "
                      + harness.show(r))

    def test_worker_error_forwarded(self):
        gw = GW["werr"]
        for n, (etype, message) in sorted(WORKER_ERRORS.items()):
            with self.subTest(n=n, type=etype):
                r = harness.get(gw.port, f"/fib/{n}")
                # The worker's "expired" is the call's own deadline: 504
                # timeout, as when the gateway notices it first.
                status, code = (504, "timeout") if etype == "expired" else (502, "worker_error")
                harness.assert_problem(self, r, status, code=code, what=f"n={n}")
                self.assertEqual(r.json.get("worker_error"),
                                 {"type": etype, "message": message}, harness.show(r))

    def test_garbage_reply_is_bad_reply(self):
        gw = GW["garbage"]
        for n, (body, ctype) in sorted(GARBAGE.items()):
            with self.subTest(n=n, body=body[:30], content_type=ctype):
                r = harness.get(gw.port, f"/fib/{n}")
                harness.assert_problem(self, r, 502, code="bad_reply",
                                       what=f"reply {body[:30]!r} ({ctype})")
                self.assertNotIn("fib", r.json)
        self.assertTrue(gw.running(), "the gateway died on a garbage reply")


# --------------------------------------------------------------------- 4. late, duplicate, unknown


class StrayReplyTest(Base):
    CONCURRENT = 50

    def ns(self, base):
        # distinct n, small and large mixed, so that a misrouted answer shows
        return [base + 37 * i for i in range(self.CONCURRENT)]

    def check_all_right(self, results, ns, what):
        wrong = []
        for n, r in zip(ns, results):
            if isinstance(r, Exception):
                wrong.append(f"n={n}: {r!r}")
            elif r.status != 200 or (r.json or {}).get("fib") != str(harness.fib(n)) \
                    or r.json.get("n") != n:
                wrong.append(f"n={n}: {harness.show(r)[:200]}")
        self.assertEqual(wrong, [], f"{what}: {len(wrong)} of {len(ns)} callers did not "
                                    "get exactly their own F(n)")

    def test_duplicate_replies(self):
        """Every request is answered twice (F(n), then a wrong number): each
        caller gets F(n) once; the duplicates are dropped and logged."""
        gw, fake = GW["twice"], FAKE["twice"]
        ns = self.ns(100)
        results = concurrent_gets(gw.port, [f"/fib/{n}" for n in ns])
        self.check_all_right(results, ns, "duplicate replies")
        requests = len(fake.snapshot())
        self.assertTrue(fake.wait_sent(2 * requests))
        lines, total = wait_dropped(gw, requests)
        self.assertEqual(total, requests,
                         f"{requests} duplicate replies, {total} drops logged")
        self.assert_counted(gw, total)
        assert_rate_limited(self, gw)
        self.assertTrue(gw.running())

    def test_unknown_correlation_ids(self):
        """Before its right answer, every request gets wrong answers under
        look-alike correlation ids (another UUID, one hex digit changed, its
        numeric neighbours, one character more or less, not a UUID, none at
        all; fakes.bogus_ids):
        no caller ever sees them, and each is dropped and logged."""
        gw, fake = GW["unknown"], FAKE["unknown"]
        ns = self.ns(200)
        results = concurrent_gets(gw.port, [f"/fib/{n}" for n in ns])
        self.check_all_right(results, ns, "unknown correlation ids")
        per = fake.bogus_per_request()
        requests = len(fake.snapshot())
        lines, total = wait_dropped(gw, per * requests)
        self.assertEqual(total, per * requests,
                         f"{requests} requests x {per} stray replies, "
                         f"{total} drops logged")
        self.assert_counted(gw, total)
        # Hundreds of strays in a second or two: the log got at most its
        # budget of lines a second, the rest only counted.
        assert_rate_limited(self, gw)
        self.assertLess(len(lines), total)

    def test_only_unknown_ids_then_timeout(self):
        """Only wrong answers under unknown ids, never the right one: the
        caller times out; it never gets one of them."""
        gw, fake = GW["unknown"], FAKE["unknown"]
        ns = [20000 + i for i in range(5)]
        results = concurrent_gets(gw.port, [f"/fib/{n}?timeout_ms=300" for n in ns])
        for n, r in zip(ns, results):
            self.assertNotIsInstance(r, Exception, f"n={n}: {r!r}")
            harness.assert_problem(self, r, 504, code="timeout", what=f"n={n}")
        self.assertIsNotNone(fake.wait_for(lambda q: q.n == ns[-1], 5))

    def test_late_reply(self):
        """A reply after its caller timed out is dropped and logged; the next
        caller, waiting while it arrives, gets its own answer."""
        gw, fake = GW["late"], FAKE["late"]
        r1 = harness.get(gw.port, "/fib/20?timeout_ms=200")
        harness.assert_problem(self, r1, 504, code="timeout", what="late reply")
        # Its own deadline, not the late reply (at 400 ms: that would have
        # been a 200), and never early.
        self.assertGreaterEqual(r1.elapsed, 0.200 - 0.002, harness.show(r1))
        r2 = harness.get(gw.port, "/fib/21")  # the late F(20) arrives meanwhile
        self.assert_fib(r2, 21, "after a late reply:")
        self.assertGreaterEqual(r2.elapsed, 0.3, "the fake replies after 400 ms")
        req = fake.wait_for(lambda q: q.n == 20, 5)
        self.assertIsNotNone(req)
        corr = req.props.correlation_id
        deadline = time.monotonic() + 5
        while not any(corr in ln for ln in dropped_lines(gw)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(any(corr in ln for ln in dropped_lines(gw)),
                        f"no reply_dropped line for the late reply {corr}:\n"
                        + gw.log_tail(20))

    def test_late_replies_concurrent(self):
        """Half the callers give up at 200 ms, the others wait: the late
        replies (at 400 ms) arrive while the patient ones are waiting, and
        never reach them."""
        gw = GW["late"]
        ns = [300 + i for i in range(20)]
        paths = [f"/fib/{n}?timeout_ms={200 if i % 2 == 0 else 5000}"
                 for i, n in enumerate(ns)]
        before = len(dropped_lines(gw)) + suppressed(gw)
        results = concurrent_gets(gw.port, paths)
        for i, (n, r) in enumerate(zip(ns, results)):
            self.assertNotIsInstance(r, Exception, f"n={n}: {r!r}")
            if i % 2 == 0:
                harness.assert_problem(self, r, 504, code="timeout", what=f"n={n}")
            else:
                self.assert_fib(r, n)
        lines, total = wait_dropped(gw, before + 10)
        self.assertEqual(total - before, 10, "10 late replies, each dropped once")
        self.assert_counted(gw, total)


if __name__ == "__main__":
    harness.main()
