"""The cffi tier's kernel layer (PyPy's tier: cffi is its fast FFI): epoll
and poll through the module built by ``csrc/ffi/build_ffi.py``.

Better than the stdlib's objects (``_kernel_stdlib``): nanosecond timeouts
(``csrc/waits.h``), EINTR handed back to the core, and waits that read no
struct field in Python (the C side fills two int arrays, ``ffi.unpack``
makes them lists).  Wait buffers are reused through a free list: the GIL
is released during a wait, and two waiting threads need two buffers.
"""

from __future__ import annotations

import os
import select
import sys
from _thread import RLock
from errno import EINTR, EINVAL

from ._cffi_epoll import ffi, lib
from ._epoll_core import EpollCore as _EpollCore
from ._flags import KernelBits
from ._poll_core import PollCore as _PollCore
from ._waker import always_readable_fd

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, ClassVar

    from ._cffi_epoll import PollfdArray

_unpack = ffi.unpack


def _errno_error(err: int | None = None) -> OSError:
    if err is None:
        err = ffi.errno
    return OSError(err, os.strerror(err))


# Linux only: see build_ffi.py (sys.platform first: type checkers then
# skip it elsewhere).
if sys.platform == "linux" and hasattr(lib, "fs_epoll_ready"):

    _ctl = lib.fs_epoll_ctl
    _ready = lib.fs_epoll_ready
    _ADD, _MOD, _DEL = lib.EPOLL_CTL_ADD, lib.EPOLL_CTL_MOD, lib.EPOLL_CTL_DEL

    def _swap(new: int, fd: int, kick: bool) -> None:
        """dup2 *new* over *fd*; *kick*: then make the threads still
        waiting on the old instance return (_types.EpollKernel.replace),
        through a dup of it kept for the purpose."""
        old = os.dup(fd) if kick else -1
        try:
            os.dup2(new, fd, inheritable=False)
        finally:
            if old >= 0:
                _ctl(old, _ADD, always_readable_fd(), lib.EPOLLIN)
                os.close(old)

    class EpollKernel:
        """One epoll instance; the event data is the fd."""

        BITS: ClassVar[KernelBits] = KernelBits(
            lib.EPOLLIN, lib.EPOLLOUT, lib.EPOLLPRI, lib.EPOLLRDHUP,
            lib.EPOLLET, lib.EPOLLONESHOT, lib.EPOLLEXCLUSIVE)

        def __init__(self) -> None:
            # The instance is owned by a select.epoll object, whose
            # deallocation (C, or PyPy's interpreter level) closes it: a
            # __del__ of ours could be interrupted by a signal handler
            # raising before its close, and leak the fd (an unclosed
            # selector collected during a wait: tests/test_async_exceptions).
            # The syscalls go through cffi on its number.
            self._owner = select.epoll()
            self.fd = self._owner.fileno()
            # Wait buffers not in use: (capacity, events, fds, revents).
            self._free: list[tuple[int, Any, Any, Any]] = []

        def add(self, fd: int, mask: int) -> None:
            if _ctl(self.fd, _ADD, fd, mask) < 0:
                raise _errno_error()

        def mod(self, fd: int, mask: int) -> None:
            if self.probe(fd, mask):
                raise _errno_error()

        def delete(self, fd: int) -> int:
            return (ffi.errno or -1) if _ctl(self.fd, _DEL, fd, 0) else 0

        def probe(self, fd: int, mask: int) -> int:
            return (ffi.errno or -1) if _ctl(self.fd, _MOD, fd, mask) else 0

        def wait(self, size: int, ms: int, ns: int
                 ) -> Iterable[tuple[int, int]] | None:
            free = self._free
            try:    # (not "if free": another thread may take it between)
                buf = free.pop()
            except IndexError:
                buf = None
            if buf is None or buf[0] < size:
                cap = max(size, 2 * buf[0] if buf else 8)
                buf = (cap, ffi.new("struct epoll_event[]", cap),
                       ffi.new("int[]", cap), ffi.new("unsigned int[]", cap))
            # self.fd is read now: -1 if a signal handler closed us (EBADF).
            n = _ready(self.fd, buf[1], size, ms, ns, buf[2], buf[3])
            if n < 0:
                err = ffi.errno
                free.append(buf)
                if err == EINTR:
                    return None
                raise _errno_error(err)
            pairs = zip(_unpack(buf[2], n), _unpack(buf[3], n))
            free.append(buf)
            return pairs

        def kick(self) -> None:
            _ctl(self.fd, _ADD, always_readable_fd(), lib.EPOLLIN)

        def replace(self, registrations: Iterable[tuple[int, int]],
                    kick: bool = False) -> None:
            new = select.epoll()    # owned as self._owner is (__init__)
            try:
                for fd, mask in registrations:
                    _ctl(new.fileno(), _ADD, fd, mask)  # refusals ignored
                _swap(new.fileno(), self.fd, kick)
            finally:
                new.close()

        def precise_timeouts(self) -> bool:
            return bool(lib.fs_pwait2_probe(self.fd))

        def close(self) -> None:
            # The number forgotten first: -1 in a wait that reads it later
            # (EBADF).  Never raises, as select.epoll.close().
            self.fd = -1
            self._free = []
            self._owner.close()

    class EpollCore(_EpollCore):
        _Kernel = EpollKernel


_poll_ready = lib.fs_poll_ready
_POLLFD_SIZE = ffi.sizeof("struct pollfd")
_HOLE = -1      # an unregistered entry: poll() skips negative fds


class PollKernel:
    """A ``struct pollfd[]`` master array plus fd -> position.

    ``_table = (fds, n, capacity)``: the master and the entries in use,
    published by one store.  set() appends (registration order); remove()
    leaves a hole (fd -1, which poll skips) and a compacted copy replaces the
    master once holes outnumber live entries -- or when poll() says EINVAL
    (more entries than RLIMIT_NOFILE), as the stdlib would not count holes.
    Each wait polls a copy, so other threads may edit the master meanwhile (and
    kernels that copy whole pollfds back, macOS's, undo no edit).
    """

    BITS: ClassVar[KernelBits] = KernelBits(
        # (POLLRDHUP: 0 off Linux)
        lib.POLLIN, lib.POLLOUT, lib.POLLPRI, lib.POLLRDHUP)

    def __init__(self) -> None:
        # (master, entries in use, capacity)
        self._table: tuple[PollfdArray, int, int] = (
            ffi.new("struct pollfd[]", 8), 0, 8)
        self._holes = 0
        self._index: dict[int, int] = {}    # fd -> position in the master
        self._free: list[tuple[int, Any, Any, Any]] = []    # wait buffers
        self._version = 0       # +1 at every edit of the master
        # Edits from several threads: the table, the index and the holes
        # change together, and a thread switch can come between any two
        # bytecodes (PyPy) or after any call (CPython): a lock.  Re-entrant:
        # a signal handler may edit in the middle of an edit of its own
        # thread -- so the edits themselves call nothing between reading
        # the table and publishing it (no handler runs there), and what
        # must call (a new master: _grow, _compact) publishes only if no
        # edit came meanwhile (_version), else starts again.
        self._lock = RLock()

    def set(self, fd: int, mask: int) -> None:
        with self._lock:
            while True:
                index = self._index
                if fd in index:
                    self._table[0][index[fd]].events = mask
                    self._version += 1
                    return
                fds, n, cap = self._table
                if n < cap:
                    break
                self._grow()    # (calls: then everything is read again)
            entry = fds[n]      # never used yet: zeroed by ffi.new
            entry.fd = fd
            entry.events = mask
            # Publish: a wait now polls it.
            self._table, index[fd] = (fds, n + 1, cap), n
            self._version += 1

    def remove(self, fd: int) -> None:
        with self._lock:
            index = self._index
            if fd not in index:
                return
            self._table[0][index[fd]].fd = _HOLE
            self._holes += 1
            del index[fd]
            self._version += 1
            if 2 * self._holes > self._table[1]:
                self._compact()

    def _grow(self) -> None:
        """A master twice as large, the same entries."""
        while True:
            version = self._version
            fds, n, cap = self._table
            grown = ffi.new("struct pollfd[]", 2 * cap)
            ffi.memmove(grown, fds, n * _POLLFD_SIZE)
            if self._version == version:    # (no call from here on)
                self._table = (grown, n, 2 * cap)
                self._version += 1
                return

    def _compact(self) -> None:
        """Replace the master by a copy without holes, order kept."""
        while True:
            version = self._version
            old, n, _ = self._table
            cap = max(2 * (n - self._holes), 8)
            fds = ffi.new("struct pollfd[]", cap)
            index = {}
            j = 0
            for i in range(n):
                src = old[i]
                fd = src.fd
                if fd != _HOLE:
                    dst = fds[j]
                    dst.fd = fd
                    dst.events = src.events
                    index[fd] = j
                    j += 1
            if self._version == version:    # (no call from here on)
                self._index, self._table, self._holes = index, (fds, j, cap), 0
                self._version += 1
                return

    def wait(self, size: int | None, ms: int, ns: int
             ) -> Iterable[tuple[int, int]] | None:
        while True:
            fds, nfds, cap = self._table
            free = self._free
            try:    # (not "if free": another thread may take it between)
                buf = free.pop()
            except IndexError:
                buf = None
            if buf is None or buf[0] < nfds:
                buf = (cap, ffi.new("struct pollfd[]", cap),
                       ffi.new("int[]", cap), ffi.new("int[]", cap))
            ffi.memmove(buf[1], fds, nfds * _POLLFD_SIZE)
            n = _poll_ready(buf[1], nfds, ms, ns, buf[2], buf[3])
            if n >= 0:
                pairs = zip(_unpack(buf[2], n), _unpack(buf[3], n))
                free.append(buf)
                return pairs
            err = ffi.errno
            free.append(buf)
            if err == EINTR:
                return None
            if err != EINVAL or not self._holes:
                raise _errno_error(err)
            with self._lock:
                self._compact()     # then poll the compacted master


class PollCore(_PollCore):
    _Kernel = PollKernel
