#!/usr/bin/python3
"""Draws the benchmark report's plots (PNG) from the benchmarks' JSON outputs.

    /usr/bin/python3 benchmarks/plot.py --datapath /tmp/datapath/summary.json \
        --compile /tmp/compile.json --commit /tmp/commit.json --out benchmarks/results

Any input may be left out; each given one yields its plots:
  --datapath  datapath_latency.png  connect latency p50 (and p99) vs policies on the pod, per
                                    mode (no table, accept-all, iptables+ipset, netpol), log y
              datapath_rate.png     connections per second vs policies, per mode
  --compile   compile.png           compile CPU time and CPU ns per emitted element per tier
              incremental.png       event -> transaction p50/p99 per tier and event kind
  --commit    commit.png            full commit: netpol vs the libnftnl floor per tier
Needs matplotlib (Debian: python3-matplotlib).
"""

import argparse
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def plt_module():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        print("plot.py: matplotlib is missing: apt-get install python3-matplotlib",
              file=sys.stderr)
        sys.exit(1)


MODE_STYLE = {
    "none": ("no table", "tab:gray"),
    "accept": ("accept-all table", "tab:blue"),
    "iptables": ("iptables + ipset", "tab:red"),
    "optimal": ("hand-written optimal (vmap + one hash set)", "tab:purple"),
    "netpol": ("netpol", "tab:green"),
}


def plot_datapath(plt, summary, out):
    counts = sorted(summary["results"], key=int)
    x = list(range(len(counts)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, (label, color) in MODE_STYLE.items():
        if mode not in summary["results"][counts[0]]["modes"]:
            continue
        p50 = [summary["results"][n]["modes"][mode]["p50_us"] for n in counts]
        p99 = [summary["results"][n]["modes"][mode]["p99_us"] for n in counts]
        ax.plot(x, p50, marker="o", color=color, label=label + " p50")
        ax.plot(x, p99, marker=".", linestyle="--", color=color, alpha=0.5, label=label + " p99")
    ax.set_xticks(x)
    ax.set_xticklabels(counts)
    ax.set_yscale("log")
    ax.set_xlabel("policies selecting the server pod (one allows the client)")
    ax.set_ylabel("TCP connect latency (µs, log)")
    m = summary.get("machine", {})
    ax.set_title("New connection latency between two bridged pods\n%s, %s CPUs, kernel %s"
                 % (m.get("cpu", "?"), m.get("cpus", "?"), m.get("kernel", "?")), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "datapath_latency.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, (label, color) in MODE_STYLE.items():
        if mode not in summary["results"][counts[0]]["modes"]:
            continue
        rate = [summary["results"][n]["modes"][mode]["conns_per_s"] for n in counts]
        ax.plot(x, rate, marker="o", color=color, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(counts)
    ax.set_yscale("log")
    ax.set_xlabel("policies selecting the server pod")
    ax.set_ylabel("new connections per second (one client, sequential)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "datapath_rate.png"), dpi=120)
    plt.close(fig)


def gb_benchmarks(data, prefix):
    """Google Benchmark JSON: {tier: benchmark} for names 'prefix/<tier>[/...]'."""
    out = {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        if not name.startswith(prefix + "/") or b.get("error_occurred"):
            continue
        rest = name[len(prefix) + 1:].split("/")
        out["/".join(p for p in rest if not p.startswith(("iterations:", "manual_time")))] = b
    return out


def plot_compile(plt, data, out):
    comp = gb_benchmarks(data, "BM_Compile")
    if comp:
        tiers = sorted(comp)
        fig, ax1 = plt.subplots(figsize=(7, 4))
        x = list(range(len(tiers)))
        ax1.bar([i - 0.2 for i in x], [comp[t]["cpu_ms"] for t in tiers], width=0.4,
                color="tab:green", label="compile CPU ms")
        ax1.set_ylabel("compile CPU time (ms)")
        ax1.set_yscale("log")
        ax2 = ax1.twinx()
        ax2.bar([i + 0.2 for i in x], [comp[t]["cpu_ns_per_element"] for t in tiers], width=0.4,
                color="tab:orange", label="CPU ns / emitted element")
        ax2.axhline(1000, color="tab:orange", linestyle="--", linewidth=1)
        ax2.set_ylabel("CPU ns per emitted element (target 1000)")
        ax1.set_xticks(x)
        ax1.set_xticklabels(["%s\n%d elements" % (t, comp[t]["elements"]) for t in tiers])
        ax1.set_title("Full compile per tier (node with 110 local pods)", fontsize=9)
        h1, l1 = ax1.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax1.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "compile.png"), dpi=120)
        plt.close(fig)
    inc = gb_benchmarks(data, "BM_Incremental")
    if inc:
        series = {}
        for key, b in inc.items():
            tier = key.split("/")[0]
            for k, v in b.items():
                if k.endswith("_p50_us") and "_cpu_" not in k:
                    kind = k[:-len("_p50_us")]
                    series.setdefault(kind, {})[tier] = (v, b.get(kind + "_p99_us", v))
        tiers = sorted({t for s in series.values() for t in s})
        fig, ax = plt.subplots(figsize=(7, 4.5))
        width = 0.8 / max(1, len(series))
        for i, (kind, per) in enumerate(sorted(series.items())):
            xs = [j + i * width for j in range(len(tiers))]
            p50 = [per.get(t, (0, 0))[0] / 1000 for t in tiers]
            p99 = [per.get(t, (0, 0))[1] / 1000 for t in tiers]
            ax.bar(xs, p99, width=width, alpha=0.35, color="C%d" % i)
            ax.bar(xs, p50, width=width, color="C%d" % i, label=kind)
        ax.axhline(5, color="black", linestyle="--", linewidth=1, label="target p99 5 ms")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tiers))])
        ax.set_xticklabels(tiers)
        ax.set_yscale("log")
        ax.set_ylabel("event -> transaction (ms, wall; dark p50, light p99)")
        ax.set_title("Incremental: model change + Compile + Diff per event", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "incremental.png"), dpi=120)
        plt.close(fig)


def plot_commit(plt, data, out):
    netpol = gb_benchmarks(data, "BM_Commit")
    floor = gb_benchmarks(data, "BM_Floor")
    tiers = sorted(set(netpol) & set(floor))
    if not tiers:
        return
    x = list(range(len(tiers)))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([i - 0.2 for i in x], [netpol[t]["p50_ms"] for t in tiers], width=0.4,
           color="tab:green", label="netpol full commit")
    ax.bar([i + 0.2 for i in x], [floor[t]["p50_ms"] for t in tiers], width=0.4,
           color="tab:gray", label="libnftnl floor (same sets/elements)")
    for i, t in enumerate(tiers):
        ax.text(i, netpol[t]["p50_ms"], "%.2fx" % (netpol[t]["p50_ms"] / floor[t]["p50_ms"]),
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(["%s\n%d elements" % (t, netpol[t]["elements"]) for t in tiers])
    ax.set_yscale("log")
    ax.set_ylabel("commit time, p50 (ms)")
    ax.set_title("Full commit into an empty netns: netpol vs floor", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "commit.png"), dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datapath", help="run.py's summary.json")
    ap.add_argument("--compile", action="append", default=[],
                    help="compile_bench --benchmark_out JSON (repeatable; later files win)")
    ap.add_argument("--commit", help="commit_bench --benchmark_out JSON")
    ap.add_argument("--out", default=".", help="directory for the PNGs")
    args = ap.parse_args(argv)
    if not (args.datapath or args.compile or args.commit):
        ap.error("give at least one of --datapath, --compile, --commit")
    plt = plt_module()
    os.makedirs(args.out, exist_ok=True)
    if args.datapath:
        plot_datapath(plt, load(args.datapath), args.out)
    if args.compile:
        merged = {}
        for path in args.compile:
            for b in load(path).get("benchmarks", []):
                merged[b["name"]] = b
        plot_compile(plt, {"benchmarks": list(merged.values())}, args.out)
    if args.commit:
        plot_commit(plt, load(args.commit), args.out)
    print("plots in %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
