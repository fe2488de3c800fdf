"""fastselectors behaves exactly like the stdlib ``selectors`` module.

Each test is a *scenario*: a function ``scenario(sel, env, rec)`` that drives
a selector through a sequence of steps, each step recorded by ``rec``.  The
``same`` fixture runs the scenario twice -- once on the stdlib class, once on
the fastselectors class of the same name, each time with fresh fds -- and
asserts that the two transcripts are equal:

* return values are normalised by :meth:`conftest.Env.norm`: a key becomes
  (fileobj role, fd role, events, data), so runs on different fds compare;
* ``select()`` results are compared as sorted lists of (key, events): the
  order is unspecified, but an fd reported twice would still show;
* exceptions are compared by exact type (and errno for ``OSError``).

fastselectors is deliberately stricter than the stdlib in a few places (it
refuses to lose a registration or to block forever).  Those cases are listed
in ``DOCUMENTED_DIVERGENCES``; for them the comparison is replaced by an
assertion that the two still differ, and a dedicated test at the end of this
file asserts fastselectors' own behaviour.
"""

import math
import os
from decimal import Decimal
from fractions import Fraction
try:
    import resource             # POSIX only
except ImportError:
    resource = None
import selectors
import socket
import sys
import time
from collections.abc import Mapping
from selectors import EVENT_READ, EVENT_WRITE

import pytest

from conftest import FilenoObject

BOTH = EVENT_READ | EVENT_WRITE
FD_SETSIZE = 1024


# ---------------------------------------------------------------------------
# the machinery: outcome(), Transcript and the ``same`` fixture
# ---------------------------------------------------------------------------

def outcome(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)``.

    Returns:
        ("ok", value) or ("raise", exception type); for ``OSError`` and its
        subclasses ("raise", type, errno).
    """
    try:
        return ("ok", fn(*args, **kwargs))
    except OSError as exc:
        return ("raise", type(exc), exc.errno)
    except Exception as exc:
        return ("raise", type(exc))


class Transcript:
    """The recorded steps of one run: a list of (label, outcome)."""

    def __init__(self, env):
        self.env = env
        self.steps = []

    def _add(self, label, result):
        assert label not in dict(self.steps), "duplicate label " + label
        self.steps.append((label, result))

    def __call__(self, label, fn, *args, **kwargs):
        """Record the outcome of a call; return its value (None if it
        raised), so the scenario can go on using it."""
        result = outcome(fn, *args, **kwargs)
        if result[0] == "ok":
            self._add(label, ("ok", self.env.norm(result[1])))
            return result[1]
        self._add(label, result)
        return None

    def select(self, label, sel, timeout):
        """Record ``sel.select(timeout)`` as a sorted list of
        (key, events, key is the registered key)."""
        def run():
            ready = sel.select(timeout)
            assert isinstance(ready, list), "select() must return a list"
            current = sel.get_map()
            return sorted(
                ((self.env.norm(key), events,
                  current is not None and current.get(key.fd) is key)
                 for key, events in ready), key=repr)
        self._add(label, outcome(run))

    def select_in_order(self, label, sel, timeout):
        """Record ``sel.select(timeout)`` as returned: order included."""
        def run():
            return [(self.env.norm(key), events)
                    for key, events in sel.select(timeout)]
        self._add(label, outcome(run))

    def message(self, label, fn, *args):
        """Record (exception type, str(exception)) -- only for fileobjs
        whose repr is the same in both runs."""
        try:
            fn(*args)
        except Exception as exc:
            self._add(label, ("raise", type(exc), str(exc)))
        else:
            self._add(label, ("no exception",))

    def check(self, label, value):
        """Record a value the scenario computed (e.g. an identity test)."""
        self._add(label, ("value", self.env.norm(value)))


def run_scenario(cls, scenario, env):
    rec = Transcript(env)
    sel = cls()
    try:
        scenario(sel, env, rec)
    finally:
        sel.close()
    return rec.steps


#: (case, selector name) -> the test asserting fastselectors' behaviour.
#: Only these comparisons are replaced; see the end of this file.
DOCUMENTED_DIVERGENCES = {
    # (1) modify() with invalid events raises ValueError and keeps the
    # registration: stdlib poll/epoll accept any mask, stdlib select raises
    # ValueError but drops the registration.
    ("modify-invalid-events", "EpollSelector"):
        "test_modify_with_invalid_events_raises_and_keeps_registration",
    ("modify-invalid-events", "PollSelector"):
        "test_modify_with_invalid_events_raises_and_keeps_registration",
    ("modify-invalid-events", "DevpollSelector"):
        "test_modify_with_invalid_events_raises_and_keeps_registration",
    ("modify-invalid-events", "SelectSelector"):
        "test_modify_with_invalid_events_raises_and_keeps_registration",
    # (2) a closed selector raises ValueError on select() and register():
    # the stdlib epoll selector does too (so it is compared normally), the
    # stdlib poll and select selectors keep working or block forever.
    # (1b) modify() with events of the wrong type raises what register()
    # raises for them (ValueError for None, TypeError for "1" and 1.0) and
    # keeps the registration: stdlib poll/epoll raise TypeError for None
    # (from their ``events & EVENT_READ``), stdlib select raises the same
    # types as ours but has already dropped the registration.
    ("modify-events-NoneType", "EpollSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    ("modify-events-NoneType", "PollSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    ("modify-events-NoneType", "DevpollSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    ("modify-events-NoneType", "SelectSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    ("modify-events-str", "SelectSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    ("modify-events-float", "SelectSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    # (1c) SelectSelector.modify() of a since-closed socket succeeds and
    # keeps the registration, as PollSelector does (select() then reports
    # EBADF, and unregister() works): the stdlib select selector re-registers
    # through fileno(), fails with ValueError and drops the registration.
    ("modify-after-fd-closed", "SelectSelector"):
        "test_select_selector_modify_after_fd_closed_keeps_registration",
    # (1d) KqueueSelector, as SelectSelector: the stdlib's modify() is
    # unregister() + register(), which drops the registration first.  A
    # since-closed socket: ours raises the kernel's OSError(EBADF) (and
    # drops it), the stdlib's ValueError, from fileno() == -1.
    ("modify-invalid-events", "KqueueSelector"):
        "test_modify_with_invalid_events_raises_and_keeps_registration",
    ("modify-events-NoneType", "KqueueSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    ("modify-events-str", "KqueueSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    ("modify-events-float", "KqueueSelector"):
        "test_modify_with_wrong_type_events_raises_like_register",
    ("modify-after-fd-closed", "KqueueSelector"):
        "test_kqueue.py::test_modify_after_fd_closed_raises_the_kernels_error",
    ("select-after-close", "PollSelector"):
        "test_select_on_closed_selector_raises_valueerror",
    ("select-after-close", "SelectSelector"):
        "test_select_on_closed_selector_raises_valueerror",
    ("register-after-close", "PollSelector"):
        "test_register_on_closed_selector_raises_valueerror",
    ("register-after-close", "SelectSelector"):
        "test_register_on_closed_selector_raises_valueerror",
}


@pytest.fixture
def same(selector_pair, make_env):
    """``same(scenario, case=None)`` -> the transcript of fastselectors'
    run, after asserting it equals the stdlib's."""
    def compare(scenario, case=None):
        expected = run_scenario(selector_pair.stdlib, scenario, make_env())
        actual = run_scenario(selector_pair.ours, scenario, make_env())
        documented = DOCUMENTED_DIVERGENCES.get((case, selector_pair.name))
        if documented is not None:
            assert actual != expected, (
                "{} on {} no longer diverges from the stdlib: remove it from "
                "DOCUMENTED_DIVERGENCES".format(case, selector_pair.name))
            return dict(actual)
        assert actual == expected
        return dict(actual)
    return compare


# ---------------------------------------------------------------------------
# register
# ---------------------------------------------------------------------------

def test_register_returns_the_key_that_get_key_and_get_map_return(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer_a")
        b, _ = env.socketpair("b", "peer_b")
        key_a = rec("register a", sel.register, a, EVENT_READ, "data-a")
        key_b = rec("register b", sel.register, b, EVENT_WRITE)
        rec("get_key a", sel.get_key, a)
        rec("get_key b", sel.get_key, b)
        rec.check("get_key returns the registered key",
                  sel.get_key(a) is key_a and sel.get_key(b) is key_b)
        rec.check("get_map holds the registered key",
                  sel.get_map()[a] is key_a)
    steps = same(scenario)
    assert steps["get_key returns the registered key"] == ("value",
                                                           ("bool", True))


def _socket(env):
    sock, peer = env.socketpair("it", "peer")
    peer.send(b"x")
    return sock


def _raw_read_fd(env):
    r, w = env.pipe("it", "w")
    os.write(w, b"x")
    return r


def _raw_write_fd(env):
    return env.pipe("r", "it")[1]


def _pipe_file_object(env):
    r, w = env.file_pipe("it", "w")
    w.write(b"x")
    return r


def _fileno_object(env):
    return env.name("it", FilenoObject(_raw_read_fd(env)))


def _float_fileno(env):
    # int(fileno()) is what counts: 5.0 is fd 5.
    return env.name("it", FilenoObject(float(_raw_read_fd(env))))


def _regular_file(env):
    return env.regular_file("it")   # epoll: PermissionError (EPERM)


def _true(env):
    return True     # bool is an int: fd 1


FILE_KINDS = {
    "socket": _socket,
    "raw-read-fd": _raw_read_fd,
    "raw-write-fd": _raw_write_fd,
    "pipe-file-object": _pipe_file_object,
    "object-with-fileno": _fileno_object,
    "fileno-returns-float": _float_fileno,
    "regular-file": _regular_file,
    "bool-True-is-fd-1": _true,
}


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_register_select_unregister_each_kind_of_file_object(same, kind):
    def scenario(sel, env, rec):
        fileobj = FILE_KINDS[kind](env)
        rec("register", sel.register, fileobj, BOTH, "data")
        rec("get_key", sel.get_key, fileobj)
        rec("len", len, sel.get_map())
        rec.select("select(0)", sel, 0)
        rec("unregister", sel.unregister, fileobj)
        rec("get_key after unregister", sel.get_key, fileobj)
        rec("len after unregister", len, sel.get_map())
    same(scenario)


class FilenoRaises:
    def __init__(self, exc_type):
        self.exc_type = exc_type

    def fileno(self):
        raise self.exc_type("no fd")


def _closed_socket(env):
    sock, _ = env.socketpair("it", "peer")
    sock.close()            # fileno() now returns -1
    return sock


def _closed_raw_fd(env):
    # Closed before register: stdlib epoll raises OSError(EBADF); poll and
    # select accept it (poll then reports POLLNVAL, select raises EBADF).
    r, w = env.pipe("it", "w")
    env.close(r)
    return r


BAD_FILE_OBJECTS = {
    "negative-fd": lambda env: -1,
    "huge-negative-fd": lambda env: -2 ** 70,
    "huge-fd": lambda env: 2 ** 70,
    "closed-socket": _closed_socket,
    "closed-raw-fd": _closed_raw_fd,
    "no-fileno": lambda env: env.name("it", object()),
    "fileno-raises-ValueError": lambda env: FilenoRaises(ValueError),
    "fileno-raises-TypeError": lambda env: FilenoRaises(TypeError),
    "fileno-raises-OSError": lambda env: FilenoRaises(OSError),
    "fileno-raises-RuntimeError": lambda env: FilenoRaises(RuntimeError),
    "fileno-returns-str": lambda env: FilenoObject("abc"),
    "fileno-returns-None": lambda env: FilenoObject(None),
    "fileno-returns-negative": lambda env: FilenoObject(-3),
    "fileno-returns-huge": lambda env: FilenoObject(2 ** 70),
    "float": lambda env: 1.5,
    "str": lambda env: "3",
    "None": lambda env: None,
}


@pytest.mark.parametrize("kind", BAD_FILE_OBJECTS)
def test_register_bad_file_object(same, kind):
    def scenario(sel, env, rec):
        fileobj = BAD_FILE_OBJECTS[kind](env)
        rec("register", sel.register, fileobj, EVENT_READ)
        rec("len", len, sel.get_map())
        rec("get_key", sel.get_key, fileobj)
        if len(sel.get_map()):
            rec.select("select(0)", sel, 0)
            rec("unregister", sel.unregister, fileobj)
    same(scenario)


EVENTS = {
    "0": 0,
    # 4, 8, 256, 512 and 1024 are fastselectors' extended flags:
    # unknown to both libraries are 16 and 1 << 12.
    "unknown-bit-16": 16,
    "unknown-bit-4096": 1 << 12,
    "read-plus-unknown": EVENT_READ | 16,
    "-1": -1,
    "None": None,
    "str": "1",
    "float": 1.0,
    "True": True,       # a bool is an int: True is EVENT_READ, kept as True
    "READ": EVENT_READ,
    "WRITE": EVENT_WRITE,
    "READ|WRITE": BOTH,
}


@pytest.mark.parametrize("events", EVENTS.values(), ids=EVENTS.keys())
def test_register_events_validation(same, events):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        rec("register", sel.register, a, events)
        rec("get_key", sel.get_key, a)
    same(scenario)


def test_events_are_validated_before_the_file_object(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ)
        rec("bad fileobj, events 0", sel.register, object(), 0)
        rec("bad fileobj, events str", sel.register, object(), "1")
        rec("duplicate fileobj, events 0", sel.register, a, 0)
        rec("duplicate fileobj, events str", sel.register, a, "1")
        rec("bad fileobj, good events", sel.register, object(), EVENT_READ)
    same(scenario)


def test_register_the_same_fd_twice_raises_keyerror_and_keeps_the_first(
        same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        first = rec("register", sel.register, a, EVENT_READ, "first")
        rec("same object again", sel.register, a, EVENT_WRITE, "second")
        rec("its fd as an int", sel.register, a.fileno(), EVENT_WRITE)
        rec("another object, same fd", sel.register,
            FilenoObject(a.fileno()), EVENT_WRITE)
        rec("get_key", sel.get_key, a)
        rec.check("first key kept", sel.get_key(a) is first)
        rec("len", len, sel.get_map())
    same(scenario)


def test_registering_again_after_unregister_works(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        rec("register", sel.register, a, EVENT_READ, 1)
        rec("unregister", sel.unregister, a)
        rec("register again", sel.register, a, EVENT_WRITE, 2)
        rec.select("select(0)", sel, 0)
    same(scenario)


# ---------------------------------------------------------------------------
# unregister
# ---------------------------------------------------------------------------

def test_unregister_returns_the_key_and_forgets_it(same):
    def scenario(sel, env, rec):
        a, peer = env.socketpair("a", "peer")
        b, _ = env.socketpair("b", "peer_b")
        peer.send(b"x")
        key = sel.register(a, EVENT_READ, "a")
        sel.register(b, EVENT_WRITE, "b")
        removed = rec("unregister a", sel.unregister, a)
        rec.check("returns the registered key", removed is key)
        rec("get_key a", sel.get_key, a)
        rec("a in map", sel.get_map().__contains__, a)
        rec.select("select(0) reports b only", sel, 0)
        rec("unregister a again", sel.unregister, a)
    same(scenario)


def test_unregister_by_fd_of_a_registered_object(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ)
        rec("unregister by fd", sel.unregister, a.fileno())
        rec("len", len, sel.get_map())
    same(scenario)


UNKNOWN = {
    "unregistered-socket": lambda env: env.socketpair("it", "peer")[0],
    "unregistered-fd": lambda env: env.pipe("it", "w")[0],
    "object-without-fileno": lambda env: env.name("it", object()),
    "negative-fd": lambda env: -1,
    "str": lambda env: "3",
}


@pytest.mark.parametrize("kind", UNKNOWN)
def test_unregister_modify_get_key_of_an_unknown_object(same, kind):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ)
        unknown = UNKNOWN[kind](env)
        rec("unregister", sel.unregister, unknown)
        rec("modify", sel.modify, unknown, EVENT_WRITE)
        rec("get_key", sel.get_key, unknown)
        rec("in get_map()", sel.get_map().__contains__, unknown)
        rec("len", len, sel.get_map())
    same(scenario)


# ---------------------------------------------------------------------------
# modify
# ---------------------------------------------------------------------------

def test_modify_with_same_events_and_data_returns_the_same_key_object(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        key = sel.register(a, EVENT_READ, "data")
        again = rec("modify", sel.modify, a, EVENT_READ, "data")
        rec.check("same key object", again is key)
        rec.check("get_key is that key", sel.get_key(a) is key)
    steps = same(scenario)
    assert steps["same key object"] == ("value", ("bool", True))


def test_modify_data_only_returns_a_new_key(same):
    def scenario(sel, env, rec):
        a, peer = env.socketpair("a", "peer")
        peer.send(b"x")
        key = sel.register(a, EVENT_READ, "old")
        new = rec("modify", sel.modify, a, EVENT_READ, "new")
        rec.check("new key object", new is not key)
        rec("old key unchanged", lambda: key)
        rec("get_key", sel.get_key, a)
        rec.select("select reports the new data", sel, 0)
    same(scenario)


def test_modify_events_only_changes_what_select_reports(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")   # writable, not readable
        key = sel.register(a, EVENT_READ, "data")
        rec.select("select(0) before", sel, 0)
        new = rec("modify", sel.modify, a, EVENT_WRITE, "data")
        rec.check("new key object", new is not key)
        rec("get_key", sel.get_key, a)
        rec.select("select(0) after", sel, 0)
        rec("modify back", sel.modify, a, EVENT_READ, "data")
        rec.select("select(0) after modify back", sel, 0)
    same(scenario)


def test_modify_without_data_resets_data_to_none(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ, "data")
        rec("modify same events", sel.modify, a, EVENT_READ)
        rec("modify other events", sel.modify, a, EVENT_WRITE)
        rec("get_key", sel.get_key, a)
    same(scenario)


def test_modify_both_events_and_data(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ, "old")
        rec("modify", sel.modify, a, BOTH, "new")
        rec.select("select(0)", sel, 0)
    same(scenario)


class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__


def test_modify_compares_data_with_ne_not_identity(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        first = env.name("first", AlwaysEqual())
        second = env.name("second", AlwaysEqual())
        key = sel.register(a, EVENT_READ, first)
        again = rec("modify with equal data", sel.modify, a, EVENT_READ,
                    second)
        rec.check("same key kept", again is key)
    same(scenario)


def test_modify_events_true_equals_read(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        key = sel.register(a, EVENT_READ)
        again = rec("modify READ -> True", sel.modify, a, True)
        rec.check("same key kept", again is key)
        rec("modify to WRITE", sel.modify, a, EVENT_WRITE)
        rec("modify WRITE -> True", sel.modify, a, True)
        rec.select("select(0)", sel, 0)
    same(scenario)


INVALID_MODIFY_EVENTS = {"0": 0, "unknown-bit-16": 16,
                         "unknown-bit-4096": 1 << 12, "-1": -1}


@pytest.mark.parametrize("events", INVALID_MODIFY_EVENTS.values(),
                         ids=INVALID_MODIFY_EVENTS.keys())
def test_modify_with_invalid_events(same, events):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_WRITE, "data")
        rec("modify", sel.modify, a, events, "data")
        rec("get_key", sel.get_key, a)
        rec.select("select(0)", sel, 0)
    same(scenario, case="modify-invalid-events")


BAD_TYPE_MODIFY_EVENTS = {"None": None, "str": "1", "float": 1.0}


@pytest.mark.parametrize("events", BAD_TYPE_MODIFY_EVENTS.values(),
                         ids=BAD_TYPE_MODIFY_EVENTS.keys())
def test_modify_with_events_of_the_wrong_type(same, events):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_WRITE, "data")
        rec("modify", sel.modify, a, events, "data")
        rec("get_key", sel.get_key, a)
    same(scenario, case="modify-events-" + type(events).__name__)


def test_modify_after_the_fd_was_closed(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ, "data")
        env.close(a)
        rec("modify events", sel.modify, a, EVENT_WRITE, "data")
        rec("len", len, sel.get_map())
        rec("unregister", sel.unregister, a)
    same(scenario, case="modify-after-fd-closed")


def test_modify_data_only_after_the_fd_was_closed(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ, "old")
        env.close(a)
        rec("modify data", sel.modify, a, EVENT_READ, "new")
        rec("get_key", sel.get_key, a)
        rec("unregister", sel.unregister, a)
    same(scenario)


# ---------------------------------------------------------------------------
# get_key / get_map
# ---------------------------------------------------------------------------

def test_get_map_is_a_live_read_only_mapping(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer_a")
        b, _ = env.socketpair("b", "peer_b")
        c, _ = env.socketpair("c", "peer_c")
        m = sel.get_map()
        rec("empty len", len, m)
        sel.register(a, EVENT_READ, "a")
        sel.register(b.fileno(), EVENT_WRITE, "b")
        rec("len", len, m)
        rec("iter yields fds", lambda: sorted(
            (env.fd_role(fd) for fd in m), key=repr))
        rec("keys", lambda: sorted((env.fd_role(fd) for fd in m.keys()),
                                   key=repr))
        rec("values", lambda: sorted(m.values(), key=repr))
        rec("items", lambda: sorted(((env.fd_role(fd), k)
                                     for fd, k in m.items()), key=repr))
        rec("getitem by fileobj", m.__getitem__, a)
        rec("getitem by fd", m.__getitem__, a.fileno())
        rec("getitem by object with the fd", m.__getitem__,
            FilenoObject(a.fileno()))
        rec("getitem b by socket", m.__getitem__, b)
        rec("getitem missing", m.__getitem__, c)
        rec("get missing", m.get, c)
        rec("get present", m.get, a)
        rec("contains fileobj", m.__contains__, a)
        rec("contains fd", m.__contains__, b.fileno())
        rec("contains missing", m.__contains__, c)
        rec("contains object without fileno", m.__contains__, object())
        rec("getitem object without fileno", m.__getitem__, object())
        rec("is a Mapping", isinstance, m, Mapping)
        rec("== same mapping", lambda: m == sel.get_map())
        sel.register(c, EVENT_READ, "c")
        rec("sees a later registration", m.__contains__, c)
        rec("len after register", len, m)
        sel.unregister(a)
        rec("sees an unregistration", m.__contains__, a)
        rec("len after unregister", len, m)

        def setitem():
            m[a] = "x"

        def delitem():
            del m[b]

        rec("setitem", setitem)
        rec("delitem", delitem)
        rec("pop", lambda: m.pop(b))
        rec("clear", lambda: m.clear())
        rec("len after attempted writes", len, m)
    same(scenario)


def test_keyerror_messages_name_the_missing_object(same):
    def scenario(sel, env, rec):
        m = sel.get_map()
        rec.message("getitem", m.__getitem__, 987654)
        rec.message("get_key", sel.get_key, 987654)
        rec.message("unregister", sel.unregister, 987654)
        rec.message("modify", sel.modify, 987654, EVENT_READ)
        rec.message("bad fileobj", sel.register, FilenoObject("abc"),
                    EVENT_READ)
        rec.message("negative fd", sel.register, -5, EVENT_READ)
        rec.message("bad events", sel.register, 987654, 0)
        rec.message("bad events 48", sel.register, 987654, 48)
    same(scenario)


def test_get_map_after_close_is_none_and_an_old_map_is_empty(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ)
        m = sel.get_map()
        sel.close()
        rec("get_map", sel.get_map)
        rec("old map len", len, m)
        rec("old map getitem", m.__getitem__, a)
        rec("old map iter", list, m)
    same(scenario)


# ---------------------------------------------------------------------------
# close and the context manager
# ---------------------------------------------------------------------------

def test_context_manager_returns_the_selector_and_closes_it(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        with sel as entered:
            rec.check("__enter__ returns the selector", entered is sel)
            rec("register inside", sel.register, a, EVENT_READ)
        rec("get_map after exit", sel.get_map)
        rec("get_key after exit", sel.get_key, a)
    steps = same(scenario)
    assert steps["get_map after exit"] == ("ok", ("NoneType", None))


def test_context_manager_closes_on_exception(same):
    def scenario(sel, env, rec):
        def body():
            with sel:
                raise LookupError("inside")
        rec("with raising body", body)
        rec("get_map after exit", sel.get_map)
    same(scenario)


def test_use_after_close_matches_stdlib(same):
    """unregister/modify -> KeyError, get_map -> None, get_key ->
    RuntimeError, close twice is fine: exactly like the stdlib."""
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ)
        rec("close", sel.close)
        rec("close again", sel.close)
        rec("get_map", sel.get_map)
        rec("get_key", sel.get_key, a)
        rec("unregister", sel.unregister, a)
        rec("modify", sel.modify, a, EVENT_WRITE)
        rec("register with events 0", sel.register, a, 0)
        rec("has fileno", hasattr, sel, "fileno")
        if hasattr(sel, "fileno"):
            rec("fileno", sel.fileno)
    steps = same(scenario)
    assert steps["get_key"] == ("raise", RuntimeError)
    assert steps["unregister"] == ("raise", KeyError)


def test_select_after_close(same):
    def scenario(sel, env, rec):
        a, peer = env.socketpair("a", "peer")
        peer.send(b"x")                      # so no call can block
        sel.register(a, BOTH)
        sel.close()
        rec.select("select(0)", sel, 0)
        rec.select("select(-1)", sel, -1)
        rec.select("select(None)", sel, None)
    same(scenario, case="select-after-close")


def test_register_after_close(same):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.close()
        rec("register", sel.register, a, EVENT_READ)
        rec("get_map", sel.get_map)
    same(scenario, case="register-after-close")


# ---------------------------------------------------------------------------
# select(): results
# ---------------------------------------------------------------------------

def test_select_on_an_empty_selector_with_timeout_0(same):
    def scenario(sel, env, rec):
        rec.select("select(0)", sel, 0)
    steps = same(scenario)
    assert steps["select(0)"] == ("ok", [])


def test_select_reports_the_registered_key_with_its_data(same):
    def scenario(sel, env, rec):
        a, peer = env.socketpair("a", "peer")
        peer.send(b"x")
        data = env.name("data", object())
        sel.register(a, EVENT_READ, data)
        rec.select("select(0)", sel, 0)
    steps = same(scenario)
    [(key, events, is_registered_key)] = steps["select(0)"][1]
    assert is_registered_key


def test_fd_ready_for_read_and_write_is_reported_once_with_both_bits(same):
    def scenario(sel, env, rec):
        a, peer = env.socketpair("a", "peer")
        peer.send(b"x")
        sel.register(a, BOTH)
        rec.select("select(0)", sel, 0)
    steps = same(scenario)
    [(key, events, _)] = steps["select(0)"][1]
    assert events == BOTH


def test_readiness_is_masked_by_the_keys_events(same):
    def scenario(sel, env, rec):
        a, peer = env.socketpair("a", "peer")      # writable
        b, _ = env.socketpair("b", "peer_b")       # writable
        sel.register(a, EVENT_READ)
        sel.register(b, EVENT_WRITE)
        rec.select("only b writable", sel, 0)
        peer.send(b"x")
        rec.select("a readable too", sel, 0)
        a.recv(1)
        rec.select("a drained", sel, 0)
    same(scenario)


def test_unregistered_fd_is_not_reported(same):
    def scenario(sel, env, rec):
        a, peer_a = env.socketpair("a", "peer_a")
        b, peer_b = env.socketpair("b", "peer_b")
        peer_a.send(b"x")
        peer_b.send(b"x")
        sel.register(a, EVENT_READ)
        sel.register(b, EVENT_READ)
        sel.unregister(b)
        rec.select("select(0)", sel, 0)
    same(scenario)


@pytest.mark.parametrize("timeout", [0, 5.0])
def test_poll_and_select_report_in_the_stdlibs_order(selector_pair, env,
                                                     timeout):
    """The contract (_types.Core): poll reports in registration order and
    select in the order of its set of ready fds, as the stdlib's -- after
    unregistering (holes, then a compaction), re-registering and modifying
    too, and in blocking waits (where a waker pipe is in the wait).  Both
    run on the same sockets: select's order depends on the fd numbers."""
    if selector_pair.name in ("EpollSelector", "KqueueSelector",
                              "DevpollSelector"):
        pytest.skip("{} reports in the kernel's order: nothing a "
                    "selector decides".format(selector_pair.name))
    socks = [env.socketpair("s{}".format(i), "p{}".format(i))[0]
             for i in range(10)]

    def run(cls):
        steps = []
        sel = cls()

        def select(label):
            steps.append((label, [(key.data, events) for key, events
                                  in sel.select(timeout)]))
        try:
            for i, sock in enumerate(socks):
                sel.register(sock, EVENT_WRITE, i)
            select("all")
            for i in (2, 5):
                sel.unregister(socks[i])
            select("holes")
            sel.register(socks[2], EVENT_WRITE, "again")
            sel.modify(socks[0], BOTH, "modified")
            sel.modify(socks[1], EVENT_WRITE, "data only")
            select("re-registered and modified")
            for i in (3, 4, 6, 7, 9):
                sel.unregister(socks[i])
            select("compacted")
            sel.register(socks[9], EVENT_WRITE, "last")
            select("appended")
        finally:
            sel.close()
        return steps

    assert run(selector_pair.ours) == run(selector_pair.stdlib)


def test_many_ready_fds_are_all_reported(same):
    def scenario(sel, env, rec):
        for i in range(40):
            sock, peer = env.socketpair("s{}".format(i), "p{}".format(i))
            if i % 2:
                peer.send(b"x")
            sel.register(sock, EVENT_READ if i % 3 else BOTH, i)
        rec.select("select(0)", sel, 0)
    same(scenario)


HUP_CASES = {
    # pipe read end, writer closed: POLLHUP
    "pipe-reader-READ": ("pipe-reader", EVENT_READ),
    "pipe-reader-READ|WRITE": ("pipe-reader", BOTH),
    # pipe write end, reader closed: POLLERR
    "pipe-writer-WRITE": ("pipe-writer", EVENT_WRITE),
    "pipe-writer-READ|WRITE": ("pipe-writer", BOTH),
    "pipe-writer-READ": ("pipe-writer", EVENT_READ),
    # socket, peer closed
    "socket-READ": ("socket", EVENT_READ),
    "socket-WRITE": ("socket", EVENT_WRITE),
    "socket-READ|WRITE": ("socket", BOTH),
}


@pytest.mark.parametrize("case", HUP_CASES)
def test_hangup_is_reported_as_masked_by_the_keys_events(same, case):
    what, events = HUP_CASES[case]

    def scenario(sel, env, rec):
        if what == "socket":
            it, other = env.socketpair("it", "other")
        else:
            r, w = env.pipe("r", "w")
            it, other = (r, w) if what == "pipe-reader" else (w, r)
        sel.register(it, events)
        env.close(other)
        rec.select("select(0)", sel, 0)
    same(scenario)


def test_fd_closed_while_registered_then_select_then_unregister(same):
    """Closing a registered socket: epoll forgets it, poll reports POLLNVAL,
    select raises EBADF; unregister() by the closed object must not raise."""
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer_a")
        b, peer_b = env.socketpair("b", "peer_b")
        peer_b.send(b"x")
        sel.register(a, EVENT_READ, "a")
        sel.register(b, EVENT_READ, "b")
        env.close(a)
        rec.select("select(0)", sel, 0)
        rec("unregister closed", sel.unregister, a)
        rec("len", len, sel.get_map())
        rec.select("select(0) after unregister", sel, 0)
    steps = same(scenario)
    assert steps["unregister closed"][0] == "ok"


def test_raw_fd_closed_while_registered_then_select_then_unregister(same):
    def scenario(sel, env, rec):
        r, w = env.pipe("r", "w")
        sel.register(r, EVENT_READ, "r")
        env.close(r)
        rec.select("select(0)", sel, 0)
        rec("unregister closed", sel.unregister, r)
        rec("len", len, sel.get_map())
        rec.select("select(0) after unregister", sel, 0)
    steps = same(scenario)
    assert steps["unregister closed"][0] == "ok"


@pytest.fixture
def fd_limit_above_fd_setsize():
    """Raise the soft RLIMIT_NOFILE so that fds >= 1500 can be opened."""
    if resource is None:
        pytest.skip("no resource module (not POSIX): cannot raise the fd "
                    "limit")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2048
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip("hard RLIMIT_NOFILE is {} < {}: cannot open an fd "
                        "above FD_SETSIZE".format(hard, wanted))
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_fd_above_fd_setsize(same, selector_pair, fd_limit_above_fd_setsize):
    """SelectSelector registers it but select() raises ValueError; epoll
    and poll have no such limit."""
    def scenario(sel, env, rec):
        high = env.fd_at_least("high", 1500)    # a pipe's write end
        rec("register", sel.register, high, EVENT_WRITE, "high")
        rec.select("select(0)", sel, 0)
        rec("unregister", sel.unregister, high)
    steps = same(scenario)
    assert steps["register"][0] == "ok"
    if selector_pair.name == "SelectSelector":
        assert steps["select(0)"] == ("raise", ValueError)
    else:
        assert len(steps["select(0)"][1]) == 1


# ---------------------------------------------------------------------------
# select(): timeouts
# ---------------------------------------------------------------------------

#: Timeouts that return promptly even when nothing is ready.
SHORT_TIMEOUTS = {"0": 0, "0.0": 0.0, "-1": -1, "-inf": -math.inf,
                  "1e-9": 1e-9, "0.0015": 0.0015}

#: Timeouts only safe to try when something is ready (or that must raise).
ANY_TIMEOUTS = dict(SHORT_TIMEOUTS, **{
    "None": None, "1000.0": 1000.0, "1": 1, "nan": math.nan,
    "inf": math.inf, "1e300": 1e300, "2**100": 2 ** 100, "str": "1",
    "bytes": b"1", "complex": 1j})


@pytest.mark.parametrize("timeout", SHORT_TIMEOUTS.values(),
                         ids=SHORT_TIMEOUTS.keys())
def test_timeout_with_nothing_ready(same, timeout):
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ)
        rec.select("select", sel, timeout)
    steps = same(scenario)
    assert steps["select"] == ("ok", [])


#: What CPython's stdlib raises for these timeouts, on every selector class.
#: PyPy's select module differs (select() accepts NaN, epoll returns at once
#: for 1e300, select() answers EINVAL for inf): fastselectors gives CPython's
#: errors on every interpreter, so on PyPy these are checked against this
#: table instead of against PyPy's stdlib.
CPYTHON_TIMEOUT_ERRORS = {"nan": ValueError, "inf": OverflowError,
                          "1e300": OverflowError, "2**100": OverflowError}
# KqueueSelector's: select.kqueue.control() turns every conversion error
# into TypeError("timeout argument must be a number or None, ...").
CPYTHON_KQUEUE_TIMEOUT_ERROR = TypeError


def cpython_timeout_error(name, timeout_id):
    if name == "KqueueSelector":
        return CPYTHON_KQUEUE_TIMEOUT_ERROR
    return CPYTHON_TIMEOUT_ERRORS[timeout_id]
ON_CPYTHON = sys.implementation.name == "cpython"


@pytest.mark.parametrize("timeout_id", ANY_TIMEOUTS.keys())
def test_timeout_with_something_ready(same, selector_pair, env, timeout_id):
    timeout = ANY_TIMEOUTS[timeout_id]
    if not ON_CPYTHON and timeout_id in CPYTHON_TIMEOUT_ERRORS:
        sel = selector_pair.ours()
        try:
            a, peer = env.socketpair("a", "peer")
            peer.send(b"x")
            sel.register(a, EVENT_READ)
            with pytest.raises(cpython_timeout_error(selector_pair.name,
                                                     timeout_id)):
                sel.select(timeout)
        finally:
            sel.close()
        return

    def scenario(sel, env, rec):
        a, peer = env.socketpair("a", "peer")
        peer.send(b"x")
        sel.register(a, EVENT_READ)
        rec.select("select", sel, timeout)
    steps = same(scenario)
    if timeout_id in CPYTHON_TIMEOUT_ERRORS:
        assert steps["select"][:2] == ("raise", cpython_timeout_error(
            selector_pair.name, timeout_id))


# ---------------------------------------------------------------------------
# fastselectors' own behaviour (no oracle)
# ---------------------------------------------------------------------------

class FloatOnly:
    """A number only through __float__ (no comparison, no arithmetic)."""

    def __float__(self):
        return 0.001


@pytest.mark.parametrize("timeout", [
    Decimal("0.001"), Fraction(1, 1000), Fraction(-1, 2), FloatOnly(),
    2 ** 70, -2 ** 70], ids=repr)
def test_timeout_types_as_the_stdlib(same, selector_pair, env, timeout):
    """Every class takes the timeout types CPython's stdlib takes, and
    refuses the others with its exception (a Decimal: TypeError; the native
    cores once read any __float__).  PyPy's select module differs (it takes
    a Decimal, and 2**70 s returns at once or fails with EINVAL): there we
    give CPython's answer, as on every interpreter."""
    def scenario(sel, env, rec):
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ)
        rec.select("select", sel, timeout)

    if (sys.version_info < (3, 10) and isinstance(timeout, Decimal)
            and selector_pair.name == "SelectSelector"):
        # Python 3.9's select.select() takes anything with __int__ (with a
        # DeprecationWarning), truncated to whole seconds: 0.001 s waits 0.
        # We refuse a Decimal there too, as 3.10+ do.
        with selector_pair.ours() as sel:
            with pytest.raises(TypeError):
                sel.select(timeout)
        return
    if sys.implementation.name == "cpython" or not isinstance(
            timeout, (Decimal, int)) or timeout < 0:
        same(scenario)
        return
    with selector_pair.ours() as sel:
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ)
        with pytest.raises(TypeError if isinstance(timeout, Decimal)
                           else OverflowError):
            sel.select(timeout)


@pytest.mark.parametrize("timeout", [1e-9, 0.0015, 0.011])
def test_select_waits_at_least_the_timeout(selector, env, timeout):
    a, _ = env.socketpair("a", "peer")
    selector.register(a, EVENT_READ)
    start = time.monotonic()
    assert selector.select(timeout) == []
    assert time.monotonic() - start >= timeout


def test_select_result_is_a_list_of_key_events_tuples(selector, env):
    a, peer = env.socketpair("a", "peer")
    peer.send(b"x")
    key = selector.register(a, BOTH, "data")
    ready = selector.select(0)
    assert type(ready) is list
    [(got_key, events)] = ready
    assert got_key is key
    assert type(events) is int and events == BOTH
    assert selector.select(timeout=0) == ready, "timeout is a keyword too"


# ---------------------------------------------------------------------------
# DOCUMENTED DIVERGENCES: fastselectors is stricter than the stdlib here.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("events", INVALID_MODIFY_EVENTS.values(),
                         ids=INVALID_MODIFY_EVENTS.keys())
def test_modify_with_invalid_events_raises_and_keeps_registration(
        selector, env, events):
    # stdlib: PollSelector and EpollSelector accept any mask here (0 waits
    # for nothing, unknown bits are stored in key.events); SelectSelector
    # raises ValueError but has already dropped the registration.
    a, _ = env.socketpair("a", "peer")      # writable
    key = selector.register(a, EVENT_WRITE, "data")
    with pytest.raises(ValueError, match="Invalid events"):
        selector.modify(a, events, "data")
    assert selector.get_key(a) is key
    assert len(selector.get_map()) == 1
    assert selector.select(0) == [(key, EVENT_WRITE)]


@pytest.mark.parametrize("timeout", [0, -1, 0.001, None])
def test_select_on_closed_selector_raises_valueerror(selector_cls, env,
                                                     timeout):
    # stdlib: EpollSelector raises ValueError (its epoll object is closed);
    # PollSelector and SelectSelector keep polling the fds they had and
    # return [], or block forever when there were none (timeout None).
    sel = selector_cls()
    a, peer = env.socketpair("a", "peer")
    peer.send(b"x")     # a selector that still polled would not block
    sel.register(a, EVENT_READ)
    sel.close()
    with pytest.raises(ValueError, match="^I/O operation on closed "
                                         "selector$"):
        sel.select(timeout)


def test_register_on_closed_selector_raises_valueerror(selector_cls, env):
    # stdlib: EpollSelector raises ValueError; PollSelector and
    # SelectSelector register the fd into a selector nobody can use.
    sel = selector_cls()
    sel.close()
    a, _ = env.socketpair("a", "peer")
    with pytest.raises(ValueError, match="^I/O operation on closed "
                                         "selector$"):
        sel.register(a, EVENT_READ)
    assert sel.get_map() is None


@pytest.mark.parametrize("events, exc", [(None, ValueError),
                                         ("1", TypeError),
                                         (1.0, TypeError)])
def test_modify_with_wrong_type_events_raises_like_register(selector, env,
                                                            events, exc):
    # stdlib: poll/epoll raise TypeError for None; select raises these types
    # but has already dropped the registration.
    a, _ = env.socketpair("a", "peer")
    key = selector.register(a, EVENT_WRITE, "data")
    with pytest.raises(exc):
        selector.register(env.socketpair("b", "peer_b")[0], events)
    with pytest.raises(exc):
        selector.modify(a, events, "data")
    assert selector.get_key(a) is key
    assert selector.select(0) == [(key, EVENT_WRITE)]


def test_select_selector_modify_after_fd_closed_keeps_registration(env):
    # stdlib: ValueError("Invalid file descriptor: -1") and the registration
    # is gone, so unregister() then raises ValueError too.
    import fastselectors
    sel = fastselectors.SelectSelector()
    try:
        a, _ = env.socketpair("a", "peer")
        sel.register(a, EVENT_READ, "data")
        env.close(a)
        key = sel.modify(a, EVENT_WRITE, "data")
        assert key.events == EVENT_WRITE and key.fileobj is a
        assert len(sel.get_map()) == 1
        assert sel.unregister(a) is key
        assert len(sel.get_map()) == 0
    finally:
        sel.close()


@pytest.mark.parametrize("how", ["data-only-with-True", "events-via-fd",
                                 "events-via-object", "data-only-via-fd"])
def test_modify_key_contents_and_map_order_match_the_stdlib(selector_pair,
                                                            how):
    """Which object and which events value end up in the key after
    modify(), and the map's order: the stdlib's SelectSelector modifies by
    unregister() + register(), its poll/epoll selectors by _replace().
    """
    results = []
    for cls in (selector_pair.ours, selector_pair.stdlib):
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        try:
            with cls() as sel:
                sel.register(a, selectors.EVENT_READ, "a")
                sel.register(c, selectors.EVENT_READ, "c")
                if how == "data-only-with-True":
                    key = sel.modify(a, True, "a2")
                elif how == "events-via-fd":
                    key = sel.modify(a.fileno(), selectors.EVENT_WRITE, "a")
                elif how == "events-via-object":
                    key = sel.modify(a, selectors.EVENT_WRITE, "a")
                else:
                    key = sel.modify(a.fileno(), selectors.EVENT_READ, "a3")
                results.append((
                    "int" if isinstance(key.fileobj, int) else "socket",
                    type(key.events).__name__, key.events, key.data,
                    [k.data for k in sel.get_map().values()]))
        finally:
            for s in (a, b, c, d):
                s.close()
    assert results[0] == results[1]


@pytest.mark.parametrize("fd", [2 ** 31, 2 ** 70])
def test_register_huge_fd_on_closed_selector_like_the_stdlib(selector_pair,
                                                             fd):
    """CPython's EpollSelector converts the fd before it finds the epoll
    closed: OverflowError.  (The poll and select classes raise our closed
    error, a documented divergence: their stdlib twins have no closed
    state.)"""
    classes = [selector_pair.ours]
    compared = selector_pair.name in ("EpollSelector", "KqueueSelector")
    if compared:        # (KqueueSelector: select.kevent() refuses 2**70)
        classes.append(selector_pair.stdlib)
    errors = []
    for cls in classes:
        sel = cls()
        sel.close()
        with pytest.raises(Exception) as info:
            sel.register(fd, EVENT_READ)
        errors.append(type(info.value))
    if compared:
        assert errors[0] is errors[1]
    else:
        assert errors == [ValueError]
