// Incremental sync at the state level: whatever two states S1 and S2, the
// FakeBackend holding Compile(S1) and given Diff(Compile(S1), Compile(S2)) ends
// up holding exactly Compile(S2); and pod churn inside existing groups reaches
// the table as element commands only.
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/testutil.h"
#include "engine/nft/diff.h"
#include "engine/nft/fake.h"
#include "engine/nft/transaction.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

using testing::Add;
using testing::Ip;
using testing::Rng;

nft::Program MustCompile(const State& s, const std::string& node) {
  CompileOptions o;
  o.node_name = node;
  absl::StatusOr<nft::Program> p = Compile(s, o);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nft::Program();
}

// A few random edits of `s`: pods come, go, move labels or namespaces; a policy
// changes.
State Mutate(const State& s, uint64_t seed) {
  Rng rng(seed);
  State out = s;
  int edits = 1 + rng.Uniform(3);
  for (int i = 0; i < edits; ++i) {
    switch (rng.Uniform(5)) {
      case 0: {  // a pod leaves
        if (out.pods.empty()) break;
        auto it = out.pods.begin();
        std::advance(it, rng.Uniform(static_cast<int>(out.pods.size())));
        out.pods.erase(it);
        break;
      }
      case 1: {  // a pod arrives, cloned from another with a fresh address
        if (out.pods.empty()) break;
        auto it = out.pods.begin();
        std::advance(it, rng.Uniform(static_cast<int>(out.pods.size())));
        Pod p = it->second;
        p.name = absl::StrCat("new", seed % 1000, "-", i);
        if (!p.host_network) {
          p.ips.clear();
          p.ips.push_back(Ip(absl::StrCat("10.0.", rng.Uniform(2), ".", 100 + i)));
          if (rng.Chance(50)) {
            p.ips.push_back(Ip(absl::StrCat("fd00::", rng.Uniform(2), ":", 100 + i)));
          }
        }
        Add(&out, p);
        break;
      }
      case 2: {  // relabel
        if (out.pods.empty()) break;
        auto it = out.pods.begin();
        std::advance(it, rng.Uniform(static_cast<int>(out.pods.size())));
        out.pods[it->first].labels["app"] = rng.Chance(50) ? "web" : "db";
        break;
      }
      case 3: {  // a policy leaves
        if (out.policies.empty()) break;
        auto it = out.policies.begin();
        std::advance(it, rng.Uniform(static_cast<int>(out.policies.size())));
        out.policies.erase(it);
        break;
      }
      default: {  // a namespace relabels
        auto it = out.namespaces.begin();
        std::advance(it, rng.Uniform(static_cast<int>(out.namespaces.size())));
        out.namespaces[it->first].labels["team"] = rng.Chance(50) ? "red" : "blue";
        break;
      }
    }
  }
  return out;
}

void CheckTransition(const State& s1, const State& s2, const std::string& label) {
  for (const char* node : {"n1", "n2"}) {
    nft::Program p1 = MustCompile(s1, node);
    nft::Program p2 = MustCompile(s2, node);
    nft::FakeBackend fake;
    ASSERT_TRUE(fake.Commit(nft::FullReplace(p1)).ok()) << label;
    nft::Transaction tx = nft::Diff(p1, p2);
    absl::Status st = fake.Commit(tx);
    ASSERT_TRUE(st.ok()) << label << " on " << node << ": " << st << "\n" << tx.ToNftText();
    absl::StatusOr<nft::Program> dumped = fake.Dump(p2.table);
    ASSERT_TRUE(dumped.ok()) << dumped.status();
    ASSERT_EQ(nft::RenderProgram(*dumped), nft::RenderProgram(p2)) << label << " on " << node;
    EXPECT_TRUE(*dumped == nft::Canonical(p2)) << label << " on " << node;
  }
}

TEST(IncrementalTest, DiffBetweenUnrelatedRandomStatesLandsExactly) {
  for (uint32_t seed = 1; seed <= 150; ++seed) {
    CheckTransition(testing::RandomState(seed), testing::RandomState(seed + 50000),
                    absl::StrCat("seeds ", seed, " -> ", seed + 50000));
    if (HasFatalFailure()) return;
  }
}

TEST(IncrementalTest, DiffAfterSmallEditsLandsExactly) {
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    State s1 = testing::RandomState(seed);
    CheckTransition(s1, Mutate(s1, seed), absl::StrCat("seed ", seed, " edited"));
    if (HasFatalFailure()) return;
  }
}

// The large rules of a program: their port sets, "<chain>-s<k>p".
size_t LargeRuleCount(const nft::Program& p) {
  size_t n = 0;
  for (const auto& [name, set] : p.sets) {
    const size_t dash = name.rfind("-s");
    if (dash == std::string::npos || name.back() != 'p' || dash + 3 > name.size()) continue;
    const std::string k = name.substr(dash + 2, name.size() - dash - 3);
    if (!k.empty() && k.find_first_not_of("0123456789") == std::string::npos) ++n;
  }
  return n;
}

TEST(IncrementalTest, PodChurnInsideGroupsIsElementCommandsOnly) {
  int nonempty = 0, crossed = 0;
  for (uint32_t seed = 1; seed <= 150; ++seed) {
    State s1 = testing::RandomState(seed);
    State s2 = s1;
    int n = 0;
    // Twins of local pods join their groups; remote pods come and go.
    for (const auto& [key, pod] : s1.pods) {
      if (pod.host_network) continue;
      if (pod.node_name == "n2") {
        if (++n % 2 == 0) s2.pods.erase(key);
        continue;
      }
      Pod twin = pod;
      twin.name += "-twin";
      twin.ips.clear();
      for (const IpAddr& ip : pod.ips) {
        twin.ips.push_back(ip.family == Family::kV4 ? Ip(absl::StrCat("10.0.9.", ++n))
                                                    : Ip(absl::StrCat("fd00::9:", ++n)));
      }
      Add(&s2, twin);
    }
    for (const State* from : {&s1, &s2}) {
      const State* to = from == &s1 ? &s2 : &s1;
      const nft::Program a = MustCompile(*from, "n1"), b = MustCompile(*to, "n1");
      nft::Transaction tx = nft::Diff(a, b);
      // Unless a selector rule crossed the large-rule threshold (RULESET.md "Large rules"),
      // which changes its group's layout.
      if (LargeRuleCount(a) != LargeRuleCount(b)) {
        ++crossed;
        continue;
      }
      for (const nft::Command& c : tx.commands()) {
        EXPECT_EQ(c.kind, nft::ObjectKind::kElement)
            << "seed " << seed << ": " << nft::DescribeCommand(tx.table(), c);
      }
      nonempty += !tx.empty();
    }
    CheckTransition(s1, s2, absl::StrCat("seed ", seed, " churn"));
  }
  EXPECT_GT(nonempty, 120);  // most seeds have local isolated pods
  EXPECT_LT(crossed, 30);    // crossings are the exception
}

}  // namespace
}  // namespace netpol::compiler
