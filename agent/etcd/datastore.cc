// The etcd datastore. See datastore.h.
#include "agent/etcd/datastore.h"

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "agent/log.h"
#include "engine/util/status_macros.h"

namespace netpol::agent::etcd {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::TxnRequest;

// Removes the object stored under `key` (already stripped of the prefix) from `state`.
// Returns true when something was removed.
bool EraseByKey(absl::string_view rest, State* state) {
  if (absl::ConsumePrefix(&rest, kNamespacesDir)) {
    return state->namespaces.erase(std::string(rest)) > 0;
  }
  if (absl::ConsumePrefix(&rest, kPodsDir)) return state->pods.erase(std::string(rest)) > 0;
  if (absl::ConsumePrefix(&rest, kPoliciesDir)) {
    return state->policies.erase(std::string(rest)) > 0;
  }
  if (absl::ConsumePrefix(&rest, kClusterPoliciesDir)) {
    return state->cluster_policies.erase(std::string(rest)) > 0;
  }
  if (absl::ConsumePrefix(&rest, kNodeObjectsDir)) {
    return state->nodes.erase(std::string(rest)) > 0;
  }
  return false;
}

// Adds the object key stored under `rest` (stripped of the prefix) to `keys`.
void NoteKey(absl::string_view rest, ChangedKeys* keys) {
  if (absl::ConsumePrefix(&rest, kNamespacesDir)) {
    keys->namespaces.emplace(rest);
  } else if (absl::ConsumePrefix(&rest, kPodsDir)) {
    keys->pods.emplace(rest);
  } else if (absl::ConsumePrefix(&rest, kPoliciesDir)) {
    keys->policies.emplace(rest);
  } else if (absl::ConsumePrefix(&rest, kClusterPoliciesDir)) {
    keys->cluster_policies.emplace(rest);
  } else if (absl::ConsumePrefix(&rest, kNodeObjectsDir)) {
    keys->nodes.emplace(rest);
  }
}

const std::string& NamespaceOf(const Namespace& ns) { return ns.name; }
const std::string& NamespaceOf(const Pod& pod) { return pod.namespace_name; }
const std::string& NamespaceOf(const NetworkPolicy& np) { return np.namespace_name; }
// Cluster-scoped: never inside a namespace's range delete.
const std::string& NamespaceOf(const ClusterNetworkPolicy&) {
  static const std::string* none = new std::string();
  return *none;
}
const std::string& NamespaceOf(const Node&) {
  static const std::string* none = new std::string();
  return *none;
}

void AddEqualsCompare(const std::string& key, int64_t mod_revision, TxnRequest* txn) {
  Compare* c = txn->add_compare();
  c->set_key(key);
  c->set_target(Compare::MOD);
  c->set_result(Compare::EQUAL);
  c->set_mod_revision(mod_revision);
}

void AddPut(const std::string& key, const std::string& value, TxnRequest* txn) {
  etcdserverpb::PutRequest* put = txn->add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
}

void AddDelete(const std::string& key, const std::string& range_end, TxnRequest* txn) {
  etcdserverpb::DeleteRangeRequest* del = txn->add_success()->mutable_request_delete_range();
  del->set_key(key);
  if (!range_end.empty()) del->set_range_end(range_end);
}

// After a failed compare: read back the compared keys so the caller learns the newest
// revision it has not seen.
void AddFailureRead(const std::string& key, const std::string& range_end, TxnRequest* txn) {
  etcdserverpb::RangeRequest* r = txn->add_failure()->mutable_request_range();
  r->set_key(key);
  if (!range_end.empty()) r->set_range_end(range_end);
  r->set_keys_only(true);
  r->set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  r->set_sort_target(etcdserverpb::RangeRequest::MOD);
  r->set_limit(1);
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdDatastore>> EtcdDatastore::Create(DatastoreOptions options) {
  ASSIGN_OR_RETURN(KeyLayout layout, KeyLayout::Create(options.prefix));
  ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(options.client));
  return std::unique_ptr<EtcdDatastore>(
      new EtcdDatastore(std::move(options), std::move(client), std::move(layout)));
}

EtcdDatastore::EtcdDatastore(DatastoreOptions options, std::unique_ptr<Client> client,
                             KeyLayout layout)
    : options_(std::move(options)),
      client_(std::move(client)),
      layout_(std::move(layout)),
      range_end_(PrefixEnd(layout_.prefix())) {
  view_.snapshot.state = std::make_shared<const State>();
  view_.revisions = std::make_shared<const PersistentMap<std::string, int64_t>>();
  view_.invalid = std::make_shared<const PersistentMap<std::string, std::string>>();
  status_.endpoints = client_->EndpointsText();
  if (!options_.cache_dir.empty()) {
    cache_ = std::make_unique<StateCache>(options_.cache_dir,
                                          absl::StrCat("etcd prefix ", layout_.prefix()));
  }
}

EtcdDatastore::~EtcdDatastore() { Stop(); }

void EtcdDatastore::SetListener(std::function<void()> on_change) {
  on_change_ = std::move(on_change);
}

void EtcdDatastore::Start() {
  {
    absl::MutexLock l(&mu_);
    if (worker_.joinable() || stopping_) return;
  }
  if (cache_ != nullptr) {
    absl::StatusOr<CachedState> cached = cache_->Load();
    int64_t revision = 0;
    if (cached.ok() && !absl::SimpleAtoi(cached->version, &revision)) {
      cached = absl::DataLossError(absl::StrCat(cache_->path(), ": version \"", cached->version,
                                                "\" is not an etcd revision"));
    }
    if (cached.ok()) {
      LogInfo(absl::StrCat(
          "etcd: enforcing the cached state of revision ", revision, " saved at ",
          absl::FormatTime(cached->saved_at), " (", cache_->path(), ": ",
          cached->state.namespaces.size(), " namespaces, ", cached->state.pods.size(), " pods, ",
          cached->state.policies.size(), " policies) until etcd is listed"));
      absl::MutexLock l(&mu_);
      view_.snapshot.state = std::make_shared<const State>(std::move(cached->state));
      view_.snapshot.generation = static_cast<uint64_t>(revision);
      log_.clear();
      log_keys_ = 0;
      log_base_ = view_.snapshot.generation;
      status_.from_cache = true;
    } else if (!absl::IsNotFound(cached.status())) {
      LogWarning(absl::StrCat("etcd: not using the state cache: ", cached.status().ToString(),
                              "; nothing is enforced from it until etcd is listed"));
    } else if (cached.status().message().find(" holds the state of ") != std::string::npos) {
      LogWarning(absl::StrCat("etcd: not using the state cache: ", cached.status().message()));
    }
  }
  absl::MutexLock l(&mu_);
  if (worker_.joinable() || stopping_) return;
  worker_ = std::thread([this] { Run(); });
}

void EtcdDatastore::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    if (watch_ != nullptr) watch_->Cancel();
  }
  if (worker_.joinable()) worker_.join();
}

void EtcdDatastore::FlushStateCache() {
  if (cache_ != nullptr) cache_->Flush();
}

bool EtcdDatastore::WaitForState(absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return status_.synced || status_.from_cache;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
}

bool EtcdDatastore::WaitSynced(absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto synced = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return status_.synced; };
  return mu_.AwaitWithTimeout(absl::Condition(&synced), timeout);
}

Snapshot EtcdDatastore::Current() const {
  absl::MutexLock l(&mu_);
  return view_.snapshot;
}

EtcdDatastore::View EtcdDatastore::CurrentView() const {
  absl::MutexLock l(&mu_);
  return view_;
}

DatastoreStatus EtcdDatastore::status() const {
  absl::MutexLock l(&mu_);
  DatastoreStatus s = status_;
  s.revision = view_.revision;
  s.generation = static_cast<int64_t>(view_.snapshot.generation);
  s.cluster_id = view_.cluster_id;
  s.invalid_keys = static_cast<int64_t>(view_.invalid->size());
  return s;
}

DatastoreHealth EtcdDatastore::Health() const {
  const DatastoreStatus s = status();
  DatastoreHealth h;
  h.kind = DatastoreHealth::Kind::kEtcd;
  h.healthy = s.synced && s.watching && s.unanswered_since == absl::InfinitePast();
  h.last_write_error = s.last_write_error;
  h.endpoints = s.endpoints;
  h.watch_connected = s.watching;
  h.watch_endpoint = s.watch_endpoint;
  h.watch_error = s.last_error;
  h.revision = s.revision;
  h.stale = s.from_cache;
  if (cache_ != nullptr) h.SetCache(cache_->status());
  return h;
}

bool EtcdDatastore::Pause(absl::Duration d) {
  absl::MutexLock l(&mu_);
  auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  mu_.AwaitWithTimeout(absl::Condition(&stop), d);
  return !stopping_;
}

bool EtcdDatastore::WaitForRevision(int64_t revision, absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto done = [this, revision]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || (status_.synced && view_.revision >= revision);
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return !stopping_ && status_.synced && view_.revision >= revision;
}

void EtcdDatastore::RecordError(const absl::Status& status, const std::string& what) {
  int64_t revision;
  {
    absl::MutexLock l(&mu_);
    status_.last_error = status;
    status_.last_error_time = absl::Now();
    revision = view_.revision;
  }
  LogWarning(absl::StrCat("etcd: ", what, ": ", status.ToString(),
                          revision > 0 ? absl::StrCat("; still enforcing revision ", revision)
                                       : std::string("; not synced yet, the kernel keeps its "
                                                     "table as it is")));
}

std::optional<ChangedKeys> EtcdDatastore::ChangesBetween(uint64_t from_gen,
                                                         uint64_t to_gen) const {
  absl::MutexLock l(&mu_);
  if (from_gen == to_gen) return ChangedKeys();
  if (from_gen > to_gen || from_gen < log_base_ || to_gen > view_.snapshot.generation) {
    return std::nullopt;
  }
  ChangedKeys out;
  for (const auto& [generation, keys] : log_) {
    if (generation <= from_gen) continue;
    if (generation > to_gen) break;
    out.Merge(keys);
  }
  return out;
}

void EtcdDatastore::Publish(View view, std::optional<ChangedKeys> keys) {
  // Offered before it is visible: whoever sees the snapshot (a write waiting for its
  // revision) may Flush the cache and find it saved.
  if (cache_ != nullptr) cache_->Offer(view.snapshot.state, absl::StrCat(view.revision));
  {
    absl::MutexLock l(&mu_);
    const uint64_t generation = view.snapshot.generation;
    if (!keys || generation < view_.snapshot.generation || keys->size() > kChangeLogKeys) {
      log_.clear();
      log_keys_ = 0;
      log_base_ = generation;
    } else if (generation > view_.snapshot.generation) {
      log_keys_ += keys->size();
      log_.emplace_back(generation, *std::move(keys));
      while (!log_.empty() &&
             (log_.size() > kChangeLogGenerations || log_keys_ > kChangeLogKeys)) {
        log_keys_ -= log_.front().second.size();
        log_base_ = log_.front().first;
        log_.pop_front();
      }
    }
    view_ = std::move(view);
    status_.synced = true;
    status_.from_cache = false;
  }
  if (on_change_) on_change_();
}

absl::Status EtcdDatastore::ListAndPublish() {
  ASSIGN_OR_RETURN(ListResult list, client_->List(layout_.prefix(), range_end_));
  auto state = std::make_shared<State>();
  auto revisions = std::make_shared<PersistentMap<std::string, int64_t>>();
  auto invalid = std::make_shared<PersistentMap<std::string, std::string>>();
  for (const etcdserverpb::KeyValue& kv : list.kvs) {
    (*revisions)[kv.key()] = kv.mod_revision();
    absl::StatusOr<Object> o = layout_.Decode(kv.key(), kv.value());
    if (!o.ok()) {
      (*invalid)[kv.key()] = std::string(o.status().message());
      LogError(absl::StrCat("etcd: ignoring ", o.status().message()));
      continue;
    }
    Upsert(*o, state.get());
  }
  View view;
  const Snapshot before = Current();
  view.snapshot.state = std::move(state);
  view.snapshot.generation = static_cast<uint64_t>(list.revision);
  // A re-list may change anything; count every object as changed.
  view.snapshot.changes = before.changes + view.snapshot.state->namespaces.size() +
                          view.snapshot.state->pods.size() +
                          view.snapshot.state->policies.size() +
                          view.snapshot.state->cluster_policies.size() +
                          view.snapshot.state->nodes.size();
  view.revisions = std::move(revisions);
  view.invalid = std::move(invalid);
  view.revision = list.revision;
  view.cluster_id = list.cluster_id;
  LogInfo(absl::StrCat("etcd: listed ", list.kvs.size(), " keys under ", layout_.prefix(),
                       " at revision ", list.revision, " (", view.invalid->size(),
                       " invalid): ", view.snapshot.state->namespaces.size(), " namespaces, ",
                       view.snapshot.state->pods.size(), " pods, ",
                       view.snapshot.state->policies.size(), " policies, ",
                       view.snapshot.state->cluster_policies.size(),
                       " cluster network policies, ", view.snapshot.state->nodes.size(),
                       " nodes"));
  {
    absl::MutexLock l(&mu_);
    ++status_.lists;
  }
  Publish(std::move(view), std::nullopt);
  return absl::OkStatus();
}

void EtcdDatastore::ApplyEvents(const etcdserverpb::WatchResponse& response) {
  View view = CurrentView();
  auto state = std::make_shared<State>(*view.snapshot.state);
  // O(1) copies: each event below copies only the entries it changes.
  auto revisions = std::make_shared<PersistentMap<std::string, int64_t>>(*view.revisions);
  auto invalid = std::make_shared<PersistentMap<std::string, std::string>>(*view.invalid);
  ChangedKeys keys;
  uint64_t changed = 0;
  int64_t newest = view.revision;
  for (const etcdserverpb::Event& e : response.events()) {
    const std::string& key = e.kv().key();
    newest = std::max(newest, e.kv().mod_revision());
    if (!absl::StartsWith(key, layout_.prefix())) continue;
    const absl::string_view rest = absl::string_view(key).substr(layout_.prefix().size());
    NoteKey(rest, &keys);
    invalid->erase(key);
    if (e.type() == etcdserverpb::Event::DELETE) {
      revisions->erase(key);
      changed += EraseByKey(rest, state.get()) ? 1 : 0;
      continue;
    }
    (*revisions)[key] = e.kv().mod_revision();
    absl::StatusOr<Object> o = layout_.Decode(key, e.kv().value());
    if (!o.ok()) {
      // Left out, as a list would leave it out: every node computes the same State.
      changed += EraseByKey(rest, state.get()) ? 1 : 0;
      (*invalid)[key] = std::string(o.status().message());
      LogError(absl::StrCat("etcd: ignoring ", o.status().message()));
      continue;
    }
    Upsert(*o, state.get());
    ++changed;
  }
  view.snapshot.state = std::move(state);
  view.snapshot.generation = static_cast<uint64_t>(newest);
  view.snapshot.changes += changed;
  view.revisions = std::move(revisions);
  view.invalid = std::move(invalid);
  view.revision = newest;
  Publish(std::move(view), std::move(keys));
}

void EtcdDatastore::Run() {
  absl::Duration backoff = options_.retry_min;
  bool need_list = true;
  auto grow = [&] { backoff = std::min(backoff * 2, options_.retry_max); };
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
    }
    if (need_list) {
      absl::Status st = ListAndPublish();
      if (!st.ok()) {
        RecordError(st, "cannot list the prefix " + layout_.prefix());
        if (!Pause(backoff)) return;
        grow();
        continue;
      }
      need_list = false;
    }
    const View base = CurrentView();
    std::unique_ptr<WatchStream> stream =
        client_->Watch(layout_.prefix(), range_end_, base.revision + 1);
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      watch_ = stream.get();
    }
    if (!stream->Begin()) {
      {
        absl::MutexLock l(&mu_);
        watch_ = nullptr;
        if (stopping_) return;
      }
      RecordError(stream->Finish(), "cannot watch the prefix " + layout_.prefix());
      if (!Pause(backoff)) return;
      grow();
      continue;
    }
    etcdserverpb::WatchResponse r;
    bool relist = false;
    std::string why;
    while (stream->Next(&r)) {
      {
        // etcd answered: a write that failed for want of an answer no longer says it is away.
        absl::MutexLock l(&mu_);
        status_.unanswered_since = absl::InfinitePast();
      }
      if (r.compact_revision() > 0) {
        why = absl::StrCat("etcd compacted its history up to revision ", r.compact_revision(),
                           ", past this node's revision ", CurrentView().revision);
        absl::MutexLock l(&mu_);
        ++status_.compactions;
        relist = true;
        break;
      }
      if (r.canceled()) {
        why = absl::StrCat("etcd canceled the watch: ", r.cancel_reason());
        relist = true;
        break;
      }
      if (r.created()) {
        const View now = CurrentView();
        if (r.header().cluster_id() != now.cluster_id) {
          why = absl::StrCat("the endpoint ", stream->endpoint(), " belongs to cluster ",
                             r.header().cluster_id(), ", not ", now.cluster_id);
          relist = true;
          break;
        }
        if (r.header().revision() < now.revision) {
          why = absl::StrCat("etcd's revision ", r.header().revision(),
                             " is behind this node's ", now.revision, " (restored?)");
          relist = true;
          break;
        }
        bool recovered;
        {
          absl::MutexLock l(&mu_);
          status_.watching = true;
          status_.watch_endpoint = stream->endpoint();
          recovered = !status_.last_error.ok();
          status_.last_error = absl::OkStatus();
        }
        if (recovered) {
          LogInfo(absl::StrCat("etcd: watching ", layout_.prefix(), " on ", stream->endpoint(),
                               " again from revision ", now.revision + 1));
        }
        backoff = options_.retry_min;
        continue;
      }
      if (r.events_size() > 0) ApplyEvents(r);
    }
    {
      absl::MutexLock l(&mu_);
      watch_ = nullptr;
      status_.watching = false;
      status_.watch_endpoint.clear();
      if (stopping_) return;
    }
    if (relist) {
      LogWarning(absl::StrCat("etcd: ", why, "; re-listing"));
      need_list = true;
      continue;  // the stream is canceled and drained by its destructor
    }
    absl::Status st = stream->Finish();
    {
      absl::MutexLock l(&mu_);
      ++status_.watch_losses;
    }
    RecordError(st, "watch lost");
    if (!Pause(backoff)) return;
    grow();
  }
}

TxnRequest EtcdDatastore::BuildTxn(const View& base, const State& next,
                                   const ChangedKeys& touched) const {
  TxnRequest txn;
  const State& old = *base.snapshot.state;
  auto seen = [&](const std::string& key) -> int64_t {
    auto it = base.revisions->find(key);
    return it == base.revisions->end() ? 0 : it->second;
  };
  auto guard = [&](const std::string& key) {
    AddEqualsCompare(key, seen(key), &txn);
    AddFailureRead(key, "", &txn);
  };
  // Namespaces deleted whose pods and policies all go too: one range delete each, guarded
  // against keys created or changed there since the snapshot.
  std::set<std::string> dropped;
  std::vector<std::string> gone;  // namespaces deleted
  for (const std::string& name : touched.namespaces) {
    if (old.namespaces.count(name) && !next.namespaces.count(name)) gone.push_back(name);
  }
  for (const std::string& name : gone) {
    const std::string pods = layout_.PodsOfNamespace(name);
    const std::string policies = layout_.PoliciesOfNamespace(name);
    auto none_left = [&](const auto& map) {
      auto it = map.lower_bound(name + "/");
      return it == map.end() || !absl::StartsWith(it->first, name + "/");
    };
    if (none_left(next.pods) && none_left(next.policies)) {
      dropped.insert(name);
      for (const std::string& range : {pods, policies}) {
        const std::string end = PrefixEnd(range);
        Compare* c = txn.add_compare();
        c->set_key(range);
        c->set_range_end(end);
        c->set_target(Compare::MOD);
        c->set_result(Compare::LESS);
        c->set_mod_revision(base.revision + 1);
        AddFailureRead(range, end, &txn);
        AddDelete(range, end, &txn);
      }
    }
  }
  // What changed among the keys of `touched` and the objects of the deleted namespaces: a put
  // or a delete per object, each guarded by the revision this node saw.
  auto diff_keys = [&](const auto& before, const auto& after, std::set<std::string> keys,
                       auto key_of, bool namespaced) {
    if (namespaced) {
      for (const std::string& name : gone) {
        for (auto it = before.lower_bound(name + "/");
             it != before.end() && absl::StartsWith(it->first, name + "/"); ++it) {
          keys.insert(it->first);
        }
      }
    }
    for (const std::string& k : keys) {
      const auto* b = before.Lookup(k);
      const auto* a = after.Lookup(k);
      if (a != nullptr) {
        if (b != nullptr && (b == a || b->second == a->second)) continue;
        const std::string key = key_of(k);
        guard(key);
        AddPut(key, KeyLayout::Encode(Object{a->second}), &txn);
      } else if (b != nullptr) {
        if (namespaced && dropped.count(NamespaceOf(b->second))) continue;  // in a range delete
        const std::string key = key_of(k);
        guard(key);
        AddDelete(key, "", &txn);
      }
    }
  };
  auto ns_key = [&](const std::string& k) { return layout_.NamespaceKey(k); };
  auto pod_key = [&](const std::string& k) { return layout_.PodKey(k); };
  auto policy_key = [&](const std::string& k) { return layout_.PolicyKey(k); };
  auto cnp_key = [&](const std::string& k) { return layout_.ClusterPolicyKey(k); };
  auto node_key = [&](const std::string& k) { return layout_.NodeKey(k); };
  diff_keys(old.namespaces, next.namespaces, touched.namespaces, ns_key, false);
  diff_keys(old.pods, next.pods, touched.pods, pod_key, true);
  diff_keys(old.policies, next.policies, touched.policies, policy_key, true);
  diff_keys(old.cluster_policies, next.cluster_policies, touched.cluster_policies, cnp_key, false);
  diff_keys(old.nodes, next.nodes, touched.nodes, node_key, false);
  return txn;
}

absl::StatusOr<Snapshot> EtcdDatastore::Update(const Mutation& mutate) {
  const absl::Time deadline = absl::Now() + options_.write_deadline;
  bool attempted = false;
  absl::StatusOr<Snapshot> out;
  if (!write_mu_.LockWhenWithDeadline(absl::Condition::kTrue, deadline)) {
    write_mu_.Unlock();
    attempted = true;
    out = absl::UnavailableError(absl::StrCat(
        "etcd write not sent: this node's earlier writes to etcd did not finish within ",
        absl::FormatDuration(options_.write_deadline),
        " (etcd slow or not answering); the change was not stored"));
  } else {
    out = Write(mutate, deadline, &attempted);
    write_mu_.Unlock();
  }
  if (!attempted) return out;
  {
    absl::MutexLock l(&mu_);
    status_.last_write_error = out.status();
    if (out.ok()) {
      status_.unanswered_since = absl::InfinitePast();
    } else if (absl::IsUnavailable(out.status()) || absl::IsUnknown(out.status()) ||
               absl::IsDeadlineExceeded(out.status())) {
      if (status_.unanswered_since == absl::InfinitePast()) status_.unanswered_since = absl::Now();
      // Ask etcd to report on the watch: its answer shows it alive again.
      if (watch_ != nullptr && status_.watching) watch_->RequestProgress();
    }
  }
  if (!out.ok()) LogWarning(absl::StrCat("etcd: write failed: ", out.status().ToString()));
  return out;
}

absl::StatusOr<Snapshot> EtcdDatastore::Write(const Mutation& mutate, absl::Time deadline,
                                              bool* attempted) {
  for (int attempt = 1; attempt <= options_.max_write_attempts; ++attempt) {
    *attempted = false;
    const View base = CurrentView();
    DatastoreStatus st = status();
    if (!st.synced) {
      *attempted = true;
      return absl::UnavailableError(absl::StrCat(
          "etcd datastore ", st.endpoints, " not reached yet, so nothing can be written",
          st.from_cache ? absl::StrCat(" (this node enforces and serves its cached state of "
                                       "revision ", st.generation, ")")
                        : std::string(),
          st.last_error.ok() ? std::string() : absl::StrCat(": ", st.last_error.message())));
    }
    ASSIGN_OR_RETURN(std::optional<Change> change, mutate(*base.snapshot.state));
    if (!change) return base.snapshot;
    TxnRequest txn = BuildTxn(base, change->state, change->touched);
    if (txn.success_size() == 0) return base.snapshot;
    *attempted = true;
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat(
          "etcd write not sent: no time left of its ", absl::FormatDuration(options_.write_deadline),
          " (--etcd-write-timeout) after waiting for this node's view; the change was not "
          "stored"));
    }
    absl::StatusOr<etcdserverpb::TxnResponse> r = client_->Txn(txn, deadline);
    if (!r.ok()) {
      const std::string tail = absl::StrCat("; this node keeps enforcing etcd revision ",
                                            base.revision);
      if (absl::IsUnavailable(r.status())) {
        return absl::UnavailableError(absl::StrCat(
            "etcd unavailable, the change was not stored (it never reached etcd): ",
            r.status().message(), tail));
      }
      if (absl::IsUnknown(r.status()) || absl::IsDeadlineExceeded(r.status())) {
        return absl::UnknownError(absl::StrCat(
            "etcd did not confirm the write, outcome unknown: the change may or may not have "
            "been stored (",
            r.status().message(), ")", tail,
            ". Find out with `netpolctl get` once `netpolctl status` shows the datastore "
            "healthy; until then get answers from this node's own view and says so"));
      }
      if (absl::StrContains(r.status().message(), "too many operations")) {
        return absl::InvalidArgumentError(absl::StrCat(
            "this request changes ", txn.success_size(),
            " keys in one etcd transaction, more than etcd's --max-txn-ops allows (default "
            "128); split it or raise --max-txn-ops: ",
            r.status().message()));
      }
      return r.status();
    }
    if (r->succeeded()) {
      const int64_t revision = r->header().revision();
      if (!WaitForRevision(revision, options_.write_timeout)) {
        DatastoreStatus now = status();
        return absl::DeadlineExceededError(absl::StrCat(
            "stored in etcd at revision ", revision, ", but this node's watch has not delivered "
            "it after ", absl::FormatDuration(options_.write_timeout), " (at revision ",
            now.revision, now.last_error.ok() ? "" : ": ", now.last_error.message(), ")"));
      }
      return Current();
    }
    // A compare failed: another writer changed what this one read. Wait until the watch has
    // delivered the newest of the compared keys, then run the mutation again.
    int64_t newest = base.revision + 1;
    for (const etcdserverpb::ResponseOp& op : r->responses()) {
      for (const etcdserverpb::KeyValue& kv : op.response_range().kvs()) {
        newest = std::max(newest, kv.mod_revision());
      }
    }
    {
      absl::MutexLock l(&mu_);
      ++status_.conflicts;
    }
    LogInfo(absl::StrCat("etcd: write conflicted with a concurrent writer (attempt ", attempt,
                         ", read revision ", base.revision, ", newer change at ", newest,
                         "); retrying on the newer state"));
    if (!WaitForRevision(newest, options_.write_timeout)) {
      return absl::UnavailableError(absl::StrCat(
          "a concurrent write changed the same objects and this node's watch has not delivered "
          "it (revision ", newest, "); nothing was stored"));
    }
  }
  return absl::AbortedError(absl::StrCat("concurrent writers kept changing the same objects (",
                                         options_.max_write_attempts,
                                         " attempts); nothing was stored, retry"));
}

}  // namespace netpol::agent::etcd
