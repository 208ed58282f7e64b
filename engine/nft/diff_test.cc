// Diff and FullReplace against FakeBackend: a property test over seeded random program pairs and
// table-driven checks that the diff is minimal for the usual incremental changes.
#include "engine/nft/diff.h"

#include <string>
#include <vector>

#include "engine/nft/fake.h"
#include "engine/nft/program.h"
#include "engine/nft/random_program.h"
#include "engine/nft/test_util.h"
#include "engine/nft/transaction.h"
#include "gtest/gtest.h"

namespace netpol::nft {
namespace {

using namespace ::netpol::nft::testing;  // NOLINT: test shorthands

constexpr uint64_t kSeeds = 600;

TEST(DiffPropertyTest, CommitOfDiffTurnsFromIntoTo) {
  int non_trivial = 0;
  for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
    const Program from = RandomProgram(seed, 1), to = RandomProgram(seed, 2);
    ASSERT_TRUE(ValidateProgram(from).ok()) << "seed " << seed << ": " << ValidateProgram(from);
    ASSERT_TRUE(ValidateProgram(to).ok()) << "seed " << seed << ": " << ValidateProgram(to);
    FakeBackend fake;
    ASSERT_TRUE(fake.Commit(FullReplace(from)).ok());
    ASSERT_EQ(*fake.Dump(from.table), from) << "seed " << seed;
    const Transaction diff = Diff(from, to);
    absl::Status s = fake.Commit(diff);
    ASSERT_TRUE(s.ok()) << "seed " << seed << ": " << s << "\n" << diff.ToNftText();
    EXPECT_EQ(*fake.Dump(to.table), to) << "seed " << seed << "\n" << diff.ToNftText();
    // And back.
    const Transaction back = Diff(to, from);
    s = fake.Commit(back);
    ASSERT_TRUE(s.ok()) << "seed " << seed << " (back): " << s << "\n" << back.ToNftText();
    EXPECT_EQ(*fake.Dump(from.table), from) << "seed " << seed;
    if (!(from == to)) ++non_trivial;
  }
  // The generator must actually produce differences for the property to mean anything.
  EXPECT_GT(non_trivial, static_cast<int>(kSeeds * 9 / 10));
}

TEST(DiffPropertyTest, DiffOfEqualProgramsIsEmpty) {
  for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
    const Program p = RandomProgram(seed, 1);
    EXPECT_TRUE(Diff(p, p).empty()) << "seed " << seed << ":\n" << Diff(p, p).ToNftText();
  }
}

TEST(DiffPropertyTest, FullReplaceReplacesAnyTable) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    const Program from = RandomProgram(seed, 1), to = RandomProgram(seed + 1000, 3);
    FakeBackend fake;
    ASSERT_TRUE(fake.Commit(FullReplace(to)).ok()) << "seed " << seed;  // from nothing
    ASSERT_TRUE(fake.Commit(FullReplace(from)).ok()) << "seed " << seed;
    ASSERT_TRUE(fake.Commit(FullReplace(to)).ok()) << "seed " << seed;
    EXPECT_EQ(*fake.Dump(to.table), to) << "seed " << seed;
  }
}

TEST(DiffTest, MissingAndEmptyElementListsAreAlike) {
  Program a = RandomProgram(7, 1);
  Program b = a;
  for (const auto& [name, set] : a.sets) b.elements[name];  // empty vectors for missing lists
  EXPECT_TRUE(Diff(a, b).empty());
  EXPECT_TRUE(Diff(b, a).empty());
}

TEST(DiffTest, ElementOrderDoesNotMatter) {
  Program a = RandomProgram(11, 1);
  Program b = a;
  for (auto& [name, elems] : b.elements) std::reverse(elems.begin(), elems.end());
  EXPECT_TRUE(Diff(a, b).empty());
}

// A small program to make targeted changes to.
Program Base() {
  Program p;
  p.table = "t";
  p.sets["peers"] = MakeSet("peers", kV4ProtoPort, true);
  p.sets["pods"] = MakeSet("pods", {FieldType::kIpv4Addr}, false, true);
  Chain fwd = MakeBase("fwd-base", Hook::kForward, 0);
  fwd.rules.push_back(MakeRule({EstablishedRelated()}, Verdict::Accept()));
  fwd.rules.push_back(MakeRule({VmapLookup({Selector::kIpDaddr}, "pods")}, std::nullopt));
  p.chains["fwd-base"] = fwd;
  Chain a = MakeChain("pod-a");
  a.rules.push_back(MakeRule({Lookup(kSaddrProtoDport, "peers")}, Verdict::Accept(), "policy p"));
  a.rules.push_back(MakeRule({}, Verdict::Drop()));
  p.chains["pod-a"] = a;
  Chain b = MakeChain("pod-b");
  b.rules.push_back(MakeRule({}, Verdict::Drop()));
  p.chains["pod-b"] = b;
  p.elements["peers"] = {E({AR("10.0.0.0", "10.0.255.255"), N(6), N(80)})};
  p.elements["pods"] = {EV({A("10.1.0.1")}, Verdict::Jump("pod-a")),
                        EV({A("10.1.0.2")}, Verdict::Jump("pod-b"))};
  return Canonical(p);
}

struct MinimalCase {
  std::string name;
  std::function<void(Program&)> change;
  std::string text;  // the expected diff as nft text
};

class DiffMinimalTest : public ::testing::TestWithParam<MinimalCase> {};

TEST_P(DiffMinimalTest, ExpectedCommands) {
  const Program from = Base();
  Program to = from;
  GetParam().change(to);
  Canonicalize(&to);
  const Transaction diff = Diff(from, to);
  EXPECT_EQ(diff.ToNftText(), GetParam().text);
  FakeBackend fake;
  ASSERT_TRUE(fake.Commit(FullReplace(from)).ok());
  absl::Status s = fake.Commit(diff);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(*fake.Dump("t"), to);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DiffMinimalTest,
    ::testing::Values(
        MinimalCase{"AddOneElement",
                    [](Program& p) {
                      p.elements["peers"].push_back(E({A("10.2.0.1"), N(17), N(53)}));
                    },
                    "add element inet t peers { 10.2.0.1 . udp . 53 }\n"},
        MinimalCase{"RemoveOneElement", [](Program& p) { p.elements["pods"].pop_back(); },
                    "delete element inet t pods { 10.1.0.2 }\n"},
        MinimalCase{"ChangedVerdictIsDeletedAndAdded",
                    [](Program& p) { p.elements["pods"][1].verdict = Verdict::Goto("pod-a"); },
                    "delete element inet t pods { 10.1.0.2 }\nadd element inet t pods { 10.1.0.2 : "
                    "goto pod-a }\n"},
        MinimalCase{"ChangedElementCommentIsDeletedAndAdded",
                    [](Program& p) { p.elements["pods"][0].comment = "pod ns/a"; },
                    "delete element inet t pods { 10.1.0.1 }\n"
                    "add element inet t pods { 10.1.0.1 comment \"pod ns/a\" : jump pod-a }\n"},
        MinimalCase{"ChangedRulesFlushOneChain",
                    [](Program& p) { p.chains["pod-b"].rules[0].verdict = Verdict::Accept(); },
                    "flush chain inet t pod-b\nadd rule inet t pod-b accept\n"},
        MinimalCase{
            "BasePolicyIsUpdatedInPlace",
            [](Program& p) { p.chains["fwd-base"].base->policy_drop = true; },
            "add chain inet t fwd-base { type filter hook forward priority 0; policy drop; }\n"},
        MinimalCase{
            "BasePriorityChangeRecreatesTheChain",
            [](Program& p) { p.chains["fwd-base"].base->priority = -5; },
            "flush chain inet t fwd-base\n"
            "delete chain inet t fwd-base\n"
            "add chain inet t fwd-base { type filter hook forward priority -5; policy accept; }\n"
            "add rule inet t fwd-base ct state established,related accept\n"
            "add rule inet t fwd-base ip daddr vmap @pods\n"},
        MinimalCase{"NewPodChainAndDispatchEntry",
                    [](Program& p) {
                      Chain c = MakeChain("pod-c");
                      c.rules.push_back(MakeRule({}, Verdict::Drop(), "default deny"));
                      p.chains["pod-c"] = c;
                      p.elements["pods"].push_back(EV({A("10.1.0.3")}, Verdict::Jump("pod-c")));
                    },
                    "add chain inet t pod-c\n"
                    "add rule inet t pod-c drop comment \"default deny\"\n"
                    "add element inet t pods { 10.1.0.3 : jump pod-c }\n"},
        MinimalCase{"DeletedPodChainGoesAfterItsDispatchEntry",
                    [](Program& p) {
                      p.chains.erase("pod-b");
                      p.elements["pods"].pop_back();
                    },
                    "flush chain inet t pod-b\n"
                    "delete element inet t pods { 10.1.0.2 }\n"
                    "delete chain inet t pod-b\n"},
        MinimalCase{"ChangedSetDefinitionRecreatesSetAndRewritesItsUsers",
                    [](Program& p) { p.sets["peers"].comment = "ipBlock"; },
                    "flush chain inet t pod-a\n"
                    "delete set inet t peers\n"
                    "add set inet t peers { type ipv4_addr . inet_proto . inet_service; flags "
                    "interval; comment "
                    "\"ipBlock\"; }\n"
                    "add rule inet t pod-a ip saddr . meta l4proto . th dport @peers accept "
                    "comment \"policy p\"\n"
                    "add rule inet t pod-a drop\n"
                    "add element inet t peers { 10.0.0.0/16 . tcp . 80 }\n"},
        MinimalCase{"RecreatedChainTakesItsReferrersAlong",
                    [](Program& p) { p.chains["pod-a"].comment = "pod ns/a"; },
                    "flush chain inet t pod-a\n"
                    "delete element inet t pods { 10.1.0.1 }\n"
                    "delete chain inet t pod-a\n"
                    "add chain inet t pod-a { comment \"pod ns/a\"; }\n"
                    "add rule inet t pod-a ip saddr . meta l4proto . th dport @peers accept "
                    "comment \"policy p\"\n"
                    "add rule inet t pod-a drop\n"
                    "add element inet t pods { 10.1.0.1 : jump pod-a }\n"},
        MinimalCase{"DeletedSetGoesAfterItsUsers",
                    [](Program& p) {
                      p.sets.erase("peers");
                      p.elements.erase("peers");
                      p.chains["pod-a"].rules.erase(p.chains["pod-a"].rules.begin());
                    },
                    "flush chain inet t pod-a\n"
                    "delete set inet t peers\n"
                    "add rule inet t pod-a drop\n"}),
    [](const ::testing::TestParamInfo<MinimalCase>& info) { return info.param.name; });

TEST(DiffTest, ElementCountCountsElementChanges) {
  Program from = Base(), to = Base();
  to.elements["pods"].push_back(EV({A("10.1.0.9")}, Verdict::Drop()));
  to.elements["pods"][0].verdict = Verdict::Drop();
  Canonicalize(&to);
  EXPECT_EQ(Diff(from, to).ElementCount(), 3u);  // one delete, two adds
}

size_t BaseChains(const Program& p) {
  size_t n = 0;
  for (const auto& [name, chain] : p.chains) n += chain.base.has_value() ? 1 : 0;
  return n;
}

size_t Elements(const Program& p) {
  size_t n = 0;
  for (const auto& [name, elems] : p.elements) n += elems.size();
  return n;
}

// Applying ChunkedCreate's transactions in order builds exactly the program; before the last
// one the table has no base chain (nothing hooked), and no transaction carries more elements
// than asked.
TEST(ChunkedCreateTest, BuildsTheProgramWithoutHooksUntilTheLastCommit) {
  int chunked = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const Program to = RandomProgram(seed, 1);
    for (size_t max : {size_t{1}, size_t{3}, size_t{17}, size_t{1000000}}) {
      const std::vector<Transaction> txs = ChunkedCreate(to, max);
      ASSERT_FALSE(txs.empty());
      FakeBackend fake;
      for (size_t i = 0; i < txs.size(); ++i) {
        EXPECT_LE(txs[i].ElementCount(), max) << "seed " << seed << " tx " << i;
        absl::Status s = fake.Commit(txs[i]);
        ASSERT_TRUE(s.ok()) << "seed " << seed << " max " << max << " tx " << i << ": " << s
                            << "\n" << txs[i].ToNftText();
        if (i + 1 < txs.size()) {
          absl::StatusOr<Program> now = fake.Dump(to.table);
          ASSERT_TRUE(now.ok());
          EXPECT_EQ(BaseChains(*now), 0u) << "seed " << seed << " tx " << i;
        }
      }
      EXPECT_EQ(*fake.Dump(to.table), to) << "seed " << seed << " max " << max;
      if (Elements(to) <= max) {
        EXPECT_EQ(txs.size(), 1u) << "seed " << seed;
      } else {
        ++chunked;
        // skeleton + at least ceil(elements / max) element transactions + hooks
        EXPECT_GE(txs.size(), 2 + (Elements(to) + max - 1) / max) << "seed " << seed;
      }
    }
  }
  EXPECT_GT(chunked, 200);  // the generator's programs have elements to cut
}

TEST(ChunkedCreateTest, RefusesAnExistingTable) {
  const Program p = RandomProgram(7, 1);
  FakeBackend fake;
  ASSERT_TRUE(fake.Commit(FullReplace(p)).ok());
  const Program before = *fake.Dump(p.table);
  const std::vector<Transaction> txs = ChunkedCreate(p, 2);
  EXPECT_FALSE(fake.Commit(txs.front()).ok());
  EXPECT_EQ(*fake.Dump(p.table), before);
}

}  // namespace
}  // namespace netpol::nft

namespace netpol::nft {
namespace {

using namespace ::netpol::nft::testing;  // NOLINT: test shorthands

// A table "t" with chain "g": counted rules with the given comments (the last one a drop).
Program CountedProgram(const std::vector<std::string>& comments) {
  Program p;
  p.table = "t";
  Chain g = MakeChain("g");
  for (size_t i = 0; i < comments.size(); ++i) {
    g.rules.push_back(MakeRule({}, i + 1 == comments.size() ? Verdict::Drop() : Verdict::Accept(),
                               comments[i], /*counter=*/true));
  }
  p.chains["g"] = g;
  return p;
}

uint64_t PacketsOf(FakeBackend& fake, size_t index) {
  auto counts = fake.ReadCounters("t");
  EXPECT_TRUE(counts.ok()) << counts.status();
  for (const RuleCount& c : *counts) {
    if (c.chain == "g" && c.index == index) return c.packets;
  }
  ADD_FAILURE() << "no counted rule " << index;
  return 0;
}

TEST(CarryCountersTest, AFullReplaceKeepsTheCountsOfTheRulesItReplacesByChainAndComment) {
  FakeBackend fake;
  ASSERT_TRUE(fake.Commit(FullReplace(CountedProgram({"a", "dup", "dup", "gone", "drop"}))).ok());
  const uint64_t packets[] = {10, 20, 30, 40, 50};
  for (size_t i = 0; i < 5; ++i) ASSERT_TRUE(fake.AddPackets("t", "g", i, packets[i], 100).ok());
  auto counts = fake.ReadCounters("t");
  ASSERT_TRUE(counts.ok()) << counts.status();

  // The same rules in another order, one rule new and one gone.
  Transaction tx = FullReplace(CountedProgram({"new", "dup", "a", "dup", "drop"}));
  EXPECT_EQ(CarryCounters(*counts, &tx), 4u);
  EXPECT_NE(tx.ToNftText().find("counter packets 10 bytes 100"), std::string::npos);
  ASSERT_TRUE(fake.Commit(tx).ok());
  EXPECT_EQ(PacketsOf(fake, 0), 0u);   // new: starts at 0
  EXPECT_EQ(PacketsOf(fake, 1), 20u);  // the first "dup" takes the first one's count
  EXPECT_EQ(PacketsOf(fake, 2), 10u);  // "a" moved
  EXPECT_EQ(PacketsOf(fake, 3), 30u);
  EXPECT_EQ(PacketsOf(fake, 4), 50u);
  // What the rules are does not depend on where their counts started.
  EXPECT_EQ(*fake.Dump("t"), CountedProgram({"new", "dup", "a", "dup", "drop"}));

  // Nothing counted: nothing to carry.
  Transaction again = FullReplace(CountedProgram({"a"}));
  EXPECT_EQ(CarryCounters({}, &again), 0u);
  EXPECT_EQ(again.ToNftText().find("packets"), std::string::npos);
}

}  // namespace
}  // namespace netpol::nft
