// The revoker. See revoker.h.
#include "agent/revoker.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/log.h"

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

Revoker::~Revoker() { Stop(); }

void Revoker::StartDeferred(Judge judge, absl::Duration min_interval) {
  judge_ = std::move(judge);
  min_interval_ = min_interval;
  deferred_ = true;
  // Started by the caller's thread: the worker inherits its network namespace.
  worker_ = std::thread([this] { Run(); });
}

void Revoker::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

bool Revoker::Flush(absl::Duration timeout) {
  if (!deferred_) return true;
  absl::MutexLock l(&mu_);
  const uint64_t target = queued_seq_;
  flush_seq_ = std::max(flush_seq_, target);
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_seq_ >= target;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

RevokerStats Revoker::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

void Revoker::AfterCommit(const nft::Program* before, const nft::Transaction& tx,
                          const nft::Program& after) {
  if (before == nullptr) return;
  // Factored candidates (RevocationPlan): a relabelling of many pods stays linear in the change.
  conntrack::RevocationPlan plan = conntrack::RevocationPlan::Build(*before, tx);
  {
    absl::MutexLock l(&mu_);
    ++stats_.commits;
    if (plan.empty()) return;
    ++stats_.revocations;
    if (deferred_) {
      queued_.push_back(std::move(plan));
      ++queued_seq_;
      return;
    }
  }
  std::vector<conntrack::RevocationPlan> plans;
  plans.push_back(std::move(plan));
  Revoke(plans, [&after](const std::function<void(const nft::Program&)>& judge) {
    judge(after);
  });
}

void Revoker::Run() {
  absl::Time last = absl::InfinitePast();
  for (;;) {
    std::vector<conntrack::RevocationPlan> plans;
    uint64_t seq = 0;
    {
      absl::MutexLock l(&mu_);
      auto queued = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queued_.empty();
      };
      mu_.Await(absl::Condition(&queued));
      if (queued_.empty()) return;  // stopping, nothing left
      // Under churn, at most one listing per min_interval: the commits until then join it.
      auto go_now = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || flush_seq_ > done_seq_;
      };
      const absl::Time due = last + min_interval_;
      if (absl::Now() < due) mu_.AwaitWithDeadline(absl::Condition(&go_now), due);
      plans.swap(queued_);
      seq = queued_seq_;
    }
    last = absl::Now();
    Revoke(plans, judge_);
    absl::MutexLock l(&mu_);
    done_seq_ = seq;
  }
}

void Revoker::Revoke(const std::vector<conntrack::RevocationPlan>& plans, const Judge& judge) {
  const absl::Time start = absl::Now();
  std::set<Family> families;
  size_t candidates = 0, plan_size = 0;
  for (const conntrack::RevocationPlan& p : plans) {
    for (Family f : p.families()) families.insert(f);
    candidates += p.expanded_size();
    plan_size += p.size();
  }
  RevokerStats delta;
  delta.revoked = static_cast<int64_t>(plans.size());
  std::set<IpAddr> host;
  absl::StatusOr<std::vector<IpAddr>> hosts = hosts_();
  if (hosts.ok()) {
    host.insert(hosts->begin(), hosts->end());
  } else {
    LogWarning(absl::StrCat("revocation: cannot list the host's addresses: ",
                            hosts.status().ToString()));
  }
  std::vector<std::string> errors;
  const absl::Time opening = absl::Now();
  if (table_ == nullptr) {
    absl::StatusOr<std::unique_ptr<conntrack::Table>> table = open_();
    if (!table.ok()) {
      ++delta.errors;
      errors.push_back(absl::StrCat("cannot open the conntrack table: ",
                                    table.status().ToString()));
    } else {
      table_ = *std::move(table);
    }
  }
  const absl::Duration open_duration = absl::Now() - opening;
  // 1. List each family once and keep the entries some commit's candidates name. Nothing the
  //    reconciler needs is held meanwhile: commits go on while the table is listed.
  std::vector<conntrack::Entry> matched;
  for (Family family : families) {
    if (table_ == nullptr) break;
    ++delta.dumps;
    absl::StatusOr<std::vector<conntrack::Entry>> entries = table_->Dump(family);
    if (!entries.ok()) {
      ++delta.errors;
      errors.push_back(entries.status().ToString());
      table_.reset();  // opened afresh next time
      break;
    }
    delta.scanned += static_cast<int64_t>(entries->size());
    for (conntrack::Entry& e : *entries) {
      if (host.count(e.flow.src) > 0) continue;
      for (const conntrack::RevocationPlan& p : plans) {
        if (p.Matches(e.flow)) {
          matched.push_back(std::move(e));
          break;
        }
      }
    }
  }
  // 2. Judge the matches against the program committed now (a later commit may allow a flow
  //    again) and delete the denied ones, with no commit in between.
  std::vector<conntrack::Flow> deleted;
  size_t vanished = 0;
  if (!matched.empty() && table_ != nullptr) {
    bool judged = false;
    judge([&](const nft::Program& now) {
      judged = true;
      for (const conntrack::Entry& e : matched) {
        if (conntrack::StillAllowed(now, e.flow)) {
          ++delta.kept;
          continue;
        }
        absl::Status s = table_->Delete(e);
        if (s.ok()) {
          deleted.push_back(e.flow);
        } else if (absl::IsNotFound(s)) {
          ++vanished;
        } else {
          ++delta.errors;
          errors.push_back(absl::StrCat(e.flow.ToString(), ": ", s.message()));
        }
      }
    });
    if (!judged) delta.kept += static_cast<int64_t>(matched.size());
  }
  delta.deleted = static_cast<int64_t>(deleted.size());
  {
    absl::MutexLock l(&mu_);
    stats_.dumps += delta.dumps;
    stats_.scanned += delta.scanned;
    stats_.deleted += delta.deleted;
    stats_.kept += delta.kept;
    stats_.errors += delta.errors;
    stats_.revoked += delta.revoked;
  }
  std::string line = absl::StrCat(
      "revocation commits=", plans.size(), " candidates=", candidates, " plan=", plan_size,
      " scanned=", delta.scanned, " matched=", matched.size(), " kept=", delta.kept,
      " vanished=", vanished, " deleted=", deleted.size(), " errors=", errors.size(),
      " duration=", absl::FormatDuration(absl::Now() - start), " (open ",
      absl::FormatDuration(open_duration), ")");
  for (size_t i = 0; i < deleted.size() && i < 5; ++i) {
    absl::StrAppend(&line, i == 0 ? ": " : "; ", deleted[i].ToString());
  }
  if (deleted.size() > 5) absl::StrAppend(&line, "; and ", deleted.size() - 5, " more");
  for (size_t i = 0; i < errors.size() && i < 3; ++i) {
    absl::StrAppend(&line, " error: ", errors[i]);
  }
  if (errors.empty()) {
    LogInfo(line);
  } else {
    LogWarning(line);
  }
}

}  // namespace netpol::agent
