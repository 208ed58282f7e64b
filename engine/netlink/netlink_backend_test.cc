// NetlinkBackend against a scripted kernel behind the system-call seam: what goes out (one
// sendmsg per transaction, buffer sizes) and how replies and failures come back (ACK draining,
// error mapping by sequence number and attribute offset, socket errors, lost replies, dump
// retries). No root needed; netlink_kernel_test covers the real kernel.
#include "engine/netlink/netlink_backend.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/netlink/codec.h"
#include "engine/netlink/encode.h"
#include "engine/netlink/syscalls.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::netlink {
namespace {

using nft::Element;
using nft::FieldType;
using nft::FieldValue;
using ::testing::HasSubstr;

constexpr int kFd = 7;
constexpr uint32_t kPortId = 4242;

// How the scripted kernel answers one batch message: an errno (0: success) and optionally the
// offset of the offending attribute and an extended-ACK text.
struct Verdict {
  int error = 0;
  std::optional<uint32_t> offset;
  std::string text;
};

// A kernel double. Batches are answered with one NLMSG_ERROR per message (an ACK or the error
// `answer` picks); single requests and dumps get the replies the test configures.
class ScriptedKernel : public NetlinkSyscalls {
 public:
  // ---- knobs ----
  int socket_errno = 0;
  int sendmsg_errno = 0;
  int recv_errno = 0;
  bool answer_batches = true;  // false: the kernel never replies to a batch
  int begin_errno = 0;         // refuse the batch as a whole
  // Decides per batch message; `elements` holds the offsets of its element attributes.
  std::function<Verdict(const nlmsghdr*, const std::vector<uint32_t>& elements)> answer =
      [](const nlmsghdr*, const std::vector<uint32_t>&) { return Verdict{}; };
  // Generation ids returned by successive GETGEN requests (the last one repeats).
  std::vector<uint32_t> generations = {1};
  bool table_exists = true;
  bool interrupt_first_dump = false;

  // ---- records ----
  std::vector<std::string> sent;  // every sendmsg's bytes
  std::map<int, int> sockopts;    // SOL_SOCKET option -> last value
  int closes = 0;
  int sockets = 0;
  std::map<uint16_t, int> requests;  // nf_tables message type -> count of single/dump requests

  SyscallResult Socket(int, int, int) override {
    if (socket_errno) return {-1, socket_errno};
    ++sockets;
    return {kFd, 0};
  }
  SyscallResult Bind(int, const struct sockaddr*, socklen_t) override { return {0, 0}; }
  SyscallResult GetSockName(int, struct sockaddr* addr, socklen_t*) override {
    reinterpret_cast<sockaddr_nl*>(addr)->nl_pid = kPortId;
    return {0, 0};
  }
  SyscallResult SetSockOpt(int, int level, int name, const void* value, socklen_t) override {
    if (level == SOL_SOCKET) sockopts[name] = *static_cast<const int*>(value);
    return {0, 0};
  }
  SyscallResult SendMsg(int, const struct msghdr* msg, int) override {
    std::string bytes;
    for (size_t i = 0; i < msg->msg_iovlen; ++i) {
      bytes.append(static_cast<const char*>(msg->msg_iov[i].iov_base), msg->msg_iov[i].iov_len);
    }
    sent.push_back(bytes);
    if (sendmsg_errno) return {-1, sendmsg_errno};
    Process(bytes);
    return {static_cast<ssize_t>(bytes.size()), 0};
  }
  SyscallResult Recv(int, void* buf, size_t len, int) override {
    if (recv_errno) return {-1, recv_errno};
    if (queue_.empty()) return {-1, EAGAIN};
    std::string d = queue_.front();
    queue_.pop_front();
    memcpy(buf, d.data(), std::min(len, d.size()));
    return {static_cast<ssize_t>(d.size()), 0};
  }
  SyscallResult Poll(struct pollfd*, nfds_t, int) override {
    // Replies are queued synchronously by SendMsg: nothing queued means nothing will come.
    return {queue_.empty() && recv_errno == 0 ? 0 : 1, 0};
  }
  SyscallResult Close(int) override {
    ++closes;
    return {0, 0};
  }

  int sendmsg_calls() const { return static_cast<int>(sent.size()); }
  std::vector<const nlmsghdr*> LastBatch() const {
    std::vector<const nlmsghdr*> out;
    const std::string& b = sent.back();
    int len = static_cast<int>(b.size());
    for (auto* m = reinterpret_cast<const nlmsghdr*>(b.data()); mnl_nlmsg_ok(m, len);
         m = mnl_nlmsg_next(m, &len)) {
      out.push_back(m);
    }
    return out;
  }

 private:
  void Queue(const nlmsghdr* nlh) {
    queue_.emplace_back(reinterpret_cast<const char*>(nlh), nlh->nlmsg_len);
  }

  void QueueError(const nlmsghdr* req, const Verdict& v) {
    char buf[512] = {};
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = NLMSG_ERROR;
    nlh->nlmsg_flags = NLM_F_CAPPED;
    nlh->nlmsg_seq = req->nlmsg_seq;
    nlh->nlmsg_pid = kPortId;
    auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nlmsgerr)));
    err->error = -v.error;
    err->msg = *req;
    if (v.offset || !v.text.empty()) {
      nlh->nlmsg_flags |= NLM_F_ACK_TLVS;
      if (!v.text.empty()) mnl_attr_put_strz(nlh, NLMSGERR_ATTR_MSG, v.text.c_str());
      if (v.offset) mnl_attr_put_u32(nlh, NLMSGERR_ATTR_OFFS, *v.offset);
    }
    Queue(nlh);
  }

  static std::vector<uint32_t> ElementOffsets(const nlmsghdr* nlh) {
    std::vector<uint32_t> out;
    size_t skip = MNL_ALIGN(sizeof(nfgenmsg));
    auto* a = reinterpret_cast<const nlattr*>(static_cast<const char*>(mnl_nlmsg_get_payload(nlh)) +
                                              skip);
    int rem = static_cast<int>(nlh->nlmsg_len - NLMSG_HDRLEN - skip);
    for (; mnl_attr_ok(a, rem); rem -= MNL_ALIGN(a->nla_len), a = mnl_attr_next(a)) {
      if (mnl_attr_get_type(a) != NFTA_SET_ELEM_LIST_ELEMENTS) continue;
      auto* e = static_cast<const nlattr*>(mnl_attr_get_payload(a));
      int erem = static_cast<int>(mnl_attr_get_payload_len(a));
      for (; mnl_attr_ok(e, erem); erem -= MNL_ALIGN(e->nla_len), e = mnl_attr_next(e)) {
        out.push_back(static_cast<uint32_t>(reinterpret_cast<const char*>(e) -
                                            reinterpret_cast<const char*>(nlh)));
      }
    }
    return out;
  }

  void Process(const std::string& bytes) {
    int len = static_cast<int>(bytes.size());
    std::vector<const nlmsghdr*> msgs;
    for (auto* m = reinterpret_cast<const nlmsghdr*>(bytes.data()); mnl_nlmsg_ok(m, len);
         m = mnl_nlmsg_next(m, &len)) {
      msgs.push_back(m);
    }
    if (msgs.empty()) return;
    if (msgs.front()->nlmsg_type == NFNL_MSG_BATCH_BEGIN) {
      if (!answer_batches) return;
      if (begin_errno) {
        QueueError(msgs.front(), {begin_errno, std::nullopt, ""});
        return;
      }
      for (size_t i = 1; i + 1 < msgs.size(); ++i) {
        Verdict v = answer(msgs[i], ElementOffsets(msgs[i]));
        if (v.error != 0 || (msgs[i]->nlmsg_flags & NLM_F_ACK)) QueueError(msgs[i], v);
      }
      return;
    }
    const nlmsghdr* req = msgs.front();
    uint16_t type = req->nlmsg_type & 0xff;
    ++requests[type];
    char buf[4096];
    auto reply_header = [&](uint16_t t, uint16_t flags) {
      return nftnl_nlmsg_build_hdr(buf, t, NFPROTO_INET, flags, req->nlmsg_seq);
    };
    auto done = [&](uint16_t flags) {
      nlmsghdr* d = mnl_nlmsg_put_header(buf);
      d->nlmsg_type = NLMSG_DONE;
      d->nlmsg_flags = NLM_F_MULTI | flags;
      d->nlmsg_seq = req->nlmsg_seq;
      d->nlmsg_pid = kPortId;
      mnl_nlmsg_put_extra_header(d, sizeof(int));
      Queue(d);
    };
    switch (type) {
      case NFT_MSG_GETGEN: {
        uint32_t gen = generations.front();
        if (generations.size() > 1) generations.erase(generations.begin());
        nlmsghdr* nlh = reply_header(NFT_MSG_NEWGEN, 0);
        mnl_attr_put_u32(nlh, NFTA_GEN_ID, htonl(gen));
        nlh->nlmsg_pid = kPortId;
        Queue(nlh);
        QueueError(req, {});
        return;
      }
      case NFT_MSG_GETTABLE: {
        if (!table_exists) {
          QueueError(req, {ENOENT, std::nullopt, ""});
          return;
        }
        nlmsghdr* nlh = reply_header(NFT_MSG_NEWTABLE, 0);
        TablePtr t = BuildTable("netpol", "");
        nftnl_table_nlmsg_build_payload(nlh, t.get());
        nlh->nlmsg_pid = kPortId;
        Queue(nlh);
        QueueError(req, {});
        return;
      }
      case NFT_MSG_GETSET:
        if (!(req->nlmsg_flags & NLM_F_DUMP)) {  // a single set: the table has none
          QueueError(req, {ENOENT, std::nullopt, ""});
          return;
        }
        [[fallthrough]];
      default: {
        // Dumps of an empty table: just NLMSG_DONE (flagged inconsistent once, if asked).
        uint16_t flags = 0;
        if (interrupt_first_dump) {
          flags = NLM_F_DUMP_INTR;
          interrupt_first_dump = false;
        }
        done(flags);
        return;
      }
    }
  }

  std::deque<std::string> queue_;
};

IpAddr Ip(const std::string& s) { return *IpAddr::Parse(s); }

Element Host(const std::string& ip) {
  Element e;
  e.key = {FieldValue::Addr(Ip(ip))};
  return e;
}

// A transaction creating a table with one set of `n` addresses (10.0.x.y) and a rule.
nft::Transaction SetupTx(int n) {
  nft::Transaction tx("netpol");
  tx.AddTable();
  tx.AddSet({"pods", {FieldType::kIpv4Addr}, false, false, ""});
  tx.AddChain({"c", std::nullopt, "", {}});
  nft::Rule r;
  r.matches = {nft::LookupMatch{{nft::Selector::kIpSaddr}, "pods", false, false}};
  r.verdict = nft::Verdict::Accept();
  r.comment = "allow pods";
  tx.AddRule("c", r);
  std::vector<Element> elements;
  for (int i = 0; i < n; ++i) {
    elements.push_back(Host(absl::StrCat("10.0.", i / 256, ".", i % 256)));
  }
  tx.AddElements("pods", elements);
  return tx;
}

class BackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NetlinkBackendOptions o;
    o.syscalls = &kernel_;
    o.reply_timeout_ms = 1;  // the double never delays: an empty queue means no reply
    o.max_dump_attempts = 3;
    auto b = NetlinkBackend::Create(o);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = *std::move(b);
  }
  ScriptedKernel kernel_;
  std::unique_ptr<NetlinkBackend> backend_;
};

TEST_F(BackendTest, CommitSendsOneBatchAndDrainsEveryAck) {
  nft::Transaction tx = SetupTx(20000);
  absl::Status s = backend_->Commit(tx);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(kernel_.sendmsg_calls(), 1);
  std::vector<const nlmsghdr*> msgs = kernel_.LastBatch();
  ASSERT_GE(msgs.size(), 6u);
  EXPECT_EQ(msgs.front()->nlmsg_type, NFNL_MSG_BATCH_BEGIN);
  EXPECT_EQ(msgs.back()->nlmsg_type, NFNL_MSG_BATCH_END);
  for (size_t i = 1; i + 1 < msgs.size(); ++i) {
    EXPECT_TRUE(msgs[i]->nlmsg_flags & NLM_F_ACK) << i;
    EXPECT_EQ(msgs[i]->nlmsg_seq, msgs[i - 1]->nlmsg_seq + 1);
  }
  const CommitStats& st = backend_->last_commit();
  EXPECT_EQ(st.sendmsg_calls, 1u);
  EXPECT_EQ(st.messages, msgs.size() - 2);
  EXPECT_GT(st.element_messages, 1u) << "20000 elements do not fit one 64 KiB nest";
  EXPECT_EQ(st.bytes, kernel_.sent.back().size());
  EXPECT_GE(static_cast<size_t>(kernel_.sockopts[SO_SNDBUFFORCE]), st.bytes);
  EXPECT_GE(static_cast<size_t>(kernel_.sockopts[SO_RCVBUFFORCE]), st.messages * 2048);
}

TEST_F(BackendTest, EmptyOrInvalidTransactionsSendNothing) {
  nft::Transaction empty("netpol");
  EXPECT_TRUE(backend_->Commit(empty).ok());
  nft::Transaction bad("netpol");
  bad.AddElements("pods", {Host("10.0.0.1")});  // the (scripted) kernel has no such set
  absl::Status s = backend_->Commit(bad);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("set pods does not exist"));
  EXPECT_EQ(kernel_.requests[NFT_MSG_GETSET], 1) << "one lookup of the one set used";
  // Only the set lookup went out, no batch.
  for (const std::string& b : kernel_.sent) {
    EXPECT_NE(reinterpret_cast<const nlmsghdr*>(b.data())->nlmsg_type, NFNL_MSG_BATCH_BEGIN);
  }
}

// Fails the element whose key is `ip`, optionally reporting its attribute offset.
std::function<Verdict(const nlmsghdr*, const std::vector<uint32_t>&)> FailElement(
    const std::string& ip, int err, bool with_offset, std::string text = "") {
  IpAddr want = Ip(ip);
  return [=](const nlmsghdr* nlh, const std::vector<uint32_t>& offsets) -> Verdict {
    for (uint32_t off : offsets) {
      auto* e = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(nlh) + off);
      // NFTA_LIST_ELEM > NFTA_SET_ELEM_KEY > NFTA_DATA_VALUE
      auto* key = static_cast<const nlattr*>(mnl_attr_get_payload(e));
      auto* value = static_cast<const nlattr*>(mnl_attr_get_payload(key));
      if (memcmp(mnl_attr_get_payload(value), want.bytes.data(), 4) == 0) {
        return {err, with_offset ? std::optional<uint32_t>(off) : std::nullopt, text};
      }
    }
    return {};
  };
}

TEST_F(BackendTest, ElementErrorNamesTheElementByOffset) {
  kernel_.answer = FailElement("10.0.19.136", EEXIST, true);
  absl::Status s = backend_->Commit(SetupTx(10000));
  EXPECT_TRUE(absl::IsAlreadyExists(s)) << s;
  EXPECT_EQ(s.message(), "add element to set pods: 10.0.19.136: File exists");
  EXPECT_EQ(kernel_.sendmsg_calls(), 1) << "a failed transaction is never resent";
}

TEST_F(BackendTest, ElementErrorWithoutOffsetNamesTheMessagesElements) {
  kernel_.answer = FailElement("10.0.0.3", ENOENT, false, "no such chain");
  absl::Status s = backend_->Commit(SetupTx(10));
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_EQ(s.message(),
            "add element to set pods (one of elements 0..9): No such file or directory "
            "(no such chain)");
}

TEST_F(BackendTest, RuleErrorRendersTheRule) {
  kernel_.answer = [](const nlmsghdr* nlh, const std::vector<uint32_t>&) -> Verdict {
    if ((nlh->nlmsg_type & 0xff) == NFT_MSG_NEWRULE) return {EOPNOTSUPP, std::nullopt, ""};
    return {};
  };
  absl::Status s = backend_->Commit(SetupTx(1));
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_EQ(s.message(),
            "add rule to chain c: ip saddr @pods accept comment \"allow pods\": Operation not "
            "supported");
}

TEST_F(BackendTest, SeveralErrorsReportTheFirstCommand) {
  kernel_.answer = [](const nlmsghdr* nlh, const std::vector<uint32_t>&) -> Verdict {
    uint16_t t = nlh->nlmsg_type & 0xff;
    if (t == NFT_MSG_NEWCHAIN) return {EBUSY, std::nullopt, ""};
    if (t == NFT_MSG_NEWSETELEM) return {ENOSPC, std::nullopt, ""};
    return {};
  };
  absl::Status s = backend_->Commit(SetupTx(1));
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_EQ(s.message(), "add chain c: Device or resource busy (and 1 more errors)");
}

TEST_F(BackendTest, RefusedBatchIsReported) {
  kernel_.begin_errno = EPERM;
  absl::Status s = backend_->Commit(SetupTx(3));
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("transaction on table inet netpol"));
}

TEST_F(BackendTest, SocketFailuresAreUnavailable) {
  struct Case {
    std::string name;
    std::function<void(ScriptedKernel*)> inject;
    std::string message;
  };
  std::vector<Case> cases = {
      {"sendmsg fails", [](ScriptedKernel* k) { k->sendmsg_errno = EMSGSIZE; },
       "netlink socket: sendmsg: Message too long"},
      {"replies lost", [](ScriptedKernel* k) { k->answer_batches = false; },
       "messages unacknowledged, so whether the transaction was applied is unknown"},
      {"receive buffer overrun", [](ScriptedKernel* k) { k->recv_errno = ENOBUFS; },
       "recv: No buffer space available"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ScriptedKernel kernel;
    c.inject(&kernel);
    NetlinkBackendOptions o;
    o.syscalls = &kernel;
    o.reply_timeout_ms = 1;
    auto b = NetlinkBackend::Create(o);
    ASSERT_TRUE(b.ok());
    absl::Status s = (*b)->Commit(SetupTx(5));
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
    EXPECT_EQ(kernel.sendmsg_calls(), 1);
  }
}

TEST_F(BackendTest, SocketFailureReopensTheSocketForTheNextCall) {
  kernel_.recv_errno = ENOBUFS;
  EXPECT_TRUE(absl::IsUnavailable(backend_->Commit(SetupTx(3))));
  EXPECT_EQ(kernel_.closes, 1) << "the failed socket is dropped";
  kernel_.recv_errno = 0;
  absl::Status s = backend_->Commit(SetupTx(3));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(kernel_.sockets, 2);
  // A kernel error that is not a socket failure keeps the socket.
  kernel_.answer = [](const nlmsghdr*, const std::vector<uint32_t>&) {
    return Verdict{EEXIST, std::nullopt, ""};
  };
  EXPECT_TRUE(absl::IsAlreadyExists(backend_->Commit(SetupTx(3))));
  EXPECT_EQ(kernel_.sockets, 2);
}

TEST(BackendCreateTest, SocketRefusedIsUnavailable) {
  ScriptedKernel kernel;
  kernel.socket_errno = EPERM;
  NetlinkBackendOptions o;
  o.syscalls = &kernel;
  auto b = NetlinkBackend::Create(o);
  EXPECT_TRUE(absl::IsUnavailable(b.status())) << b.status();
  EXPECT_THAT(std::string(b.status().message()),
              HasSubstr("socket(NETLINK_NETFILTER): Operation not permitted"));
  o.reply_timeout_ms = 0;
  kernel.socket_errno = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(NetlinkBackend::Create(o).status()));
}

TEST(BackendCreateTest, ClosesTheSocket) {
  ScriptedKernel kernel;
  NetlinkBackendOptions o;
  o.syscalls = &kernel;
  { ASSERT_TRUE(NetlinkBackend::Create(o).ok()); }
  EXPECT_EQ(kernel.closes, 1);
}

TEST_F(BackendTest, DumpOfEmptyTable) {
  auto p = backend_->Dump("netpol");
  ASSERT_TRUE(p.ok()) << p.status();
  nft::Program want;
  want.table = "netpol";
  EXPECT_EQ(*p, want);
  EXPECT_EQ(kernel_.requests[NFT_MSG_GETGEN], 2) << "before and after";
}

TEST_F(BackendTest, DumpRetriesWhenTheGenerationMoves) {
  kernel_.generations = {1, 2, 2, 2};
  auto p = backend_->Dump("netpol");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(kernel_.requests[NFT_MSG_GETTABLE], 2);
}

TEST_F(BackendTest, DumpRetriesWhenTheKernelFlagsAnInconsistentDump) {
  kernel_.interrupt_first_dump = true;
  auto p = backend_->Dump("netpol");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(kernel_.requests[NFT_MSG_GETTABLE], 2);
}

TEST_F(BackendTest, DumpGivesUpWhenTheRulesetKeepsChanging) {
  kernel_.generations = {1, 2, 3, 4, 5, 6, 7, 8};
  auto p = backend_->Dump("netpol");
  EXPECT_TRUE(absl::IsAborted(p.status())) << p.status();
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("changed in 3 consecutive attempts"));
}

TEST_F(BackendTest, DumpOfMissingTableIsNotFound) {
  kernel_.table_exists = false;
  auto p = backend_->Dump("netpol");
  EXPECT_TRUE(absl::IsNotFound(p.status())) << p.status();
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("table inet netpol does not exist"));
  EXPECT_TRUE(absl::IsInvalidArgument(backend_->Dump("bad name").status()));
}

}  // namespace
}  // namespace netpol::netlink
