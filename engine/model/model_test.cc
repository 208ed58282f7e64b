#include "engine/model/model.h"

#include <string>

#include "gtest/gtest.h"

namespace netpol {
namespace {

TEST(ProtocolNameTest, All) {
  EXPECT_STREQ(ProtocolName(Protocol::kTCP), "TCP");
  EXPECT_STREQ(ProtocolName(Protocol::kUDP), "UDP");
  EXPECT_STREQ(ProtocolName(Protocol::kSCTP), "SCTP");
}

TEST(PodTest, ResolvePort) {
  Pod pod;
  pod.ports = {{"http", 8080, Protocol::kTCP},
               {"dns", 53, Protocol::kUDP},
               {"dns", 5353, Protocol::kTCP},
               {"", 9000, Protocol::kTCP},
               {"http", 9090, Protocol::kTCP}};
  struct Case {
    std::string name;
    Protocol protocol;
    std::optional<int32_t> want;
  };
  const Case cases[] = {
      {"http", Protocol::kTCP, 8080},  // first match wins
      {"http", Protocol::kUDP, std::nullopt},
      {"dns", Protocol::kUDP, 53},
      {"dns", Protocol::kTCP, 5353},
      {"dns", Protocol::kSCTP, std::nullopt},
      {"", Protocol::kTCP, std::nullopt},  // unnamed ports are never resolved by name
      {"metrics", Protocol::kTCP, std::nullopt},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(pod.ResolvePort(c.name, c.protocol), c.want)
        << c.name << "/" << ProtocolName(c.protocol);
  }
}

TEST(StateTest, Find) {
  State s;
  s.namespaces["a"] = Namespace{"a", {{kNamespaceNameLabel, "a"}}};
  Pod p1;
  p1.namespace_name = "a";
  p1.name = "p1";
  p1.ips = {IpAddr::V4(10, 0, 0, 1), *IpAddr::Parse("fd00::1")};
  Pod host;
  host.namespace_name = "a";
  host.name = "host";
  host.host_network = true;
  host.ips = {IpAddr::V4(192, 168, 0, 1)};
  s.pods[p1.Key()] = p1;
  s.pods[host.Key()] = host;

  ASSERT_NE(s.FindNamespace("a"), nullptr);
  EXPECT_EQ(s.FindNamespace("a")->name, "a");
  EXPECT_EQ(s.FindNamespace("b"), nullptr);
  ASSERT_NE(s.FindPod("a/p1"), nullptr);
  EXPECT_EQ(s.FindPod("a/p1")->name, "p1");
  EXPECT_EQ(s.FindPod("p1"), nullptr);
  ASSERT_NE(s.FindPodByIp(IpAddr::V4(10, 0, 0, 1)), nullptr);
  EXPECT_EQ(s.FindPodByIp(IpAddr::V4(10, 0, 0, 1))->name, "p1");
  ASSERT_NE(s.FindPodByIp(*IpAddr::Parse("fd00::1")), nullptr);
  EXPECT_EQ(s.FindPodByIp(IpAddr::V4(10, 0, 0, 2)), nullptr);
  // hostNetwork pods share the node's address and own none.
  EXPECT_EQ(s.FindPodByIp(IpAddr::V4(192, 168, 0, 1)), nullptr);
}

}  // namespace
}  // namespace netpol
