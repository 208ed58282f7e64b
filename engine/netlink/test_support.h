// Test support for the netlink backend's tests (testonly): status assertions, readable
// ChangeMonitor changes in failures, an element shorthand, and a fixture that runs each test in
// a fresh network namespace with a NetlinkBackend.
#ifndef NETPOL_ENGINE_NETLINK_TEST_SUPPORT_H_
#define NETPOL_ENGINE_NETLINK_TEST_SUPPORT_H_

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/netlink/change_monitor.h"
#include "engine/netlink/netlink_backend.h"
#include "engine/nft/program.h"
#include "gtest/gtest.h"

// Evaluates a Status once and fails with it.
#define ASSERT_OK(expr)                       \
  do {                                        \
    absl::Status netpol_s_ = (expr);          \
    ASSERT_TRUE(netpol_s_.ok()) << netpol_s_; \
  } while (0)
#define EXPECT_OK(expr)                       \
  do {                                        \
    absl::Status netpol_s_ = (expr);          \
    EXPECT_TRUE(netpol_s_.ok()) << netpol_s_; \
  } while (0)

namespace netpol::netlink {

// Prints a change in test failures: generation, pid, port, process, LOST and the description.
void PrintTo(const Change& c, std::ostream* os);

// An element with `key`, and for verdict maps `verdict`.
nft::Element Elem(std::vector<nft::FieldValue> key,
                  std::optional<nft::Verdict> verdict = std::nullopt, std::string comment = "");

// Each test in a fresh network namespace with a NetlinkBackend in it. SetUp moves the whole test
// process into a new network namespace (unshare(CLONE_NEWNET)), so it sees an empty ruleset and
// never touches the host's firewall; children (`nft`) inherit it. Skips when not root.
class NetnsBackendTest : public ::testing::Test {
 protected:
  void SetUp() override;

  // Adds the whole of `p` (table, sets, chains, rules, elements) in one transaction.
  absl::Status CommitProgram(const nft::Program& p);

  std::unique_ptr<NetlinkBackend> backend_;
};

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_TEST_SUPPORT_H_
