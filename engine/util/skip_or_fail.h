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

}  // namespace netpol::testing

// The switch keeps a caller's `if (...) NETPOL_SKIP_OR_FAIL(...); else ...` unambiguous.
#define NETPOL_SKIP_OR_FAIL(reason)                                                     \
  switch (0)                                                                            \
  case 0:                                                                               \
  default:                                                                              \
    if (::netpol::testing::SkipIsFailure()) {                                           \
      GTEST_FAIL() << "cannot run, and NETPOL_CI=1 makes that a failure: " << reason;  \
    } else                                                                              \
      GTEST_SKIP() << reason << " (a failure when NETPOL_CI=1)"

#endif  // NETPOL_ENGINE_UTIL_SKIP_OR_FAIL_H_
