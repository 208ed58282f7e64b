// The etcd key layout and value encoding: keys, prefix ranges, round trips of every field, and
// clear errors for values that do not belong under their key.
#include "agent/etcd/keys.h"

#include <string>

#include "agent/testing/fixtures.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace netpol::agent::etcd {
namespace {

std::vector<Object> Objects() { return fixtures::LoadObjects(fixtures::kSample); }

KeyLayout Layout() { return *KeyLayout::Create(kDefaultPrefix); }

TEST(PrefixEndTest, Table) {
  struct Case {
    std::string prefix, want;
  } cases[] = {
      {"/netpol/v1/", "/netpol/v10"},
      {"a", "b"},
      {std::string("a\xff", 2), "b"},
      {std::string("\xff\xff", 2), std::string(1, '\0')},
      {"", std::string(1, '\0')},
  };
  for (const Case& c : cases) EXPECT_EQ(PrefixEnd(c.prefix), c.want) << c.prefix;
}

TEST(KeyLayoutTest, PrefixMustBeSlashed) {
  for (const char* bad : {"", "/", "netpol/v1/", "/netpol/v1"}) {
    absl::StatusOr<KeyLayout> l = KeyLayout::Create(bad);
    ASSERT_FALSE(l.ok()) << bad;
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(l.status().message().find("must start and end with '/'"), std::string::npos);
  }
  EXPECT_TRUE(KeyLayout::Create("/a/").ok());
}

TEST(KeyLayoutTest, KeysOfEveryKind) {
  const std::vector<Object> objects = Objects();
  ASSERT_EQ(objects.size(), 3u);
  KeyLayout l = Layout();
  EXPECT_EQ(l.KeyOf(objects[0]), "/netpol/v1/namespaces/x");
  EXPECT_EQ(l.KeyOf(objects[1]), "/netpol/v1/pods/x/a");
  EXPECT_EQ(l.KeyOf(objects[2]), "/netpol/v1/networkpolicies/x/allow");
  EXPECT_EQ(l.PodsOfNamespace("x"), "/netpol/v1/pods/x/");
  EXPECT_EQ(l.PoliciesOfNamespace("x"), "/netpol/v1/networkpolicies/x/");
  const std::vector<Object> cluster = fixtures::LoadObjects(fixtures::kClusterSample);
  ASSERT_EQ(cluster.size(), 4u);
  EXPECT_EQ(l.KeyOf(cluster[0]), "/netpol/v1/clusternetworkpolicies/guard");
  EXPECT_EQ(l.KeyOf(cluster[2]), "/netpol/v1/nodes/n1");
}

TEST(KeyLayoutTest, EncodeDecodeRoundTripsEveryKind) {
  KeyLayout l = Layout();
  std::vector<Object> all = Objects();
  for (Object& o : fixtures::LoadObjects(fixtures::kClusterSample)) all.push_back(std::move(o));
  for (const Object& o : all) {
    const std::string value = KeyLayout::Encode(o);
    absl::StatusOr<Object> back = l.Decode(l.KeyOf(o), value);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, o) << value;
  }
}

TEST(KeyLayoutTest, AcceptsHandWrittenJson) {
  absl::StatusOr<Object> o = Layout().Decode(
      "/netpol/v1/pods/y/b",
      R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"b","namespace":"y"},)"
      R"("status":{"podIPs":[{"ip":"10.0.0.2"}]}})");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->Key(), "y/b");
}

TEST(KeyLayoutTest, NamespaceDefaultsFromTheKey) {
  absl::StatusOr<Object> o =
      Layout().Decode("/netpol/v1/networkpolicies/y/deny",
                      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                      "metadata: {name: deny}\nspec: {podSelector: {}}\n");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->Key(), "y/deny");
}

TEST(KeyLayoutTest, BadKeysAndValuesAreNamed) {
  const std::string ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";
  const std::string pod =
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\n";
  struct Case {
    const char* name;
    std::string key, value, want;
  } cases[] = {
      {"outside the prefix", "/other/namespaces/x", ns, "etcd key /other/namespaces/x: not under"},
      {"unknown kind", "/netpol/v1/services/x/a", ns, "not a netpol object key"},
      {"namespace key too deep", "/netpol/v1/namespaces/x/y", ns, "not a netpol object key"},
      {"pod key without namespace", "/netpol/v1/pods/a", pod, "not a netpol object key"},
      {"empty name", "/netpol/v1/pods/x/", pod, "empty name or namespace"},
      {"kind differs", "/netpol/v1/pods/x/x", ns,
       "the value is namespace x, which belongs under /netpol/v1/namespaces/x"},
      {"name differs", "/netpol/v1/pods/x/b", pod,
       "the value is pod x/a, which belongs under /netpol/v1/pods/x/a"},
      {"namespace differs", "/netpol/v1/pods/y/a", pod, "the value is pod x/a"},
      {"two objects", "/netpol/v1/namespaces/x", ns + "---\n" + ns, "holds 2 objects"},
      {"no object", "/netpol/v1/namespaces/x", "", "holds 0 objects"},
      {"invalid field", "/netpol/v1/pods/x/a",
       pod + "status: {podIPs: [{ip: 10.0.0.300}]}\n", "etcd key /netpol/v1/pods/x/a: pod x/a"},
      {"not yaml", "/netpol/v1/namespaces/x", "{{{", "etcd key /netpol/v1/namespaces/x"},
      {"cluster-scoped kind under networkpolicies", "/netpol/v1/networkpolicies/x/guard",
       "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
       "metadata: {name: guard}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}}\n",
       "the value is clusternetworkpolicy guard, which belongs under "
       "/netpol/v1/clusternetworkpolicies/guard"},
      {"a node under namespaces", "/netpol/v1/namespaces/n1",
       "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
       "the value is node n1, which belongs under /netpol/v1/nodes/n1"},
      {"cnp key too deep", "/netpol/v1/clusternetworkpolicies/x/guard", ns,
       "not a netpol object key"},
      {"invalid cnp", "/netpol/v1/clusternetworkpolicies/guard",
       "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
       "metadata: {name: guard}\nspec: {tier: Admin, priority: 1001, subject: {namespaces: {}}}\n",
       "etcd key /netpol/v1/clusternetworkpolicies/guard: clusternetworkpolicy guard: "
       "spec.priority"},
  };
  KeyLayout l = Layout();
  for (const Case& c : cases) {
    absl::StatusOr<Object> o = l.Decode(c.key, c.value);
    ASSERT_FALSE(o.ok()) << c.name;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(o.status().message().find(c.want), std::string::npos)
        << c.name << ": " << o.status().message();
  }
}

}  // namespace
}  // namespace netpol::agent::etcd
