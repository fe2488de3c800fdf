"""``python -m fastselectors [bench]``: the active tier and quick timings
against the stdlib ``selectors`` on this machine, in this process, in a few
seconds (benchmarks/ in the source is the real harness: fresh processes,
peers, a C floor, cachegrind):

- W1: select() with N ready fds: ns per ready event (the default);
- W2 (``bench``): one socketpair ping-ponging beside N idle registered
  fds: ns per round trip (O(ready) epoll against O(n) poll);
- W3 (``bench``): P socketpairs echoing one byte, each event handled by a
  callback: the stdlib ``for key, ev in sel.select()`` loop against
  ``dispatch()``, with that selector's stats().

Each measurement is sized once by ``timeit.Timer.autorange`` (about 0.2 s),
then the implementations are timed in interleaved rounds (drift between
minutes hits all alike); each figure is the median of the rounds, and each
ratio is stdlib / fastselectors from the same run (above 1: faster).
"""

from __future__ import annotations

import argparse
import selectors as stdlib
import socket
import statistics
import sys
import timeit
from functools import partial

import fastselectors

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from selectors import BaseSelector, SelectorKey
    from typing import Any, TypeVar

    _K = TypeVar("_K")

READ, WRITE = fastselectors.EVENT_READ, fastselectors.EVENT_WRITE
# The class W2 and W3 run: epoll where there is one.
DEFAULT = ("EpollSelector" if hasattr(fastselectors, "EpollSelector")
           else "PollSelector" if hasattr(fastselectors, "PollSelector")
           else "SelectSelector")


def median_rounds(runners: Mapping[_K, Callable[[], object]], rounds: int,
                  unit: int = 1) -> dict[_K, float]:
    """runners: {name: fn()}, each timed as ``timeit.Timer(fn)``: sized
    once by autorange(), then one timeit() per round, interleaved.  The
    median seconds per call divided by *unit*, per name."""
    timers = {name: timeit.Timer(fn) for name, fn in runners.items()}
    number = {name: t.autorange()[0] for name, t in timers.items()}
    samples: dict[_K, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, t in timers.items():
            samples[name].append(t.timeit(number[name]) / number[name])
    return {name: statistics.median(v) / unit for name, v in samples.items()}


def fd_budget() -> int:
    """Usable fds: raise the soft limit to the hard one where allowed.
    (``resource`` is POSIX only: imported here, not at the top.)"""
    try:
        import resource
    except ImportError:     # Windows: select() takes 512 sockets there
        return 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _pairs(n: int) -> list[socket.socket]:
    """n non-blocking socketpairs, as a flat list [a0, b0, a1, b1, ...]."""
    socks: list[socket.socket] = []
    for _ in range(n):
        socks.extend(socket.socketpair())
    for s in socks:
        s.setblocking(False)
    return socks


def _close(*groups: list[Any]) -> None:
    for group in groups:
        for obj in group:
            obj.close()


def _drain(socks: list[socket.socket]) -> None:
    for s in socks:
        try:
            s.recv(4096)
        except BlockingIOError:
            pass


def w1_select_all_ready(nfds: int, rounds: int
                        ) -> Iterator[tuple[str, float, float]]:
    """Yield (selector name, stdlib ns/event, ours ns/event)."""
    socks = _pairs(nfds // 2)
    try:
        for name in ("EpollSelector", "PollSelector", "SelectSelector"):
            if not hasattr(fastselectors, name) or (
                    name == "SelectSelector"
                    and max(s.fileno() for s in socks) >= 1024):
                continue    # FD_SETSIZE: select() cannot take these fds
            sels = [getattr(stdlib, name)(), getattr(fastselectors, name)()]
            for sel in sels:
                for s in socks:
                    sel.register(s, WRITE)
            med = median_rounds({i: partial(sel.select, 0)
                                 for i, sel in enumerate(sels)},
                                rounds, len(socks))
            _close(sels)
            yield name, med[0] * 1e9, med[1] * 1e9
    finally:
        _close(socks)


def _loop(sel: BaseSelector, use_dispatch: bool, events: int
          ) -> Callable[[], None]:
    """One timed unit: handle *events* events, by dispatch() or by the
    stdlib's ``for key, ev in sel.select(): key.data(key, ev)``."""
    if use_dispatch:
        dispatch = sel.dispatch  # type: ignore[attr-defined]

        def run() -> None:
            done = 0
            while done < events:
                done += dispatch()
    else:
        select = sel.select

        def run() -> None:
            done = 0
            while done < events:
                for key, ev in select():
                    key.data(key, ev)
                    done += 1
    return run


def _echo_selectors(impls: list[tuple[str, type[BaseSelector], bool]],
                    socks: list[socket.socket], idle: list[socket.socket],
                    events: int
                    ) -> tuple[dict[str, BaseSelector],
                               dict[str, Callable[[], None]]]:
    """A selector per implementation with *socks* echoing (one byte in
    flight per pair) and *idle* registered beside them."""
    peer = {}
    for a, b in zip(socks[::2], socks[1::2]):
        peer[a], peer[b] = b, a

    def echo(key: SelectorKey, events: int) -> None:
        sock: socket.socket = key.fileobj  # type: ignore[assignment]
        sock.recv(1)
        peer[sock].send(b"x")

    sels, runners = {}, {}
    for label, cls, use_dispatch in impls:
        sel = sels[label] = cls()
        for s in idle:
            sel.register(s, READ)
        for s in socks:
            sel.register(s, READ, echo)
        runners[label] = _loop(sel, use_dispatch, events)
    for a in socks[::2]:
        a.send(b"x")
    return sels, runners


def w2_pingpong(idle_counts: list[int], rounds: int
                ) -> Iterator[tuple[int, dict[str, float]]]:
    """Yield (N idle, {impl: ns per round trip}) for epoll and poll."""
    impls = [("stdlib " + n[:-8].lower(), getattr(stdlib, n), False)
             for n in ("EpollSelector", "PollSelector")
             if hasattr(fastselectors, n)]
    impls += [("fast " + label[7:], getattr(fastselectors, cls.__name__),
               False) for label, cls, _ in impls]
    impls.append(("fast {} dispatch".format(DEFAULT[:-8].lower()),
                  getattr(fastselectors, DEFAULT), True))
    for n in idle_counts:
        idle, socks = _pairs(n // 2), _pairs(1)
        # O(n) poll makes a round trip cost ~n: fewer of them for big n.
        events = max(10, 20000 // max(n, 100))
        sels, runners = _echo_selectors(impls, socks, idle, events)
        try:
            med = median_rounds(runners, rounds, events // 2)
            yield n, {k: v * 1e9 for k, v in med.items()}
        finally:
            _close(list(sels.values()), idle, socks)


def w3_echo(npairs: int, rounds: int
            ) -> tuple[dict[str, float], dict[str, Any]]:
    """({impl: events per second}, the dispatch() selector's stats()) for
    *npairs* pairs echoing a byte each."""
    socks = _pairs(npairs)
    impls = [("stdlib select() loop", getattr(stdlib, DEFAULT), False),
             ("fast select() loop", getattr(fastselectors, DEFAULT), False),
             ("fast dispatch()", getattr(fastselectors, DEFAULT), True)]
    sels, runners = _echo_selectors(impls, socks, [], 2000)
    try:
        sels["fast dispatch()"].stats(  # type: ignore[attr-defined]
            reset=True)
        med = median_rounds(runners, rounds, 2000)
        stats = sels["fast dispatch()"].stats()  # type: ignore[attr-defined]
    finally:
        _close(list(sels.values()), socks)
    return {label: 1 / v for label, v in med.items()}, stats


def _print_w1(nfds: int, rounds: int) -> None:
    nfds = min(nfds, fd_budget() - 32)
    print("W1: select(0) with {} ready fds, ns per ready event:".format(
        nfds))
    print("  {:<16}{:>10}{:>14}{:>9}".format(
        "selector", "stdlib", "fastselectors", "speedup"))
    for name, base, ours in w1_select_all_ready(nfds, rounds):
        print("  {:<16}{:>10.1f}{:>14.1f}{:>8.2f}x".format(
            name, base, ours, base / ours))


def _print_w2(rounds: int) -> None:
    sizes = [n for n in (10, 1000, 10000) if n <= fd_budget() - 64]
    print("W2: 1-byte ping-pong beside N idle fds, ns per round trip "
          "(ratio: the stdlib's first / this):")
    for n, med in w2_pingpong(sizes, rounds):
        base = next(iter(med.values()))
        print("  N={:<6} {}".format(n, ", ".join(
            "{} {:,.0f} ({:.2f}x)".format(k, v, base / v)
            for k, v in med.items())))


def _print_w3(rounds: int) -> None:
    print("W3: 100 socketpairs echoing 1 byte through callbacks, "
          "events per second:")
    rates, stats = w3_echo(100, rounds)
    base = rates["stdlib select() loop"]
    for label, rate in rates.items():
        print("  {:<22}{:>12,.0f}{:>8.2f}x".format(label, rate, rate / base))
    print("  dispatch()'s stats(): {waits:,} waits, {events:,} events "
          "({per:.1f} a wait, at most {max_batch}), {callbacks:,} "
          "callbacks, {empty_waits} empty waits, {idle_time:.3f} s blocked "
          "in the kernel".format(per=stats["events"] / max(stats["waits"], 1),
                                 **stats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastselectors",
        description=(__doc__ or "").split("\n\n")[0])   # None under -OO
    parser.add_argument("what", nargs="?", choices=["bench"],
                        help="also run W2 and W3")
    parser.add_argument("--fds", type=int, default=512,
                        help="ready fds per select() in W1 (default 512)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds; the median is shown")
    args = parser.parse_args(argv)

    print("fastselectors {} -- tier: {} -- Python {} ({})".format(
        fastselectors.__version__, fastselectors.BACKEND,
        sys.version.split()[0], sys.implementation.name))
    print("medians of {} interleaved rounds; ratios are stdlib / "
          "fastselectors from this run (above 1: faster)".format(
              args.rounds))
    _print_w1(args.fds, args.rounds)
    if args.what == "bench":
        _print_w2(args.rounds)
        _print_w3(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
