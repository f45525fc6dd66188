#!/usr/bin/env python3
"""test_tls.py - HTTPS on the listener (issue "Hardening": --tls-cert,
--tls-key; README, "Security").

The test makes its own CA and a server certificate for 127.0.0.1 and
localhost with the openssl command, then:
- curl --cacert gets /fib/10 over HTTPS, by address and by name, with
  TLS 1.2 and 1.3 (and without the CA, curl does not trust it);
- TLS 1.3 is negotiated, TLS 1.2 when the client goes no higher;
- TLS 1.0 and 1.1 are refused: a client offering only those (Python's
  ssl, and curl, with OpenSSL's security level lowered so that they really
  offer them) fails its handshake, while the same client completes one
  with `openssl s_server` allowing that version, which shows the refusal
  is the gateway's;
- plain HTTP to the TLS port is closed at once, not left hanging (and
  the gateway goes on serving);
- calls wait suspended while their RPC runs, then resume over TLS: 40
  concurrent calls to a slow fake worker, and several calls one after the
  other on one kept-alive TLS connection;
- a connection that never finishes its handshake, or its request head,
  is closed at --header-timeout-s without a plaintext 408 written into
  the TLS stream;
- unreadable, non-PEM, encrypted or mismatched files stop the start with
  a clear log line."""

import http.client
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SLOW_QUEUE = "fibrpc_tls_slow"
SLOW_S = 0.5
ENV = None
GW = None       # TLS, a real worker
GW_SLOW = None  # TLS, a slow fake worker, --header-timeout-s 2
FAKE = None
PKI = None      # dict of file paths
CTX = None      # ssl context trusting the test CA
HEADER_TIMEOUT_S = 2


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr}")
    return r.stdout


def make_pki(d):
    """A CA, a server certificate it signed (127.0.0.1, localhost), and a
    second key that matches nothing."""
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=fibrpc test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    openssl("req", *ec, "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt",
            cwd=d)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "other.key", cwd=d)
    openssl("pkcs8", "-topk8", "-in", "server.key", "-passout", "pass:secret",
            "-out", "encrypted.key", cwd=d)
    return {name: os.path.join(d, name) for name in
            ("ca.crt", "server.crt", "server.key", "other.key", "encrypted.key")}


def tls_args():
    return ["--tls-cert", PKI["server.crt"], "--tls-key", PKI["server.key"]]


def setUpModule():
    global ENV

    def start(env):
        global GW, GW_SLOW, FAKE, PKI, CTX
        PKI = make_pki(os.path.join(env.dir, "pki"))
        CTX = ssl.create_default_context(cafile=PKI["ca.crt"])
        env.start_worker()
        GW = env.start_gateway(args=tls_args(), ready_path="/healthz", ssl_context=CTX)
        env.wait_consumers_seen(GW)
        FAKE = harness.ReplyingFake(env.url, SLOW_QUEUE,
                                    lambda n: 0.0 if n == 0 else SLOW_S).start_and_wait()
        GW_SLOW = env.start_gateway(queue=SLOW_QUEUE, ssl_context=CTX,
                                    args=tls_args() + ["--header-timeout-s",
                                                       str(HEADER_TIMEOUT_S)])

    ENV = harness.setup_env("tls", start)


def tearDownModule():
    if FAKE is not None:
        FAKE.stop()
    harness.teardown_env(ENV)


def curl(*args):
    """curl -sS ARGS: (exit status, stdout, stderr)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args),
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def handshake(port, lowest=None, highest=None, seclevel0=False):
    """A TLS handshake with 127.0.0.1:port from Python's ssl (OpenSSL),
    trusting the test CA: the negotiated version ("TLSv1.3"), or the
    exception that ended it."""
    ctx = ssl.create_default_context(cafile=PKI["ca.crt"])
    with warnings.catch_warnings():  # TLSVersion.TLSv1 and _1 are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        if lowest is not None:
            ctx.minimum_version = lowest
        if highest is not None:
            ctx.maximum_version = highest
    if seclevel0:
        # OpenSSL 3 refuses TLS 1.0/1.1 at its default security level,
        # before any byte is sent; level 0 makes it really offer them.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.version()
    except (OSError, ssl.SSLError) as e:
        return e


OLD = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1}


class HttpsTest(unittest.TestCase):
    def test_curl_gets_fib_over_https(self):
        for host in ("127.0.0.1", "localhost"):
            for version in ("--tlsv1.2", "--tlsv1.3"):
                with self.subTest(host=host, version=version):
                    flags = [version] + (["--tls-max", "1.2"] if version == "--tlsv1.2" else [])
                    rc, out, err = curl("--cacert", PKI["ca.crt"], *flags,
                                        "-w", "\n%{http_code}", f"https://{host}:{GW.port}/fib/10")
                    self.assertEqual(rc, 0, err)
                    body, code = out.rsplit("\n", 1)
                    self.assertEqual((code, body), ("200", '{"n":10,"fib":"55"}'))
        # Without the CA the certificate is not trusted: it is the test's.
        rc, _, err = curl(f"https://127.0.0.1:{GW.port}/fib/10")
        self.assertEqual(rc, 60, err)

    def test_negotiates_tls_1_3_or_1_2(self):
        self.assertEqual(handshake(GW.port), "TLSv1.3")
        self.assertEqual(handshake(GW.port, highest=ssl.TLSVersion.TLSv1_2), "TLSv1.2")

    def test_tls_1_0_and_1_1_are_refused(self):
        for name, version in OLD.items():
            with self.subTest(version=name):
                # The control: the same client completes the handshake with
                # a server that allows this version.
                flag = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1"}[name]
                port = harness.free_port()
                server = subprocess.Popen(
                    ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-quiet",
                     "-cert", PKI["server.crt"], "-key", PKI["server.key"], flag,
                     "-cipher", "DEFAULT:@SECLEVEL=0"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                try:
                    got = None
                    deadline = time.monotonic() + 20
                    while not isinstance(got, str) and time.monotonic() < deadline:
                        got = handshake(port, version, version, seclevel0=True)
                        if not isinstance(got, str):
                            time.sleep(0.1)  # until it listens
                    self.assertEqual(got, name, "control: openssl s_server")
                finally:
                    server.kill()
                    server.wait()
                got = handshake(GW.port, version, version, seclevel0=True)
                self.assertIsInstance(got, (ssl.SSLError, ConnectionError),
                                      f"{name} against the gateway: {got!r}")
        rc, _, err = curl("--cacert", PKI["ca.crt"], "--tlsv1.0", "--tls-max", "1.1",
                          "--ciphers", "DEFAULT:@SECLEVEL=0", f"https://127.0.0.1:{GW.port}/fib/1")
        self.assertEqual(rc, 35, f"curl with TLS 1.0-1.1 only: {err}")
        # The gateway is fine afterwards.
        r = harness.get(GW.port, "/fib/12", ssl_context=CTX)
        self.assertEqual(r.json, {"n": 12, "fib": "144"})

    def test_plain_http_to_the_tls_port_is_closed_at_once(self):
        s = socket.create_connection(("127.0.0.1", GW.port), timeout=10)
        t0 = time.monotonic()
        s.sendall(b"GET /fib/10 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        s.settimeout(15)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - t0
        s.close()
        # Whatever came back (nothing, or a TLS alert) is not HTTP, and the
        # close did not wait for a timeout (--header-timeout-s is 10, the
        # idle timeout 30): a loaded machine still answers well within 5 s.
        self.assertNotIn(b"HTTP/1.1", data)
        self.assertLess(elapsed, 5.0)
        rc, out, err = curl("-w", "%{http_code}", "-o", "/dev/null",
                            f"http://127.0.0.1:{GW.port}/healthz")
        self.assertEqual(rc, 52, f"curl over plain HTTP: {rc} {out} {err}")  # empty reply
        r = harness.get(GW.port, "/fib/9", ssl_context=CTX)
        self.assertEqual(r.json, {"n": 9, "fib": "34"})


class SuspendResumeTest(unittest.TestCase):
    """Calls wait suspended while the RPC runs; resuming works over TLS."""

    def test_concurrent_calls_resume_over_tls(self):
        ns = list(range(20, 60))
        results = {}

        def call(n):
            try:
                results[n] = harness.get(GW_SLOW.port, f"/fib/{n}", ssl_context=CTX)
            except Exception as e:  # noqa: BLE001 - asserted below
                results[n] = e
        before = len(FAKE.snapshot())
        threads = [threading.Thread(target=call, args=(n,), daemon=True) for n in ns]
        for t in threads:
            t.start()
        # All of them were suspended at once, waiting for the slow worker.
        self.assertTrue(FAKE.wait_requests(before + len(ns), timeout=30))
        for t in threads:
            t.join(60)
        for n in ns:
            r = results.get(n)
            self.assertIsInstance(r, harness.Response, f"/fib/{n}: {r!r}")
            self.assertEqual((r.status, r.json), (200, {"n": n, "fib": str(harness.fib(n))}))

    def test_kept_alive_tls_connection_serves_calls_in_turn(self):
        c = http.client.HTTPSConnection("127.0.0.1", GW_SLOW.port, timeout=30, context=CTX)
        try:
            for n in (5, 6, 7):
                t0 = time.monotonic()
                c.request("GET", f"/fib/{n}")
                r = c.getresponse()
                body = r.read()
                self.assertEqual(r.status, 200, body)
                self.assertEqual(body, f'{{"n":{n},"fib":"{harness.fib(n)}"}}'.encode())
                self.assertGreaterEqual(time.monotonic() - t0, SLOW_S - 0.05,
                                        "answered before the worker replied")
        finally:
            c.close()


class HeadTimeoutTest(unittest.TestCase):
    """Over TLS only libmicrohttpd's session may write to the socket, so an
    overdue head is closed without the plaintext 408 of plain HTTP."""

    def read_until_closed(self, sock, timeout):
        sock.settimeout(timeout)
        data = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return data, True
                data += chunk
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return data, True  # closed, with or without close_notify
        except ssl.SSLError as e:  # e.g. plaintext where a TLS record belongs
            return data + f"<{e!r}>".encode(), True
        except socket.timeout:
            return data, False

    def test_no_handshake_is_closed_at_the_header_timeout(self):
        t0 = time.monotonic()  # before the gateway can have accepted it
        s = socket.create_connection(("127.0.0.1", GW_SLOW.port), timeout=10)
        data, closed = self.read_until_closed(s, HEADER_TIMEOUT_S + 15)
        s.close()
        self.assertTrue(closed, "a connection that never said hello is still open")
        self.assertEqual(data, b"", "bytes written to a connection without TLS")
        self.assertGreaterEqual(time.monotonic() - t0, HEADER_TIMEOUT_S - 0.05)

    def test_half_sent_head_is_closed_without_plaintext(self):
        raw = socket.create_connection(("127.0.0.1", GW_SLOW.port), timeout=10)
        s = CTX.wrap_socket(raw, server_hostname="localhost")
        t0 = time.monotonic()  # before the gateway can have read the line
        s.sendall(b"GET /fib/10 HTTP/1.1\r\nHost: localhost\r\nX-Slow: a")
        data, closed = self.read_until_closed(s, HEADER_TIMEOUT_S + 15)
        s.close()
        self.assertTrue(closed, "the overdue head's connection is still open")
        self.assertEqual(data, b"")
        self.assertGreaterEqual(time.monotonic() - t0, HEADER_TIMEOUT_S - 0.05)
        ev = GW_SLOW.wait_events("request_head_timeout")
        self.assertTrue(ev, GW_SLOW.log_tail())


class StartTest(unittest.TestCase):
    """Programs run here are not the Env's: exiting is what they should do."""

    def run_gateway(self, cert, key):
        argv = [harness.binary("rpc-gateway"), "--amqp-url", ENV.url,
                "--listen", f"127.0.0.1:{harness.free_port()}"]
        if cert is not None:
            argv += ["--tls-cert", cert]
        if key is not None:
            argv += ["--tls-key", key]
        p = harness.Proc(ENV._unique("rpc-gateway-start"), argv, ENV.dir)
        rc = p.wait(30)
        if rc is None:
            p.stop()
            self.fail(f"started with {cert}, {key}:\n{p.log_tail()}")
        return rc, p

    def test_bad_files_stop_the_start(self):
        missing = os.path.join(ENV.dir, "pki", "missing.pem")
        cases = [
            (PKI["server.crt"], missing, 2, "tls_file_unreadable", "No such file"),
            (missing, PKI["server.key"], 2, "tls_file_unreadable", "No such file"),
            (PKI["server.key"], PKI["server.key"], 2, "tls_file_invalid",
             "not a PEM certificate"),
            (PKI["server.crt"], PKI["server.crt"], 2, "tls_file_invalid",
             "not a PEM private key"),
            (PKI["server.crt"], PKI["encrypted.key"], 2, "tls_file_invalid", "encrypted"),
            (PKI["server.crt"], os.path.join(ENV.dir, "pki"), 2, "tls_file_unreadable",
             "Is a directory"),
            # Readable and well-formed, but not a pair: GnuTLS says so.
            (PKI["server.crt"], PKI["other.key"], 1, "listen_failed", "do not match"),
        ]
        for cert, key, want_rc, msg, want in cases:
            with self.subTest(cert=os.path.basename(cert), key=os.path.basename(key)):
                rc, p = self.run_gateway(cert, key)
                self.assertEqual(rc, want_rc, p.log_tail())
                ev = p.events(msg)
                self.assertEqual(len(ev), 1, p.log_tail())
                self.assertEqual(ev[0]["level"], "error")
                self.assertIn(want, ev[0]["error"])
                self.assertEqual(p.events("listening"), [])
        for cert, key in ((PKI["server.crt"], None), (None, PKI["server.key"])):
            rc, p = self.run_gateway(cert, key)
            self.assertEqual(rc, 2)
            self.assertIn("--tls-cert and --tls-key go together", p.log())


if __name__ == "__main__":
    harness.main()
