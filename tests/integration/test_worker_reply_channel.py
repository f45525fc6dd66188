#!/usr/bin/env python3
"""test_worker_reply_channel.py - issue 12: a reply that cannot be
delivered must not take the worker down.

On a cluster, a worker replying to a direct reply-to address whose
gateway's node died gets its channel crashed and its connection closed
(541 INTERNAL_ERROR); the unacked request then came back and did the same
to the next worker, for ever.  fib-worker acks before it replies, and
replies on a channel of its own:

- a reply-to address naming a node that does not exist (what a dead node's
  address looks like to the survivors) gives the same 541 on one node: the
  request is acked once and never comes back, the worker reconnects and
  keeps serving;
- a reply the broker refuses on the channel level (here: the worker's user
  may not write to the default exchange) closes only the reply channel: the
  worker reopens it, stays connected and consuming, the request is acked,
  and it serves again once replies may go out."""

import base64
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pika  # noqa: E402

QUEUE = "fibrpc_reply_channel"
ENV = None
GW = None


def setUpModule():
    global ENV, GW

    def start(env):
        global GW
        env.broker.declare_queue(QUEUE)

    ENV = harness.setup_env("reply-channel", start)


def tearDownModule():
    harness.teardown_env(ENV)


def dead_node_reply_to():
    """A direct reply-to address as RabbitMQ 3.10 writes them (a pid and a
    key, base64), naming the node hash of no node in this cluster."""
    pid = (b"\x83Xv\x00\x0freply@999999999"  # NEW_PID_EXT, atom 'reply@<hash>'
           b"\x00\x00\x02\xd8\x00\x00\x00\x00k\x12IA")
    return f"amq.rabbitmq.reply-to.{base64.b64encode(pid).decode()}.uIHLyZLCv3ahd9W36Wbcg=="


def publish(url, body, reply_to, corr):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        conn.channel().basic_publish("", QUEUE, body, pika.BasicProperties(
            reply_to=reply_to, correlation_id=corr))
    finally:
        conn.close()


class ReplyChannel(unittest.TestCase):
    def test_1_dead_node_address(self):
        worker = ENV.start_worker(queue=QUEUE)
        gw = ENV.start_gateway(queue=QUEUE)
        publish(ENV.url, b"11", dead_node_reply_to(), "to-a-dead-node")
        self.assertTrue(worker.wait_events("served", corr="to-a-dead-node"), worker.log_tail())
        # The broker closes the connection over it; the worker comes back.
        self.assertTrue(worker.wait_events("ready", count=2, timeout=30), worker.log_tail())
        # It serves (the gateway's calls go through it) and the poisoned
        # request never came back: the old worker served it again and
        # again, several times a second, each time losing its connection.
        for n in range(20):
            r = harness.get(gw.port, f"/fib/{n}")
            self.assertEqual((r.status, r.json["fib"]), (200, str(harness.fib(n))),
                             harness.show(r))
        self.assertEqual(len([e for e in worker.events("served")
                              if e.get("corr") == "to-a-dead-node"]), 1, worker.log_tail())
        self.assertEqual(len(worker.events("ready")), 2, worker.log_tail())
        self.assertEqual(ENV.broker.queue_info(QUEUE), (0, 1))
        ENV.stop_proc(gw)
        ENV.stop_proc(worker)

    def test_2_refused_reply_closes_only_the_reply_channel(self):
        b = ENV.broker
        b.ctl("add_user", "noreply", "noreply-pw")
        # May consume and declare, may not publish (write) anywhere: the
        # default exchange's name is "", so no pattern matching "" either.
        b.ctl("set_permissions", "-p", "/", "noreply", ".*", "^nothing$", ".*")
        url = ENV.url.replace("guest:guest", "noreply:noreply-pw")
        metrics_port = harness.free_port()
        worker = ENV.start_worker(queue=QUEUE, args=[
            "--amqp-url", url, "--metrics-listen", f"127.0.0.1:{metrics_port}"])
        gw = ENV.start_gateway(queue=QUEUE, ready_path="/healthz")
        # /healthz answers before the gateway's AMQP link is up: wait for
        # it (and the worker's consumer), or the first call is 503.
        ENV.wait_consumers_seen(gw)
        for i in (1, 2):  # twice: the second goes out on the reopened channel
            r = harness.get(gw.port, "/fib/10?timeout_ms=1500")
            harness.assert_problem(self, r, 504, "timeout", f"refused reply {i}")
            self.assertEqual(len(worker.wait_events("reply_undeliverable", count=i)), i,
                             worker.log_tail())
        self.assertEqual(worker.events("disconnected"), [], worker.log_tail())
        self.assertEqual(len(worker.events("ready")), 1, worker.log_tail())
        self.assertEqual(b.queue_info(QUEUE), (0, 1))  # acked, still consuming
        m = harness.get(metrics_port, "/metrics").body.decode()
        self.assertIn("fibw_amqp_reconnects_total 0\n", m)
        self.assertIn("fibw_amqp_connected 1\n", m)
        # Replies allowed again: the same connection, the reopened channel.
        b.ctl("set_permissions", "-p", "/", "noreply", ".*", ".*", ".*")
        deadline = time.monotonic() + 30
        while True:
            r = harness.get(gw.port, "/fib/10?timeout_ms=1500")
            if r.status == 200 or time.monotonic() > deadline:
                break
        self.assertEqual((r.status, r.json.get("fib")), (200, "55"), harness.show(r))
        self.assertEqual(len(worker.events("ready")), 1, worker.log_tail())


if __name__ == "__main__":
    unittest.main()
