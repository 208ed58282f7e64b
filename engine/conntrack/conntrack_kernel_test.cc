// Revocation against the kernel. The test process moves into a fresh network namespace (the
// "node", a router) and creates two more, a client and a server side, each linked to it by a
// veth pair; the node forwards between them with conntrack enabled by an nftables table. Real
// TCP (IPv4, IPv6) and UDP flows cross the node; revoking some of them deletes exactly their
// conntrack entries, and once a rule denies their new packets, their traffic stops while the
// others' goes on. Never touches the host's namespace: every table and link is in namespaces
// the test created (`ip netns` names carry the pid and are deleted at the end).
#include "engine/conntrack/conntrack.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/compiler/compiler.h"
#include "engine/conntrack/fixtures.h"
#include "engine/conntrack/kernel_lab.h"
#include "engine/conntrack/revocation.h"
#include "engine/nft/diff.h"
#include "engine/nft/transaction.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::conntrack {
namespace {

using fixtures::Ip;
using fixtures::StateOf;
using lab::CmdResult;
using lab::Flows;
using lab::Lab;
using lab::Nft;
using lab::ShopServerPolicy;
using ConntrackKernelTest = lab::KernelLabTest;

FlowFilter Port(const std::string& src, const std::string& dst, uint8_t proto, uint16_t port) {
  FlowFilter f = FlowFilter::Any(Ip(src), Ip(dst));
  f.proto_lo = f.proto_hi = proto;
  f.dport_lo = f.dport_hi = port;
  return f;
}

using ::testing::Contains;
using ::testing::Not;

// Filters given directly: the flows they name lose their entries, the others keep them; once
// new packets of the revoked flows are dropped, those flows stop and the others go on.
TEST_F(ConntrackKernelTest, RevokeDeletesOnlyMatchingEntries) {
  // Conntrack in this namespace starts when a rule needs it.
  CmdResult r = Nft(R"(table inet lab {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
  }
})");
  ASSERT_EQ(r.status, 0) << r.output;

  Lab::Conn tcp = lab_.Tcp("10.2.0.2", 8080);
  ASSERT_TRUE(tcp.ok) << tcp.msg;
  Lab::Conn tcp6 = lab_.Tcp("fd00:2::2", 8080);
  ASSERT_TRUE(tcp6.ok) << tcp6.msg;
  Lab::Conn udp = lab_.Udp("10.2.0.2", 5353);
  ASSERT_TRUE(udp.ok) << udp.msg;
  Lab::Conn other = lab_.Tcp("10.2.0.2", 9090);
  ASSERT_TRUE(other.ok) << other.msg;
  ASSERT_TRUE(Lab::Deliver(tcp, "hello"));
  ASSERT_TRUE(Lab::Deliver(tcp6, "hello"));
  ASSERT_TRUE(Lab::Deliver(udp, "hello", /*reply=*/true));
  ASSERT_TRUE(Lab::Deliver(other, "hello"));

  const std::vector<std::string> v4 = Flows(Family::kV4);
  ASSERT_THAT(v4, Contains("tcp 10.1.0.2:* -> 10.2.0.2:8080"));
  ASSERT_THAT(v4, Contains("udp 10.1.0.2:* -> 10.2.0.2:5353"));
  ASSERT_THAT(v4, Contains("tcp 10.1.0.2:* -> 10.2.0.2:9090"));
  ASSERT_THAT(Flows(Family::kV6), Contains("tcp [fd00:1::2]:* -> [fd00:2::2]:8080"));

  // The "policy change": new packets to 8080 and 5353 are dropped from now on. Established
  // flows still pass: that is what revocation is for.
  r = Nft(R"(add rule inet lab forward tcp dport 8080 drop
add rule inet lab forward udp dport 5353 drop
)");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Lab::Deliver(tcp, "still established"));
  EXPECT_TRUE(Lab::Deliver(udp, "still established"));

  ASSERT_TRUE(Revoke({Port("10.1.0.2", "10.2.0.2", 6, 8080), Port("fd00:1::2", "fd00:2::2", 6, 8080),
                      Port("10.1.0.2", "10.2.0.2", 17, 5353)})
                  .ok());

  const std::vector<std::string> after4 = Flows(Family::kV4);
  EXPECT_THAT(after4, Not(Contains("tcp 10.1.0.2:* -> 10.2.0.2:8080")));
  EXPECT_THAT(after4, Not(Contains("udp 10.1.0.2:* -> 10.2.0.2:5353")));
  EXPECT_THAT(after4, Contains("tcp 10.1.0.2:* -> 10.2.0.2:9090"));
  EXPECT_THAT(Flows(Family::kV6), Not(Contains("tcp [fd00:1::2]:* -> [fd00:2::2]:8080")));

  EXPECT_FALSE(Lab::Deliver(tcp, "revoked")) << "a revoked TCP flow must stop";
  EXPECT_FALSE(Lab::Deliver(tcp6, "revoked")) << "a revoked TCP flow must stop";
  EXPECT_FALSE(Lab::Deliver(udp, "revoked")) << "a revoked UDP flow must stop";
  EXPECT_TRUE(Lab::Deliver(other, "untouched"));
  EXPECT_THAT(Flows(Family::kV4), Contains("tcp 10.1.0.2:* -> 10.2.0.2:9090"));
}

// The whole path: compiled programs committed with nft, a policy change as a Diff, filters from
// that Diff, the new program deciding what stays.
TEST_F(ConntrackKernelTest, PolicyChangeRevokesWhatItDenies) {
  auto compile = [](const std::string& policy_yaml) {
    compiler::CompileOptions options;
    options.node_name = "n1";
    absl::StatusOr<nft::Program> p =
        compiler::Compile(StateOf({lab::kShopPods, policy_yaml}), options);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : nft::Program();
  };
  const nft::Program before =
      compile(ShopServerPolicy("[{port: 8080}, {port: 9090}, {port: 5353, protocol: UDP}]"));
  const nft::Program after = compile(ShopServerPolicy("[{port: 9090}]"));

  CmdResult r = Nft(nft::FullReplace(before).ToNftText());
  ASSERT_EQ(r.status, 0) << r.output;
  Lab::Conn tcp = lab_.Tcp("10.2.0.2", 8080);
  ASSERT_TRUE(tcp.ok) << tcp.msg;
  Lab::Conn tcp6 = lab_.Tcp("fd00:2::2", 8080);
  ASSERT_TRUE(tcp6.ok) << tcp6.msg;
  Lab::Conn udp = lab_.Udp("10.2.0.2", 5353);
  ASSERT_TRUE(udp.ok) << udp.msg;
  Lab::Conn kept = lab_.Tcp("10.2.0.2", 9090);
  ASSERT_TRUE(kept.ok) << kept.msg;
  Lab::Conn kept6 = lab_.Tcp("fd00:2::2", 9090);
  ASSERT_TRUE(kept6.ok) << kept6.msg;
  for (const Lab::Conn* c : {&tcp, &tcp6, &kept, &kept6}) ASSERT_TRUE(Lab::Deliver(*c, "hello"));
  ASSERT_TRUE(Lab::Deliver(udp, "hello", /*reply=*/true));

  const nft::Transaction change = nft::Diff(before, after);
  r = Nft(change.ToNftText());
  ASSERT_EQ(r.status, 0) << r.output << "\n" << change.ToNftText();
  EXPECT_TRUE(Lab::Deliver(tcp, "established survives the commit"));

  const RevocationPlan plan = RevocationPlan::Build(before, change);
  const std::vector<FlowFilter> filters = plan.Expand();
  std::vector<std::string> texts;
  for (const FlowFilter& f : filters) texts.push_back(f.ToString());
  EXPECT_THAT(texts, ::testing::UnorderedElementsAre("10.1.0.2 -> 10.2.0.2 tcp dport 8080",
                                                     "fd00:1::2 -> fd00:2::2 tcp dport 8080",
                                                     "10.1.0.2 -> 10.2.0.2 udp dport 5353",
                                                     "fd00:1::2 -> fd00:2::2 udp dport 5353"));
  absl::StatusOr<std::unique_ptr<KernelTable>> table = KernelTable::Open();
  ASSERT_TRUE(table.ok()) << table.status();
  RevokeOptions options;
  options.keep = [&](const Flow& f) { return StillAllowed(after, f); };
  absl::StatusOr<std::vector<IpAddr>> host = HostAddresses();
  ASSERT_TRUE(host.ok()) << host.status();
  options.host_addresses = *host;
  absl::StatusOr<RevokeReport> report = RevokePlan(table->get(), plan, options);
  ASSERT_TRUE(report.ok()) << report.status();
  std::vector<std::string> deleted;
  for (const Flow& f : report->deleted) {
    deleted.push_back(absl::StrCat(f.ToString().substr(0, 3), " -> ", f.dst.ToString(), ":", f.dport));
  }
  EXPECT_THAT(deleted, ::testing::UnorderedElementsAre("tcp -> 10.2.0.2:8080", "udp -> 10.2.0.2:5353",
                                                       "tcp -> fd00:2::2:8080"));
  EXPECT_THAT(report->errors, ::testing::IsEmpty());

  EXPECT_FALSE(Lab::Deliver(tcp, "revoked"));
  EXPECT_FALSE(Lab::Deliver(tcp6, "revoked"));
  EXPECT_FALSE(Lab::Deliver(udp, "revoked"));
  EXPECT_TRUE(Lab::Deliver(kept, "still allowed"));
  EXPECT_TRUE(Lab::Deliver(kept6, "still allowed"));
}

}  // namespace
}  // namespace netpol::conntrack
