// Node status records in etcd. See node_status.h.
#include "agent/etcd/node_status.h"

#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/etcd/keys.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace netpol::agent::etcd {
namespace {

constexpr char kNodesDir[] = "nodes/";
constexpr char kLiveDir[] = "live/";

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdNodeStatus>> EtcdNodeStatus::Create(
    Client* client, std::string status_prefix, const std::string& objects_prefix,
    std::string node_name) {
  if (status_prefix.size() < 2 || status_prefix.front() != '/' || status_prefix.back() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "--etcd-status-prefix \"", status_prefix, "\": must start and end with '/'"));
  }
  if (absl::StartsWith(status_prefix, objects_prefix) ||
      absl::StartsWith(objects_prefix, status_prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--etcd-status-prefix \"", status_prefix, "\" and --etcd-prefix \"",
                     objects_prefix, "\" overlap: node status keys must lie outside the objects"));
  }
  return std::unique_ptr<EtcdNodeStatus>(
      new EtcdNodeStatus(client, std::move(status_prefix), objects_prefix, std::move(node_name)));
}

std::string EtcdNodeStatus::RecordKey(const std::string& node) const {
  return absl::StrCat(prefix_, kNodesDir, node);
}
std::string EtcdNodeStatus::LiveKey(const std::string& node) const {
  return absl::StrCat(prefix_, kLiveDir, node);
}

absl::Status EtcdNodeStatus::Publish(const v1::NodeStatus& status) {
  using google::protobuf::util::TimeUtil;
  const absl::Duration ttl =
      absl::Nanoseconds(TimeUtil::DurationToNanoseconds(status.ttl()));
  absl::MutexLock l(&mu_);
  if (lease_ != 0) {
    absl::StatusOr<int64_t> left = client_->LeaseKeepAliveOnce(lease_);
    if (!left.ok()) return left.status();
    if (*left <= 0) lease_ = 0;  // expired meanwhile: the live key is gone with it
  }
  if (lease_ == 0) {
    absl::StatusOr<int64_t> id = client_->LeaseGrant(ttl);
    if (!id.ok()) return id.status();
    lease_ = *id;
  }
  v1::NodeStatus record = status;
  record.clear_stale();
  std::string json;
  google::protobuf::util::JsonPrintOptions jopts;
  jopts.preserve_proto_field_names = false;
  if (auto st = google::protobuf::util::MessageToJsonString(record, &json, jopts); !st.ok()) {
    return absl::InternalError(absl::StrCat("node status: ", st.ToString()));
  }
  etcdserverpb::TxnRequest txn;
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(RecordKey(node_));
  put->set_value(json);
  put = txn.add_success()->mutable_request_put();
  put->set_key(LiveKey(node_));
  put->set_value(absl::StrCat(lease_));
  put->set_lease(lease_);
  absl::StatusOr<etcdserverpb::TxnResponse> r = client_->Txn(txn);
  if (!r.ok()) {
    // A lease that etcd no longer knows fails the put; grant a new one next time.
    if (absl::StrContains(r.status().message(), "lease not found")) lease_ = 0;
    return r.status();
  }
  return absl::OkStatus();
}

absl::Status EtcdNodeStatus::Withdraw() {
  absl::MutexLock l(&mu_);
  if (lease_ == 0) return absl::OkStatus();
  absl::Status st = client_->LeaseRevoke(lease_);
  lease_ = 0;
  return st;
}

absl::StatusOr<std::vector<v1::NodeStatus>> EtcdNodeStatus::List() {
  const std::string nodes = absl::StrCat(prefix_, kNodesDir);
  const std::string live = absl::StrCat(prefix_, kLiveDir);
  // Live keys first: a node that publishes between the two reads is then never seen stale.
  absl::StatusOr<ListResult> live_keys = client_->List(live, PrefixEnd(live));
  if (!live_keys.ok()) return live_keys.status();
  absl::StatusOr<ListResult> records = client_->List(nodes, PrefixEnd(nodes));
  if (!records.ok()) return records.status();
  std::map<std::string, bool> is_live;
  for (const etcdserverpb::KeyValue& kv : live_keys->kvs) {
    is_live[std::string(absl::StripPrefix(kv.key(), live))] = true;
  }
  std::vector<v1::NodeStatus> out;
  for (const etcdserverpb::KeyValue& kv : records->kvs) {
    const std::string name(absl::StripPrefix(kv.key(), nodes));
    v1::NodeStatus s;
    google::protobuf::util::JsonParseOptions popts;
    popts.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(kv.value(), &s, popts).ok()) {
      // A damaged record still shows its node, as stale with nothing known.
      s.Clear();
    }
    s.set_node_name(name);
    s.set_stale(!is_live.count(name));
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<bool> EtcdNodeStatus::SameObjects(uint64_t older, uint64_t newer) {
  if (older >= newer) return older == newer;
  const std::string end = PrefixEnd(objects_prefix_);
  // The most recently modified object key at `newer`.
  etcdserverpb::RangeRequest newest;
  newest.set_key(objects_prefix_);
  newest.set_range_end(end);
  newest.set_revision(static_cast<int64_t>(newer));
  newest.set_keys_only(true);
  newest.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  newest.set_sort_target(etcdserverpb::RangeRequest::MOD);
  newest.set_limit(1);
  absl::StatusOr<etcdserverpb::RangeResponse> r = client_->Range(newest);
  if (!r.ok()) return r.status();
  if (r->kvs_size() > 0 && r->kvs(0).mod_revision() > static_cast<int64_t>(older)) return false;
  // Nothing written since `older` is still there; a deletion shows in the key count.
  etcdserverpb::RangeRequest count;
  count.set_key(objects_prefix_);
  count.set_range_end(end);
  count.set_count_only(true);
  count.set_revision(static_cast<int64_t>(newer));
  absl::StatusOr<etcdserverpb::RangeResponse> at_newer = client_->Range(count);
  if (!at_newer.ok()) return at_newer.status();
  count.set_revision(static_cast<int64_t>(older));
  absl::StatusOr<etcdserverpb::RangeResponse> at_older = client_->Range(count);
  if (!at_older.ok()) return at_older.status();
  return at_older->count() == at_newer->count();
}

}  // namespace netpol::agent::etcd
