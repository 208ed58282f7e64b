// Reconciler against nft::FakeBackend: full replace at start, incremental syncs, coalescing,
// failure recovery, drift repair.
#include "agent/reconciler.h"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/testing/fixtures.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/incremental.h"
#include "engine/conntrack/revocation.h"
#include "engine/model/loader.h"
#include "engine/nft/diff.h"
#include "engine/nft/fake.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

// A pod on node n1 with a distinct address; `i` < 60000.
Pod ClientPod(int i) {
  Pod p;
  p.namespace_name = "x";
  p.name = absl::StrCat("c", i);
  p.labels = {{"app", "client"}};
  p.node_name = "n1";
  p.ips = {IpAddr::V4(10, 1, static_cast<uint8_t>(i / 250), static_cast<uint8_t>(i % 250 + 1))};
  return p;
}

// A snapshot source the test drives directly.
class FakeSource {
 public:
  explicit FakeSource(State s) { Set(std::move(s)); }
  void Set(State s, uint64_t changes = 1) {
    absl::MutexLock l(&mu_);
    snap_.state = std::make_shared<const State>(std::move(s));
    ++snap_.generation;
    snap_.changes += changes;
    history_[snap_.generation] = snap_.state;
  }
  Snapshot Get() {
    absl::MutexLock l(&mu_);
    return snap_;
  }
  // A change log over the remembered generations (what Datastore::ChangesBetween answers).
  std::optional<compiler::Delta> Changes(uint64_t from, uint64_t to) {
    absl::MutexLock l(&mu_);
    ++change_calls_;
    if (!answer_) return std::nullopt;
    auto a = history_.find(from), b = history_.find(to);
    if (a == history_.end() || b == history_.end()) return std::nullopt;
    return compiler::DiffStates(*a->second, *b->second);
  }
  void set_answer(bool answer) {
    absl::MutexLock l(&mu_);
    answer_ = answer;
  }
  int change_calls() {
    absl::MutexLock l(&mu_);
    return change_calls_;
  }

 private:
  absl::Mutex mu_;
  Snapshot snap_;
  std::map<uint64_t, std::shared_ptr<const State>> history_;
  bool answer_ = true;
  int change_calls_ = 0;
};

// Forwards to a FakeBackend, counting commits; optionally holds the first commit at a gate.
class GatedBackend : public nft::Backend {
 public:
  explicit GatedBackend(nft::FakeBackend* fake) : fake_(fake) {}
  absl::Status Commit(const nft::Transaction& tx) override {
    if (gate_ && !gated_once_) {
      gated_once_ = true;
      entered_.Notify();
      release_.WaitForNotification();
    }
    ++commits_;
    return fake_->Commit(tx);
  }
  absl::StatusOr<nft::Program> Dump(const std::string& table) override {
    return fake_->Dump(table);
  }
  absl::StatusOr<std::vector<nft::RuleCount>> ReadCounters(const std::string& table) override {
    return fake_->ReadCounters(table);
  }
  void EnableGate() { gate_ = true; }
  absl::Notification entered_, release_;
  std::atomic<int> commits_{0};

 private:
  nft::FakeBackend* fake_;
  bool gate_ = false;
  bool gated_once_ = false;
};

ReconcilerOptions Options() {
  ReconcilerOptions o;
  o.compile.node_name = "n1";
  o.check_interval = absl::ZeroDuration();
  o.debounce = absl::ZeroDuration();
  o.retry_interval = absl::Hours(1);  // tests drive retries explicitly
  return o;
}

nft::Program Expected(const State& s) {
  auto p = compiler::Compile(s, Options().compile);
  EXPECT_TRUE(p.ok()) << p.status();
  return nft::Canonical(*p);
}

class ReconcilerTest : public ::testing::Test {
 protected:
  ReconcilerTest() : source_(fixtures::LoadState(fixtures::WebAndClients())), backend_(&fake_) {}
  std::unique_ptr<Reconciler> Make(ReconcilerOptions o = Options()) {
    return std::make_unique<Reconciler>(&backend_, [this] { return source_.Get(); }, o);
  }
  nft::Program Kernel() {
    auto p = fake_.Dump("netpol");
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : nft::Program{};
  }
  FakeSource source_;
  nft::FakeBackend fake_;
  GatedBackend backend_;
};

TEST_F(ReconcilerTest, FirstSyncReplacesAForeignTableInOneTransaction) {
  // Whatever a previous run (or someone else) left in the table is replaced atomically.
  nft::Transaction junk("netpol");
  junk.AddTable();
  nft::Chain c;
  c.name = "leftover";
  junk.AddChain(c);
  ASSERT_TRUE(fake_.Commit(junk).ok());
  const int before = fake_.commit_count();

  auto r = Make();
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(fake_.commit_count(), before + 1);
  EXPECT_EQ(Kernel(), Expected(source_.Get().state ? *source_.Get().state : State{}));
  EXPECT_EQ(Kernel().chains.count("leftover"), 0u);
  SyncStatus s = r->status();
  EXPECT_TRUE(s.synced_once);
  EXPECT_EQ(s.last_sync_kind, SyncKind::kFull);
  EXPECT_EQ(s.applied_generation, 1u);
  EXPECT_TRUE(r->WaitFor(1, absl::ZeroDuration()).ok());
}

// A restart (a new reconciler over the kernel's table) replaces the table in one transaction;
// the rule counters keep counting from where they were.
TEST_F(ReconcilerTest, ARestartKeepsTheRuleCounters) {
  ReconcilerOptions o = Options();
  o.compile.rule_counters = true;
  auto first = Make(o);
  ASSERT_TRUE(first->SyncNow().ok());
  auto counted = first->ReadRuleCounters();
  ASSERT_TRUE(counted.ok()) << counted.status();
  ASSERT_FALSE(counted->empty());
  std::vector<nft::RuleCount> want;
  for (size_t i = 0; i < counted->size(); ++i) {
    const CountedRule& r = (*counted)[i];
    ASSERT_TRUE(r.attributed) << r.count.chain << " " << r.count.index;
    ASSERT_TRUE(fake_.AddPackets("netpol", r.count.chain, r.count.index, i + 1, 60 * (i + 1)).ok());
    nft::RuleCount c = r.count;
    c.packets = i + 1;
    c.bytes = 60 * (i + 1);
    want.push_back(c);
  }
  first.reset();  // the agent stops; the kernel keeps the table

  auto second = Make(o);
  ASSERT_TRUE(second->SyncNow().ok());
  EXPECT_EQ(second->status().last_sync_kind, SyncKind::kFull);
  auto program = compiler::Compile(*source_.Get().state, o.compile);
  ASSERT_TRUE(program.ok()) << program.status();
  EXPECT_EQ(Kernel(), nft::Canonical(*program));
  auto after = second->ReadRuleCounters();
  ASSERT_TRUE(after.ok()) << after.status();
  std::vector<nft::RuleCount> got;
  for (const CountedRule& r : *after) {
    EXPECT_TRUE(r.attributed) << r.count.chain << " " << r.count.index;
    got.push_back(r.count);
  }
  EXPECT_EQ(got, want);

  // Without rule counters nothing is read or carried, and the table has no counters.
  auto plain = Make();
  ASSERT_TRUE(plain->SyncNow().ok());
  auto none = fake_.ReadCounters("netpol");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// After each commit, records whether the table exists and how many base chains it has.
class HookWatchingBackend : public nft::Backend {
 public:
  explicit HookWatchingBackend(nft::FakeBackend* fake) : fake_(fake) {}
  absl::Status Commit(const nft::Transaction& tx) override {
    absl::Status st = fake_->Commit(tx);
    absl::StatusOr<nft::Program> now = fake_->Dump("netpol");
    size_t base = 0;
    if (now.ok()) {
      for (const auto& [name, chain] : now->chains) base += chain.base.has_value() ? 1 : 0;
    }
    base_chains.push_back(now.ok() ? static_cast<int>(base) : -1);
    elements.push_back(tx.ElementCount());
    return st;
  }
  absl::StatusOr<nft::Program> Dump(const std::string& table) override {
    return fake_->Dump(table);
  }
  std::vector<int> base_chains;  // per commit: -1 when the table does not exist afterwards
  std::vector<size_t> elements;  // per commit

 private:
  nft::FakeBackend* fake_;
};

State WithClients(State s, int n) {
  for (int i = 0; i < n; ++i) s.pods[absl::StrCat("x/c", i)] = ClientPod(i);
  return s;
}

TEST_F(ReconcilerTest, ColdStartOfALargeProgramIsChunkedAndHookedLast) {
  source_.Set(WithClients(*source_.Get().state, 40));
  HookWatchingBackend watch(&fake_);
  ReconcilerOptions o = Options();
  o.cold_start_chunk_elements = 5;
  Reconciler r(&watch, [this] { return source_.Get(); }, o);
  ASSERT_TRUE(r.SyncNow().ok());
  EXPECT_EQ(Kernel(), Expected(*source_.Get().state));
  ASSERT_GT(watch.base_chains.size(), 3u);  // skeleton, element chunks, hooks
  for (size_t i = 0; i + 1 < watch.base_chains.size(); ++i) {
    EXPECT_EQ(watch.base_chains[i], 0) << "commit " << i << " hooked the table early";
    EXPECT_LE(watch.elements[i], 5u) << "commit " << i;
  }
  EXPECT_GT(watch.base_chains.back(), 0);
  EXPECT_EQ(r.status().last_sync_kind, SyncKind::kFull);
  EXPECT_EQ(r.status().applied_generation, source_.Get().generation);
  // Later changes are single incremental transactions again.
  const size_t commits = watch.base_chains.size();
  State s = *source_.Get().state;
  s.pods.erase("x/c3");
  source_.Set(s);
  ASSERT_TRUE(r.SyncNow().ok());
  EXPECT_EQ(watch.base_chains.size(), commits + 1);
  EXPECT_EQ(Kernel(), Expected(s));
}

TEST_F(ReconcilerTest, AnEnforcingTableIsReplacedInOneTransactionEvenWhenLarge) {
  source_.Set(WithClients(*source_.Get().state, 40));
  ASSERT_TRUE(fake_.Commit(nft::FullReplace(Expected(State{}))).ok());  // a previous run's
  HookWatchingBackend watch(&fake_);
  ReconcilerOptions o = Options();
  o.cold_start_chunk_elements = 5;
  Reconciler r(&watch, [this] { return source_.Get(); }, o);
  ASSERT_TRUE(r.SyncNow().ok());
  EXPECT_EQ(watch.base_chains.size(), 1u);
  EXPECT_EQ(Kernel(), Expected(*source_.Get().state));
}

TEST_F(ReconcilerTest, AFailedChunkLeavesNoTableAndTheNextSyncBuildsIt) {
  source_.Set(WithClients(*source_.Get().state, 40));
  HookWatchingBackend watch(&fake_);
  ReconcilerOptions o = Options();
  o.cold_start_chunk_elements = 5;
  Reconciler r(&watch, [this] { return source_.Get(); }, o);
  fake_.FailCommit(3);  // an element chunk
  absl::Status st = r.SyncNow();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cold start, transaction 3 of "), std::string::npos) << st;
  EXPECT_TRUE(absl::IsNotFound(fake_.Dump("netpol").status()));
  for (int b : watch.base_chains) EXPECT_LE(b, 0);  // never hooked on the way
  EXPECT_EQ(r.status().failures, 1);
  ASSERT_TRUE(r.SyncNow().ok());
  EXPECT_EQ(Kernel(), Expected(*source_.Get().state));
}

TEST_F(ReconcilerTest, LaterChangesAreIncrementalAndExact) {
  auto r = Make();
  ASSERT_TRUE(r->SyncNow().ok());
  State s = *source_.Get().state;
  s.pods["x/c1"] = ClientPod(1);
  source_.Set(s);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().last_sync_kind, SyncKind::kIncremental);
  EXPECT_EQ(Kernel(), Expected(s));
  // Nothing new: no transaction at all.
  const int commits = fake_.commit_count();
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(fake_.commit_count(), commits);
}

TEST_F(ReconcilerTest, BurstOfUpdatesCoalesces) {
  auto r = Make();
  ASSERT_TRUE(r->SyncNow().ok());
  const int initial = backend_.commits_.load();
  backend_.EnableGate();
  r->Start();
  State s = *source_.Get().state;
  s.pods["x/c0"] = ClientPod(0);
  source_.Set(s);
  r->Notify();
  // The worker is now inside the first commit; 999 more updates arrive meanwhile.
  backend_.entered_.WaitForNotification();
  for (int i = 1; i < 1000; ++i) {
    s.pods[absl::StrCat("x/c", i)] = ClientPod(i);
    source_.Set(s);
    r->Notify();
  }
  const uint64_t last = source_.Get().generation;
  backend_.release_.Notify();
  ASSERT_TRUE(r->WaitFor(last, absl::Seconds(60)).ok());
  // The gated commit, then one transaction carrying the other 999 updates.
  EXPECT_EQ(backend_.commits_.load() - initial, 2);
  EXPECT_EQ(Kernel(), Expected(s));
  r->Stop();
}

TEST_F(ReconcilerTest, FailedCommitIsReportedThenRepairedByAFullSync) {
  auto r = Make();
  ASSERT_TRUE(r->SyncNow().ok());
  nft::Program before = Kernel();
  State s = *source_.Get().state;
  s.pods["x/c1"] = ClientPod(1);
  source_.Set(s);
  const uint64_t gen = source_.Get().generation;
  // Both the incremental attempt and its immediate full retry fail.
  fake_.FailCommit(1, absl::FailedPreconditionError("no pipapo"));
  fake_.FailCommit(2, absl::FailedPreconditionError("no pipapo"));
  absl::Status st = r->SyncNow();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(r->WaitFor(gen, absl::ZeroDuration()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Kernel(), before);  // the kernel keeps the old program, nothing half-applied
  SyncStatus status = r->status();
  EXPECT_EQ(status.failures, 1);
  EXPECT_EQ(status.applied_generation, gen - 1);
  EXPECT_FALSE(status.last_error.ok());

  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().last_sync_kind, SyncKind::kFull);
  EXPECT_TRUE(r->status().last_error.ok());
  EXPECT_EQ(Kernel(), Expected(s));
  EXPECT_TRUE(r->WaitFor(gen, absl::ZeroDuration()).ok());
}

TEST_F(ReconcilerTest, IncrementalFailureRetriesAsFullAtOnce) {
  auto r = Make();
  ASSERT_TRUE(r->SyncNow().ok());
  State s = *source_.Get().state;
  s.pods["x/c1"] = ClientPod(1);
  source_.Set(s);
  fake_.FailCommit(1);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().last_sync_kind, SyncKind::kFull);
  EXPECT_EQ(Kernel(), Expected(s));
}

TEST_F(ReconcilerTest, DriftIsRepaired) {
  auto r = Make();
  ASSERT_TRUE(r->SyncNow().ok());
  ASSERT_TRUE(r->CheckNow().ok());
  EXPECT_EQ(r->status().repairs, 0);

  // Someone flushes our table's rules.
  nft::Transaction flush("netpol");
  flush.FlushTable();
  ASSERT_TRUE(fake_.Commit(flush).ok());
  ASSERT_FALSE(Kernel() == Expected(*source_.Get().state));
  ASSERT_TRUE(r->CheckNow().ok());
  EXPECT_EQ(r->status().repairs, 1);
  EXPECT_EQ(r->status().last_sync_kind, SyncKind::kRepair);
  EXPECT_EQ(Kernel(), Expected(*source_.Get().state));

  // Someone deletes the table.
  nft::Transaction del("netpol");
  del.DeleteTable();
  ASSERT_TRUE(fake_.Commit(del).ok());
  ASSERT_TRUE(r->CheckNow().ok());
  EXPECT_EQ(r->status().repairs, 2);
  EXPECT_EQ(Kernel(), Expected(*source_.Get().state));
}

TEST_F(ReconcilerTest, CompileErrorCommitsNothing) {
  ReconcilerOptions o = Options();
  o.compile.table = "bad name!";
  auto r = Make(o);
  absl::Status st = r->SyncNow();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(fake_.commit_count(), 0);
  EXPECT_FALSE(r->status().synced_once);
  EXPECT_EQ(r->WaitFor(1, absl::ZeroDuration()).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ReconcilerTest, WaitForTimesOutAndStopWakesWaiters) {
  auto r = Make();
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->WaitFor(5, absl::Milliseconds(1)).code(), absl::StatusCode::kDeadlineExceeded);
  r->Stop();
  EXPECT_EQ(r->WaitFor(5, absl::Seconds(60)).code(), absl::StatusCode::kUnavailable);
}

TEST_F(ReconcilerTest, WithoutAChangeLogEverySyncCompilesAndDiffs) {
  // No ReconcilerOptions::changes: the sync compiles the whole State and commits its diff
  // against the committed program, which after_commit receives whole.
  struct Seen {
    int calls = 0;
    std::optional<nft::Program> before;
    std::string tx;
  };
  auto seen = std::make_shared<Seen>();
  ReconcilerOptions o = Options();
  o.after_commit = [seen](const nft::Program* before, const nft::Transaction& tx,
                          const nft::Program&) {
    ++seen->calls;
    seen->before = before == nullptr ? std::nullopt : std::optional<nft::Program>(*before);
    seen->tx = tx.ToNftText();
  };
  auto r = Make(o);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(seen->calls, 1);
  EXPECT_FALSE(seen->before.has_value());  // nothing committed before the start
  const nft::Program first = *compiler::Compile(*source_.Get().state, Options().compile);
  EXPECT_EQ(*r->committed(), first);

  State s = *source_.Get().state;
  s.pods["x/c1"] = ClientPod(1);
  source_.Set(s);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().last_sync_kind, SyncKind::kIncremental);
  EXPECT_EQ(r->status().change_log_syncs, 0);
  const nft::Program second = *compiler::Compile(s, Options().compile);
  ASSERT_EQ(seen->calls, 2);
  ASSERT_TRUE(seen->before.has_value());
  EXPECT_EQ(*seen->before, first);
  EXPECT_EQ(seen->tx, nft::Diff(first, second).ToNftText());
  EXPECT_EQ(Kernel(), nft::Canonical(second));
  // committed() copies the program once, then hands out the same one until the next sync.
  std::shared_ptr<const nft::Program> c = r->committed();
  EXPECT_EQ(*c, second);
  EXPECT_EQ(r->committed().get(), c.get());

  // A failed commit leaves the kernel's program as the committed one.
  s.pods["x/c2"] = ClientPod(2);
  source_.Set(s);
  fake_.FailCommit(1);
  fake_.FailCommit(2);
  EXPECT_FALSE(r->SyncNow().ok());
  EXPECT_EQ(seen->calls, 2);
  EXPECT_EQ(*r->committed(), second);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().last_sync_kind, SyncKind::kFull);
  EXPECT_EQ(Kernel(), Expected(s));
  EXPECT_EQ(*r->committed(), *compiler::Compile(s, Options().compile));
}

TEST_F(ReconcilerTest, PlanIsFullBeforeTheFirstSyncThenADiff) {
  auto r = Make();
  nft::Program p = Expected(*source_.Get().state);
  nft::Transaction full = r->Plan(p);
  EXPECT_NE(full.ToNftText().find("delete table"), std::string::npos) << full.ToNftText();
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_TRUE(r->Plan(*r->committed()).empty());
}

// ---- syncs through the change log (ReconcilerOptions::changes) ----

ReconcilerOptions WithChanges(FakeSource* source) {
  ReconcilerOptions o = Options();
  o.changes = [source](uint64_t from, uint64_t to) { return source->Changes(from, to); };
  return o;
}

// The i-th edit of a scripted sequence touching every kind of object.
void Edit(State* s, int i) {
  switch (i % 8) {
    case 0:  // a local client pod arrives (a peer of x/web)
      s->pods[absl::StrCat("x/c", i)] = ClientPod(i);
      break;
    case 1: {  // a remote client pod arrives
      Pod p = ClientPod(i);
      p.node_name = "n2";
      s->pods[p.Key()] = p;
      break;
    }
    case 2:  // a client becomes a web pod: it joins the isolated group
      if (s->pods.count(absl::StrCat("x/c", i - 2))) {
        s->pods[absl::StrCat("x/c", i - 2)].labels["app"] = "web";
      }
      break;
    case 3:  // a pod leaves
      s->pods.erase(absl::StrCat("x/c", i - 2));
      break;
    case 4: {  // a policy arrives: egress of the clients, to namespaces labelled team=a
      NetworkPolicy p;
      p.namespace_name = "x";
      p.name = absl::StrCat("eg", i);
      p.pod_selector.match_labels = {{"app", "client"}};
      p.egress_type = true;
      Rule r;
      Peer peer;
      peer.namespace_selector = LabelSelector{{{"team", "a"}}, {}};
      r.peers.push_back(peer);
      p.egress.push_back(r);
      s->policies[p.Key()] = p;
      break;
    }
    case 5:  // the namespace relabels
      s->namespaces["x"].labels["team"] = (i / 8) % 2 == 0 ? "a" : "b";
      break;
    case 6:  // x/web changes its ports
      s->policies["x/web"].ingress[0].ports[0].port = 8000 + i;
      s->policies["x/web"].ingress[0].ports[0].named_port.reset();
      break;
    default:  // the egress policy goes
      s->policies.erase(absl::StrCat("x/eg", i - 3));
      break;
  }
}

TEST_F(ReconcilerTest, ChangeLogSyncsGiveTheKernelOfFullSyncs) {
  nft::FakeBackend other;  // the same states through full Compile + Diff
  auto full = std::make_unique<Reconciler>(&other, [this] { return source_.Get(); }, Options());
  auto r = Make(WithChanges(&source_));
  ASSERT_TRUE(r->SyncNow().ok());
  ASSERT_TRUE(full->SyncNow().ok());
  State s = *source_.Get().state;
  for (int i = 0; i < 48; ++i) {
    Edit(&s, i);
    source_.Set(s);
    ASSERT_TRUE(r->SyncNow().ok()) << "edit " << i;
    ASSERT_TRUE(full->SyncNow().ok()) << "edit " << i;
    EXPECT_EQ(r->status().last_sync_kind, SyncKind::kIncremental) << "edit " << i;
    const nft::Program want = Expected(s);
    EXPECT_EQ(Kernel(), want) << "edit " << i;
    auto theirs = other.Dump("netpol");
    ASSERT_TRUE(theirs.ok());
    EXPECT_EQ(nft::RenderProgram(Kernel()), nft::RenderProgram(*theirs)) << "edit " << i;
    EXPECT_EQ(nft::Canonical(*r->committed()), want) << "edit " << i;
    EXPECT_TRUE(r->Plan(*compiler::Compile(s, Options().compile)).empty()) << "edit " << i;
  }
  EXPECT_EQ(source_.change_calls(), 48);
  EXPECT_EQ(r->status().change_log_syncs, 48);
  // A drift check compares with the program the compiler holds.
  ASSERT_TRUE(r->CheckNow().ok());
  EXPECT_EQ(r->status().repairs, 0);
}

TEST_F(ReconcilerTest, UnknownChangesFallBackToCompileAndDiff) {
  auto r = Make(WithChanges(&source_));
  ASSERT_TRUE(r->SyncNow().ok());
  State s = *source_.Get().state;
  for (int i = 0; i < 16; ++i) {
    source_.set_answer(i % 3 != 0);  // every third sync the log cannot tell
    Edit(&s, i);
    source_.Set(s);
    ASSERT_TRUE(r->SyncNow().ok()) << "edit " << i;
    EXPECT_EQ(r->status().last_sync_kind, SyncKind::kIncremental);
    EXPECT_EQ(Kernel(), Expected(s)) << "edit " << i;
  }
  EXPECT_EQ(r->status().change_log_syncs, 10);  // 16 syncs, 6 without an answer
}

TEST_F(ReconcilerTest, LargeChangesCompileTheWholeState) {
  auto r = Make(WithChanges(&source_));
  ASSERT_TRUE(r->SyncNow().ok());
  State s = *source_.Get().state;
  for (int i = 1000; i < 1100; ++i) {
    Pod p = ClientPod(i);
    s.pods[p.Key()] = p;
  }
  source_.Set(s);  // 100 pods in one change: 400 units against a State of little more than 100 objects
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().last_sync_kind, SyncKind::kIncremental);
  EXPECT_EQ(r->status().change_log_syncs, 0);
  EXPECT_EQ(Kernel(), Expected(s));
  Edit(&s, 0);  // a small change goes through the change log again
  source_.Set(s);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().change_log_syncs, 1);
  EXPECT_EQ(Kernel(), Expected(s));

  // Below the object floor the same kind of change goes through the log whatever its weight.
  ReconcilerOptions o = WithChanges(&source_);
  o.incremental_max_objects = 1000;
  nft::FakeBackend other;
  auto r2 = std::make_unique<Reconciler>(&other, [this] { return source_.Get(); }, o);
  ASSERT_TRUE(r2->SyncNow().ok());
  for (int i = 2000; i < 2100; ++i) {
    Pod p = ClientPod(i);
    s.pods[p.Key()] = p;
  }
  source_.Set(s);
  ASSERT_TRUE(r2->SyncNow().ok());
  EXPECT_EQ(r2->status().change_log_syncs, 1);
  auto got = other.Dump("netpol");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(nft::Canonical(*got), Expected(s));
}

TEST_F(ReconcilerTest, AttachedPodsChangeGoesThroughTheChangeLogToo) {
  auto attached = std::make_shared<std::set<std::string>>();
  ReconcilerOptions o = WithChanges(&source_);
  o.attached_pods = [attached] { return *attached; };
  auto r = Make(o);
  ASSERT_TRUE(r->SyncNow().ok());
  State s = *source_.Get().state;
  Pod early = ClientPod(7);
  early.node_name.clear();  // CNI ADD before the API server knows the node
  early.labels["app"] = "web";
  s.pods[early.Key()] = early;
  source_.Set(s);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().change_log_syncs, 1);
  attached->insert(early.Key());
  source_.Set(s);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().change_log_syncs, 2);
  compiler::CompileOptions copts = Options().compile;
  copts.attached_pods = *attached;
  auto want = compiler::Compile(s, copts);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(Kernel(), nft::Canonical(*want));
  EXPECT_NE(nft::RenderProgram(Kernel()).find("x/c7"), std::string::npos);
}

TEST_F(ReconcilerTest, ChangeLogSyncHandsTheRevokerWhatItNeeds) {
  struct Seen {
    bool called = false;
    std::vector<conntrack::FlowFilter> filters;
    nft::Program after;
  };
  auto seen = std::make_shared<Seen>();
  ReconcilerOptions o = WithChanges(&source_);
  o.after_commit = [seen](const nft::Program* before, const nft::Transaction& tx,
                          const nft::Program& after) {
    seen->called = true;
    seen->filters = before == nullptr ? std::vector<conntrack::FlowFilter>{}
                                      : conntrack::RevocationFilters(*before, tx);
    seen->after = after;
  };
  auto r = Make(o);
  State s = *source_.Get().state;
  s.pods["x/c1"] = ClientPod(1);
  source_.Set(s);
  ASSERT_TRUE(r->SyncNow().ok());
  const nft::Program old_program = *compiler::Compile(s, Options().compile);
  // The client leaves: its address is deleted from web's ingress set, a flow to revoke.
  s.pods.erase("x/c1");
  source_.Set(s);
  ASSERT_TRUE(r->SyncNow().ok());
  ASSERT_TRUE(seen->called);
  EXPECT_EQ(nft::Canonical(seen->after), Expected(s));
  // The same transaction judged against the whole old program gives the same flows.
  nft::Transaction tx = nft::Diff(old_program, Expected(s));
  EXPECT_FALSE(seen->filters.empty());
  std::vector<conntrack::FlowFilter> want = conntrack::RevocationFilters(old_program, tx);
  EXPECT_EQ(seen->filters, want);
}

TEST_F(ReconcilerTest, ChangeLogCommitFailureKeepsTheOldProgramThenRepairs) {
  auto r = Make(WithChanges(&source_));
  ASSERT_TRUE(r->SyncNow().ok());
  const nft::Program before = Kernel();
  State s = *source_.Get().state;
  s.pods["x/c1"] = ClientPod(1);
  source_.Set(s);
  fake_.FailCommit(1);
  fake_.FailCommit(2);
  EXPECT_FALSE(r->SyncNow().ok());
  EXPECT_EQ(Kernel(), before);
  EXPECT_EQ(nft::Canonical(*r->committed()), before);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(r->status().last_sync_kind, SyncKind::kFull);
  EXPECT_EQ(Kernel(), Expected(s));
  // And back to the change log.
  s.pods["x/c2"] = ClientPod(2);
  source_.Set(s);
  const int calls = source_.change_calls();
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(source_.change_calls(), calls + 1);
  EXPECT_EQ(Kernel(), Expected(s));
}

// WithCommitted hands out the program the kernel holds: nothing before the first commit, the
// newest after a commit through the change log, the kept one after a failed commit.
TEST_F(ReconcilerTest, WithCommittedIsTheProgramTheKernelHolds) {
  auto r = Make(WithChanges(&source_));
  auto canonical = [&r]() -> std::optional<nft::Program> {
    std::optional<nft::Program> out;
    r->WithCommitted([&out](const nft::Program& p) { out = nft::Canonical(p); });
    return out;
  };
  EXPECT_FALSE(canonical().has_value());
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(canonical(), Kernel());
  State s = *source_.Get().state;
  s.pods["x/c1"] = ClientPod(1);
  source_.Set(s);
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(canonical(), Expected(s));
  const nft::Program kept = Kernel();
  s.pods["x/c2"] = ClientPod(2);
  source_.Set(s);
  fake_.FailCommit(1);
  fake_.FailCommit(2);
  EXPECT_FALSE(r->SyncNow().ok());
  EXPECT_EQ(canonical(), kept);
}

}  // namespace
}  // namespace netpol::agent
