// The EndpointService semantics over a real Store and attachments file (temporary directory),
// a running Reconciler and nft::FakeBackend, next to the AgentService that serves API writes.
#include "agent/endpoints.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <atomic>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/durable_file.h"
#include "agent/service.h"
#include "agent/testing/fixtures.h"
#include "engine/nft/fake.h"
#include "engine/nft/transaction.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kTimeout = absl::Seconds(30);

// Namespace shop: default deny for ingress, and web accepts client on 8080. The pods are known
// by labels only (no node, no addresses): what the API knows before the runtime starts them.
constexpr char kShop[] = R"(apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 8080}]
)";

class EndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fixtures::MakeTempDir("netpol-endpoints-test-");
    ASSERT_FALSE(dir_.empty());
    Start();
  }
  void TearDown() override {
    Stop();
    fixtures::RemoveTree(dir_);
  }

  void Start() {
    auto store = Store::Open(dir_, store_options_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto endpoints = Endpoints::Open(dir_);
    ASSERT_TRUE(endpoints.ok()) << endpoints.status();
    endpoints_ = *std::move(endpoints);
    ReconcilerOptions o;
    o.compile.node_name = "node-1";
    o.debounce = absl::ZeroDuration();
    o.check_interval = absl::ZeroDuration();
    Endpoints* e = endpoints_.get();
    o.attached_pods = [e] { return AttachedPods(*e->Current()); };
    Store* s = store_.get();
    reconciler_ = std::make_unique<Reconciler>(&fake_, [s] { return s->Current(); }, o);
    if (sync_hooks_) {  // as the agent wires the embedded store
      Store::SyncHooks hooks;
      Reconciler* r = reconciler_.get();
      hooks.written = [r](const Snapshot& next, const ChangedKeys& keys) { r->Offer(next, keys); };
      hooks.failed = [r](uint64_t generation) { r->Withdraw(generation).IgnoreError(); };
      store_->set_sync_hooks(hooks);
    }
    service_ = std::make_unique<AgentService>(store_.get(), reconciler_.get());
    service_->set_endpoints(endpoints_.get());
    api_ = std::make_unique<EndpointApi>(store_.get(), reconciler_.get(), endpoints_.get());
    ASSERT_TRUE(reconciler_->SyncNow().ok());
    reconciler_->Start();
  }
  void Stop() {
    if (reconciler_) reconciler_->Stop();
    api_.reset();
    service_.reset();
    reconciler_.reset();
    endpoints_.reset();
    store_.reset();
  }

  void Apply(const std::string& yaml) {
    v1::ApplyRequest req;
    req.add_manifests()->set_text(yaml);
    auto r = service_->Apply(req, kTimeout);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  static v1::AttachRequest Req(const std::string& id, const std::string& ns,
                               const std::string& name, std::vector<std::string> ips) {
    v1::AttachRequest r;
    v1::Attachment* a = r.mutable_attachment();
    a->set_container_id(id);
    a->set_netns("/var/run/netns/" + id);
    a->set_interface("eth0");
    a->set_network("pods");
    a->set_pod_namespace(ns);
    a->set_pod_name(name);
    for (const std::string& ip : ips) a->add_ips(ip);
    return r;
  }

  v1::AttachResponse MustAttach(const v1::AttachRequest& req) {
    auto r = api_->Attach(req, kTimeout);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::AttachResponse();
  }

  std::string Kernel() {
    auto t = fake_.Render("netpol");
    return t.ok() ? *t : std::string(t.status().message());
  }

  std::string dir_;
  Store::Options store_options_;
  bool sync_hooks_ = false;
  nft::FakeBackend fake_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Endpoints> endpoints_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<AgentService> service_;
  std::unique_ptr<EndpointApi> api_;
};

TEST_F(EndpointsTest, AttachIsEnforcedWhenItReturns) {
  Apply(kShop);
  EXPECT_THAT(Kernel(), Not(HasSubstr("10.244.1.5")));
  v1::AttachResponse web = MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  EXPECT_TRUE(web.pod_known());
  EXPECT_EQ(reconciler_->status().applied_generation, web.generation());
  // web is local through its attachment (no nodeName) and isolated: dispatched.
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.5 comment \"shop/web\""));
  MustAttach(Req("c-client", "shop", "client", {"10.244.1.6"}));
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.6 . tcp . 8080"));  // client may reach web
  // An unknown pod is enforced with no labels: default deny holds, web's allow does not.
  v1::AttachResponse stranger = MustAttach(Req("c-x", "shop", "stranger", {"10.244.1.7"}));
  EXPECT_FALSE(stranger.pod_known());
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.7 comment \"shop/stranger\""));
  EXPECT_THAT(Kernel(), Not(HasSubstr("10.244.1.7 . tcp . 8080")));
  // Its labels arrive: the allow applies. The API's pod has no addresses; the attachment's stay.
  Apply("apiVersion: v1\nkind: Pod\nmetadata: {name: stranger, namespace: shop, labels: {app: client}}\n");
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.7 . tcp . 8080"));
  auto pod = service_->Get([] {
    v1::GetRequest g;
    g.mutable_ref()->set_kind(v1::POD);
    g.mutable_ref()->set_namespace_("shop");
    g.mutable_ref()->set_name("stranger");
    return g;
  }());
  ASSERT_TRUE(pod.ok());
  EXPECT_EQ(pod->object().pod().status().pod_ips_size(), 1);
  // Status counts attached pods as local.
  EXPECT_EQ(service_->Status().objects().local_pods(), 3);
}

// An attachment change whose journal fsync fails changes nothing, the kernel included: it was
// committed while the record was fsynced (Store::SyncHooks), and taken back before the error.
TEST_F(EndpointsTest, AnAttachWhoseFsyncFailsLeavesTheKernelAsItWas) {
  Stop();
  auto fail = std::make_shared<std::atomic<bool>>(false);
  store_options_.fdatasync = [this, fail](int fd) {
    if (fail->exchange(false)) {
      // The attachment is in the kernel (offered) before its record's fsync fails.
      EXPECT_TRUE(reconciler_->WaitFor(store_->Current().generation + 1, kTimeout).ok());
      EXPECT_THAT(Kernel(), HasSubstr("10.2.0.5 comment \"shop/other\""));
      errno = EIO;
      return -1;
    }
    return ::fdatasync(fd);
  };
  sync_hooks_ = true;
  Start();
  Apply(kShop);
  const std::string before = Kernel();
  const uint64_t generation = store_->Current().generation;
  // shop/other runs on node-2: attached here, it would become local (dispatched).
  fail->store(true);
  auto r = api_->Attach(Req("c-other", "shop", "other", {"10.2.0.5"}), kTimeout);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(store_->Current().generation, generation);
  EXPECT_TRUE(endpoints_->Current()->empty());
  EXPECT_EQ(Kernel(), before);
  // And the same attachment then works.
  MustAttach(Req("c-other", "shop", "other", {"10.2.0.5"}));
  EXPECT_THAT(Kernel(), HasSubstr("10.2.0.5 comment \"shop/other\""));
}

TEST_F(EndpointsTest, APIWritesUnderAttachmentsAreStoredAsEnforced) {
  Apply(kShop);
  MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  // The API hands web's attached address to client and re-sends web without addresses: the
  // attachment wins on both, and the store (which journals only the keys a write changed) keeps
  // exactly that across a restart.
  Apply(R"(apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client, v: "2"}}
status: {podIP: 10.244.1.5}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web, v: "2"}}
)");
  const ObjectMap<Pod> pods = store_->Current().state->pods;
  ASSERT_EQ(pods.size(), 2u);
  EXPECT_TRUE(pods.at("shop/client").ips.empty());
  ASSERT_EQ(pods.at("shop/web").ips.size(), 1u);
  EXPECT_EQ(pods.at("shop/web").ips[0].ToString(), "10.244.1.5");
  EXPECT_EQ(pods.at("shop/web").labels.at("v"), "2");
  Stop();
  Start();
  EXPECT_EQ(store_->Current().state->pods, pods);
}

TEST_F(EndpointsTest, RepeatedAttachIsANoOp) {
  Apply(kShop);
  v1::AttachResponse a = MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  v1::AttachResponse b = MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  EXPECT_EQ(a.generation(), b.generation());
}

TEST_F(EndpointsTest, DetachRemovesTheElementsAndIsIdempotent) {
  Apply(kShop);
  MustAttach(Req("c-web", "shop", "web", {"10.244.1.5", "fd00::5"}));
  ASSERT_THAT(Kernel(), HasSubstr("fd00::5"));
  v1::DetachRequest d;
  d.set_container_id("c-web");
  auto r = api_->Detach(d, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->found());
  EXPECT_THAT(Kernel(), Not(HasSubstr("10.244.1.5")));
  EXPECT_THAT(Kernel(), Not(HasSubstr("fd00::5")));
  r = api_->Detach(d, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->found());
  d.set_container_id("never-attached");
  EXPECT_TRUE(api_->Detach(d, kTimeout).ok());
  d.clear_container_id();
  EXPECT_TRUE(absl::IsInvalidArgument(api_->Detach(d, kTimeout).status()));
}

TEST_F(EndpointsTest, AReusedAddressGetsTheNewPodsPolicies) {
  Apply(kShop);
  MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  MustAttach(Req("c-client", "shop", "client", {"10.244.1.6"}));
  ASSERT_THAT(Kernel(), HasSubstr("10.244.1.6 . tcp . 8080"));
  // client's DEL never came; a pod with no labels gets its address.
  v1::AttachResponse r = MustAttach(Req("c-new", "shop", "newcomer", {"10.244.1.6"}));
  EXPECT_THAT(r.replaced_container_ids(), ElementsAre("c-client"));
  EXPECT_THAT(Kernel(), Not(HasSubstr("10.244.1.6 . tcp . 8080")));
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.6 comment \"shop/newcomer\""));
}

TEST_F(EndpointsTest, ConcurrentAttachesAllReturnEnforced) {
  Apply(kShop);
  constexpr int kPods = 16;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kPods);
  for (int i = 0; i < kPods; ++i) {
    threads.emplace_back([this, i, &results] {
      auto r = api_->Attach(Req(absl::StrCat("c", i), "shop", absl::StrCat("p", i),
                                {absl::StrCat("10.244.2.", i + 1)}),
                            kTimeout);
      // Each one is in the kernel when its own call returns.
      if (r.ok() && reconciler_->status().applied_generation < r->generation()) {
        results[i] = absl::InternalError("returned before its generation was applied");
      } else {
        results[i] = r.status();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kPods; ++i) EXPECT_TRUE(results[i].ok()) << i << ": " << results[i];
  for (int i = 0; i < kPods; ++i) {
    EXPECT_THAT(Kernel(), HasSubstr(absl::StrCat("10.244.2.", i + 1, " comment \"shop/p", i)));
  }
  EXPECT_EQ(endpoints_->Current()->size(), static_cast<size_t>(kPods));
}

// Multus: web's container on the pod network (eth0) and on a second network (net1), both
// chaining netpol-cni. Both addresses are web's and enforced; an API write keeps both; DEL of
// net1 leaves eth0 enforced.
TEST_F(EndpointsTest, SecondInterfaceNeitherReplacesNorRemovesTheFirst) {
  Apply(kShop);
  MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  v1::AttachRequest net1 = Req("c-web", "shop", "web", {"192.168.50.5"});
  net1.mutable_attachment()->set_network("storage");
  net1.mutable_attachment()->set_interface("net1");
  v1::AttachResponse r = MustAttach(net1);
  EXPECT_EQ(r.replaced_container_ids_size(), 0);
  EXPECT_EQ(endpoints_->Current()->size(), 2u);
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.5 comment \"shop/web\""));
  EXPECT_THAT(Kernel(), HasSubstr("192.168.50.5 comment \"shop/web\""));
  // client reaches web on 8080 at both addresses' chains (one pod, one chain).
  MustAttach(Req("c-client", "shop", "client", {"10.244.1.6"}));
  Apply("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web, v: \"2\"}}\n");
  EXPECT_EQ(store_->Current().state->FindPod("shop/web")->ips.size(), 2u);
  v1::DetachRequest d;
  d.set_network("storage");
  d.set_container_id("c-web");
  d.set_interface("net1");
  auto g = api_->Detach(d, kTimeout);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->found());
  EXPECT_THAT(Kernel(), Not(HasSubstr("192.168.50.5")));
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.5 comment \"shop/web\""));
  // CHECK of each interface: eth0 is there, net1 is not.
  v1::ListAttachmentsRequest l;
  l.set_network("pods");
  l.set_container_id("c-web");
  l.set_interface("eth0");
  l.set_verify(true);
  auto listed = api_->List(l);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->attachments_size(), 1);
  EXPECT_TRUE(listed->attachments(0).verified()) << listed->attachments(0).problem();
  l.set_network("storage");
  l.set_interface("net1");
  EXPECT_TRUE(absl::IsNotFound(api_->List(l).status()));
}

TEST_F(EndpointsTest, GarbageCollectRemovesWhatTheRuntimeNoLongerLists) {
  Apply(kShop);
  MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  MustAttach(Req("c-client", "shop", "client", {"10.244.1.6"}));
  v1::GarbageCollectRequest gc;
  gc.set_network("pods");
  v1::AttachmentRef* ref = gc.add_valid();
  ref->set_container_id("c-web");
  ref->set_interface("eth0");
  auto r = api_->GarbageCollect(gc, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->removed(), ElementsAre("pods/c-client/eth0"));
  EXPECT_THAT(Kernel(), Not(HasSubstr("10.244.1.6")));
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.5"));
  // Another network's GC touches nothing of this one.
  gc.set_network("storage");
  gc.clear_valid();
  r = api_->GarbageCollect(gc, kTimeout);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->removed_size(), 0);
  EXPECT_EQ(endpoints_->Current()->size(), 1u);
  gc.clear_network();
  EXPECT_TRUE(absl::IsInvalidArgument(api_->GarbageCollect(gc, kTimeout).status()));
}

// nerdctl/podman: no pod names. The container takes its address from the stale API pod that
// held it (whose allows must not stick to it) and is dispatched nowhere.
TEST_F(EndpointsTest, AContainerThatIsNotAPodTakesItsAddressAndIsIsolatedByNothing) {
  Apply(kShop);
  MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  MustAttach(Req("c-client", "shop", "client", {"10.244.1.6"}));
  ASSERT_THAT(Kernel(), HasSubstr("10.244.1.6 . tcp . 8080"));
  MustAttach(Req("c-plain", "", "", {"10.244.1.6"}));
  EXPECT_THAT(Kernel(), Not(HasSubstr("10.244.1.6")));
  EXPECT_EQ(store_->Current().state->FindPodByIp(*IpAddr::Parse("10.244.1.6")), nullptr);
  v1::ListAttachmentsRequest l;
  l.set_container_id("c-plain");
  l.set_verify(true);
  auto listed = api_->List(l);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->attachments_size(), 1);
  EXPECT_EQ(listed->attachments(0).pod(), "");
  EXPECT_TRUE(listed->attachments(0).verified()) << listed->attachments(0).problem();
}

// Addresses and paths no pod has are refused, nothing stored.
TEST_F(EndpointsTest, AttachRefusesWhatNoPodHas) {
  for (const std::vector<std::string>& ips :
       {std::vector<std::string>{"0.0.0.0"}, {"::"}, {"224.0.0.5"}, {"255.255.255.255"},
        {"10.244.1.5", "10.244.1.6"}}) {
    auto r = api_->Attach(Req("c-web", "shop", "web", ips), kTimeout);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << ips[0] << ": " << r.status();
  }
  for (const char* netns : {"/", "/../proc/1/ns/net", "relative/ns"}) {
    v1::AttachRequest req = Req("c-web", "shop", "web", {"10.244.1.5"});
    req.mutable_attachment()->set_netns(netns);
    auto r = api_->Attach(req, kTimeout);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << netns << ": " << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("attachment.netns"));
  }
  EXPECT_TRUE(endpoints_->Current()->empty());
  EXPECT_EQ(store_->Current().generation, 0u);
}

TEST_F(EndpointsTest, BadAttachChangesNothing) {
  v1::AttachRequest req = Req("c-web", "shop", "web", {"10.244.1.300"});
  auto r = api_->Attach(req, kTimeout);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("attachment.ips[0]"));
  EXPECT_TRUE(endpoints_->Current()->empty());
  EXPECT_EQ(store_->Current().generation, 0u);
  EXPECT_TRUE(absl::IsInvalidArgument(api_->Attach(v1::AttachRequest(), kTimeout).status()));
}

TEST_F(EndpointsTest, AttachOfAPodTheCompilerRejectsStoresNothing) {
  Apply(R"(apiVersion: v1
kind: Namespace
metadata: {name: bad}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: http-only, namespace: bad}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: http}]
)");
  // A pod whose named port the compiler cannot express, written past the API's checks (e.g.
  // stored by an older agent). Not local yet, so nothing resolves its port.
  auto stored = store_->Update([](const State& base)
                                   -> absl::StatusOr<std::optional<Datastore::Change>> {
    State s = base;
    Pod p;
    p.namespace_name = "bad";
    p.name = "p";
    p.ports = {{"http", 70000, Protocol::kTCP}};
    s.pods[p.Key()] = p;
    ChangedKeys touched;
    touched.pods.insert(p.Key());
    return Datastore::Change(std::move(s), 1, std::move(touched));
  });
  ASSERT_TRUE(stored.ok()) << stored.status();
  reconciler_->Notify();
  ASSERT_TRUE(reconciler_->WaitFor(stored->generation, kTimeout).ok());
  const std::string kernel = Kernel();

  auto r = api_->Attach(Req("c-p", "bad", "p", {"10.244.3.1"}), kTimeout);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_EQ(r.status().message(),
            "pod bad/p: containerPort http/TCP = 70000: must be between 1 and 65535");
  EXPECT_TRUE(endpoints_->Current()->empty());
  EXPECT_EQ(store_->Current().generation, stored->generation);
  EXPECT_TRUE(store_->Current().state->FindPod("bad/p")->ips.empty());
  EXPECT_EQ(Kernel(), kernel);
  Stop();
  Start();  // nothing on disk either
  EXPECT_TRUE(endpoints_->Current()->empty());
  EXPECT_EQ(store_->Current().generation, stored->generation);
}

TEST_F(EndpointsTest, AttachAndDetachAreEnforcedThroughTheChangeLog) {
  // As the agent runs (main.cc): incremental syncs read the store's change log. The API already
  // reported web's address, so attaching it leaves the pod object as it is (an empty change)
  // and changes only which pods are local: the sync must still dispatch web.
  Apply(kShop);
  Apply("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n"
        "status: {podIP: 10.244.1.5}\n");
  reconciler_->Stop();
  nft::FakeBackend kernel;
  ReconcilerOptions o = reconciler_->options();
  Store* store = store_.get();
  o.changes = [store](uint64_t from, uint64_t to) { return store->ChangesBetween(from, to); };
  Reconciler r(&kernel, [store] { return store->Current(); }, o);
  EndpointApi api(store, &r, endpoints_.get());
  ASSERT_TRUE(r.SyncNow().ok());
  r.Start();
  auto dispatched = [&kernel] {
    auto t = kernel.Render("netpol");
    return t.ok() && t->find("10.244.1.5 comment \"shop/web\"") != std::string::npos;
  };
  auto exact = [&] {
    auto want = compiler::Compile(*store->Current().state, r.CompileOptionsNow());
    auto got = kernel.Dump("netpol");
    return want.ok() && got.ok() && nft::Canonical(*want) == nft::Canonical(*got);
  };
  EXPECT_FALSE(dispatched());

  const uint64_t before = store->Current().generation;
  auto a = api.Attach(Req("c-web", "shop", "web", {"10.244.1.5"}), kTimeout);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->generation(), before + 1);
  std::optional<ChangedKeys> changed = store->ChangesBetween(before, a->generation());
  ASSERT_TRUE(changed.has_value());
  EXPECT_TRUE(changed->empty());
  EXPECT_TRUE(dispatched());
  EXPECT_TRUE(exact());
  EXPECT_EQ(r.status().change_log_syncs, 1);

  v1::DetachRequest d;
  d.set_container_id("c-web");
  auto g = api.Detach(d, kTimeout);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(dispatched());
  EXPECT_TRUE(exact());
  EXPECT_EQ(r.status().change_log_syncs, 2);
  r.Stop();
}

TEST_F(EndpointsTest, AttachmentsSurviveARestartWhateverTheAgentSeesOfTheirNetns) {
  Apply(kShop);
  // Neither netns path exists where this test runs, as a DaemonSet agent does not see the
  // pods' netns files: the restart must keep both attachments all the same.
  MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  MustAttach(Req("c-x", "shop", "stranger", {"10.244.1.7"}));
  ASSERT_NE(access("/var/run/netns/c-x", F_OK), 0);
  Stop();
  // On disk.
  std::ifstream in(dir_ + "/" + Endpoints::kFileName);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto decoded = Endpoints::Decode(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->size(), 2u);
  Start();
  EXPECT_EQ(endpoints_->Current()->size(), 2u);
  reconciler_->Stop();
  ASSERT_TRUE(ReconcileAtStart(store_.get(), endpoints_.get()).ok());
  EXPECT_EQ(endpoints_->Current()->size(), 2u);
  ASSERT_NE(store_->Current().state->FindPod("shop/stranger"), nullptr);
  ASSERT_TRUE(reconciler_->SyncNow().ok());
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.7"));
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.5"));
}

// A file written when attachments were keyed by container id alone: no network, one without
// an interface, and one that today's rules refuse (netns "/").
TEST_F(EndpointsTest, OldAttachmentsFilesMigrate) {
  Apply(kShop);
  Stop();
  v1::ListAttachmentsResponse file;
  auto add = [&](const std::string& id, const std::string& ifname, const std::string& netns,
                 const std::string& name, const std::string& ip) {
    v1::Attachment* a = file.add_attachments()->mutable_attachment();
    a->set_container_id(id);
    a->set_interface(ifname);
    a->set_netns(netns);
    a->set_pod_namespace("shop");
    a->set_pod_name(name);
    a->add_ips(ip);
  };
  add("c-web", "eth0", "/var/run/netns/w", "web", "10.244.1.5");
  add("c-client", "", "/var/run/netns/c", "client", "10.244.1.6");
  add("c-bad", "eth0", "/", "bad", "10.244.1.8");
  std::string payload;
  file.SerializeToString(&payload);
  std::ofstream(dir_ + "/" + Endpoints::kFileName)
      << EncodeDurable(DurableFormat{"netpol-attachments", 1, "attachments"}, payload);
  Start();
  std::shared_ptr<const Attachments> loaded = endpoints_->Current();
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ(loaded->count(AttachmentKey{"", "c-web", "eth0"}), 1u);
  EXPECT_EQ(loaded->count(AttachmentKey{"", "c-client", "eth0"}), 1u);
  ASSERT_TRUE(ReconcileAtStart(store_.get(), endpoints_.get()).ok());
  reconciler_->Notify();
  ASSERT_TRUE(reconciler_->WaitFor(store_->Current().generation, kTimeout).ok());
  EXPECT_THAT(Kernel(), HasSubstr("10.244.1.5"));
  // Today's plugin names the network: the old record is the same attachment.
  v1::AttachRequest again = Req("c-web", "shop", "web", {"10.244.1.5"});
  auto r = MustAttach(again);
  EXPECT_EQ(r.replaced_container_ids_size(), 0);
  EXPECT_EQ(endpoints_->Current()->count(AttachmentKey{"", "c-web", "eth0"}), 0u);
  EXPECT_EQ(endpoints_->Current()->count(AttachmentKey{"pods", "c-web", "eth0"}), 1u);
  v1::DetachRequest d;
  d.set_network("pods");
  d.set_container_id("c-client");
  d.set_interface("eth0");
  auto g = api_->Detach(d, kTimeout);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->found());
  EXPECT_THAT(Kernel(), Not(HasSubstr("10.244.1.6")));
  EXPECT_EQ(endpoints_->Current()->size(), 1u);
}

TEST_F(EndpointsTest, DamagedAttachmentsFileIsRefused) {
  std::string good = Endpoints::Encode({});
  EXPECT_TRUE(Endpoints::Decode(good).ok());
  EXPECT_TRUE(absl::IsDataLoss(Endpoints::Decode("garbage").status()));
  std::string torn = Endpoints::Encode([] {
    Attachments a;
    Attachment x;
    x.container_id = "c";
    x.netns = "/n";
    x.pod_namespace = "a";
    x.pod_name = "b";
    x.ips = {*IpAddr::Parse("10.0.0.1")};
    a[x.Key()] = x;
    return a;
  }());
  torn.pop_back();
  EXPECT_THAT(std::string(Endpoints::Decode(torn).status().message()), HasSubstr("truncated"));
  Stop();
  std::ofstream(dir_ + "/" + Endpoints::kFileName) << "netpol-attachments 1 3 00000000\nabc";
  auto e = Endpoints::Open(dir_);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("attachments.pb: attachments file checksum"));
  std::remove((dir_ + "/" + Endpoints::kFileName).c_str());
  Start();
}

TEST_F(EndpointsTest, ListVerifiesTheKernel) {
  Apply(kShop);
  MustAttach(Req("c-web", "shop", "web", {"10.244.1.5"}));
  MustAttach(Req("c-open", "other", "open", {"10.244.1.9"}));  // no policy: nothing to dispatch
  v1::ListAttachmentsRequest req;
  req.set_verify(true);
  auto r = api_->List(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->attachments_size(), 2);
  EXPECT_EQ(r->attachments(0).attachment().container_id(), "c-open");
  EXPECT_EQ(r->attachments(0).pod(), "other/open");
  for (const auto& st : r->attachments()) EXPECT_TRUE(st.verified()) << st.problem();
  // Someone deletes web's dispatch element from the kernel.
  std::shared_ptr<const nft::Program> committed = reconciler_->committed();
  const nft::Set& map = committed->sets.at("ingress-dispatch-v4");
  std::vector<nft::Element> web;
  for (const nft::Element& e : committed->elements.at("ingress-dispatch-v4")) {
    if (e.key[0].addr_lo == *IpAddr::Parse("10.244.1.5")) web.push_back(e);
  }
  ASSERT_EQ(web.size(), 1u);
  nft::Transaction tx("netpol");
  tx.DeleteElements(map, web);
  ASSERT_TRUE(fake_.Commit(tx).ok());
  req.set_container_id("c-web");
  r = api_->List(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->attachments_size(), 1);
  EXPECT_FALSE(r->attachments(0).verified());
  EXPECT_THAT(r->attachments(0).problem(),
              HasSubstr("dispatch of 10.244.1.5 in the kernel: none; committed: "
                        "ingress-dispatch-v4 10.244.1.5 -> in-"));
  req.set_container_id("c-open");
  r = api_->List(req);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->attachments(0).verified()) << r->attachments(0).problem();
  req.set_container_id("nope");
  EXPECT_TRUE(absl::IsNotFound(api_->List(req).status()));
}

}  // namespace
}  // namespace netpol::agent
