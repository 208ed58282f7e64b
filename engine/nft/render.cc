// nft text for programs and transactions.
//
// Two forms: the listing form (RenderProgram, RenderRule, RenderElement) is byte for byte what
// Debian's nft 1.0.6 prints for `nft list table inet NAME`; the script form
// (Transaction::ToNftText) is what `nft -f` reads and turns into the same bytecode that
// engine/netlink writes. They differ where nft hides what it considers dependencies and where
// names would be ambiguous to nft's parser. render_kernel_test loads both into a real kernel.
#include <arpa/inet.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::nft {
namespace {

// ---- scalar values ----

std::string AddrText(const IpAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.family == Family::kV4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof(buf));
  return buf;
}

bool Bit(const IpAddr& a, int i) { return (a.bytes[i / 8] >> (7 - i % 8)) & 1; }

// Returns the prefix length when [lo, hi] is exactly one CIDR block, -1 otherwise.
int PrefixLength(const IpAddr& lo, const IpAddr& hi) {
  if (lo.family != hi.family) return -1;
  const int bits = lo.bits();
  int p = 0;
  while (p < bits && Bit(lo, p) == Bit(hi, p)) ++p;
  for (int i = p; i < bits; ++i) {
    if (Bit(lo, i) || !Bit(hi, i)) return -1;
  }
  return p;
}

// The first name per number in netbase's /etc/protocols, which nft prints through
// getprotobynumber(3). Numbers not listed print as numbers.
const char* ProtoName(uint32_t p) {
  static const std::pair<uint32_t, const char*> kNames[] = {
      {0, "ip"},
      {1, "icmp"},
      {2, "igmp"},
      {3, "ggp"},
      {4, "ipencap"},
      {5, "st"},
      {6, "tcp"},
      {8, "egp"},
      {9, "igp"},
      {12, "pup"},
      {17, "udp"},
      {20, "hmp"},
      {22, "xns-idp"},
      {27, "rdp"},
      {29, "iso-tp4"},
      {33, "dccp"},
      {36, "xtp"},
      {37, "ddp"},
      {38, "idpr-cmtp"},
      {41, "ipv6"},
      {43, "ipv6-route"},
      {44, "ipv6-frag"},
      {45, "idrp"},
      {46, "rsvp"},
      {47, "gre"},
      {50, "esp"},
      {51, "ah"},
      {57, "skip"},
      {58, "ipv6-icmp"},
      {59, "ipv6-nonxt"},
      {60, "ipv6-opts"},
      {73, "rspf"},
      {81, "vmtp"},
      {88, "eigrp"},
      {89, "ospf"},
      {93, "ax.25"},
      {94, "ipip"},
      {97, "etherip"},
      {98, "encap"},
      {103, "pim"},
      {108, "ipcomp"},
      {112, "vrrp"},
      {115, "l2tp"},
      {124, "isis"},
      {132, "sctp"},
      {133, "fc"},
      {135, "mobility-header"},
      {136, "udplite"},
      {137, "mpls-in-ip"},
      {138, "manet"},
      {139, "hip"},
      {140, "shim6"},
      {141, "wesp"},
      {142, "rohc"},
      {143, "ethernet"},
  };
  for (const auto& [num, name] : kNames) {
    if (num == p) return name;
  }
  return nullptr;
}

// nft's names for ICMPv6 types (its icmp6_type symbol table).
const char* Icmpv6TypeName(uint32_t t) {
  static const std::pair<uint32_t, const char*> kNames[] = {
      {1, "destination-unreachable"}, {2, "packet-too-big"},        {3, "time-exceeded"},
      {4, "parameter-problem"},       {128, "echo-request"},        {129, "echo-reply"},
      {130, "mld-listener-query"},    {131, "mld-listener-report"}, {132, "mld-listener-done"},
      {133, "nd-router-solicit"},     {134, "nd-router-advert"},    {135, "nd-neighbor-solicit"},
      {136, "nd-neighbor-advert"},    {137, "nd-redirect"},         {138, "router-renumbering"},
      {141, "ind-neighbor-solicit"},  {142, "ind-neighbor-advert"}, {143, "mld2-listener-report"},
  };
  for (const auto& [num, name] : kNames) {
    if (num == t) return name;
  }
  return nullptr;
}

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

enum class Form { kList, kScript };

std::string FieldText(FieldType type, const FieldValue& v, Form form) {
  switch (type) {
    case FieldType::kIpv4Addr:
    case FieldType::kIpv6Addr: {
      if (v.addr_lo == v.addr_hi) return AddrText(v.addr_lo);
      int p = PrefixLength(v.addr_lo, v.addr_hi);
      if (p >= 0) return absl::StrCat(AddrText(v.addr_lo), "/", p);
      return absl::StrCat(AddrText(v.addr_lo), "-", AddrText(v.addr_hi));
    }
    case FieldType::kInetProto: {
      if (v.lo != v.hi) return absl::StrCat(v.lo, "-", v.hi);  // nft prints ranges numerically
      if (form == Form::kScript) {
        // Only names nft's parser reads unambiguously inside a concatenation.
        if (v.lo == 6 || v.lo == 17 || v.lo == 132) return ProtoName(v.lo);
        return absl::StrCat(v.lo);
      }
      const char* name = ProtoName(v.lo);
      return name != nullptr ? name : absl::StrCat(v.lo);
    }
    case FieldType::kInetService:
      if (v.lo != v.hi) return absl::StrCat(v.lo, "-", v.hi);
      return absl::StrCat(v.lo);
  }
  return "";
}

std::string KeyText(const Set& set, const std::vector<FieldValue>& key, Form form) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < key.size(); ++i) {
    // A key with the wrong arity is rendered as far as it goes (errors render bad input too).
    FieldType t = i < set.key.size() ? set.key[i] : FieldType::kInetService;
    parts.push_back(FieldText(t, key[i], form));
  }
  return absl::StrJoin(parts, " . ");
}

std::string ElementText(const Set& set, const Element& e, Form form, bool key_only) {
  std::string out = KeyText(set, e.key, form);
  if (key_only) return out;
  if (!e.comment.empty()) absl::StrAppend(&out, " comment ", Quote(e.comment));
  if (set.vmap && e.verdict.has_value()) absl::StrAppend(&out, " : ", RenderVerdict(*e.verdict));
  return out;
}

// ---- rules ----

const char* FamilyText(Family f) { return f == Family::kV4 ? "ipv4" : "ipv6"; }

// The family an ip/ip6 selector of the lookup depends on, if any.
std::optional<Family> LookupFamily(const LookupMatch& m) {
  for (Selector s : m.key) {
    if (s == Selector::kIpSaddr || s == Selector::kIpDaddr || s == Selector::kCtOrigIpSaddr) {
      return Family::kV4;
    }
    if (s == Selector::kIp6Saddr || s == Selector::kIp6Daddr || s == Selector::kCtOrigIp6Saddr) {
      return Family::kV6;
    }
  }
  return std::nullopt;
}

std::string CtStateText(const CtStateMatch& m) {
  // nft prints the flags in bit order: invalid 1, established 2, related 4, new 8, untracked 64.
  std::vector<const char*> names;
  if (m.invalid) names.push_back("invalid");
  if (m.established) names.push_back("established");
  if (m.related) names.push_back("related");
  if (m.new_) names.push_back("new");
  if (m.untracked) names.push_back("untracked");
  return absl::StrCat("ct state ", absl::StrJoin(names, ","));
}

std::string Icmpv6Text(const Icmpv6TypeMatch& m, Form form) {
  std::string type;
  if (m.lo != m.hi) {
    type = absl::StrCat(m.lo, "-", m.hi);  // ranges print numerically
  } else if (const char* name = Icmpv6TypeName(m.lo); name != nullptr && form == Form::kList) {
    type = name;
  } else {
    type = absl::StrCat(m.lo);
  }
  if (form == Form::kScript) return absl::StrCat("meta l4proto ipv6-icmp icmpv6 type ", type);
  return absl::StrCat("icmpv6 type ", type);
}

// `after_icmpv6`: nft prints the transport header's bytes 2-3 as `icmpv6 checksum` once the rule
// has matched icmpv6 (same bytecode as `th dport`; listing form only).
std::string LookupText(const LookupMatch& m, bool after_icmpv6) {
  std::vector<const char*> sels;
  for (Selector s : m.key) {
    sels.push_back(after_icmpv6 && s == Selector::kThDport ? "icmpv6 checksum" : SelectorText(s));
  }
  std::string out = absl::StrJoin(sels, " . ");
  if (m.vmap) {
    absl::StrAppend(&out, " vmap @", m.set);
  } else {
    absl::StrAppend(&out, m.negate ? " != @" : " @", m.set);
  }
  return out;
}

std::string RuleText(const Rule& rule, Form form, const RenderOptions& options) {
  // In the listing, nft drops a `meta nfproto` comparison when a later ip/ip6 payload or icmpv6
  // match of the same family depends on it: the most recent unconsumed one is consumed.
  std::vector<bool> hidden(rule.matches.size(), false);
  if (form == Form::kList) {
    std::optional<size_t> pending;
    for (size_t i = 0; i < rule.matches.size(); ++i) {
      const Match& m = rule.matches[i];
      std::optional<Family> needs;
      if (std::holds_alternative<NfProtoMatch>(m)) {
        pending = i;
        continue;
      } else if (const auto* lk = std::get_if<LookupMatch>(&m)) {
        needs = LookupFamily(*lk);
      } else if (std::holds_alternative<Icmpv6TypeMatch>(m)) {
        needs = Family::kV6;
      }
      if (!needs.has_value() || !pending.has_value()) continue;
      if (std::get<NfProtoMatch>(rule.matches[*pending]).family == *needs) hidden[*pending] = true;
      pending.reset();
    }
  }
  std::vector<std::string> parts;
  bool after_icmpv6 = false;
  for (size_t i = 0; i < rule.matches.size(); ++i) {
    const Match& m = rule.matches[i];
    if (std::holds_alternative<Icmpv6TypeMatch>(m)) after_icmpv6 = form == Form::kList;
    if (hidden[i]) continue;
    if (const auto* ct = std::get_if<CtStateMatch>(&m)) {
      parts.push_back(CtStateText(*ct));
    } else if (const auto* nf = std::get_if<NfProtoMatch>(&m)) {
      parts.push_back(absl::StrCat("meta nfproto ", FamilyText(nf->family)));
    } else if (const auto* ic = std::get_if<Icmpv6TypeMatch>(&m)) {
      parts.push_back(Icmpv6Text(*ic, form));
    } else if (const auto* lk = std::get_if<LookupMatch>(&m)) {
      parts.push_back(LookupText(*lk, after_icmpv6));
    } else if (const auto* ifn = std::get_if<IfnameMatch>(&m)) {
      parts.push_back(absl::StrCat(ifn->input ? "iifname " : "oifname ", Quote(ifn->name)));
    } else if (const auto* fib = std::get_if<FibLocalMatch>(&m)) {
      parts.push_back(fib->saddr ? "fib saddr type local" : "fib daddr type local");
    } else if (std::holds_alternative<LocalSocketMatch>(m)) {
      parts.push_back("meta skuid >= 0");
    }
  }
  if (rule.limit) {
    std::string limit = absl::StrCat("limit rate ", rule.limit->rate, "/second");
    if (rule.limit->burst != kNftDefaultBurst) {
      absl::StrAppend(&limit, " burst ", rule.limit->burst, " packets");
    }
    parts.push_back(std::move(limit));
  }
  if (rule.counter) {
    if (!options.stateless && (rule.counter_packets != 0 || rule.counter_bytes != 0)) {
      parts.push_back(absl::StrCat("counter packets ", rule.counter_packets, " bytes ",
                                   rule.counter_bytes));
    } else {
      parts.push_back(form == Form::kList && !options.stateless ? "counter packets 0 bytes 0"
                                                                : "counter");
    }
  }
  if (rule.log) {
    std::string log = "log";
    if (!rule.log->prefix.empty()) absl::StrAppend(&log, " prefix ", Quote(rule.log->prefix));
    absl::StrAppend(&log, " group ", rule.log->group);
    if (rule.log->snaplen != 0) absl::StrAppend(&log, " snaplen ", rule.log->snaplen);
    parts.push_back(std::move(log));
  }
  if (rule.verdict.has_value()) parts.push_back(RenderVerdict(*rule.verdict));
  if (!rule.comment.empty()) parts.push_back(absl::StrCat("comment ", Quote(rule.comment)));
  return absl::StrJoin(parts, " ");
}

// ---- chains ----

const char* HookText(Hook h) {
  switch (h) {
    case Hook::kPrerouting:
      return "prerouting";
    case Hook::kInput:
      return "input";
    case Hook::kForward:
      return "forward";
    case Hook::kOutput:
      return "output";
    case Hook::kPostrouting:
      return "postrouting";
  }
  return "";
}

// nft prints a priority within 10 of a standard one by name (raw -300, mangle -150, dstnat -100
// on prerouting only, filter 0, security 50, srcnat 100 on postrouting only), e.g.
// `filter - 10`, and any other priority as a number.
std::string PriorityText(Hook hook, int prio) {
  struct Std {
    const char* name;
    int value;
    std::optional<Hook> only;
  };
  static const Std kStd[] = {
      {"raw", -300, std::nullopt},         {"mangle", -150, std::nullopt},
      {"dstnat", -100, Hook::kPrerouting}, {"filter", 0, std::nullopt},
      {"security", 50, std::nullopt},      {"srcnat", 100, Hook::kPostrouting},
  };
  for (const Std& s : kStd) {
    if (s.only.has_value() && *s.only != hook) continue;
    int off = prio - s.value;
    if (off == 0) return s.name;
    if (off > 0 && off <= 10) return absl::StrCat(s.name, " + ", off);
    if (off < 0 && off >= -10) return absl::StrCat(s.name, " - ", -off);
  }
  return absl::StrCat(prio);
}

// Elements per output line before nft breaks it: nft's calculate_delim() groups two addresses
// of a plain ipv4_addr key, five numbers of inet_proto/inet_service keys, and puts every other
// key type (ipv6_addr, concatenations) on a line of its own.
int ElementsPerLine(const Set& set) {
  if (set.key.size() != 1) return 1;
  switch (set.key[0]) {
    case FieldType::kIpv4Addr:
      return 2;
    case FieldType::kInetProto:
    case FieldType::kInetService:
      return 5;
    case FieldType::kIpv6Addr:
      return 1;
  }
  return 1;
}

// The bytes nft's list sort compares: every field in network order at its natural size.
std::string SortBytes(const Set& set, const Element& e) {
  std::string out;
  for (size_t i = 0; i < e.key.size() && i < set.key.size(); ++i) {
    const FieldValue& v = e.key[i];
    switch (set.key[i]) {
      case FieldType::kIpv4Addr:
        out.append(reinterpret_cast<const char*>(v.addr_lo.bytes.data()), 4);
        break;
      case FieldType::kIpv6Addr:
        out.append(reinterpret_cast<const char*>(v.addr_lo.bytes.data()), 16);
        break;
      case FieldType::kInetProto:
        out.push_back(static_cast<char>(v.lo & 0xff));
        break;
      case FieldType::kInetService:
        out.push_back(static_cast<char>((v.lo >> 8) & 0xff));
        out.push_back(static_cast<char>(v.lo & 0xff));
        break;
    }
  }
  // nft reads a concatenation's bytes as one host-endian (little-endian) number, so the last
  // byte weighs most; a single field is compared as its network-order number.
  if (set.key.size() > 1) std::reverse(out.begin(), out.end());
  return out;
}

// Elements in the order `nft list` prints them (see RenderProgram's contract).
std::vector<const Element*> ListingOrder(const Set& set, const std::vector<Element>& elements) {
  std::vector<const Element*> out;
  for (const Element& e : elements) out.push_back(&e);
  if (set.interval) return out;
  std::vector<std::pair<std::string, const Element*>> keyed;
  for (const Element* e : out) keyed.emplace_back(SortBytes(set, *e), e);
  // std::string compares bytes as unsigned char (char_traits<char>::lt).
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  out.clear();
  for (const auto& [bytes, e] : keyed) out.push_back(e);
  return out;
}

void AppendSet(const Set& set, const std::vector<Element>* elements, std::string* out) {
  absl::StrAppend(out, "\t", set.vmap ? "map " : "set ", set.name, " {\n");
  absl::StrAppend(out, "\t\ttype ", RenderKeyType(set.key), set.vmap ? " : verdict" : "", "\n");
  if (set.interval) absl::StrAppend(out, "\t\tflags interval\n");
  if (!set.comment.empty()) absl::StrAppend(out, "\t\tcomment ", Quote(set.comment), "\n");
  if (elements != nullptr && !elements->empty()) {
    absl::StrAppend(out, "\t\telements = { ");
    const int per_line = ElementsPerLine(set);
    int count = 0;
    bool first = true;
    for (const Element* e : ListingOrder(set, *elements)) {
      if (!first) {
        if (count < per_line) {
          absl::StrAppend(out, ", ");
        } else {
          absl::StrAppend(out, ",\n\t\t\t     ");
          count = 0;
        }
      }
      first = false;
      absl::StrAppend(out, ElementText(set, *e, Form::kList, false));
      ++count;
    }
    absl::StrAppend(out, " }\n");
  }
  absl::StrAppend(out, "\t}\n");
}

void AppendChain(const Chain& chain, const RenderOptions& options, std::string* out) {
  absl::StrAppend(out, "\tchain ", chain.name, " {\n");
  if (!chain.comment.empty()) absl::StrAppend(out, "\t\tcomment ", Quote(chain.comment), "\n");
  if (chain.base.has_value()) {
    absl::StrAppend(out, "\t\ttype filter hook ", HookText(chain.base->hook), " priority ",
                    PriorityText(chain.base->hook, chain.base->priority), "; policy ",
                    chain.base->policy_drop ? "drop" : "accept", ";\n");
  }
  for (const Rule& r : chain.rules) {
    absl::StrAppend(out, "\t\t", RuleText(r, Form::kList, options), "\n");
  }
  absl::StrAppend(out, "\t}\n");
}

// ---- script form ----

const char* VerbText(Verb v) {
  switch (v) {
    case Verb::kAdd:
      return "add";
    case Verb::kCreate:
      return "create";
    case Verb::kFlush:
      return "flush";
    case Verb::kDelete:
      return "delete";
    case Verb::kDestroy:
      return "destroy";
  }
  return "";
}

std::string ChainSpecScript(const Chain& c) {
  std::vector<std::string> parts;
  if (c.base.has_value()) {
    parts.push_back(absl::StrCat("type filter hook ", HookText(c.base->hook), " priority ",
                                 c.base->priority, ";"));
    parts.push_back(absl::StrCat("policy ", c.base->policy_drop ? "drop" : "accept", ";"));
  }
  if (!c.comment.empty()) parts.push_back(absl::StrCat("comment ", Quote(c.comment), ";"));
  if (parts.empty()) return "";
  return absl::StrCat(" { ", absl::StrJoin(parts, " "), " }");
}

std::string SetSpecScript(const Set& s) {
  std::string out = absl::StrCat(" { type ", RenderKeyType(s.key), s.vmap ? " : verdict" : "", ";");
  if (s.interval) absl::StrAppend(&out, " flags interval;");
  if (!s.comment.empty()) absl::StrAppend(&out, " comment ", Quote(s.comment), ";");
  absl::StrAppend(&out, " }");
  return out;
}

std::string CommandScript(const std::string& table, const Command& c) {
  const char* verb = VerbText(c.verb);
  switch (c.kind) {
    case ObjectKind::kTable: {
      std::string out = absl::StrCat(verb, " table inet ", table);
      if ((c.verb == Verb::kAdd || c.verb == Verb::kCreate) && !c.comment.empty()) {
        absl::StrAppend(&out, " { comment ", Quote(c.comment), "; }");
      }
      return out;
    }
    case ObjectKind::kChain: {
      std::string out = absl::StrCat(verb, " chain inet ", table, " ", c.chain.name);
      if (c.verb == Verb::kAdd || c.verb == Verb::kCreate)
        absl::StrAppend(&out, ChainSpecScript(c.chain));
      return out;
    }
    case ObjectKind::kRule:
      return absl::StrCat(verb, " rule inet ", table, " ", c.chain.name, " ",
                          RuleText(c.rule, Form::kScript, RenderOptions{}));
    case ObjectKind::kSet: {
      std::string out =
          absl::StrCat(verb, c.set.vmap ? " map inet " : " set inet ", table, " ", c.set.name);
      if (c.verb == Verb::kAdd || c.verb == Verb::kCreate)
        absl::StrAppend(&out, SetSpecScript(c.set));
      return out;
    }
    case ObjectKind::kElement: {
      if (c.elements.empty()) return "";
      const bool key_only = c.verb == Verb::kDelete || c.verb == Verb::kDestroy;
      std::vector<std::string> elems;
      for (const Element& e : c.elements) {
        elems.push_back(ElementText(c.set, e, Form::kScript, key_only));
      }
      return absl::StrCat(verb, " element inet ", table, " ", c.set.name, " { ",
                          absl::StrJoin(elems, ", "), " }");
    }
  }
  return "";
}

// A set definition for element commands that name their set only: an address where the value
// is an address of IPv6 or a non-zero IPv4 one, a number otherwise; a map if any element has a
// verdict.
Set GuessSet(const std::string& name, const std::vector<Element>& elements) {
  Set s;
  s.name = name;
  if (elements.empty()) return s;
  const Element& first = elements.front();
  for (size_t i = 0; i < first.key.size(); ++i) {
    FieldType t = FieldType::kInetService;
    for (const Element& e : elements) {
      if (i >= e.key.size()) continue;
      const FieldValue& v = e.key[i];
      if (v.addr_lo.family == Family::kV6 || v.addr_hi.family == Family::kV6) {
        t = FieldType::kIpv6Addr;
        break;
      }
      if (v.addr_lo != IpAddr{} || v.addr_hi != IpAddr{}) t = FieldType::kIpv4Addr;
    }
    s.key.push_back(t);
  }
  for (const Element& e : elements) s.vmap = s.vmap || e.verdict.has_value();
  return s;
}

}  // namespace

std::string RenderVerdict(const Verdict& v) {
  switch (v.kind) {
    case Verdict::Kind::kAccept:
      return "accept";
    case Verdict::Kind::kDrop:
      return "drop";
    case Verdict::Kind::kReturn:
      return "return";
    case Verdict::Kind::kJump:
      return absl::StrCat("jump ", v.chain);
    case Verdict::Kind::kGoto:
      return absl::StrCat("goto ", v.chain);
  }
  return "";
}

std::string RenderKeyType(const std::vector<FieldType>& key) {
  std::vector<const char*> names;
  for (FieldType t : key) names.push_back(FieldTypeName(t));
  return absl::StrJoin(names, " . ");
}

std::string RenderRule(const Rule& rule) { return RenderRule(rule, RenderOptions{}); }

std::string RenderRule(const Rule& rule, const RenderOptions& options) {
  return RuleText(rule, Form::kList, options);
}

std::string RenderElement(const Set& set, const Element& element) {
  return ElementText(set, element, Form::kList, false);
}

std::string RenderProgram(const Program& program) {
  return RenderProgram(program, RenderOptions{});
}

std::string RenderProgram(const Program& program, const RenderOptions& options) {
  std::string out = absl::StrCat("table inet ", program.table, " {\n");
  if (!program.comment.empty()) absl::StrAppend(&out, "\tcomment ", Quote(program.comment), "\n");
  const char* delim = "";
  for (const auto& [name, set] : program.sets) {
    absl::StrAppend(&out, delim);
    auto it = program.elements.find(name);
    AppendSet(set, it == program.elements.end() ? nullptr : &it->second, &out);
    delim = "\n";
  }
  for (const auto& [name, chain] : program.chains) {
    absl::StrAppend(&out, delim);
    AppendChain(chain, options, &out);
    delim = "\n";
  }
  absl::StrAppend(&out, "}\n");
  return out;
}

std::string Transaction::ToNftText() const {
  std::string out;
  std::map<std::string, Set> defined;  // set definitions seen so far in this transaction
  for (const Command& c : commands_) {
    if (c.kind == ObjectKind::kSet && (c.verb == Verb::kAdd || c.verb == Verb::kCreate)) {
      defined[c.set.name] = c.set;
    }
    std::string line;
    if (c.kind == ObjectKind::kElement && c.set.key.empty()) {
      Command copy = c;
      auto it = defined.find(c.set.name);
      copy.set = it != defined.end() ? it->second : GuessSet(c.set.name, c.elements);
      line = CommandScript(table_, copy);
    } else if (c.kind == ObjectKind::kSet && c.set.key.empty() && defined.count(c.set.name)) {
      Command copy = c;
      copy.set.vmap = defined[c.set.name].vmap;
      line = CommandScript(table_, copy);
    } else {
      line = CommandScript(table_, c);
    }
    if (line.empty()) continue;
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string DescribeCommand(const std::string& table, const Command& c) {
  const char* verb = VerbText(c.verb);
  switch (c.kind) {
    case ObjectKind::kTable:
      return absl::StrCat(verb, " table inet ", table);
    case ObjectKind::kChain:
      return absl::StrCat(verb, " chain ", c.chain.name);
    case ObjectKind::kRule:
      return absl::StrCat(verb, c.verb == Verb::kAdd ? " rule to chain " : " rule in chain ",
                          c.chain.name);
    case ObjectKind::kSet:
      return absl::StrCat(verb, c.set.vmap ? " map " : " set ", c.set.name);
    case ObjectKind::kElement: {
      const char* prep = " element in set ";
      if (c.verb == Verb::kAdd) prep = " element to set ";
      if (c.verb == Verb::kDelete || c.verb == Verb::kDestroy) prep = " element from set ";
      return absl::StrCat(verb, prep, c.set.name);
    }
  }
  return verb;
}

}  // namespace netpol::nft
