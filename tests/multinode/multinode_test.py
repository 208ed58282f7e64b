#!/usr/bin/python3
"""Many nodes, one etcd: netpol-agents on 2-3 lab nodes (multilab.py) sharing a real etcd.

Scenarios (all by default; --scenario picks some):

  conformance   every case of tests/conformance/cases (or --case ...), IPv4 and IPv6, with the
                9 pods spread over the nodes. Each step is written through one agent (the
                writer rotates over the nodes: writes through any agent), the runner waits until
                every node's kernel enforces etcd's revision, then probes the full matrix:
                egress is enforced on the source's node, ingress on the destination's.
  locality      each node enforces exactly the pods placed on it (status, explain), yet knows
                every pod as a peer.
  etcd-down     kill etcd: enforcement is unchanged on every node and writes through every
                agent fail with UNAVAILABLE naming etcd; restart it: a change written afterwards
                reaches every node.
  agent-restart stop one agent, change the policy elsewhere: its node keeps enforcing the old
                rules; restart it while etcd is down and its table deleted: it rebuilds the
                table from its state cache and serves it marked stale; start etcd: it lists
                and converges.
  compaction    cut one node off etcd (a drop rule in its namespace), write and compact etcd
                past that node's watch, heal: the node re-lists and converges.
  conflict      two agents apply conflicting versions of the same objects at the same time,
                several rounds: the result is one whole version, identical on every node.
  node-status   `netpolctl wait --for=enforced` (-f FILE, --generation G) on another node
                than the writer returns only once that node's kernel holds the change (read
                right after it returns); `status --all-nodes` lists every node current and
                exits 0, shows a killed agent as stale (its etcd lease expires after the lab's
                --node-status-ttl) and exits 1, and exits 0 again once it is back.

Output: one PASS/FAIL line per case or scenario, details under a failure, and a closing line
`N passed, N failed`.

    multinode_test.py --agent PATH --netpolctl PATH [--nodes 3] [--scenario NAME ...]
                      [--case NAME ...] [--family ipv4|ipv6]
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "datapath"))
sys.path.insert(0, os.path.join(ROOT, "tests", "conformance"))

import multilab  # noqa: E402
from multilab import lab, LabError  # noqa: E402
import dplib  # noqa: E402
import cases as caselib  # noqa: E402
import conformance_test as single  # noqa: E402  (tests/datapath: expected_table, same_objects)

SCENARIOS = ("conformance", "locality", "etcd-down", "agent-restart", "compaction", "conflict",
             "node-status")


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


class Runner:
    def __init__(self, the_lab, model):
        self.lab = the_lab
        self.model = model
        self.writes = 0

    def writer(self):
        """The node the next write goes through (round robin)."""
        node = self.lab.nodes[self.writes % len(self.lab.nodes)]
        self.writes += 1
        return node

    def apply(self, text, node=None):
        node = node or self.writer()
        self.lab.netpolctl(node, ["apply", "-f", "-"], input=self.lab.place(text))
        return node

    def delete(self, text, node=None):
        node = node or self.writer()
        self.lab.netpolctl(node, ["delete", "-f", "-"], input=text)
        return node

    def reset(self):
        """Back to the model's objects alone: everything under the prefix removed (by hand, as
        etcdctl would), the model applied through an agent, every node converged."""
        self.lab.etcdctl(["del", "--prefix", multilab.PREFIX])
        self.apply(self.model.objects_yaml)
        self.lab.wait_converged()

    def probe(self, want):
        """Probes what `want` ({(fam, proto, port): {cell: bool}}) covers; returns mismatches."""
        probes = sorted({(p, n) for (_, p, n) in want})
        fams = sorted({k[0] for k in want})
        got = self.lab.matrices(probes, families=fams)
        return got, dplib.confirm(self.lab, dplib.diff(want, got))

    def report(self, want, got, bad, out):
        dplib.report_mismatches(self.lab, want, got, bad, out=out)


# ------------------------------------------------------------------------------ conformance

def run_case_group(runner, model, group, out):
    first = group[0]
    verdict = {c.family: None for c in group}
    probed = {c.family: 0 for c in group}
    for i, step in enumerate(first.steps):
        if step.deletes:
            runner.delete(step.delete_yaml)
        if step.apply_yaml.strip():
            runner.apply(step.apply_yaml)
        revision = runner.lab.wait_converged()
        runner.lab.flush_conntrack()
        live = [c for c in group if verdict[c.family] is None]
        want = {}
        for c in live:
            want.update(single.expected_table(model, c.steps[i], c.family))
        if not want:
            continue
        got, bad = runner.probe(want)
        for c in live:
            fam = single.LAB_FAMILY[c.family]
            probed[c.family] += sum(1 for k in want if k[0] == fam)
            mine = [m for m in bad if m[0] == fam]
            if not mine:
                continue
            verdict[c.family] = "FAIL"
            print("  %s step %d (etcd revision %d): %d cells differ" % (c.family, i, revision,
                                                                       len(mine)), file=out)
            runner.report({k: v for k, v in want.items() if k[0] == fam}, got, mine, out)
        if all(v == "FAIL" for v in verdict.values()):
            break
    return {f: v or ("PASS" if probed[f] else "SKIP") for f, v in verdict.items()}


def scenario_conformance(runner, model, args, out):
    families = args.family or list(caselib.FAMILIES)
    files = caselib.case_files(args.cases)
    if args.case:
        files = [f for f in files if os.path.basename(f)[:-len(".yaml")] in set(args.case)]
    loaded = [caselib.load_case(model, f, fam) for f in files for fam in families]
    groups = []
    for case in loaded:
        prev = groups[-1] if groups else None
        if prev and prev[0].file == case.file and single.same_objects(prev[0], case):
            prev.append(case)
        else:
            groups.append([case])
    results = []
    for group in groups:
        ts = time.monotonic()
        buf = Collect()
        try:
            runner.reset()
            verdicts = run_case_group(runner, model, group, buf)
        except (LabError, Failure) as e:
            verdicts = {c.family: "FAIL" for c in group}
            buf.write("  %s\n" % e)
        for c in group:
            results.append(("conformance %s %s" % (c.name, c.family), verdicts[c.family],
                            time.monotonic() - ts, buf.text()))
            print("%s conformance %s %s (%.1fs)" % (verdicts[c.family], c.name, c.family,
                                                   time.monotonic() - ts))
            sys.stdout.write(buf.text())
            sys.stdout.flush()
    return results


class Collect:
    def __init__(self):
        self.parts = []

    def write(self, s):
        self.parts.append(s)

    def text(self):
        return "".join(self.parts)


# ------------------------------------------------------------------------------ scenarios

# x's pods accept ingress only from namespace y (all ports); every other namespace is open.
POLICY_FROM_Y = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-y, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]
"""

POLICY_FROM_Z = POLICY_FROM_Y.replace('"y"}}}]', '"z"}}}]')


def expect_ingress_only_from(model, sources_ns, fams=("v4", "v6")):
    """Verdict table for TCP/80: x's pods reachable from the namespaces in `sources_ns` (and
    from themselves), everything else open."""
    cells = {}
    for s in model.pods:
        for d in model.pods:
            if d.startswith("x/"):
                cells[(s, d)] = s == d or s.split("/")[0] in sources_ns
            else:
                cells[(s, d)] = True
    return {(f, "TCP", 80): dict(cells) for f in fams}


def probe_expect(runner, want, what):
    got, bad = runner.probe(want)
    if bad:
        buf = Collect()
        runner.report(want, got, bad, buf)
        raise Failure("%s: %d cells differ\n%s" % (what, len(bad), buf.text()))


def scenario_etcd_down(runner, model, args, out):
    the_lab = runner.lab
    runner.reset()
    runner.apply(POLICY_FROM_Y)
    before = the_lab.wait_converged()
    the_lab.flush_conntrack()
    want = expect_ingress_only_from(model, {"y"})
    probe_expect(runner, want, "with etcd up")

    the_lab.kill_etcd()
    # Every agent notices (its watch ends) and keeps its rules.
    deadline = time.monotonic() + 30
    for node in the_lab.nodes:
        while "watch lost" not in the_lab.tail(the_lab.agent_log(node), 200):
            check(time.monotonic() < deadline, "%s never noticed etcd was gone" % node)
            time.sleep(0.1)
    the_lab.flush_conntrack()
    probe_expect(runner, want, "etcd down: enforcement must not change")
    for node in the_lab.nodes:
        st = the_lab.status(node)
        check(st["applied"] == before and st["serving"],
              "%s with etcd down: want serving at revision %d, got %s" % (node, before, st["text"]))
        cp = the_lab.netpolctl(node, ["apply", "-f", "-"], input=the_lab.place(POLICY_FROM_Z),
                               check=False)
        msg = cp.stdout + cp.stderr
        check(cp.returncode != 0, "%s accepted a write with etcd down: %s" % (node, msg))
        check("etcd unavailable, the change was not stored" in msg,
              "%s: the refusal does not say etcd is unavailable: %s" % (node, msg))
        print("  %s refused the write: %s" % (node, msg.strip().splitlines()[0]), file=out)

    the_lab.start_etcd()
    # A change written afterwards (through the last node) reaches every node.
    deadline = time.monotonic() + 60
    while True:
        cp = the_lab.netpolctl(the_lab.nodes[-1], ["apply", "-f", "-"],
                               input=the_lab.place(POLICY_FROM_Z), check=False)
        if cp.returncode == 0:
            break
        check(time.monotonic() < deadline, "writes still fail after etcd restarted: %s" %
              (cp.stdout + cp.stderr))
        time.sleep(0.5)
    after = the_lab.wait_converged()
    check(after > before, "revision did not move: %d -> %d" % (before, after))
    the_lab.flush_conntrack()
    probe_expect(runner, expect_ingress_only_from(model, {"z"}), "after etcd restarted")
    print("  revisions: %d before, %d after the restart" % (before, after), file=out)


def scenario_locality(runner, model, args, out):
    the_lab = runner.lab
    runner.reset()
    runner.apply(POLICY_FROM_Y)
    the_lab.wait_converged()
    for node in the_lab.nodes:
        mine = sorted(p for p, n in the_lab.placement.items() if n == node)
        st = the_lab.status(node)["text"]
        check("%d pods (%d local)" % (len(model.pods), len(mine)) in st,
              "%s: want %d pods, %d local:\n%s" % (node, len(model.pods), len(mine), st))
        for pod in (p for p in model.pods if p.startswith("x/")):
            text = the_lab.netpolctl(node, ["explain", "pod", pod]).stdout
            here = the_lab.placement[pod] == node
            enforced = re.search(r"^Enforced here:\s+yes", text, re.M) is not None
            chains = re.search(r"^Chains:\s+(\S+)", text, re.M)
            has_chains = chains is not None and chains.group(1) != "<none>"
            check(enforced == here and has_chains == here,
                  "%s: explain %s (placed on %s): want enforced=%s, chains=%s:\n%s" % (
                      node, pod, the_lab.placement[pod], here, here, text))
        print("  %s enforces %s" % (node, " ".join(mine)), file=out)


def scenario_agent_restart(runner, model, args, out):
    the_lab = runner.lab
    runner.reset()
    runner.apply(POLICY_FROM_Y, node=the_lab.nodes[0])
    the_lab.wait_converged()
    node = the_lab.nodes[-1]
    x_there = [p for p in model.pods if p.startswith("x/") and the_lab.placement[p] == node]

    def only_from(ns):
        want = {}
        for fam in ("v4", "v6"):
            want[(fam, "TCP", 80)] = {("y/a", d): ns == "y" for d in x_there}
            want[(fam, "TCP", 80)].update({("z/a", d): ns == "z" for d in x_there})
        return want

    the_lab.stop_agent(node)
    runner.apply(POLICY_FROM_Z, node=the_lab.nodes[0])
    the_lab.wait_converged(nodes=the_lab.nodes[:-1])
    the_lab.flush_conntrack()
    probe_expect(runner, only_from("y"), "%s's agent stopped: its rules stay" % node)

    the_lab.kill_etcd()
    # The kernel loses the table too (as after a reboot): the agent must rebuild it from its
    # state cache in --state-dir, serve reads from it marked stale, and refuse writes.
    multilab.run(["ip", "netns", "exec", the_lab.node_ns[node], "nft", "delete", "table",
                  "inet", "netpol"])
    the_lab.start_agent(node)
    the_lab.wait_serving(timeout=60, nodes=[node])
    st = the_lab.status(node)
    check(re.search(r"^Stale:\s+yes", st["text"], re.M) is not None,
          "%s serving from its state cache does not say it is stale:\n%s" % (node, st["text"]))
    the_lab.flush_conntrack()
    probe_expect(runner, only_from("y"), "%s restarted with etcd down and no table: the cached "
                 "state is enforced" % node)
    cp = the_lab.netpolctl(node, ["get", "networkpolicies", "-n", "x"], check=False)
    check(cp.returncode == 0 and "state cache" in cp.stderr,
          "%s: get with etcd down does not say it answers from the state cache: %s" % (
              node, cp.stdout + cp.stderr))
    deadline = time.monotonic() + 20
    while "cannot list the prefix" not in the_lab.tail(the_lab.agent_log(node), 50):
        check(time.monotonic() < deadline, "%s does not say it cannot list etcd:\n%s" % (
            node, the_lab.tail(the_lab.agent_log(node))))
        time.sleep(0.2)
    probe_expect(runner, only_from("y"), "%s waiting for etcd: the cached state still "
                 "enforced" % node)

    the_lab.start_etcd()
    the_lab.wait_serving(timeout=60, nodes=[node])
    the_lab.wait_converged()
    the_lab.flush_conntrack()
    probe_expect(runner, expect_ingress_only_from(model, {"z"}), "after etcd came back")
    print("  %s kept y's rules while stopped, rebuilt them from its state cache with etcd down, "
          "then converged" % node, file=out)


PARTITION = """table inet nplab_partition {
  chain out { type filter hook output priority 0; ip daddr %s tcp dport %d drop; }
  chain in { type filter hook input priority 0; ip saddr %s tcp sport %d drop; }
}
""" % (multilab.ETCD_V4, multilab.ETCD_PORT, multilab.ETCD_V4, multilab.ETCD_PORT)


def scenario_compaction(runner, model, args, out):
    the_lab = runner.lab
    runner.reset()
    cut = the_lab.nodes[-1]
    others = the_lab.nodes[:-1]
    runner.apply(POLICY_FROM_Y, node=others[0])
    the_lab.wait_converged()
    log = the_lab.agent_log(cut)
    lost_before = the_lab.tail(log, 100000).count("watch lost")
    # Cut the node off etcd: our own table in the node's namespace, not the agent's.
    the_lab.exec_on(cut, ["nft", "-f", "-"], input=PARTITION)
    try:
        deadline = time.monotonic() + 30
        while the_lab.tail(log, 100000).count("watch lost") == lost_before:
            check(time.monotonic() < deadline, "%s never noticed it was cut off" % cut)
            time.sleep(0.1)
        # Meanwhile the others change things and etcd compacts its history.
        runner.apply(POLICY_FROM_Z, node=others[0])  # replaces from-y's rule: z, not y
        runner.apply(single_pod_with_label(model, "x/a", "cut", 0), node=others[-1])
        revision = the_lab.wait_converged(nodes=others)
        the_lab.etcdctl(["compact", str(revision)])
        st = the_lab.status(cut)
        check(st["applied"] < revision, "%s saw the changes while cut off" % cut)
        print("  %s cut off at revision %d; etcd compacted at %d" % (cut, st["applied"],
                                                                    revision), file=out)
        the_lab.flush_conntrack()
        # Still enforcing its last state: x's pods on the cut node admit y, not z.
        x_on_cut = [p for p in model.pods if p.startswith("x/") and the_lab.placement[p] == cut]
        want = {}
        for fam in ("v4", "v6"):
            want[(fam, "TCP", 80)] = {("y/a", d): True for d in x_on_cut}
            want[(fam, "TCP", 80)].update({("z/a", d): False for d in x_on_cut})
        probe_expect(runner, want, "cut-off node keeps its last state")
    finally:
        the_lab.exec_on(cut, ["nft", "delete", "table", "inet", "nplab_partition"], check=False)
    the_lab.wait_converged(timeout=90)
    check("compacted its history" in the_lab.tail(log, 100000),
          "%s converged without noticing the compaction:\n%s" % (cut, the_lab.tail(log)))
    the_lab.flush_conntrack()
    probe_expect(runner, expect_ingress_only_from(model, {"z"}), "after the re-list")


def scenario_conflict(runner, model, args, out):
    the_lab = runner.lab
    a, b = the_lab.nodes[0], the_lab.nodes[1]
    runner.reset()
    for rnd in range(4):
        # Each writer: its policy version and a label on pod x/a naming itself, in one request.
        def version(policy, who):
            return the_lab.place(policy + "---\n" + single_pod_with_label(model, "x/a", who, rnd))
        results = {}

        def write(node, text):
            results[node] = the_lab.netpolctl(node, ["apply", "-f", "-"], input=text,
                                              check=False)
        ta = threading.Thread(target=write, args=(a, version(POLICY_FROM_Y, "y")))
        tb = threading.Thread(target=write, args=(b, version(POLICY_FROM_Z, "z")))
        ta.start()
        tb.start()
        ta.join()
        tb.join()
        for node, cp in results.items():
            check(cp.returncode == 0, "round %d: write through %s failed: %s" % (
                rnd, node, cp.stdout + cp.stderr))
        the_lab.wait_converged()
        views = {}
        for node in the_lab.nodes:
            pol = the_lab.netpolctl(node, ["get", "networkpolicies", "from-y", "-n", "x", "-o",
                                           "yaml"]).stdout
            pod = the_lab.netpolctl(node, ["get", "pods", "a", "-n", "x", "-o", "yaml"]).stdout
            views[node] = (pol, pod)
        check(len(set(views.values())) == 1, "round %d: nodes disagree:\n%s" % (rnd, views))
        pol, pod = views[a]
        winner = "z" if 'ns: "z"' in pol or "ns: z" in pol else "y"
        check(("writer: %s%d" % (winner, rnd)) in pod,
              "round %d: half applied: the policy is %s's, pod x/a says:\n%s" % (rnd, winner, pod))
        the_lab.flush_conntrack()
        probe_expect(runner, expect_ingress_only_from(model, {winner}),
                     "round %d (%s won)" % (rnd, winner))
        print("  round %d: %s won, every node agrees" % (rnd, winner), file=out)


# ------------------------------------------------------------------------------ node status

WAIT_PROBE = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: wait-probe-%(i)d, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 198.51.100.%(i)d/32}}]
    ports: [{port: 80}]
"""


def all_nodes(the_lab, node):
    """(exit code, parsed JSON, text) of `status --all-nodes` through `node`."""
    js = the_lab.netpolctl(node, ["status", "--all-nodes", "-o", "json"], check=False,
                           timeout=20)
    text = the_lab.netpolctl(node, ["status", "--all-nodes"], check=False, timeout=20)
    try:
        parsed = json.loads(js.stdout)
    except ValueError:
        parsed = {}
    return js.returncode, parsed, text.stdout + text.stderr


def wait_all_nodes(the_lab, node, want_code, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        code, parsed, text = all_nodes(the_lab, node)
        if code == want_code:
            return parsed, text
        check(time.monotonic() < deadline, "status --all-nodes never exited %d (%s):\n%s" % (
            want_code, what, text))
        time.sleep(0.2)


def scenario_node_status(runner, model, args, out):
    the_lab = runner.lab
    runner.reset()
    first, last = the_lab.nodes[0], the_lab.nodes[-1]
    # A node hosting pods of namespace x (which the probe policy selects), other than the writer.
    x_nodes = sorted({the_lab.placement[p] for p in model.pods if p.startswith("x/")} -
                     {first})
    check(x_nodes, "no node other than %s hosts a pod of namespace x" % first)
    target = x_nodes[0]

    # 1. Every node live and current.
    parsed, text = wait_all_nodes(the_lab, first, 0, "every node up")
    names = sorted(n["nodeName"] for n in parsed.get("nodes", []))
    check(names == sorted(the_lab.nodes), "want nodes %s, got %s" % (the_lab.nodes, text))
    check(all(n.get("current") and not n.get("stale") for n in parsed["nodes"]),
          "a node is stale or not current:\n" + text)
    newest = int(parsed.get("newestGeneration", 0))
    check(newest >= the_lab.objects_revision(),
          "newest generation %d is older than etcd's newest object" % newest)
    print("  all current at generation %d:\n%s" % (newest, text), file=out)

    # 2. wait -f: written through the first node, waited for on another, whose kernel must hold
    #    the change the moment wait returns.
    for i in (1, 2):
        policy = WAIT_PROBE % {"i": i}
        address = "198.51.100.%d" % i
        check(address not in the_lab.nft_list(), "%s already in a table" % address)
        writer = threading.Thread(target=runner.apply, args=(policy, first))
        writer.start()
        cp = the_lab.netpolctl(target, ["wait", "--for=enforced", "-f", "-", "--timeout=60s"],
                               input=policy, check=False)
        kernel = the_lab.exec_on(target, ["nft", "list", "table", "inet", "netpol"]).stdout
        writer.join()
        check(cp.returncode == 0, "wait -f on %s exited %d: %s" % (target, cp.returncode,
                                                                  cp.stdout + cp.stderr))
        check(address in kernel, "wait -f on %s returned (%s) but its kernel lacks %s:\n%s" % (
            target, cp.stdout.strip(), address, kernel))
        print("  %s: %s" % (target, cp.stdout.strip()), file=out)

    # 3. wait --generation: the writer's generation after a change, waited for on the last node.
    runner.apply(WAIT_PROBE % {"i": 3}, node=first)
    gen = the_lab.status(first)["generation"]
    cp = the_lab.netpolctl(last, ["wait", "--for=enforced", "--generation", str(gen),
                                  "--timeout=60s"], check=False)
    st = the_lab.status(last)
    check(cp.returncode == 0, "wait --generation %d on %s exited %d: %s" % (
        gen, last, cp.returncode, cp.stdout + cp.stderr))
    check(st["applied"] >= gen, "wait --generation %d on %s returned, applied is %d" % (
        gen, last, st["applied"]))
    # A file whose objects are not stored: times out with exit 3, naming them.
    cp = the_lab.netpolctl(last, ["wait", "--for=enforced", "-f", "-", "--timeout=1s"],
                           input=WAIT_PROBE % {"i": 4}, check=False)
    check(cp.returncode == 3 and "x/wait-probe-4" in cp.stderr,
          "wait for objects never stored: want exit 3 naming them, got %d: %s" % (
              cp.returncode, cp.stdout + cp.stderr))

    # 4. Kill the last agent: it shows as stale once its lease expires; status exits 1.
    the_lab.stop_agent(last, sig=signal.SIGKILL)
    parsed, text = wait_all_nodes(the_lab, first, 1, "%s killed" % last)
    stale = {n["nodeName"]: bool(n.get("stale")) for n in parsed.get("nodes", [])}
    deadline = time.monotonic() + 30
    while not stale.get(last):
        check(time.monotonic() < deadline, "%s never shown stale:\n%s" % (last, text))
        time.sleep(0.2)
        code, parsed, text = all_nodes(the_lab, first)
        check(code == 1, "status --all-nodes exited %d with %s killed:\n%s" % (code, last, text))
        stale = {n["nodeName"]: bool(n.get("stale")) for n in parsed.get("nodes", [])}
    check(not any(v for k, v in stale.items() if k != last), "a live node is stale:\n" + text)
    check(re.search(r"^%s\s.*\syes\s*$" % re.escape(last), text, re.M),
          "the table does not show %s stale:\n%s" % (last, text))
    print("  %s killed:\n%s" % (last, text), file=out)

    # 5. Back: every node current again.
    the_lab.start_agent(last)
    the_lab.wait_serving(nodes=[last])
    parsed, text = wait_all_nodes(the_lab, first, 0, "%s restarted" % last)
    check(all(n.get("current") and not n.get("stale") for n in parsed["nodes"]),
          "a node is stale or not current:\n" + text)
    # The restarted node re-listed at etcd's revision, raised by the status records alone:
    # the others hold the same objects at their older generation and count as current.
    print("  %s back:\n%s" % (last, text), file=out)
    runner.delete("".join("---\n" + WAIT_PROBE % {"i": i} for i in (1, 2, 3)), node=first)


def single_pod_with_label(model, key, who, rnd):
    doc = model.documents[("Pod",) + tuple(key.split("/"))]
    return doc.replace('labels: {pod: "a"}', 'labels: {pod: "a", writer: "%s%d"}' % (who, rnd))


# ------------------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", help="netpol-agent binary (or $NETPOL_AGENT)")
    ap.add_argument("--netpolctl", help="netpolctl binary (or $NETPOL_CTL)")
    ap.add_argument("--nodes", type=int, default=3, choices=(2, 3))
    ap.add_argument("--scenario", action="append", choices=SCENARIOS)
    ap.add_argument("--cases", default=caselib.DEFAULT_CASES)
    ap.add_argument("--model", default=caselib.DEFAULT_MODEL)
    ap.add_argument("--case", action="append", help="conformance: only this case (repeatable)")
    ap.add_argument("--family", choices=caselib.FAMILIES, action="append")
    ap.add_argument("--keep-logs", action="store_true", help="print every agent's log at the end")
    args = ap.parse_args()

    lab.require_root("multinode_test.py")
    try:
        agent = dplib.find_tool(args.agent, "NETPOL_AGENT", "//agent:netpol-agent")
        ctl = dplib.find_tool(args.netpolctl, "NETPOL_CTL", "//cli:netpolctl")
        model = caselib.load_model(args.model)
        lab_model = lab.load_model(args.model)
    except (dplib.RunnerError, caselib.CaseError, LabError, OSError) as e:
        print("FAILED: %s" % e)
        return 1
    if not os.access(multilab.ETCD, os.X_OK):
        print("FAILED: %s is not installed" % multilab.ETCD)
        return 1
    # The model's objects, with the pods placed on their nodes (multilab.PLACEMENT).
    scenarios = args.scenario or list(SCENARIOS)
    results = []
    t0 = time.monotonic()
    # Serve every port a case probes, as the single-node runner does.
    ports = set()
    for f in caselib.case_files(args.cases):
        for pr in (p for st in caselib.load_case(model, f, "ipv4").steps for p in st.probes):
            ports.add(pr.port)
    with multilab.MultiLab(lab_model, agent, ctl, nodes=args.nodes,
                           extra_ports=sorted(ports)) as the_lab:
        try:
            the_lab.start_etcd()
            the_lab.start_agents()
        except LabError as e:
            print("FAILED: starting etcd and the agents: %s" % e)
            return 1
        print("lab %s: %s; etcd %s" % (the_lab.prefix, ", ".join(
            "%s: %s" % (n, " ".join(sorted(p for p, m in the_lab.placement.items() if m == n)))
            for n in the_lab.nodes), multilab.ETCD_ENDPOINT))
        runner = Runner(the_lab, model)
        for name in scenarios:
            if name == "conformance":
                results += scenario_conformance(runner, model, args, sys.stdout)
                continue
            ts = time.monotonic()
            buf = Collect()
            fn = {"locality": scenario_locality, "etcd-down": scenario_etcd_down,
                  "agent-restart": scenario_agent_restart, "compaction": scenario_compaction,
                  "conflict": scenario_conflict, "node-status": scenario_node_status}[name]
            try:
                fn(runner, model, args, buf)
                verdict = "PASS"
            except (Failure, LabError) as e:
                verdict = "FAIL"
                buf.write("  %s\n" % e)
                for node in the_lab.nodes:
                    buf.write("  --- %s agent log (tail)\n%s" % (
                        node, the_lab.tail(the_lab.agent_log(node), 15)))
            # A scenario may leave etcd down or an agent stopped; the next one starts clean.
            try:
                if the_lab.etcd is None:
                    the_lab.start_etcd()
                for node in the_lab.nodes:
                    if node not in the_lab.agents:
                        the_lab.start_agent(node)
                the_lab.wait_serving(timeout=60)
            except LabError as e:
                verdict = "FAIL"
                buf.write("  restoring etcd and the agents: %s\n" % e)
            results.append((name, verdict, time.monotonic() - ts, buf.text()))
            print("%s %s (%.1fs)" % (verdict, name, time.monotonic() - ts))
            sys.stdout.write(buf.text())
            sys.stdout.flush()
        if args.keep_logs:
            for node in the_lab.nodes:
                print("--- %s agent log\n%s" % (node, the_lab.tail(the_lab.agent_log(node), 10000)))
    passed = sum(1 for r in results if r[1] == "PASS")
    failed = sum(1 for r in results if r[1] == "FAIL")
    skipped = sum(1 for r in results if r[1] == "SKIP")
    print("multinode: %d runs in %.1fs" % (len(results), time.monotonic() - t0))
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
