#!/usr/bin/env python3
"""asyncio servers for benchmarks/asyncio/run.py, one loop per process.

    aioservers.py --loop asyncio|fast-asyncio|uvloop --app APP [--port 0]

APP:
    http        benchmarks/http's HttpProtocol (wrk, keep-alive, 78 bytes per
                answer, one write() per answer)
    http-split  the same answers written as two write() calls, head then
                body (what most frameworks do)
    echo        asyncio.start_server streams echo: read(65536), write(),
                await drain()
    resp        a RESP (Redis protocol) server answering PING (inline and
                multibulk) with +PONG, for redis-benchmark

The port is printed on stdout; the server stops when stdin is closed (or
after --max-seconds) and then prints {"requests": N, ...} as its last line.
"""

import argparse
import asyncio
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "http"))

from servers import BAD, HttpProtocol, RequestParser, Stats, reply  # noqa

SKIP_EXIT = 3
HEAD = (b"HTTP/1.1 200 OK\r\n"
        b"Content-Length: 13\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n")
BODY = b"Hello, World!"


class SplitHttpProtocol(HttpProtocol):
    """HttpProtocol whose answers leave as two write()s each."""

    __slots__ = ()

    def data_received(self, data):
        n, after = self.parser.feed(data)
        if n:
            Stats.requests += n
            write = self.transport.write
            for _ in range(n):
                write(HEAD)
                write(BODY)
        if after == BAD:
            self.transport.write(reply(0, BAD))
        if after:
            self.transport.close()


class RespProtocol(asyncio.Protocol):
    """PING -> +PONG; enough of CONFIG GET for redis-benchmark's start;
    anything else -> an error reply.  Inline and multibulk requests."""

    __slots__ = ("transport", "buf", "conns")

    def __init__(self, conns):
        self.conns = conns
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport
        self.conns.add(self)
        Stats.connections += 1

    def connection_lost(self, exc):
        self.conns.discard(self)

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        # The benchmark's fast path: whole PINGs only.
        if buf == b"*1\r\n$4\r\nPING\r\n" or buf == b"PING\r\n":
            self.buf = b""
            Stats.requests += 1
            self.transport.write(b"+PONG\r\n")
            return
        out = []
        pos = 0
        while True:
            cmd, pos2 = self._parse(buf, pos)
            if cmd is None:
                break
            pos = pos2
            out.append(self._answer(cmd))
        self.buf = buf[pos:]
        if out:
            self.transport.write(b"".join(out))

    @staticmethod
    def _parse(buf, pos):
        """(list of args, next pos) or (None, pos) if incomplete."""
        if pos >= len(buf):
            return None, pos
        if buf[pos:pos + 1] != b"*":
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None, pos
            return buf[pos:end].split(), end + 2
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, pos
        count = int(buf[pos + 1:end])
        args = []
        pos = end + 2
        for _ in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None, pos
            size = int(buf[pos + 1:end])
            start = end + 2
            if len(buf) < start + size + 2:
                return None, pos
            args.append(buf[start:start + size])
            pos = start + size + 2
        return args, pos

    @staticmethod
    def _answer(cmd):
        name = cmd[0].upper() if cmd else b""
        if name == b"PING":
            Stats.requests += 1
            return b"+PONG\r\n"
        if name == b"CONFIG" and len(cmd) == 3:
            key = cmd[2]
            value = b"no" if key == b"appendonly" else b""
            return b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(key), key, len(value), value)
        return b"-ERR unknown command\r\n"


async def echo_handler(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            Stats.requests += 1
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(app, host, port, max_seconds):
    loop = asyncio.get_running_loop()
    conns = set()
    if app == "echo":
        server = await asyncio.start_server(echo_handler, host, port,
                                            backlog=1024)
    else:
        proto = {"http": HttpProtocol, "http-split": SplitHttpProtocol,
                 "resp": RespProtocol}[app]
        server = await loop.create_server(lambda: proto(conns), host, port,
                                          backlog=1024)
    stop = loop.create_future()
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def on_stdin():
        try:
            if not os.read(fd, 4096):
                loop.remove_reader(fd)
                if not stop.done():
                    stop.set_result(None)
        except BlockingIOError:
            pass
    loop.add_reader(fd, on_stdin)
    print(server.sockets[0].getsockname()[1], flush=True)
    try:
        await asyncio.wait_for(stop, max_seconds)
    except asyncio.TimeoutError:
        pass
    finally:
        server.close()
        for proto in list(conns):
            proto.transport.abort()


def run(loop_name, main):
    if loop_name == "asyncio":
        asyncio.run(main)
    elif loop_name == "fast-asyncio":
        import fastselectors.asyncio
        fastselectors.asyncio.run(main)
    else:
        import uvloop
        uvloop.run(main)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", required=True,
                        choices=("asyncio", "fast-asyncio", "uvloop"))
    parser.add_argument("--app", required=True,
                        choices=("http", "http-split", "echo", "resp"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    try:
        if args.loop == "uvloop":
            import uvloop  # noqa: F401
        elif args.loop == "fast-asyncio":
            import fastselectors.asyncio  # noqa: F401
    except ImportError as exc:
        print("SKIP {}: {}".format(args.loop, exc), file=sys.stderr)
        return SKIP_EXIT
    t0 = time.process_time()
    run(args.loop, serve(args.app, args.host, args.port, args.max_seconds))
    info = {"requests": Stats.requests, "connections": Stats.connections,
            "cpu": time.process_time() - t0}
    if args.loop == "fast-asyncio":
        import fastselectors
        info["backend"] = fastselectors.BACKEND
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
