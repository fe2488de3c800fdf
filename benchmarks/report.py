"""Render a results dict (results.json) as markdown tables.

    python benchmarks/report.py benchmarks/results/results.json
"""

import json
import platform
import statistics
import sys

TITLES = {
    "W1": "W1: `select()` with N registered fds, all ready -- ns per ready "
          "event (lower is better)",
    "W2": "W2: one socketpair ping-ponging 1 byte beside N idle registered "
          "fds -- ns per round trip (lower is better)",
    "W3": "W3: P = {} socketpairs, every callback reads 1 byte and writes it "
          "back -- events per second (higher is better)",
}


def rotate(seq, k):
    """*seq* rotated by *k*: round k of a run starts with a different
    implementation, so drift within a round hits them all alike."""
    if not seq:
        return seq
    k %= len(seq)
    return seq[k:] + seq[:k]


def over_rounds(rounds, value):
    """{round: record} -> median, min, max of value(record), and the count."""
    values = [value(rec) for rec in rounds.values()]
    return {"median": statistics.median(values), "min": min(values),
            "max": max(values), "rounds": len(values)}


def paired(rounds, base, ratio):
    """The median over the rounds both ran of ratio(record, base record):
    a speed-up paired within each round (drift between rounds cancels), or
    None if no round has both."""
    ratios = [ratio(rec, base[r]) for r, rec in rounds.items() if r in base]
    return statistics.median(ratios) if ratios else None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def fmt_ns(v):
    if v is None:
        return "--"
    if abs(v) < 100:
        return "{:.1f}".format(v)
    return "{:,.0f}".format(v)


def fmt_x(v):
    return "" if v is None else " ({:.2f}x)".format(v)


def loop_kind(name):
    if name in ("asyncio", "uvloop", "gevent", "floor-c") or \
            name.endswith("-dispatch"):
        return "callback"
    if name == "baseline":
        return "no selector"
    return "select()"


def size_table(result, w, rows):
    sizes = sorted({r["n"] for r in rows})
    names = []
    for r in rows:
        if r["impl"] not in names:
            names.append(r["impl"])
    by = {(r["impl"], r["n"]): r for r in rows}
    capped = {(r["impl"], r["n"]) for r in rows if r["n_actual"] != r["n"]}
    lines = ["| implementation | loop | " + " | ".join(
        "N={}".format(n) for n in sizes) + " |",
        "| --- | --- |" + " ---: |" * len(sizes)]
    for name in names:
        cells = []
        for n in sizes:
            r = by.get((name, n))
            if r is None:
                why = result.get("skipped", {}).get(name) or next(
                    (s["reason"] for s in result.get("size_skips", [])
                     if s["workload"] == w and s["impl"] == name
                     and s["n"] == n), "")
                cells.append("n/a" if "FD_SETSIZE" in why else "--")
            else:
                cell = fmt_ns(r["median"]) + fmt_x(r.get("speedup"))
                if (name, n) in capped:
                    cell += " [N={}]".format(r["n_actual"])
                cells.append(cell)
        lines.append("| {} | {} | {} |".format(name, loop_kind(name),
                                               " | ".join(cells)))
    return lines


def w3_table(rows):
    lines = ["| implementation | loop | events/s | ns/event | x vs stdlib "
             "| selector ns/event (minus callback) | x vs stdlib |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append("| {} | {} | {:,.0f} | {} | {} | {} | {} |".format(
            r["impl"], loop_kind(r["impl"]), 1e9 / r["median"],
            fmt_ns(r["median"]),
            "" if r.get("speedup") is None else "{:.2f}x".format(
                r["speedup"]),
            fmt_ns(r.get("overhead")) if r["impl"] != "baseline" else
            "(the callback alone)",
            "" if r.get("overhead_speedup") is None else "{:.2f}x".format(
                r["overhead_speedup"])))
    return lines


def cachegrind_table(cg):
    """Instructions per event; W3 also minus ``baseline`` (the callback's
    own instructions): the selector's share."""
    specs = cg["specs"]
    results = cg["results"]
    heads = []
    for s in specs:
        heads.append("{} N={} instr/event".format(s["workload"], s["n"]))
        if s["workload"] == "W3":
            heads.append("{} minus callback".format(s["workload"]))
    lines = ["| implementation | " + " | ".join(heads) + " |",
             "| --- |" + " ---: |" * len(heads)]
    base = results.get(cg["base"], {})
    callback = results.get("baseline", {})

    def cell(v, b):
        if v is None:
            return "--"
        return "{:,.0f}{}".format(v, " ({:.2f}x)".format(b / v)
                                  if b and v > 0 else "")

    for name, per in results.items():
        cells = []
        for s in specs:
            label = s["label"]
            cells.append(cell(per.get(label), base.get(label)))
            if s["workload"] == "W3":
                cb = callback.get(label)
                if name in ("baseline", "floor-c") or cb is None or \
                        per.get(label) is None:
                    cells.append("--")
                else:
                    b = base.get(label)
                    cells.append(cell(per[label] - cb,
                                      None if b is None else b - cb))
        lines.append("| {} | {} |".format(name, " | ".join(cells)))
    return lines


def markdown(result):
    py = result["python"]
    out = ["# fastselectors benchmarks", ""]
    out.append("{} on {} ({} CPUs, kernel {}); {} {} ({}); fastselectors "
               "from `{}`.".format(
                   result["date"], result["host"]["cpu"],
                   result["host"]["cpus"], result["host"]["kernel"],
                   py["implementation"], py["version"], py["executable"],
                   py["fastselectors"]))
    out.append("")
    out.append("{}Each cell: the median of {} rounds (one fresh process per "
               "implementation, workload and round, in rotated order, after "
               "{} s of warm-up per size); in parentheses the median of the "
               "paired ratios `{}` / implementation within each round: above "
               "1 is faster than the stdlib `EpollSelector`. `select()` "
               "loops build the result list (W1: not iterated); `callback` "
               "loops invoke a Python callback per event.".format(
                   "**Quick run: small sizes, not for conclusions.** "
                   if result["quick"] else "", result["rounds"],
                   result["warmup"], result["base"]))
    rows = result["summary"]
    for w in ("W1", "W2", "W3"):
        wrows = [r for r in rows if r["workload"] == w]
        if not wrows:
            continue
        out.append("")
        title = TITLES[w]
        if w == "W3":
            title = title.format(", ".join(str(n) for n in sorted(
                {r["n"] for r in wrows})))
        out.append("## " + title)
        out.append("")
        if w == "W3":
            out.extend(w3_table(wrows))
            out.append("")
            out.append("`baseline` calls the same callbacks in a plain "
                       "Python loop (the 1-byte read and write included): "
                       "the selector's own cost is the difference.")
        else:
            out.extend(size_table(result, w, wrows))
            out.append("")
            out.append("`n/a`: select(2) cannot take fds >= FD_SETSIZE; "
                       "`[N=...]`: capped by RLIMIT_NOFILE.")
    cg = result.get("cachegrind")
    if cg and cg.get("results"):
        out.append("")
        out.append("## User-space instructions per event (cachegrind)")
        out.append("")
        out.append("`valgrind --tool=cachegrind`, each workload run twice "
                   "with different event counts ({}); (Ir2 - Ir1) / (events2 "
                   "- events1), which cancels start-up and warm-up. In "
                   "parentheses: `{}` / implementation.".format(
                       "; ".join("{} N={}: {} vs {} events".format(
                           s["workload"], s["n"], s["events"][0],
                           s["events"][1]) for s in cg["specs"]),
                       cg["base"]))
        out.append("")
        out.extend(cachegrind_table(cg))
    skipped = dict(result.get("skipped") or {})
    if cg:
        skipped.update(cg.get("skipped") or {})
    if skipped:
        by_reason = {}
        for name, why in sorted(skipped.items()):
            why = (why.strip().splitlines() or ["?"])[-1]
            if len(why) > 200:
                why = why[:200] + "..."
            by_reason.setdefault(why, []).append(name)
        out.append("")
        out.append("Skipped: " + "; ".join(
            "{} ({})".format(", ".join("`{}`".format(n) for n in names), why)
            for why, names in by_reason.items()))
    if result.get("errors"):
        out.append("")
        out.append("**Errors:** " + "; ".join(
            "`{}` {}".format(e.get("impl"), (e["error"].strip()
                                             .splitlines() or ["?"])[-1])
            for e in result["errors"]))
    out.append("")
    return "\n".join(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python report.py results.json")
    with open(argv[0]) as f:
        print(markdown(json.load(f)))


if __name__ == "__main__":
    main()
