#include "agent/flow_log.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/testing/fixtures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Every state below: the namespace shop with its pods web and client on node-1 (both families),
// then the state's own objects.
constexpr char kPods[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.1.0.10}, {ip: "fd00:1::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.1.0.11}, {ip: "fd00:1::11"}]}
---
)";

State LoadWithPods(const char* objects) {
  return fixtures::LoadState(std::string(kPods) + objects);
}

constexpr char kState[] = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other-ns-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
)";

std::vector<uint8_t> Ipv4Tcp(std::vector<uint8_t> src, std::vector<uint8_t> dst, uint16_t sport,
                             uint16_t dport) {
  std::vector<uint8_t> p(40, 0);
  p[0] = 0x45;
  p[9] = 6;
  std::copy(src.begin(), src.end(), p.begin() + 12);
  std::copy(dst.begin(), dst.end(), p.begin() + 16);
  p[20] = sport >> 8;
  p[21] = sport & 0xff;
  p[22] = dport >> 8;
  p[23] = dport & 0xff;
  return p;
}

TEST(ParsePacketHeaderTest, Ipv4TcpPorts) {
  std::vector<uint8_t> p = Ipv4Tcp({10, 1, 0, 11}, {10, 1, 0, 10}, 40000, 8080);
  absl::StatusOr<PacketHeader> h = ParsePacketHeader(p.data(), p.size());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->src.ToString(), "10.1.0.11");
  EXPECT_EQ(h->dst.ToString(), "10.1.0.10");
  EXPECT_EQ(h->protocol, 6);
  EXPECT_EQ(h->src_port, 40000);
  EXPECT_EQ(h->dst_port, 8080);
}

TEST(ParsePacketHeaderTest, Ipv6UdpAfterAnExtensionHeader) {
  std::vector<uint8_t> p(40 + 8 + 8, 0);
  p[0] = 0x60;
  p[6] = 60;  // destination options
  p[8 + 15] = 1;
  p[24 + 15] = 2;
  p[40] = 17;  // then UDP
  p[41] = 0;   // 8 bytes
  p[48] = 0x13;
  p[49] = 0x88;  // 5000
  p[50] = 0x00;
  p[51] = 0x35;  // 53
  absl::StatusOr<PacketHeader> h = ParsePacketHeader(p.data(), p.size());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->src.ToString(), "::1");
  EXPECT_EQ(h->dst.ToString(), "::2");
  EXPECT_EQ(h->protocol, 17);
  EXPECT_EQ(h->src_port, 5000);
  EXPECT_EQ(h->dst_port, 53);
}

TEST(ParsePacketHeaderTest, TruncatedAndForeignHeadersAreErrors) {
  std::vector<uint8_t> short4 = {0x45, 0, 0};
  EXPECT_THAT(std::string(ParsePacketHeader(short4.data(), short4.size()).status().message()),
              HasSubstr("truncated IPv4"));
  std::vector<uint8_t> v5(40, 0x50);
  EXPECT_THAT(std::string(ParsePacketHeader(v5.data(), v5.size()).status().message()),
              HasSubstr("IP version 5"));
  // A header without the transport bytes still parses, without ports.
  std::vector<uint8_t> p = Ipv4Tcp({10, 1, 0, 11}, {10, 1, 0, 10}, 1, 2);
  absl::StatusOr<PacketHeader> h = ParsePacketHeader(p.data(), 20);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->dst_port, 0);
}

LoggedPacket Packet(const std::string& prefix, const std::string& src, const std::string& dst,
                    uint8_t proto, uint16_t dport) {
  LoggedPacket p;
  p.time = absl::FromUnixSeconds(1700000000);
  p.prefix = prefix;
  p.header.src = *IpAddr::Parse(src);
  p.header.dst = *IpAddr::Parse(dst);
  p.header.protocol = proto;
  p.header.src_port = 40000;
  p.header.dst_port = dport;
  return p;
}

TEST(AttributeTest, IngressDropNamesBothPodsAndThePoliciesIsolatingTheDestination) {
  State s = LoadWithPods(kState);
  auto r = Attribute(s, "node-1", Packet("deny in-shop_deny-all-0123abcd", "10.1.0.11",
                                         "10.1.0.10", 6, 8080));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->verdict(), v1::DENIED);
  EXPECT_EQ(r->direction(), v1::INGRESS);
  EXPECT_EQ(r->node(), "node-1");
  EXPECT_EQ(r->protocol(), "TCP");
  EXPECT_EQ(r->source().pod(), "shop/client");
  EXPECT_EQ(r->source().port(), 40000u);
  EXPECT_EQ(r->destination().pod(), "shop/web");
  EXPECT_EQ(r->destination().port(), 8080u);
  EXPECT_EQ(r->chain(), "in-shop_deny-all-0123abcd");
  EXPECT_THAT(r->policies(), ElementsAre("shop/deny-all", "shop/web-ingress"));
  EXPECT_EQ(r->time().seconds(), 1700000000);
}

TEST(AttributeTest, EgressDropJudgesTheSourceAndLeavesUnknownAddressesPodless) {
  State s = LoadWithPods(kState);
  auto r = Attribute(s, "node-1",
                     Packet("deny eg-shop_deny-all-0123abcd", "fd00:1::11", "2001:db8::1", 17, 53));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->direction(), v1::EGRESS);
  EXPECT_EQ(r->protocol(), "UDP");
  EXPECT_EQ(r->source().pod(), "shop/client");
  EXPECT_EQ(r->destination().pod(), "");
  EXPECT_EQ(r->destination().ip(), "2001:db8::1");
  EXPECT_THAT(r->policies(), ElementsAre("shop/deny-all", "shop/other-ns-egress"));
}

constexpr char kLoggingState[] = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: logged
  namespace: shop
  annotations: {netpol.io/log-allowed: "true"}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 8080}]
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 53, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: quiet, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 9090}]
)";

TEST(AttributeTest, AllowedNamesTheRulesOfTheLoggingPoliciesThatAllowedIt) {
  State s = LoadWithPods(kLoggingState);
  ASSERT_TRUE(s.policies.at("shop/logged").log_allowed);
  ASSERT_FALSE(s.policies.at("shop/quiet").log_allowed);
  const std::string prefix = "allow in-shop_logged-0123abcd";
  auto tcp = Attribute(s, "node-1", Packet(prefix, "10.1.0.11", "10.1.0.10", 6, 8080));
  ASSERT_TRUE(tcp.has_value());
  EXPECT_EQ(tcp->verdict(), v1::ALLOWED);
  EXPECT_EQ(tcp->direction(), v1::INGRESS);
  EXPECT_EQ(tcp->chain(), "in-shop_logged-0123abcd");
  EXPECT_EQ(tcp->source().pod(), "shop/client");
  EXPECT_EQ(tcp->destination().pod(), "shop/web");
  EXPECT_THAT(tcp->policies(), ElementsAre("shop/logged"));
  EXPECT_THAT(tcp->rules(), ElementsAre("shop/logged ingress[0]"));

  auto udp6 = Attribute(s, "node-1", Packet(prefix, "fd00:1::11", "fd00:1::10", 17, 53));
  ASSERT_TRUE(udp6.has_value());
  EXPECT_EQ(udp6->protocol(), "UDP");
  EXPECT_THAT(udp6->rules(), ElementsAre("shop/logged ingress[1]"));

  // Allowed only by the policy that does not ask for logs (a lookup both share): no record.
  EXPECT_FALSE(Attribute(s, "node-1", Packet(prefix, "10.1.0.11", "10.1.0.10", 6, 9090)));
  // No port: the logging policies isolating the pod, no rules.
  auto icmp = Attribute(s, "node-1", Packet(prefix, "10.1.0.11", "10.1.0.10", 1, 0));
  ASSERT_TRUE(icmp.has_value());
  EXPECT_THAT(icmp->policies(), ElementsAre("shop/logged"));
  EXPECT_TRUE(icmp->rules().empty());
  // Not a local pod's chain direction: an unknown destination on ingress makes no record.
  EXPECT_FALSE(Attribute(s, "node-1", Packet(prefix, "10.1.0.11", "10.9.9.9", 6, 8080)));
}

constexpr char kGuardedState[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: lock-web}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress:
  - {name: let-9090, action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 9090}}}]}
  - {name: keep-out, action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 8080}}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: tenant-default}
spec:
  tier: Baseline
  priority: 50
  subject: {namespaces: {}}
  egress:
  - {name: no-dns, action: Deny, to: [{networks: ["2001:db8::/32"]}], protocols: [{udp: {destinationPort: {number: 53}}}]}
)";

TEST(AttributeTest, ClusterNetworkPolicyDenyNamesTheTierThePolicyAndTheRule) {
  State s = LoadWithPods(kGuardedState);
  auto in = Attribute(s, "node-1", Packet("deny cin-lock-web-0123abcd-adl", "10.1.0.11",
                                          "10.1.0.10", 6, 8080));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(in->verdict(), v1::DENIED);
  EXPECT_EQ(in->direction(), v1::INGRESS);
  EXPECT_EQ(in->chain(), "cin-lock-web-0123abcd");
  EXPECT_EQ(in->source().pod(), "shop/client");
  EXPECT_EQ(in->destination().pod(), "shop/web");
  EXPECT_TRUE(in->policies().empty());
  const v1::ClusterNetworkPolicyRuleRef& a = in->cluster_network_policy_rule();
  EXPECT_EQ(a.tier(), v1::Admin);
  EXPECT_EQ(a.policy(), "lock-web");
  EXPECT_EQ(a.priority(), 5);
  EXPECT_EQ(a.rule(), 1);
  EXPECT_EQ(a.name(), "keep-out");
  EXPECT_EQ(a.action(), v1::Deny);

  auto eg = Attribute(s, "node-1", Packet("deny ceg-tenant-default-0123abcd-bdl", "fd00:1::11",
                                          "2001:db8::1", 17, 53));
  ASSERT_TRUE(eg.has_value());
  EXPECT_EQ(eg->direction(), v1::EGRESS);
  EXPECT_EQ(eg->chain(), "ceg-tenant-default-0123abcd");
  EXPECT_EQ(eg->source().pod(), "shop/client");
  const v1::ClusterNetworkPolicyRuleRef& b = eg->cluster_network_policy_rule();
  EXPECT_EQ(b.tier(), v1::Baseline);
  EXPECT_EQ(b.policy(), "tenant-default");
  EXPECT_EQ(b.rule(), 0);
  EXPECT_EQ(b.name(), "no-dns");

  // Without ports the evaluator has no answer: the tier and the action only.
  auto icmp = Attribute(s, "node-1", Packet("deny cin-lock-web-0123abcd-adl", "10.1.0.11",
                                            "10.1.0.10", 1, 0));
  ASSERT_TRUE(icmp.has_value());
  EXPECT_EQ(icmp->cluster_network_policy_rule().tier(), v1::Admin);
  EXPECT_EQ(icmp->cluster_network_policy_rule().action(), v1::Deny);
  EXPECT_EQ(icmp->cluster_network_policy_rule().policy(), "");
  // A tier chain without a deny-log suffix is nothing the compiler logs from.
  EXPECT_FALSE(Attribute(s, "node-1", Packet("deny cin-lock-web-0123abcd", "10.1.0.11",
                                             "10.1.0.10", 6, 8080)));
  // A NetworkPolicy drop record carries no ClusterNetworkPolicy rule.
  auto np = Attribute(s, "node-1", Packet("deny in-shop_x-0123abcd", "10.1.0.11", "10.1.0.10", 6, 8080));
  ASSERT_TRUE(np.has_value());
  EXPECT_FALSE(np->has_cluster_network_policy_rule());
}

TEST(AttributeTest, ForeignPrefixesMakeNoRecord) {
  State s = LoadWithPods(kState);
  EXPECT_FALSE(Attribute(s, "n", Packet("", "10.1.0.11", "10.1.0.10", 6, 1)).has_value());
  EXPECT_FALSE(Attribute(s, "n", Packet("deny forward", "10.1.0.11", "10.1.0.10", 6, 1)));
  EXPECT_FALSE(Attribute(s, "n", Packet("DROP ", "10.1.0.11", "10.1.0.10", 6, 1)).has_value());
}

TEST(FlowLogTest, HeldRecordsFollowersFiltersAndTheRotatedFile) {
  const std::string dir = fixtures::MakeTempDir("flow_log_test");
  auto state = std::make_shared<const State>(LoadWithPods(kState));
  FlowLogOptions o;
  o.node = "node-1";
  o.state = [state] { return state; };
  o.buffer = 3;
  o.file = dir + "/flows.jsonl";
  o.file_max_bytes = 1000;  // three or four records per file: the 5 rotate once
  o.suppressed = [] { return absl::StatusOr<uint64_t>(42); };
  std::unique_ptr<FlowLog> log = FlowLog::StartWithoutSocket(o);

  ASSERT_TRUE(log->Add(Packet("deny in-a", "10.1.0.11", "10.1.0.10", 6, 80)));
  ASSERT_TRUE(log->Add(Packet("deny eg-b", "10.1.0.11", "192.0.2.1", 17, 53)));
  ASSERT_TRUE(log->Add(Packet("foreign", "10.1.0.11", "10.1.0.10", 6, 80)));
  ASSERT_TRUE(log->Add(Packet("deny in-a", "10.1.0.11", "fd00:1::10", 6, 81)));
  ASSERT_TRUE(log->Add(Packet("deny in-a", "10.1.0.11", "10.1.0.10", 6, 82)));
  // The worker has taken every packet once Stats counts 4 records (the foreign prefix made
  // none). No deadline: a lost record hangs and fails the test.
  while (log->Stats().records() < 4) absl::SleepFor(absl::Milliseconds(10));

  // A follower of shop/web: the held records (the buffer keeps the newest 3: ports 53, 81, 82;
  // web's are 81 and 82), then a new one. Whether the follower starts before or after the new
  // record is made, it sees the same three, in order.
  v1::FlowLogsRequest follow;
  follow.set_follow(true);
  follow.set_pod("shop/web");
  std::vector<std::string> followed;
  absl::Notification got_three;
  std::atomic<bool> done{false};
  std::thread follower([&] {
    log->Follow(
        follow,
        [&](const v1::FlowRecord& r) {
          followed.push_back(absl::StrCat(r.destination().ip(), ":", r.destination().port()));
          if (followed.size() == 3) got_three.Notify();
          return true;
        },
        [&] { return done.load(); });
  });
  ASSERT_TRUE(log->Add(Packet("deny in-a", "10.1.0.11", "10.1.0.10", 6, 83)));
  got_three.WaitForNotification();
  done.store(true);
  follower.join();
  EXPECT_THAT(followed, ElementsAre("fd00:1::10:81", "10.1.0.10:82", "10.1.0.10:83"));

  v1::FlowLogsRequest all;
  std::vector<uint32_t> ports;
  log->Follow(all, [&](const v1::FlowRecord& r) {
    ports.push_back(r.destination().port());
    return true;
  }, [] { return false; });
  EXPECT_THAT(ports, ElementsAre(81, 82, 83));  // the buffer holds the newest 3
  v1::FlowLogsRequest egress_ns;
  egress_ns.set_namespace_("shop");
  egress_ns.set_tail(1);
  ports.clear();
  log->Follow(egress_ns, [&](const v1::FlowRecord& r) {
    ports.push_back(r.destination().port());
    return true;
  }, [] { return false; });
  EXPECT_THAT(ports, ElementsAre(83));

  v1::FlowLogStats stats = log->Stats();
  EXPECT_EQ(stats.received(), 6);
  EXPECT_EQ(stats.records(), 5);
  EXPECT_EQ(stats.queue_dropped(), 0);
  EXPECT_EQ(stats.suppressed(), 42);
  EXPECT_EQ(stats.file_error(), "");

  // The file was rotated once it would pass 1000 bytes: both parts together hold the 5 records,
  // one JSON object a line.
  auto lines = [](const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  };
  std::vector<std::string> a = lines(o.file + ".1"), b = lines(o.file);
  EXPECT_FALSE(a.empty());
  EXPECT_FALSE(b.empty());
  EXPECT_EQ(a.size() + b.size(), 5u);
  for (const std::string& l : b) {
    EXPECT_THAT(l, HasSubstr("\"verdict\":\"DENIED\""));
    EXPECT_THAT(l, HasSubstr("\"node\":\"node-1\""));
  }
  EXPECT_THAT(b.back(), HasSubstr("\"destination\":{\"ip\":\"10.1.0.10\",\"port\":83,\"pod\":\"shop/web\"}"));
  log.reset();
  fixtures::RemoveTree(dir);
}

TEST(FlowLogTest, AFullQueueDropsAndCounts) {
  FlowLogOptions o;
  o.queue = 0;
  std::unique_ptr<FlowLog> log = FlowLog::StartWithoutSocket(o);
  EXPECT_FALSE(log->Add(Packet("deny in-a", "10.1.0.11", "10.1.0.10", 6, 80)));
  EXPECT_EQ(log->Stats().queue_dropped(), 1);
  EXPECT_EQ(log->Stats().received(), 1);
}

}  // namespace
}  // namespace netpol::agent
