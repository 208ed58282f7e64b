// Invariant checks for fuzz targets: a violated invariant is a bug, so the process aborts and
// libFuzzer (or the regression test replaying a saved input) reports it with the input.
#ifndef NETPOL_FUZZ_FUZZ_CHECK_H_
#define NETPOL_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

namespace netpol::fuzz {

// Prints `what` and `detail` to stderr and aborts. Never returns.
[[noreturn]] inline void Fail(const char* file, int line, const char* what,
                              const std::string& detail) {
  std::fprintf(stderr, "%s:%d: invariant violated: %s\n%s\n", file, line, what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace netpol::fuzz

// FUZZ_CHECK(cond, detail): aborts with `detail` (a std::string expression, evaluated only on
// failure) when `cond` is false.
#define FUZZ_CHECK(cond, detail)                                          \
  do {                                                                    \
    if (!(cond)) ::netpol::fuzz::Fail(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)

#endif  // NETPOL_FUZZ_FUZZ_CHECK_H_
