// The Kubernetes datastore (--datastore=kubernetes): the agent's objects are the cluster's own
// Namespaces, Pods, networking.k8s.io/v1 NetworkPolicies, policy.networking.k8s.io/v1alpha2
// ClusterNetworkPolicies (a CRD) and Nodes, list-watched from the API server the way
// client-go's reflector does it.
//
// Sync. At start every resource is listed in pages (`limit`/`continue`; a continue token that
// expired, 410, restarts that list from scratch); the five lists are published as ONE
// snapshot, so the kernel never enforces policies without their pods. Then each resource is
// watched from its list's resourceVersion (`allowWatchBookmarks=true`, a server-side
// `timeoutSeconds` of `watch_timeout` with jitter), on its own thread:
//   * ADDED/MODIFIED/DELETED events become element-level changes of the State (each published
//     generation records the keys it touched: ChangesBetween). An event whose object already
//     has that resourceVersion is not applied again.
//   * BOOKMARKs advance the resource's resourceVersion, so a reconnection resumes after them.
//   * The stream ends (server timeout, connection lost): the watch resumes from the last
//     resourceVersion seen, after a capped, jittered backoff when it failed. No event is lost
//     (the server replays everything after that version) or applied twice (above).
//   * 410 Gone (the version was compacted away): the resource is listed again and the list
//     compared with what this node had: only the objects that differ (created, changed,
//     deleted while the watch was away) change in the State.
//   * 401/403, the server unreachable: the last published State stays, the kernel keeps
//     enforcing it, Health()/status() say which resource and verb failed ("forbidden: cannot
//     watch pods"), and the watch keeps retrying until the API answers.
//   * 404 on ClusterNetworkPolicies (ResourceMayBeAbsent: the CRD is not installed, or was
//     deleted): there are none; the first lists publish without them, the resource is marked
//     `absent` (not an error: Health stays connected) and listed again every retry_max or so
//     until it is served, then watched like the others.
//
// Objects netpol cannot represent (decode.h) are left out, logged and counted (status()).
//
// Writes. Objects come from the API only: ObjectWritesAllowed() is FailedPrecondition. Update
// stores only the node-local overlay of CNI attachments (agent/attachments.h) the endpoint API
// writes; each API event re-applies the attachments to the pods it touches.
//
// Thread safety: all public methods are thread-safe.
#ifndef NETPOL_AGENT_K8S_DATASTORE_H_
#define NETPOL_AGENT_K8S_DATASTORE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/attachments.h"
#include "agent/k8s/client.h"
#include "agent/k8s/decode.h"
#include "agent/state_cache.h"
#include "agent/datastore.h"

namespace netpol::agent::k8s {

inline constexpr char kReadOnlyMessage[] =
    "objects come from the Kubernetes API in this mode; use kubectl";

struct DatastoreOptions {
  ClusterConfig cluster;
  // Items per list page.
  int page_size = 500;
  // Server-side watch timeout: uniformly random in [watch_timeout, 2 * watch_timeout).
  absl::Duration watch_timeout = absl::Minutes(5);
  // Reconnection backoff: doubling from retry_min up to retry_max, each wait jittered to
  // [50%, 100%] of it.
  absl::Duration retry_min = absl::Milliseconds(200);
  absl::Duration retry_max = absl::Seconds(30);
  // One list page's deadline.
  absl::Duration request_timeout = absl::Seconds(60);
  uint64_t seed = 0;  // jitter; 0: from the clock
  // The state directory for the state cache (agent/state_cache.h): every State the API's
  // events publish is saved there with the resourceVersions, and Start() publishes the saved
  // one at once, marked stale, so an agent started while the API server is unreachable
  // enforces and serves it until the first lists (which then change only what differs).
  // Empty: none.
  std::string cache_dir;
  // Tests: called with each reconnection wait (after a failed list or watch) before it starts.
  std::function<void(absl::Duration)> on_backoff;
};

struct ResourceStatus {
  Resource resource = Resource::kPods;
  std::string resource_version;  // the newest this node has seen (list, event or bookmark)
  bool watching = false;         // a watch stream answered 200 and is open
  absl::Status error;            // the latest list/watch failure; OK once watching again
  absl::Time error_time = absl::InfinitePast();
  bool absent = false;           // not served by the API server (404: no CRD); none exist
};

struct KubernetesStatus {
  std::string server;
  bool synced = false;  // the first lists are published
  // namespaces, pods, networkpolicies, clusternetworkpolicies, nodes (kResources' order)
  std::array<ResourceStatus, kResourceCount> resources;
  std::string resource_version;             // of the newest event applied
  absl::Time last_event_time = absl::InfinitePast();
  int64_t lists = 0;       // lists of one resource (first ones and re-lists)
  int64_t pages = 0;       // list pages read
  int64_t relists = 0;     // after 410 Gone
  int64_t watch_losses = 0;
  int64_t events = 0;      // watch events applied (bookmarks excluded)
  // Objects left out because netpol cannot represent them: "pod ns/a: reason".
  std::vector<std::string> invalid;
  // The published State is the state cache's, not yet the API's lists'.
  bool from_cache = false;
};

class KubernetesDatastore : public Datastore {
 public:
  static absl::StatusOr<std::unique_ptr<KubernetesDatastore>> Create(DatastoreOptions options);
  // With `client` instead of an HTTPS client of options.cluster (a unit test's scripted API).
  static absl::StatusOr<std::unique_ptr<KubernetesDatastore>> Create(
      DatastoreOptions options, std::unique_ptr<Client> client);
  ~KubernetesDatastore() override;

  // `on_change` runs (no lock held) after each snapshot the API's events publish.
  void SetListener(std::function<void()> on_change);
  // The node's CNI attachments, overlaid on every change from the API. Before Start().
  void SetAttachments(std::function<std::shared_ptr<const Attachments>()> attachments);
  // Starts with `state` as the last known State (a saved copy: enforced until the first lists
  // replace it, which then change only what differs). Optional; before Start(). Start() does
  // this itself with the state cache's State (options.cache_dir).
  void Restore(State state);
  // Publishes the state cache's State when there is one, then starts listing and watching.
  void Start();
  void Stop();
  // Blocks until the first lists are published; false after `timeout`.
  bool WaitSynced(absl::Duration timeout) const;
  // Blocks until a State to enforce is published: the state cache's (at Start) or the lists'.
  bool WaitForState(absl::Duration timeout) const;
  // Returns once every State published so far is saved in the state cache (tests).
  void FlushStateCache();

  Snapshot Current() const override;
  absl::StatusOr<Snapshot> Update(const Mutation& mutate) override;
  std::optional<ChangedKeys> ChangesBetween(uint64_t from_gen, uint64_t to_gen) const override;
  DatastoreHealth Health() const override;
  absl::Status ObjectWritesAllowed() const override;

  KubernetesStatus status() const;
  Client* client() { return client_.get(); }

 private:
  KubernetesDatastore(DatastoreOptions options, std::unique_ptr<Client> client);

  void Run();
  void WatchLoop(Resource r);
  // Lists `r` in pages into `items` and its resourceVersion. A 410 on a continue token
  // restarts the list.
  absl::Status List(Resource r, std::vector<Item>* items, std::string* resource_version);
  // Applies items of `r` to the State. `full`: the items are a complete list, and every object
  // of `r` this node has that is not among them is deleted. Publishes a new generation when
  // the State changed. Returns the keys changed.
  void Apply(Resource r, std::vector<Item> items, bool full, const std::string& resource_version,
             bool publish_always = false);
  void ApplyMany(std::array<std::vector<Item>, kResourceCount> lists,
                 const std::array<std::string, kResourceCount>& rvs);
  // With apply_mu_ held: a copy of the published State that `apply` changes (recording the
  // keys it touches), with the CNI attachments overlaid when a pod changed (or always, with
  // `overlay_always`); `invalid` gets why each object left out is invalid.
  std::shared_ptr<State> NextStateLocked(const std::function<void(State*, ChangedKeys*)>& apply,
                                         bool overlay_always, ChangedKeys* touched,
                                         std::vector<std::string>* invalid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);
  void RecordError(Resource r, const absl::Status& status, const std::string& verb);
  void SetWatching(Resource r, bool watching);
  // Marks `r` (not) served; logs when it becomes absent. Returns whether it was absent.
  bool SetAbsent(Resource r, bool absent);
  bool IsAbsent(Resource r) const;
  bool Pause(absl::Duration d);
  absl::Duration Jitter(absl::Duration d);
  // The wait before reconnecting: Jitter(d), reported to options.on_backoff.
  absl::Duration Backoff(absl::Duration d);
  bool stopping() const;

  // With apply_mu_ and mu_ held: publishes `state` as the next generation with `keys`.
  void PublishLocked(std::shared_ptr<const State> state, ChangedKeys keys)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies `items` of `r` to `state` (a private copy), recording keys in `touched`.
  void ApplyItemsLocked(Resource r, std::vector<Item>& items, bool full, State* state,
                        ChangedKeys* touched) ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);

  const DatastoreOptions options_;
  const std::unique_ptr<Client> client_;
  // Offers the published State to the state cache (with apply_mu_ held).
  void OfferToCache(std::shared_ptr<const State> state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);

  std::function<void()> on_change_;
  std::function<std::shared_ptr<const Attachments>()> attachments_;
  std::unique_ptr<StateCache> cache_;  // null without options.cache_dir

  // Serializes every change of the State (watch threads, Update) and guards the per-object
  // bookkeeping.
  absl::Mutex apply_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Per resource: key -> resourceVersion of every object the API has (in the model or not).
  std::array<std::map<std::string, std::string>, kResourceCount> versions_
      ABSL_GUARDED_BY(apply_mu_);
  // Per resource: key -> why it is left out.
  std::array<std::map<std::string, std::string>, kResourceCount> invalid_
      ABSL_GUARDED_BY(apply_mu_);
  // Keys of a restored State not yet confirmed by a list (deleted when the list lacks them).
  std::array<std::set<std::string>, kResourceCount> restored_ ABSL_GUARDED_BY(apply_mu_);

  mutable absl::Mutex mu_;
  Snapshot current_ ABSL_GUARDED_BY(mu_);
  std::deque<ChangedKeys> log_ ABSL_GUARDED_BY(mu_);
  uint64_t log_first_ ABSL_GUARDED_BY(mu_) = 1;
  KubernetesStatus status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> cancel_{false};
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);

  std::thread runner_;
  std::vector<std::thread> watchers_;
};

}  // namespace netpol::agent::k8s

#endif  // NETPOL_AGENT_K8S_DATASTORE_H_
