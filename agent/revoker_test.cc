// The revoker against a fake conntrack table: what a change denies is deleted, what stays
// allowed is kept.
#include "agent/revoker.h"

#include <string>
#include <vector>

#include "agent/testing/fixtures.h"
#include "engine/compiler/compiler.h"
#include "engine/model/loader.h"
#include "engine/nft/diff.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

// Pods a (web), b (app `b_label`) and c (client) in namespace x; web accepts client on http.
std::string World(const std::string& b_label) { return fixtures::WebAndClients(b_label, true); }

nft::Program Compile(const std::string& yaml) {
  const State s = fixtures::LoadState(yaml);
  compiler::CompileOptions opts;
  opts.node_name = "n1";
  auto p = compiler::Compile(s, opts);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

class FakeTable : public conntrack::Table {
 public:
  explicit FakeTable(std::vector<conntrack::Entry>* entries) : entries_(entries) {}
  absl::StatusOr<std::vector<conntrack::Entry>> Dump(Family family) override {
    std::vector<conntrack::Entry> out;
    for (const auto& e : *entries_) {
      if (e.flow.family == family) out.push_back(e);
    }
    return out;
  }
  absl::Status Delete(const conntrack::Entry& entry) override {
    for (auto it = entries_->begin(); it != entries_->end(); ++it) {
      if (it->flow.src == entry.flow.src && it->flow.sport == entry.flow.sport &&
          it->flow.dst == entry.flow.dst && it->flow.dport == entry.flow.dport &&
          it->flow.l4proto == entry.flow.l4proto) {
        entries_->erase(it);
        return absl::OkStatus();
      }
    }
    return absl::NotFoundError("gone");
  }

 private:
  std::vector<conntrack::Entry>* entries_;
};

conntrack::Entry Tcp(const std::string& src, uint16_t sport, const std::string& dst,
                     uint16_t dport) {
  conntrack::Entry e;
  e.flow.family = Family::kV4;
  e.flow.l4proto = 6;
  e.flow.src = *IpAddr::Parse(src);
  e.flow.dst = *IpAddr::Parse(dst);
  e.flow.sport = sport;
  e.flow.dport = dport;
  e.flow.has_ports = true;
  e.orig_src = e.flow.src;
  e.orig_dst = e.flow.dst;
  e.orig_sport = sport;
  e.orig_dport = dport;
  return e;
}

Revoker MakeRevoker(std::vector<conntrack::Entry>* entries) {
  return Revoker(
      [entries]() -> absl::StatusOr<std::unique_ptr<conntrack::Table>> {
        return std::unique_ptr<conntrack::Table>(new FakeTable(entries));
      },
      [] { return absl::StatusOr<std::vector<IpAddr>>(std::vector<IpAddr>{}); });
}

TEST(RevokerTest, DeletesTheDeniedFlowAndKeepsTheAllowedOne) {
  const nft::Program before = Compile(World("client"));
  const nft::Program after = Compile(World("other"));  // b loses access to a
  std::vector<conntrack::Entry> entries = {Tcp("10.0.0.2", 40000, "10.0.0.1", 8080),
                                           Tcp("10.0.0.3", 40001, "10.0.0.1", 8080)};
  Revoker r = MakeRevoker(&entries);
  r.AfterCommit(&before, nft::Diff(before, after), after);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].flow.src, *IpAddr::Parse("10.0.0.3"));
  EXPECT_EQ(r.stats().deleted, 1);
  EXPECT_EQ(r.stats().revocations, 1);
}

TEST(RevokerTest, ChangesThatDenyNothingTouchNothing) {
  const nft::Program before = Compile(World("other"));
  const nft::Program after = Compile(World("client"));  // b gains access: nothing to revoke
  std::vector<conntrack::Entry> entries = {Tcp("10.0.0.2", 40000, "10.0.0.1", 8080),
                                           Tcp("10.0.0.3", 40001, "10.0.0.1", 8080)};
  Revoker r = MakeRevoker(&entries);
  r.AfterCommit(&before, nft::Diff(before, after), after);
  EXPECT_EQ(entries.size(), 2u);
  EXPECT_EQ(r.stats().deleted, 0);
}

TEST(RevokerTest, NoPreviousProgramRevokesNothing) {
  const nft::Program after = Compile(World("other"));
  std::vector<conntrack::Entry> entries = {Tcp("10.0.0.2", 40000, "10.0.0.1", 8080)};
  Revoker r = MakeRevoker(&entries);
  r.AfterCommit(nullptr, nft::FullReplace(after), after);
  EXPECT_EQ(entries.size(), 1u);
  EXPECT_EQ(r.stats().revocations, 0);
}

}  // namespace
}  // namespace netpol::agent
