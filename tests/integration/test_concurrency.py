#!/usr/bin/env python3
"""test_concurrency.py - 300 requests in flight at once each get their own
right answer, and two workers on one queue share the load."""

import http.client
import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CONCURRENT = 300
MAX_N = 100000  # the default --max-n
ENV = None
GW = None
WORKERS = []


def setUpModule():
    global ENV, GW

    def start(env):
        global GW
        WORKERS.append(env.start_worker())
        WORKERS.append(env.start_worker())
        GW = env.start_gateway()

    ENV = harness.setup_env("concurrency", start)


def tearDownModule():
    harness.teardown_env(ENV)


def request_values():
    """300 distinct n: 0..299 with every third one replaced by a large n
    (~1 ms of GMP work each) so that the work is worth sharing."""
    ns = list(range(CONCURRENT))
    for i in range(0, CONCURRENT, 3):
        ns[i] = MAX_N - i
    assert len(set(ns)) == CONCURRENT
    return ns


class ConcurrencyTest(unittest.TestCase):
    def test_300_concurrent_requests(self):
        ns = request_values()
        results = [None] * len(ns)
        barrier = threading.Barrier(len(ns), timeout=60)

        def one(i, n):
            conn = http.client.HTTPConnection("127.0.0.1", GW.port, timeout=60)
            try:
                conn.connect()
                barrier.wait()  # all connected: send together
                conn.request("GET", f"/fib/{n}")
                resp = conn.getresponse()
                body = resp.read()
                results[i] = (resp.status, resp.getheader("Content-Type"), body)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e
            finally:
                conn.close()

        threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(ns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)

        failures = []
        for n, res in zip(ns, results):
            if not isinstance(res, tuple):
                failures.append(f"n={n}: {res!r}")
                continue
            status, ctype, body = res
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if status != 200 or doc != {"n": n, "fib": str(harness.fib(n))}:
                failures.append(f"n={n}: HTTP {status} {ctype} {body[:120]!r}")
        if failures:
            self.fail(f"{len(failures)} of {len(ns)} concurrent requests failed, e.g.:\n  "
                      + "\n  ".join(failures[:15]))

    def test_two_workers_share_the_load(self):
        # 100 large requests at once: with prefetch 1 neither worker can take
        # them all.  (Counts include what the other test sent.)
        ns = [MAX_N - 1000 - i for i in range(100)]
        errors = []

        def one(n):
            try:
                r = harness.get(GW.port, f"/fib/{n}", timeout=60)
                if r.status != 200:
                    errors.append(harness.show(r))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=one, args=(n,)) for n in ns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])

        served = [w.log().count("msg=served") for w in WORKERS]
        detail = "; ".join(f"{w.name}: {c} 'msg=served' lines" for w, c in zip(WORKERS, served))
        if sum(served) == 0:
            self.fail(f"no 'msg=served' log lines at all ({detail}); worker log sample:\n"
                      + WORKERS[0].log_tail(10))
        for w, c in zip(WORKERS, served):
            self.assertGreater(c, 0, f"{w.name} served nothing: {detail}")


if __name__ == "__main__":
    harness.main()
