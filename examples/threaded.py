#!/usr/bin/env python3
"""Acceptor thread + worker threads (the memcached model): a line echo server.

When to use it: one reactor thread is not enough, but the connections are
independent of each other.  The main thread only accepts, and hands each
connection (round robin) to one of W worker threads; each worker owns a
selector and serves its connections exactly like reactor.py.  A connection
belongs to one thread for its whole life, so the per-connection code needs
no locks, and the waits run in parallel (dispatch() releases the GIL while
it waits).  On CPython the Python code itself still runs one thread at a
time: the gain is in waits and I/O, not in parsing.

Flags: only ``EVENT_READ`` and ``EVENT_WRITE``.  Runs with every selector
class on every tier (``FASTSELECTORS_BACKEND=native|cffi|pure``).

    python3 examples/threaded.py --port 7000 --workers 4
"""

import argparse
import queue
import socket
import threading
import time

import fastselectors as selectors

# The per-connection code is the reactor's, unchanged: a worker is a reactor.
from reactor import Connection, StopOnSignals, listen, make_acceptor


class Worker(threading.Thread):
    """A thread with its own selector.  Only this thread touches it; other
    threads talk to it through ``inbox`` plus a wake-up socket."""

    def __init__(self, index, selector_cls):
        super().__init__(name="worker-{}".format(index))
        self.sel = selector_cls()
        self.inbox = queue.SimpleQueue()   # sockets to serve; None = stop
        # The wake-up: a byte on this socketpair makes our wait return, so a
        # new connection is served at once, not at the next unrelated event.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self.on_wake)
        self.conns = set()
        self.running = True

    # -- called from the acceptor thread ------------------------------------
    def hand_off(self, sock):
        self.inbox.put(sock)
        self.wake()

    def stop(self):
        self.inbox.put(None)
        self.wake()

    def wake(self):
        try:
            self.wake_w.send(b"\0")
        except BlockingIOError:
            pass            # buffer full: wake-ups are already pending

    # -- in this worker's thread --------------------------------------------
    def on_wake(self, key, events):
        # Drain the wake-up bytes *before* the queue: an item put after we
        # emptied the queue comes with a new byte, so it wakes us again.
        # (The other order could eat that byte and strand the item.)
        try:
            while self.wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                sock = self.inbox.get_nowait()
            except queue.Empty:
                return
            if sock is None:
                self.running = False
            else:
                Connection(self.sel, sock, self.conns)

    def run(self):
        try:
            while self.running:
                self.sel.dispatch()     # the GIL is released while waiting
        finally:
            for conn in list(self.conns):
                conn.close()
            self.sel.unregister(self.wake_r)
            self.sel.close()
            self.wake_r.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=7000,
                        help="0: pick a free port (printed on stdout)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop after this long (default %(default)s)")
    parser.add_argument("--selector", default="DefaultSelector",
                        help="selector class, e.g. PollSelector")
    args = parser.parse_args(argv)

    selector_cls = getattr(selectors, args.selector)
    workers = [Worker(i, selector_cls) for i in range(args.workers)]
    for worker in workers:
        worker.start()
    try:
        accept_loop(selector_cls, workers, args.port, args.max_seconds)
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join()
            worker.wake_w.close()   # only now: stop() may have used it


def accept_loop(selector_cls, workers, port, seconds):
    # The acceptor (the main thread) is a tiny reactor of its own: its
    # selector watches the listening socket and the signal wake-up.
    sel = selector_cls()
    stop = StopOnSignals(sel)           # signals go to the main thread
    listener = listen(port)
    turn = 0

    def hand_off(sock):                 # round robin
        nonlocal turn
        workers[turn].hand_off(sock)
        turn = (turn + 1) % len(workers)

    sel.register(listener, selectors.EVENT_READ,
                 make_acceptor(sel, listener, None, serve=hand_off))
    print(listener.getsockname()[1], flush=True)

    deadline = time.monotonic() + seconds
    try:
        while not stop.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sel.dispatch(left)
    finally:
        sel.unregister(listener)
        listener.close()
        stop.close()
        sel.close()


if __name__ == "__main__":
    main()
