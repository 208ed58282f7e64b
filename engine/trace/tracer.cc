#include "engine/trace/tracer.h"

#include <variant>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::trace {
namespace {

using nft::FieldType;
using nft::Selector;
using nft::Verdict;

// The kernel's NFT_JUMP_STACK_SIZE.
constexpr size_t kMaxJumpDepth = 16;

// A loaded packet field: an address or a number.
struct Value {
  bool is_addr = false;
  IpAddr addr;
  uint32_t num = 0;
};

// Loads `sel` from `p`; nullopt when the packet has no such field (an ip
// selector on an IPv6 packet: nft's implied `meta nfproto` check fails and the
// rule does not match).
std::optional<Value> Load(Selector sel, const Packet& p) {
  Value v;
  switch (sel) {
    case Selector::kIpSaddr:
    case Selector::kIpDaddr:
    case Selector::kIp6Saddr:
    case Selector::kIp6Daddr: {
      const bool v4 = sel == Selector::kIpSaddr || sel == Selector::kIpDaddr;
      if ((p.src.family == Family::kV4) != v4) return std::nullopt;
      v.is_addr = true;
      v.addr = (sel == Selector::kIpSaddr || sel == Selector::kIp6Saddr) ? p.src : p.dst;
      return v;
    }
    case Selector::kL4Proto:
      v.num = p.l4proto;
      return v;
    case Selector::kThDport:
      v.num = p.dport;
      return v;
    case Selector::kCtOrigIpSaddr:
    case Selector::kCtOrigIp6Saddr:
      if ((p.src.family == Family::kV4) != (sel == Selector::kCtOrigIpSaddr)) return std::nullopt;
      v.is_addr = true;
      v.addr = p.orig_src.value_or(p.src);
      return v;
  }
  return std::nullopt;
}

bool FieldMatches(FieldType type, bool interval, const nft::FieldValue& f, const Value& v) {
  const bool addr_type = type == FieldType::kIpv4Addr || type == FieldType::kIpv6Addr;
  if (addr_type != v.is_addr) return false;
  if (addr_type) {
    if (v.addr.family != f.addr_lo.family) return false;
    return interval ? (f.addr_lo <= v.addr && v.addr <= f.addr_hi) : f.addr_lo == v.addr;
  }
  return interval ? (f.lo <= v.num && v.num <= f.hi) : f.lo == v.num;
}

struct LookupOutcome {
  bool matched = false;
  std::optional<Verdict> verdict;  // vmap hit
};

absl::StatusOr<LookupOutcome> EvalLookup(const nft::Program& prog, const nft::LookupMatch& m,
                                         const Packet& p) {
  auto set_it = prog.sets.find(m.set);
  if (set_it == prog.sets.end()) return absl::NotFoundError(absl::StrCat("set ", m.set));
  const nft::Set& set = set_it->second;
  if (set.vmap != m.vmap) {
    return absl::InvalidArgumentError(absl::StrCat("lookup of ", m.set, ": vmap mismatch"));
  }
  if (set.key.size() != m.key.size()) {
    return absl::InvalidArgumentError(absl::StrCat("lookup of ", m.set, ": key has ", m.key.size(),
                                                   " fields, set has ", set.key.size()));
  }
  std::vector<Value> key;
  for (size_t i = 0; i < m.key.size(); ++i) {
    if (nft::SelectorType(m.key[i]) != set.key[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat("lookup of ", m.set, ": field ", i, " type mismatch"));
    }
    std::optional<Value> v = Load(m.key[i], p);
    if (!v) return LookupOutcome{};
    key.push_back(*v);
  }
  LookupOutcome out;
  auto els = prog.elements.find(m.set);
  if (els != prog.elements.end()) {
    for (const nft::Element& e : els->second) {
      if (e.key.size() != key.size()) {
        return absl::InvalidArgumentError(absl::StrCat("set ", m.set, ": malformed element"));
      }
      bool all = true;
      for (size_t i = 0; i < key.size() && all; ++i) {
        all = FieldMatches(set.key[i], set.interval, e.key[i], key[i]);
      }
      if (!all) continue;
      out.matched = true;
      out.verdict = e.verdict;
      break;
    }
  }
  if (m.negate) out.matched = !out.matched;
  return out;
}

}  // namespace

std::string TraceResult::ToString() const {
  return absl::StrCat(absl::StrJoin(steps, "\n"), "\n=> ", accepted ? "accept" : "drop");
}

absl::StatusOr<TraceResult> Trace(const nft::Program& program, const std::string& chain,
                                  const Packet& packet, bool explain) {
  auto base_it = program.chains.find(chain);
  if (base_it == program.chains.end()) return absl::NotFoundError(absl::StrCat("chain ", chain));
  const nft::Chain& base = base_it->second;
  if (!base.base) return absl::InvalidArgumentError(absl::StrCat(chain, " is not a base chain"));
  if (packet.src.family != packet.dst.family) {
    return absl::InvalidArgumentError("packet source and destination of different families");
  }

  TraceResult result;
  struct Frame {
    const nft::Chain* chain;
    size_t next;
  };
  std::vector<Frame> stack = {{&base, 0}};
  auto finish = [&](bool accepted, const std::string& why) {
    result.accepted = accepted;
    result.steps.push_back(why);
    return result;
  };
  while (true) {
    Frame& top = stack.back();
    if (top.next >= top.chain->rules.size()) {
      if (stack.size() == 1) {
        return finish(!base.base->policy_drop,
                      absl::StrCat(chain, ": end of chain, policy ",
                                   base.base->policy_drop ? "drop" : "accept"));
      }
      stack.pop_back();
      continue;
    }
    const size_t index = top.next++;
    const nft::Rule& rule = top.chain->rules[index];
    bool matched = true;
    std::optional<Verdict> verdict = rule.verdict;
    std::string what;
    for (const nft::Match& match : rule.matches) {
      if (const auto* ct = std::get_if<nft::CtStateMatch>(&match)) {
        switch (packet.ct) {
          case CtState::kNew:
            matched = ct->new_;
            break;
          case CtState::kEstablished:
            matched = ct->established;
            break;
          case CtState::kRelated:
            matched = ct->related;
            break;
          case CtState::kInvalid:
            matched = ct->invalid;
            break;
          case CtState::kUntracked:
            matched = ct->untracked;
            break;
        }
        what = "ct state";
      } else if (const auto* nf = std::get_if<nft::NfProtoMatch>(&match)) {
        matched = packet.src.family == nf->family;
        what = "meta nfproto";
      } else if (const auto* icmp = std::get_if<nft::Icmpv6TypeMatch>(&match)) {
        matched = packet.src.family == Family::kV6 && packet.l4proto == 58 && packet.icmpv6_type &&
                  icmp->lo <= *packet.icmpv6_type && *packet.icmpv6_type <= icmp->hi;
        what = "icmpv6 type";
      } else if (const auto* lookup = std::get_if<nft::LookupMatch>(&match)) {
        absl::StatusOr<LookupOutcome> out = EvalLookup(program, *lookup, packet);
        if (!out.ok()) {
          return absl::Status(out.status().code(), absl::StrCat(top.chain->name, "[", index,
                                                                "]: ", out.status().message()));
        }
        if (explain) {
          std::vector<std::string> sels;
          for (Selector s : lookup->key) sels.push_back(nft::SelectorText(s));
          what = absl::StrCat(absl::StrJoin(sels, " . "),
                              lookup->vmap ? " vmap @" : (lookup->negate ? " != @" : " @"),
                              lookup->set);
        }
        if (lookup->vmap) {
          matched = out->verdict.has_value();
          verdict = out->verdict;
        } else {
          matched = out->matched;
        }
      } else if (const auto* fib = std::get_if<nft::FibLocalMatch>(&match)) {
        matched = fib->saddr ? packet.src_local : packet.dst_local;
        what = fib->saddr ? "fib saddr type local" : "fib daddr type local";
      } else if (std::holds_alternative<nft::LocalSocketMatch>(match)) {
        matched = packet.local_socket;
        what = "meta skuid";
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            top.chain->name, "[", index, "]: interface matches are not traceable"));
      }
      if (!matched) break;
    }
    if (!matched) continue;
    if (explain) {
      result.steps.push_back(absl::StrCat(top.chain->name, "[", index, "] ",
                                          what.empty() ? "" : what + " ", "-> ",
                                          verdict ? nft::RenderVerdict(*verdict) : "continue",
                                          rule.comment.empty() ? "" : " (" + rule.comment + ")"));
    }
    if (!verdict) continue;
    switch (verdict->kind) {
      case Verdict::Kind::kAccept:
        return finish(true, "accept");
      case Verdict::Kind::kDrop:
        return finish(false, "drop");
      case Verdict::Kind::kReturn:
        if (stack.size() == 1) {
          return finish(!base.base->policy_drop, absl::StrCat(chain, ": return from base chain"));
        }
        stack.pop_back();
        break;
      case Verdict::Kind::kJump:
      case Verdict::Kind::kGoto: {
        auto it = program.chains.find(verdict->chain);
        if (it == program.chains.end()) {
          return absl::NotFoundError(
              absl::StrCat(top.chain->name, "[", index, "]: chain ", verdict->chain));
        }
        if (it->second.base) {
          return absl::InvalidArgumentError(
              absl::StrCat(top.chain->name, "[", index, "]: jump to base chain ", verdict->chain));
        }
        if (verdict->kind == Verdict::Kind::kGoto) {
          // A goto leaves no return address: the target's end resumes the
          // caller's caller, or applies the policy when the goto came from the
          // base chain.
          if (stack.size() > 1) {
            stack.pop_back();
          } else {
            stack.back().next = base.rules.size();
          }
        }
        if (stack.size() > kMaxJumpDepth) {
          return absl::FailedPreconditionError(absl::StrCat("jump depth exceeds ", kMaxJumpDepth));
        }
        stack.push_back({&it->second, 0});
        break;
      }
    }
  }
}

}  // namespace netpol::trace
