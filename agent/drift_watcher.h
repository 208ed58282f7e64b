// Drift repair driven by nf_tables change notifications.
//
// The DriftWatcher runs one thread that reads the changes to the agent's table (through a
// netlink::ChangeMonitor in the agent; any ChangeSource in tests). When a batch was committed
// by anyone other than the agent's own backend (or notifications were lost), it logs one line
// naming what changed and runs the repair at once: the reconciler's CheckNow(), which dumps
// the table, compares it with the committed program and replaces the table in one transaction
// when they differ. Changes to other tables never reach the watcher (the monitor filters
// them), and the agent's own commits are recognized by their netlink port id.
//
// Thread safety: Start/Stop are thread-safe; the repair callback runs on the watcher's thread.
#ifndef NETPOL_AGENT_DRIFT_WATCHER_H_
#define NETPOL_AGENT_DRIFT_WATCHER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/netlink/change_monitor.h"

namespace netpol::agent {

class DriftWatcher {
 public:
  // Waits up to `timeout_ms` for changes to the table (ChangeMonitor::ReadChanges).
  using ChangeSource =
      std::function<absl::StatusOr<std::vector<netlink::Change>>(int timeout_ms)>;
  // Repairs the table (Reconciler::CheckNow).
  using Repair = std::function<absl::Status()>;

  // `our_port_id`: the netlink port id of the agent's own commits (NetlinkBackend::port_id()).
  // `poll_ms`: how long one read waits; bounds how long Stop() takes.
  DriftWatcher(ChangeSource source, uint32_t our_port_id, Repair repair, int poll_ms = 100);
  ~DriftWatcher();
  DriftWatcher(const DriftWatcher&) = delete;
  DriftWatcher& operator=(const DriftWatcher&) = delete;

  void Start();
  void Stop();  // idempotent; joins the thread

  // Handles one read's worth of changes: returns true when it triggered a repair. The thread
  // calls this; tests may call it directly.
  bool Handle(const std::vector<netlink::Change>& changes);

  int64_t repairs_triggered() const;

 private:
  void Run();

  const ChangeSource source_;
  const uint32_t our_port_id_;
  const Repair repair_;
  const int poll_ms_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t repairs_triggered_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// The log line for a batch of foreign changes: "table changed by others: <descriptions>"
// (each with its committing process when known), shortened after `max_listed` entries.
std::string DescribeForeignChanges(const std::vector<netlink::Change>& changes,
                                   uint32_t our_port_id, size_t max_listed = 8);

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_DRIFT_WATCHER_H_
