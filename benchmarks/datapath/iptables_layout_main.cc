// netpol-iptables-layout: writes the iptables + ipset ruleset an iptables-based engine would
// install on a node for a state file (see iptables_layout.h), for the datapath benchmark.
//
//   netpol-iptables-layout --state FILE --node node-1 --ipset_out sets.txt --iptables_out rules.txt
//
// Load with `ipset restore < sets.txt` and `iptables-restore < rules.txt` in the node's network
// namespace only. Prints the counts on stdout; exit status 1 on error.
#include <fstream>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "benchmarks/datapath/iptables_layout.h"
#include "tests/tools/state_file.h"

ABSL_FLAG(std::string, state, "", "multi-document YAML state");
ABSL_FLAG(std::string, node, "node-1", "the node whose pods are local");
ABSL_FLAG(std::string, ipset_out, "", "output: ipset restore input");
ABSL_FLAG(std::string, iptables_out, "", "output: iptables-restore input");

namespace {

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_state);
  if (path.empty() || absl::GetFlag(FLAGS_ipset_out).empty() ||
      absl::GetFlag(FLAGS_iptables_out).empty()) {
    std::cerr << "netpol-iptables-layout: --state, --ipset_out and --iptables_out are required\n";
    return 1;
  }
  absl::StatusOr<netpol::State> state = netpol::tools::LoadState(path);
  if (!state.ok()) {
    std::cerr << "netpol-iptables-layout: " << state.status().message() << "\n";
    return 1;
  }
  netpol::bench::IptablesLayout l = netpol::bench::LayOutIptables(*state, absl::GetFlag(FLAGS_node));
  if (!WriteFile(absl::GetFlag(FLAGS_ipset_out), l.ipset_restore) ||
      !WriteFile(absl::GetFlag(FLAGS_iptables_out), l.iptables_restore)) {
    std::cerr << "netpol-iptables-layout: write failed\n";
    return 1;
  }
  std::cout << "{\"sets\": " << l.sets << ", \"set_entries\": " << l.set_entries
            << ", \"chains\": " << l.chains << ", \"rules\": " << l.rules << "}\n";
  return 0;
}
