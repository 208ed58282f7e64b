// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) in the compiled program: the Admin and
// Baseline tiers around the NetworkPolicy group chains (RULESET.md "ClusterNetworkPolicy tiers").
//
// The tiers are a layer over the NetworkPolicy program: TierLayer adds to the program of a
// State's NetworkPolicies (what the group compiler makes), per tier chain (local
// pods of one direction sharing their Admin CNPs, their NetworkPolicy group chain or Baseline
// CNPs, and their resolution of the CNPs' ingress named ports), one chain whose tiers are
// first-match verdict sets: every CNP rule of a tier, in priority order, cut into disjoint
// (address . protocol . port) boxes each holding the action of the first rule that covers it.
// The dispatch maps send those pods to their tier chain instead of their group chain.
#ifndef NETPOL_ENGINE_COMPILER_CLUSTER_H_
#define NETPOL_ENGINE_COMPILER_CLUSTER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/compiler/boxes.h"
#include "engine/compiler/common.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/delta.h"
#include "engine/compiler/incremental.h"
#include "engine/model/model.h"
#include "engine/nft/program.h"

namespace netpol::compiler::internal {

// Every check the tier layer needs of `state` beforehand: each ClusterNetworkPolicy
// (ValidateObject), and each pod's container ports that a CNP named port resolves (a number
// outside 1-65535). After OK, TierLayer::Update cannot fail.
absl::Status ValidateClusterState(const State& state);
// ValidateClusterState for an update that changed the objects of `delta` in a State whose
// other objects passed it: every CNP when one changed, otherwise the changed pods' named ports.
absl::Status ValidateClusterDelta(const State& state, const Delta& delta);

// The deny-log chain of a tier of tier chain `tier_chain` (RULESET.md "ClusterNetworkPolicy
// tiers"): "<tier chain>-adl" (Admin) or "-bdl" (Baseline); its log prefix is "deny " and that
// name, so the reader knows the chain, the direction ("cin-"/"ceg-") and the tier.
inline constexpr char kAdminDenyLogSuffix[] = "-adl";
inline constexpr char kBaselineDenyLogSuffix[] = "-bdl";

// What the tier layer reads of the NetworkPolicy compiler, whose indexes describe the same State.
struct TierEnv {
  // Calls f(pod, labels of its namespace) for (at least) every pod that a selector peer (pods
  // `pod_sel`, or all pods when null, in namespaces matching `ns_sel`) may match.
  std::function<void(const LabelSelector* pod_sel, const LabelSelector& ns_sel,
                     const std::function<void(const Pod&, const Labels&)>& f)>
      selector_candidates;
  // The NetworkPolicy group chain of local pod `key` for `dir` ("" when not isolated for it).
  std::function<std::string(const std::string& key, Dir dir)> group_chain;
  // The NetworkPolicy dispatch entry of address `ip` for `dir`: (pod key, group chain).
  std::function<std::optional<std::pair<std::string, std::string>>(Dir dir, const IpAddr& ip)>
      np_dispatch;
  // Whether the NetworkPolicy self set holds `ip`.
  std::function<bool(const IpAddr& ip)> np_self;
};

// The ClusterNetworkPolicy tiers of a program, kept current per update (RULESET.md
// "ClusterNetworkPolicy tiers", "Incremental"): the tier chain of every local pod per direction,
// the tier contents (their sets, shared by content) with their first-match boxes, and the pods by
// address. An update recomputes the tier chains of the local pods it may move, the boxes of the
// contents whose CNPs changed, and, for the other contents, only the address windows around the
// pods and nodes that changed (the first-match partition is a function of the point -> verdict
// map, so a window made of whole runs is cut again on its own).
class TierLayer {
 public:
  TierLayer();
  ~TierLayer();
  TierLayer(TierLayer&&) noexcept;
  TierLayer& operator=(TierLayer&&) noexcept;

  // Moves the layer from `old_state` (what it describes; the empty State at first) to
  // `new_state`, which differs by `delta`, and the attached pods `relocated` that came or went.
  // `np_addrs`: the addresses whose NetworkPolicy dispatch or self entries changed. `held`: the
  // program before (tiers included). Fills `from` with the objects of `held` that change (tier
  // chains, tier sets, the changed elements of tier sets, dispatch maps and self sets) and `to`
  // with what replaces them, so that nft::Diff(*from, *to) is the tiers' part of the transaction.
  // Requires ValidateClusterState(new_state).ok(). Returns false when a name needs a salt after
  // the first update (a hash collision): the caller compiles afresh; the layer is then unusable.
  bool Update(const State& old_state, const State& new_state, const Delta& delta,
              const std::set<std::string>& relocated, const std::set<IpAddr>& np_addrs,
              const TierEnv& env, const CompileOptions& opts, const nft::Program& held,
              nft::Program* from, nft::Program* to);
  // Per tier chain (by name), what its rules decide (GroupRuleSources::tier_rules).
  const std::map<std::string, GroupRuleSources>& sources() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

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
