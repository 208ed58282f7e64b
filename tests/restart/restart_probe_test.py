#!/usr/bin/python3
"""Restart under fire: SIGKILL the agent while probes run; a denied probe never gets through.

The real netpol-agent runs in the node namespace of a lab (tests/lab: the conformance model's
nine pods, all on node-1, behind one bridge, servers on TCP and UDP 80 and 81), with its
embedded store in a temporary --state-dir. Three policies are applied with netpolctl:

  x/a-ingress  x/a admits x/b (and pods labelled trusted=yes in any namespace) on the named
               ports serve-80-tcp / serve-80-udp only;
  y/b-egress   y/b may reach namespace z on TCP/UDP 80 only;
  z/trusted    pods labelled trusted=yes in z admit nothing (no pod has that label in state A).

Probed flows, each over TCP and UDP in both families, every --interval seconds (fresh sockets,
--timeout each), from one prober per source pod for the whole test:

  allowed  x/b -> x/a :80 (named port), y/b -> z/a :80 (egress), z/c -> y/c :80 (no policy)
  denied   y/a -> x/a :80 (ingress: source), x/b -> x/a :81 (ingress: port),
           y/b -> x/c :80 (egress: destination), y/b -> z/a :81 (egress: port)

While they run, the agent is killed with SIGKILL in seeded random cycles of four kinds:
`serving` (at a random moment while idle), `after-apply` (right after an acknowledged apply
that flips state A <-> B: z/b's trusted label, so x/a's allow set and z/trusted's members
change, no probed verdict does), `mid-apply` (at a random point within an apply) and
`start-up` (killed, restarted, killed again at a random point of its start-up, restarted).
It is restarted after a random pause. Checked:
  * no probe of a denied flow succeeds at any moment (counted over the whole run);
  * after each restart the agent serves, `netpolctl status` reports its generation in the
    kernel (Generation: G (in the kernel: G), G at least the last acknowledged one), every
    allowed flow succeeds again, and the kernel table equals the one before the kill (for a
    kill within an apply: exactly state A's or B's table, the one the status reports);
  * right after each kill the table is still the one before it (fail-static).
Control, at the end: the agent is killed and the table deleted; the same probers must then see
every denied flow get through (so the zero above is a real measurement), and a restart must
make them fail again (counted after conntrack is flushed of the control window's flows).

    restart_probe_test.py --agent PATH --ctl PATH [--cycles 8] [--seed 1]
        [--interval 0.1] [--timeout 0.3]
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402
import yaml  # noqa: E402  (python3-yaml)

MODEL = os.path.join(ROOT, "tests", "conformance", "model.yaml")
PROBER = os.path.join(HERE, "stream_prober.py")
NODE = "node-1"
KINDS = ("serving", "after-apply", "mid-apply", "start-up")

# (source, destination, port, allowed, why)
FLOWS = [
    ("x/b", "x/a", 80, True, "ingress allowed on the named port"),
    ("y/b", "z/a", 80, True, "egress allowed to namespace z"),
    ("z/c", "y/c", 80, True, "no policy selects either end"),
    ("y/a", "x/a", 80, False, "ingress denial: source not admitted"),
    ("x/b", "x/a", 81, False, "ingress denial: port not admitted"),
    ("y/b", "x/c", 80, False, "egress denial: destination not admitted"),
    ("y/b", "z/a", 81, False, "egress denial: port not admitted"),
]


class Failure(Exception):
    pass


def policies():
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "a-ingress", "namespace": "x"},
         "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}},
                                        {"namespaceSelector": {},
                                         "podSelector": {"matchLabels": {"trusted": "yes"}}}],
                               "ports": [{"protocol": "TCP", "port": "serve-80-tcp"},
                                         {"protocol": "UDP", "port": "serve-80-udp"}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "b-egress", "namespace": "y"},
         "spec": {"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"],
                  "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
                              "ports": [{"protocol": "TCP", "port": 80},
                                        {"protocol": "UDP", "port": 80}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "trusted", "namespace": "z"},
         "spec": {"podSelector": {"matchLabels": {"trusted": "yes"}},
                  "policyTypes": ["Ingress"]}},
    ]


def state_objects(objects, flipped):
    """The model's objects plus the policies; in state B z/b carries trusted=yes."""
    out = []
    for o in objects:
        o = json.loads(json.dumps(o))
        meta = o.get("metadata") or {}
        if (flipped and o.get("kind") == "Pod" and meta.get("namespace") == "z"
                and meta.get("name") == "b"):
            meta.setdefault("labels", {})["trusted"] = "yes"
        out.append(o)
    return out + policies()


def write_docs(path, docs):
    # JSON documents: every string quoted (a bare y or n would be read as a YAML 1.1 boolean).
    with open(path, "w") as f:
        f.write("---\n".join(json.dumps(d) + "\n" for d in docs))
    return path


def canonical(listing):
    """The nft listing with set elements (also wrapped over several lines) sorted, rule
    counters' values dropped (traffic moves them; the program is the same) and the table's
    top-level blocks in a fixed order, so equal programs compare equal."""
    listing = re.sub(r"counter packets \d+ bytes \d+", "counter", listing)
    lines, i = listing.splitlines(), 0
    flat = []
    while i < len(lines):
        line = lines[i]
        if "elements = {" in line:
            text = line
            while not text.rstrip().endswith("}") and i + 1 < len(lines):
                i += 1
                text += " " + lines[i].strip()
            head, body = text.split("elements = {", 1)
            elems = sorted(e.strip() for e in body.rstrip().rstrip("}").split(",") if e.strip())
            line = head + "elements = { " + ", ".join(elems) + " }"
        flat.append(line)
        i += 1
    head, blocks, cur = [], [], None
    for line in flat:
        if line.startswith("\t") and not line.startswith("\t\t") and line.endswith("{"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line == "\t}":
                blocks.append("\n".join(cur))
                cur = None
        elif line.strip():
            head.append(line)
    return "\n".join(head + sorted(blocks))


class Agent(lab.Agent):
    """netpol-agent in the node namespace, started and killed by the test (start=False)."""

    def __init__(self, args, the_lab, workdir):
        super().__init__(args.agent, args.ctl, the_lab.node_netns, workdir, node=NODE,
                         start=False)

    def generations(self):
        """(generation, generation in the kernel) from `netpolctl status`; raises unless the
        agent is serving with no error."""
        cp = self.ctl("status")
        m = re.search(r"Generation:\s+(\d+) \(in the kernel: (\d+)\)", cp.stdout)
        if cp.returncode != 0 or m is None:
            raise Failure("netpolctl status: exit %d\n%s%s" % (cp.returncode, cp.stdout,
                                                               cp.stderr))
        return int(m.group(1)), int(m.group(2))

    def wait_log(self, marker, timeout=30):
        """Waits until the latest start's log has a line containing marker; returns the time."""
        deadline = time.monotonic() + timeout
        while marker not in self.log_since_start():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Failure("netpol-agent never logged %r:\n%s" % (marker, self.log_tail()))
            time.sleep(0.001)
        return time.monotonic()

    def start_phase(self):
        """How far the latest start got, from its log: before the first sync, synced but not
        yet serving, or serving."""
        text = self.log_since_start()
        if "\tserving" in text or " serving\n" in text:
            return "after serving"
        if "sync kind=" in text:
            return "after the first sync"
        return "before the first sync completed"


class Probers:
    """One stream_prober.py per source pod; a thread per prober collects its results."""

    def __init__(self, the_lab, args):
        self.lab, self.args = the_lab, args
        self.lock = threading.Lock()
        self.results = []  # (start, target id, ok, why)
        self.targets = {}  # id -> (flow index, family, proto)
        self.procs, self.threads = [], []
        per_source = {}
        for i, (src, dst, port, _, _) in enumerate(FLOWS):
            for fam in lab.FAMILIES:
                for proto in ("TCP", "UDP"):
                    tid = "%s %s %s->%s:%d" % (fam, proto, src, dst, port)
                    self.targets[tid] = (i, fam, proto)
                    per_source.setdefault(src, []).append(
                        {"id": tid, "ip": the_lab.pods[dst].ip(fam), "proto": proto,
                         "port": port})
        self.per_source = per_source

    def start(self):
        for src, targets in sorted(self.per_source.items()):
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.pods[src].netns, lab.PYTHON, PROBER,
                 "--interval", str(self.args.interval), "--timeout", str(self.args.timeout)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                start_new_session=True)
            proc.stdin.write(json.dumps(targets) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline().strip()
            if line != "READY":
                raise Failure("prober in %s did not start: %r" % (src, line))
            t = threading.Thread(target=self._read, args=(proc,), daemon=True)
            t.start()
            self.procs.append(proc)
            self.threads.append(t)

    def _read(self, proc):
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("["):
                continue
            start, tid, ok, why = json.loads(line)
            with self.lock:
                self.results.append((start, tid, ok, why))

    def stop(self):
        for proc in self.procs:
            try:
                proc.stdin.write("stop\n")
                proc.stdin.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=10)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def snapshot(self):
        with self.lock:
            return list(self.results)

    def allowed_ids(self):
        return [t for t, (i, _, _) in self.targets.items() if FLOWS[i][3]]

    def denied_ids(self):
        return [t for t, (i, _, _) in self.targets.items() if not FLOWS[i][3]]

    def wait_success(self, ids, since, timeout):
        """Waits until every target in ids has an ok probe started at or after `since`.
        Returns the time the last of them started, or raises naming the ones that did not."""
        deadline = time.monotonic() + timeout
        while True:
            first = {}
            for start, tid, ok, _ in self.snapshot():
                if ok and start >= since and tid in ids and tid not in first:
                    first[tid] = start
            if len(first) == len(ids):
                return max(first.values())
            if time.monotonic() > deadline:
                missing = sorted(set(ids) - set(first))
                raise Failure("no successful probe within %d s for: %s" % (timeout,
                                                                          ", ".join(missing)))
            time.sleep(0.05)


def run(args, workdir):
    rng = random.Random(args.seed)
    with open(MODEL) as f:
        objects = [d for d in yaml.safe_load_all(f) if d and d.get("kind") != "Lab"]
    files = {"A": write_docs(os.path.join(workdir, "A.yaml"), state_objects(objects, False)),
             "B": write_docs(os.path.join(workdir, "B.yaml"), state_objects(objects, True))}
    problems = []
    events = []  # (time, what happened)
    with lab.Lab(lab.load_model(MODEL)) as the_lab:
        agent = Agent(args, the_lab, workdir)
        probers = Probers(the_lab, args)

        def listing():
            return canonical(the_lab.nft_list())

        try:
            t_spawn = agent.spawn()
            to_listening = agent.wait_log("listening on") - t_spawn
            startup = agent.wait_serving() - t_spawn
            listings, gens, apply_took = {}, [], []
            for name in ("A", "B", "A"):
                t0 = time.monotonic()
                agent.apply(files[name])
                apply_took.append(time.monotonic() - t0)
                gens.append(agent.generations())
                if name in listings and listings[name] != listing():
                    raise Failure("state A rendered two different tables:\n%s\n---\n%s"
                                  % (listings[name], listing()))
                listings[name] = listing()
            if listings["A"] == listings["B"]:
                raise Failure("states A and B have the same table: the applies prove nothing")
            if "table inet netpol" not in listings["A"]:
                raise Failure("no table after the applies: %s" % listings["A"])
            step = gens[2][0] - gens[1][0]
            print("agent listening %.0f ms and serving %.0f ms after start; applies took %s ms; "
                  "generations %s" % (to_listening * 1000, startup * 1000,
                     ", ".join("%.0f" % (t * 1000) for t in apply_took),
                     [g for g, _ in gens]))
            current, acked = "A", gens[2][0]
            other = {"A": "B", "B": "A"}

            probers.start()
            t_probe0 = time.monotonic()
            # Every allowed flow works before the first kill (else the test sees nothing).
            probers.wait_success(probers.allowed_ids(), t_probe0, 30)

            kinds = []
            while len(kinds) < args.cycles:
                batch = list(KINDS)
                rng.shuffle(batch)
                kinds += batch
            kinds = kinds[:args.cycles]
            kills = {k: 0 for k in KINDS}
            kill_count, down_windows, recoveries, startup_kills = 0, [], [], []
            for cycle, kind in enumerate(kinds, 1):
                before = listing()
                expect_exact = True
                min_gen = acked
                if kind == "serving":
                    time.sleep(rng.uniform(0.2, 1.0))
                    t_kill = agent.kill()
                elif kind == "after-apply":
                    time.sleep(rng.uniform(0.2, 0.6))
                    agent.apply(files[other[current]])
                    time.sleep(rng.uniform(0.0, 0.02))
                    t_kill = agent.kill()
                    current = other[current]
                    acked += step
                    min_gen = acked
                    before = None  # the table the acknowledged apply committed
                elif kind == "mid-apply":
                    time.sleep(rng.uniform(0.2, 0.6))
                    delay = rng.uniform(0.0, max(apply_took))
                    ap = subprocess.Popen([args.ctl, "--server=" + agent.server, "apply", "-f",
                                           files[other[current]]],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True)
                    time.sleep(delay)
                    t_kill = agent.kill()
                    ap_out = ap.communicate(timeout=120)[0]
                    if ap.returncode == 0:  # acknowledged before the kill: it must survive
                        current = other[current]
                        acked += step
                        min_gen = acked
                    else:
                        expect_exact = False
                    before = None
                else:  # start-up: down, restart, killed within its start-up
                    time.sleep(rng.uniform(0.2, 0.6))
                    t_kill = agent.kill()
                    kill_count += 1
                    time.sleep(rng.uniform(0.0, 0.3))
                    # In turn: at a random point of the first sync (it starts once the agent
                    # listens), at a random point before the API is up (process start, store
                    # load), and as soon as the first full sync is logged (before or just
                    # after it starts serving).
                    part = len(startup_kills) % 3
                    t_spawn = agent.spawn()
                    if part == 0:
                        agent.wait_log("listening on")
                        time.sleep(rng.uniform(0.0, 0.015))
                    elif part == 1:
                        time.sleep(rng.uniform(0.0, to_listening))
                    else:
                        agent.wait_log("sync kind=full")
                    t_second = agent.kill()
                    startup_kills.append("%.0f ms into start-up, %s" % (
                        (t_second - t_spawn) * 1000, agent.start_phase()))
                kill_count += 1
                kills[kind] += 1
                after_kill = listing()
                if before is not None and after_kill != before:
                    problems.append("cycle %d (%s): the table changed at the kill" % (cycle, kind))
                if expect_exact and after_kill != listings[current]:
                    problems.append("cycle %d (%s): right after the kill the kernel does not "
                                    "hold state %s's table" % (cycle, kind, current))
                if after_kill not in (listings["A"], listings["B"]):
                    problems.append("cycle %d (%s): after the kill the kernel holds neither "
                                    "A's nor B's table:\n%s" % (cycle, kind, after_kill))
                time.sleep(rng.uniform(0.0, 0.5))
                agent.spawn()
                t_serving = agent.wait_serving()
                down_windows.append((t_kill, t_serving))
                gen, applied = agent.generations()
                now = listing()
                if not expect_exact:
                    current = "A" if now == listings["A"] else "B"
                    acked = max(acked, gen)
                if gen != applied or gen < min_gen:
                    problems.append("cycle %d (%s): after restart generation %d, in the kernel "
                                    "%d, want both >= %d" % (cycle, kind, gen, applied, min_gen))
                if now != listings[current]:
                    problems.append("cycle %d (%s): after restart the table is not state %s's:"
                                    "\n%s" % (cycle, kind, current, now))
                if now != after_kill and expect_exact:
                    problems.append("cycle %d (%s): the restarted agent changed the table"
                                    % (cycle, kind))
                t_ok = probers.wait_success(probers.allowed_ids(), t_serving, 30)
                recoveries.append(max(0.0, t_ok - t_serving))
                events.append((t_kill, "cycle %d %s: killed; serving again after %.0f ms with "
                               "generation %d (in the kernel %d), state %s%s" % (
                                   cycle, kind, (t_serving - t_kill) * 1000, gen, applied,
                                   current, "" if expect_exact else
                                   " (apply interrupted: %s)" % (ap_out.strip().splitlines()
                                                                 or ["no output"])[0][:110])))
                print(events[-1][1])

            # Control: without the table the same probers see the denied flows get through.
            time.sleep(0.5)
            agent.kill()
            kill_count += 1
            t_ctl0 = time.monotonic()
            the_lab.node_exec(["nft", "delete", "table", "inet", "netpol"])
            control_error = None
            try:
                probers.wait_success(probers.denied_ids(), t_ctl0, 20)
            except Failure as e:
                control_error = str(e)
            time.sleep(0.5)
            agent.spawn()
            t_serving = agent.wait_serving()
            if listing() != listings[current]:
                problems.append("control: the restart did not restore state %s's table" % current)
            the_lab.flush_conntrack()
            t_ctl1 = time.monotonic()
            probers.wait_success(probers.allowed_ids(), t_ctl1, 30)
            time.sleep(args.tail)
            probers.stop()
            agent.stop()
        except BaseException:
            try:
                probers.stop()
            finally:
                if agent.proc is not None and agent.proc.poll() is None:
                    agent.proc.kill()
                    agent.proc.wait()
            raise
        finally:
            if problems:
                print("agent log (tail):\n" + agent.log_tail())

        # ---- the verdict, from every probe of the run
        results = probers.snapshot()
        t_end = max(r[0] for r in results)
        guard = args.timeout + 0.05
        per = {tid: {"n": 0, "ok": 0, "ctl_n": 0, "ctl_ok": 0, "down_n": 0, "oks": []}
               for tid in probers.targets}
        violations = []
        for start, tid, ok, why in results:
            c = per[tid]
            allowed = FLOWS[probers.targets[tid][0]][3]
            if ok and allowed:
                c["oks"].append(start)
            if t_ctl0 - guard <= start <= t_ctl1:  # the control window
                c["ctl_n"] += 1
                c["ctl_ok"] += ok
                continue
            c["n"] += 1
            c["ok"] += ok
            if any(a <= start <= b for a, b in down_windows):
                c["down_n"] += 1
            if ok and not allowed:
                violations.append((start, tid, why))
        total = sum(c["n"] + c["ctl_n"] for c in per.values())
        down_n = sum(c["down_n"] for c in per.values())
        print("\n%-34s %-48s %9s %9s %12s" % ("flow (family proto src->dst:port)", "expected",
                                            "probes", "succeeded", "control ok"))
        longest = (0.0, None)
        for tid, c in sorted(per.items(), key=lambda kv: (probers.targets[kv[0]][0], kv[0])):
            i = probers.targets[tid][0]
            allowed, why = FLOWS[i][3], FLOWS[i][4]
            print("%-34s %-48s %9d %9d %7d/%-4d" % (tid, ("allowed: " if allowed else "DENIED: ")
                                                    + why, c["n"], c["ok"], c["ctl_ok"],
                                                    c["ctl_n"]))
            if allowed:
                points = [t_probe0] + sorted(c["oks"]) + [t_end]
                for a, b in zip(points, points[1:]):
                    if b - a > longest[0]:
                        longest = (b - a, tid)
                if c["ok"] == 0:
                    problems.append("allowed flow %s never succeeded" % tid)
            elif c["ctl_ok"] == 0:
                problems.append("control: denied flow %s never got through without the table: "
                                "the test could not see it fail" % tid)
        denied_total = sum(per[t]["n"] for t in probers.denied_ids())
        print("\nkills: %d SIGKILLs (%s, plus 1 before the control)"
              % (kill_count, ", ".join("%s: %d" % (k, kills[k]) for k in KINDS)))
        print("start-up kills: %s" % ("; ".join(startup_kills) or "none"))
        print("probes: %d in all over %.1f s (%d while the agent was down or starting); "
              "denied flows: %d probes, %d got through; control (agent down, table deleted): "
              "denied flows got through %d of %d times"
              % (total, t_end - t_probe0, down_n, denied_total, len(violations),
                 sum(per[t]["ctl_ok"] for t in probers.denied_ids()),
                 sum(per[t]["ctl_n"] for t in probers.denied_ids())))
        print("allowed flows: longest gap between successes %.0f ms (%s); back after each "
              "restart within %s ms of serving"
              % (longest[0] * 1000, longest[1], ", ".join("%.0f" % (r * 1000)
                                                           for r in recoveries)))
        if control_error:
            problems.append("control: " + control_error)
        for start, tid, why in violations[:20]:
            problems.append("denied flow %s got through (%s) at t=%.3f s" % (tid, why,
                                                                            start - t_probe0))
        if len(violations) > 20:
            problems.append("... %d more denied probes got through" % (len(violations) - 20))
        if down_n == 0:
            problems.append("no probe ran while the agent was down: the test saw nothing")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default=os.environ.get("NETPOL_AGENT"))
    ap.add_argument("--ctl", default=os.environ.get("NETPOLCTL"))
    ap.add_argument("--cycles", type=int, default=8, help="kill/restart cycles")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between probe rounds")
    ap.add_argument("--timeout", type=float, default=0.3, help="seconds per probe")
    ap.add_argument("--tail", type=float, default=2.0,
                    help="seconds of probing after the control's restart")
    args = ap.parse_args()
    if not args.agent or not args.ctl:
        ap.error("--agent and --ctl are required")
    args.agent, args.ctl = os.path.abspath(args.agent), os.path.abspath(args.ctl)
    lab.require_root("restart_probe_test")
    workdir = tempfile.mkdtemp(prefix="netpol-restart-")
    try:
        problems = run(args, workdir)
    except (Failure, lab.LabError) as e:
        problems = [str(e)]
    finally:
        if os.environ.get("NETPOL_RESTART_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("PASSED: no denied probe got through across the kills; allowed flows came back after "
          "every restart with the same table and the generation in the kernel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
