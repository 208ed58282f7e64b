#!/usr/bin/python3
"""Crash atomicity: SIGKILL the agent at random (seeded) points during large commits.

In a fresh network namespace (re-executes itself under `unshare --net`), the real netpol-agent
enforces one of two large states A and B (many pods on this node; B relabels every pod, so
going from one to the other changes thousands of elements). Each round starts an apply of the
other state, kills the agent with SIGKILL after a random delay within the measured apply time,
and checks:
  * right after the kill the kernel holds exactly the old or exactly the new program (the
    table listing, canonicalized, equals the one recorded for A or for B: never a mixture);
  * after a restart the agent converges to its persisted state: the program it committed from
    its store (`netpolctl render`) equals what the kernel holds (`netpolctl render --kernel`),
    and the listing is again exactly A's or B's.
Prints one line per kill and a summary; exit 1 on any violation.

    crash_test.py --agent PATH --ctl PATH [--kills N] [--pods N] [--seed S]
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab"))
import lab as lablib  # noqa: E402


def canonical(listing):
    """The listing with top-level blocks and set elements in a fixed order."""
    head, blocks, cur = [], [], None
    for line in listing.splitlines():
        t = line.strip()
        if t.startswith("elements = { ") and t.endswith(" }"):
            line = "elements = { " + ", ".join(sorted(t[13:-2].split(", "))) + " }"
        if line.startswith("\t") and not line.startswith("\t\t") and line.endswith("{"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line == "\t}":
                blocks.append("\n".join(cur))
                cur = None
        elif t:
            head.append(line)
    return "\n".join(head + sorted(blocks))


def world(pods, flipped):
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: crash}\n"]
    for i in range(pods):
        role = ("server" if i % 2 else "client") if not flipped else ("client" if i % 2 else "server")
        docs.append(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p%d, namespace: crash, labels: {role: %s}}\n"
            "spec: {nodeName: node-1}\nstatus: {podIP: 10.%d.%d.%d}\n"
            % (i, role, 64 + i // 65536, (i // 256) % 256, i % 256))
    for port in (80, 443, 8080):
        docs.append(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            "metadata: {name: servers-%d, namespace: crash}\n"
            "spec:\n  podSelector: {matchLabels: {role: server}}\n"
            "  ingress:\n  - from: [{podSelector: {matchLabels: {role: client}}}]\n"
            "    ports: [{port: %d}]\n" % (port, port))
    return "---\n".join(docs)


def listing():
    r = subprocess.run(["nft", "list", "table", "inet", "netpol"], capture_output=True, text=True)
    return canonical(r.stdout) if r.returncode == 0 else "missing: " + r.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default=os.environ.get("NETPOL_AGENT"))
    ap.add_argument("--ctl", default=os.environ.get("NETPOLCTL"))
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    lablib.require_root("crash_test")
    if os.environ.get("NETPOL_CRASH_NETNS") != "1":
        env = dict(os.environ, NETPOL_CRASH_NETNS="1")
        return subprocess.call(["unshare", "--net", sys.executable, os.path.abspath(__file__)]
                               + sys.argv[1:], env=env)
    args.agent, args.ctl = os.path.abspath(args.agent), os.path.abspath(args.ctl)
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="netpol-crash-")
    agent = None
    try:
        files = {}
        for name, flipped in (("A", False), ("B", True)):
            files[name] = os.path.join(tmp, name + ".yaml")
            with open(files[name], "w") as f:
                f.write(world(args.pods, flipped))
        # In this process's own network namespace (netns None); started and waited for here.
        agent = lablib.Agent(args.agent, args.ctl, None, tmp,
                             flags=["--check-interval=0", "--watch-changes=false"])
        expected, took = {}, []
        for name in ("A", "B", "A"):
            t0 = time.time()
            agent.apply(files[name])
            took.append(time.time() - t0)
            expected[name] = listing()
        if expected["A"] == expected["B"]:
            raise SystemExit("A and B render the same table: the test would prove nothing")
        current, window = "A", max(took[1:])
        outcomes = {"old": 0, "new": 0}
        failures = 0
        for k in range(args.kills):
            target = "B" if current == "A" else "A"
            # Skewed towards the start, where the store write and the commit happen.
            delay = window * rng.random() ** 3
            apply = subprocess.Popen([args.ctl, "--server=" + agent.server, "apply", "-f", files[target]],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            agent.kill()
            apply.wait()
            now = listing()
            outcome = "old" if now == expected[current] else "new" if now == expected[target] else "MIXED"
            agent.start()
            committed = agent.must("render")
            kernel = agent.must("render", "--kernel")
            after = listing()
            converged = committed == kernel and after in (expected["A"], expected["B"])
            print("kill %d: after %.0f ms of %s->%s: kernel held the %s program; restart %s"
                  % (k + 1, delay * 1000, current, target, outcome,
                     "converged to the persisted state" if converged else "DID NOT CONVERGE"))
            if outcome == "MIXED" or not converged:
                failures += 1
            else:
                outcomes[outcome] += 1
            current = "A" if after == expected["A"] else "B"
        agent.kill()
        print("%d kills: %d old, %d new, %d failures" % (args.kills, outcomes["old"], outcomes["new"], failures))
        return 1 if failures else 0
    except lablib.LabError as e:
        print("FAILED: %s" % e)
        return 1
    finally:
        if agent is not None:
            agent.stop()
        if os.environ.get("NETPOL_CRASH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
