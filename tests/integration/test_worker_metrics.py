#!/usr/bin/env python3
"""test_worker_metrics.py - fib-worker --metrics-listen: GET /metrics on the
worker's own port counts what the worker did (served, rejected by error type,
expired, dropped, compute time, the AMQP link) and passes `promtool check
metrics`; other paths answer 404, other methods 405; an address that cannot
be listened on stops the worker at start-up with exit status 2; slow clients
(slowloris) never keep a scrape out (Hardening, finding 8)."""

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (re-executes under /usr/bin/python3 when needed)
import pika  # noqa: E402

ENV = None
GW = None
WORKER = None
METRICS_PORT = None
WORKER_MAX_N = 50  # below the gateway's: /fib/60 passes it, the worker rejects it
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ERROR_CT = "application/vnd.fibrpc.error+json"

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def setUpModule():
    global ENV, GW, WORKER, METRICS_PORT

    def start(env):
        global GW, WORKER, METRICS_PORT
        METRICS_PORT = harness.free_port()
        WORKER = env.start_worker(max_n=WORKER_MAX_N, args=[
            "--metrics-listen", f"127.0.0.1:{METRICS_PORT}"])
        GW = env.start_gateway()

    ENV = harness.setup_env("worker-metrics", start)


def tearDownModule():
    harness.teardown_env(ENV)


def scrape():
    """(response, {series: value}) from the worker's /metrics; series is the
    name plus its labels as written, e.g. 'fibw_errors_total{type="expired"}'."""
    r = harness.get(METRICS_PORT, "/metrics")
    values = {}
    for line in r.body.decode("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m is None:
            raise AssertionError(f"not a sample line: {line!r}")
        values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return r, values


def delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}


def served(values):
    return values.get('fibw_messages_total{outcome="served"}')


def wait_metrics(predicate, timeout=10.0):
    """Scrapes until predicate(values) holds (the worker counts a request
    just after its reply is on the way); returns the last values."""
    deadline = time.monotonic() + timeout
    while True:
        _, values = scrape()
        if predicate(values) or time.monotonic() > deadline:
            return values
        time.sleep(0.05)


def worker_connection_pids(broker):
    """rabbitmqctl's pids of the connections named fib-worker."""
    out = broker.ctl("list_connections", "pid", "client_properties")
    return [line.split("\t", 1)[0] for line in out.splitlines()
            if '{"connection_name","fib-worker"}' in line]


class WorkerMetricsTest(unittest.TestCase):
    maxDiff = None

    def test_counts(self):
        """Served, rejected by type, expired and dropped requests, sent
        through the gateway and straight to the queue, each counted once."""
        _, before = scrape()

        # Through the gateway: three served, one the worker rejects (n above
        # its --max-n), one the gateway rejects itself (never reaches us).
        for n in (10, 20, 30):
            r = harness.get(GW.port, f"/fib/{n}")
            self.assertEqual(r.status, 200, harness.show(r))
        r = harness.get(GW.port, f"/fib/{WORKER_MAX_N + 10}")
        harness.assert_problem(self, r, 400, "worker_rejected", "n above the worker's max")
        r = harness.get(GW.port, "/fib/abc")
        harness.assert_problem(self, r, 400, "invalid_n", "not digits")

        # Straight to the queue: what the gateway would never send.
        conn = ENV.broker.connect()
        try:
            ch = conn.channel()
            reply_q = ch.queue_declare("", exclusive=True).method.queue
            replies = {}

            def on_reply(_ch, _method, props, body):
                replies[props.correlation_id] = (props, body)

            ch.basic_consume(reply_q, on_reply, auto_ack=True)

            def publish(corr, body, reply_to=True, headers=None):
                kw = {"correlation_id": corr, "content_type": "text/plain"}
                if reply_to:
                    kw["reply_to"] = reply_q
                if headers:
                    kw["headers"] = headers
                ch.basic_publish("", "rpc_queue", body, pika.BasicProperties(**kw))

            past = int(time.time() * 1000) - 60000
            publish("m-invalid", b"abc")
            publish("m-expired", b"7", headers={"x-deadline-ms": past})
            publish("m-dropped", b"5", reply_to=False)
            publish("m-good", b"12")  # prefetch 1: answered after the others
            wanted = {"m-invalid", "m-expired", "m-good"}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not wanted <= set(replies):
                conn.process_data_events(time_limit=0.1)
        finally:
            if conn.is_open:
                conn.close()
        self.assertEqual(set(replies), wanted, "worker log:\n" + WORKER.log_tail(20))
        self.assertEqual(replies["m-good"][1], b"144")
        self.assertEqual(replies["m-invalid"][0].content_type, ERROR_CT)
        self.assertEqual(replies["m-expired"][0].content_type, ERROR_CT)

        expected = {
            'fibw_messages_total{outcome="served"}': 4,
            'fibw_messages_total{outcome="rejected"}': 2,
            'fibw_messages_total{outcome="expired"}': 1,
            'fibw_messages_total{outcome="dropped"}': 1,
            'fibw_errors_total{type="invalid_argument"}': 1,
            'fibw_errors_total{type="out_of_range"}': 1,
            'fibw_errors_total{type="expired"}': 1,
            'fibw_errors_total{type="internal"}': 0,
            "fibw_compute_seconds_count": 4,
            'fibw_compute_seconds_bucket{le="+Inf"}': 4,
        }

        def counted(values):
            d = delta(before, values)
            return all(d.get(k, 0) == v for k, v in expected.items())

        after = wait_metrics(counted)
        d = delta(before, after)
        self.assertEqual({k: d.get(k, 0) for k in expected}, expected,
                         "counter changes; worker log:\n" + WORKER.log_tail(20))
        # Every served request is timed, and only those.
        self.assertEqual(after["fibw_compute_seconds_count"], served(after))
        self.assertGreaterEqual(d["fibw_compute_seconds_sum"], 0)
        self.assertEqual(after["fibw_amqp_connected"], 1)
        self.assertEqual(after["fibw_amqp_reconnects_total"], 0)

    def test_families_and_build_info(self):
        r, values = scrape()
        text = r.body.decode()
        for family, kind in (("fibw_build_info", "gauge"),
                             ("fibw_messages_total", "counter"),
                             ("fibw_errors_total", "counter"),
                             ("fibw_compute_seconds", "histogram"),
                             ("fibw_amqp_connected", "gauge"),
                             ("fibw_amqp_reconnects_total", "counter"),
                             ("fibw_amqp_failovers_total", "counter"),
                             ("fibw_amqp_node_info", "gauge")):
            with self.subTest(family=family):
                self.assertIn(f"# HELP {family} ", text)
                self.assertIn(f"# TYPE {family} {kind}\n", text)
        version = subprocess.run([harness.binary("fib-worker"), "--version"],
                                 capture_output=True, text=True).stdout.split()[-1]
        self.assertEqual(values.get(f'fibw_build_info{{version="{version}"}}'), 1, text)
        # One error series per wire error type, even at zero.
        self.assertEqual(sorted(k for k in values if k.startswith("fibw_errors_total")),
                         sorted(f'fibw_errors_total{{type="{t}"}}' for t in
                                ("invalid_argument", "out_of_range", "expired", "internal",
                                 "worker_crashed")))

    def test_http(self):
        r = harness.get(METRICS_PORT, "/metrics")
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.headers.get("Content-Type"), METRICS_TYPE)
        r = harness.http_request(METRICS_PORT, "HEAD", "/metrics")
        self.assertEqual((r.status, r.body), (200, b""))
        for path in ("/", "/metrics/", "/fib/10", "/metricsx"):
            with self.subTest(path=path):
                r = harness.get(METRICS_PORT, path)
                self.assertEqual(r.status, 404, harness.show(r))
        for method in ("POST", "PUT", "DELETE"):
            with self.subTest(method=method):
                r = harness.http_request(METRICS_PORT, method, "/metrics", body=b"x=1")
                self.assertEqual(r.status, 405, harness.show(r))
                self.assertEqual(r.headers.get("Allow"), "GET, HEAD")
        self.assertTrue(WORKER.running(), WORKER.log_tail())

    def test_promtool(self):
        r = harness.get(GW.port, "/fib/25")  # a histogram with something in it
        self.assertEqual(r.status, 200, harness.show(r))
        wait_metrics(lambda v: v.get("fibw_compute_seconds_count", 0) > 0)
        r, _ = scrape()
        promtool = shutil.which("promtool")
        if promtool is None:
            print("\nnote: promtool not installed (apt-get install prometheus); "
                  "not checking the exposition with it", file=sys.stderr)
            self.skipTest("promtool not installed")
        p = subprocess.run([promtool, "check", "metrics"], input=r.body,
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0,
                         f"promtool check metrics:\n{p.stdout.decode()}{p.stderr.decode()}\n"
                         f"on:\n{r.body.decode()}")

    def test_reconnect(self):
        """Closing the worker's connection on the broker: the worker
        reconnects, counts it, and serves again."""
        ctl = getattr(ENV.broker, "ctl", None)
        if ctl is None:
            self.skipTest("harness.Broker has no ctl() to close a connection with")
        _, before = scrape()
        pids = worker_connection_pids(ENV.broker)
        self.assertEqual(len(pids), 1, pids)
        ctl("close_connection", pids[0], "test_worker_metrics: reconnect please")
        after = wait_metrics(lambda v: v["fibw_amqp_reconnects_total"]
                             == before["fibw_amqp_reconnects_total"] + 1
                             and v["fibw_amqp_connected"] == 1, timeout=30)
        self.assertEqual(after["fibw_amqp_reconnects_total"],
                         before["fibw_amqp_reconnects_total"] + 1, WORKER.log_tail())
        self.assertEqual(after["fibw_amqp_connected"], 1, WORKER.log_tail())
        ENV.broker.wait_consumers("rpc_queue", 1, procs=[WORKER])
        # The gateway rechecks the consumer count every 100 ms while it is
        # zero: wait until it has seen the worker again.
        ENV.wait_consumers_seen(GW)
        r = harness.get(GW.port, "/fib/11")
        self.assertEqual(r.status, 200, harness.show(r))


# --------------------------------------------------------------------- slow clients

# The worker's metrics server (worker/metrics_http.c): connections from one
# address at most, and the time a whole request may take from its
# connection's start (then 408 and close).
PER_IP = 64
REQUEST_S = 5
# A scrape must be answered this fast while others hold connections: far
# above what it takes (milliseconds), below REQUEST_S, so that it cannot
# have waited for the slow clients' deadline (asserted as well).
SCRAPE_MAX_S = 4.0
# How long the slow clients may stay open at most: their deadline plus
# generous room for a loaded machine (without one they stay for ever).
CLOSED_BY_S = REQUEST_S + 20.0
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: worker\r\nUser-Agent: slowloris\r\n\r\n"


class SlowClients:
    """n connections to the metrics port from `source`: the trickling ones
    send REQUEST a byte every `step` seconds, the silent ones nothing.  A
    thread of their own sends and notes, per connection, when the server
    closed it and what it answered.  Any thread may read .closed_at."""

    def __init__(self, n, source="127.0.0.1", silent=0, step=0.5):
        self.socks, self.closed_at, self.answer = [], {}, {}
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.step = step
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((source, 0))
            s.connect(("127.0.0.1", METRICS_PORT))
            s.setblocking(False)
            self.socks.append((s, i >= n - silent))
            self.answer[s] = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _poll(self, s):
        """Reads what the server sent; notes when it closed s."""
        if s in self.closed_at:
            return
        try:
            while True:
                data = s.recv(4096)
                if not data:
                    break
                self.answer[s] += data
        except BlockingIOError:
            return
        except OSError:
            pass
        with self.lock:
            self.closed_at[s] = time.monotonic()

    def _run(self):
        sent = 0
        while not self.halt.is_set():
            for s, silent in self.socks:
                self._poll(s)
                if silent or s in self.closed_at or sent >= len(REQUEST):
                    continue
                try:
                    s.send(REQUEST[sent:sent + 1])
                except OSError:
                    pass
            sent += 1
            self.halt.wait(self.step)

    def open_count(self):
        with self.lock:
            return len(self.socks) - len(self.closed_at)

    def wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.02)
        return predicate()

    def stop(self):
        self.halt.set()
        self.thread.join(10)
        for s, _ in self.socks:
            s.close()


def scrape_from(source, timeout=10.0):
    """GET /metrics from the address `source`: (status, seconds taken)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", METRICS_PORT, timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - t0
    finally:
        conn.close()


class SlowClientsTest(unittest.TestCase):
    """Clients that trickle their request a byte at a time, or send nothing,
    never keep a scrape out: a scrape is answered at once while they hold
    their connections, and each of them is closed (408) once its request
    is REQUEST_S late."""

    def check_closed(self, slow, what):
        self.assertTrue(slow.wait(lambda: slow.open_count() == 0, CLOSED_BY_S),
                        f"{what}: {slow.open_count()} slow connections still open "
                        f"{CLOSED_BY_S:g} s later\n{WORKER.log_tail(10)}")
        for s, _ in slow.socks:
            if slow.answer[s]:
                self.assertTrue(slow.answer[s].startswith(b"HTTP/1.1 408 "),
                                slow.answer[s][:200])

    def test_1_twenty_from_the_scrapers_address(self):
        before = len(WORKER.events("metrics_request_timeout"))
        slow = SlowClients(20, silent=5)
        try:
            status, took = scrape_from("127.0.0.1")
            open_then = slow.open_count()
            self.assertEqual(status, 200)
            self.assertLess(took, SCRAPE_MAX_S)
            self.assertEqual(open_then, 20, "the scrape waited for slow clients to go")
            self.check_closed(slow, "20 slow clients")
        finally:
            slow.stop()
        self.assertGreaterEqual(
            len(WORKER.wait_events("metrics_request_timeout", count=before + 20)),
            before + 20, WORKER.log_tail(10))
        self.assertTrue(WORKER.running(), WORKER.log_tail())

    def test_2_a_hundred_from_one_address(self):
        """One address gets PER_IP connections; the rest are closed at once;
        a scraper elsewhere is answered at once, and from that address once
        the slow ones are gone."""
        slow = SlowClients(100, silent=10)
        try:
            self.assertTrue(slow.wait(lambda: slow.open_count() <= PER_IP, 10),
                            f"{slow.open_count()} connections from one address held")
            status, took = scrape_from("127.0.0.2")
            open_then = slow.open_count()
            self.assertEqual(status, 200)
            self.assertLess(took, SCRAPE_MAX_S)
            self.assertEqual(open_then, PER_IP, "held from one address while scraped")
            self.check_closed(slow, "100 slow clients")
        finally:
            slow.stop()
        status, took = scrape_from("127.0.0.1")
        self.assertEqual(status, 200)
        self.assertLess(took, SCRAPE_MAX_S)
        self.assertTrue(WORKER.running(), WORKER.log_tail())


class StartUpTest(unittest.TestCase):
    """Programs run here are not the Env's: exiting is what they should do."""

    def run_worker(self, args, env=None):
        return subprocess.run([harness.binary("fib-worker"), "--amqp-url", ENV.url] + args,
                              env=harness.child_env(env), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)

    def test_address_in_use_exits_2(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            p = self.run_worker(["--metrics-listen", f"127.0.0.1:{port}"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("msg=metrics_listen_failed", p.stderr)
        self.assertNotIn("msg=ready", p.stderr, "it went on to consume anyway")

    def test_unresolvable_host_exits_2(self):
        p = self.run_worker(["--metrics-listen", "no-such-host.invalid:9100"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("msg=metrics_listen_failed", p.stderr)

    def test_bad_values_exit_2(self):
        for value in ("9100", ":9100", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                      "127.0.0.1:x"):
            with self.subTest(value=value):
                p = self.run_worker(["--metrics-listen", value])
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("--metrics-listen", p.stderr)
        p = self.run_worker([], env={"WORKER_METRICS_LISTEN": "nonsense"})
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("WORKER_METRICS_LISTEN", p.stderr)

    def test_help_lists_the_flag(self):
        p = self.run_worker(["--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("--metrics-listen=HOST:PORT", p.stdout)
        self.assertIn("[WORKER_METRICS_LISTEN]", p.stdout)


if __name__ == "__main__":
    harness.main()
