// Node status records against a real etcd (/usr/bin/etcd on 127.0.0.1): records round-trip,
// a withdrawn or expired lease makes a node stale, and SameObjects tells object changes from
// writes to other keys.
#include "agent/etcd/node_status.h"

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "agent/etcd/etcd_process.h"
#include "agent/etcd/keys.h"
#include "agent/testing/fixtures.h"
#include "engine/util/skip_or_fail.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace netpol::agent::etcd {
namespace {

using google::protobuf::util::TimeUtil;

class NodeStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fixtures::MakeTempDir("etcd-status");
    ASSERT_FALSE(dir_.empty());
    absl::StatusOr<std::unique_ptr<EtcdProcess>> etcd = EtcdProcess::Start(dir_);
    if (absl::IsFailedPrecondition(etcd.status())) NETPOL_SKIP_OR_FAIL(etcd.status());
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = *std::move(etcd);
    ClientOptions o;
    o.endpoints = {etcd_->endpoint()};
    o.request_timeout = absl::Seconds(2);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(o);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  void TearDown() override {
    client_.reset();
    etcd_.reset();
    fixtures::RemoveTree(dir_);
  }

  std::unique_ptr<EtcdNodeStatus> Registry(const std::string& node) {
    absl::StatusOr<std::unique_ptr<EtcdNodeStatus>> r =
        EtcdNodeStatus::Create(client_.get(), kDefaultStatusPrefix, kDefaultPrefix, node);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  // Puts (or deletes, value empty) `key`; returns the revision of the write.
  int64_t Write(const std::string& key, const std::string& value) {
    etcdserverpb::TxnRequest txn;
    if (value.empty()) {
      txn.add_success()->mutable_request_delete_range()->set_key(key);
    } else {
      etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
      put->set_key(key);
      put->set_value(value);
    }
    absl::StatusOr<etcdserverpb::TxnResponse> r = client_->Txn(txn);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->header().revision() : 0;
  }

  static v1::NodeStatus Status(const std::string& node, uint64_t applied, absl::Duration ttl) {
    v1::NodeStatus s;
    s.set_node_name(node);
    s.set_generation(applied);
    s.set_applied_generation(applied);
    s.set_serving(true);
    s.set_datastore_healthy(true);
    s.mutable_build()->set_version("0.1.0");
    *s.mutable_ttl() = TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(ttl));
    return s;
  }

  std::string dir_;
  std::unique_ptr<EtcdProcess> etcd_;
  std::unique_ptr<Client> client_;
};

TEST_F(NodeStatusTest, OverlappingPrefixesAreRefused) {
  for (const char* prefix : {"/netpol/", "/netpol/v1/status/", "netpol/status/", "/x"}) {
    absl::StatusOr<std::unique_ptr<EtcdNodeStatus>> r =
        EtcdNodeStatus::Create(client_.get(), prefix, kDefaultPrefix, "node-1");
    ASSERT_FALSE(r.ok()) << prefix;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << prefix;
    EXPECT_NE(r.status().message().find("--etcd-status-prefix"), std::string::npos);
  }
}

TEST_F(NodeStatusTest, RecordsRoundTripAndAWithdrawnNodeIsStale) {
  std::unique_ptr<EtcdNodeStatus> a = Registry("node-a"), b = Registry("node-b");
  ASSERT_TRUE(a->Publish(Status("node-a", 7, absl::Seconds(30))).ok());
  ASSERT_TRUE(b->Publish(Status("node-b", 5, absl::Seconds(30))).ok());
  // A second publication renews the same lease.
  ASSERT_TRUE(b->Publish(Status("node-b", 6, absl::Seconds(30))).ok());
  absl::StatusOr<std::vector<v1::NodeStatus>> nodes = a->List();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].node_name(), "node-a");
  EXPECT_EQ((*nodes)[0].applied_generation(), 7u);
  EXPECT_EQ((*nodes)[0].build().version(), "0.1.0");
  EXPECT_FALSE((*nodes)[0].stale());
  EXPECT_EQ((*nodes)[1].node_name(), "node-b");
  EXPECT_EQ((*nodes)[1].applied_generation(), 6u);
  EXPECT_FALSE((*nodes)[1].stale());

  ASSERT_TRUE(b->Withdraw().ok());
  nodes = a->List();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 2u) << "a withdrawn node keeps its record";
  EXPECT_FALSE((*nodes)[0].stale());
  EXPECT_TRUE((*nodes)[1].stale());
  // Publishing again makes it live with a new lease.
  ASSERT_TRUE(b->Publish(Status("node-b", 6, absl::Seconds(30))).ok());
  nodes = a->List();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  EXPECT_FALSE((*nodes)[1].stale());
}

TEST_F(NodeStatusTest, ANodeThatStopsRenewingGoesStale) {
  std::unique_ptr<EtcdNodeStatus> a = Registry("node-a");
  ASSERT_TRUE(a->Publish(Status("node-a", 3, absl::Seconds(1))).ok());
  absl::StatusOr<std::vector<v1::NodeStatus>> nodes = a->List();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_FALSE((*nodes)[0].stale());
  // etcd expires the lease on its own clock; poll until it has (bounded).
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((*nodes)[0].stale() == false && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
    nodes = a->List();
    ASSERT_TRUE(nodes.ok()) << nodes.status();
    ASSERT_EQ(nodes->size(), 1u);
  }
  EXPECT_TRUE((*nodes)[0].stale()) << "the lease never expired";
  // The next publication notices the lease is gone and grants a new one.
  ASSERT_TRUE(a->Publish(Status("node-a", 3, absl::Seconds(30))).ok());
  nodes = a->List();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  EXPECT_FALSE((*nodes)[0].stale());
}

TEST_F(NodeStatusTest, SameObjectsTellsObjectChangesFromOtherWrites) {
  std::unique_ptr<EtcdNodeStatus> a = Registry("node-a");
  const std::string ns = std::string(kDefaultPrefix) + "namespaces/";
  const int64_t first = Write(ns + "a", "x");
  const int64_t other = Write("/netpol/status/v1/nodes/elsewhere", "{}");
  ASSERT_TRUE(a->Publish(Status("node-a", 1, absl::Seconds(30))).ok());
  const int64_t after_status = Write("/unrelated", "1");
  EXPECT_TRUE(*a->SameObjects(first, other));
  EXPECT_TRUE(*a->SameObjects(first, after_status));
  const int64_t put = Write(ns + "b", "y");
  EXPECT_FALSE(*a->SameObjects(first, put)) << "a key was added";
  EXPECT_FALSE(*a->SameObjects(after_status, put));
  EXPECT_TRUE(*a->SameObjects(put, put));
  const int64_t del = Write(ns + "b", "");
  EXPECT_FALSE(*a->SameObjects(put, del)) << "a key was deleted";
  const int64_t modified = Write(ns + "a", "z");
  EXPECT_FALSE(*a->SameObjects(del, modified)) << "a key was modified";
}

}  // namespace
}  // namespace netpol::agent::etcd
