// Prints what the compiler produces for a synthetic cluster (defaults: 1,000
// pods on 10 nodes, 20 namespaces, 200 policies): objects, elements per set
// kind, compile time, and the size of the incremental transaction when one pod
// joins. Usage:
//   bazel run -c opt //engine/compiler:scale_report -- [pods] [policies]
//   [namespaces] [nodes]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/nft/diff.h"
#include "engine/nft/transaction.h"

namespace netpol::compiler {
namespace {

LabelSelector Labels1(const std::string& k, const std::string& v) {
  LabelSelector s;
  s.match_labels[k] = v;
  return s;
}

// Pod i's addresses: 10.0.0.0/10 and fd00::/104 by index (i < 2^22).
IpAddr V4(int i) {
  return IpAddr::V4(10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                    static_cast<uint8_t>(i));
}
IpAddr V6(int i) {
  IpAddr a = *IpAddr::Parse("fd00::");
  a.bytes[13] = static_cast<uint8_t>(i >> 16);
  a.bytes[14] = static_cast<uint8_t>(i >> 8);
  a.bytes[15] = static_cast<uint8_t>(i);
  return a;
}

Pod MakePod(int i, int namespaces, int nodes) {
  Pod p;
  p.namespace_name = absl::StrCat("ns", i % namespaces);
  p.name = absl::StrCat("pod", i);
  p.labels["app"] = absl::StrCat("app", (i / namespaces) % 10);
  p.labels["tier"] = i % 3 == 0 ? "fe" : "be";
  p.node_name = absl::StrCat("node-", (i / 7) % nodes);
  p.ips.push_back(V4(i));
  if (i % 2 == 0) p.ips.push_back(V6(i));
  ContainerPort http;
  http.name = "http";
  http.container_port = i % 4 == 0 ? 9090 : 8080;
  p.ports.push_back(http);
  return p;
}

State Build(int pods, int policies, int namespaces, int nodes) {
  State s;
  for (int n = 0; n < namespaces; ++n) {
    Namespace ns;
    ns.name = absl::StrCat("ns", n);
    ns.labels["team"] = absl::StrCat("t", n % 4);
    ns.labels[kNamespaceNameLabel] = ns.name;
    s.namespaces[ns.name] = ns;
  }
  for (int i = 0; i < pods; ++i) {
    Pod p = MakePod(i, namespaces, nodes);
    s.pods[p.Key()] = p;
  }
  for (int k = 0; k < policies; ++k) {
    NetworkPolicy p;
    p.namespace_name = absl::StrCat("ns", (k / 5) % namespaces);
    p.name = absl::StrCat("pol", k);
    p.ingress_type = true;
    Rule r;
    switch (k % 5) {
      case 0:  // default deny for the namespace
        break;
      case 1: {  // same app from the namespace, named port
        p.pod_selector = Labels1("app", absl::StrCat("app", k % 10));
        Peer peer;
        peer.pod_selector = Labels1("app", absl::StrCat("app", (k + 1) % 10));
        r.peers.push_back(peer);
        PolicyPort pp;
        pp.named_port = "http";
        r.ports.push_back(pp);
        p.ingress.push_back(r);
        break;
      }
      case 2: {  // from a team's namespaces, port 443
        p.pod_selector = Labels1("tier", "fe");
        Peer peer;
        peer.namespace_selector = Labels1("team", absl::StrCat("t", k % 4));
        r.peers.push_back(peer);
        PolicyPort pp;
        pp.port = 443;
        r.ports.push_back(pp);
        p.ingress.push_back(r);
        break;
      }
      case 3: {  // ipBlock with except, port range
        p.pod_selector = Labels1("app", absl::StrCat("app", k % 10));
        Peer peer;
        IPBlock b;
        b.cidr = *Cidr::Parse(absl::StrCat("172.", 16 + k % 16, ".0.0/16"));
        b.except.push_back(*Cidr::Parse(absl::StrCat("172.", 16 + k % 16, ".1.0/24")));
        peer.ip_block = b;
        r.peers.push_back(peer);
        PolicyPort pp;
        pp.port = 8000;
        pp.end_port = 8100;
        r.ports.push_back(pp);
        p.ingress.push_back(r);
        break;
      }
      default: {  // egress: DNS anywhere, and the namespace's own pods
        p.egress_type = true;
        p.ingress_type = false;
        PolicyPort dns;
        dns.protocol = Protocol::kUDP;
        dns.port = 53;
        r.ports.push_back(dns);
        p.egress.push_back(r);
        Rule own;
        Peer peer;
        peer.pod_selector = LabelSelector();
        own.peers.push_back(peer);
        p.egress.push_back(own);
        break;
      }
    }
    s.policies[p.Key()] = p;
  }
  return s;
}

int Main(int argc, char** argv) {
  const int pods = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int policies = argc > 2 ? std::atoi(argv[2]) : 200;
  const int namespaces = argc > 3 ? std::atoi(argv[3]) : 20;
  const int nodes = argc > 4 ? std::atoi(argv[4]) : 10;
  if (pods < 2 || policies < 1 || namespaces < 2 || nodes < 1 || pods > 200000) {
    std::fprintf(stderr, "usage: scale_report [pods<=200000] [policies] [namespaces] [nodes]\n");
    return 2;
  }
  State s = Build(pods, policies, namespaces, nodes);
  CompileOptions o;
  o.node_name = "node-0";
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<nft::Program> p = Compile(s, o);
  auto t1 = std::chrono::steady_clock::now();
  if (!p.ok()) {
    std::fprintf(stderr, "%s\n", std::string(p.status().message()).c_str());
    return 1;
  }
  std::map<std::string, size_t> per_kind;  // by set suffix
  size_t total = 0, sets_with_elements = 0;
  for (const auto& [name, els] : p->elements) {
    std::string kind = name;
    if (name.rfind("in-", 0) == 0 || name.rfind("eg-", 0) == 0) {
      kind = name.substr(0, 3) + "*" + name.substr(name.rfind('-'));
    }
    per_kind[kind] += els.size();
    total += els.size();
    ++sets_with_elements;
  }
  size_t rules = 0, max_rules = 0;
  for (const auto& [name, c] : p->chains) {
    rules += c.rules.size();
    if (!c.base) max_rules = std::max(max_rules, c.rules.size());
  }
  std::string text = nft::RenderProgram(*p);
  int local = 0;
  for (const auto& [k, pod] : s.pods) local += IsLocalPod(pod, o);
  std::printf("state: %d pods (%d local), %d policies, %d namespaces, %d nodes\n", pods, local,
              policies, namespaces, nodes);
  std::printf("compile: %.1f ms\n", std::chrono::duration<double, std::milli>(t1 - t0).count());
  std::printf(
      "chains: %zu (rules %zu, longest group chain %zu rules), "
      "sets/maps: %zu\n",
      p->chains.size(), rules, max_rules, p->sets.size());
  std::printf("elements: %zu in %zu sets; nft text %zu bytes\n", total, sets_with_elements,
              text.size());
  for (const auto& [kind, n] : per_kind) std::printf("  %-22s %zu\n", kind.c_str(), n);

  // One pod joins on this node (a twin of pod0), one remote pod leaves.
  State s2 = s;
  Pod twin = MakePod(0, namespaces, nodes);
  twin.name = "pod0-twin";
  twin.ips = {IpAddr::V4(10, 250, 0, 2)};
  twin.node_name = "node-0";
  s2.pods[twin.Key()] = twin;
  s2.pods.erase("ns1/pod1");
  auto t2 = std::chrono::steady_clock::now();
  absl::StatusOr<nft::Program> p2 = Compile(s2, o);
  nft::Transaction tx = nft::Diff(*p, *p2);
  auto t3 = std::chrono::steady_clock::now();
  std::printf(
      "pod join + remote pod leave: %zu commands, %zu element changes, "
      "compile+diff "
      "%.1f ms\n",
      tx.size(), tx.ElementCount(), std::chrono::duration<double, std::milli>(t3 - t2).count());
  return 0;
}

}  // namespace
}  // namespace netpol::compiler

int main(int argc, char** argv) { return netpol::compiler::Main(argc, argv); }
