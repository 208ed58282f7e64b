// --help and --version as every binary handles them: the flags a program defines, with dashed
// names and defaults, and the build's version line.
#include "engine/util/program.h"

#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(std::string, node_name, "node-x", "This node's name");
ABSL_FLAG(bool, dry_run, false, "Change nothing");

namespace netpol::util {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

bool Handle(std::vector<std::string> args, std::string* out) {
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  std::ostringstream os;
  bool handled = HandleHelpAndVersion(static_cast<int>(argv.size()), argv.data(), "prog",
                                      "prog: does things.\nUsage: prog [flags]", os);
  *out = os.str();
  return handled;
}

TEST(ProgramTest, HelpListsTheProgramsFlagsDashedWithDefaults) {
  for (const char* flag : {"-h", "--help", "-help", "--helpfull"}) {
    std::string out;
    ASSERT_TRUE(Handle({"--node-name=a", flag}, &out)) << flag;
    EXPECT_THAT(out, HasSubstr("prog: does things.\nUsage: prog [flags]\n\nFlags:\n"));
    EXPECT_THAT(out, HasSubstr("--node-name=VALUE"));
    EXPECT_THAT(out, HasSubstr("This node's name (default: node-x)"));
    EXPECT_THAT(out, HasSubstr("--dry-run "));
    EXPECT_THAT(out, Not(HasSubstr("flagfile")));  // Abseil's own flags are left out
  }
}

TEST(ProgramTest, VersionSaysVersionCommitAndMode) {
  std::string out;
  ASSERT_TRUE(Handle({"--version"}, &out));
  EXPECT_EQ(out, VersionLine("prog") + "\n");
  EXPECT_THAT(out, HasSubstr(std::string("prog ") + BuildVersion() + " (commit "));
  EXPECT_THAT(out, HasSubstr(std::string(BuildCompilationMode()) + " build)"));
  EXPECT_FALSE(std::string(BuildVersion()).empty());
  EXPECT_FALSE(std::string(BuildCommit()).empty());
}

TEST(ProgramTest, OtherArgumentsAndValuesAfterDoubleDashAreNotHelp) {
  std::string out;
  EXPECT_FALSE(Handle({"get", "pods", "-n", "x"}, &out));
  EXPECT_FALSE(Handle({"--", "--help"}, &out));
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace netpol::util
