#!/usr/bin/python3
"""etcd datastore: pod event written through one node -> enforced in a second node's kernel.

Two netpol-agents on the etcd datastore against one real etcd (Debian's /usr/bin/etcd), in the
multi-node lab's network namespaces (tests/multinode/multilab.py: an underlay bridge, etcd's
namespace, one namespace per node; nothing touches the host's firewall). The agents are the
workload's node-2 (A, the writer) and node-1 (B, the one timed); at T2 each holds 110 pods of
the tier. Then:

1. the tier's objects are applied through A's API (`agent_client load`, Apply calls of at most
   --chunk-bytes of YAML; etcd runs with its request limits raised for them) and both nodes
   converge: each kernel enforces the newest objects revision (`MultiLab.wait_converged`);
2. `nft monitor` starts in B's namespace: it prints each netlink notification B's kernel sends
   when a transaction commits ("add element inet netpol <set> { 10.x.y.z ... }"); a reader
   thread stamps every line with CLOCK_MONOTONIC as it arrives (line-buffered through stdbuf);
   a warm-up pair of events proves the monitor is live;
3. `agent_client churn --trace --follow` sends pod events through A at --rate for --seconds,
   open loop, one RPC at a time: add a pod, then delete it, alternately a pod placed on B and
   one on a node of its own (node-9999); it records when each event was due and sent and the
   generation (etcd revision) A's reply named, while a thread of it follows B's applied
   generation (StatusService.WaitForGeneration of B's next generation, in a loop: B answers as
   soon as the kernel commit covering it is done).

"pod event -> enforced on B" = B's kernel announcing the change minus the moment the event was
sent to A: the etcd write, B's watch, B's sync and B's kernel commit, whatever A does meanwhile.
`nft monitor` in B's namespace stamps each set-element notification as it arrives; an event's
is the first one after its send naming the pod's address with its verb, before the next event
naming that address with that verb is sent (the churn reuses addresses). Only the events that
changed B's table have one: a pod placed on B always does (B isolates it) unless its add and
the delete after it reached B in one watch batch and cancelled out; a pod placed elsewhere only
when B's policies select it as a peer. Beside it, for every event: when B reported the event's
generation (or a later one) applied, which B must reach for each event whether it changes B's
table or not; the agent answers after its commit, so this is an upper bound, and how long after
the kernel's notification it comes is reported too. Also reported: A's service time (sent ->
A's reply) and both agents' CPU per event over the churn.

    sudo /usr/bin/python3 benchmarks/control_plane/etcd_second_node.py \\
        --agent bazel-bin/agent/netpol-agent --netpolctl bazel-bin/cli/netpolctl \\
        --client bazel-bin/benchmarks/agent/agent_client --tier T2 --rate 50 --seconds 30

Prints one JSON object (also to --out). Exit status 1 on any failure.
"""

import argparse
import bisect
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "multinode"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402
import multilab  # noqa: E402


def _load_agent_bench():
    """benchmarks/agent/run.py as a module (its /proc readers)."""
    spec = importlib.util.spec_from_file_location(
        "agent_bench", os.path.join(ROOT, "benchmarks", "agent", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


agent_bench = _load_agent_bench()

WRITER = "node-2"  # A
TIMED = "node-1"  # B
# Raised so that a load's Apply (one etcd transaction per request) fits: at most --chunk-bytes
# of YAML per request, a few thousand objects.
ETCD_FLAGS = ["--max-txn-ops=100000", "--max-request-bytes=33554432",
              "--quota-backend-bytes=8589934592"]
ELEMENT = re.compile(r"^(add|delete) element ")
# An IPv4 address standing alone (not part of a longer dotted run, a prefix or a range end).
IPV4 = re.compile(r"(?<![0-9.-])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![0-9./-])")


class Lab(multilab.MultiLab):
    """The multi-node lab with two nodes and no lab pods (the workload's pods exist only as
    objects); agents with a long write timeout for the load."""

    def __init__(self, agent, netpolctl):
        super().__init__(lab.Model(pods=[]), agent, netpolctl, nodes=2)

    def agent_flags(self, node):
        return super().agent_flags(node) + ["--etcd-write-timeout=300s"]


class Monitor:
    """`nft monitor` in a namespace: the IPv4 addresses named by set-element notifications,
    each with the arrival times of its "add element" and "delete element" lines."""

    def __init__(self, netns, log_path):
        self.seen = {}  # (verb, address) -> [monotonic ns, ...] in arrival order
        self.lines = 0
        self.lock = threading.Lock()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "stdbuf", "-oL", "nft", "monitor"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
            start_new_session=True, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            t = time.monotonic_ns()
            m = ELEMENT.match(line)
            if not m:
                continue
            with self.lock:
                self.lines += 1
                for ip in set(IPV4.findall(line)):
                    self.seen.setdefault((m.group(1), ip), []).append(t)

    def first(self, verb, ip, after_ns):
        """Arrival of the first `verb` line naming `ip` at or after `after_ns`, or None."""
        with self.lock:
            times = self.seen.get((verb, ip), [])
            i = bisect.bisect_left(times, after_ns)
            return times[i] if i < len(times) else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(timeout=10)
        self.log.close()


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def fmt(x):
    return "-" if x is None else "%.1f" % x


def summary(ms):
    return {"n": len(ms), "p50": pct(ms, 0.5), "p90": pct(ms, 0.9), "p99": pct(ms, 0.99),
            "max": pct(ms, 1.0)}


def client(args, node, lab_, extra, mode):
    argv = [args.client, "--server=unix://" + lab_.socket(node), "--tier=" + args.tier] + \
        list(extra) + [mode]
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        timeout=args.timeout)
    if cp.returncode != 0:
        raise lab.LabError("%s failed (%d): %s\n%s" % (
            " ".join(argv), cp.returncode, cp.stderr.strip(),
            lab_.tail(lab_.agent_log(node))))
    return json.loads(cp.stdout.strip().splitlines()[-1])


def read_trace(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_seen(monitor, events, timeout):
    """Waits until every event of `events` has its notification; returns the missing ones."""
    deadline = time.monotonic() + timeout
    while True:
        missing = [e for e in events
                   if monitor.first("add" if e["op"] == "add" else "delete", e["ip"],
                                    e["sent_ns"]) is None]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


def measure(args, log=print):
    """The whole run; returns the result dict. Raises lab.LabError on failure."""
    lab.require_root("the etcd second-node benchmark")
    result = {"tier": args.tier, "rate": args.rate, "seconds": args.seconds,
              "writer": WRITER, "timed": TIMED}
    with Lab(args.agent, args.netpolctl) as the_lab:
        the_lab.start_etcd(ETCD_FLAGS)
        the_lab.start_agents(timeout=60)
        t0 = time.monotonic()
        load = client(args, WRITER, the_lab, ["--chunk_bytes=%d" % args.chunk_bytes], "load")
        revision = the_lab.wait_converged(timeout=args.timeout)
        result["load"] = dict(load, converged_s=round(time.monotonic() - t0, 3),
                              revision=revision)
        log("etcd %s: %d objects through %s in %.1f s, both nodes enforce revision %d after "
            "%.1f s" % (args.tier, load["namespaces"] + load["pods"] + load["policies"], WRITER,
                        load["seconds"], revision, result["load"]["converged_s"]))
        trace = os.path.join(the_lab.workdir, "trace.jsonl")
        monitor = Monitor(the_lab.node_ns[TIMED], os.path.join(the_lab.workdir, "monitor.log"))
        try:
            # Warm-up: one pair on B, 2 s apart (so that B commits the add alone), until B's
            # monitor shows the add: the monitor is live.
            time.sleep(0.5)
            client(args, WRITER, the_lab, ["--rate=0.5", "--seconds=4", "--node=" + TIMED,
                                           "--trace=" + trace], "churn")
            missing = wait_seen(monitor, read_trace(trace)[:1], 60)
            if missing:
                raise lab.LabError("nft monitor in %s's namespace saw no notification for the "
                                   "warm-up event %s" % (TIMED, missing))
            pids = {n: the_lab.agents[n].proc.pid for n in (WRITER, TIMED)}
            cpu0 = {n: agent_bench.cpu_seconds(p) for n, p in pids.items()}
            churn = client(args, WRITER, the_lab,
                           ["--rate=%g" % args.rate, "--seconds=%g" % args.seconds,
                            "--max_wall_s=%g" % args.seconds, "--node=" + TIMED,
                            "--trace=" + trace, "--follow=unix://" + the_lab.socket(TIMED)],
                           "churn")
            events = read_trace(trace)
            cpu = {n: agent_bench.cpu_seconds(p) - cpu0[n] for n, p in pids.items()}
            time.sleep(1)  # the last notifications
        finally:
            monitor.stop()
        never = [e for e in events if e["follow_ns"] < 0]
        if never:
            raise lab.LabError("%d of %d events: %s never reported their generation applied, "
                               "e.g. %s" % (len(never), len(events), TIMED, never[:3]))
        for n in (WRITER, TIMED):
            if not the_lab.agents[n].running():
                raise lab.LabError("the agent of %s exited during the run:\n%s"
                                   % (n, the_lab.tail(the_lab.agent_log(n))))
        on_b = [(e["follow_ns"] - e["sent_ns"]) / 1e6 for e in events]
        on_b_due = [(e["follow_ns"] - e["due_ns"]) / 1e6 for e in events]
        on_b_local = [(e["follow_ns"] - e["sent_ns"]) / 1e6 for e in events
                      if e["node"] == TIMED]
        kernel, kernel_after = [], []
        # The churn names the same address again in later events: a notification counts for an
        # event only when it arrives before the next event with the same verb and address is
        # sent, else a cancelled event (never in B's table) would take a later event's.
        sends = {}
        for e in events:
            sends.setdefault((e["op"], e["ip"]), []).append(e["sent_ns"])
        for key in sends:
            sends[key].sort()
        for e in events:
            t = monitor.first("add" if e["op"] == "add" else "delete", e["ip"], e["sent_ns"])
            later = sends[(e["op"], e["ip"])]
            i = bisect.bisect_right(later, e["sent_ns"])
            if t is not None and i < len(later) and t >= later[i]:
                t = None
            if t is not None:
                kernel.append((t - e["sent_ns"]) / 1e6)
                kernel_after.append((t - e["follow_ns"]) / 1e6)
        sent = len(events)
        result.update({
            "sent": sent, "events": churn["events"], "achieved_rate": churn["achieved_rate"],
            "enforced_on_b_ms": summary(on_b),
            "enforced_on_b_from_due_ms": summary(on_b_due),
            "enforced_on_b_pods_on_b_ms": summary(on_b_local),
            "kernel_notification_on_b_ms": summary(kernel),
            # Notification arrival - B's reply that the generation was applied: negative when
            # the kernel announced the change first, as it must (the reply follows the commit).
            "kernel_notification_minus_applied_ms": summary(kernel_after),
            "writer_service_ms": summary([(e["done_ns"] - e["sent_ns"]) / 1e6 for e in events]),
            "agent_cpu_ms_per_event": {n: round(c * 1000 / max(sent, 1), 3)
                                       for n, c in cpu.items()},
            "rss_kb": {n: agent_bench.proc_status(p)["VmRSS"] for n, p in pids.items()},
        })
        b = result["enforced_on_b_ms"]
        k = result["kernel_notification_on_b_ms"]
        log("etcd %s: %d events through %s at %g/s offered (%.1f/s achieved): %d changed "
            "%s's table, its kernel's notification p50 %s ms, p99 %s ms; %s reported the "
            "generation applied p50 %.1f ms, p99 %.1f ms, max %.1f ms; %s service p99 %.1f ms; "
            "agent CPU per event %s %.2f ms, %s %.2f ms"
            % (args.tier, sent, WRITER, args.rate, churn["achieved_rate"], k["n"], TIMED,
               fmt(k["p50"]), fmt(k["p99"]), TIMED, b["p50"], b["p99"], b["max"], WRITER,
               result["writer_service_ms"]["p99"], WRITER,
               result["agent_cpu_ms_per_event"][WRITER], TIMED,
               result["agent_cpu_ms_per_event"][TIMED]))
    return result


def add_args(p):
    p.add_argument("--agent", default="bazel-bin/agent/netpol-agent")
    p.add_argument("--netpolctl", default="bazel-bin/cli/netpolctl")
    p.add_argument("--client", default="bazel-bin/benchmarks/agent/agent_client")
    p.add_argument("--tier", default="T2")
    p.add_argument("--rate", type=float, default=50.0, help="pod events per second offered")
    p.add_argument("--seconds", type=float, default=30.0, help="churn duration (and its cap)")
    p.add_argument("--chunk-bytes", type=int, default=1 << 20,
                   help="load: YAML bytes per Apply call at most")
    p.add_argument("--timeout", type=float, default=900, help="cap on the load and each step")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_args(p)
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args()
    try:
        result = measure(args)
    except lab.LabError as e:
        print("FAILED: %s" % e, file=sys.stderr)
        return 1
    result["loadavg"] = os.getloadavg()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
