// Minimal logging for the agent: one line per event on stderr, with a UTC timestamp and a
// level. (Debian's Abseil 20220623 has no absl/log.) Thread-safe: each line is one write(2).
#ifndef NETPOL_AGENT_LOG_H_
#define NETPOL_AGENT_LOG_H_

#include "absl/strings/string_view.h"

namespace netpol::agent {

void LogInfo(absl::string_view message);
void LogWarning(absl::string_view message);
void LogError(absl::string_view message);

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_LOG_H_
