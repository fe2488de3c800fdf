"""Pure tier: cores over the stdlib ``select`` module (no compiler needed).

Also the select() core of every tier: select(2) is O(max fd) and capped at
FD_SETSIZE, so nobody should want it fast, and the stdlib's ``select.select``
gives exactly the stdlib's errors for fds >= FD_SETSIZE and closed fds.
"""

from __future__ import annotations

import math
import os
import select
import sys
from selectors import EVENT_READ, EVENT_WRITE

from ._base import (EDGE, EVENT_PRIORITY, EVENT_RDHUP, EXCLUSIVE, ONESHOT,
                    READINESS, ReadinessMap, closed_error)
from ._orphans import OrphanGuard
from ._pydispatch import DispatchMixin

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from selectors import SelectorKey
    from typing import ClassVar

    from ._types import Poller, Ready


_INT_MAX = 2 ** 31 - 1


def _poll_timeout_ms(timeout: float | None) -> int:
    """Seconds -> poll()/epoll_wait() milliseconds, rounded up (stdlib)."""
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    # Round away from zero: wait *at least* timeout seconds.
    ms = math.ceil(timeout * 1e3)
    if ms > _INT_MAX:
        # CPython's select module refuses this; PyPy's epoll would return
        # at once, i.e. before the timeout: give CPython's error everywhere.
        raise OverflowError("timeout is too large")
    return ms


class _PollLikeCore(DispatchMixin):
    """Shared by the epoll and poll cores: same masks, same result loop.

    ``_BITS`` maps our events bits to the kernel's; the stdlib's rule for
    READ/WRITE (anything but IN wakes write interest, anything but OUT wakes
    read interest) plus PRI -> EVENT_PRIORITY and RDHUP -> EVENT_RDHUP gives
    the readiness reported, masked by the key's readiness interest.
    """

    _IN = _OUT = 0
    _BITS: tuple[tuple[int, int], ...] = ()
    _TO_READY: ReadinessMap     # kernel revents -> our readiness bits
    _poller: Poller | None      # None once closed

    if TYPE_CHECKING:
        # Provided by each core.
        @staticmethod
        def _new_poller() -> Poller: ...

    def __init__(self) -> None:
        self._poller = self._new_poller()
        self._keys = {}

    def _mask(self, events: int) -> int:
        mask = 0
        for ours, kernel in self._BITS:
            if events & ours:
                mask |= kernel
        return mask

    # The key is stored *before* the kernel call, and put back if it fails:
    # the call releases the GIL, and a thread waiting on this selector may
    # get the fd's first event at once -- with EDGE or ONESHOT the only one
    # it will ever get -- and must find the new key, not none or the old.

    def register(self, fd: int, events: int, key: SelectorKey) -> None:
        if self._poller is None:
            raise closed_error()
        self._keys[fd] = key
        try:
            self._poller.register(fd, self._mask(events))
        except BaseException:
            del self._keys[fd]
            raise

    def modify(self, fd: int, events: int, key: SelectorKey) -> None:
        if self._poller is None:
            raise closed_error()
        keys = self._keys
        old_key = keys[fd]
        keys[fd] = key
        if events != old_key.events or events & ONESHOT:   # ONESHOT: re-arm
            try:
                self._kernel_modify(fd, old_key.events, events)
            except BaseException:
                keys[fd] = old_key
                raise

    # _kernel_modify() runs only from modify(), after its closed check:
    # _poller is not None there (hence the "type: ignore[union-attr]"s).

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        self._poller.modify(  # type: ignore[union-attr]  # see above
            fd, self._mask(events))

    def unregister(self, fd: int) -> None:
        if self._keys.pop(fd, None) is None or self._poller is None:
            return
        try:
            self._poller.unregister(fd)
        except (OSError, KeyError):
            pass    # closed since it was registered, or a disarmed ONESHOT

    @property
    def closed(self) -> bool:
        return self._poller is None

    def _results(self, fd_event_list: Iterable[tuple[int, int]]) -> Ready:
        ready = []
        keys = self._keys
        to_ready = self._TO_READY
        for fd, event in fd_event_list:
            key = keys.get(fd)
            if key is None:
                continue
            events = to_ready[event] & key.events & READINESS
            if events:      # 0: the interest changed after the kernel spoke
                ready.append((key, events))
        return ready

    def close(self) -> None:
        # Mark closed first: dropping the keys may run finalizers that use
        # this core again, and they must see it closed.
        poller, self._poller = self._poller, None
        if poller is not None and hasattr(poller, "close"):
            poller.close()      # epoll has a kernel fd; poll has none
        self._keys.clear()


if hasattr(select, "epoll"):
    class EpollCore(OrphanGuard, _PollLikeCore):
        _IN, _OUT = select.EPOLLIN, select.EPOLLOUT
        # PyPy's select module lacks EPOLLRDHUP and EPOLLEXCLUSIVE: the
        # kernel ABI's values (include/uapi/linux/eventpoll.h) stand in.
        _PRI = select.EPOLLPRI
        _RDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
        _BITS = ((EVENT_READ, select.EPOLLIN), (EVENT_WRITE, select.EPOLLOUT),
                 (EVENT_PRIORITY, select.EPOLLPRI),
                 (EVENT_RDHUP, _RDHUP),
                 (EDGE, select.EPOLLET), (ONESHOT, select.EPOLLONESHOT),
                 (EXCLUSIVE, getattr(select, "EPOLLEXCLUSIVE", 1 << 28)))
        _TO_READY = ReadinessMap(select.EPOLLIN, select.EPOLLOUT, _PRI, _RDHUP)
        SUPPORTED: ClassVar[int] = READINESS | EDGE | ONESHOT | EXCLUSIVE
        _poller: select.epoll | None

        def __init__(self) -> None:
            super().__init__()
            self._init_orphans()

        @staticmethod
        def _new_poller() -> select.epoll:
            return select.epoll()

        # Orphaned registrations: _orphans.py.

        def _epoll_mask(self, events: int) -> int:
            return self._mask(events)

        def _kernel_fd(self) -> int:
            return self._poller.fileno()  # type: ignore[union-attr]  # open

        def _probe(self, fd: int, mask: int) -> int:
            try:
                self._poller.modify(  # type: ignore[union-attr]  # open
                    fd, mask)
            except OSError as exc:
                return exc.errno or -1
            return 0

        def _fresh(self, fds: Iterable[tuple[int, int]]) -> int:
            new = select.epoll()
            for fd, mask in fds:
                try:
                    new.register(fd, mask)
                except OSError:
                    pass
            try:
                return os.dup(new.fileno())     # select.epoll has no detach()
            finally:
                new.close()

        def register(self, fd: int, events: int, key: SelectorKey) -> None:
            if self._poller is None:
                raise closed_error()
            self._before_register(fd, events)
            super().register(fd, events, key)

        def _kernel_modify(self, fd: int, old: int, events: int) -> None:
            poller = self._poller
            assert poller is not None   # modify() checked
            if self._before_modify(fd, events):
                poller.register(fd, self._mask(events))     # was parked
            elif old & EXCLUSIVE:
                # The kernel refuses EPOLL_CTL_MOD of an exclusive
                # registration (epoll_ctl(2), EINVAL): delete and add again.
                # The add re-checks readiness, so no edge is lost.
                poller.unregister(fd)
                poller.register(fd, self._mask(events))
            else:
                poller.modify(fd, self._mask(events))

        def unregister(self, fd: int) -> None:
            if self._keys.pop(fd, None) is None or self._poller is None:
                return
            if self._unregistered_fd(fd):
                try:
                    self._poller.unregister(fd)
                except OSError:
                    # Closed, or the number names another file now: if a
                    # dup keeps the old file alive, it is an orphan.
                    self._del_failed(fd)

        def _select(self, timeout: float | None = None,
                    limit: int | None = None) -> Ready:
            poller = self._poller
            if poller is None:
                raise closed_error()
            ms = _poll_timeout_ms(timeout)
            # Orphans (_orphans.py) may take slots too: room for them.
            size = max(len(self._keys) + len(self._suspects), 1)
            # No "except InterruptedError" (the stdlib has one): since PEP
            # 475 the call retries EINTR itself, so an InterruptedError
            # here was raised by a signal handler and must propagate.
            waiting = self._waiting
            waiting.append(None)
            try:
                fd_event_list = poller.poll(
                    -1 if ms < 0 else ms * 1e-3, min(limit or size, size))
            finally:
                waiting.pop()
            ready = self._results(fd_event_list)
            if self._oneshot_seen or self._suspects:    # rare: _orphans.py
                self._after_wait(ready, [fd for fd, _ in fd_event_list])
            return ready

        def fileno(self) -> int:
            if self._poller is None:
                raise closed_error()
            return self._poller.fileno()

        def _after_fork(self) -> None:
            # A fresh epoll instance with the same registrations, at the
            # same fd number: the inherited one is the parent's (see
            # csrc/epoll_core.c).
            super()._after_fork()
            self._waiting = []
            if self._poller is not None:
                self._rebuild(verify=False)


if hasattr(select, "poll"):       # not on Windows
    class PollCore(_PollLikeCore):
        """select.poll underneath; ONESHOT emulated exactly: an fd reported
        once is taken out of the poll set until modify() re-arms it."""

        _IN, _OUT = select.POLLIN, select.POLLOUT
        _PRI = select.POLLPRI
        # Linux only; PyPy's select module lacks it: the kernel ABI's value.
        _RDHUP = getattr(select, "POLLRDHUP",
                         0x2000 if sys.platform.startswith("linux") else 0)
        _BITS = ((EVENT_READ, select.POLLIN), (EVENT_WRITE, select.POLLOUT),
                 (EVENT_PRIORITY, select.POLLPRI), (EVENT_RDHUP, _RDHUP))
        _TO_READY = ReadinessMap(select.POLLIN, select.POLLOUT, _PRI, _RDHUP)
        SUPPORTED: ClassVar[int] = (
            EVENT_READ | EVENT_WRITE | EVENT_PRIORITY | ONESHOT
            | (EVENT_RDHUP if _RDHUP else 0))
        _poller: select.poll | None

        def __init__(self) -> None:
            super().__init__()
            self._disarmed: set[int] = set()

        @staticmethod
        def _new_poller() -> select.poll:
            return select.poll()

        def _kernel_modify(self, fd: int, old: int, events: int) -> None:
            self._disarmed.discard(fd)
            # select.poll.register adds or changes: it re-arms too.
            self._poller.register(  # type: ignore[union-attr]  # open
                fd, self._mask(events))

        def unregister(self, fd: int) -> None:
            self._disarmed.discard(fd)
            super().unregister(fd)

        def _after_fork(self) -> None:
            # select.poll refuses a second concurrent poll(): one that
            # another thread had under way at the fork would block this
            # object forever in the child.  A new one, same registrations.
            super()._after_fork()
            if self._poller is None:
                return
            self._poller = select.poll()
            for fd, key in self._keys.items():
                if fd not in self._disarmed:
                    self._poller.register(fd, self._mask(key.events))

        def _select(self, timeout: float | None = None,
                    limit: int | None = None) -> Ready:
            if self._poller is None:
                raise closed_error()
            ms = _poll_timeout_ms(timeout)
            fd_event_list = self._poller.poll(None if ms < 0 else ms)
            ready = self._results(fd_event_list)
            if limit:
                ready = self._take(ready, limit)
            for key, _ in ready:
                if key.events & ONESHOT:
                    self._poller.unregister(key.fd)
                    self._disarmed.add(key.fd)
            return ready


# CPython converts select()'s timeout to int64 nanoseconds.
_SELECT_TIMEOUT_LIMIT = 2 ** 63 / 1e9

if sys.platform == "win32":
    def _select_fds(readers: set[int], writers: set[int], urgent: set[int],
                    timeout: float | None
                    ) -> tuple[list[int], list[int], list[int]]:
        # Windows reports a failed connect() in the exceptional set only.
        r, w, x = select.select(readers, writers, writers | urgent, timeout)
        return r, w + [fd for fd in x if fd in writers], \
            [fd for fd in x if fd in urgent]
else:
    def _select_fds(readers: set[int], writers: set[int], urgent: set[int],
                    timeout: float | None
                    ) -> tuple[list[int], list[int], list[int]]:
        return select.select(readers, writers, urgent, timeout)


class SelectCore(DispatchMixin):
    """select.select underneath; EVENT_PRIORITY is the exceptional set,
    ONESHOT is emulated exactly (an fd reported once leaves the sets until
    modify() re-arms it)."""

    SUPPORTED: ClassVar[int] = (EVENT_READ | EVENT_WRITE | EVENT_PRIORITY
                                | ONESHOT)

    def __init__(self) -> None:
        self._keys = {}
        self._readers: set[int] = set()
        self._writers: set[int] = set()
        self._urgent: set[int] = set()
        self._oneshot: set[int] = set()     # ONESHOT ones, armed or not
        self._closed = False

    def register(self, fd: int, events: int, key: SelectorKey) -> None:
        if self._closed:
            raise closed_error()
        self._keys[fd] = key
        self._set_interest(fd, events)

    def _set_interest(self, fd: int, events: int) -> None:
        for fds, bit in ((self._readers, EVENT_READ),
                         (self._writers, EVENT_WRITE),
                         (self._urgent, EVENT_PRIORITY),
                         (self._oneshot, ONESHOT)):
            if events & bit:
                fds.add(fd)
            else:
                fds.discard(fd)

    def modify(self, fd: int, events: int, key: SelectorKey) -> None:
        if self._closed:
            raise closed_error()
        self._keys[fd] = key
        self._set_interest(fd, events)

    def unregister(self, fd: int) -> None:
        self._keys.pop(fd, None)
        self._set_interest(fd, 0)

    @property
    def closed(self) -> bool:
        return self._closed

    def _select(self, timeout: float | None = None,
                limit: int | None = None) -> Ready:
        if self._closed:
            raise closed_error()
        if timeout is not None:
            # CPython's select.select rules, checked here so that every
            # interpreter gives them (PyPy's select() accepts NaN and
            # answers EINVAL for a huge timeout).
            if timeout != timeout:
                raise ValueError("Invalid value NaN (not a number)")
            timeout = max(timeout, 0)
            if timeout >= _SELECT_TIMEOUT_LIMIT:
                raise OverflowError("timeout is too large")
        r: list[int] | set[int]     # each list becomes a set below
        w: list[int] | set[int]
        x: list[int] | set[int] | tuple[()]
        try:
            r, w, x = _select_fds(self._readers, self._writers, self._urgent,
                                  timeout)
        except RuntimeError as exc:
            # select.select turns each set into a list; a GC finalizer run
            # by an allocation in between may unregister an fd: "Set changed
            # size during iteration" (the stdlib's SelectSelector raises
            # it).  It fails before the wait, so nothing is lost: wait on
            # private copies.  A signal handler's RuntimeError propagates.
            if "changed size during iteration" not in str(exc):
                raise
            r, w, x = _select_fds(set(self._readers), set(self._writers),
                                  set(self._urgent), timeout)
        r = set(r)
        w = set(w)
        x = set(x) if x else ()     # urgent data is rare: skip the work
        ready: Ready = []
        append = ready.append
        keys = self._keys
        for fd in (r | w | x) if x else (r | w):
            key = keys.get(fd)
            if key is None:
                continue
            events = EVENT_READ if fd in r else 0
            if fd in w:
                events |= EVENT_WRITE
            if x and fd in x:
                events |= EVENT_PRIORITY
            events &= key.events
            if events:      # 0: the interest changed during the wait
                append((key, events))
        if limit:
            ready = self._take(ready, limit)
        if self._oneshot:
            for key, _ in ready:
                if key.events & ONESHOT:
                    # Disarmed until modify(); still a ONESHOT registration.
                    self._set_interest(key.fd, ONESHOT)
        return ready

    def close(self) -> None:
        self._closed = True     # first, as in _PollLikeCore.close
        self._keys.clear()
        self._readers.clear()
        self._writers.clear()
        self._urgent.clear()
        self._oneshot.clear()
