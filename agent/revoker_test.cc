// The revoker against a fake conntrack table: what a change denies is deleted, what stays
// allowed is kept.
#include "agent/revoker.h"

#include <functional>
#include <memory>
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

std::unique_ptr<Revoker> MakeRevoker(std::vector<conntrack::Entry>* entries) {
  return std::make_unique<Revoker>(
      [entries]() -> absl::StatusOr<std::unique_ptr<conntrack::Table>> {
        return std::unique_ptr<conntrack::Table>(new FakeTable(entries));
      },
      [] { return absl::StatusOr<std::vector<IpAddr>>(std::vector<IpAddr>{}); });
}

// The deferred revoker's judge: the program the test has "committed" last.
Revoker::Judge JudgeWith(const nft::Program** current) {
  return [current](const std::function<void(const nft::Program&)>& judge) { judge(**current); };
}

TEST(RevokerTest, DeletesTheDeniedFlowAndKeepsTheAllowedOne) {
  const nft::Program before = Compile(World("client"));
  const nft::Program after = Compile(World("other"));  // b loses access to a
  std::vector<conntrack::Entry> entries = {Tcp("10.0.0.2", 40000, "10.0.0.1", 8080),
                                           Tcp("10.0.0.3", 40001, "10.0.0.1", 8080)};
  std::unique_ptr<Revoker> r = MakeRevoker(&entries);
  r->AfterCommit(&before, nft::Diff(before, after), after);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].flow.src, *IpAddr::Parse("10.0.0.3"));
  EXPECT_EQ(r->stats().deleted, 1);
  EXPECT_EQ(r->stats().revocations, 1);
}

TEST(RevokerTest, ChangesThatDenyNothingTouchNothing) {
  const nft::Program before = Compile(World("other"));
  const nft::Program after = Compile(World("client"));  // b gains access: nothing to revoke
  std::vector<conntrack::Entry> entries = {Tcp("10.0.0.2", 40000, "10.0.0.1", 8080),
                                           Tcp("10.0.0.3", 40001, "10.0.0.1", 8080)};
  std::unique_ptr<Revoker> r = MakeRevoker(&entries);
  r->AfterCommit(&before, nft::Diff(before, after), after);
  EXPECT_EQ(entries.size(), 2u);
  EXPECT_EQ(r->stats().deleted, 0);
}

TEST(RevokerTest, NoPreviousProgramRevokesNothing) {
  const nft::Program after = Compile(World("other"));
  std::vector<conntrack::Entry> entries = {Tcp("10.0.0.2", 40000, "10.0.0.1", 8080)};
  std::unique_ptr<Revoker> r = MakeRevoker(&entries);
  r->AfterCommit(nullptr, nft::FullReplace(after), after);
  EXPECT_EQ(entries.size(), 1u);
  EXPECT_EQ(r->stats().revocations, 0);
}

// Deferred: a commit's flows are deleted by the worker's listing after it, not by AfterCommit;
// commits queued while the worker waits for its interval share one listing, and the flows are
// judged against the program committed when it lists, not the one of the commit that named them.
TEST(RevokerTest, DeferredListsOnceForTheCommitsQueuedSinceTheLastListing) {
  const nft::Program allowing = Compile(World("client"));
  const nft::Program denying = Compile(World("other"));  // b loses access to a
  const conntrack::Entry b = Tcp("10.0.0.2", 40000, "10.0.0.1", 8080);
  std::vector<conntrack::Entry> entries = {b, Tcp("10.0.0.3", 40001, "10.0.0.1", 8080)};
  std::unique_ptr<Revoker> r = MakeRevoker(&entries);
  const nft::Program* current = &allowing;
  // An hour between listings: only the first listing (the worker was idle) and Flush list.
  r->StartDeferred(JudgeWith(&current), absl::Hours(1));

  current = &denying;
  r->AfterCommit(&allowing, nft::Diff(allowing, denying), denying);
  ASSERT_TRUE(r->Flush());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].flow.src, *IpAddr::Parse("10.0.0.3"));
  EXPECT_EQ(r->stats().dumps, 1);

  // b connects again while it is allowed; four commits follow, two of them deny it again.
  entries.push_back(b);
  for (int i = 0; i < 2; ++i) {
    current = &allowing;
    r->AfterCommit(&denying, nft::Diff(denying, allowing), allowing);
    current = &denying;
    r->AfterCommit(&allowing, nft::Diff(allowing, denying), denying);
  }
  EXPECT_EQ(r->stats().revocations, 3);
  EXPECT_EQ(r->stats().dumps, 1) << "the worker waits for its interval";
  EXPECT_EQ(entries.size(), 2u);
  ASSERT_TRUE(r->Flush());
  EXPECT_EQ(r->stats().dumps, 2) << "one listing for both queued commits";
  EXPECT_EQ(r->stats().revoked, 3);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].flow.src, *IpAddr::Parse("10.0.0.3"));
  EXPECT_EQ(r->stats().deleted, 2);
}

TEST(RevokerTest, DeferredJudgesAgainstTheProgramCommittedWhenItLists) {
  const nft::Program allowing = Compile(World("client"));
  const nft::Program denying = Compile(World("other"));
  std::vector<conntrack::Entry> entries;
  std::unique_ptr<Revoker> r = MakeRevoker(&entries);
  const nft::Program* current = &allowing;
  r->StartDeferred(JudgeWith(&current), absl::Hours(1));
  // Start the worker's interval: a first listing, of a table without b's flow yet.
  r->AfterCommit(&allowing, nft::Diff(allowing, denying), denying);
  ASSERT_TRUE(r->Flush());
  entries.push_back(Tcp("10.0.0.2", 40000, "10.0.0.1", 8080));
  // b's access is taken away and given back before the worker lists: the flow stays.
  r->AfterCommit(&allowing, nft::Diff(allowing, denying), denying);
  r->AfterCommit(&denying, nft::Diff(denying, allowing), allowing);
  ASSERT_TRUE(r->Flush());
  EXPECT_EQ(entries.size(), 1u);
  EXPECT_EQ(r->stats().kept, 1);
  EXPECT_EQ(r->stats().deleted, 0);
}

TEST(RevokerTest, DeferredStopRevokesWhatIsQueued) {
  const nft::Program allowing = Compile(World("client"));
  const nft::Program denying = Compile(World("other"));
  std::vector<conntrack::Entry> entries = {Tcp("10.0.0.2", 40000, "10.0.0.1", 8080)};
  std::unique_ptr<Revoker> r = MakeRevoker(&entries);
  const nft::Program* current = &denying;
  r->StartDeferred(JudgeWith(&current), absl::Hours(1));
  r->AfterCommit(&allowing, nft::Diff(allowing, denying), denying);
  ASSERT_TRUE(r->Flush());  // the idle worker's listing; the next one waits an hour
  entries.push_back(Tcp("10.0.0.2", 40002, "10.0.0.1", 8080));
  r->AfterCommit(&allowing, nft::Diff(allowing, denying), denying);
  r->Stop();
  EXPECT_TRUE(entries.empty());
  EXPECT_EQ(r->stats().revoked, 2);
}

}  // namespace
}  // namespace netpol::agent
