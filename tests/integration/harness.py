"""harness.py - what every integration test needs: a private RabbitMQ node
(scripts/broker.sh), fib-worker and rpc-gateway subprocesses, HTTP helpers.

Python stdlib plus pika (Debian's python3-pika).  One Env per test file,
created in setUpModule; every process it starts is stopped again, also when a
test or setUpModule fails, the interpreter is interrupted, or it is killed
(the programs get SIGKILL through PR_SET_PDEATHSIG, a watchdog stops the node).
Main thread only, except where a function says otherwise.
"""

import atexit
import collections
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# --------------------------------------------------------------------- python

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, the one python3-pika is for

try:
    import pika
    import pika.exceptions
except ImportError:  # e.g. a pyenv python first on PATH: rerun under Debian's
    if (os.path.exists(SYSTEM_PYTHON)
            and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
            and not os.environ.get("FIBRPC_REEXECED")):
        os.environ["FIBRPC_REEXECED"] = "1"
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
    sys.exit("integration tests need pika: apt-get install python3-pika "
             "(and run them with /usr/bin/python3)")

# F(100000) has 20899 digits; Python >= 3.11 refuses int<->str beyond 4300.
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

# --------------------------------------------------------------------- paths

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("FIBRPC_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.environ.get("FIBRPC_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")
BROKER_SH = os.path.join(SOURCE_DIR, "scripts", "broker.sh")
TUTORIAL_DIR = os.path.join(HERE, "tutorial")

# Generous bounds: the suite also runs under ASan on a loaded 2-core machine.
READY_TIMEOUT = float(os.environ.get("FIBRPC_READY_TIMEOUT", "30"))
HTTP_TIMEOUT = 30.0


def binary(name):
    """Path of build/bin/<name>; raises a clear error when it was not built."""
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} not found or not executable: build first "
                           f"(cmake --build build), or set FIBRPC_BIN_DIR")
    return path


# --------------------------------------------------------------------- fib

def fib(n):
    """F(n) by fast doubling on Python ints: independent of the worker's GMP code."""
    def pair(k):  # (F(k), F(k+1))
        if k == 0:
            return 0, 1
        a, b = pair(k >> 1)
        c = a * (2 * b - a)
        d = a * a + b * b
        return (d, c + d) if k & 1 else (c, d)
    return pair(n)[0]


# --------------------------------------------------------------------- misc

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(collections.deque(f, lines))
    except OSError as e:
        return f"<{e}>\n"


# Config the programs might take from the environment: tests pass flags, and a
# developer's own AMQP_URL or RPC_QUEUE must not leak into a test.
_ENV_PREFIXES = ("AMQP_", "GATEWAY_", "RPC_", "WORKER_", "FIB_")


def child_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.update(extra or {})
    return env


# Programs get SIGKILL when the test process dies (PR_SET_PDEATHSIG; note: it
# fires when the *thread* that started them ends, so start them from the main
# thread).  util-linux's setpriv sets it without running Python code between
# fork and exec, which is unsafe while other threads (FakeConsumer) run.
_SETPRIV = shutil.which("setpriv")
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _popen_args(argv):
    if _SETPRIV:
        return [_SETPRIV, "--pdeathsig", "KILL", "--"] + list(argv), None
    return list(argv), _die_with_parent


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "WARNING: ThreadSanitizer")

# --------------------------------------------------------------------- processes


class Proc:
    """A program under test; stdout and stderr go to <log_dir>/<name>.log."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(log_dir, name + ".log")
        self.stopped_by_us = False
        self.killed = False
        self.checked = False  # problems() already collected by Env
        args, preexec = _popen_args(argv)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, env=child_env(env),
                                          preexec_fn=preexec)

    @property
    def pid(self):
        return self.popen.pid

    def running(self):
        return self.popen.poll() is None

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def log_tail(self, lines=40):
        return tail(self.log_path, lines)

    def describe(self):
        return f"{self.name} (pid {self.pid}): {' '.join(self.argv)}"

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout` s.  Returns the exit status."""
        if self.running():
            self.stopped_by_us = True
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = timeout
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def signal(self, sig):
        """Sends `sig` as part of a test: the exit it causes is expected, so
        teardown does not report it (an exit status other than 0 after
        SIGTERM or SIGINT still counts; a SIGKILLed process is not checked)."""
        self.stopped_by_us = True
        if sig == signal.SIGKILL:
            self.checked = True
        self.popen.send_signal(sig)

    def wait(self, timeout):
        """Exit status, or None when it still runs after `timeout` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def cpu_ticks(self):
        """User + system CPU time used so far, in clock ticks (0 once gone)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        return int(fields[11]) + int(fields[12])  # utime, stime

    def events(self, msg=None):
        """The program's logfmt log lines as dicts (key -> value, quotes
        removed), optionally only those with msg=`msg`."""
        out = []
        for line in self.log().splitlines():
            ev = parse_logfmt(line)
            if ev and (msg is None or ev.get("msg") == msg):
                out.append(ev)
        return out

    def wait_events(self, msg, count=1, timeout=10.0, **match):
        """events(msg) whose fields equal `match`, once there are at least
        `count` (see the module function wait_events)."""
        return [e for _, e in wait_events([self], msg, count, timeout, **match)]

    def problems(self):
        """What went wrong with this process, as text lines (after stop())."""
        out = []
        rc = self.popen.returncode
        if self.killed:
            out.append(f"{self.name} did not exit within {self.killed:g} s of SIGTERM "
                       "and was killed")
        elif rc is not None and not self.stopped_by_us:
            out.append(f"{self.name} exited on its own with status {rc}")
        elif rc not in (None, 0, -signal.SIGTERM):
            out.append(f"{self.name} exited with status {rc} after SIGTERM")
        log = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                out.append(f"{self.name}: sanitizer report ({marker!r}) in {self.log_path}")
                break
        return out


def wait_events(procs, msg, count=1, timeout=10.0, **match):
    """[(proc, event)] of the msg=`msg` events of `procs` whose fields equal
    `match`, once there are at least `count` of them all told (or whatever
    there is after `timeout` s: the caller asserts).  Both programs write a
    call's log line only after its answer is on the way (the gateway once
    the HTTP response is sent, the worker once its reply is published and
    acked), so a test that already has the answer may be ahead of the line."""
    deadline = time.monotonic() + timeout
    while True:
        found = [(p, e) for p in procs for e in p.events(msg)
                 if all(e.get(k) == v for k, v in match.items())]
        if len(found) >= count or time.monotonic() >= deadline:
            return found
        time.sleep(0.02)


# --------------------------------------------------------------------- broker


class Broker:
    """A private RabbitMQ node started with scripts/broker.sh in `state_dir`."""

    def __init__(self, state_dir):
        self.dir = state_dir
        self.url = None
        self._watchdog = None

    def start(self):
        t0 = time.monotonic()
        r = subprocess.run(["bash", BROKER_SH, "start", self.dir], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            self.stop()
            raise RuntimeError(f"scripts/broker.sh start failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}")
        self.url = r.stdout.strip().splitlines()[-1]
        self.start_seconds = time.monotonic() - t0
        # Should this interpreter be killed outright, stop the node anyway.
        self._watchdog = subprocess.Popen(
            ["bash", "-c", 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
                           'exec bash "$2" stop "$3"', "watchdog",
             str(os.getpid()), BROKER_SH, self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        return self.url

    def stop(self):
        """Stops the node; returns a list of problems (empty when all is well)."""
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        r = subprocess.run(["bash", BROKER_SH, "stop", self.dir], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        self.url = None
        if r.returncode != 0:
            return [f"scripts/broker.sh stop failed ({r.returncode}): {r.stdout}{r.stderr}"]
        return []

    def stop_node(self):
        """Stops the node (scripts/broker.sh stop) but keeps its state, its
        ports and .url, for restart().  Raises when the stop fails."""
        r = subprocess.run(["bash", BROKER_SH, "stop", self.dir], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/broker.sh stop failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}")

    def kill_node(self):
        """SIGKILLs the node's Erlang VM: a crash, not a shutdown.  Returns
        its pid.  restart() cleans up what is left (epmd and helpers)."""
        with open(os.path.join(self.dir, "rabbit.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGKILL)
        return pid

    def restart(self):
        """Starts the node again on the same ports with the same data
        (scripts/broker.sh restart); returns seconds until it accepted AMQP."""
        t0 = time.monotonic()
        r = subprocess.run(["bash", BROKER_SH, "restart", self.dir], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/broker.sh restart failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}")
        url = r.stdout.strip().splitlines()[-1]
        if url != self.url:
            raise RuntimeError(f"node came back as {url}, not {self.url}")
        return time.monotonic() - t0

    def ctl(self, *args, timeout=60):
        """Runs rabbitmqctl ARGS against this node; returns its stdout.
        Raises on failure."""
        r = subprocess.run(["bash", BROKER_SH, "ctl", self.dir] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}")
        return r.stdout

    def log_tail(self, lines=15):
        """The node's last warnings and errors."""
        path = os.path.join(self.dir, "log", "rabbit.log")
        try:
            with open(path, "r", errors="replace") as f:
                bad = [ln for ln in f if "[error]" in ln or "[warning]" in ln]
        except OSError as e:
            return f"<{e}>\n"
        return "".join(bad[-lines:]) or "(no warnings or errors)\n"

    # AMQP helpers: one short-lived connection per call (main thread).

    def connect(self):
        params = pika.URLParameters(self.url)
        params.connection_attempts = 3
        params.retry_delay = 0.5
        return pika.BlockingConnection(params)

    def queue_info(self, queue):
        """(message_count, consumer_count), or None when the queue does not exist."""
        conn = self.connect()
        try:
            ok = conn.channel().queue_declare(queue, passive=True)
            return ok.method.message_count, ok.method.consumer_count
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                return None
            raise
        finally:
            if conn.is_open:
                conn.close()

    def declare_queue(self, queue, durable=True):
        """Declares `queue` as fib-worker does (durable by default)."""
        conn = self.connect()
        try:
            conn.channel().queue_declare(queue, durable=durable)
        finally:
            conn.close()

    def delete_queue(self, queue):
        conn = self.connect()
        try:
            conn.channel().queue_delete(queue)
        finally:
            if conn.is_open:
                conn.close()

    def wait_consumers(self, queue, count, timeout=READY_TIMEOUT, procs=()):
        """Waits until `queue` exists with at least `count` consumers.  Fails
        early, with their logs, when one of `procs` exits meanwhile."""
        deadline = time.monotonic() + timeout
        info = None
        while time.monotonic() < deadline:
            info = self.queue_info(queue)
            if info is not None and info[1] >= count:
                return
            for p in procs:
                if not p.running():
                    raise RuntimeError(f"{p.describe()} exited with status "
                                       f"{p.popen.returncode} while starting:\n{p.log_tail()}")
            time.sleep(0.05)
        logs = "".join(f"--- {p.name}:\n{p.log_tail()}" for p in procs)
        raise RuntimeError(f"queue {queue!r} did not get {count} consumer(s) within "
                           f"{timeout:.0f} s (now: {info} = (messages, consumers))\n{logs}")

    def wait_consumers_gone(self, queue, timeout=READY_TIMEOUT):
        """Waits until `queue` has no consumer (or does not exist)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.queue_info(queue)
            if info is None or info[1] == 0:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"queue {queue!r} still has consumers {timeout:.0f} s "
                                   f"later: {info} = (messages, consumers)")
            time.sleep(0.05)


# --------------------------------------------------------------------- HTTP

Response = collections.namedtuple("Response", "status headers body json elapsed")


def http_request(port, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT,
                 host="127.0.0.1"):
    """One request on a fresh connection.  Returns Response(status, headers
    (case-insensitive), body bytes, parsed JSON or None, elapsed seconds).
    Thread-safe."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.monotonic() - t0
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return Response(resp.status, resp.headers, data, parsed, elapsed)
    finally:
        conn.close()


def get(port, path, **kw):
    return http_request(port, "GET", path, **kw)


class Call(threading.Thread):
    """GET path on a thread of its own, started at once: .resp (or .error)
    and .done_at (time.monotonic()) once it has its answer."""

    def __init__(self, port, path, timeout=60):
        super().__init__(daemon=True)
        self.port, self.path, self.timeout = port, path, timeout
        self.resp = self.error = self.done_at = None
        self.start()

    def run(self):
        try:
            self.resp = get(self.port, self.path, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - asserted by the test
            self.error = e
        self.done_at = time.monotonic()


def media_type(resp):
    """Content-Type without parameters, lower case ('' when absent)."""
    return (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def show(resp):
    """A response as text, for assertion messages."""
    body = resp.body[:600].decode("utf-8", "replace")
    more = "..." if len(resp.body) > 600 else ""
    return (f"HTTP {resp.status}, Content-Type {resp.headers.get('Content-Type')!r}, "
            f"body {body!r}{more}")


# --------------------------------------------------------------------- Env

_ENVS = []


class Env:
    """Everything one test file runs: a broker, workers, gateways, in one
    temporary directory (kept, with its logs, when something failed)."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"fibrpc-{name}-")
        self.broker = Broker(os.path.join(self.dir, "broker"))
        self.procs = []
        self.problems = []
        self._counts = collections.Counter()
        self._broker_stopped = False
        _ENVS.append(self)

    @property
    def url(self):
        return self.broker.url

    def start_broker(self):
        return self.broker.start()

    def _unique(self, base):
        self._counts[base] += 1
        return f"{base}-{self._counts[base]}"

    def start_worker(self, queue=None, prefetch=None, max_n=None, args=(), wait=True):
        """Starts fib-worker; with wait, returns once it consumes from its queue."""
        argv = [binary("fib-worker"), "--amqp-url", self.url]
        if queue is not None:
            argv += ["--queue", queue]
        if prefetch is not None:
            argv += ["--prefetch", str(prefetch)]
        if max_n is not None:
            argv += ["--max-n", str(max_n)]
        argv += list(args)
        q = queue or "rpc_queue"
        have = self.broker.queue_info(q) if wait else None
        p = Proc(self._unique("fib-worker"), argv, self.dir)
        self.procs.append(p)
        if wait:
            self.broker.wait_consumers(q, (have[1] if have else 0) + 1, procs=[p])
        return p

    def start_python(self, name, script, args=()):
        """Runs a Python script (e.g. the tutorial's) under Debian's python3."""
        p = Proc(self._unique(name), [SYSTEM_PYTHON, "-u", script] + list(args), self.dir)
        self.procs.append(p)
        return p

    def start_gateway(self, queue=None, timeout_ms=None, max_timeout_ms=None, max_n=None,
                      max_inflight=None, args=(), ready_path="/fib/0", ready_status=200):
        """Starts rpc-gateway on a free loopback port and waits until
        `ready_path` answers `ready_status` (None: any HTTP answer at all).
        The gateway gets its port as .port."""
        port = free_port()
        argv = [binary("rpc-gateway"), "--amqp-url", self.url,
                "--listen", f"127.0.0.1:{port}"]
        for flag, value in (("--queue", queue), ("--timeout-ms", timeout_ms),
                            ("--max-timeout-ms", max_timeout_ms), ("--max-n", max_n),
                            ("--max-inflight", max_inflight)):
            if value is not None:
                argv += [flag, str(value)]
        argv += list(args)
        p = Proc(self._unique("rpc-gateway"), argv, self.dir)
        p.port = port
        self.procs.append(p)
        self.wait_http(p, ready_path, ready_status)
        return p

    def wait_http(self, gateway, path, status=200, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not gateway.running():
                raise RuntimeError(f"{gateway.describe()} exited with status "
                                   f"{gateway.popen.returncode} while starting:\n"
                                   f"{gateway.log_tail()}")
            try:
                r = get(gateway.port, path, timeout=max(1.0, deadline - time.monotonic()))
                if status is None or r.status == status:
                    return r
                last = show(r)
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.05)
        others = "".join(f"--- {p.name}:\n{p.log_tail(15)}" for p in self.procs
                         if p is not gateway)
        raise RuntimeError(f"GET {path} on {gateway.name} did not answer "
                           f"{status or 'anything'} within {timeout:.0f} s; last: {last}\n"
                           f"--- {gateway.name}:\n{gateway.log_tail()}{others}")

    def stop_proc(self, p):
        """Stops one program now (SIGTERM); its problems count at teardown."""
        p.stop()
        if not p.checked:
            p.checked = True
            self.problems += p.problems()

    def stop(self):
        """Stops everything, newest first; collects problems.  Idempotent."""
        for p in reversed(self.procs):
            self.stop_proc(p)
        if not self._broker_stopped:
            self._broker_stopped = True
            self.problems += self.broker.stop()

    def check_clean_stop(self):
        """Raises AssertionError listing the problems stop() found."""
        if self.problems:
            logs = "".join(f"--- {p.name} ({p.log_path}):\n{p.log_tail(25)}" for p in self.procs)
            raise AssertionError("unclean shutdown:\n  " + "\n  ".join(self.problems)
                                 + "\n" + logs)

    def report(self):
        """Prints where the logs are and their tails (used after a failure)."""
        print(f"\n==== {self.name}: logs kept in {self.dir}", file=sys.stderr)
        for p in self.procs:
            print(f"---- {p.describe()}\n{p.log_tail(30)}", file=sys.stderr)
        print(f"---- rabbitmq warnings and errors\n{self.broker.log_tail()}", file=sys.stderr)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _stop_all():
    for env in _ENVS:
        try:
            env.stop()
        except Exception as e:  # noqa: BLE001 - last-resort cleanup
            print(f"cleanup of {env.name} failed: {e}", file=sys.stderr)


atexit.register(_stop_all)


class Terminated(KeyboardInterrupt):
    """SIGTERM: unittest lets KeyboardInterrupt through (it records any
    other exception, SystemExit included, and goes on with the next test)."""


def _on_sigterm(signum, frame):
    raise Terminated()


signal.signal(signal.SIGTERM, _on_sigterm)


def setup_env(name, start=None):
    """For setUpModule: an Env with its broker running, then start(env) to
    start programs.  Stops whatever was started when that fails (unittest
    does not call tearDownModule when setUpModule raises)."""
    binary("fib-worker"), binary("rpc-gateway")  # fail before the slow part
    env = Env(name)
    try:
        env.start_broker()
        if start is not None:
            start(env)
    except BaseException:
        env.stop()
        raise
    return env


def teardown_env(env):
    """For tearDownModule: stops everything and fails on an unclean stop
    (crash, exit status other than 0 after SIGTERM, sanitizer report)."""
    if env is not None:
        env.stop()
        env.check_clean_stop()


RawResult = collections.namedtuple("RawResult", "raw closed elapsed")


def raw_exchange(port, data, timeout=HTTP_TIMEOUT, sock=None, host="127.0.0.1"):
    """Sends data as is (on sock, or a fresh connection) and reads until the
    gateway closes the connection or timeout seconds pass.  Returns
    RawResult(bytes read, whether it was closed, elapsed seconds)."""
    s = sock or socket.create_connection((host, port), timeout=timeout)
    t0 = time.monotonic()
    raw, closed = b"", False
    try:
        if data:
            s.sendall(data)
        s.settimeout(timeout)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            raw += chunk
    except socket.timeout:
        pass
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    finally:
        if sock is None:
            s.close()
    return RawResult(raw, closed, time.monotonic() - t0)


def parse_raw(raw):
    """The first answer in raw: (status line, headers {name: value}, body
    bytes, body parsed as JSON or None)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return lines[0], headers, body, parsed


# --------------------------------------------------------------------- assertions

PROBLEM_FIELDS = {"type": str, "title": str, "status": int, "detail": str, "code": str}


def assert_problem(tc, resp, status, code=None, what=""):
    """Asserts an RFC 9457 problem response with our fields."""
    msg = f"{what}: {show(resp)}"
    tc.assertEqual(resp.status, status, msg)
    tc.assertEqual(media_type(resp), "application/problem+json", msg)
    tc.assertIsInstance(resp.json, dict, msg)
    for field, kind in PROBLEM_FIELDS.items():
        tc.assertIn(field, resp.json, f"problem field {field!r} missing; {msg}")
        tc.assertIsInstance(resp.json[field], kind, f"problem field {field!r}; {msg}")
        if kind is str:
            tc.assertTrue(resp.json[field], f"problem field {field!r} is empty; {msg}")
    tc.assertNotIsInstance(resp.json["status"], bool, msg)
    tc.assertEqual(resp.json["status"], status, msg)
    if code is not None:
        tc.assertEqual(resp.json["code"], code, msg)


# --------------------------------------------------------------------- fake consumer


class FakeConsumer(threading.Thread):
    """Consumes `queue` (declared durable, like fib-worker does) in its own
    thread and connection, records every request, never replies.
    .messages is a list of (monotonic time, body bytes, pika.BasicProperties)."""

    def __init__(self, url, queue):
        super().__init__(name=f"fake-consumer-{queue}", daemon=True)
        self.url = url
        self.queue = queue
        self.messages = []
        self.lock = threading.Lock()
        self._ready = threading.Event()
        self._halt = threading.Event()
        self.error = None

    def run(self):
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            ch = conn.channel()
            ch.queue_declare(self.queue, durable=True)
            ch.basic_consume(self.queue, self._on_message, auto_ack=True)
            self._ready.set()
            while not self._halt.is_set():
                conn.process_data_events(time_limit=0.05)
            conn.close()
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.error = e
            self._ready.set()

    def _on_message(self, ch, method, props, body):
        with self.lock:
            self.messages.append((time.monotonic(), body, props))

    def start_and_wait(self, timeout=READY_TIMEOUT):
        self.start()
        if not self._ready.wait(timeout) or self.error:
            raise RuntimeError(f"fake consumer on {self.queue!r} failed: {self.error}")
        return self

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, predicate, timeout=10.0):
        """Waits for a recorded message satisfying predicate(body, props)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.snapshot():
                if predicate(m[1], m[2]):
                    return m
            time.sleep(0.02)
        return None

    def stop(self):
        self._halt.set()
        self.join(10)


# --------------------------------------------------------------------- logs, big F(n)


def parse_logfmt(line):
    """One logfmt line (key=value, value possibly "quoted") as a dict."""
    out = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        j = line.find("=", i)
        if j < 0:
            break
        key = line[i:j]
        if " " in key:
            break
        i = j + 1
        if i < n and line[i] == '"':
            k = i + 1
            while k < n and line[k] != '"':
                k += 2 if line[k] == "\\" else 1
            out[key] = line[i + 1:k]
            i = k + 1
        else:
            k = line.find(" ", i)
            k = n if k < 0 else k
            out[key] = line[i:k]
            i = k
    return out


def log_time(event):
    """A log event's ts= as seconds since the epoch (float)."""
    import datetime
    ts = event["ts"].rstrip("Z")
    return datetime.datetime.fromisoformat(ts).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def fib_summary(n, lead=12, trail=18):
    """(number of decimal digits, first `lead` digits, last `trail` digits)
    of F(n) for n >= 100, without computing F(n): the count and the leading
    digits from log10(phi^n / sqrt 5), the trailing digits by fast doubling
    modulo 10**trail.  Independent of the worker's GMP code."""
    import decimal
    ctx = decimal.Context(prec=80)
    five = decimal.Decimal(5)
    phi = (1 + five.sqrt(ctx)) / 2
    x = ctx.subtract(ctx.multiply(decimal.Decimal(n), phi.log10(ctx)),
                     five.log10(ctx) / 2)
    whole = int(x)
    leading = int(ctx.power(decimal.Decimal(10), x - whole + lead - 1))
    mod = 10 ** trail

    def pair(k):  # (F(k), F(k+1)) mod 10**trail
        if k == 0:
            return 0, 1
        a, b = pair(k >> 1)
        c = a * ((2 * b - a) % mod) % mod
        d = (a * a + b * b) % mod
        return (d, (c + d) % mod) if k & 1 else (c, d)
    return whole + 1, str(leading), str(pair(n)[0]).rjust(trail, "0")


# --------------------------------------------------------------------- replying fake


class ReplyingFake(threading.Thread):
    """A fake worker that survives broker restarts: consumes `queue`
    (declared durable) with auto-ack in its own thread and connection,
    answers each request with the right F(n) after delay(n) seconds
    (delay(n) None: never answers), and reconnects every 0.2 s after it lost
    the broker, until stop().  .requests lists (monotonic time, n, props);
    .lost_at the monotonic times it lost a working connection.  Only its own
    thread touches its connection."""

    def __init__(self, url, queue, delay=lambda n: 1.0):
        super().__init__(name=f"replying-fake-{queue}", daemon=True)
        self.url = url
        self.queue = queue
        self.delay = delay
        self.requests = []
        self.replies_sent = 0
        self.connections = 0
        self.lost_at = []
        self.last_error = None
        self.lock = threading.Lock()
        self._ready = threading.Event()
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            conn = None
            consuming = False
            try:
                conn = pika.BlockingConnection(pika.URLParameters(self.url))
                ch = conn.channel()
                ch.queue_declare(self.queue, durable=True)
                ch.basic_consume(
                    self.queue,
                    lambda c, m, p, b: self._on_message(conn, c, p, b),
                    auto_ack=True)
                with self.lock:
                    self.connections += 1
                consuming = True
                self._ready.set()
                while not self._halt.is_set():
                    conn.process_data_events(time_limit=0.05)
            except Exception as e:  # noqa: BLE001 - the broker went away: retry
                if consuming:
                    with self.lock:
                        self.lost_at.append(time.monotonic())
                self.last_error = e
                time.sleep(0.2)
            finally:
                try:
                    if conn is not None and conn.is_open:
                        conn.close()
                except Exception:  # noqa: BLE001
                    pass

    def _on_message(self, conn, ch, props, body):
        try:
            n = int(body.decode("ascii"))
        except ValueError:
            n = None
        with self.lock:
            self.requests.append((time.monotonic(), n, props))
        d = None if n is None else self.delay(n)
        if d is None or not props.reply_to:
            return
        conn.call_later(d, lambda: self._reply(ch, props, n))

    def _reply(self, ch, props, n):
        if not ch.is_open:
            return
        ch.basic_publish("", props.reply_to, str(fib(n)).encode(),
                         pika.BasicProperties(content_type="text/plain",
                                              correlation_id=props.correlation_id))
        with self.lock:
            self.replies_sent += 1

    def start_and_wait(self, timeout=READY_TIMEOUT):
        self.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{self.name} did not connect: {self.last_error!r}")
        return self

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def wait_requests(self, count, timeout=10.0):
        """True once at least `count` requests arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.snapshot()) >= count:
                return True
            time.sleep(0.01)
        return False

    def stop(self):
        self._halt.set()
        self.join(10)


# --------------------------------------------------------------------- main


def main():
    """unittest.main() that keeps the logs of a failed run and prints their
    tails; exits non-zero on any failure (including setUp/tearDownModule)."""
    try:
        prog = unittest.main(module="__main__", exit=False, verbosity=2)
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({'SIGTERM' if isinstance(e, Terminated) else 'SIGINT'}): "
              "stopping everything", file=sys.stderr)
        _stop_all()
        for env in _ENVS:
            env.report()
        sys.exit(143 if isinstance(e, Terminated) else 130)
    ok = prog.result.wasSuccessful()
    _stop_all()
    for env in _ENVS:
        if ok and not os.environ.get("FIBRPC_KEEP_LOGS"):
            env.remove()
        else:
            env.report()
    if getattr(prog.result, "testsRun", 0) == 0 and not prog.result.errors:
        print("no tests ran", file=sys.stderr)
        sys.exit(1)
    sys.exit(0 if ok else 1)
