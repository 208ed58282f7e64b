// How netpol objects are laid out in etcd: one key per object under a prefix, the value a
// Kubernetes-shaped YAML document.
//
//   <prefix>namespaces/<name>
//   <prefix>pods/<namespace>/<name>
//   <prefix>networkpolicies/<namespace>/<name>
//   <prefix>clusternetworkpolicies/<name>
//   <prefix>nodes/<name>
//
// The default prefix is "/netpol/v1/". Values are what engine/model's ToYaml writes (apiVersion,
// kind, metadata, spec, status) and are read back with the same loader and validation as
// `netpolctl apply -f`, so a value written by hand (`etcdctl put`, YAML or JSON) is accepted when
// it is a valid object whose kind, namespace and name match its key.
#ifndef NETPOL_AGENT_ETCD_KEYS_H_
#define NETPOL_AGENT_ETCD_KEYS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/loader.h"

namespace netpol::agent::etcd {

inline constexpr char kDefaultPrefix[] = "/netpol/v1/";

// The path segment of each kind.
inline constexpr char kNamespacesDir[] = "namespaces/";
inline constexpr char kPodsDir[] = "pods/";
inline constexpr char kPoliciesDir[] = "networkpolicies/";
inline constexpr char kClusterPoliciesDir[] = "clusternetworkpolicies/";
inline constexpr char kNodeObjectsDir[] = "nodes/";

// The end of the key range holding every key that starts with `prefix` (etcd's "prefix + 1":
// the last byte below 0xff incremented, what follows it dropped). "\0" for an empty prefix or
// one of only 0xff bytes (etcd reads that as "to the end of the key space").
std::string PrefixEnd(absl::string_view prefix);

class KeyLayout {
 public:
  // `prefix` must start and end with '/'. InvalidArgument otherwise.
  static absl::StatusOr<KeyLayout> Create(std::string prefix);

  const std::string& prefix() const { return prefix_; }

  // The key of an object.
  std::string KeyOf(const Object& object) const;
  std::string NamespaceKey(const std::string& name) const;
  std::string PodKey(const std::string& state_key) const;     // "ns/name"
  std::string PolicyKey(const std::string& state_key) const;  // "ns/name"
  std::string ClusterPolicyKey(const std::string& name) const;
  std::string NodeKey(const std::string& name) const;
  // The prefixes of the pods and policies of one namespace ("…/pods/<ns>/").
  std::string PodsOfNamespace(const std::string& ns) const;
  std::string PoliciesOfNamespace(const std::string& ns) const;

  // The value stored for an object.
  static std::string Encode(const Object& object);
  // Parses and validates the value of `key`. InvalidArgument naming the key when the key is not
  // in the layout, the value does not parse or validate, holds other than one object, or its
  // kind/namespace/name differ from the key's.
  absl::StatusOr<Object> Decode(absl::string_view key, absl::string_view value) const;

 private:
  explicit KeyLayout(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string prefix_;
};

}  // namespace netpol::agent::etcd

#endif  // NETPOL_AGENT_ETCD_KEYS_H_
