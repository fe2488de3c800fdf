"""Scale and limits.

* 19,000 registered fds on every class of the active tier (the soft
  RLIMIT_NOFILE raised to the hard limit for the test): select() and
  dispatch() report exactly the ready ones, a few or thousands at once.
  SelectSelector behaves as the stdlib's: registering an fd >= FD_SETSIZE
  works, select() then raises ValueError.
* Sparse high fds (dup2'd near the hard limit, everything else low): the
  native epoll core indexes its table by fd, so its memory must stay
  O(highest fd) with a small constant, and unregister must really remove
  the fd from the kernel (a new register of the number must work).
* EMFILE: with no fd number left, constructing an EpollSelector raises what
  the stdlib's raises (OSError, EMFILE) and leaks nothing.
* "Nothing half-registered": a register() that the kernel refuses (EPERM
  for a regular file, EBADF for a closed fd) leaves no trace in the mapping
  or in the core, and the next register works -- the same fd number too.

ENOSPC and ENOMEM are not provoked.  epoll's per-user limit
(/proc/sys/fs/epoll/max_user_watches, 5,491,511 on the development
machine) needs that many (epoll instance, fd) pairs: ~290 instances of
19,000 fds, millions of epoll_ctl calls and hundreds of MiB of kernel
memory.  Lowering the sysctl (root only) would change it for every process
of the machine, tests running in parallel included.  An allocation failure
would need fault injection.  The failure paths they would take are the
EPERM/EBADF ones tested here: register() stores nothing when the kernel
call fails, whatever its errno.
"""

import errno
import os
try:
    import resource             # POSIX only; the module is Linux-only anyway
except ImportError:
    resource = None
import selectors
import socket
import sys

import pytest

import fastselectors
from fastselectors import EVENT_READ, EVENT_WRITE

try:
    import tracemalloc
except ImportError:     # PyPy
    tracemalloc = None

FD_SETSIZE = 1024
MANY = 19000            # registered fds
HEADROOM = 100          # fds the process already has open, and spare

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="counts open fds in /proc/self/fd (Linux)")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def open_fds():
    """The set of fds open in this process."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:     # listdir's own directory fd, closed since
            continue
        fds.add(fd)
    return fds


def under_valgrind():
    """valgrind preloads its vgpreload_*.so into the program it runs."""
    try:
        with open("/proc/self/maps") as f:
            return "vgpreload" in f.read()
    except OSError:
        return False


def _hard_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard


@pytest.fixture
def raised_nofile():
    """Raise the soft RLIMIT_NOFILE to the hard limit (capped at 65,536 if
    unlimited); restored after the test.  Yields the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        yield soft
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:     # e.g. under valgrind
        pytest.skip("cannot raise RLIMIT_NOFILE to {}: {}".format(
            target, exc))
    try:
        yield target
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Pipes:
    """Many pipes as raw fds; everything closed by close()."""

    def __init__(self):
        self.pairs = []     # (read end, write end)

    def make(self, n):
        for _ in range(n):
            self.pairs.append(os.pipe())
        return self.pairs[-n:]

    def close(self):
        while self.pairs:
            r, w = self.pairs.pop()
            os.close(r)
            os.close(w)


@pytest.fixture
def pipes():
    made = Pipes()
    yield made
    made.close()


def outcome(fn, *args):
    """("ok", value) or ("raise", type, errno-or-str(exc))."""
    try:
        return ("ok", fn(*args))
    except OSError as exc:
        return ("raise", type(exc), exc.errno)
    except Exception as exc:
        return ("raise", type(exc), str(exc))


class Recorder:
    """Records (label, outcome) steps, fds turned into roles."""

    def __init__(self, roles):
        self.roles = roles      # fd -> role
        self.steps = []

    def norm(self, value):
        """Keys -> ("key", ("fd", role), events, data); lists sorted (the
        order of select() is unspecified); anything else as it is (an int
        is never taken for an fd: only a key's fd is)."""
        if isinstance(value, selectors.SelectorKey):
            return ("key", ("fd", self.roles.get(value.fd, value.fd)),
                    value.events, value.data)
        if isinstance(value, list):
            return sorted((self.norm(v) for v in value), key=repr)
        if isinstance(value, tuple):
            return tuple(self.norm(v) for v in value)
        return value

    def __call__(self, label, fn, *args):
        result = outcome(fn, *args)
        if result[0] == "ok":
            result = ("ok", self.norm(result[1]))
        self.steps.append((label, result))
        return result


def stdlib_twin(cls):
    oracle = getattr(selectors, cls.__name__, None)
    if oracle is None:
        pytest.skip("the stdlib has no {} here".format(cls.__name__))
    return oracle


def _read_all(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


# ---------------------------------------------------------------------------
# 19,000 registered fds
# ---------------------------------------------------------------------------

@pytest.fixture
def many_fds(raised_nofile, pipes):
    """MANY fds (MANY // 2 pipes), all read ends non-blocking."""
    if raised_nofile != resource.RLIM_INFINITY and \
            raised_nofile < MANY + HEADROOM:
        pytest.skip("hard RLIMIT_NOFILE is {} < {}: cannot open {} fds"
                    .format(_hard_nofile(), MANY + HEADROOM, MANY))
    made = pipes.make(MANY // 2)
    for r, _ in made:
        os.set_blocking(r, False)
    return made


def test_19000_registered_fds(selector_cls, many_fds):
    if selector_cls.__name__ == "SelectSelector":
        select_selector_as_stdlib(many_fds)
        return
    on_ready_got = []

    def on_ready(key, events):
        on_ready_got.append((key.fd, events))

    fds = [fd for pair in many_fds for fd in pair]
    assert len(fds) == MANY
    sel = selector_cls()
    try:
        for fd in fds:
            sel.register(fd, EVENT_READ, on_ready)
        assert len(sel.get_map()) == MANY
        assert sel.select(0) == []

        # A few ready, spread over the whole range (first, middle, last).
        n = len(many_fds)
        chosen = [many_fds[i] for i in (0, 1, n // 3, n // 2, n - 2, n - 1)]
        for _, w in chosen:
            os.write(w, b"x")
        expected = sorted((r, EVENT_READ) for r, _ in chosen)
        got = sorted((key.fd, events) for key, events in sel.select(0))
        assert got == expected
        assert all(key.data is on_ready for key, _ in sel.select(0))
        assert sel.dispatch(0) == len(chosen)
        assert sorted(on_ready_got) == expected
        for r, _ in chosen:
            _read_all(r)
        assert sel.select(0) == []

        # Every read end ready at once: one select() returns them all.
        for _, w in many_fds:
            os.write(w, b"x")
        got = sel.select(0)
        assert sorted(key.fd for key, _ in got) == \
            sorted(r for r, _ in many_fds)
        assert set(events for _, events in got) == {EVENT_READ}
        del on_ready_got[:]
        assert sel.dispatch(0) == len(many_fds)
        assert len(on_ready_got) == len(many_fds)
        for r, _ in many_fds:
            _read_all(r)

        # A high fd's key, then unregister everything.
        high = max(fds)
        assert sel.get_key(high).fd == high
        for fd in fds:
            sel.unregister(fd)
        assert len(sel.get_map()) == 0
        os.write(chosen[-1][1], b"x")       # ready, but not registered
        assert sel.select(0) == []
        assert sel.dispatch(0) == 0
    finally:
        sel.close()


def select_selector_as_stdlib(many_fds):
    """SelectSelector accepts an fd >= FD_SETSIZE in register() and raises
    ValueError('filedescriptor out of range in select()') in select(), as
    the stdlib's does; with those unregistered, it works again."""
    ours_cls = fastselectors.SelectSelector
    fds = [fd for pair in many_fds for fd in pair]
    low_pairs = [(r, w) for r, w in many_fds if w < FD_SETSIZE]
    assert len(low_pairs) >= 3
    ready = [low_pairs[0], low_pairs[len(low_pairs) // 2], low_pairs[-1],
             many_fds[-1]]          # the last one is above FD_SETSIZE
    for _, w in ready:
        os.write(w, b"x")
    roles = {fd: "fd{}".format(i) for i, fd in enumerate(fds)}
    transcripts = []
    for cls in (ours_cls, selectors.SelectSelector):
        rec = Recorder(roles)
        sel = cls()
        try:
            for fd in fds:
                sel.register(fd, EVENT_READ, "data")
            rec("len", len, sel.get_map())
            rec("select(0) with fds >= FD_SETSIZE", sel.select, 0)
            if cls is ours_cls:
                step = rec("dispatch(0) with fds >= FD_SETSIZE",
                           sel.dispatch, 0)
                assert step[:2] == ("raise", ValueError)
            for fd in fds:
                if fd >= FD_SETSIZE:
                    sel.unregister(fd)
            rec("len below", len, sel.get_map())
            rec("select(0) below FD_SETSIZE", sel.select, 0)
            for fd in fds:
                if fd < FD_SETSIZE:
                    sel.unregister(fd)
            rec("select(0) none", sel.select, 0)
        finally:
            sel.close()
        transcripts.append(rec.steps)
    ours, stdlib = transcripts
    steps = dict(ours)
    # CPython: "filedescriptor out of range in select()"; PyPy spells it
    # "file descriptor": the stdlib's own message is compared below.
    failure = steps["select(0) with fds >= FD_SETSIZE"]
    assert failure[:2] == ("raise", ValueError)
    assert "out of range in select()" in failure[2]
    expected = sorted(
        ((("key", ("fd", roles[r]), EVENT_READ, "data"), EVENT_READ)
         for r, _ in ready[:3]), key=repr)
    assert steps["select(0) below FD_SETSIZE"] == ("ok", expected)
    # The stdlib has no dispatch(): compare the rest.
    assert [s for s in ours if not s[0].startswith("dispatch")] == stdlib


# ---------------------------------------------------------------------------
# sparse high fds
# ---------------------------------------------------------------------------

def _high_numbers(limit):
    """Three fd numbers near *limit* (at most 20,000): e.g. 18,000, 19,500
    and 19,999 under a hard limit of 20,000."""
    top = 20000 if limit == resource.RLIM_INFINITY else min(limit, 20000)
    return [top * 9 // 10, top - 500, top - 1]


@pytest.fixture
def high_fds(raised_nofile):
    """A pipe's read end dup2'd to the first high number, its write end to
    the second and third; closed after the test.  Yields (read fds, write
    fds, the pipe's low (r, w))."""
    if raised_nofile != resource.RLIM_INFINITY and raised_nofile < 2048:
        pytest.skip("hard RLIMIT_NOFILE is {} < 2048: no fd far above "
                    "FD_SETSIZE".format(raised_nofile))
    numbers = _high_numbers(raised_nofile)
    in_use = open_fds()
    if any(n in in_use for n in numbers):
        pytest.skip("fds {} are not all free".format(numbers))
    r, w = os.pipe()
    made = []
    try:
        os.set_blocking(r, False)
        made.append(os.dup2(r, numbers[0]))
        made.append(os.dup2(w, numbers[1]))
        made.append(os.dup2(w, numbers[2]))
        yield [numbers[0]], numbers[1:], (r, w)
    finally:
        for fd in made + [r, w]:
            os.close(fd)


def test_sparse_high_fds(selector_cls, high_fds):
    (hr,), (hw1, hw2), (r, w) = high_fds
    name = selector_cls.__name__
    transcripts = []
    for cls in (selector_cls, stdlib_twin(selector_cls)):
        rec = Recorder({hr: "hr", hw1: "hw1", hw2: "hw2", r: "r", w: "w"})
        sel = cls()
        try:
            rec("register hr", sel.register, hr, EVENT_READ, "hr")
            rec("register hw1", sel.register, hw1, EVENT_WRITE, "hw1")
            rec("register hw2", sel.register, hw2, EVENT_WRITE, "hw2")
            rec("register r", sel.register, r, EVENT_READ, "r")
            rec("select: writers", sel.select, 0)
            os.write(w, b"x")
            rec("select: all", sel.select, 0)
            rec("unregister hw2", sel.unregister, hw2)
            rec("select: hw2 gone", sel.select, 0)
            # Really gone from the kernel: the number registers again.
            rec("register hw2 again", sel.register, hw2, EVENT_WRITE, "2")
            rec("get_key hw2", sel.get_key, hw2)
            for fd in (hr, hw1, hw2, r):
                rec("unregister", sel.unregister, fd)
            rec("len", len, sel.get_map())
            rec("select: none", sel.select, 0)
        finally:
            sel.close()
            _read_all(r)
        transcripts.append(rec.steps)
    ours, stdlib = transcripts
    assert ours == stdlib
    steps = dict(ours)
    if name == "SelectSelector":
        assert steps["select: all"][:2] == ("raise", ValueError)
    else:
        assert steps["select: all"] == ("ok", [
            (("key", ("fd", "hr"), EVENT_READ, "hr"), EVENT_READ),
            (("key", ("fd", "hw1"), EVENT_WRITE, "hw1"), EVENT_WRITE),
            (("key", ("fd", "hw2"), EVENT_WRITE, "hw2"), EVENT_WRITE),
            (("key", ("fd", "r"), EVENT_READ, "r"), EVENT_READ)])
        assert steps["register hw2 again"][0] == "ok"


def _traced_memory():
    """Bytes traced, but those allocated by the fakes of a simulated
    platform (tests/simulate: e.g. select.poll's result tuples, which
    Python's free lists keep)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, "*" + os.sep + "simulate" + os.sep + "*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


@pytest.mark.skipif(tracemalloc is None, reason="no tracemalloc on PyPy")
def test_sparse_high_fds_memory(selector_cls, high_fds):
    """Registering the highest fd costs O(highest fd) memory with a small
    constant -- the native epoll core's fd-indexed table grows by doubling
    (32-byte entries today): at most 128 bytes per fd number allowed --,
    and register/unregister cycles then allocate nothing more."""
    (hr,), (hw1, hw2), _ = high_fds
    highest = max(hr, hw1, hw2)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    sel = selector_cls()
    try:
        before = _traced_memory()
        sel.register(highest, EVENT_WRITE)
        first = _traced_memory() - before
        assert first <= 128 * (highest + 1), \
            "{} bytes for one registration of fd {}".format(first, highest)
        sel.unregister(highest)
        middle = None
        for cycle in range(1001):
            if cycle == 1:      # after the first select()'s one-off
                middle = _traced_memory()   # allocations
            for fd in (hr, hw1, hw2):
                sel.register(fd, EVENT_READ)
            if selector_cls.__name__ != "SelectSelector":   # ValueError
                sel.select(0)
            for fd in (hr, hw1, hw2):
                sel.unregister(fd)
        grown = _traced_memory() - middle
        assert grown <= 4096, "{} bytes more after 1,000 cycles".format(
            grown)
    finally:
        sel.close()
        if started:
            tracemalloc.stop()


def _nr_open():
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def test_refused_impossible_fd_number_costs_no_memory(selector_cls):
    """register() of an fd number that no process can have open (>=
    /proc/sys/fs/nr_open, the ceiling of every RLIMIT_NOFILE) fails as
    the stdlib's (epoll: OSError EBADF; poll and select accept it) and may
    not cost memory in proportion to the number."""
    fd = _nr_open()
    if fd is None or fd > 1 << 21:
        pytest.skip("nr_open is {}: too large to try against an fd-indexed "
                    "table safely".format(fd))
    # (A bug once: the native epoll core grew its fd-indexed table before
    # epoll_ctl and kept it after the refusal -- 64 MiB here.)
    oracle = stdlib_twin(selector_cls)
    # (PyPy: no tracemalloc, and no native tier, whose table this is about)
    started = tracemalloc is not None and not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    sel = selector_cls()
    try:
        before = tracemalloc.get_traced_memory()[0] if tracemalloc else 0
        ours = outcome(sel.register, fd, EVENT_READ)
        grown = tracemalloc.get_traced_memory()[0] - before \
            if tracemalloc else 0
        if ours[0] == "ok":
            sel.unregister(fd)
    finally:
        sel.close()
        if started:
            tracemalloc.stop()
    std = oracle()
    try:
        theirs = outcome(std.register, fd, EVENT_READ)
    finally:
        std.close()
    assert ours[0] == theirs[0]
    if ours[0] == "raise":
        assert ours == theirs == ("raise", OSError, errno.EBADF)
    assert grown <= 64 * 1024, "{} bytes for a refused fd {}".format(
        grown, fd)


# ---------------------------------------------------------------------------
# EMFILE
# ---------------------------------------------------------------------------

class no_fd_left:
    """Context manager: the soft RLIMIT_NOFILE lowered to the lowest free
    fd number, so that creating any fd fails with EMFILE; restored on
    exit.  Nothing inside may need a new fd (pytest's capture fds are
    already open)."""

    def __enter__(self):
        self.limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        fd = os.open(os.devnull, os.O_RDONLY)
        os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd, self.limits[1]))
        return self

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_NOFILE, self.limits)


def test_no_fd_left_makes_emfile():
    """The test's premise: under no_fd_left, a new fd is EMFILE."""
    with no_fd_left():
        result = outcome(os.pipe)
    if result[0] == "ok":
        for fd in result[1]:
            os.close(fd)
    assert result == ("raise", OSError, errno.EMFILE)


@pytest.mark.parametrize("name", ["EpollSelector", "PollSelector",
                                  "SelectSelector", "DefaultSelector"])
def test_emfile_at_construction_as_stdlib(name):
    """With no fd left, the constructor fails as the stdlib's does (epoll:
    OSError EMFILE; poll and select need no fd and succeed), leaking
    nothing; a selector made before keeps working (no call but the
    constructor needs an fd)."""
    ours_cls = getattr(fastselectors, name, None)
    if ours_cls is None:
        pytest.skip("no {} on tier {}".format(name, fastselectors.BACKEND))
    oracle = getattr(selectors, ours_cls.__name__, None)
    existing = ours_cls()
    a, peer = _socketpair()
    try:
        # Closed inside the block below: not expected open after it.
        own_fd = existing.fileno() if hasattr(existing, "fileno") else None
        before = open_fds() - {own_fd}
        with no_fd_left():
            ours = outcome(ours_cls)
            stdlib = outcome(oracle) if oracle is not None else None
            peer.send(b"x")
            steps = [outcome(existing.register, a, EVENT_READ, "a"),
                     outcome(existing.select, 0),
                     outcome(existing.modify, a, EVENT_WRITE, "w"),
                     outcome(existing.select, 0),
                     outcome(existing.unregister, a),
                     outcome(existing.close)]
        for result in (ours, stdlib):
            if result is not None and result[0] == "ok":
                result[1].close()
        after = open_fds()
    finally:
        existing.close()
        a.close()
        peer.close()
    assert after == before, "fds leaked"
    assert [r[0] for r in steps] == ["ok"] * 6, steps
    assert [(k.data, ev) for k, ev in steps[1][1]] == [("a", EVENT_READ)]
    assert [(k.data, ev) for k, ev in steps[3][1]] == [("w", EVENT_WRITE)]
    if ours_cls.__name__ == "EpollSelector":
        assert ours == ("raise", OSError, errno.EMFILE)
    if stdlib is not None:
        assert ours[0] == stdlib[0]
        if ours[0] == "raise":
            assert ours == stdlib


def _socketpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


@pytest.mark.skipif(not hasattr(fastselectors, "EpollSelector"),
                    reason="no epoll on this platform")
def test_orphan_wakes_the_wait_with_no_fd_left():
    """An orphan -- a registration the kernel keeps for an fd that was
    closed while a dup holds its file -- makes the wait return while no fd
    is left: the native core's rebuild of its instance (a new epoll fd)
    (and the Python cores' too) then fails with EMFILE.  select() and
    dispatch() must still report nothing of the orphan, raise nothing and
    keep fileno(), and a live fd that is ready too must come out, as with
    the stdlib (which never rebuilds): an event loop at its fd limit must
    keep running to close connections.  A wait sized for the registered fds
    (the stdlib's rule) can be filled by the orphan's event alone: the live
    one may need a second wait (the kernel rotates its ready list), as with
    the stdlib.  test_stale_fds.py has the rebuild itself."""
    sel = fastselectors.EpollSelector()
    a, peer = _socketpair()
    live, live_peer = _socketpair()
    dup = None
    try:
        sel.register(live, EVENT_READ, "live")
        sel.register(a, EVENT_READ, "orphan")
        dup = os.dup(a.fileno())
        a.close()
        sel.unregister(a)       # EPOLL_CTL_DEL fails: the orphan stays
        peer.send(b"x")         # and is readable
        fileno = sel.fileno()
        with no_fd_left():
            results = [outcome(sel.select, 0) for _ in range(3)]
            results.append(outcome(sel.dispatch, 0))
            number = outcome(sel.fileno)
            live_peer.send(b"y")
            live_results = [outcome(sel.select, 0) for _ in range(2)]
        assert results == [("ok", [])] * 3 + [("ok", 0)]
        assert number == ("ok", fileno)
        reported = [[(k.data, ev) for k, ev in result[1]]
                    for result in live_results]
        assert [("live", EVENT_READ)] in reported, live_results
        assert all(r in ([], [("live", EVENT_READ)]) for r in reported)
        # With fds back: the live fd is reported within two waits, the
        # orphan never.
        reported = [[(k.data, ev) for k, ev in sel.select(0)]
                    for _ in range(2)]
        assert [("live", EVENT_READ)] in reported
        assert all(r in ([], [("live", EVENT_READ)]) for r in reported)
        assert sel.fileno() == fileno
        # ... and the rebuild the EMFILE prevented is made then: the
        # orphan is no longer remembered as one to rebuild for.
        assert sel.stats()["rebuilds"] >= 1
    finally:
        sel.close()
        for obj in (a, peer, live, live_peer):
            obj.close()
        if dup is not None:
            os.close(dup)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork()")
def test_fork_with_no_fd_left(selector_cls):
    """A child forked while no fd is left cannot give its epoll (or
    /dev/poll) selector a new instance: the selector is closed there (never
    left sharing the parent's instance).  poll and select selectors need no
    fd and keep working.  The parent's selector is untouched either way."""
    sel = selector_cls()
    a, peer = _socketpair()
    r, w = os.pipe()
    try:
        sel.register(a, EVENT_READ, "a")
        peer.send(b"x")
        with no_fd_left():
            pid = os.fork()
            if pid == 0:                    # the child
                code = 1
                try:
                    result = outcome(sel.select, 0)
                    if result[0] == "ok":
                        result = ("ok", [k.data for k, _ in result[1]])
                    os.write(w, repr(result).encode())
                    code = 0
                finally:
                    os._exit(code)
        os.close(w)
        w = None
        with os.fdopen(r, "rb") as f:
            r = None
            child = f.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if selector_cls.__name__ in ("EpollSelector", "DevpollSelector"):
            # A kernel object the child must not share: no fd for its own.
            assert child == repr(("raise", ValueError,
                                  "I/O operation on closed selector"))
        else:
            assert child == repr(("ok", ["a"]))
        assert [k.data for k, _ in sel.select(0)] == ["a"]
    finally:
        sel.close()
        a.close()
        peer.close()
        for fd in (r, w):
            if fd is not None:
                os.close(fd)


def test_more_fds_than_rlimit_nofile_as_stdlib(selector_cls, raised_nofile,
                                               pipes):
    """poll(2) refuses more fds than the soft RLIMIT_NOFILE (EINVAL), epoll
    does not mind, select() takes no fd >= FD_SETSIZE: with the limit
    lowered under the number registered, and after unregistering enough
    to be under it, ours does what the stdlib's class does."""
    if raised_nofile != resource.RLIM_INFINITY and raised_nofile < 1400:
        pytest.skip("hard RLIMIT_NOFILE is {} < 1400".format(raised_nofile))
    if under_valgrind():
        pytest.skip("valgrind fakes RLIMIT_NOFILE for its guest: the "
                    "kernel's poll() never sees the lowered limit")
    made = pipes.make(600)
    fds = [fd for pair in made for fd in pair]
    for _, w in made[-3:]:
        os.write(w, b"x")
    roles = {fd: "fd{}".format(i) for i, fd in enumerate(fds)}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    transcripts = []
    for cls in (selector_cls, stdlib_twin(selector_cls)):
        rec = Recorder(roles)
        sel = cls()
        try:
            for fd in fds:
                sel.register(fd, EVENT_READ, "d")
            resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
            try:
                rec("select, 1200 fds, limit 1000", sel.select, 0)
                for fd in fds[:400]:
                    sel.unregister(fd)
                rec("select, 800 fds, limit 1000", sel.select, 0)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        finally:
            sel.close()
        transcripts.append(rec.steps)
    ours, stdlib = transcripts
    assert ours == stdlib
    if selector_cls.__name__ == "PollSelector":
        assert ours[0][1] == ("raise", OSError, errno.EINVAL)
        assert ours[1][1][0] == "ok" and len(ours[1][1][1]) == 3


# ---------------------------------------------------------------------------
# nothing half-registered
# ---------------------------------------------------------------------------

def _no_trace(sel, fileobj, fd):
    """Every way of finding a registration says there is none."""
    mapping = sel.get_map()
    assert fileobj not in mapping
    assert fd not in mapping
    assert fd not in list(mapping)
    with pytest.raises(KeyError):
        sel.get_key(fileobj)
    with pytest.raises(KeyError):
        sel.unregister(fileobj)
    with pytest.raises(KeyError):
        sel.modify(fileobj, EVENT_READ)


def test_refused_regular_file_leaves_no_trace(selector_cls, tmp_path):
    """epoll refuses a regular file (EPERM); poll and select accept it, as
    the stdlib's.  After a refusal, nothing of it is left and the next
    register -- of a good fd -- works."""
    path = tmp_path / "regular"
    path.write_bytes(b"data")
    r, w = os.pipe()
    transcripts = []
    try:
        with open(path, "rb") as f:
            for cls in (selector_cls, stdlib_twin(selector_cls)):
                rec = Recorder({f.fileno(): "file", r: "r", w: "w"})
                sel = cls()
                try:
                    rec("register file", sel.register, f, EVENT_READ, "f")
                    rec("len", len, sel.get_map())
                    rec("in map", sel.get_map().__contains__, f)
                    rec("register w", sel.register, w, EVENT_WRITE, "w")
                    rec("select", sel.select, 0)
                    rec("unregister w", sel.unregister, w)
                    rec("unregister file", sel.unregister, f)
                    rec("len after", len, sel.get_map())
                    if cls is selector_cls and \
                            rec.steps[0][1][0] == "raise":
                        _no_trace(sel, f, f.fileno())
                finally:
                    sel.close()
                transcripts.append(rec.steps)
    finally:
        os.close(r)
        os.close(w)
    ours, stdlib = transcripts
    assert ours == stdlib
    if selector_cls.__name__ == "EpollSelector":
        assert ours[0] == ("register file",
                           ("raise", PermissionError, errno.EPERM))


def test_refused_closed_fd_leaves_no_trace(selector_cls):
    """register() of a closed fd: epoll refuses it (EBADF) and keeps
    nothing -- the same number, open again, then registers fine, including
    a number far above everything registered (the native core grows its
    table before asking the kernel)."""
    far = 5000
    try:
        os.fstat(far)
        pytest.skip("fd {} is open".format(far))
    except OSError:
        pass
    sel = selector_cls()
    r, w = os.pipe()
    # After the selector: its epoll fd must not take this number (the
    # kernel answers EINVAL for the epoll fd itself).
    closed = os.dup(w)
    os.close(closed)
    try:
        sel.register(r, EVENT_READ, "r")
        # epoll and kqueue refuse a closed fd at once.
        epoll = selector_cls.__name__ in ("EpollSelector", "KqueueSelector")
        for fd in (closed, far):
            if epoll:
                with pytest.raises(OSError) as info:
                    sel.register(fd, EVENT_WRITE, "refused")
                assert info.value.errno == errno.EBADF
                _no_trace(sel, fd, fd)
            else:       # poll and select accept it, as the stdlib's
                sel.register(fd, EVENT_WRITE, "accepted")
                sel.unregister(fd)
            assert list(sel.get_map()) == [r]
        # The number is open again (os.dup takes the lowest free one).
        again = os.dup(w)
        try:
            assert again == closed
            sel.register(again, EVENT_WRITE, "again")
            assert sorted((k.data, ev) for k, ev in sel.select(0)) == [
                ("again", EVENT_WRITE)]
            os.write(w, b"x")
            assert sorted((k.data, ev) for k, ev in sel.select(0)) == [
                ("again", EVENT_WRITE), ("r", EVENT_READ)]
            sel.unregister(again)
        finally:
            os.close(again)
        assert list(sel.get_map()) == [r]
    finally:
        sel.close()
        os.close(r)
        os.close(w)


def test_failed_modify_drops_the_registration_as_stdlib(selector_cls):
    """modify() of an fd closed since it was registered: epoll's kernel
    call fails (EBADF) and, as in the stdlib, the registration is gone;
    the number, reused, registers again."""
    transcripts = []
    for cls in (selector_cls, stdlib_twin(selector_cls)):
        r, w = os.pipe()
        rec = Recorder({r: "r", w: "w"})
        sel = cls()
        try:
            sel.register(r, EVENT_READ, "r")
            os.close(r)
            rec("modify closed", sel.modify, r, EVENT_READ | EVENT_WRITE,
                "m")
            rec("len", len, sel.get_map())
            r2, w2 = os.pipe()      # takes r's number again
            try:
                assert r2 == r
                if rec.steps[-1][1] == ("ok", 1):
                    sel.unregister(r)
                rec("register reused", sel.register, r2, EVENT_READ, "r2")
                os.write(w2, b"x")
                rec("select", sel.select, 0)
                rec("unregister", sel.unregister, r2)
            finally:
                os.close(r2)
                os.close(w2)
        finally:
            sel.close()
            os.close(w)
        transcripts.append(rec.steps)
    ours, stdlib = transcripts
    assert ours == stdlib
    if selector_cls.__name__ == "EpollSelector":
        assert ours[0][1] == ("raise", OSError, errno.EBADF)
        assert ours[1][1] == ("ok", 0)


def test_duplicate_and_bad_fileobj_keep_the_first_registration(
        selector_cls):
    """KeyError for a second register of the same fd, ValueError for a
    file object whose fileno() fails: the registration there is unchanged
    and nothing new appears."""
    r, w = os.pipe()

    class BadFileno:
        def fileno(self):
            raise ValueError("no fd")

    sel = selector_cls()
    try:
        first = sel.register(r, EVENT_READ, "first")
        with pytest.raises(KeyError):
            sel.register(r, EVENT_READ | EVENT_WRITE, "second")
        with pytest.raises(ValueError):
            sel.register(BadFileno(), EVENT_READ)
        assert sel.get_key(r) is first
        assert len(sel.get_map()) == 1
        os.write(w, b"x")
        assert sel.select(0) == [(first, EVENT_READ)]
    finally:
        sel.close()
        os.close(r)
        os.close(w)
