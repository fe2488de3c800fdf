#!/usr/bin/env python3
"""asyncio vs fastselectors.asyncio vs uvloop, side by side in one run.

    python benchmarks/asyncio/run.py --quick       # smoke test, ~1 min
    python benchmarks/asyncio/run.py               # 5 rounds, ~12 min

Workloads (each loop in a fresh process per round, rounds in rotated
order; the server pinned to the first CPU, the client to the second):

    w3          100 socketpairs, ``loop.add_reader`` callbacks reading and
                writing back one byte (w3.py); in-process, no client; the
                stdlib ``selectors`` select() loop runs the same callbacks as
                the reference
    http        benchmarks/http's keep-alive HttpProtocol under
                ``wrk -t1 -c50`` (one write() per answer)
    http-split  the same answers written as head + body, two write()s
    echo        ``asyncio.start_server`` streams echo, 100-byte messages, 50
                connections, driven by load_client.c (compiled here)
    resp        RESP PING server under ``redis-benchmark -P1 -c50 -t
                ping_mbulk``; -n is set from a warm-up run so the measured
                run takes about --duration seconds (and is killed after 3x).
                At -P1 redis-benchmark's one thread is the bottleneck
                (99% of its core, whatever the server): req/s then follows
                the client's cost per request, which is higher against a
                faster server (fewer replies per wakeup).
                --resp-pipeline 16 makes the server the bottleneck.

Reported per workload and loop: the median over rounds of requests (events)
per second, the median of the per-round ratios against asyncio, and the
server's user CPU per request (microseconds, from /proc/PID/stat over the
measured window; for w3 getrusage of the measured part).  Compare only
within one run: absolute figures drift on a shared machine.

Exit status 1 on any error (wrong bytes, a server that died, a client
error); a loop or client that is not installed is skipped with the reason.
"""

import argparse
import csv
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "aioservers.py")
W3 = os.path.join(HERE, "w3.py")
CLIENT_C = os.path.join(HERE, "load_client.c")
LOOPS = ("asyncio", "fast-asyncio", "uvloop")
# --steps: fastselectors.asyncio with its fast paths added one at a time
# (FASTSELECTORS_AIO_DISABLE, src/fastselectors/_aio.py), between asyncio
# and uvloop.  "fast-asyncio~A+B" runs fast-asyncio with A and B disabled.
STEPS = [
    ("S0", "engine,select,call_soon,read,write,coalesce"),
    ("S1", "select,call_soon,read,write,coalesce"),
    ("S2", "call_soon,read,write,coalesce"),
    ("S3", "read,write,coalesce"),
    ("S4", "write,coalesce"),
    ("S5", "coalesce"),
    ("S6", ""),
]
STEP_NAMES = {
    "S0": "stock loop, our selector", "S1": "(b) the turn in C",
    "S2": "+ (a) _asyncio_select", "S3": "+ call_soon in C",
    "S4": "+ read path in C", "S5": "+ write in C",
    "S6": "+ write coalescing (all)"}


def loop_env(loop):
    """(the --loop argument, extra environment) of a loop spec."""
    if "~" in loop:
        name, disabled = loop.split("~", 1)
        return name, {"FASTSELECTORS_AIO_DISABLE":
                      disabled.replace("+", ",")}
    return loop, {}


def step_spec(label):
    return "fast-asyncio~" + dict(STEPS)[label].replace(",", "+")
WORKLOADS = ("w3", "http", "http-split", "echo", "resp")
BASE = "asyncio"

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n"
            b"Content-Type: text/plain\r\n\r\nHello, World!")


class RunError(Exception):
    pass


class Skip(Exception):
    pass


def clk_tck():
    return os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """(utime, stime) of *pid* in seconds."""
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / clk_tck(), int(fields[12]) / clk_tck()


def pinned(argv, cpu):
    if cpu is None or not shutil.which("taskset"):
        return argv
    return ["taskset", "-c", str(cpu)] + argv


class Server:
    def __init__(self, args, loop, app):
        loop, env = loop_env(loop)
        argv = pinned([args.python, SERVERS, "--loop", loop, "--app", app,
                       "--max-seconds", str(args.duration * 3 + 120)],
                      args.server_cpu)
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     env=dict(os.environ, **env),
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     universal_newlines=True)
        line = self.proc.stdout.readline()
        if not line.strip():
            rc = self.proc.wait(10)
            self.err.seek(0)
            msg = self.err.read()
            if rc == 3:
                raise Skip(msg.strip())
            raise RunError("{} {} did not start: {}".format(loop, app, msg))
        self.port = int(line)
        # The server process itself (taskset execs it: same pid).
        self.pid = self.proc.pid

    def cpu(self):
        return proc_cpu(self.pid)

    def stop(self):
        self.proc.stdin.close()
        try:
            out = self.proc.stdout.read()
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RunError("server did not stop")
        if rc != 0:
            self.err.seek(0)
            raise RunError("server exit {}: {}".format(rc, self.err.read()))
        return json.loads(out.strip().splitlines()[-1])


def check_http(port, split):
    """Pipelined and split requests get exactly the expected bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(req * 3)
        want = RESPONSE * 3
        got = b""
        while len(got) < len(want):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        if got != want:
            raise RunError("http{}: wrong answer {!r}".format(
                "-split" if split else "", got[:200]))


def run_wrk(args, port, seconds):
    argv = pinned(["wrk", "-t1", "-c{}".format(args.connections),
                   "-d{}s".format(max(1, int(round(seconds)))), "--latency",
                   "http://127.0.0.1:{}/".format(port)], args.client_cpu)
    out = subprocess.run(argv, capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    reqs = None
    for line in out.splitlines():
        if "requests in" in line:
            reqs = int(line.split()[0])
        if "Socket errors" in line or "Non-2xx" in line:
            raise RunError("wrk: " + line.strip())
    if reqs is None:
        raise RunError("wrk output: " + out)
    return reqs


def run_echo(args, port, seconds, client):
    argv = pinned([client, "echo", str(port), str(args.connections),
                   str(seconds)], args.client_cpu)
    proc = subprocess.run(argv, capture_output=True, text=True,
                          timeout=seconds + 30)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if proc.returncode != 0 or "error" in res:
        raise RunError("echo client: {}".format(res))
    return res["answers"]


def run_redis(args, port, n, timeout):
    argv = pinned(["redis-benchmark", "-p", str(port), "-c",
                   str(args.connections), "-P", str(args.resp_pipeline),
                   "-t", "ping_mbulk",
                   "-n", str(n), "--csv", "-q"], args.client_cpu)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunError("redis-benchmark took more than {} s".format(timeout))
    wall = time.monotonic() - t0
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    rps = [float(r[1]) for r in rows[1:] if r and r[0] == "PING_MBULK"]
    if proc.returncode != 0 or not rps:
        raise RunError("redis-benchmark: {} {}".format(proc.stdout,
                                                       proc.stderr))
    return rps[0], wall


def one_server_run(args, loop, app, client):
    """(requests per second, user µs/request, sys µs/request)."""
    server = Server(args, loop, app)
    try:
        if app.startswith("http"):
            check_http(server.port, app == "http-split")
            if args.warmup:
                run_wrk(args, server.port, args.warmup)
            u0, s0 = server.cpu()
            t0 = time.monotonic()
            reqs = run_wrk(args, server.port, args.duration)
            wall = time.monotonic() - t0
            u1, s1 = server.cpu()
            rate = reqs / args.duration
        elif app == "echo":
            if args.warmup:
                run_echo(args, server.port, args.warmup, client)
            u0, s0 = server.cpu()
            t0 = time.monotonic()
            reqs = run_echo(args, server.port, args.duration, client)
            wall = time.monotonic() - t0
            u1, s1 = server.cpu()
            rate = reqs / args.duration
        else:   # resp
            warm_n = 20000 if args.warmup else 2000
            rps, _ = run_redis(args, server.port, warm_n, 60)
            n = max(1000, int(rps * args.duration))
            u0, s0 = server.cpu()
            rate, wall = run_redis(args, server.port, n,
                                   args.duration * 3 + 10)
            u1, s1 = server.cpu()
            reqs = n
    finally:
        info = server.stop()
    if info["requests"] < reqs:
        raise RunError("{} {}: server counted {} requests, client {}".format(
            loop, app, info["requests"], reqs))
    # CPU over the measured window only (the client's count is the
    # requests of that window; wrk's last in-flight ones are negligible).
    return rate, (u1 - u0) * 1e6 / reqs, (s1 - s0) * 1e6 / reqs


def one_w3_run(args, loop):
    loop, env = loop_env(loop)
    argv = pinned([args.python, W3, "--loop", loop, "--seconds",
                   str(args.duration), "--warmup", str(min(args.warmup, 1))],
                  args.server_cpu)
    proc = subprocess.run(argv, capture_output=True, text=True,
                          timeout=args.duration + 60,
                          env=dict(os.environ, **env))
    if proc.returncode == 3:
        raise Skip(proc.stderr.strip())
    if proc.returncode != 0:
        raise RunError("w3 {}: {}".format(loop, proc.stderr))
    res = json.loads(proc.stdout)
    ev = res["events"]
    return (ev / res["seconds"], res["utime"] * 1e6 / ev,
            res["stime"] * 1e6 / ev)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 round, 1 s, no warm-up: a smoke test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--resp-pipeline", type=int, default=1,
                        help="redis-benchmark -P: at 1 its one thread is "
                             "the bottleneck here (99%% CPU), at 16 the "
                             "server is")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--loops", default=",".join(LOOPS))
    parser.add_argument("--steps", action="store_true",
                        help="fast-asyncio step by step (S0..S6) between "
                             "asyncio and uvloop; default workloads w3,http")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--require", default="",
                        help="comma-separated loops/clients whose absence "
                             "is an error (e.g. uvloop,wrk)")
    parser.add_argument("--results", default=os.path.join(
        os.path.dirname(HERE), "results", "asyncio"))
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.0
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    if args.steps:
        if args.workloads == ",".join(WORKLOADS):
            args.workloads = "w3,http"
        args.loops = ",".join(["asyncio"] + [step_spec(k) for k, _ in STEPS]
                              + ["uvloop"])
    workloads = [w for w in args.workloads.split(",") if w]
    loops = [lp for lp in args.loops.split(",") if lp]
    required = set(filter(None, args.require.split(",")))
    os.makedirs(args.results, exist_ok=True)

    skipped = {}
    clients = {"http": "wrk", "http-split": "wrk", "resp": "redis-benchmark",
               "echo": "gcc"}
    for w in workloads:
        tool = clients.get(w)
        if tool and not shutil.which(tool):
            skipped[w] = "{} is not installed".format(tool)
    echo_client = None
    if "echo" in workloads and "echo" not in skipped:
        echo_client = os.path.join(tempfile.mkdtemp(), "load_client")
        subprocess.run(["gcc", "-O2", "-o", echo_client, CLIENT_C],
                       check=True)

    w3_loops = ["stdlib-selectors"] + loops
    samples = {}        # (workload, loop) -> [(rate, user_us, sys_us), ...]
    ratios = {}         # (workload, loop) -> [rate / asyncio's, ...]
    errors = []
    t_start = time.monotonic()
    for rnd in range(args.rounds):
        for w in workloads:
            if w in skipped:
                continue
            order = w3_loops if w == "w3" else loops
            k = rnd % len(order)
            order = order[k:] + order[:k]
            this_round = {}
            for loop in order:
                if (w, loop) in skipped:
                    continue
                try:
                    if w == "w3":
                        res = one_w3_run(args, loop)
                    else:
                        res = one_server_run(args, loop, w, echo_client)
                except Skip as exc:
                    skipped[w, loop] = str(exc)
                    continue
                except (RunError, subprocess.SubprocessError, OSError,
                        ValueError) as exc:
                    errors.append("round {} {} {}: {}".format(rnd, w, loop,
                                                              exc))
                    print("ERROR", errors[-1], flush=True)
                    continue
                this_round[loop] = res
                samples.setdefault((w, loop), []).append(res)
                print("round {} {:<10} {:<16} {:>10.0f}/s  user {:6.2f} "
                      "us/req  sys {:6.2f} us/req".format(
                          rnd, w, loop[:40], res[0], res[1], res[2]),
                      flush=True)
            base = this_round.get(BASE)
            for loop, res in this_round.items():
                if base:
                    ratios.setdefault((w, loop), []).append(res[0] / base[0])

    def med(xs):
        return statistics.median(xs) if xs else None

    table = []
    for w in workloads:
        row = {"workload": w}
        for loop in (w3_loops if w == "w3" else loops):
            s = samples.get((w, loop))
            if not s:
                continue
            row[loop] = {"rate": med([x[0] for x in s]),
                         "user_us": med([x[1] for x in s]),
                         "sys_us": med([x[2] for x in s]),
                         "vs_asyncio": med(ratios.get((w, loop), [])),
                         "rounds": len(s)}
        table.append(row)

    def fx(v, fmt):
        return "-" if v is None else fmt.format(v)

    def show(loop):
        for label, disabled in STEPS:
            if loop == step_spec(label):
                return "{} {}".format(label, STEP_NAMES[label])
        return loop

    if args.steps:
        lines = ["| loop | " + " | ".join(
            "{} /s | vs asyncio | user µs".format(w) for w in workloads)
            + " |", "| --- |" + " ---: | ---: | ---: |" * len(workloads)]
        for loop in loops:
            cells = [show(loop)]
            for w in workloads:
                r = [x for x in table if x["workload"] == w][0].get(loop, {})
                cells += [fx(r.get("rate"), "{:,.0f}"),
                          fx(r.get("vs_asyncio"), "{:.2f}×"),
                          fx(r.get("user_us"), "{:.2f}")]
            lines.append("| " + " | ".join(cells) + " |")
        text = "\n".join(lines)
        print()
        print(text)
        with open(os.path.join(args.results, "steps.md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(args.results, "steps.json"), "w") as f:
            json.dump({"rows": table, "errors": errors}, f, indent=1)
        return 1 if errors else 0

    lines = ["| workload | " + " | ".join(
        "{} req/s".format(lp) for lp in loops) + " | " + " | ".join(
        "{} vs asyncio".format(lp) for lp in loops[1:]) + " | " + " | ".join(
        "{} user µs/req".format(lp) for lp in loops) + " |",
        "| --- |" + " ---: |" * (3 * len(loops) - 1)]
    for row in table:
        cells = [row["workload"]]
        cells += [fx(row.get(lp, {}).get("rate"), "{:,.0f}") for lp in loops]
        cells += [fx(row.get(lp, {}).get("vs_asyncio"), "{:.2f}×")
                  for lp in loops[1:]]
        cells += [fx(row.get(lp, {}).get("user_us"), "{:.2f}")
                  for lp in loops]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r["workload"] == "w3" and "stdlib-selectors" in r for r in table):
        r = [x for x in table if x["workload"] == "w3"][0]
        ref = r["stdlib-selectors"]["rate"]
        lines.append("")
        lines.append("w3 events/s vs the stdlib selectors loop: " + ", ".join(
            "{} {:.2f}×".format(lp, r[lp]["rate"] / ref)
            for lp in loops if lp in r))
    for k, v in skipped.items():
        lines.append("skipped {}: {}".format(k, v))
    for e in errors:
        lines.append("ERROR " + e)
    text = "\n".join(lines)
    print()
    print(text)
    result = {"settings": {k: v for k, v in vars(args).items()},
              "python": platform.python_version(),
              "machine": platform.machine(), "rows": table,
              "samples": {"{} {}".format(*k): v for k, v in samples.items()},
              "skipped": {str(k): v for k, v in skipped.items()},
              "errors": errors, "seconds": time.monotonic() - t_start}
    with open(os.path.join(args.results, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.results, "results.md"), "w") as f:
        f.write(text + "\n")
    missing = [k for k in skipped
               if (k[1] if isinstance(k, tuple) else clients.get(k))
               in required]
    if missing:
        print("required but skipped:", missing)
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
