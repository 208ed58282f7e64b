// Apply/Delete state transitions and their kubectl-style outcomes.
#include "agent/changes.h"

#include "engine/compiler/delta.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

std::vector<Object> Load(const char* yaml) {
  auto r = LoadYaml(yaml);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->objects : std::vector<Object>{};
}

constexpr char kBase[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: z}
)";

std::vector<v1::Action> Actions(const ChangeResult& r) {
  std::vector<v1::Action> out;
  for (const auto& res : r.results) out.push_back(res.action());
  return out;
}

TEST(ApplyObjectsTest, CreatedConfiguredUnchanged) {
  ChangeResult first = ApplyObjects(State{}, Load(kBase));
  EXPECT_EQ(Actions(first), (std::vector<v1::Action>{v1::CREATED, v1::CREATED, v1::CREATED,
                                                     v1::CREATED}));
  EXPECT_EQ(first.objects_changed, 4u);
  ChangeResult again = ApplyObjects(first.state, Load(kBase));
  EXPECT_EQ(again.objects_changed, 0u);
  EXPECT_EQ(Actions(again), (std::vector<v1::Action>{v1::UNCHANGED, v1::UNCHANGED,
                                                     v1::UNCHANGED, v1::UNCHANGED}));
  ChangeResult relabel = ApplyObjects(first.state, Load(R"(
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
)"));
  EXPECT_EQ(Actions(relabel), (std::vector<v1::Action>{v1::CONFIGURED}));
  EXPECT_EQ(relabel.state.pods.at("x/a").labels.at("app"), "web");
  EXPECT_EQ(relabel.results[0].ref().kind(), v1::POD);
  EXPECT_EQ(relabel.results[0].ref().namespace_(), "x");
}

std::set<std::string> Keys(std::initializer_list<const char*> keys) {
  return std::set<std::string>(keys.begin(), keys.end());
}

// The write's Delta names exactly what changed: what a walk over both States finds.
TEST(ApplyObjectsTest, DeltaHoldsTheKeysCreatedOrConfigured) {
  ChangeResult first = ApplyObjects(State{}, Load(kBase));
  EXPECT_EQ(first.delta.namespaces, Keys({"x"}));
  EXPECT_EQ(first.delta.pods, Keys({"x/a", "z/b"}));
  EXPECT_EQ(first.delta.policies, Keys({"x/deny"}));
  EXPECT_EQ(first.delta, compiler::DiffStates(State{}, first.state));
  EXPECT_TRUE(ApplyObjects(first.state, Load(kBase)).delta.empty());
  ChangeResult relabel = ApplyObjects(first.state, Load(R"(
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: z}
)"));
  EXPECT_TRUE(relabel.delta.namespaces.empty());
  EXPECT_EQ(relabel.delta.pods, Keys({"x/a"}));  // z/b is unchanged
  EXPECT_TRUE(relabel.delta.policies.empty());
  EXPECT_EQ(relabel.delta, compiler::DiffStates(first.state, relabel.state));
  // What the write did not touch is shared with the base State, not copied.
  EXPECT_TRUE(ObjectMap<Pod>::SameEntry(first.state.pods, relabel.state.pods, "z/b"));
  EXPECT_FALSE(ObjectMap<Pod>::SameEntry(first.state.pods, relabel.state.pods, "x/a"));
}

TEST(ApplyObjectsTest, DuplicateInOneApplySeesTheEarlierOne) {
  ChangeResult r = ApplyObjects(State{}, Load(R"(
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Namespace
metadata: {name: x}
)"));
  EXPECT_EQ(Actions(r), (std::vector<v1::Action>{v1::CREATED, v1::UNCHANGED}));
}

v1::ObjectRef Ref(v1::Kind kind, const std::string& ns, const std::string& name) {
  v1::ObjectRef r;
  r.set_kind(kind);
  r.set_namespace_(ns);
  r.set_name(name);
  return r;
}

TEST(DeleteObjectsTest, DeletesAndCascadesNamespaces) {
  State base = ApplyObjects(State{}, Load(kBase)).state;
  auto r = DeleteObjects(base, {Ref(v1::NAMESPACE, "", "x")}, false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Actions(*r), (std::vector<v1::Action>{v1::DELETED}));
  EXPECT_EQ(r->objects_changed, 3u);  // namespace, its pod and its policy
  EXPECT_TRUE(r->state.namespaces.empty());
  EXPECT_TRUE(r->state.policies.empty());
  ASSERT_EQ(r->state.pods.size(), 1u);
  EXPECT_EQ(r->state.pods.begin()->first, "z/b");
  // The cascade's keys are in the Delta: nothing downstream has to look for them.
  EXPECT_EQ(r->delta.namespaces, Keys({"x"}));
  EXPECT_EQ(r->delta.pods, Keys({"x/a"}));
  EXPECT_EQ(r->delta.policies, Keys({"x/deny"}));
  EXPECT_EQ(r->delta, compiler::DiffStates(base, r->state));
}

TEST(DeleteObjectsTest, ObjectsOfANamespaceDeletedEarlierInTheRequestAreDeleted) {
  State base = ApplyObjects(State{}, Load(kBase)).state;
  auto r = DeleteObjects(base, {Ref(v1::NAMESPACE, "", "x"), Ref(v1::POD, "x", "a"),
                                Ref(v1::NETWORK_POLICY, "x", "deny")},
                         false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Actions(*r), (std::vector<v1::Action>{v1::DELETED, v1::DELETED, v1::DELETED}));
  EXPECT_EQ(r->objects_changed, 3u);
  // An object that never existed is still an error.
  EXPECT_EQ(DeleteObjects(base, {Ref(v1::NAMESPACE, "", "x"), Ref(v1::POD, "x", "zz")}, false)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST(DeleteObjectsTest, MissingIsNotFoundUnlessIgnored) {
  State base = ApplyObjects(State{}, Load(kBase)).state;
  auto r = DeleteObjects(base, {Ref(v1::POD, "x", "a"), Ref(v1::NETWORK_POLICY, "x", "nope")},
                         false);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "networkpolicy x/nope: not found");
  auto ignored = DeleteObjects(
      base, {Ref(v1::POD, "x", "a"), Ref(v1::NETWORK_POLICY, "x", "nope")}, true);
  ASSERT_TRUE(ignored.ok());
  EXPECT_EQ(Actions(*ignored), (std::vector<v1::Action>{v1::DELETED, v1::UNCHANGED}));
  EXPECT_EQ(ignored->objects_changed, 1u);
  EXPECT_EQ(ignored->delta.pods, Keys({"x/a"}));
  EXPECT_TRUE(ignored->delta.policies.empty());
  EXPECT_EQ(ignored->delta, compiler::DiffStates(base, ignored->state));
}

TEST(DeleteObjectsTest, NamespaceDefaultsToDefault) {
  State base = ApplyObjects(State{}, Load(R"(
apiVersion: v1
kind: Pod
metadata: {name: p}
)")).state;
  auto r = DeleteObjects(base, {Ref(v1::POD, "", "p")}, false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->state.pods.empty());
}

TEST(DeleteObjectsTest, BadRefs) {
  EXPECT_EQ(DeleteObjects(State{}, {Ref(v1::KIND_UNSPECIFIED, "x", "a")}, true).status().message(),
            "refs[0].kind: required (NAMESPACE, POD, NETWORK_POLICY, CLUSTER_NETWORK_POLICY or "
            "NODE)");
  EXPECT_EQ(DeleteObjects(State{}, {Ref(v1::POD, "x", "")}, true).status().message(),
            "refs[0].name: required");
}

}  // namespace
}  // namespace netpol::agent
