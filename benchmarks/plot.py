"""PNG plots of a results dict (results.json), with matplotlib:

- w1.png: W1, ns per ready event, one bar per implementation per N;
- w2.png: W2, ns per round trip against N idle fds (log x, log y);
- w3.png: W3, events per second per implementation.

    python benchmarks/plot.py benchmarks/results/results.json [OUTDIR]
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt     # noqa: E402


def _rows(result, w):
    return [r for r in result["summary"] if r["workload"] == w]


def _names(rows):
    names = []
    for r in rows:
        if r["impl"] not in names:
            names.append(r["impl"])
    return names


FAMILY_COLOURS = (("fast-native", "tab:red"), ("fast-cffi", "tab:orange"),
                  ("fast-pure", "tab:olive"), ("stdlib", "tab:blue"),
                  ("raw-epoll", "tab:cyan"), ("asyncio", "tab:purple"),
                  ("uvloop", "tab:pink"), ("gevent", "tab:brown"),
                  ("floor-c", "black"), ("baseline", "tab:gray"))


def style(name):
    """Colour by family (tier or peer), line and marker by selector class
    or loop: epoll solid, poll dashed, select dotted, dispatch dash-dot."""
    colour = next((c for prefix, c in FAMILY_COLOURS
                   if name.startswith(prefix)), "tab:gray")
    if name.endswith("-dispatch"):
        return colour, "-.", "^"
    if name.endswith("-poll"):
        return colour, "--", "s"
    if name.endswith("-select"):
        return colour, ":", "x"
    return colour, "-", "o"


def _subtitle(result):
    py = result["python"]
    return "{} {} -- median of {} rounds{}".format(
        py["implementation"], py["version"], result["rounds"],
        " (quick run)" if result["quick"] else "")


def plot_w1(result, path):
    rows = _rows(result, "W1")
    if not rows:
        return None
    names = _names(rows)
    sizes = sorted({r["n"] for r in rows})
    by = {(r["impl"], r["n"]): r["median"] for r in rows}
    width = 0.8 / len(sizes)
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(names) + 2), 5.5))
    for i, n in enumerate(sizes):
        xs = [j + (i - (len(sizes) - 1) / 2) * width
              for j, name in enumerate(names) if (name, n) in by]
        ys = [by[(name, n)] for name in names if (name, n) in by]
        ax.bar(xs, ys, width, label="N={}".format(n))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ns per ready event (log)")
    ax.set_title("W1: select() with N ready fds\n" + _subtitle(result),
                 fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_w2(result, path):
    rows = _rows(result, "W2")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(11, 6))
    for name in _names(rows):
        pts = sorted((r["n_actual"], r["median"]) for r in rows
                     if r["impl"] == name)
        colour, line, marker = style(name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour,
                linestyle=line, marker=marker, markersize=4, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N idle registered fds (log)")
    ax.set_ylabel("ns per round trip (log)")
    ax.set_title("W2: 1-byte ping-pong beside N idle fds\n"
                 + _subtitle(result), fontsize=10)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_w3(result, path):
    rows = _rows(result, "W3")
    if not rows:
        return None
    names = _names(rows)
    by = {r["impl"]: 1e9 / r["median"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(names) + 2), 5.5))
    ax.bar(range(len(names)), [by[n] for n in names],
           color=[style(n)[0] for n in names])
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("events per second")
    ax.set_title("W3: P socketpairs, read 1 byte and write it back\n"
                 + _subtitle(result), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(result, outdir):
    """Write the plots into *outdir*; return the paths written."""
    done = []
    for fn, name in ((plot_w1, "w1.png"), (plot_w2, "w2.png"),
                     (plot_w3, "w3.png")):
        path = fn(result, os.path.join(outdir, name))
        if path:
            done.append(path)
    return done


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        sys.exit("usage: python plot.py results.json [OUTDIR]")
    with open(argv[0]) as f:
        result = json.load(f)
    outdir = argv[1] if len(argv) == 2 else os.path.dirname(
        os.path.abspath(argv[0]))
    for path in plot_all(result, outdir):
        print("wrote", path)


if __name__ == "__main__":
    main()
