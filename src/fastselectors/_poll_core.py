"""The poll core of the Python tiers, over a tier's ``PollKernel``.

Results come in the stdlib's order, registration order (the kernel layer
keeps it).  A disarmed ONESHOT fd leaves the kernel set, and comes back, as
a new registration would, at the end of the order.
"""

from __future__ import annotations

from errno import EINVAL
from selectors import EVENT_READ, EVENT_WRITE

from ._checks import kernel_fd
from ._flags import EVENT_PRIORITY, EVENT_RDHUP, ONESHOT
from ._pycore import PyCore
from ._waker import Waker

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import ClassVar

    from ._types import PollKernel, Ready


class PollCore(PyCore):
    """poll(2): a poll set plus the fd -> key table."""

    _Kernel: ClassVar[type[PollKernel]]     # the tier's, set by a subclass
    _no_waker = False       # a waker made poll() fail: do without

    def __init__(self) -> None:
        super().__init__()
        self._kernel = self._Kernel()
        self._to_kernel = self._Kernel.BITS.to_kernel
        self._ready_bits = self._Kernel.BITS.readiness

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        kernel = cls.__dict__.get("_Kernel")
        if kernel is not None:
            bits = kernel.BITS
            # RDHUP only where the kernel has it (Linux).
            cls.SUPPORTED = (EVENT_READ | EVENT_WRITE | EVENT_PRIORITY
                             | ONESHOT | (EVENT_RDHUP if bits.to_kernel(
                                 EVENT_RDHUP) else 0))

    def _kernel_register(self, fd: int, events: int) -> None:
        self._kernel.set(kernel_fd(fd), self._to_kernel(events))

    def _kernel_modify(self, fd: int, old: int, events: int,
                       rearm: bool) -> None:
        if rearm or events != old:
            self._kernel.set(fd, self._to_kernel(events))

    def _kernel_unregister(self, fd: int, disarmed: bool) -> None:
        if not disarmed:
            self._kernel.remove(fd)

    def _kernel_disarm(self, fd: int) -> None:
        self._kernel.remove(fd)

    def _reconcile(self, fd: int) -> None:
        key = self._keys.get(fd)
        if self._closed:
            return
        if key is None or fd in self._disarmed:
            self._kernel.remove(fd)
        else:
            self._kernel.set(fd, self._to_kernel(key.events))

    def _kernel_close(self) -> None:
        pass    # the kernel layer holds no resource; waiters still poll it

    def _kernel_wait(self, limit: int | None, ms: int, ns: int
                     ) -> Iterable[tuple[int, int]] | None:
        if ms and self._waker is None and not self._no_waker:
            # In the poll set before it is installed: a thread that finds
            # it installed polls it.
            waker = Waker()
            self._kernel.set(waker.fd, self._to_kernel(EVENT_READ))
            if self._new_waker(waker) is not waker:
                self._kernel.remove(waker.fd)
                waker.close()
            if self._closed:    # before the waker was there to wake us
                return ()
        try:
            return self._kernel.wait(None, ms, ns)
        except OSError as exc:
            if exc.errno != EINVAL or self._waker is None:
                raise
        # More fds than RLIMIT_NOFILE, counting the waker: the stdlib's
        # poll would not have counted it.  Go on without one (it stays
        # open, out of the set, until close(): another thread may hold it
        # in a wait).
        self._no_waker = True
        self._kernel.remove(self._waker.fd)
        return self._kernel.wait(None, ms, ns)

    def _collect(self, pairs: Iterable[tuple[int, int]], limit: int | None
                 ) -> Ready:
        ready = self._results(pairs)
        return self._take(ready, limit) if limit else ready

    def _after_fork(self) -> None:
        # A wait that another thread had under way at the fork is gone (and
        # select.poll refuses a second concurrent poll(): its object would
        # be stuck): a fresh set with the same armed registrations.
        super()._after_fork()
        if self._closed:
            return
        self._kernel = kernel = self._Kernel()
        to_kernel = self._to_kernel
        for fd, key in self._keys.items():
            if fd not in self._disarmed:
                kernel.set(fd, to_kernel(key.events))
