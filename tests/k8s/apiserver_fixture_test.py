#!/usr/bin/python3
"""The API server fixture (apiserver.py) against the real kube-apiserver: it starts, serves the
admin's token and kubectl, stores pods with status written through pods/status, mints
client-certificate users that RBAC governs, issues ServiceAccount tokens, compacts etcd so an
old resourceVersion gets 410 Gone, and restarts on the same address.

Skips visibly when the API server binary is absent (fails when NETPOL_CI=1). Closing line
`N passed, N failed`.
"""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apiserver  # noqa: E402
from checks import Failure, check, run  # noqa: E402,F401


def test_admin_and_kubectl(api):
    r = api.request("GET", "/version")
    check(r.status == 200 and r.json()["gitVersion"] == apiserver.APISERVER_VERSION,
          "GET /version: %d %s" % (r.status, r.body))
    out = api.kubectl("get", "namespace", "kube-system", "-o", "name").stdout.strip()
    check(out == "namespace/kube-system", "kubectl get namespace kube-system: %r" % out)
    check(api.request("GET", "/api/v1/pods", token="not-a-token").status == 401,
          "a bad token must get 401")


def test_pod_status_as_kubelet(api):
    api.create_namespace("fixture-x", {"ns": "x"})
    pod = api.create_pod("fixture-x", "a", {"pod": "a"}, node="node-1",
                         ips=["10.244.1.17", "fd00:10:244:1::11"],
                         ports=[(80, "serve-80-tcp", "TCP"), (81, "serve-81-udp", "UDP")])
    check(pod["spec"]["nodeName"] == "node-1", "spec.nodeName: %r" % pod["spec"])
    st = pod["status"]
    check(st.get("phase") == "Running" and st.get("podIP") == "10.244.1.17" and
          [e["ip"] for e in st.get("podIPs", [])] == ["10.244.1.17", "fd00:10:244:1::11"],
          "status after pods/status: %r" % st)
    out = api.kubectl("get", "pod", "-n", "fixture-x", "a", "-o",
                      "jsonpath={.status.podIPs[1].ip} {.spec.containers[0].ports[1].name}")
    check(out.stdout == "fd00:10:244:1::11 serve-81-udp", "kubectl sees %r" % out.stdout)
    pod = api.set_pod_status("fixture-x", "a", phase="Succeeded")
    check(pod["status"]["phase"] == "Succeeded", "phase: %r" % pod["status"])
    api.label("pod", "a", {"pod": "b"}, namespace="fixture-x")
    got = api.call("GET", api.object_path("pod", "a", "fixture-x"))["metadata"]["labels"]
    check(got == {"pod": "b"}, "labels after label(): %r" % got)
    api.delete("pod", "a", "fixture-x")
    check(api.request("GET", api.object_path("pod", "a", "fixture-x")).status == 404,
          "pod still there after delete")


def test_client_cert_user_and_rbac(api):
    kc = api.kubeconfig(os.path.join(api.dir, "alice.kubeconfig"), user="alice",
                        groups=["readers"])
    who = api.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username} "
                      "{.status.userInfo.groups[0]}", kubeconfig=kc).stdout
    check(who == "alice readers", "whoami with the minted certificate: %r" % who)
    denied = api.kubectl("get", "pods", "-A", kubeconfig=kc, check=False)
    check(denied.returncode != 0 and "forbidden" in denied.stderr,
          "alice without a binding must be forbidden: %r" % denied.stderr)
    api.kubectl("create", "clusterrole", "fixture-pod-reader", "--verb=list", "--resource=pods")
    api.kubectl("create", "clusterrolebinding", "fixture-readers",
                "--clusterrole=fixture-pod-reader", "--group=readers")
    ok = api.kubectl("get", "pods", "-A", kubeconfig=kc, check=False)
    check(ok.returncode == 0, "alice in group readers must list pods: %r" % ok.stderr)
    can = api.kubectl("auth", "can-i", "watch", "pods", "--as=alice", "--as-group=readers",
                      check=False).stdout.strip()
    check(can == "no", "watch was not granted, can-i says %r" % can)


def test_serviceaccount_token(api):
    api.create_namespace("fixture-sa")
    api.kubectl("create", "serviceaccount", "agent", "-n", "fixture-sa")
    token = api.create_token("agent", "fixture-sa")
    r = api.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                    token=token)
    check(r.status == 201, "SelfSubjectReview with the token: %d %s" % (r.status, r.body))
    user = r.json()["status"]["userInfo"]["username"]
    check(user == "system:serviceaccount:fixture-sa:agent", "token's user: %r" % user)
    kubectl_token = api.kubectl("create", "token", "agent", "-n", "fixture-sa").stdout.strip()
    kc = api.kubeconfig(os.path.join(api.dir, "sa.kubeconfig"), token=kubectl_token)
    denied = api.kubectl("get", "namespaces", kubeconfig=kc, check=False)
    check(denied.returncode != 0 and "system:serviceaccount:fixture-sa:agent" in denied.stderr,
          "an unbound ServiceAccount must be forbidden by name: %r" % denied.stderr)


def test_compaction_gives_410(api):
    old = api.resource_version()
    for i in range(3):
        api.create_namespace("fixture-compact-%d" % i)
    rev = api.compact()
    check(rev > old, "compacted at %d, not past %d" % (rev, old))
    r = api.request("GET", "/api/v1/namespaces?resourceVersion=%d&resourceVersionMatch=Exact"
                    % old)
    check(r.status == 410, "a list at a compacted resourceVersion: %d %s" % (r.status, r.body))


def test_restart(api):
    url = api.url
    api.create_namespace("fixture-before-restart")
    api.restart()
    check(api.url == url, "the API server moved: %s -> %s" % (url, api.url))
    r = api.request("GET", "/api/v1/namespaces/fixture-before-restart")
    check(r.status == 200, "object lost across the restart: %d" % r.status)
    # The restarted API server's watch cache starts at etcd's current revision: a watch from
    # an older resourceVersion gets 410 Gone as a watch event (what a client must re-list on).
    before = api.resource_version()
    api.create_namespace("fixture-after-restart")
    api.restart()
    r = api.request("GET", "/api/v1/namespaces?watch=1&timeoutSeconds=1&resourceVersion=%d"
                    % before)
    check(r.status == 200 and '"code":410' in r.body,
          "a watch from before the restart: %d %s" % (r.status, r.body[:300]))
    now = api.resource_version()
    api.create_namespace("fixture-after-restart-2")
    r = api.request("GET", "/api/v1/namespaces?watch=1&timeoutSeconds=1&resourceVersion=%d"
                    % now)
    check(r.status == 200 and "fixture-after-restart-2" in r.body,
          "a watch from a current resourceVersion: %d %s" % (r.status, r.body[:300]))


TESTS = [test_admin_and_kubectl, test_pod_status_as_kubelet, test_client_cert_user_and_rbac,
         test_serviceaccount_token, test_compaction_gives_410, test_restart]


def main():
    apiserver.require(kubectl=True)
    t0 = time.monotonic()
    with apiserver.APIServer() as api:
        print("API server %s up in %.1fs" % (api.url, time.monotonic() - t0))
        failed = run(TESTS, api, expected=(apiserver.APIServerError,))
        if failed:
            print("API server log (tail):\n" + api.log_tail())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
