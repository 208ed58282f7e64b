#include "engine/netlink/test_support.h"

#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "engine/nft/transaction.h"
#include "engine/util/skip_or_fail.h"
#include "gtest/gtest.h"

namespace netpol::netlink {

void PrintTo(const Change& c, std::ostream* os) {
  *os << "{gen " << c.generation << " pid " << c.pid << " port " << c.port_id << " " << c.process
      << (c.lost ? " LOST" : "") << ": " << c.description << "}";
}

nft::Element Elem(std::vector<nft::FieldValue> key, std::optional<nft::Verdict> verdict,
                  std::string comment) {
  nft::Element e;
  e.key = std::move(key);
  e.verdict = std::move(verdict);
  e.comment = std::move(comment);
  return e;
}

void NetnsBackendTest::SetUp() {
  if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root to create a network namespace");
  ASSERT_EQ(unshare(CLONE_NEWNET), 0) << "unshare(CLONE_NEWNET): " << std::strerror(errno);
  auto b = NetlinkBackend::Create();
  ASSERT_TRUE(b.ok()) << b.status();
  backend_ = *std::move(b);
}

absl::Status NetnsBackendTest::CommitProgram(const nft::Program& p) {
  nft::Transaction tx(p.table);
  tx.AddProgram(p);
  return backend_->Commit(tx);
}

}  // namespace netpol::netlink
