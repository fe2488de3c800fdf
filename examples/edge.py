#!/usr/bin/env python3
"""Edge-triggered reactor (EPOLLET): a line echo server.

When to use it: many busy connections, where level-triggered interest
changes cost you.  Each socket is registered once, with
``EVENT_READ | EVENT_WRITE | EDGE``, and never modified: the selector
reports a socket only when its state *changes* (new bytes arrived, buffer
space freed up), so write interest can stay on without waking the loop for
nothing, and no modify() call is made per reply.

The price -- the pitfall of this model: an edge is reported once.  When
woken, read (and accept) until BlockingIOError (EAGAIN); bytes left unread
produce no new event, and the connection would hang.  Likewise write until
the buffer is empty or EAGAIN: the next EVENT_WRITE comes only once the
socket buffer drains.

Flags: ``EDGE``, which EpollSelector (Linux) and KqueueSelector (macOS,
BSD: EV_CLEAR) support, on any tier.  PollSelector and SelectSelector
refuse it with ValueError, so this server checks
``DefaultSelector.supports(EDGE)`` first and exits with a message.
(No backpressure here: to stop reading a busy client under EDGE you must
remember yourself that it may hold unread data, since no edge will say so.)

    python3 examples/edge.py --port 7000
"""

import argparse
import sys
import time

import fastselectors as selectors

from reactor import StopOnSignals, answer, listen

EDGE_INTEREST = selectors.EVENT_READ | selectors.EVENT_WRITE | selectors.EDGE


class Connection:
    def __init__(self, sel, sock, conns):
        self.sel, self.sock, self.conns = sel, sock, conns
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.eof = False
        sock.setblocking(False)
        sel.register(sock, EDGE_INTEREST, self.on_event)   # for good
        conns.add(self)

    def on_event(self, key, events):
        if events & selectors.EVENT_READ and not self.read_all():
            return
        if self.outbuf and not self.write_all():
            return
        if self.eof and not self.outbuf:
            self.close()

    def read_all(self):
        """Read until EAGAIN or EOF; False if the connection is gone."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return True         # drained: the next edge will wake us
            except ConnectionError:
                self.close()
                return False
            if not data:
                self.eof = True
                return True
            self.inbuf += data
            if b"\n" in data:
                *lines, rest = self.inbuf.split(b"\n")
                self.inbuf = rest
                for line in lines:
                    self.outbuf += answer(line) + b"\n"

    def write_all(self):
        """Send until outbuf is empty or EAGAIN; False if gone."""
        while self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except BlockingIOError:
                return True         # EVENT_WRITE comes when space frees up
            except ConnectionError:
                self.close()
                return False
            del self.outbuf[:sent]
        return True

    def close(self):
        self.sel.unregister(self.sock)      # before close(), as always
        self.sock.close()
        self.conns.discard(self)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=7000,
                        help="0: pick a free port (printed on stdout)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop after this long (default %(default)s)")
    args = parser.parse_args(argv)

    selector_cls = selectors.DefaultSelector
    if not selector_cls.supports(selectors.EDGE):
        sys.exit("edge.py: EDGE needs epoll (Linux) or kqueue (macOS, "
                 "BSD); {} does not support it".format(selector_cls.__name__))

    sel = selector_cls()
    stop = StopOnSignals(sel)       # level-triggered: mixing is fine
    listener = listen(args.port)
    conns = set()

    def on_accept(key, events):
        # The listening socket is edge-triggered too: one edge may stand for
        # many queued connections, so accept until the backlog is empty.
        while True:
            try:
                sock, _addr = listener.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            Connection(sel, sock, conns)

    sel.register(listener, selectors.EVENT_READ | selectors.EDGE, on_accept)
    print(listener.getsockname()[1], flush=True)

    deadline = time.monotonic() + args.max_seconds
    try:
        while not stop.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sel.dispatch(left)
    finally:
        for conn in list(conns):
            conn.close()
        sel.unregister(listener)
        listener.close()
        stop.close()
        sel.close()


if __name__ == "__main__":
    main()
