// The reconciler: keeps the kernel's nftables table equal to the program compiled from the
// store's newest State.
//
//   * It holds the last committed Program. A sync compiles the newest snapshot (or takes the
//     program offered for that generation), diffs it against the committed one and commits the
//     difference as one transaction (incremental). The first sync after start, and every sync
//     after a failure, replaces the table in one transaction instead (full): whatever table of
//     that name the kernel holds, it never passes through a moment without enforcement.
//   * Changes coalesce: notifications only mark the store dirty; a sync always takes the
//     newest snapshot, so a burst of updates arriving while a sync runs (or within the debounce
//     window) becomes one transaction.
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
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/store.h"
#include "engine/compiler/compiler.h"
#include "engine/nft/backend.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::agent {

enum class SyncKind { kNone, kFull, kIncremental, kCheck, kRepair };
const char* SyncKindName(SyncKind kind);  // "none", "full", "incremental", "check", "repair"

struct ReconcilerOptions {
  compiler::CompileOptions compile;
  // After a notification, wait this long for more before syncing. Syncs already coalesce
  // whatever arrives while one runs; the window only helps bursts from separate clients.
  absl::Duration debounce = absl::Milliseconds(5);
  // Period of the drift check; zero or infinite disables it.
  absl::Duration check_interval = absl::Seconds(60);
  // Delay before retrying a failed sync.
  absl::Duration retry_interval = absl::Seconds(2);
  // Keys of the pods a CNI attached to this node right now (agent/endpoints.h), added to
  // compile.attached_pods at every compile. Unset: none.
  std::function<std::set<std::string>()> attached_pods;
  // Called after each committed non-empty transaction, before the sync is acknowledged (so
  // WaitFor returns after it): `before` is the program committed until now (null after a
  // start), `tx` what was committed, `after` the new program. The agent revokes the
  // conntrack entries of flows the change denies here (agent/revoker.h). Unset: nothing.
  std::function<void(const nft::Program* before, const nft::Transaction& tx,
                     const nft::Program& after)>
      after_commit;
};

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
  // Hands over the program compiled for `generation` so the sync need not compile it again.
  void Offer(uint64_t generation, std::shared_ptr<const nft::Program> program);

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
  // replace when nothing was committed yet or a full sync is pending).
  nft::Transaction Plan(const nft::Program& next) const;

  SyncStatus status() const;
  // The last committed program; null before the first sync.
  std::shared_ptr<const nft::Program> committed() const;
  // Reads the table back from the kernel.
  absl::StatusOr<nft::Program> DumpKernel();
  const ReconcilerOptions& options() const { return options_; }
  // options().compile with the currently attached pods: what a compile now must use.
  compiler::CompileOptions CompileOptionsNow() const;

 private:
  void Run();
  absl::Status SyncLocked(SyncKind forced) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);

  nft::Backend* const backend_;
  const SnapshotSource source_;
  const ReconcilerOptions options_;

  absl::Mutex sync_mu_;  // serializes syncs, checks and backend calls
  uint64_t last_changes_ ABSL_GUARDED_BY(sync_mu_) = 0;

  mutable absl::Mutex mu_;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool need_full_ ABSL_GUARDED_BY(mu_) = true;
  std::shared_ptr<const nft::Program> committed_ ABSL_GUARDED_BY(mu_);
  uint64_t offered_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<const nft::Program> offered_ ABSL_GUARDED_BY(mu_);
  SyncStatus status_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_RECONCILER_H_
