// The C++ loader (cases.h) and the Python loader (cases.py) must expand every case file the
// same way, for both families: this runs `cases.py --dump` and compares it with DumpCase().
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/util/skip_or_fail.h"
#include "gtest/gtest.h"
#include "tests/conformance/cases.h"

namespace netpol {
namespace conformance {
namespace {

constexpr char kDir[] = "tests/conformance";
constexpr char kPython[] = "/usr/bin/python3";

std::string RunCommand(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    *status = -1;
    return out;
  }
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

std::string CppDump() {
  absl::StatusOr<Model> model = LoadModel(absl::StrCat(kDir, "/model.yaml"));
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return "";
  absl::StatusOr<std::vector<std::string>> files = CaseFiles(absl::StrCat(kDir, "/cases"));
  EXPECT_TRUE(files.ok()) << files.status();
  if (!files.ok()) return "";
  std::string out;
  for (const std::string& f : *files) {
    for (Family family : {Family::kV4, Family::kV6}) {
      absl::StatusOr<Case> c = LoadCase(*model, f, family);
      EXPECT_TRUE(c.ok()) << c.status();
      if (c.ok()) out += DumpCase(*c);
    }
  }
  return out;
}

TEST(CasesAgreeTest, PythonAndCppDumpsAreIdentical) {
  if (FILE* f = fopen(kPython, "r")) {
    fclose(f);
  } else {
    NETPOL_SKIP_OR_FAIL(kPython << " is not installed");
  }
  int status = 0;
  const std::string py = RunCommand(absl::StrCat(kPython, " ", kDir, "/cases.py --dump --model ",
                                                 kDir, "/model.yaml --cases ", kDir, "/cases 2>&1"),
                                    &status);
  ASSERT_EQ(status, 0) << py;
  const std::string cc = CppDump();
  ASSERT_FALSE(cc.empty());
  if (py == cc) return;
  // Report the first differing line with some context.
  std::vector<std::string> a = absl::StrSplit(py, '\n'), b = absl::StrSplit(cc, '\n');
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::string context;
  for (size_t j = i >= 5 ? i - 5 : 0; j < i; ++j) absl::StrAppend(&context, "  ", a[j], "\n");
  FAIL() << "dumps differ at line " << i + 1 << " (python " << a.size() << " lines, c++ "
         << b.size() << " lines)\n"
         << context << "python: " << (i < a.size() ? a[i] : "<end>") << "\n"
         << "c++:    " << (i < b.size() ? b[i] : "<end>");
}

}  // namespace
}  // namespace conformance
}  // namespace netpol
