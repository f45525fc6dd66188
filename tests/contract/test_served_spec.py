#!/usr/bin/env python3
"""test_served_spec.py - the /openapi.yaml a gateway with routes serves is
made from its route table (gateway/openapi.c) and still holds up:

- `redocly lint` (redocly.yaml, the same rules as openapi.yaml's, with
  no-unused-components on: the raw-route components are used here) finds
  no error and no warning;
- every route of the file is in it: its path, its method (and HEAD for a
  GET route), operationId and x-route its name, its path parameters (a
  routing-key one limited to what a key may hold), forwarded headers, its
  request body's types and cap, the answers it can give (200 and the
  worker's other statuses for rpc, 202 for publish, 413/415 for bodies);
  the methods no route serves on its path answer 405 with their Allow;
- the static file's own parts (the gateway's paths, the fib route, every
  component) are there unchanged, and a gateway without --routes serves
  openapi.yaml byte for byte;
- SIGHUP with another table serves that table's document, and an answer
  begun before the reload is sent whole from the old one (the table it
  belongs to is freed only after; ASan would see a use after free); a
  table refused after its document was made leaves the old one served.

That the gateway answers as the document says, on live traffic through a
validating proxy, is test_openapi.py's job (its routes part)."""

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract  # noqa: E402
import harness  # noqa: E402

ROUTES = {"routes": [
    {"name": "fib", "kind": "fib", "method": "GET", "path": "/fib/{n}", "queue": "spec_fib"},
    {"name": "upper", "method": "POST", "path": "/v1/upper", "queue": "spec_upper",
     "timeout_ms": 3000, "max_timeout_ms": 9000, "max_body_bytes": 1048576,
     "content_types": ["text/plain", "application/octet-stream"],
     "forward_headers": ["accept-language"], "return_headers": ["x-cache"]},
    {"name": "echo", "method": "POST", "path": "/v1/echo/{id}", "queue": "spec_echo",
     "max_body_bytes": 2097152, "forward_headers": ["x-want-status"],
     "return_headers": ["x-cache", "x-count"]},
    {"name": "echo_get", "method": "GET", "path": "/v1/echo/{id}", "queue": "spec_echo"},
    {"name": "small", "method": "PUT", "path": "/v1/small", "queue": "spec_echo",
     "max_body_bytes": 10, "content_types": ["text/plain"]},
    {"name": "resize", "method": "POST", "path": "/v1/images/{id}/resize/{size}",
     "exchange": "spec_images", "routing_key": "resize.{size}"},
    {"name": "audit", "method": "POST", "path": "/v1/audit", "queue": "spec_audit",
     "mode": "publish", "forward_headers": ["x-tenant"]},
    {"name": "remove", "method": "DELETE", "path": "/v1/things/{thing}", "queue": "spec_echo"},
    {"name": "fib_too", "kind": "fib", "method": "GET", "path": "/calc/fib/{k}",
     "queue": "spec_fib"},
]}
METHODS = ["get", "head", "post", "put", "patch", "delete"]
BODY_METHODS = {"POST", "PUT", "PATCH"}
KEY_PATTERN = "^[A-Za-z0-9_~-]+$"

ENV = GW = None
SERVED = None      # the text the gateway serves
SPEC = None        # ... parsed
STATIC = None      # openapi.yaml, parsed


def write_routes(path, table):
    with open(path + ".tmp", "w") as f:
        json.dump(table, f)
    os.replace(path + ".tmp", path)


def setUpModule():
    global ENV, GW, SERVED, SPEC, STATIC
    import yaml

    def start(env):
        global GW
        env.routes_file = os.path.join(env.dir, "routes.json")
        write_routes(env.routes_file, ROUTES)
        # No worker: the document does not depend on who listens.
        GW = env.start_gateway(args=["--routes", env.routes_file],
                               ready_path="/healthz")

    ENV = harness.setup_env("served-spec", start)
    r = harness.get(GW.port, "/openapi.yaml")
    assert r.status == 200, harness.show(r)
    assert harness.media_type(r) == "application/yaml", harness.show(r)
    SERVED = r.body
    SPEC = yaml.safe_load(SERVED)
    STATIC = contract.load_spec()


def tearDownModule():
    harness.teardown_env(ENV)


def lint(text, name):
    """redocly lint of a served document (text) with the repo's
    redocly.yaml and its ignore list (.redocly.lint-ignore.yaml, whose
    entries are for a file named openapi.yaml beside them: so the document
    goes into a directory of its own as openapi.yaml, beside copies of
    both).  Returns (problems as text lines, exit status)."""
    d = os.path.join(ENV.dir, "lint-" + name)
    os.makedirs(d, exist_ok=True)
    for f in ("redocly.yaml", ".redocly.lint-ignore.yaml"):
        shutil.copyfile(os.path.join(harness.SOURCE_DIR, f), os.path.join(d, f))
    path = os.path.join(d, "openapi.yaml")
    with open(path, "wb") as f:
        f.write(text)
    r = subprocess.run(
        [os.path.join(contract.NPM_BIN, "redocly"), "lint", "--config",
         os.path.join(d, "redocly.yaml"), path, "--format=json"],
        env=contract.node_env(), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=120)
    try:
        report = json.loads(r.stdout[r.stdout.index("{"):])
    except ValueError:
        raise AssertionError(f"redocly lint printed no JSON report (exit {r.returncode}):\n"
                             f"{r.stdout}{r.stderr}") from None
    problems = [f"{p.get('severity')} {p.get('ruleId')}: {p.get('message')} at "
                f"{[loc.get('pointer') for loc in p.get('location', [])]}"
                for p in report.get("problems", [])
                if not p.get("ignored")]
    return problems, r.returncode


def served(table, name):
    """The document a gateway with `table` serves."""
    path = os.path.join(ENV.dir, f"routes-{name}.json")
    write_routes(path, table)
    gw = ENV.start_gateway(args=["--routes", path], ready_path="/healthz")
    try:
        return harness.get(gw.port, "/openapi.yaml").body
    finally:
        ENV.stop_proc(gw)


def shape(path):
    """A template with its parameter names left out: /v1/echo/{} ."""
    return "/".join("{}" if s.startswith("{") else s for s in path.split("/"))


def item_for(path, spec=None):
    """(template, path item) documenting route path `path`."""
    for template, item in (spec or SPEC)["paths"].items():
        if shape(template) == shape(path):
            return template, item
    raise AssertionError(f"no path item for {path}; paths: {sorted(SPEC['paths'])}")


def deref(node):
    return contract.SpecValidator(SPEC).deref(node)


class LintTest(unittest.TestCase):
    def test_served_document_lints_clean(self):
        problems, rc = lint(SERVED, "served")
        self.assertEqual(problems, [], "redocly lint of the served document")
        self.assertEqual(rc, 0)

    def test_other_tables_lint_clean(self):
        """Tables that leave some components unused (no fib route, no
        publish route, no bodies...) lint clean too."""
        tables = {
            "one-get": {"routes": [
                {"name": "thing", "method": "GET", "path": "/things/{id}", "queue": "q1",
                 "return_headers": ["etag"]}]},
            "fib-elsewhere-and-publish": {"routes": [
                {"name": "f", "kind": "fib", "method": "GET", "path": "/calc/{k}",
                 "queue": "q2"},
                {"name": "p", "method": "PATCH", "path": "/calc/{k}", "queue": "q3",
                 "mode": "publish", "content_types": ["application/json"]},
                {"name": "d", "method": "DELETE", "path": "/calc/{x}/{y}",
                 "exchange": "x", "routing_key": "del.{y}.{x}"}]},
        }
        for name, table in tables.items():
            with self.subTest(table=name):
                problems, rc = lint(served(table, name), name)
                self.assertEqual(problems, [], f"redocly lint of the document for {name}")
                self.assertEqual(rc, 0)

    def test_the_rules_see_generated_operations(self):
        """The scoped rules bite on a generated item: a route operation that
        documents a 405, or a refused method that documents a 200, is an
        error (so the clean lint above means something)."""
        import yaml
        broken = copy.deepcopy(SPEC)
        _, item = item_for("/v1/upper", broken)
        item["post"]["responses"]["405"] = {"$ref": "#/components/responses/MethodNotAllowed"}
        item["get"]["responses"]["200"] = {"$ref": "#/components/responses/RawReply"}
        del item["post"]["responses"]["413"]
        problems, _ = lint(yaml.safe_dump(broken, sort_keys=False).encode(), "broken")
        text = "\n".join(problems)
        for rule in ("rule/route-operations-document-their-answers",
                     "rule/other-methods-on-route-paths-document-only-405",
                     "rule/route-bodies-document-413"):
            self.assertIn(rule, text)


class RoutesTest(unittest.TestCase):
    def test_every_route_is_documented(self):
        for route in ROUTES["routes"]:
            with self.subTest(route=route["name"]):
                self.check_route(route)

    def check_route(self, route):
        name, method = route["name"], route["method"].lower()
        template, item = item_for(route["path"])
        if template == "/fib/{n}":  # the static item, as in openapi.yaml
            self.assertEqual(item, STATIC["paths"]["/fib/{n}"])
            return
        self.assertIn(name, item["x-routes"])
        names = [s[1:-1] for s in template.split("/") if s.startswith("{")]
        own = [s[1:-1] for s in route["path"].split("/") if s.startswith("{")]
        # the path's parameters, on the item (for every operation)
        item_params = [deref(p) for p in item["parameters"]]
        self.assertEqual([p["name"] for p in item_params if p["in"] == "path"], names)
        self.assertIn("timeout_ms", [p["name"] for p in item_params])
        ops = [method] + (["head"] if method == "get" else [])
        for m in ops:
            op = item[m]
            self.assertEqual(op["x-route"], name)
            self.assertEqual(op["operationId"], name + ("~head" if m == "head" else ""))
            params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
            for k, pname in enumerate(names):
                p = params[("path", pname)]
                self.assertTrue(p["required"])
                in_key = pname in names and f"{{{own[k]}}}" in route.get("routing_key", "")
                if route.get("kind") == "fib":
                    self.assertEqual(p["schema"]["pattern"], "^[0-9]+$")
                elif in_key:
                    self.assertEqual(p["schema"]["pattern"], KEY_PATTERN)
                    self.assertIn("invalid_param", p["description"])
                else:
                    self.assertNotIn("pattern", p["schema"])
                if route.get("kind") != "fib":
                    self.assertIn(f"x-param-{own[k]}", p["description"])
            for h in route.get("forward_headers", []):
                self.assertIn(("header", h), params)
            responses = op["responses"]
            self.assertNotIn("405", responses)
            for status in ("400", "502", "503", "504"):
                self.assertIn(status, responses)
            publish = route.get("mode") == "publish"
            fib = route.get("kind") == "fib"
            if fib:
                self.assertEqual(responses["200"], {"$ref": "#/components/responses/Fib"})
            elif publish:
                self.assertEqual(responses["202"],
                                 {"$ref": "#/components/responses/Accepted"})
                self.assertNotIn("200", responses)
                self.assertNotIn("default", responses)
            else:
                for status in ("200", "default"):
                    resp = deref(responses[status])
                    self.assertIn("*/*", resp["content"])
                    for h in route.get("return_headers", []):
                        self.assertIn(h, resp["headers"])
            body = route["method"] in BODY_METHODS and m != "head" and not fib
            if body:
                content = op["requestBody"]["content"]
                types = route.get("content_types") or ["*/*"]
                self.assertEqual(sorted(content), sorted(types))
                for t in types:
                    self.assertEqual(content[t]["schema"]["maxLength"],
                                     route.get("max_body_bytes", 1048576))
                self.assertIn("413", responses)
                self.assertEqual("415" in responses, bool(route.get("content_types")))
            else:
                self.assertNotIn("requestBody", op)
                self.assertNotIn("413", responses)

    def test_other_methods_answer_405_with_their_allow(self):
        for template, item in SPEC["paths"].items():
            if "x-routes" not in item:
                continue
            served = set()
            for route in ROUTES["routes"]:
                if shape(route["path"]) == shape(template):
                    served.add(route["method"])
                    if route["method"] == "GET":
                        served.add("HEAD")
            allow = ", ".join(m.upper() for m in METHODS if m.upper() in served)
            for m in METHODS:
                with self.subTest(path=template, method=m):
                    op = item[m]
                    if m.upper() in served:
                        self.assertIn("x-route", op)
                        continue
                    self.assertNotIn("x-route", op)
                    # 405, and the 401 that comes before the path is
                    # looked at when a token is required
                    self.assertEqual(sorted(op["responses"]), ["401", "405"])
                    headers = op["responses"]["405"]["headers"]
                    self.assertEqual(headers["Allow"]["schema"]["enum"], [allow])

    def test_routes_json_and_document_agree(self):
        listed = harness.get(GW.port, "/routes.json").json["routes"]
        documented = {op["x-route"] for item in SPEC["paths"].values()
                      for m, op in item.items() if m in METHODS and "x-route" in op}
        documented.add("fib")  # the static item carries no x-route
        self.assertEqual(sorted(r["name"] for r in listed), sorted(documented))
        ids = [op["operationId"] for item in SPEC["paths"].values()
               for m, op in item.items() if m in METHODS]
        self.assertEqual(len(ids), len(set(ids)), "operationIds are unique")


class StaticPartsTest(unittest.TestCase):
    def test_static_parts_are_unchanged(self):
        for key in ("openapi", "info", "servers", "security", "tags", "components"):
            self.assertEqual(SPEC[key], STATIC[key], key)
        for path, item in STATIC["paths"].items():
            self.assertEqual(SPEC["paths"].get(path), item, path)
        # the served text is the file's, with lines added in one place
        with open(contract.SPEC_PATH, "rb") as f:
            static = f.read()
        head = static[:static.index(b"  # @routes here")]
        tail = static[static.index(b"\n  /healthz:"):]
        self.assertTrue(SERVED.startswith(head))
        self.assertTrue(SERVED.endswith(tail))

    def test_without_routes_the_file_itself(self):
        gw = ENV.start_gateway(ready_path="/healthz")
        try:
            r = harness.get(gw.port, "/openapi.yaml")
            with open(contract.SPEC_PATH, "rb") as f:
                self.assertEqual(r.body, f.read(),
                                 "the gateway serves a stale openapi.yaml: rebuild it")
        finally:
            ENV.stop_proc(gw)


class RefusedTest(unittest.TestCase):
    def test_a_refused_table_leaves_the_document(self):
        """A table the gateway cannot put in use (more queues than it can
        watch) is refused after its document was made: the one served
        stays, and the refused table's memory is freed (ASan's leak check
        at the gateway's exit)."""
        table = {"routes": [{"name": f"q{i}", "method": "POST", "path": f"/q/{i}",
                             "queue": f"spec_many_{i}"} for i in range(65)]}
        refused = len(GW.events("routes_refused"))
        try:
            write_routes(ENV.routes_file, table)
            GW.signal(signal.SIGHUP)
            events = GW.wait_events("routes_refused", count=refused + 1, timeout=20)
            self.assertIn("watched", events[-1].get("reason", ""), events[-1])
            self.assertEqual(harness.get(GW.port, "/openapi.yaml").body, SERVED)
        finally:
            loaded = len(GW.events("routes_loaded"))
            write_routes(ENV.routes_file, ROUTES)
            GW.signal(signal.SIGHUP)
            GW.wait_events("routes_loaded", count=loaded + 1, timeout=20)
        GW.stopped_by_us = False  # SIGHUP is no stop
        self.assertTrue(GW.running())


def big_table():
    """256 routes with 32 content types, forwarded and returned headers
    each: a document of some 10 MB, more than the kernel takes into a
    loopback socket's send buffer (4 MB at most by default), so that the
    gateway still holds most of it while a reader is slow."""
    return {"routes": [
        {"name": f"r{i:03d}", "method": "POST", "path": f"/big/{i}/{{a}}",
         "queue": "spec_big",
         "content_types": [f"application/x-{k:02d}" for k in range(32)],
         "forward_headers": [f"x-fwd-{k:02d}" for k in range(32)],
         "return_headers": [f"x-ret-{k:02d}" for k in range(32)]} for i in range(256)]}


def wmem_max():
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


class ReloadTest(unittest.TestCase):
    def test_reload_serves_the_new_document_and_finishes_the_old(self):
        import yaml
        path = os.path.join(ENV.dir, "big-routes.json")
        write_routes(path, big_table())
        gw = ENV.start_gateway(args=["--routes", path], ready_path="/healthz")
        try:
            old = harness.get(gw.port, "/openapi.yaml").body
            if len(old) < 2 * wmem_max():
                self.skipTest(f"the document ({len(old)} bytes) would fit in the "
                              f"kernel's send buffer (tcp_wmem max {wmem_max()})")
            # A reader that asks, takes a little and then waits.
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", gw.port))
            s.settimeout(30)
            s.sendall(b"GET /openapi.yaml HTTP/1.1\r\nHost: t\r\n"
                      b"X-Request-Id: slow-reader\r\nConnection: close\r\n\r\n")
            data = s.recv(1024)
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
            # Another table in use meanwhile: the old one's last user is
            # this answer, still being sent (its access line comes after).
            write_routes(path, ROUTES)
            loaded = len(gw.events("routes_loaded"))
            gw.signal(signal.SIGHUP)
            gw.wait_events("routes_loaded", count=loaded + 1, timeout=60)
            self.assertEqual([e for e in gw.events("request")
                              if e.get("request_id") == "slow-reader"], [],
                             "the answer was all sent before the reload: nothing tested")
            new = harness.get(gw.port, "/openapi.yaml").body
            self.assertEqual(new, SERVED, "after the reload: the new table's document")
            self.assertIn("/v1/upper", yaml.safe_load(new)["paths"])
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            s.close()
            body = data[data.index(b"\r\n\r\n") + 4:]
            self.assertEqual(len(body), len(old))
            self.assertTrue(body == old, "the answer begun before the reload changed")
            gw.stopped_by_us = False  # SIGHUP is no stop
            self.assertTrue(gw.running())
        finally:
            ENV.stop_proc(gw)


if __name__ == "__main__":
    contract.need_python_modules()
    contract.npm_tools()
    harness.main()
