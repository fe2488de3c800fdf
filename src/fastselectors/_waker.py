"""Ending a wait from the outside: a close() from a signal handler or
another thread must end a wait at once (``_types.Core``).

A poll or select core keeps the read end of a pipe, a ``Waker``, in every
blocking wait, and close() writes to it: nothing else would do, as
``select.poll().poll()`` and ``select.select()`` retry EINTR themselves
(PEP 475) and closing a selector closes none of the fds watched.  Made on
the first blocking wait; closed by the last waiter out of a closed core
(earlier, its number could be reused under a wait).  POSIX only: Windows'
select() takes sockets only.  epoll needs none: ``always_readable_fd``.
"""

from __future__ import annotations

import os
import sys
import threading


class Waker:
    __slots__ = ("fd", "_write_fd")

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()     # non-inheritable (PEP 446)
        if sys.platform != "win32":     # (never made there: see above)
            os.set_blocking(self._write_fd, False)

    def wake(self) -> None:
        """Make ``fd`` readable (for good: nobody reads it)."""
        try:
            os.write(self._write_fd, b"\0")
        except OSError:     # full (woken already) or closed: enough
            pass

    def close(self) -> None:
        # Forgotten first: a second call cannot close numbers reused since.
        fds = (self.fd, self._write_fd)
        self.fd = self._write_fd = -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __del__(self) -> None:
        # A selector dropped without close(): its pipe goes with it, as a
        # stdlib selector's epoll fd does (tests/test_leaks.py).
        if getattr(self, "fd", -1) >= 0:     # (-1, or os.pipe() failed)
            self.close()


_always_readable = -1
# Two threads' first kicks at once must not both make one (an fd lost);
# re-entrant: a signal handler's close() kicks in the middle of its thread's.
_always_readable_lock = threading.RLock()


def _new_always_readable_lock() -> None:
    # A thread gone with the fork may have held it (making the pipe).
    global _always_readable_lock
    _always_readable_lock = threading.RLock()


if hasattr(os, "register_at_fork"):     # (not on Windows: no fork there)
    os.register_at_fork(after_in_child=_new_always_readable_lock)


def always_readable_fd() -> int:
    """The read end of a process-wide pipe holding one byte that nobody
    reads: added to an epoll instance, it wakes every thread waiting on it
    (epoll's kick, used when an instance is closed or replaced under
    waiting threads).  Made once; inherited by forked children, where it
    is just as readable."""
    global _always_readable
    if _always_readable < 0:
        with _always_readable_lock:
            if _always_readable < 0:
                r, w = os.pipe()
                os.write(w, b"\0")
                os.close(w)
                # A signal handler of this thread (the lock is re-entrant)
                # may have made one meanwhile: keep the first.
                if _always_readable < 0:
                    _always_readable = r
                else:
                    os.close(r)
    return _always_readable
