"""The lab around one node, as Services see it: kube-proxy's DNAT in the node, an underlay with a
second node and external clients, servers in the node itself, and flow checks from anywhere.

Builds on tests/lab/lab.py (the node namespace `<prefix>-node` with bridge cni0 and one namespace
per pod). What this module adds, all inside namespaces named `<prefix>-...` so the lab's own
cleanup removes them:

    <prefix>-sw     the underlay switch: bridge br-ul, no addresses, no filtering
      |-- eth1 of <prefix>-node   node-1  172.31.0.2/24  fd00:172:31::2/64  (its InternalIP)
      |-- eth1 of <prefix>-node2  node-2  172.31.0.3/24  fd00:172:31::3/64  (another node, no pods
      |                                   of ours; routes 10.244.1.0/24 via node-1, host-gw style)
      |-- eth0 of <prefix>-ext-a  a client outside the cluster 172.31.0.10  fd00:172:31::a, also
      |                           holding "internet" addresses on lo: 203.0.113.10,
      |                           2001:db8:203::10, and the cloud metadata addresses
      |                           169.254.169.254 and fd00:ec2::254 (node-1 routes them here)
      `-- eth0 of <prefix>-ext-b  another outside client 172.31.0.11  fd00:172:31::b

kube-proxy's Service NAT, in the shapes kube-proxy itself writes them (see KubeProxy):
  * mode "iptables-nft" / "iptables-legacy": an `ip`/`ip6` `nat` table of chains KUBE-SERVICES ->
    KUBE-SVC-<hash> -> KUBE-SEP-<hash> (DNAT), KUBE-NODEPORTS -> KUBE-EXT-<hash> (masquerade
    mark for externalTrafficPolicy Cluster), KUBE-POSTROUTING (MASQUERADE), loaded with
    iptables-restore of that backend;
  * mode "nftables": tables `ip kube-proxy` and `ip6 kube-proxy` with the `service-ips` vmap on
    `daddr . meta l4proto . th dport`, `service-nodeports` on `fib daddr type local`, per-service
    and per-endpoint chains ending in `dnat to`, masquerading by mark.
Everything runs only in namespaces this lab created; the host's tables are never touched.
"""

import argparse
import base64
import concurrent.futures
import dataclasses
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402
import yaml  # noqa: E402  (python3-yaml)

PYTHON = lab.PYTHON
DNS_RESPONDER = os.path.join(HERE, "dnsresponder.py")
DNS_QUERY = os.path.join(HERE, "dnsquery.py")
TABLE = "netpol"

CLUSTER_CIDR = {"v4": "10.244.0.0/16", "v6": "fd00:10:244::/56"}
SERVICE_CIDR = {"v4": "10.96.0.0/16", "v6": "fd00:10:96::/108"}
UNDERLAY_PREFIX = {"v4": 24, "v6": 64}
# Names of places that are not pods, per family.
ADDRESSES = {
    "node-1": {"v4": "172.31.0.2", "v6": "fd00:172:31::2"},
    "node-1/cni0": {"v4": "10.244.1.1", "v6": "fd00:10:244:1::1"},
    "node-2": {"v4": "172.31.0.3", "v6": "fd00:172:31::3"},
    "ext-a": {"v4": "172.31.0.10", "v6": "fd00:172:31::a"},
    "ext-b": {"v4": "172.31.0.11", "v6": "fd00:172:31::b"},
    "internet": {"v4": "203.0.113.10", "v6": "2001:db8:203::10"},
    "metadata": {"v4": "169.254.169.254", "v6": "fd00:ec2::254"},
}
# Addresses ext-a holds on lo and node-1 routes to it.
EXT_A_LOOPBACK = ("internet", "metadata")
FAMILIES = lab.FAMILIES
FAMILY_NFT = {"v4": "ip", "v6": "ip6"}
# Set to 1 to print every check, not only failures.
VERBOSE_ENV = "NETPOL_SVC_VERBOSE"


def check_output(argv, input=None, timeout=60):
    return lab.run(argv, input=input, timeout=timeout).stdout


# --------------------------------------------------------------------------------------------
# State files and the enforce tool


class _Yaml11Dumper(yaml.SafeDumper):
    """Quotes strings YAML 1.1 reads as booleans (a namespace `y` or `n`): Kubernetes and the
    engine's loader read YAML 1.1, PyYAML would write them bare."""


def _represent_str(dumper, s):
    style = '"' if s.lower() in {"y", "n", "yes", "no", "on", "off", "true", "false"} else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Yaml11Dumper.add_representer(str, _represent_str)


def dump_objects(objects):
    return yaml.dump_all(objects, Dumper=_Yaml11Dumper, sort_keys=False,
                         default_flow_style=False)


def load_yaml_file(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def find_tool(path, env, label):
    path = path or os.environ.get(env)
    if not path:
        raise lab.LabError("no %s: pass its path or set $%s" % (label, env))
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        raise lab.LabError("%s: %s is not executable" % (label, path))
    return path


class Enforcer:
    """Writes a whole state (Namespaces, Pods, NetworkPolicies) to a file and runs
    `netpol-enforce --table netpol --node node-1 --state FILE` in the node namespace."""

    def __init__(self, netns, binary, node="node-1"):
        self.netns, self.binary, self.node = netns, binary, node
        self.dir = tempfile.mkdtemp(prefix="netpol-svc-", dir=os.environ.get("TEST_TMPDIR"))
        self.count = 0
        self.last_path = None

    def apply(self, objects, name="state"):
        self.count += 1
        path = os.path.join(self.dir, "%03d-%s.yaml" % (self.count, name.replace("/", "_")))
        with open(path, "w") as f:
            f.write(dump_objects(objects))
        self.last_path = path
        cp = lab.run(["ip", "netns", "exec", self.netns, self.binary, "--table", TABLE,
                      "--node", self.node, "--state", path], check=False, timeout=120)
        if cp.returncode != 0:
            raise lab.LabError("netpol-enforce --state %s: exit %d: %s" % (
                path, cp.returncode, (cp.stderr or cp.stdout).strip()))
        return path


# --------------------------------------------------------------------------------------------
# Services and kube-proxy's NAT


@dataclasses.dataclass
class ServicePort:
    name: str
    protocol: str  # "TCP" or "UDP"
    port: int
    target_port: object  # a number, or a container port name resolved on each endpoint
    node_port: int = 0


@dataclasses.dataclass
class Service:
    namespace: str
    name: str
    cluster_ips: dict  # {"v4": "10.96.0.20", "v6": "fd00:10:96::14"}
    ports: list
    endpoints: list  # pod keys "ns/name" (what the EndpointSlice controller would list)
    external_traffic_policy: str = "Cluster"  # or "Local"

    @property
    def key(self):
        return "%s/%s" % (self.namespace, self.name)


@dataclasses.dataclass
class Endpoint:
    pod: str
    node: str
    ips: dict  # {"v4": ..., "v6": ...}
    port: int


def pod_index(objects):
    return {"%s/%s" % (o["metadata"].get("namespace", "default"), o["metadata"]["name"]): o
            for o in objects if isinstance(o, dict) and o.get("kind") == "Pod"}


def resolve_endpoints(service, sport, pods):
    """The endpoints of one service port: each listed pod with its address per family and the
    target port resolved on it (a name looks up the pod's container ports by name and protocol,
    as the EndpointSlice controller does; pods without the port are left out)."""
    out = []
    for key in service.endpoints:
        pod = pods[key]
        number = None
        if isinstance(sport.target_port, int):
            number = sport.target_port
        else:
            for c in pod["spec"].get("containers") or []:
                for p in c.get("ports") or []:
                    if p.get("name") == sport.target_port and \
                            p.get("protocol", "TCP") == sport.protocol:
                        number = p["containerPort"]
        if number is None:
            continue
        ips = {}
        for e in (pod.get("status") or {}).get("podIPs") or []:
            fam = "v4" if ipaddress.ip_address(e["ip"]).version == 4 else "v6"
            ips.setdefault(fam, e["ip"])
        out.append(Endpoint(key, pod["spec"].get("nodeName"), ips, number))
    return out


def _hash(text):
    """kube-proxy's chain-name hash: base32 of SHA-256, first 16 (iptables) or 8 characters."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def _bracket(ip):
    return "[%s]" % ip if ":" in ip else ip


class KubeProxy:
    """Renders and installs kube-proxy's Service NAT for `services` on one node (a namespace),
    in one of MODES. `node` is the node's name (endpoints on it are local, for
    externalTrafficPolicy Local)."""

    MODES = ("iptables-nft", "iptables-legacy", "nftables")

    def __init__(self, mode, services, objects, node):
        if mode not in self.MODES:
            raise lab.LabError("unknown kube-proxy mode %r (want one of %s)" % (mode, self.MODES))
        self.mode, self.services, self.node = mode, list(services), node
        self.pods = pod_index(objects)

    # ---- iptables mode

    def iptables_restore_text(self, family):
        chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
        rules = [
            '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" '
            '-j KUBE-POSTROUTING',
            "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
            '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring '
            'SNAT" -j MASQUERADE --random-fully',
        ]
        host = "/32" if family == "v4" else "/128"
        filter_rules = []
        for svc in self.services:
            ip = svc.cluster_ips.get(family)
            for sp in svc.ports:
                proto = sp.protocol.lower()
                spn = "%s:%s" % (svc.key, sp.name)
                svc_chain = "KUBE-SVC-" + _hash(spn + proto)[:16]
                ext_chain = "KUBE-EXT-" + _hash(spn + proto)[:16]
                svl_chain = "KUBE-SVL-" + _hash(spn + proto)[:16]
                eps = [e for e in resolve_endpoints(svc, sp, self.pods) if family in e.ips]
                chains.append(svc_chain)
                if ip:
                    rules.append('-A KUBE-SERVICES -d %s%s -p %s -m comment --comment "%s cluster '
                                 'IP" -m %s --dport %d -j %s' % (ip, host, proto, spn, proto,
                                                                 sp.port, svc_chain))
                    rules.append('-A %s ! -s %s -d %s%s -p %s -m comment --comment "%s cluster IP"'
                                 ' -m %s --dport %d -j KUBE-MARK-MASQ' % (
                                     svc_chain, CLUSTER_CIDR[family], ip, host, proto, spn,
                                     proto, sp.port))
                sep_chains = []
                for ep in eps:
                    sep = "KUBE-SEP-" + _hash(spn + proto + ep.ips[family])[:16]
                    chains.append(sep)
                    sep_chains.append((sep, ep))
                    rules.append('-A %s -s %s%s -m comment --comment "%s" -j KUBE-MARK-MASQ' % (
                        sep, ep.ips[family], host, spn))
                    rules.append('-A %s -p %s -m comment --comment "%s" -m %s -j DNAT '
                                 '--to-destination %s:%d' % (sep, proto, spn, proto,
                                                             _bracket(ep.ips[family]), ep.port))
                self._iptables_spread(rules, svc_chain, spn, sep_chains, family)
                if sp.node_port:
                    chains.append(ext_chain)
                    rules.append('-A KUBE-NODEPORTS -p %s -m comment --comment "%s" -m %s '
                                 '--dport %d -j %s' % (proto, spn, proto, sp.node_port, ext_chain))
                    if svc.external_traffic_policy == "Local":
                        chains.append(svl_chain)
                        local = [(c, e) for c, e in sep_chains if e.node == self.node]
                        rules.append('-A %s -m comment --comment "pod traffic for %s external '
                                     'destinations" -s %s -j KUBE-SVC-%s' % (
                                         ext_chain, spn, CLUSTER_CIDR[family], svc_chain[9:]))
                        rules.append("-A %s -j %s" % (ext_chain, svl_chain))
                        if local:
                            self._iptables_spread(rules, svl_chain, spn, local, family)
                        else:
                            # kube-proxy drops these in the filter table (DROP is not a nat
                            # target); the nat chain stays empty.
                            filter_rules.append(
                                '-A KUBE-EXTERNAL-SERVICES -m comment --comment "%s has no local '
                                'endpoints" -m addrtype --dst-type LOCAL -p %s -m %s --dport %d '
                                '-j DROP' % (spn, proto, proto, sp.node_port))
                    else:
                        rules.append('-A %s -m comment --comment "masquerade traffic for %s '
                                     'external destinations" -j KUBE-MARK-MASQ' % (ext_chain, spn))
                        rules.append("-A %s -j %s" % (ext_chain, svc_chain))
        rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: '
                     'this must be the last rule in this chain" -m addrtype --dst-type LOCAL '
                     '-j KUBE-NODEPORTS')
        head = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]",
                ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
        head += [":%s - [0:0]" % c for c in chains]
        text = head + rules + ["COMMIT"]
        if filter_rules:
            text += ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
                     ":OUTPUT ACCEPT [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]",
                     '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes '
                     'externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'] + \
                filter_rules + ["COMMIT"]
        return "\n".join(text + [""])

    @staticmethod
    def _iptables_spread(rules, chain, spn, sep_chains, family):
        # kube-proxy's even spread: rule i of n matches with probability 1/(n-i).
        n = len(sep_chains)
        for i, (sep, ep) in enumerate(sep_chains):
            prob = "" if i == n - 1 else \
                " -m statistic --mode random --probability %.11f" % (1.0 / (n - i))
            rules.append('-A %s -m comment --comment "%s -> %s"%s -j %s' % (
                chain, spn, ep.ips[family], prob, sep))

    # ---- nftables mode

    def nftables_text(self, family):
        fam = FAMILY_NFT[family]
        addr_t = "ipv4_addr" if family == "v4" else "ipv6_addr"
        loopback = "127.0.0.0/8" if family == "v4" else "::1"
        svc_elems, np_elems, no_ep_elems, chains = [], [], [], []
        for svc in self.services:
            ip = svc.cluster_ips.get(family)
            for sp in svc.ports:
                proto = sp.protocol.lower()
                readable = "%s/%s/%s/%s" % (svc.namespace, svc.name, proto, sp.name)
                h = _hash(readable)[:8]
                svc_chain = "service-%s-%s" % (h, readable)
                ext_chain = "external-%s-%s" % (h, readable)
                eps = [e for e in resolve_endpoints(svc, sp, self.pods) if family in e.ips]
                ep_chains = []
                for ep in eps:
                    epname = "endpoint-%s-%s__%s/%d" % (
                        _hash(readable + ep.ips[family])[:8], readable,
                        ep.ips[family].replace(":", "."), ep.port)
                    ep_chains.append((epname, ep))
                    chains.append((epname, [
                        "%s saddr %s jump mark-for-masquerade" % (fam, ep.ips[family]),
                        "meta l4proto %s dnat to %s:%d" % (proto, _bracket(ep.ips[family]),
                                                           ep.port)]))
                body = []
                if ip:
                    body.append("%s daddr %s %s dport %d %s saddr != %s jump mark-for-masquerade"
                                % (fam, ip, proto, sp.port, fam, CLUSTER_CIDR[family]))
                body.append(self._nft_spread(ep_chains))
                chains.append((svc_chain, body))
                if ip:
                    svc_elems.append("%s . %s . %d : goto %s" % (ip, proto, sp.port, svc_chain))
                if sp.node_port:
                    if svc.external_traffic_policy == "Local":
                        local = [(c, e) for c, e in ep_chains if e.node == self.node]
                        ext = ["%s saddr %s goto %s" % (fam, CLUSTER_CIDR[family], svc_chain)]
                        if local:
                            ext.append(self._nft_spread(local))
                        else:
                            no_ep_elems.append("%s . %d : drop" % (proto, sp.node_port))
                    else:
                        ext = ["jump mark-for-masquerade", "goto %s" % svc_chain]
                    chains.append((ext_chain, ext))
                    np_elems.append("%s . %d : goto %s" % (proto, sp.node_port, ext_chain))
        out = ["table %s kube-proxy {" % fam, '\tcomment "rules for kube-proxy"']
        out.append("\tmap service-ips {\n\t\ttype %s . inet_proto . inet_service : verdict\n"
                   '\t\tcomment "ClusterIP, ExternalIP and LoadBalancer IP traffic"%s\n\t}'
                   % (addr_t, self._elements(svc_elems)))
        out.append("\tmap service-nodeports {\n\t\ttype inet_proto . inet_service : verdict\n"
                   '\t\tcomment "NodePort traffic"%s\n\t}' % self._elements(np_elems))
        out.append("\tmap no-endpoint-nodeports {\n\t\ttype inet_proto . inet_service : "
                   'verdict\n\t\tcomment "vmap to drop or reject packets to service nodeports '
                   'with no endpoints"%s\n\t}' % self._elements(no_ep_elems))
        base = [
            ("filter-input", "type filter hook input priority -110; policy accept;",
             ["ct state new jump nodeport-endpoints-check"]),
            ("nodeport-endpoints-check", "", [
                "fib daddr type local %s daddr != %s meta l4proto . th dport "
                "vmap @no-endpoint-nodeports" % (fam, loopback)]),
            ("nat-prerouting", "type nat hook prerouting priority dstnat; policy accept;",
             ["jump services"]),
            ("nat-output", "type nat hook output priority -100; policy accept;",
             ["jump services"]),
            ("nat-postrouting", "type nat hook postrouting priority srcnat; policy accept;",
             ["jump masquerading"]),
            ("mark-for-masquerade", "", ["meta mark set meta mark | 0x4000"]),
            ("masquerading", "", ["meta mark & 0x4000 == 0 return",
                                  "meta mark set meta mark ^ 0x4000",
                                  "masquerade fully-random"]),
            ("services", "", [
                "%s daddr . meta l4proto . th dport vmap @service-ips" % fam,
                "fib daddr type local %s daddr != %s meta l4proto . th dport "
                "vmap @service-nodeports" % (fam, loopback)]),
        ]
        for name, hook, body in base + [(n, "", b) for n, b in chains]:
            lines = ["\tchain %s {" % name]
            if hook:
                lines.append("\t\t" + hook)
            lines += ["\t\t" + r for r in body]
            lines.append("\t}")
            out.append("\n".join(lines))
        out.append("}")
        return "\n".join(out) + "\n"

    @staticmethod
    def _elements(elems):
        return "\n\t\telements = { %s }" % ", ".join(elems) if elems else ""

    @staticmethod
    def _nft_spread(ep_chains):
        if not ep_chains:
            return 'reject comment "no endpoints"'
        return "numgen random mod %d vmap { %s }" % (
            len(ep_chains), ", ".join("%d : goto %s" % (i, c) for i, (c, _) in
                                      enumerate(ep_chains)))

    # ---- installing

    def install(self, netns):
        """Loads the NAT program into namespace `netns` (replacing an earlier one of this mode)."""
        if self.mode == "nftables":
            for fam in FAMILIES:
                t = FAMILY_NFT[fam]
                lab.run(["ip", "netns", "exec", netns, "nft", "destroy", "table", t, "kube-proxy"],
                        check=False)
                lab.run(["ip", "netns", "exec", netns, "nft", "-f", "-"],
                        input=self.nftables_text(fam))
            return
        backend = self.mode.split("-")[1]
        for fam in FAMILIES:
            tool = "%s-%s-restore" % ("iptables" if fam == "v4" else "ip6tables", backend)
            lab.run(["ip", "netns", "exec", netns, tool], input=self.iptables_restore_text(fam))

    def listing(self, netns):
        """What the kernel holds, for failure reports."""
        if self.mode == "nftables":
            return "".join(lab.run(["ip", "netns", "exec", netns, "nft", "list", "table",
                                    FAMILY_NFT[f], "kube-proxy"], check=False).stdout
                           for f in FAMILIES)
        backend = self.mode.split("-")[1]
        return "".join(lab.run(["ip", "netns", "exec", netns, "%s-%s-save" % (t, backend),
                                "-t", "nat"], check=False).stdout
                       for t in ("iptables", "ip6tables"))


# --------------------------------------------------------------------------------------------
# The lab with an underlay


class ServiceLab:
    """A lab.Lab (node-1 and its pods) plus the underlay, node-2 and the outside clients. Use as
    a context manager. `objects` are Kubernetes objects (Namespaces, Pods: the pods of node-1
    become lab pods); `free_ports` maps pod keys to ports their echo server must leave free
    (e.g. the DNS pod, whose port 53 belongs to dnsresponder.py); every pod's
    server also listens on `extra_ports`. Pods' bridge ports are in hairpin mode unless
    `hairpin` is false."""

    def __init__(self, objects, free_ports=None, hairpin=True, extra_ports=()):
        self.objects = list(objects)
        model = lab.model_from_objects(self.objects, node="node-1")
        free_ports = free_ports or {}
        for spec in model.pods:
            if spec.key in free_ports:
                spec.ports = tuple(p for p in spec.ports if p not in free_ports[spec.key])
        self.lab = lab.Lab(model, extra_ports=extra_ports)
        self.prefix = self.lab.prefix
        self.hairpin = hairpin
        self.netns = {"node": self.lab.node_netns, "node-1": self.lab.node_netns,
                      "node-2": self.prefix + "-node2", "ext-a": self.prefix + "-ext-a",
                      "ext-b": self.prefix + "-ext-b"}
        self.switch = self.prefix + "-sw"
        self._procs = []

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    def up(self):
        self.lab.up()
        try:
            self._make_underlay()
            if self.hairpin:
                # A pod reaching itself through its Service leaves and re-enters the same bridge
                # port: the CNI bridge plugin's hairpinMode (kubelet's hairpin-veth).
                for pod in self.lab.pods.values():
                    lab.run(["ip", "-n", self.lab.node_netns, "link", "set", pod.veth, "type",
                             "bridge_slave", "hairpin", "on"])
        except BaseException:
            self.down()
            raise
        return self

    def down(self):
        for p in self._procs:
            try:
                p.stdin.close()
            except (OSError, AttributeError):
                pass
            try:
                p.kill()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            if p.stdout is not None:
                p.stdout.close()
        self._procs = []
        self.lab.down()  # removes every namespace <prefix>-*, ours included

    def _make_underlay(self):
        sw = self.switch
        lab.run(["ip", "netns", "add", sw])
        lab.run(["ip", "-n", sw, "link", "add", "br-ul", "type", "bridge", "mcast_snooping", "0"])
        lab.run(["ip", "-n", sw, "link", "set", "br-ul", "up"])
        for i, (name, ifname) in enumerate((("node-1", "eth1"), ("node-2", "eth1"),
                                            ("ext-a", "eth0"), ("ext-b", "eth0"))):
            ns = self.netns[name]
            if name != "node-1":
                lab.run(["ip", "netns", "add", ns])
                lab.run(["ip", "-n", ns, "link", "set", "lo", "up"])
            lab.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                     "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
            port = "ul-port%d" % i
            lab.run(["ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", ifname,
                     "netns", ns])
            lab.run(["ip", "-n", sw, "link", "set", port, "master", "br-ul", "up"])
            lab.run(["ip", "-n", ns, "link", "set", ifname, "up"])
            for fam in FAMILIES:
                cmd = ["ip", "-n", ns, "addr", "add", "%s/%d" % (ADDRESSES[name][fam],
                                                                 UNDERLAY_PREFIX[fam]),
                       "dev", ifname]
                lab.run(cmd + (["nodad"] if fam == "v6" else []))
        # node-2 forwards (it runs kube-proxy too) and reaches node-1's pods host-gw style.
        lab.run(["ip", "netns", "exec", self.netns["node-2"], "sysctl", "-q", "-w",
                 "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
        for fam in FAMILIES:
            pods = "10.244.1.0/24" if fam == "v4" else "fd00:10:244:1::/64"
            flag = ["-6"] if fam == "v6" else []
            for name in ("node-2", "ext-a", "ext-b"):
                lab.run(["ip", "-n", self.netns[name]] + flag + ["route", "add", pods, "via",
                                                                 ADDRESSES["node-1"][fam]])
            for name in EXT_A_LOOPBACK:
                a = ADDRESSES[name][fam]
                lab.run(["ip", "-n", self.netns["ext-a"], "addr", "add",
                         "%s/%d" % (a, 32 if fam == "v4" else 128), "dev", "lo"])
                lab.run(["ip", "-n", self.netns["node-1"]] + flag + [
                    "route", "add", a, "via", ADDRESSES["ext-a"][fam]])

    # ---- servers

    def start(self, where, argv):
        """Starts `argv` (a Python script and its arguments) in namespace `where` (a name of
        self.netns or a pod key) and waits for its `READY` line. It ends with the lab."""
        ns = self.netns_of(where)
        p = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON] + list(argv),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
        self._procs.append(p)
        line = lab._readline(p.stdout, time.monotonic() + 20)
        if not line.startswith("READY"):
            raise lab.LabError("%s in %s did not start (exit %s, said %r)" % (
                os.path.basename(argv[0]), where, p.poll(), line))
        return p

    def start_server(self, where, ports):
        """An echo server (the lab's podserver.py) on TCP and UDP `ports` in `where`."""
        return self.start(where, [lab.PODSERVER, "--ports", ",".join(map(str, ports))])

    # ---- addresses and probes

    def netns_of(self, where):
        if where in self.netns:
            return self.netns[where]
        if where in self.lab.pods:
            return self.lab.pods[where].netns
        raise lab.LabError("unknown place %r" % where)

    def addr(self, name, family, services=()):
        """The address of a pod key, a name of ADDRESSES, `svc:<ns>/<name>` (its ClusterIP)
        or a literal address."""
        if name in self.lab.pods:
            return self.lab.pods[name].ip(family)
        if name in ADDRESSES:
            return ADDRESSES[name][family]
        if name.startswith("svc:"):
            for s in services:
                if s.key == name[4:]:
                    return s.cluster_ips[family]
            raise lab.LabError("unknown service %s" % name)
        return name

    def probe(self, where, targets, timeout=1.0):
        """Runs the lab's prober in `where`; targets: [{"id", "ip", "proto", "port"}]."""
        if not targets:
            return {}
        req = json.dumps({"timeout": timeout, "targets": list(targets)})
        cp = lab.run(["ip", "netns", "exec", self.netns_of(where), PYTHON, lab.PROBER],
                     input=req, timeout=timeout * 3 + 30)
        try:
            out = json.loads(cp.stdout)
        except ValueError:
            raise lab.LabError("prober in %s: bad output %r (%s)" % (where, cp.stdout, cp.stderr))
        return {r["id"]: lab.Result(bool(r["ok"]), r["why"], r["ms"]) for r in out}

    def dns(self, where, queries, timeout=1.0):
        """Runs dnsquery.py in `where`; returns its results by id."""
        req = json.dumps({"timeout": timeout, "queries": list(queries)})
        cp = lab.run(["ip", "netns", "exec", self.netns_of(where), PYTHON, DNS_QUERY],
                     input=req, timeout=timeout * 3 + 30)
        try:
            return {r["id"]: r for r in json.loads(cp.stdout)}
        except ValueError:
            raise lab.LabError("dnsquery in %s: bad output %r (%s)" % (where, cp.stdout,
                                                                        cp.stderr))

    def flush_conntrack(self):
        for name in ("node-1", "node-2"):
            cp = lab.run(["ip", "netns", "exec", self.netns[name], "conntrack", "-F"],
                         check=False)
            if cp.returncode != 0 and "0 flow entries" not in cp.stderr:
                raise lab.LabError("conntrack -F in %s: %s" % (name, cp.stderr.strip()))

    def conntrack(self, where="node-1", family="v4"):
        cp = lab.run(["ip", "netns", "exec", self.netns[where], "conntrack", "-L", "-f",
                      "ipv4" if family == "v4" else "ipv6"], check=False)
        return cp.stdout

    def nft_list(self, where="node-1", table="inet netpol"):
        cp = lab.run(["ip", "netns", "exec", self.netns[where], "nft", "list", "table"] +
                     table.split(), check=False)
        return cp.stdout if cp.returncode == 0 else "(no table %s: %s)" % (table,
                                                                           cp.stderr.strip())


# --------------------------------------------------------------------------------------------
# Flow expectations


@dataclasses.dataclass
class Flow:
    """One new connection: from `src` (a pod key or a place) to `dst` (pod key, place, svc:...)
    over `proto`/`port`, expected `want` (True = reachable)."""
    src: str
    dst: str
    proto: str
    port: int
    want: bool
    note: str = ""


class Checker:
    """Collects check results; prints one line per check."""

    def __init__(self, verbose=None):
        self.failures = []
        self.count = 0
        self.verbose = os.environ.get(VERBOSE_ENV) == "1" if verbose is None else verbose
        self._mark = (0, 0)

    def check(self, cond, what):
        self.count += 1
        if self.verbose or not cond:
            print("  %s %s" % ("ok  " if cond else "FAIL", what))
        if not cond:
            self.failures.append(what)
        return cond

    def step_done(self):
        """Prints how many checks passed since the last call (the failures are already out)."""
        n, f = self.count - self._mark[0], len(self.failures) - self._mark[1]
        self._mark = (self.count, len(self.failures))
        print("  %d checks, %s" % (n, "%d FAILED" % f if f else "all ok"))

    def summary(self, name):
        print("%s: %d checks, %d failed" % (name, self.count, len(self.failures)))
        for f in self.failures:
            print("  FAILED: %s" % f)
        return 1 if self.failures else 0


def run_flows(slab, flows, checker, families=FAMILIES, services=(), timeout=1.0, label=""):
    """Probes every flow in every family, all sources concurrently, re-probes mismatches once
    with a 3 s timeout (a slow answer on a busy machine is not a block), and records one check
    per (flow, family). Returns {(index, family): Result}."""
    def probe_round(items, tmo):
        per_source = {}
        for (i, fam) in items:
            f = flows[i]
            per_source.setdefault(f.src, []).append(
                {"id": "%d|%s" % (i, fam), "ip": slab.addr(f.dst, fam, services),
                 "proto": f.proto, "port": f.port})
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(per_source))) as ex:
            futs = {s: ex.submit(slab.probe, s, t, tmo) for s, t in per_source.items()}
            got = {}
            for s, fu in futs.items():
                for k, r in fu.result().items():
                    i, fam = k.split("|")
                    got[(int(i), fam)] = r
        return got

    items = [(i, fam) for i in range(len(flows)) for fam in families]
    got = probe_round(items, timeout)
    wrong = [k for k in items if got[k].ok != flows[k[0]].want]
    if wrong:
        got.update(probe_round(wrong, 3.0))
    for (i, fam) in items:
        f, r = flows[i], got[(i, fam)]
        checker.check(r.ok == f.want, "%s%s -> %s (%s) %s %s/%d: %s, want %s%s" % (
            label, f.src, f.dst, slab.addr(f.dst, fam, services), fam, f.proto, f.port,
            "allowed" if r.ok else "blocked (%s)" % r.why,
            "allowed" if f.want else "blocked", " [%s]" % f.note if f.note else ""))
    return got


def policy(ns, name, pod_selector, ingress=None, egress=None, types=None):
    spec = {"podSelector": pod_selector}
    if types:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def namespace(name, labels=None):
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def pod(ns, name, v4, v6, labels=None, ports=(), node="node-1", host_network=False):
    """A Pod object. ports: [(name, number, protocol)]."""
    spec = {"nodeName": node, "containers": [{"name": "main", "ports": [
        {"name": n, "containerPort": c, "protocol": p} for (n, c, p) in ports]}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "labels": dict(labels or {})},
            "spec": spec, "status": {"podIP": v4, "podIPs": [{"ip": v4}, {"ip": v6}]}}


def enforce_main(doc, name, body, add_args=None):
    """The main of a lab test driven through netpol-enforce: parses --enforce (and what
    add_args(parser) adds), then runs body(args, enforce_bin, checker) as root, lab errors
    turned into a failure; returns the checker's exit code (summary under `name`)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--enforce", help="netpol-enforce binary (or $NETPOL_ENFORCE)")
    if add_args:
        add_args(ap)
    args = ap.parse_args()

    def run():
        enforce_bin = find_tool(args.enforce, "NETPOL_ENFORCE", "//tests/tools:netpol-enforce")
        checker = Checker()
        body(args, enforce_bin, checker)
        return checker.summary(name)

    return main_wrapper(name + ".py", run)


def main_wrapper(name, fn):
    """Runs fn() -> exit code, turning lab errors into a failure message."""
    lab.require_root(name)
    try:
        return fn()
    except lab.LabError as e:
        print("FAILED: %s" % e)
        return 1
