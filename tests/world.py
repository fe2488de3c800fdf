"""A selector in a known state, and the invariants it must keep whatever
was done to it (test_async_exceptions.py, test_reentrancy.py)."""

import os
import socket

import pytest

from fastselectors import EVENT_READ


class World:
    """A selector and readable sockets: s0..s3 registered, s4 and s5 not."""

    def __init__(self, cls):
        self.sel = cls()
        self.pairs = [socket.socketpair() for _ in range(6)]
        for a, b in self.pairs:
            a.setblocking(False)
            b.send(b"x")
        self.socks = [a for a, _ in self.pairs]
        for i, sock in enumerate(self.socks[:4]):
            self.sel.register(sock, EVENT_READ, self.callback)
        self.calls = 0

    def callback(self, key, events):
        self.calls += 1

    def other(self, key, events):
        self.calls += 1

    def close(self):
        self.sel.close()
        for a, b in self.pairs:
            a.close()
            b.close()

    # -- the invariants ----------------------------------------------------

    def check(self):
        sel = self.sel
        m = sel.get_map()
        if m is None:       # closed: everything refuses
            with pytest.raises(ValueError):
                sel.select(0)
            return
        registered = {key.fd: key for key in m.values()}
        assert set(registered) == set(sel._core.keys)
        # An interrupted dispatch() leaves the rest of its batch pending,
        # as a callback that raises does: delivered by the next one.
        sel.dispatch(0)
        ready = sel.select(0)
        fds = [key.fd for key, _ in ready]
        assert len(fds) == len(set(fds)), "an fd reported twice"
        for key, events in ready:
            assert registered.get(key.fd) is key, "a key the map lacks"
        # Every registered fd is readable: the kernel must say so of each.
        want = {fd for fd, key in registered.items() if key.events
                & EVENT_READ}
        assert set(fds) >= want, ("registered, not reported",
                                  want - set(fds))
        if hasattr(sel, "fileno"):
            assert kernel_fds(sel.fileno()) == set(registered)
        # dispatch() reports the same, and only live keys.
        self.calls = 0
        assert sel.dispatch(0) == len(ready)
        # A re-register works, and reports once.
        for sock in self.socks:
            if sock in m:
                sel.unregister(sock)
            sel.register(sock, EVENT_READ, self.callback)
        fds = sorted(key.fd for key, _ in sel.select(0))
        assert fds == sorted(sock.fileno() for sock in self.socks)


def kernel_fds(epfd):
    """The fds an epoll instance has registered, from /proc (Linux)."""
    path = "/proc/self/fdinfo/{}".format(epfd)
    if not os.path.exists(path):
        pytest.skip("no /proc/self/fdinfo here")
    with open(path) as f:
        return {int(line.split()[1]) for line in f
                if line.startswith("tfd:")}
