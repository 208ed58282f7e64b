// AgentService over a real Store (temporary directory), a running Reconciler and
// nft::FakeBackend: every RPC's semantics without gRPC or root.
#include "agent/service.h"

#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <memory>
#include <optional>
#include <functional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"

#include "agent/testing/fixtures.h"
#include "api/convert.h"
#include "engine/compiler/compiler.h"
#include "engine/model/ip.h"
#include "engine/nft/fake.h"
#include "engine/trace/tracer.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace netpol::agent {

using api::ApiObjectsToJson;
using api::KubectlName;

namespace {

using ::testing::Contains;
using ::testing::ContainsRegex;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using fixtures::kShop;

constexpr absl::Duration kTimeout = absl::Seconds(30);

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fixtures::MakeTempDir("netpol-service-test-");
    ASSERT_FALSE(dir_.empty());
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ReconcilerOptions o;
    o.compile.node_name = "node-1";
    o.compile.rule_counters = rule_counters_;
    o.debounce = absl::ZeroDuration();
    o.check_interval = absl::ZeroDuration();
    Store* s = store_.get();
    reconciler_ = std::make_unique<Reconciler>(&fake_, [s] { return s->Current(); }, o);
    service_ = std::make_unique<AgentService>(store_.get(), reconciler_.get());
    EXPECT_FALSE(service_->Ready());
    ASSERT_TRUE(reconciler_->SyncNow().ok());
    reconciler_->Start();
    EXPECT_TRUE(service_->Ready());
  }
  void TearDown() override {
    reconciler_->Stop();
    fixtures::RemoveTree(dir_);
  }

  v1::ApplyResponse MustApply(const std::string& yaml, bool dry_run = false) {
    v1::ApplyRequest req;
    req.add_manifests()->set_text(yaml);
    req.mutable_manifests(0)->set_source("shop.yaml");
    req.set_dry_run(dry_run);
    auto r = service_->Apply(req, kTimeout);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::ApplyResponse();
  }
  std::string Kernel() {
    auto t = fake_.Render("netpol");
    return t.ok() ? *t : std::string(t.status().message());
  }

  bool rule_counters_ = false;
  std::string dir_;
  nft::FakeBackend fake_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<AgentService> service_;
};

v1::ApplyRequest ApplyOf(const std::string& yaml, bool dry_run = false) {
  v1::ApplyRequest req;
  req.add_manifests()->set_text(yaml);
  req.set_dry_run(dry_run);
  return req;
}

// Policy default/wide: 49 ingress rules of 32 ipBlocks and `ports` ports each (32 ports: 32 x 32
// elements a rule, beyond the 50,000 elements one policy may use; 33: a large rule each, with
// a peer set and a port set of its own).
std::string WidePolicy(int ports) {
  std::string yaml =
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: wide, "
      "namespace: default}\nspec:\n  podSelector: {}\n  ingress:\n";
  for (int r = 0; r < 49; ++r) {
    absl::StrAppend(&yaml, "  - from:\n");
    for (int b = 0; b < 32; ++b) {
      absl::StrAppend(&yaml, "    - ipBlock: {cidr: 10.", r, ".", 2 * b, ".0/24}\n");
    }
    absl::StrAppend(&yaml, "    ports:\n");
    for (int p = 0; p < ports; ++p) absl::StrAppend(&yaml, "    - port: ", 1000 + 2 * p, "\n");
  }
  return yaml;
}

std::vector<std::string> Words(const google::protobuf::RepeatedPtrField<v1::ObjectResult>& rs) {
  std::vector<std::string> out;
  for (const auto& r : rs) {
    out.push_back(KubectlName(r.ref()) + " " + v1::Action_Name(r.action()));
  }
  return out;
}

class CountersTest : public ServiceTest {
 protected:
  CountersTest() { rule_counters_ = true; }

  v1::CountersResponse MustCount() {
    auto r = service_->Counters(v1::CountersRequest());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::CountersResponse();
  }
};

TEST_F(CountersTest, CountsAreAttributedAndSurviveAnUnrelatedChange) {
  MustApply(kShop);
  v1::CountersResponse c = MustCount();
  ASSERT_TRUE(c.enabled());
  const v1::RuleCounter* allow = nullptr;
  const v1::RuleCounter* drop = nullptr;
  for (const v1::RuleCounter& r : c.rules()) {
    EXPECT_EQ(r.direction(), "ingress") << r.ShortDebugString();
    EXPECT_THAT(r.policies(), ElementsAre("shop/web-ingress"));
    if (r.kind() == v1::RuleCounter::DROP) drop = &r;
    // The IPv4 lookup holding client . tcp . 8080.
    if (r.kind() == v1::RuleCounter::ALLOW && r.rules_size() == 1 &&
        fake_.Render("netpol")->find("10.1.0.11 . tcp . 8080") != std::string::npos &&
        allow == nullptr) {
      allow = &r;
    }
  }
  ASSERT_NE(allow, nullptr);
  ASSERT_NE(drop, nullptr);
  EXPECT_EQ(allow->rules(0).policy(), "shop/web-ingress");
  EXPECT_EQ(allow->rules(0).rule(), 0);
  const std::string chain = allow->chain();
  const size_t allow_index = allow->index(), drop_index = drop->index();
  ASSERT_TRUE(fake_.AddPackets("netpol", chain, allow_index, 3, 180).ok());
  ASSERT_TRUE(fake_.AddPackets("netpol", chain, drop_index, 2, 120).ok());

  // A pod joining an existing group's peers: element changes only, the counts stay.
  MustApply(R"(apiVersion: v1
kind: Pod
metadata: {name: client-2, namespace: shop, labels: {app: client}}
spec: {nodeName: node-2}
status: {podIP: 10.2.0.7}
)");
  c = MustCount();
  EXPECT_EQ(c.generation(), 2u);
  uint64_t allowed = 0, dropped = 0;
  for (const v1::RuleCounter& r : c.rules()) {
    if (r.chain() == chain && r.index() == static_cast<int32_t>(allow_index)) allowed = r.packets();
    if (r.chain() == chain && r.index() == static_cast<int32_t>(drop_index)) dropped = r.packets();
  }
  EXPECT_EQ(allowed, 3u);
  EXPECT_EQ(dropped, 2u);
  ASSERT_EQ(c.policy_rules_size(), 1);
  EXPECT_EQ(c.policy_rules(0).rule().policy(), "shop/web-ingress");
  EXPECT_EQ(c.policy_rules(0).direction(), "ingress");
  EXPECT_EQ(c.policy_rules(0).packets(), 3u);
  EXPECT_EQ(c.policy_rules(0).bytes(), 180u);
  EXPECT_FALSE(c.policy_rules(0).shared());
  ASSERT_EQ(c.policies_size(), 1);
  EXPECT_EQ(c.policies(0).allowed_packets(), 3u);
  EXPECT_EQ(c.policies(0).dropped_packets(), 2u);
  EXPECT_EQ(c.policies(0).dropped_bytes(), 120u);

  v1::ExplainPodRequest req;
  req.set_pod("shop/web");
  auto explained = service_->ExplainPod(req);
  ASSERT_TRUE(explained.ok()) << explained.status();
  EXPECT_EQ(explained->counters_size(), c.rules_size());
  uint64_t sum = 0;
  for (const v1::RuleCounter& r : explained->counters()) sum += r.packets();
  EXPECT_EQ(sum, 5u);

  // Another port in the same rule points the lookup at another set (sets are named after their
  // content): the chain is rebuilt, and each of its rules starts from the count of the rule it
  // replaces (same chain, same comment), so the counts stay.
  MustApply(R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}, {port: 9090}]
)");
  c = MustCount();
  ASSERT_EQ(c.policies_size(), 1);
  EXPECT_EQ(c.policies(0).allowed_packets(), 3u);
  EXPECT_EQ(c.policies(0).dropped_packets(), 2u);

  // A second rule sharing the lookup changes what the rule holds (its comment): the chain is
  // rebuilt, the lookup rule starts over while the closing drop (same comment) keeps its
  // count; the per-rule view says the lookup is shared.
  MustApply(R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}, {port: 9090}]
  - from: [{podSelector: {matchLabels: {app: other}}}]
    ports: [{port: 7070}]
)");
  c = MustCount();
  ASSERT_GT(c.rules_size(), 0);
  for (const v1::RuleCounter& r : c.rules()) {
    EXPECT_EQ(r.packets(), r.kind() == v1::RuleCounter::DROP ? 2u : 0u) << r.ShortDebugString();
  }
  ASSERT_EQ(c.policy_rules_size(), 2);
  EXPECT_TRUE(c.policy_rules(0).shared());
  EXPECT_TRUE(c.policy_rules(1).shared());
}

TEST_F(ServiceTest, CountersOffSayEnabledFalse) {
  MustApply(kShop);
  auto c = service_->Counters(v1::CountersRequest());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->enabled());
  EXPECT_EQ(c->rules_size(), 0);
  EXPECT_EQ(Kernel().find("counter"), std::string::npos);
}

TEST_F(ServiceTest, ApplyIsInTheKernelWhenItReturns) {
  v1::ApplyResponse r = MustApply(kShop);
  EXPECT_THAT(Words(r.results()),
              ElementsAre("namespace/shop CREATED", "pod/web CREATED", "pod/client CREATED",
                          "pod/other CREATED", "networkpolicy.networking.k8s.io/web-ingress CREATED"));
  EXPECT_EQ(r.generation(), 1u);
  EXPECT_EQ(reconciler_->status().applied_generation, 1u);
  EXPECT_THAT(Kernel(), HasSubstr("10.1.0.11 . tcp . 8080"));  // client may reach web:http
  v1::ApplyResponse again = MustApply(kShop);
  EXPECT_EQ(again.generation(), 1u);
  EXPECT_EQ(again.results(0).action(), v1::UNCHANGED);
}

TEST_F(ServiceTest, ObjectsAndManifestsTogetherAreOneChange) {
  v1::ApplyRequest req;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"objects": [{"namespace": {"metadata": {"name": "a"}}}],
                      "manifests": [{"text": "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n"}]})",
                  &req)
                  .ok());
  auto r = service_->Apply(req, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generation(), 1u);
  EXPECT_EQ(r->results_size(), 2);
}

TEST_F(ServiceTest, InvalidInputChangesNothing) {
  MustApply(kShop);
  const std::string before = Kernel();
  v1::ApplyRequest req;
  req.add_manifests()->set_text(R"(apiVersion: v1
kind: Namespace
metadata: {name: fine}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: shop}
spec:
  podSelector: {matchExpressions: [{key: a, operator: In}]}
)");
  auto r = service_->Apply(req, kTimeout);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("manifests[0]: networkpolicy shop/broken: spec.podSelector.matchExpressions[0]"));
  EXPECT_EQ(store_->Current().generation, 1u);
  EXPECT_EQ(store_->Current().state->namespaces.count("fine"), 0u);
  EXPECT_EQ(Kernel(), before);
  EXPECT_EQ(service_->Apply(v1::ApplyRequest(), kTimeout).status().code(),
            absl::StatusCode::kInvalidArgument);

  // The default namespace (netpolctl apply -n) is held to the namespace name rules.
  v1::ApplyRequest bad_ns;
  auto* manifest = bad_ns.add_manifests();
  manifest->set_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n");
  manifest->set_default_namespace("a\"b");
  auto refused = service_->Apply(bad_ns, kTimeout);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("default namespace: invalid name \"a\\\"b\": must be a lowercase RFC 1123 "
                        "label"));
  EXPECT_EQ(store_->Current().generation, 1u);
  EXPECT_EQ(Kernel(), before);
}

// An Admin-tier Deny of every connection from shop's client to web's http port, which the shop's
// NetworkPolicy allows.
constexpr char kLockWeb[] =
    "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
    "metadata: {name: lock-web}\nspec: {tier: Admin, priority: 1,\n"
    "  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}},\n"
    "  ingress: [{name: no-clients, action: Deny,\n"
    "    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}],\n"
    "    protocols: [{destinationNamedPort: http}]}]}\n";

// A tier chain's Accept and Deny lookups are counted and attributed to the ClusterNetworkPolicy
// rules they hold, per rule (tier, policy, index, name, action) and per compiled rule.
TEST_F(CountersTest, ClusterNetworkPolicyRulesAreCountedNamingTheTierThePolicyAndTheRule) {
  MustApply(kShop);
  MustApply(kLockWeb);
  v1::CountersResponse c = MustCount();
  const v1::RuleCounter* deny = nullptr;
  int tier_rules = 0;
  for (const v1::RuleCounter& r : c.rules()) {
    if (!absl::StartsWith(r.chain(), "cin-lock-web-")) continue;
    ++tier_rules;
    if (r.kind() == v1::RuleCounter::CLUSTER_ACCEPT) {
      EXPECT_EQ(r.cluster_rules_size(), 0);  // lock-web has no Accept rule
    }
    if (r.kind() != v1::RuleCounter::CLUSTER_DENY) continue;
    ASSERT_EQ(r.cluster_rules_size(), 1) << r.ShortDebugString();
    EXPECT_THAT(r.comment(), HasSubstr("Admin tier Deny: lock-web ingress[0]"));
    if (deny == nullptr) deny = &r;  // the IPv4 lookup (rules in chain order)
  }
  EXPECT_EQ(tier_rules, 5);  // Accept and Deny per family, then the jump to the group chain
  ASSERT_NE(deny, nullptr);
  const std::string chain = deny->chain();
  const size_t index = deny->index();
  ASSERT_TRUE(fake_.AddPackets("netpol", chain, index, 4, 240).ok());
  c = MustCount();
  ASSERT_EQ(c.cluster_policy_rules_size(), 1) << c.ShortDebugString();
  const v1::ClusterPolicyRuleCounter& rc = c.cluster_policy_rules(0);
  EXPECT_EQ(rc.rule().tier(), v1::Admin);
  EXPECT_EQ(rc.rule().policy(), "lock-web");
  EXPECT_EQ(rc.rule().priority(), 1);
  EXPECT_EQ(rc.rule().rule(), 0);
  EXPECT_EQ(rc.rule().name(), "no-clients");
  EXPECT_EQ(rc.rule().action(), v1::Deny);
  EXPECT_EQ(rc.direction(), "ingress");
  EXPECT_EQ(rc.packets(), 4u);
  EXPECT_EQ(rc.bytes(), 240u);
  EXPECT_FALSE(rc.shared());
  // NetworkPolicy counts are not mixed with them.
  for (const v1::PolicyCounter& p : c.policies()) EXPECT_EQ(p.dropped_packets(), 0u) << p.policy();
}

// ClusterNetworkPolicies are stored and enforced like the other kinds.
class CnpStoreTest : public ServiceTest {
 protected:
  // What the committed program does to a new TCP connection from shop/client (10.1.0.11) to
  // shop/web (10.1.0.10) on `port`: ingress is judged in postrouting on web's node (this one).
  bool ClientReachesWeb(int port) {
    absl::StatusOr<nft::Program> committed = fake_.Dump("netpol");
    EXPECT_TRUE(committed.ok()) << committed.status();
    if (!committed.ok()) return false;
    trace::Packet pkt;
    pkt.src = *IpAddr::Parse("10.1.0.11");
    pkt.dst = *IpAddr::Parse("10.1.0.10");
    pkt.dport = static_cast<uint16_t>(port);
    absl::StatusOr<trace::TraceResult> r =
        trace::Trace(*committed, compiler::kPostroutingChain, pkt);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->accepted;
  }
  // The committed program's ingress tier chains (`cin-...`).
  std::vector<std::string> TierChains() {
    std::vector<std::string> out;
    absl::StatusOr<nft::Program> committed = fake_.Dump("netpol");
    if (!committed.ok()) return out;
    for (const auto& [name, chain] : committed->chains) {
      if (absl::StartsWith(name, "cin-")) out.push_back(name);
    }
    return out;
  }
};

TEST_F(CnpStoreTest, AnAppliedClusterNetworkPolicyIsEnforcedAndItsDeleteLiftsIt) {
  MustApply(kShop);
  const std::string before = Kernel();
  EXPECT_TRUE(ClientReachesWeb(8080));  // the NetworkPolicy allows http
  EXPECT_FALSE(ClientReachesWeb(9090));
  EXPECT_TRUE(TierChains().empty());

  v1::ApplyResponse r = MustApply(kLockWeb);
  EXPECT_THAT(Words(r.results()),
              ElementsAre("clusternetworkpolicy.policy.networking.k8s.io/lock-web CREATED"));
  // Acknowledged once committed: the Admin tier's Deny set holds client's address on web's
  // http port, web is dispatched to its tier chain, and the connection is dropped.
  EXPECT_EQ(reconciler_->status().applied_generation, r.generation());
  const std::vector<std::string> chains = TierChains();
  ASSERT_EQ(chains.size(), 1u) << Kernel();
  EXPECT_TRUE(absl::StartsWith(chains[0], "cin-lock-web-")) << chains[0];
  const std::string kernel = Kernel();
  EXPECT_THAT(kernel, HasSubstr("10.1.0.10 comment \"shop/web\" : jump " + chains[0]));
  EXPECT_THAT(kernel, ContainsRegex("@cin-set-[0-9a-f]+-ad4 drop comment \"Admin tier Deny: "
                                    "lock-web ingress\\[0\\]\""));
  EXPECT_THAT(kernel, HasSubstr("10.1.0.11 . tcp . 8080"));
  EXPECT_FALSE(ClientReachesWeb(8080));
  EXPECT_FALSE(ClientReachesWeb(9090));  // still the NetworkPolicy's isolation

  // A dry run of the delete plans the lifted chain and changes nothing.
  v1::DeleteRequest del;
  v1::ObjectRef* ref = del.add_refs();
  ref->set_kind(v1::CLUSTER_NETWORK_POLICY);
  ref->set_name("lock-web");
  del.set_dry_run(true);
  auto d = service_->Delete(del, kTimeout);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->plan().nft_changes(), HasSubstr(chains[0]));
  EXPECT_FALSE(ClientReachesWeb(8080));

  del.set_dry_run(false);
  d = service_->Delete(del, kTimeout);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(reconciler_->status().applied_generation, d->generation());
  EXPECT_TRUE(TierChains().empty());
  EXPECT_TRUE(ClientReachesWeb(8080));
  EXPECT_EQ(Kernel(), before);
}

// A ClusterNetworkPolicy written behind the API's back (etcd directly, the Kubernetes API) is
// synced and enforced like one applied through it.
TEST_F(CnpStoreTest, AStoredClusterNetworkPolicyIsSyncedAndEnforced) {
  MustApply(kShop);
  EXPECT_TRUE(ClientReachesWeb(8080));
  State more = *store_->Current().state;
  for (const Object& o : fixtures::LoadObjects(kLockWeb)) Upsert(o, &more);
  auto snap = store_->Update([&](const State&) -> absl::StatusOr<std::optional<Store::Change>> {
    ChangedKeys touched;
    touched.cluster_policies = {"guard"};
    touched.namespaces = {"later"};
    return Store::Change(more, 2, touched);
  });
  ASSERT_TRUE(snap.ok()) << snap.status();
  absl::Status st = reconciler_->SyncNow();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(reconciler_->status().applied_generation, store_->Current().generation);
  EXPECT_EQ(TierChains().size(), 1u);
  EXPECT_FALSE(ClientReachesWeb(8080));
}

TEST_F(CnpStoreTest, CheckNamesTheTierThePolicyAndTheRuleThatDecided) {
  MustApply(kShop);
  v1::CheckRequest check;
  check.mutable_source()->set_pod("shop/client");
  check.mutable_destination()->set_pod("shop/web");
  check.set_port(8080);
  check.set_protocol(v1::TCP);
  auto c = service_->Check(check);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->verdict(), v1::ALLOWED);
  EXPECT_EQ(c->ingress().tier(), "NetworkPolicy");
  EXPECT_EQ(c->egress().tier(), "default");
  EXPECT_FALSE(c->ingress().has_cluster_network_policy_rule());

  // An Admin-tier Deny of client -> web's http, after a Pass of nothing relevant, overrides the
  // NetworkPolicy that allows it; the Baseline tier never runs for it.
  MustApply(R"(apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: lock-web}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress:
  - name: other-passes
    action: Pass
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: other}}}}]
  - name: no-clients
    action: Deny
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}]
    protocols: [{destinationNamedPort: http}]
)");
  c = service_->Check(check);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->verdict(), v1::DENIED);
  EXPECT_EQ(c->ingress().tier(), "Admin");
  const v1::ClusterNetworkPolicyRuleRef& rule = c->ingress().cluster_network_policy_rule();
  EXPECT_EQ(rule.policy(), "lock-web");
  EXPECT_EQ(rule.tier(), v1::Admin);
  EXPECT_EQ(rule.priority(), 5);
  EXPECT_EQ(rule.rule(), 1);
  EXPECT_EQ(rule.name(), "no-clients");
  EXPECT_EQ(rule.action(), v1::Deny);
  EXPECT_THAT(c->explanation(),
              HasSubstr("Admin tier: clusternetworkpolicy lock-web (priority 5) ingress[1] "
                        "\"no-clients\" Deny"));

  // From `other`: the Pass hands it to NetworkPolicy, which isolates web and does not allow it.
  check.mutable_source()->set_pod("shop/other");
  c = service_->Check(check);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->verdict(), v1::DENIED);
  EXPECT_EQ(c->ingress().tier(), "NetworkPolicy");
  ASSERT_EQ(c->ingress().passed_size(), 1);
  EXPECT_EQ(c->ingress().passed(0).name(), "other-passes");
  EXPECT_EQ(c->ingress().passed(0).action(), v1::Pass);

  // explain pod names the ClusterNetworkPolicies selecting the pod, per tier, in order.
  v1::ExplainPodRequest explain;
  explain.set_pod("shop/web");
  auto e = service_->ExplainPod(explain);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_THAT(e->admin_cluster_network_policies(), ElementsAre("lock-web (priority 5)"));
  EXPECT_TRUE(e->baseline_cluster_network_policies().empty());
  explain.set_pod("shop/client");
  e = service_->ExplainPod(explain);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->admin_cluster_network_policies().empty());
}


TEST_F(CnpStoreTest, ApplyGetListDeleteClusterNetworkPoliciesAndNodes) {
  v1::ApplyResponse r = MustApply(fixtures::kClusterSample);
  EXPECT_THAT(Words(r.results()),
              ElementsAre("clusternetworkpolicy.policy.networking.k8s.io/guard CREATED",
                          "clusternetworkpolicy.policy.networking.k8s.io/isolate CREATED",
                          "node/n1 CREATED", "node/n2 CREATED"));
  r = MustApply(fixtures::kClusterSample);
  EXPECT_THAT(Words(r.results()),
              ElementsAre("clusternetworkpolicy.policy.networking.k8s.io/guard UNCHANGED",
                          "clusternetworkpolicy.policy.networking.k8s.io/isolate UNCHANGED",
                          "node/n1 UNCHANGED", "node/n2 UNCHANGED"));
  const State want = fixtures::LoadState(fixtures::kClusterSample);
  EXPECT_TRUE(store_->Current().state->cluster_policies == want.cluster_policies);
  EXPECT_TRUE(store_->Current().state->nodes == want.nodes);

  v1::GetRequest get;
  get.mutable_ref()->set_kind(v1::CLUSTER_NETWORK_POLICY);
  get.mutable_ref()->set_name("guard");
  get.mutable_ref()->set_namespace_("ignored");
  auto g = service_->Get(get);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->object().cluster_network_policy().spec().priority(), 10);
  get.mutable_ref()->set_kind(v1::NODE);
  get.mutable_ref()->set_name("n1");
  g = service_->Get(get);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->object().node().status().addresses_size(), 2);
  get.mutable_ref()->set_name("n9");
  EXPECT_EQ(service_->Get(get).status().message(), "node n9: not found");

  v1::ListRequest list;
  list.set_kind(v1::CLUSTER_NETWORK_POLICY);
  auto l = service_->List(list, absl::InfiniteFuture());
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->objects_size(), 2);
  EXPECT_EQ(l->objects(1).cluster_network_policy().metadata().name(), "isolate");
  list.set_kind(v1::NODE);
  l = service_->List(list, absl::InfiniteFuture());
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->objects_size(), 2);
  EXPECT_EQ(service_->Status().objects().cluster_network_policies(), 2);
  EXPECT_EQ(service_->Status().objects().nodes(), 2);

  // A changed priority is CONFIGURED; a bad one changes nothing.
  const std::string changed = absl::StrReplaceAll(fixtures::kClusterSample,
                                                  {{"priority: 10", "priority: 20"}});
  r = MustApply(changed);
  EXPECT_THAT(Words(r.results()),
              ::testing::Contains("clusternetworkpolicy.policy.networking.k8s.io/guard CONFIGURED"));
  const uint64_t gen = store_->Current().generation;
  auto bad = service_->Apply(
      ApplyOf(absl::StrReplaceAll(fixtures::kClusterSample, {{"priority: 10", "priority: 1001"}})),
      kTimeout);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("clusternetworkpolicy guard: spec.priority"));
  EXPECT_EQ(store_->Current().generation, gen);

  v1::DeleteRequest del;
  del.add_manifests()->set_text(fixtures::kClusterSample);
  auto d = service_->Delete(del, kTimeout);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->results_size(), 4);
  EXPECT_TRUE(store_->Current().state->cluster_policies.empty());
  EXPECT_TRUE(store_->Current().state->nodes.empty());
  EXPECT_EQ(service_->Delete(del, kTimeout).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServiceTest, DryRunReturnsThePlanAndChangesNothing) {
  MustApply(kShop);
  const std::string before = Kernel();
  v1::ApplyResponse r = MustApply(R"(apiVersion: v1
kind: Pod
metadata: {name: client-2, namespace: shop, labels: {app: client}}
spec: {nodeName: node-1}
status: {podIP: 10.1.0.12}
)", /*dry_run=*/true);
  EXPECT_THAT(Words(r.results()), ElementsAre("pod/client-2 CREATED"));
  EXPECT_THAT(r.plan().nft_changes(), HasSubstr("10.1.0.12 . tcp . 8080"));
  EXPECT_GT(r.plan().element_changes(), 0);
  EXPECT_THAT(r.plan().affected_pods(), ElementsAre("shop/web"));
  EXPECT_EQ(store_->Current().generation, 1u);
  EXPECT_EQ(Kernel(), before);
  // A pod on another node changes nothing here.
  v1::ApplyResponse remote = MustApply(R"(apiVersion: v1
kind: Pod
metadata: {name: far, namespace: shop, labels: {app: far}}
spec: {nodeName: node-9}
status: {podIP: 10.9.0.1}
)", true);
  EXPECT_EQ(remote.plan().nft_changes(), "");
  EXPECT_TRUE(remote.plan().affected_pods().empty());
}

// A compare-only dry run (what netpolctl wait -f asks until nothing would change) answers each
// object's action against the store and the generation it compared with, and nothing else: no
// plan (nothing is compiled), nothing stored. Objects a write would refuse are refused alike.
TEST_F(ServiceTest, CompareOnlyAnswersActionsAndGenerationWithoutAPlan) {
  const uint64_t generation = MustApply(kShop).generation();
  const std::string before = Kernel();
  auto compare = [this](const std::string& yaml) {
    v1::ApplyRequest req = ApplyOf(yaml, /*dry_run=*/true);
    req.set_compare_only(true);
    return service_->Apply(req, kTimeout);
  };
  absl::StatusOr<v1::ApplyResponse> same = compare(kShop);
  ASSERT_TRUE(same.ok()) << same.status();
  ASSERT_GT(same->results_size(), 0);
  for (const v1::ObjectResult& r : same->results()) {
    EXPECT_EQ(r.action(), v1::UNCHANGED) << KubectlName(r.ref());
  }
  EXPECT_EQ(same->generation(), generation);
  EXPECT_FALSE(same->has_plan());

  const std::string more = std::string(kShop) + R"(---
apiVersion: v1
kind: Pod
metadata: {name: client-2, namespace: shop, labels: {app: client}}
spec: {nodeName: node-1}
status: {podIP: 10.1.0.12}
)";
  absl::StatusOr<v1::ApplyResponse> changed = compare(more);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_THAT(Words(changed->results()), Contains("pod/client-2 CREATED"));
  EXPECT_EQ(changed->generation(), generation);
  EXPECT_FALSE(changed->has_plan()) << changed->plan().nft_changes();
  // The full dry run of the same objects compiles them and has a plan.
  EXPECT_THAT(MustApply(more, /*dry_run=*/true).plan().nft_changes(),
              HasSubstr("10.1.0.12 . tcp . 8080"));
  EXPECT_EQ(store_->Current().generation, generation);
  EXPECT_EQ(Kernel(), before);

  absl::StatusOr<v1::ApplyResponse> bad = compare(WidePolicy(32));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("networkpolicy default/wide: spec: needs 50176 set elements"));
  v1::ApplyRequest not_dry = ApplyOf(kShop);
  not_dry.set_compare_only(true);
  absl::StatusOr<v1::ApplyResponse> refused = service_->Apply(not_dry, kTimeout);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("compare_only: needs dry_run"));
  EXPECT_EQ(store_->Current().generation, generation);
}

TEST_F(ServiceTest, DeleteCascadesAndMissingIsNotFound) {
  MustApply(kShop);
  v1::DeleteRequest req;
  req.add_refs()->set_kind(v1::NAMESPACE);
  req.mutable_refs(0)->set_name("nope");
  EXPECT_EQ(service_->Delete(req, kTimeout).status().code(), absl::StatusCode::kNotFound);
  req.mutable_refs(0)->set_name("shop");
  auto r = service_->Delete(req, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Words(r->results()), ElementsAre("namespace/shop DELETED"));
  EXPECT_TRUE(store_->Current().state->pods.empty());
  EXPECT_THAT(Kernel(), ::testing::Not(HasSubstr("10.1.0.10")));
}

TEST_F(ServiceTest, GetListCheckExplainStatus) {
  MustApply(kShop);
  v1::GetRequest get;
  get.mutable_ref()->set_kind(v1::POD);
  get.mutable_ref()->set_namespace_("shop");
  get.mutable_ref()->set_name("web");
  auto got = service_->Get(get);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->object().pod().status().pod_ip(), "10.1.0.10");
  get.mutable_ref()->set_name("nobody");
  EXPECT_EQ(service_->Get(get).status().message(), "pod shop/nobody: not found");

  v1::ListRequest list;
  list.set_kind(v1::NETWORK_POLICY);
  auto listed = service_->List(list);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->objects_size(), 1);
  list.set_namespace_("elsewhere");
  EXPECT_EQ(service_->List(list)->objects_size(), 0);
  EXPECT_EQ(service_->List(v1::ListRequest()).status().code(), absl::StatusCode::kInvalidArgument);

  v1::CheckRequest check;
  check.mutable_source()->set_pod("shop/client");
  check.mutable_destination()->set_pod("shop/web");
  check.set_port(8080);
  auto c = service_->Check(check);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->verdict(), v1::ALLOWED);
  check.mutable_source()->set_address("192.0.2.1");
  EXPECT_EQ(service_->Check(check)->verdict(), v1::DENIED);
  check.mutable_source()->set_node(true);
  EXPECT_EQ(service_->Check(check)->verdict(), v1::ALLOWED);
  check.mutable_source()->set_address("not-an-ip");
  EXPECT_THAT(std::string(service_->Check(check).status().message()), HasSubstr("source.address"));
  // An IPv4-mapped IPv6 address is refused, as Kubernetes refuses it in pod IPs and ipBlocks.
  check.mutable_source()->set_address("::ffff:192.0.2.1");
  auto mapped = service_->Check(check);
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mapped.status().message(),
            "source.address: \"::ffff:192.0.2.1\": must not be an IPv4-mapped IPv6 address "
            "(write 192.0.2.1)");
  check.mutable_source()->set_pod("shop/client");
  // A protocol value the API does not define is refused, not taken as TCP.
  check.set_protocol(static_cast<v1::Protocol>(7));
  auto unknown = service_->Check(check);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.status().message(), "protocol: 7: must be TCP, UDP or SCTP");
  check.set_protocol(v1::UDP);
  EXPECT_TRUE(service_->Check(check).ok());
  check.set_port(0);
  EXPECT_EQ(service_->Check(check).status().code(), absl::StatusCode::kInvalidArgument);

  v1::ExplainPodRequest explain;
  explain.set_pod("shop/web");
  auto e = service_->ExplainPod(explain);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->local());
  EXPECT_THAT(e->ingress_policies(), ElementsAre("shop/web-ingress"));
  ASSERT_FALSE(e->chains().empty());
  EXPECT_THAT(e->nft_text(), HasSubstr("chain " + e->chains(0)));
  explain.set_pod("shop/other");
  auto other = service_->ExplainPod(explain);
  EXPECT_FALSE(other->local());
  EXPECT_TRUE(other->chains().empty());

  v1::StatusResponse s = service_->Status();
  EXPECT_TRUE(s.serving());
  EXPECT_EQ(s.node_name(), "node-1");
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_EQ(s.applied_generation(), 1u);
  EXPECT_EQ(s.objects().local_pods(), 2);
  EXPECT_EQ(s.objects().network_policies(), 1);
  EXPECT_GT(s.program().chains(), 0);
  EXPECT_TRUE(s.has_last_sync_time());

  v1::RenderRequest render;
  auto committed = service_->Render(render);
  ASSERT_TRUE(committed.ok());
  render.set_source(v1::RenderRequest::KERNEL);
  auto kernel = service_->Render(render);
  ASSERT_TRUE(kernel.ok());
  EXPECT_EQ(committed->nft_text(), kernel->nft_text());

  v1::WaitForGenerationRequest wait;
  wait.set_generation(1);
  EXPECT_TRUE(service_->WaitForGeneration(wait, kTimeout).ok());
  // Beyond the store with no write in progress: it may never come, answered at once.
  wait.set_generation(7);
  auto beyond = service_->WaitForGeneration(wait, kTimeout);
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kOutOfRange) << beyond.status();
  EXPECT_THAT(std::string(beyond.status().message()),
              HasSubstr("beyond the store's newest generation"));
}

TEST_F(ServiceTest, KernelFailureIsReportedToTheWriter) {
  MustApply(kShop);
  fake_.FailCommit(1, absl::FailedPreconditionError("kernel lacks pipapo"));
  fake_.FailCommit(2, absl::FailedPreconditionError("kernel lacks pipapo"));
  v1::ApplyRequest req;
  // A new local client changes the kernel (an element of web's peer set).
  req.add_manifests()->set_text(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: c2, namespace: shop, labels: {app: client}}\n"
      "spec: {nodeName: node-1}\nstatus: {podIP: 10.1.0.12}\n");
  auto r = service_->Apply(req, kTimeout);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(service_->Status().last_error(), HasSubstr("pipapo"));
  EXPECT_THAT(Kernel(), ::testing::Not(HasSubstr("10.1.0.12")));
  // The worker retries with a full sync; the next write succeeds and carries both.
  req.mutable_manifests(0)->set_text(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: c3, namespace: shop, labels: {app: client}}\n"
      "spec: {nodeName: node-1}\nstatus: {podIP: 10.1.0.13}\n");
  ASSERT_TRUE(service_->Apply(req, kTimeout).ok());
  EXPECT_THAT(Kernel(), HasSubstr("10.1.0.12"));
  EXPECT_THAT(Kernel(), HasSubstr("10.1.0.13"));
}

TEST_F(ServiceTest, RequestsBeyondTheLimitsAreRefusedWithAClearError) {
  // Too many manifests: refused before any is parsed.
  v1::ApplyRequest many;
  for (int i = 0; i <= kMaxObjectsPerRequest; ++i) many.add_manifests();
  auto r = service_->Apply(many, kTimeout);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("at most 100000 per request"));
  // Too many objects in YAML: refused while loading, nothing stored.
  std::string yaml;
  for (int i = 0; i <= kMaxObjectsPerRequest; ++i) {
    absl::StrAppend(&yaml, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n", i, "}\n");
  }
  v1::ApplyRequest big;
  big.add_manifests()->set_text(yaml);
  big.mutable_manifests(0)->set_source("big.yaml");
  r = service_->Apply(big, kTimeout);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("big.yaml"));
  EXPECT_EQ(store_->Current().generation, 0u);
  // A label value beyond Kubernetes' 63 characters: INVALID_ARGUMENT naming the field.
  v1::ApplyRequest label;
  label.add_manifests()->set_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {k: " +
                                  std::string(64, 'v') + "}}\n");
  r = service_->Apply(label, kTimeout);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("metadata.labels"));
  // A selector value beyond it too.
  v1::ApplyRequest sel;
  sel.add_manifests()->set_text(
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
      "default}\nspec:\n  podSelector: {matchLabels: {app: " + std::string(64, 'x') + "}}\n");
  r = service_->Apply(sel, kTimeout);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("spec.podSelector.matchLabels"));
}

// One policy may need at most 50,000 set elements (RULESET.md "Large rules"): 49 rules of 32
// ipBlocks x 32 ports (1,024 elements each, not yet a large rule) are 50,176, refused with
// INVALID_ARGUMENT naming the policy; nothing is stored, and the same rules with one more port
// each (large rules: 64 elements each) are accepted.
TEST_F(ServiceTest, APolicyBeyondTheElementBoundIsRefusedAndNothingStored) {
  auto r = service_->Apply(ApplyOf(WidePolicy(32)), kTimeout);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("networkpolicy default/wide: spec: needs 50176 set elements, more than "
                        "the 50000 one policy may use"));
  EXPECT_EQ(store_->Current().generation, 0u);
  r = service_->Apply(ApplyOf(WidePolicy(33)), kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(store_->Current().generation, 1u);
}

// Objects given as messages are bounded by the request's limits (16 MiB, 100,000 objects),
// not by a manifest's 8 MiB: their JSON rendering is larger than the request.
TEST_F(ServiceTest, ObjectsAsMessagesAreBoundByTheRequestLimitsOnly) {
  // 3,000 pods of 40 long labels: about 10 MB as messages, more than 8 MiB as JSON.
  constexpr int kPods = 3000;
  v1::ApplyRequest req;
  for (int i = 0; i < kPods; ++i) {
    v1::Pod* pod = req.add_objects()->mutable_pod();
    pod->mutable_metadata()->set_name(absl::StrCat("pod-", i));
    pod->mutable_metadata()->set_namespace_("default");
    for (int l = 0; l < 40; ++l) {
      (*pod->mutable_metadata()->mutable_labels())[absl::StrCat("label-", l)] =
          std::string(63, 'v');
    }
    pod->mutable_spec()->set_node_name("node-2");
    pod->mutable_status()->set_pod_ip(absl::StrCat("10.64.", i / 256, ".", i % 256));
  }
  ASSERT_LT(req.ByteSizeLong(), static_cast<size_t>(kMaxRequestBytes));
  std::vector<const v1::Object*> ptrs;
  for (const v1::Object& o : req.objects()) ptrs.push_back(&o);
  ASSERT_GT(ApiObjectsToJson(ptrs)->size(), kMaxLoadBytes);
  auto applied = service_->Apply(req, kTimeout);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->results_size(), kPods);
  EXPECT_EQ(store_->Current().state->pods.size(), static_cast<size_t>(kPods));

  // Beyond 100,000 objects: RESOURCE_EXHAUSTED naming the count, nothing stored.
  const uint64_t before = store_->Current().generation;
  v1::ApplyRequest many;
  for (int i = 0; i <= kMaxObjectsPerRequest; ++i) {
    many.add_objects()->mutable_namespace_()->mutable_metadata()->set_name(absl::StrCat("n", i));
  }
  auto r = service_->Apply(many, kTimeout);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("request holds 100001 objects"));
  // A manifest beyond 8 MiB: RESOURCE_EXHAUSTED too, naming it.
  v1::ApplyRequest big;
  big.add_manifests()->set_text(std::string(kMaxLoadBytes + 1, '#'));
  big.mutable_manifests(0)->set_source("big.yaml");
  r = service_->Apply(big, kTimeout);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("big.yaml: input is 8388609 bytes, more than the limit of 8388608 (8 MiB)"));
  EXPECT_EQ(store_->Current().generation, before);
}

TEST_F(ServiceTest, DryRunsPassAGateOfTheirOwn) {
  service_->set_max_pending(1);
  auto held = service_->dry_run_gate().Enter();
  ASSERT_TRUE(held.ok());
  auto dry = service_->Apply(ApplyOf(kShop, /*dry_run=*/true), kTimeout);
  ASSERT_EQ(dry.status().code(), absl::StatusCode::kResourceExhausted) << dry.status();
  EXPECT_THAT(std::string(dry.status().message()), HasSubstr("dry runs"));
  v1::DeleteRequest del;
  del.set_dry_run(true);
  v1::ObjectRef* ref = del.add_refs();
  ref->set_kind(v1::NAMESPACE);
  ref->set_name("shop");
  EXPECT_EQ(service_->Delete(del, kTimeout).status().code(), absl::StatusCode::kResourceExhausted);
  // Writes have their own gate: dry runs never crowd them out.
  EXPECT_TRUE(service_->Apply(ApplyOf(kShop), kTimeout).ok());
  *held = AdmissionGate::Slot();
  EXPECT_TRUE(service_->Apply(ApplyOf(kShop, /*dry_run=*/true), kTimeout).ok());
  EXPECT_EQ(service_->dry_run_gate().refused(), 2);
}

TEST_F(ServiceTest, LargeListsWaitForTheirTurnAndSmallOnesDoNot) {
  v1::ApplyRequest req;
  for (size_t i = 0; i <= kLargeReadObjects; ++i) {
    v1::Pod* pod = req.add_objects()->mutable_pod();
    pod->mutable_metadata()->set_name(absl::StrCat("pod-", i));
    pod->mutable_metadata()->set_namespace_("bulk");
  }
  v1::Pod* other = req.add_objects()->mutable_pod();
  other->mutable_metadata()->set_name("one");
  other->mutable_metadata()->set_namespace_("small");
  ASSERT_TRUE(service_->Apply(req, kTimeout).ok());
  const int64_t trims = service_->trimmer().trims();

  // Every turn taken: a large List waits until its deadline, then says why.
  std::vector<TurnGate::Turn> turns(kMaxLargeReads);
  for (TurnGate::Turn& t : turns) {
    ASSERT_TRUE(service_->large_read_gate().Wait(absl::InfiniteFuture(), &t));
  }
  v1::ListRequest all;
  all.set_kind(v1::POD);
  auto waited = service_->List(all, absl::Now());
  ASSERT_EQ(waited.status().code(), absl::StatusCode::kResourceExhausted) << waited.status();
  EXPECT_THAT(std::string(waited.status().message()), HasSubstr("list one namespace at a time"));
  // A namespace's objects are counted alone: a small List is answered at once.
  v1::ListRequest small = all;
  small.set_namespace_("small");
  auto answered = service_->List(small, absl::Now());
  ASSERT_TRUE(answered.ok()) << answered.status();
  ASSERT_EQ(answered->objects_size(), 1);
  EXPECT_EQ(answered->objects(0).pod().metadata().name(), "one");
  // A turn freed: the large List is answered, whole, and memory is trimmed after it.
  turns.pop_back();
  auto listed = service_->List(all, absl::Now() + kTimeout);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->objects_size(), static_cast<int>(kLargeReadObjects) + 2);
  v1::ListRequest bulk = all;
  bulk.set_namespace_("bulk");
  EXPECT_EQ(service_->List(bulk, absl::Now() + kTimeout)->objects_size(),
            static_cast<int>(kLargeReadObjects) + 1);
  EXPECT_EQ(service_->large_read_gate().in_flight(), kMaxLargeReads - 1);
  for (int i = 0; i < 20000 && service_->trimmer().trims() == trims; ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_GT(service_->trimmer().trims(), trims);
}

// A backend whose commits wait until the test opens it: stands for a kernel that is slow to
// commit while writers pile up.
class HeldBackend : public nft::Backend {
 public:
  absl::Status Commit(const nft::Transaction& tx) override {
    absl::MutexLock l(&mu_);
    ++waiting_;
    mu_.Await(absl::Condition(&open_));
    --waiting_;
    return fake_.Commit(tx);
  }
  absl::StatusOr<nft::Program> Dump(const std::string& table) override {
    return fake_.Dump(table);
  }
  // Serialized with the commit's change of the fake kernel, never waiting for a held commit.
  absl::StatusOr<std::vector<nft::RuleCount>> ReadCounters(const std::string& table) override {
    absl::MutexLock l(&mu_);
    return fake_.ReadCounters(table);
  }
  absl::Status AddPackets(const std::string& chain, size_t index, uint64_t packets,
                          uint64_t bytes) {
    absl::MutexLock l(&mu_);
    return fake_.AddPackets("netpol", chain, index, packets, bytes);
  }
  void Hold() {
    absl::MutexLock l(&mu_);
    open_ = false;
  }
  void Release() {
    absl::MutexLock l(&mu_);
    open_ = true;
  }
  bool CommitWaiting() {
    absl::MutexLock l(&mu_);
    return waiting_ > 0;
  }
  std::string Render() {
    auto t = fake_.Render("netpol");
    return t.ok() ? *t : std::string(t.status().message());
  }

 private:
  nft::FakeBackend fake_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

std::string PortPolicy(const std::string& name, int port) {
  return absl::StrCat(
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ", name,
      ", namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n"
      "  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: ",
      port, "}]\n");
}

// A service and reconciler on a fresh store over a HeldBackend, synced, started and holding
// kShop. Start asserts: call it through ASSERT_NO_FATAL_FAILURE.
struct HeldAgent {
  struct Options {
    int max_pending = 0;  // AgentService::set_max_pending when > 0
    // Rule counters on, read through the same fake kernel: the agent gives counter reads a
    // netlink socket of their own, here reads that do not wait for a held commit.
    bool counters = false;
    // Syncs through the store's change log, as the agent's: the compiler alone holds the
    // committed program while it updates it (a sync without one moves it out first, readers
    // keep it).
    bool change_log = false;
  };

  void Start(const Options& options) {
    dir = fixtures::MakeTempDir("netpol-held-agent-test-");
    ASSERT_FALSE(dir.empty());
    auto opened = Store::Open(dir);
    ASSERT_TRUE(opened.ok()) << opened.status();
    store = *std::move(opened);
    ReconcilerOptions o;
    o.compile.node_name = "node-1";
    o.debounce = absl::ZeroDuration();
    o.check_interval = absl::ZeroDuration();
    if (options.counters) {
      o.compile.rule_counters = true;
      o.counter_backend = &backend;
    }
    Store* s = store.get();
    if (options.change_log) {
      o.changes = [s](uint64_t from, uint64_t to) { return s->ChangesBetween(from, to); };
    }
    reconciler = std::make_unique<Reconciler>(&backend, [s] { return s->Current(); }, o);
    service = std::make_unique<AgentService>(s, reconciler.get());
    if (options.max_pending > 0) service->set_max_pending(options.max_pending);
    ASSERT_TRUE(reconciler->SyncNow().ok());
    reconciler->Start();
    ASSERT_TRUE(service->Apply(ApplyOf(kShop), kTimeout).ok());
  }

  ~HeldAgent() {
    if (reconciler != nullptr) reconciler->Stop();
    if (!dir.empty()) fixtures::RemoveTree(dir);
  }

  std::string dir;
  std::unique_ptr<Store> store;
  HeldBackend backend;
  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<AgentService> service;
};



// The write path as the agent wires it for the embedded store (Store::SyncHooks to
// Reconciler::Offer/Withdraw): a write is committed to the kernel while its journal record is
// fsynced; when that fsync fails, the kernel gets the previous program back before the writer
// hears the error, and nothing of the write stays (store, reads, kernel).
TEST(StoreSyncHooksTest, AFailedFsyncTakesTheWriteBackFromTheKernelAndFailsIt) {
  const std::string dir = fixtures::MakeTempDir("netpol-service-fsync-");
  ASSERT_FALSE(dir.empty());
  nft::FakeBackend fake;
  auto render = [&fake] {
    auto t = fake.Render("netpol");
    return t.ok() ? *t : std::string(t.status().message());
  };
  std::unique_ptr<Store> store;
  std::unique_ptr<Reconciler> reconciler;
  std::atomic<bool> fail_next{false};
  std::string during_fsync;  // the kernel while the failing fsync ran
  Store::Options so;
  so.fdatasync = [&](int fd) {
    if (!fail_next.exchange(false)) return ::fdatasync(fd);
    // The write is in the kernel before its record is durable.
    EXPECT_TRUE(reconciler->WaitFor(store->Current().generation + 1, kTimeout).ok());
    during_fsync = render();
    errno = EIO;
    return -1;
  };
  auto opened = Store::Open(dir, so);
  ASSERT_TRUE(opened.ok()) << opened.status();
  store = *std::move(opened);
  ReconcilerOptions o;
  o.compile.node_name = "node-1";
  o.check_interval = absl::ZeroDuration();
  Store* s = store.get();
  o.changes = [s](uint64_t from, uint64_t to) { return s->ChangesBetween(from, to); };
  reconciler = std::make_unique<Reconciler>(&fake, [s] { return s->Current(); }, o);
  Store::SyncHooks hooks;
  hooks.written = [&reconciler](const Snapshot& next, const ChangedKeys& keys) {
    reconciler->Offer(next, keys);
  };
  hooks.failed = [&reconciler](uint64_t generation) {
    EXPECT_TRUE(reconciler->Withdraw(generation).ok());
  };
  store->set_sync_hooks(hooks);
  AgentService service(store.get(), reconciler.get());
  ASSERT_TRUE(reconciler->SyncNow().ok());
  reconciler->Start();

  ASSERT_TRUE(service.Apply(ApplyOf(kShop), kTimeout).ok());
  const std::string before = render();
  const uint64_t generation = store->Current().generation;
  constexpr char kClient2[] = R"(apiVersion: v1
kind: Pod
metadata: {name: client-2, namespace: shop, labels: {app: client}}
spec: {nodeName: node-2}
status: {podIP: 10.2.0.12}
)";
  fail_next = true;
  absl::StatusOr<v1::ApplyResponse> failed = service.Apply(ApplyOf(kClient2), kTimeout);
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("fsync"));
  EXPECT_THAT(during_fsync, HasSubstr("10.2.0.12"));
  EXPECT_EQ(render(), before) << "the kernel must hold the previous program again";
  EXPECT_EQ(store->Current().generation, generation);
  EXPECT_EQ(store->Current().state->pods.count("shop/client-2"), 0u);
  EXPECT_EQ(reconciler->status().applied_generation, generation);

  // The next write is the same generation number again, and is waited for properly.
  absl::StatusOr<v1::ApplyResponse> stored = service.Apply(ApplyOf(kClient2), kTimeout);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->generation(), generation + 1);
  EXPECT_EQ(reconciler->status().applied_generation, generation + 1);
  EXPECT_THAT(render(), HasSubstr("10.2.0.12"));
  // Offers are synced through the change log (their own keys), not compiled whole.
  EXPECT_GT(reconciler->status().change_log_syncs, 0);
  reconciler->Stop();
  fixtures::RemoveTree(dir);
}

TEST(AdmissionTest, WritesBeyondTheLimitAreRefusedAtOnceAndChangeNothingWhileReadsAreServed) {
  HeldAgent agent;
  HeldAgent::Options options;
  options.max_pending = 2;
  ASSERT_NO_FATAL_FAILURE(agent.Start(options));
  Store* store = agent.store.get();
  HeldBackend& backend = agent.backend;
  AgentService& service = *agent.service;
  const uint64_t base = store->Current().generation;

  // The kernel stalls; two writers are admitted and wait for their commit.
  backend.Hold();
  std::vector<absl::Status> done(2);
  std::vector<std::thread> writers;
  for (int i = 0; i < 2; ++i) {
    writers.emplace_back([&, i] {
      done[i] = service.Apply(ApplyOf(PortPolicy(absl::StrCat("admitted-", i), 8100 + i)),
                              kTimeout)
                    .status();
    });
  }
  for (int i = 0; i < 20000 && !(service.write_gate().in_flight() == 2 &&
                                 store->Current().generation == base + 2 &&
                                 backend.CommitWaiting());
       ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(service.write_gate().in_flight(), 2);
  ASSERT_EQ(store->Current().generation, base + 2);

  // A third write is refused at once, says what to do, and changes nothing.
  auto refused = service.Apply(ApplyOf(PortPolicy("refused", 8200)), kTimeout);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("retry with backoff"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("--max-pending-writes"));
  v1::DeleteRequest del;
  v1::ObjectRef* ref = del.add_refs();
  ref->set_kind(v1::NETWORK_POLICY);
  ref->set_namespace_("shop");
  ref->set_name("web-ingress");
  EXPECT_EQ(service.Delete(del, kTimeout).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store->Current().generation, base + 2);
  EXPECT_EQ(service.write_gate().refused(), 2);

  // Reads that need no kernel are served meanwhile, and so is a dry run.
  v1::CheckRequest check;
  check.mutable_source()->set_pod("shop/client");
  check.mutable_destination()->set_pod("shop/web");
  check.set_port(8080);
  check.set_protocol(v1::TCP);
  auto checked = service.Check(check);
  ASSERT_TRUE(checked.ok()) << checked.status();
  EXPECT_EQ(checked->verdict(), v1::ALLOWED);
  v1::GetRequest get;
  *get.mutable_ref() = *ref;
  EXPECT_TRUE(service.Get(get).ok());
  v1::ListRequest list;
  list.set_kind(v1::NETWORK_POLICY);
  auto listed = service.List(list);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->objects_size(), 3);  // web-ingress and the two admitted
  EXPECT_EQ(service.Status().generation(), base + 2);
  v1::ApplyRequest dry = ApplyOf(PortPolicy("dry", 8300));
  dry.set_dry_run(true);
  EXPECT_TRUE(service.Apply(dry, kTimeout).ok());

  // The kernel catches up: both admitted writes are acknowledged and enforced, the refused one
  // is nowhere, and the gate admits again.
  backend.Release();
  for (std::thread& t : writers) t.join();
  EXPECT_TRUE(done[0].ok()) << done[0];
  EXPECT_TRUE(done[1].ok()) << done[1];
  EXPECT_EQ(service.write_gate().in_flight(), 0);
  const std::string kernel = backend.Render();
  EXPECT_THAT(kernel, HasSubstr("tcp . 8100"));
  EXPECT_THAT(kernel, HasSubstr("tcp . 8101"));
  EXPECT_THAT(kernel, ::testing::Not(HasSubstr("8200")));
  EXPECT_THAT(kernel, ::testing::Not(HasSubstr("8300")));
  get.mutable_ref()->set_name("refused");
  EXPECT_EQ(service.Get(get).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(service.Apply(ApplyOf(PortPolicy("later", 8400)), kTimeout).ok());
  EXPECT_THAT(backend.Render(), HasSubstr("tcp . 8400"));
}

TEST_F(ServiceTest, ConcurrentWritersAreEachAcknowledgedAndABadOneFailsAlone) {
  MustApply(kShop);
  constexpr int kWriters = 24;
  std::vector<absl::StatusOr<v1::ApplyResponse>> got(kWriters);
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      // Writer 7 sends a port out of range: only it fails.
      got[i] = service_->Apply(
          ApplyOf(PortPolicy(absl::StrCat("w", i), i == 7 ? 70000 : 9000 + i)), kTimeout);
    });
  }
  for (std::thread& t : writers) t.join();
  const uint64_t generation = store_->Current().generation;
  for (int i = 0; i < kWriters; ++i) {
    if (i == 7) {
      EXPECT_EQ(got[i].status().code(), absl::StatusCode::kInvalidArgument) << got[i].status();
      EXPECT_THAT(std::string(got[i].status().message()), HasSubstr("networkpolicy shop/w7"));
      continue;
    }
    ASSERT_TRUE(got[i].ok()) << i << ": " << got[i].status();
    EXPECT_EQ(got[i]->results(0).action(), v1::CREATED);
    // Acknowledged means in the kernel: its generation is applied.
    EXPECT_LE(got[i]->generation(), reconciler_->status().applied_generation);
    EXPECT_THAT(Kernel(), HasSubstr(absl::StrCat("tcp . ", 9000 + i)));
  }
  // Concurrent writes may share a generation (group commit), never more than one each.
  EXPECT_LE(generation, 1u + kWriters - 1);
  v1::ListRequest list;
  list.set_kind(v1::NETWORK_POLICY);
  auto listed = service_->List(list);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->objects_size(), 1 + kWriters - 1);
}

TEST_F(ServiceTest, StatusReportsTheEmbeddedDatastoreAndItsJournal) {
  v1::DatastoreStatus d = service_->Status().datastore();
  EXPECT_EQ(d.kind(), v1::EMBEDDED);
  EXPECT_TRUE(d.healthy());
  EXPECT_EQ(d.last_write_error(), "");
  ASSERT_TRUE(d.has_embedded());
  EXPECT_EQ(d.embedded().directory(), dir_);
  EXPECT_EQ(d.embedded().journal_records(), 0u);
  EXPECT_TRUE(d.embedded().has_last_compaction_time());  // the snapshot Open wrote
  EXPECT_EQ(d.embedded().compactions(), 0u);
  const uint64_t empty_journal = d.embedded().journal_bytes();
  EXPECT_GT(empty_journal, 0u);  // the header line

  MustApply(kShop);
  d = service_->Status().datastore();
  EXPECT_EQ(d.embedded().journal_records(), 1u);
  EXPECT_GT(d.embedded().journal_bytes(), empty_journal);
  MustApply(kShop);  // unchanged: nothing written
  EXPECT_EQ(service_->Status().datastore().embedded().journal_records(), 1u);
  // A request refused as invalid is not a failed write.
  const std::string broken =
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
      "metadata: {name: broken, namespace: shop}\n"
      "spec: {podSelector: {matchExpressions: [{key: a, operator: In}]}}\n";
  EXPECT_EQ(service_->Apply(ApplyOf(broken), kTimeout).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::DeleteRequest missing;
  missing.add_refs()->set_kind(v1::POD);
  missing.mutable_refs(0)->set_namespace_("shop");
  missing.mutable_refs(0)->set_name("nobody");
  EXPECT_EQ(service_->Delete(missing, kTimeout).status().code(), absl::StatusCode::kNotFound);
  d = service_->Status().datastore();
  EXPECT_TRUE(d.healthy());
  EXPECT_EQ(d.last_write_error(), "");
  MustApply("apiVersion: v1\nkind: Namespace\nmetadata: {name: more}\n");
  EXPECT_EQ(service_->Status().datastore().embedded().journal_records(), 2u);
}

TEST_F(ServiceTest, StatusReportsAFailedWriteUntilAWriteSucceeds) {
  MustApply(kShop);
  const v1::DatastoreStatus before = service_->Status().datastore();
  // A file size limit just past the journal's end cuts the next record short (EFBIG).
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = before.embedded().journal_bytes() + 30;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  auto failed = service_->Apply(
      ApplyOf("apiVersion: v1\nkind: Namespace\nmetadata: {name: later}\n"), kTimeout);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  ASSERT_FALSE(failed.ok());
  v1::StatusResponse s = service_->Status();
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_FALSE(s.datastore().healthy());
  EXPECT_THAT(s.datastore().last_write_error(), HasSubstr(dir_ + "/state.journal"));
  EXPECT_THAT(s.datastore().last_write_error(), HasSubstr(failed.status().message()));
  EXPECT_EQ(s.datastore().embedded().journal_records(), 1u);
  EXPECT_EQ(s.datastore().embedded().journal_bytes(), before.embedded().journal_bytes());

  ASSERT_TRUE(service_->Apply(
                      ApplyOf("apiVersion: v1\nkind: Namespace\nmetadata: {name: later}\n"),
                      kTimeout)
                  .ok());
  s = service_->Status();
  EXPECT_EQ(s.generation(), 2u);
  EXPECT_TRUE(s.datastore().healthy());
  EXPECT_EQ(s.datastore().last_write_error(), "");
  EXPECT_EQ(s.datastore().embedded().journal_records(), 2u);
}

TEST(AdmissionTest, ReadOnlyWaitersCannotStarveTheKernelReadsOfOthers) {
  HeldAgent agent;
  HeldAgent::Options options;
  options.max_pending = 2;
  ASSERT_NO_FATAL_FAILURE(agent.Start(options));
  Store* store = agent.store.get();
  HeldBackend& backend = agent.backend;
  AgentService& service = *agent.service;
  const uint64_t base = store->Current().generation;

  // A generation nothing will store is answered at once, whatever the timeout and the caller,
  // and holds no slot.
  v1::WaitForGenerationRequest forever;
  forever.set_generation(UINT64_MAX);
  forever.mutable_timeout()->set_seconds(3600);
  for (Caller caller : {Caller::kReadOnly, Caller::kTrusted}) {
    for (int i = 0; i < 3; ++i) {
      auto r = service.WaitForGeneration(forever, absl::Hours(1), caller);
      ASSERT_EQ(r.status().code(), absl::StatusCode::kOutOfRange) << r.status();
      EXPECT_THAT(std::string(r.status().message()), HasSubstr("may never come"));
    }
  }
  EXPECT_EQ(service.kernel_read_gate(Caller::kReadOnly).in_flight(), 0);
  EXPECT_EQ(service.kernel_read_gate(Caller::kReadOnly).refused(), 0);

  // The kernel stalls with one write admitted: its generation (base + 1, stored) and one more
  // may still come, so waiting for them is allowed; base + 3 is not.
  backend.Hold();
  absl::Status written;
  std::thread writer([&] {
    written = service.Apply(ApplyOf(PortPolicy("admitted", 8100)), kTimeout).status();
  });
  for (int i = 0; i < 20000 && !(store->Current().generation == base + 1 &&
                                 backend.CommitWaiting());
       ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(store->Current().generation, base + 1);
  v1::WaitForGenerationRequest next;
  next.set_generation(base + 3);
  EXPECT_EQ(service.WaitForGeneration(next, kTimeout, Caller::kReadOnly).status().code(),
            absl::StatusCode::kOutOfRange);

  // Read-only callers fill their kernel-read gate with waits that do block.
  std::vector<absl::Status> waited(2);
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] {
      v1::WaitForGenerationRequest w;
      w.set_generation(base + 1);
      waited[i] = service.WaitForGeneration(w, kTimeout, Caller::kReadOnly).status();
    });
  }
  for (int i = 0; i < 20000 && service.kernel_read_gate(Caller::kReadOnly).in_flight() < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(service.kernel_read_gate(Caller::kReadOnly).in_flight(), 2);
  // A third read-only kernel read is refused at once...
  v1::RenderRequest kernel;
  kernel.set_source(v1::RenderRequest::KERNEL);
  EXPECT_EQ(service.Render(kernel, Caller::kReadOnly).status().code(),
            absl::StatusCode::kResourceExhausted);
  // ...while trusted callers (netpolctl, the CNI plugin) still get in.
  v1::WaitForGenerationRequest done;
  done.set_generation(base);
  EXPECT_TRUE(service.WaitForGeneration(done, kTimeout, Caller::kTrusted).ok());
  {
    auto slot = service.kernel_read_gate(Caller::kTrusted).Enter();
    EXPECT_TRUE(slot.ok()) << slot.status();
    auto cni = service.attach_gate().Enter();
    EXPECT_TRUE(cni.ok()) << cni.status();
  }

  backend.Release();
  writer.join();
  for (std::thread& t : waiters) t.join();
  EXPECT_TRUE(written.ok()) << written;
  EXPECT_TRUE(waited[0].ok()) << waited[0];
  EXPECT_TRUE(waited[1].ok()) << waited[1];
  auto rendered = service.Render(kernel, Caller::kTrusted);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_THAT(rendered->nft_text(), HasSubstr("8100"));
}

TEST(AdmissionTest, GateHoldsAtMostItsLimitAndReleasesSlotsWhenTheyEnd) {
  AdmissionGate gate("reads of the kernel", "--max-pending-writes", 1);
  auto first = gate.Enter();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(gate.Enter().status().code(), absl::StatusCode::kResourceExhausted);
  {
    AdmissionGate::Slot moved = *std::move(first);
    EXPECT_EQ(gate.in_flight(), 1);
  }
  EXPECT_EQ(gate.in_flight(), 0);
  EXPECT_TRUE(gate.Enter().ok());  // the temporary slot is released at once
  EXPECT_EQ(gate.in_flight(), 0);
  AdmissionGate unbounded("writes", "--max-pending-writes", 0);
  std::vector<AdmissionGate::Slot> held;
  for (int i = 0; i < 1000; ++i) {
    auto s = unbounded.Enter();
    ASSERT_TRUE(s.ok());
    held.push_back(*std::move(s));
  }
  EXPECT_EQ(unbounded.in_flight(), 1000);
  EXPECT_EQ(unbounded.refused(), 0);
  EXPECT_EQ(gate.refused(), 1);
}

}  // namespace
}  // namespace netpol::agent

namespace netpol::agent {
namespace {

// A datastore whose objects belong to another system (as the Kubernetes API's do).
class OwnedElsewhere : public Datastore {
 public:
  explicit OwnedElsewhere(Datastore* inner) : inner_(inner) {}
  Snapshot Current() const override { return inner_->Current(); }
  absl::StatusOr<Snapshot> Update(const Mutation& m) override { return inner_->Update(m); }
  absl::Status ObjectWritesAllowed() const override {
    return absl::FailedPreconditionError("objects come from elsewhere; use kubectl");
  }

 private:
  Datastore* inner_;
};

TEST_F(ServiceTest, ReadOnlyDatastoreRefusesWritesButServesReadsAndDryRuns) {
  MustApply(kShop);
  const Snapshot before = store_->Current();
  OwnedElsewhere owned(store_.get());
  AgentService service(&owned, reconciler_.get());
  v1::ApplyRequest apply;
  apply.add_manifests()->set_text(kShop);
  absl::StatusOr<v1::ApplyResponse> a = service.Apply(apply, kTimeout);
  ASSERT_FALSE(a.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(a.status())) << a.status();
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("use kubectl"));
  v1::DeleteRequest del;
  del.add_refs()->set_kind(v1::NAMESPACE);
  del.mutable_refs(0)->set_name("shop");
  absl::StatusOr<v1::DeleteResponse> d = service.Delete(del, kTimeout);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(d.status())) << d.status();
  EXPECT_EQ(store_->Current().generation, before.generation);
  // A dry run (netpolctl diff) compares against the datastore's state and stores nothing.
  apply.set_dry_run(true);
  a = service.Apply(apply, kTimeout);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(store_->Current().generation, before.generation);
  // Reads work.
  v1::GetRequest get;
  get.mutable_ref()->set_kind(v1::NAMESPACE);
  get.mutable_ref()->set_name("shop");
  absl::StatusOr<v1::GetResponse> got = service.Get(get);
  EXPECT_TRUE(got.ok()) << got.status();
}

}  // namespace
}  // namespace netpol::agent

namespace netpol::agent {
namespace {

// What a /metrics scrape reads (Status and Counters) is answered while a sync holds the
// reconciler in a commit that does not return: from the last committed program, not after it.
TEST(CounterReadTest, StatusAndCountersAreServedWhileASyncIsHeldInTheKernel) {
  HeldAgent agent;
  HeldAgent::Options options;
  options.counters = true;
  ASSERT_NO_FATAL_FAILURE(agent.Start(options));
  Store* store = agent.store.get();
  HeldBackend& backend = agent.backend;
  AgentService& service = *agent.service;
  const uint64_t applied = store->Current().generation;
  auto before = service.Counters(v1::CountersRequest());
  ASSERT_TRUE(before.ok()) << before.status();
  const v1::RuleCounter* allow = nullptr;
  for (const v1::RuleCounter& r : before->rules()) {
    if (r.kind() == v1::RuleCounter::ALLOW && allow == nullptr) allow = &r;
  }
  ASSERT_NE(allow, nullptr);
  ASSERT_TRUE(backend.AddPackets(allow->chain(), allow->index(), 4, 240).ok());
  const v1::StatusResponse status_before = service.Status();
  ASSERT_GT(status_before.program().rules(), 0);

  // A write whose commit the kernel holds: the sync keeps the reconciler busy until released.
  backend.Hold();
  absl::Status written;
  std::thread writer([&] {
    written = service.Apply(ApplyOf(PortPolicy("held", 8100)), kTimeout).status();
  });
  while (!backend.CommitWaiting()) absl::SleepFor(absl::Milliseconds(1));

  // Both return during the held sync, about the program the kernel holds.
  auto during = service.Counters(v1::CountersRequest());
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_EQ(during->generation(), applied);
  ASSERT_EQ(during->policies_size(), 1);
  EXPECT_EQ(during->policies(0).policy(), "shop/web-ingress");
  EXPECT_EQ(during->policies(0).allowed_packets(), 4u);
  EXPECT_EQ(during->policies(0).allowed_bytes(), 240u);
  for (const v1::RuleCounter& r : during->rules()) {
    EXPECT_FALSE(r.direction().empty()) << "unattributed: " << r.ShortDebugString();
  }
  const v1::StatusResponse status_during = service.Status();
  EXPECT_EQ(status_during.applied_generation(), applied);
  EXPECT_EQ(status_during.program().ShortDebugString(), status_before.program().ShortDebugString());

  backend.Release();
  writer.join();
  ASSERT_TRUE(written.ok()) << written;
  // After the commit: the new policy's rules are attributed too.
  auto after = service.Counters(v1::CountersRequest());
  ASSERT_TRUE(after.ok()) << after.status();
  std::vector<std::string> policies;
  for (const v1::PolicyCounter& p : after->policies()) policies.push_back(p.policy());
  EXPECT_THAT(policies, ElementsAre("shop/held", "shop/web-ingress"));
  EXPECT_GT(service.Status().program().elements(), status_before.program().elements());
}

}  // namespace
}  // namespace netpol::agent

namespace netpol::agent {
namespace {

// ExplainPod, Render and a dry run answer while a sync holds the reconciler in a commit that does
// not return: from a copy of a committed program (with its generation), without waiting.
TEST(SnapshotReadTest, ExplainRenderAndDryRunAreServedWhileASyncIsHeldInTheKernel) {
  HeldAgent agent;
  HeldAgent::Options options;
  options.counters = true;
  options.change_log = true;
  ASSERT_NO_FATAL_FAILURE(agent.Start(options));
  Store* store = agent.store.get();
  HeldBackend& backend = agent.backend;
  Reconciler& reconciler = *agent.reconciler;
  AgentService& service = *agent.service;
  const uint64_t shop = store->Current().generation;
  v1::ExplainPodRequest explain;
  explain.set_pod("shop/web");

  // Holds the next write's commit; `check` runs while the sync is held, then the write finishes.
  auto while_held = [&](const std::string& name, int port, const std::function<void()>& check) {
    backend.Hold();
    absl::Status written;
    std::thread writer(
        [&] { written = service.Apply(ApplyOf(PortPolicy(name, port)), kTimeout).status(); });
    while (!backend.CommitWaiting()) absl::SleepFor(absl::Milliseconds(1));
    check();
    backend.Release();
    writer.join();
    ASSERT_TRUE(written.ok()) << written;
  };

  // 1. Read since the last commit: the copy made then is the program the kernel holds.
  auto rendered = service.Render(v1::RenderRequest());
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  ASSERT_EQ(rendered->generation(), shop);
  while_held("held-1", 8101, [&] {
    auto r = service.Render(v1::RenderRequest());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->generation(), shop);
    EXPECT_EQ(r->nft_text(), rendered->nft_text());
    auto e = service.ExplainPod(explain);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->program_generation(), shop);
    EXPECT_FALSE(e->chains().empty());
    EXPECT_EQ(e->nft_text().find("held-1"), std::string::npos);
    auto d = service.Apply(ApplyOf(PortPolicy("dry", 8200), /*dry_run=*/true), kTimeout);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->plan().base_generation(), shop);
    EXPECT_NE(d->plan().nft_changes().find("8200"), std::string::npos) << d->plan().nft_changes();
    EXPECT_THAT(d->plan().affected_pods(), ElementsAre("shop/web"));
  });
  const uint64_t held1 = store->Current().generation;
  // The readers asked during the sync: it copied its program when done.
  auto after = service.Render(v1::RenderRequest());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->generation(), held1);
  EXPECT_NE(after->nft_text().find("held-1"), std::string::npos);

  // 2. No reader since the last commit (the compiler alone holds it): the copy of an earlier
  // commit answers, saying which generation it is. (The first write's sync copies its program,
  // asked for by the read above; the second's is not read before the held sync.)
  ASSERT_TRUE(service.Apply(ApplyOf(PortPolicy("unread-1", 8102)), kTimeout).ok());
  const uint64_t unread1 = store->Current().generation;
  ASSERT_TRUE(service.Apply(ApplyOf(PortPolicy("unread-2", 8103)), kTimeout).ok());
  const uint64_t unread2 = store->Current().generation;
  while_held("held-2", 8104, [&] {
    auto r = service.Render(v1::RenderRequest());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->generation(), unread1);
    EXPECT_NE(r->nft_text().find("unread-1"), std::string::npos);
    EXPECT_EQ(r->nft_text().find("unread-2"), std::string::npos);
    auto e = service.ExplainPod(explain);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->program_generation(), unread1);
    auto d = service.Apply(ApplyOf(PortPolicy("dry", 8200), /*dry_run=*/true), kTimeout);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->plan().base_generation(), unread1);
  });
  EXPECT_GT(store->Current().generation, unread2);
  EXPECT_GE(reconciler.status().change_log_syncs, 5);  // every write above went through it
  // Once the sync is done, a reader gets the newest commit again.
  auto last = service.Render(v1::RenderRequest());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->generation(), store->Current().generation);
  EXPECT_NE(last->nft_text().find("held-2"), std::string::npos);
}

}  // namespace
}  // namespace netpol::agent
