// The embedded object store. See store.h.
#include "agent/store.h"

#include <sys/stat.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/convert.h"
#include "agent/durable_file.h"
#include "api/netpol/v1/object_service.pb.h"
#include "engine/model/loader.h"
#include "engine/util/status_macros.h"

namespace netpol::agent {
namespace {

constexpr DurableFormat kFormat{"netpol-state", 1, "state"};

}  // namespace

Store::Store(std::string dir, State state, uint64_t generation)
    : dir_(std::move(dir)), path_(dir_ + "/" + kFileName) {
  current_.state = std::make_shared<const State>(std::move(state));
  current_.generation = generation;
}

std::string Store::Encode(const State& state, uint64_t generation) {
  v1::ListResponse file;
  file.set_generation(generation);
  for (const auto& [k, ns] : state.namespaces) *file.add_objects()->mutable_namespace_() = ToApi(ns);
  for (const auto& [k, pod] : state.pods) *file.add_objects()->mutable_pod() = ToApi(pod);
  for (const auto& [k, np] : state.policies) {
    *file.add_objects()->mutable_network_policy() = ToApi(np);
  }
  std::string payload;
  file.SerializeToString(&payload);
  return EncodeDurable(kFormat, payload);
}

absl::StatusOr<std::pair<State, uint64_t>> Store::Decode(const std::string& bytes) {
  ASSIGN_OR_RETURN(std::string payload, DecodeDurable(kFormat, bytes));
  v1::ListResponse file;
  if (!file.ParseFromString(payload)) return absl::DataLossError("state file does not parse");
  State state;
  for (const v1::Object& o : file.objects()) {
    ASSIGN_OR_RETURN(Object obj, FromApiTrusted(o));
    Upsert(obj, &state);
  }
  return std::make_pair(std::move(state), file.generation());
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("state directory: empty path");
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus("create state directory " + dir, errno);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus("state directory " + dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError("state directory " + dir + ": not a directory");
  }
  const std::string path = dir + "/" + kFileName;
  absl::StatusOr<std::string> bytes = ReadWholeFile(path);
  if (!bytes.ok()) {
    if (absl::IsNotFound(bytes.status())) {
      return std::unique_ptr<Store>(new Store(dir, State{}, 0));
    }
    return bytes.status();
  }
  auto decoded = Decode(*bytes);
  if (!decoded.ok()) {
    return absl::Status(decoded.status().code(),
                        absl::StrCat(path, ": ", decoded.status().message(),
                                     "; refusing to start from it (move it away to start empty, "
                                     "or restore it from a backup)"));
  }
  return std::unique_ptr<Store>(
      new Store(dir, std::move(decoded->first), decoded->second));
}

Snapshot Store::Current() const {
  absl::MutexLock l(&mu_);
  return current_;
}

absl::Status Store::Persist(const State& state, uint64_t generation) {
  return WriteDurably(dir_, path_, Encode(state, generation));
}

absl::StatusOr<Snapshot> Store::Update(const Mutation& mutate) {
  absl::MutexLock w(&write_mu_);
  Snapshot base = Current();
  ASSIGN_OR_RETURN(std::optional<Change> change, mutate(*base.state));
  if (!change) return base;
  const uint64_t next = base.generation + 1;
  RETURN_IF_ERROR(Persist(change->state, next));
  Snapshot snap;
  snap.state = std::make_shared<const State>(std::move(change->state));
  snap.generation = next;
  snap.changes = base.changes + change->objects_changed;
  absl::MutexLock l(&mu_);
  current_ = snap;
  return snap;
}

}  // namespace netpol::agent
