#!/usr/bin/python3
"""Loader of the NetworkPolicy conformance cases (tests/conformance/README.md).

Reads model.yaml and cases/*.yaml, expands the per-family placeholders and label changes, and
returns plain objects that a runner drives: per step the Kubernetes YAML to apply and to delete,
and the probes with their expected reachability matrices. The C++ loader
(tests/conformance/cases.h) implements the same format; `--dump` prints the canonical text both
must agree on (tests/conformance/cases_agree_test).

Standard library and PyYAML only.

    cases.py --dump                 # every case, both families, canonical text
    cases.py --check                # load everything, report errors, exit 1 on any
"""

import argparse
import dataclasses
import ipaddress
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

import yaml

FAMILIES = ("ipv4", "ipv6")
PROTOCOLS = ("TCP", "UDP", "SCTP")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "model.yaml")
DEFAULT_CASES = os.path.join(HERE, "cases")

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
_LABELS_LINE = re.compile(r"^  labels:.*$", re.M)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as Kubernetes reads it: bare y/Y/n/N are booleans too (PyYAML omits them)."""
    bool_values = dict(yaml.SafeLoader.bool_values, y=True, n=False)


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


def _load(text):
    return yaml.load(text, Loader=_Loader)


def _load_all(text):
    return list(yaml.load_all(text, Loader=_Loader))


class CaseError(Exception):
    """A case or model file is malformed; the message names the file and the field path."""


@dataclasses.dataclass
class Model:
    node: str
    subnet: Dict[str, str]       # family -> CIDR text
    gateway: Dict[str, str]      # family -> address text
    pods: List[str]              # "ns/name" in file order
    ips: Dict[str, Dict[str, str]]  # pod -> family -> address text
    objects_yaml: str            # the Namespace and Pod documents, "---"-separated
    documents: Dict[Tuple[str, str, str], str]  # (kind, namespace, name) -> document text


@dataclasses.dataclass
class Matrix:
    pods: List[str]                 # model order
    allowed: List[List[bool]]       # [from][to]

    def text(self) -> str:
        """Renders the matrix in the case-file layout (the canonical form)."""
        lines = ["-   " + " ".join("%-3s" % p for p in self.pods).rstrip()]
        for i, p in enumerate(self.pods):
            lines.append(p + " " + "   ".join("." if a else "X" for a in self.allowed[i]))
        return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Probe:
    port: int
    protocol: str
    expect: Matrix


@dataclasses.dataclass
class ObjectRef:
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str


@dataclasses.dataclass
class Step:
    description: str
    apply_yaml: str   # expanded; includes the updated objects of `label`
    delete_yaml: str  # expanded
    deletes: List[ObjectRef]
    probes: List[Probe]


@dataclasses.dataclass
class Case:
    name: str
    file: str          # base name of the case file
    upstream: str      # "" for netpol's own cases
    context: str
    description: str
    family: str
    steps: List[Step]


# ---------------------------------------------------------------------------- model

def _split_documents(text: str) -> List[str]:
    """Splits multi-document YAML at lines that are exactly '---'."""
    docs, cur = [], []
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == "---":
            docs.append("".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append("".join(cur))
    return docs


def _object_key(obj, where: str) -> Tuple[str, str, str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise CaseError(f"{where}: not a Kubernetes object with metadata")
    kind = obj.get("kind")
    name = obj["metadata"].get("name")
    ns = obj["metadata"].get("namespace", "") or ""
    if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(ns, str):
        raise CaseError(f"{where}: kind, metadata.name and metadata.namespace must be strings")
    return kind, ns, name


def load_model(path: str = DEFAULT_MODEL) -> Model:
    with open(path, encoding="utf-8") as f:
        return parse_model(f.read(), os.path.basename(path))


def parse_model(text: str, source: str = "model.yaml") -> Model:
    lab = None
    objects, documents = [], {}
    pods, ips = [], {}
    for i, doc in enumerate(_split_documents(text)):
        where = f"{source}: document {i}"
        try:
            obj = _load(doc)
        except yaml.YAMLError as e:
            raise CaseError(f"{where}: {e}") from None
        if obj is None:
            continue
        if isinstance(obj, dict) and obj.get("kind") == "Lab":
            lab = obj
            continue
        kind, ns, name = _object_key(obj, where)
        if kind not in ("Namespace", "Pod"):
            raise CaseError(f"{where}: kind {kind}: the model holds Namespaces and Pods only")
        if len(_LABELS_LINE.findall(doc)) != 1:
            raise CaseError(f"{where}: {kind} {name}: needs exactly one '  labels: {{...}}' line")
        documents[(kind, ns, name)] = doc
        objects.append(doc)
        if kind == "Pod":
            key = f"{ns}/{name}"
            fam = {}
            for j, entry in enumerate((obj.get("status") or {}).get("podIPs") or []):
                try:
                    addr = ipaddress.ip_address(str(entry["ip"]))
                except (KeyError, TypeError, ValueError):
                    raise CaseError(f"{where}: pod {key}: status.podIPs[{j}].ip: not an address") from None
                fam["ipv4" if addr.version == 4 else "ipv6"] = str(entry["ip"])
            for f in FAMILIES:
                if f not in fam:
                    raise CaseError(f"{where}: pod {key}: status.podIPs: no {f} address")
            pods.append(key)
            ips[key] = fam
    if lab is None:
        raise CaseError(f"{source}: no 'kind: Lab' document")
    try:
        nets = lab["networks"]
        subnet = {f: str(nets[f]["subnet"]) for f in FAMILIES}
        gateway = {f: str(nets[f]["gateway"]) for f in FAMILIES}
        node = str(lab["node"])
    except (KeyError, TypeError):
        raise CaseError(f"{source}: Lab: needs node and networks.ipv4/ipv6.subnet/gateway") from None
    return Model(node=node, subnet=subnet, gateway=gateway, pods=pods, ips=ips,
                 objects_yaml="---\n".join(objects), documents=documents)


# ---------------------------------------------------------------------------- expansion

def _prefix(model: Model, pod: str, family: str, length: int, where: str) -> str:
    limit = 32 if family == "ipv4" else 128
    if not 0 <= length <= limit:
        raise CaseError(f"{where}: prefix length {length} out of range for {family}")
    return str(ipaddress.ip_network(f"{model.ips[pod][family]}/{length}", strict=False))


def expand(model: Model, text: str, family: str, where: str = "text") -> str:
    """Replaces the {{...}} placeholders of `text` for `family` (see README.md)."""
    def one(m):
        words = m.group(1).split()
        bad = CaseError(f"{where}: bad placeholder {m.group(0)!r}")
        if not words:
            raise bad
        op, args = words[0], words[1:]
        if op in ("subnet", "gateway"):
            if args:
                raise bad
            return (model.subnet if op == "subnet" else model.gateway)[family]
        if op not in ("ip", "host", "cidr") or not args:
            raise bad
        pod = args[0]
        if pod not in model.ips:
            raise CaseError(f"{where}: {m.group(0)!r}: unknown pod {pod}")
        if op == "ip" and len(args) == 1:
            return model.ips[pod][family]
        if op == "host" and len(args) == 1:
            return model.ips[pod][family] + ("/32" if family == "ipv4" else "/128")
        if op == "cidr" and len(args) in (2, 3):
            try:
                lengths = [int(a) for a in args[1:]]
            except ValueError:
                raise bad from None
            if family == "ipv4":
                length = lengths[0]
            else:
                length = lengths[1] if len(lengths) == 2 else lengths[0] + 96
            return _prefix(model, pod, family, length, where)
        raise bad
    return _PLACEHOLDER.sub(one, text)


def _labels_line(labels: Dict[str, str]) -> str:
    return "  labels: {" + ", ".join(f'"{k}": "{labels[k]}"' for k in sorted(labels)) + "}"


def _relabel(model: Model, item, where: str) -> str:
    if not isinstance(item, dict) or set(item) not in ({"pod", "labels"}, {"namespace", "labels"}):
        raise CaseError(f"{where}: needs 'pod: ns/name' or 'namespace: name', and 'labels'")
    if "pod" in item:
        ref = str(item["pod"])
        ns, _, name = ref.partition("/")
        key = ("Pod", ns, name)
    else:
        ref = str(item["namespace"])
        key = ("Namespace", "", ref)
    if key not in model.documents:
        raise CaseError(f"{where}: {key[0]} {ref} is not in the model")
    labels = item["labels"]
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise CaseError(f"{where}.labels: must be a map")
    for k, v in labels.items():
        if not isinstance(k, str) or not _LABEL_KEY.match(k) or len(k.split("/")[-1]) > 63:
            raise CaseError(f"{where}.labels: bad label key {k!r}")
        if not isinstance(v, str) or not _LABEL_VALUE.match(v) or len(v) > 63:
            raise CaseError(f"{where}.labels.{k}: value must be a label string (quote it), got {v!r}")
    return _LABELS_LINE.sub(lambda _: _labels_line(labels), model.documents[key], count=1)


# ---------------------------------------------------------------------------- cases

def parse_matrix(model: Model, text, where: str) -> Matrix:
    if not isinstance(text, str):
        raise CaseError(f"{where}: must be a text block")
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise CaseError(f"{where}: empty matrix")
    header = rows[0][1:] if rows[0] and rows[0][0] == "-" else rows[0]
    n = len(model.pods)
    if sorted(header) != sorted(model.pods) or len(header) != n:
        raise CaseError(f"{where}: header must name each of the {n} model pods once")
    if len(rows) != n + 1:
        raise CaseError(f"{where}: needs {n} rows after the header, has {len(rows) - 1}")
    index = {p: i for i, p in enumerate(model.pods)}
    allowed = [[False] * n for _ in range(n)]
    seen = set()
    for r, row in enumerate(rows[1:], start=1):
        if len(row) != n + 1 or row[0] not in index or row[0] in seen:
            raise CaseError(f"{where}: row {r}: needs a new model pod name and {n} cells")
        seen.add(row[0])
        for c, cell in enumerate(row[1:]):
            if cell not in (".", "X"):
                raise CaseError(f"{where}: row {r} ({row[0]}): cell {cell!r} is neither '.' nor 'X'")
            allowed[index[row[0]]][index[header[c]]] = cell == "."
    for p, i in index.items():
        if not allowed[i][i]:
            raise CaseError(f"{where}: {p} -> {p} must be '.': a pod always reaches itself")
    return Matrix(pods=list(model.pods), allowed=allowed)


def _text(value, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CaseError(f"{where}: must be a text block")
    return value


def _deletes(text: str, where: str) -> List[ObjectRef]:
    refs = []
    try:
        objs = _load_all(text)
    except yaml.YAMLError as e:
        raise CaseError(f"{where}: {e}") from None
    for i, obj in enumerate(o for o in objs if o is not None):
        kind, ns, name = _object_key(obj, f"{where}: document {i}")
        refs.append(ObjectRef(kind, ns, name))
    return refs


def parse_case(model: Model, text: str, file: str, family: str) -> Case:
    if family not in FAMILIES:
        raise ValueError(family)
    try:
        doc = _load(text)
    except yaml.YAMLError as e:
        raise CaseError(f"{file}: {e}") from None
    if not isinstance(doc, dict):
        raise CaseError(f"{file}: must be a map")
    unknown = set(doc) - {"name", "upstream", "context", "description", "steps"}
    if unknown:
        raise CaseError(f"{file}: unknown field {sorted(unknown)[0]}")
    name = doc.get("name")
    if not isinstance(name, str) or not re.match(r"^[a-z0-9]+(-[a-z0-9]+)*$", name):
        raise CaseError(f"{file}: name: must be kebab-case")
    if name + ".yaml" != file:
        raise CaseError(f"{file}: name: must match the file name")
    upstream = _text(doc.get("upstream"), f"{file}: upstream")
    description = _text(doc.get("description"), f"{file}: description")
    if not upstream and not description:
        raise CaseError(f"{file}: needs upstream (the upstream test title) or description")
    steps_in = doc.get("steps")
    if not isinstance(steps_in, list) or not steps_in:
        raise CaseError(f"{file}: steps: must be a non-empty list")
    steps = []
    for s, st in enumerate(steps_in):
        where = f"{file}: steps[{s}]"
        if not isinstance(st, dict):
            raise CaseError(f"{where}: must be a map")
        unknown = set(st) - {"description", "apply", "label", "delete", "probes"}
        if unknown:
            raise CaseError(f"{where}: unknown field {sorted(unknown)[0]}")
        apply_docs = []
        apply_text = _text(st.get("apply"), f"{where}.apply")
        if apply_text:
            apply_docs.append(expand(model, apply_text, family, f"{where}.apply"))
        label = st.get("label") or []
        if not isinstance(label, list):
            raise CaseError(f"{where}.label: must be a list")
        for i, item in enumerate(label):
            apply_docs.append(_relabel(model, item, f"{where}.label[{i}]"))
        delete_yaml = expand(model, _text(st.get("delete"), f"{where}.delete"), family,
                             f"{where}.delete")
        probes_in = st.get("probes")
        if not isinstance(probes_in, list) or not probes_in:
            raise CaseError(f"{where}.probes: must be a non-empty list")
        probes = []
        for p, pr in enumerate(probes_in):
            pw = f"{where}.probes[{p}]"
            if not isinstance(pr, dict) or set(pr) != {"port", "protocol", "expect"}:
                raise CaseError(f"{pw}: needs exactly port, protocol and expect")
            port = pr["port"]
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise CaseError(f"{pw}.port: must be 1..65535")
            if pr["protocol"] not in PROTOCOLS:
                raise CaseError(f"{pw}.protocol: must be TCP, UDP or SCTP")
            probes.append(Probe(port, pr["protocol"], parse_matrix(model, pr["expect"], f"{pw}.expect")))
        steps.append(Step(description=_text(st.get("description"), f"{where}.description"),
                          apply_yaml="---\n".join(apply_docs),
                          delete_yaml=delete_yaml,
                          deletes=_deletes(delete_yaml, f"{where}.delete"),
                          probes=probes))
    return Case(name=name, file=file, upstream=upstream,
                context=_text(doc.get("context"), f"{file}: context"),
                description=description, family=family, steps=steps)


def load_case(model: Model, path: str, family: str) -> Case:
    with open(path, encoding="utf-8") as f:
        return parse_case(model, f.read(), os.path.basename(path), family)


def case_files(directory: str = DEFAULT_CASES) -> List[str]:
    """Returns the case files of `directory`, sorted by name."""
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".yaml"))


def load_cases(model: Model, directory: str = DEFAULT_CASES, family: str = "ipv4") -> List[Case]:
    return [load_case(model, path, family) for path in case_files(directory)]


# ---------------------------------------------------------------------------- dump

def _block(label: str, text: str) -> List[str]:
    out = [label]
    for line in text.splitlines():
        out.append("| " + line)
    return out


def dump_case(case: Case) -> str:
    """Renders a loaded case as canonical text (identical to the C++ DumpCase)."""
    out = [f"case {case.name}", f"file {case.file}", f"family {case.family}",
           f"upstream {case.upstream}", f"context {case.context}"]
    out += _block("description", case.description)
    for i, st in enumerate(case.steps):
        out.append(f"step {i}")
        out += _block("step-description", st.description)
        out += _block("apply", st.apply_yaml)
        out += _block("delete", st.delete_yaml)
        for ref in st.deletes:
            out.append(f"deletes {ref.kind} {ref.namespace}/{ref.name}")
        for pr in st.probes:
            out.append(f"probe {pr.protocol} {pr.port}")
            out += _block("expect", pr.expect.text())
    return "\n".join(out) + "\n"


def dump_all(model: Model, directory: str = DEFAULT_CASES) -> str:
    parts = []
    for path in case_files(directory):
        for family in FAMILIES:
            parts.append(dump_case(load_case(model, path, family)))
    return "".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--cases", default=DEFAULT_CASES)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dump", action="store_true", help="print every case, both families")
    mode.add_argument("--check", action="store_true", help="load everything, report errors")
    args = ap.parse_args(argv)
    try:
        model = load_model(args.model)
        if args.dump:
            sys.stdout.write(dump_all(model, args.cases))
        else:
            n = 0
            for family in FAMILIES:
                n = len(load_cases(model, args.cases, family))
            print(f"ok: {n} cases, {len(model.pods)} pods")
    except (CaseError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
