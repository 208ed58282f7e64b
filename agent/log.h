// Minimal logging for the agent: one line per event on stderr, with a UTC timestamp and a
// level. (Debian's Abseil 20220623 has no absl/log.) Thread-safe: each line is one write(2).
//
// A message is one line whatever it quotes: control characters (newlines included), DEL and the
// backslash are written as C escapes (\n, \x1b, \\), so text from clients (pod names, error
// messages quoting input) cannot forge or break lines. Other bytes, UTF-8 included, are kept.
#ifndef NETPOL_AGENT_LOG_H_
#define NETPOL_AGENT_LOG_H_

#include <string>

#include "absl/strings/string_view.h"

namespace netpol::agent {

void LogInfo(absl::string_view message);
void LogWarning(absl::string_view message);
void LogError(absl::string_view message);

// The line LogInfo/LogWarning/LogError write for `message` at `level` ("I", "W", "E"), after
// `timestamp`, newline included.
std::string FormatLogLine(absl::string_view timestamp, const char* level,
                          absl::string_view message);

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_LOG_H_
