// The agent's embedded object store: the State, a generation number counting its changes, and
// their durable copy in one file under the state directory.
//
// Durability contract: Update() writes the new State to `<dir>/state.pb.tmp`, fsyncs it, renames
// it over `<dir>/state.pb` and fsyncs the directory before the new State becomes visible, so a
// change is never acknowledged (or enforced) before it would survive a crash.
//
// File format: a header line "netpol-state 1 <payload bytes> <crc32 hex>\n" followed by a
// serialized netpol.v1.ListResponse (every object, and the generation). The checksum catches
// torn and corrupted files; Open refuses to start from them rather than enforce a partial State.
//
// Thread safety: all methods are thread-safe. Readers get immutable snapshots.
#ifndef NETPOL_AGENT_STORE_H_
#define NETPOL_AGENT_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/model/model.h"

namespace netpol::agent {

// An immutable view of the store at one generation.
struct Snapshot {
  std::shared_ptr<const State> state;
  uint64_t generation = 0;
  // Objects created, changed or deleted since the store was opened (summed over updates).
  uint64_t changes = 0;
};

// Where the agent's objects live: the embedded Store below (one node) or the shared etcd
// datastore (agent/etcd, many nodes). The service reads snapshots and writes through Update.
class Datastore {
 public:
  virtual ~Datastore() = default;

  // The result of a mutation function: the new State and how many objects it changed, or
  // nullopt when nothing changes.
  struct Change {
    State state;
    uint64_t objects_changed = 0;
  };
  using Mutation = std::function<absl::StatusOr<std::optional<Change>>(const State&)>;

  virtual Snapshot Current() const = 0;
  // Runs `mutate` on the current State and stores its Change; returns a snapshot that holds it
  // (the current one when nothing changed). Errors from `mutate` are returned unchanged.
  virtual absl::StatusOr<Snapshot> Update(const Mutation& mutate) = 0;
  // True when the snapshot Update returns holds exactly the State `mutate` produced, so a
  // program compiled from that State is the program of the returned generation. False for a
  // shared datastore, where other writers' changes may land in the same snapshot.
  virtual bool UpdateIsExact() const { return true; }
};

class Store : public Datastore {
 public:
  // The file name inside the state directory.
  static constexpr char kFileName[] = "state.pb";

  // Opens the store in `dir`, creating the directory (0700) when missing and loading its state
  // file when present. An absent file is an empty State at generation 0. An unreadable,
  // truncated or corrupt file is an error (DataLoss / PermissionDenied / FailedPrecondition)
  // naming the file; the caller must not start enforcing then.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir);

  // Encodes / decodes the file content (exposed for tests and tools).
  static std::string Encode(const State& state, uint64_t generation);
  static absl::StatusOr<std::pair<State, uint64_t>> Decode(const std::string& bytes);

  Snapshot Current() const override ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `mutate` on the current State with writers serialized; when it returns a Change,
  // persists it as the next generation (see the durability contract) and publishes it.
  // Returns the snapshot after the update (the current one when nothing changed). Errors from
  // `mutate` are returned unchanged; a write error leaves the store at its previous generation.
  absl::StatusOr<Snapshot> Update(const Mutation& mutate) override
      ABSL_LOCKS_EXCLUDED(write_mu_, mu_);

  const std::string& path() const { return path_; }

 private:
  Store(std::string dir, State state, uint64_t generation);
  absl::Status Persist(const State& state, uint64_t generation);

  const std::string dir_;
  const std::string path_;
  absl::Mutex write_mu_;  // serializes Update (held across the file write)
  mutable absl::Mutex mu_;
  Snapshot current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_STORE_H_
