#include "engine/netlink/change_monitor.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <string.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/netlink/codec.h"
#include "engine/netlink/decode.h"
#include "engine/netlink/netlink_socket.h"
#include "engine/netlink/request.h"
#include "engine/nft/transaction.h"
#include "engine/util/status_macros.h"

namespace netpol::netlink {
namespace {

// Datagrams one ReadChanges reads at most (each holds up to a page of notifications).
constexpr int kMaxDatagramsPerRead = 4096;

constexpr char kLostDescription[] = "changes lost (notification overflow), full check needed";

// The attributes of an NFT_MSG_NEWGEN notification.
struct GenInfo {
  uint32_t id = 0;
  uint32_t pid = 0;
  std::string process;
};

int GenAttrCb(const struct nlattr* attr, void* data) {
  auto* g = static_cast<GenInfo*>(data);
  switch (mnl_attr_get_type(attr)) {
    case NFTA_GEN_ID:
      if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) g->id = ntohl(mnl_attr_get_u32(attr));
      break;
    case NFTA_GEN_PROC_PID:
      if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) g->pid = ntohl(mnl_attr_get_u32(attr));
      break;
    case NFTA_GEN_PROC_NAME:
      if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) g->process = mnl_attr_get_str(attr);
      break;
    default:
      break;
  }
  return MNL_CB_OK;
}

// Key bytes as hex, for elements of sets the decoder cannot read.
std::string Hex(const void* data, uint32_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "0x";
  const auto* p = static_cast<const uint8_t*>(data);
  for (uint32_t i = 0; i < len; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 0xf]);
  }
  return out;
}

// The elements in `s` rendered one by one: as nft writes them when `set` is known and they
// decode, else as raw key bytes.
std::vector<std::string> ElementTexts(const std::optional<nft::Set>& set, nftnl_set* s) {
  std::vector<std::string> out;
  if (set) {
    absl::StatusOr<std::vector<nft::Element>> els = DecodeElements(*set, s);
    if (!els.ok() && set->vmap) {
      // Deletion notifications may carry the key alone: render it without the verdict.
      nft::Set keys_only = *set;
      keys_only.vmap = false;
      els = DecodeElements(keys_only, s);
      if (els.ok()) {
        for (const nft::Element& e : *els) out.push_back(nft::RenderElement(keys_only, e));
        return out;
      }
    }
    if (els.ok()) {
      for (const nft::Element& e : *els) out.push_back(nft::RenderElement(*set, e));
      return out;
    }
  }
  nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(s);
  if (it == nullptr) return out;
  // iter_next returns the current element and then advances.
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e != nullptr;
       e = nftnl_set_elems_iter_next(it)) {
    uint32_t len = 0, end_len = 0;
    const void* key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
    std::string text = key != nullptr ? Hex(key, len) : "(no key)";
    const void* end = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY_END, &end_len);
    if (end != nullptr) absl::StrAppend(&text, "-", Hex(end, end_len));
    out.push_back(std::move(text));
  }
  nftnl_set_elems_iter_destroy(it);
  return out;
}

int CollectExprName(struct nftnl_expr* e, void* data) {
  const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
  static_cast<std::vector<std::string>*>(data)->push_back(name != nullptr ? name : "?");
  return MNL_CB_OK;
}

}  // namespace

ChangeMonitor::ChangeMonitor(std::string table, ChangeMonitorOptions options,
                             std::unique_ptr<NetlinkSocket> events)
    : table_(std::move(table)), options_(options), events_(std::move(events)) {}

ChangeMonitor::~ChangeMonitor() = default;

absl::StatusOr<std::unique_ptr<ChangeMonitor>> ChangeMonitor::Create(const std::string& table,
                                                                     ChangeMonitorOptions options) {
  RETURN_IF_ERROR(nft::ValidateObjectName("table", table));
  if (options.syscalls == nullptr) options.syscalls = RealNetlinkSyscalls();
  if (options.reply_timeout_ms <= 0 || options.receive_buffer_bytes == 0) {
    return absl::InvalidArgumentError(
        "change monitor: reply_timeout_ms and receive_buffer_bytes must be positive");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<NetlinkSocket> events, NetlinkSocket::Open(options.syscalls));
  RETURN_IF_ERROR(events->EnsureReceiveBuffer(options.receive_buffer_bytes));
  RETURN_IF_ERROR(events->JoinGroup(NFNLGRP_NFTABLES));
  std::unique_ptr<ChangeMonitor> m(new ChangeMonitor(table, options, std::move(events)));
  // Subscribed first: a set created while the sets are read is announced too.
  RETURN_IF_ERROR(m->LoadSets());
  return m;
}

int ChangeMonitor::fd() const { return events_->fd(); }

absl::Status ChangeMonitor::LoadSets() {
  sets_.clear();
  // Requests go out on a socket of their own: the notification socket only listens.
  ASSIGN_OR_RETURN(std::unique_ptr<NetlinkSocket> sock, NetlinkSocket::Open(options_.syscalls));
  bool interrupted = false;
  absl::Status s = Request(
      sock.get(), next_seq_++, NFT_MSG_GETSET, /*dump=*/true, options_.reply_timeout_ms,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_SET_TABLE, table_.c_str()); },
      [&](const nlmsghdr* m) -> absl::Status {
        SetPtr set(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(m, set.get()) < 0) {
          return absl::UnavailableError("netlink: cannot parse a set message");
        }
        if (table_ != Str(nftnl_set_get_str(set.get(), NFTNL_SET_TABLE))) return absl::OkStatus();
        std::string name = Str(nftnl_set_get_str(set.get(), NFTNL_SET_NAME));
        absl::StatusOr<nft::Set> decoded = DecodeSet(set.get());
        sets_[name] = decoded.ok() ? std::optional<nft::Set>(*std::move(decoded)) : std::nullopt;
        return absl::OkStatus();
      },
      &interrupted);
  if (absl::IsNotFound(s)) return absl::OkStatus();  // no table yet: no sets
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("change monitor: read the sets of table inet ",
                                               table_, ": ", s.message()));
  }
  return absl::OkStatus();
}

void ChangeMonitor::HandleMessage(const nlmsghdr* nlh, std::vector<Change>* out) {
  if (nlh->nlmsg_type < NLMSG_MIN_TYPE) return;  // NOOP, ERROR, DONE, OVERRUN
  if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES) return;
  const uint16_t type = NFNL_MSG_TYPE(nlh->nlmsg_type);
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg))) return;

  if (type == NFT_MSG_NEWGEN) {
    GenInfo g;
    mnl_attr_parse(nlh, sizeof(nfgenmsg), GenAttrCb, &g);
    ++generations_seen_;
    // The batch's own events carry the marker's port and sequence numbers from the marker's
    // (the batch's first command's) on, or 0 (element notifications carry no sequence number).
    // Others lost their marker to an overflow: they keep the port they were sent from, without
    // generation or process.
    for (Pending& p : pending_) {
      Change c;
      c.port_id = p.port_id;
      if (p.port_id == nlh->nlmsg_pid && (p.seq == 0 || p.seq >= nlh->nlmsg_seq)) {
        c.generation = g.id;
        c.pid = g.pid;
        c.process = g.process;
      }
      c.description = std::move(p.description);
      out->push_back(std::move(c));
    }
    pending_.clear();
    return;
  }

  const auto* gen = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  if (gen->nfgen_family != NFPROTO_INET) return;
  const std::string where = absl::StrCat("inet ", table_);
  auto note = [&](std::string description) {
    pending_.push_back(Pending{std::move(description), nlh->nlmsg_pid, nlh->nlmsg_seq});
  };
  // The destroy verbs (Linux >= 6.3) are announced as deletions; their own message types are
  // accepted too in case a kernel sends them.
  uint16_t kind = type;
  switch (type) {
    case kMsgDestroyTable:
      kind = NFT_MSG_DELTABLE;
      break;
    case kMsgDestroyChain:
      kind = NFT_MSG_DELCHAIN;
      break;
    case kMsgDestroySet:
      kind = NFT_MSG_DELSET;
      break;
    case kMsgDestroySetElem:
      kind = NFT_MSG_DELSETELEM;
      break;
    default:
      break;
  }
  const char* verb = "add";
  switch (kind) {
    case NFT_MSG_DELTABLE:
    case NFT_MSG_DELCHAIN:
    case NFT_MSG_DELRULE:
    case NFT_MSG_DELSET:
    case NFT_MSG_DELSETELEM:
    case NFT_MSG_DELOBJ:
    case NFT_MSG_DELFLOWTABLE:
      verb = "delete";
      break;
    default:
      break;
  }

  switch (kind) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE: {
      TablePtr t(nftnl_table_alloc());
      if (nftnl_table_nlmsg_parse(nlh, t.get()) < 0) return;
      if (table_ != Str(nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME))) return;
      if (kind == NFT_MSG_DELTABLE) sets_.clear();
      note(absl::StrCat(verb, " table ", where));
      return;
    }
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN: {
      ChainPtr c(nftnl_chain_alloc());
      if (nftnl_chain_nlmsg_parse(nlh, c.get()) < 0) return;
      if (table_ != Str(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE))) return;
      note(absl::StrCat(verb, " chain ", where, " ",
                        Str(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME))));
      return;
    }
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE: {
      RulePtr r(nftnl_rule_alloc());
      if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return;
      if (table_ != Str(nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE))) return;
      std::string d = absl::StrCat(verb, " rule ", where, " ",
                                   Str(nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN)));
      if (nftnl_rule_is_set(r.get(), NFTNL_RULE_HANDLE)) {
        absl::StrAppend(&d, " handle ", nftnl_rule_get_u64(r.get(), NFTNL_RULE_HANDLE));
      }
      if (kind == NFT_MSG_NEWRULE) {
        std::map<std::string, nft::Set> known;
        for (const auto& [name, set] : sets_) {
          if (set) known.emplace(name, *set);
        }
        absl::StatusOr<nft::Rule> rule = DecodeRule(r.get(), known);
        std::string text = rule.ok() ? nft::RenderRule(*rule) : "";
        if (!text.empty()) {
          absl::StrAppend(&d, ": ", text);
        } else {
          // Not a rule netpol writes: name its expressions instead.
          std::vector<std::string> names;
          nftnl_expr_foreach(r.get(), CollectExprName, &names);
          absl::StrAppend(&d, ": expressions ",
                          names.empty() ? "(none)" : absl::StrJoin(names, ", "));
        }
      }
      note(std::move(d));
      return;
    }
    case NFT_MSG_NEWSET:
    case NFT_MSG_DELSET: {
      SetPtr s(nftnl_set_alloc());
      if (nftnl_set_nlmsg_parse(nlh, s.get()) < 0) return;
      if (table_ != Str(nftnl_set_get_str(s.get(), NFTNL_SET_TABLE))) return;
      std::string name = Str(nftnl_set_get_str(s.get(), NFTNL_SET_NAME));
      if (kind == NFT_MSG_NEWSET) {
        absl::StatusOr<nft::Set> decoded = DecodeSet(s.get());
        sets_[name] = decoded.ok() ? std::optional<nft::Set>(*std::move(decoded)) : std::nullopt;
      } else {
        sets_.erase(name);
      }
      note(absl::StrCat(verb, " set ", where, " ", name));
      return;
    }
    case NFT_MSG_NEWSETELEM:
    case NFT_MSG_DELSETELEM: {
      SetPtr s(nftnl_set_alloc());
      if (nftnl_set_elems_nlmsg_parse(nlh, s.get()) < 0) return;
      if (table_ != Str(nftnl_set_get_str(s.get(), NFTNL_SET_TABLE))) return;
      std::string name = Str(nftnl_set_get_str(s.get(), NFTNL_SET_NAME));
      auto it = sets_.find(name);
      std::vector<std::string> texts =
          ElementTexts(it == sets_.end() ? std::nullopt : it->second, s.get());
      const char* prep =
          kind == NFT_MSG_NEWSETELEM ? "add element to set " : "delete element from set ";
      for (const std::string& text : texts) note(absl::StrCat(prep, name, ": ", text));
      return;
    }
    case NFT_MSG_NEWOBJ:
    case NFT_MSG_DELOBJ: {
      ObjPtr o(nftnl_obj_alloc());
      if (nftnl_obj_nlmsg_parse(nlh, o.get()) < 0) return;
      if (table_ != Str(nftnl_obj_get_str(o.get(), NFTNL_OBJ_TABLE))) return;
      note(absl::StrCat(verb, " object ", where, " ",
                        Str(nftnl_obj_get_str(o.get(), NFTNL_OBJ_NAME))));
      return;
    }
    case NFT_MSG_NEWFLOWTABLE:
    case NFT_MSG_DELFLOWTABLE: {
      FlowtablePtr f(nftnl_flowtable_alloc());
      if (nftnl_flowtable_nlmsg_parse(nlh, f.get()) < 0) return;
      if (table_ != Str(nftnl_flowtable_get_str(f.get(), NFTNL_FLOWTABLE_TABLE))) return;
      note(absl::StrCat(verb, " flowtable ", where, " ",
                        Str(nftnl_flowtable_get_str(f.get(), NFTNL_FLOWTABLE_NAME))));
      return;
    }
    default:
      return;
  }
}

absl::Status ChangeMonitor::Drain(std::vector<Change>* out) {
  std::vector<char> rx;
  // Bounded, so that a flood of notifications cannot keep one call busy forever: what is left
  // stays queued (and the fd readable) for the next call.
  for (int datagrams = 0; datagrams < kMaxDatagramsPerRead; ++datagrams) {
    SyscallResult r = events_->ReceiveNow(&rx);
    if (!r.ok()) {
      if (r.error == EAGAIN || r.error == EWOULDBLOCK) return absl::OkStatus();
      if (r.error != ENOBUFS && r.error != EMSGSIZE) {
        return absl::UnavailableError(absl::StrCat("change monitor: recv: ", strerror(r.error)));
      }
      // Notifications were dropped. The kernel reports this ahead of what is still queued,
      // so pending events keep waiting for their batch marker (which may be among the lost).
      Change lost;
      lost.lost = true;
      lost.description = kLostDescription;
      out->push_back(std::move(lost));
      // Sets may have come and gone unseen: read them again (without them elements are
      // rendered as raw bytes, so a failure here is not fatal).
      if (!LoadSets().ok()) sets_.clear();
      continue;
    }
    int len = static_cast<int>(rx.size());
    for (const nlmsghdr* m = reinterpret_cast<const nlmsghdr*>(rx.data()); mnl_nlmsg_ok(m, len);
         m = mnl_nlmsg_next(m, &len)) {
      HandleMessage(m, out);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Change>> ChangeMonitor::ReadChanges(int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    // Finished batches are kept in ready_ until returned, so a socket error loses none.
    RETURN_IF_ERROR(Drain(&ready_));
    if (!ready_.empty()) return std::exchange(ready_, {});
    int wait = -1;
    if (timeout_ms >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (timeout_ms == 0 || left.count() <= 0) return std::vector<Change>{};
      wait = static_cast<int>(left.count());
    }
    ASSIGN_OR_RETURN(bool readable, events_->WaitReadable(wait));
    if (!readable) return std::vector<Change>{};
  }
}

bool ChangedByOthers(const std::vector<Change>& changes, uint32_t our_port_id) {
  for (const Change& c : changes) {
    if (c.lost || c.port_id == 0 || c.port_id != our_port_id) return true;
  }
  return false;
}

}  // namespace netpol::netlink
