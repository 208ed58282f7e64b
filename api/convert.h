// Conversions between the model objects (engine/model) and the netpol.v1 API messages.
//
// Model -> API is total. API -> model has two paths:
//   * ParseApiObjects: objects a client sent. They are rendered as Kubernetes JSON and parsed by
//     the engine's loader, so messages given over gRPC are validated by the same rules, and
//     their errors carry the same object names and field paths, as YAML given to netpolctl.
//   * FromApiTrusted: objects the agent wrote itself (the state file). Only the text fields
//     (addresses, CIDRs) are parsed; errors name the object and field.
#ifndef NETPOL_API_CONVERT_H_
#define NETPOL_API_CONVERT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "api/netpol/v1/objects.pb.h"
#include "engine/model/loader.h"
#include "engine/model/model.h"

namespace netpol::api {

v1::Object ToApi(const Object& object);
v1::Namespace ToApi(const Namespace& ns);
v1::Pod ToApi(const Pod& pod);
v1::NetworkPolicy ToApi(const NetworkPolicy& policy);
v1::ClusterNetworkPolicy ToApi(const ClusterNetworkPolicy& cnp);
// Each address as an InternalIP entry of status.addresses.
v1::Node ToApi(const Node& node);

v1::Protocol ToApi(Protocol p);
// UNSPECIFIED maps to TCP.
Protocol FromApi(v1::Protocol p);

// The model kind of an API kind, as "Namespace", "Pod", "NetworkPolicy",
// "ClusterNetworkPolicy", "Node"; nullptr for UNSPECIFIED.
const char* KindName(v1::Kind kind);
v1::Kind KindOf(const Object& object);
v1::ObjectRef RefOf(const Object& object);
// How kubectl names an object in its output: "networkpolicy.networking.k8s.io/deny-all",
// "pod/a", "namespace/x".
std::string KubectlName(const v1::ObjectRef& ref);
// How error messages name an object: "networkpolicy x/deny-all", "namespace x".
std::string RefString(const v1::ObjectRef& ref);
// Namespaces, ClusterNetworkPolicies and Nodes: their refs carry no namespace.
bool IsClusterScoped(v1::Kind kind);
// The State map key of a ref: "name" for the cluster-scoped kinds, "namespace/name" otherwise.
std::string KeyOf(const v1::ObjectRef& ref);

// Renders client-sent objects as one Kubernetes JSON List document (namedPort becomes an
// int-or-string `port`, each item gets apiVersion and kind).
absl::StatusOr<std::string> ApiObjectsToJson(const std::vector<const v1::Object*>& objects);
// Validates and converts client-sent objects; `source` names them in errors (e.g. "objects").
// InvalidArgument with object and field path on bad input.
absl::StatusOr<std::vector<Object>> ParseApiObjects(
    const google::protobuf::RepeatedPtrField<v1::Object>& objects, const std::string& source);

// Converts an object the agent itself stored. DataLoss when a field does not parse.
absl::StatusOr<Object> FromApiTrusted(const v1::Object& object);

}  // namespace netpol::api

#endif  // NETPOL_API_CONVERT_H_
