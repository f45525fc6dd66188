#!/usr/bin/env python3
"""test_page.py - the page at / works for a person, in headless Chromium,
against a gateway with a route file and real workers (the fib worker, the
example Python worker examples/upper_worker.py, the test echo worker), as
test_routes.py runs them:

- it lists the routes of /routes.json, each with its method and path;
- the F(n) form: type 30, submit, read 832040; type abc, submit, read the
  400 invalid_n error plainly;
- trying a raw POST route (its body, its content type) shows the worker's
  answer, the status, the time and X-Request-Id; a path parameter and
  ?timeout_ms= go into the request; a problem answer is shown as one; a
  publish route's 202;
- after some traffic the live panel, fed by /metrics, shows calls per
  second above zero (tile and chart), latency, and errors by code;
- the page asks the gateway itself and nothing elsewhere, and links to
  /openapi.yaml and /metrics;
- behind bearer tokens (the page itself exempt): the page says it needs a
  token; once one is typed in, the routes are listed and F(n) is
  computed with it (the page sent none before, so nothing worked).

Debian's chromium driven through chromedriver, spoken to in W3C WebDriver
(JSON over HTTP) with urllib: no other packages.  Screenshots (page-*.png)
are kept in <build>/test-output/browser/ (or $FIBRPC_SCREENSHOT_DIR); the
test prints where ("screenshot: PATH")."""

import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "contract"))
import contract  # noqa: E402
import harness  # noqa: E402

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-quic", "--no-first-run",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1500"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver's element key
WAIT_S = 20

CHROMIUM = CHROMEDRIVER = None
ENV = GW = DRIVER = None
GW_AUTH = None  # tokens required; the page, /metrics and the probes exempt
TOKEN = "fgw_page-test-token"


class WebDriver:
    """Just enough W3C WebDriver: one session, JSON over HTTP."""

    def __init__(self, env, chromedriver, chromium):
        self.port = harness.free_port()
        self.proc = harness.Proc("chromedriver", [chromedriver, f"--port={self.port}",
                                                  "--allowed-ips=127.0.0.1"], env.dir)
        env.procs.append(self.proc)
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=env.dir)
        self.session = None
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if not self.proc.running() or time.monotonic() > deadline:
                raise RuntimeError(f"chromedriver did not start:\n{self.proc.log_tail()}")
            time.sleep(0.1)
        caps = {"browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium,
                                       "args": CHROME_FLAGS + [f"--user-data-dir={self.profile}"]}}
        self.session = self._call("POST", "/session",
                                  {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"WebDriver {method} {path}: {e.code} "
                               f"{e.read()[:2000].decode(errors='replace')}") from None

    def s(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url):
        self.s("POST", "/url", {"url": url})

    def find(self, css):
        return self.s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css):
        return [e[ELEMENT] for e in
                self.s("POST", "/elements", {"using": "css selector", "value": css})]

    def text(self, el):
        return self.s("GET", f"/element/{el}/text")

    def attr(self, el, name):
        return self.s("GET", f"/element/{el}/attribute/{name}")

    def prop(self, el, name):
        return self.s("GET", f"/element/{el}/property/{name}")

    def type(self, el, keys):
        self.s("POST", f"/element/{el}/value", {"text": keys})

    def clear(self, el):
        self.s("POST", f"/element/{el}/clear", {})

    def click(self, el):
        self.s("POST", f"/element/{el}/click", {})

    def script(self, js, *args):
        return self.s("POST", "/execute/sync", {"script": js, "args": list(args)})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.s("GET", "/screenshot")))

    def quit(self):
        if self.session is not None:
            try:
                self.s("DELETE", "")
            finally:
                self.session = None


ECHO = os.path.join(harness.SOURCE_DIR, "tests", "integration", "echo_worker.py")
UPPER = os.path.join(harness.SOURCE_DIR, "examples", "upper_worker.py")
FIB_Q, UPPER_Q, ECHO_Q, AUDIT_Q = "page_fib", "page_upper", "page_echo", "page_audit"
ROUTES = {"routes": [
    {"name": "fib", "kind": "fib", "method": "GET", "path": "/fib/{n}", "queue": FIB_Q},
    {"name": "upper", "method": "POST", "path": "/v1/upper", "queue": UPPER_Q,
     "content_types": ["text/plain"], "max_body_bytes": 4096},
    {"name": "echo", "method": "POST", "path": "/v1/echo/{id}", "queue": ECHO_Q,
     "forward_headers": ["x-want-status"], "return_headers": ["x-cache"]},
    {"name": "echo_get", "method": "GET", "path": "/v1/echo/{id}", "queue": ECHO_Q},
    {"name": "audit", "method": "POST", "path": "/v1/audit", "queue": AUDIT_Q,
     "mode": "publish"},
]}
# The screenshots outlive the test's log directory (removed after a pass).
SHOT_DIR = os.environ.get("FIBRPC_SCREENSHOT_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(harness.BIN_DIR)), "test-output", "browser")


def setUpModule():
    global ENV, GW, DRIVER

    def start(env):
        global GW, GW_AUTH, DRIVER
        routes_file = os.path.join(env.dir, "routes.json")
        with open(routes_file, "w") as f:
            json.dump(ROUTES, f)
        with env.broker.connect() as conn:
            conn.channel().queue_declare(AUDIT_Q, durable=True)
        env.start_worker(queue=FIB_Q)
        env.start_python("upper-worker", UPPER, [env.url, UPPER_Q])
        env.start_python("echo-worker", ECHO, [env.url, ECHO_Q])
        env.broker.wait_consumers(UPPER_Q, 1)
        env.broker.wait_consumers(ECHO_Q, 1)
        GW = env.start_gateway(args=["--routes", routes_file])
        tokens = os.path.join(env.dir, "tokens.txt")
        with open(tokens, "w") as f:
            f.write(hashlib.sha256(TOKEN.encode()).hexdigest() + "\n")
        GW_AUTH = env.start_gateway(args=["--routes", routes_file,
                                          "--auth-tokens-file", tokens,
                                          "--auth-exempt", "/,/healthz,/readyz,/metrics"],
                                    ready_path="/healthz")
        DRIVER = WebDriver(env, CHROMEDRIVER, CHROMIUM)

    ENV = harness.setup_env("browser", start)


def tearDownModule():
    if DRIVER is not None:
        DRIVER.quit()
    harness.teardown_env(ENV)


def screenshot(name):
    os.makedirs(SHOT_DIR, exist_ok=True)
    path = os.path.join(SHOT_DIR, name)
    DRIVER.screenshot(path)
    shutil.copyfile(path, os.path.join(ENV.dir, name))
    print(f"screenshot: {path}", file=sys.stderr)


class PageTest(unittest.TestCase):
    def base(self):
        return f"http://127.0.0.1:{GW.port}"

    def wait_for(self, what, predicate, shows="#out", timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what}; page shows: "
                  f"{DRIVER.text(DRIVER.find(shows))!r}")

    def route(self, name):
        return f'details[data-route="{name}"]'

    def open_route(self, name):
        """Opens the route's panel (a click on its summary, as a person
        would) and returns its CSS selector."""
        sel = self.route(name)
        if DRIVER.attr(DRIVER.find(sel), "open") is None:
            DRIVER.click(DRIVER.find(sel + " > summary"))
        self.wait_for(f"route {name} open",
                      lambda: DRIVER.attr(DRIVER.find(sel), "open") is not None,
                      shows=sel)
        return sel

    def scroll_to(self, css):
        DRIVER.script("document.querySelector(arguments[0])"
                      ".scrollIntoView({block: 'start'});", css)

    def fill(self, css, text):
        field = DRIVER.find(css)
        DRIVER.clear(field)
        if text:
            DRIVER.type(field, text)

    def answer(self, sel, status):
        """Waits for the route's answer with `status`; returns its text."""
        code = sel + " .result .status .code"
        self.wait_for(f"the answer {status}",
                      lambda: DRIVER.find_all(code)
                      and DRIVER.text(DRIVER.find(code)).startswith(str(status)),
                      shows=sel)
        return DRIVER.text(DRIVER.find(sel + " .result"))

    def submit(self, n, key_enter=False):
        field = DRIVER.find("#n")
        DRIVER.clear(field)
        DRIVER.type(field, n + ("\ue007" if key_enter else ""))  # \ue007: Enter
        if not key_enter:
            DRIVER.click(DRIVER.find("#go"))

    def test_1_page_loads(self):
        DRIVER.get(self.base() + "/")
        self.assertEqual(DRIVER.s("GET", "/title"), "fib RPC gateway")
        hrefs = {DRIVER.prop(a, "href") for a in DRIVER.find_all("a")}
        self.assertIn(self.base() + "/openapi.yaml", hrefs)
        self.assertIn(self.base() + "/metrics", hrefs)

    def test_1b_routes_are_listed(self):
        items = "#routes details.route"
        self.wait_for("the route list",
                      lambda: len(DRIVER.find_all(items)) == len(ROUTES["routes"]),
                      shows="#routes")
        shown = [DRIVER.attr(e, "data-route") for e in DRIVER.find_all(items)]
        self.assertEqual(shown, [r["name"] for r in ROUTES["routes"]])
        for r in ROUTES["routes"]:
            summary = DRIVER.text(DRIVER.find(self.route(r["name"]) + " > summary"))
            self.assertIn(r["method"], summary)
            self.assertIn(r["path"], summary)
        # a body box only where a body goes
        self.assertEqual(len(DRIVER.find_all(self.route("upper") + " textarea")), 1)
        self.assertEqual(len(DRIVER.find_all(self.route("echo_get") + " textarea")), 0)

    def test_2_result_is_shown(self):
        self.submit("30")
        out = DRIVER.find("#out")
        self.wait_for("the result of F(30)",
                      lambda: DRIVER.attr(out, "class") == "ok"
                      and DRIVER.text(DRIVER.find("#value")) == "832040")
        self.assertIn("F(30)", DRIVER.text(DRIVER.find("#status")))
        screenshot("page-f30.png")
        # The page asked the API itself, and nothing anywhere else.  (The
        # gateway logs a request once its response is sent: the page may
        # show the answer before the line is written.)
        self.assertTrue(GW.wait_events("request", method="GET", path="/fib/30", status="200"),
                        "no request line for GET /fib/30 200:\n" + GW.log_tail(10))
        urls = DRIVER.script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".concat([location.href]);")
        self.assertTrue(urls, "no resources seen")
        for url in urls:
            self.assertTrue(url.startswith(self.base() + "/"), f"loaded from elsewhere: {url}")

    def test_3_error_is_shown_plainly(self):
        self.submit("abc", key_enter=True)
        out = DRIVER.find("#out")
        self.wait_for("the error for n=abc", lambda: DRIVER.attr(out, "class") == "err")
        status = DRIVER.text(DRIVER.find("#status"))
        self.assertIn("400", status)
        self.assertIn("invalid_n", status)
        self.assertIn("digits", DRIVER.text(DRIVER.find("#value")))
        self.assertTrue(GW.wait_events("request", method="GET", path="/fib/abc", status="400"),
                        "no request line for GET /fib/abc 400:\n" + GW.log_tail(10))
        screenshot("page-abc.png")

    def test_4_raw_post_route(self):
        sel = self.open_route("upper")
        self.fill(sel + " textarea[name=body]", "hello, page")
        ct = DRIVER.prop(DRIVER.find(sel + " input[name=content_type]"), "value")
        self.assertEqual(ct, "text/plain")  # the route's own type is offered
        DRIVER.click(DRIVER.find(sel + " button[type=submit]"))
        text = self.answer(sel, 200)
        self.assertEqual(DRIVER.text(DRIVER.find(sel + " .result pre.body")), "HELLO, PAGE")
        self.assertRegex(DRIVER.text(DRIVER.find(sel + " .result .time")), r"^[0-9.]+ ms$")
        rid = DRIVER.text(DRIVER.find(sel + ' .result dd[data-header="x-request-id"]'))
        self.assertRegex(rid, r"^[0-9a-f]{32}$")
        self.assertIn("text/plain", text)
        self.assertTrue(GW.wait_events("request", method="POST", path="/v1/upper",
                                       status="200", request_id=rid),
                        "no request line for POST /v1/upper 200:\n" + GW.log_tail(10))

    def test_5_path_parameter_timeout_and_a_problem(self):
        sel = self.open_route("echo")
        self.fill(sel + ' input[data-param="id"]', "a b")
        self.fill(sel + " input[name=content_type]", "application/json")
        self.fill(sel + " textarea[name=body]", '{"x": [1, 2]}')
        DRIVER.click(DRIVER.find(sel + " button[type=submit]"))
        self.answer(sel, 200)
        # the echo worker sends the body back with its type: pretty JSON
        self.assertEqual(json.loads(DRIVER.text(DRIVER.find(sel + " .result pre.body"))),
                         {"x": [1, 2]})
        self.assertIn("\n", DRIVER.prop(DRIVER.find(sel + " .result pre.body"), "textContent"))
        self.assertEqual(DRIVER.text(DRIVER.find(sel + ' .result dd[data-header="x-cache"]')),
                         "HIT")
        self.assertTrue(GW.wait_events("request", method="POST", path="/v1/echo/a b",
                                       status="200"),
                        "no request line for POST /v1/echo/a b:\n" + GW.log_tail(10))
        # ?timeout_ms=0 is refused: shown as a problem
        self.fill(sel + " input[name=timeout_ms]", "0")
        DRIVER.click(DRIVER.find(sel + " button[type=submit]"))
        self.answer(sel, 400)
        problem = DRIVER.text(DRIVER.find(sel + " .result .problem"))
        self.assertIn("invalid_timeout", problem)
        self.assertIn("Invalid timeout", problem)
        self.scroll_to(sel)
        screenshot("page-route-problem.png")
        self.fill(sel + " input[name=timeout_ms]", "")

    def test_6_publish_route(self):
        sel = self.open_route("audit")
        self.fill(sel + " textarea[name=body]", "event 1")
        DRIVER.click(DRIVER.find(sel + " button[type=submit]"))
        self.answer(sel, 202)
        self.assertEqual(json.loads(DRIVER.text(DRIVER.find(sel + " .result pre.body")))["status"],
                         "accepted")

    def test_7_live_state_after_traffic(self):
        halt = threading.Event()
        sent = {"n": 0}

        def traffic():  # until the page has seen it: no guess at how long
            i = 0
            while not halt.is_set():
                i += 1
                harness.get(GW.port, f"/fib/{i % 40}")
                harness.http_request(GW.port, "POST", "/v1/upper", body=b"load",
                                     headers={"Content-Type": "text/plain"})
                if i % 5 == 0:
                    harness.get(GW.port, "/fib/x")  # 400 invalid_n
                    harness.http_request(GW.port, "POST", "/v1/echo/1", body=b"x",
                                         headers={"x-want-status": "abc"})  # 502
                sent["n"] = i
                time.sleep(0.02)

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        try:
            # Two reads of /metrics at least 2 s apart, on a loaded machine.
            self.wait_for("calls per second above zero",
                          lambda: float(DRIVER.text(DRIVER.find("#live-calls")) or "0")
                          > 0 if DRIVER.text(DRIVER.find("#live-calls")) != "–" else False,
                          shows="#live", timeout=60)
            self.wait_for("the chart's calls",
                          lambda: float(DRIVER.attr(DRIVER.find("#chart"), "data-last-rate")
                                        or "0") > 0
                          and len(DRIVER.find_all("#chart rect.calls")) > 0,
                          shows="#live", timeout=60)
            self.wait_for("errors by code",
                          lambda: DRIVER.find_all('#errors li[data-code="invalid_n"]')
                          and DRIVER.find_all('#errors li[data-code="bad_reply"]'),
                          shows="#live", timeout=60)
            self.wait_for("latency",
                          lambda: DRIVER.text(DRIVER.find("#live-p99")).endswith(" ms"),
                          shows="#live", timeout=60)
        finally:
            halt.set()
            t.join(30)
        self.assertGreater(sent["n"], 0)
        self.assertRegex(DRIVER.text(DRIVER.find("#live-inflight")), r"^[0-9]+$")
        self.assertRegex(DRIVER.text(DRIVER.find("#live-p50")), r"^[0-9.]+ ms$")
        label = DRIVER.attr(DRIVER.find("#chart"), "aria-label")
        self.assertIn("calls per second", label)
        self.assertIn("invalid_n", label)
        # the panels open, for the picture
        self.open_route("upper")
        DRIVER.script("window.scrollTo(0, 0);")
        screenshot("page-live.png")

    def test_8_a_gateway_behind_tokens(self):
        base = f"http://127.0.0.1:{GW_AUTH.port}"
        DRIVER.get(base + "/")
        note = DRIVER.find("#routes-note")
        self.wait_for("the page to ask for a token",
                      lambda: "bearer token" in DRIVER.text(note), shows="#routes-note")
        self.assertEqual(DRIVER.find_all("#routes details.route"), [])
        self.fill("#token", TOKEN)
        DRIVER.click(DRIVER.find("#n"))  # leaving the field commits it
        self.wait_for("the route list",
                      lambda: len(DRIVER.find_all("#routes details.route"))
                      == len(ROUTES["routes"]), shows="#routes-note")
        self.submit("30")
        self.wait_for("the result of F(30)",
                      lambda: DRIVER.text(DRIVER.find("#value")) == "832040")
        self.assertTrue(GW_AUTH.wait_events("request", method="GET", path="/fib/30",
                                            status="200"), GW_AUTH.log_tail(10))
        screenshot("page-token.png")


if __name__ == "__main__":
    CHROMIUM = contract.need_program("chromium", "apt-get install chromium (scripts/deps.sh)")
    CHROMEDRIVER = contract.need_program(
        "chromedriver", "apt-get install chromium-driver (scripts/deps.sh)")
    harness.main()
