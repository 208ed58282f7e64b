// The etcd datastore against a real etcd (Debian's /usr/bin/etcd on 127.0.0.1): list and
// watch, one guarded transaction per write, concurrent writers on two "nodes", etcd down and
// back, compaction past a watch, values that do not decode.
#include "agent/etcd/datastore.h"

#include <sys/stat.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/etcd/etcd_process.h"
#include "agent/testing/fixtures.h"
#include "engine/model/loader.h"
#include "engine/util/skip_or_fail.h"
#include "gtest/gtest.h"

namespace netpol::agent::etcd {
namespace {

constexpr char kObjects[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {n: "0"}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.244.1.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: db}}
spec: {nodeName: node-2}
status: {podIPs: [{ip: 10.244.2.2}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x, annotations: {netpol.io/log-allowed: "true"}}
spec: {podSelector: {}}
)";

std::vector<Object> Objects(const std::string& yaml = kObjects) {
  return fixtures::LoadObjects(yaml);
}

// A mutation upserting `objects`.
Datastore::Mutation Apply(std::vector<Object> objects) {
  return [objects](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
    Datastore::Change c(base, 0, ChangedKeys());
    for (const Object& o : objects) {
      Upsert(o, &c.state);
      ++c.objects_changed;
      if (const Namespace* ns = o.AsNamespace()) {
        c.touched.namespaces.insert(ns->name);
      } else if (const Pod* pod = o.AsPod()) {
        c.touched.pods.insert(pod->Key());
      } else if (const NetworkPolicy* np = o.AsNetworkPolicy()) {
        c.touched.policies.insert(np->Key());
      } else if (const ClusterNetworkPolicy* cnp = o.AsClusterNetworkPolicy()) {
        c.touched.cluster_policies.insert(cnp->name);
      } else {
        c.touched.nodes.insert(o.AsNode()->name);
      }
    }
    return c;
  };
}

template <typename Pred>
bool Eventually(Pred pred, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return pred();
}

class DatastoreTest : public ::testing::Test {
 protected:
  void TearDown() override {
    raw_.reset();
    etcd_.reset();
    fixtures::RemoveTree(dir_);
  }

  void SetUp() override {
    dir_ = fixtures::MakeTempDir("etcd");
    ASSERT_FALSE(dir_.empty());
    absl::StatusOr<std::unique_ptr<EtcdProcess>> etcd = EtcdProcess::Start(dir_);
    if (absl::IsFailedPrecondition(etcd.status())) NETPOL_SKIP_OR_FAIL(etcd.status());
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = *std::move(etcd);
    raw_ = NewStore();  // its client writes "by hand", as etcdctl would
  }

  DatastoreOptions Options() {
    DatastoreOptions o;
    o.client.endpoints = {etcd_->endpoint()};
    o.client.request_timeout = absl::Seconds(2);
    o.client.keepalive_time = absl::Seconds(1);
    o.client.keepalive_timeout = absl::Seconds(1);
    o.write_timeout = absl::Seconds(10);
    o.retry_min = absl::Milliseconds(50);
    o.retry_max = absl::Milliseconds(500);
    return o;
  }

  std::unique_ptr<EtcdDatastore> NewStore(DatastoreOptions o) {
    absl::StatusOr<std::unique_ptr<EtcdDatastore>> ds = EtcdDatastore::Create(o);
    EXPECT_TRUE(ds.ok()) << ds.status();
    return ds.ok() ? *std::move(ds) : nullptr;
  }
  std::unique_ptr<EtcdDatastore> NewStore() { return NewStore(Options()); }

  std::unique_ptr<EtcdDatastore> Started(DatastoreOptions o) {
    std::unique_ptr<EtcdDatastore> ds = NewStore(o);
    ds->Start();
    EXPECT_TRUE(ds->WaitSynced(absl::Seconds(20)));
    return ds;
  }
  std::unique_ptr<EtcdDatastore> Started() { return Started(Options()); }

  // Puts a raw value; returns the revision.
  int64_t Put(const std::string& key, const std::string& value) {
    etcdserverpb::TxnRequest txn;
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value);
    auto r = raw_->client()->Txn(txn);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->header().revision() : 0;
  }
  int64_t Delete(const std::string& key) {
    etcdserverpb::TxnRequest txn;
    txn.add_success()->mutable_request_delete_range()->set_key(key);
    auto r = raw_->client()->Txn(txn);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->header().revision() : 0;
  }
  etcdserverpb::RangeResponse Get(const std::string& key, bool prefix = false) {
    etcdserverpb::RangeRequest req;
    req.set_key(key);
    if (prefix) req.set_range_end(PrefixEnd(key));
    auto r = raw_->client()->Range(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : etcdserverpb::RangeResponse();
  }

  std::string dir_;
  std::unique_ptr<EtcdProcess> etcd_;
  std::unique_ptr<EtcdDatastore> raw_;
};

TEST_F(DatastoreTest, ListsThenFollowsTheWatchWithRevisionsAsGenerations) {
  const std::vector<Object> objects = Objects();
  KeyLayout l = *KeyLayout::Create(kDefaultPrefix);
  Put(l.KeyOf(objects[0]), KeyLayout::Encode(objects[0]));
  Put(l.KeyOf(objects[1]), KeyLayout::Encode(objects[1]));
  const int64_t listed = Put("/netpol/v1/pods/x/broken", "kind: Pod\nmetadata: {name: other}\n");
  Put("/elsewhere/key", "not ours");

  std::unique_ptr<EtcdDatastore> ds = Started();
  Snapshot s = ds->Current();
  EXPECT_GE(s.generation, static_cast<uint64_t>(listed + 1));  // the list's revision
  EXPECT_EQ(s.state->namespaces.size(), 1u);
  ASSERT_EQ(s.state->pods.size(), 1u) << "the broken key is left out";
  EXPECT_EQ(ds->status().invalid_keys, 1);

  // A policy put by hand arrives with its revision as the generation.
  const int64_t rev = Put(l.KeyOf(objects[3]), KeyLayout::Encode(objects[3]));
  ASSERT_TRUE(Eventually([&] { return ds->Current().generation == static_cast<uint64_t>(rev); }));
  ASSERT_EQ(ds->Current().state->policies.count("x/deny"), 1u);
  EXPECT_TRUE(ds->Current().state->policies.at("x/deny").log_allowed);  // its annotation kept

  // Fixing the broken key brings it in; deleting the pod takes it out.
  Put("/netpol/v1/pods/x/broken", "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\n");
  const int64_t del = Delete(l.KeyOf(objects[1]));
  ASSERT_TRUE(Eventually([&] { return ds->Current().generation == static_cast<uint64_t>(del); }));
  EXPECT_EQ(ds->Current().state->pods.count("x/broken"), 1u);
  EXPECT_EQ(ds->Current().state->pods.count("x/a"), 0u);
  EXPECT_EQ(ds->status().invalid_keys, 0);
}

TEST_F(DatastoreTest, UpdateIsOneTransactionAndReachesTheOtherNode) {
  std::unique_ptr<EtcdDatastore> a = Started();
  std::unique_ptr<EtcdDatastore> b = Started();
  absl::StatusOr<Snapshot> s = a->Update(Apply(Objects()));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->state->pods.size(), 2u);
  // Every key carries the same mod_revision: the generation returned.
  etcdserverpb::RangeResponse all = Get("/netpol/v1/", true);
  ASSERT_EQ(all.kvs_size(), 4);
  for (const auto& kv : all.kvs()) {
    EXPECT_EQ(kv.mod_revision(), static_cast<int64_t>(s->generation)) << kv.key();
  }
  ASSERT_TRUE(Eventually([&] { return b->Current().generation == s->generation; }));
  EXPECT_TRUE(*b->Current().state == *s->state);

  // No change: no transaction, same generation.
  absl::StatusOr<Snapshot> same = b->Update(Apply(Objects()));
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->generation, s->generation);
  EXPECT_EQ(Get("/netpol/v1/", true).header().revision(), static_cast<int64_t>(s->generation));
}

TEST_F(DatastoreTest, ClusterNetworkPoliciesAndNodesAreKeysBesideTheOtherKinds) {
  std::unique_ptr<EtcdDatastore> a = Started();
  std::unique_ptr<EtcdDatastore> b = Started();
  std::vector<Object> objects = Objects();
  for (Object& o : fixtures::LoadObjects(fixtures::kClusterSample)) objects.push_back(o);
  absl::StatusOr<Snapshot> s = a->Update(Apply(objects));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->state->cluster_policies.size(), 2u);
  EXPECT_EQ(s->state->nodes.size(), 2u);
  for (const char* key : {"/netpol/v1/clusternetworkpolicies/guard",
                          "/netpol/v1/clusternetworkpolicies/isolate", "/netpol/v1/nodes/n1",
                          "/netpol/v1/nodes/n2"}) {
    etcdserverpb::RangeResponse r = Get(key);
    ASSERT_EQ(r.kvs_size(), 1) << key;
    EXPECT_EQ(r.kvs(0).mod_revision(), static_cast<int64_t>(s->generation)) << key;
  }
  // The other node's watch delivers them.
  ASSERT_TRUE(Eventually([&] { return b->Current().generation == s->generation; }));
  EXPECT_TRUE(*b->Current().state == *s->state);

  // Written by hand (as etcdctl would): a changed CNP, a deleted node, an invalid CNP left out.
  ClusterNetworkPolicy guard = s->state->cluster_policies.find("guard")->second;
  guard.priority = 99;
  Put("/netpol/v1/clusternetworkpolicies/guard", KeyLayout::Encode(Object{guard}));
  Put("/netpol/v1/clusternetworkpolicies/bad",
      "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
      "metadata: {name: bad}\nspec: {tier: Middle, priority: 1, subject: {namespaces: {}}}\n");
  const int64_t del = Delete("/netpol/v1/nodes/n2");
  ASSERT_TRUE(Eventually([&] { return b->Current().generation == static_cast<uint64_t>(del); }));
  const Snapshot seen = b->Current();
  EXPECT_EQ(seen.state->cluster_policies.find("guard")->second.priority, 99);
  EXPECT_EQ(seen.state->cluster_policies.count("bad"), 0u);
  EXPECT_EQ(seen.state->nodes.count("n2"), 0u);
  EXPECT_EQ(seen.state->nodes.count("n1"), 1u);
  EXPECT_EQ(b->status().invalid_keys, 1);

  // A node that starts now lists the same State; deleting through the datastore removes keys.
  std::unique_ptr<EtcdDatastore> c = Started();
  EXPECT_TRUE(*c->Current().state == *seen.state);
  absl::StatusOr<Snapshot> gone =
      c->Update([](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
        ChangedKeys touched;
        touched.cluster_policies = {"isolate"};
        touched.nodes = {"n1"};
        Datastore::Change ch(base, 2, touched);
        ch.state.cluster_policies.erase("isolate");
        ch.state.nodes.erase("n1");
        return ch;
      });
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_EQ(Get("/netpol/v1/clusternetworkpolicies/isolate").kvs_size(), 0);
  EXPECT_EQ(Get("/netpol/v1/nodes/", true).kvs_size(), 0);
  EXPECT_EQ(Get("/netpol/v1/pods/", true).kvs_size(), 2);
}

TEST_F(DatastoreTest, DeletingANamespaceRemovesItsObjectsInOneRevision) {
  std::unique_ptr<EtcdDatastore> a = Started();
  ASSERT_TRUE(a->Update(Apply(Objects())).ok());
  absl::StatusOr<Snapshot> s =
      a->Update([](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
        // Every key named (the cascade's too): the same range deletes.
        ChangedKeys touched;
        touched.namespaces = {"x"};
        touched.pods = {"x/a", "x/b"};
        touched.policies = {"x/deny"};
        Datastore::Change c(base, 4, touched);
        c.state.namespaces.erase("x");
        c.state.pods.clear();
        c.state.policies.clear();
        return c;
      });
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->state->pods.empty());
  EXPECT_EQ(Get("/netpol/v1/", true).kvs_size(), 0);
  EXPECT_EQ(Get("/netpol/v1/", true).header().revision(), static_cast<int64_t>(s->generation));
}

// The same deletion with the touched keys given: the transaction is built from those keys and
// the objects of the deleted namespace, and removes the same keys.
TEST_F(DatastoreTest, DeletingANamespaceWithTouchedKeysRemovesItsObjects) {
  std::unique_ptr<EtcdDatastore> a = Started();
  ASSERT_TRUE(a->Update(Apply(Objects())).ok());
  absl::StatusOr<Snapshot> s =
      a->Update([](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
        ChangedKeys touched;
        touched.namespaces.insert("x");  // covers the pods and policies that went with it
        Datastore::Change c(base, 4, touched);
        c.state.namespaces.erase("x");
        c.state.pods.erase("x/a");
        c.state.pods.erase("x/b");
        c.state.policies.erase("x/deny");
        return c;
      });
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->state->pods.empty());
  EXPECT_EQ(Get("/netpol/v1/", true).kvs_size(), 0);

  // One pod changed, named in the touched keys: only it is written.
  ASSERT_TRUE(a->Update(Apply(Objects())).ok());
  absl::StatusOr<Snapshot> one =
      a->Update([](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
        ChangedKeys touched;
        touched.pods.insert("x/a");
        Datastore::Change c(base, 1, touched);
        c.state.pods["x/a"].labels["app"] = "db";
        return c;
      });
  ASSERT_TRUE(one.ok()) << one.status();
  etcdserverpb::RangeResponse all = Get("/netpol/v1/", true);
  ASSERT_EQ(all.kvs_size(), 4);
  for (const auto& kv : all.kvs()) {
    EXPECT_EQ(kv.mod_revision() == static_cast<int64_t>(one->generation),
              kv.key() == "/netpol/v1/pods/x/a")
        << kv.key();
  }
}

// Another node's writes reach this one's reconciler as the keys of the watch's events.
TEST_F(DatastoreTest, ChangesBetweenHoldTheKeysOfTheWatchEvents) {
  std::unique_ptr<EtcdDatastore> a = Started();
  std::unique_ptr<EtcdDatastore> b = Started();
  const uint64_t listed = b->Current().generation;
  EXPECT_EQ(b->ChangesBetween(listed, listed), ChangedKeys());
  EXPECT_EQ(b->ChangesBetween(listed - 1, listed), std::nullopt) << "before the list";

  absl::StatusOr<Snapshot> s = a->Update(Apply(Objects()));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(Eventually([&] { return b->Current().generation == s->generation; }));
  ChangedKeys all;
  all.namespaces = {"x"};
  all.pods = {"x/a", "x/b"};
  all.policies = {"x/deny"};
  EXPECT_EQ(b->ChangesBetween(listed, s->generation), all);

  KeyLayout l = *KeyLayout::Create(kDefaultPrefix);
  const int64_t del = Delete(l.KeyOf(Objects()[1]));
  ASSERT_TRUE(Eventually([&] { return b->Current().generation == static_cast<uint64_t>(del); }));
  ChangedKeys pod;
  pod.pods = {"x/a"};
  EXPECT_EQ(b->ChangesBetween(s->generation, del), pod);
  EXPECT_EQ(b->ChangesBetween(listed, del), all) << "both writes";
  EXPECT_EQ(b->ChangesBetween(del, del + 100), std::nullopt) << "not published yet";
}

// Read-modify-write from two nodes at once: every increment survives.
TEST_F(DatastoreTest, ConcurrentWritersLoseNoUpdate) {
  std::unique_ptr<EtcdDatastore> a = Started();
  std::unique_ptr<EtcdDatastore> b = Started();
  ASSERT_TRUE(a->Update(Apply(Objects())).ok());
  ASSERT_TRUE(Eventually([&] { return b->Current().state->namespaces.count("x") == 1; }));
  auto increment = [](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
    ChangedKeys touched;
    touched.namespaces.insert("x");
    Datastore::Change c(base, 1, touched);
    Namespace& ns = c.state.namespaces["x"];
    int n = 0;
    EXPECT_TRUE(absl::SimpleAtoi(ns.labels["n"], &n));
    ns.labels["n"] = absl::StrCat(n + 1);
    return c;
  };
  constexpr int kEach = 15;
  std::atomic<int> applied{0};
  auto writer = [&](EtcdDatastore* ds) {
    for (int i = 0; i < kEach; ++i) {
      absl::StatusOr<Snapshot> s = ds->Update(increment);
      if (s.ok()) {
        ++applied;
      } else {
        // Only a write that gave up may be missing, and it says so.
        EXPECT_EQ(s.status().code(), absl::StatusCode::kAborted) << s.status();
      }
    }
  };
  std::thread ta(writer, a.get()), tb(writer, b.get());
  ta.join();
  tb.join();
  EXPECT_GE(applied.load(), 2 * kEach - 1);
  const int64_t last = Get("/netpol/v1/", true).header().revision();
  for (EtcdDatastore* ds : {a.get(), b.get()}) {
    ASSERT_TRUE(Eventually([&] { return ds->Current().generation == static_cast<uint64_t>(last); }));
    // Every acknowledged increment is there, and nothing else.
    EXPECT_EQ(ds->Current().state->namespaces.at("x").labels.at("n"), absl::StrCat(applied.load()));
  }
  std::cerr << "conflicts: " << a->status().conflicts + b->status().conflicts << "\n";
}

// Two writers replace the same two objects with different content at once: the result is one
// writer's version of both, the same on both nodes.
TEST_F(DatastoreTest, ConflictingWritersEndWithOneWholeVersionEverywhere) {
  std::unique_ptr<EtcdDatastore> a = Started();
  std::unique_ptr<EtcdDatastore> b = Started();
  ASSERT_TRUE(a->Update(Apply(Objects())).ok());
  ASSERT_TRUE(Eventually([&] { return b->Current().state->pods.size() == 2; }));
  for (int round = 0; round < 5; ++round) {
    auto version = [round](const std::string& who) {
      return Objects(absl::StrCat(
          "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {v: ", who,
          round, "}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, "
          "labels: {v: ", who, round, "}}\n"));
    };
    std::thread ta([&] { EXPECT_TRUE(a->Update(Apply(version("a"))).ok()); });
    std::thread tb([&] { EXPECT_TRUE(b->Update(Apply(version("b"))).ok()); });
    ta.join();
    tb.join();
    const int64_t last = Get("/netpol/v1/", true).header().revision();
    for (EtcdDatastore* ds : {a.get(), b.get()}) {
      ASSERT_TRUE(Eventually([&] { return ds->Current().generation == static_cast<uint64_t>(last); }));
    }
    const State& sa = *a->Current().state;
    EXPECT_TRUE(sa == *b->Current().state) << "round " << round;
    const std::string va = sa.pods.at("x/a").labels.at("v");
    EXPECT_EQ(sa.pods.at("x/b").labels.at("v"), va) << "half of each writer, round " << round;
    EXPECT_TRUE(va == absl::StrCat("a", round) || va == absl::StrCat("b", round)) << va;
  }
}

TEST_F(DatastoreTest, EtcdDownRefusesWritesKeepsStateAndRecovers) {
  std::unique_ptr<EtcdDatastore> a = Started();
  std::unique_ptr<EtcdDatastore> b = Started();
  absl::StatusOr<Snapshot> before = a->Update(Apply(Objects()));
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(Eventually([&] { return b->Current().generation == before->generation; }));
  DatastoreHealth h = a->Health();
  EXPECT_EQ(h.kind, DatastoreHealth::Kind::kEtcd);
  EXPECT_TRUE(h.healthy);
  EXPECT_TRUE(h.watch_connected);
  EXPECT_EQ(h.endpoints, etcd_->endpoint());
  EXPECT_EQ(h.watch_endpoint, etcd_->endpoint());
  EXPECT_TRUE(h.watch_error.ok());
  EXPECT_TRUE(h.last_write_error.ok());
  EXPECT_EQ(h.revision, static_cast<int64_t>(before->generation));

  etcd_->Kill();
  ASSERT_TRUE(Eventually([&] { return !a->status().watching; }));
  absl::StatusOr<Snapshot> refused = a->Update(Apply(Objects(
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: yy}\n")));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_NE(refused.status().message().find("the change was not stored"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find(absl::StrCat("revision ", before->generation)),
            std::string::npos)
      << refused.status();
  // The last state stays published.
  EXPECT_EQ(a->Current().generation, before->generation);
  EXPECT_TRUE(*a->Current().state == *before->state);
  EXPECT_FALSE(a->status().last_error.ok());
  h = a->Health();
  EXPECT_FALSE(h.healthy);
  EXPECT_FALSE(h.watch_connected);
  EXPECT_EQ(h.watch_endpoint, "");
  EXPECT_FALSE(h.watch_error.ok());
  EXPECT_EQ(h.last_write_error, refused.status());
  EXPECT_TRUE(b->Health().last_write_error.ok()) << "b wrote nothing since its success";

  ASSERT_TRUE(etcd_->Restart().ok());
  absl::StatusOr<Snapshot> after;
  ASSERT_TRUE(Eventually([&] {
    after = b->Update(Apply(Objects("apiVersion: v1\nkind: Namespace\nmetadata: {name: yy}\n")));
    return after.ok();
  }));
  ASSERT_TRUE(Eventually([&] { return a->Current().generation == after->generation; }));
  EXPECT_EQ(a->Current().state->namespaces.count("yy"), 1u);
  EXPECT_TRUE(a->status().last_error.ok());
  EXPECT_GE(a->status().watch_losses, 1);
  // Connected again: healthy; the failed write stays reported until a write succeeds.
  ASSERT_TRUE(Eventually([&] { return a->Health().healthy; }));
  EXPECT_EQ(a->Health().last_write_error, refused.status());
  ASSERT_TRUE(a->Update(Apply(Objects("apiVersion: v1\nkind: Namespace\nmetadata: {name: zz}\n")))
                  .ok());
  h = a->Health();
  EXPECT_TRUE(h.healthy);
  EXPECT_TRUE(h.last_write_error.ok());
  EXPECT_EQ(h.watch_endpoint, etcd_->endpoint());
}

// Fail-static across restarts: every published snapshot goes to the state cache; a datastore
// started while etcd is down publishes the cached one at once, marked stale, refuses writes,
// and converges on etcd's State when etcd returns.
TEST_F(DatastoreTest, StartsFromTheStateCacheWhileEtcdIsDown) {
  const std::string cache_dir = dir_ + "/state";
  ASSERT_EQ(mkdir(cache_dir.c_str(), 0700), 0);
  DatastoreOptions o = Options();
  o.cache_dir = cache_dir;
  std::unique_ptr<EtcdDatastore> a = Started(o);
  absl::StatusOr<Snapshot> written = a->Update(Apply(Objects()));
  ASSERT_TRUE(written.ok()) << written.status();
  a->FlushStateCache();
  EXPECT_EQ(a->Health().cache_version, absl::StrCat(written->generation));
  EXPECT_FALSE(a->Health().stale);
  a.reset();
  raw_.reset();
  etcd_->Kill();

  std::unique_ptr<EtcdDatastore> b = NewStore(o);
  b->Start();
  ASSERT_TRUE(b->WaitForState(absl::Seconds(20)));
  EXPECT_FALSE(b->status().synced);
  EXPECT_TRUE(b->status().from_cache);
  EXPECT_EQ(b->Current().generation, written->generation);
  EXPECT_TRUE(*b->Current().state == *written->state);
  DatastoreHealth h = b->Health();
  EXPECT_TRUE(h.stale);
  EXPECT_FALSE(h.healthy);
  absl::StatusOr<Snapshot> refused = b->Update(Apply(Objects(
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: yy}\n")));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_NE(refused.status().message().find(
                absl::StrCat("enforces and serves its cached state of revision ",
                             written->generation)),
            std::string::npos)
      << refused.status();

  // etcd returns, and meanwhile another writer changed a label: b converges on etcd's State.
  ASSERT_TRUE(etcd_->Restart().ok());
  raw_ = NewStore();
  const int64_t rev = Put("/netpol/v1/namespaces/x",
                          "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {n: \"1\"}}\n");
  ASSERT_TRUE(b->WaitSynced(absl::Seconds(20)));
  ASSERT_TRUE(Eventually([&] { return b->Current().generation == static_cast<uint64_t>(rev); }));
  EXPECT_EQ(b->Current().state->namespaces.at("x").labels.at("n"), "1");
  EXPECT_EQ(b->Current().state->pods.size(), 2u);
  EXPECT_FALSE(b->status().from_cache);
  ASSERT_TRUE(Eventually([&] { return b->Health().healthy; }));
  EXPECT_FALSE(b->Health().stale);
  b->FlushStateCache();
  EXPECT_EQ(b->Health().cache_version, absl::StrCat(rev));
}

// A cache saved under another prefix is not enforced: the datastore waits for etcd.
TEST_F(DatastoreTest, AnotherPrefixsStateCacheIsNotUsed) {
  const std::string cache_dir = dir_ + "/state";
  ASSERT_EQ(mkdir(cache_dir.c_str(), 0700), 0);
  DatastoreOptions o = Options();
  o.cache_dir = cache_dir;
  std::unique_ptr<EtcdDatastore> a = Started(o);
  ASSERT_TRUE(a->Update(Apply(Objects())).ok());
  a->FlushStateCache();
  a.reset();
  raw_.reset();
  etcd_->Kill();
  o.prefix = "/other/";
  std::unique_ptr<EtcdDatastore> b = NewStore(o);
  b->Start();
  EXPECT_FALSE(b->status().from_cache);
  EXPECT_TRUE(b->Current().state->namespaces.empty());
  EXPECT_FALSE(b->Health().stale);
}

// etcd frozen (SIGSTOP: connections open, nothing answers). Every write learns its fate within
// its deadline: a write that may have reached etcd says "outcome unknown" (UNKNOWN), never
// "not stored"; one that says "not stored" (UNAVAILABLE) is indeed absent once etcd is back.
// The first failed write makes the datastore unhealthy; etcd answering again makes it healthy.
TEST_F(DatastoreTest, WritesToAFrozenEtcdAreUnknownOrNotStoredAndSayWhich) {
  DatastoreOptions o = Options();
  o.write_deadline = absl::Seconds(2);
  o.client.keepalive_time = absl::Seconds(30);  // the watch stays up while etcd is frozen
  o.client.keepalive_timeout = absl::Seconds(30);
  std::unique_ptr<EtcdDatastore> a = Started(o);
  ASSERT_TRUE(a->Update(Apply(Objects())).ok());
  ASSERT_TRUE(Eventually([&] { return a->Health().healthy; }));

  etcd_->Freeze();
  constexpr int kWriters = 4;
  std::vector<absl::Status> results(kWriters);
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      results[i] = a->Update(Apply(Objects(absl::StrCat(
                                 "apiVersion: v1\nkind: Namespace\nmetadata: {name: w", i,
                                 "}\n"))))
                       .status();
    });
  }
  for (std::thread& t : writers) t.join();
  // Unhealthy after the failed writes, while etcd is still frozen.
  DatastoreHealth h = a->Health();
  EXPECT_FALSE(h.healthy);
  EXPECT_FALSE(h.last_write_error.ok());
  int unknown = 0;
  for (int i = 0; i < kWriters; ++i) {
    const absl::Status& st = results[i];
    ASSERT_FALSE(st.ok()) << "writer " << i;
    if (st.code() == absl::StatusCode::kUnknown) {
      ++unknown;
      EXPECT_NE(st.message().find("outcome unknown"), std::string::npos) << st;
      EXPECT_EQ(st.message().find("not stored"), std::string::npos) << st;
    } else {
      EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
      EXPECT_NE(st.message().find("not stored"), std::string::npos) << st;
    }
  }
  EXPECT_GE(unknown, 1) << "the first write was sent to the frozen etcd";

  etcd_->Thaw();
  ASSERT_TRUE(Eventually([&] { return a->Health().healthy; }));
  // What etcd holds now, through a second node's fresh list: every "not stored" write is absent.
  std::unique_ptr<EtcdDatastore> b = Started();
  ASSERT_TRUE(Eventually([&] { return b->Current().generation == a->Current().generation; }));
  for (int i = 0; i < kWriters; ++i) {
    if (results[i].code() == absl::StatusCode::kUnavailable) {
      EXPECT_EQ(b->Current().state->namespaces.count(absl::StrCat("w", i)), 0u)
          << "writer " << i << " was told 'not stored': " << results[i];
    }
  }
}

TEST_F(DatastoreTest, CompactionPastTheWatchRelists) {
  DatastoreOptions slow = Options();
  // A long pause before reconnecting leaves time to write and compact while it is away.
  slow.retry_min = slow.retry_max = absl::Seconds(6);
  std::unique_ptr<EtcdDatastore> a = Started(slow);
  absl::StatusOr<Snapshot> s = a->Update(Apply(Objects()));
  ASSERT_TRUE(s.ok()) << s.status();

  etcd_->Kill();
  ASSERT_TRUE(Eventually([&] { return !a->status().watching; }));
  ASSERT_TRUE(etcd_->Restart().ok());
  Put("/netpol/v1/namespaces/z", "apiVersion: v1\nkind: Namespace\nmetadata: {name: z}\n");
  const int64_t last = Delete("/netpol/v1/pods/x/a");
  ASSERT_TRUE(raw_->client()->Compact(last).ok());
  ASSERT_FALSE(a->status().watching) << "reconnected before the compaction; raise the pause";

  ASSERT_TRUE(Eventually([&] { return a->Current().generation >= static_cast<uint64_t>(last); }));
  const State& st = *a->Current().state;
  EXPECT_EQ(st.namespaces.count("z"), 1u);
  EXPECT_EQ(st.pods.count("x/a"), 0u);
  EXPECT_EQ(a->status().compactions, 1);
  EXPECT_EQ(a->status().lists, 2);
  // The re-list may have changed anything: no change log across it.
  EXPECT_EQ(a->ChangesBetween(s->generation, a->Current().generation), std::nullopt);
}

TEST_F(DatastoreTest, WritesBeforeTheFirstListAreUnavailable) {
  DatastoreOptions o = Options();
  o.client.endpoints = {"127.0.0.1:1"};  // nothing listens there
  std::unique_ptr<EtcdDatastore> ds = NewStore(o);
  ds->Start();
  EXPECT_FALSE(ds->WaitSynced(absl::Milliseconds(300)));
  absl::StatusOr<Snapshot> s = ds->Update(Apply(Objects()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.status().message().find("not reached yet"), std::string::npos) << s.status();
  EXPECT_EQ(ds->Current().generation, 0u);
}

TEST_F(DatastoreTest, TheNextEndpointServesWhenOneIsDead) {
  DatastoreOptions o = Options();
  o.client.endpoints = {"127.0.0.1:1", etcd_->endpoint()};  // nothing listens on port 1
  std::unique_ptr<EtcdDatastore> a = Started(o);
  absl::StatusOr<Snapshot> s = a->Update(Apply(Objects()));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(Eventually([&] { return a->Current().generation == s->generation; }));
  EXPECT_EQ(a->status().endpoints, "127.0.0.1:1," + etcd_->endpoint());
}

TEST_F(DatastoreTest, OverwritingAnInvalidKeyWorks) {
  Put("/netpol/v1/namespaces/x", "garbage: [");
  std::unique_ptr<EtcdDatastore> a = Started();
  EXPECT_EQ(a->status().invalid_keys, 1);
  absl::StatusOr<Snapshot> s = a->Update(Apply(Objects()));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->state->namespaces.count("x"), 1u);
  EXPECT_EQ(a->status().invalid_keys, 0);
}

TEST(DatastoreTlsTest, ClientCertificateRequired) {
  const std::string base = fixtures::MakeTempDir("etcdtls");
  ASSERT_FALSE(base.empty());
  struct Cleanup {
    std::string dir;
    ~Cleanup() { fixtures::RemoveTree(dir); }
  } cleanup{base};
  absl::StatusOr<std::unique_ptr<EtcdProcess>> etcd = EtcdProcess::StartTls(base);
  if (absl::IsFailedPrecondition(etcd.status())) NETPOL_SKIP_OR_FAIL(etcd.status());
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  DatastoreOptions o;
  o.client.endpoints = {(*etcd)->endpoint()};
  o.client.request_timeout = absl::Seconds(2);
  o.client.ca_file = (*etcd)->ca_file();
  o.client.cert_file = (*etcd)->client_cert_file();
  o.client.key_file = (*etcd)->client_key_file();
  absl::StatusOr<std::unique_ptr<EtcdDatastore>> ds = EtcdDatastore::Create(o);
  ASSERT_TRUE(ds.ok()) << ds.status();
  (*ds)->Start();
  ASSERT_TRUE((*ds)->WaitSynced(absl::Seconds(20)));
  absl::StatusOr<Snapshot> s = (*ds)->Update(Apply(Objects()));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->state->pods.size(), 2u);

  // The server's CA but no client certificate: etcd refuses the connection.
  DatastoreOptions anonymous = o;
  anonymous.client.cert_file.clear();
  anonymous.client.key_file.clear();
  absl::StatusOr<std::unique_ptr<EtcdDatastore>> anon = EtcdDatastore::Create(anonymous);
  ASSERT_TRUE(anon.ok()) << anon.status();
  (*anon)->Start();
  EXPECT_FALSE((*anon)->WaitSynced(absl::Seconds(3)));
  EXPECT_FALSE((*anon)->status().last_error.ok());

  // Half a key pair is a configuration error, named before anything connects.
  DatastoreOptions half = o;
  half.client.key_file.clear();
  absl::StatusOr<std::unique_ptr<EtcdDatastore>> bad = EtcdDatastore::Create(half);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  DatastoreOptions missing = o;
  missing.client.ca_file = base + "/nonexistent.pem";
  bad = EtcdDatastore::Create(missing);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nonexistent.pem"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace netpol::agent::etcd
