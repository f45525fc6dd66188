#!/usr/bin/python3
"""slow_worker.py - a deliberately slow fib worker for bench/run.sh.

Consumes a request queue with a large prefetch and holds every request until
it holds --release-at of them (or the oldest has waited --max-hold seconds),
waits --linger seconds more (while bench/run.sh samples the gateway), then
answers them all with the correct F(n) digits and acks.  Requests that come
after that are answered after --hold seconds.  So, with 10,000 callers, all
10,000 calls are provably in flight at once.

Prints "ready" once it consumes, "holding N" when the gate closes and
"released N" when it opens, one line each on stdout (flushed).  Python stdlib plus pika (Debian's
python3-pika); one thread.  Stops on SIGTERM or SIGINT.
"""

import argparse
import signal
import sys
import time

import pika

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

CONTENT_TYPE = "text/plain"  # include/fibrpc.h FIBRPC_REPLY_CONTENT_TYPE
DEADLINE_HEADER = "x-deadline-ms"  # FIBRPC_HDR_DEADLINE_MS


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


class Stop(Exception):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--amqp-url", required=True)
    ap.add_argument("--queue", default="slow_queue")
    ap.add_argument("--release-at", type=int, default=10000)
    ap.add_argument("--max-hold", type=float, default=30.0)
    ap.add_argument("--linger", type=float, default=3.0)
    ap.add_argument("--hold", type=float, default=2.0)
    args = ap.parse_args()

    def on_signal(_sig, _frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    conn = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    ch = conn.channel()
    # Durable, like fib-worker's queue (RabbitMQ 4.x refuses transient
    # non-exclusive queues by default).
    ch.queue_declare(queue=args.queue, durable=True)
    ch.basic_qos(prefetch_count=max(args.release_at, 1) + 1000)

    held = []  # (arrival time, delivery tag, properties, body)
    cache = {}
    state = {"gate": "filling", "since": None}

    def on_message(_ch, method, props, body):
        # A request whose deadline has passed (bench/run.sh's readiness
        # probe) is dropped, so it never counts towards --release-at.
        deadline = (props.headers or {}).get(DEADLINE_HEADER)
        if isinstance(deadline, int) and deadline <= time.time() * 1000:
            ch.basic_ack(delivery_tag=method.delivery_tag)
            return
        held.append((time.monotonic(), method.delivery_tag, props, body))

    def answer(batch):
        last = None
        for _t, tag, props, body in batch:
            try:
                n = int(body)
                text = cache.get(n)
                if text is None:
                    text = cache[n] = str(fib(n)).encode()
            except ValueError:
                text = b""
            if props.reply_to:
                ch.basic_publish(
                    exchange="", routing_key=props.reply_to, body=text,
                    properties=pika.BasicProperties(
                        content_type=CONTENT_TYPE,
                        correlation_id=props.correlation_id))
            last = tag
        if last is not None:
            ch.basic_ack(delivery_tag=last, multiple=True)

    ch.basic_consume(queue=args.queue, on_message_callback=on_message)
    print("ready", flush=True)
    try:
        while True:
            conn.process_data_events(time_limit=0.05)
            now = time.monotonic()
            if state["gate"] == "filling":
                if held and (len(held) >= args.release_at
                             or now - held[0][0] >= args.max_hold):
                    state["gate"], state["since"] = "lingering", now
                    print(f"holding {len(held)}", flush=True)
            elif state["gate"] == "lingering":
                if now - state["since"] >= args.linger:
                    batch, held[:] = list(held), []
                    answer(batch)
                    state["gate"] = "open"
                    print(f"released {len(batch)}", flush=True)
            else:
                due = [m for m in held if now - m[0] >= args.hold]
                if due:
                    held[:] = [m for m in held if now - m[0] < args.hold]
                    answer(due)
    except Stop:
        pass
    finally:
        try:
            conn.close()
        except Exception:  # already gone: nothing to clean up
            pass


if __name__ == "__main__":
    main()
