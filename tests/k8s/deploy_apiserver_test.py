#!/usr/bin/python3
"""deploy/ against the real kube-apiserver: `kubectl apply --dry-run=server` accepts every
manifest (deploy/ and deploy/uninstall/), creating them works and is idempotent, and the
ServiceAccount's RBAC is exactly what the agent needs: `kubectl auth can-i` says yes to
get/list/watch on pods, namespaces, nodes, networkpolicies and clusternetworkpolicies
cluster-wide, get/list/create/update on leases in kube-system (the node status Leases) and no to
everything else checked (writes, other verbs on leases and leases elsewhere, pods/status,
secrets, services), the ClusterNetworkPolicy CRD stores a valid object and refuses invalid ones,
and a token from `kubectl create token` lists and watches the five resources over HTTPS while a
write is forbidden.

Skips visibly without the API server binary (fails when NETPOL_CI=1).

    deploy_apiserver_test.py --deploy deploy

Closing line `N passed, N failed`.
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apiserver  # noqa: E402
from checks import Failure, check, run  # noqa: E402,F401

AS = "system:serviceaccount:kube-system:netpol-agent"
RESOURCES = ["pods", "namespaces", "nodes", "networkpolicies.networking.k8s.io",
             "clusternetworkpolicies.policy.networking.k8s.io"]
LISTS = {"pods": "/api/v1/pods", "namespaces": "/api/v1/namespaces", "nodes": "/api/v1/nodes",
         "networkpolicies.networking.k8s.io": "/apis/networking.k8s.io/v1/networkpolicies",
         "clusternetworkpolicies.policy.networking.k8s.io":
         "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies"}
CNP_CRD = "clusternetworkpolicies.policy.networking.k8s.io"
CNP = ("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
       "metadata: {name: %s}\nspec:\n  tier: Admin\n  priority: %s\n"
       "  subject: {namespaces: {matchLabels: {team: a}}}\n%s")


def test_dry_run_server(api, args):
    for d in (args.deploy, os.path.join(args.deploy, "uninstall")):
        cp = api.kubectl("apply", "--dry-run=server", "-f", d, check=False)
        check(cp.returncode == 0, "kubectl apply --dry-run=server -f %s: %s" % (d, cp.stderr))
        check("(server dry run)" in cp.stdout, "no server dry run for %s: %s" % (d, cp.stdout))
    check(api.request("GET", "/apis/apps/v1/namespaces/kube-system/daemonsets/netpol-agent")
          .status == 404, "a dry run created the DaemonSet")


def test_create(api, args):
    cp = api.kubectl("apply", "-f", args.deploy)
    for what in ("serviceaccount/netpol-agent", "clusterrole.rbac.authorization.k8s.io/"
                 "netpol-agent", "clusterrolebinding.rbac.authorization.k8s.io/netpol-agent",
                 "role.rbac.authorization.k8s.io/netpol-agent-node-status",
                 "rolebinding.rbac.authorization.k8s.io/netpol-agent-node-status",
                 "daemonset.apps/netpol-agent"):
        check(what + " created" in cp.stdout, "%s not created: %s" % (what, cp.stdout))
    again = api.kubectl("apply", "-f", args.deploy).stdout
    check("created" not in again and "configured" not in again,
          "a second apply changed something: %s" % again)
    api.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/" + CNP_CRD)
    ds = api.call("GET", "/apis/apps/v1/namespaces/kube-system/daemonsets/netpol-agent")
    agent = ds["spec"]["template"]["spec"]["containers"][0]
    check(agent["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"],
          "stored DaemonSet: %s" % agent["securityContext"])


def apply_text(api, text):
    return api.kubectl("apply", "-f", "-", input=text, check=False)


def test_crd(api, args):
    """The CRD keeps what the API's schema keeps out and takes what it takes in."""
    good = CNP % ("guard", 10, "  ingress:\n  - name: deny-from-b\n    action: Deny\n"
                  "    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}}]\n"
                  "    protocols: [{tcp: {destinationPort: {range: {start: 80, end: 90}}}},"
                  " {destinationNamedPort: web}]\n"
                  "  egress:\n  - {action: Pass, to: [{networks: [10.0.0.0/8, \"fd00::/8\"]}]}\n"
                  "  - {action: Accept, to: [{nodes: {}}]}\n")
    cp = apply_text(api, good)
    check(cp.returncode == 0, "a valid ClusterNetworkPolicy refused: %s" % cp.stderr)
    got = api.kubectl("get", "cnp", "guard", "-o", "jsonpath={.spec.tier}/{.spec.priority}").stdout
    check(got == "Admin/10", "kubectl get cnp guard: %r" % got)
    bad = {
        "priority": CNP % ("bad1", 1001, ""),
        "tier": (CNP % ("bad2", 1, "")).replace("Admin", "Platform"),
        "action": CNP % ("bad3", 1, "  ingress: [{action: Allow, from: [{namespaces: {}}]}]\n"),
        "empty from": CNP % ("bad4", 1, "  ingress: [{action: Deny, from: []}]\n"),
        "two peers in one": CNP % ("bad5", 1, "  ingress: [{action: Deny, from: [{namespaces: {},"
                                   " pods: {podSelector: {}}}]}]\n"),
        "range": CNP % ("bad6", 1, "  ingress: [{action: Deny, from: [{namespaces: {}}], protocols:"
                        " [{udp: {destinationPort: {range: {start: 9, end: 9}}}}]}]\n"),
        "named port to networks": CNP % ("bad7", 1, "  egress: [{action: Deny, to: [{networks:"
                                         " [10.0.0.0/8]}], protocols: [{destinationNamedPort: dns}]}]\n"),
        "26 rules": CNP % ("bad8", 1, "  ingress:\n" +
                           "  - {action: Deny, from: [{namespaces: {}}]}\n" * 26),
    }
    for what, text in bad.items():
        cp = apply_text(api, text)
        check(cp.returncode != 0 and "invalid" in cp.stderr.lower(),
              "the API server accepted a ClusterNetworkPolicy with a bad %s: %s %s"
              % (what, cp.stdout, cp.stderr))
    api.kubectl("delete", "cnp", "guard")


def can_i(api, verb, resource, extra=()):
    cp = api.kubectl("auth", "can-i", verb, resource, "--as=" + AS, *extra, check=False)
    return cp.stdout.strip()


def allowed(api, verb, resource, namespace=None, subresource=None):
    """A SubjectAccessReview for the ServiceAccount (the user and groups a token of it has): the
    authorizer `kubectl auth can-i --as` asks, in one request instead of one kubectl each."""
    res, _, group = resource.partition(".")
    attrs = {"verb": verb, "resource": res, "group": group}
    if namespace:
        attrs["namespace"] = namespace
    if subresource:
        attrs["subresource"] = subresource
    out = api.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": AS, "groups": ["system:serviceaccounts",
                                        "system:serviceaccounts:kube-system",
                                        "system:authenticated"],
                 "resourceAttributes": attrs}})
    return bool(out["status"].get("allowed"))


def test_rbac_can_i(api, args):
    wrong = []
    # kubectl's own answer, as an operator would ask it.
    for r in RESOURCES:
        if can_i(api, "watch", r, ["--all-namespaces"]) != "yes":
            wrong.append("kubectl auth can-i watch %s --all-namespaces: not yes" % r)
    if can_i(api, "create", "pods", ["--all-namespaces"]) != "no":
        wrong.append("kubectl auth can-i create pods: not no")
    for r in RESOURCES:
        for v in ("get", "list", "watch"):
            for ns in (None, "default"):
                if not allowed(api, v, r, ns):
                    wrong.append("%s %s %s: not allowed" % (v, r, ns or "(cluster)"))
        for v in ("create", "update", "patch", "delete", "deletecollection"):
            if allowed(api, v, r, "default"):
                wrong.append("%s %s: allowed" % (v, r))
    # Its node status Lease: get/list/create/update in kube-system, nothing else.
    for v in ("get", "list", "create", "update"):
        if not allowed(api, v, "leases.coordination.k8s.io", "kube-system"):
            wrong.append("%s leases in kube-system: not allowed" % v)
        if allowed(api, v, "leases.coordination.k8s.io", "default"):
            wrong.append("%s leases in default: allowed" % v)
    for v in ("delete", "patch", "watch"):
        if allowed(api, v, "leases.coordination.k8s.io", "kube-system"):
            wrong.append("%s leases in kube-system: allowed" % v)
    for v, r, sub in (("patch", "pods", "status"), ("get", "secrets", None),
                      ("patch", "nodes", None), ("list", "services", None),
                      ("list", "endpointslices.discovery.k8s.io", None),
                      ("get", "configmaps", None), ("create", "serviceaccounts", "token"),
                      ("list", "daemonsets.apps", None)):
        if allowed(api, v, r, "kube-system", sub):
            wrong.append("%s %s%s: allowed" % (v, r, "/" + sub if sub else ""))
    check(not wrong, "RBAC for %s:\n  %s" % (AS, "\n  ".join(wrong)))


def test_token(api, args):
    token = api.kubectl("create", "token", "netpol-agent", "-n", "kube-system").stdout.strip()
    check(token.count(".") == 2, "kubectl create token printed %r" % token[:40])
    for r, path in LISTS.items():
        res = api.request("GET", path + "?limit=1", token=token)
        check(res.status == 200, "list %s with the token: %d %s" % (r, res.status, res.body))
        rv = res.json()["metadata"]["resourceVersion"]
        res = api.request("GET", "%s?watch=1&timeoutSeconds=1&allowWatchBookmarks=true"
                          "&resourceVersion=%s" % (path, rv), token=token)
        check(res.status == 200, "watch %s with the token: %d %s" % (r, res.status, res.body))
    res = api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": "nope"}}, token=token)
    check(res.status == 403, "a write with the agent's token: %d %s" % (res.status, res.body))
    res = api.request("GET", "/api/v1/secrets", token=token)
    check(res.status == 403, "listing secrets with the agent's token: %d" % res.status)


TESTS = [test_dry_run_server, test_create, test_crd, test_rbac_can_i, test_token]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deploy", required=True)
    args = ap.parse_args()
    args.deploy = os.path.abspath(args.deploy)
    apiserver.require(kubectl=True)
    t0 = time.monotonic()
    with apiserver.APIServer() as api:
        print("API server %s up in %.1fs" % (api.url, time.monotonic() - t0))
        failed = run(TESTS, api, args, expected=(apiserver.APIServerError,))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
