#include "engine/netlink/encode.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace netpol::netlink {
namespace {

using nft::FieldType;
using nft::Selector;

// Room reserved for one message while it is built. Element messages stop below 64 KiB of
// elements and a rule is capped at nft::kMaxMatches matches of at most a few hundred bytes
// each, so no message comes near this.
constexpr size_t kMaxMessageBytes = 256 * 1024;

absl::Status Invalid(const std::string& path, const std::string& msg) {
  return absl::InvalidArgumentError(path.empty() ? msg : absl::StrCat(path, ": ", msg));
}

// A shared rule's error (engine/nft/program.h) with the field path in front.
absl::Status At(const std::string& path, absl::Status s) {
  if (s.ok()) return s;
  return Invalid(path, std::string(s.message()));
}

absl::Status ValidateComment(const std::string& path, const std::string& comment) {
  return At(path, nft::ValidateComment(comment));
}


UdataPtr CommentUdata(uint8_t type, const std::string& comment) {
  UdataPtr buf(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN));
  nftnl_udata_put_strz(buf.get(), type, comment.c_str());
  return buf;
}

// ---- expressions ----

nftnl_expr* NewExpr(const char* name) {
  nftnl_expr* e = nftnl_expr_alloc(name);
  // Allocation failure of a few bytes cannot be handled meaningfully here; the process is out of
  // memory and std::bad_alloc elsewhere would end it the same way.
  if (e == nullptr) std::abort();
  return e;
}

void AddMeta(nftnl_rule* r, uint32_t key, uint32_t dreg) {
  nftnl_expr* e = NewExpr("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
  nftnl_rule_add_expr(r, e);
}

void AddCmp(nftnl_rule* r, uint32_t sreg, uint32_t op, const void* data, uint32_t len) {
  nftnl_expr* e = NewExpr("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  nftnl_rule_add_expr(r, e);
}

// `byteorder reg = hton(reg, size, len)`: `len` bytes of `size`-byte host-order words in `reg`
// to network order, in place.
void AddHton(nftnl_rule* r, uint32_t reg, uint32_t len, uint32_t size) {
  nftnl_expr* e = NewExpr("byteorder");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SREG, reg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_DREG, reg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_OP, NFT_BYTEORDER_HTON);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_LEN, len);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SIZE, size);
  nftnl_rule_add_expr(r, e);
}

void AddPayload(nftnl_rule* r, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg) {
  nftnl_expr* e = NewExpr("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_rule_add_expr(r, e);
}

void AddLoad(nftnl_rule* r, Selector s, uint32_t dreg) {
  SelectorLoad l = LoadOf(s);
  if (l.meta) {
    AddMeta(r, l.meta_key, dreg);
  } else if (l.ct) {
    nftnl_expr* e = NewExpr("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, l.ct_key);
    nftnl_expr_set_u8(e, NFTNL_EXPR_CT_DIR, 0);  // IP_CT_DIR_ORIGINAL
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, dreg);
    nftnl_rule_add_expr(r, e);
  } else {
    AddPayload(r, l.base, l.offset, l.len, dreg);
  }
}

void AddNfprotoCheck(nftnl_rule* r, uint8_t nfproto) {
  AddMeta(r, NFT_META_NFPROTO, NFT_REG_1);
  AddCmp(r, NFT_REG_1, NFT_CMP_EQ, &nfproto, 1);
}

void AddCounter(nftnl_rule* r, uint64_t packets, uint64_t bytes) {
  nftnl_expr* e = NewExpr("counter");
  nftnl_expr_set_u64(e, NFTNL_EXPR_CTR_PACKETS, packets);
  nftnl_expr_set_u64(e, NFTNL_EXPR_CTR_BYTES, bytes);
  nftnl_rule_add_expr(r, e);
}

void AddLimit(nftnl_rule* r, const nft::LimitStmt& l) {
  nftnl_expr* e = NewExpr("limit");
  nftnl_expr_set_u64(e, NFTNL_EXPR_LIMIT_RATE, l.rate);
  nftnl_expr_set_u64(e, NFTNL_EXPR_LIMIT_UNIT, 1);  // per second
  nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_BURST, l.burst);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_TYPE, NFT_LIMIT_PKTS);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_FLAGS, 0);
  nftnl_rule_add_expr(r, e);
}

void AddLog(nftnl_rule* r, const nft::LogStmt& l) {
  nftnl_expr* e = NewExpr("log");
  if (!l.prefix.empty()) nftnl_expr_set_str(e, NFTNL_EXPR_LOG_PREFIX, l.prefix.c_str());
  nftnl_expr_set_u16(e, NFTNL_EXPR_LOG_GROUP, l.group);
  if (l.snaplen != 0) nftnl_expr_set_u32(e, NFTNL_EXPR_LOG_SNAPLEN, l.snaplen);
  nftnl_rule_add_expr(r, e);
}

void AddVerdict(nftnl_rule* r, const nft::Verdict& v) {
  nftnl_expr* e = NewExpr("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(VerdictCode(v)));
  if (!v.chain.empty()) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, v.chain.c_str());
  nftnl_rule_add_expr(r, e);
}

uint32_t CtMask(const nft::CtStateMatch& m) {
  uint32_t mask = 0;
  if (m.invalid) mask |= kCtInvalid;
  if (m.established) mask |= kCtEstablished;
  if (m.related) mask |= kCtRelated;
  if (m.new_) mask |= kCtNew;
  if (m.untracked) mask |= kCtUntracked;
  return mask;
}

// The nfproto a lookup key needs (0: none); error when it mixes IPv4 and IPv6 selectors.
absl::StatusOr<uint8_t> KeyFamily(const std::string& path, const std::vector<Selector>& key) {
  uint8_t family = 0;
  for (Selector s : key) {
    uint8_t f = LoadOf(s).nfproto;
    if (f == 0) continue;
    if (family != 0 && f != family) return Invalid(path, "key mixes ip and ip6 selectors");
    family = f;
  }
  return family;
}

class RuleEncoder {
 public:
  RuleEncoder(nftnl_rule* r, const SetLookupFn& sets) : r_(r), sets_(sets) {}

  absl::Status Encode(const nft::Rule& rule) {
    // The rules the fake backend holds rules to (engine/nft/program.h); what remains below is
    // what only the encoding needs (the sets the lookups name, the register file).
    RETURN_IF_ERROR(nft::ValidateRuleShape(rule));
    for (size_t i = 0; i < rule.matches.size(); ++i) {
      std::string path = absl::StrCat("matches[", i, "]");
      const nft::Match& m = rule.matches[i];
      RETURN_IF_ERROR(std::visit([&](const auto& v) { return EncodeMatch(path, v); }, m));
    }
    if (rule.limit) AddLimit(r_, *rule.limit);
    if (rule.counter) AddCounter(r_, rule.counter_packets, rule.counter_bytes);
    if (rule.log) AddLog(r_, *rule.log);
    if (rule.verdict) AddVerdict(r_, *rule.verdict);
    return absl::OkStatus();
  }

 private:
  absl::Status EncodeMatch(const std::string&, const nft::CtStateMatch& m) {
    uint32_t mask = CtMask(m);
    nftnl_expr* e = NewExpr("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    nftnl_rule_add_expr(r_, e);
    uint32_t zero = 0;
    e = NewExpr("bitwise");
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof(mask));
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof(zero));
    nftnl_rule_add_expr(r_, e);
    AddCmp(r_, NFT_REG_1, NFT_CMP_NEQ, &zero, sizeof(zero));
    return absl::OkStatus();
  }

  absl::Status EncodeMatch(const std::string&, const nft::NfProtoMatch& m) {
    uint8_t f = m.family == Family::kV4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
    AddNfprotoCheck(r_, f);
    family_ = f;
    return absl::OkStatus();
  }

  absl::Status EncodeMatch(const std::string&, const nft::Icmpv6TypeMatch& m) {
    uint8_t proto = kProtoIcmpv6;
    AddMeta(r_, NFT_META_L4PROTO, NFT_REG_1);
    AddCmp(r_, NFT_REG_1, NFT_CMP_EQ, &proto, 1);
    AddPayload(r_, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, NFT_REG_1);
    if (m.lo == m.hi) {
      AddCmp(r_, NFT_REG_1, NFT_CMP_EQ, &m.lo, 1);
    } else {
      AddCmp(r_, NFT_REG_1, NFT_CMP_GTE, &m.lo, 1);
      AddCmp(r_, NFT_REG_1, NFT_CMP_LTE, &m.hi, 1);
    }
    return absl::OkStatus();
  }

  absl::Status EncodeMatch(const std::string& path, const nft::LookupMatch& m) {
    const SetBinding* b = sets_(m.set);
    if (b == nullptr) return Invalid(path + ".set", absl::StrCat("set ", m.set, " does not exist"));
    const nft::Set& set = b->set;
    RETURN_IF_ERROR(At(path, nft::ValidateLookup(m, set)));
    ASSIGN_OR_RETURN(uint8_t family, KeyFamily(path + ".key", m.key));
    if (family != 0 && family_ != family) {
      AddNfprotoCheck(r_, family);
      family_ = family;
    }
    uint32_t slot = 0;
    for (Selector s : m.key) {
      uint32_t reg = RegisterForSlot(slot);
      AddLoad(r_, s, reg);
      // nft converts host-order fields of a concatenated interval key to network order, which
      // for the 1-byte l4proto is the no-op `byteorder reg = hton(reg, 2, 1)`; we emit it too
      // so that the bytecode is nft's own.
      if (s == Selector::kL4Proto && set.interval && m.key.size() > 1) {
        AddHton(r_, reg, /*len=*/1, /*size=*/2);
      }
      slot += (FieldSlotBytes(nft::SelectorType(s), m.key.size()) + 3) / 4;
    }
    if (slot > kRegisterSlots) return Invalid(path + ".key", "key exceeds the register file");
    nftnl_expr* e = NewExpr("lookup");
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, m.set.c_str());
    if (b->id) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, *b->id);
    if (m.vmap) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
    if (m.negate) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
    nftnl_rule_add_expr(r_, e);
    return absl::OkStatus();
  }

  absl::Status EncodeMatch(const std::string& path, const nft::IfnameMatch& m) {
    std::string name = m.name;
    bool prefix = !name.empty() && name.back() == '*';
    if (prefix) name.pop_back();
    // ValidateRuleShape refused longer names; this guards the copy below.
    if (name.size() >= kIfnameSize) return At(path, nft::ValidateRuleShape(nft::Rule{{m}}));
    AddMeta(r_, m.input ? NFT_META_IIFNAME : NFT_META_OIFNAME, NFT_REG_1);
    if (prefix) {
      AddCmp(r_, NFT_REG_1, NFT_CMP_EQ, name.data(), name.size());
    } else {
      char buf[kIfnameSize] = {};
      memcpy(buf, name.data(), name.size());
      AddCmp(r_, NFT_REG_1, NFT_CMP_EQ, buf, sizeof(buf));
    }
    return absl::OkStatus();
  }

  absl::Status EncodeMatch(const std::string&, const nft::FibLocalMatch& m) {
    nftnl_expr* e = NewExpr("fib");
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, m.saddr ? NFTA_FIB_F_SADDR : NFTA_FIB_F_DADDR);
    nftnl_rule_add_expr(r_, e);
    uint32_t local = kRtnLocal;
    AddCmp(r_, NFT_REG_1, NFT_CMP_EQ, &local, sizeof(local));
    return absl::OkStatus();
  }

  // `meta skuid >= 0` as nft writes it: the uid in network order compared with zero.
  absl::Status EncodeMatch(const std::string&, const nft::LocalSocketMatch&) {
    AddMeta(r_, NFT_META_SKUID, NFT_REG_1);
    AddHton(r_, NFT_REG_1, /*len=*/4, /*size=*/4);
    uint32_t zero = 0;
    AddCmp(r_, NFT_REG_1, NFT_CMP_GTE, &zero, sizeof(zero));
    return absl::OkStatus();
  }

  nftnl_rule* r_;
  const SetLookupFn& sets_;
  uint8_t family_ = 0;  // the nfproto established so far in this rule (0: none)
};

void PutField(FieldType t, const nft::FieldValue& v, bool end, uint32_t slot, std::string* out) {
  size_t start = out->size();
  switch (t) {
    case FieldType::kIpv4Addr:
    case FieldType::kIpv6Addr: {
      const IpAddr& a = end ? v.addr_hi : v.addr_lo;
      out->append(reinterpret_cast<const char*>(a.bytes.data()), FieldBytes(t));
      break;
    }
    case FieldType::kInetProto:
      out->push_back(static_cast<char>(end ? v.hi : v.lo));
      break;
    case FieldType::kInetService: {
      uint16_t port = htons(static_cast<uint16_t>(end ? v.hi : v.lo));
      out->append(reinterpret_cast<const char*>(&port), 2);
      break;
    }
  }
  out->resize(start + slot, '\0');
}

}  // namespace

absl::Status ValidateName(const std::string& path, const char* what, const std::string& name) {
  return At(path, nft::ValidateObjectName(what, name));
}

absl::Status ValidateSet(const nft::Set& set) { return nft::ValidateSetDef(set); }

absl::Status ValidateElement(const nft::Set& set, const nft::Element& e, bool keys_only) {
  return nft::ValidateElementShape(set, e, keys_only);
}

std::string EncodeKey(const nft::Set& set, const nft::Element& e, bool end) {
  std::string out;
  for (size_t i = 0; i < set.key.size(); ++i) {
    PutField(set.key[i], e.key[i], end, FieldSlotBytes(set.key[i], set.key.size()), &out);
  }
  return out;
}

TablePtr BuildTable(const std::string& table, const std::string& comment) {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, 0);
  if (!comment.empty()) {
    UdataPtr ud = CommentUdata(NFTNL_UDATA_TABLE_COMMENT, comment);
    nftnl_table_set_data(t.get(), NFTNL_TABLE_USERDATA, nftnl_udata_buf_data(ud.get()),
                         nftnl_udata_buf_len(ud.get()));
  }
  return t;
}

absl::StatusOr<ChainPtr> BuildChain(const std::string& table, const nft::Chain& chain) {
  RETURN_IF_ERROR(ValidateName("", "chain", chain.name));
  RETURN_IF_ERROR(ValidateComment("comment", chain.comment));
  ChainPtr c(nftnl_chain_alloc());
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, NFPROTO_INET);
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, chain.name.c_str());
  if (chain.base) {
    uint32_t hook = 0;
    switch (chain.base->hook) {
      case nft::Hook::kPrerouting:
        hook = NF_INET_PRE_ROUTING;
        break;
      case nft::Hook::kInput:
        hook = NF_INET_LOCAL_IN;
        break;
      case nft::Hook::kForward:
        hook = NF_INET_FORWARD;
        break;
      case nft::Hook::kOutput:
        hook = NF_INET_LOCAL_OUT;
        break;
      case nft::Hook::kPostrouting:
        hook = NF_INET_POST_ROUTING;
        break;
    }
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, "filter");
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM, hook);
    nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, chain.base->priority);
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, chain.base->policy_drop ? NF_DROP : NF_ACCEPT);
  }
  if (!chain.comment.empty()) {
    UdataPtr ud = CommentUdata(NFTNL_UDATA_CHAIN_COMMENT, chain.comment);
    nftnl_chain_set_data(c.get(), NFTNL_CHAIN_USERDATA, nftnl_udata_buf_data(ud.get()),
                         nftnl_udata_buf_len(ud.get()));
  }
  return c;
}

absl::StatusOr<SetPtr> BuildSet(const std::string& table, const nft::Set& set, uint32_t set_id) {
  RETURN_IF_ERROR(ValidateSet(set));
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.name.c_str());
  bool concat = set.key.size() > 1;
  uint32_t flags = 0;
  if (set.vmap) flags |= NFT_SET_MAP;
  if (set.interval) flags |= NFT_SET_INTERVAL;
  if (set.interval && concat) flags |= NFT_SET_CONCAT;
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, flags);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, KeyTypeId(set.key));
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, KeyLength(set.key));
  if (set.vmap) {
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, 0);
  }
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, set_id);
  if (set.interval && concat) {
    // The pipapo backend needs each field's length (NFTA_SET_DESC_CONCAT); libnftnl takes them
    // as a zero-terminated byte array.
    uint8_t lens[NFT_REG32_COUNT + 1] = {};
    for (size_t i = 0; i < set.key.size(); ++i)
      lens[i] = static_cast<uint8_t>(FieldBytes(set.key[i]));
    nftnl_set_set_data(s.get(), NFTNL_SET_DESC_CONCAT, lens, set.key.size());
  }
  // User data in nft 1.0.6's order, so that nft prints the key types and the comment.
  UdataPtr ud(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN));
  uint32_t key_order = kByteorderBigEndian;
  if (concat || set.key[0] == FieldType::kInetProto) key_order = kByteorderInvalid;
  nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_KEYBYTEORDER, key_order);
  if (set.vmap) nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_DATABYTEORDER, kByteorderInvalid);
  if (concat) {
    nftnl_udata* nest = nftnl_udata_nest_start(ud.get(), NFTNL_UDATA_SET_KEY_TYPEOF);
    nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_TYPEOF_EXPR, kExprConcat);
    nftnl_udata_put(ud.get(), NFTNL_UDATA_SET_TYPEOF_DATA, 0, nullptr);
    nftnl_udata_nest_end(ud.get(), nest);
  }
  if (set.vmap) nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_DATA_INTERVAL, 0);
  if (!set.comment.empty()) {
    nftnl_udata_put_strz(ud.get(), NFTNL_UDATA_SET_COMMENT, set.comment.c_str());
  }
  nftnl_set_set_data(s.get(), NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud.get()),
                     nftnl_udata_buf_len(ud.get()));
  return s;
}

absl::StatusOr<RulePtr> BuildRule(const std::string& table, const std::string& chain,
                                  const nft::Rule& rule, const SetLookupFn& sets) {
  RETURN_IF_ERROR(ValidateName("", "chain", chain));
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
  RuleEncoder enc(r.get(), sets);
  RETURN_IF_ERROR(enc.Encode(rule));
  if (!rule.comment.empty()) {
    UdataPtr ud = CommentUdata(NFTNL_UDATA_RULE_COMMENT, rule.comment);
    nftnl_rule_set_data(r.get(), NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud.get()),
                        nftnl_udata_buf_len(ud.get()));
  }
  return r;
}

SetElemPtr BuildElement(const nft::Set& set, const nft::Element& e, bool keys_only) {
  SetElemPtr el(nftnl_set_elem_alloc());
  std::string key = EncodeKey(set, e, false);
  nftnl_set_elem_set(el.get(), NFTNL_SET_ELEM_KEY, key.data(), key.size());
  if (set.interval) {
    std::string end = EncodeKey(set, e, true);
    nftnl_set_elem_set(el.get(), NFTNL_SET_ELEM_KEY_END, end.data(), end.size());
  }
  if (keys_only) return el;
  if (e.verdict) {
    nftnl_set_elem_set_u32(el.get(), NFTNL_SET_ELEM_VERDICT,
                           static_cast<uint32_t>(VerdictCode(*e.verdict)));
    if (!e.verdict->chain.empty()) {
      nftnl_set_elem_set_str(el.get(), NFTNL_SET_ELEM_CHAIN, e.verdict->chain.c_str());
    }
  }
  if (!e.comment.empty()) {
    UdataPtr ud = CommentUdata(NFTNL_UDATA_SET_ELEM_COMMENT, e.comment);
    nftnl_set_elem_set(el.get(), NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud.get()),
                       nftnl_udata_buf_len(ud.get()));
  }
  return el;
}

namespace {

// Builds the batch buffer message by message.
class BatchWriter {
 public:
  explicit BatchWriter(uint32_t first_seq) : seq_(first_seq) {}

  void Begin() {
    Reserve();
    nftnl_batch_begin(Tail(), seq_++);
    Commit();
  }
  void End() {
    Reserve();
    nftnl_batch_end(Tail(), seq_++);
    Commit();
  }
  // Starts a message; the pointer is valid until Finish().
  nlmsghdr* Start(uint16_t type, uint16_t flags) {
    Reserve();
    return nftnl_nlmsg_build_hdr(Tail(), type, NFPROTO_INET, flags | NLM_F_ACK, seq_);
  }
  void Finish(MessageOrigin origin) {
    origins_.emplace(seq_++, std::move(origin));
    Commit();
  }
  uint32_t seq() const { return seq_; }

  EncodedBatch Release(uint32_t begin_seq) {
    EncodedBatch b;
    bytes_.resize(used_);
    b.bytes = std::move(bytes_);
    b.begin_seq = begin_seq;
    b.end_seq = seq_ - 1;
    b.origins = std::move(origins_);
    return b;
  }

 private:
  char* Tail() { return bytes_.data() + used_; }
  void Reserve() {
    if (bytes_.size() < used_ + kMaxMessageBytes) bytes_.resize(used_ + kMaxMessageBytes);
  }
  void Commit() {
    auto* nlh = reinterpret_cast<nlmsghdr*>(Tail());
    used_ += NLMSG_ALIGN(nlh->nlmsg_len);
  }

  std::vector<char> bytes_;
  size_t used_ = 0;
  uint32_t seq_;
  std::map<uint32_t, MessageOrigin> origins_;
};

// The transaction's view of which sets exist, command by command. Sets the transaction does not
// define are looked up in the kernel one by one, at most once each, so an incremental
// transaction costs lookups in proportion to the sets it touches.
class SetView {
 public:
  explicit SetView(const KernelSetFn& load) : load_(load) {}

  absl::StatusOr<const SetBinding*> Find(const std::string& name) {
    auto it = overlay_.find(name);
    if (it != overlay_.end()) return it->second ? &*it->second : nullptr;
    if (table_reset_) return nullptr;
    auto k = kernel_.find(name);
    if (k == kernel_.end()) {
      ASSIGN_OR_RETURN(std::optional<nft::Set> set, load_(name));
      std::optional<SetBinding> b;
      if (set) b = SetBinding{*std::move(set), std::nullopt};
      k = kernel_.emplace(name, std::move(b)).first;
    }
    return k->second ? &*k->second : nullptr;
  }
  void Define(const nft::Set& set, uint32_t id) { overlay_[set.name] = SetBinding{set, id}; }
  void Remove(const std::string& name) { overlay_[name] = std::nullopt; }
  void ResetTable() {
    table_reset_ = true;
    overlay_.clear();
  }

 private:
  const KernelSetFn& load_;
  bool table_reset_ = false;
  std::map<std::string, std::optional<SetBinding>> kernel_;   // what the kernel had
  std::map<std::string, std::optional<SetBinding>> overlay_;  // what this transaction did
};

class TransactionEncoder {
 public:
  TransactionEncoder(const nft::Transaction& tx, uint32_t first_seq, const KernelSetFn& load)
      : tx_(tx), w_(first_seq), view_(load) {}

  absl::StatusOr<EncodedBatch> Run() {
    uint32_t begin = w_.seq();
    w_.Begin();
    const auto& cmds = tx_.commands();
    for (size_t i = 0; i < cmds.size(); ++i) {
      absl::Status s = EncodeCommand(i, cmds[i]);
      if (!s.ok()) {
        return absl::Status(
            s.code(), absl::StrCat("command ", i, " (", nft::DescribeCommand(tx_.table(), cmds[i]),
                                   "): ", s.message()));
      }
    }
    w_.End();
    return w_.Release(begin);
  }

 private:
  MessageOrigin Origin(size_t i) {
    MessageOrigin o;
    o.command = i;
    o.what = nft::DescribeCommand(tx_.table(), tx_.commands()[i]);
    return o;
  }

  // A message with table (and optionally chain or set) name only.
  void NamedMessage(size_t i, uint16_t type, uint16_t flags, uint16_t table_attr,
                    uint16_t name_attr = 0, const std::string& name = "") {
    nlmsghdr* nlh = w_.Start(type, flags);
    mnl_attr_put_strz(nlh, table_attr, tx_.table().c_str());
    if (name_attr != 0) mnl_attr_put_strz(nlh, name_attr, name.c_str());
    w_.Finish(Origin(i));
  }

  absl::Status EncodeCommand(size_t i, const nft::Command& c) {
    switch (c.kind) {
      case nft::ObjectKind::kTable:
        return EncodeTable(i, c);
      case nft::ObjectKind::kChain:
        return EncodeChain(i, c);
      case nft::ObjectKind::kRule:
        return EncodeRule(i, c);
      case nft::ObjectKind::kSet:
        return EncodeSet(i, c);
      case nft::ObjectKind::kElement:
        return EncodeElements(i, c);
    }
    return Invalid("kind", "unknown object kind");
  }

  absl::Status EncodeTable(size_t i, const nft::Command& c) {
    switch (c.verb) {
      case nft::Verb::kAdd:
      case nft::Verb::kCreate: {
        uint16_t flags = NLM_F_CREATE | (c.verb == nft::Verb::kCreate ? NLM_F_EXCL : 0);
        nlmsghdr* nlh = w_.Start(NFT_MSG_NEWTABLE, flags);
        RETURN_IF_ERROR(ValidateComment("comment", c.comment));
        nftnl_table_nlmsg_build_payload(nlh, BuildTable(tx_.table(), c.comment).get());
        w_.Finish(Origin(i));
        return absl::OkStatus();
      }
      case nft::Verb::kDelete:
      case nft::Verb::kDestroy:
        NamedMessage(i,
                     c.verb == nft::Verb::kDelete ? uint16_t{NFT_MSG_DELTABLE} : kMsgDestroyTable,
                     0, NFTA_TABLE_NAME);
        view_.ResetTable();
        return absl::OkStatus();
      case nft::Verb::kFlush:
        // As `nft flush table`: every rule of every chain; set elements stay.
        NamedMessage(i, NFT_MSG_DELRULE, 0, NFTA_RULE_TABLE);
        return absl::OkStatus();
    }
    return Invalid("verb", "unknown verb");
  }

  absl::Status EncodeChain(size_t i, const nft::Command& c) {
    RETURN_IF_ERROR(ValidateName("", "chain", c.chain.name));
    switch (c.verb) {
      case nft::Verb::kAdd:
      case nft::Verb::kCreate: {
        auto chain = BuildChain(tx_.table(), c.chain);
        if (!chain.ok()) return Invalid("chain", std::string(chain.status().message()));
        uint16_t flags = NLM_F_CREATE | (c.verb == nft::Verb::kCreate ? NLM_F_EXCL : 0);
        nlmsghdr* nlh = w_.Start(NFT_MSG_NEWCHAIN, flags);
        nftnl_chain_nlmsg_build_payload(nlh, chain->get());
        w_.Finish(Origin(i));
        return absl::OkStatus();
      }
      case nft::Verb::kFlush:
        NamedMessage(i, NFT_MSG_DELRULE, 0, NFTA_RULE_TABLE, NFTA_RULE_CHAIN, c.chain.name);
        return absl::OkStatus();
      case nft::Verb::kDelete:
      case nft::Verb::kDestroy:
        NamedMessage(i,
                     c.verb == nft::Verb::kDelete ? uint16_t{NFT_MSG_DELCHAIN} : kMsgDestroyChain,
                     0, NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, c.chain.name);
        return absl::OkStatus();
    }
    return Invalid("verb", "unknown verb");
  }

  absl::Status EncodeRule(size_t i, const nft::Command& c) {
    if (c.verb != nft::Verb::kAdd) return Invalid("verb", "rules can only be added");
    absl::Status lookup_error;
    SetLookupFn lookup = [&](const std::string& name) -> const SetBinding* {
      auto b = view_.Find(name);
      if (!b.ok()) {
        lookup_error = b.status();
        return nullptr;
      }
      return *b;
    };
    auto rule = BuildRule(tx_.table(), c.chain.name, c.rule, lookup);
    RETURN_IF_ERROR(lookup_error);
    if (!rule.ok()) {
      return absl::Status(rule.status().code(), absl::StrCat("rule.", rule.status().message()));
    }
    nlmsghdr* nlh = w_.Start(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    nftnl_rule_nlmsg_build_payload(nlh, rule->get());
    w_.Finish(Origin(i));
    return absl::OkStatus();
  }

  absl::Status EncodeSet(size_t i, const nft::Command& c) {
    RETURN_IF_ERROR(ValidateName("", "set", c.set.name));
    switch (c.verb) {
      case nft::Verb::kAdd:
      case nft::Verb::kCreate: {
        uint32_t id = next_set_id_++;
        auto set = BuildSet(tx_.table(), c.set, id);
        if (!set.ok()) return Invalid("set", std::string(set.status().message()));
        uint16_t flags = NLM_F_CREATE | (c.verb == nft::Verb::kCreate ? NLM_F_EXCL : 0);
        nlmsghdr* nlh = w_.Start(NFT_MSG_NEWSET, flags);
        nftnl_set_nlmsg_build_payload(nlh, set->get());
        w_.Finish(Origin(i));
        view_.Define(c.set, id);
        return absl::OkStatus();
      }
      case nft::Verb::kFlush: {
        ASSIGN_OR_RETURN(const SetBinding* b, view_.Find(c.set.name));
        nlmsghdr* nlh = w_.Start(NFT_MSG_DELSETELEM, 0);
        mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, tx_.table().c_str());
        mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, c.set.name.c_str());
        if (b != nullptr && b->id) mnl_attr_put_u32(nlh, NFTA_SET_ELEM_LIST_SET_ID, htonl(*b->id));
        w_.Finish(Origin(i));
        return absl::OkStatus();
      }
      case nft::Verb::kDelete:
      case nft::Verb::kDestroy:
        NamedMessage(i, c.verb == nft::Verb::kDelete ? uint16_t{NFT_MSG_DELSET} : kMsgDestroySet, 0,
                     NFTA_SET_TABLE, NFTA_SET_NAME, c.set.name);
        view_.Remove(c.set.name);
        return absl::OkStatus();
    }
    return Invalid("verb", "unknown verb");
  }

  absl::Status EncodeElements(size_t i, const nft::Command& c) {
    RETURN_IF_ERROR(ValidateName("", "set", c.set.name));
    uint16_t type = 0, flags = 0;
    bool keys_only = false;
    switch (c.verb) {
      case nft::Verb::kAdd:
      case nft::Verb::kCreate:
        // As nft's `add element`: an existing key is fine when its data is the same (the kernel
        // reports EEXIST only for a different verdict); `create` refuses any existing key.
        type = NFT_MSG_NEWSETELEM;
        flags = NLM_F_CREATE | (c.verb == nft::Verb::kCreate ? NLM_F_EXCL : 0);
        break;
      case nft::Verb::kDelete:
        type = NFT_MSG_DELSETELEM;
        keys_only = true;
        break;
      case nft::Verb::kDestroy:
        type = kMsgDestroySetElem;
        keys_only = true;
        break;
      case nft::Verb::kFlush:
        return Invalid("verb", "elements cannot be flushed; flush the set");
    }
    ASSIGN_OR_RETURN(const SetBinding* b, view_.Find(c.set.name));
    if (b == nullptr) {
      return Invalid("set.name", absl::StrCat("set ", c.set.name, " does not exist"));
    }
    const nft::Set& set = b->set;
    for (size_t k = 0; k < c.elements.size(); ++k) {
      absl::Status s = ValidateElement(set, c.elements[k], keys_only);
      if (!s.ok()) return Invalid(absl::StrCat("elements[", k, "]"), std::string(s.message()));
    }
    if (c.elements.empty()) return absl::OkStatus();  // nothing to send

    size_t k = 0;
    while (k < c.elements.size()) {
      nlmsghdr* nlh = w_.Start(type, flags);
      mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, tx_.table().c_str());
      mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set.name.c_str());
      if (b->id) mnl_attr_put_u32(nlh, NFTA_SET_ELEM_LIST_SET_ID, htonl(*b->id));
      nlattr* list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
      MessageOrigin o = Origin(i);
      o.set = set;
      for (; k < c.elements.size(); ++k) {
        uint32_t before = nlh->nlmsg_len;
        SetElemPtr el = BuildElement(set, c.elements[k], keys_only);
        nlattr* attr = nftnl_set_elem_nlmsg_build(nlh, el.get(), NFTA_LIST_ELEM);
        if (nlh->nlmsg_len - (reinterpret_cast<char*>(list) - reinterpret_cast<char*>(nlh)) >
            kMaxNestBytes) {
          nlh->nlmsg_len = before;  // does not fit: it opens the next message
          break;
        }
        o.element_index.push_back(k);
        o.element_offset.push_back(
            static_cast<uint32_t>(reinterpret_cast<char*>(attr) - reinterpret_cast<char*>(nlh)));
      }
      mnl_attr_nest_end(nlh, list);
      if (o.element_index.empty()) {
        // Cannot happen: one element is a few hundred bytes at most.
        return Invalid(absl::StrCat("elements[", k, "]"), "element too large for a message");
      }
      w_.Finish(std::move(o));
    }
    return absl::OkStatus();
  }

  const nft::Transaction& tx_;
  BatchWriter w_;
  SetView view_;
  uint32_t next_set_id_ = 1;
};

}  // namespace

absl::StatusOr<EncodedBatch> EncodeTransaction(const nft::Transaction& tx, uint32_t first_seq,
                                               const KernelSetFn& kernel_sets) {
  RETURN_IF_ERROR(ValidateName("", "table", tx.table()));
  TransactionEncoder enc(tx, first_seq, kernel_sets);
  return enc.Run();
}

void RenumberBatch(EncodedBatch* batch, uint32_t first_seq) {
  uint32_t delta = first_seq - batch->begin_seq;  // modular arithmetic: works either way
  int len = static_cast<int>(batch->bytes.size());
  for (auto* m = reinterpret_cast<nlmsghdr*>(batch->bytes.data()); mnl_nlmsg_ok(m, len);
       m = const_cast<nlmsghdr*>(mnl_nlmsg_next(m, &len))) {
    m->nlmsg_seq += delta;
  }
  std::map<uint32_t, MessageOrigin> origins;
  for (auto& [seq, o] : batch->origins) origins.emplace(seq + delta, std::move(o));
  batch->origins = std::move(origins);
  batch->begin_seq += delta;
  batch->end_seq += delta;
}

}  // namespace netpol::netlink
