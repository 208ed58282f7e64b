// The Kubernetes datastore. See datastore.h.
#include "agent/k8s/datastore.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/log.h"

namespace netpol::agent::k8s {
namespace {

constexpr size_t kLogGenerations = 4096;

int Index(Resource r) { return static_cast<int>(r); }

std::set<std::string>& KeysOf(Resource r, ChangedKeys* keys) {
  switch (r) {
    case Resource::kNamespaces:
      return keys->namespaces;
    case Resource::kPods:
      return keys->pods;
    case Resource::kClusterNetworkPolicies:
      return keys->cluster_policies;
    case Resource::kNodes:
      return keys->nodes;
    case Resource::kNetworkPolicies:
      break;
  }
  return keys->policies;
}

// Erases `key` of resource `r` from `state`; true when it was there.
bool Erase(Resource r, const std::string& key, State* state) {
  switch (r) {
    case Resource::kNamespaces:
      return state->namespaces.erase(key) > 0;
    case Resource::kPods:
      return state->pods.erase(key) > 0;
    case Resource::kClusterNetworkPolicies:
      return state->cluster_policies.erase(key) > 0;
    case Resource::kNodes:
      return state->nodes.erase(key) > 0;
    case Resource::kNetworkPolicies:
      break;
  }
  return state->policies.erase(key) > 0;
}

// Whether `state` holds exactly `o` under its key.
bool Holds(const State& state, const Object& o) {
  if (const Namespace* ns = o.AsNamespace()) {
    auto it = state.namespaces.find(ns->name);
    return it != state.namespaces.end() && it->second == *ns;
  }
  if (const Pod* p = o.AsPod()) {
    auto it = state.pods.find(p->Key());
    return it != state.pods.end() && it->second == *p;
  }
  if (const ClusterNetworkPolicy* cnp = o.AsClusterNetworkPolicy()) {
    auto it = state.cluster_policies.find(cnp->name);
    return it != state.cluster_policies.end() && it->second == *cnp;
  }
  if (const Node* node = o.AsNode()) {
    auto it = state.nodes.find(node->name);
    return it != state.nodes.end() && it->second == *node;
  }
  const NetworkPolicy* np = o.AsNetworkPolicy();
  auto it = state.policies.find(np->Key());
  return it != state.policies.end() && it->second == *np;
}

std::string Query(const std::string& path, const std::vector<std::string>& params) {
  return absl::StrCat(path, "?", absl::StrJoin(params, "&"));
}

std::string UrlEscape(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// "forbidden: cannot watch pods: <server's message>".
absl::Status HttpError(long status, const std::string& body, const std::string& verb,
                       Resource r) {
  const std::string what = absl::StrCat(verb, " ", ResourceName(r));
  const std::string message = StatusMessage(body);
  switch (status) {
    case 401:
      return absl::UnauthenticatedError(
          absl::StrCat("unauthorized: cannot ", what, " (the token or certificate was refused; "
                       "the token file is read again): ",
                       message));
    case 403:
      return absl::PermissionDeniedError(
          absl::StrCat("forbidden: cannot ", what, ": ", message));
    case 404:
      return absl::NotFoundError(absl::StrCat("not found: cannot ", what, ": ", message));
    case 410:
      return absl::OutOfRangeError(absl::StrCat("gone: cannot ", what, ": ", message));
    default:
      return absl::UnavailableError(
          absl::StrCat("cannot ", what, ": HTTP ", status, ": ", message));
  }
}

// Why a resource the API server does not serve is not watched.
std::string AbsentMessage(Resource r) {
  return absl::StrCat("the API server does not serve ", ResourceName(r),
                      " (the CRD is not installed: deploy/05-crd-clusternetworkpolicies.yaml), "
                      "so there are none to enforce");
}

}  // namespace

absl::StatusOr<std::unique_ptr<KubernetesDatastore>> KubernetesDatastore::Create(
    DatastoreOptions options) {
  if (options.cluster.server.empty()) {
    return absl::InvalidArgumentError("kubernetes: no API server address");
  }
  auto client = std::make_unique<Client>(options.cluster);
  return Create(std::move(options), std::move(client));
}

absl::StatusOr<std::unique_ptr<KubernetesDatastore>> KubernetesDatastore::Create(
    DatastoreOptions options, std::unique_ptr<Client> client) {
  if (options.cluster.server.empty()) {
    return absl::InvalidArgumentError("kubernetes: no API server address");
  }
  if (options.page_size <= 0) return absl::InvalidArgumentError("kubernetes: page size <= 0");
  if (client == nullptr) return absl::InvalidArgumentError("kubernetes: no client");
  return std::unique_ptr<KubernetesDatastore>(
      new KubernetesDatastore(std::move(options), std::move(client)));
}

KubernetesDatastore::KubernetesDatastore(DatastoreOptions options, std::unique_ptr<Client> client)
    : options_(std::move(options)),
      client_(std::move(client)),
      rng_(options_.seed != 0 ? options_.seed
                              : static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()))) {
  current_.state = std::make_shared<const State>();
  status_.server = options_.cluster.server;
  for (Resource r : kResources) status_.resources[Index(r)].resource = r;
  if (!options_.cache_dir.empty()) {
    cache_ = std::make_unique<StateCache>(options_.cache_dir,
                                          absl::StrCat("kubernetes ", options_.cluster.server));
  }
}

KubernetesDatastore::~KubernetesDatastore() { Stop(); }

void KubernetesDatastore::SetListener(std::function<void()> on_change) {
  on_change_ = std::move(on_change);
}

void KubernetesDatastore::SetAttachments(
    std::function<std::shared_ptr<const Attachments>()> attachments) {
  attachments_ = std::move(attachments);
}

void KubernetesDatastore::Restore(State state) {
  absl::MutexLock a(&apply_mu_);
  for (const auto& [k, v] : state.namespaces) restored_[0].insert(k);
  for (const auto& [k, v] : state.pods) restored_[1].insert(k);
  for (const auto& [k, v] : state.policies) restored_[2].insert(k);
  for (const auto& [k, v] : state.cluster_policies) restored_[3].insert(k);
  for (const auto& [k, v] : state.nodes) restored_[4].insert(k);
  absl::MutexLock l(&mu_);
  current_.state = std::make_shared<const State>(std::move(state));
  // Generation 1 with no change log: the first sync compiles it whole; the lists' changes
  // (generation 2 on) are element-level against it.
  current_.generation = 1;
  log_.clear();
  log_first_ = 2;
  status_.from_cache = true;
}

void KubernetesDatastore::Start() {
  {
    absl::MutexLock l(&mu_);
    if (runner_.joinable() || stopping_) return;
  }
  if (cache_ != nullptr) {
    absl::StatusOr<CachedState> cached = cache_->Load();
    if (cached.ok()) {
      LogInfo(absl::StrCat(
          "kubernetes: enforcing the cached state of ", cached->version, " saved at ",
          absl::FormatTime(cached->saved_at), " (", cache_->path(), ": ",
          cached->state.namespaces.size(), " namespaces, ", cached->state.pods.size(), " pods, ",
          cached->state.policies.size(), " policies, ", cached->state.cluster_policies.size(),
          " cluster network policies, ", cached->state.nodes.size(),
          " nodes) until the API server is listed"));
      Restore(std::move(cached->state));
    } else if (!absl::IsNotFound(cached.status()) ||
               cached.status().message().find(" holds the state of ") != std::string::npos) {
      LogWarning(absl::StrCat("kubernetes: not using the state cache: ",
                              cached.status().ToString()));
    }
  }
  absl::MutexLock l(&mu_);
  if (runner_.joinable() || stopping_) return;
  runner_ = std::thread([this] { Run(); });
}

void KubernetesDatastore::FlushStateCache() {
  if (cache_ != nullptr) cache_->Flush();
}

bool KubernetesDatastore::WaitForState(absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return status_.synced || status_.from_cache;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
}

void KubernetesDatastore::OfferToCache(std::shared_ptr<const State> state) {
  if (cache_ == nullptr) return;
  std::string version;
  {
    absl::MutexLock l(&mu_);
    for (const ResourceStatus& r : status_.resources) {
      absl::StrAppend(&version, version.empty() ? "" : ",", ResourceName(r.resource), "=",
                      r.resource_version);
    }
  }
  cache_->Offer(std::move(state), absl::StrCat("resourceVersions ", version));
}

void KubernetesDatastore::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  cancel_.store(true);
  if (runner_.joinable()) runner_.join();
  for (std::thread& t : watchers_) {
    if (t.joinable()) t.join();
  }
  watchers_.clear();
}

bool KubernetesDatastore::stopping() const {
  absl::MutexLock l(&mu_);
  return stopping_;
}

bool KubernetesDatastore::WaitSynced(absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto synced = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return status_.synced; };
  return mu_.AwaitWithTimeout(absl::Condition(&synced), timeout);
}

Snapshot KubernetesDatastore::Current() const {
  absl::MutexLock l(&mu_);
  return current_;
}

absl::Status KubernetesDatastore::ObjectWritesAllowed() const {
  return absl::FailedPreconditionError(kReadOnlyMessage);
}

std::optional<ChangedKeys> KubernetesDatastore::ChangesBetween(uint64_t from_gen,
                                                               uint64_t to_gen) const {
  absl::MutexLock l(&mu_);
  if (from_gen == to_gen) return ChangedKeys();
  if (from_gen > to_gen || to_gen > current_.generation || from_gen + 1 < log_first_) {
    return std::nullopt;
  }
  ChangedKeys out;
  for (uint64_t g = from_gen + 1; g <= to_gen; ++g) out.Merge(log_[g - log_first_]);
  return out;
}

KubernetesStatus KubernetesDatastore::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

DatastoreHealth KubernetesDatastore::Health() const {
  const KubernetesStatus s = status();
  DatastoreHealth h;
  h.kind = DatastoreHealth::Kind::kKubernetes;
  h.endpoints = s.server;
  h.watch_connected = s.synced;
  for (const ResourceStatus& r : s.resources) {
    // A resource the API server does not serve (no CRD) has nothing to watch: not a fault.
    if (r.absent) continue;
    h.watch_connected = h.watch_connected && r.watching;
    if (!r.error.ok() && h.watch_error.ok()) h.watch_error = r.error;
  }
  // Writes here are the node's attachments only, always storable.
  h.healthy = h.watch_connected;
  h.resource_version = s.resource_version;
  h.last_event_time = s.last_event_time;
  h.invalid_objects = s.invalid;
  h.stale = s.from_cache;
  if (cache_ != nullptr) h.SetCache(cache_->status());
  for (const ResourceStatus& r : s.resources) {
    DatastoreHealth::ResourceWatch w;
    w.resource = ResourceName(r.resource);
    w.resource_version = r.resource_version;
    w.watching = r.watching;
    w.error = r.absent ? absl::NotFoundError(AbsentMessage(r.resource)) : r.error;
    h.resources.push_back(std::move(w));
  }
  return h;
}

absl::Duration KubernetesDatastore::Jitter(absl::Duration d) {
  absl::MutexLock l(&mu_);
  std::uniform_real_distribution<double> dist(0.5, 1.0);
  return d * dist(rng_);
}

absl::Duration KubernetesDatastore::Backoff(absl::Duration d) {
  const absl::Duration wait = Jitter(d);
  if (options_.on_backoff) options_.on_backoff(wait);
  return wait;
}

bool KubernetesDatastore::Pause(absl::Duration d) {
  absl::MutexLock l(&mu_);
  auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  mu_.AwaitWithTimeout(absl::Condition(&stop), d);
  return !stopping_;
}

void KubernetesDatastore::RecordError(Resource r, const absl::Status& status,
                                      const std::string& verb) {
  bool synced;
  {
    absl::MutexLock l(&mu_);
    ResourceStatus& rs = status_.resources[Index(r)];
    rs.error = status;
    rs.error_time = absl::Now();
    rs.watching = false;
    synced = status_.synced || !current_.state->namespaces.empty() || !current_.state->pods.empty();
  }
  LogWarning(absl::StrCat("kubernetes: ", verb, " ", ResourceName(r), ": ", status.message(),
                          synced ? "; still enforcing the last state"
                                 : "; nothing listed yet, the kernel keeps its table as it is"));
}

bool KubernetesDatastore::SetAbsent(Resource r, bool absent) {
  bool was;
  {
    absl::MutexLock l(&mu_);
    ResourceStatus& rs = status_.resources[Index(r)];
    was = rs.absent;
    rs.absent = absent;
    if (absent) {
      rs.watching = false;
      rs.error = absl::OkStatus();
    }
  }
  if (absent && !was) {
    LogInfo(absl::StrCat("kubernetes: ", AbsentMessage(r), "; listing it again every ",
                         absl::FormatDuration(options_.retry_max), " or so"));
  }
  return was;
}

bool KubernetesDatastore::IsAbsent(Resource r) const {
  absl::MutexLock l(&mu_);
  return status_.resources[Index(r)].absent;
}

void KubernetesDatastore::SetWatching(Resource r, bool watching) {
  bool recovered = false;
  std::string rv;
  {
    absl::MutexLock l(&mu_);
    ResourceStatus& rs = status_.resources[Index(r)];
    rs.watching = watching;
    if (watching) {
      recovered = !rs.error.ok();
      rs.error = absl::OkStatus();
    }
    rv = rs.resource_version;
  }
  if (recovered) {
    LogInfo(absl::StrCat("kubernetes: watching ", ResourceName(r), " again from resourceVersion ",
                         rv));
  }
}

absl::Status KubernetesDatastore::List(Resource r, std::vector<Item>* items,
                                       std::string* resource_version) {
  for (int attempt = 0;; ++attempt) {
    items->clear();
    resource_version->clear();
    std::string token;
    bool expired = false;
    do {
      std::vector<std::string> params = {absl::StrCat("limit=", options_.page_size)};
      if (!token.empty()) params.push_back(absl::StrCat("continue=", UrlEscape(token)));
      absl::StatusOr<HttpResponse> resp =
          client_->Get(Query(ResourcePath(r), params), options_.request_timeout);
      if (!resp.ok()) return resp.status();
      if (resp->status == 410 && !token.empty() && attempt < 3) {
        // The continue token expired (its version was compacted): list again from scratch.
        LogInfo(absl::StrCat("kubernetes: the ", ResourceName(r),
                             " list's continue token expired; listing again"));
        expired = true;
        break;
      }
      if (resp->status != 200) return HttpError(resp->status, resp->body, "list", r);
      absl::StatusOr<ListPage> page = DecodeListPage(r, resp->body);
      if (!page.ok()) return page.status();
      {
        absl::MutexLock l(&mu_);
        ++status_.pages;
      }
      if (resource_version->empty()) *resource_version = page->resource_version;
      for (Item& item : page->items) items->push_back(std::move(item));
      token = page->continue_token;
    } while (!token.empty());
    if (!expired) break;
    if (stopping()) return absl::CancelledError("stopping");
  }
  absl::MutexLock l(&mu_);
  ++status_.lists;
  return absl::OkStatus();
}

void KubernetesDatastore::ApplyItemsLocked(Resource r, std::vector<Item>& items, bool full,
                                           State* state, ChangedKeys* touched) {
  const int i = Index(r);
  std::map<std::string, std::string>& versions = versions_[i];
  std::map<std::string, std::string>& invalid = invalid_[i];
  std::set<std::string>& keys = KeysOf(r, touched);
  if (full) {
    std::set<std::string> listed;
    for (const Item& item : items) listed.insert(item.key);
    std::vector<std::string> gone;
    for (const auto& [key, rv] : versions) {
      if (!listed.count(key)) gone.push_back(key);
    }
    for (const std::string& key : restored_[i]) {
      if (!listed.count(key)) gone.push_back(key);
    }
    restored_[i].clear();
    for (const std::string& key : gone) {
      versions.erase(key);
      invalid.erase(key);
      if (Erase(r, key, state)) keys.insert(key);
    }
  }
  for (Item& item : items) {
    if (item.deleted) {
      versions.erase(item.key);
      invalid.erase(item.key);
      if (Erase(r, item.key, state)) keys.insert(item.key);
      continue;
    }
    auto v = versions.find(item.key);
    if (v != versions.end() && v->second == item.resource_version && !item.resource_version.empty()) {
      continue;  // already applied (a replayed event, or unchanged since the last list)
    }
    versions[item.key] = item.resource_version;
    for (const std::string& w : item.warnings) LogWarning(absl::StrCat("kubernetes: ", w));
    if (!item.invalid.empty()) {
      if (invalid[item.key] != item.invalid) {
        LogError(absl::StrCat("kubernetes: leaving out ", item.invalid));
      }
      invalid[item.key] = item.invalid;
    } else {
      invalid.erase(item.key);
    }
    if (item.object) {
      if (Holds(*state, *item.object)) continue;
      Upsert(*item.object, state);
      keys.insert(item.key);
    } else if (Erase(r, item.key, state)) {
      keys.insert(item.key);
    }
  }
}

std::shared_ptr<State> KubernetesDatastore::NextStateLocked(
    const std::function<void(State*, ChangedKeys*)>& apply, bool overlay_always,
    ChangedKeys* touched, std::vector<std::string>* invalid) {
  std::shared_ptr<const State> base;
  {
    absl::MutexLock l(&mu_);
    base = current_.state;
  }
  auto state = std::make_shared<State>(*base);
  apply(state.get(), touched);
  if (attachments_ && (overlay_always || !touched->pods.empty())) {
    std::set<std::string> overlaid;
    OverlayAttachments(*attachments_(), state.get(), &overlaid);
    touched->pods.insert(overlaid.begin(), overlaid.end());
  }
  for (const auto& per : invalid_) {
    for (const auto& [k, why] : per) invalid->push_back(why);
  }
  return state;
}

void KubernetesDatastore::Apply(Resource r, std::vector<Item> items, bool full,
                                const std::string& resource_version, bool publish_always) {
  absl::MutexLock a(&apply_mu_);
  const size_t events = full ? 0 : items.size();
  ChangedKeys touched;
  std::vector<std::string> invalid;
  std::shared_ptr<State> state = NextStateLocked(
      [&](State* s, ChangedKeys* t) { ApplyItemsLocked(r, items, full, s, t); },
      /*overlay_always=*/false, &touched, &invalid);
  bool published = false;
  {
    absl::MutexLock l(&mu_);
    ResourceStatus& rs = status_.resources[Index(r)];
    if (!resource_version.empty()) rs.resource_version = resource_version;
    if (events > 0) {
      status_.events += static_cast<int64_t>(events);
      status_.resource_version = resource_version;
      status_.last_event_time = absl::Now();
    }
    status_.invalid = std::move(invalid);
    if (!touched.empty() || publish_always) {
      PublishLocked(state, std::move(touched));
      published = true;
    }
  }
  if (published) OfferToCache(std::move(state));
  if (published && on_change_) on_change_();
}

void KubernetesDatastore::PublishLocked(std::shared_ptr<const State> state, ChangedKeys keys) {
  const uint64_t changed = keys.size();
  current_.state = std::move(state);
  current_.generation += 1;
  current_.changes += changed;
  log_.push_back(std::move(keys));
  while (log_.size() > kLogGenerations) {
    log_.pop_front();
    ++log_first_;
  }
}

void KubernetesDatastore::ApplyMany(std::array<std::vector<Item>, kResourceCount> lists,
                                    const std::array<std::string, kResourceCount>& rvs) {
  absl::MutexLock a(&apply_mu_);
  ChangedKeys touched;
  std::vector<std::string> invalid;
  std::shared_ptr<State> state = NextStateLocked(
      [&](State* s, ChangedKeys* t) {
        for (Resource r : kResources) ApplyItemsLocked(r, lists[Index(r)], /*full=*/true, s, t);
      },
      /*overlay_always=*/true, &touched, &invalid);
  {
    absl::MutexLock l(&mu_);
    for (Resource r : kResources) {
      if (!rvs[Index(r)].empty()) status_.resources[Index(r)].resource_version = rvs[Index(r)];
    }
    status_.invalid = std::move(invalid);
    // The first publication always makes a generation: the reconciler's first sync waits
    // for it.
    PublishLocked(state, std::move(touched));
    status_.synced = true;
    status_.from_cache = false;
  }
  OfferToCache(std::move(state));
  if (on_change_) on_change_();
}

void KubernetesDatastore::Run() {
  // 1. The first lists, all of them before anything is published. A resource the API server
  // does not serve (ResourceMayBeAbsent: no CRD) counts as listed and empty; its watch
  // thread lists it again until it is served.
  absl::Duration backoff = options_.retry_min;
  std::array<std::vector<Item>, kResourceCount> lists;
  std::array<std::string, kResourceCount> rvs;
  for (Resource r : kResources) {
    for (;;) {
      if (stopping()) return;
      absl::Status st = List(r, &lists[Index(r)], &rvs[Index(r)]);
      if (st.ok()) {
        SetAbsent(r, false);
        break;
      }
      if (absl::IsCancelled(st)) return;
      if (absl::IsNotFound(st) && ResourceMayBeAbsent(r)) {
        lists[Index(r)].clear();
        rvs[Index(r)].clear();
        SetAbsent(r, true);
        break;
      }
      RecordError(r, st, "cannot list");
      if (!Pause(Backoff(backoff))) return;
      backoff = std::min(backoff * 2, options_.retry_max);
    }
  }
  size_t total = 0;
  for (const auto& l : lists) total += l.size();
  ApplyMany(std::move(lists), rvs);
  {
    Snapshot s = Current();
    LogInfo(absl::StrCat("kubernetes: listed ", total, " objects from ", options_.cluster.server,
                         " (resourceVersions ", absl::StrJoin(rvs, "/"), "): ",
                         s.state->namespaces.size(), " namespaces, ", s.state->pods.size(),
                         " pods, ", s.state->policies.size(), " policies, ",
                         s.state->cluster_policies.size(), " cluster network policies, ",
                         s.state->nodes.size(), " nodes"));
  }
  // 2. One watch per resource.
  absl::MutexLock l(&mu_);
  if (stopping_) return;
  for (Resource r : kResources) watchers_.emplace_back([this, r] { WatchLoop(r); });
}

void KubernetesDatastore::WatchLoop(Resource r) {
  absl::Duration backoff = options_.retry_min;
  // Not served at the first list (no CRD): list until it is.
  bool need_list = IsAbsent(r);
  auto fail = [&](const absl::Status& st, const std::string& verb) {
    RecordError(r, st, verb);
    if (!Pause(Backoff(backoff))) return false;
    backoff = std::min(backoff * 2, options_.retry_max);
    return true;
  };
  while (!stopping()) {
    if (need_list) {
      std::vector<Item> items;
      std::string rv;
      absl::Status st = List(r, &items, &rv);
      if (absl::IsCancelled(st)) return;
      if (absl::IsNotFound(st) && ResourceMayBeAbsent(r)) {
        // Not served (the CRD is not installed, or was deleted with its objects): none of
        // them exist. Quietly list again later; the other resources go on.
        SetAbsent(r, true);
        Apply(r, {}, /*full=*/true, "");
        if (!Pause(Jitter(options_.retry_max))) return;
        continue;
      }
      if (!st.ok()) {
        if (!fail(st, "cannot list")) return;
        continue;
      }
      const bool was_absent = SetAbsent(r, false);
      const size_t n = items.size();
      Apply(r, std::move(items), /*full=*/true, rv);
      if (!was_absent) {
        absl::MutexLock l(&mu_);
        ++status_.relists;
      }
      LogInfo(absl::StrCat("kubernetes: listed ", n, " ", ResourceName(r),
                           was_absent ? " (served now)" : " again", " at resourceVersion ", rv,
                           "; applied the differences"));
      need_list = false;
    }
    std::string rv;
    {
      absl::MutexLock l(&mu_);
      rv = status_.resources[Index(r)].resource_version;
    }
    std::uniform_int_distribution<int64_t> dist(
        absl::ToInt64Seconds(options_.watch_timeout),
        std::max<int64_t>(absl::ToInt64Seconds(options_.watch_timeout),
                          2 * absl::ToInt64Seconds(options_.watch_timeout) - 1));
    int64_t timeout;
    {
      absl::MutexLock l(&mu_);
      timeout = std::max<int64_t>(1, dist(rng_));
    }
    const std::string path =
        Query(ResourcePath(r), {"watch=1", "allowWatchBookmarks=true",
                                absl::StrCat("resourceVersion=", UrlEscape(rv)),
                                absl::StrCat("timeoutSeconds=", timeout)});
    std::vector<Item> batch;
    std::string batch_rv;
    bool gone = false;
    absl::Status stream_error;
    auto flush = [&] {
      if (batch.empty()) {
        if (!batch_rv.empty()) {
          absl::MutexLock l(&mu_);
          status_.resources[Index(r)].resource_version = batch_rv;
        }
        return;
      }
      Apply(r, std::move(batch), /*full=*/false, batch_rv);
      batch.clear();
    };
    auto on_line = [&](absl::string_view line) {
      absl::StatusOr<WatchEvent> e = DecodeWatchEvent(r, line);
      if (!e.ok()) {
        stream_error = e.status();
        return false;
      }
      switch (e->type) {
        case WatchEvent::Type::kError:
          if (e->error_code == 410) {
            gone = true;
          } else {
            stream_error = absl::UnavailableError(absl::StrCat(
                "the watch of ", ResourceName(r), " ended with error ", e->error_code, ": ",
                e->error_message));
          }
          return false;
        case WatchEvent::Type::kBookmark:
          if (!e->item.resource_version.empty()) batch_rv = e->item.resource_version;
          return true;
        default:
          if (!e->item.resource_version.empty()) batch_rv = e->item.resource_version;
          batch.push_back(std::move(e->item));
          return true;
      }
    };
    absl::StatusOr<HttpResponse> resp = client_->Stream(
        path, on_line, &cancel_, absl::Seconds(timeout + 60),
        [&](long status) {
          if (status == 200) {
            SetWatching(r, true);
            backoff = options_.retry_min;
          }
        },
        flush);
    flush();
    SetWatching(r, false);
    if (stopping()) return;
    if (!resp.ok()) {
      absl::MutexLock l(&mu_);
      ++status_.watch_losses;
    }
    if (!resp.ok()) {
      if (!fail(resp.status(), "cannot watch")) return;
      continue;
    }
    if (resp->status == 404 && ResourceMayBeAbsent(r)) {
      need_list = true;  // the CRD went away: the list says so and drops its objects
      continue;
    }
    if (gone || resp->status == 410) {
      LogInfo(absl::StrCat("kubernetes: the watch of ", ResourceName(r), " from resourceVersion ",
                           rv, " is too old (410 Gone); listing again"));
      need_list = true;
      continue;
    }
    if (resp->status != 200) {
      if (!fail(HttpError(resp->status, resp->body, "watch", r), "cannot watch")) return;
      continue;
    }
    if (!stream_error.ok()) {
      if (!fail(stream_error, "watch")) return;
      continue;
    }
    // The server ended the watch (timeoutSeconds): resume from the last version at once.
  }
}

absl::StatusOr<Snapshot> KubernetesDatastore::Update(const Mutation& mutate) {
  absl::MutexLock a(&apply_mu_);
  const Snapshot base = Current();
  absl::StatusOr<std::optional<Change>> change = mutate(*base.state);
  if (!change.ok()) return change.status();
  if (!change->has_value()) return base;
  Change& c = **change;
  {
    absl::MutexLock l(&mu_);
    ChangedKeys keys = ResolveTouched(*base.state, c.state, c.touched);
    PublishLocked(std::make_shared<const State>(std::move(c.state)), std::move(keys));
    return current_;
  }
}

}  // namespace netpol::agent::k8s
