#!/usr/bin/python3
"""netpol-cni with real CNI plugins, real namespaces and a real netpol-agent.

A lab node (a network namespace with br_netfilter and forwarding on, as on a Flannel node) runs
netpol-agent. Pods are network namespaces set up by a conflist chaining Debian's `bridge` plugin
(host-local IPAM, bridge cni0) and then `netpol-cni`, invoked exactly as a container runtime
(libcni) invokes plugins: the network configuration on stdin with `name`, `cniVersion` and, from
the second plugin on, `prevResult` (the previous plugin's output) inserted; CNI_* variables in
the environment; DEL in reverse order with the cached result; CHECK in order with it.

What it proves, step by step (each step prints a line; the first failure stops the test with
the expected and observed values, the agent's log and the nft table):
  * VERSION and the error object are what the CNI spec says; netpol-cni passes prevResult
    through byte for byte, for 1.0.0 and 0.4.0 configs.
  * Policies hold on the first packet: probes run the moment ADD returns. An isolated pod is
    unreachable at once; an allowed client reaches its server at once.
  * A pod the agent does not know is enforced as a pod with no labels (default deny applies,
    label-selecting allows do not) until its labels arrive.
  * CHECK passes, and fails with code 100 when the pod's element is removed from the kernel.
  * DEL removes the pod's elements, is idempotent, and succeeds while the agent is down.
  * ADD while the agent is down fails with code 11 naming the socket, within timeoutSeconds.
  * An agent restarted where the pods' netns files are hidden (a tmpfs over /run/netns in its
    own mount namespace, as a DaemonSet that mounts only /run/netpol and /var/lib/netpol sees
    them), with its table deleted meanwhile, enforces every running pod again: probes prove it.
  * An address handed to a new pod while a stale attachment still holds it does not carry the
    old pod's identity.
  * A 1.1.0 configuration: ADD, CHECK, STATUS, GC (removes what `cni.dev/valid-attachments`
    does not list) and DEL; a container without K8S_POD_* is attached as a non-pod.

Usage: cni_test.py --cni PATH --agent PATH --ctl PATH   (root; see tests/lab/README.md)
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lab"))
import lab  # noqa: E402

PLUGIN_DIR = "/usr/lib/cni"
NODE = "node-1"
V4_SUBNET = "10.244.1.0/24"
V6_SUBNET = "fd00:10:244:1::/64"
TIMEOUT_SECONDS = 3
PORT = 80


class Failure(Exception):
    pass


def check(cond, what, **details):
    if not cond:
        lines = [what] + ["  %s: %s" % (k, v) for k, v in details.items()]
        raise Failure("\n".join(lines))


def step(msg):
    print("--- " + msg, flush=True)


def conflist(version, socket, ipam_dir):
    """The network configuration list under test: bridge + host-local, then netpol-cni."""
    return {
        "cniVersion": version,
        "name": "lab-pod-network",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": V4_SUBNET}], [{"subnet": V6_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                },
            },
            {"type": "netpol-cni", "agentSocket": socket, "timeoutSeconds": TIMEOUT_SECONDS},
        ],
    }


BURST = os.path.join(HERE, "burst.py")


class Burst:
    """Connections from a pod to ip:port every 2 ms (burst.py), across an ADD."""

    def __init__(self, netns, ip, port):
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, lab.PYTHON, BURST, ip,
                                      str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True, text=True)
        line = lab._readline(self.proc.stdout, time.monotonic() + 20)
        check(line == "READY", "burst.py did not start", said=line)

    def stop(self):
        """Returns [[start, ok, why]] sorted by start."""
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        line = lab._readline(self.proc.stdout, time.monotonic() + 30)
        self.proc.wait(timeout=10)
        self.proc.stdin.close()
        self.proc.stdout.close()
        return json.loads(line)


def after(results, t):
    return [r for r in results if r[0] >= t]


class Invocation:
    def __init__(self, plugin, command, rc, out, err, stdin, seconds):
        self.plugin, self.command, self.rc = plugin, command, rc
        self.out, self.err, self.stdin, self.seconds = out, err, stdin, seconds

    def __repr__(self):
        return "%s %s: exit %d in %.2fs\n  stdout: %s\n  stderr: %s" % (
            self.plugin, self.command, self.rc, self.seconds, self.out.strip()[:2000],
            self.err.strip()[:2000])


class Runtime:
    """Runs a conflist's plugins the way libcni does (in the node namespace, where the runtime
    lives). Results of ADD are cached per container for DEL and CHECK, as libcni caches them."""

    def __init__(self, node_netns, cni_path):
        self.node_netns = node_netns
        self.cni_path = cni_path
        self.cache = {}  # container id -> raw result text of the last plugin

    def plugin_config(self, netconf, plugin, prev_raw):
        """The stdin of one plugin: its object with name and cniVersion inserted, and the previous
        result as prevResult. prev_raw is spliced in as text, so a plugin that passes it through
        must reproduce it byte for byte."""
        conf = dict(plugin)
        conf["cniVersion"] = netconf["cniVersion"]
        conf["name"] = netconf["name"]
        text = json.dumps(conf)
        if prev_raw is not None:
            text = text[:-1] + ', "prevResult": ' + prev_raw + "}"
        return text

    def invoke(self, netconf, plugin, command, cid, netns, args, prev_raw=None):
        env = dict(os.environ)
        env.update({
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": args,
            "CNI_PATH": self.cni_path,
        })
        stdin = self.plugin_config(netconf, plugin, prev_raw)
        exe = None
        for d in self.cni_path.split(":"):
            if os.path.exists(os.path.join(d, plugin["type"])):
                exe = os.path.join(d, plugin["type"])
                break
        check(exe is not None, "plugin %s not found in %s" % (plugin["type"], self.cni_path))
        t0 = time.monotonic()
        cp = subprocess.run(["ip", "netns", "exec", self.node_netns, exe], input=stdin, env=env,
                            capture_output=True, text=True, timeout=120)
        return Invocation(plugin["type"], command, cp.returncode, cp.stdout, cp.stderr, stdin,
                          time.monotonic() - t0)

    def add(self, netconf, cid, netns, args, between=None):
        """Returns the list of invocations; stops at the first failure (as libcni does).
        `between(i)` (tests only) runs after plugin i succeeded, before the next one."""
        prev, done = None, []
        for i, plugin in enumerate(netconf["plugins"]):
            inv = self.invoke(netconf, plugin, "ADD", cid, netns, args, prev)
            done.append(inv)
            if inv.rc != 0:
                return done
            prev = inv.out
            if between is not None and i + 1 < len(netconf["plugins"]):
                between(i)
        self.cache[cid] = prev
        return done

    def delete(self, netconf, cid, netns, args):
        done = []
        for plugin in reversed(netconf["plugins"]):
            done.append(self.invoke(netconf, plugin, "DEL", cid, netns, args, self.cache.get(cid)))
        if all(i.rc == 0 for i in done):
            self.cache.pop(cid, None)
        return done

    def check(self, netconf, cid, netns, args):
        done = []
        for plugin in netconf["plugins"]:
            inv = self.invoke(netconf, plugin, "CHECK", cid, netns, args, self.cache[cid])
            done.append(inv)
            if inv.rc != 0:
                break
        return done


def has_ip(text, ip):
    """Whether `ip` appears in `text` as a whole address (10.0.0.1 is not in 10.0.0.12)."""
    return re.search(r"(?<![0-9a-fA-F:.])%s(?![0-9a-fA-F:.]*[0-9a-fA-F])" % re.escape(ip),
                     text) is not None


def pod_args(ns, name, extra=""):
    return "IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=x;" \
           "K8S_POD_UID=uid-%s-%s%s" % (ns, name, ns, name, extra)


def parse_error(inv):
    """Asserts the spec's error shape and returns the parsed object."""
    check(inv.rc != 0, "an error must exit non-zero", invocation=inv)
    try:
        obj = json.loads(inv.out)
    except ValueError:
        raise Failure("error output is not JSON: %r" % inv)
    check(isinstance(obj, dict), "error output is an object", invocation=inv)
    check(set(obj) <= {"cniVersion", "code", "msg", "details"}, "error keys", keys=sorted(obj))
    check({"cniVersion", "code", "msg"} <= set(obj), "error keys", keys=sorted(obj))
    check(isinstance(obj["code"], int) and isinstance(obj["msg"], str) and obj["msg"],
          "error code is an integer and msg a non-empty string", error=obj)
    return obj


class NodeAgent(lab.Agent):
    """netpol-agent in the node namespace, its files in the test's directory; with
    `hide_netns`, in its own mount namespace where /run/netns is an empty tmpfs: the pods'
    netns files are invisible, as for an agent container that mounts only /run/netpol and
    /var/lib/netpol."""

    def __init__(self, args, netns, tmp, flags, hide_netns):
        self.hide_netns = hide_netns
        super().__init__(args.agent, args.ctl, netns, tmp, node=NODE, flags=flags)

    def command(self):
        argv = super().command()
        return hidden_netns_argv(argv) if self.hide_netns else argv


def hidden_netns_argv(argv):
    """`argv` in its own mount namespace where /run/netns is an empty tmpfs."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs netpol-test-hidden /run/netns && exec "$@"', "sh"] + argv


class Test:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="netpol-cni-test-")
        self.socket = os.path.join(self.tmp, "agent.sock")
        self.state_dir = os.path.join(self.tmp, "state")
        self.ipam_dir = os.path.join(self.tmp, "ipam")
        self.agent = None
        self.agent_log = os.path.join(self.tmp, "agent.log")
        self.lab = lab.Lab(lab.Model(pods=[]))
        # The runtime looks the plugins up in CNI_PATH; netpol-cni is the built binary.
        self.bin_dir = os.path.join(self.tmp, "bin")
        os.makedirs(self.bin_dir)
        os.symlink(os.path.abspath(args.cni), os.path.join(self.bin_dir, "netpol-cni"))
        self.rt = Runtime(self.lab.node_netns, self.bin_dir + ":" + PLUGIN_DIR)
        self.net = conflist("1.0.0", self.socket, self.ipam_dir)
        self.pods = {}  # key -> dict(cid, netns, ipv4, ipv6)

    # ---- environment

    def up(self):
        lab._install_handlers()
        with lab._LIVE_LOCK:
            lab._LIVE.add(self.lab)
        n = self.lab.node_netns
        lab.run(["ip", "netns", "add", n])
        self.lab.node_sysctl({
            "net.ipv4.ip_forward": 1,
            "net.ipv6.conf.all.forwarding": 1,
            "net.ipv6.conf.all.accept_dad": 0,
            "net.ipv6.conf.default.accept_dad": 0,
        })
        self.lab._br_netfilter()
        lab.run(["ip", "-n", n, "link", "set", "lo", "up"])

    def down(self):
        self.stop_agent()
        self.lab.down()

    def agent_flags(self):
        """The agent's flags beyond node, socket and state. The table is only changed by hand
        once (to see CHECK fail), so an agent that repairs changes made by others at once is
        told not to."""
        flags = ["--table=netpol", "--check-interval=0"]
        helpfull = subprocess.run([self.args.agent, "--helpfull"], capture_output=True,
                                  text=True)
        if "watch_changes" in helpfull.stdout + helpfull.stderr or \
                "--watch-changes" in helpfull.stdout + helpfull.stderr:
            flags.append("--watch-changes=false")
        return flags

    def start_agent(self, hide_netns=False):
        self.agent = NodeAgent(self.args, self.lab.node_netns, self.tmp, self.agent_flags(),
                               hide_netns)

    def stop_agent(self):
        if self.agent is None:
            return
        self.agent.stop(timeout=15)
        self.agent = None

    def read_log(self):
        try:
            with open(self.agent_log) as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def ctl(self, argv, input=None, check_rc=True):
        cp = subprocess.run([self.args.ctl, "--server", "unix://" + self.socket] + argv,
                            input=input, capture_output=True, text=True, timeout=60)
        if check_rc and cp.returncode != 0:
            raise Failure("netpolctl %s: exit %d: %s" % (" ".join(argv), cp.returncode,
                                                         cp.stderr.strip()))
        return cp

    def nft(self):
        return self.lab.nft_list("inet netpol")

    def diagnostics(self, keys):
        out = []
        for argv in (["conntrack", "-L"], ["ip", "neigh"], ["bridge", "fdb", "show", "br", "cni0"],
                     ["ip", "-s", "link"]):
            out.append("node$ %s\n%s" % (" ".join(argv),
                                          self.lab.node_exec(argv, check=False).stdout))
        for key in keys:
            netns = self.lab.pods[key].netns
            for argv in (["ip", "neigh"], ["ss", "-tan"]):
                cp = lab.run(["ip", "netns", "exec", netns] + argv, check=False)
                out.append("%s$ %s\n%s" % (key, " ".join(argv), cp.stdout[-3000:]))
        return "\n".join(out)

    # ---- pods

    def make_netns(self, ns, name):
        """What the runtime does before calling the plugins: a network namespace; here also the
        pod's server (podserver.py on port 80), started before ADD so probes can run the moment
        ADD returns."""
        key = "%s/%s" % (ns, name)
        netns = "%s-%s-%s" % (self.lab.prefix, ns, name)
        lab.run(["ip", "netns", "add", netns])
        lab.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w",
                 "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
        spec = lab.PodSpec(ns, name, "", "")
        pod = lab.Pod(spec, netns, "")
        pod.server = subprocess.Popen(
            ["ip", "netns", "exec", netns, lab.PYTHON, lab.PODSERVER, "--ports", str(PORT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, text=True)
        line = lab._readline(pod.server.stdout, time.monotonic() + 20)
        check(line.startswith("READY"), "pod server for %s did not start" % key, said=line)
        self.lab.pods[key] = pod
        return pod

    def add(self, ns, name, netconf=None, cid=None, extra_args="", between=None):
        """Runs ADD for a new pod; returns (invocations, pod, container id)."""
        netconf = netconf or self.net
        key = "%s/%s" % (ns, name)
        pod = self.lab.pods.get(key) or self.make_netns(ns, name)
        cid = cid or ("c-%s-%s-%d" % (ns, name, int(time.monotonic() * 1000) % 100000))
        invs = self.rt.add(netconf, cid, "/run/netns/" + pod.netns, pod_args(ns, name, extra_args),
                           between)
        if invs[-1].rc == 0 and len(invs) == len(netconf["plugins"]):
            result = json.loads(invs[-1].out)
            for ip in result["ips"]:
                addr = ip["address"].split("/")[0]
                if ":" in addr:
                    pod.spec.ipv6 = addr
                else:
                    pod.spec.ipv4 = addr
            self.pods[key] = {"cid": cid, "netconf": netconf, "args": pod_args(ns, name, extra_args)}
        return invs, pod, cid

    def must_add(self, ns, name, **kw):
        invs, pod, _ = self.add(ns, name, **kw)
        check(all(i.rc == 0 for i in invs) and len(invs) == 2, "ADD %s/%s must succeed" % (ns, name),
              invocations=invs, agent_log=self.read_log())
        # Passthrough: netpol-cni's result is exactly the bridge's.
        check(invs[1].out == invs[0].out, "netpol-cni must output prevResult unchanged",
              bridge=invs[0].out, netpol_cni=invs[1].out)
        return pod

    def delete(self, key, remove_netns=True):
        p = self.pods[key]
        netns = "/run/netns/" + self.lab.pods[key].netns
        invs = self.rt.delete(p["netconf"], p["cid"], netns, p["args"])
        if remove_netns:
            self.remove_netns(key)
        return invs

    def remove_netns(self, key):
        pod = self.lab.pods.pop(key)
        if pod.server is not None:
            pod.server.kill()
            pod.server.wait()
            pod.server.stdout.close()
            pod.server.stdin.close()
        lab.run(["ip", "netns", "del", pod.netns], check=False)

    def check_cmd(self, key):
        p = self.pods[key]
        return self.rt.check(p["netconf"], p["cid"], "/run/netns/" + self.lab.pods[key].netns,
                             p["args"])

    def reach(self, src, dst, family="v4"):
        """Probes src -> dst TCP/80 once (1 s timeout); True when the echo came back."""
        ip = self.lab.pods[dst].ip(family)
        res = self.lab.probe(src, [{"id": "p", "ip": ip, "proto": "TCP", "port": PORT}])["p"]
        return res

    def expect_reach(self, src, dst, want, family="v4"):
        r = self.reach(src, dst, family)
        check(r.ok == want, "%s -> %s (%s TCP/%d): want %s, got %s (%s)" % (
            src, dst, family, PORT, "reachable" if want else "blocked",
            "reachable" if r.ok else "blocked", r.why), nft=self.nft())

    # ---- the test

    def run(self):
        self.up()
        self.check_version_and_errors()
        self.start_agent()
        self.ctl(["apply", "-f", "-"], input=STATE)
        step("state applied: namespace shop, default-deny ingress, web accepts app=client on 80")

        self.must_add("shop", "web")
        # other is isolated by default deny from its first packet: web connects to other's
        # address every 2 ms from the moment the bridge plugin gave it (while netpol-cni runs
        # they connect: nothing isolates other yet); none started after ADD returned may.
        other_ip = "10.244.1.50"
        web_netns = self.lab.pods["shop/web"].netns
        bursts = []
        self.must_add("shop", "other", extra_args=";IP=" + other_ip,
                      between=lambda i: bursts.append(Burst(web_netns, other_ip, PORT)))
        t_added = time.monotonic()
        time.sleep(0.6)
        all_res = bursts[0].stop()
        res = after(all_res, t_added)
        check(len(res) >= 50, "enough connections started after ADD returned", got=len(res))
        check(not any(r[1] for r in res),
              "web -> other connected after other's ADD returned (other must be isolated)",
              connected=[r for r in res if r[1]][:5], nft=self.nft())
        check(any(r[1] for r in all_res if r[0] < t_added),
              "web -> other connected while netpol-cni ran (the probe can see a connection)",
              first=all_res[:3])
        # client's address is in web's allow set from its first packet: client connects to web
        # every 2 ms from the moment the bridge plugin gave it its address (while netpol-cni
        # runs, web drops them); every connection started after ADD returned must connect.
        # (Starting before the bridge plugin returns would race the veth's set-up: a first ARP
        # request lost there is only repeated a second later.)
        client_netns = self.make_netns("shop", "client").netns
        web_ip = self.lab.pods["shop/web"].spec.ipv4
        bursts = []
        self.must_add("shop", "client",
                      between=lambda i: bursts.append(Burst(client_netns, web_ip, PORT)))
        t_added = time.monotonic()
        time.sleep(0.6)
        all_res = bursts[0].stop()
        res = after(all_res, t_added)
        check(len(res) >= 50, "enough connections started after ADD returned", got=len(res))
        failed = [r for r in res if not r[1]]
        check(not failed,
              "client -> web failed after client's ADD returned (the allow must hold at once)",
              failed="%d of %d, from +%.1f ms to +%.1f ms after ADD returned: %s" % (
                  len(failed), len(res), (failed[0][0] - t_added) * 1000 if failed else 0,
                  (failed[-1][0] - t_added) * 1000 if failed else 0, failed[:3]),
              before=[r for r in all_res if r[0] < t_added][-3:], nft=self.nft(),
              diagnostics=self.diagnostics(["shop/web", "shop/client"]))
        before = [r for r in all_res if r[0] < t_added]
        # (The last ones before may connect: the commit precedes the plugin's exit.)
        check(before and not before[0][1],
              "client could not connect while netpol-cni ran (web is isolated until then)",
              first=before[:3], attempts=len(before))
        self.expect_reach("shop/client", "shop/web", True)
        self.expect_reach("shop/other", "shop/web", False)
        self.expect_reach("shop/client", "shop/other", False)
        # Both families: IPv6 too is enforced from the first packet.
        lab.run(["ip", "-n", self.lab.node_netns, "link", "set", "cni0", "type", "bridge",
                 "mcast_snooping", "0"])
        self.expect_reach("shop/client", "shop/web", True, "v6")
        self.expect_reach("shop/other", "shop/web", False, "v6")
        step("first packet: isolated pods unreachable and allowed clients reachable right after ADD")

        # A pod the API has not told the agent about: enforced as a pod with no labels.
        self.must_add("shop", "stranger")
        self.expect_reach("shop/client", "shop/stranger", False)
        self.expect_reach("shop/stranger", "shop/web", False)
        step("unknown pod enforced as a pod with no labels (default deny holds, label allows don't)")

        for key in ("shop/web", "shop/client", "shop/stranger"):
            invs = self.check_cmd(key)
            check(all(i.rc == 0 and i.out == "" for i in invs), "CHECK %s must pass" % key,
                  invocations=invs)
        ip = self.lab.pods["shop/stranger"].spec.ipv4
        self.lab.node_exec(["nft", "delete", "element", "inet", "netpol", "ingress-dispatch-v4",
                            "{ %s }" % ip])
        invs = self.check_cmd("shop/stranger")
        err = parse_error(invs[-1])
        check(invs[-1].plugin == "netpol-cni" and err["code"] == 100 and
              "not in the kernel" in err["msg"], "CHECK must fail with code 100 after tampering",
              error=err)
        step("CHECK passes, and fails with code 100 when the kernel lost the pod's element")

        stranger_ips = (self.lab.pods["shop/stranger"].spec.ipv4,
                        self.lab.pods["shop/stranger"].spec.ipv6)
        invs = self.delete("shop/stranger")
        check(all(i.rc == 0 and i.out == "" for i in invs), "DEL must succeed quietly",
              invocations=invs)
        table = self.nft()
        for a in stranger_ips:
            check(not has_ip(table, a), "DEL must remove %s from the table" % a, nft=table)
        again = self.rt.invoke(self.net, self.net["plugins"][1], "DEL", self.pods["shop/stranger"]["cid"],
                               "", pod_args("shop", "stranger"))
        check(again.rc == 0 and again.out == "", "a second DEL succeeds", invocation=again)
        unknown = self.rt.invoke(self.net, self.net["plugins"][1], "DEL", "never-added", "",
                                 pod_args("shop", "ghost"))
        check(unknown.rc == 0, "DEL of an unknown container succeeds", invocation=unknown)
        pods = json.loads(self.ctl(["get", "pods", "-n", "shop", "-o", "json"]).stdout)
        names = sorted(i["metadata"]["name"] for i in pods.get("items", []))
        check("stranger" not in names, "the pod DEL created for an unknown pod is gone", pods=names)
        step("DEL removes the pod's elements; repeated and unknown DELs succeed")

        self.agent_down()
        self.reuse_after_restart()
        self.old_config_version()
        self.cni_one_one()
        step("PASS")

    def check_version_and_errors(self):
        plugin = self.net["plugins"][1]
        inv = self.rt.invoke(self.net, plugin, "VERSION", "", "", "")
        check(inv.rc == 0, "VERSION exits 0", invocation=inv)
        v = json.loads(inv.out)
        check(v == {"cniVersion": "1.1.0",
                    "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]},
              "VERSION result", got=v)
        bad = dict(self.net, plugins=[self.net["plugins"][0],
                                      dict(plugin, timeoutSeconds="soon")])
        inv = self.rt.invoke(bad, bad["plugins"][1], "ADD", "c1", "/run/netns/none",
                             pod_args("a", "b"), prev_raw='{"cniVersion": "1.0.0"}')
        err = parse_error(inv)
        check(err["code"] == 7 and err["cniVersion"] == "1.0.0" and
              "timeoutSeconds" in err["msg"], "invalid network config: code 7", error=err)
        future = dict(self.net, cniVersion="9.9.9")
        inv = self.rt.invoke(future, plugin, "ADD", "c1", "/run/netns/none", pod_args("a", "b"))
        err = parse_error(inv)
        check(err["code"] == 1, "unsupported cniVersion: code 1", error=err)
        inv = self.rt.invoke(self.net, plugin, "ADD", "c1", "/run/netns/none", pod_args("a", "b"))
        err = parse_error(inv)
        check(err["code"] == 7 and "prevResult" in err["msg"], "ADD without prevResult: code 7",
              error=err)
        step("VERSION and error objects follow the spec")

    def agent_down(self):
        self.stop_agent()
        # ADD while the agent is down: the bridge succeeds, netpol-cni fails with 11 naming the
        # socket once timeoutSeconds passed; the runtime then tears the pod down with DEL.
        t0 = time.monotonic()
        invs, pod, cid = self.add("shop", "late")
        took = time.monotonic() - t0
        check(len(invs) == 2 and invs[0].rc == 0, "the bridge ADD succeeds", invocations=invs)
        err = parse_error(invs[1])
        check(err["code"] == 11 and self.socket in err["msg"],
              "ADD with the agent down: code 11 naming the socket", error=err)
        check(invs[1].seconds <= TIMEOUT_SECONDS + 1.5,
              "netpol-cni gave up within timeoutSeconds (%ss)" % TIMEOUT_SECONDS,
              seconds=invs[1].seconds, total=took)
        dels = self.rt.delete(self.net, cid, "/run/netns/" + pod.netns, pod_args("shop", "late"))
        check(all(i.rc == 0 for i in dels), "DEL after a failed ADD succeeds with the agent down",
              invocations=dels)
        self.remove_netns("shop/late")
        step("agent down: ADD fails with code 11 naming %s after %.1fs; DEL succeeds"
             % (self.socket, invs[1].seconds))

        # While the agent is down: client's DEL comes (it cannot reach the agent: its record
        # stays, stale) but its netns lingers; web and other keep running.
        self.client_ip = self.lab.pods["shop/client"].spec.ipv4
        self.other_ip = self.lab.pods["shop/other"].spec.ipv4
        t0 = time.monotonic()
        invs = self.delete("shop/client", remove_netns=False)
        check(all(i.rc == 0 and i.out == "" for i in invs), "DEL shop/client with the agent down",
              invocations=invs)
        check(time.monotonic() - t0 < 2 * TIMEOUT_SECONDS, "DEL does not hang", invocations=invs)
        # The table goes too (a reboot, `nft flush ruleset`): what the restarted agent enforces
        # comes from its state directory alone.
        self.lab.node_exec(["nft", "delete", "table", "inet", "netpol"])
        # The restarted agent cannot see the pods' netns files.
        seen = lab.run(["ip", "netns", "exec", self.lab.node_netns] +
                       hidden_netns_argv(["ls", "-A", "/run/netns"])).stdout
        check(seen.strip() == "" and os.path.exists("/run/netns/" + self.lab.pods["shop/web"].netns),
              "the hidden view of /run/netns is empty while the pods' netns exist", seen=seen)
        self.start_agent(hide_netns=True)
        log = self.read_log()
        check("netns is gone" not in log and "dropped" not in log,
              "the agent dropped nothing at start", log=log)
        table = self.nft()
        for ip in (self.lab.pods["shop/web"].spec.ipv4, self.other_ip, self.client_ip):
            check(has_ip(table, ip), "the restarted agent enforces %s again" % ip, nft=table)
        # Real packets: web and other are isolated by default deny (client's DEL took its
        # interface away; an allowed client comes back below, with the newcomer's labels).
        self.expect_reach("shop/other", "shop/web", False)
        self.expect_reach("shop/web", "shop/other", False)
        self.expect_reach("shop/other", "shop/web", False, "v6")
        step("agent restarted with the pods' netns hidden and its table gone: every pod enforced")
        invs = self.delete("shop/other")
        check(all(i.rc == 0 and i.out == "" for i in invs), "DEL shop/other", invocations=invs)
        check(not has_ip(self.nft(), self.other_ip), "DEL removed other's elements", nft=self.nft())

    def reuse_after_restart(self):
        # The client's address goes to a new pod while the stale attachment still holds it.
        self.remove_netns("shop/client")
        self.must_add("shop", "newcomer", extra_args=";IP=%s" % self.client_ip)
        check(self.lab.pods["shop/newcomer"].spec.ipv4 == self.client_ip,
              "host-local gave the newcomer the client's address",
              got=self.lab.pods["shop/newcomer"].spec.ipv4, want=self.client_ip)
        self.expect_reach("shop/newcomer", "shop/web", False)
        self.expect_reach("shop/web", "shop/newcomer", False)
        table = self.nft()
        check("%s . tcp . 80" % self.client_ip not in table,
              "the reused address lost the client's allow", nft=table)
        step("address %s reused by shop/newcomer: no allow inherited, isolated at once"
             % self.client_ip)
        self.ctl(["apply", "-f", "-"], input=NEWCOMER_LABELS)
        self.expect_reach("shop/newcomer", "shop/web", True)
        step("newcomer's labels arrive: web's allow applies")

    def old_config_version(self):
        net = conflist("0.4.0", self.socket, self.ipam_dir)
        pod = self.must_add("shop", "legacy", netconf=net)
        result = json.loads(self.rt.cache[self.pods["shop/legacy"]["cid"]])
        check(result.get("cniVersion") == "0.4.0", "0.4.0 result passed through", result=result)
        self.expect_reach("shop/legacy", "shop/web", False)
        invs = self.check_cmd("shop/legacy")
        check(all(i.rc == 0 for i in invs), "CHECK with a 0.4.0 config", invocations=invs)
        invs = self.delete("shop/legacy")
        check(all(i.rc == 0 for i in invs), "DEL with a 0.4.0 config", invocations=invs)
        check(not has_ip(self.nft(), pod.spec.ipv4), "0.4.0 DEL removed the elements", nft=self.nft())
        step("a 0.4.0 conflist: ADD passthrough, CHECK, DEL")


    def cni_one_one(self):
        """A 1.1.0 configuration. Debian's bridge speaks at most 1.0.0, so bridge runs with the
        1.0.0 list and netpol-cni is invoked as a runtime invokes it for a 1.1.0 list: its config
        says 1.1.0 and its prevResult is the bridge's result as 1.1.0 (the same format)."""
        net11 = conflist("1.1.0", self.socket, self.ipam_dir)
        plugin = net11["plugins"][1]
        pod = self.make_netns("shop", "modern")
        cid = "c-shop-modern"
        netns = "/run/netns/" + pod.netns
        args = pod_args("shop", "modern")
        bridge = self.rt.invoke(self.net, self.net["plugins"][0], "ADD", cid, netns, args)
        check(bridge.rc == 0, "bridge ADD", invocation=bridge)
        prev = re.sub(r'"cniVersion":\s*"1\.0\.0"', '"cniVersion": "1.1.0"', bridge.out, count=1)
        check('"1.1.0"' in prev, "prevResult rewritten as 1.1.0", prev=prev)
        result = json.loads(prev)
        for ip in result["ips"]:
            addr = ip["address"].split("/")[0]
            if ":" in addr:
                pod.spec.ipv6 = addr
            else:
                pod.spec.ipv4 = addr
        inv = self.rt.invoke(net11, plugin, "ADD", cid, netns, args, prev)
        check(inv.rc == 0 and inv.out == prev, "1.1.0 ADD passes prevResult through", invocation=inv)
        self.expect_reach("shop/modern", "shop/web", False)
        self.expect_reach("shop/newcomer", "shop/modern", False)
        inv = self.rt.invoke(net11, plugin, "CHECK", cid, netns, args, prev)
        check(inv.rc == 0 and inv.out == "", "1.1.0 CHECK passes", invocation=inv)
        inv = self.rt.invoke(net11, plugin, "STATUS", "", "", "")
        check(inv.rc == 0 and inv.out == "", "STATUS with the agent up", invocation=inv)
        # GC: the runtime still uses web and newcomer only; modern's record goes.
        valid = [{"containerID": self.pods[k]["cid"], "ifname": "eth0"}
                 for k in ("shop/web", "shop/newcomer")]
        gc = dict(plugin)
        gc["cni.dev/valid-attachments"] = valid
        inv = self.rt.invoke(dict(net11, plugins=[net11["plugins"][0], gc]), gc, "GC", "", "", "")
        check(inv.rc == 0, "GC succeeds", invocation=inv)
        table = self.nft()
        check(not has_ip(table, pod.spec.ipv4), "GC removed modern's elements", nft=table)
        check(has_ip(table, self.lab.pods["shop/web"].spec.ipv4), "GC kept web", nft=table)
        self.expect_reach("shop/newcomer", "shop/web", True)
        inv = self.rt.invoke(net11, plugin, "DEL", cid, netns, args, prev)
        check(inv.rc == 0, "1.1.0 DEL after GC succeeds (idempotent)", invocation=inv)
        self.rt.invoke(self.net, self.net["plugins"][0], "DEL", cid, netns, args, bridge.out)
        self.remove_netns("shop/modern")
        step("a 1.1.0 config: ADD passthrough, CHECK, STATUS, GC by valid-attachments, DEL")

        # A runtime outside Kubernetes (no K8S_POD_*): attached as a container that is not a
        # pod. Its address leaves any pod; no policy isolates it, so web reaches it.
        pod = self.make_netns("shop", "plain")
        cid = "c-plain"
        netns = "/run/netns/" + pod.netns
        invs = self.rt.add(self.net, cid, netns, "IgnoreUnknown=1")
        check(all(i.rc == 0 for i in invs) and len(invs) == 2,
              "ADD without K8S_POD_* succeeds", invocations=invs)
        pod.spec.ipv4 = json.loads(invs[-1].out)["ips"][0]["address"].split("/")[0]
        self.expect_reach("shop/web", "shop/plain", True)
        self.expect_reach("shop/plain", "shop/web", False)
        pods = json.loads(self.ctl(["get", "pods", "-n", "shop", "-o", "json"]).stdout
                          or "{}")
        check(not any(has_ip(json.dumps(i), pod.spec.ipv4) for i in pods.get("items", [])),
              "no pod holds the container's address", pods=pods)
        dels = self.rt.delete(self.net, cid, netns, "IgnoreUnknown=1")
        check(all(i.rc == 0 for i in dels), "DEL of the non-pod container", invocations=dels)
        self.remove_netns("shop/plain")
        step("ADD without K8S_POD_*: attached as a non-pod container, reachable, holds no pod")


STATE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: shop, labels: {app: other}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: TCP, port: 80}]
"""

NEWCOMER_LABELS = """
apiVersion: v1
kind: Pod
metadata: {name: newcomer, namespace: shop, labels: {app: client}}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cni", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--ctl", required=True)
    args = ap.parse_args()
    lab.require_root("cni_test")
    for p in ("bridge", "host-local"):
        if not os.path.exists(os.path.join(PLUGIN_DIR, p)):
            print("FAILED: %s/%s missing (apt-get install containernetworking-plugins)"
                  % (PLUGIN_DIR, p), file=sys.stderr)
            return 1
    t = Test(args)
    try:
        t.run()
        return 0
    except (Failure, lab.LabError) as e:
        print("FAILED: %s" % e, file=sys.stderr)
        print("--- agent log:\n" + t.read_log(), file=sys.stderr)
        print("--- nft list table inet netpol:\n" + t.nft(), file=sys.stderr)
        return 1
    finally:
        t.down()
        shutil.rmtree(t.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
