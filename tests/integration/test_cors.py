#!/usr/bin/env python3
"""test_cors.py - calls from browser pages on other origins (issue
"Hardening": --cors-origins; README, "Security").  What a browser sees,
as headers; tests/browser/test_cors.py does it in Chromium.

With --cors-origins (exact origins) and bearer tokens on:
- a preflight (OPTIONS with Origin and Access-Control-Request-Method) from
  a listed origin is answered 204 without a token (browsers send none):
  Access-Control-Allow-Origin with that exact origin, -Allow-Methods
  (every method the gateway serves: with tokens required, the same answer
  on every path, so that a preflight tells nobody which paths exist),
  -Allow-Headers (Authorization, Content-Type, X-Request-Id, traceparent),
  -Max-Age, and Vary: Origin;
- answers to listed origins, errors included, carry
  Access-Control-Allow-Origin and -Expose-Headers (X-Request-Id,
  Retry-After), so the page can read them;
- an origin not in the list gets no Access-Control-* header at all (its
  preflight is an ordinary OPTIONS: 401 without a token, 405 with one),
  nor does a request without Origin, nor a look-alike origin;
- without --cors-origins nothing changes: no CORS headers, no Vary;
- raw routes: a preflight also allows Content-Encoding and every route's
  forward_headers (a page could not send them before), and an answer
  exposes the headers the worker returned (a page could not read them)."""

import hashlib
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

APP = "https://app.example"
DEV = "http://localhost:3000"
ENV = None
GW = None        # --cors-origins APP,DEV --auth-tokens-file
GW_PLAIN = None  # neither
GW_RAW = None    # --cors-origins APP; routes: fib and a raw echo route
ECHO_Q = "fibrpc_cors_echo"
TOKEN = "fgw_cors-test-token"


def setUpModule():
    global ENV

    def start(env):
        global GW, GW_PLAIN, GW_RAW
        tokens = os.path.join(env.dir, "tokens.txt")
        with open(tokens, "w") as f:
            f.write(hashlib.sha256(TOKEN.encode()).hexdigest() + "\n")
        env.start_worker()
        GW = env.start_gateway(args=["--cors-origins", f"{APP}, {DEV}",
                                     "--auth-tokens-file", tokens], ready_path="/healthz")
        GW_PLAIN = env.start_gateway()
        env.wait_consumers_seen(GW)
        routes = os.path.join(env.dir, "routes.json")
        with open(routes, "w") as f:
            json.dump({"routes": [
                {"name": "fib", "kind": "fib", "method": "GET", "path": "/fib/{n}",
                 "queue": "rpc_queue"},
                {"name": "echo", "method": "POST", "path": "/v1/echo/{id}", "queue": ECHO_Q,
                 "forward_headers": ["x-tenant"], "return_headers": ["x-cache", "x-count"]}]},
                f)
        env.start_python("echo-worker", os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "echo_worker.py"), [env.url, ECHO_Q])
        env.broker.wait_consumers(ECHO_Q, 1)
        GW_RAW = env.start_gateway(args=["--routes", routes, "--cors-origins", APP])

    ENV = harness.setup_env("cors", start)


def tearDownModule():
    harness.teardown_env(ENV)


def cors_headers(r):
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def preflight(port, origin, method="GET", path="/fib/10", headers="authorization,x-request-id"):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return harness.http_request(port, "OPTIONS", path, headers=h)


class CorsTest(unittest.TestCase):
    def test_preflight_from_a_listed_origin_needs_no_token(self):
        for origin in (APP, DEV):
            for path in ("/fib/10", "/readyz", "/", "/nope", "/fib/10/x"):
                with self.subTest(origin=origin, path=path):
                    r = preflight(GW.port, origin, path=path)
                    self.assertEqual(r.status, 204, harness.show(r))
                    self.assertEqual(r.body, b"")
                    self.assertIsNone(r.headers.get("Content-Type"))
                    self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), origin)
                    self.assertEqual(r.headers.get("Access-Control-Allow-Methods"),
                                     "GET, HEAD, POST, PUT, PATCH, DELETE")
                    allowed = [h.strip().lower() for h in
                               r.headers.get("Access-Control-Allow-Headers", "").split(",")]
                    for h in ("authorization", "content-type", "x-request-id", "traceparent"):
                        self.assertIn(h, allowed)
                    self.assertEqual(r.headers.get("Access-Control-Max-Age"), "600")
                    self.assertIn("Origin", r.headers.get("Vary", ""))
                    self.assertIsNone(r.headers.get("Access-Control-Allow-Credentials"))
                    self.assertTrue(r.headers.get("X-Request-Id"))
        ev = GW.wait_events("request", method="OPTIONS", status="204")
        self.assertTrue(ev, GW.log_tail())

    def test_answers_to_a_listed_origin_can_be_read(self):
        auth = {"Authorization": f"Bearer {TOKEN}", "Origin": APP}
        r = harness.get(GW.port, "/fib/10", headers=auth)
        self.assertEqual((r.status, r.json), (200, {"n": 10, "fib": "55"}))
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), APP)
        self.assertEqual(r.headers.get("Access-Control-Expose-Headers"),
                         "X-Request-Id, Retry-After")
        self.assertIn("Origin", r.headers.get("Vary", ""))
        # Errors too: the page reads the problem JSON.
        for headers, status in (({"Origin": DEV}, 401),                   # no token
                                (dict(auth, Origin=DEV), 404),            # /nope
                                (dict(auth), 400)):                       # /fib/abc
            path = {401: "/fib/1", 404: "/nope", 400: "/fib/abc"}[status]
            with self.subTest(status=status):
                r = harness.get(GW.port, path, headers=headers)
                self.assertEqual(r.status, status, harness.show(r))
                self.assertEqual(r.headers.get("Access-Control-Allow-Origin"),
                                 headers["Origin"])
                self.assertEqual(r.headers.get("Content-Type"), "application/problem+json")
        # A 405 to a listed origin still names the allowed methods.
        r = harness.http_request(GW.port, "POST", "/fib/1", headers=auth)
        self.assertEqual((r.status, r.headers.get("Allow")), (405, "GET, HEAD"))
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), APP)

    def test_other_origins_get_no_cors_headers(self):
        for origin in ("https://evil.example", "https://app.example.evil.example",
                       "http://app.example", "https://app.example:443", "https://APP.EXAMPLE",
                       "null", APP + "/", ""):
            with self.subTest(origin=origin):
                r = preflight(GW.port, origin)
                harness.assert_problem(self, r, 401, "unauthorized", origin)
                self.assertEqual(cors_headers(r), {}, origin)
                r = harness.get(GW.port, "/fib/3",
                                headers={"Origin": origin, "Authorization": f"Bearer {TOKEN}"})
                self.assertEqual(r.status, 200)
                self.assertEqual(cors_headers(r), {}, origin)
                self.assertIn("Origin", r.headers.get("Vary", ""))
        # With a token, an OPTIONS is an ordinary method: 405.
        r = harness.http_request(GW.port, "OPTIONS", "/fib/1",
                                 headers={"Origin": "https://evil.example",
                                          "Access-Control-Request-Method": "GET",
                                          "Authorization": f"Bearer {TOKEN}"})
        harness.assert_problem(self, r, 405, "method_not_allowed")
        self.assertEqual(cors_headers(r), {})
        # No Origin at all: an ordinary call.
        r = harness.get(GW.port, "/fib/3", headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual((r.status, cors_headers(r)), (200, {}))

    def test_options_that_is_not_a_preflight_is_not_answered_as_one(self):
        # A listed origin, but no Access-Control-Request-Method.
        r = harness.http_request(GW.port, "OPTIONS", "/fib/1", headers={"Origin": APP})
        harness.assert_problem(self, r, 401, "unauthorized")
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), APP)
        self.assertIsNone(r.headers.get("Access-Control-Allow-Methods"))
        # A preflight for an unknown path gets what one for a known path
        # gets (tokens are required: nobody learns which paths exist), and
        # it opens nothing: the request itself needs its token.
        known, unknown = preflight(GW.port, APP), preflight(GW.port, APP, path="/nope")
        self.assertEqual((unknown.status, cors_headers(unknown)),
                         (known.status, cors_headers(known)), harness.show(unknown))
        r = harness.get(GW.port, "/nope", headers={"Origin": APP})
        harness.assert_problem(self, r, 401, "unauthorized")

    def test_without_cors_origins_nothing_changes(self):
        r = preflight(GW_PLAIN.port, APP)
        harness.assert_problem(self, r, 405, "method_not_allowed")
        self.assertEqual(r.headers.get("Allow"), "GET, HEAD")
        self.assertEqual(cors_headers(r), {})
        r = harness.get(GW_PLAIN.port, "/fib/4", headers={"Origin": APP})
        self.assertEqual(r.status, 200)
        self.assertEqual(cors_headers(r), {})
        self.assertIsNone(r.headers.get("Vary"))

    def test_raw_routes_headers_can_be_sent_and_read(self):
        r = preflight(GW_RAW.port, APP, method="POST", path="/v1/echo/1",
                      headers="content-type,x-tenant")
        self.assertEqual(r.status, 204, harness.show(r))
        allowed = [h.strip().lower() for h in
                   r.headers.get("Access-Control-Allow-Headers", "").split(",")]
        for h in ("authorization", "content-type", "x-request-id", "traceparent",
                  "content-encoding", "x-tenant"):
            self.assertIn(h, allowed, r.headers)
        r = harness.http_request(GW_RAW.port, "POST", "/v1/echo/1", body=b"hi",
                                 headers={"Origin": APP, "x-tenant": "t1"})
        self.assertEqual((r.status, r.body), (200, b"hi"), harness.show(r))
        self.assertEqual(r.headers.get("x-cache"), "HIT")
        self.assertEqual(r.headers.get("Access-Control-Expose-Headers"),
                         "X-Request-Id, Retry-After, x-cache, x-count")
        # Answers of the gateway's own expose what they always did.
        r = harness.get(GW_RAW.port, "/fib/5", headers={"Origin": APP})
        self.assertEqual(r.headers.get("Access-Control-Expose-Headers"),
                         "X-Request-Id, Retry-After")

    def test_bad_origin_lists_are_usage_errors(self):
        for value, want in (("*", "list each origin exactly"),
                            ("https://a.example/", "no path"),
                            ("https://A.example", "lowercase")):
            with self.subTest(value=value):
                argv = [harness.binary("rpc-gateway"), "--amqp-url", ENV.url,
                        "--listen", f"127.0.0.1:{harness.free_port()}", "--cors-origins", value]
                p = harness.Proc(ENV._unique("rpc-gateway-start"), argv, ENV.dir)
                self.assertEqual(p.wait(30), 2, p.log_tail())
                self.assertIn(want, p.log())


if __name__ == "__main__":
    harness.main()
