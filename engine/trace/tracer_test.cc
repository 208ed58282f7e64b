// The tracer against hand-built programs: the kernel's walk semantics the
// differential test relies on.
#include "engine/trace/tracer.h"

#include <functional>
#include <string>

#include "gtest/gtest.h"

namespace netpol::trace {
namespace {

using nft::Chain;
using nft::Element;
using nft::FieldType;
using nft::FieldValue;
using nft::LookupMatch;
using nft::Program;
using nft::Rule;
using nft::Selector;
using nft::Verdict;

IpAddr Ip(const std::string& text) {
  absl::StatusOr<IpAddr> a = IpAddr::Parse(text);
  EXPECT_TRUE(a.ok()) << text;
  return a.value_or(IpAddr());
}

Rule R(std::vector<nft::Match> m, std::optional<Verdict> v) {
  Rule r;
  r.matches = std::move(m);
  r.verdict = std::move(v);
  return r;
}

LookupMatch L(std::vector<Selector> key, std::string set, bool vmap = false, bool negate = false) {
  LookupMatch m;
  m.key = std::move(key);
  m.set = std::move(set);
  m.vmap = vmap;
  m.negate = negate;
  return m;
}

Chain Base(std::vector<Rule> rules, bool policy_drop = false) {
  Chain c;
  c.name = "base";
  c.base = nft::BaseChainSpec{nft::Hook::kForward, 0, policy_drop};
  c.rules = std::move(rules);
  return c;
}

Chain Regular(const std::string& name, std::vector<Rule> rules) {
  Chain c;
  c.name = name;
  c.rules = std::move(rules);
  return c;
}

void AddSet(Program* p, const std::string& name, std::vector<FieldType> key, bool interval,
            bool vmap, std::vector<Element> els) {
  nft::Set s;
  s.name = name;
  s.key = std::move(key);
  s.interval = interval;
  s.vmap = vmap;
  p->sets[name] = s;
  p->elements[name] = std::move(els);
}

Packet Tcp(const std::string& src, const std::string& dst, uint16_t port,
           CtState ct = CtState::kNew) {
  Packet p;
  p.src = Ip(src);
  p.dst = Ip(dst);
  p.l4proto = 6;
  p.dport = port;
  p.ct = ct;
  return p;
}

struct Case {
  std::string name;
  std::function<Program()> program;
  Packet packet;
  bool accepted;
};

class TraceTest : public ::testing::TestWithParam<Case> {};

TEST_P(TraceTest, Verdict) {
  Program p = GetParam().program();
  absl::StatusOr<TraceResult> r = Trace(p, "base", GetParam().packet);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted, GetParam().accepted) << r->ToString();
}

Program AcceptInJumpedChain() {
  Program p;
  p.chains["base"] = Base({R({}, Verdict::Jump("a")), R({}, Verdict::Drop())});
  p.chains["a"] = Regular("a", {R({}, Verdict::Accept())});
  return p;
}

Program ReturnResumesCaller() {
  Program p;
  p.chains["base"] = Base({R({}, Verdict::Jump("a")), R({}, Verdict::Drop())});
  p.chains["a"] = Regular("a", {R({}, Verdict::Return()), R({}, Verdict::Accept())});
  return p;
}

Program EndOfChainResumesCaller() {
  Program p;
  p.chains["base"] = Base({R({}, Verdict::Jump("a")), R({}, Verdict::Drop())});
  p.chains["a"] = Regular("a", {});
  return p;
}

Program GotoFromBaseEndsInPolicy() {
  Program p;
  p.chains["base"] = Base({R({}, Verdict::Goto("a")), R({}, Verdict::Accept())}, true);
  p.chains["a"] = Regular("a", {});
  return p;
}

// egress chain allows (return), ingress chain denies: both evaluated in one
// walk.
Program DispatchBothSides() {
  Program p;
  AddSet(&p, "eg", {FieldType::kIpv4Addr}, false, true,
         {Element{{FieldValue::Addr(Ip("10.0.0.1"))}, Verdict::Jump("eg-a"), ""}});
  AddSet(&p, "in", {FieldType::kIpv4Addr}, false, true,
         {Element{{FieldValue::Addr(Ip("10.0.0.2"))}, Verdict::Jump("in-b"), ""}});
  AddSet(&p, "ports", {FieldType::kInetProto, FieldType::kInetService}, true, false,
         {Element{{FieldValue::NumRange(6, 6), FieldValue::NumRange(80, 90)}, {}, ""}});
  p.chains["base"] = Base({R({L({Selector::kIpSaddr}, "eg", true)}, std::nullopt),
                           R({L({Selector::kIpDaddr}, "in", true)}, std::nullopt)});
  p.chains["eg-a"] = Regular("eg-a", {R({}, Verdict::Return())});
  p.chains["in-b"] =
      Regular("in-b", {R({L({Selector::kL4Proto, Selector::kThDport}, "ports")}, Verdict::Return()),
                       R({}, Verdict::Drop())});
  return p;
}

Program ExactAddressSet() {
  Program p;
  AddSet(&p, "s", {FieldType::kIpv4Addr, FieldType::kInetProto, FieldType::kInetService}, false,
         false,
         {Element{
             {FieldValue::Addr(Ip("10.0.0.1")), FieldValue::Num(6), FieldValue::Num(80)}, {}, ""}});
  p.chains["base"] = Base({R({L({Selector::kIpSaddr, Selector::kL4Proto, Selector::kThDport}, "s")},
                             Verdict::Accept())},
                          true);
  return p;
}

Program IntervalAddressSet() {
  Program p;
  AddSet(
      &p, "s", {FieldType::kIpv6Addr, FieldType::kInetProto}, true, false,
      {Element{{FieldValue::AddrRange(Ip("fd00::"), Ip("fd00::ff")), FieldValue::NumRange(0, 255)},
               {},
               ""}});
  p.chains["base"] =
      Base({R({L({Selector::kIp6Saddr, Selector::kL4Proto}, "s")}, Verdict::Accept())}, true);
  return p;
}

Program NegatedLookup() {
  Program p;
  AddSet(&p, "s", {FieldType::kIpv4Addr}, false, false,
         {Element{{FieldValue::Addr(Ip("10.0.0.1"))}, {}, ""}});
  p.chains["base"] = Base({R({L({Selector::kIpSaddr}, "s", false, true)}, Verdict::Drop())});
  return p;
}

Program Established() {
  Program p;
  nft::CtStateMatch ct;
  ct.established = true;
  p.chains["base"] = Base({R({ct}, Verdict::Accept())}, true);
  return p;
}

Program NeighbourDiscovery() {
  Program p;
  nft::Icmpv6TypeMatch nd;
  nd.lo = 133;
  nd.hi = 136;
  p.chains["base"] = Base({R({nd}, Verdict::Accept())}, true);
  return p;
}

Packet Nd(uint8_t type) {
  Packet p;
  p.src = Ip("fe80::1");
  p.dst = Ip("fe80::2");
  p.l4proto = 58;
  p.icmpv6_type = type;
  return p;
}

const Case kCases[] = {
    {"AcceptInJumpedChainEndsTheWalk", AcceptInJumpedChain, Tcp("10.0.0.1", "10.0.0.2", 80), true},
    {"ReturnResumesTheCaller", ReturnResumesCaller, Tcp("10.0.0.1", "10.0.0.2", 80), false},
    {"EndOfRegularChainResumesTheCaller", EndOfChainResumesCaller, Tcp("10.0.0.1", "10.0.0.2", 80),
     false},
    {"GotoFromBaseEndsInThePolicy", GotoFromBaseEndsInPolicy, Tcp("10.0.0.1", "10.0.0.2", 80),
     false},
    {"BothSidesAllow", DispatchBothSides, Tcp("10.0.0.1", "10.0.0.2", 85), true},
    {"EgressAllowsIngressDenies", DispatchBothSides, Tcp("10.0.0.1", "10.0.0.2", 91), false},
    {"VmapMissContinues", DispatchBothSides, Tcp("10.0.0.3", "10.0.0.4", 91), true},
    {"ExactSetHit", ExactAddressSet, Tcp("10.0.0.1", "10.0.0.9", 80), true},
    {"ExactSetMissOnPort", ExactAddressSet, Tcp("10.0.0.1", "10.0.0.9", 81), false},
    {"Ip4SelectorNeverMatchesIpv6", ExactAddressSet, Tcp("fd00::1", "fd00::9", 80), false},
    {"IntervalSetInside", IntervalAddressSet, Tcp("fd00::7f", "fd00::1:1", 1), true},
    {"IntervalSetOutside", IntervalAddressSet, Tcp("fd00::100", "fd00::1:1", 1), false},
    {"NegatedLookupMatchesNonMembers", NegatedLookup, Tcp("10.0.0.2", "10.0.0.9", 80), false},
    {"NegatedLookupSkipsMembers", NegatedLookup, Tcp("10.0.0.1", "10.0.0.9", 80), true},
    {"EstablishedAccepted", Established, Tcp("10.0.0.1", "10.0.0.2", 1, CtState::kEstablished),
     true},
    {"NewNotEstablished", Established, Tcp("10.0.0.1", "10.0.0.2", 1), false},
    {"NeighbourSolicitation", NeighbourDiscovery, Nd(135), true},
    {"EchoRequestIsNotNd", NeighbourDiscovery, Nd(128), false},
};

INSTANTIATE_TEST_SUITE_P(Walk, TraceTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

// `meta skuid >= 0 fib saddr type local accept`, then the original source
// looked up with the destination, then drop: netpol's postrouting exemptions.
Program NodeTrafficAndSelf() {
  Program p;
  p.chains["base"] =
      Base({R({nft::LocalSocketMatch{}, nft::FibLocalMatch{true}}, Verdict::Accept()),
            R({L({Selector::kCtOrigIpSaddr, Selector::kIpDaddr}, "self")}, Verdict::Accept()),
            R({}, Verdict::Drop())});
  AddSet(&p, "self", {FieldType::kIpv4Addr, FieldType::kIpv4Addr}, false, false,
         {Element{{FieldValue::Addr(Ip("10.0.0.2")), FieldValue::Addr(Ip("10.0.0.2"))}, {}, ""}});
  return p;
}

TEST(TraceContextTest, SocketFibAndOriginalSource) {
  Program p = NodeTrafficAndSelf();
  struct {
    const char* name;
    bool socket, src_local;
    std::optional<std::string> orig;
    bool accepted;
  } cases[] = {
      {"node socket, node address", true, true, std::nullopt, true},
      {"masqueraded forward: node address, no socket", false, true, std::nullopt, false},
      {"socket with a foreign address", true, false, std::nullopt, false},
      {"masqueraded hairpin: original source is the pod", false, true, "10.0.0.2", true},
      {"another original source", false, true, "10.0.0.3", false},
  };
  for (const auto& c : cases) {
    Packet pkt = Tcp("10.0.0.1", "10.0.0.2", 80);
    pkt.local_socket = c.socket;
    pkt.src_local = c.src_local;
    if (c.orig) pkt.orig_src = Ip(*c.orig);
    absl::StatusOr<TraceResult> r = Trace(p, "base", pkt);
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    EXPECT_EQ(r->accepted, c.accepted) << c.name << "\n" << r->ToString();
  }
  // An IPv6 packet never matches `ct original ip saddr`.
  Packet v6 = Tcp("fd00::1", "fd00::2", 80);
  v6.orig_src = Ip("fd00::2");
  absl::StatusOr<TraceResult> r = Trace(p, "base", v6);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->accepted);
}

TEST(TraceExplainTest, NegatedLookupIsShownNegated) {
  absl::StatusOr<TraceResult> r =
      Trace(NegatedLookup(), "base", Tcp("10.0.0.2", "10.0.0.3", 80), /*explain=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->accepted);
  EXPECT_NE(r->ToString().find("ip saddr != @s"), std::string::npos) << r->ToString();
}

TEST(TraceErrorsTest, MissingChainAndSetAndLoop) {
  Program p;
  p.chains["base"] = Base({R({}, Verdict::Jump("nowhere"))});
  EXPECT_EQ(Trace(p, "base", Tcp("10.0.0.1", "10.0.0.2", 1)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Trace(p, "other", Tcp("10.0.0.1", "10.0.0.2", 1)).status().code(),
            absl::StatusCode::kNotFound);
  p.chains["base"] = Base({R({L({Selector::kIpSaddr}, "missing")}, Verdict::Accept())});
  EXPECT_EQ(Trace(p, "base", Tcp("10.0.0.1", "10.0.0.2", 1)).status().code(),
            absl::StatusCode::kNotFound);
  p.chains["base"] = Base({R({}, Verdict::Jump("a"))});
  p.chains["a"] = Regular("a", {R({}, Verdict::Jump("a"))});
  EXPECT_EQ(Trace(p, "base", Tcp("10.0.0.1", "10.0.0.2", 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  nft::IfnameMatch ifname;
  ifname.name = "eth0";
  p.chains["base"] = Base({R({ifname}, Verdict::Accept())});
  EXPECT_EQ(Trace(p, "base", Tcp("10.0.0.1", "10.0.0.2", 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace netpol::trace
