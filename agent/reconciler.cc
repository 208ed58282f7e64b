// The reconciler. See reconciler.h.
#include "agent/reconciler.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "agent/log.h"
#include "engine/nft/diff.h"
#include "engine/util/status_macros.h"

namespace netpol::agent {
namespace {

// Names the first difference between two canonical programs, for the drift log line.
std::string DescribeDrift(const nft::Program& want, const nft::Program& got) {
  for (const auto& [name, chain] : want.chains) {
    auto it = got.chains.find(name);
    if (it == got.chains.end()) return "chain " + name + " missing";
    if (!(it->second == chain)) return "chain " + name + " differs";
  }
  for (const auto& [name, chain] : got.chains) {
    if (!want.chains.count(name)) return "unexpected chain " + name;
  }
  for (const auto& [name, set] : want.sets) {
    auto it = got.sets.find(name);
    if (it == got.sets.end()) return "set " + name + " missing";
    if (!(it->second == set)) return "set " + name + " differs";
  }
  for (const auto& [name, set] : got.sets) {
    if (!want.sets.count(name)) return "unexpected set " + name;
  }
  for (const auto& [name, elems] : want.elements) {
    auto it = got.elements.find(name);
    size_t have = it == got.elements.end() ? 0 : it->second.size();
    if (it == got.elements.end() || !(it->second == elems)) {
      return absl::StrCat("elements of ", name, " differ (", have, " in the kernel, ",
                          elems.size(), " expected)");
    }
  }
  for (const auto& [name, elems] : got.elements) {
    if (!want.elements.count(name)) return "unexpected elements in " + name;
  }
  return "table differs";
}

// Whether committing `tx` may have changed a rule (created, flushed or deleted a chain or the
// table, or added a rule): element changes do not.
bool TouchesRules(const nft::Transaction& tx) {
  for (const nft::Command& c : tx.commands()) {
    if (c.kind != nft::ObjectKind::kSet && c.kind != nft::ObjectKind::kElement) return true;
  }
  return false;
}

// Adds a rule with a counter: a full replace, or an incremental change that rebuilds chains.
bool AddsCountedRules(const nft::Transaction& tx) {
  for (const nft::Command& c : tx.commands()) {
    if (c.kind == nft::ObjectKind::kRule && c.verb == nft::Verb::kAdd && c.rule.counter) {
      return true;
    }
  }
  return false;
}

}  // namespace

ProgramSize SizeOf(const nft::Program& program) {
  ProgramSize out;
  out.chains = static_cast<int64_t>(program.chains.size());
  out.sets = static_cast<int64_t>(program.sets.size());
  for (const auto& [name, chain] : program.chains) {
    out.rules += static_cast<int64_t>(chain.rules.size());
  }
  for (const auto& [name, elements] : program.elements) {
    out.elements += static_cast<int64_t>(elements.size());
  }
  return out;
}

const char* SyncKindName(SyncKind kind) {
  switch (kind) {
    case SyncKind::kNone:
      return "none";
    case SyncKind::kFull:
      return "full";
    case SyncKind::kIncremental:
      return "incremental";
    case SyncKind::kCheck:
      return "check";
    case SyncKind::kRepair:
      return "repair";
  }
  return "unknown";
}

Reconciler::Reconciler(nft::Backend* backend, SnapshotSource source, ReconcilerOptions options)
    : backend_(backend), source_(std::move(source)), options_(std::move(options)) {}

Reconciler::~Reconciler() { Stop(); }

void Reconciler::Start() {
  absl::MutexLock l(&mu_);
  if (worker_.joinable() || stopping_) return;
  worker_ = std::thread([this] { Run(); });
}

void Reconciler::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
}

void Reconciler::Notify() {
  absl::MutexLock l(&mu_);
  dirty_ = true;
}

void Reconciler::Offer(const Snapshot& next, const compiler::Delta& keys) {
  absl::MutexLock l(&mu_);
  offered_ = Offered{next, keys};
  dirty_ = true;
}

absl::Status Reconciler::Withdraw(uint64_t generation) {
  {
    absl::MutexLock l(&mu_);
    if (offered_ && offered_->snap.generation == generation) offered_.reset();
  }
  absl::MutexLock s(&sync_mu_);
  absl::Status st = SyncLocked(SyncKind::kNone);
  // The store stays at the previous generation (its writer waits for this call): the next
  // write is `generation` again, whose waiters must not take the withdrawn sync for theirs.
  absl::MutexLock l(&mu_);
  if (status_.attempted_generation >= generation) status_.attempted_generation = generation - 1;
  return st;
}

absl::Status Reconciler::WaitFor(uint64_t generation, absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto done = [this, generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || (status_.syncs > 0 && status_.attempted_generation >= generation);
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "generation ", generation, " not in the kernel after ", absl::FormatDuration(timeout),
        " (applied: ", status_.applied_generation, ")"));
  }
  if (status_.synced_once && status_.applied_generation >= generation) return absl::OkStatus();
  if (stopping_) return absl::UnavailableError("the agent is shutting down");
  if (!status_.last_error.ok()) return status_.last_error;
  return absl::UnavailableError(absl::StrCat("generation ", generation, " is not applied yet"));
}

compiler::CompileOptions Reconciler::CompileOptionsNow() const {
  compiler::CompileOptions out = options_.compile;
  if (options_.attached_pods) {
    for (const std::string& key : options_.attached_pods()) out.attached_pods.insert(key);
  }
  return out;
}

absl::Status Reconciler::SyncNow() {
  absl::MutexLock s(&sync_mu_);
  return SyncLocked(SyncKind::kNone);
}

absl::Status Reconciler::SyncLocked(SyncKind forced) {
  Snapshot snap = source_();
  std::optional<compiler::Delta> offered;  // snap is an offer not yet in the store: its keys
  bool full;
  {
    absl::MutexLock l(&mu_);
    if (offered_ && offered_->snap.generation > snap.generation) {
      snap = offered_->snap;
      offered = offered_->keys;
    } else {
      offered_.reset();  // the store holds it (or a newer generation) now
    }
    full = need_full_ || forced == SyncKind::kRepair ||
           (committed_ == nullptr && !committed_in_compiler_);
    if (!full && status_.synced_once && status_.applied_generation == snap.generation) {
      return absl::OkStatus();
    }
  }
  // From here the compiler's program may change until the sync is published: committed()
  // readers use the copies meanwhile instead of the compiler's program.
  {
    absl::MutexLock p(&program_mu_);
    updating_ = true;
  }
  absl::Cleanup done = [this] {
    absl::MutexLock p(&program_mu_);
    updating_ = false;
  };
  const absl::Time start = absl::Now();
  const compiler::CompileOptions copts = CompileOptionsNow();
  SyncOutcome out(options_.compile.table);
  out.kind = full ? (forced == SyncKind::kRepair ? SyncKind::kRepair : SyncKind::kFull)
                  : SyncKind::kIncremental;
  nft::Program view;                        // `before` of a sync through the change log
  const nft::Program* before = nullptr;
  std::shared_ptr<const nft::Program> old;  // `before` of a compiling sync
  compiler::CompileOptions old_copts;       // what the held program was compiled with
  std::optional<compiler::Delta> delta;
  if (!full) delta = DeltaLocked(snap, offered ? &*offered : nullptr);
  if (delta) {
    old_copts = incremental_.options();
    absl::StatusOr<nft::Transaction> r =
        incremental_.Update(*incremental_state_, *snap.state, *delta, copts,
                            options_.after_commit ? &view : nullptr);
    if (r.ok()) {
      out.tx = *std::move(r);
      out.through_log = true;
      before = &view;
    } else {
      LogWarning(absl::StrCat("incremental update to generation ", snap.generation, " failed: ",
                              r.status().message(), "; compiling the whole state"));
    }
  }
  if (!out.through_log) {
    // The committed program leaves the compiler (moved, not copied) to be diffed against.
    {
      absl::MutexLock l(&mu_);
      if (committed_in_compiler_) {
        if (committed_ == nullptr && incremental_.has_program()) {
          committed_ = std::make_shared<const nft::Program>(incremental_.TakeProgram());
          committed_generation_ = incremental_generation_;
        }
        committed_in_compiler_ = false;
      }
      old = committed_;
    }
    absl::StatusOr<nft::Transaction> r = incremental_.Reset(*snap.state, copts);
    if (!r.ok()) {
      out.status = r.status();
    } else {
      out.tx = (full || old == nullptr) ? *std::move(r) : nft::Diff(*old, incremental_.program());
    }
    before = old.get();
  }
  out.compiled = out.status.ok();
  if (out.compiled && !out.tx.empty()) out.status = CommitLocked(full && old == nullptr, &out);
  if (!out.status.ok() && out.compiled && out.kind == SyncKind::kIncremental) {
    // An incremental transaction may fail when the kernel drifted from the committed program;
    // a full replace does not depend on what is there.
    LogWarning(absl::StrCat("incremental sync of generation ", snap.generation,
                            " failed: ", out.status.message(), "; retrying as a full sync"));
    out.kind = SyncKind::kFull;
    out.tx = nft::FullReplace(incremental_.program());
    out.status = CommitLocked(/*cold=*/false, &out);
  }
  if (out.status.ok() && !out.tx.empty() && options_.after_commit) {
    options_.after_commit(before, out.tx, incremental_.program());
  }
  if (!out.status.ok() && out.compiled) {
    // The kernel keeps the old program; the compiler moved on already.
    if (out.through_log) {
      absl::StatusOr<nft::Program> p = compiler::Compile(*incremental_state_, old_copts);
      if (p.ok()) out.kept = std::make_shared<const nft::Program>(*std::move(p));
    } else {
      out.kept = old;
    }
    incremental_.TakeProgram();  // the next sync is full and starts over
  }
  return RecordSync(snap, absl::Now() - start, out);
}

std::optional<compiler::Delta> Reconciler::DeltaLocked(const Snapshot& snap,
                                                       const compiler::Delta* offered) {
  if (!options_.changes || !incremental_.has_program() || incremental_state_ == nullptr) {
    return std::nullopt;
  }
  std::optional<compiler::Delta> delta;
  if (offered == nullptr) {
    delta = options_.changes(incremental_generation_, snap.generation);
  } else if (incremental_generation_ + 1 == snap.generation) {
    delta = *offered;
  } else if (incremental_generation_ + 1 < snap.generation) {
    // The store's log up to the generation before the offer, and the offer's own keys.
    delta = options_.changes(incremental_generation_, snap.generation - 1);
    if (delta) delta->Merge(*offered);
  }
  if (delta && delta->size() > options_.incremental_max_objects) {
    const State& s = *snap.state;
    const double update_cost =
        options_.pod_weight * delta->pods.size() +
        options_.policy_weight * (delta->policies.size() + delta->namespaces.size());
    const double compile_cost = s.namespaces.size() + s.pods.size() + s.policies.size();
    if (update_cost > compile_cost) {
      LogInfo(absl::StrCat("change of ", delta->size(), " objects to generation ",
                           snap.generation, ": compiling the whole state"));
      return std::nullopt;
    }
  }
  return delta;
}

absl::Status Reconciler::CommitLocked(bool cold, SyncOutcome* out) {
  // Rules the transaction adds with a counter: a full replace (which deletes the table and with
  // it every count) or an incremental change that rebuilds chains (a flushed chain loses its
  // counts, e.g. a policy edit that points a lookup at another set). Either way each added rule
  // starts from the count of the rule it replaces (same chain, same comment), read just before;
  // what the kernel counts between this read and the commit is lost. Element-only changes add
  // no rule and read nothing.
  if (options_.compile.rule_counters && AddsCountedRules(out->tx)) {
    absl::StatusOr<std::vector<nft::RuleCount>> counts =
        backend_->ReadCounters(options_.compile.table);
    if (counts.ok()) {
      const size_t carried = nft::CarryCounters(*counts, &out->tx);
      if (carried > 0) {
        LogInfo(absl::StrCat(out->kind == SyncKind::kIncremental ? "rebuilt chains: " : "full sync: ",
                             carried, " of ", counts->size(),
                             " rule counters carried over from the rules being replaced"));
      }
    } else if (!absl::IsNotFound(counts.status()) && !absl::IsUnimplemented(counts.status())) {
      LogWarning(absl::StrCat("cannot read the rule counters of the rules being replaced, they "
                              "start over: ", counts.status().ToString()));
    }
  }
  const size_t chunk = options_.cold_start_chunk_elements;
  if (!cold || chunk == 0 || out->tx.ElementCount() <= chunk) {
    ++out->commits;
    return backend_->Commit(out->tx);
  }
  // Only when the kernel has no table: a table from a previous run is enforcing and must be
  // replaced in one transaction.
  absl::StatusOr<bool> there = backend_->HasTable(options_.compile.table);
  if (!there.ok() || *there) {
    ++out->commits;
    return backend_->Commit(out->tx);
  }
  const std::vector<nft::Transaction> chunks = nft::ChunkedCreate(incremental_.program(), chunk);
  for (size_t i = 0; i < chunks.size(); ++i) {
    absl::Status st = backend_->Commit(chunks[i]);
    if (st.ok()) {
      ++out->commits;
      continue;
    }
    if (i > 0) {
      // The table is built only in part and hooked nowhere: take it away again.
      nft::Transaction undo(options_.compile.table);
      undo.AddTable();
      undo.DeleteTable();
      absl::Status u = backend_->Commit(undo);
      if (!u.ok()) {
        LogError(absl::StrCat("cold start: removing the unfinished table ",
                              options_.compile.table, ": ", u.ToString()));
      }
    }
    return absl::Status(st.code(), absl::StrCat("cold start, transaction ", i + 1, " of ",
                                                chunks.size(), ": ", st.message()));
  }
  return absl::OkStatus();
}

absl::Status Reconciler::RecordSync(const Snapshot& snap, absl::Duration took,
                                    const SyncOutcome& out) {
  const absl::Status& st = out.status;
  const uint64_t objects_changed = snap.changes - std::min(snap.changes, last_changes_);
  // What readers that must not wait for a sync (Status, ReadRuleCounters) learn of the
  // committed program: its size and, with rule counters, what its counted rules decide.
  // Computed here, by the sync, only when the transaction changed something they describe.
  bool have_size, have_attribution;
  {
    absl::MutexLock l(&mu_);
    have_size = status_.program.has_value();
    have_attribution = attribution_ != nullptr;
  }
  std::optional<ProgramSize> size;
  std::shared_ptr<const Attribution> attribution;
  // Readers asked for the committed program since the last copy: copy the new one now, while no
  // sync changes it and before the sync is published (a writer that waited for it then reads
  // it), so that they need neither wait for nor fall behind a later sync.
  std::shared_ptr<const nft::Program> copy;
  if (st.ok() && incremental_.has_program()) {
    bool wanted;
    {
      absl::MutexLock l(&mu_);
      wanted = copy_wanted_;
      copy_wanted_ = false;
    }
    if (wanted) copy = std::make_shared<const nft::Program>(incremental_.program());
  }
  if (st.ok() && incremental_.has_program()) {
    if (!out.tx.empty() || !have_size) size = SizeOf(incremental_.program());
    if (options_.compile.rule_counters && (TouchesRules(out.tx) || !have_attribution)) {
      attribution = AttributionLocked();
    }
  } else if (!st.ok() && out.compiled && out.kept != nullptr) {
    size = SizeOf(*out.kept);  // the kernel kept it; the attribution of it stays
  }
  if (st.ok()) {
    last_changes_ = snap.changes;
    incremental_state_ = snap.state;
    incremental_generation_ = snap.generation;
    // The compiler's program is the committed one from now: readers may copy it (before the
    // sync is published, so that one who waited for it never reads an earlier copy).
    absl::MutexLock p(&program_mu_);
    updating_ = false;
  }
  {
    absl::MutexLock l(&mu_);
    if (size) status_.program = size;
    if (!st.ok() && out.compiled && out.kept == nullptr) status_.program.reset();
    if (attribution != nullptr) attribution_ = std::move(attribution);
    ++status_.syncs;
    status_.attempted_generation = std::max(status_.attempted_generation, snap.generation);
    status_.last_sync_time = absl::Now();
    status_.last_sync_duration = took;
    status_.last_sync_kind = out.kind;
    if (st.ok()) {
      if (copy != nullptr) {
        previous_ = nullptr;
      } else if (committed_ != nullptr) {
        previous_ = std::move(committed_);
        previous_generation_ = committed_generation_;
      }
      // A cache of incremental_.program(): copied now when asked for, else on demand.
      committed_ = std::move(copy);
      committed_generation_ = snap.generation;
      committed_in_compiler_ = true;
      status_.applied_generation = snap.generation;
      status_.synced_once = true;
      status_.last_error = absl::OkStatus();
      if (!out.tx.empty()) ++status_.transactions;
      if (out.kind == SyncKind::kRepair) ++status_.repairs;
      if (out.through_log && out.kind == SyncKind::kIncremental) ++status_.change_log_syncs;
      need_full_ = false;
    } else {
      ++status_.failures;
      status_.last_error = st;
      need_full_ = true;
      if (out.compiled) {
        committed_ = out.kept;
        committed_generation_ = status_.applied_generation;
        committed_in_compiler_ = false;
      }
    }
  }

  std::string line = absl::StrFormat(
      "sync kind=%s generation=%d objects_changed=%d elements_changed=%d commands=%d "
      "duration=%s%s%s",
      SyncKindName(out.kind), snap.generation, objects_changed, out.tx.ElementCount(),
      out.tx.size(), absl::FormatDuration(took), out.through_log ? " via=changes" : "",
      out.commits > 1 ? absl::StrCat(" transactions=", out.commits) : "");
  if (st.ok()) {
    LogInfo(line);
  } else {
    LogError(absl::StrCat(line, " error=", st.ToString()));
  }
  return st;
}

absl::Status Reconciler::CheckNow() {
  absl::MutexLock s(&sync_mu_);
  std::shared_ptr<const nft::Program> committed;
  bool need_full;
  {
    absl::MutexLock l(&mu_);
    need_full = need_full_;
  }
  if (!need_full) committed = CommittedLocked();
  if (committed == nullptr) return SyncLocked(SyncKind::kNone);
  absl::StatusOr<nft::Program> dumped = backend_->Dump(options_.compile.table);
  std::string drift;
  if (absl::IsNotFound(dumped.status())) {
    drift = "table " + options_.compile.table + " missing";
  } else if (!dumped.ok()) {
    LogWarning(absl::StrCat("drift check: cannot read table ", options_.compile.table, ": ",
                            dumped.status().ToString()));
    return dumped.status();
  } else {
    nft::Program want = nft::Canonical(*committed);
    nft::Program got = nft::Canonical(*std::move(dumped));
    if (!(want == got)) drift = DescribeDrift(want, got);
  }
  if (drift.empty()) return absl::OkStatus();
  LogWarning(absl::StrCat("drift check: ", drift, "; repairing with a full sync"));
  return SyncLocked(SyncKind::kRepair);
}

nft::Transaction Reconciler::Plan(const nft::Program& next, uint64_t* base_generation,
                                  std::shared_ptr<const nft::Program>* base) const {
  {
    absl::MutexLock l(&mu_);
    if (need_full_ || (committed_ == nullptr && !committed_in_compiler_)) {
      if (base_generation != nullptr) *base_generation = status_.applied_generation;
      return nft::FullReplace(next);
    }
  }
  std::shared_ptr<const nft::Program> c = committed(base_generation);
  if (base != nullptr) *base = c;
  if (c == nullptr) return nft::FullReplace(next);
  return nft::Diff(*c, next);
}

SyncStatus Reconciler::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

std::shared_ptr<const nft::Program> Reconciler::committed(uint64_t* generation) const {
  {
    absl::MutexLock l(&mu_);
    copy_wanted_ = true;
    if (!committed_in_compiler_ || committed_ != nullptr) {
      if (generation != nullptr) *generation = committed_generation_;
      return committed_;
    }
  }
  // The newest commit is held by the compiler only: copy it unless a sync is changing it (a
  // sync waits for the copy before it starts to), else answer with the copy of an earlier
  // commit. Never waits for the sync lock (held by syncs, drift checks and kernel dumps).
  absl::MutexLock p(&program_mu_);
  std::shared_ptr<const nft::Program> copy;
  uint64_t copy_generation = 0;
  if (!updating_ && incremental_.has_program()) {
    copy = std::make_shared<const nft::Program>(incremental_.program());
    copy_generation = incremental_generation_;
  }
  absl::MutexLock l(&mu_);
  if (committed_in_compiler_ && committed_ == nullptr && copy != nullptr) {
    committed_ = std::move(copy);
    committed_generation_ = copy_generation;
    previous_ = nullptr;
  }
  if (!committed_in_compiler_ || committed_ != nullptr) {
    if (generation != nullptr) *generation = committed_generation_;
    return committed_;
  }
  if (generation != nullptr) *generation = previous_generation_;
  return previous_;
}

std::shared_ptr<const nft::Program> Reconciler::CommittedLocked(uint64_t* generation) const {
  absl::MutexLock l(&mu_);
  if (committed_in_compiler_ && committed_ == nullptr && incremental_.has_program()) {
    committed_ = std::make_shared<const nft::Program>(incremental_.program());
    committed_generation_ = incremental_generation_;
    previous_ = nullptr;  // readers have the newest now (no more than one copy is kept)
  }
  if (generation != nullptr) *generation = committed_generation_;
  return committed_;
}

void Reconciler::WithCommitted(const std::function<void(const nft::Program&)>& fn) {
  absl::MutexLock s(&sync_mu_);
  bool in_compiler = false;
  std::shared_ptr<const nft::Program> kept;
  {
    absl::MutexLock l(&mu_);
    in_compiler = committed_in_compiler_;
    kept = committed_;
  }
  if (in_compiler && incremental_.has_program()) {
    fn(incremental_.program());
  } else if (kept != nullptr) {
    fn(*kept);
  }
}

absl::StatusOr<nft::Program> Reconciler::DumpKernel() {
  absl::MutexLock s(&sync_mu_);
  return backend_->Dump(options_.compile.table);
}

std::shared_ptr<const Reconciler::Attribution> Reconciler::AttributionLocked() const {
  auto out = std::make_shared<Attribution>();
  if (!incremental_.has_program()) return out;
  const nft::Program& program = incremental_.program();
  for (auto& [name, group] : incremental_.RuleSources()) {
    auto chain = program.chains.find(name);
    if (chain == program.chains.end()) continue;
    ChainAttribution& c = (*out)[name];
    c.ingress = group.ingress;
    c.policies = std::move(group.policies);
    const size_t n = std::min(chain->second.rules.size(), group.rules.size());
    c.rules.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const nft::Rule& rule = chain->second.rules[i];
      RuleAttribution a;
      a.comment = rule.comment;
      a.counter = rule.counter;
      a.drop = rule.verdict && rule.verdict->kind == nft::Verdict::Kind::kDrop;
      a.sources = std::move(group.rules[i]);
      if (i < group.tier_rules.size()) {
        // A tier chain: its Accept lookups return, its Deny lookups drop or go to the tier's
        // deny-log chain; the jump to the group chain is neither.
        a.drop = false;
        a.tier_rules = std::move(group.tier_rules[i]);
        if (rule.verdict && rule.verdict->kind == nft::Verdict::Kind::kReturn) {
          a.tier_action = CnpAction::kAccept;
        } else if (rule.verdict && (rule.verdict->kind == nft::Verdict::Kind::kDrop ||
                                    rule.verdict->kind == nft::Verdict::Kind::kGoto)) {
          a.tier_action = CnpAction::kDeny;
        }
      }
      c.rules.push_back(std::move(a));
    }
  }
  return out;
}

std::vector<CountedRule> Reconciler::Attribute(std::vector<nft::RuleCount> counts,
                                               const Attribution* attribution) const {
  std::vector<CountedRule> out;
  out.reserve(counts.size());
  for (nft::RuleCount& c : counts) {
    CountedRule r;
    r.count = std::move(c);
    if (attribution != nullptr) {
      auto chain = attribution->find(r.count.chain);
      if (chain != attribution->end() && r.count.index < chain->second.rules.size()) {
        const RuleAttribution& a = chain->second.rules[r.count.index];
        if (a.counter && a.comment == r.count.comment) {
          r.attributed = true;
          r.ingress = chain->second.ingress;
          r.policies = chain->second.policies;
          r.sources = a.sources;
          r.tier_action = a.tier_action;
          r.tier_rules = a.tier_rules;
          r.drop = a.drop;
        }
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::vector<CountedRule>> Reconciler::ReadRuleCounters() {
  std::vector<nft::RuleCount> counts;
  std::shared_ptr<const Attribution> attribution;
  if (options_.counter_backend != nullptr) {
    {
      absl::MutexLock l(&mu_);
      attribution = attribution_;
    }
    absl::MutexLock r(&read_mu_);
    ASSIGN_OR_RETURN(counts, options_.counter_backend->ReadCounters(options_.compile.table));
  } else {
    absl::MutexLock s(&sync_mu_);
    ASSIGN_OR_RETURN(counts, backend_->ReadCounters(options_.compile.table));
    absl::MutexLock l(&mu_);
    attribution = attribution_;
  }
  return Attribute(std::move(counts), attribution.get());
}

void Reconciler::Run() {
  const bool checks =
      options_.check_interval > absl::ZeroDuration() && options_.check_interval != absl::InfiniteDuration();
  absl::Time next_check = checks ? absl::Now() + options_.check_interval : absl::InfiniteFuture();
  for (;;) {
    bool dirty = false, retry = false;
    {
      absl::MutexLock l(&mu_);
      absl::Time deadline = next_check;
      const bool failing = !status_.last_error.ok() || !status_.synced_once;
      if (failing) deadline = std::min(deadline, status_.last_sync_time + options_.retry_interval);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return dirty_ || stopping_; };
      mu_.AwaitWithDeadline(absl::Condition(&wake), deadline);
      if (stopping_) return;
      dirty = dirty_;
      retry = failing && absl::Now() >= status_.last_sync_time + options_.retry_interval;
    }
    if (dirty) {
      if (options_.debounce > absl::ZeroDuration()) absl::SleepFor(options_.debounce);
      {
        absl::MutexLock l(&mu_);
        dirty_ = false;
      }
      SyncNow().IgnoreError();  // recorded in status_ and logged
    } else if (retry) {
      SyncNow().IgnoreError();
    }
    if (checks && absl::Now() >= next_check) {
      CheckNow().IgnoreError();
      next_check = absl::Now() + options_.check_interval;
    }
  }
}

}  // namespace netpol::agent
