#!/usr/bin/python3
"""Tests of the lab itself on the real kernel: pods reach each other over the bridge in both
families, an nft rule in the node namespace's forward hook really drops bridged pod traffic,
closed ports read as refused, and labs clean up after themselves (exit, SIGTERM, a killed
process's leftovers). Needs root; see lab.require_root for the skip policy.
"""

import os
import signal
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean when run by hand
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab  # noqa: E402

# A hand-written table in the node namespace: what the engine will do, reduced to three rules.
DROP_RULES = """
table inet netpol {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
    ip daddr 10.244.1.17 tcp dport 80 counter drop
    ip6 daddr fd00:10:244:1::11 tcp dport 80 counter drop
    ip saddr 10.244.1.34 udp dport 81 counter drop
    ip6 saddr fd00:10:244:1::22 udp dport 81 counter drop
  }
}
"""

TRACK_ONLY = """
table inet netpol {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
  }
}
"""


def expected(keys, blocked):
    return {(s, d): (s, d) not in blocked for s in keys for d in keys}


def observed(m):
    return {cell: r.ok for cell, r in m.items()}


class LabTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = lab.Lab(lab.default_model()).up()
        cls.keys = cls.lab.pod_keys()

    @classmethod
    def tearDownClass(cls):
        cls.lab.down()

    def setUp(self):
        self.lab.node_exec(["nft", "flush", "ruleset"])
        self.lab.flush_conntrack()

    def assertMatrix(self, want, got, what):
        if want != got:
            bad = {c for c in want if want[c] != got.get(c)}
            self.fail("%s\nexpected:\n%s\nobserved:\n%s" % (
                what, lab.render_matrix(self.keys, want), lab.render_matrix(self.keys, got, mark=bad)))

    def test_default_model_is_the_conformance_model(self):
        path = os.path.join(os.path.dirname(lab.HERE), "conformance", "model.yaml")
        if not os.path.exists(path):
            lab.skip_test_or_fail(self, "no tests/conformance/model.yaml")
        got = lab.load_model(path)
        want = lab.default_model()
        self.assertEqual([(p.key, p.ipv4, p.ipv6) for p in got.pods],
                         [(p.key, p.ipv4, p.ipv6) for p in want.pods])
        self.assertEqual((got.node, got.v4_gateway, got.v6_gateway),
                         (want.node, want.v4_gateway, want.v6_gateway))

    def test_br_netfilter_is_on_in_the_node_namespace(self):
        for k in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
            self.assertEqual(self.lab.node_exec(["sysctl", "-n", k]).stdout.strip(), "1")

    def test_everything_reachable_without_a_table(self):
        ms = self.lab.matrices([("TCP", 80), ("UDP", 81)])
        for (fam, proto, port), m in ms.items():
            self.assertMatrix(expected(self.keys, set()), observed(m),
                              "%s %s/%d without a table" % (fam, proto, port))

    def test_forward_hook_drops_bridged_pod_traffic(self):
        self.lab.nft(DROP_RULES)
        ms = self.lab.matrices([("TCP", 80), ("UDP", 81), ("TCP", 81)])
        tcp80 = {(s, "x/a") for s in self.keys if s != "x/a"}  # x/a to itself never leaves it
        udp81 = {("y/b", d) for d in self.keys if d != "y/b"}
        for fam in lab.FAMILIES:
            self.assertMatrix(expected(self.keys, tcp80), observed(ms[(fam, "TCP", 80)]),
                              "%s TCP/80 with a drop rule for x/a" % fam)
            self.assertMatrix(expected(self.keys, udp81), observed(ms[(fam, "UDP", 81)]),
                              "%s UDP/81 with a drop rule for y/b" % fam)
            self.assertMatrix(expected(self.keys, set()), observed(ms[(fam, "TCP", 81)]),
                              "%s TCP/81 untouched" % fam)
            for cell in tcp80:
                self.assertEqual(ms[(fam, "TCP", 80)][cell].why, "timeout")
        listing = self.lab.nft_list()
        self.assertNotIn("packets 0 ", listing, listing)

    def test_closed_port_reads_as_refused(self):
        res = self.lab.probe("x/a", [
            {"id": "tcp", "ip": "10.244.1.18", "proto": "TCP", "port": 9},
            {"id": "udp", "ip": "fd00:10:244:1::12", "proto": "UDP", "port": 9},
            {"id": "open", "ip": "fd00:10:244:1::12", "proto": "TCP", "port": 81},
        ])
        self.assertEqual((res["tcp"].ok, res["tcp"].why), (False, "refused"))
        self.assertEqual((res["udp"].ok, res["udp"].why), (False, "refused"))
        self.assertEqual((res["open"].ok, res["open"].why), (True, "echo"))

    def test_connection_survives_a_new_drop_rule_behind_established(self):
        # Conntrack starts tracking in a namespace only once a rule needs it; a connection opened
        # before that is picked up mid-stream as "new". Track from the start, as the engine's
        # table does.
        self.lab.nft(TRACK_ONLY)
        conns = [self.lab.connect("x/a", "y/b", 80, fam) for fam in lab.FAMILIES]
        for c in conns:
            self.assertTrue(c.roundtrip().ok, c)
        # New connections to y/b are dropped; the open ones pass the established rule.
        self.lab.node_exec(["nft", "add", "rule", "inet", "netpol", "forward", "tcp", "dport",
                            "80", "drop"])
        for c in conns:
            self.assertTrue(c.roundtrip().ok, c)
        m = self.lab.matrix("TCP", 80, "v6", sources=["x/a"], dests=["y/b"])
        self.assertFalse(m[("x/a", "y/b")].ok)
        # A drop ahead of the established rule stops them too: roundtrip can see a block.
        self.lab.node_exec(["nft", "insert", "rule", "inet", "netpol", "forward", "tcp", "dport",
                            "80", "drop"])
        for c in conns:
            r = c.roundtrip(0.5)
            self.assertEqual((r.ok, r.why), (False, "timeout"), c)
            c.close()

    def test_node_reaches_pods(self):
        self.lab.nft(DROP_RULES)
        m = self.lab.matrix("TCP", 80, "v4", sources=["node"])
        self.assertTrue(all(r.ok for r in m.values()), m)  # node traffic takes the output hook


class CleanupTest(unittest.TestCase):
    CHILD = """
import sys, time
sys.path.insert(0, %r)
import lab
l = lab.Lab(lab.default_model(), prefix=sys.argv[1]).up()
print("UP", flush=True)
time.sleep(60)
"""

    def start_child(self, prefix):
        p = subprocess.Popen([lab.PYTHON, "-c", self.CHILD % os.path.dirname(lab.__file__),
                              prefix], stdout=subprocess.PIPE, text=True)
        self.addCleanup(p.stdout.close)
        self.assertEqual(p.stdout.readline().strip(), "UP")
        self.assertTrue(any(n.startswith(prefix) for n in lab.netns_list()))
        return p

    def leftovers(self, prefix):
        return [n for n in lab.netns_list() if n.startswith(prefix)]

    def test_sigterm_removes_the_lab(self):
        prefix = lab.new_prefix() + "t"
        p = self.start_child(prefix)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        self.assertEqual(p.returncode, -signal.SIGTERM)
        self.assertEqual(self.leftovers(prefix), [])

    def test_sigint_removes_the_lab(self):
        prefix = lab.new_prefix() + "i"
        p = self.start_child(prefix)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        self.assertEqual(self.leftovers(prefix), [])

    def test_cleanup_prefix_removes_a_killed_labs_leftovers(self):
        prefix = lab.new_prefix() + "k"
        p = self.start_child(prefix)
        p.kill()
        p.wait(timeout=30)
        self.assertNotEqual(self.leftovers(prefix), [])
        removed = lab.cleanup_prefix(prefix)
        self.assertEqual(len(removed), 10)
        self.assertEqual(self.leftovers(prefix), [])

    def test_two_labs_coexist(self):
        with lab.Lab() as a, lab.Lab() as b:
            self.assertNotEqual(a.prefix, b.prefix)
            a.nft(DROP_RULES)
            ra = a.matrix("TCP", 80, "v4", sources=["y/a"])[("y/a", "x/a")]
            rb = b.matrix("TCP", 80, "v4", sources=["y/a"])[("y/a", "x/a")]
            self.assertEqual((ra.ok, rb.ok), (False, True))
        self.assertEqual(self.leftovers(a.prefix), [])
        self.assertEqual(self.leftovers(b.prefix), [])


if __name__ == "__main__":
    lab.require_root("tests/lab/lab_test.py")
    unittest.main(verbosity=2)
