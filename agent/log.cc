// Line-at-a-time logging to stderr. See log.h.
#include "agent/log.h"

#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace netpol::agent {
namespace {

void AppendEscaped(absl::string_view message, std::string* out) {
  for (char ch : message) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\\':
        out->append("\\\\");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(out, "\\x%02x", c);
        } else {
          out->push_back(ch);
        }
    }
  }
}

void Write(const char* level, absl::string_view message) {
  std::string line = FormatLogLine(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), level, message);
  // One write per line so concurrent lines never interleave; a failed log write has nowhere
  // to be reported.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace

std::string FormatLogLine(absl::string_view timestamp, const char* level,
                          absl::string_view message) {
  std::string line = absl::StrCat(timestamp, " ", level, " ");
  line.reserve(line.size() + message.size() + 1);
  AppendEscaped(message, &line);
  line.push_back('\n');
  return line;
}

void LogInfo(absl::string_view message) { Write("I", message); }
void LogWarning(absl::string_view message) { Write("W", message); }
void LogError(absl::string_view message) { Write("E", message); }

}  // namespace netpol::agent
