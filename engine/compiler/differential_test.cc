// The userspace differential test: on many seeded random clusters, the programs
// compiled for each node (and those reached by chains of incremental updates), run through the packet tracer along the path a packet
// really takes (source node's forward or input hook, then the destination
// node's), must allow exactly the connections the reference evaluator
// (engine/eval) allows.
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/delta.h"
#include "engine/compiler/incremental.h"
#include "engine/compiler/testutil.h"
#include "engine/eval/eval.h"
#include "engine/model/loader.h"
#include "engine/trace/tracer.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

using testing::Ip;
using testing::NodeAddr;
using trace::Packet;
using trace::Trace;
using trace::TraceResult;

const char* const kNodes[2] = {"n1", "n2"};

// One end of a flow and where it lives.
struct End {
  enum class Kind { kPod, kHost, kExternal };
  Kind kind = Kind::kExternal;
  const Pod* pod = nullptr;  // kPod, and kHost for hostNetwork pods
  int node = -1;             // kPod / kHost
  IpAddr addr;
  std::string Name() const {
    return pod != nullptr ? absl::StrCat(pod->Key(), " ", addr.ToString()) : addr.ToString();
  }
  Endpoint ForEval() const {
    return pod != nullptr ? Endpoint::ForPod(*pod) : Endpoint::ForAddress(addr);
  }
};

int NodeIndex(const std::string& name) {
  return name == kNodes[0] ? 0 : name == kNodes[1] ? 1 : -1;
}

std::vector<End> Ends(const State& state, Family family) {
  std::vector<End> ends;
  for (const auto& [key, pod] : state.pods) {
    for (const IpAddr& ip : pod.ips) {
      if (ip.family != family) continue;
      End e;
      e.kind = pod.host_network ? End::Kind::kHost : End::Kind::kPod;
      e.pod = &pod;
      e.node = NodeIndex(pod.node_name);
      e.addr = ip;
      ends.push_back(e);
    }
  }
  for (int n = 0; n < 2; ++n) {
    End e;
    e.kind = End::Kind::kHost;
    e.node = n;
    e.addr = NodeAddr(n, family);
    ends.push_back(e);
  }
  const std::vector<std::string> external =
      family == Family::kV4
          ? std::vector<std::string>{"10.0.2.7", "10.0.1.5", "203.0.113.9", "8.8.8.8"}
          : std::vector<std::string>{"fd00::2:7", "fd00::1:5", "2001:db8::1"};
  for (const std::string& a : external) {
    End e;
    e.addr = Ip(a);
    if (state.FindPodByIp(e.addr) != nullptr) continue;  // generated pods may own it
    ends.push_back(e);
  }
  return ends;
}

struct Hop {
  int node;
  const char* chain;
};

// The hooks a new connection's first packet crosses on the nodes we enforce on.
// Returns false for flows that never leave one node's own stack (node-local
// traffic is not filtered).
bool Path(const End& src, const End& dst, std::vector<Hop>* hops) {
  hops->clear();
  if (src.kind == End::Kind::kPod) {
    if (dst.kind == End::Kind::kHost && dst.node == src.node) {
      hops->push_back({src.node, kInputChain});
      return true;
    }
    hops->push_back({src.node, kForwardChain});
  } else if (src.kind == End::Kind::kHost) {
    if (dst.kind != End::Kind::kExternal && dst.node == src.node) return false;
  } else if (dst.kind == End::Kind::kExternal) {
    return false;
  }
  if (dst.kind == End::Kind::kPod && dst.node != src.node) {
    hops->push_back({dst.node, kForwardChain});
  }
  if (dst.kind == End::Kind::kPod) {
    // Ingress: after source NAT, on the way out to the pod.
    hops->push_back({dst.node, kPostroutingChain});
  } else if (dst.kind == End::Kind::kHost && dst.node != src.node) {
    hops->push_back({dst.node, kInputChain});
  }
  return true;
}

struct Stats {
  int flows = 0;
  // Sides decided by a ClusterNetworkPolicy rule, by tier (0 Admin, 1 Baseline) and verdict.
  int tier_sides[2][2] = {{0, 0}, {0, 0}};
  int passed = 0;  // sides a Pass rule handed on
  int policed = 0;          // a side is isolated
  int policed_allowed = 0;  // ... and the connection is allowed anyway
  int large_rules = 0;      // port sets of large rules (RULESET.md) in the programs
};

CompileOptions NodeOptions(int n) {
  CompileOptions opts;
  opts.node_name = kNodes[n];
  return opts;
}

// Traces every flow of `state` through `programs` (one per node) and compares with the evaluator.
void CheckPrograms(const State& state, const nft::Program* programs, const std::string& label,
                   Stats* stats) {
  for (int n = 0; n < 2; ++n) {
    for (const auto& [name, set] : programs[n].sets) {
      if (name.back() == 'p' && name.find("-s") != std::string::npos) ++stats->large_rules;
    }
  }
  const std::vector<std::pair<Protocol, int>> probes = {
      {Protocol::kTCP, 80}, {Protocol::kTCP, 8080}, {Protocol::kTCP, 9090}, {Protocol::kTCP, 53},
      {Protocol::kUDP, 53}, {Protocol::kUDP, 9090}, {Protocol::kSCTP, 55},  {Protocol::kTCP, 1000},
  };
  int failures = 0;
  for (Family family : {Family::kV4, Family::kV6}) {
    std::vector<End> ends = Ends(state, family);
    std::vector<Hop> hops;
    for (const End& src : ends) {
      for (const End& dst : ends) {
        if (!Path(src, dst, &hops)) continue;
        for (const auto& [proto, port] : probes) {
          Decision want = Decide(state, src.ForEval(), dst.ForEval(), family, proto, port);
          ASSERT_TRUE(want.applicable) << want.reason;
          Packet pkt;
          pkt.src = src.addr;
          pkt.dst = dst.addr;
          pkt.l4proto = static_cast<uint8_t>(proto);
          pkt.dport = static_cast<uint16_t>(port);
          bool got = true;
          std::vector<TraceResult> traces;
          for (const Hop& hop : hops) {
            absl::StatusOr<TraceResult> r =
                Trace(programs[hop.node], hop.chain, pkt, /*explain=*/false);
            ASSERT_TRUE(r.ok()) << r.status();
            traces.push_back(*std::move(r));
            if (!traces.back().accepted) {
              got = false;
              break;
            }
          }
          std::string trace;
          if (got != want.allowed) {
            for (size_t i = 0; i < traces.size(); ++i) {
              absl::StatusOr<TraceResult> r = Trace(programs[hops[i].node], hops[i].chain, pkt);
              absl::StrAppend(&trace, "  on ", kNodes[hops[i].node], ":\n    ",
                              absl::StrJoin(r->steps, "\n    "), "\n");
            }
          }
          ++stats->flows;
          for (const SideDecision* side : {&want.egress, &want.ingress}) {
            if (side->tier == DecidingTier::kAdmin || side->tier == DecidingTier::kBaseline) {
              ++stats->tier_sides[side->tier == DecidingTier::kBaseline][side->allowed];
            }
            stats->passed += !side->passed.empty();
          }
          if (want.egress.isolated || want.ingress.isolated) {
            ++stats->policed;
            stats->policed_allowed += want.allowed;
          }
          if (got != want.allowed && ++failures <= 3) {
            ADD_FAILURE() << label << ": " << src.Name() << " -> " << dst.Name() << " "
                          << ProtocolName(proto) << "/" << port << ": program "
                          << (got ? "accepts" : "drops") << ", evaluator: " << want.Explain()
                          << "\ntrace:\n"
                          << trace << "state:\n"
                          << ToYaml(ObjectsOf(state));
          }
        }
      }
    }
  }
}

void CheckState(const State& state, const std::string& label, Stats* stats) {
  nft::Program programs[2];
  for (int n = 0; n < 2; ++n) {
    absl::StatusOr<nft::Program> p = Compile(state, NodeOptions(n));
    ASSERT_TRUE(p.ok()) << label << ": " << p.status();
    programs[n] = *std::move(p);
  }
  CheckPrograms(state, programs, label, stats);
}

TEST(DifferentialTest, TracedProgramsAgreeWithEvaluatorOnRandomClusters) {
  Stats stats;
  constexpr uint32_t kSeeds = 250;
  for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
    CheckState(testing::RandomState(seed), absl::StrCat("seed ", seed), &stats);
    if (HasFailure()) break;
  }
  // The generator must exercise isolation and both of its outcomes a lot, or
  // the comparison proves little.
  std::cout << stats.flows << " flows, " << stats.policed << " with an isolated side, "
            << stats.policed_allowed << " of those allowed, " << stats.large_rules
            << " large rules\n";
  EXPECT_GT(stats.flows, 100000);
  EXPECT_GT(stats.large_rules, 20);
  EXPECT_GT(stats.policed, stats.flows / 5);
  EXPECT_GT(stats.policed_allowed, stats.policed / 10);
  EXPECT_LT(stats.policed_allowed, stats.policed * 9 / 10);
}

TEST(DifferentialTest, LargerClusters) {
  Stats stats;
  testing::RandomStateOptions opts;
  opts.min_pods = 12;
  opts.max_pods = 20;
  opts.min_policies = 4;
  opts.max_policies = 8;
  for (uint32_t seed = 1000; seed < 1040; ++seed) {
    CheckState(testing::RandomState(seed, opts), absl::StrCat("seed ", seed), &stats);
    if (HasFailure()) break;
  }
  EXPECT_GT(stats.flows, 10000);
}

// Whether two pods claim one address: the State is broken (RULESET.md: the first pod by key
// wins), and an address no longer names one end of a flow, which the comparison assumes.
bool SharesAnAddress(const State& state) {
  std::set<IpAddr> seen;
  for (const auto& [key, pod] : state.pods) {
    for (const IpAddr& ip : pod.ips) {
      if (!seen.insert(ip).second) return true;
    }
  }
  return false;
}

// One step of a chain of updates: both nodes' compilers go from `s` to `next` and the programs
// they hold are checked against the evaluator. False for a step not taken: edits the compiler
// refuses (an error leaves the held programs as they were), and broken States (the updates still
// run on the next edit that repairs them).
bool UpdateAndCheck(IncrementalCompiler (&ic)[2], const State& s, const State& next,
                    const std::string& label, Stats* stats) {
  if (!Compile(next, NodeOptions(0)).ok() || !Compile(next, NodeOptions(1)).ok()) return false;
  if (SharesAnAddress(next)) return false;
  const Delta delta = DiffStates(s, next);
  for (int n = 0; n < 2; ++n) {
    absl::StatusOr<nft::Transaction> tx = ic[n].Update(s, next, delta, NodeOptions(n));
    if (!tx.ok()) {
      ADD_FAILURE() << label << ": " << tx.status();
      return true;
    }
  }
  const nft::Program programs[2] = {ic[0].program(), ic[1].program()};
  CheckPrograms(next, programs, label, stats);
  return true;
}

// The programs an IncrementalCompiler holds after chains of random edits (Updates, not a
// compile from the empty State) agree with the evaluator too.
TEST(DifferentialTest, ProgramsReachedByUpdatesAgreeWithEvaluator) {
  Stats stats;
  int updates = 0;
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    State s = testing::RandomState(seed, {.min_pods = 6, .max_pods = 12, .min_policies = 2,
                                          .max_policies = 6});
    IncrementalCompiler ic[2];
    if (!ic[0].Reset(s, NodeOptions(0)).ok() || !ic[1].Reset(s, NodeOptions(1)).ok()) continue;
    for (int step = 0; step < 8; ++step) {
      State next = testing::Mutate(s, seed * 100 + static_cast<uint64_t>(step));
      if (!UpdateAndCheck(ic, s, next, absl::StrCat("seed ", seed, " step ", step), &stats)) {
        continue;
      }
      ++updates;
      if (HasFailure()) return;
      s = std::move(next);
    }
  }
  std::cout << updates << " updates, " << stats.flows << " flows, " << stats.policed
            << " with an isolated side\n";
  EXPECT_GT(updates, 150);
  EXPECT_GT(stats.flows, 50000);
  EXPECT_GT(stats.policed, stats.flows / 10);
}

// ClusterNetworkPolicies mixed with NetworkPolicies: the Admin tier, NetworkPolicy, the Baseline
// tier and the default, compiled into tier chains, agree with the evaluator on every flow.
TEST(DifferentialTest, ClusterNetworkPoliciesMixedWithNetworkPolicies) {
  Stats stats;
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    State s = testing::RandomState(seed);
    testing::AddRandomClusterPolicies(&s, seed, seed % 4 == 0 ? 8 : 4);
    CheckState(s, absl::StrCat("seed ", seed), &stats);
    if (HasFailure()) break;
  }
  std::cout << stats.flows << " flows; decided by Admin: " << stats.tier_sides[0][1]
            << " accept, " << stats.tier_sides[0][0] << " deny; by Baseline: "
            << stats.tier_sides[1][1] << " accept, " << stats.tier_sides[1][0] << " deny; "
            << stats.passed << " passed; " << stats.policed << " NetworkPolicy-isolated\n";
  EXPECT_GT(stats.flows, 80000);
  for (int t = 0; t < 2; ++t) {
    for (int v = 0; v < 2; ++v) EXPECT_GT(stats.tier_sides[t][v], stats.flows / 200) << t << v;
  }
  EXPECT_GT(stats.passed, stats.flows / 100);
  EXPECT_GT(stats.policed, stats.flows / 10);
}

// Programs reached by chains of updates that create, change and delete ClusterNetworkPolicies
// and relabel nodes (and everything else) agree with the evaluator.
TEST(DifferentialTest, ClusterNetworkPolicyUpdatesAgreeWithEvaluator) {
  Stats stats;
  int updates = 0;
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    State s = testing::RandomState(seed, {.min_pods = 6, .max_pods = 12, .min_policies = 2,
                                          .max_policies = 5});
    if (seed % 3 != 0) testing::AddRandomClusterPolicies(&s, seed);
    IncrementalCompiler ic[2];
    if (!ic[0].Reset(s, NodeOptions(0)).ok() || !ic[1].Reset(s, NodeOptions(1)).ok()) continue;
    for (int step = 0; step < 8; ++step) {
      State next = testing::MutateClusterPolicies(s, seed * 100 + static_cast<uint64_t>(step));
      if (step == 5) next.cluster_policies.clear();  // the last CNP goes: back to NetworkPolicy only
      if (!UpdateAndCheck(ic, s, next, absl::StrCat("seed ", seed, " step ", step), &stats)) {
        continue;
      }
      ++updates;
      if (HasFailure()) return;
      s = std::move(next);
    }
  }
  std::cout << updates << " updates, " << stats.flows << " flows\n";
  EXPECT_GT(updates, 150);
  EXPECT_GT(stats.tier_sides[0][0] + stats.tier_sides[1][0], stats.flows / 100);
}

}  // namespace
}  // namespace netpol::compiler
