#!/usr/bin/python3
"""NodePort traffic from outside the cluster, on the real kernel, IPv4 and IPv6: what an ipBlock
rule of the backend pod sees with externalTrafficPolicy Local (client address preserved) and
Cluster (masqueraded), on the node that holds the backend and through another node.

Lab (tests/services/svclab.py): node-1 holds the backend y/b (container ports http 8080/TCP,
stats 8125/UDP); node-2 is another node on the underlay (172.31.0.0/24, fd00:172:31::/64), host-gw
routed to node-1's pods; ext-a (.10) and ext-b (.11) are clients outside the cluster. kube-proxy's
NAT runs on both nodes (same mode) for two Services with the same backend:

    y/web-cluster  externalTrafficPolicy Cluster  nodePorts 30080/TCP -> http, 30125/UDP -> stats
    y/web-local    externalTrafficPolicy Local    nodePorts 30081/TCP -> http, 30126/UDP -> stats

Paths probed from ext-a and ext-b:
    local@node-1    to node-1:30081   DNAT only: y/b's ingress sees the client
    cluster@node-1  to node-1:30080   DNAT + masquerade on node-1 (postrouting, srcnat 100): netpol
                    judges ingress in its postrouting chain after that (srcnat + 1), so the
                    ingress rules see what the pod sees, node-1's cni0 address (checked in
                    conntrack), never the client
    cluster@node-2  to node-2:30080   node-2 DNATs to y/b and masquerades to its own address: on
                    node-1, y/b's ingress sees node-2 (172.31.0.3), never the client
    local@node-2    to node-2:30081   no local endpoint: kube-proxy drops it (not netpol)
Throughout, node-1's own connection to the pod (a kubelet probe, sent by a node socket from a node
address) stays allowed whatever the policy.

    nodeport_test.py --enforce PATH [--mode iptables-nft|iptables-legacy|nftables ...]
"""

import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svclab  # noqa: E402
from svclab import ADDRESSES, Flow, ServicePort, Service, pod, policy, namespace  # noqa: E402

OBJECTS = [
    namespace("x", {"ns": "x"}),
    namespace("y", {"ns": "y"}),
    pod("x", "a", "10.244.1.17", "fd00:10:244:1::11", {"app": "client"}),
    pod("y", "b", "10.244.1.34", "fd00:10:244:1::22", {"app": "web"},
        [("http", 8080, "TCP"), ("stats", 8125, "UDP")]),
]
SERVICES = [
    Service("y", "web-cluster", {"v4": "10.96.0.30", "v6": "fd00:10:96::1e"},
            [ServicePort("http", "TCP", 80, "http", 30080),
             ServicePort("stats", "UDP", 8125, "stats", 30125)], ["y/b"], "Cluster"),
    Service("y", "web-local", {"v4": "10.96.0.31", "v6": "fd00:10:96::1f"},
            [ServicePort("http", "TCP", 80, "http", 30081),
             ServicePort("stats", "UDP", 8125, "stats", 30126)], ["y/b"], "Local"),
]
# path -> (node entered, node ports {proto: port})
PATHS = {
    "local@node-1": ("node-1", {"TCP": 30081, "UDP": 30126}),
    "cluster@node-1": ("node-1", {"TCP": 30080, "UDP": 30125}),
    "cluster@node-2": ("node-2", {"TCP": 30080, "UDP": 30125}),
}
CLIENTS = ("ext-a", "ext-b")
WEB = {"matchLabels": {"app": "web"}}
WEB_PORTS = [{"protocol": "TCP", "port": "http"}, {"protocol": "UDP", "port": "stats"}]


def host_blocks(*names):
    out = []
    for n in names:
        for fam, plen in (("v4", 32), ("v6", 128)):
            out.append({"ipBlock": {"cidr": "%s/%d" % (ADDRESSES[n][fam], plen)}})
    return out


def steps():
    """(description, policies, allowed(path, client) -> bool)."""
    return [
        ("no policies", [], lambda path, c: True),
        ("y/b ingress from ipBlock ext-a/32: the client is what the pod sees with Local only; "
         "with Cluster the pod sees node-1's cni0 (entered there) or node-2",
         [policy("y", "from-ext-a", WEB, ingress=[{"from": host_blocks("ext-a"),
                                                   "ports": WEB_PORTS}])],
         lambda path, c: path == "local@node-1" and c == "ext-a"),
        ("y/b ingress from ipBlock node-2/32: what Cluster through node-2 carries",
         [policy("y", "from-node-2", WEB, ingress=[{"from": host_blocks("node-2"),
                                                    "ports": WEB_PORTS}])],
         lambda path, c: path == "cluster@node-2"),
        ("y/b ingress from node-1's own addresses (underlay and cni0, the masquerade source on "
         "node-1): admits Cluster through node-1, from any client",
         [policy("y", "from-node-1", WEB, ingress=[{"from": host_blocks("node-1", "node-1/cni0"),
                                                    "ports": WEB_PORTS}])],
         lambda path, c: path == "cluster@node-1"),
        ("y/b ingress from the clients' CIDR (the underlay) except node-2: only Local keeps the "
         "client address; Cluster carries cni0 or node-2",
         [policy("y", "from-underlay", WEB, ingress=[{"from": [
             {"ipBlock": {"cidr": "172.31.0.0/24", "except": ["172.31.0.3/32"]}},
             {"ipBlock": {"cidr": "fd00:172:31::/64", "except": ["fd00:172:31::3/128"]}}],
             "ports": WEB_PORTS}])],
         lambda path, c: path == "local@node-1"),
    ]


def flows_for(allowed, first):
    flows = []
    for path, (node, ports) in sorted(PATHS.items()):
        for c in CLIENTS:
            for proto in ("TCP", "UDP"):
                flows.append(Flow(c, node, proto, ports[proto], allowed(path, c), path))
    if first:
        for c in CLIENTS:
            flows.append(Flow(c, "node-2", "TCP", 30081, False,
                              "local@node-2: no local endpoint, kube-proxy drops"))
    # The pod itself is always reachable from its node (kubelet probes), whatever the policy.
    flows.append(Flow("node-1", "y/b", "TCP", 8080, True, "kubelet probe"))
    return flows


def check_snat(slab, checker):
    """After the no-policy probes: conntrack shows what the backend saw as the source."""
    for fam in svclab.FAMILIES:
        node1 = slab.conntrack("node-1", fam)
        node2 = slab.conntrack("node-2", fam)
        a, pod_ip = ADDRESSES["ext-a"][fam], slab.addr("y/b", fam)
        cases = [
            ("local@node-1", node1, 30081, a),
            ("cluster@node-1", node1, 30080, ADDRESSES["node-1/cni0"][fam]),
            ("cluster@node-2", node2, 30080, ADDRESSES["node-2"][fam]),
        ]
        for path, table, port, seen in cases:
            lines = [l for l in table.splitlines() if "src=%s " % a in l and
                     "dport=%d " % port in l and "tcp" in l.split()[0]]
            # The reply tuple is the second src=/dst= pair: reply src = the backend, reply dst =
            # the source address the backend saw.
            ok = False
            for l in lines:
                srcs = re.findall(r"src=(\S+)", l)
                dsts = re.findall(r"dst=(\S+)", l)
                if len(srcs) >= 2 and srcs[1] == pod_ip and dsts[1] == seen:
                    ok = True
            checker.check(ok, "%s %s: the backend %s saw source %s (conntrack: %s)" % (
                path, fam, pod_ip, seen, "; ".join(lines) or "no entry"))


def run_mode(mode, enforce_bin, checker):
    print("== kube-proxy mode %s" % mode)
    failures_before = len(checker.failures)
    with svclab.ServiceLab(OBJECTS) as slab:
        for node in ("node-1", "node-2"):
            svclab.KubeProxy(mode, SERVICES, OBJECTS, node).install(slab.netns[node])
        enforcer = svclab.Enforcer(slab.netns["node-1"], enforce_bin)
        for i, (desc, policies, allowed) in enumerate(steps()):
            print("step %d: %s" % (i + 1, desc))
            enforcer.apply(OBJECTS + policies, "%s-step%d" % (mode, i + 1))
            slab.flush_conntrack()
            svclab.run_flows(slab, flows_for(allowed, i == 0), checker, services=SERVICES)
            if i == 0:
                check_snat(slab, checker)
            checker.step_done()
        if len(checker.failures) > failures_before:
            for node in ("node-1", "node-2"):
                print("--- kube-proxy NAT on %s:\n%s" % (node, svclab.KubeProxy(
                    mode, SERVICES, OBJECTS, node).listing(slab.netns[node])))
            print("--- inet netpol:\n%s" % slab.nft_list())
            print("--- state: %s" % enforcer.last_path)


def main():
    def add_args(ap):
        ap.add_argument("--mode", action="append", choices=svclab.KubeProxy.MODES,
                        help="kube-proxy mode(s) to test (default: all)")

    def run(args, enforce_bin, checker):
        for mode in args.mode or svclab.KubeProxy.MODES:
            run_mode(mode, enforce_bin, checker)

    return svclab.enforce_main(__doc__, "nodeport_test", run, add_args)


if __name__ == "__main__":
    sys.exit(main())
