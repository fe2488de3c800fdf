"""The benchmark driver: every implementation in a fresh subprocess, several
rounds in rotated order, medians and paired ratios against the stdlib
``EpollSelector`` measured in the same run; JSON, a markdown table and PNG
plots in the results directory.

    python benchmarks/run.py --quick                  # smoke test, < 1 min
    python benchmarks/run.py                          # the full run
    python benchmarks/run.py --python pypy3 --impls 'fast-cffi-*,fast-pure-*,stdlib-*'
    python benchmarks/run.py --cachegrind             # + instructions/event

Exit status: 0 if every selected implementation ran or was skipped for a
printed reason (a peer or tier not installed here), 1 on any error.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import impls        # noqa: E402  (the directory is not a package)
import report       # noqa: E402

SKIP_EXIT = 3


def settings(args, pypy):
    """Per-workload sizes, events, time cap; and the warm-up seconds."""
    if args.quick:
        s = {"W1": {"sizes": [100, 1000], "events": 20000, "cap": 0.02},
             "W2": {"sizes": [10, 1000], "events": 1000, "cap": 0.02},
             "W3": {"sizes": [100], "events": 10000, "cap": 0.02}}
        warmup = 0.1 if pypy else 0.01
    else:
        s = {"W1": {"sizes": [100, 1000, 10000], "events": 1000000,
                    "cap": 0.2},
             "W2": {"sizes": [10, 100, 1000, 5000, 19000], "events": 20000,
                    "cap": 0.2},
             "W3": {"sizes": [100], "events": 200000, "cap": 0.3}}
        warmup = 1.0 if pypy else 0.05
    for w, opt in (("W1", args.w1_sizes), ("W2", args.w2_sizes),
                   ("W3", args.w3_pairs)):
        if opt:
            s[w]["sizes"] = [int(x) for x in opt.split(",") if x]
    if args.cap is not None:
        for w in s:
            s[w]["cap"] = args.cap
    if args.warmup is not None:
        warmup = args.warmup
    return s, warmup


def run_one(argv, timeout):
    """Run one child; return (status, records, stderr)."""
    env = dict(os.environ)
    env.pop("FASTSELECTORS_BACKEND", None)     # workloads.py sets its own
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              universal_newlines=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return "error", [], "timed out after {:.0f}s\n{}".format(
            timeout, exc.stderr or "")
    records = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            records.append(json.loads(line))
    if proc.returncode == SKIP_EXIT:
        return "skip", records, proc.stderr
    if proc.returncode != 0:
        return "error", records, proc.stderr or proc.stdout
    return "ok", records, proc.stderr


def summarise(samples, names_by_workload):
    """Medians and paired ratios.

    samples: {(w, impl, n): {round: record}}.  For each workload and size,
    ``speedup`` is the median over rounds of base/impl (ns per unit; > 1 is
    faster than the stdlib EpollSelector), paired within the round.  For W3
    also the selector's own cost: ns/event minus ``baseline`` ns/event of
    the same round (the callback itself), and its speedup.
    """
    out = []
    for w, names in names_by_workload.items():
        sizes = sorted({n for (w2, _, n) in samples if w2 == w})
        for name in names:
            for n in sizes:
                rounds = samples.get((w, name, n))
                if not rounds:
                    continue
                first = next(iter(rounds.values()))
                row = {"workload": w, "impl": name, "n": n,
                       "n_actual": first["n_actual"], "unit": first["unit"]}
                row.update(report.over_rounds(rounds,
                                              lambda rec: rec["value"]))
                base = samples.get((w, impls.BASE, n), {})
                speedup = report.paired(
                    rounds, base, lambda rec, b: b["value"] / rec["value"])
                if speedup is not None:
                    row["speedup"] = speedup
                cb = samples.get((w, "baseline", n), {})
                if w == "W3" and cb and name not in ("floor-c", "baseline"):
                    # The selector's own cost: minus the callback's, paired.
                    over = {r: {"value": rec["value"] - cb[r]["value"]}
                            for r, rec in rounds.items() if r in cb}
                    row["overhead"] = report.over_rounds(
                        over, lambda rec: rec["value"])["median"]
                    base_over = {r: {"value": base[r]["value"]
                                     - cb[r]["value"]}
                                 for r in over if r in base}
                    ratio = report.paired(
                        {r: o for r, o in over.items() if o["value"] > 0},
                        base_over, lambda o, b: b["value"] / o["value"])
                    if ratio is not None:
                        row["overhead_speedup"] = ratio
                out.append(row)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Implementations: " + ", ".join(
            n for n, _ in impls.catalogue()))
    parser.add_argument("--quick", action="store_true",
                        help="everything small, well under a minute "
                             "(the CI smoke test)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the workloads (default: this "
                             "one), e.g. pypy3 or a venv's python")
    parser.add_argument("--impls", default=None,
                        help="comma-separated globs, e.g. 'fast-native-*,"
                             "stdlib-*' (stdlib-epoll, and baseline for W3, "
                             "are always added: they are the references)")
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds in rotated order (default 5; quick 2)")
    parser.add_argument("--results", default=os.path.join(impls.HERE,
                                                          "results"),
                        help="results directory (default benchmarks/"
                             "results/)")
    parser.add_argument("--w1-sizes", help="W1 ready fds, comma list")
    parser.add_argument("--w2-sizes", help="W2 idle fds, comma list")
    parser.add_argument("--w3-pairs", help="W3 socketpairs, comma list")
    parser.add_argument("--cap", type=float, default=None,
                        help="time cap of one measured run, seconds")
    parser.add_argument("--warmup", type=float, default=None,
                        help="warm-up seconds per size (default 0.05; "
                             "PyPy 1.0; quick 0.01 / PyPy 0.2)")
    parser.add_argument("--cachegrind", action="store_true",
                        help="also count user-space instructions per event "
                             "with valgrind (slow: minutes)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--require", default="",
                        help="comma-separated globs of implementations that "
                             "must not be skipped (e.g. 'fast-*' in CI)")
    args = parser.parse_args(argv)

    started = time.time()
    python = shutil.which(args.python) or args.python
    info = impls.probe(python)
    pypy = info["implementation"] == "PyPy"
    cfg, warmup = settings(args, pypy)
    rounds = args.rounds or (2 if args.quick else 5)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in impls.WORKLOADS:
            parser.error("unknown workload {!r}".format(w))
    patterns = args.impls
    if patterns is not None:
        patterns += "," + impls.BASE + ",baseline"
    names = {w: impls.select(patterns, w) for w in workloads}

    print("fastselectors benchmarks: {} {} ({}), fastselectors from {}"
          .format(info["implementation"], info["version"], python,
                  info["fastselectors"]), flush=True)
    print("rounds {}, warm-up {}s/size, {}".format(
        rounds, warmup, "; ".join("{} sizes {} events {} cap {}s".format(
            w, cfg[w]["sizes"], cfg[w]["events"], cfg[w]["cap"])
            for w in workloads)), flush=True)

    tmp = impls.temp_dir()
    skipped = {}        # impl -> reason (the whole implementation)
    size_skips = {}     # (w, impl, n) -> reason
    errors = []
    floor_bin = None
    if any("floor-c" in v for v in names.values()):
        try:
            floor_bin = impls.compile_floor(tmp)
        except RuntimeError as exc:
            if "no C compiler" in str(exc):
                skipped["floor-c"] = str(exc)
            else:
                errors.append({"impl": "floor-c", "error": str(exc)})
                skipped["floor-c"] = "compile error"

    samples = {}
    try:
        for r in range(rounds):
            for w in workloads:
                for name in report.rotate(names[w], r):
                    if name in skipped:
                        continue
                    c = cfg[w]
                    argv_ = impls.command(name, python, floor_bin, w,
                                          c["sizes"], c["events"], c["cap"],
                                          warmup)
                    budget = 120 + len(c["sizes"]) * (c["cap"] + warmup
                                                      + 30)
                    t0 = time.time()
                    status, records, err = run_one(argv_, budget)
                    label = "[round {}/{}] {} {:<28}".format(
                        r + 1, rounds, w, name)
                    if status == "skip":
                        reason = records[0]["skip"] if records else err
                        skipped[name] = reason
                        print("{} SKIP: {}".format(label, reason),
                              flush=True)
                        continue
                    if status == "error":
                        errors.append({"impl": name, "workload": w,
                                       "round": r, "error": err[-4000:]})
                        print("{} ERROR:\n{}".format(label, err[-4000:]),
                              flush=True)
                        continue
                    for rec in records:
                        key = (w, name, rec["n"])
                        if "skip" in rec:
                            size_skips[key] = rec["skip"]
                            continue
                        rec["round"] = r
                        samples.setdefault(key, {})[r] = rec
                    print("{} {:.1f}s  {}".format(label, time.time() - t0,
                          "  ".join("n={} {}".format(
                              rec["n"], "skip" if "skip" in rec else
                              "{:.0f}".format(rec["value"]))
                              for rec in records)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = summarise(samples, names)
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "kernel": platform.release(),
                 "cpu": report.cpu_model(), "cpus": os.cpu_count()},
        "python": info, "quick": args.quick, "rounds": rounds,
        "warmup": warmup, "workloads": {w: cfg[w] for w in workloads},
        "base": impls.BASE, "summary": rows,
        "samples": [rec for rounds_ in samples.values()
                    for rec in rounds_.values()],
        "skipped": skipped,
        "size_skips": [{"workload": w, "impl": i, "n": n, "reason": why}
                       for (w, i, n), why in sorted(size_skips.items())],
        "errors": errors,
    }

    if args.cachegrind:
        import cachegrind
        cg_names = sorted({n for w in ("W1", "W3") if w in names
                           for n in names[w]} - set(skipped),
                          key=[n for n, _ in impls.catalogue()].index)
        cg = cachegrind.run(python, cg_names, quick=args.quick, pypy=pypy)
        result["cachegrind"] = cg
        errors.extend(cg["errors"])

    os.makedirs(args.results, exist_ok=True)
    json_path = os.path.join(args.results, "results.json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    md = report.markdown(result)
    md_path = os.path.join(args.results, "results.md")
    with open(md_path, "w") as f:
        f.write(md)
    print()
    print(md)
    print("wrote {} and {}".format(json_path, md_path))

    if not args.no_plots:
        try:
            import plot
            for path in plot.plot_all(result, args.results):
                print("wrote", path)
        except ImportError as exc:
            print("plots skipped: matplotlib is not installed in {} ({})"
                  .format(sys.executable, exc))

    required = [p.strip() for p in args.require.split(",") if p.strip()]
    import fnmatch
    for name, reason in sorted(skipped.items()):
        if any(fnmatch.fnmatchcase(name, p) for p in required):
            errors.append({"impl": name, "error": "required but skipped: "
                           + reason})
    print("{:.0f}s, {} error(s), {} skipped".format(
        time.time() - started, len(errors), len(skipped)))
    for e in errors:
        print("ERROR {}: {}".format(e.get("impl"), e["error"].strip()
                                    .splitlines()[-1] if e["error"].strip()
                                    else "?"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
