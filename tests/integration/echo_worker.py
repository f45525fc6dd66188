#!/usr/bin/env python3
"""echo_worker.py - a raw-route worker for the tests (run as its own
process by test_routes.py): answers each request on QUEUE after what the
request's own headers ask, so that one worker can play every part.

- x-want-status: the reply's x-http-status, sent as an AMQP integer when it
  is digits ("201"), else as the string itself ("abc"); absent: none.
- x-want-status-text: the same, always as a string ("404").
- x-want-type: the reply's content_type; absent: the request's.
- x-want-meta: "1": the body is JSON describing the request (its headers,
  content type and encoding, body length and a checksum) instead of the
  request's own body.
- x-want-error: the reply is a worker error of that type.
- x-want-cache: the value of the reply's x-cache (absent: HIT).
Every reply carries x-cache: HIT, X-Count: 7 (an integer; capitalised:
return_headers names match in any case) and x-evil: a
value with a CR LF in it (which the gateway must never pass on).

    echo_worker.py AMQP_URL QUEUE"""
import hashlib
import json
import sys

import pika

url, queue = sys.argv[1], sys.argv[2]
conn = pika.BlockingConnection(pika.URLParameters(url))
channel = conn.channel()
channel.queue_declare(queue, durable=True)
channel.basic_qos(prefetch_count=16)


def text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def on_request(ch, method, props, body):
    h = {k: text(v) for k, v in (props.headers or {}).items()}
    out = {"x-cache": h.get("x-want-cache", "HIT"), "X-Count": 7,
           "x-evil": "a\r\nSet-Cookie: pwned=1"}
    status = h.get("x-want-status")
    if status is not None:
        out["x-http-status"] = int(status) if status.isdigit() else status
    if "x-want-status-text" in h:
        out["x-http-status"] = h["x-want-status-text"]
    ctype = h.get("x-want-type", props.content_type)
    if h.get("x-want-error"):
        ctype = "application/vnd.fibrpc.error+json"
        body = json.dumps({"type": h["x-want-error"], "message": "as asked"}).encode()
    elif h.get("x-want-meta") == "1":
        body = json.dumps({
            "headers": {k: v for k, v in h.items() if isinstance(v, str)},
            "content_type": props.content_type,
            "content_encoding": props.content_encoding,
            "delivery_mode": props.delivery_mode,
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }).encode()
        ctype = "application/json"
    reply = pika.BasicProperties(correlation_id=props.correlation_id,
                                 content_type=ctype, headers=out)
    ch.basic_ack(method.delivery_tag)
    ch.basic_publish("", props.reply_to, body, reply)


channel.basic_consume(queue, on_request)
print(f"echo_worker: consuming {queue}", flush=True)
channel.start_consuming()
