// Small helpers over the program value types.
#include "engine/nft/program.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

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

absl::Status ValidateObjectName(const char* what, const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(what, " name \"", name.substr(0, 80),
                                                   "\": length must be 1..", kMaxNameLength));
  }
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!alpha(name[0])) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " name \"", name, "\": must start with a letter"));
  }
  for (char c : name) {
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '_' && c != '-' && c != '.') {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " name \"", name, "\": only letters, digits, '_', '-', '.'"));
    }
  }
  for (const std::string& kw : NftKeywords()) {
    if (name == kw) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " name \"", name, "\": an nft keyword, which nft's parser cannot read as a name"));
    }
  }
  return absl::OkStatus();
}

Program Canonical(Program program) {
  Canonicalize(&program);
  return program;
}

}  // namespace netpol::nft
