"""A fake of ``select.kqueue`` and ``select.kevent`` for Linux, where there
is no kqueue: tests only (``tests/simulate``: the simulated "kqueue"
platform installs it into ``select``).  It lets the kqueue core, and the
stdlib's ``KqueueSelector`` as its oracle, run the suite here.

What it does as a kqueue does (FreeBSD's and xnu's kqueue_register and
kqueue_scan; CPython's ``select.kqueue`` for the Python side):

- EVFILT_READ and EVFILT_WRITE knotes on fds, one per (fd, filter);
  EV_ADD (an existing knote keeps its EV_CLEAR/EV_ONESHOT/EV_DISPATCH:
  only udata changes), EV_DELETE (ENOENT if absent), EV_ENABLE,
  EV_DISABLE; EV_ONESHOT deletes and EV_DISPATCH disables a knote as it
  is delivered; EBADF for a closed fd, EINVAL for another filter;
- a changelist applied in order, stopping at the first refusal with an
  OSError when the eventlist has no room, else reported as an EV_ERROR
  event (data = errno) and going on;
- delivered knotes are re-queued at the end (a batch smaller than the
  ready knotes rotates); level-triggered knotes are re-checked when
  scanned; a knote goes away when its fd is closed;
- ``control()``'s argument checks and exceptions, its EINTR retry
  (through ``select.poll``), ``closed``, ``fileno()``, ``close()``;
- fork: the child has no kqueue (its fd number is closed); as in CPython
  >= 3.12.1 the object is then marked closed, before that it keeps the
  dead number (``control()``: EBADF).

Its limits, and so what only a real kqueue (the macOS job) proves:

- readiness comes from poll(2): READ is POLLIN/POLLHUP/POLLERR, WRITE is
  POLLOUT/POLLHUP/POLLERR (a kernel's filter differs per file type, e.g.
  EV_EOF, NOTE_LOWAT, the amount in ``data``);
- EV_CLEAR is approximated: a knote is reported when it is added or
  enabled while ready, when it was seen not ready by an earlier scan, or
  (EVFILT_READ) when FIONREAD differs from its count at the last report.
  So a partial read is reported as an edge (a kernel would not), data
  consumed and refilled to the very same count between two scans is
  missed, and an EVFILT_WRITE knote that became unwritable and writable
  again between two scans is missed (a kernel reports freed space);
- a waiting ``control()`` polls its fds in slices of ``_SLICE`` seconds:
  a knote added or enabled by another thread, or new data on an EV_CLEAR
  knote already reported, is seen at the next slice, not at once;
- knotes follow the fd number's file (st_dev, st_ino): closing an fd while
  a dup of it keeps the file open leaves the knote in place, where a
  kernel drops it (knotes belong to the fd, not the file);
- ``kqueue.fromfd()`` and filters other than READ/WRITE do not exist.
"""

import errno
import fcntl
import math
import os
import select as _select
import sys
import termios
import threading
import time
import weakref

# The real poll, kept when a simulation deletes select.poll.
_poll = _select.poll
_POLLIN, _POLLOUT = _select.POLLIN, _select.POLLOUT
_POLLHUP, _POLLERR, _POLLNVAL = _select.POLLHUP, _select.POLLERR, \
    _select.POLLNVAL
_READY = {-1: _POLLIN | _POLLHUP | _POLLERR,
          -2: _POLLOUT | _POLLHUP | _POLLERR}
_SLICE = 0.02

# macOS's values (sys/event.h); CPython exports no KQ_EV_DISPATCH.
KQ_FILTER_READ = -1
KQ_FILTER_WRITE = -2
KQ_EV_ADD = 0x0001
KQ_EV_DELETE = 0x0002
KQ_EV_ENABLE = 0x0004
KQ_EV_DISABLE = 0x0008
KQ_EV_ONESHOT = 0x0010
KQ_EV_CLEAR = 0x0020
_EV_DISPATCH = 0x0080
KQ_EV_SYSFLAGS = 0xF000
KQ_EV_FLAG1 = 0x2000
KQ_EV_ERROR = 0x4000
KQ_EV_EOF = 0x8000
_KEPT = KQ_EV_ONESHOT | KQ_EV_CLEAR | _EV_DISPATCH

# CPython >= 3.12.1 marks its kqueue objects closed in a forked child.
_CLOSED_AFTER_FORK = sys.version_info >= (3, 12, 1)


class kevent:
    """``select.kevent(ident, filter=KQ_FILTER_READ, flags=KQ_EV_ADD,
    fflags=0, data=0, udata=0)``."""

    __slots__ = ("ident", "filter", "flags", "fflags", "data", "udata")

    def __init__(self, ident, filter=KQ_FILTER_READ, flags=KQ_EV_ADD,
                 fflags=0, data=0, udata=0):
        if isinstance(ident, int):
            if not 0 <= ident < 2 ** 64:
                raise OverflowError("Python int too large to convert to C "
                                    "unsigned long")
            ident = int(ident)
        else:
            fileno = getattr(ident, "fileno", None)
            if fileno is None:
                raise TypeError("argument must be an int, or have a "
                                "fileno() method.")
            ident = fileno()
            if ident < 0:
                raise ValueError("file descriptor cannot be a negative "
                                 "integer ({})".format(ident))
        self.ident, self.filter, self.flags = ident, filter, flags
        self.fflags, self.data, self.udata = fflags, data, udata

    def _tuple(self):
        return (self.ident, self.filter, self.flags, self.fflags,
                self.data, self.udata)

    def __eq__(self, other):
        if not isinstance(other, kevent):
            return NotImplemented
        return self._tuple() == other._tuple()

    __hash__ = None

    def __repr__(self):
        return ("<select.kevent ident={} filter={} flags=0x{:x} fflags=0x{:x} "
                "data=0x{:x} udata={!r}>".format(*self._tuple()))


class _Knote:
    __slots__ = ("flags", "udata", "enabled", "file", "pending", "armed",
                 "level")

    def __init__(self, flags, udata, enabled, file):
        self.flags = flags & _KEPT      # fixed from now on, as a kernel's
        self.udata = udata
        self.enabled = enabled
        self.file = file                # (st_dev, st_ino) of the fd
        self.pending = True             # just added: evaluate now
        self.armed = False              # EV_CLEAR: seen not ready since
        self.level = 0                  # EV_CLEAR READ: FIONREAD at report


def _file_of(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _fionread(fd):
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4),
                              sys.byteorder, signed=True)
    except OSError:
        return 0


def _seconds(timeout):
    """control()'s timeout rules: CPython replaces every conversion error
    with this TypeError."""
    if timeout is None:
        return None
    try:
        if isinstance(timeout, float):
            if math.isnan(timeout) or abs(timeout) >= 2 ** 63 / 1e9:
                raise ValueError
            seconds = timeout
        else:
            seconds = int(timeout.__index__())
            if abs(seconds) >= 2 ** 63 // 10 ** 9:
                raise OverflowError
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise TypeError("timeout argument must be a number or None, got "
                        + type(timeout).__name__) from None
    if seconds < 0:
        raise ValueError("timeout must be positive or None")
    return seconds


_live = weakref.WeakSet()   # open kqueues, for the fork handler


class kqueue:
    """``select.kqueue()``."""

    def __init__(self):
        # A real fd for fileno(), close-on-exec and non-inheritable as
        # CPython's kqueue fd.
        self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._dead = False          # forked away (before 3.12.1)
        self._knotes = {}           # (ident, filter) -> _Knote, queue order
        self._poller, self._polled = _poll(), set()     # see _scan
        # Re-entrant: a GC finalizer run by an allocation in control() may
        # call control() again (a kernel applies that change at once).
        self._lock = threading.RLock()
        _live.add(self)

    @property
    def closed(self):
        return self._fd < 0

    def fileno(self):
        self._check_open()
        return self._fd

    def close(self):
        fd, self._fd = self._fd, -1
        _live.discard(self)
        self._knotes = {}
        if fd >= 0:
            os.close(fd)

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self):
        if self._fd < 0:
            raise ValueError("I/O operation on closed kqueue object")

    def control(self, changelist, maxevents, timeout=None):
        self._check_open()
        if maxevents < 0:
            raise ValueError("Length of eventlist must be 0 or positive, "
                             "got {}".format(maxevents))
        seconds = _seconds(timeout)
        changes = []
        if changelist is not None:
            try:
                changes = list(changelist)
            except TypeError:
                raise TypeError("changelist is not iterable") from None
            for change in changes:
                if not isinstance(change, kevent):
                    raise TypeError("changelist must be an iterable of "
                                    "select.kevent objects")
        if self._dead:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        out = []
        with self._lock:
            for change in changes:
                err = self._apply(change)
                if err:
                    if len(out) >= maxevents:
                        raise OSError(err, os.strerror(err))
                    out.append(kevent(change.ident, change.filter,
                                      change.flags | KQ_EV_ERROR, 0, err,
                                      change.udata))
        if out or maxevents == 0:
            return out
        return self._wait(maxevents, seconds)

    def _apply(self, change):
        """One change; 0 or an errno."""
        if change.filter not in _READY:
            return errno.EINVAL
        try:
            file = _file_of(change.ident)
        except (OSError, OverflowError):
            return errno.EBADF
        key = (change.ident, change.filter)
        knote = self._knotes.get(key)
        if knote is not None and knote.file != file:
            del self._knotes[key]   # its fd was closed: the kernel's gone
            knote = None
        flags = change.flags
        if flags & KQ_EV_ADD:
            if knote is None:
                knote = self._knotes[key] = _Knote(
                    flags, change.udata, not flags & KQ_EV_DISABLE, file)
            else:
                knote.udata = change.udata
                knote.pending = True        # re-evaluated, as a kernel
        elif knote is None:
            return errno.ENOENT
        elif flags & KQ_EV_DELETE:
            del self._knotes[key]
            return 0
        if flags & KQ_EV_DISABLE:
            knote.enabled = False
        elif flags & KQ_EV_ENABLE and not knote.enabled:
            knote.enabled = True
            knote.pending = True
        return 0

    def _wait(self, maxevents, seconds):
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            with self._lock:
                ready, watch = self._scan(maxevents)
            if ready:
                return ready
            if self._fd < 0 or self._dead:
                # Closed by a signal handler or another thread: CPython's
                # retry then calls kevent(-1).
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            poll = _poll()
            for fd, mask in watch.items():
                poll.register(fd, mask)
            piece = _SLICE if left is None else min(left, _SLICE)
            poll.poll(math.ceil(piece * 1e3))   # EINTR retried (PEP 475)

    def _scan(self, maxevents):
        """The knotes to report (re-queued at the end), and the fds to
        poll while none is ready."""
        knotes = self._knotes
        # One poll set per kqueue, kept in step with the knotes' fds (a new
        # one per scan would show in the suite's memory measurements).
        idents = {ident for ident, _ in knotes}
        for fd in self._polled - idents:
            self._poller.unregister(fd)
        for fd in idents - self._polled:
            self._poller.register(fd, _POLLIN | _POLLOUT)
        self._polled = idents
        revents = dict(self._poller.poll(0))
        out, watch, delivered = [], {}, []
        for key, knote in list(knotes.items()):
            ident, filt = key
            rev = revents.get(ident, 0)
            if rev & _POLLNVAL:
                knotes.pop(key, None)   # fd closed: gone with it
                continue
            try:
                if _file_of(ident) != knote.file:
                    knotes.pop(key, None)
                    continue
            except OSError:
                knotes.pop(key, None)
                continue
            if not knote.enabled:
                continue
            ready = rev & _READY[filt]
            if not ready:
                knote.armed = True      # EV_CLEAR: the next ready is an edge
                knote.pending = False
                watch[ident] = watch.get(ident, 0) | _READY[filt]
                continue
            if knote.flags & KQ_EV_CLEAR:
                level = _fionread(ident) if filt == KQ_FILTER_READ else 0
                if not (knote.pending or knote.armed
                        or level != knote.level):
                    continue        # no new edge: wait for one (sliced)
            if len(out) >= maxevents:
                continue            # stays ready (or pending) for the next
            if knote.flags & KQ_EV_CLEAR:
                knote.level = level
                knote.armed = False
            knote.pending = False
            flags = knote.flags | (KQ_EV_EOF if rev & _POLLHUP else 0)
            data = _fionread(ident) if filt == KQ_FILTER_READ else 0
            out.append(kevent(ident, filt, flags, 0, data, knote.udata))
            delivered.append(key)
        for key in delivered:
            knote = knotes.pop(key, None)
            if knote is None or knote.flags & KQ_EV_ONESHOT:
                continue
            if knote.flags & _EV_DISPATCH:
                knote.enabled = False
            knotes[key] = knote     # re-queued at the end
        return out, watch


def _after_fork_in_child():
    # kqueues are not inherited: the kernel closed each one at fork.
    for kq in list(_live):
        fd = kq._fd
        kq._knotes = {}
        if _CLOSED_AFTER_FORK:
            kq._fd = -1
            _live.discard(kq)
        else:
            kq._dead = True
        try:
            os.close(fd)
        except OSError:
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)


def install(module):
    """Put this fake's names into *module* (the ``select`` module)."""
    for name, value in list(globals().items()):
        if name.startswith("KQ_") or name in ("kqueue", "kevent"):
            setattr(module, name, value)
