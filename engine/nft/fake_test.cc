// FakeBackend beyond the per-command cases of objects_test: atomicity, fault injection, loops
// through verdict maps, rule-level checks, ValidateProgram.
#include "engine/nft/fake.h"

#include <string>

#include "engine/nft/diff.h"
#include "engine/nft/random_program.h"
#include "engine/nft/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::nft {
namespace {

using namespace ::netpol::nft::testing;  // NOLINT: test shorthands
using ::testing::HasSubstr;

Program Small() {
  Program p;
  p.table = "t";
  p.sets["m"] = MakeSet("m", {FieldType::kIpv4Addr}, false, true);
  Chain base = MakeBase("base", Hook::kForward, 0);
  base.rules.push_back(MakeRule({VmapLookup({Selector::kIpDaddr}, "m")}, std::nullopt));
  p.chains["base"] = base;
  p.chains["c"] = MakeChain("c");
  p.elements["m"] = {EV({A("10.0.0.1")}, Verdict::Jump("c"))};
  return p;
}

TEST(FakeBackendTest, FailedCommitLeavesEverythingUntouched) {
  FakeBackend fake;
  ASSERT_TRUE(fake.Commit(FullReplace(Small())).ok());
  Transaction tx("t");
  tx.AddChain(MakeChain("d"));
  tx.AddElements(Small().sets.at("m"), {EV({A("10.0.0.2")}, Verdict::Jump("d"))});
  tx.FlushChain("base");
  tx.DeleteChain("missing");  // fails last
  absl::Status s = fake.Commit(tx);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("delete chain missing: No such file or directory"));
  EXPECT_EQ(*fake.Dump("t"), Small());
}

TEST(FakeBackendTest, InjectedFailureHitsTheNthCommitOnly) {
  FakeBackend fake;
  fake.FailCommit(2, absl::UnavailableError("netlink socket gone"));
  EXPECT_TRUE(fake.Commit(FullReplace(Small())).ok());
  Transaction tx("t");
  tx.AddChain(MakeChain("d"));
  absl::Status s = fake.Commit(tx);
  EXPECT_EQ(s, absl::UnavailableError("netlink socket gone"));
  EXPECT_EQ(fake.Dump("t")->chains.count("d"), 0u);
  EXPECT_TRUE(fake.Commit(tx).ok());
  EXPECT_EQ(fake.Dump("t")->chains.count("d"), 1u);
  EXPECT_EQ(fake.commit_count(), 3);
}

// A program whose chain c counts its two rules.
Program Counted() {
  Program p = Small();
  p.sets["s"] = MakeSet("s", {FieldType::kIpv4Addr});
  p.chains["c"].rules.push_back(
      MakeRule({Lookup({Selector::kIpSaddr}, "s")}, Verdict::Return(), "allow", true));
  p.chains["c"].rules.push_back(MakeRule({}, Verdict::Drop(), "deny", true));
  p.elements["s"] = {E({A("10.0.1.1")})};
  return p;
}

TEST(FakeBackendTest, RuleCountsSurviveElementChangesAndStartOverWithTheirChain) {
  FakeBackend fake;
  ASSERT_TRUE(fake.Commit(FullReplace(Counted())).ok());
  ASSERT_TRUE(fake.AddPackets("t", "c", 0, 3, 180).ok());
  ASSERT_TRUE(fake.AddPackets("t", "c", 1, 2, 120).ok());
  ASSERT_TRUE(fake.AddPackets("t", "c", 0, 1, 60).ok());
  const std::vector<RuleCount> counted = {{"c", 0, "allow", 4, 240}, {"c", 1, "deny", 2, 120}};
  EXPECT_EQ(*fake.ReadCounters("t"), counted);

  Program more = Counted();
  more.elements["s"].push_back(E({A("10.0.1.2")}));
  more.elements["m"].push_back(EV({A("10.0.0.2")}, Verdict::Jump("c")));
  Transaction elements = Diff(Counted(), more);
  ASSERT_TRUE(fake.Commit(elements).ok());
  EXPECT_EQ(*fake.ReadCounters("t"), counted);

  Program edited = more;
  edited.chains["c"].rules[1].comment = "deny, edited";
  ASSERT_TRUE(fake.Commit(Diff(more, edited)).ok());  // flushes c and adds its rules again
  const std::vector<RuleCount> fresh = {{"c", 0, "allow", 0, 0}, {"c", 1, "deny, edited", 0, 0}};
  EXPECT_EQ(*fake.ReadCounters("t"), fresh);

  EXPECT_EQ(fake.AddPackets("t", "base", 0, 1, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake.AddPackets("t", "c", 2, 1, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fake.ReadCounters("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST(FakeBackendTest, DefaultInjectedFailureIsUnavailable) {
  FakeBackend fake;
  fake.FailCommit(1);
  EXPECT_EQ(fake.Commit(FullReplace(Small())).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(fake.Dump("t").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(fake.Tables().empty());
}

TEST(FakeBackendTest, LoopThroughVerdictMapIsRefused) {
  FakeBackend fake;
  ASSERT_TRUE(fake.Commit(FullReplace(Small())).ok());
  Transaction tx("t");
  tx.AddRule("c", MakeRule({VmapLookup({Selector::kIpSaddr}, "m")}, std::nullopt));
  absl::Status s = fake.Commit(tx);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("jump loop c -> c: Too many links"));
}

TEST(FakeBackendTest, TablesAreIndependent) {
  FakeBackend fake;
  Program a = Small(), b = Small();
  b.table = "u";
  ASSERT_TRUE(fake.Commit(FullReplace(a)).ok());
  ASSERT_TRUE(fake.Commit(FullReplace(b)).ok());
  Transaction del("t");
  del.DeleteTable();
  ASSERT_TRUE(fake.Commit(del).ok());
  EXPECT_EQ(fake.Tables(), std::vector<std::string>{"u"});
  EXPECT_EQ(*fake.Dump("u"), b);
}

TEST(FakeBackendTest, RenderIsRenderProgramOfDump) {
  FakeBackend fake;
  ASSERT_TRUE(fake.Commit(FullReplace(ExampleProgram())).ok());
  EXPECT_EQ(*fake.Render("netpol"), RenderProgram(ExampleProgram()));
  EXPECT_EQ(fake.Render("nope").status().code(), absl::StatusCode::kNotFound);
}

struct RuleErrorCase {
  std::string name;
  Rule rule;
  std::string error;
};

class FakeRuleErrorTest : public ::testing::TestWithParam<RuleErrorCase> {};

TEST_P(FakeRuleErrorTest, Refused) {
  FakeBackend fake;
  Program p = Small();
  p.sets["s4"] = MakeSet("s4", {FieldType::kIpv4Addr});
  p.sets["s6"] = MakeSet("s6", {FieldType::kIpv6Addr});
  ASSERT_TRUE(fake.Commit(FullReplace(p)).ok());
  Transaction tx("t");
  tx.AddRule("c", GetParam().rule);
  absl::Status s = fake.Commit(tx);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(GetParam().error));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, FakeRuleErrorTest,
    ::testing::Values(
        RuleErrorCase{
            "IpAndIp6InOneRule",
            MakeRule({Lookup({Selector::kIpSaddr}, "s4"), Lookup({Selector::kIp6Daddr}, "s6")},
                     Verdict::Accept()),
            "conflicting protocols"},
        RuleErrorCase{"NfprotoContradictsSelector",
                      MakeRule({NfProtoMatch{Family::kV6}, Lookup({Selector::kIpSaddr}, "s4")},
                               Verdict::Accept()),
                      "conflicting protocols"},
        RuleErrorCase{
            "VmapNotLast",
            MakeRule({VmapLookup({Selector::kIpSaddr}, "m"), FibLocalMatch{true}}, std::nullopt),
            "must be the rule's last match"},
        RuleErrorCase{"VmapWithCounter",
                      MakeRule({VmapLookup({Selector::kIpSaddr}, "m")}, std::nullopt, "", true),
                      "a vmap rule has no counter"},
        RuleErrorCase{"EmptyCtState", MakeRule({CtStateMatch{}}, Verdict::Accept()),
                      "ct state match lists no state"},
        RuleErrorCase{"ReversedIcmpv6Range", MakeRule({Icmpv6TypeMatch{10, 5}}, Verdict::Accept()),
                      "is reversed"},
        RuleErrorCase{"InterfaceNameTooLong",
                      MakeRule({IfnameMatch{true, "a-very-long-ifname"}}, Verdict::Accept()),
                      "interface name"},
        RuleErrorCase{"WildcardInTheMiddle",
                      MakeRule({IfnameMatch{true, "ve*th"}}, Verdict::Accept()),
                      "only a trailing '*' wildcard is allowed"},
        RuleErrorCase{"AcceptNamingAChain", MakeRule({}, Verdict{Verdict::Kind::kAccept, "c"}),
                      "only jump and goto name a chain"},
        RuleErrorCase{"CommentTooLong", MakeRule({}, Verdict::Accept(), std::string(129, 'x')),
                      "comment is 129 bytes, at most 128 allowed"}),
    [](const ::testing::TestParamInfo<RuleErrorCase>& info) { return info.param.name; });

TEST(ValidateProgramTest, RandomProgramsAreValid) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    for (int variant = 1; variant <= 3; ++variant) {
      absl::Status s = ValidateProgram(RandomProgram(seed, variant));
      EXPECT_TRUE(s.ok()) << "seed " << seed << " variant " << variant << ": " << s;
    }
  }
  EXPECT_TRUE(ValidateProgram(ExampleProgram()).ok()) << ValidateProgram(ExampleProgram());
}

TEST(ValidateProgramTest, InconsistentProgramsAreRefused) {
  Program p = Small();
  p.chains["x"] = MakeChain("y");
  EXPECT_THAT(std::string(ValidateProgram(p).message()), HasSubstr("chains[x] is named y"));

  p = Small();
  p.elements["nope"] = {E({A("10.0.0.1")})};
  EXPECT_THAT(std::string(ValidateProgram(p).message()), HasSubstr("elements[nope]: no such set"));

  p = Small();
  p.elements["m"].push_back(EV({A("10.0.0.1")}, Verdict::Drop()));
  EXPECT_THAT(std::string(ValidateProgram(p).message()),
              HasSubstr("duplicate key 10.0.0.1 : drop"));

  p = Small();
  p.chains["fwd"] = MakeChain("fwd");
  EXPECT_THAT(std::string(ValidateProgram(p).message()),
              HasSubstr("chain name \"fwd\": is an nft keyword"));

  p = Small();
  p.table = "";
  EXPECT_EQ(ValidateProgram(p).code(), absl::StatusCode::kInvalidArgument);
}

TEST(TransactionTest, AddProgramOrdersTableSetsChainsRulesElements) {
  Transaction tx("netpol");
  tx.AddProgram(ExampleProgram());
  std::vector<ObjectKind> kinds;
  for (const Command& c : tx.commands()) {
    if (kinds.empty() || kinds.back() != c.kind) kinds.push_back(c.kind);
  }
  EXPECT_EQ(kinds,
            (std::vector<ObjectKind>{ObjectKind::kTable, ObjectKind::kSet, ObjectKind::kChain,
                                     ObjectKind::kRule, ObjectKind::kElement}));
  size_t elements = 0;
  for (const auto& [name, elems] : ExampleProgram().elements) elements += elems.size();
  EXPECT_EQ(tx.ElementCount(), elements);
  EXPECT_FALSE(tx.empty());
}

}  // namespace
}  // namespace netpol::nft
