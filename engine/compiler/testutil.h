// Test helpers: terse builders for model objects and a seeded random State
// generator shared by the compiler's tests.
#ifndef NETPOL_ENGINE_COMPILER_TESTUTIL_H_
#define NETPOL_ENGINE_COMPILER_TESTUTIL_H_

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "engine/model/model.h"

namespace netpol::compiler::testing {

IpAddr Ip(const std::string& text);    // dies on bad text (tests only)
Cidr CidrOf(const std::string& text);  // likewise

Namespace MakeNamespace(const std::string& name, Labels labels = {});
Pod MakePod(const std::string& ns, const std::string& name, Labels labels, const std::string& node,
            const std::vector<std::string>& ips, std::vector<ContainerPort> ports = {});
LabelSelector Sel(Labels match_labels);

PolicyPort TcpPort(int32_t port);
PolicyPort NamedPort(const std::string& name, Protocol protocol = Protocol::kTCP);
Peer PodPeer(LabelSelector pods);
Peer NamespacePeer(LabelSelector namespaces);
Peer BlockPeer(const std::string& cidr, const std::vector<std::string>& except = {});

void Add(State* state, Namespace ns);
void Add(State* state, Pod pod);
void Add(State* state, NetworkPolicy policy);

// A seeded random cluster of two nodes ("n1": pods 10.0.0.x / fd00::x, node
// address 192.168.0.1 / fd00:ffff::1; "n2": 10.0.1.x / fd00::1:x, 192.168.0.2 /
// fd00:ffff::2), three namespaces, 4-10 pods (some single-stack, some without
// addresses, some hostNetwork with their node's addresses, named container
// ports) and 1-5 policies drawing on every feature: selectors with expressions,
// namespace selectors, ipBlocks with excepts in both families, numeric, named,
// endPort and protocol-only ports, empty rules and empty rule lists.
struct RandomStateOptions {
  int min_pods = 4, max_pods = 10;
  int min_policies = 1, max_policies = 5;
};
State RandomState(uint32_t seed, const RandomStateOptions& options = {});

// A policy of namespace `ns` isolating its pods labelled app=web for ingress, with one rule that
// allows `blocks` non-adjacent /24s (172.16.0.0/24, 172.16.2.0/24, ... 172.16.254.0/24,
// 172.17.0.0/24, ...) on `ports` non-adjacent TCP ports (1000, 1002, ...): peers x ports.
NetworkPolicy WidePolicy(const std::string& ns, const std::string& name, int blocks, int ports);
// Block `i` and port `i` of WidePolicy.
std::string WideBlock(int i);
int32_t WidePort(int i);
// Policy ns/name selecting app=web pods, with one ingress rule `from: [namespaceSelector: {}]`
// on `ports` TCP ports (WidePort): its size depends on how many pods the cluster has.
NetworkPolicy EveryNamespacePolicy(const std::string& ns, const std::string& name, int ports);
// Adds pods crowd-<first>..crowd-<first+count-1> to namespace `ns` on node `node`, one IPv4
// address each, no two adjacent (10.64.0.0 + 2 i).
void AddCrowd(State* state, const std::string& ns, int first, int count, const std::string& node);

// One to four random edits of `s` (seeded), drawing on every kind of change: pods, namespaces
// and policies created, relabelled, moved or deleted, named ports, large-rule crossings.
State Mutate(const State& s, uint64_t seed);

// Adds Node objects n1 and n2 (NodeAddr addresses, labels role=infra|worker) and 1 to
// `max_policies` random ClusterNetworkPolicies (seeded) drawing on every feature: both tiers,
// equal and distinct priorities, Accept/Deny/Pass, namespaces and pods subjects and peers, egress
// nodes and networks peers in both families, numeric, range and named ports of every protocol.
void AddRandomClusterPolicies(State* state, uint64_t seed, int max_policies = 4);
// One to three random edits of the ClusterNetworkPolicies and Nodes of `s` (seeded): CNPs
// created, changed (priority, tier, rules, subject) or deleted, a node relabelled.
State MutateClusterPolicies(const State& s, uint64_t seed);

// The node addresses RandomState uses: index 0 = "n1", 1 = "n2".
IpAddr NodeAddr(int node, Family family);

// A small deterministic generator (splitmix64), identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  int Uniform(int n);  // [0, n)
  bool Chance(int percent) { return Uniform(100) < percent; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Uniform(static_cast<int>(v.size()))];
  }

 private:
  uint64_t state_;
};

// A random entry of the non-empty map `m`.
template <typename M>
typename M::iterator PickIn(M& m, Rng& rng) {
  auto it = m.begin();
  std::advance(it, rng.Uniform(static_cast<int>(m.size())));
  return it;
}

}  // namespace netpol::compiler::testing

#endif  // NETPOL_ENGINE_COMPILER_TESTUTIL_H_
