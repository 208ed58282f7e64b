#include "agent/k8s/decode.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent::k8s {
namespace {

using ::testing::HasSubstr;
using ::testing::ElementsAre;

// A pod as kube-apiserver v1.28 serves it (trimmed of nothing netpol must ignore).
constexpr char kPodList[] = R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"812","continue":"eyJ2Ijoi"},"items":[
{"metadata":{"name":"web-1","namespace":"shop","uid":"u1","resourceVersion":"800","creationTimestamp":"2026-01-01T00:00:00Z","labels":{"app":"web","tier":"front"},"annotations":{"a":"b"},"managedFields":[{"manager":"kubectl","operation":"Update","fieldsV1":{"f:metadata":{}}}]},
 "spec":{"volumes":[{"name":"v","emptyDir":{}}],"containers":[{"name":"main","image":"nginx","ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"containerPort":53,"protocol":"UDP"}],"resources":{}},{"name":"side","image":"x","ports":[{"name":"metrics","containerPort":9090,"protocol":"TCP"}]}],"restartPolicy":"Always","nodeName":"node-a","hostNetwork":false},
 "status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}],"podIP":"10.0.0.5","podIPs":[{"ip":"10.0.0.5"},{"ip":"fd00::5"}]}},
{"metadata":{"name":"done","namespace":"shop","resourceVersion":"801"},"spec":{"containers":[{"name":"c","image":"x"}],"nodeName":"node-a"},"status":{"phase":"Succeeded","podIP":"10.0.0.6","podIPs":[{"ip":"10.0.0.6"}]}},
{"metadata":{"name":"pending","namespace":"shop","resourceVersion":"802"},"spec":{"containers":[{"name":"c","image":"x"}]},"status":{"phase":"Pending"}}
]})";

TEST(DecodeTest, PodListPage) {
  absl::StatusOr<ListPage> page = DecodeListPage(Resource::kPods, kPodList);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->resource_version, "812");
  EXPECT_EQ(page->continue_token, "eyJ2Ijoi");
  ASSERT_EQ(page->items.size(), 3u);
  const Item& web = page->items[0];
  EXPECT_EQ(web.key, "shop/web-1");
  EXPECT_EQ(web.resource_version, "800");
  ASSERT_TRUE(web.object && web.object->AsPod());
  const Pod& p = *web.object->AsPod();
  EXPECT_EQ(p.labels, (Labels{{"app", "web"}, {"tier", "front"}}));
  EXPECT_EQ(p.node_name, "node-a");
  ASSERT_EQ(p.ports.size(), 3u);
  EXPECT_EQ(p.ports[0], (ContainerPort{"http", 8080, Protocol::kTCP}));
  EXPECT_EQ(p.ports[1], (ContainerPort{"", 53, Protocol::kUDP}));
  EXPECT_EQ(p.ports[2], (ContainerPort{"metrics", 9090, Protocol::kTCP}));
  ASSERT_EQ(p.ips.size(), 2u);
  EXPECT_EQ(p.ips[0].ToString(), "10.0.0.5");
  EXPECT_EQ(p.ips[1].ToString(), "fd00::5");
  // A finished pod is not part of the model (its address may be reused); not an error.
  EXPECT_EQ(page->items[1].key, "shop/done");
  EXPECT_FALSE(page->items[1].object.has_value());
  EXPECT_EQ(page->items[1].invalid, "");
  // A pending pod without addresses is a subject and has no address yet.
  ASSERT_TRUE(page->items[2].object.has_value());
  EXPECT_TRUE(page->items[2].object->AsPod()->ips.empty());
}

TEST(DecodeTest, NamespaceCarriesItsNameLabel) {
  absl::StatusOr<ListPage> page = DecodeListPage(
      Resource::kNamespaces,
      R"({"metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"shop","resourceVersion":"4","labels":{"team":"a"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}]})");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->continue_token, "");
  EXPECT_EQ(page->items[0].object->AsNamespace()->labels,
            (Labels{{"team", "a"}, {"kubernetes.io/metadata.name", "shop"}}));
}

TEST(DecodeTest, PolicyThroughTheModelLoader) {
  absl::StatusOr<ListPage> page = DecodeListPage(Resource::kNetworkPolicies, R"({"metadata":{"resourceVersion":"9"},"items":[
{"metadata":{"name":"allow","namespace":"shop","resourceVersion":"7","generation":1,"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"from":[{"namespaceSelector":{"matchExpressions":[{"key":"team","operator":"In","values":["a"]}]}}],"ports":[{"protocol":"TCP","port":"http"},{"protocol":"TCP","port":1000,"endPort":2000}]}],"policyTypes":["Ingress"]}},
{"metadata":{"name":"hostbits","namespace":"shop","resourceVersion":"8"},"spec":{"podSelector":{},"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.1/8"}}]}],"policyTypes":["Egress"]}}
]})");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->items.size(), 2u);
  const NetworkPolicy* np = page->items[0].object->AsNetworkPolicy();
  ASSERT_NE(np, nullptr) << page->items[0].invalid;
  EXPECT_EQ(np->Key(), "shop/allow");
  EXPECT_TRUE(np->ingress_type);
  EXPECT_FALSE(np->egress_type);
  ASSERT_EQ(np->ingress.size(), 1u);
  EXPECT_EQ(np->ingress[0].ports[0].named_port, "http");
  EXPECT_EQ(np->ingress[0].ports[1].end_port, 2000);
  // Accepted by the API server, not representable here: left out with the reason.
  EXPECT_EQ(page->items[1].key, "shop/hostbits");
  EXPECT_FALSE(page->items[1].object.has_value());
  EXPECT_THAT(page->items[1].invalid, HasSubstr("networkpolicy shop/hostbits"));
  EXPECT_THAT(page->items[1].invalid, HasSubstr("10.0.0.0/8"));
}

TEST(DecodeTest, PolicyLogAllowedAnnotation) {
  absl::StatusOr<ListPage> page = DecodeListPage(Resource::kNetworkPolicies, R"({"metadata":{"resourceVersion":"9"},"items":[
{"metadata":{"name":"logged","namespace":"shop","annotations":{"a":"b","netpol.io/log-allowed":"true"}},"spec":{"podSelector":{}}},
{"metadata":{"name":"off","namespace":"shop","annotations":{"netpol.io/log-allowed":"false"}},"spec":{"podSelector":{}}},
{"metadata":{"name":"odd","namespace":"shop","annotations":{"netpol.io/log-allowed":"yes"}},"spec":{"podSelector":{}}},
{"metadata":{"name":"plain","namespace":"shop"},"spec":{"podSelector":{}}}
]})");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->items.size(), 4u);
  for (const Item& item : page->items) ASSERT_TRUE(item.object.has_value()) << item.invalid;
  EXPECT_TRUE(page->items[0].object->AsNetworkPolicy()->log_allowed);
  EXPECT_FALSE(page->items[1].object->AsNetworkPolicy()->log_allowed);
  // Any string is valid in Kubernetes: the policy is enforced, without logs, with a warning.
  EXPECT_FALSE(page->items[2].object->AsNetworkPolicy()->log_allowed);
  EXPECT_THAT(page->items[2].warnings,
              ElementsAre(HasSubstr("metadata.annotations[netpol.io/log-allowed]: must be")));
  EXPECT_FALSE(page->items[3].object->AsNetworkPolicy()->log_allowed);
}

TEST(DecodeTest, WatchEvents) {
  absl::StatusOr<WatchEvent> e = DecodeWatchEvent(
      Resource::kPods,
      R"({"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"n","resourceVersion":"90"},"spec":{"containers":[]},"status":{"podIPs":[{"ip":"10.1.1.1"}]}}})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, WatchEvent::Type::kModified);
  EXPECT_EQ(e->item.key, "n/a");
  EXPECT_EQ(e->item.resource_version, "90");
  ASSERT_TRUE(e->item.object.has_value());

  e = DecodeWatchEvent(Resource::kPods,
                       R"({"type":"DELETED","object":{"metadata":{"name":"a","namespace":"n","resourceVersion":"91"}}})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, WatchEvent::Type::kDeleted);
  EXPECT_FALSE(e->item.object.has_value());
  EXPECT_TRUE(e->item.deleted);

  e = DecodeWatchEvent(Resource::kPods,
                       R"({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"120","annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"containers":null}}})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, WatchEvent::Type::kBookmark);
  EXPECT_EQ(e->item.resource_version, "120");

  e = DecodeWatchEvent(Resource::kPods,
                       R"json({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (90)","reason":"Expired","code":410}})json");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, WatchEvent::Type::kError);
  EXPECT_EQ(e->error_code, 410);
  EXPECT_THAT(e->error_message, HasSubstr("too old"));
}

TEST(DecodeTest, MalformedInputIsAnErrorNotACrash) {
  for (const char* bad : {"", "{", "[1,2]", R"({"items":[{"metadata":5}]})",
                          R"({"metadata":{"resourceVersion":"1"},"items":[{"spec":{"containers":[{"ports":[{"containerPort":"x"}]}]}}]})"}) {
    EXPECT_FALSE(DecodeListPage(Resource::kPods, bad).ok()) << bad;
  }
  EXPECT_FALSE(DecodeWatchEvent(Resource::kPods, R"({"type":"WHAT","object":{}})").ok());
  EXPECT_FALSE(DecodeWatchEvent(Resource::kPods, "not json").ok());
}

}  // namespace
// A ClusterNetworkPolicy as kube-apiserver serves the CRD's objects (deploy/), through the
// loader and the compiler's validation like a manifest.
TEST(DecodeTest, ClusterNetworkPolicyThroughTheModelLoader) {
  absl::StatusOr<ListPage> page = DecodeListPage(Resource::kClusterNetworkPolicies, R"({"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicyList","metadata":{"resourceVersion":"31","continue":""},"items":[
{"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicy","metadata":{"name":"guard","resourceVersion":"30","uid":"u","generation":2,"creationTimestamp":"2026-01-01T00:00:00Z","managedFields":[{"manager":"kubectl"}]},"spec":{"tier":"Admin","priority":10,"subject":{"namespaces":{"matchLabels":{"team":"a"}}},"ingress":[{"name":"no-b","action":"Deny","from":[{"namespaces":{"matchLabels":{"team":"b"}}}],"protocols":[{"tcp":{"destinationPort":{"number":80}}},{"destinationNamedPort":"http"}]}],"egress":[{"action":"Accept","to":[{"networks":["10.0.0.0/8"]},{"nodes":{"matchLabels":{"zone":"a"}}}]}]},"status":{"conditions":[]}},
{"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicy","metadata":{"name":"hostbits","resourceVersion":"29"},"spec":{"tier":"Baseline","priority":1,"subject":{"namespaces":{}},"egress":[{"action":"Deny","to":[{"networks":["10.0.0.1/8"]}]}]}}
]})");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].key, "guard");
  EXPECT_EQ(page->items[0].resource_version, "30");
  ASSERT_TRUE(page->items[0].object.has_value()) << page->items[0].invalid;
  const ClusterNetworkPolicy* cnp = page->items[0].object->AsClusterNetworkPolicy();
  ASSERT_NE(cnp, nullptr);
  EXPECT_EQ(cnp->tier, CnpTier::kAdmin);
  EXPECT_EQ(cnp->priority, 10);
  ASSERT_EQ(cnp->ingress.size(), 1u);
  EXPECT_EQ(cnp->ingress[0].name, "no-b");
  EXPECT_EQ(cnp->ingress[0].action, CnpAction::kDeny);
  ASSERT_EQ(cnp->egress.size(), 1u);
  EXPECT_EQ(cnp->egress[0].peers.size(), 2u);
  // Accepted by the CRD's pattern, refused by netpol: left out with the field path.
  EXPECT_EQ(page->items[1].key, "hostbits");
  EXPECT_FALSE(page->items[1].object.has_value());
  EXPECT_THAT(page->items[1].invalid, HasSubstr("clusternetworkpolicy hostbits: spec.egress[0]"));
}

// A Node as the kubelet reports it: only the name, labels and InternalIP/ExternalIP addresses
// are kept; an address netpol cannot use leaves the node out with the reason.
TEST(DecodeTest, NodeKeepsLabelsAndItsAddresses) {
  absl::StatusOr<WatchEvent> e = DecodeWatchEvent(Resource::kNodes, R"({"type":"MODIFIED","object":{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-1","resourceVersion":"77","labels":{"kubernetes.io/hostname":"node-1","node-role.kubernetes.io/control-plane":"","zone":"a"},"annotations":{"x":"y"}},"spec":{"podCIDR":"10.244.0.0/24","taints":[{"key":"k","effect":"NoSchedule"}]},"status":{"capacity":{"cpu":"2"},"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"192.168.0.1"},{"type":"InternalIP","address":"fd00::1"},{"type":"ExternalIP","address":"203.0.113.7"},{"type":"Hostname","address":"node-1"}],"images":[{"names":["a"],"sizeBytes":1}],"nodeInfo":{"kubeletVersion":"v1.28.7"}}}})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, WatchEvent::Type::kModified);
  EXPECT_EQ(e->item.key, "node-1");
  EXPECT_EQ(e->item.resource_version, "77");
  ASSERT_TRUE(e->item.object.has_value()) << e->item.invalid;
  const Node* node = e->item.object->AsNode();
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(node->labels.at("zone"), "a");
  EXPECT_EQ(node->labels.at("node-role.kubernetes.io/control-plane"), "");
  ASSERT_EQ(node->ips.size(), 3u);
  EXPECT_EQ(node->ips[0].ToString(), "192.168.0.1");
  EXPECT_EQ(node->ips[1].ToString(), "fd00::1");
  EXPECT_EQ(node->ips[2].ToString(), "203.0.113.7");
  EXPECT_TRUE(e->item.warnings.empty());

  absl::StatusOr<ListPage> page = DecodeListPage(Resource::kNodes, R"({"metadata":{"resourceVersion":"80"},"items":[
{"metadata":{"name":"bare","resourceVersion":"78"}},
{"metadata":{"name":"mapped","resourceVersion":"79"},"status":{"addresses":[{"type":"InternalIP","address":"::ffff:10.0.0.1"}]}}]})");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->items.size(), 2u);
  ASSERT_TRUE(page->items[0].object.has_value()) << page->items[0].invalid;
  EXPECT_TRUE(page->items[0].object->AsNode()->ips.empty());
  EXPECT_FALSE(page->items[1].object.has_value());
  EXPECT_THAT(page->items[1].invalid, HasSubstr("node mapped: status.addresses[0].address"));
}

}  // namespace netpol::agent::k8s
