"""KqueueSelector against a kqueue: what only it does, and where it
differs from the stdlib's on purpose (the rest of the suite runs on it
like on every class: selector_cls, selector_pair).

A real kqueue on macOS and the BSDs (the workflow's macOS jobs); on Linux
the simulated one (FASTSELECTORS_SIMULATE_PLATFORM=kqueue, whose fake's
limits tests/simulate/fake_kqueue.py lists).
"""

import errno
import selectors
import socket

import pytest

import fastselectors
from conftest import stdlib_oracle
from fastselectors import EVENT_READ, EVENT_WRITE, ONESHOT

BOTH = EVENT_READ | EVENT_WRITE

pytestmark = pytest.mark.skipif(
    not hasattr(fastselectors, "KqueueSelector"),
    reason="no kqueue on this platform (on Linux: run the suite with "
           "FASTSELECTORS_SIMULATE_PLATFORM=kqueue, tests/simulate)")


@pytest.fixture
def sel():
    s = fastselectors.KqueueSelector()
    yield s
    s.close()


def test_it_is_ours_and_the_default_where_the_stdlibs_is():
    cls = fastselectors.KqueueSelector
    assert cls.__module__ == "fastselectors"
    assert cls._core_cls.__name__ == "KqueueCore"
    if selectors.DefaultSelector is selectors.KqueueSelector:
        assert fastselectors.DefaultSelector is cls
    with cls() as s:
        assert isinstance(s.fileno(), int)
        assert s.maxevents is None and s.stats()["waits"] == 0


def test_an_fd_ready_both_ways_is_one_pair_the_stdlibs_two(sockets):
    a, b = sockets()
    b.send(b"x")
    with fastselectors.KqueueSelector() as ours:
        key = ours.register(a, BOTH, "a")
        assert ours.select(0) == [(key, BOTH)]
    # The stdlib's: one pair per kqueue filter (its oracle merges them);
    # before 3.11.7/3.12.1 (gh-110038) in two calls, its batch too small.
    with selectors.KqueueSelector() as std:
        std.register(a, BOTH, "a")
        seen = [events for _, events in std.select(0)]
        if len(seen) == 1:
            seen += [events for _, events in std.select(0)]
        assert sorted(seen) == [EVENT_READ, EVENT_WRITE]
    assert stdlib_oracle("KqueueSelector") is not selectors.KqueueSelector


def test_modify_after_fd_closed_raises_the_kernels_error(sel, sockets):
    # The stdlib's modify() is unregister() + register(fileobj): for a
    # closed socket, fileno() is -1, a ValueError.  Ours asks the kernel,
    # which says EBADF; both then have dropped the registration.
    a, _ = sockets()
    sel.register(a, EVENT_READ, "data")
    a.close()
    with pytest.raises(OSError) as info:
        sel.modify(a, EVENT_WRITE, "data")
    assert info.value.errno == errno.EBADF
    assert len(sel.get_map()) == 0
    with pytest.raises(ValueError):     # as the stdlib's: fileno() is -1
        sel.unregister(a)


def test_modify_after_the_fd_number_was_reused_watches_the_new_file(
        sel, sockets):
    # The closed fd's knotes went with it; its number now belongs to a new
    # socket: a modify() of the events adds knotes for that one, as the
    # stdlib's does for an int fd (unregister, errors ignored, + register).
    a, _ = sockets()
    number = a.fileno()
    sel.register(number, EVENT_READ, "old")
    a.close()
    c, peer = sockets()
    assert c.fileno() == number
    key = sel.modify(number, BOTH, "new")
    peer.send(b"x")
    assert sel.select(5) == [(key, BOTH)]


def _fill(sock):
    """Write until the send buffer is full: not writable any more."""
    chunk = b"x" * 65536
    while True:
        try:
            sock.send(chunk)
        except BlockingIOError:
            return


def test_oneshot_event_disarms_the_whole_registration(sel, sockets):
    # READ fires; WRITE, which becomes ready only after, stays disarmed
    # (its knote disabled by us) until the registration is re-armed.
    a, b = sockets()
    _fill(a)
    key = sel.register(a, BOTH | ONESHOT)
    assert sel.select(0) == []
    b.send(b"r")
    assert sel.select(5) == [(key, EVENT_READ)]
    while True:                             # drain: a becomes writable
        try:
            b.recv(1 << 20)
        except BlockingIOError:
            break
    assert sel.select(0) == []
    key = sel.rearm(a)
    assert sel.select(5) == [(key, BOTH)]
    assert sel.select(0) == []


def test_close_from_another_thread_ends_the_wait(sel, sockets):
    import threading
    a, _ = sockets()
    sel.register(a, EVENT_READ)
    errors = []

    def wait():
        try:
            sel.select(60)
        except ValueError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=wait)
    t.start()
    while not sel._core._nwaiting and t.is_alive():
        t.join(0.001)
    sel.close()
    t.join(30)
    assert not t.is_alive()
    assert errors == ["I/O operation on closed selector"]


def test_kqueue_fd_is_not_the_childs_after_fork(sel, sockets):
    # fork(2) does not pass a kqueue on: the child's selector has a new
    # one, with the registrations (test_fork.py checks them further).
    import os
    if not hasattr(os, "fork"):
        pytest.skip("no fork() here")
    a, b = sockets()
    sel.register(a, EVENT_READ, "a")
    b.send(b"x")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ready = sel.select(0)
            code = 0 if [k.data for k, _ in ready] == ["a"] else 2
        finally:
            os._exit(code)
    os.close(r)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert [k.data for k, _ in sel.select(0)] == ["a"]
