"""Hostile arguments to every entry point.

Two layers are fuzzed:

* the cores (``sel._core``: the C types on the native tier) are called
  directly with random argument tuples drawn from a pool of hostile values:
  wrong types, bools, floats, huge and negative ints, objects whose
  ``__index__``/``__float__`` raise, NaN and infinities.  Every call must
  either succeed or raise an ordinary exception (TypeError, ValueError,
  OverflowError, OSError, KeyError, MemoryError never expected), and the
  core must keep working afterwards: a known registration is still reported
  exactly;
* the public selector API gets file objects whose ``fileno()`` raises,
  returns garbage or changes between calls, and ``data`` objects whose
  ``__eq__``, ``__hash__`` or ``__del__`` do odd things (``__del__``
  re-entering the selector).  Where the stdlib defines the outcome, ours
  must raise the same exception type, and nothing may be half-registered.

The suite runs under ASan/UBSan (tools/asan-tests) and valgrind
(tools/valgrind-tests): a memory error on any of these paths fails there.
"""

import gc
import math
import selectors
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastselectors import EVENT_READ, EVENT_WRITE

ORDINARY_ERRORS = (TypeError, ValueError, OverflowError, OSError, KeyError,
                   RuntimeError)


class Boom(Exception):
    """Raised by the hostile objects: must propagate unchanged."""


class IndexRaises:
    def __index__(self):
        raise Boom("__index__")


class IndexHuge:
    def __index__(self):
        return 2 ** 100


class FloatRaises:
    def __float__(self):
        raise Boom("__float__")


class IntSubclass(int):
    pass


HOSTILE = [
    None, True, False, 0, 1, 2, 3, -1, -2, 255, 256, 1023, 1024, 65535,
    2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 63 - 1, 2 ** 63,
    2 ** 64, 2 ** 100, -2 ** 31, -2 ** 31 - 1, -2 ** 63, -2 ** 64, -2 ** 100,
    0.0, 0.5, 1.5, -0.5, 1e-9, 1e300, -1e300, math.inf, -math.inf, math.nan,
    "", "1", b"1", [], (), {}, object(), IndexRaises(), IndexHuge(),
    FloatRaises(), IntSubclass(1), IntSubclass(-1), 3 + 0j,
]

hostile = st.sampled_from(HOSTILE)
# Timeouts must not block: only values that are invalid or at most 0.
nonblocking_timeouts = st.sampled_from([
    0, 0.0, -1, -0.5, -1e300, -math.inf, math.nan, "", "1", b"1", [],
    object(), IndexRaises(), FloatRaises(), True, False, -2 ** 100, 3 + 0j,
    IntSubclass(0),
])
maxevents_values = st.sampled_from(
    [None, 1, 2, 0, -1, True, False, 1.0, "1", 2 ** 31, 2 ** 64, -2 ** 64,
     IndexRaises(), IndexHuge(), IntSubclass(3), object()])

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def still_works(sel, sock):
    """The live registration is intact and reported exactly once."""
    assert len(sel.get_map()) == 1
    assert sel.get_key(sock).data == "live"
    [(key, events)] = sel.select(0)
    assert (key.fileobj, events) == (sock, EVENT_READ)


def call(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    # RuntimeWarning: from 3.13 a bool fd warns, as the select module does,
    # and this suite turns warnings into errors.
    except ORDINARY_ERRORS + (Boom, RuntimeWarning):
        pass


# -- the cores, called directly ---------------------------------------------

@pytest.fixture
def live(selector, sockets):
    """A selector with one readable registration that must survive."""
    if type(selector._core).__module__ != "fastselectors._native":
        pytest.skip("the cores written in Python (the cffi and pure tiers', "
                    "and every tier's select core) are only called by "
                    "CoreSelector, with checked arguments; the public API "
                    "is fuzzed below on every tier")
    a, b = sockets()
    selector.register(a, EVENT_READ, "live")
    b.send(b"x")
    return selector, a


@FUZZ
@given(args=st.lists(hostile, max_size=4))
def test_core_register_modify_unregister_survive_hostile_args(live, args):
    sel, sock = live
    core = sel._core
    live_fd = sock.fileno()
    if args and args[0] == live_fd and not isinstance(args[0], bool):
        # Re-registering the live fd under a junk key is a valid core call
        # the Python layer never makes; keep the live registration intact.
        args = [live_fd + 1000] + list(args[1:])
    for method in ("register", "modify"):
        call(getattr(core, method), *args)
    call(core.unregister, *args[:1])
    # unregister takes exactly one argument: other arities are refused.
    if len(args) != 1:
        with pytest.raises(TypeError):
            core.unregister(*args)
    # A junk call may have registered a real fd of this process (0, 1, 2
    # ...) in the core: undo it, then the core must hold only the live fd.
    if args and isinstance(args[0], int) and args[0] != live_fd:
        call(core.unregister, args[0])
    still_works(sel, sock)


@FUZZ
@given(timeout=nonblocking_timeouts, maxevents=maxevents_values,
       as_keyword=st.booleans())
def test_core_select_and_dispatch_survive_hostile_args(live, timeout,
                                                       maxevents, as_keyword):
    sel, sock = live
    core = sel._core
    for method in (core.select,):
        if as_keyword:
            call(method, timeout=timeout, maxevents=maxevents)
        else:
            call(method, timeout, maxevents)
    # dispatch would call the "live" str: give it a real callback.
    calls = []
    sel.modify(sock, EVENT_READ, lambda key, events: calls.append(events))
    try:
        call(core.dispatch, timeout, maxevents)
        assert set(calls) <= {EVENT_READ}
    finally:
        sel.modify(sock, EVENT_READ, "live")
    still_works(sel, sock)


def _may_block(value):
    """A positive timeout would make a fuzzed select() actually wait."""
    try:
        return float(value) > 0
    except Exception:
        return False


nonblocking_junk = hostile.filter(lambda v: not _may_block(v))


@FUZZ
@given(args=st.lists(nonblocking_junk, max_size=3),
       kwargs=st.dictionaries(st.sampled_from(["timeout", "maxevents", "x",
                                               "fd", "events"]),
                              nonblocking_junk, max_size=2))
def test_core_select_dispatch_any_arity_and_keywords(live, args, kwargs):
    sel, sock = live
    core = sel._core
    calls = []
    sel.modify(sock, EVENT_READ, lambda key, events: calls.append(events))
    try:
        for method in (core.select, core.dispatch):
            try:
                method(*args, **kwargs)
            except ORDINARY_ERRORS + (Boom, RuntimeWarning):
                pass
        assert set(calls) <= {EVENT_READ}
    finally:
        sel.modify(sock, EVENT_READ, "live")
    still_works(sel, sock)


def test_core_maxevents_attribute_rejects_junk(selector):
    core = selector._core
    for bad in (0, -1, "3", 1.5, True, IndexRaises(), -2 ** 100):
        with pytest.raises((TypeError, ValueError)):
            core.maxevents = bad
        assert core.maxevents is None
    core.maxevents = 2 ** 100               # huge: "all of them", clamped
    assert core.maxevents >= 2 ** 31 - 1
    core.maxevents = None
    assert core.maxevents is None


# -- the public API: hostile file objects -----------------------------------

class FilenoRaises:
    def __init__(self, exc):
        self.exc = exc

    def fileno(self):
        raise self.exc


class FilenoReturns:
    def __init__(self, value):
        self.value = value

    def fileno(self):
        return self.value


class FilenoChanges:
    """fileno() returns the next fd of a list at every call."""

    def __init__(self, fds):
        self.fds = list(fds)
        self.calls = 0

    def fileno(self):
        fd = self.fds[min(self.calls, len(self.fds) - 1)]
        self.calls += 1
        return fd


def outcome(fn, *args):
    try:
        fn(*args)
    except Exception as exc:
        return type(exc)
    return None


@pytest.mark.parametrize("fileobj", [
    FilenoRaises(OSError(9, "Bad file descriptor")),
    FilenoRaises(ValueError("closed")),
    FilenoRaises(Boom("fileno")),
    FilenoRaises(AttributeError("fileno")),
    FilenoReturns(None), FilenoReturns("3"), FilenoReturns(-1),
    FilenoReturns(2 ** 40), FilenoReturns(-2 ** 70), FilenoReturns(1.5),
    FilenoReturns(IndexRaises()), object(), None, "3", 2 ** 70, -5,
], ids=repr)
def test_hostile_fileobj_same_error_as_stdlib_and_nothing_registered(
        selector_pair, fileobj):
    results = []
    for cls in (selector_pair.ours, selector_pair.stdlib):
        with cls() as sel:
            got = [outcome(sel.register, fileobj, EVENT_READ),
                   outcome(sel.modify, fileobj, EVENT_READ),
                   outcome(sel.unregister, fileobj),
                   outcome(sel.get_key, fileobj)]
            results.append(got)
            assert len(sel.get_map()) == 0
            assert sel.select(0) == []
    assert results[0] == results[1]


def test_fileno_changing_between_calls(selector_pair, sockets):
    """register() asks fileno() once; later lookups ask again and find the
    fd the object *now* names, exactly as the stdlib does."""
    a, b = sockets()
    c, d = sockets()
    results = []
    for cls in (selector_pair.ours, selector_pair.stdlib):
        with cls() as sel:
            obj = FilenoChanges([a.fileno(), c.fileno()])
            key = sel.register(obj, EVENT_READ, "obj")
            assert key.fd == a.fileno()
            b.send(b"x")
            ready = [(k.fd, e) for k, e in sel.select(0)]
            got_key = outcome(sel.get_key, obj)   # now names c: unknown
            unreg = outcome(sel.unregister, obj)
            left = sorted(k.fd for k in sel.get_map().values())
            results.append((ready, got_key, unreg, left))
            a.recv(1)
    assert results[0] == results[1]
    assert results[0][0] == [(a.fileno(), EVENT_READ)]


# -- the public API: hostile data objects -----------------------------------

class EqRaises:
    def __eq__(self, other):
        raise Boom("__eq__")

    __hash__ = object.__hash__


class HashRaises:
    def __hash__(self):
        raise Boom("__hash__")


class DelReenters:
    """A data object whose finalizer re-enters the selector."""

    def __init__(self, sel, action):
        self.sel = sel
        self.action = action

    def __del__(self):
        try:
            self.action(self.sel)
        except Exception:
            pass


@pytest.mark.parametrize("data", [EqRaises(), HashRaises(), float("nan")],
                         ids=["eq-raises", "hash-raises", "nan"])
def test_odd_data_objects_like_the_stdlib(selector_pair, sockets,
                                          data):
    """data is never hashed.  modify() with unchanged events compares the
    new data with the old (``data != key.data``, as the stdlib does): an
    ``__eq__`` that raises propagates, and the registration is unchanged."""
    a, b = sockets()
    results = []
    for cls in (selector_pair.ours, selector_pair.stdlib):
        with cls() as sel:
            sel.register(a, EVENT_READ, data)
            same = outcome(sel.modify, a, EVENT_READ, "other")
            kept = sel.get_key(a).data
            changed = outcome(sel.modify, a, EVENT_READ | EVENT_WRITE, data)
            b.send(b"x")
            [(key, events)] = sel.select(0)
            results.append((same, kept is data or kept == "other",
                            key.data is data, changed))
            assert sel.unregister(a).data is data
            a.recv(1)
    ours, stdlib = results
    assert ours[:3] == stdlib[:3]
    # One difference, on purpose (README, "Where it differs"): when the
    # events change, ours never compares the data (as the stdlib's
    # SelectSelector); the stdlib's poll and epoll selectors compare it
    # *after* changing the kernel's interest, so an __eq__ that raises
    # leaves their kernel and map disagreeing.  Ours stays consistent.
    assert ours[3] is None
    if isinstance(data, EqRaises) and selector_pair.name != "SelectSelector":
        assert stdlib[3] is Boom
    else:
        assert stdlib[3] is None


@pytest.mark.parametrize("action", [
    lambda sel: sel.unregister(sel.test_other),
    lambda sel: sel.register(sel.test_spare, EVENT_READ, "spare"),
    lambda sel: sel.select(0),
    lambda sel: sel.close(),
    lambda sel: sel.get_map().clear(),       # a mapping view: TypeError
], ids=["unregister", "register", "select", "close", "map-clear"])
def test_finalizer_of_data_reenters_selector(selector_cls,
                                             sockets, action):
    """The data object dies inside modify()/unregister() (its last
    reference is the key) and its __del__ calls back into the selector.
    No crash; the selector stays consistent (or closed, for close())."""
    sel = selector_cls()
    try:
        a, b = sockets()
        other, other_peer = sockets()
        spare, _ = sockets()
        sel.test_other = other
        sel.test_spare = spare
        sel.register(other, EVENT_READ, "other")
        sel.register(a, EVENT_READ, DelReenters(sel, action))
        # modify() replaces the key: the old data's last reference dies.
        sel.modify(a, EVENT_READ, "plain")
        gc.collect()
        if sel.get_map() is None:
            return                           # closed by the finalizer
        fds = sorted(k.fd for k in sel.get_map().values())
        assert a.fileno() in fds
        other_peer.send(b"o")
        b.send(b"a")
        ready = {k.fd for k, _ in sel.select(0)}
        assert ready == set(fds) & {a.fileno(), other.fileno()}
        # unregister() drops the last reference too.
        sel.modify(a, EVENT_READ, DelReenters(sel, lambda s: s.select(0)))
        sel.unregister(a)
        gc.collect()
        assert a.fileno() not in {k.fd for k in sel.get_map().values()}
    finally:
        sel.close()


@pytest.mark.skipif(not hasattr(gc, "set_threshold"),
                    reason="needs gc.set_threshold to make the collector run "
                           "inside select() (PyPy's GC has no such knob)")
def test_finalizer_during_select_result_building(selector_cls,
                                                 sockets):
    """A cyclic-garbage finalizer that runs while select() builds its list
    (any allocation may trigger the GC) and unregisters fds of the batch."""
    sel = selector_cls()
    try:
        pairs = [sockets() for _ in range(8)]
        for i, (a, b) in enumerate(pairs):
            sel.register(a, EVENT_READ, i)
            b.send(b"x")

        class Cycle:
            def __del__(self):
                for a, _ in pairs[4:]:
                    try:
                        sel.unregister(a)
                    except (KeyError, ValueError):
                        pass

        thresholds = gc.get_threshold()
        gc.set_threshold(1)
        try:
            for _ in range(20):
                c = Cycle()
                c.self = c
                del c
                result = sel.select(0)
                for key, events in result:
                    assert events == EVENT_READ
                    assert 0 <= key.data < 8
        finally:
            gc.set_threshold(*thresholds)
        gc.collect()
        left = sorted(k.data for k in sel.get_map().values())
        assert left == [0, 1, 2, 3]
        assert sorted(k.data for k, _ in sel.select(0)) == [0, 1, 2, 3]
    finally:
        sel.close()


@pytest.mark.skipif(sys.implementation.name != "cpython",
                    reason="sys.getrefcount: CPython reference counts")
def test_failed_calls_keep_reference_counts(selector, sockets):
    """Every refused call gives back what it took."""
    a, _ = sockets()
    data = object()
    gc.collect()
    before = (sys.getrefcount(a), sys.getrefcount(data))
    for _ in range(100):
        for bad_events in (0, -1, 2 ** 40, "x", None):
            call(selector.register, a, bad_events, data)
        call(selector.modify, a, EVENT_READ, data)        # not registered
        call(selector.unregister, a)
        call(selector.register, FilenoReturns(-1), EVENT_READ, data)
        call(selector.register, FilenoRaises(Boom("x")), EVENT_READ, data)
    # A raised exception's traceback holds the frames (and data) in a
    # cycle with the FilenoRaises object: the collector's job, not a leak.
    gc.collect()
    assert (sys.getrefcount(a), sys.getrefcount(data)) == before
    assert len(selector.get_map()) == 0


def test_register_after_every_refusal_still_works(selector_pair,
                                                  sockets):
    """Same refusals as the stdlib, then a valid register() succeeds."""
    a, b = sockets()
    bads = [(a, 0), (a, -1), (a, 2 ** 40), (a, "x"), (a, None), (a, 1.0),
            (-1, EVENT_READ), (2 ** 70, EVENT_READ), ("a", EVENT_READ)]
    results = []
    for cls in (selector_pair.ours, selector_pair.stdlib):
        with cls() as sel:
            got = [outcome(sel.register, f, e) for f, e in bads]
            # SelectSelector takes any fd >= 0 and fails in select() only,
            # as the stdlib's does: compare what stayed registered.
            left = sorted(k.fd for k in sel.get_map().values())
            results.append((got, left))
            for fd in left:
                sel.unregister(fd)
            sel.register(a, EVENT_READ, "a")
            b.send(b"x")
            assert [k.data for k, _ in sel.select(0)] == ["a"]
            a.recv(1)
    assert results[0] == results[1]


def test_selectors_oracle_is_the_stdlib():
    assert selectors.SelectorKey.__module__ == "selectors"
