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
#include "engine/selector/selector.h"
#include "engine/util/status_macros.h"

namespace netpol::compiler {
namespace {

using nft::Chain;
using nft::Element;
using nft::FieldType;
using nft::FieldValue;
using nft::LookupMatch;
using nft::Program;
using nft::Selector;
using nft::Verdict;

// nft stores comments as user data of at most 128 bytes
// (NFTNL_UDATA_COMMENT_MAXLEN).
constexpr size_t kMaxCommentLength = nft::kMaxCommentLength;
// Name budget (nft::kMaxNameLength = 63): "in-"/"eg-" (3) + readable part + "-"
// (1) + 8 hex digits of hash + the longest set suffix "-ra4"/"-rp4" (4) =>
// readable part <= 47.
constexpr size_t kHashDigits = 8;
constexpr size_t kLongestSetSuffix = 4;
constexpr size_t kReadableBudget = nft::kMaxNameLength - 3 - 1 - kHashDigits - kLongestSetSuffix;
static_assert(kReadableBudget == 47, "name budget changed: update RULESET.md");

enum class Dir { kIngress, kEgress };
const char* DirName(Dir d) { return d == Dir::kIngress ? "ingress" : "egress"; }
int Fam(Family f) { return f == Family::kV4 ? 0 : 1; }

constexpr uint8_t kIcmpv6 = 58;
// ICMPv6 neighbour discovery: router solicitation (133) .. neighbour
// advertisement (136).
constexpr uint8_t kNdFirstType = 133, kNdLastType = 136;

uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a 64-bit offset basis
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;  // FNV-1a 64-bit prime
  }
  return h;
}

// Keeps characters that are valid in nft identifiers and Kubernetes names; maps
// the rest to '-'.
std::string Sanitize(const std::string& s) {
  std::string out;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    out.push_back(ok ? c : '-');
  }
  return out;
}

// Joins `items` after `head` within `limit` bytes, ending in " +N more" when
// some do not fit.
std::string JoinLimited(const std::string& head, const std::vector<std::string>& items,
                        size_t limit = kMaxCommentLength) {
  std::string out = head;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string piece = (i == 0 ? "" : ", ") + items[i];
    std::string more = absl::StrCat(" +", items.size() - i - 1, " more");
    bool last = i + 1 == items.size();
    if (out.size() + piece.size() + (last ? 0 : more.size()) > limit) {
      std::string rest = absl::StrCat(" +", items.size() - i, " more");
      if (out.size() + rest.size() > limit) {
        out.resize(limit > rest.size() ? limit - rest.size() : 0);
      }
      return out + rest;
    }
    out += piece;
  }
  if (out.size() > limit) out.resize(limit);
  return out;
}

bool ValidIdentifier(const std::string& s) {
  if (s.empty() || s.size() > nft::kMaxNameLength) return false;
  if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return false;
  return Sanitize(s) == s;
}

// ---- addresses as box coordinates ----

U128 AddrToU128(const IpAddr& a) {
  U128 v = 0;
  for (int i = 0; i < a.size(); ++i) v = (v << 8) | a.bytes[i];
  return v;
}

IpAddr U128ToAddr(U128 v, Family f) {
  IpAddr a;
  a.family = f;
  int n = f == Family::kV4 ? 4 : 16;
  for (int i = n - 1; i >= 0; --i) {
    a.bytes[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return a;
}

U128 AddrMax(Family f) { return f == Family::kV4 ? U128{0xffffffffu} : ~U128{0}; }

uint32_t ProtoPort(uint8_t proto, uint16_t port) { return uint32_t{proto} << 16 | port; }

template <typename T>
void SortUnique(std::vector<T>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

Span AddrSpan(const IpAddr& lo, const IpAddr& hi) { return {AddrToU128(lo), AddrToU128(hi)}; }
Span NumSpan(uint32_t lo, uint32_t hi) { return {lo, hi}; }

// ---- policy ports, normalized ----

struct PortSpec {
  enum class Kind { kAny, kProtoAll, kRange, kNamed };
  Kind kind = Kind::kAny;
  Protocol protocol = Protocol::kTCP;
  uint16_t lo = 0, hi = 0;  // kRange (lo == hi: a single port)
  std::string name;         // kNamed
};

bool ValidProtocol(Protocol p) {
  return p == Protocol::kTCP || p == Protocol::kUDP || p == Protocol::kSCTP;
}

absl::Status PolicyError(const NetworkPolicy& p, const std::string& path, const std::string& msg) {
  return absl::InvalidArgumentError(absl::StrCat("networkpolicy ", p.Key(), ": ", path, ": ", msg));
}

absl::StatusOr<std::vector<PortSpec>> NormalizePorts(const NetworkPolicy& policy, Dir dir,
                                                     size_t rule_index, const Rule& rule) {
  std::vector<PortSpec> out;
  if (rule.ports.empty()) {
    out.push_back(PortSpec{});
    return out;
  }
  for (size_t i = 0; i < rule.ports.size(); ++i) {
    const PolicyPort& pp = rule.ports[i];
    const std::string path =
        absl::StrCat("spec.", DirName(dir), "[", rule_index, "].ports[", i, "]");
    if (!ValidProtocol(pp.protocol)) {
      return PolicyError(policy, path + ".protocol", "must be TCP, UDP or SCTP");
    }
    PortSpec s;
    s.protocol = pp.protocol;
    if (pp.named_port) {
      if (pp.port) return PolicyError(policy, path + ".port", "both a number and a name");
      if (pp.end_port) {
        return PolicyError(policy, path + ".endPort", "not allowed with a named port");
      }
      if (pp.named_port->empty()) return PolicyError(policy, path + ".port", "empty name");
      s.kind = PortSpec::Kind::kNamed;
      s.name = *pp.named_port;
    } else if (pp.port) {
      if (*pp.port < 1 || *pp.port > 65535) {
        return PolicyError(policy, path + ".port", "must be between 1 and 65535");
      }
      int32_t end = *pp.port;
      if (pp.end_port) {
        if (*pp.end_port < *pp.port) {
          return PolicyError(policy, path + ".endPort", "must be >= port");
        }
        if (*pp.end_port > 65535) {
          return PolicyError(policy, path + ".endPort", "must be between 1 and 65535");
        }
        end = *pp.end_port;
      }
      s.kind = PortSpec::Kind::kRange;
      s.lo = static_cast<uint16_t>(*pp.port);
      s.hi = static_cast<uint16_t>(end);
    } else {
      if (pp.end_port) return PolicyError(policy, path + ".endPort", "requires port");
      s.kind = PortSpec::Kind::kProtoAll;
    }
    out.push_back(std::move(s));
  }
  return out;
}

// ---- groups ----

using NamedPort = std::pair<std::string, Protocol>;

struct Group {
  Dir dir = Dir::kIngress;
  std::vector<const NetworkPolicy*> policies;              // sorted by key
  std::map<NamedPort, std::optional<int32_t>> resolution;  // ingress only
  std::vector<const Pod*> pods;                            // sorted by key
  std::string name;
};

// The pieces of one group chain: which set kinds exist (from the policies'
// shapes alone) and their elements (from the pods). Index 0/1 = IPv4/IPv6.
struct SetKind {
  bool present = false;
  std::vector<std::string> sources;  // "x/a ingress[0]" in order, deduplicated
  void Mark(const std::string& source) {
    present = true;
    if (std::find(sources.begin(), sources.end(), source) == sources.end()) {
      sources.push_back(source);
    }
  }
};

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
};

class Compiler {
 public:
  Compiler(const State& state, const CompileOptions& opts) : state_(state), opts_(opts) {}

  absl::StatusOr<Program> Run();

 private:
  absl::Status ValidatePolicies();
  bool Selects(const NetworkPolicy& p, const Pod& pod, Dir dir) const;
  const Labels& NamespaceLabels(const std::string& ns);
  const std::vector<const Pod*>& PeerPods(const NetworkPolicy& policy, const Peer& peer);
  absl::StatusOr<std::optional<uint16_t>> Resolve(const Pod& pod, const std::string& name,
                                                  Protocol protocol) const;
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
  }
  return absl::OkStatus();
}

bool Compiler::Selects(const NetworkPolicy& p, const Pod& pod, Dir dir) const {
  if (pod.host_network || p.namespace_name != pod.namespace_name) return false;
  if (dir == Dir::kIngress ? !p.ingress_type : !p.egress_type) return false;
  return Matches(p.pod_selector, pod.labels);
}

const Labels& Compiler::NamespaceLabels(const std::string& ns) {
  auto it = ns_labels_.find(ns);
  if (it != ns_labels_.end()) return it->second;
  Labels labels;
  if (const Namespace* n = state_.FindNamespace(ns)) labels = n->labels;
  labels[kNamespaceNameLabel] = ns;
  return ns_labels_.emplace(ns, std::move(labels)).first->second;
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

absl::StatusOr<std::optional<uint16_t>> Compiler::Resolve(const Pod& pod, const std::string& name,
                                                          Protocol protocol) const {
  std::optional<int32_t> port = pod.ResolvePort(name, protocol);
  if (!port) return std::optional<uint16_t>();
  if (*port < 1 || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("pod ", pod.Key(), ": containerPort ", name, "/",
                                                   ProtocolName(protocol), " = ", *port,
                                                   ": must be between 1 and 65535"));
  }
  return std::optional<uint16_t>(static_cast<uint16_t>(*port));
}

absl::StatusOr<const std::vector<std::pair<const Pod*, uint16_t>>*> Compiler::PodsWithNamedPort(
    const NamedPort& np) {
  auto it = named_index_.find(np);
  if (it != named_index_.end()) return &it->second;
  std::vector<std::pair<const Pod*, uint16_t>> pods;
  for (const auto& [key, pod] : state_.pods) {
    if (pod.host_network || pod.ips.empty()) continue;
    ASSIGN_OR_RETURN(std::optional<uint16_t> port, Resolve(pod, np.first, np.second));
    if (port) pods.emplace_back(&pod, *port);
  }
  return &named_index_.emplace(np, std::move(pods)).first->second;
}

absl::Status Compiler::AddAnyPeer(const Group& g, const PortSpec& ps, const std::string& src,
                                  GroupSets* s) {
  const uint8_t proto = static_cast<uint8_t>(ps.protocol);
  switch (ps.kind) {
    case PortSpec::Kind::kAny:
      s->all.Mark(src);
      break;
    case PortSpec::Kind::kProtoAll:
      s->xr.Mark(src);
      s->xr_el.push_back({NumSpan(proto, proto), NumSpan(0, 65535)});
      break;
    case PortSpec::Kind::kRange:
      if (ps.lo == ps.hi) {
        s->x.Mark(src);
        s->x_el.push_back(ProtoPort(proto, ps.lo));
      } else {
        s->xr.Mark(src);
        s->xr_el.push_back({NumSpan(proto, proto), NumSpan(ps.lo, ps.hi)});
      }
      break;
    case PortSpec::Kind::kNamed:
      if (g.dir == Dir::kIngress) {
        s->x.Mark(src);
        auto it = g.resolution.find({ps.name, ps.protocol});
        if (it != g.resolution.end() && it->second) {
          s->x_el.push_back(ProtoPort(proto, static_cast<uint16_t>(*it->second)));
        }
      } else {
        // Any destination, but the port is the destination pod's: every known pod
        // with it.
        s->p[0].Mark(src);
        s->p[1].Mark(src);
        ASSIGN_OR_RETURN(auto* pods, PodsWithNamedPort({ps.name, ps.protocol}));
        for (const auto& [pod, port] : *pods) {
          for (const IpAddr& ip : pod->ips) {
            s->p_el[Fam(ip.family)].emplace_back(AddrToU128(ip), ProtoPort(proto, port));
          }
        }
      }
      break;
  }
  return absl::OkStatus();
}

absl::Status Compiler::AddPeer(const Group& g, const NetworkPolicy& policy, const Peer& peer,
                               const PortSpec& ps, const std::string& src, GroupSets* s) {
  const uint8_t proto = static_cast<uint8_t>(ps.protocol);
  std::optional<uint16_t> ingress_port;  // kNamed on ingress: resolved on the group's pods
  if (ps.kind == PortSpec::Kind::kNamed && g.dir == Dir::kIngress) {
    auto it = g.resolution.find({ps.name, ps.protocol});
    if (it != g.resolution.end() && it->second) ingress_port = static_cast<uint16_t>(*it->second);
  }
  if (peer.ip_block) {
    const IPBlock& block = *peer.ip_block;
    const Family fam = block.cidr.addr.family;
    const int f = Fam(fam);
    std::vector<IpRange> ranges = CidrMinus(block.cidr, block.except);
    switch (ps.kind) {
      case PortSpec::Kind::kAny:
        s->ra[f].Mark(src);
        for (const IpRange& r : ranges) {
          s->ra_el[f].push_back({AddrSpan(r.lo, r.hi), NumSpan(0, 255)});
        }
        break;
      case PortSpec::Kind::kProtoAll:
        s->ra[f].Mark(src);
        for (const IpRange& r : ranges) {
          s->ra_el[f].push_back({AddrSpan(r.lo, r.hi), NumSpan(proto, proto)});
        }
        break;
      case PortSpec::Kind::kRange:
        s->rp[f].Mark(src);
        for (const IpRange& r : ranges) {
          s->rp_el[f].push_back(
              {AddrSpan(r.lo, r.hi), NumSpan(proto, proto), NumSpan(ps.lo, ps.hi)});
        }
        break;
      case PortSpec::Kind::kNamed:
        if (g.dir == Dir::kIngress) {
          s->rp[f].Mark(src);
          if (ingress_port) {
            for (const IpRange& r : ranges) {
              s->rp_el[f].push_back({AddrSpan(r.lo, r.hi), NumSpan(proto, proto),
                                     NumSpan(*ingress_port, *ingress_port)});
            }
          }
        } else {
          // The destination must be a known pod inside the block: its own port
          // number.
          s->p[f].Mark(src);
          ASSIGN_OR_RETURN(auto* pods, PodsWithNamedPort({ps.name, ps.protocol}));
          for (const auto& [pod, port] : *pods) {
            for (const IpAddr& ip : pod->ips) {
              if (ip.family != fam) continue;
              bool inside = false;
              for (const IpRange& r : ranges) inside = inside || (r.lo <= ip && ip <= r.hi);
              if (inside) s->p_el[f].emplace_back(AddrToU128(ip), ProtoPort(proto, port));
            }
          }
        }
        break;
    }
    return absl::OkStatus();
  }
  if (!peer.pod_selector && !peer.namespace_selector) return absl::OkStatus();  // matches nothing
  const std::vector<const Pod*>& pods = PeerPods(policy, peer);
  switch (ps.kind) {
    case PortSpec::Kind::kAny:
      s->a[0].Mark(src);
      s->a[1].Mark(src);
      for (const Pod* pod : pods) {
        for (const IpAddr& ip : pod->ips) s->a_el[Fam(ip.family)].push_back(AddrToU128(ip));
      }
      break;
    case PortSpec::Kind::kProtoAll:
      s->ra[0].Mark(src);
      s->ra[1].Mark(src);
      for (const Pod* pod : pods) {
        for (const IpAddr& ip : pod->ips) {
          s->ra_el[Fam(ip.family)].push_back({AddrSpan(ip, ip), NumSpan(proto, proto)});
        }
      }
      break;
    case PortSpec::Kind::kRange:
      if (ps.lo == ps.hi) {
        s->p[0].Mark(src);
        s->p[1].Mark(src);
        for (const Pod* pod : pods) {
          for (const IpAddr& ip : pod->ips) {
            s->p_el[Fam(ip.family)].emplace_back(AddrToU128(ip), ProtoPort(proto, ps.lo));
          }
        }
      } else {
        s->rp[0].Mark(src);
        s->rp[1].Mark(src);
        for (const Pod* pod : pods) {
          for (const IpAddr& ip : pod->ips) {
            s->rp_el[Fam(ip.family)].push_back(
                {AddrSpan(ip, ip), NumSpan(proto, proto), NumSpan(ps.lo, ps.hi)});
          }
        }
      }
      break;
    case PortSpec::Kind::kNamed:
      s->p[0].Mark(src);
      s->p[1].Mark(src);
      for (const Pod* pod : pods) {
        std::optional<uint16_t> port = ingress_port;
        if (g.dir == Dir::kEgress) {
          ASSIGN_OR_RETURN(port, Resolve(*pod, ps.name, ps.protocol));
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
  const std::string src = absl::StrCat(policy.Key(), " ", DirName(g.dir), "[", index, "]");
  const std::vector<PortSpec>& specs = ports_.at({&policy, {static_cast<int>(g.dir), index}});
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

nft::Rule MakeRule(std::vector<nft::Match> matches, std::optional<Verdict> verdict,
                   std::string comment) {
  nft::Rule r;
  r.matches = std::move(matches);
  r.verdict = std::move(verdict);
  r.comment = std::move(comment);
  return r;
}

LookupMatch Lookup(std::vector<Selector> key, std::string set, bool vmap = false) {
  LookupMatch m;
  m.key = std::move(key);
  m.set = std::move(set);
  m.vmap = vmap;
  return m;
}

std::vector<Element> BoxElements(const std::vector<Box>& boxes, const std::vector<U128>& dim_max,
                                 std::optional<Family> addr_family) {
  std::vector<Element> out;
  for (const Box& b : DisjointUnion(boxes, dim_max)) {
    Element e;
    for (size_t i = 0; i < b.size(); ++i) {
      if (i == 0 && addr_family) {
        e.key.push_back(FieldValue::AddrRange(U128ToAddr(b[i].lo, *addr_family),
                                              U128ToAddr(b[i].hi, *addr_family)));
      } else {
        e.key.push_back(
            FieldValue::NumRange(static_cast<uint32_t>(b[i].lo), static_cast<uint32_t>(b[i].hi)));
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

void Compiler::EmitGroup(const Group& g, GroupSets& s, Program* prog) {
  Chain chain;
  chain.name = g.name;
  std::vector<std::string> policy_keys;
  for (const NetworkPolicy* p : g.policies) policy_keys.push_back(p->Key());
  std::string head = absl::StrCat(DirName(g.dir), " of pods selected by ");
  if (!g.resolution.empty()) {
    std::vector<std::string> res;
    for (const auto& [np, port] : g.resolution) {
      res.push_back(absl::StrCat(np.first, "/", ProtocolName(np.second), "=",
                                 port ? absl::StrCat(*port) : std::string("none")));
    }
    // Named-port resolution first: it is what tells groups of the same policies
    // apart.
    head = absl::StrCat(DirName(g.dir), " (", absl::StrJoin(res, ","), ") of pods selected by ");
  }
  chain.comment = JoinLimited(head, policy_keys);

  const Selector peer4 = g.dir == Dir::kIngress ? Selector::kIpSaddr : Selector::kIpDaddr;
  const Selector peer6 = g.dir == Dir::kIngress ? Selector::kIp6Saddr : Selector::kIp6Daddr;
  auto comment_of = [](const SetKind& k) { return JoinLimited("", k.sources); };

  if (s.all.present) {
    chain.rules.push_back(MakeRule({}, Verdict::Return(), comment_of(s.all)));
    prog->chains[chain.name] = std::move(chain);
    return;
  }
  for (Family fam : {Family::kV4, Family::kV6}) {
    const int f = Fam(fam);
    const bool v4 = fam == Family::kV4;
    const Selector peer = v4 ? peer4 : peer6;
    const FieldType addr = v4 ? FieldType::kIpv4Addr : FieldType::kIpv6Addr;
    const std::string fs = v4 ? "4" : "6";
    const std::vector<U128> addr_proto_max = {AddrMax(fam), 255};
    const std::vector<U128> addr_proto_port_max = {AddrMax(fam), 255, 65535};
    if (s.a[f].present) {
      std::string name = g.name + "-a" + fs;
      SortUnique(&s.a_el[f]);
      std::vector<Element> els;
      els.reserve(s.a_el[f].size());
      for (U128 a : s.a_el[f]) {
        els.push_back(Element{{FieldValue::Addr(U128ToAddr(a, fam))}, {}, ""});
      }
      AddSet(prog, name, {addr}, false, JoinLimited("peer pods, any port: ", s.a[f].sources),
             std::move(els));
      chain.rules.push_back(
          MakeRule({Lookup({peer}, name)}, Verdict::Return(), comment_of(s.a[f])));
    }
    if (s.p[f].present) {
      std::string name = g.name + "-p" + fs;
      SortUnique(&s.p_el[f]);
      std::vector<Element> els;
      els.reserve(s.p_el[f].size());
      for (const auto& [a, pp] : s.p_el[f]) {
        els.push_back(Element{{FieldValue::Addr(U128ToAddr(a, fam)), FieldValue::Num(pp >> 16),
                               FieldValue::Num(pp & 0xffff)},
                              {},
                              ""});
      }
      AddSet(prog, name, {addr, FieldType::kInetProto, FieldType::kInetService}, false,
             JoinLimited("peer pods . port: ", s.p[f].sources), std::move(els));
      chain.rules.push_back(MakeRule({Lookup({peer, Selector::kL4Proto, Selector::kThDport}, name)},
                                     Verdict::Return(), comment_of(s.p[f])));
    }
    if (s.ra[f].present) {
      std::string name = g.name + "-ra" + fs;
      AddSet(prog, name, {addr, FieldType::kInetProto}, true,
             JoinLimited("peer ranges . protocol: ", s.ra[f].sources),
             BoxElements(s.ra_el[f], addr_proto_max, fam));
      chain.rules.push_back(MakeRule({Lookup({peer, Selector::kL4Proto}, name)}, Verdict::Return(),
                                     comment_of(s.ra[f])));
    }
    if (s.rp[f].present) {
      std::string name = g.name + "-rp" + fs;
      AddSet(prog, name, {addr, FieldType::kInetProto, FieldType::kInetService}, true,
             JoinLimited("peer ranges . port ranges: ", s.rp[f].sources),
             BoxElements(s.rp_el[f], addr_proto_port_max, fam));
      chain.rules.push_back(MakeRule({Lookup({peer, Selector::kL4Proto, Selector::kThDport}, name)},
                                     Verdict::Return(), comment_of(s.rp[f])));
    }
  }
  if (s.x.present) {
    std::string name = g.name + "-x";
    SortUnique(&s.x_el);
    std::vector<Element> els;
    for (uint32_t pp : s.x_el) {
      els.push_back(Element{{FieldValue::Num(pp >> 16), FieldValue::Num(pp & 0xffff)}, {}, ""});
    }
    AddSet(prog, name, {FieldType::kInetProto, FieldType::kInetService}, false,
           JoinLimited("any peer, port: ", s.x.sources), std::move(els));
    chain.rules.push_back(MakeRule({Lookup({Selector::kL4Proto, Selector::kThDport}, name)},
                                   Verdict::Return(), comment_of(s.x)));
  }
  if (s.xr.present) {
    std::string name = g.name + "-xr";
    AddSet(prog, name, {FieldType::kInetProto, FieldType::kInetService}, true,
           JoinLimited("any peer, port ranges: ", s.xr.sources),
           BoxElements(s.xr_el, {255, 65535}, std::nullopt));
    chain.rules.push_back(MakeRule({Lookup({Selector::kL4Proto, Selector::kThDport}, name)},
                                   Verdict::Return(), comment_of(s.xr)));
  }
  chain.rules.push_back(
      MakeRule({}, Verdict::Drop(),
               JoinLimited(absl::StrCat("no ", DirName(g.dir), " rule of "), policy_keys)));
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

  Chain fwd;
  fwd.name = kForwardChain;
  fwd.base = nft::BaseChainSpec{nft::Hook::kForward, kBaseChainPriority, false};
  fwd.comment = "pod traffic through this node: source egress, then destination ingress";
  fwd.rules.push_back(
      MakeRule({est}, Verdict::Accept(), "replies and related flows of allowed connections"));
  fwd.rules.push_back(MakeRule({invalid}, Verdict::Drop(), "conntrack-invalid packets"));
  fwd.rules.push_back(MakeRule({nd}, Verdict::Accept(), nd_comment));
  fwd.rules.push_back(MakeRule({Lookup({Selector::kIpSaddr, Selector::kIpDaddr}, kSelfV4)},
                               Verdict::Accept(), "a pod always reaches itself"));
  fwd.rules.push_back(MakeRule({Lookup({Selector::kIp6Saddr, Selector::kIp6Daddr}, kSelfV6)},
                               Verdict::Accept(), "a pod always reaches itself"));
  fwd.rules.push_back(MakeRule({Lookup({Selector::kIpSaddr}, kEgressDispatchV4, true)},
                               std::nullopt, "egress of local isolated pods"));
  fwd.rules.push_back(MakeRule({Lookup({Selector::kIp6Saddr}, kEgressDispatchV6, true)},
                               std::nullopt, "egress of local isolated pods"));
  fwd.rules.push_back(MakeRule({Lookup({Selector::kIpDaddr}, kIngressDispatchV4, true)},
                               std::nullopt, "ingress of local isolated pods"));
  fwd.rules.push_back(MakeRule({Lookup({Selector::kIp6Daddr}, kIngressDispatchV6, true)},
                               std::nullopt, "ingress of local isolated pods"));
  prog->chains[fwd.name] = std::move(fwd);

  Chain in;
  in.name = kInputChain;
  in.base = nft::BaseChainSpec{nft::Hook::kInput, kBaseChainPriority, false};
  in.comment = "pod to node traffic: egress of the source pod";
  in.rules.push_back(
      MakeRule({est}, Verdict::Accept(), "replies and related flows of allowed connections"));
  in.rules.push_back(MakeRule({nd}, Verdict::Accept(), nd_comment));
  in.rules.push_back(MakeRule({Lookup({Selector::kIpSaddr}, kEgressDispatchV4, true)}, std::nullopt,
                              "egress of local isolated pods"));
  in.rules.push_back(MakeRule({Lookup({Selector::kIp6Saddr}, kEgressDispatchV6, true)},
                              std::nullopt, "egress of local isolated pods"));
  prog->chains[in.name] = std::move(in);
}

absl::StatusOr<Program> Compiler::Run() {
  if (!ValidIdentifier(opts_.table)) {
    return absl::InvalidArgumentError(
        absl::StrCat("table name \"", opts_.table,
                     "\": must start with a letter, use only letters, digits, "
                     "'-', '_' and '.', and be at most ",
                     nft::kMaxNameLength, " characters"));
  }
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
      std::string gkey = absl::StrCat(DirName(dir), "\n");
      for (const NetworkPolicy* p : g.policies) absl::StrAppend(&gkey, p->Key(), "\n");
      if (dir == Dir::kIngress) {
        for (const NetworkPolicy* p : g.policies) {
          for (const Rule& r : p->ingress) {
            for (const PolicyPort& pp : r.ports) {
              if (pp.named_port) g.resolution[{*pp.named_port, pp.protocol}] = std::nullopt;
            }
          }
        }
        for (auto& [np, port] : g.resolution) {
          ASSIGN_OR_RETURN(std::optional<uint16_t> r, Resolve(pod, np.first, np.second));
          if (r) port = *r;
          absl::StrAppend(&gkey, "port ", np.first, "/", ProtocolName(np.second), "=",
                          port ? absl::StrCat(*port) : std::string("-"), "\n");
        }
      }
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
    std::string readable =
        Sanitize(absl::StrCat(first.namespace_name, "_", first.name)).substr(0, kReadableBudget);
    std::string prefix = g.dir == Dir::kIngress ? "in-" : "eg-";
    for (int attempt = 0;; ++attempt) {
      std::string salted = attempt == 0 ? gkey : absl::StrCat(gkey, "#", attempt);
      std::string name =
          absl::StrCat(prefix, readable, "-",
                       absl::StrFormat("%08x", static_cast<uint32_t>(Fnv1a64(salted) >> 32)));
      if (used.insert(name).second) {
        g.name = name;
        break;
      }
    }
  }

  Program prog;
  prog.table = opts_.table;
  prog.comment = opts_.node_name.empty() ? "Kubernetes NetworkPolicy, managed by netpol"
                                         : absl::StrCat("Kubernetes NetworkPolicy for node ",
                                                        opts_.node_name, ", managed by netpol");
  EmitSkeleton(&prog);

  std::vector<Element> dispatch[2][2];  // [dir][family]
  std::map<IpAddr, std::string> self;   // address -> pod key
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
        e.comment = pod->Key();
        dispatch[static_cast<int>(g.dir)][Fam(ip.family)].push_back(std::move(e));
        self.emplace(ip, pod->Key());
      }
    }
  }
  // Two local pods claiming one address: the first by key keeps it.
  for (auto& per_dir : dispatch) {
    for (auto& els : per_dir) {
      std::stable_sort(els.begin(), els.end(), [](const Element& a, const Element& b) {
        if (a.key != b.key) return a.key < b.key;
        return a.comment < b.comment;
      });
    }
  }
  const char* dispatch_names[2][2] = {{kIngressDispatchV4, kIngressDispatchV6},
                                      {kEgressDispatchV4, kEgressDispatchV6}};
  for (int d = 0; d < 2; ++d) {
    for (int f = 0; f < 2; ++f) {
      AddSet(&prog, dispatch_names[d][f], {f == 0 ? FieldType::kIpv4Addr : FieldType::kIpv6Addr},
             false,
             absl::StrCat(d == 0 ? "ingress" : "egress",
                          " dispatch: local isolated pod -> its group chain"),
             std::move(dispatch[d][f]));
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

bool IsLocalPod(const Pod& pod, const CompileOptions& opts) {
  if (pod.host_network) return false;
  if (!opts.node_name.empty() && pod.node_name == opts.node_name) return true;
  return opts.attached_pods.count(pod.Key()) > 0;
}

absl::StatusOr<nft::Program> Compile(const State& state, const CompileOptions& opts) {
  return Compiler(state, opts).Run();
}

}  // namespace netpol::compiler
