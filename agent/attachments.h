// CNI attachments: the pod network interfaces a container runtime set up on this node, as
// netpol-cni reports them (ADD, DEL). Pure State transitions, no I/O except NetnsAlive.
//
// What an attachment means:
//   * Its pod is local: the agent enforces policies for it here, whatever its spec.nodeName
//     says (CompileOptions::attached_pods).
//   * Its addresses are the pod's addresses. The runtime on this node is the authority on which
//     pod holds which address here, so an attachment's addresses win over addresses the API
//     reported for any pod, and are taken away from every other pod.
//   * A pod the agent does not know yet is created with no labels and enforced as such: the
//     policies of its namespace that select every pod (`podSelector: {}`, e.g. default deny)
//     apply from the first packet; label-selecting policies apply once the pod object (with
//     labels) arrives. Attaching never touches labels, ports or nodeName of a known pod.
//   * Attachments are keyed by container id. Attaching removes first every other attachment of
//     the same pod (an older sandbox) and every attachment holding one of the same addresses
//     (its DEL was lost), so a reused address never keeps the old pod's identity.
#ifndef NETPOL_AGENT_ATTACHMENTS_H_
#define NETPOL_AGENT_ATTACHMENTS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/netpol/v1/endpoint_service.pb.h"
#include "engine/compiler/compiler.h"
#include "engine/model/model.h"

namespace netpol::agent {

struct Attachment {
  std::string container_id;
  std::string netns;
  std::string interface;
  std::vector<IpAddr> ips;  // sorted, unique
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
  absl::Time attach_time = absl::UnixEpoch();
  // Inode of the network namespace when attached (0: unknown). A netns path that later names
  // another namespace (a reused /proc/<pid>/ns/net) makes the attachment stale.
  uint64_t netns_inode = 0;

  std::string PodKey() const { return pod_namespace + "/" + pod_name; }
  // Equality of everything but attach_time.
  bool SameAs(const Attachment& o) const;
  friend bool operator==(const Attachment& a, const Attachment& b) {
    return a.SameAs(b) && a.attach_time == b.attach_time;
  }
};

// By container id.
using Attachments = std::map<std::string, Attachment>;

v1::Attachment ToApi(const Attachment& a);
// Validates a client-sent attachment; errors are InvalidArgument naming `field` and the path
// (`attachment.ips[1]: ...`). Addresses come out sorted and unique.
absl::StatusOr<Attachment> AttachmentFromApi(const v1::Attachment& a, const std::string& field);

struct AttachmentChange {
  State state;
  Attachments attachments;
  bool changed = false;          // state or attachments differ from the input
  uint64_t objects_changed = 0;  // pods created, changed or deleted
  std::vector<std::string> replaced;  // container ids removed to make room, sorted
  bool pod_known = false;             // the pod existed before (Attach only)
  bool found = false;                 // the attachment existed before
};

// Records `a` (see the file comment). `a.attach_time` is kept from the existing attachment
// when nothing else changed, so repeating an ADD changes nothing.
AttachmentChange Attach(const State& state, const Attachments& attachments, Attachment a);

// Removes attachment `container_id` and its addresses from its pod; a pod left with no
// addresses, labels, ports or nodeName (one only the attachment had created) is deleted.
// Unknown ids change nothing (found=false).
AttachmentChange Detach(const State& state, const Attachments& attachments,
                        const std::string& container_id);

// Re-asserts every attachment on `state` after an API write: each attached pod that exists
// has exactly its attachment's addresses, and no other pod holds them. Returns the number of
// pods changed, and adds their keys to `changed_pods` when set. Attachments apply in container
// id order (a later one takes a shared address from an earlier one's pod). Runs on every write,
// so it copies only the pods it may change (no whole-State copy) and walks the pods once (an
// index of the attached addresses' holders), not once per attachment.
uint64_t OverlayAttachments(const Attachments& attachments, State* state,
                            std::set<std::string>* changed_pods = nullptr);

// Keys ("namespace/name") of the attached pods.
std::set<std::string> AttachedPods(const Attachments& attachments);
// `base` with the attached pods added to attached_pods. `attachments` may be null.
compiler::CompileOptions WithAttachments(const compiler::CompileOptions& base,
                                         const Attachments* attachments);

// Whether the attachment's network namespace still exists (and is the same namespace).
bool NetnsAlive(const Attachment& a);
// The inode of the network namespace at `path`, 0 when it cannot be read.
uint64_t NetnsInode(const std::string& path);

// Container ids of attachments for which `alive` is false, sorted.
std::vector<std::string> StaleAttachments(const Attachments& attachments,
                                          const std::function<bool(const Attachment&)>& alive);

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_ATTACHMENTS_H_
