#!/usr/bin/python3
"""netpol-agent --datastore=kubernetes at scale, against the real kube-apiserver v1.28.7
(tests/k8s/apiserver.py: Debian's etcd + the upstream API server).

One command per tier:

    sudo NETPOL_KUBE_APISERVER=$PWD/../shared/k8s/kube-apiserver.gz /usr/bin/python3 \\
        benchmarks/k8s/run.py --agent bazel-bin/agent/netpol-agent \\
        --workload bazel-bin/benchmarks/workload/netpol-workload --tier T2 --changes 100 \\
        --out /tmp/k8s_t2.json

Everything runs inside a network namespace of its own (the script re-executes itself there
with `ip netns exec`): etcd and the API server on 127.0.0.1, the loader, and the agent with
its nftables table. Steps:

1. load: the tier's objects (benchmarks/workload, the same (tier, seed) as every other
   benchmark) are created through the REST API by --procs parallel clients (keep-alive
   HTTPS): Namespaces first, then Pods and NetworkPolicies. A pod is created with
   spec.nodeName, then its addresses and phase Running are written through pods/status, as a
   kubelet does (the API server drops a new pod's status). Time and request rate are reported.
2. size: every resource listed in pages of 500 as the agent lists it; the sum of the pages'
   JSON is the objects' serialized size (what the API server sends, managedFields included).
3. initial sync: netpol-agent starts (--node-name=node-0, the workload's measured node) and
   lists and watches the API server; the time from its start to its first kernel commit (its
   `sync ... generation=N` log line, written once the kernel acknowledged the batch), and its
   peak RSS (VmHWM) then and after --settle seconds, beside the serialized size.
4. changes (--changes N): N changes made one at a time as kubectl makes them, alternating a
   label of one of node-0's pods (its `app` label to another value and back: the policies
   selecting it change) and an edit of a NetworkPolicy of that pod's namespace (a port
   toggled, by replace). Latency: from the request's start to the sync line of the generation
   that holds it (the agent's own log time, not this script's polling); the API server's
   response time is reported apart.

Exit status 1 when the load, the agent or a change fails. Nothing is asserted about time.
"""

import argparse
import datetime
import json
import multiprocessing
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "k8s"))

NODE = "node-0"
SYNC_LINE = re.compile(r"^(\S+Z) I sync kind=(\S+) generation=(\d+) .*elements_changed=(\d+) "
                       r"commands=(\d+)")
RESOURCES = [("namespaces", "/api/v1/namespaces"), ("pods", "/api/v1/pods"),
             ("networkpolicies", "/apis/networking.k8s.io/v1/networkpolicies")]


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))]


def log_time(stamp):
    return (datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
            .replace(tzinfo=datetime.timezone.utc).timestamp())


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


# ------------------------------------------------------------------------------ the loader

class Conn:
    """One keep-alive HTTPS connection to the API server as the admin."""

    def __init__(self, port, ca, token):
        self.port, self.token = port, token
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.check_hostname = False
        self.c = None

    def request(self, method, path, body=None, ctype="application/json"):
        data = json.dumps(body) if body is not None and not isinstance(body, str) else body
        headers = {"Authorization": "Bearer " + self.token, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = ctype
        for attempt in range(20):
            try:
                if self.c is None:
                    self.c = http.client.HTTPSConnection("127.0.0.1", self.port,
                                                         context=self.ctx, timeout=120)
                self.c.request(method, path, body=data, headers=headers)
                r = self.c.getresponse()
                text = r.read()
                if r.status in (429, 500, 503, 504):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                return r.status, text
            except (OSError, http.client.HTTPException):
                if self.c is not None:
                    self.c.close()
                self.c = None
                time.sleep(0.05 * (attempt + 1))
        raise RuntimeError("%s %s: no answer after 20 attempts" % (method, path))


_conn = None


def _worker_init(port, ca, token):
    global _conn
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _conn = Conn(port, ca, token)


def _create(obj):
    """Creates one object as a client would (a pod: then its status); returns (requests,
    error or None)."""
    kind, meta = obj["kind"], obj["metadata"]
    if kind == "Namespace":
        st, body = _conn.request("POST", "/api/v1/namespaces", obj)
        return 1, None if st in (201, 409) else "%s %s: %d %s" % (kind, meta["name"], st, body[:300])
    ns = meta["namespace"]
    if kind == "NetworkPolicy":
        st, body = _conn.request(
            "POST", "/apis/networking.k8s.io/v1/namespaces/%s/networkpolicies" % ns, obj)
        return 1, None if st in (201, 409) else "%s %s/%s: %d %s" % (kind, ns, meta["name"], st,
                                                                     body[:300])
    status = obj.pop("status", None)
    for c in obj["spec"].get("containers", []):
        c.setdefault("image", "registry.invalid/app:1")
    st, body = _conn.request("POST", "/api/v1/namespaces/%s/pods" % ns, obj)
    if st not in (201, 409):
        return 1, "Pod %s/%s: %d %s" % (ns, meta["name"], st, body[:300])
    if not status:
        return 1, None
    patch = {"status": dict(status, phase="Running")}
    st, body = _conn.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (ns, meta["name"]),
                             patch, ctype="application/merge-patch+json")
    return 2, None if st == 200 else "Pod %s/%s status: %d %s" % (ns, meta["name"], st, body[:300])


def _create_chunk(objs):
    n, errors = 0, []
    for o in objs:
        k, err = _create(o)
        n += k
        if err:
            errors.append(err)
    return n, errors


def load(api, objects, procs):
    token = apiserver.ADMIN_TOKEN
    out = {}
    with multiprocessing.Pool(procs, _worker_init, (api.port, api.ca_file, token)) as pool:
        for phase, kinds in (("namespaces", ("Namespace",)),
                             ("pods and policies", ("Pod", "NetworkPolicy"))):
            todo = [o for o in objects if o.get("kind") in kinds]
            chunks = [todo[i:i + 100] for i in range(0, len(todo), 100)]
            t0 = time.monotonic()
            requests = 0
            for i, (n, errors) in enumerate(pool.imap_unordered(_create_chunk, chunks)):
                requests += n
                if errors:
                    raise RuntimeError("load failed: %s" % "; ".join(errors[:3]))
                if i % 100 == 99:
                    log("  %s: %d/%d chunks, %.0f requests/s" % (
                        phase, i + 1, len(chunks), requests / (time.monotonic() - t0)))
            took = time.monotonic() - t0
            out[phase] = {"objects": len(todo), "requests": requests, "seconds": round(took, 1),
                          "requests_per_second": round(requests / took, 1) if took else None}
            log("loaded %d %s in %.1fs (%d requests, %.0f/s)" % (len(todo), phase, took,
                                                                requests, requests / took))
    return out


# The API server's storage encoding is set to JSON (--storage-media-type=application/json), so
# --load=etcd can write objects into etcd in the exact form the API server stores after a
# create and a pods/status write: the defaults it fills in, uid, creationTimestamp and the two
# managedFields entries (the create's and the status write's), minus nothing it serves.
STAMP = "2026-01-01T00:00:00Z"


def _uid(kind, key):
    import hashlib
    h = hashlib.sha256((kind + "/" + key).encode()).hexdigest()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])


def _managed(fields, subresource=None):
    m = {"manager": "netpol-k8sbench", "operation": "Update", "apiVersion": "v1",
         "time": STAMP, "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        m["subresource"] = subresource
    return m


def stored(obj):
    """(etcd key, stored JSON) of a workload object, as the API server would store it."""
    kind, meta = obj["kind"], dict(obj["metadata"])
    name, ns = meta["name"], meta.get("namespace")
    labels = dict(meta.get("labels") or {})
    meta["uid"] = _uid(kind, "%s/%s" % (ns, name))
    meta["creationTimestamp"] = STAMP
    if kind == "Namespace":
        labels["kubernetes.io/metadata.name"] = name
        meta["labels"] = labels
        meta["managedFields"] = [_managed({"f:metadata": {"f:labels": dict(
            {".": {}}, **{"f:" + k: {} for k in labels})}})]
        return ("/registry/namespaces/" + name,
                {"kind": "Namespace", "apiVersion": "v1", "metadata": meta,
                 "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    if kind == "NetworkPolicy":
        meta["generation"] = 1
        meta["managedFields"] = [_managed({"f:spec": {"f:ingress": {}, "f:egress": {},
                                                      "f:podSelector": {},
                                                      "f:policyTypes": {}}})]
        meta["managedFields"][0]["apiVersion"] = "networking.k8s.io/v1"
        spec = dict(obj["spec"])
        for section in ("ingress", "egress"):
            for rule in spec.get(section) or []:
                for port in rule.get("ports") or []:
                    port.setdefault("protocol", "TCP")
        if "policyTypes" not in spec:
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        return ("/registry/networkpolicies/%s/%s" % (ns, name),
                {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
                 "metadata": meta, "spec": spec})
    spec = dict(obj["spec"])
    containers = []
    for c in spec.get("containers") or []:
        c = dict(c, image="registry.invalid/app:1", resources={},
                 terminationMessagePath="/dev/termination-log",
                 terminationMessagePolicy="File", imagePullPolicy="IfNotPresent")
        containers.append(c)
    spec.update(containers=containers, restartPolicy="Always", terminationGracePeriodSeconds=30,
                dnsPolicy="ClusterFirst", securityContext={}, schedulerName="default-scheduler",
                enableServiceLinks=True, preemptionPolicy="PreemptLowerPriority", priority=0)
    status = dict(obj.get("status") or {})
    status.update(phase="Running", qosClass="BestEffort")
    meta["managedFields"] = [
        _managed({"f:metadata": {"f:labels": {"f:" + k: {} for k in labels}},
                  "f:spec": {"f:containers": {}, "f:nodeName": {}, "f:restartPolicy": {}}}),
        _managed({"f:status": {"f:phase": {}, "f:podIP": {}, "f:podIPs": {}}}, "status")]
    return ("/registry/pods/%s/%s" % (ns, name),
            {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec,
             "status": status})


def _put_chunk(args):
    import base64
    port, objs = args
    ops = []
    for o in objs:
        key, value = stored(o)
        ops.append({"requestPut": {
            "key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(json.dumps(value, separators=(",", ":")).encode())
            .decode()}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v3/kv/txn", body=json.dumps({"success": ops}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        return "etcd txn: %d %s" % (r.status, body[:300])
    return None


def load_etcd(api, objects, procs):
    """Writes the objects into etcd, 100 per transaction, namespaces first."""
    out = {}
    with multiprocessing.Pool(procs) as pool:
        for phase, kinds in (("namespaces", ("Namespace",)),
                             ("pods and policies", ("Pod", "NetworkPolicy"))):
            todo = [o for o in objects if o.get("kind") in kinds]
            chunks = [(api.etcd_port, todo[i:i + 100]) for i in range(0, len(todo), 100)]
            t0 = time.monotonic()
            for err in pool.imap_unordered(_put_chunk, chunks):
                if err:
                    raise RuntimeError(err)
            took = time.monotonic() - t0
            out[phase] = {"objects": len(todo), "transactions": len(chunks),
                          "seconds": round(took, 1)}
            log("wrote %d %s into etcd in %.1fs" % (len(todo), phase, took))
    return out


def serialized_size(api):
    conn = Conn(api.port, api.ca_file, apiserver.ADMIN_TOKEN)
    out = {}
    for res, path in RESOURCES:
        total, items, cont = 0, 0, ""
        while True:
            q = "%s?limit=500%s" % (path, "&continue=" + cont if cont else "")
            st, body = conn.request("GET", q)
            if st != 200:
                raise RuntimeError("list %s: %d" % (res, st))
            total += len(body)
            doc = json.loads(body)
            items += len(doc["items"])
            cont = doc["metadata"].get("continue") or ""
            if not cont:
                break
        out[res] = {"objects": items, "json_bytes": total}
    out["total_json_bytes"] = sum(v["json_bytes"] for v in out.values())
    return out


# ------------------------------------------------------------------------------ the agent

class Agent:
    def __init__(self, binary, workdir, kubeconfig):
        self.binary, self.workdir, self.kubeconfig = binary, workdir, kubeconfig
        self.log_path = os.path.join(workdir, "agent.log")
        self.proc = None
        self._offset = 0
        self.generation = -1

    def start(self):
        logf = open(self.log_path, "w")
        argv = [self.binary, "--node-name=" + NODE,
                "--listen=unix://" + os.path.join(self.workdir, "agent.sock"),
                "--state-dir=" + os.path.join(self.workdir, "state"), "--table=netpol",
                "--datastore=kubernetes", "--kubeconfig=" + self.kubeconfig]
        self.started = time.time()
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n=20):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def next_sync(self, after_generation, timeout, on_poll=None):
        """Waits for a sync line with a generation above `after_generation`; returns (time,
        kind, generation, elements_changed)."""
        deadline = time.monotonic() + timeout
        buf = ""
        with open(self.log_path, errors="replace") as f:
            f.seek(self._offset)
            while True:
                chunk = f.read()
                if chunk:
                    buf += chunk
                    while "\n" in buf:
                        line, buf = buf.split("\n", 1)
                        self._offset += len(line.encode()) + 1
                        m = SYNC_LINE.match(line)
                        if m and int(m.group(3)) > after_generation:
                            if " E sync" in line or "error=" in line:
                                raise RuntimeError("the agent's sync failed: " + line)
                            self.generation = int(m.group(3))
                            return (log_time(m.group(1)), m.group(2), int(m.group(3)),
                                    int(m.group(4)), int(m.group(5)))
                if self.proc.poll() is not None:
                    raise RuntimeError("the agent exited %s:\n%s" % (self.proc.returncode,
                                                                     self.tail()))
                if time.monotonic() > deadline:
                    raise RuntimeError("no sync past generation %d in %ss:\n%s" % (
                        after_generation, timeout, self.tail()))
                if on_poll:
                    on_poll()
                time.sleep(0.002)


def perf_start(pid, path):
    """perf record (call graphs, 499 Hz) of `pid` into `path`; None without a path."""
    if not path:
        return None
    return subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_stop(proc):
    if proc is not None:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def initial_sync(agent, settle, perf_path=None):
    agent.start()
    perf = perf_start(agent.proc.pid, perf_path)
    t, kind, gen, elements, _ = agent.next_sync(-1, timeout=900)
    at_commit = proc_status(agent.proc.pid)
    cpu = cpu_seconds(agent.proc.pid)
    perf_stop(perf)
    listed = None
    with open(agent.log_path, errors="replace") as f:
        for line in f:
            if "kubernetes: listed " in line:
                listed = log_time(line.split()[0])
                break
    time.sleep(settle)
    after = proc_status(agent.proc.pid)
    return {
        "start_to_first_commit_s": round(t - agent.started, 3),
        "start_to_lists_published_s": round(listed - agent.started, 3) if listed else None,
        "first_sync_kind": kind, "first_sync_generation": gen,
        "first_sync_elements": elements,
        "agent_cpu_at_first_commit_s": round(cpu, 2),
        "vmhwm_at_first_commit_bytes": at_commit["VmHWM"],
        "vmrss_at_first_commit_bytes": at_commit["VmRSS"],
        "vmhwm_after_settle_bytes": after["VmHWM"],
        "vmrss_after_settle_bytes": after["VmRSS"],
        "settle_s": settle,
    }


# ------------------------------------------------------------------------------ changes

def _selects(selector, labels):
    if selector.get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def pick_targets(objects):
    """From the workload's objects (listing them back from a loaded API server takes minutes):
    a NetworkPolicy selecting a pod of node-0 by its `app` label (matchLabels only), with an
    ingress rule that has ports: (namespace, pod, its app, policy)."""
    local = [o for o in objects if o.get("kind") == "Pod" and
             o["spec"].get("nodeName") == NODE]
    for p in objects:
        if p.get("kind") != "NetworkPolicy":
            continue
        sel = p["spec"].get("podSelector") or {}
        if "app" not in (sel.get("matchLabels") or {}):
            continue
        if not any(r.get("ports") for r in p["spec"].get("ingress") or []):
            continue
        for pod in local:
            m = pod["metadata"]
            if m["namespace"] == p["metadata"]["namespace"] and _selects(sel, m.get("labels")
                                                                          or {}):
                return m["namespace"], m["name"], m["labels"]["app"], p["metadata"]["name"]
    raise RuntimeError("no policy selecting a pod of %s by its app label" % NODE)


def changes(api, agent, n, gap, targets):
    conn = Conn(api.port, api.ca_file, apiserver.ADMIN_TOKEN)
    ns, pod, app, pol = targets
    log("changes: pod %s/%s (app=%s), policy %s/%s" % (ns, pod, app, ns, pol))
    pol_path = "/apis/networking.k8s.io/v1/namespaces/%s/networkpolicies/%s" % (ns, pol)
    pod_path = "/api/v1/namespaces/%s/pods/%s" % (ns, pod)
    st, body = conn.request("GET", pol_path)
    policy = json.loads(body)
    rule = [r for r in policy["spec"]["ingress"] if r.get("ports")][0]
    ports0 = rule["ports"]
    other = [{"protocol": "TCP", "port": 23456}]
    results = {"pod label": [], "policy edit": []}
    details = []
    for i in range(n):
        # Pod away and back, then the policy's ports changed and back: the policy edits land
        # while it selects the pod, so each change alters what node-0's kernel enforces.
        step = i % 4
        if step < 2:
            what = "pod label"
            value = "bench-" + app if step == 0 else app
            method, path, body, ctype = ("PATCH", pod_path,
                                         {"metadata": {"labels": {"app": value}}},
                                         "application/merge-patch+json")
        else:
            what = "policy edit"
            rule["ports"] = other if step == 2 else ports0
            method, path, body, ctype = "PUT", pol_path, policy, "application/json"
        before = agent.generation
        t0 = time.time()
        st, resp = conn.request(method, path, body, ctype=ctype)
        t1 = time.time()
        if st != 200:
            raise RuntimeError("%s: %d %s" % (what, st, resp[:300]))
        if what == "policy edit":
            policy = json.loads(resp)
            rule = [r for r in policy["spec"]["ingress"] if r.get("ports")][0]
        t, kind, gen, elements, commands = agent.next_sync(before, timeout=60)
        results[what].append(t - t0)
        details.append({"what": what, "latency_ms": round(1000 * (t - t0), 2),
                        "api_ms": round(1000 * (t1 - t0), 2), "sync_kind": kind,
                        "generation": gen, "elements_changed": elements,
                        "commands": commands})
        time.sleep(gap)
    summary = {}
    allv = []
    for what, v in results.items():
        allv += v
        summary[what] = {"n": len(v), "p50_ms": round(1000 * percentile(v, 50), 2),
                         "p99_ms": round(1000 * percentile(v, 99), 2),
                         "max_ms": round(1000 * max(v), 2) if v else None}
    summary["all"] = {"n": len(allv), "p50_ms": round(1000 * percentile(allv, 50), 2),
                      "p99_ms": round(1000 * percentile(allv, 99), 2),
                      "max_ms": round(1000 * max(allv), 2) if allv else None}
    api_ms = [d["api_ms"] for d in details]
    summary["api_response_p50_ms"] = round(percentile(api_ms, 50), 2)
    summary["changes_without_kernel_change"] = sum(1 for d in details
                                                   if d["elements_changed"] == 0
                                                   and d["commands"] == 0)
    return summary, details


# ------------------------------------------------------------------------------ main

def inside(args):
    import yaml
    result = {"tier": args.tier, "seed": args.seed, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                          time.gmtime())}
    workdir = tempfile.mkdtemp(prefix="netpol-k8sbench-", dir=args.workdir)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    t0 = time.monotonic()
    text = subprocess.run([args.workload, "--tier", args.tier, "--seed", str(args.seed)],
                          check=True, capture_output=True).stdout
    result["workload_yaml_bytes"] = len(text)
    objects = [o for o in yaml.load_all(text, Loader=yaml.CSafeLoader) if isinstance(o, dict)]
    del text
    log("workload %s: %d objects (%.1fs)" % (args.tier, len(objects), time.monotonic() - t0))
    api = apiserver.APIServer(workdir=os.path.join(workdir, "api"), extra_args=[
        "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
        "--storage-media-type=application/json"])
    agent = None
    try:
        os.makedirs(api.dir)
        api.start()
        log("API server %s" % api.url)
        want = {}
        for o in objects:
            want[o["kind"]] = want.get(o["kind"], 0) + 1
        result["load_method"] = args.load
        targets = pick_targets(objects) if args.changes else None
        if args.load == "rest":
            result["load"] = load(api, objects, args.procs)
        else:
            result["load"] = load_etcd(api, objects, args.procs)
        del objects
        result["size"] = serialized_size(api)
        # The API server serves what was loaded (its watch cache follows etcd); the model's
        # namespaces are there beside the API server's own (default, kube-*).
        for kind, res in (("Pod", "pods"), ("NetworkPolicy", "networkpolicies")):
            deadline = time.monotonic() + 300
            while result["size"][res]["objects"] != want.get(kind, 0):
                if time.monotonic() > deadline:
                    raise RuntimeError("the API server serves %d %s, %d were loaded" % (
                        result["size"][res]["objects"], res, want.get(kind, 0)))
                time.sleep(2)
                result["size"] = serialized_size(api)
        log("serialized: %s" % json.dumps(result["size"]))
        agent = Agent(args.agent, workdir, api.admin_kubeconfig)
        result["initial_sync"] = s = initial_sync(agent, args.settle, args.perf_sync)
        s["vmhwm_over_serialized"] = round(s["vmhwm_at_first_commit_bytes"] /
                                           result["size"]["total_json_bytes"], 2)
        log("initial sync: %s" % json.dumps(s))
        if args.changes:
            perf = perf_start(agent.proc.pid, args.perf_changes)
            result["changes"], result["change_details"] = changes(api, agent, args.changes,
                                                                  args.gap, targets)
            perf_stop(perf)
            log("changes: %s" % json.dumps(result["changes"]))
        st = proc_status(agent.proc.pid)
        result["agent_end"] = {"vmhwm_bytes": st["VmHWM"], "vmrss_bytes": st["VmRSS"]}
    finally:
        if agent:
            agent.stop()
            if args.keep_log:
                subprocess.run(["cp", agent.log_path, args.keep_log])
        api.stop()
        subprocess.run(["rm", "-rf", workdir])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "change_details"}, indent=1))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--tier", default="T2")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--changes", type=int, default=0,
                    help="changes to measure after the initial sync (alternating kinds)")
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between changes")
    ap.add_argument("--procs", type=int, default=12, help="parallel loading clients")
    ap.add_argument("--load", choices=("etcd", "rest"), default="etcd",
                    help="rest: creates through the API (a pod, then pods/status); etcd: "
                    "written into etcd in the API server's stored form (minutes faster on a "
                    "loaded machine; what the agent lists and watches is the same)")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--workdir", default="/dev/shm",
                    help="etcd's data and the agent's state (tmpfs: the disk is not measured)")
    ap.add_argument("--perf-sync", help="perf record the agent's initial sync into this file")
    ap.add_argument("--perf-changes", help="perf record the agent during the changes")
    ap.add_argument("--out")
    ap.add_argument("--keep-log", help="copy the agent's log here")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        print("run as root (a network namespace of its own for the agent's table)",
              file=sys.stderr)
        return 1
    apiserver.require(kubectl=False)
    args.agent = os.path.abspath(args.agent)
    args.workload = os.path.abspath(args.workload)
    ns = "netpol-k8sbench-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        argv = [sys.executable, os.path.abspath(__file__), "--inside"] + sys.argv[1:]
        argv = [a if not a.startswith("--agent=") else "--agent=" + args.agent for a in argv]
        return subprocess.run(["ip", "netns", "exec", ns] + argv + [
            "--agent", args.agent, "--workload", args.workload]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns])


import apiserver  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
