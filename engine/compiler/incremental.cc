// IncrementalCompiler, and Compile (its Reset). See incremental.h; the layout it maintains is
// RULESET.md's.
#include "engine/compiler/incremental.h"

#include <algorithm>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/compiler/boxes.h"
#include "engine/compiler/cluster.h"
#include "engine/compiler/common.h"
#include "engine/nft/diff.h"
#include "engine/selector/label_index.h"
#include "engine/selector/selector.h"
#include "engine/util/status_macros.h"

namespace netpol::compiler {
namespace {

using nft::Element;
using nft::FieldType;
using nft::FieldValue;
using nft::Program;
using nft::Selector;
using nft::Verdict;

using internal::AddrSpan;
using internal::AddrToU128;
using internal::BoxElements;
using internal::Dir;
using internal::DirName;
using internal::DropComment;
using internal::Fam;
using internal::GroupComment;
using internal::GroupKey;
using internal::IsInterval;
using internal::JoinLimited;
using internal::Lookup;
using internal::MakeRule;
using internal::NamedPort;
using internal::NamespaceLabels;
using internal::NormalizePorts;
using internal::NumSpan;
using internal::PortSpec;
using internal::ResolvePort;
using internal::Resolution;
using internal::Selects;
using internal::Slot;
using internal::SlotCommentHead;
using internal::SlotFamily;
using internal::SlotKey;
using internal::SlotLookup;
using internal::Sources;
using internal::SA;
using internal::SP;
using internal::SRa;
using internal::SRp;
using internal::U128ToAddr;
using internal::kA4;
using internal::kA6;
using internal::kP4;
using internal::kP6;
using internal::kRa4;
using internal::kRa6;
using internal::kRp4;
using internal::kRp6;
using internal::kSlots;
using internal::kX;
using internal::kXr;

std::string NamespaceOf(const std::string& key) { return key.substr(0, key.find('/')); }

// A canonical text of a selector: equal selectors, equal keys.
std::string SelectorKey(const LabelSelector& sel) {
  std::string out;
  for (const auto& [k, v] : sel.match_labels) absl::StrAppend(&out, k, "=", v, "\n");
  for (const LabelSelectorRequirement& r : sel.match_expressions) {
    absl::StrAppend(&out, r.key, " ", static_cast<int>(r.op), " ", absl::StrJoin(r.values, ","),
                    "\n");
  }
  return out;
}

// Objects of `m` whose key is "<ns>/...", in key order.
template <typename M, typename F>
void ForEachInNamespace(const M& m, const std::string& ns, F f) {
  const std::string prefix = ns + "/";
  for (auto it = m.lower_bound(prefix);
       it != m.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    f(it->second);
  }
}

bool PeerEligible(const Pod& pod) { return !pod.host_network && !pod.ips.empty(); }

// ---- group set slots ----

// A group's sets by id: the fixed kinds (Slot), then kLargeParts per large rule.
int LargeId(size_t k, int part) {
  return kSlots + static_cast<int>(k) * internal::kLargeParts + part;
}
// The fixed kind whose key and element forms set `id` shares.
Slot BaseSlot(int id) {
  return id < kSlots ? static_cast<Slot>(id)
                     : internal::LargeBaseSlot((id - kSlots) % internal::kLargeParts);
}

// A point of a plain set (or a box of an interval set) as an nft element.
Element PointElement(Slot s, const Box& b) {
  Element e;
  e.key.reserve(3);
  switch (s) {
    case kA4:
    case kA6:
      e.key.push_back(FieldValue::Addr(U128ToAddr(b[0].lo, SlotFamily(s))));
      break;
    case kP4:
    case kP6:
      e.key.push_back(FieldValue::Addr(U128ToAddr(b[0].lo, SlotFamily(s))));
      e.key.push_back(FieldValue::Num(static_cast<uint32_t>(b[1].lo)));
      e.key.push_back(FieldValue::Num(static_cast<uint32_t>(b[2].lo)));
      break;
    default:  // kX
      e.key.push_back(FieldValue::Num(static_cast<uint32_t>(b[0].lo)));
      e.key.push_back(FieldValue::Num(static_cast<uint32_t>(b[1].lo)));
      break;
  }
  return e;
}

using Counts = std::map<Box, int>;
using SlotId = int;

// The elements of a slot as Compile emits them: sorted by key, unique.
std::vector<Element> SlotElements(Slot s, const Counts& counts) {
  std::vector<Element> out;
  if (IsInterval(s)) {
    std::vector<Box> boxes;
    boxes.reserve(counts.size());
    for (const auto& [b, n] : counts) boxes.push_back(b);
    out = BoxElements(s, boxes);
  } else {
    out.reserve(counts.size());
    for (const auto& [b, n] : counts) out.push_back(PointElement(s, b));
  }
  // Points come in key order already (a box orders as its element does).
  if (!std::is_sorted(out.begin(), out.end())) std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end(),
                        [](const Element& a, const Element& b) { return a.key == b.key; }),
            out.end());
  return out;
}

// ---- groups ----

// A rule part whose elements depend on pods.
struct Template {
  enum class Kind { kSelector, kNamedAny, kNamedInBlock };
  Kind kind = Kind::kSelector;
  Dir dir = Dir::kIngress;
  std::string policy_ns;
  std::optional<LabelSelector> pod_sel, ns_sel;
  PortSpec ps;
  // kSelector with an ingress named port: its number as the group resolves it.
  std::optional<uint16_t> ingress_port;
  Family fam = Family::kV4;     // kNamedInBlock
  std::vector<IpRange> ranges;  // kNamedInBlock
  int large = -1;               // kSelector: the peers of this large rule of the group (ps unused)
};

// Which group a local pod belongs to for one direction.
struct GroupSpec {
  std::string key;
  Dir dir = Dir::kIngress;
  std::vector<std::string> policies;  // keys, sorted
  Resolution resolution;
};

struct LargeRule {
  std::string src;
  bool fam[2] = {false, false};  // whether it has peers of that family (a set and a rule)
};

// What one set of a group holds before any pod is looked at: its static elements and the rule
// parts that add pods' elements.
struct SetParts {
  Counts counts;
  std::vector<Template> templates;
};

// A set looked up by group chains, shared by every group whose rules put the same parts into
// that set kind (RULESET.md "Sets shared by content"): named after its definition, filled once.
struct SharedSet {
  SlotId id = 0;  // a fixed slot, or LargeId(0, part) for a large rule's set
  Dir dir = Dir::kIngress;
  std::string def;   // the canonical text of its parts (SetDef)
  std::string name;
  std::string comment;
  Counts counts;
  std::vector<Template> templates;  // each adds the pods' elements of slot `id` only
  int refs = 0;                     // committed groups that look it up
};

struct Group {
  GroupSpec spec;
  std::string name;
  std::set<std::string> members;
  Sources all;
  Sources slots[kSlots];
  std::vector<LargeRule> large;
  // By SlotId, while building (Shape): the parts of each set; then the definition of each
  // present set (its key among the shared sets) and its name.
  std::vector<SetParts> parts = std::vector<SetParts>(kSlots);
  std::vector<std::string> defs;
  std::vector<std::string> set_names;
  std::set<std::string> logged;  // keys of its policies asking for allowed-flow logs

  SlotId Ids() const { return static_cast<SlotId>(kSlots + large.size() * internal::kLargeParts); }
  // Whether set `id` exists.
  bool Present(SlotId id) const {
    if (all.present) return false;
    if (id < kSlots) return slots[id].present;
    const int i = id - kSlots;
    const LargeRule& l = large[static_cast<size_t>(i / internal::kLargeParts)];
    const int part = i % internal::kLargeParts;
    return part == 2 ? (l.fam[0] || l.fam[1]) : l.fam[part];
  }
};

std::string GroupName(const GroupSpec& g) {
  const std::string& first = g.policies.front();
  const size_t slash = first.find('/');
  return internal::GroupName(g.dir, first.substr(0, slash), first.substr(slash + 1), g.key);
}

// The group of local pod `pod` for `dir` in `s` (nullopt: not isolated for it).
absl::StatusOr<std::optional<GroupSpec>> MembershipOf(const State& s, const Pod& pod, Dir dir) {
  GroupSpec g;
  g.dir = dir;
  std::vector<const NetworkPolicy*> policies;
  ForEachInNamespace(s.policies, pod.namespace_name, [&](const NetworkPolicy& p) {
    if (Selects(p, pod, dir)) policies.push_back(&p);
  });
  if (policies.empty()) return std::optional<GroupSpec>();
  for (const NetworkPolicy* p : policies) g.policies.push_back(p->Key());
  ASSIGN_OR_RETURN(g.key, GroupKey(dir, policies, pod, &g.resolution));
  return std::optional<GroupSpec>(std::move(g));
}

using Contribution = std::vector<std::pair<SlotId, Box>>;

// What pod `pod` (a peer; its namespace's labels `ns_labels`) adds through `t` (to every set
// kind; a shared set keeps the elements of its own).
absl::Status Contribute(const Template& t, const Pod& pod, const Labels& ns_labels,
                        Contribution* out) {
  if (!PeerEligible(pod)) return absl::OkStatus();
  const PortSpec& ps = t.ps;
  const uint32_t proto = static_cast<uint8_t>(ps.protocol);
  switch (t.kind) {
    case Template::Kind::kSelector: {
      if (t.ns_sel) {
        if (!Matches(*t.ns_sel, ns_labels)) return absl::OkStatus();
      } else if (pod.namespace_name != t.policy_ns) {
        return absl::OkStatus();
      }
      if (t.pod_sel && !Matches(*t.pod_sel, pod.labels)) return absl::OkStatus();
      if (t.large >= 0) {
        for (const IpAddr& ip : pod.ips) {
          const U128 a = AddrToU128(ip);
          out->push_back({LargeId(static_cast<size_t>(t.large), Fam(ip.family)),
                          internal::LargePeerBox(a, a)});
        }
        return absl::OkStatus();
      }
      std::optional<uint16_t> port;
      if (ps.kind == PortSpec::Kind::kNamed) {
        if (t.dir == Dir::kIngress) {
          port = t.ingress_port;
        } else {
          ASSIGN_OR_RETURN(port, ResolvePort(pod, ps.name, ps.protocol));
        }
        if (!port) return absl::OkStatus();
      }
      for (const IpAddr& ip : pod.ips) {
        const int f = Fam(ip.family);
        const U128 a = AddrToU128(ip);
        switch (ps.kind) {
          case PortSpec::Kind::kAny:
            out->push_back({SA(f), Box{Span{a, a}}});
            break;
          case PortSpec::Kind::kProtoAll:
            out->push_back({SRa(f), Box{Span{a, a}, NumSpan(proto, proto)}});
            break;
          case PortSpec::Kind::kRange:
            if (ps.lo == ps.hi) {
              out->push_back({SP(f), Box{Span{a, a}, NumSpan(proto, proto), NumSpan(ps.lo, ps.lo)}});
            } else {
              out->push_back(
                  {SRp(f), Box{Span{a, a}, NumSpan(proto, proto), NumSpan(ps.lo, ps.hi)}});
            }
            break;
          case PortSpec::Kind::kNamed:
            out->push_back({SP(f), Box{Span{a, a}, NumSpan(proto, proto), NumSpan(*port, *port)}});
            break;
        }
      }
      return absl::OkStatus();
    }
    case Template::Kind::kNamedAny:
    case Template::Kind::kNamedInBlock: {
      ASSIGN_OR_RETURN(std::optional<uint16_t> port, ResolvePort(pod, ps.name, ps.protocol));
      if (!port) return absl::OkStatus();
      for (const IpAddr& ip : pod.ips) {
        if (t.kind == Template::Kind::kNamedInBlock) {
          if (ip.family != t.fam || !internal::InRanges(ip, t.ranges)) continue;
        }
        const U128 a = AddrToU128(ip);
        out->push_back({SP(Fam(ip.family)),
                        Box{Span{a, a}, NumSpan(proto, proto), NumSpan(*port, *port)}});
      }
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

// Whether rule `index` (for the group's direction) of a policy, its ports normalized into
// `specs`, is large in the State being built (RULESET.md "Large rules").
using LargeFn = std::function<bool(const NetworkPolicy& policy, size_t index, const Rule& rule,
                                   const std::vector<PortSpec>& specs)>;


// Fills the shape (which slots exist, with their sources), the static elements and the templates
// of `g` from its policies, in the order of rules, ports and peers RULESET.md describes.
absl::Status Shape(const State& s, const LargeFn& is_large, Group* g) {
  const Dir dir = g->spec.dir;
  for (const std::string& key : g->spec.policies) {
    auto pit = s.policies.find(key);
    if (pit == s.policies.end()) return absl::InternalError("group policy " + key + " missing");
    const NetworkPolicy& policy = pit->second;
    if (policy.log_allowed) g->logged.insert(key);
    const std::vector<Rule>& rules = dir == Dir::kIngress ? policy.ingress : policy.egress;
    for (size_t i = 0; i < rules.size(); ++i) {
      const Rule& rule = rules[i];
      const std::string src = internal::RuleSource(policy, dir, i);
      ASSIGN_OR_RETURN(std::vector<PortSpec> specs, NormalizePorts(policy, dir, i, rule));
      const bool large = is_large(policy, i, rule, specs);
      const size_t k = g->large.size();
      if (large) g->large.push_back(LargeRule{src});
      for (const PortSpec& ps : specs) {
        const std::optional<uint16_t> ingress_port =
            internal::IngressPort(ps, dir, g->spec.resolution);
        auto apply = [&](const internal::Part& part) {
          if (part.all) g->all.Mark(src);
          for (Slot slot : part.marked) g->slots[slot].Mark(src);
          for (const auto& [slot, b] : part.boxes) g->parts[slot].counts[b]++;
        };
        if (large && internal::LargeRulePort(ps, dir)) {
          std::optional<Box> b = internal::LargePortBox(ps, ingress_port);
          if (b) {
            const SlotId id = LargeId(k, 2);
            if (g->parts.size() <= static_cast<size_t>(id)) g->parts.resize(id + 1);
            g->parts[id].counts[*std::move(b)]++;
          }
          continue;
        }
        if (rule.peers.empty()) {
          const internal::Part part = internal::AnyPeerPart(ps, dir, ingress_port);
          apply(part);
          if (part.pods_named_port) {
            Template t;
            t.kind = Template::Kind::kNamedAny;
            t.dir = dir;
            t.policy_ns = policy.namespace_name;
            t.ps = ps;
            g->parts[SP(0)].templates.push_back(t);
            g->parts[SP(1)].templates.push_back(std::move(t));
          }
          continue;
        }
        for (const Peer& peer : rule.peers) {
          if (peer.ip_block) {
            const IPBlock& block = *peer.ip_block;
            const Family fam = block.cidr.addr.family;
            std::vector<IpRange> ranges = CidrMinus(block.cidr, block.except);
            const internal::Part part =
                internal::IpBlockPart(ps, dir, ingress_port, Fam(fam), ranges);
            apply(part);
            if (part.pods_named_port) {
              Template t;
              t.kind = Template::Kind::kNamedInBlock;
              t.dir = dir;
              t.policy_ns = policy.namespace_name;
              t.ps = ps;
              t.fam = fam;
              t.ranges = std::move(ranges);
              g->parts[SP(Fam(fam))].templates.push_back(std::move(t));
            }
            continue;
          }
          if (!peer.pod_selector && !peer.namespace_selector) continue;  // matches nothing
          g->slots[internal::SelectorSlot(ps, 0)].Mark(src);
          g->slots[internal::SelectorSlot(ps, 1)].Mark(src);
          // An ingress named port this group does not resolve contributes nothing.
          if (ps.kind == PortSpec::Kind::kNamed && dir == Dir::kIngress && !ingress_port) continue;
          Template t;
          t.kind = Template::Kind::kSelector;
          t.dir = dir;
          t.policy_ns = policy.namespace_name;
          t.pod_sel = peer.pod_selector;
          t.ns_sel = peer.namespace_selector;
          t.ps = ps;
          if (ps.kind == PortSpec::Kind::kNamed && dir == Dir::kIngress) t.ingress_port = ingress_port;
          g->parts[internal::SelectorSlot(ps, 0)].templates.push_back(t);
          g->parts[internal::SelectorSlot(ps, 1)].templates.push_back(std::move(t));
        }
      }
      if (!large) continue;
      // The large rule's peers: ipBlock ranges now, selector peers through templates.
      g->parts.resize(static_cast<size_t>(LargeId(k, 2)) + 1);
      for (const Peer& peer : rule.peers) {
        if (peer.ip_block) {
          const int f = Fam(peer.ip_block->cidr.addr.family);
          g->large[k].fam[f] = true;
          for (const IpRange& r : CidrMinus(peer.ip_block->cidr, peer.ip_block->except)) {
            g->parts[LargeId(k, f)]
                .counts[internal::LargePeerBox(AddrToU128(r.lo), AddrToU128(r.hi))]++;
          }
          continue;
        }
        if (!peer.pod_selector && !peer.namespace_selector) continue;  // matches nothing
        g->large[k].fam[0] = g->large[k].fam[1] = true;
        Template t;
        t.kind = Template::Kind::kSelector;
        t.dir = dir;
        t.policy_ns = policy.namespace_name;
        t.pod_sel = peer.pod_selector;
        t.ns_sel = peer.namespace_selector;
        t.large = static_cast<int>(k);
        g->parts[LargeId(k, 0)].templates.push_back(t);
        g->parts[LargeId(k, 1)].templates.push_back(std::move(t));
      }
    }
  }
  if (g->all.present) g->parts.clear();  // the chain is just `return`: no sets
  g->parts.resize(static_cast<size_t>(g->Ids()));
  return absl::OkStatus();
}

// A selector as comments show it: "app=web,env In (prod,staging)"; empty: "{}".
std::string SelectorText(const LabelSelector& sel) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : sel.match_labels) parts.push_back(absl::StrCat(k, "=", v));
  for (const LabelSelectorRequirement& r : sel.match_expressions) {
    static const char* const kOps[] = {"In", "NotIn", "Exists", "DoesNotExist"};
    const int op = static_cast<int>(r.op);
    std::string text = absl::StrCat(r.key, " ", op >= 0 && op < 4 ? kOps[op] : "?");
    if (!r.values.empty()) absl::StrAppend(&text, " (", absl::StrJoin(r.values, ","), ")");
    parts.push_back(std::move(text));
  }
  return parts.empty() ? "{}" : absl::StrJoin(parts, ",");
}

std::string PortText(const PortSpec& ps, std::optional<uint16_t> ingress_port) {
  const std::string proto = ps.protocol == Protocol::kUDP    ? "udp"
                            : ps.protocol == Protocol::kSCTP ? "sctp"
                                                             : "tcp";
  switch (ps.kind) {
    case PortSpec::Kind::kAny:
      return "";
    case PortSpec::Kind::kProtoAll:
      return " " + proto;
    case PortSpec::Kind::kRange:
      return ps.lo == ps.hi ? absl::StrCat(" ", proto, "/", ps.lo)
                            : absl::StrCat(" ", proto, "/", ps.lo, "-", ps.hi);
    case PortSpec::Kind::kNamed:
      return ingress_port ? absl::StrCat(" ", proto, "/", ps.name, "=", *ingress_port)
                          : absl::StrCat(" ", proto, "/", ps.name);
  }
  return "";
}

// What a template adds, as the set's comment lists it.
std::string TemplateText(const Template& t) {
  switch (t.kind) {
    case Template::Kind::kSelector: {
      std::string out = t.ns_sel ? "namespaces " + SelectorText(*t.ns_sel) : t.policy_ns;
      if (t.pod_sel) absl::StrAppend(&out, " pods ", SelectorText(*t.pod_sel));
      if (t.large < 0) absl::StrAppend(&out, PortText(t.ps, t.ingress_port));
      return out;
    }
    case Template::Kind::kNamedAny:
      return absl::StrCat("pods with", PortText(t.ps, std::nullopt));
    case Template::Kind::kNamedInBlock:
      return absl::StrCat("pods in ", t.ranges.size(), " ranges with",
                          PortText(t.ps, std::nullopt));
  }
  return "";
}

// The canonical text of what a template adds: equal texts, equal elements from every State.
std::string TemplateDef(const Template& t) {
  std::string out = absl::StrCat(static_cast<int>(t.kind), "|", static_cast<int>(t.dir), "|");
  // Pods of the policy's namespace matter only to a selector without a namespace selector.
  if (t.kind == Template::Kind::kSelector && !t.ns_sel) absl::StrAppend(&out, t.policy_ns);
  absl::StrAppend(&out, "|", t.pod_sel ? "P" + SelectorKey(*t.pod_sel) : "-", "|",
                  t.ns_sel ? "N" + SelectorKey(*t.ns_sel) : "-", "|");
  if (t.large >= 0) {
    absl::StrAppend(&out, "large");
  } else {
    absl::StrAppend(&out, static_cast<int>(t.ps.kind), ",", static_cast<int>(t.ps.protocol), ",",
                    t.ps.lo, ",", t.ps.hi, ",", t.ps.name, ",",
                    t.ingress_port ? static_cast<int>(*t.ingress_port) : -1);
  }
  if (t.kind == Template::Kind::kNamedInBlock) {
    absl::StrAppend(&out, "|", static_cast<int>(t.fam));
    for (const IpRange& r : t.ranges) {
      const U128 lo = AddrToU128(r.lo), hi = AddrToU128(r.hi);
      absl::StrAppend(&out, ",", absl::Hex(static_cast<uint64_t>(lo >> 64)),
                      absl::Hex(static_cast<uint64_t>(lo)), "-",
                      absl::Hex(static_cast<uint64_t>(hi >> 64)), absl::Hex(static_cast<uint64_t>(hi)));
    }
  }
  return out;
}

// The shared set id of a group's set `id`: large rule sets lose their rule number.
SlotId CanonicalId(SlotId id) {
  return id < kSlots ? id : LargeId(0, (id - kSlots) % internal::kLargeParts);
}

// The definition of a set of direction `dir` and kind `id` holding `parts`: the set kind, the
// direction, its static elements with their counts and the sorted texts of its templates.
std::string SetDef(Dir dir, SlotId id, const SetParts& parts) {
  std::string out = absl::StrCat(static_cast<int>(dir), ":", CanonicalId(id), ":");
  for (const auto& [box, n] : parts.counts) {
    for (const Span& sp : box) {
      absl::StrAppend(&out, absl::Hex(static_cast<uint64_t>(sp.lo >> 64)), ".",
                      absl::Hex(static_cast<uint64_t>(sp.lo)), "-",
                      absl::Hex(static_cast<uint64_t>(sp.hi >> 64)), ".",
                      absl::Hex(static_cast<uint64_t>(sp.hi)), ";");
    }
    absl::StrAppend(&out, "x", n, "\n");
  }
  std::vector<std::string> texts;
  texts.reserve(parts.templates.size());
  for (const Template& t : parts.templates) texts.push_back(TemplateDef(t));
  std::sort(texts.begin(), texts.end());
  for (const std::string& t : texts) absl::StrAppend(&out, "T", t, "\n");
  return out;
}

// The name of a shared set: direction, 16 hex digits of the FNV-1a hash of its definition
// (salted on a collision: "def#1", ...), the suffix of its kind.
std::string SharedSetName(Dir dir, SlotId id, const std::string& salted_def) {
  const SlotId c = CanonicalId(id);
  const std::string suffix = c < kSlots ? internal::SlotSuffix(static_cast<Slot>(c))
                                        : internal::LargeSuffix(0, (c - kSlots) % internal::kLargeParts);
  return absl::StrCat(dir == Dir::kIngress ? "in" : "eg", "-set-",
                      absl::Hex(nft::Fnv1a64(salted_def), absl::kZeroPad16), suffix);
}

// A shared set's comment: what it holds (the head of its kind), then its parts.
std::string SharedSetComment(SlotId id, const SetParts& parts) {
  const SlotId c = CanonicalId(id);
  const std::string head = c < kSlots ? SlotCommentHead(static_cast<Slot>(c))
                                      : internal::LargeCommentHead((c - kSlots) % internal::kLargeParts);
  std::vector<std::string> items;
  std::vector<std::string> texts;
  for (const Template& t : parts.templates) texts.push_back(TemplateText(t));
  std::sort(texts.begin(), texts.end());
  texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
  if (!parts.counts.empty()) {
    items.push_back(absl::StrCat(parts.counts.size(),
                                 parts.counts.size() == 1 ? " static element" : " static elements"));
  }
  for (std::string& t : texts) items.push_back(std::move(t));
  if (items.empty()) items.push_back("nothing");
  return JoinLimited(head, items);
}

// Adds shared set `s` and its elements to `prog`.
void EmitSet(const SharedSet& s, Program* prog) {
  const Slot base = BaseSlot(s.id);
  nft::Set set;
  set.name = s.name;
  set.key = SlotKey(base);
  set.interval = IsInterval(base);
  set.comment = s.comment;
  std::vector<Element> els = SlotElements(base, s.counts);
  if (!els.empty()) prog->elements[set.name] = std::move(els);
  prog->sets[set.name] = std::move(set);
}

// Adds g's chain to `prog` (its sets are shared: EmitSet).
void EmitGroup(const Group& g, const CompileOptions& opts, Program* prog) {
  nft::Chain chain;
  chain.name = g.name;
  chain.comment = GroupComment(g.spec.dir, g.spec.resolution, g.spec.policies);
  // Allowed-flow logs: a rule holding a rule of a logging policy allows through the log chain.
  const std::string log_chain = g.name + internal::kAllowLogChainSuffix;
  bool logs = false;
  auto allow = [&](const std::vector<std::string>& sources) {
    if (!opts.deny_log || !internal::LogsAllowed(g.logged, sources)) return Verdict::Return();
    logs = true;
    return Verdict::Goto(log_chain);
  };
  auto finish = [&] {
    internal::CountRules(opts.rule_counters, &chain);
    if (logs) {
      prog->chains[log_chain] =
          internal::AllowLogChain(g.name, g.spec.dir, g.logged, *internal::DenyLimit(opts),
                                  *internal::DenyLogStmt(opts));
    }
    prog->chains[chain.name] = std::move(chain);
  };
  if (g.all.present) {
    chain.rules.push_back(MakeRule({}, allow(g.all.list), JoinLimited("", g.all.list)));
    finish();
    return;
  }
  for (Slot s : internal::kSlotOrder) {
    if (!g.slots[s].present) continue;
    chain.rules.push_back(MakeRule({Lookup(SlotLookup(s, g.spec.dir), g.set_names[s])},
                                   allow(g.slots[s].list), JoinLimited("", g.slots[s].list)));
  }
  for (size_t k = 0; k < g.large.size(); ++k) {
    const LargeRule& l = g.large[k];
    for (int part : {0, 1}) {
      if (!g.Present(LargeId(k, part))) continue;
      chain.rules.push_back(internal::LargeRuleLookup(
          g.set_names[static_cast<size_t>(LargeId(k, part))],
          g.set_names[static_cast<size_t>(LargeId(k, 2))], part, g.spec.dir,
          JoinLimited("", {l.src})));
      chain.rules.back().verdict = allow({l.src});
    }
  }
  internal::AppendDrop(&chain, g.spec.dir, g.spec.policies, internal::DenyLimit(opts),
                       internal::DenyLogStmt(opts));
  finish();
}

// Moves g's chains (its chain and its allowed-flow log chain) from `from` into `to`.
void ExtractGroup(const Group& g, Program* from, Program* to) {
  for (const std::string& name : {g.name, g.name + internal::kAllowLogChainSuffix}) {
    auto chain = from->chains.find(name);
    if (chain == from->chains.end()) continue;
    to->chains[name] = std::move(chain->second);
    from->chains.erase(chain);
  }
}

// Moves set `name` and its elements from `from` into `to`.
void ExtractSet(const std::string& name, Program* from, Program* to) {
  auto set = from->sets.find(name);
  if (set == from->sets.end()) return;
  to->sets[name] = std::move(set->second);
  from->sets.erase(set);
  auto els = from->elements.find(name);
  if (els == from->elements.end()) return;
  to->elements[name] = std::move(els->second);
  from->elements.erase(els);
}

// Removes `dels` from and adds (or replaces) `adds` in set `set` of `prog`, keeping its sorted
// canonical form: a few edits in place, a large batch as one merge (the set's size once, not
// once per element).
void EditElements(Program* prog, const std::string& set, std::vector<Element> dels,
                  std::vector<Element> adds) {
  if (dels.empty() && adds.empty()) return;
  auto by_key = [](const Element& a, const Element& b) { return a.key < b.key; };
  std::vector<Element>& v = prog->elements[set];
  // A few edits: in place (a binary search and a shift each), cheaper than moving every element.
  if ((dels.size() + adds.size()) * 64 <= v.size()) {
    for (const Element& e : dels) {
      auto it = std::lower_bound(v.begin(), v.end(), e, by_key);
      if (it != v.end() && it->key == e.key) v.erase(it);
    }
    for (Element& e : adds) {
      auto it = std::lower_bound(v.begin(), v.end(), e, by_key);
      if (it != v.end() && it->key == e.key) {
        *it = std::move(e);
        continue;
      }
      // A full vector grows by an eighth, not twice its size: elements are most of a program's
      // memory, and sets are built exactly sized.
      if (v.size() == v.capacity()) {
        const size_t at = static_cast<size_t>(it - v.begin());
        v.reserve(v.size() + v.size() / 8 + 4);
        it = v.begin() + static_cast<std::ptrdiff_t>(at);
      }
      v.insert(it, std::move(e));
    }
    if (v.empty()) prog->elements.erase(set);
    return;
  }
  if (!dels.empty()) {
    std::sort(dels.begin(), dels.end(), by_key);
    v.erase(std::remove_if(v.begin(), v.end(),
                           [&](const Element& e) {
                             return std::binary_search(dels.begin(), dels.end(), e, by_key);
                           }),
            v.end());
  }
  if (!adds.empty()) {
    std::stable_sort(adds.begin(), adds.end(), by_key);
    std::vector<Element> out;
    out.reserve(v.size() + adds.size());
    auto a = adds.begin();
    for (auto it = v.begin(); it != v.end(); ++it) {
      while (a != adds.end() && a->key < it->key) out.push_back(std::move(*a++));
      if (a != adds.end() && a->key == it->key) {
        Element last = std::move(*a++);  // the last add of a key wins
        while (a != adds.end() && a->key == last.key) last = std::move(*a++);
        out.push_back(std::move(last));
      } else {
        out.push_back(std::move(*it));
      }
    }
    while (a != adds.end()) {
      Element last = std::move(*a++);
      while (a != adds.end() && a->key == last.key) last = std::move(*a++);
      out.push_back(std::move(last));
    }
    v = std::move(out);
  }
  if (v.empty()) prog->elements.erase(set);
}

const char* DispatchMap(Dir d, Family f) {
  if (d == Dir::kIngress) return f == Family::kV4 ? kIngressDispatchV4 : kIngressDispatchV6;
  return f == Family::kV4 ? kEgressDispatchV4 : kEgressDispatchV6;
}

}  // namespace

struct IncrementalCompiler::Impl {
  struct TRef {
    SharedSet* s;
    size_t i;
  };
  struct Membership {
    std::string gkey[2];  // by Dir; empty: not isolated
    std::vector<IpAddr> ips;
  };
  // Large-rule decisions that depend on pods (RULESET.md "Large rules"): for each such rule of
  // a policy some group was built from, its shape and the pod addresses its selector peers
  // match in the committed State.
  using RuleId = std::tuple<std::string, int, size_t>;  // policy key, Dir, rule index
  struct Tracked {
    internal::LargeShape shape;
    uint64_t addrs = 0;
  };
  struct NsSelRefs {
    LabelSelector sel;
    std::vector<TRef> refs;
  };

  // What an Update computes before it changes anything (the steps of Plan), then applies
  // (the steps of Commit).
  struct Plan {
    Plan(const State& o, const State& n, const Delta& d, const CompileOptions& opts)
        : old_state(o), new_state(n), delta(d), o(opts) {}
    const State& old_state;
    const State& new_state;
    const Delta& delta;
    const CompileOptions& o;
    bool want_tx = true;         // false: only the held program is wanted (Reset)
    bool full_update = false;    // a group name needs a salt: FullUpdate instead
    std::set<std::string> relocated;  // attached pods that came or went
    // Local pods whose groups may change.
    std::set<std::string> affected;
    std::map<std::string, Membership> next_members;  // affected pods isolated after
    std::map<std::string, GroupSpec> specs;          // group specs seen among them
    std::map<std::string, int> count_delta;          // member count change per group key
    // Pod-dependent large-rule decisions: new counts, and policies with a rule crossing.
    std::map<RuleId, Tracked> next_tracked;
    std::set<std::string> flipped;
    std::set<std::string> deleted, created, rebuilt;
    std::map<std::string, std::unique_ptr<Group>> fresh;  // created and rebuilt, from new_state
    bool salted = false;  // a fresh group or set name needed a salt (only from the empty State)
    // Shared sets: those the fresh groups need that do not exist yet (by definition, built from
    // new_state), the change of every set's references, the held ones no group uses after.
    std::map<std::string, std::unique_ptr<SharedSet>> fresh_sets;
    std::map<std::string, int> set_refs_delta;
    std::set<const SharedSet*> dying_sets;
    // Element count changes of the held sets that stay.
    std::map<SharedSet*, std::map<Box, int>> element_delta;
  };

  bool held = false;
  bool name_clash = false;
  CompileOptions opts;
  Program prog;  // the NetworkPolicy program (without ClusterNetworkPolicy tiers)
  // With ClusterNetworkPolicies in the State: `prog` with the tiers (cluster.h), the program
  // held and returned.
  bool tiered = false;
  Program with_tiers;
  internal::TierLayer tier_layer;  // while tiered: the tiers of with_tiers
  IncrementalStats stats;

  std::map<std::string, std::unique_ptr<Group>> groups;  // by key
  std::set<std::string> names;                          // group names in use
  std::map<std::string, std::unique_ptr<SharedSet>> shared;  // by definition
  std::map<std::string, std::string> set_names;              // shared set name -> definition
  // The indexes describe the State of the last Update (during an Update: the new State, see
  // MoveIndexes).
  std::map<std::string, int> pod_count_by_ns;  // namespaces that have pods
  // Namespaces that have pods, by the labels a namespace selector sees (with the name label).
  LabelIndex ns_index;
  LabelIndex pod_index;  // pods by their labels
  std::map<NamedPort, std::set<std::string>> pods_by_port;
  std::map<std::string, std::set<std::string>> local_by_ns;
  std::map<std::string, Membership> members;  // local isolated pods
  std::map<IpAddr, std::map<std::string, std::string>> dispatch[2];  // addr -> pod -> chain
  std::map<IpAddr, std::set<std::string>> self;                      // addr -> pods
  std::map<std::string, std::vector<TRef>> tmpl_by_ns;  // pod-selector peers, by namespace
  std::map<std::string, NsSelRefs> tmpl_nssel;  // namespace-selector peers, by selector
  std::map<NamedPort, std::vector<TRef>> tmpl_named;    // egress named ports on any/ipBlock
  std::map<RuleId, Tracked> tracked;

  void Clear() {
    held = false;
    name_clash = false;
    prog = Program();
    tiered = false;
    with_tiers = Program();
    tier_layer = internal::TierLayer();
    groups.clear();
    names.clear();
    shared.clear();
    set_names.clear();
    pod_count_by_ns.clear();
    ns_index.clear();
    pod_index.clear();
    pods_by_port.clear();
    local_by_ns.clear();
    members.clear();
    for (auto& d : dispatch) d.clear();
    self.clear();
    tmpl_by_ns.clear();
    tmpl_nssel.clear();
    tmpl_named.clear();
    tracked.clear();
  }

  // ---- indexes ----

  void IndexPod(const Pod& pod, bool add, const CompileOptions& o) {
    const std::string key = pod.Key();
    auto edit = [&](std::set<std::string>& s) {
      if (add) {
        s.insert(key);
      } else {
        s.erase(key);
      }
    };
    int& n = pod_count_by_ns[pod.namespace_name];
    n += add ? 1 : -1;
    if (n <= 0) pod_count_by_ns.erase(pod.namespace_name);
    if (add) {
      pod_index.Set(key, pod.labels);
    } else {
      pod_index.Erase(key);
    }
    for (const ContainerPort& p : pod.ports) {
      if (p.name.empty()) continue;
      NamedPort np{p.name, p.protocol};
      edit(pods_by_port[np]);
      if (!add && pods_by_port[np].empty()) pods_by_port.erase(np);
    }
    if (IsLocalPod(pod, o)) {
      edit(local_by_ns[pod.namespace_name]);
      if (!add && local_by_ns[pod.namespace_name].empty()) local_by_ns.erase(pod.namespace_name);
    }
  }

  // Moves the indexes from describing `from` (under `from_opts`) to `to` (under `to_opts`),
  // the States differing by `delta` and the attached pods `relocated`. Moving back (to, from)
  // undoes it.
  void MoveIndexes(const State& from, const State& to, const Delta& delta,
                   const std::set<std::string>& relocated, const CompileOptions& from_opts,
                   const CompileOptions& to_opts) {
    auto each = [&](const std::function<void(const std::string&)>& f) {
      for (const std::string& key : delta.pods) f(key);
      for (const std::string& key : relocated) {
        if (!delta.pods.count(key)) f(key);
      }
    };
    each([&](const std::string& key) {
      if (const Pod* pod = from.FindPod(key)) IndexPod(*pod, false, from_opts);
    });
    each([&](const std::string& key) {
      if (const Pod* pod = to.FindPod(key)) IndexPod(*pod, true, to_opts);
    });
    opts = to_opts;
    std::set<std::string> namespaces(delta.namespaces.begin(), delta.namespaces.end());
    for (const std::string& key : delta.pods) namespaces.insert(NamespaceOf(key));
    for (const std::string& ns : namespaces) {
      if (pod_count_by_ns.count(ns)) {
        ns_index.Set(ns, NamespaceLabels(to, ns));
      } else {
        ns_index.Erase(ns);
      }
    }
  }

  void RegisterTemplates(SharedSet* set, bool add) {
    auto edit = [&](std::vector<TRef>* list, size_t i) {
      if (add) {
        list->push_back({set, i});
      } else {
        list->erase(std::remove_if(list->begin(), list->end(),
                                   [set](const TRef& r) { return r.s == set; }),
                    list->end());
      }
    };
    for (size_t i = 0; i < set->templates.size(); ++i) {
      const Template& t = set->templates[i];
      if (t.kind == Template::Kind::kSelector && t.ns_sel) {
        const std::string key = SelectorKey(*t.ns_sel);
        NsSelRefs& entry = tmpl_nssel[key];
        entry.sel = *t.ns_sel;
        edit(&entry.refs, i);
        if (entry.refs.empty()) tmpl_nssel.erase(key);
      } else if (t.kind == Template::Kind::kSelector) {
        edit(&tmpl_by_ns[t.policy_ns], i);
        if (tmpl_by_ns[t.policy_ns].empty()) tmpl_by_ns.erase(t.policy_ns);
      } else {
        const NamedPort np{t.ps.name, t.ps.protocol};
        edit(&tmpl_named[np], i);
        if (tmpl_named[np].empty()) tmpl_named.erase(np);
      }
    }
  }

  // The labels a namespace selector sees for `ns` in `s`. `current`: `s` is the State the
  // indexes describe; otherwise `changed` names the namespaces whose labels differ between
  // `s` and it. Labels the index lacks are computed into `scratch`.
  const Labels& LabelsOf(const State& s, const std::string& ns, bool current,
                         const std::set<std::string>& changed,
                         std::map<std::string, Labels>* scratch) const {
    if (current || !changed.count(ns)) {
      if (const Labels* l = ns_index.Find(ns)) return *l;
    }
    auto it = scratch->find(ns);
    if (it == scratch->end()) it = scratch->emplace(ns, NamespaceLabels(s, ns)).first;
    return it->second;
  }

  // The pods whose standing as peers `delta` may change: the changed pods and every pod of a
  // changed namespace (by key, as of `new_state`).
  static std::set<std::string> PeerKeys(const State& new_state, const Delta& delta) {
    std::set<std::string> keys(delta.pods.begin(), delta.pods.end());
    for (const std::string& ns : delta.namespaces) {
      ForEachInNamespace(new_state.pods, ns, [&](const Pod& pod) { keys.insert(pod.Key()); });
    }
    return keys;
  }

  // Calls fn(pod, labels of its namespace, sign) for the peer-eligible old version (sign -1,
  // from `old_state`) and new version (+1, from `new_state`, which the indexes describe) of each
  // pod in `keys` (PeerKeys); a pod `delta` does not name has the same version on both sides.
  // Stops at fn's first error.
  template <typename Fn>
  absl::Status ForEachPeerVersion(const State& old_state, const State& new_state,
                                  const Delta& delta, const std::set<std::string>& keys,
                                  std::map<std::string, Labels>* old_scratch,
                                  std::map<std::string, Labels>* new_scratch, Fn fn) const {
    for (const std::string& key : keys) {
      const bool changed = delta.pods.count(key) > 0;
      const Pod* versions[2] = {changed ? old_state.FindPod(key) : new_state.FindPod(key),
                                new_state.FindPod(key)};
      for (int v = 0; v < 2; ++v) {
        const Pod* pod = versions[v];
        if (pod == nullptr || !PeerEligible(*pod)) continue;
        const std::string& ns = pod->namespace_name;
        const Labels& labels =
            v == 0 ? LabelsOf(old_state, ns, false, delta.namespaces, old_scratch)
                   : LabelsOf(new_state, ns, true, delta.namespaces, new_scratch);
        RETURN_IF_ERROR(fn(*pod, labels, v == 0 ? -1 : 1));
      }
    }
    return absl::OkStatus();
  }

  // Calls f(pod, labels of its namespace) for every pod of `s` (which the indexes describe) that
  // the selector peer of `t` (pod and/or namespace selector) may match: through the namespace
  // index, then through the pods of the matching namespaces or through the pod index, whichever
  // visits fewer pods.
  template <typename F>
  void ForEachSelectorCandidate(const State& s, const std::string& policy_ns,
                                const std::optional<LabelSelector>& pod_sel,
                                const std::optional<LabelSelector>& ns_sel, F f) const {
    if (!ns_sel) {
      const Labels* labels = ns_index.Find(policy_ns);
      if (labels == nullptr) return;  // no pods
      ForEachInNamespace(s.pods, policy_ns, [&](const Pod& pod) { f(pod, *labels); });
      return;
    }
    std::map<std::string, const Labels*> matching;
    size_t ns_pods = 0;
    ns_index.ForEachMatch(*ns_sel, [&](const std::string& ns, const Labels& labels) {
      matching.emplace(ns, &labels);
      auto n = pod_count_by_ns.find(ns);
      if (n != pod_count_by_ns.end()) ns_pods += static_cast<size_t>(n->second);
    });
    if (matching.empty()) return;
    if (pod_sel && pod_index.CandidateCount(*pod_sel) < ns_pods) {
      pod_index.ForEachMatch(*pod_sel, [&](const std::string& key, const Labels&) {
        auto m = matching.find(NamespaceOf(key));
        if (m == matching.end()) return;
        if (const Pod* pod = s.FindPod(key)) f(*pod, *m->second);
      });
      return;
    }
    for (const auto& entry : matching) {
      const Labels& labels = *entry.second;
      ForEachInNamespace(s.pods, entry.first, [&](const Pod& pod) { f(pod, labels); });
    }
  }

  // The pod addresses that the selector peers of `rule` (of `policy`) match in `s` (which the
  // indexes describe), summed over its selector peers.
  uint64_t SelectorAddrs(const State& s, const NetworkPolicy& policy, const Rule& rule) const {
    uint64_t n = 0;
    for (const Peer& peer : rule.peers) {
      if (peer.ip_block || (!peer.pod_selector && !peer.namespace_selector)) continue;
      ForEachSelectorCandidate(
          s, policy.namespace_name, peer.pod_selector, peer.namespace_selector,
          [&](const Pod& pod, const Labels&) {
            if (!PeerEligible(pod)) return;
            if (peer.pod_selector && !Matches(*peer.pod_selector, pod.labels)) return;
            n += internal::PeerPodAddrs(pod);
          });
    }
    return n;
  }

  // The large-rule decision for building groups of direction `dir` from `s` (which the indexes
  // describe): counts from `out`, else from `known` (the committed counts, not for
  // `changed_policies`), else computed from `s` and stored into `out`.
  LargeFn TrackingLargeFn(const State& s, Dir dir, std::map<RuleId, Tracked>* out,
                          const std::map<RuleId, Tracked>* known,
                          const std::set<std::string>* changed_policies) const {
    return [this, &s, dir, out, known, changed_policies](const NetworkPolicy& policy, size_t index,
                                                         const Rule& rule,
                                                         const std::vector<PortSpec>& specs) {
      const internal::LargeShape shape = internal::LargeShapeOf(rule, dir, specs);
      if (!internal::LargeDependsOnPods(shape)) return internal::IsLarge(shape, 0);
      const RuleId id{policy.Key(), static_cast<int>(dir), index};
      auto it = out->find(id);
      if (it == out->end() && !changed_policies->count(policy.Key())) {
        auto k = known->find(id);
        if (k != known->end()) return internal::IsLarge(shape, k->second.addrs);
      }
      if (it == out->end()) {
        it = out->emplace(id, Tracked{shape, SelectorAddrs(s, policy, rule)}).first;
      }
      return internal::IsLarge(shape, it->second.addrs);
    };
  }

  // Adds to shared set `set` the contribution of every pod of `s` (which the indexes describe)
  // through its templates `templates` (all of them when null).
  absl::Status Fill(const State& s, SharedSet* set,
                    const std::vector<const Template*>* templates = nullptr) const {
    std::vector<const Template*> all;
    if (templates == nullptr) {
      for (const Template& t : set->templates) all.push_back(&t);
      templates = &all;
    }
    Contribution c;
    absl::Status st;
    for (const Template* tp : *templates) {
      const Template& t = *tp;
      auto visit = [&](const Pod& pod, const Labels& labels) {
        if (!st.ok()) return;
        c.clear();
        st = Contribute(t, pod, labels, &c);
        for (auto& [slot, box] : c) {
          if (slot == set->id) set->counts[std::move(box)]++;
        }
      };
      if (t.kind == Template::Kind::kSelector) {
        ForEachSelectorCandidate(s, t.policy_ns, t.pod_sel, t.ns_sel, visit);
      } else {
        auto it = pods_by_port.find({t.ps.name, t.ps.protocol});
        if (it != pods_by_port.end()) {
          for (const std::string& key : it->second) {
            const Pod* pod = s.FindPod(key);
            if (pod == nullptr) continue;
            std::map<std::string, Labels> unused;
            visit(*pod, LabelsOf(s, pod->namespace_name, true, {}, &unused));
          }
        }
      }
      RETURN_IF_ERROR(st);
    }
    return absl::OkStatus();
  }

  // ---- the steps of an Update ----

  // Policies of the delta, checked before anything else (what the loader should have refused).
  absl::Status ValidatePolicies(const Plan& p) const {
    for (const std::string& key : p.delta.policies) {
      auto it = p.new_state.policies.find(key);
      if (it != p.new_state.policies.end()) RETURN_IF_ERROR(ValidateObject(it->second));
    }
    return absl::OkStatus();
  }

  // The local pods whose groups may change (changed and relocated pods, every local pod of a
  // namespace whose policies changed), and their groups in the new State.
  absl::Status RegroupLocalPods(Plan* p) const {
    p->affected.insert(p->delta.pods.begin(), p->delta.pods.end());
    p->affected.insert(p->relocated.begin(), p->relocated.end());
    for (const std::string& key : p->delta.policies) {
      auto it = local_by_ns.find(NamespaceOf(key));
      if (it != local_by_ns.end()) p->affected.insert(it->second.begin(), it->second.end());
    }
    for (const std::string& key : p->affected) {
      auto old = members.find(key);
      if (old != members.end()) {
        for (const std::string& g : old->second.gkey) {
          if (!g.empty()) --p->count_delta[g];
        }
      }
      const Pod* pod = p->new_state.FindPod(key);
      if (pod == nullptr || !IsLocalPod(*pod, p->o)) continue;
      Membership m;
      m.ips = pod->ips;
      for (Dir dir : {Dir::kIngress, Dir::kEgress}) {
        ASSIGN_OR_RETURN(std::optional<GroupSpec> spec, MembershipOf(p->new_state, *pod, dir));
        if (!spec) continue;
        m.gkey[static_cast<int>(dir)] = spec->key;
        ++p->count_delta[spec->key];
        p->specs.emplace(spec->key, *std::move(spec));
      }
      if (!m.gkey[0].empty() || !m.gkey[1].empty()) p->next_members[key] = std::move(m);
    }
    return absl::OkStatus();
  }

  // Rules whose large-rule decision depends on pods: their counts in the new State, and the
  // policies with a rule crossing the threshold (their groups change layout: rebuilt).
  absl::Status RecountLargeRules(Plan* p, const std::set<std::string>& peers) const {
    if (tracked.empty() || (p->delta.pods.empty() && p->delta.namespaces.empty())) {
      return absl::OkStatus();
    }
    struct Seen {
      const Pod* pod;
      const Labels* labels;
      int sign;
    };
    std::vector<Seen> seen;
    std::map<std::string, Labels> old_scratch, new_scratch;
    RETURN_IF_ERROR(ForEachPeerVersion(p->old_state, p->new_state, p->delta, peers, &old_scratch,
                                       &new_scratch,
                                       [&](const Pod& pod, const Labels& labels, int sign) {
                                         seen.push_back({&pod, &labels, sign});
                                         return absl::OkStatus();
                                       }));
    for (const auto& [id, t] : tracked) {
      const std::string& pkey = std::get<0>(id);
      if (p->delta.policies.count(pkey)) continue;  // recounted when its groups are rebuilt
      auto pit = p->old_state.policies.find(pkey);
      if (pit == p->old_state.policies.end()) continue;
      const NetworkPolicy& policy = pit->second;
      const std::vector<Rule>& rules =
          std::get<1>(id) == static_cast<int>(Dir::kIngress) ? policy.ingress : policy.egress;
      if (std::get<2>(id) >= rules.size()) continue;
      const Rule& rule = rules[std::get<2>(id)];
      int64_t d = 0;
      for (const Seen& x : seen) {
        for (const Peer& peer : rule.peers) {
          if (peer.ip_block || (!peer.pod_selector && !peer.namespace_selector)) continue;
          if (peer.namespace_selector ? !Matches(*peer.namespace_selector, *x.labels)
                                      : x.pod->namespace_name != policy.namespace_name) {
            continue;
          }
          if (peer.pod_selector && !Matches(*peer.pod_selector, x.pod->labels)) continue;
          d += x.sign * static_cast<int64_t>(internal::PeerPodAddrs(*x.pod));
        }
      }
      if (d == 0) continue;
      Tracked next = t;
      next.addrs = static_cast<uint64_t>(static_cast<int64_t>(t.addrs) + d);
      if (internal::IsLarge(t.shape, t.addrs) != internal::IsLarge(next.shape, next.addrs)) {
        p->flipped.insert(pkey);
      }
      p->next_tracked[id] = next;
    }
    return absl::OkStatus();
  }

  // Groups that change: deleted (no member left), created, rebuilt (a policy of theirs changed,
  // or a rule of one crossed the large-rule threshold).
  void ClassifyGroups(Plan* p) const {
    for (const auto& [gkey, d] : p->count_delta) {
      auto it = groups.find(gkey);
      if (it == groups.end()) {
        if (d > 0) p->created.insert(gkey);
      } else if (static_cast<int>(it->second->members.size()) + d <= 0) {
        p->deleted.insert(gkey);
      }
    }
    if (p->delta.policies.empty() && p->flipped.empty()) return;
    for (const auto& [gkey, g] : groups) {
      if (p->deleted.count(gkey)) continue;
      for (const std::string& policy : g->spec.policies) {
        if (p->delta.policies.count(policy) || p->flipped.count(policy)) {
          p->rebuilt.insert(gkey);
          break;
        }
      }
    }
  }

  // Names the created groups (a name already taken needs a salt: from the empty State they
  // are salted in key order as RULESET.md says; otherwise p->full_update) and builds the
  // created and rebuilt groups from the new State.
  absl::Status BuildFreshGroups(Plan* p) const {
    std::set<std::string> fresh_names;
    for (const std::string& gkey : p->created) {
      auto g = std::make_unique<Group>();
      g->spec = p->specs.at(gkey);
      g->name = GroupName(g->spec);
      if (names.count(g->name) || fresh_names.count(g->name)) {
        if (!groups.empty()) {
          p->full_update = true;  // a salted name (RULESET.md): rare
          return absl::OkStatus();
        }
        const std::string& first = g->spec.policies.front();
        const size_t slash = first.find('/');
        for (int attempt = 1; fresh_names.count(g->name); ++attempt) {
          g->name = internal::GroupName(g->spec.dir, first.substr(0, slash),
                                        first.substr(slash + 1), absl::StrCat(gkey, "#", attempt));
        }
        p->salted = true;
      }
      fresh_names.insert(g->name);
      p->fresh.emplace(gkey, std::move(g));
    }
    for (const std::string& gkey : p->rebuilt) {
      auto g = std::make_unique<Group>();
      g->spec = groups.at(gkey)->spec;
      g->name = groups.at(gkey)->name;
      p->fresh.emplace(gkey, std::move(g));
    }
    for (auto& [gkey, g] : p->fresh) {
      RETURN_IF_ERROR(Shape(
          p->new_state,
          TrackingLargeFn(p->new_state, g->spec.dir, &p->next_tracked, &tracked, &p->delta.policies),
          g.get()));
    }
    return ShareSets(p);
  }

  // The sets of the fresh groups: each present set's definition, the shared set it looks up
  // (held, or fresh: named in definition order and filled from the new State), and the held
  // sets no group looks up afterwards.
  absl::Status ShareSets(Plan* p) const {
    for (const std::set<std::string>* gone : {&p->deleted, &p->rebuilt}) {
      for (const std::string& gkey : *gone) {
        for (const std::string& def : groups.at(gkey)->defs) {
          if (!def.empty()) --p->set_refs_delta[def];
        }
      }
    }
    for (auto& [gkey, g] : p->fresh) {
      const SlotId ids = g->Ids();
      g->defs.assign(static_cast<size_t>(ids), "");
      for (SlotId id = 0; id < ids; ++id) {
        if (!g->Present(id)) continue;
        SetParts& parts = g->parts[static_cast<size_t>(id)];
        std::string def = SetDef(g->spec.dir, id, parts);
        ++p->set_refs_delta[def];
        if (!shared.count(def) && !p->fresh_sets.count(def)) {
          auto set = std::make_unique<SharedSet>();
          set->id = CanonicalId(id);
          set->dir = g->spec.dir;
          set->def = def;
          set->comment = SharedSetComment(id, parts);
          set->counts = std::move(parts.counts);
          set->templates = std::move(parts.templates);
          for (Template& t : set->templates) {
            if (t.large >= 0) t.large = 0;
          }
          p->fresh_sets.emplace(def, std::move(set));
        }
        g->defs[static_cast<size_t>(id)] = std::move(def);
      }
      g->parts.clear();
    }
    std::set<std::string> fresh_names;
    for (auto& [def, set] : p->fresh_sets) {
      set->name = SharedSetName(set->dir, set->id, def);
      if (set_names.count(set->name) || fresh_names.count(set->name)) {
        if (!shared.empty()) {
          p->full_update = true;  // a salted name, as for groups: rare
          return absl::OkStatus();
        }
        for (int attempt = 1; fresh_names.count(set->name); ++attempt) {
          set->name = SharedSetName(set->dir, set->id, absl::StrCat(def, "#", attempt));
        }
        p->salted = true;
      }
      fresh_names.insert(set->name);
    }
    for (auto& [gkey, g] : p->fresh) {
      g->set_names.assign(g->defs.size(), "");
      for (size_t id = 0; id < g->defs.size(); ++id) {
        const std::string& def = g->defs[id];
        if (def.empty()) continue;
        auto held = shared.find(def);
        g->set_names[id] =
            held != shared.end() ? held->second->name : p->fresh_sets.at(def)->name;
      }
    }
    for (const auto& [def, d] : p->set_refs_delta) {
      auto held = shared.find(def);
      if (held != shared.end() && held->second->refs + d <= 0) {
        p->dying_sets.insert(held->second.get());
      }
    }
    return absl::OkStatus();
  }

  // A set of one template and no static elements holds exactly what that template adds: the
  // part a larger set made of it can copy instead of enumerating its peers again.
  static bool SinglePart(const SharedSet& set) {
    return set.templates.size() == 1 && set.counts.empty();
  }

  // Fills the fresh sets from the new State (PeerElementChanges has run): a set of one template
  // by enumerating its peers; a union, part by part, from the set that holds that part alone
  // when one is held (its elements, with this update's changes of them) or fresh, and by
  // enumerating the peers of the other parts.
  absl::Status FillFreshSets(Plan* p) const {
    std::vector<SharedSet*> unions;
    for (auto& [def, set] : p->fresh_sets) {
      if (SinglePart(*set)) {
        RETURN_IF_ERROR(Fill(p->new_state, set.get()));
      } else {
        unions.push_back(set.get());
      }
    }
    for (SharedSet* set : unions) {
      std::vector<const Template*> rest;
      for (const Template& t : set->templates) {
        SetParts alone;
        alone.templates.push_back(t);
        const std::string def = SetDef(set->dir, set->id, alone);
        const Counts* from = nullptr;
        const std::map<Box, int>* changes = nullptr;
        auto held = shared.find(def);
        if (held != shared.end() && !p->dying_sets.count(held->second.get())) {
          from = &held->second->counts;
          auto d = p->element_delta.find(held->second.get());
          if (d != p->element_delta.end()) changes = &d->second;
        } else if (auto fresh = p->fresh_sets.find(def); fresh != p->fresh_sets.end()) {
          from = &fresh->second->counts;
        }
        if (from == nullptr) {
          rest.push_back(&t);
          continue;
        }
        AddCounts(*from, &set->counts);
        if (changes != nullptr) AddCounts(*changes, &set->counts);
      }
      if (!rest.empty()) RETURN_IF_ERROR(Fill(p->new_state, set, &rest));
    }
    return absl::OkStatus();
  }

  // counts += add (entries reaching zero are removed).
  static void AddCounts(const Counts& add, Counts* counts) {
    auto hint = counts->begin();
    for (const auto& [box, n] : add) {
      if (n == 0) continue;
      hint = counts->try_emplace(hint, box, 0);
      hint->second += n;
      if (hint->second <= 0) {
        hint = counts->erase(hint);
      } else {
        ++hint;
      }
    }
  }

  // Peer changes seen by the groups that stay as they are: element count changes.
  absl::Status PeerElementChanges(Plan* p, const std::set<std::string>& peers) const {
    std::map<std::string, Labels> old_scratch, new_scratch;
    Contribution c;
    return ForEachPeerVersion(
        p->old_state, p->new_state, p->delta, peers, &old_scratch, &new_scratch,
        [&](const Pod& pod, const Labels& labels, int sign) -> absl::Status {
          const std::string& ns = pod.namespace_name;
          std::vector<const std::vector<TRef>*> lists;
          for (const auto& [sel_key, entry] : tmpl_nssel) {
            if (Matches(entry.sel, labels)) lists.push_back(&entry.refs);
          }
          auto by_ns = tmpl_by_ns.find(ns);
          if (by_ns != tmpl_by_ns.end()) lists.push_back(&by_ns->second);
          std::set<NamedPort> named_ports;
          for (const ContainerPort& port : pod.ports) {
            if (port.name.empty() || !named_ports.insert({port.name, port.protocol}).second) {
              continue;
            }
            auto named = tmpl_named.find({port.name, port.protocol});
            if (named != tmpl_named.end()) lists.push_back(&named->second);
          }
          for (const std::vector<TRef>* list : lists) {
            for (const TRef& r : *list) {
              if (!p->dying_sets.empty() && p->dying_sets.count(r.s)) continue;
              c.clear();
              RETURN_IF_ERROR(Contribute(r.s->templates[r.i], pod, labels, &c));
              for (auto& [slot, box] : c) {
                if (slot == r.s->id) p->element_delta[r.s][std::move(box)] += sign;
              }
            }
          }
          return absl::OkStatus();
        });
  }

  // Every step that can fail, on the indexes of the new State; changes nothing else.
  absl::Status PlanUpdate(Plan* p) const {
    RETURN_IF_ERROR(RegroupLocalPods(p));
    std::set<std::string> peers;
    // No group and no tracked rule: no peer can change anything held.
    if (!groups.empty() || !tracked.empty()) peers = PeerKeys(p->new_state, p->delta);
    RETURN_IF_ERROR(RecountLargeRules(p, peers));
    ClassifyGroups(p);
    RETURN_IF_ERROR(BuildFreshGroups(p));
    if (p->full_update) return absl::OkStatus();
    RETURN_IF_ERROR(PeerElementChanges(p, peers));
    return FillFreshSets(p);
  }

  // ---- the steps of a commit (nothing fails) ----

  // What conntrack::RevocationFilters reads of the program before the update (Update's
  // `before`): chains, set definitions, the verdict maps' elements (the elements of the sets
  // the transaction deletes or re-creates follow in DiffChangedGroups).
  void SaveBefore(Program* before) const {
    *before = Program();
    before->table = prog.table;
    before->comment = prog.comment;
    before->chains = prog.chains;
    before->sets = prog.sets;
    for (Dir d : {Dir::kIngress, Dir::kEgress}) {
      for (Family f : {Family::kV4, Family::kV6}) {
        auto it = prog.elements.find(DispatchMap(d, f));
        if (it != prog.elements.end()) before->elements.insert(*it);
      }
    }
  }

  // Moves the dispatch and self entries of the affected pods to their new groups, in the held
  // program and as element commands (`dels`, `adds`).
  void MoveDispatch(const Plan& p, std::vector<std::pair<std::string, Element>>* dels,
                    std::vector<std::pair<std::string, Element>>* adds) {
    auto chain_of = [&](const std::string& gkey) -> const std::string& {
      auto f = p.fresh.find(gkey);
      return f != p.fresh.end() ? f->second->name : groups.at(gkey)->name;
    };
    std::set<std::pair<int, IpAddr>> touched_dispatch;
    std::set<IpAddr> touched_self;
    std::map<std::pair<int, IpAddr>, std::optional<std::pair<std::string, std::string>>>
        old_winner;
    std::map<IpAddr, bool> old_self;
    auto winner = [&](int d,
                      const IpAddr& ip) -> std::optional<std::pair<std::string, std::string>> {
      auto it = dispatch[d].find(ip);
      if (it == dispatch[d].end() || it->second.empty()) return std::nullopt;
      return *it->second.begin();
    };
    auto touch = [&](const Membership& m) {
      for (const IpAddr& ip : m.ips) {
        for (int d = 0; d < 2; ++d) {
          if (touched_dispatch.insert({d, ip}).second) old_winner[{d, ip}] = winner(d, ip);
        }
        if (touched_self.insert(ip).second) {
          auto it = self.find(ip);
          old_self[ip] = it != self.end() && !it->second.empty();
        }
      }
    };
    for (const std::string& key : p.affected) {
      auto old = members.find(key);
      if (old != members.end()) touch(old->second);
      auto next = p.next_members.find(key);
      if (next != p.next_members.end()) touch(next->second);
    }
    // Group chain names stay with their keys, so only membership changes move entries.
    for (const std::string& key : p.affected) {
      auto old = members.find(key);
      if (old == members.end()) continue;
      for (const IpAddr& ip : old->second.ips) {
        for (int d = 0; d < 2; ++d) {
          auto it = dispatch[d].find(ip);
          if (it == dispatch[d].end()) continue;
          it->second.erase(key);
          if (it->second.empty()) dispatch[d].erase(it);
        }
        auto s = self.find(ip);
        if (s != self.end()) {
          s->second.erase(key);
          if (s->second.empty()) self.erase(s);
        }
      }
      for (const std::string& g : old->second.gkey) {
        if (!g.empty()) groups.at(g)->members.erase(key);
      }
      members.erase(old);
    }
    for (const auto& [key, m] : p.next_members) {
      for (int d = 0; d < 2; ++d) {
        if (m.gkey[d].empty()) continue;
        for (const IpAddr& ip : m.ips) dispatch[d][ip][key] = chain_of(m.gkey[d]);
      }
      for (const IpAddr& ip : m.ips) self[ip].insert(key);
    }
    std::map<std::string, std::pair<std::vector<Element>, std::vector<Element>>> edits;
    for (const auto& [d_ip, was] : old_winner) {
      const auto& [d, ip] = d_ip;
      std::optional<std::pair<std::string, std::string>> now = winner(d, ip);
      if (was == now) continue;
      const std::string map = DispatchMap(static_cast<Dir>(d), ip.family);
      if (was) {
        Element e{{FieldValue::Addr(ip)}, Verdict::Jump(was->second), nft::CommentFrom(was->first)};
        dels->emplace_back(map, e);
        edits[map].first.push_back(std::move(e));
      }
      if (now) {
        Element e{{FieldValue::Addr(ip)}, Verdict::Jump(now->second), nft::CommentFrom(now->first)};
        adds->emplace_back(map, e);
        edits[map].second.push_back(std::move(e));
      }
    }
    for (const auto& [ip, was] : old_self) {
      auto it = self.find(ip);
      const bool now = it != self.end() && !it->second.empty();
      if (was == now) continue;
      const std::string set = ip.family == Family::kV4 ? kSelfV4 : kSelfV6;
      Element e{{FieldValue::Addr(ip), FieldValue::Addr(ip)}, std::nullopt, ""};
      if (was) {
        dels->emplace_back(set, e);
        edits[set].first.push_back(std::move(e));
      } else {
        adds->emplace_back(set, e);
        edits[set].second.push_back(std::move(e));
      }
    }
    for (auto& [set, e] : edits) EditElements(&prog, set, std::move(e.first), std::move(e.second));
  }

  // The created, rebuilt and deleted groups: their old objects leave the held program, the new
  // ones enter it; with `tx`, the nft::Diff between the two is appended (and the old elements
  // of what it deletes or re-creates go to `before`).
  void ReplaceChangedGroups(const Plan& p, nft::Transaction* tx, Program* before) {
    Program from, to;
    from.table = to.table = prog.table;
    for (const std::string& gkey : p.deleted) ExtractGroup(*groups.at(gkey), &prog, &from);
    for (const std::string& gkey : p.rebuilt) ExtractGroup(*groups.at(gkey), &prog, &from);
    for (const SharedSet* set : p.dying_sets) ExtractSet(set->name, &prog, &from);
    for (const auto& [gkey, g] : p.fresh) EmitGroup(*g, opts, &to);
    for (const auto& [def, set] : p.fresh_sets) EmitSet(*set, &to);
    if (tx != nullptr) {
      nft::Transaction diff = nft::Diff(from, to);
      for (nft::Command& c : diff.mutable_commands()) tx->Append(std::move(c));
    }
    if (before != nullptr) {
      for (auto& [name, els] : from.elements) before->elements[name] = std::move(els);
    }
    for (auto& [name, chain] : to.chains) prog.chains[name] = std::move(chain);
    for (auto& [name, set] : to.sets) prog.sets[name] = std::move(set);
    for (auto& [name, els] : to.elements) prog.elements[name] = std::move(els);
  }

  using ElementCommands = std::map<std::string, std::pair<nft::Set, std::vector<Element>>>;

  // The element count changes of the groups that stay: the elements that appear or disappear,
  // in the held program and into `dels` / `adds` (interval sets re-cut into disjoint boxes).
  void ApplyElementChanges(Plan* p, ElementCommands* dels, ElementCommands* adds) {
    for (auto& [set, changes] : p->element_delta) {
      const Slot slot = BaseSlot(set->id);
      Counts& counts = set->counts;
      const std::string& name = set->name;
      bool changed = false;
      std::vector<Element> slot_adds, slot_dels;
      for (auto& [box, d] : changes) {
        if (d == 0) continue;
        auto it = counts.find(box);
        const int was = it == counts.end() ? 0 : it->second;
        const int now = std::max(0, was + d);
        if ((was > 0) == (now > 0)) {
          if (it != counts.end()) it->second = now;
          continue;
        }
        changed = true;
        if (now > 0) {
          counts.emplace(box, now);
          if (!IsInterval(slot)) slot_adds.push_back(PointElement(slot, box));
        } else {
          counts.erase(it);
          if (!IsInterval(slot)) slot_dels.push_back(PointElement(slot, box));
        }
      }
      if (!changed) continue;
      if (IsInterval(slot)) {
        std::vector<Element> next = SlotElements(slot, counts);
        auto cur_it = prog.elements.find(name);
        static const std::vector<Element> kNone;
        const std::vector<Element>& cur = cur_it == prog.elements.end() ? kNone : cur_it->second;
        std::set_difference(cur.begin(), cur.end(), next.begin(), next.end(),
                            std::back_inserter(slot_dels),
                            [](const Element& a, const Element& b) { return a.key < b.key; });
        std::set_difference(next.begin(), next.end(), cur.begin(), cur.end(),
                            std::back_inserter(slot_adds),
                            [](const Element& a, const Element& b) { return a.key < b.key; });
        if (next.empty()) {
          prog.elements.erase(name);
        } else {
          prog.elements[name] = std::move(next);
        }
      } else {
        EditElements(&prog, name, slot_dels, slot_adds);
      }
      if (!slot_dels.empty()) {
        auto& entry = (*dels)[name];
        entry.first = prog.sets.at(name);
        for (Element& e : slot_dels) entry.second.push_back(std::move(e));
      }
      if (!slot_adds.empty()) {
        auto& entry = (*adds)[name];
        entry.first = prog.sets.at(name);
        for (Element& e : slot_adds) entry.second.push_back(std::move(e));
      }
    }
  }

  // The groups and their names, the shared sets (references, templates, names), and the
  // memberships follow the plan.
  void CommitGroups(Plan* p) {
    for (const std::string& gkey : p->deleted) {
      names.erase(groups.at(gkey)->name);
      groups.erase(gkey);
    }
    for (auto& [gkey, g] : p->fresh) {
      auto old = groups.find(gkey);
      if (old != groups.end()) {
        g->members = std::move(old->second->members);
        groups.erase(old);
      }
      names.insert(g->name);
      groups.emplace(gkey, std::move(g));
    }
    for (const auto& [def, d] : p->set_refs_delta) {
      auto held = shared.find(def);
      if (held == shared.end()) continue;  // fresh: below
      SharedSet* set = held->second.get();
      set->refs += d;
      if (set->refs > 0) continue;
      RegisterTemplates(set, false);
      set_names.erase(set->name);
      shared.erase(held);
    }
    for (auto& [def, set] : p->fresh_sets) {
      set->refs = p->set_refs_delta.at(def);
      set_names[set->name] = def;
      RegisterTemplates(set.get(), true);
      shared.emplace(def, std::move(set));
    }
    for (auto& [key, m] : p->next_members) {
      for (const std::string& gkey : m.gkey) {
        if (!gkey.empty()) groups.at(gkey)->members.insert(key);
      }
      members[key] = std::move(m);
    }
  }

  // Applies a plan: the held program, the transaction to it (when p->want_tx), the groups.
  nft::Transaction Commit(Plan* p, Program* before) {
    for (const std::string& key : p->delta.policies) {
      tracked.erase(tracked.lower_bound(RuleId{key, 0, 0}),
                    tracked.lower_bound(RuleId{key + '\0', 0, 0}));
    }
    for (auto& [id, t] : p->next_tracked) tracked[id] = t;
    if (!p->flipped.empty()) ++stats.large_rule_crossings;
    if (p->salted) name_clash = true;
    const bool structural = !p->created.empty() || !p->deleted.empty() || !p->rebuilt.empty();
    if (before != nullptr) SaveBefore(before);

    // The transaction: dispatch/self deletes first (they may name a chain Diff deletes), then
    // the changed groups' Diff, then the other element deletes, then every element add
    // (dispatch adds may name a chain Diff creates).
    nft::Transaction tx(prog.table);
    std::vector<std::pair<std::string, Element>> fixed_dels, fixed_adds;
    MoveDispatch(*p, &fixed_dels, &fixed_adds);
    ElementCommands dels, adds;
    if (p->want_tx) {
      std::map<std::string, std::vector<Element>> fixed;
      for (auto& [set, e] : fixed_dels) fixed[set].push_back(std::move(e));
      for (auto& [set, els] : fixed) tx.DeleteElements(prog.sets.at(set), std::move(els));
      for (auto& [set, e] : fixed_adds) {
        auto& entry = adds[set];
        entry.first = prog.sets.at(set);
        entry.second.push_back(std::move(e));
      }
    }
    if (structural) ReplaceChangedGroups(*p, p->want_tx ? &tx : nullptr, before);
    ApplyElementChanges(p, &dels, &adds);
    if (p->want_tx) {
      for (auto& [name, entry] : dels) tx.DeleteElements(entry.first, std::move(entry.second));
      for (auto& [name, entry] : adds) tx.AddElements(entry.first, std::move(entry.second));
    }
    CommitGroups(p);
    stats.groups_rebuilt +=
        static_cast<int64_t>(p->created.size() + p->deleted.size() + p->rebuilt.size());
    return tx;
  }

  // ---- entry points ----

  // The program of `state` from the empty one: the skeleton, then an Update from the empty
  // State. On error nothing is held.
  absl::Status ResetTo(const State& state, const CompileOptions& o) {
    const IncrementalStats kept = stats;  // the Update from empty is the Reset, not an update
    Clear();
    absl::Status st = ValidateOptions(o);
    if (st.ok()) {
      opts = o;
      prog = internal::Skeleton(o);
      held = true;
      static const State kEmpty;
      const Delta all = DiffStates(kEmpty, state);
      st = UpdateWith(kEmpty, state, all, o, nullptr, /*want_tx=*/false).status();
    }
    if (!st.ok()) Clear();
    stats = kept;
    return st;
  }

  // ResetTo, then the ClusterNetworkPolicy tiers over the program when the State has CNPs.
  absl::Status ResetWithTiers(const State& state, const CompileOptions& o) {
    if (!state.cluster_policies.empty()) {
      absl::Status st = internal::ValidateClusterState(state);
      if (!st.ok()) {
        Clear();
        return st;
      }
    }
    RETURN_IF_ERROR(ResetTo(state, o));
    if (!state.cluster_policies.empty()) BuildTiers(state, o);
    return absl::OkStatus();
  }

  // ---- the ClusterNetworkPolicy tiers (cluster.h) ----

  // What the tier layer reads of the NetworkPolicy indexes, which describe `s`.
  internal::TierEnv MakeTierEnv(const State& s) const {
    internal::TierEnv env;
    env.selector_candidates = [this, &s](const LabelSelector* pod_sel, const LabelSelector& ns_sel,
                                         const std::function<void(const Pod&, const Labels&)>& f) {
      std::optional<LabelSelector> pods;
      if (pod_sel != nullptr) pods = *pod_sel;
      ForEachSelectorCandidate(s, "", pods, std::optional<LabelSelector>(ns_sel), f);
    };
    env.group_chain = [this](const std::string& key, Dir dir) -> std::string {
      auto m = members.find(key);
      if (m == members.end()) return "";
      const std::string& gkey = m->second.gkey[static_cast<int>(dir)];
      return gkey.empty() ? "" : groups.at(gkey)->name;
    };
    env.np_dispatch = [this](Dir dir, const IpAddr& ip)
        -> std::optional<std::pair<std::string, std::string>> {
      auto it = dispatch[static_cast<int>(dir)].find(ip);
      if (it == dispatch[static_cast<int>(dir)].end() || it->second.empty()) return std::nullopt;
      return *it->second.begin();
    };
    env.np_self = [this](const IpAddr& ip) {
      auto it = self.find(ip);
      return it != self.end() && !it->second.empty();
    };
    return env;
  }

  // Applies `tx`, a transaction from `*p`, to `*p` (what the kernel would hold after it): a cost
  // proportional to the transaction.
  static void ApplyTransaction(const nft::Transaction& tx, Program* p) {
    using nft::ObjectKind;
    using nft::Verb;
    for (const nft::Command& c : tx.commands()) {
      const bool add = c.verb == Verb::kAdd || c.verb == Verb::kCreate;
      switch (c.kind) {
        case ObjectKind::kTable:
          break;
        case ObjectKind::kChain:
          if (add) {
            auto [it, fresh] = p->chains.try_emplace(c.chain.name, c.chain);
            if (fresh) it->second.rules.clear();
          } else if (c.verb == Verb::kFlush) {
            p->chains[c.chain.name].rules.clear();
          } else {
            p->chains.erase(c.chain.name);
          }
          break;
        case ObjectKind::kRule:
          p->chains[c.chain.name].rules.push_back(c.rule);
          break;
        case ObjectKind::kSet:
          if (add) {
            p->sets.try_emplace(c.set.name, c.set);
          } else if (c.verb == Verb::kFlush) {
            p->elements.erase(c.set.name);
          } else {
            p->sets.erase(c.set.name);
            p->elements.erase(c.set.name);
          }
          break;
        case ObjectKind::kElement:
          if (add) {
            EditElements(p, c.set.name, {}, c.elements);
          } else {
            EditElements(p, c.set.name, c.elements, {});
          }
          break;
      }
    }
  }

  static bool IsDispatchOrSelf(const std::string& set) {
    return set == kIngressDispatchV4 || set == kIngressDispatchV6 || set == kEgressDispatchV4 ||
           set == kEgressDispatchV6 || set == kSelfV4 || set == kSelfV6;
  }

  // The tiers of `state` over the NetworkPolicy program `prog` (which describes `state`), from
  // none: with_tiers.
  void BuildTiers(const State& state, const CompileOptions& o) {
    static const State kEmpty;
    tier_layer = internal::TierLayer();
    with_tiers = prog;
    Program from, to;
    tier_layer.Update(kEmpty, state, DiffStates(kEmpty, state), {}, {}, MakeTierEnv(state), o,
                      with_tiers, &from, &to);
    ApplyTransaction(nft::Diff(from, to), &with_tiers);
    tiered = true;
  }

  // What conntrack::RevocationFilters reads of `held` before `tx` (see SaveBefore).
  static void SaveBeforeTiered(const Program& held, const nft::Transaction& tx, Program* before) {
    *before = Program();
    before->table = held.table;
    before->comment = held.comment;
    before->chains = held.chains;
    before->sets = held.sets;
    for (Dir d : {Dir::kIngress, Dir::kEgress}) {
      for (Family f : {Family::kV4, Family::kV6}) {
        auto it = held.elements.find(DispatchMap(d, f));
        if (it != held.elements.end()) before->elements.insert(*it);
      }
    }
    for (const nft::Command& c : tx.commands()) {
      if (c.kind != nft::ObjectKind::kSet || c.verb == nft::Verb::kAdd ||
          c.verb == nft::Verb::kCreate) {
        continue;
      }
      auto it = held.elements.find(c.set.name);
      if (it != held.elements.end()) before->elements.insert(*it);
    }
  }

  // An Update while the State holds ClusterNetworkPolicies before or after: the NetworkPolicy
  // program moves as without them (its transaction less its dispatch and self elements), the
  // tier layer moves the tier chains and sets the change touches and recomputes the dispatch
  // and self entries of the addresses either side touched; the transaction is the tiers'
  // removals, the NetworkPolicy commands, then the tiers' additions (so a tier chain is gone
  // before the group chain it jumps to, and exists only after it).
  absl::StatusOr<nft::Transaction> UpdateTiered(const State& old_state, const State& new_state,
                                                const Delta& delta, const CompileOptions& o,
                                                Program* before) {
    const bool tiers_after = !new_state.cluster_policies.empty();
    const bool was_tiered = tiered;
    if (o.table != opts.table || o.node_name != opts.node_name ||
        o.rule_counters != opts.rule_counters || o.deny_log != opts.deny_log || name_clash) {
      return FullTieredUpdate(new_state, o, before);
    }
    RETURN_IF_ERROR(was_tiered ? internal::ValidateClusterDelta(new_state, delta)
                               : internal::ValidateClusterState(new_state));
    std::set<std::string> relocated;
    std::set_symmetric_difference(opts.attached_pods.begin(), opts.attached_pods.end(),
                                  o.attached_pods.begin(), o.attached_pods.end(),
                                  std::inserter(relocated, relocated.end()));
    Program old_full = was_tiered ? std::move(with_tiers) : prog;
    const int64_t fallbacks = stats.full_fallbacks;
    absl::StatusOr<nft::Transaction> np_tx =
        UpdateWith(old_state, new_state, delta, o, nullptr, /*want_tx=*/true);
    if (!np_tx.ok()) {
      if (was_tiered) with_tiers = std::move(old_full);
      return np_tx.status();
    }
    if (stats.full_fallbacks != fallbacks) return Retier(new_state, o, std::move(old_full), before);
    std::set<IpAddr> np_addrs;
    for (const nft::Command& c : np_tx->commands()) {
      if (c.kind != nft::ObjectKind::kElement || !IsDispatchOrSelf(c.set.name)) continue;
      for (const Element& e : c.elements) np_addrs.insert(e.key[0].addr_lo);
    }
    Program from, to;
    static const State kEmpty;
    bool ok;
    if (was_tiered) {
      ok = tier_layer.Update(old_state, new_state, delta, relocated, np_addrs,
                             MakeTierEnv(new_state), o, old_full, &from, &to);
    } else {
      tier_layer = internal::TierLayer();
      ok = tier_layer.Update(kEmpty, new_state, DiffStates(kEmpty, new_state), {}, np_addrs,
                             MakeTierEnv(new_state), o, old_full, &from, &to);
    }
    if (!ok) return Retier(new_state, o, std::move(old_full), before);
    const nft::Transaction tier_tx = nft::Diff(from, to);
    auto removal = [](const nft::Command& c) {
      return c.verb == nft::Verb::kFlush || c.verb == nft::Verb::kDelete ||
             c.verb == nft::Verb::kDestroy;
    };
    nft::Transaction tx(prog.table);
    for (const nft::Command& c : tier_tx.commands()) {
      if (removal(c)) tx.Append(c);
    }
    for (const nft::Command& c : np_tx->commands()) {
      if (c.kind != nft::ObjectKind::kElement || !IsDispatchOrSelf(c.set.name)) tx.Append(c);
    }
    for (const nft::Command& c : tier_tx.commands()) {
      if (!removal(c)) tx.Append(c);
    }
    if (before != nullptr) SaveBeforeTiered(old_full, tx, before);
    ApplyTransaction(tx, &old_full);
    if (tiers_after) {
      with_tiers = std::move(old_full);
      tiered = true;
    } else {
      with_tiers = Program();
      tier_layer = internal::TierLayer();
      tiered = false;
    }
    return tx;
  }

  // The tiers built afresh over the NetworkPolicy program (which describes `new_state`), and
  // the Diff of the whole programs from `old_full`.
  nft::Transaction Retier(const State& new_state, const CompileOptions& o, Program old_full,
                          Program* before) {
    if (!new_state.cluster_policies.empty()) {
      BuildTiers(new_state, o);
    } else {
      with_tiers = Program();
      tier_layer = internal::TierLayer();
      tiered = false;
    }
    nft::Transaction tx = nft::Diff(old_full, tiered ? with_tiers : prog);
    if (before != nullptr) *before = std::move(old_full);
    return tx;
  }

  // Compiles `state` aside, tiers included, and replaces everything held with it; the
  // transaction diffs the whole programs. On error nothing changes.
  absl::StatusOr<nft::Transaction> FullTieredUpdate(const State& state, const CompileOptions& o,
                                                    Program* before) {
    auto next = std::make_unique<Impl>();
    RETURN_IF_ERROR(next->ResetWithTiers(state, o));
    Program& old_full = tiered ? with_tiers : prog;
    nft::Transaction tx = nft::Diff(old_full, next->tiered ? next->with_tiers : next->prog);
    if (before != nullptr) *before = std::move(old_full);
    const IncrementalStats kept = stats;
    *this = std::move(*next);
    stats = kept;
    ++stats.full_fallbacks;
    return tx;
  }

  // Compiles `state` aside and replaces everything held with it; the transaction diffs the
  // whole programs. On error nothing changes.
  absl::StatusOr<nft::Transaction> FullUpdate(const State& state, const CompileOptions& o,
                                              Program* before) {
    auto next = std::make_unique<Impl>();
    RETURN_IF_ERROR(next->ResetTo(state, o));
    nft::Transaction tx = nft::Diff(prog, next->prog);
    if (before != nullptr) *before = std::move(prog);
    const IncrementalStats kept = stats;
    *this = std::move(*next);
    stats = kept;
    ++stats.full_fallbacks;
    return tx;
  }

  absl::StatusOr<nft::Transaction> UpdateWith(const State& old_state, const State& new_state,
                                              const Delta& delta, const CompileOptions& o,
                                              Program* before, bool want_tx) {
    if (!held) {
      return absl::FailedPreconditionError("incremental compiler: no program (Reset first)");
    }
    // Attached pods coming and going (CNI ADD/DEL) only move pods in or out of locality: they
    // are handled like changed pods. Another node or table (or counters switched) is a
    // different program altogether.
    if (o.table != opts.table || o.node_name != opts.node_name ||
        o.rule_counters != opts.rule_counters || o.deny_log != opts.deny_log || name_clash) {
      return FullUpdate(new_state, o, before);
    }
    Plan p(old_state, new_state, delta, o);
    p.want_tx = want_tx;
    if (o.attached_pods != opts.attached_pods) {
      std::set_symmetric_difference(opts.attached_pods.begin(), opts.attached_pods.end(),
                                    o.attached_pods.begin(), o.attached_pods.end(),
                                    std::inserter(p.relocated, p.relocated.end()));
    }
    RETURN_IF_ERROR(ValidatePolicies(p));
    const CompileOptions old_opts = opts;
    MoveIndexes(old_state, new_state, delta, p.relocated, old_opts, o);
    absl::Status st = PlanUpdate(&p);
    if (!st.ok() || p.full_update) {
      MoveIndexes(new_state, old_state, delta, p.relocated, o, old_opts);
      if (!st.ok()) return st;
      return FullUpdate(new_state, o, before);
    }
    nft::Transaction tx = Commit(&p, before);
    ++stats.updates;
    return tx;
  }
};

IncrementalCompiler::IncrementalCompiler() : impl_(std::make_unique<Impl>()) {}
IncrementalCompiler::~IncrementalCompiler() = default;

absl::StatusOr<nft::Transaction> IncrementalCompiler::Reset(const State& state,
                                                           const CompileOptions& opts) {
  RETURN_IF_ERROR(impl_->ResetWithTiers(state, opts));
  ++impl_->stats.resets;
  return nft::FullReplace(program());
}

absl::StatusOr<nft::Transaction> IncrementalCompiler::Update(const State& old_state,
                                                            const State& new_state,
                                                            const Delta& delta,
                                                            const CompileOptions& opts,
                                                            nft::Program* before) {
  Impl& im = *impl_;
  const bool tiers_after = !new_state.cluster_policies.empty();
  if (!im.held || (!im.tiered && !tiers_after)) {
    return im.UpdateWith(old_state, new_state, delta, opts, before, /*want_tx=*/true);
  }
  return im.UpdateTiered(old_state, new_state, delta, opts, before);
}

bool IncrementalCompiler::has_program() const { return impl_->held; }
const nft::Program& IncrementalCompiler::program() const {
  return impl_->tiered ? impl_->with_tiers : impl_->prog;
}
const CompileOptions& IncrementalCompiler::options() const { return impl_->opts; }

// Walks each group's rules in EmitGroup's order.
std::map<std::string, GroupRuleSources> IncrementalCompiler::RuleSources() const {
  std::map<std::string, GroupRuleSources> out;
  for (const auto& [key, g] : impl_->groups) {
    GroupRuleSources& r = out[g->name];
    r.ingress = g->spec.dir == Dir::kIngress;
    r.policies = g->spec.policies;
    if (g->all.present) {
      r.rules.push_back(g->all.list);
      continue;  // the chain is just `return`
    }
    for (Slot s : internal::kSlotOrder) {
      if (g->slots[s].present) r.rules.push_back(g->slots[s].list);
    }
    for (size_t k = 0; k < g->large.size(); ++k) {
      for (int part : {0, 1}) {
        if (g->Present(LargeId(k, part))) r.rules.push_back({g->large[k].src});
      }
    }
    // The closing drop: one rule, or with deny logs the logged drop and the counted rest.
    auto chain = impl_->prog.chains.find(g->name);
    const size_t n = chain == impl_->prog.chains.end() ? r.rules.size() + 1
                                                       : chain->second.rules.size();
    while (r.rules.size() < n) r.rules.push_back({});
  }
  if (impl_->tiered) {
    for (const auto& [name, sources] : impl_->tier_layer.sources()) out[name] = sources;
  }
  return out;
}
const IncrementalStats& IncrementalCompiler::stats() const { return impl_->stats; }

nft::Program IncrementalCompiler::TakeProgram() {
  nft::Program out = std::move(impl_->tiered ? impl_->with_tiers : impl_->prog);
  impl_->Clear();
  return out;
}

absl::StatusOr<nft::Program> Compile(const State& state, const CompileOptions& opts) {
  IncrementalCompiler::Impl impl;
  RETURN_IF_ERROR(impl.ResetWithTiers(state, opts));
  return std::move(impl.tiered ? impl.with_tiers : impl.prog);
}

}  // namespace netpol::compiler
