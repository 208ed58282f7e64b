#include "engine/util/flags.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace netpol::util {
namespace {

// Runs DashedFlagsToUnderscores over `args` (argv[0] included) and returns what it hands on.
std::vector<std::string> Rewrite(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  std::vector<std::string> storage;
  std::vector<char*> out =
      DashedFlagsToUnderscores(static_cast<int>(argv.size()), argv.data(), &storage);
  std::vector<std::string> result;
  for (char* p : out) result.emplace_back(p);
  return result;
}

struct Case {
  std::string name;
  std::vector<std::string> in;
  std::vector<std::string> want;
};

TEST(DashedFlagsToUnderscoresTest, Table) {
  const std::vector<Case> cases = {
      {"dashed name with value",
       {"prog", "--node-name=worker-1"},
       {"prog", "--node_name=worker-1"}},
      {"single dash prefix", {"prog", "-node-name=a"}, {"prog", "-node_name=a"}},
      {"dashed name, value in next argument",
       {"prog", "--etcd-endpoints", "http://etcd-0:2379"},
       {"prog", "--etcd_endpoints", "http://etcd-0:2379"}},
      {"value with dashes and equals untouched",
       {"prog", "--from=ns-a/pod-b", "--label=a-b=c-d"},
       {"prog", "--from=ns-a/pod-b", "--label=a-b=c-d"}},
      {"underscored and plain names unchanged",
       {"prog", "--node_name=x", "--o=yaml"},
       {"prog", "--node_name=x", "--o=yaml"}},
      {"positional arguments unchanged",
       {"prog", "get", "network-policies", "my-policy"},
       {"prog", "get", "network-policies", "my-policy"}},
      {"double dash stops rewriting",
       {"prog", "--dry-run", "--", "--not-a-flag", "x-y"},
       {"prog", "--dry_run", "--", "--not-a-flag", "x-y"}},
      {"lone dash and empty argument", {"prog", "-", ""}, {"prog", "-", ""}},
      {"only dashes", {"prog", "---"}, {"prog", "---"}},
      {"argv0 with dashes untouched",
       {"/usr/bin/netpol-agent", "--x-y"},
       {"/usr/bin/netpol-agent", "--x_y"}},
      {"no arguments", {"prog"}, {"prog"}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Rewrite(c.in), c.want) << c.name;
  }
}

TEST(DashedFlagsToUnderscoresTest, ReturnedPointersPointIntoStorage) {
  std::string a0 = "prog", a1 = "--node-name=n";
  char* argv[] = {a0.data(), a1.data()};
  std::vector<std::string> storage;
  std::vector<char*> out = DashedFlagsToUnderscores(2, argv, &storage);
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(storage.size(), 2u);
  EXPECT_EQ(out[1], storage[1].data());
  EXPECT_EQ(a1, "--node-name=n");  // the caller's argv is not modified
}

}  // namespace
}  // namespace netpol::util
