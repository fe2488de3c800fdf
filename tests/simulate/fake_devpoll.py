"""A fake of ``select.devpoll`` (Solaris, illumos) for Linux: tests only
(``tests/simulate``: the simulated "devpoll" platform).  /dev/poll has
``select.poll``'s interface; what this fake keeps of its semantics:
``register()`` ORs a mask into an fd's existing one (a write to /dev/poll
adds), ``modify()`` replaces it, ``unregister()`` of an unknown fd is not
an error, ``close()``/``closed``/``fileno()`` (a real fd), and the closed
object's ValueError.  Its limits: readiness and the order of results are
poll(2)'s; a forked child gets a copy of the set, where a real /dev/poll
fd is shared with the parent (our core replaces it in the child anyway).
"""

import os
import select as _select

_poll = _select.poll
# CPython's devpoll converts its arguments as poll does (the fildes and
# unsigned short converters): a real poll object checks them.
_checker = _poll()


def _checked(fd, eventmask):
    _checker.register(fd, eventmask)
    fd = fd if isinstance(fd, int) else fd.fileno()
    _checker.unregister(fd)
    return int(fd)


class devpoll:
    def __init__(self):
        self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._masks = {}

    @property
    def closed(self):
        return self._fd < 0

    def _check_open(self):
        if self._fd < 0:
            raise ValueError("I/O operation on closed devpoll object")

    def fileno(self):
        self._check_open()
        return self._fd

    def close(self):
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def register(self, fd, eventmask=_select.POLLIN | _select.POLLPRI
                 | _select.POLLOUT):
        self._check_open()
        fd = _checked(fd, eventmask)
        self._masks[fd] = self._masks.get(fd, 0) | eventmask

    def modify(self, fd, eventmask=_select.POLLIN | _select.POLLPRI
               | _select.POLLOUT):
        self._check_open()
        fd = _checked(fd, eventmask)
        self._masks[fd] = eventmask

    def unregister(self, fd):
        self._check_open()
        fd = _checked(fd, 0)
        self._masks.pop(fd, None)

    def poll(self, timeout=None):
        self._check_open()
        poll = _poll()
        for fd, mask in list(self._masks.items()):
            poll.register(fd, mask)
        if timeout is not None and timeout < 0:
            timeout = None
        return poll.poll(timeout)


def install(module):
    module.devpoll = devpoll
