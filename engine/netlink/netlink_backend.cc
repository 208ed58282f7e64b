#include "engine/netlink/netlink_backend.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/netlink/codec.h"
#include "engine/netlink/decode.h"
#include "engine/netlink/encode.h"
#include "engine/netlink/netlink_socket.h"
#include "engine/netlink/request.h"
#include "engine/util/status_macros.h"

namespace netpol::netlink {
namespace {

// Receive-buffer budget per expected ACK. The kernel queues all of a batch's ACKs at once when
// it finishes the batch and drops (ENOBUFS) whatever exceeds the buffer, which is charged the
// skb's true size (about 1 KiB for an ACK), not the 36 bytes of payload.
constexpr size_t kAckBudgetBytes = 2048;
constexpr size_t kBaseReceiveBytes = 1 << 20;
// Sequence numbers restart before they could wrap.
constexpr uint32_t kMaxSeq = 1u << 30;

}  // namespace

NetlinkBackend::NetlinkBackend(NetlinkBackendOptions options, std::unique_ptr<NetlinkSocket> socket)
    : options_(options), socket_(std::move(socket)) {}

NetlinkBackend::~NetlinkBackend() = default;

uint32_t NetlinkBackend::port_id() const { return socket_ != nullptr ? socket_->port_id() : 0; }

absl::StatusOr<std::unique_ptr<NetlinkBackend>> NetlinkBackend::Create(
    NetlinkBackendOptions options) {
  if (options.syscalls == nullptr) options.syscalls = RealNetlinkSyscalls();
  if (options.reply_timeout_ms <= 0 || options.max_dump_attempts <= 0) {
    return absl::InvalidArgumentError(
        "netlink backend: reply_timeout_ms and max_dump_attempts must be positive");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<NetlinkSocket> socket, NetlinkSocket::Open(options.syscalls));
  return std::unique_ptr<NetlinkBackend>(new NetlinkBackend(options, std::move(socket)));
}

uint32_t NetlinkBackend::NextSeq(uint32_t count) {
  if (next_seq_ > kMaxSeq) next_seq_ = 1;
  uint32_t seq = next_seq_;
  next_seq_ += count;
  return seq;
}

absl::StatusOr<uint32_t> NetlinkBackend::GenerationOnSocket() {
  std::optional<uint32_t> gen;
  bool interrupted = false;
  RETURN_IF_ERROR(Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETGEN, false, options_.reply_timeout_ms, nullptr,
      [&](const nlmsghdr* m) -> absl::Status {
        GenPtr g(nftnl_gen_alloc());
        if (nftnl_gen_nlmsg_parse(m, g.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse the generation message");
        }
        gen = nftnl_gen_get_u32(g.get(), NFTNL_GEN_ID);
        return absl::OkStatus();
      },
      &interrupted));
  if (!gen) return absl::UnavailableError("netlink: the kernel sent no generation id");
  return *gen;
}

absl::StatusOr<std::optional<nft::Set>> NetlinkBackend::KernelSet(const std::string& table,
                                                                  const std::string& name) {
  std::optional<nft::Set> out;
  bool interrupted = false;
  absl::Status s = Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETSET, false, options_.reply_timeout_ms,
      [&](nlmsghdr* nlh) {
        mnl_attr_put_strz(nlh, NFTA_SET_TABLE, table.c_str());
        mnl_attr_put_strz(nlh, NFTA_SET_NAME, name.c_str());
      },
      [&](const nlmsghdr* m) -> absl::Status {
        SetPtr set(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(m, set.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse a set message");
        }
        // A set we could not have written counts as missing: commands that use it fail
        // validation instead of being encoded against a guessed definition.
        auto decoded = DecodeSet(set.get());
        if (decoded.ok()) out = *std::move(decoded);
        return absl::OkStatus();
      },
      &interrupted);
  if (absl::IsNotFound(s)) return std::nullopt;  // no such set (or table)
  RETURN_IF_ERROR(s);
  return out;
}

absl::Status NetlinkBackend::CommitOnSocket(const nft::Transaction& tx) {
  last_commit_ = CommitStats{};
  if (tx.empty()) return absl::OkStatus();
  KernelSetFn load = [&](const std::string& name) { return KernelSet(tx.table(), name); };
  // Loading kernel sets sends requests of its own, so the batch is numbered once it is built.
  ASSIGN_OR_RETURN(EncodedBatch batch, EncodeTransaction(tx, 1, load));
  RenumberBatch(&batch, NextSeq(batch.end_seq - batch.begin_seq + 1));

  last_commit_.messages = batch.origins.size();
  last_commit_.bytes = batch.bytes.size();
  for (const auto& [seq, origin] : batch.origins) {
    if (origin.set) ++last_commit_.element_messages;
  }
  if (batch.origins.empty()) return absl::OkStatus();  // e.g. only empty element lists

  RETURN_IF_ERROR(socket_->EnsureSendBuffer(batch.bytes.size() + kRequestBytes));
  RETURN_IF_ERROR(
      socket_->EnsureReceiveBuffer(kBaseReceiveBytes + batch.origins.size() * kAckBudgetBytes));
  ++last_commit_.sendmsg_calls;
  RETURN_IF_ERROR(socket_->Send(batch.bytes.data(), batch.bytes.size()));

  // Drain one ACK or error per command message.
  std::set<uint32_t> pending;
  for (const auto& [seq, origin] : batch.origins) pending.insert(seq);
  std::vector<KernelError> errors;
  std::vector<char> rx;
  while (!pending.empty()) {
    absl::Status s = socket_->Receive(&rx, options_.reply_timeout_ms);
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat(
          s.message(), "; ", pending.size(), " of ", batch.origins.size(),
          " messages unacknowledged, so whether the transaction was applied is unknown"));
    }
    int len = static_cast<int>(rx.size());
    bool batch_failed = false;
    for (const nlmsghdr* m = reinterpret_cast<const nlmsghdr*>(rx.data()); mnl_nlmsg_ok(m, len);
         m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_type != NLMSG_ERROR) continue;
      std::optional<KernelError> e = ParseError(m);
      if (!e) continue;
      if (pending.erase(e->seq) == 1) {
        if (e->error != 0) errors.push_back(*e);
      } else if ((e->seq == batch.begin_seq || e->seq == batch.end_seq) && e->error != 0) {
        // The batch itself was refused; no command was processed.
        errors.push_back(*e);
        batch_failed = true;
      }
    }
    if (batch_failed) break;
  }
  if (errors.empty()) return absl::OkStatus();

  std::sort(errors.begin(), errors.end(),
            [](const KernelError& a, const KernelError& b) { return a.seq < b.seq; });
  const KernelError& first_error = errors.front();
  std::string what;
  auto it = batch.origins.find(first_error.seq);
  if (it == batch.origins.end()) {
    what = absl::StrCat("transaction on table inet ", tx.table());
  } else {
    const MessageOrigin& o = it->second;
    const nft::Command& cmd = tx.commands()[o.command];
    what = o.what;
    if (cmd.kind == nft::ObjectKind::kRule) {
      absl::StrAppend(&what, ": ", nft::RenderRule(cmd.rule));
    } else if (o.set && !o.element_index.empty()) {
      std::optional<size_t> idx;
      if (first_error.offset) {
        for (size_t k = 0; k < o.element_offset.size(); ++k) {
          if (o.element_offset[k] == *first_error.offset) idx = o.element_index[k];
        }
      }
      if (!idx && o.element_index.size() == 1) idx = o.element_index.front();
      if (idx) {
        absl::StrAppend(&what, ": ", nft::RenderElement(*o.set, cmd.elements[*idx]));
      } else {
        absl::StrAppend(&what, " (one of elements ", o.element_index.front(), "..",
                        o.element_index.back(), ")");
      }
    }
  }
  std::string msg = absl::StrCat(what, ": ", strerror(first_error.error));
  if (!first_error.message.empty()) absl::StrAppend(&msg, " (", first_error.message, ")");
  if (errors.size() > 1) absl::StrAppend(&msg, " (and ", errors.size() - 1, " more errors)");
  return absl::Status(CodeForErrno(first_error.error), msg);
}

namespace {

// Returns whether two of `elements` share a key (the kernel never holds two such elements).
bool HasRepeatedKey(const std::vector<nft::Element>& elements) {
  std::vector<const std::vector<nft::FieldValue>*> keys;
  keys.reserve(elements.size());
  for (const nft::Element& e : elements) keys.push_back(&e.key);
  std::sort(keys.begin(), keys.end(), [](const auto* a, const auto* b) { return *a < *b; });
  return std::adjacent_find(keys.begin(), keys.end(), [](const auto* a, const auto* b) {
           return *a == *b;
         }) != keys.end();
}

}  // namespace

absl::StatusOr<nft::Program> NetlinkBackend::DumpOnce(const std::string& table, bool* interrupted) {
  nft::Program p;
  p.table = table;
  const int timeout = options_.reply_timeout_ms;

  // The table itself.
  bool found = false;
  absl::Status s = Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETTABLE, false, timeout,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, table.c_str()); },
      [&](const nlmsghdr* m) -> absl::Status {
        TablePtr t(nftnl_table_alloc());
        if (nftnl_table_nlmsg_parse(m, t.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse a table message");
        }
        found = true;
        return CheckTable(t.get(), &p.comment);
      },
      interrupted);
  if (absl::IsNotFound(s)) {
    return absl::NotFoundError(absl::StrCat("table inet ", table, " does not exist"));
  }
  RETURN_IF_ERROR(s);
  if (!found) return absl::UnavailableError("netlink: the kernel sent no table");

  // Chains, in the kernel's order (rules are attached below).
  RETURN_IF_ERROR(Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETCHAIN, true, timeout,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_CHAIN_TABLE, table.c_str()); },
      [&](const nlmsghdr* m) -> absl::Status {
        ChainPtr c(nftnl_chain_alloc());
        if (nftnl_chain_nlmsg_parse(m, c.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse a chain message");
        }
        if (table != Str(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE))) return absl::OkStatus();
        ASSIGN_OR_RETURN(nft::Chain chain, DecodeChain(c.get()));
        std::string name = chain.name;
        p.chains.emplace(name, std::move(chain));
        return absl::OkStatus();
      },
      interrupted));

  // Sets and their elements.
  std::vector<std::string> set_names;
  RETURN_IF_ERROR(Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETSET, true, timeout,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_SET_TABLE, table.c_str()); },
      [&](const nlmsghdr* m) -> absl::Status {
        SetPtr set(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(m, set.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse a set message");
        }
        if (table != Str(nftnl_set_get_str(set.get(), NFTNL_SET_TABLE))) return absl::OkStatus();
        ASSIGN_OR_RETURN(nft::Set decoded, DecodeSet(set.get()));
        std::string name = decoded.name;
        p.sets.emplace(name, std::move(decoded));
        set_names.push_back(name);
        return absl::OkStatus();
      },
      interrupted));
  for (const std::string& name : set_names) {
    SetPtr holder(nftnl_set_alloc());
    RETURN_IF_ERROR(Request(
        socket_.get(), NextSeq(1), NFT_MSG_GETSETELEM, true, timeout,
        [&](nlmsghdr* nlh) {
          mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, table.c_str());
          mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, name.c_str());
        },
        [&](const nlmsghdr* m) -> absl::Status {
          if (nftnl_set_elems_nlmsg_parse(m, holder.get()) < 0) {
            return absl::UnavailableError(
                absl::StrCat("netlink: cannot parse the elements of set ", name));
          }
          return absl::OkStatus();
        },
        interrupted));
    ASSIGN_OR_RETURN(std::vector<nft::Element> elements,
                     DecodeElements(p.sets[name], holder.get()));
    // A hash set the kernel resizes while a multi-message dump walks it can yield some elements
    // twice and others not at all, with no generation change: a repeated key means the walk was
    // torn, so the dump is retried like an interrupted one.
    if (HasRepeatedKey(elements)) *interrupted = true;
    if (!elements.empty()) p.elements.emplace(name, std::move(elements));
  }

  // Stateful objects and flowtables: netpol creates none, so any is a foreign edit.
  RETURN_IF_ERROR(Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETOBJ, true, timeout,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_OBJ_TABLE, table.c_str()); },
      [&](const nlmsghdr* m) -> absl::Status {
        ObjPtr o(nftnl_obj_alloc());
        if (nftnl_obj_nlmsg_parse(m, o.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse an object message");
        }
        if (table != Str(nftnl_obj_get_str(o.get(), NFTNL_OBJ_TABLE))) return absl::OkStatus();
        return absl::AbortedError(absl::StrCat("stateful object ",
                                               Str(nftnl_obj_get_str(o.get(), NFTNL_OBJ_NAME)),
                                               " (not written by netpol)"));
      },
      interrupted));
  RETURN_IF_ERROR(Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETFLOWTABLE, true, timeout,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_FLOWTABLE_TABLE, table.c_str()); },
      [&](const nlmsghdr* m) -> absl::Status {
        FlowtablePtr f(nftnl_flowtable_alloc());
        if (nftnl_flowtable_nlmsg_parse(m, f.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse a flowtable message");
        }
        if (table != Str(nftnl_flowtable_get_str(f.get(), NFTNL_FLOWTABLE_TABLE))) {
          return absl::OkStatus();
        }
        return absl::AbortedError(
            absl::StrCat("flowtable ", Str(nftnl_flowtable_get_str(f.get(), NFTNL_FLOWTABLE_NAME)),
                         " (not written by netpol)"));
      },
      interrupted));

  // Rules, chain by chain in order.
  RETURN_IF_ERROR(Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETRULE, true, timeout,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, table.c_str()); },
      [&](const nlmsghdr* m) -> absl::Status {
        RulePtr r(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(m, r.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse a rule message");
        }
        if (table != Str(nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE))) return absl::OkStatus();
        std::string chain = Str(nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN));
        auto it = p.chains.find(chain);
        if (it == p.chains.end()) {
          // The chain appeared after the chain dump: the generation check will retry.
          *interrupted = true;
          return absl::OkStatus();
        }
        ASSIGN_OR_RETURN(nft::Rule rule, DecodeRule(r.get(), p.sets));
        it->second.rules.push_back(std::move(rule));
        return absl::OkStatus();
      },
      interrupted));
  return p;
}

absl::StatusOr<nft::Program> NetlinkBackend::DumpOnSocket(const std::string& table) {
  for (int attempt = 0; attempt < options_.max_dump_attempts; ++attempt) {
    ASSIGN_OR_RETURN(uint32_t before, GenerationOnSocket());
    bool interrupted = false;
    absl::StatusOr<nft::Program> p = DumpOnce(table, &interrupted);
    ASSIGN_OR_RETURN(uint32_t after, GenerationOnSocket());
    if (before != after || interrupted) continue;  // read across a commit: start over
    if (!p.ok()) {
      return absl::Status(p.status().code(),
                          absl::StrCat("dump table inet ", table, ": ", p.status().message()));
    }
    return p;
  }
  return absl::AbortedError(absl::StrCat("dump table inet ", table, ": the ruleset changed in ",
                                         options_.max_dump_attempts, " consecutive attempts"));
}

absl::StatusOr<std::vector<nft::RuleCount>> NetlinkBackend::ReadCountersOnSocket(
    const std::string& table) {
  for (int attempt = 0; attempt < options_.max_dump_attempts; ++attempt) {
    ASSIGN_OR_RETURN(uint32_t before, GenerationOnSocket());
    bool interrupted = false, found = false;
    // Per chain, its rules' counts in dump order (the rule's position in the chain).
    std::map<std::string, std::vector<std::optional<nft::RuleCount>>> chains;
    absl::Status s = Request(
        socket_.get(), NextSeq(1), NFT_MSG_GETTABLE, false, options_.reply_timeout_ms,
        [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, table.c_str()); },
        [&](const nlmsghdr*) -> absl::Status {
          found = true;
          return absl::OkStatus();
        },
        &interrupted);
    if (absl::IsNotFound(s)) {
      return absl::NotFoundError(absl::StrCat("table inet ", table, " does not exist"));
    }
    RETURN_IF_ERROR(s);
    if (!found) return absl::UnavailableError("netlink: the kernel sent no table");
    RETURN_IF_ERROR(Request(
        socket_.get(), NextSeq(1), NFT_MSG_GETRULE, true, options_.reply_timeout_ms,
        [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, table.c_str()); },
        [&](const nlmsghdr* m) -> absl::Status {
          RulePtr r(nftnl_rule_alloc());
          if (nftnl_rule_nlmsg_parse(m, r.get()) < 0) {
            return absl::UnavailableError("netlink: cannot parse a rule message");
          }
          if (table != Str(nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE))) {
            return absl::OkStatus();
          }
          chains[Str(nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN))].push_back(
              DecodeRuleCount(r.get()));
          return absl::OkStatus();
        },
        &interrupted));
    ASSIGN_OR_RETURN(uint32_t after, GenerationOnSocket());
    if (before != after || interrupted) continue;  // read across a commit: start over
    std::vector<nft::RuleCount> out;
    for (auto& [chain, rules] : chains) {
      for (size_t i = 0; i < rules.size(); ++i) {
        if (!rules[i]) continue;
        rules[i]->index = i;
        out.push_back(*std::move(rules[i]));
      }
    }
    return out;
  }
  return absl::AbortedError(absl::StrCat("read counters of table inet ", table,
                                         ": the ruleset changed in ", options_.max_dump_attempts,
                                         " consecutive attempts"));
}

absl::StatusOr<std::vector<nft::RuleCount>> NetlinkBackend::ReadCounters(
    const std::string& table) {
  RETURN_IF_ERROR(ValidateName("", "table", table));
  RETURN_IF_ERROR(EnsureSocket());
  absl::StatusOr<std::vector<nft::RuleCount>> r = ReadCountersOnSocket(table);
  if (absl::IsUnavailable(r.status())) socket_.reset();
  return r;
}

absl::Status NetlinkBackend::EnsureSocket() {
  if (socket_ != nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(socket_, NetlinkSocket::Open(options_.syscalls));
  return absl::OkStatus();
}

// After a socket-level failure (Unavailable) the socket may still hold replies to the failed
// request, or be marked congested by the kernel: the next call starts on a fresh one.
absl::Status NetlinkBackend::Commit(const nft::Transaction& tx) {
  RETURN_IF_ERROR(EnsureSocket());
  absl::Status s = CommitOnSocket(tx);
  if (absl::IsUnavailable(s)) socket_.reset();
  return s;
}

absl::StatusOr<nft::Program> NetlinkBackend::Dump(const std::string& table) {
  RETURN_IF_ERROR(ValidateName("", "table", table));
  RETURN_IF_ERROR(EnsureSocket());
  absl::StatusOr<nft::Program> p = DumpOnSocket(table);
  if (absl::IsUnavailable(p.status())) socket_.reset();
  return p;
}

absl::StatusOr<bool> NetlinkBackend::HasTable(const std::string& table) {
  RETURN_IF_ERROR(ValidateName("", "table", table));
  RETURN_IF_ERROR(EnsureSocket());
  bool found = false, interrupted = false;
  absl::Status s = Request(
      socket_.get(), NextSeq(1), NFT_MSG_GETTABLE, false, options_.reply_timeout_ms,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, table.c_str()); },
      [&](const nlmsghdr*) -> absl::Status {
        found = true;
        return absl::OkStatus();
      },
      &interrupted);
  if (absl::IsNotFound(s)) return false;
  if (absl::IsUnavailable(s)) socket_.reset();
  RETURN_IF_ERROR(s);
  return found;
}

absl::StatusOr<uint32_t> NetlinkBackend::Generation() {
  RETURN_IF_ERROR(EnsureSocket());
  absl::StatusOr<uint32_t> g = GenerationOnSocket();
  if (absl::IsUnavailable(g.status())) socket_.reset();
  return g;
}

}  // namespace netpol::netlink
