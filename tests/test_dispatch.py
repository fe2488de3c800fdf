"""dispatch(): one wait, then key.data(key, events) for each ready fd.

The contract is written in ``CoreSelector.dispatch``'s docstring; each test
here is one clause of it, run on every selector class of the active tier.
"""

import gc
import os
import socket
import sys
import threading
import time

import pytest

from fastselectors import EVENT_READ, EVENT_WRITE

BOTH = EVENT_READ | EVENT_WRITE


@pytest.fixture
def socks():
    """socks(n) -> n connected (a, b) socketpairs, closed at the end."""
    made = []

    def make(n):
        pairs = [socket.socketpair() for _ in range(n)]
        made.extend(pairs)
        return pairs

    yield make
    for a, b in made:
        a.close()
        b.close()


class Recorder:
    """Callbacks that record (name, events) and may run an action."""

    def __init__(self):
        self.calls = []

    def cb(self, name, action=None):
        def callback(key, events):
            assert key.data is callback
            self.calls.append((name, events))
            if action is not None:
                action()
        return callback


def test_dispatch_calls_each_ready_callback_once(selector, socks):
    (a, pa), (b, pb), (c, pc) = socks(3)
    rec = Recorder()
    selector.register(a, EVENT_READ, rec.cb("a"))
    selector.register(b, BOTH, rec.cb("b"))
    selector.register(c, EVENT_READ, rec.cb("c"))   # never ready
    pa.send(b"x")
    pb.send(b"x")
    assert selector.dispatch(0) == 2
    assert sorted(rec.calls) == [("a", EVENT_READ), ("b", BOTH)]


def test_dispatch_sees_what_select_sees(selector, socks):
    pairs = socks(6)
    for i, (a, peer) in enumerate(pairs):
        selector.register(a, (EVENT_READ, EVENT_WRITE, BOTH)[i % 3],
                          lambda key, events: seen.append((key, events)))
        if i % 2:
            peer.send(b"x")
    seen = []
    expected = selector.select(0)
    assert selector.dispatch(0) == len(expected)
    key_fd = lambda ke: (ke[0].fd, ke[1])       # noqa: E731
    assert sorted(map(key_fd, seen)) == sorted(map(key_fd, expected))


def test_dispatch_with_nothing_ready_waits_the_timeout(selector, socks):
    (a, _), = socks(1)
    selector.register(a, EVENT_READ, Recorder().cb("a"))
    start = time.monotonic()
    assert selector.dispatch(0.05) == 0
    assert time.monotonic() - start >= 0.05


def test_dispatch_on_an_empty_selector(selector):
    assert selector.dispatch(0) == 0


def test_callback_return_value_is_ignored(selector, socks):
    (a, _), = socks(1)
    selector.register(a, EVENT_WRITE, lambda key, events: "ignored")
    assert selector.dispatch(0) == 1


def _two_ready(selector, socks, rec, action_on_first):
    """Register two ready fds whose first-run callback runs
    action_on_first(other_sock); return the pairs."""
    (a, pa), (b, pb) = socks(2)
    pa.send(b"x")
    pb.send(b"x")
    order = []

    def make(me, other):
        def action():
            if not order:
                order.append(me)
                action_on_first(other)
        return action

    selector.register(a, EVENT_READ, rec.cb("a", make("a", b)))
    selector.register(b, EVENT_READ, rec.cb("b", make("b", a)))
    return order


def test_callback_unregistering_another_fd_drops_its_event(selector, socks):
    rec = Recorder()
    order = _two_ready(selector, socks, rec, selector.unregister)
    assert selector.dispatch(0) == 1
    assert rec.calls == [(order[0], EVENT_READ)]
    assert len(selector.get_map()) == 1


def test_callback_unregistering_and_closing_another_fd(selector, socks):
    rec = Recorder()

    def drop(sock):
        selector.unregister(sock)
        sock.close()

    order = _two_ready(selector, socks, rec, drop)
    assert selector.dispatch(0) == 1
    assert rec.calls == [(order[0], EVENT_READ)]


@pytest.mark.parametrize("change", ["data", "events"])
def test_callback_modifying_another_fd_drops_its_pending_event(
        selector, socks, change):
    """The pending event was computed before the change: it is dropped, and
    the next wait reports the fd with its new registration."""
    rec = Recorder()
    new_cb = rec.cb("new")

    def modify(sock):
        events = EVENT_READ if change == "data" else BOTH
        selector.modify(sock, events, new_cb)

    order = _two_ready(selector, socks, rec, modify)
    assert selector.dispatch(0) == 1
    assert rec.calls == [(order[0], EVENT_READ)]
    rec.calls.clear()
    assert selector.dispatch(0) == 2
    expected = EVENT_READ if change == "data" else BOTH
    assert ("new", expected) in rec.calls


def test_callback_registering_a_new_fd(selector, socks):
    """A new fd is not in the current batch; the next wait reports it."""
    (a, pa), (new, pnew) = socks(2)
    pa.send(b"x")
    pnew.send(b"x")
    rec = Recorder()
    selector.register(
        a, EVENT_READ,
        rec.cb("a", lambda: selector.register(new, EVENT_READ,
                                              rec.cb("new"))))
    assert selector.dispatch(0) == 1
    assert rec.calls == [("a", EVENT_READ)]
    selector.unregister(a)
    assert selector.dispatch(0) == 1
    assert rec.calls[-1] == ("new", EVENT_READ)


class Boom(Exception):
    pass


def test_raising_callback_keeps_the_rest_of_the_batch(selector, socks):
    """The exception propagates at once; the other events of the batch are
    delivered by the next dispatch(), from the batch itself (their sockets
    were drained, so a new wait would not report them): nothing is lost,
    nothing delivered twice."""
    pairs = socks(4)
    calls = []

    def callback(key, events):
        calls.append(key.fileobj)
        if len(calls) == 1:
            for a, _ in pairs:          # drain everyone: no longer ready
                if a is not key.fileobj:
                    a.recv(10)
            raise Boom()

    for a, peer in pairs:
        peer.send(b"x")
        selector.register(a, EVENT_READ, callback)
    with pytest.raises(Boom):
        selector.dispatch(0)
    assert len(calls) == 1
    assert selector.dispatch(0) == 3
    assert sorted(s.fileno() for s in calls) == sorted(
        a.fileno() for a, _ in pairs)
    calls[0].recv(10)                   # drain the first one too
    assert selector.dispatch(0) == 0


def test_pending_events_are_rechecked_after_a_raise(selector, socks):
    """Changes made between the raise and the next dispatch() drop the
    pending events they concern."""
    pairs = socks(3)
    calls = []

    def callback(key, events):
        calls.append(key.fileobj)
        if len(calls) == 1:
            raise Boom()

    for a, peer in pairs:
        peer.send(b"x")
        selector.register(a, EVENT_READ, callback)
    with pytest.raises(Boom):
        selector.dispatch(0)
    for a, _ in pairs:
        if a is not calls[0]:
            selector.unregister(a)
    assert selector.dispatch(0) == 1    # a new wait: only the first is left
    assert calls[1] is calls[0]


def test_close_from_a_callback_ends_the_batch(selector, socks):
    pairs = socks(3)
    calls = []

    def callback(key, events):
        calls.append(key)
        selector.close()

    for a, peer in pairs:
        peer.send(b"x")
        selector.register(a, EVENT_READ, callback)
    assert selector.dispatch(0) == 1
    assert len(calls) == 1
    with pytest.raises(ValueError, match="closed"):
        selector.dispatch(0)


@pytest.mark.parametrize("reentry", ["dispatch", "select"])
def test_reentrant_call_from_a_callback_is_a_clear_error(selector, socks,
                                                         reentry):
    (a, pa), (b, pb) = socks(2)
    pa.send(b"x")
    pb.send(b"x")
    errors = []

    def callback(key, events):
        try:
            getattr(selector, reentry)(0)
        except RuntimeError as exc:
            errors.append(str(exc))
            key.fileobj.recv(10)

    selector.register(a, EVENT_READ, callback)
    selector.register(b, EVENT_READ, callback)
    assert selector.dispatch(0) == 2
    assert len(errors) == 2
    assert all("callback" in e for e in errors)
    # Outside a callback both work again.
    assert selector.dispatch(0) == 0
    assert selector.select(0) == []


def test_dispatch_on_closed_selector(selector_cls):
    sel = selector_cls()
    sel.close()
    with pytest.raises(ValueError, match="closed"):
        sel.dispatch(0)


def test_non_callable_data_raises_typeerror(selector, socks):
    (a, _), = socks(1)
    selector.register(a, EVENT_WRITE, None)
    with pytest.raises(TypeError):
        selector.dispatch(0)


@pytest.mark.parametrize("bad, exc", [("1", TypeError),
                                      (float("nan"), ValueError),
                                      (1e300, OverflowError)])
def test_dispatch_timeout_errors_are_select_errors(selector, bad, exc):
    if type(selector).__name__ == "KqueueSelector":
        exc = TypeError     # the stdlib's (select.kqueue.control()'s)
    with pytest.raises(exc):
        selector.select(bad)
    with pytest.raises(exc):
        selector.dispatch(bad)


def test_dispatch_while_another_thread_dispatches(selector, socks):
    (a, pa), = socks(1)
    selector.register(a, EVENT_READ, lambda key, events: key.fileobj.recv(1))
    result = []
    t = threading.Thread(target=lambda: result.append(selector.dispatch(5)))
    t.start()
    try:
        # Let the thread enter its wait; if it has not yet, dispatch(0) here
        # simply runs first and the assertion below still holds one way.
        deadline = time.monotonic() + 5
        error = None
        while error is None and time.monotonic() < deadline:
            try:
                selector.dispatch(0)
            except RuntimeError as exc:
                error = exc
            time.sleep(0.001)
        assert error is not None and "another thread" in str(error)
    finally:
        pa.send(b"x")
        t.join(10)
    assert result == [1]


@pytest.mark.skipif(sys.implementation.name != "cpython",
                    reason="exact reference counts exist on CPython only")
def test_dispatch_leaks_no_references(selector, socks):
    (a, pa), = socks(1)
    pa.send(b"x")

    def callback(key, events):
        pass

    selector.register(a, EVENT_READ, callback)
    key = selector.get_key(a)
    before = sys.getrefcount(key), sys.getrefcount(callback)
    for _ in range(1000):
        assert selector.dispatch(0) == 1
    gc.collect()
    assert (sys.getrefcount(key), sys.getrefcount(callback)) == before


def test_one_dispatch_at_a_time_however_threads_interleave(selector_cls):
    """Four threads call dispatch() over and over on one selector whose fd
    is always ready, with a thread switch as often as the interpreter
    allows: never do two callbacks run at once -- the others get the
    "another thread" RuntimeError.  The Python cores' claim was a check,
    then a call, then the store: two threads could both pass the check."""
    sel = selector_cls()
    r, w = os.pipe()
    os.write(w, b"x")
    inside, overlaps, refused = [], [], []

    def callback(key, events):
        inside.append(None)
        if len(inside) > 1:
            overlaps.append(len(inside))
        time.sleep(0)       # let the others run, inside the callback
        inside.pop()

    def run():
        for _ in range(1000):
            try:
                sel.dispatch(0)
            except RuntimeError as exc:
                assert "another thread" in str(exc)
                refused.append(None)

    sel.register(r, EVENT_READ, callback)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
        sel.close()
        os.close(r)
        os.close(w)
    assert overlaps == []
    assert refused      # (they did meet)
