"""Several threads on one selector: nothing is lost, nothing is stale.

register() and modify() make a kernel call that may release the GIL (the
Python tiers always do); a thread waiting on the same selector can get the
fd's event at once -- with EDGE or ONESHOT the only one it will ever get --
and must find the new key.  And the waiter may run the fd's callback, which
unregisters it, before the registering thread is back: the map must not
resurrect it.
"""

import socket
import threading
import time

import pytest

import fastselectors
from fastselectors import EDGE, EVENT_READ, EVENT_WRITE, ONESHOT

N = 150


def _epoll():
    cls = getattr(fastselectors, "EpollSelector", None)
    if cls is None:
        pytest.skip("several threads on one selector with ONESHOT/EDGE "
                    "needs epoll")
    return cls()


def _waiters(sel, on_event, count=4):
    stop = threading.Event()

    def wait():
        while not stop.is_set():
            for key, events in sel.select(0.05):
                on_event(key, events)

    threads = [threading.Thread(target=wait) for _ in range(count)]
    for t in threads:
        t.start()
    return stop, threads


@pytest.mark.parametrize("flag", [ONESHOT, EDGE], ids=["ONESHOT", "EDGE"])
def test_register_while_others_wait_loses_no_event(flag):
    sel = _epoll()
    seen, lock = set(), threading.Lock()

    def on_event(key, events):
        with lock:
            seen.add(key.data)

    stop, threads = _waiters(sel, on_event)
    pairs = []
    try:
        for i in range(N):
            a, b = socket.socketpair()
            pairs.append((a, b))
            b.send(b"x")                # ready before it is registered
            time.sleep(0.0005)          # let the waiters sit in the wait
            sel.register(a, EVENT_READ | flag, i)
        deadline = time.monotonic() + 10
        while len(seen) < N and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sel.close()
        for a, b in pairs:
            a.close()
            b.close()
    assert sorted(set(range(N)) - seen) == []


def test_modify_while_others_wait_reports_the_new_key():
    sel = _epoll()
    stale, lock = [], threading.Lock()
    fresh = set()

    def on_event(key, events):
        with lock:
            if key.data[0] == "old":
                stale.append(key)
            else:
                fresh.add(key.data[1])

    stop, threads = _waiters(sel, on_event)
    pairs = []
    try:
        for i in range(N):
            a, b = socket.socketpair()
            pairs.append((a, b))
            sel.register(a, EVENT_READ | ONESHOT, ("old", i))   # not ready
            time.sleep(0.0005)
            # Writable at once: the modify's re-arm fires in a waiter.
            sel.modify(a, EVENT_WRITE | ONESHOT, ("new", i))
        deadline = time.monotonic() + 10
        while len(fresh) < N and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sel.close()
        for a, b in pairs:
            a.close()
            b.close()
    assert stale == []
    assert sorted(set(range(N)) - fresh) == []


def test_callback_unregistering_during_a_modify_is_not_undone():
    """A waiter gets the re-armed fd and unregisters it (then the fd number
    is reused) while the modifying thread is still inside modify(): the
    map must not keep, or bring back, the dead registration."""
    sel = _epoll()
    done = threading.Event()

    def on_event(key, events):
        sel.unregister(key.fileobj)
        done.set()

    stop, threads = _waiters(sel, on_event, count=2)
    try:
        for _ in range(N):
            done.clear()
            a, b = socket.socketpair()
            try:
                sel.register(a, EVENT_READ | ONESHOT)
                sel.modify(a, EVENT_WRITE | ONESHOT)     # fires at once
                assert done.wait(10)
                assert a not in sel.get_map()
            finally:
                a.close()
                b.close()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sel.close()
