"""contract.py - what the contract and browser tests share beyond harness.py:
finding their tools (skip only when a tool is truly missing), the npm tools
of tests/contract/package.json, the OpenAPI document and a validator for
live responses, a TCP relay, and a scripted RPC server that answers (or
not) as each request's n says.

Python stdlib plus pika, PyYAML and jsonschema (Debian's python3-pika,
python3-yaml, python3-jsonschema; scripts/deps.sh installs them).
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402  (re-executes under Debian's python3 if needed)
import fakes  # noqa: E402

SKIP = 77  # ctest SKIP_RETURN_CODE
SPEC_PATH = os.path.join(harness.SOURCE_DIR, "openapi.yaml")
PROBLEM_H = os.path.join(harness.SOURCE_DIR, "gateway", "problem.h")
NPM_DIR = HERE  # tests/contract: package.json, package-lock.json, node_modules
NPM_BIN = os.path.join(NPM_DIR, "node_modules", ".bin")

# ----------------------------------------------------------------- skipping


def _strict():
    """In CI (or with FIBRPC_NO_SKIP=1) a missing tool is a failure: there
    scripts/deps.sh has installed everything, so a gap is a bug."""
    v = os.environ.get("FIBRPC_NO_SKIP", os.environ.get("CI", ""))
    return v.lower() not in ("", "0", "false", "no")


def skip(why):
    """Exits the test program: 77 (ctest SKIP) normally, 1 in CI."""
    if _strict():
        print(f"FAIL (a required tool is missing, and CI/FIBRPC_NO_SKIP forbids "
              f"skipping): {why}", file=sys.stderr)
        sys.exit(1)
    print(f"SKIP: {why}", file=sys.stderr)
    sys.exit(SKIP)


def need_program(name, hint):
    """The path of program `name`, or skip (hint says how to install it)."""
    path = shutil.which(name)
    if path is None:
        skip(f"{name} not found: {hint}")
    return path


def need_python_modules():
    try:
        import jsonschema  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        skip(f"{e}: apt-get install python3-yaml python3-jsonschema (scripts/deps.sh)")

# ----------------------------------------------------------------- npm tools

# npm's words for "the registry cannot be reached" (then we skip; any other
# npm failure, a broken lock file say, fails the test).
_OFFLINE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|"
                      r"ENETUNREACH|EHOSTUNREACH|network|offline", re.I)


def npm_tools():
    """Installs tests/contract/package-lock.json's packages with `npm ci`
    unless node_modules already holds exactly them; returns NPM_BIN.
    Serialised with a lock file, so concurrent tests install once."""
    node = need_program("node", "install Node.js >= 20.19 with npm (scripts/deps.sh)")
    npm = need_program("npm", "install npm (scripts/deps.sh)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    m = re.match(r"v(\d+)\.(\d+)", version)
    if m is None or (int(m.group(1)), int(m.group(2))) < (20, 19):
        skip(f"Node.js {version.strip() or '?'} is older than 20.19, which "
             f"@redocly/cli 2 needs (Debian 12's is 18): install a newer one")
    with open(os.path.join(NPM_DIR, "package-lock.json"), "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(NPM_DIR, "node_modules", ".fibrpc-lock-sha256")
    with open(os.path.join(NPM_DIR, ".npm-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(stamp) as f:
                if f.read().strip() == want:
                    return NPM_BIN
        except OSError:
            pass
        t0 = time.monotonic()
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NPM_DIR, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            out = r.stdout + r.stderr
            if _OFFLINE.search(out):
                skip(f"npm ci cannot reach the registry:\n{out[-2000:]}")
            raise RuntimeError(f"npm ci failed ({r.returncode}) in {NPM_DIR}:\n{out[-4000:]}")
        with open(stamp, "w") as f:
            f.write(want + "\n")
        print(f"npm ci: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return NPM_BIN


def node_env():
    """Environment for node tools: no colours, no update checks."""
    env = dict(os.environ)
    env.update({"NO_COLOR": "1", "FORCE_COLOR": "0", "NO_UPDATE_NOTIFIER": "1",
                "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
                "CI": env.get("CI", "true")})
    return env

# ----------------------------------------------------------------- the spec


def load_spec():
    import yaml
    with open(SPEC_PATH, "rb") as f:
        return yaml.safe_load(f)


def problem_codes():
    """{code: status} from gateway/problem.h's GW_ERRORS (without ok)."""
    with open(PROBLEM_H) as f:
        text = f.read()
    pairs = re.findall(r"X\(\s*[A-Z_]+\s*,\s*([a-z_]+)\s*,\s*(\d+)\s*,", text)
    if len(pairs) < 5:
        raise RuntimeError(f"could not read GW_ERRORS from {PROBLEM_H}")
    return {code: int(status) for code, status in pairs if code != "ok"}


class SpecValidator:
    """Validates responses that prism cannot carry (HEAD, unknown paths)
    against the spec's response objects, with jsonschema."""

    def __init__(self, spec):
        import jsonschema
        self.spec = spec
        self._js = jsonschema

    def deref(self, node):
        """Follows a local $ref ('#/a/b') chain."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"only local refs: {ref}")
            node = self.spec
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def response_object(self, path, method, status):
        """The spec's response object for (path template, method, status),
        or None when the operation does not document that status."""
        op = self.spec["paths"].get(path, {}).get(method.lower())
        if op is None:
            return None
        resp = op["responses"].get(str(status))
        return self.deref(resp) if resp is not None else None

    def check(self, resp_obj, status, headers, body, has_body=True):
        """A list of violations (strings) of one live response."""
        out = []
        for name, hdr in (resp_obj.get("headers") or {}).items():
            hdr = self.deref(hdr)
            value = headers.get(name)
            if value is None:
                if hdr.get("required"):
                    out.append(f"header {name} missing")
                continue
            schema = dict(hdr.get("schema") or {})
            if schema.get("type") == "integer":
                try:
                    value = int(value)
                except ValueError:
                    out.append(f"header {name}: {value!r} is not an integer")
                    continue
            out += [f"header {name}: {e.message}" for e in self._errors(schema, value)]
        content = resp_obj.get("content") or {}
        mt = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        # the most specific media range that covers mt (a raw route's */*)
        key = next((k for k in (mt, mt.split("/")[0] + "/*", "*/*") if k in content), None)
        if content and key is None:
            out.append(f"Content-Type {mt!r} is not one of {sorted(content)}")
            return out
        if not has_body:
            if body:
                out.append(f"HEAD answered with a body of {len(body)} bytes")
            return out
        schema = (content.get(key) or {}).get("schema")
        if schema is not None and mt.endswith("json"):
            try:
                doc = json.loads(body)
            except ValueError as e:
                return out + [f"body is not JSON: {e}"]
            out += [f"body {'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
                    for e in self._errors(schema, doc)]
        return out

    def _errors(self, schema, instance):
        # OpenAPI 3.0 schemas are close enough to draft 4 for what we use;
        # $refs resolve against the whole document.
        resolver = self._js.RefResolver("", self.spec)
        v = self._js.Draft4Validator(schema, resolver=resolver)
        return sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))

# ----------------------------------------------------------------- relay


class Relay(threading.Thread):
    """A TCP relay on a port of its own, held for the whole test, to
    whichever gateway port .upstream names at the moment a connection is
    accepted.  A proxy started once (prism) can so reach gateways that come
    and go, each on a fresh port: nothing else can take the relay's port in
    between, as it could a gateway port freed by a restart.  When either end
    closes, both are closed."""

    def __init__(self):
        super().__init__(name="relay", daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.upstream = None
        self.start()

    def run(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            upstream.settimeout(None)
        except (OSError, TypeError):
            client.close()
            return
        done = threading.Event()

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            done.set()

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        done.wait()
        for s in (client, upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.sock.close()

# ----------------------------------------------------------------- scripted server


class ScriptedServer(fakes.FakeServer):
    """An RPC server on `queue` (declared durable, as fib-worker does) that
    answers each request as script(n) says: ("fib", delay) replies F(n)
    after delay seconds, ("error", type, message) replies a fibrpc error,
    ("raw", body, content_type) replies those bytes, ("hold",) replies F(n)
    once release(n) is called (at once if it was already), None never
    replies.  Its own thread and connection (tests/integration/fakes.py);
    start_and_wait(), then stop()."""

    kind = "scripted"

    def __init__(self, url, queue, script):
        super().__init__(url, queue)
        self.script = script
        self._held = []         # Requests a ("hold",) plan keeps; fake's thread only
        self._released = set()  # n released so far; fake's thread only

    def plan(self, req):
        plan = self.script(req.n)
        if plan is None:
            return []
        if plan[0] == "hold":
            if req.n in self._released:
                return [fakes.Reply(harness.fib(req.n))]
            self._held.append(req)
            return []
        if plan[0] == "fib":
            return [fakes.Reply(harness.fib(req.n), delay=plan[1])]
        if plan[0] == "error":
            return [fakes.Reply(json.dumps({"type": plan[1], "message": plan[2]}),
                                fakes.ERROR_CONTENT_TYPE)]
        return [fakes.Reply(plan[1], plan[2])]

    def release(self, n):
        """Answers F(n) to the requests for n that ("hold",) keeps, and to
        any that come later.  Any thread: the fake's own thread does it."""
        def answer():
            self._released.add(n)
            keep = []
            for req in self._held:
                if req.n == n:
                    self._send(req.props, fakes.Reply(harness.fib(n)))
                else:
                    keep.append(req)
            self._held = keep
        self._conn.add_callback_threadsafe(answer)
