// Node status Leases. See node_status.h.
#include "agent/k8s/node_status.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace netpol::agent::k8s {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr absl::Duration kRequestTimeout = absl::Seconds(10);

// Kubernetes MicroTime: RFC 3339 with microseconds, UTC.
std::string MicroTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

Value Str(const std::string& s) {
  Value v;
  v.set_string_value(s);
  return v;
}

const Value* Field(const Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}
const Struct* Object(const Struct& s, const std::string& name) {
  const Value* v = Field(s, name);
  return v != nullptr && v->has_struct_value() ? &v->struct_value() : nullptr;
}
std::string String(const Struct* s, const std::string& name) {
  if (s == nullptr) return "";
  const Value* v = Field(*s, name);
  return v != nullptr && v->kind_case() == Value::kStringValue ? v->string_value() : "";
}

absl::StatusOr<Struct> ParseJson(const std::string& body, const std::string& what) {
  Struct out;
  if (!google::protobuf::util::JsonStringToMessage(body, &out).ok()) {
    return absl::InternalError(absl::StrCat(what, ": the answer is not a JSON object"));
  }
  return out;
}

absl::Status HttpError(const std::string& what, const HttpResponse& r) {
  const std::string msg = absl::StrCat(what, ": HTTP ", r.status, ": ", StatusMessage(r.body));
  if (r.status == 403) return absl::PermissionDeniedError(msg);
  if (r.status == 404) return absl::NotFoundError(msg);
  if (r.status == 409) return absl::AbortedError(msg);
  return absl::UnavailableError(msg);
}

}  // namespace

std::string LeaseName(const std::string& node) {
  std::string name = "netpol-" + node;
  if (name.size() <= 253) return name;
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : node) h = (h ^ c) * 16777619u;
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%08x", h);
  return absl::StrCat(name.substr(0, 253 - 9), "-", hex);
}

std::string KubernetesNodeStatus::Path(bool with_name) const {
  std::string p = absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", ns_, "/leases");
  if (with_name) absl::StrAppend(&p, "/", LeaseName(node_));
  return p;
}

absl::Status KubernetesNodeStatus::Publish(const v1::NodeStatus& status) {
  absl::MutexLock l(&mu_);
  absl::Status st = Write(status, false);
  if (st.ok()) {
    last_ = status;
    published_ = true;
  }
  return st;
}

absl::Status KubernetesNodeStatus::Withdraw() {
  absl::MutexLock l(&mu_);
  if (!published_) return absl::OkStatus();
  return Write(last_, true);
}

absl::Status KubernetesNodeStatus::Write(const v1::NodeStatus& status, bool release) {
  const std::string what = absl::StrCat("lease ", ns_, "/", LeaseName(node_));
  if (resource_version_.empty()) {
    absl::StatusOr<HttpResponse> got = client_.Get(Path(true), kRequestTimeout);
    if (!got.ok()) return got.status();
    if (got->status == 200) {
      absl::StatusOr<Struct> lease = ParseJson(got->body, what);
      if (!lease.ok()) return lease.status();
      const Struct* meta = Object(*lease, "metadata");
      const Struct* spec = Object(*lease, "spec");
      resource_version_ = String(meta, "resourceVersion");
      acquire_time_ = String(spec, "acquireTime");
    } else if (got->status != 404) {
      return HttpError(absl::StrCat("get ", what), *got);
    }
  }
  const absl::Time now = absl::Now();
  if (acquire_time_.empty()) acquire_time_ = MicroTime(now);
  v1::NodeStatus record = status;
  record.clear_stale();
  record.clear_current();
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(record, &json).ok()) {
    return absl::InternalError("node status: cannot write JSON");
  }
  Struct lease;
  (*lease.mutable_fields())["apiVersion"] = Str("coordination.k8s.io/v1");
  (*lease.mutable_fields())["kind"] = Str("Lease");
  Struct* meta = (*lease.mutable_fields())["metadata"].mutable_struct_value();
  (*meta->mutable_fields())["name"] = Str(LeaseName(node_));
  (*meta->mutable_fields())["namespace"] = Str(ns_);
  if (!resource_version_.empty()) {
    (*meta->mutable_fields())["resourceVersion"] = Str(resource_version_);
  }
  Struct* labels = (*meta->mutable_fields())["labels"].mutable_struct_value();
  (*labels->mutable_fields())["app.kubernetes.io/name"] = Str("netpol-agent");
  (*labels->mutable_fields())[kNodeStatusLabel] = Str("true");
  Struct* annotations = (*meta->mutable_fields())["annotations"].mutable_struct_value();
  (*annotations->mutable_fields())[kNodeStatusAnnotation] = Str(json);
  Struct* spec = (*lease.mutable_fields())["spec"].mutable_struct_value();
  (*spec->mutable_fields())["holderIdentity"] = Str(release ? "" : node_);
  (*spec->mutable_fields())["leaseDurationSeconds"].set_number_value(static_cast<double>(
      std::max<int64_t>(1, google::protobuf::util::TimeUtil::DurationToSeconds(status.ttl()))));
  (*spec->mutable_fields())["acquireTime"] = Str(acquire_time_);
  (*spec->mutable_fields())["renewTime"] = Str(MicroTime(now));
  std::string body;
  if (!google::protobuf::util::MessageToJsonString(lease, &body).ok()) {
    return absl::InternalError("node status: cannot write the Lease");
  }
  const bool create = resource_version_.empty();
  absl::StatusOr<HttpResponse> r = client_.Send(create ? "POST" : "PUT", Path(!create), body,
                                                kRequestTimeout);
  if (!r.ok()) return r.status();
  if (r->status != 200 && r->status != 201) {
    // Someone else changed it (or it was deleted): read it again next time.
    resource_version_.clear();
    return HttpError(absl::StrCat(create ? "create " : "update ", what), *r);
  }
  absl::StatusOr<Struct> written = ParseJson(r->body, what);
  if (!written.ok()) return written.status();
  resource_version_ = String(Object(*written, "metadata"), "resourceVersion");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::NodeStatus>> KubernetesNodeStatus::List() {
  const std::string what = absl::StrCat("leases in ", ns_);
  absl::StatusOr<HttpResponse> r = client_.Get(
      absl::StrCat(Path(false), "?labelSelector=netpol.io%2Fnode-status%3Dtrue"), kRequestTimeout);
  if (!r.ok()) return r.status();
  if (r->status != 200) return HttpError(absl::StrCat("list ", what), *r);
  absl::StatusOr<Struct> list = ParseJson(r->body, what);
  if (!list.ok()) return list.status();
  std::vector<v1::NodeStatus> out;
  const Value* items = Field(*list, "items");
  if (items == nullptr || !items->has_list_value()) return out;
  const absl::Time now = absl::Now();
  for (const Value& item : items->list_value().values()) {
    if (!item.has_struct_value()) continue;
    const Struct* meta = Object(item.struct_value(), "metadata");
    const Struct* spec = Object(item.struct_value(), "spec");
    v1::NodeStatus s;
    const Struct* annotations = meta != nullptr ? Object(*meta, "annotations") : nullptr;
    google::protobuf::util::JsonParseOptions popts;
    popts.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(String(annotations, kNodeStatusAnnotation),
                                                     &s, popts)
             .ok()) {
      s.Clear();
    }
    if (s.node_name().empty()) s.set_node_name(String(meta, "name"));
    const std::string holder = String(spec, "holderIdentity");
    double duration = 0;
    if (spec != nullptr) {
      const Value* d = Field(*spec, "leaseDurationSeconds");
      if (d != nullptr && d->kind_case() == Value::kNumberValue) duration = d->number_value();
    }
    absl::Time renewed;
    std::string err;
    const bool parsed =
        absl::ParseTime(absl::RFC3339_full, String(spec, "renewTime"), &renewed, &err);
    s.set_stale(holder.empty() || !parsed ||
                now > renewed + absl::Seconds(static_cast<int64_t>(duration)));
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const v1::NodeStatus& a, const v1::NodeStatus& b) {
    return a.node_name() < b.node_name();
  });
  return out;
}

}  // namespace netpol::agent::k8s
