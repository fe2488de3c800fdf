#!/usr/bin/env python3
"""A pool of threads sharing one selector, with ONESHOT: a line echo server.

When to use it: any thread must be able to pick up any connection (uneven
load, handlers that may block a little), instead of pinning each connection
to one thread as threaded.py does.  Every connection is registered with
``ONESHOT``: the kernel reports a ready fd to exactly one waiting thread and
then disarms it, so that thread owns the connection -- no lock needed for
its buffers -- until it re-arms it with modify() or rearm().  Without
ONESHOT a level-triggered fd that is still readable is reported to every
thread waiting at that moment, and two threads would read the same socket.

Flags: ``EVENT_READ | ONESHOT`` (and ``EVENT_WRITE | ONESHOT`` while replies
are pending), EpollSelector only: PollSelector and SelectSelector accept
ONESHOT but emulate it after their wait returns, so two threads waiting at
once could both receive the same fd (and poll/select do not see an fd
registered while they wait).  The threads call select(maxevents=1), not
dispatch(): dispatch() runs in one thread at a time per selector (another
thread's call raises RuntimeError), and one event per call spreads the work.

    python3 examples/oneshot.py --port 7000 --threads 4
"""

import argparse
import socket
import sys
import threading
import time

import fastselectors as selectors

from reactor import HIGH_WATER, StopOnSignals, answer, listen

ONESHOT = selectors.ONESHOT


class Connection:
    """Touched only by the thread that received its event, until re-armed."""

    def __init__(self, server, sock):
        self.server, self.sock = server, sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.eof = False
        sock.setblocking(False)
        server.add(self)
        server.sel.register(sock, selectors.EVENT_READ | ONESHOT,
                            self.on_event)

    def on_event(self, key, events):
        if events & selectors.EVENT_READ:
            # Level-triggered: one recv() is enough, unread bytes make the
            # re-armed fd ready again at once.
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                data = None
            except ConnectionError:
                return self.close()
            if data == b"":
                self.eof = True
            elif data:
                self.inbuf += data
                if b"\n" in data:
                    *lines, rest = self.inbuf.split(b"\n")
                    self.inbuf = rest
                    for line in lines:
                        self.outbuf += answer(line) + b"\n"
        if self.outbuf:
            try:
                del self.outbuf[:self.sock.send(self.outbuf)]
            except BlockingIOError:
                pass
            except ConnectionError:
                return self.close()
        want = 0
        if not self.eof and len(self.outbuf) < HIGH_WATER:
            want |= selectors.EVENT_READ
        if self.outbuf:
            want |= selectors.EVENT_WRITE
        if not want:
            return self.close()
        # Re-arm: always (the registration is disarmed, even if the events
        # are the same), and last: from here on another thread may already
        # be running on_event() for this connection.
        self.server.sel.modify(self.sock, want | ONESHOT, self.on_event)

    def close(self):
        self.server.sel.unregister(self.sock)   # before close(), as always
        self.sock.close()
        self.server.discard(self)


class Server:
    def __init__(self, port):
        self.sel = selectors.EpollSelector()
        self.conns = set()
        self.lock = threading.Lock()    # conns is shared by every thread
        self.listener = listen(port)
        # The listening socket is ONESHOT too: one thread accepts, then
        # re-arms it.
        self.sel.register(self.listener, selectors.EVENT_READ | ONESHOT,
                          self.on_accept)
        # The stop signal for the pool: a byte on a *level-triggered*
        # registration (no ONESHOT) stays readable, so every waiting thread
        # sees it -- exactly what ONESHOT prevents for the connections.
        self.stop_r, self.stop_w = socket.socketpair()
        self.sel.register(self.stop_r, selectors.EVENT_READ, None)

    def add(self, conn):
        with self.lock:
            self.conns.add(conn)

    def discard(self, conn):
        with self.lock:
            self.conns.discard(conn)

    def on_accept(self, key, events):
        try:
            sock, _addr = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        finally:
            # Re-arm whatever happened: a listening socket left disarmed
            # would never report a connection again.
            self.sel.rearm(self.listener)
        Connection(self, sock)

    def run_thread(self):
        while True:
            for key, events in self.sel.select(maxevents=1):
                if key.data is None:
                    return              # the stop byte
                key.data(key, events)

    def close(self):
        for conn in list(self.conns):
            conn.close()
        for sock in (self.listener, self.stop_r):
            self.sel.unregister(sock)
            sock.close()
        self.stop_w.close()
        self.sel.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=7000,
                        help="0: pick a free port (printed on stdout)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop after this long (default %(default)s)")
    args = parser.parse_args(argv)

    if not hasattr(selectors, "EpollSelector"):
        sys.exit("oneshot.py: needs EpollSelector (epoll, Linux): the "
                 "ONESHOT of poll/select is not safe across threads")

    server = Server(args.port)
    threads = [threading.Thread(target=server.run_thread)
               for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    # The main thread only waits for a stop signal or the deadline, with a
    # small selector of its own.
    sel = selectors.DefaultSelector()
    stop = StopOnSignals(sel)
    print(server.listener.getsockname()[1], flush=True)
    deadline = time.monotonic() + args.max_seconds
    try:
        while not stop.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sel.dispatch(left)
    finally:
        stop.close()
        sel.close()
        server.stop_w.send(b"\0")
        for thread in threads:
            thread.join()
        server.close()


if __name__ == "__main__":
    main()
