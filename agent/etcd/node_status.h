// Node status records in etcd (agent/node_status.h). Under the status prefix (--etcd-status-prefix,
// default "/netpol/status/v1/", which must not overlap the objects' prefix so no node's watch
// sees them):
//
//   <status-prefix>nodes/<node>   the record: a NodeStatus as JSON, kept after the agent is gone
//   <status-prefix>live/<node>    attached to the node's etcd lease (TTL = the record's ttl),
//                                 renewed at every publication; etcd deletes it when the lease
//                                 expires and the agent revokes it on a clean stop
//
// A record without its live key is stale. A node removed for good leaves its record until it
// is deleted (`etcdctl del <status-prefix>nodes/<node>`).
#ifndef NETPOL_AGENT_ETCD_NODE_STATUS_H_
#define NETPOL_AGENT_ETCD_NODE_STATUS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/etcd/client.h"
#include "agent/node_status.h"

namespace netpol::agent::etcd {

inline constexpr char kDefaultStatusPrefix[] = "/netpol/status/v1/";

class EtcdNodeStatus : public NodeStatusRegistry {
 public:
  // `status_prefix` must start and end with '/' and neither it nor `objects_prefix` may be a
  // prefix of the other. InvalidArgument naming the flag otherwise.
  static absl::StatusOr<std::unique_ptr<EtcdNodeStatus>> Create(Client* client,
                                                                std::string status_prefix,
                                                                const std::string& objects_prefix,
                                                                std::string node_name);

  absl::Status Publish(const v1::NodeStatus& status) override;
  absl::Status Withdraw() override;
  absl::StatusOr<std::vector<v1::NodeStatus>> List() override;
  // No key under the objects' prefix at `newer` has a mod_revision above `older`, and as many
  // keys exist at both revisions (so none was deleted). FailedPrecondition-like errors from
  // etcd (e.g. `older` compacted) are returned.
  absl::StatusOr<bool> SameObjects(uint64_t older, uint64_t newer) override;

  std::string RecordKey(const std::string& node) const;
  std::string LiveKey(const std::string& node) const;

 private:
  EtcdNodeStatus(Client* client, std::string prefix, std::string objects_prefix,
                 std::string node)
      : client_(client),
        prefix_(std::move(prefix)),
        objects_prefix_(std::move(objects_prefix)),
        node_(std::move(node)) {}

  Client* const client_;
  const std::string prefix_;
  const std::string objects_prefix_;
  const std::string node_;
  absl::Mutex mu_;
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none granted (or lost)
};

}  // namespace netpol::agent::etcd

#endif  // NETPOL_AGENT_ETCD_NODE_STATUS_H_
