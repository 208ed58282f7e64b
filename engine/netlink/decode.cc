#include "engine/netlink/decode.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/netlink/encode.h"
#include "engine/util/status_macros.h"

namespace netpol::netlink {
namespace {

using nft::FieldType;
using nft::Selector;

absl::Status Foreign(const std::string& what) {
  return absl::AbortedError(absl::StrCat(what, " (not written by netpol)"));
}

struct UdataComment {
  uint8_t type;
  std::string value;
};

int CommentCb(const struct nftnl_udata* attr, void* data) {
  auto* out = static_cast<UdataComment*>(data);
  if (nftnl_udata_type(attr) != out->type) return 0;
  const char* v = static_cast<const char*>(nftnl_udata_get(attr));
  uint8_t len = nftnl_udata_len(attr);
  out->value.assign(v, strnlen(v, len));
  return 0;
}

}  // namespace

std::string CommentFromUdata(const void* data, uint32_t len, uint8_t type) {
  if (data == nullptr || len == 0) return "";
  UdataComment c{type, ""};
  nftnl_udata_parse(data, len, CommentCb, &c);
  return c.value;
}

absl::Status CheckTable(const nftnl_table* t, std::string* comment) {
  const char* name = nftnl_table_get_str(t, NFTNL_TABLE_NAME);
  if (nftnl_table_is_set(t, NFTNL_TABLE_FLAGS) && nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS) != 0) {
    return Foreign(absl::StrCat("table ", name ? name : "?", " has flags 0x",
                                absl::Hex(nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS))));
  }
  uint32_t len = 0;
  const void* ud = nftnl_table_get_data(t, NFTNL_TABLE_USERDATA, &len);
  *comment = CommentFromUdata(ud, len, NFTNL_UDATA_TABLE_COMMENT);
  return absl::OkStatus();
}

absl::StatusOr<nft::Chain> DecodeChain(const nftnl_chain* c) {
  nft::Chain out;
  out.name = Str(nftnl_chain_get_str(c, NFTNL_CHAIN_NAME));
  std::string what = absl::StrCat("chain ", out.name);
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_DEV) || nftnl_chain_is_set(c, NFTNL_CHAIN_DEVICES)) {
    return Foreign(what + " is bound to devices");
  }
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_FLAGS) &&
      (nftnl_chain_get_u32(c, NFTNL_CHAIN_FLAGS) & ~static_cast<uint32_t>(NFT_CHAIN_BASE)) != 0) {
    return Foreign(
        absl::StrCat(what, " has flags 0x", absl::Hex(nftnl_chain_get_u32(c, NFTNL_CHAIN_FLAGS))));
  }
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM)) {
    const char* type = nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE);
    if (type == nullptr || strcmp(type, "filter") != 0) {
      return Foreign(absl::StrCat(what, " has type ", type ? type : "?"));
    }
    nft::BaseChainSpec base;
    switch (nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM)) {
      case NF_INET_PRE_ROUTING:
        base.hook = nft::Hook::kPrerouting;
        break;
      case NF_INET_LOCAL_IN:
        base.hook = nft::Hook::kInput;
        break;
      case NF_INET_FORWARD:
        base.hook = nft::Hook::kForward;
        break;
      case NF_INET_LOCAL_OUT:
        base.hook = nft::Hook::kOutput;
        break;
      case NF_INET_POST_ROUTING:
        base.hook = nft::Hook::kPostrouting;
        break;
      default:
        return Foreign(
            absl::StrCat(what, " has hook ", nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM)));
    }
    base.priority = nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO);
    uint32_t policy = nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY)
                          ? nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY)
                          : NF_ACCEPT;
    if (policy != NF_ACCEPT && policy != NF_DROP) {
      return Foreign(absl::StrCat(what, " has policy ", policy));
    }
    base.policy_drop = policy == NF_DROP;
    out.base = base;
  }
  uint32_t len = 0;
  const void* ud = nftnl_chain_get_data(c, NFTNL_CHAIN_USERDATA, &len);
  out.comment = CommentFromUdata(ud, len, NFTNL_UDATA_CHAIN_COMMENT);
  return out;
}

absl::StatusOr<nft::Set> DecodeSet(const nftnl_set* s) {
  nft::Set out;
  out.name = Str(nftnl_set_get_str(s, NFTNL_SET_NAME));
  std::string what = absl::StrCat("set ", out.name);
  uint32_t flags = nftnl_set_is_set(s, NFTNL_SET_FLAGS) ? nftnl_set_get_u32(s, NFTNL_SET_FLAGS) : 0;
  constexpr uint32_t kKnown = NFT_SET_MAP | NFT_SET_INTERVAL | NFT_SET_CONCAT;
  if ((flags & ~kKnown) != 0) {
    return Foreign(absl::StrCat(what, " has flags 0x", absl::Hex(flags)));
  }
  if (nftnl_set_is_set(s, NFTNL_SET_TIMEOUT) || nftnl_set_is_set(s, NFTNL_SET_EXPR) ||
      nftnl_set_is_set(s, NFTNL_SET_EXPRESSIONS)) {
    return Foreign(what + " has timeouts or expressions");
  }
  uint32_t key_type = nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE);
  auto fields = FieldsFromTypeId(key_type);
  if (!fields) return Foreign(absl::StrCat(what, " has key type 0x", absl::Hex(key_type)));
  out.key = *fields;
  if (nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN) != KeyLength(out.key)) {
    return Foreign(absl::StrCat(what, " has key length ", nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN)));
  }
  out.interval = (flags & NFT_SET_INTERVAL) != 0;
  if (out.interval && out.key.size() == 1) return Foreign(what + " is a single-field interval set");
  if (flags & NFT_SET_MAP) {
    if (nftnl_set_get_u32(s, NFTNL_SET_DATA_TYPE) != NFT_DATA_VERDICT) {
      return Foreign(what + " is a map with non-verdict data");
    }
    out.vmap = true;
  }
  uint32_t len = 0;
  const void* ud = nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len);
  out.comment = CommentFromUdata(ud, len, NFTNL_UDATA_SET_COMMENT);
  return out;
}

namespace {

absl::StatusOr<nft::Verdict> VerdictFrom(int32_t code, const char* chain, const std::string& what) {
  switch (code) {
    case NF_ACCEPT:
      return nft::Verdict::Accept();
    case NF_DROP:
      return nft::Verdict::Drop();
    case NFT_RETURN:
      return nft::Verdict::Return();
    case NFT_JUMP:
    case NFT_GOTO:
      if (chain == nullptr) return Foreign(what + " jumps without a chain");
      return code == NFT_JUMP ? nft::Verdict::Jump(chain) : nft::Verdict::Goto(chain);
    default:
      return Foreign(absl::StrCat(what, " has verdict code ", code));
  }
}

absl::StatusOr<nft::FieldValue> FieldFrom(FieldType t, const uint8_t* lo, const uint8_t* hi) {
  switch (t) {
    case FieldType::kIpv4Addr:
    case FieldType::kIpv6Addr: {
      IpAddr a, b;
      a.family = b.family = t == FieldType::kIpv4Addr ? Family::kV4 : Family::kV6;
      memcpy(a.bytes.data(), lo, FieldBytes(t));
      memcpy(b.bytes.data(), hi, FieldBytes(t));
      return nft::FieldValue::AddrRange(a, b);
    }
    case FieldType::kInetProto:
      return nft::FieldValue::NumRange(lo[0], hi[0]);
    case FieldType::kInetService: {
      uint16_t l, h;
      memcpy(&l, lo, 2);
      memcpy(&h, hi, 2);
      return nft::FieldValue::NumRange(ntohs(l), ntohs(h));
    }
  }
  return absl::InternalError("unknown field type");
}

}  // namespace

absl::StatusOr<std::vector<nft::Element>> DecodeElements(const nft::Set& set, nftnl_set* s) {
  std::vector<nft::Element> out;
  // Per element, the bytes of each field's low then high value: compared with memcmp they order
  // elements exactly as Element::operator< does (fixed-width, big-endian, one family per
  // field), at a fraction of its cost for the hundreds of thousands of elements a set may hold.
  std::vector<std::string> sort_keys;
  uint32_t key_len = KeyLength(set.key);
  nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(s);
  absl::Status status;
  // iter_next returns the current element and then advances.
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e != nullptr;
       e = nftnl_set_elems_iter_next(it)) {
    std::string what = absl::StrCat("set ", set.name, " element ", out.size());
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS) &&
        nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS) != 0) {
      status = Foreign(absl::StrCat(what, " has flags 0x",
                                    absl::Hex(nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS))));
      break;
    }
    uint32_t len = 0, end_len = 0;
    const auto* key = static_cast<const uint8_t*>(nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len));
    if (key == nullptr || len != key_len) {
      status = Foreign(absl::StrCat(what, " has a key of ", len, " bytes"));
      break;
    }
    const uint8_t* end = key;
    if (set.interval) {
      end = static_cast<const uint8_t*>(nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY_END, &end_len));
      if (end == nullptr || end_len != key_len) {
        status = Foreign(what + " has no matching key end");
        break;
      }
    } else if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_KEY_END)) {
      status = Foreign(what + " has a key end in a non-interval set");
      break;
    }
    nft::Element el;
    uint32_t off = 0;
    std::string sort_key;
    for (FieldType t : set.key) {
      sort_key.append(reinterpret_cast<const char*>(key + off), FieldBytes(t));
      sort_key.append(reinterpret_cast<const char*>(end + off), FieldBytes(t));
      auto v = FieldFrom(t, key + off, end + off);
      if (!v.ok()) {
        status = v.status();
        break;
      }
      el.key.push_back(*v);
      off += FieldSlotBytes(t, set.key.size());
    }
    if (!status.ok()) break;
    if (set.vmap) {
      if (!nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT)) {
        status = Foreign(what + " of a verdict map has no verdict");
        break;
      }
      const char* chain = nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN)
                              ? nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN)
                              : nullptr;
      auto v = VerdictFrom(static_cast<int32_t>(nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT)),
                           chain, what);
      if (!v.ok()) {
        status = v.status();
        break;
      }
      el.verdict = *v;
    }
    uint32_t ud_len = 0;
    const void* ud = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &ud_len);
    el.comment = CommentFromUdata(ud, ud_len, NFTNL_UDATA_SET_ELEM_COMMENT);
    out.push_back(std::move(el));
    sort_keys.push_back(std::move(sort_key));
  }
  nftnl_set_elems_iter_destroy(it);
  RETURN_IF_ERROR(status);
  std::vector<size_t> order(out.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return sort_keys[a] < sort_keys[b]; });
  std::vector<nft::Element> sorted;
  sorted.reserve(out.size());
  for (size_t i : order) sorted.push_back(std::move(out[i]));
  return sorted;
}

namespace {

// Walks a rule's expressions and recognizes the sequences RuleEncoder emits.
class RuleDecoder {
 public:
  RuleDecoder(std::vector<nftnl_expr*> ex, const std::map<std::string, nft::Set>& sets,
              std::string what)
      : ex_(std::move(ex)), sets_(sets), what_(std::move(what)) {}

  absl::StatusOr<nft::Rule> Run() {
    while (i_ < ex_.size()) {
      if (out_.verdict || vmap_done_) return Bad(i_, "follows the verdict");
      const std::string name = Name(i_);
      size_t start = i_;
      if (name == "limit") {
        if (out_.limit) return Bad(i_, "is a second limit");
        if (out_.counter || out_.log) return Bad(i_, "follows a statement");
        RETURN_IF_ERROR(DecodeLimit());
        continue;
      }
      if (name == "counter") {
        if (out_.counter) return Bad(i_, "is a second counter");
        if (out_.log) return Bad(i_, "follows the log");
        out_.counter = true;
        ++i_;
        continue;
      }
      if (name == "log") {
        if (out_.log) return Bad(i_, "is a second log");
        RETURN_IF_ERROR(DecodeLog());
        continue;
      }
      if (name == "immediate") {
        RETURN_IF_ERROR(DecodeVerdict());
        continue;
      }
      absl::Status s;
      if (name == "meta") {
        uint32_t key = U32(i_, NFTNL_EXPR_META_KEY);
        if (key == NFT_META_NFPROTO) {
          s = DecodeNfproto();
        } else if (key == NFT_META_L4PROTO && IsIcmpv6(i_)) {
          s = DecodeIcmpv6();
        } else if (key == NFT_META_L4PROTO) {
          s = DecodeLookup();
        } else if (key == NFT_META_IIFNAME || key == NFT_META_OIFNAME) {
          s = DecodeIfname();
        } else if (key == NFT_META_SKUID) {
          s = DecodeLocalSocket();
        } else {
          return Bad(i_, absl::StrCat("loads meta key ", key));
        }
      } else if (name == "ct") {
        s = U32(i_, NFTNL_EXPR_CT_KEY) == NFT_CT_STATE ? DecodeCtState() : DecodeLookup();
      } else if (name == "payload") {
        s = DecodeLookup();
      } else if (name == "fib") {
        s = DecodeFib();
      } else {
        return Bad(i_, "is not part of any netpol match");
      }
      RETURN_IF_ERROR(s);
      // A counter counts before the verdict; only a vmap lookup (which is the verdict) may
      // follow it. Limits and logs come after every match.
      if (out_.counter && !vmap_done_) return Bad(start, "follows the counter");
      if (out_.limit || out_.log) return Bad(start, "follows a limit or log");
    }
    return out_;
  }

 private:
  std::string Name(size_t i) const {
    if (i >= ex_.size()) return "";
    const char* n = nftnl_expr_get_str(ex_[i], NFTNL_EXPR_NAME);
    return n ? n : "";
  }
  uint32_t U32(size_t i, uint16_t attr) const {
    return nftnl_expr_is_set(ex_[i], attr) ? nftnl_expr_get_u32(ex_[i], attr) : 0;
  }
  bool Has(size_t i, uint16_t attr) const { return nftnl_expr_is_set(ex_[i], attr); }
  std::string Data(size_t i, uint16_t attr) const {
    uint32_t len = 0;
    const void* p = nftnl_expr_get(ex_[i], attr, &len);
    return p ? std::string(static_cast<const char*>(p), len) : std::string();
  }
  absl::Status Bad(size_t i, const std::string& msg) const {
    return Foreign(absl::StrCat(what_, ": expression ", i, " (", Name(i), ") ", msg));
  }
  // True when expression i is `cmp <op> reg <reg> <data>`.
  bool IsCmp(size_t i, uint32_t reg, uint32_t op, const std::string& data) const {
    return Name(i) == "cmp" && U32(i, NFTNL_EXPR_CMP_SREG) == reg &&
           U32(i, NFTNL_EXPR_CMP_OP) == op && Data(i, NFTNL_EXPR_CMP_DATA) == data;
  }
  bool IsCmpOp(size_t i, uint32_t reg, uint32_t op, size_t len) const {
    return Name(i) == "cmp" && U32(i, NFTNL_EXPR_CMP_SREG) == reg &&
           U32(i, NFTNL_EXPR_CMP_OP) == op && Data(i, NFTNL_EXPR_CMP_DATA).size() == len;
  }
  static std::string U32Bytes(uint32_t v) { return std::string(reinterpret_cast<char*>(&v), 4); }

  // `limit rate <n>/second burst <b> packets`, as nft writes it (no byte limits, no `over`).
  absl::Status DecodeLimit() {
    const nftnl_expr* e = ex_[i_];
    if (!Has(i_, NFTNL_EXPR_LIMIT_RATE) || !Has(i_, NFTNL_EXPR_LIMIT_UNIT)) {
      return Bad(i_, "has no rate");
    }
    uint64_t rate = nftnl_expr_get_u64(e, NFTNL_EXPR_LIMIT_RATE);
    uint64_t unit = nftnl_expr_get_u64(e, NFTNL_EXPR_LIMIT_UNIT);
    if (unit != 1) return Bad(i_, absl::StrCat("is per ", unit, " seconds, not per second"));
    if (U32(i_, NFTNL_EXPR_LIMIT_TYPE) != NFT_LIMIT_PKTS) return Bad(i_, "limits bytes");
    if (U32(i_, NFTNL_EXPR_LIMIT_FLAGS) != 0) return Bad(i_, "is inverted (over)");
    uint32_t burst = U32(i_, NFTNL_EXPR_LIMIT_BURST);
    if (rate < 1 || rate > nft::kMaxLimitValue || burst < 1 || burst > nft::kMaxLimitValue) {
      return Bad(i_, absl::StrCat("has rate ", rate, " burst ", burst));
    }
    out_.limit = nft::LimitStmt{static_cast<uint32_t>(rate), burst};
    ++i_;
    return absl::OkStatus();
  }

  // `log [prefix "<p>"] group <g> [snaplen <s>]`: nflog only (no syslog level, no flags).
  absl::Status DecodeLog() {
    const nftnl_expr* e = ex_[i_];
    if (!Has(i_, NFTNL_EXPR_LOG_GROUP)) return Bad(i_, "logs to syslog, not to an nflog group");
    if (Has(i_, NFTNL_EXPR_LOG_LEVEL) || U32(i_, NFTNL_EXPR_LOG_FLAGS) != 0 ||
        U32(i_, NFTNL_EXPR_LOG_QTHRESHOLD) != 0) {
      return Bad(i_, "has a level, flags or a queue threshold");
    }
    nft::LogStmt log;
    log.group = nftnl_expr_get_u16(e, NFTNL_EXPR_LOG_GROUP);
    log.snaplen = U32(i_, NFTNL_EXPR_LOG_SNAPLEN);
    if (Has(i_, NFTNL_EXPR_LOG_PREFIX)) {
      const char* p = nftnl_expr_get_str(e, NFTNL_EXPR_LOG_PREFIX);
      log.prefix = p ? p : "";
    }
    out_.log = std::move(log);
    ++i_;
    return absl::OkStatus();
  }

  bool IsIcmpv6(size_t i) const {
    uint32_t reg = U32(i, NFTNL_EXPR_META_DREG);
    return IsCmp(i + 1, reg, NFT_CMP_EQ, std::string(1, static_cast<char>(kProtoIcmpv6))) &&
           Name(i + 2) == "payload" &&
           U32(i + 2, NFTNL_EXPR_PAYLOAD_BASE) == NFT_PAYLOAD_TRANSPORT_HEADER &&
           U32(i + 2, NFTNL_EXPR_PAYLOAD_OFFSET) == 0 && U32(i + 2, NFTNL_EXPR_PAYLOAD_LEN) == 1;
  }

  // Whether the loads starting at i (up to the lookup) read the network header: then a
  // preceding `meta nfproto` is that lookup's implicit dependency.
  bool LookupReadsNetworkHeader(size_t i) const {
    for (; i < ex_.size(); ++i) {
      std::string n = Name(i);
      if (n == "payload") {
        if (U32(i, NFTNL_EXPR_PAYLOAD_BASE) == NFT_PAYLOAD_NETWORK_HEADER) return true;
      } else if (n == "ct") {
        uint32_t key = U32(i, NFTNL_EXPR_CT_KEY);
        return key == NFT_CT_SRC_IP || key == NFT_CT_SRC_IP6;
      } else if (n == "meta") {
        if (U32(i, NFTNL_EXPR_META_KEY) != NFT_META_L4PROTO) return false;
        if (IsIcmpv6(i)) return false;
      } else if (n != "byteorder") {
        return false;
      }
    }
    return false;
  }

  absl::Status DecodeNfproto() {
    uint32_t reg = U32(i_, NFTNL_EXPR_META_DREG);
    std::string v4(1, static_cast<char>(NFPROTO_IPV4)), v6(1, static_cast<char>(NFPROTO_IPV6));
    uint8_t family;
    if (IsCmp(i_ + 1, reg, NFT_CMP_EQ, v4)) {
      family = NFPROTO_IPV4;
    } else if (IsCmp(i_ + 1, reg, NFT_CMP_EQ, v6)) {
      family = NFPROTO_IPV6;
    } else {
      return Bad(i_, "is not followed by `cmp eq ipv4|ipv6`");
    }
    i_ += 2;
    if (!LookupReadsNetworkHeader(i_)) {
      out_.matches.push_back(nft::NfProtoMatch{family == NFPROTO_IPV4 ? Family::kV4 : Family::kV6});
    }
    family_ = family;
    return absl::OkStatus();
  }

  absl::Status DecodeCtState() {
    uint32_t reg = U32(i_, NFTNL_EXPR_CT_DREG);
    if (U32(i_, NFTNL_EXPR_CT_KEY) != NFT_CT_STATE || Has(i_, NFTNL_EXPR_CT_DIR)) {
      return Bad(i_, "is not `ct state`");
    }
    size_t b = i_ + 1;
    if (Name(b) != "bitwise" || U32(b, NFTNL_EXPR_BITWISE_SREG) != reg ||
        U32(b, NFTNL_EXPR_BITWISE_DREG) != reg || U32(b, NFTNL_EXPR_BITWISE_LEN) != 4 ||
        U32(b, NFTNL_EXPR_BITWISE_OP) != 0 || Data(b, NFTNL_EXPR_BITWISE_XOR) != U32Bytes(0) ||
        Data(b, NFTNL_EXPR_BITWISE_MASK).size() != 4) {
      return Bad(i_, "is not followed by a ct state mask");
    }
    uint32_t mask;
    memcpy(&mask, Data(b, NFTNL_EXPR_BITWISE_MASK).data(), 4);
    if (!IsCmp(i_ + 2, reg, NFT_CMP_NEQ, U32Bytes(0))) {
      return Bad(i_, "is not followed by `cmp neq 0`");
    }
    constexpr uint32_t kKnown = kCtInvalid | kCtEstablished | kCtRelated | kCtNew | kCtUntracked;
    if (mask == 0 || (mask & ~kKnown) != 0)
      return Bad(i_, absl::StrCat("has ct state mask ", mask));
    nft::CtStateMatch m;
    m.invalid = mask & kCtInvalid;
    m.established = mask & kCtEstablished;
    m.related = mask & kCtRelated;
    m.new_ = mask & kCtNew;
    m.untracked = mask & kCtUntracked;
    out_.matches.push_back(m);
    i_ += 3;
    return absl::OkStatus();
  }

  absl::Status DecodeIcmpv6() {
    uint32_t reg = U32(i_ + 2, NFTNL_EXPR_PAYLOAD_DREG);
    nft::Icmpv6TypeMatch m;
    if (IsCmpOp(i_ + 3, reg, NFT_CMP_EQ, 1)) {
      m.lo = m.hi = static_cast<uint8_t>(Data(i_ + 3, NFTNL_EXPR_CMP_DATA)[0]);
      i_ += 4;
    } else if (IsCmpOp(i_ + 3, reg, NFT_CMP_GTE, 1) && IsCmpOp(i_ + 4, reg, NFT_CMP_LTE, 1)) {
      m.lo = static_cast<uint8_t>(Data(i_ + 3, NFTNL_EXPR_CMP_DATA)[0]);
      m.hi = static_cast<uint8_t>(Data(i_ + 4, NFTNL_EXPR_CMP_DATA)[0]);
      i_ += 5;
    } else {
      return Bad(i_, "loads the icmpv6 type without a type comparison");
    }
    out_.matches.push_back(m);
    return absl::OkStatus();
  }

  absl::Status DecodeIfname() {
    uint32_t reg = U32(i_, NFTNL_EXPR_META_DREG);
    nft::IfnameMatch m;
    m.input = U32(i_, NFTNL_EXPR_META_KEY) == NFT_META_IIFNAME;
    if (Name(i_ + 1) != "cmp" || U32(i_ + 1, NFTNL_EXPR_CMP_SREG) != reg ||
        U32(i_ + 1, NFTNL_EXPR_CMP_OP) != NFT_CMP_EQ) {
      return Bad(i_, "is not followed by `cmp eq`");
    }
    std::string data = Data(i_ + 1, NFTNL_EXPR_CMP_DATA);
    size_t nul = data.find('\0');
    if (nul == std::string::npos) {
      if (data.empty() || data.size() >= kIfnameSize) return Bad(i_ + 1, "has a bad name prefix");
      m.name = data + "*";
    } else {
      if (data.size() != kIfnameSize || nul == 0 ||
          data.find_first_not_of('\0', nul) != std::string::npos) {
        return Bad(i_ + 1, "has a bad interface name");
      }
      m.name = data.substr(0, nul);
    }
    out_.matches.push_back(m);
    i_ += 2;
    return absl::OkStatus();
  }

  absl::Status DecodeFib() {
    uint32_t reg = U32(i_, NFTNL_EXPR_FIB_DREG);
    uint32_t flags = U32(i_, NFTNL_EXPR_FIB_FLAGS);
    if (U32(i_, NFTNL_EXPR_FIB_RESULT) != NFT_FIB_RESULT_ADDRTYPE ||
        (flags != NFTA_FIB_F_SADDR && flags != NFTA_FIB_F_DADDR) ||
        !IsCmp(i_ + 1, reg, NFT_CMP_EQ, U32Bytes(kRtnLocal))) {
      return Bad(i_, "is not `fib saddr|daddr type local`");
    }
    out_.matches.push_back(nft::FibLocalMatch{flags == NFTA_FIB_F_SADDR});
    i_ += 2;
    return absl::OkStatus();
  }

  absl::Status DecodeLocalSocket() {
    uint32_t reg = U32(i_, NFTNL_EXPR_META_DREG);
    size_t b = i_ + 1;
    if (Name(b) != "byteorder" || U32(b, NFTNL_EXPR_BYTEORDER_SREG) != reg ||
        U32(b, NFTNL_EXPR_BYTEORDER_DREG) != reg ||
        U32(b, NFTNL_EXPR_BYTEORDER_OP) != NFT_BYTEORDER_HTON ||
        U32(b, NFTNL_EXPR_BYTEORDER_LEN) != 4 || U32(b, NFTNL_EXPR_BYTEORDER_SIZE) != 4 ||
        !IsCmp(i_ + 2, reg, NFT_CMP_GTE, U32Bytes(0))) {
      return Bad(i_, "is not `meta skuid >= 0`");
    }
    out_.matches.push_back(nft::LocalSocketMatch{});
    i_ += 3;
    return absl::OkStatus();
  }

  absl::Status DecodeLookup() {
    struct Load {
      Selector sel;
      uint32_t slot;
      bool swapped;  // followed by nft's `byteorder hton(reg, 2, 1)`
    };
    std::vector<Load> loads;
    size_t start = i_;
    for (; i_ < ex_.size(); ++i_) {
      std::string n = Name(i_);
      if (n == "lookup") break;
      std::optional<Selector> sel;
      uint32_t reg = 0;
      if (n == "payload") {
        reg = U32(i_, NFTNL_EXPR_PAYLOAD_DREG);
        uint32_t base = U32(i_, NFTNL_EXPR_PAYLOAD_BASE), off = U32(i_, NFTNL_EXPR_PAYLOAD_OFFSET),
                 len = U32(i_, NFTNL_EXPR_PAYLOAD_LEN);
        for (Selector s : {Selector::kIpSaddr, Selector::kIpDaddr, Selector::kIp6Saddr,
                           Selector::kIp6Daddr, Selector::kThDport}) {
          SelectorLoad l = LoadOf(s);
          if (!l.meta && l.base == base && l.offset == off && l.len == len) sel = s;
        }
        if (!sel)
          return Bad(i_, absl::StrCat("loads ", len, " bytes at ", off, " of header ", base));
        if (LoadOf(*sel).nfproto != 0 && LoadOf(*sel).nfproto != family_) {
          return Bad(i_, absl::StrCat("loads ", nft::SelectorText(*sel), " without its meta nfproto"));
        }
      } else if (n == "meta" && U32(i_, NFTNL_EXPR_META_KEY) == NFT_META_L4PROTO) {
        reg = U32(i_, NFTNL_EXPR_META_DREG);
        sel = Selector::kL4Proto;
      } else if (n == "ct") {
        reg = U32(i_, NFTNL_EXPR_CT_DREG);
        uint32_t key = U32(i_, NFTNL_EXPR_CT_KEY);
        for (Selector s : {Selector::kCtOrigIpSaddr, Selector::kCtOrigIp6Saddr}) {
          if (LoadOf(s).ct_key == key) sel = s;
        }
        if (!sel || !Has(i_, NFTNL_EXPR_CT_DIR) ||
            nftnl_expr_get_u8(ex_[i_], NFTNL_EXPR_CT_DIR) != 0) {
          return Bad(i_, absl::StrCat("loads ct key ", key, " that is not an original source"));
        }
        if (LoadOf(*sel).nfproto != family_) {
          return Bad(i_, absl::StrCat("loads ", nft::SelectorText(*sel), " without its meta nfproto"));
        }
      } else if (n == "byteorder" && !loads.empty() && loads.back().sel == Selector::kL4Proto &&
                 U32(i_, NFTNL_EXPR_BYTEORDER_SREG) == RegisterForSlot(loads.back().slot) &&
                 U32(i_, NFTNL_EXPR_BYTEORDER_DREG) == RegisterForSlot(loads.back().slot) &&
                 U32(i_, NFTNL_EXPR_BYTEORDER_OP) == NFT_BYTEORDER_HTON &&
                 U32(i_, NFTNL_EXPR_BYTEORDER_LEN) == 1 &&
                 U32(i_, NFTNL_EXPR_BYTEORDER_SIZE) == 2) {
        if (loads.back().swapped) return Bad(i_, "converts a register twice");
        loads.back().swapped = true;
        continue;
      } else {
        return Bad(i_, "is not part of a set lookup key");
      }
      auto slot = SlotForRegister(reg);
      if (!slot) return Bad(i_, absl::StrCat("loads into register ", reg));
      loads.push_back({*sel, *slot, false});
    }
    if (i_ >= ex_.size()) return Bad(start, "loads a key that no lookup uses");
    if (loads.empty()) return Bad(i_, "has no key");
    const char* set_name = nftnl_expr_get_str(ex_[i_], NFTNL_EXPR_LOOKUP_SET);
    auto it = sets_.find(set_name ? set_name : "");
    if (it == sets_.end())
      return Bad(i_, absl::StrCat("refers to unknown set ", set_name ? set_name : "?"));
    const nft::Set& set = it->second;
    nft::LookupMatch m;
    m.set = set.name;
    uint32_t slot = 0;
    for (const Load& l : loads) m.key.push_back(l.sel);
    if (m.key.size() != set.key.size()) return Bad(i_, "key does not match the set's fields");
    for (size_t k = 0; k < loads.size(); ++k) {
      if (nft::SelectorType(loads[k].sel) != set.key[k] || loads[k].slot != slot) {
        return Bad(i_, "key does not match the set's fields");
      }
      bool swapped = loads[k].sel == Selector::kL4Proto && set.interval && set.key.size() > 1;
      if (loads[k].swapped != swapped) return Bad(i_, "key byte order differs from nft's");
      slot += (FieldSlotBytes(set.key[k], set.key.size()) + 3) / 4;
    }
    if (U32(i_, NFTNL_EXPR_LOOKUP_SREG) != RegisterForSlot(0))
      return Bad(i_, "reads another register");
    uint32_t flags = U32(i_, NFTNL_EXPR_LOOKUP_FLAGS);
    if ((flags & ~static_cast<uint32_t>(NFT_LOOKUP_F_INV)) != 0)
      return Bad(i_, "has unknown flags");
    m.negate = flags & NFT_LOOKUP_F_INV;
    if (Has(i_, NFTNL_EXPR_LOOKUP_DREG)) {
      if (U32(i_, NFTNL_EXPR_LOOKUP_DREG) != NFT_REG_VERDICT || !set.vmap || m.negate) {
        return Bad(i_, "is a data map lookup");
      }
      m.vmap = true;
      vmap_done_ = true;
    } else if (set.vmap) {
      return Bad(i_, "looks up a verdict map without using its verdict");
    }
    out_.matches.push_back(std::move(m));
    ++i_;
    return absl::OkStatus();
  }

  absl::Status DecodeVerdict() {
    if (U32(i_, NFTNL_EXPR_IMM_DREG) != NFT_REG_VERDICT || !Has(i_, NFTNL_EXPR_IMM_VERDICT)) {
      return Bad(i_, "loads data, not a verdict");
    }
    const char* chain =
        Has(i_, NFTNL_EXPR_IMM_CHAIN) ? nftnl_expr_get_str(ex_[i_], NFTNL_EXPR_IMM_CHAIN) : nullptr;
    ASSIGN_OR_RETURN(out_.verdict,
                     VerdictFrom(static_cast<int32_t>(U32(i_, NFTNL_EXPR_IMM_VERDICT)), chain,
                                 absl::StrCat(what_, ": expression ", i_, " (immediate)")));
    ++i_;
    return absl::OkStatus();
  }

  std::vector<nftnl_expr*> ex_;
  const std::map<std::string, nft::Set>& sets_;
  std::string what_;
  size_t i_ = 0;
  uint8_t family_ = 0;
  bool vmap_done_ = false;
  nft::Rule out_;
};

}  // namespace

absl::StatusOr<nft::Rule> DecodeRule(nftnl_rule* r, const std::map<std::string, nft::Set>& sets) {
  std::string what = absl::StrCat("chain ", Str(nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)),
                                  ", rule handle ", nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE));
  std::vector<nftnl_expr*> ex;
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e != nullptr; e = nftnl_expr_iter_next(it)) {
    ex.push_back(e);
  }
  nftnl_expr_iter_destroy(it);
  if (ex.empty()) return Foreign(what + " has no expressions");
  RuleDecoder d(std::move(ex), sets, what);
  ASSIGN_OR_RETURN(nft::Rule rule, d.Run());
  uint32_t len = 0;
  const void* ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
  rule.comment = CommentFromUdata(ud, len, NFTNL_UDATA_RULE_COMMENT);
  return rule;
}

std::optional<nft::RuleCount> DecodeRuleCount(nftnl_rule* r) {
  std::optional<nft::RuleCount> out;
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e != nullptr; e = nftnl_expr_iter_next(it)) {
    if (Str(nftnl_expr_get_str(e, NFTNL_EXPR_NAME)) != "counter") continue;
    out.emplace();
    out->packets = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
    out->bytes = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
    break;
  }
  nftnl_expr_iter_destroy(it);
  if (!out) return out;
  out->chain = Str(nftnl_rule_get_str(r, NFTNL_RULE_CHAIN));
  uint32_t len = 0;
  const void* ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
  out->comment = CommentFromUdata(ud, len, NFTNL_UDATA_RULE_COMMENT);
  return out;
}

}  // namespace netpol::netlink
