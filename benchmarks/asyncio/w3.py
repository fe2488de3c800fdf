#!/usr/bin/env python3
"""W3 on event loops: P socketpairs, one byte in flight in each; every
``loop.add_reader`` callback reads the byte and writes it back.

    w3.py --loop asyncio|fast-asyncio|uvloop|stdlib-selectors [--pairs 100]
          [--seconds 2] [--warmup 0.5]

``stdlib-selectors`` is the reference of benchmarks/run.py's W3: the same
callbacks called from a stdlib ``selectors.DefaultSelector`` select() loop.
Prints one JSON line: events, wall seconds, user and system CPU seconds of
the measured part.
"""

import argparse
import json
import resource
import socket
import sys
import time

SKIP_EXIT = 3


def make_loop(name):
    if name == "asyncio":
        import asyncio
        return asyncio.new_event_loop()
    if name == "fast-asyncio":
        import fastselectors.asyncio
        return fastselectors.asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    raise ValueError(name)


def run(name, pairs, seconds, warmup, events=0):
    socks = [socket.socketpair() for _ in range(pairs)]
    for a, b in socks:
        a.setblocking(False)
        b.setblocking(False)
    state = {"count": 0, "target": 0}
    loop = None if name == "stdlib-selectors" else make_loop(name)

    def make_cb(sock):
        recv, send = sock.recv, sock.send

        def on_ready(*_):
            recv(1)
            send(b"x")
            state["count"] += 1
            if state["count"] == state["target"] and loop is not None:
                loop.stop()
        return on_ready

    def phase(duration, events=0):
        """Run for *duration* seconds (or *events* callbacks); return
        (events, wall, utime, stime)."""
        state["count"] = 0
        state["target"] = events
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        if loop is None:
            deadline = t0 + duration
            select = sel.select
            n = 0
            while True:
                for key, ev in select(1.0):
                    key.data(key, ev)
                n += 1
                if events and state["count"] >= events:
                    break
                if n % 8 == 0 and time.perf_counter() >= deadline:
                    break
        else:
            handle = None if events else loop.call_later(duration,
                                                         loop.stop)
            loop.run_forever()
            if handle is not None:
                handle.cancel()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        return (state["count"], wall, r1.ru_utime - r0.ru_utime,
                r1.ru_stime - r0.ru_stime)

    if loop is None:
        import selectors
        sel = selectors.DefaultSelector()
        for a, b in socks:
            sel.register(a, selectors.EVENT_READ, lambda k, e, cb=make_cb(a):
                         cb())
            sel.register(b, selectors.EVENT_READ, lambda k, e, cb=make_cb(b):
                         cb())
    else:
        for a, b in socks:
            loop.add_reader(a.fileno(), make_cb(a))
            loop.add_reader(b.fileno(), make_cb(b))
    for a, _ in socks:
        a.send(b"x")
    if warmup > 0:
        phase(warmup)
    events, wall, utime, stime = phase(seconds, events)
    if loop is not None:
        for a, b in socks:
            loop.remove_reader(a.fileno())
            loop.remove_reader(b.fileno())
        loop.close()
    else:
        sel.close()
    for a, b in socks:
        a.close()
        b.close()
    return {"loop": name, "pairs": pairs, "events": events,
            "seconds": wall, "utime": utime, "stime": stime}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", required=True,
                        choices=("asyncio", "fast-asyncio", "uvloop",
                                 "stdlib-selectors"))
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--events", type=int, default=0,
                        help="run this many callbacks instead of --seconds")
    args = parser.parse_args(argv)
    try:
        result = run(args.loop, args.pairs, args.seconds, args.warmup,
                     args.events)
    except ImportError as exc:
        print("SKIP {}: {}".format(args.loop, exc), file=sys.stderr)
        return SKIP_EXIT
    if args.loop == "fast-asyncio":
        import fastselectors
        result["backend"] = fastselectors.BACKEND
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
