#!/usr/bin/env python3
"""Pre-forked worker processes (the nginx model): a line echo server.

When to use it: you need several cores for Python code (each process has its
own GIL) and the connections are independent.  The parent creates the
listening socket and forks K workers; each worker is a reactor (reactor.py's
``Connection``) with its own EpollSelector, and all of them watch the same
listening socket.

Flags: ``EVENT_READ | EXCLUSIVE`` on the listening socket.  Without
EXCLUSIVE every idle worker is woken for each new connection and all but one
find nothing to accept (the thundering herd); with it (EPOLLEXCLUSIVE, Linux
4.5+) the kernel wakes one.  EXCLUSIVE is an epoll feature that is given at
register() only: where ``EpollSelector.supports(EXCLUSIVE)`` is false this
falls back to plain EVENT_READ and says so.  Needs os.fork() and
EpollSelector, i.e. Linux; any tier.

Each worker logs "worker PID accepted HOST:PORT" on stderr per connection.

    python3 examples/prefork.py --port 7000 --workers 4
"""

import argparse
import os
import signal
import sys
import time
import traceback

import fastselectors as selectors

from reactor import Connection, StopOnSignals, listen


# Blocked around fork(): each process unblocks them once its handlers are in
# place, so that none ever runs with the wrong handling of a stop signal.
SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def serve(listener, events, parent, seconds):
    """A worker's life.  It creates its selector itself, after the fork: an
    epoll instance shared by two processes would deliver each event to
    whichever of them waits first, and its registrations would be mixed."""
    sel = selectors.EpollSelector()
    stop = StopOnSignals(sel)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)     # ready for them
    conns = set()
    pid = os.getpid()

    def on_accept(key, events):
        # One accept per wake-up (nginx's "multi_accept off"): the listening
        # socket is level-triggered, so whatever is left in the backlog is
        # reported again at once -- to us or to an idle worker -- instead of
        # being hoarded by the worker that woke first.
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return      # normal: another worker took it first
        # One write() per line: the workers share stderr, and lines written
        # whole (below PIPE_BUF) never interleave.
        os.write(2, "worker {} accepted {}:{}\n".format(pid, *addr[:2])
                 .encode())
        Connection(sel, sock, conns)

    sel.register(listener, events, on_accept)
    deadline = time.monotonic() + seconds
    try:
        # If the parent was killed outright, no one will stop us: check at
        # least once a second that it is still there (and bound our life).
        while not stop.requested and os.getppid() == parent \
                and time.monotonic() < deadline:
            sel.dispatch(1.0)
    finally:
        for conn in list(conns):
            conn.close()
        sel.unregister(listener)
        listener.close()
        stop.close()
        sel.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=7000,
                        help="0: pick a free port (printed on stdout)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop after this long (default %(default)s)")
    args = parser.parse_args(argv)

    events = selectors.EVENT_READ
    if selectors.EpollSelector.supports(selectors.EXCLUSIVE):
        events |= selectors.EXCLUSIVE
        print("prefork: listening socket registered with "
              "EVENT_READ | EXCLUSIVE", file=sys.stderr, flush=True)
    else:
        print("prefork: EXCLUSIVE is not supported here: plain EVENT_READ, "
              "every idle worker is woken per connection",
              file=sys.stderr, flush=True)

    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    listener = listen(args.port)
    print(listener.getsockname()[1], flush=True)   # flushed before forking
    parent = os.getpid()
    children = set()
    failed = False
    try:
        for _ in range(args.workers):
            pid = os.fork()
            if pid == 0:                # the worker
                status = 1
                try:
                    serve(listener, events, parent, args.max_seconds)
                    status = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    # Never return into the parent's code (its finally
                    # blocks, atexit handlers): leave right here.
                    os._exit(status)
            children.add(pid)
        listener.close()                # the parent itself never accepts
        failed = supervise(children, args.max_seconds)
    finally:
        listener.close()
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        for pid in children:
            _, status = os.waitpid(pid, 0)
            failed = failed or status != 0
    return 1 if failed else 0


def supervise(children, seconds):
    """The parent's loop: wait for a stop signal, a worker's exit or the
    deadline.  True if a worker exited before being told to."""
    # A selector of its own, made after the forks (never share one), and
    # only for the signal wake-up: SIGCHLD gets a handler too, so that a
    # worker's exit also writes to it.
    sel = selectors.DefaultSelector()
    stop = StopOnSignals(sel)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    failed = False
    deadline = time.monotonic() + seconds
    try:
        while children and not stop.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sel.dispatch(left)
            for pid, status in reap(children):
                print("prefork: worker {} exited early, status {}".format(
                    pid, status), file=sys.stderr, flush=True)
                failed = True
    finally:
        stop.close()
        sel.close()
    return failed


def reap(children):
    """Collect the exited children among *children* (no waiting)."""
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        yield pid, status


if __name__ == "__main__":
    sys.exit(main())
