// netpolctl's command line before Abseil (cli/args.h) and the kubectl label selector grammar of
// `get -l` (ParseLabelSelector), against what kubectl accepts.
#include "cli/args.h"

#include <string>
#include <vector>

#include "cli/commands.h"
#include "engine/selector/selector.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PreParseTest, EveryFileFlagIsKeptInOrder) {
  PreParsed p = PreParse({"netpolctl", "apply", "-f", "a.yaml", "--filename=b.yaml", "-fc.yaml",
                          "--f", "d.yaml,e.yaml", "-f=f.yaml", "--filename", "g.yaml"});
  EXPECT_THAT(p.files,
              ElementsAre("a.yaml", "b.yaml", "c.yaml", "d.yaml", "e.yaml", "f.yaml", "g.yaml"));
  EXPECT_TRUE(p.files_given);
  EXPECT_THAT(p.args, ElementsAre("netpolctl", "apply"));
}

TEST(PreParseTest, KubectlLongNamesAndAttachedShorthands) {
  PreParsed p = PreParse({"netpolctl", "get", "pods", "--namespace=x", "--output", "name",
                          "--selector=app=web", "--all-namespaces", "-nkube-system", "-oyaml",
                          "-lapp", "--from", "x/a", "-from=x/b"});
  EXPECT_THAT(p.args, ElementsAre("netpolctl", "get", "pods", "--n=x", "--o", "name",
                                  "--l=app=web", "--A", "-n=kube-system", "-o=yaml", "-l=app",
                                  "--from", "x/a", "-from=x/b"));
  EXPECT_FALSE(p.files_given);
}

TEST(PreParseTest, LogsDashFFollowsAndTakesNoFile) {
  PreParsed p = PreParse({"netpolctl", "logs", "-f", "--denied", "-n", "shop"});
  EXPECT_THAT(p.args, ElementsAre("netpolctl", "logs", "--follow", "--denied", "-n", "shop"));
  EXPECT_FALSE(p.files_given);
  // Elsewhere -f still names files, also when "logs" is a file name.
  PreParsed q = PreParse({"netpolctl", "apply", "-f", "logs"});
  EXPECT_THAT(q.files, ElementsAre("logs"));
}

TEST(PreParseTest, NothingAfterDoubleDashAndAMissingValueIsLeftForAbseil) {
  EXPECT_THAT(PreParse({"netpolctl", "get", "--", "-f", "x"}).args,
              ElementsAre("netpolctl", "get", "--", "-f", "x"));
  PreParsed p = PreParse({"netpolctl", "apply", "-f"});
  EXPECT_THAT(p.args, ElementsAre("netpolctl", "apply", "-f"));
  EXPECT_TRUE(p.files.empty());
}

struct SelectorRow {
  std::string selector;
  Labels labels;
  bool matches;
};

class SelectorTest : public ::testing::TestWithParam<SelectorRow> {};

TEST_P(SelectorTest, MatchesAsKubectl) {
  absl::StatusOr<LabelSelector> sel = ParseLabelSelector(GetParam().selector);
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_EQ(Matches(*sel, GetParam().labels), GetParam().matches) << SelectorString(*sel);
}

INSTANTIATE_TEST_SUITE_P(
    Kubectl, SelectorTest,
    ::testing::Values(SelectorRow{"app=web", {{"app", "web"}}, true},
                      SelectorRow{"app=web", {{"app", "db"}}, false},
                      SelectorRow{"app==web", {{"app", "web"}}, true},
                      SelectorRow{"app!=web", {{"app", "db"}}, true},
                      SelectorRow{"app!=web", {}, true},  // != matches a missing key
                      SelectorRow{"app!=web", {{"app", "web"}}, false},
                      SelectorRow{"app=web,tier=front", {{"app", "web"}}, false},
                      SelectorRow{"app=web, tier=front", {{"app", "web"}, {"tier", "front"}}, true},
                      SelectorRow{"env in (a, b)", {{"env", "b"}}, true},
                      SelectorRow{"env in (a,b),app", {{"env", "b"}}, false},
                      SelectorRow{"env notin (a,b)", {{"env", "c"}}, true},
                      SelectorRow{"env notin (a,b)", {}, true},
                      SelectorRow{"env notin (a,b)", {{"env", "a"}}, false},
                      SelectorRow{"app", {{"app", ""}}, true},
                      SelectorRow{"app", {{"x", "y"}}, false},
                      SelectorRow{"!app", {{"x", "y"}}, true},
                      SelectorRow{"!app", {{"app", "x"}}, false},
                      SelectorRow{"example.com/tier=db", {{"example.com/tier", "db"}}, true},
                      SelectorRow{"app=", {{"app", ""}}, true}));

TEST(SelectorTest, BadSelectorsSayWhichRequirement) {
  for (const char* bad : {"app=web,", "=web", "env in a,b", "env in (a b)", "env within (a)",
                          "app=w eb", "!"}) {
    absl::StatusOr<LabelSelector> sel = ParseLabelSelector(bad);
    EXPECT_FALSE(sel.ok()) << bad;
    EXPECT_THAT(sel.status().message(), HasSubstr("invalid label selector")) << bad;
  }
}

}  // namespace
}  // namespace netpol::cli
