#!/usr/bin/env python3
"""test_auth.py - bearer tokens (issue "Hardening": authentication; README,
"Security").

With --auth-tokens-file, every path but the exempt ones (/healthz, /readyz
and /metrics by default, --auth-exempt) needs `Authorization: Bearer
<token>` whose SHA-256 is in the file.  Without one: 401 problem JSON
(code unauthorized) with `WWW-Authenticate: Bearer realm="rpc-gateway"`,
plus error="invalid_token" for a wrong token and error="invalid_request"
for a malformed header; before routing, so without a token nobody learns
which paths exist.  Tokens come from scripts/make-token.sh (sha256sum), so
a token that works also proves the gateway's own SHA-256 agrees with
coreutils'; the one-liner README shows makes working tokens too.  SIGHUP
re-reads the file: a good one replaces the set, a bad one is refused
(logged with its line) and the old set stays; callers whose token is in
both sets are never refused while sets are swapped under load.
A bad file at start stops the gateway (exit 2).  Without tokens, a
gateway listening beyond loopback says so loudly (level=warn
msg=unauthenticated)."""

import http.client
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

MAKE_TOKEN = os.path.join(harness.SOURCE_DIR, "scripts", "make-token.sh")
ENV = None
GW = None          # --auth-tokens-file TOKENS, default exemptions
TOKENS = None      # its file
ALICE = BOB = CAROL = None  # (token, line for the file)


def make_token(label):
    """(token, file line) from scripts/make-token.sh."""
    r = subprocess.run(["bash", MAKE_TOKEN, label], capture_output=True, text=True,
                       timeout=30, check=True)
    return r.stderr.strip(), r.stdout


def write(path, text):
    """Replaces the file whole (rename), as an editor or a secret mount does."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def setUpModule():
    global ENV

    def start(env):
        global GW, TOKENS, ALICE, BOB, CAROL
        ALICE, BOB, CAROL = make_token("alice"), make_token("bob"), make_token("carol")
        TOKENS = os.path.join(env.dir, "tokens.txt")
        write(TOKENS, "# gateway tokens\n" + ALICE[1] + "\n" + BOB[1])
        env.start_worker()
        GW = env.start_gateway(args=["--auth-tokens-file", TOKENS], ready_path="/healthz")
        env.wait_consumers_seen(GW)

    ENV = harness.setup_env("auth", start)


def tearDownModule():
    harness.teardown_env(ENV)


def raw_exchange(port, head):
    """Sends a raw request head, returns (status line, headers dict, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(head)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        return resp.status, resp.headers, resp.read()
    finally:
        s.close()


class TokenTest(unittest.TestCase):
    def assert_401(self, r, error, what):
        harness.assert_problem(self, r, 401, "unauthorized", what)
        want = 'Bearer realm="rpc-gateway"'
        if error is not None:
            want += f', error="{error}"'
        self.assertEqual(r.headers.get("WWW-Authenticate"), want, what)
        self.assertTrue(r.headers.get("X-Request-Id"), what)

    def test_valid_tokens_are_served(self):
        for token, _ in (ALICE, BOB):
            r = harness.get(GW.port, "/fib/10", headers=bearer(token))
            self.assertEqual((r.status, r.json), (200, {"n": 10, "fib": "55"}), harness.show(r))
        # The scheme is case-insensitive; HEAD works as GET.
        r = harness.get(GW.port, "/fib/11", headers={"Authorization": f"bearer {ALICE[0]}"})
        self.assertEqual(r.status, 200, harness.show(r))
        r = harness.http_request(GW.port, "HEAD", "/fib/12", headers=bearer(ALICE[0]))
        self.assertEqual((r.status, r.body), (200, b""))
        for path in ("/", "/openapi.yaml"):
            r = harness.get(GW.port, path, headers=bearer(BOB[0]))
            self.assertEqual(r.status, 200, f"{path}: {harness.show(r)}")

    def test_no_token_is_401_on_every_path_that_is_not_exempt(self):
        for method, path in (("GET", "/fib/10"), ("HEAD", "/fib/10"), ("GET", "/"),
                             ("GET", "/openapi.yaml"), ("GET", "/nope"),
                             ("POST", "/fib/10"), ("OPTIONS", "/fib/10"),
                             ("GET", "/healthz/x"), ("GET", "/metrics/")):
            with self.subTest(method=method, path=path):
                r = harness.http_request(GW.port, method, path)
                if method == "HEAD":
                    self.assertEqual((r.status, r.body), (401, b""))
                    self.assertEqual(r.headers.get("WWW-Authenticate"),
                                     'Bearer realm="rpc-gateway"')
                else:
                    self.assert_401(r, None, f"{method} {path}")
        # Behind the token, the real answers: 404, 405.
        r = harness.get(GW.port, "/nope", headers=bearer(ALICE[0]))
        harness.assert_problem(self, r, 404, "not_found")
        r = harness.http_request(GW.port, "POST", "/fib/1", headers=bearer(ALICE[0]))
        harness.assert_problem(self, r, 405, "method_not_allowed")
        self.assertEqual(r.headers.get("Allow"), "GET, HEAD")

    def test_exempt_paths_need_no_token(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            r = harness.get(GW.port, path)
            self.assertEqual(r.status, 200, f"{path}: {harness.show(r)}")
        # Even with a wrong or malformed header: it is not looked at.
        r = harness.get(GW.port, "/healthz", headers={"Authorization": "Basic eDp5"})
        self.assertEqual(r.status, 200)

    def test_wrong_token_is_401_invalid_token(self):
        for token in ("fgw_nope", ALICE[0] + "x", ALICE[0][:-1], ALICE[0].upper(),
                      ALICE[1].split()[0]):  # its hash is not the token
            with self.subTest(token=token):
                r = harness.get(GW.port, "/fib/10", headers=bearer(token))
                self.assert_401(r, "invalid_token", token)
                self.assertEqual(r.json["detail"], "the bearer token is not valid")

    def test_malformed_header_is_401_invalid_request(self):
        for value in ("Basic YWxpY2U6c2VjcmV0", "Bearer", f"Bearer{ALICE[0]}",
                      f"Bearer {ALICE[0]} x", f'Bearer "{ALICE[0]}"', "Bearer a,b",
                      "Bearer " + "a" * 1025):
            with self.subTest(value=value[:40]):
                r = harness.get(GW.port, "/fib/10", headers={"Authorization": value})
                self.assert_401(r, "invalid_request", value[:40])
        # Two Authorization headers, both valid: which one counts would be
        # a guess, so neither does.
        status, headers, body = raw_exchange(
            GW.port, (f"GET /fib/10 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ALICE[0]}\r\n"
                      f"Authorization: Bearer {BOB[0]}\r\nConnection: close\r\n\r\n").encode())
        self.assertEqual(status, 401, body)
        self.assertIn('error="invalid_request"', headers.get("WWW-Authenticate"))

    def test_refusals_are_counted_and_logged(self):
        def problems():
            r = harness.get(GW.port, "/metrics")
            for line in r.body.decode().splitlines():
                if line.startswith('fibgw_http_problems_total{code="unauthorized"}'):
                    return int(float(line.split()[-1]))
            return 0
        before = problems()
        rid = "auth-refused-1"
        harness.get(GW.port, "/fib/3", headers={"X-Request-Id": rid})
        self.assertEqual(problems(), before + 1)
        ev = GW.wait_events("request", request_id=rid)
        self.assertEqual([e["status"] for e in ev], ["401"])
        # The token never reaches the log.
        harness.get(GW.port, "/fib/3", headers=bearer("fgw_secret-in-log-check"))
        GW.wait_events("request", count=1, status="401")
        self.assertNotIn("fgw_secret-in-log-check", GW.log())
        self.assertNotIn(ALICE[0], GW.log())


class ReloadTest(unittest.TestCase):
    """SIGHUP re-reads the token file.  Runs on a gateway of its own, so the
    other tests' tokens stay as they are."""

    def setUp(self):
        self.path = os.path.join(ENV.dir, f"reload-{self._testMethodName}.txt")
        write(self.path, ALICE[1] + BOB[1])
        self.gw = ENV.start_gateway(args=["--auth-tokens-file", self.path],
                                    ready_path="/healthz")
        ENV.wait_consumers_seen(self.gw)  # else calls get 503 or 504

    def tearDown(self):
        ENV.stop_proc(self.gw)

    def status(self, token):
        return harness.get(self.gw.port, "/fib/1",
                           headers=bearer(token)).status

    def hup(self, msg, count):
        """SIGHUP, then wait for the count-th msg line (reloaded or
        reload_refused): main logs it before the HTTP thread may see the set."""
        self.gw.popen.send_signal(signal.SIGHUP)
        events = self.gw.wait_events(msg, count=count)
        self.assertEqual(len(events), count, f"no msg={msg} after SIGHUP:\n"
                                             f"{self.gw.log_tail()}")
        return events[-1]

    def test_sighup_swaps_the_set(self):
        self.assertEqual((self.status(ALICE[0]), self.status(BOB[0]), self.status(CAROL[0])),
                         (200, 200, 401))
        write(self.path, BOB[1] + "# alice left\n" + CAROL[1])
        ev = self.hup("reloaded", 1)
        self.assertEqual((ev["what"], ev["tokens"]), ("auth_tokens", "2"))
        self.assertEqual((self.status(ALICE[0]), self.status(BOB[0]), self.status(CAROL[0])),
                         (401, 200, 200))

    def test_bad_file_is_refused_and_the_old_set_stays(self):
        bad = {
            "a token instead of its hash": (BOB[1] + ALICE[0] + "\n", "line 2:"),
            "uppercase": (BOB[1].upper(), "line 1: uppercase"),
            "empty": ("", "no token hash"),
            "only comments": ("# nobody\n\n", "no token hash"),
        }
        for n, (what, (text, want)) in enumerate(bad.items(), start=1):
            with self.subTest(what=what):
                write(self.path, text)
                ev = self.hup("reload_refused", n)
                self.assertEqual(ev["level"], "error")
                self.assertIn(want, ev["error"])
                self.assertEqual(ev["file"], self.path)
                self.assertEqual((self.status(ALICE[0]), self.status(BOB[0])), (200, 200),
                                 "the old set must stay")
        os.unlink(self.path)
        ev = self.hup("reload_refused", len(bad) + 1)
        self.assertIn("No such file", ev["error"])
        self.assertEqual(self.status(ALICE[0]), 200)
        self.assertTrue(self.gw.running())
        self.assertEqual(self.gw.events("reloaded"), [])

    def test_no_caller_in_both_sets_is_ever_refused_while_reloading(self):
        """Sets {alice, bob} and {alice, carol} swapped 40 times while four
        threads call with alice's token: a request that saw no set, an
        empty one or half of one would be refused."""
        sets = [ALICE[1] + BOB[1], ALICE[1] + CAROL[1]]
        stop = threading.Event()
        results = []
        lock = threading.Lock()

        def caller():
            c = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=30)
            while not stop.is_set():
                c.request("GET", "/fib/2",
                          headers=bearer(ALICE[0]))
                r = c.getresponse()
                r.read()
                with lock:
                    results.append(r.status)
            c.close()
        threads = [threading.Thread(target=caller, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(40):
                with lock:
                    seen = len(results)
                write(self.path, sets[i % 2])
                self.hup("reloaded", i + 1)
                # Calls answered on both sides of every swap (10 s only
                # keeps a stuck gateway from hanging the test).
                deadline = time.monotonic() + 10
                while len(results) < seen + 2 and time.monotonic() < deadline:
                    time.sleep(0.001)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertGreaterEqual(len(results), 80, "calls did not go on during the reloads")
        self.assertEqual(sorted(set(results)), [200],
                         f"{results.count(401)} of {len(results)} refused")
        # And the last set is the one in force.
        self.assertEqual((self.status(BOB[0]), self.status(CAROL[0])), (401, 200))


class MakeTokenTest(unittest.TestCase):
    def test_readme_one_liner_makes_a_working_token(self):
        """The one-liner README's "Security" shows, run as it is there."""
        with open(os.path.join(harness.SOURCE_DIR, "README.md")) as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith("t=fgw_$(openssl")]
        self.assertEqual(len(lines), 1, "the one-liner is not in README.md")
        d = os.path.join(ENV.dir, "one-liner")
        os.makedirs(d)
        r = subprocess.run(["bash", "-c", lines[0]], cwd=d, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        token = r.stdout.strip()
        self.assertRegex(token, r"^fgw_[A-Za-z0-9_-]{43}$")
        path = os.path.join(d, "tokens.txt")
        gw = ENV.start_gateway(args=["--auth-tokens-file", path], ready_path="/healthz")
        try:
            ENV.wait_consumers_seen(gw)
            self.assertEqual(harness.get(gw.port, "/fib/1", headers=bearer(token)).status, 200)
            self.assertEqual(harness.get(gw.port, "/fib/1").status, 401)
        finally:
            ENV.stop_proc(gw)


class ExemptTest(unittest.TestCase):
    def test_exemptions_are_configurable(self):
        gw = ENV.start_gateway(args=["--auth-tokens-file", TOKENS, "--auth-exempt", "none"],
                               ready_path="/healthz", ready_status=401)
        try:
            for path in ("/healthz", "/readyz", "/metrics"):
                self.assertEqual(harness.get(gw.port, path).status, 401, path)
            self.assertEqual(harness.get(gw.port, "/healthz", headers=bearer(BOB[0])).status,
                             200)
        finally:
            ENV.stop_proc(gw)
        gw = ENV.start_gateway(args=["--auth-tokens-file", TOKENS,
                                     "--auth-exempt", "/, /healthz"], ready_path="/healthz")
        try:
            self.assertEqual(harness.get(gw.port, "/").status, 200)
            self.assertEqual(harness.get(gw.port, "/metrics").status, 401)
            self.assertEqual(harness.get(gw.port, "/fib/1").status, 401)
        finally:
            ENV.stop_proc(gw)


class StartTest(unittest.TestCase):
    """Programs run here are not the Env's: exiting is what they should do."""

    def run_gateway(self, args, listen="127.0.0.1", wait_for=None):
        """Starts the gateway; with wait_for, stops it once that log line is
        in.  Returns (exit status, log)."""
        argv = [harness.binary("rpc-gateway"), "--amqp-url", ENV.url,
                "--listen", f"{listen}:{harness.free_port()}"] + list(args)
        p = harness.Proc(ENV._unique("rpc-gateway-start"), argv, ENV.dir)
        if wait_for is not None:
            p.wait_events(wait_for, timeout=harness.READY_TIMEOUT)
            p.stop()
        rc = p.wait(30)
        self.assertIsNotNone(rc, "still running")
        return rc, p

    def test_bad_token_file_stops_the_start(self):
        bad = os.path.join(ENV.dir, "bad-tokens.txt")
        write(bad, ALICE[1] + "not-a-hash\n")
        for path, want in ((bad, "line 2: character"),
                           (os.path.join(ENV.dir, "missing.txt"), "No such file")):
            rc, p = self.run_gateway(["--auth-tokens-file", path])
            self.assertEqual(rc, 2, p.log_tail())
            ev = p.events("auth_tokens_invalid")
            self.assertEqual(len(ev), 1, p.log_tail())
            self.assertIn(want, ev[0]["error"])
            self.assertEqual(p.events("listening"), [])

    def test_bad_exempt_list_is_a_usage_error(self):
        rc, p = self.run_gateway(["--auth-exempt", "healthz"])
        self.assertEqual(rc, 2)
        self.assertIn("--auth-exempt: 'healthz' is not a path", p.log())

    def test_loud_line_when_open_beyond_loopback(self):
        # Bound to every interface for a moment; no traffic is sent to it.
        rc, p = self.run_gateway([], listen="0.0.0.0", wait_for="listening")
        self.assertEqual(rc, 0, p.log_tail())
        ev = p.events("unauthenticated")
        self.assertEqual(len(ev), 1, p.log_tail())
        self.assertEqual(ev[0]["level"], "warn")
        self.assertIn("--auth-tokens-file", ev[0]["detail"])
        # Not with tokens, and not on loopback.
        rc, p = self.run_gateway(["--auth-tokens-file", TOKENS], listen="0.0.0.0",
                                 wait_for="listening")
        self.assertEqual((rc, p.events("unauthenticated")), (0, []))
        self.assertEqual(p.events("listening")[0]["auth"], "tokens")
        rc, p = self.run_gateway([], listen="127.0.0.1", wait_for="listening")
        self.assertEqual((rc, p.events("unauthenticated")), (0, []))
        self.assertEqual(p.events("listening")[0]["auth"], "off")


if __name__ == "__main__":
    harness.main()
