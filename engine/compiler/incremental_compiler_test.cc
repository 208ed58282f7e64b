// IncrementalCompiler's updates against one update from the empty State (Compile): for random
// states S1 and S2, Update(S1 -> S2) applied by the fake backend onto program(S1) lands exactly on
// Compile(S2), and the program the incremental compiler holds renders like Compile(S2) too;
// chains of updates keep it so (differential_test traces such programs against the evaluator).
// Plus targeted rows for what reaches the kernel (element commands only where no group changes).
#include <iostream>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/incremental.h"
#include "engine/compiler/testutil.h"
#include "engine/nft/diff.h"
#include "engine/nft/fake.h"
#include "engine/nft/transaction.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

using testing::Add;
using testing::Mutate;
using testing::PickIn;
using testing::Ip;
using testing::MakeNamespace;
using testing::MakePod;
using testing::NamedPort;
using testing::PodPeer;
using testing::Rng;
using testing::Sel;
using testing::TcpPort;

// Node n2 logs its drops, so every random transition is checked with and without deny logging.
CompileOptions Node(const std::string& node) {
  CompileOptions o;
  o.node_name = node;
  if (node == "n2") o.deny_log = CompileOptions::DenyLog{100, 10, 20, 128};
  return o;
}

// Checks Update(from -> to) on `ic` (holding `from`) against Compile(to); returns the tx.
nft::Transaction CheckUpdate(IncrementalCompiler* ic, const State& from, const State& to,
                             const CompileOptions& o_from, const CompileOptions& o,
                             const std::string& label) {
  absl::StatusOr<nft::Program> p1 = Compile(from, o_from);
  absl::StatusOr<nft::Program> p2 = Compile(to, o);
  EXPECT_TRUE(p1.ok()) << label << ": " << p1.status();
  nft::Program before;
  absl::StatusOr<nft::Transaction> tx = ic->Update(from, to, DiffStates(from, to), o, &before);
  if (!p2.ok()) {
    EXPECT_FALSE(tx.ok()) << label << ": Compile fails with " << p2.status();
    if (p1.ok()) {
      EXPECT_EQ(nft::RenderProgram(ic->program()), nft::RenderProgram(*p1)) << label;
    }
    return nft::Transaction(o.table);
  }
  EXPECT_TRUE(tx.ok()) << label << ": " << tx.status();
  if (!tx.ok() || !p1.ok()) return nft::Transaction(o.table);
  EXPECT_EQ(nft::RenderProgram(ic->program()), nft::RenderProgram(*p2)) << label;
  EXPECT_TRUE(ic->program() == *p2) << label;
  nft::FakeBackend fake;
  EXPECT_TRUE(fake.Commit(nft::FullReplace(*p1)).ok()) << label;
  absl::Status st = fake.Commit(*tx);
  EXPECT_TRUE(st.ok()) << label << ": " << st << "\n" << tx->ToNftText();
  absl::StatusOr<nft::Program> dumped = fake.Dump(o.table);
  EXPECT_TRUE(dumped.ok()) << dumped.status();
  if (dumped.ok()) {
    dumped->comment = p2->comment;  // nft::Diff leaves the table comment alone
    EXPECT_EQ(nft::RenderProgram(*dumped), nft::RenderProgram(*p2)) << label;
  }
  // What the revoker reads of the old program is there.
  EXPECT_EQ(before.chains, p1->chains) << label;
  EXPECT_EQ(before.sets, p1->sets) << label;
  for (const char* map : {kIngressDispatchV4, kIngressDispatchV6, kEgressDispatchV4,
                          kEgressDispatchV6}) {
    auto want = p1->elements.find(map);
    auto got = before.elements.find(map);
    EXPECT_EQ(want == p1->elements.end(), got == before.elements.end()) << label << " " << map;
    if (want != p1->elements.end() && got != before.elements.end()) {
      EXPECT_EQ(want->second, got->second) << label << " " << map;
    }
  }
  return *std::move(tx);
}

nft::Transaction CheckUpdate(IncrementalCompiler* ic, const State& from, const State& to,
                             const CompileOptions& o, const std::string& label) {
  return CheckUpdate(ic, from, to, o, o, label);
}

TEST(IncrementalCompilerTest, ResetHoldsTheCompiledProgram) {
  for (uint32_t seed = 1; seed <= 100; ++seed) {
    State s = testing::RandomState(seed);
    for (const char* node : {"n1", "n2"}) {
      IncrementalCompiler ic;
      absl::StatusOr<nft::Transaction> tx = ic.Reset(s, Node(node));
      absl::StatusOr<nft::Program> p = Compile(s, Node(node));
      ASSERT_EQ(tx.ok(), p.ok());
      if (!p.ok()) continue;
      EXPECT_TRUE(ic.program() == *p);
      EXPECT_EQ(tx->ToNftText(), nft::FullReplace(*p).ToNftText());
    }
  }
}

TEST(IncrementalCompilerTest, SmallEditsLandExactly) {
  for (uint32_t seed = 1; seed <= 600; ++seed) {
    State s1 = testing::RandomState(seed);
    State s2 = Mutate(s1, seed);
    for (const char* node : {"n1", "n2"}) {
      IncrementalCompiler ic;
      if (!ic.Reset(s1, Node(node)).ok()) continue;
      CheckUpdate(&ic, s1, s2, Node(node), absl::StrCat("seed ", seed, " on ", node));
      if (HasFailure()) return;
    }
  }
}

// ClusterNetworkPolicies created, changed and deleted (and nodes relabelled, mixed with every
// other edit): the update lands exactly on Compile(S2), also when the first CNP arrives or the
// last one goes.
TEST(IncrementalCompilerTest, ClusterNetworkPolicyEditsLandExactly) {
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    State s1 = testing::RandomState(seed);
    if (seed % 4 != 0) testing::AddRandomClusterPolicies(&s1, seed);
    State s2 = testing::MutateClusterPolicies(s1, seed);
    if (seed % 5 == 0) s2.cluster_policies.clear();
    if (seed % 7 == 0) testing::AddRandomClusterPolicies(&s2, seed + 1000);
    for (const char* node : {"n1", "n2"}) {
      IncrementalCompiler ic;
      if (!ic.Reset(s1, Node(node)).ok()) continue;
      CheckUpdate(&ic, s1, s2, Node(node), absl::StrCat("seed ", seed, " on ", node));
      if (HasFailure()) return;
    }
  }
}

// Chains of updates held by one compiler under ClusterNetworkPolicies: pod, namespace and Node
// events (pods created, deleted, relabelled, moved between nodes; namespaces relabelled; Nodes
// relabelled or readdressed), which cut the tier contents again around the changed addresses,
// with a CNP edit now and then (new CNPs, bodies, priorities and tiers changing); every step
// lands exactly on Compile, in the held program and in the fake kernel.
TEST(IncrementalCompilerTest, ClusterNetworkPolicyUpdateChainsLandExactly) {
  int peer_steps = 0, tier_element_steps = 0;
  for (uint32_t seed = 1; seed <= 50; ++seed) {
    State s = testing::RandomState(seed);
    testing::AddRandomClusterPolicies(&s, seed, 6);
    for (const char* node : {"n1", "n2"}) {
      IncrementalCompiler ic;
      State cur = s;
      if (!ic.Reset(cur, Node(node)).ok()) continue;
      for (int step = 0; step < 12; ++step) {
        const uint64_t k = seed * 1000 + static_cast<uint64_t>(step);
        Rng rng(k);
        State next;
        bool peers_only = true;
        if (step % 6 == 5) {
          next = testing::MutateClusterPolicies(cur, k);
          peers_only = false;
        } else if (rng.Chance(25) && !cur.nodes.empty()) {
          next = cur;
          netpol::Node& n = next.nodes[PickIn(next.nodes, rng)->first];
          if (rng.Chance(50)) {
            n.labels["role"] = rng.Chance(50) ? "infra" : "worker";
          } else {
            n.ips = {Ip(absl::StrCat("10.0.", rng.Uniform(2), ".", 150 + rng.Uniform(5)))};
          }
        } else {
          next = Mutate(cur, k);
          peers_only = next.policies == cur.policies;
        }
        const std::string label = absl::StrCat("seed ", seed, " on ", node, " step ", step);
        nft::Transaction tx = CheckUpdate(&ic, cur, next, Node(node), label);
        if (HasFailure()) return;
        if (!Compile(next, Node(node)).ok()) continue;
        if (peers_only) {
          ++peer_steps;
          for (const nft::Command& c : tx.commands()) {
            if (c.kind == nft::ObjectKind::kElement && (absl::StartsWith(c.set.name, "cin-set-") ||
                                                       absl::StartsWith(c.set.name, "ceg-set-"))) {
              ++tier_element_steps;
              break;
            }
          }
        }
        cur = std::move(next);
      }
    }
  }
  std::cout << peer_steps << " peer updates, " << tier_element_steps
            << " of them changed tier set elements\n";
  EXPECT_GT(peer_steps, 500);
  EXPECT_GT(tier_element_steps, 100);
}

TEST(IncrementalCompilerTest, SwitchingRuleCountersRecompilesWhole) {
  int checked = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    State s1 = testing::RandomState(seed);
    State s2 = Mutate(s1, seed);
    IncrementalCompiler ic;
    CompileOptions off = Node("n1");
    CompileOptions on = off;
    on.rule_counters = true;
    if (!ic.Reset(s1, off).ok() || !Compile(s2, on).ok()) continue;
    CheckUpdate(&ic, s1, s2, off, on, absl::StrCat("seed ", seed, " counters on"));
    CheckUpdate(&ic, s2, s2, on, off, absl::StrCat("seed ", seed, " counters off"));
    if (HasFailure()) return;
    EXPECT_EQ(ic.stats().full_fallbacks, 2);
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

// RuleSources names, for every rule of every group chain, what the rule's comment lists.
void CheckRuleSources(const IncrementalCompiler& ic, const std::string& label) {
  const std::map<std::string, GroupRuleSources> sources = ic.RuleSources();
  size_t groups = 0;
  for (const auto& [name, chain] : ic.program().chains) {
    if (chain.base) continue;
    ++groups;
    auto it = sources.find(name);
    ASSERT_NE(it, sources.end()) << label << ": " << name;
    const GroupRuleSources& g = it->second;
    EXPECT_EQ(name.rfind(g.ingress ? "in-" : "eg-", 0), 0u) << label << ": " << name;
    ASSERT_EQ(g.rules.size(), chain.rules.size()) << label << ": " << name;
    for (size_t i = 0; i < chain.rules.size(); ++i) {
      const nft::Rule& r = chain.rules[i];
      const bool drop = r.verdict && r.verdict->kind == nft::Verdict::Kind::kDrop;
      EXPECT_EQ(drop, g.rules[i].empty()) << label << ": " << name << " rule " << i;
      if (drop) continue;
      const std::string full = absl::StrJoin(g.rules[i], ", ");
      if (full.size() <= nft::kMaxCommentLength) {
        EXPECT_EQ(r.comment, full) << label << ": " << name << " rule " << i;
      } else {
        EXPECT_TRUE(absl::EndsWith(r.comment, " more")) << label << ": " << r.comment;
      }
      for (const std::string& src : g.rules[i]) {
        const std::string policy = src.substr(0, src.find(' '));
        EXPECT_TRUE(std::binary_search(g.policies.begin(), g.policies.end(), policy))
            << label << ": " << src << " outside " << absl::StrJoin(g.policies, ",");
      }
    }
  }
  EXPECT_EQ(groups, sources.size()) << label;
}

TEST(IncrementalCompilerTest, RuleSourcesNameWhatEachGroupRuleHolds) {
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    State s = testing::RandomState(seed, {.min_pods = 8, .max_pods = 16, .min_policies = 2,
                                          .max_policies = 8});
    IncrementalCompiler ic;
    CompileOptions o = Node("n1");
    o.rule_counters = true;
    if (!ic.Reset(s, o).ok()) continue;
    CheckRuleSources(ic, absl::StrCat("seed ", seed));
    for (int step = 0; step < 5; ++step) {
      State next = Mutate(s, seed * 100 + step);
      if (!ic.Update(s, next, DiffStates(s, next), o).ok()) continue;
      CheckRuleSources(ic, absl::StrCat("seed ", seed, " step ", step));
      if (HasFailure()) return;
      s = std::move(next);
    }
  }
}

TEST(IncrementalCompilerTest, UnrelatedStatesLandExactly) {
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    State s1 = testing::RandomState(seed);
    State s2 = testing::RandomState(seed + 50000);
    for (const char* node : {"n1", "n2"}) {
      IncrementalCompiler ic;
      if (!ic.Reset(s1, Node(node)).ok()) continue;
      CheckUpdate(&ic, s1, s2, Node(node), absl::StrCat("seeds ", seed, " -> ", seed + 50000));
      if (HasFailure()) return;
    }
  }
}

TEST(IncrementalCompilerTest, LongChainsOfUpdatesStayExact) {
  int64_t crossings = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    for (const char* node : {"n1", "n2"}) {
      State s = testing::RandomState(seed, {.min_pods = 8, .max_pods = 16, .min_policies = 2,
                                            .max_policies = 6});
      IncrementalCompiler ic;
      CompileOptions o = Node(node);
      o.rule_counters = seed % 2 == 0;  // the agent's default layout and the plain one
      if (!ic.Reset(s, o).ok()) continue;
      Rng rng(seed * 31 + 7);
      for (int step = 0; step < 25; ++step) {
        State next = Mutate(s, seed * 1000 + step);
        // Now and then a CNI attaches or detaches a pod (local before its nodeName says so).
        CompileOptions next_o = o;
        if (!next.pods.empty() && rng.Chance(30)) {
          const std::string key = PickIn(next.pods, rng)->first;
          if (!next_o.attached_pods.erase(key)) next_o.attached_pods.insert(key);
        }
        if (!Compile(next, next_o).ok()) continue;  // skip edits the compiler refuses
        CheckUpdate(&ic, s, next, o, next_o,
                    absl::StrCat("seed ", seed, " step ", step, " on ", node));
        if (HasFailure()) return;
        s = std::move(next);
        o = std::move(next_o);
      }
      EXPECT_EQ(ic.stats().full_fallbacks, 0);
      crossings += ic.stats().large_rule_crossings;
    }
  }
  // The random rules include selector rules whose size moves across the large-rule threshold
  // with the pods (testutil.cc RandomLargeRule): those layout changes are exercised.
  EXPECT_GT(crossings, 0);
  std::cout << crossings << " updates moved a rule across the large-rule threshold\n";
}

// A selector rule is large or not depending on the pod addresses it matches (RULESET.md "Large
// rules"): `from: [namespaceSelector: {}]` on 16 ports crosses at 65 addresses. The crossing
// updates rebuild the group (its layout changes) and land exactly; updates on one side of the
// threshold change elements only.
TEST(IncrementalCompilerTest, SelectorRuleCrossingTheLargeThresholdLandsExactly) {
  State s;
  Add(&s, testing::MakeNamespace("x"));
  Add(&s, testing::MakePod("x", "web", {{"app", "web"}}, "n1", {"10.0.0.2"}));
  Add(&s, testing::EveryNamespacePolicy("x", "all", 16));
  testing::AddCrowd(&s, "crowd", 0, 63, "n2");  // 64 addresses: small
  IncrementalCompiler ic;
  ASSERT_TRUE(ic.Reset(s, Node("n1")).ok());
  auto step = [&](const State& next, const std::string& label) {
    const int64_t rebuilt = ic.stats().groups_rebuilt;
    CheckUpdate(&ic, s, next, Node("n1"), label);
    s = next;
    return ic.stats().groups_rebuilt - rebuilt;
  };
  State up = s;
  testing::AddCrowd(&up, "crowd", 63, 1, "n2");  // 65: large
  EXPECT_EQ(step(up, "up to 65"), 1);
  EXPECT_EQ(ic.stats().large_rule_crossings, 1);
  State many = s;
  testing::AddCrowd(&many, "crowd", 64, 936, "n2");  // 1,001 addresses: still large
  EXPECT_EQ(step(many, "up to 1,001"), 0);
  size_t elements = 0;
  for (const auto& [name, els] : ic.program().elements) elements += els.size();
  EXPECT_GT(elements, 1000u);
  EXPECT_LT(elements, 1100u);  // not 1,001 x 16
  State down = s;
  for (int i = 63; i < 1000; ++i) down.pods.erase(absl::StrCat("crowd/crowd-", i));
  EXPECT_EQ(step(down, "down to 64"), 1);
  EXPECT_EQ(ic.stats().large_rule_crossings, 2);
  // A namespace relabelled out of the selector's reach crosses too (x/web alone: small).
  NetworkPolicy labelled = testing::EveryNamespacePolicy("x", "all", 16);
  labelled.ingress[0].peers[0].namespace_selector = testing::Sel({{"team", "red"}});
  State relabel = s;
  Add(&relabel, labelled);
  Add(&relabel, testing::MakeNamespace("crowd", {{"team", "red"}}));
  testing::AddCrowd(&relabel, "crowd", 63, 10, "n2");  // 73 addresses in crowd: large
  step(relabel, "policy and namespace labels");
  State out = s;
  Add(&out, testing::MakeNamespace("crowd", {{"team", "blue"}}));
  const int64_t crossings = ic.stats().large_rule_crossings;
  EXPECT_EQ(step(out, "namespace relabelled"), 1);
  EXPECT_EQ(ic.stats().large_rule_crossings, crossings + 1);
}

// The program depends on the State alone, not on the order its objects arrived in: the State
// is built one object at a time through Update, in key order (namespaces, pods, policies), in
// the exact reverse (policies before the pods they select, pods before their namespaces, of two
// pods claiming one address the later key first) and in seeded random orders. Every step lands
// exactly (CheckUpdate) and every order ends on the bytes of Compile(state).
TEST(IncrementalCompilerTest, ArrivalOrderDoesNotMatter) {
  enum Kind { kNamespace, kPod, kPolicy };
  int orders_checked = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const State s = testing::RandomState(seed);
    std::vector<std::pair<Kind, std::string>> forward;
    for (const auto& [key, ns] : s.namespaces) forward.push_back({kNamespace, key});
    for (const auto& [key, pod] : s.pods) forward.push_back({kPod, key});
    for (const auto& [key, policy] : s.policies) forward.push_back({kPolicy, key});
    std::vector<std::vector<std::pair<Kind, std::string>>> orders = {
        forward, {forward.rbegin(), forward.rend()}};
    Rng rng(seed * 104729 + 3);
    for (int shuffle = 0; shuffle < 2; ++shuffle) {
      std::vector<std::pair<Kind, std::string>> order = forward;
      for (size_t i = order.size(); i > 1; --i) {
        std::swap(order[i - 1], order[rng.Uniform(static_cast<int>(i))]);
      }
      orders.push_back(std::move(order));
    }
    for (const char* node : {"n1", "n2"}) {
      absl::StatusOr<nft::Program> want = Compile(s, Node(node));
      ASSERT_TRUE(want.ok()) << "seed " << seed << ": " << want.status();
      for (size_t n = 0; n < orders.size(); ++n) {
        const std::string label = absl::StrCat("seed ", seed, " order ", n, " on ", node);
        IncrementalCompiler ic;
        State built;
        ASSERT_TRUE(ic.Reset(built, Node(node)).ok()) << label;
        for (const auto& [kind, key] : orders[n]) {
          State next = built;
          switch (kind) {
            case kNamespace:
              next.namespaces[key] = s.namespaces.at(key);
              break;
            case kPod:
              next.pods[key] = s.pods.at(key);
              break;
            case kPolicy:
              next.policies[key] = s.policies.at(key);
              break;
          }
          CheckUpdate(&ic, built, next, Node(node), absl::StrCat(label, " adding ", key));
          if (HasFailure()) return;
          built = std::move(next);
        }
        ASSERT_TRUE(built == s) << label;
        EXPECT_EQ(nft::RenderProgram(ic.program()), nft::RenderProgram(*want)) << label;
        ++orders_checked;
      }
    }
  }
  EXPECT_EQ(orders_checked, 40 * 2 * 4);
}

// A small fixed cluster: shop/web-1 local and selected by shop/web, monitoring/prom remote.
State Shop() {
  State s;
  Add(&s, MakeNamespace("shop"));
  Add(&s, MakeNamespace("monitoring", {{"team", "ops"}}));
  Add(&s, MakePod("shop", "web-1", {{"app", "web"}}, "n1", {"10.0.0.2", "fd00::2"},
                  {{"http", 8080, Protocol::kTCP}}));
  Add(&s, MakePod("monitoring", "prom", {{"app", "prom"}}, "n2", {"10.0.1.9"}));
  NetworkPolicy p;
  p.namespace_name = "shop";
  p.name = "web";
  p.pod_selector = Sel({{"app", "web"}});
  p.ingress_type = true;
  Rule r;
  r.peers.push_back(testing::NamespacePeer(Sel({{"team", "ops"}})));
  r.ports.push_back(NamedPort("http"));
  p.ingress.push_back(r);
  Add(&s, p);
  return s;
}

bool OnlyElements(const nft::Transaction& tx) {
  for (const nft::Command& c : tx.commands()) {
    if (c.kind != nft::ObjectKind::kElement) return false;
  }
  return true;
}

TEST(IncrementalCompilerTest, TargetedRows) {
  const CompileOptions o = Node("n1");
  struct Row {
    std::string name;
    std::function<void(State*)> edit;
    bool elements_only;
    std::string must_contain;  // in the transaction's nft text
  };
  const std::vector<Row> rows = {
      {"pod joins an existing group: dispatch and self elements only",
       [](State* s) {
         Add(s, MakePod("shop", "web-2", {{"app", "web"}}, "n1", {"10.0.0.3"},
                        {{"http", 8080, Protocol::kTCP}}));
       },
       true, "10.0.0.3 comment \"shop/web-2\""},
      {"remote peer pod arrives: one set element",
       [](State* s) { Add(s, MakePod("monitoring", "prom-2", {{"app", "prom"}}, "n2", {"10.0.1.10"})); },
       true, "10.0.1.10 . tcp . 8080"},
      {"remote peer pod leaves",
       [](State* s) { s->pods.erase("monitoring/prom"); }, true, "delete element"},
      {"namespace relabel drops its pods as peers",
       [](State* s) { s->namespaces["monitoring"].labels.erase("team"); }, true,
       "delete element"},
      {"last pod leaves its group: chain and sets deleted",
       [](State* s) { s->pods.erase("shop/web-1"); }, false, "delete chain"},
      {"named port changes: the pod moves to a new group",
       [](State* s) { s->pods["shop/web-1"].ports[0].container_port = 9090; }, false,
       "9090"},
      {"policy changes: its group's sets are rebuilt",
       [](State* s) { s->policies["shop/web"].ingress[0].ports = {TcpPort(443)}; }, false,
       "443"},
      {"policy unrelated to local pods: nothing",
       [](State* s) {
         NetworkPolicy p = s->policies["shop/web"];
         p.namespace_name = "monitoring";
         Add(s, p);
       },
       true, ""},
  };
  for (const Row& row : rows) {
    State s1 = Shop();
    State s2 = s1;
    row.edit(&s2);
    IncrementalCompiler ic;
    ASSERT_TRUE(ic.Reset(s1, o).ok());
    nft::Transaction tx = CheckUpdate(&ic, s1, s2, o, row.name);
    EXPECT_EQ(OnlyElements(tx), row.elements_only) << row.name << "\n" << tx.ToNftText();
    if (row.must_contain.empty()) {
      EXPECT_TRUE(tx.empty()) << row.name << "\n" << tx.ToNftText();
    } else {
      EXPECT_NE(tx.ToNftText().find(row.must_contain), std::string::npos)
          << row.name << "\n" << tx.ToNftText();
    }
  }
}

// Namespaces a and b each have a policy allowing ingress from the pods of namespaces labelled
// team=blue (50 remote pods) on TCP 80; a has a local pod, b one when `b_local`.
State SharedSetState(bool b_local) {
  State s;
  Add(&s, MakeNamespace("a"));
  Add(&s, MakeNamespace("b"));
  Add(&s, MakeNamespace("crowd", {{"team", "blue"}}));
  for (int i = 0; i < 50; ++i) {
    Add(&s, MakePod("crowd", absl::StrCat("p", i), {}, "n2", {absl::StrCat("10.9.0.", i + 1)}));
  }
  for (const char* ns : {"a", "b"}) {
    NetworkPolicy p;
    p.namespace_name = ns;
    p.name = "from-blue";
    p.pod_selector = Sel({{"app", "web"}});
    p.ingress_type = true;
    Rule r;
    r.peers.push_back(testing::NamespacePeer(Sel({{"team", "blue"}})));
    r.ports.push_back(TcpPort(80));
    p.ingress.push_back(r);
    Add(&s, p);
  }
  Add(&s, MakePod("a", "web-1", {{"app", "web"}}, "n1", {"10.0.0.2"}));
  if (b_local) Add(&s, MakePod("b", "web-1", {{"app", "web"}}, "n1", {"10.0.0.3"}));
  return s;
}

// Sets are named after their content (RULESET.md "Sets shared by content"): a group that appears
// with the rules of an existing group in another namespace looks up the same set, so its
// transaction is its chain and dispatch entries, without a set or any of the 50 peer elements;
// and the set stays when that group goes.
TEST(IncrementalCompilerTest, AGroupWhoseSetsExistCostsItsChainOnly) {
  const CompileOptions o = Node("n1");
  const State one = SharedSetState(false), two = SharedSetState(true);
  absl::StatusOr<nft::Program> p = Compile(two, o);
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<std::string> group_sets;
  for (const auto& [name, chain] : p->chains) {
    if (!absl::StartsWith(name, "in-")) continue;
    for (const nft::Rule& rule : chain.rules) {
      for (const nft::Match& m : rule.matches) {
        if (const auto* l = std::get_if<nft::LookupMatch>(&m)) group_sets.push_back(l->set);
      }
    }
  }
  // Two chains, each looking up the same v4 and v6 sets.
  ASSERT_EQ(group_sets.size(), 4u) << nft::RenderProgram(*p);
  EXPECT_EQ(group_sets[0], group_sets[2]);
  EXPECT_EQ(group_sets[1], group_sets[3]);
  EXPECT_EQ(p->elements.at(group_sets[0]).size(), 50u);

  IncrementalCompiler ic;
  ASSERT_TRUE(ic.Reset(one, o).ok());
  for (const auto& [from, to, label] :
       {std::tuple(&one, &two, "b's group appears"), std::tuple(&two, &one, "b's group goes")}) {
    nft::Transaction tx = CheckUpdate(&ic, *from, *to, o, label);
    size_t chains = 0, sets = 0, elements = 0;
    for (const nft::Command& c : tx.commands()) {
      if (c.kind == nft::ObjectKind::kChain) {
        ++chains;
        EXPECT_TRUE(absl::StartsWith(c.chain.name, "in-b_from-blue-")) << label << " " << c.chain.name;
      }
      sets += c.kind == nft::ObjectKind::kSet;
      if (c.kind == nft::ObjectKind::kElement) elements += c.elements.size();
    }
    EXPECT_GE(chains, 1u) << label << "\n" << tx.ToNftText();
    EXPECT_EQ(sets, 0u) << label << "\n" << tx.ToNftText();
    EXPECT_EQ(elements, 2u) << label << "\n" << tx.ToNftText();  // dispatch and self
  }
}

// A set whose content no group has yet, made of parts that held sets hold alone, is filled from
// those sets (incremental.h): here b's policy allows from team=blue (a's set, held) and from
// team=red (not held) on TCP 80, and the same update changes team=blue's pods (one more, one
// gone) and, in turn, removes a's group (its set dies: b's union enumerates the blue pods) or
// adds a policy in c allowing from team=red alone (a fresh part). Each lands on Compile of the
// new State, with the union's elements in the transaction.
TEST(IncrementalCompilerTest, AUnionIsFilledFromTheSetsOfItsPartsAsOfTheNewState) {
  const CompileOptions o = Node("n1");
  const State base = SharedSetState(false);
  auto with_union = [&](bool a_local, bool c_policy) {
    State s = base;
    Add(&s, MakeNamespace("red", {{"team", "red"}}));
    for (int i = 0; i < 5; ++i) {
      Add(&s, MakePod("red", absl::StrCat("r", i), {}, "n2", {absl::StrCat("10.8.0.", i + 1)}));
    }
    s.pods.erase("crowd/p7");
    Add(&s, MakePod("crowd", "late", {}, "n3", {"10.9.1.1"}));
    NetworkPolicy p;
    p.namespace_name = "b";
    p.name = "from-blue-and-red";
    p.pod_selector = Sel({{"app", "web"}});
    p.ingress_type = true;
    Rule r;
    r.peers.push_back(testing::NamespacePeer(Sel({{"team", "blue"}})));
    r.peers.push_back(testing::NamespacePeer(Sel({{"team", "red"}})));
    r.ports.push_back(TcpPort(80));
    p.ingress.push_back(r);
    Add(&s, p);
    Add(&s, MakePod("b", "web-2", {{"app", "web"}}, "n1", {"10.0.0.4"}));
    if (!a_local) s.pods.erase("a/web-1");
    if (c_policy) {
      Add(&s, MakeNamespace("c"));
      NetworkPolicy q = p;
      q.namespace_name = "c";
      q.name = "from-red";
      q.ingress[0].peers.erase(q.ingress[0].peers.begin());
      Add(&s, q);
      Add(&s, MakePod("c", "web-1", {{"app", "web"}}, "n1", {"10.0.0.5"}));
    }
    return s;
  };
  for (const auto& [a_local, c_policy, label] :
       {std::tuple(true, false, "the part is held"), std::tuple(false, false, "the part's set dies"),
        std::tuple(true, true, "a part held, a part fresh")}) {
    const State next = with_union(a_local, c_policy);
    IncrementalCompiler ic;
    ASSERT_TRUE(ic.Reset(base, o).ok());
    nft::Transaction tx = CheckUpdate(&ic, base, next, o, label);
    size_t largest = 0;
    for (const nft::Command& c : tx.commands()) {
      if (c.kind == nft::ObjectKind::kElement) largest = std::max(largest, c.elements.size());
    }
    EXPECT_EQ(largest, 55u) << label << "\n" << tx.ToNftText();  // 50 blue pods, 5 red
    // And back.
    CheckUpdate(&ic, next, base, o, std::string(label) + ", back");
  }
}

TEST(IncrementalCompilerTest, ErrorsLeaveTheProgramUnchanged) {
  const CompileOptions o = Node("n1");
  State s1 = Shop();
  IncrementalCompiler ic;
  ASSERT_TRUE(ic.Reset(s1, o).ok());
  const nft::Program held = ic.program();
  State bad = s1;
  bad.policies["shop/web"].ingress[0].ports = {TcpPort(70000)};
  absl::StatusOr<nft::Transaction> tx = ic.Update(s1, bad, DiffStates(s1, bad), o);
  ASSERT_FALSE(tx.ok());
  EXPECT_NE(tx.status().message().find("networkpolicy shop/web: spec.ingress[0].ports[0].port"),
            std::string::npos)
      << tx.status();
  EXPECT_TRUE(ic.program() == held);
  // A peer pod whose named port is out of range, reached through an egress named port.
  State s2 = s1;
  NetworkPolicy eg;
  eg.namespace_name = "shop";
  eg.name = "eg";
  eg.pod_selector = Sel({{"app", "web"}});
  eg.egress_type = true;
  Rule r;
  r.peers.push_back(PodPeer(Sel({})));
  r.ports.push_back(NamedPort("pg"));
  eg.egress.push_back(r);
  Add(&s2, eg);
  ASSERT_TRUE(ic.Update(s1, s2, DiffStates(s1, s2), o).ok());
  const nft::Program held2 = ic.program();
  State s3 = s2;
  Add(&s3, MakePod("shop", "db", {{"app", "db"}}, "n2", {"10.0.1.5"}, {{"pg", 0, Protocol::kTCP}}));
  tx = ic.Update(s2, s3, DiffStates(s2, s3), o);
  ASSERT_FALSE(tx.ok());
  EXPECT_NE(tx.status().message().find("pod shop/db: containerPort pg/TCP"), std::string::npos)
      << tx.status();
  EXPECT_TRUE(ic.program() == held2);
  // Still usable: the next valid update lands exactly.
  State s4 = s2;
  Add(&s4, MakePod("shop", "db", {{"app", "db"}}, "n2", {"10.0.1.5"}, {{"pg", 5432, Protocol::kTCP}}));
  CheckUpdate(&ic, s2, s4, o, "after an error");
}

TEST(IncrementalCompilerTest, AttachedPodsAreIncrementalOtherOptionsCompileInFull) {
  State s = Shop();
  Add(&s, MakePod("shop", "web-3", {{"app", "web"}}, "", {"10.0.0.7"},
                  {{"http", 8080, Protocol::kTCP}}));
  IncrementalCompiler ic;
  ASSERT_TRUE(ic.Reset(s, Node("n1")).ok());
  CompileOptions attached = Node("n1");
  attached.attached_pods = {"shop/web-3"};
  absl::StatusOr<nft::Program> p1 = Compile(s, Node("n1"));
  absl::StatusOr<nft::Program> p2 = Compile(s, attached);
  ASSERT_TRUE(p1.ok() && p2.ok());
  absl::StatusOr<nft::Transaction> tx = ic.Update(s, s, Delta{}, attached);
  ASSERT_TRUE(tx.ok()) << tx.status();
  EXPECT_TRUE(ic.program() == *p2);
  EXPECT_NE(tx->ToNftText().find("10.0.0.7"), std::string::npos) << tx->ToNftText();
  EXPECT_TRUE(OnlyElements(*tx)) << tx->ToNftText();  // web-3 joins the existing group
  nft::FakeBackend fake;
  ASSERT_TRUE(fake.Commit(nft::FullReplace(*p1)).ok());
  ASSERT_TRUE(fake.Commit(*tx).ok());
  absl::StatusOr<nft::Program> dumped = fake.Dump(p2->table);
  ASSERT_TRUE(dumped.ok());
  EXPECT_EQ(nft::RenderProgram(*dumped), nft::RenderProgram(*p2));
  EXPECT_EQ(ic.stats().full_fallbacks, 0);
  // Another node: a full compile.
  State s2 = s;
  Add(&s2, MakePod("shop", "web-4", {{"app", "web"}}, "n2", {"10.0.0.8"}));
  CheckUpdate(&ic, s, s2, attached, Node("n2"), "another node");
  EXPECT_EQ(ic.stats().full_fallbacks, 1);
  // Then incremental again.
  State s3 = s2;
  s3.pods.erase("shop/web-4");
  CheckUpdate(&ic, s2, s3, Node("n2"), "after the fallback");
  EXPECT_EQ(ic.stats().full_fallbacks, 1);
}

TEST(IncrementalCompilerTest, UpdateWithoutResetFails) {
  IncrementalCompiler ic;
  State s;
  EXPECT_EQ(ic.Update(s, s, Delta{}, Node("n1")).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace netpol::compiler
