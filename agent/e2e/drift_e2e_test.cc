// Hardening end to end: drift repair on nf_tables notifications, and the request size limit.
// Drift repair: the real agent in a fresh network
// namespace, its table changed behind its back with `nft`. The periodic check is switched off
// (--check-interval=0) so only the notification path can repair, and every repair must land
// within one second.
#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/e2e/fixture.h"
#include "agent/testing/fixtures.h"
#include "engine/util/skip_or_fail.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using agent::fixtures::kShop;

class DriftTest : public AgentTest {
 protected:
  // Starts the agent with periodic checks off, applies kShop, returns the table's listing.
  std::string StartWithShop() {
    StartAgent({"--check-interval=0"});
    WaitServing();
    CommandResult r = Ctl({"apply", "-f", WriteFile("shop.yaml", kShop)});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    // Apply acknowledges once the generation is in the kernel; the pods' chains show it.
    std::string listing = Nft();
    EXPECT_THAT(listing, HasSubstr("10.1.0.11")) << listing;
    return listing;
  }

  // A listing with its top-level objects (sets, maps, chains) and each set's elements in a
  // fixed order: nft lists them in creation order, which a full replace may change.
  static std::string Canonical(const std::string& listing) {
    std::vector<std::string> blocks;
    std::string head, current;
    for (absl::string_view line : absl::StrSplit(listing, '\n')) {
      std::string l(line);
      absl::string_view t = absl::StripAsciiWhitespace(line);
      if (absl::ConsumePrefix(&t, "elements = { ") && absl::ConsumeSuffix(&t, " }")) {
        std::vector<std::string> elems = absl::StrSplit(t, ", ");
        std::sort(elems.begin(), elems.end());
        l = "elements = { " + absl::StrJoin(elems, ", ") + " }";
      }
      if (absl::StartsWith(line, "\t") && !absl::StartsWith(line, "\t\t") &&
          absl::EndsWith(line, "{")) {
        current = l + "\n";
      } else if (!current.empty()) {
        current += l + "\n";
        if (line == "\t}") {
          blocks.push_back(current);
          current.clear();
        }
      } else if (!t.empty()) {
        head += l + "\n";
      }
    }
    std::sort(blocks.begin(), blocks.end());
    return head + absl::StrJoin(blocks, "");
  }

  // Polls `nft list table` for up to one second; true once it equals `want` (canonically).
  bool RestoredWithinOneSecond(const std::string& want) {
    const std::string goal = Canonical(want);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    do {
      if (Canonical(Nft()) == goal) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    } while (std::chrono::steady_clock::now() < deadline);
    return Canonical(Nft()) == goal;
  }

  // The first set holding elements in a listing, and its first element.
  static bool FirstElement(const std::string& listing, std::string* set, std::string* elem) {
    std::string current;
    for (absl::string_view line : absl::StrSplit(listing, '\n')) {
      absl::string_view t = absl::StripAsciiWhitespace(line);
      if (absl::ConsumePrefix(&t, "set ") || absl::ConsumePrefix(&t, "map ")) {
        current = std::string(absl::StripSuffix(t, " {"));
      } else if (absl::ConsumePrefix(&t, "elements = { ") && !current.empty()) {
        size_t end = t.find_first_of(",}");
        *set = current;
        *elem = std::string(absl::StripAsciiWhitespace(t.substr(0, end)));
        return !elem->empty();
      }
    }
    return false;
  }
};

TEST_F(DriftTest, DeletedTableIsBackWithinOneSecondAndTheLogNamesIt) {
  if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root (network namespaces, nftables)");
  const std::string before = StartWithShop();
  ASSERT_THAT(before, HasSubstr("table inet " + table_));
  ASSERT_EQ(RunCommand({"nft", "delete", "table", "inet", table_}).exit_code, 0);
  EXPECT_TRUE(RestoredWithinOneSecond(before)) << Nft();
  EXPECT_THAT(AgentLog(), HasSubstr("table changed by others: "));
  EXPECT_THAT(AgentLog(), HasSubstr("delete table inet " + table_));
  EXPECT_THAT(AgentLogOnceItSays("sync kind=repair"), HasSubstr("sync kind=repair"));
}

TEST_F(DriftTest, FlushedChainIsBackWithinOneSecond) {
  if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root (network namespaces, nftables)");
  const std::string before = StartWithShop();
  ASSERT_EQ(RunCommand({"nft", "flush", "chain", "inet", table_, "forward"}).exit_code, 0)
      << before;
  EXPECT_TRUE(RestoredWithinOneSecond(before)) << Nft();
  EXPECT_THAT(AgentLog(), HasSubstr("delete rule inet " + table_ + " forward handle"));
  EXPECT_THAT(AgentLogOnceItSays("sync kind=repair"), HasSubstr("sync kind=repair"));
}

TEST_F(DriftTest, ElementDeletedByHandIsBackWithinOneSecond) {
  if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root (network namespaces, nftables)");
  const std::string before = StartWithShop();
  std::string set, elem;
  ASSERT_TRUE(FirstElement(before, &set, &elem)) << before;
  CommandResult del = RunCommand(
      {"nft", "delete", "element", "inet", table_, set, "{ " + elem + " }"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_TRUE(RestoredWithinOneSecond(before)) << Nft();
  EXPECT_THAT(AgentLog(), HasSubstr("delete element from set " + set));
  EXPECT_THAT(AgentLogOnceItSays("sync kind=repair"), HasSubstr("sync kind=repair"));
}

TEST_F(DriftTest, ChangesToOtherTablesTriggerNothing) {
  if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root (network namespaces, nftables)");
  const std::string before = StartWithShop();
  ASSERT_EQ(RunCommand({"nft", "add", "table", "inet", "other"}).exit_code, 0);
  ASSERT_EQ(RunCommand({"nft", "add", "chain", "inet", "other", "c"}).exit_code, 0);
  ASSERT_EQ(RunCommand({"nft", "add", "rule", "inet", "other", "c", "accept"}).exit_code, 0);
  ASSERT_EQ(RunCommand({"nft", "delete", "table", "inet", "other"}).exit_code, 0);
  // A change to our table afterwards is seen, so the watcher was running all along: the
  // absence of a reaction to the other table is not a watcher that is simply asleep.
  ASSERT_EQ(RunCommand({"nft", "flush", "chain", "inet", table_, "forward"}).exit_code, 0);
  EXPECT_TRUE(RestoredWithinOneSecond(before)) << Nft();
  const std::string log = AgentLog();
  EXPECT_THAT(log, Not(HasSubstr("inet other")));
  EXPECT_THAT(log, HasSubstr("delete rule inet " + table_ + " forward"));
  // Exactly one reaction: the flush of our chain.
  size_t reactions = 0;
  for (size_t p = log.find("table changed by others"); p != std::string::npos;
       p = log.find("table changed by others", p + 1)) {
    ++reactions;
  }
  EXPECT_EQ(reactions, 1u) << log;
}

// The gRPC server's receive limit (16 MiB): a bigger request is refused by the transport with
// RESOURCE_EXHAUSTED before the agent parses it, and nothing changes.
TEST_F(AgentTest, OversizedRequestIsResourceExhausted) {
  if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root (network namespaces, nftables)");
  StartAgent({"--check-interval=0"});
  WaitServing();
  const std::string before = Nft();
  v1::ApplyRequest req;
  v1::Manifest* m = req.add_manifests();
  m->set_source("huge.yaml");
  m->set_text(std::string(17 << 20, '#'));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::ApplyResponse resp;
  grpc::Status st = Objects()->Apply(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_EQ(Nft(), before);
}

}  // namespace
}  // namespace netpol::e2e
