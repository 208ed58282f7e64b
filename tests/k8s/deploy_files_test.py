#!/usr/bin/python3
"""deploy/ as files: the manifests say what docs/kubernetes.md says they say (hostNetwork, only
NET_ADMIN and never privileged, exactly the host paths /run/netpol and /var/lib/netpol, the
agent's flags with the node name from the downward API, the ServiceAccount the binding names,
exactly get/list/watch on the three resources), the paths the manifests run exist in the image
(deploy/Dockerfile), and every shared library the binaries name (DT_NEEDED) comes from a Debian
package the Dockerfile installs (apt brings those packages' own dependencies).

    deploy_files_test.py --deploy deploy --binary bazel-bin/agent/netpol-agent [--binary ...]

Closing line `N passed, N failed`.
"""

import argparse
import os
import re
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Failure, check, run  # noqa: E402,F401

SA = ("kube-system", "netpol-agent")
READ = ["get", "list", "watch"]


def load(deploy):
    objs = []
    for name in sorted(os.listdir(deploy)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(deploy, name)) as f:
                objs += [(name, o) for o in yaml.safe_load_all(f) if o]
    return objs


def find(objs, kind, name=None):
    got = [o for _, o in objs if o["kind"] == kind and (name is None or
                                                         o["metadata"]["name"] == name)]
    check(len(got) == 1, "expected one %s %s, found %d" % (kind, name or "", len(got)))
    return got[0]


def test_rbac(args, objs):
    sa = find(objs, "ServiceAccount")
    check((sa["metadata"]["namespace"], sa["metadata"]["name"]) == SA, "ServiceAccount %s"
          % sa["metadata"])
    role = find(objs, "ClusterRole")
    granted = set()
    for rule in role["rules"]:
        check(set(rule) <= {"apiGroups", "resources", "verbs"},
              "rule with more than groups/resources/verbs: %s" % rule)
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    granted.add((g, r, v))
    want = {(g, r, v) for g, r in (("", "pods"), ("", "namespaces"), ("", "nodes"),
                                   ("networking.k8s.io", "networkpolicies"),
                                   ("policy.networking.k8s.io", "clusternetworkpolicies"))
            for v in READ}
    check(granted == want, "ClusterRole grants %s, want exactly %s" % (
        sorted(granted ^ want), sorted(want)))
    crb = find(objs, "ClusterRoleBinding")
    check(crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": role["metadata"]["name"]}, "roleRef %s" % crb["roleRef"])
    check(crb["subjects"] == [{"kind": "ServiceAccount", "name": SA[1], "namespace": SA[0]}],
          "subjects %s" % crb["subjects"])
    # The node status Leases: get/list/create/update on leases, in the agent's namespace only.
    lrole = find(objs, "Role")
    check(lrole["metadata"].get("namespace") == SA[0], "Role namespace %s" % lrole["metadata"])
    check(lrole["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "list", "create", "update"]}],
          "Role rules %s" % lrole["rules"])
    rb = find(objs, "RoleBinding")
    check(rb["metadata"].get("namespace") == SA[0] and
          rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": lrole["metadata"]["name"]} and
          rb["subjects"] == [{"kind": "ServiceAccount", "name": SA[1], "namespace": SA[0]}],
          "RoleBinding %s" % rb)


def test_daemonset(args, objs):
    ds = find(objs, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    check(spec.get("hostNetwork") is True, "hostNetwork must be true")
    check(spec.get("serviceAccountName") == SA[1], "serviceAccountName %s"
          % spec.get("serviceAccountName"))
    check(ds["metadata"]["namespace"] == SA[0], "namespace %s" % ds["metadata"]["namespace"])
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext") or {}
        check(not sc.get("privileged"), "%s is privileged" % c["name"])
        check(sc.get("allowPrivilegeEscalation") is False, "%s may escalate" % c["name"])
        caps = sc.get("capabilities") or {}
        check(caps.get("drop") == ["ALL"], "%s does not drop ALL capabilities" % c["name"])
        check(set(caps.get("add", [])) <= {"NET_ADMIN"}, "%s adds %s" % (c["name"],
                                                                        caps.get("add")))
    agent = [c for c in spec["containers"] if c["name"] == "agent"]
    check(len(agent) == 1, "no agent container")
    agent = agent[0]
    check(agent["securityContext"]["capabilities"].get("add") == ["NET_ADMIN"],
          "the agent needs NET_ADMIN (nftables, conntrack)")
    cmd = agent["command"]
    check("--datastore=kubernetes" in cmd and "--node-name=$(NODE_NAME)" in cmd,
          "agent command %s" % cmd)
    env = {e["name"]: e for e in agent.get("env", [])}
    check(env.get("NODE_NAME", {}).get("valueFrom") == {"fieldRef": {"fieldPath":
                                                                      "spec.nodeName"}},
          "NODE_NAME must come from spec.nodeName: %s" % env.get("NODE_NAME"))
    check(env.get("POD_NAMESPACE", {}).get("valueFrom") == {"fieldRef": {"fieldPath":
                                                                        "metadata.namespace"}},
          "POD_NAMESPACE must come from metadata.namespace: %s" % env.get("POD_NAMESPACE"))
    listen = [a for a in cmd if a.startswith("--listen=")]
    state = [a for a in cmd if a.startswith("--state-dir=")]
    check(listen == ["--listen=unix:///run/netpol/agent.sock"], "listen %s" % listen)
    check(state == ["--state-dir=/var/lib/netpol"], "state dir %s" % state)
    vols = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    for path in ("/run/netpol", "/var/lib/netpol"):
        check(path in mounts and vols.get(mounts[path]["name"]) == path,
              "the agent must mount the host's %s at the same path: %s" % (path, mounts))
        check(mounts[path].get("mountPropagation", "None") == "None",
              "%s needs no mount propagation: %s" % (path, mounts[path]))
    # The pods' netns files are not needed: attachments are never judged by their netns path.
    check(sorted(mounts) == ["/run/netpol", "/var/lib/netpol"],
          "the agent mounts exactly /run/netpol and /var/lib/netpol: %s" % sorted(mounts))
    init = [c for c in spec["initContainers"] if c["name"] == "install-cni"]
    check(len(init) == 1, "no install-cni init container")
    ienv = {e["name"]: e.get("value") for e in init[0].get("env", [])}
    imounts = {m["mountPath"]: vols.get(m["name"]) for m in init[0]["volumeMounts"]}
    check(imounts.get(ienv.get("CNI_CONF_DIR")) == "/etc/cni/net.d" and
          imounts.get(ienv.get("CNI_BIN_DIR")) == "/opt/cni/bin",
          "install-cni's CNI_CONF_DIR/CNI_BIN_DIR must be the host's: %s %s" % (ienv, imounts))
    check(ienv.get("NETPOL_AGENT_SOCKET") == "/run/netpol/agent.sock",
          "the CNI plugin must name the agent's socket: %s" % ienv)


def dockerfile(deploy):
    with open(os.path.join(deploy, "Dockerfile")) as f:
        text = f.read()
    m = re.search(r"apt-get install -y --no-install-recommends(.*?)&&", text, re.S)
    check(m, "Dockerfile: no apt-get install line")
    pkgs = set(m.group(1).replace("\\", " ").split())
    copied = set()
    for line in text.splitlines():
        if line.startswith("COPY "):
            parts = line.split()[1:]
            for p in parts[:-1]:
                copied.add(os.path.join(parts[-1], os.path.basename(p)))
    return text, pkgs, copied


def test_image_has_what_manifests_run(args, objs):
    text, pkgs, copied = dockerfile(args.deploy)
    check("/opt/netpol/bin/netpol-cni" in text, "install-cni.sh's default NETPOL_CNI_BINARY "
          "/opt/netpol/bin/netpol-cni is not made in the image")
    for _, o in objs:
        if o["kind"] != "DaemonSet":
            continue
        spec = o["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            exe = c["command"][0]
            check(exe in copied or exe.startswith("/bin/"), "%s runs %s, not in the image (%s)"
                  % (c["name"], exe, sorted(copied)))
            if "nft " in " ".join(c["command"]):
                check("nftables" in pkgs, "%s runs nft: nftables not installed" % c["name"])
            if exe.endswith("install-cni.sh"):
                check("jq" in pkgs, "install-cni.sh needs jq")


def owners(paths):
    """{path: Debian package} for the files dpkg knows (one dpkg -S for all of them); each path
    is also tried under /usr and resolved, since Debian 12 merged /lib into /usr/lib."""
    tries = {}
    for p in paths:
        for alt in (p, os.path.realpath(p), "/usr" + p if p.startswith("/lib") else p):
            tries.setdefault(alt, set()).add(p)
    cp = subprocess.run(["dpkg", "-S"] + sorted(tries), capture_output=True, text=True)
    out = {}
    for line in cp.stdout.splitlines():
        pkg, _, path = line.partition(": ")
        for p in tries.get(path.strip(), ()):
            out[p] = pkg.split(":")[0]
    return out


def test_image_libraries(args, objs):
    _, pkgs, copied = dockerfile(args.deploy)
    needs = {}  # library path -> (soname, binaries)
    for binary in args.binary:
        check("/usr/local/bin/" + os.path.basename(binary) in copied,
              "%s is not copied into the image" % os.path.basename(binary))
        # The libraries the binary names itself (DT_NEEDED); apt installs theirs with them.
        dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                             check=True).stdout
        direct = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn))
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if m and m.group(1) in direct:
                needs.setdefault(m.group(2), (m.group(1), set()))[1].add(
                    os.path.basename(binary))
    check(needs, "ldd found no libraries in %s" % args.binary)
    own = owners(list(needs))
    missing = []
    for lib, (soname, users) in sorted(needs.items()):
        check(lib in own, "no Debian package owns %s (%s)" % (lib, soname))
        if own[lib] in ("libc6", "libstdc++6", "libgcc-s1"):
            continue  # in every Debian image
        if own[lib] not in pkgs:
            missing.append("%s (%s, needed by %s)" % (own[lib], soname, ", ".join(sorted(users))))
    check(not missing, "deploy/Dockerfile does not install: %s" % ", ".join(sorted(set(missing))))


TESTS = [test_rbac, test_daemonset, test_image_has_what_manifests_run, test_image_libraries]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deploy", required=True)
    ap.add_argument("--binary", action="append", default=[])
    args = ap.parse_args()
    objs = load(args.deploy)
    return 1 if run(TESTS, args, objs) else 0


if __name__ == "__main__":
    sys.exit(main())
