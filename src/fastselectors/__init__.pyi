# The public names, for type checkers: the selector classes are made at
# import by the tier chosen (_backend); they are the stdlib's plus
# CoreSelector's additions.  As in the stdlib, a class is missing where the
# platform has no such kernel API.  tests/test_typing.py checks this file.

import sys
from selectors import EVENT_READ as EVENT_READ, EVENT_WRITE as EVENT_WRITE
from selectors import BaseSelector as BaseSelector, SelectorKey as SelectorKey

from ._flags import EDGE as EDGE, EVENT_PRIORITY as EVENT_PRIORITY
from ._flags import EVENT_RDHUP as EVENT_RDHUP, EXCLUSIVE as EXCLUSIVE
from ._flags import MODIFIERS as MODIFIERS, ONESHOT as ONESHOT
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
