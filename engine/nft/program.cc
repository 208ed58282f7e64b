// Small helpers over the program value types.
#include "engine/nft/program.h"

#include <algorithm>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace netpol::nft {

FieldType SelectorType(Selector s) {
  switch (s) {
    case Selector::kIpSaddr:
    case Selector::kIpDaddr:
    case Selector::kCtOrigIpSaddr:
      return FieldType::kIpv4Addr;
    case Selector::kIp6Saddr:
    case Selector::kIp6Daddr:
    case Selector::kCtOrigIp6Saddr:
      return FieldType::kIpv6Addr;
    case Selector::kL4Proto:
      return FieldType::kInetProto;
    case Selector::kThDport:
      return FieldType::kInetService;
  }
  return FieldType::kInetService;  // unreachable: every enumerator is handled above
}

const char* SelectorText(Selector s) {
  switch (s) {
    case Selector::kIpSaddr:
      return "ip saddr";
    case Selector::kIpDaddr:
      return "ip daddr";
    case Selector::kIp6Saddr:
      return "ip6 saddr";
    case Selector::kIp6Daddr:
      return "ip6 daddr";
    case Selector::kL4Proto:
      return "meta l4proto";
    case Selector::kThDport:
      return "th dport";
    case Selector::kCtOrigIpSaddr:
      return "ct original ip saddr";
    case Selector::kCtOrigIp6Saddr:
      return "ct original ip6 saddr";
  }
  return "?";
}

const char* FieldTypeName(FieldType t) {
  switch (t) {
    case FieldType::kIpv4Addr:
      return "ipv4_addr";
    case FieldType::kIpv6Addr:
      return "ipv6_addr";
    case FieldType::kInetProto:
      return "inet_proto";
    case FieldType::kInetService:
      return "inet_service";
  }
  return "invalid";
}

void Canonicalize(Program* program) {
  for (auto it = program->elements.begin(); it != program->elements.end();) {
    if (it->second.empty()) {
      it = program->elements.erase(it);
      continue;
    }
    std::stable_sort(it->second.begin(), it->second.end());
    ++it;
  }
}

// Words nft 1.0.6's parser reads as keywords where a table, chain or set name is expected (every
// word of nft(8) and of nft's scanner, each tried as `add chain inet t WORD`; fake_kernel_test
// checks every one against the installed nft).
const std::vector<std::string>& NftKeywords() {
  static const auto* const kKeywords = new std::vector<std::string>{
      "accept",     "add",       "ah",       "all",      "and",       "arp",         "auto-merge",
      "bridge",     "cgroup",    "chain",    "comment",  "comp",      "constant",    "continue",
      "counter",    "cpu",       "create",   "ct",       "day",       "dccp",        "define",
      "delete",     "describe",  "device",   "devices",  "dnat",      "drop",        "dst",
      "dup",        "dynamic",   "ecn",      "element",  "elements",  "eq",          "esp",
      "ether",      "exists",    "expires",  "export",   "exthdr",    "fib",         "flags",
      "flow",       "flowtable", "flush",    "frag",     "fwd",       "gc-interval", "ge",
      "get",        "goto",      "gt",       "handle",   "hbh",       "hook",        "hour",
      "ibriport",   "ibrname",   "icmp",     "icmpv6",   "igmp",      "iif",         "iifgroup",
      "iifname",    "iiftype",   "import",   "include",  "index",     "inet",        "insert",
      "interval",   "ip",        "ip6",      "ipsec",    "jhash",     "jump",        "le",
      "limit",      "list",      "log",      "lshift",   "lt",        "map",         "mark",
      "masquerade", "meta",      "meter",    "mh",       "missing",   "monitor",     "ne",
      "netdev",     "nftrace",   "not",      "notrack",  "numgen",    "obriport",    "obrname",
      "offload",    "oif",       "oifgroup", "oifname",  "oiftype",   "or",          "osf",
      "pkttype",    "policy",    "position", "priority", "queue",     "quota",       "random",
      "redefine",   "redirect",  "reject",   "rename",   "replace",   "reset",       "return",
      "rshift",     "rt",        "rt0",      "rt2",      "rtclassid", "rule",        "ruleset",
      "sctp",       "secmark",   "set",      "size",     "skgid",     "skuid",       "snat",
      "socket",     "srh",       "symhash",  "synproxy", "table",     "tcp",         "th",
      "time",       "timeout",   "tproxy",   "type",     "typeof",    "udp",         "udplite",
      "undefine",   "update",    "vlan",     "vmap",     "xor",       "xt",
  };
  return *kKeywords;
}

namespace {

absl::Status Invalid(const std::string& msg) { return absl::InvalidArgumentError(msg); }

bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool IsCommentChar(char c) { return c >= 0x20 && c <= 0x7e && c != '"'; }

// A register holds 4 bytes; every key field takes whole registers.
size_t PaddedBytes(FieldType t) { return t == FieldType::kIpv6Addr ? 16 : 4; }

}  // namespace

absl::Status ValidateObjectName(const char* what, const std::string& name) {
  const std::string head = absl::StrCat(what, " name \"", absl::CEscape(name.substr(0, 80)),
                                        name.size() > 80 ? "...\": " : "\": ");
  if (name.empty()) return Invalid(absl::StrCat(head, "is empty"));
  if (name.size() > kMaxNameLength) {
    return Invalid(absl::StrCat(head, "is ", name.size(), " bytes, longer than ", kMaxNameLength));
  }
  if (!IsLetter(name[0])) return Invalid(absl::StrCat(head, "must start with a letter"));
  for (char c : name) {
    if (!IsLetter(c) && !(c >= '0' && c <= '9') && c != '_' && c != '-' && c != '.') {
      return Invalid(absl::StrCat(head, "may hold only letters, digits, '-', '_' and '.'"));
    }
  }
  for (const std::string& kw : NftKeywords()) {
    if (name == kw) {
      return Invalid(
          absl::StrCat(head, "is an nft keyword, which nft's parser cannot read as a name"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateComment(const std::string& comment) {
  if (comment.size() > kMaxCommentLength) {
    return Invalid(absl::StrCat("comment is ", comment.size(), " bytes, at most ",
                                kMaxCommentLength, " allowed"));
  }
  for (char c : comment) {
    if (!IsCommentChar(c)) return Invalid("comment may hold only printable ASCII other than '\"'");
  }
  return absl::OkStatus();
}

absl::Status ValidateVerdict(const Verdict& v) {
  if (v.kind == Verdict::Kind::kJump || v.kind == Verdict::Kind::kGoto) {
    return ValidateObjectName("chain", v.chain);
  }
  if (!v.chain.empty()) return Invalid("only jump and goto name a chain");
  return absl::OkStatus();
}

absl::Status ValidateSetDef(const Set& set) {
  RETURN_IF_ERROR(ValidateObjectName("set", set.name));
  if (set.key.empty()) return Invalid("key has no field");
  size_t bytes = 0;
  for (FieldType t : set.key) bytes += PaddedBytes(t);
  if (bytes > kMaxKeyBytes) {
    return Invalid(absl::StrCat("key of ", bytes, " bytes exceeds the ", kMaxKeyBytes,
                                "-byte register file"));
  }
  if (set.interval && set.key.size() < 2) {
    return Invalid(
        "single-field interval sets are not supported (netpol uses concatenated interval sets "
        "only)");
  }
  return ValidateComment(set.comment);
}

absl::Status ValidateElementShape(const Set& set, const Element& e, bool keys_only) {
  if (e.key.size() != set.key.size()) {
    return Invalid(absl::StrCat("key: has ", e.key.size(), " fields, set ", set.name, " has ",
                                set.key.size()));
  }
  for (size_t i = 0; i < e.key.size(); ++i) {
    const std::string path = absl::StrCat("key[", i, "]: ");
    const FieldValue& v = e.key[i];
    const FieldType t = set.key[i];
    const bool range = t == FieldType::kIpv4Addr || t == FieldType::kIpv6Addr
                           ? v.addr_lo != v.addr_hi
                           : v.lo != v.hi;
    if (t == FieldType::kIpv4Addr || t == FieldType::kIpv6Addr) {
      const Family want = t == FieldType::kIpv4Addr ? Family::kV4 : Family::kV6;
      if (v.lo != 0 || v.hi != 0) return Invalid(path + "a number given for an address field");
      if (v.addr_lo.family != want || v.addr_hi.family != want) {
        return Invalid(absl::StrCat(path, "address family does not match ", FieldTypeName(t)));
      }
      if (v.addr_hi < v.addr_lo) return Invalid(path + "range end is below its start");
    } else {
      if (v.addr_lo != IpAddr{} || v.addr_hi != IpAddr{}) {
        return Invalid(path + "an address given for a number field");
      }
      const uint32_t max = t == FieldType::kInetProto ? 255 : 65535;
      if (v.hi > max || v.lo > max) return Invalid(absl::StrCat(path, "value exceeds ", max));
      if (v.hi < v.lo) return Invalid(path + "range end is below its start");
    }
    if (range && !set.interval) {
      return Invalid(
          absl::StrCat(path, "a range needs an interval set; ", set.name, " is not one"));
    }
  }
  if (e.verdict) {
    if (!set.vmap) return Invalid(absl::StrCat("verdict: ", set.name, " is not a verdict map"));
    if (absl::Status s = ValidateVerdict(*e.verdict); !s.ok()) {
      return Invalid(absl::StrCat("verdict: ", s.message()));
    }
  } else if (set.vmap && !keys_only) {
    return Invalid(
        absl::StrCat("verdict: an element of verdict map ", set.name, " needs a verdict"));
  }
  return ValidateComment(e.comment);
}

namespace {

std::optional<Family> SelectorFamily(Selector s) {
  switch (SelectorType(s)) {
    case FieldType::kIpv4Addr:
      return Family::kV4;
    case FieldType::kIpv6Addr:
      return Family::kV6;
    default:
      return std::nullopt;
  }
}

absl::Status ValidateMatch(const CtStateMatch& m) {
  if (!m.established && !m.related && !m.invalid && !m.new_ && !m.untracked) {
    return Invalid("ct state match lists no state");
  }
  return absl::OkStatus();
}

absl::Status ValidateMatch(const Icmpv6TypeMatch& m) {
  if (m.lo > m.hi) {
    return Invalid(absl::StrCat("icmpv6 type range ", m.lo, "-", m.hi, " is reversed"));
  }
  return absl::OkStatus();
}

absl::Status ValidateMatch(const IfnameMatch& m) {
  std::string name = m.name;
  if (!name.empty() && name.back() == '*') name.pop_back();
  if (name.empty()) return Invalid("interface name is empty");
  if (name.size() > kMaxIfnameLength) {
    return Invalid(absl::StrCat("interface name \"", absl::CEscape(m.name), "\" is longer than ",
                                kMaxIfnameLength, " bytes"));
  }
  if (name.find_first_of(std::string("*\"\0", 3)) != std::string::npos) {
    return Invalid(absl::StrCat("interface name \"", absl::CEscape(m.name),
                                "\": only a trailing '*' wildcard is allowed, and no '\"'"));
  }
  return absl::OkStatus();
}

absl::Status ValidateMatch(const LookupMatch& m) {
  if (m.key.empty()) return Invalid("lookup key is empty");
  RETURN_IF_ERROR(ValidateObjectName("set", m.set));
  if (m.vmap && m.negate) return Invalid("a vmap lookup cannot be negated");
  return absl::OkStatus();
}

template <typename M>
absl::Status ValidateMatch(const M&) {
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRuleShape(const Rule& rule) {
  if (rule.matches.empty() && !rule.counter && !rule.verdict && !rule.log && !rule.limit) {
    return Invalid("rule has no match, counter or verdict");
  }
  if (rule.limit) {
    if (rule.limit->rate < 1 || rule.limit->rate > kMaxLimitValue) {
      return Invalid(absl::StrCat("limit: rate ", rule.limit->rate, " is outside 1-",
                                  kMaxLimitValue, " packets per second"));
    }
    if (rule.limit->burst < 1 || rule.limit->burst > kMaxLimitValue) {
      return Invalid(absl::StrCat("limit: burst ", rule.limit->burst, " is outside 1-",
                                  kMaxLimitValue, " packets"));
    }
  }
  if (rule.log) {
    if (rule.log->prefix.size() > kMaxLogPrefixLength) {
      return Invalid(absl::StrCat("log: prefix is ", rule.log->prefix.size(), " bytes, at most ",
                                  kMaxLogPrefixLength, " allowed"));
    }
    for (char c : rule.log->prefix) {
      if (!IsCommentChar(c)) {
        return Invalid("log: prefix may hold only printable ASCII other than '\"'");
      }
    }
  }
  if (rule.matches.size() > kMaxMatches) {
    return Invalid(
        absl::StrCat(rule.matches.size(), " matches, at most ", kMaxMatches, " allowed"));
  }
  std::optional<Family> family;  // of the selectors and nfproto matches so far
  for (size_t i = 0; i < rule.matches.size(); ++i) {
    const std::string path = absl::StrCat("matches[", i, "]: ");
    const Match& m = rule.matches[i];
    if (absl::Status s = std::visit([](const auto& v) { return ValidateMatch(v); }, m); !s.ok()) {
      return Invalid(absl::StrCat(path, s.message()));
    }
    std::vector<Family> families;
    if (const auto* nf = std::get_if<NfProtoMatch>(&m)) families.push_back(nf->family);
    if (const auto* lk = std::get_if<LookupMatch>(&m)) {
      if (lk->vmap) {
        if (i + 1 != rule.matches.size()) {
          return Invalid(path + "a vmap lookup must be the rule's last match");
        }
        if (rule.verdict) return Invalid(path + "a vmap rule has no verdict of its own");
        if (rule.counter) return Invalid(path + "a vmap rule has no counter");
        if (rule.limit || rule.log) return Invalid(path + "a vmap rule has no limit or log");
      }
      for (Selector s : lk->key) {
        if (std::optional<Family> f = SelectorFamily(s)) families.push_back(*f);
      }
    }
    for (Family f : families) {
      if (family && *family != f) {
        return Invalid(path + "conflicting protocols (ip and ip6) in one rule");
      }
      family = f;
    }
  }
  if (rule.verdict) {
    if (absl::Status s = ValidateVerdict(*rule.verdict); !s.ok()) {
      return Invalid(absl::StrCat("verdict: ", s.message()));
    }
  }
  return ValidateComment(rule.comment);
}

absl::Status ValidateLookup(const LookupMatch& m, const Set& set) {
  if (m.vmap != set.vmap) {
    return Invalid(set.vmap ? absl::StrCat(set.name, " is a verdict map; use vmap")
                            : absl::StrCat(set.name, " is not a verdict map"));
  }
  if (m.key.size() != set.key.size()) {
    return Invalid(absl::StrCat("key has ", m.key.size(), " fields, set ", set.name, " has ",
                                set.key.size()));
  }
  for (size_t i = 0; i < m.key.size(); ++i) {
    if (SelectorType(m.key[i]) != set.key[i]) {
      return Invalid(absl::StrCat("key[", i, "]: ", SelectorText(m.key[i]),
                                  " does not match field type ", FieldTypeName(set.key[i]),
                                  " of set ", set.name));
    }
  }
  return absl::OkStatus();
}

uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a 64-bit offset basis
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;  // FNV-1a 64-bit prime
  }
  return h;
}

std::string CommentFrom(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (IsCommentChar(c)) {
      out.push_back(c);
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    }
  }
  if (out.size() <= kMaxCommentLength) return out;
  // '~' and 8 hex digits: the hash of the whole text, so two long texts sharing their first
  // bytes still differ.
  const std::string tail =
      absl::StrCat("~", absl::Hex(static_cast<uint32_t>(Fnv1a64(text) >> 32), absl::kZeroPad8));
  out.resize(kMaxCommentLength - tail.size());
  return out + tail;
}

Program Canonical(Program program) {
  Canonicalize(&program);
  return program;
}

}  // namespace netpol::nft
