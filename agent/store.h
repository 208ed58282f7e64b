// The agent's embedded object store: the State, a generation number counting its changes, and
// their durable copy under the state directory.
//
// Files: `<dir>/state.pb`, a snapshot of every object at one generation, and `<dir>/state.journal`,
// an append-only log of the changes made since (one checksummed record per generation). A
// change costs one record holding the objects it touched, not a rewrite of every object. When
// the journal outgrows a fraction of the snapshot, the store writes a new snapshot and starts
// an empty journal (compaction).
//
// Durability contract: Update() appends the change's record to the journal and fsyncs it
// before the new State becomes visible (Current) and before it returns, so a change is never
// acknowledged before it would survive a crash. With SyncHooks set (the agent's reconciler), the
// new State is handed to them once its record is written, so it is compiled and committed to the
// kernel while the fdatasync runs instead of after it; the kernel may then enforce a change
// shortly before it is durable: a crash in that window restarts from the previous state, whose
// first (full) sync replaces the table, and a failed fdatasync takes the record back, has the
// hooks put the previous state back in the kernel, and returns the error (all-or-nothing: the
// change is neither stored, nor visible, nor enforced). A crash at any point leaves the old or the
// new state: a record torn
// by the crash (the journal's last one, incomplete) is dropped and truncated at Open; a
// compaction interrupted before its snapshot is renamed into place leaves the old snapshot and
// journal; one interrupted after leaves the new snapshot and an old journal whose records it
// already holds (skipped by generation). Anything else damaged (a checksum mismatch before the
// last record, a gap in the generations, a bad header) makes Open refuse to start, naming the
// file.
//
// Snapshot format: a header line "netpol-state 1 <payload bytes> <crc32 hex>\n" followed by a
// serialized netpol.v1.ListResponse (every object, and the generation); files written before
// the journal existed are read as they are. Journal format: the line "netpol-journal 1\n", then
// records: a 20-byte little-endian header (payload bytes u32, generation u64, payload crc32
// u32, crc32 of the previous 16 bytes u32) and the payload, a netpol.v1.ListResponse of the
// objects created or changed (and the generation) followed by a netpol.v1.DeleteRequest of the
// objects deleted, each preceded by its u32 size.
//
// Thread safety: all methods are thread-safe. Readers get immutable snapshots.
#ifndef NETPOL_AGENT_STORE_H_
#define NETPOL_AGENT_STORE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/datastore.h"
#include "agent/state_cache.h"
#include "api/netpol/v1/object_service.pb.h"
#include "engine/compiler/delta.h"
#include "engine/model/model.h"

namespace netpol::agent {

class Store : public Datastore {
 public:
  // The file names inside the state directory.
  static constexpr char kFileName[] = "state.pb";
  static constexpr char kJournalName[] = "state.journal";
  struct Options {
    // Compact when the journal exceeds max(journal_min_bytes, snapshot bytes * fraction).
    double compact_fraction = 0.5;
    uint64_t journal_min_bytes = 1 << 20;
    // ChangesBetween answers for at most this many recent generations, holding at most this
    // many keys in all (the oldest generations go first; a larger change is not kept).
    size_t change_log_generations = 4096;
    size_t change_log_keys = 1 << 16;
    // The journal's fdatasync (fault injection in tests); null: ::fdatasync.
    std::function<int(int fd)> fdatasync;
  };

  // See the durability contract. Called under the store's write lock, one write at a time.
  struct SyncHooks {
    // The next generation's snapshot (not yet visible through Current) and the keys it changed,
    // once its record is written and before it is fsynced (Reconciler::Offer).
    std::function<void(const Snapshot& next, const ChangedKeys& keys)> written;
    // That fsync failed: the store stays at the previous generation; undo what `written` started
    // before returning (Reconciler::Withdraw commits the previous generation's program again).
    std::function<void(uint64_t generation)> failed;
  };
  // Set before the first Update.
  void set_sync_hooks(SyncHooks hooks) { hooks_ = std::move(hooks); }

  // Opens the store in `dir`, creating the directory (0700) when missing, loading the snapshot
  // and replaying the journal. Absent files are an empty State at generation 0 (the store then
  // writes an empty snapshot and journal). An unreadable, truncated or corrupt file is an
  // error (DataLoss / PermissionDenied / FailedPrecondition) naming the file; the caller must
  // not start enforcing then.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir);
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir,
                                                     const Options& options);
  ~Store() override;

  // Encodes / decodes the snapshot file content (exposed for tests and tools).
  static std::string Encode(const State& state, uint64_t generation);
  static absl::StatusOr<std::pair<State, uint64_t>> Decode(const std::string& bytes);

  Snapshot Current() const override ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `mutate` on the current State with writers serialized; when it returns a Change,
  // persists it as the next generation (see the durability contract) and publishes it.
  // Returns the snapshot after the update (the current one when nothing changed). Errors from
  // `mutate` are returned unchanged; a write error leaves the store at its previous generation.
  absl::StatusOr<Snapshot> Update(const Mutation& mutate) override
      ABSL_LOCKS_EXCLUDED(write_mu_, mu_);

  std::optional<ChangedKeys> ChangesBetween(uint64_t from_gen, uint64_t to_gen) const override
      ABSL_LOCKS_EXCLUDED(mu_);

  // Embedded: healthy unless the last write failed (or a failed write could not be undone).
  DatastoreHealth Health() const override ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& path() const { return path_; }
  const std::string& journal_path() const { return journal_path_; }
  // Bytes in the journal now, and compactions done since Open (for tests and metrics).
  uint64_t journal_bytes() const ABSL_LOCKS_EXCLUDED(write_mu_);
  uint64_t compactions() const ABSL_LOCKS_EXCLUDED(write_mu_);

 private:
  Store(std::string dir, const Options& options);
  absl::Status OpenJournal(uint64_t valid_bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Writes the record, calls `written` (unless null), then fsyncs it.
  absl::Status Append(const State& state, const ChangedKeys& keys, uint64_t generation,
                      const std::function<void()>& written)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  int Fdatasync(int fd) const;
  absl::Status Compact(const State& state, uint64_t generation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  void LogChange(uint64_t generation, ChangedKeys keys) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Copies the write side's counters and errors to health_.
  void PublishHealth() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_, mu_);

  const std::string dir_;
  const std::string path_;
  const std::string journal_path_;
  const Options options_;
  SyncHooks hooks_;
  mutable absl::Mutex write_mu_;  // serializes Update (held across the file writes)
  int journal_fd_ ABSL_GUARDED_BY(write_mu_) = -1;
  uint64_t journal_bytes_ ABSL_GUARDED_BY(write_mu_) = 0;
  uint64_t snapshot_bytes_ ABSL_GUARDED_BY(write_mu_) = 0;
  uint64_t compactions_ ABSL_GUARDED_BY(write_mu_) = 0;
  uint64_t journal_records_ ABSL_GUARDED_BY(write_mu_) = 0;
  absl::Time snapshot_time_ ABSL_GUARDED_BY(write_mu_) = absl::InfinitePast();
  absl::Status last_write_error_ ABSL_GUARDED_BY(write_mu_);
  absl::Status last_compaction_error_ ABSL_GUARDED_BY(write_mu_);
  // Set when a failed append could not be undone: later appends would follow a damaged record.
  absl::Status broken_ ABSL_GUARDED_BY(write_mu_);
  mutable absl::Mutex mu_;
  Snapshot current_ ABSL_GUARDED_BY(mu_);
  // The keys of the most recent generations, oldest first; generation log_first_ + i is
  // log_[i]. ChangesBetween(from, to) answers when from + 1 >= log_first_.
  std::deque<ChangedKeys> log_ ABSL_GUARDED_BY(mu_);
  uint64_t log_first_ ABSL_GUARDED_BY(mu_) = 1;
  size_t log_keys_ ABSL_GUARDED_BY(mu_) = 0;  // keys in log_
  // What Health() returns: published after each write, so reading it never waits for one.
  DatastoreHealth health_ ABSL_GUARDED_BY(mu_);
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_STORE_H_
