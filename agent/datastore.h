// The Datastore interface: where the agent's objects live (the embedded Store, agent/store.h;
// etcd, agent/etcd; the Kubernetes API, agent/k8s), what a read sees (Snapshot) and what a
// write yields (Change: the new State and the keys it touched).
#ifndef NETPOL_AGENT_DATASTORE_H_
#define NETPOL_AGENT_DATASTORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/state_cache.h"
#include "engine/compiler/delta.h"
#include "engine/model/model.h"

namespace netpol::agent {

// An immutable view of the store at one generation.
struct Snapshot {
  std::shared_ptr<const State> state;
  uint64_t generation = 0;
  // Objects created, changed or deleted since the store was opened (summed over updates).
  uint64_t changes = 0;
};

// The objects a range of generations touched: namespace names, pod keys ("ns/name") and
// policy keys ("ns/name") created, changed or deleted. The incremental compiler takes it as is.
using ChangedKeys = compiler::Delta;

// The keys among `touched` (a Datastore::Change's) whose objects differ between `base` and
// `next`, with the pods and policies of the touched namespaces that `next` no longer holds:
// what the write changed, found by looking at the touched keys only (O(touched log n), plus the
// objects of a deleted namespace).
ChangedKeys ResolveTouched(const State& base, const State& next, const ChangedKeys& touched);

// What a datastore knows of its own health without a new request to anything (Status).
struct DatastoreHealth {
  enum class Kind { kUnknown, kEmbedded, kEtcd, kKubernetes };
  Kind kind = Kind::kUnknown;
  // Whether writes can be stored as far as the datastore knows (see each implementation).
  bool healthy = true;
  // The last write's failure; OK when it succeeded or none was made. Mutations that fail or
  // change nothing are not writes.
  absl::Status last_write_error;

  // The embedded Store.
  std::string directory;
  uint64_t journal_records = 0;  // changes in the journal since the last compaction
  uint64_t journal_bytes = 0;
  absl::Time last_compaction_time = absl::InfinitePast();  // when the snapshot was written
  uint64_t compactions = 0;                                // since Open
  absl::Status last_compaction_error;

  // The etcd datastore (endpoints, watch_*, revision) and the Kubernetes API (endpoints: the
  // server; watch_connected: every resource is watched; watch_error: the first failing one).
  std::string endpoints;       // configured, comma-separated
  bool watch_connected = false;
  std::string watch_endpoint;  // empty when not connected
  absl::Status watch_error;    // the latest list/watch failure, OK once watching again
  int64_t revision = 0;

  // The Kubernetes API.
  std::string resource_version;  // of the newest event applied
  absl::Time last_event_time = absl::InfinitePast();
  std::vector<std::string> invalid_objects;  // left out: "pod ns/a: why"
  struct ResourceWatch {
    std::string resource;  // "pods"
    std::string resource_version;
    bool watching = false;
    absl::Status error;
  };
  std::vector<ResourceWatch> resources;

  // Remote datastores (etcd): the last synced State kept in the state directory
  // (state_cache.h). `stale`: the objects served and enforced come from that cache because the
  // datastore has not been reached since the agent started.
  bool stale = false;
  std::string cache_path;           // empty: no cache
  std::string cache_version;        // the datastore version of the state in the cache file
  absl::Time cache_saved_at = absl::InfinitePast();
  absl::Status cache_error;         // the last save's failure
  // Fills the cache_* fields from the cache's own status.
  void SetCache(const StateCacheStatus& c) {
    cache_path = c.path;
    cache_version = c.saved_version;
    cache_saved_at = c.saved_at;
    cache_error = c.last_error;
  }
};

// Where the agent's objects live: the embedded Store (agent/store.h, one node), the shared etcd
// datastore (agent/etcd, many nodes) or the Kubernetes API (agent/k8s). The service reads
// snapshots and writes through Update.
class Datastore {
 public:
  virtual ~Datastore() = default;

  // The result of a mutation function, or nullopt when nothing changes: the new State (sharing
  // every object the mutation did not touch with the base State), how many objects it changed
  // and the keys it touched. `touched` must hold every key whose object differs between the
  // base State and `state`, except pods and policies that went with their namespace (a
  // namespace key absent from `state` covers them); extra keys are fine. A datastore looks at
  // these keys only (what it stores, logs and returns from ChangesBetween), never at the whole
  // States.
  struct Change {
    Change(State state, uint64_t objects_changed, ChangedKeys touched)
        : state(std::move(state)), objects_changed(objects_changed), touched(std::move(touched)) {}
    State state;
    uint64_t objects_changed = 0;
    ChangedKeys touched;
  };
  using Mutation = std::function<absl::StatusOr<std::optional<Change>>(const State&)>;

  virtual Snapshot Current() const = 0;
  // Runs `mutate` on the current State and stores its Change; returns a snapshot that holds it
  // (the current one when nothing changed). Errors from `mutate` are returned unchanged.
  virtual absl::StatusOr<Snapshot> Update(const Mutation& mutate) = 0;
  // The objects the generations in (from_gen, to_gen] touched, or nullopt when the datastore
  // does not know (not recorded, or too old): the caller must then assume everything changed.
  // from_gen == to_gen is an empty set.
  virtual std::optional<ChangedKeys> ChangesBetween(uint64_t from_gen, uint64_t to_gen) const {
    return std::nullopt;
  }
  // Health for Status. Cheap: no I/O, and never waits for a write in progress. The default
  // reports an unknown kind, healthy.
  virtual DatastoreHealth Health() const { return DatastoreHealth(); }
  // Whether clients may write objects (Apply/Delete) here: FailedPrecondition, saying where
  // objects come from, when another system owns them (the Kubernetes API). The node's own
  // CNI attachments are written through Update either way.
  virtual absl::Status ObjectWritesAllowed() const { return absl::OkStatus(); }
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_DATASTORE_H_
