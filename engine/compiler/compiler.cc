// Compile(): State -> nft::Program. The steps:
//   1. validate the policies' ports (what the loader should already have
//   refused),
//   2. find the local pods and, per direction, the policies isolating each of
//   them,
//   3. group local pods by (direction, isolating policies, ingress named-port
//   resolution),
//   4. per group, turn every (rule, peer, port) into elements of a fixed set of
//   set kinds,
//   5. emit the static skeleton, the dispatch maps and one chain (+ its sets)
//   per group.
// RULESET.md documents the result.
#include "engine/compiler/compiler.h"

#include <algorithm>
#include <cstdint>
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
#include "engine/compiler/common.h"
#include "engine/selector/selector.h"
#include "engine/util/status_macros.h"

namespace netpol::compiler {
namespace internal {
namespace {

using nft::Chain;
using nft::Element;
using nft::FieldType;
using nft::FieldValue;
using nft::LookupMatch;
using nft::Program;
using nft::Selector;
using nft::Verdict;


constexpr uint8_t kIcmpv6 = 58;
// ICMPv6 neighbour discovery: router solicitation (133) .. neighbour
// advertisement (136).
constexpr uint8_t kNdFirstType = 133, kNdLastType = 136;

uint32_t ProtoPort(uint8_t proto, uint16_t port) { return uint32_t{proto} << 16 | port; }

template <typename T>
void SortUnique(std::vector<T>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

// ---- groups ----

struct Group {
  Dir dir = Dir::kIngress;
  std::vector<const NetworkPolicy*> policies;              // sorted by key
  Resolution resolution;                                   // ingress only
  std::vector<const Pod*> pods;                            // sorted by key
  std::string name;
};

// The pieces of one group chain: which set kinds exist (from the policies'
// shapes alone) and their elements (from the pods). Index 0/1 = IPv4/IPv6.
using SetKind = Sources;

struct GroupSets {
  SetKind all;                       // an unconditional allow
  SetKind a[2], p[2], ra[2], rp[2];  // peer-keyed
  SetKind x, xr;                     // any peer
  // Exact elements as packed integers (address; protocol << 16 | port), sorted
  // and deduplicated when emitted: much cheaper than ordered sets of IpAddr
  // tuples at 100k-element scale.
  std::vector<U128> a_el[2];
  std::vector<std::pair<U128, uint32_t>> p_el[2];
  std::vector<Box> ra_el[2], rp_el[2];
  std::vector<uint32_t> x_el;
  std::vector<Box> xr_el;
  // Large rules, in order: peers (per family) and ports in sets of their own.
  struct Large {
    std::string src;
    bool fam[2] = {false, false};  // whether it has peers of that family (a set and a rule)
    std::vector<Box> peers[2];
    std::vector<Box> ports;
  };
  std::vector<Large> large;

  SetKind& Kind(Slot slot) {
    const int f = Fam(SlotFamily(slot));
    switch (slot) {
      case kA4:
      case kA6:
        return a[f];
      case kP4:
      case kP6:
        return p[f];
      case kRa4:
      case kRa6:
        return ra[f];
      case kRp4:
      case kRp6:
        return rp[f];
      case kX:
        return x;
      default:
        return xr;
    }
  }

  void AddBox(Slot slot, const Box& b) {
    const int f = Fam(SlotFamily(slot));
    switch (slot) {
      case kA4:
      case kA6:
        a_el[f].push_back(b[0].lo);
        break;
      case kP4:
      case kP6:
        p_el[f].emplace_back(b[0].lo, ProtoPort(static_cast<uint8_t>(b[1].lo),
                                                static_cast<uint16_t>(b[2].lo)));
        break;
      case kRa4:
      case kRa6:
        ra_el[f].push_back(b);
        break;
      case kRp4:
      case kRp6:
        rp_el[f].push_back(b);
        break;
      case kX:
        x_el.push_back(ProtoPort(static_cast<uint8_t>(b[0].lo), static_cast<uint16_t>(b[1].lo)));
        break;
      default:
        xr_el.push_back(b);
        break;
    }
  }

  // The pod-independent share of a rule part from source `src`.
  void Add(const Part& part, const std::string& src) {
    if (part.all) all.Mark(src);
    for (Slot slot : part.marked) Kind(slot).Mark(src);
    for (const auto& [slot, b] : part.boxes) AddBox(slot, b);
  }
};

class Compiler {
 public:
  Compiler(const State& state, const CompileOptions& opts) : state_(state), opts_(opts) {}

  absl::StatusOr<Program> Run();

 private:
  absl::Status ValidatePolicies();
  const Labels& NamespaceLabels(const std::string& ns);
  const std::vector<const Pod*>& PeerPods(const NetworkPolicy& policy, const Peer& peer);
  // Whether `rule` of `policy` is a large rule for `dir` in the State (RULESET.md "Large rules").
  bool IsLargeRuleNow(const NetworkPolicy& policy, const Rule& rule, Dir dir,
                      const std::vector<PortSpec>& specs);
  // Non-hostNetwork pods resolving (name, protocol), with the resolved port.
  absl::StatusOr<const std::vector<std::pair<const Pod*, uint16_t>>*> PodsWithNamedPort(
      const NamedPort& np);
  absl::Status AddRule(const Group& g, const NetworkPolicy& policy, size_t index, const Rule& rule,
                       GroupSets* sets);
  absl::Status AddAnyPeer(const Group& g, const PortSpec& ps, const std::string& src,
                          GroupSets* sets);
  absl::Status AddPeer(const Group& g, const NetworkPolicy& policy, const Peer& peer,
                       const PortSpec& ps, const std::string& src, GroupSets* sets);
  void EmitGroup(const Group& g, GroupSets& sets, Program* prog);
  void EmitSkeleton(Program* prog);
  void AddSet(Program* prog, const std::string& name, std::vector<FieldType> key, bool interval,
              const std::string& comment, std::vector<Element> elements);
  // Adds g's set of kind `slot` with `elements` and the chain rule that looks it up.
  void EmitSet(const Group& g, Slot slot, const SetKind& kind, std::vector<Element> elements,
               nft::Chain* chain, Program* prog);

  const State& state_;
  const CompileOptions& opts_;
  std::map<std::string, Labels> ns_labels_;
  // Pods that can be selector peers (not hostNetwork, with an address), by
  // namespace.
  std::map<std::string, std::vector<const Pod*>> pods_by_ns_;
  // Policies by namespace (a policy selects pods of its own namespace only).
  std::map<std::string, std::vector<const NetworkPolicy*>> policies_by_ns_;
  std::map<const Peer*, std::vector<const Pod*>> peer_pods_;
  std::map<NamedPort, std::vector<std::pair<const Pod*, uint16_t>>> named_index_;
  std::map<std::pair<const NetworkPolicy*, std::pair<int, size_t>>, std::vector<PortSpec>> ports_;
};

absl::Status Compiler::ValidatePolicies() {
  for (const auto& [key, policy] : state_.policies) {
    for (Dir dir : {Dir::kIngress, Dir::kEgress}) {
      const std::vector<Rule>& rules = dir == Dir::kIngress ? policy.ingress : policy.egress;
      for (size_t i = 0; i < rules.size(); ++i) {
        ASSIGN_OR_RETURN(std::vector<PortSpec> specs, NormalizePorts(policy, dir, i, rules[i]));
        ports_[{&policy, {static_cast<int>(dir), i}}] = std::move(specs);
      }
    }
    RETURN_IF_ERROR(CheckPolicySize(policy));
  }
  return absl::OkStatus();
}

const Labels& Compiler::NamespaceLabels(const std::string& ns) {
  auto it = ns_labels_.find(ns);
  if (it != ns_labels_.end()) return it->second;
  return ns_labels_.emplace(ns, internal::NamespaceLabels(state_, ns)).first->second;
}

const std::vector<const Pod*>& Compiler::PeerPods(const NetworkPolicy& policy, const Peer& peer) {
  auto it = peer_pods_.find(&peer);
  if (it != peer_pods_.end()) return it->second;
  // Order does not matter: every consumer puts addresses into sorted sets.
  std::vector<const Pod*> pods;
  auto add_namespace = [&](const std::string& ns) {
    auto in_ns = pods_by_ns_.find(ns);
    if (in_ns == pods_by_ns_.end()) return;
    for (const Pod* pod : in_ns->second) {
      if (!peer.pod_selector || Matches(*peer.pod_selector, pod->labels)) pods.push_back(pod);
    }
  };
  if (peer.namespace_selector) {
    for (const auto& [ns, unused] : pods_by_ns_) {
      if (Matches(*peer.namespace_selector, NamespaceLabels(ns))) add_namespace(ns);
    }
  } else if (peer.pod_selector) {
    add_namespace(policy.namespace_name);
  }
  return peer_pods_.emplace(&peer, std::move(pods)).first->second;
}

bool Compiler::IsLargeRuleNow(const NetworkPolicy& policy, const Rule& rule, Dir dir,
                              const std::vector<PortSpec>& specs) {
  const LargeShape shape = LargeShapeOf(rule, dir, specs);
  if (!LargeDependsOnPods(shape)) return IsLarge(shape, 0);
  uint64_t addrs = 0;
  for (const Peer& peer : rule.peers) {
    if (peer.ip_block || (!peer.pod_selector && !peer.namespace_selector)) continue;
    for (const Pod* pod : PeerPods(policy, peer)) addrs += PeerPodAddrs(*pod);
  }
  return IsLarge(shape, addrs);
}

absl::StatusOr<const std::vector<std::pair<const Pod*, uint16_t>>*> Compiler::PodsWithNamedPort(
    const NamedPort& np) {
  auto it = named_index_.find(np);
  if (it != named_index_.end()) return &it->second;
  std::vector<std::pair<const Pod*, uint16_t>> pods;
  for (const auto& [key, pod] : state_.pods) {
    if (pod.host_network || pod.ips.empty()) continue;
    ASSIGN_OR_RETURN(std::optional<uint16_t> port, ResolvePort(pod, np.first, np.second));
    if (port) pods.emplace_back(&pod, *port);
  }
  return &named_index_.emplace(np, std::move(pods)).first->second;
}

absl::Status Compiler::AddAnyPeer(const Group& g, const PortSpec& ps, const std::string& src,
                                  GroupSets* s) {
  const Part part =
      AnyPeerPart(ps, g.dir, IngressPort(ps, g.dir, g.resolution));
  s->Add(part, src);
  if (part.pods_named_port) {
    const uint8_t proto = static_cast<uint8_t>(ps.protocol);
    ASSIGN_OR_RETURN(auto* pods, PodsWithNamedPort({ps.name, ps.protocol}));
    for (const auto& [pod, port] : *pods) {
      for (const IpAddr& ip : pod->ips) {
        s->p_el[Fam(ip.family)].emplace_back(AddrToU128(ip), ProtoPort(proto, port));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Compiler::AddPeer(const Group& g, const NetworkPolicy& policy, const Peer& peer,
                               const PortSpec& ps, const std::string& src, GroupSets* s) {
  const uint8_t proto = static_cast<uint8_t>(ps.protocol);
  // kNamed on ingress: resolved on the group's pods
  const std::optional<uint16_t> ingress_port = IngressPort(ps, g.dir, g.resolution);
  if (peer.ip_block) {
    const IPBlock& block = *peer.ip_block;
    const Family fam = block.cidr.addr.family;
    const int f = Fam(fam);
    std::vector<IpRange> ranges = CidrMinus(block.cidr, block.except);
    const Part part = IpBlockPart(ps, g.dir, ingress_port, f, ranges);
    s->Add(part, src);
    if (part.pods_named_port) {
      ASSIGN_OR_RETURN(auto* pods, PodsWithNamedPort({ps.name, ps.protocol}));
      for (const auto& [pod, port] : *pods) {
        for (const IpAddr& ip : pod->ips) {
          if (ip.family == fam && InRanges(ip, ranges)) {
            s->p_el[f].emplace_back(AddrToU128(ip), ProtoPort(proto, port));
          }
        }
      }
    }
    return absl::OkStatus();
  }
  if (!peer.pod_selector && !peer.namespace_selector) return absl::OkStatus();  // matches nothing
  const std::vector<const Pod*>& pods = PeerPods(policy, peer);
  s->Kind(SelectorSlot(ps, 0)).Mark(src);
  s->Kind(SelectorSlot(ps, 1)).Mark(src);
  switch (ps.kind) {
    case PortSpec::Kind::kAny:
      for (const Pod* pod : pods) {
        for (const IpAddr& ip : pod->ips) s->a_el[Fam(ip.family)].push_back(AddrToU128(ip));
      }
      break;
    case PortSpec::Kind::kProtoAll:
      for (const Pod* pod : pods) {
        for (const IpAddr& ip : pod->ips) {
          s->ra_el[Fam(ip.family)].push_back({AddrSpan(ip, ip), NumSpan(proto, proto)});
        }
      }
      break;
    case PortSpec::Kind::kRange:
      if (ps.lo == ps.hi) {
        for (const Pod* pod : pods) {
          for (const IpAddr& ip : pod->ips) {
            s->p_el[Fam(ip.family)].emplace_back(AddrToU128(ip), ProtoPort(proto, ps.lo));
          }
        }
      } else {
        for (const Pod* pod : pods) {
          for (const IpAddr& ip : pod->ips) {
            s->rp_el[Fam(ip.family)].push_back(
                {AddrSpan(ip, ip), NumSpan(proto, proto), NumSpan(ps.lo, ps.hi)});
          }
        }
      }
      break;
    case PortSpec::Kind::kNamed:
      for (const Pod* pod : pods) {
        std::optional<uint16_t> port = ingress_port;
        if (g.dir == Dir::kEgress) {
          ASSIGN_OR_RETURN(port, ResolvePort(*pod, ps.name, ps.protocol));
        }
        if (!port) continue;
        for (const IpAddr& ip : pod->ips) {
          s->p_el[Fam(ip.family)].emplace_back(AddrToU128(ip), ProtoPort(proto, *port));
        }
      }
      break;
  }
  return absl::OkStatus();
}

absl::Status Compiler::AddRule(const Group& g, const NetworkPolicy& policy, size_t index,
                               const Rule& rule, GroupSets* sets) {
  const std::string src = RuleSource(policy, g.dir, index);
  const std::vector<PortSpec>& specs = ports_.at({&policy, {static_cast<int>(g.dir), index}});
  if (IsLargeRuleNow(policy, rule, g.dir, specs)) {
    sets->large.emplace_back();
    const size_t k = sets->large.size() - 1;
    sets->large[k].src = src;
    for (const PortSpec& ps : specs) {
      if (LargeRulePort(ps, g.dir)) {
        std::optional<Box> b = LargePortBox(ps, IngressPort(ps, g.dir, g.resolution));
        if (b) sets->large[k].ports.push_back(*std::move(b));
        continue;
      }
      // An egress named port: per destination pod, as in any other rule.
      for (const Peer& peer : rule.peers) RETURN_IF_ERROR(AddPeer(g, policy, peer, ps, src, sets));
    }
    GroupSets::Large& l = sets->large[k];
    for (const Peer& peer : rule.peers) {
      if (peer.ip_block) {
        const int f = Fam(peer.ip_block->cidr.addr.family);
        l.fam[f] = true;
        for (const IpRange& r : CidrMinus(peer.ip_block->cidr, peer.ip_block->except)) {
          l.peers[f].push_back(LargePeerBox(AddrToU128(r.lo), AddrToU128(r.hi)));
        }
        continue;
      }
      if (!peer.pod_selector && !peer.namespace_selector) continue;  // matches nothing
      l.fam[0] = l.fam[1] = true;
      for (const Pod* pod : PeerPods(policy, peer)) {
        for (const IpAddr& ip : pod->ips) {
          const U128 a = AddrToU128(ip);
          l.peers[Fam(ip.family)].push_back(LargePeerBox(a, a));
        }
      }
    }
    return absl::OkStatus();
  }
  for (const PortSpec& ps : specs) {
    if (rule.peers.empty()) {
      RETURN_IF_ERROR(AddAnyPeer(g, ps, src, sets));
      continue;
    }
    for (const Peer& peer : rule.peers) RETURN_IF_ERROR(AddPeer(g, policy, peer, ps, src, sets));
  }
  return absl::OkStatus();
}

void Compiler::AddSet(Program* prog, const std::string& name, std::vector<FieldType> key,
                      bool interval, const std::string& comment, std::vector<Element> elements) {
  nft::Set set;
  set.name = name;
  set.key = std::move(key);
  set.interval = interval;
  set.comment = comment;
  prog->sets[name] = std::move(set);
  if (elements.empty()) return;  // the canonical form (nft::Canonicalize) omits empty lists
  // Stable: among elements with one key (two pods claiming one address) the
  // first one given wins.
  if (!std::is_sorted(elements.begin(), elements.end())) {
    std::stable_sort(elements.begin(), elements.end());
  }
  elements.erase(std::unique(elements.begin(), elements.end(),
                             [](const Element& a, const Element& b) { return a.key == b.key; }),
                 elements.end());
  prog->elements[name] = std::move(elements);
}

void Compiler::EmitSet(const Group& g, Slot slot, const SetKind& kind,
                       std::vector<Element> elements, nft::Chain* chain, Program* prog) {
  const std::string name = g.name + SlotSuffix(slot);
  AddSet(prog, name, SlotKey(slot), IsInterval(slot), JoinLimited(SlotCommentHead(slot), kind.list),
         std::move(elements));
  chain->rules.push_back(MakeRule({Lookup(SlotLookup(slot, g.dir), name)}, Verdict::Return(),
                                  JoinLimited("", kind.list)));
}

void Compiler::EmitGroup(const Group& g, GroupSets& s, Program* prog) {
  Chain chain;
  chain.name = g.name;
  std::vector<std::string> policy_keys;
  for (const NetworkPolicy* p : g.policies) policy_keys.push_back(p->Key());
  chain.comment = GroupComment(g.dir, g.resolution, policy_keys);

  if (s.all.present) {
    chain.rules.push_back(MakeRule({}, Verdict::Return(), JoinLimited("", s.all.list)));
    internal::CountRules(opts_.rule_counters, &chain);
    prog->chains[chain.name] = std::move(chain);
    return;
  }
  for (Family fam : {Family::kV4, Family::kV6}) {
    const int f = Fam(fam);
    if (s.a[f].present) {
      SortUnique(&s.a_el[f]);
      std::vector<Element> els;
      els.reserve(s.a_el[f].size());
      for (U128 a : s.a_el[f]) {
        els.push_back(Element{{FieldValue::Addr(U128ToAddr(a, fam))}, {}, ""});
      }
      EmitSet(g, SA(f), s.a[f], std::move(els), &chain, prog);
    }
    if (s.p[f].present) {
      SortUnique(&s.p_el[f]);
      std::vector<Element> els;
      els.reserve(s.p_el[f].size());
      for (const auto& [a, pp] : s.p_el[f]) {
        els.push_back(Element{{FieldValue::Addr(U128ToAddr(a, fam)), FieldValue::Num(pp >> 16),
                               FieldValue::Num(pp & 0xffff)},
                              {},
                              ""});
      }
      EmitSet(g, SP(f), s.p[f], std::move(els), &chain, prog);
    }
    if (s.ra[f].present) {
      EmitSet(g, SRa(f), s.ra[f], BoxElements(SRa(f), s.ra_el[f]), &chain, prog);
    }
    if (s.rp[f].present) {
      EmitSet(g, SRp(f), s.rp[f], BoxElements(SRp(f), s.rp_el[f]), &chain, prog);
    }
  }
  if (s.x.present) {
    SortUnique(&s.x_el);
    std::vector<Element> els;
    for (uint32_t pp : s.x_el) {
      els.push_back(Element{{FieldValue::Num(pp >> 16), FieldValue::Num(pp & 0xffff)}, {}, ""});
    }
    EmitSet(g, kX, s.x, std::move(els), &chain, prog);
  }
  if (s.xr.present) EmitSet(g, kXr, s.xr, BoxElements(kXr, s.xr_el), &chain, prog);
  for (size_t k = 0; k < s.large.size(); ++k) {
    const GroupSets::Large& l = s.large[k];
    if (!l.fam[0] && !l.fam[1]) continue;
    AddSet(prog, g.name + LargeSuffix(k, 2), SlotKey(LargeBaseSlot(2)), true,
           JoinLimited(LargeCommentHead(2), {l.src}), BoxElements(LargeBaseSlot(2), l.ports));
    for (int f = 0; f < 2; ++f) {
      if (!l.fam[f]) continue;
      AddSet(prog, g.name + LargeSuffix(k, f), SlotKey(LargeBaseSlot(f)), true,
             JoinLimited(LargeCommentHead(f), {l.src}), BoxElements(LargeBaseSlot(f), l.peers[f]));
      chain.rules.push_back(LargeRuleLookup(g.name, k, f, g.dir, JoinLimited("", {l.src})));
    }
  }
  AppendDrop(&chain, g.dir, policy_keys, DenyLimit(opts_), DenyLogStmt(opts_));
  internal::CountRules(opts_.rule_counters, &chain);
  prog->chains[chain.name] = std::move(chain);
}

void Compiler::EmitSkeleton(Program* prog) {
  nft::CtStateMatch est;
  est.established = true;
  est.related = true;
  nft::CtStateMatch invalid;
  invalid.invalid = true;
  nft::Icmpv6TypeMatch nd;
  nd.lo = kNdFirstType;
  nd.hi = kNdLastType;
  const std::string nd_comment = "IPv6 neighbour discovery (133-136) passes before any isolation";

  const std::string est_comment = "replies and related flows of allowed connections";
  const std::string self_comment = "a pod always reaches itself";
  auto egress_dispatch = [](Chain* c) {
    c->rules.push_back(MakeRule({Lookup({Selector::kIpSaddr}, kEgressDispatchV4, true)},
                                std::nullopt, "egress of local isolated pods"));
    c->rules.push_back(MakeRule({Lookup({Selector::kIp6Saddr}, kEgressDispatchV6, true)},
                                std::nullopt, "egress of local isolated pods"));
  };
  auto self_by = [&](Chain* c, Selector src4, Selector src6, const std::string& comment) {
    c->rules.push_back(
        MakeRule({Lookup({src4, Selector::kIpDaddr}, kSelfV4)}, Verdict::Accept(), comment));
    c->rules.push_back(
        MakeRule({Lookup({src6, Selector::kIp6Daddr}, kSelfV6)}, Verdict::Accept(), comment));
  };

  // forward: egress of local sources on the address DNAT chose. Ingress waits
  // for postrouting, after source NAT.
  Chain fwd;
  fwd.name = kForwardChain;
  fwd.base = nft::BaseChainSpec{nft::Hook::kForward, kBaseChainPriority, false};
  fwd.comment = "pod traffic through this node: egress of the source pod";
  fwd.rules.push_back(MakeRule({est}, Verdict::Accept(), est_comment));
  fwd.rules.push_back(MakeRule({invalid}, Verdict::Drop(), "conntrack-invalid packets"));
  fwd.rules.push_back(MakeRule({nd}, Verdict::Accept(), nd_comment));
  self_by(&fwd, Selector::kIpSaddr, Selector::kIp6Saddr, self_comment);
  egress_dispatch(&fwd);
  prog->chains[fwd.name] = std::move(fwd);

  // input (after IPVS): pod -> node, egress of the source pod.
  Chain in;
  in.name = kInputChain;
  in.base = nft::BaseChainSpec{nft::Hook::kInput, kInputChainPriority, false};
  in.comment = "pod to node traffic: egress of the source pod";
  in.rules.push_back(MakeRule({est}, Verdict::Accept(), est_comment));
  in.rules.push_back(MakeRule({nd}, Verdict::Accept(), nd_comment));
  egress_dispatch(&in);
  prog->chains[in.name] = std::move(in);

  // output: what the node sends from its own addresses is never filtered; a
  // packet with a pod's source here was re-sent by the kernel for a received
  // one (IPVS): egress of that pod on the real backend.
  Chain out;
  out.name = kOutputChain;
  out.base = nft::BaseChainSpec{nft::Hook::kOutput, kBaseChainPriority, false};
  out.comment = "pod traffic re-sent by the node (IPVS): egress of the source pod";
  out.rules.push_back(MakeRule({est}, Verdict::Accept(), est_comment));
  out.rules.push_back(MakeRule({nft::FibLocalMatch{true}}, Verdict::Accept(),
                               "sent by the node from its own address"));
  out.rules.push_back(MakeRule({nd}, Verdict::Accept(), nd_comment));
  self_by(&out, Selector::kIpSaddr, Selector::kIp6Saddr, self_comment);
  egress_dispatch(&out);
  prog->chains[out.name] = std::move(out);

  // postrouting (after source NAT): ingress of local pods on the source the
  // packet carries when it reaches them.
  Chain post;
  post.name = kPostroutingChain;
  post.base = nft::BaseChainSpec{nft::Hook::kPostrouting, kPostroutingChainPriority, false};
  post.comment = "traffic to pods, after source NAT: ingress of the destination pod";
  post.rules.push_back(MakeRule({est}, Verdict::Accept(), est_comment));
  post.rules.push_back(MakeRule({nft::LocalSocketMatch{}, nft::FibLocalMatch{true}},
                                Verdict::Accept(),
                                "sent by a node socket from a node address (probes, hostNetwork)"));
  post.rules.push_back(MakeRule({nd}, Verdict::Accept(), nd_comment));
  self_by(&post, Selector::kCtOrigIpSaddr, Selector::kCtOrigIp6Saddr,
          "a pod always reaches itself, also when masqueraded");
  post.rules.push_back(MakeRule({Lookup({Selector::kIpDaddr}, kIngressDispatchV4, true)},
                                std::nullopt, "ingress of local isolated pods"));
  post.rules.push_back(MakeRule({Lookup({Selector::kIp6Daddr}, kIngressDispatchV6, true)},
                                std::nullopt, "ingress of local isolated pods"));
  prog->chains[post.name] = std::move(post);
}

absl::StatusOr<Program> Compiler::Run() {
  RETURN_IF_ERROR(ValidateOptions(opts_));
  RETURN_IF_ERROR(ValidatePolicies());
  for (const auto& [key, pod] : state_.pods) {
    if (!pod.host_network && !pod.ips.empty()) pods_by_ns_[pod.namespace_name].push_back(&pod);
  }
  for (const auto& [key, policy] : state_.policies) {
    policies_by_ns_[policy.namespace_name].push_back(&policy);
  }

  // Local pods and their groups, per direction.
  std::map<std::string, Group> groups;  // by group key
  for (const auto& [key, pod] : state_.pods) {
    if (!IsLocalPod(pod, opts_)) continue;
    for (Dir dir : {Dir::kIngress, Dir::kEgress}) {
      Group g;
      g.dir = dir;
      auto in_ns = policies_by_ns_.find(pod.namespace_name);
      if (in_ns == policies_by_ns_.end()) continue;
      for (const NetworkPolicy* policy : in_ns->second) {
        if (Selects(*policy, pod, dir)) g.policies.push_back(policy);
      }
      if (g.policies.empty()) continue;
      ASSIGN_OR_RETURN(std::string gkey, GroupKey(dir, g.policies, pod, &g.resolution));
      auto [it, inserted] = groups.emplace(gkey, std::move(g));
      it->second.pods.push_back(&pod);
    }
  }

  // Names: readable part + hash of the group key; a (very unlikely) hash
  // collision is resolved by rehashing in key order, so the outcome is still a
  // function of the state.
  std::set<std::string> used;
  for (auto& [gkey, g] : groups) {
    const NetworkPolicy& first = *g.policies.front();
    for (int attempt = 0;; ++attempt) {
      std::string salted = attempt == 0 ? gkey : absl::StrCat(gkey, "#", attempt);
      std::string name = GroupName(g.dir, first.namespace_name, first.name, salted);
      if (used.insert(name).second) {
        g.name = name;
        break;
      }
    }
  }

  Program prog;
  prog.table = opts_.table;
  // A node name is a DNS subdomain of up to 253 characters: CommentFrom bounds the comment.
  prog.comment = nft::CommentFrom(opts_.node_name.empty()
                                      ? "Kubernetes NetworkPolicy, managed by netpol"
                                      : absl::StrCat("Kubernetes NetworkPolicy for node ",
                                                     opts_.node_name, ", managed by netpol"));
  EmitSkeleton(&prog);

  // [dir][family]: (pod key, element), so that the first pod by key keeps a shared address.
  std::vector<std::pair<std::string, Element>> dispatch[2][2];
  std::map<IpAddr, std::string> self;  // address -> pod key
  for (auto& [gkey, g] : groups) {
    GroupSets sets;
    for (const NetworkPolicy* p : g.policies) {
      const std::vector<Rule>& rules = g.dir == Dir::kIngress ? p->ingress : p->egress;
      for (size_t i = 0; i < rules.size(); ++i) RETURN_IF_ERROR(AddRule(g, *p, i, rules[i], &sets));
    }
    EmitGroup(g, sets, &prog);
    for (const Pod* pod : g.pods) {
      for (const IpAddr& ip : pod->ips) {
        Element e;
        e.key.push_back(FieldValue::Addr(ip));
        e.verdict = Verdict::Jump(g.name);
        e.comment = nft::CommentFrom(pod->Key());
        dispatch[static_cast<int>(g.dir)][Fam(ip.family)].emplace_back(pod->Key(), std::move(e));
        self.emplace(ip, pod->Key());
      }
    }
  }
  // Two local pods claiming one address: the first by key keeps it.
  for (auto& per_dir : dispatch) {
    for (auto& els : per_dir) {
      std::stable_sort(els.begin(), els.end(), [](const auto& a, const auto& b) {
        if (a.second.key != b.second.key) return a.second.key < b.second.key;
        return a.first < b.first;
      });
    }
  }
  const char* dispatch_names[2][2] = {{kIngressDispatchV4, kIngressDispatchV6},
                                      {kEgressDispatchV4, kEgressDispatchV6}};
  for (int d = 0; d < 2; ++d) {
    for (int f = 0; f < 2; ++f) {
      std::vector<Element> els;
      els.reserve(dispatch[d][f].size());
      for (auto& [pod_key, e] : dispatch[d][f]) els.push_back(std::move(e));
      AddSet(&prog, dispatch_names[d][f], {f == 0 ? FieldType::kIpv4Addr : FieldType::kIpv6Addr},
             false,
             absl::StrCat(d == 0 ? "ingress" : "egress",
                          " dispatch: local isolated pod -> its group chain"),
             std::move(els));
      prog.sets[dispatch_names[d][f]].vmap = true;
    }
  }
  std::vector<Element> self_els[2];
  for (const auto& [ip, pod_key] : self) {
    self_els[Fam(ip.family)].push_back(
        Element{{FieldValue::Addr(ip), FieldValue::Addr(ip)}, {}, ""});
  }
  AddSet(&prog, kSelfV4, {FieldType::kIpv4Addr, FieldType::kIpv4Addr}, false,
         "local isolated pods: address . same address", std::move(self_els[0]));
  AddSet(&prog, kSelfV6, {FieldType::kIpv6Addr, FieldType::kIpv6Addr}, false,
         "local isolated pods: address . same address", std::move(self_els[1]));
  return prog;
}

}  // namespace
}  // namespace internal

using internal::Dir;
using internal::NormalizePorts;

bool IsLocalPod(const Pod& pod, const CompileOptions& opts) {
  if (pod.host_network) return false;
  if (!opts.node_name.empty() && pod.node_name == opts.node_name) return true;
  return opts.attached_pods.count(pod.Key()) > 0;
}

absl::StatusOr<nft::Program> Compile(const State& state, const CompileOptions& opts) {
  return internal::Compiler(state, opts).Run();
}

absl::StatusOr<std::optional<uint16_t>> ResolveNamedPort(const Pod& pod, const std::string& name,
                                                         Protocol protocol) {
  return internal::ResolvePort(pod, name, protocol);
}

absl::Status ValidateObject(const NetworkPolicy& policy) {
  return internal::CheckPolicySize(policy);  // NormalizePorts on every rule first
}

absl::Status ValidateObject(const Pod& pod) {
  // Every (name, protocol) a policy could resolve on this pod, as Compile resolves it.
  for (const ContainerPort& p : pod.ports) {
    if (p.name.empty()) continue;
    RETURN_IF_ERROR(ResolveNamedPort(pod, p.name, p.protocol).status());
  }
  return absl::OkStatus();
}

absl::Status ValidateObject(const Namespace&) { return absl::OkStatus(); }

absl::Status ValidateChanged(const State& state, const Delta& changed) {
  for (const std::string& key : changed.namespaces) {
    if (const Namespace* ns = state.FindNamespace(key)) RETURN_IF_ERROR(ValidateObject(*ns));
  }
  for (const std::string& key : changed.pods) {
    if (const Pod* pod = state.FindPod(key)) RETURN_IF_ERROR(ValidateObject(*pod));
  }
  for (const std::string& key : changed.policies) {
    auto it = state.policies.find(key);
    if (it != state.policies.end()) RETURN_IF_ERROR(ValidateObject(it->second));
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const CompileOptions& opts) {
  RETURN_IF_ERROR(nft::ValidateObjectName("table", opts.table));
  if (opts.deny_log) {
    const CompileOptions::DenyLog& d = *opts.deny_log;
    if (d.rate < 1 || d.rate > nft::kMaxLimitValue) {
      return absl::InvalidArgumentError(absl::StrCat("deny log: rate ", d.rate, " is outside 1-",
                                                     nft::kMaxLimitValue, " packets per second"));
    }
    if (d.burst < 1 || d.burst > nft::kMaxLimitValue) {
      return absl::InvalidArgumentError(absl::StrCat("deny log: burst ", d.burst,
                                                     " is outside 1-", nft::kMaxLimitValue));
    }
  }
  return absl::OkStatus();
}

namespace internal {
std::optional<nft::LimitStmt> DenyLimit(const CompileOptions& opts) {
  if (!opts.deny_log) return std::nullopt;
  return nft::LimitStmt{opts.deny_log->rate, opts.deny_log->burst};
}
std::optional<nft::LogStmt> DenyLogStmt(const CompileOptions& opts) {
  if (!opts.deny_log) return std::nullopt;
  return nft::LogStmt{"", opts.deny_log->group, opts.deny_log->snaplen};
}
}  // namespace internal

}  // namespace netpol::compiler
