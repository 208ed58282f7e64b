#!/usr/bin/python3
"""Revocation of established connections, with real packets in the lab (tests/lab).

netpol-agent runs in the lab node's namespace. The conformance model's namespaces and pods are
applied, then a policy that lets x/b and x/c reach x/a on TCP 80 and UDP 81. Long-lived flows
are opened (TCP connections and connected UDP sockets) from x/b (the flow the change will deny)
and from x/c (the flow that stays allowed), and each round-trips. Then the policy changes to
admit x/c only. With connection revocation (the agent's default) the x/b flows must stop right
after the change (the revoker lists the table right after the commit, just after the change is
acknowledged: the test waits for that, a few round trips at most) while the x/c flows keep
round-tripping. As a
control, the same scenario with --revoke-connections=false must show the x/b flows still
flowing: that proves the denied flows stopped because their conntrack entries were deleted, not
because established traffic is filtered anyway.

    revocation_test.py --agent PATH/netpol-agent --ctl PATH/netpolctl [--skip-control]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402
import yaml  # noqa: E402  (python3-yaml)

MODEL = os.path.join(ROOT, "tests", "conformance", "model.yaml")
NODE = "node-1"
TARGET = "x/a"
DENIED = "x/b"    # allowed before the change, denied after it
KEPT = "x/c"      # allowed before and after
OUTSIDER = "z/a"  # never allowed: shows the policy is enforced at all
TCP_PORT = 80
UDP_PORT = 81

# A connected UDP socket held open in a pod (fixed source port, so one conntrack entry): for
# every `TOKEN TIMEOUT` line on stdin it sends TOKEN and prints OK when the echo came back.
UDP_CLIENT = r"""
import select, socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((ip, port))
print("CONNECTED", flush=True)
for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    token, timeout = parts[0].encode(), float(parts[1])
    deadline = time.monotonic() + timeout
    verdict = "TIMEOUT"
    try:
        s.send(token)
    except OSError as e:
        print("ERROR %s" % e, flush=True)
        continue
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if not r:
            break
        try:
            data = s.recv(65536)
        except OSError as e:
            verdict = "ERROR %s" % e
            break
        if data.strip() == token:
            verdict = "OK"
            break
    print(verdict, flush=True)
"""


def policy(sources):
    """The policy on x/a: ingress from the given x pods on TCP 80 and UDP 81."""
    names = [s.split("/", 1)[1] for s in sources]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "to-a", "namespace": "x"},
        "spec": {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchExpressions": [
                    {"key": "pod", "operator": "In", "values": names}]}}],
                "ports": [{"protocol": "TCP", "port": TCP_PORT},
                          {"protocol": "UDP", "port": UDP_PORT}],
            }],
        },
    }


class Failure(Exception):
    pass


class UdpFlow:
    def __init__(self, the_lab, src, dst, port, family):
        self.name = "%s -> %s %s UDP/%d" % (src, dst, family, port)
        self.count = 0
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", the_lab.pods[src].netns, lab.PYTHON, "-c", UDP_CLIENT,
             the_lab.pods[dst].ip(family), str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = lab._readline(self.proc.stdout, time.monotonic() + 10)
        if line != "CONNECTED":
            self.close()
            raise Failure("%s: UDP client did not start: %r" % (self.name, line))

    def roundtrip(self, timeout=1.0):
        self.count += 1
        self.proc.stdin.write("u%d %s\n" % (self.count, timeout))
        self.proc.stdin.flush()
        line = lab._readline(self.proc.stdout, time.monotonic() + timeout + 10)
        return lab.Result(line == "OK", "echo" if line == "OK" else (line.lower() or "gone"))

    def close(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def write_yaml(path, docs):
    # JSON documents: every string quoted (a bare y or n would be read as a YAML 1.1 boolean).
    with open(path, "w") as f:
        f.write("---\n".join(json.dumps(d) + "\n" for d in docs))
    return path


def scenario(args, revoke, workdir):
    """Returns the list of failed expectations (empty when everything held)."""
    with open(MODEL) as f:
        objects = [d for d in yaml.safe_load_all(f) if d and d.get("kind") != "Lab"]
    model_file = write_yaml(os.path.join(workdir, "model.yaml"), objects)
    before_file = write_yaml(os.path.join(workdir, "before.yaml"), [policy([DENIED, KEPT])])
    after_file = write_yaml(os.path.join(workdir, "after.yaml"), [policy([KEPT])])
    mode = "revoke-connections=%s" % ("true" if revoke else "false")
    problems = []
    flows = []

    def expect(what, result, want):
        ok = result.ok == want
        print("  [%s] %s: %s (%s), want %s" % ("ok" if ok else "FAIL", what,
              "flows" if result.ok else "stopped", result.why, "flows" if want else "stopped"))
        if not ok:
            problems.append("%s: %s: %s, want %s" % (mode, what, result.why,
                                                     "flowing" if want else "stopped"))

    with lab.Lab(lab.load_model(MODEL)) as the_lab:
        agent = lab.Agent(args.agent, args.ctl, the_lab.node_netns, workdir, node=NODE,
                          flags=["--revoke-connections=%s" % ("true" if revoke else "false")])
        try:
            agent.apply(model_file)
            agent.apply(before_file)  # the ct rules exist before any flow is opened
            for fam in lab.FAMILIES:
                for src in (DENIED, KEPT):
                    flows.append((src, "TCP " + fam, the_lab.connect(src, TARGET, TCP_PORT, fam)))
                    if args.udp:
                        flows.append((src, "UDP " + fam,
                                      UdpFlow(the_lab, src, TARGET, UDP_PORT, fam)))
            print("%s: before the change" % mode)
            for src, what, flow in flows:
                expect("%s -> %s %s" % (src, TARGET, what), flow.roundtrip(), True)
            cells = the_lab.matrices([("TCP", TCP_PORT)], sources=[OUTSIDER], dests=[TARGET])
            for (fam, _, _), m in sorted(cells.items()):
                expect("new %s -> %s TCP %s" % (OUTSIDER, TARGET, fam),
                       m[(OUTSIDER, TARGET)], False)

            t0 = time.monotonic()
            agent.apply(after_file)
            print("%s: after the change (applied in %.0f ms)"
                  % (mode, (time.monotonic() - t0) * 1000))
            # Without revocation a denied flow keeps flowing; with it, it must stop.
            for src, what, flow in flows:
                want = src == KEPT or not revoke
                # A stopped flow is given a long timeout, so a slow echo is not taken for a stop
                # in the control run. A flow that must stop is tried until it stops (at most 5
                # round trips): the revocation follows the acknowledgement of the change.
                r = flow.roundtrip(3.0 if want else 1.0)
                tries = 1
                while not want and r.ok and tries < 5:
                    r = flow.roundtrip(1.0)
                    tries += 1
                expect("%s -> %s %s" % (src, TARGET, what), r, want)
            # New connections follow the new policy in both runs.
            cells = the_lab.matrices([("TCP", TCP_PORT)], sources=[DENIED, KEPT],
                                     dests=[TARGET])
            for (fam, _, _), m in sorted(cells.items()):
                for src in (DENIED, KEPT):
                    expect("new %s -> %s TCP %s" % (src, TARGET, fam), m[(src, TARGET)],
                           src == KEPT)
            # The kept flows are still alive after a while.
            time.sleep(1.0)
            for src, what, flow in flows:
                if src == KEPT:
                    expect("%s -> %s %s (1 s later)" % (src, TARGET, what),
                           flow.roundtrip(3.0), True)
            if problems:
                print("agent log:\n" + agent.log_tail())
                print(the_lab.nft_list())
        finally:
            for _, _, flow in flows:
                flow.close()
            agent.stop()
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default=os.environ.get("NETPOL_AGENT"))
    ap.add_argument("--ctl", default=os.environ.get("NETPOLCTL"))
    ap.add_argument("--skip-control", action="store_true",
                    help="do not run the --revoke-connections=false control")
    ap.add_argument("--no-udp", dest="udp", action="store_false", help="TCP flows only")
    args = ap.parse_args()
    if not args.agent or not args.ctl:
        ap.error("--agent and --ctl are required")
    args.agent, args.ctl = os.path.abspath(args.agent), os.path.abspath(args.ctl)
    lab.require_root("revocation_test")
    problems = []
    runs = [True] if args.skip_control else [True, False]
    for revoke in runs:
        workdir = tempfile.mkdtemp(prefix="netpol-revoke-")
        try:
            problems += scenario(args, revoke, workdir)
        except (Failure, lab.LabError) as e:
            problems.append(str(e))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("PASSED: denied flows stop right after the commit, allowed flows are untouched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
