#!/usr/bin/python3
"""The datapath benchmark: new TCP connections between two pods on one node, under four rulesets.

In a lab (tests/lab: a node namespace with bridge cni0 and br_netfilter, one namespace per pod)
with two pods, dp-client/client (10.244.1.17) and dp-server/server (10.244.1.18), the client runs
`connbench connect` against `connbench serve` on TCP 8080 in the server. A connection's latency
is its blocking connect(): SYN out, SYN-ACK back, as the client sees it; the SYN crosses the
node's forward and postrouting hooks (bridged, with br_netfilter), where the ruleset under
test judges it (egress in forward, ingress in postrouting). For each policy count N (all N policies
select the server; exactly one, the last, allows the client on 8080; see
benchmarks/workload/workload.h DatapathState) it measures, interleaved round by round:

  none      no table at all (no conntrack either)
  accept    an accept-all inet table on the hooks of netpol's table, with its priorities
            (forward, input, output, postrouting: read from the table netpol-enforce commits),
            each chain only `ct state established,related accept`: the fixed cost of a table
            on those hooks plus conntrack
  iptables  the iptables + ipset ruleset an iptables engine installs for the same state
            (benchmarks/datapath/iptables_layout.h), via iptables-restore and ipset restore
  optimal   the hand-written optimal program for the same verdicts, judging where netpol does
            (same hooks and priorities): egress by an `ip saddr` vmap in forward, input and
            output (empty here: no pod is isolated for egress), ingress in postrouting (after
            source NAT) by one vmap on the destination address dispatching the server (the only
            pod any policy selects) to a chain with one exact-match concatenated hash set lookup
            (saddr . l4proto . dport), holding the client's pair and N-1 other pairs (as many as
            there are policies), then drop
  netpol    netpol's table, committed by netpol-enforce
  optimal_obs  the optimal program with what netpol's observability adds to it: a `counter`
            on the allow rule, the drop a limited `log group 100` drop plus a counted drop of
            what the limit held back (RULESET.md "Counters", "Deny logs")
  netpol_obs   netpol's table with rule counters and deny logs on (netpol-enforce
            --rule_counters --deny_log_group 100: the agent's defaults)
  netpol_cnp   netpol's table for the same state plus --cnps ClusterNetworkPolicies in each
            tier (cnp_yaml(): every one selects every pod; Admin: ingress Deny/Pass from a
            background namespace on its own port, egress Deny to its own /24; Baseline: ingress
            Deny from a namespace on its own port, egress Deny to its own /24); none of them
            decides the client's connection, every one is on its path (the client's egress and
            the server's ingress go through their tier chains)
  optimal_cnp  the hand-written optimal program for the same verdicts with those
            ClusterNetworkPolicies: egress of the two pods one interval lookup of the denied
            networks then accept; ingress of the server as `optimal` (the Admin Deny rules
            take nothing its allowed set holds; Baseline never runs for an isolated pod) and,
            at N = 0 and for the client, one exact-match lookup of the denied (address .
            protocol . port) tuples then accept

Each round runs every mode once, in an order rotated per round, so slow drifts of a shared
machine spread over all modes. Every mode must connect every time; with N > 0 a connection to a
port no policy allows (81) must fail under iptables and netpol, which proves the rules filter.

With --taskset CPUS the client and the server run pinned (taskset -c CPUS), so a shared
machine's scheduler moves them less. The summary holds pooled ratios (p50 of all connections of a
mode) and per-round ones (each round's modes ran back to back: the median over rounds of the
per-round differences), the latter less sensitive to slow drifts of the machine.

Output (in --out): results.csv (one row per measurement), latencies-<N>-<mode>.txt (every
latency, all rounds), summary.json (pooled per N and mode, and the ratios). It prints the
summary table. Only the lab's own namespaces are touched, never the host's firewall.

    sudo /usr/bin/python3 benchmarks/datapath/run.py --bin bazel-bin --out /tmp/datapath
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import lab  # noqa: E402

MODES = ("none", "accept", "iptables", "optimal", "netpol", "optimal_obs", "netpol_obs",
         "optimal_cnp", "netpol_cnp")
# Modes whose ruleset filters (a port no policy allows must stay closed under them).
FILTERING = ("iptables", "optimal", "netpol", "optimal_obs", "netpol_obs", "optimal_cnp",
             "netpol_cnp")
PORT = 8080
BLOCKED_PORT = 81  # the lab's pod server listens here; no policy allows it
NODE = "node-1"
CLIENT = lab.PodSpec("dp-client", "client", "10.244.1.17", "fd00:10:244:1::11")
SERVER = lab.PodSpec("dp-server", "server", "10.244.1.18", "fd00:10:244:1::12")
ACCEPT_TABLE = "npbench_accept"
OPTIMAL_TABLE = "npbench_optimal"
# The base chains of netpol's table (engine/compiler/RULESET.md), as (name, hook, priority); the
# baselines copy them. Read at start from the table netpol-enforce commits (netpol_hooks()).
NETPOL_HOOKS = ("forward", "input", "output", "postrouting")


def netpol_hooks(the_lab, enforce, state):
    """The (chain, hook, priority) of every base chain netpol's compiler emits, read from the
    table netpol-enforce commits for `state` (then removed)."""
    the_lab.node_exec([enforce, "--state", state, "--node", NODE, "--table", "netpol"])
    try:
        listing = json.loads(the_lab.node_exec(
            ["nft", "-j", "list", "table", "inet", "netpol"]).stdout)
    finally:
        the_lab.node_exec(["nft", "delete", "table", "inet", "netpol"], check=False)
    hooks = []
    for item in listing.get("nftables", []):
        chain = item.get("chain")
        if chain and "hook" in chain:
            if chain.get("type") != "filter" or chain.get("policy") != "accept":
                raise lab.LabError("netpol base chain %s: type %s policy %s, expected filter "
                                   "accept" % (chain["name"], chain.get("type"),
                                               chain.get("policy")))
            hooks.append((chain["name"], chain["hook"], int(chain["prio"])))
    if sorted(h[1] for h in hooks) != sorted(NETPOL_HOOKS):
        raise lab.LabError("netpol's table hooks %s, expected one base chain on each of %s "
                           "(engine/compiler/RULESET.md changed? update the baselines)"
                           % (hooks, ", ".join(NETPOL_HOOKS)))
    return sorted(hooks, key=lambda h: NETPOL_HOOKS.index(h[1]))


def base_chain(hooks, hook, rules):
    name, _, prio = next(h for h in hooks if h[1] == hook)
    return "  chain %s {\n    type filter hook %s priority %d; policy accept;\n%s  }\n" % (
        name, hook, prio, "".join("    %s\n" % r for r in rules))


def accept_nft(hooks):
    """An accept-all table on netpol's hooks and priorities: conntrack plus a table's fixed cost."""
    return "table inet %s {\n%s}\n" % (ACCEPT_TABLE, "".join(
        base_chain(hooks, h, ["ct state established,related accept"]) for h in NETPOL_HOOKS))


def cnp_rules(k):
    """The --cnps ClusterNetworkPolicies of each tier as data: per tier a list of (ingress peer's
    namespace team label, action, port; egress network)."""
    admin = [("team-%d" % (i % 50), "Deny" if i % 2 == 0 else "Pass", 9000 + i,
              "172.%d.%d.0/24" % (16 + i // 256, i % 256)) for i in range(k)]
    baseline = [("team-%d" % (j % 50), "Deny", 7000 + j,
                 "100.%d.%d.0/24" % (64 + j // 256, j % 256)) for j in range(k)]
    return admin, baseline


def cnp_yaml(k):
    admin, baseline = cnp_rules(k)
    docs = []
    for tier, rules in (("Admin", admin), ("Baseline", baseline)):
        for i, (team, action, port, net) in enumerate(rules):
            docs.append(
                "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
                "metadata: {name: %s-%d}\nspec:\n  tier: %s\n  priority: %d\n"
                "  subject: {namespaces: {}}\n"
                "  ingress:\n  - action: %s\n    from: [{namespaces: {matchLabels: {team: %s}}}]\n"
                "    protocols: [{tcp: {destinationPort: {number: %d}}}]\n"
                "  egress:\n  - action: Deny\n    to: [{networks: [%s]}]\n"
                % (tier.lower(), i, tier, i % 1001, action, team, port, net))
    return "---\n".join(docs)


def background_pods(state_path):
    """{team label: [IPv4 of each pod in namespaces with that team]} of a datapath state file."""
    import yaml
    teams, pods = {}, []
    with open(state_path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            if doc.get("kind") == "Namespace":
                teams[doc["metadata"]["name"]] = doc["metadata"].get("labels", {}).get("team")
            elif doc.get("kind") == "Pod":
                pods.append(doc)
    out = {}
    for p in pods:
        team = teams.get(p["metadata"].get("namespace"))
        status = p.get("status", {})
        ips = [e["ip"] for e in status.get("podIPs", [])] or (
            [status["podIP"]] if "podIP" in status else [])
        for ip in ips:
            if ":" not in ip and team:
                out.setdefault(team, []).append(ip)
    return out


def optimal_cnp_nft(hooks, n, k, background):
    """The optimal program for the datapath state with cnp_yaml(k) (see the module doc)."""
    admin, baseline = cnp_rules(k)
    denied_nets = [r[3] for r in admin] + [r[3] for r in baseline]
    # Ingress of a pod NetworkPolicy does not isolate: Admin first match (Deny, or Pass on to
    # NetworkPolicy, which allows), then Baseline. Every rule has its own port: no shadowing.
    denied_in = sorted({"%s . tcp . %d" % (ip, port)
                        for rules in (admin, baseline) for team, action, port, _ in rules
                        if action == "Deny" for ip in background.get(team, [])})
    allowed = ["%s . tcp . %d" % (CLIENT.ipv4, PORT)]
    allowed += ["10.%d.%d.%d . tcp . %d" % (200 + i // 65536, (i // 256) % 256, i % 256, PORT)
                for i in range(max(n - 1, 0))]
    egress = ["ct state established,related accept", "ip saddr vmap @egress_dispatch"]
    ingress = ["ct state established,related accept", "ip daddr vmap @ingress_dispatch"]
    server_in = "server_in" if n > 0 else "open_in"
    return """table inet %(t)s {
  set allowed {
    type ipv4_addr . inet_proto . inet_service
    elements = { %(allowed)s }
  }
  set denied_in {
    type ipv4_addr . inet_proto . inet_service
    %(denied_in)s
  }
  set denied_out {
    type ipv4_addr
    flags interval
    elements = { %(nets)s }
  }
  map egress_dispatch {
    type ipv4_addr : verdict
    elements = { %(client)s : jump open_out, %(server)s : jump open_out }
  }
  map ingress_dispatch {
    type ipv4_addr : verdict
    elements = { %(client)s : jump open_in, %(server)s : jump %(server_in)s }
  }
  chain server_in {
    ip saddr . meta l4proto . th dport @allowed accept
    drop
  }
  chain open_in {
    ip saddr . meta l4proto . th dport @denied_in drop
  }
  chain open_out {
    ip daddr @denied_out drop
  }
%(chains)s}
""" % {"t": OPTIMAL_TABLE, "allowed": ", ".join(allowed),
       "denied_in": ("elements = { %s }" % ", ".join(denied_in)) if denied_in else "",
       "nets": ", ".join(denied_nets) if denied_nets else "192.0.2.0/32",
       "client": CLIENT.ipv4, "server": SERVER.ipv4, "server_in": server_in,
       "chains": "".join([base_chain(hooks, "forward", egress), base_chain(hooks, "input", egress),
                          base_chain(hooks, "output", egress),
                          base_chain(hooks, "postrouting", ingress)])}


def optimal_nft(hooks, n, observe=False):
    """The optimal program for N policies (see the module doc); N == 0 isolates nothing. It
    judges where netpol does: egress before source NAT (forward, input, output), ingress after
    it (postrouting). With `observe`, the allow rule counts and the drop logs (limited) and
    counts, as netpol's rules do with rule counters and deny logs on."""
    elements = ["%s . tcp . %d" % (CLIENT.ipv4, PORT)]
    elements += ["10.%d.%d.%d . tcp . %d" % (200 + i // 65536, (i // 256) % 256, i % 256, PORT)
                 for i in range(max(n - 1, 0))]
    dispatch = ("elements = { %s : jump server_in }" % SERVER.ipv4) if n > 0 else ""
    egress = ["ct state established,related accept", "ip saddr vmap @egress_dispatch"]
    ingress = ["ct state established,related accept", "ip daddr vmap @ingress_dispatch"]
    return """table inet %(t)s {
  set allowed {
    type ipv4_addr . inet_proto . inet_service
    elements = { %(e)s }
  }
  map egress_dispatch {
    type ipv4_addr : verdict
  }
  map ingress_dispatch {
    type ipv4_addr : verdict
    %(d)s
  }
  chain server_in {
%(server_in)s  }
%(chains)s}
""" % {"t": OPTIMAL_TABLE, "e": ", ".join(elements), "d": dispatch,
       "server_in": "".join("    %s\n" % r for r in (
           ["ip saddr . meta l4proto . th dport @allowed counter accept",
            "limit rate 10/second burst 20 packets log prefix \"deny server_in\" group 100 "
            "snaplen 128 drop",
            "counter drop"] if observe else
           ["ip saddr . meta l4proto . th dport @allowed accept", "drop"])),
       "chains": "".join([base_chain(hooks, "forward", egress), base_chain(hooks, "input", egress),
                          base_chain(hooks, "output", egress),
                          base_chain(hooks, "postrouting", ingress)])}


EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def quantile(values, q):
    """Nearest-rank quantile, as the C++ benchmarks compute it."""
    if not values:
        return 0.0
    v = sorted(values)
    rank = min(max(int(math.ceil(q * len(v))), 1), len(v))
    return v[rank - 1]


class Bench:
    def __init__(self, args, the_lab, out):
        self.args = args
        self.lab = the_lab
        self.out = out
        self.iptables_used = False
        self.ipt_restore = "iptables-%s-restore" % args.iptables

    def node(self, argv, input=None, check=True, timeout=600):
        return self.lab.node_exec(argv, input=input, check=check, timeout=timeout)

    # ---- rulesets

    def teardown(self):
        """Removes whatever ruleset a mode installed in the node namespace."""
        self.node(["nft", "delete", "table", "inet", "netpol"], check=False)
        self.node(["nft", "delete", "table", "inet", ACCEPT_TABLE], check=False)
        self.node(["nft", "delete", "table", "inet", OPTIMAL_TABLE], check=False)
        if self.iptables_used:
            # A restore without --noflush empties the table and deletes every user chain; then
            # the sets are no longer referenced and can go.
            self.node([self.ipt_restore], input=EMPTY_FILTER)
            self.node(["ipset", "destroy"], check=False)
            if self.args.iptables == "nft":
                self.node(["nft", "delete", "table", "ip", "filter"], check=False)

    def setup(self, mode, n):
        t0 = time.monotonic()
        if mode == "accept":
            self.lab.nft(accept_nft(self.hooks))
        elif mode in ("optimal", "optimal_obs"):
            self.lab.nft(optimal_nft(self.hooks, n, observe=mode == "optimal_obs"))
        elif mode == "optimal_cnp":
            self.lab.nft(optimal_cnp_nft(self.hooks, n, self.args.cnps,
                                         self.files[n]["background"]))
        elif mode == "iptables":
            self.iptables_used = True
            self.node(["ipset", "restore", "-file", self.files[n]["ipset"]])
            with open(self.files[n]["iptables"]) as f:
                self.node([self.ipt_restore], input=f.read())
        elif mode in ("netpol", "netpol_obs", "netpol_cnp"):
            obs = (["--rule_counters", "--deny_log_group", "100"] if mode == "netpol_obs"
                   else [])
            state = self.files[n]["state_cnp" if mode == "netpol_cnp" else "state"]
            self.node([self.args.enforce, "--state", state, "--node", NODE,
                       "--table", "netpol"] + obs)
        return time.monotonic() - t0

    # ---- inputs

    def prepare(self, n):
        d = os.path.join(self.out, "inputs")
        os.makedirs(d, exist_ok=True)
        state = os.path.join(d, "state-%d.yaml" % n)
        lab.run([self.args.workload, "--datapath_policies", str(n), "--background_pods",
                 str(self.args.background_pods), "--seed", str(self.args.seed), "--out", state])
        ipset, ipt = os.path.join(d, "ipset-%d.txt" % n), os.path.join(d, "iptables-%d.txt" % n)
        counts = json.loads(lab.run([self.args.layout, "--state", state, "--node", NODE,
                                     "--ipset_out", ipset, "--iptables_out", ipt]).stdout)
        out = {"state": state, "ipset": ipset, "iptables": ipt, "layout": counts}
        if any(m.endswith("_cnp") for m in self.args.modes):
            out["state_cnp"] = os.path.join(d, "state-%d-cnp%d.yaml" % (n, self.args.cnps))
            with open(state) as f, open(out["state_cnp"], "w") as g:
                g.write(f.read().rstrip("\n") + "\n---\n" + cnp_yaml(self.args.cnps) + "\n")
            out["background"] = background_pods(state)
        return out

    # ---- measuring

    def client(self, port, count, warmup, timeout_ms, raw=None):
        pod = self.lab.pods[CLIENT.key]
        argv = ["ip", "netns", "exec", pod.netns] + pinned(self.args) + [
                self.args.connbench, "connect", "--addr",
                SERVER.ipv4, "--port", str(port), "--count", str(count), "--warmup", str(warmup),
                "--timeout_ms", str(timeout_ms), "--max_seconds", str(self.args.max_seconds)]
        if raw:
            argv += ["--raw", raw]
        cp = lab.run(argv, check=False, timeout=self.args.max_seconds + 120)
        try:
            return json.loads(cp.stdout)
        except ValueError:
            raise lab.LabError("connbench connect: exit %d: %s" % (cp.returncode, cp.stderr))

    def run(self):
        a = self.args
        self.files = {}
        for n in a.policies:
            self.files[n] = self.prepare(n)
            print("N=%d: iptables layout %s" % (n, self.files[n]["layout"]), flush=True)
        self.teardown()
        self.hooks = netpol_hooks(self.lab, a.enforce, self.files[a.policies[0]]["state"])
        print("netpol's base chains (chain, hook, priority): %s" % self.hooks, flush=True)
        rows = []
        latencies = {}
        csv_path = os.path.join(self.out, "results.csv")
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["policies", "mode", "round", "setup_s", "count", "ok", "failed", "p50_us",
                        "p90_us", "p99_us", "mean_us", "conns_per_s", "blocked_port_refused"])
            for n in a.policies:
                for r in range(a.rounds):
                    order = list(a.modes[r % len(a.modes):]) + list(a.modes[:r % len(a.modes)])
                    for mode in order:
                        self.teardown()
                        setup_s = self.setup(mode, n)
                        self.lab.flush_conntrack()
                        raw = os.path.join(self.out, "raw.txt")
                        res = self.client(PORT, a.connects, a.warmup, 1000, raw)
                        with open(raw) as rf:
                            latencies.setdefault((n, mode), []).extend(
                                float(x) for x in rf.read().split())
                        # The filter must filter: a port no policy allows stays closed.
                        blocked = ""
                        if n > 0 and mode in FILTERING:
                            probe = self.client(BLOCKED_PORT, 1, 0, 300)
                            blocked = "yes" if probe["ok"] == 0 else "NO"
                        row = [n, mode, r, "%.3f" % setup_s, res["count"], res["ok"],
                               res["failed"], res["p50_us"], res["p90_us"], res["p99_us"],
                               res["mean_us"], res["conns_per_s"], blocked]
                        w.writerow(row)
                        f.flush()
                        rows.append(dict(zip(["policies", "mode", "round", "setup_s", "count",
                                              "ok", "failed", "p50_us", "p90_us", "p99_us",
                                              "mean_us", "conns_per_s", "blocked"], row)))
                        print("N=%-6d round %d %-9s setup %7.3fs  p50 %8.1fus  p99 %8.1fus  "
                              "%7.0f conn/s  failed %d%s" % (
                                  n, r, mode, setup_s, res["p50_us"], res["p99_us"],
                                  res["conns_per_s"], res["failed"],
                                  "  blocked-port-closed=%s" % blocked if blocked else ""),
                              flush=True)
            self.teardown()
        for (n, mode), values in latencies.items():
            with open(os.path.join(self.out, "latencies-%d-%s.txt" % (n, mode)), "w") as lf:
                lf.write("\n".join("%.2f" % v for v in values) + "\n")
        return self.summarize(rows, latencies)

    def summarize(self, rows, latencies):
        summary = {"machine": machine(), "args": {k: v for k, v in vars(self.args).items()},
                   "hooks": [list(h) for h in self.hooks], "results": {}}
        for n in self.args.policies:
            per = {}
            for mode in self.args.modes:
                mine = [r for r in rows if r["policies"] == n and r["mode"] == mode]
                values = latencies.get((n, mode), [])
                rates = [r["conns_per_s"] for r in mine]
                per[mode] = {
                    "p50_us": quantile(values, 0.5), "p99_us": quantile(values, 0.99),
                    "mean_us": sum(values) / len(values) if values else 0,
                    "connections": len(values),
                    "failed": sum(r["failed"] for r in mine),
                    "conns_per_s": quantile(rates, 0.5),
                    "setup_s": quantile([float(r["setup_s"]) for r in mine], 0.5),
                    "blocked_port_closed": all(r["blocked"] in ("", "yes") for r in mine),
                    "layout": self.files[n]["layout"] if mode == "iptables" else None,
                }
            ratios = {}
            if "netpol" in per and "none" in per and per["none"]["p50_us"]:
                ratios["netpol_added_us"] = per["netpol"]["p50_us"] - per["none"]["p50_us"]
                ratios["netpol_over_none"] = per["netpol"]["p50_us"] / per["none"]["p50_us"]
            if "netpol" in per and "accept" in per and per["accept"]["p50_us"]:
                ratios["netpol_over_accept"] = per["netpol"]["p50_us"] / per["accept"]["p50_us"]
            if "optimal" in per and "netpol" in per and per["optimal"]["p50_us"]:
                # The spec's target: netpol's first-packet cost within 10% of the optimal one.
                ratios["netpol_over_optimal"] = per["netpol"]["p50_us"] / per["optimal"]["p50_us"]
                ratios["netpol_minus_optimal_us"] = (per["netpol"]["p50_us"] -
                                                     per["optimal"]["p50_us"])
                none = per.get("none", {}).get("p50_us", 0)
                if none and per["optimal"]["p50_us"] - none > 0:
                    ratios["netpol_added_over_optimal_added"] = (
                        (per["netpol"]["p50_us"] - none) / (per["optimal"]["p50_us"] - none))
            if "iptables" in per and "netpol" in per and per["netpol"]["p50_us"]:
                ratios["iptables_over_netpol"] = per["iptables"]["p50_us"] / per["netpol"]["p50_us"]
                none = per.get("none", {}).get("p50_us", 0)
                added_ipt = per["iptables"]["p50_us"] - none
                added_np = per["netpol"]["p50_us"] - none
                if added_np > 0:
                    ratios["iptables_added_over_netpol_added"] = added_ipt / added_np
            # With counters and deny logs on: netpol's against the optimal program's with the
            # same counters (the same target), and what turning them on costs each.
            for a, b in (("netpol_obs", "optimal_obs"), ("netpol_obs", "optimal"),
                         ("netpol_obs", "netpol"), ("optimal_obs", "optimal"),
                         ("netpol_cnp", "netpol"), ("netpol_cnp", "optimal_cnp"),
                         ("netpol_cnp", "optimal"), ("optimal_cnp", "optimal")):
                if a in per and b in per and per[b]["p50_us"]:
                    ratios["%s_over_%s" % (a, b)] = per[a]["p50_us"] / per[b]["p50_us"]
            ratios.update(per_round_ratios([r for r in rows if r["policies"] == n]))
            summary["results"][str(n)] = {"modes": per, "ratios": ratios}
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print_summary(summary)
        return summary


def per_round_ratios(rows):
    """Ratios from the rounds' own p50s: each round ran every mode back to back, so a difference
    within a round is less exposed to the machine's slow drifts than pooled values. Returns the
    medians over rounds (keys ending in _rounds) and the per-round values."""
    by_round = {}
    for r in rows:
        by_round.setdefault(r["round"], {})[r["mode"]] = float(r["p50_us"])
    out = {}

    def median(values):
        v = sorted(values)
        if not v:
            return None
        return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

    def collect(fn):
        return [fn(m) for _, m in sorted(by_round.items()) if fn(m) is not None]

    def added(mode):
        return lambda m: (m[mode] - m["none"]) if mode in m and "none" in m else None

    np_over_opt = collect(lambda m: m["netpol"] / m["optimal"]
                          if m.get("optimal") and "netpol" in m else None)
    if np_over_opt:
        out["netpol_over_optimal_per_round"] = np_over_opt
        out["netpol_over_optimal_rounds"] = median(np_over_opt)
    np_added, opt_added = collect(added("netpol")), collect(added("optimal"))
    if np_added:
        out["netpol_added_us_per_round"] = np_added
        out["netpol_added_us_rounds"] = median(np_added)
    if opt_added:
        out["optimal_added_us_per_round"] = opt_added
        out["optimal_added_us_rounds"] = median(opt_added)
        if np_added and median(opt_added) > 0:
            out["netpol_added_over_optimal_added_rounds"] = median(np_added) / median(opt_added)
    for a, b in (("netpol_obs", "optimal_obs"), ("netpol_obs", "optimal"),
                 ("netpol_obs", "netpol"), ("optimal_obs", "optimal"),
                 ("netpol_cnp", "netpol"), ("netpol_cnp", "optimal_cnp"),
                 ("netpol_cnp", "optimal"), ("optimal_cnp", "optimal")):
        per_round = collect(lambda m: m[a] / m[b] if m.get(b) and a in m else None)
        if per_round:
            out["%s_over_%s_per_round" % (a, b)] = per_round
            out["%s_over_%s_rounds" % (a, b)] = median(per_round)
    acc_added = collect(added("accept"))
    if acc_added:
        out["accept_added_us_rounds"] = median(acc_added)
    ipt_over_np = collect(lambda m: m["iptables"] / m["netpol"]
                          if m.get("netpol") and "iptables" in m else None)
    if ipt_over_np:
        out["iptables_over_netpol_rounds"] = median(ipt_over_np)
    return out


def pinned(args):
    """The taskset prefix for the client and the server (none without --taskset)."""
    return ["taskset", "-c", args.taskset] if args.taskset else []


def machine():
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""
    model = [l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines()
             if l.startswith("model name")]
    return {"kernel": os.uname().release, "cpus": os.cpu_count(),
            "cpu": model[0] if model else "?", "loadavg": read("/proc/loadavg").strip()}


def print_summary(summary):
    modes = list(next(iter(summary["results"].values()))["modes"]) if summary["results"] else []
    print("\nconnect latency p50 / p99 (us), connections/s; machine: %s" % summary["machine"])
    print("%8s " % "policies" + "".join("%26s" % m for m in modes) +
          "  netpol-none  netpol/optimal  ipt/netpol  per round: np-none opt-none np/opt")
    for n, res in summary["results"].items():
        line = "%8s " % n
        for m in modes:
            d = res["modes"][m]
            line += "%26s" % ("%.1f / %.1f, %.0f/s%s" % (d["p50_us"], d["p99_us"], d["conns_per_s"],
                                                      "" if d["failed"] == 0 else " FAIL"))
        r = res["ratios"]
        line += "  %+10.1fus" % r.get("netpol_added_us", float("nan"))
        line += "  %13.3fx" % r.get("netpol_over_optimal", float("nan"))
        line += "  %9.2fx" % r.get("iptables_over_netpol", float("nan"))
        line += "  %+9.1fus %+7.1fus %6.3fx" % (r.get("netpol_added_us_rounds", float("nan")),
                                               r.get("optimal_added_us_rounds", float("nan")),
                                               r.get("netpol_over_optimal_rounds", float("nan")))
        print(line)
    print_ratios(summary, "counters and deny logs on",
                 ("netpol_obs_over_optimal_obs", "netpol_obs_over_optimal",
                  "netpol_obs_over_netpol", "optimal_obs_over_optimal"))
    print_ratios(summary, "with ClusterNetworkPolicies",
                 ("netpol_cnp_over_netpol", "netpol_cnp_over_optimal_cnp",
                  "netpol_cnp_over_optimal", "optimal_cnp_over_optimal"))


def print_ratios(summary, title, keys):
    """A table of the p50 ratios `keys` (pooled, and the median of the rounds in parentheses) for
    the policy counts whose results have the first of them; nothing when none has."""
    rows = [(n, res["ratios"]) for n, res in summary["results"].items() if keys[0] in res["ratios"]]
    if not rows:
        return
    print("\n%s, p50 ratios pooled (median of the rounds):" % title)
    print("%8s " % "policies" + "".join("%32s" % k for k in keys))
    for n, r in rows:
        print("%8s " % n + "".join("%32s" % ("%.3f (%.3f)" % (
            r.get(k, float("nan")), r.get(k + "_rounds") or float("nan"))) for k in keys))


def default_bin(args, name, rel):
    explicit = getattr(args, name)
    if explicit:
        return os.path.abspath(explicit)
    return os.path.abspath(os.path.join(args.bin, rel))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="0,100,1000,10000,20000",
                    help="comma-separated policy counts")
    ap.add_argument("--modes", default=",".join(MODES), help="subset of " + ",".join(MODES))
    ap.add_argument("--rounds", type=int, default=3, help="rounds per policy count")
    ap.add_argument("--connects", type=int, default=1000, help="connections per measurement")
    ap.add_argument("--warmup", type=int, default=50, help="untimed connections first")
    ap.add_argument("--max-seconds", type=float, default=20.0,
                    help="cap on one measurement (slow rulesets measure fewer connections)")
    ap.add_argument("--background-pods", type=int, default=1000,
                    help="pods on other nodes (fill the peer sets)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cnps", type=int, default=1000,
                    help="ClusterNetworkPolicies per tier in the *_cnp modes (at most 1,001 "
                         "distinct priorities are reused beyond)")
    ap.add_argument("--iptables", choices=("legacy", "nft"), default="legacy",
                    help="iptables backend for the iptables mode")
    ap.add_argument("--taskset", default="",
                    help="CPU list to pin the client and the server to (taskset -c), e.g. 1")
    ap.add_argument("--out", default="", help="output directory (default: a new temp dir)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "bazel-bin"),
                    help="Bazel's bin directory holding the tools")
    ap.add_argument("--enforce", default=os.environ.get("NETPOL_ENFORCE", ""))
    ap.add_argument("--workload", default="")
    ap.add_argument("--layout", default="")
    ap.add_argument("--connbench", default="")
    args = ap.parse_args(argv)
    args.policies = [int(x) for x in args.policies.split(",") if x.strip()]
    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        if m not in MODES:
            ap.error("--modes: unknown mode %r" % m)
    if any(n < 0 for n in args.policies):
        ap.error("--policies: counts must be >= 0")
    args.enforce = default_bin(args, "enforce", "tests/tools/netpol-enforce")
    args.workload = default_bin(args, "workload", "benchmarks/workload/netpol-workload")
    args.layout = default_bin(args, "layout", "benchmarks/datapath/netpol-iptables-layout")
    args.connbench = default_bin(args, "connbench", "benchmarks/datapath/connbench")
    tools = [args.workload, args.layout, args.connbench]
    # netpol-enforce also tells the baselines netpol's hooks and priorities.
    tools.append(args.enforce)
    for tool in tools:
        if not os.access(tool, os.X_OK):
            print("run.py: %s: not built (bazel build -c opt //benchmarks/... "
                  "//tests/tools:netpol-enforce)" % tool, file=sys.stderr)
            return 1
    lab.require_root("the datapath benchmark")
    out = args.out or tempfile.mkdtemp(prefix="netpol-datapath-",
                                       dir=os.environ.get("TEST_TMPDIR") or None)
    os.makedirs(out, exist_ok=True)
    print("output: %s" % out, flush=True)
    model = lab.Model(pods=[CLIENT, SERVER], node=NODE)
    summary = None
    with lab.Lab(model) as the_lab:
        server = subprocess.Popen(
            ["ip", "netns", "exec", the_lab.pods[SERVER.key].netns] + pinned(args) +
            [args.connbench, "serve",
             "--port", str(PORT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline().strip()
            if line != "READY":
                raise lab.LabError("connbench serve did not start (said %r)" % line)
            summary = Bench(args, the_lab, out).run()
        finally:
            server.stdin.close()
            server.kill()
            server.wait()
    print("output: %s" % out)
    broken = ["N=%s %s" % (n, m) for n, res in summary["results"].items()
              for m, d in res["modes"].items() if d["failed"] or not d["blocked_port_closed"]]
    if broken:
        print("run.py: FAILED: connections failed or a blocked port was open: %s"
              % ", ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
