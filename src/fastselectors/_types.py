"""Types of the annotations (issue #6): the core interface and aliases.

Imported only by type checkers (``if TYPE_CHECKING:`` in the other modules),
never at run time, so ``import fastselectors`` does not import ``typing``.
It must still import on every supported Python (3.9+): no 3.10+ syntax.
"""

from __future__ import annotations

from selectors import SelectorKey
from typing import ClassVar, List, Optional, Protocol, Tuple

#: What select() returns: (key, ready events) pairs.
Ready = List[Tuple[SelectorKey, int]]


class Core(Protocol):
    """A core (``_selectors`` module docstring): the kernel side of one
    selector.  Every tier's ``EpollCore``/``PollCore`` and
    ``_pure.SelectCore`` implement it; ``fd`` is a validated int >= 0 and
    ``events`` a validated mask.  The native cores take positional
    arguments only, hence the ``/``."""

    #: The events bits this core can honour.
    SUPPORTED: ClassVar[int]

    @property
    def closed(self) -> bool: ...

    @property
    def maxevents(self) -> Optional[int]: ...

    @maxevents.setter
    def maxevents(self, value: Optional[int]) -> None: ...

    def register(self, fd: int, events: int, key: SelectorKey, /) -> None: ...

    def modify(self, fd: int, events: int, key: SelectorKey, /) -> None: ...

    def unregister(self, fd: int, /) -> None: ...

    def select(self, timeout: Optional[float] = None,
               maxevents: Optional[int] = None) -> Ready: ...

    def dispatch(self, timeout: Optional[float] = None,
                 maxevents: Optional[int] = None) -> int: ...

    def close(self) -> None: ...

    def _after_fork(self) -> None: ...


class KernelFdCore(Core, Protocol):
    """A core that owns a kernel fd (epoll)."""

    def fileno(self) -> int: ...


class Poller(Protocol):
    """What ``_pure``'s poll-like cores use of ``select.epoll`` and
    ``select.poll`` alike."""

    def register(self, fd: int, eventmask: int, /) -> None: ...

    def modify(self, fd: int, eventmask: int, /) -> None: ...

    def unregister(self, fd: int, /) -> None: ...
