"""asyncio on a fastselectors selector, used the way uvloop is used.

    import fastselectors.asyncio

    fastselectors.asyncio.run(main())                # like asyncio.run()
    loop = fastselectors.asyncio.new_event_loop()    # a SelectorEventLoop

    # or, for code that calls asyncio.run() / asyncio.new_event_loop():
    fastselectors.asyncio.install()

The loop, :class:`EventLoop`, is a subclass of the stdlib's
:class:`asyncio.SelectorEventLoop` over ``fastselectors.DefaultSelector()``
(epoll on Linux), so every asyncio API (streams, ``sock_*``, subprocesses,
signal handlers, ``add_reader``/``add_writer``, TLS) is the stdlib's.  On
the native tier its hot paths run in C (``fastselectors._aio``: one turn of
the loop, ``call_soon``, the socket transport's reads and writes, with the
writes of one loop turn coalesced); CPython's own asyncio test suite passes
on it as on the stock loop (``tools/asyncio-suite``).  docs/asyncio.md says
what runs in C and the few documented differences (the timing of coalesced
writes).  On the cffi and pure tiers (PyPy) it is the stock loop over a
fastselectors selector.

This module is named ``asyncio`` but lives inside the ``fastselectors``
package; ``import asyncio`` below is an absolute import (Python 3) and so
gets the standard library's asyncio, never this module.

Event loop *policies* are deprecated from Python 3.14 on
(``asyncio.set_event_loop_policy``, ``asyncio.DefaultEventLoopPolicy`` and
friends emit ``DeprecationWarning`` there and are due for removal in 3.16).
Prefer :func:`run` or ``asyncio.run(main(), loop_factory=new_event_loop)``
(3.12+) / ``asyncio.Runner(loop_factory=new_event_loop)`` (3.11+).
:func:`install` and :class:`EventLoopPolicy` are kept for code that needs a
policy; on 3.9 to 3.13 they emit no warnings, on 3.14+ :func:`install`
emits the stdlib's own ``DeprecationWarning`` from
``asyncio.set_event_loop_policy``.
"""

from __future__ import annotations

import asyncio as _asyncio
import os as _os
import sys as _sys
import warnings as _warnings

from . import BACKEND as _BACKEND
from . import DefaultSelector as _DefaultSelector

# The native engine (fastselectors._aio, issue #13): _run_once, call_soon
# and the socket transport's hot paths in C.  It reproduces the stock code of
# the CPythons whose own asyncio suite it was run against, test by test
# (tools/asyncio-suite: 3.9 to 3.13); its checks see a replaced function,
# not a changed body, so on a newer CPython the stock paths run (over our
# selector) until the suite has passed there.  FASTSELECTORS_AIO_ENGINE=1
# turns it on anyway (the tests workflow's asyncio-suite job does, to run
# that suite on 3.14); =0 turns it off everywhere.
_ENGINE_VERIFIED = (3, 9) <= _sys.version_info[:2] <= (3, 13)
ENGINE: bool = _BACKEND == "native" and _os.environ.get(
    "FASTSELECTORS_AIO_ENGINE", "1" if _ENGINE_VERIFIED else "0") == "1"
"""Whether the loop's hot paths run in C here (see above)."""

if ENGINE:
    from ._aio import NativeEventLoop as _Native
    _EventLoopBases: tuple[type, ...] = (_Native,
                                         _asyncio.SelectorEventLoop)
else:
    _EventLoopBases = (_asyncio.SelectorEventLoop,)

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any, TypeVar

    _T = TypeVar("_T")

__all__ = ["new_event_loop", "EventLoop", "EventLoopPolicy", "install",
           "run"]


class EventLoop(*_EventLoopBases):  # type: ignore[misc]
    """An :class:`asyncio.SelectorEventLoop` over
    ``fastselectors.DefaultSelector()`` (or the selector given).

    On the native tier its hot paths run in C (``fastselectors._aio``):
    one turn of the loop, ``call_soon``, and the socket transport's reads
    and writes, with the writes of one loop turn coalesced into one
    ``sendmsg()`` per transport.  Debug mode, and the cffi and pure tiers
    (PyPy), run the stdlib's Python code."""

    def __init__(self, selector: Any = None) -> None:
        if selector is None:
            selector = _DefaultSelector()
        super().__init__(selector)


def new_event_loop() -> _asyncio.SelectorEventLoop:
    """A new :class:`EventLoop` (an :class:`asyncio.SelectorEventLoop`) over
    ``fastselectors.DefaultSelector()``."""
    return EventLoop()


if TYPE_CHECKING:
    # The base is chosen at run time, below, through "_sys.platform", which
    # type checkers do not follow ("sys.platform" only): they get the one
    # chosen on their platform from here.
    import sys
    if sys.platform == "win32":
        _PolicyBase = _asyncio.WindowsSelectorEventLoopPolicy
    else:
        _PolicyBase = _asyncio.DefaultEventLoopPolicy
else:
    def _policy_base() -> type[_asyncio.AbstractEventLoopPolicy]:
        # On Windows asyncio's default policy makes proactor loops; the
        # selector policy is the one whose loops we can mirror.  From 3.14
        # on, reading the policy classes off the asyncio module warns: that
        # deprecation is the user's to see when they *use* a policy
        # (install()), not at import.
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", DeprecationWarning)
            if _sys.platform == "win32":
                return _asyncio.WindowsSelectorEventLoopPolicy
            return _asyncio.DefaultEventLoopPolicy

    _PolicyBase = _policy_base()
del TYPE_CHECKING


class EventLoopPolicy(_PolicyBase):
    """An asyncio event loop policy whose loops use fastselectors.

    Deprecated along with all asyncio policies in Python 3.14; prefer
    :func:`run` or ``loop_factory=new_event_loop``.
    """

    def new_event_loop(self) -> _asyncio.SelectorEventLoop:
        return new_event_loop()

    def __repr__(self) -> str:
        return "<fastselectors.asyncio.EventLoopPolicy>"


def install() -> None:
    """Make asyncio create fastselectors loops: sets an
    :class:`EventLoopPolicy` with ``asyncio.set_event_loop_policy``.

    ``asyncio.set_event_loop_policy`` is deprecated in Python 3.14 (it warns
    there); on earlier versions this emits no warning.  Prefer :func:`run`.
    """
    _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run coroutine *main* on a new fastselectors loop and return its
    result, like :func:`asyncio.run`: leftover tasks are cancelled,
    async generators and the default executor are shut down and the loop is
    closed at the end.  Cannot be called from a running event loop."""
    # Checked before the Runner exists, as asyncio.run() does: Runner's
    # __enter__ already makes the loop, and its close() could not run that
    # loop from inside a running one.
    _refuse_running_loop()
    if hasattr(_asyncio, "Runner"):                     # 3.11+
        with _asyncio.Runner(debug=debug,
                             loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_fallback(main, debug)


def _run_fallback(main: Coroutine[Any, Any, _T], debug: bool | None) -> _T:
    """asyncio.run() of Python 3.9/3.10, on our loop."""
    _refuse_running_loop()
    if not _asyncio.iscoroutine(main):
        raise ValueError("a coroutine was expected, got {!r}".format(main))
    loop = new_event_loop()
    try:
        _asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            shutdown_executor = getattr(loop, "shutdown_default_executor",
                                        None)
            if shutdown_executor is not None:                   # 3.9+
                loop.run_until_complete(shutdown_executor())
        finally:
            _asyncio.set_event_loop(None)
            loop.close()


def _refuse_running_loop() -> None:
    if _asyncio.events._get_running_loop() is not None:
        raise RuntimeError(
            "fastselectors.asyncio.run() cannot be called from a running "
            "event loop")


def _cancel_all_tasks(loop: _asyncio.AbstractEventLoop) -> None:
    to_cancel = _asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(
        _asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler({
                "message": "unhandled exception during "
                           "fastselectors.asyncio.run() shutdown",
                "exception": task.exception(),
                "task": task,
            })
