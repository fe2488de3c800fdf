"""The epoll core of the Python tiers, over a tier's ``EpollKernel``
(closed and dup'd fds: ``_orphans``; epoll's traps: ``csrc/epoll_core.c``).
"""

from __future__ import annotations

import sys
from _thread import RLock

from ._checks import closed_error, kernel_fd
from ._flags import EDGE, EXCLUSIVE, ONESHOT, READINESS
from ._orphans import Orphans
from ._pycore import PyCore

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from selectors import SelectorKey
    from typing import ClassVar

    from ._types import EpollKernel, Ready

# Any modify() of these makes a kernel call, even a no-change one: it
# re-arms a ONESHOT ("report it again"), and has the kernel re-check an
# EDGE one's readiness, so an edge whose pending dispatch() event the
# change dropped is reported again (the dispatch contract).
_MODIFY_ALWAYS = ONESHOT | EDGE

#: Called with the epoll fd after a rebuild: _selectors.replaced (set by
#: _backend, as the native tier's set_rebuild_hook).
on_replaced: Callable[[int], None] | None = None


class EpollCore(PyCore):
    """epoll(7): a kernel instance plus the fd -> key table."""

    SUPPORTED: ClassVar[int] = READINESS | EDGE | ONESHOT | EXCLUSIVE
    # As CPython's select.epoll (PyPy's checks "closed" first).
    FD_RANGE_BEFORE_CLOSED: ClassVar[bool] = (
        sys.implementation.name == "cpython")
    _Kernel: ClassVar[type[EpollKernel]]    # the tier's, set by a subclass

    def __init__(self) -> None:
        super().__init__()
        self._kernel = self._Kernel()
        self._to_kernel = self._Kernel.BITS.to_kernel
        self._ready_bits = self._Kernel.BITS.readiness
        self._orphans = Orphans()
        self._stale = False     # the last batch had an orphan's event
        self._gate: RLock | None = None     # held while a rebuild swaps

    def fileno(self) -> int:
        if self._closed:
            raise closed_error()
        return self._kernel.fd

    def register(self, fd: int, events: int, key: SelectorKey) -> None:
        if fd in self._orphans.suspects and not self._closed:
            self._rebuild(verify=True)  # before fd is in the table
        super().register(fd, events, key)

    def _kernel_register(self, fd: int, events: int) -> None:
        self._kernel.add(kernel_fd(fd), self._to_kernel(events))

    def _kernel_modify(self, fd: int, old: int, events: int,
                       rearm: bool) -> None:
        if events == old and not events & _MODIFY_ALWAYS:
            return
        kernel = self._kernel
        mask = self._to_kernel(events)
        if self._orphans.unpark(fd):
            kernel.add(fd, mask)        # left out of a rebuild
        elif old & EXCLUSIVE:
            # The kernel refuses EPOLL_CTL_MOD of an exclusive registration
            # (epoll_ctl(2), EINVAL): delete and add again.  The add
            # re-checks readiness, so no edge is lost.
            kernel.delete(fd)
            kernel.add(fd, mask)
        else:
            kernel.mod(fd, mask)

    def _kernel_unregister(self, fd: int, disarmed: bool) -> None:
        # A failure is not reported, like the stdlib selectors: a closed fd
        # (EBADF) has left the set already -- or, if a dup keeps its file
        # alive, can no longer be removed: an orphan (_orphans).
        if not self._orphans.unpark(fd) and self._kernel.delete(fd):
            self._orphans.suspects.add(fd)

    def _kernel_disarm(self, fd: int) -> None:
        pass                        # the kernel did it

    def _reconcile(self, fd: int) -> None:
        if self._closed:
            return
        key = self._keys.get(fd)
        if key is None:
            self._kernel_unregister(fd, False)
        elif fd not in self._disarmed:      # (a disarmed one: leave it)
            # DEL then ADD, whatever was there: the ADD re-checks readiness
            # (no edge lost), and is right for an EXCLUSIVE one too.
            self._kernel.delete(fd)
            try:
                self._kernel.add(fd, self._to_kernel(key.events))
            except OSError:
                pass    # closed since: as a closed fd's registration is

    def _kernel_close(self) -> None:
        if self._nwaiting:
            self._kernel.kick()     # the waiters raise the closed error
        self._orphans = Orphans()

    def _released(self) -> None:
        super()._released()
        if self._nwaiting == 0:
            self._kernel.close()    # (idempotent)

    def _kernel_wait(self, limit: int | None, ms: int, ns: int
                     ) -> Iterable[tuple[int, int]] | None:
        # Room for every registered fd, as the stdlib (one call returns all
        # that is ready), and for the orphans' events; the kernel keeps
        # what does not fit, rotating, so nobody starves.
        gate = self._gate
        if gate is not None:
            # A rebuild is making the new instance: wait for it, instead of
            # spinning on the old one (its orphan is still readable, and the
            # rebuild's syscalls let this thread run in between; _rebuild).
            with gate:
                pass
        size = len(self._keys) + len(self._orphans.suspects) or 1
        if limit and limit < size:
            size = limit
            self._limited = True
        else:
            self._limited = False
        return self._kernel.wait(size, ms, ns)

    def _collect(self, pairs: Iterable[tuple[int, int]], limit: int | None
                 ) -> Ready:
        if self._orphans.suspects:      # rare: see _orphans
            pairs = list(pairs)
            keys = self._keys
            # Only ever set here, cleared by the rebuild (_after_wait):
            # another thread's batch without the orphan's event, collected
            # between this one's and its _after_wait, must not cancel it.
            if any(fd not in keys for fd, _ in pairs):
                self._stale = True
        ready = self._results(pairs)
        if self._limited and len(ready) >= (limit or 0):
            self._full_batches += 1
        return ready

    def _after_wait(self) -> None:
        # After the batch's ONESHOTs were noted disarmed (_pycore): a
        # rebuild must not re-arm them.
        if self._stale:
            self._stale = False
            try:
                self._rebuild(verify=True)
            except OSError:
                # No fd left for a new instance (EMFILE): keep the old one;
                # the next stale event tries again.
                pass

    def _rebuild(self, verify: bool) -> None:
        """A fresh instance with the registrations the old one still has
        (_orphans), in its place at the same fd number.  Threads waiting on
        the old one are kicked off it once the new one is in place: they
        return (at most one extra wake-up each) and wait on the new one."""
        # Threads that come to wait meanwhile wait for the new instance
        # (_kernel_wait): the orphan the rebuild drops is still in the old
        # one, readable, and every syscall here lets them run.  An RLock:
        # a signal handler that waits on this selector, run in this thread
        # in the middle of the rebuild, passes (on the old instance).
        kernel = self._kernel
        gate = RLock()
        with gate:
            try:
                self._gate = gate
                regs = self._orphans.survivors(
                    self._keys, self._disarmed,
                    kernel.probe if verify else None, self._to_kernel)
                kernel.replace(regs, kick=bool(self._nwaiting) and verify)
                self._orphans.rebuilt()
            finally:
                self._gate = None
        self._rebuilds += 1
        if on_replaced is not None:
            on_replaced(kernel.fd)      # nested selectors: _reattach

    def precise_timeouts(self) -> bool:
        """True if waits take nanoseconds (epoll_pwait2) in this process."""
        if self._closed:
            raise closed_error()
        probe = getattr(self._kernel, "precise_timeouts", None)
        return bool(probe and probe())

    def _reattach(self, fd: int) -> None:
        """fd names a kernel object just replaced by a new one at the same
        number (another selector's rebuild): watch the new one.  Added by
        number, then a rebuild drops the old registration, if it survives
        (csrc/epoll_core.c)."""
        key = self._keys.get(fd)
        if key is None or self._closed or fd in self._disarmed:
            return
        try:
            self._kernel.add(fd, self._to_kernel(key.events))
        except OSError:
            pass
        self._rebuild(verify=True)

    # After fork, in the child (csrc/epoll_core.c): a fresh empty instance
    # at the same fd number for every selector first, then each adds its
    # registrations by number -- a nested selector's then names the new one.

    def _after_fork(self) -> None:
        super()._after_fork()
        # A rebuild another thread had under way is gone with it: its gate,
        # held by no thread of the child, would block every wait for good.
        self._gate = None
        if not self._closed:
            self._kernel.replace(())

    def _after_fork_readd(self) -> None:
        if not self._closed:
            for fd, mask in self._orphans.survivors(
                    self._keys, self._disarmed, None, self._to_kernel):
                try:
                    self._kernel.add(fd, mask)
                except OSError:
                    pass    # closed since: as a closed fd's registration
            self._orphans.rebuilt()
