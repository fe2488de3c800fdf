"""The catalogue of implementations, and how to start one.

An implementation is a name; ``workloads.py`` turns it into a reactor, or,
for ``floor-c``, the C program ``floor.c`` compiled here at run time.
Shared by ``run.py`` and ``cachegrind.py``.
"""

import fnmatch
import json
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS_PY = os.path.join(HERE, "workloads.py")
FLOOR_C = os.path.join(HERE, "floor.c")

TIERS = ("native", "cffi", "pure")
CLASSES = ("epoll", "poll", "select")
WORKLOADS = ("W1", "W2", "W3")
BASE = "stdlib-epoll"       # every ratio is against this, in the same run


def catalogue():
    """Every implementation, in report order, with the workloads it runs
    by default: [(name, {"W1", ...}), ...]."""
    out = []
    for tier in TIERS:
        for cls in CLASSES:
            out.append(("fast-{}-{}".format(tier, cls), set(WORKLOADS)))
        for cls in CLASSES:
            # dispatch(): all classes in W3 (the callback workload), the
            # epoll class in W1/W2 too.
            out.append(("fast-{}-{}-dispatch".format(tier, cls),
                        set(WORKLOADS) if cls == "epoll" else {"W3"}))
    for cls in CLASSES:
        out.append(("stdlib-" + cls, set(WORKLOADS)))
    for name in ("raw-epoll", "asyncio", "uvloop", "gevent", "floor-c"):
        out.append((name, set(WORKLOADS)))
    out.append(("baseline", {"W3"}))
    return out


def select(patterns, workload):
    """The implementations of *workload* matching any of *patterns*
    (comma-separated fnmatch globs; None means the defaults)."""
    names = []
    for name, workloads in catalogue():
        if patterns is None:
            if workload in workloads:
                names.append(name)
        elif any(fnmatch.fnmatchcase(name, p.strip())
                 for p in patterns.split(",") if p.strip()):
            if workload != "W3" and name == "baseline":
                continue
            names.append(name)
    return names


def compile_floor(tmpdir):
    """Compile floor.c with ``cc -O2`` into *tmpdir*; return the binary's
    path, or raise RuntimeError with the reason."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise RuntimeError("no C compiler ({!r} not found)".format(cc))
    out = os.path.join(tmpdir, "floor")
    proc = subprocess.run([cc, "-O2", "-o", out, FLOOR_C],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("cc failed:\n" + proc.stdout)
    return out


def command(name, python, floor_bin, workload, sizes, events, cap, warmup,
            warmup_events=0, repeat=1):
    """The argv that runs *name* on *workload* for *sizes*."""
    sizes = ",".join(str(n) for n in sizes)
    if name == "floor-c":
        return [floor_bin, workload, sizes, str(events), str(warmup_events),
                repr(float(warmup)), repr(float(cap))]
    return [python, WORKLOADS_PY, "--impl", name, "--workload", workload,
            "--sizes", sizes, "--events", str(events), "--cap", repr(cap),
            "--warmup", repr(warmup), "--warmup-events", str(warmup_events),
            "--repeat", str(repeat)]


def probe(python):
    """What the child interpreter is: {"implementation", "version",
    "fastselectors": path or error}."""
    code = ("import json, platform, sys\n"
            "info = {'implementation': platform.python_implementation(),\n"
            "        'version': platform.python_version(),\n"
            "        'executable': sys.executable}\n"
            "try:\n"
            "    import fastselectors\n"
            "    info['fastselectors'] = fastselectors.__file__\n"
            "    info['default_tier'] = fastselectors.BACKEND\n"
            "except Exception as exc:\n"
            "    info['fastselectors'] = 'not importable: %r' % (exc,)\n"
            "print(json.dumps(info))\n")
    env = dict(os.environ)
    env.pop("FASTSELECTORS_BACKEND", None)
    proc = subprocess.run([python, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=env, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("{} does not run: {}".format(python, proc.stderr))
    return json.loads(proc.stdout)


def temp_dir():
    return tempfile.mkdtemp(prefix="fastselectors-bench-")
