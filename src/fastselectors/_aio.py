"""The native asyncio engine's Python half (issue #13; native tier only).

``NativeEventLoop`` is ``asyncio.SelectorEventLoop`` with three hot paths
done in C by ``fastselectors._native`` (csrc/aio_loop.c,
csrc/aio_transport.c):

- ``_run_once()``: one turn of the loop -- timers, the wait and
  ``_process_events()`` in one C call on a native epoll selector, and the
  drain of the ready queue -- step for step as ``BaseEventLoop._run_once``;
  debug mode runs the stock method;
- ``call_soon()``: the Handle is made in C (stock method in debug mode);
- the socket transport: reads (``data_received``/``BufferedProtocol``) in C
  for every ``_SelectorSocketTransport``; and ``FastSocketTransport.write``
  in C, which defers small writes made during the ready-queue drain and
  sends each transport's writes of the turn with one ``sendmsg()`` when the
  drain ends (write coalescing; see csrc/aio_transport.c for what is kept).

The C code reproduces the stock functions handed to it here, and checks at
every step that it is looking at them: a subclass or a test that replaces
one gets the stock behaviour, through the stock code.
"""

from __future__ import annotations

import _socket
import collections
import heapq
import os
import socket
from asyncio import base_events as _base_events_mod
from asyncio import events as _events_mod
from asyncio import format_helpers as _format_helpers_mod
from asyncio import selector_events as _selector_events_mod

from . import _native

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# This module works with asyncio's private names, which typeshed does not
# describe: they are typed Any here.
base_events: Any = _base_events_mod
events: Any = _events_mod
format_helpers: Any = _format_helpers_mod
selector_events: Any = _selector_events_mod

_BaseEventLoop: Any = base_events.BaseEventLoop
_SelectorEventLoop: Any = selector_events.BaseSelectorEventLoop
_SocketTransport: Any = selector_events._SelectorSocketTransport
_Handle: Any = events.Handle

# FASTSELECTORS_AIO_DISABLE: a comma-separated list of the fast paths to
# leave out, for measuring each one's share (benchmarks/asyncio/README.md):
#   engine       the C turn itself (and with it everything below but
#                call_soon and write: the stock _run_once runs)
#   select       EpollCore._asyncio_select (select() + _process_events)
#   call_soon    call_soon in C
#   read         the transport's read path in C
#   write        FastSocketTransport.write in C (and coalescing)
#   coalesce     deferring writes to the end of the drain
_DISABLED = frozenset(
    name.strip() for name in
    os.environ.get("FASTSELECTORS_AIO_DISABLE", "").split(",") if name.strip())

# Handle._run's except clause names the callback with
# format_helpers._format_callback_source, which takes debug= from 3.13 on.
_fcs = format_helpers._format_callback_source
_FCS_DEBUG = "debug" in _fcs.__code__.co_varnames[
    :_fcs.__code__.co_argcount + _fcs.__code__.co_kwonlyargcount]


def _report(handle: Any, exc: BaseException) -> None:
    """The except clause of ``Handle._run`` for a callback that raised
    *exc* (the engine calls it with *exc* as the exception being
    handled)."""
    if _FCS_DEBUG:
        cb = _fcs(handle._callback, handle._args,
                  debug=handle._loop.get_debug())
    else:
        cb = _fcs(handle._callback, handle._args)
    msg = f"Exception in callback {cb}"
    context = {
        "message": msg,
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def _run_debug(loop: Any, handle: Any) -> None:
    """The debug-mode branch of the stock drain, for one handle (debug mode
    turned on by a callback of this turn)."""
    try:
        loop._current_handle = handle
        t0 = loop.time()
        handle._run()
        dt = loop.time() - t0
        if dt >= loop.slow_callback_duration:
            base_events.logger.warning("Executing %s took %.3f seconds",
                                       base_events._format_handle(handle), dt)
    finally:
        loop._current_handle = None


def _core_for(selector: Any) -> Any:
    """The native epoll core whose ``_asyncio_select`` can stand for
    ``selector.select()`` + ``_process_events()``, or None."""
    from . import _selectors
    core: Any = getattr(selector, "_core", None)
    if (isinstance(selector, _selectors.CoreSelector)
            and core is not None
            and type(core) is getattr(_native, "EpollCore", None)
            and type(selector).select is _selectors.CoreSelector.select
            and selector.__dict__.get("select") == core.select):
        return core
    return None


class FastSocketTransport(_SocketTransport):  # type: ignore[misc]
    """The stock socket transport with ``write()`` in C (write coalescing
    during the loop's drain).  Everything that looks at or changes the
    write side sends the deferred writes first, so it sees what the stock
    transport would."""

    # The attributes the C paths read, in place (csrc/aio.h, tview); the
    # stock code sets them all in __init__.  _fs_wq: the write queue, made
    # at the first deferred write.
    __slots__ = ("_conn_lost", "_buffer", "_eof", "_empty_waiter", "_sock",
                 "_read_ready_cb", "_protocol", "_fs_wq", "_closing")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Class defaults the slots would hide: _SelectorTransport._sock is
        # None until __init__ sets it (its __del__ relies on that).
        self._sock = None
        self._fs_wq = None
        super().__init__(*args, **kwargs)

    write = (_SocketTransport.write if "write" in _DISABLED
             else _native.aio_method(_native.aio_write))

    # The stock is_closing() is "return self._closing" (checked below):
    # streams' drain() calls it for every write.
    if _SocketTransport.is_closing.__code__.co_names == ("_closing",):
        is_closing = _native.aio_method(_native.aio_is_closing)

    def _fs_flush(self) -> None:
        if self._fs_wq is not None:
            _native.aio_flush(self)

    def close(self) -> None:
        self._fs_flush()
        super().close()

    def _force_close(self, exc: Any) -> None:
        self._fs_flush()
        super()._force_close(exc)

    def write_eof(self) -> None:
        self._fs_flush()
        super().write_eof()

    def writelines(self, list_of_data: Any) -> None:
        self._fs_flush()
        super().writelines(list_of_data)

    def get_write_buffer_size(self) -> int:
        self._fs_flush()
        size: int = super().get_write_buffer_size()
        return size

    def set_write_buffer_limits(self, high: Any = None,
                                low: Any = None) -> None:
        self._fs_flush()
        super().set_write_buffer_limits(high, low)

    def _make_empty_waiter(self) -> Any:
        self._fs_flush()
        return super()._make_empty_waiter()


_HANDLE_SLOTS = {"_callback", "_args", "_cancelled", "_loop",
                 "_source_traceback", "_repr", "__weakref__", "_context"}

# BaseSelectorEventLoop._make_socket_transport as it is on 3.9-3.13: we
# make a FastSocketTransport the same way where its signature is the one we
# know; elsewhere the stock transport (with the C read path only).
_mst = _SelectorEventLoop._make_socket_transport.__code__
_MAKE_TRANSPORT_KNOWN = (
    _mst.co_varnames[:_mst.co_argcount + _mst.co_kwonlyargcount]
    == ("self", "sock", "protocol", "waiter", "extra", "server")
    and "_SelectorSocketTransport" in _mst.co_names)
_MAKE_TRANSPORT_ENSURES_FD = "_ensure_fd_no_transport" in _mst.co_names
del _mst

# Loop attributes the engine reads in place: NativeEventLoop declares them
# as __slots__ (the stock __init__ sets them all), in the order of
# fs_aio_loop_names (csrc/aio_loop.c).  A subclass that redefines one keeps
# the stock path.
_LOOP_SLOTS = ("_ready", "_scheduled", "_stopping", "_debug", "_closed",
               "_selector", "_fs", "_clock_resolution",
               "_timer_cancelled_count")


class NativeEventLoop(_SelectorEventLoop):  # type: ignore[misc]
    """Mixed into fastselectors.asyncio.EventLoop on the native tier (before
    asyncio.SelectorEventLoop in its bases)."""

    __slots__ = _LOOP_SLOTS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._fs: Any = None
        super().__init__(*args, **kwargs)
        self._fs_start()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that changes how call_soon schedules keeps the stock
        # call_soon.
        if "call_soon" not in cls.__dict__ and (
                cls._call_soon is not _BaseEventLoop._call_soon
                or cls._check_closed is not _BaseEventLoop._check_closed):
            cls.call_soon = _BaseEventLoop.call_soon

    def _fs_start(self) -> None:
        """Attach the engine, unless a subclass changed what it stands for
        (then every turn is the stock one)."""
        cls = type(self)
        if (cls._run_once is NativeEventLoop._run_once
                and cls._process_events is _SelectorEventLoop._process_events
                and cls._add_callback is _BaseEventLoop._add_callback
                and all(getattr(cls, name) is NativeEventLoop.__dict__[name]
                        for name in _LOOP_SLOTS)
                and "engine" not in _DISABLED):
            self._fs = _native.AioEngine()

    def _run_once(self) -> None:
        fs = self._fs
        if fs is None or self._debug:
            _BaseEventLoop._run_once(self)
        else:
            fs.run_once(self)

    call_soon = (_BaseEventLoop.call_soon if "call_soon" in _DISABLED
                 else _native.aio_method(_native.aio_call_soon))

    if _MAKE_TRANSPORT_KNOWN:
        def _make_socket_transport(self, sock: Any, protocol: Any,
                                   waiter: Any = None, *, extra: Any = None,
                                   server: Any = None) -> Any:
            # BaseSelectorEventLoop._make_socket_transport, with our class.
            if _MAKE_TRANSPORT_ENSURES_FD:                      # 3.13+
                self._ensure_fd_no_transport(sock)
            return FastSocketTransport(self, sock, protocol, waiter, extra,
                                       server)


_probe = _socket.socket()
try:
    _native.aio_setup(
        Handle=_Handle,
        TimerHandle=events.TimerHandle,
        handle_run=_Handle._run,
        handle_slots_known=set(_Handle.__slots__) == _HANDLE_SLOTS,
        heappop=heapq.heappop,
        heapify=heapq.heapify,
        report=_report,
        run_debug=_run_debug,
        core_for=_core_for,
        run_once=_BaseEventLoop._run_once,
        call_soon=_BaseEventLoop.call_soon,
        time=_BaseEventLoop.time,
        process_events=_SelectorEventLoop._process_events,
        read_ready=_SocketTransport._read_ready,
        read_ready__data_received=_SocketTransport._read_ready__data_received,
        read_ready__get_buffer=_SocketTransport._read_ready__get_buffer,
        write=_SocketTransport.write,
        socket=_socket.socket,
        socket_socket=socket.socket,
        probe_socket=_probe,
        SocketTransport=_SocketTransport,
        FastSocketTransport=FastSocketTransport,
        NativeEventLoop=NativeEventLoop,
        deque=collections.deque,
        max_select_timeout=float(base_events.MAXIMUM_SELECT_TIMEOUT),
        min_scheduled=base_events._MIN_SCHEDULED_TIMER_HANDLES,
        min_cancelled_fraction=float(
            base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION),
        coalesce="coalesce" not in _DISABLED,
        asyncio_select="select" not in _DISABLED,
        read="read" not in _DISABLED,
    )
finally:
    _probe.close()
