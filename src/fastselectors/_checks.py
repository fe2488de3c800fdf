"""Argument checks and the errors they raise, with the stdlib's rules.

The rules are the stdlib's (``Lib/selectors.py`` and the ``select``
module), rewritten rather than imported: we must not depend on
``selectors``' private helpers, which change between CPython versions.
"""

from __future__ import annotations

import sys

from ._flags import (EXCLUSIVE, NOT_WITH_EXCLUSIVE, READINESS, VALID_EVENTS,
                     flag_names)

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

INT_MAX = 2 ** 31 - 1       # a C int: every kernel fd and timeout in ms

# Python 3.13's select module warns about a bool used as an fd.
_BOOL_FD_WARNS = sys.version_info >= (3, 13)


def fileobj_to_fd(fileobj: FileDescriptorLike) -> int:
    """The file descriptor of *fileobj* (an int or has ``fileno()``): an
    ``int``, or a ``bool`` as the stdlib keeps it.  Another ``int`` subclass
    becomes an exact int: its ``__hash__``/``__eq__`` would run code in the
    middle of our bookkeeping.

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
    if type(fd) is not int and type(fd) is not bool:
        fd = int.__int__(fd)    # no user code runs
    if fd < 0:
        raise ValueError("Invalid file descriptor: {}".format(fd))
    return fd


def kernel_fd(fd: int) -> int:
    """The fd as the kernel layers take it (an exact int), with the checks
    of the stdlib's ``select.epoll``/``select.poll``: an fd above INT_MAX
    is an OverflowError before anything is touched, and Python 3.13 warns
    about a bool."""
    if fd > INT_MAX:
        raise OverflowError("Python int too large to convert to C int")
    if type(fd) is bool:
        if _BOOL_FD_WARNS:
            import warnings
            warnings.warn("bool is used as a file descriptor",
                          RuntimeWarning, stacklevel=4)
        return int(fd)
    return fd


def check_events(events: int) -> None:
    """Raise ``ValueError`` unless *events* is a known mask with a
    readiness bit (a non-integer: ``TypeError`` from the ``&``, as the
    stdlib)."""
    if (not events) or (events & ~VALID_EVENTS) or not (events & READINESS):
        raise ValueError("Invalid events: {!r}".format(events))


def check_maxevents(maxevents: object) -> int | None:
    """None (every ready fd) or an int >= 1; the native cores' rules."""
    if maxevents is None:
        return None
    if not isinstance(maxevents, int) or isinstance(maxevents, bool):
        raise TypeError("maxevents must be an int or None, not {}".format(
            type(maxevents).__name__))
    if maxevents < 1:
        raise ValueError("maxevents must be at least 1, got {}".format(
            maxevents))
    return int(maxevents)


def check_supported(selector_cls: type[object], events: int,
                    supported: int) -> None:
    """Raise ``ValueError`` naming the selector and the flags it cannot
    honour (a flag is never faked: EDGE cannot be emulated on poll)."""
    unsupported = events & ~supported
    if unsupported:
        raise ValueError("{} does not support {}".format(
            selector_cls.__name__, flag_names(unsupported)))
    if events & EXCLUSIVE and events & NOT_WITH_EXCLUSIVE:
        raise ValueError("EXCLUSIVE cannot be combined with {} (the kernel "
                         "refuses it)".format(
                             flag_names(events & NOT_WITH_EXCLUSIVE)))


def closed_error() -> ValueError:
    """The error every use of a closed selector raises: the stdlib's
    ``EpollSelector``'s (its poll and select selectors block forever)."""
    return ValueError("I/O operation on closed selector")
