"""The selector classes: one generic class, parametrised by a *core*.

A core (``_types.Core``: the native tier's in C, the other tiers'
``_pycore``) owns the kernel object and an fd -> key table, and builds
``select()``'s results.  This module keeps the stdlib's bookkeeping rules
(fileobj -> fd -> key, the map, rollback) and makes no syscall: the hot
path, ``select()``, is the core's own method bound on the instance (no
Python frame between the caller and ``epoll_wait`` on the native tier).
What differs between classes, the core class declares.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from selectors import BaseSelector, SelectorKey

from ._checks import (INT_MAX, check_events, check_supported, closed_error,
                      fileobj_to_fd)
from ._flags import EXCLUSIVE, ONESHOT

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Callable, ClassVar

    from _typeshed import FileDescriptorLike

    from ._types import Core, KernelFdCore, Ready

    # The generic base, for type checkers only: at run time the plain
    # Mapping ABC.
    _SelectorMappingBase = Mapping[FileDescriptorLike, SelectorKey]
else:
    _SelectorMappingBase = Mapping

_live: weakref.WeakSet[CoreSelector] = weakref.WeakSet()   # open ones


def _after_fork_in_child() -> None:
    """A child must not share its selectors' epoll instances with the
    parent (each would change, and steal events from, the other): every
    core gets a new empty one, then every core adds its registrations --
    in two passes, so that a selector watching another one watches its new
    instance (csrc/epoll_core.c)."""
    selectors = list(_live)
    for step in ("_after_fork", "_after_fork_readd"):
        for selector in selectors:
            if not selector._core.closed:
                try:
                    getattr(selector._core, step)()
                except OSError:     # EMFILE: no fd left for an instance
                    selector.close()


def replaced(fd: int) -> None:
    """An epoll core rebuilt its kernel object, at *fd*: the selectors
    watching fd (nested selectors) watched the old one.  (Ours only: a
    stdlib selector watching it loses it.)"""
    for selector in list(_live):
        if fd in selector._fd_to_key and not selector._core.closed:
            selector._core._reattach(fd)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# tuple.__new__ builds the very SelectorKey that SelectorKey(...) (250 ns
# here) and key._replace() (740 ns) build, in 150 ns: register() and
# modify() are hot in servers that toggle write interest.
_new_key: Callable[[type[SelectorKey],
                    tuple[FileDescriptorLike, int, int, Any]],
                   SelectorKey] = tuple.__new__


class SelectorMapping(_SelectorMappingBase):
    """Read-only live view: file object (or fd) -> ``SelectorKey``."""

    __slots__ = ("_selector",)

    def __init__(self, selector: CoreSelector) -> None:
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector._fd_to_key)

    def __getitem__(self, fileobj: FileDescriptorLike) -> SelectorKey:
        try:
            fd = self._selector._fileobj_lookup(fileobj)
            return self._selector._fd_to_key[fd]
        except KeyError:
            raise KeyError("{!r} is not registered".format(fileobj)) from None

    def __iter__(self) -> Iterator[int]:
        return iter(self._selector._fd_to_key)

    def __repr__(self) -> str:
        return "<{} of {!r}>".format(type(self).__name__, self._selector)


class CoreSelector(BaseSelector):
    """A ``selectors.BaseSelector`` whose kernel work is done by a core."""

    #: The core class, whose class attributes say how this selector
    #: behaves (_types.Core); set by each concrete selector (make_selector),
    #: None only on the bases (hence the ignore).
    _core_cls: ClassVar[type[Core]] = None  # type: ignore[assignment]

    _core: Core
    _fd_to_key: dict[int, SelectorKey]  # the core's own table (core.keys)
    _map: SelectorMapping           # get_map(), while open

    @classmethod
    def supports(cls, flag: int) -> bool:
        """Return True if this selector honours every bit of *flag* (e.g.
        ``EpollSelector.supports(EDGE)``); never raises."""
        return (isinstance(flag, int) and flag > 0
                and not flag & ~cls._core_cls.SUPPORTED)

    def __init__(self, maxevents: int | None = None) -> None:
        """Parameters:
            maxevents: the default batch size of select() and dispatch()
                (None: every ready fd in one call, as the stdlib)
        """
        self._core = self._core_cls()
        self._core.maxevents = maxevents
        _live.add(self)
        self._fd_to_key = self._core.keys
        self._map = SelectorMapping(self)
        # Bind the core's select() and dispatch() on the instance, skipping
        # our Python wrappers -- unless a subclass overrides them: it wins.
        # (mypy forbids assigning to a method; here it is the point.)
        if type(self).select is CoreSelector.select:
            self.select = self._core.select  # type: ignore[method-assign]
        if type(self).dispatch is CoreSelector.dispatch:
            self.dispatch = self._core.dispatch  # type: ignore[method-assign]

    def _fileobj_lookup(self, fileobj: FileDescriptorLike) -> int:
        """Like ``fileobj_to_fd`` but finds a registered object whose fd can
        no longer be read (e.g. a closed socket), by identity."""
        try:
            return fileobj_to_fd(fileobj)
        except ValueError:
            for key in self._fd_to_key.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    def register(self, fileobj: FileDescriptorLike, events: int,
                 data: Any = None) -> SelectorKey:
        """Register a file object.

        Parameters:
            fileobj: file object or file descriptor
            events: mask of ``EVENT_READ | EVENT_WRITE``, plus any
                extended flags the class ``supports()`` (``EDGE``,
                ``ONESHOT``, ``EXCLUSIVE``, ``EVENT_PRIORITY``,
                ``EVENT_RDHUP``)
            data: any object, returned in the key
        Returns:
            the new ``SelectorKey``
        Raises:
            ValueError: invalid events, invalid file object, or closed selector
            KeyError: fileobj (or its fd) is already registered
            OSError: the kernel refused the fd (epoll: closed fd, regular file)
        """
        check_events(events)
        check_supported(type(self), events, self._core_cls.SUPPORTED)
        fd = self._fileobj_lookup(fileobj)
        if self._core.closed:
            if fd > INT_MAX and self._core_cls.FD_RANGE_BEFORE_CLOSED:
                # CPython's select.epoll converts the fd to a C int before
                # it looks at its closed state.
                raise OverflowError("Python int too large to convert to C int")
            raise closed_error()
        if fd in self._fd_to_key:
            raise KeyError("{!r} (FD {}) is already registered"
                           .format(fileobj, fd))
        # The core stores the key in its table -- the map -- and the kernel
        # together (another thread that registers fd too: KeyError).
        key = _new_key(SelectorKey, (fileobj, fd, events, data))
        self._core.register(fd, events, key)
        return key

    def unregister(self, fileobj: FileDescriptorLike) -> SelectorKey:
        """Unregister a file object; a since-closed fd does not raise.

        Returns:
            the removed ``SelectorKey``
        Raises:
            KeyError: fileobj is not registered
        """
        fd = self._fileobj_lookup(fileobj)
        key = self._core.unregister(fd) if fd in self._fd_to_key else None
        if key is None:     # (or unregistered by another thread meanwhile)
            raise KeyError("{!r} is not registered".format(fileobj))
        return key

    def modify(self, fileobj: FileDescriptorLike, events: int,
               data: Any = None) -> SelectorKey:
        """Change the events or the data of a registered file object.

        Returns:
            the new ``SelectorKey`` (the same object if nothing changed)
        Raises:
            KeyError: fileobj is not registered
            ValueError: invalid events; the registration is kept unchanged
                (the stdlib poll/epoll selectors accept any mask here, and
                its select selector drops the registration)
            OSError: the kernel refused the change (e.g. the fd was closed);
                as in the stdlib, the registration is removed
        """
        try:
            key = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError("{!r} is not registered".format(fileobj)) from None
        events_changed = events != key.events
        if events_changed:
            check_events(events)
            check_supported(type(self), events, self._core_cls.SUPPORTED)
            if (events ^ key.events) & EXCLUSIVE:
                raise ValueError("EXCLUSIVE can only be set by register(), "
                                 "never added or removed by modify()")
        # A ONESHOT registration is re-armed by any modify(), even one that
        # changes nothing: that is how its users say "report it again".
        if events_changed or data != key.data or events & ONESHOT:
            kept = key.fileobj
            if self._core_cls.REREGISTER_ON_MODIFY:
                # The stdlib's SelectSelector modifies by unregister() +
                # register(): new events put the object *given* here in the
                # key (the core moves the fd to the end of the map); a
                # data-only change keeps the old events value (True stays
                # 1).
                if events_changed:
                    kept = fileobj
                else:
                    events = key.events
            key = _new_key(SelectorKey, (kept, key.fd, events, data))
            # The table and the kernel together; refused by the kernel, the
            # registration is forgotten, as by the stdlib.
            self._core.modify(key.fd, events, key)
        return key

    def rearm(self, fileobj: FileDescriptorLike) -> SelectorKey:
        """Re-arm a ONESHOT registration with its current events and data
        (the same as ``modify(fileobj, key.events, key.data)``).

        Returns:
            the registration's ``SelectorKey``
        Raises:
            KeyError: fileobj is not registered
            RuntimeError: the selector is closed (from ``get_key()``, as
                the stdlib's)
        """
        key = self.get_key(fileobj)
        return self.modify(fileobj, key.events, key.data)

    @property
    def maxevents(self) -> int | None:
        """The default batch size of select() and dispatch(); None: every
        ready fd in one call.  Settable."""
        return self._core.maxevents

    @maxevents.setter
    def maxevents(self, value: int | None) -> None:
        self._core.maxevents = value

    def select(self, timeout: float | None = None,
               maxevents: int | None = None) -> Ready:
        """Wait until some registered file objects are ready, or timeout.

        Parameters:
            timeout: None blocks; <= 0 polls; otherwise seconds, rounded up
                to the kernel's resolution (never returns early)
            maxevents: at most this many results (None: the selector's
                ``maxevents``, whose default None means every ready fd);
                the rest come on the next calls, and no fd starves
        Returns:
            list of ``(key, events)``; ``events`` is the ready subset of
            ``key.events`` (HUP and ERR report both read and write interest)
        Raises:
            ValueError: closed selector, NaN timeout
            OverflowError: timeout too large for the kernel
            TypeError: timeout is not a number
            RuntimeError: called from a dispatch() callback of this selector
            OSError: the kernel refused the wait (e.g. SelectSelector with a
                closed fd still registered: EBADF, as in the stdlib)
        """
        return self._core.select(timeout, maxevents)

    def dispatch(self, timeout: float | None = None,
                 maxevents: int | None = None) -> int:
        """Wait once, then call ``key.data(key, events)`` for every ready
        registration; return how many callbacks ran.

        The contract, the same on every tier (docs/api.md, dispatch(),
        has it whole; tests/test_dispatch.py tests it): a pending event
        whose fd was registered, modified or unregistered since the wait
        is dropped, never delivered with stale interest or data (if the fd
        is still ready, the next wait reports it again); a callback that
        raises propagates at once and the rest of the batch stays pending
        for the next dispatch(), delivered without a wait; close() from a
        callback ends the batch; dispatch() or select() from a callback of
        the same selector, and dispatch() while another thread is in it,
        raise RuntimeError.

        Parameters:
            timeout, maxevents: as for select()
        Returns:
            the number of callbacks invoked
        Raises:
            ValueError: closed selector; RuntimeError: re-entrant call;
            anything a callback raises; select()'s timeout errors
        """
        return self._core.dispatch(timeout, maxevents)

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Counters of this selector's work since it was made (or last
        reset), the same on every class and tier (docs/api.md, stats()):
        waits, empty_waits, events, callbacks, max_batch, full_batches,
        rebuilds and idle_time (seconds blocked in the kernel).

        Parameters:
            reset: set every counter back to 0 after reading them
        Returns:
            a new dict of those names
        """
        return self._core.stats(reset)

    def close(self) -> None:
        """Close the selector and free the kernel resources; idempotent."""
        # One call: "closed" is the core's state alone, so no exception can
        # leave the selector half closed.
        self._core.close()

    def get_map(self) -> Mapping[FileDescriptorLike, SelectorKey]:
        """Return the live read-only mapping of file objects to keys, or
        None once closed."""
        # None once closed, as the stdlib's; its typeshed stub, which this
        # signature must match, does not say so.
        return None if self._core.closed else \
            self._map  # type: ignore[return-value]

    def __repr__(self) -> str:
        state = "closed" if self._core.closed else \
            "{} registered".format(len(self._fd_to_key))
        return "<{}.{} {}>".format(type(self).__module__,
                                   type(self).__qualname__, state)


class KernelFdSelector(CoreSelector):
    """A selector whose core owns a kernel fd (epoll)."""

    _core: KernelFdCore

    def fileno(self) -> int:
        """Return the kernel object's file descriptor."""
        return self._core.fileno()


def make_selector(name: str, core_cls: type[Core],
                  doc: str | None = None) -> type[CoreSelector]:
    """Build the public class *name* over *core_cls*, with the behaviour
    the core class declares."""
    base = KernelFdSelector if hasattr(core_cls, "fileno") else CoreSelector
    return type(name, (base,), {
        "_core_cls": core_cls,
        "__module__": "fastselectors",
        "__qualname__": name,
        "__doc__": doc or "{}-based selector.".format(name[:-8]),
    })
