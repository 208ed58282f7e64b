// NETPOL_SKIP_OR_FAIL: a skip by hand, a fatal failure when NETPOL_CI=1; either way the rest of
// the function does not run.
#include "engine/util/skip_or_fail.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace {

bool reached_end = false;

void CannotRun(bool cannot) {
  reached_end = false;
  if (cannot) NETPOL_SKIP_OR_FAIL("tool " << 42 << " missing");
  else reached_end = true;  // the macro leaves the caller's if/else intact
  reached_end = true;
}

struct Outcome {
  ::testing::TestPartResultArray results;
  bool reached_end = false;
};

void RunWith(const char* ci, Outcome* o) {
  if (ci == nullptr) {
    unsetenv("NETPOL_CI");
  } else {
    setenv("NETPOL_CI", ci, 1);
  }
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &o->results);
    CannotRun(true);
  }
  o->reached_end = reached_end;
}

class SkipOrFailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* ci = std::getenv("NETPOL_CI");
    if (ci != nullptr) saved_ = ci;
    had_ = ci != nullptr;
  }
  void TearDown() override {
    if (had_) {
      setenv("NETPOL_CI", saved_.c_str(), 1);
    } else {
      unsetenv("NETPOL_CI");
    }
  }
  std::string saved_;
  bool had_ = false;
};

TEST_F(SkipOrFailTest, SkipsWithoutCi) {
  for (const char* ci : {static_cast<const char*>(nullptr), "", "0"}) {
    Outcome o;
    RunWith(ci, &o);
    ASSERT_EQ(o.results.size(), 1);
    EXPECT_TRUE(o.results.GetTestPartResult(0).skipped());
    EXPECT_STREQ(o.results.GetTestPartResult(0).message(),
                 "tool 42 missing (a failure when NETPOL_CI=1)");
    EXPECT_FALSE(o.reached_end);
  }
}

TEST_F(SkipOrFailTest, FailsInCi) {
  Outcome o;
  RunWith("1", &o);
  ASSERT_EQ(o.results.size(), 1);
  EXPECT_TRUE(o.results.GetTestPartResult(0).fatally_failed());
  EXPECT_STREQ(o.results.GetTestPartResult(0).message(),
               "Failed\ncannot run, and NETPOL_CI=1 makes that a failure: tool 42 missing");
  EXPECT_FALSE(o.reached_end);
}

TEST_F(SkipOrFailTest, RunsOnWhenItCan) {
  setenv("NETPOL_CI", "1", 1);
  CannotRun(false);
  EXPECT_TRUE(reached_end);
}

}  // namespace
