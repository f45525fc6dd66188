#!/usr/bin/env python3
"""test_routes.py - any RPC service behind HTTP: routes from a file (issue
"Any RPC service behind HTTP").

One gateway with a route file serves, side by side: the C fib worker (a
fib route), the example Python worker (examples/upper_worker.py) and a
Python echo worker (echo_worker.py) that answers after what each request's
own headers ask; an exchange route whose routing key comes from a path
parameter; and publish-mode routes.  Everything over real HTTP against a
real broker:

- bodies round-trip byte for byte (all 256 byte values; 1 MiB), with
  Content-Length or chunked;
- content type and x-http-status (201, 404, 599; "abc" -> 502) come back,
  and only the headers the route returns (never one with a CR LF);
- the message carries x-http-method, -path, -query, x-param-*, and only the
  forwarded headers;
- 413 (from Content-Length before reading, and for a chunked body), 415,
  404, 405 with Allow, 400 invalid_param;
- a worker error becomes problem JSON;
- publish mode: 202 once confirmed and the message on its queue
  (persistent); 503 not_queued when the broker refuses it
  (x-overflow: reject-publish); 504 no_server when unroutable;
- SIGHUP reloads under load with no failed request; a bad file is refused
  and the old table stays;
- bad route files are refused, by --check-routes and at start, each with
  its own message."""

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pika  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(harness.SOURCE_DIR, "examples", "upper_worker.py")
ECHO = os.path.join(HERE, "echo_worker.py")

FIB_Q = "fibrpc_routes_fib"
UPPER_Q = "fibrpc_routes_upper"
ECHO_Q = "fibrpc_routes_echo"
AUDIT_Q = "fibrpc_routes_audit"
FULL_Q = "fibrpc_routes_full"
EXCHANGE = "fibrpc_routes_images"
VANISH_X = "fibrpc_routes_vanish"
VANISH_Q = "fibrpc_routes_vanish_q"
RESIZE_Q = "fibrpc_routes_resize_200"
FANOUT_X = "fibrpc_routes_fanout"  # key "k" -> FULL_Q and COPY_Q
COPY_Q = "fibrpc_routes_copy"
WANT = ["x-want-status", "x-want-status-text", "x-want-type", "x-want-meta",
        "x-want-error", "x-want-cache", "accept-language"]


def routes(extra=()):
    table = [
        {"name": "fib", "kind": "fib", "method": "GET", "path": "/fib/{n}",
         "queue": FIB_Q},
        {"name": "upper", "method": "POST", "path": "/v1/upper", "queue": UPPER_Q,
         "timeout_ms": 5000, "max_body_bytes": 1048576,
         "content_types": ["text/plain", "application/octet-stream"],
         "forward_headers": ["accept-language"], "return_headers": ["x-cache"]},
        {"name": "echo", "method": "POST", "path": "/v1/echo/{id}", "queue": ECHO_Q,
         "max_body_bytes": 2 * 1048576, "forward_headers": WANT,
         "return_headers": ["x-cache", "x-count", "x-evil"]},
        {"name": "echo_get", "method": "GET", "path": "/v1/echo/{id}", "queue": ECHO_Q,
         "forward_headers": WANT, "return_headers": ["x-cache"]},
        {"name": "small", "method": "PUT", "path": "/v1/small", "queue": ECHO_Q,
         "max_body_bytes": 10, "content_types": ["text/plain"]},
        {"name": "resize", "method": "POST", "path": "/v1/images/{id}/resize/{size}",
         "exchange": EXCHANGE, "routing_key": "resize.{size}"},
        {"name": "audit", "method": "POST", "path": "/v1/audit", "queue": AUDIT_Q,
         "mode": "publish", "forward_headers": ["x-tenant"]},
        {"name": "full", "method": "POST", "path": "/v1/full", "queue": FULL_Q,
         "mode": "publish"},
        {"name": "ghost", "method": "POST", "path": "/v1/ghost",
         "exchange": "fibrpc_routes_ghost", "routing_key": "x"},
        {"name": "vanish", "method": "POST", "path": "/v1/vanish",
         "exchange": VANISH_X, "routing_key": "v", "mode": "publish"},
        {"name": "fanout", "method": "POST", "path": "/v1/fanout",
         "exchange": FANOUT_X, "routing_key": "k", "mode": "publish"},
    ]
    return {"routes": table + list(extra)}


ENV = None
GW = None
ROUTES_FILE = None
RESIZER = None


class Resizer(threading.Thread):
    """Consumes RESIZE_Q (bound to EXCHANGE with resize.200) and replies
    with what it got, so a test sees the message reached that queue."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.ready = threading.Event()
        self.halt = threading.Event()

    def run(self):
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        ch = conn.channel()
        ch.exchange_declare(EXCHANGE, "topic", durable=True)
        ch.queue_declare(RESIZE_Q, durable=True)
        ch.queue_bind(RESIZE_Q, EXCHANGE, "resize.200")

        def on(ch_, method, props, body):
            h = props.headers or {}
            reply = json.dumps({"queue": RESIZE_Q, "routing_key": method.routing_key,
                                "id": h.get("x-param-id"), "size": h.get("x-param-size"),
                                "body": body.decode()}).encode()
            ch_.basic_ack(method.delivery_tag)
            ch_.basic_publish("", props.reply_to, reply, pika.BasicProperties(
                correlation_id=props.correlation_id, content_type="application/json"))

        ch.basic_consume(RESIZE_Q, on)
        self.ready.set()
        while not self.halt.is_set():
            conn.process_data_events(time_limit=0.1)
        conn.close()


def write_routes(table):
    tmp = ROUTES_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(table, f)
    os.replace(tmp, ROUTES_FILE)  # never half a file


def setUpModule():
    global ENV, GW, ROUTES_FILE, RESIZER

    def start(env):
        global GW, ROUTES_FILE, RESIZER
        ROUTES_FILE = os.path.join(env.dir, "routes.json")
        write_routes(routes())
        with env.broker.connect() as conn:
            ch = conn.channel()
            ch.queue_declare(AUDIT_Q, durable=True)
            ch.queue_declare(FULL_Q, durable=True, arguments={
                "x-max-length": 1, "x-overflow": "reject-publish"})
            ch.exchange_declare(FANOUT_X, "direct", durable=True)
            ch.queue_declare(COPY_Q, durable=True)
            ch.queue_bind(FULL_Q, FANOUT_X, "k")
            ch.queue_bind(COPY_Q, FANOUT_X, "k")
        RESIZER = Resizer(env.url)
        RESIZER.start()
        RESIZER.ready.wait(harness.READY_TIMEOUT)
        env.start_worker(queue=FIB_Q)
        env.start_python("upper-worker", EXAMPLE, [env.url, UPPER_Q])
        env.start_python("echo-worker", ECHO, [env.url, ECHO_Q])
        env.broker.wait_consumers(UPPER_Q, 1)
        env.broker.wait_consumers(ECHO_Q, 1)
        GW = env.start_gateway(args=["--routes", ROUTES_FILE])

    ENV = harness.setup_env("routes", start)


def tearDownModule():
    if RESIZER is not None:
        RESIZER.halt.set()
    harness.teardown_env(ENV)


def post(path, body, headers=None, method="POST", **kw):
    return harness.http_request(GW.port, method, path, body=body,
                                headers=headers or {}, **kw)


def raw_exchange(port, data, timeout=30):
    """Sends bytes, returns (status, headers dict lower-case, body) of the
    first response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        f = s.makefile("rb")
        status_line = f.readline()
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = f.read(int(headers.get("content-length", "0")))
        return status, headers, body


class RoundTripTest(unittest.TestCase):
    def test_fib_and_python_workers_side_by_side(self):
        r = harness.get(GW.port, "/fib/90")
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.json, {"n": 90, "fib": str(harness.fib(90))})
        r = post("/v1/upper", b"hello, world", {"Content-Type": "text/plain"})
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.body, b"HELLO, WORLD")
        self.assertEqual(r.headers["Content-Type"], "text/plain")
        self.assertTrue(r.headers["X-Request-Id"])
        # the fib route keeps every answer of today's
        harness.assert_problem(self, harness.get(GW.port, "/fib/abc"), 400, "invalid_n")
        harness.assert_problem(self, harness.get(GW.port, "/fib"), 400, "invalid_n")

    def test_every_byte_value_round_trips(self):
        body = bytes(range(256)) * 4
        r = post("/v1/echo/1", body, {"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.body, body)
        self.assertEqual(r.headers["Content-Type"], "application/octet-stream")

    def test_one_mebibyte_round_trips_with_length_and_chunked(self):
        body = hashlib.sha256(b"seed").digest() * (1048576 // 32)
        self.assertEqual(len(body), 1048576)
        r = post("/v1/echo/big", body, {"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.body, body)

        def chunks():
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]
        conn = http.client.HTTPConnection("127.0.0.1", GW.port, timeout=30)
        conn.request("POST", "/v1/echo/big", body=chunks(),
                     headers={"Content-Type": "application/octet-stream"},
                     encode_chunked=True)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.assertEqual(resp.status, 200)
        self.assertEqual(data, body)

    def test_empty_body_and_get(self):
        r = post("/v1/echo/e", b"", {"Content-Type": "text/plain"})
        self.assertEqual((r.status, r.body), (200, b""))
        r = harness.get(GW.port, "/v1/echo/7", headers={"x-want-meta": "1"})
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.json["length"], 0)
        self.assertEqual(r.json["headers"]["x-http-method"], "GET")
        # HEAD: the call is made (the worker sees HEAD), the GET's headers
        # come back and not a byte of body, so the next answer on the
        # connection starts right after the head.
        get = harness.get(GW.port, "/v1/echo/7", headers={"x-want-meta": "1"})
        with socket.create_connection(("127.0.0.1", GW.port), timeout=30) as sock:
            sock.sendall(b"HEAD /v1/echo/7 HTTP/1.1\r\nHost: t\r\nx-want-meta: 1\r\n\r\n"
                         b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            f = sock.makefile("rb")
            self.assertEqual(f.readline().split()[1], b"200")
            head = {}
            for line in iter(f.readline, b"\r\n"):
                k, v = line.decode().split(":", 1)
                head[k.strip().lower()] = v.strip()
            # The worker's answer describes the request: the same as the
            # GET's but for "HEAD" in place of "GET", one byte longer.
            self.assertEqual(int(head["content-length"]),
                             int(get.headers["Content-Length"]) + 1)
            self.assertEqual(f.readline(), b"HTTP/1.1 200 OK\r\n",
                             "bytes of a body after the HEAD answer")

    def test_status_and_content_type_come_back(self):
        for want, status in (("201", 201), ("404", 404), ("599", 599), ("200", 200)):
            with self.subTest(status=want):
                r = post("/v1/echo/s", b"body " + want.encode(),
                         {"x-want-status": want, "x-want-type": "text/x-mine; charset=utf-8"})
                self.assertEqual(r.status, status, harness.show(r))
                # a worker's 404 is the worker's body, not problem JSON
                self.assertEqual(r.body, b"body " + want.encode())
                self.assertEqual(r.headers["Content-Type"], "text/x-mine; charset=utf-8")
        # A worker's status comes with the worker's headers only: not the
        # Allow, WWW-Authenticate or Retry-After of the gateway's own.
        for want in ("405", "401", "503"):
            with self.subTest(worker_status=want):
                r = post("/v1/echo/s", b"x", {"x-want-status": want})
                self.assertEqual(r.status, int(want), harness.show(r))
                for name in ("Allow", "WWW-Authenticate", "Retry-After"):
                    self.assertNotIn(name, r.headers, harness.show(r))
        # pika sends ints as ints; other clients send digits as text
        r = post("/v1/echo/s", b"x", {"x-want-status-text": "404"})
        self.assertEqual(r.status, 404, harness.show(r))
        for bad in ("abc", "99", "600", "1000"):
            with self.subTest(bad=bad):
                r = post("/v1/echo/s", b"x", {"x-want-status": bad})
                harness.assert_problem(self, r, 502, "bad_reply")
                self.assertIn("x-http-status", r.json["detail"])
        # no content type: application/octet-stream
        r = post("/v1/echo/s", b"x", {})
        self.assertEqual(r.headers["Content-Type"], "application/octet-stream")

    def test_what_the_message_carries(self):
        body = b"payload"
        r = post("/v1/echo/a%20b?x=1&y=%2F", body,
                 {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "identity",
                  "x-want-meta": "1", "Accept-Language": "fr", "X-Secret": "no",
                  "Cookie": "s=1", "traceparent":
                  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                  "X-Request-Id": "routes-meta-1"})
        self.assertEqual(r.status, 200, harness.show(r))
        meta = r.json
        h = meta["headers"]
        self.assertEqual(h["x-http-method"], "POST")
        self.assertEqual(h["x-http-path"], "/v1/echo/a%20b")
        self.assertEqual(h["x-http-query"], "x=1&y=%2F")
        self.assertEqual(h["x-param-id"], "a b")
        self.assertEqual(h["accept-language"], "fr")
        self.assertEqual(h["x-request-id"], "routes-meta-1")
        self.assertEqual(h["traceparent"],
                         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        # only what the route forwards
        self.assertNotIn("x-secret", h)
        self.assertNotIn("cookie", h)
        self.assertEqual(meta["content_type"], "text/plain; charset=utf-8")
        self.assertEqual(meta["content_encoding"], "identity")
        self.assertEqual(meta["length"], len(body))
        self.assertEqual(meta["sha256"], hashlib.sha256(body).hexdigest())

    def test_returned_headers(self):
        r = post("/v1/echo/h", b"x")
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.headers["x-cache"], "HIT")
        self.assertEqual(r.headers["x-count"], "7")  # an AMQP integer, as text
        self.assertIsNone(r.headers.get("x-evil"), "a value with CR LF went out")
        self.assertIsNone(r.headers.get("set-cookie"))
        # the upper route returns x-cache only
        r = post("/v1/upper", b"x", {"Content-Type": "text/plain"})
        self.assertIsNone(r.headers.get("x-count"))

    def test_returned_headers_must_fit_the_answer(self):
        # The answer's head is built in the connection's fixed block
        # (gateway/limits.h): the reply's content type and returned headers
        # get 256 bytes of it.  Here: "Content-Type: application/octet-
        # stream" (40 with CRLF) + "x-count: 7" (12) + "x-cache: " + value.
        fits = 256 - 40 - 12 - len("x-cache: \r\n")
        # A client head at the limits (4096 bytes, 16 query parameters, 32
        # fields) leaves the least room: the largest reply that fits is
        # still answered, whole.
        target = "/v1/echo/h?" + "&".join(f"p{i}=v" for i in range(16))
        fields = [("Host", "t"), ("Content-Type", "application/octet-stream"),
                  ("Content-Length", "1"), ("x-want-cache", "c" * fits)]
        fields += [(f"x-f{i}", "v") for i in range(32 - len(fields) - 1)]
        lines = [f"POST {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields]
        pad = 4096 - len("\r\n".join(lines + ["x-pad: "]).encode()) - 4
        data = "\r\n".join(lines + ["x-pad: " + "p" * pad]).encode() + b"\r\n\r\nx"
        self.assertEqual(len(data), 4096 + 1)
        status, headers, body = raw_exchange(GW.port, data)
        self.assertEqual((status, headers.get("x-cache"), body), (200, "c" * fits, b"x"))
        # One byte more: 502 bad_reply, not a connection closed unanswered.
        r = post("/v1/echo/h", b"x", {"x-want-cache": "c" * (fits + 1)})
        harness.assert_problem(self, r, 502, "bad_reply")
        self.assertIn("at most 256 fit", r.json["detail"])

    def test_worker_error_is_problem_json(self):
        r = post("/v1/echo/err", b"x", {"x-want-error": "invalid_argument"})
        harness.assert_problem(self, r, 400, "worker_rejected")
        self.assertEqual(r.json["worker_error"]["type"], "invalid_argument")
        r = post("/v1/echo/err", b"x", {"x-want-error": "database_down"})
        harness.assert_problem(self, r, 502, "worker_error")


class RefusalTest(unittest.TestCase):
    def test_413_from_content_length_before_reading(self):
        # Says 11 bytes and sends none: the answer must come anyway.
        status, headers, body = raw_exchange(
            GW.port, b"PUT /v1/small HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 11\r\n\r\n")
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(body)["code"], "body_too_large")
        self.assertEqual(headers.get("connection"), "close")
        r = post("/v1/small", b"0123456789", {"Content-Type": "text/plain"}, method="PUT")
        self.assertEqual(r.status, 200, harness.show(r))

    def test_413_for_a_chunked_body(self):
        status, _, body = raw_exchange(
            GW.port, b"PUT /v1/small HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n")
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(body)["code"], "body_too_large")

    def test_a_content_type_amqp_cannot_carry(self):
        """Content-Type becomes the message's content_type, an AMQP short
        string (255 bytes at most): a longer one is refused, and costs
        nobody else anything (it must not break the connection)."""
        long_type = "text/plain; x=" + "a" * 300
        r = post("/v1/echo/long", b"x", {"Content-Type": long_type})
        harness.assert_problem(self, r, 400, "bad_request")
        r = post("/v1/echo/long", b"x", {"Content-Encoding": "e" * 256})
        harness.assert_problem(self, r, 400, "bad_request")
        self.assertEqual(harness.get(GW.port, "/fib/9").status, 200)
        self.assertEqual(GW.events("amqp_disconnected"), [])

    def test_415(self):
        r = post("/v1/upper", b"{}", {"Content-Type": "application/json"})
        harness.assert_problem(self, r, 415, "unsupported_media_type")
        self.assertIn("text/plain", r.json["detail"])
        # parameters and case do not matter
        r = post("/v1/upper", b"a", {"Content-Type": "Text/Plain; charset=utf-8"})
        self.assertEqual(r.status, 200, harness.show(r))

    def test_404_and_405(self):
        harness.assert_problem(self, post("/v1/nothing", b"x"), 404, "not_found")
        harness.assert_problem(self, harness.get(GW.port, "/v1/echo"), 404, "not_found")
        r = harness.http_request(GW.port, "DELETE", "/v1/echo/1")
        harness.assert_problem(self, r, 405, "method_not_allowed")
        self.assertEqual(r.headers["Allow"], "GET, HEAD, POST")
        r = harness.get(GW.port, "/v1/upper")
        harness.assert_problem(self, r, 405, "method_not_allowed")
        self.assertEqual(r.headers["Allow"], "POST")

    def test_a_404_keeps_the_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", GW.port, timeout=10)
        for _ in range(3):
            conn.request("GET", "/v1/nothing")
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 404)
            self.assertNotEqual(resp.headers.get("Connection"), "close")
        conn.close()


class ExchangeTest(unittest.TestCase):
    def test_routing_key_from_a_path_parameter(self):
        r = post("/v1/images/cat.jpg/resize/200", b"png bytes",
                 {"Content-Type": "image/png"})
        self.assertEqual(r.status, 200, harness.show(r))
        self.assertEqual(r.json, {"queue": RESIZE_Q, "routing_key": "resize.200",
                                  "id": "cat.jpg", "size": "200", "body": "png bytes"})
        # no queue bound for resize.300: unroutable, answered at once
        r = post("/v1/images/cat.jpg/resize/300", b"x")
        harness.assert_problem(self, r, 504, "no_server")
        self.assertLess(r.elapsed, 2.0)
        self.assertIn("routes key 'resize.300' to no queue", r.json["detail"])
        # An unbound key says nothing of the exchange's other keys: they
        # are served at once, even while a client keeps trying the unbound
        # one (a return once marked the whole exchange missing).
        for _ in range(5):
            harness.assert_problem(self, post("/v1/images/x/resize/300", b"x"),
                                   504, "no_server")
            r = post("/v1/images/cat.jpg/resize/200", b"again")
            self.assertEqual(r.status, 200, harness.show(r))
        # a parameter that would reach other bindings of a topic exchange
        for bad in ("200.secret", "%2A", "%23"):
            with self.subTest(size=bad):
                r = post(f"/v1/images/x/resize/{bad}", b"x")
                harness.assert_problem(self, r, 400, "invalid_param")


class MissingExchangeTest(unittest.TestCase):
    def test_a_missing_exchange_is_no_server_and_harms_no_other_call(self):
        r = post("/v1/ghost", b"x")
        harness.assert_problem(self, r, 504, "no_server")
        self.assertIn("no exchange named 'fibrpc_routes_ghost'", r.json["detail"])
        self.assertEqual(GW.events("amqp_channel_closed"), [])
        self.assertEqual(harness.get(GW.port, "/fib/12").status, 200)

    def test_an_exchange_deleted_under_the_gateway_costs_one_channel(self):
        """The gateway learns an exchange is gone within a second; a
        publish in between makes the broker close the publishing channel.
        The calls waiting on it fail (502), a new channel takes over at
        once, and the connection stays up."""
        lost = None
        for attempt in range(5):
            with ENV.broker.connect() as conn:
                ch = conn.channel()
                ch.exchange_declare(VANISH_X, "direct")
                ch.queue_declare(VANISH_Q, durable=True)
                ch.queue_bind(VANISH_Q, VANISH_X, "v")
            deadline = time.monotonic() + 10
            while post("/v1/vanish", b"x").status != 202:
                self.assertLess(time.monotonic(), deadline, "the route never worked")
                time.sleep(0.05)
            with ENV.broker.connect() as conn:
                conn.channel().exchange_delete(VANISH_X)
            r = post("/v1/vanish", b"y")  # before the gateway's next look
            if r.status == 502:
                lost = r
                break
            harness.assert_problem(self, r, 504, "no_server")  # it looked first
        self.assertIsNotNone(lost, "never published into the deleted exchange")
        harness.assert_problem(self, lost, 502, "connection_lost")
        GW.wait_events("amqp_channel_closed", timeout=10)
        GW.wait_events("amqp_channel_rotated", timeout=10)
        for n in (20, 21, 22):
            r = harness.get(GW.port, f"/fib/{n}")
            self.assertEqual(r.status, 200, harness.show(r))
        # and it looks again at once: the route is no_server from then on
        GW.wait_events("exchange_checked", exchange=VANISH_X, missing="1", timeout=10)
        harness.assert_problem(self, post("/v1/vanish", b"z"), 504, "no_server")
        self.assertEqual(GW.events("amqp_disconnected"), [], "the connection went")


class PublishTest(unittest.TestCase):
    def get_message(self, queue):
        with ENV.broker.connect() as conn:
            ch = conn.channel()
            deadline = time.monotonic() + 10
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is not None:
                    return props, body
                self.assertLess(time.monotonic(), deadline, f"nothing on {queue}")
                time.sleep(0.05)

    def test_202_once_confirmed_and_the_message_is_queued(self):
        r = post("/v1/audit", b'{"event":"login"}',
                 {"Content-Type": "application/json", "X-Tenant": "acme",
                  "X-Request-Id": "audit-1"})
        self.assertEqual(r.status, 202, harness.show(r))
        self.assertEqual(r.json, {"status": "accepted", "route": "audit",
                                  "request_id": "audit-1"})
        props, body = self.get_message(AUDIT_Q)
        self.assertEqual(body, b'{"event":"login"}')
        self.assertEqual(props.delivery_mode, 2)
        self.assertIsNone(props.reply_to)
        self.assertIsNone(props.expiration)
        self.assertEqual(props.content_type, "application/json")
        self.assertEqual(props.headers["x-tenant"], "acme")
        self.assertEqual(props.headers["x-request-id"], "audit-1")

    def test_503_when_the_broker_refuses(self):
        # x-max-length 1 with reject-publish: the second is nacked
        with ENV.broker.connect() as conn:
            conn.channel().queue_purge(FULL_Q)
        r = post("/v1/full", b"first")
        self.assertEqual(r.status, 202, harness.show(r))
        r = post("/v1/full", b"second")
        harness.assert_problem(self, r, 503, "not_queued")
        self.assertEqual(r.headers["Retry-After"], "1")
        self.assertIn("retrying is safe", r.json["detail"])
        # A full queue is back pressure, not a bad channel: with the
        # channel acking other messages, its nacks move publishing nowhere
        # (a channel that nacks everything is replaced: test_cluster).
        rotations = len(GW.events("amqp_channel_rotating"))
        for i in range(10):
            harness.assert_problem(self, post("/v1/full", b"more"), 503, "not_queued")
            r = post("/v1/audit", b"x")
            self.assertEqual(r.status, 202, harness.show(r))
        self.assertEqual(len(GW.events("amqp_channel_rotating")), rotations,
                         GW.log_tail())
        with ENV.broker.connect() as conn:
            conn.channel().queue_purge(AUDIT_Q)
        for n in (10, 11, 12):
            r = harness.get(GW.port, f"/fib/{n}")
            self.assertEqual(r.status, 200, harness.show(r))

    def test_an_exchange_route_nack_is_not_published_twice(self):
        """FANOUT_X routes key k to FULL_Q (full: nacks) and COPY_Q: the
        nack says one queue refused, and COPY_Q took the message.  Published
        again, COPY_Q would get it again: 503 at once, one copy."""
        with ENV.broker.connect() as conn:
            ch = conn.channel()
            ch.queue_purge(FULL_Q)
            ch.queue_purge(COPY_Q)
        self.assertEqual(post("/v1/full", b"fill").status, 202)
        r = post("/v1/fanout", b"once")
        harness.assert_problem(self, r, 503, "not_queued")
        # the audit route's confirm comes after COPY_Q's copy: then all
        # the copies there will ever be are there
        self.assertEqual(post("/v1/audit", b"after").status, 202)
        self.assertEqual(ENV.broker.queue_info(COPY_Q)[0], 1, "published again")
        self.assertNotIn("safe", r.json["detail"])
        self.assertIn("others may have", r.json["detail"])
        with ENV.broker.connect() as conn:
            ch = conn.channel()
            ch.queue_purge(COPY_Q)
            ch.queue_purge(AUDIT_Q)

    def test_no_consumer_needed_but_no_queue_is_no_server(self):
        self.assertEqual(ENV.broker.queue_info(AUDIT_Q)[1], 0)  # nobody consumes
        r = post("/v1/audit", b"x")
        self.assertEqual(r.status, 202, harness.show(r))
        self.get_message(AUDIT_Q)


class ReloadTest(unittest.TestCase):
    def test_reload_under_load_fails_no_request(self):
        halt = threading.Event()
        bad = []
        counts = {"ok": 0}
        lock = threading.Lock()

        def caller(i):
            conn = None
            n = 0
            while not halt.is_set():
                n += 1
                try:
                    if i % 2:
                        r = harness.get(GW.port, f"/fib/{n % 50}")
                        good = r.status == 200 and r.json["fib"] == str(harness.fib(n % 50))
                    else:
                        r = post("/v1/upper", b"abc%d" % n, {"Content-Type": "text/plain"})
                        good = r.status == 200 and r.body == b"ABC%d" % n
                except (OSError, http.client.HTTPException) as e:
                    r, good = e, False
                with lock:
                    if good:
                        counts["ok"] += 1
                    else:
                        bad.append(harness.show(r) if isinstance(r, harness.Response) else repr(r))
            del conn

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            extra = {"name": "upper2", "method": "POST", "path": "/v2/upper",
                     "queue": UPPER_Q}
            loaded = len(GW.events("routes_loaded"))
            for i in range(6):
                write_routes(routes([extra] if i % 2 == 0 else []))
                GW.signal(signal.SIGHUP)
                loaded += 1
                GW.wait_events("routes_loaded", count=loaded, timeout=20)
                r = post("/v2/upper", b"x", {"Content-Type": "text/plain"})
                self.assertEqual(r.status, 200 if i % 2 == 0 else 404, harness.show(r))
            # a bad file is refused and logged; the table in use stays
            refused = len(GW.events("routes_refused"))
            with open(ROUTES_FILE, "w") as f:
                f.write('{"routes": [{"name": "x"}]}')
            GW.signal(signal.SIGHUP)
            GW.wait_events("routes_refused", count=refused + 1, timeout=20)
            r = post("/v1/upper", b"still", {"Content-Type": "text/plain"})
            self.assertEqual((r.status, r.body), (200, b"STILL"))
            time.sleep(0.2)  # a little more load on the old table
        finally:
            halt.set()
            for t in threads:
                t.join(30)
            write_routes(routes())
            GW.signal(signal.SIGHUP)
        self.assertEqual(bad, [], "a request failed while the routes were reloaded")
        self.assertGreater(counts["ok"], 50)
        self.assertTrue(GW.running())
        GW.stopped_by_us = False  # SIGHUP is no stop


BAD_FILES = [
    ("not JSON", "{", "not valid JSON"),
    ("unknown field",
     {"routes": [{"name": "a", "method": "GET", "path": "/a", "queue": "q", "colour": 1}]},
     "route 'a' (#1): field 'colour': unknown field"),
    ("duplicate names",
     {"routes": [{"name": "a", "method": "GET", "path": "/a", "queue": "q"},
                 {"name": "a", "method": "GET", "path": "/b", "queue": "q"}]},
     "route 'a' (#2): field 'name': duplicate"),
    ("same method and path",
     {"routes": [{"name": "a", "method": "POST", "path": "/x/{id}", "queue": "q"},
                 {"name": "b", "method": "POST", "path": "/x/{other}", "queue": "q"}]},
     "route 'b' (#2): field 'path': POST /x/{other}: route 'a' (#1) already serves"),
    ("routing key parameter not in the path",
     {"routes": [{"name": "a", "method": "POST", "path": "/a/{id}", "exchange": "x",
                  "routing_key": "k.{size}"}]},
     "field 'routing_key': {size} is not a parameter of path '/a/{id}'"),
    ("a bad number",
     {"routes": [{"name": "a", "method": "GET", "path": "/a", "queue": "q",
                  "timeout_ms": -5}]},
     "field 'timeout_ms': -5 is out of range"),
    ("a number as text",
     {"routes": [{"name": "a", "method": "GET", "path": "/a", "queue": "q",
                  "max_body_bytes": "1MB"}]},
     "field 'max_body_bytes': must be an integer"),
    ("missing destination",
     {"routes": [{"name": "a", "method": "GET", "path": "/a"}]},
     "route 'a' (#1): field 'queue': missing destination"),
    ("the gateway's own path",
     {"routes": [{"name": "a", "method": "GET", "path": "/metrics", "queue": "q"}]},
     "field 'path': '/metrics' is the gateway's own"),
    ("kind fib with POST",
     {"routes": [{"name": "a", "kind": "fib", "method": "POST", "path": "/f/{n}",
                  "queue": "q"}]},
     "kind fib is GET only"),
    ("a framing header forwarded",
     {"routes": [{"name": "a", "method": "POST", "path": "/a", "queue": "q",
                  "forward_headers": ["Transfer-Encoding"]}]},
     "'transfer-encoding' is the gateway's own"),
]


class BadFileTest(unittest.TestCase):
    def write(self, name, content):
        path = os.path.join(ENV.dir, f"bad-{name.replace(' ', '_')}.json")
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def test_check_routes_refuses_each_with_its_message(self):
        for name, content, want in BAD_FILES:
            with self.subTest(name):
                path = self.write(name, content)
                r = subprocess.run([harness.binary("rpc-gateway"), "--check-routes", path],
                                   capture_output=True, text=True, timeout=30,
                                   env=harness.child_env())
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(want, r.stderr)
        r = subprocess.run([harness.binary("rpc-gateway"), "--check-routes", ROUTES_FILE],
                           capture_output=True, text=True, timeout=30, env=harness.child_env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"{len(routes()['routes'])} routes, good", r.stdout)

    def test_confirms_off(self):
        """--confirms 0: calls work without them; a publish-mode route
        (202 once confirmed) cannot, so such a file is refused."""
        p = harness.Proc("rpc-gateway-noconfirms", [
            harness.binary("rpc-gateway"), "--amqp-url", ENV.url,
            "--listen", f"127.0.0.1:{harness.free_port()}", "--confirms", "0",
            "--routes", ROUTES_FILE], ENV.dir)
        self.assertEqual(p.wait(30), 1, p.log_tail())
        self.assertTrue(any("route 'audit': mode publish" in e.get("error", "") and
                            "--confirms 1" in e.get("error", "")
                            for e in p.events("routes_refused")), p.log_tail())
        path = self.write("no publish", {"routes": [
            r for r in routes()["routes"] if r.get("mode") != "publish"]})
        gw = ENV.start_gateway(args=["--confirms", "0", "--routes", path],
                               ready_path="/fib/5")
        r = post("/v1/upper", b"abc", {"Content-Type": "text/plain"})
        self.assertEqual(r.status, 200, harness.show(r))  # on GW: unaffected
        r = harness.http_request(gw.port, "POST", "/v1/upper", body=b"abc",
                                 headers={"Content-Type": "text/plain"})
        self.assertEqual((r.status, r.body), (200, b"ABC"), harness.show(r))
        ENV.stop_proc(gw)

    def test_tokens_are_not_forwarded(self):
        """With --auth-tokens-file, a route that forwards Authorization
        (the caller's token for the gateway) is refused: at start, and on
        SIGHUP the old table stays."""
        tokens = self.write("tokens", hashlib.sha256(b"fgw_t").hexdigest() + "\n")
        leaky = self.write("forwards authorization", {"routes": [
            {"name": "leaky", "method": "POST", "path": "/leaky", "queue": "leaky",
             "forward_headers": ["Authorization"]}]})
        p = harness.Proc("rpc-gateway-leaky", [
            harness.binary("rpc-gateway"), "--amqp-url", ENV.url,
            "--listen", f"127.0.0.1:{harness.free_port()}",
            "--auth-tokens-file", tokens, "--routes", leaky], ENV.dir)
        self.assertEqual(p.wait(30), 1, p.log_tail())
        self.assertTrue(any("route 'leaky': forward_headers: 'authorization'" in
                            e.get("error", "") for e in p.events("routes_refused")),
                        p.log_tail())
        # Without tokens it is the worker's own business: allowed.
        gw = ENV.start_gateway(args=["--routes", leaky], ready_path="/healthz")
        ENV.stop_proc(gw)

    def test_a_bad_file_at_start_refuses_to_start(self):
        name, content, want = BAD_FILES[3]
        path = self.write(name, content)
        port = harness.free_port()
        p = harness.Proc("rpc-gateway-badroutes", [
            harness.binary("rpc-gateway"), "--amqp-url", ENV.url,
            "--listen", f"127.0.0.1:{port}", "--routes", path], ENV.dir)
        self.assertEqual(p.wait(30), 1, p.log_tail())
        events = p.events("routes_refused")
        self.assertTrue(any(want in e.get("error", "") for e in events), p.log_tail())


if __name__ == "__main__":
    harness.main()
