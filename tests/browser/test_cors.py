#!/usr/bin/env python3
"""test_cors.py - a page on another origin calls the API from headless
Chromium (--cors-origins and bearer tokens; README, "Security").

A plain page is served from its own port.  Opened as
http://127.0.0.1:<port> (listed in --cors-origins) its fetch() with an
Authorization header makes Chromium send a preflight, which the gateway
answers without a token; then the call itself is made and the page reads
the answer and the X-Request-Id header (exposed), and, without a token, the
401 problem JSON.  Opened as http://localhost:<port> (another origin, not
listed) the browser refuses: fetch fails and the call itself never reaches
the gateway."""

import hashlib
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "contract"))
import contract  # noqa: E402
import harness  # noqa: E402
from test_page import WebDriver  # noqa: E402

TOKEN = "fgw_browser-cors-token"
CHROMIUM = CHROMEDRIVER = None
ENV = GW = DRIVER = PAGE_PORT = None

FETCH = """
const [url, headers, done] = arguments;
fetch(url, {headers: headers}).then(async r => done({
    status: r.status, request_id: r.headers.get('X-Request-Id'), body: await r.text()
})).catch(e => done({error: String(e)}));
"""


def setUpModule():
    global ENV

    def start(env):
        global GW, DRIVER, PAGE_PORT
        page_dir = os.path.join(env.dir, "page")
        os.makedirs(page_dir)
        with open(os.path.join(page_dir, "index.html"), "w") as f:
            f.write("<!doctype html><title>other origin</title><p>a page elsewhere</p>\n")
        PAGE_PORT = harness.free_port()
        env.procs.append(harness.Proc("page-server", [
            harness.SYSTEM_PYTHON, "-m", "http.server", "--bind", "127.0.0.1",
            "--directory", page_dir, str(PAGE_PORT)], env.dir))
        tokens = os.path.join(env.dir, "tokens.txt")
        with open(tokens, "w") as f:
            f.write(hashlib.sha256(TOKEN.encode()).hexdigest() + "\n")
        env.start_worker()
        GW = env.start_gateway(args=["--cors-origins", f"http://127.0.0.1:{PAGE_PORT}",
                                     "--auth-tokens-file", tokens], ready_path="/healthz")
        env.wait_consumers_seen(GW)
        DRIVER = WebDriver(env, CHROMEDRIVER, CHROMIUM)

    ENV = harness.setup_env("browser-cors", start)


def tearDownModule():
    if DRIVER is not None:
        DRIVER.quit()
    harness.teardown_env(ENV)


class CrossOriginTest(unittest.TestCase):
    def open_page(self, host):
        deadline = time.monotonic() + 20
        while True:  # the page server may still be starting
            DRIVER.get(f"http://{host}:{PAGE_PORT}/")
            if DRIVER.s("GET", "/title") == "other origin":
                return
            self.assertLess(time.monotonic(), deadline, "the page did not load")
            time.sleep(0.2)

    def fetch(self, path, headers):
        return DRIVER.s("POST", "/execute/async",
                        {"script": FETCH,
                         "args": [f"http://127.0.0.1:{GW.port}{path}", headers]})

    def test_listed_origin_calls_the_api(self):
        self.open_page("127.0.0.1")
        got = self.fetch("/fib/30", {"Authorization": f"Bearer {TOKEN}",
                                     "X-Request-Id": "browser-cors-1"})
        self.assertEqual(got.get("status"), 200, got)
        self.assertEqual(got["body"], '{"n":30,"fib":"832040"}')
        self.assertEqual(got["request_id"], "browser-cors-1")  # exposed to the page
        # Chromium asked first (Authorization is not a simple header).
        pre = GW.wait_events("request", method="OPTIONS", path="/fib/30", status="204")
        self.assertTrue(pre, GW.log_tail())
        # Without a token the page still reads why.
        got = self.fetch("/fib/30", {"X-Request-Id": "browser-cors-2"})
        self.assertEqual(got.get("status"), 401, got)
        self.assertIn('"code":"unauthorized"', got["body"])

    def test_other_origin_is_refused_by_the_browser(self):
        self.open_page("localhost")
        got = self.fetch("/fib/31", {"Authorization": f"Bearer {TOKEN}",
                                     "X-Request-Id": "browser-cors-3"})
        self.assertIn("error", got, got)
        self.assertIn("Failed to fetch", got["error"])
        # The call itself was never made: only its preflight came, refused.
        GW.wait_events("request", method="OPTIONS", path="/fib/31")
        calls = [e for e in GW.events("request")
                 if e.get("path") == "/fib/31" and e.get("method") == "GET"]
        self.assertEqual(calls, [])


if __name__ == "__main__":
    CHROMIUM = contract.need_program("chromium", "apt-get install chromium (scripts/deps.sh)")
    CHROMEDRIVER = contract.need_program(
        "chromedriver", "apt-get install chromium-driver (scripts/deps.sh)")
    harness.main()
