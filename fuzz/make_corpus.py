#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from the project's own
Kubernetes YAML: the conformance model and cases (both families, placeholders expanded), the
example state of engine/compiler/RULESET.md and examples/*.yaml. Deterministic: rerunning it
rewrites the same files. Run it after adding cases or examples:

    /usr/bin/python3 fuzz/make_corpus.py
"""

import glob
import json
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "conformance"))
import cases  # noqa: E402  (tests/conformance/cases.py)

SEPARATOR = "\n#%next\n"  # compile_fuzzer: state A, then state B


class _QuotingDumper(yaml.SafeDumper):
    """Quotes every string: netpol reads YAML 1.1 like Kubernetes, where a bare y is a boolean."""


_QuotingDumper.add_representer(
    str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"'))


def write(target, name, text):
    directory = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(directory, exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(os.path.join(directory, name), mode) as f:
        f.write(text)


# ---- api_fuzzer seeds: one byte picking the RPC, then the request's wire encoding ----

RPCS = {"ApplyRequest": 0, "DeleteRequest": 1, "GetRequest": 2, "ListRequest": 3,
        "CheckRequest": 4, "ExplainPodRequest": 5, "RenderRequest": 6,
        "WaitForGenerationRequest": 7}  # the order of fuzz/api_fuzzer.cc's Rpc enum
PROTO_FILE = {"ApplyRequest": "object_service", "DeleteRequest": "object_service",
              "GetRequest": "object_service", "ListRequest": "object_service",
              "CheckRequest": "query_service", "ExplainPodRequest": "query_service",
              "RenderRequest": "query_service", "WaitForGenerationRequest": "status_service"}


def q(text):
    """A protobuf text-format string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def encode(message, text):
    proc = subprocess.run(
        ["protoc", "-I.", "-I/usr/include", "--encode=netpol.v1." + message,
         "api/netpol/v1/%s.proto" % PROTO_FILE[message]],
        cwd=ROOT, input=text.encode(), capture_output=True, check=True)
    return bytes([RPCS[message]]) + proc.stdout


PROTOCOLS = {"TCP": "TCP", "UDP": "UDP", "SCTP": "SCTP"}


def tf_map(field, labels):
    return " ".join("%s { key: %s value: %s }" % (field, q(k), q(v))
                    for k, v in sorted((labels or {}).items()))


def tf_selector(field, sel):
    if sel is None:
        return ""
    parts = [tf_map("match_labels", sel.get("matchLabels"))]
    for e in sel.get("matchExpressions") or []:
        values = " ".join("values: %s" % q(v) for v in e.get("values") or [])
        parts.append("match_expressions { key: %s operator: %s %s }" % (q(e["key"]), e["operator"], values))
    return "%s { %s }" % (field, " ".join(parts))


def tf_meta(md):
    return "metadata { name: %s %s %s }" % (
        q(md.get("name", "")), ("namespace: %s" % q(md["namespace"])) if md.get("namespace") else "",
        tf_map("labels", md.get("labels")))


def tf_port(p):
    out = []
    if p.get("protocol"):
        out.append("protocol: %s" % p["protocol"])
    port = p.get("port")
    if isinstance(port, int):
        out.append("port: %d" % port)
    elif port is not None:
        out.append("named_port: %s" % q(port))
    if p.get("endPort") is not None:
        out.append("end_port: %d" % p["endPort"])
    return "ports { %s }" % " ".join(out)


def tf_peer(field, peer):
    parts = [tf_selector("pod_selector", peer.get("podSelector")),
             tf_selector("namespace_selector", peer.get("namespaceSelector"))]
    block = peer.get("ipBlock")
    if block:
        parts.append("ip_block { cidr: %s %s }" % (
            q(block.get("cidr", "")), " ".join("except: %s" % q(e) for e in block.get("except") or [])))
    return "%s { %s }" % (field, " ".join(parts))


def tf_object(d):
    """A Kubernetes object (parsed YAML) as a netpol.v1.Object in text format, or None."""
    kind, md = d.get("kind"), d.get("metadata") or {}
    if kind == "Namespace":
        return "namespace { %s }" % tf_meta(md)
    if kind == "Pod":
        spec, status = d.get("spec") or {}, d.get("status") or {}
        containers = " ".join(
            "containers { name: %s %s }" % (q(c.get("name", "")), " ".join(
                "ports { name: %s container_port: %d %s }" % (
                    q(p.get("name", "")), p.get("containerPort", 0),
                    ("protocol: %s" % p["protocol"]) if p.get("protocol") else "")
                for p in c.get("ports") or []))
            for c in spec.get("containers") or [])
        ips = " ".join("pod_ips { ip: %s }" % q(i["ip"]) for i in status.get("podIPs") or [])
        return "pod { %s spec { node_name: %s %s } status { %s } }" % (
            tf_meta(md), q(spec.get("nodeName", "")), containers, ips)
    if kind == "NetworkPolicy":
        spec = d.get("spec") or {}
        parts = [tf_selector("pod_selector", spec.get("podSelector") or {})]
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(direction) or []:
                rule = rule or {}
                parts.append("%s { %s %s }" % (
                    direction, " ".join(tf_port(p) for p in rule.get("ports") or []),
                    " ".join(tf_peer(peers, p) for p in rule.get(peers) or [])))
        parts += ["policy_types: %s" % t for t in spec.get("policyTypes") or []]
        return "network_policy { %s spec { %s } }" % (tf_meta(md), " ".join(parts))
    return None


def api_seeds(apply_texts, pods):
    n = 0
    def put(message, text):
        nonlocal n
        write("api", "%s-%03d.bin" % (message, n), encode(message, text))
        n += 1
    for text in apply_texts:
        put("ApplyRequest", "manifests { text: %s source: %s }" % (q(text), q("case.yaml")))
        objects = [tf_object(d) for d in yaml.load_all(text, Loader=cases._Loader) if d]
        if all(objects):
            put("ApplyRequest", " ".join("objects { %s }" % o for o in objects))
            put("DeleteRequest", "manifests { text: %s } ignore_not_found: true" % q(text))
    put("DeleteRequest", "refs { kind: NETWORK_POLICY namespace: \"shop\" name: \"web\" }")
    put("DeleteRequest", "refs { kind: POD namespace: \"shop\" name: \"db\" }")
    put("GetRequest", "ref { kind: POD namespace: \"shop\" name: \"web\" }")
    put("GetRequest", "ref { kind: NAMESPACE name: \"ops\" }")
    put("ListRequest", "kind: NETWORK_POLICY namespace: \"shop\"")
    put("ListRequest", "")
    for src, dst in (("ops/prom", "shop/web"), ("shop/web", "shop/db"), ("shop/db", "shop/web")):
        put("CheckRequest", "source { pod: %s } destination { pod: %s } protocol: TCP port: 8080" % (q(src), q(dst)))
    put("CheckRequest", "source { address: \"192.168.1.1\" } destination { pod: \"shop/web\" } port: 80")
    put("CheckRequest", "source { node: true } destination { pod: \"shop/web\" } protocol: UDP port: 53 ip_family: \"IPv6\"")
    put("ExplainPodRequest", "pod: \"shop/web\"")
    put("RenderRequest", "source: COMMITTED")
    put("RenderRequest", "source: KERNEL")
    put("WaitForGenerationRequest", "generation: 1")


def clear(target):
    for path in glob.glob(os.path.join(ROOT, "fuzz", "corpus", target, "*")):
        os.remove(path)


def main():
    for target in ("yaml_loader", "compile", "api"):
        clear(target)
    model = cases.load_model()
    objects = model.objects_yaml
    write("yaml_loader", "model.yaml", objects)
    write("compile", "model.yaml", objects)
    # The same objects as one JSON List document (JSON is YAML).
    items = [d for d in yaml.safe_load_all(objects) if d]
    write("yaml_loader", "model-list.json",
          json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=1))

    # Pods as one flow-style line each: the same objects in fewer bytes, so the compile target's
    # inputs stay small and fast to mutate.
    compact = "---\n".join(yaml.dump(d, Dumper=_QuotingDumper, default_flow_style=True, width=1 << 20)
                           for d in items)
    write("compile", "model-compact.yaml", compact)
    seen = set()
    api_texts = []
    for family in cases.FAMILIES:
        for case in cases.load_cases(model, family=family):
            state = [compact]
            for i, step in enumerate(case.steps):
                name = f"{case.name}-{family}-{i}"
                # IPv6 seeds only where the case's text differs by family (ipBlock placeholders).
                fresh = (case.name, i, step.apply_yaml, step.delete_yaml) not in seen
                seen.add((case.name, i, step.apply_yaml, step.delete_yaml))
                if step.apply_yaml:
                    write("yaml_loader", name + ".yaml", step.apply_yaml)
                    if family == "ipv4":
                        api_texts.append(step.apply_yaml)
                before = "---\n".join(state)
                if step.apply_yaml:
                    state.append(step.apply_yaml)
                after = "---\n".join(state)
                if step.delete_yaml:
                    # B: the state without the deleted objects (they are always whole documents
                    # of earlier applies; drop the documents naming them).
                    gone = {(r.kind, r.namespace, r.name) for r in step.deletes}
                    kept = []
                    for doc in re.split(r"(?m)^---\n", after):
                        obj = yaml.safe_load(doc) if doc.strip() else None
                        md = (obj or {}).get("metadata") or {}
                        key = ((obj or {}).get("kind"), md.get("namespace", ""), md.get("name"))
                        if key not in gone:
                            kept.append(doc)
                    after = "---\n".join(kept)
                    state = kept
                if not fresh:
                    continue
                if step.delete_yaml or not step.apply_yaml:
                    write("compile", name + ".yaml", before + SEPARATOR + after)
                else:
                    # Without a separator the target's B is A minus its last object.
                    write("compile", name + ".yaml", after)

    api_seeds(api_texts, model.pods)

    ruleset = os.path.join(ROOT, "engine", "compiler", "RULESET.md")
    if os.path.exists(ruleset):
        text = open(ruleset, encoding="utf-8").read()
        m = re.search(r"<!-- example-state -->\s*```yaml\n(.*?)```", text, re.S)
        if m:
            write("yaml_loader", "ruleset-example.yaml", m.group(1))
            write("compile", "ruleset-example.yaml", m.group(1))
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True) +
                       glob.glob(os.path.join(ROOT, "examples", "**", "*.json"), recursive=True)):
        rel = os.path.relpath(path, os.path.join(ROOT, "examples")).replace(os.sep, "-")
        text = open(path, encoding="utf-8").read()
        write("yaml_loader", "example-" + rel, text)
        write("compile", "example-" + rel, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
