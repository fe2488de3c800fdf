"""``python -m fastselectors``: the active tier and a quick side-by-side
timing of ``select()`` against the stdlib ``selectors`` on this machine.

The workload: N socketpair ends registered for EVENT_WRITE (so all N are
ready on every call) -- the cost of one select() per ready event, which is
where the result building in C pays.  Each implementation is timed in
interleaved rounds (so drift between minutes hits both alike) and the
median is reported, with the ratio against the stdlib class of the same
name measured in the same run.
"""

import argparse
import selectors as stdlib
import socket
import statistics
import sys
import time

import fastselectors


def _time_select(sel, calls):
    select = sel.select
    start = time.perf_counter()
    for _ in range(calls):
        select(0)
    return (time.perf_counter() - start) / calls


def bench(nfds=512, rounds=7, budget=0.15):
    """Yield (class name, stdlib ns/event, ours ns/event) per selector."""
    pairs = [socket.socketpair() for _ in range(nfds // 2)]
    socks = [s for pair in pairs for s in pair]
    try:
        for name in ("EpollSelector", "PollSelector", "SelectSelector"):
            if not hasattr(fastselectors, name) or not hasattr(stdlib, name):
                continue
            if name == "SelectSelector" and max(s.fileno() for s in socks) \
                    >= 1024:
                continue    # FD_SETSIZE: select() cannot take these fds
            sels = {"stdlib": getattr(stdlib, name)(),
                    "fast": getattr(fastselectors, name)()}
            for sel in sels.values():
                for s in socks:
                    sel.register(s, fastselectors.EVENT_WRITE)
                assert len(sel.select(0)) == len(socks)
            # Calibrate the number of calls per round on the stdlib.
            calls = max(1, int(budget / _time_select(sels["stdlib"], 3)))
            samples = {k: [] for k in sels}
            for _ in range(rounds):
                for k, sel in sels.items():
                    samples[k].append(_time_select(sel, calls))
            for sel in sels.values():
                sel.close()
            med = {k: statistics.median(v) * 1e9 / len(socks)
                   for k, v in samples.items()}
            yield name, med["stdlib"], med["fast"]
    finally:
        for s in socks:
            s.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastselectors",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--fds", type=int, default=512,
                        help="ready fds per select() (default 512)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds; the median is shown")
    args = parser.parse_args(argv)

    print("fastselectors {} -- tier: {} -- Python {} ({})".format(
        fastselectors.__version__, fastselectors.BACKEND,
        sys.version.split()[0], sys.implementation.name))
    print("select(0) with {} ready fds, ns per ready event, median of {} "
          "rounds:".format(args.fds, args.rounds))
    print("  {:<16}{:>10}{:>14}{:>9}".format(
        "selector", "stdlib", "fastselectors", "speedup"))
    for name, base, ours in bench(args.fds, args.rounds):
        print("  {:<16}{:>10.1f}{:>14.1f}{:>8.2f}x".format(
            name, base, ours, base / ours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
