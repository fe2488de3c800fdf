"""The events mask: our flags, and how they map to a kernel's bits.

The extended flags live in the same mask as the stdlib's ``EVENT_READ`` (1)
and ``EVENT_WRITE`` (2), like epoll's own bits.  Readiness bits are what
``select()`` reports; modifiers only change how the kernel reports.  The C
tier has the same values in ``csrc/fastselectors.h``.
"""

from __future__ import annotations

from selectors import EVENT_READ, EVENT_WRITE

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    # The generic base, for type checkers only: at run time the plain dict.
    _ReadinessMapBase = dict[int, int]
else:
    _ReadinessMapBase = dict

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


def flag_names(mask: int) -> str:
    """'EDGE|ONESHOT' for a mask of known flags."""
    return "|".join(name for bit, name in sorted(FLAG_NAMES.items())
                    if mask & bit)


class ReadinessMap(_ReadinessMapBase):
    """Kernel revents -> our readiness bits, with the stdlib's rule:
    anything but IN (OUT, HUP, ERR, NVAL) wakes write interest, anything
    but OUT wakes read interest; PRI and RDHUP also report as themselves.
    Filled on first sight of each revents value: one dict lookup an event.
    Readiness bits only: ``ready[revents] & key.events`` is the report."""

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


class KernelBits(_ReadinessMapBase):
    """One kernel's bits for our flags, for epoll and poll alike: a map of
    our events masks to the kernel's (filled on first sight: register() and
    modify() are hot in servers that toggle write interest; ``to_kernel``
    is its lookup), and ``readiness``, the way back.  A flag the kernel has
    no bit for (0: poll's ONESHOT, emulated; RDHUP off Linux) adds none."""

    __slots__ = ("readiness", "to_kernel", "_pairs")

    def __init__(self, IN: int, OUT: int, PRI: int, RDHUP: int,
                 ET: int = 0, ONESHOT_: int = 0, EXCLUSIVE_: int = 0) -> None:
        super().__init__()
        self.readiness = ReadinessMap(IN, OUT, PRI, RDHUP)
        self.to_kernel = self.__getitem__
        self._pairs = tuple((ours, kernel) for ours, kernel in (
            (EVENT_READ, IN), (EVENT_WRITE, OUT), (EVENT_PRIORITY, PRI),
            (EVENT_RDHUP, RDHUP), (EDGE, ET), (ONESHOT, ONESHOT_),
            (EXCLUSIVE, EXCLUSIVE_)) if kernel)

    def __missing__(self, events: int) -> int:
        mask = 0
        for ours, kernel in self._pairs:
            if events & ours:
                mask |= kernel
        self[events] = mask
        return mask
