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

from ._flags import EXCLUSIVE, ONESHOT

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from selectors import SelectorKey


class Orphans:
    """Suspects, and the ONESHOT states a rebuild must respect."""

    __slots__ = ("suspects", "_disarmed", "_parked", "_oneshot", "active")

    def __init__(self) -> None:
        self.suspects: set[int] = set()     # fds whose DEL failed
        self._disarmed: set[int] = set()    # ONESHOTs reported, not re-armed
        self._parked: set[int] = set()      # ... and left out of a rebuild
        self._oneshot = False               # a ONESHOT was ever registered
        #: Anything to do after a wait (the hot path tests this only).
        self.active = False

    def _note_oneshot(self, events: int) -> None:
        if events & ONESHOT:
            self._oneshot = self.active = True

    # -- the core's steps ---------------------------------------------------

    def registering(self, fd: int, events: int) -> bool:
        """Before an ADD; returns True if the instance must be rebuilt
        first (an orphan may hold this number)."""
        self._note_oneshot(events)
        return fd in self.suspects

    def rearming(self, fd: int, events: int) -> bool:
        """Before a modify's kernel call; returns True if fd is parked (not
        in the kernel): the core must ADD it, not MOD."""
        self._note_oneshot(events)
        self._disarmed.discard(fd)
        if fd in self._parked:
            self._parked.discard(fd)
            return True
        return False

    def forgetting(self, fd: int) -> bool:
        """fd was unregistered; returns True if the kernel still has it
        (the core DELs it, and reports a failure with ``del_failed``)."""
        self._disarmed.discard(fd)
        if fd in self._parked:
            self._parked.discard(fd)
            return False
        return True

    def del_failed(self, fd: int) -> None:
        self.suspects.add(fd)
        self.active = True

    def reported(self, ready: Iterable[tuple[SelectorKey, int]],
                 stale: bool) -> bool:
        """After a wait: note the ONESHOTs the kernel just disarmed; return
        True if a rebuild is due (an event without a key: an orphan's,
        perhaps, while suspects exist)."""
        for key, _ in ready:
            if key.events & ONESHOT:
                self._disarmed.add(key.fd)
        return stale and bool(self.suspects)

    # -- a rebuild -----------------------------------------------------------

    def survivors(self, keys: dict[int, SelectorKey],
                  probe: Callable[[int, int], int] | None,
                  to_kernel: Callable[[int], int]
                  ) -> list[tuple[int, int]]:
        """The (fd, mask) to add to a fresh instance: every key the
        kernel still has (*probe*: EPOLL_CTL_MOD on the old instance, 0 or
        an errno; None after fork, where the old instance is the parent's
        and must not be touched), but disarmed ONESHOTs, which are parked."""
        keep = []
        for fd, key in keys.items():
            if fd in self._parked:
                continue
            if key.events & ONESHOT and fd in self._disarmed:
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
        self.suspects.clear()
        self.active = self._oneshot

    def reset(self) -> None:
        """close(): nothing to remember."""
        self.suspects.clear()
        self._disarmed.clear()
        self._parked.clear()
        self._oneshot = self.active = False
