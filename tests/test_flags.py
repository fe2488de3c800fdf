"""The extended flags, each shown to really hold.

EDGE reports a readable fd once until new data arrives; ONESHOT once until
re-armed; EXCLUSIVE wakes one of several waiters; EVENT_PRIORITY reports
urgent (out-of-band) data; EVENT_RDHUP the peer's shutdown of its write side.
Each test runs on every selector class of the active tier that supports the
flag, and checks that the others refuse it with a clear ValueError.
"""

import socket
import threading
import time

import pytest

import fastselectors
from fastselectors import (EDGE, EVENT_PRIORITY, EVENT_RDHUP, EVENT_READ,
                           EVENT_WRITE, EXCLUSIVE, ONESHOT)

FLAG_NAMES = {EDGE: "EDGE", ONESHOT: "ONESHOT", EXCLUSIVE: "EXCLUSIVE",
              EVENT_PRIORITY: "EVENT_PRIORITY", EVENT_RDHUP: "EVENT_RDHUP"}


def needs(selector, flag):
    if not type(selector).supports(flag):
        pytest.skip("{} on the {} tier does not support {}".format(
            type(selector).__name__, fastselectors.BACKEND, FLAG_NAMES[flag]))


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def tcp_pair():
    """A connected TCP pair over 127.0.0.1 (OOB data needs TCP)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
    conn.setblocking(False)
    yield conn, client
    conn.close()
    client.close()


@pytest.mark.parametrize("flag", [EDGE, ONESHOT, EXCLUSIVE, EVENT_PRIORITY,
                                  EVENT_RDHUP])
def test_supports_matches_what_register_accepts(selector, pair, flag):
    a, _ = pair
    events = EVENT_READ | flag
    if type(selector).supports(flag):
        key = selector.register(a, events)
        assert key.events == events          # the whole mask is kept
    else:
        with pytest.raises(ValueError) as info:
            selector.register(a, events)
        message = str(info.value)
        assert type(selector).__name__ in message
        assert FLAG_NAMES[flag] in message
        assert len(selector.get_map()) == 0


def test_supports_answers_for_bad_input_without_raising(selector_cls):
    for bad in (0, -1, 1 << 20, "EDGE", None, 1.0):
        assert selector_cls.supports(bad) is False
    assert selector_cls.supports(EVENT_READ | EVENT_WRITE)


def test_epoll_supports_everything_on_linux():
    if not hasattr(fastselectors, "EpollSelector"):
        pytest.skip("no epoll on this platform")
    assert fastselectors.EpollSelector.supports(
        EDGE | ONESHOT | EVENT_PRIORITY | EVENT_RDHUP | EXCLUSIVE)


def test_modifiers_alone_are_invalid_events(selector, pair):
    for events in (EDGE, ONESHOT, EXCLUSIVE, EDGE | ONESHOT):
        with pytest.raises(ValueError, match="Invalid events"):
            selector.register(pair[0], events)


def test_edge_reports_once_until_new_data(selector, pair):
    needs(selector, EDGE)
    a, b = pair
    key = selector.register(a, EVENT_READ | EDGE)
    b.send(b"x")
    assert selector.select(0) == [(key, EVENT_READ)]
    assert selector.select(0) == []         # unread, but no new edge
    b.send(b"y")
    assert selector.select(0) == [(key, EVENT_READ)]


def test_level_triggered_reports_every_call(selector, pair):
    a, b = pair
    key = selector.register(a, EVENT_READ)
    b.send(b"x")
    for _ in range(3):
        assert selector.select(0) == [(key, EVENT_READ)]


def test_oneshot_reports_once_until_rearmed(selector, pair):
    needs(selector, ONESHOT)
    a, b = pair
    key = selector.register(a, EVENT_READ | ONESHOT, "data")
    b.send(b"x")
    assert selector.select(0) == [(key, EVENT_READ)]
    assert selector.select(0) == []         # disarmed, data still unread
    b.send(b"y")
    assert selector.select(0) == []         # new data does not re-arm
    key = selector.rearm(a)
    assert key.events == EVENT_READ | ONESHOT and key.data == "data"
    assert selector.select(0) == [(key, EVENT_READ)]
    assert selector.select(0) == []
    key = selector.modify(a, EVENT_READ | ONESHOT, "data")  # also re-arms
    assert selector.select(0) == [(key, EVENT_READ)]


def test_oneshot_with_dispatch(selector, pair):
    needs(selector, ONESHOT)
    a, b = pair
    calls = []
    selector.register(a, EVENT_READ | ONESHOT,
                      lambda key, events: calls.append(events))
    b.send(b"x")
    assert selector.dispatch(0) == 1
    assert selector.dispatch(0) == 0
    selector.rearm(a)
    assert selector.dispatch(0) == 1
    assert calls == [EVENT_READ, EVENT_READ]


def test_oneshot_disarmed_fd_does_not_report_hangup(selector, pair):
    """poll reports POLLHUP even for an fd polled with no events: the
    emulation must take a disarmed fd out of the set entirely."""
    needs(selector, ONESHOT)
    a, b = pair
    key = selector.register(a, EVENT_READ | ONESHOT)
    b.send(b"x")
    assert selector.select(0) == [(key, EVENT_READ)]
    b.close()
    assert selector.select(0) == []


def test_rearm_of_unknown_object_is_keyerror(selector, pair):
    with pytest.raises(KeyError):
        selector.rearm(pair[0])


def test_priority_reports_urgent_data(selector, tcp_pair):
    needs(selector, EVENT_PRIORITY)
    conn, client = tcp_pair
    key = selector.register(conn, EVENT_PRIORITY)
    assert selector.select(0) == []
    client.send(b"!", socket.MSG_OOB)
    deadline = time.monotonic() + 5
    ready = []
    while not ready and time.monotonic() < deadline:
        ready = selector.select(0.1)
    assert ready == [(key, EVENT_PRIORITY)]


def test_rdhup_reports_peer_shutdown_of_writing(selector, tcp_pair):
    needs(selector, EVENT_RDHUP)
    conn, client = tcp_pair
    key = selector.register(conn, EVENT_RDHUP)
    assert selector.select(0) == []
    client.shutdown(socket.SHUT_WR)
    ready = selector.select(5)
    assert ready == [(key, EVENT_RDHUP)]
    # With read interest too, the reader also learns it can read (EOF).
    selector.modify(conn, EVENT_READ | EVENT_RDHUP)
    assert selector.select(0)[0][1] == EVENT_READ | EVENT_RDHUP


def test_select_reports_readiness_bits_only(selector, pair):
    flags = [f for f in (EDGE, ONESHOT) if type(selector).supports(f)]
    if not flags:
        pytest.skip("{} supports no modifier here".format(
            type(selector).__name__))
    a, b = pair
    mask = EVENT_READ | EVENT_WRITE
    for f in flags:
        mask |= f
    key = selector.register(a, mask)
    b.send(b"x")
    assert selector.select(0) == [(key, EVENT_READ | EVENT_WRITE)]


# -- EXCLUSIVE: the kernel's rules, checked before the syscall --------------

@pytest.mark.parametrize("other", [ONESHOT, EVENT_PRIORITY, EVENT_RDHUP])
def test_exclusive_refuses_what_the_kernel_refuses(selector, pair, other):
    needs(selector, EXCLUSIVE)
    with pytest.raises(ValueError, match="EXCLUSIVE"):
        selector.register(pair[0], EVENT_READ | EXCLUSIVE | other)
    assert len(selector.get_map()) == 0


def test_exclusive_cannot_be_added_or_removed_by_modify(selector, pair):
    needs(selector, EXCLUSIVE)
    a, b = pair
    key = selector.register(a, EVENT_READ)
    with pytest.raises(ValueError, match="EXCLUSIVE"):
        selector.modify(a, EVENT_READ | EXCLUSIVE)
    assert selector.get_key(a) is key
    selector.unregister(a)
    key = selector.register(a, EVENT_READ | EXCLUSIVE)
    with pytest.raises(ValueError, match="EXCLUSIVE"):
        selector.modify(a, EVENT_READ)
    assert selector.get_key(a) is key


def test_exclusive_registration_can_change_its_other_bits(selector, pair):
    needs(selector, EXCLUSIVE)
    a, b = pair
    selector.register(a, EVENT_READ | EXCLUSIVE | EDGE)
    key = selector.modify(a, EVENT_READ | EVENT_WRITE | EXCLUSIVE)
    assert selector.select(0) == [(key, EVENT_WRITE)]
    b.send(b"x")
    assert selector.select(0) == [(key, EVENT_READ | EVENT_WRITE)]


def _count_herd_wakeups(selector_cls, events, workers=4, connections=8):
    """Workers, each with its own selector, wait on one listening socket;
    connections arrive one at a time.  Returns the total number of select()
    calls that came back with the listener ready."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    server.setblocking(False)
    stop = threading.Event()
    wakeups = []
    errors = []

    def worker():
        count = 0
        sel = selector_cls()
        try:
            sel.register(server, events)
            while not stop.is_set():
                if sel.select(0.2):
                    count += 1
                    # Stay away a moment, so that every waiter the kernel
                    # woke gets to see the connection still pending.
                    time.sleep(0.02)
                    try:
                        conn, _ = server.accept()
                    except BlockingIOError:
                        continue        # another worker won
                    conn.sendall(b"k")
                    conn.close()
        except Exception as exc:        # reported by the main thread
            errors.append(exc)
        finally:
            sel.close()
            wakeups.append(count)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.1)                 # let every worker reach its wait
        for _ in range(connections):
            with socket.create_connection(server.getsockname(),
                                          timeout=5) as client:
                assert client.recv(1) == b"k"
            time.sleep(0.05)            # every worker back in its wait
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        server.close()
    assert not errors, errors
    return sum(wakeups)


def test_exclusive_cuts_the_thundering_herd():
    cls = getattr(fastselectors, "EpollSelector", None)
    if cls is None or not cls.supports(EXCLUSIVE):
        pytest.skip("EXCLUSIVE needs epoll (Linux >= 4.5)")
    connections, workers = 8, 4
    herd = _count_herd_wakeups(cls, EVENT_READ, workers, connections)
    exclusive = _count_herd_wakeups(cls, EVENT_READ | EXCLUSIVE, workers,
                                    connections)
    # Without EXCLUSIVE every waiter wakes for each connection (about
    # workers x connections); with it about one does.  Ratios, not times.
    assert exclusive >= connections
    assert herd >= 2 * exclusive, (herd, exclusive)
