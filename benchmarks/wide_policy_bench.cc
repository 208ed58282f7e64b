// One policy whose rule lists many peers and many ports, from a state to the kernel: Compile,
// then one full commit (nft::FullReplace through the agent's NetlinkBackend) into an empty table
// in a fresh network namespace of its own (needs root; the host's tables are never touched).
// Prints one line: elements, compile and commit wall time, peak RSS. Run it once per size: the
// peak RSS is the process's.
//
//   sudo bazel-bin/benchmarks/wide_policy_bench --blocks=1000 --ports=1000
//
// The policy: namespace x, pods app=web isolated for ingress (one local pod on node n1), one
// rule from `blocks` non-adjacent /24s (64.0.0.0/24, 64.0.2.0/24, ...) on `ports` non-adjacent
// TCP ports (1000, 1002, ...; at most 32,268 of them). It uses only Compile, FullReplace and
// NetlinkBackend, so the same file measures older versions of the compiler too.
#include <sched.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/model/model.h"
#include "engine/netlink/netlink_backend.h"
#include "engine/nft/diff.h"

ABSL_FLAG(int, blocks, 1000, "ipBlock peers (non-adjacent /24s)");
ABSL_FLAG(int, ports, 1000, "TCP ports (non-adjacent)");
ABSL_FLAG(bool, commit, true, "commit into a fresh network namespace (root)");

namespace netpol {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

double PeakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

State WideState(int blocks, int ports) {
  State s;
  Namespace ns;
  ns.name = "x";
  s.namespaces["x"] = ns;
  Pod pod;
  pod.namespace_name = "x";
  pod.name = "web";
  pod.labels["app"] = "web";
  pod.node_name = "n1";
  pod.ips.push_back(*IpAddr::Parse("10.0.0.2"));
  s.pods[pod.Key()] = pod;
  NetworkPolicy p;
  p.namespace_name = "x";
  p.name = "wide";
  p.pod_selector.match_labels["app"] = "web";
  p.ingress_type = true;
  Rule r;
  for (int i = 0; i < blocks; ++i) {
    Peer peer;
    IPBlock b;
    const uint32_t a = (64u << 24) + 512u * static_cast<uint32_t>(i);  // 64.0.0.0, 64.0.2.0, ...
    b.cidr = *Cidr::Parse(
        absl::StrCat(a >> 24, ".", (a >> 16) & 255, ".", (a >> 8) & 255, ".0/24"));
    peer.ip_block = b;
    r.peers.push_back(peer);
  }
  for (int i = 0; i < ports; ++i) {
    PolicyPort pp;
    pp.port = 1000 + 2 * i;
    r.ports.push_back(pp);
  }
  p.ingress.push_back(r);
  s.policies[p.Key()] = p;
  return s;
}

int Run() {
  const int blocks = absl::GetFlag(FLAGS_blocks), ports = absl::GetFlag(FLAGS_ports);
  const State state = WideState(blocks, ports);
  compiler::CompileOptions opts;
  opts.node_name = "n1";
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<nft::Program> prog = compiler::Compile(state, opts);
  const double compile_s = Seconds(t0);
  if (!prog.ok()) {
    std::printf("blocks=%d ports=%d compile: %s\n", blocks, ports,
                prog.status().ToString().c_str());
    return 1;
  }
  size_t elements = 0;
  for (const auto& [name, els] : prog->elements) elements += els.size();
  double commit_s = 0;
  if (absl::GetFlag(FLAGS_commit)) {
    if (unshare(CLONE_NEWNET) != 0) {
      std::perror("wide_policy_bench: unshare(CLONE_NEWNET)");
      return 1;
    }
    absl::StatusOr<std::unique_ptr<netlink::NetlinkBackend>> backend =
        netlink::NetlinkBackend::Create();
    if (!backend.ok()) {
      std::printf("netlink: %s\n", backend.status().ToString().c_str());
      return 1;
    }
    t0 = std::chrono::steady_clock::now();
    const nft::Transaction tx = nft::FullReplace(*prog);
    absl::Status st = (*backend)->Commit(tx);
    commit_s = Seconds(t0);
    if (!st.ok()) {
      std::printf("commit: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  std::printf(
      "blocks=%d ports=%d elements=%zu compile_s=%.3f commit_s=%.3f total_s=%.3f "
      "peak_rss_mb=%.0f\n",
      blocks, ports, elements, compile_s, commit_s, compile_s + commit_s, PeakRssMb());
  return 0;
}

}  // namespace
}  // namespace netpol

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return netpol::Run();
}
