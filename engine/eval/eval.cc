// The evaluator: see eval.h for the rules. The code follows the rules' order: resolve both
// endpoints, settle the unconditional cases (not applicable, self, node), then evaluate the
// source's egress and the destination's ingress independently.
#include "engine/eval/eval.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/selector/selector.h"

namespace netpol {
namespace {

const char* FamilyName(Family f) { return f == Family::kV4 ? "IPv4" : "IPv6"; }

// An endpoint after resolution against the State for one address family.
struct Resolved {
  const Pod* pod = nullptr;       // a policy subject: a non-hostNetwork pod
  const Pod* host_pod = nullptr;  // a hostNetwork pod (judged by its address only)
  bool is_node = false;
  std::optional<IpAddr> addr;  // the endpoint's address of the asked family, when it has one

  // Returns a short name for explanations: "x/a", "x/h (hostNetwork 10.0.0.5)", "10.0.0.9",
  // "the node".
  std::string Name() const {
    if (pod != nullptr) return pod->Key();
    if (host_pod != nullptr) {
      return absl::StrCat(host_pod->Key(), " (hostNetwork",
                          addr ? absl::StrCat(" ", addr->ToString()) : std::string(), ")");
    }
    if (is_node) {
      return addr ? absl::StrCat("the node (", addr->ToString(), ")") : "the node";
    }
    return addr ? addr->ToString() : "?";
  }
};

std::optional<IpAddr> AddressOf(const Pod& pod, Family family) {
  for (const IpAddr& ip : pod.ips) {
    if (ip.family == family) return ip;
  }
  return std::nullopt;
}

// Resolves `e` for `family`. Returns a reason when the endpoint has no meaning in that family.
std::optional<std::string> Resolve(const State& state, const Endpoint& e, Family family,
                                   bool is_source, Resolved* out) {
  *out = Resolved();
  if (e.pod != nullptr) {
    out->addr = AddressOf(*e.pod, family);
    if (!out->addr) {
      return absl::StrCat("pod ", e.pod->Key(), " has no ", FamilyName(family), " address");
    }
    (e.pod->host_network ? out->host_pod : out->pod) = e.pod;
    return std::nullopt;
  }
  if (e.is_node) {
    out->is_node = true;
    if (is_source) {
      // The node as a source needs no address: it is always allowed to its local pods.
      if (e.addr.family == family) out->addr = e.addr;
      return std::nullopt;
    }
    if (e.addr.family != family) {
      return absl::StrCat("node address ", e.addr.ToString(), " is not ", FamilyName(family));
    }
    out->addr = e.addr;
    return std::nullopt;
  }
  if (e.addr.family != family) {
    return absl::StrCat("address ", e.addr.ToString(), " is not ", FamilyName(family));
  }
  out->addr = e.addr;
  out->pod = state.FindPodByIp(e.addr);  // never a hostNetwork pod
  return std::nullopt;
}

bool PolicySelects(const NetworkPolicy& policy, const Pod& pod, Direction direction) {
  if (pod.host_network || policy.namespace_name != pod.namespace_name) return false;
  if (direction == Direction::kIngress ? !policy.ingress_type : !policy.egress_type) return false;
  return Matches(policy.pod_selector, pod.labels);
}

bool PeerMatches(const State& state, const NetworkPolicy& policy, const Peer& peer,
                 const Resolved& other) {
  if (peer.ip_block) {
    if (!other.addr) return false;
    const IPBlock& block = *peer.ip_block;
    if (other.addr->family != block.cidr.addr.family) return false;
    if (!block.cidr.Contains(*other.addr)) return false;
    for (const Cidr& except : block.except) {
      if (except.addr.family == other.addr->family && except.Contains(*other.addr)) return false;
    }
    return true;
  }
  if (!peer.pod_selector && !peer.namespace_selector) {
    return false;  // an empty peer is rejected by validation; it matches nothing here
  }
  // Selector peers match non-hostNetwork pods only.
  if (other.pod == nullptr) return false;
  const Pod& pod = *other.pod;
  if (peer.namespace_selector) {
    if (!Matches(*peer.namespace_selector, NamespaceLabels(state, pod.namespace_name))) {
      return false;
    }
  } else if (pod.namespace_name != policy.namespace_name) {
    return false;
  }
  return !peer.pod_selector || Matches(*peer.pod_selector, pod.labels);
}

// `destination` is the pod that receives the connection (named ports resolve on it), or null.
bool PortMatches(const PolicyPort& pp, Protocol protocol, int port, const Pod* destination) {
  if (pp.protocol != protocol) return false;
  if (pp.named_port) {
    if (destination == nullptr) return false;
    std::optional<int32_t> resolved = destination->ResolvePort(*pp.named_port, protocol);
    return resolved && *resolved == port;
  }
  if (!pp.port) return true;
  if (pp.end_port) return *pp.port <= port && port <= *pp.end_port;
  return *pp.port == port;
}

bool RuleMatches(const State& state, const NetworkPolicy& policy, const Rule& rule,
                 const Resolved& other, Protocol protocol, int port, const Pod* destination) {
  bool port_ok = rule.ports.empty();
  for (const PolicyPort& pp : rule.ports) {
    if (PortMatches(pp, protocol, port, destination)) {
      port_ok = true;
      break;
    }
  }
  if (!port_ok) return false;
  if (rule.peers.empty()) return true;
  for (const Peer& peer : rule.peers) {
    if (PeerMatches(state, policy, peer, other)) return true;
  }
  return false;
}

// ClusterNetworkPolicy subjects and peers. Namespaces and pods never match hostNetwork pods (the
// Resolved `pod` is never one); nodes and networks match the far end's address.
bool CnpPodMatches(const State& state, const CnpPeer& peer, const Pod& pod) {
  if (pod.host_network) return false;
  if (peer.namespaces) return Matches(*peer.namespaces, NamespaceLabels(state, pod.namespace_name));
  if (peer.pods) {
    return Matches(peer.pods->namespace_selector, NamespaceLabels(state, pod.namespace_name)) &&
           Matches(peer.pods->pod_selector, pod.labels);
  }
  return false;
}

bool CnpPeerMatches(const State& state, const CnpPeer& peer, const Resolved& other) {
  if (peer.namespaces || peer.pods)
    return other.pod != nullptr && CnpPodMatches(state, peer, *other.pod);
  if (!other.addr) return false;
  if (peer.nodes) {
    for (const auto& [name, node] : state.nodes) {
      if (!Matches(*peer.nodes, node.labels)) continue;
      for (const IpAddr& ip : node.ips) {
        if (ip == *other.addr) return true;
      }
    }
    return false;
  }
  for (const Cidr& c : peer.networks) {
    if (c.addr.family == other.addr->family && c.Contains(*other.addr)) return true;
  }
  return false;
}

bool CnpPortMatches(const CnpPort& p, Protocol protocol, int port, const Pod* destination) {
  if (p.named_port) {
    if (destination == nullptr) return false;
    std::optional<int32_t> resolved = destination->ResolvePort(*p.named_port, protocol);
    return resolved && *resolved == port;
  }
  if (p.protocol != protocol) return false;
  if (p.end_port != 0) return p.port <= port && port <= p.end_port;
  return p.port == port;
}

bool CnpRuleMatches(const State& state, const CnpRule& rule, const Resolved& other,
                    Protocol protocol, int port, const Pod* destination) {
  bool port_ok = rule.ports.empty();
  for (const CnpPort& p : rule.ports)
    port_ok = port_ok || CnpPortMatches(p, protocol, port, destination);
  if (!port_ok) return false;
  for (const CnpPeer& peer : rule.peers) {
    if (CnpPeerMatches(state, peer, other)) return true;
  }
  return false;
}

// The CNPs of `tier` whose subject selects `pod`, in evaluation order: priority, then name.
std::vector<const ClusterNetworkPolicy*> TierPolicies(const State& state, CnpTier tier,
                                                      const Pod& pod) {
  std::vector<const ClusterNetworkPolicy*> out;
  for (const auto& [name, cnp] : state.cluster_policies) {
    if (cnp.tier == tier && CnpPodMatches(state, cnp.subject, pod)) out.push_back(&cnp);
  }
  std::stable_sort(out.begin(), out.end(), [](const auto* a, const auto* b) {
    return a->priority < b->priority;  // the map already orders equal priorities by name
  });
  return out;
}

// Walks one tier for one side: the first matching rule of the first CNP (in order) that has one
// decides. Accept/Deny: returns it. Pass: returns it too (the caller moves to the next tier).
// No match: nullopt.
std::optional<CnpRuleRef> EvaluateTier(const State& state, CnpTier tier, Direction direction,
                                       const Pod& subject, const Resolved& other,
                                       const Pod* destination, Protocol protocol, int port) {
  for (const ClusterNetworkPolicy* cnp : TierPolicies(state, tier, subject)) {
    const std::vector<CnpRule>& rules =
        direction == Direction::kIngress ? cnp->ingress : cnp->egress;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (!CnpRuleMatches(state, rules[i], other, protocol, port, destination)) continue;
      return CnpRuleRef{cnp->name,           tier,          cnp->priority,
                        static_cast<int>(i), rules[i].name, rules[i].action};
    }
  }
  return std::nullopt;
}

std::string CnpRuleText(const CnpRuleRef& r, Direction direction) {
  return absl::StrCat(CnpTierName(r.tier), " tier: clusternetworkpolicy ", r.policy, " (priority ",
                      r.priority, ") ", DirectionName(direction), "[", r.rule, "]",
                      r.name.empty() ? "" : absl::StrCat(" \"", r.name, "\""), " ",
                      CnpActionName(r.action));
}

// Evaluates one side. `subject` is the endpoint whose policies apply, `other` the far end,
// `destination` the pod receiving the connection (for named ports).
SideDecision EvaluateSide(const State& state, Direction direction, const Resolved& subject,
                          const Resolved& other, const Pod* destination, Protocol protocol,
                          int port) {
  SideDecision side;
  side.direction = direction;
  const std::string head = absl::StrCat(DirectionName(direction), " of ", subject.Name(), ": ");
  if (subject.pod == nullptr) {
    side.allowed = true;
    side.explanation =
        absl::StrCat(head, subject.host_pod != nullptr ? "hostNetwork pods are not policy subjects"
                           : subject.is_node           ? "the node is not a policy subject"
                                                       : "not a pod, no policy applies");
    return side;
  }
  side.subject = true;
  const Pod& pod = *subject.pod;
  for (const auto& [key, policy] : state.policies) {
    if (!PolicySelects(policy, pod, direction)) continue;
    side.isolating_policies.push_back(policy.Key());
    const std::vector<Rule>& rules =
        direction == Direction::kIngress ? policy.ingress : policy.egress;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (RuleMatches(state, policy, rules[i], other, protocol, port, destination)) {
        side.allowing_rules.push_back(RuleRef{policy.Key(), static_cast<int>(i)});
      }
    }
  }
  std::sort(side.isolating_policies.begin(), side.isolating_policies.end());
  std::sort(side.allowing_rules.begin(), side.allowing_rules.end(),
            [](const RuleRef& a, const RuleRef& b) {
              return a.policy != b.policy ? a.policy < b.policy : a.rule < b.rule;
            });
  side.isolated = !side.isolating_policies.empty();

  // The Admin tier first: its Accept or Deny is final; Pass goes on to NetworkPolicy.
  std::string passed;
  if (auto admin = EvaluateTier(state, CnpTier::kAdmin, direction, pod, other, destination,
                                protocol, port)) {
    if (admin->action != CnpAction::kPass) {
      side.tier = DecidingTier::kAdmin;
      side.allowed = admin->action == CnpAction::kAccept;
      side.explanation = absl::StrCat(head, CnpRuleText(*admin, direction));
      side.cnp_rule = std::move(admin);
      return side;
    }
    passed = absl::StrCat(CnpRuleText(*admin, direction), "; ");
    side.passed.push_back(std::move(*admin));
  }
  if (!side.isolated) {
    // Not selected by a NetworkPolicy: the Baseline tier, then the default (allow).
    std::string not_isolated =
        absl::StrCat("not isolated (no policy selects it for ", DirectionName(direction), ")");
    if (auto baseline = EvaluateTier(state, CnpTier::kBaseline, direction, pod, other, destination,
                                     protocol, port)) {
      if (baseline->action != CnpAction::kPass) {
        side.tier = DecidingTier::kBaseline;
        side.allowed = baseline->action == CnpAction::kAccept;
        side.explanation =
            absl::StrCat(head, passed, not_isolated, "; ", CnpRuleText(*baseline, direction));
        side.cnp_rule = std::move(baseline);
        return side;
      }
      absl::StrAppend(&not_isolated, "; ", CnpRuleText(*baseline, direction));
      side.passed.push_back(std::move(*baseline));
    }
    side.tier = DecidingTier::kDefault;
    side.allowed = true;
    side.explanation = absl::StrCat(head, passed, not_isolated);
    return side;
  }
  side.tier = DecidingTier::kNetworkPolicy;
  side.allowed = !side.allowing_rules.empty();
  std::string isolated = absl::StrCat(head, passed, "isolated by ",
                                      absl::StrJoin(side.isolating_policies, ", "), "; ");
  if (side.allowed) {
    std::vector<std::string> rules;
    for (const RuleRef& r : side.allowing_rules) {
      rules.push_back(absl::StrCat(r.policy, " ", DirectionName(direction), "[", r.rule, "]"));
    }
    side.explanation = absl::StrCat(isolated, "allowed by ", absl::StrJoin(rules, ", "));
  } else {
    side.explanation = absl::StrCat(
        isolated, "no ", DirectionName(direction), " rule allows ", ProtocolName(protocol), "/",
        port, " ", direction == Direction::kIngress ? "from " : "to ", other.Name());
  }
  return side;
}

SideDecision Unconditional(Direction direction, const std::string& why) {
  SideDecision side;
  side.direction = direction;
  side.allowed = true;
  side.explanation = absl::StrCat(DirectionName(direction), ": not evaluated (", why, ")");
  return side;
}

}  // namespace

const char* DirectionName(Direction d) { return d == Direction::kIngress ? "ingress" : "egress"; }

std::vector<const ClusterNetworkPolicy*> ClusterPoliciesSelecting(const State& state,
                                                                  const Pod& pod, CnpTier tier) {
  return TierPolicies(state, tier, pod);
}

const char* DecidingTierName(DecidingTier t) {
  switch (t) {
    case DecidingTier::kNone:
      return "none";
    case DecidingTier::kAdmin:
      return "Admin";
    case DecidingTier::kNetworkPolicy:
      return "NetworkPolicy";
    case DecidingTier::kBaseline:
      return "Baseline";
    case DecidingTier::kDefault:
      return "default";
  }
  return "none";
}

Endpoint Endpoint::ForPod(const Pod& p) {
  Endpoint e;
  e.pod = &p;
  return e;
}

Endpoint Endpoint::ForAddress(const IpAddr& a) {
  Endpoint e;
  e.addr = a;
  return e;
}

Endpoint Endpoint::ForNode(const IpAddr& node_addr) {
  Endpoint e;
  e.is_node = true;
  e.addr = node_addr;
  return e;
}

Labels NamespaceLabels(const State& state, const std::string& ns) {
  Labels labels;
  if (const Namespace* n = state.FindNamespace(ns)) labels = n->labels;
  labels[kNamespaceNameLabel] = ns;
  return labels;
}

std::vector<std::string> PoliciesSelecting(const State& state, const Pod& pod,
                                           Direction direction) {
  std::vector<std::string> keys;
  for (const auto& [key, policy] : state.policies) {
    if (PolicySelects(policy, pod, direction)) keys.push_back(policy.Key());
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

Decision Decide(const State& state, const Endpoint& src, const Endpoint& dst, Family family,
                Protocol protocol, int port) {
  Decision d;
  d.egress.direction = Direction::kEgress;
  d.ingress.direction = Direction::kIngress;
  Resolved s, t;
  std::optional<std::string> bad = Resolve(state, src, family, /*is_source=*/true, &s);
  if (!bad) bad = Resolve(state, dst, family, /*is_source=*/false, &t);
  if (bad) {
    d.applicable = false;
    d.reason = absl::StrCat("not applicable: ", *bad);
    return d;
  }
  const std::string flow =
      absl::StrCat(s.Name(), " -> ", t.Name(), " ", ProtocolName(protocol), "/", port);

  const Pod* s_pod = s.pod != nullptr ? s.pod : s.host_pod;
  const Pod* t_pod = t.pod != nullptr ? t.pod : t.host_pod;
  if (s_pod != nullptr && t_pod != nullptr && s_pod->Key() == t_pod->Key()) {
    d.allowed = true;
    d.reason = absl::StrCat("allowed: ", flow, ": a pod always reaches itself");
    d.egress = Unconditional(Direction::kEgress, "same pod");
    d.ingress = Unconditional(Direction::kIngress, "same pod");
    return d;
  }
  if (s.is_node) {
    d.allowed = true;
    d.reason = absl::StrCat("allowed: ", flow, ": traffic from the node to its pods always passes");
    d.egress = Unconditional(Direction::kEgress, "from the node");
    d.ingress = Unconditional(Direction::kIngress, "from the node");
    return d;
  }
  // A hostNetwork pod sends from its node's sockets and addresses: to a pod on that same node
  // it is node traffic, never filtered (the kernel accepts a node socket's packet from a node
  // address before any dispatch). From another node it is that node's address, judged below by
  // the destination's ingress rules (ipBlock only).
  if (s.host_pod != nullptr && t.pod != nullptr && !s.host_pod->node_name.empty() &&
      s.host_pod->node_name == t.pod->node_name) {
    d.allowed = true;
    d.reason = absl::StrCat("allowed: ", flow, ": a hostNetwork pod on ", t.pod->node_name,
                            " is that node's traffic, and traffic from the node to its pods "
                            "always passes");
    d.egress = Unconditional(Direction::kEgress, "hostNetwork pods are not policy subjects");
    d.ingress = Unconditional(Direction::kIngress, "from the destination's own node");
    return d;
  }

  // Egress: the destination pod (for named ports) is the peer, if it is a known pod.
  d.egress = EvaluateSide(state, Direction::kEgress, s, t, t.pod, protocol, port);
  // Ingress: the destination is the subject itself.
  d.ingress = EvaluateSide(state, Direction::kIngress, t, s, t.pod, protocol, port);
  d.allowed = d.egress.allowed && d.ingress.allowed;
  if (d.allowed) {
    d.reason = absl::StrCat("allowed: ", flow);
  } else {
    std::vector<std::string> by;
    if (!d.egress.allowed) by.push_back(absl::StrCat("egress of ", s.Name()));
    if (!d.ingress.allowed) by.push_back(absl::StrCat("ingress of ", t.Name()));
    d.reason = absl::StrCat("denied: ", flow, ": by ", absl::StrJoin(by, " and "));
  }
  return d;
}

std::string Decision::Explain() const {
  if (!applicable) return reason;
  return absl::StrCat(reason, "\n  ", egress.explanation, "\n  ", ingress.explanation);
}

}  // namespace netpol
