// CNI attachments as pure State transitions.
#include "agent/attachments.h"

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
