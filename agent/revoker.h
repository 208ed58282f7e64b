// Revocation of established connections a committed change denies: the agent's
// ReconcilerOptions::after_commit.
//
// From the program committed until now and the transaction just committed it computes the
// candidate flows (conntrack::RevocationPlan, linear in the change: never one filter per pod and
// removed element), lists the conntrack table once per family the candidates name and deletes
// the entries that match a candidate and that the new program no longer accepts as a new
// connection (conntrack::StillAllowed). Flows that stay allowed, and flows from the host's own
// addresses, are untouched; the table is never flushed. One log line per revocation naming the
// counts and the first flows deleted. A commit without candidates (it removed no allow element
// and isolated or re-grouped no pod) costs the plan only: no table is opened or listed.
//
// Thread-compatible: the reconciler calls it under its sync lock.
#ifndef NETPOL_AGENT_REVOKER_H_
#define NETPOL_AGENT_REVOKER_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/conntrack/conntrack.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::agent {

struct RevokerStats {
  int64_t commits = 0;      // transactions seen (AfterCommit with a previous program)
  int64_t revocations = 0;  // commits that produced candidate flows
  // conntrack table listings (one per family the candidates name); none for a commit that
  // removed no allow and isolated or re-grouped no pod
  int64_t dumps = 0;
  int64_t scanned = 0;      // conntrack entries listed by those dumps
  int64_t deleted = 0;      // conntrack entries deleted
  int64_t kept = 0;         // candidates the new program still allows
  int64_t errors = 0;       // listing or deletion failures
};

class Revoker {
 public:
  using TableOpener = std::function<absl::StatusOr<std::unique_ptr<conntrack::Table>>()>;
  using HostAddresses = std::function<absl::StatusOr<std::vector<IpAddr>>()>;

  // Defaults: the calling thread's namespace's kernel table and interface addresses.
  Revoker(TableOpener open = nullptr, HostAddresses hosts = nullptr);

  // Revokes what committing `tx` on top of `before` denied (`after`: the new program). No-op
  // when `before` is null (nothing known to compare with).
  void AfterCommit(const nft::Program* before, const nft::Transaction& tx,
                   const nft::Program& after);

  const RevokerStats& stats() const { return stats_; }

 private:
  TableOpener open_;
  HostAddresses hosts_;
  RevokerStats stats_;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_REVOKER_H_
