#include "engine/conntrack/revocation.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/trace/tracer.h"

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

}  // namespace

class PlanBuilder {
 public:
  explicit PlanBuilder(const nft::Program& before) : before_(before) { Index(); }

  void Apply(const Command& c) {
    switch (c.kind) {
      case ObjectKind::kElement:
        if (c.verb == Verb::kDelete || c.verb == Verb::kDestroy) {
          for (const Element& e : c.elements) {
            ElementGone(c.set.name, e, "deleted");
            removed_[c.set.name].insert(e.key);
          }
        } else if (c.verb == Verb::kAdd || c.verb == Verb::kCreate) {
          for (const Element& e : c.elements) {
            ElementAdded(c.set.name, e);
            added_[c.set.name].insert(e.key);
          }
        }
        break;
      case ObjectKind::kSet:
        if (c.verb == Verb::kFlush) AllElementsGone(c.set.name, "flushed");
        // A deleted set's users are chains flushed or deleted by the same transaction: Finish.
        if (c.verb == Verb::kDelete || c.verb == Verb::kDestroy) deleted_sets_.insert(c.set.name);
        break;
      case ObjectKind::kChain:
        if (c.verb == Verb::kFlush) {
          flushed_.insert(c.chain.name);  // its new rules follow: Finish
        } else if (c.verb == Verb::kDelete || c.verb == Verb::kDestroy) {
          ChainRulesGone(c.chain.name, "chain deleted");
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
        if (flushed_.count(c.chain.name)) new_rules_[c.chain.name].push_back(c.rule);
        break;
    }
  }

  // After the last command: a flushed chain whose new rules are its old ones with some allow
  // lookups pointed at other sets (group sets are named after their content, so a policy edit
  // re-points its groups' lookups) makes candidates of the old sets' elements the new sets lack
  // after the transaction, for that chain's pods; any other flushed chain, every flow of its
  // pods. Then a deleted set's elements, for the chains that looked it up and were not
  // re-pointed.
  void Finish() {
    std::set<std::string> repointed;
    for (const std::string& chain : flushed_) {
      if (gone_chains_.count(chain)) continue;
      if (Repoint(chain)) {
        repointed.insert(chain);
      } else {
        ChainRulesGone(chain, "chain flushed");
      }
    }
    for (const std::string& set : deleted_sets_) {
      auto uses = uses_.find(set);
      if (uses == uses_.end() || !gone_sets_.insert(set).second) continue;
      std::vector<AllowUse> left;
      for (const AllowUse& u : uses->second) {
        if (!repointed.count(u.chain)) left.push_back(u);
      }
      auto els = before_.elements.find(set);
      if (left.empty() || els == before_.elements.end()) continue;
      for (const Element& e : els->second) Candidates(left, set, e, "set deleted");
    }
  }

  // The plan; registers the pods of every chain that holds element filters.
  RevocationPlan Take() {
    for (auto& [chain, cands] : plan_.chains_) {
      auto pods = dispatched_.find(chain);
      if (pods == dispatched_.end()) continue;
      for (const Dispatched& p : pods->second) {
        cands.pods.push_back(RevocationPlan::Pod{p.source, p.addr, PodText(p)});
        (p.source ? plan_.by_src_pod_ : plan_.by_dst_pod_)[p.addr].push_back(chain);
      }
    }
    return std::move(plan_);
  }

 private:
  // Whether `v` goes to a chain whose every rule drops (a ClusterNetworkPolicy tier's deny-log
  // chain: a logged drop within the limit, a counted drop beyond it).
  bool DropsAll(const std::optional<Verdict>& v) const {
    if (!v || (v->kind != Verdict::Kind::kJump && v->kind != Verdict::Kind::kGoto)) return false;
    auto target = before_.chains.find(v->chain);
    if (target == before_.chains.end() || target->second.rules.empty()) return false;
    for (const nft::Rule& r : target->second.rules) {
      if (!r.matches.empty() || !r.verdict || r.verdict->kind != Verdict::Kind::kDrop) return false;
    }
    return true;
  }

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
          if ((rule.verdict->kind == Verdict::Kind::kDrop || DropsAll(rule.verdict)) &&
              !chain.base) {
            // A deny (a ClusterNetworkPolicy tier's Deny set): its added elements may deny flows
            // that were allowed.
            denies_[lookup->set].push_back(AllowUse{name, lookup->key, false});
            continue;
          }
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
        if (e.key.size() == 1) old_dispatch_[map].emplace(e.key[0].addr_lo, &e);
        if (e.key.size() != 1 || !e.verdict) continue;
        if (e.verdict->kind != Verdict::Kind::kJump && e.verdict->kind != Verdict::Kind::kGoto) {
          continue;
        }
        dispatched_[e.verdict->chain].push_back(Dispatched{d.source, e.key[0].addr_lo, e.comment});
      }
    }
    // A regular chain that jumps on to another (a ClusterNetworkPolicy tier chain to its pods'
    // group chain) sends its pods there too: the other chain's allows are theirs.
    std::map<std::string, std::set<std::string>> jumps;
    for (const auto& [name, chain] : before_.chains) {
      if (chain.base) continue;
      for (const nft::Rule& rule : chain.rules) {
        if (rule.verdict && (rule.verdict->kind == Verdict::Kind::kJump ||
                             rule.verdict->kind == Verdict::Kind::kGoto)) {
          jumps[name].insert(rule.verdict->chain);
        }
      }
    }
    for (size_t depth = 0; depth < 4 && !jumps.empty(); ++depth) {
      std::map<std::string, std::vector<Dispatched>> more;
      for (const auto& [from, tos] : jumps) {
        auto pods = dispatched_.find(from);
        if (pods == dispatched_.end()) continue;
        for (const std::string& to : tos) {
          for (const Dispatched& p : pods->second) {
            if (reached_.insert({to, p.source, p.addr}).second) more[to].push_back(p);
          }
        }
      }
      if (more.empty()) break;
      for (auto& [chain, pods] : more) {
        dispatched_[chain].insert(dispatched_[chain].end(), pods.begin(), pods.end());
      }
    }
  }

  static std::string PodText(const Dispatched& p) {
    return absl::StrCat(p.source ? "egress of " : "ingress of ", p.addr.ToString(),
                        p.comment.empty() ? "" : " ", p.comment);
  }

  void AnyOf(const Dispatched& p, const std::string& why) {
    auto& any = p.source ? plan_.any_from_ : plan_.any_to_;
    if (any.count(p.addr) > 0) return;
    any.emplace(p.addr, absl::StrCat(why, " (", PodText(p), ")"));
  }

  // An element of `set` admitted flows before the transaction and does not after it.
  void ElementGone(const std::string& set, const Element& e, const char* verb) {
    auto uses = uses_.find(set);
    if (uses == uses_.end()) return;
    Candidates(uses->second, set, e, verb);
  }

  // The flows element `e` of `set` describes, for every chain that looks it up in `uses`, are
  // candidates.
  void Candidates(const std::vector<AllowUse>& uses, const std::string& set, const Element& e,
                  const char* verb) {
    for (const AllowUse& use : uses) {
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
      auto complete = [&](FlowFilter g, Family fam) {
        g.family = fam;
        if (!src_set) g.src_lo = Lowest(fam), g.src_hi = Highest(fam);
        if (!dst_set) g.dst_lo = Lowest(fam), g.dst_hi = Highest(fam);
        g.reason = what;
        return g;
      };
      std::vector<Family> families;
      if (family) {
        families.push_back(*family);
      } else {
        families = {Family::kV4, Family::kV6};
      }
      if (use.base) {
        for (Family fam : families) plan_.base_.Add(complete(f, fam));
        continue;
      }
      // Stored once for the chain: Take() adds the pods dispatched into it, whose address is
      // the flow's destination (ingress) or source (egress). An element constraining the pod's
      // side too then only matches the pods it covers.
      auto pods = dispatched_.find(use.chain);
      if (pods == dispatched_.end()) continue;
      RevocationPlan::ChainCandidates& cands = plan_.chains_[use.chain];
      for (Family fam : families) cands.filters.Add(complete(f, fam));
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

  // An element added: to a deny set, its flows; to a dispatch map, a pod newly isolated or sent
  // to another chain.
  void ElementAdded(const std::string& map, const Element& e) {
    auto deny = denies_.find(map);
    if (deny != denies_.end()) {
      Candidates(deny->second, map, e, "added to a deny set:");
      return;
    }
    auto d = dispatch_.find(map);
    if (d == dispatch_.end() || e.key.size() != 1) return;
    std::optional<Verdict> old;
    auto olds = old_dispatch_.find(map);
    if (olds != old_dispatch_.end()) {
      auto [from, to] = olds->second.equal_range(e.key[0].addr_lo);
      for (auto it = from; it != to; ++it) {
        if (it->second->key == e.key) old = it->second->verdict;
      }
    }
    if (old && e.verdict && *old == *e.verdict) return;
    const Dispatched p{d->second.source, e.key[0].addr_lo, e.comment};
    AnyOf(p, absl::StrCat(map, old ? ": re-pointed to " : ": newly isolated, ",
                          e.verdict ? nft::RenderVerdict(*e.verdict) : std::string("-")));
  }

  // Whether the new rules of flushed chain `chain` are its old ones up to the sets some allow
  // lookups read; if so, their candidates (Finish).
  bool Repoint(const std::string& chain) {
    auto old_chain = before_.chains.find(chain);
    auto fresh = new_rules_.find(chain);
    if (old_chain == before_.chains.end() || fresh == new_rules_.end()) return false;
    const std::vector<nft::Rule>& old_rules = old_chain->second.rules;
    const std::vector<nft::Rule>& new_rules = fresh->second;
    if (old_rules.size() != new_rules.size()) return false;
    std::vector<std::pair<std::string, std::string>> moves;  // old set -> new set
    for (size_t i = 0; i < old_rules.size(); ++i) {
      const nft::Rule& a = old_rules[i];
      const nft::Rule& b = new_rules[i];
      if (a.matches.size() != b.matches.size() || !(a.verdict == b.verdict) ||
          !(a.limit == b.limit)) {
        return false;
      }
      for (size_t m = 0; m < a.matches.size(); ++m) {
        const auto* la = std::get_if<nft::LookupMatch>(&a.matches[m]);
        const auto* lb = std::get_if<nft::LookupMatch>(&b.matches[m]);
        if (la == nullptr || lb == nullptr) {
          if (!(a.matches[m] == b.matches[m])) return false;
          continue;
        }
        if (la->key != lb->key || la->vmap != lb->vmap || la->negate != lb->negate) return false;
        if (la->set == lb->set) continue;
        // Only allow lookups of a regular chain may move (not a deny, not a verdict map).
        if (la->vmap || la->negate || !a.verdict || denies_.count(la->set) ||
            (a.verdict->kind != Verdict::Kind::kReturn &&
             a.verdict->kind != Verdict::Kind::kAccept)) {
          return false;
        }
        moves.emplace_back(la->set, lb->set);
      }
    }
    for (const auto& [from, to] : moves) {
      auto uses = uses_.find(from);
      auto els = before_.elements.find(from);
      if (uses == uses_.end() || els == before_.elements.end()) continue;
      std::vector<AllowUse> mine;
      for (const AllowUse& u : uses->second) {
        if (u.chain == chain) mine.push_back(u);
      }
      // The keys of `to` after the transaction.
      std::set<std::vector<nft::FieldValue>> after;
      auto held = before_.elements.find(to);
      if (before_.sets.count(to) && held != before_.elements.end()) {
        auto gone = removed_.find(to);
        for (const Element& e : held->second) {
          if (gone == removed_.end() || !gone->second.count(e.key)) after.insert(e.key);
        }
      }
      auto more = added_.find(to);
      if (more != added_.end()) after.insert(more->second.begin(), more->second.end());
      for (const Element& e : els->second) {
        if (!after.count(e.key)) Candidates(mine, from, e, "not in the set the chain now reads:");
      }
    }
    return true;
  }

  const nft::Program& before_;
  std::set<std::string> flushed_, deleted_sets_;                     // by the transaction
  std::map<std::string, std::vector<nft::Rule>> new_rules_;          // flushed chain -> rules
  std::map<std::string, std::set<std::vector<nft::FieldValue>>> added_, removed_;  // set -> keys
  std::map<std::string, Dispatch> dispatch_;               // verdict map -> its lookup
  std::map<std::string, std::vector<AllowUse>> uses_;      // set -> allow rules using it
  std::map<std::string, std::vector<AllowUse>> denies_;    // set -> drop rules using it
  std::set<std::tuple<std::string, bool, IpAddr>> reached_;  // pods sent on by jumps
  std::map<std::string, std::vector<Dispatched>> dispatched_;  // chain -> pods sent there
  // Verdict map -> its elements in `before` by key address, in `before`'s order.
  std::map<std::string, std::multimap<IpAddr, const Element*>> old_dispatch_;
  std::set<std::string> gone_sets_, gone_chains_;
  RevocationPlan plan_;
};

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

void RevocationPlan::Index::Add(FlowFilter f) {
  const size_t i = filters_.size();
  if (f.src_lo == f.src_hi) {
    by_src_[f.src_lo].push_back(i);
  } else if (f.dst_lo == f.dst_hi) {
    by_dst_[f.dst_lo].push_back(i);
  } else {
    ranges_.push_back(i);
  }
  filters_.push_back(std::move(f));
}

bool RevocationPlan::Index::Matches(const Flow& flow) const {
  auto any = [&](const std::vector<size_t>& idx) {
    for (size_t i : idx) {
      if (filters_[i].Matches(flow)) return true;
    }
    return false;
  };
  auto s = by_src_.find(flow.src);
  if (s != by_src_.end() && any(s->second)) return true;
  auto d = by_dst_.find(flow.dst);
  if (d != by_dst_.end() && any(d->second)) return true;
  return any(ranges_);
}

RevocationPlan RevocationPlan::Build(const nft::Program& before, const nft::Transaction& tx) {
  if (tx.table() != before.table) return RevocationPlan();
  PlanBuilder builder(before);
  for (const Command& c : tx.commands()) builder.Apply(c);
  builder.Finish();
  return builder.Take();
}

size_t RevocationPlan::size() const {
  size_t n = base_.filters().size() + any_to_.size() + any_from_.size();
  for (const auto& [chain, c] : chains_) n += c.filters.filters().size() + c.pods.size();
  return n;
}

size_t RevocationPlan::expanded_size() const {
  size_t n = base_.filters().size() + any_to_.size() + any_from_.size();
  for (const auto& [chain, c] : chains_) n += c.filters.filters().size() * c.pods.size();
  return n;
}

std::set<Family> RevocationPlan::families() const {
  std::set<Family> out;
  for (const FlowFilter& f : base_.filters()) out.insert(f.family);
  for (const auto& [addr, why] : any_to_) out.insert(addr.family);
  for (const auto& [addr, why] : any_from_) out.insert(addr.family);
  for (const auto& [chain, c] : chains_) {
    std::set<Family> filters, pods;
    for (const FlowFilter& f : c.filters.filters()) filters.insert(f.family);
    for (const Pod& p : c.pods) pods.insert(p.addr.family);
    for (Family f : filters) {
      if (pods.count(f) > 0) out.insert(f);
    }
  }
  return out;
}

bool RevocationPlan::Matches(const Flow& flow) const {
  if (any_to_.count(flow.dst) > 0 && FlowFilter::AnyTo(flow.dst).Matches(flow)) return true;
  if (any_from_.count(flow.src) > 0 && FlowFilter::AnyFrom(flow.src).Matches(flow)) return true;
  if (base_.Matches(flow)) return true;
  auto in_chains = [&](const std::map<IpAddr, std::vector<std::string>>& by_pod,
                       const IpAddr& pod) {
    auto it = by_pod.find(pod);
    if (it == by_pod.end()) return false;
    for (const std::string& chain : it->second) {
      if (chains_.at(chain).filters.Matches(flow)) return true;
    }
    return false;
  };
  return in_chains(by_dst_pod_, flow.dst) || in_chains(by_src_pod_, flow.src);
}

std::vector<FlowFilter> RevocationPlan::Expand() const {
  std::vector<FlowFilter> out = base_.filters();
  for (const auto& [addr, why] : any_to_) {
    out.push_back(FlowFilter::AnyTo(addr));
    out.back().reason = why;
  }
  for (const auto& [addr, why] : any_from_) {
    out.push_back(FlowFilter::AnyFrom(addr));
    out.back().reason = why;
  }
  for (const auto& [chain, c] : chains_) {
    for (const Pod& p : c.pods) {
      for (FlowFilter g : c.filters.filters()) {
        if (g.family != p.addr.family) continue;
        IpAddr& lo = p.source ? g.src_lo : g.dst_lo;
        IpAddr& hi = p.source ? g.src_hi : g.dst_hi;
        if (!(lo <= p.addr && p.addr <= hi)) continue;  // the element excludes this pod
        lo = hi = p.addr;
        absl::StrAppend(&g.reason, " (", p.text, ")");
        out.push_back(std::move(g));
      }
    }
  }
  std::stable_sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<FlowFilter> RevocationFilters(const nft::Program& before, const nft::Transaction& tx) {
  return RevocationPlan::Build(before, tx).Expand();
}

bool StillAllowed(const nft::Program& after, const Flow& flow) {
  trace::Packet packet;
  packet.src = flow.src;
  packet.dst = flow.dst;
  packet.l4proto = flow.l4proto;
  packet.dport = flow.has_ports ? flow.dport : 0;
  if (flow.l4proto == 58) packet.icmpv6_type = flow.icmp_type;
  packet.ct = trace::CtState::kNew;
  for (const auto& [name, chain] : after.chains) {
    if (!chain.base) continue;
    trace::Packet p = packet;
    if (chain.base->hook == nft::Hook::kPostrouting) {
      if (flow.nat_src.has_value()) {
        p.orig_src = p.src;
        p.src = *flow.nat_src;
      }
    } else if (chain.base->hook != nft::Hook::kForward) {
      continue;
    }
    absl::StatusOr<trace::TraceResult> r = trace::Trace(after, name, p, false);
    if (!r.ok()) return true;  // cannot judge: keep
    if (!r->accepted) return false;
  }
  return true;
}

}  // namespace netpol::conntrack
