// netpol-workload: writes a benchmark workload as multi-document Kubernetes YAML (Namespaces,
// Pods, NetworkPolicies), for the datapath scripts and for looking at what the benchmarks run.
//
//   netpol-workload --tier T1 [--seed 1] [--out FILE]        a tier (variants: T2-dense, ...)
//   netpol-workload --datapath_policies N [--background_pods 1000] [--out FILE]
//                                                            the datapath benchmark's cluster
//   netpol-workload --tier T3 --stats                        counts only
//
// Exit status 0 on success, 1 on any error (printed on stderr).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "benchmarks/workload/workload.h"

ABSL_FLAG(std::string, tier, "", "T1..T4 with optional variants: -dense -cidr -ranges -unique -dual");
ABSL_FLAG(int, datapath_policies, -1, "write the datapath cluster with this many policies");
ABSL_FLAG(int, background_pods, 1000, "datapath: pods on other nodes");
ABSL_FLAG(uint64_t, seed, 1, "generator seed");
ABSL_FLAG(std::string, out, "-", "output file ('-': stdout)");
ABSL_FLAG(bool, stats, false, "print counts instead of YAML");

namespace {

int Fail(const std::string& message) {
  std::cerr << "netpol-workload: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string tier = absl::GetFlag(FLAGS_tier);
  const int dp = absl::GetFlag(FLAGS_datapath_policies);
  if (tier.empty() == (dp < 0)) return Fail("give exactly one of --tier or --datapath_policies");
  absl::StatusOr<netpol::State> state;
  if (!tier.empty()) {
    absl::StatusOr<netpol::bench::WorkloadSpec> spec = netpol::bench::ParseTier(tier);
    if (!spec.ok()) return Fail(std::string(spec.status().message()));
    spec->seed = absl::GetFlag(FLAGS_seed);
    state = netpol::bench::Generate(*spec);
  } else {
    state = netpol::bench::DatapathState(dp, absl::GetFlag(FLAGS_background_pods),
                                         absl::GetFlag(FLAGS_seed));
  }
  if (!state.ok()) return Fail(std::string(state.status().message()));
  std::string text;
  if (absl::GetFlag(FLAGS_stats)) {
    netpol::bench::WorkloadStats s = netpol::bench::Stats(
        *state, tier.empty() ? netpol::bench::kDatapathNode : netpol::bench::kMeasuredNode);
    text = absl::StrFormat(
        "namespaces %d\npods %d\nlocal_pods %d\nnodes %d\npolicies %d\ningress_policies %d\n"
        "egress_policies %d\nipblock_peers %d\nnamed_ports %d\nport_ranges %d\n",
        s.namespaces, s.pods, s.local_pods, s.nodes, s.policies, s.ingress_policies,
        s.egress_policies, s.ipblock_peers, s.named_ports, s.port_ranges);
  } else {
    text = netpol::bench::StateToYaml(*state);
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out == "-") {
    std::cout << text;
    return std::cout.good() ? 0 : Fail("write stdout failed");
  }
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return Fail(out + ": write failed");
  return 0;
}
