"""Bookkeeping shared by every selector: fileobj -> fd -> key, no syscalls.

The rules here are the stdlib's (``Lib/selectors.py``), rewritten rather than
imported: we must not depend on ``selectors``' private helpers, which change
between CPython versions.  Only the public objects (``SelectorKey``,
``EVENT_*``, ``BaseSelector``) are reused, so ``isinstance`` checks, pickled
keys and asyncio keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from selectors import EVENT_READ, EVENT_WRITE

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterator
    from selectors import SelectorKey

    from _typeshed import FileDescriptorLike

    from ._selectors import CoreSelector

    # The generic bases, for type checkers only: at run time the classes
    # subclass the plain dict and Mapping, exactly as before the types.
    _ReadinessMapBase = dict[int, int]
    _SelectorMappingBase = Mapping[FileDescriptorLike, SelectorKey]
else:
    _ReadinessMapBase = dict
    _SelectorMappingBase = Mapping

# The extended flags (issue #4) live in the same events mask as the stdlib's
# EVENT_READ (1) and EVENT_WRITE (2), like epoll's own bits.  Readiness bits
# are reported by select(); modifiers only change how the kernel reports.
EVENT_PRIORITY = 1 << 2     # urgent data: EPOLLPRI, POLLPRI, select()'s xfds
EVENT_RDHUP = 1 << 3        # peer shut down writing: EPOLLRDHUP, POLLRDHUP
EDGE = 1 << 8               # EPOLLET: report a change of state once
ONESHOT = 1 << 9            # EPOLLONESHOT: disarm after one report
EXCLUSIVE = 1 << 10         # EPOLLEXCLUSIVE: wake one of the waiters (4.5+)

READINESS = EVENT_READ | EVENT_WRITE | EVENT_PRIORITY | EVENT_RDHUP
MODIFIERS = EDGE | ONESHOT | EXCLUSIVE
VALID_EVENTS = READINESS | MODIFIERS
FLAG_NAMES = {EVENT_READ: "EVENT_READ", EVENT_WRITE: "EVENT_WRITE",
              EVENT_PRIORITY: "EVENT_PRIORITY", EVENT_RDHUP: "EVENT_RDHUP",
              EDGE: "EDGE", ONESHOT: "ONESHOT", EXCLUSIVE: "EXCLUSIVE"}
# The kernel refuses EPOLLEXCLUSIVE with these (epoll_ctl(2): EINVAL).
NOT_WITH_EXCLUSIVE = ONESHOT | EVENT_PRIORITY | EVENT_RDHUP


class ReadinessMap(_ReadinessMapBase):
    """Kernel revents -> our readiness bits, the one copy of the rule the
    Python tiers apply to every event: anything but IN (OUT, HUP, ERR,
    NVAL) wakes write interest, anything but OUT wakes read interest (the
    stdlib's rule); PRI and RDHUP are also reported as themselves.  Filled
    on first sight of each distinct revents value, so the hot loops pay one
    dict lookup per event instead of four tests."""

    __slots__ = ("_in", "_out", "_pri", "_rdhup")

    def __init__(self, in_bit: int, out_bit: int, pri_bit: int,
                 rdhup_bit: int) -> None:
        super().__init__()
        self._in, self._out = in_bit, out_bit
        self._pri, self._rdhup = pri_bit, rdhup_bit

    def __missing__(self, revents: int) -> int:
        events = 0
        if revents & ~self._in:
            events |= EVENT_WRITE
        if revents & ~self._out:
            events |= EVENT_READ
        if revents & self._pri:
            events |= EVENT_PRIORITY
        if revents & self._rdhup:
            events |= EVENT_RDHUP
        self[revents] = events
        return events


def flag_names(mask: int) -> str:
    """'EDGE|ONESHOT' for a mask of known flags."""
    return "|".join(name for bit, name in sorted(FLAG_NAMES.items())
                    if mask & bit)


def fileobj_to_fd(fileobj: FileDescriptorLike) -> int:
    """Return the file descriptor of *fileobj* (an int or has ``fileno()``).

    Raises:
        ValueError: the object has no usable ``fileno()`` or the fd is < 0.
        Anything else ``fileno()`` raises (e.g. ``OSError``) propagates, as
        in the stdlib.
    """
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                "Invalid file object: {!r}".format(fileobj)) from None
    if fd < 0:
        raise ValueError("Invalid file descriptor: {}".format(fd))
    return fd


def check_events(events: int) -> None:
    """Raise ``ValueError`` unless *events* is a known mask with at least
    one readiness bit.

    A non-integer mask raises ``TypeError`` from the ``&``, as in the stdlib.
    """
    if (not events) or (events & ~VALID_EVENTS) or not (events & READINESS):
        raise ValueError("Invalid events: {!r}".format(events))


def check_maxevents(maxevents: object) -> int | None:
    """None (every ready fd) or an int >= 1; the native cores' rules."""
    if maxevents is None:
        return None
    if not isinstance(maxevents, int) or isinstance(maxevents, bool):
        raise TypeError("maxevents must be an int or None, not {}".format(
            type(maxevents).__name__))
    if maxevents < 1:
        raise ValueError("maxevents must be at least 1, got {}".format(
            maxevents))
    return maxevents


def check_supported(selector_cls: type[object], events: int,
                    supported: int) -> None:
    """Raise ``ValueError`` naming the selector and the flags it cannot
    honour (a flag is never faked: EDGE cannot be emulated on poll)."""
    unsupported = events & ~supported
    if unsupported:
        raise ValueError("{} does not support {}".format(
            selector_cls.__name__, flag_names(unsupported)))
    if events & EXCLUSIVE and events & NOT_WITH_EXCLUSIVE:
        raise ValueError("EXCLUSIVE cannot be combined with {} (the kernel "
                         "refuses it)".format(
                             flag_names(events & NOT_WITH_EXCLUSIVE)))


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


def closed_error() -> ValueError:
    """The error every use of a closed selector raises.

    ``ValueError`` is what the stdlib ``EpollSelector`` raises (from its
    closed ``select.epoll``); we raise it on every class, where the stdlib
    poll and select selectors would silently block forever instead.
    """
    return ValueError("I/O operation on closed selector")
