#!/usr/bin/env python3
"""crasher.py URL QUEUE POISON_N [PRIORITY] - a worker that dies on one
request: it consumes QUEUE (which must exist: passive declare, so a quorum
queue's arguments do not matter) with manual acks, prefetch 1, and with
consumer priority PRIORITY (x-priority) when given; answers F(n) to any
other n and acks it; on n == POISON_N it prints "crashing" and exits at once
(status 3) without acking, as a worker killed mid-call would.  URL may list
several nodes (comma-separated): the first that answers is used."""

import os
import sys

import pika

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main():
    url, queue, poison = sys.argv[1], sys.argv[2], int(sys.argv[3])
    priority = int(sys.argv[4]) if len(sys.argv) > 4 else None
    conn = pika.BlockingConnection([pika.URLParameters(u) for u in url.split(",")])
    ch = conn.channel()
    ch.queue_declare(queue, passive=True)
    ch.basic_qos(prefetch_count=1)

    def on_request(ch_, method, props, body):
        n = int(body)
        if n == poison:
            print(f"crashing on n={n} corr={props.correlation_id}", flush=True)
            os._exit(3)
        ch_.basic_publish("", props.reply_to, str(harness.fib(n)).encode(),
                          pika.BasicProperties(correlation_id=props.correlation_id,
                                               content_type="text/plain"))
        ch_.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_request,
                     arguments={"x-priority": priority} if priority is not None else None)
    print("consuming", flush=True)
    ch.start_consuming()


if __name__ == "__main__":
    main()
