#!/usr/bin/python3
"""The control-plane targets, old build vs new build, back to back in one run: one table.

Every row runs the old build's binary, then the new build's, before the next row starts, so the
two see the same machine load (the load average is recorded beside each step). Rows:

- ns_selector: full compile of 10,000 namespaces x 10,000 policies whose peers select
  namespaces by label (`namespace_selector_bench 10000 10000 1 4 RUNS`), CPU seconds of
  Compile: the first run in a fresh process and the best later run (the old build runs once:
  its later runs are slower than its first, ~45 s each).
- t4_incremental: T4 event -> transaction through IncrementalCompiler, CPU p99 per event family
  (`compile_bench --tiers=T4 --benchmark_filter=BM_IncrementalCompiler/T4/`); "all kinds" is the
  largest family p99.
- agent_t2 / agent_t4: a real netpol-agent in a network namespace of its own, loaded with the
  tier through its gRPC API, then pod churn at each --churn rate for its seconds, open loop
  (benchmarks/agent/run.py's Agent and agent_client): achieved rate, service time (sent ->
  enforced) p99, agent CPU per event, RSS / YAML after the load, at the load's peak (VmHWM) and
  after the churn.
- etcd: two agents on one real etcd, pod events written through node A and timed until node B's
  kernel announces the change (benchmarks/control_plane/etcd_second_node.py).

    sudo /usr/bin/python3 benchmarks/control_plane/run.py \\
        --old /work/wt/table-old/bazel-bin --new bazel-bin --out /tmp/control_plane

--old and --new are bazel-bin directories of `-c opt` builds holding agent/netpol-agent,
cli/netpolctl, benchmarks/compile_bench and benchmarks/namespace_selector_bench
(benchmarks/control_plane/build_old.sh builds a commit's). The harness's own client
(benchmarks/agent/agent_client) is the new build's for both. Prints the table as markdown and
writes DIR/results.json and DIR/table.md. Exit status 1 when a step fails (the table is still
printed, the failed cells say so).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import etcd_second_node as etcd  # noqa: E402

agent_bench = etcd.agent_bench
ROWS = ("ns_selector", "t4_incremental", "agent_t2", "agent_t4", "etcd")
TARGETS = {
    "rate": 200.0, "service_p99_ms": 5.0, "cpu_t2_ms": 1.0, "cpu_t4_ms": 3.0,
    "incr_p99_ms": 5.0, "rss_over_yaml": 3.0, "ns_compile_s": 1.0, "etcd_p99_ms": 20.0,
}


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def fmt_cmd(argv):
    return " ".join(shlex.quote(a) for a in argv)


class Runner:
    def __init__(self, args):
        self.args = args
        self.commands = []  # (row, build, command line)
        self.log_lines = []

    def log(self, msg):
        line = "[%s, load %s] %s" % (time.strftime("%H:%M:%S"), "/".join(
            "%.1f" % x for x in os.getloadavg()), msg)
        print(line, flush=True)
        self.log_lines.append(line)

    def note(self, row, build, argv):
        self.commands.append((row, build, argv if isinstance(argv, str) else fmt_cmd(argv)))

    def bin(self, build, rel):
        return os.path.join(self.args.old if build == "old" else self.args.new, rel)

    # ---- rows

    def ns_selector(self, build):
        a = self.args
        runs = a.ns_runs_old if build == "old" else a.ns_runs
        argv = [self.bin(build, "benchmarks/namespace_selector_bench"), str(a.ns_namespaces),
                str(a.ns_namespaces), "1", "4", str(runs)]
        self.note("ns_selector", build, argv)
        cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=a.step_timeout)
        if cp.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (fmt_cmd(argv), cp.returncode, cp.stderr))
        runs = []
        for line in cp.stdout.splitlines():
            kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "cpu_s" in kv:
                runs.append({"cpu_s": float(kv["cpu_s"]), "elements": int(kv["elements"]),
                             "chains": int(kv["chains"])})
        if not runs:
            raise RuntimeError("%s printed no run: %s" % (fmt_cmd(argv), cp.stdout))
        return {"runs": runs, "first_s": runs[0]["cpu_s"],
                "best_later_s": min((r["cpu_s"] for r in runs[1:]), default=None)}

    def t4_incremental(self, build):
        a = self.args
        out = os.path.join(a.out, "compile_%s.json" % build)
        argv = [self.bin(build, "benchmarks/compile_bench"), "--tiers=" + a.incr_tier,
                "--events=%d" % a.incr_events, "--event_budget_s=%g" % a.incr_budget_s,
                "--peak_memory=false",
                "--benchmark_filter=BM_IncrementalCompiler/%s/" % a.incr_tier,
                "--benchmark_counters_tabular=true", "--benchmark_out=" + out]
        self.note("t4_incremental", build, argv)
        cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=a.step_timeout)
        if cp.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (fmt_cmd(argv), cp.returncode,
                                                    cp.stderr[-2000:]))
        with open(out) as f:
            data = json.load(f)
        fams = {}
        for b in data["benchmarks"]:
            if b.get("error_occurred"):
                raise RuntimeError("%s: %s" % (b["name"], b.get("error_message")))
            fam = b["name"].split("/")[2]
            keep = {k: v for k, v in b.items()
                    if k.endswith("_us") or k.endswith("_n") or k.startswith("structural")}
            fams[fam] = keep
        if not fams:
            raise RuntimeError("%s ran no benchmark" % fmt_cmd(argv))
        return {"families": fams,
                "all_kinds_p99_us": max(f["cpu_p99_us"] for f in fams.values()),
                "events": sum(sum(v for k, v in f.items() if k.endswith("_n") and
                                  not k.startswith(("structural", "elements_only")))
                              for f in fams.values())}

    def agent(self, build, row, tier, churns):
        """Load `tier` into a fresh agent, then each (rate, seconds) churn in turn."""
        a = self.args
        opts = types.SimpleNamespace(client=a.client)
        workdir = tempfile.mkdtemp(prefix="netpol-cp-bench-")
        agent = None
        try:
            binary = self.bin(build, "agent/netpol-agent")
            self.note(row, build, "unshare --net -- %s --node-name=%s --state-dir=TMP/state "
                      "--listen=unix://TMP/agent.sock" % (binary, agent_bench.NODE))
            agent = agent_bench.Agent(binary, workdir)
            pid = agent.proc.pid
            res = {"tier": tier, "idle": agent_bench.proc_status(pid)}
            self.note(row, build, "%s --server=unix://TMP/agent.sock --tier=%s load"
                      % (a.client, tier))
            cpu0 = agent_bench.cpu_seconds(pid)
            res["load"] = agent_bench.client(opts, agent, tier, "load")
            res["load"]["agent_cpu_s"] = round(agent_bench.cpu_seconds(pid) - cpu0, 3)
            time.sleep(1)
            res["loaded"] = agent_bench.proc_status(pid)
            yaml_kb = res["load"]["yaml_bytes"] / 1024
            res["rss_over_yaml"] = round(res["loaded"]["VmRSS"] / yaml_kb, 2)
            res["hwm_over_yaml"] = round(res["loaded"]["VmHWM"] / yaml_kb, 2)
            self.log("%s %s: loaded %.1f MB of YAML in %.1f s; RSS %.1f MB (%.1fx), peak %.1f MB"
                     % (build, tier, yaml_kb / 1024, res["load"]["seconds"],
                        res["loaded"]["VmRSS"] / 1024, res["rss_over_yaml"],
                        res["loaded"]["VmHWM"] / 1024))
            res["churns"] = []
            for rate, seconds in churns:
                self.note(row, build, "%s --server=unix://TMP/agent.sock --tier=%s --rate=%g "
                          "--seconds=%g --max_wall_s=%g churn" % (a.client, tier, rate, seconds,
                                                                   seconds))
                cpu0, t0 = agent_bench.cpu_seconds(pid), time.monotonic()
                c = agent_bench.client(opts, agent, tier, "churn",
                                       ["--rate=%g" % rate, "--seconds=%g" % seconds,
                                        "--max_wall_s=%g" % seconds])
                wall = time.monotonic() - t0
                cpu = agent_bench.cpu_seconds(pid) - cpu0
                c["agent_cpu_s"] = round(cpu, 3)
                c["agent_cpu_core_share"] = round(cpu / wall, 3)
                c["agent_cpu_ms_per_event"] = round(cpu * 1000 / max(c["sent"], 1), 3)
                c["after"] = agent_bench.proc_status(pid)
                c["loadavg"] = loadavg()
                res["churns"].append(c)
                self.log("%s %s churn at %g/s for %g s: %d sent (%.1f/s), service p99 %.1f ms, "
                         "%.2f ms agent CPU per event, RSS %.1f MB"
                         % (build, tier, rate, seconds, c["sent"], c["achieved_rate"],
                            c["service_ms"]["p99"], c["agent_cpu_ms_per_event"],
                            c["after"]["VmRSS"] / 1024))
            res["after"] = agent_bench.proc_status(pid)
            res["after_over_yaml"] = round(res["after"]["VmRSS"] / yaml_kb, 2)
            res["churn_seconds"] = sum(s for _, s in churns)
            if agent.proc.poll() is not None:
                raise RuntimeError("netpol-agent exited during the run:\n" + agent.log_tail())
            return res
        finally:
            if agent is not None:
                agent.stop()
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)

    def agent_t2(self, build):
        a = self.args
        return self.agent(build, "agent_t2", a.t2_tier, [(r, a.t2_seconds) for r in a.t2_rates])

    def agent_t4(self, build):
        a = self.args
        return self.agent(build, "agent_t4", a.t4_tier, [(a.t4_rate, a.t4_seconds)])

    def etcd(self, build):
        a = self.args
        ns = types.SimpleNamespace(
            agent=self.bin(build, "agent/netpol-agent"),
            netpolctl=self.bin(build, "cli/netpolctl"), client=a.client, tier=a.etcd_tier,
            rate=a.etcd_rate, seconds=a.etcd_seconds, chunk_bytes=1 << 20,
            timeout=a.step_timeout)
        self.note("etcd", build, "%s benchmarks/control_plane/etcd_second_node.py --agent %s "
                  "--netpolctl %s --client %s --tier %s --rate %g --seconds %g"
                  % (sys.executable, ns.agent, ns.netpolctl, ns.client, ns.tier, ns.rate,
                     ns.seconds))
        return etcd.measure(ns, log=lambda m: self.log("%s %s" % (build, m)))


# ---- the table

def num(x, fmt="%.1f"):
    return "—" if x is None else fmt % x


def cell(results, row, build, fn):
    r = results.get(row, {}).get(build)
    if r is None:
        return "not run"
    if "error" in r:
        return "failed: " + r["error"].splitlines()[0][:120]
    try:
        return fn(r)
    except (KeyError, IndexError, TypeError) as e:
        return "missing (%s)" % e


def verdict(results, row, value_fn, target, higher_is_better=False):
    r = results.get(row, {}).get("new")
    if r is None or "error" in r:
        return "not measured"
    try:
        v = value_fn(r)
    except (KeyError, IndexError, TypeError):
        return "not measured"
    if v is None:
        return "not measured"
    ok = v >= target if higher_is_better else v <= target
    return "met" if ok else "**missed**"


def churn_at(r, rate):
    for c in r["churns"]:
        if abs(c["rate"] - rate) < 1e-6:
            return c
    raise KeyError("no churn at %g/s" % rate)


def table(results, args):
    t2, t4 = args.t2_tier, args.t4_tier
    rmax = max(args.t2_rates)
    rmin = min(args.t2_rates)
    rows = []

    def add(metric, target, row, fn, vfn=None, tgt=None, higher=False):
        rows.append((metric, target, cell(results, row, "old", fn), cell(results, row, "new", fn),
                     verdict(results, row, vfn, tgt, higher) if vfn else ""))

    for rate in args.t2_rates:
        add("%s sustained pod churn through the real agent, offered %g/s (%g s)"
            % (t2, rate, args.t2_seconds), "≥ 200 events/s" if rate >= 200 else "", "agent_t2",
            lambda r, rate=rate: "%.1f/s (%d of %d sent)" % (
                churn_at(r, rate)["achieved_rate"], churn_at(r, rate)["sent"],
                churn_at(r, rate)["events"]),
            (lambda r, rate=rate: churn_at(r, rate)["achieved_rate"]) if rate >= 200 else None,
            TARGETS["rate"], True)
    add("%s write -> enforced (service time) p99 / p50 at %g/s" % (t2, rmin), "p99 ≤ 5 ms",
        "agent_t2", lambda r: "%.1f / %.1f ms" % (churn_at(r, rmin)["service_ms"]["p99"],
                                                churn_at(r, rmin)["service_ms"]["p50"]),
        lambda r: churn_at(r, rmin)["service_ms"]["p99"], TARGETS["service_p99_ms"])
    add("%s write -> enforced (service time) p99 / p50 at %g/s" % (t2, rmax), "",
        "agent_t2", lambda r: "%.1f / %.1f ms" % (churn_at(r, rmax)["service_ms"]["p99"],
                                                churn_at(r, rmax)["service_ms"]["p50"]))
    add("agent CPU per pod event, %s (churn at %g/s; at %g/s)" % (t2, rmin, rmax), "≤ 1 ms",
        "agent_t2", lambda r: "%.2f ms; %.2f ms" % (
            churn_at(r, rmin)["agent_cpu_ms_per_event"],
            churn_at(r, rmax)["agent_cpu_ms_per_event"]),
        lambda r: churn_at(r, rmin)["agent_cpu_ms_per_event"], TARGETS["cpu_t2_ms"])
    add("agent CPU per pod event, %s (churn at %g/s, %g s)" % (t4, args.t4_rate, args.t4_seconds),
        "≤ 3 ms", "agent_t4",
        lambda r: "%.2f ms (%.1f/s achieved)" % (r["churns"][0]["agent_cpu_ms_per_event"],
                                                r["churns"][0]["achieved_rate"]),
        lambda r: r["churns"][0]["agent_cpu_ms_per_event"], TARGETS["cpu_t4_ms"])
    add("%s incremental event -> transaction, CPU p99, all event kinds (pod churn / relabel / "
        "policy churn)" % args.incr_tier, "≤ 5 ms", "t4_incremental",
        lambda r: "%s ms (%s)" % (num(r["all_kinds_p99_us"] / 1000, "%.2f"), " / ".join(
            num(r["families"][f]["cpu_p99_us"] / 1000, "%.2f") if f in r["families"] else "—"
            for f in ("pod_churn", "relabel", "policy_churn"))),
        lambda r: r["all_kinds_p99_us"] / 1000, TARGETS["incr_p99_ms"])
    add("%s incremental event -> transaction, CPU p50 (pod churn / relabel / policy churn), "
        "events run" % args.incr_tier, "", "t4_incremental",
        lambda r: "%s ms, %d events" % (" / ".join(
            num(r["families"][f]["cpu_p50_us"] / 1000, "%.3f") if f in r["families"] else "—"
            for f in ("pod_churn", "relabel", "policy_churn")), r["events"]))
    for tier, row, secs in ((t2, "agent_t2", args.t2_seconds * len(args.t2_rates)),
                            (t4, "agent_t4", args.t4_seconds)):
        add("agent RSS / serialized objects (YAML), %s: after load; load's peak (VmHWM); after "
            "%g s of churn" % (tier, secs), "≤ 3x", row,
            lambda r: "%.1fx; %.1fx; %.1fx (%.1f MB YAML: %.0f; %.0f; %.0f MB)" % (
                r["rss_over_yaml"], r["hwm_over_yaml"], r["after_over_yaml"],
                r["load"]["yaml_bytes"] / 2**20, r["loaded"]["VmRSS"] / 1024,
                r["loaded"]["VmHWM"] / 1024, r["after"]["VmRSS"] / 1024),
            lambda r: max(r["rss_over_yaml"], r["after_over_yaml"]), TARGETS["rss_over_yaml"])
        add("%s load through the API (Apply calls of ≤ 4 MB)" % tier, "", row,
            lambda r: "%.1f s, %.1f s agent CPU" % (r["load"]["seconds"],
                                                    r["load"]["agent_cpu_s"]))
    add("full compile, %d namespaces x %d namespace-selecting policies, CPU: first run in a "
        "process; best later run" % (args.ns_namespaces, args.ns_namespaces), "≤ 1 s",
        "ns_selector", lambda r: "%.2f s; %s" % (r["first_s"], num(r["best_later_s"], "%.2f s")),
        lambda r: r["first_s"], TARGETS["ns_compile_s"])
    add("etcd datastore: pod event -> enforced on a second node, p99 / p50 at %s (%g events/s "
        "offered, %g s): the second node's kernel notification naming the pod, events that "
        "changed its table" % (args.etcd_tier, args.etcd_rate, args.etcd_seconds),
        "p99 ≤ 20 ms", "etcd", lambda r: "%s / %s ms (%d of %d events, %.1f/s achieved)" % (
            num(r["kernel_notification_on_b_ms"]["p99"]),
            num(r["kernel_notification_on_b_ms"]["p50"]), r["kernel_notification_on_b_ms"]["n"],
            r["sent"], r["achieved_rate"]),
        lambda r: r["kernel_notification_on_b_ms"]["p99"], TARGETS["etcd_p99_ms"])
    add("etcd: the second node reports the event's generation applied (every event), p99 / p50; "
        "its kernel's notification before that report, p50; writer's service time p99; agent "
        "CPU per event writer / second node", "", "etcd",
        lambda r: "%.1f / %.1f ms; %s ms; %.1f ms; %.2f / %.2f ms" % (
            r["enforced_on_b_ms"]["p99"], r["enforced_on_b_ms"]["p50"],
            num(None if r["kernel_notification_minus_applied_ms"]["p50"] is None
                else -r["kernel_notification_minus_applied_ms"]["p50"]),
            r["writer_service_ms"]["p99"], r["agent_cpu_ms_per_event"][etcd.WRITER],
            r["agent_cpu_ms_per_event"][etcd.TIMED]))
    out = ["| metric | target | old (%s) | new (%s) | new vs target |" % (args.old_label,
                                                                       args.new_label),
           "|---|---|---|---|---|"]
    for m, t, o, n, v in rows:
        out.append("| %s | %s | %s | %s | %s |" % (m, t, o, n, v))
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", help="bazel-bin of the old -c opt build (required)")
    p.add_argument("--new", help="bazel-bin of the new -c opt build (required)")
    p.add_argument("--old-label", default="old")
    p.add_argument("--new-label", default="new")
    p.add_argument("--client", help="agent_client (default: the new build's)")
    p.add_argument("--out", default="/tmp/control_plane", help="directory for the results")
    p.add_argument("--rows", default=",".join(ROWS), help="subset of " + ",".join(ROWS))
    p.add_argument("--builds", default="old,new",
                   help="which builds to run (the smoke test runs new only)")
    p.add_argument("--ns-namespaces", type=int, default=10000)
    p.add_argument("--ns-runs", type=int, default=3, help="compiles in one process, new build")
    p.add_argument("--ns-runs-old", type=int, default=1,
                   help="compiles in one process, old build (its later runs take ~45 s each)")
    p.add_argument("--incr-tier", default="T4")
    p.add_argument("--incr-events", type=int, default=1000)
    p.add_argument("--incr-budget-s", type=float, default=30,
                   help="compile_bench --event_budget_s: wall cap per event family")
    p.add_argument("--t2-tier", default="T2")
    p.add_argument("--t2-rates", default="100,200")
    p.add_argument("--t2-seconds", type=float, default=60,
                   help="seconds of churn per rate (one agent: the rates in turn)")
    p.add_argument("--t4-tier", default="T4")
    p.add_argument("--t4-rate", type=float, default=100)
    p.add_argument("--t4-seconds", type=float, default=20,
                   help="T4 churn seconds (not 2 minutes: the T4 loads take 2-3 min per build)")
    p.add_argument("--etcd-tier", default="T2")
    p.add_argument("--etcd-rate", type=float, default=50)
    p.add_argument("--etcd-seconds", type=float, default=30)
    p.add_argument("--step-timeout", type=float, default=900,
                   help="cap on one step (one build's row)")
    p.add_argument("--table-from", metavar="RESULTS_JSON",
                   help="print the table of an earlier run's results.json and exit")
    args = p.parse_args()
    if args.table_from:
        with open(args.table_from) as f:
            data = json.load(f)
        print(table(data["results"], types.SimpleNamespace(**data["args"])))
        return 0
    if not args.old or not args.new:
        p.error("--old and --new are required")
    args.t2_rates = [float(x) for x in args.t2_rates.split(",") if x]
    args.client = args.client or os.path.join(args.new, "benchmarks/agent/agent_client")
    rows = [r for r in args.rows.split(",") if r]
    builds = [b for b in args.builds.split(",") if b]
    if not builds or set(builds) - {"old", "new"}:
        p.error("--builds: old, new or both")
    bad = [r for r in rows if r not in ROWS]
    if bad:
        p.error("unknown rows %s (known: %s)" % (bad, ",".join(ROWS)))
    if os.geteuid() != 0 and set(rows) & {"agent_t2", "agent_t4", "etcd"}:
        print("run.py needs root for the agent and etcd rows (network namespaces, nftables)",
              file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    runner = Runner(args)
    results = {}
    t_start = time.monotonic()
    failed = False
    for row in rows:
        results[row] = {}
        for build in builds:
            la0, t0 = loadavg(), time.monotonic()
            runner.log("%s: %s ..." % (row, build))
            try:
                r = getattr(runner, row)(build)
            except Exception as e:  # noqa: BLE001: a failed cell is reported, the run goes on
                failed = True
                r = {"error": "%s: %s" % (type(e).__name__, e)}
                runner.log("%s %s FAILED: %s" % (row, build, r["error"]))
            r["seconds"] = round(time.monotonic() - t0, 1)
            r["loadavg_before"], r["loadavg_after"] = la0, loadavg()
            results[row][build] = r
            runner.log("%s: %s done in %.0f s" % (row, build, r["seconds"]))
    total = time.monotonic() - t_start
    md = table(results, args)
    las = [v for row in results.values() for r in row.values()
           for v in (r["loadavg_before"][0], r["loadavg_after"][0])]
    header = ("Old = %s (`%s`), new = %s (`%s`), run back to back per row on %s; whole run "
              "%.1f min; 1-minute load average %.1f-%.1f during the run (per step in "
              "results.json)." % (args.old_label, args.old, args.new_label, args.new,
                                  time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), total / 60,
                                  min(las), max(las)))
    per_step = "\n".join("- %s, %s: %.0f s, load %s -> %s" % (
        row, build, r["seconds"], "/".join("%.1f" % x for x in r["loadavg_before"]),
        "/".join("%.1f" % x for x in r["loadavg_after"]))
        for row, builds in results.items() for build, r in builds.items())
    cmds = "\n".join("- %s, %s: `%s`" % c for c in runner.commands)
    text = "%s\n\n%s\n\nSteps:\n%s\n\nCommands:\n%s\n" % (header, md, per_step, cmds)
    print("\n" + text)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"results": results, "args": vars(args), "commands": runner.commands,
                   "log": runner.log_lines, "total_s": round(total, 1)}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
