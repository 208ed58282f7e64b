// The case table; see objects_cases.h.
#include "engine/nft/objects_cases.h"

#include <string>
#include <vector>

#include "engine/nft/test_util.h"
#include "gtest/gtest.h"

namespace netpol::nft::testing {

Program Fixture() {
  Program p;
  p.table = "t";
  p.sets["s"] = MakeSet("s", kV4ProtoPort, /*interval=*/true, false, "peers");
  p.sets["h"] = MakeSet("h", {FieldType::kIpv4Addr});
  p.sets["m"] = MakeSet("m", {FieldType::kIpv4Addr}, false, /*vmap=*/true);
  Chain b = MakeBase("b", Hook::kForward, 0);
  b.rules.push_back(MakeRule({EstablishedRelated()}, Verdict::Accept(), "established"));
  b.rules.push_back(MakeRule({Lookup(kSaddrProtoDport, "s")}, Verdict::Accept(), "peers"));
  b.rules.push_back(MakeRule({VmapLookup({Selector::kIpDaddr}, "m")}, std::nullopt, "dispatch"));
  p.chains["b"] = b;
  Chain c = MakeChain("c");
  c.rules.push_back(MakeRule({}, Verdict::Accept(), "c", /*counter=*/true));
  p.chains["c"] = c;
  Chain d = MakeChain("d");
  d.rules.push_back(MakeRule({}, Verdict::Jump("c")));
  p.chains["d"] = d;
  p.chains["e"] = MakeChain("e");
  p.elements["s"] = {E({AR("10.0.0.0", "10.255.255.255"), N(6), NR(80, 90)}, "x")};
  p.elements["h"] = {E({A("10.0.0.1")})};
  p.elements["m"] = {EV({A("10.0.0.1")}, Verdict::Jump("c"), "pod a/x")};
  return p;
}

const std::vector<Case>& Cases() {
  static const auto* cases = new std::vector<Case>{
      // ---- table ----
      {"AddTableCreates", ObjectKind::kTable, Verb::kAdd, [](Transaction& t) { t.AddTable("owned by netpol"); },
       "add table inet t { comment \"owned by netpol\"; }", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.comment, "owned by netpol"); }, true},
      {"AddExistingTableKeepsContents", ObjectKind::kTable, Verb::kAdd, [](Transaction& t) { t.AddTable(); },
       "add table inet t", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p, Fixture()); }},
      {"CreateTable", ObjectKind::kTable, Verb::kCreate, [](Transaction& t) { t.CreateTable(); },
       "create table inet t", absl::StatusCode::kOk, "", nullptr, true},
      {"CreateExistingTableFails", ObjectKind::kTable, Verb::kCreate, [](Transaction& t) { t.CreateTable(); },
       "create table inet t", absl::StatusCode::kAlreadyExists, "create table inet t: File exists"},
      {"FlushTableEmptiesChainsNotSets", ObjectKind::kTable, Verb::kFlush, [](Transaction& t) { t.FlushTable(); },
       "flush table inet t", absl::StatusCode::kOk, "",
       [](const Program& p) {
         for (const auto& [name, c] : p.chains) EXPECT_TRUE(c.rules.empty()) << name;
         EXPECT_EQ(p.elements, Fixture().elements);
       }},
      {"FlushMissingTableFails", ObjectKind::kTable, Verb::kFlush, [](Transaction& t) { t.FlushTable(); },
       "flush table inet t", absl::StatusCode::kNotFound, "flush table inet t: No such file or directory",
       nullptr, true},
      {"DeleteTable", ObjectKind::kTable, Verb::kDelete, [](Transaction& t) { t.DeleteTable(); },
       "delete table inet t", absl::StatusCode::kOk, ""},
      {"DeleteMissingTableFails", ObjectKind::kTable, Verb::kDelete, [](Transaction& t) { t.DeleteTable(); },
       "delete table inet t", absl::StatusCode::kNotFound, "delete table inet t: No such file", nullptr, true},
      {"DestroyTable", ObjectKind::kTable, Verb::kDestroy, [](Transaction& t) { t.DestroyTable(); },
       "destroy table inet t", absl::StatusCode::kOk, ""},
      {"DestroyMissingTableSucceeds", ObjectKind::kTable, Verb::kDestroy, [](Transaction& t) { t.DestroyTable(); },
       "destroy table inet t", absl::StatusCode::kOk, "", nullptr, true},
      {"CommandOnMissingTableFails", ObjectKind::kChain, Verb::kAdd, [](Transaction& t) { t.AddChain(MakeChain("x")); },
       "add chain inet t x", absl::StatusCode::kNotFound, "add chain x: table inet t does not exist", nullptr, true},

      // ---- chain ----
      {"AddChain", ObjectKind::kChain, Verb::kAdd, [](Transaction& t) { t.AddChain(MakeChain("x", "pod ns/a")); },
       "add chain inet t x { comment \"pod ns/a\"; }", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.chains.at("x").comment, "pod ns/a"); }},
      {"AddBaseChain", ObjectKind::kChain, Verb::kAdd,
       [](Transaction& t) { t.AddChain(MakeBase("in", Hook::kInput, -10, true, "to the node")); },
       "add chain inet t in { type filter hook input priority -10; policy drop; comment \"to the node\"; }",
       absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.chains.at("in").base, (BaseChainSpec{Hook::kInput, -10, true})); }},
      {"AddExistingChainKeepsRulesAndComment", ObjectKind::kChain, Verb::kAdd,
       [](Transaction& t) { t.AddChain(MakeChain("c", "other")); }, "add chain inet t c { comment \"other\"; }",
       absl::StatusCode::kOk, "", [](const Program& p) { EXPECT_EQ(p, Fixture()); }},
      {"AddExistingBaseChainUpdatesPolicy", ObjectKind::kChain, Verb::kAdd,
       [](Transaction& t) { t.AddChain(MakeBase("b", Hook::kForward, 0, true)); },
       "add chain inet t b { type filter hook forward priority 0; policy drop; }", absl::StatusCode::kOk, "",
       [](const Program& p) {
         EXPECT_TRUE(p.chains.at("b").base->policy_drop);
         EXPECT_EQ(p.chains.at("b").rules, Fixture().chains.at("b").rules);
       }},
      {"AddExistingBaseChainWithOtherPriorityFails", ObjectKind::kChain, Verb::kAdd,
       [](Transaction& t) { t.AddChain(MakeBase("b", Hook::kForward, 10)); },
       "add chain inet t b { type filter hook forward priority 10; policy accept; }",
       absl::StatusCode::kFailedPrecondition, "add chain b: chain exists with another type, hook or priority"},
      {"AddChainNameTooLongFails", ObjectKind::kChain, Verb::kAdd,
       [](Transaction& t) { t.AddChain(MakeChain(std::string(64, 'x'))); }, "add chain inet t " + std::string(64, 'x'),
       absl::StatusCode::kInvalidArgument, "is 64 bytes, longer than 63"},
      {"AddChainBadNameFails", ObjectKind::kChain, Verb::kAdd, [](Transaction& t) { t.AddChain(MakeChain("a b")); },
       "add chain inet t a b", absl::StatusCode::kInvalidArgument, "chain name \"a b\": may hold only letters"},
      {"CreateChain", ObjectKind::kChain, Verb::kCreate, [](Transaction& t) { t.CreateChain(MakeChain("x")); },
       "create chain inet t x", absl::StatusCode::kOk, ""},
      {"CreateExistingChainFails", ObjectKind::kChain, Verb::kCreate, [](Transaction& t) { t.CreateChain(MakeChain("c")); },
       "create chain inet t c", absl::StatusCode::kAlreadyExists, "create chain c: File exists"},
      {"FlushChain", ObjectKind::kChain, Verb::kFlush, [](Transaction& t) { t.FlushChain("b"); },
       "flush chain inet t b", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_TRUE(p.chains.at("b").rules.empty()); }},
      {"FlushMissingChainFails", ObjectKind::kChain, Verb::kFlush, [](Transaction& t) { t.FlushChain("x"); },
       "flush chain inet t x", absl::StatusCode::kNotFound, "flush chain x: No such file or directory"},
      {"DeleteChainWithRules", ObjectKind::kChain, Verb::kDelete, [](Transaction& t) { t.DeleteChain("d"); },
       "delete chain inet t d", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.chains.count("d"), 0u); }},
      {"DeleteChainReferencedByRuleFails", ObjectKind::kChain, Verb::kDelete,
       [](Transaction& t) {
         t.DeleteElements("m", {E({A("10.0.0.1")})});
         t.DeleteChain("c");
       },
       "delete element inet t m { 10.0.0.1 }\ndelete chain inet t c", absl::StatusCode::kFailedPrecondition,
       "delete chain c: still referenced by rule \"jump c\" in chain d: Device or resource busy"},
      {"DeleteChainReferencedByMapElementFails", ObjectKind::kChain, Verb::kDelete,
       [](Transaction& t) {
         t.DeleteChain("d");
         t.DeleteChain("c");
       },
       "delete chain inet t d\ndelete chain inet t c", absl::StatusCode::kFailedPrecondition,
       "delete chain c: still referenced by element 10.0.0.1 comment \"pod a/x\" : jump c of map m"},
      {"DeleteChainAfterItsReferencesGo", ObjectKind::kChain, Verb::kDelete,
       [](Transaction& t) {
         t.DeleteChain("d");
         t.DeleteElements("m", {E({A("10.0.0.1")})});
         t.DeleteChain("c");
       },
       "delete chain inet t d\ndelete element inet t m { 10.0.0.1 }\ndelete chain inet t c", absl::StatusCode::kOk,
       "", [](const Program& p) { EXPECT_EQ(p.chains.count("c"), 0u); }},
      {"DeleteMissingChainFails", ObjectKind::kChain, Verb::kDelete, [](Transaction& t) { t.DeleteChain("x"); },
       "delete chain inet t x", absl::StatusCode::kNotFound, "delete chain x: No such file or directory"},
      {"DestroyChain", ObjectKind::kChain, Verb::kDestroy, [](Transaction& t) { t.DestroyChain("e"); },
       "destroy chain inet t e", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.chains.count("e"), 0u); }},
      {"DestroyMissingChainSucceeds", ObjectKind::kChain, Verb::kDestroy, [](Transaction& t) { t.DestroyChain("x"); },
       "destroy chain inet t x", absl::StatusCode::kOk, "", [](const Program& p) { EXPECT_EQ(p, Fixture()); }},
      {"DestroyReferencedChainFails", ObjectKind::kChain, Verb::kDestroy, [](Transaction& t) { t.DestroyChain("c"); },
       "destroy chain inet t c", absl::StatusCode::kFailedPrecondition, "Device or resource busy"},

      // ---- rule ----
      {"AddRule", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) {
         t.AddRule("e", MakeRule({NfProtoMatch{Family::kV4}, Lookup(kSaddrProtoDport, "s", true)},
                                 Verdict::Goto("c"), "policy ns/p rule 0", true));
       },
       "add rule inet t e meta nfproto ipv4 ip saddr . meta l4proto . th dport != @s counter goto c comment "
       "\"policy ns/p rule 0\"",
       absl::StatusCode::kOk, "", [](const Program& p) { EXPECT_EQ(p.chains.at("e").rules.size(), 1u); }},
      {"AddIcmpv6RuleWritesItsDependency", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) {
         t.AddRule("e", MakeRule({Icmpv6TypeMatch{133, 136}, IfnameMatch{true, "cni0"}, FibLocalMatch{true}},
                                 Verdict::Accept()));
       },
       "add rule inet t e meta l4proto ipv6-icmp icmpv6 type 133-136 iifname \"cni0\" fib saddr type local accept",
       absl::StatusCode::kOk, ""},
      {"AddRuleToMissingChainFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("x", MakeRule({}, Verdict::Accept())); }, "add rule inet t x accept",
       absl::StatusCode::kNotFound, "add rule to chain x: No such file or directory"},
      {"AddRuleJumpingToMissingChainFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("e", MakeRule({}, Verdict::Jump("x"))); }, "add rule inet t e jump x",
       absl::StatusCode::kNotFound, "add rule to chain e: rule \"jump x\": jump x: chain x does not exist"},
      {"AddRuleJumpingToBaseChainFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("e", MakeRule({}, Verdict::Goto("b"))); }, "add rule inet t e goto b",
       absl::StatusCode::kFailedPrecondition, "cannot jump to base chain"},
      {"AddRuleMakingALoopFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("c", MakeRule({}, Verdict::Jump("d"))); }, "add rule inet t c jump d",
       absl::StatusCode::kFailedPrecondition, "jump loop c -> d -> c: Too many links"},
      {"AddRuleWithMissingSetFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("e", MakeRule({Lookup({Selector::kIpSaddr}, "x")}, Verdict::Accept())); },
       "add rule inet t e ip saddr @x accept", absl::StatusCode::kNotFound, "set x does not exist"},
      {"AddRuleVmapOnPlainSetFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("e", MakeRule({VmapLookup({Selector::kIpSaddr}, "h")}, std::nullopt)); },
       "add rule inet t e ip saddr vmap @h", absl::StatusCode::kInvalidArgument,
       "matches[0]: h is not a verdict map"},
      {"AddRuleVmapWithVerdictFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("e", MakeRule({VmapLookup({Selector::kIpSaddr}, "m")}, Verdict::Drop())); },
       "add rule inet t e ip saddr vmap @m drop", absl::StatusCode::kInvalidArgument,
       "a vmap rule has no verdict of its own"},
      {"AddRuleKeyTypeMismatchFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) {
         t.AddRule("e", MakeRule({Lookup({Selector::kIp6Saddr, Selector::kL4Proto, Selector::kThDport}, "s")},
                                 Verdict::Accept()));
       },
       "add rule inet t e ip6 saddr . meta l4proto . th dport @s accept", absl::StatusCode::kInvalidArgument,
       "matches[0]: key[0]: ip6 saddr does not match field type ipv4_addr of set s"},
      {"AddEmptyRuleFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("e", MakeRule({}, std::nullopt, "nothing")); },
       "add rule inet t e comment \"nothing\"", absl::StatusCode::kInvalidArgument, "rule has no match, counter or verdict"},
      {"AddRuleWithQuoteInCommentFails", ObjectKind::kRule, Verb::kAdd,
       [](Transaction& t) { t.AddRule("e", MakeRule({}, Verdict::Accept(), "a\"b")); },
       "add rule inet t e accept comment \"a\"b\"", absl::StatusCode::kInvalidArgument, "comment may hold"},
      {"CreateRuleUnsupported", ObjectKind::kRule, Verb::kCreate,
       [](Transaction& t) {
         Command c;
         c.verb = Verb::kCreate;
         c.kind = ObjectKind::kRule;
         c.chain.name = "e";
         c.rule = MakeRule({}, Verdict::Accept());
         t.Append(c);
       },
       "create rule inet t e accept", absl::StatusCode::kInvalidArgument, "create rule in chain e: rules support add only"},
      {"FlushRuleUnsupported", ObjectKind::kRule, Verb::kFlush,
       [](Transaction& t) {
         Command c;
         c.verb = Verb::kFlush;
         c.kind = ObjectKind::kRule;
         c.chain.name = "c";
         c.rule = MakeRule({}, Verdict::Accept());
         t.Append(c);
       },
       "flush rule inet t c accept", absl::StatusCode::kInvalidArgument, "rules support add only"},
      {"DeleteRuleUnsupported", ObjectKind::kRule, Verb::kDelete,
       [](Transaction& t) {
         Command c;
         c.verb = Verb::kDelete;
         c.kind = ObjectKind::kRule;
         c.chain.name = "d";
         c.rule = MakeRule({}, Verdict::Jump("c"));
         t.Append(c);
       },
       "delete rule inet t d jump c", absl::StatusCode::kInvalidArgument, "flush the chain instead"},
      {"DestroyRuleUnsupported", ObjectKind::kRule, Verb::kDestroy,
       [](Transaction& t) {
         Command c;
         c.verb = Verb::kDestroy;
         c.kind = ObjectKind::kRule;
         c.chain.name = "d";
         c.rule = MakeRule({}, Verdict::Jump("c"));
         t.Append(c);
       },
       "destroy rule inet t d jump c", absl::StatusCode::kInvalidArgument, "rules support add only"},

      // ---- set ----
      {"AddIntervalSet", ObjectKind::kSet, Verb::kAdd,
       [](Transaction& t) { t.AddSet(MakeSet("x", kV4ProtoPort, true, false, "ipBlock peers")); },
       "add set inet t x { type ipv4_addr . inet_proto . inet_service; flags interval; comment \"ipBlock peers\"; }",
       absl::StatusCode::kOk, "", [](const Program& p) { EXPECT_TRUE(p.sets.at("x").interval); }},
      {"AddMap", ObjectKind::kSet, Verb::kAdd,
       [](Transaction& t) { t.AddSet(MakeSet("x", {FieldType::kIpv6Addr}, false, true)); },
       "add map inet t x { type ipv6_addr : verdict; }", absl::StatusCode::kOk, ""},
      {"AddExistingSetSameDefinition", ObjectKind::kSet, Verb::kAdd,
       [](Transaction& t) { t.AddSet(Fixture().sets.at("s")); },
       "add set inet t s { type ipv4_addr . inet_proto . inet_service; flags interval; comment \"peers\"; }",
       absl::StatusCode::kOk, "", [](const Program& p) { EXPECT_EQ(p, Fixture()); }},
      {"AddExistingSetOtherDefinitionFails", ObjectKind::kSet, Verb::kAdd,
       [](Transaction& t) { t.AddSet(MakeSet("h", {FieldType::kIpv6Addr})); }, "add set inet t h { type ipv6_addr; }",
       absl::StatusCode::kAlreadyExists, "add set h: set exists with another definition: File exists"},
      {"AddSingleFieldIntervalSetFails", ObjectKind::kSet, Verb::kAdd,
       [](Transaction& t) { t.AddSet(MakeSet("x", {FieldType::kIpv4Addr}, true)); },
       "add set inet t x { type ipv4_addr; flags interval; }", absl::StatusCode::kInvalidArgument,
       "single-field interval sets are not supported"},
      {"AddSetKeyTooLongFails", ObjectKind::kSet, Verb::kAdd,
       [](Transaction& t) {
         t.AddSet(MakeSet("x", {FieldType::kIpv6Addr, FieldType::kIpv6Addr, FieldType::kIpv6Addr,
                                FieldType::kIpv6Addr, FieldType::kInetService}));
       },
       "add set inet t x { type ipv6_addr . ipv6_addr . ipv6_addr . ipv6_addr . inet_service; }",
       absl::StatusCode::kInvalidArgument, "key of 68 bytes exceeds the 64-byte register file"},
      {"CreateSet", ObjectKind::kSet, Verb::kCreate, [](Transaction& t) { t.CreateSet(MakeSet("x", {FieldType::kInetService})); },
       "create set inet t x { type inet_service; }", absl::StatusCode::kOk, ""},
      {"CreateExistingSetFails", ObjectKind::kSet, Verb::kCreate,
       [](Transaction& t) { t.CreateSet(Fixture().sets.at("h")); }, "create set inet t h { type ipv4_addr; }",
       absl::StatusCode::kAlreadyExists, "create set h: File exists"},
      {"FlushSet", ObjectKind::kSet, Verb::kFlush, [](Transaction& t) { t.FlushSet("s"); }, "flush set inet t s",
       absl::StatusCode::kOk, "", [](const Program& p) { EXPECT_EQ(p.elements.count("s"), 0u); }},
      {"FlushMapByDefinition", ObjectKind::kSet, Verb::kFlush, [](Transaction& t) { t.FlushSet(Fixture().sets.at("m")); },
       "flush map inet t m", absl::StatusCode::kOk, "", [](const Program& p) { EXPECT_EQ(p.elements.count("m"), 0u); }},
      {"FlushMissingSetFails", ObjectKind::kSet, Verb::kFlush, [](Transaction& t) { t.FlushSet("x"); },
       "flush set inet t x", absl::StatusCode::kNotFound, "flush set x: No such file or directory"},
      {"DeleteSet", ObjectKind::kSet, Verb::kDelete, [](Transaction& t) { t.DeleteSet("h"); }, "delete set inet t h",
       absl::StatusCode::kOk, "",
       [](const Program& p) {
         EXPECT_EQ(p.sets.count("h"), 0u);
         EXPECT_EQ(p.elements.count("h"), 0u);
       }},
      {"DeleteReferencedSetFails", ObjectKind::kSet, Verb::kDelete, [](Transaction& t) { t.DeleteSet("s"); },
       "delete set inet t s", absl::StatusCode::kFailedPrecondition,
       "delete set s: still referenced by rule \"ip saddr . meta l4proto . th dport @s accept comment \"peers\"\" "
       "in chain b: Device or resource busy"},
      {"DeleteMissingSetFails", ObjectKind::kSet, Verb::kDelete, [](Transaction& t) { t.DeleteSet("x"); },
       "delete set inet t x", absl::StatusCode::kNotFound, "No such file or directory"},
      {"DestroySet", ObjectKind::kSet, Verb::kDestroy, [](Transaction& t) { t.DestroySet("h"); },
       "destroy set inet t h", absl::StatusCode::kOk, ""},
      {"DestroyMissingSetSucceeds", ObjectKind::kSet, Verb::kDestroy, [](Transaction& t) { t.DestroySet("x"); },
       "destroy set inet t x", absl::StatusCode::kOk, ""},
      {"DestroyReferencedMapFails", ObjectKind::kSet, Verb::kDestroy,
       [](Transaction& t) { t.DestroySet(Fixture().sets.at("m")); }, "destroy map inet t m",
       absl::StatusCode::kFailedPrecondition, "destroy map m: still referenced"},

      // ---- element ----
      {"AddElementsByNameGuessesKeyTypes", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements("h", {E({A("10.0.0.2")}), E({A("10.0.0.3")}, "pod b")}); },
       "add element inet t h { 10.0.0.2, 10.0.0.3 comment \"pod b\" }", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.elements.at("h").size(), 3u); }},
      {"AddDisjointIntervalElements", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) {
         t.AddElements(Fixture().sets.at("s"), {E({AR("192.168.1.0", "192.168.1.5"), N(132), NR(0, 65535)}),
                                                E({A("10.1.0.0"), N(17), N(53)}, "dns")});
       },
       "add element inet t s { 192.168.1.0-192.168.1.5 . sctp . 0-65535, 10.1.0.0 . udp . 53 comment \"dns\" }",
       absl::StatusCode::kOk, "", [](const Program& p) { EXPECT_EQ(p.elements.at("s").size(), 3u); }},
      {"AddMapElement", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements(Fixture().sets.at("m"), {EV({A("10.0.0.2")}, Verdict::Goto("e"), "pod")}); },
       "add element inet t m { 10.0.0.2 comment \"pod\" : goto e }", absl::StatusCode::kOk, ""},
      {"AddExistingElementSameVerdictKeepsOldComment", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements(Fixture().sets.at("m"), {EV({A("10.0.0.1")}, Verdict::Jump("c"), "new")}); },
       "add element inet t m { 10.0.0.1 comment \"new\" : jump c }", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.elements.at("m")[0].comment, "pod a/x"); }},
      {"AddExistingElementOtherVerdictFails", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements(Fixture().sets.at("m"), {EV({A("10.0.0.1")}, Verdict::Drop())}); },
       "add element inet t m { 10.0.0.1 : drop }", absl::StatusCode::kAlreadyExists,
       "add element to set m: 10.0.0.1 : drop: File exists (key exists with another verdict)"},
      {"AddMapElementToMissingChainFails", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements(Fixture().sets.at("m"), {EV({A("10.0.0.9")}, Verdict::Jump("x"))}); },
       "add element inet t m { 10.0.0.9 : jump x }", absl::StatusCode::kNotFound, "chain x does not exist"},
      {"AddElementWrongArityFails", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements(Fixture().sets.at("s"), {E({A("10.9.0.1"), N(6)})}); },
       "add element inet t s { 10.9.0.1 . tcp }", absl::StatusCode::kInvalidArgument,
       "key: has 2 fields, set s has 3"},
      {"AddElementWrongFamilyFails", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements(Fixture().sets.at("h"), {E({A("fd00::1")})}); },
       "add element inet t h { fd00::1 }", absl::StatusCode::kInvalidArgument, "key[0]: address family does not match ipv4_addr"},
      {"AddRangeToPlainSetFails", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements(Fixture().sets.at("h"), {E({AR("10.0.0.0", "10.0.0.255")})}); },
       "add element inet t h { 10.0.0.0/24 }", absl::StatusCode::kInvalidArgument, "key[0]: a range needs an interval set; h is not one"},
      {"AddOverlappingElementFails", ObjectKind::kElement, Verb::kAdd,
       [](Transaction& t) { t.AddElements(Fixture().sets.at("s"), {E({AR("10.1.0.0", "10.1.255.255"), N(6), N(80)})}); },
       "add element inet t s { 10.1.0.0/16 . tcp . 80 }", absl::StatusCode::kAlreadyExists,
       "overlaps element 10.0.0.0/8 . tcp . 80-90 comment \"x\""},
      {"CreateElement", ObjectKind::kElement, Verb::kCreate,
       [](Transaction& t) { t.CreateElements(Fixture().sets.at("h"), {E({A("10.0.0.2")})}); },
       "create element inet t h { 10.0.0.2 }", absl::StatusCode::kOk, ""},
      {"CreateExistingElementFails", ObjectKind::kElement, Verb::kCreate,
       [](Transaction& t) { t.CreateElements(Fixture().sets.at("h"), {E({A("10.0.0.1")})}); },
       "create element inet t h { 10.0.0.1 }", absl::StatusCode::kAlreadyExists,
       "create element in set h: 10.0.0.1: File exists"},
      {"FlushElementUnsupported", ObjectKind::kElement, Verb::kFlush,
       [](Transaction& t) {
         Command c;
         c.verb = Verb::kFlush;
         c.kind = ObjectKind::kElement;
         c.set = Fixture().sets.at("h");
         c.elements = {E({A("10.0.0.1")})};
         t.Append(c);
       },
       "flush element inet t h { 10.0.0.1 }", absl::StatusCode::kInvalidArgument, "flush applies to sets"},
      {"DeleteElement", ObjectKind::kElement, Verb::kDelete,
       [](Transaction& t) { t.DeleteElements(Fixture().sets.at("s"), {E({AR("10.0.0.0", "10.255.255.255"), N(6), NR(80, 90)})}); },
       "delete element inet t s { 10.0.0.0/8 . tcp . 80-90 }", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.elements.count("s"), 0u); }},
      {"DeleteMissingElementFails", ObjectKind::kElement, Verb::kDelete,
       [](Transaction& t) { t.DeleteElements(Fixture().sets.at("h"), {E({A("10.0.0.2")})}); },
       "delete element inet t h { 10.0.0.2 }", absl::StatusCode::kNotFound,
       "delete element from set h: 10.0.0.2: No such file or directory"},
      {"DeleteElementOfMissingSetFails", ObjectKind::kElement, Verb::kDelete,
       [](Transaction& t) { t.DeleteElements("x", {E({A("10.0.0.2")})}); }, "delete element inet t x { 10.0.0.2 }",
       absl::StatusCode::kNotFound, "delete element from set x: set does not exist"},
      {"DestroyElement", ObjectKind::kElement, Verb::kDestroy,
       [](Transaction& t) { t.DestroyElements(Fixture().sets.at("m"), {E({A("10.0.0.1")}), E({A("10.0.0.7")})}); },
       "destroy element inet t m { 10.0.0.1, 10.0.0.7 }", absl::StatusCode::kOk, "",
       [](const Program& p) { EXPECT_EQ(p.elements.count("m"), 0u); }},
  };
  return *cases;
}

}  // namespace netpol::nft::testing
