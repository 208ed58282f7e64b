#!/usr/bin/env python3
"""Agent memory under parallel large Lists, against a real netpol-agent.

A fresh netpol-agent starts in a network namespace of its own (`unshare --net`, never the
host's firewall) with its state dir and socket in a temporary directory; `netpolctl apply`
loads --pods pods into one namespace (manifests of 20,000 pods, one request; the
namespace first). Then --parallel
`netpolctl get pods -n bulk` run at once, each a List of every pod, while VmRSS of the agent is
sampled every 20 ms (VmHWM is reset through /proc/PID/clear_refs first). Reported: RSS after
the load, the peak during the Lists, and the RSS 1 s and 5 s after the last List answered.

    sudo python3 benchmarks/agent/list_memory.py --agent bazel-bin/agent/netpol-agent \\
        --netpolctl bazel-bin/cli/netpolctl --pods 100000 --parallel 6
Exit status 1 when the agent fails to start or a command fails.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

PODS_PER_MANIFEST = 20000


def rss_kb(pid, key="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def write_manifests(directory, pods):
    os.makedirs(directory)
    for start in range(0, pods, PODS_PER_MANIFEST):
        with open(os.path.join(directory, "pods-%06d.yaml" % start), "w") as f:
            for i in range(start, min(pods, start + PODS_PER_MANIFEST)):
                f.write("---\napiVersion: v1\nkind: Pod\nmetadata: {name: pod-%d, namespace: bulk, "
                        "labels: {app: bulk, shard: s%d}}\nspec: {nodeName: node-%d}\n"
                        "status: {podIP: 10.%d.%d.%d}\n"
                        % (i, i % 16, 1 + i % 50, 64 + i // 65536, (i // 256) % 256, i % 256))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agent", default="bazel-bin/agent/netpol-agent")
    p.add_argument("--netpolctl", default="bazel-bin/cli/netpolctl")
    p.add_argument("--pods", type=int, default=100000)
    p.add_argument("--parallel", type=int, default=6)
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("list_memory.py needs root (unshare --net, nftables in that namespace)",
              file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="netpol-list-memory-")
    state, sock, log_path = (os.path.join(work, n) for n in ("state", "agent.sock", "agent.log"))
    os.makedirs(state, mode=0o700)
    log = open(log_path, "w")
    agent = subprocess.Popen(
        ["unshare", "--net", "--", os.path.abspath(args.agent), "--node-name=node-0",
         "--state-dir=" + state, "--listen=unix://" + sock],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    server = "--server=unix://" + sock
    ctl = os.path.abspath(args.netpolctl)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([ctl, server, "status"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL).returncode != 0:
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("netpol-agent did not start; see " + log_path)
            time.sleep(0.1)
        manifests = os.path.join(work, "manifests")
        write_manifests(manifests, args.pods)
        namespace = os.path.join(work, "namespace.yaml")
        with open(namespace, "w") as f:
            f.write("apiVersion: v1\nkind: Namespace\nmetadata: {name: bulk}\n")
        subprocess.run([ctl, server, "apply", "-f", namespace], check=True,
                       stdout=subprocess.DEVNULL)
        t0 = time.monotonic()
        subprocess.run([ctl, server, "--timeout=600s", "apply", "-f", manifests], check=True,
                       stdout=subprocess.DEVNULL)
        load_s = time.monotonic() - t0
        time.sleep(2)
        loaded = rss_kb(agent.pid)
        with open("/proc/%d/clear_refs" % agent.pid, "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                samples.append(rss_kb(agent.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        lists = [subprocess.Popen([ctl, server, "--timeout=600s", "get", "pods", "-n", "bulk"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(args.parallel)]
        lines = []
        for proc in lists:
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError("get pods failed: " + err.decode())
            lines.append(out.count(b"\n") - 1)  # minus the header
        lists_s = time.monotonic() - t0
        time.sleep(1)
        after_1s = rss_kb(agent.pid)
        time.sleep(4)
        after_5s = rss_kb(agent.pid)
        stop.set()
        sampler.join()
        result = {
            "pods": args.pods, "parallel": args.parallel, "load_seconds": round(load_s, 1),
            "listed_per_client": lines, "lists_seconds": round(lists_s, 1),
            "rss_loaded_MiB": round(loaded / 1024, 1),
            "rss_peak_MiB": round(max(samples + [rss_kb(agent.pid, "VmHWM")]) / 1024, 1),
            "rss_after_1s_MiB": round(after_1s / 1024, 1),
            "rss_after_5s_MiB": round(after_5s / 1024, 1),
        }
        print(json.dumps(result, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
        return 0
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
