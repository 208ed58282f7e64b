// The evaluator driven by Kubernetes YAML through the engine loader: rules whose meaning depends
// on how manifests are read (defaulted policyTypes, empty vs absent lists, named ports of
// several containers, hostNetwork), one row per rule.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/eval/eval.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace netpol {
namespace {

// x/a and x/b (web: http=8080), y/a (api: http=9090 in a second container), all on node-1;
// x/h hostNetwork on node-2 and x/hn hostNetwork on node-1.
constexpr char kCluster[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: red}}
---
apiVersion: v1
kind: Namespace
metadata: {name: "y", labels: {team: blue}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: client}}
spec:
  nodeName: node-1
  containers:
  - name: main
    ports: [{name: metrics, containerPort: 9100}]
status: {podIPs: [{ip: 10.1.0.1}, {ip: "fd00::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: web}}
spec:
  nodeName: node-1
  containers:
  - name: main
    ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]
status: {podIPs: [{ip: 10.1.0.2}, {ip: "fd00::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: "y", labels: {app: api}}
spec:
  nodeName: node-1
  containers:
  - name: sidecar
    ports: [{name: metrics, containerPort: 9100}]
  - name: main
    ports: [{name: http, containerPort: 9090}]
status: {podIPs: [{ip: 10.1.1.1}, {ip: "fd00::101"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: h, namespace: x, labels: {app: web}}
spec:
  nodeName: node-2
  hostNetwork: true
  containers:
  - name: main
    ports: [{name: http, containerPort: 8080}]
status: {podIPs: [{ip: 192.168.0.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: hn, namespace: x, labels: {app: web}}
spec:
  nodeName: node-1
  hostNetwork: true
  containers:
  - name: main
    ports: [{name: ssh, containerPort: 22}]
status: {podIPs: [{ip: 192.168.0.1}]}
)";

struct Query {
  std::string src, dst;  // "ns/name" or "ip:ADDR"
  Protocol protocol;
  int port;
  bool allowed;
};

struct Row {
  std::string name;
  std::string policies;  // YAML
  std::vector<Query> queries;
};

class EvalYamlTest : public ::testing::TestWithParam<Row> {};

Endpoint Ep(const State& s, const std::string& spec) {
  if (absl::StartsWith(spec, "ip:")) {
    absl::StatusOr<IpAddr> a = IpAddr::Parse(spec.substr(3));
    EXPECT_TRUE(a.ok()) << spec;
    return Endpoint::ForAddress(a.ok() ? *a : IpAddr());
  }
  const Pod* p = s.FindPod(spec);
  EXPECT_NE(p, nullptr) << spec;
  return p ? Endpoint::ForPod(*p) : Endpoint();
}

TEST_P(EvalYamlTest, Rule) {
  const Row& row = GetParam();
  State state;
  for (const std::string& text : {std::string(kCluster), row.policies}) {
    absl::StatusOr<LoadResult> loaded = LoadYaml(text, LoadOptions{row.name, true});
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    for (const Object& o : loaded->objects) Upsert(o, &state);
  }
  for (const Query& q : row.queries) {
    int answered = 0;
    for (Family f : {Family::kV4, Family::kV6}) {
      Decision d = Decide(state, Ep(state, q.src), Ep(state, q.dst), f, q.protocol, q.port);
      if (!d.applicable) continue;  // x/h and ip: endpoints exist in one family only
      ++answered;
      EXPECT_EQ(d.allowed, q.allowed) << d.Explain();
    }
    EXPECT_GT(answered, 0) << q.src << " -> " << q.dst << " has no answer in any family";
  }
}

constexpr auto TCP = Protocol::kTCP;
constexpr auto UDP = Protocol::kUDP;

std::vector<Row> Rows() {
  return {
      {"PolicyTypesAbsentMeansIngressOnlyWhenNoEgressRules",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {}}]
)",
       {{"x/b", "y/a", TCP, 80, true},   // egress of x/b not isolated
        {"y/a", "x/b", TCP, 80, false},  // ingress isolated: only x pods
        {"x/a", "x/b", TCP, 80, true}}},
      {"PolicyTypesAbsentWithEgressRulesMeansIngressAndEgress",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - to: [{namespaceSelector: {matchLabels: {team: blue}}}]
)",
       {{"x/b", "y/a", TCP, 80, true},
        {"x/b", "x/a", TCP, 80, false},    // egress isolated
        {"x/a", "x/b", TCP, 80, false}}},  // ingress isolated with no rules
      {"EmptyIngressListDeniesAllIngress",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress: []
)",
       {{"y/a", "x/b", TCP, 80, false}, {"x/b", "y/a", TCP, 80, true}}},
      {"EmptyEgressListWithoutPolicyTypesDoesNotIsolateEgress",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress: [{}]
  egress: []
)",
       {{"x/b", "y/a", TCP, 80, true}, {"y/a", "x/b", TCP, 80, true}}},
      {"EgressPolicyTypeWithoutRulesDeniesAllEgress",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
)",
       {{"x/b", "y/a", TCP, 80, false}, {"y/a", "x/b", TCP, 80, true}}},
      {"NamedPortResolvesAcrossContainersPerDestinationPod",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: http}]
)",
       {{"x/a", "x/b", TCP, 8080, true},
        {"x/a", "y/a", TCP, 9090, true},
        {"x/a", "y/a", TCP, 8080, false},
        {"x/a", "ip:10.9.9.9", TCP, 8080, false}}},
      {"NamedPortProtocolDefaultsToTcp",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: dns}]
)",
       {{"y/a", "x/b", UDP, 53, false}, {"y/a", "x/b", TCP, 53, false}}},
      {"EndPortRangeFromYaml",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 8000, endPort: 8080}]
)",
       {{"y/a", "x/b", TCP, 8080, true},
        {"y/a", "x/b", TCP, 8081, false},
        {"y/a", "x/b", TCP, 7999, false}}},
      {"IpBlockExceptFromYaml",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.1.0/24]}
    - ipBlock: {cidr: "fd00::/120"}
)",
       {{"x/a", "x/b", TCP, 80, true},
        {"y/a", "x/b", TCP, 80, false},
        {"ip:10.1.200.1", "x/b", TCP, 80, true}}},
      {"HostNetworkPodIsJudgedByAddressOnly",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
  - from: [{ipBlock: {cidr: 192.168.0.0/24}}]
    ports: [{port: 22}]
)",
       {{"x/h", "x/b", TCP, 80, false},   // matches the podSelector's labels, but hostNetwork
        {"x/h", "x/b", TCP, 22, true},    // its address is in the ipBlock
        {"y/a", "x/h", TCP, 80, true}}},  // never isolated
      {"HostNetworkPodOnTheDestinationsNodeIsNodeTraffic",
       R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
)",
       {{"x/hn", "x/b", TCP, 22, true},   // node-1's own traffic: never filtered
        {"x/h", "x/b", TCP, 22, false},   // node-2's address: judged, and denied
        {"x/hn", "y/a", TCP, 22, true}}},  // not isolated
  };
}

INSTANTIATE_TEST_SUITE_P(Yaml, EvalYamlTest, ::testing::ValuesIn(Rows()),
                         [](const ::testing::TestParamInfo<Row>& info) { return info.param.name; });

}  // namespace
}  // namespace netpol
