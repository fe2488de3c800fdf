"""Orphaned epoll registrations, for the epoll core of the Python tiers.

The kernel behaviour, and the native tier's answer, are written at the top
of ``csrc/epoll_core.c``: an fd closed while a dup keeps its file alive
leaves a registration that ``EPOLL_CTL_DEL`` can no longer reach (an
*orphan*).  The stdlib then wakes up forever for it, and delivers its events
to whatever new registration reuses the fd number.

The native core tells an orphan's events apart by a generation in the
event data.  ``select.epoll`` stores the fd only; the cffi tier could store
more, but a second algorithm in the Python tiers would be one more thing to
keep right, for no difference anyone can observe.  Both keep the promise so:

- an fd whose ``EPOLL_CTL_DEL`` failed is a *suspect*: a dup may keep its
  old registration alive;
- registering a suspect number again first rebuilds the instance, so an
  orphan never shares its number with a live registration and its events
  can never be taken for the new key's;
- an event for an fd without a key while suspects exist rebuilds too: one
  extra wake-up, never a spin.

A rebuild (as the native one: ``csrc/epoll_core.c``) puts a fresh instance
with every registration the old one still has in its place; ONESHOTs that
fired and were not re-armed are *parked* until ``modify()``.  This object
holds that state; the core calls its primitives and makes the syscalls.
"""

from __future__ import annotations

from errno import EINVAL

from ._flags import EXCLUSIVE

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from selectors import SelectorKey


class Orphans:
    """Suspects, and the disarmed ONESHOTs a rebuild left out (parked)."""

    __slots__ = ("suspects", "_parked")

    def __init__(self) -> None:
        self.suspects: set[int] = set()     # fds whose DEL failed
        self._parked: set[int] = set()      # not in the kernel: see survivors

    def unpark(self, fd: int) -> bool:
        """Before a modify() or unregister() of fd: True if fd was parked,
        so that the kernel does not have it (modify must ADD, not MOD;
        unregister has nothing to DEL)."""
        if fd in self._parked:
            self._parked.discard(fd)
            return True
        return False

    def survivors(self, keys: dict[int, SelectorKey], disarmed: set[int],
                  probe: Callable[[int, int], int] | None,
                  to_kernel: Callable[[int], int]
                  ) -> list[tuple[int, int]]:
        """The (fd, mask) to add to a fresh instance: every key the kernel
        still has (*probe*: EPOLL_CTL_MOD on the old instance, 0 or an
        errno; None after fork, where the old instance is the parent's and
        must not be touched), but the disarmed ONESHOTs, parked: adding
        them would re-arm them behind the back of the thread that owns the
        event."""
        keep = []
        for fd, key in keys.items():
            if fd in self._parked:
                continue
            if fd in disarmed:
                self._parked.add(fd)
                continue
            # An EXCLUSIVE registration answers every MOD with EINVAL, but
            # only if it is there (ENOENT, EBADF: gone); the probe leaves
            # EXCLUSIVE out of the mask, with it the answer is always EINVAL.
            if probe is not None and probe(
                    fd, to_kernel(key.events & ~EXCLUSIVE)) not in (0, EINVAL):
                continue
            keep.append((fd, to_kernel(key.events)))
        return keep

    def rebuilt(self) -> None:
        """The fresh instance is in place: no old registration is left to
        fear.  (Not in survivors(): until the swap is done, the old
        instance is still waited on, and its orphans still recognised.)"""
        self.suspects.clear()
