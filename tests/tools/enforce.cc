// netpol-enforce: compiles a state file (multi-document YAML of Namespaces, Pods and
// NetworkPolicies) for one node and replaces the netpol table in the current network namespace
// with it, in one netlink transaction. The datapath tests run it inside a lab node's namespace.
//
//   netpol-enforce --state FILE [--node node-1] [--table netpol] [--print]
//                  [--rule_counters] [--deny_log_group G --deny_log_rate R --deny_log_burst B]
//
// --rule_counters and --deny_log_group compile what the agent's --rule-counters and
// --deny-log-group do (RULESET.md "Counters", "Deny logs"); nothing reads the nflog group here,
// the kernel still limits and counts.
//
// Exit status: 0 when the kernel committed the program, 1 on any error (printed on stderr).
#include <algorithm>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/compiler/compiler.h"
#include "engine/netlink/netlink_backend.h"
#include "engine/nft/diff.h"
#include "engine/nft/transaction.h"
#include "tests/tools/state_file.h"

ABSL_FLAG(std::string, state, "", "multi-document YAML with the cluster state to enforce");
ABSL_FLAG(std::string, node, "node-1", "the node whose pods are local");
ABSL_FLAG(std::string, table, "netpol", "the inet table to own");
ABSL_FLAG(bool, print, false, "print the committed program as nft text");
ABSL_FLAG(bool, rule_counters, false, "a counter on every rule of every group chain");
ABSL_FLAG(int, deny_log_group, 0, "nflog group of the deny logs; 0: no deny logs");
ABSL_FLAG(int, deny_log_rate, 10, "deny logs per second per group chain");
ABSL_FLAG(int, deny_log_burst, 20, "burst of --deny_log_rate");
ABSL_FLAG(int, deny_log_snaplen, 128, "bytes of each logged packet");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_state);
  if (path.empty()) {
    std::cerr << "netpol-enforce: --state FILE is required\n";
    return 1;
  }
  absl::StatusOr<netpol::State> state = netpol::tools::LoadState(path);
  if (!state.ok()) {
    std::cerr << "netpol-enforce: " << state.status().message() << "\n";
    return 1;
  }
  netpol::compiler::CompileOptions options;
  options.table = absl::GetFlag(FLAGS_table);
  options.node_name = absl::GetFlag(FLAGS_node);
  options.rule_counters = absl::GetFlag(FLAGS_rule_counters);
  if (const int group = absl::GetFlag(FLAGS_deny_log_group); group != 0) {
    if (group < 0 || group > 65535) {
      std::cerr << "netpol-enforce: --deny_log_group: must be 0-65535\n";
      return 1;
    }
    netpol::compiler::CompileOptions::DenyLog d;
    d.group = static_cast<uint16_t>(group);
    d.rate = static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_deny_log_rate)));
    d.burst = static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_deny_log_burst)));
    d.snaplen = static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_deny_log_snaplen)));
    options.deny_log = d;
    if (absl::Status st = netpol::compiler::ValidateOptions(options); !st.ok()) {
      std::cerr << "netpol-enforce: --deny_log_*: " << st.message() << "\n";
      return 1;
    }
  }
  absl::StatusOr<netpol::nft::Program> program = netpol::compiler::Compile(*state, options);
  if (!program.ok()) {
    std::cerr << "netpol-enforce: compile: " << program.status().message() << "\n";
    return 1;
  }
  auto backend = netpol::netlink::NetlinkBackend::Create();
  if (!backend.ok()) {
    std::cerr << "netpol-enforce: " << backend.status().message() << "\n";
    return 1;
  }
  absl::Status committed = (*backend)->Commit(netpol::nft::FullReplace(*program));
  if (!committed.ok()) {
    std::cerr << "netpol-enforce: commit: " << committed.message() << "\n";
    return 1;
  }
  if (absl::GetFlag(FLAGS_print)) std::cout << netpol::nft::RenderProgram(*program);
  return 0;
}
