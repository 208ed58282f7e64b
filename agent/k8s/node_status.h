// Node status records in Kubernetes (agent/node_status.h), the way kubelet heartbeats: one
// coordination.k8s.io/v1 Lease per node in one namespace (--node-status-namespace, default the
// agent's own: $POD_NAMESPACE, else kube-system), named "netpol-<node>" and labelled
// netpol.io/node-status=true:
//
//   spec.holderIdentity         the node name; cleared at a clean stop
//   spec.leaseDurationSeconds   the TTL (--node-status-ttl)
//   spec.renewTime              set at every publication (at least every third of the TTL)
//   annotation netpol.io/node-status   the NodeStatus as JSON
//
// A Lease whose holder is cleared, or whose renewTime + leaseDurationSeconds is past (by the
// answering agent's clock), is stale. The agent needs get, list, create and update on leases
// in that namespace only (deploy/20-rbac.yaml).
#ifndef NETPOL_AGENT_K8S_NODE_STATUS_H_
#define NETPOL_AGENT_K8S_NODE_STATUS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/k8s/client.h"
#include "agent/node_status.h"

namespace netpol::agent::k8s {

inline constexpr char kNodeStatusLabel[] = "netpol.io/node-status";
inline constexpr char kNodeStatusAnnotation[] = "netpol.io/node-status";

// The Lease name of a node: "netpol-<node>", shortened with a hash suffix when longer than a
// Kubernetes name may be.
std::string LeaseName(const std::string& node);

class KubernetesNodeStatus : public NodeStatusRegistry {
 public:
  KubernetesNodeStatus(ClusterConfig cluster, std::string ns, std::string node)
      : client_(std::move(cluster)), ns_(std::move(ns)), node_(std::move(node)) {}

  absl::Status Publish(const v1::NodeStatus& status) override;
  absl::Status Withdraw() override;
  absl::StatusOr<std::vector<v1::NodeStatus>> List() override;
  absl::StatusOr<bool> SameObjects(uint64_t older, uint64_t newer) override {
    return older == newer;
  }
  bool SharedGenerations() const override { return false; }

 private:
  // Writes the Lease (create, or update at the last resourceVersion). `holder` empty releases.
  absl::Status Write(const v1::NodeStatus& status, bool release)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Path(bool with_name) const;

  Client client_;
  const std::string ns_;
  const std::string node_;
  absl::Mutex mu_;
  std::string resource_version_ ABSL_GUARDED_BY(mu_);  // empty: read it first
  std::string acquire_time_ ABSL_GUARDED_BY(mu_);
  v1::NodeStatus last_ ABSL_GUARDED_BY(mu_);
  bool published_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace netpol::agent::k8s

#endif  // NETPOL_AGENT_K8S_NODE_STATUS_H_
