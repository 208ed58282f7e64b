// The revoker against the kernel's conntrack table. The test process becomes a router node
// (engine/conntrack/kernel_lab.h) between a client pod (10.1.0.2) and a server pod (10.2.0.2);
// the programs are the incremental compiler's, committed with nft, and the revoker runs after
// each commit as the agent's reconciler runs it. A commit that removes no allow and isolates no
// pod lists no conntrack table (RevokerStats::dumps) and leaves the established flows alone; a
// commit that removes an allow still deletes the flow it denies, and only that one.
#include <string>
#include <vector>

#include "agent/revoker.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/delta.h"
#include "engine/compiler/incremental.h"
#include "engine/conntrack/fixtures.h"
#include "engine/conntrack/kernel_lab.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

using conntrack::fixtures::StateOf;
using conntrack::lab::CmdResult;
using conntrack::lab::Flows;
using conntrack::lab::kShopPods;
using conntrack::lab::Lab;
using conntrack::lab::Nft;
using conntrack::lab::ShopServerPolicy;
using ::testing::Contains;
using ::testing::Not;

// A pod on another node that the policy's peer selector also selects: its creation only adds
// set elements on this node.
constexpr char kRemoteClient[] = R"(
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: client-2, labels: {app: client}}
spec: {nodeName: n2}
status:
  podIPs: [{ip: 10.3.0.9}]
)";

class RevokerKernelTest : public conntrack::lab::KernelLabTest {
 protected:
  RevokerKernelTest() { options_.node_name = "n1"; }

  // Moves the compiler to `next`, commits the transaction with nft, then runs the revoker on
  // it as the reconciler does after a commit.
  void CommitAndRevoke(const State& next) {
    nft::Program before;
    absl::StatusOr<nft::Transaction> tx =
        compiler_.Update(state_, next, compiler::DiffStates(state_, next), options_, &before);
    ASSERT_TRUE(tx.ok()) << tx.status();
    ASSERT_FALSE(tx->empty());
    CmdResult r = Nft(tx->ToNftText());
    ASSERT_EQ(r.status, 0) << r.output << "\n" << tx->ToNftText();
    revoker_.AfterCommit(&before, *tx, compiler_.program());
    state_ = next;
  }

  compiler::CompileOptions options_;
  compiler::IncrementalCompiler compiler_;
  State state_;
  Revoker revoker_;  // the kernel table and addresses of this (the node's) namespace
};

TEST_F(RevokerKernelTest, OnlyACommitThatRemovesAnAllowListsTheTable) {
  state_ = StateOf({kShopPods, ShopServerPolicy("[{port: 8080}, {port: 9090}]")});
  absl::StatusOr<nft::Transaction> install = compiler_.Reset(state_, options_);
  ASSERT_TRUE(install.ok()) << install.status();
  CmdResult r = Nft(install->ToNftText());
  ASSERT_EQ(r.status, 0) << r.output;

  Lab::Conn web = lab_.Tcp("10.2.0.2", 8080);
  ASSERT_TRUE(web.ok) << web.msg;
  Lab::Conn other = lab_.Tcp("10.2.0.2", 9090);
  ASSERT_TRUE(other.ok) << other.msg;
  ASSERT_TRUE(Lab::Deliver(web, "hello"));
  ASSERT_TRUE(Lab::Deliver(other, "hello"));
  ASSERT_THAT(Flows(Family::kV4), Contains("tcp 10.1.0.2:* -> 10.2.0.2:8080"));

  // Unrelated to the established flows: another client appears on another node.
  CommitAndRevoke(
      StateOf({kShopPods, ShopServerPolicy("[{port: 8080}, {port: 9090}]"), kRemoteClient}));
  EXPECT_EQ(revoker_.stats().commits, 1);
  EXPECT_EQ(revoker_.stats().revocations, 0);
  EXPECT_EQ(revoker_.stats().dumps, 0) << "a commit that only adds must not list conntrack";
  EXPECT_THAT(Flows(Family::kV4), Contains("tcp 10.1.0.2:* -> 10.2.0.2:8080"));
  EXPECT_TRUE(Lab::Deliver(web, "still allowed"));

  // 8080 is no longer allowed: the revoker lists the table and deletes that flow only.
  CommitAndRevoke(StateOf({kShopPods, ShopServerPolicy("[{port: 9090}]"), kRemoteClient}));
  EXPECT_EQ(revoker_.stats().commits, 2);
  EXPECT_EQ(revoker_.stats().revocations, 1);
  EXPECT_GE(revoker_.stats().dumps, 1);
  EXPECT_EQ(revoker_.stats().deleted, 1);
  EXPECT_EQ(revoker_.stats().errors, 0);
  const std::vector<std::string> flows = Flows(Family::kV4);
  EXPECT_THAT(flows, Not(Contains("tcp 10.1.0.2:* -> 10.2.0.2:8080")));
  EXPECT_THAT(flows, Contains("tcp 10.1.0.2:* -> 10.2.0.2:9090"));
  EXPECT_FALSE(Lab::Deliver(web, "revoked")) << "the denied flow must stop";
  EXPECT_TRUE(Lab::Deliver(other, "still allowed"));
}

}  // namespace
}  // namespace netpol::agent
