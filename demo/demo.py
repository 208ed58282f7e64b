#!/usr/bin/python3
"""The netpol demo: the Kubernetes Services-tutorial scenario on a real kernel, step by step.

A lab node (tests/lab: network namespaces, a bridge, one namespace per pod, echo servers) runs
netpol-agent in its node namespace. The demo applies the YAML files of this folder with
`netpolctl apply -f` in three steps:

  1. the `funkyapp1` deployment (three echo pods on TCP 8080) and the `shell-demo` client pod;
  2. a default-deny ingress policy for the namespace;
  3. a policy that lets shell-demo reach funkyapp1 on TCP 8080.

After each step it probes every (client or funkyapp1 pod) -> funkyapp1 pod pair with real TCP
connections (IPv4 and IPv6, ports 8080 and 80), prints the matrix, a `netpolctl check`
explanation and the part of `nft list table inet netpol` the step changed. It fails (exit 1)
when a probed cell differs from what the policies say, so the demo is also a test
(//demo:demo_test). Everything it made (lab namespaces, the agent, temporary files) is removed
on exit, on Ctrl-C, SIGTERM and SIGHUP.

Usage (root; tools/demo builds the binaries and runs this):
    demo.py --agent PATH/netpol-agent --netpolctl PATH/netpolctl
"""

import argparse
import concurrent.futures
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402
import yaml  # noqa: E402  (python3-yaml)

NODE = "node-1"
NAMESPACE = "default"
CLIENT = "default/shell-demo"
APP_PORT = 8080   # the port funkyapp1 serves and the allow policy opens
OTHER_PORT = 80   # another port every lab pod serves: never opened by the policies
FAMILIES = ("v4", "v6")
FAMILY_NAMES = {"v4": "IPv4", "v6": "IPv6"}
# The matrices of a step, in the order they are reported: the first one is printed in full.
VIEWS = [("v4", APP_PORT), ("v6", APP_PORT), ("v4", OTHER_PORT), ("v6", OTHER_PORT)]
RULE = "=" * 78


class DemoError(Exception):
    pass


class Interrupted(Exception):
    """Raised from the signal handlers so cleanup runs in `finally` blocks."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# --------------------------------------------------------------------------------------------
# The scenario. `allowed(src, dst, port)` is what the applied policies say for a new TCP
# connection from pod src to pod dst (keys "ns/name"); a pod always reaches itself.


@dataclasses.dataclass
class Step:
    title: str
    files: list
    story: str
    allowed: object
    check_from: str
    check_port: int = APP_PORT


def _is_app(key):
    return key.split("/", 1)[1].startswith("funkyapp1-")


STEPS = [
    Step(
        title="funkyapp1 (3 echo pods on TCP 8080) and the shell-demo client; no NetworkPolicy",
        files=["00-namespace.yaml", "10-funkyapp1.yaml", "20-shell-demo.yaml"],
        story="No policy selects any pod, so every pod accepts every connection: Kubernetes'\n"
              "default is allow-all. The agent's table is there, but its dispatch maps are empty.",
        allowed=lambda src, dst, port: True,
        check_from=CLIENT,
    ),
    Step(
        title="default-deny: isolate every pod of the namespace for ingress",
        files=["30-default-deny.yaml"],
        story="The empty podSelector selects all pods of `default` and allows nothing, so every\n"
              "new connection to them is dropped (a pod still reaches itself). Each isolated pod\n"
              "now has an entry in the ingress dispatch map pointing at a chain that drops.",
        allowed=lambda src, dst, port: src == dst,
        check_from=CLIENT,
    ),
    Step(
        title="allow shell-demo -> funkyapp1 on TCP 8080",
        files=["40-allow-shell-demo.yaml"],
        story="Policies add up: funkyapp1's pods are selected by both policies, and the second\n"
              "one allows TCP 8080 from pods labelled app=shell-demo. Other ports, and other\n"
              "clients (funkyapp1's own pods), stay denied.",
        allowed=lambda src, dst, port: src == dst or (src == CLIENT and port == APP_PORT),
        check_from=CLIENT,
    ),
]


# --------------------------------------------------------------------------------------------
# Helpers


def say(text=""):
    print(text, flush=True)


def indent(text, prefix="    "):
    return "\n".join(prefix + line if line else line for line in text.rstrip("\n").split("\n"))


def short(key):
    return key.split("/", 1)[1]


def load_objects(paths):
    objects = []
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                if isinstance(doc, dict) and doc.get("kind") == "List":
                    objects.extend(doc.get("items") or [])
                else:
                    objects.append(doc)
    return objects


class Tools:
    """The two binaries and the agent's socket."""

    def __init__(self, agent, netpolctl, socket):
        self.agent = agent
        self.netpolctl = netpolctl
        self.server = "unix://" + socket

    def ctl(self, *args, timeout=120):
        argv = [self.netpolctl, "--server=" + self.server] + list(args)
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DemoError("netpolctl %s: no answer in %ss" % (" ".join(args), timeout))


def find_binary(value, env, label):
    path = value or os.environ.get(env)
    if not path:
        raise DemoError("no %s: pass --%s PATH or set $%s" % (label, label, env))
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        raise DemoError("%s: %s is not an executable file (build it with bazel build %s)"
                        % (label, path, "//agent:netpol-agent" if label == "agent"
                           else "//cli:netpolctl"))
    return path


# --------------------------------------------------------------------------------------------
# The agent


class Agent:
    def __init__(self, tools, the_lab, workdir):
        self.tools = tools
        self.lab = the_lab
        self.state_dir = os.path.join(workdir, "state")
        self.log_path = os.path.join(workdir, "agent.log")
        self.proc = None

    def start(self, timeout=30.0):
        os.makedirs(self.state_dir, mode=0o700)
        argv = ["ip", "netns", "exec", self.lab.node_netns, self.tools.agent,
                "--node-name=" + NODE, "--state-dir=" + self.state_dir,
                "--listen=" + self.tools.server]
        say("$ ip netns exec %s netpol-agent --node-name=%s --state-dir=%s --listen=%s"
            % (self.lab.node_netns, NODE, self.state_dir, self.tools.server))
        log = open(self.log_path, "w")
        # Its own session: a Ctrl-C at the terminal reaches the demo, which stops the agent
        # itself, in order.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DemoError("netpol-agent exited with status %s:\n%s"
                                % (self.proc.returncode, indent(self.log_tail())))
            cp = self.tools.ctl("status", timeout=10)
            if cp.returncode == 0:
                say(indent(cp.stdout))
                return
            if time.monotonic() > deadline:
                raise DemoError("netpol-agent not serving after %.0fs; netpolctl status said:\n"
                                "%s\nagent log:\n%s" % (timeout, indent(cp.stderr or cp.stdout),
                                                        indent(self.log_tail())))
            time.sleep(0.1)

    def log_tail(self, lines=20):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:]) or "(empty)"
        except OSError as e:
            return "(no log: %s)" % e

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# The nft table: blocks (chains, sets, maps) and what a step changed


_BLOCK_RE = re.compile(r"^\t(chain|set|map) (\S+) \{")


def table_blocks(text):
    """Splits `nft list table` output into {"chain forward": block text}, in order."""
    blocks = {}
    cur = None
    for line in text.split("\n"):
        m = _BLOCK_RE.match(line)
        if m:
            cur = "%s %s" % (m.group(1), m.group(2))
            blocks[cur] = [line]
        elif cur is not None:
            blocks[cur].append(line)
            if line == "\t}":
                cur = None
    return {k: "\n".join(v) for k, v in blocks.items()}


def _is_v6_twin(name):
    return bool(re.search(r"(-v6|-a6|-p6|-ra6|-rp6)$", name))


def relevant_blocks(before, after):
    """The blocks to show after a step: those that are new or changed (IPv4 ones only, their
    IPv6 twins read the same), or the forward chain when nothing but elements of IPv6 changed.
    Returns (shown blocks, names of changed blocks left out)."""
    changed = [k for k, v in after.items() if before.get(k) != v]
    shown = [k for k in changed if not _is_v6_twin(k.split(" ", 1)[1])]
    if not before:
        shown = [k for k in shown if k in ("chain forward", "map ingress-dispatch-v4")]
    left_out = [k for k in changed if k not in shown]
    return [after[k] for k in shown], left_out


# --------------------------------------------------------------------------------------------
# Probes and expectations


def observe(the_lab, sources, dests, ports):
    """Real probes: {(family, port): {(src, dst): lab.Result}}. Cells that disagree with a first
    pass are not re-probed here; see `compare`."""
    got = the_lab.matrices([("TCP", p) for p in ports], FAMILIES, sources=sources, dests=dests)
    return {(fam, port): got[(fam, "TCP", port)] for fam in FAMILIES for port in ports}


def evaluator_verdicts(tools, sources, dests, ports):
    """What the agent's evaluator says for every cell: {(family, port): {(src, dst): bool}}."""
    jobs = [(fam, port, s, d) for fam in FAMILIES for port in ports for s in sources
            for d in dests]

    def one(job):
        fam, port, s, d = job
        cp = tools.ctl("check", "--from=" + s, "--to=" + d, "--port=%d" % port,
                       "--protocol=TCP", "--ip-family=" + ("IPv4" if fam == "v4" else "IPv6"))
        if cp.returncode not in (0, 1):
            raise DemoError("netpolctl check --from %s --to %s --port %d: exit %d: %s"
                            % (s, d, port, cp.returncode, (cp.stderr or cp.stdout).strip()))
        return job, cp.returncode == 0

    out = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        for (fam, port, s, d), ok in ex.map(one, jobs):
            out.setdefault((fam, port), {})[(s, d)] = ok
    return out


def render(sources, dests, cells, mark):
    """A matrix with rows = sources, columns = destinations ('.' connected, 'X' blocked;
    '*' marks a cell that differs from the policies)."""
    cols = [short(d).rsplit("-", 1)[-1] for d in dests]
    width = max(len(short(s)) for s in sources)
    lines = ["  %s  %s" % ("from \\ to".ljust(width), "  ".join(c.center(7) for c in cols))]
    for s in sources:
        row = []
        for d in dests:
            r = cells[(s, d)]
            sym = "." if r.ok else "X"
            if (s, d) in mark:
                sym = "*%s*" % sym
            row.append(sym.center(7))
        lines.append("  %s  %s" % (short(s).ljust(width), "  ".join(row)))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The walk-through


def run_step(n, step, tools, the_lab, sources, dests, prev_table):
    say()
    say(RULE)
    say("Step %d/%d: %s" % (n, len(STEPS), step.title))
    say(RULE)
    say(step.story)
    say()

    files = [os.path.join(HERE, f) for f in step.files]
    say("$ netpolctl apply -f %s" % ",".join(os.path.relpath(f, ROOT) for f in files))
    t0 = time.monotonic()
    cp = tools.ctl("apply", "-f", ",".join(files))
    took = time.monotonic() - t0
    if cp.returncode != 0:
        raise DemoError("netpolctl apply failed (exit %d):\n%s"
                        % (cp.returncode, indent(cp.stderr + cp.stdout)))
    say(indent(cp.stdout))
    say("    (returned after the kernel committed the change: %.0f ms)" % (took * 1000))

    ports = (APP_PORT, OTHER_PORT)
    observed = observe(the_lab, sources, dests, ports)
    verdicts = evaluator_verdicts(tools, sources, dests, ports)

    # A slow answer on a busy machine is not a block: cells that differ from the policies are
    # probed once more, all at once, with a 3 s timeout.
    retry = {}
    for (fam, port), cells in observed.items():
        for (s, d), r in cells.items():
            if r.ok != step.allowed(s, d, port):
                retry.setdefault(s, []).append({"id": "%s|%d|%s" % (fam, port, d),
                                                "ip": the_lab.pods[d].ip(fam), "proto": "TCP",
                                                "port": port})
    for s, results in the_lab.probe_all(retry, timeout=3.0).items():
        for tid, r in results.items():
            fam, port, d = tid.split("|")
            observed[(fam, int(port))][(s, d)] = r

    problems = []
    for fam, port in VIEWS:
        for (s, d), r in sorted(observed[(fam, port)].items()):
            want = step.allowed(s, d, port)
            said = verdicts[(fam, port)][(s, d)]
            if r.ok == want and said == want:
                continue
            problems.append("%s -> %s TCP %d %s: the policies say %s; probe %s (%s); "
                            "netpolctl check says %s"
                            % (short(s), short(d), port, FAMILY_NAMES[fam],
                               "allowed" if want else "denied",
                               "connected" if r.ok else "blocked", r.why,
                               "allowed" if said else "denied"))

    say()
    say("Reachability of funkyapp1 on TCP %d, from real connections (IPv4; rows: from,"
        " columns: to;" % APP_PORT)
    say("'.' connected, 'X' blocked, '*' differs from the policies):")
    mark = {(s, d) for (s, d) in observed[("v4", APP_PORT)]
            if observed[("v4", APP_PORT)][(s, d)].ok != step.allowed(s, d, APP_PORT)}
    say(render(sources, dests, observed[("v4", APP_PORT)], mark))
    for key in VIEWS[1:]:
        fam, port = key
        opened = sum(1 for r in observed[key].values() if r.ok)
        say("  %s TCP %d: %d of %d pairs connected%s" % (
            FAMILY_NAMES[fam], port, opened, len(observed[key]),
            "" if all(r.ok == step.allowed(s, d, port) for (s, d), r in observed[key].items())
            else "  <-- differs from the policies"))
    total = sum(len(m) for m in observed.values())
    if problems:
        say("  MISMATCH in %d cell(s):" % len(problems))
        for p in problems[:12]:
            say("    " + p)
        if len(problems) > 12:
            say("    ... and %d more" % (len(problems) - 12))
    else:
        say("  All %d probes (IPv4 and IPv6, ports %d and %d) match the policies and"
            " `netpolctl check`." % (total, APP_PORT, OTHER_PORT))

    target = dests[0]
    say()
    say("$ netpolctl check --from %s --to %s --port %d" % (step.check_from, target,
                                                            step.check_port))
    cp = tools.ctl("check", "--from=" + step.check_from, "--to=" + target,
                   "--port=%d" % step.check_port)
    say(indent((cp.stdout + cp.stderr).strip() or "(no output)"))
    say("    (exit %d: %s)" % (cp.returncode, {0: "allowed", 1: "denied"}.get(cp.returncode,
                                                                             "error")))
    if cp.returncode not in (0, 1):
        problems.append("netpolctl check failed with exit %d" % cp.returncode)

    text = the_lab.nft_list("inet netpol")
    table = table_blocks(text)
    shown, left_out = relevant_blocks(prev_table, table)
    say()
    say("$ ip netns exec %s nft list table inet netpol   # %s" % (
        the_lab.node_netns, "excerpt" if prev_table else "excerpt: the skeleton"))
    if not table:
        problems.append("no table inet netpol in the node namespace: %s" % text.strip())
        say(indent(text))
    elif shown:
        text = "\n".join(line[1:] if line.startswith("\t") else line
                         for block in shown for line in block.split("\n"))
        say(indent(text.replace("\t", "    ")))
    else:
        say("    (no chain, set or map changed)")
    if left_out:
        say("    # %s: %s" % ("also changed" if prev_table else "also in the table",
                              ", ".join(k.split(" ", 1)[1] for k in left_out)))
    return problems, table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agent", help="netpol-agent binary (default $NETPOL_AGENT)")
    ap.add_argument("--netpolctl", help="netpolctl binary (default $NETPOL_CTL)")
    args = ap.parse_args(argv)

    lab.require_root("the demo")
    try:
        agent_bin = find_binary(args.agent, "NETPOL_AGENT", "agent")
        ctl_bin = find_binary(args.netpolctl, "NETPOL_CTL", "netpolctl")
    except DemoError as e:
        say("demo: %s" % e)
        return 2

    objects = load_objects([os.path.join(HERE, f) for s in STEPS for f in s.files])
    model = lab.model_from_objects(objects, node=NODE)
    the_lab = lab.Lab(model, extra_ports=(APP_PORT,))
    workdir = None
    agent = None
    failed = []
    started = time.monotonic()
    try:
        say("netpol demo: the Services-tutorial scenario, enforced by netpol-agent in a lab node")
        say()
        say("Creating the lab: a node network namespace with a bridge, one namespace per pod...")
        # lab.Lab.up() installs handlers that remove the lab on a signal; once it is up, ours
        # take over and also stop the agent and remove the temporary files.
        the_lab.up()

        def on_signal(signum, frame):
            raise Interrupted(signum)

        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, on_signal)

        say("  node  %-32s cni0 %s %s" % (the_lab.node_netns, model.v4_gateway,
                                          model.v6_gateway))
        for p in the_lab.pods.values():
            say("  pod   %-32s %-12s %-18s %s" % (p.key, p.spec.ipv4, p.spec.ipv6,
                                                  "serves TCP " + ",".join(
                                                      map(str, the_lab.ports_of(p)))))
        workdir = tempfile.mkdtemp(prefix="netpol-demo-")
        if len(os.path.join(workdir, "agent.sock")) > 100:
            # A Unix socket path has at most 107 bytes; test runners' $TMPDIR can be deep.
            os.rmdir(workdir)
            workdir = tempfile.mkdtemp(prefix="netpol-demo-", dir="/tmp")
        tools = Tools(agent_bin, ctl_bin, os.path.join(workdir, "agent.sock"))
        say()
        say("Starting netpol-agent in the node namespace (its table: inet netpol):")
        agent = Agent(tools, the_lab, workdir)
        agent.start()

        keys = the_lab.pod_keys()
        dests = [k for k in keys if _is_app(k)]
        sources = [CLIENT] + dests
        table = {}
        for n, step in enumerate(STEPS, 1):
            problems, table = run_step(n, step, tools, the_lab, sources, dests, table)
            if problems:
                failed.append((n, problems))
            if agent.proc.poll() is not None:
                raise DemoError("netpol-agent exited during step %d:\n%s"
                                % (n, indent(agent.log_tail())))

        say()
        say(RULE)
        if failed:
            say("DEMO FAILED in step(s) %s: what the probes or `netpolctl check` saw differs"
                " from what the policies say (MISMATCH above)."
                % ", ".join(str(n) for n, _ in failed))
            say("agent log (last lines):")
            say(indent(agent.log_tail()))
        else:
            say("Done in %.1fs: every step's probes matched its policies." %
                (time.monotonic() - started))
        say(RULE)
        return 1 if failed else 0
    except Interrupted as e:
        say()
        say("demo: interrupted (%s); cleaning up" % e)
        return 128 + e.signum
    except (DemoError, lab.LabError) as e:
        say()
        say("DEMO FAILED: %s" % e)
        return 1
    finally:
        # No second signal may cut the cleanup short.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if agent is not None:
            agent.stop()
        the_lab.down()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        say("Cleaned up: agent stopped, lab namespaces and %s removed." % (workdir or "temp files"))


if __name__ == "__main__":
    sys.exit(main())
