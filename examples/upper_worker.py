#!/usr/bin/env python3
"""A worker for an rpc-gateway raw route, in Python with pika: it answers
each request with its body in upper case, and the same content type.

    ./upper_worker.py [AMQP_URL [QUEUE]]   (defaults: the environment's
    AMQP_URL and QUEUE, else amqp://guest:guest@localhost:5672/ and upper_queue)

The contract (README, "Raw routes"): reply to props.reply_to with the
request's correlation_id; the reply's body and content_type become the HTTP
response's; the header x-http-status sets its status (default 200)."""
import os
import sys

import pika

args = sys.argv[1:] + [None, None]
url = args[0] or os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
queue = args[1] or os.environ.get("QUEUE", "upper_queue")
conn = pika.BlockingConnection(pika.URLParameters(url))
channel = conn.channel()
channel.queue_declare(queue, durable=True)
channel.basic_qos(prefetch_count=1)  # one call at a time: fair dispatch


def on_request(ch, method, props, body):
    reply = pika.BasicProperties(correlation_id=props.correlation_id,
                                 content_type=props.content_type,
                                 headers={"x-http-status": 200})
    # Ack first: if the caller is gone, its reply is lost either way.
    ch.basic_ack(method.delivery_tag)
    ch.basic_publish("", props.reply_to, body.upper(), reply)


channel.basic_consume(queue, on_request)
print(f"upper_worker: consuming {queue}", flush=True)
channel.start_consuming()
