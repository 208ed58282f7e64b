// Table-driven tests of the evaluator: one row per semantic rule, named after the rule.
#include "engine/eval/eval.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

IpAddr Ip(const std::string& s) {
  absl::StatusOr<IpAddr> a = IpAddr::Parse(s);
  EXPECT_TRUE(a.ok()) << s << ": " << a.status();
  return a.ok() ? *a : IpAddr();
}

Cidr Net(const std::string& s) {
  absl::StatusOr<Cidr> c = Cidr::Parse(s);
  EXPECT_TRUE(c.ok()) << s << ": " << c.status();
  return c.ok() ? *c : Cidr();
}

// ---- object builders ----

LabelSelector Sel(Labels labels) {
  LabelSelector s;
  s.match_labels = std::move(labels);
  return s;
}

LabelSelector Expr(const std::string& key, LabelSelectorRequirement::Op op,
                   std::vector<std::string> values = {}) {
  LabelSelector s;
  s.match_expressions.push_back(LabelSelectorRequirement{key, op, std::move(values)});
  return s;
}

Peer PodPeer(LabelSelector pods) {
  Peer p;
  p.pod_selector = std::move(pods);
  return p;
}

Peer NsPeer(LabelSelector namespaces) {
  Peer p;
  p.namespace_selector = std::move(namespaces);
  return p;
}

Peer BothPeer(LabelSelector namespaces, LabelSelector pods) {
  Peer p;
  p.namespace_selector = std::move(namespaces);
  p.pod_selector = std::move(pods);
  return p;
}

Peer BlockPeer(const std::string& cidr, std::vector<std::string> except = {}) {
  Peer p;
  IPBlock b;
  b.cidr = Net(cidr);
  for (const std::string& e : except) b.except.push_back(Net(e));
  p.ip_block = b;
  return p;
}

PolicyPort Port(Protocol proto, int port) {
  PolicyPort p;
  p.protocol = proto;
  p.port = port;
  return p;
}

PolicyPort Range(Protocol proto, int port, int end) {
  PolicyPort p = Port(proto, port);
  p.end_port = end;
  return p;
}

PolicyPort Named(Protocol proto, const std::string& name) {
  PolicyPort p;
  p.protocol = proto;
  p.named_port = name;
  return p;
}

PolicyPort AnyPortOf(Protocol proto) {
  PolicyPort p;
  p.protocol = proto;
  return p;
}

Rule R(std::vector<Peer> peers = {}, std::vector<PolicyPort> ports = {}) {
  Rule r;
  r.peers = std::move(peers);
  r.ports = std::move(ports);
  return r;
}

NetworkPolicy Ingress(const std::string& ns, const std::string& name, LabelSelector sel,
                      std::vector<Rule> rules = {}) {
  NetworkPolicy p;
  p.namespace_name = ns;
  p.name = name;
  p.pod_selector = std::move(sel);
  p.ingress_type = true;
  p.ingress = std::move(rules);
  return p;
}

NetworkPolicy Egress(const std::string& ns, const std::string& name, LabelSelector sel,
                     std::vector<Rule> rules = {}) {
  NetworkPolicy p;
  p.namespace_name = ns;
  p.name = name;
  p.pod_selector = std::move(sel);
  p.egress_type = true;
  p.egress = std::move(rules);
  return p;
}

constexpr auto TCP = Protocol::kTCP;
constexpr auto UDP = Protocol::kUDP;
constexpr auto SCTP = Protocol::kSCTP;
using Op = LabelSelectorRequirement::Op;

Pod MakePod(const std::string& ns, const std::string& name, Labels labels,
            std::vector<std::string> ips, std::vector<ContainerPort> ports = {},
            bool host_network = false) {
  Pod p;
  p.namespace_name = ns;
  p.name = name;
  p.labels = std::move(labels);
  p.node_name = "node-1";
  p.host_network = host_network;
  p.ports = std::move(ports);
  for (const std::string& ip : ips) p.ips.push_back(Ip(ip));
  return p;
}

// The fixture cluster:
//   namespace x {ns: x}: x/a, x/b (named port http=8080/TCP), x/h (hostNetwork 192.168.0.10),
//                        x/v4 (IPv4 only)
//   namespace y {ns: y, team: blue}: y/a (http=9090/TCP), y/b
//   namespace z is NOT in the State: z/c lives there.
// Every pod but x/v4 and x/h is dual-stack.
State BaseState() {
  State s;
  s.namespaces["x"] = Namespace{"x", {{"ns", "x"}, {kNamespaceNameLabel, "x"}}};
  // y deliberately lacks the kubernetes.io/metadata.name label: the evaluator adds it.
  s.namespaces["y"] = Namespace{"y", {{"ns", "y"}, {"team", "blue"}}};
  const std::vector<ContainerPort> common = {
      {"serve-80-tcp", 80, TCP}, {"serve-81-udp", 81, UDP}, {"serve-82-sctp", 82, SCTP}};
  auto with = [&](std::vector<ContainerPort> extra) {
    std::vector<ContainerPort> all = common;
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };
  for (Pod p : {
           MakePod("x", "a", {{"pod", "a"}}, {"10.0.0.1", "fd00::1"}, common),
           MakePod("x", "b", {{"pod", "b"}, {"tier", "web"}}, {"10.0.0.2", "fd00::2"},
                   with({{"http", 8080, TCP}, {"dns", 53, UDP}})),
           MakePod("x", "h", {{"pod", "h"}}, {"192.168.0.10"}, common, /*host_network=*/true),
           MakePod("x", "v4", {{"pod", "v4"}}, {"10.0.0.4"}, common),
           MakePod("y", "a", {{"pod", "a"}}, {"10.0.1.1", "fd00::101"},
                   with({{"http", 9090, TCP}})),
           MakePod("y", "b", {{"pod", "b"}, {"tier", "db"}}, {"10.0.1.2", "fd00::102"}, common),
           MakePod("z", "c", {{"pod", "c"}}, {"10.0.2.3", "fd00::203"}, common),
       }) {
    s.pods[p.Key()] = p;
  }
  return s;
}

// An endpoint spec: "x/a" (a pod of the State), "ip:1.2.3.4" (a bare address), "node" (the node
// as a source) or "node:10.0.0.254" (the node's address as a destination).
Endpoint Ep(const State& s, const std::string& spec) {
  if (absl::StartsWith(spec, "ip:")) return Endpoint::ForAddress(Ip(spec.substr(3)));
  if (spec == "node") return Endpoint::ForNode();
  if (absl::StartsWith(spec, "node:")) return Endpoint::ForNode(Ip(spec.substr(5)));
  const Pod* p = s.FindPod(spec);
  EXPECT_NE(p, nullptr) << spec;
  return p ? Endpoint::ForPod(*p) : Endpoint();
}

struct Row {
  std::string name;  // the rule the row pins
  std::vector<NetworkPolicy> policies;
  std::string src, dst;
  Family family;
  Protocol protocol;
  int port;
  bool allowed;
  std::function<void(State&)> mutate = nullptr;  // extra changes to the base state
};

class DecideTest : public ::testing::TestWithParam<Row> {};

TEST_P(DecideTest, Rule) {
  const Row& row = GetParam();
  State s = BaseState();
  for (const NetworkPolicy& p : row.policies) s.policies[p.Key()] = p;
  if (row.mutate) row.mutate(s);
  Decision d = Decide(s, Ep(s, row.src), Ep(s, row.dst), row.family, row.protocol, row.port);
  EXPECT_TRUE(d.applicable) << d.Explain();
  EXPECT_EQ(d.allowed, row.allowed) << d.Explain();
}

// Moves the hostNetwork pod x/h to node-2: every other pod is on node-1.
void HostPodOnNode2(State& s) { s.pods["x/h"].node_name = "node-2"; }

const auto V4 = Family::kV4;
const auto V6 = Family::kV6;
const LabelSelector kAll;  // {}

std::vector<Row> Rows() {
  const NetworkPolicy deny_ingress_x = Ingress("x", "deny-ingress", kAll);
  const NetworkPolicy deny_egress_x = Egress("x", "deny-egress", kAll);
  return {
      // ---- isolation ----
      {"NoPolicyMeansEverythingAllowed", {}, "x/a", "y/b", V4, TCP, 80, true},
      {"IngressPolicyWithoutRulesDeniesAllIngress",
       {deny_ingress_x},
       "x/b",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"IngressIsolationLeavesOtherNamespacesAlone",
       {deny_ingress_x},
       "y/a",
       "y/b",
       V4,
       TCP,
       80,
       true},
      {"IngressIsolationDoesNotIsolateEgress", {deny_ingress_x}, "x/a", "y/a", V4, TCP, 80, true},
      {"EgressPolicyWithoutRulesDeniesAllEgress",
       {deny_egress_x},
       "x/a",
       "y/a",
       V4,
       TCP,
       80,
       false},
      {"EgressIsolationDoesNotIsolateIngress", {deny_egress_x}, "y/a", "x/a", V4, TCP, 80, true},
      {"EgressRulesIgnoredWhenEgressTypeNotSet",
       {[] {
         NetworkPolicy p = Ingress("x", "ingress-only", kAll, {R()});
         p.egress = {R({PodPeer(Sel({{"pod", "nobody"}}))})};
         return p;
       }()},
       "x/a",
       "y/a",
       V4,
       TCP,
       80,
       true},
      {"IngressRulesIgnoredWhenIngressTypeNotSet",
       {[] {
         NetworkPolicy p = Egress("x", "egress-only", kAll, {R()});
         p.ingress = {R({PodPeer(Sel({{"pod", "nobody"}}))})};
         return p;
       }()},
       "y/a",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"PolicySelectsOnlyPodsOfItsNamespace", {deny_ingress_x}, "x/a", "y/a", V4, TCP, 80, true},
      {"PodSelectorLimitsIsolationToMatchingPods",
       {Ingress("x", "deny-a", Sel({{"pod", "a"}}))},
       "y/a",
       "x/b",
       V4,
       TCP,
       80,
       true},
      {"PodSelectorMatchExpressionsSelectSubjects",
       {Ingress("x", "deny-not-a", Expr("pod", Op::kNotIn, {"a"}))},
       "y/a",
       "x/b",
       V4,
       TCP,
       80,
       false},
      // ---- union ----
      {"PoliciesAreUnionedAcrossPolicies",
       {deny_ingress_x,
        Ingress("x", "allow-b", Sel({{"pod", "a"}}), {R({PodPeer(Sel({{"pod", "b"}}))})})},
       "x/b",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"RulesAreUnionedWithinPolicy",
       {Ingress("x", "two-rules", kAll,
                {R({PodPeer(Sel({{"pod", "nobody"}}))}), R({}, {Port(TCP, 80)})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"PeersAreUnionedWithinRule",
       {Ingress("x", "two-peers", kAll,
                {R({PodPeer(Sel({{"pod", "nobody"}})), NsPeer(Sel({{"ns", "y"}}))})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"PortsAreUnionedWithinRule",
       {Ingress("x", "two-ports", kAll, {R({}, {Port(TCP, 81), Port(TCP, 80)})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"EmptyRuleAllowsAll",
       {Ingress("x", "allow-all", kAll, {R()})},
       "ip:8.8.8.8",
       "x/a",
       V4,
       SCTP,
       9999,
       true},
      {"EmptyPeersAllowAnyAddress",
       {Ingress("x", "port-only", kAll, {R({}, {Port(TCP, 80)})})},
       "ip:8.8.8.8",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"EmptyPortsAllowAnyPortAndProtocol",
       {Ingress("x", "peer-only", kAll, {R({NsPeer(Sel({{"ns", "y"}}))})})},
       "y/a",
       "x/a",
       V4,
       SCTP,
       5000,
       true},
      // ---- peers ----
      {"PodSelectorPeerMatchesPolicyNamespace",
       {Ingress("x", "from-b", kAll, {R({PodPeer(Sel({{"pod", "b"}}))})})},
       "x/b",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"PodSelectorPeerExcludesOtherNamespaces",
       {Ingress("x", "from-b", kAll, {R({PodPeer(Sel({{"pod", "b"}}))})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"EmptyPodSelectorPeerMeansAllPodsOfPolicyNamespace",
       {Ingress("x", "from-x", kAll, {R({PodPeer(kAll)})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"NamespaceSelectorPeerMatchesAllPodsOfNamespace",
       {Ingress("x", "from-y", kAll, {R({NsPeer(Sel({{"ns", "y"}}))})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"NamespaceSelectorPeerExcludesOtherNamespaces",
       {Ingress("x", "from-y", kAll, {R({NsPeer(Sel({{"ns", "y"}}))})})},
       "x/b",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"EmptyNamespaceSelectorPeerMatchesEveryNamespace",
       {Ingress("x", "from-all", kAll, {R({NsPeer(kAll)})})},
       "z/c",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"BothSelectorsMatchPodInMatchingNamespace",
       {Ingress("x", "y-b", kAll, {R({BothPeer(Sel({{"ns", "y"}}), Sel({{"pod", "b"}}))})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"BothSelectorsRejectOtherPodInMatchingNamespace",
       {Ingress("x", "y-b", kAll, {R({BothPeer(Sel({{"ns", "y"}}), Sel({{"pod", "b"}}))})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"BothSelectorsRejectMatchingPodInOtherNamespace",
       {Ingress("x", "y-b", kAll, {R({BothPeer(Sel({{"ns", "y"}}), Sel({{"pod", "b"}}))})})},
       "x/b",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"NamespaceMetadataNameLabelIsAlwaysPresent",
       {Ingress("x", "from-y", kAll, {R({NsPeer(Sel({{kNamespaceNameLabel, "y"}}))})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"NamespaceMissingFromStateHasOnlyMetadataNameLabel",
       {Ingress("x", "from-z", kAll, {R({NsPeer(Sel({{kNamespaceNameLabel, "z"}}))})})},
       "z/c",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"NamespaceMissingFromStateMatchesNoOtherLabel",
       {Ingress("x", "from-ns-z", kAll, {R({NsPeer(Sel({{"ns", "z"}}))})})},
       "z/c",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"MatchExpressionsInMatchesListedValue",
       {Ingress("x", "in", kAll, {R({PodPeer(Expr("tier", Op::kIn, {"web", "api"}))})})},
       "x/b",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"MatchExpressionsNotInMatchesAbsentKey",
       {Ingress("x", "notin", kAll, {R({NsPeer(Expr("team", Op::kNotIn, {"blue"}))})})},
       "z/c",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"MatchExpressionsNotInRejectsListedValue",
       {Ingress("x", "notin", kAll, {R({NsPeer(Expr("team", Op::kNotIn, {"blue"}))})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"MatchExpressionsExistsNeedsKey",
       {Ingress("x", "exists", kAll, {R({NsPeer(Expr("team", Op::kExists))})})},
       "z/c",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"MatchExpressionsDoesNotExistRejectsKey",
       {Ingress("x", "dne", kAll, {R({NsPeer(Expr("team", Op::kDoesNotExist))})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"SelectorPeersDoNotMatchBareAddresses",
       {Ingress("x", "from-all-ns", kAll, {R({NsPeer(kAll)})})},
       "ip:8.8.8.8",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"BareAddressOfKnownPodIsThatPod",
       {Ingress("x", "from-y", kAll, {R({NsPeer(Sel({{"ns", "y"}}))})})},
       "ip:10.0.1.1",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"IpBlockMatchesAddressInCidr",
       {Ingress("x", "block", kAll, {R({BlockPeer("192.168.0.0/16")})})},
       "ip:192.168.5.5",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"IpBlockRejectsAddressOutsideCidr",
       {Ingress("x", "block", kAll, {R({BlockPeer("192.168.0.0/16")})})},
       "ip:192.169.0.1",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"IpBlockExceptExcludesAddress",
       {Ingress("x", "block", kAll, {R({BlockPeer("192.168.0.0/16", {"192.168.5.0/24"})})})},
       "ip:192.168.5.5",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"IpBlockExceptLeavesRestOfCidr",
       {Ingress("x", "block", kAll, {R({BlockPeer("192.168.0.0/16", {"192.168.5.0/24"})})})},
       "ip:192.168.6.1",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"IpBlockMatchesPodAddresses",
       {Ingress("x", "block", kAll, {R({BlockPeer("10.0.1.1/32")})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"IpBlockMatchesOnlyThePodsItCovers",
       {Ingress("x", "block", kAll, {R({BlockPeer("10.0.1.1/32")})})},
       "y/b",
       "x/a",
       V4,
       TCP,
       80,
       false},
      {"IpBlockExceptAppliesToPodAddresses",
       {Egress("x", "block", Sel({{"pod", "a"}}), {R({BlockPeer("0.0.0.0/4", {"10.0.0.2/32"})})})},
       "x/a",
       "x/b",
       V4,
       TCP,
       80,
       false},
      {"IpBlockOfOtherFamilyDoesNotMatch",
       {Ingress("x", "block", kAll, {R({BlockPeer("10.0.0.0/8")})})},
       "y/a",
       "x/a",
       V6,
       TCP,
       80,
       false},
      {"IpBlockMatchesIPv6",
       {Ingress("x", "block", kAll, {R({BlockPeer("fd00::100/120")})})},
       "y/a",
       "x/a",
       V6,
       TCP,
       80,
       true},
      {"IpBlockMatchesHostNetworkPodByAddress",
       {Ingress("x", "block", Sel({{"pod", "a"}}), {R({BlockPeer("192.168.0.10/32")})})},
       "x/h",
       "x/a",
       V4,
       TCP,
       80,
       true,
       HostPodOnNode2},
      {"IpBlockWithoutTheAddressDoesNotMatchHostNetworkPod",
       {Ingress("x", "block", Sel({{"pod", "a"}}), {R({BlockPeer("192.168.0.11/32")})})},
       "x/h",
       "x/a",
       V4,
       TCP,
       80,
       false,
       HostPodOnNode2},
      // ---- ports ----
      {"NumericPortMatchesThatPort",
       {Ingress("x", "p80", kAll, {R({}, {Port(TCP, 80)})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"NumericPortRejectsOtherPort",
       {Ingress("x", "p80", kAll, {R({}, {Port(TCP, 80)})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       81,
       false},
      {"PortProtocolMustMatch",
       {Ingress("x", "p80", kAll, {R({}, {Port(TCP, 80)})})},
       "y/a",
       "x/a",
       V4,
       UDP,
       80,
       false},
      {"SctpPortDoesNotAllowTcp",
       {Ingress("x", "sctp", kAll, {R({}, {Port(SCTP, 81)})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       81,
       false},
      {"SctpPortAllowsSctp",
       {Ingress("x", "sctp", kAll, {R({}, {Port(SCTP, 81)})})},
       "y/a",
       "x/a",
       V4,
       SCTP,
       81,
       true},
      {"ProtocolWithoutPortMatchesEveryPortOfProtocol",
       {Ingress("x", "udp", kAll, {R({}, {AnyPortOf(UDP)})})},
       "y/a",
       "x/a",
       V4,
       UDP,
       12345,
       true},
      {"ProtocolWithoutPortRejectsOtherProtocols",
       {Ingress("x", "udp", kAll, {R({}, {AnyPortOf(UDP)})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       12345,
       false},
      {"EndPortRangeIncludesEnd",
       {Ingress("x", "range", kAll, {R({}, {Range(TCP, 80, 82)})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       82,
       true},
      {"EndPortRangeIncludesStart",
       {Ingress("x", "range", kAll, {R({}, {Range(TCP, 80, 82)})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"EndPortRangeExcludesPortAfterEnd",
       {Ingress("x", "range", kAll, {R({}, {Range(TCP, 80, 82)})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       83,
       false},
      {"EndPortRangeExcludesPortBeforeStart",
       {Ingress("x", "range", kAll, {R({}, {Range(TCP, 80, 82)})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       79,
       false},
      {"NamedPortResolvesOnIngressDestinationPod",
       {Ingress("x", "http", kAll, {R({}, {Named(TCP, "http")})})},
       "y/a",
       "x/b",
       V4,
       TCP,
       8080,
       true},
      {"NamedPortRejectsOtherPortsOfDestinationPod",
       {Ingress("x", "http", kAll, {R({}, {Named(TCP, "http")})})},
       "y/a",
       "x/b",
       V4,
       TCP,
       9090,
       false},
      {"NamedPortMissingOnDestinationPodMatchesNothing",
       {Ingress("x", "http", kAll, {R({}, {Named(TCP, "http")})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       8080,
       false},
      {"NamedPortNeedsMatchingProtocol",
       {Ingress("x", "dns-tcp", kAll, {R({}, {Named(TCP, "dns")})})},
       "y/a",
       "x/b",
       V4,
       TCP,
       53,
       false},
      {"NamedPortMatchesWithItsProtocol",
       {Ingress("x", "dns-udp", kAll, {R({}, {Named(UDP, "dns")})})},
       "y/a",
       "x/b",
       V4,
       UDP,
       53,
       true},
      {"NamedPortResolvesOnEgressPeerPod",
       {Egress("x", "http", Sel({{"pod", "a"}}), {R({}, {Named(TCP, "http")})})},
       "x/a",
       "y/a",
       V4,
       TCP,
       9090,
       true},
      {"NamedPortOnEgressDiffersPerPeerPod",
       {Egress("x", "http", Sel({{"pod", "a"}}), {R({}, {Named(TCP, "http")})})},
       "x/a",
       "y/a",
       V4,
       TCP,
       8080,
       false},
      {"NamedPortResolvesOnKnownPodAddress",
       {Egress("x", "http", Sel({{"pod", "a"}}), {R({}, {Named(TCP, "http")})})},
       "x/a",
       "ip:10.0.0.2",
       V4,
       TCP,
       8080,
       true},
      {"NamedPortNeverMatchesUnknownAddress",
       {Egress("x", "http", Sel({{"pod", "a"}}), {R({}, {Named(TCP, "http")})})},
       "x/a",
       "ip:8.8.8.8",
       V4,
       TCP,
       8080,
       false},
      {"NamedPortNeverMatchesHostNetworkDestination",
       {Egress("x", "http", Sel({{"pod", "a"}}), {R({}, {Named(TCP, "serve-80-tcp")})})},
       "x/a",
       "x/h",
       V4,
       TCP,
       80,
       false},
      // ---- both sides ----
      {"EgressAllowedButIngressDeniedIsDenied",
       {Egress("x", "to-y", Sel({{"pod", "a"}}), {R({NsPeer(Sel({{"ns", "y"}}))})}),
        Ingress("y", "deny", kAll)},
       "x/a",
       "y/a",
       V4,
       TCP,
       80,
       false},
      {"EgressDeniedEvenWhenIngressAllows",
       {Egress("x", "to-y-a", Sel({{"pod", "a"}}),
               {R({BothPeer(Sel({{"ns", "y"}}), Sel({{"pod", "a"}}))})}),
        Ingress("y", "from-x-a", kAll, {R({BothPeer(Sel({{"ns", "x"}}), Sel({{"pod", "a"}}))})})},
       "x/a",
       "y/b",
       V4,
       TCP,
       80,
       false},
      {"EgressAndIngressBothAllowIsAllowed",
       {Egress("x", "to-y-a", Sel({{"pod", "a"}}),
               {R({BothPeer(Sel({{"ns", "y"}}), Sel({{"pod", "a"}}))})}),
        Ingress("y", "from-x-a", kAll, {R({BothPeer(Sel({{"ns", "x"}}), Sel({{"pod", "a"}}))})})},
       "x/a",
       "y/a",
       V4,
       TCP,
       80,
       true},
      // ---- special endpoints ----
      {"PodAlwaysReachesItself", {deny_ingress_x, deny_egress_x}, "x/a", "x/a", V4, TCP, 80, true},
      {"PodReachesItselfByAddress",
       {deny_ingress_x, deny_egress_x},
       "x/a",
       "ip:10.0.0.1",
       V4,
       TCP,
       80,
       true},
      {"NodeAlwaysReachesItsPods", {deny_ingress_x}, "node", "x/a", V4, TCP, 80, true},
      {"EgressToNodeAddressIsSubjectToEgressPolicy",
       {deny_egress_x},
       "x/a",
       "node:10.0.0.254",
       V4,
       TCP,
       10250,
       false},
      {"EgressToNodeAddressAllowedByIpBlock",
       {Egress("x", "to-node", kAll, {R({BlockPeer("10.0.0.254/32")})})},
       "x/a",
       "node:10.0.0.254",
       V4,
       TCP,
       10250,
       true},
      {"HostNetworkPodOnTheDestinationsNodeIsNodeTraffic",
       {deny_ingress_x},
       "x/h",
       "x/a",
       V4,
       TCP,
       22,
       true},
      {"HostNetworkPodOnTheDestinationsNodePassesSelectorOnlyRules",
       {Ingress("x", "from-x", Sel({{"pod", "a"}}), {R({PodPeer(kAll)})})},
       "x/h",
       "x/a",
       V4,
       TCP,
       80,
       true},
      {"HostNetworkPodOnAnotherNodeIsJudgedAsThatNodesAddress",
       {deny_ingress_x},
       "x/h",
       "x/a",
       V4,
       TCP,
       22,
       false,
       HostPodOnNode2},
      {"HostNetworkPodWithoutNodeIsNotTheDestinationsNode",
       {deny_ingress_x},
       "x/h",
       "x/a",
       V4,
       TCP,
       22,
       false,
       [](State& s) { s.pods["x/h"].node_name.clear(); }},
      {"HostNetworkPodIsNotAnIngressSubject", {deny_ingress_x}, "y/a", "x/h", V4, TCP, 80, true},
      {"HostNetworkPodIsNotAnEgressSubject", {deny_egress_x}, "x/h", "y/a", V4, TCP, 80, true},
      {"HostNetworkPodDoesNotMatchPodSelectorPeers",
       {Ingress("x", "from-x", Sel({{"pod", "a"}}), {R({PodPeer(kAll)})})},
       "x/h",
       "x/a",
       V4,
       TCP,
       80,
       false,
       HostPodOnNode2},
      {"HostNetworkPodDoesNotMatchNamespaceSelectorPeers",
       {Ingress("x", "from-all", Sel({{"pod", "a"}}), {R({NsPeer(kAll)})})},
       "x/h",
       "x/a",
       V4,
       TCP,
       80,
       false,
       HostPodOnNode2},
      {"NodeIsNotMatchedBySelectorPeers",
       {Egress("x", "to-all", kAll, {R({NsPeer(kAll)})})},
       "x/a",
       "node:10.0.0.254",
       V4,
       TCP,
       80,
       false},
      {"IPv6FlowsFollowTheSameRules",
       {Ingress("x", "from-y", kAll, {R({NsPeer(Sel({{"ns", "y"}}))})})},
       "x/b",
       "x/a",
       V6,
       TCP,
       80,
       false},
      {"IPv6FlowsAllowedBySelectors",
       {Ingress("x", "from-y", kAll, {R({NsPeer(Sel({{"ns", "y"}}))})})},
       "y/b",
       "x/a",
       V6,
       TCP,
       80,
       true},
      {"PodLabelChangeTakesEffect",
       {Ingress("x", "from-web", kAll, {R({PodPeer(Sel({{"tier", "web"}}))})})},
       "x/a",
       "x/b",
       V4,
       TCP,
       80,
       true,
       [](State& s) { s.pods["x/a"].labels["tier"] = "web"; }},
      {"NamespaceLabelChangeTakesEffect",
       {Ingress("x", "from-red", kAll, {R({NsPeer(Sel({{"team", "red"}}))})})},
       "y/a",
       "x/a",
       V4,
       TCP,
       80,
       true,
       [](State& s) { s.namespaces["y"].labels["team"] = "red"; }},
  };
}

INSTANTIATE_TEST_SUITE_P(Semantics, DecideTest, ::testing::ValuesIn(Rows()),
                         [](const ::testing::TestParamInfo<Row>& info) { return info.param.name; });

// ---- the Decision's details ----

TEST(DecisionTest, ListsEveryIsolatingPolicyAndEveryAllowingRule) {
  State s = BaseState();
  for (const NetworkPolicy& p :
       {Ingress("x", "p2", kAll, {R({}, {Port(TCP, 81)}), R({NsPeer(Sel({{"ns", "y"}}))})}),
        Ingress("x", "p1", Sel({{"pod", "a"}}), {R(), R({}, {Port(TCP, 80)})}),
        Ingress("x", "p3", Sel({{"pod", "b"}}), {R()}), Egress("x", "e", kAll)}) {
    s.policies[p.Key()] = p;
  }
  Decision d = Decide(s, Ep(s, "y/a"), Ep(s, "x/a"), Family::kV4, TCP, 80);
  EXPECT_TRUE(d.allowed);
  EXPECT_TRUE(d.ingress.subject);
  EXPECT_TRUE(d.ingress.isolated);
  EXPECT_THAT(d.ingress.isolating_policies, ElementsAre("x/p1", "x/p2"));
  EXPECT_THAT(d.ingress.allowing_rules,
              ElementsAre(RuleRef{"x/p1", 0}, RuleRef{"x/p1", 1}, RuleRef{"x/p2", 1}));
  EXPECT_THAT(d.ingress.explanation, HasSubstr("isolated by x/p1, x/p2"));
  EXPECT_THAT(d.ingress.explanation, HasSubstr("x/p2 ingress[1]"));
  // y/a's egress is not governed by anything.
  EXPECT_TRUE(d.egress.subject);
  EXPECT_FALSE(d.egress.isolated);
  EXPECT_THAT(d.egress.isolating_policies, IsEmpty());
  EXPECT_THAT(d.egress.explanation, HasSubstr("not isolated"));
}

TEST(DecisionTest, DeniedExplanationNamesTheDenyingSides) {
  State s = BaseState();
  s.policies["x/deny-e"] = Egress("x", "deny-e", kAll);
  s.policies["y/deny-i"] = Ingress("y", "deny-i", kAll);
  Decision d = Decide(s, Ep(s, "x/a"), Ep(s, "y/b"), Family::kV4, UDP, 81);
  EXPECT_FALSE(d.allowed);
  EXPECT_FALSE(d.egress.allowed);
  EXPECT_FALSE(d.ingress.allowed);
  EXPECT_THAT(d.reason, HasSubstr("egress of x/a and ingress of y/b"));
  EXPECT_THAT(d.ingress.explanation, HasSubstr("no ingress rule allows UDP/81 from x/a"));
  EXPECT_THAT(d.Explain(), HasSubstr("isolated by x/deny-e"));
}

TEST(DecisionTest, PodWithoutAddressOfFamilyIsNotApplicable) {
  State s = BaseState();
  Decision d = Decide(s, Ep(s, "x/v4"), Ep(s, "x/a"), Family::kV6, TCP, 80);
  EXPECT_FALSE(d.applicable);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(d.reason, HasSubstr("pod x/v4 has no IPv6 address"));
}

TEST(DecisionTest, AddressOfOtherFamilyIsNotApplicable) {
  State s = BaseState();
  Decision d = Decide(s, Ep(s, "ip:10.9.9.9"), Ep(s, "x/a"), Family::kV6, TCP, 80);
  EXPECT_FALSE(d.applicable);
  EXPECT_THAT(d.reason, HasSubstr("10.9.9.9 is not IPv6"));
}

TEST(DecisionTest, HostNetworkSideIsNotASubject) {
  State s = BaseState();
  s.policies["x/deny"] = Ingress("x", "deny", kAll);
  Decision d = Decide(s, Ep(s, "y/a"), Ep(s, "x/h"), Family::kV4, TCP, 80);
  EXPECT_TRUE(d.allowed);
  EXPECT_FALSE(d.ingress.subject);
  EXPECT_THAT(d.ingress.explanation, HasSubstr("hostNetwork"));
}

TEST(PoliciesSelectingTest, HonoursDirectionAndSelector) {
  State s = BaseState();
  for (const NetworkPolicy& p :
       {Ingress("x", "i-all", kAll), Ingress("x", "i-b", Sel({{"pod", "b"}})),
        Egress("x", "e-a", Sel({{"pod", "a"}})), Ingress("y", "i-y", kAll)}) {
    s.policies[p.Key()] = p;
  }
  const Pod& a = *s.FindPod("x/a");
  EXPECT_THAT(PoliciesSelecting(s, a, Direction::kIngress), ElementsAre("x/i-all"));
  EXPECT_THAT(PoliciesSelecting(s, a, Direction::kEgress), ElementsAre("x/e-a"));
  EXPECT_THAT(PoliciesSelecting(s, *s.FindPod("x/b"), Direction::kIngress),
              ElementsAre("x/i-all", "x/i-b"));
  EXPECT_THAT(PoliciesSelecting(s, *s.FindPod("x/h"), Direction::kIngress), IsEmpty());
}

TEST(NamespaceLabelsTest, AddsMetadataNameLabel) {
  State s = BaseState();
  EXPECT_EQ(NamespaceLabels(s, "y"),
            (Labels{{"ns", "y"}, {"team", "blue"}, {kNamespaceNameLabel, "y"}}));
  EXPECT_EQ(NamespaceLabels(s, "nowhere"), (Labels{{kNamespaceNameLabel, "nowhere"}}));
}

}  // namespace
}  // namespace netpol
