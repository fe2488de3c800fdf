"""Batch size: maxevents per call and a per-selector default.

When more fds are ready than a batch holds, the rest come on the next calls
and no fd is starved, under level and edge triggering.
"""

import socket

import pytest

from fastselectors import EDGE, EVENT_READ, EVENT_WRITE, ONESHOT

N = 50


@pytest.fixture
def ready_pairs():
    """N socketpairs whose first end is readable."""
    pairs = [socket.socketpair() for _ in range(N)]
    for a, b in pairs:
        b.send(b"x")
    yield pairs
    for a, b in pairs:
        a.close()
        b.close()


def _register_all(sel, pairs, events=EVENT_READ):
    return {sel.register(a, events).fd for a, _ in pairs}


@pytest.mark.parametrize("maxevents", [1, 7, N - 1])
def test_level_triggered_batches_reach_every_fd(selector, ready_pairs,
                                                maxevents):
    fds = _register_all(selector, ready_pairs)
    seen = set()
    calls = -(-N // maxevents)              # ceil: the fewest possible
    for _ in range(calls):
        batch = selector.select(0, maxevents)
        assert 1 <= len(batch) <= maxevents
        assert len({key.fd for key, _ in batch}) == len(batch)
        seen.update(key.fd for key, _ in batch)
    # Every fd within the fewest calls: no fd was reported twice before
    # all had their turn (the kernel, or our rotation, moved on).
    assert seen == fds


def test_edge_triggered_batches_deliver_each_fd_once(selector, ready_pairs):
    if not type(selector).supports(EDGE):
        pytest.skip("{} does not support EDGE".format(
            type(selector).__name__))
    fds = _register_all(selector, ready_pairs, EVENT_READ | EDGE)
    seen = []
    for _ in range(N):
        batch = selector.select(0, maxevents=8)
        if not batch:
            break
        assert len(batch) <= 8
        seen.extend(key.fd for key, _ in batch)
    assert sorted(seen) == sorted(fds)      # each once, none lost
    assert selector.select(0) == []


def test_oneshot_fds_left_out_of_a_batch_stay_armed(selector, ready_pairs):
    if not type(selector).supports(ONESHOT):
        pytest.skip("{} does not support ONESHOT".format(
            type(selector).__name__))
    fds = _register_all(selector, ready_pairs, EVENT_READ | ONESHOT)
    seen = []
    for _ in range(N):
        batch = selector.select(0, maxevents=6)
        if not batch:
            break
        seen.extend(key.fd for key, _ in batch)
    assert sorted(seen) == sorted(fds)
    assert selector.select(0) == []


def test_per_selector_default(selector_cls, ready_pairs):
    sel = selector_cls(maxevents=5)
    try:
        assert sel.maxevents == 5
        _register_all(sel, ready_pairs)
        assert len(sel.select(0)) == 5
        assert len(sel.select(0, maxevents=9)) == 9     # per call wins
        sel.maxevents = None
        assert len(sel.select(0)) == N                  # the stdlib's way
    finally:
        sel.close()


def test_default_returns_every_ready_fd_like_the_stdlib(selector,
                                                        ready_pairs):
    assert selector.maxevents is None
    _register_all(selector, ready_pairs)
    assert len(selector.select(0)) == N


def test_dispatch_honours_maxevents(selector, ready_pairs):
    calls = []
    for a, _ in ready_pairs:
        selector.register(a, EVENT_READ, lambda k, e: calls.append(k.fd))
    assert selector.dispatch(0, maxevents=4) == 4
    assert selector.dispatch(0, 4) == 4
    assert len(set(calls)) == 8


def test_maxevents_larger_than_registered_is_fine(selector, ready_pairs):
    a, _ = ready_pairs[0]
    key = selector.register(a, EVENT_READ | EVENT_WRITE)
    assert selector.select(0, maxevents=10 ** 6) == [
        (key, EVENT_READ | EVENT_WRITE)]


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError),
                                      (1.5, TypeError), ("3", TypeError),
                                      (True, TypeError)])
def test_bad_maxevents(selector_cls, bad, exc):
    with pytest.raises(exc):
        selector_cls(maxevents=bad)
    sel = selector_cls()
    try:
        with pytest.raises(exc):
            sel.select(0, maxevents=bad)
        with pytest.raises(exc):
            sel.dispatch(0, maxevents=bad)
        with pytest.raises(exc):
            sel.maxevents = bad
        assert sel.maxevents is None
    finally:
        sel.close()
