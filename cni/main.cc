// netpol-cni: the CNI plugin binary. Gathers CNI_* from the environment and the network
// configuration from stdin, runs the plugin (cni/plugin.h) and prints its outcome: the result
// or the spec's error object on stdout, one line for the runtime's log on stderr. Exit status 0
// on success, 1 on error, as the CNI spec requires.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "cni/plugin.h"

extern char** environ;

namespace {

// Network configurations are a few kilobytes; this bounds what a broken runtime can make us
// buffer.
constexpr size_t kMaxStdin = 16 << 20;

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int main() {
  // gRPC logs to stderr on its own; only errors belong in the runtime's log.
  if (std::getenv("GRPC_VERBOSITY") == nullptr) ::setenv("GRPC_VERBOSITY", "ERROR", 1);
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq == nullptr) continue;
    std::string key(*e, static_cast<size_t>(eq - *e));
    if (key.rfind("CNI_", 0) == 0) env[key] = eq + 1;
  }
  std::string input;
  const bool version = env["CNI_COMMAND"] == "VERSION";
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (version) break;  // VERSION needs no input
      netpol::cni::PluginError e{netpol::cni::kIoFailure,
                                 std::string("reading stdin: ") + std::strerror(errno), ""};
      WriteAll(1, netpol::cni::ErrorJson(netpol::cni::kCurrentVersion, e));
      return 1;
    }
    if (n == 0) break;
    input.append(buf, static_cast<size_t>(n));
    if (input.size() > kMaxStdin) {
      netpol::cni::PluginError e{netpol::cni::kIoFailure,
                                 "stdin: network configuration larger than 16 MiB", ""};
      WriteAll(1, netpol::cni::ErrorJson(netpol::cni::kCurrentVersion, e));
      return 1;
    }
  }
  netpol::cni::Outcome o = netpol::cni::Run(env, input);
  if (!o.err.empty()) WriteAll(2, o.err + "\n");
  if (!WriteAll(1, o.out)) return 1;
  return o.exit_code;
}
