// The ClusterNetworkPolicy tiers of the compiled program (cluster.h, RULESET.md "ClusterNetworkPolicy
// tiers"): the first-match partition, the layout (a tier costs a fixed number of rules whatever
// the number of CNPs and rules), the dispatch and self entries of tiered pods, and validation.
#include "engine/compiler/cluster.h"

#include <functional>
#include <iostream>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/incremental.h"
#include "engine/compiler/testutil.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

using internal::FirstMatch;
using internal::ValuedBox;
using testing::Add;
using testing::CidrOf;
using testing::Ip;
using testing::MakeNamespace;
using testing::MakePod;
using testing::Sel;

Box B(std::vector<std::pair<int, int>> spans) {
  Box b;
  for (auto [lo, hi] : spans) b.push_back({static_cast<U128>(lo), static_cast<U128>(hi)});
  return b;
}

TEST(FirstMatchTest, EarlierBoxesWinWhereTheyOverlap) {
  // Deny 0-10 x any; then Accept 5-20 x 80; then Pass everything.
  const std::vector<U128> dims = {100, 65535};
  const std::vector<ValuedBox> got =
      FirstMatch({{B({{0, 10}, {0, 65535}}), 1}, {B({{5, 20}, {80, 80}}), 0},
                  {B({{0, 100}, {0, 65535}}), 2}},
                 dims);
  const std::vector<ValuedBox> want = {
      {B({{0, 10}, {0, 65535}}), 1},
      {B({{11, 20}, {0, 79}}), 2},
      {B({{11, 20}, {80, 80}}), 0},
      {B({{11, 20}, {81, 65535}}), 2},
      {B({{21, 100}, {0, 65535}}), 2},
  };
  EXPECT_EQ(got, want);
}

TEST(FirstMatchTest, DependsOnThePointMapOnly) {
  // The same function split differently gives the same boxes; a later box that an earlier one
  // covers entirely leaves no trace.
  const std::vector<U128> dims = {255, 255};
  const auto a = FirstMatch({{B({{0, 9}, {0, 255}}), 0}, {B({{10, 19}, {0, 255}}), 0},
                             {B({{0, 19}, {0, 255}}), 1}},
                            dims);
  const auto b = FirstMatch({{B({{0, 19}, {0, 255}}), 0}, {B({{3, 4}, {7, 7}}), 1}}, dims);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(FirstMatch({}, dims).empty());
}

// Namespace x: pods web (local on n1) and db (remote); ns y: pod c (remote).
State Cluster() {
  State s;
  Add(&s, MakeNamespace("x", {{"env", "prod"}}));
  Add(&s, MakeNamespace("y"));
  Add(&s, MakePod("x", "web", {{"app", "web"}}, "n1", {"10.0.0.2", "fd00::2"},
                  {{"http", 8080, Protocol::kTCP}}));
  Add(&s, MakePod("x", "db", {{"app", "db"}}, "n2", {"10.0.1.5", "fd00::1:5"}));
  Add(&s, MakePod("y", "c", {}, "n2", {"10.0.1.9"}));
  return s;
}

ClusterNetworkPolicy Guard(const std::string& name, CnpTier tier, int32_t priority,
                           CnpAction action, int32_t port) {
  ClusterNetworkPolicy c;
  c.name = name;
  c.tier = tier;
  c.priority = priority;
  c.subject.namespaces = Sel({{"env", "prod"}});
  CnpRule r;
  r.action = action;
  CnpPeer p;
  p.namespaces = LabelSelector();
  r.peers.push_back(p);
  CnpPort pp;
  pp.protocol = Protocol::kTCP;
  pp.port = port;
  r.ports.push_back(pp);
  c.ingress.push_back(r);
  c.egress.push_back(r);
  return c;
}

CompileOptions N1() {
  CompileOptions o;
  o.node_name = "n1";
  return o;
}

const nft::Chain* ChainStartingWith(const nft::Program& p, const std::string& prefix) {
  for (const auto& [name, chain] : p.chains) {
    if (absl::StartsWith(name, prefix)) return &chain;
  }
  return nullptr;
}

TEST(ClusterTiersTest, ATierCostsFourRulesWhateverTheNumberOfPolicies) {
  // One CNP, then 200 CNPs of several priorities with alternating actions: the tier chain of
  // the local pod has the same rules (an Accept and a Deny lookup per family), only the
  // elements grow.
  size_t rules[2] = {0, 0};
  size_t elements[2] = {0, 0};
  for (int round = 0; round < 2; ++round) {
    State s = Cluster();
    const int n = round == 0 ? 1 : 200;
    for (int i = 0; i < n; ++i) {
      ClusterNetworkPolicy c =
          Guard(absl::StrCat("g", i), CnpTier::kAdmin, i % 7,
                i % 2 == 0 ? CnpAction::kDeny : CnpAction::kAccept, 1000 + i);
      s.cluster_policies[c.name] = c;
    }
    absl::StatusOr<nft::Program> p = Compile(s, N1());
    ASSERT_TRUE(p.ok()) << p.status();
    const nft::Chain* in = ChainStartingWith(*p, "cin-g0-");
    ASSERT_NE(in, nullptr) << nft::RenderProgram(*p);
    rules[round] = in->rules.size();
    for (const nft::Rule& r : in->rules) {
      for (const nft::Match& m : r.matches) {
        const auto* lookup = std::get_if<nft::LookupMatch>(&m);
        if (lookup == nullptr) continue;
        auto els = p->elements.find(lookup->set);
        if (els != p->elements.end()) elements[round] += els->second.size();
      }
    }
  }
  EXPECT_EQ(rules[0], 4u);
  EXPECT_EQ(rules[1], 4u);
  EXPECT_GT(elements[1], elements[0]);
}

// 1,000 CNPs in each tier over 400 pods in 20 namespaces: every tier chain still has at most
// four lookups per tier, and the program loads (sizes printed, nothing timed is asserted).
TEST(ClusterTiersTest, AThousandPoliciesPerTier) {
  State s;
  for (int n = 0; n < 20; ++n) {
    Add(&s, MakeNamespace(absl::StrCat("ns", n), {{"env", n % 2 == 0 ? "prod" : "dev"}}));
    for (int p = 0; p < 20; ++p) {
      const int i = n * 20 + p;
      Add(&s, MakePod(absl::StrCat("ns", n), absl::StrCat("p", p), {{"app", absl::StrCat("a", p % 4)}},
                      p % 5 == 0 ? "n1" : "n2",
                      {absl::StrCat("10.1.", i / 250, ".", i % 250 + 1),
                       absl::StrCat("fd00:1::", i + 1)}));
    }
  }
  for (int tier = 0; tier < 2; ++tier) {
    for (int i = 0; i < 1000; ++i) {
      ClusterNetworkPolicy c;
      c.name = absl::StrCat(tier == 0 ? "admin-" : "base-", i);
      c.tier = tier == 0 ? CnpTier::kAdmin : CnpTier::kBaseline;
      c.priority = i % 100;
      c.subject.namespaces = Sel({{"env", i % 3 == 0 ? "dev" : "prod"}});
      CnpRule in;
      in.action = i % 3 == 0 ? CnpAction::kAccept : i % 3 == 1 ? CnpAction::kDeny : CnpAction::kPass;
      CnpPeer from;
      from.namespaces = Sel({{kNamespaceNameLabel, absl::StrCat("ns", i % 20)}});
      in.peers.push_back(from);
      CnpPort port;
      port.protocol = Protocol::kTCP;
      port.port = 1000 + i;
      in.ports.push_back(port);
      c.ingress.push_back(in);
      CnpRule out = in;
      out.peers[0] = CnpPeer();
      out.peers[0].networks.push_back(CidrOf(absl::StrCat("172.", 16 + i % 16, ".", i % 256, ".0/24")));
      c.egress.push_back(out);
      s.cluster_policies[c.name] = c;
    }
  }
  const auto start = absl::Now();
  absl::StatusOr<nft::Program> p = Compile(s, N1());
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(p.ok()) << p.status();
  size_t tier_chains = 0, elements = 0;
  for (const auto& [name, chain] : p->chains) {
    if (!absl::StartsWith(name, "cin-") && !absl::StartsWith(name, "ceg-")) continue;
    ++tier_chains;
    EXPECT_LE(chain.rules.size(), 8u) << name;
  }
  for (const auto& [name, els] : p->elements) elements += els.size();
  EXPECT_EQ(tier_chains, 4u);  // (dev, prod) x (ingress, egress)
  std::cout << tier_chains << " tier chains, " << elements << " elements, compiled in " << took
            << "\n";
}

TEST(ClusterTiersTest, TieredPodsAreDispatchedToTheirTierChainAndReachThemselves) {
  State s = Cluster();
  ClusterNetworkPolicy admin = Guard("a", CnpTier::kAdmin, 10, CnpAction::kDeny, 80);
  ClusterNetworkPolicy base = Guard("b", CnpTier::kBaseline, 10, CnpAction::kAccept, 81);
  s.cluster_policies["a"] = admin;
  s.cluster_policies["b"] = base;
  absl::StatusOr<nft::Program> p = Compile(s, N1());
  ASSERT_TRUE(p.ok()) << p.status();
  const nft::Chain* eg = ChainStartingWith(*p, "ceg-a-");
  ASSERT_NE(eg, nullptr);
  // Admin Accept/Deny per family, then (not isolated by NetworkPolicy) Baseline likewise.
  ASSERT_EQ(eg->rules.size(), 8u);
  EXPECT_EQ(eg->rules[1].verdict, nft::Verdict::Drop());
  EXPECT_EQ(eg->rules[0].verdict, nft::Verdict::Return());
  const std::vector<nft::Element>& d4 = p->elements.at(kEgressDispatchV4);
  ASSERT_EQ(d4.size(), 1u);
  EXPECT_EQ(d4[0].verdict, nft::Verdict::Jump(eg->name));
  EXPECT_EQ(p->elements.at(kSelfV4).size(), 1u);
  EXPECT_EQ(p->elements.at(kSelfV6).size(), 1u);

  // A NetworkPolicy isolating web for egress: the Baseline tier gives way to its group chain.
  NetworkPolicy np;
  np.namespace_name = "x";
  np.name = "deny";
  np.egress_type = true;
  Add(&s, np);
  p = Compile(s, N1());
  ASSERT_TRUE(p.ok()) << p.status();
  eg = ChainStartingWith(*p, "ceg-a-");
  ASSERT_NE(eg, nullptr);
  ASSERT_EQ(eg->rules.size(), 5u);
  ASSERT_TRUE(eg->rules[4].verdict.has_value());
  EXPECT_EQ(eg->rules[4].verdict->kind, nft::Verdict::Kind::kJump);
  EXPECT_TRUE(absl::StartsWith(eg->rules[4].verdict->chain, "eg-x_deny-"));
}

// The set names a chain's rules look up, in order.
std::vector<std::string> LookedUp(const nft::Chain& chain) {
  std::vector<std::string> out;
  for (const nft::Rule& r : chain.rules) {
    for (const nft::Match& m : r.matches) {
      if (const auto* lookup = std::get_if<nft::LookupMatch>(&m)) out.push_back(lookup->set);
    }
  }
  return out;
}

TEST(ClusterTiersTest, TierChainsWithTheSameTierContentShareItsSets) {
  // web and api (both local, both under Admin "a"): web is isolated by a NetworkPolicy, api is
  // not, so they have tier chains of their own; their Admin tier is the same content and looks
  // up the same four sets, which the program holds once.
  State s = Cluster();
  Add(&s, MakePod("x", "api", {{"app", "api"}}, "n1", {"10.0.0.3", "fd00::3"}));
  NetworkPolicy np;
  np.namespace_name = "x";
  np.name = "web";
  np.pod_selector = Sel({{"app", "web"}});
  np.ingress_type = true;
  Add(&s, np);
  s.cluster_policies["a"] = Guard("a", CnpTier::kAdmin, 10, CnpAction::kDeny, 80);
  absl::StatusOr<nft::Program> p = Compile(s, N1());
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<const nft::Chain*> ingress;
  for (const auto& [name, chain] : p->chains) {
    if (absl::StartsWith(name, "cin-")) ingress.push_back(&chain);
  }
  ASSERT_EQ(ingress.size(), 2u) << nft::RenderProgram(*p);
  const std::vector<std::string> a = LookedUp(*ingress[0]), b = LookedUp(*ingress[1]);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a, b);
  for (const std::string& set : a) EXPECT_TRUE(absl::StartsWith(set, "cin-set-")) << set;
  size_t tier_sets = 0;
  for (const auto& [name, set] : p->sets) tier_sets += absl::StartsWith(name, "cin-set-") ? 1 : 0;
  EXPECT_EQ(tier_sets, 4u);
  // 10.0.0.2-3 and fd00::2-3 deny tcp/80 from every pod: the Deny sets hold the pods' addresses.
  EXPECT_FALSE(p->elements[a[1]].empty());
}

TEST(ClusterTiersTest, ADirectionWithoutRulesGetsNoTierChain) {
  // Admin "a" and Baseline "b" have ingress rules only: web gets an ingress tier chain, and its
  // egress keeps the plain dispatch (none; then, isolated by a NetworkPolicy, its group chain).
  State s = Cluster();
  for (ClusterNetworkPolicy c : {Guard("a", CnpTier::kAdmin, 10, CnpAction::kDeny, 80),
                                 Guard("b", CnpTier::kBaseline, 10, CnpAction::kDeny, 81)}) {
    c.egress.clear();
    s.cluster_policies[c.name] = c;
  }
  absl::StatusOr<nft::Program> p = Compile(s, N1());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NE(ChainStartingWith(*p, "cin-a-"), nullptr);
  EXPECT_EQ(ChainStartingWith(*p, "ceg-"), nullptr) << nft::RenderProgram(*p);
  EXPECT_EQ(p->elements.count(kEgressDispatchV4), 0u);
  NetworkPolicy np;
  np.namespace_name = "x";
  np.name = "deny";
  np.egress_type = true;
  Add(&s, np);
  p = Compile(s, N1());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ChainStartingWith(*p, "ceg-"), nullptr) << nft::RenderProgram(*p);
  const std::vector<nft::Element>& d4 = p->elements.at(kEgressDispatchV4);
  ASSERT_EQ(d4.size(), 1u);
  ASSERT_TRUE(d4[0].verdict.has_value());
  EXPECT_TRUE(absl::StartsWith(d4[0].verdict->chain, "eg-x_deny-"));
  // An Admin CNP with egress rules only, over the Baseline one with ingress rules only: each
  // direction's tier chain holds the tier that has rules there, nothing else.
  ClusterNetworkPolicy out = Guard("c", CnpTier::kAdmin, 5, CnpAction::kDeny, 82);
  out.ingress.clear();
  s.cluster_policies.erase("a");
  s.cluster_policies["c"] = out;
  s.policies.clear();
  p = Compile(s, N1());
  ASSERT_TRUE(p.ok()) << p.status();
  const nft::Chain* in = ChainStartingWith(*p, "cin-");
  const nft::Chain* eg = ChainStartingWith(*p, "ceg-");
  ASSERT_NE(in, nullptr);
  ASSERT_NE(eg, nullptr);
  EXPECT_TRUE(absl::StartsWith(in->name, "cin-b-")) << in->name;
  EXPECT_TRUE(absl::StartsWith(eg->name, "ceg-c-")) << eg->name;
  EXPECT_EQ(in->rules.size(), 4u);
  EXPECT_EQ(eg->rules.size(), 4u);
  // Each looks up its one tier's sets only.
  for (const nft::Chain* c : {in, eg}) {
    for (const nft::Rule& r : c->rules) {
      ASSERT_EQ(r.matches.size(), 1u);
      const auto* lookup = std::get_if<nft::LookupMatch>(&r.matches[0]);
      ASSERT_NE(lookup, nullptr);
      const std::string tier = lookup->set.substr(lookup->set.size() - 3, 1);
      EXPECT_EQ(tier, c == in ? "b" : "a") << lookup->set;
    }
  }
}

TEST(ClusterTiersTest, DenyLogsGoThroughATierDenyLogChainAndAllowsPayNothing) {
  State s = Cluster();
  s.cluster_policies["a"] = Guard("a", CnpTier::kAdmin, 10, CnpAction::kDeny, 80);
  s.cluster_policies["b"] = Guard("b", CnpTier::kBaseline, 10, CnpAction::kDeny, 81);
  s.cluster_policies["b"].ingress.push_back(s.cluster_policies["b"].ingress[0]);
  s.cluster_policies["b"].ingress[0].action = CnpAction::kAccept;
  CompileOptions logged = N1();
  logged.deny_log = CompileOptions::DenyLog{100, 10, 20, 128};
  absl::StatusOr<nft::Program> plain = Compile(s, N1());
  absl::StatusOr<nft::Program> p = Compile(s, logged);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(p.ok()) << p.status();
  const nft::Chain* in = ChainStartingWith(*p, "cin-a-");
  const nft::Chain* plain_in = ChainStartingWith(*plain, "cin-a-");
  ASSERT_NE(in, nullptr);
  ASSERT_NE(plain_in, nullptr);
  // The tier chain has the same lookups either way; only a Deny lookup's verdict differs.
  ASSERT_EQ(in->rules.size(), plain_in->rules.size());
  ASSERT_EQ(in->rules.size(), 8u);
  for (size_t i = 0; i < in->rules.size(); ++i) {
    EXPECT_EQ(in->rules[i].matches, plain_in->rules[i].matches) << i;
    EXPECT_EQ(in->rules[i].comment, plain_in->rules[i].comment) << i;
    EXPECT_FALSE(in->rules[i].log.has_value()) << i;
    const bool deny = i % 2 == 1;
    EXPECT_EQ(plain_in->rules[i].verdict, deny ? nft::Verdict::Drop() : nft::Verdict::Return());
    const std::string log_chain = in->name + (i < 4 ? "-adl" : "-bdl");
    EXPECT_EQ(in->rules[i].verdict, deny ? nft::Verdict::Goto(log_chain) : nft::Verdict::Return())
        << i;
  }
  EXPECT_EQ(in->rules[0].comment, "Admin tier Accept: no rule");
  EXPECT_EQ(in->rules[1].comment, "Admin tier Deny: a ingress[0]");
  EXPECT_EQ(in->rules[4].comment, "Baseline tier Accept: b ingress[0]");
  EXPECT_EQ(in->rules[5].comment, "Baseline tier Deny: b ingress[1]");
  for (const char* suffix : {"-adl", "-bdl"}) {
    const std::string name = in->name + suffix;
    ASSERT_EQ(p->chains.count(name), 1u) << name;
    const nft::Chain& log = p->chains.at(name);
    ASSERT_EQ(log.rules.size(), 2u);
    ASSERT_TRUE(log.rules[0].log.has_value());
    EXPECT_EQ(log.rules[0].log->prefix, "deny " + name);
    EXPECT_EQ(log.rules[0].log->group, 100);
    EXPECT_EQ(log.rules[0].limit, (nft::LimitStmt{10, 20}));
    EXPECT_EQ(log.rules[0].verdict, nft::Verdict::Drop());
    EXPECT_TRUE(log.rules[1].counter);
    EXPECT_FALSE(log.rules[1].limit.has_value());
    EXPECT_EQ(log.rules[1].verdict, nft::Verdict::Drop());
    EXPECT_TRUE(absl::StartsWith(log.rules[1].comment, "over the log limit: ")) << log.rules[1].comment;
  }
  EXPECT_EQ(plain->chains.count(plain_in->name + "-adl"), 0u);
  for (const auto& [name, chain] : p->chains) {
    for (const nft::Rule& r : chain.rules) {
      EXPECT_TRUE(nft::ValidateRuleShape(r).ok()) << name << ": " << nft::ValidateRuleShape(r);
    }
  }
}

TEST(ClusterTiersTest, RuleSourcesNameTheTierThePolicyAndTheRule) {
  State s = Cluster();
  ClusterNetworkPolicy a = Guard("a", CnpTier::kAdmin, 10, CnpAction::kDeny, 80);
  a.ingress.push_back(a.ingress[0]);
  a.ingress[1].action = CnpAction::kAccept;
  a.ingress[1].name = "let-in";
  a.ingress[0].name = "keep-out";
  s.cluster_policies["a"] = a;
  NetworkPolicy np;
  np.namespace_name = "x";
  np.name = "deny";
  np.ingress_type = true;
  Add(&s, np);
  CompileOptions o = N1();
  o.rule_counters = true;
  IncrementalCompiler c;
  ASSERT_TRUE(c.Reset(s, o).ok());
  const nft::Chain* in = ChainStartingWith(c.program(), "cin-a-");
  ASSERT_NE(in, nullptr);
  const std::map<std::string, GroupRuleSources> all = c.RuleSources();
  ASSERT_EQ(all.count(in->name), 1u);
  const GroupRuleSources& src = all.at(in->name);
  EXPECT_TRUE(src.ingress);
  EXPECT_TRUE(src.policies.empty());
  ASSERT_EQ(src.tier_rules.size(), in->rules.size());
  ASSERT_EQ(src.rules.size(), in->rules.size());
  ASSERT_EQ(in->rules.size(), 5u);  // Admin Accept/Deny per family, the jump to the group chain
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(in->rules[i].counter);
    ASSERT_EQ(src.tier_rules[i].size(), 1u) << i;
    const TierRuleSource& r = src.tier_rules[i][0];
    EXPECT_EQ(r.tier, CnpTier::kAdmin);
    EXPECT_EQ(r.policy, "a");
    EXPECT_EQ(r.priority, 10);
    const bool deny = i % 2 == 1;
    EXPECT_EQ(r.rule, deny ? 0 : 1);
    EXPECT_EQ(r.name, deny ? "keep-out" : "let-in");
    EXPECT_EQ(r.action, deny ? CnpAction::kDeny : CnpAction::kAccept);
  }
  EXPECT_TRUE(src.tier_rules[4].empty());
  // The group chain behind it keeps its own sources.
  ASSERT_TRUE(in->rules[4].verdict.has_value());
  ASSERT_EQ(all.count(in->rules[4].verdict->chain), 1u);
  EXPECT_TRUE(all.at(in->rules[4].verdict->chain).tier_rules.empty());
}

TEST(ClusterTiersTest, InvalidClusterNetworkPoliciesAreRefusedNamingTheField) {
  struct Row {
    std::function<void(ClusterNetworkPolicy*)> edit;
    std::string want;
  };
  const std::vector<Row> rows = {
      {[](ClusterNetworkPolicy* c) { c->priority = 1001; }, "g: spec.priority: 1001"},
      {[](ClusterNetworkPolicy* c) { c->egress[0].ports[0].port = 0; },
       "g: spec.egress[0].protocols[0]: port 0"},
      {[](ClusterNetworkPolicy* c) { c->ingress[0].ports[0].end_port = 70; },
       "g: spec.ingress[0].protocols[0]: range 80-70"},
      {[](ClusterNetworkPolicy* c) { c->ingress[0].peers[0].networks.push_back(CidrOf("10.0.0.0/8")); },
       "g: spec.ingress[0].from[0]: exactly one"},
      {[](ClusterNetworkPolicy* c) {
         c->ingress[0].peers[0] = CnpPeer();
         c->ingress[0].peers[0].networks.push_back(CidrOf("10.0.0.0/8"));
       },
       "g: spec.ingress[0].from[0]: nodes and networks are egress peers only"},
      {[](ClusterNetworkPolicy* c) { c->egress[0].peers.clear(); }, "g: spec.egress[0].to: must not"},
      {[](ClusterNetworkPolicy* c) { c->subject = CnpPeer(); }, "g: spec.subject: exactly one"},
  };
  for (const Row& row : rows) {
    State s = Cluster();
    ClusterNetworkPolicy c = Guard("g", CnpTier::kAdmin, 1, CnpAction::kDeny, 80);
    row.edit(&c);
    s.cluster_policies["g"] = c;
    absl::StatusOr<nft::Program> p = Compile(s, N1());
    ASSERT_FALSE(p.ok()) << row.want;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(p.status().message(), absl::StrCat("clusternetworkpolicy ", row.want)))
        << p.status();
    EXPECT_EQ(ValidateObject(c).message(), p.status().message());
  }
}

}  // namespace
}  // namespace netpol::compiler
