#!/usr/bin/env python3
"""End-to-end HTTP benchmark: wrk against the servers of servers.py, each in
a fresh process, several rounds in rotated order; median requests/s, paired
ratios against (a) stdlib selectors and (c) default asyncio, latency
percentiles; JSON and a markdown table in the results directory.

    python benchmarks/http/run.py --quick        # smoke test: 1 round x 1 s
    python benchmarks/http/run.py                # 5 rounds x 10 s, 50 conns

Before it is measured, every server is checked on the wire (pipelined,
split and ``Connection: close`` requests get exactly the expected bytes);
any wrk error (connect/read/write/timeout, non-2xx) is an error.

Exit status: 0 if every selected implementation ran cleanly or was skipped
for a printed reason (uvloop or wrk not installed), 1 on any error.
"""

import argparse
import datetime
import fnmatch
import json
import os
import platform
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "servers.py")
LUA = os.path.join(HERE, "report.lua")
sys.path.insert(0, HERE)

import servers      # noqa: E402  (RESPONSE, IMPLS, DEFAULT, SKIP_EXIT)

# The machine's description is the selector benchmarks' (benchmarks/report.py).
sys.path.insert(1, os.path.dirname(HERE))
import report  # noqa: E402

BASE_A = "stdlib-selectors"
BASE_C = "asyncio"


class RunError(Exception):
    pass


# -- the machine -----------------------------------------------------------

def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def wrk_version(wrk):
    proc = subprocess.run([wrk, "-v"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    first = proc.stdout.strip().splitlines()[:1]
    return first[0].split(" Copyright")[0] if first else "?"


def proc_cpu_seconds(pid):
    """(utime, stime) of *pid* in seconds (Linux /proc), or None."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tck, int(fields[12]) / tck
    except (OSError, IndexError, ValueError):
        return None


def system_cpu_seconds():
    """(busy, steal) seconds summed over all CPUs since boot (/proc/stat),
    or None.  busy excludes idle, iowait and steal."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    tck = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq) / tck, steal / tck


# -- one server ------------------------------------------------------------

class Server:
    """servers.py --impl NAME in a fresh process (pinned with taskset if
    *cpu* is given); stops when we close its stdin."""

    def __init__(self, python, impl, cpu, max_seconds):
        self.impl = impl
        argv = [python, SERVERS, "--impl", impl, "--port", "0",
                "--max-seconds", str(max_seconds), "--stop-on-stdin-eof"]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.stderr = open(_tmpfile(), "w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self.stderr,
                                     universal_newlines=True)
        self.port = None

    def start(self, timeout=20.0):
        """The port, or raises RunError; returns None if the server exited
        with SKIP_EXIT (the reason is then in self.skip_reason)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip():
            code = self.proc.poll()
            if code is None:
                self.kill()
                raise RunError("no port on stdout after {:.0f}s\n{}".format(
                    timeout, self.errors()))
            code = self.proc.wait()
            if code == servers.SKIP_EXIT:
                self.skip_reason = self.errors().strip() or "skipped"
                return None
            raise RunError("exited with {} at start-up\n{}".format(
                code, self.errors()))
        self.port = int(line)
        return self.port

    def cpu_seconds(self):
        return proc_cpu_seconds(self.proc.pid)

    def stop(self, timeout=15.0):
        """Close stdin, wait; return the stats the server printed."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RunError("did not stop within {:.0f}s of EOF on stdin"
                           .format(timeout))
        out = self.proc.stdout.read()
        if code != 0:
            raise RunError("exited with {}\n{}".format(code, self.errors()))
        lines = [x for x in out.splitlines() if x.startswith("{")]
        if not lines:
            raise RunError("printed no stats at exit\n" + self.errors())
        return json.loads(lines[-1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def errors(self):
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def close(self):
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        name = self.stderr.name
        self.stderr.close()
        try:
            os.unlink(name)
        except OSError:
            pass


def _tmpfile():
    fd, path = tempfile.mkstemp(prefix="httpbench-", suffix=".stderr")
    os.close(fd)
    return path


# -- the checks on the wire ------------------------------------------------

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
CLOSE_REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Connection: close\r\n\r\n")


def _expect(sock, want, what):
    got = b""
    while len(got) < len(want):
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise RunError("{}: timed out with {!r}".format(what, got))
        if not chunk:
            break
        got += chunk
    if got != want:
        raise RunError("{}: expected {!r}, got {!r}".format(what, want, got))


def conformance(port):
    """The server answers pipelined, split and Connection: close requests
    with exactly RESPONSE each (and closes after the last)."""
    r = servers.RESPONSE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(REQUEST * 3)
        _expect(s, r * 3, "3 pipelined requests")
        s.sendall(REQUEST[:9])
        time.sleep(0.02)
        s.sendall(REQUEST[9:20])
        time.sleep(0.02)
        s.sendall(REQUEST[20:] + REQUEST[:5])
        _expect(s, r, "a request in 3 pieces")
        s.sendall(REQUEST[5:] + CLOSE_REQUEST + REQUEST)
        _expect(s, r * 2, "a request then Connection: close")
        try:
            rest = s.recv(65536)
        except socket.timeout:
            raise RunError("Connection: close: the server did not close")
        if rest:
            raise RunError("Connection: close: {!r} after the response"
                           .format(rest))


# -- wrk -------------------------------------------------------------------

def run_wrk(wrk, cpu, port, threads, conns, seconds, timeout_s):
    argv = [wrk, "-t{}".format(threads), "-c{}".format(conns),
            "-d{}s".format(seconds), "--latency", "-s", LUA,
            "http://127.0.0.1:{}/".format(port)]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RunError("wrk did not finish within {:.0f}s".format(timeout_s))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RunError("wrk exited with {}:\n{}".format(proc.returncode,
                                                        proc.stdout))
    m = re.search(r"^WRKJSON (\{.*\})$", proc.stdout, re.M)
    if not m:
        raise RunError("no WRKJSON line in wrk's output (is wrk built "
                       "with Lua?):\n" + proc.stdout)
    res = json.loads(m.group(1))
    res["text"] = proc.stdout.replace(m.group(0) + "\n", "")
    res["wrk_cpu_s"] = ((after.ru_utime + after.ru_stime)
                        - (before.ru_utime + before.ru_stime))
    m = re.search(r"^Requests/sec:\s*([\d.]+)", proc.stdout, re.M)
    res["rps_text"] = float(m.group(1)) if m else None
    return res


def wrk_problems(res):
    """wrk's own error counters, and sanity checks on its counts."""
    names = {"connect": "socket connect errors",
             "read": "socket read errors", "write": "socket write errors",
             "timeout": "timeouts", "status": "non-2xx/3xx responses"}
    problems = ["{} {}".format(n, names.get(kind, kind))
                for kind, n in sorted(res["errors"].items()) if n]
    if res["requests"] <= 0:
        problems.append("no request completed")
    elif res["bytes"] < res["requests"] * len(servers.RESPONSE):
        problems.append("{} bytes read for {} responses of {} bytes".format(
            res["bytes"], res["requests"], len(servers.RESPONSE)))
    return problems


# -- summary and report ----------------------------------------------------

def summarise(samples, names):
    """Per implementation: medians over rounds; ratios paired per round."""
    by = {}
    for s in samples:
        by.setdefault(s["impl"], {})[s["round"]] = s
    rows = []
    for name in names:
        rounds = by.get(name)
        if not rounds:
            continue
        rps = report.over_rounds(rounds, lambda s: s["rps"])
        row = {"impl": name, "label": servers.IMPLS[name][0],
               "what": servers.IMPLS[name][1], "rounds": rps["rounds"],
               "rps_median": rps["median"], "rps_min": rps["min"],
               "rps_max": rps["max"]}
        for key in ("p50", "p90", "p99"):
            row[key + "_us"] = report.over_rounds(
                rounds, lambda s: s["latency_us"][key])["median"]
        for key in ("server_cpu", "server_us_per_req",
                    "server_user_us_per_req", "wrk_cpu", "others_cpu",
                    "steal"):
            some = {r: s for r, s in rounds.items()
                    if s.get(key) is not None}
            row[key] = report.over_rounds(
                some, lambda s: s[key])["median"] if some else None
        for base, field in ((BASE_A, "vs_a"), (BASE_C, "vs_c")):
            row[field] = report.paired(rounds, by.get(base, {}),
                                       lambda s, b: s["rps"] / b["rps"])
        rows.append(row)
    return rows


def fmt_us(us):
    if us is None:
        return "--"
    if us < 1000:
        return "{:.0f} us".format(us)
    return "{:.2f} ms".format(us / 1000)


def fmt_x(x):
    return "--" if x is None else "{:.2f}x".format(x)


def fmt_pct(x):
    return "--" if x is None else "{:.0f}%".format(100 * x)


def fmt_num(x):
    return "--" if x is None else "{:.1f}".format(x)


def markdown(result):
    s = result["settings"]
    h = result["host"]
    p = result["python"]
    pin = s["pinning"]
    lines = [
        "# HTTP/1.1 keep-alive hello world, wrk",
        "",
        "- machine: {} ({} CPUs), Linux {}, load average {} at start, {} "
        "at end".format(h["cpu"], h["cpus"], h["kernel"], h["load_start"],
                        h["load_end"]),
        "- Python {} ({}), fastselectors {} from {} (backend {}), uvloop {}"
        .format(p["python"], p["executable"],
                p.get("fastselectors_version") or "?",
                p["fastselectors"], p["backend"], p["uvloop"] or "--"),
        "- {}: `{}`, {} round(s) x {} s, {} s warm-up per server, "
        "implementations rotated per round".format(
            result["wrk_version"] or "wrk not found", s["wrk_command"],
            s["rounds"],
            s["duration"], s["warmup"]),
        "- pinning: {}".format(
            "server on CPU {}, wrk on CPU {} (taskset)".format(
                pin["server_cpu"], pin["wrk_cpu"]) if pin["server_cpu"]
            is not None else "none ({})".format(pin["why"])),
        "",
        "| | implementation | req/s (median) | min - max | vs (a) | vs (c) "
        "| p50 | p99 | server CPU | server us/req (user) | wrk CPU "
        "| others' CPU |",
        "| :-: | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: "
        "| --: |",
    ]
    if not result["summary"]:
        lines.append("| | (nothing ran) | | | | | | | | | | |")
    for r in result["summary"]:
        lines.append("| {} | `{}`: {} | {:,.0f} | {:,.0f} - {:,.0f} | {} | "
                     "{} | {} | {} | {} | {} ({}) | {} | {} |".format(
                         r["label"] or "", r["impl"], r["what"],
                         r["rps_median"], r["rps_min"], r["rps_max"],
                         fmt_x(r["vs_a"]), fmt_x(r["vs_c"]),
                         fmt_us(r["p50_us"]), fmt_us(r["p99_us"]),
                         fmt_pct(r["server_cpu"]),
                         fmt_num(r["server_us_per_req"]),
                         fmt_num(r["server_user_us_per_req"]),
                         fmt_pct(r["wrk_cpu"]), fmt_pct(r["others_cpu"])))
    lines += [
        "",
        "req/s: median over rounds.  vs (a), vs (c): median over rounds of "
        "the req/s ratio to (a) stdlib selectors / (c) default asyncio "
        "measured in the same round (> 1 is faster).  p50, p99: wrk's "
        "latency percentiles, median over rounds (closed loop: with every "
        "connection always busy, p50 is about connections / req/s).  "
        "server CPU, wrk CPU: share of one core each used during the "
        "measured run (near 100% = saturated).  server us/req: the server "
        "process's CPU time (user + system; user alone in brackets) per "
        "request wrk counted -- less sensitive to the client's speed than "
        "req/s.  others' CPU: everything else busy on the machine meanwhile,"
        " in cores (other jobs: noise; not isolated by the pinning).",
    ]
    if result["quick"]:
        lines += ["", "A `--quick` run is a smoke test: its numbers are not "
                      "conclusions."]
    for name, why in sorted(result["skipped"].items()):
        lines.append("")
        lines.append("Skipped `{}`: {}".format(name, why))
    for e in result["errors"]:
        lines.append("")
        lines.append("**ERROR** `{}` (round {}): {}".format(
            e["impl"], e.get("round", "-"),
            e["error"].strip().splitlines()[0] if e["error"].strip()
            else "?"))
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------

def pinning(args):
    if args.no_pin:
        return {"server_cpu": None, "wrk_cpu": None, "why": "--no-pin"}
    if not shutil.which("taskset"):
        return {"server_cpu": None, "wrk_cpu": None,
                "why": "taskset not found"}
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return {"server_cpu": None, "wrk_cpu": None,
                "why": "only {} CPU available".format(len(cpus))}
    server = args.server_cpu if args.server_cpu is not None else cpus[0]
    wrk = args.wrk_cpu if args.wrk_cpu is not None else cpus[1]
    return {"server_cpu": server, "wrk_cpu": wrk, "why": None}


def select_impls(spec):
    if not spec:
        return list(servers.DEFAULT)
    if spec == "all":
        return list(servers.IMPLS)
    pats = [p.strip() for p in spec.split(",") if p.strip()]
    out = [n for n in servers.IMPLS
           if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    for p in pats:
        if not any(fnmatch.fnmatchcase(n, p) for n in servers.IMPLS):
            raise SystemExit("unknown implementation {!r}; known: {}".format(
                p, ", ".join(servers.IMPLS)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="implementations:\n" + "\n".join(
            "  {:<17} ({}) {}".format(k, v[0] or "-", v[1])
            for k, v in servers.IMPLS.items()))
    parser.add_argument("--quick", action="store_true",
                        help="1 round x 1 s, no warm-up (CI smoke test)")
    parser.add_argument("--impls", default=None,
                        help="comma-separated names or globs, or 'all' "
                             "(default: " + ",".join(servers.DEFAULT) + ")")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds in rotated order (default 5; quick 1)")
    parser.add_argument("--duration", type=int, default=None,
                        help="seconds of each measured wrk run (default 10;"
                             " quick 1)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="seconds of wrk warm-up per server start, "
                             "not measured; 0: none (default 2; quick 0)")
    parser.add_argument("--connections", "-c", type=int, default=50)
    parser.add_argument("--threads", "-t", type=int, default=1,
                        help="wrk threads (default 1)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the servers (default: this "
                             "one)")
    parser.add_argument("--wrk", default="wrk", help="the wrk binary")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server and wrk to CPUs")
    parser.add_argument("--server-cpu", type=int, default=None,
                        help="CPU for the server (default: the first one "
                             "available)")
    parser.add_argument("--wrk-cpu", type=int, default=None,
                        help="CPU for wrk (default: the second one)")
    parser.add_argument("--results", default=os.path.join(
        HERE, os.pardir, "results", "http"),
        help="results directory (default benchmarks/results/http/, "
             "git-ignored)")
    parser.add_argument("--require", default="",
                        help="comma-separated globs of implementations that "
                             "must not be skipped (CI)")
    args = parser.parse_args(argv)

    started = time.time()
    rounds = args.rounds or (1 if args.quick else 5)
    duration = args.duration or (1 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (
        0 if args.quick else 2)
    if args.threads < 1 or args.connections < args.threads:
        parser.error("need 1 <= threads <= connections")
    names = select_impls(args.impls)
    python = shutil.which(args.python) or args.python
    results_dir = os.path.normpath(args.results)

    probe = json.loads(subprocess.run(
        [python, SERVERS, "--probe"], stdout=subprocess.PIPE, check=True,
        universal_newlines=True).stdout)
    skipped = dict((n, why) for n, why in probe["unavailable"].items()
                   if n in names)
    wrk = shutil.which(args.wrk)
    wrkv = wrk_version(wrk) if wrk else None
    if not wrk:
        why = ("wrk not found ({!r}); on Debian/Ubuntu: apt-get install wrk"
               .format(args.wrk))
        for n in names:
            skipped.setdefault(n, why)
    pin = pinning(args)
    wrk_cmd = "wrk -t{} -c{} -d{}s --latency -s report.lua".format(
        args.threads, args.connections, duration)
    if pin["wrk_cpu"] is not None:
        wrk_cmd = "taskset -c {} {}".format(pin["wrk_cpu"], wrk_cmd)

    print("HTTP benchmark: Python {} ({}), fastselectors from {} ({}), "
          "uvloop {}".format(probe["python"], python, probe["fastselectors"],
                             probe["backend"], probe["uvloop"] or "--"),
          flush=True)
    print("{}; {} round(s) x {} s, warm-up {} s; {}; {}".format(
        wrkv or "no wrk", rounds, duration, warmup, report.cpu_model(),
        "server on CPU {}, wrk on CPU {}".format(pin["server_cpu"],
                                                 pin["wrk_cpu"])
        if pin["server_cpu"] is not None else "no pinning: " + pin["why"]),
        flush=True)
    for n in names:
        if n in skipped:
            print("SKIP {}: {}".format(n, skipped[n]), flush=True)

    host = {"cpu": report.cpu_model(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "kernel": platform.release(),
            "load_start": loadavg()}
    samples, errors = [], []
    runnable = [n for n in names if n not in skipped]
    for r in range(rounds):
        for name in report.rotate(runnable, r):
            if name in skipped:
                continue
            label = "[round {}/{}] {:<17}".format(r + 1, rounds, name)
            server = Server(python, name, pin["server_cpu"],
                            warmup + duration + 120)
            try:
                if server.start() is None:
                    skipped[name] = server.skip_reason
                    print("{} SKIP: {}".format(label, server.skip_reason),
                          flush=True)
                    continue
                conformance(server.port)
                if warmup:
                    res = run_wrk(wrk, pin["wrk_cpu"], server.port,
                                  args.threads, args.connections, warmup,
                                  warmup + 60)
                    problems = wrk_problems(res)
                    if problems:
                        raise RunError("warm-up: " + ", ".join(problems)
                                       + "\n" + res["text"])
                cpu0, sys0 = server.cpu_seconds(), system_cpu_seconds()
                t0 = time.perf_counter()
                res = run_wrk(wrk, pin["wrk_cpu"], server.port, args.threads,
                              args.connections, duration, duration + 60)
                wall = time.perf_counter() - t0
                cpu1, sys1 = server.cpu_seconds(), system_cpu_seconds()
                stats = server.stop()
                problems = wrk_problems(res)
                if stats["requests"] < res["requests"]:
                    problems.append("the server counted {} requests, wrk {}"
                                    .format(stats["requests"],
                                            res["requests"]))
                if problems:
                    raise RunError(", ".join(problems) + "\n" + res["text"])
            except RunError as exc:
                msg = "{}\n{}".format(exc, server.errors()).strip()
                errors.append({"impl": name, "round": r, "error": msg})
                print("{} ERROR: {}".format(label, msg), flush=True)
                continue
            finally:
                server.close()
            sample = {
                "impl": name, "round": r,
                "rps": res["requests"] / (res["duration_us"] / 1e6),
                "rps_text": res["rps_text"],
                "requests": res["requests"],
                "duration_us": res["duration_us"], "bytes": res["bytes"],
                "latency_us": res["latency_us"], "errors": res["errors"],
                "wall_s": wall,
                "wrk_cpu": res["wrk_cpu_s"] / wall,
                "server_stats": stats, "wrk_output": res["text"],
            }
            if None not in (cpu0, cpu1):
                user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
                sample["server_cpu"] = (user + system) / wall
                # Server CPU time per request: robust to the client's speed
                # (wrk counts the requests of the measured window only).
                sample["server_us_per_req"] = ((user + system) * 1e6
                                               / res["requests"])
                sample["server_user_us_per_req"] = (user * 1e6
                                                    / res["requests"])
            if None not in (sys0, sys1):
                # Everything else that ran on the machine meanwhile, in
                # cores (the noise: other jobs), and the hypervisor's steal.
                busy = sys1[0] - sys0[0] - res["wrk_cpu_s"] - (
                    sample.get("server_cpu", 0) * wall)
                sample["others_cpu"] = max(0.0, busy) / wall
                sample["steal"] = (sys1[1] - sys0[1]) / wall
            samples.append(sample)
            print("{} {:>9,.0f} req/s  p50 {:>8}  p99 {:>8}  CPU: server "
                  "{:>4} ({} us/req), wrk {:>4}, others {:>4}".format(
                      label, sample["rps"],
                      fmt_us(sample["latency_us"]["p50"]),
                      fmt_us(sample["latency_us"]["p99"]),
                      fmt_pct(sample.get("server_cpu")),
                      fmt_num(sample.get("server_us_per_req")),
                      fmt_pct(sample["wrk_cpu"]),
                      fmt_pct(sample.get("others_cpu"))), flush=True)

    host["load_end"] = loadavg()
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": host, "python": probe, "wrk_version": wrkv,
        "quick": args.quick,
        "settings": {"rounds": rounds, "duration": duration,
                     "warmup": warmup, "connections": args.connections,
                     "threads": args.threads, "pinning": pin,
                     "wrk_command": wrk_cmd, "impls": names,
                     "response": servers.RESPONSE.decode()},
        "summary": summarise(samples, names),
        "samples": samples, "skipped": skipped, "errors": errors,
    }
    required = [p.strip() for p in args.require.split(",") if p.strip()]
    for name, why in sorted(skipped.items()):
        if any(fnmatch.fnmatchcase(name, p) for p in required):
            errors.append({"impl": name,
                           "error": "required but skipped: " + why})

    os.makedirs(results_dir, exist_ok=True)
    json_path = os.path.join(results_dir, "results.json")
    md_path = os.path.join(results_dir, "results.md")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    md = markdown(result)
    with open(md_path, "w") as f:
        f.write(md)
    print()
    print(md)
    print("wrote {} and {}".format(json_path, md_path))
    print("{:.0f}s, {} error(s), {} skipped".format(
        time.time() - started, len(errors), len(skipped)))
    for e in errors:
        print("ERROR {}: {}".format(e["impl"], e["error"].strip()
                                    .splitlines()[0]))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
