// Reconciler against nft::FakeBackend: full replace at start, incremental syncs, coalescing,
// failure recovery, drift repair.
#include "agent/reconciler.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "engine/compiler/compiler.h"
#include "engine/model/loader.h"
#include "engine/nft/diff.h"
#include "engine/nft/fake.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

constexpr char kBase[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: client}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
)";

State Load(const std::string& yaml) {
  auto r = LoadYaml(yaml);
  EXPECT_TRUE(r.ok()) << r.status();
  State s;
  if (r.ok()) {
    for (const Object& o : r->objects) Upsert(o, &s);
  }
  return s;
}

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
  }
  Snapshot Get() {
    absl::MutexLock l(&mu_);
    return snap_;
  }

 private:
  absl::Mutex mu_;
  Snapshot snap_;
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
  ReconcilerTest() : source_(Load(kBase)), backend_(&fake_) {}
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

TEST_F(ReconcilerTest, OfferedProgramIsCommitted) {
  auto r = Make();
  ASSERT_TRUE(r->SyncNow().ok());
  State s = *source_.Get().state;
  s.pods["x/c1"] = ClientPod(1);
  source_.Set(s);
  auto program = compiler::Compile(s, Options().compile);
  ASSERT_TRUE(program.ok());
  r->Offer(source_.Get().generation, std::make_shared<const nft::Program>(*program));
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_EQ(*r->committed(), *program);
  EXPECT_EQ(Kernel(), nft::Canonical(*program));
}

TEST_F(ReconcilerTest, PlanIsFullBeforeTheFirstSyncThenADiff) {
  auto r = Make();
  nft::Program p = Expected(*source_.Get().state);
  nft::Transaction full = r->Plan(p);
  EXPECT_NE(full.ToNftText().find("delete table"), std::string::npos) << full.ToNftText();
  ASSERT_TRUE(r->SyncNow().ok());
  EXPECT_TRUE(r->Plan(*r->committed()).empty());
}

}  // namespace
}  // namespace netpol::agent
