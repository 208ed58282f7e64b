#!/usr/bin/python3
"""The Kubernetes datastore against the real kube-apiserver (tests/k8s/apiserver.py): paged
lists (the ClusterNetworkPolicy CRD not installed: the other resources sync), the CRD applied
from deploy/ and a ClusterNetworkPolicy and a labelled Node created with kubectl (in the State,
and the ClusterNetworkPolicy's tier chain in the program compiled for the node), watch events
as exact element-level changes, a watch resumed across an API server
restart without losing or repeating an event, RBAC revoked (fail-static, the resource and verb
named), 410 Gone answered by a re-list whose differences are exactly the changes made while
the watch was away, and a restart while the API server is down serving the state cache until the
lists converge on exactly what changed.

k8s_sync_probe runs the datastore alone and prints every published generation (the keys it
changed, the whole State and, with --node_name, the program the agent's compiler makes of it)
and every status change as JSON lines. No root, no kernel.

Skips visibly when the API server binary is absent (fails when NETPOL_CI=1). Closing line
`N passed, N failed`.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))


def find_fixture():
    for base in (os.path.join(HERE, "..", "..", "tests", "k8s"),
                 os.path.join(os.environ.get("TEST_SRCDIR", ""), "netpol", "tests", "k8s")):
        if os.path.exists(os.path.join(base, "apiserver.py")):
            return os.path.abspath(base)
    raise SystemExit("tests/k8s/apiserver.py not found")


sys.path.insert(0, find_fixture())
import apiserver  # noqa: E402

CNP_CRD = os.path.join(os.path.dirname(find_fixture()), "..", "deploy",
                       "05-crd-clusternetworkpolicies.yaml")

TIMEOUT = 60  # seconds to wait for an expected line (a bound on a hang, not a measurement)


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


class Probe:
    def __init__(self, binary, kubeconfig, page_size, state_dir):
        self.proc = subprocess.Popen(
            [binary, "--kubeconfig=" + kubeconfig, "--page_size=%d" % page_size,
             "--retry_max=1s", "--state_dir=" + state_dir, "--node_name=node-1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.log = []
        self.generation = None  # the newest generation line
        self.status = None      # the newest status
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line.rstrip())

    def next_line(self, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("timed out waiting; newest status %s\nprobe log:\n%s"
                              % (json.dumps(self.status), "\n".join(self.log[-20:])))
            try:
                d = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise Failure("the probe exited %d:\n%s" % (self.proc.returncode,
                                                                "\n".join(self.log[-20:])))
                continue
            self.status = d["status"]
            if "generation" in d:
                self.generation = d
            return d

    def until_status(self, pred, what):
        deadline = time.monotonic() + TIMEOUT
        if self.status is not None and pred(self.status):
            return self.status
        while True:
            d = self.next_line(deadline)
            if pred(d["status"]):
                return d["status"]

    def generations_until(self, pred, what):
        """Generation lines until `pred(latest generation line)`; returns them all."""
        deadline = time.monotonic() + TIMEOUT
        out = []
        while True:
            try:
                d = self.next_line(deadline)
            except Failure as e:
                raise Failure("%s: %s" % (what, e))
            if "generation" in d:
                out.append(d)
                if pred(d):
                    return out

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def keys(d):
    c = d["changed"]
    check(c is not None, "generation %d: ChangesBetween unknown" % d["generation"])
    return {"namespaces": set(c["namespaces"]), "pods": set(c["pods"]),
            "policies": set(c["policies"]),
            "clusterNetworkPolicies": set(c["clusterNetworkPolicies"]), "nodes": set(c["nodes"])}


def union(gens):
    out = {"namespaces": set(), "pods": set(), "policies": set(), "clusterNetworkPolicies": set(),
           "nodes": set()}
    prev = None
    for g in gens:
        if prev is not None:
            check(g["from"] == prev, "generations not consecutive: %d after %d" % (g["from"], prev))
        prev = g["generation"]
        for k, v in keys(g).items():
            out[k] |= v
    return out


def expect(changed, namespaces=(), pods=(), policies=(), cnps=(), nodes=()):
    want = {"namespaces": set(namespaces), "pods": set(pods), "policies": set(policies),
            "clusterNetworkPolicies": set(cnps), "nodes": set(nodes)}
    check(changed == want, "changed keys %s, want exactly %s" % (changed, want))


def all_watching(s):
    # A resource the API server does not serve (no CRD) has no watch to open.
    return s["synced"] and all(r["watching"] or r["absent"] for r in s["resources"])


def resource(s, name):
    return next(r for r in s["resources"] if r["resource"] == name)


AGENT_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "probe-reader"},
    "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"],
               "verbs": ["get", "list", "watch"]},
              {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
               "verbs": ["get", "list", "watch"]},
              {"apiGroups": ["policy.networking.k8s.io"], "resources": ["clusternetworkpolicies"],
               "verbs": ["get", "list", "watch"]}]}
BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
    "metadata": {"name": "probe-reader"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "probe-reader"},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "probe"}]}
BINDINGS = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"


def policy(name, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "shop"}, "spec": spec}


def run(api, probe_binary, tmp):
    api.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", AGENT_ROLE)
    api.call("POST", BINDINGS, BINDING)
    api.create_namespace("shop", {"team": "a"})
    for i in range(6):
        api.create_pod("shop", "p%d" % i, {"app": "web"}, node="node-1",
                       ips=["10.244.1.%d" % (i + 1), "fd00:10:244:1::%x" % (i + 1)],
                       ports=[(8080, "http", "TCP")])
    api.create_pod("shop", "done", {"app": "web"}, node="node-1", ips=["10.244.1.99"],
                   phase="Succeeded")
    api.create_pod("shop", "host", {"app": "agent"}, node="node-1", ips=["192.168.0.1"],
                   host_network=True)
    api.apply_policy(policy("allow-web", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"ports": [{"port": "http"}]}]}))
    # Accepted by the API server; netpol refuses CIDRs with host bits: left out and reported.
    api.apply_policy(policy("hostbits", {
        "podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/8"}}]}],
        "policyTypes": ["Egress"]}))
    kubeconfig = api.kubeconfig(os.path.join(tmp, "probe.kubeconfig"), user="probe")
    state_dir = os.path.join(tmp, "probe-state")
    os.mkdir(state_dir, 0o700)
    probe = Probe(probe_binary, kubeconfig, page_size=2, state_dir=state_dir)
    probes = [probe]
    results = []

    def case(name, fn):
        t = time.monotonic()
        try:
            fn()
            results.append(True)
            print("PASS %s (%.1fs)" % (name, time.monotonic() - t))
        except Exception as e:  # noqa: BLE001 - report and go on
            results.append(False)
            print("FAIL %s: %s" % (name, e if isinstance(e, Failure) else traceback.format_exc()))

    def paged_first_list():
        g = probe.generations_until(lambda d: True, "first list")[0]
        check(g["generation"] == 1, "first generation %d" % g["generation"])
        state, status = g["state"], g["status"]
        namespaces = set(state["namespaces"])
        pods = {"shop/p%d" % i for i in range(6)} | {"shop/host"}
        check("shop" in namespaces and state["namespaces"]["shop"] == {
            "team": "a", "kubernetes.io/metadata.name": "shop"},
              "namespace shop: %s" % state["namespaces"].get("shop"))
        check(set(state["pods"]) == pods,
              "pods %s, want %s (the Succeeded pod is not part of the model)"
              % (sorted(state["pods"]), sorted(pods)))
        p0 = state["pods"]["shop/p0"]
        check(p0 == {"labels": {"app": "web"}, "node": "node-1", "hostNetwork": False,
                     "ips": ["10.244.1.1", "fd00:10:244:1::1"], "ports": ["http=8080/TCP"]},
              "pod p0: %s" % p0)
        check(state["pods"]["shop/host"]["hostNetwork"], "the hostNetwork pod")
        check(state["policies"] == ["shop/allow-web"], "policies %s" % state["policies"])
        check(len(status["invalid"]) == 1 and "networkpolicy shop/hostbits" in status["invalid"][0],
              "invalid objects: %s" % status["invalid"])
        expect(keys(g), namespaces, pods, ["shop/allow-web"])
        # No ClusterNetworkPolicy CRD yet: not served, not an error, none in the State.
        cnp = resource(status, "clusternetworkpolicies")
        check(cnp["absent"] and cnp["error"] == "" and not cnp["watching"],
              "clusternetworkpolicies without the CRD: %s" % cnp)
        check(state["clusterNetworkPolicies"] == {} and state["nodes"] == {},
              "cluster network policies / nodes: %s %s"
              % (state["clusterNetworkPolicies"], state["nodes"]))
        # Pages of 2: ceil(namespaces/2) + ceil(8 pods/2) + ceil(2 policies/2) + 1 (no nodes);
        # four lists (the fifth is a 404).
        want_pages = (len(namespaces) + 1) // 2 + 4 + 1 + 1
        check(status["pages"] == want_pages and status["lists"] == 4,
              "read %d pages in %d lists, want %d pages in 4"
              % (status["pages"], status["lists"], want_pages))
        probe.until_status(all_watching, "watching")

    def crd_installed_then_cnp_and_node_in_state_and_program():
        before = probe.generation["generation"]
        api.kubectl("apply", "-f", CNP_CRD)
        api.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/clusternetworkpolicies.policy.networking.k8s.io")
        api.kubectl("apply", "-f", "-", input=(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-7\n"
            "  labels: {zone: a, kubernetes.io/hostname: node-7}\n"))
        api.kubectl("patch", "node", "node-7", "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"addresses": [
                        {"type": "InternalIP", "address": "192.168.7.1"},
                        {"type": "Hostname", "address": "node-7"}]}}))
        api.kubectl("apply", "-f", "-", input=(
            "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
            "metadata: {name: guard}\nspec:\n  tier: Admin\n  priority: 5\n"
            "  subject: {pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "
            "shop}}, podSelector: {matchLabels: {app: web}}}}\n"
            "  egress:\n  - {name: no-zone-a, action: Deny, to: [{nodes: {matchLabels: "
            "{zone: a}}}]}\n"))

        def arrived(d):
            st = d["state"]
            return ("guard" in st["clusterNetworkPolicies"]
                    and st["nodes"].get("node-7", {}).get("ips") == ["192.168.7.1"])
        g = probe.generations_until(arrived, "the ClusterNetworkPolicy and the node")
        check(g[0]["from"] == before, "a generation in between")
        expect(union(g), cnps=["guard"], nodes=["node-7"])
        last = g[-1]
        check(last["state"]["clusterNetworkPolicies"]["guard"] == {
            "tier": "Admin", "priority": 5, "ingress": 0, "egress": 1},
              "guard: %s" % last["state"]["clusterNetworkPolicies"]["guard"])
        check(last["state"]["nodes"]["node-7"]["labels"] == {
            "zone": "a", "kubernetes.io/hostname": "node-7"}, "node-7: %s"
              % last["state"]["nodes"]["node-7"])
        # The program for node-1: web's egress tier chain, whose Deny set holds node-7.
        program = last["program"]
        check(last["compileError"] == "", "compile: %s" % last["compileError"])
        check("chain ceg-guard-" in program and "192.168.7.1 . 0-255 . 0-65535" in program
              and 'drop comment "Admin tier Deny: guard egress[0]"' in program,
              "the compiled program lacks guard's tier chain:\n%s" % program)
        status = probe.until_status(
            lambda s: all_watching(s) and resource(s, "clusternetworkpolicies")["watching"],
            "watching clusternetworkpolicies")
        check(not resource(status, "clusternetworkpolicies")["absent"], "still absent")
        # Deleted with kubectl: gone from the State and the program.
        api.kubectl("delete", "cnp", "guard")
        api.kubectl("delete", "node", "node-7")
        g = probe.generations_until(
            lambda d: not d["state"]["clusterNetworkPolicies"] and not d["state"]["nodes"],
            "deletes")
        expect(union(g), cnps=["guard"], nodes=["node-7"])
        check("ceg-guard-" not in g[-1]["program"], "the tier chain outlived its policy")

    def watch_events_are_element_changes():
        before = probe.generation["generation"]
        api.label("pod", "p1", {"app": "db"}, namespace="shop")
        g = probe.generations_until(lambda d: "shop/p1" in d["changed"]["pods"], "relabel")
        check(g[0]["from"] == before, "a generation in between")
        expect(union(g), pods=["shop/p1"])
        check(g[-1]["state"]["pods"]["shop/p1"]["labels"] == {"app": "db"}, "p1's labels")
        api.set_pod_status("shop", "p2", phase="Succeeded")
        g = probe.generations_until(lambda d: "shop/p2" in d["changed"]["pods"], "p2 Succeeded")
        expect(union(g), pods=["shop/p2"])
        check("shop/p2" not in g[-1]["state"]["pods"], "a Succeeded pod left the model")
        api.label("namespace", "shop", {"team": "b"})
        g = probe.generations_until(lambda d: "shop" in d["changed"]["namespaces"], "ns label")
        expect(union(g), namespaces=["shop"])
        api.apply_policy(policy("deny", {"podSelector": {}}))
        g = probe.generations_until(lambda d: "shop/deny" in d["changed"]["policies"], "policy")
        expect(union(g), policies=["shop/deny"])
        api.delete("pod", "p3", namespace="shop")
        g = probe.generations_until(lambda d: "shop/p3" in d["changed"]["pods"], "delete")
        expect(union(g), pods=["shop/p3"])
        check("shop/p3" not in g[-1]["state"]["pods"], "p3 deleted")
        # The hostbits policy fixed: it enters the model and leaves the invalid list.
        api.apply_policy(policy("hostbits", {
            "podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
            "policyTypes": ["Egress"]}))
        g = probe.generations_until(lambda d: "shop/hostbits" in d["changed"]["policies"],
                                    "fixed policy")
        expect(union(g), policies=["shop/hostbits"])
        check(g[-1]["status"]["invalid"] == [], "invalid: %s" % g[-1]["status"]["invalid"])

    def restart_resumes_without_loss_or_repeat():
        probe.until_status(all_watching, "watching")
        before = probe.generation
        api.restart()
        # The change lands after the restart; the watch resumes from its last version (or
        # re-lists on 410): either way exactly this key changes, once.
        api.label("pod", "p4", {"app": "web", "v": "2"}, namespace="shop")
        g = probe.generations_until(lambda d: "shop/p4" in d["changed"]["pods"], "after restart")
        check(g[0]["from"] == before["generation"], "generations skipped")
        expect(union(g), pods=["shop/p4"])
        status = probe.until_status(all_watching, "watching again")
        check(status["events"] >= 1, "status %s" % status)

    def rbac_revoked_then_410_relist_exact_deltas():
        probe.until_status(all_watching, "watching")
        before = probe.generation
        relists = probe.status["relists"]
        api.call("DELETE", BINDINGS + "/probe-reader")
        api.restart()  # cuts the open watches; new ones are authorized afresh
        status = probe.until_status(
            lambda s: any(r["error"].startswith("forbidden: cannot watch pods")
                          or r["error"].startswith("forbidden: cannot list pods")
                          for r in s["resources"]), "forbidden")
        # Fail-static: nothing published, the last State kept.
        check(probe.generation["generation"] == before["generation"],
              "a generation was published while forbidden")
        check(not all_watching(status), "status says watching while forbidden: %s" % status)
        # Changes the node cannot see now.
        api.label("pod", "p0", {"app": "web", "moved": "yes"}, namespace="shop")
        api.delete("pod", "p5", namespace="shop")
        api.create_pod("shop", "p7", {"app": "web"}, node="node-2", ips=["10.244.2.7"])
        api.label("namespace", "shop", {"team": "c"})
        api.delete("networkpolicy", "deny", namespace="shop")
        api.compact()
        api.restart()  # the watch cache restarts at etcd's revision: old versions get 410
        api.call("POST", BINDINGS, BINDING)
        status = probe.until_status(
            lambda s: all_watching(s) and s["relists"] >= relists + 3, "re-listed")
        # Everything published since `before`: the deltas of the re-lists.
        gens = [d for d in seen if d["generation"] > before["generation"]]
        check(gens, "no generation published after the re-list")
        expect(union(gens), namespaces=["shop"], pods=["shop/p0", "shop/p5", "shop/p7"],
               policies=["shop/deny"])
        state = gens[-1]["state"]
        check(state["pods"]["shop/p0"]["labels"] == {"app": "web", "moved": "yes"}, "p0")
        check("shop/p5" not in state["pods"] and "shop/p7" in state["pods"], "p5/p7")
        check(state["policies"] == ["shop/allow-web", "shop/hostbits"], "policies %s"
              % state["policies"])

    def restarted_while_api_down_enforces_cache_then_converges():
        nonlocal probe
        probe.until_status(all_watching, "watching")
        last = probe.generation  # saved in the state cache before its line was printed
        probe.stop()
        # Changes while no probe runs, then the API server goes away.
        api.label("pod", "p1", {"app": "web"}, namespace="shop")
        api.create_pod("shop", "p8", {"app": "web"}, node="node-1", ips=["10.244.1.8"])
        api.stop_apiserver()
        probe = Probe(probe_binary, kubeconfig, page_size=2, state_dir=state_dir)
        probes.append(probe)
        g = probe.generations_until(lambda d: True, "cached state")[0]
        check(g["generation"] == 1 and g["status"]["fromCache"] and not g["status"]["synced"],
              "the first generation must be the cache's: %s" % g["status"])
        check(g["state"] == last["state"], "the cached state differs from the last one")
        probe.until_status(lambda s: any(r["error"] for r in s["resources"]), "API down")
        api.start_apiserver()
        g = probe.generations_until(lambda d: d["status"]["synced"], "listed")
        expect(union(g), pods=["shop/p1", "shop/p8"])
        check(not g[-1]["status"]["fromCache"], "still marked as the cache's")
        check(g[-1]["state"]["pods"]["shop/p1"]["labels"] == {"app": "web"}, "p1")

    seen = []
    orig = probe.next_line

    def recording(deadline):
        d = orig(deadline)
        if "generation" in d:
            seen.append(d)
        return d
    probe.next_line = recording

    try:
        case("paged_first_list", paged_first_list)
        case("crd_installed_then_cnp_and_node_in_state_and_program",
             crd_installed_then_cnp_and_node_in_state_and_program)
        case("watch_events_are_element_changes", watch_events_are_element_changes)
        case("restart_resumes_without_loss_or_repeat", restart_resumes_without_loss_or_repeat)
        case("rbac_revoked_then_410_relist_exact_deltas",
             rbac_revoked_then_410_relist_exact_deltas)
        case("restarted_while_api_down_enforces_cache_then_converges",
             restarted_while_api_down_enforces_cache_then_converges)
    finally:
        for p in probes:
            p.stop()
        if not all(results):
            print("probe log (tail):\n" + "\n".join(probe.log[-40:]))
    return results


def main():
    apiserver.require(kubectl=True)
    probe_binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "k8s_sync_probe")
    probe_binary = os.path.abspath(probe_binary)
    with apiserver.APIServer() as api:
        results = run(api, probe_binary, api.dir)
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
