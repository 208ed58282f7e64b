// Checks the nft text against the real thing: loads Transaction::ToNftText() with `nft -f` into
// a fresh network namespace (`unshare -n`, so the host's tables are never touched) and compares
// `nft list table` with RenderProgram byte for byte. Needs root; skips otherwise.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "engine/nft/diff.h"
#include "engine/nft/fake.h"
#include "engine/nft/objects_cases.h"
#include "engine/nft/program.h"
#include "engine/nft/random_program.h"
#include "engine/nft/test_util.h"
#include "engine/nft/transaction.h"
#include "engine/util/skip_or_fail.h"
#include "gtest/gtest.h"

namespace netpol::nft {
namespace {

using namespace ::netpol::nft::testing;  // NOLINT: test shorthands

struct ShellRun {
  int status = -1;
  std::string output;
};

std::string TempDir() {
  const char* d = std::getenv("TEST_TMPDIR");
  return d != nullptr ? d : "/tmp";
}

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = absl::StrCat(TempDir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

// Runs `script` with sh in a new, empty network namespace; returns its exit status and output.
ShellRun InFreshNetns(const std::string& script) {
  std::string path = WriteFile("script.sh", script);
  ShellRun r;
  FILE* p = popen(absl::StrCat("unshare -n sh -e ", path, " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  r.status = pclose(p);
  return r;
}

// Loads `tx` into a fresh namespace and returns `nft [-s] list table inet <table>`.
ShellRun LoadAndList(const std::vector<Transaction>& txs, const std::string& table,
                     bool stateless = false) {
  std::string script;
  for (size_t i = 0; i < txs.size(); ++i) {
    std::string path = WriteFile(absl::StrCat("tx", i, ".nft"), txs[i].ToNftText());
    absl::StrAppend(&script, "nft -f ", path, "\n");
  }
  absl::StrAppend(&script, "nft ", stateless ? "-s " : "", "list table inet ", table, "\n");
  return InFreshNetns(script);
}

class KernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      NETPOL_SKIP_OR_FAIL("needs root to create network namespaces and load nftables");
    }
    ShellRun r = InFreshNetns("nft list ruleset\n");
    if (r.status != 0) {
      NETPOL_SKIP_OR_FAIL("cannot run nft in a new network namespace: " << r.output);
    }
  }
};

TEST_F(KernelTest, RepresentativeProgramListsAsRendered) {
  Program p = ExampleProgram();
  ASSERT_TRUE(ValidateProgram(p).ok()) << ValidateProgram(p);
  ShellRun r = LoadAndList({FullReplace(p)}, p.table);
  ASSERT_EQ(r.status, 0) << r.output << "\nscript:\n" << FullReplace(p).ToNftText();
  EXPECT_EQ(r.output, RenderProgram(p));
  RenderOptions stateless;
  stateless.stateless = true;
  ShellRun s = LoadAndList({FullReplace(p)}, p.table, /*stateless=*/true);
  ASSERT_EQ(s.status, 0) << s.output;
  EXPECT_EQ(s.output, RenderProgram(p, stateless));
}

TEST_F(KernelTest, RandomProgramsListAsRendered) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    Program p = RandomProgram(seed, 1);
    ASSERT_TRUE(ValidateProgram(p).ok()) << "seed " << seed << ": " << ValidateProgram(p);
    ShellRun r = LoadAndList({FullReplace(p)}, p.table);
    ASSERT_EQ(r.status, 0) << "seed " << seed << ": " << r.output << "\nscript:\n"
                           << FullReplace(p).ToNftText();
    EXPECT_EQ(r.output, RenderProgram(p)) << "seed " << seed;
  }
}

// Every icmpv6 type, every protocol number and every priority near the named ones.
TEST_F(KernelTest, NamesAndPrioritiesListAsRendered) {
  Program p;
  p.table = "names";
  Chain c = MakeChain("icmp6-types");
  for (int t = 0; t < 256; ++t) {
    c.rules.push_back(MakeRule({Icmpv6TypeMatch{static_cast<uint8_t>(t), static_cast<uint8_t>(t)}},
                               Verdict::Accept()));
  }
  c.rules.push_back(MakeRule({Icmpv6TypeMatch{0, 255}}, Verdict::Accept()));
  p.chains["icmp6-types"] = c;
  p.sets["protos"] = MakeSet("protos", {FieldType::kInetProto, FieldType::kInetService}, true);
  p.sets["protos-hash"] = MakeSet("protos-hash", {FieldType::kInetProto});
  for (uint32_t proto = 0; proto < 256; ++proto) {
    p.elements["protos"].push_back(E({N(proto), N(proto)}));
    p.elements["protos-hash"].push_back(E({N(proto)}));
  }
  p.elements["protos"].push_back(E({NR(0, 255), NR(256, 300)}));
  p.elements["protos"].push_back(E({NR(6, 17), NR(301, 302)}));
  const std::vector<Hook> hooks = {Hook::kPrerouting, Hook::kInput, Hook::kForward, Hook::kOutput,
                                   Hook::kPostrouting};
  const char* hook_names[] = {"pre", "in", "fwd", "out", "post"};
  for (int h = 0; h < 5; ++h) {
    for (int center : {-300, -150, -100, 0, 50, 100}) {
      for (int off : {-12, -11, -10, -9, -1, 0, 1, 9, 10, 11}) {
        std::string name =
            absl::StrCat(hook_names[h], "-p", center + off < 0 ? "m" : "", std::abs(center + off));
        if (p.chains.count(name)) continue;
        p.chains[name] = MakeBase(name, hooks[h], center + off, off == 1);
      }
    }
  }
  Canonicalize(&p);
  ASSERT_TRUE(ValidateProgram(p).ok()) << ValidateProgram(p);
  ShellRun r = LoadAndList({FullReplace(p)}, p.table);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, RenderProgram(p));
}

// Element listing order and line breaks of larger sets of every shape.
TEST_F(KernelTest, LargeSetsListAsRendered) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    RandomProgramOptions options;
    options.max_elements_per_set = 40;
    options.table = "large";
    Program p = RandomProgram(seed * 7919, 1, options);
    ShellRun r = LoadAndList({FullReplace(p)}, p.table);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output, RenderProgram(p)) << "seed " << seed;
  }
}

// Sorts the blocks (sets, maps, chains) of a listing and the elements inside each block: nft
// lists objects in creation order and interval elements in insertion order, which an
// incremental diff changes.
std::string Normalize(const std::string& listing) {
  std::vector<std::string> blocks;
  std::string header, current;
  std::vector<std::string> lines = absl::StrSplit(listing, '\n');
  for (const std::string& line : lines) {
    if (absl::StartsWith(line, "\tset ") || absl::StartsWith(line, "\tmap ") ||
        absl::StartsWith(line, "\tchain ")) {
      current = line + "\n";
    } else if (line == "\t}") {
      current += line + "\n";
      blocks.push_back(current);
      current.clear();
    } else if (!current.empty()) {
      current += line + "\n";
    } else if (line != "" && line != "}") {
      header += line + "\n";
    }
  }
  for (std::string& b : blocks) {
    size_t start = b.find("elements = { ");
    if (start == std::string::npos) continue;
    size_t end = b.find(" }\n", start);
    std::string inner = b.substr(start + 13, end - start - 13);
    // Element texts contain spaces; split on the separators nft puts between elements.
    std::vector<std::string> elems = absl::StrSplit(
        absl::StrReplaceAll(inner, {{",\n\t\t\t     ", "\x01"}, {", ", "\x01"}}), '\x01');
    std::sort(elems.begin(), elems.end());
    b = b.substr(0, start) + "elements = {" + absl::StrJoin(elems, "|") + "}" + b.substr(end + 2);
  }
  std::sort(blocks.begin(), blocks.end());
  return header + absl::StrJoin(blocks, "");
}

TEST_F(KernelTest, DiffsApplyInTheKernel) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    Program from = RandomProgram(seed, 1), to = RandomProgram(seed, 2);
    Transaction diff = Diff(from, to);
    ShellRun r = LoadAndList({FullReplace(from), diff}, to.table);
    ASSERT_EQ(r.status, 0) << "seed " << seed << ": " << r.output << "\ndiff:\n"
                           << diff.ToNftText();
    to.comment = from.comment;  // Diff leaves the table comment alone
    EXPECT_EQ(Normalize(r.output), Normalize(RenderProgram(to))) << "seed " << seed << "\ndiff:\n"
                                                                 << diff.ToNftText();
  }
}

TEST_F(KernelTest, FullReplaceReplacesAnExistingTable) {
  Program from = RandomProgram(5, 1), to = RandomProgram(6, 1);
  ShellRun r = LoadAndList({FullReplace(from), FullReplace(to)}, to.table);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, RenderProgram(to));
}

// The kernel (through nft 1.0.6) accepts and refuses what FakeBackend accepts and refuses, except
// where netpol is stricter on purpose or nft 1.0.6 cannot express the command.
TEST_F(KernelTest, KernelAgreesWithTheFakeOnEveryObjectCase) {
  const std::set<std::string> stricter_than_kernel = {
      "AddChainNameTooLongFails",        // the kernel allows 255 bytes; netpol budgets 63
      "AddSingleFieldIntervalSetFails",  // netpol uses concatenated interval sets only
      "AddRuleVmapWithVerdictFails",     // the kernel keeps a verdict that can never run
  };
  int checked = 0;
  for (const Case& c : Cases()) {
    Transaction tx("t");
    c.build(tx);
    const std::string text = tx.ToNftText();
    if (text.find("destroy ") != std::string::npos) continue;  // nft 1.0.6 has no destroy
    std::vector<Transaction> txs;
    if (!c.from_nothing) txs.push_back(FullReplace(Fixture()));
    std::string script;
    for (size_t i = 0; i < txs.size(); ++i) {
      absl::StrAppend(&script, "nft -f ",
                      WriteFile(absl::StrCat("setup", i, ".nft"), txs[i].ToNftText()), "\n");
    }
    absl::StrAppend(&script, "if nft -f ", WriteFile("case.nft", text),
                    "; then echo ACCEPTED; else echo REFUSED; fi\n");
    ShellRun r = InFreshNetns(script);
    ASSERT_EQ(r.status, 0) << c.name << ": " << r.output;
    const bool accepted = absl::StrContains(r.output, "ACCEPTED");
    const bool fake_accepts = c.code == absl::StatusCode::kOk;
    if (stricter_than_kernel.count(c.name)) {
      EXPECT_TRUE(accepted && !fake_accepts) << c.name << ": no longer stricter than the kernel";
    } else {
      EXPECT_EQ(accepted, fake_accepts) << c.name << ":\n" << text << "\n" << r.output;
    }
    ++checked;
  }
  EXPECT_GT(checked, 60);
}

// Every word ValidateObjectName refuses as an nft keyword is one nft cannot read as a chain
// name, and names like netpol's own are fine.
TEST_F(KernelTest, KeywordNamesAreTheOnesNftRefuses) {
  std::string script = "nft add table inet t\n";
  for (const std::string& kw : NftKeywords()) {
    EXPECT_FALSE(ValidateObjectName("chain", kw).ok()) << kw;
    absl::StrAppend(&script, "if nft add chain inet t ", kw, " 2>/dev/null; then echo ACCEPTED ",
                    kw, "; fi\n");
  }
  for (const char* name : {"forward", "input", "output", "netpol", "pod-a1b2c3-ns-x", "in",
                                  "out", "dispatch4", "r0", "s0", "b0", "leaf"}) {
    EXPECT_TRUE(ValidateObjectName("chain", name).ok()) << name;
    absl::StrAppend(&script, "nft add chain inet t ", name, " || echo REFUSED ", name, "\n");
  }
  ShellRun r = InFreshNetns(script);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "");
  EXPECT_GT(NftKeywords().size(), 100u);
}

}  // namespace
}  // namespace netpol::nft
