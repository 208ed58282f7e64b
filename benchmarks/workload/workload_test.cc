#include "benchmarks/workload/workload.h"

#include <set>
#include <string>

#include "absl/strings/match.h"
#include "engine/eval/eval.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace netpol::bench {
namespace {

State MustGenerate(const std::string& tier, uint64_t seed = 1) {
  absl::StatusOr<WorkloadSpec> spec = ParseTier(tier);
  EXPECT_TRUE(spec.ok()) << spec.status();
  spec->seed = seed;
  absl::StatusOr<State> state = Generate(*spec);
  EXPECT_TRUE(state.ok()) << state.status();
  return *state;
}

TEST(ParseTierTest, KnownTiersHaveTheIssueSizes) {
  struct Case {
    std::string name;
    int pods, namespaces, policies, local_pods;
  } cases[] = {
      {"T1", 1000, 50, 100, 110},       {"T2", 10000, 500, 1000, 110},
      {"T3", 3500, 1000, 12000, 110},   {"T4", 100000, 5000, 20000, 110},
      {"T2-dense", 10000, 500, 1000, 500},
  };
  for (const Case& c : cases) {
    absl::StatusOr<WorkloadSpec> spec = ParseTier(c.name);
    ASSERT_TRUE(spec.ok()) << c.name << ": " << spec.status();
    EXPECT_EQ(spec->pods, c.pods) << c.name;
    EXPECT_EQ(spec->namespaces, c.namespaces) << c.name;
    EXPECT_EQ(spec->policies, c.policies) << c.name;
    EXPECT_EQ(spec->local_pods, c.local_pods) << c.name;
  }
}

TEST(ParseTierTest, VariantsCombine) {
  absl::StatusOr<WorkloadSpec> spec = ParseTier("T1-cidr-ranges-unique-dual");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->ipblocks, 10000);
  EXPECT_TRUE(spec->port_ranges);
  EXPECT_TRUE(spec->unique_labels);
  EXPECT_TRUE(spec->dual_stack);
}

TEST(ParseTierTest, UnknownNamesAreErrorsNamingThePart) {
  absl::StatusOr<WorkloadSpec> a = ParseTier("T9");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("unknown tier \"T9\""), std::string::npos) << a.status();
  absl::StatusOr<WorkloadSpec> b = ParseTier("T1-huge");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("unknown variant \"huge\""), std::string::npos)
      << b.status();
}

TEST(GenerateTest, InvalidSpecsAreErrors) {
  WorkloadSpec spec;
  spec.local_pods = 5000;
  EXPECT_FALSE(Generate(spec).ok());
  spec = WorkloadSpec();
  spec.namespaces = 0;
  EXPECT_FALSE(Generate(spec).ok());
  spec = WorkloadSpec();
  spec.pods = 100;
  spec.local_pods = 200;
  EXPECT_FALSE(Generate(spec).ok());
}

TEST(GenerateTest, T1MatchesItsSpec) {
  State s = MustGenerate("T1");
  WorkloadStats st = Stats(s);
  EXPECT_EQ(st.pods, 1000);
  EXPECT_EQ(st.namespaces, 50);
  EXPECT_EQ(st.policies, 100);
  EXPECT_EQ(st.local_pods, 110);
  EXPECT_EQ(st.nodes, 1 + (1000 - 110 + 109) / 110);
  // One default deny per namespace, then the mix.
  int deny = 0;
  for (const auto& [k, p] : s.policies) deny += p.name == "default-deny";
  EXPECT_EQ(deny, 50);
  EXPECT_GT(st.egress_policies, 0);
  EXPECT_GT(st.ipblock_peers, 0);
  EXPECT_GT(st.named_ports, 0);
  EXPECT_GT(st.port_ranges, 0);
}

TEST(GenerateTest, AddressesAreUniqueAndNodesFull) {
  State s = MustGenerate("T2-dense-dual");
  std::set<std::string> addrs;
  std::map<std::string, int> per_node;
  for (const auto& [k, pod] : s.pods) {
    ASSERT_EQ(pod.ips.size(), 2u) << k;
    for (const IpAddr& a : pod.ips) EXPECT_TRUE(addrs.insert(a.ToString()).second) << k;
    ++per_node[pod.node_name];
  }
  EXPECT_EQ(per_node[kMeasuredNode], 500);
  for (const auto& [node, n] : per_node) EXPECT_LE(n, 500) << node;
}

TEST(GenerateTest, SameSeedSameStateOtherSeedOtherState) {
  EXPECT_EQ(MustGenerate("T1", 7), MustGenerate("T1", 7));
  EXPECT_FALSE(MustGenerate("T1", 7) == MustGenerate("T1", 8));
}

TEST(GenerateTest, CidrHeavyCarriesTenThousandBlocks) {
  State s = MustGenerate("T2-cidr");
  int blocks = 0;
  std::set<std::string> cidrs;
  for (const auto& [k, p] : s.policies) {
    if (!absl::StartsWith(p.name, "allow-ipblock")) continue;
    for (const Rule& r : p.ingress) {
      for (const Peer& peer : r.peers) {
        ASSERT_TRUE(peer.ip_block.has_value()) << k;
        ++blocks;
        cidrs.insert(peer.ip_block->cidr.ToString());
      }
    }
  }
  EXPECT_EQ(blocks, 10000);
  EXPECT_EQ(cidrs.size(), 10000u);
}

TEST(GenerateTest, YamlRoundTripsThroughTheLoader) {
  for (const char* tier : {"T1", "T1-ranges-unique-dual"}) {
    State s = MustGenerate(tier);
    absl::StatusOr<LoadResult> loaded = LoadYaml(StateToYaml(s));
    ASSERT_TRUE(loaded.ok()) << tier << ": " << loaded.status();
    State back;
    for (const Object& o : loaded->objects) Upsert(o, &back);
    EXPECT_TRUE(back == s) << tier;
  }
}

TEST(EventsTest, EventPodsAreNewAndJoinExistingApps) {
  State s = MustGenerate("T1");
  std::set<std::string> apps;
  for (const auto& [k, pod] : s.pods) {
    auto it = pod.labels.find("app");
    if (it != pod.labels.end()) apps.insert(pod.namespace_name + "/" + it->second);
  }
  std::set<std::string> addrs;
  for (uint64_t n = 0; n < 200; ++n) {
    Pod p = EventPod(s, n, kMeasuredNode);
    EXPECT_EQ(s.FindPod(p.Key()), nullptr) << p.Key();
    EXPECT_TRUE(apps.count(p.namespace_name + "/" + p.labels.at("app"))) << p.Key();
    EXPECT_EQ(s.FindPodByIp(p.ips[0]), nullptr) << p.Key();
    EXPECT_TRUE(addrs.insert(p.ips[0].ToString()).second);
    EXPECT_TRUE(EventPod(s, n, kMeasuredNode) == p);
  }
}

TEST(EventsTest, RelabelChangesTheAppAndPolicyNamesAreFresh) {
  State s = MustGenerate("T1");
  const Pod& pod = s.pods.begin()->second;
  EXPECT_NE(RelabeledPod(pod, 0).labels, pod.labels);
  absl::StatusOr<WorkloadSpec> spec = ParseTier("T1");
  for (uint64_t n = 0; n < 50; ++n) {
    NetworkPolicy p = EventPolicy(s, *spec, n);
    EXPECT_EQ(s.policies.count(p.Key()), 0u) << p.Key();
    EXPECT_TRUE(p.ingress_type || p.egress_type) << p.Key();
  }
}

TEST(DatapathStateTest, OnlyTheLastPolicyAllowsTheClient) {
  for (int policies : {1, 4, 100}) {
    absl::StatusOr<State> s = DatapathState(policies, 200, 1);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->policies.size(), static_cast<size_t>(policies));
    const Pod* client = s->FindPod("dp-client/client");
    const Pod* server = s->FindPod("dp-server/server");
    ASSERT_NE(client, nullptr);
    ASSERT_NE(server, nullptr);
    Decision d = Decide(*s, Endpoint::ForPod(*client), Endpoint::ForPod(*server), Family::kV4,
                        Protocol::kTCP, kDatapathPort);
    EXPECT_TRUE(d.allowed) << d.Explain();
    ASSERT_EQ(d.ingress.allowing_rules.size(), 1u) << d.Explain();
    EXPECT_NE(d.ingress.allowing_rules[0].policy.find("allow-client"), std::string::npos);
    EXPECT_EQ(d.ingress.isolating_policies.size(), static_cast<size_t>(policies));
    // Another port is denied: the server really is isolated.
    Decision other = Decide(*s, Endpoint::ForPod(*client), Endpoint::ForPod(*server),
                            Family::kV4, Protocol::kTCP, 9999);
    EXPECT_FALSE(other.allowed) << other.Explain();
  }
}

TEST(DatapathStateTest, ZeroPoliciesLeavesTheServerOpen) {
  absl::StatusOr<State> s = DatapathState(0, 10, 1);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->policies.empty());
  EXPECT_FALSE(DatapathState(-1, 10, 1).ok());
}

}  // namespace
}  // namespace netpol::bench
