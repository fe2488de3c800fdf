"""The platforms the suite can simulate on Linux (``sitecustomize.py``).

Each removes from ``select`` what the platform lacks and installs a fake
of what it has and Linux does not:

- ``select-only``: no epoll, poll, kqueue or /dev/poll (Windows' select
  module; our select core and the tiers' wiring, not Windows' select(),
  which takes sockets only);
- ``kqueue``: macOS and the BSDs: no epoll, a fake kqueue
  (``fake_kqueue.py``, whose docstring says what it proves and what only
  a real kqueue does);
- ``devpoll``: Solaris, illumos: no epoll, a fake /dev/poll
  (``fake_devpoll.py``).

``SYS_PLATFORM`` is the ``sys.platform`` whose type stub
(``__init__.pyi``) the simulated package must match.
"""

import select

SYS_PLATFORM = {"select-only": "win32", "kqueue": "darwin",
                "devpoll": "sunos5"}

_EPOLL = ("epoll", "EPOLL")
_POLL = ("poll", "POLL")
_ALL = _EPOLL + _POLL + ("kqueue", "kevent", "KQ_", "devpoll")

active = None


def _remove(prefixes):
    for name in list(vars(select)):
        if name in prefixes or name.startswith(
                tuple(p for p in prefixes if p.isupper() or p.endswith("_"))):
            delattr(select, name)


def apply(mode):
    global active
    if mode not in SYS_PLATFORM:
        raise SystemExit("FASTSELECTORS_SIMULATE_PLATFORM={!r}: expected one "
                         "of {}".format(mode, ", ".join(SYS_PLATFORM)))
    if mode == "select-only":
        _remove(_ALL)
    elif mode == "kqueue":
        import fake_kqueue
        _remove(_EPOLL + ("devpoll",))
        fake_kqueue.install(select)
    else:
        import fake_devpoll
        _remove(_EPOLL + ("kqueue", "kevent", "KQ_"))
        fake_devpoll.install(select)
    active = mode
