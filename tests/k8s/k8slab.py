#!/usr/bin/python3
"""Lab nodes whose agents read a real kube-apiserver: tests/multinode's MultiLab (nodes, pods,
routing, probes) with the API server (apiserver.py, Debian's etcd + kube-apiserver v1.28.7) in
the namespace MultiLab gives etcd (192.168.77.2 on the underlay), and every node's netpol-agent
running with --datastore=kubernetes and a kubeconfig holding a token of deploy/'s ServiceAccount.

The model's Namespaces and Pods are created through the API as a kubelet would leave them:
spec.nodeName from the lab's placement, then status.podIPs and phase Running through
pods/status. Tests change objects through the API (REST as the admin, or kubectl) and wait until
every agent's kernel holds the change: the agent's watch of that resource has reached the
change's resourceVersion and its kernel generation is its current one (`netpolctl status`).
"""

import datetime
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "multinode"))

import apiserver  # noqa: E402
import multilab  # noqa: E402
from multilab import lab, LabError  # noqa: E402

DEPLOY = os.path.join(ROOT, "deploy")
SA_NAMESPACE, SA_NAME = "kube-system", "netpol-agent"
# The API's resources as the agent's status names them, with their list paths.
RESOURCES = {
    "namespaces": "/api/v1/namespaces",
    "pods": "/api/v1/pods",
    "networkpolicies": "/apis/networking.k8s.io/v1/networkpolicies",
}
# The agent's log line for a kernel sync: its time and generation.
SYNC_LINE = re.compile(r"^(\S+Z) I sync kind=\S+ generation=(\d+) ")
KIND_RESOURCE = {"Namespace": "namespaces", "Pod": "pods", "NetworkPolicy": "networkpolicies"}


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


class K8sLab(multilab.MultiLab):
    """MultiLab with an API server instead of etcd. Context manager; after up(): load_model(),
    start_agents()."""

    def __init__(self, model, agent, netpolctl, nodes=2, prefix=None, extra_ports=()):
        super().__init__(model, agent, netpolctl, nodes=nodes, prefix=prefix,
                         extra_ports=extra_ports)
        self.api = None
        self.kubeconfigs = {}     # node -> kubeconfig path the agent uses
        self.latencies = {}       # what -> [seconds from the API call to every kernel]
        self.model_objects = []   # the model's Namespaces and Pods as dicts
        self._applied = {}        # node -> the kernel generation last seen
        self._request_started = None

    # ---- lifecycle

    def up(self):
        super().up()
        try:
            self.api = apiserver.APIServer(netns=self.etcd_ns, address=multilab.ETCD_V4)
            self.api.start()
        except BaseException:
            self.down()
            raise
        return self

    def down(self):
        self.stop_agents()
        if self.api is not None:
            self.api.stop()
            self.api = None
        super().down()

    def install_deploy(self):
        """Applies deploy/ (ServiceAccount, ClusterRole, binding, DaemonSet) and writes each
        node's kubeconfig with a token of the ServiceAccount, so agents run with exactly the
        permissions the manifests grant."""
        self.api.kubectl("apply", "-f", DEPLOY)
        token = self.api.create_token(SA_NAME, SA_NAMESPACE, seconds=6 * 3600)
        for node in self.nodes:
            self.kubeconfigs[node] = self.api.kubeconfig(
                os.path.join(self.workdir, "kubeconfig-" + node), token=token)

    def kubeconfig_for_token(self, name, token):
        return self.api.kubeconfig(os.path.join(self.workdir, "kubeconfig-" + name), token=token)

    # ---- agents

    def start_agent(self, node, kubeconfig=None, extra=()):
        super().start_agent(node, flags=[
            "--table=netpol", "--datastore=kubernetes",
            "--kubeconfig=" + (kubeconfig or self.kubeconfigs[node]),
            "--node-status-ttl=" + self.status_ttl] + list(extra))

    # ---- objects

    def load_model(self, objects):
        """Creates the model's Namespaces and Pods (placed on the lab's nodes, addresses and phase
        Running written through pods/status)."""
        self.model_objects = [o for o in objects if isinstance(o, dict) and
                              o.get("kind") in ("Namespace", "Pod")]
        for o in self.model_objects:
            if o["kind"] == "Namespace":
                self.api.call("POST", "/api/v1/namespaces", self._clean(o))
        for o in self.model_objects:
            if o["kind"] == "Pod":
                self.create_pod(o)

    @staticmethod
    def _clean(obj):
        o = json.loads(json.dumps(obj))
        o.pop("status", None)
        meta = o.setdefault("metadata", {})
        for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            meta.pop(k, None)
        return o

    def create_pod(self, obj):
        """Creates a pod from a model object on its lab node; returns the stored pod."""
        o = self._clean(obj)
        key = "%s/%s" % (o["metadata"]["namespace"], o["metadata"]["name"])
        o["spec"]["nodeName"] = self.placement.get(key, self.nodes[0])
        ns = o["metadata"]["namespace"]
        self.api.call("POST", "/api/v1/namespaces/%s/pods" % ns, o)
        pod = self.pods[key].spec
        return self.api.set_pod_status(ns, o["metadata"]["name"], ips=[pod.ipv4, pod.ipv6],
                                       phase="Running")

    def model_object(self, kind, namespace, name):
        for o in self.model_objects:
            m = o["metadata"]
            if o["kind"] == kind and m.get("name") == name and (
                    kind == "Namespace" or m.get("namespace") == namespace):
                return o
        return None

    # ---- waiting for the kernel

    def status(self, node):
        """MultiLab's status plus each resource's watch: {"watch": {res: (watching, rv)},
        "connected": bool}."""
        out = super().status(node)
        text = out["text"]
        out["watch"] = {}
        for m in re.finditer(r"^Watch (\w+):\s+(watching from|NOT watching \(at) resourceVersion "
                             r"(\d+|-)", text, re.M):
            out["watch"][m.group(1)] = (m.group(2) == "watching from",
                                        int(m.group(3)) if m.group(3) != "-" else 0)
        m = re.search(r"^Datastore:\s+kubernetes \S+, (connected|NOT connected)", text, re.M)
        out["connected"] = bool(m and m.group(1) == "connected")
        return out

    def wait_applied(self, targets, nodes=None, timeout=60):
        """Waits until, on every node, each resource's watch has reached targets[res] (a
        resourceVersion) and the kernel holds the agent's current generation. Returns
        {node: that generation}."""
        deadline = time.monotonic() + timeout
        out = {}
        for node in nodes or self.nodes:
            while True:
                st = self.status(node)
                ok = st["generation"] >= 0 and st["generation"] == st["applied"]
                for res, rv in targets.items():
                    ok = ok and st["watch"].get(res, (False, 0))[1] >= rv
                if ok:
                    out[node] = st["applied"]
                    self._applied[node] = st["applied"]
                    break
                if time.monotonic() > deadline:
                    raise LabError("%s did not apply %s within %ss:\n%s\n%s" % (
                        node, targets, timeout, st["text"], self.tail(self.agent_log(node))))
                time.sleep(0.01)
        return out

    def sync_time(self, node, after_generation):
        """Wall-clock time (epoch seconds) of the node's first logged kernel sync with a
        generation above `after_generation`, or None."""
        try:
            with open(self.agent_log(node), errors="replace") as f:
                for line in f:
                    m = SYNC_LINE.match(line)
                    if m and int(m.group(2)) > after_generation:
                        return (datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
                                .replace(tzinfo=datetime.timezone.utc).timestamp())
        except OSError:
            pass
        return None

    def change(self, what, fn, nodes=None, record=True):
        """Runs fn() (one API change, returning {resource: resourceVersion to wait for}), waits
        until every node's kernel has it, and records under `what` the time from the request to
        the last node's kernel commit: the commit's time is the agent's own log line for the
        sync ("sync ... generation=N", written once the kernel acknowledged the batch), so the
        number does not include this test's polling. Changes made with kubectl count from
        kubectl's return (its start-up is not the agent's latency). record=False: not counted (a
        change right after an outage measures the reconnection, not the event path). Returns
        fn's result."""
        nodes = nodes or self.nodes
        before = {n: self._applied.get(n, -1) for n in nodes}
        if any(g < 0 for g in before.values()):
            before = {n: self.status(n)["applied"] for n in nodes}
        self._request_started = None
        t0 = time.time()
        targets = fn()
        start = self._request_started or t0
        self.wait_applied(targets, nodes=nodes)
        if targets and record:
            times = [self.sync_time(n, before[n]) for n in nodes]
            if all(t is not None for t in times):
                self.latencies.setdefault(what, []).append(max(0.0, max(times) - start))
        return targets

    # ---- changes (each returns the wait targets)

    @staticmethod
    def _rv(obj):
        return int(obj["metadata"]["resourceVersion"])

    def apply_policy(self, policy):
        return {"networkpolicies": self._rv(self.api.apply_policy(policy))}

    def kubectl_apply(self, text):
        """kubectl apply -f - as the admin; waits for every object it printed."""
        out = self.api.kubectl("apply", "-o", "json", "-f", "-", input=text).stdout
        self._request_started = time.time()
        doc = json.loads(out)
        items = doc.get("items", [doc])
        targets = {}
        for o in items:
            res = KIND_RESOURCE[o["kind"]]
            targets[res] = max(targets.get(res, 0), self._rv(o))
        return targets

    def kubectl_delete(self, kind, name, namespace):
        """kubectl delete; waits for the deletion's event (a version after the object's last)."""
        path = self.api.object_path(kind, name, namespace)
        before = self._rv(self.api.call("GET", path))
        extra = []
        if kind == "Pod":
            # No kubelet finishes a graceful deletion here: remove the object at once, as the
            # kubelet does once the containers stopped.
            extra = ["--grace-period=0", "--force"]
        self.api.kubectl("delete", kind.lower(), name, "-n", namespace, "--wait=false", *extra)
        self._request_started = time.time()
        return {KIND_RESOURCE[kind]: before + 1}

    def delete(self, kind, name, namespace=None):
        path = self.api.object_path(kind, name, namespace)
        cur = self.api.request("GET", path)
        if cur.status == 404:
            return {}
        self.api.delete(kind, name, namespace)
        return {KIND_RESOURCE[kind]: self._rv(cur.json()) + 1}

    def set_labels(self, kind, name, labels, namespace=None):
        return {KIND_RESOURCE[kind]: self._rv(self.api.label(kind, name, labels, namespace))}

    def set_phase(self, namespace, name, phase):
        return {"pods": self._rv(self.api.set_pod_status(namespace, name, phase=phase))}

    def recreate_pod(self, namespace, name):
        """Deletes a pod (if present) and creates it again from the model."""
        targets = self.delete("Pod", name, namespace)
        return merge(targets, {"pods": self._rv(self.create_pod(
            self.model_object("Pod", namespace, name)))})

    def reset(self):
        """Back to the model alone: every NetworkPolicy deleted, every model namespace and pod
        with its model labels, running, with its addresses. Returns the wait targets."""
        targets = {}
        pols = self.api.call("GET", RESOURCES["networkpolicies"])["items"]
        for p in pols:
            m = p["metadata"]
            self.api.delete("NetworkPolicy", m["name"], m["namespace"])
            merge(targets, {"networkpolicies": self._rv(p) + 1})
        have = {}  # (kind, namespace, name) -> the stored object; one list per kind
        for kind, res in (("Namespace", "namespaces"), ("Pod", "pods")):
            for item in self.api.call("GET", RESOURCES[res])["items"]:
                m = item["metadata"]
                have[(kind, m.get("namespace"), m["name"])] = item
        for o in self.model_objects:
            m = o["metadata"]
            ns = m.get("namespace")
            cur = have.get((o["kind"], ns, m["name"]))
            if o["kind"] == "Pod":
                if cur is None:
                    merge(targets, {"pods": self._rv(self.create_pod(o))})
                    continue
                if (cur.get("status") or {}).get("phase") != "Running" or \
                        cur["metadata"].get("deletionTimestamp"):
                    merge(targets, self.recreate_pod(ns, m["name"]))
                    continue
            labels = cur["metadata"].get("labels") or {}
            want = dict(m.get("labels") or {})
            if o["kind"] == "Namespace":
                want["kubernetes.io/metadata.name"] = m["name"]
            if labels != want:
                merge(targets, self.set_labels(o["kind"], m["name"], want, ns))
        return targets

    def latency_report(self):
        lines = []
        allv = []
        for what, v in sorted(self.latencies.items()):
            allv += v
            lines.append("  %-28s n=%-4d p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms" % (
                what, len(v), 1000 * percentile(v, 50), 1000 * percentile(v, 99),
                1000 * max(v)))
        if allv:
            lines.append("  %-28s n=%-4d p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms" % (
                "all", len(allv), 1000 * percentile(allv, 50), 1000 * percentile(allv, 99),
                1000 * max(allv)))
        return "\n".join(lines)


def merge(a, b):
    """Merges wait targets b into a (the higher resourceVersion per resource); returns a."""
    for k, v in b.items():
        a[k] = max(a.get(k, 0), v)
    return a
