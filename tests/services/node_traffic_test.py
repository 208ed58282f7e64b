#!/usr/bin/python3
"""Node traffic and hostNetwork pods, on the real kernel, IPv4 and IPv6.

  * The node reaches its own pods (kubelet probes) even under default-deny ingress: that traffic
    leaves through the node's output hook, which netpol does not filter.
  * A pod's connections to its node (any of the node's addresses: cni0, the underlay address)
    are subject to the pod's egress policy: they cross netpol's `input` chain.
  * A hostNetwork pod is not a policy subject: a policy selecting it isolates nothing.
  * As a peer, a hostNetwork pod is its node's address: pod/namespace selectors never match it,
    an ipBlock holding the node's address does. Another node's traffic to a pod is not "the
    pod's node": it is judged like any other source.
  * A Service whose endpoints are hostNetwork pods (the `kubernetes` Service: 443 -> the API
    servers' 6443 on the nodes) is judged on the endpoint node's address and the target port:
    in `input` when the endpoint is this node, in `forward` when it is another node. Egress to
    the API server needs an ipBlock of the control-plane nodes on 6443; 443, the Service CIDR
    or a selector of the apiserver pods allow nothing.

Lab (tests/services/svclab.py): pods x/a, x/b, y/a on node-1; hostNetwork pods
kube-system/agent-node-1 (node-1's address 172.31.0.2) and kube-system/agent-node-2 (node-2,
172.31.0.3), labelled app=node-agent, serving 9100 in their node's namespace; a kubelet-like
server on node-1 port 10250; hostNetwork API servers on both nodes (6443) behind the Services
default/kubernetes (10.96.0.1 -> node-1) and default/apiserver-2 (10.96.0.2 -> node-2),
kube-proxy in its nftables shape on both nodes.

    node_traffic_test.py --enforce PATH
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svclab  # noqa: E402
from svclab import ADDRESSES, Flow, Service, ServicePort, pod, policy, namespace  # noqa: E402

OBJECTS = [
    namespace("x", {"ns": "x"}),
    namespace("y", {"ns": "y"}),
    namespace("kube-system"),
    pod("x", "a", "10.244.1.17", "fd00:10:244:1::11", {"app": "client"}),
    pod("x", "b", "10.244.1.18", "fd00:10:244:1::12", {"app": "other"}),
    pod("y", "a", "10.244.1.33", "fd00:10:244:1::21", {"app": "web"}),
    pod("kube-system", "agent-node-1", ADDRESSES["node-1"]["v4"], ADDRESSES["node-1"]["v6"],
        {"app": "node-agent"}, [("metrics", 9100, "TCP")], node="node-1", host_network=True),
    pod("kube-system", "agent-node-2", ADDRESSES["node-2"]["v4"], ADDRESSES["node-2"]["v6"],
        {"app": "node-agent"}, [("metrics", 9100, "TCP")], node="node-2", host_network=True),
    pod("kube-system", "kube-apiserver-node-1", ADDRESSES["node-1"]["v4"],
        ADDRESSES["node-1"]["v6"], {"component": "kube-apiserver"}, [("https", 6443, "TCP")],
        node="node-1", host_network=True),
    pod("kube-system", "kube-apiserver-node-2", ADDRESSES["node-2"]["v4"],
        ADDRESSES["node-2"]["v6"], {"component": "kube-apiserver"}, [("https", 6443, "TCP")],
        node="node-2", host_network=True),
]
# The API server behind the `kubernetes` Service: hostNetwork endpoints, Service port 443 ->
# 6443. One Service per apiserver, so each connection's backend is known.
SERVICES = [
    Service("default", "kubernetes", {"v4": "10.96.0.1", "v6": "fd00:10:96::1"},
            [ServicePort("https", "TCP", 443, "https")], ["kube-system/kube-apiserver-node-1"]),
    Service("default", "apiserver-2", {"v4": "10.96.0.2", "v6": "fd00:10:96::2"},
            [ServicePort("https", "TCP", 443, "https")], ["kube-system/kube-apiserver-node-2"]),
]
APISERVERS = [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
    "component": "kube-apiserver"}}}]

ALL = {}
CLIENT = {"matchLabels": {"app": "client"}}
AGENTS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"app": "node-agent"}}}]


def node_blocks(name):
    return [{"ipBlock": {"cidr": "%s/32" % ADDRESSES[name]["v4"]}},
            {"ipBlock": {"cidr": "%s/128" % ADDRESSES[name]["v6"]}}]


def steps():
    """(description, policies, flows, table check: list of addresses absent from the table)."""
    deny_in = [policy("x", "deny-ingress", ALL, types=["Ingress"]),
               policy("y", "deny-ingress", ALL, types=["Ingress"])]
    deny_eg_client = [policy("x", "client-deny-egress", CLIENT, types=["Egress"])]
    return [
        ("default-deny ingress in x and y: node-1 (kubelet) still reaches every pod", deny_in, [
            Flow("node-1", "x/a", "TCP", 80, True, "kubelet probe"),
            Flow("node-1", "y/a", "TCP", 80, True, "kubelet probe"),
            Flow("node-1", "x/b", "UDP", 81, True, "node traffic, UDP"),
            Flow("x/b", "x/a", "TCP", 80, False, "the deny is in force"),
            Flow("node-2", "y/a", "TCP", 80, False, "another node is not the pod's node"),
            Flow("ext-a", "y/a", "TCP", 80, False, "outside"),
        ], []),
        ("default-deny egress of x/a: pod -> node is judged by the pod's egress (input hook)",
         deny_eg_client, [
             Flow("x/a", "node-1", "TCP", 10250, False, "node address, input hook"),
             Flow("x/a", "node-1/cni0", "TCP", 10250, False, "gateway address, input hook"),
             Flow("x/a", "node-1", "UDP", 9100, False, "input hook, UDP"),
             Flow("x/a", "node-2", "TCP", 9100, False, "another node, forward hook"),
             Flow("x/b", "node-1", "TCP", 10250, True, "not isolated"),
             Flow("x/b", "node-2", "TCP", 9100, True, "not isolated"),
         ], []),
        ("egress of x/a allows ipBlock node-1/32 TCP 10250 only",
         deny_eg_client + [policy("x", "client-to-kubelet", CLIENT, types=["Egress"], egress=[
             {"to": node_blocks("node-1"), "ports": [{"protocol": "TCP", "port": 10250}]}])], [
             Flow("x/a", "node-1", "TCP", 10250, True, "allowed address and port"),
             Flow("x/a", "node-1", "TCP", 9100, False, "other port"),
             Flow("x/a", "node-1/cni0", "TCP", 10250, False, "another address of the node"),
             Flow("x/a", "node-2", "TCP", 10250, False, "another node"),
         ], []),
        ("a policy selecting the hostNetwork agents (deny all both ways) isolates nothing",
         [policy("kube-system", "agents-deny-all", {"matchLabels": {"app": "node-agent"}},
                 types=["Ingress", "Egress"])], [
             Flow("x/b", "node-1", "TCP", 9100, True, "agent-node-1 is not a subject"),
             Flow("x/b", "node-2", "TCP", 9100, True, "agent-node-2 is not a subject"),
             Flow("ext-a", "node-1", "TCP", 9100, True, "no ingress on the node"),
             Flow("node-1", "y/a", "TCP", 80, True, "agent-node-1's egress"),
             Flow("node-2", "y/a", "TCP", 80, True, "agent-node-2's egress"),
         ], ["node-1", "node-2"]),
        ("selectors never match hostNetwork pods: y/a ingress and x/a egress naming the agents "
         "by label allow nothing",
         [policy("y", "from-agents", ALL, ingress=[{"from": AGENTS}]),
          policy("x", "client-to-agents", CLIENT, types=["Egress"], egress=[{"to": AGENTS}])], [
             Flow("node-2", "y/a", "TCP", 80, False, "agent-node-2 is not matched by labels"),
             Flow("node-1", "y/a", "TCP", 80, True, "its own node: kubelet exemption"),
             Flow("x/a", "node-2", "TCP", 9100, False, "agent-node-2 is not matched by labels"),
             Flow("x/a", "node-1", "TCP", 9100, False, "agent-node-1 is not matched by labels"),
         ], ["node-1", "node-2"]),
        ("as a peer a hostNetwork pod is its node's address: ipBlock node-2/32 matches "
         "agent-node-2",
         [policy("y", "from-node-2", ALL, ingress=[{"from": node_blocks("node-2")}]),
          policy("x", "client-to-node-2", CLIENT, types=["Egress"], egress=[
              {"to": node_blocks("node-2"), "ports": [{"protocol": "TCP", "port": 9100}]}])], [
             Flow("node-2", "y/a", "TCP", 80, True, "node-2's address is in the block"),
             Flow("ext-a", "y/a", "TCP", 80, False, "outside the block"),
             Flow("x/b", "y/a", "TCP", 80, False, "outside the block"),
             Flow("x/a", "node-2", "TCP", 9100, True, "agent-node-2 by address"),
             Flow("x/a", "node-1", "TCP", 9100, False, "agent-node-1 is not node-2"),
         ], []),
        ("the kubernetes Service (443 -> hostNetwork apiservers on 6443): x/a egress allows "
         "ipBlock node-1/32 TCP 6443",
         deny_eg_client + [policy("x", "client-to-apiserver", CLIENT, types=["Egress"], egress=[
             {"to": node_blocks("node-1"), "ports": [{"protocol": "TCP", "port": 6443}]}])], [
             Flow("x/a", "svc:default/kubernetes", "TCP", 443, True,
                  "DNAT to node-1:6443, judged in input"),
             Flow("x/a", "svc:default/apiserver-2", "TCP", 443, False,
                  "DNAT to node-2:6443, judged in forward"),
             Flow("x/b", "svc:default/kubernetes", "TCP", 443, True, "not isolated"),
             Flow("x/b", "svc:default/apiserver-2", "TCP", 443, True, "not isolated"),
         ], []),
        ("x/a egress allows the nodes on TCP 443, the Service port: not the target port",
         deny_eg_client + [policy("x", "client-to-443", CLIENT, types=["Egress"], egress=[
             {"to": node_blocks("node-1") + node_blocks("node-2"),
              "ports": [{"protocol": "TCP", "port": 443}]}])], [
             Flow("x/a", "svc:default/kubernetes", "TCP", 443, False, "backend port is 6443"),
             Flow("x/a", "svc:default/apiserver-2", "TCP", 443, False, "backend port is 6443"),
         ], []),
        ("x/a egress allows the Service CIDR, and the apiserver pods by label: neither matches",
         deny_eg_client + [policy("x", "client-to-svc-cidr", CLIENT, types=["Egress"], egress=[
             {"to": [{"ipBlock": {"cidr": svclab.SERVICE_CIDR["v4"]}},
                     {"ipBlock": {"cidr": svclab.SERVICE_CIDR["v6"]}}] + APISERVERS}])], [
             Flow("x/a", "svc:default/kubernetes", "TCP", 443, False,
                  "destination is node-1, a hostNetwork pod"),
             Flow("x/a", "svc:default/apiserver-2", "TCP", 443, False,
                  "destination is node-2, a hostNetwork pod"),
         ], []),
    ]


def main():
    def run(args, enforce_bin, checker):
        with svclab.ServiceLab(OBJECTS) as slab:
            slab.start_server("node-1", [10250, 9100])  # kubelet, agent-node-1 (hostNetwork)
            slab.start_server("node-2", [10250, 9100])  # agent-node-2 (hostNetwork)
            slab.start_server("node-1", [6443])  # kube-apiserver-node-1 (hostNetwork)
            slab.start_server("node-2", [6443])  # kube-apiserver-node-2 (hostNetwork)
            for node in ("node-1", "node-2"):
                svclab.KubeProxy("nftables", SERVICES, OBJECTS, node).install(slab.netns[node])
            enforcer = svclab.Enforcer(slab.netns["node-1"], enforce_bin)
            for i, (desc, policies, flows, absent) in enumerate(steps()):
                print("step %d: %s" % (i + 1, desc))
                enforcer.apply(OBJECTS + policies, "step%d" % (i + 1))
                slab.flush_conntrack()
                failed = len(checker.failures)
                svclab.run_flows(slab, flows, checker, services=SERVICES)
                table = slab.nft_list()
                for name in absent:
                    for fam in svclab.FAMILIES:
                        a = ADDRESSES[name][fam]
                        checker.check(a not in table, "no element of inet netpol names %s (%s)" %
                                      (a, name))
                checker.step_done()
                if len(checker.failures) > failed:
                    print("--- state %s\n--- inet netpol:\n%s" % (enforcer.last_path, table))

    return svclab.enforce_main(__doc__, "node_traffic_test", run)


if __name__ == "__main__":
    sys.exit(main())
