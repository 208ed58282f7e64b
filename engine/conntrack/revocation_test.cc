// RevocationFilters over compiled programs and their Diffs, StillAllowed, and Revoke's
// selection logic over an in-memory conntrack table.
#include "engine/conntrack/revocation.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/delta.h"
#include "engine/compiler/incremental.h"
#include "engine/conntrack/conntrack.h"
#include "engine/conntrack/fixtures.h"
#include "engine/nft/diff.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::conntrack {
namespace {

using fixtures::Ip;
using fixtures::StateOf;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

Flow Tcp(const std::string& src, const std::string& dst, uint16_t dport, uint8_t proto = 6) {
  Flow f;
  f.src = Ip(src);
  f.dst = Ip(dst);
  f.family = f.src.family;
  f.l4proto = proto;
  f.has_ports = true;
  f.sport = 40000;
  f.dport = dport;
  return f;
}

Flow Icmp(const std::string& src, const std::string& dst) {
  Flow f;
  f.src = Ip(src);
  f.dst = Ip(dst);
  f.family = f.src.family;
  f.l4proto = f.family == Family::kV4 ? 1 : 58;
  f.icmp_type = f.family == Family::kV4 ? 8 : 128;
  return f;
}

// A pod of namespace x labelled app=`app`, on `node`, with the addresses `ips` (a YAML list of
// podIPs) and, when `port` is given, one container with that port (a YAML map).
std::string Pod(const std::string& name, const std::string& app, const std::string& node,
                const std::string& ips, const std::string& port = "") {
  std::string spec = absl::StrCat("spec: {nodeName: ", node, "}\n");
  if (!port.empty()) {
    spec = absl::StrCat("spec:\n  nodeName: ", node, "\n  containers:\n  - name: main\n",
                        "    ports: [", port, "]\n");
  }
  return absl::StrCat("\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: ", name,
                      ", labels: {app: ", app, "}}\n", spec, "status:\n  podIPs: ", ips, "\n");
}

// Policy x/`name`: pods app=`target` admit pods app=b on `ports` (a YAML list).
std::string AllowB(const std::string& name, const std::string& target,
                   const std::string& ports) {
  return absl::StrCat(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: )", name, R"(}
spec:
  podSelector: {matchLabels: {app: )", target, R"(}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: b}}}]
    ports: )", ports, "\n");
}

constexpr char kPortHttp[] = "{name: http, containerPort: 8080}";
constexpr char kIpsA[] = R"([{ip: 10.0.0.2}, {ip: "fd00::2"}])";

// Pods a and b are on node n1 (local), c on n2. Policies are added per case.
std::string Cluster() {
  return absl::StrCat("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---",
                      Pod("a", "a", "n1", kIpsA, kPortHttp), "---",
                      Pod("b", "b", "n1", "[{ip: 10.0.0.3}]"), "---",
                      Pod("c", "c", "n2", R"([{ip: 10.0.1.4}, {ip: "fd00::1:4"}])",
                          "{name: pg, containerPort: 5432}"));
}
std::string AllowB80() { return AllowB("web", "a", "[{port: 80}]"); }
std::string AllowB81() { return AllowB("web", "a", "[{port: 81}]"); }
std::string AllowB80And81() { return AllowB("web", "a", "[{port: 80}, {port: 81}]"); }
// A second policy on a, of its own name.
std::string AllowB81ToA() { return AllowB("web81", "a", "[{port: 81}]"); }
std::string AllowB81ToA2() { return AllowB("web2", "a2", "[{port: 81}]"); }
std::string RelabelA() { return Pod("a", "a2", "n1", kIpsA, kPortHttp); }
std::string RelabelB() { return Pod("b", "other", "n1", "[{ip: 10.0.0.3}]"); }
// Another peer (app: b) on the other node, and one on this node.
std::string PeerD() { return Pod("d", "b", "n2", "[{ip: 10.0.1.9}]"); }
std::string LocalE() { return Pod("e", "b", "n1", "[{ip: 10.0.0.9}]"); }

// Policy x/block: pod a admits 192.168.0.0/16 on 443, but for `except` (a YAML list, "" for
// none).
std::string Block(const std::string& except) {
  return absl::StrCat(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: block}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress:
  - from: [{ipBlock: {cidr: 192.168.0.0/16)", except.empty() ? "" : ", except: ", except, R"(}}]
    ports: [{port: 443}]
)");
}

// Policy x/out: pod a is isolated for egress and may reach what `egress` (YAML, the rules'
// list with its key, "" for none) allows.
std::string EgressOfA(const std::string& egress) {
  return absl::StrCat(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: out}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
)", egress);
}
std::string EgressToC() {
  return EgressOfA("  egress:\n  - to: [{podSelector: {matchLabels: {app: c}}}]\n"
                   "    ports: [{port: pg}]\n");
}

constexpr char kIsolateB[] = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: deny-b}
spec:
  podSelector: {matchLabels: {app: b}}
)";

nft::Program CompileYaml(const std::vector<std::string>& docs, bool deny_log = false) {
  compiler::CompileOptions options;
  options.node_name = "n1";
  if (deny_log) options.deny_log = compiler::CompileOptions::DenyLog{100, 10, 20, 128};
  absl::StatusOr<nft::Program> program = compiler::Compile(StateOf(docs), options);
  EXPECT_TRUE(program.ok()) << program.status();
  return program.ok() ? *program : nft::Program();
}

std::vector<std::string> Texts(const std::vector<FlowFilter>& filters) {
  std::vector<std::string> out;
  for (const FlowFilter& f : filters) out.push_back(f.ToString());
  return out;
}

struct Case {
  std::string name;
  std::vector<std::string> before, after;  // documents applied in order
  std::vector<std::string> filters;        // FlowFilter::ToString, sorted
  std::vector<Flow> revoked;               // flows the new program denies
  std::vector<Flow> kept;                  // flows matched by a filter that stay allowed
};

std::vector<Case> Cases() {
  return {
      {"peer loses its label: its element of the ingress set goes",
       {Cluster(), AllowB80()},
       {Cluster(), AllowB80(), RelabelB()},
       {"10.0.0.3 -> 10.0.0.2 tcp dport 80"},
       {Tcp("10.0.0.3", "10.0.0.2", 80)},
       {}},
      {"port changes from 80 to 81",
       {Cluster(), AllowB80()},
       {Cluster(), AllowB81()},
       {"10.0.0.3 -> 10.0.0.2 tcp dport 80"},
       {Tcp("10.0.0.3", "10.0.0.2", 80)},
       {}},
      {"except carved out of an ipBlock: the old range is a candidate, the tracer decides",
       {Cluster(), Block("")},
       {Cluster(), Block("[192.168.7.0/24]")},
       {"192.168.0.0-192.168.255.255 -> 10.0.0.2 tcp dport 443"},
       {Tcp("192.168.7.9", "10.0.0.2", 443)},
       {Tcp("192.168.1.1", "10.0.0.2", 443)}},
      {"egress rule removed: the chain's rules change, so every flow from the pod is a candidate",
       {Cluster(), EgressToC()},
       {Cluster(), EgressOfA("")},
       {"10.0.0.2 -> any any", "10.0.0.2 -> 10.0.1.4 tcp dport 5432", "fd00::2 -> any any",
        "fd00::2 -> fd00::1:4 tcp dport 5432"},
       {Tcp("10.0.0.2", "10.0.1.4", 5432), Tcp("fd00::2", "fd00::1:4", 5432)},
       {}},
      {"pod newly isolated: every flow to it is a candidate",
       {Cluster(), AllowB80()},
       {Cluster(), AllowB80(), kIsolateB},
       {"any -> 10.0.0.3 any"},
       {Tcp("10.0.0.2", "10.0.0.3", 22), Icmp("10.0.1.4", "10.0.0.3")},
       {}},
      {"policy deleted: candidates everywhere, but the pod is no longer isolated: all kept",
       {Cluster(), AllowB80()},
       {Cluster()},
       {"any -> 10.0.0.2 any", "10.0.0.2 -> 10.0.0.2 any", "10.0.0.3 -> 10.0.0.2 tcp dport 80",
        "any -> fd00::2 any", "fd00::2 -> fd00::2 any"},
       {},
       {Tcp("10.0.0.3", "10.0.0.2", 80), Tcp("10.0.1.4", "10.0.0.2", 22)}},
      {"pod moves to another group: its dispatch entry is re-pointed",
       {Cluster(), AllowB80(), AllowB81ToA2()},
       {Cluster(), AllowB80(), AllowB81ToA2(), RelabelA()},
       {"any -> 10.0.0.2 any", "10.0.0.3 -> 10.0.0.2 tcp dport 80", "any -> fd00::2 any"},
       {Tcp("10.0.0.3", "10.0.0.2", 80)},
       {Tcp("10.0.0.3", "10.0.0.2", 81)}},
      {"unrelated pod change: no filters",
       {Cluster(), AllowB80()},
       {Cluster(), AllowB80(), Pod("d", "d", "n2", "[{ip: 10.0.1.9}]")},
       {},
       {},
       {}},
  };
}

TEST(RevocationFilters, Table) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const nft::Program before = CompileYaml(c.before);
    const nft::Program after = CompileYaml(c.after);
    const nft::Transaction tx = nft::Diff(before, after);
    const std::vector<FlowFilter> filters = RevocationFilters(before, tx);
    EXPECT_EQ(Texts(filters), c.filters) << tx.ToNftText();
    for (const FlowFilter& f : filters) EXPECT_FALSE(f.reason.empty()) << f.ToString();
    for (const Flow& f : c.revoked) {
      bool matched = false;
      for (const FlowFilter& filter : filters) matched = matched || filter.Matches(f);
      EXPECT_TRUE(matched) << f.ToString();
      EXPECT_FALSE(StillAllowed(after, f)) << f.ToString();
      EXPECT_TRUE(StillAllowed(before, f)) << f.ToString() << " was not allowed before";
    }
    for (const Flow& f : c.kept) {
      bool matched = false;
      for (const FlowFilter& filter : filters) matched = matched || filter.Matches(f);
      EXPECT_TRUE(matched) << f.ToString();
      EXPECT_TRUE(StillAllowed(after, f)) << f.ToString();
    }
  }
}

constexpr char kGuardC[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: a}}}}
  ingress:
  - {action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: c}}}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}
)";

constexpr char kGuardCAndB80[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: a}}}}
  ingress:
  - {action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: c}}}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}
  - {action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
)";

// ClusterNetworkPolicy tier chains: an element added to a tier's Deny set makes its flows
// candidates, and the pods a tier chain jumps on with are the group chain's pods (a removed
// NetworkPolicy allow of a tiered pod is a candidate). With deny logs a Deny lookup goes to the
// tier's deny-log chain instead of dropping itself: the same.
TEST(RevocationFilters, ClusterNetworkPolicyTierChains) {
  for (bool deny_log : {false, true}) {
    SCOPED_TRACE(deny_log ? "with deny logs" : "without deny logs");
    const Flow b_to_a_80 = Tcp("10.0.0.3", "10.0.0.2", 80);
    const Flow c_to_a_81 = Tcp("10.0.1.4", "10.0.0.2", 81);
    struct Row {
      const char* name;
      std::vector<std::string> before, after;
    };
    const std::vector<Row> rows = {
        {"a Deny rule added to the same CNP", {Cluster(), kGuardC}, {Cluster(), kGuardCAndB80}},
        {"the group chain behind the tier chain loses the allow",
         {Cluster(), kGuardC, AllowB80()},
         {Cluster(), kGuardC, AllowB81()}},
    };
    for (const Row& row : rows) {
      SCOPED_TRACE(row.name);
      const nft::Program before = CompileYaml(row.before, deny_log);
      const nft::Program after = CompileYaml(row.after, deny_log);
      const nft::Transaction tx = nft::Diff(before, after);
      const std::vector<FlowFilter> filters = RevocationFilters(before, tx);
      bool matched = false;
      for (const FlowFilter& f : filters) matched = matched || f.Matches(b_to_a_80);
      EXPECT_TRUE(matched) << tx.ToNftText();
      EXPECT_TRUE(StillAllowed(before, b_to_a_80));
      EXPECT_FALSE(StillAllowed(after, b_to_a_80));
      // Not every flow of the pod: only what the change touches.
      bool other = false;
      for (const FlowFilter& f : filters) other = other || f.Matches(c_to_a_81);
      EXPECT_FALSE(other);
    }
  }
}

// The decision the agent's revoker takes after each commit: a conntrack dump only when the
// transaction removed an allow or isolated (or re-grouped) a pod; never for a change that only
// adds. The transactions are the agent's: IncrementalCompiler::Update from one State to the
// next, with the old program as Update reports it.
TEST(RevocationPlan, WhichCommitsNeedADump) {
  struct DumpCase {
    std::string name;
    std::vector<std::string> before, after;
    std::set<Family> dumped;  // the families listed; empty: no dump at all
  };
  const std::vector<DumpCase> cases = {
      {"a remote pod joins an allowed peer group: elements added only",
       {Cluster(), AllowB80()}, {Cluster(), AllowB80(), PeerD()}, {}},
      // Over-approximated: the pod moves to the chain of its new group (both policies), so its
      // dispatch entry is re-pointed and every flow to it is a candidate; StillAllowed keeps
      // them all, but the table is listed.
      {"a second policy allows the isolated pod more: re-grouped", {Cluster(), AllowB80()},
       {Cluster(), AllowB80(), AllowB81ToA()}, {Family::kV4, Family::kV6}},
      {"a local pod is created, not isolated, an allowed peer", {Cluster(), AllowB80()},
       {Cluster(), AllowB80(), LocalE()}, {}},
      {"a policy allows one more port", {Cluster(), AllowB80()}, {Cluster(), AllowB80And81()}, {}},
      {"an allowed peer pod is deleted", {Cluster(), AllowB80(), PeerD()}, {Cluster(), AllowB80()},
       {Family::kV4}},
      {"an allowed peer loses its label", {Cluster(), AllowB80()}, {Cluster(), AllowB80(), RelabelB()},
       {Family::kV4}},
      {"a local pod is newly isolated", {Cluster(), AllowB80()},
       {Cluster(), AllowB80(), kIsolateB}, {Family::kV4}},
      {"a policy allows one port fewer", {Cluster(), AllowB80And81()}, {Cluster(), AllowB80()},
       {Family::kV4}},
  };
  for (const DumpCase& c : cases) {
    SCOPED_TRACE(c.name);
    const State old_state = StateOf(c.before);
    const State new_state = StateOf(c.after);
    compiler::CompileOptions options;
    options.node_name = "n1";
    compiler::IncrementalCompiler incremental;
    ASSERT_TRUE(incremental.Reset(old_state, options).ok());
    nft::Program before;
    absl::StatusOr<nft::Transaction> tx =
        incremental.Update(old_state, new_state, compiler::DiffStates(old_state, new_state),
                           options, &before);
    ASSERT_TRUE(tx.ok()) << tx.status();
    EXPECT_FALSE(tx->empty()) << "the case changes nothing";
    const RevocationPlan plan = RevocationPlan::Build(before, *tx);
    EXPECT_EQ(plan.empty(), c.dumped.empty()) << tx->ToNftText();
    EXPECT_EQ(plan.families(), c.dumped) << tx->ToNftText();
  }
}

TEST(RevocationFilters, FullReplaceMakesEveryIsolatedPodACandidate) {
  const nft::Program before = CompileYaml({Cluster(), AllowB80(), EgressToC()});
  const nft::Program after = CompileYaml({Cluster(), AllowB81(), EgressToC()});
  const std::vector<FlowFilter> filters = RevocationFilters(before, nft::FullReplace(after));
  EXPECT_THAT(Texts(filters), ::testing::IsSupersetOf({"10.0.0.2 -> any any", "any -> 10.0.0.2 any",
                                                       "fd00::2 -> any any", "any -> fd00::2 any"}));
  EXPECT_FALSE(StillAllowed(after, Tcp("10.0.0.3", "10.0.0.2", 80)));
  EXPECT_TRUE(StillAllowed(after, Tcp("10.0.0.3", "10.0.0.2", 81)));
  EXPECT_TRUE(StillAllowed(after, Tcp("10.0.0.2", "10.0.1.4", 5432)));
}

TEST(StillAllowed, IngressJudgesTheSourceAfterSnat) {
  const nft::Program p = CompileYaml({Cluster(), AllowB80()});
  Flow direct = Tcp("10.0.0.3", "10.0.0.2", 80);
  EXPECT_TRUE(StillAllowed(p, direct));
  // The same connection masqueraded to the node's bridge address on the way to a: a's ingress
  // rules (postrouting, after SNAT) see the node, which they do not allow.
  Flow masqueraded = direct;
  masqueraded.nat_src = Ip("10.0.0.1");
  EXPECT_FALSE(StillAllowed(p, masqueraded));
  // An outside client masqueraded to b's address (contrived) is judged as b.
  Flow outside = Tcp("172.31.0.10", "10.0.0.2", 80);
  EXPECT_FALSE(StillAllowed(p, outside));
  outside.nat_src = Ip("10.0.0.3");
  EXPECT_TRUE(StillAllowed(p, outside));
}

TEST(RevocationFilters, OtherTableContributesNothing) {
  const nft::Program before = CompileYaml({Cluster(), AllowB80()});
  const nft::Program after = CompileYaml({Cluster(), AllowB81()});
  const nft::Transaction diff = nft::Diff(before, after);
  ASSERT_FALSE(RevocationFilters(before, diff).empty());
  nft::Transaction tx("elsewhere");
  for (const nft::Command& c : diff.commands()) tx.Append(c);
  EXPECT_THAT(RevocationFilters(before, tx), IsEmpty());
}

TEST(FlowFilter, Matches) {
  const FlowFilter any = FlowFilter::Any(Ip("10.0.0.1"), Ip("10.0.0.2"));
  EXPECT_TRUE(any.Matches(Tcp("10.0.0.1", "10.0.0.2", 80)));
  EXPECT_TRUE(any.Matches(Icmp("10.0.0.1", "10.0.0.2")));
  EXPECT_FALSE(any.Matches(Tcp("10.0.0.2", "10.0.0.1", 80))) << "direction matters";
  EXPECT_FALSE(any.Matches(Tcp("fd00::1", "fd00::2", 80)));

  FlowFilter ports = any;
  ports.proto_lo = ports.proto_hi = 6;
  ports.dport_lo = 80;
  ports.dport_hi = 90;
  EXPECT_TRUE(ports.Matches(Tcp("10.0.0.1", "10.0.0.2", 80)));
  EXPECT_TRUE(ports.Matches(Tcp("10.0.0.1", "10.0.0.2", 90)));
  EXPECT_FALSE(ports.Matches(Tcp("10.0.0.1", "10.0.0.2", 91)));
  EXPECT_FALSE(ports.Matches(Tcp("10.0.0.1", "10.0.0.2", 80, 17)));
  EXPECT_FALSE(ports.Matches(Icmp("10.0.0.1", "10.0.0.2"))) << "a port range needs ports";
  EXPECT_EQ(ports.ToString(), "10.0.0.1 -> 10.0.0.2 tcp dport 80-90");

  FlowFilter range = FlowFilter::AnyTo(Ip("fd00::2"));
  range.src_lo = Ip("fd00::10");
  range.src_hi = Ip("fd00::1f");
  EXPECT_TRUE(range.Matches(Tcp("fd00::10", "fd00::2", 1)));
  EXPECT_TRUE(range.Matches(Tcp("fd00::1f", "fd00::2", 1)));
  EXPECT_FALSE(range.Matches(Tcp("fd00::20", "fd00::2", 1)));
  EXPECT_EQ(range.ToString(), "fd00::10-fd00::1f -> fd00::2 any");
}

TEST(Flow, ToString) {
  EXPECT_EQ(Tcp("10.0.0.1", "10.0.0.2", 80).ToString(), "tcp 10.0.0.1:40000 -> 10.0.0.2:80");
  EXPECT_EQ(Tcp("fd00::1", "fd00::2", 53, 17).ToString(), "udp [fd00::1]:40000 -> [fd00::2]:53");
  EXPECT_EQ(Icmp("10.0.0.1", "10.0.0.2").ToString(), "icmp 10.0.0.1 -> 10.0.0.2");
}

// ---- Revoke over an in-memory table ----

class FakeTable : public Table {
 public:
  std::vector<Entry> entries;
  std::map<std::string, absl::Status> delete_errors;  // by flow text
  std::vector<Family> dumped;

  absl::StatusOr<std::vector<Entry>> Dump(Family family) override {
    dumped.push_back(family);
    if (!dump_error.ok()) return dump_error;
    std::vector<Entry> out;
    for (const Entry& e : entries) {
      if (e.flow.family == family) out.push_back(e);
    }
    return out;
  }
  absl::Status Delete(const Entry& entry) override {
    auto err = delete_errors.find(entry.flow.ToString());
    if (err != delete_errors.end()) return err->second;
    for (auto it = entries.begin(); it != entries.end(); ++it) {
      if (it->flow.ToString() == entry.flow.ToString()) {
        entries.erase(it);
        return absl::OkStatus();
      }
    }
    return absl::NotFoundError("gone");
  }
  absl::Status dump_error;
};

Entry E(const Flow& f) {
  Entry e;
  e.flow = f;
  e.orig_src = f.src;
  e.orig_dst = f.dst;
  e.orig_sport = f.sport;
  e.orig_dport = f.dport;
  return e;
}

std::vector<std::string> FlowTexts(const std::vector<Flow>& flows) {
  std::vector<std::string> out;
  for (const Flow& f : flows) out.push_back(f.ToString());
  return out;
}

TEST(Revoke, DeletesOnlyMatchingEntries) {
  FakeTable table;
  table.entries = {E(Tcp("10.0.0.3", "10.0.0.2", 80)), E(Tcp("10.0.0.3", "10.0.0.2", 81)),
                   E(Tcp("10.0.0.2", "10.0.0.3", 80)), E(Tcp("fd00::3", "fd00::2", 80))};
  FlowFilter f = FlowFilter::Any(Ip("10.0.0.3"), Ip("10.0.0.2"));
  f.proto_lo = f.proto_hi = 6;
  f.dport_lo = f.dport_hi = 80;
  absl::StatusOr<RevokeReport> r = Revoke(&table, {f}, RevokeOptions{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(FlowTexts(r->deleted), ElementsAre("tcp 10.0.0.3:40000 -> 10.0.0.2:80"));
  EXPECT_EQ(r->scanned, 3u) << "only the IPv4 table is listed";
  EXPECT_THAT(table.dumped, ElementsAre(Family::kV4));
  EXPECT_EQ(table.entries.size(), 3u);
}

TEST(Revoke, KeepHostSourcesVanishedAndErrors) {
  FakeTable table;
  table.entries = {E(Tcp("10.0.0.3", "10.0.0.2", 80)), E(Tcp("10.0.0.4", "10.0.0.2", 80)),
                   E(Tcp("192.168.0.1", "10.0.0.2", 80)), E(Tcp("10.0.0.5", "10.0.0.2", 80)),
                   E(Tcp("10.0.0.6", "10.0.0.2", 80))};
  table.delete_errors["tcp 10.0.0.5:40000 -> 10.0.0.2:80"] = absl::UnavailableError("ENOBUFS");
  table.delete_errors["tcp 10.0.0.6:40000 -> 10.0.0.2:80"] = absl::NotFoundError("expired");
  RevokeOptions options;
  options.host_addresses = {Ip("192.168.0.1")};
  options.keep = [](const Flow& f) { return f.src == Ip("10.0.0.4"); };
  absl::StatusOr<RevokeReport> r = Revoke(&table, {FlowFilter::AnyTo(Ip("10.0.0.2"))}, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(FlowTexts(r->deleted), ElementsAre("tcp 10.0.0.3:40000 -> 10.0.0.2:80"));
  EXPECT_EQ(r->matched, 4u) << "the host's own flow is never a match";
  EXPECT_EQ(r->kept, 1u);
  EXPECT_EQ(r->vanished, 1u);
  EXPECT_THAT(r->errors, ElementsAre("tcp 10.0.0.5:40000 -> 10.0.0.2:80: ENOBUFS"));
}

TEST(Revoke, DumpErrorIsReturned) {
  FakeTable table;
  table.dump_error = absl::PermissionDeniedError("conntrack: listing IPv4 entries: EPERM");
  absl::StatusOr<RevokeReport> r =
      Revoke(&table, {FlowFilter::AnyTo(Ip("10.0.0.2"))}, RevokeOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST(Revoke, NoFiltersListsNothing) {
  FakeTable table;
  table.entries = {E(Tcp("10.0.0.3", "10.0.0.2", 80))};
  absl::StatusOr<RevokeReport> r = Revoke(&table, {}, RevokeOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(table.dumped, IsEmpty());
  EXPECT_EQ(table.entries.size(), 1u);
}

// The plan's factored matching agrees with the expanded filters on every case's flows and on
// flows no case names.
TEST(RevocationPlan, MatchesLikeItsExpansion) {
  const std::vector<Flow> probes = {
      Tcp("10.0.0.3", "10.0.0.2", 80),      Tcp("10.0.0.3", "10.0.0.2", 81),
      Tcp("10.0.0.2", "10.0.0.3", 80),      Tcp("10.0.1.4", "10.0.0.2", 80),
      Tcp("10.0.0.2", "10.0.1.4", 5432),    Tcp("192.168.1.1", "10.0.0.2", 443),
      Tcp("fd00::3", "fd00::2", 80),        Icmp("10.0.0.3", "10.0.0.2"),
      Icmp("fd00::2", "fd00::1:4"),         Tcp("10.9.9.9", "10.9.9.8", 80)};
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const nft::Program before = CompileYaml(c.before);
    const nft::Transaction tx = nft::Diff(before, CompileYaml(c.after));
    const RevocationPlan plan = RevocationPlan::Build(before, tx);
    const std::vector<FlowFilter> filters = plan.Expand();
    EXPECT_EQ(plan.empty(), filters.empty());
    std::vector<Flow> flows = probes;
    flows.insert(flows.end(), c.revoked.begin(), c.revoked.end());
    flows.insert(flows.end(), c.kept.begin(), c.kept.end());
    for (const Flow& f : flows) {
      bool matched = false;
      for (const FlowFilter& filter : filters) matched = matched || filter.Matches(f);
      EXPECT_EQ(plan.Matches(f), matched) << f.ToString();
    }
  }
}

// The crash test's world: `pods` local pods alternating client and server, three policies
// admitting clients to servers on one port each; `flipped` swaps every pod's role.
std::string RelabelWorld(int pods, bool flipped) {
  std::string out = "apiVersion: v1\nkind: Namespace\nmetadata: {name: r}\n";
  for (int i = 0; i < pods; ++i) {
    const bool server = (i % 2 == 1) != flipped;
    absl::StrAppend(&out, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p", i,
                    ", namespace: r, labels: {role: ", server ? "server" : "client",
                    "}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.", 64 + i / 65536, ".",
                    (i / 256) % 256, ".", i % 256, "}\n");
  }
  for (int port : {80, 443, 8080}) {
    absl::StrAppend(&out, "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n",
                    "metadata: {name: servers-", port, ", namespace: r}\nspec:\n",
                    "  podSelector: {matchLabels: {role: server}}\n  ingress:\n",
                    "  - from: [{podSelector: {matchLabels: {role: client}}}]\n",
                    "    ports: [{port: ", port, "}]\n");
  }
  return out;
}

std::string PodIp(int i) { return absl::StrCat("10.64.", (i / 256) % 256, ".", i % 256); }

// Relabelling 1,000 clients against 1,000 servers: the candidates are a product of ~3,000
// removed set elements and ~1,000 pods, but the plan stores them factored, so its size (its
// memory and build work) stays linear in the pods, and judging a table costs one Matches per
// entry. It still finds every flow the change denies and keeps those that stay allowed.
TEST(RevocationPlan, LargeRelabelStaysLinear) {
  constexpr int kPods = 2000;
  const nft::Program before = CompileYaml({RelabelWorld(kPods, false)});
  const nft::Program after = CompileYaml({RelabelWorld(kPods, true)});
  const nft::Transaction tx = nft::Diff(before, after);
  const RevocationPlan plan = RevocationPlan::Build(before, tx);
  EXPECT_GE(plan.expanded_size(), size_t{1000} * 1000) << "the product the plan avoids";
  EXPECT_LE(plan.size(), size_t{10} * kPods);
  EXPECT_FALSE(plan.empty());

  // A conntrack table of flows among a sample of the pods, on a policy port and another one.
  // The truth for each flow: allowed by `before` and denied by `after`.
  constexpr int kSample = 40;
  FakeTable table;
  std::set<std::string> denied, stays;
  for (int i = 0; i < kSample; ++i) {
    for (int j = 0; j < kSample; ++j) {
      if (i == j) continue;
      for (uint16_t port : {80, 22}) {
        const Flow f = Tcp(PodIp(i), PodIp(j), port);
        if (!StillAllowed(before, f)) continue;  // never established
        table.entries.push_back(E(f));
        (StillAllowed(after, f) ? stays : denied).insert(f.ToString());
        if (!StillAllowed(after, f)) {
          EXPECT_TRUE(plan.Matches(f)) << f.ToString() << " is denied but no candidate";
        }
      }
    }
  }
  ASSERT_FALSE(denied.empty());
  ASSERT_FALSE(stays.empty());
  EXPECT_TRUE(denied.count(Tcp(PodIp(0), PodIp(2), 80).ToString()) > 0)
      << "client to client becomes server to server: denied";
  EXPECT_TRUE(stays.count(Tcp(PodIp(0), PodIp(1), 80).ToString()) > 0)
      << "the old server is no longer isolated";

  RevokeOptions options;
  options.keep = [&after](const Flow& f) { return StillAllowed(after, f); };
  absl::StatusOr<RevokeReport> r = RevokePlan(&table, plan, options);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<std::string> deleted = FlowTexts(r->deleted);
  EXPECT_EQ(std::set<std::string>(deleted.begin(), deleted.end()), denied);
  EXPECT_EQ(deleted.size(), denied.size());
  EXPECT_THAT(table.dumped, ElementsAre(Family::kV4));
  EXPECT_EQ(table.entries.size(), stays.size()) << "flows that stay allowed are untouched";
  EXPECT_LE(r->matched, r->scanned);
}

}  // namespace
}  // namespace netpol::conntrack
