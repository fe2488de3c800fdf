"""Bookkeeping shared by every selector: fileobj -> fd -> key, no syscalls.

The rules here are the stdlib's (``Lib/selectors.py``), rewritten rather than
imported: we must not depend on ``selectors``' private helpers, which change
between CPython versions.  Only the public objects (``SelectorKey``,
``EVENT_*``, ``BaseSelector``) are reused, so ``isinstance`` checks, pickled
keys and asyncio keep working.
"""

from collections.abc import Mapping
from selectors import EVENT_READ, EVENT_WRITE

#: Every events bit a caller may pass today (issue #4 adds the extended ones).
VALID_EVENTS = EVENT_READ | EVENT_WRITE


def fileobj_to_fd(fileobj):
    """Return the file descriptor of *fileobj* (an int or has ``fileno()``).

    Raises:
        ValueError: the object has no usable ``fileno()`` or the fd is < 0.
        Anything else ``fileno()`` raises (e.g. ``OSError``) propagates, as
        in the stdlib.
    """
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                "Invalid file object: {!r}".format(fileobj)) from None
    if fd < 0:
        raise ValueError("Invalid file descriptor: {}".format(fd))
    return fd


def check_events(events):
    """Raise ``ValueError`` unless *events* is a non-empty known mask.

    A non-integer mask raises ``TypeError`` from the ``&``, as in the stdlib.
    """
    if (not events) or (events & ~VALID_EVENTS):
        raise ValueError("Invalid events: {!r}".format(events))


class SelectorMapping(Mapping):
    """Read-only live view: file object (or fd) -> ``SelectorKey``."""

    __slots__ = ("_selector",)

    def __init__(self, selector):
        self._selector = selector

    def __len__(self):
        return len(self._selector._fd_to_key)

    def __getitem__(self, fileobj):
        try:
            fd = self._selector._fileobj_lookup(fileobj)
            return self._selector._fd_to_key[fd]
        except KeyError:
            raise KeyError("{!r} is not registered".format(fileobj)) from None

    def __iter__(self):
        return iter(self._selector._fd_to_key)

    def __repr__(self):
        return "<{} of {!r}>".format(type(self).__name__, self._selector)


def closed_error():
    """The error every use of a closed selector raises.

    ``ValueError`` is what the stdlib ``EpollSelector`` raises (from its
    closed ``select.epoll``); we raise it on every class, where the stdlib
    poll and select selectors would silently block forever instead.
    """
    return ValueError("I/O operation on closed selector")
