// A rule's peers and ports are a cross product by definition: a policy of 1,000 non-adjacent
// /24s x 1,000 ports, compiled into one concatenated set, was 10^6 elements (minutes of sync,
// gigabytes of memory on every node). Compiled as a large rule (RULESET.md "Large rules") it is
// peers + ports elements; this loads it into a real kernel through the agent's netlink writer,
// in a fresh network namespace (the host's tables are never touched), and reads it back.
// Needs root.
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/incremental.h"
#include "engine/compiler/testutil.h"
#include "engine/netlink/test_support.h"
#include "engine/nft/diff.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

using LargeRuleKernelTest = netlink::NetnsBackendTest;

size_t ElementCount(const nft::Program& p) {
  size_t n = 0;
  for (const auto& [name, els] : p.elements) n += els.size();
  return n;
}

State WideState() {
  State s;
  testing::Add(&s, testing::MakeNamespace("x"));
  testing::Add(&s, testing::MakePod("x", "web", {{"app", "web"}}, "n1", {"10.0.0.2", "fd00::2"}));
  testing::Add(&s, testing::WidePolicy("x", "wide", 1000, 1000));
  return s;
}

TEST_F(LargeRuleKernelTest, ThousandBlocksTimesThousandPortsCommitsAsPeersPlusPorts) {
  CompileOptions opts;
  opts.node_name = "n1";
  absl::StatusOr<nft::Program> prog = Compile(WideState(), opts);
  ASSERT_TRUE(prog.ok()) << prog.status();
  const size_t elements = ElementCount(*prog);
  EXPECT_GE(elements, 2000u);
  EXPECT_LT(elements, 2100u);
  ASSERT_OK(backend_->Commit(nft::FullReplace(*prog)));
  absl::StatusOr<nft::Program> dumped = backend_->Dump(prog->table);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(ElementCount(*dumped), elements);
  EXPECT_EQ(nft::RenderProgram(*dumped), nft::RenderProgram(*prog));
}

// The incremental compiler builds the same program and moves it on with element commands: a
// peer pod of a selector's large rule appears, the kernel takes the transaction.
TEST_F(LargeRuleKernelTest, IncrementalUpdateOfALargeRuleCommits) {
  CompileOptions opts;
  opts.node_name = "n1";
  State s1 = WideState();
  NetworkPolicy sel = testing::WidePolicy("x", "sel", 0, 40);
  sel.ingress[0].peers.push_back(testing::PodPeer(testing::Sel({{"app", "client"}})));
  testing::Add(&s1, sel);
  IncrementalCompiler inc;
  absl::StatusOr<nft::Transaction> reset = inc.Reset(s1, opts);
  ASSERT_TRUE(reset.ok()) << reset.status();
  ASSERT_OK(backend_->Commit(*reset));
  State s2 = s1;
  testing::Add(&s2, testing::MakePod("x", "client", {{"app", "client"}}, "n2", {"10.0.1.7"}));
  Delta d;
  d.pods = {"x/client"};
  absl::StatusOr<nft::Transaction> tx = inc.Update(s1, s2, d, opts);
  ASSERT_TRUE(tx.ok()) << tx.status();
  EXPECT_FALSE(tx->empty());
  ASSERT_OK(backend_->Commit(*tx));
  absl::StatusOr<nft::Program> want = Compile(s2, opts);
  ASSERT_TRUE(want.ok()) << want.status();
  absl::StatusOr<nft::Program> dumped = backend_->Dump(want->table);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(nft::RenderProgram(*dumped), nft::RenderProgram(*want));
}

// A selector peer is as large as the pods it matches: `from: [namespaceSelector: {}]` on 16 ports
// over 5,000 pods is a large rule (pods + ports, ~5,016 elements, not 80,000), from scratch and
// when the pods arrive through the incremental compiler after the rule was small.
TEST_F(LargeRuleKernelTest, EveryNamespaceSelectorOverFiveThousandPodsIsPodsPlusPorts) {
  CompileOptions opts;
  opts.node_name = "n1";
  State small;
  testing::Add(&small, testing::MakeNamespace("x"));
  testing::Add(&small, testing::MakePod("x", "web", {{"app", "web"}}, "n1", {"10.0.0.2"}));
  testing::Add(&small, testing::EveryNamespacePolicy("x", "all", 16));
  testing::AddCrowd(&small, "crowd", 0, 20, "n2");
  State big = small;
  testing::AddCrowd(&big, "crowd", 20, 4980, "n2");

  absl::StatusOr<nft::Program> want = Compile(big, opts);
  ASSERT_TRUE(want.ok()) << want.status();
  const size_t elements = ElementCount(*want);
  EXPECT_GE(elements, 5016u);
  EXPECT_LT(elements, 5100u);
  ASSERT_OK(backend_->Commit(nft::FullReplace(*want)));
  absl::StatusOr<nft::Program> dumped = backend_->Dump(want->table);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(ElementCount(*dumped), elements);
  EXPECT_EQ(nft::RenderProgram(*dumped), nft::RenderProgram(*want));

  // Incrementally: small (21 addresses x 16 in the concatenated set), then the 4,980 pods.
  IncrementalCompiler inc;
  absl::StatusOr<nft::Transaction> reset = inc.Reset(small, opts);
  ASSERT_TRUE(reset.ok()) << reset.status();
  ASSERT_OK(backend_->Commit(*reset));
  Delta d;
  for (int i = 20; i < 5000; ++i) d.pods.insert(absl::StrCat("crowd/crowd-", i));
  absl::StatusOr<nft::Transaction> tx = inc.Update(small, big, d, opts);
  ASSERT_TRUE(tx.ok()) << tx.status();
  ASSERT_OK(backend_->Commit(*tx));
  EXPECT_EQ(inc.stats().large_rule_crossings, 1);
  dumped = backend_->Dump(want->table);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(ElementCount(*dumped), elements);
  EXPECT_EQ(nft::RenderProgram(*dumped), nft::RenderProgram(*want));
}

}  // namespace
}  // namespace netpol::compiler
