// Model <-> netpol.v1 conversions: round trips and validation of client-sent objects.
#include "api/convert.h"

#include "agent/testing/fixtures.h"
#include "engine/model/loader.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace netpol::api {
namespace {

using google::protobuf::RepeatedPtrField;

std::vector<Object> Sample() {
  std::vector<Object> out = agent::fixtures::LoadObjects(agent::fixtures::kSample);
  for (Object& o : agent::fixtures::LoadObjects(agent::fixtures::kClusterSample)) {
    out.push_back(std::move(o));
  }
  return out;
}

TEST(ConvertTest, LogAllowedAnnotationTravels) {
  const std::vector<Object> objects = agent::fixtures::LoadObjects(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: logged, namespace: x, annotations: {netpol.io/log-allowed: "true"}}
spec: {podSelector: {}}
)");
  ASSERT_EQ(objects.size(), 1u);
  const Object& logged = objects[0];
  ASSERT_TRUE(logged.AsNetworkPolicy()->log_allowed);
  auto trusted = FromApiTrusted(ToApi(logged));
  ASSERT_TRUE(trusted.ok()) << trusted.status();
  EXPECT_TRUE(*trusted == logged);
  RepeatedPtrField<v1::Object> good;
  *good.Add() = ToApi(logged);
  auto validated = ParseApiObjects(good, "objects");
  ASSERT_TRUE(validated.ok()) << validated.status();
  EXPECT_EQ(*validated, objects);
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ToApi(logged), &json).ok());
  EXPECT_NE(json.find("\"annotations\":{\"netpol.io/log-allowed\":\"true\"}"), std::string::npos)
      << json;
  v1::Object bad = ToApi(logged);
  (*bad.mutable_network_policy()->mutable_metadata()->mutable_annotations())
      ["netpol.io/log-allowed"] = "yes";
  RepeatedPtrField<v1::Object> api;
  *api.Add() = bad;
  auto parsed = ParseApiObjects(api, "objects");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("must be \"true\" or \"false\""), std::string::npos)
      << parsed.status();
}

TEST(ConvertTest, TrustedRoundTrip) {
  for (const Object& o : Sample()) {
    auto back = FromApiTrusted(ToApi(o));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == o) << o.Ref();
  }
}

TEST(ConvertTest, ValidatedRoundTripThroughTheLoader) {
  RepeatedPtrField<v1::Object> api;
  for (const Object& o : Sample()) *api.Add() = ToApi(o);
  auto back = ParseApiObjects(api, "objects");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, Sample());
}

TEST(ConvertTest, JsonReadsLikeKubernetes) {
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ToApi(Sample()[2]), &json).ok());
  for (const char* needle :
       {"\"podSelector\":{}", "\"namespaceSelector\":{\"matchLabels\":{\"team\":\"a\"}}",
        "\"policyTypes\":[\"Ingress\",\"Egress\"]", "\"operator\":\"NotIn\"",
        "\"ipBlock\":{\"cidr\":\"10.0.0.0/8\",\"except\":[\"10.1.0.0/16\"]}",
        "\"namedPort\":\"http\"", "\"port\":80", "\"endPort\":90", "\"protocol\":\"SCTP\""}) {
    EXPECT_NE(json.find(needle), std::string::npos) << needle << " in " << json;
  }
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ToApi(Sample()[1]), &json).ok());
  for (const char* needle : {"\"podIPs\":[{\"ip\":\"10.0.0.1\"},{\"ip\":\"fd00::1\"}]",
                             "\"podIP\":\"10.0.0.1\"", "\"nodeName\":\"n1\"",
                             "\"containerPort\":8080"}) {
    EXPECT_NE(json.find(needle), std::string::npos) << needle << " in " << json;
  }
}

TEST(ConvertTest, ClusterNetworkPolicyJsonIsTheCrdShape) {
  const std::vector<Object> all = Sample();
  ASSERT_EQ(all.size(), 7u);
  ASSERT_NE(all[3].AsClusterNetworkPolicy(), nullptr);
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ToApi(all[3]), &json).ok());
  for (const char* needle :
       {"\"clusterNetworkPolicy\":{\"metadata\":{\"name\":\"guard\"}", "\"tier\":\"Admin\"",
        "\"priority\":10", "\"action\":\"Accept\"", "\"name\":\"from-ingress\"",
        "\"tcp\":{\"destinationPort\":{\"number\":443}}",
        "\"udp\":{\"destinationPort\":{\"range\":{\"start\":5000,\"end\":5010}}}",
        "\"destinationNamedPort\":\"web\"", "\"networks\":[\"10.0.0.0/8\",\"fd00::/8\"]",
        "\"nodes\":{\"matchExpressions\":[{\"key\":\"node-role.kubernetes.io/control-plane\","
        "\"operator\":\"Exists\"}]}",
        "\"pods\":{\"namespaceSelector\":{},\"podSelector\":{\"matchLabels\":{\"app\":\"gateway\"}}}"}) {
    EXPECT_NE(json.find(needle), std::string::npos) << needle << " in " << json;
  }
  // Priority 0 is a priority, not an absent field.
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ToApi(all[4]), &json).ok());
  EXPECT_NE(json.find("\"priority\":0"), std::string::npos) << json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ToApi(all[5]), &json).ok());
  EXPECT_NE(json.find("\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.168.1.10\"},"
                      "{\"type\":\"InternalIP\",\"address\":\"fd00:1::10\"}]"),
            std::string::npos)
      << json;
}

struct BadCase {
  const char* name;
  const char* json;      // one v1::Object
  const char* message;   // expected substring of the error
};

class BadObjectTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadObjectTest, InvalidArgumentWithFieldPath) {
  RepeatedPtrField<v1::Object> api;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(GetParam().json, api.Add()).ok());
  auto r = ParseApiObjects(api, "objects");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(GetParam().message), std::string::npos) << r.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadObjectTest,
    ::testing::Values(
        BadCase{"EndPortBelowPort",
                R"({"networkPolicy": {"metadata": {"name": "p", "namespace": "x"}, "spec":
                   {"podSelector": {}, "ingress": [{"ports": [{"port": 80}, {"port": 90, "endPort": 80}]}]}}})",
                "networkpolicy x/p: spec.ingress[0].ports[1].endPort"},
        BadCase{"BadCidr",
                R"({"networkPolicy": {"metadata": {"name": "p", "namespace": "x"}, "spec":
                   {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/8"}}]}]}}})",
                "spec.egress[0].to[0].ipBlock.cidr"},
        BadCase{"MissingOperator",
                R"({"networkPolicy": {"metadata": {"name": "p", "namespace": "x"}, "spec":
                   {"podSelector": {"matchExpressions": [{"key": "a"}]}}}})",
                "spec.podSelector.matchExpressions[0]"},
        BadCase{"BadPodIp",
                R"({"pod": {"metadata": {"name": "a", "namespace": "x"}, "status": {"podIP": "10.0.0.300"}}})",
                "pod x/a: status.podIP"},
        BadCase{"BadName", R"({"namespace": {"metadata": {"name": "Not_A_Name"}}})",
                "metadata.name"},
        BadCase{"CnpWithoutPriority",
                R"({"clusterNetworkPolicy": {"metadata": {"name": "g"}, "spec":
                   {"tier": "Admin", "subject": {"namespaces": {}}}}})",
                "clusternetworkpolicy g: spec.priority: required"},
        BadCase{"CnpPriorityOutOfRange",
                R"({"clusterNetworkPolicy": {"metadata": {"name": "g"}, "spec":
                   {"tier": "Admin", "priority": 1001, "subject": {"namespaces": {}}}}})",
                "clusternetworkpolicy g: spec.priority"},
        BadCase{"CnpPeerWithTwoKinds",
                R"({"clusterNetworkPolicy": {"metadata": {"name": "g"}, "spec":
                   {"tier": "Baseline", "priority": 0, "subject": {"namespaces": {}},
                    "egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.0/8"], "nodes": {}}]}]}}})",
                "clusternetworkpolicy g: spec.egress[0].to[0]"},
        BadCase{"CnpWithoutAction",
                R"({"clusterNetworkPolicy": {"metadata": {"name": "g"}, "spec":
                   {"tier": "Admin", "priority": 3, "subject": {"namespaces": {}},
                    "ingress": [{"from": [{"namespaces": {}}]}]}}})",
                "spec.ingress[0].action: required"},
        BadCase{"NodeBadAddress",
                R"({"node": {"metadata": {"name": "n1"}, "status":
                   {"addresses": [{"type": "InternalIP", "address": "10.0.0.300"}]}}})",
                "node n1: status.addresses[0].address"},
        BadCase{"Empty", R"({})", "no object"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(ConvertTest, Names) {
  v1::ObjectRef ref;
  ref.set_kind(v1::NETWORK_POLICY);
  ref.set_namespace_("x");
  ref.set_name("deny-all");
  EXPECT_EQ(KubectlName(ref), "networkpolicy.networking.k8s.io/deny-all");
  EXPECT_EQ(RefString(ref), "networkpolicy x/deny-all");
  EXPECT_EQ(KeyOf(ref), "x/deny-all");
  ref.set_kind(v1::NAMESPACE);
  EXPECT_EQ(KubectlName(ref), "namespace/deny-all");
  EXPECT_EQ(KeyOf(ref), "deny-all");
  ref.set_kind(v1::CLUSTER_NETWORK_POLICY);
  ref.clear_namespace_();
  EXPECT_EQ(KubectlName(ref), "clusternetworkpolicy.policy.networking.k8s.io/deny-all");
  EXPECT_EQ(RefString(ref), "clusternetworkpolicy deny-all");
  EXPECT_EQ(KeyOf(ref), "deny-all");
  ref.set_kind(v1::NODE);
  EXPECT_EQ(KubectlName(ref), "node/deny-all");
  EXPECT_EQ(RefString(ref), "node deny-all");
  EXPECT_TRUE(IsClusterScoped(v1::NODE));
  EXPECT_FALSE(IsClusterScoped(v1::POD));
}

}  // namespace
}  // namespace netpol::api
