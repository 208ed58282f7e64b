// The drift watcher. See drift_watcher.h.
#include "agent/drift_watcher.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/log.h"

namespace netpol::agent {

std::string DescribeForeignChanges(const std::vector<netlink::Change>& changes,
                                   uint32_t our_port_id, size_t max_listed) {
  // Losses and table or chain changes first: they say the most about what happened.
  std::vector<const netlink::Change*> ordered;
  for (int pass = 0; pass < 2; ++pass) {
    for (const netlink::Change& c : changes) {
      const bool major = c.lost || absl::StrContains(c.description, " table ") ||
                         absl::StrContains(c.description, " chain ");
      if (major == (pass == 0)) ordered.push_back(&c);
    }
  }
  std::string out;
  size_t listed = 0, foreign = 0;
  for (const netlink::Change* cp : ordered) {
    const netlink::Change& c = *cp;
    if (!c.lost && c.port_id == our_port_id) continue;
    ++foreign;
    if (listed == max_listed) continue;
    ++listed;
    absl::StrAppend(&out, out.empty() ? "" : "; ", c.description);
    if (!c.process.empty()) absl::StrAppend(&out, " (by ", c.process, ")");
  }
  if (foreign > listed) absl::StrAppend(&out, "; and ", foreign - listed, " more");
  return out;
}

DriftWatcher::DriftWatcher(ChangeSource source, uint32_t our_port_id, Repair repair,
                           int poll_ms)
    : source_(std::move(source)),
      our_port_id_(our_port_id),
      repair_(std::move(repair)),
      poll_ms_(poll_ms) {}

DriftWatcher::~DriftWatcher() { Stop(); }

void DriftWatcher::Start() {
  absl::MutexLock l(&mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Run(); });
}

void DriftWatcher::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

int64_t DriftWatcher::repairs_triggered() const {
  absl::MutexLock l(&mu_);
  return repairs_triggered_;
}

bool DriftWatcher::Handle(const std::vector<netlink::Change>& changes) {
  if (!netlink::ChangedByOthers(changes, our_port_id_)) return false;
  LogWarning(absl::StrCat("table changed by others: ",
                          DescribeForeignChanges(changes, our_port_id_),
                          "; checking and repairing now"));
  {
    absl::MutexLock l(&mu_);
    ++repairs_triggered_;
  }
  absl::Status st = repair_();
  if (!st.ok()) LogError(absl::StrCat("drift repair failed: ", st.ToString()));
  return true;
}

void DriftWatcher::Run() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
    }
    absl::StatusOr<std::vector<netlink::Change>> changes = source_(poll_ms_);
    if (!changes.ok()) {
      LogWarning(absl::StrCat("drift watcher: ", changes.status().ToString()));
      absl::SleepFor(absl::Milliseconds(poll_ms_));
      continue;
    }
    if (!changes->empty()) Handle(*changes);
  }
}

}  // namespace netpol::agent
