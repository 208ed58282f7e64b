#!/usr/bin/python3
"""Every policy of examples/ enforced on the real kernel, IPv4 and IPv6, with the flows its
README promises probed in the lab.

Cluster (tests/services/svclab.py; every pod on node-1):
    shop/web-1      app.kubernetes.io/component=web, egress=internet, http = 8080
    shop/web-2      app.kubernetes.io/component=web, http = 9090
    shop/db         app=db
    other/client
    ingress-nginx/controller  app.kubernetes.io/name=ingress-nginx
    ingress-nginx/backend     app=default-backend
    impostor/controller       app.kubernetes.io/name=ingress-nginx (the label, wrong namespace)
    kube-system/coredns       k8s-app=kube-dns, 53/UDP and 53/TCP (echo servers)
  outside: ext-a serving TCP 80 on "internet" (203.0.113.10, 2001:db8:203::10) and on the
  metadata addresses (169.254.169.254, fd00:ec2::254); node-1 serving 10250.

Step 0 applies no policy and expects every flow of every later step to pass, so each "blocked"
below is the policy's doing. Each example is applied to namespace `shop` (the file has no
namespace, like `kubectl apply -n shop -f`), alone or with the policy it is meant to pair with.

    examples_lab_test.py --enforce PATH [--examples DIR]
"""

import copy
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svclab  # noqa: E402
from svclab import Flow, pod, namespace  # noqa: E402

WEB = {"app.kubernetes.io/component": "web"}
OBJECTS = [
    namespace("shop"),
    namespace("other"),
    namespace("ingress-nginx"),
    namespace("impostor"),
    namespace("kube-system"),
    pod("shop", "web-1", "10.244.1.17", "fd00:10:244:1::11", dict(WEB, egress="internet"),
        [("http", 8080, "TCP")]),
    pod("shop", "web-2", "10.244.1.18", "fd00:10:244:1::12", WEB, [("http", 9090, "TCP")]),
    pod("shop", "db", "10.244.1.19", "fd00:10:244:1::13", {"app": "db"}),
    pod("other", "client", "10.244.1.33", "fd00:10:244:1::21", {}),
    pod("ingress-nginx", "controller", "10.244.1.49", "fd00:10:244:1::31",
        {"app.kubernetes.io/name": "ingress-nginx"}),
    pod("ingress-nginx", "backend", "10.244.1.50", "fd00:10:244:1::32",
        {"app": "default-backend"}),
    pod("impostor", "controller", "10.244.1.65", "fd00:10:244:1::41",
        {"app.kubernetes.io/name": "ingress-nginx"}),
    pod("kube-system", "coredns", "10.244.1.10", "fd00:10:244:1::a", {"k8s-app": "kube-dns"},
        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]),
]


def cases():
    """(example files applied to shop, flows)."""
    W1, W2, DB, CL = "shop/web-1", "shop/web-2", "shop/db", "other/client"
    CTL = "ingress-nginx/controller"
    return [
        (["default-deny-ingress.yaml"], [
            Flow(CL, W1, "TCP", 80, False, "from another namespace"),
            Flow(DB, W1, "TCP", 80, False, "from the same namespace"),
            Flow(CL, DB, "UDP", 81, False, "UDP too"),
            Flow("node-1", W1, "TCP", 80, True, "kubelet probe"),
            Flow(W1, CL, "TCP", 80, True, "egress is not affected"),
            Flow(W1, "internet", "TCP", 80, True, "egress is not affected"),
        ]),
        (["default-deny-egress.yaml"], [
            Flow(W1, CL, "TCP", 80, False, "to another namespace"),
            Flow(W1, DB, "TCP", 80, False, "to the same namespace"),
            Flow(W1, "internet", "TCP", 80, False, "to the outside"),
            Flow(W1, "kube-system/coredns", "UDP", 53, False, "not even DNS"),
            Flow(W1, "node-1", "TCP", 10250, False, "to the node"),
            Flow(CL, W1, "TCP", 80, True, "ingress is not affected"),
        ]),
        (["default-deny-all.yaml"], [
            Flow(CL, W1, "TCP", 80, False, "in"),
            Flow(W1, CL, "TCP", 80, False, "out"),
            Flow(W1, DB, "TCP", 80, False, "within the namespace"),
            Flow("node-1", W1, "TCP", 80, True, "kubelet probe"),
        ]),
        (["allow-same-namespace.yaml"], [
            Flow(DB, W1, "TCP", 80, True, "same namespace"),
            Flow(W2, DB, "UDP", 81, True, "same namespace, any port and protocol"),
            Flow(CL, W1, "TCP", 80, False, "another namespace"),
            Flow(CTL, DB, "TCP", 80, False, "another namespace"),
            Flow(W1, CL, "TCP", 80, True, "egress is not affected"),
        ]),
        (["default-deny-ingress.yaml", "allow-from-ingress-controller.yaml"], [
            Flow(CTL, W1, "TCP", 8080, True, "controller to http (8080 on web-1)"),
            Flow(CTL, W2, "TCP", 9090, True, "controller to http (9090 on web-2)"),
            Flow(CTL, W1, "TCP", 80, False, "not the http port"),
            Flow(CTL, W2, "TCP", 8080, False, "web-2's http is 9090"),
            Flow(CTL, W1, "TCP", 9090, False, "web-1's http is 8080"),
            Flow("ingress-nginx/backend", W1, "TCP", 8080, False, "other pod of ingress-nginx"),
            Flow("impostor/controller", W1, "TCP", 8080, False, "the label in another namespace"),
            Flow(CTL, DB, "TCP", 80, False, "db: only default deny"),
        ]),
        (["default-deny-egress.yaml", "allow-dns.yaml"], [
            Flow(W1, "kube-system/coredns", "UDP", 53, True, "DNS over UDP"),
            Flow(W2, "kube-system/coredns", "TCP", 53, True, "DNS over TCP"),
            Flow(W1, "kube-system/coredns", "TCP", 80, False, "kube-dns pod, other port"),
            Flow(W1, CL, "TCP", 80, False, "other pods"),
            Flow(W1, "internet", "TCP", 80, False, "outside"),
        ]),
        (["allow-external-except-metadata.yaml"], [
            Flow(W1, "internet", "TCP", 80, True, "outside"),
            Flow(W1, "metadata", "TCP", 80, False, "the metadata address"),
            Flow(W1, CL, "TCP", 80, True, "0.0.0.0/0 and ::/0 hold pods too"),
            Flow(W1, "node-1", "TCP", 10250, True, "and the node"),
            Flow(W2, "metadata", "TCP", 80, True, "web-2 is not selected"),
        ]),
    ]


def load_example(examples_dir, name, ns):
    out = []
    for obj in svclab.load_yaml_file(os.path.join(examples_dir, name)):
        if "namespace" in obj.get("metadata", {}):
            raise svclab.lab.LabError("%s: an example carries no namespace (kubectl -n picks "
                                      "it)" % name)
        obj = copy.deepcopy(obj)
        obj["metadata"]["namespace"] = ns
        out.append(obj)
    return out


def main():
    def add_args(ap):
        ap.add_argument("--examples", default=os.path.join(svclab.ROOT, "examples"))

    def run(args, enforce_bin, checker):
        all_cases = cases()
        listed = {f for files, _ in all_cases for f in files}
        present = {f for f in os.listdir(args.examples) if f.endswith(".yaml")}
        checker.check(present == listed, "every example is exercised (unexercised: %s; "
                      "missing: %s)" % (sorted(present - listed) or "none",
                                        sorted(listed - present) or "none"))
        # Every pod also serves 8080 and 9090, so "the http port of the other pod" is a real
        # server that only the named-port resolution keeps out.
        with svclab.ServiceLab(OBJECTS, extra_ports=(8080, 9090)) as slab:
            slab.start_server("ext-a", [80])
            slab.start_server("node-1", [10250])
            enforcer = svclab.Enforcer(slab.netns["node-1"], enforce_bin)
            baseline = [Flow(f.src, f.dst, f.proto, f.port, True, "no policy")
                        for _, flows in all_cases for f in flows]
            steps = [(["(none)"], [], baseline)]
            for files, flows in all_cases:
                policies = [o for f in files for o in load_example(args.examples, f, "shop")]
                steps.append((files, policies, flows))
            for files, policies, flows in steps:
                print("example %s" % " + ".join(files))
                enforcer.apply(OBJECTS + policies, "-".join(f.split(".")[0] for f in files))
                slab.flush_conntrack()
                failed = len(checker.failures)
                svclab.run_flows(slab, flows, checker, label="[%s] " % " + ".join(files))
                checker.step_done()
                if len(checker.failures) > failed:
                    print("--- state %s\n--- inet netpol:\n%s" % (enforcer.last_path,
                                                               slab.nft_list()))

    return svclab.enforce_main(__doc__, "examples_lab_test", run, add_args)


if __name__ == "__main__":
    sys.exit(main())
