// The reconciler: keeps the kernel's nftables table equal to the program compiled from the
// store's newest State.
//
//   * It holds the last committed Program in a compiler::IncrementalCompiler. An incremental
//     sync asks ReconcilerOptions::changes for the objects changed since the last synced
//     generation and updates the compiler with them: the transaction then costs what changed,
//     not what the cluster holds (engine/compiler/incremental.h; attached pods that come or go
//     are handled there too). Without that delta (the hook is unset or answers nullopt, the
//     change is large enough that compiling the whole State is cheaper
//     (ReconcilerOptions::incremental_max_objects), or the update fails) the sync compiles the
//     whole State and commits its diff against the committed program. The first sync after
//     start, and every sync after a failure, replaces the table in one transaction instead
//     (full): whatever table of that name the kernel holds, it never passes through a moment
//     without enforcement. When the kernel has no such table and the program is large, the
//     first sync builds it in bounded transactions and hooks it in with the last
//     (ReconcilerOptions::cold_start_chunk_elements, nft::ChunkedCreate).
//   * Changes coalesce: notifications only mark the store dirty; a sync always takes the
//     newest snapshot, so a burst of updates arriving while a sync runs (or within the optional
//     debounce window) becomes one transaction.
//   * A periodic check dumps the table and compares it with the committed program; drift
//     (someone flushed or edited the table) is repaired by a full sync.
//   * One log line per sync: kind, generation, objects changed, elements changed, commands,
//     duration. Nothing per packet.
//
// Thread safety: all public methods are thread-safe. Backend calls are serialized here.
#ifndef NETPOL_AGENT_RECONCILER_H_
#define NETPOL_AGENT_RECONCILER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/datastore.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/incremental.h"
#include "engine/nft/backend.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::agent {

enum class SyncKind { kNone, kFull, kIncremental, kCheck, kRepair };
const char* SyncKindName(SyncKind kind);  // "none", "full", "incremental", "check", "repair"

struct ReconcilerOptions {
  compiler::CompileOptions compile;
  // After a notification, wait this long for more before syncing. Default none: syncs already
  // coalesce whatever arrives while one runs, and concurrent writers are stored as one
  // generation (the service's group commit), so a window would only delay every write by its
  // length (a serial writer's every event: benchmarks/README.md "Agent: write path").
  absl::Duration debounce = absl::ZeroDuration();
  // Period of the drift check; zero or infinite disables it.
  absl::Duration check_interval = absl::Seconds(60);
  // Delay before retrying a failed sync.
  absl::Duration retry_interval = absl::Seconds(2);
  // Keys of the pods a CNI attached to this node right now (agent/endpoints.h), added to
  // compile.attached_pods at every compile. Unset: none.
  std::function<std::set<std::string>()> attached_pods;
  // The objects created, changed or deleted between two generations of the store (the
  // datastore's change log), or nullopt when it cannot tell (e.g. the log no longer reaches
  // `from_generation`). Set: incremental syncs go through IncrementalCompiler::Update (see
  // above). Unset: every sync compiles the whole State.
  std::function<std::optional<compiler::Delta>(uint64_t from_generation, uint64_t to_generation)>
      changes;
  // A change-log delta of more than `incremental_max_objects` objects whose estimated cost
  // through IncrementalCompiler::Update exceeds a whole Compile + Diff is compiled whole instead
  // (a large apply, a restore). The estimate weighs each changed object by what a sync through
  // Update costs for it, in units of what a compiling sync costs per object of the State. Measured
  // at T2 (11,500 objects; -c opt, sync durations with the kernel commit): a compiling sync
  // 112-176 ms (10-15 us per object); through Update 10,000 pods added under existing policies
  // 435-475 ms (~47 us per pod; 8-13 us without policies), 1,000 policies ~330 us each. So a
  // pod counts `pod_weight`, a policy or namespace `policy_weight`, the State one per object.
  size_t incremental_max_objects = 64;
  double pod_weight = 4;
  double policy_weight = 32;
  // Cold start: when the table does not exist in the kernel and the program has more set
  // elements than this, the first sync builds the table in transactions of at most this many
  // elements (nft::ChunkedCreate): no single commit holds the kernel's nf_tables lock for long,
  // and the table is hooked into the packet path only by the last one, complete. Every other
  // sync, a restart that finds the table included, is one transaction. 0: always one.
  size_t cold_start_chunk_elements = 20000;
  // Called after each committed non-empty transaction, before the sync is acknowledged (so
  // WaitFor returns after it): `before` is the program committed until now (null after a
  // start), `tx` what was committed, `after` the new program. The agent plans the revocation
  // of the conntrack entries of flows the change denies here; its revoker's worker lists the
  // table and deletes them after (agent/revoker.h). Unset: nothing.
  // After a sync through the change log, `before` is not the whole old program (copying it per
  // event would cost what the change log saves) but what conntrack::RevocationFilters reads of
  // it: every chain and set definition, the verdict maps' elements and the elements of every
  // set the transaction deletes or re-creates (IncrementalCompiler::Update).
  std::function<void(const nft::Program* before, const nft::Transaction& tx,
                     const nft::Program& after)>
      after_commit;
  // A backend of its own (in the agent a second netlink socket) for ReadRuleCounters: counter
  // reads then never wait for a sync (a /metrics scrape during a long commit), and are
  // attributed against the last committed program's rules, published at each sync. Not owned;
  // must outlive the reconciler; only ReadCounters is called on it, one call at a time. Null:
  // counters are read through the main backend, after the sync in progress.
  nft::Backend* counter_backend = nullptr;
};

// The size of a program, by kind of object.
struct ProgramSize {
  int64_t chains = 0;
  int64_t rules = 0;
  int64_t sets = 0;
  int64_t elements = 0;
};
ProgramSize SizeOf(const nft::Program& program);

struct SyncStatus {
  bool synced_once = false;          // a sync has committed since start
  uint64_t applied_generation = 0;   // generation whose program is in the kernel
  uint64_t attempted_generation = 0; // newest generation a sync tried
  absl::Time last_sync_time = absl::InfinitePast();
  absl::Duration last_sync_duration;
  SyncKind last_sync_kind = SyncKind::kNone;
  absl::Status last_error;           // OK when the last sync succeeded
  int64_t syncs = 0;
  int64_t failures = 0;
  int64_t transactions = 0;          // non-empty transactions committed
  int64_t repairs = 0;               // drift repairs
  int64_t change_log_syncs = 0;      // syncs through the change log (ReconcilerOptions::changes)
  // The committed program's size (what the kernel holds), when there is one (after the first
  // commit; after a failed commit, the program the kernel kept).
  std::optional<ProgramSize> program;
};

// One counted rule of the kernel's table and what it decides (RULESET.md "Counters").
struct CountedRule {
  nft::RuleCount count;
  // Whether the rule is the committed program's rule at that position (same comment, with a
  // counter) and the fields below say what it decides; false (only `count` is known) while no
  // program is held, e.g. after a failed commit until the next sync.
  bool attributed = false;
  bool ingress = true;
  bool drop = false;                  // the chain's closing drop
  std::vector<std::string> policies;  // the keys of the group's policies
  std::vector<std::string> sources;   // allow rules: the policy rules held ("ns/name ingress[0]")
  // A tier chain's Accept or Deny lookup: its action and the ClusterNetworkPolicy rules it holds
  // (none when the tier has no rule of that action).
  std::optional<CnpAction> tier_action;
  std::vector<compiler::TierRuleSource> tier_rules;
};

class Reconciler {
 public:
  using SnapshotSource = std::function<Snapshot()>;

  // `backend` is not owned and must outlive the reconciler. `source` returns the store's
  // current snapshot.
  Reconciler(nft::Backend* backend, SnapshotSource source, ReconcilerOptions options);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Starts the background worker (syncs on notification, retries, periodic checks).
  void Start();
  // Stops the worker and wakes every waiter (they get Unavailable). Leaves the kernel as it
  // is (fail-static). Idempotent.
  void Stop();

  // Tells the worker the store changed.
  void Notify();
  // The embedded store's next generation, written and being fsynced (Store::SyncHooks): the
  // worker syncs it at once, as if the store held it, so the compile and the kernel commit run
  // while the store's fdatasync does. `keys` are the objects it changed (its change-log entry,
  // which ReconcilerOptions::changes cannot answer yet). Once the store holds that generation
  // (or a newer one) the offer is forgotten.
  void Offer(const Snapshot& next, const compiler::Delta& keys);
  // The store failed to make the offered `generation` durable and stays at the previous one:
  // forgets the offer and, before returning, syncs the store's current snapshot, which puts the
  // previous generation's program back in the kernel when the offer was committed. Returns that
  // sync's error.
  absl::Status Withdraw(uint64_t generation);

  // Blocks until a sync covering `generation` ran. OK when it is in the kernel; otherwise the
  // sync's error; DeadlineExceeded after `timeout`; Unavailable when stopped.
  absl::Status WaitFor(uint64_t generation, absl::Duration timeout);

  // Runs one sync of the newest snapshot now (no-op when the kernel already has it and no
  // full sync is pending). The worker calls this; tests may call it without Start().
  absl::Status SyncNow();
  // Dumps the table and compares it with the committed program; repairs drift with a full
  // sync. Returns the repair's error, if any.
  absl::Status CheckNow();

  // The transaction that would move the kernel from the committed program to `next` (a full
  // replace when nothing was committed yet or a full sync is pending). Does not wait for a sync:
  // the committed program is committed()'s, whose generation `base_generation` (optional)
  // receives, and `base` (optional) the program itself (null with a full replace).
  nft::Transaction Plan(const nft::Program& next, uint64_t* base_generation = nullptr,
                        std::shared_ptr<const nft::Program>* base = nullptr) const;

  SyncStatus status() const;
  // The last committed program; null before the first sync. Never waits for a sync (nor for
  // anything holding the sync lock): the program the incremental compiler holds is copied (then
  // cached until the next commit) by the first call after a commit while no sync changes it, or
  // by a sync when done if a call asked since the last copy; while a sync changes it and no copy
  // of the newest commit exists, the copy of an earlier commit is returned. `generation`
  // (optional) receives the store generation the returned program was compiled from.
  std::shared_ptr<const nft::Program> committed(uint64_t* generation = nullptr) const;
  // Calls `fn` with the program the kernel holds (the last committed one; after a failed
  // commit, the one the kernel kept), with syncs held off while it runs: no commit changes the
  // kernel in between. Without such a program (before the first commit) `fn` is not called.
  // Copies nothing (committed() copies the program); for the deferred revoker's judgement of a
  // few flows, not for long work.
  void WithCommitted(const std::function<void(const nft::Program&)>& fn);
  // Reads the table back from the kernel.
  absl::StatusOr<nft::Program> DumpKernel();
  // Reads the rule counters from the kernel (nft::Backend::ReadCounters: the rules only) and
  // attributes each to what the committed program's rule at that position decides. With
  // ReconcilerOptions::counter_backend it does not wait for a sync in progress: the
  // attribution is the one published by the last successful sync (with rule counters on), and a
  // rule whose position and comment are not that program's (the kernel read raced a commit,
  // or someone edited the table) is returned unattributed.
  absl::StatusOr<std::vector<CountedRule>> ReadRuleCounters();
  const ReconcilerOptions& options() const { return options_; }
  // options().compile with the currently attached pods: what a compile now must use.
  compiler::CompileOptions CompileOptionsNow() const;

 private:
  // What a sync computed and committed, for RecordSync.
  struct SyncOutcome {
    explicit SyncOutcome(const std::string& table) : tx(table) {}
    SyncKind kind = SyncKind::kNone;
    nft::Transaction tx;
    absl::Status status;
    bool compiled = false;     // the program was computed; a failure is then the commit's
    bool through_log = false;  // through the change log (IncrementalCompiler::Update)
    size_t commits = 0;        // transactions committed (more than one: a chunked cold start)
    // After a failed commit of a computed program: the program the kernel kept.
    std::shared_ptr<const nft::Program> kept;
  };

  void Run();
  absl::Status SyncLocked(SyncKind forced) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // The change-log delta from the last synced generation to `snap`, or nullopt when the sync
  // must compile the whole State (no hook, no answer, or cheaper compiled whole).
  // `offered`: the keys of snap when it is an offer (Offer), not yet in the store's log.
  std::optional<compiler::Delta> DeltaLocked(const Snapshot& snap, const compiler::Delta* offered)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Counts the sync in status_, publishes the committed program and logs the sync's line.
  absl::Status RecordSync(const Snapshot& snap, absl::Duration took, const SyncOutcome& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Commits out->tx, or, for a cold start of a large program into a kernel without the table,
  // the same program in chunks (ReconcilerOptions::cold_start_chunk_elements).
  absl::Status CommitLocked(bool cold, SyncOutcome* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  std::shared_ptr<const nft::Program> CommittedLocked(uint64_t* generation = nullptr) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);

  // What the committed program's counted rules decide, per chain (rule counters only): what
  // ReadRuleCounters attributes counts with, published at each sync that changed rules.
  struct RuleAttribution {
    std::string comment;
    bool counter = false;
    bool drop = false;
    std::vector<std::string> sources;
    std::optional<CnpAction> tier_action;
    std::vector<compiler::TierRuleSource> tier_rules;
  };
  struct ChainAttribution {
    bool ingress = true;
    std::vector<std::string> policies;
    std::vector<RuleAttribution> rules;
  };
  using Attribution = std::map<std::string, ChainAttribution>;
  std::shared_ptr<const Attribution> AttributionLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  std::vector<CountedRule> Attribute(std::vector<nft::RuleCount> counts,
                                     const Attribution* attribution) const;

  nft::Backend* const backend_;
  const SnapshotSource source_;
  const ReconcilerOptions options_;

  mutable absl::Mutex sync_mu_;  // serializes syncs, checks and backend calls
  uint64_t last_changes_ ABSL_GUARDED_BY(sync_mu_) = 0;
  // The compiler holding the committed program, and the State and generation it was compiled
  // from.
  compiler::IncrementalCompiler incremental_ ABSL_GUARDED_BY(sync_mu_);
  std::shared_ptr<const State> incremental_state_ ABSL_GUARDED_BY(sync_mu_);
  uint64_t incremental_generation_ ABSL_GUARDED_BY(sync_mu_) = 0;

  // Held by committed() while it copies the compiler's program, and by a sync to mark the
  // start and end of its changes of it (acquired before mu_).
  mutable absl::Mutex program_mu_;
  bool updating_ ABSL_GUARDED_BY(program_mu_) = false;  // a sync may be changing incremental_

  mutable absl::Mutex mu_;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  struct Offered {
    Snapshot snap;
    compiler::Delta keys;
  };
  std::optional<Offered> offered_ ABSL_GUARDED_BY(mu_);  // Offer, until the store holds it
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool need_full_ ABSL_GUARDED_BY(mu_) = true;
  // The committed program. When committed_in_compiler_ is set the truth is
  // incremental_.program() and committed_ is only a cache (null until CommittedLocked copies);
  // otherwise (after a failed commit) committed_ is what the kernel kept.
  mutable std::shared_ptr<const nft::Program> committed_ ABSL_GUARDED_BY(mu_);
  mutable bool committed_in_compiler_ ABSL_GUARDED_BY(mu_) = false;
  mutable uint64_t committed_generation_ ABSL_GUARDED_BY(mu_) = 0;  // of committed_
  // The copy of an earlier commit (and its generation), for readers while a sync runs.
  mutable std::shared_ptr<const nft::Program> previous_ ABSL_GUARDED_BY(mu_);
  uint64_t previous_generation_ ABSL_GUARDED_BY(mu_) = 0;
  // A reader asked for the committed program since the last copy: the next sync copies it.
  mutable bool copy_wanted_ ABSL_GUARDED_BY(mu_) = true;
  SyncStatus status_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Attribution> attribution_ ABSL_GUARDED_BY(mu_);
  absl::Mutex read_mu_;  // serializes calls on options_.counter_backend
  std::thread worker_;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_RECONCILER_H_
