// CNI attachments as pure State transitions.
#include "agent/attachments.h"

#include <algorithm>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

IpAddr Ip(const char* text) { return *IpAddr::Parse(text); }

Attachment Att(const std::string& id, const std::string& ns, const std::string& name,
               std::vector<IpAddr> ips) {
  Attachment a;
  a.container_id = id;
  a.netns = "/var/run/netns/" + id;
  a.interface = "eth0";
  a.pod_namespace = ns;
  a.pod_name = name;
  a.ips = std::move(ips);
  a.attach_time = absl::FromUnixSeconds(100);
  return a;
}

Pod ApiPod(const std::string& ns, const std::string& name, Labels labels,
           std::vector<IpAddr> ips = {}) {
  Pod p;
  p.namespace_name = ns;
  p.name = name;
  p.labels = std::move(labels);
  p.node_name = "node-1";
  p.ips = std::move(ips);
  return p;
}

TEST(AttachTest, UnknownPodIsCreatedWithoutLabels) {
  AttachmentChange c = Attach(State{}, {}, Att("c1", "shop", "web", {Ip("10.0.0.5")}));
  EXPECT_TRUE(c.changed);
  EXPECT_FALSE(c.pod_known);
  EXPECT_FALSE(c.found);
  EXPECT_EQ(c.objects_changed, 1u);
  const Pod* p = c.state.FindPod("shop/web");
  ASSERT_NE(p, nullptr);
  EXPECT_THAT(p->labels, IsEmpty());
  EXPECT_EQ(p->node_name, "");
  EXPECT_THAT(p->ips, ElementsAre(Ip("10.0.0.5")));
  EXPECT_THAT(AttachedPods(c.attachments), ElementsAre("shop/web"));
  compiler::CompileOptions o = WithAttachments(compiler::CompileOptions{}, &c.attachments);
  EXPECT_TRUE(compiler::IsLocalPod(*p, o));
  EXPECT_FALSE(compiler::IsLocalPod(*p, compiler::CompileOptions{}));
}

TEST(AttachTest, KnownPodKeepsEverythingButItsAddresses) {
  State s;
  Pod web = ApiPod("shop", "web", {{"app", "web"}}, {Ip("192.0.2.1")});
  web.node_name = "node-2";  // stale: the runtime here says it runs here
  web.ports.push_back({"http", 8080, Protocol::kTCP});
  s.pods["shop/web"] = web;
  AttachmentChange c = Attach(s, {}, Att("c1", "shop", "web", {Ip("10.0.0.5"), Ip("fd00::5")}));
  EXPECT_TRUE(c.pod_known);
  const Pod* p = c.state.FindPod("shop/web");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->labels, (Labels{{"app", "web"}}));
  EXPECT_EQ(p->node_name, "node-2");
  EXPECT_EQ(p->ports, web.ports);
  EXPECT_THAT(p->ips, ElementsAre(Ip("10.0.0.5"), Ip("fd00::5")));
}

TEST(AttachTest, RepeatingAnAddChangesNothing) {
  AttachmentChange first = Attach(State{}, {}, Att("c1", "shop", "web", {Ip("10.0.0.5")}));
  Attachment again = Att("c1", "shop", "web", {Ip("10.0.0.5")});
  again.attach_time = absl::FromUnixSeconds(999);
  AttachmentChange second = Attach(first.state, first.attachments, again);
  EXPECT_FALSE(second.changed);
  EXPECT_TRUE(second.found);
  EXPECT_EQ(second.attachments.at("c1").attach_time, absl::FromUnixSeconds(100));
  EXPECT_TRUE(second.state == first.state);
  // The "known" pod there is only the shell the first ADD made.
  EXPECT_FALSE(second.pod_known);
}

TEST(AttachTest, ANewSandboxOfThePodReplacesTheOldOne) {
  AttachmentChange first = Attach(State{}, {}, Att("old", "shop", "web", {Ip("10.0.0.5")}));
  AttachmentChange c = Attach(first.state, first.attachments, Att("new", "shop", "web", {Ip("10.0.0.9")}));
  EXPECT_THAT(c.replaced, ElementsAre("old"));
  EXPECT_EQ(c.attachments.count("old"), 0u);
  EXPECT_THAT(c.state.FindPod("shop/web")->ips, ElementsAre(Ip("10.0.0.9")));
}

TEST(AttachTest, AReusedAddressNeverKeepsTheOldIdentity) {
  State s;
  s.pods["shop/client"] = ApiPod("shop", "client", {{"app", "client"}});
  AttachmentChange a = Attach(s, {}, Att("c-client", "shop", "client", {Ip("10.0.0.5")}));
  ASSERT_THAT(a.state.FindPod("shop/client")->ips, ElementsAre(Ip("10.0.0.5")));
  // The client's DEL was lost; its address goes to a new pod.
  AttachmentChange b = Attach(a.state, a.attachments, Att("c-new", "other", "new", {Ip("10.0.0.5")}));
  EXPECT_THAT(b.replaced, ElementsAre("c-client"));
  EXPECT_THAT(AttachedPods(b.attachments), ElementsAre("other/new"));
  // The old pod's object stays (the API may still list it) but without the address.
  ASSERT_NE(b.state.FindPod("shop/client"), nullptr);
  EXPECT_THAT(b.state.FindPod("shop/client")->ips, IsEmpty());
  EXPECT_EQ(b.state.FindPodByIp(Ip("10.0.0.5"))->Key(), "other/new");
}

TEST(AttachTest, AddressesAreTakenFromStaleApiPodsAndShellsDisappear) {
  State s;
  s.pods["x/stale"] = ApiPod("x", "stale", {{"app", "db"}}, {Ip("10.0.0.5"), Ip("10.0.0.6")});
  AttachmentChange a = Attach(s, {}, Att("c1", "x", "shell", {Ip("10.0.0.7")}));
  AttachmentChange b = Attach(a.state, a.attachments, Att("c2", "y", "new", {Ip("10.0.0.5"), Ip("10.0.0.7")}));
  EXPECT_THAT(b.state.FindPod("x/stale")->ips, ElementsAre(Ip("10.0.0.6")));
  EXPECT_EQ(b.state.FindPod("x/shell"), nullptr) << "a shell left without addresses goes";
  EXPECT_THAT(b.replaced, ElementsAre("c1"));
  EXPECT_EQ(b.objects_changed, 3u);  // stale changed, shell deleted, new created
}

TEST(DetachTest, RemovesTheAddressesAndShells) {
  State s;
  s.pods["shop/web"] = ApiPod("shop", "web", {{"app", "web"}});
  AttachmentChange a = Attach(s, {}, Att("c1", "shop", "web", {Ip("10.0.0.5")}));
  a = Attach(a.state, a.attachments, Att("c2", "shop", "unknown", {Ip("10.0.0.6")}));
  AttachmentChange d = Detach(a.state, a.attachments, "c1");
  EXPECT_TRUE(d.found);
  EXPECT_TRUE(d.changed);
  EXPECT_THAT(d.state.FindPod("shop/web")->ips, IsEmpty());
  EXPECT_EQ(d.state.FindPod("shop/web")->labels, (Labels{{"app", "web"}}));
  d = Detach(d.state, d.attachments, "c2");
  EXPECT_EQ(d.state.FindPod("shop/unknown"), nullptr);
  EXPECT_THAT(d.attachments, IsEmpty());
  AttachmentChange none = Detach(d.state, d.attachments, "c1");
  EXPECT_FALSE(none.found);
  EXPECT_FALSE(none.changed);
}

TEST(OverlayTest, ApiWritesDoNotTakeAttachedAddresses) {
  AttachmentChange a = Attach(State{}, {}, Att("c1", "shop", "web", {Ip("10.0.0.5")}));
  State s = a.state;
  // The API sends the pod with labels but no status yet, and a stale pod with the address.
  s.pods["shop/web"] = ApiPod("shop", "web", {{"app", "web"}});
  s.pods["shop/ghost"] = ApiPod("shop", "ghost", {{"app", "client"}}, {Ip("10.0.0.5")});
  EXPECT_EQ(OverlayAttachments(a.attachments, &s), 2u);
  EXPECT_THAT(s.FindPod("shop/web")->ips, ElementsAre(Ip("10.0.0.5")));
  EXPECT_EQ(s.FindPod("shop/web")->labels, (Labels{{"app", "web"}}));
  EXPECT_THAT(s.FindPod("shop/ghost")->ips, IsEmpty());
  EXPECT_EQ(OverlayAttachments(a.attachments, &s), 0u);
  // A pod deleted through the API stays deleted.
  s.pods.erase("shop/web");
  EXPECT_EQ(OverlayAttachments(a.attachments, &s), 0u);
  EXPECT_EQ(s.FindPod("shop/web"), nullptr);
}

// The overlay as its contract states it, walking every pod for each attachment.
State ReferenceOverlay(const Attachments& attachments, State s) {
  for (const auto& entry : attachments) {
    const Attachment& a = entry.second;  // a named reference: the lambda below captures it
    const std::string key = a.PodKey();
    if (s.pods.count(key) == 0) continue;
    for (auto it = s.pods.begin(); it != s.pods.end();) {
      Pod& p = it->second;
      const size_t held = p.ips.size();
      if (it->first != key) {
        p.ips.erase(std::remove_if(p.ips.begin(), p.ips.end(),
                                   [&](const IpAddr& ip) {
                                     return std::count(a.ips.begin(), a.ips.end(), ip) > 0;
                                   }),
                    p.ips.end());
      }
      const bool shell = p.ips.empty() && p.labels.empty() && p.node_name.empty() &&
                         p.ports.empty() && !p.host_network;
      it = p.ips.size() != held && shell ? s.pods.erase(it) : std::next(it);
    }
    s.pods[key].ips = a.ips;
  }
  return s;
}

std::set<std::string> ChangedPods(const State& before, const State& after) {
  std::set<std::string> out;
  for (const auto& [key, pod] : before.pods) {
    const Pod* now = after.FindPod(key);
    if (now == nullptr || !(*now == pod)) out.insert(key);
  }
  for (const auto& [key, pod] : after.pods) {
    if (before.pods.count(key) == 0) out.insert(key);
  }
  return out;
}

// Random pods over a small address pool (both families, so addresses overlap between pods,
// attachments and families), some shells, some hostNetwork, some holding an address twice;
// random attachments, some of unknown pods, some of the same pod, some sharing addresses.
TEST(OverlayTest, EqualsTheReferenceOnRandomStates) {
  std::vector<IpAddr> pool;
  for (int i = 1; i <= 6; ++i) {
    pool.push_back(IpAddr::V4(10, 0, 0, static_cast<uint8_t>(i)));
    pool.push_back(Ip(absl::StrCat("fd00::", i).c_str()));
  }
  int changes_seen = 0, deletions_seen = 0;
  for (uint32_t seed = 1; seed <= 3000; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
    auto some_ips = [&](int max) {
      std::vector<IpAddr> ips;
      for (int k = pick(max + 1); k > 0; --k) {
        ips.push_back(pool[pick(static_cast<int>(pool.size()))]);
      }
      return ips;
    };
    const int names = 2 + pick(10);
    State state;
    for (int i = 0; i < names; ++i) {
      if (pick(4) == 0) continue;  // an attachment may name a pod that does not exist
      Pod p = ApiPod(i % 2 ? "shop" : "web", absl::StrCat("p", i), {}, some_ips(3));
      switch (pick(4)) {
        case 0:
          p.node_name.clear();  // a shell, as Attach creates them
          break;
        case 1:
          p.labels["app"] = "x";
          p.node_name.clear();
          break;
        case 2:
          p.host_network = pick(2) == 0;
          break;
      }
      if (pick(8) == 0 && !p.ips.empty()) p.ips.push_back(p.ips.front());
      state.pods[p.Key()] = p;
    }
    Attachments attachments;
    for (int k = pick(6); k > 0; --k) {
      const int i = pick(names);
      std::vector<IpAddr> ips = some_ips(3);
      std::sort(ips.begin(), ips.end());
      ips.erase(std::unique(ips.begin(), ips.end()), ips.end());
      Attachment a =
          Att(absl::StrCat("c", pick(20)), i % 2 ? "shop" : "web", absl::StrCat("p", i), ips);
      attachments[a.container_id] = a;
    }

    const State want = ReferenceOverlay(attachments, state);
    const std::set<std::string> want_changed = ChangedPods(state, want);
    State got = state;
    std::set<std::string> got_changed = {"~already-there"};
    const uint64_t n = OverlayAttachments(attachments, &got, &got_changed);
    EXPECT_TRUE(got == want);
    EXPECT_EQ(got_changed.erase("~already-there"), 1u);
    EXPECT_EQ(got_changed, want_changed);
    EXPECT_EQ(n, want_changed.size());
    State again = state;
    EXPECT_EQ(OverlayAttachments(attachments, &again), n);  // without the key set
    EXPECT_TRUE(again == want);
    if (HasFailure()) break;  // one seed's trace is enough
    changes_seen += n > 0;
    deletions_seen += want.pods.size() < state.pods.size();
  }
  // The generator reaches the interesting cases, so the comparison means something.
  EXPECT_GT(changes_seen, 1000);
  EXPECT_GT(deletions_seen, 100);
}

TEST(StaleTest, ListsAttachmentsThatAreNotAlive) {
  Attachments at;
  at["a"] = Att("a", "x", "a", {Ip("10.0.0.1")});
  at["b"] = Att("b", "x", "b", {Ip("10.0.0.2")});
  EXPECT_THAT(StaleAttachments(at, [](const Attachment& a) { return a.container_id == "a"; }),
              ElementsAre("b"));
  // Real paths: a missing netns is dead, an existing one alive unless its inode changed.
  Attachment self = Att("s", "x", "s", {Ip("10.0.0.3")});
  self.netns = "/proc/self/ns/net";
  EXPECT_TRUE(NetnsAlive(self));
  self.netns_inode = NetnsInode("/proc/self/ns/net");
  EXPECT_NE(self.netns_inode, 0u);
  EXPECT_TRUE(NetnsAlive(self));
  self.netns_inode += 1;
  EXPECT_FALSE(NetnsAlive(self));
  self.netns = "/nonexistent/netns";
  self.netns_inode = 0;
  EXPECT_FALSE(NetnsAlive(self));
}

TEST(FromApiTest, ValidatesWithFieldPaths) {
  struct Case {
    const char* name;
    std::function<void(v1::Attachment*)> edit;
    const char* error;
  } cases[] = {
      {"container id", [](v1::Attachment* a) { a->set_container_id("-bad"); },
       "attachment.containerId: \"-bad\""},
      {"netns", [](v1::Attachment* a) { a->clear_netns(); }, "attachment.netns: required"},
      {"namespace", [](v1::Attachment* a) { a->clear_pod_namespace(); },
       "attachment.podNamespace: required"},
      {"name", [](v1::Attachment* a) { a->set_pod_name("a/b"); },
       "attachment.podName: \"a/b\": must be a Kubernetes object name"},
      {"no ips", [](v1::Attachment* a) { a->clear_ips(); }, "attachment.ips: required"},
      {"bad ip", [](v1::Attachment* a) { a->add_ips("10.0.0.256"); }, "attachment.ips[3]: "},
  };
  v1::Attachment good;
  good.set_container_id("abc");
  good.set_netns("/var/run/netns/x");
  good.set_pod_namespace("shop");
  good.set_pod_name("web");
  good.add_ips("fd00::1");
  good.add_ips("10.0.0.1");
  good.add_ips("10.0.0.1");
  absl::StatusOr<Attachment> ok = AttachmentFromApi(good, "attachment");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(ok->ips, ElementsAre(Ip("10.0.0.1"), Ip("fd00::1")));
  absl::StatusOr<Attachment> back = AttachmentFromApi(ToApi(*ok), "attachment");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == *ok);
  for (const Case& c : cases) {
    v1::Attachment a = good;
    c.edit(&a);
    absl::StatusOr<Attachment> r = AttachmentFromApi(a, "attachment");
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << c.name;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.error)) << c.name;
  }
}

}  // namespace
}  // namespace netpol::agent
