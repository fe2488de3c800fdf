"""The interfaces between the layers, and the contract of a core.

Imported only by type checkers (``if TYPE_CHECKING:`` in the other modules),
never at run time, so ``import fastselectors`` does not import ``typing``.
It must still import on every supported Python (3.9+): no 3.10+ syntax.
"""

from __future__ import annotations

from selectors import SelectorKey
from typing import (Any, ClassVar, Dict, Iterable, List, Optional, Protocol,
                    Tuple)

from ._flags import KernelBits

#: What select() returns: (key, ready events) pairs.
Ready = List[Tuple[SelectorKey, int]]


class Core(Protocol):
    """A core: the kernel side of one selector (``_selectors``).

    The native tier's in C; the pure and cffi tiers' in ``_pycore`` over
    each tier's kernel layer.  ``fd`` is a validated int >= 0, ``events`` a
    validated mask, ``key`` the ``SelectorKey`` to report (a new object for
    every change); positional arguments only, as the C cores take them.

    The contract, the same on every tier and class (tested against each):

    - **Order.**  poll and select report in the stdlib's order: poll in
      registration order (an fd keeps its place when modified; a re-armed
      ONESHOT comes back at the end, as a new registration), select in the
      order of the set of ready fds, as the stdlib's ``SelectSelector``
      builds it.  epoll reports in the kernel's order.
    - **Closed during a wait.**  A close() by a signal handler of the
      waiting thread, or by another thread, ends the wait at once with the
      closed ``ValueError`` -- never an ``OSError``, an empty result, or a
      wait on a recycled fd number.  (epoll's waiters are kicked off the
      instance; poll and select have a waker pipe in the wait, but on
      Windows, where select() takes sockets only: there the wait ends when
      it returns by itself.)
    - **Consistency.**  ``select()`` never reports a key the selector's map
      does not hold, and each event is masked by the fd's *current*
      interest, read after the wait.
    - ``unregister()`` of an fd closed since it was registered does not
      raise; ``modify()`` that the kernel refuses leaves nothing behind.
    """

    #: The events bits this core can honour.
    SUPPORTED: ClassVar[int]
    #: modify() of the events is unregister() + register(), as the stdlib's
    #: SelectSelector's (the key gets the object given; the map, the fd last).
    REREGISTER_ON_MODIFY: ClassVar[bool]
    #: register() on a closed selector checks the fd range first (CPython's
    #: select.epoll converts the fd before it looks at its closed state).
    FD_RANGE_BEFORE_CLOSED: ClassVar[bool]

    @property
    def keys(self) -> Dict[int, SelectorKey]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def maxevents(self) -> Optional[int]: ...
    @maxevents.setter
    def maxevents(self, value: Optional[int]) -> None: ...
    def register(self, fd: int, events: int, key: SelectorKey, /) -> None: ...
    def modify(self, fd: int, events: int, key: SelectorKey, /) -> None: ...
    def unregister(self, fd: int, /) -> Optional[SelectorKey]: ...
    def select(self, timeout: Optional[float] = None,
               maxevents: Optional[int] = None) -> Ready: ...
    def dispatch(self, timeout: Optional[float] = None,
                 maxevents: Optional[int] = None) -> int: ...
    def stats(self, reset: bool = False) -> Dict[str, Any]: ...
    def close(self) -> None: ...
    def _after_fork(self) -> None: ...
    def _after_fork_readd(self) -> None: ...
    def _reattach(self, fd: int, /) -> None: ...


class KernelFdCore(Core, Protocol):
    """A core that owns a kernel fd (epoll): its selector has fileno()."""

    def fileno(self) -> int: ...


class EpollKernel(Protocol):
    """A tier's epoll syscalls (``_kernel_stdlib``, ``_kernel_cffi``): one
    kernel instance, ``fd`` (-1 once closed).  The event data is the fd."""

    BITS: ClassVar[KernelBits]
    fd: int

    def add(self, fd: int, mask: int) -> None: ...
    def mod(self, fd: int, mask: int) -> None: ...
    def delete(self, fd: int) -> int:
        """EPOLL_CTL_DEL: 0, or the errno (never raises)."""

    def probe(self, fd: int, mask: int) -> int:
        """EPOLL_CTL_MOD: 0, or the errno (never raises)."""

    def wait(self, size: int, ms: int, ns: int
             ) -> Optional[Iterable[Tuple[int, int]]]:
        """(fd, revents) pairs; None after EINTR (the handlers have run);
        OSError for any other failure."""

    def kick(self) -> None:
        """Make every thread waiting on this instance return."""

    def replace(self, registrations: Iterable[Tuple[int, int]],
                kick: bool = False) -> None:
        """A fresh instance holding these (fd, mask), refusals ignored, in
        place of this one at the same fd number; *kick*: then the threads
        still waiting on the old one are kicked off it (kicked before the
        swap, a thread could re-enter the old, kicked instance and spin
        while the swap waits for the GIL that the kick's syscall let go)."""

    def close(self) -> None: ...


class PollKernel(Protocol):
    """A tier's poll set; results in the order fds were added."""

    BITS: ClassVar[KernelBits]

    def set(self, fd: int, mask: int) -> None:
        """Add fd at the end, or change its mask in place."""

    def remove(self, fd: int) -> None:
        """Forget fd (not there: nothing happens)."""

    def wait(self, size: Optional[int], ms: int, ns: int
             ) -> Optional[Iterable[Tuple[int, int]]]:
        """As EpollKernel.wait."""


class KqueueKernel(Protocol):
    """A kqueue (``_kernel_stdlib``: ``select.kqueue``, on every tier).
    A change is ``(fd, filter, flags)`` in the kernel's values, which the
    class holds; ``fd`` is the kqueue's own (-1 once closed)."""

    READ: ClassVar[int]         # EVFILT_READ
    WRITE: ClassVar[int]        # EVFILT_WRITE
    ADD: ClassVar[int]          # EV_ADD, and so on
    DELETE: ClassVar[int]
    DISABLE: ClassVar[int]
    CLEAR: ClassVar[int]
    DISPATCH: ClassVar[int]
    fd: int

    def change(self, changes: List[Tuple[int, int, int]]) -> None:
        """Apply them in one call; OSError for the first one refused."""

    def discard(self, changes: List[Tuple[int, int, int]]) -> None:
        """Apply them, each one refused ignored (never raises)."""

    def wait(self, size: int, timeout: Optional[float]
             ) -> Iterable[Tuple[int, int]]:
        """At most *size* (fd, EVENT_READ or EVENT_WRITE), one per knote
        reported; () if the kqueue was closed meanwhile."""

    def kick(self) -> None:
        """Make every thread waiting on this kqueue return."""

    def renew(self, changes: List[Tuple[int, int, int]]) -> None:
        """In a forked child (which has no kqueue): a new kqueue with these
        changes applied, refusals ignored."""

    def close(self) -> None: ...
