"""The core interface (see ``fastselectors._selectors``) under hostile use.

The selector classes only ever call their core with validated arguments;
these tests call the cores directly, as a careless or hostile caller could,
and check that each error branch gives a clean exception and that reference
counts, cycles and re-entrant finalizers are handled (the C code's error
branches are the point: they are exercised on the native tier).
"""

import gc
import socket
import sys
import threading
import weakref

import pytest

import fastselectors
from fastselectors import EVENT_READ, EVENT_WRITE, _backend

CORES = _backend._core_classes(fastselectors.BACKEND)
NATIVE = fastselectors.BACKEND == "native"
native_only = pytest.mark.skipif(
    not NATIVE, reason="argument checks of the C entry points (native tier)")
refcounts = pytest.mark.skipif(
    not hasattr(sys, "getrefcount") or sys.implementation.name != "cpython",
    reason="exact reference counts exist on CPython only")

# Only the cores with a kernel side; the select() core is shared Python.
KERNEL_CORES = [CORES[name] for name in ("epoll", "poll") if name in CORES]


@pytest.fixture(params=KERNEL_CORES, ids=lambda c: c.__name__)
def core(request):
    core = request.param()
    yield core
    core.close()


def K(fd, events=EVENT_READ, data=None):
    """The core contract: keys are SelectorKeys (cores read key.events)."""
    return fastselectors.SelectorKey(None, fd, events, data)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_register_select_unregister_roundtrip(core, pair):
    a, b = pair
    key = fastselectors.SelectorKey(a, a.fileno(), EVENT_READ, None)
    core.register(a.fileno(), EVENT_READ, key)
    assert core.select(0) == []
    b.send(b"x")
    assert core.select(0) == [(key, EVENT_READ)]
    core.unregister(a.fileno())
    assert core.select(0) == []


def test_modify_reports_the_new_key_and_interest(core, pair):
    a, b = pair
    fd = a.fileno()
    key1 = fastselectors.SelectorKey(a, fd, EVENT_READ, 1)
    key2 = fastselectors.SelectorKey(a, fd, EVENT_WRITE, 2)
    core.register(fd, EVENT_READ, key1)
    core.modify(fd, EVENT_WRITE, key2)
    assert core.select(0) == [(key2, EVENT_WRITE)]


@native_only
@pytest.mark.parametrize("args, exc", [
    ((), TypeError),
    ((3, 1), TypeError),
    ((3, 1, None, None), TypeError),
    (("3", 1, None), TypeError),
    ((3.0, 1, None), TypeError),
    ((-1, 1, None), ValueError),
    ((2 ** 31, 1, None), OverflowError),
    ((2 ** 64, 1, None), OverflowError),
    ((3, "1", None), TypeError),
    ((3, 0, None), ValueError),
    ((3, 16, None), ValueError),         # an unknown bit
    ((3, 256, None), ValueError),        # a modifier without readiness
    ((3, -1, None), ValueError),
    ((3, 2 ** 70, None), OverflowError),
])
def test_native_register_rejects_bad_arguments(core, args, exc):
    with pytest.raises(exc):
        core.register(*args)
    assert core.registered() == 0


@native_only
def test_native_modify_of_unknown_fd_is_a_key_error(core, pair):
    fd = pair[0].fileno()
    with pytest.raises(KeyError):
        core.modify(fd, EVENT_READ, K(fd))


@native_only
@pytest.mark.parametrize("bad", ["3", 3.0, None, -1, 2 ** 40])
def test_native_unregister_rejects_bad_fd(core, bad):
    with pytest.raises((TypeError, ValueError, OverflowError)):
        core.unregister(bad)


def test_unregister_of_unknown_fd_is_silent(core):
    core.unregister(12345)


@native_only
@pytest.mark.parametrize("args, kwargs, exc", [
    ((0, 1, 2), {}, TypeError),
    ((), {"bogus": 0}, TypeError),
    ((0,), {"timeout": 0}, TypeError),
    ((0, 1), {"maxevents": 1}, TypeError),
    ((0,), {"maxevents": "1"}, TypeError),
    ((0,), {"maxevents": True}, TypeError),
    ((0,), {"maxevents": 1.0}, TypeError),
    ((0,), {"maxevents": 0}, ValueError),
    ((0,), {"maxevents": -2 ** 80}, ValueError),
])
def test_native_select_argument_errors(core, args, kwargs, exc):
    for method in (core.select, core.dispatch):
        with pytest.raises(exc):
            method(*args, **kwargs)


def test_select_accepts_timeout_keyword(core):
    assert core.select(timeout=0) == []


@native_only
def test_native_core_takes_no_constructor_arguments():
    for cls in KERNEL_CORES:
        with pytest.raises(TypeError):
            cls(1)
        with pytest.raises(TypeError):
            cls(x=1)


def test_closed_core(core, pair):
    fd = pair[0].fileno()
    core.register(fd, EVENT_READ, K(fd))
    core.close()
    core.close()                        # idempotent
    for call in (lambda: core.select(0),
                 lambda: core.register(fd, EVENT_READ, K(fd)),
                 lambda: core.modify(fd, EVENT_WRITE, K(fd, EVENT_WRITE))):
        with pytest.raises(ValueError, match="closed"):
            call()
    core.unregister(fd)                 # nothing left: not an error
    if hasattr(core, "fileno"):
        with pytest.raises(ValueError, match="closed"):
            core.fileno()


@refcounts
def test_no_reference_leaks_in_register_select_unregister(core, pair):
    a, b = pair
    b.send(b"x")
    key = fastselectors.SelectorKey(a, a.fileno(), EVENT_READ, object())
    before = sys.getrefcount(key)
    for _ in range(1000):
        core.register(a.fileno(), EVENT_READ, key)
        result = core.select(0)
        core.modify(a.fileno(), EVENT_READ | EVENT_WRITE, key)
        core.modify(a.fileno(), EVENT_READ, key)
        core.unregister(a.fileno())
    del result
    assert sys.getrefcount(key) == before


@refcounts
def test_close_releases_every_key(core, pair):
    key = fastselectors.SelectorKey(pair[0], pair[0].fileno(), 1, object())
    before = sys.getrefcount(key)
    core.register(pair[0].fileno(), EVENT_READ, key)
    # Held by the core's map (core.keys), and by a C core's table too.
    held = 2 if type(core).__module__ == "fastselectors._native" else 1
    assert sys.getrefcount(key) == before + held
    assert core.keys == {pair[0].fileno(): key}
    core.close()
    assert core.keys == {}
    assert sys.getrefcount(key) == before


class Owner:
    """Data that points back at the selector: a reference cycle."""


def test_cycle_through_key_data_is_collected():
    for name, cls in (("EpollSelector", getattr(fastselectors, "EpollSelector", None)),
                      ("PollSelector", getattr(fastselectors, "PollSelector", None))):
        if cls is None:
            continue
        a, b = socket.socketpair()
        try:
            sel = cls()
            owner = Owner()
            owner.sel = sel
            sel.register(a, EVENT_READ, owner)
            ref = weakref.ref(owner)
            del sel, owner
            gc.collect()
            assert ref() is None, name + " cycle was not collected"
        finally:
            a.close()
            b.close()


class SelectOnDel:
    """Runs select() on the core from a finalizer: re-entry mid-operation."""

    def __init__(self, core, log):
        self.core, self.log = core, log

    def __del__(self):
        try:
            self.log.append(self.core.select(0))
        except ValueError as exc:       # the core is closing
            self.log.append(exc)


def test_finalizer_reentering_core_during_unregister(core, pair):
    a, b = pair
    b.send(b"x")
    log = []
    core.register(a.fileno(), EVENT_READ,
                  K(a.fileno(), data=SelectOnDel(core, log)))
    core.unregister(a.fileno())         # drops the last ref -> __del__
    gc.collect()
    assert log == [[]]                  # it ran, saw an empty set, no crash


def test_finalizer_reentering_core_during_close(core, pair):
    a, b = pair
    log = []
    core.register(a.fileno(), EVENT_READ,
                  K(a.fileno(), data=SelectOnDel(core, log)))
    core.close()                        # drops the last ref -> __del__
    gc.collect()
    # The finalizer ran while the core was closing: its select() was
    # refused cleanly, and close() completed.
    assert len(log) == 1 and isinstance(log[0], ValueError)
    with pytest.raises(ValueError, match="closed"):
        core.select(0)


def test_register_from_another_thread_while_waiting(core):
    """Another thread grows the key table during a wait (GIL released): the
    waiter must still see its own fd and nothing must crash."""
    socks = [socket.socketpair() for _ in range(40)]
    try:
        first_a, first_b = socks[0]
        first = K(first_a.fileno())
        core.register(first_a.fileno(), EVENT_READ, first)
        result = []
        waiter = threading.Thread(target=lambda: result.append(core.select(5)))
        waiter.start()
        for i, (a, _) in enumerate(socks[1:]):
            core.register(a.fileno(), EVENT_READ, K(a.fileno(), data=i))
        for a, _ in socks[1:20]:
            core.unregister(a.fileno())
        first_b.send(b"x")
        waiter.join(10)
        assert not waiter.is_alive()
        assert result == [[(first, EVENT_READ)]]
    finally:
        for a, b in socks:
            a.close()
            b.close()


def test_concurrent_selects_on_one_core(core, pair):
    """Two threads wait on one core at once (the ONESHOT pattern of issue
    #4): each gets a whole, valid result."""
    if fastselectors.BACKEND == "pure" and core.__class__.__name__ == "PollCore":
        pytest.skip("the pure poll core is the stdlib's select.poll, which "
                    "refuses concurrent poll() calls with RuntimeError")
    a, b = pair
    k = K(a.fileno())
    core.register(a.fileno(), EVENT_READ, k)
    results = []
    threads = [threading.Thread(target=lambda: results.append(core.select(5)))
               for _ in range(2)]
    for t in threads:
        t.start()
    b.send(b"x")
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 2
    assert all(r in ([(k, EVENT_READ)], []) for r in results)
    assert [(k, EVENT_READ)] in results
