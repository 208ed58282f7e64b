// ClusterNetworkPolicy semantics in the evaluator: the core scenarios of the Network Policy API
// conformance suite (admin and baseline tiers: integration with NetworkPolicy through Pass,
// priorities, ingress/egress TCP/UDP/SCTP rules, inline CIDRs) translated into rows of data —
// policies as manifests, connections and the expected verdict with the tier, CNP and rule that
// decide it — plus the choices the API leaves to implementations (equal priorities) and the
// peers netpol adds (nodes, named ports, IPv6).
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/eval/eval.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace netpol {
namespace {

constexpr char kGryffindor[] = "network-policy-conformance-gryffindor";

// The integration manifests: an Admin CNP denying gryffindor <-> slytherin both ways, a
// NetworkPolicy allowing it, a Baseline CNP denying it. `admin_action` replaces the Admin rules'
// action (the suite mutates Deny into Pass); `with_np` keeps the NetworkPolicy.
std::string Integration(const char* admin_action, bool with_np) {
  std::string out = absl::StrCat(R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: pass-example}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {conformance-house: gryffindor}}}
  ingress:
  - name: deny-all-ingress-from-slytherin
    action: )", admin_action, R"(
    from: [{namespaces: {matchLabels: {conformance-house: slytherin}}}]
  egress:
  - name: deny-all-egress-to-slytherin
    action: )", admin_action, R"(
    to: [{namespaces: {matchLabels: {conformance-house: slytherin}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: default}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {matchLabels: {conformance-house: gryffindor}}}
  ingress:
  - name: deny-all-ingress-from-slytherin
    action: Deny
    from: [{namespaces: {matchLabels: {conformance-house: slytherin}}}]
  egress:
  - name: deny-all-egress-to-slytherin
    action: Deny
    to: [{namespaces: {matchLabels: {conformance-house: slytherin}}}]
)");
  if (with_np) {
    absl::StrAppend(&out, R"(---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-gress-from-to-slytherin-to-gryffindor, namespace: network-policy-conformance-gryffindor}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{namespaceSelector: {matchLabels: {conformance-house: slytherin}}}]}]
  egress: [{to: [{namespaceSelector: {matchLabels: {conformance-house: slytherin}}}]}]
)");
  }
  return out;
}

// The priority manifests: Deny at 50, Pass at `pass_priority` (60, then 40), Baseline Accept.
std::string Priority(int pass_priority) {
  const char* pods =
      "{pods: {namespaceSelector: {matchLabels: {conformance-house: %s}}, podSelector: "
      "{matchLabels: {conformance-house: %s}}}}";
  auto sel = [&](const char* house) {
    std::string s = pods;
    for (int i = 0; i < 2; ++i) s.replace(s.find("%s"), 2, house);
    return s;
  };
  auto cnp = [&](const char* name, const char* tier, int priority, const char* action) {
    return absl::StrCat("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n",
                        "metadata: {name: ", name, "}\nspec:\n  tier: ", tier, "\n  priority: ",
                        priority, "\n  subject: ", sel("gryffindor"), "\n  ingress:\n  - name: ",
                        action, "-ingress\n    action: ", action, "\n    from: [", sel("slytherin"),
                        "]\n  egress:\n  - name: ", action, "-egress\n    action: ", action,
                        "\n    to: [", sel("slytherin"), "]\n");
  };
  return absl::StrCat(cnp("priority-50-example", "Admin", 50, "Deny"), "---\n",
                      cnp("old-priority-60-new-priority-40-example", "Admin", pass_priority, "Pass"),
                      "---\n", cnp("default", "Baseline", 10, "Accept"));
}

// The suite's ingress TCP rules (admin tier, priority 3), rule order intact.
constexpr char kIngressTcp[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: ingress-tcp}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: network-policy-conformance-gryffindor}}}
  ingress:
  - {name: allow-from-ravenclaw-everything, action: Accept, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: network-policy-conformance-ravenclaw}}}]}
  - {name: deny-from-ravenclaw-everything, action: Deny, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: network-policy-conformance-ravenclaw}}}]}
  - {name: deny-from-slytherin-at-port-80, action: Deny, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: network-policy-conformance-slytherin}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
  - {name: pass-from-slytherin-at-port-80, action: Pass, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: network-policy-conformance-slytherin}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
  - {name: allow-from-hufflepuff-at-port-80, action: Accept, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: network-policy-conformance-hufflepuff}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
  - {name: deny-from-hufflepuff-everything-else, action: Deny, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: network-policy-conformance-hufflepuff}}}]}
)";

// The suite's egress UDP and SCTP rules (baseline tier), ranges and numbers.
constexpr char kBaselineEgressUdpSctp[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: default}
spec:
  tier: Baseline
  priority: 5
  subject: {namespaces: {matchLabels: {conformance-house: gryffindor}}}
  egress:
  - {name: deny-to-slytherin-udp-53, action: Deny, to: [{namespaces: {matchLabels: {conformance-house: slytherin}}}], protocols: [{udp: {destinationPort: {number: 53}}}]}
  - {name: allow-to-hufflepuff-udp-range, action: Accept, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {conformance-house: hufflepuff}}}}], protocols: [{udp: {destinationPort: {range: {start: 5000, end: 6000}}}}]}
  - {name: deny-to-hufflepuff-everything, action: Deny, to: [{namespaces: {matchLabels: {conformance-house: hufflepuff}}}]}
  - {name: deny-to-ravenclaw-sctp-9003, action: Deny, to: [{namespaces: {matchLabels: {conformance-house: ravenclaw}}}], protocols: [{sctp: {destinationPort: {number: 9003}}}]}
)";

// The suite's inline CIDR rules (admin tier), here with the pods' addresses: networks match pod
// traffic too.
constexpr char kInlineCidr[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: inline-cidrs}
spec:
  tier: Admin
  priority: 20
  subject: {namespaces: {matchLabels: {conformance-house: gryffindor}}}
  egress:
  - {name: pass-to-slytherin-pods, action: Pass, to: [{namespaces: {matchLabels: {conformance-house: slytherin}}}]}
  - {name: allow-to-ravenclaw-v6, action: Accept, to: [{networks: ["fd00::3:0/112"]}]}
  - {name: deny-everything-else, action: Deny, to: [{networks: [0.0.0.0/0, "::/0"]}]}
)";

// Netpol's own choices and peers: equal priorities (by name), nodes peers, named ports,
// hostNetwork pods never subjects nor pod peers, no implicit isolation, egress Accept leaves the
// destination's ingress to decide.
constexpr char kEqualPriority[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: b-accept}
spec: {tier: Admin, priority: 7, subject: {namespaces: {}}, ingress: [{name: accept, action: Accept, from: [{namespaces: {}}]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: a-deny}
spec: {tier: Admin, priority: 7, subject: {namespaces: {}}, ingress: [{name: deny, action: Deny, from: [{namespaces: {}}]}]}
)";

constexpr char kNodesNamedPortsHostNetwork[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  ingress:
  - {name: deny-dns-from-slytherin, action: Deny, from: [{namespaces: {matchLabels: {conformance-house: slytherin}}}], protocols: [{destinationNamedPort: dns}]}
  - {name: deny-from-everyone-to-9005, action: Deny, from: [{namespaces: {}}], protocols: [{sctp: {destinationPort: {number: 9005}}}]}
  egress:
  - {name: deny-to-control-plane, action: Deny, to: [{nodes: {matchLabels: {node-role: control}}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: egress-accept}
spec:
  tier: Admin
  priority: 2
  subject: {namespaces: {matchLabels: {conformance-house: gryffindor}}}
  egress:
  - {name: accept-to-hufflepuff, action: Accept, to: [{namespaces: {matchLabels: {conformance-house: hufflepuff}}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: network-policy-conformance-hufflepuff}
spec: {podSelector: {}, policyTypes: [Ingress]}
)";

struct Row {
  const char* name;
  std::string policies;  // manifests added to the cluster
  const char* from;      // "namespace-house/pod" shorthand: "gryffindor/harry-potter-0", or an IP
  const char* to;
  Protocol protocol;
  int port;
  bool allowed;
  // The side and tier that decided, and for a CNP tier the policy and rule name:
  // "ingress Admin pass-example deny-all-ingress-from-slytherin", "egress NetworkPolicy",
  // "ingress default". For allowed connections: the ingress side's decider.
  const char* decided;
  Family family = Family::kV4;
};

std::string ReadCluster() {
  std::ifstream in("engine/eval/testdata/cnp_cluster.yaml");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class CnpConformanceTest : public ::testing::TestWithParam<Row> {};

Endpoint EndpointOf(const State& state, const std::string& text) {
  size_t slash = text.find('/');
  if (slash == std::string::npos) return Endpoint::ForAddress(*IpAddr::Parse(text));
  const Pod* pod = state.FindPod(
      absl::StrCat("network-policy-conformance-", text.substr(0, slash), "/", text.substr(slash + 1)));
  EXPECT_NE(pod, nullptr) << text;
  return pod != nullptr ? Endpoint::ForPod(*pod) : Endpoint();
}

std::string Decider(const SideDecision& side) {
  std::string out = absl::StrCat(DirectionName(side.direction), " ", DecidingTierName(side.tier));
  if (side.cnp_rule) absl::StrAppend(&out, " ", side.cnp_rule->policy, " ", side.cnp_rule->name);
  return out;
}

TEST_P(CnpConformanceTest, Verdict) {
  const Row& row = GetParam();
  std::string cluster = ReadCluster();
  ASSERT_FALSE(cluster.empty());
  auto loaded = LoadYaml(absl::StrCat(cluster, "---\n", row.policies));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  State state;
  for (const Object& o : loaded->objects) Upsert(o, &state);
  Decision d = Decide(state, EndpointOf(state, row.from), EndpointOf(state, row.to), row.family,
                      row.protocol, row.port);
  ASSERT_TRUE(d.applicable) << d.reason;
  EXPECT_EQ(d.allowed, row.allowed) << d.Explain();
  const SideDecision& decider =
      !d.allowed && !d.egress.allowed ? d.egress : d.ingress;
  EXPECT_EQ(Decider(decider), row.decided) << d.Explain();
}

constexpr Protocol TCP = Protocol::kTCP, UDP = Protocol::kUDP, SCTP = Protocol::kSCTP;

INSTANTIATE_TEST_SUITE_P(
    Core, CnpConformanceTest,
    ::testing::Values(
        // CNPAdminTierIntegration.
        Row{"AdminDenyIngress", Integration("Deny", true), "slytherin/draco-malfoy-0",
            "gryffindor/harry-potter-0", TCP, 80, false,
            "ingress Admin pass-example deny-all-ingress-from-slytherin"},
        Row{"AdminDenyEgress", Integration("Deny", true), "gryffindor/harry-potter-1",
            "slytherin/draco-malfoy-0", UDP, 53, false,
            "egress Admin pass-example deny-all-egress-to-slytherin"},
        Row{"AdminPassIngressToNetworkPolicy", Integration("Pass", true),
            "slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", TCP, 8080, true,
            "ingress NetworkPolicy"},
        Row{"AdminPassEgressToNetworkPolicy", Integration("Pass", true),
            "gryffindor/harry-potter-0", "slytherin/draco-malfoy-1", SCTP, 9003, true,
            "ingress default"},
        Row{"AdminPassIngressToBaseline", Integration("Pass", false), "slytherin/draco-malfoy-0",
            "gryffindor/harry-potter-0", TCP, 80, false,
            "ingress Baseline default deny-all-ingress-from-slytherin"},
        Row{"AdminPassEgressToBaseline", Integration("Pass", false), "gryffindor/harry-potter-0",
            "slytherin/draco-malfoy-0", UDP, 5353, false,
            "egress Baseline default deny-all-egress-to-slytherin"},
        Row{"OtherHousesUntouched", Integration("Deny", false), "hufflepuff/cedric-diggory-0",
            "gryffindor/harry-potter-0", TCP, 80, true, "ingress default"},
        // CNPAdminTierPriorityField.
        Row{"LowerPriorityFirstDeny", Priority(60), "slytherin/draco-malfoy-0",
            "gryffindor/harry-potter-0", TCP, 80, false,
            "ingress Admin priority-50-example Deny-ingress"},
        Row{"LowerPriorityFirstDenyEgress", Priority(60), "gryffindor/harry-potter-1",
            "slytherin/draco-malfoy-1", TCP, 80, false,
            "egress Admin priority-50-example Deny-egress"},
        Row{"PriorityLoweredPassWinsBaselineAccepts", Priority(40), "slytherin/draco-malfoy-0",
            "gryffindor/harry-potter-0", TCP, 80, true, "ingress Baseline default Accept-ingress"},
        // CNPAdminTierIngressTCP: rule order within one CNP.
        Row{"FirstRuleAcceptWins", kIngressTcp, "ravenclaw/luna-lovegood-0",
            "gryffindor/harry-potter-0", TCP, 8080, true,
            "ingress Admin ingress-tcp allow-from-ravenclaw-everything"},
        Row{"DenyAtPort80", kIngressTcp, "slytherin/draco-malfoy-0", "gryffindor/harry-potter-1",
            TCP, 80, false, "ingress Admin ingress-tcp deny-from-slytherin-at-port-80"},
        Row{"OtherPortNoRuleDefaultAllows", kIngressTcp, "slytherin/draco-malfoy-0",
            "gryffindor/harry-potter-1", TCP, 8080, true, "ingress default"},
        Row{"UdpPort80IsNotTcp", kIngressTcp, "slytherin/draco-malfoy-0",
            "gryffindor/harry-potter-1", UDP, 80, true, "ingress default"},
        Row{"AcceptAtPort80", kIngressTcp, "hufflepuff/cedric-diggory-1",
            "gryffindor/harry-potter-0", TCP, 80, true,
            "ingress Admin ingress-tcp allow-from-hufflepuff-at-port-80"},
        Row{"DenyEverythingElse", kIngressTcp, "hufflepuff/cedric-diggory-1",
            "gryffindor/harry-potter-0", TCP, 8080, false,
            "ingress Admin ingress-tcp deny-from-hufflepuff-everything-else"},
        // CNPBaselineTierEgressUDP/SCTP.
        Row{"BaselineDenyUdp53", kBaselineEgressUdpSctp, "gryffindor/harry-potter-0",
            "slytherin/draco-malfoy-0", UDP, 53, false,
            "egress Baseline default deny-to-slytherin-udp-53"},
        Row{"BaselineUdp5353NotMatched", kBaselineEgressUdpSctp, "gryffindor/harry-potter-0",
            "slytherin/draco-malfoy-0", UDP, 5353, true, "ingress default"},
        Row{"BaselineAcceptInRange", kBaselineEgressUdpSctp, "gryffindor/harry-potter-0",
            "hufflepuff/cedric-diggory-0", UDP, 5353, true, "ingress default"},
        Row{"BaselineOutsideRangeDenied", kBaselineEgressUdpSctp, "gryffindor/harry-potter-0",
            "hufflepuff/cedric-diggory-0", UDP, 53, false,
            "egress Baseline default deny-to-hufflepuff-everything"},
        Row{"BaselineSctp9003Denied", kBaselineEgressUdpSctp, "gryffindor/harry-potter-1",
            "ravenclaw/luna-lovegood-1", SCTP, 9003, false,
            "egress Baseline default deny-to-ravenclaw-sctp-9003"},
        Row{"BaselineSctp9005Allowed", kBaselineEgressUdpSctp, "gryffindor/harry-potter-1",
            "ravenclaw/luna-lovegood-1", SCTP, 9005, true, "ingress default"},
        // CNPAdminTierEgressInlineCIDR.
        Row{"PassBeforeNetworks", kInlineCidr, "gryffindor/harry-potter-0",
            "slytherin/draco-malfoy-0", TCP, 80, true, "ingress default"},
        Row{"NetworksMatchPods", kInlineCidr, "gryffindor/harry-potter-0",
            "hufflepuff/cedric-diggory-0", TCP, 80, false,
            "egress Admin inline-cidrs deny-everything-else"},
        Row{"NetworksMatchAddresses", kInlineCidr, "gryffindor/harry-potter-0", "8.8.8.8", UDP,
            53, false, "egress Admin inline-cidrs deny-everything-else"},
        Row{"NetworksV6Accept", kInlineCidr, "gryffindor/harry-potter-0",
            "ravenclaw/luna-lovegood-1", TCP, 80, true, "ingress default", Family::kV6},
        Row{"NetworksV6Deny", kInlineCidr, "gryffindor/harry-potter-0",
            "hufflepuff/cedric-diggory-1", TCP, 80, false,
            "egress Admin inline-cidrs deny-everything-else", Family::kV6},
        // Equal priorities: by name.
        Row{"EqualPriorityByName", kEqualPriority, "slytherin/draco-malfoy-0",
            "hufflepuff/cedric-diggory-0", TCP, 80, false, "ingress Admin a-deny deny"},
        // Named ports resolve on the destination pod with the connection's protocol.
        Row{"NamedPortDnsUdp", kNodesNamedPortsHostNetwork, "slytherin/draco-malfoy-0",
            "gryffindor/harry-potter-0", UDP, 53, false,
            "ingress Admin guard deny-dns-from-slytherin"},
        Row{"NamedPortDnsNotTcp", kNodesNamedPortsHostNetwork, "slytherin/draco-malfoy-0",
            "gryffindor/harry-potter-0", TCP, 53, true, "ingress default"},
        // Nodes peers: the addresses of matching Nodes.
        Row{"NodesPeerDenied", kNodesNamedPortsHostNetwork, "slytherin/draco-malfoy-0",
            "192.168.0.1", TCP, 6443, false, "egress Admin guard deny-to-control-plane"},
        Row{"NodesPeerDeniedV6", kNodesNamedPortsHostNetwork, "slytherin/draco-malfoy-0",
            "fd01::1", TCP, 6443, false, "egress Admin guard deny-to-control-plane",
            Family::kV6},
        Row{"OtherNodeAllowed", kNodesNamedPortsHostNetwork, "slytherin/draco-malfoy-0",
            "192.168.0.2", TCP, 6443, true, "ingress none"},
        // hostNetwork pods are neither subjects nor namespaces/pods peers.
        Row{"HostNetworkNotASubject", kNodesNamedPortsHostNetwork, "slytherin/draco-malfoy-0",
            "gryffindor/hostnet", SCTP, 9005, true, "ingress none"},
        Row{"HostNetworkNotAPeer", kNodesNamedPortsHostNetwork, "gryffindor/hostnet",
            "slytherin/draco-malfoy-0", SCTP, 9005, true, "ingress default"},
        Row{"PodPeerDenied", kNodesNamedPortsHostNetwork, "gryffindor/harry-potter-0",
            "slytherin/draco-malfoy-0", SCTP, 9005, false,
            "ingress Admin guard deny-from-everyone-to-9005"},
        // Egress Accept ends the egress side only: the destination's NetworkPolicy still decides.
        Row{"EgressAcceptIngressStillApplies", kNodesNamedPortsHostNetwork,
            "gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-0", TCP, 80, false,
            "ingress NetworkPolicy"}),
    [](const ::testing::TestParamInfo<Row>& info) { return std::string(info.param.name); });

// No implicit isolation: a CNP with only egress rules leaves ingress alone, and a CNP
// selecting a pod changes nothing for connections its rules do not match.
TEST(CnpEvalTest, EgressSideOfEgressAcceptIsAdmin) {
  auto loaded = LoadYaml(absl::StrCat(ReadCluster(), "---\n", kNodesNamedPortsHostNetwork));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  State state;
  for (const Object& o : loaded->objects) Upsert(o, &state);
  const Pod* harry = state.FindPod(absl::StrCat(kGryffindor, "/harry-potter-0"));
  const Pod* cedric = state.FindPod("network-policy-conformance-hufflepuff/cedric-diggory-0");
  ASSERT_NE(harry, nullptr);
  ASSERT_NE(cedric, nullptr);
  Decision d = Decide(state, Endpoint::ForPod(*harry), Endpoint::ForPod(*cedric), Family::kV4,
                      Protocol::kTCP, 80);
  EXPECT_TRUE(d.egress.allowed);
  EXPECT_EQ(Decider(d.egress), "egress Admin egress-accept accept-to-hufflepuff");
  EXPECT_NE(d.Explain().find("Admin tier: clusternetworkpolicy egress-accept (priority 2) "
                             "egress[0] \"accept-to-hufflepuff\" Accept"),
            std::string::npos)
      << d.Explain();
}

}  // namespace
}  // namespace netpol
