#!/usr/bin/python3
"""netpol-agent with --datastore=kubernetes on lab nodes, against a real kube-apiserver, judged
by real packets (k8slab.py: two nodes, the 9 pods of tests/conformance/model.yaml spread over
them, one API server, each agent with a token of deploy/'s ServiceAccount).

Scenarios (all by default; --scenario picks some):

  events        a NetworkPolicy created with kubectl is enforced; then a namespace relabelled,
                a pod relabelled, a policy edited, a pod moved to Succeeded, a pod deleted, a
                policy deleted: each takes effect on every node. Prints the time from each API
                call to the change being in every node's kernel (p50/p99; measured, not
                asserted).
  conformance   every case of tests/conformance/cases (or --case ...), IPv4 and IPv6, each step
                written through the API server (policies created, replaced and deleted, labels
                patched), probed over the full matrix once every node applied it.
  restart       the API server is restarted: agents keep enforcing while it is down, say they
                are not connected, and apply a change made after it is back.
  watch-cut     while pod labels change in a burst, every node's TCP connections to the API
                server are aborted (ss -K) every 150 ms, so watch streams die mid-stream
                again and again; the agents resume each watch from the last resourceVersion
                they saw (never an older one: no re-list, versions only move forward) and
                converge on the last change, judged by packets.
  compaction    one node is cut off from the API server; changes are made, etcd is compacted
                and the API server restarted, so the node's watch resumes from a compacted
                resourceVersion: it gets 410 Gone, re-lists and converges.
  agent-restart an agent is stopped, its table deleted, the API server stopped, and the agent
                started again: it enforces the state it saved before any list; when the API
                server is back it converges.
  rbac          an agent whose ClusterRole lacks `watch` on networkpolicies says so (resource and
                verb) and keeps enforcing; the deploy/ role's token works (every other
                scenario's agents use it).
  node-status   every agent (with deploy/'s token) keeps a coordination.k8s.io Lease
                "netpol-<node>" in kube-system with its status; `netpolctl status --all-nodes`
                lists both nodes current and exits 0; `netpolctl wait --for=enforced -f FILE`
                on the second node returns once its kernel holds a policy kubectl applies
                meanwhile (read right after it returns); a killed agent shows as stale once its
                Lease expires (--node-status-ttl=3s) and the command exits 1; restarted, 0.

Output: PASS/FAIL per scenario or case, details under a failure, the latency table, and a
closing line `N passed, N failed`.

    k8s_lab_test.py --agent PATH --netpolctl PATH [--scenario NAME ...] [--case NAME ...]
                    [--family ipv4|ipv6] [--nodes 2]
"""

import argparse
import json
import os
import re
import sys
import signal
import threading
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "datapath"))
sys.path.insert(0, os.path.join(ROOT, "tests", "conformance"))
sys.path.insert(0, os.path.join(ROOT, "tests", "multinode"))

import apiserver  # noqa: E402
import k8slab  # noqa: E402
from k8slab import lab, LabError, merge  # noqa: E402
import dplib  # noqa: E402
import cases as caselib  # noqa: E402
import conformance_test as single  # noqa: E402
import yaml  # noqa: E402

SCENARIOS = ("events", "conformance", "restart", "watch-cut", "compaction", "agent-restart",
             "rbac", "node-status")


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


class Collect:
    def __init__(self):
        self.parts = []

    def write(self, s):
        self.parts.append(s)

    def text(self):
        return "".join(self.parts)


def policy(name, namespace, ingress_from, ports=None):
    """A NetworkPolicy selecting every pod of `namespace`, allowing ingress from `ingress_from`
    (a list of peers)."""
    rule = {"from": ingress_from}
    if ports:
        rule["ports"] = ports
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {}, "ingress": [rule]}}


def ns_peer(value):
    return {"namespaceSelector": {"matchLabels": {"ns": value}}}


def expect_x_from(model_pods, allowed, fams=("v4", "v6")):
    """TCP/80: x's pods reachable from the sources for which allowed(src) is true (and from
    themselves); the other namespaces open."""
    cells = {}
    for s in model_pods:
        for d in model_pods:
            cells[(s, d)] = (s == d or allowed(s)) if d.startswith("x/") else True
    return {(f, "TCP", 80): dict(cells) for f in fams}


class Runner:
    def __init__(self, the_lab, model):
        self.lab = the_lab
        self.model = model

    def settle(self, targets):
        if targets:
            self.lab.wait_applied(targets)

    def probe(self, want, what):
        self.lab.flush_conntrack()
        probes = sorted({(p, n) for (_, p, n) in want})
        fams = sorted({k[0] for k in want})
        got = self.lab.matrices(probes, families=fams)
        bad = dplib.confirm(self.lab, dplib.diff(want, got))
        if bad:
            buf = Collect()
            dplib.report_mismatches(self.lab, want, got, bad, out=buf)
            raise Failure("%s: %d cells differ\n%s" % (what, len(bad), buf.text()))

    def wait_log(self, node, needle, timeout=60, since=0):
        deadline = time.monotonic() + timeout
        while True:
            text = self._log(node)[since:]
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise Failure("%s's log never said %r:\n%s" % (node, needle,
                                                              self.lab.tail(
                                                                  self.lab.agent_log(node))))
            time.sleep(0.1)

    def _log(self, node):
        try:
            with open(self.lab.agent_log(node), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_size(self, node):
        return len(self._log(node))


# ------------------------------------------------------------------------------ events

def scenario_events(r, out):
    L, pods = r.lab, r.model.pods
    r.settle(L.reset())
    r.probe(expect_x_from(pods, lambda s: True), "the model alone: everything open")

    # A policy created with kubectl: x accepts ingress only from namespace y.
    text = json.dumps(policy("from-y", "x", [ns_peer("y")]))
    L.change("kubectl apply policy", lambda: L.kubectl_apply(text))
    r.probe(expect_x_from(pods, lambda s: s.startswith("y/")), "policy from-y")

    # Namespace z relabelled ns=y: now z reaches x too.
    L.change("namespace relabel", lambda: L.set_labels("Namespace", "z", {
        "ns": "y", "kubernetes.io/metadata.name": "z"}))
    r.probe(expect_x_from(pods, lambda s: s[0] in "yz"), "namespace z relabelled ns=y")
    L.change("namespace relabel", lambda: L.set_labels("Namespace", "z", {
        "ns": "z", "kubernetes.io/metadata.name": "z"}))

    # The policy edited: from pods labelled pod=b in any namespace.
    pb = policy("from-y", "x", [{"namespaceSelector": {}, "podSelector": {
        "matchLabels": {"pod": "b"}}}])
    L.change("policy edit", lambda: L.apply_policy(pb))
    r.probe(expect_x_from(pods, lambda s: s.endswith("/b")), "policy edited to pod=b")

    # A pod relabelled into the allowed set, then out again.
    L.change("pod relabel", lambda: L.set_labels("Pod", "a", {"pod": "b"}, "z"))
    r.probe(expect_x_from(pods, lambda s: s.endswith("/b") or s == "z/a"),
            "pod z/a relabelled pod=b")
    L.change("pod relabel", lambda: L.set_labels("Pod", "a", {"pod": "a"}, "z"))

    # A peer moved to Succeeded: its address is no longer that pod (it may be reused).
    L.change("pod Succeeded", lambda: L.set_phase("y", "b", "Succeeded"))
    r.probe(expect_x_from(pods, lambda s: s.endswith("/b") and s != "y/b"),
            "pod y/b Succeeded")
    L.change("pod recreated", lambda: L.recreate_pod("y", "b"))
    r.probe(expect_x_from(pods, lambda s: s.endswith("/b")), "pod y/b recreated")

    # A peer deleted with kubectl.
    L.change("kubectl delete pod", lambda: L.kubectl_delete("Pod", "b", "z"))
    r.probe(expect_x_from(pods, lambda s: s.endswith("/b") and s != "z/b"), "pod z/b deleted")
    L.change("pod recreated", lambda: L.recreate_pod("z", "b"))

    # More edits, for the latency numbers: flip the allowed port 20 times.
    for i in range(20):
        port = 80 if i % 2 else 81
        p = policy("from-y", "x", [{"namespaceSelector": {}, "podSelector": {
            "matchLabels": {"pod": "b"}}}], ports=[{"protocol": "TCP", "port": port}])
        L.change("policy edit", lambda: L.apply_policy(p))
    for i in range(20):
        L.change("pod relabel", lambda: L.set_labels(
            "Pod", "c", {"pod": "c", "round": str(i)}, "y"))
    r.probe(expect_x_from(pods, lambda s: s.endswith("/b")), "after 20 policy edits")

    # The policy deleted with kubectl: open again.
    L.change("kubectl delete policy", lambda: L.kubectl_delete("NetworkPolicy", "from-y", "x"))
    r.probe(expect_x_from(pods, lambda s: True), "policy deleted")
    print("  API request -> every node's kernel (%d nodes):\n%s" % (len(L.nodes),
                                                                  L.latency_report()), file=out)


# ------------------------------------------------------------------------------ conformance

def apply_step(L, step):
    """Writes one case step through the API: deletes, then the apply documents (policies
    created or replaced, namespace and pod labels patched). Returns the wait targets."""
    targets = {}
    for ref in step.deletes:
        merge(targets, L.delete(ref.kind, ref.name, ref.namespace or None))
    for doc in caselib._split_documents(step.apply_yaml):
        obj = yaml.safe_load(doc) if doc.strip() else None
        if not isinstance(obj, dict):
            continue
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        if kind == "NetworkPolicy":
            merge(targets, L.apply_policy(obj))
        elif kind in ("Namespace", "Pod"):
            labels = dict(meta.get("labels") or {})
            if kind == "Namespace":
                labels.setdefault("kubernetes.io/metadata.name", meta["name"])
            cur = L.api.call("GET", L.api.object_path(kind, meta["name"], meta.get("namespace")))
            if (cur["metadata"].get("labels") or {}) != labels:
                merge(targets, L.set_labels(kind, meta["name"], labels, meta.get("namespace")))
        else:
            raise Failure("case applies a %s, which this runner does not write" % kind)
    return targets


def run_case_group(r, group, out):
    L = r.lab
    first = group[0]
    verdict = {c.family: None for c in group}
    probed = {c.family: 0 for c in group}
    for i, step in enumerate(first.steps):
        L.change("conformance step", lambda: apply_step(L, step))
        L.flush_conntrack()
        live = [c for c in group if verdict[c.family] is None]
        want = {}
        for c in live:
            want.update(single.expected_table(r.model, c.steps[i], c.family))
        if not want:
            continue
        probes = sorted({(p, n) for (_, p, n) in want})
        fams = sorted({k[0] for k in want})
        got = L.matrices(probes, families=fams)
        bad = dplib.confirm(L, dplib.diff(want, got))
        for c in live:
            fam = single.LAB_FAMILY[c.family]
            probed[c.family] += sum(1 for k in want if k[0] == fam)
            mine = [m for m in bad if m[0] == fam]
            if not mine:
                continue
            verdict[c.family] = "FAIL"
            print("  %s step %d: %d cells differ" % (c.family, i, len(mine)), file=out)
            dplib.report_mismatches(L, {k: v for k, v in want.items() if k[0] == fam}, got,
                                    mine, out=out)
        if all(v == "FAIL" for v in verdict.values()):
            break
    return {f: v or ("PASS" if probed[f] else "SKIP") for f, v in verdict.items()}


def scenario_conformance(r, args, results):
    families = args.family or list(caselib.FAMILIES)
    files = caselib.case_files(args.cases)
    if args.case:
        files = [f for f in files if os.path.basename(f)[:-len(".yaml")] in set(args.case)]
    loaded = [caselib.load_case(r.model, f, fam) for f in files for fam in families]
    groups = []
    for case in loaded:
        prev = groups[-1] if groups else None
        if prev and prev[0].file == case.file and single.same_objects(prev[0], case):
            prev.append(case)
        else:
            groups.append([case])
    for group in groups:
        ts = time.monotonic()
        buf = Collect()
        try:
            r.settle(r.lab.reset())
            verdicts = run_case_group(r, group, buf)
        except (LabError, Failure, apiserver.APIServerError) as e:
            verdicts = {c.family: "FAIL" for c in group}
            buf.write("  %s\n" % e)
        for c in group:
            results.append(("conformance %s %s" % (c.name, c.family), verdicts[c.family]))
            print("%s conformance %s %s (%.1fs)" % (verdicts[c.family], c.name, c.family,
                                                   time.monotonic() - ts))
            if verdicts[c.family] == "FAIL":
                sys.stdout.write(buf.text())
            sys.stdout.flush()


# ------------------------------------------------------------------------------ failures

FROM_Y = policy("from-y", "x", [ns_peer("y")])
FROM_Z = policy("from-y", "x", [ns_peer("z")])


def wait_disconnected(L, nodes, timeout=60):
    deadline = time.monotonic() + timeout
    for node in nodes:
        while True:
            st = L.status(node)
            if st["serving"] and not st["connected"]:
                break
            check(time.monotonic() < deadline, "%s does not report the API server gone:\n%s"
                  % (node, st["text"]))
            time.sleep(0.2)


def scenario_restart(r, out):
    L, pods = r.lab, r.model.pods
    r.settle(L.reset())
    L.change("policy create", lambda: L.apply_policy(FROM_Y), record=False)
    want_y = expect_x_from(pods, lambda s: s.startswith("y/"))
    r.probe(want_y, "before the restart")
    L.api.stop_apiserver()
    wait_disconnected(L, L.nodes)
    r.probe(want_y, "API server down: enforcement unchanged")
    L.api.start_apiserver()
    L.change("edit after API restart", lambda: L.apply_policy(FROM_Z), record=False)
    r.probe(expect_x_from(pods, lambda s: s.startswith("z/")), "a change after the restart")
    print("  agents kept enforcing while the API server was down and applied a later change",
          file=out)


def cut(L, node, on):
    """Drops (on) or lets through (off) the node's traffic to the API server, with a table of
    our own in the node's namespace."""
    if on:
        L.exec_on(node, ["nft", "-f", "-"], input=(
            "table inet k8scut {\n chain out { type filter hook output priority -10; "
            "ip daddr %s tcp dport %d drop\n }\n chain inp { type filter hook input priority "
            "-10; ip saddr %s tcp sport %d drop\n }\n}\n" % (
                k8slab.multilab.ETCD_V4, L.api.port, k8slab.multilab.ETCD_V4, L.api.port)))
    else:
        L.exec_on(node, ["nft", "delete", "table", "inet", "k8scut"])


def abort_api_connections(L, node):
    """Aborts the node's established TCP connections to the API server (`ss -K`: the kernel
    resets them inside the node's namespace, as a connection lost mid-stream); returns how many
    were aborted."""
    cp = L.exec_on(node, ["ss", "-K", "-t", "-n", "state", "established", "dst",
                          k8slab.multilab.ETCD_V4, "dport", "=", ":%d" % L.api.port], check=False)
    check(cp.returncode == 0, "ss -K on %s: %s" % (node, cp.stderr.strip()))
    return sum(1 for ln in cp.stdout.splitlines() if ":%d" % L.api.port in ln)


RESUME_LINE = re.compile(r"kubernetes: watching (\w+) again from resourceVersion (\d+)")


def scenario_watch_cut(r, out):
    L, pods = r.lab, r.model.pods
    r.settle(L.reset())
    # x accepts TCP/80 only from pods labelled allow=yes, in any namespace.
    allowed = policy("from-allowed", "x", [{"namespaceSelector": {}, "podSelector": {
        "matchLabels": {"allow": "yes"}}}])
    start = L.change("policy create", lambda: L.apply_policy(allowed), record=False)
    since = {n: r.log_size(n) for n in L.nodes}
    # 8 rounds over four peers; each peer's label flips every round it is written, and the
    # last write of each decides: y/a and z/b end allowed, y/c and z/a do not.
    peers = [("y", "a"), ("y", "c"), ("z", "a"), ("z", "b")]
    final = {("y", "a"): "yes", ("y", "c"): "no", ("z", "a"): "no", ("z", "b"): "yes"}
    writes = []
    for rnd in range(8):
        for ns, name in peers:
            last = rnd == 7
            value = final[(ns, name)] if last else ("yes" if (rnd + len(name)) % 2 else "no")
            writes.append((ns, name, value))
    aborted = {n: 0 for n in L.nodes}
    stop = threading.Event()
    errors = []

    def cutter():
        try:
            while not stop.is_set():
                for n in L.nodes:
                    aborted[n] += abort_api_connections(L, n)
                stop.wait(0.15)
        except Exception as e:  # reported below
            errors.append(e)

    targets = {}
    t = threading.Thread(target=cutter)
    t.start()
    try:
        for ns, name, value in writes:
            merge(targets, L.set_labels("Pod", name, {"pod": name, "allow": value}, ns))
            time.sleep(0.03)
    finally:
        stop.set()
        t.join()
    check(not errors, "cutting connections failed: %s" % errors)
    L.wait_applied(targets, timeout=120)
    r.probe(expect_x_from(pods, lambda s: final.get(tuple(s.split("/"))) == "yes"),
            "after %d label changes with the watches cut" % len(writes))
    first_rv = start["networkpolicies"]
    for node in L.nodes:
        text = r._log(node)[since[node]:]
        check(aborted[node] > 0, "%s: no connection to the API server was aborted" % node)
        resumed = [(m.group(1), int(m.group(2))) for m in RESUME_LINE.finditer(text)]
        pods_resumed = [rv for res, rv in resumed if res == "pods"]
        check(pods_resumed, "%s never resumed its pods watch:\n%s" % (node, text[-2000:]))
        check("listing again" not in text,
              "%s re-listed instead of resuming its watches:\n%s" % (node, text[-2000:]))
        for res in {res for res, _ in resumed}:
            rvs = [rv for x, rv in resumed if x == res]
            check(rvs == sorted(rvs), "%s resumed its %s watch from an older version: %s"
                  % (node, res, rvs))
        check(max(pods_resumed) > first_rv,
              "%s's pods watch never resumed past the start of the changes (%s <= %d)"
              % (node, pods_resumed, first_rv))
        print("  %s: %d connections aborted; watches resumed %d times (pods from %s)" % (
            node, aborted[node], len(resumed), ", ".join(str(v) for v in pods_resumed[:8])),
            file=out)


def scenario_compaction(r, out):
    L, pods = r.lab, r.model.pods
    r.settle(L.reset())
    L.change("policy create", lambda: L.apply_policy(FROM_Y), record=False)
    node = L.nodes[-1]
    others = L.nodes[:-1]
    cut(L, node, True)
    try:
        # Changes the cut-off node misses; the others apply them.
        t = L.apply_policy(FROM_Z)
        merge(t, L.set_labels("Namespace", "y", {"ns": "y", "extra": "1",
                                                 "kubernetes.io/metadata.name": "y"}))
        L.wait_applied(t, nodes=others)
        since = r.log_size(node)
        rev = L.api.compact()
        # A restarted API server's watch cache starts after the compaction, so the node's
        # watch cannot resume from its version.
        L.api.restart()
    finally:
        cut(L, node, False)
    text = r.wait_log(node, "(410 Gone); listing again", timeout=120, since=since)
    L.wait_applied(t, timeout=120)
    r.probe(expect_x_from(pods, lambda s: s.startswith("z/")), "after the re-list")
    line = [ln for ln in text.splitlines() if "410 Gone" in ln][0]
    print("  compacted at %d; %s: %s" % (rev, node, line.strip()), file=out)


def scenario_agent_restart(r, out):
    L, pods = r.lab, r.model.pods
    r.settle(L.reset())
    L.change("policy create", lambda: L.apply_policy(FROM_Y), record=False)
    want_y = expect_x_from(pods, lambda s: s.startswith("y/"))
    node = L.nodes[0]
    L.stop_agent(node)
    # Without its table the node enforces nothing until the agent rebuilds it.
    L.exec_on(node, ["nft", "delete", "table", "inet", "netpol"])
    L.api.stop_apiserver()
    try:
        L.start_agent(node)
        deadline = time.monotonic() + 60
        while True:
            st = L.status(node)
            if st["serving"] and st["generation"] >= 0 and st["generation"] == st["applied"]:
                break
            check(L.agents[node].running(), "the agent exited:\n%s" % L.tail(
                L.agent_log(node)))
            check(time.monotonic() < deadline, "%s does not enforce its saved state with the "
                  "API server down:\n%s\n%s" % (node, st["text"], L.tail(L.agent_log(node))))
            time.sleep(0.2)
        check(not st["connected"], "connected with the API server down?\n%s" % st["text"])
        r.probe(want_y, "agent restarted with the API server down: its saved state")
    finally:
        if L.api.proc is None:
            L.api.start_apiserver()
    L.change("edit after API back", lambda: L.apply_policy(FROM_Z), record=False)
    r.probe(expect_x_from(pods, lambda s: s.startswith("z/")), "converged after the API is back")
    print("  %s rebuilt its table from the saved state with the API server down" % node,
          file=out)


NO_WATCH_ROLE = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: netpol-agent-nowatch}
rules:
- apiGroups: [""]
  resources: ["namespaces", "pods", "nodes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["policy.networking.k8s.io"]
  resources: ["clusternetworkpolicies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list"]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: netpol-agent-nowatch, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: netpol-agent-nowatch}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: netpol-agent-nowatch}
subjects:
- {kind: ServiceAccount, name: netpol-agent-nowatch, namespace: kube-system}
"""


def scenario_rbac(r, out):
    L, pods = r.lab, r.model.pods
    r.settle(L.reset())
    L.change("policy create", lambda: L.apply_policy(FROM_Y), record=False)
    want_y = expect_x_from(pods, lambda s: s.startswith("y/"))
    L.api.kubectl("apply", "-f", "-", input=NO_WATCH_ROLE)
    kc = L.kubeconfig_for_token("nowatch", L.api.create_token("netpol-agent-nowatch",
                                                              "kube-system"))
    node = L.nodes[0]
    L.stop_agent(node)
    since = r.log_size(node)
    L.start_agent(node, kubeconfig=kc)
    try:
        text = r.wait_log(node, "cannot watch networkpolicies", since=since)
        line = [ln for ln in text.splitlines() if "cannot watch networkpolicies" in ln][0]
        check("forbidden" in line, "the log line does not say forbidden: %s" % line)
        deadline = time.monotonic() + 30
        while True:
            st = L.status(node)
            w = st["watch"].get("networkpolicies")
            if st["serving"] and w is not None and not w[0] and \
                    "cannot watch networkpolicies" in st["text"]:
                break
            check(time.monotonic() < deadline, "status does not name the failing watch:\n%s"
                  % st["text"])
            time.sleep(0.2)
        r.probe(want_y, "agent without watch on networkpolicies keeps enforcing")
        print("  %s: %s" % (node, line.strip()), file=out)
        status_line = [ln for ln in st["text"].splitlines()
                       if ln.startswith("Watch networkpolicies")][0]
        print("  status: %s" % status_line.strip(), file=out)
    finally:
        L.stop_agent(node)
        L.start_agent(node)
        L.wait_serving(nodes=[node], timeout=60)
    L.change("edit after RBAC fixed", lambda: L.apply_policy(FROM_Z), record=False)
    r.probe(expect_x_from(pods, lambda s: s.startswith("z/")), "with deploy/'s role again")


# ------------------------------------------------------------------------------ node status

WAIT_PROBE = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: wait-probe, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 198.51.100.7/32}}]
    ports: [{port: 80}]
"""


def all_nodes(L, node):
    js = L.netpolctl(node, ["status", "--all-nodes", "-o", "json"], check=False, timeout=20)
    text = L.netpolctl(node, ["status", "--all-nodes"], check=False, timeout=20)
    try:
        parsed = json.loads(js.stdout)
    except ValueError:
        parsed = {}
    return js.returncode, parsed, text.stdout + text.stderr


def wait_all_nodes(L, node, want_code, what, stale=None, timeout=60):
    """Polls `status --all-nodes` until it exits `want_code` (and, when given, exactly the
    nodes in `stale` are stale)."""
    deadline = time.monotonic() + timeout
    while True:
        code, parsed, text = all_nodes(L, node)
        got_stale = {n["nodeName"] for n in parsed.get("nodes", []) if n.get("stale")}
        if code == want_code and (stale is None or got_stale == set(stale)):
            return parsed, text
        check(time.monotonic() < deadline, "status --all-nodes never exited %d%s (%s):\n%s" % (
            want_code, "" if stale is None else " with %s stale" % sorted(stale), what, text))
        time.sleep(0.2)


def scenario_node_status(r, out):
    L = r.lab
    r.settle(L.reset())
    first, last = L.nodes[0], L.nodes[-1]
    parsed, text = wait_all_nodes(L, first, 0, "every node up", stale=())
    check(sorted(n["nodeName"] for n in parsed["nodes"]) == sorted(L.nodes) and
          all(n.get("current") for n in parsed["nodes"]), "want every node current:\n" + text)
    print("  all current:\n%s" % text, file=out)
    lease = L.api.call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                       "netpol-" + last)
    record = json.loads(lease["metadata"]["annotations"]["netpol.io/node-status"])
    check(lease["spec"]["holderIdentity"] == last and
          lease["spec"]["leaseDurationSeconds"] == 3 and record["nodeName"] == last and
          lease["metadata"]["labels"].get("netpol.io/node-status") == "true",
          "Lease netpol-%s: %s" % (last, json.dumps(lease)[:2000]))

    # wait -f on the last node while kubectl applies the policy.
    check("198.51.100.7" not in L.nft_list(), "198.51.100.7 already in a table")
    writer = threading.Thread(target=L.kubectl_apply, args=(WAIT_PROBE,))
    writer.start()
    cp = L.netpolctl(last, ["wait", "--for=enforced", "-f", "-", "--timeout=60s"],
                     input=WAIT_PROBE, check=False)
    kernel = L.exec_on(last, ["nft", "list", "table", "inet", "netpol"]).stdout
    writer.join()
    check(cp.returncode == 0, "wait -f on %s exited %d: %s" % (last, cp.returncode,
                                                              cp.stdout + cp.stderr))
    check("198.51.100.7" in kernel, "wait -f on %s returned (%s) but its kernel lacks the "
          "policy's address:\n%s" % (last, cp.stdout.strip(), kernel))
    print("  %s: %s" % (last, cp.stdout.strip()), file=out)
    L.kubectl_delete("NetworkPolicy", "wait-probe", "x")

    L.stop_agent(last, sig=signal.SIGKILL)
    parsed, text = wait_all_nodes(L, first, 1, "%s killed" % last, stale=(last,))
    print("  %s killed:\n%s" % (last, text), file=out)
    L.start_agent(last)
    L.wait_serving(nodes=[last], timeout=60)
    parsed, text = wait_all_nodes(L, first, 0, "%s restarted" % last, stale=())


# ------------------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--netpolctl", required=True)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS)
    ap.add_argument("--case", action="append")
    ap.add_argument("--family", action="append", choices=list(caselib.FAMILIES))
    ap.add_argument("--cases", default=caselib.DEFAULT_CASES)
    ap.add_argument("--model", default=os.path.join(ROOT, "tests", "conformance", "model.yaml"))
    args = ap.parse_args()
    lab.require_root("k8s_lab_test")
    apiserver.require(kubectl=True)
    agent = dplib.find_tool(args.agent, "NETPOL_AGENT", "netpol-agent")
    ctl = dplib.find_tool(args.netpolctl, "NETPOL_NETPOLCTL", "netpolctl")
    model = caselib.load_model(args.model)
    lab_model = lab.load_model(args.model)
    scenarios = args.scenario or list(SCENARIOS)
    results = []
    t0 = time.monotonic()
    with k8slab.K8sLab(lab_model, agent, ctl, nodes=args.nodes) as L:
        L.install_deploy()
        L.load_model(lab_model.objects)
        L.start_agents(timeout=120)
        print("lab: %d nodes, API server %s, agents serving after %.1fs" % (
            len(L.nodes), L.api.url, time.monotonic() - t0))
        r = Runner(L, model)
        fns = {"events": scenario_events, "restart": scenario_restart,
               "watch-cut": scenario_watch_cut,
               "compaction": scenario_compaction, "agent-restart": scenario_agent_restart,
               "rbac": scenario_rbac, "node-status": scenario_node_status}
        for name in scenarios:
            if name == "conformance":
                scenario_conformance(r, args, results)
                continue
            ts = time.monotonic()
            buf = Collect()
            try:
                fns[name](r, buf)
                verdict = "PASS"
            except (Failure, LabError, apiserver.APIServerError) as e:
                verdict = "FAIL"
                buf.write("  %s\n" % e)
                for node in L.nodes:
                    buf.write("  --- %s log:\n%s" % (node, L.tail(L.agent_log(node), 15)))
            except Exception:
                verdict = "FAIL"
                buf.write(traceback.format_exc())
            results.append((name, verdict))
            print("%s %s (%.1fs)" % (verdict, name, time.monotonic() - ts))
            sys.stdout.write(buf.text())
            sys.stdout.flush()
        if L.latencies:
            print("latency, API request -> committed in every node's kernel (the agents' sync "
                  "log lines; measured, not asserted):\n" + L.latency_report())
    passed = sum(1 for _, v in results if v == "PASS")
    failed = sum(1 for _, v in results if v == "FAIL")
    skipped = sum(1 for _, v in results if v == "SKIP")
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
