# The public names, for type checkers: the selector classes are made at
# import by the tier chosen (_backend); every one is a CoreSelector (the
# stdlib's API plus dispatch(), supports(), rearm(), maxevents, stats()).
# As in the stdlib, a class is missing where the platform has no such
# kernel API.  tests/test_typing.py checks this file (on Linux, and on the
# platforms the tests simulate).

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
elif (sys.platform == "darwin" or sys.platform.startswith("freebsd")
      or sys.platform.startswith("openbsd")
      or sys.platform.startswith("netbsd")
      or sys.platform.startswith("dragonfly")):
    # Our kqueue core, on every tier (_kqueue_core).
    class KqueueSelector(KernelFdSelector):
        """kqueue()-based selector."""

    DefaultSelector = KqueueSelector
elif sys.platform.startswith("sunos"):
    # Solaris, illumos: /dev/poll, the stdlib's choice there.
    class DevpollSelector(KernelFdSelector):
        """/dev/poll-based selector."""

    DefaultSelector = DevpollSelector
else:
    DefaultSelector = PollSelector
