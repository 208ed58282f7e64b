// Keeps RULESET.md honest: its example state, compiled for the node it names,
// must render to exactly the nft text printed beneath it.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/model/loader.h"
#include "engine/nft/transaction.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

std::string ReadRuleset() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  std::string path = absl::StrCat(srcdir ? srcdir : ".", "/", workspace ? workspace : "netpol",
                                  "/engine/compiler/RULESET.md");
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Returns the body of the first fenced block after the line `<!-- marker -->`,
// or "" if none.
std::string FencedBlockAfter(const std::string& doc, const std::string& marker) {
  size_t at = doc.find("<!-- " + marker + " -->");
  if (at == std::string::npos) return "";
  size_t fence = doc.find("```", at);
  if (fence == std::string::npos) return "";
  size_t body = doc.find('\n', fence);
  if (body == std::string::npos) return "";
  ++body;
  size_t end = doc.find("\n```", body - 1);
  if (end == std::string::npos) return "";
  return doc.substr(body, end + 1 - body);
}

TEST(RulesetDocTest, ExampleOutputIsWhatTheCompilerProduces) {
  const std::string doc = ReadRuleset();
  ASSERT_FALSE(doc.empty()) << "RULESET.md not found in runfiles";
  const std::string yaml = FencedBlockAfter(doc, "example-state");
  const std::string want = FencedBlockAfter(doc, "example-output");
  ASSERT_FALSE(yaml.empty()) << "no <!-- example-state --> block";
  ASSERT_FALSE(want.empty()) << "no <!-- example-output --> block";

  absl::StatusOr<LoadResult> loaded = LoadYaml(yaml, LoadOptions{"RULESET.md", true});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  State state;
  for (const Object& o : loaded->objects) Upsert(o, &state);
  CompileOptions opts;
  opts.node_name = "node-1";
  absl::StatusOr<nft::Program> program = Compile(state, opts);
  ASSERT_TRUE(program.ok()) << program.status();
  const std::string got = nft::RenderProgram(*program);
  EXPECT_EQ(got, want) << "RULESET.md's example is stale; the compiler now prints:\n" << got;
}

}  // namespace
}  // namespace netpol::compiler
