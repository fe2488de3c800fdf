"""The pure tier's kernel layer (``_types.EpollKernel``/``PollKernel``):
the stdlib's ``select.epoll`` and ``select.poll``, no compiler needed.

Their limits, which the cores work around: wait() retries EINTR itself
(PEP 475: never None), timeouts are milliseconds (``ns`` is ignored), and
epoll's event data is the fd only (``_orphans``).
"""

from __future__ import annotations

import os
import select
import sys

from ._epoll_core import EpollCore as _EpollCore
from ._flags import KernelBits
from ._poll_core import PollCore as _PollCore
from ._waker import always_readable_fd

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import ClassVar


def _errno_of(call: Callable[..., None], *args: int) -> int:
    """0, or the errno of the OSError *call* raised."""
    try:
        call(*args)
    except OSError as exc:
        return exc.errno or -1
    return 0


if hasattr(select, "epoll"):
    class EpollKernel:
        """One epoll instance, through ``select.epoll``."""

        # PyPy's select module lacks EPOLLRDHUP and EPOLLEXCLUSIVE: the
        # kernel ABI's values (include/uapi/linux/eventpoll.h) stand in.
        BITS: ClassVar[KernelBits] = KernelBits(
            select.EPOLLIN, select.EPOLLOUT, select.EPOLLPRI,
            getattr(select, "EPOLLRDHUP", 0x2000), select.EPOLLET,
            select.EPOLLONESHOT, getattr(select, "EPOLLEXCLUSIVE", 1 << 28))

        def __init__(self) -> None:
            self._ep = select.epoll()
            self.fd = self._ep.fileno()

        def add(self, fd: int, mask: int) -> None:
            self._ep.register(fd, mask)

        def mod(self, fd: int, mask: int) -> None:
            self._ep.modify(fd, mask)

        def delete(self, fd: int) -> int:
            return _errno_of(self._ep.unregister, fd)

        def probe(self, fd: int, mask: int) -> int:
            return _errno_of(self._ep.modify, fd, mask)

        def wait(self, size: int, ms: int, ns: int
                 ) -> Iterable[tuple[int, int]]:
            # No "except InterruptedError" (the stdlib has one): since PEP
            # 475 the call retries EINTR itself, so an InterruptedError
            # here was raised by a signal handler and must propagate.
            return self._ep.poll(-1 if ms < 0 else ms * 1e-3, size)

        def kick(self) -> None:
            """Make every thread waiting on this instance return."""
            try:
                self._ep.register(always_readable_fd(), select.EPOLLIN)
            except (OSError, ValueError):   # there already, or closed
                pass

        def replace(self, registrations: Iterable[tuple[int, int]]
                    ) -> None:
            """A fresh instance with these (fd, mask), refusals
            ignored, in place of this one at the same fd number."""
            new = select.epoll()
            try:
                for fd, mask in registrations:
                    try:
                        new.register(fd, mask)
                    except OSError:
                        pass
                # select.epoll has no detach(): dup2 over our fd, and
                # self._ep now works on the new instance.
                os.dup2(new.fileno(), self.fd, inheritable=False)
            finally:
                new.close()

        def close(self) -> None:
            self._ep.close()


if hasattr(select, "poll"):       # not on Windows
    class PollKernel:
        """A poll set, through ``select.poll``."""

        # POLLRDHUP is Linux's; PyPy's select module lacks it: the kernel
        # ABI's value.
        BITS: ClassVar[KernelBits] = KernelBits(
            select.POLLIN, select.POLLOUT, select.POLLPRI,
            getattr(select, "POLLRDHUP",
                    0x2000 if sys.platform.startswith("linux") else 0))

        def __init__(self) -> None:
            self._poll = select.poll()

        def set(self, fd: int, mask: int) -> None:
            """Add fd, or change its mask (its place in the order kept)."""
            self._poll.register(fd, mask)

        def remove(self, fd: int) -> None:
            try:
                self._poll.unregister(fd)
            except KeyError:
                pass

        def wait(self, size: int | None, ms: int, ns: int
                 ) -> Iterable[tuple[int, int]]:
            return self._poll.poll(None if ms < 0 else ms)


# The cores of the pure tier: the Python cores over this layer.
if hasattr(select, "epoll"):
    class EpollCore(_EpollCore):
        _Kernel = EpollKernel

if hasattr(select, "poll"):
    class PollCore(_PollCore):
        _Kernel = PollKernel
