// netpolctl's commands, independent of flag parsing so they can be tested in-process:
//   apply -f FILE|DIR|-      create or update objects; returns once the kernel has them
//   delete -f FILE|DIR|-     delete the objects the files name
//   delete KIND NAME [-n NS]
//   get KIND [NAME] [-n NS] [-o yaml|json|wide]
//   status                   exit 0 only when serving and the last sync succeeded
//   check --from A --to B --port P [--protocol TCP]   exit 0 allowed, 1 denied, 2 otherwise
//   explain pod NS/NAME
//   render [--kernel]        the nft program as text
//   diff -f FILE             the plan of applying FILE (dry run); exit 1 when it changes anything
#ifndef NETPOL_CLI_COMMANDS_H_
#define NETPOL_CLI_COMMANDS_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "cli/client.h"

namespace netpol::cli {

struct CommandOptions {
  std::vector<std::string> files;  // -f (repeatable through commas)
  std::string namespace_name;      // -n
  std::string output;              // -o: "", "wide", "yaml", "json"
  std::string from, to;            // check: "ns/pod", "pod" (namespace -n or default), an IP, "node"
  int port = 0;
  std::string protocol = "TCP";
  std::string ip_family;           // check: IPv4 / IPv6 when both ends are pods
  bool kernel = false;             // render: read the kernel's table instead of the committed one
  bool ignore_not_found = false;   // delete
  bool dry_run = false;            // apply, delete
};

// The usage text.
std::string Usage();

// Runs the command named by `args` (positional words, e.g. {"get", "pods"}) and returns the
// process exit code. Output goes to `out`, errors (prefixed "error: ") to `err`; `in` is read
// for `-f -`.
int Run(Client& client, const std::vector<std::string>& args, const CommandOptions& options,
        std::istream& in, std::ostream& out, std::ostream& err);

}  // namespace netpol::cli

#endif  // NETPOL_CLI_COMMANDS_H_
