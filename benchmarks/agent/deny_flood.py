#!/usr/bin/python3
"""A flood of denied TCP SYNs at a default-deny pod, in the lab: what deny logs cost.

netpol-agent runs in the lab node's namespace with deny logs (--deny-log-rate R for each run in
--rates). x/a gets a default-deny ingress policy; x/b sends TCP SYNs at x/a:80 from a raw socket
(checksummed packets, a new source port each, so conntrack sees each as a new connection) as fast
as one Python process can for --seconds. Reported per run: SYNs sent, records made, drops the
kernel limit suppressed, packets lost on the way to the agent, the agent's CPU seconds during the
flood and its RSS (VmRSS) after it and peak (VmHWM).

With --connbench, also the latency of allowed connections: x/c admits namespace y on TCP 80
(policy c-in, so the SYN crosses x/c's group chain), and y/a opens TCP connections to x/c:80
back to back (connbench connect: blocking connect() then close) for --seconds, once before the
flood (quiet) and once during it (the flood started first, same length); reported per phase:
p50/p90/p99 and how many connected. A rate of `off` runs the flood with deny logs off
(--deny-log-group=0): what the flood costs the allowed connections without any logging.

    sudo /usr/bin/python3 benchmarks/agent/deny_flood.py --agent bazel-bin/agent/netpol-agent \
        --ctl bazel-bin/cli/netpolctl --connbench bazel-bin/benchmarks/datapath/connbench \
        --seconds 10 --rates off,10,1000000 --out /tmp/deny_flood.json
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402
import yaml  # noqa: E402

MODEL = os.path.join(ROOT, "tests", "conformance", "model.yaml")

# Raw TCP SYNs from SRC to DST:PORT for SECONDS; prints how many were sent.
FLOOD = r"""
import socket, struct, sys, time
src, dst, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
pkts = []
for sport in range(10000, 60000):
    hdr = struct.pack("!HHIIBBHHH", sport, port, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    c = csum(pseudo + hdr)
    pkts.append(hdr[:16] + struct.pack("!H", c) + hdr[18:])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.setblocking(False)
sent, i, n = 0, 0, len(pkts)
end = time.monotonic() + seconds
while True:
    for _ in range(1000):
        try:
            s.sendto(pkts[i], (dst, 0))
            sent += 1
        except BlockingIOError:
            pass
        i = (i + 1) % n
    if time.monotonic() >= end:
        break
print(sent)
"""


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


def agent_pid(netns_pid_parent):
    # `ip netns exec` execs the agent: the Popen pid is the agent's.
    return netns_pid_parent


def connect_latency(args, the_lab, seconds):
    """connbench connect y/a -> x/c:80 for `seconds`: its JSON answer (latencies in us)."""
    cp = lab.run(["ip", "netns", "exec", the_lab._netns_of("y/a"), args.connbench, "connect",
                  "--addr", the_lab.pods["x/c"].ip("v4"), "--port", "80",
                  "--count", "100000000", "--warmup", "20", "--timeout_ms", "1000",
                  "--max_seconds", str(seconds)], check=False, timeout=seconds + 120)
    try:
        r = json.loads(cp.stdout)  # exit 1 when some connection failed: counted in `failed`
    except ValueError:
        raise lab.LabError("connbench connect: exit %d: %s" % (cp.returncode, cp.stderr))
    return {k: r[k] for k in ("count", "ok", "failed", "p50_us", "p90_us", "p99_us", "mean_us")}


def run_one(args, rate, workdir):
    with open(MODEL) as f:
        objects = [d for d in yaml.safe_load_all(f) if d and d.get("kind") != "Lab"]
    docs = objects + [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"namespace": "x", "name": "deny-a"},
                       "spec": {"podSelector": {"matchLabels": {"pod": "a"}},
                                "policyTypes": ["Ingress"]}},
                      {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"namespace": "x", "name": "c-in"},
                       "spec": {"podSelector": {"matchLabels": {"pod": "c"}},
                                "policyTypes": ["Ingress"],
                                "ingress": [{"from": [{"namespaceSelector": {
                                    "matchLabels": {"ns": "y"}}}],
                                    "ports": [{"protocol": "TCP", "port": 80}]}]}}]
    logging = rate != "off"
    rate_flags = (["--deny-log-rate=%d" % int(rate),
                   "--deny-log-burst=%d" % max(20, min(int(rate), 1000))] if logging
                  else ["--deny-log-group=0"])
    model_file = os.path.join(workdir, "model-%s.yaml" % rate)
    with open(model_file, "w") as f:
        f.write("---\n".join(json.dumps(d) + "\n" for d in docs))
    server = "unix://" + os.path.join(workdir, "agent-%s.sock" % rate)
    state_dir = os.path.join(workdir, "state-%s" % rate)
    os.makedirs(state_dir)
    with lab.Lab(lab.load_model(MODEL)) as the_lab:
        log = open(os.path.join(workdir, "agent-%s.log" % rate), "w")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", the_lab.node_netns, args.agent, "--node-name=node-1",
             "--state-dir=" + state_dir, "--listen=" + server] + rate_flags +
            ["--flow-log=" + os.path.join(workdir, "flows-%s.jsonl" % rate)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

        def ctl(*a):
            return subprocess.run([args.ctl, "--server=" + server] + list(a),
                                  capture_output=True, text=True, timeout=120)
        try:
            deadline = time.monotonic() + 30
            while ctl("status").returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("agent not serving")
                time.sleep(0.1)
            cp = ctl("apply", "-f", model_file)
            if cp.returncode != 0:
                raise SystemExit(cp.stderr)
            def stats():
                if not logging:
                    return {}
                return json.loads(ctl("logs", "--stats").stdout)
            quiet = connect_latency(args, the_lab, args.seconds) if args.connbench else None
            s0 = stats()
            cpu0 = proc_cpu_seconds(proc.pid)
            a, b = the_lab.pods["x/a"], the_lab.pods["x/b"]
            flood = subprocess.Popen(
                ["ip", "netns", "exec", the_lab._netns_of("x/b"), lab.PYTHON, "-c",
                 FLOOD, b.ip("v4"), a.ip("v4"), "80", str(args.seconds)],
                stdout=subprocess.PIPE, text=True)
            during = None
            if args.connbench:
                time.sleep(0.2)  # the flood running
                during = connect_latency(args, the_lab, args.seconds - 0.5)
            out, _ = flood.communicate(timeout=args.seconds + 120)
            sent = int(out.strip())
            # Let the agent drain its queue (records stop growing), then read everything.
            last = -1
            while logging:
                s1 = stats()
                if int(s1.get("records", 0)) == last:
                    break
                last = int(s1.get("records", 0))
                time.sleep(0.5)
            s1 = stats()
            cpu1 = proc_cpu_seconds(proc.pid)
            mem = proc_mem_kb(proc.pid)
            d = lambda k: int(s1.get(k, 0)) - int(s0.get(k, 0))  # noqa: E731
            latency = {}
            if quiet and during:
                latency = {"allowed_quiet": quiet, "allowed_during_flood": during,
                           "allowed_p50_during_over_quiet":
                               round(during["p50_us"] / quiet["p50_us"], 3)
                               if quiet["p50_us"] else None}
            return dict({"rate": rate, "seconds": args.seconds, "sent": sent,
                    "received": d("received"), "records": d("records"),
                    "suppressed": d("suppressed"), "queue_dropped": d("queueDropped"),
                    "socket_dropped": d("socketDropped"),
                    "agent_cpu_s": round(cpu1 - cpu0, 3),
                    "agent_rss_mb": round(mem["VmRSS"] / 1024, 1),
                    "agent_peak_rss_mb": round(mem["VmHWM"] / 1024, 1)}, **latency)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rates", default="10,1000000",
                    help="--deny-log-rate per run; `off`: deny logs off (--deny-log-group=0)")
    ap.add_argument("--connbench", default="",
                    help="connbench binary: also time allowed connections, quiet and flooded")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    args.agent, args.ctl = os.path.abspath(args.agent), os.path.abspath(args.ctl)
    if args.connbench:
        args.connbench = os.path.abspath(args.connbench)
    lab.require_root("deny_flood")
    workdir = tempfile.mkdtemp(prefix="netpol-deny-flood-")
    results = []
    try:
        for rate in [r.strip() for r in args.rates.split(",") if r.strip()]:
            if rate != "off" and not rate.isdigit():
                ap.error("--rates: %r is neither a number nor off" % rate)
            r = run_one(args, rate, workdir)
            print(json.dumps(r))
            results.append(r)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
