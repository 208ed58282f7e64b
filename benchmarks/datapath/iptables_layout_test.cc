#include "benchmarks/datapath/iptables_layout.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "benchmarks/workload/workload.h"
#include "gtest/gtest.h"

namespace netpol::bench {
namespace {

int CountLines(const std::string& text, const std::string& needle) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) n += absl::StrContains(line, needle);
  return n;
}

TEST(IptablesLayoutTest, DatapathServerJumpsToEveryPolicy) {
  absl::StatusOr<State> s = DatapathState(4, 20, 1);
  ASSERT_TRUE(s.ok()) << s.status();
  IptablesLayout l = LayOutIptables(*s, kDatapathNode);
  // Only the server is isolated (ingress): one dispatch rule, one per-pod chain.
  EXPECT_EQ(CountLines(l.iptables_restore, "-A NETPOL-FORWARD -d 10.244.1.18/32 -j NPPI-"), 1)
      << l.iptables_restore;
  EXPECT_EQ(CountLines(l.iptables_restore, "-A NETPOL-FORWARD -s "), 0);
  EXPECT_EQ(CountLines(l.iptables_restore, "-A NPPI-"), 4 + 2);  // 4 jumps, drop, clear
  EXPECT_EQ(CountLines(l.iptables_restore, ":NPI-"), 4);
  // The allow-client peer set holds the client's address; the port is 8080.
  EXPECT_EQ(CountLines(l.ipset_restore, " 10.244.1.17"), 1) << l.ipset_restore;
  EXPECT_EQ(CountLines(l.iptables_restore, "-p tcp --dport 8080 -j MARK"), 2);  // p1 + client
  // Named port http resolves on the server to 8080; the range and the ipBlock except are there.
  EXPECT_EQ(CountLines(l.ipset_restore, "10.244.1.18,tcp:8080"), 1);
  EXPECT_EQ(CountLines(l.iptables_restore, "--dport 8000:8100"), 1);
  EXPECT_EQ(CountLines(l.ipset_restore, " nomatch"), 0);  // 4 policies: k=3 is allow-client
  EXPECT_TRUE(absl::EndsWith(l.iptables_restore, "COMMIT\n"));
}

TEST(IptablesLayoutTest, IpBlocksUseNomatchExcepts) {
  absl::StatusOr<State> s = DatapathState(8, 0, 1);
  ASSERT_TRUE(s.ok()) << s.status();
  IptablesLayout l = LayOutIptables(*s, kDatapathNode);
  EXPECT_EQ(CountLines(l.ipset_restore, "hash:net"), 1);  // k=3 (k=7 is allow-client)
  EXPECT_EQ(CountLines(l.ipset_restore, " nomatch"), 1);
  EXPECT_EQ(l.sets, CountLines(l.ipset_restore, "create "));
}

TEST(IptablesLayoutTest, NoPoliciesNoPodChains) {
  absl::StatusOr<State> s = DatapathState(0, 5, 1);
  ASSERT_TRUE(s.ok()) << s.status();
  IptablesLayout l = LayOutIptables(*s, kDatapathNode);
  EXPECT_EQ(l.sets, 0);
  EXPECT_EQ(CountLines(l.iptables_restore, "NPP"), 0);
  EXPECT_EQ(CountLines(l.iptables_restore, "-A FORWARD -j NETPOL-FORWARD"), 1);
}

TEST(IptablesLayoutTest, EgressPoliciesGetSourceDispatch) {
  absl::StatusOr<WorkloadSpec> spec = ParseTier("T1");
  ASSERT_TRUE(spec.ok());
  absl::StatusOr<State> s = Generate(*spec);
  ASSERT_TRUE(s.ok());
  IptablesLayout l = LayOutIptables(*s, kMeasuredNode);
  EXPECT_GT(CountLines(l.iptables_restore, "-A NETPOL-FORWARD -s "), 0);
  EXPECT_GT(CountLines(l.iptables_restore, "-A NETPOL-FORWARD -d "), 0);
  // Egress to the internet: 0.0.0.0/0 except 10/8 as two halves plus a nomatch.
  EXPECT_GT(CountLines(l.ipset_restore, "add "), 0);
  EXPECT_GT(CountLines(l.ipset_restore, "10.0.0.0/8 nomatch"), 0);
}

}  // namespace
}  // namespace netpol::bench
