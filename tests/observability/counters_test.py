#!/usr/bin/python3
"""Rule counters with real packets: the real netpol-agent in the lab's node namespace counts
exactly the datagrams sent, and keeps the counts across an unrelated incremental commit.

The lab is the conformance model (x, y, z with pods a, b, c on node-1). One policy, x/a-in,
isolates x/a for ingress and admits x/b on UDP 80 (ingress[0]) and 10.244.1.0/28, where no pod
is, on TCP 81 (ingress[1], a lookup of its own). Each probe is one UDP datagram from a fresh socket, so each is the first packet of
its own connection and crosses x/a's group chain exactly once (a reply, or a second datagram of
an answered flow, is established and accepted before any group chain):

  1. ALLOWED datagrams x/b -> x/a:80 (IPv4) and DENIED datagrams y/a -> x/a:80: /metrics shows
     netpol_policy_rule_packets_total{namespace="x",policy="a-in",direction="ingress",rule="0"}
     = ALLOWED (bytes: 28 + payload each), rule 1 = 0, and netpol_dropped_packets_total of
     x/a's group = DENIED; `netpolctl get networkpolicies -o wide` shows HITS = ALLOWED and
     DROPPED = DENIED; `netpolctl explain pod x/a` lists the counters;
  2. an unrelated change (a policy in z, a new group and its chain, plus a pod joining x/b's
     peers: element changes in x/a's sets) commits incrementally; the next scrape has the same
     counts, and MORE datagrams more add exactly MORE;
  3. the agent restarts, stopped (SIGTERM) and killed (SIGKILL): the new agent adopts the table
     with a full replace whose rules start from the old rules' counts, so the scrape after the
     restart has the same counts and more datagrams add exactly what they are;
  4. editing x/a-in's rule 1 port (its lookup reads another set, the chain is rebuilt) keeps
     the counts; removing rule 1 (its lookup goes, the chain is rebuilt) keeps the counts of
     the rules whose comment is unchanged (rule 0 and the drop) and rule 1's series is gone;
  5. an Admin ClusterNetworkPolicy on z/b accepts y/b's UDP 80 (its rule 0) and denies y/c's
     (rule 1): netpol_cluster_policy_rule_packets_total{tier="Admin",policy="guard-zb",
     direction="ingress",rule=...} counts exactly the datagrams of each, `netpolctl get
     clusternetworkpolicies -o wide` shows them (ACCEPTED, DENIED) and `netpolctl explain pod z/b`
     names both rules.

    counters_test.py --agent PATH --ctl PATH
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402
import yaml  # noqa: E402  (python3-yaml)

MODEL = os.path.join(ROOT, "tests", "conformance", "model.yaml")
NODE = "node-1"
METRICS = "127.0.0.1:9464"
ALLOWED, DENIED, MORE = 7, 5, 3
PAYLOAD = 16

# Sends N datagrams from N fresh sockets (one connection each) to ADDR:PORT.
SENDER = """
import socket, sys
n, addr, port, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x" * size, (addr, port))
    s.close()
"""


class Failure(Exception):
    pass


def policy(rule_1_ports):
    """x/a-in: ingress[0] admits x/b on UDP 80 (a pod lookup); ingress[1], when
    `rule_1_ports` is not None, admits 10.244.1.0/28 (no pod) on those ports (a range lookup of
    its own, so rule 1 shares no lookup with rule 0)."""
    ingress = [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                "ports": [{"protocol": "UDP", "port": 80}]}]
    if rule_1_ports is not None:
        ingress.append({"from": [{"ipBlock": {"cidr": "10.244.1.0/28"}}], "ports": rule_1_ports})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "a-in", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                     "ingress": ingress}}


UNRELATED = [
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "c-in", "namespace": "z"},
     "spec": {"podSelector": {"matchLabels": {"pod": "c"}}, "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"podSelector": {}}]}]}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "b2", "namespace": "x", "labels": {"pod": "b"}},
     "spec": {"nodeName": "node-2"},
     "status": {"podIP": "10.244.2.9"}},
]


def write_docs(path, docs):
    with open(path, "w") as f:
        f.write("---\n".join(json.dumps(d) + "\n" for d in docs))
    return path


class Agent(lab.Agent):
    """netpol-agent in the node namespace with /metrics on METRICS."""

    def __init__(self, args, the_lab, workdir):
        self.lab = the_lab
        super().__init__(args.agent, args.ctl, the_lab.node_netns, workdir, node=NODE,
                         flags=["--metrics-listen=" + METRICS])

    def last_sync_kind(self):
        out = json.loads(self.must("status", "-o", "json"))
        return out.get("lastSyncKind", "")

    def scrape(self):
        """The /metrics text, fetched inside the node namespace (where the agent listens)."""
        cp = self.lab.node_exec(["/usr/bin/python3", "-c",
                                 "import urllib.request,sys;sys.stdout.write(urllib.request."
                                 "urlopen('http://%s/metrics', timeout=10).read().decode())"
                                 % METRICS])
        return cp.stdout


def sample(text, name, labels):
    """The value of metric `name` whose labels include `labels` (a dict); None when absent, a
    Failure when several series match."""
    found = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(3)))
    if len(found) > 1:
        raise Failure("%d series of %s match %s" % (len(found), name, labels))
    return found[0] if found else None


def send(the_lab, src, dst, port, n):
    cp = lab.run(["ip", "netns", "exec", the_lab.pods[src].netns, "/usr/bin/python3", "-c", SENDER,
                  str(n), the_lab.pods[dst].ip("v4"), str(port), str(PAYLOAD)])
    return cp


def expect(problems, what, got, want):
    if got != want:
        problems.append("%s: %r, want %r" % (what, got, want))
    else:
        print("ok: %s = %r" % (what, got))


def counts(agent):
    text = agent.scrape()
    rule = {"namespace": "x", "policy": "a-in", "direction": "ingress"}
    return {
        "rule0 packets": sample(text, "netpol_policy_rule_packets_total", dict(rule, rule="0")),
        "rule0 bytes": sample(text, "netpol_policy_rule_bytes_total", dict(rule, rule="0")),
        "rule1 packets": sample(text, "netpol_policy_rule_packets_total", dict(rule, rule="1")),
        "drops": sample(text, "netpol_dropped_packets_total",
                        {"direction": "ingress", "policies": "x/a-in"}),
    }, text


GUARD = {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
         "metadata": {"name": "guard-zb"},
         "spec": {"tier": "Admin", "priority": 3,
                  "subject": {"pods": {"namespaceSelector": {"matchLabels": {"ns": "z"}},
                                       "podSelector": {"matchLabels": {"pod": "b"}}}},
                  "ingress": [
                      {"name": "let-yb", "action": "Accept",
                       "from": [{"pods": {"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                          "podSelector": {"matchLabels": {"pod": "b"}}}}],
                       "protocols": [{"udp": {"destinationPort": {"number": 80}}}]},
                      {"name": "no-yc", "action": "Deny",
                       "from": [{"pods": {"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                          "podSelector": {"matchLabels": {"pod": "c"}}}}],
                       "protocols": [{"udp": {"destinationPort": {"number": 80}}}]}]}}


def cluster_counts(agent, the_lab, workdir, problems):
    """An Admin ClusterNetworkPolicy on z/b: rule 0 accepts y/b's UDP 80, rule 1 denies y/c's.
    /metrics counts each rule's datagrams exactly (each tier lookup holds one rule), and
    `explain pod z/b` names them."""
    agent.must("apply", "-f", write_docs(os.path.join(workdir, "e.yaml"), [GUARD]))
    rule = {"tier": "Admin", "policy": "guard-zb", "direction": "ingress"}

    def cluster():
        text = agent.scrape()
        return {
            "accept packets": sample(text, "netpol_cluster_policy_rule_packets_total",
                                     dict(rule, rule="0", name="let-yb", action="Accept",
                                          shared="false")),
            "accept bytes": sample(text, "netpol_cluster_policy_rule_bytes_total",
                                   dict(rule, rule="0")),
            "deny packets": sample(text, "netpol_cluster_policy_rule_packets_total",
                                   dict(rule, rule="1", name="no-yc", action="Deny",
                                        shared="false")),
            "deny bytes": sample(text, "netpol_cluster_policy_rule_bytes_total",
                                 dict(rule, rule="1")),
        }

    expect(problems, "ClusterNetworkPolicy rule counts before any probe", cluster(),
           {"accept packets": 0.0, "accept bytes": 0.0, "deny packets": 0.0, "deny bytes": 0.0})
    send(the_lab, "y/b", "z/b", 80, ALLOWED)
    send(the_lab, "y/c", "z/b", 80, DENIED)
    expect(problems, "ClusterNetworkPolicy rule counts after the probes", cluster(),
           {"accept packets": float(ALLOWED), "accept bytes": float(ALLOWED * (28 + PAYLOAD)),
            "deny packets": float(DENIED), "deny bytes": float(DENIED * (28 + PAYLOAD))})
    wide = agent.must("get", "clusternetworkpolicies", "-o", "wide")
    row = [l.split() for l in wide.splitlines() if l.startswith("guard-zb ")]
    header = wide.splitlines()[0].split()
    if not row or "ACCEPTED" not in header or "DENIED" not in header:
        problems.append("get clusternetworkpolicies -o wide has no guard-zb row with ACCEPTED "
                        "and DENIED:\n" + wide)
    else:
        # SUBJECT is two words ("pods: ns=z / pod=b" splits further): count from the right.
        expect(problems, "ACCEPTED, DENIED of guard-zb", row[0][-2:], [str(ALLOWED), str(DENIED)])
    explained = agent.must("explain", "pod", "z/b")
    for want in ("Admin guard-zb ingress[0] (Accept)", "Admin guard-zb ingress[1] (Deny)"):
        if want not in explained:
            problems.append("explain pod z/b does not show %r:\n%s" % (want, explained))


def run(args, workdir):
    problems = []
    with open(MODEL) as f:
        objects = [d for d in yaml.safe_load_all(f) if d and d.get("kind") != "Lab"]
    with lab.Lab(lab.load_model(MODEL)) as the_lab:
        agent = Agent(args, the_lab, workdir)
        try:
            agent.must("apply", "-f", write_docs(os.path.join(workdir, "a.yaml"),
                                                  objects + [policy([{"protocol": "TCP",
                                                                      "port": 81}])]))
            c, _ = counts(agent)
            expect(problems, "counts before any probe", c,
                   {"rule0 packets": 0.0, "rule0 bytes": 0.0, "rule1 packets": 0.0,
                    "drops": 0.0})
            send(the_lab, "x/b", "x/a", 80, ALLOWED)
            send(the_lab, "y/a", "x/a", 80, DENIED)
            c, text = counts(agent)
            want = {"rule0 packets": float(ALLOWED), "rule0 bytes": float(ALLOWED * (28 + PAYLOAD)),
                    "rule1 packets": 0.0, "drops": float(DENIED)}
            expect(problems, "counts after the probes", c, want)
            if problems:
                print(text)
                print(the_lab.nft_list())

            wide = agent.must("get", "networkpolicies", "-n", "x", "-o", "wide")
            row = [l.split() for l in wide.splitlines() if l.startswith("a-in ")]
            header = wide.splitlines()[0].split()
            if not row or "HITS" not in header:
                problems.append("get -o wide has no a-in row with HITS:\n" + wide)
            else:
                expect(problems, "HITS of x/a-in", row[0][header.index("HITS")], str(ALLOWED))
                expect(problems, "DROPPED of x/a-in", row[0][header.index("DROPPED")],
                       str(DENIED))
            explained = agent.must("explain", "pod", "x/a")
            if "Rule counters" not in explained or "x/a-in ingress[0]" not in explained:
                problems.append("explain pod x/a shows no counters:\n" + explained)

            # 2. An unrelated incremental commit keeps the counts.
            agent.must("apply", "-f", write_docs(os.path.join(workdir, "b.yaml"), UNRELATED))
            expect(problems, "sync kind of the unrelated change", agent.last_sync_kind(),
                   "INCREMENTAL")
            c, _ = counts(agent)
            expect(problems, "counts after the unrelated commit", c, want)
            send(the_lab, "x/b", "x/a", 80, MORE)
            c, _ = counts(agent)
            want["rule0 packets"] += MORE
            want["rule0 bytes"] += MORE * (28 + PAYLOAD)
            expect(problems, "counts after more probes", c, want)

            # 3. A restart, clean (SIGTERM) and then a crash (SIGKILL): the new agent's first
            # sync replaces the table it finds in one transaction, its rules starting from the
            # counts of the rules they replace (read just before the commit; nothing is sent
            # meanwhile here), so the counts go on from where they were.
            for how in ("SIGTERM", "SIGKILL"):
                if how == "SIGTERM":
                    agent.stop()
                else:
                    agent.kill()
                agent.start()
                expect(problems, "sync kind after the restart (%s)" % how, agent.last_sync_kind(),
                       "FULL")
                c, _ = counts(agent)
                expect(problems, "counts after the restart (%s)" % how, c, want)
                send(the_lab, "x/b", "x/a", 80, MORE)
                send(the_lab, "y/a", "x/a", 80, 1)
                want["rule0 packets"] += MORE
                want["rule0 bytes"] += MORE * (28 + PAYLOAD)
                want["drops"] += 1
                c, _ = counts(agent)
                expect(problems, "counts after more probes after the restart (%s)" % how, c, want)

            # 4. A policy edit that changes rule 1's port points its lookup at another set
            # (sets are named after their content) and rebuilds the chain; one that removes
            # rule 1 (its lookup goes) rebuilds it too. Each rebuilt rule starts from the count
            # of the rule it replaces (same chain, same comment), so rule 0 and the drop go on.
            agent.must("apply", "-f", write_docs(os.path.join(workdir, "c.yaml"),
                                                  [policy([{"protocol": "TCP", "port": 82}])]))
            c, _ = counts(agent)
            expect(problems, "counts after an elements-only policy edit", c, want)
            agent.must("apply", "-f", write_docs(os.path.join(workdir, "d.yaml"),
                                                  [policy(None)]))
            c, _ = counts(agent)
            want["rule1 packets"] = None
            expect(problems, "counts after the chain was rebuilt", c, want)
            send(the_lab, "x/b", "x/a", 80, MORE)
            want["rule0 packets"] += MORE
            want["rule0 bytes"] += MORE * (28 + PAYLOAD)
            c, _ = counts(agent)
            expect(problems, "counts after more probes after the rebuild", c, want)

            # 5. ClusterNetworkPolicy rules are counted too, per rule.
            cluster_counts(agent, the_lab, workdir, problems)
        finally:
            agent.stop()
            if problems:
                print("agent log:\n" + agent.log_tail())
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--ctl", required=True)
    args = ap.parse_args()
    args.agent, args.ctl = os.path.abspath(args.agent), os.path.abspath(args.ctl)
    lab.require_root("counters_test")
    workdir = tempfile.mkdtemp(prefix="netpol-counters-")
    try:
        problems = run(args, workdir)
    except (Failure, lab.LabError) as e:
        problems = [str(e)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("PASSED: the counters grew by exactly the datagrams sent and kept their counts across "
          "an unrelated incremental commit and agent restarts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
