#!/usr/bin/env python3
"""test_page.py - the page at / works for a person, in headless Chromium:
type 30, submit, read 832040; type abc, submit, read the 400 invalid_n error
plainly.  The page's requests go to the API itself, it loads nothing from
elsewhere, and it links to /openapi.yaml and /metrics.

Debian's chromium driven through chromedriver, spoken to in W3C WebDriver
(JSON over HTTP) with urllib: no other packages.  A screenshot of the result
and of the error are kept in the test's log directory, and copied to
$FIBRPC_SCREENSHOT_DIR when that is set."""

import base64
import json
import os
import shutil
import sys
import tempfile
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
                "--disable-dev-shm-usage", "--window-size=900,700"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver's element key
WAIT_S = 20

CHROMIUM = CHROMEDRIVER = None
ENV = GW = DRIVER = None


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


def setUpModule():
    global ENV, GW, DRIVER

    def start(env):
        global GW, DRIVER
        env.start_worker()
        GW = env.start_gateway()
        DRIVER = WebDriver(env, CHROMEDRIVER, CHROMIUM)

    ENV = harness.setup_env("browser", start)


def tearDownModule():
    if DRIVER is not None:
        DRIVER.quit()
    harness.teardown_env(ENV)


def screenshot(name):
    path = os.path.join(ENV.dir, name)
    DRIVER.screenshot(path)
    if os.environ.get("FIBRPC_SCREENSHOT_DIR"):
        shutil.copyfile(path, os.path.join(os.environ["FIBRPC_SCREENSHOT_DIR"], name))


class PageTest(unittest.TestCase):
    def base(self):
        return f"http://127.0.0.1:{GW.port}"

    def wait_for(self, what, predicate):
        deadline = time.monotonic() + WAIT_S
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what}; page shows: "
                  f"{DRIVER.text(DRIVER.find('#out'))!r}")

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


if __name__ == "__main__":
    CHROMIUM = contract.need_program("chromium", "apt-get install chromium (scripts/deps.sh)")
    CHROMEDRIVER = contract.need_program(
        "chromedriver", "apt-get install chromium-driver (scripts/deps.sh)")
    harness.main()
