#!/usr/bin/python3
"""Smoke run of the control-plane table (run.py): every row at T1 or smaller, the new build
only, seconds of churn. Checks that every row ran without error and that the table's cells hold
numbers; asserts nothing about time. Needs root (network namespaces, nftables, etcd): fails when
not root unless NETPOL_LAB_ALLOW_SKIP=1 (a visible skip; a failure when NETPOL_CI=1).

    run_python.sh smoke_test.py RUN_PY   (from the runfiles root: binaries at their Bazel paths)
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "lab"))
import lab  # noqa: E402


def main():
    lab.require_root("the control-plane benchmark's smoke run")
    run_py = sys.argv[1]
    out = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), "control_plane")
    argv = [sys.executable, run_py, "--old=.", "--new=.", "--builds=new", "--out=" + out,
            "--ns-namespaces=200", "--ns-runs=2", "--incr-tier=T1", "--incr-events=20",
            "--t2-tier=T1", "--t2-rates=20,40", "--t2-seconds=1", "--t4-tier=T1",
            "--t4-rate=20", "--t4-seconds=1", "--etcd-tier=T1", "--etcd-rate=20",
            "--etcd-seconds=1", "--step-timeout=120"]
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(cp.stdout)
    if cp.returncode != 0:
        print("FAILED: run.py exited %d" % cp.returncode)
        return 1
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)["results"]
    problems = []
    for row in ("ns_selector", "t4_incremental", "agent_t2", "agent_t4", "etcd"):
        r = res.get(row, {}).get("new")
        if r is None or "error" in r:
            problems.append("%s: %s" % (row, r and r.get("error")))
    if not problems:
        if res["ns_selector"]["new"]["runs"][0]["elements"] <= 0:
            problems.append("ns_selector compiled no element")
        if res["t4_incremental"]["new"]["events"] <= 0:
            problems.append("t4_incremental ran no event")
        for row in ("agent_t2", "agent_t4"):
            r = res[row]["new"]
            if r["loaded"]["VmRSS"] <= 0 or not r["churns"] or any(
                    c["sent"] < 2 for c in r["churns"]):
                problems.append("%s: no load or churn: %s" % (row, json.dumps(r)[:500]))
        e = res["etcd"]["new"]
        if e["enforced_on_b_ms"]["n"] < 2 or e["enforced_on_b_ms"]["p99"] is None:
            problems.append("etcd: no event timed on the second node: %s" % json.dumps(e)[:500])
    with open(os.path.join(out, "table.md")) as f:
        table = f.read()
    if "failed:" in table or "missing (" in table:
        problems.append("the table has failed or missing cells")
    if problems:
        print("FAILED: %s" % "; ".join(problems))
        return 1
    print("OK: every row ran (new build, T1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
