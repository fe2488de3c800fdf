"""The core of the Python tiers (pure and cffi): one implementation of
``_types.Core``, over a kernel layer per tier (``_kernel_stdlib``: the
stdlib's ``select`` module; ``_kernel_cffi``: the cffi binding).

This base does what every Python core does alike: the fd -> key table,
select() and dispatch(), the batch limit, the wait with its EINTR retry,
the result loop, the statistics.  ``_epoll_core``, ``_poll_core`` and
``_select_core`` add what each kernel API needs.  A kernel layer's wait()
returns ``(fd, revents)`` pairs, or None after EINTR once the signal
handlers have run: the core re-checks "closed" and retries with the time
left.  (The stdlib's calls retry EINTR themselves: a close() from a
handler ends those waits through ``_waker``.)

Threads: several may wait, register and close at once, with no lock
around the table.  What they share is changed only by single operations
that are atomic on every interpreter (a dict's setdefault/pop, a set's
add/discard, a list's append/pop/remove, next() of a counter), never by a
read then a write ("n += 1", "if x is None: x = y"): PyPy and CPython 3.9
switch threads, and run signal handlers, between any two bytecodes, and
there such a count loses updates (tests/test_threads.py: the waiters'
count drifted to -2 on PyPy, and close() then left the kernel fd and the
waker open).  The statistics are the exception (see stats()).
"""

from __future__ import annotations

import itertools
from threading import get_ident
from time import monotonic

from ._checks import check_maxevents, closed_error
from ._flags import ONESHOT
from ._timeouts import remaining, timeout_ms, timeout_ns

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from selectors import SelectorKey
    from typing import Any, ClassVar

    from ._flags import ReadinessMap
    from ._types import Ready
    from ._waker import Waker

STAT_NAMES = ("waits", "empty_waits", "events", "callbacks", "max_batch",
              "full_batches", "rebuilds", "idle_time")


class _Claim:
    """A dispatch() call's token: equal to itself only (list.remove)."""

    __slots__ = ("thread",)

    def __init__(self) -> None:
        self.thread = get_ident()


class PyCore:
    """The shared part of the Python cores (see the module docstring)."""

    # The behaviour each core class declares: _types.Core.
    SUPPORTED: ClassVar[int] = 0
    REREGISTER_ON_MODIFY: ClassVar[bool] = False
    FD_RANGE_BEFORE_CLOSED: ClassVar[bool] = False

    _ready_bits: ReadinessMap   # the kernel's revents -> our readiness

    _keys: dict[int, SelectorKey]       # fd -> current key
    _waits: int             # the statistics: see stats()
    _empty_waits: int
    _events: int
    _callbacks: int
    _max_batch: int
    _full_batches: int
    _rebuilds: int
    _idle_time: float
    # The waker (see the module docstring): installed in _wakers["waker"]
    # (setdefault: one wins); _waker is its copy for the waits to read.
    _waker: Waker | None = None

    def __init__(self) -> None:
        self._closed = False        # set first by close()
        self._keys = {}
        self._maxevents: int | None = None  # default batch; None: all ready
        self._rotor = 0             # where the next limited batch starts
        # The dispatch() calls under way, in the order they came: the first
        # one holds the claim (dispatch).
        self._dispatchers: list[_Claim] = []
        self._pending: Sequence[tuple[SelectorKey, int]] = ()  # its batch
        self._pending_pos = 0       # first event of it not yet delivered
        self._waiting: list[None] = []      # one item per wait under way
        self._wakers: dict[str, Waker | None] = {}
        self._disarmed: set[int] = set()    # see "ONESHOT" below
        self._oneshot = False       # a ONESHOT was ever registered
        # Numbers ONESHOT arms and waits; fd -> its last arm's number.
        self._clock = itertools.count(1)
        self._armed_at: dict[int, int] = {}
        self._reset_stats()

    if TYPE_CHECKING:
        # What each core provides.  _kernel_modify() is called whatever
        # changed (*old*: the events before; *rearm*: a disarmed ONESHOT);
        # _kernel_unregister() never raises for an fd closed since;
        # _kernel_disarm(): see ONESHOT below; _kernel_wait() waits for at
        # most *limit* events (poll and select: _collect applies it) and
        # returns (fd, revents) pairs or None after EINTR; _collect() makes
        # the batch of what _kernel_wait() returned; _reconcile() makes the
        # kernel's registration of fd what the table says, whatever it was
        # (never raises).
        def _kernel_register(self, fd: int, events: int) -> None: ...
        def _kernel_modify(self, fd: int, old: int, events: int,
                           rearm: bool) -> None: ...
        def _kernel_unregister(self, fd: int, disarmed: bool) -> None: ...
        def _kernel_disarm(self, fd: int) -> None: ...
        def _reconcile(self, fd: int) -> None: ...
        def _kernel_close(self) -> None: ...
        def _kernel_wait(self, limit: int | None, ms: int, ns: int
                         ) -> Iterable[Any] | None: ...
        def _collect(self, pairs: Iterable[Any], limit: int | None
                     ) -> Ready: ...

    # -- the table ------------------------------------------------------------
    #
    # The table (``keys``) is the selector's map too: one truth, so select()
    # can never report a key the map does not hold.  The key is stored
    # *before* the kernel call: the call may release the GIL, and a thread
    # waiting on this selector may get the fd's first event at once -- with
    # EDGE or ONESHOT the only one it will ever get -- and must find the new
    # key.  When anything raises in between -- the kernel, or a signal
    # handler at any bytecode -- the table is rolled back and the kernel
    # made to match it (_reconcile).  A key dropped from the table is held
    # until the core is consistent: its last reference may run a finalizer
    # that uses the core.
    #
    # ONESHOT, the same on every Python core: a reported ONESHOT fd is
    # disarmed (by epoll's kernel; a poll or select core takes it out of
    # its kernel set: _kernel_disarm) until a modify() -- any -- re-arms it.

    @property
    def keys(self) -> dict[int, SelectorKey]:
        return self._keys

    def register(self, fd: int, events: int, key: SelectorKey) -> None:
        if self._closed:
            raise closed_error()
        keys = self._keys
        try:
            if keys.setdefault(fd, key) is not key:     # atomic: threads
                raise KeyError("{!r} (FD {}) is already registered".format(
                    key.fileobj, fd))
            if events & ONESHOT:
                self._armed(fd)
            self._kernel_register(fd, events)
        except BaseException:
            if keys.get(fd) is key:
                del keys[fd]
                self._reconcile(fd)
            raise

    def modify(self, fd: int, events: int, key: SelectorKey) -> None:
        if self._closed:
            raise closed_error()
        keys = self._keys
        disarmed = self._disarmed
        old = keys[fd]
        rearm = fd in disarmed
        try:
            if self.REREGISTER_ON_MODIFY and events != old.events:
                del keys[fd]    # the stdlib's select: to the end of the map
            keys[fd] = key
            disarmed.discard(fd)
            if events & ONESHOT:
                self._armed(fd)
            self._kernel_modify(fd, old.events, events, rearm)
        except OSError:
            # The kernel refused: the stdlib forgets the registration.
            keys.pop(fd, None)
            self._reconcile(fd)
            raise
        except BaseException:
            keys[fd] = old
            if rearm:
                disarmed.add(fd)
            self._reconcile(fd)
            raise

    def unregister(self, fd: int) -> SelectorKey | None:
        """Returns the key removed, None if fd was not registered."""
        keys = self._keys
        if fd not in keys:
            return None
        try:
            key = keys.pop(fd)
            disarmed = fd in self._disarmed
            self._disarmed.discard(fd)
            self._armed_at.pop(fd, None)
            if not self._closed:
                self._kernel_unregister(fd, disarmed)
        except BaseException:
            self._reconcile(fd)
            raise
        return key

    def close(self) -> None:
        # Closed first: dropping the keys may run finalizers that use this
        # core again, and they must see it closed.  Threads waiting in it
        # are woken (_waker; epoll: kicked) and raise the closed error; what
        # they wait on is released by the last one out (_released): closed
        # now, its fd number could be reused under their wait.  Each step
        # is tried whatever the one before raised, and each is idempotent:
        # a second close() completes one that a signal handler's exception
        # (KeyboardInterrupt) cut short, instead of returning early and
        # leaving the kernel fd or the waker open (tests/test_async_
        # exceptions.py counts the fds).
        self._closed = True
        try:
            waker = self._wakers.get("waker")
            if waker is not None:
                waker.wake()
            self._kernel_close()
        finally:
            try:
                self._released()
            finally:
                self._disarmed.clear()
                self._keys.clear()

    def _armed(self, fd: int) -> None:
        """A ONESHOT registration of fd is armed (registered, modified)."""
        self._oneshot = True
        self._armed_at[fd] = next(self._clock)

    def _after_wait(self) -> None:
        """Once a batch is made and its ONESHOTs noted (epoll: rebuild)."""

    def _after_fork_readd(self) -> None:
        """The second step in a forked child (epoll: the registrations)."""

    def _reattach(self, fd: int) -> None:
        """fd's kernel object was replaced (epoll: watch the new one)."""

    @property
    def closed(self) -> bool:
        return self._closed

    # -- maxevents ----------------------------------------------------------

    @property
    def maxevents(self) -> int | None:
        return self._maxevents

    @maxevents.setter
    def maxevents(self, value: int | None) -> None:
        self._maxevents = check_maxevents(value)

    def _limit(self, maxevents: int | None) -> int | None:
        if maxevents is None:
            return self._maxevents
        return check_maxevents(maxevents)

    def _take(self, ready: Ready, limit: int | None) -> Ready:
        """At most *limit* of *ready*, starting where the previous limited
        batch stopped: the ones left out are still ready (level) and come
        first next time, so nobody starves (poll and select only; the
        kernel does this for epoll)."""
        n = len(ready)
        if not limit or n <= limit:
            return ready
        self._full_batches += 1
        start = self._rotor % n
        self._rotor = start + limit
        return (ready[start:] + ready[:start])[:limit]

    # -- the wait -------------------------------------------------------------

    def _results(self, pairs: Iterable[tuple[int, int]]) -> Ready:
        """(fd, revents) -> [(key, events)]: each event masked by its fd's
        *current* interest, read after the wait; fds without a key (our
        waker, or unregistered meanwhile) are skipped."""
        ready: Ready = []
        append = ready.append
        keys_get = self._keys.get
        bits = self._ready_bits
        for fd, revents in pairs:
            key = keys_get(fd)
            if key is not None:
                events = bits[revents] & key.events
                if events:      # 0: the interest changed after the wait
                    append((key, events))
        return ready

    def _select(self, timeout: float | None, limit: int | None) -> Ready:
        """Wait once (EINTR retried with the remaining time, "closed"
        re-checked after every interruption) and return the batch."""
        if self._closed:
            raise closed_error()
        ms = timeout_ms(timeout)
        ns = timeout_ns(timeout, ms)
        # A ONESHOT armed before this number fired in this wait; one armed
        # after may have been armed after the kernel's report.
        stamp = next(self._clock) if self._oneshot else 0
        start = monotonic() if ms else 0.0
        end = start + ms * 1e-3     # (ms > 0: a deadline)
        pairs: Iterable[Any] | None
        waiting = self._waiting     # (a fork replaces it: _after_fork)
        try:
            # Inside the try: an exception right after the call (a signal
            # handler's) must not leave the count up.
            waiting.append(None)
            while True:
                try:
                    pairs = self._kernel_wait(limit, ms, ns)
                except OSError:
                    # Closed meanwhile -- by a signal handler, another
                    # thread, a finalizer run by an allocation: e.g. EBADF
                    # from the stdlib's epoll, which retries on its own.
                    if self._closed:
                        raise closed_error() from None
                    raise
                if pairs is not None:
                    break
                # EINTR, the signal handlers have run (had one raised, we
                # would not be here): closed by one of them?
                if self._closed:
                    raise closed_error()
                if ms > 0:
                    ms, ns = remaining(end)
                if ms == 0:
                    pairs = ()
                    break
        finally:
            if waiting:     # (empty: the append never ran)
                waiting.pop()
            if self._closed:
                self._released()
        if self._closed:    # by a signal handler or another thread
            raise closed_error()
        ready = self._collect(pairs or (), limit)
        if self._oneshot:
            # Not one another thread armed during the wait: its modify()
            # may have come after the kernel's report (then it is armed).
            disarmed, armed_at = self._disarmed, self._armed_at
            for key, _ in ready:
                fd = key.fd
                if key.events & ONESHOT and armed_at.get(fd, 0) <= stamp:
                    disarmed.add(fd)
                    self._kernel_disarm(fd)
        self._after_wait()
        # The statistics (see stats()).
        self._waits += 1
        if start:
            self._idle_time += monotonic() - start
        n = len(ready)
        if n:
            self._events += n
            if n > self._max_batch:
                self._max_batch = n
        else:
            self._empty_waits += 1
        return ready

    @property
    def _nwaiting(self) -> int:
        """How many waits are under way (threads, and signal handlers
        waiting inside a wait of their thread)."""
        return len(self._waiting)

    def _new_waker(self, waker: Waker | None) -> Waker | None:
        """Install *waker* unless a thread waiting at the same time did
        first (setdefault: atomic); returns the one installed (the caller
        disposes of *waker* if it lost).  Threads waiting at once must wait
        with the same waker: close() wakes the one installed."""
        installed = self._wakers.setdefault("waker", waker)
        self._waker = installed
        return installed

    def _released(self) -> None:
        """A closed core, once no thread waits in it any more: close what
        waits used (the waker; epoll: the kernel fd)."""
        if self._waiting:
            return
        waker = self._wakers.pop("waker", None)
        self._waker = None
        if waker is not None:
            waker.close()

    # -- select() and dispatch() ------------------------------------------

    def select(self, timeout: float | None = None,
               maxevents: int | None = None) -> Ready:
        if self._dispatchers and self._dispatching_here():
            raise RuntimeError("select() called from a dispatch() callback "
                               "of the same selector")
        return self._select(timeout, self._limit(maxevents))

    def dispatch(self, timeout: float | None = None,
                 maxevents: int | None = None) -> int:
        if self._closed:
            raise closed_error()
        limit = self._limit(maxevents)
        # The claim: this call's token appended (atomic, where "if nobody
        # has it, take it" is not); the first token holds it, the others
        # raise.  Appended inside the try, and the finally's first call
        # removes it: an exception between two bytecodes (a signal
        # handler's) neither keeps a claim nor releases another call's.
        # (A call refused while the holder leaves is first for the moment
        # it takes to raise: a third one then is refused too, as it would
        # have been a moment earlier.)
        dispatchers = self._dispatchers
        token = _Claim()
        try:
            dispatchers.append(token)
            first = dispatchers[0]
            if first is not token:
                raise RuntimeError(
                    "dispatch() called from a dispatch() callback of the "
                    "same selector" if first.thread == get_ident() else
                    "dispatch() is already running in another thread on "
                    "this selector")
            # Events left by a callback that raised come first, without a
            # wait; if none of them is still valid, wait for a new batch.
            count = self._deliver_pending()
            if count == 0 and not self._closed:
                self._pending = ()      # (all delivered: nothing lost)
                self._pending_pos = 0
                self._pending = self._select(timeout, limit)
                count = self._deliver_pending()
        except BaseException:
            if self._closed:
                self._pending = ()
            raise
        else:
            # Delivered: do not keep the keys of the batch alive.
            self._pending = ()
            return count
        finally:
            try:
                dispatchers.remove(token)
            except ValueError:
                pass    # (not appended: raised before)

    def _dispatching_here(self) -> bool:
        """Whether a dispatch() of this thread holds the claim."""
        for token in self._dispatchers[:1]:     # (emptied meanwhile: none)
            return token.thread == get_ident()
        return False

    def _deliver_pending(self) -> int:
        """The dispatch loop: deliver the pending part of the batch.

        Every register/modify/unregister stores a *new* key, so "the key in
        the table is still the event's" is "nothing changed this fd since
        the wait" (the C cores' stamp check); the pending list's references
        keep those identities from being recycled.  close() empties the
        table: the events after a callback that closed fail the check.
        """
        pending = self._pending
        keys_get = self._keys.get
        pos = self._pending_pos
        end = len(pending)
        count = 0
        try:
            while pos < end and self._pending is pending:   # (fork)
                key, events = pending[pos]
                pos += 1
                if keys_get(key.fd) is key:     # unchanged since the wait
                    key.data(key, events)
                    count += 1
        finally:
            self._pending_pos = pos
            self._callbacks += count
        return count

    # -- statistics, fork -----------------------------------------------------

    # The counters are attributes, not a dict: a wait updates four or
    # five, and on PyPy string-keyed dict updates cost ~70 ns a wait (the
    # HTTP benchmark's cffi tier fell behind the stdlib's loop).  "+=" on
    # them may lose an update when threads wait at once (see the module
    # docstring): counts, not state anything depends on.

    def _reset_stats(self) -> None:
        self._waits = self._empty_waits = self._events = 0
        self._callbacks = self._max_batch = self._full_batches = 0
        self._rebuilds = 0
        self._idle_time = 0.0

    def stats(self, reset: bool = False) -> dict[str, Any]:
        values = {name: getattr(self, "_" + name) for name in STAT_NAMES}
        if reset:
            self._reset_stats()
        values["idle_time"] = float(values["idle_time"])
        return values

    def _after_fork(self) -> None:
        """In a child process only the forking thread exists: a dispatch()
        or a wait another thread had under way is gone, and the rest of a
        batch is the parent's to deliver (a fork from a callback).  Cores
        with a kernel object shared with the parent extend this, and
        _after_fork_readd()."""
        self._dispatchers = []
        self._pending = ()
        self._waiting = []
        waker = self._wakers.pop("waker", None)
        self._waker = None
        if waker is not None:
            waker.close()   # the child's copies; the parent keeps its own
