"""harness.py - what every integration test needs: a private RabbitMQ node
(scripts/broker.sh) or cluster (Cluster, scripts/cluster.sh), fib-worker
and rpc-gateway subprocesses, HTTP helpers, and a load of checked HTTP
calls (Load).

Python stdlib plus pika (Debian's python3-pika).  One Env per test file,
created in setUpModule; every process it starts is stopped again, also when a
test or setUpModule fails, the interpreter is interrupted, or it is killed
(the programs get SIGKILL through PR_SET_PDEATHSIG, a watchdog stops the node).
Main thread only, except where a function says otherwise.
"""

import atexit
import collections
import contextlib
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
CLUSTER_SH = os.path.join(SOURCE_DIR, "scripts", "cluster.sh")
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

    def lines(self):
        """The log's whole lines.  A line being written may be read in part
        (a write that crosses a page of the file is seen a page at a time),
        so the text after the last newline is left for the next read."""
        text = self.log()
        return text[:text.rfind("\n") + 1].splitlines()

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
        for line in self.lines():
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


class _Queues:
    """Queue helpers for Broker and Cluster: one short-lived connection per
    call (self.connect()), main thread."""

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


class Broker(_Queues):
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


class Cluster(_Queues):
    """A private RabbitMQ cluster of `nodes` nodes on loopback, started with
    scripts/cluster.sh in `state_dir`.  Nodes are numbered from 0 here (1 in
    cluster.sh).  .url is the comma-separated list of every node's AMQP URL,
    as the programs take it; .urls the list.  A node is named in the
    programs' logs and metrics by its address, "127.0.0.1:PORT" (addr(i));
    index() maps such an address (or a node name) back to its number."""

    def __init__(self, state_dir, nodes=3):
        self.dir = state_dir
        self.nodes = nodes
        self.urls = []
        self.url = None
        self.start_seconds = None
        self._watchdog = None

    def _run(self, *args, timeout=180):
        r = subprocess.run(["bash", CLUSTER_SH] + [str(a) for a in args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/cluster.sh {' '.join(map(str, args))} failed "
                               f"({r.returncode}):\n{r.stdout}{r.stderr}")
        return r.stdout

    def start(self):
        t0 = time.monotonic()
        try:
            out = self._run("start", self.dir, self.nodes, timeout=300)
        except BaseException:
            self.stop()
            raise
        self.url = out.strip().splitlines()[-1]
        self.urls = self.url.split(",")
        self.start_seconds = time.monotonic() - t0
        # Should this interpreter be killed outright, stop the cluster anyway.
        self._watchdog = subprocess.Popen(
            ["bash", "-c", 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
                           'exec bash "$2" stop "$3"', "watchdog",
             str(os.getpid()), CLUSTER_SH, self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        return self.url

    def attach(self):
        """Uses the cluster already running in state_dir (started by someone
        else, who also stops it)."""
        self.url = self._run("urls", self.dir).strip()
        self.urls = self.url.split(",")
        self.nodes = len(self.urls)
        return self.url

    def stop(self):
        """Stops every node; returns a list of problems (empty when all is well)."""
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        r = subprocess.run(["bash", CLUSTER_SH, "stop", self.dir], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            return [f"scripts/cluster.sh stop failed ({r.returncode}): {r.stdout}{r.stderr}"]
        return []

    # ---- nodes

    def port(self, i):
        return int(self.urls[i].rsplit(":", 1)[1].split("/")[0])

    def addr(self, i):
        """The node as the programs name it: "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port(i)}"

    def name(self, i):
        """The node's Erlang name, as rabbitmqctl prints it."""
        return f"fibrpc-{self.port(i)}@localhost"

    def index(self, node):
        """The number of the node with this address or Erlang name."""
        for i in range(self.nodes):
            if node in (self.addr(i), self.name(i)):
                return i
        raise KeyError(f"no node {node!r} in this cluster")

    def running(self, i):
        r = subprocess.run(["bash", CLUSTER_SH, "status", self.dir, str(i + 1)],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        return r.returncode == 0

    def live(self):
        """The numbers of the nodes that run."""
        return [i for i in range(self.nodes) if self.running(i)]

    def kill_node(self, i):
        """SIGKILLs node i's Erlang VM: a crash.  Returns its pid."""
        with open(os.path.join(self.dir, f"node{i + 1}", "rabbit.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGKILL)
        return pid

    def restart_node(self, i):
        """Starts node i again (same name, ports, data); it rejoins the
        cluster by itself.  Returns seconds until it accepted AMQP."""
        t0 = time.monotonic()
        self._run("restart", self.dir, i + 1)
        return time.monotonic() - t0

    def stop_node(self, i):
        """Stops node i cleanly (rabbitmqctl stop), keeping its state."""
        self._run("stop-node", self.dir, i + 1, timeout=120)

    def ctl(self, i, *args, timeout=60):
        """rabbitmqctl ARGS against node i; its stdout.  Raises on failure."""
        return self._run("ctl", self.dir, i + 1, *args, timeout=timeout)

    def queues(self, i, *args, timeout=60):
        """rabbitmq-queues ARGS against node i; its stdout."""
        return self._run("queues", self.dir, i + 1, *args, timeout=timeout)

    def rows(self, what, *columns, node=None):
        """rabbitmqctl list_<what> COLUMNS (cluster-wide) as a list of dicts,
        asked of `node` or else of the first node that runs."""
        i = node if node is not None else self.live()[0]
        out = self.ctl(i, f"list_{what}", *columns, "--formatter", "json")
        return json.loads(out) if out.strip() else []

    # ---- queues and connections

    def quorum(self, queue):
        """(leader, members, online) of a quorum queue as node numbers
        (leader None while there is none), or None when it does not exist."""
        for row in self.rows("queues", "name", "type", "leader", "members", "online"):
            if row["name"] == queue:
                def nums(names):
                    return sorted(self.index(n) for n in names or [])
                leader = row.get("leader")
                return (self.index(leader) if leader and leader != "" else None,
                        nums(row.get("members")), nums(row.get("online")))
        return None

    def leader(self, queue):
        """The node leading quorum queue `queue` (None: none now)."""
        q = self.quorum(queue)
        return q[0] if q else None

    def wait_quorum(self, queue, online, leader_not=None, timeout=READY_TIMEOUT):
        """Waits until quorum queue `queue` has `online` members online and a
        leader (other than node `leader_not`); returns quorum()."""
        deadline = time.monotonic() + timeout
        q = None
        while time.monotonic() < deadline:
            try:
                q = self.quorum(queue)
            except RuntimeError:  # the node asked went away meanwhile
                q = None
            if (q is not None and q[0] is not None and q[0] != leader_not
                    and len(q[2]) >= online):
                return q
            time.sleep(0.2)
        raise RuntimeError(f"quorum queue {queue!r}: not {online} members online with a "
                           f"leader within {timeout:.0f} s: {q}")

    def connections(self):
        """Every client connection in the cluster: dicts with node (number),
        peer_port (the client's port) and connection_name (None when the
        client gave none; the gateway calls its connection "rpc-gateway")."""
        out = []
        for row in self.rows("connections", "name", "peer_port", "client_properties"):
            # name is "CLIENT:PORT -> 127.0.0.1:NODEPORT"
            server = row["name"].rsplit("->", 1)[1].strip()
            props = {p[0]: p[2] for p in row.get("client_properties") or []}
            out.append({"node": self.index(server), "peer_port": row["peer_port"],
                        "connection_name": props.get("connection_name")})
        return out

    def gateway_nodes(self):
        """The nodes the gateways' connections are on."""
        return sorted(c["node"] for c in self.connections()
                      if c["connection_name"] == "rpc-gateway")

    @contextlib.contextmanager
    def only(self, i):
        """Within it, only node i accepts new AMQP connections (the others'
        listeners suspended): a program started meanwhile with the whole
        list connects to node i (the others refuse it, and it moves on).
        Connections already open stay as they are."""
        others = [j for j in self.live() if j != i]
        self._on_each(others, "suspend_listeners")
        try:
            yield
        finally:
            self._on_each(others, "resume_listeners")

    def _on_each(self, nodes, command):
        """rabbitmqctl COMMAND on each of `nodes`, side by side (each call
        starts a CLI VM: ~0.5 s)."""
        errors = []

        def run(j):
            try:
                self.ctl(j, command)
            except Exception as e:  # noqa: BLE001 - raised below
                errors.append(e)
        threads = [threading.Thread(target=run, args=(j,)) for j in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def connect(self, node=None):
        """A pika connection to node `node`, or else to the first that answers."""
        urls = [self.urls[node]] if node is not None else self.urls
        params = []
        for u in urls:
            p = pika.URLParameters(u)
            p.connection_attempts = 1
            p.socket_timeout = 5
            params.append(p)
        last = None
        for _ in range(3):
            try:
                return pika.BlockingConnection(params)
            except pika.exceptions.AMQPConnectionError as e:
                last = e
                time.sleep(0.5)
        raise last

    def log_tail(self, lines=15):
        """Each node's last warnings and errors."""
        out = []
        for i in range(self.nodes):
            path = os.path.join(self.dir, f"node{i + 1}", "log", "rabbit.log")
            try:
                with open(path, "r", errors="replace") as f:
                    bad = [ln for ln in f if "[error]" in ln or "[warning]" in ln]
            except OSError as e:
                bad = [f"<{e}>\n"]
            out.append(f"node {i} ({self.addr(i)}):\n" + ("".join(bad[-lines:])
                                                          or "(no warnings or errors)\n"))
        return "".join(out)


# --------------------------------------------------------------------- HTTP

Response = collections.namedtuple("Response", "status headers body json elapsed")


def http_request(port, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT,
                 host="127.0.0.1", ssl_context=None):
    """One request on a fresh connection (HTTPS with `ssl_context`).
    Returns Response(status, headers (case-insensitive), body bytes, parsed
    JSON or None, elapsed seconds).  Thread-safe."""
    if ssl_context is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ssl_context)
    else:
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


# --------------------------------------------------------------------- load


def documented_problems():
    """{(status, code)} of every error the gateway can answer with, read
    from gateway/problem.h (its GW_ERRORS list), so that a code added there
    is known here too."""
    import re
    with open(os.path.join(SOURCE_DIR, "gateway", "problem.h")) as f:
        text = f.read()
    pairs = {(int(status), code) for code, status in
             re.findall(r"X\(\s*\w+\s*,\s*(\w+)\s*,\s*(\d{3})\s*,", text)}
    pairs.discard((200, "ok"))
    if not pairs:
        raise RuntimeError("no problem codes found in gateway/problem.h")
    return pairs


# One call of a Load: sent and done are wall-clock times (time.time(), as
# the programs' ts= are), status None when there was no HTTP answer; error
# says what was wrong with it (None: a right answer or a documented error).
LoadCall = collections.namedtuple(
    "LoadCall", "client seq port n request_id sent done status code retry_after error")

# A call whose answer has not come this long after its own deadline hangs.
# Generous: the gateway answers at the deadline at the latest, but the test
# also runs under ASan on a loaded 2-core machine.
HANG_MARGIN_S = 10.0


class Load:
    """`clients` threads, each calling GET /fib/<n>?timeout_ms=<timeout_ms>
    in a loop (n random in 0..max_n, `pause_s` between calls) on its own
    keep-alive connection to one of `ports` (client k uses ports[k % len]),
    reopened after any failure.  Every answer is checked as it comes: a 200
    must carry the right F(n); anything else must be a problem+json answer
    with a (status, code) of gateway/problem.h, and a 503 must have
    Retry-After.  An answer later than the deadline plus HANG_MARGIN_S is a
    hang.  Each call carries X-Request-Id <name>-<client>-<seq> (the
    worker logs it on served).  Thread-safe; start/pause/resume/stop from
    one thread."""

    def __init__(self, ports, clients=4, timeout_ms=5000, pause_s=0.02, max_n=300,
                 name="load"):
        self.ports = list(ports)
        self.clients = clients
        self.timeout_ms = timeout_ms
        self.pause_s = pause_s
        self.max_n = max_n
        self.name = name
        self.documented = documented_problems()
        self._fib = [fib(n) for n in range(max_n + 1)]
        self._calls = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._go = threading.Event()
        self._idle = 0
        self._threads = []

    def start(self):
        self._go.set()
        for k in range(self.clients):
            t = threading.Thread(target=self._client, args=(k,), daemon=True,
                                 name=f"{self.name}-{k}")
            t.start()
            self._threads.append(t)
        return self

    def pause(self, timeout=None):
        """Stops sending; returns once every client has its last answer."""
        timeout = timeout or self.timeout_ms / 1000 + HANG_MARGIN_S + 5
        self._go.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._idle >= len(self._threads):
                    return
            time.sleep(0.01)
        raise RuntimeError(f"{self.name}: clients still busy {timeout:.0f} s after pause()")

    def resume(self):
        self._go.set()

    def stop(self):
        """Stops every client after its current call; returns calls()."""
        self._halt.set()
        self._go.set()
        for t in self._threads:
            t.join(self.timeout_ms / 1000 + HANG_MARGIN_S + 5)
        return self.calls()

    def calls(self, since=None):
        """Every finished call (sent at or after `since`, wall clock)."""
        with self._lock:
            return [c for c in self._calls if since is None or c.sent >= since]

    def wait_calls(self, count, ok=True, since=None, timeout=READY_TIMEOUT):
        """Waits until `count` calls (answered 200 when ok) were sent at or
        after `since` and are done; returns them (fewer after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [c for c in self.calls(since) if not ok or c.status == 200]
            if len(got) >= count or time.monotonic() >= deadline:
                return got
            time.sleep(0.02)

    def _check(self, n, resp, body):
        """(code, retry_after, error) of one HTTP answer."""
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        if resp.status == 200:
            if not isinstance(doc, dict) or doc.get("fib") != str(self._fib[n]):
                return None, None, f"wrong answer for n={n}: {body[:200]!r}"
            return None, None, None
        code = doc.get("code") if isinstance(doc, dict) else None
        ra = resp.getheader("Retry-After")
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/problem+json" or code is None:
            return code, ra, f"HTTP {resp.status} without a problem body: {body[:200]!r}"
        if (resp.status, code) not in self.documented:
            return code, ra, f"undocumented HTTP {resp.status} {code}"
        if resp.status == 503 and not ra:
            return code, ra, f"503 {code} without Retry-After"
        return code, ra, None

    def _client(self, k):
        import random
        rng = random.Random(k)
        port = self.ports[k % len(self.ports)]
        conn = None
        seq = 0
        sock_timeout = self.timeout_ms / 1000 + HANG_MARGIN_S
        while not self._halt.is_set():
            if not self._go.is_set():
                with self._lock:
                    self._idle += 1
                self._go.wait()
                with self._lock:
                    self._idle -= 1
                continue
            seq += 1
            n = rng.randint(0, self.max_n)
            rid = f"{self.name}-{k}-{seq}"
            status = code = ra = err = None
            sent = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=sock_timeout)
                conn.request("GET", f"/fib/{n}?timeout_ms={self.timeout_ms}",
                             headers={"X-Request-Id": rid})
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                code, ra, err = self._check(n, resp, body)
                if resp.will_close:
                    conn.close()
                    conn = None
            except socket.timeout:
                err = f"hung: no answer within {sock_timeout:g} s"
            except (OSError, http.client.HTTPException) as e:
                err = f"no answer: {e!r}"
            if err is not None and status is None and conn is not None:
                conn.close()
                conn = None
            with self._lock:
                self._calls.append(LoadCall(k, seq, port, n, rid, sent, time.time(),
                                            status, code, ra, err))
            if self.pause_s:
                time.sleep(self.pause_s)
        if conn is not None:
            conn.close()


def summary(calls):
    """'N calls: 200 x A, 503 broker_unavailable x B, ...' for messages."""
    counts = collections.Counter(
        "200" if c.status == 200 else
        f"{c.status} {c.code}" if c.status else "no answer" for c in calls)
    return f"{len(calls)} calls: " + ", ".join(f"{k} x {v}" for k, v in counts.most_common())


# --------------------------------------------------------------------- Env

_ENVS = []


class Env:
    """Everything one test file runs: a broker, workers, gateways, in one
    temporary directory (kept, with its logs, when something failed)."""

    def __init__(self, name, nodes=1, broker=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"fibrpc-{name}-")
        # With nodes > 1 a Cluster, and .url lists every node.  A `broker`
        # given (a running Broker or Cluster) is used, and not stopped.
        self.broker = broker or (Broker(os.path.join(self.dir, "broker")) if nodes == 1
                                 else Cluster(os.path.join(self.dir, "cluster"), nodes))
        self.procs = []
        self.problems = []
        self._counts = collections.Counter()
        self._broker_stopped = broker is not None
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
                      max_inflight=None, args=(), ready_path="/fib/0", ready_status=200,
                      ssl_context=None, prefix=()):
        """Starts rpc-gateway on a free loopback port and waits until
        `ready_path` answers `ready_status` (None: any HTTP answer at all),
        over HTTPS with `ssl_context` (give --tls-cert and --tls-key in
        args).  The gateway gets its port as .port, the context as
        .ssl_context.  prefix: a command that execs it (e.g. prlimit)."""
        port = free_port()
        argv = list(prefix) + [binary("rpc-gateway"), "--amqp-url", self.url,
                "--listen", f"127.0.0.1:{port}"]
        for flag, value in (("--queue", queue), ("--timeout-ms", timeout_ms),
                            ("--max-timeout-ms", max_timeout_ms), ("--max-n", max_n),
                            ("--max-inflight", max_inflight)):
            if value is not None:
                argv += [flag, str(value)]
        argv += list(args)
        p = Proc(self._unique("rpc-gateway"), argv, self.dir)
        p.port = port
        p.ssl_context = ssl_context
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
                r = get(gateway.port, path, timeout=max(1.0, deadline - time.monotonic()),
                        ssl_context=getattr(gateway, "ssl_context", None))
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

    def wait_consumers_seen(self, gateway, count=1, timeout=READY_TIMEOUT):
        """Waits until the gateway's /readyz reports at least `count`
        consumers of its queue (it rechecks every 100 ms while there are
        none).  /readyz is 200 without workers too: this waits for them."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            r = get(gateway.port, "/readyz",
                    ssl_context=getattr(gateway, "ssl_context", None))
            if r.status == 200 and (r.json or {}).get("consumers", 0) >= count:
                return r
            last = show(r)
            time.sleep(0.05)
        raise RuntimeError(f"{gateway.name} did not see {count} consumer(s) within "
                           f"{timeout:.0f} s; last /readyz: {last}")

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


def setup_env(name, start=None, nodes=1):
    """For setUpModule: an Env with its broker running (a cluster of `nodes`
    nodes when more than one: env.broker is then a Cluster), then start(env)
    to start programs.  Stops whatever was started when that fails (unittest
    does not call tearDownModule when setUpModule raises)."""
    binary("fib-worker"), binary("rpc-gateway")  # fail before the slow part
    env = Env(name, nodes)
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
