#include "engine/compiler/testutil.h"

#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"

namespace netpol::compiler::testing {

IpAddr Ip(const std::string& text) {
  absl::StatusOr<IpAddr> a = IpAddr::Parse(text);
  if (!a.ok()) {
    std::cerr << "bad address in test: " << text << "\n";
    std::abort();
  }
  return *a;
}

Cidr CidrOf(const std::string& text) {
  absl::StatusOr<Cidr> c = Cidr::Parse(text);
  if (!c.ok()) {
    std::cerr << "bad CIDR in test: " << text << "\n";
    std::abort();
  }
  return *c;
}

Namespace MakeNamespace(const std::string& name, Labels labels) {
  Namespace ns;
  ns.name = name;
  ns.labels = std::move(labels);
  ns.labels[kNamespaceNameLabel] = name;
  return ns;
}

Pod MakePod(const std::string& ns, const std::string& name, Labels labels, const std::string& node,
            const std::vector<std::string>& ips, std::vector<ContainerPort> ports) {
  Pod p;
  p.namespace_name = ns;
  p.name = name;
  p.labels = std::move(labels);
  p.node_name = node;
  for (const std::string& ip : ips) p.ips.push_back(Ip(ip));
  p.ports = std::move(ports);
  return p;
}

LabelSelector Sel(Labels match_labels) {
  LabelSelector s;
  s.match_labels = std::move(match_labels);
  return s;
}

PolicyPort TcpPort(int32_t port) {
  PolicyPort p;
  p.port = port;
  return p;
}

PolicyPort NamedPort(const std::string& name, Protocol protocol) {
  PolicyPort p;
  p.protocol = protocol;
  p.named_port = name;
  return p;
}

Peer PodPeer(LabelSelector pods) {
  Peer p;
  p.pod_selector = std::move(pods);
  return p;
}

Peer NamespacePeer(LabelSelector namespaces) {
  Peer p;
  p.namespace_selector = std::move(namespaces);
  return p;
}

Peer BlockPeer(const std::string& cidr, const std::vector<std::string>& except) {
  Peer p;
  IPBlock b;
  b.cidr = CidrOf(cidr);
  for (const std::string& e : except) b.except.push_back(CidrOf(e));
  p.ip_block = std::move(b);
  return p;
}

std::string WideBlock(int i) {
  return absl::StrCat("172.", 16 + i / 128, ".", 2 * (i % 128), ".0/24");
}

int32_t WidePort(int i) { return 1000 + 2 * i; }

NetworkPolicy WidePolicy(const std::string& ns, const std::string& name, int blocks, int ports) {
  NetworkPolicy p;
  p.namespace_name = ns;
  p.name = name;
  p.pod_selector.match_labels["app"] = "web";
  p.ingress_type = true;
  Rule r;
  for (int i = 0; i < blocks; ++i) r.peers.push_back(BlockPeer(WideBlock(i)));
  for (int i = 0; i < ports; ++i) r.ports.push_back(TcpPort(WidePort(i)));
  p.ingress.push_back(std::move(r));
  return p;
}

NetworkPolicy EveryNamespacePolicy(const std::string& ns, const std::string& name, int ports) {
  NetworkPolicy p;
  p.namespace_name = ns;
  p.name = name;
  p.pod_selector.match_labels["app"] = "web";
  p.ingress_type = true;
  Rule r;
  r.peers.push_back(NamespacePeer(LabelSelector{}));
  for (int i = 0; i < ports; ++i) r.ports.push_back(TcpPort(WidePort(i)));
  p.ingress.push_back(std::move(r));
  return p;
}

void AddCrowd(State* state, const std::string& ns, int first, int count, const std::string& node) {
  for (int i = first; i < first + count; ++i) {
    const int a = 2 * i;
    Add(state, MakePod(ns, absl::StrCat("crowd-", i), {{"app", "crowd"}}, node,
                       {absl::StrCat("10.64.", a / 256, ".", a % 256)}));
  }
}

void Add(State* state, Namespace ns) { state->namespaces[ns.name] = std::move(ns); }
void Add(State* state, Pod pod) { state->pods[pod.Key()] = std::move(pod); }
void Add(State* state, NetworkPolicy policy) { state->policies[policy.Key()] = std::move(policy); }

uint64_t Rng::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int Rng::Uniform(int n) { return static_cast<int>(Next() % static_cast<uint64_t>(n)); }

IpAddr NodeAddr(int node, Family family) {
  return family == Family::kV4 ? Ip(absl::StrCat("192.168.0.", node + 1))
                               : Ip(absl::StrCat("fd00:ffff::", node + 1));
}

namespace {

const std::vector<std::string> kNamespaces = {"a", "b", "c"};
const std::vector<std::string> kApps = {"web", "db", "api"};
const std::vector<std::string> kPortNames = {"http", "metrics", "dns"};
const std::vector<int32_t> kPortNumbers = {53, 80, 8080, 9090};

LabelSelector RandomPodSelector(Rng& rng) {
  LabelSelector s;
  switch (rng.Uniform(6)) {
    case 0:
      break;  // {}: every pod
    case 1:
    case 2:
      s.match_labels["app"] = rng.Pick(kApps);
      break;
    case 3: {
      LabelSelectorRequirement r;
      r.key = "tier";
      r.op = LabelSelectorRequirement::Op::kIn;
      r.values = {"fe"};
      s.match_expressions.push_back(r);
      break;
    }
    case 4: {
      LabelSelectorRequirement r;
      r.key = "app";
      r.op = LabelSelectorRequirement::Op::kNotIn;
      r.values = {rng.Pick(kApps)};
      s.match_expressions.push_back(r);
      break;
    }
    default: {
      LabelSelectorRequirement r;
      r.key = "tier";
      r.op = rng.Chance(50) ? LabelSelectorRequirement::Op::kExists
                            : LabelSelectorRequirement::Op::kDoesNotExist;
      s.match_expressions.push_back(r);
      break;
    }
  }
  return s;
}

LabelSelector RandomNamespaceSelector(Rng& rng) {
  LabelSelector s;
  switch (rng.Uniform(3)) {
    case 0:
      break;
    case 1:
      s.match_labels["team"] = rng.Chance(50) ? "red" : "blue";
      break;
    default:
      s.match_labels[kNamespaceNameLabel] = rng.Pick(kNamespaces);
      break;
  }
  return s;
}

Peer RandomPeer(Rng& rng) {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kBlocks = {
      {"10.0.0.0/16", {"10.0.1.0/24"}}, {"10.0.0.0/24", {}},    {"10.0.1.0/28", {"10.0.1.4/30"}},
      {"0.0.0.0/0", {"10.0.0.0/8"}},    {"192.168.0.0/24", {}}, {"203.0.113.0/24", {}},
      {"fd00::/64", {"fd00::1:0/112"}}, {"::/0", {}},           {"fd00::1:0/124", {}},
  };
  switch (rng.Uniform(5)) {
    case 0:
      return PodPeer(RandomPodSelector(rng));
    case 1:
      return NamespacePeer(RandomNamespaceSelector(rng));
    case 2: {
      Peer p = PodPeer(RandomPodSelector(rng));
      p.namespace_selector = RandomNamespaceSelector(rng);
      return p;
    }
    default: {
      const auto& b = rng.Pick(kBlocks);
      return BlockPeer(b.first, b.second);
    }
  }
}

PolicyPort RandomPort(Rng& rng) {
  PolicyPort p;
  int proto = rng.Uniform(10);
  p.protocol = proto < 6 ? Protocol::kTCP : proto < 9 ? Protocol::kUDP : Protocol::kSCTP;
  switch (rng.Uniform(6)) {
    case 0:
    case 1:
      p.port = rng.Pick(kPortNumbers);
      break;
    case 2:
    case 3:
      p.named_port = rng.Pick(kPortNames);
      break;
    case 4:
      p.port = rng.Chance(50) ? 80 : 50;
      p.end_port = *p.port == 80 ? 8080 : 60;
      break;
    default:
      break;  // every port of the protocol
  }
  return p;
}

// A rule that is large (RULESET.md "Large rules"), or may be depending on the pods: many ports
// (some of them the probed ones) and a selector peer, or many small ipBlocks around the pod
// addresses.
Rule RandomLargeRule(Rng& rng) {
  static const std::vector<std::pair<Protocol, int32_t>> kProbed = {
      {Protocol::kTCP, 80},  {Protocol::kTCP, 8080}, {Protocol::kTCP, 9090}, {Protocol::kTCP, 53},
      {Protocol::kUDP, 53},  {Protocol::kUDP, 9090}, {Protocol::kSCTP, 55},  {Protocol::kTCP, 1000}};
  Rule r;
  const bool blocks = rng.Chance(50);
  // With selector peers, the rule is large when (matched pod addresses) x ports > 1,024: 60 to
  // 260 ports put that threshold at 4 to 17 addresses, which pods coming, going and relabelled
  // cross back and forth.
  const int numeric = blocks ? 34 + rng.Uniform(4) : 60 + rng.Uniform(201);
  for (int i = 0; i < numeric; ++i) {
    PolicyPort p;
    if (rng.Chance(25)) {
      const auto& probe = rng.Pick(kProbed);
      p.protocol = probe.first;
      p.port = probe.second;
    } else {
      p.protocol = rng.Chance(70) ? Protocol::kTCP : Protocol::kUDP;
      p.port = 2000 + rng.Uniform(1000);
      if (rng.Chance(10)) p.end_port = *p.port + rng.Uniform(20);
    }
    r.ports.push_back(p);
  }
  for (int i = rng.Uniform(3); i > 0; --i) r.ports.push_back(RandomPort(rng));
  if (blocks) {
    for (int i = 0; i < 32; ++i) {
      const int node = rng.Uniform(2), at = 4 * rng.Uniform(16);
      std::vector<std::string> except;
      if (rng.Chance(20)) except.push_back(absl::StrCat("10.0.", node, ".", at + 2, "/31"));
      r.peers.push_back(BlockPeer(absl::StrCat("10.0.", node, ".", at, "/30"), except));
    }
    r.peers.push_back(BlockPeer(absl::StrCat("fd00::", rng.Uniform(2), ":0/124"), {}));
  } else if (rng.Chance(50)) {
    r.peers.push_back(PodPeer(RandomPodSelector(rng)));
  } else {
    r.peers.push_back(NamespacePeer(RandomNamespaceSelector(rng)));
  }
  for (int i = rng.Uniform(3); i > 0; --i) r.peers.push_back(RandomPeer(rng));
  return r;
}

Rule RandomRule(Rng& rng) {
  if (rng.Uniform(12) == 0) return RandomLargeRule(rng);
  Rule r;
  int ports = rng.Uniform(4);  // 0 (any port) is common on purpose
  for (int i = 0; i < ports && i < 2; ++i) r.ports.push_back(RandomPort(rng));
  int peers = rng.Uniform(4);
  for (int i = 0; i < peers && i < 2; ++i) r.peers.push_back(RandomPeer(rng));
  return r;
}

}  // namespace

State RandomState(uint32_t seed, const RandomStateOptions& options) {
  Rng rng(seed * 0x100000001b3ULL + 7);
  State state;
  for (const std::string& name : kNamespaces) {
    Labels labels;
    if (rng.Chance(70)) labels["team"] = rng.Chance(50) ? "red" : "blue";
    Add(&state, MakeNamespace(name, labels));
  }
  int pods = options.min_pods + rng.Uniform(options.max_pods - options.min_pods + 1);
  for (int i = 0; i < pods; ++i) {
    Labels labels;
    if (rng.Chance(80)) labels["app"] = rng.Pick(kApps);
    if (rng.Chance(50)) labels["tier"] = rng.Chance(50) ? "fe" : "be";
    int node = rng.Uniform(2);
    std::vector<std::string> ips;
    bool host = rng.Chance(10);
    if (host) {
      ips = {NodeAddr(node, Family::kV4).ToString(), NodeAddr(node, Family::kV6).ToString()};
    } else {
      int mode = rng.Uniform(10);
      if (mode < 7) ips.push_back(absl::StrCat("10.0.", node, ".", i + 1));
      if (mode >= 4 && mode < 9) ips.push_back(absl::StrCat("fd00::", node, ":", i + 1));
    }
    std::vector<ContainerPort> ports;
    std::vector<std::string> names = kPortNames;
    int nports = rng.Uniform(3);
    for (int k = 0; k < nports; ++k) {
      ContainerPort cp;
      cp.name = names[k];
      if (rng.Chance(50)) cp.name = names[(k + 1) % names.size()];
      bool dup = false;
      for (const ContainerPort& o : ports) dup = dup || o.name == cp.name;
      if (dup) continue;
      cp.container_port = rng.Pick(kPortNumbers);
      cp.protocol = rng.Chance(75) ? Protocol::kTCP : Protocol::kUDP;
      ports.push_back(cp);
    }
    Pod pod = MakePod(rng.Pick(kNamespaces), absl::StrCat("p", i), labels, node == 0 ? "n1" : "n2",
                      ips, ports);
    pod.host_network = host;
    Add(&state, std::move(pod));
  }
  int policies =
      options.min_policies + rng.Uniform(options.max_policies - options.min_policies + 1);
  for (int i = 0; i < policies; ++i) {
    NetworkPolicy p;
    p.namespace_name = rng.Pick(kNamespaces);
    p.name = absl::StrCat("pol", i);
    p.pod_selector = RandomPodSelector(rng);
    int types = rng.Uniform(10);
    p.ingress_type = types < 7;
    p.egress_type = types >= 4;
    int nin = rng.Uniform(4), neg = rng.Uniform(4);
    for (int k = 0; k < nin; ++k) p.ingress.push_back(RandomRule(rng));
    for (int k = 0; k < neg; ++k) p.egress.push_back(RandomRule(rng));
    p.log_allowed = i % 3 == 0;  // not drawn: the random stream stays that of older seeds
    Add(&state, std::move(p));
  }
  return state;
}

// One to four random edits of `s`, drawing on every kind of change.
State Mutate(const State& s, uint64_t seed) {
  Rng rng(seed * 7919 + 13);
  State out = s;
  const State donor = RandomState(static_cast<uint32_t>(seed % 100000) + 70000);
  int edits = 1 + rng.Uniform(4);
  for (int i = 0; i < edits; ++i) {
    switch (rng.Uniform(12)) {
      case 0:  // a pod leaves
        if (!out.pods.empty()) out.pods.erase(PickIn(out.pods, rng));
        break;
      case 1: {  // a pod arrives, cloned from another with a fresh address
        if (out.pods.empty()) break;
        Pod p = PickIn(out.pods, rng)->second;
        p.name = absl::StrCat("new", seed % 1000, "-", i);
        if (!p.host_network) {
          p.ips.clear();
          if (rng.Chance(80)) p.ips.push_back(Ip(absl::StrCat("10.0.", rng.Uniform(2), ".", 100 + i)));
          if (rng.Chance(50)) p.ips.push_back(Ip(absl::StrCat("fd00::", rng.Uniform(2), ":", 100 + i)));
        }
        p.node_name = rng.Chance(50) ? "n1" : "n2";
        Add(&out, p);
        break;
      }
      case 2: {  // relabel a pod
        if (out.pods.empty()) break;
        Pod& p = out.pods[PickIn(out.pods, rng)->first];
        if (rng.Chance(20)) {
          p.labels.erase("app");
        } else {
          p.labels["app"] = rng.Chance(50) ? "web" : "db";
        }
        if (rng.Chance(30)) p.labels["tier"] = rng.Chance(50) ? "fe" : "be";
        break;
      }
      case 3:  // a policy leaves
        if (!out.policies.empty()) out.policies.erase(PickIn(out.policies, rng));
        break;
      case 4: {  // a policy arrives (from another random cluster)
        if (donor.policies.empty() || out.namespaces.empty()) break;
        NetworkPolicy p = PickIn(const_cast<State&>(donor).policies, rng)->second;
        p.name = absl::StrCat("added", i);
        p.namespace_name = PickIn(out.namespaces, rng)->first;
        Add(&out, p);
        break;
      }
      case 5: {  // a policy changes its body
        if (out.policies.empty() || donor.policies.empty()) break;
        NetworkPolicy& p = out.policies[PickIn(out.policies, rng)->first];
        NetworkPolicy body = PickIn(const_cast<State&>(donor).policies, rng)->second;
        body.namespace_name = p.namespace_name;
        body.name = p.name;
        p = body;
        break;
      }
      case 6: {  // a namespace relabels
        if (out.namespaces.empty()) break;
        Namespace& n = out.namespaces[PickIn(out.namespaces, rng)->first];
        if (rng.Chance(25)) {
          n.labels.erase("team");
        } else {
          n.labels["team"] = rng.Chance(50) ? "red" : "blue";
        }
        break;
      }
      case 7:  // a namespace object goes (its pods stay, with only the name label)
        if (!out.namespaces.empty()) out.namespaces.erase(PickIn(out.namespaces, rng));
        break;
      case 8: {  // a pod changes its addresses
        if (out.pods.empty()) break;
        Pod& p = out.pods[PickIn(out.pods, rng)->first];
        if (p.host_network) break;
        p.ips.clear();
        if (rng.Chance(70)) p.ips.push_back(Ip(absl::StrCat("10.0.", rng.Uniform(2), ".", 150 + i)));
        if (rng.Chance(40)) p.ips.push_back(Ip(absl::StrCat("fd00::", rng.Uniform(2), ":", 150 + i)));
        break;
      }
      case 9: {  // a pod's named ports change
        if (out.pods.empty()) break;
        Pod& p = out.pods[PickIn(out.pods, rng)->first];
        if (!p.ports.empty() && rng.Chance(50)) {
          p.ports.front().container_port = rng.Chance(50) ? 8080 : 9090;
        } else {
          ContainerPort cp;
          cp.name = rng.Chance(50) ? "http" : "metrics";
          cp.container_port = rng.Chance(50) ? 8080 : 9100;
          bool dup = false;
          for (const ContainerPort& o : p.ports) dup = dup || (o.name == cp.name);
          if (!dup) p.ports.push_back(cp);
        }
        break;
      }
      case 10: {  // a pod moves between local and remote, or becomes hostNetwork
        if (out.pods.empty()) break;
        Pod& p = out.pods[PickIn(out.pods, rng)->first];
        if (rng.Chance(80)) {
          p.node_name = p.node_name == "n1" ? "n2" : "n1";
        } else {
          p.host_network = !p.host_network;
        }
        break;
      }
      default: {  // a namespace arrives with a pod
        std::string ns = absl::StrCat("extra", i);
        Add(&out, MakeNamespace(ns, {{"team", rng.Chance(50) ? "red" : "blue"}}));
        Add(&out, MakePod(ns, "x", {{"app", "web"}}, rng.Chance(50) ? "n1" : "n2",
                          {absl::StrCat("10.0.", rng.Uniform(2), ".", 200 + i)},
                          {{"http", 8080, Protocol::kTCP}}));
        break;
      }
    }
  }
  return out;
}

namespace {

CnpPeer RandomCnpPodPeer(Rng& rng) {
  CnpPeer p;
  if (rng.Chance(40)) {
    p.namespaces = RandomNamespaceSelector(rng);
  } else {
    p.pods = NamespacedPod{RandomNamespaceSelector(rng), RandomPodSelector(rng)};
  }
  return p;
}

CnpPeer RandomCnpPeer(Rng& rng, bool egress) {
  static const std::vector<std::string> kNetworks = {
      "10.0.0.0/24", "10.0.1.0/28", "0.0.0.0/0",      "192.168.0.0/24", "203.0.113.0/24",
      "fd00::/64",   "::/0",        "fd00::1:0/124", "fd00:ffff::/64", "10.0.0.0/30"};
  if (!egress || rng.Chance(55)) return RandomCnpPodPeer(rng);
  CnpPeer p;
  if (rng.Chance(40)) {
    LabelSelector s;
    if (rng.Chance(70)) s.match_labels["role"] = rng.Chance(50) ? "infra" : "worker";
    p.nodes = s;
  } else {
    for (int i = 1 + rng.Uniform(2); i > 0; --i) p.networks.push_back(CidrOf(rng.Pick(kNetworks)));
  }
  return p;
}

CnpPort RandomCnpPort(Rng& rng) {
  CnpPort p;
  const int proto = rng.Uniform(10);
  p.protocol = proto < 6 ? Protocol::kTCP : proto < 9 ? Protocol::kUDP : Protocol::kSCTP;
  switch (rng.Uniform(5)) {
    case 0:
    case 1:
      p.port = rng.Pick(kPortNumbers);
      break;
    case 2:
      p.port = rng.Chance(50) ? 80 : 50;
      p.end_port = p.port == 80 ? 8080 : 60;
      break;
    default:
      p.protocol.reset();
      p.named_port = rng.Pick(kPortNames);
      break;
  }
  return p;
}

CnpRule RandomCnpRule(Rng& rng, bool egress, int index) {
  CnpRule r;
  if (rng.Chance(50)) r.name = absl::StrCat("r", index);
  const int action = rng.Uniform(10);
  r.action = action < 4 ? CnpAction::kAccept : action < 8 ? CnpAction::kDeny : CnpAction::kPass;
  for (int i = 1 + rng.Uniform(2); i > 0; --i) r.peers.push_back(RandomCnpPeer(rng, egress));
  if (rng.Chance(55)) {
    for (int i = 1 + rng.Uniform(2); i > 0; --i) r.ports.push_back(RandomCnpPort(rng));
  }
  return r;
}

ClusterNetworkPolicy RandomCnp(Rng& rng, const std::string& name) {
  static const std::vector<int32_t> kPriorities = {0, 5, 5, 10, 20};
  ClusterNetworkPolicy c;
  c.name = name;
  c.tier = rng.Chance(55) ? CnpTier::kAdmin : CnpTier::kBaseline;
  c.priority = rng.Pick(kPriorities);
  c.subject = RandomCnpPodPeer(rng);
  for (int i = rng.Uniform(4); i > 0; --i) {
    c.ingress.push_back(RandomCnpRule(rng, false, static_cast<int>(c.ingress.size())));
  }
  for (int i = rng.Uniform(4); i > 0; --i) {
    c.egress.push_back(RandomCnpRule(rng, true, static_cast<int>(c.egress.size())));
  }
  return c;
}

}  // namespace

void AddRandomClusterPolicies(State* state, uint64_t seed, int max_policies) {
  Rng rng(seed * 0x9e3779b97f4a7c15ULL + 11);
  for (int n = 0; n < 2; ++n) {
    Node node;
    node.name = n == 0 ? "n1" : "n2";
    if (rng.Chance(80)) node.labels["role"] = rng.Chance(50) ? "infra" : "worker";
    node.ips = {NodeAddr(n, Family::kV4), NodeAddr(n, Family::kV6)};
    state->nodes[node.name] = node;
  }
  for (int i = 1 + rng.Uniform(max_policies); i > 0; --i) {
    ClusterNetworkPolicy c = RandomCnp(rng, absl::StrCat("cnp", i));
    state->cluster_policies[c.name] = std::move(c);
  }
}

State MutateClusterPolicies(const State& s, uint64_t seed) {
  Rng rng(seed * 6364136223846793005ULL + 3);
  State out = s;
  for (int i = 1 + rng.Uniform(3); i > 0; --i) {
    switch (rng.Uniform(6)) {
      case 0: {  // a CNP arrives
        ClusterNetworkPolicy c = RandomCnp(rng, absl::StrCat("cnp-new", rng.Uniform(4)));
        out.cluster_policies[c.name] = std::move(c);
        break;
      }
      case 1:  // a CNP leaves
        if (!out.cluster_policies.empty()) out.cluster_policies.erase(PickIn(out.cluster_policies, rng));
        break;
      case 2: {  // a CNP changes priority or tier
        if (out.cluster_policies.empty()) break;
        ClusterNetworkPolicy& c = out.cluster_policies[PickIn(out.cluster_policies, rng)->first];
        if (rng.Chance(50)) {
          c.priority = rng.Uniform(3) * 5;
        } else {
          c.tier = c.tier == CnpTier::kAdmin ? CnpTier::kBaseline : CnpTier::kAdmin;
        }
        break;
      }
      case 3: {  // a CNP changes its body
        if (out.cluster_policies.empty()) break;
        ClusterNetworkPolicy& c = out.cluster_policies[PickIn(out.cluster_policies, rng)->first];
        ClusterNetworkPolicy body = RandomCnp(rng, c.name);
        body.tier = c.tier;
        body.priority = c.priority;
        c = body;
        break;
      }
      case 4: {  // a node relabels
        if (out.nodes.empty()) break;
        Node& n = out.nodes[PickIn(out.nodes, rng)->first];
        if (rng.Chance(30)) {
          n.labels.erase("role");
        } else {
          n.labels["role"] = rng.Chance(50) ? "infra" : "worker";
        }
        break;
      }
      default:  // the rest of the cluster changes
        out = Mutate(out, seed * 31 + static_cast<uint64_t>(i));
        break;
    }
  }
  return out;
}

}  // namespace netpol::compiler::testing
