"""The leak measures of tests/test_leaks.py and tools/leak_soak.py: what
they measure, and why, is written at the top of tests/test_leaks.py."""

import errno
import gc
import mmap
import os
import platform
import socket
import sys
import tempfile
import time


import fastselectors
from fastselectors import EVENT_READ, EVENT_WRITE, ONESHOT

try:
    import tracemalloc
except ImportError:     # PyPy: no tracemalloc
    tracemalloc = None

CPYTHON = platform.python_implementation() == "CPython"
HAVE_REFCOUNTS = CPYTHON and hasattr(sys, "getrefcount")
#: PyPy's gc.get_objects() lists every object, CPython's only containers.
GC_SEES_EVERY_OBJECT = not CPYTHON
CLASS_NAMES = tuple(name for name in
                    ("EpollSelector", "PollSelector", "SelectSelector")
                    if hasattr(fastselectors, name))
KINDS = ("select", "dispatch", "modify", "fail", "orphan")
FD_SETSIZE = 1024


class Profile:
    """How many cycles to run, and how much growth is tolerated.

    ``scale`` shrinks the counts of the slow kinds (a failing-calls cycle
    makes a dozen calls and raises ten exceptions)."""

    def __init__(self, warmup, cycles, traced_warmup, traced_cycles,
                 gc_slack, traced_slack, rss_slack, scale=None,
                 long=False):
        self.long = long
        self.warmup = warmup
        self.cycles = cycles
        self.traced_warmup = traced_warmup
        self.traced_cycles = traced_cycles
        self.gc_slack = gc_slack
        self.traced_slack = traced_slack
        self.rss_slack = rss_slack
        self.scale = scale or {}

    def replace(self, **changes):
        fields = dict(vars(self))
        fields.update(changes)
        return Profile(**fields)

    def for_kind(self, kind):
        """This profile with the counts scaled for *kind*."""
        factor = self.scale.get(kind, 1)
        if factor == 1:
            return self
        return self.replace(
            warmup=max(1, int(self.warmup * factor)),
            cycles=max(2, int(self.cycles * factor)),
            traced_warmup=max(1, int(self.traced_warmup * factor)),
            # never fewer traced cycles than 1,000: the check's resolution
            traced_cycles=max(min(self.traced_cycles, 1000),
                              int(self.traced_cycles * factor)),
            scale={})


#: The normal suite's profile: a fraction of a second per kind and class.
#: The measured traced memory moves by 0 or 32 bytes here; one leaked
#: object() per cycle is 16 bytes plus its 8-byte slot in the list that
#: holds it, so 1,000 traced cycles make 16-24 KiB, four to six times the
#: 4 KiB slack.  The RSS check is coarse at this length: memory the process
#: freed earlier but still holds absorbs a few hundred KiB of leak before
#: the RSS moves (tens of MiB after a whole suite), so it catches only
#: leaks of whole pages per cycle (test_each_check_catches_... injects
#: one); the soak (tools/leak-soak) is where the RSS catches a small
#: object per cycle.
#: On PyPy (no refcounts, no tracemalloc, an RSS that the JIT and the GC
#: move by ~100 KiB per thousand cycles at first, and a gc.get_objects()
#: that lists every object in 0.1-0.3 s) the size of the GC heap after a
#: collection is the measure, taken with the JIT off (see _JitOff): it
#: sees the same leaks, with the same slack.
if CPYTHON:
    QUICK = Profile(warmup=500, cycles=4000, traced_warmup=200,
                    traced_cycles=1000, gc_slack=50, traced_slack=4 * 1024,
                    rss_slack=64 * 1024,
                    scale={"fail": 0.25, "orphan": 0.5})
else:
    QUICK = Profile(warmup=300, cycles=1000, traced_warmup=200,
                    traced_cycles=1000, gc_slack=50, traced_slack=4 * 1024,
                    rss_slack=64 * 1024,
                    scale={"fail": 0.25, "orphan": 0.5})

#: tools/leak-soak's profile (``cycles`` is its argument): the second half
#: of the run may grow by 256 KiB -- for a million cycles, a quarter of a
#: byte per cycle.  PyPy's RSS, read after a full collection, still moves
#: by up to half a MiB (GC arenas, late JIT code) with nothing leaking:
#: 2 MiB there, an eighth of what one leaked object() per cycle adds.  The
#: slow kinds run a fifth and a tenth of the cycles.
SOAK = Profile(warmup=20000, cycles=1000000, traced_warmup=1000,
               traced_cycles=20000, gc_slack=50, traced_slack=4 * 1024,
               rss_slack=256 * 1024 if CPYTHON else 2 * 1024 * 1024,
               scale={"modify": 0.2, "fail": 0.1, "orphan": 0.1},
               long=True)


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes():
    """The resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE_SIZE


def rss_unreliable(profile):
    """Why the RSS says nothing about leaks in a run of *profile* here, or
    None if it does."""
    if not CPYTHON and not profile.long:
        return ("a short run on {}: the JIT and the GC's heap grow the "
                "RSS for a while (the soak measures it)".format(
                    platform.python_implementation()))
    if not os.path.exists("/proc/self/statm"):
        return "no /proc/self/statm on this platform"
    preload = os.environ.get("LD_PRELOAD", "")
    if "libasan" in preload:
        return "ASan's quarantine keeps freed memory: the RSS grows"
    try:
        with open("/proc/self/maps") as f:
            if "vgpreload" in f.read():
                return "under valgrind, whose own memory is in the RSS"
    except OSError:
        pass
    return None


class Report:
    """What one measured run of cycles found."""

    def __init__(self, label, profile):
        self.label = label
        self.profile = profile
        self.refs = []          # (name, before, after)
        self.objects = None     # (before, after)
        self.traced = None      # (before, after)
        self.rss = None         # (start, middle, end)
        self.fds = None         # open fds (before, after)
        self.seconds = 0.0

    def failed_checks(self):
        """{check name: message} of every measure over its threshold."""
        p = self.profile
        failed = {}
        grown = ["{} {:+d}".format(name, after - before)
                 for name, before, after in self.refs if after != before]
        if grown:
            failed["refcount"] = "refcounts changed: " + ", ".join(grown)
        if self.objects is not None:
            before, after = self.objects
            if after - before > p.gc_slack:
                failed["gc"] = "gc-tracked objects {:+d} (slack {})".format(
                    after - before, p.gc_slack)
        if self.traced is not None:
            before, after = self.traced
            if after - before > p.traced_slack:
                failed["traced"] = ("{} {:+d} B over {} cycles "
                                    "(slack {} B)".format(
                                        HEAP_MEASURE, after - before,
                                        p.traced_cycles, p.traced_slack))
        if self.fds is not None and self.fds[1] != self.fds[0]:
            failed["fds"] = "open fds {:+d}".format(self.fds[1] - self.fds[0])
        if self.rss is not None:
            start, middle, end = self.rss
            if end - middle > p.rss_slack:
                failed["rss"] = ("RSS grew {:+d} KiB in the second half "
                                 "(slack {} KiB; first half {:+d} KiB)"
                                 .format((end - middle) // 1024,
                                         p.rss_slack // 1024,
                                         (middle - start) // 1024))
        return failed

    def summary(self):
        parts = ["{}: {} cycles in {:.1f} s".format(
            self.label, self.profile.cycles, self.seconds)]
        if self.rss is not None:
            start, middle, end = self.rss
            parts.append("RSS start/mid/end {:.1f}/{:.1f}/{:.1f} MiB "
                         "(halves {:+d}/{:+d} KiB)".format(
                             start / 2 ** 20, middle / 2 ** 20,
                             end / 2 ** 20, (middle - start) // 1024,
                             (end - middle) // 1024))
        if self.refs:
            parts.append("refcount deltas " + " ".join(
                "{}{:+d}".format(name, after - before)
                for name, before, after in self.refs))
        if self.objects is not None:
            parts.append("gc objects {:+d}".format(
                self.objects[1] - self.objects[0]))
        if self.fds is not None:
            parts.append("fds {:+d}".format(self.fds[1] - self.fds[0]))
        if self.traced is not None:
            parts.append("{} {:+d} B/{} cycles".format(
                HEAP_MEASURE, self.traced[1] - self.traced[0],
                self.profile.traced_cycles))
        return "; ".join(parts)


def count_fds():
    """How many fds this process has open, or None if it cannot tell."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _settled_rss():
    """The RSS; on PyPy after a full collection, so that each reading sees
    the GC heap in the same state (the nursery empty, dead objects gone)
    rather than wherever the last automatic collection left it."""
    if not CPYTHON:
        _collect()
    return rss_bytes()


def _collect():
    """A full collection.  PyPy frees an object with a finalizer (a
    socket's) only at the collection after the one that found it dead:
    collect until that is done too."""
    for _ in range(1 if CPYTHON else 3):
        gc.collect()


def _refcounts(watched):
    return [sys.getrefcount(obj) for obj in watched.values()]


def _pypy_heap_bytes():
    """PyPy: the bytes of its GC heap (after the caller's collection), or
    None if this PyPy does not say (the raw figure is private)."""
    try:
        value = gc.get_stats()._s.total_gc_memory
    except (AttributeError, TypeError):
        return None
    return value if isinstance(value, int) else None


#: How the heap is measured here: CPython's tracemalloc (every allocation
#: through the Python allocators, the C cores' PyMem_* included), or PyPy's
#: GC heap; None if neither.
if tracemalloc is not None:
    HEAP_MEASURE = "tracemalloc"
elif not CPYTHON and _pypy_heap_bytes() is not None:
    HEAP_MEASURE = "PyPy GC heap"
else:
    HEAP_MEASURE = None


def gc_objects_counted(profile):
    """gc.get_objects() lists every object on PyPy: 0.1-0.3 s per call.
    The heap measure sees the same leaks there, so short runs skip it."""
    return CPYTHON or profile.long or HEAP_MEASURE is None


class _JitOff:
    """PyPy: the JIT off while the GC heap is measured (and for all of a
    short run).  The traces and bridges it compiles live in the GC heap: a
    fail cycle's heap still grows by ~100 KiB per 500 cycles after 4,000,
    and any new loop that runs the cycle -- the heap run's own -- compiles
    more.  With the JIT off it is flat after a few hundred cycles, to the
    byte."""

    def __init__(self, wanted=True):
        self.jit = None
        if not CPYTHON and wanted:
            try:
                import pypyjit
            except ImportError:
                return
            self.jit = pypyjit

    def __enter__(self):
        if self.jit is not None:
            self.jit.set_param("off")

    def __exit__(self, *exc):
        if self.jit is not None:
            self.jit.set_param("default")


def measure(label, cycle, watched, profile):
    """Run ``cycle()`` as *profile* says and return a :class:`Report`.

    *watched*: {name: object} whose reference counts must not change.
    """
    with _JitOff(not profile.long):
        return _measure(label, cycle, watched, profile)


def _measure(label, cycle, watched, profile):
    report = Report(label, profile)
    check_rss = rss_unreliable(profile) is None
    count_objects = gc_objects_counted(profile)
    for _ in range(profile.warmup):
        cycle()
    half = profile.cycles // 2
    rss = [0, 0, 0]
    _collect()
    refs = _refcounts(watched) if HAVE_REFCOUNTS else None
    objects = len(gc.get_objects()) if count_objects else 0
    fds = count_fds()
    started = time.perf_counter()
    rss[0] = _settled_rss() if check_rss else 0
    for _ in range(half):
        cycle()
    rss[1] = _settled_rss() if check_rss else 0
    for _ in range(profile.cycles - half):
        cycle()
    rss[2] = _settled_rss() if check_rss else 0
    report.seconds = time.perf_counter() - started
    _collect()
    if count_objects:
        report.objects = (objects, len(gc.get_objects()))
    if fds is not None:
        report.fds = (fds, count_fds())
    if refs is not None:
        report.refs = list(zip(watched, refs, _refcounts(watched)))
    if check_rss:
        report.rss = tuple(rss)
    if HEAP_MEASURE is not None and profile.traced_cycles:
        report.traced = _traced_run(cycle, profile)
    return report


def _traced_run(cycle, profile):
    """(heap bytes before, after) a run of traced_cycles cycles."""
    started = tracemalloc is not None and not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        with _JitOff():
            return _heap_run(cycle, profile)
    finally:
        if started:
            tracemalloc.stop()


def _heap_run(cycle, profile):
    for _ in range(profile.traced_warmup):
        cycle()
    _collect()
    before = _heap_bytes()
    for _ in range(profile.traced_cycles):
        cycle()
    _collect()
    return before, _heap_bytes()


def _heap_bytes():
    if tracemalloc is not None:
        return tracemalloc.get_traced_memory()[0]
    return _pypy_heap_bytes()


# ---------------------------------------------------------------------------
# the cycles
# ---------------------------------------------------------------------------

class Callback:
    """The data of a dispatch registration: counts its calls."""

    __slots__ = ("calls",)

    def __init__(self):
        self.calls = 0

    def __call__(self, key, events):
        self.calls += 1


class Boom(Exception):
    pass


def _raise_boom(key, events):
    raise Boom


class NoFileno:
    """Not a file object: register() must refuse it."""


def _expect(exc_type, fn, *args, err=None):
    """fn(*args) must raise exc_type (with errno *err* if given)."""
    try:
        fn(*args)
    except exc_type as exc:
        if err is not None and exc.errno != err:
            raise AssertionError("{!r}: errno {} instead of {}".format(
                exc, exc.errno, err)) from None
        return
    raise AssertionError("{}{!r} did not raise {}".format(
        getattr(fn, "__name__", fn), args, exc_type.__name__))


def _closed_fd(fileobj):
    """The number of an fd just closed: the lowest free one, so inside the
    kernel's fd table (select(2) ignores -- and reports as ready -- the
    fds beyond it; one inside gives EBADF).  Nothing opens an fd during a
    cycle, so it stays closed."""
    fd = os.dup(fileobj.fileno())
    os.close(fd)
    if fd >= FD_SETSIZE:
        raise RuntimeError("no free fd below FD_SETSIZE")
    return fd


class Rig:
    """One selector of class *cls* and everything its cycles use."""

    def __init__(self, cls):
        self.name = cls.__name__
        self._closables = []
        try:
            self.sel = self._keep(cls())
            self.closed_sel = cls()
            self.closed_sel.close()
            self.a, self.peer = socket.socketpair()
            self._keep(self.a)
            self._keep(self.peer)
            self.peer.send(b"x")        # a stays readable (and writable)
            self.regular = self._keep(tempfile.TemporaryFile())
            self.closed_fd = _closed_fd(self.a)
            self.data = Callback()      # a plain object for select()
            self.other = Callback()
            self.callback = Callback()
            self.nofileno = NoFileno()
            self.oneshot = cls.supports(ONESHOT)
        except BaseException:
            self.close()
            raise
        #: What must not gain or lose a reference.
        self.watched = {"data": self.data, "other": self.other,
                        "callback": self.callback, "fileobj": self.a,
                        "selector": self.sel}

    def _keep(self, obj):
        self._closables.append(obj)
        return obj

    def close(self):
        for obj in reversed(self._closables):
            obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def cycle(self, kind):
        return getattr(self, "cycle_" + kind)

    def cycle_select(self):
        sel, a, data = self.sel, self.a, self.data
        sel.register(a, EVENT_READ, data)
        ready = sel.select(0)
        if len(ready) != 1 or ready[0][0].data is not data:
            raise AssertionError("select(0) -> {!r}".format(ready))
        sel.unregister(a)

    def cycle_dispatch(self):
        sel, a = self.sel, self.a
        sel.register(a, EVENT_READ, self.callback)
        n = sel.dispatch(0)
        if n != 1:
            raise AssertionError("dispatch(0) -> {!r}".format(n))
        sel.unregister(a)

    def cycle_modify(self):
        sel, a, data, other = self.sel, self.a, self.data, self.other
        sel.register(a, EVENT_READ, data)
        sel.modify(a, EVENT_READ | EVENT_WRITE, data)      # interest
        sel.modify(a, EVENT_READ | EVENT_WRITE, other)     # data only
        ready = sel.select(0)
        if len(ready) != 1 or ready[0][1] != EVENT_READ | EVENT_WRITE \
                or ready[0][0].data is not other:
            raise AssertionError("select(0) -> {!r}".format(ready))
        sel.modify(a, EVENT_READ, data)                    # both
        if self.oneshot:
            sel.modify(a, EVENT_READ | ONESHOT, data)
            first = len(sel.select(0))
            disarmed = len(sel.select(0))
            sel.modify(a, EVENT_READ | ONESHOT, other)     # re-arm
            rearmed = len(sel.select(0))
            if (first, disarmed, rearmed) != (1, 0, 1):
                raise AssertionError("ONESHOT: {}".format(
                    (first, disarmed, rearmed)))
        sel.unregister(a)

    def cycle_fail(self):
        sel, closed, a, data = self.sel, self.closed_sel, self.a, self.data
        bad_fd = self.closed_fd
        _expect(ValueError, sel.register, -1, EVENT_READ, data)
        _expect(ValueError, sel.register, self.nofileno, EVENT_READ, data)
        _expect(ValueError, sel.register, a, 0, data)
        _expect(KeyError, sel.unregister, a)
        _expect(KeyError, sel.modify, a, EVENT_READ, data)
        _expect(KeyError, sel.get_key, a)
        sel.register(a, EVENT_READ, data)
        _expect(KeyError, sel.register, a, EVENT_READ, self.other)
        sel.unregister(a)
        # A callback that raises: the exception leaves dispatch().
        sel.register(a, EVENT_READ, _raise_boom)
        _expect(Boom, sel.dispatch, 0)
        sel.unregister(a)
        _expect(ValueError, closed.select, 0)
        _expect(ValueError, closed.dispatch, 0)
        _expect(ValueError, closed.register, a, EVENT_READ, data)
        # A closed fd: epoll refuses it at once, select() at the wait; poll
        # reports it (POLLNVAL), as the stdlib.
        if self.name == "EpollSelector":
            _expect(OSError, sel.register, bad_fd, EVENT_READ, data,
                    err=errno.EBADF)
            _expect(PermissionError, sel.register, self.regular, EVENT_READ,
                    data)
        else:
            sel.register(bad_fd, EVENT_READ, data)
            if self.name == "SelectSelector":
                _expect(OSError, sel.select, 0, err=errno.EBADF)
            elif len(sel.select(0)) != 1:
                raise AssertionError("poll: no POLLNVAL for a closed fd")
            sel.unregister(bad_fd)
        if len(sel.get_map()):
            raise AssertionError("left registered: {!r}".format(
                list(sel.get_map())))


    def cycle_orphan(self):
        """A socket registered, dup'd, closed, unregistered: epoll keeps an
        orphan registration (the dup holds the file), which the native core
        removes by rebuilding its instance when the orphan reports.  New
        sockets and fds every cycle: a leaked fd shows in the fd count."""
        sel, data = self.sel, self.data
        a, b = socket.socketpair()
        try:
            sel.register(a, EVENT_READ, data)
            dup = os.dup(a.fileno())
            a.close()
            sel.unregister(a)
            b.send(b"x")
            ready = sel.select(0)
            os.close(dup)
        finally:
            a.close()
            b.close()
        if ready:
            raise AssertionError("an orphan reported: {!r}".format(ready))


def not_measured(profile):
    """What this process cannot measure in a run of *profile*, and why."""
    reasons = []
    if not HAVE_REFCOUNTS:
        reasons.append("refcounts: none on {}".format(
            platform.python_implementation()))
    if HEAP_MEASURE is None:
        reasons.append("heap: no tracemalloc on {}, no GC figures".format(
            platform.python_implementation()))
    if not gc_objects_counted(profile):
        reasons.append("gc objects: slow on {} in a short run (the {} "
                       "sees the same)".format(
                           platform.python_implementation(), HEAP_MEASURE))
    if rss_unreliable(profile):
        reasons.append("RSS: " + rss_unreliable(profile))
    return reasons


def _touched_page(size=4096):
    """A page of fresh memory straight from the kernel (an anonymous
    mmap), written to: resident whatever the allocators hold free."""
    page = mmap.mmap(-1, size)
    page.write(b"x" * size)
    return page


#: Leaks injected into a real cycle (register/select/unregister), and the
#: checks each must trip.  The smallest object there is (object(): 16
#: bytes) must trip the heap check; a reference the refcount check; a list
#: the gc one.  In the quick profile the RSS check only sees what reaches
#: the kernel faster than the memory the process already holds free can
#: absorb it (a whole suite leaves tens of MiB): a page per cycle.  The
#: soak's self-check shows it catching one object() per cycle.
INJECTED = {
    "reference": (lambda rig: rig.data, {"refcount"}),
    "container": (lambda rig: [], {"gc", "traced"}),
    "object": (lambda rig: object(),
               {"traced", "gc"} if GC_SEES_EVERY_OBJECT else {"traced"}),
    "page": (lambda rig: _touched_page(), {"rss"}),
}


def injected_run(leak, profile, checks=None):
    """A measured run of register/select/unregister cycles on the default
    selector that also leak *leak* (a key of INJECTED) once per cycle.
    Returns (report, the checks that must have failed -- *checks*, or
    INJECTED's, less those not taken here --, the ones not taken)."""
    make, default_checks = INJECTED[leak]
    checks = default_checks if checks is None else checks
    lacking = []
    if not HAVE_REFCOUNTS and "refcount" in checks:
        lacking.append("refcount")
    if HEAP_MEASURE is None and "traced" in checks:
        lacking.append("traced")
    if not gc_objects_counted(profile) and "gc" in checks:
        lacking.append("gc")
    if rss_unreliable(profile) and "rss" in checks:
        lacking.append("rss")
    held = []
    with Rig(fastselectors.DefaultSelector) as rig:
        real = rig.cycle_select

        def leaky():
            real()
            held.append(make(rig))

        report = measure("injected leak: one {} per cycle".format(leak),
                         leaky, rig.watched, profile)
    del held[:]
    return report, checks - set(lacking), lacking
