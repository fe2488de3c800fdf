"""Pure tier: cores over the stdlib ``select`` module (no compiler needed).

Also the select() core of every tier: select(2) is O(max fd) and capped at
FD_SETSIZE, so nobody should want it fast, and the stdlib's ``select.select``
gives exactly the stdlib's errors for fds >= FD_SETSIZE and closed fds.
"""

import math
import select
import sys
from selectors import EVENT_READ, EVENT_WRITE

from ._base import closed_error
from ._pydispatch import DispatchMixin


_INT_MAX = 2 ** 31 - 1


def _poll_timeout_ms(timeout):
    """Seconds -> poll()/epoll_wait() milliseconds, rounded up (stdlib)."""
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    # Round away from zero: wait *at least* timeout seconds.
    ms = math.ceil(timeout * 1e3)
    if ms > _INT_MAX:
        # CPython's select module refuses this; PyPy's epoll would return
        # at once, i.e. before the timeout: give CPython's error everywhere.
        raise OverflowError("timeout is too large")
    return ms


class _PollLikeCore(DispatchMixin):
    """Shared by the epoll and poll cores: same masks, same result loop."""

    _IN = _OUT = 0

    def __init__(self):
        self._poller = self._new_poller()
        self._keys = {}

    def _mask(self, events):
        mask = 0
        if events & EVENT_READ:
            mask |= self._IN
        if events & EVENT_WRITE:
            mask |= self._OUT
        return mask

    def register(self, fd, events, key):
        if self._poller is None:
            raise closed_error()
        self._poller.register(fd, self._mask(events))
        self._keys[fd] = key

    def modify(self, fd, events, key):
        if self._poller is None:
            raise closed_error()
        if events != self._keys[fd].events:
            self._poller.modify(fd, self._mask(events))
        self._keys[fd] = key

    def unregister(self, fd):
        if self._keys.pop(fd, None) is None or self._poller is None:
            return
        try:
            self._poller.unregister(fd)
        except OSError:
            pass    # closed since it was registered: nothing to remove

    @property
    def closed(self):
        return self._poller is None

    def _results(self, fd_event_list):
        ready = []
        keys = self._keys
        not_in, not_out = ~self._IN, ~self._OUT
        for fd, event in fd_event_list:
            key = keys.get(fd)
            if key is None:
                continue
            events = 0
            # Anything but IN (OUT, HUP, ERR, NVAL) wakes write interest,
            # anything but OUT wakes read interest: the stdlib's rule.
            if event & not_in:
                events |= EVENT_WRITE
            if event & not_out:
                events |= EVENT_READ
            ready.append((key, events & key.events))
        return ready

    def close(self):
        # Mark closed first: dropping the keys may run finalizers that use
        # this core again, and they must see it closed.
        poller, self._poller = self._poller, None
        if poller is not None and hasattr(poller, "close"):
            poller.close()      # epoll has a kernel fd; poll has none
        self._keys.clear()


class EpollCore(_PollLikeCore):
    _IN, _OUT = select.EPOLLIN, select.EPOLLOUT

    @staticmethod
    def _new_poller():
        return select.epoll()

    def _select(self, timeout=None):
        if self._poller is None:
            raise closed_error()
        ms = _poll_timeout_ms(timeout)
        # No "except InterruptedError" (the stdlib has one): since PEP 475
        # the call retries EINTR itself, so an InterruptedError here was
        # raised by a signal handler and must propagate, as on every tier.
        fd_event_list = self._poller.poll(
            -1 if ms < 0 else ms * 1e-3, max(len(self._keys), 1))
        return self._results(fd_event_list)

    def fileno(self):
        if self._poller is None:
            raise closed_error()
        return self._poller.fileno()


class PollCore(_PollLikeCore):
    _IN, _OUT = select.POLLIN, select.POLLOUT

    @staticmethod
    def _new_poller():
        return select.poll()

    def _select(self, timeout=None):
        if self._poller is None:
            raise closed_error()
        ms = _poll_timeout_ms(timeout)
        fd_event_list = self._poller.poll(None if ms < 0 else ms)
        return self._results(fd_event_list)


# CPython converts select()'s timeout to int64 nanoseconds.
_SELECT_TIMEOUT_LIMIT = 2 ** 63 / 1e9

if sys.platform == "win32":
    def _select_fds(readers, writers, timeout):
        # Windows reports a failed connect() in the exceptional set only.
        r, w, x = select.select(readers, writers, writers, timeout)
        return r, w + x
else:
    def _select_fds(readers, writers, timeout):
        r, w, _ = select.select(readers, writers, (), timeout)
        return r, w


class SelectCore(DispatchMixin):
    def __init__(self):
        self._keys = {}
        self._readers = set()
        self._writers = set()
        self._closed = False

    def register(self, fd, events, key):
        if self._closed:
            raise closed_error()
        self._keys[fd] = key
        self._set_interest(fd, events)

    def _set_interest(self, fd, events):
        for fds, bit in ((self._readers, EVENT_READ),
                         (self._writers, EVENT_WRITE)):
            if events & bit:
                fds.add(fd)
            else:
                fds.discard(fd)

    def modify(self, fd, events, key):
        if self._closed:
            raise closed_error()
        self._keys[fd] = key
        self._set_interest(fd, events)

    def unregister(self, fd):
        self._keys.pop(fd, None)
        self._readers.discard(fd)
        self._writers.discard(fd)

    @property
    def closed(self):
        return self._closed

    def _select(self, timeout=None):
        if self._closed:
            raise closed_error()
        if timeout is not None:
            # CPython's select.select rules, checked here so that every
            # interpreter gives them (PyPy's select() accepts NaN and
            # answers EINVAL for a huge timeout).
            if timeout != timeout:
                raise ValueError("Invalid value NaN (not a number)")
            timeout = max(timeout, 0)
            if timeout >= _SELECT_TIMEOUT_LIMIT:
                raise OverflowError("timeout is too large")
        r, w = _select_fds(self._readers, self._writers, timeout)
        r = set(r)
        w = set(w)
        ready = []
        keys = self._keys
        for fd in r | w:
            key = keys.get(fd)
            if key is None:
                continue
            events = 0
            if fd in r:
                events |= EVENT_READ
            if fd in w:
                events |= EVENT_WRITE
            ready.append((key, events & key.events))
        return ready

    def close(self):
        self._closed = True     # first, as in _PollLikeCore.close
        self._keys.clear()
        self._readers.clear()
        self._writers.clear()
