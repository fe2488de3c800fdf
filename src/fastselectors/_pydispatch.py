"""dispatch() for the cores written in Python (pure and cffi tiers).

Same contract as the native cores (written in
``_selectors.CoreSelector.dispatch``).  An event is delivered only if its
registration is unchanged since the wait: every register/modify/unregister
stores a *new* key object in the core (``_replace`` makes one), so "the key
in the table is still the very key of the event" is exactly "nothing changed
this fd since the wait" -- the stamp check of the C cores, for free.  The
pending list holds strong references to those keys, so an identity can never
be recycled for another key while it is compared.

A core using this mixin provides ``_select(timeout)`` (the wait, returning
``[(key, events)]``), ``_keys`` (fd -> current key) and ``closed``.
"""

from __future__ import annotations

from threading import get_ident

from ._base import check_maxevents, closed_error

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence
    from selectors import SelectorKey

    from ._types import Ready


class DispatchMixin:
    _dispatch_thread: int | None = None     # thread inside dispatch(), if any
    _pending: Sequence[tuple[SelectorKey, int]] = ()    # the last wait's batch
    _pending_pos = 0            # first event of it not yet delivered
    _maxevents: int | None = None   # default batch size; None: every ready fd
    _rotor = 0                  # where the next limited batch starts
    _keys: dict[int, SelectorKey]   # the core's: fd -> current key

    if TYPE_CHECKING:
        # Provided by each core.
        @property
        def closed(self) -> bool: ...

        def _select(self, timeout: float | None = None,
                    limit: int | None = None) -> Ready: ...

    def _after_fork(self) -> None:
        """In a child process: only the forking thread exists there, so a
        dispatch() that another thread had under way is gone.  Cores with a
        kernel object shared with the parent extend this."""
        self._dispatch_thread = None

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

    def _take(self, ready: Ready, limit: int) -> Ready:
        """At most *limit* of *ready*, starting where the previous limited
        batch stopped: the ones left out are still ready (level) and come
        first next time, so nobody starves (poll and select only; the
        kernel does this for epoll)."""
        n = len(ready)
        if not limit or n <= limit:
            return ready
        start = self._rotor % n
        self._rotor = start + limit
        return (ready[start:] + ready[:start])[:limit]

    def select(self, timeout: float | None = None,
               maxevents: int | None = None) -> Ready:
        if self._dispatch_thread is not None \
                and self._dispatch_thread == get_ident():
            raise RuntimeError("select() called from a dispatch() callback "
                               "of the same selector")
        return self._select(timeout, self._limit(maxevents))

    def dispatch(self, timeout: float | None = None,
                 maxevents: int | None = None) -> int:
        if self.closed:
            raise closed_error()
        if self._dispatch_thread is not None:
            raise RuntimeError(
                "dispatch() called from a dispatch() callback of the same "
                "selector" if self._dispatch_thread == get_ident() else
                "dispatch() is already running in another thread on this "
                "selector")
        limit = self._limit(maxevents)
        self._dispatch_thread = get_ident()
        try:
            # Events left by a callback that raised come first, without a
            # wait; if none of them is still valid, wait for a new batch.
            count = self._deliver_pending()
            if count == 0 and not self.closed:
                self._pending = self._select(timeout, limit)
                self._pending_pos = 0
                count = self._deliver_pending()
        except BaseException:
            if self.closed:
                self._pending = ()
            raise
        else:
            # Delivered: do not keep the keys of the batch alive.
            self._pending = ()
            return count
        finally:
            self._dispatch_thread = None

    def _deliver_pending(self) -> int:
        # The hot loop of the Python tiers: locals only.  No closed check
        # per event is needed: close() empties _keys, so every event after
        # a callback that closed the selector fails the identity check.
        pending = self._pending
        keys_get = self._keys.get
        pos = self._pending_pos
        end = len(pending)
        count = 0
        try:
            while pos < end:
                key, events = pending[pos]
                pos += 1
                if keys_get(key.fd) is key:     # unchanged since the wait
                    key.data(key, events)
                    count += 1
        finally:
            self._pending_pos = pos
        return count
