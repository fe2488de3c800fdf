"""cffi tier: epoll and poll cores over a thin out-of-line cffi binding.

This is the tier PyPy uses (cffi is PyPy's fast FFI; a C extension would
run through the slow cpyext layer), and CPython when forced with
``FASTSELECTORS_BACKEND=cffi``.  The C side (``csrc/ffi/build_ffi.py``)
binds only the syscalls and their constants; everything else is here, in
Python, written for the JIT: plain loops over cdata arrays, no per-event
allocation besides the result tuples, no calls the JIT cannot inline.

The observable behaviour is the reference cores' (``_pure.EpollCore`` and
``_pure.PollCore``, i.e. the stdlib's ``select.epoll``/``select.poll``):
the same ``(key, events)`` results, the same exceptions for the same input.
In particular:

- timeout: None blocks, <= 0 polls, otherwise milliseconds rounded *up*
  (never return before the timeout); NaN -> ValueError, a non-number ->
  TypeError, more milliseconds than a C int holds -> OverflowError;
- an fd above INT_MAX -> OverflowError, as ``select.epoll().register``;
- a failed syscall -> ``OSError(errno, strerror)``, which Python turns into
  the matching subclass (``FileNotFoundError`` for ENOENT, ...);
- EINTR (PEP 475): a Python signal handler runs as soon as the call returns
  to the interpreter (between bytecodes); if it raises, the exception
  propagates out of ``select()``; otherwise the wait is retried with the
  *remaining* time.

cffi releases the GIL around every C call, so the waits let other threads
run, and the code below keeps each wait's buffer to itself for that reason
(see ``EpollCore.select`` and ``PollCore.select``).
"""

import math
import os
from errno import EINTR, EINVAL
from selectors import EVENT_READ, EVENT_WRITE
from time import monotonic

from ._base import closed_error
from ._cffi_epoll import ffi, lib

_INT_MAX = 2 ** (8 * ffi.sizeof("int") - 1) - 1


def _timeout_ms(timeout):
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


def _check_fd(fd):
    # cffi would raise OverflowError too, but only once the kernel call is
    # made; check first so nothing is stored, with the stdlib's message.
    if fd > _INT_MAX:
        raise OverflowError("Python int too large to convert to C int")


def _errno_error():
    err = ffi.errno
    return OSError(err, os.strerror(err))


def _remaining_ms(deadline):
    """Milliseconds left until *deadline* (rounded up), or -1 if passed."""
    remaining = deadline - monotonic()
    if remaining < 0:
        return -1
    return math.ceil(remaining * 1e3)


if hasattr(lib, "epoll_wait"):     # Linux only: see csrc/ffi/build_ffi.py

    _EPOLLIN, _EPOLLOUT = lib.EPOLLIN, lib.EPOLLOUT
    _EPOLL_NOT_IN, _EPOLL_NOT_OUT = ~_EPOLLIN, ~_EPOLLOUT
    _EPOLL_CTL_ADD = lib.EPOLL_CTL_ADD
    _EPOLL_CTL_MOD = lib.EPOLL_CTL_MOD
    _EPOLL_CTL_DEL = lib.EPOLL_CTL_DEL
    _epoll_ctl = lib.epoll_ctl
    _epoll_wait = lib.epoll_wait

    def _epoll_mask(events):
        mask = 0
        if events & EVENT_READ:
            mask |= _EPOLLIN
        if events & EVENT_WRITE:
            mask |= _EPOLLOUT
        return mask

    class EpollCore:
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

        def __init__(self):
            self._epfd = -1     # first, so __del__ is safe if we fail
            epfd = lib.epoll_create1(lib.EPOLL_CLOEXEC)
            if epfd < 0:
                raise _errno_error()
            self._epfd = epfd
            self._keys = {}
            self._size = 8      # buffer slots; >= max(len(_keys), 1)
            self._free = [ffi.new("struct epoll_event[]", self._size)]

        def register(self, fd, events, key):
            epfd = self._epfd
            if epfd < 0:
                raise closed_error()
            _check_fd(fd)
            ev = ffi.new("struct epoll_event *")    # zeroed: data.u64 == 0
            ev.events = _epoll_mask(events)
            ev.data.fd = fd
            if _epoll_ctl(epfd, _EPOLL_CTL_ADD, fd, ev) < 0:
                raise _errno_error()                # nothing stored
            keys = self._keys
            keys[fd] = key
            if len(keys) > self._size:
                self._size *= 2
                # Buffers still out in a select() are dropped on return.
                self._free = [ffi.new("struct epoll_event[]", self._size)]

        def modify(self, fd, events, key):
            epfd = self._epfd
            if epfd < 0:
                raise closed_error()
            if events != self._keys[fd].events:
                ev = ffi.new("struct epoll_event *")
                ev.events = _epoll_mask(events)
                ev.data.fd = fd
                if _epoll_ctl(epfd, _EPOLL_CTL_MOD, fd, ev) < 0:
                    raise _errno_error()
            self._keys[fd] = key

        def unregister(self, fd):
            if self._keys.pop(fd, None) is None or self._epfd < 0:
                return
            # Errors ignored: a closed fd (EBADF) has left the epoll set
            # already -- or cannot be removed any more (a dup of it keeps
            # the registration alive; its events are then skipped below
            # because the fd has no key).
            _epoll_ctl(self._epfd, _EPOLL_CTL_DEL, fd, ffi.NULL)

        def select(self, timeout=None):
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
            n = _epoll_wait(epfd, buf, size, ms)
            if n < 0:
                n = self._wait_again(epfd, buf, size, ms, deadline)
            ready = []
            keys = self._keys
            for i in range(n):
                ev = buf[i]
                key = keys.get(ev.data.fd)
                if key is None:     # unregistered meanwhile, or a ghost
                    continue
                revents = ev.events
                events = 0
                # Anything but IN (OUT, HUP, ERR) wakes write interest,
                # anything but OUT wakes read interest: the stdlib's rule.
                if revents & _EPOLL_NOT_IN:
                    events |= EVENT_WRITE
                if revents & _EPOLL_NOT_OUT:
                    events |= EVENT_READ
                ready.append((key, events & key.events))
            if size >= self._size:
                self._free.append(buf)
            return ready

        @staticmethod
        def _wait_again(epfd, buf, size, ms, deadline):
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

        def fileno(self):
            if self._epfd < 0:
                raise closed_error()
            return self._epfd

        def close(self):
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

        def __del__(self):
            # The user never closed the selector: do not leak the kernel
            # fd.  At interpreter shutdown module globals may be gone.
            try:
                self.close()
            except Exception:
                pass


_POLLIN, _POLLOUT = lib.POLLIN, lib.POLLOUT
_POLL_NOT_IN, _POLL_NOT_OUT = ~_POLLIN, ~_POLLOUT
_poll = lib.poll


def _poll_mask(events):
    mask = 0
    if events & EVENT_READ:
        mask |= _POLLIN
    if events & EVENT_WRITE:
        mask |= _POLLOUT
    return mask


class PollCore:
    """poll(2) core: a ``struct pollfd[]`` passed to the kernel as is.

    Layout: ``_fds[0:_n]`` is the pollfd array, ``_keys[i]`` the key of
    ``_fds[i]`` (a parallel list), ``_index`` maps fd -> i.  Nothing is
    indexed by fd number: poll accepts any fd (a closed one reports
    POLLNVAL), so fds can be huge.

    register appends (growing the array by doubling), so the array keeps
    the registration order and results come out in the stdlib's order.
    unregister leaves a hole -- fd -1, which poll skips, and key None --
    instead of shifting everything; the array is compacted (order kept)
    once holes outnumber live entries, so each unregister costs O(1)
    amortised, and also whenever poll() says EINVAL (more entries than
    RLIMIT_NOFILE) while holes remain, since the stdlib would not have
    counted them.

    Array and key list are never rearranged in place: growth and
    compaction build new ones.  A wait in progress in another thread (the
    GIL is released) keeps the pair it started with, consistent, while
    modify() edits entries in place (the kernel read them at entry).  Two
    concurrent waits raise RuntimeError, as ``select.poll`` does.
    """

    def __init__(self):
        self._fds = ffi.new("struct pollfd[]", 8)
        self._n = 0          # entries in use, holes included
        self._holes = 0
        self._keys = []      # len(_keys) == _n; None for a hole
        self._index = {}     # fd -> position in _fds/_keys
        self._idle = [True]  # popped while a poll() is in progress
        self._closed = False

    def register(self, fd, events, key):
        if self._closed:
            raise closed_error()
        _check_fd(fd)
        i = self._n
        fds = self._fds
        if i == len(fds):
            fds = ffi.new("struct pollfd[]", 2 * i)
            ffi.memmove(fds, self._fds, i * ffi.sizeof("struct pollfd"))
            self._fds = fds
        entry = fds[i]
        entry.fd = fd
        entry.events = _poll_mask(events)
        entry.revents = 0
        self._keys.append(key)
        self._index[fd] = i
        self._n = i + 1

    def modify(self, fd, events, key):
        if self._closed:
            raise closed_error()
        i = self._index[fd]
        if events != self._keys[i].events:
            self._fds[i].events = _poll_mask(events)
        self._keys[i] = key

    def unregister(self, fd):
        i = self._index.pop(fd, None)
        if i is None:
            return
        self._fds[i].fd = -1        # poll() ignores negative fds
        self._keys[i] = None
        self._holes += 1
        if self._holes > self._n - self._holes:
            self._compact()

    def _compact(self):
        """Drop the holes, keeping the order, into a new array."""
        keys = [key for key in self._keys if key is not None]
        n = len(keys)
        old = self._fds
        fds = ffi.new("struct pollfd[]", max(2 * n, 8))
        index = {}
        j = 0
        for i, key in enumerate(self._keys):
            if key is not None:
                fds[j].fd = key.fd
                fds[j].events = old[i].events
                index[key.fd] = j
                j += 1
        self._fds, self._keys, self._index = fds, keys, index
        self._n, self._holes = n, 0

    def select(self, timeout=None):
        if self._closed:
            raise closed_error()
        ms = _timeout_ms(timeout)
        deadline = monotonic() + ms * 1e-3 if ms > 0 else 0.0
        try:
            self._idle.pop()
        except IndexError:
            raise RuntimeError("concurrent poll() invocation") from None
        try:
            fds, keys, nfds = self._fds, self._keys, self._n
            n = _poll(fds, nfds, ms)
            if n < 0:
                fds, keys, nfds, n = self._wait_again(ms, deadline)
        finally:
            self._idle.append(True)
        ready = []
        if n:
            # poll() said how many entries have revents set: stop there.
            for i in range(nfds):
                revents = fds[i].revents
                if revents:
                    key = keys[i]
                    if key is not None:     # None: unregistered meanwhile
                        events = 0
                        # POLLNVAL (a closed fd) is neither IN nor OUT, so
                        # it wakes both interests, like HUP and ERR: the
                        # stdlib's rule.
                        if revents & _POLL_NOT_IN:
                            events |= EVENT_WRITE
                        if revents & _POLL_NOT_OUT:
                            events |= EVENT_READ
                        ready.append((key, events & key.events))
                    n -= 1
                    if not n:
                        break
        return ready

    def _wait_again(self, ms, deadline):
        """The failure path of poll(), out of the hot loop: retry after
        EINTR with the remaining time (compact first after EINVAL, see the
        class docstring); raise anything else."""
        while True:
            err = ffi.errno
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
                    return self._fds, self._keys, 0, 0
            elif ms == 0:
                return self._fds, self._keys, 0, 0
            fds, keys, nfds = self._fds, self._keys, self._n
            n = _poll(fds, nfds, ms)
            if n >= 0:
                return fds, keys, nfds, n

    def close(self):
        self._closed = True
        self._fds = None     # a wait in progress keeps its own reference
        self._n = self._holes = 0
        self._keys = []
        self._index.clear()
