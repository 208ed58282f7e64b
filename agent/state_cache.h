// The state cache: the last State a remote datastore (etcd, the Kubernetes API) delivered, kept
// in the agent's state directory, so that an agent started while its datastore is unreachable
// enforces and serves that State at once (fail-static across restarts) instead of waiting.
//
// What is kept: the objects, an opaque version token saying where in the datastore's history
// they were read (etcd: the revision; Kubernetes: the resourceVersions), the time of the save,
// and the cache's source, a string naming the datastore ("etcd /netpol/v1/"): a cache saved for
// another source is not loaded (an agent moved to another prefix or cluster enforces nothing
// stale from the old one).
//
// File: `<dir>/datastore-cache.pb`, written with WriteDurably (temporary file, fsync, rename,
// directory fsync), so a crash leaves the old or the new cache whole; checksummed like the
// embedded store's snapshot (durable_file.h), so a damaged file is refused, never half read.
// Format: the header line "netpol-datastore-cache 1 <bytes> <crc32>\n", then the payload: the
// source, the version (each a u32 little-endian length and its bytes), the save time (i64
// little-endian Unix nanoseconds) and a serialized netpol.v1.ListResponse of every object.
//
// Saving costs a serialization and a file write of the whole State, so a datastore hands states
// over with Offer (cheap: a shared pointer) and one background thread writes the newest one,
// one write at a time: states offered during a write are coalesced into the next.
//
// Thread safety: all methods are thread-safe.
#ifndef NETPOL_AGENT_STATE_CACHE_H_
#define NETPOL_AGENT_STATE_CACHE_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/model/model.h"

namespace netpol::agent {

struct CachedState {
  State state;
  std::string version;  // as given to Save/Offer
  absl::Time saved_at = absl::InfinitePast();
};

// What Status shows of the cache.
struct StateCacheStatus {
  std::string path;
  std::string saved_version;  // of the newest state on disk; empty before the first save
  absl::Time saved_at = absl::InfinitePast();
  absl::Status last_error;    // the last save's failure; OK once a save succeeds
  uint64_t saves = 0;         // since the cache was created
};

class StateCache {
 public:
  static constexpr char kFileName[] = "datastore-cache.pb";

  // A cache in directory `dir` (which the caller has prepared: PrepareStateDirectory) for the
  // datastore named `source`.
  StateCache(std::string dir, std::string source);
  // Writes what is still pending, then stops the writer.
  ~StateCache();
  StateCache(const StateCache&) = delete;
  StateCache& operator=(const StateCache&) = delete;

  // The saved state. NotFound when there is none, or when it was saved for another source (the
  // message names both); DataLoss / FailedPrecondition for a damaged or foreign file, naming
  // it (the caller then starts without a cache).
  absl::StatusOr<CachedState> Load() const;

  // Saves `state` and `version` now, durably. Errors name the file.
  absl::Status Save(const State& state, const std::string& version) ABSL_LOCKS_EXCLUDED(mu_);

  // Hands `state` and `version` to the background writer: it saves the newest state offered,
  // one save at a time. A failed save is logged and shown in status(); the next offer retries.
  void Offer(std::shared_ptr<const State> state, std::string version) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns once every state offered before the call is saved (or its save failed).
  void Flush() ABSL_LOCKS_EXCLUDED(mu_);

  StateCacheStatus status() const ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& path() const { return path_; }
  const std::string& source() const { return source_; }

  // The file content for a state (exposed for tests).
  static std::string Encode(const std::string& source, const std::string& version,
                            absl::Time saved_at, const State& state);
  static absl::StatusOr<std::pair<std::string, CachedState>> Decode(const std::string& bytes);

 private:
  void Run();

  const std::string dir_;
  const std::string path_;
  const std::string source_;
  absl::Mutex save_mu_;  // one file write at a time
  mutable absl::Mutex mu_;
  std::shared_ptr<const State> pending_ ABSL_GUARDED_BY(mu_);
  std::string pending_version_ ABSL_GUARDED_BY(mu_);
  uint64_t offered_ ABSL_GUARDED_BY(mu_) = 0;  // offers so far
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;  // offers saved (or failed) so far
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  StateCacheStatus status_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;  // started by the first Offer
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_STATE_CACHE_H_
