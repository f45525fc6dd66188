"""fakes.py - small fake RPC servers for the failure tests: peers that
misbehave on purpose (never reply, reply garbage, reply twice, reply under an
unknown correlation id, reply late, reply with a worker error).

Each fake is a thread with its own pika connection, consuming one queue
(declared durable, as fib-worker does) with auto-ack.  For every request it
records Request(time, body, props, n) and sends the replies its plan() returns;
delayed replies are timers on the fake's own connection, so the fake never
blocks and many calls can be pending at once.  Only the fake's thread touches
its connection.  Start with start_and_wait(), stop with stop() (stop_all()
stops every fake still running; it also runs at exit).  Any thread may call
snapshot(), wait_for(), sent() and stop().
"""

import atexit
import collections
import json
import threading
import time
import uuid

import harness
import pika

ERROR_CONTENT_TYPE = "application/vnd.fibrpc.error+json"
SAME = object()  # Reply.correlation_id: the request's own correlation id
NONE = object()  # Reply.correlation_id: no correlation_id property at all

Request = collections.namedtuple("Request", "time body props n")


class Reply:
    """One reply a fake sends: body bytes, content type (None: no property),
    correlation id (SAME, NONE or a string) and a delay in seconds."""

    def __init__(self, body, content_type="text/plain", correlation_id=SAME, delay=0.0):
        self.body = body if isinstance(body, bytes) else str(body).encode()
        self.content_type = content_type
        self.correlation_id = correlation_id
        self.delay = delay

    def __repr__(self):
        return (f"Reply({self.body[:40]!r}, {self.content_type!r}, "
                f"corr={self.correlation_id if isinstance(self.correlation_id, str) else '-'}, "
                f"delay={self.delay})")


def request_n(body):
    """n from a request body of decimal digits, or None."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    return int(text) if text.isdigit() else None


_FAKES = []


class FakeServer(threading.Thread):
    """Base class: consumes `queue`, records requests, sends plan(request)'s
    replies.  This base never replies (a consumer that holds every call)."""

    kind = "silent"

    def __init__(self, url, queue, declare=True):
        super().__init__(name=f"fake-{self.kind}-{queue}", daemon=True)
        self.url = url
        self.queue = queue
        self.declare = declare
        self.requests = []
        self.replies_sent = 0
        self.error = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._halt = threading.Event()
        self._conn = None
        self._ch = None

    # -- what to answer: subclasses override

    def plan(self, req):
        """The replies for one request (a list of Reply)."""
        return []

    # -- thread

    def run(self):
        try:
            params = pika.URLParameters(self.url)
            params.connection_attempts = 3
            params.retry_delay = 0.5
            self._conn = pika.BlockingConnection(params)
            self._ch = self._conn.channel()
            if self.declare == "exclusive":  # only this connection may read it
                self._ch.queue_declare(self.queue, exclusive=True)
            elif self.declare:
                self._ch.queue_declare(self.queue, durable=True)
            self._ch.basic_consume(self.queue, self._on_message, auto_ack=True)
            self._ready.set()
            while not self._halt.is_set():
                self._conn.process_data_events(time_limit=0.05)
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.error = e
        finally:
            self._ready.set()
            try:
                if self._conn is not None and self._conn.is_open:
                    self._conn.close()
            except Exception:  # noqa: BLE001 - the broker may be gone already
                pass

    def _on_message(self, ch, method, props, body):
        req = Request(time.monotonic(), body, props, request_n(body))
        with self._lock:
            self.requests.append(req)
        for reply in self.plan(req):
            if reply.delay > 0:
                self._conn.call_later(reply.delay,
                                      lambda r=reply, p=props: self._send(p, r))
            else:
                self._send(props, reply)

    def _send(self, req_props, reply):
        if not req_props.reply_to or self._ch is None or not self._ch.is_open:
            return
        kw = {}
        if reply.content_type is not None:
            kw["content_type"] = reply.content_type
        if reply.correlation_id is SAME:
            if req_props.correlation_id is not None:
                kw["correlation_id"] = req_props.correlation_id
        elif reply.correlation_id is not NONE:
            kw["correlation_id"] = reply.correlation_id
        self._ch.basic_publish("", req_props.reply_to, reply.body,
                               pika.BasicProperties(**kw))
        with self._lock:
            self.replies_sent += 1

    # -- control, any thread

    def start_and_wait(self, timeout=harness.READY_TIMEOUT):
        _FAKES.append(self)
        self.start()
        if not self._ready.wait(timeout) or self.error is not None:
            self.stop()
            raise RuntimeError(f"{self.name} failed to start: {self.error!r}")
        return self

    def stop(self, timeout=10.0):
        """Stops consuming and closes the connection (unsent delayed replies
        are dropped).  Idempotent."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def sent(self):
        with self._lock:
            return self.replies_sent

    def wait_for(self, predicate, timeout=10.0):
        """The first recorded Request satisfying predicate(req), or None."""
        deadline = time.monotonic() + timeout
        while True:
            for req in self.snapshot():
                if predicate(req):
                    return req
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def wait_sent(self, count, timeout=10.0):
        """True once at least `count` replies have been sent."""
        deadline = time.monotonic() + timeout
        while self.sent() < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True


class SilentServer(FakeServer):
    """Takes every request off the queue and never replies."""
    kind = "silent"


class FibServer(FakeServer):
    """Replies F(n) correctly, after `delay` seconds (0: at once).  A
    LateServer is a FibServer with a delay longer than the caller waits."""
    kind = "fib"

    def __init__(self, url, queue, delay=0.0, **kw):
        super().__init__(url, queue, **kw)
        self.delay = delay

    def plan(self, req):
        if req.n is None:
            return [Reply(json.dumps({"type": "invalid_argument", "message": "not n"}),
                          ERROR_CONTENT_TYPE, delay=self.delay)]
        return [Reply(harness.fib(req.n), delay=self.delay)]


class LateServer(FibServer):
    """Replies F(n) correctly but only after `delay` seconds."""
    kind = "late"

    def __init__(self, url, queue, delay, **kw):
        super().__init__(url, queue, delay=delay, **kw)


class GarbageServer(FakeServer):
    """Replies with something that is neither digits nor a valid error object.
    `reply` is (body, content_type) for every request, or a callable
    n -> (body, content_type) so one fake can serve many kinds of garbage."""
    kind = "garbage"

    def __init__(self, url, queue, reply=(b"12a", "text/plain"), **kw):
        super().__init__(url, queue, **kw)
        self.reply = reply

    def plan(self, req):
        body, ctype = self.reply(req.n) if callable(self.reply) else self.reply
        return [Reply(body, ctype)]


class WorkerErrorServer(FakeServer):
    """Replies with a contract error reply {"type": ..., "message": ...}
    (content type application/vnd.fibrpc.error+json).  `error` is
    (type, message) for every request, or a callable n -> (type, message)."""
    kind = "worker-error"

    def __init__(self, url, queue, error=("internal", "fake worker failure"), **kw):
        super().__init__(url, queue, **kw)
        self.error_spec = error

    def plan(self, req):
        etype, message = self.error_spec(req.n) if callable(self.error_spec) \
            else self.error_spec
        return [Reply(json.dumps({"type": etype, "message": message}), ERROR_CONTENT_TYPE)]


def wrong_answer(n):
    """A well-formed reply that is not F(n) for this n (nor, in practice, for
    any n near it): what a misrouted reply would carry."""
    return str(harness.fib(n) * 1000 + 777)


class TwiceServer(FakeServer):
    """Replies twice to every request under its correlation id: first F(n),
    then `second(n)` (default: F(n) again, an exact duplicate).  The second
    reply must be dropped by the gateway."""
    kind = "twice"

    def __init__(self, url, queue, second=None, gap=0.0, **kw):
        super().__init__(url, queue, **kw)
        self.second = second
        self.gap = gap

    def plan(self, req):
        first = str(harness.fib(req.n))
        second = self.second(req.n) if self.second is not None else first
        return [Reply(first), Reply(second, delay=self.gap)]


def neighbour_ids(corr, spread=3):
    """The UUIDs within `spread` of corr read as a 128-bit number: what a
    rogue worker would try if ids counted up (it has seen corr, and the
    calls after it would be corr+1, corr+2...)."""
    try:
        v = uuid.UUID(corr).int
    except ValueError:
        return []
    return [str(uuid.UUID(int=(v + d) % (1 << 128)))
            for d in range(-spread, spread + 1) if d != 0]


def bogus_ids(corr):
    """Correlation ids that are not `corr` but look close to it: a fresh
    UUID, corr with one hex digit changed, its numeric neighbours (the ids
    a gateway counting up from a random base would give the next calls:
    with calls in flight, one of those answers would reach the wrong
    caller), corr one character longer, one shorter, and not a UUID at
    all."""
    def changed(s, i):
        if len(s) <= i:
            return s + "0"
        return s[:i] + ("0" if s[i] != "0" else "1") + s[i + 1:]
    return ([str(uuid.uuid4()), changed(corr, 0), changed(corr, 10)]
            + neighbour_ids(corr) + [corr + "0", corr[:-1], "not-a-uuid"])


class UnknownIdServer(FakeServer):
    """Replies to every request with well-formed wrong answers under unknown
    correlation ids (bogus_ids() of the request's id, plus one without any
    correlation id), then, when `then_right` (a bool, or a callable n -> bool),
    F(n) under the right id."""
    kind = "unknown-id"

    def __init__(self, url, queue, then_right=True, **kw):
        super().__init__(url, queue, **kw)
        self.then_right = then_right

    def bogus_per_request(self):
        return len(bogus_ids(str(uuid.uuid4()))) + 1

    def plan(self, req):
        corr = req.props.correlation_id or ""
        wrong = wrong_answer(req.n)
        out = [Reply(wrong, correlation_id=c) for c in bogus_ids(corr)]
        out.append(Reply(wrong, correlation_id=NONE))
        right = self.then_right(req.n) if callable(self.then_right) else self.then_right
        if right:
            out.append(Reply(harness.fib(req.n)))
        return out


def stop_all():
    """Stops every fake started through start_and_wait()."""
    while _FAKES:
        _FAKES.pop().stop()


atexit.register(stop_all)
