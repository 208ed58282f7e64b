#!/usr/bin/python3
"""ClusterIP behind kube-proxy's DNAT, on the real kernel, IPv4 and IPv6: a pod connecting to a
Service's ClusterIP:port is allowed or denied exactly as a direct connection to the backend pod
on the target port would be.

For each kube-proxy mode (iptables with the nf_tables backend, iptables-legacy, nftables) a fresh
lab is built (tests/services/svclab.py): namespaces x and y, backends y/b and y/c whose container
port `http` is 8080 on y/b and 9090 on y/c (`stats` UDP 8125 / 8126), and two Services:

    y/web-b  10.96.0.20  fd00:10:96::14   TCP 80 -> targetPort http,  UDP 8125 -> stats   (y/b)
    y/web-c  10.96.0.21  fd00:10:96::15   TCP 80 -> targetPort http,  UDP 8125 -> stats   (y/c)

kube-proxy's NAT is installed in the node namespace, netpol-enforce compiles each step's state
into `inet netpol`, and every step probes, from x/a, x/b and y/a, both ClusterIPs (TCP 80,
UDP 8125) and both backends directly (TCP and UDP on their target ports). Each probe has an
expected verdict, and for every source the ClusterIP verdict must equal the direct one. The steps
prove that ingress is judged on the target port (named ports resolved per backend, the Service
port itself means nothing), that egress is judged on the backend address (an ipBlock of the
Service CIDR allows nothing), and that a pod reaches itself through its own Service (hairpin).

    clusterip_test.py --enforce PATH [--mode iptables-nft|iptables-legacy|nftables ...]
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svclab  # noqa: E402
from svclab import Flow, ServicePort, Service, pod, policy, namespace  # noqa: E402

OBJECTS = [
    namespace("x", {"ns": "x"}),
    namespace("y", {"ns": "y"}),
    pod("x", "a", "10.244.1.17", "fd00:10:244:1::11", {"app": "client", "role": "frontend"}),
    pod("x", "b", "10.244.1.18", "fd00:10:244:1::12", {"app": "client"}),
    pod("y", "a", "10.244.1.33", "fd00:10:244:1::21", {"app": "other"}),
    pod("y", "b", "10.244.1.34", "fd00:10:244:1::22", {"app": "web", "instance": "b"},
        [("http", 8080, "TCP"), ("stats", 8125, "UDP")]),
    pod("y", "c", "10.244.1.35", "fd00:10:244:1::23", {"app": "web", "instance": "c"},
        [("http", 9090, "TCP"), ("stats", 8126, "UDP")]),
]

SERVICES = [
    Service("y", "web-b", {"v4": "10.96.0.20", "v6": "fd00:10:96::14"},
            [ServicePort("http", "TCP", 80, "http"), ServicePort("stats", "UDP", 8125, "stats")],
            ["y/b"]),
    Service("y", "web-c", {"v4": "10.96.0.21", "v6": "fd00:10:96::15"},
            [ServicePort("http", "TCP", 80, "http"), ServicePort("stats", "UDP", 8125, "stats")],
            ["y/c"]),
]

# backend pod -> (service, {proto: target port})
BACKENDS = {"y/b": ("svc:y/web-b", {"TCP": 8080, "UDP": 8125}),
            "y/c": ("svc:y/web-c", {"TCP": 9090, "UDP": 8126})}
SERVICE_PORT = {"TCP": 80, "UDP": 8125}
SOURCES = ("x/a", "x/b", "y/a")

FROM_X_FRONTEND = [{"namespaceSelector": {"matchLabels": {"ns": "x"}},
                    "podSelector": {"matchLabels": {"role": "frontend"}}}]
WEB = {"matchLabels": {"app": "web"}}
X_A = {"matchLabels": {"role": "frontend"}}


def steps():
    """(description, policies, allowed(src, backend, proto) -> bool)."""
    return [
        ("no policies: every ClusterIP and backend answers", [],
         lambda s, b, p: True),
        ("ingress of app=web from x role=frontend on the named port `http` (8080 on y/b, 9090 on "
         "y/c)",
         [policy("y", "web-from-frontend", WEB, ingress=[
             {"from": FROM_X_FRONTEND, "ports": [{"protocol": "TCP", "port": "http"}]}])],
         lambda s, b, p: s == "x/a" and p == "TCP"),
        ("ingress of y/b on TCP 80 only, the Service port: the target port 8080 is not allowed",
         [policy("y", "b-port-80", {"matchLabels": {"instance": "b"}}, ingress=[
             {"ports": [{"protocol": "TCP", "port": 80}]}])],
         lambda s, b, p: b != "y/b"),
        ("egress of x/a to app=web pods on TCP 8080 and UDP 8125: judged on the backend",
         [policy("x", "a-to-web-b-ports", X_A, types=["Egress"], egress=[
             {"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": WEB}],
              "ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "UDP", "port": 8125}]}])],
         lambda s, b, p: s != "x/a" or b == "y/b"),
        ("egress of x/a to the Service CIDR only: the DNATed destination is a pod, so nothing",
         [policy("x", "a-to-service-cidr", X_A, types=["Egress"], egress=[
             {"to": [{"ipBlock": {"cidr": svclab.SERVICE_CIDR["v4"]}},
                     {"ipBlock": {"cidr": svclab.SERVICE_CIDR["v6"]}}]}])],
         lambda s, b, p: s != "x/a"),
        ("egress of x/a on the named port `http` (resolved per backend) and the ingress of step "
         "2 together",
         [policy("x", "a-egress-http", X_A, types=["Egress"], egress=[
             {"to": [{"namespaceSelector": {}, "podSelector": WEB}],
              "ports": [{"protocol": "TCP", "port": "http"}]}]),
          policy("y", "web-from-frontend", WEB, ingress=[
              {"from": FROM_X_FRONTEND, "ports": [{"protocol": "TCP", "port": "http"}]}])],
         lambda s, b, p: s == "x/a" and p == "TCP"),
    ]


def flows_for(allowed):
    flows = []
    for s in SOURCES:
        for b, (svc, target) in sorted(BACKENDS.items()):
            for proto in ("TCP", "UDP"):
                want = allowed(s, b, proto)
                flows.append(Flow(s, svc, proto, SERVICE_PORT[proto], want,
                                  "via ClusterIP to %s:%d" % (b, target[proto])))
                flows.append(Flow(s, b, proto, target[proto], want, "direct"))
    # Hairpin: a backend through its own Service always reaches itself.
    for b, (svc, _) in sorted(BACKENDS.items()):
        flows.append(Flow(b, svc, "TCP", 80, True, "hairpin: a pod always reaches itself"))
    return flows


def run_mode(mode, enforce_bin, checker):
    print("== kube-proxy mode %s" % mode)
    failures_before = len(checker.failures)
    kp = svclab.KubeProxy(mode, SERVICES, OBJECTS, "node-1")
    with svclab.ServiceLab(OBJECTS) as slab:
        kp.install(slab.netns["node-1"])
        enforcer = svclab.Enforcer(slab.netns["node-1"], enforce_bin)
        for i, (desc, policies, allowed) in enumerate(steps()):
            print("step %d: %s" % (i + 1, desc))
            enforcer.apply(OBJECTS + policies, "%s-step%d" % (mode, i + 1))
            slab.flush_conntrack()
            flows = flows_for(allowed)
            got = svclab.run_flows(slab, flows, checker, services=SERVICES)
            # The ClusterIP verdict equals the direct verdict, source by source.
            for j in range(0, len(flows) - len(BACKENDS), 2):
                for fam in svclab.FAMILIES:
                    via, direct = got[(j, fam)], got[(j + 1, fam)]
                    checker.check(via.ok == direct.ok, "%s -> %s %s %s: ClusterIP %s, direct %s" % (
                        flows[j].src, flows[j].note, fam, flows[j].proto,
                        "allowed" if via.ok else "blocked",
                        "allowed" if direct.ok else "blocked"))
            checker.step_done()
        if len(checker.failures) > failures_before:
            print("--- kube-proxy NAT (%s):\n%s" % (mode, kp.listing(slab.netns["node-1"])))
            print("--- inet netpol:\n%s" % slab.nft_list())
            print("--- state: %s" % enforcer.last_path)


def main():
    def add_args(ap):
        ap.add_argument("--mode", action="append", choices=svclab.KubeProxy.MODES,
                        help="kube-proxy mode(s) to test (default: all)")

    def run(args, enforce_bin, checker):
        for mode in args.mode or svclab.KubeProxy.MODES:
            run_mode(mode, enforce_bin, checker)

    return svclab.enforce_main(__doc__, "clusterip_test", run, add_args)


if __name__ == "__main__":
    sys.exit(main())
