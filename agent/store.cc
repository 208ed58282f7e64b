// The embedded object store. See store.h.
#include "agent/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/durable_file.h"
#include "api/convert.h"
#include "api/netpol/v1/object_service.pb.h"
#include "engine/model/loader.h"
#include "engine/util/status_macros.h"

namespace netpol::agent {

using api::FromApiTrusted;
using api::KeyOf;
using api::ToApi;

namespace {

constexpr DurableFormat kFormat{"netpol-state", 1, "state"};
constexpr char kJournalHeader[] = "netpol-journal 1\n";
constexpr size_t kJournalHeaderSize = sizeof(kJournalHeader) - 1;
constexpr size_t kRecordHeaderSize = 20;
// No record is this large (a request holds a bounded number of objects); a header claiming
// more is damage, not a torn write.
constexpr uint32_t kMaxRecordBytes = 1u << 30;

uint32_t Crc(const char* data, size_t size) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(data), static_cast<uInt>(size)));
}

void PutU32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutU64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t GetU32(const char* in) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}
uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

v1::ObjectRef RefFromKey(v1::Kind kind, const std::string& key) {
  v1::ObjectRef ref;
  ref.set_kind(kind);
  if (api::IsClusterScoped(kind)) {
    ref.set_name(key);
  } else {
    size_t slash = key.find('/');
    ref.set_namespace_(key.substr(0, slash));
    ref.set_name(slash == std::string::npos ? std::string() : key.substr(slash + 1));
  }
  return ref;
}

// One journal record (header and payload) holding the objects of `keys` as `state` has them.
std::string EncodeRecord(const State& state, const ChangedKeys& keys, uint64_t generation) {
  v1::ListResponse upserts;
  v1::DeleteRequest deletes;
  upserts.set_generation(generation);
  for (const std::string& k : keys.namespaces) {
    auto it = state.namespaces.find(k);
    if (it != state.namespaces.end()) {
      *upserts.add_objects()->mutable_namespace_() = ToApi(it->second);
    } else {
      *deletes.add_refs() = RefFromKey(v1::NAMESPACE, k);
    }
  }
  for (const std::string& k : keys.pods) {
    auto it = state.pods.find(k);
    if (it != state.pods.end()) {
      *upserts.add_objects()->mutable_pod() = ToApi(it->second);
    } else {
      *deletes.add_refs() = RefFromKey(v1::POD, k);
    }
  }
  for (const std::string& k : keys.policies) {
    auto it = state.policies.find(k);
    if (it != state.policies.end()) {
      *upserts.add_objects()->mutable_network_policy() = ToApi(it->second);
    } else {
      *deletes.add_refs() = RefFromKey(v1::NETWORK_POLICY, k);
    }
  }
  for (const std::string& k : keys.cluster_policies) {
    auto it = state.cluster_policies.find(k);
    if (it != state.cluster_policies.end()) {
      *upserts.add_objects()->mutable_cluster_network_policy() = ToApi(it->second);
    } else {
      *deletes.add_refs() = RefFromKey(v1::CLUSTER_NETWORK_POLICY, k);
    }
  }
  for (const std::string& k : keys.nodes) {
    auto it = state.nodes.find(k);
    if (it != state.nodes.end()) {
      *upserts.add_objects()->mutable_node() = ToApi(it->second);
    } else {
      *deletes.add_refs() = RefFromKey(v1::NODE, k);
    }
  }
  const std::string u = upserts.SerializeAsString();
  const std::string d = deletes.SerializeAsString();
  std::string out(kRecordHeaderSize + 8 + u.size() + d.size(), '\0');
  char* p = out.data() + kRecordHeaderSize;
  PutU32(static_cast<uint32_t>(u.size()), p);
  std::memcpy(p + 4, u.data(), u.size());
  PutU32(static_cast<uint32_t>(d.size()), p + 4 + u.size());
  std::memcpy(p + 8 + u.size(), d.data(), d.size());
  const size_t payload = out.size() - kRecordHeaderSize;
  PutU32(static_cast<uint32_t>(payload), out.data());
  PutU64(generation, out.data() + 4);
  PutU32(Crc(p, payload), out.data() + 12);
  PutU32(Crc(out.data(), 16), out.data() + 16);
  return out;
}

// Applies one record's payload to `state`; adds what it touched to `keys`.
absl::Status ApplyRecord(const char* p, size_t size, uint64_t generation, State* state,
                         ChangedKeys* keys) {
  if (size < 8) return absl::DataLossError("record too short");
  const uint32_t usize = GetU32(p);
  if (usize > size - 8) return absl::DataLossError("record sections overrun it");
  const uint32_t dsize = GetU32(p + 4 + usize);
  if (8 + static_cast<size_t>(usize) + dsize != size) {
    return absl::DataLossError("record sections do not add up");
  }
  v1::ListResponse upserts;
  v1::DeleteRequest deletes;
  if (!upserts.ParseFromArray(p + 4, static_cast<int>(usize)) ||
      !deletes.ParseFromArray(p + 8 + usize, static_cast<int>(dsize))) {
    return absl::DataLossError("record does not parse");
  }
  if (upserts.generation() != generation) {
    return absl::DataLossError("record generation differs from its header");
  }
  for (const v1::ObjectRef& ref : deletes.refs()) {
    const std::string key = KeyOf(ref);
    switch (ref.kind()) {
      case v1::NAMESPACE:
        state->namespaces.erase(key);
        keys->namespaces.insert(key);
        break;
      case v1::POD:
        state->pods.erase(key);
        keys->pods.insert(key);
        break;
      case v1::NETWORK_POLICY:
        state->policies.erase(key);
        keys->policies.insert(key);
        break;
      case v1::CLUSTER_NETWORK_POLICY:
        state->cluster_policies.erase(key);
        keys->cluster_policies.insert(key);
        break;
      case v1::NODE:
        state->nodes.erase(key);
        keys->nodes.insert(key);
        break;
      default:
        return absl::DataLossError("record deletes an object of no known kind");
    }
  }
  for (const v1::Object& o : upserts.objects()) {
    ASSIGN_OR_RETURN(Object obj, FromApiTrusted(o));
    if (const Namespace* ns = obj.AsNamespace()) {
      keys->namespaces.insert(ns->name);
    } else if (const Pod* pod = obj.AsPod()) {
      keys->pods.insert(pod->Key());
    } else if (const ClusterNetworkPolicy* cnp = obj.AsClusterNetworkPolicy()) {
      keys->cluster_policies.insert(cnp->name);
    } else if (const Node* node = obj.AsNode()) {
      keys->nodes.insert(node->name);
    } else {
      keys->policies.insert(obj.AsNetworkPolicy()->Key());
    }
    Upsert(obj, state);
  }
  return absl::OkStatus();
}

struct Replayed {
  uint64_t generation = 0;
  uint64_t valid_bytes = 0;   // the journal's length without a torn last record
  bool torn = false;          // a torn last record was found (valid_bytes drops it)
  uint64_t records = 0;       // whole records in the journal (replayed or skipped)
  std::deque<std::pair<uint64_t, ChangedKeys>> log;
};

bool AllZero(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Replays the journal `bytes` onto `state` (at `generation`). Records at or below the
// snapshot's generation are skipped; the others must follow it one by one.
absl::StatusOr<Replayed> Replay(const std::string& bytes, uint64_t generation, State* state,
                                size_t log_limit) {
  if (bytes.compare(0, kJournalHeaderSize, kJournalHeader) != 0) {
    if (bytes.rfind("netpol-journal ", 0) == 0) {
      return absl::FailedPreconditionError(
          "journal format version is not supported (this agent reads 1)");
    }
    return absl::DataLossError("not a netpol state journal (bad header line)");
  }
  Replayed out;
  out.generation = generation;
  size_t off = kJournalHeaderSize;
  uint64_t prev = 0;
  bool first = true;
  while (off < bytes.size()) {
    const size_t left = bytes.size() - off;
    const char* h = bytes.data() + off;
    if (left < kRecordHeaderSize) {
      out.torn = true;  // the crash cut the last record's header
      break;
    }
    if (Crc(h, 16) != GetU32(h + 16)) {
      if (AllZero(h, left)) {  // space allocated for the last record, never written
        out.torn = true;
        break;
      }
      return absl::DataLossError(absl::StrCat("record at byte ", off, ": header checksum mismatch"));
    }
    const uint32_t size = GetU32(h);
    const uint64_t gen = GetU64(h + 4);
    if (size > kMaxRecordBytes) {
      return absl::DataLossError(absl::StrCat("record at byte ", off, ": size ", size, " too large"));
    }
    if (!first && gen != prev + 1) {
      return absl::DataLossError(absl::StrCat("record at byte ", off, ": generation ", gen,
                                              " follows ", prev));
    }
    if (left - kRecordHeaderSize < size) {
      out.torn = true;  // the crash cut the last record's payload
      break;
    }
    const char* p = h + kRecordHeaderSize;
    if (Crc(p, size) != GetU32(h + 12)) {
      if (left - kRecordHeaderSize == size) {  // the last record, partly written
        out.torn = true;
        break;
      }
      return absl::DataLossError(
          absl::StrCat("record at byte ", off, " (generation ", gen, "): checksum mismatch"));
    }
    if (gen > out.generation) {
      if (gen != out.generation + 1) {
        return absl::DataLossError(absl::StrCat("record at byte ", off, ": generation ", gen,
                                                " does not follow the snapshot's ",
                                                out.generation));
      }
      ChangedKeys keys;
      absl::Status s = ApplyRecord(p, size, gen, state, &keys);
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("record at byte ", off, " (generation ", gen,
                                                   "): ", s.message()));
      }
      out.generation = gen;
      out.log.emplace_back(gen, std::move(keys));
      if (out.log.size() > log_limit) out.log.pop_front();
    }
    prev = gen;
    first = false;
    off += kRecordHeaderSize + size;
    ++out.records;
  }
  out.valid_bytes = off;
  return out;
}

absl::Status Refusal(const std::string& path, const absl::Status& s) {
  return absl::Status(s.code(),
                      absl::StrCat(path, ": ", s.message(),
                                   "; refusing to start from it (move state.pb and state.journal "
                                   "away to start empty, or restore them from a backup)"));
}

}  // namespace

Store::Store(std::string dir, const Options& options)
    : dir_(std::move(dir)),
      path_(dir_ + "/" + kFileName),
      journal_path_(dir_ + "/" + kJournalName),
      options_(options) {}

Store::~Store() {
  absl::MutexLock w(&write_mu_);
  if (journal_fd_ >= 0) ::close(journal_fd_);
}

std::string Store::Encode(const State& state, uint64_t generation) {
  v1::ListResponse file;
  file.set_generation(generation);
  for (const auto& [k, ns] : state.namespaces) *file.add_objects()->mutable_namespace_() = ToApi(ns);
  for (const auto& [k, pod] : state.pods) *file.add_objects()->mutable_pod() = ToApi(pod);
  for (const auto& [k, np] : state.policies) {
    *file.add_objects()->mutable_network_policy() = ToApi(np);
  }
  for (const auto& [k, cnp] : state.cluster_policies) {
    *file.add_objects()->mutable_cluster_network_policy() = ToApi(cnp);
  }
  for (const auto& [k, node] : state.nodes) *file.add_objects()->mutable_node() = ToApi(node);
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
  return Open(dir, Options());
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir,
                                                   const Options& options) {
  RETURN_IF_ERROR(PrepareStateDirectory(dir));
  std::unique_ptr<Store> store(new Store(dir, options));
  absl::MutexLock w(&store->write_mu_);
  absl::MutexLock l(&store->mu_);

  // 1. The snapshot (absent: empty at generation 0, written now so both files exist).
  State state;
  uint64_t generation = 0;
  absl::StatusOr<std::string> bytes = ReadWholeFile(store->path_);
  if (bytes.ok()) {
    auto decoded = Decode(*bytes);
    if (!decoded.ok()) return Refusal(store->path_, decoded.status());
    state = std::move(decoded->first);
    generation = decoded->second;
    store->snapshot_bytes_ = bytes->size();
    bytes->clear();
    bytes->shrink_to_fit();
  } else if (!absl::IsNotFound(bytes.status())) {
    return bytes.status();
  }

  // 2. The journal (absent: empty; an older agent wrote only the snapshot).
  absl::StatusOr<std::string> journal = ReadWholeFile(store->journal_path_);
  uint64_t valid_bytes = 0;
  if (journal.ok()) {
    auto replayed = Replay(*journal, generation, &state, options.change_log_generations);
    if (!replayed.ok()) return Refusal(store->journal_path_, replayed.status());
    valid_bytes = replayed->valid_bytes;
    store->journal_records_ = replayed->records;
    store->log_first_ = generation + 1;
    for (auto& [gen, keys] : replayed->log) store->LogChange(gen, std::move(keys));
    generation = replayed->generation;
    if (valid_bytes < journal->size()) {
      // Only a torn last record is tolerated; it was never acknowledged.
      if (::truncate(store->journal_path_.c_str(), static_cast<off_t>(valid_bytes)) != 0) {
        return ErrnoStatus("truncate the torn last record of " + store->journal_path_, errno);
      }
    }
  } else if (!absl::IsNotFound(journal.status())) {
    return journal.status();
  }
  if (!bytes.ok()) {  // no snapshot yet
    std::string encoded = Encode(state, generation);
    RETURN_IF_ERROR(WriteDurably(dir, store->path_, encoded));
    store->snapshot_bytes_ = encoded.size();
  }
  if (!journal.ok()) {
    RETURN_IF_ERROR(WriteDurably(dir, store->journal_path_, kJournalHeader));
    valid_bytes = kJournalHeaderSize;
  }
  RETURN_IF_ERROR(store->OpenJournal(valid_bytes));
  struct stat snapshot;
  if (::stat(store->path_.c_str(), &snapshot) == 0) {
    store->snapshot_time_ = absl::TimeFromTimespec(snapshot.st_mtim);
  }
  store->log_first_ = store->log_.empty() ? generation + 1 : store->log_first_;
  store->current_.state = std::make_shared<const State>(std::move(state));
  store->current_.generation = generation;
  store->PublishHealth();
  return store;
}

absl::Status Store::OpenJournal(uint64_t valid_bytes) {
  journal_fd_ = ::open(journal_path_.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (journal_fd_ < 0) return ErrnoStatus("open " + journal_path_, errno);
  if (::fsync(journal_fd_) != 0) return ErrnoStatus("fsync " + journal_path_, errno);
  journal_bytes_ = valid_bytes;
  return absl::OkStatus();
}

Snapshot Store::Current() const {
  absl::MutexLock l(&mu_);
  return current_;
}

uint64_t Store::journal_bytes() const {
  absl::MutexLock w(&write_mu_);
  return journal_bytes_;
}

uint64_t Store::compactions() const {
  absl::MutexLock w(&write_mu_);
  return compactions_;
}

DatastoreHealth Store::Health() const {
  absl::MutexLock l(&mu_);
  return health_;
}

void Store::PublishHealth() {
  DatastoreHealth& h = health_;
  h.kind = DatastoreHealth::Kind::kEmbedded;
  h.healthy = last_write_error_.ok() && broken_.ok();
  h.last_write_error = last_write_error_;
  h.directory = dir_;
  h.journal_records = journal_records_;
  h.journal_bytes = journal_bytes_;
  h.last_compaction_time = snapshot_time_;
  h.compactions = compactions_;
  h.last_compaction_error = last_compaction_error_;
}

int Store::Fdatasync(int fd) const {
  return options_.fdatasync ? options_.fdatasync(fd) : ::fdatasync(fd);
}

absl::Status Store::Append(const State& state, const ChangedKeys& keys, uint64_t generation,
                           const std::function<void()>& written) {
  RETURN_IF_ERROR(broken_);
  const std::string record = EncodeRecord(state, keys, generation);
  absl::Status s;
  size_t done = 0;
  while (done < record.size()) {
    ssize_t n = ::pwrite(journal_fd_, record.data() + done, record.size() - done,
                         static_cast<off_t>(journal_bytes_ + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      s = ErrnoStatus("write " + journal_path_, errno);
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (s.ok() && written) written();
  if (s.ok() && Fdatasync(journal_fd_) != 0) s = ErrnoStatus("fsync " + journal_path_, errno);
  if (s.ok()) {
    journal_bytes_ += record.size();
    ++journal_records_;
    return s;
  }
  // Take the record back so that the next one does not follow a damaged one; when that fails
  // too, refuse further writes (a restart replays what is on disk).
  if (::ftruncate(journal_fd_, static_cast<off_t>(journal_bytes_)) != 0 ||
      Fdatasync(journal_fd_) != 0) {
    broken_ = absl::UnavailableError(
        absl::StrCat(journal_path_, ": a failed write could not be undone (", s.message(),
                     "); restart the agent"));
  }
  return s;
}

absl::Status Store::Compact(const State& state, uint64_t generation) {
  // The snapshot first: until its rename the old snapshot and journal hold everything; after
  // it, the journal's records are all at or below `generation` and replay skips them.
  std::string encoded = Encode(state, generation);
  RETURN_IF_ERROR(WriteDurably(dir_, path_, encoded));
  snapshot_bytes_ = encoded.size();
  snapshot_time_ = absl::Now();
  encoded.clear();
  encoded.shrink_to_fit();
  if (::ftruncate(journal_fd_, static_cast<off_t>(kJournalHeaderSize)) != 0) {
    return ErrnoStatus("truncate " + journal_path_, errno);
  }
  // The next record goes right after the header whether or not this fsync succeeds (a record
  // written past the end would leave a hole of zeros before it).
  journal_bytes_ = kJournalHeaderSize;
  journal_records_ = 0;
  ++compactions_;
  if (Fdatasync(journal_fd_) != 0) return ErrnoStatus("fsync " + journal_path_, errno);
  return absl::OkStatus();
}

void Store::LogChange(uint64_t generation, ChangedKeys keys) {
  if (log_.empty()) log_first_ = generation;
  log_keys_ += keys.size();
  log_.push_back(std::move(keys));
  while (!log_.empty() && (log_.size() > options_.change_log_generations ||
                           log_keys_ > options_.change_log_keys)) {
    log_keys_ -= log_.front().size();
    log_.pop_front();
    ++log_first_;
  }
}

absl::StatusOr<Snapshot> Store::Update(const Mutation& mutate) {
  absl::MutexLock w(&write_mu_);
  Snapshot base = Current();
  ASSIGN_OR_RETURN(std::optional<Change> change, mutate(*base.state));
  if (!change) return base;
  const uint64_t next = base.generation + 1;
  ChangedKeys keys = ResolveTouched(*base.state, change->state, change->touched);
  Snapshot snap;
  snap.state = std::make_shared<const State>(std::move(change->state));
  snap.generation = next;
  snap.changes = base.changes + change->objects_changed;
  // With hooks, the reconciler compiles and commits the change while it is fsynced.
  bool handed = false;
  std::function<void()> written;
  if (hooks_.written) {
    written = [&] {
      handed = true;
      hooks_.written(snap, keys);
    };
  }
  last_write_error_ = Append(*snap.state, keys, next, written);
  if (!last_write_error_.ok()) {
    if (handed && hooks_.failed) hooks_.failed(next);
    absl::MutexLock l(&mu_);
    PublishHealth();
    return last_write_error_;
  }
  {
    absl::MutexLock l(&mu_);
    current_ = snap;
    LogChange(next, std::move(keys));
  }
  const uint64_t limit = std::max<uint64_t>(
      options_.journal_min_bytes,
      static_cast<uint64_t>(static_cast<double>(snapshot_bytes_) * options_.compact_fraction));
  if (journal_bytes_ > limit) {
    // The change is durable in the journal already; a failed compaction is retried at the
    // next change and costs nothing but journal length meanwhile.
    last_compaction_error_ = Compact(*snap.state, next);
  }
  absl::MutexLock l(&mu_);
  PublishHealth();
  return snap;
}

std::optional<ChangedKeys> Store::ChangesBetween(uint64_t from_gen, uint64_t to_gen) const {
  absl::MutexLock l(&mu_);
  if (from_gen > to_gen || to_gen > current_.generation) return std::nullopt;
  ChangedKeys out;
  if (from_gen == to_gen) return out;
  if (from_gen + 1 < log_first_) return std::nullopt;
  for (uint64_t g = from_gen + 1; g <= to_gen; ++g) out.Merge(log_[g - log_first_]);
  return out;
}

}  // namespace netpol::agent
