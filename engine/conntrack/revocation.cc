#include "engine/conntrack/revocation.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/compiler/tracer.h"

namespace netpol::conntrack {
namespace {

using nft::Command;
using nft::Element;
using nft::ObjectKind;
using nft::Selector;
using nft::Verb;
using nft::Verdict;

IpAddr Lowest(Family f) {
  IpAddr a;
  a.family = f;
  return a;
}

IpAddr Highest(Family f) {
  IpAddr a;
  a.family = f;
  for (int i = 0; i < a.size(); ++i) a.bytes[i] = 0xff;
  return a;
}

bool IsAddrSelector(Selector s) {
  return s == Selector::kIpSaddr || s == Selector::kIpDaddr || s == Selector::kIp6Saddr ||
         s == Selector::kIp6Daddr;
}
bool IsSourceSelector(Selector s) { return s == Selector::kIpSaddr || s == Selector::kIp6Saddr; }
Family SelectorFamily(Selector s) {
  return (s == Selector::kIpSaddr || s == Selector::kIpDaddr) ? Family::kV4 : Family::kV6;
}

const char* ProtoName(uint8_t p) {
  switch (p) {
    case 1:
      return "icmp";
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 58:
      return "icmpv6";
    case 132:
      return "sctp";
    case 136:
      return "udplite";
    case 33:
      return "dccp";
  }
  return nullptr;
}

std::string ProtoText(uint8_t p) {
  const char* name = ProtoName(p);
  return name != nullptr ? std::string(name) : absl::StrCat(p);
}

std::string Endpoint(const IpAddr& a, uint16_t port, bool with_port) {
  if (!with_port) return a.ToString();
  if (a.family == Family::kV6) return absl::StrCat("[", a.ToString(), "]:", port);
  return absl::StrCat(a.ToString(), ":", port);
}

std::string RangeText(const IpAddr& lo, const IpAddr& hi) {
  if (lo == Lowest(lo.family) && hi == Highest(hi.family)) return "any";
  return IpRange{lo, hi}.ToString();
}

// Where a verdict map sends packets: the address selector of its lookup.
struct Dispatch {
  bool source = false;  // keyed by source address (egress of the local pod) or destination
};

// An allow: a lookup of set `set` in chain `chain`, in a rule that returns or accepts.
struct AllowUse {
  std::string chain;
  std::vector<Selector> key;
  bool base = false;
};

// A pod address dispatched into a chain.
struct Dispatched {
  bool source = false;
  IpAddr addr;
  std::string comment;
};

class Planner {
 public:
  explicit Planner(const nft::Program& before) : before_(before) { Index(); }

  void Apply(const Command& c) {
    switch (c.kind) {
      case ObjectKind::kElement:
        if (c.verb == Verb::kDelete || c.verb == Verb::kDestroy) {
          for (const Element& e : c.elements) ElementGone(c.set.name, e, "deleted");
        } else if (c.verb == Verb::kAdd || c.verb == Verb::kCreate) {
          for (const Element& e : c.elements) ElementAdded(c.set.name, e);
        }
        break;
      case ObjectKind::kSet:
        if (c.verb == Verb::kFlush || c.verb == Verb::kDelete || c.verb == Verb::kDestroy) {
          AllElementsGone(c.set.name, c.verb == Verb::kFlush ? "flushed" : "set deleted");
        }
        break;
      case ObjectKind::kChain:
        if (c.verb == Verb::kFlush || c.verb == Verb::kDelete || c.verb == Verb::kDestroy) {
          ChainRulesGone(c.chain.name, c.verb == Verb::kFlush ? "chain flushed" : "chain deleted");
        }
        break;
      case ObjectKind::kTable:
        if (c.verb == Verb::kFlush || c.verb == Verb::kDelete || c.verb == Verb::kDestroy) {
          const char* why = c.verb == Verb::kFlush ? "table flushed" : "table deleted";
          for (const auto& [chain, pods] : dispatched_) ChainRulesGone(chain, why);
          if (c.verb != Verb::kFlush) {
            for (const auto& [set, unused] : uses_) AllElementsGone(set, why);
          }
        }
        break;
      case ObjectKind::kRule:
        break;
    }
  }

  std::vector<FlowFilter> Take() {
    std::sort(out_.begin(), out_.end());
    out_.erase(std::unique(out_.begin(), out_.end()), out_.end());
    return std::move(out_);
  }

 private:
  void Index() {
    for (const auto& [name, chain] : before_.chains) {
      for (const nft::Rule& rule : chain.rules) {
        for (const nft::Match& m : rule.matches) {
          const auto* lookup = std::get_if<nft::LookupMatch>(&m);
          if (lookup == nullptr) continue;
          auto set = before_.sets.find(lookup->set);
          if (set == before_.sets.end()) continue;
          if (lookup->vmap) {
            if (set->second.vmap && lookup->key.size() == 1 && IsAddrSelector(lookup->key[0])) {
              dispatch_[lookup->set] = Dispatch{IsSourceSelector(lookup->key[0])};
            }
            continue;
          }
          if (lookup->negate || !rule.verdict) continue;
          if (rule.verdict->kind != Verdict::Kind::kReturn &&
              rule.verdict->kind != Verdict::Kind::kAccept) {
            continue;
          }
          uses_[lookup->set].push_back(AllowUse{name, lookup->key, chain.base.has_value()});
        }
      }
    }
    for (const auto& [map, d] : dispatch_) {
      auto els = before_.elements.find(map);
      if (els == before_.elements.end()) continue;
      for (const Element& e : els->second) {
        if (e.key.size() != 1 || !e.verdict) continue;
        if (e.verdict->kind != Verdict::Kind::kJump && e.verdict->kind != Verdict::Kind::kGoto) {
          continue;
        }
        dispatched_[e.verdict->chain].push_back(Dispatched{d.source, e.key[0].addr_lo, e.comment});
      }
    }
  }

  static std::string PodText(const Dispatched& p) {
    return absl::StrCat(p.source ? "egress of " : "ingress of ", p.addr.ToString(),
                        p.comment.empty() ? "" : " ", p.comment);
  }

  void AnyOf(const Dispatched& p, const std::string& why) {
    FlowFilter f = p.source ? FlowFilter::AnyFrom(p.addr) : FlowFilter::AnyTo(p.addr);
    f.reason = absl::StrCat(why, " (", PodText(p), ")");
    out_.push_back(std::move(f));
  }

  // An element of `set` admitted flows before the transaction and does not after it.
  void ElementGone(const std::string& set, const Element& e, const char* verb) {
    auto uses = uses_.find(set);
    if (uses == uses_.end()) return;
    for (const AllowUse& use : uses->second) {
      if (use.key.size() != e.key.size()) continue;
      // The element's own constraints; family unknown until an address field or a pod fixes it.
      std::optional<Family> family;
      bool consistent = true;
      FlowFilter f;
      bool src_set = false, dst_set = false;
      for (size_t i = 0; i < use.key.size(); ++i) {
        const Selector s = use.key[i];
        const nft::FieldValue& v = e.key[i];
        if (IsAddrSelector(s)) {
          const Family fam = SelectorFamily(s);
          if (family && *family != fam) consistent = false;
          if (v.addr_lo.family != fam || v.addr_hi.family != fam) consistent = false;
          family = fam;
          if (IsSourceSelector(s)) {
            f.src_lo = v.addr_lo, f.src_hi = v.addr_hi, src_set = true;
          } else {
            f.dst_lo = v.addr_lo, f.dst_hi = v.addr_hi, dst_set = true;
          }
        } else if (s == Selector::kL4Proto) {
          f.proto_lo = static_cast<uint8_t>(std::min<uint32_t>(v.lo, 255));
          f.proto_hi = static_cast<uint8_t>(std::min<uint32_t>(v.hi, 255));
        } else if (s == Selector::kThDport) {
          f.dport_lo = static_cast<uint16_t>(std::min<uint32_t>(v.lo, 65535));
          f.dport_hi = static_cast<uint16_t>(std::min<uint32_t>(v.hi, 65535));
        }
      }
      if (!consistent) continue;
      const std::string what =
          absl::StrCat(set, ": ", verb, " ", nft::RenderElement(before_.sets.at(set), e));
      // Unconstrained address sides cover the whole family.
      auto emit = [&](FlowFilter g, Family fam, bool has_src, bool has_dst,
                      const std::string& reason) {
        g.family = fam;
        if (!has_src) g.src_lo = Lowest(fam), g.src_hi = Highest(fam);
        if (!has_dst) g.dst_lo = Lowest(fam), g.dst_hi = Highest(fam);
        g.reason = reason;
        out_.push_back(std::move(g));
      };
      if (use.base) {
        if (family) {
          emit(f, *family, src_set, dst_set, what);
        } else {
          emit(f, Family::kV4, src_set, dst_set, what);
          emit(f, Family::kV6, src_set, dst_set, what);
        }
        continue;
      }
      auto pods = dispatched_.find(use.chain);
      if (pods == dispatched_.end()) continue;
      for (const Dispatched& p : pods->second) {
        if (family && *family != p.addr.family) continue;
        FlowFilter g = f;
        const bool had = p.source ? src_set : dst_set;
        if (had) {
          // The element constrains the pod's own side too: keep it only if it covers the pod.
          const IpAddr& lo = p.source ? g.src_lo : g.dst_lo;
          const IpAddr& hi = p.source ? g.src_hi : g.dst_hi;
          if (!(lo <= p.addr && p.addr <= hi)) continue;
        }
        if (p.source) {
          g.src_lo = g.src_hi = p.addr;
        } else {
          g.dst_lo = g.dst_hi = p.addr;
        }
        emit(g, p.addr.family, src_set || p.source, dst_set || !p.source,
             absl::StrCat(what, " (", PodText(p), ")"));
      }
    }
  }

  void AllElementsGone(const std::string& set, const char* why) {
    if (uses_.find(set) == uses_.end()) return;
    if (!gone_sets_.insert(set).second) return;  // each set's old elements once
    auto els = before_.elements.find(set);
    if (els == before_.elements.end()) return;
    for (const Element& e : els->second) ElementGone(set, e, why);
  }

  void ChainRulesGone(const std::string& chain, const char* why) {
    if (!gone_chains_.insert(chain).second) return;
    auto pods = dispatched_.find(chain);
    if (pods == dispatched_.end()) return;
    for (const Dispatched& p : pods->second) AnyOf(p, absl::StrCat(chain, ": ", why));
  }

  // A dispatch element added: a pod newly isolated, or sent to another chain.
  void ElementAdded(const std::string& map, const Element& e) {
    auto d = dispatch_.find(map);
    if (d == dispatch_.end() || e.key.size() != 1) return;
    std::optional<Verdict> old;
    auto els = before_.elements.find(map);
    if (els != before_.elements.end()) {
      for (const Element& o : els->second) {
        if (o.key == e.key) old = o.verdict;
      }
    }
    if (old && e.verdict && *old == *e.verdict) return;
    const Dispatched p{d->second.source, e.key[0].addr_lo, e.comment};
    AnyOf(p, absl::StrCat(map, old ? ": re-pointed to " : ": newly isolated, ",
                          e.verdict ? nft::RenderVerdict(*e.verdict) : std::string("-")));
  }

  const nft::Program& before_;
  std::map<std::string, Dispatch> dispatch_;               // verdict map -> its lookup
  std::map<std::string, std::vector<AllowUse>> uses_;      // set -> allow rules using it
  std::map<std::string, std::vector<Dispatched>> dispatched_;  // chain -> pods sent there
  std::set<std::string> gone_sets_, gone_chains_;
  std::vector<FlowFilter> out_;
};

}  // namespace

std::string Flow::ToString() const {
  return absl::StrCat(ProtoText(l4proto), " ", Endpoint(src, sport, has_ports), " -> ",
                      Endpoint(dst, dport, has_ports));
}

FlowFilter FlowFilter::Any(const IpAddr& src, const IpAddr& dst) {
  FlowFilter f;
  f.family = src.family;
  f.src_lo = f.src_hi = src;
  f.dst_lo = f.dst_hi = dst;
  return f;
}

FlowFilter FlowFilter::AnyFrom(const IpAddr& p) {
  FlowFilter f;
  f.family = p.family;
  f.src_lo = f.src_hi = p;
  f.dst_lo = Lowest(p.family);
  f.dst_hi = Highest(p.family);
  return f;
}

FlowFilter FlowFilter::AnyTo(const IpAddr& p) {
  FlowFilter f;
  f.family = p.family;
  f.src_lo = Lowest(p.family);
  f.src_hi = Highest(p.family);
  f.dst_lo = f.dst_hi = p;
  return f;
}

bool FlowFilter::Matches(const Flow& flow) const {
  if (flow.family != family || flow.src.family != family || flow.dst.family != family) {
    return false;
  }
  if (flow.src < src_lo || src_hi < flow.src) return false;
  if (flow.dst < dst_lo || dst_hi < flow.dst) return false;
  if (flow.l4proto < proto_lo || flow.l4proto > proto_hi) return false;
  if (dport_lo == 0 && dport_hi == 65535) return true;
  return flow.has_ports && flow.dport >= dport_lo && flow.dport <= dport_hi;
}

std::string FlowFilter::ToString() const {
  std::string out = absl::StrCat(RangeText(src_lo, src_hi), " -> ", RangeText(dst_lo, dst_hi));
  if (proto_lo == 0 && proto_hi == 255) {
    absl::StrAppend(&out, " any");
  } else if (proto_lo == proto_hi) {
    absl::StrAppend(&out, " ", ProtoText(proto_lo));
  } else {
    absl::StrAppend(&out, " proto ", proto_lo, "-", proto_hi);
  }
  if (dport_lo != 0 || dport_hi != 65535) {
    absl::StrAppend(&out, " dport ", dport_lo);
    if (dport_hi != dport_lo) absl::StrAppend(&out, "-", dport_hi);
  }
  return out;
}

namespace {
auto Tie(const FlowFilter& f) {
  return std::tie(f.family, f.src_lo, f.src_hi, f.dst_lo, f.dst_hi, f.proto_lo, f.proto_hi,
                  f.dport_lo, f.dport_hi);
}
}  // namespace

bool operator==(const FlowFilter& a, const FlowFilter& b) { return Tie(a) == Tie(b); }
bool operator<(const FlowFilter& a, const FlowFilter& b) { return Tie(a) < Tie(b); }

std::vector<FlowFilter> RevocationFilters(const nft::Program& before, const nft::Transaction& tx) {
  if (tx.table() != before.table) return {};
  Planner planner(before);
  for (const Command& c : tx.commands()) planner.Apply(c);
  return planner.Take();
}

bool StillAllowed(const nft::Program& after, const Flow& flow) {
  compiler::Packet packet;
  packet.src = flow.src;
  packet.dst = flow.dst;
  packet.l4proto = flow.l4proto;
  packet.dport = flow.has_ports ? flow.dport : 0;
  if (flow.l4proto == 58) packet.icmpv6_type = flow.icmp_type;
  packet.ct = compiler::CtState::kNew;
  for (const auto& [name, chain] : after.chains) {
    if (!chain.base || chain.base->hook != nft::Hook::kForward) continue;
    absl::StatusOr<compiler::TraceResult> r = compiler::Trace(after, name, packet, false);
    if (!r.ok()) return true;  // cannot judge: keep
    if (!r->accepted) return false;
  }
  return true;
}

}  // namespace netpol::conntrack
