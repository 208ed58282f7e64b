#!/usr/bin/python3
"""Randomized differential test: the kernel (engine-compiled nftables in the lab) against the
userspace evaluator.

For each seed: generate namespace and pod labels, pod named ports and 1-5 NetworkPolicies from
random.Random(seed); enforce them with the enforce tool in the lab's node namespace; probe a few
(protocol, port) pairs over the full 9x9 pod matrix in both families; ask the evaluator tool for
its verdict on every probed cell; every cell must agree. A mismatch prints the seed, the objects
as YAML, the differing cells and the node's nft table.

    differential_test.py --enforce PATH --eval PATH [--seeds N] [--start S] [--model FILE]
    differential_test.py --dump SEED        # print a seed's objects as YAML (no root needed)

The evaluator tool (//tests/tools:netpol-eval) is called as `EVAL --state FILE` with one JSON
query per line on stdin, {"src": "x/a", "dst": "y/b", "protocol": "TCP", "port": 80,
"family": "v4"}, and answers one JSON object per line, in order, with a boolean "allowed".
"""

import argparse
import ipaddress
import json
import os
import random
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean when run by hand
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dplib  # noqa: E402
from dplib import lab  # noqa: E402

NAMESPACES = ("x", "y", "z")
POD_LABELS = {"app": ("web", "db", "api"), "tier": ("front", "back"), "pod": ("a", "b", "c")}
NS_LABELS = {"team": ("blue", "red"), "env": ("prod", "dev")}
NS_NAME_LABEL = "kubernetes.io/metadata.name"
SERVER_PORTS = (80, 81, 82)  # every lab pod serves TCP and UDP on these
PORT_NAMES = ("http", "web", "dns")
PROBE_CHOICES = [(p, n) for p in ("TCP", "UDP") for n in SERVER_PORTS]


# --------------------------------------------------------------------------------------------
# Generator


class Gen:
    """Everything random about one seed. Only the objects' labels, ports and policies vary; the
    pods and their addresses are the lab's."""

    def __init__(self, seed, model):
        self.r = random.Random(seed)
        self.model = model

    def chance(self, p):
        return self.r.random() < p

    def labels(self, vocab, p=0.6):
        return {k: self.r.choice(v) for k, v in vocab.items() if self.chance(p)}

    def selector(self, vocab, extra_keys=()):
        r = self.r
        kind = r.random()
        if kind < 0.2:
            return {}
        sel = {}
        keys = list(vocab) + list(extra_keys)
        if kind < 0.6 or self.chance(0.3):
            k = r.choice(list(vocab))
            sel["matchLabels"] = {k: r.choice(vocab[k])}
        if kind >= 0.6 or not sel:
            exprs = []
            for k in r.sample(keys, r.randint(1, 2)):
                values = vocab.get(k, NAMESPACES)
                op = r.choice(("In", "NotIn", "Exists", "DoesNotExist"))
                e = {"key": k, "operator": op}
                if op in ("In", "NotIn"):
                    e["values"] = sorted(r.sample(list(values), r.randint(1, min(2, len(values)))))
                exprs.append(e)
            sel["matchExpressions"] = exprs
        return sel

    def cidr(self, version):
        pods = self.model.pods
        r = self.r
        ip = ipaddress.ip_address(r.choice(pods).ipv4 if version == 4 else r.choice(pods).ipv6)
        maxlen = ip.max_prefixlen
        kind = r.random()
        if kind < 0.1:
            length = 0
        elif kind < 0.3:
            length = maxlen
        elif kind < 0.45:  # the pod subnet (/24, /64)
            gw = self.model.v4_gateway if version == 4 else self.model.v6_gateway
            length = ipaddress.ip_interface(gw).network.prefixlen
        else:  # inside the pod subnet: /24../30 (v4), /120../126 (v6)
            length = r.randint(maxlen - 8, maxlen - 2)
        return ipaddress.ip_network("%s/%d" % (ip, length), strict=False)

    def ip_block(self):
        net = self.cidr(4 if self.chance(0.5) else 6)
        block = {"cidr": str(net)}
        if net.prefixlen < net.max_prefixlen and self.chance(0.5):
            excepts = set()
            for _ in range(self.r.randint(1, 2)):
                inside = [p for p in self.model.pods
                          if ipaddress.ip_address(p.ipv4 if net.version == 4 else p.ipv6) in net]
                if not inside:
                    break
                ip = self.r.choice(inside)
                ip = ip.ipv4 if net.version == 4 else ip.ipv6
                length = self.r.randint(max(net.prefixlen + 1, net.max_prefixlen - 6),
                                        net.max_prefixlen)
                excepts.add(str(ipaddress.ip_network("%s/%d" % (ip, length), strict=False)))
            if excepts:
                block["except"] = sorted(excepts)
        return block

    def peer(self):
        kind = self.r.random()
        if kind < 0.3:
            return {"podSelector": self.selector(POD_LABELS)}
        if kind < 0.55:
            return {"namespaceSelector": self.selector(NS_LABELS, (NS_NAME_LABEL,))}
        if kind < 0.8:
            return {"namespaceSelector": self.selector(NS_LABELS, (NS_NAME_LABEL,)),
                    "podSelector": self.selector(POD_LABELS)}
        return {"ipBlock": self.ip_block()}

    def port(self):
        r = self.r
        p = {}
        proto = r.choice((None, "TCP", "TCP", "UDP", "SCTP"))
        if proto:
            p["protocol"] = proto
        kind = r.random()
        if kind < 0.15:
            pass  # every port of the protocol
        elif kind < 0.5:
            p["port"] = r.choice(SERVER_PORTS + (1000,))
        elif kind < 0.8:
            p["port"] = r.choice(PORT_NAMES + ("none",))
        else:
            start = r.randint(79, 82)
            p["port"] = start
            p["endPort"] = start + r.randint(0, 2)
        return p

    def large_rule(self, peers_key):
        """A rule beyond the compiler's product limit (engine/compiler/RULESET.md "Large rules"),
        or near it: its peers and ports get sets of their own. Many unprobed ports with some
        server ports and random ones among them; 40 small blocks around pod addresses (large),
        or a selector peer, large or not depending on how many pod addresses it matches."""
        r = self.r
        blocks = self.chance(0.5)
        ports = [{"protocol": r.choice(("TCP", "UDP")), "port": n}
                 for n in r.sample(range(2000, 3000), 30 if blocks else r.randint(60, 260))]
        for i in r.sample(range(len(ports)), 2):
            ports[i]["port"] = r.choice(SERVER_PORTS)
        ports += [self.port() for _ in range(r.randint(0, 2))]
        if blocks:
            peers = []
            for _ in range(40):
                pod = r.choice(self.model.pods)
                v4 = self.chance(0.7)
                net = ipaddress.ip_network("%s/%d" % ((pod.ipv4, 30) if v4 else (pod.ipv6, 126)),
                                           strict=False)
                peers.append({"ipBlock": {"cidr": str(net)}})
        else:
            peers = [{"podSelector": self.selector(POD_LABELS)}]
        peers += [self.peer() for _ in range(r.randint(0, 2))]
        return {peers_key: peers, "ports": ports}

    def rule(self, peers_key):
        if self.chance(0.08):
            return self.large_rule(peers_key)
        rule = {}
        k = self.r.random()
        if k < 0.05:
            rule[peers_key] = []
        elif k >= 0.3:
            rule[peers_key] = [self.peer() for _ in range(self.r.randint(1, 3))]
        k = self.r.random()
        if k < 0.05:
            rule["ports"] = []
        elif k >= 0.4:
            rule["ports"] = [self.port() for _ in range(self.r.randint(1, 2))]
        return rule

    def rules(self, peers_key):
        k = self.r.random()
        if k < 0.3:
            return None  # absent
        if k < 0.4:
            return []
        return [self.rule(peers_key) for _ in range(self.r.randint(1, 3))]

    def policy(self, i):
        r = self.r
        spec = {"podSelector": self.selector(POD_LABELS)}
        types = r.choice((None, None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]))
        if types is not None:
            spec["policyTypes"] = types
        ingress, egress = self.rules("from"), self.rules("to")
        if ingress is not None:
            spec["ingress"] = ingress
        if egress is not None:
            spec["egress"] = egress
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"namespace": r.choice(NAMESPACES), "name": "p%d" % i}, "spec": spec}

    def pod_ports(self):
        ports = []
        for name in PORT_NAMES:
            if self.chance(0.6):
                ports.append({"name": name, "containerPort": self.r.choice(SERVER_PORTS),
                              "protocol": "TCP" if self.chance(0.7) else "UDP"})
        return ports

    def objects(self):
        out = []
        for ns in NAMESPACES:
            out.append({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns, "labels": self.labels(NS_LABELS)}})
        for p in self.model.pods:
            out.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"namespace": p.namespace, "name": p.name,
                             "labels": self.labels(POD_LABELS)},
                "spec": {"nodeName": self.model.node,
                         "containers": [{"name": "main", "ports": self.pod_ports()}]},
                "status": {"podIP": p.ipv4, "podIPs": [{"ip": p.ipv4}, {"ip": p.ipv6}]},
            })
        out += [self.policy(i) for i in range(self.r.randint(1, 5))]
        return out

    def probes(self):
        return sorted(self.r.sample(PROBE_CHOICES, 3))


# --------------------------------------------------------------------------------------------
# The evaluator


def evaluate(eval_bin, state_path, the_lab, probes):
    """Asks the evaluator tool for every (family, proto, port, src, dst) cell. Returns a verdict
    table {(family, proto, port): {(src, dst): bool}}."""
    cells = []
    for fam in lab.FAMILIES:
        for proto, port in probes:
            for s in the_lab.pod_keys():
                for d in the_lab.pod_keys():
                    cells.append((fam, proto, port, s, d))
    query = "".join(json.dumps({"src": s, "dst": d, "protocol": p, "port": n, "family": f}) + "\n"
                    for (f, p, n, s, d) in cells)
    cp = subprocess.run([eval_bin, "--state", state_path], input=query, capture_output=True,
                        text=True, timeout=120)
    lines = [l for l in cp.stdout.splitlines() if l.strip()]
    if cp.returncode != 0 or len(lines) != len(cells):
        errors = [l for l in lines if '"error"' in l][:3]
        raise dplib.RunnerError("%s --state %s: exit %d, %d answers for %d queries: %s %s" % (
            os.path.basename(eval_bin), state_path, cp.returncode, len(lines), len(cells),
            cp.stderr.strip(), " ".join(errors)))
    out = {}
    for (f, p, n, s, d), line in zip(cells, lines):
        try:
            v = json.loads(line)
        except ValueError as e:
            raise dplib.RunnerError("%s: answer is not JSON (%s): %.300s" % (eval_bin, e, line))
        allowed = v.get("allowed") if isinstance(v, dict) else None
        if not isinstance(allowed, bool):
            raise dplib.RunnerError("%s: answer for %s -> %s %s %s/%d has no boolean "
                                    "'allowed': %.300s" % (eval_bin, s, d, f, p, n, line))
        out.setdefault((f, p, n), {})[(s, d)] = allowed
    return out


# --------------------------------------------------------------------------------------------
# Runner


def run_seed(seed, the_lab, enforcer, eval_bin, timeout):
    gen = Gen(seed, the_lab.model)
    objects = gen.objects()
    probes = gen.probes()
    path = enforcer.apply(objects, "seed-%d" % seed)
    the_lab.flush_conntrack()
    want = evaluate(eval_bin, path, the_lab, probes)
    got = the_lab.matrices(probes, timeout=timeout)
    bad = dplib.confirm(the_lab, dplib.diff(want, got))
    return objects, probes, want, got, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--enforce", help="netpol-enforce binary (or $NETPOL_ENFORCE)")
    ap.add_argument("--eval", dest="eval_bin", help="netpol-eval binary (or $NETPOL_EVAL)")
    ap.add_argument("--seeds", type=int, default=20, help="how many seeds")
    ap.add_argument("--start", type=int, default=1, help="first seed")
    ap.add_argument("--model", default=os.path.join(dplib.ROOT, "tests", "conformance",
                                                    "model.yaml"))
    ap.add_argument("--timeout", type=float, default=1.0, help="probe timeout, seconds")
    ap.add_argument("--dump", type=int, metavar="SEED", help="print SEED's objects and exit")
    ap.add_argument("--stop-on-failure", action="store_true")
    args = ap.parse_args()

    model = lab.load_model(args.model) if os.path.exists(args.model) else lab.default_model()
    if args.dump is not None:
        gen = Gen(args.dump, model)
        objs = gen.objects()
        print("# seed %d, probes %s" % (args.dump, gen.probes()))
        print(dplib.dump_objects(objs), end="")
        return 0

    lab.require_root("differential_test.py")
    try:
        enforce_bin = dplib.find_tool(args.enforce, "NETPOL_ENFORCE", "//tests/tools:netpol-enforce")
        eval_bin = dplib.find_tool(args.eval_bin, "NETPOL_EVAL", "//tests/tools:netpol-eval")
    except dplib.RunnerError as e:
        print("FAILED: %s" % e)
        return 1

    passed = failed = 0
    t0 = time.monotonic()
    with lab.Lab(model, extra_ports=SERVER_PORTS) as the_lab:
        enforcer = dplib.Enforcer(the_lab, enforce_bin)
        for seed in range(args.start, args.start + args.seeds):
            ts = time.monotonic()
            try:
                objects, probes, want, got, bad = run_seed(seed, the_lab, enforcer, eval_bin,
                                                           args.timeout)
            except (dplib.RunnerError, lab.LabError) as e:
                failed += 1
                print("FAIL seed %d: %s" % (seed, e))
                print("  replay: differential_test.py --seeds 1 --start %d; objects: "
                      "differential_test.py --dump %d" % (seed, seed))
                if args.stop_on_failure:
                    break
                continue
            ncells = sum(len(c) for c in want.values())
            nallowed = sum(sum(c.values()) for c in want.values())
            probe_text = ",".join("%s/%d" % p for p in probes)
            if not bad:
                passed += 1
                print("PASS seed %d (%d policies, %s, %d/%d cells allowed, %.1fs)" % (
                    seed, sum(o["kind"] == "NetworkPolicy" for o in objects), probe_text,
                    nallowed, ncells, time.monotonic() - ts))
                continue
            failed += 1
            print("FAIL seed %d: %d of %d cells differ (%s)" % (seed, len(bad), ncells,
                                                                  probe_text))
            print("  replay: differential_test.py --seeds 1 --start %d" % seed)
            print("  objects (state file %s):" % enforcer.last_path)
            for line in dplib.dump_objects(objects).splitlines():
                print("    " + line)
            dplib.report_mismatches(the_lab, want, got, bad)
            print("  nft list table inet netpol:")
            for line in the_lab.nft_list().splitlines():
                print("    " + line)
            if args.stop_on_failure:
                break
        enforcer.finish(keep=failed > 0)
    print("differential: seeds %d..%d in %.1fs" % (args.start, args.start + args.seeds - 1,
                                                   time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
