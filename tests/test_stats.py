"""Selector statistics: ``sel.stats(reset=False)`` (docs/api.md,
"Statistics"), the same names and meaning on every class and tier."""

import os
import socket
import time

import pytest

from fastselectors import EVENT_READ, EVENT_WRITE

NAMES = ["waits", "empty_waits", "events", "callbacks", "max_batch",
         "full_batches", "rebuilds", "idle_time"]


@pytest.fixture
def ready_pairs(selector, sockets):
    """Three registered sockets, each readable."""
    pairs = [sockets() for _ in range(3)]
    for i, (a, b) in enumerate(pairs):
        selector.register(a, EVENT_READ, lambda key, events: None)
        b.send(b"x")
    return pairs


def test_a_new_selector_counts_nothing(selector):
    stats = selector.stats()
    assert list(stats) == NAMES
    assert stats == dict.fromkeys(NAMES, 0)
    assert isinstance(stats["idle_time"], float)
    assert all(type(stats[name]) is int for name in NAMES[:-1])


def test_waits_events_and_batches(selector, ready_pairs):
    assert selector.select(0) and selector.select(0)
    selector.unregister(ready_pairs[0][0])
    assert len(selector.select(0)) == 2
    stats = selector.stats()
    assert stats["waits"] == 3
    assert stats["events"] == 3 + 3 + 2
    assert stats["max_batch"] == 3
    assert stats["empty_waits"] == 0
    assert stats["full_batches"] == 0
    assert stats["callbacks"] == 0


def test_empty_waits_and_idle_time(selector, sockets):
    a, _ = sockets()
    selector.register(a, EVENT_READ)
    start = time.monotonic()
    assert selector.select(0.05) == []
    elapsed = time.monotonic() - start
    assert selector.select(0) == []
    stats = selector.stats()
    assert (stats["waits"], stats["empty_waits"]) == (2, 2)
    # Blocked for the whole timeout (a wait is never shorter), and for no
    # longer than the call took.
    assert 0.05 <= stats["idle_time"] + 1e-3 and stats["idle_time"] <= elapsed


def test_dispatch_counts_callbacks(selector, ready_pairs):
    assert selector.dispatch(0) == 3
    stats = selector.stats()
    assert (stats["waits"], stats["events"], stats["callbacks"]) == (1, 3, 3)


def test_a_batch_cut_by_maxevents_is_full(selector, ready_pairs):
    assert len(selector.select(0, maxevents=2)) == 2
    assert len(selector.select(0)) == 3
    stats = selector.stats()
    assert stats["full_batches"] == 1
    assert stats["max_batch"] == 3


def test_reset_returns_the_counters_then_zeroes_them(selector, ready_pairs):
    selector.select(0)
    before = selector.stats(reset=True)
    assert before["waits"] == 1 and before["events"] == 3
    assert selector.stats() == dict.fromkeys(NAMES, 0)
    selector.select(0)
    assert selector.stats()["waits"] == 1


def test_stats_of_a_closed_selector_are_still_readable(selector,
                                                       ready_pairs):
    selector.select(0)
    selector.close()
    assert selector.stats()["waits"] == 1


def test_stats_argument_errors(selector):
    with pytest.raises(TypeError):
        selector.stats(True, True)
    with pytest.raises(TypeError):
        selector.stats(bogus=True)
    assert selector.stats(reset=False) == selector.stats(False)


def test_an_orphan_rebuild_is_counted():
    """epoll only: an fd closed while a dup keeps it open, then its event
    (csrc/epoll_core.c, "Closed and dup'd fds")."""
    import fastselectors
    if not hasattr(fastselectors, "EpollSelector"):
        pytest.skip("orphans are an epoll matter; no epoll here")
    sel = fastselectors.EpollSelector()
    a, b = socket.socketpair()
    dup = os.dup(a.fileno())
    try:
        sel.register(a, EVENT_READ | EVENT_WRITE)
        a.close()                   # the dup keeps the file alive
        sel.unregister(a)           # EPOLL_CTL_DEL fails: an orphan
        keeper, peer = socket.socketpair()   # a live fd to wait on
        sel.register(keeper, EVENT_READ)
        for _ in range(3):
            assert sel.select(0) == []
        assert sel.stats()["rebuilds"] == 1
        keeper.close()
        peer.close()
    finally:
        os.close(dup)
        b.close()
        sel.close()


@pytest.mark.parametrize("events", [EVENT_WRITE])
def test_every_class_counts_alike(selector_cls, sockets, events):
    """The same calls give the same counters on every class."""
    sel = selector_cls()
    try:
        pairs = [sockets() for _ in range(4)]
        for a, _ in pairs:
            sel.register(a, events, lambda key, ev: None)
        sel.select(0)
        sel.dispatch(0, maxevents=3)
        sel.select(0, maxevents=10)
        stats = sel.stats()
        stats.pop("idle_time")
        assert stats == {"waits": 3, "empty_waits": 0, "events": 11,
                         "callbacks": 3, "max_batch": 4, "full_batches": 1,
                         "rebuilds": 0}
    finally:
        sel.close()
