"""A/B: the same workloads under two installs of fastselectors (say, the
last release and this checkout), in one run, rounds in rotated order, each
run a fresh process; medians, and B/A ratios paired within each round.

    python benchmarks/ab.py --a before=/venv-old/bin/python \\
        --b after=.venv-pypy/bin/python \\
        --impls fast-cffi-epoll,fast-cffi-epoll-dispatch,stdlib-epoll

The implementations are benchmarks/impls.py's names; ``stdlib-*`` rows are
the control: the same code under both, so their ratio shows the noise of
the run.  A ratio above 1 means B is faster (fewer ns per unit).
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import impls        # noqa: E402
import report       # noqa: E402


def run(argv):
    env = dict(os.environ)
    env.pop("FASTSELECTORS_BACKEND", None)
    proc = subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError("{}: {}".format(" ".join(argv), proc.stderr))
    return [json.loads(line) for line in proc.stdout.splitlines()
            if line.startswith("{")]


def labelled(spec):
    label, _, python = spec.partition("=")
    if not python:
        raise argparse.ArgumentTypeError("expected LABEL=PYTHON")
    return label, python


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=labelled, required=True)
    parser.add_argument("--b", type=labelled, required=True)
    parser.add_argument("--impls", required=True)
    parser.add_argument("--workloads", default="W1,W3")
    parser.add_argument("--sizes", default="W1=100,1000;W3=100")
    parser.add_argument("--events", type=int, default=200000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cap", type=float, default=0.3)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    sizes = dict(part.split("=") for part in args.sizes.split(";"))
    names = [n.strip() for n in args.impls.split(",") if n.strip()]
    sides = [args.a, args.b]
    samples = {}        # (workload, impl, n, label) -> {round: record}
    for r in range(args.rounds):
        for w in args.workloads.split(","):
            runs = [(name, side) for name in names for side in sides]
            for name, (label, python) in report.rotate(runs, r):
                argv_ = impls.command(name, python, None, w,
                                      sizes[w].split(","), args.events,
                                      args.cap, args.warmup)
                for rec in run(argv_):
                    if "skip" not in rec:
                        samples.setdefault((w, name, rec["n"], label),
                                           {})[r] = rec
            print("round {}/{} {} done".format(r + 1, args.rounds, w),
                  flush=True)
    (la, _), (lb, _) = sides
    print("\n| workload | n | implementation | {} | {} | {}/{} |".format(
        la, lb, lb, la))
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for (w, name, n, label), rounds in sorted(samples.items()):
        if label != la:
            continue
        other = samples.get((w, name, n, lb), {})
        med = report.over_rounds(rounds, lambda rec: rec["value"])["median"]
        med_b = report.over_rounds(other, lambda rec: rec["value"])[
            "median"] if other else float("nan")
        ratio = report.paired(rounds, other,
                              lambda a, b: a["value"] / b["value"])
        print("| {} | {} | {} | {:.1f} | {:.1f} | {} |".format(
            w, n, name, med, med_b,
            "--" if ratio is None else "{:.3f}x".format(ratio)))
    print("\n(ns per unit: W1 per ready event, W3 per event; medians of "
          "{} rounds; last column: the speed-up of {} over {}, paired "
          "per round)".format(
              args.rounds, lb, la))
    return 0


if __name__ == "__main__":
    sys.exit(main())
