#!/usr/bin/env python3
"""test_openapi.py - the gateway answers as openapi.yaml says, proven on
real traffic: every request goes through `prism proxy --errors` (Stoplight's
validating proxy, tests/contract/package.json), which checks each live
response (status, headers, media type, body schema) against the spec and
marks a violation in an `sl-violations` header, a 500 VIOLATIONS answer and
its log.  Any violation fails the test.

Two proxies: a strict one that also validates the request (for requests
the spec allows) and a lax one (--validate-request false, for the
deliberately bad requests the spec answers with 400).  Behind them, through
a relay that holds its port for the whole test (contract.Relay), a gateway
in each setting needed to provoke every status, one after the other: a real
worker; a scripted server (timeouts, worker errors, garbage replies) behind
--max-inflight 1 (overloaded); a queue nobody consumes (no_server); bearer
tokens on every path and CORS (unauthorized, OPTIONS); no broker at all
(broker_unavailable).

Two kinds of response prism cannot carry are checked directly against the
spec with jsonschema: HEAD (prism parses the empty body as JSON) and unknown
paths (no spec path to route them by).

Routes (E_RoutesTest): a gateway with a route file (raw rpc routes, an
exchange route, publish routes, the fib route) serves a document made from
its table (gateway/openapi.c); two more proxies validate against that
document, as the gateway served it, traffic to the example Python worker,
the echo worker and the broker: raw answers with the worker's status,
type and headers, 202, 405 with the route's Allow, 413, 415,
invalid_param, not_queued, no_server.

At the end, every status and problem code the spec documents must have
been seen, except the few that need a failure of the gateway itself (see
UNREPLAYABLE)."""

import collections
import hashlib
import json
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract  # noqa: E402
import harness  # noqa: E402

# (path template, method, status) the spec documents that this test cannot
# provoke from outside: the gateway's own failure (500 internal), the broker
# dropping mid-call (502 connection_lost, test_failures-style) and a stop in
# progress (503 shutting_down).  Codes likewise.
UNREPLAYABLE = {("/fib/{n}", "get", 500), ("/fib/{n}", "head", 500),
                ("/fib/{n}", "get", 408), ("/fib/{n}", "head", 408)}
# request_timeout needs a head that never finishes, bad_request a head with
# ambiguous framing or Host headers, which no proxy forwards as sent
# (test_hardening.py checks both, and their bodies against this spec).
UNREPLAYABLE_CODES = {"internal", "connection_lost", "shutting_down", "request_timeout",
                      "bad_request"}

OTHER_METHODS = ("POST", "PUT", "PATCH", "DELETE")
PATHS = {"/fib/{n}": "/fib/10", "/healthz": "/healthz", "/readyz": "/readyz",
         "/metrics": "/metrics", "/": "/", "/openapi.yaml": "/openapi.yaml",
         "/routes.json": "/routes.json"}
UNKNOWN_PATHS = ["/nope", "/index.html", "/healthz/x", "/FIB/1", "/fibx/1"]
# Under /fib/ but outside the /fib/{n} template: the API's 400.
FIB_OUTSIDE_TEMPLATE = ["/fib", "/fib/", "/fib/10/extra"]

WORKER_MAX_N = 1000        # the real worker rejects n above this: worker_rejected
# The call that holds the only in-flight slot (test_503_overloaded) is
# answered once the 503 has been seen, so its timeout only has to outlast
# the test's wait for the slot to be taken plus one request through prism;
# on a loaded machine each may take a while, so the longest --max-timeout-ms
# allows by default (a shorter timeout could free the slot first).
HOLD_TIMEOUT_MS = 30000
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

ENV = None
SPEC = None
VALIDATOR = None
PRISM = {}                 # "strict"/"lax" -> Prism; "routes-strict"/"routes-lax" too
RELAY = None               # prism -> RELAY -> the current gateway
ROUTES_RELAY = None        # prism-routes-* -> ROUTES_RELAY -> the routes gateway
ROUTES_SPEC_PATH = None    # the document a gateway with ROUTES serves, as served
ROUTES_SPEC = None
ROUTES_VALIDATOR = None
ROUTES_COVERED = set()     # (path template, method, status) of that document
GW = None                  # the current gateway (harness.Proc)
COVERED = set()            # (path template, method, status)
CODES = collections.Counter()
FAILURES = []              # violations found outside a test method's asserts


class Prism:
    """`prism proxy openapi.yaml http://127.0.0.1:<gw> --errors` on a free port."""

    def __init__(self, env, name, upstream_port, validate_request, spec=None):
        self.name = name
        self.port = harness.free_port()
        argv = [os.path.join(contract.NPM_BIN, "prism"), "proxy", spec or contract.SPEC_PATH,
                f"http://127.0.0.1:{upstream_port}", "--errors", "--host", "127.0.0.1",
                "--port", str(self.port), f"--validate-request={str(validate_request).lower()}"]
        self.proc = harness.Proc(name, argv, env.dir, env=contract.node_env())
        env.procs.append(self.proc)

    def wait_listening(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.running():
                raise RuntimeError(f"{self.name} exited ({self.proc.popen.returncode}):\n"
                                   f"{self.proc.log_tail()}")
            if "Prism is listening" in self.proc.log():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen within {timeout} s:\n"
                           f"{self.proc.log_tail()}")

    def violations_logged(self):
        """Log lines reporting a violation or a failed request (not the
        startup list of operations, whose example paths are random words:
        /v1/images/et/resize/error)."""
        return [ln for ln in self.proc.lines()
                if re.search(r"violation|✖|\berror\b|fatal", ln, re.I)
                and not re.search(r"\[CLI\].*\binfo\s+[A-Z]+\s+http://", ln)]


def start_gateway(queue, url=None, args=(), ready="/healthz", ready_status=200,
                  relay=None):
    """rpc-gateway on a fresh port, ready when `ready` answers
    `ready_status`; from now on the one behind the proxies (of relay:
    RELAY's unless said)."""
    global GW
    port = harness.free_port()
    argv = [harness.binary("rpc-gateway"), "--amqp-url", url or ENV.url,
            "--listen", f"127.0.0.1:{port}", "--queue", queue] + list(args)
    p = harness.Proc(ENV._unique("rpc-gateway"), argv, ENV.dir)
    p.port = port
    ENV.procs.append(p)
    ENV.wait_http(p, ready, ready_status)
    GW = p
    (relay or RELAY).upstream = port
    return p


def wait_metric(gw, name, want, timeout=harness.READY_TIMEOUT):
    """Waits until the gateway's /metrics shows `name want` (direct)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = harness.get(gw.port, "/metrics").body.decode()
        if re.search(rf"^{re.escape(name)} {re.escape(str(want))}$", text, re.M):
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never became {want}:\n{text}")


def served_routes_spec():
    """The document a gateway with ROUTES serves (it needs no broker for
    that), saved as served; returns its path."""
    import yaml
    global ROUTES_SPEC, ROUTES_VALIDATOR
    routes_file = os.path.join(ENV.dir, "routes.json")
    with open(routes_file, "w") as f:
        json.dump(ROUTES, f)
    port = harness.free_port()
    dead = f"amqp://guest:guest@127.0.0.1:{harness.free_port()}/"
    p = harness.Proc(ENV._unique("rpc-gateway-spec"), [
        harness.binary("rpc-gateway"), "--amqp-url", dead, "--listen",
        f"127.0.0.1:{port}", "--routes", routes_file], ENV.dir)
    p.port = port
    ENV.procs.append(p)
    try:
        r = ENV.wait_http(p, "/openapi.yaml", 200)
    finally:
        ENV.stop_proc(p)
    path = os.path.join(ENV.dir, "routes-openapi.yaml")
    with open(path, "wb") as f:
        f.write(r.body)
    ROUTES_SPEC = yaml.safe_load(r.body)
    ROUTES_VALIDATOR = contract.SpecValidator(ROUTES_SPEC)
    return path


def setUpModule():
    global ENV, SPEC, VALIDATOR, RELAY, ROUTES_RELAY, ROUTES_SPEC_PATH
    SPEC = contract.load_spec()
    VALIDATOR = contract.SpecValidator(SPEC)
    harness.binary("fib-worker"), harness.binary("rpc-gateway")
    # As harness.setup_env, but the proxies (slow to start: seconds of
    # module loading) start first, while the broker boots.
    ENV = harness.Env("contract")
    try:
        RELAY = contract.Relay()
        PRISM["strict"] = Prism(ENV, "prism-strict", RELAY.port, True)
        PRISM["lax"] = Prism(ENV, "prism-lax", RELAY.port, False)
        ROUTES_SPEC_PATH = served_routes_spec()
        ROUTES_RELAY = contract.Relay()
        PRISM["routes-strict"] = Prism(ENV, "prism-routes-strict", ROUTES_RELAY.port, True,
                                       ROUTES_SPEC_PATH)
        PRISM["routes-lax"] = Prism(ENV, "prism-routes-lax", ROUTES_RELAY.port, False,
                                    ROUTES_SPEC_PATH)
        ENV.start_broker()
        ENV.start_worker(queue="contract_fib", max_n=WORKER_MAX_N)
        for p in PRISM.values():
            p.wait_listening()
    except BaseException:
        ENV.stop()
        raise


def tearDownModule():
    harness.teardown_env(ENV)
    for relay in (RELAY, ROUTES_RELAY):
        if relay is not None:
            relay.close()


def template_of(path):
    path = path.split("?")[0]
    if path.startswith("/fib/") and re.fullmatch(r"/fib/[^/]+", path):
        return "/fib/{n}"
    return path if path in SPEC["paths"] else None


class Base(unittest.TestCase):
    """Requests through a proxy, and checks of what comes back."""

    def via(self, proxy, method, path, status, code=None, headers=None):
        """One request through prism `proxy`; asserts no violation, the
        status and (for problems) the code.  Then the same as HEAD, straight
        to the gateway, checked against the spec here (GET only)."""
        hdrs = dict(headers or {})
        r = harness.http_request(PRISM[proxy].port, method, path, headers=hdrs,
                                 body=b"" if method in OTHER_METHODS else None)
        what = f"{method} {path} via prism-{proxy}: {harness.show(r)}"
        self.assertIsNone(r.headers.get("sl-violations"),
                          f"prism found violations: {r.headers.get('sl-violations')}; {what}")
        if isinstance(r.json, dict) and "stoplight.io/prism" in str(r.json.get("type")):
            self.fail(f"prism answered instead of the gateway: {what}")
        self.assertEqual(r.status, status, what)
        rid = r.headers.get("X-Request-Id")
        self.assertTrue(rid, f"no X-Request-Id: {what}")
        if code is not None:
            harness.assert_problem(self, r, status, code, what)
            self.assertEqual(r.json.get("request_id"), rid, what)
        template = template_of(path)
        COVERED.add((template, method.lower(), status))
        if code is not None:
            CODES[code] += 1
        if method == "GET":
            self.head(path, status, headers=hdrs)
        return r

    def head(self, path, status, headers=None):
        """HEAD straight to the gateway: the status GET gave, the spec's
        headers for it, no body."""
        r = harness.http_request(GW.port, "HEAD", path, headers=headers or {})
        what = f"HEAD {path}: {harness.show(r)}"
        self.assertEqual(r.status, status, what)
        template = template_of(path)
        resp = VALIDATOR.response_object(template, "head", status)
        self.assertIsNotNone(resp, f"the spec has no HEAD {template} {status}; {what}")
        self.assertEqual(VALIDATOR.check(resp, status, r.headers, r.body, has_body=False),
                         [], what)
        COVERED.add((template, "head", status))

    def direct(self, path, status, response_ref, code):
        """A GET the spec has no operation for, checked against a named
        response component."""
        r = harness.get(GW.port, path)
        what = f"GET {path}: {harness.show(r)}"
        harness.assert_problem(self, r, status, code, what)
        resp = VALIDATOR.deref({"$ref": f"#/components/responses/{response_ref}"})
        self.assertEqual(VALIDATOR.check(resp, status, r.headers, r.body), [], what)
        r = harness.http_request(GW.port, "HEAD", path)
        self.assertEqual(r.status, status, f"HEAD {path}: {harness.show(r)}")
        self.assertEqual(VALIDATOR.check(resp, status, r.headers, r.body, has_body=False),
                         [], f"HEAD {path}: {harness.show(r)}")
        CODES[code] += 1


class A_WorkerTest(Base):
    """A real fib-worker (with --max-n 1000) behind the gateway."""

    @classmethod
    def setUpClass(cls):
        cls.gw = start_gateway("contract_fib")
        ENV.wait_consumers_seen(cls.gw)

    @classmethod
    def tearDownClass(cls):
        ENV.stop_proc(cls.gw)

    def test_fib_200(self):
        r = self.via("strict", "GET", "/fib/10", 200)
        self.assertEqual(r.json, {"n": 10, "fib": "55"})
        r = self.via("strict", "GET", "/fib/0?timeout_ms=2000", 200,
                     headers={"X-Request-Id": "contract-test.1:a", "traceparent": TRACEPARENT})
        self.assertEqual(r.json, {"n": 0, "fib": "0"})
        self.assertEqual(r.headers["X-Request-Id"], "contract-test.1:a")
        r = self.via("strict", "GET", "/fib/0090", 200)
        self.assertEqual(r.json, {"n": 90, "fib": str(harness.fib(90))})

    def test_fib_400(self):
        self.via("strict", "GET", "/fib/100001", 400, "n_out_of_range")
        self.via("strict", "GET", "/fib/10?timeout_ms=0", 400, "invalid_timeout")
        r = self.via("strict", "GET", f"/fib/{WORKER_MAX_N + 1}", 400, "worker_rejected")
        self.assertEqual(r.json["worker_error"]["type"], "out_of_range", harness.show(r))
        # Requests the spec itself rules out: only the lax proxy forwards them.
        for path in ("/fib/abc", "/fib/-1", "/fib/1e3"):
            self.via("lax", "GET", path, 400, "invalid_n")
        self.via("strict", "GET", "/fib/" + "1" * 21, 400, "n_out_of_range")
        self.via("lax", "GET", "/fib/10?timeout_ms=abc", 400, "invalid_timeout")
        self.via("lax", "GET", "/fib/10?timeout_ms=-5", 400, "invalid_timeout")

    def test_fib_414_431(self):
        # Over the limits: the spec documents only timeout_ms, so the lax
        # proxy forwards the extra parameters and the padding header.
        self.via("lax", "GET", "/fib/10?" + "&".join(["timeout_ms=2000"] * 17), 414,
                 "uri_too_long")
        self.via("lax", "GET", "/fib/10", 431, "headers_too_large",
                 headers={"X-Pad": "p" * 5000})

    def test_bad_request_id_is_replaced(self):
        r = self.via("lax", "GET", "/healthz", 200, headers={"X-Request-Id": "x" * 65})
        self.assertNotEqual(r.headers["X-Request-Id"], "x" * 65)
        r = self.via("lax", "GET", "/healthz", 200, headers={"X-Request-Id": "a b"})
        self.assertNotEqual(r.headers["X-Request-Id"], "a b")

    def test_operations_and_documents(self):
        self.assertEqual(self.via("strict", "GET", "/healthz", 200).json, {"status": "ok"})
        r = self.via("strict", "GET", "/readyz", 200)
        self.assertEqual((r.json["status"], r.json["queue"]), ("ready", "contract_fib"))
        self.assertGreaterEqual(r.json["consumers"], 1)
        r = self.via("strict", "GET", "/metrics", 200)
        self.assertIn(b"fibgw_http_requests_total", r.body)
        r = self.via("strict", "GET", "/", 200)
        self.assertIn(b"<form", r.body)
        r = self.via("strict", "GET", "/openapi.yaml", 200)
        with open(contract.SPEC_PATH, "rb") as f:
            self.assertEqual(r.body, f.read(),
                             "the gateway serves a stale openapi.yaml: rebuild it")
        r = self.via("strict", "GET", "/routes.json", 200)
        self.assertEqual([(x["name"], x["method"], x["path"]) for x in r.json["routes"]],
                         [("fib", "GET", "/fib/{n}")])

    def test_other_methods_405(self):
        for template, path in PATHS.items():
            for method in OTHER_METHODS:
                with self.subTest(method=method, path=path):
                    r = self.via("strict", method, path, 405, "method_not_allowed")
                    self.assertEqual(r.headers.get("Allow"), "GET, HEAD")

    def test_unknown_paths_404(self):
        for path in UNKNOWN_PATHS:
            with self.subTest(path=path):
                self.direct(path, 404, "NotFound", "not_found")
        for path in FIB_OUTSIDE_TEMPLATE:
            with self.subTest(path=path):
                self.direct(path, 400, "BadRequest", "invalid_n")


class B_ScriptedTest(Base):
    """A scripted RPC server behind a gateway with --max-inflight 1."""

    SCRIPT = {1: ("error", "internal", "the disk is on fire"),   # 502 worker_error
              2: ("raw", b"12a", "text/plain"),                  # 502 bad_reply
              3: ("fib", 0),                                    # 200
              4: ("error", "worker_crashed", "workers crashed on it"),  # 502 worker_crashed
              7: ("hold",)}                   # 200 once released: holds the slot
    # any other n: never answered (timeouts)

    @classmethod
    def setUpClass(cls):
        cls.server = contract.ScriptedServer(ENV.url, "contract_scripted",
                                             lambda n: cls.SCRIPT.get(n)).start_and_wait()
        cls.gw = start_gateway("contract_scripted", args=("--max-inflight", "1"))
        ENV.wait_consumers_seen(cls.gw)

    @classmethod
    def tearDownClass(cls):
        ENV.stop_proc(cls.gw)
        cls.server.stop()

    def test_502(self):
        r = self.via("strict", "GET", "/fib/1", 502, "worker_error")
        self.assertEqual(r.json["worker_error"],
                         {"type": "internal", "message": "the disk is on fire"})
        self.via("strict", "GET", "/fib/2", 502, "bad_reply")
        r = self.via("strict", "GET", "/fib/4", 502, "worker_crashed")
        self.assertEqual(r.json["worker_error"]["type"], "worker_crashed")

    def test_504_timeout(self):
        r = self.via("strict", "GET", "/fib/9?timeout_ms=200", 504, "timeout")
        self.assertLess(r.elapsed, 5.0)

    def test_503_overloaded(self):
        self.via("strict", "GET", "/fib/3", 200)
        held = {}

        def hold():  # takes the only slot until the server is told to answer
            held["r"] = harness.http_request(
                PRISM["strict"].port, "GET", f"/fib/7?timeout_ms={HOLD_TIMEOUT_MS}",
                timeout=HOLD_TIMEOUT_MS / 1000 + 30)
        t = threading.Thread(target=hold)
        t.start()
        try:
            wait_metric(self.gw, "fibgw_calls_in_flight", 1, timeout=HOLD_TIMEOUT_MS / 1000)
            r = self.via("strict", "GET", "/fib/8", 503, "overloaded")
            self.assertEqual(r.headers.get("Retry-After"), "1")
        finally:
            self.server.release(7)
            t.join()
        r = held["r"]
        self.assertIsNone(r.headers.get("sl-violations"), harness.show(r))
        self.assertEqual((r.status, r.json), (200, {"n": 7, "fib": "13"}),
                         f"the call that held the slot: {harness.show(r)}")


class C_NoServerTest(Base):
    """Nobody consumes the gateway's queue."""

    @classmethod
    def setUpClass(cls):
        cls.gw = start_gateway("contract_nobody")
        wait_metric(cls.gw, "fibgw_amqp_connected", 1)

    @classmethod
    def tearDownClass(cls):
        ENV.stop_proc(cls.gw)

    def test_fib_504_no_server(self):
        self.via("strict", "GET", "/fib/10", 504, "no_server")

    def test_readyz_200_without_workers(self):
        # Ready is the gateway's own link: no worker is 504 no_server per
        # call, not an unready gateway.
        r = self.via("strict", "GET", "/readyz", 200)
        self.assertEqual(r.json["consumers"], 0, harness.show(r))

    def test_healthz_still_200(self):
        self.via("strict", "GET", "/healthz", 200)


class DS_SecurityTest(Base):
    """Bearer tokens on every path (--auth-exempt none) and CORS for one
    origin: 401 on every operation, and OPTIONS (straight to the gateway,
    checked here: prism has CORS handling of its own)."""

    TOKEN = "fgw_contract-token"
    ORIGIN = "https://app.example"

    @classmethod
    def setUpClass(cls):
        tokens = os.path.join(ENV.dir, "contract-tokens.txt")
        with open(tokens, "w") as f:
            f.write(hashlib.sha256(cls.TOKEN.encode()).hexdigest() + "  # contract\n")
        cls.gw = start_gateway("contract_fib", args=(
            "--auth-tokens-file", tokens, "--auth-exempt", "none",
            "--cors-origins", cls.ORIGIN), ready="/healthz", ready_status=401)
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while True:  # until it sees the worker (asking with the token)
            r = harness.get(cls.gw.port, "/readyz",
                            headers={"Authorization": f"Bearer {cls.TOKEN}"})
            if r.status == 200 and r.json["consumers"] >= 1:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"never ready: {harness.show(r)}")
            time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        ENV.stop_proc(cls.gw)

    def bearer(self, token=None):
        return {"Authorization": f"Bearer {token or self.TOKEN}"}

    def direct_op(self, method, path, status, code=None, headers=None):
        """A request straight to the gateway, checked against the spec's
        response for it (prism cannot carry it)."""
        r = harness.http_request(GW.port, method, path, headers=headers or {})
        what = f"{method} {path}: {harness.show(r)}"
        self.assertEqual(r.status, status, what)
        template = template_of(path)
        resp = VALIDATOR.response_object(template, method, status)
        self.assertIsNotNone(resp, f"the spec has no {method} {template} {status}; {what}")
        self.assertEqual(VALIDATOR.check(resp, status, r.headers, r.body), [], what)
        if code is not None:
            harness.assert_problem(self, r, status, code, what)
            CODES[code] += 1
        COVERED.add((template, method.lower(), status))
        return r

    def test_401_on_every_operation(self):
        for template, path in PATHS.items():
            with self.subTest(path=path):
                r = self.via("strict", "GET", path, 401, "unauthorized")
                self.assertEqual(r.headers["WWW-Authenticate"], 'Bearer realm="rpc-gateway"')
                r = self.via("strict", "GET", path, 401, "unauthorized",
                             headers=self.bearer("fgw_wrong"))
                self.assertIn('error="invalid_token"', r.headers["WWW-Authenticate"])
                # (prism refuses another scheme itself: straight to the gateway)
                r = self.direct_op("GET", path, 401, "unauthorized",
                                   headers={"Authorization": "Basic eDp5"})
                self.assertIn('error="invalid_request"', r.headers["WWW-Authenticate"])
                for method in OTHER_METHODS:
                    self.via("strict", method, path, 401, "unauthorized")
                    self.via("strict", method, path, 405, "method_not_allowed",
                             headers=self.bearer())

    def test_with_the_token(self):
        r = self.via("strict", "GET", "/fib/10", 200, headers=self.bearer())
        self.assertEqual(r.json, {"n": 10, "fib": "55"})
        self.via("strict", "GET", "/readyz", 200, headers=self.bearer())

    def test_options(self):
        pre = {"Origin": self.ORIGIN, "Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "authorization"}
        for template, path in PATHS.items():
            with self.subTest(path=path):
                r = self.direct_op("OPTIONS", path, 204, headers=pre)
                self.assertEqual(r.headers["Access-Control-Allow-Origin"], self.ORIGIN)
                self.direct_op("OPTIONS", path, 401, "unauthorized")
                r = self.direct_op("OPTIONS", path, 405, "method_not_allowed",
                                   headers=self.bearer())
                self.assertEqual(r.headers.get("Allow"), "GET, HEAD")


class D_NoBrokerTest(Base):
    """The gateway's broker is not there at all."""

    @classmethod
    def setUpClass(cls):
        dead = f"amqp://guest:guest@127.0.0.1:{harness.free_port()}/"
        cls.gw = start_gateway("contract_fib", url=dead)

    @classmethod
    def tearDownClass(cls):
        ENV.stop_proc(cls.gw)

    def test_fib_503(self):
        r = self.via("strict", "GET", "/fib/10", 503, "broker_unavailable")
        self.assertEqual(r.headers.get("Retry-After"), "1")

    def test_readyz_503(self):
        self.via("strict", "GET", "/readyz", 503, "broker_unavailable")

    def test_healthz_and_metrics_200(self):
        self.via("strict", "GET", "/healthz", 200)
        r = self.via("strict", "GET", "/metrics", 200)
        self.assertRegex(r.body.decode(), r"(?m)^fibgw_amqp_connected 0$")


# The routes behind the routes gateway: every kind of route and answer.
ECHO_Q, UPPER_Q = "contract_echo", "contract_upper"
AUDIT_Q, FULL_Q, IMAGES_X = "contract_audit", "contract_full", "contract_images"
ECHO_WANTS = ["x-want-status", "x-want-type", "x-want-error"]
ROUTES = {"routes": [
    {"name": "fib", "kind": "fib", "method": "GET", "path": "/fib/{n}",
     "queue": "contract_fib"},
    {"name": "upper", "method": "POST", "path": "/v1/upper", "queue": UPPER_Q,
     "content_types": ["text/plain"]},
    {"name": "echo", "method": "POST", "path": "/v1/echo/{id}", "queue": ECHO_Q,
     "max_body_bytes": 64, "forward_headers": ECHO_WANTS,
     "return_headers": ["x-cache", "x-count"]},
    {"name": "echo_get", "method": "GET", "path": "/v1/echo/{id}", "queue": ECHO_Q,
     "forward_headers": ECHO_WANTS},
    {"name": "resize", "method": "PUT", "path": "/v1/images/{id}/resize/{size}",
     "exchange": IMAGES_X, "routing_key": "resize.{size}"},
    {"name": "audit", "method": "POST", "path": "/v1/audit", "queue": AUDIT_Q,
     "mode": "publish"},
    {"name": "full", "method": "POST", "path": "/v1/full", "queue": FULL_Q,
     "mode": "publish"},
]}


def routes_template_of(path):
    """The served document's path template for a request path."""
    parts = path.split("?")[0].split("/")
    for template in ROUTES_SPEC["paths"]:
        t = template.split("/")
        if len(t) == len(parts) and all(a.startswith("{") or a == b for a, b in zip(t, parts)):
            return template
    return None


class E_RoutesTest(unittest.TestCase):
    """A gateway with ROUTES, behind proxies that validate against the
    document it serves."""

    @classmethod
    def setUpClass(cls):
        with ENV.broker.connect() as conn:
            ch = conn.channel()
            ch.queue_declare(AUDIT_Q, durable=True)
            ch.queue_declare(FULL_Q, durable=True, arguments={
                "x-max-length": 1, "x-overflow": "reject-publish"})
            ch.queue_declare(ECHO_Q, durable=True)
            ch.exchange_declare(IMAGES_X, "topic", durable=True)
            ch.queue_bind(ECHO_Q, IMAGES_X, "resize.200")
        here = os.path.dirname(os.path.abspath(__file__))
        ENV.start_python("echo-worker", os.path.join(here, "..", "integration",
                                                     "echo_worker.py"), [ENV.url, ECHO_Q])
        ENV.start_python("upper-worker", os.path.join(harness.SOURCE_DIR, "examples",
                                                      "upper_worker.py"), [ENV.url, UPPER_Q])
        ENV.broker.wait_consumers(ECHO_Q, 1)
        ENV.broker.wait_consumers(UPPER_Q, 1)
        cls.gw = start_gateway("contract_fib", args=(
            "--routes", os.path.join(ENV.dir, "routes.json")), relay=ROUTES_RELAY)
        # The gateway believes a queue's consumers once it has read them.
        for q in (ECHO_Q, UPPER_Q, "contract_fib"):
            wait_metric(cls.gw, f'fibgw_queue_consumers{{queue="{q}"}}', 1)

    @classmethod
    def tearDownClass(cls):
        ENV.stop_proc(cls.gw)

    def via(self, proxy, method, path, status, code=None, headers=None, body=None):
        """As Base.via, through prism-routes-<proxy>, against the document
        the gateway serves."""
        r = harness.http_request(PRISM["routes-" + proxy].port, method, path,
                                 headers=dict(headers or {}),
                                 body=body if body is not None or method == "GET" else b"")
        what = f"{method} {path} via prism-routes-{proxy}: {harness.show(r)}"
        self.assertIsNone(r.headers.get("sl-violations"),
                          f"prism found violations: {r.headers.get('sl-violations')}; {what}")
        if isinstance(r.json, dict) and "stoplight.io/prism" in str(r.json.get("type")):
            self.fail(f"prism answered instead of the gateway: {what}")
        self.assertEqual(r.status, status, what)
        self.assertTrue(r.headers.get("X-Request-Id"), what)
        if code is not None:
            harness.assert_problem(self, r, status, code, what)
            CODES[code] += 1
        template = routes_template_of(path)
        self.assertIsNotNone(template, what)
        op = ROUTES_SPEC["paths"][template][method.lower()]
        documented = str(status) if str(status) in op["responses"] else "default"
        ROUTES_COVERED.add((template, method.lower(), documented))
        if method == "GET":  # HEAD straight to the gateway, against the document
            h = harness.http_request(self.gw.port, "HEAD", path, headers=dict(headers or {}))
            self.assertEqual(h.status, status, f"HEAD {path}: {harness.show(h)}")
            resp = ROUTES_VALIDATOR.response_object(template, "head", documented)
            self.assertIsNotNone(resp, f"the document has no HEAD {template} {documented}")
            self.assertEqual(ROUTES_VALIDATOR.check(resp, status, h.headers, h.body,
                                                    has_body=False), [], f"HEAD {path}")
            ROUTES_COVERED.add((template, "head", documented))
        return r

    def test_fib_route(self):
        r = self.via("strict", "GET", "/fib/10", 200)
        self.assertEqual(r.json, {"n": 10, "fib": "55"})

    def test_raw_200_and_the_workers_own_statuses(self):
        r = self.via("strict", "POST", "/v1/upper", 200, headers={"Content-Type": "text/plain"},
                     body=b"hello")
        self.assertEqual(r.body, b"HELLO")
        # (text: prism passes bodies on as UTF-8; test_routes.py has every byte)
        r = self.via("strict", "POST", "/v1/echo/1", 200,
                     headers={"Content-Type": "application/octet-stream"}, body=b"bytes")
        self.assertEqual((r.body, r.headers.get("x-cache")), (b"bytes", "HIT"))
        r = self.via("strict", "POST", "/v1/echo/1", 201,
                     headers={"x-want-status": "201", "x-want-type": "text/x-mine"}, body=b"x")
        self.assertEqual(harness.media_type(r), "text/x-mine")
        self.via("strict", "POST", "/v1/echo/1", 404, headers={"x-want-status": "404"},
                 body=b"x")
        r = self.via("strict", "GET", "/v1/echo/7", 200)
        self.assertEqual(r.body, b"")

    def test_raw_problems(self):
        r = self.via("strict", "POST", "/v1/echo/1", 400, "worker_rejected",
                     headers={"x-want-error": "invalid_argument"}, body=b"x")
        self.assertEqual(r.json["worker_error"]["type"], "invalid_argument")
        self.via("strict", "POST", "/v1/echo/1", 502, "worker_error",
                 headers={"x-want-error": "database_down"}, body=b"x")
        self.via("strict", "POST", "/v1/echo/1", 502, "bad_reply",
                 headers={"x-want-status": "abc"}, body=b"x")
        self.via("strict", "POST", "/v1/echo/1?timeout_ms=0", 400, "invalid_timeout", body=b"x")
        # What the document itself rules out: the lax proxy only.
        self.via("lax", "POST", "/v1/echo/1", 413, "body_too_large", body=b"x" * 65)
        r = self.via("lax", "POST", "/v1/upper", 415, "unsupported_media_type",
                     headers={"Content-Type": "application/json"}, body=b"{}")
        self.assertIn("text/plain", r.json["detail"])

    def test_405_with_the_routes_allow(self):
        r = self.via("strict", "DELETE", "/v1/echo/1", 405, "method_not_allowed")
        self.assertEqual(r.headers["Allow"], "GET, HEAD, POST")
        r = self.via("strict", "GET", "/v1/upper", 405, "method_not_allowed")
        self.assertEqual(r.headers["Allow"], "POST")

    def test_exchange_route(self):
        r = self.via("strict", "PUT", "/v1/images/cat/resize/200", 200,
                     headers={"Content-Type": "image/png"}, body=b"png")
        self.assertEqual(r.body, b"png")
        self.via("strict", "PUT", "/v1/images/cat/resize/300", 504, "no_server", body=b"x")
        self.via("lax", "PUT", "/v1/images/cat/resize/200.secret", 400, "invalid_param",
                 body=b"x")

    def test_publish_routes(self):
        r = self.via("strict", "POST", "/v1/audit", 202, headers={"X-Request-Id": "audit-7"},
                     body=b"{}")
        self.assertEqual(r.json, {"status": "accepted", "route": "audit",
                                  "request_id": "audit-7"})
        with ENV.broker.connect() as conn:
            conn.channel().queue_purge(FULL_Q)
        self.via("strict", "POST", "/v1/full", 202, body=b"1")
        r = self.via("strict", "POST", "/v1/full", 503, "not_queued", body=b"2")
        self.assertEqual(r.headers.get("Retry-After"), "1")

    def test_z_every_route_was_answered(self):
        """Each route's operation saw its success; the statuses seen were
        all documented (prism checks each against the document)."""
        for route in ROUTES["routes"]:
            if route.get("kind") == "fib":
                continue
            method = route["method"].lower()
            template = routes_template_of(route["path"])
            ok = "202" if route.get("mode") == "publish" else "200"
            with self.subTest(route=route["name"]):
                self.assertIn((template, method, ok), ROUTES_COVERED)


class Z_CoverageTest(unittest.TestCase):
    """Runs last: everything the spec documents was seen, and the proxies
    logged no violation."""

    def test_every_documented_response_was_replayed(self):
        documented = {(path, method, int(status))
                      for path, item in SPEC["paths"].items()
                      for method, op in item.items() if method != "parameters"
                      for status in op["responses"]}
        missing = sorted(documented - COVERED - UNREPLAYABLE)
        self.assertEqual(missing, [], "documented responses never replayed")
        undocumented = sorted(COVERED - documented)
        self.assertEqual(undocumented, [], "replayed responses the spec lacks")

    def test_every_problem_code_was_seen(self):
        codes = set(SPEC["components"]["schemas"]["ProblemCode"]["enum"])
        self.assertEqual(sorted(codes - set(CODES) - UNREPLAYABLE_CODES), [],
                         f"problem codes never replayed (seen: {dict(CODES)})")

    def test_prism_logged_no_violation(self):
        for p in PRISM.values():
            with self.subTest(proxy=p.name):
                self.assertEqual(p.violations_logged(), [], f"{p.name} log: {p.proc.log_path}")


if __name__ == "__main__":
    contract.need_python_modules()
    contract.npm_tools()
    harness.main()
