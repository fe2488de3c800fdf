"""The kqueue core (macOS, the BSDs), over a ``KqueueKernel``: the stdlib's
``select.kqueue`` (``_kernel_stdlib``), on every tier -- the native and cffi
tiers have no kqueue code of their own, so their ``KqueueSelector`` is this
Python core too.

The mapping.  EVENT_READ is an EVFILT_READ knote, EVENT_WRITE an
EVFILT_WRITE knote, one per filter as the stdlib's ``KqueueSelector``; EDGE
is EV_CLEAR on each.  ONESHOT is EV_DISPATCH on each (the kernel disables a
knote as it delivers it); one event disarms the whole registration, as on
epoll, so ``_kernel_disarm`` disables the other knote.  EVENT_PRIORITY
(EVFILT_EXCEPT/NOTE_OOB is not in ``select``), EVENT_RDHUP (EV_EOF comes
on the READ knote only, which would wake a RDHUP-only registration for every
byte) and EXCLUSIVE (no kqueue equivalent) are refused.

modify() adds every wanted knote and deletes the others, in one kevent()
call (none if only the data changed).  The kernel keeps a knote's
EV_CLEAR/EV_DISPATCH from its creation: EV_ADD on an existing knote changes
neither (FreeBSD's and xnu's kqueue_register).  So a modify() that changes
them, re-arms a ONESHOT or re-checks an EDGE deletes the knote first: a new
knote is evaluated at once on every kqueue kernel, so what is ready is
reported.

Where this differs from the stdlib's ``KqueueSelector`` on purpose:

- an fd ready for read and write is one ``(key, READ|WRITE)``, as on every
  other selector, not one pair per filter;
- a registration that fails half-way (READ added, WRITE refused) leaves no
  knote behind;
- after fork() the child gets a fresh kqueue with the registrations (kqueues
  are not inherited: the stdlib's selector is dead in the child).
"""

from __future__ import annotations

from errno import ENOENT
from operator import index
from selectors import EVENT_READ, EVENT_WRITE
from time import monotonic

from ._checks import closed_error
from ._flags import EDGE, ONESHOT
from ._pycore import PyCore

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, ClassVar

    from ._types import KqueueKernel, Ready

_BOTH = EVENT_READ | EVENT_WRITE
# The longest wait PyCore takes (INT_MAX ms, 24.8 days); kevent() takes
# up to 2**63 ns, as the stdlib's selector: longer ones wait in slices.
_LONGEST = 2147483.0


def check_timeout(timeout: float | None) -> float | None:
    """The stdlib's ``KqueueSelector.select()`` rules (``max(timeout, 0)``),
    then ``select.kqueue.control()``'s: a time it cannot convert to int64
    nanoseconds (NaN, inf, 2**100, a Decimal) is a TypeError there."""
    if timeout is None:
        return None
    timeout = max(timeout, 0)
    try:
        if isinstance(timeout, float):
            ok = timeout * 1e9 <= 2.0 ** 63    # (False for NaN)
        else:
            timeout = index(timeout)
            ok = timeout * 10 ** 9 < 2 ** 63
    except TypeError:
        ok = False
    if not ok:
        raise TypeError("timeout argument must be a number or None, got "
                        + type(timeout).__name__)
    return timeout


class KqueueCore(PyCore):
    """kqueue(2): a kqueue plus the fd -> key table."""

    SUPPORTED: ClassVar[int] = EVENT_READ | EVENT_WRITE | EDGE | ONESHOT
    # The stdlib's KqueueSelector modifies by unregister() + register()
    # (_BaseSelectorImpl.modify): the same key and map order.
    REREGISTER_ON_MODIFY: ClassVar[bool] = True
    # Its register() on a closed selector makes the kevent first, whose
    # ident (a uintptr_t) refuses an fd above FD_MAX: OverflowError.
    FD_RANGE_BEFORE_CLOSED: ClassVar[bool] = True
    FD_MAX: ClassVar[int] = 2 ** 64 - 1
    _Kernel: ClassVar[type[KqueueKernel]]   # the one in _kernel_stdlib

    def __init__(self) -> None:
        super().__init__()
        self._kernel = self._Kernel()
        # fd -> the events its knotes were made with: what unregister()
        # deletes (PyCore has dropped the key by then), and after fork()
        # what the new kqueue gets.
        self._knotes: dict[int, int] = {}
        # The fds with both knotes: len(_knotes) + len(_both) is the batch
        # that takes every event.  Not a running count: "+=" is a read and a
        # write, and a thread switch or a signal handler that registers in
        # between loses an update (a batch too small: select(0) left four
        # ready fds out, CI 2026-11-30, four threads registering at once).
        # A dict's and a set's own updates are atomic.
        self._both: set[int] = set()
        self._limited = False   # the last wait had a batch below the knotes

    def fileno(self) -> int:
        if self._closed:
            raise closed_error()
        return self._kernel.fd

    # -- the kevent changes -----------------------------------------------

    def _flags(self, events: int) -> int:
        kernel = self._Kernel
        return ((kernel.CLEAR if events & EDGE else 0)
                | (kernel.DISPATCH if events & ONESHOT else 0))

    def _adds(self, fd: int, events: int, extra: int = 0
              ) -> list[tuple[int, int, int]]:
        kernel = self._Kernel
        flags = kernel.ADD | self._flags(events) | extra
        return [(fd, filt, flags) for bit, filt in
                ((EVENT_READ, kernel.READ), (EVENT_WRITE, kernel.WRITE))
                if events & bit]

    def _deletes(self, fd: int, events: int) -> list[tuple[int, int, int]]:
        kernel = self._Kernel
        return [(fd, filt, kernel.DELETE) for bit, filt in
                ((EVENT_READ, kernel.READ), (EVENT_WRITE, kernel.WRITE))
                if events & bit]

    def _note(self, fd: int, events: int) -> None:
        """Record the knotes fd has now (0: none)."""
        if events:
            self._knotes[fd] = int(events)     # (see _kernel_modify)
        else:
            self._knotes.pop(fd, None)
        if events & _BOTH == _BOTH:
            self._both.add(fd)
        else:
            self._both.discard(fd)

    def _kernel_register(self, fd: int, events: int) -> None:
        # The fd goes to select.kevent() as given, as in the stdlib: an fd
        # above INT_MAX is the kernel's EBADF, a bool no warning.
        try:
            self._kernel.change(self._adds(fd, events))
        except BaseException:
            # READ added, WRITE refused: take READ back (the stdlib leaves
            # it in the kqueue).
            self._kernel.discard(self._deletes(fd, events))
            raise
        self._note(fd, events)

    def _kernel_modify(self, fd: int, old: int, events: int,
                       rearm: bool) -> None:
        events = int(events)    # True is EVENT_READ; ~True is deprecated
        had = self._knotes.get(fd, 0)
        touch = (self._flags(had) != self._flags(events)
                 or events & (EDGE | ONESHOT))
        if events == had and not touch:
            return      # the data only: no kernel call, as the stdlib
        # Every wanted knote is added (again: EV_ADD of an existing one
        # changes nothing, and if the fd was closed and its number reused,
        # the new file gets them, as the stdlib's re-register does); the
        # others are deleted, and those made again first (touch).
        drop = had & _BOTH & (~0 if touch else ~events)
        deletes = self._deletes(fd, drop)
        adds = self._adds(fd, events)
        try:
            try:
                self._kernel.change(deletes + adds)
            except OSError as exc:
                # A knote gone already (ENOENT: the fd was closed, and its
                # number reused): the stdlib's modify (unregister, which
                # ignores that, + register) succeeds; so do we.
                if not deletes or exc.errno != ENOENT:
                    raise
                self._kernel.discard(deletes)
                self._kernel.change(adds)
        except BaseException:
            # Whatever the kernel applied, unregister() (which the selector
            # calls next) must delete every knote fd may have.
            self._note(fd, (had | events) & _BOTH)
            raise
        self._note(fd, events)

    def _kernel_unregister(self, fd: int, disarmed: bool) -> None:
        # Errors ignored, as the stdlib: a closed fd's knotes are gone.
        events = self._knotes.get(fd, 0)
        self._note(fd, 0)
        self._kernel.discard(self._deletes(fd, events))

    def _kernel_disarm(self, fd: int) -> None:
        # The kernel disabled the knote it delivered (EV_DISPATCH); the
        # other one, if any, is disabled here.  (A thread waiting on this
        # kqueue meanwhile may get the other knote's event: _collect drops
        # it, as the fd is already marked disarmed.)
        events = self._knotes.get(fd, 0)
        if events & _BOTH == _BOTH:
            kernel = self._Kernel
            self._kernel.discard([(fd, kernel.READ, kernel.DISABLE),
                                  (fd, kernel.WRITE, kernel.DISABLE)])

    def _reconcile(self, fd: int) -> None:
        if self._closed:
            return
        key = self._keys.get(fd)
        kernel = self._kernel
        kernel.discard(self._deletes(fd, _BOTH))
        self._note(fd, 0)
        if key is not None and fd not in self._disarmed:
            kernel.discard(self._adds(fd, key.events))
            self._note(fd, key.events)

    def _kernel_close(self) -> None:
        if self._nwaiting:
            self._kernel.kick()     # the waiters raise the closed error
        self._knotes.clear()
        self._both.clear()

    def _released(self) -> None:
        super()._released()
        if self._nwaiting == 0:
            self._kernel.close()    # (idempotent: see PyCore.close)

    # -- the wait -------------------------------------------------------------

    def _select(self, timeout: float | None, limit: int | None) -> Ready:
        timeout = check_timeout(timeout)
        if timeout is None or timeout <= _LONGEST:
            return super()._select(timeout, limit)
        end = monotonic() + timeout
        while True:
            left = end - monotonic()
            ready = super()._select(min(left, _LONGEST), limit)
            if ready or left <= _LONGEST:
                return ready

    def _kernel_wait(self, limit: int | None, ms: int, ns: int
                     ) -> Iterable[tuple[int, int]] | None:
        # Room for every knote (the stdlib's 3.12+ batch); a smaller
        # maxevents is the kernel's batch, which rotates, so nobody starves.
        size = len(self._knotes) + len(self._both) or 1
        self._limited = bool(limit and limit < size)
        if limit and limit < size:
            size = limit
        # The exact time: ns is the timeout rounded up to nanoseconds.
        timeout = None if ms < 0 else ns * 1e-9
        return self._kernel.wait(size, timeout)

    def _collect(self, pairs: Iterable[Any], limit: int | None) -> Ready:
        """(fd, EVENT_READ or EVENT_WRITE) per knote -> one (key, events)
        per fd, in the order of each fd's first knote."""
        ready: Ready = []
        where: dict[int, int] = {}
        keys_get = self._keys.get
        disarmed = self._disarmed
        n = 0
        for fd, bit in pairs:
            n += 1
            key = keys_get(fd)
            if key is None:     # our kick, or unregistered meanwhile
                continue
            events = bit & key.events
            if not events or fd in disarmed:
                continue        # interest changed; or see _kernel_disarm
            pos = where.get(fd)
            if pos is None:
                where[fd] = len(ready)
                ready.append((key, events))
            else:
                ready[pos] = (key, ready[pos][1] | events)
        if self._limited and n >= (limit or 0):
            self._full_batches += 1
        return ready

    def _after_fork(self) -> None:
        # The child has no kqueue (fork(2) does not pass it on): a new one
        # with the registrations, the disarmed ONESHOTs added disabled so
        # that a modify() re-arms them as it does any other.
        super()._after_fork()
        if self._closed:
            return
        kernel = self._Kernel
        changes: list[tuple[int, int, int]] = []
        for fd, events in self._knotes.items():
            changes += self._adds(
                fd, events, kernel.DISABLE if fd in self._disarmed else 0)
        self._kernel.renew(changes)
