#!/usr/bin/env python3
"""test_cluster.py - issue 12: a 3-node RabbitMQ cluster, nodes dying under load.

One cluster for the file (scripts/cluster.sh: three nodes on loopback).
Each test has its own quorum request queue, its own gateway(s) and
fib-workers, and puts each on a chosen node (the others' listeners are
suspended while it connects; every program still gets all three URLs and
fails over on its own).  A pool of HTTP clients (harness.Load) calls
/fib/<n> all along and checks every answer: the right F(n), or a documented
problem; a wrong answer, an undocumented answer or a hang fails any test.
Windows are measured from evidence (the gateway's logged ts= of
amqp_disconnected / amqp_connected, the clients' own clocks, broker state),
and printed.  Nodes are numbered 0-2; node i is C.addr(i) in the logs.

  1 kill -9 a node with neither the gateway nor the queue's leader: only
    calls held by the worker on that node may fail
  2 kill -9 the gateway's node: 502 for calls in flight, at once; 503 with
    Retry-After until the gateway is on another node (< 2 s); no hang
  3 kill -9 the queue's leader: no no_server, every call 200
  4 two nodes of three down: every call answered (503/504) by its deadline;
    all is well again once they are back, nothing restarted by hand
  5 rolling restart of all three nodes: >= 99 % 200, nothing wrong
  6 two gateways, one SIGKILLed: the other answers every call 200
  7 a poison request: 502 worker_crashed after the delivery limit, long
    before its timeout; the other calls 200
"""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

QUORUM = ["--queue-type", "quorum"]
TIMEOUT_MS = 5000  # each load call's ?timeout_ms=
# The gateway fails over in ~0.1 s (the first retry goes at once to the next
# node); the issue asks for under 2 s.
FAILOVER_BOUND_S = 2.0
# Scenario 3: leader kills, and gateways counting consumers meanwhile.
LEADER_ROUNDS = int(os.environ.get("FIBRPC_LEADER_ROUNDS", "2"))
LEADER_GATEWAYS = 6
CRASHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crasher.py")
ENV = None
C = None  # the harness.Cluster


def setUpModule():
    global ENV, C
    ENV = harness.setup_env("cluster", nodes=3)
    C = ENV.broker
    say(f"3-node cluster started in {C.start_seconds:.1f} s")


def tearDownModule():
    harness.teardown_env(ENV)


def say(text):
    print(f"\n[cluster] {text}", file=sys.stderr, flush=True)


def node_of(proc):
    """The node a gateway or worker is on now, from its last log line
    saying so (amqp_connected / ready; waits for the first)."""
    msg = "amqp_connected" if "gateway" in proc.name else "ready"
    ev = proc.wait_events(msg)
    return C.index(ev[-1]["node"]) if ev else None


def first_event(proc, msg, after, **match):
    """The first msg= event of proc logged at or after wall time `after`."""
    for e in proc.events(msg):
        if harness.log_time(e) >= after and all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def wait_event(proc, msg, after, timeout=harness.READY_TIMEOUT, **match):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = first_event(proc, msg, after, **match)
        if e is not None:
            return e
        time.sleep(0.02)
    raise AssertionError(f"no {msg} {match} from {proc.name} within {timeout:.0f} s:\n"
                         f"{proc.log_tail()}")


def link_lines(gw):
    """The gateway's log lines about its link and the consumer count."""
    return "".join(ln + "\n" for ln in gw.lines()
                   if any(f"msg={m} " in ln for m in ("amqp_connected", "amqp_disconnected",
                                                       "amqp_failover", "queue_consumers",
                                                       "amqp_channel_closed", "amqp_error")))


def queue_state(queue):
    """What the broker says of `queue` now, for failure messages."""
    try:
        rows = C.rows("queues", "name", "leader", "online", "messages_ready",
                      "messages_unacknowledged", "consumers")
    except RuntimeError as e:
        return f"(list_queues failed: {e})"
    return str([r for r in rows if r["name"] == queue])


def served_ids(worker):
    return {e.get("request_id") for e in worker.events("served")}


def bad(calls):
    """Calls whose answer was wrong, undocumented, or missing (hang)."""
    return [c for c in calls if c.error is not None]


def show_calls(calls, limit=12):
    return "\n".join(f"  {c.request_id} n={c.n} sent {c.sent:.3f} +{c.done - c.sent:.3f}s: "
                     f"{c.status} {c.code or ''} {c.error or ''}" for c in calls[:limit])


class Cluster(unittest.TestCase):
    def setUp(self):
        self.procs = []
        self.load = None
        self.t0 = time.monotonic()

    def tearDown(self):
        say(f"{self._testMethodName}: {time.monotonic() - self.t0:.1f} s")
        if self.load is not None:
            self.load.stop()
        for p in self.procs:
            if p.running():
                ENV.stop_proc(p)
        # Every node back, and in the cluster, for the next test.
        for i in range(C.nodes):
            if not C.running(i):
                C.restart_node(i)

    # ---- placing programs

    def place(self, node, queue, workers=0, gateways=0, flags=QUORUM):
        """Starts `workers` fib-workers, then `gateways` gateways, on queue
        `queue`, all on node `node` (each is given all three URLs); checks
        where each landed.  The first worker on a new queue declares it,
        so that node leads it.  Returns (gateways, workers)."""
        ws, gs = [], []
        with C.only(node):
            for _ in range(workers):
                ws.append(ENV.start_worker(queue=queue, args=flags))
                self.procs.append(ws[-1])
            for _ in range(gateways):
                gs.append(ENV.start_gateway(queue=queue, timeout_ms=TIMEOUT_MS))
                self.procs.append(gs[-1])
        for p in ws + gs:
            self.assertEqual(node_of(p), node, p.log_tail())
        return gs, ws

    def deploy(self, queue, gateway, workers):
        """Workers on nodes `workers` (the first declares the queue, so it
        leads there), one gateway on node `gateway`."""
        ws = []
        for n in dict.fromkeys(workers):  # one placement per node
            ws += self.place(n, queue, workers=workers.count(n))[1]
        self.assertEqual(C.wait_quorum(queue, online=3), (workers[0], [0, 1, 2], [0, 1, 2]),
                         "quorum queue (leader, members, online)")
        gw = self.place(gateway, queue, gateways=1)[0][0]
        self.assertEqual(C.gateway_nodes(), [gateway])
        return gw, ws

    def wait_unacked(self, queue, count, timeout=harness.READY_TIMEOUT):
        """Until `queue` has `count` messages delivered and not yet acked."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in C.rows("queues", "name", "messages_unacknowledged")
                    if r["name"] == queue]
            if rows and rows[0]["messages_unacknowledged"] == count:
                return
            self.assertLess(time.monotonic(), deadline, f"{queue}: {rows}")
            time.sleep(0.1)

    def run_load(self, ports, **kw):
        self.load = harness.Load(ports, **kw).start()
        got = self.load.wait_calls(20)
        self.assertGreaterEqual(len(got), 20, harness.summary(self.load.calls()))
        return self.load

    def assert_no_bad(self, calls, what):
        self.assertEqual(bad(calls), [], f"{what}: {harness.summary(calls)}\n"
                                         f"{show_calls(bad(calls))}")

    # ---- 1

    def test_1_kill_a_bystander_node(self):
        q = "cl_bystander"
        gw, (wa, wb) = self.deploy(q, gateway=0, workers=[1, 2])
        load = self.run_load([gw.port])
        killed = time.time()
        C.kill_node(2)
        # wb fails over to a live node; then the service is whole again.
        wait_event(wb, "ready", killed)
        load.wait_calls(200, since=time.time())
        calls = load.stop()
        self.assert_no_bad(calls, "kill -9 of node 2")
        failed = [c for c in calls if c.status != 200]
        say(f"1: kill -9 of the bystander node: {harness.summary(calls)}")
        # Only calls that worker b held when its node died may fail: at
        # most its one unacked request (prefetch 1) and one reply on its
        # way; they time out (504), or come back and are served by a.
        self.assertLessEqual(len(failed), 2, show_calls(failed))
        served_by_a = served_ids(wa)
        for c in failed:
            self.assertEqual((c.status, c.code), (504, "timeout"), show_calls([c]))
            self.assertLess(c.sent, killed, show_calls([c]))
            self.assertNotIn(c.request_id, served_by_a, show_calls([c]))
        self.assertEqual(gw.events("amqp_disconnected"), [], gw.log_tail())

    # ---- 2

    def test_2_kill_the_gateways_node(self):
        q = "cl_gwnode"
        gw, _ = self.deploy(q, gateway=0, workers=[1, 1])
        load = self.run_load([gw.port])
        killed = time.time()
        C.kill_node(0)
        down = wait_event(gw, "amqp_disconnected", killed)
        up = wait_event(gw, "amqp_connected", killed)
        self.assertNotEqual(C.index(up["node"]), 0)
        wait_event(gw, "amqp_failover", killed, **{"from": C.addr(0), "to": up["node"]})
        window = harness.log_time(up) - harness.log_time(down)
        after = load.wait_calls(100, since=time.time())
        calls = load.stop()
        self.assert_no_bad(calls, "kill -9 of the gateway's node")
        since_kill = [c for c in calls if c.done >= killed]
        first_200 = min((c.done for c in since_kill if c.status == 200 and c.sent >= killed),
                        default=None)
        self.assertIsNotNone(first_200)
        inflight = [c for c in since_kill if c.status == 502]
        say(f"2: kill -9 of the gateway's node: link down -> up on node "
            f"{C.index(up['node'])} in {window * 1000:.0f} ms (gateway log); first 200 "
            f"{(first_200 - killed) * 1000:.0f} ms after the kill; calls in flight answered "
            f"502 within {max((c.done - killed for c in inflight), default=0) * 1000:.0f} ms; "
            f"{harness.summary(since_kill)}")
        self.assertLess(window, FAILOVER_BOUND_S, gw.log_tail())
        # The gateway logs amqp_disconnected after it stopped admitting
        # calls; its ts= is cut to the millisecond.
        link_lost = harness.log_time(down) + 0.001
        for c in since_kill:
            self.assertIn((c.status, c.code), {(200, None), (502, "connection_lost"),
                                               (503, "broker_unavailable")}, show_calls([c]))
            if c.status == 502:
                # In flight when the link went, and answered at once (not
                # at its deadline: its reply can never come).
                self.assertLess(c.sent, link_lost, show_calls([c]))
                self.assertLess(c.done - killed, TIMEOUT_MS / 1000 / 2, show_calls([c]))
            if c.status == 503:
                # Only until the gateway is back: no call sent after a
                # caller had a 200 again gets a 503.
                self.assertLess(c.sent, first_200, show_calls([c]))
        self.assertTrue(all(c.status == 200 for c in after), harness.summary(after))
        self.assertEqual(len(gw.events("amqp_disconnected")), 1, gw.log_tail())

    # ---- 3

    def test_3_kill_the_queue_leader(self):
        # While a new leader is elected (~0.2 s here) a passive declare reads
        # 0 consumers; a gateway that counts consumers every second may see
        # that.  Several gateways, several rounds: each a chance to.
        per_round = []
        for r in range(LEADER_ROUNDS):
            q = f"cl_leader{r}"
            _, (wl,) = self.place(1, q, workers=1)  # declares: leads on node 1
            gws = []
            for node in (0, 2):
                g, _ = self.place(node, q, workers=1, gateways=LEADER_GATEWAYS // 2)
                gws += g
            ENV.stop_proc(wl)  # nothing left on node 1 but the leader
            C.wait_consumers(q, 2)
            self.assertEqual(C.leader(q), 1)
            for g in gws:
                ENV.wait_http(g, "/fib/1")  # has seen the consumer count
            load = self.run_load([g.port for g in gws], clients=len(gws))
            killed = time.time()
            C.kill_node(1)
            leader, _, _ = C.wait_quorum(q, online=2, leader_not=1)
            elected = time.time()
            load.wait_calls(50 * len(gws), since=elected)
            calls = load.stop()
            self.load = None
            self.assert_no_bad(calls, f"round {r}: kill -9 of the leader's node")
            zero = [(g.name, e["ts"]) for g in gws
                    for e in g.events("queue_consumers")
                    if e["consumers"] == "0" and harness.log_time(e) >= killed]
            since_kill = [c for c in calls if c.done >= killed]
            slowest = max((c.done - c.sent for c in since_kill), default=0)
            say(f"3.{r}: kill -9 of the quorum leader: node {leader} leads (seen "
                f"{(elected - killed) * 1000:.0f} ms after the kill); slowest call "
                f"{slowest * 1000:.0f} ms; gateways that read 0 consumers: {len(zero)} of "
                f"{len(gws)}; {harness.summary(since_kill)}")
            per_round.append((r, calls, zero, gws))
            for p in self.procs:
                if p.running():
                    ENV.stop_proc(p)
            C.restart_node(1)
        for r, calls, zero, gws in per_round:
            failed = [c for c in calls if c.status != 200]
            self.assertEqual(failed, [], f"round {r}: {harness.summary(calls)}\n"
                                         f"{show_calls(failed)}\ngateways that read 0 "
                                         f"consumers after the kill: {zero}")

    # ---- 4

    def test_4_two_of_three_nodes_down(self):
        q = "cl_minority"
        gw, _ = self.deploy(q, gateway=0, workers=[1, 2])
        load = self.run_load([gw.port])
        killed = time.time()
        C.kill_node(1)
        C.kill_node(2)
        # Long enough that calls sent after the kill reach their deadline.
        load.wait_calls(load.clients, ok=False, since=killed + TIMEOUT_MS / 1000,
                        timeout=TIMEOUT_MS / 1000 * 2 + 30)
        back = time.time()
        restarts = [threading.Thread(target=C.restart_node, args=(i,)) for i in (1, 2)]
        for t in restarts:
            t.start()
        for t in restarts:
            t.join()
        restarted = time.time()
        C.wait_quorum(q, online=3)
        # Recovered from the first 200 on: every call sent later is a 200.
        first = load.wait_calls(1, since=back, timeout=60)
        self.assertTrue(first, f"no 200 within 60 s of the nodes' return: "
                               f"{harness.summary(load.calls(back))}\n{queue_state(q)}\n"
                               f"--- gateway:\n{link_lines(gw)}")
        recovered = min(c.sent for c in first)
        load.wait_calls(200, since=time.time(), timeout=60)
        calls = load.stop()
        self.assert_no_bad(calls, "two nodes down")
        during = [c for c in calls if killed <= c.sent < recovered]
        after = [c for c in calls if c.sent >= recovered]
        say(f"4: two of three nodes down for {back - killed:.1f} s, restarted in "
            f"{restarted - back:.1f} s, first 200 {recovered - back:.1f} s after the restart "
            f"began; meanwhile {harness.summary(during)}, slowest "
            f"{max(c.done - c.sent for c in during) * 1000:.0f} ms; afterwards "
            f"{harness.summary(after)}")
        # Answered by its deadline (the gateway's timer fires at the deadline;
        # 2 s for the answer to be written on a loaded machine).
        late = [c for c in during if c.done - c.sent > TIMEOUT_MS / 1000 + 2.0]
        self.assertEqual(late, [], show_calls(late))
        for c in during:
            self.assertIn(c.status, (503, 504), show_calls([c]))
        not_ok = [c for c in after if c.status != 200]
        self.assertEqual(not_ok, [], f"{harness.summary(after)}\n{show_calls(not_ok)}\n"
                                     f"--- gateway:\n{link_lines(gw)}")

    # ---- 5

    def test_5_rolling_restart(self):
        q = "cl_rolling"
        gw, _ = self.deploy(q, gateway=0, workers=[1, 2])
        load = self.run_load([gw.port])
        t0 = time.time()
        for i in (0, 1, 2):
            C.stop_node(i)
            C.restart_node(i)
            C.wait_quorum(q, online=3)
            load.wait_calls(50, since=time.time())
        calls = load.stop()
        self.assert_no_bad(calls, "rolling restart")
        during = [c for c in calls if c.sent >= t0]
        ok = sum(1 for c in during if c.status == 200)
        say(f"5: rolling restart of 3 nodes in {time.time() - t0:.1f} s: "
            f"{ok / len(during) * 100:.2f} % 200; {harness.summary(during)}")
        self.assertGreaterEqual(ok, 0.99 * len(during), f"{harness.summary(during)}\n"
                                                        f"--- gateway:\n{link_lines(gw)}")

    # ---- 6

    def test_6_two_gateways_one_killed(self):
        q = "cl_twogw"
        (ga,), _ = self.place(0, q, workers=1, gateways=1)
        (gb,), _ = self.place(1, q, workers=1, gateways=1)
        self.assertEqual(C.gateway_nodes(), [0, 1])
        load = self.run_load([ga.port, gb.port])
        ga.signal(signal.SIGKILL)
        killed = time.time()
        load.wait_calls(200, since=killed)
        calls = load.stop()
        of_b = [c for c in calls if c.port == gb.port]
        say(f"6: one of two gateways SIGKILLed: the other: {harness.summary(of_b)}")
        self.assertTrue([c for c in of_b if c.sent >= killed])
        not_ok = [c for c in of_b if c.status != 200 or c.error]
        self.assertEqual(not_ok, [], show_calls(not_ok))
        self.assert_no_bad([c for c in calls if c.port == ga.port and c.done < killed],
                           "the killed gateway before the kill")

    # ---- 7

    def test_7_poison_request(self):
        q = "cl_poison"
        poison, poison_timeout_ms = 77, 30000
        _, (w,) = self.place(2, q, workers=1, flags=QUORUM + ["--delivery-limit", "2"])
        (gw,), _ = self.place(0, q, gateways=1)
        load = self.run_load([gw.port])
        # The crasher must get the poison: it consumes with a higher priority,
        # and the poison goes while no other call is in flight.
        load.pause()
        self.wait_unacked(q, 0)
        crasher = ENV.start_python("crasher", CRASHER, [C.url, q, str(poison), "10"])
        self.procs.append(crasher)
        C.wait_consumers(q, 2, procs=[crasher])
        t0 = time.monotonic()
        call = harness.Call(gw.port, f"/fib/{poison}?timeout_ms={poison_timeout_ms}",
                            timeout=poison_timeout_ms / 1000 + 30)
        self.assertEqual(crasher.wait(60), 3, crasher.log_tail())
        crasher.stopped_by_us = crasher.checked = True  # it was meant to die
        self.assertIn(f"crashing on n={poison}", crasher.log())
        load.resume()
        call.join(poison_timeout_ms / 1000 + 30)
        self.assertIsNone(call.error)
        elapsed = call.done_at - t0
        harness.assert_problem(self, call.resp, 502, "worker_crashed", "poison call")
        load.wait_calls(100, since=time.time())
        calls = load.stop()
        say(f"7: poison request answered 502 worker_crashed in {elapsed * 1000:.0f} ms "
            f"(timeout {poison_timeout_ms} ms); other calls: {harness.summary(calls)}")
        self.assertLess(elapsed, poison_timeout_ms / 1000 / 2)
        ev = w.wait_events("rejected", error="worker_crashed")
        self.assertEqual(len(ev), 1, w.log_tail())
        self.assertEqual(ev[0]["delivered_before"], "1")
        not_ok = [c for c in calls if c.status != 200 or c.error]
        self.assertEqual(not_ok, [], show_calls(not_ok))


if __name__ == "__main__":
    harness.main()
