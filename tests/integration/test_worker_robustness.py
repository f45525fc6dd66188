#!/usr/bin/env python3
"""test_worker_robustness.py - fib-worker survives anything on its queue
(issue 3, point 5): empty, non-digit, negative, huge and binary bodies, and a
message without reply_to.  Every request with a reply_to gets a reply (F(n),
or a contract error reply); the one without is acked, dropped and logged;
only the good request costs compute; nothing is left unacked.

The test publishes straight to the worker's queue with pika and reads the
replies from a reply queue of its own."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pika  # noqa: E402

QUEUE = "fibrpc_robust"
ERROR_CT = "application/vnd.fibrpc.error+json"
ENV = None
WORKER = None

# (label, body, expected): expected is the reply body for a good request, or
# the set of acceptable error types.  Every one of these has a reply_to.
CASES = [
    ("empty", b"", {"invalid_argument"}),
    ("abc", b"abc", {"invalid_argument"}),
    ("negative", b"-1", {"invalid_argument"}),
    # A number, but far too big: either answer is the caller's fault.
    ("1MB-digits", b"7" * (1024 * 1024), {"invalid_argument", "out_of_range"}),
    ("binary", bytes([0x31, 0x00, 0xFF, 0x80, 0x0A]), {"invalid_argument"}),
    ("binary-1KB", bytes(range(256)) * 4, {"invalid_argument"}),
    ("exponent", b"1e3", {"invalid_argument"}),
    ("above-max-n", b"100001", {"out_of_range"}),
    ("23-digits", b"9" * 23, {"out_of_range"}),
    ("space", b" 10", {"invalid_argument"}),
]
GOOD = ("good", b"10", b"55")
# Published last, after GOOD: the worker takes its queue in order, one
# message at a time (prefetch 1), so once the sentinel's reply is here, every
# reply the worker sent to the others (an unwanted second one included) is
# here too, and every log line about them is written.
SENTINEL = ("robust-sentinel", b"11", b"89")
NO_REPLY_TO_BODY = b"7"  # a good n: computing it would be wasted work


def setUpModule():
    global ENV

    def start(env):
        global WORKER
        WORKER = env.start_worker(queue=QUEUE)

    ENV = harness.setup_env("worker-robustness", start)


def tearDownModule():
    harness.teardown_env(ENV)


def log_lines(proc, msg):
    return [ln for ln in proc.lines() if f" msg={msg} " in ln + " "]


class WorkerRobustnessTest(unittest.TestCase):
    maxDiff = None

    def test_hostile_messages(self):
        conn = ENV.broker.connect()
        try:
            self.run_hostile(conn)
        finally:
            if conn.is_open:
                conn.close()

    def run_hostile(self, conn):
        ch = conn.channel()
        reply_q = ch.queue_declare("", exclusive=True).method.queue
        replies = {}  # correlation id -> list of (props, body)

        def on_reply(_ch, _method, props, body):
            replies.setdefault(props.correlation_id, []).append((props, body))

        ch.basic_consume(reply_q, on_reply, auto_ack=True)

        def publish(corr, body, reply_to=True):
            kw = {"correlation_id": corr, "content_type": "text/plain"}
            if reply_to:
                kw["reply_to"] = reply_q
            ch.basic_publish("", QUEUE, body, pika.BasicProperties(**kw))

        # Bad ones first, the one without reply_to among them, the good one
        # last: with prefetch 1 the worker takes them in order, so its reply
        # to the good one means it has handled all the others.
        expected = {}
        for i, (label, body, want) in enumerate(CASES):
            corr = f"robust-{i}-{label}"
            publish(corr, body)
            expected[corr] = (label, want)
            if i == 3:
                publish("robust-no-reply-to", NO_REPLY_TO_BODY, reply_to=False)
        publish("robust-good", GOOD[1])
        expected["robust-good"] = (GOOD[0], GOOD[2])
        publish(SENTINEL[0], SENTINEL[1])

        wanted = set(expected) | {SENTINEL[0]}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not wanted <= set(replies):
            conn.process_data_events(time_limit=0.1)

        missing = sorted(expected[c][0] for c in expected if c not in replies)
        self.assertEqual(missing, [], "requests without a reply; worker log:\n"
                         + WORKER.log_tail(20))
        self.assertEqual([body for _, body in replies.pop(SENTINEL[0], [])], [SENTINEL[2]],
                         "the sentinel's reply; worker log:\n" + WORKER.log_tail(20))
        self.assertNotIn("robust-no-reply-to", replies)
        self.assertEqual(sorted(replies), sorted(expected),
                         "replies to correlation ids nobody used")

        for corr, (label, want) in expected.items():
            with self.subTest(case=label):
                self.assertEqual(len(replies[corr]), 1, f"{label}: replied more than once")
                props, body = replies[corr][0]
                if isinstance(want, bytes):
                    self.assertEqual(body, want, label)
                    self.assertNotEqual(props.content_type, ERROR_CT, label)
                    continue
                self.assertEqual(props.content_type, ERROR_CT, f"{label}: {body[:200]!r}")
                try:
                    err = json.loads(body)
                except ValueError:
                    self.fail(f"{label}: error reply is not JSON: {body[:200]!r}")
                self.assertIsInstance(err, dict, f"{label}: {body[:200]!r}")
                self.assertEqual(set(err), {"type", "message"}, f"{label}: {err}")
                self.assertIn(err["type"], want, f"{label}: {err}")
                self.assertIsInstance(err["message"], str, f"{label}: {err}")
                self.assertTrue(err["message"], f"{label}: empty message")
                self.assertLess(len(body), 1024, f"{label}: the error echoes the request?")

        # The worker is still alive and serving.
        self.assertTrue(WORKER.running(), "fib-worker died:\n" + WORKER.log_tail(20))
        self.assertEqual(ENV.broker.queue_info(QUEUE), (0, 1),
                         "(messages ready, consumers) after all replies")

        # Only the good request cost compute; the one without reply_to was
        # logged and dropped; every bad one was rejected with a log line.
        served = [ln for ln in log_lines(WORKER, "served") if SENTINEL[0] not in ln]
        self.assertEqual(len(served), 1, "msg=served lines:\n" + "\n".join(served))
        self.assertIn(" n=10 ", served[0] + " ")
        dropped = log_lines(WORKER, "dropped")
        self.assertEqual(len(dropped), 1, "msg=dropped lines:\n" + "\n".join(dropped))
        self.assertIn("robust-no-reply-to", dropped[0])
        self.assertEqual(len(log_lines(WORKER, "rejected")), len(CASES),
                         WORKER.log_tail(20))

        # Nothing was left unacked: once the worker is gone, whatever it had
        # not acked would be back in the queue.
        ENV.stop_proc(WORKER)
        self.assertEqual(WORKER.popen.returncode, 0, WORKER.log_tail(20))
        self.assertEqual(ENV.broker.queue_info(QUEUE), (0, 0),
                         "(messages ready, consumers) after the worker stopped: "
                         "a message was left unacknowledged")


if __name__ == "__main__":
    harness.main()
