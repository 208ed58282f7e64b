// netpolctl's commands, independent of flag parsing so they can be tested in-process:
//   apply -f FILE|DIR|-      create or update objects; returns once the kernel has them
//   delete -f FILE|DIR|-     delete the objects the files name
//   delete KIND NAME [-n NS]
//   get KIND [NAME] [-n NS | -A] [-l SELECTOR] [-o wide|yaml|json|name]
//   describe KIND NAME [-n NS]   a policy: the pods it selects and the peers its rules resolve
//                                to; a pod: the policies selecting it; a namespace: its objects
//   status                   exit 0 only when serving and the last sync succeeded
//   status --all-nodes       every node's published status (shared datastores); exit 0 only
//                            when every node is live and has enforced the newest generation
//   wait --for=enforced -f FILE | --generation G [--timeout D]
//                            returns once this node's kernel holds FILE's objects as stored /
//                            generation G: exit 0 enforced, 1 error, 2 usage, 3 timed out
//   check --from A --to B --port P [--protocol TCP]   exit 0 allowed, 1 denied, 2 otherwise
//   explain pod NS/NAME
//   render [--kernel]        the nft program as text
//   logs [--denied|--allowed] [-f] [--pod NS/NAME] [-n NS] [-o json]   flow records
//   diff -f FILE             the plan of applying FILE (dry run); exit 1 when it changes anything
//   version                  this client's and the agent's version
//   completion bash          a bash completion script
// `-o json` prints the response message of status, check, explain and version as JSON; an
// output format a command does not have is refused before anything is sent.
#ifndef NETPOL_CLI_COMMANDS_H_
#define NETPOL_CLI_COMMANDS_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/client.h"
#include "engine/model/model.h"

namespace netpol::cli {

struct CommandOptions {
  std::vector<std::string> files;  // -f (repeatable, and through commas), in order
  bool files_given = false;        // -f given at all
  std::string namespace_name;      // -n
  bool all_namespaces = false;     // -A
  std::string selector;            // -l
  std::string output;              // -o: "", "wide", "yaml", "json", "name"
  std::string from, to;            // check: "ns/pod", "pod" (namespace -n or default), an IP, "node"
  int port = 0;
  std::string protocol = "TCP";
  std::string ip_family;           // check: IPv4 / IPv6 when both ends are pods
  bool kernel = false;             // render: read the kernel's table instead of the committed one
  bool ignore_not_found = false;   // delete
  bool dry_run = false;            // apply, delete
  bool all_nodes = false;          // status
  std::string wait_for;            // wait: --for (only "enforced")
  int64_t generation = -1;         // wait: --generation; -1 when not given
  absl::Duration timeout = absl::Seconds(90);  // wait: the whole wait (--timeout)
  // wait: between two reads of whether the store holds FILE's objects yet.
  absl::Duration poll_interval = absl::Milliseconds(200);
  // logs: only drops / only logged allows, keep following, one pod ("ns/name", or a name in -n),
  // the newest N held records (0: all), the flow log's counts instead of records.
  bool denied = false, allowed = false, follow = false;
  std::string pod;
  int tail = 0;
  bool stats = false;
};

// The usage text.
std::string Usage();

// Parses a kubectl label selector (-l): comma-separated requirements `k=v`, `k==v`, `k!=v`,
// `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k` (does not exist). InvalidArgument names
// the requirement that does not parse.
absl::StatusOr<LabelSelector> ParseLabelSelector(const std::string& text);

// The bash completion script (`netpolctl completion bash`).
std::string BashCompletion();

// Runs the command named by `args` (positional words, e.g. {"get", "pods"}) and returns the
// process exit code. Output goes to `out`, errors (prefixed "error: ") to `err`; `in` is read
// for `-f -`.
int Run(Client& client, const std::vector<std::string>& args, const CommandOptions& options,
        std::istream& in, std::ostream& out, std::ostream& err);

}  // namespace netpol::cli

#endif  // NETPOL_CLI_COMMANDS_H_
