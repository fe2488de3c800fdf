# The public names of fastselectors, for type checkers.  At run time the
# selector classes are made at import, by the tier chosen
# (_backend.selector_classes); this is what they are: the stdlib's
# (typeshed's ``selectors``) plus CoreSelector's additions -- dispatch(),
# maxevents, supports(), rearm(), stats().  As in the stdlib, a class is
# missing where the platform has no such kernel API.  tests/test_typing.py
# checks this file against the module.

import sys
from selectors import EVENT_READ as EVENT_READ
from selectors import EVENT_WRITE as EVENT_WRITE
from selectors import BaseSelector as BaseSelector
from selectors import SelectorKey as SelectorKey

from ._flags import EDGE as EDGE
from ._flags import EVENT_PRIORITY as EVENT_PRIORITY
from ._flags import EVENT_RDHUP as EVENT_RDHUP
from ._flags import EXCLUSIVE as EXCLUSIVE
from ._flags import MODIFIERS as MODIFIERS
from ._flags import ONESHOT as ONESHOT
from ._flags import READINESS as READINESS
from ._selectors import CoreSelector, KernelFdSelector

__version__: str
BACKEND: str
__all__: list[str]

class SelectSelector(CoreSelector):
    """select()-based selector."""

if sys.platform != "win32":
    class PollSelector(CoreSelector):
        """poll()-based selector."""

if sys.platform == "linux":
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
    from selectors import KqueueSelector as KqueueSelector

if (sys.platform != "linux" and sys.platform != "darwin"
        and sys.platform != "win32"):
    from selectors import DevpollSelector as DevpollSelector
