// Kubernetes API JSON (list pages and watch events, as kube-apiserver sends them) into the
// model's objects, with simdjson's on-demand parser: one page or one event at a time, reading
// only the fields netpol uses.
//
// What becomes of each kind:
//   * Namespace: name and labels (kubernetes.io/metadata.name=<name> always set).
//   * Pod: labels, spec.nodeName, spec.hostNetwork, the named ports of spec.containers[].ports,
//     and status.podIPs (status.podIP first). A pod in phase Succeeded or Failed is not part
//     of the model (not a peer, not enforced; its addresses may already belong to another
//     pod): it decodes with no object, like a deleted one.
//   * NetworkPolicy: the whole spec, through the model's loader (engine/model/loader.h) and the
//     compiler's validation, so it means exactly what a manifest would.
//   * ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2, a CRD): likewise, the name and
//     the whole spec through the loader and the compiler's validation.
//   * Node: name, labels and the InternalIP/ExternalIP entries of status.addresses, through the
//     loader (the rest of a Node, its images and conditions, is never copied).
// An object the API server accepted but netpol cannot represent (say an ipBlock with host
// bits set) decodes with no object and `invalid` saying why: it is left out and reported, and
// never stops the rest of the page.
//
// Thread safety: reentrant (each call owns its parser).
#ifndef NETPOL_AGENT_K8S_DECODE_H_
#define NETPOL_AGENT_K8S_DECODE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/loader.h"

namespace netpol::agent::k8s {

enum class Resource { kNamespaces, kPods, kNetworkPolicies, kClusterNetworkPolicies, kNodes };
inline constexpr int kResourceCount = 5;
inline constexpr Resource kResources[kResourceCount] = {
    Resource::kNamespaces, Resource::kPods, Resource::kNetworkPolicies,
    Resource::kClusterNetworkPolicies, Resource::kNodes};
// "namespaces", "pods", "networkpolicies", "clusternetworkpolicies", "nodes".
const char* ResourceName(Resource r);
// The collection's path: /api/v1/namespaces, /api/v1/pods,
// /apis/networking.k8s.io/v1/networkpolicies,
// /apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies, /api/v1/nodes.
const char* ResourcePath(Resource r);
// Whether the API server may not serve `r` at all: a custom resource whose CRD is not
// installed (404). The datastore then treats it as listed and empty and keeps retrying.
bool ResourceMayBeAbsent(Resource r);

struct Item {
  std::string key;  // "name" (namespaces, cluster network policies, nodes) or "namespace/name"
  std::string resource_version;
  // The model object; nullopt when the object is not part of the model (a finished pod) or
  // cannot be represented (`invalid` then says why).
  std::optional<Object> object;
  std::string invalid;
  std::vector<std::string> warnings;  // unknown fields the loader ignored
  bool deleted = false;               // a DELETED watch event's object
};

struct ListPage {
  std::string resource_version;  // metadata.resourceVersion of the list
  std::string continue_token;    // metadata.continue; empty on the last page
  std::vector<Item> items;
};

// One page of a list response. InvalidArgument when it is not a list of that resource.
absl::StatusOr<ListPage> DecodeListPage(Resource r, absl::string_view json);

struct WatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kError };
  Type type = Type::kAdded;
  Item item;              // kAdded/kModified/kDeleted; for kBookmark only resource_version
  int error_code = 0;     // kError: the Status object's code (410: resourceVersion too old)
  std::string error_message;
};

// One line of a watch stream. InvalidArgument when it is not an event.
absl::StatusOr<WatchEvent> DecodeWatchEvent(Resource r, absl::string_view line);

}  // namespace netpol::agent::k8s

#endif  // NETPOL_AGENT_K8S_DECODE_H_
