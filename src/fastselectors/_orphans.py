"""Orphaned epoll registrations, for the epoll cores written in Python.

The kernel behaviour, and the native tier's answer, are written at the top
of ``csrc/epoll_core.c``: an fd closed while a dup keeps its file alive
leaves a registration that ``EPOLL_CTL_DEL`` can no longer reach (an
*orphan*).  The stdlib then wakes up forever for it, and delivers its events
to whatever new registration reuses the fd number.

The native core tells an orphan's events apart by a generation stored in
the event data.  ``select.epoll`` stores the fd number only, so the Python
cores (pure and cffi) keep the same promise another way:

- an fd whose ``EPOLL_CTL_DEL`` failed is a *suspect*: a dup may keep its
  old registration alive;
- registering a suspect number again first rebuilds the instance, so an
  orphan never shares its number with a live registration and its events
  can never be taken for the new key's;
- an event for an fd without a key while suspects exist rebuilds too: one
  extra wake-up, never a spin.

A rebuild makes a fresh instance holding every registration the old one
still has (probed with ``EPOLL_CTL_MOD`` on the old one: it fails for a
closed fd, or a number that now names another file), and moves it onto the
old fd number with ``dup2``, so ``fileno()`` does not change.  ONESHOT
registrations that fired and were not re-armed are *parked*, not added:
adding them would re-arm them behind the back of the thread that owns the
event; ``modify()``/``rearm()`` adds them back.  A rebuild waits until no
other thread is inside the wait (it would keep waiting on the old one).

After ``fork()`` the same rebuild, without the probe (the old instance is
the parent's, and must not be touched), gives the child its own instance.
"""

from __future__ import annotations

import os
from errno import EINVAL

from ._base import EXCLUSIVE, ONESHOT, closed_error

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from selectors import SelectorKey

    from ._types import Ready


class OrphanGuard:
    """Mixin of the Python epoll cores.  The core calls ``_init_orphans()``
    in ``__init__``, ``_unregistered_fd()`` from unregister,
    ``_before_register()``, ``_before_modify()``, ``_waiting`` around the
    wait and ``_after_wait()`` after it, and provides the four kernel
    primitives below."""

    _keys: dict[int, SelectorKey]

    def _init_orphans(self) -> None:
        self._suspects: set[int] = set()    # fds whose DEL failed
        self._disarmed: set[int] = set()    # ONESHOTs reported, not re-armed
        self._parked: set[int] = set()      # ... and left out of a rebuild
        self._waiting: list[None] = []      # one item per thread in the wait
        self._oneshot_seen = False          # a ONESHOT was ever registered

    # -- the kernel primitives of each core ------------------------------

    def _epoll_mask(self, events: int) -> int:
        raise NotImplementedError

    def _kernel_fd(self) -> int:
        """The current instance's fd (open)."""
        raise NotImplementedError

    def _probe(self, fd: int, mask: int) -> int:
        """EPOLL_CTL_MOD of fd on the current instance: 0, or the errno."""
        raise NotImplementedError

    def _fresh(self, fds: Iterable[tuple[int, int]]) -> int:
        """A new epoll fd (CLOEXEC) with each (fd, mask) added, refusals
        ignored (a closed fd: its key stays, as a closed fd's does)."""
        raise NotImplementedError

    # -- bookkeeping -------------------------------------------------------

    def _before_register(self, fd: int, events: int) -> None:
        if fd in self._suspects:
            # An orphan may hold this number: drop it before a live
            # registration shares the number with it.
            self._rebuild(verify=True)
        if events & ONESHOT:
            self._oneshot_seen = True

    def _before_modify(self, fd: int, events: int) -> bool:
        """Returns True if fd is parked: the caller must ADD, not MOD."""
        self._disarmed.discard(fd)
        if events & ONESHOT:
            self._oneshot_seen = True
        if fd in self._parked:
            self._parked.discard(fd)
            return True
        return False

    def _unregistered_fd(self, fd: int) -> bool:
        """fd's key is gone; returns True if the kernel still has it (the
        caller deletes it and reports a failure with _del_failed)."""
        self._disarmed.discard(fd)
        if fd in self._parked:
            self._parked.discard(fd)
            return False
        return True

    def _del_failed(self, fd: int) -> None:
        self._suspects.add(fd)

    def _after_wait(self, ready: Ready, fds: Iterable[int]) -> None:
        """After a wait (this thread has left ``_waiting``): note the
        ONESHOTs the kernel just disarmed; rebuild if an orphan spoke."""
        if self._oneshot_seen:
            for key, _ in ready:
                if key.events & ONESHOT:
                    self._disarmed.add(key.fd)
        # (Closed by another thread during the wait: nothing to rebuild.)
        if self._suspects and not self._waiting and not self.closed:
            keys = self._keys
            for fd in fds:
                if fd not in keys:
                    try:
                        self._rebuild(verify=True)
                    except OSError:
                        # No fd left for a new instance (EMFILE): keep the
                        # old one and this batch; the next stale event
                        # tries again.  Found by tests/test_scale.py.
                        pass
                    break

    def _rebuild(self, verify: bool) -> None:
        if self.closed:
            raise closed_error()
        keep = []
        for fd, key in self._keys.items():
            if fd in self._parked:
                continue
            if key.events & ONESHOT and fd in self._disarmed:
                self._parked.add(fd)
                continue
            mask = self._epoll_mask(key.events)
            # An EXCLUSIVE registration answers every MOD with EINVAL, but
            # only if it is there (ENOENT, EBADF: gone); the probe leaves
            # EXCLUSIVE out of the mask, with it the answer is always EINVAL.
            if verify and self._probe(
                    fd, self._epoll_mask(key.events & ~EXCLUSIVE)) not in (
                    0, EINVAL):
                continue
            keep.append((fd, mask))
        self._install(self._fresh(keep))
        self._suspects.clear()

    def _install(self, new_fd: int) -> None:
        try:
            os.dup2(new_fd, self._kernel_fd(), inheritable=False)
        finally:
            os.close(new_fd)

    if TYPE_CHECKING:
        @property
        def closed(self) -> bool: ...
