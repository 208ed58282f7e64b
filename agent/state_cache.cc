// The state cache. See state_cache.h.
#include "agent/state_cache.h"

#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/durable_file.h"
#include "agent/log.h"
#include "api/convert.h"
#include "api/netpol/v1/object_service.pb.h"
#include "engine/model/loader.h"
#include "engine/util/status_macros.h"

namespace netpol::agent {

using api::FromApiTrusted;
using api::ToApi;

namespace {

constexpr DurableFormat kFormat{"netpol-datastore-cache", 1, "datastore cache"};

void PutU32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutI64(int64_t v, std::string* out) {
  const uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((u >> (8 * i)) & 0xff));
}
void PutString(const std::string& s, std::string* out) {
  PutU32(static_cast<uint32_t>(s.size()), out);
  out->append(s);
}

// Reads from the front of `*in`, consuming what it reads; false when too short.
bool GetU64(absl::string_view* in, int bytes, uint64_t* v) {
  if (in->size() < static_cast<size_t>(bytes)) return false;
  *v = 0;
  for (int i = 0; i < bytes; ++i) {
    *v |= static_cast<uint64_t>(static_cast<unsigned char>((*in)[i])) << (8 * i);
  }
  in->remove_prefix(bytes);
  return true;
}
bool GetString(absl::string_view* in, std::string* s) {
  uint64_t n;
  if (!GetU64(in, 4, &n) || in->size() < n) return false;
  s->assign(in->data(), n);
  in->remove_prefix(n);
  return true;
}

}  // namespace

StateCache::StateCache(std::string dir, std::string source)
    : dir_(std::move(dir)), path_(dir_ + "/" + kFileName), source_(std::move(source)) {
  status_.path = path_;
}

StateCache::~StateCache() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

std::string StateCache::Encode(const std::string& source, const std::string& version,
                               absl::Time saved_at, const State& state) {
  v1::ListResponse objects;
  for (const auto& [k, ns] : state.namespaces) *objects.add_objects()->mutable_namespace_() = ToApi(ns);
  for (const auto& [k, pod] : state.pods) *objects.add_objects()->mutable_pod() = ToApi(pod);
  for (const auto& [k, np] : state.policies) {
    *objects.add_objects()->mutable_network_policy() = ToApi(np);
  }
  for (const auto& [k, cnp] : state.cluster_policies) {
    *objects.add_objects()->mutable_cluster_network_policy() = ToApi(cnp);
  }
  for (const auto& [k, node] : state.nodes) *objects.add_objects()->mutable_node() = ToApi(node);
  std::string payload;
  PutString(source, &payload);
  PutString(version, &payload);
  PutI64(absl::ToUnixNanos(saved_at), &payload);
  objects.AppendToString(&payload);
  return EncodeDurable(kFormat, payload);
}

absl::StatusOr<std::pair<std::string, CachedState>> StateCache::Decode(const std::string& bytes) {
  ASSIGN_OR_RETURN(std::string payload, DecodeDurable(kFormat, bytes));
  absl::string_view in(payload);
  std::pair<std::string, CachedState> out;
  uint64_t nanos;
  if (!GetString(&in, &out.first) || !GetString(&in, &out.second.version) ||
      !GetU64(&in, 8, &nanos)) {
    return absl::DataLossError("datastore cache: truncated header fields");
  }
  out.second.saved_at = absl::FromUnixNanos(static_cast<int64_t>(nanos));
  v1::ListResponse objects;
  if (!objects.ParseFromArray(in.data(), static_cast<int>(in.size()))) {
    return absl::DataLossError("datastore cache: the objects do not parse");
  }
  for (const v1::Object& o : objects.objects()) {
    ASSIGN_OR_RETURN(Object obj, FromApiTrusted(o));
    Upsert(obj, &out.second.state);
  }
  return out;
}

absl::StatusOr<CachedState> StateCache::Load() const {
  absl::StatusOr<std::string> bytes = ReadWholeFile(path_);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<std::pair<std::string, CachedState>> decoded = Decode(*bytes);
  if (!decoded.ok()) {
    return absl::Status(decoded.status().code(),
                        absl::StrCat(path_, ": ", decoded.status().message()));
  }
  if (decoded->first != source_) {
    return absl::NotFoundError(absl::StrCat(path_, " holds the state of ", decoded->first,
                                            ", not of ", source_));
  }
  return std::move(decoded->second);
}

absl::Status StateCache::Save(const State& state, const std::string& version) {
  absl::MutexLock s(&save_mu_);
  const absl::Time now = absl::Now();
  absl::Status st = WriteDurably(dir_, path_, Encode(source_, version, now, state));
  absl::MutexLock l(&mu_);
  ++status_.saves;
  status_.last_error = st;
  if (st.ok()) {
    status_.saved_version = version;
    status_.saved_at = now;
  }
  return st;
}

void StateCache::Offer(std::shared_ptr<const State> state, std::string version) {
  absl::MutexLock l(&mu_);
  if (stopping_) return;
  pending_ = std::move(state);
  pending_version_ = std::move(version);
  ++offered_;
  if (!writer_.joinable()) writer_ = std::thread([this] { Run(); });
}

void StateCache::Flush() {
  absl::MutexLock l(&mu_);
  const uint64_t target = offered_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return written_ >= target || (stopping_ && !writer_.joinable());
  };
  mu_.Await(absl::Condition(&done));
}

void StateCache::Run() {
  absl::MutexLock l(&mu_);
  for (;;) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return pending_ != nullptr || stopping_;
    };
    mu_.Await(absl::Condition(&ready));
    if (pending_ == nullptr) return;  // stopping with nothing left to write
    std::shared_ptr<const State> state = std::move(pending_);
    pending_ = nullptr;
    const std::string version = std::move(pending_version_);
    const uint64_t covers = offered_;
    mu_.Unlock();
    absl::Status st = Save(*state, version);
    if (!st.ok()) {
      LogWarning(absl::StrCat("cannot save the datastore cache (version ", version,
                              "): ", st.ToString(), "; a restart while the datastore is "
                              "unreachable would enforce an older state"));
    }
    mu_.Lock();
    written_ = covers;
  }
}

StateCacheStatus StateCache::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

}  // namespace netpol::agent
