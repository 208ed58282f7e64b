#!/usr/bin/python3
"""deploy/install-cni.sh on sample Flannel configurations in temporary CNI directories: install
chains netpol-cni after Flannel's plugins in a file that sorts first, installing twice gives the
same files as once, uninstall restores the directories byte for byte, and bad input (no Flannel,
malformed JSON, an unsupported cniVersion, a file sorting before ours) is an error that changes
nothing. The copied plugin is the real netpol-cni and answers CNI VERSION.

    install_cni_test.py --script deploy/install-cni.sh --cni bazel-bin/cni/netpol-cni

Closing line `N passed, N failed`.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Failure, check, run  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "testdata")
OURS = "00-netpol.conflist"


def snapshot(*dirs):
    """{relative path: (mode, bytes)} of every file under the directories."""
    out = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, os.path.dirname(d))] = (os.stat(p).st_mode, fh.read())
    return out


class Node:
    """A temporary node: etc/cni/net.d with the given files, opt/cni/bin with a bridge stand-in."""

    def __init__(self, args, files):
        self.args = args
        self.root = tempfile.mkdtemp(prefix="netpol-install-cni-")
        self.conf = os.path.join(self.root, "net.d")
        self.bin = os.path.join(self.root, "bin")
        os.makedirs(self.conf)
        os.makedirs(self.bin)
        with open(os.path.join(self.bin, "flannel"), "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(os.path.join(self.bin, "flannel"), 0o755)
        for name, src in files.items():
            shutil.copy(os.path.join(TESTDATA, src), os.path.join(self.conf, name))

    def run(self, mode, **env):
        e = dict(os.environ, CNI_CONF_DIR=self.conf, CNI_BIN_DIR=self.bin,
                 NETPOL_CNI_BINARY=self.args.cni, NETPOL_CNI_WAIT_SECONDS="0")
        e.update(env)
        return subprocess.run(["/bin/sh", self.args.script, mode], env=e, capture_output=True,
                              text=True, timeout=60)

    def state(self):
        return snapshot(self.conf, self.bin)

    def ours(self):
        with open(os.path.join(self.conf, OURS)) as f:
            return json.load(f)

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def install_ok(node, **env):
    cp = node.run("install", **env)
    check(cp.returncode == 0, "install failed (%d): %s" % (cp.returncode, cp.stderr))
    return cp


def roundtrip(args, files, source_name):
    """Install, install again, uninstall: the chain is right, the second install changes nothing,
    uninstall restores the original directories. Returns the chained conflist."""
    node = Node(args, files)
    try:
        before = node.state()
        install_ok(node)
        once = node.state()
        install_ok(node)
        check(node.state() == once, "a second install changed the files")
        got = node.ours()
        with open(os.path.join(node.conf, source_name)) as f:
            src = json.load(f)
        check(node.state()["net.d/" + source_name] == before["net.d/" + source_name],
              "install modified %s" % source_name)
        cni = os.path.join(node.bin, "netpol-cni")
        check(os.access(cni, os.X_OK), "netpol-cni not executable in the bin dir")
        with open(cni, "rb") as a, open(args.cni, "rb") as b:
            check(a.read() == b.read(), "the copied netpol-cni differs from the source")
        ver = subprocess.run([cni], env={"CNI_COMMAND": "VERSION"}, input="{}",
                             capture_output=True, text=True, timeout=10)
        check(ver.returncode == 0 and "1.0.0" in ver.stdout,
              "the installed netpol-cni does not answer VERSION: %r %r" % (ver.stdout,
                                                                          ver.stderr))
        check(sorted(n for n in os.listdir(node.conf))[0] == OURS,
              "%s is not the first configuration: %s" % (OURS, os.listdir(node.conf)))
        cp = node.run("uninstall")
        check(cp.returncode == 0, "uninstall failed: %s" % cp.stderr)
        check(node.state() == before, "uninstall did not restore the directories: %s vs %s" % (
            sorted(node.state()), sorted(before)))
        cp = node.run("uninstall")
        check(cp.returncode == 0 and node.state() == before, "a second uninstall: %s" % cp.stderr)
        return got, src
    finally:
        node.close()


def test_flannel_conflist(args):
    got, src = roundtrip(args, {"10-flannel.conflist": "10-flannel.conflist"},
                         "10-flannel.conflist")
    want = dict(src)
    want["plugins"] = src["plugins"] + [{"type": "netpol-cni",
                                         "agentSocket": "/run/netpol/agent.sock",
                                         "timeoutSeconds": 10}]
    check(got == want, "chained conflist:\n%s\nwant:\n%s" % (json.dumps(got, indent=1),
                                                            json.dumps(want, indent=1)))


def test_flannel_single_conf(args):
    got, src = roundtrip(args, {"10-flannel.conf": "10-flannel.conf"}, "10-flannel.conf")
    want = {"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
        {"type": "flannel", "delegate": {"isDefaultGateway": True}},
        {"type": "netpol-cni", "agentSocket": "/run/netpol/agent.sock", "timeoutSeconds": 10}]}
    check(got == want, "a .conf becomes a list: %s" % json.dumps(got))


def test_already_chained_by_hand(args):
    got, _ = roundtrip(args, {"10-flannel.conflist": "10-flannel-chained.conflist"},
                       "10-flannel.conflist")
    types = [p["type"] for p in got["plugins"]]
    check(types == ["flannel", "portmap", "netpol-cni"], "plugins: %s" % types)
    check(got["plugins"][-1]["agentSocket"] == "/run/netpol/agent.sock", "old entry kept: %s"
          % got["plugins"][-1])


def test_settings_from_environment(args):
    node = Node(args, {"10-flannel.conflist": "10-flannel.conflist"})
    try:
        install_ok(node, NETPOL_AGENT_SOCKET="/run/x/a.sock", NETPOL_CNI_TIMEOUT="30")
        last = node.ours()["plugins"][-1]
        check(last == {"type": "netpol-cni", "agentSocket": "/run/x/a.sock",
                       "timeoutSeconds": 30}, "entry: %s" % last)
    finally:
        node.close()


def test_other_files_left_alone(args):
    # Two configurations: the runtime uses the first (flannel); the other is not touched.
    files = {"10-flannel.conflist": "10-flannel.conflist", "20-bridge.conflist":
             "10-bridge.conflist"}
    got, _ = roundtrip(args, files, "10-flannel.conflist")
    check(got["name"] == "cbr0", "chained the wrong file: %s" % got["name"])


def refused(args, files, needle, **env):
    node = Node(args, files)
    try:
        before = node.state()
        cp = node.run("install", **env)
        check(cp.returncode != 0, "install succeeded on bad input %s" % files)
        check(needle in cp.stderr, "message %r lacks %r" % (cp.stderr, needle))
        check(node.state() == before, "a refused install changed files")
    finally:
        node.close()


def test_refusals(args):
    refused(args, {}, "no network configuration")
    refused(args, {"10-bridge.conflist": "10-bridge.conflist"}, "has no flannel plugin")
    refused(args, {"00-aaa.conflist": "10-bridge.conflist",
                   "10-flannel.conflist": "10-flannel.conflist"}, "has no flannel plugin")
    node_files = {"10-flannel.conflist": "10-flannel.conflist"}
    refused(args, node_files, "not a number", NETPOL_CNI_TIMEOUT="ten")
    refused(args, node_files, "not an executable", NETPOL_CNI_BINARY="/nonexistent")
    # An explicit source chains any network, but a name sorting before ours is refused.
    tmp = tempfile.mkdtemp()
    try:
        bad = os.path.join(tmp, "bad.conflist")
        with open(bad, "w") as f:
            f.write('{"cniVersion": "0.3.1", "name": "x", "plugins": [')
        refused(args, node_files, "bad.conflist", NETPOL_CNI_SOURCE_CONF=bad)
        old = os.path.join(tmp, "old.conf")
        with open(old, "w") as f:
            f.write('{"cniVersion": "0.2.0", "name": "x", "type": "flannel"}')
        refused(args, node_files, "cniVersion 0.2.0", NETPOL_CNI_SOURCE_CONF=old)
        src = os.path.join(TESTDATA, "10-flannel.conflist")
        refused(args, {"00-0.conf": "10-bridge.conflist"}, "sorts before",
                NETPOL_CNI_SOURCE_CONF=src)
    finally:
        shutil.rmtree(tmp)


def test_explicit_source(args):
    node = Node(args, {"10-bridge.conflist": "10-bridge.conflist"})
    try:
        install_ok(node, NETPOL_CNI_SOURCE_CONF=os.path.join(node.conf, "10-bridge.conflist"))
        types = [p["type"] for p in node.ours()["plugins"]]
        check(types == ["bridge", "netpol-cni"], "plugins: %s" % types)
    finally:
        node.close()


TESTS = [test_flannel_conflist, test_flannel_single_conf, test_already_chained_by_hand,
         test_settings_from_environment, test_other_files_left_alone, test_refusals,
         test_explicit_source]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True)
    ap.add_argument("--cni", required=True)
    args = ap.parse_args()
    args.script = os.path.abspath(args.script)
    args.cni = os.path.abspath(args.cni)
    if shutil.which("jq") is None:
        print("FAILED: jq is not installed (tools/setup installs it)")
        return 1
    return 1 if run(TESTS, args) else 0


if __name__ == "__main__":
    sys.exit(main())
