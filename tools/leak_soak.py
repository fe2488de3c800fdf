"""The long leak soak of the active tier (FASTSELECTORS_BACKEND): the
measures of tests/test_leaks.py (tests/leakcheck.py) over a million cycles
of each kind per selector class.  Run by tools/leak-soak, one process per
tier::

    FASTSELECTORS_BACKEND=native PYTHONPATH=src \\
        python3 tools/leak_soak.py [--cycles N] [--kinds select,dispatch]
"""

import os
import platform
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests"))

import fastselectors  # noqa: E402
from leakcheck import (CLASS_NAMES, INJECTED, KINDS, SOAK, Rig,  # noqa: E402
                       injected_run, measure, not_measured)


def _print_report(report, failed):
    print(("FAIL " if failed else "ok   ") + report.summary(), flush=True)
    for message in failed.values():
        print("     " + message, flush=True)


def soak(cycles, kinds, class_names, self_check_cycles):
    """Run the soak profile with *cycles* cycles (scaled down for the slow
    kinds) of each kind on each class; print a line per run; return the
    number of runs that failed a check.

    First a self-check: a run that leaks one object() per cycle must fail
    the traced-memory and RSS checks, or those checks are blind here."""
    profile = SOAK.replace(cycles=cycles, warmup=min(SOAK.warmup, cycles),
                           traced_cycles=min(SOAK.traced_cycles, cycles))
    failures = 0
    print("tier {} ({} {}): {} cycles per kind and class ({}); {}".format(
        fastselectors.BACKEND, platform.python_implementation(),
        platform.python_version(), cycles,
        ", ".join("{} x{}".format(k, f) for k, f in SOAK.scale.items()),
        "; ".join(not_measured(profile)) or "every measure taken"),
        flush=True)
    if self_check_cycles:
        report, checks, _ = injected_run(
            "object", profile.replace(cycles=self_check_cycles, scale={}),
            INJECTED["object"][1] | {"rss"})
        missed = checks - set(report.failed_checks())
        print("self-check (must FAIL {}): {}".format(
            "+".join(sorted(checks)), report.summary()), flush=True)
        if missed:
            print("FAIL the {} check missed a leak of one object() per "
                  "cycle".format("+".join(sorted(missed))), flush=True)
            failures += 1
    for name in class_names:
        for kind in kinds:
            with Rig(getattr(fastselectors, name)) as rig:
                report = measure("{} {} {}".format(
                    fastselectors.BACKEND, name, kind),
                    rig.cycle(kind), rig.watched, profile.for_kind(kind))
            failed = report.failed_checks()
            _print_report(report, failed)
            failures += bool(failed)
    return failures


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(
        description="Leak soak of the active tier (FASTSELECTORS_BACKEND): "
        "the tools/leak-soak profile.")
    parser.add_argument("--cycles", type=int, default=int(
        os.environ.get("LEAK_SOAK_CYCLES", SOAK.cycles)),
        help="cycles per kind and class (modify x0.2, fail x0.1); "
        "default $LEAK_SOAK_CYCLES or %(default)s")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated, of: " + ", ".join(KINDS))
    parser.add_argument("--classes", default=",".join(CLASS_NAMES))
    parser.add_argument("--self-check-cycles", type=int, default=None,
                        help="cycles of the injected-leak self-check "
                        "(default: as many as --cycles, at least 200000; "
                        "0: skip it)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error("unknown kinds: {}".format(", ".join(sorted(unknown))))
    names = [n for n in args.classes.split(",") if n]
    for name in names:
        if name not in CLASS_NAMES:
            parser.error("no {} on this tier".format(name))
    if args.cycles < 2:
        parser.error("--cycles must be at least 2")
    self_check = args.self_check_cycles
    if self_check is None:
        self_check = max(args.cycles, 200000)
    return 1 if soak(args.cycles, kinds, names, self_check) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
