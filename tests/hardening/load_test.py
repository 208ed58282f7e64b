#!/usr/bin/python3
"""Load: many concurrent clients issuing checks and applies against one agent.

In a fresh network namespace (re-executes itself under `unshare --net`) the real netpol-agent
enforces a small state (namespace `load`, --pods pods). --clients clients issue, for --seconds,
checks between random pods and applies of the client's own NetworkPolicy `c<N>` with a fresh
random port (--apply-fraction of the requests). With --client (//tests/hardening:load_client)
every client is a gRPC channel of one process; without it, a thread running one `netpolctl`
process per request. It checks:
  * no request fails, except with the documented backpressure: RESOURCE_EXHAUSTED ("retry with
    backoff", api/README.md), counted and reported. UNAVAILABLE, DEADLINE_EXCEEDED or any other
    error is a failure;
  * the agent's memory stays bounded: VmRSS sampled every 0.2 s during the load (and VmHWM,
    the kernel's peak) under --max-rss-mib; its thread count is sampled and reported;
  * at the end the agent holds the last acknowledged state: every client's policy in the store
    has the port of that client's last acknowledged apply (refused applies changed nothing),
    the kernel holds exactly the committed program (`netpolctl render` == `render --kernel`,
    and Status says the newest generation is in the kernel), and the ports in `nft list table
    inet netpol` are exactly the acknowledged ones.

    load_test.py --agent PATH --ctl PATH [--client PATH] [--clients N] [--seconds S]
                 [--pods N] [--seed S] [--max-rss-mib M] [--keep]
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab"))
import lab  # noqa: E402

# How netpolctl reports the agent's RESOURCE_EXHAUSTED refusal.
BACKPRESSURE = ("resource_exhausted", "resource exhausted", "retry with backoff")


def rss_kib(pid):
    """VmRSS, VmHWM (KiB) and Threads of a process, from /proc/<pid>/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def kernel_ports(table_listing):
    """The destination ports of the allow elements (`... . tcp . PORT`) in an nft listing."""
    return set(int(m) for m in re.findall(r"\. tcp \. (\d+)\b", table_listing))


def base_state(pods):
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: load, labels: {ns: load}}\n"]
    for i in range(pods):
        docs.append(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p%d, namespace: load, labels: "
            "{app: a%d}}\nspec: {nodeName: node-1}\nstatus: {podIP: 10.70.%d.%d}\n"
            % (i, i % 10, i // 250, i % 250 + 1))
    return "---\n".join(docs)


def client_policy(client, port, pods):
    return ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            "metadata: {name: c%d, namespace: load}\n"
            "spec:\n  podSelector: {matchLabels: {app: a%d}}\n"
            "  ingress:\n  - from: [{podSelector: {matchLabels: {app: a%d}}}]\n"
            "    ports: [{protocol: TCP, port: %d}]\n"
            % (client, client % 10, (client + 1) % 10, port))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {"check": 0, "apply": 0}
        self.backpressure = {"check": 0, "apply": 0}
        self.failures = []
        self.last_acked = {}  # client -> port of its last successful apply
        self.latencies = {"check": [], "apply": []}
        self.latency_summary = {}


def client_loop(args, sock, tmp, client, stop_at, stats):
    rng = random.Random(args.seed * 100003 + client)
    path = os.path.join(tmp, "c%d.yaml" % client)
    while time.monotonic() < stop_at:
        kind = "apply" if rng.random() < args.apply_fraction else "check"
        if kind == "apply":
            port = rng.randrange(1024, 65535)
            with open(path, "w") as f:
                f.write(client_policy(client, port, args.pods))
            argv = ["apply", "-f", path]
        else:
            argv = ["check", "--from=load/p%d" % rng.randrange(args.pods),
                    "--to=load/p%d" % rng.randrange(args.pods),
                    "--port=%d" % rng.randrange(1, 65535), "--protocol=TCP"]
        t0 = time.monotonic()
        try:
            cp = subprocess.run([args.ctl, "--server=" + sock] + argv, capture_output=True,
                                text=True, timeout=300)
            code, text = cp.returncode, (cp.stderr + cp.stdout).strip()
        except subprocess.TimeoutExpired:
            code, text = -1, "netpolctl did not return in 300 s"
        ms = (time.monotonic() - t0) * 1000
        good = code == 0 or (kind == "check" and code == 1)
        with stats.lock:
            if good:
                stats.ok[kind] += 1
                stats.latencies[kind].append(ms)
                if kind == "apply":
                    stats.last_acked[client] = port
            elif any(b in text.lower() for b in BACKPRESSURE):
                stats.backpressure[kind] += 1
            else:
                stats.failures.append("client %d %s: exit %d: %s" % (client, kind, code, text))


def sync_durations(log_path):
    """Durations (ms) of the agent's sync log lines ("sync kind=... duration=1.5s")."""
    units = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
    out = []
    try:
        text = open(log_path).read()
    except OSError:
        return out
    for d in re.findall(r"sync kind=\S+ .*duration=(\S+)", text):
        out.append(sum(float(v) * units[u] for v, u in re.findall(r"([\d.]+)(ns|us|ms|s|m|h)", d)))
    return out


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default=os.environ.get("NETPOL_AGENT"))
    ap.add_argument("--ctl", default=os.environ.get("NETPOLCTL"))
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--pods", type=int, default=200)
    ap.add_argument("--apply-fraction", type=float, default=0.2)
    ap.add_argument("--max-rss-mib", type=int, default=768,
                    help="bound on the agent's peak resident memory (1,000 clients x 60 s: "
                         "180-370 MiB measured)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (agent log, state) and print its path")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--client", default=os.environ.get("NETPOL_LOAD_CLIENT"),
                    help="the gRPC load client (//tests/hardening:load_client); without it "
                         "every request is a netpolctl process")
    args = ap.parse_args()
    if not args.agent or not args.ctl:
        ap.error("--agent and --ctl are required")
    lab.require_root("load_test")
    if os.environ.get("NETPOL_LOAD_NETNS") != "1":
        env = dict(os.environ, NETPOL_LOAD_NETNS="1")
        return subprocess.call(["unshare", "--net", sys.executable, "-B",
                                os.path.abspath(__file__)] + sys.argv[1:], env=env)
    args.agent, args.ctl = os.path.abspath(args.agent), os.path.abspath(args.ctl)
    if args.client:
        args.client = os.path.abspath(args.client)
    tmp = tempfile.mkdtemp(prefix="netpol-load-")
    agent = None
    problems = []

    def ctl(*a):
        return agent.ctl(*a, timeout=300)

    try:
        # In this process's own network namespace (netns None).
        agent = lab.Agent(args.agent, args.ctl, None, tmp)
        sock, log_path = agent.server, agent.log_path
        with open(os.path.join(tmp, "base.yaml"), "w") as f:
            f.write(base_state(args.pods))
        cp = ctl("apply", "-f", os.path.join(tmp, "base.yaml"))
        if cp.returncode != 0:
            raise SystemExit("apply base state: " + cp.stderr)
        before = rss_kib(agent.proc.pid)

        stats = Stats()
        stop_at = time.monotonic() + args.seconds
        t0 = time.monotonic()
        peak_rss = peak_threads = 0
        refusal = ""
        if args.client:
            # One process, one gRPC channel per client (tests/hardening/load_client.cc).
            out_path = os.path.join(tmp, "client.out")
            with open(out_path, "w") as out:
                proc = subprocess.Popen(
                    [args.client, sock, str(args.clients), str(args.seconds), str(args.pods),
                     str(int(args.apply_fraction * 100)), str(args.seed)],
                    stdout=out, stderr=subprocess.STDOUT)
            alive = lambda: proc.poll() is None
        else:
            threads = [threading.Thread(target=client_loop,
                                        args=(args, sock, tmp, c, stop_at, stats), daemon=True)
                       for c in range(args.clients)]
            for t in threads:
                t.start()
            alive = lambda: any(t.is_alive() for t in threads)
        while alive():
            if not agent.running():
                problems.append("the agent exited with status %s during the load"
                                % agent.proc.returncode)
                break
            sample = rss_kib(agent.proc.pid)
            peak_rss = max(peak_rss, sample["VmRSS"])
            peak_threads = max(peak_threads, sample["Threads"])
            time.sleep(0.2)
        if args.client:
            if proc.wait() != 0:
                problems.append("load_client exited with status %d" % proc.returncode)
            for line in open(out_path).read().splitlines():
                word, _, rest = line.partition(" ")
                if word in ("check", "apply"):
                    f = dict(kv.split("=") for kv in rest.split())
                    stats.ok[word] = int(f["ok"])
                    stats.backpressure[word] = int(f["backpressure"])
                    stats.latency_summary[word] = (float(f["p50_ms"]), float(f["p99_ms"]),
                                                   float(f["max_ms"]))
                elif word == "acked":
                    c, port = rest.split()
                    stats.last_acked[int(c)] = int(port)
                elif word == "refusal":
                    refusal = rest
                elif word == "failure":
                    stats.failures.append(rest)
                else:
                    stats.failures.append("load_client: " + line)
        else:
            for t in threads:
                t.join()
            for kind in ("check", "apply"):
                lat = stats.latencies[kind]
                stats.latency_summary[kind] = (pct(lat, 0.5), pct(lat, 0.99),
                                               max(lat) if lat else 0)
        elapsed = time.monotonic() - t0
        if agent.running():
            after = rss_kib(agent.proc.pid)
        else:
            after = {"VmRSS": 0, "VmHWM": 0, "Threads": 0}

        total = sum(stats.ok.values())
        print("%d %s clients for %.1f s (%.1f s with stragglers): %d checks, %d applies answered "
              "(%.0f req/s); backpressure: %d checks, %d applies; other failures: %d"
              % (args.clients, "gRPC" if args.client else "netpolctl", args.seconds, elapsed,
                 stats.ok["check"], stats.ok["apply"],
                 total / elapsed, stats.backpressure["check"], stats.backpressure["apply"],
                 len(stats.failures)))
        for kind in ("check", "apply"):
            print("  %s latency (ms): p50 %.1f, p99 %.1f, max %.1f"
                  % ((kind,) + stats.latency_summary[kind]))
        print("agent memory: VmRSS %.1f MiB before, %.1f MiB after, %.1f MiB sampled peak; "
              "VmHWM %.1f MiB; threads %d before, %d sampled peak"
              % (before["VmRSS"] / 1024, after["VmRSS"] / 1024, peak_rss / 1024,
                 after["VmHWM"] / 1024, before["Threads"], peak_threads))
        syncs = sync_durations(log_path)
        if syncs:
            print("agent syncs: %d, duration p50 %.0f ms, max %.0f ms"
                  % (len(syncs), pct(syncs, 0.5), max(syncs)))
        if refusal:
            print("a refusal reads: " + refusal)
            if "retry with backoff" not in refusal:
                problems.append("the RESOURCE_EXHAUSTED message does not tell the client to "
                                "retry with backoff: " + refusal)
        for f in stats.failures[:20]:
            problems.append(f)
        if len(stats.failures) > 20:
            problems.append("... and %d more failures" % (len(stats.failures) - 20))
        if stats.ok["check"] == 0 or stats.ok["apply"] == 0:
            problems.append("no check or no apply succeeded: the load proved nothing")
        limit = args.max_rss_mib * 1024
        if max(after["VmHWM"], peak_rss) > limit:
            problems.append("agent memory peaked at %.1f MiB, bound %d MiB"
                            % (max(after["VmHWM"], peak_rss) / 1024, args.max_rss_mib))

        if agent.running():
            # The last acknowledged state: each client's policy carries its last acked port.
            cp = ctl("get", "networkpolicies", "-n", "load", "-o", "json")
            if cp.returncode != 0:
                problems.append("netpolctl get: " + cp.stderr)
            else:
                got = {}
                doc = json.loads(cp.stdout)
                items = doc.get("items", doc) if isinstance(doc, dict) else doc
                for item in items:
                    name = item["metadata"]["name"]
                    port = item["spec"]["ingress"][0]["ports"][0]["port"]
                    got[int(name[1:])] = int(float(port))
                if got != stats.last_acked:
                    diff = sorted(c for c in set(got) | set(stats.last_acked)
                                  if got.get(c) != stats.last_acked.get(c))
                    problems.append("stored policies differ from the last acknowledged applies "
                                    "for clients %s" % diff[:20])
                else:
                    print("the store holds the last acknowledged apply of all %d clients"
                          % len(got))
            committed = ctl("render")
            kernel = ctl("render", "--kernel")
            if committed.returncode or kernel.returncode:
                problems.append("netpolctl render: %s%s" % (committed.stderr, kernel.stderr))
            elif committed.stdout != kernel.stdout:
                problems.append("the kernel does not hold the committed program "
                                "(render != render --kernel)")
            elif not committed.stdout.strip():
                problems.append("netpolctl render printed nothing")
            else:
                print("kernel state equals the committed program (%d lines)"
                      % len(committed.stdout.splitlines()))
            st = ctl("status")
            m = re.search(r"Generation:\s+(\d+) \(in the kernel: (\d+)\)", st.stdout)
            if not m or m.group(1) != m.group(2):
                problems.append("status does not show the newest generation in the kernel: "
                                + (st.stdout + st.stderr).strip())
            # Straight from the kernel: its allow elements carry exactly the acknowledged ports.
            listing = subprocess.run(["nft", "list", "table", "inet", "netpol"],
                                     capture_output=True, text=True)
            ports = kernel_ports(listing.stdout)
            want = set(stats.last_acked.values())
            if listing.returncode != 0:
                problems.append("nft list table inet netpol: " + listing.stderr)
            elif ports != want:
                problems.append("the kernel's ports differ from the acknowledged ones: %d extra "
                                "%s, %d missing %s" % (len(ports - want), sorted(ports - want)[:10],
                                                       len(want - ports), sorted(want - ports)[:10]))
            else:
                print("nft list table inet netpol holds exactly the %d acknowledged ports"
                      % len(want))
    except lab.LabError as e:
        problems.append(str(e))
    finally:
        if agent is not None:
            agent.stop(timeout=20)
            if problems:
                print("agent log tail:\n" + agent.log_tail(20))
        if args.keep:
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
