"""fastselectors: a faster drop-in for the stdlib ``selectors`` module.

    import fastselectors as selectors

``BACKEND`` names the active tier ("native", "cffi" or "pure").
"""

from selectors import BaseSelector, SelectorKey, EVENT_READ, EVENT_WRITE

from ._base import (EDGE, EVENT_PRIORITY, EVENT_RDHUP, EXCLUSIVE, MODIFIERS,
                    ONESHOT, READINESS)
from ._backend import choose as _choose

__version__ = "0.1.0"

BACKEND, _classes = _choose()
globals().update(_classes)

__all__ = ["BaseSelector", "SelectorKey", "EVENT_READ", "EVENT_WRITE",
           "EVENT_PRIORITY", "EVENT_RDHUP", "EDGE", "ONESHOT", "EXCLUSIVE",
           "READINESS", "MODIFIERS", "BACKEND"]
__all__ += sorted(_classes)     # type checkers: see the end of the module
del _choose, _classes

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    # The selector classes are made at import time, by the tier chosen
    # (_backend.selector_classes); this is what type checkers see of them:
    # the stdlib's (typeshed's ``selectors``) plus CoreSelector's additions
    # -- dispatch(), maxevents, supports(), rearm().  As in the stdlib, a
    # class is missing at run time where the kernel refuses its API.
    import sys

    from ._selectors import CoreSelector, KernelFdSelector

    __all__ += ["SelectSelector", "DefaultSelector"]

    class SelectSelector(CoreSelector):
        """select()-based selector."""

    if sys.platform != "win32":
        __all__ += ["PollSelector"]

        class PollSelector(CoreSelector):
            """poll()-based selector."""

    if sys.platform == "linux":
        __all__ += ["EpollSelector"]

        class EpollSelector(KernelFdSelector):
            """epoll()-based selector."""

        # (At run time PollSelector where the kernel refuses epoll.)
        DefaultSelector = EpollSelector
    elif sys.platform == "win32":
        DefaultSelector = SelectSelector
    else:
        # kqueue (or /dev/poll) where the stdlib picks it: its own class.
        from selectors import DefaultSelector as DefaultSelector

    if sys.platform != "win32" and sys.platform != "linux":
        __all__ += ["KqueueSelector"]
        from selectors import KqueueSelector as KqueueSelector

    if (sys.platform != "linux" and sys.platform != "darwin"
            and sys.platform != "win32"):
        __all__ += ["DevpollSelector"]
        from selectors import DevpollSelector as DevpollSelector

del TYPE_CHECKING
