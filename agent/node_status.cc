// Publishing this node's status. See node_status.h.
#include "agent/node_status.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/log.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"

namespace netpol::agent {

bool SameNodeState(const v1::NodeStatus& a, const v1::NodeStatus& b) {
  v1::NodeStatus x = a, y = b;
  for (v1::NodeStatus* s : {&x, &y}) {
    s->clear_publish_time();
    s->clear_stale();
  }
  return google::protobuf::util::MessageDifferencer::Equals(x, y);
}

NodeStatusPublisher::NodeStatusPublisher(NodeStatusRegistry* registry,
                                         std::function<v1::NodeStatus()> current,
                                         NodeStatusPublisherOptions options)
    : registry_(registry), current_(std::move(current)), options_(options) {}

NodeStatusPublisher::~NodeStatusPublisher() { Stop(); }

void NodeStatusPublisher::Start() {
  absl::MutexLock l(&mu_);
  if (worker_.joinable() || stopping_) return;
  worker_ = std::thread([this] { Run(); });
}

void NodeStatusPublisher::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
  absl::Status st = registry_->Withdraw();
  if (!st.ok()) LogWarning(absl::StrCat("node status: cannot withdraw: ", st.ToString()));
}

void NodeStatusPublisher::Run() {
  using google::protobuf::util::TimeUtil;
  const absl::Duration renew_every = options_.ttl / 3;
  v1::NodeStatus last;
  bool published = false;
  absl::Time last_publish = absl::InfinitePast();
  std::string last_error;
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), published ? options_.poll_interval
                                                                : absl::ZeroDuration())) {
        return;
      }
    }
    v1::NodeStatus now = current_();
    *now.mutable_ttl() = TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(options_.ttl));
    const absl::Time t = absl::Now();
    if (published && SameNodeState(now, last) && t - last_publish < renew_every) continue;
    *now.mutable_publish_time() = TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
    absl::Status st = registry_->Publish(now);
    if (!st.ok()) {
      // Retried at the next poll; logged once per distinct error.
      if (st.ToString() != last_error) {
        LogWarning(absl::StrCat("node status: cannot publish (retrying): ", st.ToString()));
        last_error = st.ToString();
      }
      absl::MutexLock l(&mu_);
      auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Seconds(1))) return;
      continue;
    }
    if (!last_error.empty()) LogInfo("node status: published again");
    last_error.clear();
    last = std::move(now);
    published = true;
    last_publish = t;
  }
}

}  // namespace netpol::agent
