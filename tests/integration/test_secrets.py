#!/usr/bin/env python3
"""test_secrets.py - the broker password off the command line: both
programs read the RabbitMQ URL from --amqp-url-file / AMQP_URL_FILE (the
Docker secrets `_FILE` convention), serve with it, and keep it out of
/proc/PID/cmdline, which every local user can read.  A URL given twice, or
a file that cannot be used, is refused at start (exit 2) without showing
the URL."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

QUEUE = "fibrpc_secrets"
ENV = None
URL_FILE = None
WORKER = None
GW = None


def setUpModule():
    global ENV

    def start(env):
        global URL_FILE, WORKER, GW
        URL_FILE = os.path.join(env.dir, "amqp_url.secret")
        with open(URL_FILE, "w") as f:
            f.write(env.url + "\n")  # as `echo URL > file` writes it
        WORKER = harness.Proc(env._unique("fib-worker"),
                              [harness.binary("fib-worker"), "--queue", QUEUE,
                               "--amqp-url-file", URL_FILE], env.dir)
        env.procs.append(WORKER)
        env.broker.wait_consumers(QUEUE, 1, procs=[WORKER])
        port = harness.free_port()
        GW = harness.Proc(env._unique("rpc-gateway"),
                          [harness.binary("rpc-gateway"), "--queue", QUEUE,
                           "--listen", f"127.0.0.1:{port}"], env.dir,
                          env={"AMQP_URL_FILE": URL_FILE})
        GW.port = port
        env.procs.append(GW)
        env.wait_http(GW, "/fib/0", 200)

    ENV = harness.setup_env("secrets", start)


def tearDownModule():
    harness.teardown_env(ENV)


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def run(prog, args, env=None):
    return subprocess.run([harness.binary(prog), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30,
                          env=harness.child_env(env))


class SecretsTest(unittest.TestCase):
    def test_served_with_the_url_from_a_file(self):
        r = harness.get(GW.port, "/fib/20")
        self.assertEqual(r.json, {"n": 20, "fib": "6765"}, harness.show(r))

    def test_password_not_in_cmdline(self):
        password = ENV.url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
        self.assertTrue(password)
        for p in (WORKER, GW):
            with self.subTest(prog=p.name):
                self.assertNotIn(password.encode(), cmdline(p.pid))
                self.assertNotIn(ENV.url.encode(), cmdline(p.pid))
        # ...and not in their logs either.
        for p in (WORKER, GW):
            self.assertNotIn(f":{password}@", p.log())

    def test_bad_url_files_refused(self):
        empty = os.path.join(ENV.dir, "empty.secret")
        open(empty, "w").close()
        missing = os.path.join(ENV.dir, "missing.secret")
        big = os.path.join(ENV.dir, "big.secret")
        with open(big, "w") as f:
            f.write("amqp://u:p@h/" + "x" * 5000)
        secret_url = "amqp://someone:s3cr3t-pw@127.0.0.1:1/"
        cases = [
            (["--amqp-url-file", empty], None),
            (["--amqp-url-file", missing], None),
            (["--amqp-url-file", big], None),
            (["--amqp-url-file", URL_FILE, "--amqp-url", secret_url], None),
            (["--amqp-url-file", URL_FILE], {"AMQP_URL": secret_url}),
        ]
        for prog in ("rpc-gateway", "fib-worker"):
            for args, env in cases:
                with self.subTest(prog=prog, args=args, env=env):
                    p = run(prog, args + ["--listen", "127.0.0.1:1"] if prog == "rpc-gateway"
                            else args, env)
                    self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
                    self.assertTrue(p.stderr.strip(), "no reason given")
                    self.assertNotIn("s3cr3t-pw", p.stderr)
                    self.assertNotIn(ENV.url, p.stderr)

    def test_help_names_the_flag(self):
        for prog in ("rpc-gateway", "fib-worker"):
            p = run(prog, ["--help"])
            self.assertEqual(p.returncode, 0)
            self.assertIn("--amqp-url-file=FILE", p.stdout)
            self.assertIn("[AMQP_URL_FILE]", p.stdout)


if __name__ == "__main__":
    harness.main()
