"""The quick benchmarks behind ``python -m fastselectors [bench]``.

Small versions of benchmarks/ (which is the real harness: fresh processes,
peers, a C floor, cachegrind), run in this process so that a user sees in a
few seconds what fastselectors does on their machine:

- W1: select() with N ready fds: ns per ready event;
- W2: one socketpair ping-ponging beside N idle registered fds: ns per
  round trip (O(ready) epoll against O(n) poll);
- W3: P socketpairs echoing one byte, each event handled by a callback:
  the stdlib ``for key, ev in sel.select()`` loop against ``dispatch()``.

Implementations are timed in interleaved rounds (drift between minutes hits
all alike); each figure is the median of the rounds, and each ratio is
stdlib / fastselectors from the same run (above 1: fastselectors faster).
"""

from __future__ import annotations

import resource
import selectors as stdlib
import socket
import statistics
import time

import fastselectors

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from selectors import BaseSelector, SelectorKey
    from typing import TypeVar

    from ._selectors import CoreSelector

    _K = TypeVar("_K")
    _S = TypeVar("_S", bound=BaseSelector)
    Pair = tuple[socket.socket, socket.socket]

READ, WRITE = fastselectors.EVENT_READ, fastselectors.EVENT_WRITE

# Every file object registered here is a socket, which SelectorKey's type
# (its fileobj is any FileDescriptorLike) cannot say: hence the few
# "type: ignore"s on key.fileobj below (a check would cost time in the
# timed loops).


def _median_rounds(runners: Mapping[_K, Callable[..., float]],
                   rounds: int) -> dict[_K, float]:
    """runners: {name: fn() -> seconds per unit}; median per name.
    (Each fn is called without arguments: ``...`` lets them be lambdas
    that bind their loop variables as defaults.)"""
    samples: dict[_K, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            samples[name].append(fn())
    return {name: statistics.median(v) for name, v in samples.items()}


def _pairs(n: int) -> list[Pair]:
    return [socket.socketpair() for _ in range(n)]


def _close(pairs: Iterable[Pair]) -> None:
    for a, b in pairs:
        a.close()
        b.close()


def _fd_budget() -> int:
    """Usable fds: raise the soft limit to the hard one where allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _classes(name: str
             ) -> tuple[type[BaseSelector], type[BaseSelector]] | None:
    ours = getattr(fastselectors, name, None)
    theirs = getattr(stdlib, name, None)
    return (theirs, ours) if ours is not None and theirs is not None \
        else None


def w1_select_all_ready(nfds: int, rounds: int, budget: float = 0.1
                        ) -> Iterator[tuple[str, float, float]]:
    """Yield (selector name, stdlib ns/event, ours ns/event)."""
    pairs = _pairs(nfds // 2)
    socks = [s for pair in pairs for s in pair]
    try:
        for name in ("EpollSelector", "PollSelector", "SelectSelector"):
            classes = _classes(name)
            if classes is None or (name == "SelectSelector" and max(
                    s.fileno() for s in socks) >= 1024):
                continue    # FD_SETSIZE: select() cannot take these fds
            sels = [cls() for cls in classes]
            for sel in sels:
                for s in socks:
                    sel.register(s, WRITE)
            calls = max(1, int(budget / _time_calls(sels[0].select, 3)))
            med = _median_rounds(
                {i: (lambda s=sel: _time_calls(s.select, calls))
                 for i, sel in enumerate(sels)}, rounds)
            for sel in sels:
                sel.close()
            yield name, med[0] * 1e9 / len(socks), med[1] * 1e9 / len(socks)
    finally:
        _close(pairs)


def _time_calls(select: Callable[[float], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        select(0)
    return (time.perf_counter() - start) / calls


def _pingpong_select(sel: BaseSelector, a: socket.socket, b: socket.socket,
                     trips: int) -> float:
    """One byte bounced between a and b, each woken by sel.select()."""
    buf = b"x"
    start = time.perf_counter()
    b.send(buf)
    for _ in range(trips):
        for key, _ in sel.select():
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            sock.recv(1)
            (b if sock is a else a).send(buf)
    elapsed = time.perf_counter() - start
    for s in (a, b):        # drain the byte still in flight
        try:
            s.recv(1)
        except BlockingIOError:
            pass
    return elapsed / trips


def w2_pingpong(idle_counts: Iterable[int], rounds: int, trips: int = 3000
                ) -> Iterator[tuple[int, dict[str, float]]]:
    """Yield (N idle, {impl: ns per round trip}) for epoll and poll."""
    impls = [("stdlib epoll", stdlib.EpollSelector, False),
             ("fast epoll", fastselectors.EpollSelector, False),
             ("fast epoll dispatch", fastselectors.EpollSelector, True),
             ("stdlib poll", stdlib.PollSelector, False),
             ("fast poll", fastselectors.PollSelector, False)] \
        if hasattr(fastselectors, "EpollSelector") else \
        [("stdlib poll", stdlib.PollSelector, False),
         ("fast poll", fastselectors.PollSelector, False),
         ("fast poll dispatch", fastselectors.PollSelector, True)]
    for n in idle_counts:
        idle = _pairs(n // 2)
        (a, b), = _pairs(1)
        for s in (a, b):
            s.setblocking(False)
        sels: dict[str, tuple[BaseSelector, bool]] = {}
        try:
            for label, cls, use_dispatch in impls:
                sel = cls()
                for x, y in idle:
                    sel.register(x, READ)
                    sel.register(y, READ)
                if use_dispatch:
                    def echo(key: SelectorKey, events: int,
                             a: socket.socket = a,
                             b: socket.socket = b) -> None:
                        key.fileobj.recv(1)  # type: ignore[union-attr]
                        (b if key.fileobj is a else a).send(b"x")
                    sel.register(a, READ, echo)
                    sel.register(b, READ, echo)
                else:
                    sel.register(a, READ)
                    sel.register(b, READ)
                sels[label] = (sel, use_dispatch)
            # O(n) poll makes a round trip cost ~n: fewer trips for big n.
            per = max(100, trips * 100 // max(n, 100))
            med = _median_rounds(
                {label: (lambda s=sel, d=use_dispatch:
                         _pingpong_dispatch(s, a, b, per) if d
                         else _pingpong_select(s, a, b, per))
                 for label, (sel, use_dispatch) in sels.items()}, rounds)
            yield n, {k: v * 1e9 for k, v in med.items()}
        finally:
            for sel, _ in sels.values():
                sel.close()
            _close(idle + [(a, b)])


def _pingpong_dispatch(sel: CoreSelector, a: socket.socket,
                       b: socket.socket, trips: int) -> float:
    start = time.perf_counter()
    b.send(b"x")
    for _ in range(trips):
        sel.dispatch()
    elapsed = time.perf_counter() - start
    for s in (a, b):
        try:
            s.recv(1)
        except BlockingIOError:
            pass
    return elapsed / trips


def w3_echo(npairs: int, rounds: int, events: int = 20000
            ) -> dict[str, float]:
    """{impl: events per second} for P pairs echoing a byte each."""
    pairs = _pairs(npairs)
    for a, b in pairs:
        a.setblocking(False)
        b.setblocking(False)
    peer = {}
    for a, b in pairs:
        peer[a], peer[b] = b, a

    def callback(key: SelectorKey, events: int) -> None:
        sock: socket.socket = key.fileobj  # type: ignore[assignment]
        sock.recv(1)
        peer[sock].send(b"x")

    def stdlib_loop(sel: BaseSelector, n: int) -> int:
        done = 0
        while done < n:
            for key, ev in sel.select():
                key.data(key, ev)
                done += 1
        return done

    def dispatch_loop(sel: CoreSelector, n: int) -> int:
        done = 0
        dispatch = sel.dispatch
        while done < n:
            done += dispatch()
        return done

    default = "EpollSelector" if hasattr(fastselectors, "EpollSelector") \
        else "PollSelector"
    impls = {"stdlib select() loop": (getattr(stdlib, default), stdlib_loop),
             "fast select() loop": (getattr(fastselectors, default),
                                    stdlib_loop),
             "fast dispatch()": (getattr(fastselectors, default),
                                 dispatch_loop)}

    def run(cls: Callable[[], _S], loop: Callable[[_S, int], int]) -> float:
        sel = cls()
        try:
            for a, b in pairs:
                sel.register(a, READ, callback)
                sel.register(b, READ, callback)
            for a, _ in pairs:
                a.send(b"x")        # one byte in flight per pair
            start = time.perf_counter()
            done = loop(sel, events)
            elapsed = time.perf_counter() - start
            for a, b in pairs:      # drain what is still in flight
                for s in (a, b):
                    try:
                        s.recv(16)
                    except BlockingIOError:
                        pass
            return elapsed / done
        finally:
            sel.close()

    try:
        med = _median_rounds({label: (lambda c=cls, lp=loop: run(c, lp))
                              for label, (cls, loop) in impls.items()},
                             rounds)
    finally:
        _close(pairs)
    return {label: 1 / v for label, v in med.items()}
