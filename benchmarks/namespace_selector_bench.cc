// Full compile of a cluster whose policies' peers select namespaces by label: NAMESPACES
// namespaces (ns-i, labelled team=t<i % TEAMS>), one pod each (NODES nodes, round robin), and
// one policy per namespace isolating its pods for ingress from `namespaceSelector: {team:
// t<(i + 1) % TEAMS>}` on PORTS TCP ports. The measured node (node-0) holds NAMESPACES / NODES
// pods, each in a group of its own whose sets hold the pods of NAMESPACES / TEAMS namespaces x
// PORTS.
//
//   bazel run -c opt //benchmarks:namespace_selector_bench -- \
//       [NAMESPACES] [TEAMS] [NODES] [PORTS] [RUNS]
//
// Defaults: 10,000 namespaces, 10,000 teams (each peer selects one namespace), 1 node (all
// 10,000 policies enforced there), 4 ports: 10,000 groups, 40,000 peer elements plus 10,000
// dispatch and 10,000 self entries; 3 runs. Prints one line per run: CPU seconds of Compile,
// chains, sets, elements.
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/model/model.h"

namespace netpol {
namespace {

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

State Cluster(int namespaces, int teams, int nodes, int ports) {
  State s;
  for (int i = 0; i < namespaces; ++i) {
    const std::string name = absl::StrCat("ns-", i);
    Namespace ns;
    ns.name = name;
    ns.labels = {{"kubernetes.io/metadata.name", name}, {"team", absl::StrCat("t", i % teams)}};
    s.namespaces[name] = ns;
    Pod pod;
    pod.namespace_name = name;
    pod.name = "app";
    pod.labels = {{"app", "web"}};
    pod.node_name = absl::StrCat("node-", i % nodes);
    pod.ips = {IpAddr::V4(10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                          static_cast<uint8_t>(i))};
    s.pods[pod.Key()] = pod;
    NetworkPolicy p;
    p.namespace_name = name;
    p.name = "from-team";
    p.ingress_type = true;
    Rule r;
    Peer peer;
    LabelSelector sel;
    sel.match_labels = {{"team", absl::StrCat("t", (i + 1) % teams)}};
    peer.namespace_selector = sel;
    r.peers = {peer};
    for (int k = 0; k < ports; ++k) {
      PolicyPort port;
      port.protocol = Protocol::kTCP;
      port.port = 80 + k;
      r.ports.push_back(port);
    }
    p.ingress = {r};
    s.policies[p.Key()] = p;
  }
  return s;
}

}  // namespace
}  // namespace netpol

int main(int argc, char** argv) {
  using namespace netpol;  // NOLINT: main only
  const int namespaces = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int teams = argc > 2 ? std::atoi(argv[2]) : 10000;
  const int nodes = argc > 3 ? std::atoi(argv[3]) : 1;
  const int ports = argc > 4 ? std::atoi(argv[4]) : 4;
  const int runs = argc > 5 ? std::atoi(argv[5]) : 3;
  const State state = Cluster(namespaces, teams, nodes, ports);
  compiler::CompileOptions opts;
  opts.node_name = "node-0";
  for (int run = 0; run < runs; ++run) {
    const double c0 = CpuSeconds();
    absl::StatusOr<nft::Program> p = compiler::Compile(state, opts);
    const double cpu = CpuSeconds() - c0;
    if (!p.ok()) {
      fprintf(stderr, "compile: %s\n", std::string(p.status().message()).c_str());
      return 1;
    }
    size_t elements = 0;
    for (const auto& [name, els] : p->elements) elements += els.size();
    printf(
        "namespaces=%d teams=%d nodes=%d ports=%d run=%d cpu_s=%.3f chains=%zu sets=%zu "
        "elements=%zu\n",
        namespaces, teams, nodes, ports, run, cpu, p->chains.size(), p->sets.size(), elements);
  }
  return 0;
}
