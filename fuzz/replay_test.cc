// Replays every saved input of one fuzz target through its LLVMFuzzerTestOneInput: the seed
// corpus (fuzz/corpus/<target>/) and the inputs that once crashed it (fuzz/regressions/<target>/).
// A crash or violated invariant aborts the test; the last "replaying" line names the input.
//
// Usage (from Bazel): <test> <target>; the files come from the test's runfiles.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string g_target;

std::filesystem::path RunfilesRoot() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr || workspace == nullptr) return std::filesystem::current_path();
  return std::filesystem::path(srcdir) / workspace;
}

std::vector<std::filesystem::path> Inputs(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name != "README.md" && name[0] != '.') {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

void Replay(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  ASSERT_TRUE(in) << "cannot read " << file;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::fprintf(stderr, "replaying %s (%zu bytes)\n", file.c_str(), bytes.size());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

TEST(FuzzReplay, SeedCorpus) {
  ASSERT_FALSE(g_target.empty()) << "usage: replay_test <target>";
  const auto files = Inputs(RunfilesRoot() / "fuzz" / "corpus" / g_target);
  // An empty corpus would make this test pass without running the target.
  ASSERT_FALSE(files.empty()) << "no seed inputs in fuzz/corpus/" << g_target;
  for (const auto& f : files) Replay(f);
}

TEST(FuzzReplay, Regressions) {
  ASSERT_FALSE(g_target.empty()) << "usage: replay_test <target>";
  for (const auto& f : Inputs(RunfilesRoot() / "fuzz" / "regressions" / g_target)) Replay(f);
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc > 1) g_target = argv[1];
  return RUN_ALL_TESTS();
}
