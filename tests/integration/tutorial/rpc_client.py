#!/usr/bin/env python
# The RabbitMQ tutorial's RPC client ("Remote procedure call (RPC)", Python
# with pika), rewritten faithfully from the tutorial text.  The one change:
# the broker comes from argv[1] (or $AMQP_URL) instead of host='localhost'.
# Used by test_tutorial_compat.py against our fib-worker.
import os
import sys
import uuid

import pika

url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get('AMQP_URL', 'amqp://localhost')


class FibonacciRpcClient(object):

    def __init__(self):
        self.connection = pika.BlockingConnection(pika.URLParameters(url))

        self.channel = self.connection.channel()

        result = self.channel.queue_declare(queue='', exclusive=True)
        self.callback_queue = result.method.queue

        self.channel.basic_consume(
            queue=self.callback_queue,
            on_message_callback=self.on_response,
            auto_ack=True)

        self.response = None
        self.corr_id = None

    def on_response(self, ch, method, props, body):
        if self.corr_id == props.correlation_id:
            self.response = body

    def call(self, n):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange='',
            routing_key='rpc_queue',
            properties=pika.BasicProperties(
                reply_to=self.callback_queue,
                correlation_id=self.corr_id,
            ),
            body=str(n))
        while self.response is None:
            self.connection.process_data_events(time_limit=None)
        return int(self.response)


fibonacci_rpc = FibonacciRpcClient()

print(" [x] Requesting fib(30)")
response = fibonacci_rpc.call(30)
print(f" [.] Got {response}")
