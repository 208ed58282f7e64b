// One table of (object kind, verb, nft text, result on FakeBackend) cases. The last test checks
// that every kind was tested with every verb, so a new verb or kind cannot go untested.
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/nft/diff.h"
#include "engine/nft/fake.h"
#include "engine/nft/objects_cases.h"
#include "engine/nft/program.h"
#include "engine/nft/test_util.h"
#include "engine/nft/transaction.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::nft {
namespace {

using namespace ::netpol::nft::testing;  // NOLINT: test shorthands
using ::testing::HasSubstr;

class ObjectsTest : public ::testing::TestWithParam<Case> {};

TEST_P(ObjectsTest, TextAndResult) {
  const Case& c = GetParam();
  FakeBackend fake;
  Program before;
  if (!c.from_nothing) {
    before = Fixture();
    ASSERT_TRUE(fake.Commit(FullReplace(before)).ok());
  }
  Transaction tx("t");
  c.build(tx);
  std::string text = tx.ToNftText();
  if (!text.empty() && text.back() == '\n') text.pop_back();
  EXPECT_EQ(text, c.text);
  absl::Status s = fake.Commit(tx);
  EXPECT_EQ(s.code(), c.code) << s;
  if (!c.error.empty()) {
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.error));
  }
  auto dump = fake.Dump("t");
  if (!s.ok()) {
    // A failed commit leaves the state as it was.
    if (c.from_nothing) {
      EXPECT_EQ(dump.status().code(), absl::StatusCode::kNotFound);
    } else {
      ASSERT_TRUE(dump.ok());
      EXPECT_EQ(*dump, before);
    }
    return;
  }
  if (c.check) {
    ASSERT_TRUE(dump.ok()) << dump.status();
    c.check(*dump);
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, ObjectsTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

TEST(ObjectsCoverageTest, EveryKindWasTestedWithEveryVerb) {
  const std::vector<ObjectKind> kinds = {ObjectKind::kTable, ObjectKind::kChain, ObjectKind::kRule,
                                         ObjectKind::kSet, ObjectKind::kElement};
  const std::vector<Verb> verbs = {Verb::kAdd, Verb::kCreate, Verb::kFlush, Verb::kDelete,
                                   Verb::kDestroy};
  std::set<std::pair<int, int>> covered;
  std::set<std::string> names;
  for (const Case& c : Cases()) {
    covered.insert({static_cast<int>(c.kind), static_cast<int>(c.verb)});
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case name " << c.name;
    // The case's kind and verb must be what its first command does.
    Transaction tx("t");
    c.build(tx);
    ASSERT_FALSE(tx.empty()) << c.name;
    const Command& last = tx.commands().back();
    EXPECT_EQ(static_cast<int>(last.kind), static_cast<int>(c.kind)) << c.name;
    EXPECT_EQ(static_cast<int>(last.verb), static_cast<int>(c.verb)) << c.name;
  }
  for (ObjectKind k : kinds) {
    for (Verb v : verbs) {
      EXPECT_TRUE(covered.count({static_cast<int>(k), static_cast<int>(v)}))
          << "no case for kind " << static_cast<int>(k) << " with verb " << static_cast<int>(v);
    }
  }
}

}  // namespace
}  // namespace netpol::nft
