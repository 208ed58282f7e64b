#!/usr/bin/python3
"""DNS under default-deny egress, on the real kernel, IPv4 and IPv6: with the shipped examples
`default-deny-egress.yaml` and `allow-dns.yaml` applied to namespace `app`, its pods resolve names
through the kube-dns Service (kube-proxy DNAT to the CoreDNS-like pod), over UDP and TCP, A and
AAAA, and nothing else leaves: not DNS to other servers (a pod labelled k8s-app=kube-dns in
another namespace, another pod in kube-system, a resolver outside the cluster), not the node, not
other pods, not the outside.

Lab (tests/services/svclab.py): kube-system/coredns (k8s-app=kube-dns, ports dns 53/UDP,
dns-tcp 53/TCP, metrics 9153) runs tests/services/dnsresponder.py, answering
web.app.svc.cluster.local with A 10.96.0.40 and AAAA fd00:10:96::28; so do kube-system/not-dns
(no kube-dns label), default/rogue-dns (k8s-app=kube-dns but in `default`) and ext-a (outside,
203.0.113.10). Service kube-system/kube-dns: 10.96.0.10 / fd00:10:96::a, 53/UDP -> dns,
53/TCP -> dns-tcp, in kube-proxy's nftables shape (or --mode).

    dns_test.py --enforce PATH --examples DIR [--mode nftables|iptables-nft|iptables-legacy]
"""

import copy
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svclab  # noqa: E402
from svclab import Flow, ServicePort, Service, pod, namespace  # noqa: E402

NAME = "web.app.svc.cluster.local"
ANSWERS = {"A": ["10.96.0.40"], "AAAA": ["fd00:10:96::28"]}
DNS_PORTS = [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]

OBJECTS = [
    namespace("kube-system"),
    namespace("app"),
    namespace("other"),
    namespace("default"),
    pod("kube-system", "coredns", "10.244.1.10", "fd00:10:244:1::a", {"k8s-app": "kube-dns"},
        DNS_PORTS + [("metrics", 9153, "TCP")]),
    pod("kube-system", "not-dns", "10.244.1.11", "fd00:10:244:1::b", {"app": "other-dns"},
        DNS_PORTS),
    pod("default", "rogue-dns", "10.244.1.80", "fd00:10:244:1::50", {"k8s-app": "kube-dns"},
        DNS_PORTS),
    pod("app", "client", "10.244.1.65", "fd00:10:244:1::41", {"app": "client"}),
    pod("app", "web", "10.244.1.66", "fd00:10:244:1::42", {"app": "web"}),
    pod("other", "web", "10.244.1.97", "fd00:10:244:1::61", {"app": "web"}),
]
DNS_PODS = ("kube-system/coredns", "kube-system/not-dns", "default/rogue-dns")
SERVICES = [Service("kube-system", "kube-dns", {"v4": "10.96.0.10", "v6": "fd00:10:96::a"},
                    [ServicePort("dns", "UDP", 53, "dns"), ServicePort("dns-tcp", "TCP", 53,
                                                                       "dns-tcp")],
                    ["kube-system/coredns"])]
# DNS servers the client asks, and whether the allow-DNS policy lets it.
SERVERS = [("svc:kube-system/kube-dns", True), ("kube-system/coredns", True),
           ("kube-system/not-dns", False), ("default/rogue-dns", False), ("internet", False)]


def example(examples_dir, name, ns):
    out = []
    for obj in svclab.load_yaml_file(os.path.join(examples_dir, name)):
        obj = copy.deepcopy(obj)
        obj["metadata"]["namespace"] = ns
        out.append(obj)
    return out


def other_flows(allowed):
    """Non-DNS traffic from app/client (and app/web) that must follow `allowed`."""
    return [
        Flow("app/client", "app/web", "TCP", 80, allowed, "same namespace"),
        Flow("app/client", "other/web", "TCP", 80, allowed, "another namespace"),
        Flow("app/client", "internet", "TCP", 80, allowed, "outside"),
        Flow("app/client", "node-1", "TCP", 10250, allowed, "the node (input hook)"),
        Flow("app/client", "kube-system/coredns", "TCP", 9153, allowed,
             "kube-dns pod, not port 53"),
        Flow("app/client", "kube-system/coredns", "UDP", 81, allowed, "kube-dns pod, UDP 81"),
        Flow("app/web", "other/web", "UDP", 81, allowed, "another pod of app"),
        Flow("other/web", "app/web", "TCP", 80, True, "ingress to app is not restricted"),
    ]


def check_dns(slab, checker, want_of, label):
    queries = []
    for server, _ in SERVERS:
        for fam in svclab.FAMILIES:
            for transport in ("udp", "tcp"):
                for qtype in ("A", "AAAA"):
                    queries.append({"id": "%s|%s|%s|%s" % (server, fam, transport, qtype),
                                    "server": slab.addr(server, fam, SERVICES), "name": NAME,
                                    "type": qtype, "transport": transport})
    # One name the responder does not know: NXDOMAIN proves the answer came from it.
    for fam in svclab.FAMILIES:
        queries.append({"id": "nx|%s" % fam, "server": slab.addr(SERVERS[0][0], fam, SERVICES),
                        "name": "nope.app.svc.cluster.local", "type": "A", "transport": "udp"})
    got = slab.dns("app/client", queries)
    retry = [q for q in queries if q["id"] in got and not got[q["id"]]["ok"] and
             want_of(q["id"].split("|")[0])]
    if retry:  # a slow answer on a busy machine is not a block
        got.update(slab.dns("app/client", retry, timeout=3.0))
    for q in queries:
        r = got[q["id"]]
        server = q["id"].split("|")[0]
        if server == "nx":
            want = want_of(SERVERS[0][0])
            ok = (r["ok"] and r["rcode"] == 3) if want else not r["ok"]
            checker.check(ok, "%sapp/client asks %s for a name it does not know: %s" % (
                label, q["server"], "rcode %s" % r["rcode"] if r["ok"] else r["why"]))
            continue
        want = want_of(server)
        if want:
            ok = r["ok"] and r["rcode"] == 0 and r["answers"] == ANSWERS[q["type"]]
        else:
            ok = not r["ok"]
        checker.check(ok, "%sapp/client -> %s (%s) %s %s %s: %s, want %s" % (
            label, server, q["server"], q["transport"], q["type"], NAME,
            "answer %s rcode %s" % (r["answers"], r["rcode"]) if r["ok"] else
            "no answer (%s)" % r["why"],
            "answer %s" % ANSWERS[q["type"]] if want else "no answer"))


def main():
    def add_args(ap):
        ap.add_argument("--examples", default=os.path.join(svclab.ROOT, "examples"),
                        help="directory of the example policies")
        ap.add_argument("--mode", default="nftables", choices=svclab.KubeProxy.MODES)

    def run(args, enforce_bin, checker):
        deny = example(args.examples, "default-deny-egress.yaml", "app")
        allow_dns = example(args.examples, "allow-dns.yaml", "app")
        free = {k: {53} for k in DNS_PODS}
        with svclab.ServiceLab(OBJECTS, free_ports=free) as slab:
            responder = [svclab.DNS_RESPONDER, "--name", NAME, "--a", ANSWERS["A"][0],
                         "--aaaa", ANSWERS["AAAA"][0]]
            for where in DNS_PODS + ("ext-a",):
                slab.start(where, responder)
            slab.start_server("ext-a", [80, 81])
            slab.start_server("node-1", [10250])
            svclab.KubeProxy(args.mode, SERVICES, OBJECTS, "node-1").install(slab.netns["node-1"])
            enforcer = svclab.Enforcer(slab.netns["node-1"], enforce_bin)
            steps = [
                ("no policies: every server answers, everything is reachable", [],
                 lambda server: True, True),
                ("default-deny-egress.yaml in app: nothing leaves, not even DNS", deny,
                 lambda server: False, False),
                ("default-deny-egress.yaml + allow-dns.yaml in app: DNS to kube-dns pods in "
                 "kube-system only", deny + allow_dns, lambda server: dict(SERVERS)[server], False),
            ]
            for i, (desc, policies, dns_want, others) in enumerate(steps):
                print("step %d: %s" % (i + 1, desc))
                enforcer.apply(OBJECTS + policies, "step%d" % (i + 1))
                slab.flush_conntrack()
                failed = len(checker.failures)
                check_dns(slab, checker, dns_want, "")
                svclab.run_flows(slab, other_flows(others), checker)
                checker.step_done()
                if len(checker.failures) > failed:
                    print("--- state %s\n--- inet netpol:\n%s" % (enforcer.last_path,
                                                               slab.nft_list()))

    return svclab.enforce_main(__doc__, "dns_test", run, add_args)


if __name__ == "__main__":
    sys.exit(main())
