#!/usr/bin/env python3
"""HTTP/1.1 keep-alive "hello world" servers, one per I/O model, for wrk.

Every variant is single-threaded, uses the same parser (``RequestParser``)
and sends the same bytes (``RESPONSE``) for every request, whatever its
method or path:

    stdlib-selectors  (a) stdlib selectors.DefaultSelector, a select() loop
                          calling key.data(key, events)
    fast-dispatch     (b) fastselectors.DefaultSelector().dispatch(), the
                          same callbacks (``Connection.on_event``)
    asyncio           (c) asyncio.run(), a Protocol (``HttpProtocol``)
    fast-asyncio      (d) fastselectors.asyncio.run(), the same Protocol
    uvloop            (e) uvloop.run(), the same Protocol
    fast-select           (not in the default set) fastselectors'
                          DefaultSelector in (a)'s select() loop: separates
                          the selector's share from dispatch()'s

Run one by hand (the port is printed on stdout; stops after --max-seconds,
on Ctrl-C, or on EOF of stdin with --stop-on-stdin-eof):

    PYTHONPATH=src python3 benchmarks/http/servers.py --impl fast-dispatch --port 8080
    wrk -t1 -c50 -d5s --latency http://127.0.0.1:8080/

``--probe`` prints, as JSON, the interpreter, where fastselectors comes from
and which implementations can run here (and why not).  Exit status 3: the
implementation cannot run in this interpreter (uvloop not installed, ...),
the reason on stderr.
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import time

SKIP_EXIT = 3

RESPONSE = (b"HTTP/1.1 200 OK\r\n"
            b"Content-Length: 13\r\n"
            b"Content-Type: text/plain\r\n"
            b"\r\n"
            b"Hello, World!")
BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\n"
               b"Content-Length: 0\r\n"
               b"Connection: close\r\n"
               b"\r\n")

# (label, what) per implementation; DEFAULT is the set run.py runs.
IMPLS = {
    "stdlib-selectors": ("a", "stdlib selectors.DefaultSelector, "
                              "select() loop, callbacks in key.data"),
    "fast-dispatch": ("b", "fastselectors.DefaultSelector, dispatch() "
                           "loop, the same callbacks"),
    "asyncio": ("c", "asyncio.run(), Protocol"),
    "fast-asyncio": ("d", "fastselectors.asyncio.run(), the same "
                          "Protocol"),
    "uvloop": ("e", "uvloop.run(), the same Protocol"),
    "fast-select": ("", "fastselectors.DefaultSelector in (a)'s select() "
                        "loop"),
}
DEFAULT = ["stdlib-selectors", "fast-dispatch", "asyncio", "fast-asyncio",
           "uvloop"]

KEEP, CLOSE, BAD = 0, 1, 2      # what to do after answering
MAX_HEAD = 65536                # longest request head we buffer

# Any of these (in the lower-cased buffer) sends feed() to the slow path,
# which parses each request's headers; wrk's requests have none of them.
_SLOW_MARKERS = (b"\r\nconnection:", b"\r\ncontent-length:",
                 b"\r\ntransfer-encoding:", b" http/1.0\r\n")


class RequestParser:
    """Splits a byte stream into HTTP/1.1 requests (heads ending in
    ``\\r\\n\\r\\n``), keeping a partial request for the next ``feed()``.

    ``feed(data)`` returns ``(n, after)``: *n* complete requests to answer,
    and then KEEP (keep the connection open), CLOSE (a request asked for
    ``Connection: close``, or was HTTP/1.0 without keep-alive: answer up to
    it, then close; what follows it is ignored) or BAD (a malformed or
    unsupported request: answer the *n* before it, then 400 and close).

    Fast path (what wrk sends): no Connection, Content-Length or
    Transfer-Encoding header and no HTTP/1.0 anywhere in the buffer, so the
    requests are simply counted.  Otherwise each head is parsed: Connection
    tokens, HTTP/1.0, Content-Length bodies (skipped); chunked bodies are
    not supported (BAD).
    """

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        buf = self.buf + data if self.buf else data
        end = buf.rfind(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return 0, (BAD if len(buf) > MAX_HEAD else KEEP)
        low = buf.lower()
        for marker in _SLOW_MARKERS:
            if marker in low:
                return self._slow(buf, low)
        end += 4
        self.buf = buf[end:]
        if len(self.buf) > MAX_HEAD:
            return 0, BAD
        return buf.count(b"\r\n\r\n", 0, end), KEEP

    def _slow(self, buf, low):
        n = pos = 0
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            lines = low[pos:end].split(b"\r\n")
            request_line = lines[0].split()
            if len(request_line) != 3 or not \
                    request_line[2].startswith(b"http/1."):
                self.buf = b""
                return n, BAD
            keep = request_line[2] != b"http/1.0"
            length = 0
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon:
                    self.buf = b""
                    return n, BAD
                name = name.strip()
                if name == b"connection":
                    tokens = [t.strip() for t in value.split(b",")]
                    if b"close" in tokens:
                        keep = False
                    elif b"keep-alive" in tokens:
                        keep = True
                elif name == b"content-length":
                    value = value.strip()
                    if not value.isdigit():
                        self.buf = b""
                        return n, BAD
                    length = int(value)
                elif name == b"transfer-encoding":
                    self.buf = b""
                    return n, BAD
            stop = end + 4 + length
            if stop > len(buf):
                break               # the body is not all here yet
            pos = stop
            n += 1
            if not keep:
                self.buf = b""
                return n, CLOSE
        self.buf = buf[pos:]
        if len(self.buf) > MAX_HEAD and self.buf.find(b"\r\n\r\n") < 0:
            return n, BAD
        return n, KEEP


def reply(n, after):
    """The bytes answering *n* requests, then a 400 if *after* is BAD."""
    out = RESPONSE * n
    if after == BAD:
        out += BAD_REQUEST
    return out


class Stats:
    """What one server did, printed as JSON when it stops."""
    requests = 0
    connections = 0


# -- (a), (b): a selector, callbacks in key.data ---------------------------

class Connection:
    """One client on a selector; ``on_event`` is its key.data callback, the
    same for the select() loop and dispatch()."""

    __slots__ = ("sel", "sock", "parser", "out", "closing", "write_mode",
                 "conns")

    def __init__(self, sel, sock, conns):
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sel, self.sock, self.conns = sel, sock, conns
        self.parser = RequestParser()
        self.out = b""              # reply bytes the socket did not take
        self.closing = False        # close once self.out is sent
        self.write_mode = False     # registered for EVENT_WRITE
        sel.register(sock, 1, self.on_event)        # EVENT_READ
        conns.add(self)
        Stats.connections += 1

    def on_event(self, key, events):
        if events & 2:                              # EVENT_WRITE
            self.flush()
            return
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            self.close()
            return
        if not data:                # the client shut down its side
            self.closing = True
            if not self.out:
                self.close()
            return
        n, after = self.parser.feed(data)
        if after:
            self.closing = True
        if n or after == BAD:
            Stats.requests += n
            if self.out:            # still waiting for EVENT_WRITE
                self.out += reply(n, after)
                return
            self.send(reply(n, after))
        elif self.closing:
            self.close()

    def send(self, data):
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except ConnectionError:
            self.close()
            return
        if sent < len(data):
            # Backpressure: stop reading until the client takes its replies.
            self.out = data[sent:]
            if not self.write_mode:
                self.write_mode = True
                self.sel.modify(self.sock, 2, self.on_event)
        elif self.closing:
            self.close()

    def flush(self):
        data, self.out = self.out, b""
        self.send(data)
        if self.sock is not None and not self.out and self.write_mode:
            self.write_mode = False
            self.sel.modify(self.sock, 1, self.on_event)

    def close(self):
        if self.sock is None:
            return
        self.sel.unregister(self.sock)
        self.sock.close()
        self.sock = None
        self.conns.discard(self)


def make_acceptor(sel, listener, conns):
    def on_accept(key, events):
        for _ in range(64):
            try:
                sock, _addr = listener.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            Connection(sel, sock, conns)
    return on_accept


class StopFlag:
    stop = False


def watch_stdin(sel):
    """Stop the loop when stdin reaches EOF (the driver closes the pipe)."""
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def on_stdin(key, events):
        try:
            if not os.read(fd, 4096):
                StopFlag.stop = True
                sel.unregister(fd)
        except BlockingIOError:
            pass
    sel.register(fd, 1, on_stdin)


def run_selector(impl, host, port, max_seconds, stop_on_stdin):
    if impl == "stdlib-selectors":
        import selectors
    else:
        import fastselectors as selectors
    sel = selectors.DefaultSelector()
    listener = socket.create_server((host, port), backlog=1024)
    listener.setblocking(False)
    conns = set()
    sel.register(listener, 1, make_acceptor(sel, listener, conns))
    if stop_on_stdin:
        watch_stdin(sel)
    print(listener.getsockname()[1], flush=True)

    deadline = time.monotonic() + max_seconds
    monotonic = time.monotonic
    try:
        if impl == "fast-dispatch":
            dispatch = sel.dispatch
            while not StopFlag.stop:
                left = deadline - monotonic()
                if left <= 0:
                    break
                dispatch(left)
        else:
            select = sel.select
            while not StopFlag.stop:
                left = deadline - monotonic()
                if left <= 0:
                    break
                for key, events in select(left):
                    key.data(key, events)
    except KeyboardInterrupt:
        pass
    finally:
        for conn in list(conns):
            conn.close()
        sel.unregister(listener)
        listener.close()
        sel.close()


# -- (c), (d), (e): an asyncio Protocol ------------------------------------

class HttpProtocol(asyncio.Protocol):
    """One client on an event loop: the same Protocol for (c), (d), (e)."""

    __slots__ = ("transport", "parser", "conns")

    def __init__(self, conns):
        self.conns = conns
        self.transport = None
        self.parser = RequestParser()

    def connection_made(self, transport):
        self.transport = transport
        self.conns.add(self)
        Stats.connections += 1

    def data_received(self, data):
        n, after = self.parser.feed(data)
        if n or after == BAD:
            Stats.requests += n
            self.transport.write(reply(n, after))
        if after:
            self.transport.close()      # after what is buffered is sent

    def eof_received(self):
        return False                    # close once the replies are sent

    def connection_lost(self, exc):
        self.conns.discard(self)


async def serve_asyncio(host, port, max_seconds, stop_on_stdin):
    loop = asyncio.get_running_loop()
    conns = set()
    server = await loop.create_server(lambda: HttpProtocol(conns), host,
                                      port, backlog=1024)
    stop = loop.create_future()
    if stop_on_stdin:
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
        await server.wait_closed()


def run_asyncio(impl, host, port, max_seconds, stop_on_stdin):
    main = serve_asyncio(host, port, max_seconds, stop_on_stdin)
    try:
        if impl == "asyncio":
            asyncio.run(main)
        elif impl == "fast-asyncio":
            import fastselectors.asyncio
            fastselectors.asyncio.run(main)
        else:
            import uvloop
            if hasattr(uvloop, "run"):                  # uvloop >= 0.18
                uvloop.run(main)
            else:
                uvloop.install()
                asyncio.run(main)
    except KeyboardInterrupt:
        pass


# -- probing and the command line ------------------------------------------

def unavailable(impl):
    """Why *impl* cannot run in this interpreter, or None."""
    try:
        if impl == "uvloop":
            import uvloop  # noqa: F401
        elif impl.startswith("fast-"):
            import fastselectors
            if not hasattr(fastselectors.DefaultSelector, "dispatch"):
                return "this fastselectors has no dispatch()"
            if impl == "fast-asyncio":
                import fastselectors.asyncio  # noqa: F401
    except ImportError as exc:
        return "{} is not installed in {} ({})".format(
            "uvloop" if impl == "uvloop" else "fastselectors",
            sys.executable, exc)
    return None


def probe():
    info = {"python": sys.version.split()[0],
            "implementation": sys.implementation.name,
            "executable": sys.executable,
            "fastselectors": None, "backend": None, "uvloop": None,
            "unavailable": {}}
    try:
        import fastselectors
        info["fastselectors"] = os.path.dirname(fastselectors.__file__)
        info["backend"] = getattr(fastselectors, "BACKEND", None)
        info["fastselectors_version"] = getattr(fastselectors,
                                                "__version__", None)
    except ImportError:
        pass
    try:
        import uvloop
        info["uvloop"] = uvloop.__version__
    except ImportError:
        pass
    for impl in IMPLS:
        why = unavailable(impl)
        if why:
            info["unavailable"][impl] = why
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join("  {:<17} {}".format(k, v[1])
                         for k, v in IMPLS.items()))
    parser.add_argument("--impl", choices=sorted(IMPLS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080,
                        help="0: a free port; the port is printed on stdout")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop after this long (default %(default)s)")
    parser.add_argument("--stop-on-stdin-eof", action="store_true",
                        help="stop when stdin is closed (for the driver)")
    parser.add_argument("--probe", action="store_true",
                        help="print what can run here, as JSON, and exit")
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return 0
    if not args.impl:
        parser.error("--impl is required")
    why = unavailable(args.impl)
    if why:
        print("SKIP {}: {}".format(args.impl, why), file=sys.stderr)
        return SKIP_EXIT
    run = run_selector if args.impl in ("stdlib-selectors", "fast-dispatch",
                                        "fast-select") else run_asyncio
    run(args.impl, args.host, args.port, args.max_seconds,
        args.stop_on_stdin_eof)
    # The last line on stdout: what was served (the driver checks it
    # against wrk's count).
    print(json.dumps({"requests": Stats.requests,
                      "connections": Stats.connections}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
