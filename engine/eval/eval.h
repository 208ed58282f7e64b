// The userspace evaluator: the reference statement of networking.k8s.io/v1 NetworkPolicy and
// ClusterNetworkPolicy semantics over a State. It answers "may A reach B on protocol/port?" and says which policies
// and rules decide it. It serves the Query/Explain API and is the oracle the kernel is compared
// against, so it favours plain, obviously-correct code over speed: every call walks the policies
// of the two namespaces involved.
//
// The rules it enforces (see also /docs and the conformance cases):
//   * A pod is isolated for ingress (egress) when a policy in its namespace selects it and has
//     the Ingress (Egress) policy type (`NetworkPolicy::ingress_type`/`egress_type`, already
//     resolved by the loader from policyTypes or its defaulting).
//   * Allowed = union of the rules of every policy isolating that side; policies never deny.
//   * A connection needs egress allowed on the source's side and ingress allowed on the
//     destination's side. A side that is not a policy subject (not a pod, a hostNetwork pod,
//     the node) is always allowed.
//   * Peers: podSelector alone = pods of the policy's namespace; namespaceSelector alone = all
//     pods of matching namespaces; both = matching pods in matching namespaces; ipBlock = CIDR
//     minus except, matched against the peer's address (pod addresses included). Empty peer list
//     = anyone; empty port list = every port and protocol.
//   * Ports: protocol must match; a numeric port matches itself or [port, endPort]; a named
//     port is resolved (name AND protocol) on the destination pod of the connection: for ingress
//     the policy's own pod, for egress the peer pod, for an address destination the known pod
//     owning that address; otherwise it never matches. A port rule with neither port nor name
//     matches every port of its protocol.
//   * A pod always reaches itself. Traffic from the destination pod's own node is always
//     allowed (kubelet probes).
//   * hostNetwork pods are never policy subjects and never match pod/namespace selectors as
//     peers: they are their node's address. As a source, a hostNetwork pod on the destination
//     pod's own node is that node's traffic (always allowed, as above); from another node it is
//     judged by its address only (ipBlock).
//   * A bare address that belongs to a known non-hostNetwork pod is treated as that pod.
//   * A pod whose namespace is not in the State is given the namespace labels
//     {kubernetes.io/metadata.name: <ns>}; a namespace's labels always include that label.
//
// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) adds two tiers around NetworkPolicy;
// each side (egress of the source, ingress of the destination) is decided on its own:
//   1. Admin tier: the CNPs whose subject selects the pod (namespaces, or pods = namespace AND
//      pod selectors; hostNetwork pods are never subjects), in priority order (lower first; equal
//      priorities by name, byte order: the API leaves that order to implementations, netpol makes
//      it deterministic), each CNP's rules of that direction in order. The first rule whose
//      peers and protocols match decides: Accept allows and Deny denies (final for this side);
//      Pass skips the rest of the Admin tier.
//   2. NetworkPolicy: when NetworkPolicies isolate the pod, they decide (allowed iff a rule
//      allows), as above.
//   3. Baseline tier: as the Admin tier, for pods no NetworkPolicy isolates; Pass skips to 4.
//   4. The default: allowed.
//   No implicit isolation: a CNP matches only what its rules say. Peers: namespaces/pods match
//   non-hostNetwork pods (a bare address of a known pod is that pod); nodes match the addresses
//   of Nodes (InternalIP/ExternalIP) whose labels match; networks match any address in the CIDRs,
//   pod addresses included. Protocols absent = everything; a protocol entry matches its protocol
//   and port number or range; destinationNamedPort resolves the name (with the connection's
//   protocol) on the destination pod. The unconditional cases above (a pod to itself, the node
//   to its pods, a hostNetwork pod to a pod of its own node) stay unconditional.
//
// Thread safety: all functions are pure and may run concurrently on a State nobody mutates.
#ifndef NETPOL_ENGINE_EVAL_EVAL_H_
#define NETPOL_ENGINE_EVAL_EVAL_H_

#include <optional>
#include <string>
#include <vector>

#include "engine/model/ip.h"
#include "engine/model/model.h"

namespace netpol {

enum class Direction { kIngress, kEgress };
const char* DirectionName(Direction d);  // "ingress", "egress"

// One end of a connection. Exactly one of three forms:
//   * a pod: `pod` set (a pod of the State, or one shaped like it; not owned, must outlive the
//     call). Its address of the asked family is taken from `pod->ips`; `addr` is ignored.
//   * a bare address: `pod` null, `is_node` false, `addr` set. If the address belongs to a known
//     non-hostNetwork pod of the State, the endpoint is that pod.
//   * the node: `is_node` true. As the source it is the destination pod's own node (kubelet
//     probes), always allowed. As the destination it is a plain address (`addr`, e.g. the node's
//     IP) that no ingress policy governs; the source's egress policies still apply to it.
struct Endpoint {
  const Pod* pod = nullptr;
  IpAddr addr;
  bool is_node = false;

  static Endpoint ForPod(const Pod& p);
  static Endpoint ForAddress(const IpAddr& a);
  static Endpoint ForNode(const IpAddr& node_addr = IpAddr());
};

// A rule of a policy: index into `spec.ingress` or `spec.egress` of the policy with key
// `policy` ("namespace/name").
struct RuleRef {
  std::string policy;
  int rule = 0;
  friend bool operator==(const RuleRef& a, const RuleRef& b) {
    return a.policy == b.policy && a.rule == b.rule;
  }
};

// A rule of a ClusterNetworkPolicy that matched a connection.
struct CnpRuleRef {
  std::string policy;  // the CNP's name
  CnpTier tier = CnpTier::kAdmin;
  int32_t priority = 0;
  int rule = 0;      // index into spec.ingress or spec.egress
  std::string name;  // the rule's name, may be empty
  CnpAction action = CnpAction::kDeny;
  friend bool operator==(const CnpRuleRef& a, const CnpRuleRef& b) {
    return a.policy == b.policy && a.tier == b.tier && a.priority == b.priority &&
           a.rule == b.rule && a.name == b.name && a.action == b.action;
  }
};

// Which tier decided one side of a connection.
enum class DecidingTier {
  kNone,           // not a policy subject, or not evaluated (same pod, from the node)
  kAdmin,          // an Admin-tier ClusterNetworkPolicy rule (Accept or Deny)
  kNetworkPolicy,  // the pod is isolated by NetworkPolicies: allowed iff one of their rules is
  kBaseline,       // a Baseline-tier ClusterNetworkPolicy rule (Accept or Deny)
  kDefault,        // nothing decided: allowed
};
const char* DecidingTierName(DecidingTier t);  // "none", "Admin", "NetworkPolicy", ...

// The verdict of one side: egress of the source or ingress of the destination.
struct SideDecision {
  Direction direction = Direction::kIngress;
  // Whether this side is governed by policies at all: false for addresses, the node and
  // hostNetwork pods (then `allowed` is true and the rest is empty).
  bool subject = false;
  bool isolated = false;
  std::vector<std::string> isolating_policies;  // sorted policy keys
  std::vector<RuleRef> allowing_rules;          // every rule that allows the connection, sorted
  bool allowed = false;
  DecidingTier tier = DecidingTier::kNone;
  std::optional<CnpRuleRef> cnp_rule;  // the Accept/Deny rule when tier is kAdmin or kBaseline
  std::vector<CnpRuleRef> passed;      // Pass rules that handed the connection on, in order
  std::string explanation;  // one line, e.g. "ingress of x/a: isolated by x/deny; no rule allows"
};

// The verdict of a connection.
struct Decision {
  // False when the question has no answer: a pod endpoint without an address of the asked
  // family, or an address of the other family. Then `allowed` is false and `reason` says why.
  bool applicable = true;
  bool allowed = false;
  std::string reason;    // one line summary: why allowed or denied (or not applicable)
  SideDecision egress;   // of the source
  SideDecision ingress;  // of the destination
  // Returns a multi-line human explanation: the summary and both sides.
  std::string Explain() const;
};

// Decides whether a new connection from `src` to `dst` over `family`, `protocol` and
// destination `port` is allowed by the NetworkPolicies of `state`. (Replies of an allowed
// connection always pass; they are not a separate question.) Never fails: questions without an
// answer come back with `applicable == false`.
Decision Decide(const State& state, const Endpoint& src, const Endpoint& dst, Family family,
                Protocol protocol, int port);

// Returns the keys (sorted) of the policies that select `pod` for `direction`, i.e. those that
// isolate it. Empty for hostNetwork pods.
std::vector<std::string> PoliciesSelecting(const State& state, const Pod& pod, Direction direction);

// Returns the ClusterNetworkPolicies of `tier` whose subject selects `pod`, in evaluation order
// (priority, then name). Empty for hostNetwork pods.
std::vector<const ClusterNetworkPolicy*> ClusterPoliciesSelecting(const State& state,
                                                                  const Pod& pod, CnpTier tier);

// Returns the labels of namespace `ns` as selectors see them: the State's labels plus
// kubernetes.io/metadata.name=<ns> (only that label when the namespace is not in the State).
Labels NamespaceLabels(const State& state, const std::string& ns);

}  // namespace netpol

#endif  // NETPOL_ENGINE_EVAL_EVAL_H_
