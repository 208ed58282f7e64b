#!/usr/bin/env python3
"""Agent benchmark: memory per tier and churn, against a real netpol-agent.

For each tier of --tiers, a fresh netpol-agent starts in a network namespace of its own
(`unshare --net`, never the host's firewall) with --node-name=node-0 (the workload's measured
node) and its state dir and socket in a temporary directory. agent_client applies the tier
through the gRPC API (Apply returns after the kernel commit). Then:

- memory: VmRSS and VmHWM of the agent (/proc/PID/status) before and after the load, beside
  the size of the model: the YAML of the tier's objects and the agent's on-disk store;
- churn (on --churn-tier only): pod events at --rate for --seconds (add/delete pairs, open
  loop), p50/p99 event -> enforced, and the agent's CPU over the run (utime + stime of
  /proc/PID/stat, all threads) as a share of one core;
- scrapes (with --scrapes N): the agent serves /metrics (--metrics-listen) and N GETs of it
  after the load, one at a time from inside the agent's namespace, give p50/p99/max seconds
  per scrape and the size of the answer (the rule counters are read from the kernel on every
  scrape). --agent-flag passes flags to the agent (e.g. --agent-flag=--rule-counters=false).

    sudo python3 benchmarks/agent/run.py --agent bazel-bin/agent/netpol-agent \
        --client bazel-bin/benchmarks/agent/agent_client --tiers T1,T2 --churn-tier T2 \
        --rate 100 --seconds 60 --out /tmp/agent.json
Exit status 1 when the agent fails to start or any RPC fails.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

NODE = "node-0"
TICKS = os.sysconf("SC_CLK_TCK")


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])  # kB, or a count
    return out


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


class Agent:
    def __init__(self, binary, workdir, flags=()):
        self.workdir = workdir
        self.state_dir = os.path.join(workdir, "state")
        self.socket = os.path.join(workdir, "agent.sock")
        self.log_path = os.path.join(workdir, "agent.log")
        os.makedirs(self.state_dir, mode=0o700)
        argv = ["unshare", "--net", "--", binary, "--node-name=" + NODE,
                "--state-dir=" + self.state_dir, "--listen=unix://" + self.socket] + list(flags)
        with open(self.log_path, "w") as log:
            # unshare execs the agent: the pid is the agent's.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("netpol-agent did not start:\n" + self.log_tail())
            time.sleep(0.05)
        time.sleep(0.2)

    @property
    def server(self):
        return "unix://" + self.socket

    def log_tail(self):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-20:])
        except OSError as e:
            return str(e)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def client(args, agent, tier, mode, extra=()):
    argv = [args.client, "--server=" + agent.server, "--tier=" + tier] + list(extra) + [mode]
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if cp.returncode != 0:
        raise RuntimeError("%s failed (%d): %s\nagent log:\n%s"
                           % (" ".join(argv), cp.returncode, cp.stderr, agent.log_tail()))
    return json.loads(cp.stdout.strip().splitlines()[-1])


METRICS_PORT = 9464

# Run inside the agent's network namespace: N sequential GETs of /metrics, their durations.
SCRAPER = """
import json, sys, time, urllib.request
n, url = int(sys.argv[1]), sys.argv[2]
times, size = [], 0
for _ in range(n):
    t0 = time.monotonic()
    body = urllib.request.urlopen(url, timeout=120).read()
    times.append(time.monotonic() - t0)
    size = len(body)
print(json.dumps({"times": times, "bytes": size,
                  "rule_series": body.decode().count("netpol_compiled_rule_packets_total{")}))
"""


def scrape(agent, n):
    ns = "/proc/%d/ns/net" % agent.proc.pid
    subprocess.run(["nsenter", "--net=" + ns, "ip", "link", "set", "lo", "up"], check=True)
    cp = subprocess.run(["nsenter", "--net=" + ns, sys.executable, "-c", SCRAPER, str(n),
                         "http://127.0.0.1:%d/metrics" % METRICS_PORT],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if cp.returncode != 0:
        raise RuntimeError("scraping /metrics failed: %s\nagent log:\n%s"
                           % (cp.stderr, agent.log_tail()))
    out = json.loads(cp.stdout)
    times = sorted(out["times"])
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return {"scrapes": n, "p50_s": round(pick(0.5), 4), "p99_s": round(pick(0.99), 4),
            "max_s": round(times[-1], 4), "bytes": out["bytes"],
            "rule_series": out["rule_series"]}


def run_tier(args, tier):
    workdir = tempfile.mkdtemp(prefix="netpol-agent-bench-")
    agent = None
    try:
        flags = list(args.agent_flag)
        if args.scrapes:
            flags.append("--metrics-listen=0.0.0.0:%d" % METRICS_PORT)
        agent = Agent(args.agent, workdir, flags)
        pid = agent.proc.pid
        result = {"tier": tier, "idle": proc_status(pid)}
        cpu0 = cpu_seconds(pid)
        result["load"] = client(args, agent, tier, "load")
        result["load"]["agent_cpu_s"] = round(cpu_seconds(pid) - cpu0, 3)
        time.sleep(1)
        loaded = proc_status(pid)
        result["loaded"] = loaded
        result["store_bytes"] = dir_bytes(agent.state_dir)
        yaml_kb = result["load"]["yaml_bytes"] / 1024
        result["rss_over_yaml"] = round(loaded["VmRSS"] / yaml_kb, 2)
        result["rss_delta_over_yaml"] = round(
            (loaded["VmRSS"] - result["idle"]["VmRSS"]) / yaml_kb, 2)
        print("%s: YAML %.1f MB, store %.1f MB; agent RSS idle %.1f MB, loaded %.1f MB "
              "(HWM %.1f MB): RSS / YAML %.2f, (RSS - idle) / YAML %.2f; load %.1f s"
              % (tier, yaml_kb / 1024, result["store_bytes"] / 2**20,
                 result["idle"]["VmRSS"] / 1024, loaded["VmRSS"] / 1024,
                 loaded["VmHWM"] / 1024, result["rss_over_yaml"],
                 result["rss_delta_over_yaml"], result["load"]["seconds"]), flush=True)
        if args.scrapes:
            result["scrape"] = scrape(agent, args.scrapes)
            sc = result["scrape"]
            print("%s /metrics: %d scrapes, p50 %.1f ms, p99 %.1f ms, max %.1f ms; %.1f kB, "
                  "%d compiled-rule series" % (tier, sc["scrapes"], sc["p50_s"] * 1000,
                                               sc["p99_s"] * 1000, sc["max_s"] * 1000,
                                               sc["bytes"] / 1024, sc["rule_series"]), flush=True)
        if tier == args.churn_tier:
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            churn = client(args, agent, tier, "churn",
                           ["--rate=%g" % args.rate, "--seconds=%g" % args.seconds,
                            "--max_wall_s=%g" % args.max_wall])
            wall = time.monotonic() - t0
            cpu = cpu_seconds(pid) - cpu0
            churn["agent_cpu_s"] = round(cpu, 3)
            churn["agent_cpu_core_share"] = round(cpu / wall, 3)
            churn["agent_cpu_ms_per_event"] = round(cpu * 1000 / max(churn["sent"], 1), 3)
            churn["after"] = proc_status(pid)
            result["churn"] = churn
            e = churn["enforced_ms"]
            s = churn["service_ms"]
            print("%s churn: %d of %d events sent at %g/s over %.1f s (achieved %.1f/s, %d late): "
                  "event -> enforced p50 %.2f ms, p99 %.2f ms, max %.2f ms (service p50 %.2f, "
                  "p99 %.2f ms); agent CPU %.2f s = %.0f%% of a core, %.2f ms per event; "
                  "RSS after %.1f MB"
                  % (tier, churn["sent"], churn["events"], args.rate, churn["wall_s"], churn["achieved_rate"],
                     churn["late_events"], e["p50"], e["p99"], e["max"], s["p50"], s["p99"],
                     cpu, 100 * churn["agent_cpu_core_share"], churn["agent_cpu_ms_per_event"],
                     churn["after"]["VmRSS"] / 1024), flush=True)
        if agent.proc.poll() is not None:
            raise RuntimeError("netpol-agent exited during the run:\n" + agent.log_tail())
        return result
    finally:
        if agent is not None:
            agent.stop()
            if args.keep_log:
                shutil.copy(agent.log_path, "%s.%s" % (args.keep_log, tier))
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agent", default="bazel-bin/agent/netpol-agent")
    p.add_argument("--client", default="bazel-bin/benchmarks/agent/agent_client")
    p.add_argument("--tiers", default="T1,T2", help="tiers to load (memory)")
    p.add_argument("--churn-tier", default="T2", help="tier for churn ('' for none)")
    p.add_argument("--rate", type=float, default=100.0, help="churn: pod events per second")
    p.add_argument("--seconds", type=float, default=60.0, help="churn: duration")
    p.add_argument("--max-wall", type=float, default=0,
                   help="churn: stop sending after this many seconds (0: 2 x --seconds)")
    p.add_argument("--scrapes", type=int, default=0,
                   help="after the load, time this many GETs of /metrics")
    p.add_argument("--agent-flag", action="append", default=[],
                   help="an extra flag for the agent (repeatable)")
    p.add_argument("--out", help="write all results as JSON here")
    p.add_argument("--keep-log", help="copy each tier's agent log to KEEP_LOG.TIER")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("run.py needs root (unshare --net, nftables in that namespace)", file=sys.stderr)
        return 1
    tiers = [t for t in args.tiers.split(",") if t]
    if args.churn_tier and args.churn_tier not in tiers:
        tiers.append(args.churn_tier)
    results = []
    try:
        for tier in tiers:
            results.append(run_tier(args, tier))
    except RuntimeError as e:
        print("FAILED: %s" % e, file=sys.stderr)
        return 1
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"results": results, "rate": args.rate, "seconds": args.seconds,
                       "node": NODE, "loadavg": os.getloadavg()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
