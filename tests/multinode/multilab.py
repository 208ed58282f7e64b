#!/usr/bin/python3
"""The multi-node lab: several simulated Kubernetes nodes, one real etcd and one netpol-agent
per node, made of network namespaces.

Layout (one lab, names `<prefix>-...`):

    <prefix>-ul        the underlay: Linux bridge `ul0` joining every node and etcd
                       (192.168.77.0/24, fd00:77::/64), as the hosts' network would.
    <prefix>-etcd      etcd (Debian's /usr/bin/etcd) on 192.168.77.2:2379, data in a temporary
                       directory; started, killed and restarted by the tests.
    <prefix>-n<i>      node-<i>: `ul` on the underlay (192.168.77.1<i>, fd00:77::1<i>), bridge
                       `cni0` for its pods, forwarding on, netpol-agent with
                       --datastore=etcd://192.168.77.2:2379 and its table `inet netpol`.
    <prefix>-<ns>-<pod> one namespace per pod (tests/conformance/model.yaml's 9 pods), placed
                       on nodes by pod name: a on node-1, b on node-2, c on node-3 (two nodes:
                       c goes to node-1), so every namespace spans the nodes.

Routing is Flannel host-gw / Calico style with the model's addresses unchanged (so the case
files' CIDRs and expectations hold): a pod has its address as /32 and /128 and a default route
via the node's gateway address (10.244.1.1, fd00:10:244:1::1, the same on every node, set on
`cni0`); a node reaches its own pods through `cni0` and each other node's pods through a /32 or
/128 route via that node's underlay address. Every pod-to-pod packet is routed by the nodes it
crosses, so it meets the source node's forward hook (egress of the source pod) and the
destination node's (ingress of the destination pod), each node enforcing only its own pods.

Reuses tests/lab/lab.py for the pods, their servers and the probes (this class is a lab.Lab
whose "node" is many nodes); cleanup likewise removes every `<prefix>-` namespace, killing the
agents, etcd and pod servers inside.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
sys.path.insert(0, os.path.join(ROOT, "tests", "conformance"))

import lab  # noqa: E402
from lab import LabError, run  # noqa: E402

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
ETCD_V4 = "192.168.77.2"
ETCD_PORT = 2379
ETCD_ENDPOINT = "%s:%d" % (ETCD_V4, ETCD_PORT)
UNDERLAY_BRIDGE = "ul0"
PREFIX = "/netpol/v1/"
# Pod name -> node index (0-based), modulo the node count.
PLACEMENT = {"a": 0, "b": 1, "c": 2}


def underlay_v4(i):
    return "192.168.77.%d" % (11 + i)


def underlay_v6(i):
    return "fd00:77::%x" % (0x11 + i)


class MultiLab(lab.Lab):
    """Nodes, etcd and agents. Use as a context manager; `start_etcd()` and `start_agents()`
    after up()."""

    def __init__(self, model, agent, netpolctl, nodes=3, prefix=None, keepalive="1s",
                 extra_ports=(), status_ttl="3s"):
        super().__init__(model, prefix=prefix, extra_ports=extra_ports)
        # --node-status-ttl of every agent: short, so a killed agent shows as stale soon.
        self.status_ttl = status_ttl
        self.agent_bin = agent
        self.netpolctl_bin = netpolctl
        self.keepalive = keepalive
        self.nodes = ["node-%d" % (i + 1) for i in range(nodes)]
        self.node_ns = {n: "%s-n%d" % (self.prefix, i + 1) for i, n in enumerate(self.nodes)}
        self.ul_ns = self.prefix + "-ul"
        self.etcd_ns = self.prefix + "-etcd"
        self.workdir = tempfile.mkdtemp(prefix="netpol-multinode-")
        self.etcd = None
        self.agents = {}
        self.placement = {}
        for key in self.pods:
            name = key.split("/", 1)[1]
            self.placement[key] = self.nodes[PLACEMENT.get(name, 0) % len(self.nodes)]

    # ---- lifecycle

    def down(self):
        self.stop_agents()
        self.kill_etcd()
        super().down()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _make_node(self):
        ul = self.ul_ns
        run(["ip", "netns", "add", ul])
        run(["ip", "-n", ul, "link", "set", "lo", "up"])
        run(["ip", "-n", ul, "link", "add", UNDERLAY_BRIDGE, "type", "bridge",
             "mcast_snooping", "0"])
        run(["ip", "-n", ul, "link", "set", UNDERLAY_BRIDGE, "up"])
        # etcd's namespace on the underlay.
        e = self.etcd_ns
        run(["ip", "netns", "add", e])
        run(["ip", "-n", e, "link", "set", "lo", "up"])
        run(["ip", "-n", ul, "link", "add", "etcd", "type", "veth", "peer", "name", "eth0",
             "netns", e])
        run(["ip", "-n", ul, "link", "set", "etcd", "master", UNDERLAY_BRIDGE, "up"])
        run(["ip", "-n", e, "addr", "add", ETCD_V4 + "/24", "dev", "eth0"])
        run(["ip", "-n", e, "link", "set", "eth0", "up"])
        for i, node in enumerate(self.nodes):
            n = self.node_ns[node]
            run(["ip", "netns", "add", n])
            run(["ip", "netns", "exec", n, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                 "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.accept_dad=0",
                 "net.ipv6.conf.default.accept_dad=0", "net.ipv4.conf.all.rp_filter=0",
                 "net.ipv4.conf.default.rp_filter=0"])
            run(["ip", "-n", n, "link", "set", "lo", "up"])
            port = "n%d" % (i + 1)
            run(["ip", "-n", ul, "link", "add", port, "type", "veth", "peer", "name", "ul",
                 "netns", n])
            run(["ip", "-n", ul, "link", "set", port, "master", UNDERLAY_BRIDGE, "up"])
            run(["ip", "-n", n, "addr", "add", underlay_v4(i) + "/24", "dev", "ul"])
            run(["ip", "-n", n, "addr", "add", underlay_v6(i) + "/64", "dev", "ul", "nodad"])
            run(["ip", "-n", n, "link", "set", "ul", "up"])
            run(["ip", "-n", n, "link", "add", lab.BRIDGE, "type", "bridge", "mcast_snooping",
                 "0"])
            run(["ip", "-n", n, "addr", "add", self.model.v4_gateway, "dev", lab.BRIDGE])
            run(["ip", "-n", n, "addr", "add", self.model.v6_gateway, "dev", lab.BRIDGE,
                 "nodad"])
            run(["ip", "-n", n, "link", "set", lab.BRIDGE, "up"])
        # host-gw: each node routes the other nodes' pods via their underlay address.
        for key, pod in self.pods.items():
            home = self.nodes.index(self.placement[key])
            for node in self.nodes:
                if node == self.placement[key]:
                    continue
                n = self.node_ns[node]
                run(["ip", "-n", n, "route", "add", pod.spec.ipv4 + "/32", "via",
                     underlay_v4(home), "dev", "ul"])
                run(["ip", "-n", n, "-6", "route", "add", pod.spec.ipv6 + "/128", "via",
                     underlay_v6(home), "dev", "ul"])

    def _make_pod(self, pod):
        n, p, s = self.node_ns[self.placement[pod.key]], pod.netns, pod.spec
        gw4 = self.model.v4_gateway.split("/")[0]
        gw6 = self.model.v6_gateway.split("/")[0]
        run(["ip", "netns", "add", p])
        run(["ip", "netns", "exec", p, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
             "net.ipv6.conf.default.accept_dad=0"])
        run(["ip", "-n", n, "link", "add", pod.veth, "type", "veth", "peer", "name", "eth0",
             "netns", p])
        run(["ip", "-n", n, "link", "set", pod.veth, "alias", s.key, "master", lab.BRIDGE, "up"])
        run(["ip", "-n", p, "link", "set", "lo", "up"])
        run(["ip", "-n", p, "link", "set", "eth0", "up"])
        run(["ip", "-n", p, "addr", "add", s.ipv4 + "/32", "dev", "eth0"])
        run(["ip", "-n", p, "addr", "add", s.ipv6 + "/128", "dev", "eth0", "nodad"])
        run(["ip", "-n", p, "route", "add", gw4, "dev", "eth0", "scope", "link"])
        run(["ip", "-n", p, "route", "add", "default", "via", gw4, "dev", "eth0"])
        run(["ip", "-n", p, "-6", "route", "add", gw6, "dev", "eth0"])
        run(["ip", "-n", p, "-6", "route", "add", "default", "via", gw6, "dev", "eth0"])

    # ---- per-node helpers (lab.Lab's node_* act on one node; these take the node)

    def exec_on(self, node, argv, input=None, check=True, timeout=60):
        return run(["ip", "netns", "exec", self.node_ns[node]] + list(argv), input=input,
                   check=check, timeout=timeout)

    def flush_conntrack(self):
        for node in self.nodes:
            cp = self.exec_on(node, ["conntrack", "-F"], check=False)
            if cp.returncode != 0 and "0 flow entries" not in cp.stderr:
                raise LabError("conntrack -F on %s: %s" % (node, cp.stderr.strip()))

    def nft_list(self, table="inet netpol"):
        out = []
        for node in self.nodes:
            cp = self.exec_on(node, ["nft", "list", "table"] + table.split(), check=False)
            out.append("# %s\n%s" % (node, cp.stdout if cp.returncode == 0 else cp.stderr))
        return "\n".join(out)

    # ---- etcd

    def start_etcd(self, flags=()):
        """Starts etcd (`flags` are added to its command line, e.g. raised request limits) and
        waits until it is healthy."""
        if not os.access(ETCD, os.X_OK):
            raise LabError("%s is not installed (apt-get install etcd-server)" % ETCD)
        url = "http://%s" % ETCD_ENDPOINT
        peer = "http://127.0.0.1:2380"
        log = open(os.path.join(self.workdir, "etcd.log"), "a")
        self.etcd = subprocess.Popen(
            ["ip", "netns", "exec", self.etcd_ns, ETCD, "--name=lab",
             "--data-dir=" + os.path.join(self.workdir, "etcd"),
             "--listen-client-urls=" + url, "--advertise-client-urls=" + url,
             "--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
             "--initial-cluster=lab=" + peer, "--grpc-keepalive-min-time=500ms"] + list(flags),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.etcd.poll() is not None:
                raise LabError("etcd exited %s: %s" % (self.etcd.returncode, self.etcd_log()))
            if self.etcdctl(["endpoint", "health"], check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise LabError("etcd did not become healthy in 30s: %s" % self.etcd_log())

    def etcd_log(self, lines=20):
        try:
            with open(os.path.join(self.workdir, "etcd.log")) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def kill_etcd(self):
        if self.etcd is None:
            return
        try:
            os.killpg(self.etcd.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.etcd.wait(timeout=10)
        self.etcd = None

    def etcdctl(self, args, input=None, check=True):
        return run(["ip", "netns", "exec", self.etcd_ns, "env", "ETCDCTL_API=3", ETCDCTL,
                    "--endpoints=" + ETCD_ENDPOINT] + list(args), input=input, check=check)

    def etcd_revision(self):
        out = self.etcdctl(["endpoint", "status", "-w", "json"]).stdout
        return int(json.loads(out)[0]["Status"]["header"]["revision"])

    def objects_at(self, revision=0):
        """{key: mod_revision} of the object keys under PREFIX at `revision` (0: now); None
        when etcd cannot answer for that revision (compacted)."""
        args = ["get", "--prefix", PREFIX, "--keys-only", "-w", "json"]
        if revision:
            args.append("--rev=%d" % revision)
        cp = self.etcdctl(args, check=bool(not revision))
        if cp.returncode != 0:
            return None
        kvs = json.loads(cp.stdout).get("kvs") or []
        return {kv["key"]: int(kv["mod_revision"]) for kv in kvs}

    def objects_revision(self):
        """The newest mod_revision of an object key under PREFIX. The agents' generations follow
        the objects' prefix only: their node status keys raise etcd's own revision, not them."""
        return max(self.objects_at().values(), default=0)

    def same_objects(self, older, newer):
        """Whether etcd held the same object keys and values at both revisions."""
        if older == newer:
            return True
        at_older = self.objects_at(older)
        return at_older is not None and at_older == self.objects_at(newer)

    # ---- agents

    def socket(self, node):
        return os.path.join(self.workdir, node + ".sock")

    def agent_log(self, node):
        return os.path.join(self.workdir, "agent-%s.log" % node)

    def agent_flags(self, node):
        """The flags of `node`'s agent beyond node name, state directory and socket."""
        return ["--table=netpol", "--datastore=etcd://" + ETCD_ENDPOINT,
                "--etcd-keepalive=" + self.keepalive, "--node-status-ttl=" + self.status_ttl]

    def start_agent(self, node, flags=None):
        """Starts `node`'s agent (without waiting: see wait_serving); `flags` replace
        agent_flags(node)."""
        agent = lab.Agent(self.agent_bin, self.netpolctl_bin, self.node_ns[node], self.workdir,
                          flags=self.agent_flags(node) if flags is None else flags, node=node,
                          start=False, socket=self.socket(node),
                          state_dir=os.path.join(self.workdir, "state-" + node),
                          log_path=self.agent_log(node))
        agent.spawn()
        self.agents[node] = agent

    def start_agents(self, timeout=30):
        for node in self.nodes:
            self.start_agent(node)
        self.wait_serving(timeout)

    def wait_serving(self, timeout=30, nodes=None):
        deadline = time.monotonic() + timeout
        for node in nodes or self.nodes:
            while True:
                st = self.status(node)
                if st.get("serving"):
                    break
                if not self.agents[node].running():
                    raise LabError("agent on %s exited %s:\n%s" % (
                        node, self.agents[node].proc.returncode,
                        self.tail(self.agent_log(node))))
                if time.monotonic() > deadline:
                    raise LabError("agent on %s not serving after %ss:\n%s" % (
                        node, timeout, self.tail(self.agent_log(node))))
                time.sleep(0.1)

    def stop_agent(self, node, sig=signal.SIGTERM):
        agent = self.agents.pop(node, None)
        if agent is not None:
            agent.stop(sig)

    def stop_agents(self):
        for node in list(self.agents):
            self.stop_agent(node)

    @staticmethod
    def tail(path, lines=30):
        try:
            with open(path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(%s)" % e

    # ---- the API, through netpolctl on each node's socket

    def netpolctl(self, node, args, input=None, check=True, timeout=90):
        return run([self.netpolctl_bin, "--server=unix://" + self.socket(node)] + list(args),
                   input=input, check=check, timeout=timeout)

    def status(self, node):
        """{"serving": bool, "generation": int, "applied": int} from `netpolctl status`."""
        cp = self.netpolctl(node, ["status"], check=False, timeout=10)
        out = {"serving": False, "generation": -1, "applied": -1, "text": cp.stdout + cp.stderr}
        m = re.search(r"^Serving:\s+(\S+)", cp.stdout, re.M)
        out["serving"] = bool(m and m.group(1) == "yes")
        m = re.search(r"^Generation:\s+(\d+) \(in the kernel: (\d+)\)", cp.stdout, re.M)
        if m:
            out["generation"], out["applied"] = int(m.group(1)), int(m.group(2))
        return out

    def wait_converged(self, timeout=60, nodes=None):
        """Waits until each node's kernel enforces the generation its datastore delivered, at
        least the newest object key's revision in etcd, and every node holds the objects of the
        newest of their generations (etcd's keys compared at both revisions: a node that
        re-listed has its list's revision, which other keys may have raised without any object
        changing). Returns that newest generation."""
        target = self.objects_revision()
        nodes = nodes or self.nodes
        deadline = time.monotonic() + timeout
        while True:
            sts = {node: self.status(node) for node in nodes}
            newest = max(st["generation"] for st in sts.values())
            if (newest >= target and
                    all(st["applied"] == st["generation"] for st in sts.values()) and
                    all(self.same_objects(st["generation"], newest) for st in sts.values())):
                return newest
            if time.monotonic() > deadline:
                raise LabError("nodes did not converge on a generation >= %d (the newest object "
                               "key) after %ss:\n%s" % (target, timeout, "\n".join(
                                   "%s: %s\n%s" % (n, st["text"], self.tail(self.agent_log(n)))
                                   for n, st in sts.items())))
            time.sleep(0.05)

    def place(self, text):
        """Rewrites spec.nodeName of the model's pods in multi-document YAML to their nodes."""
        import cases as caselib
        docs = []
        for doc in caselib._split_documents(text):
            obj = caselib._load(doc) if doc.strip() else None
            if isinstance(obj, dict) and obj.get("kind") == "Pod":
                meta = obj.get("metadata") or {}
                key = "%s/%s" % (meta.get("namespace", "default"), meta.get("name"))
                if key in self.placement:
                    doc, n = re.subn(r"(?m)^(\s*nodeName:\s*).*$",
                                     lambda m: m.group(1) + self.placement[key], doc)
                    if n != 1:
                        raise LabError("pod %s: expected one nodeName line" % key)
            docs.append(doc)
        return "---\n".join(docs)
