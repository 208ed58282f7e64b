"""Shared pieces of the datapath runners: finding the tools, writing state files, enforcing a
state in the lab's node namespace, and comparing expected with observed reachability.

A "verdict table" here is {(family, proto, port): {(src_key, dst_key): bool}}; observed tables
hold lab.Result values in place of bools.
"""

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402
import yaml  # noqa: E402  (python3-yaml)

TABLE = "netpol"


class RunnerError(Exception):
    pass


def find_tool(value, env, label):
    """Returns an absolute path to an executable given by a flag value or $env. The committed
    Bazel targets pass `$(rootpath ...)` of the real tool."""
    path = value or os.environ.get(env)
    if not path:
        raise RunnerError("no %s: pass its path (built by %s) or set $%s" % (label, label, env))
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        raise RunnerError("%s: %s is not an executable file" % (label, path))
    return path


class _Yaml11Dumper(yaml.SafeDumper):
    """Quotes the strings YAML 1.1 reads as booleans. Kubernetes (and the engine's loader) read
    YAML 1.1, where a bare `y`, `n`, `on` or `off` is a boolean; PyYAML would write the namespace
    `y` bare. (PyYAML already quotes what it reads as numbers, null or true/false itself.)"""


_YAML11_BOOLS = {"y", "n", "yes", "no", "on", "off", "true", "false"}


def _represent_str(dumper, s):
    style = '"' if s.lower() in _YAML11_BOOLS else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Yaml11Dumper.add_representer(str, _represent_str)


def dump_objects(objects):
    """Multi-document YAML of Kubernetes objects, keys in the order given."""
    return yaml.dump_all(objects, Dumper=_Yaml11Dumper, sort_keys=False,
                         default_flow_style=False)


class Enforcer:
    """Applies a whole state to the lab's node: writes it to a file and runs
    `ip netns exec <node> <enforce> --table netpol --node <node> --state <file>`."""

    def __init__(self, the_lab, binary, table=TABLE):
        self.lab = the_lab
        self.binary = binary
        self.table = table
        self.dir = tempfile.mkdtemp(prefix="netpol-state-", dir=os.environ.get("TEST_TMPDIR"))
        self.count = 0
        self.last_path = None

    def finish(self, keep):
        """Removes the state files, or keeps them (for a failure report) and says where."""
        if keep:
            print("state files kept in %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def apply(self, objects, name="state"):
        """Enforces `objects` (dicts). See apply_text."""
        return self.apply_text(dump_objects(objects), name)

    def apply_text(self, text, name="state"):
        """Enforces a multi-document YAML state. Returns the state file's path (kept for the
        failure report). Raises RunnerError with the tool's message on a non-zero exit."""
        self.count += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = os.path.join(self.dir, "%03d-%s.yaml" % (self.count, safe))
        with open(path, "w") as f:
            f.write(text)
        self.last_path = path
        cp = self.lab.node_exec([self.binary, "--table", self.table, "--node", self.lab.model.node,
                                 "--state", path], check=False, timeout=120)
        if cp.returncode != 0:
            msg = (cp.stderr.strip() or cp.stdout.strip()).splitlines()
            if len(msg) > 40:
                msg = msg[:40] + ["... (%d more lines)" % (len(msg) - 40)]
            raise RunnerError("%s --state %s: exit %d: %s" % (
                os.path.basename(self.binary), path, cp.returncode, "\n".join(msg)))
        return path


def diff(want, got):
    """Cells where the expected bool differs from the observed Result:
    [(family, proto, port, src, dst, want, Result)]."""
    out = []
    for key, cells in want.items():
        for cell, w in cells.items():
            r = got.get(key, {}).get(cell)
            if r is None or r.ok != w:
                out.append(key + cell + (w, r))
    return out


def confirm(the_lab, mismatches, timeout=3.0):
    """Re-probes mismatching cells with a longer timeout, so a slow answer on a loaded machine is
    not reported as a block. Returns the mismatches that remain (with the new Results)."""
    if not mismatches:
        return []
    per_source = {}
    for (fam, proto, port, src, dst, w, r) in mismatches:
        per_source.setdefault(src, []).append(
            {"id": "%s|%s|%d|%s" % (fam, proto, port, dst), "ip": the_lab.pods[dst].ip(fam),
             "proto": proto, "port": port})
    again = the_lab.probe_all(per_source, timeout)
    out = []
    for (fam, proto, port, src, dst, w, r) in mismatches:
        r2 = again[src]["%s|%s|%d|%s" % (fam, proto, port, dst)]
        if r2.ok != w:
            out.append((fam, proto, port, src, dst, w, r2))
    return out


def report_mismatches(the_lab, want, got, mismatches, out=sys.stdout):
    """Prints, for every (family, proto, port) with a mismatch, expected vs observed matrices
    (differing cells marked '*') and the list of differing cells with the probe's reason."""
    keys = the_lab.pod_keys()
    by_key = {}
    for m in mismatches:
        by_key.setdefault(m[:3], []).append(m)
    for key in sorted(by_key):
        fam, proto, port = key
        cells = {(m[3], m[4]) for m in by_key[key]}
        sources = sorted({c[0] for c in want[key]}, key=lambda s: (s == "node", keys.index(s)
                                                                   if s in keys else 0))
        obs = {c: r for c, r in got.get(key, {}).items()}
        for m in by_key[key]:
            obs[(m[3], m[4])] = m[6]
        print("  %s %s/%d expected:" % key, file=out)
        print(_indent(lab.render_matrix(sources, want[key], cols=keys)), file=out)
        print("  %s %s/%d observed ('*' = differs):" % key, file=out)
        print(_indent(lab.render_matrix(sources, obs, cols=keys, mark=cells)), file=out)
        for (f, p, n, s, d, w, r) in by_key[key]:
            print("    %s -> %s %s %s/%d: expected %s, observed %s (%s)" % (
                s, d, f, p, n, "allowed" if w else "blocked",
                "allowed" if r and r.ok else "blocked", r.why if r else "not probed"), file=out)


def _indent(text, n=4):
    return "\n".join(" " * n + line for line in text.splitlines())
