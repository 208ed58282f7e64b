#include "agent/log.h"

#include <string>

#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

TEST(LogTest, AMessageIsOneLineWhateverItQuotes) {
  struct Case {
    std::string message, want;
  } cases[] = {
      {"synced generation 7", "T I synced generation 7\n"},
      {"attach default/x\n2026-01-01T00:00:00.000Z I forged line",
       "T I attach default/x\\n2026-01-01T00:00:00.000Z I forged line\n"},
      {"a\rb\tc", "T I a\\rb\\tc\n"},
      {std::string("nul\0esc\x1b del\x7f", 13), "T I nul\\x00esc\\x1b del\\x7f\n"},
      // The backslash is escaped too, so an escape in the output always stands for a byte.
      {"already \\n escaped", "T I already \\\\n escaped\n"},
      {"caf\xc3\xa9 \"quoted\"", "T I caf\xc3\xa9 \"quoted\"\n"},
  };
  for (const Case& c : cases) {
    const std::string line = FormatLogLine("T", "I", c.message);
    EXPECT_EQ(line, c.want);
    EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  }
}

}  // namespace
}  // namespace netpol::agent
