// Loads compiled programs into a real kernel: for seeded random clusters, `nft -f` of
// FullReplace(Compile(S1)) in a fresh network namespace (`unshare -n`; the host's tables are
// never touched) must succeed and `nft list table` must print RenderProgram's text; then
// Diff(Compile(S1), Compile(S2)) must apply too (the kernel rejects overlapping interval
// elements, dangling references and busy objects, so this checks what the fake can only model).
// Needs root; skips otherwise.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/testutil.h"
#include "engine/nft/diff.h"
#include "engine/nft/transaction.h"
#include "engine/util/skip_or_fail.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

struct ShellRun {
  int status = -1;
  std::string output;
};

std::string TempPath(const std::string& name) {
  const char* d = std::getenv("TEST_TMPDIR");
  return absl::StrCat(d != nullptr ? d : "/tmp", "/", name);
}

// Runs `script` with sh -e in a new, empty network namespace.
ShellRun InFreshNetns(const std::string& script) {
  const std::string path = TempPath("script.sh");
  std::ofstream(path) << script;
  ShellRun r;
  FILE* p = popen(absl::StrCat("unshare -n sh -e ", path, " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  r.status = pclose(p);
  return r;
}

class KernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      NETPOL_SKIP_OR_FAIL("needs root to create network namespaces and load nftables");
    }
    ShellRun r = InFreshNetns("nft list ruleset\n");
    if (r.status != 0) {
      NETPOL_SKIP_OR_FAIL("cannot run nft in a new network namespace: " << r.output);
    }
  }
};

CompileOptions OnNode(const std::string& node) {
  CompileOptions o;
  o.node_name = node;
  return o;
}

nft::Program MustCompile(const State& s, const CompileOptions& o) {
  absl::StatusOr<nft::Program> p = Compile(s, o);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nft::Program();
}

// s1's program, loaded into a fresh network namespace by a full replace, lists exactly as
// rendered, and the kernel takes the Diff from it to s2's program.
void LoadListAndDiff(const State& s1, const State& s2, uint32_t seed,
                     const CompileOptions& o = OnNode("n1")) {
  nft::Program p1 = MustCompile(s1, o);
  nft::Program p2 = MustCompile(s2, o);
  const std::string full = TempPath("full.nft"), diff = TempPath("diff.nft");
  std::ofstream(full) << nft::FullReplace(p1).ToNftText();
  std::ofstream(diff) << nft::Diff(p1, p2).ToNftText();
  ShellRun r = InFreshNetns(absl::StrCat("nft -f ", full, "\nnft list table inet netpol\n"));
  ASSERT_EQ(r.status, 0) << "seed " << seed << ": " << r.output;
  EXPECT_EQ(r.output, nft::RenderProgram(p1)) << "seed " << seed;
  r = InFreshNetns(absl::StrCat("nft -f ", full, "\nnft -f ", diff, "\n"));
  ASSERT_EQ(r.status, 0) << "seed " << seed << " diff: " << r.output;
}

TEST_F(KernelTest, CompiledProgramsLoadListAndDiffInTheKernel) {
  testing::RandomStateOptions bigger;
  bigger.min_pods = 8;
  bigger.max_pods = 16;
  bigger.min_policies = 3;
  bigger.max_policies = 6;
  int loaded = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    State s1 = testing::RandomState(seed, bigger);
    State s2 = testing::RandomState(seed + 777, bigger);
    ASSERT_NO_FATAL_FAILURE(LoadListAndDiff(s1, s2, seed));
    ++loaded;
  }
  EXPECT_EQ(loaded, 40);
}

// With random ClusterNetworkPolicies (tier chains and their interval sets): the kernel loads and
// lists the programs as rendered, and takes the Diff of a CNP edit. Every other seed with deny
// logs and rule counters (the tiers' deny-log chains, counted tier rules).
TEST_F(KernelTest, ClusterNetworkPolicyProgramsLoadListAndDiffInTheKernel) {
  int loaded = 0;
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    State s1 = testing::RandomState(seed, {.min_pods = 8, .max_pods = 16, .min_policies = 1,
                                           .max_policies = 4});
    testing::AddRandomClusterPolicies(&s1, seed, 6);
    const State s2 = testing::MutateClusterPolicies(s1, seed);
    CompileOptions o = OnNode("n1");
    if (seed % 2 == 0) {
      o.rule_counters = true;
      o.deny_log = CompileOptions::DenyLog{100, 10, 20, 128};
    }
    ASSERT_NO_FATAL_FAILURE(LoadListAndDiff(s1, s2, seed, o));
    ++loaded;
  }
  EXPECT_EQ(loaded, 30);
}

}  // namespace
}  // namespace netpol::compiler
