// ClusterNetworkPolicy and Node loading: the object model, Kubernetes-style field-path errors
// and the round trip through ToYaml.
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "engine/model/loader.h"

namespace netpol {
namespace {

using ::testing::HasSubstr;

constexpr char kFull[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: guard
  namespace: ignored-for-cluster-scoped
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces:
      matchLabels: {team: payments}
  ingress:
  - name: from-ingress
    action: Accept
    from:
    - namespaces: {matchLabels: {role: ingress}}
    - pods:
        namespaceSelector: {}
        podSelector: {matchLabels: {app: gateway}}
    protocols:
    - tcp: {destinationPort: {number: 443}}
    - udp: {destinationPort: {range: {start: 5000, end: 5010}}}
    - destinationNamedPort: web
  - action: Deny
    from:
    - namespaces: {}
  egress:
  - action: Pass
    to:
    - networks: [10.0.0.0/8, "fd00::/8"]
  - action: Deny
    to:
    - nodes: {matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]}
    protocols:
    - sctp: {destinationPort: {number: 9000}}
status:
  conditions: []
)";

TEST(LoadClusterNetworkPolicyTest, FullObjectModel) {
  auto r = LoadYaml(kFull);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->objects.size(), 1u);
  const Object& o = r->objects[0];
  EXPECT_STREQ(o.Kind(), "ClusterNetworkPolicy");
  EXPECT_FALSE(o.Namespaced());
  EXPECT_EQ(o.Key(), "guard");
  EXPECT_EQ(o.Ref(), "clusternetworkpolicy guard");
  const ClusterNetworkPolicy* cnp = o.AsClusterNetworkPolicy();
  ASSERT_NE(cnp, nullptr);
  EXPECT_EQ(cnp->tier, CnpTier::kAdmin);
  EXPECT_EQ(cnp->priority, 10);
  ASSERT_TRUE(cnp->subject.namespaces.has_value());
  EXPECT_EQ(cnp->subject.namespaces->match_labels.at("team"), "payments");
  ASSERT_EQ(cnp->ingress.size(), 2u);
  const CnpRule& in0 = cnp->ingress[0];
  EXPECT_EQ(in0.name, "from-ingress");
  EXPECT_EQ(in0.action, CnpAction::kAccept);
  ASSERT_EQ(in0.peers.size(), 2u);
  ASSERT_TRUE(in0.peers[1].pods.has_value());
  EXPECT_TRUE(in0.peers[1].pods->namespace_selector.Empty());
  EXPECT_EQ(in0.peers[1].pods->pod_selector.match_labels.at("app"), "gateway");
  ASSERT_EQ(in0.ports.size(), 3u);
  EXPECT_EQ(in0.ports[0], (CnpPort{Protocol::kTCP, 443, 0, std::nullopt}));
  EXPECT_EQ(in0.ports[1], (CnpPort{Protocol::kUDP, 5000, 5010, std::nullopt}));
  EXPECT_EQ(in0.ports[2], (CnpPort{std::nullopt, 0, 0, std::string("web")}));
  EXPECT_EQ(cnp->ingress[1].action, CnpAction::kDeny);
  ASSERT_TRUE(cnp->ingress[1].peers[0].namespaces.has_value());
  EXPECT_TRUE(cnp->ingress[1].peers[0].namespaces->Empty());
  ASSERT_EQ(cnp->egress.size(), 2u);
  EXPECT_EQ(cnp->egress[0].action, CnpAction::kPass);
  ASSERT_EQ(cnp->egress[0].peers[0].networks.size(), 2u);
  EXPECT_EQ(cnp->egress[0].peers[0].networks[1].ToString(), "fd00::/8");
  ASSERT_TRUE(cnp->egress[1].peers[0].nodes.has_value());
  EXPECT_EQ(cnp->egress[1].ports[0].protocol, Protocol::kSCTP);
}

TEST(LoadClusterNetworkPolicyTest, RoundTripsThroughToYaml) {
  auto r = LoadYaml(kFull);
  ASSERT_TRUE(r.ok()) << r.status();
  std::string text = ToYaml(r->objects);
  auto again = LoadYaml(text);
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << text;
  EXPECT_EQ(again->objects, r->objects) << text;
  State state;
  for (const Object& o : r->objects) Upsert(o, &state);
  ASSERT_EQ(state.cluster_policies.count("guard"), 1u);
  EXPECT_EQ(ObjectsOf(state), r->objects);
}

TEST(LoadNodeTest, LabelsAndAddresses) {
  auto r = LoadYaml(R"(
apiVersion: v1
kind: NodeList
items:
- metadata: {name: n1.example, labels: {zone: a}}
  spec: {podCIDR: 10.244.0.0/24}
  status:
    addresses:
    - {type: Hostname, address: n1}
    - {type: InternalIP, address: 192.168.1.10}
    - {type: InternalIP, address: "fd00::10"}
    - {type: ExternalIP, address: 192.168.1.10}
)");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->objects.size(), 1u);
  const Node* node = r->objects[0].AsNode();
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(r->objects[0].Ref(), "node n1.example");
  EXPECT_EQ(node->labels.at("zone"), "a");
  ASSERT_EQ(node->ips.size(), 2u);  // the duplicate merged, the host name skipped
  EXPECT_EQ(node->ips[0].ToString(), "192.168.1.10");
  auto again = LoadYaml(ToYaml(r->objects));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->objects, r->objects);
}

// A valid policy with one part replaced; each case names the error it must produce.
struct BadCase {
  const char* name;
  const char* spec;  // the spec, indented by two spaces
  const char* error;
};

class BadClusterNetworkPolicyTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadClusterNetworkPolicyTest, RefusedWithFieldPath) {
  std::string text = absl::StrCat(
      "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
      "metadata: {name: bad}\nspec:\n",
      GetParam().spec);
  LoadOptions options;
  options.source = "t.yaml";
  auto r = LoadYaml(text, options);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr(absl::StrCat("t.yaml: clusternetworkpolicy bad: ", GetParam().error)));
}

constexpr char kSubject[] = "  subject: {namespaces: {}}\n";

INSTANTIATE_TEST_SUITE_P(
    Cases, BadClusterNetworkPolicyTest,
    ::testing::Values(
        BadCase{"NoTier", "  priority: 1\n  subject: {namespaces: {}}\n", "spec.tier: required"},
        BadCase{"BadTier", "  tier: Platform\n  priority: 1\n  subject: {namespaces: {}}\n",
                "spec.tier: unsupported value \"Platform\" (supported: Admin, Baseline)"},
        BadCase{"NoPriority", "  tier: Admin\n  subject: {namespaces: {}}\n",
                "spec.priority: required"},
        BadCase{"PriorityTooHigh", "  tier: Admin\n  priority: 1001\n  subject: {namespaces: {}}\n",
                "spec.priority: must be between 0 and 1000, got 1001"},
        BadCase{"NoSubject", "  tier: Admin\n  priority: 1\n", "spec.subject: required"},
        BadCase{"TwoSubjects",
                "  tier: Admin\n  priority: 1\n  subject:\n    namespaces: {}\n"
                "    pods: {podSelector: {}}\n",
                "spec.subject: must specify exactly one of namespaces, pods, got 2"},
        BadCase{"EmptySubject", "  tier: Admin\n  priority: 1\n  subject: {}\n",
                "spec.subject: must specify exactly one of namespaces, pods"},
        BadCase{"PodsWithoutPodSelector",
                "  tier: Admin\n  priority: 1\n  subject: {pods: {namespaceSelector: {}}}\n",
                "spec.subject.pods.podSelector: required"},
        BadCase{"NullPeer",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - {action: Deny, from: [{namespaces: null}]}\n",
                "spec.ingress[0].from[0]: must specify exactly one of namespaces, pods"},
        BadCase{"NullPodSelector",
                "  tier: Admin\n  priority: 1\n  subject: {pods: {podSelector: null}}\n",
                "spec.subject.pods.podSelector: required"},
        BadCase{"NodesSubject", "  tier: Admin\n  priority: 1\n  subject: {nodes: {}}\n",
                "spec.subject.nodes: unknown field"},
        BadCase{"BadAction",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - {action: Allow, from: [{namespaces: {}}]}\n",
                "spec.ingress[0].action: unsupported value \"Allow\" (supported: Accept, Deny, "
                "Pass)"},
        BadCase{"NoAction",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - {from: [{namespaces: {}}]}\n",
                "spec.ingress[0].action: required"},
        BadCase{"NoFrom",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - {action: Deny}\n",
                "spec.ingress[0].from: required"},
        BadCase{"EmptyTo",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                "  - {action: Deny, to: []}\n",
                "spec.egress[0].to: must have at least 1 item"},
        BadCase{"NetworksInIngress",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - {action: Deny, from: [{networks: [10.0.0.0/8]}]}\n",
                "spec.ingress[0].from[0].networks: unknown field"},
        BadCase{"DomainNames",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                "  - {action: Accept, to: [{domainNames: [example.com]}]}\n",
                "spec.egress[0].to[0].domainNames: not supported"},
        BadCase{"HostBits",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                "  - {action: Deny, to: [{networks: [10.0.0.1/8]}]}\n",
                "spec.egress[0].to[0].networks[0]: "},
        BadCase{"DuplicateNetwork",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                "  - {action: Deny, to: [{networks: [10.0.0.0/8, 10.0.0.0/8]}]}\n",
                "spec.egress[0].to[0].networks[1]: duplicate value \"10.0.0.0/8\""},
        BadCase{"EmptyProtocols",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - {action: Deny, from: [{namespaces: {}}], protocols: []}\n",
                "spec.ingress[0].protocols: must have at least 1 item"},
        BadCase{"TcpWithoutPort",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - {action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {}}]}\n",
                "spec.ingress[0].protocols[0].tcp.destinationPort: required"},
        BadCase{"NumberAndRange",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - action: Deny\n    from: [{namespaces: {}}]\n    protocols:\n"
                "    - tcp: {destinationPort: {number: 80, range: {start: 1, end: 2}}}\n",
                "spec.ingress[0].protocols[0].tcp.destinationPort: must specify exactly one of "
                "number, range, got 2"},
        BadCase{"RangeBackwards",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - action: Deny\n    from: [{namespaces: {}}]\n    protocols:\n"
                "    - udp: {destinationPort: {range: {start: 90, end: 90}}}\n",
                "spec.ingress[0].protocols[0].udp.destinationPort.range: start must be less "
                "than end, got 90 and 90"},
        BadCase{"PortZero",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - action: Deny\n    from: [{namespaces: {}}]\n    protocols:\n"
                "    - sctp: {destinationPort: {number: 0}}\n",
                "spec.ingress[0].protocols[0].sctp.destinationPort.number: must be between 1 "
                "and 65535, got 0"},
        BadCase{"NamedPortToNetworks",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                "  - action: Deny\n    to: [{networks: [10.0.0.0/8]}]\n"
                "    protocols: [{destinationNamedPort: dns}]\n",
                "spec.egress[0]: networks and nodes peers cannot be used with "
                "destinationNamedPort"},
        BadCase{"BadNamedPort",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - action: Deny\n    from: [{namespaces: {}}]\n"
                "    protocols: [{destinationNamedPort: Web_1}]\n",
                "spec.ingress[0].protocols[0].destinationNamedPort: invalid port name"},
        BadCase{"LongRuleName",
                "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                "  - action: Deny\n    from: [{namespaces: {}}]\n    name: "
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                "spec.ingress[0].name: must be no more than 100 characters"},
        BadCase{"UnknownSpecField", "  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  x: 1\n",
                "spec.x: unknown field"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST(LoadClusterNetworkPolicyTest, TooManyRules) {
  std::string text =
      "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
      "metadata: {name: bad}\nspec:\n  tier: Baseline\n  priority: 0\n"
      "  subject: {namespaces: {}}\n  ingress:\n";
  for (int i = 0; i < 26; ++i) text += "  - {action: Deny, from: [{namespaces: {}}]}\n";
  auto r = LoadYaml(text);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("clusternetworkpolicy bad: spec.ingress: must have at most 25 items, got 26"));
}

TEST(LoadClusterNetworkPolicyTest, WrongApiVersion) {
  auto r = LoadYaml(
      "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: ClusterNetworkPolicy\n"
      "metadata: {name: bad}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("apiVersion: unsupported value \"policy.networking.k8s.io/v1alpha1\" for "
                        "kind ClusterNetworkPolicy (supported: policy.networking.k8s.io/v1alpha2)"));
}

TEST(LoadNodeTest, BadAddress) {
  auto r = LoadYaml(
      "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"
      "status: {addresses: [{type: InternalIP, address: 300.1.1.1}]}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("node n1: status.addresses[0].address: "));
}

}  // namespace
}  // namespace netpol
