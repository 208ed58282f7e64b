#!/usr/bin/python3
"""The path IPVS gives a Service connection, simulated on the real kernel (this kernel has no
IPVS), IPv4 and IPv6: a packet with a pod's source address leaving the node through output and
postrouting is judged as that pod's egress on the real backend (netpol's `output` chain) and as
the backend's ingress (netpol's `postrouting` chain), while the node's own packets stay allowed.

What IPVS does (kube-proxy --proxy-mode=ipvs): pod x/a connects to a ClusterIP bound to the
node's kube-ipvs0; the packet enters `input`, IPVS takes it in LOCAL_IN at priorities 98/99,
rewrites the destination to a backend and re-sends it through LOCAL_OUT (output) and
postrouting, with no local socket and x/a's source address.

What is simulated here: the second half. A process in node-1's namespace sends UDP datagrams with
x/a's address as the source (IP_FREEBIND + IP_TRANSPARENT) straight to the backend's address,
so the packet takes output -> postrouting with a pod source, as IPVS's re-sent packet does; a
receiver in the backend reports what arrived. What is NOT simulated: IPVS itself (the LOCAL_IN
takeover, its scheduling, its conntrack updates, kube-proxy's ipset/iptables masquerade rules);
and the sender has a socket, which real IPVS traffic has not (netpol's postrouting exempts only
packets that have a socket AND a node source address, so both are judged). The test checks from
the listing that `input` runs after IPVS's LOCAL_IN hooks (priority > 99), so pod -> Service
address is never judged as pod -> node.

Lab (tests/services/svclab.py, node-1 only): x/a (app=client) and y/b (app=web) on node-1;
receivers on UDP 9125 in y/b and in x/a.

    ipvs_path_test.py --enforce PATH
"""

import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svclab  # noqa: E402
from svclab import ADDRESSES, SERVICE_CIDR, lab, namespace, pod, policy  # noqa: E402

OUTPATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "outpath.py")
PORT = 9125
OBJECTS = [
    namespace("x", {"ns": "x"}),
    namespace("y", {"ns": "y"}),
    pod("x", "a", "10.244.1.17", "fd00:10:244:1::11", {"app": "client"}),
    pod("y", "b", "10.244.1.34", "fd00:10:244:1::22", {"app": "web"},
        [("http", 8080, "TCP"), ("stats", 8125, "UDP")]),
]
CLIENT = {"matchLabels": {"app": "client"}}
WEB = {"matchLabels": {"app": "web"}}
UDP_PORT = [{"protocol": "UDP", "port": PORT}]

# name -> (source: a pod key or None for the node's own address, destination pod key)
SENDS = {
    "ipvs a->b": ("x/a", "y/b"),
    "ipvs a->a (hairpin)": ("x/a", "x/a"),
    "node->b (probe)": (None, "y/b"),
}


def steps():
    """(description, policies, {send name: arrives})."""
    all_ok = {n: True for n in SENDS}
    return [
        ("no policies", [], all_ok),
        ("y/b ingress denied: the re-sent packet is judged as x/a -> y/b ingress",
         [policy("y", "deny", WEB, ingress=[], types=["Ingress"])],
         dict(all_ok, **{"ipvs a->b": False})),
        ("y/b ingress from x's client pods on 9125/UDP",
         [policy("y", "from-a", WEB, ingress=[{"from": [{
             "namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": CLIENT}],
             "ports": UDP_PORT}])],
         all_ok),
        ("y/b ingress only from node-1's addresses: a pod source is not the node",
         [policy("y", "from-node", WEB, ingress=[{"from": [
             {"ipBlock": {"cidr": "%s/32" % ADDRESSES["node-1/cni0"]["v4"]}},
             {"ipBlock": {"cidr": "%s/128" % ADDRESSES["node-1/cni0"]["v6"]}}]}])],
         dict(all_ok, **{"ipvs a->b": False})),
        ("x/a egress denied: judged in output on the real backend; a pod still reaches itself",
         [policy("x", "deny", CLIENT, egress=[], types=["Ingress", "Egress"])],
         dict(all_ok, **{"ipvs a->b": False})),
        ("x/a egress to y's web pods on 9125/UDP",
         [policy("x", "to-b", CLIENT, egress=[{"to": [{
             "namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": WEB}],
             "ports": UDP_PORT}])],
         all_ok),
        ("x/a egress only to the Service CIDR: the backend's address is what is judged",
         [policy("x", "to-services", CLIENT, egress=[{"to": [
             {"ipBlock": {"cidr": SERVICE_CIDR["v4"]}}, {"ipBlock": {"cidr": SERVICE_CIDR["v6"]}}],
             "ports": UDP_PORT}])],
         dict(all_ok, **{"ipvs a->b": False})),
    ]


class Receiver:
    def __init__(self, slab, where):
        self.where = where
        self.proc = slab.start(where, [OUTPATH, "recv", "--port", str(PORT)])

    def dump(self):
        self.proc.stdin.write("DUMP\n")
        self.proc.stdin.flush()
        line = lab._readline(self.proc.stdout, time.monotonic() + 10)
        if not line.startswith("SEEN "):
            raise lab.LabError("receiver in %s said %r" % (self.where, line))
        return json.loads(line[len("SEEN "):])


def send(slab, targets):
    cp = lab.run(["ip", "netns", "exec", slab.netns["node-1"], svclab.PYTHON, OUTPATH, "send"],
                 input=json.dumps(targets), timeout=60)
    return json.loads(cp.stdout)


def check_priorities(slab, checker):
    listing = slab.nft_list()
    m = re.search(r"hook input priority (-?\d+)", listing)
    checker.check(m is not None and int(m.group(1)) > 99,
                  "netpol's input chain runs after IPVS's LOCAL_IN hooks (98, 99): %s" % (
                      m.group(0) if m else "no input chain"))
    checker.check("hook output priority filter" in listing,
                  "netpol's output chain runs at priority filter")
    checker.check("hook postrouting priority srcnat + 1" in listing,
                  "netpol's postrouting chain runs after source NAT (srcnat + 1)")


def run(enforce_bin, checker):
    with svclab.ServiceLab(OBJECTS) as slab:
        # x/a receives its own address as the source in the hairpin case; IPv4 drops such
        # packets as martians unless accept_local is set (real IPVS masquerades hairpin
        # traffic, kube-proxy's KUBE-LOOP-BACK; the simulation sends it unmasqueraded).
        lab.run(["ip", "netns", "exec", slab.netns_of("x/a"), "sh", "-c",
                 "for f in /proc/sys/net/ipv4/conf/*/accept_local; do echo 1 > $f; done"])
        receivers = {k: Receiver(slab, k) for k in ("x/a", "y/b")}
        enforcer = svclab.Enforcer(slab.netns["node-1"], enforce_bin)
        for i, (desc, policies, want) in enumerate(steps()):
            print("step %d: %s" % (i + 1, desc))
            enforcer.apply(OBJECTS + policies, "step%d" % (i + 1))
            if i == 0:
                check_priorities(slab, checker)
            slab.flush_conntrack()
            for r in receivers.values():
                r.dump()  # forget anything earlier
            targets, expect = [], {}
            for fam in svclab.FAMILIES:
                for name, (src, dst) in SENDS.items():
                    ident = "s%d %s %s" % (i + 1, name, fam)
                    targets.append({"id": ident, "src": slab.addr(src, fam) if src else None,
                                    "dst": slab.addr(dst, fam), "port": PORT})
                    expect[ident] = (dst, want[name], slab.addr(src, fam) if src else None)
            errors = send(slab, targets)
            time.sleep(1.0)
            seen = {k: r.dump() for k, r in receivers.items()}
            for ident, (dst, arrives, src) in sorted(expect.items()):
                got = [s for (d, s) in seen[dst] if d == ident]
                err = errors.get(ident)
                # netfilter reports a drop of a locally sent packet to the sender as EPERM.
                dropped = err is not None and "Operation not permitted" in err
                ok = bool(got) == arrives and (err is None or (dropped and not arrives))
                if got and src:
                    # The receiver saw the pod's own address: nothing rewrote it on the way.
                    ok = ok and all(s == src for s in got)
                checker.check(ok, "%s: %s at %s, want %s%s" % (
                    ident, "arrived from %s" % got[0] if got else "did not arrive", dst,
                    "arrives" if arrives else "blocked",
                    "" if err is None else " (send error: %s)" % err))
            checker.step_done()
        if checker.failures:
            print("--- inet netpol:\n%s" % slab.nft_list())
            print("--- state: %s" % enforcer.last_path)


def main():
    return svclab.enforce_main(__doc__, "ipvs_path_test",
                               lambda args, enforce_bin, checker: run(enforce_bin, checker))


if __name__ == "__main__":
    sys.exit(main())
