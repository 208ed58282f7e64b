// The objects netpol enforces: Namespaces, Pods and networking.k8s.io/v1 NetworkPolicies, and
// the ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2) and Nodes it stores, as
// plain value types, plus the State that holds a cluster's worth of them.
//
// Field names follow the Kubernetes API. Absent vs empty matters in NetworkPolicy and is kept:
// e.g. a rule's `from` absent and `from: []` both mean "any peer", but `ingress: []` vs absent
// ingress differ only through policyTypes defaulting, which the parser resolves into
// `policy_types` (always explicit after parsing).
#ifndef NETPOL_ENGINE_MODEL_MODEL_H_
#define NETPOL_ENGINE_MODEL_MODEL_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/ip.h"
#include "engine/model/persistent_map.h"

namespace netpol {

using Labels = std::map<std::string, std::string>;

// The label every namespace carries with its own name.
inline constexpr char kNamespaceNameLabel[] = "kubernetes.io/metadata.name";
// The NetworkPolicy annotation that asks for allowed-flow logs (docs/flow-logs.md): "true" logs
// the first packet of every connection a rule of the policy allows, "false" (or absent) does not.
inline constexpr char kLogAllowedAnnotation[] = "netpol.io/log-allowed";

enum class Protocol : uint8_t { kTCP = 6, kUDP = 17, kSCTP = 132 };
const char* ProtocolName(Protocol p);  // "TCP", "UDP", "SCTP"

struct LabelSelectorRequirement {
  enum class Op { kIn, kNotIn, kExists, kDoesNotExist };
  std::string key;
  Op op = Op::kIn;
  std::vector<std::string> values;
  friend bool operator==(const LabelSelectorRequirement& a, const LabelSelectorRequirement& b) {
    return a.key == b.key && a.op == b.op && a.values == b.values;
  }
};

// metav1.LabelSelector. An empty selector (no labels, no expressions) selects everything.
struct LabelSelector {
  Labels match_labels;
  std::vector<LabelSelectorRequirement> match_expressions;
  bool Empty() const { return match_labels.empty() && match_expressions.empty(); }
  friend bool operator==(const LabelSelector& a, const LabelSelector& b) {
    return a.match_labels == b.match_labels && a.match_expressions == b.match_expressions;
  }
};

struct Namespace {
  std::string name;
  Labels labels;  // includes kubernetes.io/metadata.name=<name> once parsed
  friend bool operator==(const Namespace& a, const Namespace& b) {
    return a.name == b.name && a.labels == b.labels;
  }
};

struct ContainerPort {
  std::string name;  // may be empty
  int32_t container_port = 0;
  Protocol protocol = Protocol::kTCP;
  friend bool operator==(const ContainerPort& a, const ContainerPort& b) {
    return a.name == b.name && a.container_port == b.container_port && a.protocol == b.protocol;
  }
};

struct Pod {
  std::string namespace_name;
  std::string name;
  Labels labels;
  std::string node_name;                 // spec.nodeName
  bool host_network = false;             // spec.hostNetwork
  std::vector<ContainerPort> ports;      // all containers' ports, in order
  std::vector<IpAddr> ips;               // status.podIPs (status.podIP first), v4 and/or v6

  std::string Key() const { return namespace_name + "/" + name; }
  // Resolves a named port on this pod: the containerPort whose name and protocol match.
  std::optional<int32_t> ResolvePort(const std::string& name, Protocol protocol) const;
  friend bool operator==(const Pod& a, const Pod& b) {
    return a.namespace_name == b.namespace_name && a.name == b.name && a.labels == b.labels &&
           a.node_name == b.node_name && a.host_network == b.host_network && a.ports == b.ports &&
           a.ips == b.ips;
  }
};

// NetworkPolicyPort. Exactly one of port/named_port is set, or neither (all ports of protocol).
struct PolicyPort {
  Protocol protocol = Protocol::kTCP;
  std::optional<int32_t> port;
  std::optional<std::string> named_port;
  std::optional<int32_t> end_port;  // only with a numeric port
  friend bool operator==(const PolicyPort& a, const PolicyPort& b) {
    return a.protocol == b.protocol && a.port == b.port && a.named_port == b.named_port &&
           a.end_port == b.end_port;
  }
};

// The endPort rules of a NetworkPolicyPort, as Kubernetes has them: endPort only with a numeric
// port, and port <= endPort <= 65535. "" when `p` holds them (or has no endPort), else what its
// endPort breaks. The loader and the compiler both ask this one function.
std::string EndPortProblem(const PolicyPort& p);

struct IPBlock {
  Cidr cidr;
  std::vector<Cidr> except;
  friend bool operator==(const IPBlock& a, const IPBlock& b) {
    return a.cidr == b.cidr && a.except == b.except;
  }
};

// NetworkPolicyPeer: either ip_block, or one/both of the selectors.
struct Peer {
  std::optional<LabelSelector> pod_selector;
  std::optional<LabelSelector> namespace_selector;
  std::optional<IPBlock> ip_block;
  friend bool operator==(const Peer& a, const Peer& b) {
    return a.pod_selector == b.pod_selector && a.namespace_selector == b.namespace_selector &&
           a.ip_block == b.ip_block;
  }
};

// One ingress or egress rule. `peers` is `from` (ingress) or `to` (egress); empty = any peer.
// `ports` empty = every port and protocol.
struct Rule {
  std::vector<PolicyPort> ports;
  std::vector<Peer> peers;
  friend bool operator==(const Rule& a, const Rule& b) {
    return a.ports == b.ports && a.peers == b.peers;
  }
};

struct NetworkPolicy {
  std::string namespace_name;
  std::string name;
  LabelSelector pod_selector;
  // Resolved policyTypes: when absent in the input, Ingress is always set and Egress only when
  // spec.egress has at least one rule.
  bool ingress_type = false;
  bool egress_type = false;
  std::vector<Rule> ingress;
  std::vector<Rule> egress;
  // metadata.annotations[netpol.io/log-allowed] == "true" (kLogAllowedAnnotation): the first
  // packet of each connection its rules allow is logged. The only annotation the model keeps.
  bool log_allowed = false;

  std::string Key() const { return namespace_name + "/" + name; }
  friend bool operator==(const NetworkPolicy& a, const NetworkPolicy& b) {
    return a.namespace_name == b.namespace_name && a.name == b.name &&
           a.pod_selector == b.pod_selector && a.ingress_type == b.ingress_type &&
           a.egress_type == b.egress_type && a.ingress == b.ingress && a.egress == b.egress &&
           a.log_allowed == b.log_allowed;
  }
};

// A Node (v1): its labels (for ClusterNetworkPolicy `nodes` peers) and the IP addresses of its
// status.addresses (InternalIP and ExternalIP entries; host names are not addresses).
struct Node {
  std::string name;
  Labels labels;
  std::vector<IpAddr> ips;  // in input order, duplicates merged
  friend bool operator==(const Node& a, const Node& b) {
    return a.name == b.name && a.labels == b.labels && a.ips == b.ips;
  }
};

// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2): cluster-wide rules of the Admin tier
// (before NetworkPolicy) or the Baseline tier (after it). Field names follow the API.
enum class CnpTier : uint8_t { kAdmin, kBaseline };
const char* CnpTierName(CnpTier t);  // "Admin", "Baseline"

enum class CnpAction : uint8_t { kAccept, kDeny, kPass };
const char* CnpActionName(CnpAction a);  // "Accept", "Deny", "Pass"

// NamespacedPod: pods matching `pod_selector` in namespaces matching `namespace_selector`
// (empty selectors select everything).
struct NamespacedPod {
  LabelSelector namespace_selector;
  LabelSelector pod_selector;
  friend bool operator==(const NamespacedPod& a, const NamespacedPod& b) {
    return a.namespace_selector == b.namespace_selector && a.pod_selector == b.pod_selector;
  }
};

// A subject (exactly one of namespaces/pods) or a peer (exactly one of namespaces, pods, and for
// egress nodes or networks). hostNetwork pods are never matched by namespaces/pods.
struct CnpPeer {
  std::optional<LabelSelector> namespaces;
  std::optional<NamespacedPod> pods;
  std::optional<LabelSelector> nodes;  // egress only: the addresses of matching Nodes
  std::vector<Cidr> networks;          // egress only: non-empty when this is a networks peer
  friend bool operator==(const CnpPeer& a, const CnpPeer& b) {
    return a.namespaces == b.namespaces && a.pods == b.pods && a.nodes == b.nodes &&
           a.networks == b.networks;
  }
};

// One entry of a rule's `protocols`: a protocol with a destination port number or range
// (tcp/udp/sctp.destinationPort.number or .range), or destinationNamedPort (`named_port`, any
// protocol: the destination pod's container port of that name).
struct CnpPort {
  std::optional<Protocol> protocol;  // absent only with named_port
  int32_t port = 0;                  // number, or range start
  int32_t end_port = 0;              // range end (> port); 0 for a single number
  std::optional<std::string> named_port;
  friend bool operator==(const CnpPort& a, const CnpPort& b) {
    return a.protocol == b.protocol && a.port == b.port && a.end_port == b.end_port &&
           a.named_port == b.named_port;
  }
};

// An ingress (`peers` = from) or egress (`peers` = to) rule. `peers` is never empty; `ports`
// empty (protocols absent) = every protocol and port.
struct CnpRule {
  std::string name;  // optional, at most 100 characters
  CnpAction action = CnpAction::kDeny;
  std::vector<CnpPeer> peers;
  std::vector<CnpPort> ports;
  friend bool operator==(const CnpRule& a, const CnpRule& b) {
    return a.name == b.name && a.action == b.action && a.peers == b.peers && a.ports == b.ports;
  }
};

struct ClusterNetworkPolicy {
  std::string name;  // cluster-scoped: the key
  CnpTier tier = CnpTier::kAdmin;
  int32_t priority = 0;  // 0-1000, lower first
  CnpPeer subject;       // namespaces or pods
  std::vector<CnpRule> ingress;
  std::vector<CnpRule> egress;

  const std::string& Key() const { return name; }
  friend bool operator==(const ClusterNetworkPolicy& a, const ClusterNetworkPolicy& b) {
    return a.name == b.name && a.tier == b.tier && a.priority == b.priority &&
           a.subject == b.subject && a.ingress == b.ingress && a.egress == b.egress;
  }
};

// The map type of a State's objects: ordered (every derived output is deterministic) and
// persistent, so copying a State is O(1) and a change copies only the object it touches.
template <typename T>
using ObjectMap = PersistentMap<std::string, T>;

// A cluster's objects, keyed by name (namespaces, cluster policies, nodes) or "namespace/name".
struct State {
  ObjectMap<Namespace> namespaces;
  ObjectMap<Pod> pods;
  ObjectMap<NetworkPolicy> policies;
  ObjectMap<ClusterNetworkPolicy> cluster_policies;  // by name
  ObjectMap<Node> nodes;                             // by name

  const Namespace* FindNamespace(const std::string& name) const;
  const Pod* FindPod(const std::string& key) const;
  // Returns the (non-hostNetwork) pod that owns address `a`, or nullptr.
  const Pod* FindPodByIp(const IpAddr& a) const;
  friend bool operator==(const State& a, const State& b) {
    return a.namespaces == b.namespaces && a.pods == b.pods && a.policies == b.policies &&
           a.cluster_policies == b.cluster_policies && a.nodes == b.nodes;
  }
};

}  // namespace netpol

#endif  // NETPOL_ENGINE_MODEL_MODEL_H_
