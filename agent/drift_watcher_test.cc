#include "agent/drift_watcher.h"

#include <atomic>
#include <deque>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

netlink::Change Made(uint32_t port, const std::string& what, const std::string& process = "") {
  netlink::Change c;
  c.port_id = port;
  c.generation = 7;
  c.process = process;
  c.description = what;
  return c;
}

TEST(DriftWatcherTest, OwnCommitsTriggerNothing) {
  int repairs = 0;
  DriftWatcher w(nullptr, 42, [&] { ++repairs; return absl::OkStatus(); });
  EXPECT_FALSE(w.Handle({Made(42, "add rule inet netpol forward handle 3"),
                         Made(42, "delete element from set s: 10.0.0.1")}));
  EXPECT_EQ(repairs, 0);
  EXPECT_EQ(w.repairs_triggered(), 0);
}

TEST(DriftWatcherTest, ForeignChangesAndLossesTriggerOneRepairEach) {
  int repairs = 0;
  DriftWatcher w(nullptr, 42, [&] { ++repairs; return absl::OkStatus(); });
  EXPECT_TRUE(w.Handle({Made(42, "ours"), Made(99, "delete table inet netpol", "nft")}));
  EXPECT_EQ(repairs, 1);
  netlink::Change lost;
  lost.lost = true;
  lost.description = "changes lost (notification overflow), full check needed";
  EXPECT_TRUE(w.Handle({lost}));
  EXPECT_EQ(repairs, 2);
  EXPECT_EQ(w.repairs_triggered(), 2);
}

TEST(DriftWatcherTest, DescriptionNamesForeignChangesOnlyAndShortensLongLists) {
  std::vector<netlink::Change> changes = {
      Made(42, "add rule inet netpol forward handle 1"),
      Made(99, "delete rule inet netpol forward handle 7", "nft"),
      Made(99, "delete element from set in-x-a-v4: 10.244.1.17 . tcp . 80", "nft")};
  EXPECT_EQ(DescribeForeignChanges(changes, 42),
            "delete rule inet netpol forward handle 7 (by nft); delete element from set "
            "in-x-a-v4: 10.244.1.17 . tcp . 80 (by nft)");
  for (int i = 0; i < 5; ++i) changes.push_back(Made(99, "x"));
  EXPECT_EQ(DescribeForeignChanges(changes, 42, 2),
            "delete rule inet netpol forward handle 7 (by nft); delete element from set "
            "in-x-a-v4: 10.244.1.17 . tcp . 80 (by nft); and 5 more");
}

TEST(DriftWatcherTest, ThreadRepairsWhatTheSourceReportsAndStops) {
  absl::Mutex mu;
  std::deque<std::vector<netlink::Change>> queue = {
      {Made(42, "ours")}, {Made(7, "delete chain inet netpol pod-a", "nft")}, {}};
  auto source = [&](int timeout_ms) -> absl::StatusOr<std::vector<netlink::Change>> {
    {
      absl::MutexLock l(&mu);
      if (!queue.empty()) {
        auto front = queue.front();
        queue.pop_front();
        return front;
      }
    }
    absl::SleepFor(absl::Milliseconds(timeout_ms));
    return std::vector<netlink::Change>{};
  };
  std::atomic<int> repairs{0};
  DriftWatcher w(source, 42, [&] { ++repairs; return absl::OkStatus(); }, 5);
  w.Start();
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (repairs.load() < 1 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  w.Stop();
  EXPECT_EQ(repairs.load(), 1);
  w.Stop();  // idempotent
}

}  // namespace
}  // namespace netpol::agent
