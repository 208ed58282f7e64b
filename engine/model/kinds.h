// One parser per kind: each reads a whole object (its top-level fields already split) into its
// model type, validating every field it reads as the Kubernetes API server does, through the
// walker (walker.h). LoadObject (loader.cc) picks the parser by kind.
#ifndef NETPOL_ENGINE_MODEL_KINDS_H_
#define NETPOL_ENGINE_MODEL_KINDS_H_

#include "engine/model/model.h"
#include "engine/model/walker.h"

namespace netpol::load {

// Namespace (v1): metadata only; the kubernetes.io/metadata.name label is set to the name.
void ParseNamespace(Walker& w, const Fields& top, Namespace* ns);
// Pod (v1): metadata, spec.nodeName/hostNetwork/containers[].ports, status.podIP(s).
void ParsePod(Walker& w, const Fields& top, Pod* pod);
// NetworkPolicy (networking.k8s.io/v1): every field.
void ParseNetworkPolicy(Walker& w, const Fields& top, NetworkPolicy* np);

// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2): every field; spec.egress[].to[]
// .domainNames is refused as not supported.
void ParseClusterNetworkPolicy(Walker& w, const Fields& top, ClusterNetworkPolicy* cnp);
// Node (v1): metadata (name, labels) and the InternalIP/ExternalIP entries of status.addresses.
void ParseNode(Walker& w, const Fields& top, Node* node);

}  // namespace netpol::load

#endif  // NETPOL_ENGINE_MODEL_KINDS_H_
