// Tests that cannot run here (not root, a tool missing, a data directory absent) skip visibly
// when run by hand and FAIL in CI: `.ci/run` exports NETPOL_CI=1 and `tools/test` forwards it
// to every test (`--test_env=NETPOL_CI`), where a skip would otherwise read as a pass.
//
//   if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root (network namespaces, nftables)");
//
// Like GTEST_SKIP()/GTEST_FAIL() it returns from the current function (use it in the test body or
// in SetUp; gtest runs no test body after a fatal failure or a skip in SetUp). `reason` is
// anything gtest can stream.
#ifndef NETPOL_ENGINE_UTIL_SKIP_OR_FAIL_H_
#define NETPOL_ENGINE_UTIL_SKIP_OR_FAIL_H_

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace netpol::testing {

// True when NETPOL_CI=1: a test that cannot run must fail rather than skip.
inline bool SkipIsFailure() {
  const char* ci = std::getenv("NETPOL_CI");
  return ci != nullptr && std::strcmp(ci, "1") == 0;
}

namespace skip_or_fail_internal {
inline ::testing::TestPartResult::Type Type() {
  return SkipIsFailure() ? ::testing::TestPartResult::kFatalFailure
                         : ::testing::TestPartResult::kSkip;
}
// What gtest's own GTEST_FAIL() / GTEST_SKIP() put before the message.
inline const char* Head() { return SkipIsFailure() ? "Failed" : ""; }
inline const char* Lead() {
  return SkipIsFailure() ? "cannot run, and NETPOL_CI=1 makes that a failure: " : "";
}
inline const char* Tail() { return SkipIsFailure() ? "" : " (a failure when NETPOL_CI=1)"; }
}  // namespace skip_or_fail_internal

}  // namespace netpol::testing

// One expression, built as gtest builds GTEST_FAIL() and GTEST_SKIP(): no if/else of its own.
#define NETPOL_SKIP_OR_FAIL(reason)                                                       \
  return ::testing::internal::AssertHelper(                                               \
             ::netpol::testing::skip_or_fail_internal::Type(), __FILE__, __LINE__,        \
             ::netpol::testing::skip_or_fail_internal::Head()) =                          \
             ::testing::Message() << ::netpol::testing::skip_or_fail_internal::Lead()     \
                                  << reason << ::netpol::testing::skip_or_fail_internal::Tail()

#endif  // NETPOL_ENGINE_UTIL_SKIP_OR_FAIL_H_
