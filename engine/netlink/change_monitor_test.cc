// ChangeMonitor against a scripted kernel behind the system-call seam: notifications crafted
// with libnftnl (as the kernel sends them), split across datagrams, mixed with other tables and
// families, interrupted by overflows and socket errors. No root needed;
// change_monitor_kernel_test covers the real kernel.
#include "engine/netlink/change_monitor.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "engine/netlink/codec.h"
#include "engine/netlink/encode.h"
#include "engine/netlink/syscalls.h"
#include "engine/netlink/test_support.h"
#include "engine/nft/program.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::netlink {
namespace {

using nft::FieldType;
using nft::FieldValue;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int kFd = 9;
constexpr uint32_t kOurPort = 100;
constexpr uint32_t kNftPort = 200;

// One datagram the scripted kernel hands out, or an errno recv reports instead.
struct Datagram {
  std::string bytes;
  int error = 0;
};

class ScriptedKernel : public NetlinkSyscalls {
 public:
  int socket_errno = 0;
  std::vector<nft::Set> sets;  // the table's sets, answered to GETSET dumps
  std::deque<Datagram> notifications;
  std::vector<int> groups;      // NETLINK_ADD_MEMBERSHIP calls
  std::map<int, int> sockopts;  // SOL_SOCKET option -> value
  int dumps = 0;
  int open_sockets = 0;

  SyscallResult Socket(int, int, int) override {
    if (socket_errno) return {-1, socket_errno};
    ++open_sockets;
    return {next_fd_++, 0};
  }
  SyscallResult Bind(int, const struct sockaddr*, socklen_t) override { return {0, 0}; }
  SyscallResult GetSockName(int, struct sockaddr* addr, socklen_t*) override {
    reinterpret_cast<sockaddr_nl*>(addr)->nl_pid = 4000;
    return {0, 0};
  }
  SyscallResult SetSockOpt(int, int level, int name, const void* value, socklen_t) override {
    if (level == SOL_NETLINK && name == NETLINK_ADD_MEMBERSHIP) {
      groups.push_back(*static_cast<const int*>(value));
    }
    if (level == SOL_SOCKET) sockopts[name] = *static_cast<const int*>(value);
    return {0, 0};
  }
  SyscallResult SendMsg(int fd, const struct msghdr* msg, int) override {
    const auto* req = static_cast<const nlmsghdr*>(msg->msg_iov[0].iov_base);
    size_t len = msg->msg_iov[0].iov_len;
    if ((req->nlmsg_type & 0xff) == NFT_MSG_GETSET && (req->nlmsg_flags & NLM_F_DUMP)) {
      ++dumps;
      std::string reply;
      char buf[4096];
      for (const nft::Set& s : sets) {
        nlmsghdr* nlh =
            nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_MULTI, req->nlmsg_seq);
        auto built = BuildSet("netpol", s, 0);
        EXPECT_TRUE(built.ok()) << built.status();
        nftnl_set_nlmsg_build_payload(nlh, built->get());
        reply.append(reinterpret_cast<char*>(nlh), nlh->nlmsg_len);
      }
      nlmsghdr* d = mnl_nlmsg_put_header(buf);
      d->nlmsg_type = NLMSG_DONE;
      d->nlmsg_flags = NLM_F_MULTI;
      d->nlmsg_seq = req->nlmsg_seq;
      mnl_nlmsg_put_extra_header(d, sizeof(int));
      reply.append(reinterpret_cast<char*>(d), d->nlmsg_len);
      replies_[fd].push_back(reply);
    }
    return {static_cast<ssize_t>(len), 0};
  }
  SyscallResult Recv(int fd, void* buf, size_t len, int) override {
    std::deque<std::string>& replies = replies_[fd];
    if (!replies.empty()) return Hand(replies.front(), buf, len, &replies);
    if (fd != kFirstFd || notifications.empty()) return {-1, EAGAIN};
    Datagram d = notifications.front();
    notifications.pop_front();
    if (d.error) return {-1, d.error};
    std::deque<std::string> one = {d.bytes};
    return Hand(d.bytes, buf, len, &one);
  }
  SyscallResult Poll(struct pollfd* fds, nfds_t, int) override {
    bool ready = !replies_[fds[0].fd].empty() || (fds[0].fd == kFirstFd && !notifications.empty());
    return {ready ? 1 : 0, 0};
  }
  SyscallResult Close(int) override {
    --open_sockets;
    return {0, 0};
  }

  static constexpr int kFirstFd = kFd;  // the monitor's notification socket is opened first

 private:
  SyscallResult Hand(std::string d, void* buf, size_t len, std::deque<std::string>* q) {
    q->pop_front();
    memcpy(buf, d.data(), std::min(len, d.size()));
    return {static_cast<ssize_t>(d.size()), 0};
  }

  int next_fd_ = kFd;
  std::map<int, std::deque<std::string>> replies_;
};

// Notification builders. `port` and `seq` as the kernel stamps them: the committing socket's
// port id and the command's sequence number (0 for element notifications).
std::string Stamp(nlmsghdr* nlh, uint32_t port) {
  nlh->nlmsg_pid = port;
  return std::string(reinterpret_cast<char*>(nlh), nlh->nlmsg_len);
}

std::string TableMsg(uint16_t type, const std::string& table, uint32_t port, uint32_t seq,
                     uint16_t family = NFPROTO_INET) {
  char buf[4096];
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, type, family, 0, seq);
  TablePtr t = BuildTable(table, "");
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  return Stamp(nlh, port);
}

std::string RuleMsg(uint16_t type, const std::string& table, const std::string& chain,
                    uint64_t handle, uint32_t port, uint32_t seq,
                    const std::vector<std::string>& exprs = {}) {
  char buf[4096];
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_INET, 0, seq);
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
  nftnl_rule_set_u64(r.get(), NFTNL_RULE_HANDLE, handle);
  for (const std::string& e : exprs) nftnl_rule_add_expr(r.get(), nftnl_expr_alloc(e.c_str()));
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  return Stamp(nlh, port);
}

// One message per element, as the kernel sends them (libnftnl numbers the nests of several
// elements 1, 2, ... which its own parser refuses; the kernel writes NFTA_LIST_ELEM for each).
std::string ElementMsg(uint16_t type, const std::string& table, const nft::Set& set,
                       const std::vector<nft::Element>& elements, uint32_t port) {
  EXPECT_EQ(elements.size(), 1u);
  char buf[4096];
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_INET, 0, 0);
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.name.c_str());
  for (const nft::Element& e : elements) {
    nftnl_set_elem_add(s.get(), BuildElement(set, e, /*keys_only=*/true).release());
  }
  nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
  return Stamp(nlh, port);
}

std::string GenMsg(uint32_t gen, uint32_t pid, const std::string& process, uint32_t port,
                   uint32_t seq) {
  char buf[4096];
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWGEN, AF_UNSPEC, 0, seq);
  mnl_attr_put_u32(nlh, NFTA_GEN_ID, htonl(gen));
  mnl_attr_put_u32(nlh, NFTA_GEN_PROC_PID, htonl(pid));
  mnl_attr_put_strz(nlh, NFTA_GEN_PROC_NAME, process.c_str());
  return Stamp(nlh, port);
}

nft::Set Peers() {
  return {"in-x-a-v4",
          {FieldType::kIpv4Addr, FieldType::kInetProto, FieldType::kInetService},
          false,
          false,
          ""};
}

nft::Element Peer(const std::string& ip, uint32_t proto, uint32_t port) {
  nft::Element e;
  e.key = {FieldValue::Addr(*IpAddr::Parse(ip)), FieldValue::Num(proto), FieldValue::Num(port)};
  return e;
}

nft::Element Host(const std::string& ip) {
  nft::Element e;
  e.key = {FieldValue::Addr(*IpAddr::Parse(ip))};
  return e;
}

Change Attributed(uint32_t gen, uint32_t pid, const std::string& process, uint32_t port,
                  const std::string& description) {
  Change c;
  c.generation = gen;
  c.pid = pid;
  c.process = process;
  c.port_id = port;
  c.description = description;
  return c;
}

class ChangeMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernel_.sets = {Peers()};
    ChangeMonitorOptions options;
    options.syscalls = &kernel_;
    options.receive_buffer_bytes = 1 << 20;
    auto m = ChangeMonitor::Create("netpol", options);
    ASSERT_TRUE(m.ok()) << m.status();
    monitor_ = *std::move(m);
  }

  void Deliver(std::vector<std::string> messages) {
    std::string d;
    for (const std::string& m : messages) d += m;
    kernel_.notifications.push_back({d, 0});
  }

  std::vector<Change> Read() {
    auto changes = monitor_->ReadChanges(0);
    EXPECT_TRUE(changes.ok()) << changes.status();
    return changes.ok() ? *changes : std::vector<Change>{};
  }

  ScriptedKernel kernel_;
  std::unique_ptr<ChangeMonitor> monitor_;
};

TEST_F(ChangeMonitorTest, SubscribesAndSizesTheBuffer) {
  EXPECT_THAT(kernel_.groups, ElementsAre(NFNLGRP_NFTABLES));
  EXPECT_EQ(kernel_.sockopts[SO_RCVBUFFORCE], 1 << 20);
  EXPECT_EQ(kernel_.dumps, 1);
  EXPECT_EQ(kernel_.open_sockets, 1) << "the dump socket is closed again";
  EXPECT_EQ(monitor_->fd(), kFd);
}

TEST_F(ChangeMonitorTest, BatchIsReturnedOnceItsMarkerArrives) {
  Deliver({RuleMsg(NFT_MSG_DELRULE, "netpol", "forward", 7, kNftPort, 50),
           RuleMsg(NFT_MSG_DELRULE, "netpol", "forward", 8, kNftPort, 50)});
  EXPECT_THAT(Read(), IsEmpty()) << "the batch is not finished";
  Deliver({GenMsg(12, 4321, "nft", kNftPort, 50)});
  EXPECT_THAT(
      Read(),
      ElementsAre(
          Attributed(12, 4321, "nft", kNftPort, "delete rule inet netpol forward handle 7"),
          Attributed(12, 4321, "nft", kNftPort, "delete rule inet netpol forward handle 8")));
  EXPECT_EQ(monitor_->generations_seen(), 1u);
}

TEST_F(ChangeMonitorTest, OtherTablesAndFamiliesAreIgnored) {
  Deliver({TableMsg(NFT_MSG_DELTABLE, "other", kNftPort, 60),
           TableMsg(NFT_MSG_DELTABLE, "netpol", kNftPort, 61, NFPROTO_IPV4),
           RuleMsg(NFT_MSG_NEWRULE, "other", "forward", 3, kNftPort, 62, {"counter"}),
           ElementMsg(NFT_MSG_DELSETELEM, "other", Peers(), {Peer("10.0.0.1", 6, 80)}, kNftPort),
           GenMsg(13, 4321, "nft", kNftPort, 60)});
  EXPECT_THAT(Read(), IsEmpty());
  EXPECT_EQ(monitor_->generations_seen(), 1u);
}

TEST_F(ChangeMonitorTest, DescribesEveryKindOfChange) {
  nft::Set hand{"hand", {FieldType::kIpv4Addr}, false, false, ""};
  auto new_set = [&](const nft::Set& s) {
    char buf[4096];
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWSET, NFPROTO_INET, 0, 71);
    auto built = BuildSet("netpol", s, 0);
    nftnl_set_nlmsg_build_payload(nlh, built->get());
    return Stamp(nlh, kNftPort);
  };
  auto chain_msg = [&](uint16_t type, const std::string& name) {
    char buf[4096];
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_INET, 0, 72);
    auto c = BuildChain("netpol", nft::Chain{name, std::nullopt, "", {}});
    nftnl_chain_nlmsg_build_payload(nlh, c->get());
    return Stamp(nlh, kNftPort);
  };
  Deliver({
      TableMsg(NFT_MSG_NEWTABLE, "netpol", kNftPort, 70),
      new_set(hand),
      chain_msg(NFT_MSG_NEWCHAIN, "extra"),
      RuleMsg(NFT_MSG_NEWRULE, "netpol", "extra", 9, kNftPort, 73, {"counter", "log"}),
      ElementMsg(NFT_MSG_NEWSETELEM, "netpol", hand, {Host("1.2.3.4")}, kNftPort),
      // The kernel notifies element by element.
      ElementMsg(NFT_MSG_DELSETELEM, "netpol", Peers(), {Peer("10.244.1.17", 6, 80)}, kNftPort),
      ElementMsg(NFT_MSG_DELSETELEM, "netpol", Peers(), {Peer("10.244.1.18", 17, 53)}, kNftPort),
      chain_msg(NFT_MSG_DELCHAIN, "extra"),
      TableMsg(NFT_MSG_DELTABLE, "netpol", kNftPort, 74),
      GenMsg(14, 4321, "nft", kNftPort, 70),
  });
  std::vector<std::string> d;
  for (const Change& c : Read()) d.push_back(c.description);
  EXPECT_THAT(d, ElementsAre("add table inet netpol", "add set inet netpol hand",
                             "add chain inet netpol extra",
                             "add rule inet netpol extra handle 9: expressions counter, log",
                             "add element to set hand: 1.2.3.4",
                             "delete element from set in-x-a-v4: 10.244.1.17 . tcp . 80",
                             "delete element from set in-x-a-v4: 10.244.1.18 . udp . 53",
                             "delete chain inet netpol extra", "delete table inet netpol"));
}

TEST_F(ChangeMonitorTest, ElementsOfUnknownSetsAreShownAsBytes) {
  nft::Set unknown{"unknown", {FieldType::kIpv4Addr}, false, false, ""};
  Deliver({ElementMsg(NFT_MSG_DELSETELEM, "netpol", unknown, {Host("10.0.0.1")}, kNftPort),
           GenMsg(15, 4321, "nft", kNftPort, 80)});
  std::vector<Change> changes = Read();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].description, "delete element from set unknown: 0x0a000001");
}

TEST_F(ChangeMonitorTest, OverflowIsReportedAndUnmarkedEventsKeepTheirPort) {
  // Our batch's elements arrive, then the overflow, then nft's batch: our batch's marker was
  // among the lost notifications.
  Deliver({ElementMsg(NFT_MSG_NEWSETELEM, "netpol", Peers(), {Peer("10.0.0.1", 6, 80)}, kOurPort),
           RuleMsg(NFT_MSG_NEWRULE, "netpol", "forward", 20, kOurPort, 5)});
  kernel_.notifications.push_back({"", ENOBUFS});
  Deliver({RuleMsg(NFT_MSG_DELRULE, "netpol", "forward", 20, kNftPort, 90),
           GenMsg(17, 4321, "nft", kNftPort, 90)});

  std::vector<Change> changes = Read();
  Change lost;
  lost.lost = true;
  lost.description = "changes lost (notification overflow), full check needed";
  ASSERT_EQ(changes.size(), 4u) << ::testing::PrintToString(changes);
  EXPECT_EQ(changes[0], lost);
  EXPECT_EQ(changes[1],
            Attributed(0, 0, "", kOurPort, "add element to set in-x-a-v4: 10.0.0.1 . tcp . 80"));
  EXPECT_EQ(changes[2].port_id, kOurPort);
  EXPECT_EQ(changes[2].generation, 0u);
  EXPECT_EQ(changes[3],
            Attributed(17, 4321, "nft", kNftPort, "delete rule inet netpol forward handle 20"));
  EXPECT_EQ(kernel_.dumps, 2) << "sets are read again after an overflow";
  EXPECT_TRUE(ChangedByOthers(changes, kOurPort));
}

TEST_F(ChangeMonitorTest, EarlierBatchFromTheSamePortIsNotAttributedToTheNext) {
  // A rule event of an earlier batch (its marker lost) and the next batch from the same port:
  // sequence numbers tell them apart.
  Deliver({RuleMsg(NFT_MSG_NEWRULE, "netpol", "forward", 30, kOurPort, 5, {"counter"}),
           RuleMsg(NFT_MSG_DELRULE, "netpol", "forward", 30, kOurPort, 9),
           GenMsg(18, 1, "netpol-agent", kOurPort, 9)});
  std::vector<Change> changes = Read();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].generation, 0u);
  EXPECT_EQ(changes[1].generation, 18u);
  EXPECT_FALSE(ChangedByOthers(changes, kOurPort));
}

TEST_F(ChangeMonitorTest, SocketErrorKeepsFinishedBatches) {
  Deliver({RuleMsg(NFT_MSG_DELRULE, "netpol", "forward", 7, kNftPort, 50),
           GenMsg(12, 4321, "nft", kNftPort, 50)});
  kernel_.notifications.push_back({"", EBADF});
  auto failed = monitor_->ReadChanges(0);
  EXPECT_TRUE(absl::IsUnavailable(failed.status())) << failed.status();
  EXPECT_THAT(Read(), ElementsAre(Attributed(12, 4321, "nft", kNftPort,
                                             "delete rule inet netpol forward handle 7")));
}

TEST_F(ChangeMonitorTest, TimesOutWhenNothingArrives) {
  auto changes = monitor_->ReadChanges(5);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(*changes, IsEmpty());
}

TEST(ChangeMonitorCreateTest, FailuresAreReported) {
  ScriptedKernel kernel;
  kernel.socket_errno = EMFILE;
  ChangeMonitorOptions options;
  options.syscalls = &kernel;
  auto m = ChangeMonitor::Create("netpol", options);
  EXPECT_TRUE(absl::IsUnavailable(m.status())) << m.status();
  EXPECT_TRUE(absl::IsInvalidArgument(ChangeMonitor::Create("", options).status()));
  options.receive_buffer_bytes = 0;
  kernel.socket_errno = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(ChangeMonitor::Create("netpol", options).status()));
}

TEST(ChangedByOthersTest, Cases) {
  Change ours = Attributed(1, 10, "agent", kOurPort, "add rule");
  Change theirs = Attributed(2, 20, "nft", kNftPort, "delete rule");
  Change unmarked_ours = Attributed(0, 0, "", kOurPort, "add element");
  Change kernel = Attributed(3, 0, "", 0, "delete element");
  Change lost;
  lost.lost = true;
  struct Case {
    const char* name;
    std::vector<Change> changes;
    bool want;
  };
  std::vector<Case> cases = {
      {"nothing", {}, false},
      {"only ours", {ours, unmarked_ours}, false},
      {"someone else", {ours, theirs}, true},
      {"port 0 (the kernel itself)", {kernel}, true},
      {"lost notifications", {ours, lost}, true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ChangedByOthers(c.changes, kOurPort), c.want) << c.name;
  }
}

}  // namespace
}  // namespace netpol::netlink
