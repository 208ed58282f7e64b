// Anything valid in Kubernetes compiles into a program every writer accepts: seeded clusters whose
// namespaces, pods, policies, named ports and node carry names of every length Kubernetes
// allows (up to 63-character labels and 253-character subdomains) compile, in full and
// incrementally, into programs whose names and comments hold nft's rules (the ones the fake
// backend and the netlink encoder share) and which the fake backend commits.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/delta.h"
#include "engine/compiler/incremental.h"
#include "engine/compiler/testutil.h"
#include "engine/model/loader.h"
#include "engine/nft/fake.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

using testing::Add;
using testing::Ip;
using testing::MakeNamespace;
using testing::MakePod;
using testing::Rng;
using testing::Sel;

constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";

// A DNS label of exactly `len` characters (1..63): alphanumerics and '-', alphanumeric ends.
std::string Label(Rng& rng, int len) {
  std::string s;
  for (int i = 0; i < len; ++i) {
    const bool end = i == 0 || i + 1 == len;
    s.push_back(!end && rng.Chance(20) ? '-' : kAlnum[rng.Uniform(36)]);
  }
  return s;
}

// A DNS subdomain of exactly `len` characters (1..253): labels of up to 63 joined by dots.
std::string Subdomain(Rng& rng, int len) {
  std::string s;
  while (static_cast<int>(s.size()) < len) {
    if (!s.empty()) s.push_back('.');
    int left = len - static_cast<int>(s.size());
    // Never leave a single character for after a dot-less tail: the next label needs 1 + '.'.
    int n = left <= 63 ? left : 1 + rng.Uniform(std::min(63, left - 2));
    s += Label(rng, n);
  }
  return s;
}

// Lengths that reach the edges: the shortest, around the comment limit, the longest.
int EdgeLength(Rng& rng, int max) {
  const std::vector<int> picks = {1, 2, 62, 63, 64, 120, 127, 128, 129, 200, 252, 253};
  for (int tries = 0;; ++tries) {
    int n = rng.Chance(70) ? rng.Pick(picks) : 1 + rng.Uniform(max);
    if (n <= max) return n;
  }
}

// An IANA service name (a named port): 1..15 of [a-z0-9-], at least one letter, no "--".
std::string PortName(Rng& rng) {
  const int len = 1 + rng.Uniform(15);
  std::string s = "p";
  while (static_cast<int>(s.size()) < len) s.push_back(kAlnum[rng.Uniform(36)]);
  return s;
}

struct Cluster {
  State state;
  std::string node;
  std::vector<std::string> pod_keys;
};

Cluster MakeCluster(uint32_t seed) {
  Rng rng(seed);
  Cluster c;
  c.node = Subdomain(rng, EdgeLength(rng, 253));
  EXPECT_TRUE(ValidateDnsSubdomain("node", c.node).ok()) << c.node;
  const std::string ns = Label(rng, EdgeLength(rng, 63));
  EXPECT_TRUE(ValidateDnsLabel("namespace", ns).ok()) << ns;
  Add(&c.state, MakeNamespace(ns));
  const std::string port = PortName(rng);
  for (int i = 0; i < 4; ++i) {
    const std::string name = Subdomain(rng, EdgeLength(rng, 253));
    EXPECT_TRUE(ValidateDnsSubdomain("pod", name).ok()) << name;
    Pod p = MakePod(ns, name, {{"app", i % 2 ? "db" : "web"}}, c.node,
                    {absl::StrCat("10.0.0.", i + 1), absl::StrCat("fd00::", i + 1)},
                    {ContainerPort{port, 8080 + i, Protocol::kTCP}});
    if (c.state.pods.count(p.Key())) continue;
    c.pod_keys.push_back(p.Key());
    Add(&c.state, p);
  }
  NetworkPolicy pol;
  pol.namespace_name = ns;
  pol.name = Subdomain(rng, EdgeLength(rng, 253));
  pol.pod_selector = Sel({{"app", "db"}});
  pol.ingress_type = pol.egress_type = true;
  Rule in;
  Peer from;
  from.pod_selector = Sel({{"app", "web"}});
  in.peers.push_back(from);
  PolicyPort named;
  named.named_port = port;
  in.ports.push_back(named);
  pol.ingress.push_back(in);
  Rule out;
  out.peers.push_back(testing::BlockPeer("10.1.0.0/16", {"10.1.2.0/24"}));
  pol.egress.push_back(out);
  Add(&c.state, pol);
  return c;
}

// Every name and comment of `p` holds the writers' rules, and the fake backend commits it.
void ExpectWritable(const nft::Program& p, const std::string& what) {
  EXPECT_TRUE(nft::ValidateObjectName("table", p.table).ok()) << what;
  EXPECT_TRUE(nft::ValidateComment(p.comment).ok()) << what << ": " << p.comment;
  for (const auto& [name, chain] : p.chains) {
    EXPECT_TRUE(nft::ValidateObjectName("chain", name).ok()) << what << ": " << name;
    EXPECT_TRUE(nft::ValidateComment(chain.comment).ok()) << what << ": " << chain.comment;
    for (const nft::Rule& r : chain.rules) {
      EXPECT_TRUE(nft::ValidateComment(r.comment).ok()) << what << ": " << r.comment;
    }
  }
  for (const auto& [name, set] : p.sets) {
    EXPECT_TRUE(nft::ValidateSetDef(set).ok()) << what << ": " << name;
    for (const nft::Element& e : p.elements.count(name) ? p.elements.at(name)
                                                        : std::vector<nft::Element>{}) {
      EXPECT_TRUE(nft::ValidateElementShape(set, e).ok()) << what << ": " << e.comment;
    }
  }
  absl::Status s = nft::ValidateProgram(p);
  EXPECT_TRUE(s.ok()) << what << ": " << s;
}

TEST(KubernetesNamesTest, TheLongestNamesOfTheIssueCompileIntoValidComments) {
  // A 129-character pod name in `default` made a 137-byte dispatch comment.
  State s;
  Add(&s, MakeNamespace("default"));
  const std::string name = std::string(63, 'a') + "." + std::string(63, 'b') + ".c";
  ASSERT_TRUE(ValidateDnsSubdomain("pod", name).ok());
  Add(&s, MakePod("default", name, {{"app", "x"}}, "n1", {"10.0.0.1"}));
  NetworkPolicy pol;
  pol.namespace_name = "default";
  pol.name = "deny";
  pol.pod_selector = Sel({});
  pol.ingress_type = true;
  Add(&s, pol);
  CompileOptions o;
  o.node_name = "n1";
  absl::StatusOr<nft::Program> p = Compile(s, o);
  ASSERT_TRUE(p.ok()) << p.status();
  ExpectWritable(*p, name);
  const std::vector<nft::Element>& dispatch = p->elements.at("ingress-dispatch-v4");
  ASSERT_EQ(dispatch.size(), 1u);
  EXPECT_LE(dispatch[0].comment.size(), nft::kMaxCommentLength);
  // The readable start of the pod's key, then the hash of all of it.
  EXPECT_EQ(dispatch[0].comment.substr(0, 20), "default/aaaaaaaaaaaa");
  EXPECT_EQ(dispatch[0].comment, nft::CommentFrom("default/" + name));
}

TEST(KubernetesNamesTest, EveryValidNameCompilesInFullAndIncrementally) {
  int compiled = 0;
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    Cluster c = MakeCluster(seed);
    const std::string what = absl::StrCat("seed ", seed);
    CompileOptions o;
    o.node_name = c.node;
    absl::StatusOr<nft::Program> full = Compile(c.state, o);
    ASSERT_TRUE(full.ok()) << what << ": " << full.status();
    ExpectWritable(*full, what);
    // Distinct pods keep distinct dispatch comments, however long their names.
    std::set<std::string> comments;
    size_t entries = 0;
    for (const nft::Element& e : full->elements["ingress-dispatch-v4"]) {
      comments.insert(e.comment);
      ++entries;
    }
    EXPECT_EQ(comments.size(), entries) << what;

    // The incremental compiler: start without the last pod, then add it.
    State before = c.state;
    before.pods.erase(c.pod_keys.back());
    IncrementalCompiler inc;
    absl::StatusOr<nft::Transaction> reset = inc.Reset(before, o);
    ASSERT_TRUE(reset.ok()) << what << ": " << reset.status();
    nft::FakeBackend fake;
    ASSERT_TRUE(fake.Commit(*reset).ok()) << what;
    Delta d;
    d.pods.insert(c.pod_keys.back());
    absl::StatusOr<nft::Transaction> update = inc.Update(before, c.state, d, o);
    ASSERT_TRUE(update.ok()) << what << ": " << update.status();
    absl::Status committed = fake.Commit(*update);
    ASSERT_TRUE(committed.ok()) << what << ": " << committed;
    EXPECT_EQ(nft::Canonical(inc.program()), nft::Canonical(*full)) << what;
    absl::StatusOr<nft::Program> dumped = fake.Dump(full->table);
    ASSERT_TRUE(dumped.ok());
    EXPECT_EQ(*dumped, nft::Canonical(*full)) << what;
    ++compiled;
  }
  EXPECT_EQ(compiled, 300);
}

TEST(CommentFromTest, BoundsEscapesAndKeepsDistinctTextsDistinct) {
  EXPECT_EQ(nft::CommentFrom("shop/web-1"), "shop/web-1");
  EXPECT_EQ(nft::CommentFrom("a\"b\nc"), "a\\x22b\\x0ac");
  const std::string a = "x/" + std::string(200, 'a') + "1";
  const std::string b = "x/" + std::string(200, 'a') + "2";
  for (const std::string& text : {a, b, std::string(500, '"')}) {
    const std::string c = nft::CommentFrom(text);
    EXPECT_EQ(c.size(), nft::kMaxCommentLength) << text;
    EXPECT_TRUE(nft::ValidateComment(c).ok()) << c;
    EXPECT_EQ(nft::CommentFrom(text), c) << "stable";
  }
  EXPECT_NE(nft::CommentFrom(a), nft::CommentFrom(b));
  // The longest text that needs no shortening is kept whole.
  EXPECT_EQ(nft::CommentFrom(std::string(128, 'z')), std::string(128, 'z'));
}

}  // namespace
}  // namespace netpol::compiler
