// The revoker. See revoker.h.
#include "agent/revoker.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/log.h"
#include "engine/conntrack/revocation.h"

namespace netpol::agent {

Revoker::Revoker(TableOpener open, HostAddresses hosts)
    : open_(std::move(open)), hosts_(std::move(hosts)) {
  if (!open_) {
    open_ = []() -> absl::StatusOr<std::unique_ptr<conntrack::Table>> {
      absl::StatusOr<std::unique_ptr<conntrack::KernelTable>> t = conntrack::KernelTable::Open();
      if (!t.ok()) return t.status();
      return std::unique_ptr<conntrack::Table>(*std::move(t));
    };
  }
  if (!hosts_) hosts_ = [] { return conntrack::HostAddresses(); };
}

void Revoker::AfterCommit(const nft::Program* before, const nft::Transaction& tx,
                          const nft::Program& after) {
  if (before == nullptr) return;
  ++stats_.commits;
  const absl::Time start = absl::Now();
  // Factored candidates (RevocationPlan): a relabelling of many pods stays linear in the change.
  const conntrack::RevocationPlan plan = conntrack::RevocationPlan::Build(*before, tx);
  if (plan.empty()) return;
  ++stats_.revocations;
  const absl::Duration planning = absl::Now() - start;
  conntrack::RevokeOptions options;
  options.keep = [&after](const conntrack::Flow& f) { return conntrack::StillAllowed(after, f); };
  absl::StatusOr<std::vector<IpAddr>> hosts = hosts_();
  if (hosts.ok()) {
    options.host_addresses = *std::move(hosts);
  } else {
    LogWarning(absl::StrCat("revocation: cannot list the host's addresses: ",
                            hosts.status().ToString()));
  }
  const absl::Time opening = absl::Now();
  absl::StatusOr<std::unique_ptr<conntrack::Table>> table = open_();
  const absl::Duration open_duration = absl::Now() - opening;
  if (!table.ok()) {
    ++stats_.errors;
    LogError(absl::StrCat("revocation: cannot open the conntrack table: ",
                          table.status().ToString()));
    return;
  }
  absl::StatusOr<conntrack::RevokeReport> report =
      conntrack::RevokePlan(table->get(), plan, options);
  if (!report.ok()) {
    ++stats_.errors;
    ++stats_.dumps;  // the listing that failed
    LogError(absl::StrCat("revocation: ", report.status().ToString()));
    return;
  }
  stats_.dumps += static_cast<int64_t>(report->dumps);
  stats_.scanned += static_cast<int64_t>(report->scanned);
  stats_.deleted += static_cast<int64_t>(report->deleted.size());
  stats_.kept += static_cast<int64_t>(report->kept);
  stats_.errors += static_cast<int64_t>(report->errors.size());
  std::string line = absl::StrCat(
      "revocation candidates=", plan.expanded_size(), " plan=", plan.size(),
      " scanned=", report->scanned,
      " matched=", report->matched, " kept=", report->kept, " vanished=", report->vanished,
      " deleted=", report->deleted.size(), " errors=", report->errors.size(),
      " duration=", absl::FormatDuration(absl::Now() - start),
      " (plan ", absl::FormatDuration(planning), ", open ", absl::FormatDuration(open_duration),
      ")");
  for (size_t i = 0; i < report->deleted.size() && i < 5; ++i) {
    absl::StrAppend(&line, i == 0 ? ": " : "; ", report->deleted[i].ToString());
  }
  if (report->deleted.size() > 5) {
    absl::StrAppend(&line, "; and ", report->deleted.size() - 5, " more");
  }
  for (size_t i = 0; i < report->errors.size() && i < 3; ++i) {
    absl::StrAppend(&line, " error: ", report->errors[i]);
  }
  if (report->errors.empty()) {
    LogInfo(line);
  } else {
    LogWarning(line);
  }
}

}  // namespace netpol::agent
