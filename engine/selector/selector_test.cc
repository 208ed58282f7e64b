#include "engine/selector/selector.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace netpol {
namespace {

using Op = LabelSelectorRequirement::Op;

struct Case {
  std::string name;
  LabelSelector selector;
  Labels labels;
  bool want;
};

TEST(MatchesTest, Table) {
  const std::vector<Case> cases = {
      {"empty selects everything", {}, {{"a", "b"}}, true},
      {"empty selects unlabeled", {}, {}, true},
      {"matchLabels equal", {{{"app", "web"}}, {}}, {{"app", "web"}, {"x", "y"}}, true},
      {"matchLabels different value", {{{"app", "web"}}, {}}, {{"app", "db"}}, false},
      {"matchLabels missing key", {{{"app", "web"}}, {}}, {}, false},
      {"matchLabels empty value", {{{"app", ""}}, {}}, {{"app", ""}}, true},
      {"matchLabels all must hold", {{{"a", "1"}, {"b", "2"}}, {}}, {{"a", "1"}}, false},
      {"In hit", {{}, {{"tier", Op::kIn, {"a", "b"}}}}, {{"tier", "b"}}, true},
      {"In miss", {{}, {{"tier", Op::kIn, {"a", "b"}}}}, {{"tier", "c"}}, false},
      {"In absent key", {{}, {{"tier", Op::kIn, {"a"}}}}, {}, false},
      {"NotIn absent key", {{}, {{"tier", Op::kNotIn, {"a"}}}}, {}, true},
      {"NotIn other value", {{}, {{"tier", Op::kNotIn, {"a"}}}}, {{"tier", "b"}}, true},
      {"NotIn listed value", {{}, {{"tier", Op::kNotIn, {"a"}}}}, {{"tier", "a"}}, false},
      {"Exists present", {{}, {{"k", Op::kExists, {}}}}, {{"k", ""}}, true},
      {"Exists absent", {{}, {{"k", Op::kExists, {}}}}, {{"j", ""}}, false},
      {"DoesNotExist absent", {{}, {{"k", Op::kDoesNotExist, {}}}}, {}, true},
      {"DoesNotExist present", {{}, {{"k", Op::kDoesNotExist, {}}}}, {{"k", "v"}}, false},
      {"labels and expressions ANDed",
       {{{"app", "web"}}, {{"env", Op::kIn, {"prod"}}}},
       {{"app", "web"}, {"env", "dev"}},
       false},
      {"labels and expressions both hold",
       {{{"app", "web"}}, {{"env", Op::kIn, {"prod"}}, {"debug", Op::kDoesNotExist, {}}}},
       {{"app", "web"}, {"env", "prod"}},
       true},
  };
  for (const Case& c : cases) EXPECT_EQ(Matches(c.selector, c.labels), c.want) << c.name;
}

TEST(SelectorStringTest, Table) {
  struct S {
    std::string name;
    LabelSelector selector;
    std::string want;
  };
  const std::vector<S> cases = {
      {"empty", {}, "<all>"},
      {"labels sorted", {{{"tier", "x"}, {"app", "web"}}, {}}, "app=web,tier=x"},
      {"all operators",
       {{{"app", "web"}},
        {{"tier", Op::kIn, {"b", "a", "b"}},
         {"debug", Op::kDoesNotExist, {}},
         {"env", Op::kNotIn, {"dev"}},
         {"zone", Op::kExists, {}}}},
       "app=web,!debug,env notin (dev),tier in (a,b),zone"},
  };
  for (const S& c : cases) EXPECT_EQ(SelectorString(c.selector), c.want) << c.name;
}

}  // namespace
}  // namespace netpol
