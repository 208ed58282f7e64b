// Golden nft text for representative policies, and the layout's promises:
// determinism, shared groups, element-only pod churn, names and comments within
// nft's limits, errors.
#include "engine/compiler/compiler.h"

#include <functional>
#include <optional>
#include <string>
#include <variant>

#include "absl/strings/str_cat.h"
#include "engine/compiler/testutil.h"
#include "engine/nft/fake.h"
#include "engine/nft/transaction.h"
#include "engine/trace/tracer.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

using testing::Add;
using testing::BlockPeer;
using testing::Ip;
using testing::MakeNamespace;
using testing::MakePod;
using testing::NamedPort;
using testing::NamespacePeer;
using testing::PodPeer;
using testing::Sel;
using testing::TcpPort;
using trace::Packet;
using trace::Trace;
using trace::TraceResult;

constexpr char kNode[] = "node-1";

CompileOptions Opts() {
  CompileOptions o;
  o.node_name = kNode;
  return o;
}

nft::Program MustCompile(const State& s, const CompileOptions& o = Opts()) {
  absl::StatusOr<nft::Program> p = Compile(s, o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return nft::Program();
  absl::Status valid = nft::ValidateProgram(*p);
  EXPECT_TRUE(valid.ok()) << valid;
  return *std::move(p);
}

// Renders only what policies add to the static skeleton: group chains and their
// sets, and the dispatch maps and self sets with their elements.
std::string RenderGroups(const nft::Program& p) {
  nft::Program q = p;
  q.chains.erase(kForwardChain);
  q.chains.erase(kInputChain);
  q.chains.erase(kOutputChain);
  q.chains.erase(kPostroutingChain);
  return nft::RenderProgram(q);
}

NetworkPolicy Policy(const std::string& ns, const std::string& name, LabelSelector pods,
                     bool ingress, bool egress) {
  NetworkPolicy p;
  p.namespace_name = ns;
  p.name = name;
  p.pod_selector = std::move(pods);
  p.ingress_type = ingress;
  p.egress_type = egress;
  return p;
}

ContainerPort CPort(const std::string& name, int32_t port, Protocol proto = Protocol::kTCP) {
  ContainerPort c;
  c.name = name;
  c.container_port = port;
  c.protocol = proto;
  return c;
}

// Two namespaces: x (web pods on this node, a db pod remote), y (team=blue, a
// client).
State BaseState() {
  State s;
  Add(&s, MakeNamespace("x", {{"team", "red"}}));
  Add(&s, MakeNamespace("y", {{"team", "blue"}}));
  Add(&s, MakePod("x", "web-1", {{"app", "web"}}, kNode, {"10.0.0.2", "fd00::2"},
                  {CPort("http", 8080)}));
  Add(&s, MakePod("x", "db", {{"app", "db"}}, "node-2", {"10.0.1.3"}, {CPort("pg", 5432)}));
  Add(&s, MakePod("y", "client", {{"app", "client"}}, "node-2", {"10.0.1.4", "fd00::1:4"}));
  return s;
}

struct GoldenCase {
  std::string name;
  std::function<void(State*)> setup;
  std::string want;  // RenderGroups text
};

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenTest, RendersExpectedGroups) {
  State s = BaseState();
  GetParam().setup(&s);
  nft::Program p = MustCompile(s);
  EXPECT_EQ(RenderGroups(p), GetParam().want) << "actual:\n" << RenderGroups(p);
}

Rule From(std::vector<Peer> peers, std::vector<PolicyPort> ports = {}) {
  Rule r;
  r.peers = std::move(peers);
  r.ports = std::move(ports);
  return r;
}

PolicyPort Port(Protocol proto, int32_t port, std::optional<int32_t> end = std::nullopt) {
  PolicyPort p;
  p.protocol = proto;
  p.port = port;
  p.end_port = end;
  return p;
}

const GoldenCase kGolden[] = {
    {"DefaultDenyIngress", [](State* s) { Add(s, Policy("x", "deny", Sel({}), true, false)); },
     R"(table inet netpol {
	comment "Kubernetes NetworkPolicy for node node-1, managed by netpol"
	map egress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	map egress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	map ingress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { 10.0.0.2 comment "x/web-1" : jump in-x_deny-3d13b7da }
	}

	map ingress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { fd00::2 comment "x/web-1" : jump in-x_deny-3d13b7da }
	}

	set self-v4 {
		type ipv4_addr . ipv4_addr
		comment "local isolated pods: address . same address"
		elements = { 10.0.0.2 . 10.0.0.2 }
	}

	set self-v6 {
		type ipv6_addr . ipv6_addr
		comment "local isolated pods: address . same address"
		elements = { fd00::2 . fd00::2 }
	}

	chain in-x_deny-3d13b7da {
		comment "ingress of pods selected by x/deny"
		drop comment "no ingress rule of x/deny"
	}
}
)"},
    {"AllowFromNamespaceSelector",
     [](State* s) {
       NetworkPolicy p = Policy("x", "allow-blue", Sel({{"app", "web"}}), true, false);
       p.ingress.push_back(From({NamespacePeer(Sel({{"team", "blue"}}))}));
       Add(s, p);
     },
     R"(table inet netpol {
	comment "Kubernetes NetworkPolicy for node node-1, managed by netpol"
	map egress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	map egress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	set in-set-5bbe1a93c047efc1-a6 {
		type ipv6_addr
		comment "peer pods, any port: namespaces team=blue"
		elements = { fd00::1:4 }
	}

	set in-set-936caf77a40ee260-a4 {
		type ipv4_addr
		comment "peer pods, any port: namespaces team=blue"
		elements = { 10.0.1.4 }
	}

	map ingress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { 10.0.0.2 comment "x/web-1" : jump in-x_allow-blue-265ea362 }
	}

	map ingress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { fd00::2 comment "x/web-1" : jump in-x_allow-blue-265ea362 }
	}

	set self-v4 {
		type ipv4_addr . ipv4_addr
		comment "local isolated pods: address . same address"
		elements = { 10.0.0.2 . 10.0.0.2 }
	}

	set self-v6 {
		type ipv6_addr . ipv6_addr
		comment "local isolated pods: address . same address"
		elements = { fd00::2 . fd00::2 }
	}

	chain in-x_allow-blue-265ea362 {
		comment "ingress of pods selected by x/allow-blue"
		ip saddr @in-set-936caf77a40ee260-a4 return comment "x/allow-blue ingress[0]"
		ip6 saddr @in-set-5bbe1a93c047efc1-a6 return comment "x/allow-blue ingress[0]"
		drop comment "no ingress rule of x/allow-blue"
	}
}
)"},
    {"IpBlockWithExceptBothFamilies",
     [](State* s) {
       NetworkPolicy p = Policy("x", "blocks", Sel({{"app", "web"}}), true, false);
       p.ingress.push_back(From(
           {BlockPeer("10.0.0.0/16", {"10.0.1.0/24"}), BlockPeer("fd00::/64", {"fd00::1:0/112"})},
           {TcpPort(443)}));
       Add(s, p);
     },
     R"(table inet netpol {
	comment "Kubernetes NetworkPolicy for node node-1, managed by netpol"
	map egress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	map egress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	set in-set-2d3082e863ff4495-rp4 {
		type ipv4_addr . inet_proto . inet_service
		flags interval
		comment "peer ranges . port ranges: 2 static elements"
		elements = { 10.0.0.0/24 . tcp . 443,
			     10.0.2.0-10.0.255.255 . tcp . 443 }
	}

	set in-set-d50306dda426c086-rp6 {
		type ipv6_addr . inet_proto . inet_service
		flags interval
		comment "peer ranges . port ranges: 2 static elements"
		elements = { fd00::/112 . tcp . 443,
			     fd00::2:0-fd00::ffff:ffff:ffff:ffff . tcp . 443 }
	}

	map ingress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { 10.0.0.2 comment "x/web-1" : jump in-x_blocks-528861d3 }
	}

	map ingress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { fd00::2 comment "x/web-1" : jump in-x_blocks-528861d3 }
	}

	set self-v4 {
		type ipv4_addr . ipv4_addr
		comment "local isolated pods: address . same address"
		elements = { 10.0.0.2 . 10.0.0.2 }
	}

	set self-v6 {
		type ipv6_addr . ipv6_addr
		comment "local isolated pods: address . same address"
		elements = { fd00::2 . fd00::2 }
	}

	chain in-x_blocks-528861d3 {
		comment "ingress of pods selected by x/blocks"
		ip saddr . meta l4proto . th dport @in-set-2d3082e863ff4495-rp4 return comment "x/blocks ingress[0]"
		ip6 saddr . meta l4proto . th dport @in-set-d50306dda426c086-rp6 return comment "x/blocks ingress[0]"
		drop comment "no ingress rule of x/blocks"
	}
}
)"},
    {"NamedPortResolvedOnTheLocalPod",
     [](State* s) {
       NetworkPolicy p = Policy("x", "http", Sel({{"app", "web"}}), true, false);
       Peer peer = PodPeer(Sel({{"app", "client"}}));
       peer.namespace_selector = Sel({});
       p.ingress.push_back(From({peer}, {NamedPort("http")}));
       Add(s, p);
     },
     R"(table inet netpol {
	comment "Kubernetes NetworkPolicy for node node-1, managed by netpol"
	map egress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	map egress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	set in-set-43c0b28cb9ae2176-p6 {
		type ipv6_addr . inet_proto . inet_service
		comment "peer pods . port: namespaces {} pods app=client tcp/http=8080"
		elements = { fd00::1:4 . tcp . 8080 }
	}

	set in-set-8a8c60d8d8893a0d-p4 {
		type ipv4_addr . inet_proto . inet_service
		comment "peer pods . port: namespaces {} pods app=client tcp/http=8080"
		elements = { 10.0.1.4 . tcp . 8080 }
	}

	map ingress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { 10.0.0.2 comment "x/web-1" : jump in-x_http-0fa0d875 }
	}

	map ingress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { fd00::2 comment "x/web-1" : jump in-x_http-0fa0d875 }
	}

	set self-v4 {
		type ipv4_addr . ipv4_addr
		comment "local isolated pods: address . same address"
		elements = { 10.0.0.2 . 10.0.0.2 }
	}

	set self-v6 {
		type ipv6_addr . ipv6_addr
		comment "local isolated pods: address . same address"
		elements = { fd00::2 . fd00::2 }
	}

	chain in-x_http-0fa0d875 {
		comment "ingress (http/TCP=8080) of pods selected by x/http"
		ip saddr . meta l4proto . th dport @in-set-8a8c60d8d8893a0d-p4 return comment "x/http ingress[0]"
		ip6 saddr . meta l4proto . th dport @in-set-43c0b28cb9ae2176-p6 return comment "x/http ingress[0]"
		drop comment "no ingress rule of x/http"
	}
}
)"},
    {"EndPortRange",
     [](State* s) {
       NetworkPolicy p = Policy("x", "range", Sel({{"app", "web"}}), true, false);
       p.ingress.push_back(From({BlockPeer("10.0.1.0/24"), PodPeer(Sel({{"app", "db"}}))},
                                {Port(Protocol::kTCP, 8000, 9000)}));
       Add(s, p);
     },
     R"(table inet netpol {
	comment "Kubernetes NetworkPolicy for node node-1, managed by netpol"
	map egress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	map egress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	set in-set-9cb7d73d4a6d69b0-rp4 {
		type ipv4_addr . inet_proto . inet_service
		flags interval
		comment "peer ranges . port ranges: 1 static element, x pods app=db tcp/8000-9000"
		elements = { 10.0.1.0/24 . tcp . 8000-9000 }
	}

	set in-set-f44aabb1c01ef53c-rp6 {
		type ipv6_addr . inet_proto . inet_service
		flags interval
		comment "peer ranges . port ranges: x pods app=db tcp/8000-9000"
	}

	map ingress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { 10.0.0.2 comment "x/web-1" : jump in-x_range-5ae1f209 }
	}

	map ingress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { fd00::2 comment "x/web-1" : jump in-x_range-5ae1f209 }
	}

	set self-v4 {
		type ipv4_addr . ipv4_addr
		comment "local isolated pods: address . same address"
		elements = { 10.0.0.2 . 10.0.0.2 }
	}

	set self-v6 {
		type ipv6_addr . ipv6_addr
		comment "local isolated pods: address . same address"
		elements = { fd00::2 . fd00::2 }
	}

	chain in-x_range-5ae1f209 {
		comment "ingress of pods selected by x/range"
		ip saddr . meta l4proto . th dport @in-set-9cb7d73d4a6d69b0-rp4 return comment "x/range ingress[0]"
		ip6 saddr . meta l4proto . th dport @in-set-f44aabb1c01ef53c-rp6 return comment "x/range ingress[0]"
		drop comment "no ingress rule of x/range"
	}
}
)"},
    {"EgressToDns",
     [](State* s) {
       Add(s, MakeNamespace("kube-system"));
       Add(s, MakePod("kube-system", "coredns", {{"k8s-app", "kube-dns"}}, "node-2",
                      {"10.0.1.10", "fd00::1:a"}, {CPort("dns", 53, Protocol::kUDP)}));
       NetworkPolicy p = Policy("x", "dns-only", Sel({{"app", "web"}}), false, true);
       Peer dns = PodPeer(Sel({{"k8s-app", "kube-dns"}}));
       dns.namespace_selector = Sel({{kNamespaceNameLabel, "kube-system"}});
       p.egress.push_back(From({dns}, {Port(Protocol::kUDP, 53), Port(Protocol::kTCP, 53)}));
       Add(s, p);
     },
     R"(table inet netpol {
	comment "Kubernetes NetworkPolicy for node node-1, managed by netpol"
	set eg-set-000ce3186599b321-p6 {
		type ipv6_addr . inet_proto . inet_service
		comment "peer pods . port: namespaces kubernetes.io/metadata.name=kube-system pods k8s-app=kube-dns tcp/53 +1 more"
		elements = { fd00::1:a . tcp . 53,
			     fd00::1:a . udp . 53 }
	}

	set eg-set-1167f2029496d05e-p4 {
		type ipv4_addr . inet_proto . inet_service
		comment "peer pods . port: namespaces kubernetes.io/metadata.name=kube-system pods k8s-app=kube-dns tcp/53 +1 more"
		elements = { 10.0.1.10 . tcp . 53,
			     10.0.1.10 . udp . 53 }
	}

	map egress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
		elements = { 10.0.0.2 comment "x/web-1" : jump eg-x_dns-only-158fad40 }
	}

	map egress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
		elements = { fd00::2 comment "x/web-1" : jump eg-x_dns-only-158fad40 }
	}

	map ingress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
	}

	map ingress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
	}

	set self-v4 {
		type ipv4_addr . ipv4_addr
		comment "local isolated pods: address . same address"
		elements = { 10.0.0.2 . 10.0.0.2 }
	}

	set self-v6 {
		type ipv6_addr . ipv6_addr
		comment "local isolated pods: address . same address"
		elements = { fd00::2 . fd00::2 }
	}

	chain eg-x_dns-only-158fad40 {
		comment "egress of pods selected by x/dns-only"
		ip daddr . meta l4proto . th dport @eg-set-1167f2029496d05e-p4 return comment "x/dns-only egress[0]"
		ip6 daddr . meta l4proto . th dport @eg-set-000ce3186599b321-p6 return comment "x/dns-only egress[0]"
		drop comment "no egress rule of x/dns-only"
	}
}
)"},
    {"TwoPodsShareAGroup",
     [](State* s) {
       Add(s, MakePod("x", "web-2", {{"app", "web"}}, kNode, {"10.0.0.5"}, {CPort("http", 8080)}));
       NetworkPolicy p = Policy("x", "web-80", Sel({{"app", "web"}}), true, false);
       p.ingress.push_back(From({}, {TcpPort(80)}));
       Add(s, p);
     },
     R"(table inet netpol {
	comment "Kubernetes NetworkPolicy for node node-1, managed by netpol"
	map egress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	map egress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	set in-set-afa27d86f9fc97d2-x {
		type inet_proto . inet_service
		comment "any peer, port: 1 static element"
		elements = { tcp . 80 }
	}

	map ingress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { 10.0.0.2 comment "x/web-1" : jump in-x_web-80-768ca5a8, 10.0.0.5 comment "x/web-2" : jump in-x_web-80-768ca5a8 }
	}

	map ingress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { fd00::2 comment "x/web-1" : jump in-x_web-80-768ca5a8 }
	}

	set self-v4 {
		type ipv4_addr . ipv4_addr
		comment "local isolated pods: address . same address"
		elements = { 10.0.0.2 . 10.0.0.2,
			     10.0.0.5 . 10.0.0.5 }
	}

	set self-v6 {
		type ipv6_addr . ipv6_addr
		comment "local isolated pods: address . same address"
		elements = { fd00::2 . fd00::2 }
	}

	chain in-x_web-80-768ca5a8 {
		comment "ingress of pods selected by x/web-80"
		meta l4proto . th dport @in-set-afa27d86f9fc97d2-x return comment "x/web-80 ingress[0]"
		drop comment "no ingress rule of x/web-80"
	}
}
)"},
    {"DifferentNamedPortResolutionDoesNotShare",
     [](State* s) {
       Add(s, MakePod("x", "web-2", {{"app", "web"}}, kNode, {"10.0.0.5"}, {CPort("http", 9090)}));
       NetworkPolicy p = Policy("x", "http-any", Sel({{"app", "web"}}), true, false);
       p.ingress.push_back(From({}, {NamedPort("http")}));
       Add(s, p);
     },
     R"(table inet netpol {
	comment "Kubernetes NetworkPolicy for node node-1, managed by netpol"
	map egress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	map egress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "egress dispatch: local isolated pod -> its group chain"
	}

	set in-set-14672779462c96e8-x {
		type inet_proto . inet_service
		comment "any peer, port: 1 static element"
		elements = { tcp . 8080 }
	}

	set in-set-87a1aa4e9331850a-x {
		type inet_proto . inet_service
		comment "any peer, port: 1 static element"
		elements = { tcp . 9090 }
	}

	map ingress-dispatch-v4 {
		type ipv4_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { 10.0.0.2 comment "x/web-1" : jump in-x_http-any-411de772, 10.0.0.5 comment "x/web-2" : jump in-x_http-any-0dc510a9 }
	}

	map ingress-dispatch-v6 {
		type ipv6_addr : verdict
		comment "ingress dispatch: local isolated pod -> its group chain"
		elements = { fd00::2 comment "x/web-1" : jump in-x_http-any-411de772 }
	}

	set self-v4 {
		type ipv4_addr . ipv4_addr
		comment "local isolated pods: address . same address"
		elements = { 10.0.0.2 . 10.0.0.2,
			     10.0.0.5 . 10.0.0.5 }
	}

	set self-v6 {
		type ipv6_addr . ipv6_addr
		comment "local isolated pods: address . same address"
		elements = { fd00::2 . fd00::2 }
	}

	chain in-x_http-any-0dc510a9 {
		comment "ingress (http/TCP=9090) of pods selected by x/http-any"
		meta l4proto . th dport @in-set-87a1aa4e9331850a-x return comment "x/http-any ingress[0]"
		drop comment "no ingress rule of x/http-any"
	}

	chain in-x_http-any-411de772 {
		comment "ingress (http/TCP=8080) of pods selected by x/http-any"
		meta l4proto . th dport @in-set-14672779462c96e8-x return comment "x/http-any ingress[0]"
		drop comment "no ingress rule of x/http-any"
	}
}
)"},
};

INSTANTIATE_TEST_SUITE_P(Golden, GoldenTest, ::testing::ValuesIn(kGolden),
                         [](const auto& info) { return info.param.name; });

// ---- the layout's promises ----

// Everything but elements: chains (with rules) and set definitions.
void ExpectSameStructure(const nft::Program& a, const nft::Program& b, const std::string& label) {
  EXPECT_EQ(a.chains, b.chains) << label;
  EXPECT_EQ(a.sets, b.sets) << label;
}

TEST(CompilerTest, RandomStatesCompileToValidPrograms) {
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    State s = testing::RandomState(seed);
    for (const char* node : {"n1", "n2"}) {
      CompileOptions o;
      o.node_name = node;
      absl::StatusOr<nft::Program> p = Compile(s, o);
      ASSERT_TRUE(p.ok()) << "seed " << seed << ": " << p.status();
      absl::Status valid = nft::ValidateProgram(*p);  // names, comments, no overlapping intervals
      ASSERT_TRUE(valid.ok()) << "seed " << seed << ": " << valid;
    }
  }
}

TEST(CompilerTest, RuleCountersMarkEveryGroupRuleAndNoBaseChainRule) {
  int counted = 0;
  for (uint32_t seed = 1; seed <= 100; ++seed) {
    State s = testing::RandomState(seed);
    CompileOptions o;
    o.node_name = "n1";
    absl::StatusOr<nft::Program> plain = Compile(s, o);
    ASSERT_TRUE(plain.ok()) << plain.status();
    o.rule_counters = true;
    absl::StatusOr<nft::Program> p = Compile(s, o);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE(nft::ValidateProgram(*p).ok()) << "seed " << seed;
    EXPECT_EQ(p->sets, plain->sets);
    EXPECT_EQ(p->elements, plain->elements);
    for (const auto& [name, chain] : p->chains) {
      const nft::Chain& off = plain->chains.at(name);
      ASSERT_EQ(chain.rules.size(), off.rules.size()) << name;
      for (size_t i = 0; i < chain.rules.size(); ++i) {
        EXPECT_FALSE(off.rules[i].counter) << name << " rule " << i;
        // A group chain's rules all count; base chains (accepting or dispatching) never do.
        EXPECT_EQ(chain.rules[i].counter, !chain.base.has_value()) << name << " rule " << i;
        nft::Rule same = chain.rules[i];
        same.counter = false;
        EXPECT_EQ(same, off.rules[i]) << name << " rule " << i;
        counted += chain.rules[i].counter;
      }
    }
  }
  EXPECT_GT(counted, 100);
}

// The large rules of a program: their port sets, "<chain>-s<k>p".
size_t LargeRuleCount(const nft::Program& p) {
  size_t n = 0;
  for (const auto& [name, set] : p.sets) {
    const size_t dash = name.rfind("-s");
    if (dash == std::string::npos || name.back() != 'p' || dash + 3 > name.size()) continue;
    const std::string k = name.substr(dash + 2, name.size() - dash - 3);
    if (!k.empty() && k.find_first_not_of("0123456789") == std::string::npos) ++n;
  }
  return n;
}

TEST(CompilerTest, PodJoiningOrLeavingAGroupChangesElementsOnly) {
  int checked = 0;
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    State s = testing::RandomState(seed);
    CompileOptions o;
    o.node_name = "n1";
    nft::Program before = MustCompile(s, o);
    // A twin of every local pod (same labels and ports, so the same groups),
    // and a remote pod.
    State grown = s;
    int n = 0;
    for (const auto& [key, pod] : s.pods) {
      if (pod.host_network || pod.node_name != "n1") continue;
      Pod twin = pod;
      twin.name += "-twin";
      twin.ips.clear();
      ++n;
      for (const IpAddr& ip : pod.ips) {
        twin.ips.push_back(ip.family == Family::kV4 ? Ip(absl::StrCat("10.0.9.", n))
                                                    : Ip(absl::StrCat("fd00::9:", n)));
      }
      Add(&grown, twin);
    }
    Add(&grown, MakePod("b", "remote-new", {{"app", "web"}, {"tier", "fe"}}, "n2",
                        {"10.0.1.200", "fd00::1:200"}, {CPort("http", 80)}));
    nft::Program after = MustCompile(grown, o);
    // Pods added can only move a selector rule above the large-rule threshold (RULESET.md
    // "Large rules"), which changes its group's layout; otherwise only elements change.
    if (LargeRuleCount(before) == LargeRuleCount(after)) {
      ExpectSameStructure(before, after, absl::StrCat("seed ", seed, " (pods added)"));
    } else {
      EXPECT_LT(LargeRuleCount(before), LargeRuleCount(after)) << "seed " << seed;
    }
    // And back: removing them restores the exact program.
    EXPECT_EQ(nft::RenderProgram(MustCompile(s, o)), nft::RenderProgram(before));
    if (before.elements != after.elements) ++checked;
  }
  EXPECT_GT(checked, 100);  // most seeds really changed elements
}

TEST(CompilerTest, DenyLogEndsEveryGroupWithALimitedLoggedDropAndACountedOne) {
  State s = BaseState();
  Add(&s, Policy("x", "deny-all", Sel({}), true, true));
  CompileOptions o = Opts();
  o.deny_log = CompileOptions::DenyLog{100, 10, 20, 128};
  nft::Program p = MustCompile(s, o);
  nft::Program plain = MustCompile(s);
  size_t groups = 0;
  for (const auto& [name, chain] : p.chains) {
    if (chain.base) continue;
    ++groups;
    SCOPED_TRACE(name);
    ASSERT_GE(chain.rules.size(), 2u);
    const nft::Rule& logged = chain.rules[chain.rules.size() - 2];
    const nft::Rule& over = chain.rules.back();
    ASSERT_TRUE(logged.limit.has_value());
    EXPECT_EQ(*logged.limit, (nft::LimitStmt{10, 20}));
    ASSERT_TRUE(logged.log.has_value());
    EXPECT_EQ(*logged.log, (nft::LogStmt{"deny " + name, 100, 128}));
    EXPECT_EQ(logged.verdict, nft::Verdict::Drop());
    EXPECT_EQ(logged.comment, plain.chains.at(name).rules.back().comment);
    EXPECT_TRUE(over.counter);
    EXPECT_FALSE(over.limit.has_value());
    EXPECT_FALSE(over.log.has_value());
    EXPECT_EQ(over.verdict, nft::Verdict::Drop());
    EXPECT_EQ(over.comment.rfind("over the log limit: no ", 0), 0u) << over.comment;
    // Nothing else changes: without the two statements and the extra rule it is the plain chain.
    nft::Chain stripped = chain;
    stripped.rules.pop_back();
    stripped.rules.back().limit.reset();
    stripped.rules.back().log.reset();
    EXPECT_EQ(stripped, plain.chains.at(name));
  }
  EXPECT_EQ(groups, 2u);  // x's pods on this node: ingress and egress
  EXPECT_EQ(p.sets, plain.sets);
  EXPECT_EQ(p.elements, plain.elements);

  o.deny_log->rate = 0;
  EXPECT_EQ(Compile(s, o).status().message(),
            "deny log: rate 0 is outside 1-1000000 packets per second");
}

TEST(CompilerTest, AllowedFlowLogsGoThroughALogChainOnlyFromTheLoggingPoliciesRules) {
  State s = BaseState();
  NetworkPolicy logged = Policy("x", "logged", Sel({{"app", "web"}}), true, false);
  logged.ingress.push_back(From({PodPeer(Sel({{"app", "db"}}))}, {TcpPort(80)}));
  logged.log_allowed = true;
  Add(&s, logged);
  NetworkPolicy quiet = Policy("x", "quiet", Sel({{"app", "web"}}), true, false);
  quiet.ingress.push_back(From({BlockPeer("192.168.0.0/16")}, {TcpPort(443)}));
  Add(&s, quiet);
  CompileOptions o = Opts();
  o.deny_log = CompileOptions::DenyLog{100, 10, 20, 128};
  o.rule_counters = true;
  const nft::Program p = MustCompile(s, o);

  std::string group;
  for (const auto& [name, chain] : p.chains) {
    if (!chain.base && name.rfind("in-", 0) == 0 && name.find("-log") == std::string::npos) {
      group = name;
    }
  }
  ASSERT_FALSE(group.empty()) << nft::RenderProgram(p);
  const std::string log_chain = group + "-log";
  int gotos = 0, returns = 0;
  for (const nft::Rule& r : p.chains.at(group).rules) {
    if (r.verdict == nft::Verdict::Goto(log_chain)) {
      ++gotos;
      EXPECT_NE(r.comment.find("x/logged ingress[0]"), std::string::npos) << r.comment;
    } else if (r.verdict == nft::Verdict::Return()) {
      ++returns;
      EXPECT_EQ(r.comment.find("x/logged"), std::string::npos) << r.comment;
    }
    EXPECT_TRUE(r.counter);
  }
  EXPECT_EQ(gotos, 2);    // the pod lookups of x/logged (a selector makes both families' sets)
  EXPECT_EQ(returns, 1);  // x/quiet's ipBlock lookup
  ASSERT_EQ(p.chains.count(log_chain), 1u);
  const nft::Chain& lc = p.chains.at(log_chain);
  EXPECT_FALSE(lc.base.has_value());
  ASSERT_EQ(lc.rules.size(), 2u);
  nft::CtStateMatch new_;
  new_.new_ = true;
  EXPECT_EQ(lc.rules[0].matches, std::vector<nft::Match>{new_});
  EXPECT_EQ(lc.rules[0].limit, (nft::LimitStmt{10, 20}));
  EXPECT_EQ(lc.rules[0].log, (nft::LogStmt{"allow " + group, 100, 128}));
  EXPECT_EQ(lc.rules[0].verdict, nft::Verdict::Return());
  EXPECT_TRUE(lc.rules[1].matches.empty());
  EXPECT_FALSE(lc.rules[1].log.has_value());
  EXPECT_EQ(lc.rules[1].verdict, nft::Verdict::Return());
  for (const nft::Rule& r : lc.rules) EXPECT_FALSE(r.counter);

  // Without the annotation the program is the plain one: no log chain, no goto, the same group
  // chain otherwise.
  State off = s;
  off.policies["x/logged"].log_allowed = false;
  const nft::Program plain = MustCompile(off, o);
  EXPECT_EQ(plain.chains.count(log_chain), 0u);
  nft::Chain rewritten = p.chains.at(group);
  for (nft::Rule& r : rewritten.rules) {
    if (r.verdict == nft::Verdict::Goto(log_chain)) r.verdict = nft::Verdict::Return();
  }
  EXPECT_EQ(rewritten, plain.chains.at(group));
  EXPECT_EQ(p.chains.size(), plain.chains.size() + 1);
  EXPECT_EQ(p.sets, plain.sets);
  EXPECT_EQ(p.elements, plain.elements);

  // Without deny logs (no nflog group) nothing is logged either.
  CompileOptions no_log = o;
  no_log.deny_log.reset();
  const nft::Program unlogged = MustCompile(s, no_log);
  EXPECT_EQ(unlogged.chains.count(log_chain), 0u);
  EXPECT_EQ(nft::RenderProgram(unlogged), nft::RenderProgram(MustCompile(off, no_log)));

  // A policy allowing everything ({}) logs through the chain's one rule.
  State all = s;
  all.policies["x/logged"].ingress = {From({})};
  const nft::Program q = MustCompile(all, o);
  ASSERT_EQ(q.chains.count(log_chain), 1u);
  ASSERT_EQ(q.chains.at(group).rules.size(), 1u);
  EXPECT_EQ(q.chains.at(group).rules[0].verdict, nft::Verdict::Goto(log_chain));
}

TEST(CompilerTest, ChainLengthIsBoundedWhateverThePolicyCount) {
  State s = BaseState();
  for (int i = 0; i < 200; ++i) {
    NetworkPolicy p = Policy("x", absl::StrCat("p", i), Sel({{"app", "web"}}), true, true);
    p.ingress.push_back(From({PodPeer(Sel({{"app", absl::StrCat("c", i)}}))}, {TcpPort(1000 + i)}));
    p.ingress.push_back(From({BlockPeer(absl::StrCat("172.16.", i, ".0/24"))},
                             {Port(Protocol::kUDP, 2000, 2000 + i)}));
    p.ingress.push_back(From({}, {NamedPort("http")}));
    p.egress.push_back(From({NamespacePeer(Sel({{"team", "blue"}}))}));
    Add(&s, p);
  }
  nft::Program p = MustCompile(s);
  int group_chains = 0;
  for (const auto& [name, chain] : p.chains) {
    if (chain.base) continue;
    ++group_chains;
    // 4 set kinds x 2 families + 2 any-peer kinds + drop.
    EXPECT_LE(chain.rules.size(), 11u) << name;
    EXPECT_LE(chain.comment.size(), nft::kMaxCommentLength);
  }
  EXPECT_EQ(group_chains, 2);  // one ingress, one egress group
}

TEST(CompilerTest, LongNamesStayWithinTheBudget) {
  State s;
  const std::string ns(63, 'n');
  const std::string name(253, 'p');
  Add(&s, MakeNamespace(ns));
  Add(&s, MakePod(ns, "a", {}, kNode, {"10.0.0.2", "fd00::2"}));
  NetworkPolicy p = Policy(ns, name, Sel({}), true, true);
  p.ingress.push_back(From({BlockPeer("10.0.0.0/8")}));
  p.egress.push_back(From({PodPeer(Sel({}))}, {Port(Protocol::kTCP, 1, 2)}));
  Add(&s, p);
  nft::Program prog = MustCompile(s);  // ValidateProgram checks every name and comment
  EXPECT_EQ(prog.chains.size(), 6u);  // four base chains, one group chain per direction
  for (const auto& [n, set] : prog.sets) EXPECT_LE(n.size(), nft::kMaxNameLength) << n;
}

TEST(CompilerTest, AttachedPodsAreLocalHostNetworkPodsNeverAre) {
  State s = BaseState();
  Pod host = MakePod("x", "host", {{"app", "web"}}, kNode, {"192.168.0.1"});
  host.host_network = true;
  Add(&s, host);
  Add(&s, MakePod("x", "pending", {{"app", "web"}}, "", {"10.0.0.9"}));
  Add(&s, Policy("x", "deny", Sel({{"app", "web"}}), true, false));
  CompileOptions o = Opts();
  nft::Program p = MustCompile(s, o);
  ASSERT_EQ(p.elements[kIngressDispatchV4].size(), 1u);  // web-1 only
  o.attached_pods = {"x/pending", "x/host", "x/unknown"};
  p = MustCompile(s, o);
  ASSERT_EQ(p.elements[kIngressDispatchV4].size(),
            2u);  // web-1 and the attached pod
  EXPECT_EQ(p.elements[kIngressDispatchV4][1].comment, "x/pending");
}

TEST(CompilerTest, HostNetworkPodsAreNoSelectorPeers) {
  State s = BaseState();
  Pod host = MakePod("y", "host", {{"app", "client"}}, "node-2", {"192.168.0.2"});
  host.host_network = true;
  Add(&s, host);
  NetworkPolicy p = Policy("x", "from-y", Sel({}), true, false);
  p.ingress.push_back(From({NamespacePeer(Sel({{"team", "blue"}}))}));
  Add(&s, p);
  nft::Program prog = MustCompile(s);
  for (const auto& [name, els] : prog.elements) {
    for (const nft::Element& e : els) {
      EXPECT_NE(e.key[0].addr_lo, Ip("192.168.0.2")) << name;
    }
  }
}

TEST(CompilerTest, EgressNamedPortOnIpBlockResolvesPerPodInsideTheBlock) {
  State s = BaseState();
  Add(&s, MakePod("y", "api", {}, "node-2", {"10.0.1.7"}, {CPort("http", 8443)}));
  Add(&s, MakePod("y", "outside", {}, "node-2", {"10.0.2.7"}, {CPort("http", 8000)}));
  NetworkPolicy p = Policy("x", "to-block", Sel({{"app", "web"}}), false, true);
  p.egress.push_back(From({BlockPeer("10.0.1.0/24", {"10.0.1.4/32"})}, {NamedPort("http")}));
  Add(&s, p);
  nft::Program prog = MustCompile(s);
  std::string set;
  for (const auto& [name, def] : prog.sets) {
    if (name.rfind("eg-", 0) == 0 && name.size() > 3 && name.substr(name.size() - 3) == "-p4") {
      set = name;
    }
  }
  ASSERT_FALSE(set.empty());
  ASSERT_EQ(prog.elements[set].size(),
            1u);  // api: inside, has http; client: excepted; outside
  EXPECT_EQ(nft::RenderElement(prog.sets[set], prog.elements[set][0]), "10.0.1.7 . tcp . 8443");
}

TEST(CompilerTest, PodsWithoutAnAddressOfAFamilyContributeNothingThere) {
  State s = BaseState();  // db has no IPv6 address
  NetworkPolicy p = Policy("x", "from-db", Sel({{"app", "web"}}), true, false);
  p.ingress.push_back(From({PodPeer(Sel({{"app", "db"}}))}));
  Add(&s, p);
  nft::Program prog = MustCompile(s);
  for (const auto& [name, def] : prog.sets) {
    if (name.size() > 3 && name.substr(name.size() - 3) == "-a6") {
      EXPECT_EQ(prog.elements.count(name), 0u) << name;
    }
  }
}

// The set that lookup `lookup` of rule `rule` of chain `chain` reads ("" when there is none).
std::string LookedUpSet(const nft::Program& p, const std::string& chain, size_t rule,
                        size_t lookup) {
  auto c = p.chains.find(chain);
  if (c == p.chains.end() || rule >= c->second.rules.size()) return "";
  size_t n = 0;
  for (const nft::Match& m : c->second.rules[rule].matches) {
    if (const auto* l = std::get_if<nft::LookupMatch>(&m)) {
      if (n++ == lookup) return l->set;
    }
  }
  return "";
}

size_t ElementCount(const nft::Program& p) {
  size_t n = 0;
  for (const auto& [name, els] : p.elements) n += els.size();
  return n;
}

// A rule's peers and ports are a cross product by definition; compiled as one concatenated set
// 1,000 non-adjacent /24s x 1,000 ports would be 10^6 elements. A large rule has a peer set and
// a port set of its own, looked up together by one chain rule.
TEST(CompilerTest, LargeRuleCostsPeersPlusPortsNotTheirProduct) {
  State s = BaseState();
  Add(&s, testing::WidePolicy("x", "wide", 1000, 1000));
  nft::Program prog = MustCompile(s);
  EXPECT_LT(ElementCount(prog), 2100u);
  std::string chain;
  for (const auto& [name, c] : prog.chains) {
    if (name.rfind("in-x_wide-", 0) == 0) chain = name;
  }
  ASSERT_FALSE(chain.empty());
  // One rule (no IPv6 peer, nothing in the concatenated sets) and the drop.
  ASSERT_EQ(prog.chains.at(chain).rules.size(), 2u);
  const std::string peer_set = LookedUpSet(prog, chain, 0, 0);
  const std::string port_set = LookedUpSet(prog, chain, 0, 1);
  ASSERT_GT(peer_set.size(), 5u);
  ASSERT_GT(port_set.size(), 4u);
  EXPECT_EQ(peer_set.substr(peer_set.size() - 5), "-s0v4");
  EXPECT_EQ(port_set.substr(port_set.size() - 4), "-s0p");
  EXPECT_EQ(prog.elements[peer_set].size(), 1000u);
  EXPECT_EQ(prog.elements[port_set].size(), 1000u);
  const std::string text = nft::RenderProgram(prog);
  EXPECT_NE(text.find(absl::StrCat("ip saddr . meta l4proto @", peer_set, " meta l4proto . th "
                                   "dport @",
                                   port_set, " return comment \"x/wide ingress[0]\"")),
            std::string::npos)
      << text.substr(text.find("chain " + chain));

  // What the kernel would do: web-1 (10.0.0.2) from inside the blocks, on their ports only.
  auto allowed = [&](const std::string& src, int port) {
    Packet pkt;
    pkt.src = Ip(src);
    pkt.dst = Ip("10.0.0.2");
    pkt.dport = static_cast<uint16_t>(port);
    absl::StatusOr<TraceResult> r = Trace(prog, kPostroutingChain, pkt);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->accepted;
  };
  EXPECT_TRUE(allowed("172.16.0.9", 1000));
  EXPECT_TRUE(allowed("172.23.206.250", 2998));  // the last block, the last port
  EXPECT_TRUE(allowed("172.19.100.1", 1500));
  EXPECT_FALSE(allowed("172.16.1.9", 1000));  // between two blocks
  EXPECT_FALSE(allowed("172.16.0.9", 1001));  // between two ports
  EXPECT_FALSE(allowed("172.16.0.9", 3000));
  EXPECT_FALSE(allowed("10.0.1.4", 1000));
}

// Below the product limit a rule keeps the single concatenated lookup (cheaper per packet).
TEST(CompilerTest, SmallRuleKeepsTheConcatenatedSet) {
  State s = BaseState();
  Add(&s, testing::WidePolicy("x", "narrow", 32, 32));  // 1,024 elements
  nft::Program prog = MustCompile(s);
  size_t large = 0, rp = 0;
  for (const auto& [name, els] : prog.elements) {
    if (name.find("-s0") != std::string::npos) ++large;
    if (name.size() > 4 && name.substr(name.size() - 4) == "-rp4") rp = els.size();
  }
  EXPECT_EQ(large, 0u);
  EXPECT_EQ(rp, 1024u);
  Add(&s, testing::WidePolicy("x", "narrow", 33, 32));  // 1,056: large
  prog = MustCompile(s);
  EXPECT_LT(ElementCount(prog), 100u);
}

// A selector peer counts as the addresses of the pods it matches: with a selector matching one
// pod (2 addresses) and a /64, 400 ports make 3 x 400 > 1,024, a large rule, and its pods go
// into the peer set.
TEST(CompilerTest, LargeRuleWithSelectorPeersHoldsThePodAddresses) {
  State s = BaseState();
  NetworkPolicy p = Policy("x", "many-ports", Sel({{"app", "web"}}), true, false);
  std::vector<PolicyPort> ports;
  for (int i = 0; i < 400; ++i) ports.push_back(TcpPort(7000 + i));
  p.ingress.push_back(From({NamespacePeer(Sel({{"team", "blue"}})), BlockPeer("fd00:9::/64")},
                           ports));
  Add(&s, p);
  nft::Program prog = MustCompile(s);
  std::string chain;
  for (const auto& [name, c] : prog.chains) {
    if (name.rfind("in-x_many-ports-", 0) == 0) chain = name;
  }
  ASSERT_FALSE(chain.empty());
  ASSERT_EQ(prog.chains.at(chain).rules.size(), 3u);  // v4, v6, drop
  const std::string v4_set = LookedUpSet(prog, chain, 0, 0);
  const std::string v6_set = LookedUpSet(prog, chain, 1, 0);
  const std::string port_set = LookedUpSet(prog, chain, 0, 1);
  EXPECT_EQ(LookedUpSet(prog, chain, 1, 1), port_set);
  const nft::Set& v4 = prog.sets.at(v4_set);
  ASSERT_EQ(prog.elements[v4_set].size(), 1u);  // y/client
  EXPECT_EQ(nft::RenderElement(v4, prog.elements[v4_set][0]), "10.0.1.4 . 0-255");
  EXPECT_EQ(prog.elements[v6_set].size(), 2u);    // y/client and the block
  EXPECT_EQ(prog.elements[port_set].size(), 1u);  // 7000-7399, one range
}

bool HasLargeRule(const nft::Program& prog) {
  for (const auto& [name, set] : prog.sets) {
    if (name.size() > 4 && name.substr(name.size() - 4) == "-s0p") return true;
  }
  return false;
}

// Whether a rule with selector peers is large depends on the pod addresses they match in the
// State, not on the policy alone: `from: [namespaceSelector: {}]` on 16 ports stays in the
// concatenated set (16 elements per address) up to 64 addresses (1,024), and past that costs
// addresses + ports, so 5,001 addresses are ~5,017 elements, not 80,016.
TEST(CompilerTest, SelectorRuleIsLargeWhenItMatchesManyPodAddresses) {
  State s;
  Add(&s, MakeNamespace("x"));
  Add(&s, MakeNamespace("crowd"));
  Add(&s, MakePod("x", "web", {{"app", "web"}}, kNode, {"10.0.0.2"}));
  Add(&s, testing::EveryNamespacePolicy("x", "all", 16));
  testing::AddCrowd(&s, "crowd", 0, 63, "node-2");  // with x/web: 64 addresses x 16 = 1,024
  nft::Program prog = MustCompile(s);
  EXPECT_FALSE(HasLargeRule(prog));
  size_t sp = 0;
  for (const auto& [name, els] : prog.elements) {
    if (name.size() > 3 && name.substr(name.size() - 3) == "-p4") sp = els.size();
  }
  EXPECT_EQ(sp, 64u * 16u);

  testing::AddCrowd(&s, "crowd", 63, 1, "node-2");  // 65 addresses: large
  prog = MustCompile(s);
  ASSERT_TRUE(HasLargeRule(prog));
  EXPECT_LT(ElementCount(prog), 100u);

  testing::AddCrowd(&s, "crowd", 64, 4936, "node-2");  // 5,001 addresses
  prog = MustCompile(s);
  ASSERT_TRUE(HasLargeRule(prog));
  size_t v4 = 0, ports = 0;
  for (const auto& [name, els] : prog.elements) {
    if (name.size() > 5 && name.substr(name.size() - 5) == "-s0v4") v4 = els.size();
    if (name.size() > 4 && name.substr(name.size() - 4) == "-s0p") ports = els.size();
  }
  EXPECT_EQ(v4, 5001u);
  EXPECT_EQ(ports, 16u);
  EXPECT_LT(ElementCount(prog), 5100u);
}

struct ErrorCase {
  std::string name;
  std::function<void(State*, CompileOptions*)> setup;
  std::string want;
};

class CompileErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(CompileErrorTest, NamesObjectAndField) {
  State s = BaseState();
  CompileOptions o = Opts();
  GetParam().setup(&s, &o);
  absl::StatusOr<nft::Program> p = Compile(s, o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(), GetParam().want);
}

// The per-object checks (what the agent runs on the objects a write changes) give Compile's
// message for the same input.
TEST_P(CompileErrorTest, PerObjectValidationNamesTheSame) {
  State s = BaseState();
  CompileOptions o = Opts();
  GetParam().setup(&s, &o);
  absl::Status got = ValidateOptions(o);
  for (const auto& [key, p] : s.policies) {
    if (got.ok()) got = ValidateObject(p);
  }
  for (const auto& [key, pod] : s.pods) {
    if (got.ok()) got = ValidateObject(pod);
  }
  for (const auto& [key, ns] : s.namespaces) {
    if (got.ok()) got = ValidateObject(ns);
  }
  EXPECT_EQ(got.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.message(), GetParam().want);
}

// ValidateChanged over the keys the setup created or changed finds the same error; an error of
// the options (a writer checks them once, not per object) is ValidateOptions's, and the objects
// the setup changed are then valid.
TEST_P(CompileErrorTest, ValidateChangedNamesTheSame) {
  State s = BaseState();
  CompileOptions o = Opts();
  GetParam().setup(&s, &o);
  absl::Status options = ValidateOptions(o);
  absl::Status got = ValidateChanged(s, DiffStates(BaseState(), s));
  if (!options.ok()) {
    EXPECT_TRUE(got.ok()) << got;
    got = options;
  }
  EXPECT_EQ(got.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.message(), GetParam().want);
}

TEST(ValidateObjectTest, ValidateChangedLooksOnlyAtTheNamedObjectsThatExist) {
  State s = BaseState();
  s.pods["x/web-1"].ports[0].container_port = 70000;
  Delta other;
  other.pods = {"x/absent"};
  for (const auto& [key, policy] : s.policies) other.policies.insert(key);
  EXPECT_TRUE(ValidateChanged(s, other).ok());
  Delta bad = other;
  bad.pods.insert("x/web-1");
  EXPECT_EQ(ValidateChanged(s, bad).message(),
            "pod x/web-1: containerPort http/TCP = 70000: must be between 1 and 65535");
}

TEST(ValidateObjectTest, PodPortsAreCheckedBeforeAPolicyNamesThem) {
  State s = BaseState();
  s.pods["x/web-1"].ports[0].container_port = 70000;
  EXPECT_TRUE(Compile(s, Opts()).ok());  // no policy resolves the port yet
  EXPECT_EQ(ValidateObject(s.pods["x/web-1"]).message(),
            "pod x/web-1: containerPort http/TCP = 70000: must be between 1 and 65535");
  for (const auto& [key, pod] : BaseState().pods) EXPECT_TRUE(ValidateObject(pod).ok()) << key;
}

const ErrorCase kErrors[] = {
    {"EndPortBelowPort",
     [](State* s, CompileOptions*) {
       NetworkPolicy p = Policy("x", "bad", Sel({}), true, false);
       p.ingress.push_back(From({}, {TcpPort(80), Port(Protocol::kTCP, 90, 85)}));
       Add(s, p);
     },
     "networkpolicy x/bad: spec.ingress[0].ports[1].endPort: must be >= port"},
    {"PortOutOfRange",
     [](State* s, CompileOptions*) {
       NetworkPolicy p = Policy("x", "bad", Sel({}), false, true);
       p.egress.push_back(From({}));
       p.egress.push_back(From({}, {TcpPort(70000)}));
       Add(s, p);
     },
     "networkpolicy x/bad: spec.egress[1].ports[0].port: must be between 1 and "
     "65535"},
    {"EndPortWithoutPort",
     [](State* s, CompileOptions*) {
       NetworkPolicy p = Policy("x", "bad", Sel({}), true, false);
       PolicyPort pp;
       pp.end_port = 90;
       p.ingress.push_back(From({}, {pp}));
       Add(s, p);
     },
     "networkpolicy x/bad: spec.ingress[0].ports[0].endPort: may only be used with a numeric "
     "port"},
    {"BadProtocol",
     [](State* s, CompileOptions*) {
       NetworkPolicy p = Policy("x", "bad", Sel({}), true, false);
       PolicyPort pp;
       pp.protocol = static_cast<Protocol>(1);
       p.ingress.push_back(From({}, {pp}));
       Add(s, p);
     },
     "networkpolicy x/bad: spec.ingress[0].ports[0].protocol: must be TCP, UDP "
     "or SCTP"},
    {"BadTableName", [](State*, CompileOptions* o) { o->table = "1bad"; },
     "table name \"1bad\": must start with a letter"},
    // The same rule as the writers': nft cannot read a keyword as the table's name.
    {"KeywordTableName", [](State*, CompileOptions* o) { o->table = "counter"; },
     "table name \"counter\": is an nft keyword, which nft's parser cannot read as a name"},
    {"PolicyTooLarge",
     [](State* s, CompileOptions*) {
       NetworkPolicy p = Policy("x", "huge", Sel({}), true, false);
       std::vector<Peer> peers;
       for (int i = 0; i < 50001; ++i) {
         peers.push_back(BlockPeer(absl::StrCat("10.", i / 65536, ".", i / 256 % 256, ".", i % 256,
                                                "/32")));
       }
       p.ingress.push_back(From(peers, {TcpPort(80)}));
       Add(s, p);
     },
     "networkpolicy x/huge: spec: needs 50001 set elements, more than the 50000 one policy may "
     "use (per rule: ipBlock ranges x ports, or ranges + ports when that product is over 1024)"},
    {"ContainerPortOutOfRange",
     [](State* s, CompileOptions*) {
       s->pods["x/web-1"].ports[0].container_port = 0;
       NetworkPolicy p = Policy("x", "named", Sel({}), true, false);
       p.ingress.push_back(From({}, {NamedPort("http")}));
       Add(s, p);
     },
     "pod x/web-1: containerPort http/TCP = 0: must be between 1 and 65535"},
};

INSTANTIATE_TEST_SUITE_P(Errors, CompileErrorTest, ::testing::ValuesIn(kErrors),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace netpol::compiler
