"""The select() core of every tier, over the stdlib's ``select.select``:
select(2) is O(max fd) and capped at FD_SETSIZE, so nobody should want it
fast, and ``select.select`` gives the stdlib's very errors.  EVENT_PRIORITY
is the exceptional set; a disarmed ONESHOT fd leaves the sets.
"""

from __future__ import annotations

import select
import sys
from selectors import EVENT_READ, EVENT_WRITE

from ._flags import EVENT_PRIORITY, ONESHOT
from ._pycore import PyCore
from ._timeouts import select_timeout
from ._waker import Waker

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, ClassVar

    from ._types import Ready

_WINDOWS = sys.platform == "win32"     # (no waker there: see _waker)
_FD_SETSIZE = 1024      # Linux's and macOS's; select() refuses fds above


def _select_fds(readers: set[int], writers: set[int], urgent: set[int],
                timeout: float | None
                ) -> tuple[list[int], list[int], list[int]]:
    if not _WINDOWS:
        return select.select(readers, writers, urgent, timeout)
    # Windows reports a failed connect() in the exceptional set only.
    r, w, x = select.select(readers, writers, writers | urgent, timeout)
    return r, w + [fd for fd in x if fd in writers], \
        [fd for fd in x if fd in urgent]


def _select_waker() -> Waker | None:
    """A waker whose fd select() accepts, or None (FD_SETSIZE fds open:
    then a wait ends when it returns by itself, rather than fail with
    "filedescriptor out of range")."""
    waker = Waker()
    if waker.fd < _FD_SETSIZE:
        return waker
    waker.close()
    return None


class SelectCore(PyCore):
    """select(2): three fd sets plus the fd -> key table."""

    SUPPORTED: ClassVar[int] = (EVENT_READ | EVENT_WRITE | EVENT_PRIORITY
                                | ONESHOT)
    REREGISTER_ON_MODIFY: ClassVar[bool] = True
    _no_waker = False       # _select_waker() could not make one

    def __init__(self) -> None:
        super().__init__()
        self._readers: set[int] = set()
        self._writers: set[int] = set()
        self._urgent: set[int] = set()

    def _kernel_register(self, fd: int, events: int) -> None:
        self._set_interest(fd, events)

    def _kernel_modify(self, fd: int, old: int, events: int,
                       rearm: bool) -> None:
        if events != old:
            # The stdlib's modify() is unregister() + register(): the same
            # set operations keep the sets, and so the order of the results
            # (that of the sets), the same as its.
            self._set_interest(fd, 0)
        self._set_interest(fd, events)

    def _kernel_unregister(self, fd: int, disarmed: bool) -> None:
        self._set_interest(fd, 0)

    def _kernel_disarm(self, fd: int) -> None:
        self._set_interest(fd, 0)

    def _reconcile(self, fd: int) -> None:
        key = self._keys.get(fd)
        self._set_interest(fd, 0 if key is None or fd in self._disarmed
                           else key.events)

    def _kernel_close(self) -> None:
        for fds in (self._readers, self._writers, self._urgent):
            fds.clear()

    def _set_interest(self, fd: int, events: int) -> None:
        for fds, bit in ((self._readers, EVENT_READ),
                         (self._writers, EVENT_WRITE),
                         (self._urgent, EVENT_PRIORITY)):
            if events & bit:
                fds.add(fd)
            else:
                fds.discard(fd)

    def _kernel_wait(self, limit: int | None, ms: int, ns: int
                     ) -> tuple[list[int], list[int], list[int]]:
        # ms and ns are the shared rounding; select() takes the seconds
        # themselves (a timeval), so it gets the stdlib's own value.
        timeout = self._timeout
        readers = self._readers
        if ms and not _WINDOWS and not self._no_waker:
            waker = self._waker
            if waker is None:
                mine = _select_waker()
                waker = self._new_waker(mine)
                if mine is not None and mine is not waker:
                    mine.close()
                self._no_waker = waker is None
                if self._closed:    # before the waker was there to wake us
                    return [], [], []
            if waker is not None:
                r, w, x = self._select_sets(readers | {waker.fd}, timeout)
                if r:
                    # The stdlib's order: select() lists the ready fds in
                    # the order of the set it was given, the waker's not.
                    ready = set(r)
                    r = [fd for fd in list(readers) if fd in ready]
                return r, w, x
        return self._select_sets(readers, timeout)

    def _select_sets(self, readers: set[int], timeout: float | None
                     ) -> tuple[list[int], list[int], list[int]]:
        try:
            return _select_fds(readers, self._writers, self._urgent, timeout)
        except RuntimeError as exc:
            # select.select turns each set into a list; a GC finalizer run
            # by an allocation in between may unregister an fd: "Set changed
            # size during iteration" (the stdlib's SelectSelector raises
            # it).  It fails before the wait, so nothing is lost: wait on
            # private copies.  A signal handler's RuntimeError propagates.
            if "changed size during iteration" not in str(exc):
                raise
            return _select_fds(set(readers), set(self._writers),
                               set(self._urgent), timeout)

    def _select(self, timeout: float | None, limit: int | None) -> Ready:
        self._timeout = select_timeout(timeout)
        return super()._select(timeout, limit)

    def _collect(self, pairs: Iterable[Any], limit: int | None) -> Ready:
        # (_kernel_wait's three lists)
        lists: tuple[list[int], list[int], list[int]] = \
            pairs  # type: ignore[assignment]
        r = set(lists[0])
        w = set(lists[1])
        x: set[int] | tuple[()] = set(lists[2]) if lists[2] else ()
        ready: Ready = []
        append = ready.append
        keys_get = self._keys.get
        # The stdlib's order: that of the set of ready fds.
        for fd in (r | w | x) if x else (r | w):
            key = keys_get(fd)
            if key is None:     # our waker, or unregistered meanwhile
                continue
            events = EVENT_READ if fd in r else 0
            if fd in w:
                events |= EVENT_WRITE
            if x and fd in x:
                events |= EVENT_PRIORITY
            events &= key.events
            if events:      # 0: the interest changed during the wait
                append((key, events))
        return self._take(ready, limit) if limit else ready

