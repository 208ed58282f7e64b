#include "engine/selector/label_index.h"

#include <random>
#include <string>
#include <vector>

#include "engine/selector/selector.h"
#include "gtest/gtest.h"

namespace netpol {
namespace {

using Op = LabelSelectorRequirement::Op;

// Brute force: Matches on every object.
std::vector<std::string> BruteForce(const std::map<std::string, Labels>& objects,
                                    const LabelSelector& sel) {
  std::vector<std::string> out;
  for (const auto& [id, labels] : objects) {
    if (Matches(sel, labels)) out.push_back(id);
  }
  return out;
}

TEST(LabelIndexTest, SmallCases) {
  LabelIndex index;
  index.Set("a", {{"team", "x"}, {"env", "prod"}});
  index.Set("b", {{"team", "y"}});
  index.Set("c", {});
  LabelSelector team_x{{{"team", "x"}}, {}};
  EXPECT_EQ(index.Match(team_x), std::vector<std::string>{"a"});
  EXPECT_EQ(index.CandidateCount(team_x), 1u);
  EXPECT_EQ(index.Match({}), (std::vector<std::string>{"a", "b", "c"}));
  LabelSelector not_x{{}, {{"team", Op::kNotIn, {"x"}}}};
  EXPECT_EQ(index.Match(not_x), (std::vector<std::string>{"b", "c"}));
  LabelSelector exists{{}, {{"team", Op::kExists, {}}}};
  EXPECT_EQ(index.Match(exists), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(index.CandidateCount(exists), 2u);
  LabelSelector absent{{}, {{"env", Op::kDoesNotExist, {}}}};
  EXPECT_EQ(index.Match(absent), (std::vector<std::string>{"b", "c"}));
  LabelSelector in{{}, {{"team", Op::kIn, {"y", "z", "y"}}}};
  EXPECT_EQ(index.Match(in), std::vector<std::string>{"b"});
  LabelSelector none{{{"team", "q"}}, {}};
  EXPECT_TRUE(index.Match(none).empty());
  EXPECT_EQ(index.CandidateCount(none), 0u);
  // Relabel and erase keep the index exact.
  index.Set("a", {{"team", "y"}});
  EXPECT_TRUE(index.Match(team_x).empty());
  EXPECT_EQ(index.Match(in), (std::vector<std::string>{"a", "b"}));
  index.Erase("b");
  index.Erase("nothing");
  EXPECT_EQ(index.Match(in), std::vector<std::string>{"a"});
  EXPECT_EQ(index.Match(absent), (std::vector<std::string>{"a", "c"}));
  ASSERT_NE(index.Find("a"), nullptr);
  EXPECT_EQ(index.Find("b"), nullptr);
  EXPECT_EQ(index.size(), 2u);
}

// Random objects, random edits and random selectors: the index answers what Matches on every
// object answers, after every edit.
TEST(LabelIndexTest, RandomAgreesWithBruteForce) {
  std::mt19937 rng(20261206);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const std::vector<std::string> keys = {"team", "env", "app", "tier", "zone"};
  const std::vector<std::string> values = {"a", "b", "c", "d", ""};
  auto random_labels = [&] {
    Labels l;
    for (const std::string& k : keys) {
      if (pick(3) != 0) l[k] = values[static_cast<size_t>(pick(5))];
    }
    return l;
  };
  auto random_selector = [&] {
    LabelSelector s;
    for (int i = pick(3); i > 0; --i) {
      s.match_labels[keys[static_cast<size_t>(pick(5))]] = values[static_cast<size_t>(pick(5))];
    }
    for (int i = pick(4); i > 0; --i) {
      LabelSelectorRequirement r;
      r.key = keys[static_cast<size_t>(pick(5))];
      r.op = static_cast<Op>(pick(4));
      if (r.op == Op::kIn || r.op == Op::kNotIn) {
        for (int j = 1 + pick(3); j > 0; --j) r.values.push_back(values[static_cast<size_t>(pick(5))]);
      }
      s.match_expressions.push_back(std::move(r));
    }
    return s;
  };
  int nonempty = 0;
  for (int round = 0; round < 200; ++round) {
    LabelIndex index;
    std::map<std::string, Labels> objects;
    const int n = 1 + pick(60);
    for (int step = 0; step < 3 * n; ++step) {
      const std::string id = "o" + std::to_string(pick(n));
      if (pick(4) == 0) {
        index.Erase(id);
        objects.erase(id);
      } else {
        Labels l = random_labels();
        index.Set(id, l);
        objects[id] = l;
      }
      ASSERT_EQ(index.size(), objects.size());
      for (int q = 0; q < 3; ++q) {
        const LabelSelector sel = random_selector();
        const std::vector<std::string> want = BruteForce(objects, sel);
        ASSERT_EQ(index.Match(sel), want) << SelectorString(sel);
        ASSERT_GE(index.CandidateCount(sel), want.size()) << SelectorString(sel);
        if (!want.empty()) ++nonempty;
      }
    }
  }
  EXPECT_GT(nonempty, 1000);  // the selectors do match things
}

}  // namespace
}  // namespace netpol
