// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) in the compiled program: the Admin and
// Baseline tiers around the NetworkPolicy group chains (RULESET.md "ClusterNetworkPolicy tiers").
//
// The tiers are a layer over the NetworkPolicy program: ApplyClusterPolicies takes the program
// of a State's NetworkPolicies (what the group compiler makes) and adds, per tier chain (local
// pods of one direction sharing their Admin CNPs, their NetworkPolicy group chain or Baseline
// CNPs, and their resolution of the CNPs' ingress named ports), one chain whose tiers are
// first-match verdict sets: every CNP rule of a tier, in priority order, cut into disjoint
// (address . protocol . port) boxes each holding the action of the first rule that covers it.
// The dispatch maps send those pods to their tier chain instead of their group chain.
#ifndef NETPOL_ENGINE_COMPILER_CLUSTER_H_
#define NETPOL_ENGINE_COMPILER_CLUSTER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/compiler/boxes.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/incremental.h"
#include "engine/model/model.h"
#include "engine/nft/program.h"

namespace netpol::compiler::internal {

// Every check ApplyClusterPolicies needs of `state` beforehand: each ClusterNetworkPolicy
// (ValidateObject), and each pod's container ports that a CNP named port resolves (a number
// outside 1-65535). After OK, ApplyClusterPolicies cannot fail.
absl::Status ValidateClusterState(const State& state);

// Returns `np_program` (the program of `state` without its ClusterNetworkPolicies, canonical)
// with the tiers added. Requires ValidateClusterState(state).ok(). When `sources` is not null it
// receives, per tier chain (by name), what its rules decide (GroupRuleSources::tier_rules).
nft::Program ApplyClusterPolicies(const State& state, const CompileOptions& opts,
                                  const nft::Program& np_program,
                                  std::map<std::string, GroupRuleSources>* sources = nullptr);

// The deny-log chain of a tier of tier chain `tier_chain` (RULESET.md "ClusterNetworkPolicy
// tiers"): "<tier chain>-adl" (Admin) or "-bdl" (Baseline); its log prefix is "deny " and that
// name, so the reader knows the chain, the direction ("cin-"/"ceg-") and the tier.
inline constexpr char kAdminDenyLogSuffix[] = "-adl";
inline constexpr char kBaselineDenyLogSuffix[] = "-bdl";

// First-match partition: `ordered` boxes with a value each, earlier first. Returns disjoint
// boxes (sorted) covering the union, each with the value of the first input box containing it,
// merged into maximal runs dimension by dimension (a function of the point -> value map alone).
struct ValuedBox {
  Box box;
  int value = 0;
  friend bool operator==(const ValuedBox& a, const ValuedBox& b) {
    return a.box == b.box && a.value == b.value;
  }
};
std::vector<ValuedBox> FirstMatch(const std::vector<ValuedBox>& ordered,
                                  const std::vector<U128>& dim_max);

}  // namespace netpol::compiler::internal

#endif  // NETPOL_ENGINE_COMPILER_CLUSTER_H_
