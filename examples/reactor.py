#!/usr/bin/env python3
"""Single-threaded reactor (the Redis model): a line echo server.

When to use it: one core is enough and the work per request is short.
Everything (accept, read, parse, reply) runs in one thread around one
selector, so there are no locks and no races; it is the model to start
with, and the one the other examples build on (threaded.py and prefork.py
run this very ``Connection`` class in each of their workers).

Flags: only ``EVENT_READ`` and ``EVENT_WRITE``.  Runs with every selector
class on every tier (``FASTSELECTORS_BACKEND=native|cffi|pure``).

Protocol: every line the client sends (ending in b"\\n") is sent back
unchanged; when the client shuts down its side, the server sends what is
still pending and closes.  Try it:

    python3 examples/reactor.py --port 7000 &
    printf 'hello\\nworld\\n' | nc -N 127.0.0.1 7000
"""

import argparse
import signal
import socket
import time

import fastselectors as selectors

# Stop reading a client whose replies pile up beyond this many bytes, until
# it has read them (backpressure): else a client that sends without reading
# could make the server buffer without bound.
HIGH_WATER = 1 << 20


def answer(line):
    """The protocol: the reply to one line (without its b"\\n")."""
    return line


class StopOnSignals:
    """SIGTERM and SIGINT set ``requested`` and make *sel*'s wait return.

    The handler only sets a flag.  Raising from it instead would be fragile:
    a Python signal handler runs between any two bytecodes, so the exception
    could cut the loop short anywhere -- halfway through closing a
    connection, say -- and the cleanup would trip over it.  A flag alone is
    not enough either: the wait is simply resumed after a handler has run
    (PEP 475).  So the C-level handler also writes a byte to a socket the
    selector watches (signal.set_wakeup_fd, as asyncio does): the wait
    returns, even for a signal that came just before it began.  Call from
    the main thread.
    """

    def __init__(self, sel):
        self.requested = False
        self.sel = sel
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        sel.register(self._r, selectors.EVENT_READ, self._drain)
        signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        self.requested = True

    def _drain(self, key, events):
        # The bytes are the signal numbers (set_wakeup_fd writes them): they
        # say "stop" by themselves, as asyncio reads them.  The Python-level
        # handler alone may come late: on PyPy, a signal that the kernel
        # delivered to another thread runs its handler in the main thread
        # at a later check, possibly after this byte has woken and been
        # drained -- the loop would then wait on with the flag still unset.
        try:
            while True:
                data = self._r.recv(512)
                if not data:
                    break
                if signal.SIGTERM in data or signal.SIGINT in data:
                    self.requested = True
        except BlockingIOError:
            pass

    def close(self):
        signal.set_wakeup_fd(-1)
        self.sel.unregister(self._r)
        self._r.close()
        self._w.close()


class Connection:
    """One client: its buffers and its registration in *sel*."""

    def __init__(self, sel, sock, conns):
        self.sel, self.sock, self.conns = sel, sock, conns
        self.inbuf = bytearray()    # bytes of a line not complete yet
        self.outbuf = bytearray()   # replies not sent yet
        self.eof = False            # the client has shut down its side
        sock.setblocking(False)
        self.events = selectors.EVENT_READ
        # key.data is the callback: dispatch() calls it with (key, events).
        sel.register(sock, self.events, self.on_event)
        conns.add(self)

    def on_event(self, key, events):
        if events & selectors.EVENT_READ:
            self.read()
        if self.sock is not None and self.outbuf:
            # On EVENT_WRITE, and also right after a read: sending at once
            # usually empties outbuf, and then no write interest (and no
            # extra wait) is needed at all -- what Redis does.
            self.write()
        if self.sock is not None:
            self.update_interest()

    def read(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return                  # a spurious wake-up: nothing to read
        except ConnectionError:
            self.close()
            return
        if not data:
            self.eof = True         # send what is pending, then close
            return
        self.inbuf += data
        if b"\n" in data:           # scan only when a line was completed
            *lines, rest = self.inbuf.split(b"\n")
            self.inbuf = rest
            for line in lines:
                self.outbuf += answer(line) + b"\n"

    def write(self):
        try:
            sent = self.sock.send(self.outbuf)
        except BlockingIOError:
            return                  # socket buffer full: wait for EVENT_WRITE
        except ConnectionError:
            self.close()
            return
        del self.outbuf[:sent]

    def update_interest(self):
        # Ask for EVENT_WRITE only while replies are pending: a socket is
        # writable nearly all the time, and a level-triggered selector would
        # wake us for nothing on every wait.
        want = 0
        if not self.eof and len(self.outbuf) < HIGH_WATER:
            want |= selectors.EVENT_READ
        if self.outbuf:
            want |= selectors.EVENT_WRITE
        if not want:                # EOF and everything sent
            self.close()
        elif want != self.events:
            self.events = want
            self.sel.modify(self.sock, want, self.on_event)

    def close(self):
        # Unregister before closing: a closed fd can no longer be removed
        # from an epoll set, and its number may be reused at once.
        self.sel.unregister(self.sock)
        self.sock.close()
        self.sock = None
        self.conns.discard(self)


def listen(port):
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    listener.setblocking(False)     # accept() must never block the loop
    return listener


def make_acceptor(sel, listener, conns, serve=None):
    """The listening socket's callback; *serve(sock)* takes each new
    connection (default: a Connection in *sel*)."""
    if serve is None:
        def serve(sock):
            Connection(sel, sock, conns)

    def on_accept(key, events):
        # Level-triggered: accepting a few per wake-up is enough, the rest of
        # the backlog is reported again by the next wait.
        for _ in range(16):
            try:
                sock, _addr = listener.accept()
            except BlockingIOError:
                return              # backlog empty
            except ConnectionAbortedError:
                continue            # the client gave up in the backlog
            serve(sock)
    return on_accept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=7000,
                        help="0: pick a free port (printed on stdout)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop after this long (default %(default)s)")
    parser.add_argument("--selector", default="DefaultSelector",
                        help="selector class, e.g. PollSelector")
    args = parser.parse_args(argv)

    sel = getattr(selectors, args.selector)()
    stop = StopOnSignals(sel)
    listener = listen(args.port)
    conns = set()
    sel.register(listener, selectors.EVENT_READ,
                 make_acceptor(sel, listener, conns))
    print(listener.getsockname()[1], flush=True)

    deadline = time.monotonic() + args.max_seconds
    try:
        while not stop.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sel.dispatch(left)      # one wait, then the callbacks
    finally:
        for conn in list(conns):
            conn.close()
        sel.unregister(listener)
        listener.close()
        stop.close()
        sel.close()


if __name__ == "__main__":
    main()
