#!/usr/bin/python3
"""many_clients.py - N HTTP/1.1 connections, one GET on each, all at once.

Opens --connections keep-alive connections to the gateway, and only once all
are open sends one request on each, then reads every answer.  Prints one
parseable line:

  many connections=N connected=N answered=N status_200=N other=0 errors=0
       secs_connect=... secs_answer=...

and "connected N" / "sent N" / "answered N" progress lines before it
(flushed, for bench/run.sh).  With --keep-open S the connections stay open
(idle, keep-alive) S seconds after the last answer before they are closed.  Exits 0 when every request was answered 200 with a body
containing --expect.  Python stdlib only; one thread (asyncio).
"""

import argparse
import asyncio
import collections
import resource
import sys
import time


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    if soft < need:
        sys.exit(f"many_clients: open-file limit {soft} < {need}; raise ulimit -n")


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def run(args):
    conns = [None] * args.connections
    errors = collections.Counter()
    statuses = collections.Counter()
    gate = asyncio.Semaphore(args.connect_parallel)

    async def connect(i):
        async with gate:
            for attempt in range(3):
                try:
                    conns[i] = await asyncio.wait_for(
                        asyncio.open_connection(args.host, args.port),
                        args.timeout)
                    return
                except (OSError, asyncio.TimeoutError) as e:
                    if attempt == 2:
                        errors[f"connect:{type(e).__name__}"] += 1
                    else:
                        await asyncio.sleep(0.1)

    t0 = time.monotonic()
    await asyncio.gather(*(connect(i) for i in range(args.connections)))
    t1 = time.monotonic()
    open_ = [c for c in conns if c is not None]
    print(f"connected {len(open_)}", flush=True)

    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               "\r\n").encode()
    for _reader, writer in open_:
        writer.write(request)
    print(f"sent {len(open_)}", flush=True)

    answered = 0

    async def answer(reader, writer):
        nonlocal answered
        try:
            await writer.drain()
            status, body = await asyncio.wait_for(read_response(reader),
                                                  args.timeout)
            answered += 1
            statuses[status] += 1
            if status == 200 and args.expect.encode() not in body:
                errors["bad_body"] += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError, IndexError) as e:
            errors[f"read:{type(e).__name__}"] += 1

    await asyncio.gather(*(answer(r, w) for r, w in open_))
    t2 = time.monotonic()
    print(f"answered {answered}", flush=True)
    if args.keep_open > 0:
        await asyncio.sleep(args.keep_open)
    for _reader, writer in open_:
        writer.close()

    other = sum(v for k, v in statuses.items() if k != 200)
    nerr = sum(errors.values())
    print(f"many connections={args.connections} connected={len(open_)} "
          f"answered={answered} status_200={statuses[200]} other={other} "
          f"errors={nerr} secs_connect={t1 - t0:.2f} secs_answer={t2 - t1:.2f}",
          flush=True)
    if other or nerr:
        detail = dict(statuses)
        detail.pop(200, None)
        print(f"many_clients: statuses={detail} errors={dict(errors)}",
              file=sys.stderr, flush=True)
    return statuses[200] == args.connections and nerr == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/fib/10")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--connect-parallel", type=int, default=256)
    ap.add_argument("--expect", default='"fib":"55"')
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--keep-open", type=float, default=0.0)
    args = ap.parse_args()
    raise_nofile(args.connections + 100)
    ok = asyncio.run(run(args))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
