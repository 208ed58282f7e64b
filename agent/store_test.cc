// Store: durability format, round trips, refusal of damaged files, generations, the journal
// (replay, torn and corrupt records, interrupted compaction) and ChangesBetween.
#include "agent/store.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/changes.h"
#include "agent/testing/fixtures.h"
#include "engine/model/loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

using ::testing::HasSubstr;

State SampleState() { return fixtures::LoadState(fixtures::kSample); }

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fixtures::MakeTempDir("netpol-store-test-");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override { fixtures::RemoveTree(dir_); }
  std::string ReadFile(const std::string& name = "state.pb") {
    std::ifstream in(dir_ + "/" + name, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void WriteFile(const std::string& data, const std::string& name = "state.pb") {
    std::ofstream out(dir_ + "/" + name, std::ios::trunc | std::ios::binary);
    out << data;
  }
  std::string Journal() { return ReadFile(Store::kJournalName); }
  void WriteJournal(const std::string& data) { WriteFile(data, Store::kJournalName); }
  std::string dir_;
};

// Every key of `a` and `b`: a Change::touched that names more than changed (allowed).
ChangedKeys AllKeys(const State& a, const State& b) {
  ChangedKeys out;
  for (const State* s : {&a, &b}) {
    for (const auto& [k, v] : s->namespaces) out.namespaces.insert(k);
    for (const auto& [k, v] : s->pods) out.pods.insert(k);
    for (const auto& [k, v] : s->policies) out.policies.insert(k);
    for (const auto& [k, v] : s->cluster_policies) out.cluster_policies.insert(k);
    for (const auto& [k, v] : s->nodes) out.nodes.insert(k);
  }
  return out;
}

Store::Mutation Replace(State s, uint64_t n = 1) {
  return [s, n](const State& base) -> absl::StatusOr<std::optional<Store::Change>> {
    return Store::Change(s, n, AllKeys(base, s));
  };
}

TEST_F(StoreTest, MissingFileIsEmptyGenerationZero) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Current().generation, 0u);
  EXPECT_TRUE((*store)->Current().state->pods.empty());
}

TEST_F(StoreTest, EncodeDecodeRoundTripsEveryField) {
  State s = SampleState();
  ASSERT_FALSE(s.policies.empty());
  s.policies[s.policies.begin()->first].log_allowed = true;  // the one annotation the model keeps
  auto decoded = Store::Decode(Store::Encode(s, 42));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->second, 42u);
  EXPECT_TRUE(decoded->first == s);
}

TEST_F(StoreTest, ClusterNetworkPoliciesAndNodesPersistThroughJournalAndSnapshot) {
  const State cluster = fixtures::LoadState(fixtures::kClusterSample);
  ASSERT_EQ(cluster.cluster_policies.size(), 2u);
  ASSERT_EQ(cluster.nodes.size(), 2u);
  State both = SampleState();
  for (const Object& o : ObjectsOf(cluster)) Upsert(o, &both);
  auto decoded = Store::Decode(Store::Encode(both, 7));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(decoded->first == both);

  // Journal records: created with touched keys, changed, one of each kind deleted, each a
  // record of its own; reopening replays them.
  State changed = both;
  ClusterNetworkPolicy guard = changed.cluster_policies.find("guard")->second;
  guard.priority = 11;
  changed.cluster_policies.insert_or_assign("guard", guard);
  Node n2 = changed.nodes.find("n2")->second;
  n2.labels["zone"] = "b";
  changed.nodes.insert_or_assign("n2", n2);
  State deleted = changed;
  deleted.cluster_policies.erase("isolate");
  deleted.nodes.erase("n1");
  {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    ChangedKeys created;
    created.cluster_policies = {"guard", "isolate"};
    created.nodes = {"n1", "n2"};
    auto snap = (*store)->Update(
        [&](const State& base) -> absl::StatusOr<std::optional<Store::Change>> {
          State next = base;
          for (const Object& o : ObjectsOf(cluster)) Upsert(o, &next);
          return Store::Change{next, 4, created};
        });
    ASSERT_TRUE(snap.ok()) << snap.status();
    ASSERT_TRUE((*store)->Update(Replace(both)).ok());      // every key named: the pods and policies
    ASSERT_TRUE((*store)->Update(Replace(changed)).ok());   // guard and n2 change
    ASSERT_TRUE((*store)->Update(Replace(deleted)).ok());   // isolate and n1 go
    auto keys = (*store)->ChangesBetween(2, 4);
    ASSERT_TRUE(keys.has_value());
    EXPECT_EQ(keys->cluster_policies, (std::set<std::string>{"guard", "isolate"}));
    EXPECT_EQ(keys->nodes, (std::set<std::string>{"n1", "n2"}));
    EXPECT_TRUE(keys->pods.empty());
    EXPECT_EQ((*store)->compactions(), 0u);
  }
  auto reopened = Store::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Current().generation, 4u);
  EXPECT_TRUE(*(*reopened)->Current().state == deleted);
  EXPECT_EQ((*reopened)->Current().state->cluster_policies.find("guard")->second.priority, 11);
}

TEST_F(StoreTest, UpdatePersistsBeforePublishingAndReopens) {
  State s = SampleState();
  {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok());
    auto snap = (*store)->Update(Replace(s, 3));
    ASSERT_TRUE(snap.ok()) << snap.status();
    EXPECT_EQ(snap->generation, 1u);
    EXPECT_EQ(snap->changes, 3u);
    // The journal holds the change as soon as Update returns: a copy of the directory taken
    // now (as a crash would leave it) opens at generation 1.
    const std::string copy = dir_ + "/copy";
    ASSERT_EQ(mkdir(copy.c_str(), 0700), 0);
    std::ofstream(copy + "/state.pb", std::ios::binary) << ReadFile();
    std::ofstream(copy + "/state.journal", std::ios::binary) << Journal();
    auto copied = Store::Open(copy);
    ASSERT_TRUE(copied.ok()) << copied.status();
    EXPECT_EQ((*copied)->Current().generation, 1u);
    EXPECT_TRUE(*(*copied)->Current().state == s);
    for (const char* name : {"/state.pb", "/state.journal"}) {
      struct stat st;
      ASSERT_EQ(stat((dir_ + name).c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 0777, 0600) << name;
    }
    EXPECT_NE(access((dir_ + "/state.pb.tmp").c_str(), F_OK), 0);
  }
  auto reopened = Store::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Current().generation, 1u);
  EXPECT_TRUE(*(*reopened)->Current().state == s);
}

TEST_F(StoreTest, NoChangeKeepsGeneration) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  auto snap = (*store)->Update([](const State&) -> absl::StatusOr<std::optional<Store::Change>> {
    return std::nullopt;
  });
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->generation, 0u);
  EXPECT_EQ(Journal(), "netpol-journal 1\n");
}

TEST_F(StoreTest, MutationErrorChangesNothing) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
  std::string before = ReadFile() + Journal();
  auto snap = (*store)->Update([](const State&) -> absl::StatusOr<std::optional<Store::Change>> {
    return absl::InvalidArgumentError("networkpolicy x/y: spec.podSelector: bad");
  });
  EXPECT_EQ(snap.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->Current().generation, 1u);
  EXPECT_EQ(ReadFile() + Journal(), before);
}

TEST_F(StoreTest, WriteFailureKeepsPreviousGeneration) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  const std::string before = Journal();
  // A file size limit just past the journal's end cuts the record short (EFBIG).
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = before.size() + 30;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  auto snap = (*store)->Update(Replace(SampleState()));
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  EXPECT_FALSE(snap.ok());
  EXPECT_EQ((*store)->Current().generation, 0u);
  EXPECT_TRUE((*store)->Current().state->pods.empty());
  // The partial record was taken back: the next change follows the header directly.
  EXPECT_EQ(Journal(), before);
  ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
  store->reset();
  auto reopened = Store::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Current().generation, 1u);
  EXPECT_TRUE(*(*reopened)->Current().state == SampleState());
}

// With sync hooks the next generation is handed out once its record is written, before the
// fdatasync; when that fails the record is taken back, the hooks hear of it before Update
// returns, and the store stays at the previous generation.
TEST_F(StoreTest, SyncHooksSeeTheRecordBeforeItsFsyncAndItsFailure) {
  struct Seen {
    std::vector<uint64_t> written, failed;
    bool written_before_fsync = false;
    int fail_next = 0;
  };
  auto seen = std::make_shared<Seen>();
  Store::Options options;
  options.fdatasync = [seen](int fd) {
    seen->written_before_fsync = !seen->written.empty();
    if (seen->fail_next > 0) {
      --seen->fail_next;
      errno = EIO;
      return -1;
    }
    return ::fdatasync(fd);
  };
  auto store = Store::Open(dir_, options);
  ASSERT_TRUE(store.ok()) << store.status();
  Store::SyncHooks hooks;
  hooks.written = [seen, s = store->get()](const Snapshot& next, const ChangedKeys& keys) {
    // Not visible yet: readers still see the previous generation.
    EXPECT_EQ(s->Current().generation + 1, next.generation);
    EXPECT_FALSE(keys.pods.empty());
    seen->written.push_back(next.generation);
  };
  hooks.failed = [seen](uint64_t generation) { seen->failed.push_back(generation); };
  (*store)->set_sync_hooks(hooks);
  const std::string journal = Journal();

  seen->fail_next = 1;  // the record's fdatasync fails; taking it back succeeds
  auto failed = (*store)->Update(Replace(SampleState()));
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("fsync"));
  EXPECT_TRUE(seen->written_before_fsync);
  EXPECT_EQ(seen->written, std::vector<uint64_t>{1});
  EXPECT_EQ(seen->failed, std::vector<uint64_t>{1});
  EXPECT_EQ((*store)->Current().generation, 0u);
  EXPECT_TRUE((*store)->Current().state->pods.empty());
  EXPECT_EQ(Journal(), journal);
  EXPECT_FALSE((*store)->ChangesBetween(0, 1).has_value());

  auto stored = (*store)->Update(Replace(SampleState()));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->generation, 1u);
  EXPECT_EQ(seen->written, (std::vector<uint64_t>{1, 1}));
  EXPECT_EQ(seen->failed, std::vector<uint64_t>{1});
  store->reset();
  auto reopened = Store::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Current().generation, 1u);
  EXPECT_TRUE(*(*reopened)->Current().state == SampleState());
}

TEST_F(StoreTest, SnapshotWriteFailureDuringCompactionKeepsTheChange) {
  Store::Options every;
  every.compact_fraction = 0;
  every.journal_min_bytes = 0;
  auto store = Store::Open(dir_, every);
  ASSERT_TRUE(store.ok());
  // A directory where the snapshot's temp file must go makes compaction fail; the change is
  // in the journal already.
  ASSERT_EQ(mkdir((dir_ + "/state.pb.tmp").c_str(), 0700), 0);
  auto snap = (*store)->Update(Replace(SampleState()));
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ((*store)->compactions(), 0u);
  rmdir((dir_ + "/state.pb.tmp").c_str());
  store->reset();
  auto reopened = Store::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Current().generation, 1u);
  EXPECT_TRUE(*(*reopened)->Current().state == SampleState());
}

struct DamageCase {
  const char* name;
  std::function<std::string(std::string)> damage;
  const char* message;
};

class StoreDamageTest : public StoreTest, public ::testing::WithParamInterface<DamageCase> {};

TEST_P(StoreDamageTest, RefusesToOpen) {
  {
    Store::Options every;  // compact at once: the snapshot holds the objects
    every.compact_fraction = 0;
    every.journal_min_bytes = 0;
    auto store = Store::Open(dir_, every);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
  }
  WriteFile(GetParam().damage(ReadFile()));
  auto store = Store::Open(dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(dir_ + "/state.pb"), std::string::npos)
      << store.status();
  EXPECT_NE(store.status().message().find(GetParam().message), std::string::npos)
      << store.status();
  EXPECT_NE(store.status().message().find("refusing to start"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Damage, StoreDamageTest,
    ::testing::Values(
        DamageCase{"Truncated", [](std::string s) { return s.substr(0, s.size() - 7); },
                   "truncated"},
        DamageCase{"Empty", [](std::string) { return std::string(); }, "not a netpol state file"},
        DamageCase{"FlippedByte",
                   [](std::string s) {
                     s[s.size() / 2 + 20] ^= 0x20;
                     return s;
                   },
                   "checksum"},
        DamageCase{"Garbage", [](std::string) { return std::string("hello world\n"); },
                   "not a netpol state file"},
        DamageCase{"FutureVersion",
                   [](std::string s) { return s.replace(s.find(" 1 "), 3, " 9 "); },
                   "version 9"}),
    [](const ::testing::TestParamInfo<DamageCase>& info) { return info.param.name; });

// Takes CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of this thread's effective capabilities
// while it lives, so that a file's mode binds root too (they stay permitted and come back). A
// process without them (not root) is unchanged.
class ScopedModeBindsRoot {
 public:
  ScopedModeBindsRoot() {
    header_.version = _LINUX_CAPABILITY_VERSION_3;
    header_.pid = 0;
    ok_ = syscall(SYS_capget, &header_, saved_) == 0;
    __user_cap_data_struct less[2] = {saved_[0], saved_[1]};
    less[0].effective &= ~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH));
    ok_ = ok_ && syscall(SYS_capset, &header_, less) == 0;
  }
  ~ScopedModeBindsRoot() { syscall(SYS_capset, &header_, saved_); }
  bool ok() const { return ok_; }

 private:
  __user_cap_header_struct header_;
  __user_cap_data_struct saved_[2] = {};
  bool ok_ = false;
};

TEST_F(StoreTest, UnreadableFileRefused) {
  WriteFile("x");
  ASSERT_EQ(chmod((dir_ + "/state.pb").c_str(), 0), 0);
  ScopedModeBindsRoot mode_binds_root;
  ASSERT_TRUE(mode_binds_root.ok()) << std::strerror(errno);
  const int fd = open((dir_ + "/state.pb").c_str(), O_RDONLY);
  if (fd >= 0) close(fd);
  ASSERT_LT(fd, 0) << "state.pb is still readable";
  EXPECT_FALSE(Store::Open(dir_).ok());
}

TEST_F(StoreTest, StateDirIsAFile) {
  std::string file = dir_ + "/file";
  std::ofstream(file) << "x";
  auto store = Store::Open(file);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("not a directory"), std::string::npos) << store.status();
}

// The state directory as someone else may have prepared it: Open refuses, at once and naming
// the file, instead of hanging on a FIFO, reading /dev/zero until memory runs out, writing
// through a planted link or trusting a directory others may write.
TEST_F(StoreTest, HostileStateDirectoryContentIsRefusedAtOnce) {
  const std::string state = dir_ + "/" + Store::kFileName;
  ASSERT_EQ(::mkfifo(state.c_str(), 0600), 0);
  auto fifo = Store::Open(dir_);
  ASSERT_FALSE(fifo.ok());
  EXPECT_THAT(std::string(fifo.status().message()), HasSubstr(state + ": is a FIFO"));
  ASSERT_EQ(::unlink(state.c_str()), 0);

  ASSERT_EQ(::symlink("/dev/zero", state.c_str()), 0);
  auto zero = Store::Open(dir_);
  ASSERT_FALSE(zero.ok());
  EXPECT_THAT(std::string(zero.status().message()), HasSubstr("is a symbolic link"));
  ASSERT_EQ(::unlink(state.c_str()), 0);

  const std::string journal = dir_ + "/" + Store::kJournalName;
  ASSERT_EQ(::symlink("/dev/zero", journal.c_str()), 0);
  EXPECT_FALSE(Store::Open(dir_).ok());
  ASSERT_EQ(::unlink(journal.c_str()), 0);

  // A link planted at the snapshot's temporary name: the first snapshot is written anyway and
  // the link's target is untouched.
  const std::string victim = dir_ + "-victim";
  std::ofstream(victim) << "keep me";
  ASSERT_EQ(::symlink(victim.c_str(), (state + ".tmp").c_str()), 0);
  {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
  }
  std::ifstream in(victim);
  std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(kept, "keep me");
  std::remove(victim.c_str());

  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  auto open = Store::Open(dir_);
  ASSERT_FALSE(open.ok());
  EXPECT_THAT(std::string(open.status().message()), HasSubstr("writable by its group or others"));
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_TRUE(Store::Open(dir_).ok());
}

// ---- The journal ----

// A seeded stream of Apply and Delete requests over a few namespaces, pods and policies.
class Workload {
 public:
  explicit Workload(uint64_t seed) : x_(seed * 2654435761u + 1) {}
  uint32_t Next(uint32_t n) {
    x_ = x_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(x_ >> 33) % n;
  }
  // One request applied to `base`: its ChangeResult.
  ChangeResult Step(const State& base) {
    const std::string ns = absl::StrCat("ns", Next(3));
    switch (Next(8)) {
      case 0:
        return ApplyObjects(base, fixtures::LoadObjects(absl::StrCat(
                                      "apiVersion: v1\nkind: Namespace\nmetadata: {name: ", ns,
                                      ", labels: {team: t", Next(2), "}}\n")));
      case 1:
      case 2:
      case 3: {
        const uint32_t i = Next(20);
        return ApplyObjects(base, fixtures::LoadObjects(absl::StrCat(
                                      "apiVersion: v1\nkind: Pod\nmetadata: {name: p", i,
                                      ", namespace: ", ns, ", labels: {app: a", Next(3),
                                      "}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.0.", Next(3),
                                      ".", i + 1, "}\n")));
      }
      case 4:
        return ApplyObjects(base, fixtures::LoadObjects(absl::StrCat(
                                      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                                      "metadata: {name: np",
                                      Next(4), ", namespace: ", ns,
                                      "}\nspec:\n  podSelector: {matchLabels: {app: a", Next(3),
                                      "}}\n  ingress: [{ports: [{port: ", 80 + Next(3), "}]}]\n")));
      case 5:
      case 6: {
        v1::ObjectRef ref;
        ref.set_kind(Next(2) ? v1::POD : v1::NETWORK_POLICY);
        ref.set_namespace_(ns);
        ref.set_name(ref.kind() == v1::POD ? absl::StrCat("p", Next(20))
                                           : absl::StrCat("np", Next(4)));
        return *DeleteObjects(base, {ref}, true);
      }
      default: {
        if (Next(3) != 0) return ApplyObjects(base, {});
        v1::ObjectRef ref;  // rarely: a namespace and everything in it
        ref.set_kind(v1::NAMESPACE);
        ref.set_name(ns);
        return *DeleteObjects(base, {ref}, true);
      }
    }
  }

 private:
  uint64_t x_;
};

// Runs `workload` through `store`: Change::touched is the step's Delta, or with `widen` every
// key of both States (the store must still log only what changed).
Store::Mutation Step(Workload* workload, bool widen) {
  return [workload, widen](const State& base) -> absl::StatusOr<std::optional<Store::Change>> {
    ChangeResult r = workload->Step(base);
    if (r.objects_changed == 0) return std::nullopt;
    ChangedKeys touched = widen ? AllKeys(base, r.state) : std::move(r.delta);
    return Store::Change(std::move(r.state), r.objects_changed, std::move(touched));
  };
}

TEST_F(StoreTest, ReplayEqualsStateWithExactAndWidenedDeltasAcrossCompactions) {
  Store::Options small;  // compact often
  small.journal_min_bytes = 2000;
  small.compact_fraction = 0.5;
  const std::string a = dir_ + "/a", b = dir_ + "/b";
  auto sa = Store::Open(a, small);
  auto sb = Store::Open(b);
  ASSERT_TRUE(sa.ok() && sb.ok());
  Workload wa(7), wb(7);
  std::vector<State> states = {State{}};
  uint64_t compactions = 0;
  for (int i = 0; i < 400; ++i) {
    auto ra = (*sa)->Update(Step(&wa, false));
    auto rb = (*sb)->Update(Step(&wb, true));
    ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status() << rb.status();
    ASSERT_EQ(ra->generation, rb->generation);
    ASSERT_TRUE(*ra->state == *rb->state) << "step " << i;
    if (ra->generation == states.size()) {
      const uint64_t g = ra->generation;
      ChangedKeys want = compiler::DiffStates(states.back(), *ra->state);
      EXPECT_FALSE(want.empty());
      EXPECT_EQ((*sa)->ChangesBetween(g - 1, g), want) << "step " << i;
      EXPECT_EQ((*sb)->ChangesBetween(g - 1, g), want) << "step " << i;
      states.push_back(*ra->state);
    }
    if (i % 97 == 96) {  // reopen: snapshot + journal replay give the same State
      compactions += (*sa)->compactions();
      sa->reset();
      sb->reset();
      sa = Store::Open(a, small);
      sb = Store::Open(b);
      ASSERT_TRUE(sa.ok() && sb.ok()) << sa.status() << sb.status();
      EXPECT_EQ((*sa)->Current().generation, states.size() - 1);
      EXPECT_EQ((*sb)->Current().generation, states.size() - 1);
      EXPECT_TRUE(*(*sa)->Current().state == states.back());
      EXPECT_TRUE(*(*sb)->Current().state == states.back());
    }
  }
  EXPECT_GT(compactions + (*sa)->compactions(), 0u);
  EXPECT_EQ((*sb)->compactions(), 0u);
  EXPECT_GT(states.size(), 200u);
  // A range is the union of its generations' keys; one reaching before the last reopen is
  // unknown to `sa` (its log starts at its compacted snapshot) but replayed from `sb`'s
  // journal, which was never compacted.
  const uint64_t g = states.size() - 1;
  ChangedKeys want;
  for (uint64_t k = g - 40; k < g; ++k) want.Merge(compiler::DiffStates(states[k], states[k + 1]));
  EXPECT_EQ((*sb)->ChangesBetween(g - 40, g), want);
  EXPECT_EQ((*sa)->ChangesBetween(g - 40, g), std::nullopt);
}

TEST_F(StoreTest, ChangesBetweenBounds) {
  Store::Options options;
  options.change_log_generations = 50;
  auto store = Store::Open(dir_, options);
  ASSERT_TRUE(store.ok());
  Workload w(3);
  while ((*store)->Current().generation < 5) ASSERT_TRUE((*store)->Update(Step(&w, false)).ok());
  EXPECT_EQ((*store)->ChangesBetween(5, 5), ChangedKeys());
  EXPECT_EQ((*store)->ChangesBetween(5, 6), std::nullopt);  // the future
  EXPECT_EQ((*store)->ChangesBetween(4, 3), std::nullopt);
  ASSERT_TRUE((*store)->ChangesBetween(0, 5).has_value());
  EXPECT_FALSE((*store)->ChangesBetween(0, 5)->empty());
  // Only the last change_log_generations generations are kept.
  while ((*store)->Current().generation < 60) {
    ASSERT_TRUE((*store)->Update(Step(&w, false)).ok());
  }
  const uint64_t g = (*store)->Current().generation;
  EXPECT_TRUE((*store)->ChangesBetween(g - 50, g).has_value());
  EXPECT_EQ((*store)->ChangesBetween(g - 51, g), std::nullopt);
  EXPECT_EQ((*store)->ChangesBetween(0, 1), std::nullopt);
}

TEST_F(StoreTest, ChangeLogKeepsAtMostItsKeyBudget) {
  Store::Options options;
  options.change_log_keys = 2;
  auto store = Store::Open(dir_, options);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());  // 3 keys: over the budget
  EXPECT_EQ((*store)->ChangesBetween(0, 1), std::nullopt);
  EXPECT_EQ((*store)->ChangesBetween(1, 1), ChangedKeys());
  State s = SampleState();
  s.pods[s.pods.begin()->first].labels["app"] = "db";
  ASSERT_TRUE((*store)->Update(Replace(s)).ok());
  auto keys = (*store)->ChangesBetween(1, 2);
  ASSERT_TRUE(keys.has_value());
  EXPECT_EQ(keys->pods, std::set<std::string>{"x/a"});
  EXPECT_EQ(keys->size(), 1u);
  EXPECT_EQ((*store)->ChangesBetween(0, 2), std::nullopt);
}

// Five generations in the journal only; `ends[g]` is where generation g's record ends.
class JournalTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok());
    Workload w(11);
    states_.push_back(State{});
    ends_.push_back((*store)->journal_bytes());
    while ((*store)->Current().generation < 5) {
      auto snap = (*store)->Update(Step(&w, false));
      ASSERT_TRUE(snap.ok()) << snap.status();
      if (snap->generation == states_.size()) {
        states_.push_back(*snap->state);
        ends_.push_back((*store)->journal_bytes());
      }
    }
    journal_ = Journal();
    ASSERT_EQ(journal_.size(), ends_[5]);
  }
  void ExpectOpensAt(uint64_t generation) {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->Current().generation, generation);
    EXPECT_TRUE(*(*store)->Current().state == states_[generation]);
  }
  void ExpectRefused(const std::string& message) {
    auto store = Store::Open(dir_);
    ASSERT_FALSE(store.ok());
    EXPECT_NE(store.status().message().find(dir_ + "/state.journal"), std::string::npos)
        << store.status();
    EXPECT_NE(store.status().message().find(message), std::string::npos) << store.status();
    EXPECT_NE(store.status().message().find("refusing to start"), std::string::npos);
  }
  std::vector<State> states_;
  std::vector<uint64_t> ends_;
  std::string journal_;
};

TEST_F(JournalTest, ReplayGivesEveryGeneration) { ExpectOpensAt(5); }

TEST_F(JournalTest, TornLastRecordIsTruncatedAndWritingContinues) {
  const uint64_t start = ends_[4], size = ends_[5] - ends_[4];
  for (uint64_t keep : {uint64_t{0}, uint64_t{1}, uint64_t{19}, uint64_t{20}, uint64_t{21},
                        size / 2, size - 1}) {
    SCOPED_TRACE(absl::StrCat("keeping ", keep, " of ", size, " bytes"));
    WriteJournal(journal_.substr(0, start + keep));
    ExpectOpensAt(4);
    EXPECT_EQ(Journal().size(), start) << "the torn record is cut off";
  }
  // Writing after the cut: the next record follows generation 4's.
  {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
  }
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Current().generation, 5u);
  EXPECT_TRUE(*(*store)->Current().state == SampleState());
}

TEST_F(JournalTest, ZeroFilledTailIsTorn) {
  WriteJournal(journal_ + std::string(100, '\0'));
  ExpectOpensAt(5);
  EXPECT_EQ(Journal(), journal_);
}

TEST_F(JournalTest, CorruptLastRecordIsTorn) {
  std::string j = journal_;
  j[ends_[4] + 30] ^= 0x01;  // the last record's payload: a partly written sector
  WriteJournal(j);
  ExpectOpensAt(4);
}

TEST_F(JournalTest, CorruptMiddleRecordPayloadRefused) {
  std::string j = journal_;
  j[ends_[2] + 30] ^= 0x01;
  WriteJournal(j);
  ExpectRefused("generation 3): checksum mismatch");
}

TEST_F(JournalTest, CorruptMiddleRecordHeaderRefused) {
  std::string j = journal_;
  j[ends_[2] + 2] ^= 0x40;  // its size
  WriteJournal(j);
  ExpectRefused("header checksum mismatch");
}

TEST_F(JournalTest, MissingMiddleRecordRefused) {
  WriteJournal(journal_.substr(0, ends_[2]) + journal_.substr(ends_[3]));
  ExpectRefused("generation 4 follows 2");
}

TEST_F(JournalTest, BadHeaderRefused) {
  WriteJournal("hello" + journal_);
  ExpectRefused("not a netpol state journal");
  WriteJournal("netpol-journal 9\n");
  ExpectRefused("version");
}

TEST_F(JournalTest, SnapshotBehindTheJournalIsRefused) {
  // The snapshot lost (moved away) while the journal starts later: a gap.
  WriteJournal(journal_.substr(0, 17) + journal_.substr(ends_[1]));
  ExpectRefused("does not follow the snapshot's 0");
}

TEST_F(JournalTest, CompactionInterruptedBeforeTheSnapshotRename) {
  WriteFile("netpol-state 1 99999 00000000\npartial", "state.pb.tmp");
  ExpectOpensAt(5);
}

TEST_F(JournalTest, CompactionInterruptedAfterTheSnapshotRename) {
  // A snapshot at generation 5 or 2 with the whole journal still there: replay skips the
  // records the snapshot holds.
  for (uint64_t g : {5u, 2u}) {
    SCOPED_TRACE(g);
    WriteFile(Store::Encode(states_[g], g));
    WriteJournal(journal_);
    ExpectOpensAt(5);
  }
}

TEST_F(JournalTest, CompactionWritesTheSnapshotAndEmptiesTheJournal) {
  Store::Options every;
  every.compact_fraction = 0;
  every.journal_min_bytes = 0;
  {
    auto store = Store::Open(dir_, every);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
    EXPECT_EQ((*store)->compactions(), 1u);
  }
  EXPECT_EQ(Journal(), "netpol-journal 1\n");
  auto decoded = Store::Decode(ReadFile());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->second, 6u);
  EXPECT_TRUE(decoded->first == SampleState());
}

TEST_F(StoreTest, OpensAStateFileWithoutJournal) {
  // What an agent before the journal wrote: only state.pb.
  WriteFile(Store::Encode(SampleState(), 7));
  {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->Current().generation, 7u);
    EXPECT_TRUE(*(*store)->Current().state == SampleState());
    ASSERT_TRUE((*store)->Update(Replace(State{})).ok());
  }
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Current().generation, 8u);
  EXPECT_TRUE((*store)->Current().state->pods.empty());
}

TEST_F(StoreTest, HintedDeleteOfANamespaceRecordsItsObjects) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
  v1::ObjectRef ref;
  ref.set_kind(v1::NAMESPACE);
  ref.set_name("x");
  auto snap = (*store)->Update([&](const State& base)
                                   -> absl::StatusOr<std::optional<Store::Change>> {
    ChangeResult r = *DeleteObjects(base, {ref}, false);
    ChangedKeys touched;  // the namespace alone covers what went with it
    touched.namespaces.insert("x");
    return Store::Change(std::move(r.state), r.objects_changed, std::move(touched));
  });
  ASSERT_TRUE(snap.ok());
  auto keys = (*store)->ChangesBetween(1, 2);
  ASSERT_TRUE(keys.has_value());
  EXPECT_EQ(keys->namespaces, std::set<std::string>{"x"});
  EXPECT_EQ(keys->pods, std::set<std::string>{"x/a"});
  EXPECT_EQ(keys->policies, std::set<std::string>{"x/allow"});
  store->reset();
  auto reopened = Store::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE(*(*reopened)->Current().state == State{});
}

TEST_F(StoreTest, HealthCountsJournalRecordsSinceTheLastCompaction) {
  {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
    ASSERT_TRUE((*store)->Update(Replace(State{})).ok());
    ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
    EXPECT_EQ((*store)->Health().journal_records, 3u);
  }
  // Counted again from the file at start; the snapshot's time is the file's.
  Store::Options every;
  every.compact_fraction = 0;
  every.journal_min_bytes = 0;
  auto store = Store::Open(dir_, every);
  ASSERT_TRUE(store.ok());
  DatastoreHealth h = (*store)->Health();
  EXPECT_EQ(h.kind, DatastoreHealth::Kind::kEmbedded);
  EXPECT_TRUE(h.healthy);
  EXPECT_EQ(h.directory, dir_);
  EXPECT_EQ(h.journal_records, 3u);
  EXPECT_EQ(h.journal_bytes, Journal().size());
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/state.pb").c_str(), &st), 0);
  EXPECT_EQ(h.last_compaction_time, absl::TimeFromTimespec(st.st_mtim));
  const absl::Time opened_snapshot = h.last_compaction_time;
  // A change that compacts: the journal holds no record after it.
  ASSERT_TRUE((*store)->Update(Replace(State{})).ok());
  h = (*store)->Health();
  EXPECT_EQ(h.compactions, 1u);
  EXPECT_EQ(h.journal_records, 0u);
  EXPECT_EQ(h.journal_bytes, Journal().size());
  EXPECT_GE(h.last_compaction_time, opened_snapshot);
  EXPECT_TRUE(h.last_compaction_error.ok());
  // A compaction that fails (its temp file's place taken) is reported; the change is stored.
  ASSERT_EQ(mkdir((dir_ + "/state.pb.tmp").c_str(), 0700), 0);
  ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
  h = (*store)->Health();
  EXPECT_TRUE(h.healthy);
  EXPECT_FALSE(h.last_compaction_error.ok());
  EXPECT_EQ(h.compactions, 1u);
  EXPECT_EQ(h.journal_records, 1u);
  rmdir((dir_ + "/state.pb.tmp").c_str());
}

}  // namespace
}  // namespace netpol::agent
