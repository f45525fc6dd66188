#!/usr/bin/env python3
"""test_lint.py - openapi.yaml is well-formed and complete on paper:
`redocly lint` (recommended rules, redocly.yaml) finds no error and no
warning, and every problem code of gateway/problem.h is in the spec with
its status, and nothing else is.  (That the gateway answers as the spec says
is test_openapi.py's job.)"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract  # noqa: E402
import harness  # noqa: E402

SPEC = None
BIN = None


def setUpModule():
    global SPEC
    SPEC = contract.load_spec()


class LintTest(unittest.TestCase):
    def test_redocly_lint_is_clean(self):
        r = subprocess.run(
            ["npm", "run", "--silent", "lint", "--", "--format=json"],
            cwd=contract.NPM_DIR, env=contract.node_env(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=120)
        try:
            report = json.loads(r.stdout[r.stdout.index("{"):])
        except ValueError:
            self.fail(f"redocly lint printed no JSON report (exit {r.returncode}):\n"
                      f"{r.stdout}{r.stderr}")
        problems = "\n".join(
            f"  {p.get('severity')} {p.get('ruleId')}: {p.get('message')} at "
            f"{[loc.get('pointer') for loc in p.get('location', [])]}"
            for p in report.get("problems", []))
        totals = report["totals"]
        self.assertEqual((totals["errors"], totals["warnings"]), (0, 0),
                         f"redocly lint of openapi.yaml:\n{problems}")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_problem_codes_match_problem_h(self):
        codes = contract.problem_codes()
        schemas = SPEC["components"]["schemas"]
        self.assertEqual(sorted(schemas["ProblemCode"]["enum"]), sorted(codes),
                         "ProblemCode.enum vs gateway/problem.h GW_ERRORS")
        self.assertEqual(sorted(set(schemas["Problem"]["properties"]["status"]["enum"])),
                         sorted(set(codes.values())), "Problem.status.enum vs problem.h")
        description = schemas["ProblemCode"]["description"]
        for code, status in codes.items():
            with self.subTest(code=code):
                self.assertIn(f"`{code}` ({status})", description,
                              "ProblemCode.description lists every code with its status")

        # Every per-status problem schema (XxxProblem: allOf [Problem, {status,
        # code}]) pairs each code with the status problem.h gives it, except
        # that /readyz answers every reason for not being ready with 503.
        seen = set()
        for name, schema in schemas.items():
            if not name.endswith("Problem") or name == "Problem":
                continue
            props = schema["allOf"][1]["properties"]
            (status,) = props["status"]["enum"]
            for code in props["code"]["enum"]:
                seen.add(code)
                with self.subTest(schema=name, code=code):
                    self.assertIn(code, codes)
                    if name != "NotReadyProblem":
                        self.assertEqual(status, codes[code],
                                         f"{name} gives {code} status {status}")
        self.assertEqual(sorted(seen), sorted(codes), "codes without a response schema")

    def test_every_problem_response_is_reachable(self):
        """Every XxxProblem schema backs a response component."""
        used = {r["content"]["application/problem+json"]["schema"]["$ref"].rsplit("/", 1)[1]
                for r in SPEC["components"]["responses"].values()
                if "application/problem+json" in r.get("content", {})}
        wanted = {n for n in SPEC["components"]["schemas"]
                  if n.endswith("Problem") and n != "Problem"}
        self.assertEqual(sorted(wanted - used), [])


if __name__ == "__main__":
    contract.need_python_modules()
    contract.npm_tools()
    harness.main()
