"""Model-based differential fuzzing with hypothesis.

A hypothesis ``RuleBasedStateMachine`` drives two *sides* through the same
random sequence of operations: a fastselectors selector of the active tier
and the stdlib selector of the same class (the oracle).  Each side has its
own socketpairs and pipes; after every operation the outcomes (return value
or exception type and errno; which key objects are the same), and after
every step the whole observable state (``get_map()`` contents in iteration
order, ``get_key()`` of every object, an old map's view) must be equal once
normalised.  ``select()`` results are compared order-insensitively.

Only ``EVENT_READ``/``EVENT_WRITE`` are used: the extended flags (EDGE,
ONESHOT, EXCLUSIVE, EVENT_PRIORITY = 4, EVENT_RDHUP = 8) have no stdlib
oracle, so the invalid events tried are the ones invalid for *both*
libraries (0, 16, 1 << 12, -1, 2 ** 40, "x", None, 2.5).

Comparing two runs that use different fds
-----------------------------------------
Every side allocates its fds in a range of its own (``Side.base`` ..
``Side.base + SPAN``), always the lowest free slot there, exactly as the
kernel does: a closed fd's slot is reused by the next object on *both*
sides.  So an int fd is normalised to its slot (``("fd", 3)``), an object to
its role (``("obj", "o3")``), and closing a registered fd, then creating an
object that takes its number, happens identically on both sides.

Closed but still registered
---------------------------
Objects are closed without being unregistered, and their fd numbers reused
by later objects.  The stdlib then behaves differently per class, and
fastselectors must do the same on each: SelectSelector's select() raises
OSError(EBADF); PollSelector reports the key as ready for all its events
(POLLNVAL), or reports the readiness of the newer object that got the fd;
EpollSelector's kernel object dropped the fd, so nothing is reported and a
later modify() fails (EBADF, or ENOENT if the number was reused) and
forgets the registration.  No special model is needed: both sides run the
same sequence on their own fds, and the outcomes are compared as they are.

Documented divergences
----------------------
Where fastselectors is deliberately stricter than the stdlib, the case is
looked up in ``test_differential.DOCUMENTED_DIVERGENCES`` (the one table of
them): the operation is then *not* run on the oracle, fastselectors'
documented behaviour is asserted instead, and both sides stay in the same
state (see ``ModelMachine._documented``).  Nothing else is excused.

Profiles
--------
* quick (default): a few seconds per tier, part of the normal suite;
* long: ``FASTSELECTORS_FUZZ_STEPS=100000`` runs at least that many steps
  per tier x selector class (3/4 in "select" mode, 1/4 in "dispatch" mode,
  where every ``data`` is a callable recorder and ``dispatch(0)`` is checked
  against the stdlib's ``select(0)``).  ``tools/fuzz-long`` runs it on every
  tier.

The steps actually run are counted per tier x class x mode and printed at
the end of the module's tests (and appended to the file named by
``FASTSELECTORS_FUZZ_REPORT``, if set).
"""

import collections
import math
import os
import selectors
import socket
import sys
import time
from selectors import EVENT_READ, EVENT_WRITE

import pytest

pytest.importorskip("hypothesis")

# Pipes in select(), fd numbers placed with dup2(), RLIMIT_NOFILE: POSIX.
pytestmark = pytest.mark.skipif(os.name != "posix",
                                reason="the model uses POSIX fds and pipes")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (RuleBasedStateMachine,  # noqa: E402
                                 initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

import fastselectors  # noqa: E402
from conftest import FilenoObject, typed  # noqa: E402
from test_differential import DOCUMENTED_DIVERGENCES  # noqa: E402

BOTH = EVENT_READ | EVENT_WRITE
TIER = fastselectors.BACKEND
CLOSED_MESSAGE = "I/O operation on closed selector"

# ---------------------------------------------------------------------------
# profiles
# ---------------------------------------------------------------------------

#: Steps per example (hypothesis may end an example earlier).
STEP_COUNT = 50
#: Quick profile: examples per (class, mode).
QUICK_EXAMPLES = {"select": 30, "dispatch": 10}
#: Long profile: FASTSELECTORS_FUZZ_STEPS steps per tier x class, in total
#: over both modes, split by these shares.
MODE_SHARE = {"select": 0.75, "dispatch": 0.25}
LONG_STEPS = int(os.environ.get("FASTSELECTORS_FUZZ_STEPS", "0") or 0)


def _health_checks():
    names = ("too_slow", "filter_too_much", "data_too_large",
             "large_base_example")
    return [getattr(HealthCheck, n) for n in names
            if hasattr(HealthCheck, n)]


def _settings(max_examples):
    return settings(max_examples=max_examples,
                    stateful_step_count=STEP_COUNT, deadline=None,
                    database=None, derandomize=False, print_blob=True,
                    suppress_health_check=_health_checks())


# ---------------------------------------------------------------------------
# step counting and the end-of-module summary
# ---------------------------------------------------------------------------

#: (tier, class name, mode) -> steps run / examples run / seconds.
STEPS = collections.Counter()
EXAMPLES = collections.Counter()
SECONDS = collections.Counter()
#: (tier, class name, mode, operation) -> how many times it ran.
OPERATIONS = collections.Counter()
#: (tier, class name, mode, method, "ok" or exception name) -> count.
OUTCOMES = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary(request):
    yield
    if not STEPS:
        return
    lines = []
    per_class = collections.Counter()
    for (tier, name, mode), steps in sorted(STEPS.items()):
        per_class[tier, name] += steps
        lines.append("fuzz: tier={} class={} mode={} steps={} examples={} "
                     "time={:.1f}s".format(tier, name, mode, steps,
                                           EXAMPLES[tier, name, mode],
                                           SECONDS[tier, name, mode]))
    for (tier, name), steps in sorted(per_class.items()):
        lines.append("fuzz: tier={} class={} total steps={}".format(
            tier, name, steps))
    lines.append("fuzz: tier={} total steps={} (python {})".format(
        TIER, sum(per_class.values()), sys.implementation.name))
    ops = collections.Counter()
    for (_, _, _, op), n in OPERATIONS.items():
        ops[op] += n
    lines.append("fuzz: operations: " + ", ".join(
        "{}={}".format(op, n) for op, n in sorted(ops.items())))
    outcomes = collections.Counter()
    for (_, _, _, op, kind), n in OUTCOMES.items():
        outcomes[op + ":" + kind] += n
    lines.append("fuzz: outcomes (fastselectors side): " + ", ".join(
        "{}={}".format(op, n) for op, n in sorted(outcomes.items())))
    report = os.environ.get("FASTSELECTORS_FUZZ_REPORT")
    if report:
        with open(report, "a") as f:
            f.write("\n".join(lines) + "\n")
    # After pytest's own summary, when output is no longer captured: the
    # step counts (the operation and outcome tallies go to the report file).
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        def emit():
            for line in lines:
                if "steps=" in line and "mode=" not in line:
                    reporter.write_line(line)
        request.config.add_cleanup(emit)


# ---------------------------------------------------------------------------
# the two sides
# ---------------------------------------------------------------------------

#: fds per side: at most MAX_OPEN are open at once, so the last slot is
#: never open (the "never-opened fd" target).
SPAN = 32
MAX_OPEN = 6
MAX_CREATED = 16


def _fd_is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _side_bases():
    """Two free fd ranges below FD_SETSIZE (select() must accept them)."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = 1024 if soft == resource.RLIM_INFINITY else min(soft, 1024)
    first = top - 2 * SPAN - 16
    if first < 64:
        pytest.skip("RLIMIT_NOFILE {} is too low for two fd ranges"
                    .format(soft))
    return first, first + SPAN


class Recorder:
    """Callable ``data`` for dispatch mode: logs ``(key, events)``."""

    def __init__(self, log):
        self._log = log

    def __call__(self, key, events):
        self._log.append((key, events))


class FilenoRaises:
    """fileno() raises OSError: it propagates (register, lookups)."""

    def fileno(self):
        raise OSError("no fd")


class Resource:
    """One end of a socketpair or pipe on one side."""

    def __init__(self, kind, obj, fd, role):
        self.kind = kind        # "sock", "pipe" (raw int fd), "file"
        self.obj = obj          # socket, int, io.FileIO
        self.fd = fd            # its fd (slot) as created
        self.role = role
        self.wrap = FilenoObject(fd)
        self.open = True

    def close(self):
        if self.kind == "pipe":
            if self.open:
                os.close(self.obj)
        else:
            self.obj.close()    # idempotent
        self.open = False


class Side:
    """A selector and the objects it is driven with."""

    def __init__(self, cls, base, data_log):
        self.base = base
        for fd in range(base, base + SPAN):
            assert not _fd_is_open(fd), (
                "fd {} is open: the fuzz needs {}..{} free".format(
                    fd, base, base + SPAN - 1))
        self.resources = []
        self.roles = {}         # id(obj) -> role, for normalisation
        self.calls = data_log   # dispatch mode: what the recorders saw
        self.sel = cls()
        self.map0 = self.sel.get_map()      # an old map, kept across close
        self.nofileno = self._name(object(), "no-fileno")
        self.raising = self._name(FilenoRaises(), "fileno-raises")
        self.recorders = [self._name(Recorder(self.calls), "r%d" % i)
                          for i in range(3)]
        self.bad_targets = [self.nofileno, self.raising, -1, -2 ** 70,
                            2 ** 70, "3", None, 1.5,
                            base + SPAN - 1]    # a never-opened fd

    def _name(self, obj, role):
        self.roles[id(obj)] = role
        return obj

    # -- resources ---------------------------------------------------------

    def _place(self, fd):
        """Move *fd* to the lowest free slot of this side's range."""
        for target in range(self.base, self.base + SPAN - 1):
            if not _fd_is_open(target):
                os.dup2(fd, target, inheritable=False)
                os.close(fd)
                return target
        raise AssertionError("no free fd slot")

    def _add(self, kind, obj, fd):
        res = Resource(kind, obj, fd, "o%d" % len(self.resources))
        if kind != "pipe":
            self._name(obj, res.role)
        self._name(res.wrap, res.role + ".wrap")
        self.resources.append(res)
        return res

    def create(self, kind):
        if kind == "socketpair":
            a, b = socket.socketpair()
            fds = [self._place(a.detach()), self._place(b.detach())]
            for fd in fds:
                sock = socket.socket(fileno=fd)
                sock.setblocking(False)
                self._add("sock", sock, fd)
        else:
            r, w = os.pipe()
            r, w = self._place(r), self._place(w)
            for fd, writable in ((r, False), (w, True)):
                os.set_blocking(fd, False)
                if kind == "pipe":
                    self._add("pipe", fd, fd)
                else:
                    f = os.fdopen(fd, "wb" if writable else "rb",
                                  buffering=0)
                    self._add("file", f, fd)
        return [res.fd - self.base for res in self.resources[-2:]]

    def _views_of(self):
        for res in self.resources:
            yield res.obj, res
            if res.kind != "pipe":
                yield res.fd, res
            yield res.wrap, res

    def views(self):
        """Each object, its fd as an int, a FilenoObject of that fd; in the
        same order on both sides."""
        return [view for view, _ in self._views_of()]

    def targets(self):
        """Everything a selector method may be given."""
        return self.views() + self.bad_targets

    def target(self, t):
        """The object TARGET *t* designates."""
        views = self.views()
        if views and t < 85:
            return views[t % len(views)]
        return self.bad_targets[t % len(self.bad_targets)]

    def free_view(self, t):
        """Like :meth:`target`, but only a view of an object whose fd is
        not registered, if there is one."""
        m = self.sel.get_map()
        free = [view for view, res in self._views_of()
                if m is None or res.fd not in m]
        return free[t % len(free)] if free else self.target(t)

    def pick(self, t):
        """Like :meth:`target`, but below 40 the file object of one of the
        registered keys (in fd order: the same on both sides)."""
        m = self.sel.get_map()
        if t < 40 and m:
            keys = sorted(m.values(), key=lambda key: key.fd)
            return keys[t % len(keys)].fileobj
        return self.target(t)

    def open_count(self):
        return sum(res.open for res in self.resources)

    def close_all(self):
        try:
            self.sel.close()
        finally:
            for res in self.resources:
                res.close()

    # -- normalising -------------------------------------------------------

    def fd_role(self, value):
        if type(value) is int and self.base <= value < self.base + SPAN:
            return ("fd", value - self.base)
        return self.norm(value)

    def norm(self, value):
        """Comparable across the two sides (see conftest.Env.norm)."""
        if isinstance(value, selectors.SelectorKey):
            return ("key", self.fd_role(value.fileobj),
                    self.fd_role(value.fd), typed(value.events),
                    self.norm(value.data))
        if value is None or isinstance(value, (bool, int, float, str,
                                               bytes)):
            return typed(value)
        if isinstance(value, list):
            return [self.norm(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.norm(v) for v in value)
        if id(value) in self.roles:
            return ("obj", self.roles[id(value)])
        return ("unnamed", type(value).__name__)

    def state(self, ordered):
        """The observable state of the selector, normalised; with
        *ordered*, in the maps' iteration order."""
        def order(values):
            return list(values) if ordered else sorted(values, key=repr)

        m = self.sel.get_map()
        if m is None:
            current = None
        else:
            items = list(m.items())
            assert len(m) == len(items)
            for fd, key in items:
                assert type(fd) is int and key.fd == fd
                assert m[fd] is key and m.get(fd) is key and fd in m
            current = (len(m), order((self.fd_role(fd), self.norm(key))
                                     for fd, key in items))
        old = (len(self.map0), order(self.fd_role(fd) for fd in self.map0))
        keys = [outcome(self.sel.get_key, t, norm=self.norm)
                for t in self.targets()]
        return {"get_map": current, "old map": old, "get_key": keys}


def call(fn, *args):
    """(True, return value) or (False, ("raise", type[, errno]))."""
    try:
        return True, fn(*args)
    except OSError as exc:
        return False, ("raise", type(exc), exc.errno)
    except Exception as exc:
        return False, ("raise", type(exc))


def outcome(fn, *args, norm=None):
    """("ok", value normalised by *norm*) or ("raise", type[, errno])."""
    ok, value = call(fn, *args)
    if not ok:
        return value
    return ("ok", norm(value) if norm else value)


def _write(res, data):
    """Write *data* to a Resource; the bytes written, or None (EAGAIN)."""
    if res.kind == "sock":
        return res.obj.send(data)
    if res.kind == "pipe":
        return os.write(res.obj, data)
    return res.obj.write(data)


def stdlib_events_ok(events):
    """The stdlib's register() check of *events*."""
    try:
        return bool(events) and not (events & ~BOTH)
    except TypeError:
        return False


def fileobj_to_fd_ok(fileobj):
    """Would the stdlib's ``_fileobj_to_fd`` accept *fileobj*?"""
    if isinstance(fileobj, int):
        return fileobj >= 0
    try:
        return int(fileobj.fileno()) >= 0
    except Exception:
        return False


# ---------------------------------------------------------------------------
# the state machine
# ---------------------------------------------------------------------------

#: What a selector method is given: below 85, one of the objects (or its
#: fd, or a FilenoObject of it); else one of Side.bad_targets.
TARGET = st.integers(0, 99)
RESOURCE = st.integers(0, 31)
KIND = st.sampled_from(["socketpair", "pipe", "file-pipe"])
#: Valid events (True is EVENT_READ, kept as True), 3 in 4, and events
#: invalid for both libraries; 4 and 8 are fastselectors' EVENT_PRIORITY
#: and EVENT_RDHUP, valid there, and not part of this fuzz.
VALID_EVENTS = [EVENT_READ, EVENT_WRITE, BOTH, True]
INVALID_EVENTS = [0, 16, 1 << 12, -1, 2 ** 40, "x", None, 2.5]
EVENTS = st.sampled_from(VALID_EVENTS * 6 + INVALID_EVENTS)
SHUTDOWN = {"shutdown-WR": socket.SHUT_WR, "shutdown-RD": socket.SHUT_RD,
            "shutdown-RDWR": socket.SHUT_RDWR}
IO_ACTION = st.sampled_from(["write", "drain", "fill", "close", "close"]
                            + sorted(SHUTDOWN))
#: data: 1, True and 1.0 are equal, so modify() keeps the old one.
DATA = st.sampled_from([None, 0, 1, True, 1.0, "a", "b"])
RECORDER = st.integers(0, 2)
TIMEOUT = st.sampled_from([0, 0.0, -1])


class ModelMachine(RuleBasedStateMachine):
    """Set by make_machine(): ``pair`` (conftest.SelectorPair), ``mode``."""

    pair = None
    mode = "select"

    def __init__(self):
        super().__init__()
        self.name = self.pair.name
        self.key = (TIER, self.name, self.mode)
        self.selector_closed = False
        self.steps = 0
        # get_map()'s iteration order is compared too, until a documented
        # divergence leaves no stdlib order to compare with.
        self.ordered = True
        base_ours, base_oracle = _side_bases()
        self.ours = self.oracle = None
        self.ours = Side(self.pair.ours, base_ours, [])
        self.oracle = Side(self.pair.stdlib, base_oracle, [])

    def teardown(self):
        for side in (self.ours, self.oracle):
            if side is not None:
                side.close_all()

    # -- helpers -------------------------------------------------------------

    def _step(self, op, *args):
        self.steps += 1
        STEPS[self.key] += 1
        OPERATIONS[self.key + (op,)] += 1

    def _sides(self):
        return self.ours, self.oracle

    def _compare(self, what, ours, theirs):
        assert ours == theirs, (
            "{} on {} (tier {}) differs from the stdlib:\n  ours:   {!r}\n"
            "  stdlib: {!r}".format(what, self.name, TIER, ours, theirs))

    def _both(self, what, method, ours_args, oracle_args, same=None):
        """Call ``side.sel.<method>(*args)`` on both sides and compare the
        outcomes; ``same(side, value)``, if given, is compared too (e.g.
        "the returned key is the registered one").  Returns our raw value,
        or None if it raised."""
        results = []
        raw = None
        for side, args in ((self.ours, ours_args),
                           (self.oracle, oracle_args)):
            ok, value = call(getattr(side.sel, method), *args)
            if not ok:
                results.append(value)
                continue
            if side is self.ours:
                raw = value
            results.append(("ok", side.norm(value))
                           + ((same(side, value),) if same else ()))
        self._tally(method, results[0])
        self._compare(what, *results)
        return raw

    def _tally(self, op, result):
        """What the operations did (the report's "outcomes" line)."""
        if result[0] == "ok":
            kind = "ok"
            if op == "select" or op == "dispatch":
                kind = "ok-ready" if result[1] else "ok-empty"
        else:
            kind = result[1].__name__
        OUTCOMES[self.key + (op, kind)] += 1

    def _documented(self, case, what):
        """The operation is a documented divergence: it is not run on the
        oracle; the caller asserts fastselectors' documented behaviour."""
        assert (case, self.name) in DOCUMENTED_DIVERGENCES, (
            "{}: not in DOCUMENTED_DIVERGENCES: {}".format(what, case))
        OPERATIONS[self.key + ("documented:" + case,)] += 1

    def _assert_closed_error(self, what, fn, *args):
        try:
            fn(*args)
        except ValueError as exc:
            assert str(exc) == CLOSED_MESSAGE, (what, str(exc))
        else:
            raise AssertionError("{}: no ValueError on a closed selector"
                                 .format(what))

    def _data(self, side, data):
        return side.recorders[data] if self.mode == "dispatch" else data

    def _current_key(self, side, target):
        m = side.sel.get_map()
        if m is None:
            return None
        try:
            return m[target]
        except Exception:
            return None

    # -- resources ---------------------------------------------------------

    @initialize(kind=KIND)
    def first_objects(self, kind):
        """Every example starts with a socketpair or a pipe."""
        self.create(kind)

    @precondition(lambda self: self.ours.open_count() <= MAX_OPEN - 2 and
                  len(self.ours.resources) <= MAX_CREATED - 2)
    @rule(kind=KIND)
    def create(self, kind):
        self._step("create", kind)
        slots = [side.create(kind) for side in self._sides()]
        # Not a fastselectors property: the harness's own fd allocation.
        assert slots[0] == slots[1], slots

    def _resource(self, i):
        n = len(self.ours.resources)
        return self.ours.resources[i % n], self.oracle.resources[i % n]

    @precondition(lambda self: self.ours.resources)
    @rule(i=RESOURCE, action=IO_ACTION)
    def io(self, i, action):
        """Do *action* to the same object on both sides; compare the
        outcomes.  "close" closes a peer, or a registered object without
        unregistering it; a closed raw fd is not used again (its number may
        belong to a newer object)."""
        self._step(action, i)
        results = []
        for res in self._resource(i):
            if action == "close":
                results.append(outcome(res.close))
            elif res.kind == "pipe" and not res.open:
                results.append("closed")
            elif action.startswith("shutdown"):
                results.append(outcome(res.obj.shutdown, SHUTDOWN[action])
                               if res.kind == "sock" else "not a socket")
            else:
                results.append(outcome(getattr(self, "_" + action), res))
        self._compare(action, *results)

    @staticmethod
    def _write(res):
        return _write(res, b"w" * 100)

    @staticmethod
    def _drain(res):
        """Read everything available: (bytes read, saw EOF)."""
        total = 0
        while True:
            try:
                if res.kind == "sock":
                    chunk = res.obj.recv(65536)
                elif res.kind == "pipe":
                    chunk = os.read(res.obj, 65536)
                else:
                    chunk = res.obj.read(65536)
            except BlockingIOError:
                return total, False
            if chunk is None:           # FileIO: EAGAIN
                return total, False
            if not chunk:
                return total, True
            total += len(chunk)

    @staticmethod
    def _fill(res):
        """Write until the buffer is full (EAGAIN): not writable then."""
        chunk = b"f" * 65536
        while True:
            try:
                if _write(res, chunk) is None:
                    return "full"
            except BlockingIOError:
                return "full"

    # -- the selector ------------------------------------------------------

    @rule(t=TARGET, events=EVENTS, data=DATA, recorder=RECORDER)
    def register(self, t, events, data, recorder):
        """register() anything: see TARGET and EVENTS."""
        self._step("register", t, events, data)
        self._register(self.ours.target(t), self.oracle.target(t), events,
                       data, recorder)

    @precondition(lambda self: self.ours.resources)
    @rule(t=RESOURCE, events=st.sampled_from(VALID_EVENTS), data=DATA,
          recorder=RECORDER)
    def register_object(self, t, events, data, recorder):
        """register() an object whose fd is not registered (or its fd, or
        a FilenoObject of it), with valid events: more registrations."""
        self._step("register", t, events, data)
        self._register(self.ours.free_view(t), self.oracle.free_view(t),
                       events, data, recorder)

    def _register(self, o_t, s_t, events, data, recorder):
        ours, oracle = self._sides()
        what = "register({}, {!r})".format(ours.norm(o_t), events)
        d = data if self.mode == "select" else recorder
        if (self.selector_closed and self.name != "EpollSelector"
                and stdlib_events_ok(events) and fileobj_to_fd_ok(s_t)):
            # stdlib poll/select register into a selector nobody can use.
            self._documented("register-after-close", what)
            self._assert_closed_error(what, ours.sel.register, o_t, events,
                                      self._data(ours, d))
            return
        key = self._both(what, "register", (o_t, events,
                                            self._data(ours, d)),
                         (s_t, events, self._data(oracle, d)),
                         same=lambda side, key: side.sel.get_map()[key.fd]
                         is key)
        if key is not None:
            assert key.fileobj is o_t and key.events is events, what

    def _modify_case(self, s_t, events):
        """The DOCUMENTED_DIVERGENCES case of ``modify(s_t, events)`` on the
        oracle, or None to compare."""
        key = self._current_key(self.oracle, s_t)
        if key is None or not (events != key.events):
            return None     # not registered / events unchanged: no check
        select = self.name == "SelectSelector"
        if events is None:
            return "modify-events-NoneType"
        if isinstance(events, str):
            return "modify-events-str" if select else None
        if isinstance(events, float):
            return "modify-events-float" if select else None
        if not stdlib_events_ok(events):
            return "modify-invalid-events"
        if select and not fileobj_to_fd_ok(s_t):
            return "modify-after-fd-closed"
        return None

    @rule(t=TARGET, events=EVENTS, data=DATA, recorder=RECORDER)
    def modify(self, t, events, data, recorder):
        self._step("modify", t, events, data)
        ours, oracle = self._sides()
        o_t, s_t = ours.pick(t), oracle.pick(t)
        d = data if self.mode == "select" else recorder
        o_d, s_d = self._data(ours, d), self._data(oracle, d)
        what = "modify({}, {!r}, {!r})".format(ours.norm(o_t), events,
                                               ours.norm(o_d))
        before = self._current_key(ours, o_t)
        case = self._modify_case(s_t, events)
        if case is not None:
            self._documented(case, what)
            if case == "modify-after-fd-closed":
                # Ours keeps the registration (as poll does); the stdlib
                # drops it.  Check, then modify back: same state again,
                # but for the map's order (modify() moved the fd last).
                self.ordered = False
                key = ours.sel.modify(o_t, events, o_d)
                assert (key.fileobj, key.fd, key.events, key.data) == (
                    before.fileobj, before.fd, events, o_d), what
                assert ours.sel.get_map()[key.fd] is key
                ours.sel.modify(o_t, before.events, before.data)
                return
            # Invalid events: raises what register() raises for them, and
            # the registration is kept (the invariant compares it with the
            # oracle's, which was not touched).
            expected = TypeError if isinstance(events, (str, float)) \
                else ValueError
            with pytest.raises(expected):
                ours.sel.modify(o_t, events, o_d)
            assert self._current_key(ours, o_t) is before, what
            return
        olds = {id(side): self._current_key(side, target)
                for side, target in ((ours, o_t), (oracle, s_t))}
        # (the key returned is the old key object iff nothing changed, and
        # it is the registered key)
        self._both(what, "modify", (o_t, events, o_d), (s_t, events, s_d),
                   same=lambda side, key: (
                       key is olds[id(side)],
                       side.sel.get_map()[key.fd] is key))

    @rule(t=TARGET)
    def unregister(self, t):
        self._step("unregister", t)
        ours, oracle = self._sides()
        o_t, s_t = ours.pick(t), oracle.pick(t)
        olds = {id(side): self._current_key(side, target)
                for side, target in ((ours, o_t), (oracle, s_t))}
        # (it returns the very key it removed)
        self._both("unregister({})".format(ours.norm(o_t)), "unregister",
                   (o_t,), (s_t,),
                   same=lambda side, key: key is olds[id(side)])

    def _select_result(self, side, ready):
        assert isinstance(ready, list)
        current = side.sel.get_map()
        return sorted(((side.norm(key), typed(events),
                        current is not None and current.get(key.fd) is key)
                       for key, events in ready), key=repr)

    @rule(timeout=TIMEOUT, close=st.integers(0, 39))
    def select_or_close(self, timeout, close):
        """select(timeout): compared as a sorted list of (key, events, key
        is the registered key).  1 in 40, after the first 10 steps of an
        example: close() the selector instead (the rest of the example then
        runs on a closed selector)."""
        if close == 0 and self.steps >= 10:
            self._step("close selector")
            self._both("close()", "close", (), ())
            self.selector_closed = True
            return
        self._step("select", timeout)
        what = "select({!r})".format(timeout)
        if self.selector_closed and self.name != "EpollSelector":
            # stdlib poll/select keep polling (or block forever).
            self._documented("select-after-close", what)
            self._assert_closed_error(what, self.ours.sel.select, timeout)
            return
        results = []
        for side in self._sides():
            res = outcome(side.sel.select, timeout)
            if res[0] == "ok":
                res = ("ok", self._select_result(side, res[1]))
            results.append(res)
        self._tally("select", results[0])
        self._compare(what, *results)

    @precondition(lambda self: self.mode == "dispatch")
    @rule()
    def dispatch(self):
        """Our dispatch(0) calls each ready key's recorder once with
        (key, events): exactly the stdlib's select(0) result."""
        self._step("dispatch")
        ours, oracle = self._sides()
        if self.selector_closed and self.name != "EpollSelector":
            self._documented("select-after-close", "dispatch(0)")
            self._assert_closed_error("dispatch(0)", ours.sel.dispatch, 0)
            return
        del ours.calls[:]
        res = outcome(ours.sel.dispatch, 0)
        if res[0] == "ok":
            assert res[1] == len(ours.calls), (res, ours.calls)
            res = ("ok", self._select_result(ours, ours.calls))
            for key, _ in ours.calls:
                assert ours.sel.get_map()[key.fd].data is key.data
        else:
            assert ours.calls == []
        theirs = outcome(oracle.sel.select, 0)
        if theirs[0] == "ok":
            theirs = ("ok", self._select_result(oracle, theirs[1]))
        self._tally("dispatch", res)
        self._compare("dispatch(0) vs the stdlib's select(0)", res, theirs)

    # -- after every step --------------------------------------------------

    @invariant()
    def same_state(self):
        if self.ours is None or self.oracle is None:
            return
        self._compare("state", self.ours.state(self.ordered),
                      self.oracle.state(self.ordered))


def make_machine(pair, mode):
    return type("ModelMachine_{}_{}".format(pair.name, mode),
                (ModelMachine,), {"pair": pair, "mode": mode})


@pytest.mark.parametrize("mode", ["select", "dispatch"])
def test_model_fuzz(selector_pair, mode):
    machine = make_machine(selector_pair, mode)
    key = (TIER, selector_pair.name, mode)
    start_steps = STEPS[key]
    start = time.monotonic()
    try:
        _run_profile(machine, key, mode, start_steps)
    finally:
        SECONDS[key] += time.monotonic() - start


def _run_profile(machine, key, mode, start_steps):
    if LONG_STEPS:
        target = int(math.ceil(LONG_STEPS * MODE_SHARE[mode]))
        while STEPS[key] - start_steps < target:
            remaining = target - (STEPS[key] - start_steps)
            # Examples end at STEP_COUNT steps or earlier: ask for enough
            # for the rest, and loop if hypothesis ran fewer steps.
            examples = max(1, int(math.ceil(remaining / (STEP_COUNT * 0.8))))
            machine_settings = _settings(examples)
            _run(machine, machine_settings, key)
    else:
        _run(machine, _settings(QUICK_EXAMPLES[mode]), key)


def _run(machine, machine_settings, key):
    counted = []

    class Counted(machine):
        def __init__(self):
            super().__init__()
            counted.append(1)

    Counted.__name__ = machine.__name__
    try:
        run_state_machine_as_test(Counted, settings=machine_settings)
    finally:
        EXAMPLES[key] += len(counted)
