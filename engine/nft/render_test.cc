// Listing-form rendering without a kernel. The golden below is what Debian's nft 1.0.6 printed
// for `nft list table inet netpol` after loading FullReplace(ExampleProgram()).ToNftText() into
// a fresh network namespace; render_kernel_test re-checks such output against the kernel.
#include <string>
#include <vector>

#include "engine/nft/program.h"
#include "engine/nft/random_program.h"
#include "engine/nft/test_util.h"
#include "engine/nft/transaction.h"
#include "gtest/gtest.h"

namespace netpol::nft {
namespace {

using namespace ::netpol::nft::testing;  // NOLINT: test shorthands

constexpr char kExampleListing[] = R"nft(table inet netpol {
	comment "managed by netpol"
	map dispatch4 {
		type ipv4_addr : verdict
		comment "pod ip to chain"
		elements = { 10.0.0.1 : jump pod-ns-a, 10.0.0.2 comment "x" : goto leaf,
			     10.0.0.3 : drop }
	}

	map dispatch6 {
		type ipv6_addr . inet_proto . inet_service : verdict
		flags interval
		elements = { fd00::/64 . tcp . 1-1024 : accept,
			     fd01::5 . udp . 53 comment "dns" : jump leaf }
	}

	set exact {
		type ipv4_addr . inet_proto . inet_service
		elements = { 10.0.1.0 . tcp . 256,
			     10.0.0.2 . udp . 53 comment "pod a/b",
			     10.0.0.1 . tcp . 80,
			     10.0.0.1 . sctp . 80 }
	}

	set in-peers {
		type ipv4_addr . inet_proto . inet_service
		flags interval
		comment "ipBlock peers"
		elements = { 0.0.0.0-9.255.255.255 . 0-255 . 1-65535,
			     10.0.0.0/8 . tcp . 80-90 comment "x",
			     172.16.0.1 . udp . 53,
			     192.168.1.0-192.168.1.5 . sctp . 0-65535 }
	}

	set pods4 {
		type ipv4_addr
		elements = { 9.9.9.9, 10.0.0.1 comment "ns/a",
			     10.0.0.2, 10.0.0.3,
			     255.255.255.255 }
	}

	set pods6 {
		type ipv6_addr
		elements = { ::ffff:1.2.3.4,
			     2001:db8:0:1::1,
			     fd00::1 }
	}

	set ports {
		type inet_service
		elements = { 1, 22, 53, 80, 443,
			     8080, 65535 }
	}

	set pp {
		type inet_proto . inet_service
		flags interval
		elements = { tcp . 1-1023,
			     udp . 53 }
	}

	chain forward {
		comment "bridged and routed pod traffic"
		type filter hook forward priority filter; policy accept;
		ct state established,related accept comment "replies"
		ct state invalid counter packets 0 bytes 0 drop
		ip daddr vmap @dispatch4 comment "dispatch v4"
		ip6 daddr . meta l4proto . th dport vmap @dispatch6
	}

	chain input {
		type filter hook input priority filter - 10; policy drop;
		iifname "cni0" fib saddr type local accept
		icmpv6 type 133-136 accept comment "neighbour discovery"
		icmpv6 type echo-request accept
		icmpv6 type nd-neighbor-solicit accept
		meta nfproto ipv4 fib daddr type local return
	}

	chain leaf {
	}

	chain pod-ns-a {
		comment "pod ns/a"
		ip saddr . meta l4proto . th dport @in-peers return comment "policy ns/allow rule 0"
		ct state established ip saddr != @pods4 counter packets 0 bytes 0 drop
		ip6 saddr @pods6 goto leaf
		meta l4proto . th dport @pp jump leaf
		oifname "veth*" th dport @ports accept
		counter packets 0 bytes 0 comment "count"
	}
}
)nft";

TEST(RenderProgramTest, ExampleMatchesNftListing) {
  EXPECT_EQ(RenderProgram(ExampleProgram()), kExampleListing);
}

TEST(RenderProgramTest, StatelessCountersHaveNoNumbers) {
  RenderOptions stateless;
  stateless.stateless = true;
  std::string text = RenderProgram(ExampleProgram(), stateless);
  EXPECT_EQ(text.find("packets"), std::string::npos);
  EXPECT_NE(text.find("\t\tct state invalid counter drop\n"), std::string::npos);
}

TEST(RenderProgramTest, EmptyTable) {
  Program p;
  p.table = "x";
  EXPECT_EQ(RenderProgram(p), "table inet x {\n}\n");
}

struct RuleCase {
  std::string name;
  Rule rule;
  std::string listing;
};

class RenderRuleTest : public ::testing::TestWithParam<RuleCase> {};

TEST_P(RenderRuleTest, AsNftPrintsIt) {
  EXPECT_EQ(RenderRule(GetParam().rule), GetParam().listing);
}

CtStateMatch AllStates() {
  CtStateMatch m;
  m.new_ = m.untracked = m.related = m.invalid = m.established = true;
  return m;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RenderRuleTest,
    ::testing::Values(
        RuleCase{"CtStatesInBitOrder", MakeRule({AllStates()}, Verdict::Accept()),
                 "ct state invalid,established,related,new,untracked accept"},
        RuleCase{"NfprotoAloneIsPrinted", MakeRule({NfProtoMatch{Family::kV6}}, Verdict::Drop()),
                 "meta nfproto ipv6 drop"},
        RuleCase{"NfprotoBeforeIpLookupIsHidden",
                 MakeRule({NfProtoMatch{Family::kV4}, EstablishedRelated(),
                           Lookup({Selector::kIpDaddr}, "s")},
                          Verdict::Accept()),
                 "ct state established,related ip daddr @s accept"},
        RuleCase{"NfprotoAfterIpLookupIsPrinted",
                 MakeRule({Lookup({Selector::kIpDaddr}, "s"), NfProtoMatch{Family::kV4}},
                          Verdict::Accept()),
                 "ip daddr @s meta nfproto ipv4 accept"},
        RuleCase{"DuplicateNfprotoPrintsOnce",
                 MakeRule({NfProtoMatch{Family::kV4}, NfProtoMatch{Family::kV4},
                           Lookup({Selector::kIpSaddr}, "s")},
                          Verdict::Accept()),
                 "meta nfproto ipv4 ip saddr @s accept"},
        RuleCase{
            "NfprotoIpv6BeforeIcmpv6IsHidden",
            MakeRule({NfProtoMatch{Family::kV6}, Icmpv6TypeMatch{128, 128}}, Verdict::Accept()),
            "icmpv6 type echo-request accept"},
        RuleCase{"NfprotoIpv4BeforeIcmpv6IsPrinted",
                 MakeRule({NfProtoMatch{Family::kV4}, Icmpv6TypeMatch{1, 1}}, Verdict::Accept()),
                 "meta nfproto ipv4 icmpv6 type destination-unreachable accept"},
        RuleCase{"Icmpv6RangeIsNumeric", MakeRule({Icmpv6TypeMatch{133, 136}}, Verdict::Accept()),
                 "icmpv6 type 133-136 accept"},
        RuleCase{"Icmpv6UnnamedTypeIsNumeric",
                 MakeRule({Icmpv6TypeMatch{200, 200}}, Verdict::Accept()),
                 "icmpv6 type 200 accept"},
        RuleCase{"ThDportAfterIcmpv6IsIcmpv6Checksum",
                 MakeRule({Icmpv6TypeMatch{1, 4},
                           Lookup({Selector::kL4Proto, Selector::kThDport}, "s", true)},
                          Verdict::Drop()),
                 "icmpv6 type 1-4 meta l4proto . icmpv6 checksum != @s drop"},
        RuleCase{"VmapConcat",
                 MakeRule({VmapLookup({Selector::kIp6Daddr, Selector::kL4Proto, Selector::kThDport},
                                      "m")},
                          std::nullopt, "dispatch"),
                 "ip6 daddr . meta l4proto . th dport vmap @m comment \"dispatch\""},
        RuleCase{
            "InterfacesAndFib",
            MakeRule({IfnameMatch{true, "cni0"}, IfnameMatch{false, "veth*"}, FibLocalMatch{true},
                      FibLocalMatch{false}},
                     Verdict::Jump("x")),
            "iifname \"cni0\" oifname \"veth*\" fib saddr type local fib daddr type local jump x"},
        RuleCase{"CounterOnly", MakeRule({}, std::nullopt, "", true), "counter packets 0 bytes 0"},
        RuleCase{"LimitLogDrop",
                 [] {
                   Rule r = MakeRule({}, Verdict::Drop(), "d");
                   r.limit = LimitStmt{10, 20};
                   r.log = LogStmt{"deny in-x", 100, 128};
                   return r;
                 }(),
                 "limit rate 10/second burst 20 packets log prefix \"deny in-x\" group 100 snaplen "
                 "128 drop comment \"d\""},
        RuleCase{"DefaultBurstAndBareLog",
                 [] {
                   Rule r = MakeRule({}, Verdict::Return());
                   r.limit = LimitStmt{3, kNftDefaultBurst};
                   r.counter = true;
                   r.log = LogStmt{"", 7, 0};
                   return r;
                 }(),
                 "limit rate 3/second counter packets 0 bytes 0 log group 7 return"}),
    [](const ::testing::TestParamInfo<RuleCase>& info) { return info.param.name; });

TEST(RenderElementTest, Forms) {
  Set s = MakeSet("s", kV4ProtoPort, true);
  EXPECT_EQ(RenderElement(s, E({AR("10.0.0.0", "10.0.255.255"), N(6), NR(80, 90)}, "c")),
            "10.0.0.0/16 . tcp . 80-90 comment \"c\"");
  EXPECT_EQ(RenderElement(s, E({AR("10.0.0.1", "10.0.0.2"), NR(6, 17), N(0)})),
            "10.0.0.1-10.0.0.2 . 6-17 . 0");
  EXPECT_EQ(RenderElement(s, E({AR("0.0.0.0", "255.255.255.255"), N(0), N(1)})),
            "0.0.0.0/0 . ip . 1");
  Set m = MakeSet("m", {FieldType::kIpv6Addr}, false, true);
  EXPECT_EQ(RenderElement(m, EV({A("fd00::1")}, Verdict::Goto("c"), "pod")),
            "fd00::1 comment \"pod\" : goto c");
}

TEST(RenderKeyTypeTest, Concatenation) {
  EXPECT_EQ(RenderKeyType(kV4ProtoPort), "ipv4_addr . inet_proto . inet_service");
}

}  // namespace
}  // namespace netpol::nft
