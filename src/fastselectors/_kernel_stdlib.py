"""The pure tier's kernel layer (``_types.EpollKernel``/``PollKernel``):
the stdlib's ``select.epoll`` and ``select.poll``, no compiler needed; and
every tier's kqueue and /dev/poll (``KqueueKernel``; ``PollKernel``): the
stdlib's objects are the only ones we have for them.

Their limits, which the cores work around: wait() retries EINTR itself
(PEP 475: never None), timeouts are milliseconds (``ns`` is ignored), and
epoll's event data is the fd only (``_orphans``).
"""

from __future__ import annotations

import os
import select
import sys
from selectors import EVENT_READ, EVENT_WRITE

from ._checks import closed_error
from ._epoll_core import EpollCore as _EpollCore
from ._flags import KernelBits
from ._kqueue_core import KqueueCore as _KqueueCore
from ._poll_core import PollCore as _PollCore
from ._waker import always_readable_fd

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, ClassVar

# select.kqueue and select.devpoll exist (in typeshed too) only on some
# platforms; elsewhere a type checker sees them as Any, so the layers below
# still type-check there (tests/ runs them over fakes on Linux).
if sys.platform == "linux" or sys.platform == "win32":
    _kq: Any = select
else:
    _kq = select
if sys.platform == "linux" or sys.platform == "win32" \
        or sys.platform == "darwin":
    _dp: Any = select
else:
    _dp = select


def _errno_of(call: Callable[..., None], *args: int) -> int:
    """0, or the errno of the OSError *call* raised."""
    try:
        call(*args)
    except OSError as exc:
        return exc.errno or -1
    return 0


# (sys.platform first: type checkers then skip what the platform lacks.)
if sys.platform == "linux" and hasattr(select, "epoll"):
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

        def replace(self, registrations: Iterable[tuple[int, int]],
                    kick: bool = False) -> None:
            """A fresh instance with these (fd, mask), refusals ignored, in
            place of this one at the same fd number; *kick*: the waiters on
            the old one kicked off it (_types.EpollKernel.replace)."""
            new = select.epoll()
            try:
                for fd, mask in registrations:
                    try:
                        new.register(fd, mask)
                    except OSError:
                        pass
                # select.epoll has no detach(): dup2 over our fd, and
                # self._ep now works on the new instance.  The old one,
                # through a dup, for the kick.
                old = select.epoll.fromfd(os.dup(self.fd)) if kick else None
                try:
                    os.dup2(new.fileno(), self.fd, inheritable=False)
                finally:
                    if old is not None:
                        try:
                            old.register(always_readable_fd(), select.EPOLLIN)
                        except OSError:
                            pass
                        old.close()
            finally:
                new.close()

        def close(self) -> None:
            self._ep.close()


if sys.platform != "win32" and hasattr(select, "poll"):
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


if hasattr(select, "kqueue"):
    _EVENT_OF = {_kq.KQ_FILTER_READ: EVENT_READ,
                 _kq.KQ_FILTER_WRITE: EVENT_WRITE}
    _kevent = _kq.kevent
    # Kept, never closed, in a forked child: see KqueueKernel.renew.
    _not_inherited: list[Any] = []

    class KqueueKernel:
        """One kqueue, through ``select.kqueue`` (all tiers)."""

        READ: ClassVar[int] = _kq.KQ_FILTER_READ
        WRITE: ClassVar[int] = _kq.KQ_FILTER_WRITE
        ADD: ClassVar[int] = _kq.KQ_EV_ADD
        DELETE: ClassVar[int] = _kq.KQ_EV_DELETE
        DISABLE: ClassVar[int] = _kq.KQ_EV_DISABLE
        CLEAR: ClassVar[int] = _kq.KQ_EV_CLEAR
        # CPython's select module has no KQ_EV_DISPATCH; EV_DISPATCH is
        # 0x80 in the sys/event.h of macOS, FreeBSD, NetBSD, OpenBSD and
        # DragonFly alike.
        DISPATCH: ClassVar[int] = getattr(_kq, "KQ_EV_DISPATCH", 0x80)

        def __init__(self) -> None:
            self._kq = _kq.kqueue()
            self.fd: int = self._kq.fileno()
            self._owned = True      # False: a forked child's dead kqueue

        def change(self, changes: list[tuple[int, int, int]]) -> None:
            if changes:
                self._kq.control([_kevent(fd, filt, flags)
                                  for fd, filt, flags in changes], 0, 0)

        def discard(self, changes: list[tuple[int, int, int]]) -> None:
            try:
                self.change(changes)
                return
            except (OSError, ValueError, OverflowError):
                pass
            # The kernel stops at the first refusal: the rest one by one.
            for one in changes[1:]:
                try:
                    self.change([one])
                except (OSError, ValueError, OverflowError):
                    pass

        def wait(self, size: int, timeout: float | None
                 ) -> Iterable[tuple[int, int]]:
            try:
                kevents = self._kq.control(None, size, timeout)
            except ValueError:
                if self._kq.closed:     # by another thread, just now
                    return ()
                raise
            event_of = _EVENT_OF
            return [(kev.ident, event_of[kev.filter]) for kev in kevents]

        def kick(self) -> None:
            try:
                self.change([(always_readable_fd(), self.READ, self.ADD)])
            except (OSError, ValueError):   # closed already
                pass

        def renew(self, changes: list[tuple[int, int, int]]) -> None:
            # The inherited object is never closed: the kernel took the
            # kqueue at fork, and its fd number, free in the child, may be
            # anybody's now (CPython >= 3.12.1 marks it closed itself).
            if self._owned and not self._kq.closed:
                _not_inherited.append(self._kq)
            self._owned = False
            self.fd = -1
            self._kq = _kq.kqueue()     # EMFILE: the selector is closed
            self._owned = True
            self.fd = self._kq.fileno()
            self.discard(changes)

        def close(self) -> None:
            self.fd = -1
            if self._owned:
                self._kq.close()


if hasattr(select, "devpoll"):       # Solaris, illumos
    class DevpollKernel:
        """A /dev/poll set, through ``select.devpoll`` (all tiers): poll's
        interface; results in the kernel's order, as the stdlib's
        ``DevpollSelector``."""

        BITS: ClassVar[KernelBits] = KernelBits(
            _dp.POLLIN, _dp.POLLOUT, _dp.POLLPRI,
            getattr(_dp, "POLLRDHUP", 0))

        def __init__(self) -> None:
            self._dp = _dp.devpoll()
            self.fd: int = self._dp.fileno()

        def set(self, fd: int, mask: int) -> None:
            # modify(): /dev/poll ORs a second mask into the first; this
            # writes POLLREMOVE before it.
            self._dp.modify(fd, mask)

        def remove(self, fd: int) -> None:
            try:
                self._dp.unregister(fd)
            except (OSError, ValueError):
                pass

        def wait(self, size: int | None, ms: int, ns: int
                 ) -> Iterable[tuple[int, int]]:
            result: Iterable[tuple[int, int]] = self._dp.poll(
                None if ms < 0 else ms)
            return result

        def close(self) -> None:
            self.fd = -1
            self._dp.close()


# The cores of the pure tier: the Python cores over this layer; and every
# tier's kqueue and /dev/poll cores.
if sys.platform == "linux" and hasattr(select, "epoll"):
    class EpollCore(_EpollCore):
        _Kernel = EpollKernel

if sys.platform != "win32" and hasattr(select, "poll"):
    class PollCore(_PollCore):
        _Kernel = PollKernel

if hasattr(select, "kqueue"):
    class KqueueCore(_KqueueCore):
        _Kernel = KqueueKernel

if hasattr(select, "devpoll"):
    class DevpollCore(_PollCore):
        _Kernel = DevpollKernel
        _kernel: DevpollKernel

        def fileno(self) -> int:
            if self._closed:
                raise closed_error()
            return self._kernel.fd

        def _released(self) -> None:
            super()._released()
            if self._nwaiting == 0:     # (the last waiter out)
                self._kernel.close()
