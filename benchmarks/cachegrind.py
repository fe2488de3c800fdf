"""User-space instructions per event, counted by valgrind's cachegrind.

Wall-clock times drift on a shared machine; instruction counts do not.
Each implementation runs a small fixed-size workload under
``valgrind --tool=cachegrind`` twice, with the same count-based warm-up and
two different event counts; ``(Ir2 - Ir1) / (events2 - events1)`` cancels
interpreter start-up, imports, set-up and warm-up, leaving the cost of one
event in the steady state (syscalls' kernel work is not counted: valgrind
sees user space only).  PYTHONHASHSEED is fixed so both runs hash alike.

    python benchmarks/cachegrind.py [--python P] [--impls GLOBS] [--quick]

Also run by ``run.py --cachegrind``, which puts the figures in its report.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import impls        # noqa: E402

SKIP_EXIT = 3


def specs(quick, pypy):
    """The workloads counted: W1 at N=1000 and W3 at P=100."""
    if quick:
        s = [("W1", 1000, 2000, (5000, 15000)), ("W3", 100, 1000,
                                                 (2000, 6000))]
    else:
        s = [("W1", 1000, 5000, (20000, 100000)), ("W3", 100, 5000,
                                                   (5000, 25000))]
    if pypy:    # the JIT compiles after some thousands of iterations
        s = [(w, n, warm * 20, ev) for w, n, warm, ev in s]
    return [{"label": "{}-{}".format(w, n), "workload": w, "n": n,
             "warmup_events": warm, "events": list(ev)}
            for w, n, warm, ev in s]


def count(name, python, floor_bin, spec, events, tmpdir):
    """Run one implementation under cachegrind; return (status, Ir, events
    done, message)."""
    out = os.path.join(tmpdir, "cg.{}.{}.{}".format(name, spec["label"],
                                                    events))
    argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
            "--branch-sim=no", "--cachegrind-out-file=" + out, "--"]
    argv += impls.command(name, python, floor_bin, spec["workload"],
                          [spec["n"]], events, cap=3600.0, warmup=0.0,
                          warmup_events=spec["warmup_events"])
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("FASTSELECTORS_BACKEND", None)
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              universal_newlines=True, env=env, timeout=1800)
    except subprocess.TimeoutExpired:
        return "error", None, None, "timed out under valgrind"
    records = [json.loads(line) for line in proc.stdout.splitlines()
               if line.startswith("{")]
    if proc.returncode == SKIP_EXIT:
        return "skip", None, None, records[0]["skip"] if records else "?"
    if proc.returncode != 0 or not records:
        return "error", None, None, (proc.stderr or proc.stdout)[-3000:]
    if "skip" in records[0]:
        return "skip", None, None, records[0]["skip"]
    ir = None
    with open(out) as f:
        for line in f:
            if line.startswith("summary:"):
                ir = int(line.split()[1])
    os.unlink(out)
    if ir is None:
        return "error", None, None, "no summary line in " + out
    return "ok", ir, records[0]["events"], ""


def run(python, names, quick=False, pypy=False, jobs=None, log=print):
    """Count *names*; return {"specs", "base", "results": {name: {label:
    instr/event}}, "raw", "skipped", "errors"}."""
    result = {"specs": specs(quick, pypy), "base": impls.BASE,
              "results": {}, "raw": [], "skipped": {}, "errors": []}
    if shutil.which("valgrind") is None:
        result["errors"].append({"impl": "cachegrind", "error":
                                 "valgrind is not installed (apt-get "
                                 "install valgrind)"})
        return result
    tmp = impls.temp_dir()
    floor_bin = None
    try:
        if "floor-c" in names:
            try:
                floor_bin = impls.compile_floor(tmp)
            except RuntimeError as exc:
                result["skipped"]["floor-c"] = str(exc)
                names = [n for n in names if n != "floor-c"]
        tasks = []
        for name in names:
            for spec in result["specs"]:
                if name == "baseline" and spec["workload"] != "W3":
                    continue
                for events in spec["events"]:
                    tasks.append((name, spec, events))
        jobs = jobs or os.cpu_count() or 1
        done = {}
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            futures = {pool.submit(count, name, python, floor_bin, spec,
                                   events, tmp): (name, spec["label"], events)
                       for name, spec, events in tasks}
            for fut in concurrent.futures.as_completed(futures):
                done[futures[fut]] = fut.result()
        for name in names:
            for spec in result["specs"]:
                e1, e2 = spec["events"]
                a = done.get((name, spec["label"], e1))
                b = done.get((name, spec["label"], e2))
                if a is None or b is None:
                    continue
                if "skip" in (a[0], b[0]):
                    result["skipped"][name] = a[3] or b[3]
                    continue
                if "error" in (a[0], b[0]):
                    result["errors"].append({"impl": name, "error":
                                             "cachegrind {}: {}".format(
                                                 spec["label"], a[3] or b[3])})
                    continue
                if b[2] == a[2]:
                    result["errors"].append({"impl": name, "error":
                                             "same event count in both runs"})
                    continue
                ipe = (b[1] - a[1]) / (b[2] - a[2])
                result["results"].setdefault(name, {})[spec["label"]] = \
                    round(ipe, 1)
                result["raw"].append({"impl": name, "spec": spec["label"],
                                      "ir": [a[1], b[1]],
                                      "events": [a[2], b[2]]})
                log("cachegrind {:<28} {}: {:,.0f} instructions/event"
                    .format(name, spec["label"], ipe))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--impls", default=None,
                        help="comma-separated globs (default: all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=None,
                        help="valgrind runs in parallel (default: CPUs)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    python = shutil.which(args.python) or args.python
    info = impls.probe(python)
    patterns = None if args.impls is None else args.impls + "," + impls.BASE
    order = [n for n, _ in impls.catalogue()]
    names = sorted(set(impls.select(patterns, "W1"))
                   | set(impls.select(patterns, "W3")), key=order.index)
    result = run(python, names, quick=args.quick,
                 pypy=info["implementation"] == "PyPy", jobs=args.jobs)
    import report
    print("\n".join(report.cachegrind_table(result)))
    for name, why in sorted(result["skipped"].items()):
        print("skipped {}: {}".format(name, why))
    for e in result["errors"]:
        print("ERROR {}: {}".format(e["impl"], e["error"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
