// The etcd datastore: the agent's objects live in a shared etcd cluster (many nodes, one truth)
// instead of the embedded Store (agent/store.h).
//
// Reads. A watcher thread lists every key under the prefix at one revision, decodes it
// (agent/etcd/keys.h) into a State and publishes it as a Snapshot whose generation is that etcd
// revision; it then watches the prefix from the next revision and publishes each batch of
// events, with the generation set to the revision of the newest event. So the generation a
// node reports (Status, WaitForGeneration) is the etcd revision its kernel enforces, the same
// number on every node for the same content.
//   * The watch lost (etcd down, restarted, a network failure): the last snapshot stays
//     published, the kernel keeps enforcing it, and the watcher reconnects with backoff and
//     resumes from the next revision.
//   * Resuming is impossible (etcd compacted past it, the endpoint is another cluster, the
//     revision went backwards): the watcher re-lists and publishes the new State as a whole.
//   * A key whose value does not decode is left out of the State and logged (the State is
//     always a function of what etcd holds, identical on every node).
//
// Writes. Update runs the mutation on the newest snapshot, turns the difference between the
// two States into ONE etcd transaction (a put or delete per changed object; deleting a
// namespace deletes its pods' and policies' key ranges) guarded by compares: every key written
// must still have the mod_revision this node saw (0: absent), and a deleted namespace's ranges
// must hold no key newer than the snapshot. When a compare fails (a concurrent writer), the
// node waits until its watch has seen the conflicting change and runs the mutation again on
// the new State, so no update is lost and nothing is half applied. A successful transaction
// returns once this node's watch has published its revision. Each write learns its fate within
// options.write_deadline: Unavailable ("not stored") only when it never reached etcd (no
// connection, or still waiting behind this node's earlier writes); Unknown ("outcome unknown")
// when it may have reached etcd without an answer (etcd frozen, a connection lost): it may or
// may not have been stored, and this node's view (`get`) tells once etcd answers again. A
// failed write makes Health unhealthy until etcd is heard from again, and is logged.
//
// Thread safety: all public methods are thread-safe.
#ifndef NETPOL_AGENT_ETCD_DATASTORE_H_
#define NETPOL_AGENT_ETCD_DATASTORE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/etcd/client.h"
#include "agent/etcd/keys.h"
#include "agent/state_cache.h"
#include "agent/datastore.h"

namespace netpol::agent::etcd {

struct DatastoreOptions {
  ClientOptions client;
  // Key prefix of every object (see keys.h).
  std::string prefix = kDefaultPrefix;
  // The longest a write may take to learn its fate from etcd, from its arrival: waiting behind
  // this node's other writes plus the transaction itself (--etcd-write-timeout). Past it the
  // write fails: "not stored" if it was never sent, "outcome unknown" if it may have been.
  absl::Duration write_deadline = absl::Seconds(5);
  // How long a successful write waits for this node's watch to deliver its revision.
  absl::Duration write_timeout = absl::Seconds(30);
  // Transactions tried per write when compares keep failing (concurrent writers). Two writers
  // hammering one object each win about half the rounds, so losing 32 in a row is
  // practically impossible; Aborted when it happens (nothing stored).
  int max_write_attempts = 32;
  // The state directory for the state cache (state_cache.h): every published snapshot is saved
  // there with its revision, and Start() publishes the saved one at once, marked stale, so an
  // agent started while etcd is down enforces and serves it until the first list. Empty: none.
  std::string cache_dir;
  // Backoff between reconnection attempts, doubling from min to max.
  absl::Duration retry_min = absl::Milliseconds(200);
  absl::Duration retry_max = absl::Seconds(3);
};

struct DatastoreStatus {
  std::string endpoints;
  bool synced = false;        // a list has been published
  bool watching = false;      // a watch stream is established now
  std::string watch_endpoint;  // the endpoint of that stream; empty when not watching
  int64_t revision = 0;       // the etcd revision this node's view is complete up to
  int64_t generation = 0;     // the revision of the published snapshot
  uint64_t cluster_id = 0;
  absl::Status last_error;    // the latest list/watch failure (OK once watching again)
  absl::Time last_error_time = absl::InfinitePast();
  int64_t lists = 0;          // full lists (the first one, then every re-list)
  int64_t watch_losses = 0;   // watch streams that ended with an error
  int64_t compactions = 0;    // re-lists because etcd compacted past the watch
  int64_t conflicts = 0;      // write transactions whose compares failed
  int64_t invalid_keys = 0;   // keys left out of the State now
  // The published snapshot is the state cache's (revision `generation`), not yet a list's.
  bool from_cache = false;
  // The last write's failure (a transaction not stored or not confirmed, or etcd not reached
  // yet); OK when it succeeded or none was tried. Mutation errors are not write failures.
  absl::Status last_write_error;
  // When a write last failed for want of an answer from etcd; InfinitePast once etcd was
  // heard from since (a watch response, a successful write). Health is false meanwhile.
  absl::Time unanswered_since = absl::InfinitePast();
};

class EtcdDatastore : public Datastore {
 public:
  // Checks the options and prepares the client; does not connect. InvalidArgument/NotFound.
  static absl::StatusOr<std::unique_ptr<EtcdDatastore>> Create(DatastoreOptions options);
  ~EtcdDatastore() override;

  // `on_change` is called (from the watcher thread, no lock held) after each new snapshot is
  // published. Set it before Start().
  void SetListener(std::function<void()> on_change);
  // Publishes the state cache's snapshot when there is one (options.cache_dir), then starts the
  // watcher thread. Stop() ends it (a blocked write returns Unavailable).
  void Start();
  void Stop();
  // Blocks until the first list has been published; false after `timeout`.
  bool WaitSynced(absl::Duration timeout) const;
  // Blocks until a State to enforce is published: the state cache's (at Start) or a list's.
  bool WaitForState(absl::Duration timeout) const;

  // Before the first list: the state cache's snapshot, or an empty State at generation 0.
  Snapshot Current() const override;
  absl::StatusOr<Snapshot> Update(const Mutation& mutate) override;
  // The keys the watch events of revisions (from_gen, to_gen] touched (generations are etcd
  // revisions), so the reconciler updates its program by the watch's changes. nullopt across a
  // (re-)list, which may change anything, or for revisions older than the log kept (at most
  // kChangeLogGenerations published revisions, kChangeLogKeys keys).
  std::optional<ChangedKeys> ChangesBetween(uint64_t from_gen, uint64_t to_gen) const override;
  static constexpr size_t kChangeLogGenerations = 4096;
  static constexpr size_t kChangeLogKeys = 1 << 16;

  // Returns once every snapshot published so far is saved in the state cache (tests).
  void FlushStateCache();

  DatastoreStatus status() const;
  // etcd: healthy once the first list is published while the watch is connected and no write
  // has failed for want of an answer since etcd was last heard from.
  DatastoreHealth Health() const override;
  Client* client() { return client_.get(); }
  const KeyLayout& layout() const { return layout_; }

 private:
  // What the watcher has built: the snapshot, and each key's mod_revision (every key under the
  // prefix, invalid ones included, so writes compare against what etcd really holds).
  struct View {
    Snapshot snapshot;
    // Persistent maps (as the State's): a watch event copies only what it changes.
    std::shared_ptr<const PersistentMap<std::string, int64_t>> revisions;
    std::shared_ptr<const PersistentMap<std::string, std::string>> invalid;  // key -> error
    int64_t revision = 0;
    uint64_t cluster_id = 0;
  };

  EtcdDatastore(DatastoreOptions options, std::unique_ptr<Client> client, KeyLayout layout);
  void Run();
  // Update's body. `*attempted` tells whether its last attempt reached the point of writing
  // (a transaction sent, or refused for want of a first list), so that its result is a write
  // result and not a mutation's.
  absl::StatusOr<Snapshot> Write(const Mutation& mutate, absl::Time deadline, bool* attempted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Lists the prefix and publishes it. Returns the list error, if any.
  absl::Status ListAndPublish();
  // Applies one watch response's events to the view and publishes it.
  void ApplyEvents(const etcdserverpb::WatchResponse& response);
  // Publishes `view`; `keys` are what changed since the published one (nullopt: a list, which
  // may change anything).
  void Publish(View view, std::optional<ChangedKeys> keys);
  void RecordError(const absl::Status& status, const std::string& what);
  // Sleeps up to `d` unless stopping. False when stopping.
  bool Pause(absl::Duration d);
  // Waits until the view is complete up to `revision`. False on timeout or stop.
  bool WaitForRevision(int64_t revision, absl::Duration timeout) const;
  View CurrentView() const;
  // Builds the guarded transaction turning `base` into `next`, looking only at the keys of
  // `touched` (Datastore::Change::touched) and the objects of the namespaces among them that
  // are gone: never at the whole States.
  etcdserverpb::TxnRequest BuildTxn(const View& base, const State& next,
                                    const ChangedKeys& touched) const;

  const DatastoreOptions options_;
  const std::unique_ptr<Client> client_;
  const KeyLayout layout_;
  const std::string range_end_;

  absl::Mutex write_mu_;  // serializes this node's writes (fewer self-inflicted conflicts)
  mutable absl::Mutex mu_;
  View view_ ABSL_GUARDED_BY(mu_);
  // The keys each published revision after log_base_ touched, oldest first (ChangesBetween).
  std::deque<std::pair<uint64_t, ChangedKeys>> log_ ABSL_GUARDED_BY(mu_);
  uint64_t log_base_ ABSL_GUARDED_BY(mu_) = 0;
  size_t log_keys_ ABSL_GUARDED_BY(mu_) = 0;
  DatastoreStatus status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  WatchStream* watch_ ABSL_GUARDED_BY(mu_) = nullptr;  // the stream the watcher reads now
  std::function<void()> on_change_;
  std::unique_ptr<StateCache> cache_;  // null without options.cache_dir
  std::thread worker_;
};

}  // namespace netpol::agent::etcd

#endif  // NETPOL_AGENT_ETCD_DATASTORE_H_
