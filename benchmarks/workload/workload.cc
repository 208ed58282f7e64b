#include "benchmarks/workload/workload.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/model/loader.h"

namespace netpol::bench {
namespace {

// SplitMix64: a tiny, well-mixed generator whose output is fixed by the seed on every platform
// (std:: distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0. The modulo bias is below 2^-40 for the n used here.
  int Below(int n) { return static_cast<int>(Next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

uint64_t Mix(uint64_t a, uint64_t b) {
  Rng r(a * 0x100000001b3ULL ^ b);
  return r.Next();
}

constexpr char kKubeSystem[] = "kube-system";
constexpr const char* kRoles[] = {"web", "api", "db", "cache"};
constexpr const char* kEnvs[] = {"prod", "staging", "dev"};
constexpr int kTeams = 25;
// Addresses per node: a /22, so a node holds up to 1,022 pods.
constexpr int kNodeBlockBits = 10;
constexpr int kMaxLocalPods = 1000;
// Event pods live in 10.240.0.0/12: 2^20 distinct addresses.
constexpr uint32_t kEventBase = (10u << 24) | (240u << 16);
constexpr uint32_t kEventSpan = 1u << 20;

IpAddr V4(uint32_t v) {
  return IpAddr::V4(static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
                    static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v));
}

IpAddr V6(uint16_t w1, uint16_t w2, uint16_t w3, uint32_t host) {
  IpAddr a;
  a.family = Family::kV6;
  a.bytes[0] = 0xfd;
  a.bytes[1] = 0x00;
  a.bytes[2] = static_cast<uint8_t>(w1 >> 8);
  a.bytes[3] = static_cast<uint8_t>(w1);
  a.bytes[4] = static_cast<uint8_t>(w2 >> 8);
  a.bytes[5] = static_cast<uint8_t>(w2);
  a.bytes[6] = static_cast<uint8_t>(w3 >> 8);
  a.bytes[7] = static_cast<uint8_t>(w3);
  a.bytes[12] = static_cast<uint8_t>(host >> 24);
  a.bytes[13] = static_cast<uint8_t>(host >> 16);
  a.bytes[14] = static_cast<uint8_t>(host >> 8);
  a.bytes[15] = static_cast<uint8_t>(host);
  return a;
}

Cidr MakeCidr(uint32_t addr, int prefix) {
  Cidr c;
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  c.addr = V4(addr & mask);
  c.prefix = prefix;
  return c;
}

LabelSelector MatchLabel(const std::string& k, const std::string& v) {
  LabelSelector s;
  s.match_labels[k] = v;
  return s;
}

std::string NamespaceName(int i) {
  return i == 0 ? std::string(kKubeSystem) : absl::StrFormat("ns-%05d", i);
}

// Apps per namespace: about 8 pods per app, at least one.
int AppsIn(int pods_in_ns) { return std::max(1, pods_in_ns / 8); }

ContainerPort Port(const std::string& name, int number, Protocol proto = Protocol::kTCP) {
  ContainerPort p;
  p.name = name;
  p.container_port = number;
  p.protocol = proto;
  return p;
}

// The container ports of an app: named ports resolve to different numbers per app.
std::vector<ContainerPort> AppPorts(int app) {
  std::vector<ContainerPort> ports;
  ports.push_back(Port("http", 8080 + 10 * (app % 3)));
  ports.push_back(Port("metrics", 9100));
  if (app % 4 == 2) ports.push_back(Port("db", 5432));
  if (app % 5 == 1) ports.push_back(Port("grpc", 50051));
  return ports;
}

void SetAppLabels(int app, Pod* pod) {
  pod->labels["app"] = absl::StrCat("app-", app);
  pod->labels["role"] = kRoles[app % 4];
  pod->ports = AppPorts(app);
}

PolicyPort NumericPort(int port, Protocol proto = Protocol::kTCP) {
  PolicyPort p;
  p.protocol = proto;
  p.port = port;
  return p;
}

PolicyPort NamedPort(const std::string& name) {
  PolicyPort p;
  p.named_port = name;
  return p;
}

PolicyPort RangePort(int lo, int hi) {
  PolicyPort p;
  p.port = lo;
  p.end_port = hi;
  return p;
}

// What a policy generator needs to know about the cluster.
struct Shape {
  int namespaces = 1;
  std::vector<int> apps_in_ns;                     // per namespace index
  std::vector<std::string> unique_ids;             // "-unique": a pod id per namespace sample
  const WorkloadSpec* spec = nullptr;
};

constexpr int kPolicyKinds = 7;  // the round >= 1 kinds below

// Builds policy `name` of `kind` (-1: default deny) in namespace index `ns`. `ipblocks` is how
// many ipBlock peers an ipBlock policy carries; `block_base` numbers them across the cluster.
NetworkPolicy MakePolicy(const Shape& shape, int ns, int kind, const std::string& name,
                         int ipblocks, int block_base, Rng* rng) {
  const WorkloadSpec& spec = *shape.spec;
  NetworkPolicy p;
  p.namespace_name = NamespaceName(ns);
  p.name = name;
  const int apps = shape.apps_in_ns[ns];
  const int app = rng->Below(apps);
  auto app_selector = [&](int a) { return MatchLabel("app", absl::StrCat("app-", a)); };
  Rule rule;
  switch (kind) {
    case -1:  // default deny ingress
      p.ingress_type = true;
      return p;
    case 0: {  // allow from the same namespace
      p.ingress_type = true;
      Peer peer;
      peer.pod_selector = LabelSelector{};
      rule.peers.push_back(peer);
      p.ingress.push_back(rule);
      return p;
    }
    case 1: {  // allow from labelled namespaces on a named port
      p.ingress_type = true;
      p.pod_selector = app_selector(app);
      Peer peer;
      peer.namespace_selector = MatchLabel("team", absl::StrCat("team-", rng->Below(kTeams)));
      LabelSelectorRequirement env;
      env.key = "env";
      env.op = LabelSelectorRequirement::Op::kIn;
      env.values = {"prod", "staging"};
      peer.namespace_selector->match_expressions.push_back(env);
      rule.peers.push_back(peer);
      rule.ports.push_back(spec.port_ranges ? RangePort(8080, 8100) : NamedPort("http"));
      p.ingress.push_back(rule);
      return p;
    }
    case 2: {  // namespace + pod selector on a numeric port (or one pod, "-unique")
      p.ingress_type = true;
      if (spec.unique_labels && !shape.unique_ids.empty()) {
        p.pod_selector =
            MatchLabel("pod-id", shape.unique_ids[rng->Below(shape.unique_ids.size())]);
      } else {
        p.pod_selector = app_selector(app);
      }
      Peer peer;
      peer.namespace_selector = MatchLabel("env", kEnvs[rng->Below(3)]);
      peer.pod_selector = MatchLabel("role", "web");
      rule.peers.push_back(peer);
      rule.ports.push_back(spec.port_ranges ? RangePort(8000, 8999) : NumericPort(8080));
      p.ingress.push_back(rule);
      return p;
    }
    case 3: {  // ipBlock with except, a port and a port range
      p.ingress_type = true;
      p.pod_selector = MatchLabel("role", "web");
      for (int b = 0; b < ipblocks; ++b) {
        Peer peer;
        IPBlock block;
        if (ipblocks == 1) {
          // 172.16.0.0/12 in /20s, except one /24 inside.
          uint32_t base = (172u << 24) | (16u << 16) | (uint32_t(rng->Below(256)) << 12);
          block.cidr = MakeCidr(base, 20);
          block.except.push_back(MakeCidr(base + (uint32_t(rng->Below(16)) << 8), 24));
        } else {
          // CIDR-heavy: distinct /24s of 100.64.0.0/10 (16,384 of them), except a /28.
          uint32_t index = static_cast<uint32_t>(block_base + b) % 16384;
          uint32_t base = (100u << 24) | (64u << 16) | (index << 8);
          block.cidr = MakeCidr(base, 24);
          block.except.push_back(MakeCidr(base + 16 * uint32_t(rng->Below(16)), 28));
        }
        peer.ip_block = block;
        rule.peers.push_back(peer);
      }
      rule.ports.push_back(NumericPort(443));
      rule.ports.push_back(RangePort(30000, 32767));
      p.ingress.push_back(rule);
      return p;
    }
    case 4: {  // egress to DNS
      p.egress_type = true;
      Peer peer;
      peer.namespace_selector = MatchLabel(kNamespaceNameLabel, kKubeSystem);
      peer.pod_selector = MatchLabel("k8s-app", "kube-dns");
      rule.peers.push_back(peer);
      rule.ports.push_back(NumericPort(53, Protocol::kUDP));
      rule.ports.push_back(NumericPort(53, Protocol::kTCP));
      p.egress.push_back(rule);
      return p;
    }
    case 5: {  // egress to the database and to the internet
      p.egress_type = true;
      p.pod_selector = MatchLabel("role", "api");
      Peer db;
      db.pod_selector = MatchLabel("role", "db");
      rule.peers.push_back(db);
      rule.ports.push_back(spec.port_ranges ? RangePort(5432, 5439) : NamedPort("db"));
      p.egress.push_back(rule);
      Rule internet;
      Peer any;
      IPBlock block;
      block.cidr = MakeCidr(0, 0);
      block.except.push_back(MakeCidr(10u << 24, 8));
      any.ip_block = block;
      internet.peers.push_back(any);
      internet.ports.push_back(NumericPort(443));
      p.egress.push_back(internet);
      return p;
    }
    default: {  // 6: allow from monitoring on the metrics port
      p.ingress_type = true;
      Peer peer;
      peer.namespace_selector = MatchLabel("team", "team-0");
      peer.pod_selector = MatchLabel("app", "app-0");
      rule.peers.push_back(peer);
      rule.ports.push_back(spec.port_ranges ? RangePort(9100, 9110) : NamedPort("metrics"));
      p.ingress.push_back(rule);
      return p;
    }
  }
}

// The kind of a namespace's policy in round `round` (>= 1).
int KindOf(int ns, int round) { return (round - 1 + ns) % kPolicyKinds; }

Shape ShapeOf(const State& state, const WorkloadSpec& spec) {
  Shape shape;
  shape.spec = &spec;
  shape.namespaces = static_cast<int>(state.namespaces.size());
  shape.apps_in_ns.assign(shape.namespaces, 1);
  std::map<std::string, int> index;
  for (int i = 0; i < shape.namespaces; ++i) index[NamespaceName(i)] = i;
  std::vector<int> counts(shape.namespaces, 0);
  for (const auto& [key, pod] : state.pods) {
    auto it = index.find(pod.namespace_name);
    if (it != index.end()) ++counts[it->second];
    auto id = pod.labels.find("pod-id");
    if (id != pod.labels.end() && shape.unique_ids.size() < 4096) {
      shape.unique_ids.push_back(id->second);
    }
  }
  for (int i = 0; i < shape.namespaces; ++i) shape.apps_in_ns[i] = AppsIn(counts[i]);
  return shape;
}

}  // namespace

std::vector<std::string> TierNames() { return {"T1", "T2", "T3", "T4"}; }

absl::StatusOr<WorkloadSpec> ParseTier(absl::string_view name) {
  std::vector<std::string> parts = absl::StrSplit(name, '-');
  WorkloadSpec spec;
  spec.name = std::string(name);
  const std::string& tier = parts[0];
  if (tier == "T1") {
    spec.pods = 1000, spec.namespaces = 50, spec.policies = 100;
  } else if (tier == "T2") {
    spec.pods = 10000, spec.namespaces = 500, spec.policies = 1000;
  } else if (tier == "T3") {
    spec.pods = 3500, spec.namespaces = 1000, spec.policies = 12000;
  } else if (tier == "T4") {
    spec.pods = 100000, spec.namespaces = 5000, spec.policies = 20000;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tier \"", name, "\": unknown tier \"", tier, "\" (want T1, T2, T3 or T4)"));
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& v = parts[i];
    if (v == "dense") {
      spec.local_pods = 500;
    } else if (v == "cidr") {
      spec.ipblocks = 10000;
    } else if (v == "ranges") {
      spec.port_ranges = true;
    } else if (v == "unique") {
      spec.unique_labels = true;
    } else if (v == "dual") {
      spec.dual_stack = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "tier \"", name, "\": unknown variant \"", v,
          "\" (want dense, cidr, ranges, unique or dual)"));
    }
  }
  return spec;
}

absl::Status Validate(const WorkloadSpec& spec) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("workload ", spec.name, ": ", what));
  };
  if (spec.namespaces < 1) return bad("namespaces: must be >= 1");
  if (spec.pods < 3) return bad("pods: must be >= 3 (two DNS pods and one more)");
  if (spec.policies < 0) return bad("policies: must be >= 0");
  if (spec.local_pods < 0 || spec.local_pods > kMaxLocalPods) {
    return bad(absl::StrCat("local_pods: must be in 0..", kMaxLocalPods));
  }
  if (spec.local_pods > spec.pods) return bad("local_pods: more than pods");
  if (spec.pods_per_node < 1 || spec.pods_per_node > kMaxLocalPods) {
    return bad(absl::StrCat("pods_per_node: must be in 1..", kMaxLocalPods));
  }
  int64_t nodes = 1 + (spec.pods - spec.local_pods + spec.pods_per_node - 1) / spec.pods_per_node;
  if (nodes > 15000) return bad("too many nodes for 10.0.0.0/8 below 10.240.0.0/12");
  if (spec.ipblocks < 0) return bad("ipblocks: must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<State> Generate(const WorkloadSpec& spec) {
  absl::Status valid = Validate(spec);
  if (!valid.ok()) return valid;
  Rng rng(spec.seed);
  State state;

  // Namespaces.
  for (int i = 0; i < spec.namespaces; ++i) {
    Namespace ns;
    ns.name = NamespaceName(i);
    ns.labels[kNamespaceNameLabel] = ns.name;
    ns.labels["team"] = absl::StrCat("team-", i % kTeams);
    ns.labels["env"] = kEnvs[i % 3];
    state.namespaces[ns.name] = ns;
  }

  // Which namespace each pod lives in: two DNS pods in kube-system, the rest uniform.
  std::vector<int> ns_of(spec.pods);
  ns_of[0] = ns_of[1] = 0;
  for (int i = 2; i < spec.pods; ++i) ns_of[i] = rng.Below(spec.namespaces);
  std::vector<int> per_ns(spec.namespaces, 0);
  for (int i = 0; i < spec.pods; ++i) ++per_ns[ns_of[i]];

  // Which pods are local: a seeded sample of `local_pods` (never the DNS pods, unless the
  // cluster has nothing else).
  std::vector<int> order(spec.pods);
  for (int i = 0; i < spec.pods; ++i) order[i] = i;
  for (int i = spec.pods - 1; i > 0; --i) std::swap(order[i], order[rng.Below(i + 1)]);
  std::vector<int> node_of(spec.pods, -1);
  std::vector<int> host_of(spec.pods, 0);
  int placed_local = 0;
  for (int idx : order) {
    if (placed_local == spec.local_pods) break;
    if (idx < 2 && spec.pods - 2 >= spec.local_pods) continue;
    node_of[idx] = 0;
    host_of[idx] = 2 + placed_local++;
  }
  int node = 1, on_node = 0;
  for (int idx : order) {
    if (node_of[idx] == 0) continue;
    if (on_node == spec.pods_per_node) ++node, on_node = 0;
    node_of[idx] = node;
    host_of[idx] = 2 + on_node++;
  }

  // Pods.
  std::vector<int> seq_in_ns(spec.namespaces, 0);
  for (int i = 0; i < spec.pods; ++i) {
    const int ns = ns_of[i];
    Pod pod;
    pod.namespace_name = NamespaceName(ns);
    const int seq = seq_in_ns[ns]++;
    if (i < 2) {
      pod.name = absl::StrCat("coredns-", i);
      pod.labels["k8s-app"] = "kube-dns";
      pod.ports = {Port("dns", 53, Protocol::kUDP), Port("dns-tcp", 53, Protocol::kTCP),
                   Port("metrics", 9153)};
    } else {
      const int app = rng.Below(AppsIn(per_ns[ns]));
      pod.name = absl::StrCat("app-", app, "-", seq);
      SetAppLabels(app, &pod);
      pod.labels["version"] = rng.Below(4) == 0 ? "v2" : "v1";
    }
    if (spec.unique_labels) pod.labels["pod-id"] = absl::StrCat(pod.namespace_name, "-", seq);
    pod.node_name = absl::StrCat("node-", node_of[i]);
    const uint32_t block = (10u << 24) | (uint32_t(node_of[i]) << kNodeBlockBits);
    pod.ips.push_back(V4(block + host_of[i]));
    if (spec.dual_stack) pod.ips.push_back(V6(0x10, 0, node_of[i], host_of[i]));
    state.pods[pod.Key()] = std::move(pod);
  }

  // Policies: round-robin over namespaces, round 0 the default deny.
  Shape shape = ShapeOf(state, spec);
  int ipblock_policies = 0;
  for (int k = 0; k < spec.policies; ++k) {
    int ns = k % spec.namespaces, round = k / spec.namespaces;
    if (round >= 1 && KindOf(ns, round) == 3) ++ipblock_policies;
  }
  const int per_policy_blocks =
      spec.ipblocks > 0 && ipblock_policies > 0
          ? (spec.ipblocks + ipblock_policies - 1) / ipblock_policies
          : 1;
  int blocks_left = spec.ipblocks > 0 ? spec.ipblocks : ipblock_policies;
  int block_base = 0;
  for (int k = 0; k < spec.policies; ++k) {
    const int ns = k % spec.namespaces, round = k / spec.namespaces;
    const int kind = round == 0 ? -1 : KindOf(ns, round);
    int blocks = 1;
    if (kind == 3 && spec.ipblocks > 0) {
      blocks = std::max(1, std::min(per_policy_blocks, blocks_left));
      blocks_left -= blocks;
    }
    static constexpr const char* kNames[] = {"allow-same-ns", "allow-from-teams", "allow-web",
                                             "allow-ipblock", "egress-dns", "egress-db",
                                             "allow-monitoring"};
    std::string name = kind == -1 ? std::string("default-deny")
                                  : absl::StrCat(kNames[kind], "-", round);
    NetworkPolicy p = MakePolicy(shape, ns, kind, name, blocks, block_base, &rng);
    if (blocks > 1) block_base += blocks;
    state.policies[p.Key()] = std::move(p);
  }
  return state;
}

WorkloadStats Stats(const State& state, const std::string& node) {
  WorkloadStats s;
  s.namespaces = static_cast<int>(state.namespaces.size());
  s.pods = static_cast<int>(state.pods.size());
  std::map<std::string, int> nodes;
  for (const auto& [key, pod] : state.pods) {
    ++nodes[pod.node_name];
    if (pod.node_name == node) ++s.local_pods;
  }
  s.nodes = static_cast<int>(nodes.size());
  s.policies = static_cast<int>(state.policies.size());
  for (const auto& [key, p] : state.policies) {
    if (p.ingress_type) ++s.ingress_policies;
    if (p.egress_type) ++s.egress_policies;
    for (const auto* rules : {&p.ingress, &p.egress}) {
      for (const Rule& r : *rules) {
        for (const Peer& peer : r.peers) s.ipblock_peers += peer.ip_block.has_value();
        for (const PolicyPort& port : r.ports) {
          s.named_ports += port.named_port.has_value();
          s.port_ranges += port.end_port.has_value();
        }
      }
    }
  }
  return s;
}

Pod EventPod(const State& state, uint64_t n, const std::string& node, bool dual_stack) {
  Rng rng(Mix(0xe7e47, n));
  // Skip kube-system (index 0) when there is anything else, so the pod has apps to join.
  const int namespaces = static_cast<int>(state.namespaces.size());
  int ns_index = namespaces > 1 ? 1 + rng.Below(namespaces - 1) : 0;
  auto ns_it = state.namespaces.begin();
  std::advance(ns_it, ns_index);
  Pod pod;
  pod.namespace_name = ns_it->first;
  pod.name = absl::StrCat("event-", n);
  // Join an app that exists in the namespace: count its pods.
  int in_ns = 0;
  auto first = state.pods.lower_bound(pod.namespace_name + "/");
  for (auto it = first; it != state.pods.end() && it->second.namespace_name == pod.namespace_name;
       ++it) {
    ++in_ns;
  }
  SetAppLabels(rng.Below(AppsIn(in_ns)), &pod);
  pod.labels["version"] = "v1";
  pod.node_name = node;
  const uint32_t offset = static_cast<uint32_t>(n % kEventSpan);
  pod.ips.push_back(V4(kEventBase + offset));
  if (dual_stack) pod.ips.push_back(V6(0x11, 0, 0, offset));
  return pod;
}

Pod RelabeledPod(const Pod& pod, uint64_t n) {
  Pod out = pod;
  int app = 0;
  auto it = pod.labels.find("app");
  if (it != pod.labels.end() && absl::StartsWith(it->second, "app-")) {
    app = std::atoi(it->second.c_str() + 4);
  }
  // Alternate between the next app and the original one, so relabel streams stay bounded.
  int next = (n % 2 == 0) ? app + 1 : std::max(0, app - 1);
  SetAppLabels(next, &out);
  return out;
}

NetworkPolicy EventPolicy(const State& state, const WorkloadSpec& spec, uint64_t n) {
  Rng rng(Mix(0x9011c7, n));
  Shape shape = ShapeOf(state, spec);
  int ns = rng.Below(shape.namespaces);
  int kind = rng.Below(kPolicyKinds);
  return MakePolicy(shape, ns, kind, absl::StrCat("event-", n), 1, 0, &rng);
}

absl::StatusOr<State> DatapathState(int policies, int background_pods, uint64_t seed) {
  if (policies < 0) return absl::InvalidArgumentError("datapath: policies: must be >= 0");
  if (background_pods < 0 || background_pods > 100000) {
    return absl::InvalidArgumentError("datapath: background_pods: must be in 0..100000");
  }
  Rng rng(seed);
  State state;
  constexpr int kBackgroundNamespaces = 50;
  auto add_ns = [&](const std::string& name, const std::string& team) {
    Namespace ns;
    ns.name = name;
    ns.labels[kNamespaceNameLabel] = name;
    ns.labels["team"] = team;
    state.namespaces[name] = ns;
  };
  add_ns("dp-client", "client");
  add_ns("dp-server", "server");
  for (int i = 0; i < kBackgroundNamespaces; ++i) {
    add_ns(absl::StrFormat("bg-%02d", i), absl::StrCat("team-", i));
  }
  auto lab_pod = [&](const std::string& ns, const std::string& name, const char* v4,
                     const char* v6) {
    Pod pod;
    pod.namespace_name = ns;
    pod.name = name;
    pod.labels["app"] = name;
    pod.node_name = kDatapathNode;
    pod.ports.push_back(Port("http", kDatapathPort));
    pod.ips.push_back(*IpAddr::Parse(v4));
    pod.ips.push_back(*IpAddr::Parse(v6));
    state.pods[pod.Key()] = pod;
  };
  lab_pod("dp-client", "client", kDatapathClientV4, kDatapathClientV6);
  lab_pod("dp-server", "server", kDatapathServerV4, kDatapathServerV6);
  for (int i = 0; i < background_pods; ++i) {
    Pod pod;
    pod.namespace_name = absl::StrFormat("bg-%02d", i % kBackgroundNamespaces);
    const int app = rng.Below(20);
    pod.name = absl::StrCat("app-", app, "-", i);
    SetAppLabels(app, &pod);
    int node = 2 + i / 110;
    pod.node_name = absl::StrCat("node-", node);
    pod.ips.push_back(V4((10u << 24) | (uint32_t(node) << kNodeBlockBits) | (2 + i % 110)));
    state.pods[pod.Key()] = std::move(pod);
  }
  for (int k = 0; k < policies; ++k) {
    NetworkPolicy p;
    p.namespace_name = "dp-server";
    p.ingress_type = true;
    p.pod_selector = MatchLabel("app", "server");
    Rule rule;
    Peer peer;
    if (k == policies - 1) {
      p.name = absl::StrFormat("p%05d-allow-client", k);
      peer.namespace_selector = MatchLabel("team", "client");
      rule.peers.push_back(peer);
      rule.ports.push_back(NumericPort(kDatapathPort));
      p.ingress.push_back(rule);
      state.policies[p.Key()] = std::move(p);
      continue;
    }
    p.name = absl::StrFormat("p%05d", k);
    switch (k % 4) {
      case 0:  // a labelled background namespace, named port
        peer.namespace_selector =
            MatchLabel("team", absl::StrCat("team-", rng.Below(kBackgroundNamespaces)));
        rule.ports.push_back(NamedPort("http"));
        break;
      case 1:  // pods of one app in the server's namespace (none exist), numeric port
        peer.pod_selector = MatchLabel("app", absl::StrCat("peer-", k));
        rule.ports.push_back(NumericPort(8080));
        break;
      case 2:  // namespace + pod selector, a port range
        peer.namespace_selector =
            MatchLabel("team", absl::StrCat("team-", rng.Below(kBackgroundNamespaces)));
        peer.pod_selector = MatchLabel("app", absl::StrCat("app-", rng.Below(20)));
        rule.ports.push_back(RangePort(8000, 8100));
        break;
      default: {  // an ipBlock with except that the client is not in
        IPBlock block;
        uint32_t index = static_cast<uint32_t>(k) % 16384;
        uint32_t base = (100u << 24) | (64u << 16) | (index << 8);
        block.cidr = MakeCidr(base, 24);
        block.except.push_back(MakeCidr(base + 16 * uint32_t(rng.Below(16)), 28));
        peer.ip_block = block;
        rule.ports.push_back(NumericPort(8080));
        break;
      }
    }
    rule.peers.push_back(peer);
    p.ingress.push_back(rule);
    state.policies[p.Key()] = std::move(p);
  }
  return state;
}

std::string StateToYaml(const State& state) {
  std::vector<Object> objects;
  objects.reserve(state.namespaces.size() + state.pods.size() + state.policies.size());
  for (const auto& [k, v] : state.namespaces) objects.push_back(Object{v});
  for (const auto& [k, v] : state.pods) objects.push_back(Object{v});
  for (const auto& [k, v] : state.policies) objects.push_back(Object{v});
  return ToYaml(objects);
}

}  // namespace netpol::bench
