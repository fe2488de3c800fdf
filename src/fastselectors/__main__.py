"""``python -m fastselectors [bench]``: the active tier and quick timings
against the stdlib ``selectors`` on this machine.

Without arguments: select() with N ready fds (W1), a few seconds.
``bench``: W1, then W2 (ping-pong beside N idle fds) and W3 (an echo of
P pairs through callbacks: the stdlib loop against ``dispatch()``, with the
dispatch() selector's stats()).  The real harness, with peers and a C
floor, is benchmarks/ in the source.
"""

from __future__ import annotations

import argparse
import sys

import fastselectors
from fastselectors import _quickbench as qb


def _print_w1(nfds: int, rounds: int) -> None:
    nfds = min(nfds, qb.fd_budget() - 32)
    print("W1: select(0) with {} ready fds, ns per ready event:".format(
        nfds))
    print("  {:<16}{:>10}{:>14}{:>9}".format(
        "selector", "stdlib", "fastselectors", "speedup"))
    for name, base, ours in qb.w1_select_all_ready(nfds, rounds):
        print("  {:<16}{:>10.1f}{:>14.1f}{:>8.2f}x".format(
            name, base, ours, base / ours))


def _print_w2(rounds: int) -> None:
    sizes = [n for n in (10, 1000, 10000) if n <= qb.fd_budget() - 64]
    print("W2: 1-byte ping-pong beside N idle fds, ns per round trip "
          "(ratio: the stdlib's first / this):")
    for n, med in qb.w2_pingpong(sizes, rounds):
        base = next(iter(med.values()))
        print("  N={:<6} {}".format(n, ", ".join(
            "{} {:,.0f} ({:.2f}x)".format(k, v, base / v)
            for k, v in med.items())))


def _print_w3(rounds: int) -> None:
    print("W3: 100 socketpairs echoing 1 byte through callbacks, "
          "events per second:")
    rates, stats = qb.w3_echo(100, rounds)
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
