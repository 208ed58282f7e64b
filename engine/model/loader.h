// Loading Kubernetes manifests (YAML or JSON) into the model types, and writing them back.
//
// Input is one or more YAML documents (JSON is YAML) holding Namespace (v1), Pod (v1),
// NetworkPolicy (networking.k8s.io/v1), ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2),
// Node (v1) or List (v1) objects; List items may be any but List. Typed lists as the API server
// returns them (NamespaceList, PodList, NetworkPolicyList, ClusterNetworkPolicyList, NodeList)
// are accepted too; their items may omit kind and apiVersion.
//
// Validation follows the Kubernetes API server:
//   - Every object's top level (apiVersion, kind, metadata, spec, status) and every field of a
//     NetworkPolicy, metadata included, is checked against the schema; unknown fields are errors
//     (LoadOptions::strict) or warnings. For Pods and Namespaces only the fields netpol reads are
//     validated; the rest of their schema (images, uids, annotations, phases...) is accepted and
//     ignored.
//   - Names: Pods and NetworkPolicies are DNS-1123 subdomains, Namespaces and metadata.namespace
//     DNS-1123 labels. metadata.namespace defaults to LoadOptions::default_namespace.
//   - Labels and selectors: qualified-name keys, values of at most 63 characters; operators
//     In/NotIn (values required) and Exists/DoesNotExist (values forbidden).
//   - Ports: protocol TCP/UDP/SCTP (default TCP); port 1-65535 or an IANA service name; endPort
//     only with a numeric port, port <= endPort <= 65535.
//   - ipBlock: cidr and each except must be canonical CIDRs: host bits set is an error. (The
//     Kubernetes API server has long accepted "10.0.0.1/8" and newer releases only warn, but such
//     a CIDR almost always hides a typo, so netpol rejects it and names the canonical form.)
//     Each except must lie strictly inside cidr (same family, longer prefix). A peer has at
//     least one of podSelector/namespaceSelector/ipBlock and never ipBlock with a selector.
//   - policyTypes: Ingress/Egress, at most two entries; when absent or empty, Ingress always and
//     Egress iff spec.egress has at least one rule.
//   - Pods: containerPort 1-65535, port names IANA service names unique within the pod,
//     status.podIP/podIPs valid addresses, at most one per family (podIP first, duplicates
//     merged).
//   - IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are refused in podIPs and ipBlocks, as the
//     API server refuses them ("must not be an IPv4-mapped IPv6 address").
//   - ClusterNetworkPolicy, as its CRD schema and validation rules: every field; metadata.name a
//     DNS-1123 subdomain, metadata.namespace ignored (cluster-scoped); spec.tier Admin/Baseline;
//     spec.priority 0-1000; spec.subject exactly one of namespaces/pods; at most 25 ingress and
//     25 egress rules; a rule's name at most 100 characters, action Accept/Deny/Pass, 1-25 peers
//     (from/to), protocols absent or 1-25 entries; a peer exactly one of namespaces, pods and,
//     egress only, nodes or networks (1-25 distinct canonical CIDRs, as ipBlock); pods.podSelector
//     required; a protocols entry exactly one of tcp/udp/sctp (with destinationPort: exactly one
//     of number 1-65535 or range start < end) or destinationNamedPort (an IANA service name),
//     which networks/nodes peers of the same rule forbid. domainNames is refused: "not supported".
//   - Nodes: metadata.name a DNS-1123 subdomain, labels; status.addresses entries need type and
//     address; InternalIP/ExternalIP addresses must be valid IPs (other types are names and are
//     ignored).
// Scalars follow YAML 1.1 as Kubernetes reads them: an unquoted 80 is a number, "80" a string,
// unquoted yes/no/on/off/true/false booleans, ~/null null. A string field given a number or
// boolean is an error (quote it), as with kubectl.
//
// Errors are InvalidArgument and name the source, the object and the field path:
//   examples/x.yaml: networkpolicy x/deny-all: spec.ingress[0].ports[1].endPort: must be >= port
// Problems found before an object is identified name the document (1-based):
//   a.yaml: document 2: unsupported kind "Service" (supported: Namespace, Pod, NetworkPolicy,
//   ClusterNetworkPolicy, Node, List)
// One bad document rejects the whole load; all errors found are reported, one per line, the
// first line being the first error.
//
// Limits against hostile input: at most 8 MiB of text per load (LoadOptions::max_bytes), YAML nesting of a few hundred
// levels (the parser's own guard), and a budget of twice the input size (plus 64 Ki) in nodes
// visited per load, which stops alias bombs before they expand. Parse errors, wrong node types
// and out-of-range numbers anywhere are errors, never crashes.
//
// Thread safety: all functions are reentrant.
#ifndef NETPOL_ENGINE_MODEL_LOADER_H_
#define NETPOL_ENGINE_MODEL_LOADER_H_

#include <cstddef>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/model.h"
#include "engine/model/names.h"

namespace netpol {

// One loaded object.
struct Object {
  std::variant<Namespace, Pod, NetworkPolicy, ClusterNetworkPolicy, Node> value;

  // "Namespace", "Pod", "NetworkPolicy", "ClusterNetworkPolicy" or "Node".
  const char* Kind() const;
  // Pods and NetworkPolicies live in a namespace; the other kinds are cluster-scoped.
  bool Namespaced() const { return AsPod() != nullptr || AsNetworkPolicy() != nullptr; }
  // The namespace of a Pod/NetworkPolicy; empty for the cluster-scoped kinds.
  const std::string& NamespaceName() const;
  const std::string& Name() const;
  // "name" for a cluster-scoped kind, "namespace/name" otherwise (the State map key).
  std::string Key() const;
  // How errors name the object: "namespace web", "pod default/a", "networkpolicy x/deny-all",
  // "clusternetworkpolicy guard", "node n1".
  std::string Ref() const;

  const Namespace* AsNamespace() const { return std::get_if<Namespace>(&value); }
  const Pod* AsPod() const { return std::get_if<Pod>(&value); }
  const NetworkPolicy* AsNetworkPolicy() const { return std::get_if<NetworkPolicy>(&value); }
  const ClusterNetworkPolicy* AsClusterNetworkPolicy() const {
    return std::get_if<ClusterNetworkPolicy>(&value);
  }
  const Node* AsNode() const { return std::get_if<Node>(&value); }

  friend bool operator==(const Object& a, const Object& b) { return a.value == b.value; }
  friend bool operator!=(const Object& a, const Object& b) { return !(a == b); }
};

// The apiVersion of ClusterNetworkPolicy.
inline constexpr char kClusterNetworkPolicyApiVersion[] = "policy.networking.k8s.io/v1alpha2";

// The largest input LoadYaml accepts by default (LoadOptions::max_bytes), in bytes: one
// manifest. Beyond: ResourceExhausted, "input is N bytes, more than the limit of 8388608 (8 MiB)".
inline constexpr size_t kMaxLoadBytes = 8 << 20;

struct LoadOptions {
  // Names the input in messages (a file name, "-" for stdin). Empty: messages start with the
  // object.
  std::string source;
  // Unknown fields (top level of any object, anywhere in a NetworkPolicy) are errors when true,
  // warnings when false.
  bool strict = true;
  // The namespace of Pods and NetworkPolicies whose metadata.namespace is absent (kubectl -n).
  // A DNS label: LoadYaml refuses the whole input otherwise.
  std::string default_namespace = "default";
  // The largest input accepted, in bytes (ResourceExhausted beyond).
  size_t max_bytes = kMaxLoadBytes;
};

struct LoadResult {
  std::vector<Object> objects;        // in input order, List items in place of their List
  std::vector<std::string> warnings;  // formatted like errors
};


// Parses every document of `text`. Empty documents are skipped.
absl::StatusOr<LoadResult> LoadYaml(absl::string_view text, const LoadOptions& options = {});

// Reads and parses one file. options.source defaults to `path`. NotFound / PermissionDenied /
// ResourceExhausted (too large) / InvalidArgument (unreadable, bad content).
absl::StatusOr<LoadResult> LoadFile(const std::string& path, const LoadOptions& options = {});

// Loads `path` if it is a file; if a directory, every *.yaml, *.yml and *.json file directly in
// it (not recursive), in byte-wise sorted name order, with each file's name as its source.
absl::StatusOr<LoadResult> LoadPath(const std::string& path, const LoadOptions& options = {});

// Renders one object as a Kubernetes-shaped YAML document (apiVersion, kind, metadata, spec,
// status), such that LoadYaml(ToYaml(x)) yields x again. policyTypes are always written out (a
// policy with neither type set, which the loader never produces, reloads as Ingress). Pod ports
// are written as the ports of one container named "main".
std::string ToYaml(const Object& object);
// Renders several objects as a multi-document stream ("---" between documents).
std::string ToYaml(const std::vector<Object>& objects);

// The Kubernetes name rules the loader applies to metadata (ValidateDnsLabel,
// ValidateDnsSubdomain) are in engine/model/names.h, included here.

// Inserts or replaces `object` in `state` under its key.
void Upsert(const Object& object, State* state);

// Returns every object of `state`: namespaces, then pods, then policies, each in key order (so
// ToYaml(ObjectsOf(s)) is a deterministic dump that loads back into `s` via Upsert).
std::vector<Object> ObjectsOf(const State& state);

}  // namespace netpol

#endif  // NETPOL_ENGINE_MODEL_LOADER_H_
