// ChangeMonitor against the real kernel. Every test moves the test process into a fresh network
// namespace first (unshare(CLONE_NEWNET)); `nft` runs as a child in that namespace, so its
// commits come from another process than NetlinkBackend's.
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/netlink/change_monitor.h"
#include "engine/netlink/netlink_backend.h"
#include "engine/netlink/test_support.h"
#include "engine/nft/program.h"
#include "engine/nft/test_util.h"
#include "engine/nft/transaction.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::netlink {
namespace {

using nft::Chain;
using nft::Element;
using nft::FieldType;
using nft::FieldValue;
using nft::Program;
using nft::Rule;
using nft::Selector;
using nft::Set;
using nft::Verdict;
using nft::testing::Ip;
using nft::testing::MakeRule;
using ::testing::Contains;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kNft[] = "/usr/sbin/nft";
constexpr char kTable[] = "netpol";
// Long enough for a notification the kernel queued before `nft` exited: ReadChanges returns as
// soon as one arrives, so this only bounds a failing test.
constexpr int kWaitMs = 2000;

// A small table: a base chain with two rules, a regular chain, a set and a verdict map.
Program Small() {
  Program p;
  p.table = kTable;
  p.sets["in-x-a-v4"] = Set{"in-x-a-v4",
                            {FieldType::kIpv4Addr, FieldType::kInetProto, FieldType::kInetService},
                            false,
                            false,
                            ""};
  p.sets["dispatch4"] = Set{"dispatch4", {FieldType::kIpv4Addr}, false, true, ""};
  p.elements["in-x-a-v4"] = {
      Elem({FieldValue::Addr(Ip("10.244.1.17")), FieldValue::Num(6), FieldValue::Num(80)}),
      Elem({FieldValue::Addr(Ip("10.244.1.18")), FieldValue::Num(17), FieldValue::Num(53)}),
  };
  p.elements["dispatch4"] = {Elem({FieldValue::Addr(Ip("10.244.1.17"))}, Verdict::Jump("pod-a"))};
  nft::CtStateMatch est;
  est.established = est.related = true;
  nft::LookupMatch dispatch;
  dispatch.key = {Selector::kIpDaddr};
  dispatch.set = "dispatch4";
  dispatch.vmap = true;
  Chain fwd;
  fwd.name = "forward";
  fwd.base = nft::BaseChainSpec{nft::Hook::kForward, 0, false};
  fwd.rules = {MakeRule({est}, Verdict::Accept()), MakeRule({dispatch}, std::nullopt)};
  nft::LookupMatch peers;
  peers.key = {Selector::kIpSaddr, Selector::kL4Proto, Selector::kThDport};
  peers.set = "in-x-a-v4";
  Chain pod_a;
  pod_a.name = "pod-a";
  pod_a.rules = {MakeRule({peers}, Verdict::Accept()), MakeRule({}, Verdict::Drop())};
  p.chains = {{"forward", fwd}, {"pod-a", pod_a}};
  nft::Canonicalize(&p);
  return p;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// True when this process lives in the initial pid namespace, where the kernel's pid numbers
// (NFTA_GEN_PROC_PID) are the ones fork() returns.
bool InInitialPidNamespace() {
  for (absl::string_view line : absl::StrSplit(ReadFile("/proc/self/status"), '\n')) {
    if (absl::ConsumePrefix(&line, "NSpid:")) {
      return std::vector<std::string>(absl::StrSplit(line, '\t', absl::SkipWhitespace())).size() ==
             1;
    }
  }
  return true;
}

// Runs `nft <command>` as a child process and returns its pid (-1 when it failed).
pid_t RunNft(const std::string& command) {
  pid_t child = fork();
  if (child == 0) {
    execl(kNft, "nft", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child) return -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << "nft " << command << ": exit status " << status;
    return -1;
  }
  return child;
}

std::vector<std::string> Descriptions(const std::vector<Change>& changes) {
  std::vector<std::string> out;
  for (const Change& c : changes) out.push_back(c.description);
  return out;
}

class ChangeMonitorKernelTest : public NetnsBackendTest {
 protected:
  void CreateMonitor(ChangeMonitorOptions options = {}) {
    auto m = ChangeMonitor::Create(kTable, options);
    ASSERT_TRUE(m.ok()) << m.status();
    monitor_ = *std::move(m);
  }

  // Commits Small() and reads the notifications of that commit; fills rule_handles_ from them.
  void CommitSmallAndDrain() {
    ASSERT_OK(CommitProgram(Small()));
    auto changes = monitor_->ReadChanges(0);  // queued before Commit returned
    ASSERT_TRUE(changes.ok()) << changes.status();
    ASSERT_FALSE(changes->empty());
    for (const Change& c : *changes) {
      absl::string_view d = c.description;
      if (!absl::ConsumePrefix(&d, "add rule inet netpol ")) continue;
      std::vector<std::string> parts = absl::StrSplit(d, absl::MaxSplits(':', 1));
      rule_handles_.push_back(parts[0]);  // "forward handle 2"
    }
    ASSERT_EQ(rule_handles_.size(), 4u);
  }

  // Reads changes until `n` have arrived (or the wait ran out).
  std::vector<Change> Read(size_t n) {
    std::vector<Change> all;
    while (all.size() < n) {
      auto more = monitor_->ReadChanges(kWaitMs);
      EXPECT_TRUE(more.ok()) << more.status();
      if (!more.ok() || more->empty()) break;
      all.insert(all.end(), more->begin(), more->end());
    }
    return all;
  }

  // Expects every change to come from one `nft` run with pid `pid`.
  void ExpectFromNft(const std::vector<Change>& changes, pid_t pid) {
    ASSERT_GT(pid, 0);
    uint32_t gen = changes.empty() ? 0 : changes.front().generation;
    for (const Change& c : changes) {
      SCOPED_TRACE(c.description);
      EXPECT_EQ(c.process, "nft");
      EXPECT_NE(c.port_id, backend_->port_id());
      EXPECT_NE(c.pid, static_cast<uint32_t>(getpid()));
      if (InInitialPidNamespace()) {
        EXPECT_EQ(c.pid, static_cast<uint32_t>(pid));
      }
      EXPECT_EQ(c.generation, gen) << "one nft command is one batch";
      EXPECT_FALSE(c.lost);
    }
    EXPECT_TRUE(ChangedByOthers(changes, backend_->port_id()));
  }

  std::unique_ptr<ChangeMonitor> monitor_;
  std::vector<std::string> rule_handles_;  // "<chain> handle <n>" in commit order
};

TEST_F(ChangeMonitorKernelTest, OwnCommitIsAttributedToOurPort) {
  CreateMonitor();  // before the table exists
  ASSERT_OK(CommitProgram(Small()));
  auto gen = backend_->Generation();
  ASSERT_TRUE(gen.ok()) << gen.status();

  auto changes = monitor_->ReadChanges(0);
  ASSERT_TRUE(changes.ok()) << changes.status();
  ASSERT_FALSE(changes->empty());
  std::string comm(absl::StripTrailingAsciiWhitespace(ReadFile("/proc/self/comm")));
  for (const Change& c : *changes) {
    SCOPED_TRACE(c.description);
    EXPECT_EQ(c.port_id, backend_->port_id());
    EXPECT_EQ(c.generation, *gen);
    EXPECT_EQ(c.process, comm);
    if (InInitialPidNamespace()) {
      EXPECT_EQ(c.pid, static_cast<uint32_t>(gettid()));
    }
    EXPECT_FALSE(c.lost);
  }
  EXPECT_FALSE(ChangedByOthers(*changes, backend_->port_id()));
  EXPECT_TRUE(ChangedByOthers(*changes, backend_->port_id() + 1));

  // The batch in the order it was sent (engine/nft AddProgram), with the kernel's handles.
  std::vector<std::string> d = Descriptions(*changes);
  ASSERT_EQ(d.size(), 12u) << ::testing::PrintToString(d);
  EXPECT_THAT(d, ElementsAreArray<std::string>({
                     "add table inet netpol",
                     "add set inet netpol dispatch4",
                     "add set inet netpol in-x-a-v4",
                     "add chain inet netpol forward",
                     "add chain inet netpol pod-a",
                     d[5],
                     d[6],
                     d[7],
                     d[8],
                     "add element to set dispatch4: 10.244.1.17 : jump pod-a",
                     "add element to set in-x-a-v4: 10.244.1.17 . tcp . 80",
                     "add element to set in-x-a-v4: 10.244.1.18 . udp . 53",
                 }));
  EXPECT_THAT(d[5], ::testing::MatchesRegex("add rule inet netpol forward handle [0-9]+: ct state "
                                            "established,related accept"));
  EXPECT_THAT(d[6], ::testing::MatchesRegex(
                        "add rule inet netpol forward handle [0-9]+: ip daddr vmap @dispatch4"));
  EXPECT_THAT(d[7], ::testing::MatchesRegex(
                        "add rule inet netpol pod-a handle [0-9]+: ip saddr \\. meta l4proto \\. "
                        "th dport @in-x-a-v4 accept"));
  EXPECT_THAT(d[8], ::testing::MatchesRegex("add rule inet netpol pod-a handle [0-9]+: drop"));
  EXPECT_EQ(monitor_->generations_seen(), 1u);

  // Nothing else is pending.
  auto more = monitor_->ReadChanges(0);
  ASSERT_TRUE(more.ok());
  EXPECT_THAT(*more, IsEmpty());
}

TEST_F(ChangeMonitorKernelTest, NftDeleteTable) {
  CreateMonitor();
  CommitSmallAndDrain();
  pid_t nft = RunNft("delete table inet netpol");
  std::vector<Change> changes = Read(9);
  ExpectFromNft(changes, nft);
  // The kernel announces a table's deletion as that of every rule, set and chain, then the
  // table.
  EXPECT_THAT(Descriptions(changes), ElementsAreArray<std::string>({
                                         "delete rule inet netpol " + rule_handles_[0],
                                         "delete rule inet netpol " + rule_handles_[1],
                                         "delete rule inet netpol " + rule_handles_[2],
                                         "delete rule inet netpol " + rule_handles_[3],
                                         "delete set inet netpol dispatch4",
                                         "delete set inet netpol in-x-a-v4",
                                         "delete chain inet netpol forward",
                                         "delete chain inet netpol pod-a",
                                         "delete table inet netpol",
                                     }));
}

TEST_F(ChangeMonitorKernelTest, NftFlushChain) {
  CreateMonitor();
  CommitSmallAndDrain();
  pid_t nft = RunNft("flush chain inet netpol forward");
  std::vector<Change> changes = Read(2);
  ExpectFromNft(changes, nft);
  EXPECT_THAT(Descriptions(changes), ElementsAreArray<std::string>({
                                         "delete rule inet netpol " + rule_handles_[0],
                                         "delete rule inet netpol " + rule_handles_[1],
                                     }));
}

TEST_F(ChangeMonitorKernelTest, NftDeleteElements) {
  CreateMonitor();
  CommitSmallAndDrain();
  pid_t nft = RunNft("delete element inet netpol in-x-a-v4 { 10.244.1.17 . tcp . 80 }");
  std::vector<Change> changes = Read(1);
  ExpectFromNft(changes, nft);
  EXPECT_THAT(Descriptions(changes),
              ElementsAreArray<std::string>({
                  "delete element from set in-x-a-v4: 10.244.1.17 . tcp . 80",
              }));

  // A verdict map element: deletions may carry the key alone.
  nft = RunNft("delete element inet netpol dispatch4 { 10.244.1.17 }");
  changes = Read(1);
  ExpectFromNft(changes, nft);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_THAT(changes[0].description,
              ::testing::AnyOf("delete element from set dispatch4: 10.244.1.17",
                               "delete element from set dispatch4: 10.244.1.17 : jump pod-a"));

  // `nft flush set` deletes element by element.
  nft = RunNft("flush set inet netpol in-x-a-v4");
  changes = Read(1);
  ExpectFromNft(changes, nft);
  EXPECT_THAT(Descriptions(changes),
              ElementsAreArray<std::string>({
                  "delete element from set in-x-a-v4: 10.244.1.18 . udp . 53",
              }));
}

TEST_F(ChangeMonitorKernelTest, ForeignAdditionsAreDescribed) {
  CreateMonitor();
  CommitSmallAndDrain();
  pid_t nft = RunNft("add chain inet netpol extra");
  std::vector<Change> changes = Read(1);
  ExpectFromNft(changes, nft);
  EXPECT_THAT(Descriptions(changes),
              ElementsAreArray<std::string>({"add chain inet netpol extra"}));

  // A rule netpol could have written is rendered; one it would not is named by its expressions.
  nft = RunNft("add rule inet netpol extra ct state established,related accept");
  changes = Read(1);
  ExpectFromNft(changes, nft);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_THAT(changes[0].description,
              ::testing::MatchesRegex("add rule inet netpol extra handle [0-9]+: ct state "
                                      "established,related accept"));
  nft = RunNft("add rule inet netpol extra counter log");
  changes = Read(1);
  ExpectFromNft(changes, nft);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_THAT(changes[0].description,
              ::testing::MatchesRegex(
                  "add rule inet netpol extra handle [0-9]+: expressions counter, log"));

  nft = RunNft("add element inet netpol in-x-a-v4 { 10.0.0.9 . udp . 5353 }");
  changes = Read(1);
  ExpectFromNft(changes, nft);
  EXPECT_THAT(Descriptions(changes), ElementsAreArray<std::string>(
                                         {"add element to set in-x-a-v4: 10.0.0.9 . udp . 5353"}));

  // A set created by hand: its elements render with its key types too.
  nft = RunNft("add set inet netpol hand { type ipv4_addr . inet_service; }");
  changes = Read(1);
  ExpectFromNft(changes, nft);
  EXPECT_THAT(Descriptions(changes), ElementsAreArray<std::string>({"add set inet netpol hand"}));
  nft = RunNft("add element inet netpol hand { 1.2.3.4 . 22 }");
  changes = Read(1);
  ExpectFromNft(changes, nft);
  EXPECT_THAT(Descriptions(changes),
              ElementsAreArray<std::string>({"add element to set hand: 1.2.3.4 . 22"}));
}

TEST_F(ChangeMonitorKernelTest, OtherTablesAreIgnored) {
  CreateMonitor();
  CommitSmallAndDrain();
  const uint64_t seen = monitor_->generations_seen();
  // Another table of the same family, a table of the same name in another family, and every
  // kind of object in them.
  RunNft("add table inet other");
  RunNft("add chain inet other c { type filter hook input priority 10; }");
  RunNft("add rule inet other c ip saddr 1.2.3.4 counter drop");
  RunNft("add set inet other s { type ipv4_addr; elements = { 5.6.7.8 } }");
  RunNft("delete element inet other s { 5.6.7.8 }");
  RunNft("flush chain inet other c");
  RunNft("delete table inet other");
  RunNft("add table ip netpol");
  RunNft("add chain ip netpol forward");
  RunNft("add rule ip netpol forward drop");
  RunNft("delete table ip netpol");
  auto none = monitor_->ReadChanges(0);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, IsEmpty());
  EXPECT_EQ(monitor_->generations_seen(), seen + 11) << "every command was one batch";

  // And a change to our table after them is reported alone.
  pid_t nft = RunNft("delete element inet netpol in-x-a-v4 { 10.244.1.18 . udp . 53 }");
  std::vector<Change> changes = Read(1);
  ExpectFromNft(changes, nft);
  EXPECT_THAT(Descriptions(changes),
              ElementsAreArray<std::string>({
                  "delete element from set in-x-a-v4: 10.244.1.18 . udp . 53",
              }));
}

TEST_F(ChangeMonitorKernelTest, MixedOwnAndForeignChanges) {
  CreateMonitor();
  CommitSmallAndDrain();
  // Ours, theirs, ours: each batch keeps its own attribution.
  nft::Transaction tx(kTable);
  tx.AddElements(
      "in-x-a-v4",
      {Elem({FieldValue::Addr(Ip("10.1.1.1")), FieldValue::Num(6), FieldValue::Num(443)})});
  ASSERT_OK(backend_->Commit(tx));
  pid_t nft = RunNft("delete element inet netpol in-x-a-v4 { 10.1.1.1 . tcp . 443 }");
  ASSERT_OK(backend_->Commit(tx));

  std::vector<Change> changes = Read(3);
  ASSERT_EQ(changes.size(), 3u) << ::testing::PrintToString(changes);
  EXPECT_EQ(changes[0].description, "add element to set in-x-a-v4: 10.1.1.1 . tcp . 443");
  EXPECT_EQ(changes[0].port_id, backend_->port_id());
  EXPECT_EQ(changes[1].description, "delete element from set in-x-a-v4: 10.1.1.1 . tcp . 443");
  EXPECT_EQ(changes[1].process, "nft");
  if (InInitialPidNamespace()) {
    EXPECT_EQ(changes[1].pid, static_cast<uint32_t>(nft));
  }
  EXPECT_NE(changes[1].port_id, backend_->port_id());
  EXPECT_EQ(changes[2].description, "add element to set in-x-a-v4: 10.1.1.1 . tcp . 443");
  EXPECT_EQ(changes[2].port_id, backend_->port_id());
  EXPECT_LT(changes[0].generation, changes[1].generation);
  EXPECT_LT(changes[1].generation, changes[2].generation);
  EXPECT_TRUE(ChangedByOthers(changes, backend_->port_id()));
  EXPECT_FALSE(ChangedByOthers({changes[0], changes[2]}, backend_->port_id()));
}

TEST_F(ChangeMonitorKernelTest, RepairByFullSyncIsOurs) {
  // The repair path: after `nft delete element`, replace the whole table (destroy + add) in one
  // batch. The destroy verbs are announced as deletions, all attributed to our port.
  CreateMonitor();
  CommitSmallAndDrain();
  pid_t nft = RunNft("delete element inet netpol in-x-a-v4 { 10.244.1.17 . tcp . 80 }");
  std::vector<Change> drift = Read(1);
  ExpectFromNft(drift, nft);

  nft::Transaction tx(kTable);
  tx.DestroyTable();
  tx.AddProgram(Small());
  ASSERT_OK(backend_->Commit(tx));
  auto changes = monitor_->ReadChanges(0);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_FALSE(ChangedByOthers(*changes, backend_->port_id()));
  std::vector<std::string> d = Descriptions(*changes);
  // 4 rules, 2 sets, 2 chains and the table go; then Small() is added again (12 changes).
  ASSERT_EQ(d.size(), 9u + 12u) << ::testing::PrintToString(d);
  EXPECT_EQ(d[0], "delete rule inet netpol " + rule_handles_[0]);
  EXPECT_EQ(d[8], "delete table inet netpol");
  EXPECT_EQ(d[9], "add table inet netpol");
  EXPECT_THAT(d, Contains("add element to set in-x-a-v4: 10.244.1.17 . tcp . 80"));
}

TEST_F(ChangeMonitorKernelTest, OverflowIsReportedAsLostChanges) {
  // A receive buffer far too small for the notifications of 3,000 elements.
  ChangeMonitorOptions options;
  options.receive_buffer_bytes = 16 * 1024;
  CreateMonitor(options);
  ASSERT_OK(CommitProgram(Small()));
  std::vector<Element> elements;
  for (int i = 0; i < 3000; ++i) {
    elements.push_back(Elem({FieldValue::Addr(IpAddr::V4(10, 50, i / 256, i % 256)),
                             FieldValue::Num(6), FieldValue::Num(80)}));
  }
  nft::Transaction tx(kTable);
  tx.AddElements("in-x-a-v4", elements);
  ASSERT_OK(backend_->Commit(tx));

  auto changes = monitor_->ReadChanges(0);
  ASSERT_TRUE(changes.ok()) << changes.status();
  Change lost;
  lost.lost = true;
  lost.description = "changes lost (notification overflow), full check needed";
  EXPECT_THAT(*changes, Contains(lost));
  EXPECT_TRUE(ChangedByOthers(*changes, backend_->port_id()));

  // Drain whatever is left; the monitor keeps working afterwards.
  for (int i = 0; i < 100; ++i) {
    auto rest = monitor_->ReadChanges(0);
    ASSERT_TRUE(rest.ok()) << rest.status();
    if (rest->empty()) break;
  }
  pid_t nft = RunNft("delete element inet netpol in-x-a-v4 { 10.50.0.7 . tcp . 80 }");
  std::vector<Change> after = Read(1);
  ASSERT_FALSE(after.empty());
  // The next batch marker releases what arrived of our batch (whose marker was lost): with our
  // port but no generation; then nft's change, attributed to nft.
  std::vector<Change> theirs = {after.back()};
  after.pop_back();
  ExpectFromNft(theirs, nft);
  EXPECT_EQ(theirs[0].description, "delete element from set in-x-a-v4: 10.50.0.7 . tcp . 80");
  EXPECT_LT(after.size(), elements.size()) << "some of our notifications were dropped";
  for (const Change& c : after) {
    SCOPED_TRACE(c.description);
    EXPECT_THAT(c.description, ::testing::StartsWith("add element to set in-x-a-v4: 10.50."));
    EXPECT_EQ(c.port_id, backend_->port_id());
    EXPECT_EQ(c.generation, 0u);
    EXPECT_EQ(c.pid, 0u);
  }
  EXPECT_FALSE(ChangedByOthers(after, backend_->port_id()));
}

TEST_F(ChangeMonitorKernelTest, ReadChangesTimesOutWhenNothingHappens) {
  CreateMonitor();
  auto changes = monitor_->ReadChanges(20);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(*changes, IsEmpty());
}

TEST_F(ChangeMonitorKernelTest, BadTableNameIsRejected) {
  auto m = ChangeMonitor::Create("bad name!");
  EXPECT_TRUE(absl::IsInvalidArgument(m.status())) << m.status();
}

}  // namespace
}  // namespace netpol::netlink
