#!/usr/bin/python3
"""Kernel conformance: every case of tests/conformance/cases, for IPv4 and IPv6, enforced by the
engine in a lab node and probed with real packets.

The lab (9 pods, x,y,z x a,b,c of tests/conformance/model.yaml) is built once. For each case
and family the runner starts from the model's objects, and for each step upserts the step's
`apply` objects (relabelled model objects included), removes its `delete` objects, writes the
whole state to a file and runs the enforce tool in the node namespace:

    ip netns exec <node> <enforce> --table netpol --node node-1 --state <file.yaml>

It then forgets tracked connections (so every probe is a new connection), probes the full matrix
for every probe of the step, and compares each cell with the case's expectation. Between cases
the state goes back to the model alone (no policies). When a case's objects are the same in both
families (no addresses in them), one enforced state serves the probes of both families.

SCTP probes are not sent (this kernel has no SCTP sockets); they are listed as "SCTP: verified by
program only". A case whose probes are all SCTP counts as skipped.

Output: one line per case and family (PASS/FAIL/SKIP), details under a failure (expected and
observed matrices, the differing cells, the state file and `nft list table inet netpol`), and a
closing line `N passed, N failed[, N skipped]`.

    conformance_test.py --enforce PATH [--cases DIR] [--model FILE] [--case NAME ...]
                        [--family ipv4|ipv6]
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean when run by hand
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dplib  # noqa: E402
from dplib import lab  # noqa: E402

sys.path.insert(0, os.path.join(dplib.ROOT, "tests", "conformance"))
import cases as caselib  # noqa: E402  (tests/conformance/cases.py)

import yaml  # noqa: E402

LAB_FAMILY = {"ipv4": "v4", "ipv6": "v6"}


class State:
    """The objects of one case so far, as YAML document texts keyed by (kind, ns, name), in
    first-seen order."""

    def __init__(self, model_yaml):
        self.docs = {}
        self.apply(model_yaml)

    @staticmethod
    def _key(doc_text):
        obj = yaml.safe_load(doc_text)
        if obj is None:
            return None
        meta = obj.get("metadata") or {}
        return (obj.get("kind"), meta.get("namespace", "") or "", meta.get("name"))

    def apply(self, text):
        for doc in caselib._split_documents(text):
            key = self._key(doc)
            if key is not None:
                self.docs[key] = doc.rstrip("\n") + "\n"

    def delete(self, refs):
        for r in refs:
            self.docs.pop((r.kind, r.namespace, r.name), None)

    def text(self):
        return "---\n".join(self.docs.values())


def expected_table(model, step, fam):
    """{(lab family, proto, port): {(src, dst): bool}} for the non-SCTP probes of a step."""
    want = {}
    for pr in step.probes:
        if pr.protocol == "SCTP":
            continue
        cells = {}
        for i, s in enumerate(model.pods):
            for j, d in enumerate(model.pods):
                cells[(s, d)] = pr.expect.allowed[i][j]
        want[(LAB_FAMILY[fam], pr.protocol, pr.port)] = cells
    return want


def same_objects(a, b):
    """Whether two loaded cases (one file, two families) apply and delete the same text at every
    step, so one enforced state serves both families' probes."""
    return all(x.apply_yaml == y.apply_yaml and x.delete_yaml == y.delete_yaml
               for x, y in zip(a.steps, b.steps))


def run_group(the_lab, enforcer, model, group, outs):
    """Runs the cases of `group` (one case file in one or more families whose steps enforce the
    same objects) together: one enforce per step, probes of every family at once.
    Returns {family: "PASS"|"FAIL"|"SKIP"}; details of a failure go to outs[family]."""
    first = group[0]
    state = State(model.objects_yaml)
    verdict = {c.family: None for c in group}
    probed = {c.family: 0 for c in group}
    sctp = 0
    for i, step in enumerate(first.steps):
        state.delete(step.deletes)
        state.apply(step.apply_yaml)
        fams = "+".join(c.family for c in group)
        try:
            path = enforcer.apply_text(state.text(), "%s-%s-step%d" % (first.name, fams, i))
        except dplib.RunnerError as e:
            for c in group:
                if verdict[c.family] is None:
                    print("  step %d: enforce failed: %s" % (i, e), file=outs[c.family])
                    verdict[c.family] = "FAIL"
            break
        the_lab.flush_conntrack()
        sctp += sum(1 for pr in step.probes if pr.protocol == "SCTP")
        live = [c for c in group if verdict[c.family] is None]
        want = {}
        for c in live:
            want.update(expected_table(model, c.steps[i], c.family))
        if not want:
            continue
        probes = sorted({(p, n) for (_, p, n) in want})
        got = the_lab.matrices(probes, families=sorted({LAB_FAMILY[c.family] for c in live}))
        bad = dplib.confirm(the_lab, dplib.diff(want, got))
        for c in live:
            fam = LAB_FAMILY[c.family]
            probed[c.family] += sum(1 for k in want if k[0] == fam)
            mine = [m for m in bad if m[0] == fam]
            if not mine:
                continue
            verdict[c.family] = "FAIL"
            out = outs[c.family]
            desc = c.steps[i].description.strip()
            print("  step %d%s: %d cells differ; state file %s" % (
                i, " (%s)" % desc if desc else "", len(mine), path), file=out)
            dplib.report_mismatches(
                the_lab, {k: v for k, v in want.items() if k[0] == fam}, got, mine, out=out)
            print("  nft list table inet netpol:", file=out)
            for line in the_lab.nft_list().splitlines():
                print("    " + line, file=out)
        if all(v == "FAIL" for v in verdict.values()):
            break
    for c in group:
        if verdict[c.family] is None:
            verdict[c.family] = "PASS" if probed[c.family] else "SKIP"
        if sctp and verdict[c.family] != "FAIL":
            print("  SCTP: verified by program only (%d probe%s not sent)" % (
                sctp, "s" * (sctp > 1)), file=outs[c.family])
    return verdict


class Collect:
    def __init__(self):
        self.lines = []

    def write(self, s):
        self.lines.append(s)

    def text(self):
        return "".join(self.lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--enforce", help="netpol-enforce binary (or $NETPOL_ENFORCE)")
    ap.add_argument("--cases", default=caselib.DEFAULT_CASES)
    ap.add_argument("--model", default=caselib.DEFAULT_MODEL)
    ap.add_argument("--case", action="append", help="run only this case (repeatable)")
    ap.add_argument("--family", choices=caselib.FAMILIES, action="append")
    args = ap.parse_args()

    lab.require_root("conformance_test.py")
    try:
        enforce_bin = dplib.find_tool(args.enforce, "NETPOL_ENFORCE",
                                      "//tests/tools:netpol-enforce")
        model = caselib.load_model(args.model)
        lab_model = lab.load_model(args.model)
        families = args.family or list(caselib.FAMILIES)
        files = caselib.case_files(args.cases)
        if args.case:
            wanted = set(args.case)
            files = [f for f in files if os.path.basename(f)[:-len(".yaml")] in wanted]
            missing = wanted - {os.path.basename(f)[:-len(".yaml")] for f in files}
            if missing:
                raise dplib.RunnerError("no such case: %s" % ", ".join(sorted(missing)))
        loaded = [caselib.load_case(model, f, fam) for f in files for fam in families]
    except (dplib.RunnerError, caselib.CaseError, lab.LabError, OSError) as e:
        print("FAILED: %s" % e)
        return 1
    if [p.key for p in lab_model.pods] != model.pods:
        print("FAILED: lab pods %s differ from the case model's %s" % (
            [p.key for p in lab_model.pods], model.pods))
        return 1

    # One enforced state serves both families of a case when their objects are the same (no
    # family-specific addresses); ipBlock cases run once per family.
    groups = []
    for case in loaded:
        prev = groups[-1] if groups else None
        if prev and prev[0].file == case.file and same_objects(prev[0], case):
            prev.append(case)
        else:
            groups.append([case])

    # Serve every port a case probes, not only the model's container ports.
    ports = sorted({pr.port for c in loaded for st in c.steps for pr in st.probes})
    passed = failed = skipped = 0
    t0 = time.monotonic()
    with lab.Lab(lab_model, extra_ports=ports) as the_lab:
        enforcer = dplib.Enforcer(the_lab, enforce_bin)
        for group in groups:
            ts = time.monotonic()
            outs = {c.family: Collect() for c in group}
            try:
                verdicts = run_group(the_lab, enforcer, model, group, outs)
            except lab.LabError as e:
                verdicts = {c.family: "FAIL" for c in group}
                for o in outs.values():
                    o.write("  lab: %s\n" % e)
            took = time.monotonic() - ts
            for case in group:
                verdict = verdicts[case.family]
                print("%s %s %s (%d step%s, %.1fs%s)" % (
                    verdict, case.name, case.family, len(case.steps),
                    "s" * (len(case.steps) > 1), took,
                    ", probed with " + "+".join(c.family for c in group if c is not case)
                    if len(group) > 1 else ""))
                sys.stdout.write(outs[case.family].text())
                passed += verdict == "PASS"
                failed += verdict == "FAIL"
                skipped += verdict == "SKIP"
            sys.stdout.flush()
            try:  # back to no policies before the next case
                enforcer.apply_text(model.objects_yaml, "reset")
            except dplib.RunnerError as e:
                print("FAILED: reset to the model alone: %s" % e)
                failed += 1
                break
        enforcer.finish(keep=failed > 0)
    print("conformance: %d case runs in %.1fs" % (passed + failed + skipped,
                                                   time.monotonic() - t0))
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
