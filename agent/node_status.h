// Per-node status in a shared datastore: every agent publishes its node's realized generation,
// last sync result, datastore health and version, with a liveness that expires (a TTL) so that
// a dead agent shows as stale; any agent lists them all (`netpolctl status --all-nodes`).
//
// NodeStatusRegistry is where the records live (agent/etcd/node_status.h: a key per node and an
// etcd lease; agent/k8s/node_status.h: a coordination.k8s.io Lease per node). The publisher
// is the loop that keeps this node's record current.
//
// Thread safety: NodeStatusPublisher's methods are thread-safe; a registry is called from the
// publisher's thread (Publish, Withdraw) and from API threads (List) at once.
#ifndef NETPOL_AGENT_NODE_STATUS_H_
#define NETPOL_AGENT_NODE_STATUS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/netpol/v1/status_service.pb.h"

namespace netpol::agent {

class NodeStatusRegistry {
 public:
  virtual ~NodeStatusRegistry() = default;
  // Writes this node's record and renews its liveness for `status.ttl()`.
  virtual absl::Status Publish(const v1::NodeStatus& status) = 0;
  // Ends this node's liveness at once (a clean stop): its record stays, marked stale.
  virtual absl::Status Withdraw() = 0;
  // Every node's record, by name, `stale` set for those whose liveness expired.
  virtual absl::StatusOr<std::vector<v1::NodeStatus>> List() = 0;
  // Whether the objects at generation `older` are the objects at generation `newer` (nothing
  // changed in between). False when it cannot be told.
  virtual absl::StatusOr<bool> SameObjects(uint64_t older, uint64_t newer) = 0;
  // Whether generations mean the same on every node (etcd: revisions). When not (Kubernetes:
  // each agent counts its own), a node is current when its kernel holds every generation its
  // datastore delivered and its datastore is healthy (watching).
  virtual bool SharedGenerations() const { return true; }
};

// The record's fields that change with the node's state (everything but publish_time and
// stale), compared to decide whether a record must be rewritten before its renewal is due.
bool SameNodeState(const v1::NodeStatus& a, const v1::NodeStatus& b);

struct NodeStatusPublisherOptions {
  // How long a record keeps its node live without renewal (--node-status-ttl).
  absl::Duration ttl = absl::Seconds(30);
  // How often the node's state is compared with the last record written.
  absl::Duration poll_interval = absl::Milliseconds(200);
};

class NodeStatusPublisher {
 public:
  // `current` returns this node's state now (publish_time and ttl are filled here).
  NodeStatusPublisher(NodeStatusRegistry* registry, std::function<v1::NodeStatus()> current,
                      NodeStatusPublisherOptions options);
  ~NodeStatusPublisher();
  // Starts the loop: a record whenever the state changes, and at least every ttl/3.
  void Start();
  // Ends the loop and withdraws the node's liveness.
  void Stop();

 private:
  void Run();

  NodeStatusRegistry* const registry_;
  const std::function<v1::NodeStatus()> current_;
  const NodeStatusPublisherOptions options_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_NODE_STATUS_H_
