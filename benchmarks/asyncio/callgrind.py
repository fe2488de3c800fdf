#!/usr/bin/env python3
"""Instructions per event/request of each loop, counted by callgrind.

    python benchmarks/asyncio/callgrind.py [--workloads w3,http,...]
                                           [--loops asyncio,fast-asyncio,uvloop]

Wall-clock figures drift on a shared machine; instruction counts do not.
Each server (aioservers.py) or the W3 program (w3.py) runs under
``valgrind --tool=callgrind`` twice, for a fixed amount of work N1 and N2
(load_client.c ``-n`` drives the servers; w3.py ``--events``), and the
instructions per unit are (I(N2) - I(N1)) / (N2 - N1): start-up, imports
and shutdown cancel out.  User-space instructions only (callgrind does not
see the kernel), of the server process only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "aioservers.py")
W3 = os.path.join(HERE, "w3.py")
CLIENT_C = os.path.join(HERE, "load_client.c")


def instructions(out_file):
    with open(out_file) as f:
        for line in f:
            m = re.match(r"(summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(2))
    raise RuntimeError("no totals in " + out_file)


def valgrind(out_file):
    return ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out_file,
            "--dump-instr=no", "--compress-strings=no"]


def run_w3(args, loop, n, tmp):
    out = os.path.join(tmp, "cg.w3.{}.{}".format(loop, n))
    cmd = valgrind(out) + [args.python, W3, "--loop", loop, "--events",
                           str(n), "--warmup", "0", "--pairs",
                           str(args.pairs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    events = json.loads(proc.stdout.strip().splitlines()[-1])["events"]
    return instructions(out), events


def run_server(args, loop, app, n, tmp, client):
    out = os.path.join(tmp, "cg.{}.{}.{}".format(app, loop, n))
    cmd = valgrind(out) + [args.python, SERVERS, "--loop", loop, "--app",
                           app, "--max-seconds", "900"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    port = proc.stdout.readline().strip()
    if not port:
        proc.kill()
        raise RuntimeError(proc.stderr.read()[-2000:])
    mode = "http" if app.startswith("http") else app
    res = subprocess.run([client, mode, port, str(args.connections), "-n",
                          str(n)], capture_output=True, text=True,
                         timeout=900)
    proc.stdin.close()
    tail = proc.stdout.read()
    proc.wait(300)
    if res.returncode != 0:
        raise RuntimeError("client: " + res.stdout + res.stderr)
    answers = json.loads(res.stdout.strip().splitlines()[-1])["answers"]
    served = json.loads(tail.strip().splitlines()[-1])["requests"]
    if served < answers:
        raise RuntimeError("server served {} < {}".format(served, answers))
    return instructions(out), answers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="w3,http,http-split,echo,resp")
    parser.add_argument("--loops", default="asyncio,fast-asyncio,uvloop")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--n1", type=int, default=2000)
    parser.add_argument("--n2", type=int, default=6000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="aio-cg-")
    client = os.path.join(tmp, "load_client")
    subprocess.run(["gcc", "-O2", "-o", client, CLIENT_C], check=True)
    loops = args.loops.split(",")
    rows = {}
    for w in args.workloads.split(","):
        for loop in loops:
            try:
                if w == "w3":
                    i1, e1 = run_w3(args, loop, args.n1 * 10, tmp)
                    i2, e2 = run_w3(args, loop, args.n2 * 10, tmp)
                else:
                    i1, e1 = run_server(args, loop, w, args.n1, tmp, client)
                    i2, e2 = run_server(args, loop, w, args.n2, tmp, client)
            except (RuntimeError, subprocess.SubprocessError) as exc:
                print("ERROR {} {}: {}".format(w, loop, exc), flush=True)
                continue
            per = (i2 - i1) / (e2 - e1)
            rows.setdefault(w, {})[loop] = per
            print("{:<10} {:<13} {:>9.0f} instructions/{}".format(
                w, loop, per, "event" if w == "w3" else "request"),
                flush=True)
    print()
    print("| workload | " + " | ".join(loops) + " | " + " | ".join(
        "{} / asyncio".format(lp) for lp in loops[1:]) + " |")
    print("| --- |" + " ---: |" * (2 * len(loops) - 1))
    for w, r in rows.items():
        cells = ["{:,.0f}".format(r[lp]) if lp in r else "-" for lp in loops]
        base = r.get(loops[0])
        cells += ["{:.2f}".format(r[lp] / base) if lp in r and base else "-"
                  for lp in loops[1:]]
        print("| {} | {} |".format(w, " | ".join(cells)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
