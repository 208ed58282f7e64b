// Revocation of established connections a committed change denies: the agent's
// ReconcilerOptions::after_commit.
//
// From the program committed until now and the transaction just committed it computes the
// candidate flows (conntrack::RevocationPlan, linear in the change: never one filter per pod and
// removed element), lists the conntrack table once per family the candidates name and deletes
// the entries that match a candidate and that the program now committed no longer accepts as a
// new connection (conntrack::StillAllowed). Flows that stay allowed, and flows from the host's own
// addresses, are untouched; the table is never flushed. One log line per listing naming the
// counts and the first flows deleted. A commit without candidates (it removed no allow element
// and isolated or re-grouped no pod) costs the plan only: no table is opened or listed.
//
// Two modes:
//   * Immediate (the default): AfterCommit lists the table and deletes before it returns, so
//     the commit is acknowledged after its revocation.
//   * Deferred (StartDeferred): AfterCommit only plans and queues the candidates; a worker
//     thread lists the table for the candidates of every commit queued since its last listing
//     and judges them against the program committed at that moment. It lists at once when it
//     was idle, and at most once per `min_interval` under churn: listing the table walks every
//     bucket of the kernel's conntrack hash (milliseconds of kernel CPU however few entries the
//     namespace holds), so a pod event per few milliseconds would otherwise pay one listing
//     each. A commit's flows are deleted within `min_interval` plus one listing of the table
//     after the commit (docs/guarantees.md), not before it is acknowledged.
//
// Thread safety: AfterCommit is called by one thread at a time (the reconciler, under its sync
// lock); the other methods are thread-safe.
#ifndef NETPOL_AGENT_REVOKER_H_
#define NETPOL_AGENT_REVOKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/conntrack/conntrack.h"
#include "engine/conntrack/revocation.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::agent {

struct RevokerStats {
  int64_t commits = 0;      // transactions seen (AfterCommit with a previous program)
  int64_t revocations = 0;  // commits that produced candidate flows
  // conntrack table listings (one per family the candidates name); none for a commit that
  // removed no allow and isolated or re-grouped no pod. Deferred: one per family for all the
  // commits queued since the previous listing.
  int64_t dumps = 0;
  int64_t scanned = 0;      // conntrack entries listed by those dumps
  int64_t deleted = 0;      // conntrack entries deleted
  int64_t kept = 0;         // candidates the new program still allows
  int64_t errors = 0;       // listing or deletion failures
  int64_t revoked = 0;      // commits with candidates whose revocation is done (listed, judged)
};

class Revoker {
 public:
  using TableOpener = std::function<absl::StatusOr<std::unique_ptr<conntrack::Table>>()>;
  using HostAddresses = std::function<absl::StatusOr<std::vector<IpAddr>>()>;
  // Calls `judge` with the program the kernel holds now, serialized with commits (so no commit
  // happens while it runs); does not call it when no program is known (nothing is then
  // deleted: never revoke what cannot be judged).
  using Judge = std::function<void(const std::function<void(const nft::Program&)>& judge)>;

  // Defaults: the kernel table and interface addresses of the namespace of the thread that
  // lists (immediate: the caller of AfterCommit; deferred: the caller of StartDeferred, whose
  // namespace the worker thread inherits).
  Revoker(TableOpener open = nullptr, HostAddresses hosts = nullptr);
  // Stops the worker (Stop).
  ~Revoker();
  Revoker(const Revoker&) = delete;
  Revoker& operator=(const Revoker&) = delete;

  // Switches to the deferred mode (see the file comment) and starts its worker. `judge` must
  // stay callable until Stop. Call once, before the first AfterCommit.
  void StartDeferred(Judge judge, absl::Duration min_interval);
  // Stops the worker once it has revoked everything queued until now (without waiting for
  // `min_interval`). Idempotent; no-op when immediate.
  void Stop();
  // Deferred: revokes everything queued until now without waiting for `min_interval`, and
  // returns when that is done (true) or after `timeout` (false). Immediate: true.
  bool Flush(absl::Duration timeout = absl::InfiniteDuration());

  // Revokes what committing `tx` on top of `before` denied (`after`: the new program). No-op
  // when `before` is null (nothing known to compare with).
  void AfterCommit(const nft::Program* before, const nft::Transaction& tx,
                   const nft::Program& after);

  RevokerStats stats() const;

 private:
  // Lists the table for the candidates of `plans` and deletes the matching entries that
  // `judge` (with the program now committed) does not keep.
  void Revoke(const std::vector<conntrack::RevocationPlan>& plans, const Judge& judge);
  void Run();

  TableOpener open_;
  HostAddresses hosts_;
  std::unique_ptr<conntrack::Table> table_;  // opened at the first listing, kept

  mutable absl::Mutex mu_;
  RevokerStats stats_ ABSL_GUARDED_BY(mu_);
  // Deferred mode.
  Judge judge_;
  absl::Duration min_interval_;
  bool deferred_ = false;
  std::vector<conntrack::RevocationPlan> queued_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_seq_ ABSL_GUARDED_BY(mu_) = 0;  // plans queued since start
  uint64_t done_seq_ ABSL_GUARDED_BY(mu_) = 0;    // plans revoked (or dropped) since start
  uint64_t flush_seq_ ABSL_GUARDED_BY(mu_) = 0;   // revoke up to here without waiting
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_REVOKER_H_
