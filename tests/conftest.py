"""Shared fixtures: which selector classes to test, and leak-free fds.

Every test that takes ``selector_pair`` (or ``selector_cls``) runs once per
selector class that the ACTIVE tier provides (``fastselectors.BACKEND``,
forced in CI with ``FASTSELECTORS_BACKEND=native|cffi|pure``).  The pair
holds the stdlib class of the same name: the oracle the differential tests
compare against.

``FASTSELECTORS_SIMULATE_PLATFORM=select-only|kqueue|devpoll``, with
``tests/simulate`` on ``PYTHONPATH``, runs the suite on a simulated platform
(``tests/simulate/platforms.py``).

``make_env`` hands out :class:`Env` objects: named socketpairs, pipes and
other file objects that are all closed when the test ends (a leaked socket
is a ResourceWarning, an error under this suite's warning filter).  An
``Env`` also knows the *role* of every object and fd it created, so the
results of two runs on different fds can be compared
(:meth:`Env.norm`).
"""

import os
import select
import selectors
import socket
import sys
from selectors import EVENT_READ, EVENT_WRITE
from typing import NamedTuple

import pytest

SIMULATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "simulate")
SIMULATED = os.environ.get("FASTSELECTORS_SIMULATE_PLATFORM", "").strip()
if SIMULATE_DIR not in sys.path:
    sys.path.insert(0, SIMULATE_DIR)    # the fakes, for tests that use them
import platforms                        # noqa: E402  (tests/simulate)

if SIMULATED and platforms.active != SIMULATED:
    # Too late to do it here: pytest has imported selectors already.
    raise pytest.UsageError(
        "FASTSELECTORS_SIMULATE_PLATFORM={} needs {} on PYTHONPATH (its "
        "sitecustomize changes the select module at startup)".format(
            SIMULATED, SIMULATE_DIR))
if SIMULATED:
    # Absolute, for the interpreters the tests start in other directories.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [SIMULATE_DIR] + [p for p in os.environ.get(
            "PYTHONPATH", "").split(os.pathsep) if p])

import fastselectors                    # noqa: E402  (after the simulation)

#: Selector classes the differential tests know how to compare.
SELECTOR_NAMES = tuple(name for name in
                       ("EpollSelector", "KqueueSelector", "DevpollSelector",
                        "PollSelector", "SelectSelector")
                       if hasattr(fastselectors, name))


def pytest_report_header(config):
    return ["fastselectors tier: {}{}".format(
                fastselectors.BACKEND,
                ", simulated platform: " + SIMULATED if SIMULATED else ""),
            "fastselectors selector classes: {}".format(
                ", ".join(SELECTOR_NAMES))]


@pytest.fixture(scope="session", autouse=True)
def _record_tier(record_testsuite_property):
    """Put the tier in the JUnit XML report too (no-op without it)."""
    record_testsuite_property("fastselectors_tier", fastselectors.BACKEND)


class SelectorPair(NamedTuple):
    name: str       # e.g. "EpollSelector"
    ours: type      # fastselectors.<name>
    stdlib: type    # selectors.<name>, the oracle


def merged_per_fd(ready):
    """The stdlib's KqueueSelector reports an fd ready for read and write
    as two pairs, one per kqueue filter; ours, as every other selector, as
    one pair (docs/api.md).  Merge them, in the order of the first."""
    merged, where = [], {}
    for key, events in ready:
        if key.fd in where:
            pos = where[key.fd]
            merged[pos] = (key, merged[pos][1] | events)
        else:
            where[key.fd] = len(merged)
            merged.append((key, events))
    return merged


if hasattr(selectors, "KqueueSelector"):
    class KqueueOracle(selectors.KqueueSelector):
        """The stdlib's KqueueSelector with its results merged per fd:
        the oracle for ours (the one difference: test_kqueue.py)."""

        def select(self, timeout=None):
            if hasattr(self, "_max_events"):
                return merged_per_fd(super().select(timeout))
            # Before 3.11.7/3.12.1 (gh-110038) its batch held one kevent
            # per fd: an fd ready both ways came back in two calls.  The
            # oracle is the fixed one: its select(), with room for all.
            timeout = None if timeout is None else max(timeout, 0)
            max_ev = max(2 * len(self._fd_to_key), 1)
            try:
                kevents = self._selector.control(None, max_ev, timeout)
            except InterruptedError:
                return []
            ready = []
            for kev in kevents:
                key = self._fd_to_key.get(kev.ident)
                if key:
                    events = ((kev.filter == select.KQ_FILTER_READ
                               and EVENT_READ)
                              | (kev.filter == select.KQ_FILTER_WRITE
                                 and EVENT_WRITE))
                    ready.append((key, events & key.events))
            return merged_per_fd(ready)

    KqueueOracle.__name__ = KqueueOracle.__qualname__ = "KqueueSelector"


def stdlib_oracle(name):
    """The stdlib class *name*, as the differential tests compare it."""
    if name == "KqueueSelector" and hasattr(selectors, name):
        return KqueueOracle
    return getattr(selectors, name, None)


@pytest.fixture(params=SELECTOR_NAMES)
def selector_pair(request):
    """(name, fastselectors class, stdlib class), once per class."""
    name = request.param
    oracle = stdlib_oracle(name)
    if oracle is None:
        pytest.skip("the stdlib selectors module has no {} on this "
                    "platform: nothing to compare against".format(name))
    return SelectorPair(name, getattr(fastselectors, name), oracle)


@pytest.fixture(params=SELECTOR_NAMES)
def selector_cls(request):
    """The fastselectors class, once per class of the active tier."""
    return getattr(fastselectors, request.param)


@pytest.fixture
def selector(selector_cls):
    """An open fastselectors selector, closed after the test."""
    sel = selector_cls()
    yield sel
    sel.close()


@pytest.fixture
def sockets():
    """``sockets()`` -> a connected non-blocking socketpair; every socket
    made (or ``sockets.adopt()``-ed) is closed at the end."""
    made = []

    def socketpair():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        made.extend((a, b))
        return a, b

    def adopt(sock):
        made.append(sock)
        return sock

    socketpair.adopt = adopt
    yield socketpair
    for sock in made:
        sock.close()


class FilenoObject:
    """An object that is not a file but has ``fileno()``."""

    def __init__(self, fd):
        self._fd = fd

    def fileno(self):
        return self._fd

    def __repr__(self):
        return "FilenoObject()"


class Env:
    """Named file objects for one run of a scenario; see :meth:`norm`."""

    def __init__(self, tmp_path):
        self._tmp_path = tmp_path
        self._objects = {}      # id(obj) -> (obj, role)
        self._fds = {}          # fd -> role, fixed at creation
        self._raw_fds = []      # raw fds still owned by this env
        self._closables = []    # sockets, files: close() is idempotent

    # -- creating resources --------------------------------------------

    def name(self, role, obj):
        """Give *obj* a role; returns *obj*."""
        self._objects[id(obj)] = (obj, role)
        return obj

    def socketpair(self, role_a, role_b):
        """Two connected non-blocking AF_UNIX stream sockets."""
        a, b = socket.socketpair()
        for role, sock in ((role_a, a), (role_b, b)):
            sock.setblocking(False)
            self._closables.append(sock)
            self.name(role, sock)
            self._fds[sock.fileno()] = role
        return a, b

    def pipe(self, role_r, role_w):
        """os.pipe(): two raw int fds (read end, write end)."""
        r, w = os.pipe()
        for role, fd in ((role_r, r), (role_w, w)):
            self._raw_fds.append(fd)
            self._fds[fd] = role
        return r, w

    def file_pipe(self, role_r, role_w):
        """A pipe as two unbuffered file objects (io.FileIO)."""
        r, w = os.pipe()
        fr = os.fdopen(r, "rb", buffering=0)
        fw = os.fdopen(w, "wb", buffering=0)
        for role, f in ((role_r, fr), (role_w, fw)):
            self._closables.append(f)
            self.name(role, f)
            self._fds[f.fileno()] = role
        return fr, fw

    def regular_file(self, role):
        """An open regular file (epoll refuses these with EPERM)."""
        path = self._tmp_path / "{}-{}.txt".format(role, id(self))
        path.write_bytes(b"contents")
        f = open(path, "rb")
        self._closables.append(f)
        self.name(role, f)
        self._fds[f.fileno()] = role
        return f

    def fd_at_least(self, role, minimum):
        """A dup of a pipe's write end on the first free fd >= *minimum*
        (the caller must have raised RLIMIT_NOFILE)."""
        r, w = self.pipe(role + ".r", role + ".w")
        fd = minimum
        while _fd_is_open(fd):
            fd += 1
        os.dup2(w, fd)
        self._raw_fds.append(fd)
        self._fds[fd] = role
        return fd

    def close(self, obj):
        """Close a resource of this env (a raw fd or a file object)."""
        if isinstance(obj, int):
            self._raw_fds.remove(obj)
            os.close(obj)
        else:
            obj.close()

    def close_all(self):
        for obj in self._closables:
            obj.close()
        for fd in self._raw_fds:
            os.close(fd)
        self._raw_fds.clear()

    # -- normalising results -------------------------------------------

    def fd_role(self, fd):
        """The role that owns the int *fd*; anything else as :meth:`norm`."""
        if type(fd) is int and fd in self._fds:
            return ("fd", self._fds[fd])
        return self.norm(fd)

    def norm(self, value):
        """Make *value* comparable across two runs that used different fds.

        SelectorKey -> ("key", fileobj, fd, events, data), each part by role;
        lists and tuples element-wise; objects by role; plain scalars as
        (type name, value) so that True and 1 stay different.
        """
        if isinstance(value, selectors.SelectorKey):
            return ("key", self.fd_role(value.fileobj),
                    self.fd_role(value.fd),
                    typed(value.events), self.norm(value.data))
        if isinstance(value, list):
            return [self.norm(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.norm(v) for v in value)
        if id(value) in self._objects:
            return ("obj", self._objects[id(value)][1])
        if value is None or isinstance(value, (bool, int, float, str,
                                               bytes)):
            return typed(value)
        return ("unnamed", type(value).__name__)


def typed(value):
    """(type name, value): keeps True apart from 1 and 1.0 apart from 1."""
    return (type(value).__name__, value)


def _fd_is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def make_env(tmp_path):
    """Factory of :class:`Env`; everything it opened is closed at the end."""
    envs = []

    def make():
        env = Env(tmp_path)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close_all()


@pytest.fixture
def env(make_env):
    return make_env()
