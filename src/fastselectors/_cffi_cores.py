"""cffi tier: epoll and poll cores over a thin out-of-line cffi binding.

This is the tier PyPy uses (cffi is PyPy's fast FFI; a C extension would
run through the slow cpyext layer), and CPython when forced with
``FASTSELECTORS_BACKEND=cffi``.  The C side (``csrc/ffi/build_ffi.py``)
binds only the syscalls and their constants; everything else is here, in
Python, written for PyPy's JIT: plain ``range()`` loops over cdata arrays
(which it compiles to raw loads; vectorised tricks such as
``itertools.compress`` over a memoryview are 25x slower there), buffers
reused across calls, rare paths (EINTR, errors) moved out of the loop.

The observable behaviour is the reference cores' (``_pure.EpollCore`` and
``_pure.PollCore``, i.e. the stdlib's ``select.epoll``/``select.poll``):
the same ``(key, events)`` results, the same exceptions for the same input.
In particular:

- timeout: None blocks, <= 0 polls, otherwise milliseconds rounded *up*
  (never return before the timeout); NaN -> ValueError, a non-number ->
  TypeError, more milliseconds than a C int holds -> OverflowError (as on
  CPython; PyPy's own ``select.epoll`` accepts e.g. 1e300 and returns at
  once, which we do not copy);
- an fd above INT_MAX -> OverflowError, as ``select.epoll().register``;
- a failed syscall -> ``OSError(errno, strerror)``, which Python turns into
  the matching subclass (``FileNotFoundError`` for ENOENT, ...);
- EINTR (PEP 475): a Python signal handler runs as soon as the call returns
  to the interpreter (between bytecodes); if it raises, the exception
  propagates out of ``select()``; otherwise the wait is retried with the
  *remaining* time.

cffi releases the GIL around every C call, so the waits let other threads
run, and the code below keeps each wait's buffer to itself for that reason
(see ``EpollCore`` and ``PollCore``).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from errno import EINTR, EINVAL
from selectors import EVENT_READ, EVENT_WRITE
from time import monotonic

from ._base import (EDGE, EVENT_PRIORITY, EVENT_RDHUP, EXCLUSIVE, ONESHOT,
                    READINESS, ReadinessMap, closed_error)
from ._cffi_epoll import ffi, lib
from ._orphans import OrphanGuard
from ._pydispatch import DispatchMixin

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from selectors import SelectorKey
    from typing import ClassVar

    from ._cffi_epoll import EpollEventArray, PollfdArray
    from ._types import Ready

_INT_MAX = 2 ** (8 * ffi.sizeof("int") - 1) - 1


def _timeout_ms(timeout: float | None) -> int:
    """Seconds -> poll()/epoll_wait() milliseconds, exactly as the stdlib
    selectors compute them (so NaN and non-numbers fail the same way);
    rounded up so the wait is never shorter than asked."""
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    ms = math.ceil(timeout * 1e3)
    if ms > _INT_MAX:
        raise OverflowError("timeout is too large")
    return ms


def _timeout_ns(timeout: float | None, ms: int) -> int:
    """The exact wait in ns for epoll_pwait2/ppoll (used when ms > 0):
    rounded up, never longer than the ms figure."""
    # ms > 0 only for a positive timeout: never None where it is multiplied.
    return min(math.ceil(timeout * 1e9),  # type: ignore[operator]
               ms * 1000000) if ms > 0 else 0


_BOOL_FD_WARNS = sys.version_info >= (3, 13)


def _check_fd(fd: int) -> None:
    # Python 3.13's select.epoll/select.poll warn about a bool fd: so do we.
    if _BOOL_FD_WARNS and type(fd) is bool:
        warnings.warn("bool is used as a file descriptor", RuntimeWarning,
                      stacklevel=4)
    # cffi would raise OverflowError too, when converting; check first, so
    # nothing is touched, and with the stdlib's message.
    if fd > _INT_MAX:
        raise OverflowError("Python int too large to convert to C int")


def _errno_error() -> OSError:
    err = ffi.errno
    return OSError(err, os.strerror(err))


def _remaining_ms(deadline: float) -> int:
    """Milliseconds left until *deadline* (rounded up), or -1 if passed."""
    remaining = deadline - monotonic()
    if remaining < 0:
        return -1
    return math.ceil(remaining * 1e3)


if hasattr(lib, "epoll_wait"):     # Linux only: see csrc/ffi/build_ffi.py

    _EPOLLIN, _EPOLLOUT = lib.EPOLLIN, lib.EPOLLOUT
    _EPOLL_CTL_ADD = lib.EPOLL_CTL_ADD
    _EPOLL_CTL_MOD = lib.EPOLL_CTL_MOD
    _EPOLL_CTL_DEL = lib.EPOLL_CTL_DEL
    _epoll_ctl = lib.epoll_ctl
    _epoll_wait = lib.epoll_wait
    _epoll_wait_ns = lib.fs_epoll_wait_ns

    _EPOLL_BITS = ((EVENT_READ, _EPOLLIN), (EVENT_WRITE, _EPOLLOUT),
                   (EVENT_PRIORITY, lib.EPOLLPRI),
                   (EVENT_RDHUP, lib.EPOLLRDHUP), (EDGE, lib.EPOLLET),
                   (ONESHOT, lib.EPOLLONESHOT),
                   (EXCLUSIVE, lib.EPOLLEXCLUSIVE))
    _EPOLL_TO_READY = ReadinessMap(_EPOLLIN, _EPOLLOUT, lib.EPOLLPRI,
                                   lib.EPOLLRDHUP)

    def _epoll_mask(events: int) -> int:
        mask = 0
        for ours, kernel in _EPOLL_BITS:
            if events & ours:
                mask |= kernel
        return mask

    class EpollCore(OrphanGuard, DispatchMixin):
        """epoll(7) core: a kernel epoll fd plus a dict fd -> key.

        The event buffer (``struct epoll_event[]``) is allocated once and
        reused; it holds at least one slot per registered fd -- the
        stdlib's ``maxevents = max(len(registered), 1)`` -- so every ready
        fd comes back in a single call, and it grows (doubling) on
        register but never shrinks: epoll_wait's cost does not depend on
        the buffer's size, only on how many fds are ready.

        Buffers are kept in a free list that ``select()`` pops from and
        appends back to (both atomic under the GIL, on CPython and PyPy):
        the GIL is released during the wait, and two threads waiting on
        one selector -- allowed by ``select.epoll``, and the point of
        one-shot registrations -- must not have the kernel write both
        results into one buffer.  A single waiter always reuses the same
        buffer.
        """

        SUPPORTED: ClassVar[int] = READINESS | EDGE | ONESHOT | EXCLUSIVE

        def __init__(self) -> None:
            self._epfd = -1     # first, so __del__ is safe if we fail
            epfd = lib.epoll_create1(lib.EPOLL_CLOEXEC)
            if epfd < 0:
                raise _errno_error()
            self._epfd = epfd
            self._keys = {}
            self._size = 8      # buffer slots; >= max(len(_keys), 1)
            self._free = [ffi.new("struct epoll_event[]", self._size)]
            self._init_orphans()

        # Orphaned registrations: _orphans.py.

        def _epoll_mask(self, events: int) -> int:
            return _epoll_mask(events)

        def _kernel_fd(self) -> int:
            return self._epfd

        def _probe(self, fd: int, mask: int) -> int:
            ev = ffi.new("struct epoll_event *")
            ev.events = mask
            ev.data.fd = fd
            if _epoll_ctl(self._epfd, _EPOLL_CTL_MOD, fd, ev) < 0:
                return ffi.errno or -1
            return 0

        def _fresh(self, fds: Iterable[tuple[int, int]]) -> int:
            epfd = lib.epoll_create1(lib.EPOLL_CLOEXEC)
            if epfd < 0:
                raise _errno_error()
            ev = ffi.new("struct epoll_event *")
            for fd, mask in fds:
                ev.events = mask
                ev.data.fd = fd
                _epoll_ctl(epfd, _EPOLL_CTL_ADD, fd, ev)    # refusal: ignored
            return epfd

        def register(self, fd: int, events: int, key: SelectorKey) -> None:
            epfd = self._epfd
            if epfd < 0:
                raise closed_error()
            _check_fd(fd)
            self._before_register(fd, events)
            ev = ffi.new("struct epoll_event *")    # zeroed: data.u64 == 0
            ev.events = _epoll_mask(events)
            ev.data.fd = fd
            # The key goes in *before* the call, out again if it fails: the
            # call releases the GIL, and a thread waiting on this selector
            # may get the fd's first event at once -- with EDGE or ONESHOT
            # the only one it will get -- and must find the key.
            keys = self._keys
            keys[fd] = key
            if _epoll_ctl(epfd, _EPOLL_CTL_ADD, fd, ev) < 0:
                del keys[fd]
                raise _errno_error()                # nothing stored
            if len(keys) > self._size:
                self._size *= 2
                # Buffers still out in a select() are dropped on return.
                self._free = [ffi.new("struct epoll_event[]", self._size)]

        def modify(self, fd: int, events: int, key: SelectorKey) -> None:
            epfd = self._epfd
            if epfd < 0:
                raise closed_error()
            keys = self._keys
            old_key = keys[fd]
            old = old_key.events
            keys[fd] = key      # before the call: see register()
            if events != old or events & ONESHOT:   # ONESHOT: re-arm
                ev = ffi.new("struct epoll_event *")
                ev.events = _epoll_mask(events)
                ev.data.fd = fd
                if self._before_modify(fd, events):
                    op = _EPOLL_CTL_ADD     # parked: see _orphans.py
                elif old & EXCLUSIVE:
                    # The kernel refuses EPOLL_CTL_MOD of an exclusive
                    # registration (epoll_ctl(2), EINVAL): delete and add
                    # again; the add re-checks readiness, no edge is lost.
                    _epoll_ctl(epfd, _EPOLL_CTL_DEL, fd, ffi.NULL)
                    op = _EPOLL_CTL_ADD
                else:
                    op = _EPOLL_CTL_MOD
                if _epoll_ctl(epfd, op, fd, ev) < 0:
                    keys[fd] = old_key
                    raise _errno_error()

        def unregister(self, fd: int) -> None:
            # Hold the key until we return: dropping its last reference
            # may run a finalizer that uses this core.
            key = self._keys.pop(fd, None)
            if key is None or self._epfd < 0:
                return
            # A failure is not reported, like the stdlib selectors: a
            # closed fd (EBADF) has left the epoll set already -- or, if a
            # dup keeps its open file alive, can no longer be removed: an
            # orphan, handled by _orphans.py.
            if (self._unregistered_fd(fd)
                    and _epoll_ctl(self._epfd, _EPOLL_CTL_DEL, fd,
                                   ffi.NULL) < 0):
                self._del_failed(fd)

        @property
        def closed(self) -> bool:
            return self._epfd < 0

        def _select(self, timeout: float | None = None,
                    limit: int | None = None) -> Ready:
            epfd = self._epfd
            if epfd < 0:
                raise closed_error()
            ms = _timeout_ms(timeout)
            deadline = monotonic() + ms * 1e-3 if ms > 0 else 0.0
            try:
                buf = self._free.pop()
            except IndexError:      # another thread is waiting with it
                buf = ffi.new("struct epoll_event[]", self._size)
            size = len(buf)
            if limit and limit < size:
                size = limit    # the kernel keeps the rest, rotating
            waiting = self._waiting
            waiting.append(None)
            try:
                n = _epoll_wait_ns(epfd, buf, size, ms,
                                   _timeout_ns(timeout, ms))
                if n < 0:
                    n = self._wait_again(epfd, buf, size, ms, deadline)
            finally:
                waiting.pop()
            ready = []
            keys = self._keys
            for i in range(n):
                ev = buf[i]
                key = keys.get(ev.data.fd)
                if key is None:     # unregistered meanwhile, or a ghost
                    continue
                events = _EPOLL_TO_READY[ev.events] & key.events & READINESS
                if events:  # 0: the interest changed after the kernel spoke
                    ready.append((key, events))
            if self._oneshot_seen or self._suspects:    # rare: _orphans.py
                self._after_wait(ready, [buf[i].data.fd for i in range(n)])
            if len(buf) >= self._size:
                self._free.append(buf)
            return ready

        @staticmethod
        def _wait_again(epfd: int, buf: EpollEventArray, size: int, ms: int,
                        deadline: float) -> int:
            """The failure path of epoll_wait, out of the hot loop: retry
            after EINTR with the remaining time, raise anything else."""
            while True:
                if ffi.errno != EINTR:
                    raise _errno_error()
                # A Python signal handler has run by now (entering this
                # frame checks for pending signals); had it raised, we
                # would not be here.
                if ms > 0:
                    ms = _remaining_ms(deadline)
                    if ms < 0:
                        return 0
                elif ms == 0:
                    return 0
                n = _epoll_wait(epfd, buf, size, ms)
                if n >= 0:
                    return n

        def fileno(self) -> int:
            if self._epfd < 0:
                raise closed_error()
            return self._epfd

        def _after_fork(self) -> None:
            # A fresh epoll instance with the same registrations, at the
            # same fd number: the inherited one is the parent's (see
            # csrc/epoll_core.c).
            super()._after_fork()
            self._waiting = []
            if self._epfd >= 0:
                self._rebuild(verify=False)
                self._free = [ffi.new("struct epoll_event[]", self._size)]

        def precise_timeouts(self) -> bool:
            """True if waits use epoll_pwait2 (sub-ms) in this process."""
            if self._epfd < 0:
                raise closed_error()
            return bool(lib.fs_pwait2_probe(self._epfd))

        def close(self) -> None:
            # Mark closed before closing, so a second call (or __del__)
            # cannot close an fd number the process has reused since.
            epfd = self._epfd
            if epfd >= 0:
                self._epfd = -1
                self._keys.clear()
                self._free = []
                try:
                    os.close(epfd)
                except OSError:
                    pass    # like select.epoll.close(): never raises

        def __del__(self) -> None:
            # The user never closed the selector: do not leak the kernel
            # fd.  At interpreter shutdown module globals may be gone.
            try:
                self.close()
            except Exception:
                pass


_POLLIN, _POLLOUT = lib.POLLIN, lib.POLLOUT
_POLLFD_SIZE = ffi.sizeof("struct pollfd")
_poll = lib.poll
_poll_ns = lib.fs_poll_ns


_POLLPRI, _POLLRDHUP = lib.POLLPRI, lib.POLLRDHUP     # POLLRDHUP: 0 off Linux
_POLL_BITS = ((EVENT_READ, _POLLIN), (EVENT_WRITE, _POLLOUT),
              (EVENT_PRIORITY, _POLLPRI), (EVENT_RDHUP, _POLLRDHUP))
_POLL_TO_READY = ReadinessMap(_POLLIN, _POLLOUT, _POLLPRI, _POLLRDHUP)


def _poll_mask(events: int) -> int:
    mask = 0
    for ours, kernel in _POLL_BITS:
        if events & ours:
            mask |= kernel
    return mask


# An unregistered entry is a hole: fd -1.  A ONESHOT entry already reported
# is disarmed: its fd stored as -2 - fd, which poll() ignores as well (so not
# even POLLHUP comes back) until modify() re-arms it; the two never collide.
_HOLE = -1


def _disarmed(fd: int) -> int:
    return -2 - fd


class PollCore(DispatchMixin):
    """poll(2) core: a master ``struct pollfd[]`` plus fd -> index and
    fd -> key dicts.

    Nothing is indexed by fd number: poll accepts any fd (a closed one
    reports POLLNVAL), so fds can be huge.  ``_table = (fds, n)`` is the
    master array (with spare capacity) and the number of entries in use,
    published together by one attribute store, so a reader never pairs an
    array with a count it does not have; ``_index`` maps fd -> entry and
    ``_keys`` fd -> key (the only reference the core holds to a key; it is
    also the dispatch mixin's table).

    register appends (growing the array by doubling), so the entries keep
    the registration order and results come out in the stdlib's order.
    unregister leaves a hole -- fd -1, which poll skips -- instead of
    shifting everything; a new, compacted array (order kept) replaces the
    master once holes outnumber live entries, so each unregister costs
    O(1) amortised -- and also whenever poll() says EINVAL (more entries
    than RLIMIT_NOFILE) while holes remain, as the stdlib would not have
    counted them.

    The kernel never sees the master: each wait copies the entries in use
    into a wait buffer (one memmove; the kernel copies them in again
    anyway) and polls that.  The GIL is released during the wait, so
    other threads may register, modify or unregister meanwhile, or wait
    too; they edit only the master, and the kernel writes only the wait's
    own buffer (some kernels, e.g. macOS's, copy whole pollfds back, which
    would undo an edit made in place during the wait).  Buffers are reused
    through a free list, like ``EpollCore``'s, so a single waiter
    allocates nothing.  The results loop maps each ready entry to the
    fd's *current* key, as the stdlib does after its poll().
    """

    SUPPORTED: ClassVar[int] = (
        EVENT_READ | EVENT_WRITE | EVENT_PRIORITY | ONESHOT
        | (EVENT_RDHUP if _POLLRDHUP else 0))

    def __init__(self) -> None:
        self._table = (ffi.new("struct pollfd[]", 8), 0)
        self._holes = 0      # entries with fd -1 in the master
        self._index: dict[int, int] = {}    # fd -> position in the master
        self._keys = {}      # fd -> key
        self._free: list[PollfdArray] = []  # wait buffers not in use
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def register(self, fd: int, events: int, key: SelectorKey) -> None:
        if self._closed:
            raise closed_error()
        _check_fd(fd)
        fds, n = self._table
        if n == len(fds):
            grown = ffi.new("struct pollfd[]", 2 * n)
            ffi.memmove(grown, fds, n * _POLLFD_SIZE)
            fds = grown
        entry = fds[n]          # never used yet: zeroed by ffi.new
        entry.fd = fd
        entry.events = _poll_mask(events)
        self._index[fd] = n
        self._keys[fd] = key
        self._table = (fds, n + 1)  # publish: a wait now polls it

    def modify(self, fd: int, events: int, key: SelectorKey) -> None:
        if self._closed:
            raise closed_error()
        keys = self._keys
        old = keys[fd]          # dropped at return, the core consistent
        entry = self._table[0][self._index[fd]]
        if events != old.events:
            entry.events = _poll_mask(events)
        entry.fd = fd           # re-arms a disarmed ONESHOT entry
        keys[fd] = key

    def unregister(self, fd: int) -> None:
        # Hold the key until we return: dropping its last reference may
        # run a finalizer that uses this core.
        key = self._keys.pop(fd, None)
        if key is None:
            return
        fds, n = self._table
        fds[self._index.pop(fd)].fd = _HOLE     # poll() ignores it
        self._holes += 1
        if 2 * self._holes > n:
            self._compact()

    def _compact(self) -> None:
        """Replace the master by a copy without holes, order kept."""
        old, n = self._table
        fds = ffi.new("struct pollfd[]", max(2 * (n - self._holes), 8))
        index = {}
        j = 0
        for i in range(n):
            src = old[i]
            fd = src.fd
            if fd != _HOLE:
                dst = fds[j]
                dst.fd = fd
                dst.events = src.events
                index[fd if fd >= 0 else _disarmed(fd)] = j
                j += 1
        self._index = index
        self._table = (fds, j)
        self._holes = 0

    def _select(self, timeout: float | None = None,
                limit: int | None = None) -> Ready:
        if self._closed:
            raise closed_error()
        ms = _timeout_ms(timeout)
        deadline = monotonic() + ms * 1e-3 if ms > 0 else 0.0
        fds, nfds = self._table
        try:
            buf = self._free.pop()
            if len(buf) < nfds:
                buf = ffi.new("struct pollfd[]", len(fds))
        except IndexError:      # first wait, or another thread is waiting
            buf = ffi.new("struct pollfd[]", len(fds))
        ffi.memmove(buf, fds, nfds * _POLLFD_SIZE)
        n = _poll_ns(buf, nfds, ms, _timeout_ns(timeout, ms))
        if n < 0:
            buf, nfds, n = self._wait_again(buf, ms, deadline)
        ready = []
        if n:
            keys = self._keys
            # poll() said how many entries have revents set: stop there.
            for i in range(nfds):
                entry = buf[i]
                revents = entry.revents
                if revents:
                    key = keys.get(entry.fd)
                    if key is not None:     # None: unregistered meanwhile
                        # POLLNVAL (a closed fd) wakes both interests, like
                        # HUP and ERR: the stdlib's rule (ReadinessMap).
                        events = (_POLL_TO_READY[revents] & key.events
                                  & READINESS)
                        if events:  # 0: interest changed since the copy
                            ready.append((key, events))
                    n -= 1
                    if not n:
                        break
        self._free.append(buf)
        if limit:
            ready = self._take(ready, limit)
        for key, _ in ready:
            if key.events & ONESHOT:
                self._disarm(key.fd)
        return ready

    def _disarm(self, fd: int) -> None:
        entry = self._table[0][self._index[fd]]
        if entry.fd == fd:
            entry.fd = _disarmed(fd)

    def _wait_again(self, buf: PollfdArray, ms: int, deadline: float
                    ) -> tuple[PollfdArray, int, int]:
        """The failure path of poll(), out of the hot loop: retry after
        EINTR with the remaining time (compact first after EINVAL, see the
        class docstring); raise anything else.  Each retry polls a fresh
        copy of the master, so it sees changes made meanwhile (by another
        thread or by the signal handler)."""
        while True:
            err = ffi.errno
            if self._closed:        # closed meanwhile (handler, thread)
                raise closed_error()
            if err == EINVAL and self._holes:
                self._compact()
            elif err != EINTR:
                raise OSError(err, os.strerror(err))
            elif ms > 0:
                # A Python signal handler has run by now (entering this
                # frame checks for pending signals); had it raised, we
                # would not be here.
                ms = _remaining_ms(deadline)
                if ms < 0:
                    return buf, 0, 0
            elif ms == 0:
                return buf, 0, 0
            fds, nfds = self._table
            if len(buf) < nfds:
                buf = ffi.new("struct pollfd[]", len(fds))
            ffi.memmove(buf, fds, nfds * _POLLFD_SIZE)
            n = _poll(buf, nfds, ms)
            if n >= 0:
                return buf, nfds, n

    def close(self) -> None:
        # Mark closed first: dropping the keys may run finalizers that use
        # this core again, and they must see it closed.  A wait in progress
        # in another thread keeps its own buffer.
        self._closed = True
        self._table = (ffi.new("struct pollfd[]", 0), 0)
        self._holes = 0
        self._free = []
        self._index.clear()
        self._keys.clear()
