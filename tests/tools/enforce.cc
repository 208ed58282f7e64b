// netpol-enforce: compiles a state file (multi-document YAML of Namespaces, Pods and
// NetworkPolicies) for one node and replaces the netpol table in the current network namespace
// with it, in one netlink transaction. The datapath tests run it inside a lab node's namespace.
//
//   netpol-enforce --state FILE [--node node-1] [--table netpol] [--print]
//
// Exit status: 0 when the kernel committed the program, 1 on any error (printed on stderr).
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
