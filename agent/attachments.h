// CNI attachments: the pod network interfaces a container runtime set up on this node, as
// netpol-cni reports them (ADD, DEL, GC). Pure State transitions, no I/O.
//
// What an attachment means:
//   * It is identified by (network name, container id, interface), as the CNI spec identifies
//     an attachment: a container on several networks (Multus) has one attachment per
//     interface, and ADD or DEL of one leaves the others alone. Records written before networks
//     were recorded have an empty network and match any network.
//   * Its pod is local: the agent enforces policies for it here, whatever its spec.nodeName
//     says (CompileOptions::attached_pods).
//   * Its addresses are the pod's addresses. The runtime on this node is the authority on which
//     pod holds which address here, so the addresses of a pod's attachments (all interfaces
//     together) win over addresses the API reported for any pod, and are taken away from every
//     other pod.
//   * A pod the agent does not know yet is created with no labels and enforced as such: the
//     policies of its namespace that select every pod (`podSelector: {}`, e.g. default deny)
//     apply from the first packet; label-selecting policies apply once the pod object (with
//     labels) arrives. Attaching never touches labels, ports or nodeName of a known pod.
//   * An attachment without a pod (no K8S_POD_NAMESPACE/K8S_POD_NAME: nerdctl, podman,
//     cnitool) is a container that is not a Kubernetes pod: its addresses are taken from every
//     pod (a stale pod's identity never sticks to them), no policy selects or isolates it, and
//     policies reach it only through ipBlock peers.
//   * Attaching removes first every attachment of the same pod with another container id (an
//     older sandbox) and every attachment holding one of the same addresses (its DEL was lost),
//     so a reused address never keeps the old pod's identity.
//   * Attachments live until DEL, GC, or such a replacement; never because a netns path cannot
//     be seen (the agent may run where the pods' netns files are not mounted). A pod deleted
//     through the datastore stays deleted; its attachment then enforces nothing until DEL.
#ifndef NETPOL_AGENT_ATTACHMENTS_H_
#define NETPOL_AGENT_ATTACHMENTS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/netpol/v1/endpoint_service.pb.h"
#include "engine/compiler/compiler.h"
#include "engine/model/model.h"

namespace netpol::agent {

// (network, container id, interface): the CNI spec's identity of an attachment.
struct AttachmentKey {
  std::string network;  // empty: a record written before networks were recorded
  std::string container_id;
  std::string interface;

  // "network/containerId/interface" ("*" for an empty network).
  std::string ToString() const;
  friend bool operator<(const AttachmentKey& a, const AttachmentKey& b) {
    return std::tie(a.network, a.container_id, a.interface) <
           std::tie(b.network, b.container_id, b.interface);
  }
  friend bool operator==(const AttachmentKey& a, const AttachmentKey& b) {
    return a.network == b.network && a.container_id == b.container_id &&
           a.interface == b.interface;
  }
};

// Which attachments a DEL or a CHECK names: a container, optionally one network and one
// interface (empty: any). A stored attachment with an empty network matches any network.
struct AttachmentSelector {
  std::string network;
  std::string container_id;
  std::string interface;
  bool Matches(const AttachmentKey& key) const;
};

struct Attachment {
  std::string network;
  std::string container_id;
  std::string netns;
  std::string interface;
  std::vector<IpAddr> ips;  // sorted, unique
  std::string pod_namespace;  // both empty: not a Kubernetes pod (see the file comment)
  std::string pod_name;
  std::string pod_uid;
  absl::Time attach_time = absl::UnixEpoch();
  // Inode of the network namespace when attached (0: unknown). Informational only.
  uint64_t netns_inode = 0;

  AttachmentKey Key() const { return AttachmentKey{network, container_id, interface}; }
  bool HasPod() const { return !pod_name.empty(); }
  // "namespace/name", or "" for an attachment without a pod.
  std::string PodKey() const { return HasPod() ? pod_namespace + "/" + pod_name : ""; }
  // Equality of everything but attach_time.
  bool SameAs(const Attachment& o) const;
  friend bool operator==(const Attachment& a, const Attachment& b) {
    return a.SameAs(b) && a.attach_time == b.attach_time;
  }
};

using Attachments = std::map<AttachmentKey, Attachment>;

v1::Attachment ToApi(const Attachment& a);
// Validates a client-sent attachment; errors are InvalidArgument naming `field` and the path
// (`attachment.ips[1]: ...`). Addresses come out sorted and unique; an empty interface is
// eth0. Refused: addresses no pod can hold (unspecified, loopback, multicast, broadcast,
// IPv4-mapped IPv6), more than one address per family, a netns that is not an absolute clean
// path (ValidNetnsPath), a pod namespace without a name or the reverse.
absl::StatusOr<Attachment> AttachmentFromApi(const v1::Attachment& a, const std::string& field);

// Why `path` cannot name a network namespace, or "" when it can: it must be absolute and clean
// (no empty, "." or ".." components, no trailing '/'), not "/", at most 4095 bytes. The agent
// cannot look at the path (it may not see it); the plugin also checks that it is a netns.
std::string NetnsPathProblem(const std::string& path);
// The CNI spec's network name: a letter or digit, then letters, digits, '_', '.', '-'.
bool ValidNetworkName(const std::string& name);
// CNI_IFNAME as Linux allows it: 1-15 bytes, not "." or "..", no '/', ':' or whitespace.
bool ValidInterfaceName(const std::string& name);

struct AttachmentChange {
  State state;
  Attachments attachments;
  bool changed = false;          // state or attachments differ from the input
  uint64_t objects_changed = 0;  // pods created, changed or deleted
  std::vector<std::string> replaced;  // keys (AttachmentKey::ToString) removed to make room, sorted
  std::vector<AttachmentKey> removed;  // every attachment removed (Attach: its own old record too)
  std::set<std::string> touched;       // keys of every pod that may differ from the input
  bool pod_known = false;             // the pod existed before (Attach only)
  bool found = false;                 // the attachment existed before
};

// Records `a` (see the file comment). `a.attach_time` is kept from the existing attachment
// when nothing else changed, so repeating an ADD changes nothing.
AttachmentChange Attach(const State& state, const Attachments& attachments, Attachment a);

// Removes the attachments `selector` matches; their pods keep the addresses of their other
// attachments only. A pod left with no addresses, labels, ports or nodeName (one only the
// attachments had created) is deleted. Nothing matched changes nothing (found=false).
AttachmentChange Detach(const State& state, const Attachments& attachments,
                        const AttachmentSelector& selector);

// CNI GC: removes every attachment of `network` (and every one with an empty network) whose
// (container id, interface) is not in `valid`, as Detach does.
AttachmentChange GarbageCollect(const State& state, const Attachments& attachments,
                                const std::string& network,
                                const std::set<std::pair<std::string, std::string>>& valid);

// Re-asserts every attachment on `state` after an API write: each attached pod that exists
// has exactly the addresses of its attachments, and no other pod holds them (nor any address
// of an attachment without a pod). Returns the number of pods changed, and adds their keys to
// `changed_pods` when set. Pods apply in key order, pod-less attachments first (a later pod
// takes a shared address from an earlier one). Runs on every write, so it copies only the pods
// it may change (no whole-State copy) and walks the pods once (an index of the attached
// addresses' holders), not once per attachment.
uint64_t OverlayAttachments(const Attachments& attachments, State* state,
                            std::set<std::string>* changed_pods = nullptr);

// Keys ("namespace/name") of the attached pods (attachments without a pod are not pods).
std::set<std::string> AttachedPods(const Attachments& attachments);
// `base` with the attached pods added to attached_pods. `attachments` may be null.
compiler::CompileOptions WithAttachments(const compiler::CompileOptions& base,
                                         const Attachments* attachments);

// The inode of the network namespace at `path`, 0 when it cannot be read (informational).
uint64_t NetnsInode(const std::string& path);

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_ATTACHMENTS_H_
