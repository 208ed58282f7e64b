#!/usr/bin/python3
"""The netpol lab: one simulated Kubernetes node and its pods, made of network namespaces.

Layout (one lab):

    <prefix>-node      the node's network namespace. Linux bridge `cni0` (as Flannel makes it)
                       with 10.244.1.1/24 and fd00:10:244:1::1/64, br_netfilter on
                       (net.bridge.bridge-nf-call-iptables/-ip6tables = 1, set in this namespace),
                       forwarding on. The engine's table (`inet netpol`) goes here.
    <prefix>-<ns>-<pod> one namespace per pod: `eth0` (veth, peer `vethN` enslaved to cni0) with
                       the pod's IPv4 and IPv6 address and default routes via the bridge. One
                       server process (podserver.py) echoes TCP and UDP on ports 80, 81 and the
                       pod's container ports.

Bridged pod-to-pod packets cross the node's IPv4/IPv6 forward hook thanks to br_netfilter, so an
`inet` table in the node namespace filters them as it would on a real node.

Probes run inside the source pod (prober.py, one process per source pod, all targets at once,
nonblocking sockets, 1 s timeout by default), so a full 9x9 matrix takes about one timeout.

Names carry a unique prefix (`nplab-<pid>-<random>`) so concurrent labs never collide. A lab
removes itself on exit, on SIGINT/SIGTERM/SIGHUP, and `lab.py cleanup --stale` removes what a
killed process left behind.

Module use:
    with lab.Lab(lab.load_model("tests/conformance/model.yaml")) as l:
        m = l.matrix("TCP", 80, "v4")           # {(src_key, dst_key): Result}
        print(lab.render_matrix(l.pod_keys(), m))

CLI: see `lab.py --help` and tests/lab/README.md.
"""

import argparse
import atexit
import concurrent.futures
import dataclasses
import ipaddress
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
PODSERVER = os.path.join(HERE, "podserver.py")
PROBER = os.path.join(HERE, "prober.py")
CONNCLIENT = os.path.join(HERE, "connclient.py")

BRIDGE = "cni0"
DEFAULT_PORTS = (80, 81)
DEFAULT_NODE = "node-1"
DEFAULT_V4_GATEWAY = "10.244.1.1/24"
DEFAULT_V6_GATEWAY = "fd00:10:244:1::1/64"
PREFIX_BASE = "nplab"
STATE_DIR = "/run/netpol-lab"
FAMILIES = ("v4", "v6")
# Environment variable that turns "not root" from a failure into a visible skip.
ALLOW_SKIP_ENV = "NETPOL_LAB_ALLOW_SKIP"
# Set to 1 by .ci/run (forwarded by tools/test): every skip is a failure (DEVELOPERS.md).
CI_ENV = "NETPOL_CI"


class LabError(Exception):
    """A lab operation failed; the message names the command and its stderr."""


# --------------------------------------------------------------------------------------------
# Root check


def in_ci():
    """True when $NETPOL_CI=1: a test that cannot run must fail, never skip."""
    return os.environ.get(CI_ENV) == "1"


def skip_or_fail(reason, allow_skip=True):
    """Ends a test program that cannot run here (not root, a tool or data missing).

    Exits 1 with "FAILED: reason" when $NETPOL_CI=1 or when `allow_skip` is false; otherwise
    exits 0 with a visible SKIPPED line and a <skipped> entry in Bazel's $XML_OUTPUT_FILE, so the
    test report (and tools/test's count) shows a skip, not a pass."""
    if in_ci() or not allow_skip:
        why = "%s=1 makes a skip a failure" % CI_ENV if in_ci() else "not skipped"
        print("FAILED: %s (%s)" % (reason, why), file=sys.stderr)
        sys.exit(1)
    print("SKIPPED: %s (a failure when %s=1)" % (reason, CI_ENV))
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        name = os.environ.get("TEST_TARGET", os.path.basename(sys.argv[0]))
        with open(xml, "w") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="1" '
                    'skipped="1"><testsuite name="%s" tests="1" skipped="1"><testcase '
                    'name="%s"><skipped message="%s"/></testcase></testsuite></testsuites>\n'
                    % (xml_escape(name), xml_escape(name), xml_escape(reason)))
    sys.exit(0)


def skip_test_or_fail(testcase, reason):
    """The unittest form of skip_or_fail: testcase.skipTest(reason), or testcase.fail(reason)
    when $NETPOL_CI=1."""
    if in_ci():
        testcase.fail("%s (%s=1 makes a skip a failure)" % (reason, CI_ENV))
    testcase.skipTest(reason)


def xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def require_root(what="the lab"):
    """Returns when running as root. Otherwise fails (exit 1), unless $NETPOL_LAB_ALLOW_SKIP=1
    asks for a visible skip instead (skip_or_fail; still a failure when $NETPOL_CI=1)."""
    if os.geteuid() == 0:
        return
    reason = "%s needs root (network namespaces, nftables)" % what
    allow = os.environ.get(ALLOW_SKIP_ENV) == "1"
    if not allow and not in_ci():
        reason += "; run as root, or set %s=1 to skip visibly" % ALLOW_SKIP_ENV
    skip_or_fail(reason, allow_skip=allow)


# --------------------------------------------------------------------------------------------
# Commands


def run(argv, input=None, check=True, timeout=60):
    """Runs argv; returns CompletedProcess (text). Raises LabError naming argv and stderr."""
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError("%s: timed out after %ss" % (" ".join(argv), timeout))
    except OSError as e:
        raise LabError("%s: %s" % (" ".join(argv), e))
    if check and cp.returncode != 0:
        raise LabError("%s: exit %d: %s" % (" ".join(argv), cp.returncode,
                                            (cp.stderr or cp.stdout).strip()))
    return cp


def netns_list():
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# The model: which pods exist, with which addresses


@dataclasses.dataclass
class PodSpec:
    namespace: str
    name: str
    ipv4: str
    ipv6: str
    ports: tuple = ()  # container ports (numbers) the server must listen on as well
    labels: dict = dataclasses.field(default_factory=dict)

    @property
    def key(self):
        return "%s/%s" % (self.namespace, self.name)


@dataclasses.dataclass
class Model:
    pods: list
    node: str = DEFAULT_NODE
    v4_gateway: str = DEFAULT_V4_GATEWAY
    v6_gateway: str = DEFAULT_V6_GATEWAY
    objects: list = dataclasses.field(default_factory=list)  # the raw Kubernetes objects


def default_model():
    """Namespaces x, y, z with pods a, b, c on node-1, addressed as tests/conformance/model.yaml
    does: host number 16*ns + pod + 1 (x/a = 17), IPv6 interface id = that number in hex
    (x/a = 10.244.1.17 and fd00:10:244:1::11)."""
    pods = []
    for i, ns in enumerate("xyz"):
        for j, name in enumerate("abc"):
            host = 16 * (i + 1) + j + 1
            pods.append(PodSpec(ns, name, "10.244.1.%d" % host, "fd00:10:244:1::%x" % host))
    return Model(pods=pods)


def _ips_of(pod):
    status = pod.get("status") or {}
    ips = [e.get("ip") for e in status.get("podIPs") or [] if isinstance(e, dict)]
    if status.get("podIP") and status["podIP"] not in ips:
        ips.insert(0, status["podIP"])
    return [ip for ip in ips if ip]


def model_from_objects(objects, node=None):
    """Builds a Model from Kubernetes objects (dicts). Pods on `node` (or every non-hostNetwork
    pod when node is None) become lab pods; each needs one IPv4 and one IPv6 address."""
    pods = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or obj.get("kind") != "Pod":
            continue
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        where = "pod %s/%s" % (meta.get("namespace", "default"), meta.get("name", "#%d" % i))
        if spec.get("hostNetwork"):
            continue
        if node is not None and spec.get("nodeName") not in (None, node):
            continue
        v4 = v6 = None
        for ip in _ips_of(obj):
            addr = ipaddress.ip_address(ip)
            if addr.version == 4 and v4 is None:
                v4 = ip
            elif addr.version == 6 and v6 is None:
                v6 = ip
        if v4 is None or v6 is None:
            raise LabError("%s: status.podIPs: the lab needs one IPv4 and one IPv6 address" % where)
        ports = set()
        for c in spec.get("containers") or []:
            for p in (c or {}).get("ports") or []:
                if isinstance(p, dict) and isinstance(p.get("containerPort"), int):
                    ports.add(p["containerPort"])
        pods.append(PodSpec(meta.get("namespace", "default"), meta["name"], v4, v6,
                            tuple(sorted(ports)), dict(meta.get("labels") or {})))
    if not pods:
        raise LabError("no pods with addresses in the model")
    return Model(pods=pods, node=node or DEFAULT_NODE, objects=list(objects))


def load_model(path, node=None):
    """Reads a multi-document YAML file into a Model: an optional `kind: Lab` document (node name,
    networks.ipv4/ipv6 subnet and gateway: the bridge addresses) and Kubernetes objects
    (Namespaces, Pods; other kinds are kept in `objects` and otherwise ignored; `List`s are
    flattened). The Lab document is not part of `objects`, which is what the engine is given."""
    import yaml  # python3-yaml; imported here so `cleanup` works without it

    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    objects = []
    lab_doc = None
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "List":
            objects.extend(d.get("items") or [])
        elif isinstance(d, dict) and d.get("kind") == "Lab":
            lab_doc = d
        else:
            objects.append(d)
    if lab_doc is not None and node is None:
        node = lab_doc.get("node")
    model = model_from_objects(objects, node=node)
    if lab_doc is not None:
        nets = lab_doc.get("networks") or {}
        for fam, attr in (("ipv4", "v4_gateway"), ("ipv6", "v6_gateway")):
            net = nets.get(fam)
            if not net:
                continue
            try:
                subnet = ipaddress.ip_network(net["subnet"])
                gw = ipaddress.ip_address(net["gateway"])
            except (KeyError, ValueError) as e:
                raise LabError("%s: Lab networks.%s: %s" % (path, fam, e))
            if gw not in subnet:
                raise LabError("%s: Lab networks.%s: gateway %s outside %s" % (path, fam, gw,
                                                                                 subnet))
            setattr(model, attr, "%s/%d" % (gw, subnet.prefixlen))
    return model


# --------------------------------------------------------------------------------------------
# Results and matrices


@dataclasses.dataclass
class Result:
    ok: bool
    why: str
    ms: float = 0.0


def render_matrix(keys, cells, cols=None, mark=None):
    """Renders {(src, dst): bool|Result|None} as a grid: '.' reachable, 'X' blocked, '?' not
    probed. Rows are sources, columns destinations. `mark` is a set of cells to flag with '*'."""
    cols = list(cols or keys)
    width = max([len(k) for k in list(keys) + cols] + [3])
    lines = [" " * width + " " + " ".join(c.rjust(width) for c in cols)]
    for r in keys:
        row = []
        for c in cols:
            v = cells.get((r, c))
            if isinstance(v, Result):
                v = v.ok
            s = "?" if v is None else ("." if v else "X")
            if mark and (r, c) in mark:
                s = "*" + s
            row.append(s.rjust(width))
        lines.append(r.rjust(width) + " " + " ".join(row))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Cleanup of every live lab of this process, on exit and on signals

_LIVE = set()
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _cleanup_live():
    with _LIVE_LOCK:
        labs = list(_LIVE)
    for l in labs:
        try:
            l.down()
        except Exception as e:  # cleanup must go on with the next lab
            print("lab cleanup %s: %s" % (l.prefix, e), file=sys.stderr)


def _on_signal(signum, frame):
    _cleanup_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers():
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_cleanup_live)
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, _on_signal)


def new_prefix(base=PREFIX_BASE):
    return "%s-%d-%04x" % (base, os.getpid(), random.SystemRandom().getrandbits(16))


def cleanup_prefix(prefix):
    """Removes every namespace named `<prefix>*` (killing the processes inside first) and the
    lab descriptors with that prefix. Returns the removed namespace names."""
    removed = []
    for ns in netns_list():
        if not ns.startswith(prefix):
            continue
        pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    if os.path.isdir(STATE_DIR):
        for f in os.listdir(STATE_DIR):
            if f.startswith(prefix) and f.endswith(".json"):
                try:
                    os.unlink(os.path.join(STATE_DIR, f))
                except FileNotFoundError:
                    pass
    return removed


def stale_prefixes():
    """Prefixes of labs whose creating process is gone (names `nplab-<pid>-<hex>`), excluding
    labs kept on purpose by `lab.py create` (their descriptor says keep=true)."""
    out = set()
    for ns in netns_list():
        m = re.match(r"^(%s-(\d+)-[0-9a-f]{4})-" % PREFIX_BASE, ns)
        if not m:
            continue
        prefix, pid = m.group(1), int(m.group(2))
        desc = os.path.join(STATE_DIR, prefix + ".json")
        try:
            with open(desc) as f:
                if json.load(f).get("keep"):
                    continue
        except (OSError, ValueError):
            pass
        if not os.path.exists("/proc/%d" % pid):
            out.add(prefix)
    return sorted(out)


# --------------------------------------------------------------------------------------------
# The lab


@dataclasses.dataclass
class Pod:
    spec: PodSpec
    netns: str
    veth: str  # the node-side interface
    server: object = None  # subprocess.Popen of podserver.py (None when attached)

    @property
    def key(self):
        return self.spec.key

    def ip(self, family):
        return self.spec.ipv4 if family == "v4" else self.spec.ipv6


class Conn:
    """One long-lived TCP connection from a pod (connclient.py in the source pod's namespace).
    Not thread-safe."""

    def __init__(self, src, dst, port, family, proc):
        self.src, self.dst, self.port, self.family = src, dst, port, family
        self.proc = proc
        self.count = 0

    def roundtrip(self, timeout=1.0):
        """Sends a fresh token and waits for its echo. Returns Result(ok, "echo"|"timeout"|...)."""
        self.count += 1
        t0 = time.monotonic()
        try:
            self.proc.stdin.write("t%d %s\n" % (self.count, timeout))
            self.proc.stdin.flush()
        except OSError as e:
            return Result(False, "client gone: %s" % e)
        line = _readline(self.proc.stdout, time.monotonic() + timeout + 10)
        ms = (time.monotonic() - t0) * 1000.0
        if line == "OK":
            return Result(True, "echo", ms)
        return Result(False, line.lower() or "client gone", ms)

    def close(self):
        if self.proc is None:
            return
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.proc = None

    def __repr__(self):
        return "Conn(%s -> %s %s TCP/%d)" % (self.src, self.dst, self.family, self.port)


class Lab:
    """A node namespace with a bridge and one namespace per pod. Use as a context manager, or
    call up() / down(). Thread-compatible: probes may run from several threads, up/down not."""

    def __init__(self, model=None, prefix=None, extra_ports=(), keep=False):
        self.model = model or default_model()
        self.prefix = prefix or new_prefix()
        self.node_netns = self.prefix + "-node"
        self.extra_ports = tuple(extra_ports)
        self.keep = keep  # kept by the CLI across processes: no exit/signal cleanup
        self.pods = {}
        for i, spec in enumerate(self.model.pods):
            if spec.key in self.pods:
                raise LabError("pod %s: listed twice in the model" % spec.key)
            netns = "%s-%s-%s" % (self.prefix, spec.namespace, spec.name)
            self.pods[spec.key] = Pod(spec, netns, "veth%d" % i)
        self._up = False
        self._conns = []

    # ---- lifecycle

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    def pod_keys(self):
        return list(self.pods)

    def ports_of(self, pod):
        return sorted(set(DEFAULT_PORTS) | set(self.extra_ports) | set(pod.spec.ports))

    def up(self):
        """Creates the namespaces, links, addresses and servers. On failure removes everything
        it made and raises LabError."""
        if not self.keep:
            _install_handlers()
            with _LIVE_LOCK:
                _LIVE.add(self)
        try:
            self._make_node()
            for pod in self.pods.values():
                self._make_pod(pod)
            self._start_servers()
            self._write_descriptor()
            self._up = True
        except BaseException:
            self.down()
            raise
        return self

    def down(self):
        """Stops the servers and deletes every namespace of this lab. Idempotent."""
        for c in self._conns:
            c.close()
        self._conns = []
        for pod in self.pods.values():
            if pod.server is not None:
                try:
                    pod.server.stdin.close()
                except OSError:
                    pass
                try:
                    pod.server.kill()
                    pod.server.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
                if pod.server.stdout is not None:
                    pod.server.stdout.close()
                pod.server = None
        cleanup_prefix(self.prefix + "-")
        if os.path.exists(self._descriptor_path()):
            os.unlink(self._descriptor_path())
        self._up = False
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def _make_node(self):
        n = self.node_netns
        run(["ip", "netns", "add", n])
        self.node_sysctl({
            "net.ipv4.ip_forward": 1,
            "net.ipv6.conf.all.forwarding": 1,
            "net.ipv6.conf.all.accept_dad": 0,
            "net.ipv6.conf.default.accept_dad": 0,
        })
        self._br_netfilter()
        run(["ip", "-n", n, "link", "set", "lo", "up"])
        # mcast_snooping off: neighbour discovery must flood without a multicast querier.
        run(["ip", "-n", n, "link", "add", BRIDGE, "type", "bridge", "mcast_snooping", "0"])
        run(["ip", "-n", n, "addr", "add", self.model.v4_gateway, "dev", BRIDGE])
        run(["ip", "-n", n, "addr", "add", self.model.v6_gateway, "dev", BRIDGE, "nodad"])
        run(["ip", "-n", n, "link", "set", BRIDGE, "up"])

    def _br_netfilter(self):
        """Turns on br_netfilter in the node namespace (the sysctls are per namespace since
        Linux 5.3). Loads the module on the host first when it is missing; the host's own
        sysctls are never changed."""
        keys = {"net.bridge.bridge-nf-call-iptables": 1, "net.bridge.bridge-nf-call-ip6tables": 1}
        if not os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
            for modprobe in ("/usr/sbin/modprobe", "/sbin/modprobe"):
                if os.path.exists(modprobe):
                    run([modprobe, "br_netfilter"], check=False)
                    break
        try:
            self.node_sysctl(keys)
        except LabError as e:
            raise LabError("br_netfilter is not available (modprobe br_netfilter): %s" % e)
        for k in keys:
            got = self.node_exec(["sysctl", "-n", k]).stdout.strip()
            if got != "1":
                raise LabError("%s is %r in %s, want 1" % (k, got, self.node_netns))

    def _make_pod(self, pod):
        n, p, s = self.node_netns, pod.netns, pod.spec
        v4 = ipaddress.ip_interface(self.model.v4_gateway)
        v6 = ipaddress.ip_interface(self.model.v6_gateway)
        run(["ip", "netns", "add", p])
        run(["ip", "netns", "exec", p, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
             "net.ipv6.conf.default.accept_dad=0"])
        run(["ip", "-n", n, "link", "add", pod.veth, "type", "veth", "peer", "name", "eth0",
             "netns", p])
        run(["ip", "-n", n, "link", "set", pod.veth, "alias", s.key, "master", BRIDGE, "up"])
        run(["ip", "-n", p, "link", "set", "lo", "up"])
        run(["ip", "-n", p, "link", "set", "eth0", "up"])
        run(["ip", "-n", p, "addr", "add", "%s/%d" % (s.ipv4, v4.network.prefixlen), "dev", "eth0"])
        run(["ip", "-n", p, "addr", "add", "%s/%d" % (s.ipv6, v6.network.prefixlen), "dev", "eth0",
             "nodad"])
        run(["ip", "-n", p, "route", "add", "default", "via", str(v4.ip)])
        run(["ip", "-n", p, "-6", "route", "add", "default", "via", str(v6.ip)])

    def _start_servers(self):
        for pod in self.pods.values():
            ports = ",".join(str(x) for x in self.ports_of(pod))
            argv = ["ip", "netns", "exec", pod.netns, PYTHON, PODSERVER, "--ports", ports]
            if self.keep:
                # A kept lab outlives this process: the servers ignore stdin, `cleanup` kills
                # them by namespace.
                pod.server = subprocess.Popen(argv + ["--detach"], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, start_new_session=True,
                                              text=True)
            else:
                pod.server = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              start_new_session=True, text=True)
        deadline = time.monotonic() + 20
        for pod in self.pods.values():
            line = _readline(pod.server.stdout, deadline)
            if not line.startswith("READY"):
                raise LabError("pod %s: server did not start (exit %s, said %r)"
                               % (pod.key, pod.server.poll(), line))
        if self.keep:
            for pod in self.pods.values():
                pod.server.stdout.close()
                pod.server = None

    def _descriptor_path(self):
        return os.path.join(STATE_DIR, self.prefix + ".json")

    def _write_descriptor(self):
        os.makedirs(STATE_DIR, exist_ok=True)
        desc = {
            "prefix": self.prefix, "keep": self.keep, "node": self.model.node,
            "node_netns": self.node_netns, "v4_gateway": self.model.v4_gateway,
            "v6_gateway": self.model.v6_gateway, "extra_ports": list(self.extra_ports),
            "pods": [dict(dataclasses.asdict(p.spec), netns=p.netns, veth=p.veth)
                     for p in self.pods.values()],
        }
        with open(self._descriptor_path(), "w") as f:
            json.dump(desc, f, indent=1)

    @classmethod
    def attach(cls, prefix):
        """Returns a Lab object for a lab another process created (`lab.py create`)."""
        path = os.path.join(STATE_DIR, prefix + ".json")
        try:
            with open(path) as f:
                desc = json.load(f)
        except OSError as e:
            raise LabError("no lab %s (%s); see `lab.py list`" % (prefix, e))
        pods = [PodSpec(p["namespace"], p["name"], p["ipv4"], p["ipv6"], tuple(p["ports"]),
                        p.get("labels") or {}) for p in desc["pods"]]
        model = Model(pods=pods, node=desc["node"], v4_gateway=desc["v4_gateway"],
                      v6_gateway=desc["v6_gateway"])
        l = cls(model, prefix=desc["prefix"], extra_ports=desc["extra_ports"], keep=True)
        l._up = True
        return l

    # ---- running things in the namespaces

    def node_exec(self, argv, input=None, check=True, timeout=60):
        """Runs argv inside the node namespace."""
        return run(["ip", "netns", "exec", self.node_netns] + list(argv), input=input,
                   check=check, timeout=timeout)

    def node_sysctl(self, values):
        self.node_exec(["sysctl", "-q", "-w"] + ["%s=%s" % kv for kv in values.items()])

    def nft(self, script):
        """Loads an nft script (`nft -f -`) into the node namespace."""
        return self.node_exec(["nft", "-f", "-"], input=script)

    def nft_list(self, table="inet netpol"):
        cp = self.node_exec(["nft", "list", "table"] + table.split(), check=False)
        return cp.stdout if cp.returncode == 0 else "(no table %s: %s)" % (table, cp.stderr.strip())

    def flush_conntrack(self):
        """Forgets every tracked connection of the node, so the next probes are judged as new
        connections and not let through by the established rule of an earlier step."""
        cp = self.node_exec(["conntrack", "-F"], check=False)
        if cp.returncode != 0 and "0 flow entries" not in cp.stderr:
            raise LabError("conntrack -F in %s: %s" % (self.node_netns, cp.stderr.strip()))

    # ---- probes

    def _netns_of(self, src):
        if src == "node":
            return self.node_netns
        if src not in self.pods:
            raise LabError("unknown source pod %r" % src)
        return self.pods[src].netns

    def probe(self, src, targets, timeout=1.0):
        """Probes `targets` ([{"id", "ip", "proto", "port"}]) from pod `src` ("ns/name", or "node"
        for the node itself). Returns {id: Result}."""
        if not targets:
            return {}
        req = json.dumps({"timeout": timeout, "targets": list(targets)})
        cp = run(["ip", "netns", "exec", self._netns_of(src), PYTHON, PROBER], input=req,
                 timeout=timeout * 3 + 30)
        try:
            out = json.loads(cp.stdout)
        except ValueError:
            raise LabError("prober in %s: bad output %r (%s)" % (src, cp.stdout, cp.stderr))
        return {r["id"]: Result(bool(r["ok"]), r["why"], r["ms"]) for r in out}

    def probe_all(self, per_source, timeout=1.0):
        """Runs one prober per source, concurrently. per_source: {src: [target]}.
        Returns {src: {id: Result}}."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(per_source))) as ex:
            futs = {src: ex.submit(self.probe, src, t, timeout) for src, t in per_source.items()}
            return {src: f.result() for src, f in futs.items()}

    def matrices(self, probes, families=FAMILIES, sources=None, dests=None, timeout=1.0):
        """Probes every (source, destination) pair for every (proto, port) in `probes` and every
        family, in one concurrent round. Returns {(family, proto, port): {(src, dst): Result}}.
        Sources may include "node"."""
        sources = list(sources or self.pods)
        dests = list(dests or self.pods)
        per_source = {}
        for src in sources:
            targets = []
            for fam in families:
                for proto, port in probes:
                    for dst in dests:
                        targets.append({"id": "%s|%s|%d|%s" % (fam, proto.upper(), port, dst),
                                        "ip": self.pods[dst].ip(fam), "proto": proto.upper(),
                                        "port": int(port)})
            per_source[src] = targets
        got = self.probe_all(per_source, timeout)
        out = {}
        for src, results in got.items():
            for tid, res in results.items():
                fam, proto, port, dst = tid.split("|")
                out.setdefault((fam, proto, int(port)), {})[(src, dst)] = res
        return out

    def connect(self, src, dst, port, family="v4", timeout=2.0):
        """Opens a TCP connection from pod `src` to pod `dst` (or an address) and keeps it open
        until close() or down(). Raises LabError when the connection cannot be made."""
        ip = self.pods[dst].ip(family) if dst in self.pods else dst
        proc = subprocess.Popen(["ip", "netns", "exec", self._netns_of(src), PYTHON, CONNCLIENT,
                                 ip, str(port), "--connect-timeout", str(timeout)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        line = _readline(proc.stdout, time.monotonic() + timeout + 10)
        conn = Conn(src, dst, port, family, proc)
        if line != "CONNECTED":
            conn.close()
            raise LabError("connect %s -> %s (%s) TCP/%d: %s" % (src, dst, ip, port, line or
                                                                 "no answer from client"))
        self._conns.append(conn)
        return conn

    def matrix(self, proto, port, family="v4", sources=None, dests=None, timeout=1.0):
        """One full matrix: {(src, dst): Result}."""
        return self.matrices([(proto, port)], (family,), sources, dests, timeout)[
            (family, proto.upper(), int(port))]


# --------------------------------------------------------------------------------------------
# The real netpol-agent in a namespace, and netpolctl against it


class Agent:
    """netpol-agent run in a network namespace (`ip netns exec`; or where this process is when
    `netns` is None) with its embedded store in a state directory, its API on a unix socket and
    its output in a log file, all under `workdir`; netpolctl against that socket.

        agent = lab.Agent(args.agent, args.ctl, the_lab.node_netns, workdir,
                          flags=["--revoke-connections=false"])
        agent.apply(path)               # netpolctl apply -f path, or LabError
        out = agent.must("render")      # stdout, or LabError
        cp = agent.ctl("status")        # the CompletedProcess, whatever the exit
        agent.stop()

    The constructor starts the agent and waits until `netpolctl status` answers (start=False
    leaves that to start(), or spawn() and wait_serving()). The log gets a line `=== start N`
    before each start, so log_since_start() reads the latest start's output. Errors are
    LabError, naming the agent's log tail."""

    def __init__(self, agent, ctl, netns, workdir, flags=(), node=DEFAULT_NODE, start=True,
                 socket=None, state_dir=None, log_path=None, timeout=60):
        self.agent_bin, self.ctl_bin = agent, ctl
        self.netns = netns
        self.node = node
        self.flags = list(flags)
        self.socket = socket or os.path.join(workdir, "agent.sock")
        self.server = "unix://" + self.socket
        self.state_dir = state_dir or os.path.join(workdir, "state")
        self.log_path = log_path or os.path.join(workdir, "agent.log")
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.proc = None
        self.starts = 0
        if start:
            try:
                self.start(timeout)
            except BaseException:
                self.stop()
                raise

    def command(self):
        """The agent's command line (a subclass may wrap it, e.g. in `unshare`)."""
        return [self.agent_bin, "--node-name=" + self.node, "--state-dir=" + self.state_dir,
                "--listen=" + self.server] + self.flags

    def argv(self):
        if self.netns is None:
            return self.command()
        # `ip netns exec` execs the command itself: self.proc.pid is the agent's pid (unless
        # command() wraps it).
        return ["ip", "netns", "exec", self.netns] + self.command()

    def spawn(self):
        """Starts the agent without waiting for it; returns the time it was started."""
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write("=== start %d\n" % self.starts)
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        return time.monotonic()

    def wait_serving(self, timeout=60):
        """Waits until `netpolctl status` answers; returns that time. LabError when the agent
        exits first or does not answer within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ctl("status", "--timeout=5s").returncode == 0:
                return time.monotonic()
            if self.proc.poll() is not None:
                raise LabError("netpol-agent exited with %s:\n%s" % (self.proc.returncode,
                                                                     self.log_tail()))
            if time.monotonic() > deadline:
                raise LabError("netpol-agent not serving after %d s:\n%s" % (timeout,
                                                                             self.log_tail()))
            time.sleep(0.02)

    def start(self, timeout=60):
        """spawn() and wait_serving(); returns the time it answered."""
        self.spawn()
        return self.wait_serving(timeout)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends `sig` (SIGTERM: a clean stop) and waits; SIGKILL when it has not exited within
        `timeout` seconds. Does nothing when the agent is not running."""
        if not self.running():
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self):
        """SIGKILLs the agent (checked to be the agent binary, not `ip` still entering the
        namespace) and returns the time. LabError when it had exited before."""
        pid, want = self.proc.pid, os.path.realpath(self.agent_bin)
        deadline = time.monotonic() + 10
        while True:
            try:
                exe = os.path.realpath(os.readlink("/proc/%d/exe" % pid))
            except OSError:
                exe = None  # already exited: wait() below reports how
            if exe is None or exe == want:
                break
            if time.monotonic() > deadline:
                raise LabError("pid %d is still %s, not the agent" % (pid, exe))
            time.sleep(0.0005)
        os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.returncode != -signal.SIGKILL:
            raise LabError("netpol-agent exited with %s before the kill:\n%s"
                           % (self.proc.returncode, self.log_tail()))
        return time.monotonic()

    def ctl(self, *args, input=None, timeout=120):
        """netpolctl ARGS against this agent; the CompletedProcess, whatever its exit."""
        return subprocess.run([self.ctl_bin, "--server=" + self.server] + list(args),
                              input=input, capture_output=True, text=True, timeout=timeout)

    def must(self, *args, input=None, timeout=120):
        """netpolctl ARGS; its stdout, or LabError with its output when it fails."""
        cp = self.ctl(*args, input=input, timeout=timeout)
        if cp.returncode != 0:
            raise LabError("netpolctl %s: exit %d: %s%s" % (" ".join(args), cp.returncode,
                                                            cp.stdout, cp.stderr))
        return cp.stdout

    def apply(self, path):
        return self.must("apply", "-f", path)

    def log_since_start(self):
        """The log of the latest start ('' when there is none yet)."""
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read().rsplit("=== start", 1)[-1]
        except OSError:
            return ""

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError as e:
            return "(no log: %s)" % e


def _readline(stream, deadline):
    fd = stream.fileno()
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            break
        ch = os.read(fd, 1)
        if not ch:
            break
        buf += ch
    return buf.decode(errors="replace").strip()


# --------------------------------------------------------------------------------------------
# CLI


def _model_from_args(args):
    if args.model:
        return load_model(args.model, node=args.node)
    default = os.path.join(os.path.dirname(HERE), "conformance", "model.yaml")
    if os.path.exists(default):
        return load_model(default, node=args.node)
    return default_model()


def _ports(text):
    return tuple(int(x) for x in text.split(",") if x.strip()) if text else ()


def cmd_create(args):
    require_root("lab.py create")
    l = Lab(_model_from_args(args), prefix=args.prefix or new_prefix(), keep=True,
            extra_ports=_ports(args.ports))
    t0 = time.monotonic()
    l.up()
    print("lab %s up in %.2fs; node namespace %s (bridge %s %s %s)"
          % (l.prefix, time.monotonic() - t0, l.node_netns, BRIDGE, l.model.v4_gateway,
             l.model.v6_gateway))
    for p in l.pods.values():
        print("  %-8s %-28s %-14s %-22s ports %s" % (p.key, p.netns, p.spec.ipv4, p.spec.ipv6,
                                                     ",".join(map(str, l.ports_of(p)))))
    print("remove with: %s cleanup --prefix %s" % (sys.argv[0], l.prefix))
    return 0


def cmd_matrix(args):
    require_root("lab.py matrix")
    l = Lab.attach(args.prefix)
    fams = FAMILIES if args.family == "both" else (args.family,)
    sources = l.pod_keys() + (["node"] if args.from_node else [])
    t0 = time.monotonic()
    ms = l.matrices([(args.proto, args.port)], fams, sources=sources, timeout=args.timeout)
    took = time.monotonic() - t0
    for fam in fams:
        print("%s %s/%d (rows: from, columns: to; '.' reachable, 'X' blocked)"
              % (fam, args.proto.upper(), args.port))
        print(render_matrix(sources, ms[(fam, args.proto.upper(), args.port)],
                            cols=l.pod_keys()))
    print("probed %d pairs in %.2fs" % (sum(len(m) for m in ms.values()), took))
    return 0


def cmd_probe(args):
    require_root("lab.py probe")
    l = Lab.attach(args.prefix)
    fams = FAMILIES if args.family == "both" else (args.family,)
    targets = []
    for fam in fams:
        ip = l.pods[args.to].ip(fam) if args.to in l.pods else args.to
        targets.append({"id": fam, "ip": ip, "proto": args.proto.upper(), "port": args.port})
    res = l.probe(args.src, targets, args.timeout)
    for t in targets:
        r = res[t["id"]]
        print("%s -> %s %s/%d: %s (%s, %.1f ms)" % (args.src, t["ip"], t["proto"], t["port"],
                                                     "reachable" if r.ok else "BLOCKED", r.why,
                                                     r.ms))
    return 0 if all(r.ok for r in res.values()) else 3


def cmd_list(args):
    seen = {}
    for ns in netns_list():
        m = re.match(r"^(%s-\d+-[0-9a-f]{4})-" % PREFIX_BASE, ns)
        if m:
            seen.setdefault(m.group(1), []).append(ns)
    for prefix, names in sorted(seen.items()):
        print("%s: %d namespaces" % (prefix, len(names)))
    return 0


def cmd_cleanup(args):
    require_root("lab.py cleanup")
    if args.stale:
        prefixes = stale_prefixes()
    elif args.prefix:
        prefixes = [args.prefix]
    else:
        print("cleanup: give --prefix PREFIX or --stale", file=sys.stderr)
        return 2
    for prefix in prefixes:
        removed = cleanup_prefix(prefix)
        print("%s: removed %d namespaces" % (prefix, len(removed)))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lab.py", description="netpol network-namespace lab")
    sub = ap.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("create", help="build a lab and keep it until `cleanup`")
    c.add_argument("--model", help="Kubernetes YAML with the pods (default: "
                   "tests/conformance/model.yaml, else x,y,z x a,b,c)")
    c.add_argument("--node", default=None, help="only pods with this spec.nodeName")
    c.add_argument("--prefix", help="name prefix (default nplab-<pid>-<random>)")
    c.add_argument("--ports", help="extra server ports, comma-separated")
    c.set_defaults(fn=cmd_create)

    for name, fn, hlp in (("matrix", cmd_matrix, "probe every pod pair"),
                          ("probe", cmd_probe, "probe one pair")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--prefix", required=True)
        p.add_argument("--proto", default="TCP", choices=["TCP", "UDP", "tcp", "udp"])
        p.add_argument("--port", type=int, default=80)
        p.add_argument("--family", default="both", choices=["v4", "v6", "both"])
        p.add_argument("--timeout", type=float, default=1.0)
        p.set_defaults(fn=fn)
        if name == "probe":
            p.add_argument("--from", dest="src", required=True, help="pod ns/name or node")
            p.add_argument("--to", required=True, help="pod ns/name or an address")
        else:
            p.add_argument("--from-node", action="store_true", help="add the node as a source")

    l = sub.add_parser("list", help="list labs on this machine")
    l.set_defaults(fn=cmd_list)

    k = sub.add_parser("cleanup", help="remove a lab, or every lab whose process died")
    k.add_argument("--prefix", help="remove every namespace whose name starts with this")
    k.add_argument("--stale", action="store_true",
                   help="remove labs whose creating process is gone (kept labs excepted)")
    k.set_defaults(fn=cmd_cleanup)

    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except LabError as e:
        print("lab.py %s: %s" % (args.cmd, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
