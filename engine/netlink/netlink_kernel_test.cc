// NetlinkBackend against the real kernel. Every test moves the test process into a fresh network
// namespace first (unshare(CLONE_NEWNET)), so it sees an empty ruleset and never touches the
// host's firewall; `nft` runs as a child and inherits that namespace.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/compiler/compiler.h"
#include "engine/model/model.h"
#include "engine/netlink/netlink_backend.h"
#include "engine/netlink/test_support.h"
#include "engine/nft/diff.h"
#include "engine/nft/program.h"
#include "engine/nft/test_util.h"
#include "engine/nft/transaction.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::nft {
// Prints programs as nft text in test failures.
void PrintTo(const Program& p, std::ostream* os) { *os << "\n" << RenderProgram(p); }
}  // namespace netpol::nft

namespace netpol::netlink {
namespace {

using nft::Chain;
using nft::Element;
using nft::FieldType;
using nft::FieldValue;
using nft::Program;
using nft::Rule;
using nft::Selector;
using nft::Set;
using nft::Verdict;
using nft::testing::Ip;
using nft::testing::MakeRule;
using ::testing::HasSubstr;

constexpr char kNft[] = "/usr/sbin/nft";
constexpr char kTable[] = "netpol";

// Runs a shell command; returns its stdout, and its exit status in *rc.
std::string Run(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return "popen failed";
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  int status = pclose(f);
  if (rc != nullptr) *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::string Nft(const std::string& args) {
  int rc = 0;
  std::string out = Run(absl::StrCat(kNft, " ", args), &rc);
  EXPECT_EQ(rc, 0) << "nft " << args << ": " << out;
  return out;
}

nft::LookupMatch Lookup(std::vector<Selector> key, std::string set, bool vmap = false,
                        bool negate = false) {
  nft::LookupMatch m;
  m.key = std::move(key);
  m.set = std::move(set);
  m.vmap = vmap;
  m.negate = negate;
  return m;
}

// A program that uses every match kind, verdict kind, set flavour and comment place.
Program Representative() {
  Program p;
  p.table = kTable;
  p.comment = "managed by netpol";
  auto add_set = [&](Set s) { p.sets[s.name] = s; };
  add_set({"dispatch4", {FieldType::kIpv4Addr}, false, true, "local pods by IPv4"});
  add_set({"dispatch6", {FieldType::kIpv6Addr}, false, true, ""});
  add_set({"in-a-4",
           {FieldType::kIpv4Addr, FieldType::kInetProto, FieldType::kInetService},
           true,
           false,
           "ingress peers of x/a"});
  add_set({"in-a-6",
           {FieldType::kIpv6Addr, FieldType::kInetProto, FieldType::kInetService},
           true,
           false,
           ""});
  add_set({"peers4",
           {FieldType::kIpv4Addr, FieldType::kInetProto, FieldType::kInetService},
           false,
           false,
           ""});
  add_set({"pods4", {FieldType::kIpv4Addr}, false, false, "all pods"});
  add_set({"ports", {FieldType::kInetProto, FieldType::kInetService}, false, false, ""});
  add_set({"pods6", {FieldType::kIpv6Addr}, false, false, ""});
  add_set({"self4", {FieldType::kIpv4Addr, FieldType::kIpv4Addr}, false, false, ""});
  add_set({"self6", {FieldType::kIpv6Addr, FieldType::kIpv6Addr}, false, false, ""});

  p.elements["dispatch4"] = {
      Elem({FieldValue::Addr(Ip("10.0.0.1"))}, Verdict::Jump("pod-a"), "x/a"),
      Elem({FieldValue::Addr(Ip("10.0.0.2"))}, Verdict::Goto("pod-b")),
      Elem({FieldValue::Addr(Ip("10.0.0.3"))}, Verdict::Drop()),
  };
  p.elements["dispatch6"] = {Elem({FieldValue::Addr(Ip("fd00::1"))}, Verdict::Jump("pod-a"))};
  p.elements["in-a-4"] = {
      Elem({FieldValue::AddrRange(Ip("10.0.0.0"), Ip("10.0.0.255")), FieldValue::Num(6),
            FieldValue::Num(80)},
           std::nullopt, "ns default"),
      Elem({FieldValue::AddrRange(Ip("10.1.0.0"), Ip("10.1.255.255")), FieldValue::Num(17),
            FieldValue::NumRange(53, 54)}),
      Elem({FieldValue::AddrRange(Ip("192.168.1.7"), Ip("192.168.1.7")), FieldValue::Num(132),
            FieldValue::NumRange(1000, 2000)}),
  };
  p.elements["in-a-6"] = {
      Elem({FieldValue::AddrRange(Ip("fd00::"), Ip("fd00::ffff:ffff:ffff:ffff")),
            FieldValue::Num(6), FieldValue::Num(443)}),
  };
  p.elements["peers4"] = {
      Elem({FieldValue::Addr(Ip("10.0.0.5")), FieldValue::Num(6), FieldValue::Num(8080)}),
      Elem({FieldValue::Addr(Ip("10.0.0.6")), FieldValue::Num(17), FieldValue::Num(53)}),
  };
  p.elements["pods4"] = {Elem({FieldValue::Addr(Ip("10.0.0.1"))}),
                         Elem({FieldValue::Addr(Ip("10.0.0.2"))})};
  p.elements["ports"] = {Elem({FieldValue::Num(6), FieldValue::Num(22)})};
  p.elements["self4"] = {
      Elem({FieldValue::Addr(Ip("10.0.0.2")), FieldValue::Addr(Ip("10.0.0.2"))})};
  p.elements["self6"] = {Elem({FieldValue::Addr(Ip("fd00::2")), FieldValue::Addr(Ip("fd00::2"))})};

  nft::CtStateMatch est;
  est.established = est.related = true;
  nft::CtStateMatch inv;
  inv.invalid = true;
  nft::CtStateMatch fresh;
  fresh.new_ = fresh.untracked = true;

  Chain fwd;
  fwd.name = "forward";
  fwd.base = nft::BaseChainSpec{nft::Hook::kForward, 0, false};
  fwd.comment = "pod traffic";
  fwd.rules = {
      MakeRule({est}, Verdict::Accept(), "established"),
      MakeRule({inv}, Verdict::Drop(), "invalid"),
      MakeRule({nft::IfnameMatch{true, "lo"}}, Verdict::Accept(), ""),
      MakeRule({Lookup({Selector::kIpDaddr}, "dispatch4", true)}, std::nullopt, "dispatch v4"),
      MakeRule({Lookup({Selector::kIp6Daddr}, "dispatch6", true)}, std::nullopt, "dispatch v6"),
  };
  Chain input;
  input.name = "input";
  input.base = nft::BaseChainSpec{nft::Hook::kInput, 0, true};
  input.rules = {
      MakeRule({nft::FibLocalMatch{true}}, Verdict::Accept(), "from this node"),
      MakeRule({nft::Icmpv6TypeMatch{133, 136}}, Verdict::Accept(), "neighbour discovery"),
      MakeRule({nft::Icmpv6TypeMatch{128, 128}}, Verdict::Accept(), ""),
      MakeRule({nft::IfnameMatch{false, "veth*"}}, Verdict::Jump("pod-b"), "pods"),
  };
  Chain pod_a;
  pod_a.name = "pod-a";
  pod_a.comment = "pod x/a";
  pod_a.rules = {
      MakeRule({Lookup({Selector::kIpSaddr, Selector::kL4Proto, Selector::kThDport}, "in-a-4")},
               Verdict::Return(), "x/allow-web ingress[0]", /*counter=*/true),
      MakeRule({Lookup({Selector::kIp6Saddr, Selector::kL4Proto, Selector::kThDport}, "in-a-6")},
               Verdict::Return(), "x/allow-web ingress[0] v6"),
      MakeRule({Lookup({Selector::kIpDaddr, Selector::kL4Proto, Selector::kThDport}, "peers4")},
               Verdict::Accept(), ""),
      MakeRule({Lookup({Selector::kL4Proto, Selector::kThDport}, "ports")}, Verdict::Accept(),
               "any peer"),
      MakeRule({Lookup({Selector::kIpSaddr}, "pods4", false, true),
                Lookup({Selector::kIpDaddr}, "pods4")},
               Verdict::Drop(), "negated"),
      MakeRule({fresh, nft::NfProtoMatch{Family::kV6}}, std::nullopt, "count only", true),
      [] {
        // A group's closing drop with deny logging: limited, logged to an nflog group.
        Rule r = MakeRule({}, Verdict::Drop(), "logged deny");
        r.limit = nft::LimitStmt{10, 20};
        r.log = nft::LogStmt{"deny in-a", 100, 128};
        return r;
      }(),
      [] {
        Rule r = MakeRule({}, Verdict::Drop(), "default burst, counted, bare log", true);
        r.limit = nft::LimitStmt{3, nft::kNftDefaultBurst};
        r.log = nft::LogStmt{"", 7, 0};
        return r;
      }(),
      [] {
        Rule r = MakeRule({Lookup({Selector::kIpSaddr}, "pods4")}, Verdict::Return(),
                          "logged allow");
        r.log = nft::LogStmt{"allow pod-a", 100, 128};
        return r;
      }(),
      MakeRule({}, Verdict::Drop(), "default deny"),
  };
  Chain pod_b;
  pod_b.name = "pod-b";
  pod_b.rules = {
      MakeRule({nft::FibLocalMatch{false}}, Verdict::Return(), ""),
      MakeRule({Lookup({Selector::kIp6Saddr}, "pods6")}, Verdict::Goto("pod-a"), ""),
      // Explicit nfproto comparisons that later matches depend on (nft hides them).
      MakeRule({nft::NfProtoMatch{Family::kV6}, nft::Icmpv6TypeMatch{135, 135}}, Verdict::Accept(),
               "v6 then icmpv6"),
      MakeRule({nft::NfProtoMatch{Family::kV4}, fresh, Lookup({Selector::kIpSaddr}, "pods4")},
               Verdict::Accept(), "v4, ct, then ip"),
  };
  Chain output;
  output.name = "output";
  output.base = nft::BaseChainSpec{nft::Hook::kOutput, -10, false};
  output.rules = {MakeRule({nft::IfnameMatch{false, "eth0"}}, Verdict::Accept(), "")};
  Chain post;
  post.name = "postrouting";
  post.base = nft::BaseChainSpec{nft::Hook::kPostrouting, 101, false};
  post.rules = {
      MakeRule({nft::LocalSocketMatch{}, nft::FibLocalMatch{true}}, Verdict::Accept(), "node"),
      MakeRule({Lookup({Selector::kCtOrigIpSaddr, Selector::kIpDaddr}, "self4")},
               Verdict::Accept(), "self v4"),
      MakeRule({Lookup({Selector::kCtOrigIp6Saddr, Selector::kIp6Daddr}, "self6")},
               Verdict::Accept(), ""),
      MakeRule({Lookup({Selector::kIpDaddr}, "dispatch4", true)}, std::nullopt, "ingress"),
  };
  p.chains = {{"forward", fwd},     {"input", input}, {"output", output},
              {"postrouting", post}, {"pod-a", pod_a}, {"pod-b", pod_b}};
  nft::Canonicalize(&p);
  return p;
}

class KernelTest : public NetnsBackendTest {
 protected:
  void SetUp() override {
    NetnsBackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_EQ(Nft("list ruleset"), "") << "the fresh namespace has a ruleset";
  }
};

TEST_F(KernelTest, ProgramRoundTripsThroughDumpAndNftListing) {
  Program p = Representative();
  ASSERT_OK(CommitProgram(p));
  EXPECT_EQ(backend_->last_commit().sendmsg_calls, 1u);

  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, p);

  EXPECT_EQ(Nft(absl::StrCat("list table inet ", kTable)), nft::RenderProgram(p));
}

// The longest names Kubernetes allows (253-character pod, policy and node names, a 63-character
// namespace) compile into a program the encoder and the kernel take, and that dumps back as
// compiled and lists through nft.
TEST_F(KernelTest, CompiledProgramWithTheLongestKubernetesNamesCommitsAndReadsBack) {
  const std::string label = std::string(63, 'n');
  const std::string longest =
      std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
      std::string(61, 'd');
  ASSERT_EQ(longest.size(), 253u);
  State s;
  Namespace ns;
  ns.name = label;
  ns.labels[kNamespaceNameLabel] = label;
  s.namespaces[label] = ns;
  const std::vector<std::string> names = {longest, std::string(63, 'a') + "." +
                                                       std::string(63, 'b') + ".c"};
  int i = 0;
  for (const std::string& name : names) {
    Pod pod;
    pod.namespace_name = label;
    pod.name = name;
    pod.node_name = longest;
    pod.labels["app"] = "db";
    pod.ips = {Ip(absl::StrCat("10.0.0.", ++i)), Ip(absl::StrCat("fd00::", i))};
    s.pods[pod.Key()] = pod;
  }
  NetworkPolicy pol;
  pol.namespace_name = label;
  pol.name = longest;
  pol.ingress_type = pol.egress_type = true;
  netpol::Rule any;
  pol.ingress.push_back(any);
  s.policies[pol.Key()] = pol;
  compiler::CompileOptions o;
  o.table = kTable;
  o.node_name = longest;
  absl::StatusOr<Program> p = compiler::Compile(s, o);
  ASSERT_TRUE(p.ok()) << p.status();

  ASSERT_OK(backend_->Commit(nft::FullReplace(*p)));
  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, nft::Canonical(*p));
  EXPECT_EQ(dumped->elements.at("ingress-dispatch-v4").size(), 2u);
  EXPECT_EQ(Nft(absl::StrCat("list table inet ", kTable)), nft::RenderProgram(*p));
}

TEST_F(KernelTest, EmptyTableDumpsEmpty) {
  nft::Transaction tx(kTable);
  tx.AddTable();
  ASSERT_OK(backend_->Commit(tx));
  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  Program want;
  want.table = kTable;
  EXPECT_EQ(*dumped, want);
}

TEST_F(KernelTest, DumpOfMissingTableIsNotFound) {
  auto dumped = backend_->Dump("absent");
  EXPECT_TRUE(absl::IsNotFound(dumped.status())) << dumped.status();
}

TEST_F(KernelTest, HasTableAsksForTheTableAlone) {
  absl::StatusOr<bool> has = backend_->HasTable(kTable);
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_FALSE(*has);
  ASSERT_OK(CommitProgram(Representative()));
  has = backend_->HasTable(kTable);
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_TRUE(*has);
  has = backend_->HasTable("absent");
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_FALSE(*has);
  EXPECT_EQ(backend_->HasTable("no such name!").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KernelTest, IncrementalChangesApply) {
  Program p = Representative();
  ASSERT_OK(CommitProgram(p));

  // Element adds and deletes across sets, in one transaction.
  nft::Transaction tx(kTable);
  std::vector<Element> add4 = {Elem({FieldValue::Addr(Ip("10.0.0.9"))}, Verdict::Jump("pod-b"))};
  std::vector<Element> del4 = {Elem({FieldValue::Addr(Ip("10.0.0.2"))})};
  std::vector<Element> add_in = {Elem({FieldValue::AddrRange(Ip("172.16.0.0"), Ip("172.16.15.255")),
                                       FieldValue::Num(6), FieldValue::NumRange(8000, 8080)})};
  std::vector<Element> del_in = {p.elements["in-a-4"][1]};
  tx.AddElements("dispatch4", add4);
  tx.DeleteElements("dispatch4", del4);
  tx.AddElements("in-a-4", add_in);
  tx.DeleteElements("in-a-4", del_in);
  ASSERT_OK(backend_->Commit(tx));

  Program want = p;
  auto& d4 = want.elements["dispatch4"];
  d4.erase(std::remove(d4.begin(), d4.end(), p.elements["dispatch4"][1]), d4.end());
  d4.push_back(add4[0]);
  auto& in4 = want.elements["in-a-4"];
  in4.erase(std::remove(in4.begin(), in4.end(), del_in[0]), in4.end());
  in4.push_back(add_in[0]);
  nft::Canonicalize(&want);
  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, want);

  // Flush a chain and re-add different rules.
  nft::Transaction tx2(kTable);
  tx2.FlushChain("pod-a");
  std::vector<Rule> rules = {
      MakeRule({Lookup({Selector::kIpSaddr}, "pods4")}, Verdict::Accept(), "only pods"),
      MakeRule({}, Verdict::Drop(), "default deny"),
  };
  for (const Rule& r : rules) tx2.AddRule("pod-a", r);
  ASSERT_OK(backend_->Commit(tx2));
  want.chains["pod-a"].rules = rules;
  dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, want);

  // Flush a set; delete a chain no longer referenced.
  nft::Transaction tx3(kTable);
  tx3.FlushSet("pods6");
  tx3.FlushChain("pod-b");
  ASSERT_OK(backend_->Commit(tx3));
  want.chains["pod-b"].rules.clear();
  dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, want);

  // Deleting the table leaves nothing.
  nft::Transaction tx4(kTable);
  tx4.DeleteTable();
  ASSERT_OK(backend_->Commit(tx4));
  EXPECT_TRUE(absl::IsNotFound(backend_->Dump(kTable).status()));
  // Destroying what is gone is fine.
  nft::Transaction tx5(kTable);
  tx5.DestroyTable();
  EXPECT_OK(backend_->Commit(tx5));
}

TEST_F(KernelTest, FailedBatchChangesNothingAndNamesTheElement) {
  Program p = Representative();
  ASSERT_OK(CommitProgram(p));
  std::string before = Nft("list ruleset");
  ASSERT_TRUE(backend_->Generation().ok());
  uint32_t gen = *backend_->Generation();

  // ~10k verdict-map elements, one in the middle jumping to a chain that does not exist.
  std::vector<Element> elements;
  for (int i = 0; i < 10000; ++i) {
    IpAddr a = IpAddr::V4(10, 100 + i / 65536, (i / 256) % 256, i % 256);
    elements.push_back(
        Elem({FieldValue::Addr(a)}, Verdict::Jump(i == 5000 ? "no-such-chain" : "pod-a")));
  }
  nft::Transaction tx(kTable);
  tx.AddChain(Chain{"pod-c", std::nullopt, "", {}});
  tx.AddElements("dispatch4", elements);
  tx.AddElements("pods4", {Elem({FieldValue::Addr(Ip("10.9.9.9"))})});
  absl::Status s = backend_->Commit(tx);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("add element to set dispatch4: 10.100.19.136 : jump no-such-chain"))
      << s;
  EXPECT_GT(backend_->last_commit().element_messages, 1u) << "10k elements need several messages";
  EXPECT_EQ(backend_->last_commit().sendmsg_calls, 1u);

  EXPECT_EQ(Nft("list ruleset"), before);
  EXPECT_EQ(*backend_->Generation(), gen);
  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, p);
}

TEST_F(KernelTest, KernelErrorsMapToCommands) {
  Program p = Representative();
  ASSERT_OK(CommitProgram(p));
  struct Case {
    std::string name;
    std::function<void(nft::Transaction*)> build;
    absl::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases = {
      {"conflicting verdict for an existing key",
       [](nft::Transaction* tx) {
         tx->AddElements("dispatch4", {Elem({FieldValue::Addr(Ip("10.0.0.1"))}, Verdict::Drop())});
       },
       absl::StatusCode::kAlreadyExists,
       "add element to set dispatch4: 10.0.0.1 : drop: File exists"},
      {"create of an existing element",
       [](nft::Transaction* tx) {
         tx->CreateElements("pods4", {Elem({FieldValue::Addr(Ip("10.0.0.2"))})});
       },
       absl::StatusCode::kAlreadyExists, "create element in set pods4: 10.0.0.2: File exists"},
      {"delete of a missing element",
       [](nft::Transaction* tx) {
         tx->DeleteElements("pods4", {Elem({FieldValue::Addr(Ip("10.7.7.7"))})});
       },
       absl::StatusCode::kNotFound, "delete element from set pods4: 10.7.7.7: No such file"},
      {"delete of a referenced chain", [](nft::Transaction* tx) { tx->DeleteChain("pod-a"); },
       absl::StatusCode::kFailedPrecondition, "delete chain pod-a: Device or resource busy"},
      {"two failing commands: the first is named, the rest counted",
       [](nft::Transaction* tx) {
         tx->DeleteChain("no-such-chain");
         tx->AddElements("pods4", {Elem({FieldValue::Addr(Ip("10.0.0.50"))})});
         tx->DeleteSet("no-such-set");
       },
       absl::StatusCode::kNotFound,
       "delete chain no-such-chain: No such file or directory (and 1 more errors)"},
      {"rule jumping to a missing chain",
       [](nft::Transaction* tx) {
         tx->AddRule("pod-b", MakeRule({}, Verdict::Jump("nowhere"), "x"));
       },
       absl::StatusCode::kNotFound, "add rule to chain pod-b: jump nowhere comment \"x\": No such"},
  };
  std::string before = Nft("list ruleset");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    nft::Transaction tx(kTable);
    c.build(&tx);
    absl::Status s = backend_->Commit(tx);
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
    EXPECT_EQ(Nft("list ruleset"), before);
  }
}

TEST_F(KernelTest, ForeignTableIsUntouched) {
  Nft("add table inet other");
  Nft("add chain inet other c '{ type filter hook input priority 10; }'");
  Nft("add rule inet other c ip saddr 1.2.3.4 counter drop");
  Nft("add set inet other s '{ type ipv4_addr; elements = { 5.6.7.8 } }'");
  std::string other = Nft("list table inet other");

  Program p = Representative();
  ASSERT_OK(CommitProgram(p));
  nft::Transaction tx(kTable);
  tx.FlushTable();
  tx.AddElements("pods4", {Elem({FieldValue::Addr(Ip("10.0.0.77"))})});
  ASSERT_OK(backend_->Commit(tx));
  nft::Transaction del(kTable);
  del.DeleteTable();
  ASSERT_OK(backend_->Commit(del));

  EXPECT_EQ(Nft("list table inet other"), other);
  // And dumping the foreign table reports what netpol does not understand.
  auto dumped = backend_->Dump("other");
  EXPECT_TRUE(absl::IsAborted(dumped.status())) << dumped.status();
}

TEST_F(KernelTest, DumpReportsForeignEdits) {
  Program p = Representative();
  ASSERT_OK(CommitProgram(p));
  struct Case {
    std::string nft_args;
    std::string message;
  };
  std::vector<Case> cases = {
      {"add rule inet netpol pod-b log", "chain pod-b, rule handle"},
      {"add set inet netpol t '{ type ipv4_addr; flags timeout; }'", "set t has flags"},
      {"add chain inet netpol nat '{ type nat hook postrouting priority 100; }'",
       "chain nat has type nat"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.nft_args);
    ASSERT_OK(CommitProgram(p));
    Nft(c.nft_args);
    auto dumped = backend_->Dump(kTable);
    EXPECT_TRUE(absl::IsAborted(dumped.status())) << dumped.status();
    EXPECT_THAT(std::string(dumped.status().message()), HasSubstr(c.message));
    // A full sync replaces the table.
    nft::Transaction tx(kTable);
    tx.DestroyTable();
    tx.AddProgram(p);
    ASSERT_OK(backend_->Commit(tx));
    auto again = backend_->Dump(kTable);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, p);
  }
}

TEST_F(KernelTest, LargeCommitIsChunked) {
  Program p;
  p.table = kTable;
  Set s{"big",
        {FieldType::kIpv4Addr, FieldType::kInetProto, FieldType::kInetService},
        false,
        false,
        ""};
  p.sets["big"] = s;
  std::vector<Element>& elements = p.elements["big"];
  constexpr int kCount = 200000;
  for (int i = 0; i < kCount; ++i) {
    elements.push_back(Elem({FieldValue::Addr(IpAddr::V4(10, i / 65536, (i / 256) % 256, i % 256)),
                             FieldValue::Num(i % 2 ? 6 : 17), FieldValue::Num(1 + i % 1000)}));
  }
  Set iv{"ranges",
         {FieldType::kIpv4Addr, FieldType::kInetProto, FieldType::kInetService},
         true,
         false,
         ""};
  p.sets["ranges"] = iv;
  std::vector<Element>& ranges = p.elements["ranges"];
  for (int i = 0; i < 20000; ++i) {
    IpAddr lo = IpAddr::V4(11, i / 256, i % 256, 0), hi = IpAddr::V4(11, i / 256, i % 256, 127);
    ranges.push_back(Elem(
        {FieldValue::AddrRange(lo, hi), FieldValue::Num(6), FieldValue::NumRange(1000, 2000)}));
  }
  nft::Canonicalize(&p);
  ASSERT_OK(CommitProgram(p));
  EXPECT_EQ(backend_->last_commit().sendmsg_calls, 1u);
  // No element list nest may exceed 64 KiB, so the batch needs at least this many messages.
  EXPECT_GE(backend_->last_commit().element_messages, backend_->last_commit().bytes / 65536);
  EXPECT_GT(backend_->last_commit().element_messages, 50u);
  EXPECT_GT(backend_->last_commit().bytes, 1u << 20);

  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(dumped->elements["big"].size(), static_cast<size_t>(kCount));
  EXPECT_EQ(*dumped, p);
}

// The chunked cold start on the kernel: each transaction commits, the table is hooked (nft
// lists a base chain) only after the last, and the result is the program; a second
// ChunkedCreate of an existing table fails at its first transaction and changes nothing.
TEST_F(KernelTest, ChunkedCreateBuildsTheProgramAndHooksItLast) {
  const Program p = Representative();
  size_t elements = 0;
  for (const auto& [name, elems] : p.elements) elements += elems.size();
  ASSERT_GT(elements, 4u);
  const std::vector<nft::Transaction> txs = nft::ChunkedCreate(p, 2);
  ASSERT_GE(txs.size(), 2 + elements / 2);
  for (size_t i = 0; i < txs.size(); ++i) {
    const absl::Status st = backend_->Commit(txs[i]);
    ASSERT_TRUE(st.ok()) << "transaction " << i << ": " << st;
    const std::string listing = Nft(absl::StrCat("list table inet ", kTable));
    EXPECT_EQ(listing.find("hook ") != std::string::npos, i + 1 == txs.size())
        << "after transaction " << i << ":\n" << listing;
  }
  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, p);
  EXPECT_FALSE(backend_->Commit(nft::ChunkedCreate(p, 2).front()).ok());
  EXPECT_EQ(*backend_->Dump(kTable), p);
}

TEST_F(KernelTest, VerbsBehaveAsNfts) {
  Program p = Representative();
  ASSERT_OK(CommitProgram(p));
  struct Case {
    std::string name;
    std::function<void(nft::Transaction*)> build;
    absl::StatusCode code;
  };
  Set fresh{"fresh", {FieldType::kIpv4Addr}, false, false, ""};
  std::vector<Case> cases = {
      {"add table again", [](nft::Transaction* tx) { tx->AddTable(); }, absl::StatusCode::kOk},
      {"create existing table", [](nft::Transaction* tx) { tx->CreateTable(); },
       absl::StatusCode::kAlreadyExists},
      {"add existing chain", [&](nft::Transaction* tx) { tx->AddChain(p.chains["pod-b"]); },
       absl::StatusCode::kOk},
      {"create existing chain", [&](nft::Transaction* tx) { tx->CreateChain(p.chains["pod-b"]); },
       absl::StatusCode::kAlreadyExists},
      {"add existing set", [&](nft::Transaction* tx) { tx->AddSet(p.sets["pods4"]); },
       absl::StatusCode::kOk},
      {"create existing set", [&](nft::Transaction* tx) { tx->CreateSet(p.sets["pods4"]); },
       absl::StatusCode::kAlreadyExists},
      {"add existing element, same data",
       [](nft::Transaction* tx) {
         tx->AddElements("pods4", {Elem({FieldValue::Addr(Ip("10.0.0.1"))})});
       },
       absl::StatusCode::kOk},
      {"destroy missing chain, set and elements",
       [](nft::Transaction* tx) {
         tx->DestroyChain("nope");
         tx->DestroySet("nope");
         tx->DestroyElements("pods4", {Elem({FieldValue::Addr(Ip("10.99.0.1"))})});
       },
       absl::StatusCode::kOk},
      {"delete missing chain", [](nft::Transaction* tx) { tx->DeleteChain("nope"); },
       absl::StatusCode::kNotFound},
      {"delete missing set", [](nft::Transaction* tx) { tx->DeleteSet("nope"); },
       absl::StatusCode::kNotFound},
      {"delete referenced set", [](nft::Transaction* tx) { tx->DeleteSet("pods4"); },
       absl::StatusCode::kFailedPrecondition},
      {"create, fill, use and delete a set in one batch",
       [&](nft::Transaction* tx) {
         tx->CreateSet(fresh);
         tx->AddElements("fresh", {Elem({FieldValue::Addr(Ip("10.5.5.5"))})});
         tx->AddChain({"tmp", std::nullopt, "", {}});
         tx->AddRule("tmp",
                     MakeRule({Lookup({Selector::kIpSaddr}, "fresh")}, Verdict::Accept(), ""));
         tx->DeleteChain("tmp");
         tx->DeleteSet("fresh");
       },
       absl::StatusCode::kOk},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string before = Nft("list ruleset");
    nft::Transaction tx(kTable);
    c.build(&tx);
    absl::Status s = backend_->Commit(tx);
    EXPECT_EQ(s.code(), c.code) << s;
    // None of these changes the program.
    auto dumped = backend_->Dump(kTable);
    ASSERT_TRUE(dumped.ok()) << dumped.status();
    EXPECT_EQ(*dumped, p);
    EXPECT_EQ(Nft("list ruleset"), before);
  }
}

TEST_F(KernelTest, FlushTableRemovesRulesAndKeepsElements) {
  Program p = Representative();
  ASSERT_OK(CommitProgram(p));
  nft::Transaction tx(kTable);
  tx.FlushTable();
  ASSERT_OK(backend_->Commit(tx));
  Program want = p;
  for (auto& [name, chain] : want.chains) chain.rules.clear();
  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, want);
  EXPECT_EQ(Nft(absl::StrCat("list table inet ", kTable)), nft::RenderProgram(want));
}

TEST_F(KernelTest, ManyRulesInOneBatchAreAllAcknowledged) {
  // One ACK per rule: the receive buffer must hold all of them at once.
  Program p;
  p.table = kTable;
  p.sets["pods4"] = Set{"pods4", {FieldType::kIpv4Addr}, false, false, ""};
  for (int c = 0; c < 20; ++c) {
    Chain chain;
    chain.name = absl::StrCat("pod-", c);
    for (int r = 0; r < 250; ++r) {
      chain.rules.push_back(MakeRule({Lookup({Selector::kIpSaddr}, "pods4")}, Verdict::Accept(),
                                     absl::StrCat("rule ", r)));
    }
    p.chains[chain.name] = chain;
  }
  ASSERT_OK(CommitProgram(p));
  EXPECT_GT(backend_->last_commit().messages, 5000u);
  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, p);
}

TEST_F(KernelTest, DumpReportsForeignObjects) {
  Program p = Representative();
  ASSERT_OK(CommitProgram(p));
  Nft("add counter inet netpol hits");
  auto dumped = backend_->Dump(kTable);
  EXPECT_TRUE(absl::IsAborted(dumped.status())) << dumped.status();
  EXPECT_THAT(std::string(dumped.status().message()), HasSubstr("stateful object hits"));
}

// Sends `n` UDP datagrams of `payload` bytes from an unbound socket to 127.0.0.1:`port`; returns
// how many sendto accepted (a datagram dropped in `output` fails with EPERM).
int SendUdp(uint16_t port, int n, size_t payload) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return -1;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string data(payload, 'x');
  int sent = 0;
  for (int i = 0; i < n; ++i) {
    if (sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) ==
        static_cast<ssize_t>(data.size())) {
      ++sent;
    }
  }
  close(fd);
  return sent;
}

// A group chain as the compiler makes one with counters: packets to 127.0.0.1 are dispatched
// from `output` into `g`, whose lookup accepts UDP port 9999 and whose last rule drops.
Program CountedProgram() {
  Program p;
  p.table = kTable;
  p.sets["d"] = {"d", {FieldType::kIpv4Addr}, false, true, ""};
  p.sets["s"] = {"s", nft::testing::kV4ProtoPort, false, false, ""};
  p.elements["d"] = {Elem({FieldValue::Addr(Ip("127.0.0.1"))}, Verdict::Jump("g"))};
  p.elements["s"] = {Elem({FieldValue::Addr(Ip("127.0.0.1")), FieldValue::Num(17),
                           FieldValue::Num(9999)})};
  Chain out;
  out.name = "out";
  out.base = nft::BaseChainSpec{nft::Hook::kOutput, 0, false};
  out.rules.push_back(
      MakeRule({nft::testing::VmapLookup({Selector::kIpDaddr}, "d")}, std::nullopt, "dispatch"));
  p.chains["out"] = out;
  Chain g;
  g.name = "g";
  g.rules.push_back(MakeRule({nft::testing::Lookup({Selector::kIpDaddr, Selector::kL4Proto,
                                                    Selector::kThDport},
                                                   "s")},
                             Verdict::Return(), "x/a egress[0]", true));
  g.rules.push_back(MakeRule({}, Verdict::Drop(), "no egress rule of x/a", true));
  p.chains["g"] = g;
  return p;
}

TEST_F(KernelTest, RuleCountersCountPacketsAndSurviveElementChanges) {
  ASSERT_EQ(netlink::Run("ip link set lo up"), "");
  Program p = CountedProgram();
  ASSERT_OK(CommitProgram(p));
  // A receiver on 9999, so no ICMP error comes back through `output`.
  int rx = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(rx, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(9999);
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(rx, reinterpret_cast<sockaddr*>(&at), sizeof(at)), 0);

  EXPECT_EQ(SendUdp(9999, 5, 10), 5);
  EXPECT_EQ(SendUdp(9998, 3, 22), 0) << "dropped in output";
  // IPv4 datagrams: 20 (IP) + 8 (UDP) + payload bytes each.
  std::vector<nft::RuleCount> want = {{"g", 0, "x/a egress[0]", 5, 5 * 38},
                                      {"g", 1, "no egress rule of x/a", 3, 3 * 50}};
  auto counts = backend_->ReadCounters(kTable);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, want);

  // An unrelated incremental change (elements of both sets, another chain) keeps the counts.
  Program next = p;
  next.elements["s"].push_back(
      Elem({FieldValue::Addr(Ip("127.0.0.2")), FieldValue::Num(6), FieldValue::Num(80)}));
  next.elements["d"].push_back(Elem({FieldValue::Addr(Ip("127.0.0.3"))}, Verdict::Jump("h")));
  next.chains["h"] = nft::testing::MakeChain("h");
  next.chains["h"].rules.push_back(MakeRule({}, Verdict::Drop(), "other group", true));
  ASSERT_OK(backend_->Commit(nft::Diff(p, next)));
  EXPECT_EQ(SendUdp(9999, 2, 10), 2);
  want[0].packets += 2;
  want[0].bytes += 2 * 38;
  want.push_back({"h", 0, "other group", 0, 0});
  counts = backend_->ReadCounters(kTable);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, want);

  // A change of the chain's rules flushes it: its counts start over, the other chain's stay.
  Program edited = next;
  edited.chains["g"].rules[1].comment = "no egress rule of x/a, x/b";
  ASSERT_OK(backend_->Commit(nft::Diff(next, edited)));
  counts = backend_->ReadCounters(kTable);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, (std::vector<nft::RuleCount>{{"g", 0, "x/a egress[0]", 0, 0},
                                                  {"g", 1, "no egress rule of x/a, x/b", 0, 0},
                                                  {"h", 0, "other group", 0, 0}}));
  // The dump of the program is unaffected by the counts.
  auto dumped = backend_->Dump(kTable);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_EQ(*dumped, nft::Canonical(edited));
  close(rx);
  EXPECT_EQ(backend_->ReadCounters("nothing-here").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KernelTest, GenerationAdvancesPerCommit) {
  auto g1 = backend_->Generation();
  ASSERT_TRUE(g1.ok()) << g1.status();
  nft::Transaction tx(kTable);
  tx.AddTable();
  tx.AddSet({"s", {FieldType::kIpv4Addr}, false, false, ""});
  ASSERT_OK(backend_->Commit(tx));
  auto g2 = backend_->Generation();
  ASSERT_TRUE(g2.ok());
  EXPECT_EQ(*g2, *g1 + 1) << "one batch, one generation";
}

}  // namespace
}  // namespace netpol::netlink
