#!/usr/bin/python3
"""Flow logs with real packets in the lab (tests/lab): what the kernel dropped, as records.

netpol-agent runs in the lab node's namespace with deny logs on (nflog group, a kernel limit per
pod group and direction) and --flow-log. The conformance model is applied, then two policies:
x/deny-a-ingress isolates x/a for ingress (nothing allowed), y/deny-b-egress isolates y/b for
egress. Then, from the pods' own namespaces:

- denied connections, each exactly one packet (a TCP SYN whose connect gives up before the
  kernel retransmits, or one UDP datagram) from a fixed source port: x/b -> x/a TCP 80 and UDP 81
  over IPv4 and IPv6 (ingress drops), y/b -> z/c TCP 80 over IPv4 (an egress drop);
- a marker packet (x/c -> x/a UDP 81) sent after them, whose record shows every earlier one was
  read.

The records before the marker must be exactly the five expected ones, naming the right pods,
ports, protocols, direction and policies, in `netpolctl logs -o json` and in the --flow-log file.
Then a flood of N UDP datagrams from x/c at a rate far beyond the kernel limit: every one is
either a record or counted as suppressed (`netpolctl logs --stats`), and the suppressed count
grew.

ClusterNetworkPolicy drops (last): an Admin CNP on z/c denies x/c's TCP 80 and UDP 81 on ingress
(its rule 1, after an Accept) and z/c -> y/a TCP 80 on egress, and a Baseline CNP on x/c denies
x/c -> y/c TCP 80 on egress: one packet each, over IPv4 and IPv6, yields exactly one DENIED record
naming the tier, the ClusterNetworkPolicy, its priority and the rule's index and name.

Allowed-flow logs: y/log-a-ingress (annotation netpol.io/log-allowed: "true") lets x/b reach y/a
on TCP 80 and UDP 81, z/log-b-egress (logging too) lets z/b reach y/c on TCP 80, and z/quiet-a
(no annotation) lets x/b reach z/a on the same ports. Complete connections over IPv4 and IPv6 (a
TCP connection that exchanges data and closes, three UDP datagrams and their echoes from one
socket) on the logging policies yield exactly one ALLOWED record each, for their first packet,
naming the pods, the policy and the rule; the connections on z/quiet-a yield none (a denied
marker afterwards shows every earlier packet was read). The only waits are bounded waits for
records to arrive; nothing is timed.

    flow_log_test.py --agent PATH/netpol-agent --ctl PATH/netpolctl
"""

import argparse
import json
import os
import shutil
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
GROUP = 7301
FLOOD = 2000
WAIT = 60  # seconds: the bound of every wait for records (never an assertion on time)

# Sends exactly one packet to (ip, port) from source port `sport`: a UDP datagram, or a TCP SYN
# (connect with a 0.3 s timeout: the SYN is not retransmitted before the socket is closed).
SEND = r"""
import socket, sys
proto, ip, port, sport, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
for i in range(count):
    s = socket.socket(fam, socket.SOCK_DGRAM if proto == "UDP" else socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sport:
        s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", sport))
    if proto == "UDP":
        s.sendto(b"x", (ip, port))
    else:
        s.settimeout(0.3)
        try:
            s.connect((ip, port))
            print("CONNECTED")
        except OSError:
            pass
    s.close()
"""


# One complete allowed connection from source port `sport`: TCP connects, sends a line, reads
# its echo and closes; UDP sends three datagrams from one socket and reads each echo. Prints OK.
CONNECT = r"""
import socket, sys
proto, ip, port, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM if proto == "UDP" else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", sport))
s.settimeout(5)
if proto == "UDP":
    for i in range(3):
        s.sendto(b"ping\n", (ip, port))
        s.recvfrom(100)
else:
    s.connect((ip, port))
    s.sendall(b"ping\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
s.close()
print("OK")
"""


class Failure(Exception):
    pass


def policy(ns, name, pod, types):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"podSelector": {"matchLabels": {"pod": pod}}, "policyTypes": types}}


def allowing(ns, name, pod, direction, peer_ns, peer_pod, ports, log):
    """A policy isolating ns/pod for `direction` ("Ingress"/"Egress") that allows peer_ns/peer_pod
    on `ports` ([(proto, port)]); with `log`, the allowed-flow log annotation."""
    p = policy(ns, name, pod, [direction])
    peer = {"namespaceSelector": {"matchLabels": {"ns": peer_ns}},
            "podSelector": {"matchLabels": {"pod": peer_pod}}}
    rule = {"from" if direction == "Ingress" else "to": [peer],
            "ports": [{"protocol": proto, "port": port} for proto, port in ports]}
    p["spec"]["ingress" if direction == "Ingress" else "egress"] = [rule]
    if log:
        p["metadata"]["annotations"] = {"netpol.io/log-allowed": "true"}
    return p


def write_yaml(path, docs):
    with open(path, "w") as f:
        f.write("---\n".join(json.dumps(d) + "\n" for d in docs))
    return path


class Agent(lab.Agent):
    """netpol-agent in the node namespace with deny logs on and a --flow-log file."""

    def __init__(self, args, the_lab, workdir):
        self.flow_file = os.path.join(workdir, "flows.jsonl")
        super().__init__(args.agent, args.ctl, the_lab.node_netns, workdir, node=NODE, flags=[
            "--deny-log-group=%d" % GROUP, "--deny-log-rate=5", "--deny-log-burst=5",
            "--flow-log=" + self.flow_file, "--flow-log-buffer=100000"])

    def records(self):
        out = self.must("logs", "-o", "json")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def stats(self):
        return json.loads(self.must("logs", "--stats"))


def send(the_lab, src, proto, dst_ip, port, sport, count=1):
    cp = lab.run(["ip", "netns", "exec", the_lab._netns_of(src), lab.PYTHON, "-c", SEND,
                  proto, dst_ip, str(port), str(sport), str(count)], timeout=120)
    if "CONNECTED" in cp.stdout:
        raise Failure("%s -> %s %s/%d connected: the policy does not deny it" %
                      (src, dst_ip, proto, port))


def connect(the_lab, src, proto, dst_ip, port, sport):
    cp = lab.run(["ip", "netns", "exec", the_lab._netns_of(src), lab.PYTHON, "-c", CONNECT,
                  proto, dst_ip, str(port), str(sport)], check=False, timeout=60)
    if cp.returncode != 0 or "OK" not in cp.stdout:
        raise Failure("%s -> %s %s/%d: the allowed connection failed: %s" %
                      (src, dst_ip, proto, port, cp.stderr.strip()[-300:]))


def summary(r):
    """The fields of a record the test knows in advance (not the time or the chain's hash)."""
    src, dst = r.get("source", {}), r.get("destination", {})
    return (r.get("verdict"), r.get("direction"), r.get("protocol"),
            src.get("pod", ""), src.get("ip"), src.get("port", 0),
            dst.get("pod", ""), dst.get("ip"), dst.get("port", 0),
            tuple(r.get("policies", [])), r.get("node"))


def allowed_summary(r):
    return summary(r) + (tuple(r.get("rules", [])),)


def wait_for(what, fetch, done):
    deadline = time.monotonic() + WAIT
    while True:
        got = fetch()
        if done(got):
            return got
        if time.monotonic() > deadline:
            raise Failure("%s: not there after %d s; have %s" % (what, WAIT, got))
        time.sleep(0.2)


def scenario(args, workdir):
    with open(MODEL) as f:
        objects = [d for d in yaml.safe_load_all(f) if d and d.get("kind") != "Lab"]
    model_file = write_yaml(os.path.join(workdir, "model.yaml"), objects)
    policies_file = write_yaml(os.path.join(workdir, "policies.yaml"), [
        policy("x", "deny-a-ingress", "a", ["Ingress"]),
        policy("y", "deny-b-egress", "b", ["Egress"])])
    problems = []

    def expect(what, ok, detail=""):
        print("  [%s] %s%s" % ("ok" if ok else "FAIL", what, (": " + detail) if detail else ""))
        if not ok:
            problems.append("%s %s" % (what, detail))

    with lab.Lab(lab.load_model(MODEL)) as the_lab:
        agent = Agent(args, the_lab, workdir)
        try:
            agent.apply(model_file)
            agent.apply(policies_file)
            rendered = agent.ctl("render").stdout
            expect("the program logs drops to group %d" % GROUP,
                   ("group %d snaplen 128" % GROUP) in rendered and "limit rate 5/second" in rendered)
            a, b, yb, zc, c = (the_lab.pods[k] for k in ("x/a", "x/b", "y/b", "z/c", "x/c"))
            want = []
            sport = 40001
            for fam in lab.FAMILIES:
                for proto, port in (("TCP", 80), ("UDP", 81)):
                    send(the_lab, "x/b", proto, a.ip(fam), port, sport)
                    want.append(("DENIED", "INGRESS", proto, "x/b", b.ip(fam), sport,
                                 "x/a", a.ip(fam), port, ("x/deny-a-ingress",), NODE))
                    sport += 1
            send(the_lab, "y/b", "TCP", zc.ip("v4"), 80, sport)
            want.append(("DENIED", "EGRESS", "TCP", "y/b", yb.ip("v4"), sport,
                         "z/c", zc.ip("v4"), 80, ("y/deny-b-egress",), NODE))
            marker_port = 45000
            send(the_lab, "x/c", "UDP", a.ip("v4"), 81, marker_port)

            def has_marker(recs):
                return any(r.get("source", {}).get("port") == marker_port for r in recs)

            recs = wait_for("the marker's record", agent.records, has_marker)
            before = []
            for r in recs:
                if r.get("source", {}).get("port") == marker_port:
                    break
                before.append(summary(r))
            expect("exactly the expected records before the marker", sorted(before) == sorted(want),
                   "got %s, want %s" % (before, want))
            chains = {r.get("chain", "") for r in recs}
            expect("records name their group chain", all(ch.startswith(("in-", "eg-"))
                                                         for ch in chains), str(chains))

            # The JSON-lines file holds the same records.
            with open(agent.flow_file) as f:
                lines = [json.loads(l) for l in f if l.strip()]
            expect("the --flow-log file holds the same records",
                   [summary(r) for r in lines[:len(recs)]] == [summary(r) for r in recs],
                   "%d lines, %d records" % (len(lines), len(recs)))

            # Filters: --pod and --denied.
            cp = agent.ctl("logs", "--denied", "--pod", "y/b", "-o", "json")
            got = [summary(json.loads(l)) for l in cp.stdout.splitlines() if l.strip()]
            expect("logs --denied --pod y/b", got == [want[-1]], str(got))
            cp = agent.ctl("logs", "--pod", "x/b")
            expect("text lines name pods and policies",
                   cp.returncode == 0 and len(cp.stdout.splitlines()) == 4 and
                   all("DENIED ingress" in l and "policies: x/deny-a-ingress" in l and
                       "x/b (" in l and "x/a (" in l for l in cp.stdout.splitlines()), cp.stdout)

            # A flood far beyond the limit: every datagram is a record or suppressed.
            s0 = agent.stats()
            flood_port = 46000
            send(the_lab, "x/c", "UDP", a.ip("v4"), 81, flood_port, FLOOD)

            def flood_count():
                n = sum(1 for r in agent.records()
                        if r.get("source", {}).get("port") == flood_port)
                s = agent.stats()
                return (n, int(s.get("suppressed", 0)) - int(s0.get("suppressed", 0)), s)

            n, suppressed, s = wait_for(
                "%d flood packets recorded or suppressed" % FLOOD, flood_count,
                lambda got: got[0] + got[1] >= FLOOD)
            print("  flood: %d records, %d suppressed" % (n, suppressed))
            expect("records + suppressed == packets sent", n + suppressed == FLOOD,
                   "%d + %d" % (n, suppressed))
            expect("the kernel limit held most of the flood back", suppressed > FLOOD // 2,
                   "%d suppressed" % suppressed)
            expect("nothing lost on the way to the agent",
                   int(s.get("queueDropped", 0)) == 0 and int(s.get("socketDropped", 0)) == 0,
                   json.dumps(s))

            allowed_flows(the_lab, agent, workdir, expect)
            cluster_denies(the_lab, agent, workdir, expect)
        finally:
            agent.stop()
            if problems:
                print("agent log:\n" + agent.log_tail())
    return problems


def allowed_flows(the_lab, agent, workdir, expect):
    """Allowed-flow logs: one record per connection on a logging policy, none otherwise."""
    ports = [("TCP", 80), ("UDP", 81)]
    agent.apply(write_yaml(os.path.join(workdir, "allowed.yaml"), [
        allowing("y", "log-a-ingress", "a", "Ingress", "x", "b", ports, log=True),
        allowing("z", "log-b-egress", "b", "Egress", "y", "c", [("TCP", 80)], log=True),
        allowing("z", "quiet-a", "a", "Ingress", "x", "b", ports, log=False)]))
    rendered = agent.ctl("render").stdout
    expect("the logging policies' rules go through a log chain",
           'log prefix "allow in-y_log-a-ingress-' in rendered and
           'log prefix "allow eg-z_log-b-egress-' in rendered and
           "ct state new limit rate 5/second" in rendered)
    expect("the quiet policy's chain has no log chain", "in-z_quiet-a-" in rendered and
           not any(l.strip().startswith("chain in-z_quiet-a-") and "-log" in l
                   for l in rendered.splitlines()), "")
    xb, ya, zb, yc, za = (the_lab.pods[k] for k in ("x/b", "y/a", "z/b", "y/c", "z/a"))
    want = []
    sport = 41001
    for fam in lab.FAMILIES:
        for proto, port in ports:
            connect(the_lab, "x/b", proto, ya.ip(fam), port, sport)
            want.append(("ALLOWED", "INGRESS", proto, "x/b", xb.ip(fam), sport, "y/a",
                         ya.ip(fam), port, ("y/log-a-ingress",), NODE,
                         ("y/log-a-ingress ingress[0]",)))
            sport += 1
            connect(the_lab, "x/b", proto, za.ip(fam), port, sport)  # z/quiet-a: no record
            sport += 1
    connect(the_lab, "z/b", "TCP", yc.ip("v4"), 80, sport)
    want.append(("ALLOWED", "EGRESS", "TCP", "z/b", zb.ip("v4"), sport, "y/c", yc.ip("v4"), 80,
                 ("z/log-b-egress",), NODE, ("z/log-b-egress egress[0]",)))
    marker_port = 45001
    send(the_lab, "x/c", "UDP", the_lab.pods["x/a"].ip("v4"), 81, marker_port)

    def has_marker(recs):
        return any(r.get("source", {}).get("port") == marker_port for r in recs)

    recs = wait_for("the second marker's record", agent.records, has_marker)
    got = [allowed_summary(r) for r in recs if r.get("verdict") == "ALLOWED"]
    expect("exactly one ALLOWED record per connection on a logging policy, none for z/quiet-a",
           sorted(got) == sorted(want), "got %s, want %s" % (got, want))
    cp = agent.ctl("logs", "--allowed", "-o", "json")
    only = [allowed_summary(json.loads(l)) for l in cp.stdout.splitlines() if l.strip()]
    expect("logs --allowed gives exactly them", sorted(only) == sorted(want), str(only))
    cp = agent.ctl("logs", "--allowed", "--pod", "y/a")
    lines = cp.stdout.splitlines()
    expect("text lines name the policy and the rule",
           cp.returncode == 0 and len(lines) == 4 and
           all("ALLOWED ingress" in l and "policies: y/log-a-ingress" in l and
               "rules: y/log-a-ingress ingress[0]" in l for l in lines), cp.stdout)


def cnp_peer(ns, pod):
    return {"pods": {"namespaceSelector": {"matchLabels": {"ns": ns}},
                     "podSelector": {"matchLabels": {"pod": pod}}}}


def cnp_rule(name, action, peers_key, ns, pod, ports):
    return {"name": name, "action": action, peers_key: [cnp_peer(ns, pod)],
            "protocols": [{proto.lower(): {"destinationPort": {"number": port}}}
                          for proto, port in ports]}


def cluster_policy(name, tier, priority, ns, pod, ingress=None, egress=None):
    spec = {"tier": tier, "priority": priority, "subject": cnp_peer(ns, pod)}
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def cluster_summary(r):
    """A record's fields with the ClusterNetworkPolicy rule that decided it."""
    c = r.get("clusterNetworkPolicyRule", {})
    return summary(r) + ((c.get("tier"), c.get("policy"), c.get("priority", 0), c.get("rule", 0),
                          c.get("name", ""), c.get("action")),)


def cluster_denies(the_lab, agent, workdir, expect):
    """Drops by ClusterNetworkPolicy Deny rules: one DENIED record per packet, attributed to the
    tier, the ClusterNetworkPolicy and the rule (Admin ingress and egress, Baseline egress)."""
    agent.apply(write_yaml(os.path.join(workdir, "cnps.yaml"), [
        # Admin, subject z/c: ingress[0] accepts x/c on TCP 8080, ingress[1] denies it TCP 80 and
        # UDP 81; egress[0] denies z/c -> y/a TCP 80.
        cluster_policy("guard-zc", "Admin", 5, "z", "c",
                       ingress=[cnp_rule("let-8080", "Accept", "from", "x", "c", [("TCP", 8080)]),
                                cnp_rule("no-xc", "Deny", "from", "x", "c",
                                         [("TCP", 80), ("UDP", 81)])],
                       egress=[cnp_rule("no-ya", "Deny", "to", "y", "a", [("TCP", 80)])]),
        # Baseline, subject x/c (no NetworkPolicy isolates its egress): egress[0] denies
        # x/c -> y/c TCP 80.
        cluster_policy("tenant-xc", "Baseline", 50, "x", "c",
                       egress=[cnp_rule("no-yc", "Deny", "to", "y", "c", [("TCP", 80)])])]))
    rendered = agent.ctl("render").stdout
    expect("the tiers' Deny lookups go through deny-log chains",
           'log prefix "deny cin-guard-zc-' in rendered and
           'log prefix "deny ceg-guard-zc-' in rendered and
           'log prefix "deny ceg-tenant-xc-' in rendered and
           "-adl\" group %d" % GROUP in rendered and "-bdl\" group %d" % GROUP in rendered,
           "")
    xc, zc, ya, yc = (the_lab.pods[k] for k in ("x/c", "z/c", "y/a", "y/c"))
    want = []
    sport = 42001
    for fam in lab.FAMILIES:
        for proto, port in (("TCP", 80), ("UDP", 81)):
            send(the_lab, "x/c", proto, zc.ip(fam), port, sport)
            want.append(("DENIED", "INGRESS", proto, "x/c", xc.ip(fam), sport, "z/c", zc.ip(fam),
                         port, (), NODE, ("Admin", "guard-zc", 5, 1, "no-xc", "Deny")))
            sport += 1
        send(the_lab, "x/c", "TCP", yc.ip(fam), 80, sport)
        want.append(("DENIED", "EGRESS", "TCP", "x/c", xc.ip(fam), sport, "y/c", yc.ip(fam), 80,
                     (), NODE, ("Baseline", "tenant-xc", 50, 0, "no-yc", "Deny")))
        sport += 1
    send(the_lab, "z/c", "TCP", ya.ip("v4"), 80, sport)
    want.append(("DENIED", "EGRESS", "TCP", "z/c", zc.ip("v4"), sport, "y/a", ya.ip("v4"), 80,
                 (), NODE, ("Admin", "guard-zc", 5, 0, "no-ya", "Deny")))
    marker_port = 45002
    send(the_lab, "x/c", "UDP", the_lab.pods["x/a"].ip("v4"), 81, marker_port)

    def has_marker(recs):
        return any(r.get("source", {}).get("port") == marker_port for r in recs)

    recs = wait_for("the third marker's record", agent.records, has_marker)
    got = [cluster_summary(r) for r in recs
           if 42001 <= r.get("source", {}).get("port", 0) <= sport]
    expect("exactly one attributed DENIED record per ClusterNetworkPolicy drop",
           sorted(got) == sorted(want), "got %s, want %s" % (got, want))
    chains = {r.get("chain", "") for r in recs if 42001 <= r.get("source", {}).get("port", 0) <= sport}
    expect("records name the tier chains", all(ch.startswith(("cin-guard-zc-", "ceg-guard-zc-",
                                                              "ceg-tenant-xc-")) for ch in chains),
           str(chains))
    cp = agent.ctl("logs", "--denied", "--pod", "z/c")
    lines = [l for l in cp.stdout.splitlines() if "ingress" in l]
    expect("text lines name the tier, the ClusterNetworkPolicy and the rule",
           cp.returncode == 0 and len(lines) == 4 and
           all("DENIED ingress" in l and
               "clusternetworkpolicy: Admin guard-zc ingress[1] no-xc (priority 5)" in l
               for l in lines), cp.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--ctl", required=True)
    args = ap.parse_args()
    args.agent = os.path.abspath(args.agent)
    args.ctl = os.path.abspath(args.ctl)
    lab.require_root("flow_log_test")
    workdir = tempfile.mkdtemp(prefix="netpol-flowlog-")
    try:
        problems = scenario(args, workdir)
    except (Failure, lab.LabError) as e:
        problems = [str(e)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
