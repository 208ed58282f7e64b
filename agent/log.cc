// Line-at-a-time logging to stderr. See log.h.
#include "agent/log.h"

#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace netpol::agent {
namespace {

void Write(const char* level, absl::string_view message) {
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ", level,
      " ", message, "\n");
  // One write per line so concurrent lines never interleave; a failed log write has nowhere
  // to be reported.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace

void LogInfo(absl::string_view message) { Write("I", message); }
void LogWarning(absl::string_view message) { Write("W", message); }
void LogError(absl::string_view message) { Write("E", message); }

}  // namespace netpol::agent
