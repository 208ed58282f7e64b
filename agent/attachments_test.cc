// CNI attachments as pure State transitions.
#include "agent/attachments.h"

#include <algorithm>
#include <random>
#include <map>
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

AttachmentKey Key(const std::string& id, const std::string& ifname = "eth0",
                  const std::string& network = "pods") {
  return AttachmentKey{network, id, ifname};
}
AttachmentSelector Sel(const std::string& id, const std::string& ifname = "",
                       const std::string& network = "pods") {
  return AttachmentSelector{network, id, ifname};
}

Attachment Att(const std::string& id, const std::string& ns, const std::string& name,
               std::vector<IpAddr> ips) {
  Attachment a;
  a.network = "pods";
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
  EXPECT_EQ(second.attachments.at(Key("c1")).attach_time, absl::FromUnixSeconds(100));
  EXPECT_TRUE(second.state == first.state);
  // The "known" pod there is only the shell the first ADD made.
  EXPECT_FALSE(second.pod_known);
}

TEST(AttachTest, ANewSandboxOfThePodReplacesTheOldOne) {
  AttachmentChange first = Attach(State{}, {}, Att("old", "shop", "web", {Ip("10.0.0.5")}));
  AttachmentChange c = Attach(first.state, first.attachments, Att("new", "shop", "web", {Ip("10.0.0.9")}));
  EXPECT_THAT(c.replaced, ElementsAre("pods/old/eth0"));
  EXPECT_EQ(c.attachments.count(Key("old")), 0u);
  EXPECT_THAT(c.state.FindPod("shop/web")->ips, ElementsAre(Ip("10.0.0.9")));
}

TEST(AttachTest, AReusedAddressNeverKeepsTheOldIdentity) {
  State s;
  s.pods["shop/client"] = ApiPod("shop", "client", {{"app", "client"}});
  AttachmentChange a = Attach(s, {}, Att("c-client", "shop", "client", {Ip("10.0.0.5")}));
  ASSERT_THAT(a.state.FindPod("shop/client")->ips, ElementsAre(Ip("10.0.0.5")));
  // The client's DEL was lost; its address goes to a new pod.
  AttachmentChange b = Attach(a.state, a.attachments, Att("c-new", "other", "new", {Ip("10.0.0.5")}));
  EXPECT_THAT(b.replaced, ElementsAre("pods/c-client/eth0"));
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
  EXPECT_THAT(b.replaced, ElementsAre("pods/c1/eth0"));
  EXPECT_EQ(b.objects_changed, 3u);  // stale changed, shell deleted, new created
}

TEST(DetachTest, RemovesTheAddressesAndShells) {
  State s;
  s.pods["shop/web"] = ApiPod("shop", "web", {{"app", "web"}});
  AttachmentChange a = Attach(s, {}, Att("c1", "shop", "web", {Ip("10.0.0.5")}));
  a = Attach(a.state, a.attachments, Att("c2", "shop", "unknown", {Ip("10.0.0.6")}));
  AttachmentChange d = Detach(a.state, a.attachments, Sel("c1"));
  EXPECT_TRUE(d.found);
  EXPECT_TRUE(d.changed);
  EXPECT_THAT(d.state.FindPod("shop/web")->ips, IsEmpty());
  EXPECT_EQ(d.state.FindPod("shop/web")->labels, (Labels{{"app", "web"}}));
  d = Detach(d.state, d.attachments, Sel("c2"));
  EXPECT_EQ(d.state.FindPod("shop/unknown"), nullptr);
  EXPECT_THAT(d.attachments, IsEmpty());
  AttachmentChange none = Detach(d.state, d.attachments, Sel("c1"));
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

// The overlay as its contract states it: for each attached pod in key order (the addresses of
// attachments without a pod first), every other pod is walked.
State ReferenceOverlay(const Attachments& attachments, State s) {
  std::map<std::string, std::vector<IpAddr>> groups;
  for (const auto& [k, a] : attachments) {
    std::vector<IpAddr>& g = groups[a.PodKey()];
    for (const IpAddr& ip : a.ips) {
      if (std::count(g.begin(), g.end(), ip) == 0) g.push_back(ip);
    }
  }
  for (auto& entry : groups) {
    const std::string& key = entry.first;
    std::vector<IpAddr>& ips = entry.second;  // a named reference: the lambda captures it
    std::sort(ips.begin(), ips.end());
    if (!key.empty() && s.pods.count(key) == 0) continue;
    std::vector<std::string> pod_keys;
    for (const auto& [k, p] : s.pods) pod_keys.push_back(k);
    for (const std::string& k : pod_keys) {
      Pod p = s.pods.at(k);
      const size_t held = p.ips.size();
      if (k != key) {
        p.ips.erase(std::remove_if(p.ips.begin(), p.ips.end(),
                                   [&](const IpAddr& ip) {
                                     return std::count(ips.begin(), ips.end(), ip) > 0;
                                   }),
                    p.ips.end());
      }
      const bool shell = p.ips.empty() && p.labels.empty() && p.node_name.empty() &&
                         p.ports.empty() && !p.host_network;
      if (p.ips.size() != held && shell) {
        s.pods.erase(k);
      } else {
        s.pods.insert_or_assign(k, std::move(p));
      }
    }
    if (!key.empty()) s.pods[key].ips = ips;
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
      if (pick(3) == 0) a.interface = "net1";  // a second interface of the pod (Multus)
      if (pick(6) == 0) a.pod_namespace = a.pod_name = "";  // not a pod (nerdctl, podman)
      attachments[a.Key()] = a;
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
       "attachment.podName: invalid name \"a/b\": must be a lowercase RFC 1123 subdomain"},
      {"name with a quote", [](v1::Attachment* a) { a->set_pod_name("a\"b"); },
       "attachment.podName: invalid name \"a\\\"b\": must be a lowercase RFC 1123 subdomain"},
      {"name with a newline", [](v1::Attachment* a) { a->set_pod_name("x\n<forged line>"); },
       "attachment.podName: invalid name \"x\\n<forged line>\""},
      {"name of 254 characters",
       [](v1::Attachment* a) { a->set_pod_name(std::string(254, 'a')); },
       "at most 253 characters"},
      {"namespace with a dot", [](v1::Attachment* a) { a->set_pod_namespace("a.b"); },
       "attachment.podNamespace: invalid name \"a.b\": must be a lowercase RFC 1123 label"},
      {"no ips", [](v1::Attachment* a) { a->clear_ips(); }, "attachment.ips: required"},
      {"bad ip", [](v1::Attachment* a) { a->add_ips("10.0.0.256"); }, "attachment.ips[3]: "},
      {"0.0.0.0", [](v1::Attachment* a) { a->set_ips(1, "0.0.0.0"); },
       "attachment.ips[1]: 0.0.0.0: in 0.0.0.0/8 (this host), not a pod's address"},
      {"::", [](v1::Attachment* a) { a->set_ips(0, "::"); },
       "attachment.ips[0]: ::: unspecified, not a pod's address"},
      {"loopback", [](v1::Attachment* a) { a->set_ips(1, "127.0.0.1"); }, "loopback"},
      {"::1", [](v1::Attachment* a) { a->set_ips(0, "::1"); }, "loopback"},
      {"multicast v4", [](v1::Attachment* a) { a->set_ips(1, "224.0.0.1"); }, "multicast"},
      {"multicast v6", [](v1::Attachment* a) { a->set_ips(0, "ff02::1"); }, "multicast"},
      {"broadcast", [](v1::Attachment* a) { a->set_ips(1, "255.255.255.255"); }, "broadcast"},
      {"mapped", [](v1::Attachment* a) { a->set_ips(0, "::ffff:10.0.0.9"); }, "IPv4-mapped"},
      {"two v4", [](v1::Attachment* a) { a->add_ips("10.0.0.2"); },
       "attachment.ips[3]: 10.0.0.2: an interface has at most one address per family "
       "(10.0.0.1 is the other)"},
      {"two v6", [](v1::Attachment* a) { a->add_ips("fd00::2"); }, "at most one address per family"},
      {"netns /", [](v1::Attachment* a) { a->set_netns("/"); },
       "attachment.netns: \"/\": \"/\" is not a network namespace"},
      {"netns ..", [](v1::Attachment* a) { a->set_netns("/../proc/1/ns/net"); },
       "must be a clean path (no empty, '.' or '..' components)"},
      {"netns relative", [](v1::Attachment* a) { a->set_netns("proc/1/ns/net"); },
       "must be an absolute path"},
      {"netns //", [](v1::Attachment* a) { a->set_netns("/var/run//netns/x"); }, "clean path"},
      {"netns trailing", [](v1::Attachment* a) { a->set_netns("/var/run/netns/"); },
       "must not end with '/'"},
      {"netns newline", [](v1::Attachment* a) { a->set_netns("/var/run/netns/x\ny"); },
       "control characters"},
      {"interface", [](v1::Attachment* a) { a->set_interface("eth0:1"); },
       "attachment.interface: \"eth0:1\": not a valid interface name"},
      {"interface long", [](v1::Attachment* a) { a->set_interface("abcdefghijklmnop"); },
       "not a valid interface name"},
      {"network", [](v1::Attachment* a) { a->set_network("-net"); }, "attachment.network: \"-net\""},
      {"name without namespace", [](v1::Attachment* a) { a->clear_pod_namespace(); },
       "attachment.podNamespace: required"},
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
  EXPECT_EQ(ok->interface, "eth0") << "no interface: eth0";
  // Paths runtimes use are accepted; a container that is not a pod has neither name.
  for (const char* netns : {"/var/run/netns/cni-1234", "/run/netns/x", "/proc/4242/ns/net",
                            "/var/run/docker/netns/1a2b", "/run/user/1000/netns/netns-9"}) {
    v1::Attachment a = good;
    a.set_netns(netns);
    a.clear_pod_namespace();
    a.clear_pod_name();
    absl::StatusOr<Attachment> r = AttachmentFromApi(a, "attachment");
    ASSERT_TRUE(r.ok()) << netns << ": " << r.status();
    EXPECT_FALSE(r->HasPod());
    EXPECT_EQ(r->PodKey(), "");
  }
  {
    // 60,000 copies of the pod's two addresses: one linear pass, accepted as two.
    v1::Attachment a = good;
    for (int i = 0; i < 30000; ++i) {
      a.add_ips("10.0.0.1");
      a.add_ips("fd00::1");
    }
    absl::StatusOr<Attachment> r = AttachmentFromApi(a, "attachment");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->ips.size(), 2u);
  }
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

// Multus: one container on two networks (or two interfaces of one network).
TEST(MultiInterfaceTest, EachInterfaceIsItsOwnAttachment) {
  State s;
  s.pods["shop/web"] = ApiPod("shop", "web", {{"app", "web"}});
  AttachmentChange a = Attach(s, {}, Att("c1", "shop", "web", {Ip("10.0.0.5")}));
  Attachment net1 = Att("c1", "shop", "web", {Ip("192.168.7.5")});
  net1.network = "storage";
  net1.interface = "net1";
  AttachmentChange b = Attach(a.state, a.attachments, net1);
  EXPECT_TRUE(b.changed);
  EXPECT_FALSE(b.found);
  EXPECT_THAT(b.replaced, IsEmpty());
  ASSERT_EQ(b.attachments.size(), 2u) << "ADD of net1 keeps eth0's record";
  EXPECT_THAT(b.state.FindPod("shop/web")->ips, ElementsAre(Ip("10.0.0.5"), Ip("192.168.7.5")));
  // Re-ADD of net1 changes nothing.
  AttachmentChange again = Attach(b.state, b.attachments, net1);
  EXPECT_FALSE(again.changed);
  EXPECT_TRUE(again.found);
  // DEL of net1 removes net1 only.
  AttachmentChange d = Detach(b.state, b.attachments, Sel("c1", "net1", "storage"));
  EXPECT_TRUE(d.found);
  EXPECT_THAT(d.removed, ElementsAre(Key("c1", "net1", "storage")));
  ASSERT_EQ(d.attachments.count(Key("c1")), 1u);
  EXPECT_THAT(d.state.FindPod("shop/web")->ips, ElementsAre(Ip("10.0.0.5")));
  // Same interface name in another network: not that attachment.
  AttachmentChange other = Detach(b.state, b.attachments, Sel("c1", "net1", "pods"));
  EXPECT_FALSE(other.found);
  // A DEL naming no interface (an older plugin) removes all of the container's.
  AttachmentChange all = Detach(b.state, b.attachments, AttachmentSelector{"", "c1", ""});
  EXPECT_EQ(all.removed.size(), 2u);
  EXPECT_THAT(all.state.FindPod("shop/web")->ips, IsEmpty());
  // A new sandbox of the pod replaces every interface of the old one.
  AttachmentChange fresh = Attach(b.state, b.attachments, Att("c2", "shop", "web", {Ip("10.0.0.9")}));
  EXPECT_THAT(fresh.replaced, ElementsAre("pods/c1/eth0", "storage/c1/net1"));
  EXPECT_THAT(fresh.state.FindPod("shop/web")->ips, ElementsAre(Ip("10.0.0.9")));
}

TEST(MultiInterfaceTest, RecordsWithoutANetworkMatchAnyNetwork) {
  Attachment old = Att("c1", "shop", "web", {Ip("10.0.0.5")});
  old.network = "";
  AttachmentChange a = Attach(State{}, {}, old);
  // Today's ADD of the same container and interface is the same attachment, now with a network.
  AttachmentChange b = Attach(a.state, a.attachments, Att("c1", "shop", "web", {Ip("10.0.0.5")}));
  EXPECT_TRUE(b.found);
  EXPECT_THAT(b.replaced, IsEmpty());
  EXPECT_EQ(b.attachments.size(), 1u);
  EXPECT_EQ(b.attachments.count(Key("c1")), 1u);
  // DEL naming a network matches an old record.
  AttachmentChange d = Detach(a.state, a.attachments, Sel("c1", "eth0", "cbr0"));
  EXPECT_TRUE(d.found);
  EXPECT_THAT(d.attachments, IsEmpty());
}

TEST(GarbageCollectTest, DropsTheNetworksAttachmentsNotInTheValidList) {
  AttachmentChange a = Attach(State{}, {}, Att("c1", "shop", "a", {Ip("10.0.0.1")}));
  a = Attach(a.state, a.attachments, Att("c2", "shop", "b", {Ip("10.0.0.2")}));
  Attachment other = Att("c3", "shop", "c", {Ip("10.0.0.3")});
  other.network = "storage";
  a = Attach(a.state, a.attachments, other);
  AttachmentChange g = GarbageCollect(a.state, a.attachments, "pods", {{"c1", "eth0"}});
  EXPECT_TRUE(g.changed);
  EXPECT_THAT(g.removed, ElementsAre(Key("c2")));
  EXPECT_EQ(g.attachments.size(), 2u) << "c1 is valid, c3 is another network's";
  EXPECT_EQ(g.state.FindPod("shop/b"), nullptr);
  AttachmentChange none = GarbageCollect(g.state, g.attachments, "pods", {{"c1", "eth0"}});
  EXPECT_FALSE(none.changed);
}

// nerdctl, podman, cnitool: no K8S_POD_*. The container is not a pod: its address leaves any
// pod holding it, and no pod is created.
TEST(NotAPodTest, TakesItsAddressFromPodsAndCreatesNone) {
  State s;
  s.pods["shop/stale"] = ApiPod("shop", "stale", {{"app", "db"}}, {Ip("10.0.0.5")});
  Attachment c = Att("ctr", "", "", {Ip("10.0.0.5")});
  AttachmentChange a = Attach(s, {}, c);
  EXPECT_TRUE(a.changed);
  EXPECT_FALSE(a.pod_known);
  EXPECT_THAT(a.state.FindPod("shop/stale")->ips, IsEmpty());
  EXPECT_EQ(a.state.pods.size(), 1u);
  EXPECT_THAT(AttachedPods(a.attachments), IsEmpty());
  // An API write giving the address back to the stale pod does not stick.
  State later = a.state;
  later.pods["shop/stale"].ips = {Ip("10.0.0.5")};
  EXPECT_EQ(OverlayAttachments(a.attachments, &later), 1u);
  EXPECT_THAT(later.FindPod("shop/stale")->ips, IsEmpty());
  AttachmentChange d = Detach(a.state, a.attachments, Sel("ctr"));
  EXPECT_TRUE(d.found);
  EXPECT_THAT(d.attachments, IsEmpty());
}

}  // namespace
}  // namespace netpol::agent
