// The agent's API semantics. See service.h.
#include "agent/service.h"

#include <malloc.h>

#include <algorithm>
#include <map>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/program_view.h"
#include "api/convert.h"
#include "engine/compiler/compiler.h"
#include "engine/eval/eval.h"
#include "engine/model/loader.h"
#include "engine/util/program.h"
#include "engine/util/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace netpol::agent {

using api::FromApi;
using api::IsClusterScoped;
using api::KeyOf;
using api::KindName;
using api::ParseApiObjects;
using api::RefOf;
using api::RefString;
using api::ToApi;

namespace {

using google::protobuf::util::TimeUtil;

constexpr char kKindNames[] =
    "NAMESPACE, POD, NETWORK_POLICY, CLUSTER_NETWORK_POLICY or NODE";

// "namespace/name", or "name" in namespace default (as kubectl).
std::string PodKey(const std::string& text) {
  if (text.find('/') == std::string::npos) return "default/" + text;
  return text;
}

std::string ErrorText(const absl::Status& s) { return s.ok() ? std::string() : s.ToString(); }

void DatastoreToApi(const DatastoreHealth& h, v1::DatastoreStatus* out) {
  out->set_healthy(h.healthy);
  out->set_last_write_error(ErrorText(h.last_write_error));
  switch (h.kind) {
    case DatastoreHealth::Kind::kEmbedded: {
      out->set_kind(v1::EMBEDDED);
      v1::EmbeddedStoreStatus* e = out->mutable_embedded();
      e->set_directory(h.directory);
      e->set_journal_records(h.journal_records);
      e->set_journal_bytes(h.journal_bytes);
      if (h.last_compaction_time != absl::InfinitePast()) {
        *e->mutable_last_compaction_time() =
            TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(h.last_compaction_time));
      }
      e->set_compactions(h.compactions);
      e->set_last_compaction_error(ErrorText(h.last_compaction_error));
      break;
    }
    case DatastoreHealth::Kind::kEtcd: {
      out->set_kind(v1::ETCD);
      v1::EtcdStatus* e = out->mutable_etcd();
      e->set_endpoints(h.endpoints);
      e->set_watch_connected(h.watch_connected);
      e->set_watch_endpoint(h.watch_endpoint);
      e->set_watch_error(ErrorText(h.watch_error));
      e->set_revision(h.revision);
      break;
    }
    case DatastoreHealth::Kind::kKubernetes: {
      out->set_kind(v1::KUBERNETES);
      v1::KubernetesStatus* k = out->mutable_kubernetes();
      k->set_server(h.endpoints);
      k->set_watch_connected(h.watch_connected);
      k->set_watch_error(ErrorText(h.watch_error));
      k->set_resource_version(h.resource_version);
      if (h.last_event_time != absl::InfinitePast()) {
        *k->mutable_last_event_time() =
            TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(h.last_event_time));
      }
      for (const std::string& why : h.invalid_objects) k->add_skipped_objects(why);
      for (const DatastoreHealth::ResourceWatch& w : h.resources) {
        v1::KubernetesResourceStatus* r = k->add_resources();
        r->set_resource(w.resource);
        r->set_resource_version(w.resource_version);
        r->set_watching(w.watching);
        r->set_error(ErrorText(w.error));
      }
      break;
    }
    case DatastoreHealth::Kind::kUnknown:
      break;
  }
  out->set_stale(h.stale);
  if (!h.cache_path.empty()) {
    v1::StateCacheStatus* c = out->mutable_cache();
    c->set_path(h.cache_path);
    c->set_version(h.cache_version);
    if (h.cache_saved_at != absl::InfinitePast()) {
      *c->mutable_saved_at() = TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(h.cache_saved_at));
    }
    c->set_error(ErrorText(h.cache_error));
  }
}

// Non-empty when reads answer from this node's own copy of a remote datastore that it cannot
// reach now (or has not reached since it started): what Get/List say about their answer.
std::string StaleNote(const DatastoreHealth& h, uint64_t generation) {
  if (h.kind == DatastoreHealth::Kind::kKubernetes) {
    if (h.stale) {
      return absl::StrCat("the Kubernetes API server ", h.endpoints,
                          " has not been listed since this agent started: this answer is its "
                          "state cache",
                          h.cache_saved_at == absl::InfinitePast()
                              ? std::string()
                              : absl::StrCat(" (saved at ", absl::FormatTime(h.cache_saved_at),
                                             ")"));
    }
    // A watch being re-opened (every few minutes) is not staleness; a failing one is.
    if (h.watch_error.ok()) return "";
    return absl::StrCat("the Kubernetes API server ", h.endpoints, " is not answering (",
                        h.watch_error.message(), "): this answer is this node's view at ",
                        "resourceVersion ", h.resource_version.empty() ? "-" : h.resource_version,
                        "; the API server may hold newer changes");
  }
  if (h.kind != DatastoreHealth::Kind::kEtcd || h.healthy) return "";
  if (h.stale) {
    return absl::StrCat("etcd ", h.endpoints, " has not been reached since this agent started: ",
                        "this answer is its state cache of revision ", generation,
                        h.cache_saved_at == absl::InfinitePast()
                            ? std::string()
                            : absl::StrCat(" (saved at ", absl::FormatTime(h.cache_saved_at),
                                           ")"));
  }
  const absl::Status why = !h.watch_error.ok() ? h.watch_error : h.last_write_error;
  return absl::StrCat("etcd ", h.endpoints, " is not answering",
                      why.ok() ? std::string() : absl::StrCat(" (", why.message(), ")"),
                      ": this answer is this node's cached view at revision ", generation,
                      "; etcd may hold newer changes");
}

v1::SideDecision SideToApi(const SideDecision& d) {
  v1::SideDecision out;
  out.set_subject(d.subject);
  out.set_isolated(d.isolated);
  for (const std::string& p : d.isolating_policies) out.add_isolating_policies(p);
  for (const RuleRef& r : d.allowing_rules) {
    v1::RuleRef* o = out.add_allowing_rules();
    o->set_policy(r.policy);
    o->set_rule(r.rule);
  }
  out.set_allowed(d.allowed);
  out.set_explanation(d.explanation);
  out.set_tier(DecidingTierName(d.tier));
  auto cnp_rule = [](const CnpRuleRef& r, v1::ClusterNetworkPolicyRuleRef* o) {
    o->set_policy(r.policy);
    o->set_tier(r.tier == CnpTier::kAdmin ? v1::Admin : v1::Baseline);
    o->set_priority(r.priority);
    o->set_rule(r.rule);
    o->set_name(r.name);
    o->set_action(r.action == CnpAction::kAccept ? v1::Accept
                  : r.action == CnpAction::kDeny ? v1::Deny
                                                 : v1::Pass);
  };
  if (d.cnp_rule) cnp_rule(*d.cnp_rule, out.mutable_cluster_network_policy_rule());
  for (const CnpRuleRef& r : d.passed) cnp_rule(r, out.add_passed());
  return out;
}

absl::Status WithField(const absl::Status& s, absl::string_view field) {
  return absl::Status(s.code(), absl::StrCat(field, ": ", s.message()));
}

}  // namespace

AdmissionGate::Slot& AdmissionGate::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    if (gate_ != nullptr) gate_->in_flight_.fetch_sub(1);
    gate_ = o.gate_;
    o.gate_ = nullptr;
  }
  return *this;
}

AdmissionGate::Slot::~Slot() {
  if (gate_ != nullptr) gate_->in_flight_.fetch_sub(1);
}

absl::StatusOr<AdmissionGate::Slot> AdmissionGate::Enter() {
  const int limit = limit_.load();
  const int64_t before = in_flight_.fetch_add(1);
  if (limit > 0 && before >= limit) {
    in_flight_.fetch_sub(1);
    refused_.fetch_add(1);
    return absl::ResourceExhaustedError(absl::StrCat(
        "netpol-agent is busy: ", limit, " ", what_,
        " are already waiting for the kernel (", flag_,
        "); this request was refused and changed nothing: retry with backoff"));
  }
  return Slot(this);
}

TurnGate::Turn& TurnGate::Turn::operator=(Turn&& o) noexcept {
  if (this != &o) {
    if (gate_ != nullptr) gate_->Release();
    gate_ = o.gate_;
    o.gate_ = nullptr;
  }
  return *this;
}

TurnGate::Turn::~Turn() {
  if (gate_ != nullptr) gate_->Release();
}

bool TurnGate::Wait(absl::Time deadline, Turn* turn) {
  absl::MutexLock l(&mu_);
  auto free = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ < limit_; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&free), deadline)) return false;
  ++in_flight_;
  *turn = Turn(this);
  return true;
}

int TurnGate::in_flight() const {
  absl::MutexLock l(&mu_);
  return in_flight_;
}

void TurnGate::Release() {
  absl::MutexLock l(&mu_);
  --in_flight_;
}

MemoryTrimmer::MemoryTrimmer() : thread_([this] { Run(); }) {}

MemoryTrimmer::~MemoryTrimmer() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void MemoryTrimmer::Request() {
  absl::MutexLock l(&mu_);
  requested_ = true;
}

int64_t MemoryTrimmer::trims() const {
  absl::MutexLock l(&mu_);
  return trims_;
}

void MemoryTrimmer::Run() {
  // Delays after the latest request, from the previous trim of the series.
  static constexpr absl::Duration kSeries[] = {absl::Milliseconds(500), absl::Milliseconds(1500),
                                               absl::Seconds(6), absl::Seconds(22)};
  auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
  auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return requested_ || stop_; };
  absl::MutexLock l(&mu_);
  for (;;) {
    mu_.Await(absl::Condition(&wake));
    if (stop_) return;
    size_t i = 0;
    while (i < sizeof(kSeries) / sizeof(kSeries[0])) {
      requested_ = false;
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), kSeries[i])) return;
      if (requested_) {  // a newer request starts the series again
        i = 0;
        continue;
      }
      mu_.Unlock();
      malloc_trim(0);
      mu_.Lock();
      ++trims_;
      ++i;
    }
  }
}

AgentService::AgentService(Datastore* store, Reconciler* reconciler)
    : store_(store), reconciler_(reconciler) {}


void AgentService::set_max_pending(int n) {
  writes_.set_limit(n);
  dry_runs_.set_limit(n);
  attachments_.set_limit(n);
  kernel_reads_.set_limit(n);
  read_only_kernel_reads_.set_limit(n);
}

bool AgentService::Ready() const { return reconciler_->status().synced_once; }

absl::StatusOr<std::vector<Object>> AgentService::LoadObjects(
    const google::protobuf::RepeatedPtrField<v1::Object>& objects,
    const google::protobuf::RepeatedPtrField<v1::Manifest>& manifests) const {
  // Bounded work per request: checked before parsing (messages) and while loading (YAML).
  if (objects.size() > kMaxObjectsPerRequest || manifests.size() > kMaxObjectsPerRequest) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request holds ", std::max(objects.size(), manifests.size()),
        objects.size() > kMaxObjectsPerRequest ? " objects" : " manifests", "; at most ",
        kMaxObjectsPerRequest, " per request: split the change"));
  }
  ASSIGN_OR_RETURN(std::vector<Object> out, ParseApiObjects(objects, "objects"));
  for (int i = 0; i < manifests.size(); ++i) {
    LoadOptions options;
    options.source = manifests[i].source().empty() ? absl::StrCat("manifests[", i, "]")
                                                   : manifests[i].source();
    if (!manifests[i].default_namespace().empty()) {
      options.default_namespace = manifests[i].default_namespace();
    }
    ASSIGN_OR_RETURN(LoadResult loaded, LoadYaml(manifests[i].text(), options));
    for (Object& o : loaded.objects) out.push_back(std::move(o));
    if (out.size() > static_cast<size_t>(kMaxObjectsPerRequest)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "request holds more than ", kMaxObjectsPerRequest, " objects (", options.source,
          " brings the count to ", out.size(), "); at most ", kMaxObjectsPerRequest,
          " per request: split the change"));
    }
  }
  return out;
}

// Writes of at least this many objects (about 0.5 MB of manifests) return freed memory to the
// system when done.
constexpr size_t kTrimAfterObjects = 1000;

template <typename Response>
absl::Status AgentService::Write(const Mutate& mutate, bool dry_run, absl::Duration timeout,
                                 Response* response) {
  if (dry_run) {
    const compiler::CompileOptions copts = reconciler_->CompileOptionsNow();
    Snapshot snap = store_->Current();
    ASSIGN_OR_RETURN(ChangeResult change, mutate(*snap.state));
    if (endpoints_ != nullptr) OverlayAttachments(*endpoints_->Current(), &change.state);
    ASSIGN_OR_RETURN(nft::Program program, compiler::Compile(change.state, copts));
    for (v1::ObjectResult& r : change.results) *response->add_results() = std::move(r);
    response->set_generation(snap.generation);
    std::shared_ptr<const nft::Program> committed;
    uint64_t base_generation = 0;
    nft::Transaction tx = reconciler_->Plan(program, &base_generation, &committed);
    v1::Plan* plan = response->mutable_plan();
    plan->set_base_generation(base_generation);
    plan->set_nft_changes(tx.ToNftText());
    plan->set_element_changes(static_cast<int64_t>(tx.ElementCount()));
    for (const std::string& pod : AffectedPods(*snap.state, committed.get(), change.state, program)) {
      plan->add_affected_pods(pod);
    }
    // The changed State and the whole compile are freed when the response is sent.
    if (static_cast<size_t>(response->results_size()) >= kTrimAfterObjects) trimmer_.Request();
    return absl::OkStatus();
  }
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<v1::ObjectResult> results;
  uint64_t generation = 0;
  absl::Status st = StoreChange(mutate, &results, &generation);
  if (st.ok()) st = reconciler_->WaitFor(generation, deadline - absl::Now());
  // A request of many objects leaves its parse trees, State copies and the compile's scratch
  // freed but held by malloc (hundreds of MB at 10k objects): hand them back to the system
  // once the response is sent too (MemoryTrimmer).
  if (results.size() >= kTrimAfterObjects) trimmer_.Request();
  RETURN_IF_ERROR(st);
  for (v1::ObjectResult& r : results) *response->add_results() = std::move(r);
  response->set_generation(generation);
  return absl::OkStatus();
}

absl::Status AgentService::StoreChange(const Mutate& mutate,
                                       std::vector<v1::ObjectResult>* results,
                                       uint64_t* generation) {
  QueuedWrite me;
  me.mutate = &mutate;
  std::vector<QueuedWrite*> batch;
  {
    absl::MutexLock l(&batch_mu_);
    queue_.push_back(&me);
    auto my_turn = [this, &me]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_) {
      return me.done || !leader_active_;
    };
    batch_mu_.Await(absl::Condition(&my_turn));
    if (!me.done) {
      // Lead: take everything queued so far (this write included).
      leader_active_ = true;
      batch.swap(queue_);
    }
  }
  if (!batch.empty()) {
    StoreBatch(batch);
    absl::MutexLock l(&batch_mu_);
    for (QueuedWrite* w : batch) w->done = true;
    leader_active_ = false;
  }
  // Done (by this thread or a leader): the fields are final and no other thread touches them.
  *results = std::move(me.results);
  *generation = me.generation;
  return me.status;
}

void AgentService::StoreBatch(const std::vector<QueuedWrite*>& batch) {
  // Stores the mutations of `writes` as one change (a write whose objects the compiler would
  // reject fails alone); fails as a whole only when the change cannot be stored.
  auto store = [&](const std::vector<QueuedWrite*>& writes) -> absl::Status {
    RETURN_IF_ERROR(compiler::ValidateOptions(reconciler_->CompileOptionsNow()));
    bool stored = false;
    absl::StatusOr<Snapshot> snap =
        store_->Update([&](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
          // The datastore may run this again (a conflicting writer elsewhere): start afresh.
          std::optional<State> state;
          uint64_t changed = 0;
          ChangedKeys touched;  // so the store looks at these keys only, not the whole States
          for (QueuedWrite* w : writes) {
            w->status = absl::OkStatus();
            w->results.clear();
            absl::StatusOr<ChangeResult> change = (*w->mutate)(state ? *state : base);
            if (!change.ok()) {
              w->status = change.status();
              continue;
            }
            // Input the compiler would reject stays out of the store. Only the objects this
            // write created or changed are checked (Compile's own checks and messages): the
            // rest of the State passed them when it was stored. The write's Delta goes to the
            // store as the keys it touched.
            ChangedKeys& keys = change->delta;
            if (absl::Status valid = compiler::ValidateChanged(change->state, keys); !valid.ok()) {
              w->status = valid;
              continue;
            }
            // CNI attachments keep their pods' addresses whatever the API wrote
            // (attachments.h).
            std::set<std::string> overlaid;
            if (endpoints_ != nullptr) {
              change->objects_changed +=
                  OverlayAttachments(*endpoints_->Current(), &change->state, &overlaid);
            }
            w->results = std::move(change->results);
            if (change->objects_changed == 0) continue;
            changed += change->objects_changed;
            state = std::move(change->state);
            touched.Merge(keys);
            touched.pods.insert(overlaid.begin(), overlaid.end());
          }
          stored = changed > 0;
          if (changed == 0) return std::nullopt;
          return Datastore::Change(*std::move(state), changed, std::move(touched));
        });
    if (!snap.ok()) return snap.status();
    if (stored) reconciler_->Notify();
    for (QueuedWrite* w : writes) w->generation = snap->generation;
    return absl::OkStatus();
  };
  absl::Status st = store(batch);
  if (st.ok()) return;
  if (batch.size() == 1) {
    batch[0]->status = st;
    return;
  }
  // One of them (or the store) failed the whole batch: store each on its own, so only the
  // writer whose change fails sees the error.
  for (QueuedWrite* w : batch) {
    absl::Status one = store({w});
    if (!one.ok()) w->status = one;
  }
}

absl::StatusOr<v1::ApplyResponse> AgentService::Apply(const v1::ApplyRequest& request,
                                                      absl::Duration timeout) {
  // Admitted before any work, so a refused write has changed nothing. Dry runs compile the
  // whole State: a gate of their own, so they never crowd out writes; they work whoever owns
  // the objects (diff).
  if (request.compare_only() && !request.dry_run()) {
    return absl::InvalidArgumentError("compare_only: needs dry_run (a comparison changes nothing)");
  }
  if (!request.dry_run()) RETURN_IF_ERROR(store_->ObjectWritesAllowed());
  ASSIGN_OR_RETURN(AdmissionGate::Slot slot,
                   request.dry_run() ? dry_runs_.Enter() : writes_.Enter());
  ASSIGN_OR_RETURN(std::vector<Object> objects,
                   LoadObjects(request.objects(), request.manifests()));
  if (objects.empty()) {
    return absl::InvalidArgumentError("no objects: set objects or manifests");
  }
  v1::ApplyResponse response;
  if (request.compare_only()) {
    // A dry run's results without its compile and plan: each object against one snapshot, and
    // that snapshot's generation (netpolctl wait -f asks this until nothing would change).
    Snapshot snap = store_->Current();
    ChangeResult change = ApplyObjects(*snap.state, objects);
    RETURN_IF_ERROR(compiler::ValidateChanged(change.state, change.delta));
    for (v1::ObjectResult& r : change.results) *response.add_results() = std::move(r);
    response.set_generation(snap.generation);
    return response;
  }
  RETURN_IF_ERROR(Write(
      [&](const State& base) -> absl::StatusOr<ChangeResult> {
        return ApplyObjects(base, objects);
      },
      request.dry_run(), timeout, &response));
  return response;
}

absl::StatusOr<v1::DeleteResponse> AgentService::Delete(const v1::DeleteRequest& request,
                                                        absl::Duration timeout) {
  if (!request.dry_run()) RETURN_IF_ERROR(store_->ObjectWritesAllowed());
  ASSIGN_OR_RETURN(AdmissionGate::Slot slot,
                   request.dry_run() ? dry_runs_.Enter() : writes_.Enter());
  std::vector<v1::ObjectRef> refs(request.refs().begin(), request.refs().end());
  ASSIGN_OR_RETURN(std::vector<Object> objects,
                   LoadObjects(google::protobuf::RepeatedPtrField<v1::Object>(),
                               request.manifests()));
  for (const Object& o : objects) refs.push_back(RefOf(o));
  if (refs.empty()) return absl::InvalidArgumentError("no objects: set refs or manifests");
  v1::DeleteResponse response;
  RETURN_IF_ERROR(Write(
      [&](const State& base) { return DeleteObjects(base, refs, request.ignore_not_found()); },
      request.dry_run(), timeout, &response));
  return response;
}

absl::StatusOr<v1::GetResponse> AgentService::Get(const v1::GetRequest& request) const {
  v1::ObjectRef ref = request.ref();
  if (KindName(ref.kind()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("ref.kind: required (", kKindNames, ")"));
  }
  if (ref.name().empty()) return absl::InvalidArgumentError("ref.name: required");
  if (IsClusterScoped(ref.kind())) {
    ref.clear_namespace_();
  } else if (ref.namespace_().empty()) {
    ref.set_namespace_("default");
  }
  Snapshot snap = store_->Current();
  const State& st = *snap.state;
  const std::string key = KeyOf(ref);
  v1::GetResponse out;
  out.set_stale(StaleNote(store_->Health(), snap.generation));
  switch (ref.kind()) {
    case v1::NAMESPACE:
      if (const Namespace* ns = st.FindNamespace(key)) {
        *out.mutable_object()->mutable_namespace_() = ToApi(*ns);
        return out;
      }
      break;
    case v1::POD:
      if (const Pod* pod = st.FindPod(key)) {
        *out.mutable_object()->mutable_pod() = ToApi(*pod);
        return out;
      }
      break;
    case v1::CLUSTER_NETWORK_POLICY: {
      auto it = st.cluster_policies.find(key);
      if (it != st.cluster_policies.end()) {
        *out.mutable_object()->mutable_cluster_network_policy() = ToApi(it->second);
        return out;
      }
      break;
    }
    case v1::NODE: {
      auto it = st.nodes.find(key);
      if (it != st.nodes.end()) {
        *out.mutable_object()->mutable_node() = ToApi(it->second);
        return out;
      }
      break;
    }
    default: {
      auto it = st.policies.find(key);
      if (it != st.policies.end()) {
        *out.mutable_object()->mutable_network_policy() = ToApi(it->second);
        return out;
      }
    }
  }
  return absl::NotFoundError(absl::StrCat(RefString(ref), ": not found",
                                          out.stale().empty() ? "" : " (", out.stale(),
                                          out.stale().empty() ? "" : ")"));
}

absl::StatusOr<v1::ListResponse> AgentService::List(const v1::ListRequest& request,
                                                    absl::Time deadline) const {
  if (KindName(request.kind()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("kind: required (", kKindNames, ")"));
  }
  Snapshot snap = store_->Current();
  const State& st = *snap.state;
  const std::string& ns = request.namespace_();
  // The objects of one namespace are a key range ("ns/..."): counted and walked without
  // looking at the others.
  auto range = [&ns](const auto& objects) {
    if (ns.empty()) return std::make_pair(objects.begin(), objects.end());
    return std::make_pair(objects.lower_bound(ns + "/"), objects.lower_bound(ns + "0"));
  };
  size_t count = 0;
  switch (request.kind()) {
    case v1::NAMESPACE:
      count = st.namespaces.size();
      break;
    case v1::CLUSTER_NETWORK_POLICY:
      count = st.cluster_policies.size();
      break;
    case v1::NODE:
      count = st.nodes.size();
      break;
    case v1::POD: {
      auto [b, e] = range(st.pods);
      count = static_cast<size_t>(std::distance(b, e));
      break;
    }
    default: {
      auto [b, e] = range(st.policies);
      count = static_cast<size_t>(std::distance(b, e));
      break;
    }
  }
  // A large answer waits for its turn: each holds its objects as messages until sent.
  const bool large = count > kLargeReadObjects;
  TurnGate::Turn turn;
  if (large) {
    if (!large_reads_.Wait(deadline, &turn)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "netpol-agent is busy: ", kMaxLargeReads, " Lists of more than ", kLargeReadObjects,
          " objects are being answered and this one's deadline passed while waiting for its "
          "turn: retry with backoff, or list one namespace at a time"));
    }
  }
  v1::ListResponse out;
  out.set_generation(snap.generation);
  out.set_stale(StaleNote(store_->Health(), snap.generation));
  out.mutable_objects()->Reserve(static_cast<int>(count));
  switch (request.kind()) {
    case v1::NAMESPACE:
      for (const auto& [k, n] : st.namespaces) *out.add_objects()->mutable_namespace_() = ToApi(n);
      break;
    case v1::CLUSTER_NETWORK_POLICY:
      for (const auto& [k, c] : st.cluster_policies) {
        *out.add_objects()->mutable_cluster_network_policy() = ToApi(c);
      }
      break;
    case v1::NODE:
      for (const auto& [k, n] : st.nodes) *out.add_objects()->mutable_node() = ToApi(n);
      break;
    case v1::POD: {
      auto [b, e] = range(st.pods);
      for (auto it = b; it != e; ++it) *out.add_objects()->mutable_pod() = ToApi(it->second);
      break;
    }
    default: {
      auto [b, e] = range(st.policies);
      for (auto it = b; it != e; ++it) {
        *out.add_objects()->mutable_network_policy() = ToApi(it->second);
      }
      break;
    }
  }
  if (large) trimmer_.Request();  // the messages are freed once gRPC has sent them
  return out;
}

absl::StatusOr<v1::CheckResponse> AgentService::Check(const v1::CheckRequest& request) const {
  Snapshot snap = store_->Current();
  const State& st = *snap.state;
  std::optional<Family> family;
  if (request.ip_family() == "IPv6") {
    family = Family::kV6;
  } else if (request.ip_family() == "IPv4") {
    family = Family::kV4;
  } else if (!request.ip_family().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ipFamily: \"", request.ip_family(), "\": must be IPv4 or IPv6"));
  }
  std::optional<Family> address_family;
  auto endpoint = [&](const v1::Endpoint& e, const char* field,
                      bool source) -> absl::StatusOr<Endpoint> {
    switch (e.endpoint_case()) {
      case v1::Endpoint::kPod: {
        const Pod* pod = st.FindPod(PodKey(e.pod()));
        if (pod == nullptr) {
          return absl::NotFoundError(
              absl::StrCat(field, ".pod: pod ", PodKey(e.pod()), ": not found"));
        }
        return Endpoint::ForPod(*pod);
      }
      case v1::Endpoint::kAddress: {
        absl::StatusOr<IpAddr> a = IpAddr::Parse(e.address());
        if (!a.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ".address: ", a.status().message()));
        }
        if (absl::Status mapped = RefuseV4Mapped(*a); !mapped.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(field, ".address: ", mapped.message()));
        }
        if (address_family && *address_family != a->family) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ".address: mixes IPv4 and IPv6 with the other end"));
        }
        address_family = a->family;
        return Endpoint::ForAddress(*a);
      }
      case v1::Endpoint::kNode:
        if (!source) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ".node: only the source may be the node"));
        }
        return Endpoint::ForNode();
      case v1::Endpoint::ENDPOINT_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError(absl::StrCat(field, ": required (pod, address or node)"));
  };
  ASSIGN_OR_RETURN(Endpoint src, endpoint(request.source(), "source", true));
  ASSIGN_OR_RETURN(Endpoint dst, endpoint(request.destination(), "destination", false));
  if (address_family && family && *family != *address_family) {
    return absl::InvalidArgumentError("ipFamily: does not match the address given");
  }
  if (request.port() < 1 || request.port() > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("port: ", request.port(), ": must be between 1 and 65535"));
  }
  // Unspecified means TCP, as in Kubernetes; a value the API does not define is an error.
  if (!v1::Protocol_IsValid(request.protocol())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "protocol: ", static_cast<int>(request.protocol()), ": must be TCP, UDP or SCTP"));
  }
  const Family f = address_family ? *address_family : family.value_or(Family::kV4);
  Decision d = Decide(st, src, dst, f, FromApi(request.protocol()), request.port());
  v1::CheckResponse out;
  out.set_verdict(!d.applicable ? v1::NOT_APPLICABLE : d.allowed ? v1::ALLOWED : v1::DENIED);
  out.set_reason(d.reason);
  *out.mutable_egress() = SideToApi(d.egress);
  *out.mutable_ingress() = SideToApi(d.ingress);
  out.set_explanation(d.Explain());
  return out;
}

namespace {

// "ns/name ingress[3]" (compiler::internal::RuleSource) as a RuleRef and its direction.
bool ParseRuleSource(const std::string& src, v1::RuleRef* ref, std::string* direction) {
  const size_t space = src.find(' ');
  const size_t open = src.find('[', space);
  if (space == std::string::npos || open == std::string::npos || src.back() != ']') return false;
  int index = 0;
  if (!absl::SimpleAtoi(src.substr(open + 1, src.size() - open - 2), &index)) return false;
  ref->set_policy(src.substr(0, space));
  ref->set_rule(index);
  *direction = src.substr(space + 1, open - space - 1);
  return true;
}

v1::ClusterNetworkPolicyRuleRef TierRuleToApi(const compiler::TierRuleSource& r) {
  v1::ClusterNetworkPolicyRuleRef o;
  o.set_policy(r.policy);
  o.set_tier(r.tier == CnpTier::kAdmin ? v1::Admin : v1::Baseline);
  o.set_priority(r.priority);
  o.set_rule(r.rule);
  o.set_name(r.name);
  o.set_action(r.action == CnpAction::kAccept ? v1::Accept
               : r.action == CnpAction::kDeny ? v1::Deny
                                              : v1::Pass);
  return o;
}

v1::RuleCounter RuleCounterOf(const CountedRule& r) {
  v1::RuleCounter out;
  out.set_chain(r.count.chain);
  out.set_index(static_cast<int32_t>(r.count.index));
  out.set_packets(r.count.packets);
  out.set_bytes(r.count.bytes);
  out.set_comment(r.count.comment);
  if (!r.attributed) return out;
  out.set_direction(r.ingress ? "ingress" : "egress");
  out.set_kind(r.drop ? v1::RuleCounter::DROP : v1::RuleCounter::ALLOW);
  if (r.tier_action) {
    out.set_kind(*r.tier_action == CnpAction::kDeny ? v1::RuleCounter::CLUSTER_DENY
                                                    : v1::RuleCounter::CLUSTER_ACCEPT);
  } else if (absl::StartsWith(r.count.chain, "cin-") || absl::StartsWith(r.count.chain, "ceg-")) {
    out.set_kind(v1::RuleCounter::KIND_UNSPECIFIED);  // the jump to the pods' group chain
  }
  for (const compiler::TierRuleSource& t : r.tier_rules) *out.add_cluster_rules() = TierRuleToApi(t);
  for (const std::string& p : r.policies) out.add_policies(p);
  for (const std::string& src : r.sources) {
    v1::RuleRef ref;
    std::string direction;
    if (ParseRuleSource(src, &ref, &direction)) *out.add_rules() = std::move(ref);
  }
  return out;
}

}  // namespace

absl::StatusOr<v1::CountersResponse> AgentService::Counters(const v1::CountersRequest&,
                                                            Caller caller) const {
  v1::CountersResponse out;
  out.set_generation(reconciler_->status().applied_generation);
  out.set_enabled(reconciler_->options().compile.rule_counters);
  if (!out.enabled()) return out;
  ASSIGN_OR_RETURN(AdmissionGate::Slot slot, kernel_read_gate(caller).Enter());
  absl::StatusOr<std::vector<CountedRule>> counted = reconciler_->ReadRuleCounters();
  if (!counted.ok()) return WithField(counted.status(), "reading the rule counters");
  struct Sum {
    uint64_t packets = 0, bytes = 0;
    bool shared = false;
  };
  // By (policy, direction, rule index).
  std::map<std::tuple<std::string, std::string, int32_t>, Sum> per_rule;
  std::map<std::string, v1::PolicyCounter> per_policy;
  // By (tier, ClusterNetworkPolicy, direction, rule index).
  struct ClusterSum {
    v1::ClusterNetworkPolicyRuleRef rule;
    Sum sum;
  };
  std::map<std::tuple<int, std::string, std::string, int32_t>, ClusterSum> per_cluster_rule;
  for (const CountedRule& r : *counted) {
    v1::RuleCounter rc = RuleCounterOf(r);
    for (const v1::ClusterNetworkPolicyRuleRef& ref : rc.cluster_rules()) {
      ClusterSum& c =
          per_cluster_rule[{static_cast<int>(ref.tier()), ref.policy(), rc.direction(), ref.rule()}];
      c.rule = ref;
      c.sum.packets += r.count.packets;
      c.sum.bytes += r.count.bytes;
      c.sum.shared |= rc.cluster_rules_size() > 1;
    }
    if (r.attributed) {
      for (const std::string& p : r.policies) {
        v1::PolicyCounter& pc = per_policy[p];
        pc.set_policy(p);
        if (r.drop) {
          pc.set_dropped_packets(pc.dropped_packets() + r.count.packets);
          pc.set_dropped_bytes(pc.dropped_bytes() + r.count.bytes);
        }
      }
      std::set<std::string> allowing;
      for (const v1::RuleRef& ref : rc.rules()) {
        Sum& sum = per_rule[{ref.policy(), rc.direction(), ref.rule()}];
        sum.packets += r.count.packets;
        sum.bytes += r.count.bytes;
        sum.shared |= rc.rules_size() > 1;
        allowing.insert(ref.policy());
      }
      for (const std::string& p : allowing) {
        v1::PolicyCounter& pc = per_policy[p];
        pc.set_policy(p);
        pc.set_allowed_packets(pc.allowed_packets() + r.count.packets);
        pc.set_allowed_bytes(pc.allowed_bytes() + r.count.bytes);
      }
    }
    *out.add_rules() = std::move(rc);
  }
  for (const auto& [key, sum] : per_rule) {
    v1::PolicyRuleCounter* prc = out.add_policy_rules();
    prc->mutable_rule()->set_policy(std::get<0>(key));
    prc->mutable_rule()->set_rule(std::get<2>(key));
    prc->set_direction(std::get<1>(key));
    prc->set_packets(sum.packets);
    prc->set_bytes(sum.bytes);
    prc->set_shared(sum.shared);
  }
  for (auto& [p, pc] : per_policy) *out.add_policies() = std::move(pc);
  for (auto& [key, c] : per_cluster_rule) {
    v1::ClusterPolicyRuleCounter* crc = out.add_cluster_policy_rules();
    *crc->mutable_rule() = std::move(c.rule);
    crc->set_direction(std::get<2>(key));
    crc->set_packets(c.sum.packets);
    crc->set_bytes(c.sum.bytes);
    crc->set_shared(c.sum.shared);
  }
  return out;
}

absl::StatusOr<v1::ExplainPodResponse> AgentService::ExplainPod(
    const v1::ExplainPodRequest& request) const {
  if (request.pod().empty()) return absl::InvalidArgumentError("pod: required (namespace/name)");
  Snapshot snap = store_->Current();
  const State& st = *snap.state;
  const Pod* pod = st.FindPod(PodKey(request.pod()));
  if (pod == nullptr) {
    return absl::NotFoundError(absl::StrCat("pod ", PodKey(request.pod()), ": not found"));
  }
  v1::ExplainPodResponse out;
  *out.mutable_pod() = ToApi(*pod);
  out.set_local(compiler::IsLocalPod(*pod, reconciler_->CompileOptionsNow()));
  for (const std::string& p : PoliciesSelecting(st, *pod, Direction::kIngress)) {
    out.add_ingress_policies(p);
  }
  for (const ClusterNetworkPolicy* cnp : ClusterPoliciesSelecting(st, *pod, CnpTier::kAdmin)) {
    out.add_admin_cluster_network_policies(
        absl::StrCat(cnp->name, " (priority ", cnp->priority, ")"));
  }
  for (const ClusterNetworkPolicy* cnp :
       ClusterPoliciesSelecting(st, *pod, CnpTier::kBaseline)) {
    out.add_baseline_cluster_network_policies(
        absl::StrCat(cnp->name, " (priority ", cnp->priority, ")"));
  }
  for (const std::string& p : PoliciesSelecting(st, *pod, Direction::kEgress)) {
    out.add_egress_policies(p);
  }
  for (const ContainerPort& p : pod->ports) {
    if (p.name.empty()) continue;
    v1::NamedPort* np = out.add_named_ports();
    np->set_name(p.name);
    np->set_protocol(ToApi(p.protocol));
    np->set_port(p.container_port);
  }
  uint64_t program_generation = 0;
  if (std::shared_ptr<const nft::Program> program = reconciler_->committed(&program_generation)) {
    out.set_program_generation(program_generation);
    std::vector<std::string> chains = PodChains(*program, *pod);
    for (const std::string& c : chains) out.add_chains(c);
    if (!chains.empty()) out.set_nft_text(nft::RenderProgram(SubProgram(*program, chains)));
    if (!chains.empty() && reconciler_->options().compile.rule_counters) {
      // Best effort: explaining a pod needs no kernel; without the counts it says the rest.
      absl::StatusOr<std::vector<CountedRule>> counted = reconciler_->ReadRuleCounters();
      if (counted.ok()) {
        const std::set<std::string> mine(chains.begin(), chains.end());
        for (const CountedRule& r : *counted) {
          if (mine.count(r.count.chain)) *out.add_counters() = RuleCounterOf(r);
        }
      }
    }
  }
  return out;
}

absl::StatusOr<v1::RenderResponse> AgentService::Render(const v1::RenderRequest& request,
                                                        Caller caller) const {
  v1::RenderResponse out;
  out.set_generation(reconciler_->status().applied_generation);
  if (request.source() == v1::RenderRequest::KERNEL) {
    ASSIGN_OR_RETURN(AdmissionGate::Slot slot, kernel_read_gate(caller).Enter());
    absl::StatusOr<nft::Program> dumped = reconciler_->DumpKernel();
    if (!dumped.ok()) return WithField(dumped.status(), "reading the table from the kernel");
    out.set_nft_text(nft::RenderProgram(*dumped));
    return out;
  }
  uint64_t generation = 0;
  std::shared_ptr<const nft::Program> program = reconciler_->committed(&generation);
  if (program == nullptr) return absl::UnavailableError("no program committed yet");
  out.set_generation(generation);
  out.set_nft_text(nft::RenderProgram(*program));
  return out;
}

v1::NodeStatus AgentService::OwnNodeStatus() const {
  SyncStatus s = reconciler_->status();
  v1::NodeStatus out;
  out.set_node_name(reconciler_->CompileOptionsNow().node_name);
  out.set_generation(store_->Current().generation);
  out.set_applied_generation(s.applied_generation);
  out.set_serving(s.synced_once);
  if (!s.last_error.ok()) out.set_last_error(s.last_error.ToString());
  if (s.last_sync_time != absl::InfinitePast()) {
    // The periodic check moves it too (every --check-interval), rewriting the record then.
    *out.mutable_last_sync_time() =
        TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(s.last_sync_time));
  }
  out.set_datastore_healthy(store_->Health().healthy);
  out.mutable_build()->set_version(util::BuildVersion());
  out.mutable_build()->set_commit(util::BuildCommit());
  out.mutable_build()->set_compilation_mode(util::BuildCompilationMode());
  return out;
}

absl::StatusOr<v1::ListNodeStatusResponse> AgentService::ListNodeStatus() const {
  if (node_statuses_ == nullptr) {
    return absl::FailedPreconditionError(
        "node status is published only with a shared datastore (etcd or kubernetes); this "
        "agent uses the embedded store: see `netpolctl status`");
  }
  const uint64_t own = store_->Current().generation;
  ASSIGN_OR_RETURN(std::vector<v1::NodeStatus> nodes, node_statuses_->List());
  v1::ListNodeStatusResponse out;
  const bool shared = node_statuses_->SharedGenerations();
  uint64_t newest = own;
  for (v1::NodeStatus& n : nodes) {
    newest = std::max<uint64_t>(newest, n.generation());
    *out.add_nodes() = std::move(n);
  }
  if (shared) out.set_newest_generation(newest);
  std::map<uint64_t, bool> same;  // applied generation -> holds the newest objects
  for (v1::NodeStatus& n : *out.mutable_nodes()) {
    if (n.stale() || !n.serving()) continue;
    const uint64_t applied = n.applied_generation();
    if (!shared) {
      n.set_current(applied >= n.generation() && n.datastore_healthy());
      continue;
    }
    auto it = same.find(applied);
    if (it == same.end()) {
      absl::StatusOr<bool> s =
          applied >= newest ? true : node_statuses_->SameObjects(applied, newest);
      it = same.emplace(applied, s.ok() && *s).first;
    }
    n.set_current(it->second);
  }
  return out;
}

v1::StatusResponse AgentService::Status() const {
  const compiler::CompileOptions copts = reconciler_->CompileOptionsNow();
  Snapshot snap = store_->Current();
  SyncStatus s = reconciler_->status();
  v1::StatusResponse out;
  out.set_node_name(copts.node_name);
  out.set_table(copts.table);
  out.mutable_build()->set_version(util::BuildVersion());
  out.mutable_build()->set_commit(util::BuildCommit());
  out.mutable_build()->set_compilation_mode(util::BuildCompilationMode());
  out.set_serving(s.synced_once);
  out.set_generation(snap.generation);
  out.set_applied_generation(s.applied_generation);
  if (s.last_sync_time != absl::InfinitePast()) {
    *out.mutable_last_sync_time() = TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(s.last_sync_time));
    *out.mutable_last_sync_duration() =
        TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(s.last_sync_duration));
  }
  switch (s.last_sync_kind) {
    case SyncKind::kFull:
    case SyncKind::kRepair:
      out.set_last_sync_kind(v1::FULL);
      break;
    case SyncKind::kIncremental:
      out.set_last_sync_kind(v1::INCREMENTAL);
      break;
    case SyncKind::kCheck:
      out.set_last_sync_kind(v1::CHECK);
      break;
    case SyncKind::kNone:
      break;
  }
  if (!s.last_error.ok()) out.set_last_error(s.last_error.ToString());
  const State& st = *snap.state;
  v1::ObjectCounts* objects = out.mutable_objects();
  objects->set_namespaces(static_cast<int64_t>(st.namespaces.size()));
  objects->set_pods(static_cast<int64_t>(st.pods.size()));
  objects->set_network_policies(static_cast<int64_t>(st.policies.size()));
  objects->set_cluster_network_policies(static_cast<int64_t>(st.cluster_policies.size()));
  objects->set_nodes(static_cast<int64_t>(st.nodes.size()));
  int64_t local = 0;
  for (const auto& [k, pod] : st.pods) local += compiler::IsLocalPod(pod, copts) ? 1 : 0;
  objects->set_local_pods(local);
  if (s.program) {
    // Counted by the sync that committed it: a status (a /metrics scrape) never waits for a
    // sync in progress, nor copies the program.
    v1::ProgramCounts* counts = out.mutable_program();
    counts->set_chains(s.program->chains);
    counts->set_rules(s.program->rules);
    counts->set_sets(s.program->sets);
    counts->set_elements(s.program->elements);
  }
  out.set_syncs(s.syncs);
  out.set_sync_failures(s.failures);
  DatastoreToApi(store_->Health(), out.mutable_datastore());
  return out;
}

absl::StatusOr<v1::StatusResponse> AgentService::WaitForGeneration(
    const v1::WaitForGenerationRequest& request, absl::Duration max_timeout,
    Caller caller) const {
  absl::Duration timeout = absl::Seconds(30);
  if (request.has_timeout()) {
    if (request.timeout().seconds() < 0 || request.timeout().nanos() < 0) {
      return absl::InvalidArgumentError("timeout: must not be negative");
    }
    timeout = absl::Seconds(request.timeout().seconds()) + absl::Nanoseconds(request.timeout().nanos());
  }
  timeout = std::min(timeout, max_timeout);
  // A generation nothing can store is answered now instead of holding a slot until the timeout:
  // each admitted write (or CNI attachment change) stores at most one more generation. With
  // etcd, other nodes' writes raise the generation (the etcd revision): any may come.
  if (store_->Health().kind != DatastoreHealth::Kind::kEtcd) {
    const uint64_t stored = store_->Current().generation;
    const uint64_t pending =
        static_cast<uint64_t>(std::max<int64_t>(0, writes_.in_flight())) +
        static_cast<uint64_t>(std::max<int64_t>(0, attachments_.in_flight()));
    const uint64_t reachable =
        stored > UINT64_MAX - pending ? UINT64_MAX : stored + pending;
    if (request.generation() > reachable) {
      return absl::OutOfRangeError(absl::StrCat(
          "generation ", request.generation(), " is beyond the store's newest generation ",
          stored, " and the ", pending,
          " writes in progress: it may never come; wait for a generation a write or Status "
          "returned"));
    }
  }
  ASSIGN_OR_RETURN(AdmissionGate::Slot slot, kernel_read_gate(caller).Enter());
  RETURN_IF_ERROR(reconciler_->WaitFor(request.generation(), timeout));
  return Status();
}

}  // namespace netpol::agent
