#include "engine/compiler/common.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/selector/selector.h"
#include "engine/util/status_macros.h"

namespace netpol::compiler::internal {

using nft::Element;
using nft::FieldType;
using nft::FieldValue;
using nft::Selector;

const char* DirName(Dir d) { return d == Dir::kIngress ? "ingress" : "egress"; }
int Fam(Family f) { return f == Family::kV4 ? 0 : 1; }

std::string Sanitize(const std::string& s) {
  std::string out;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    out.push_back(ok ? c : '-');
  }
  return out;
}

std::string JoinLimited(const std::string& head, const std::vector<std::string>& items,
                        size_t limit) {
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
      return nft::CommentFrom(out + rest);
    }
    out += piece;
  }
  if (out.size() > limit) out.resize(limit);
  return nft::CommentFrom(out);
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

Span AddrSpan(const IpAddr& lo, const IpAddr& hi) { return {AddrToU128(lo), AddrToU128(hi)}; }

// ---- policy ports, normalized ----

namespace {

bool ValidProtocol(Protocol p) {
  return p == Protocol::kTCP || p == Protocol::kUDP || p == Protocol::kSCTP;
}

absl::Status PolicyError(const NetworkPolicy& p, const std::string& path, const std::string& msg) {
  return absl::InvalidArgumentError(absl::StrCat("networkpolicy ", p.Key(), ": ", path, ": ", msg));
}

}  // namespace

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
    if (std::string problem = EndPortProblem(pp); !problem.empty()) {
      return PolicyError(policy, path + ".endPort", problem);
    }
    PortSpec s;
    s.protocol = pp.protocol;
    if (pp.named_port) {
      if (pp.port) return PolicyError(policy, path + ".port", "both a number and a name");
      if (pp.named_port->empty()) return PolicyError(policy, path + ".port", "empty name");
      s.kind = PortSpec::Kind::kNamed;
      s.name = *pp.named_port;
    } else if (pp.port) {
      if (*pp.port < 1 || *pp.port > 65535) {
        return PolicyError(policy, path + ".port", "must be between 1 and 65535");
      }
      s.kind = PortSpec::Kind::kRange;
      s.lo = static_cast<uint16_t>(*pp.port);
      s.hi = static_cast<uint16_t>(pp.end_port.value_or(*pp.port));
    } else {
      s.kind = PortSpec::Kind::kProtoAll;
    }
    out.push_back(std::move(s));
  }
  return out;
}

// ---- groups ----

absl::StatusOr<std::optional<uint16_t>> ResolvePort(const Pod& pod, const std::string& name,
                                                    Protocol protocol) {
  std::optional<int32_t> port = pod.ResolvePort(name, protocol);
  if (!port) return std::optional<uint16_t>();
  if (*port < 1 || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("pod ", pod.Key(), ": containerPort ", name, "/",
                                                   ProtocolName(protocol), " = ", *port,
                                                   ": must be between 1 and 65535"));
  }
  return std::optional<uint16_t>(static_cast<uint16_t>(*port));
}

void Sources::Mark(const std::string& source) {
  present = true;
  if (std::find(list.begin(), list.end(), source) == list.end()) list.push_back(source);
}

bool Selects(const NetworkPolicy& p, const Pod& pod, Dir dir) {
  if (pod.host_network || p.namespace_name != pod.namespace_name) return false;
  if (dir == Dir::kIngress ? !p.ingress_type : !p.egress_type) return false;
  return Matches(p.pod_selector, pod.labels);
}

Labels NamespaceLabels(const State& s, const std::string& ns) {
  Labels labels;
  if (const Namespace* n = s.FindNamespace(ns)) labels = n->labels;
  labels[kNamespaceNameLabel] = ns;
  return labels;
}

absl::StatusOr<std::string> GroupKey(Dir dir, const std::vector<const NetworkPolicy*>& policies,
                                     const Pod& pod, Resolution* resolution) {
  std::string gkey = absl::StrCat(DirName(dir), "\n");
  for (const NetworkPolicy* p : policies) absl::StrAppend(&gkey, p->Key(), "\n");
  if (dir == Dir::kIngress) {
    for (const NetworkPolicy* p : policies) {
      for (const Rule& r : p->ingress) {
        for (const PolicyPort& pp : r.ports) {
          if (pp.named_port) (*resolution)[{*pp.named_port, pp.protocol}] = std::nullopt;
        }
      }
    }
    for (auto& [np, port] : *resolution) {
      ASSIGN_OR_RETURN(std::optional<uint16_t> r, ResolvePort(pod, np.first, np.second));
      if (r) port = *r;
      absl::StrAppend(&gkey, "port ", np.first, "/", ProtocolName(np.second), "=",
                      port ? absl::StrCat(*port) : std::string("-"), "\n");
    }
  }
  return gkey;
}

std::string GroupName(Dir dir, const std::string& policy_ns, const std::string& policy_name,
                      const std::string& salted_key) {
  std::string readable =
      Sanitize(absl::StrCat(policy_ns, "_", policy_name)).substr(0, kReadableBudget);
  return absl::StrCat(dir == Dir::kIngress ? "in-" : "eg-", readable, "-",
                      absl::StrFormat("%08x", static_cast<uint32_t>(Fnv1a64(salted_key) >> 32)));
}

std::string GroupComment(Dir dir, const Resolution& resolution,
                         const std::vector<std::string>& policy_keys) {
  std::string head = absl::StrCat(DirName(dir), " of pods selected by ");
  if (!resolution.empty()) {
    std::vector<std::string> res;
    for (const auto& [np, port] : resolution) {
      res.push_back(absl::StrCat(np.first, "/", ProtocolName(np.second), "=",
                                 port ? absl::StrCat(*port) : std::string("none")));
    }
    // Named-port resolution first: it is what tells groups of the same policies apart.
    head = absl::StrCat(DirName(dir), " (", absl::StrJoin(res, ","), ") of pods selected by ");
  }
  return JoinLimited(head, policy_keys);
}

std::string DropComment(Dir dir, const std::vector<std::string>& policy_keys) {
  return JoinLimited(absl::StrCat("no ", DirName(dir), " rule of "), policy_keys);
}

std::string SuppressedComment(Dir dir, const std::vector<std::string>& policy_keys) {
  return JoinLimited(absl::StrCat(kSuppressedCommentPrefix, "no ", DirName(dir), " rule of "),
                     policy_keys);
}

void AppendDrop(nft::Chain* chain, Dir dir, const std::vector<std::string>& policy_keys,
                const std::optional<nft::LimitStmt>& limit, std::optional<nft::LogStmt> log) {
  nft::Rule drop = MakeRule({}, nft::Verdict::Drop(), DropComment(dir, policy_keys));
  if (!limit || !log) {
    chain->rules.push_back(std::move(drop));
    return;
  }
  log->prefix = absl::StrCat(kDenyLogPrefix, chain->name);
  drop.limit = limit;
  drop.log = std::move(log);
  chain->rules.push_back(std::move(drop));
  nft::Rule suppressed = MakeRule({}, nft::Verdict::Drop(), SuppressedComment(dir, policy_keys));
  suppressed.counter = true;
  chain->rules.push_back(std::move(suppressed));
}

// ---- allowed-flow logs ----

bool LogsAllowed(const std::set<std::string>& logged, const std::vector<std::string>& sources) {
  for (const std::string& src : sources) {
    if (logged.count(src.substr(0, src.find(' ')))) return true;  // "ns/name ingress[0]"
  }
  return false;
}

nft::Chain AllowLogChain(const std::string& group_chain, Dir dir,
                         const std::set<std::string>& logged, const nft::LimitStmt& limit,
                         nft::LogStmt log) {
  const std::vector<std::string> keys(logged.begin(), logged.end());
  nft::Chain chain;
  chain.name = absl::StrCat(group_chain, kAllowLogChainSuffix);
  chain.comment = JoinLimited(absl::StrCat("allowed-flow log of ", DirName(dir), ": "), keys);
  nft::CtStateMatch new_;
  new_.new_ = true;
  nft::Rule logged_rule = MakeRule({new_}, nft::Verdict::Return(),
                                   JoinLimited("first packet, allowed by a rule of ", keys));
  log.prefix = absl::StrCat(kAllowLogPrefix, group_chain);
  logged_rule.limit = limit;
  logged_rule.log = std::move(log);
  chain.rules.push_back(std::move(logged_rule));
  chain.rules.push_back(
      MakeRule({}, nft::Verdict::Return(), JoinLimited("over the log limit: allowed by ", keys)));
  return chain;
}

// ---- group set kinds ----

Slot SA(int f) { return f == 0 ? kA4 : kA6; }
Slot SP(int f) { return f == 0 ? kP4 : kP6; }
Slot SRa(int f) { return f == 0 ? kRa4 : kRa6; }
Slot SRp(int f) { return f == 0 ? kRp4 : kRp6; }

bool IsInterval(Slot s) { return s == kRa4 || s == kRa6 || s == kRp4 || s == kRp6 || s == kXr; }

Family SlotFamily(Slot s) {
  return (s == kA6 || s == kP6 || s == kRa6 || s == kRp6) ? Family::kV6 : Family::kV4;
}

const char* SlotSuffix(Slot s) {
  static const char* const k[kSlots] = {"-a4",  "-a6",  "-p4",  "-p6", "-ra4",
                                        "-ra6", "-rp4", "-rp6", "-x",  "-xr"};
  return k[s];
}

std::vector<U128> SlotDims(Slot s) {
  const U128 amax = AddrMax(SlotFamily(s));
  switch (s) {
    case kRa4:
    case kRa6:
      return {amax, 255};
    case kRp4:
    case kRp6:
      return {amax, 255, 65535};
    default:
      return {255, 65535};
  }
}

namespace {

// How many of (peer address, protocol, port) a slot's key holds; 0: no peer address, the key is
// (protocol, port).
size_t PeerDims(Slot s) {
  switch (s) {
    case kA4:
    case kA6:
      return 1;
    case kRa4:
    case kRa6:
      return 2;
    case kP4:
    case kP6:
    case kRp4:
    case kRp6:
      return 3;
    default:
      return 0;
  }
}

// `addr` followed by the first PeerDims(s) - 1 of `rest`, or `rest` for slots without a peer.
template <typename T>
std::vector<T> SlotFields(Slot s, T addr, const std::vector<T>& rest) {
  const size_t n = PeerDims(s);
  if (n == 0) return rest;
  std::vector<T> out = {addr};
  out.insert(out.end(), rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(n - 1));
  return out;
}

}  // namespace

std::vector<FieldType> SlotKey(Slot s) {
  const FieldType addr = SlotFamily(s) == Family::kV4 ? FieldType::kIpv4Addr : FieldType::kIpv6Addr;
  return SlotFields(s, addr, {FieldType::kInetProto, FieldType::kInetService});
}

const char* SlotCommentHead(Slot s) {
  switch (s) {
    case kA4:
    case kA6:
      return "peer pods, any port: ";
    case kP4:
    case kP6:
      return "peer pods . port: ";
    case kRa4:
    case kRa6:
      return "peer ranges . protocol: ";
    case kRp4:
    case kRp6:
      return "peer ranges . port ranges: ";
    case kX:
      return "any peer, port: ";
    default:
      return "any peer, port ranges: ";
  }
}

std::vector<Selector> SlotLookup(Slot s, Dir dir) {
  const bool in = dir == Dir::kIngress;
  const Selector peer = SlotFamily(s) == Family::kV4
                            ? (in ? Selector::kIpSaddr : Selector::kIpDaddr)
                            : (in ? Selector::kIp6Saddr : Selector::kIp6Daddr);
  return SlotFields(s, peer, {Selector::kL4Proto, Selector::kThDport});
}

Element BoxElement(Slot s, const Box& b) {
  Element e;
  e.key.reserve(b.size());
  const bool addr = s != kXr;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 0 && addr) {
      e.key.push_back(FieldValue::AddrRange(U128ToAddr(b[i].lo, SlotFamily(s)),
                                            U128ToAddr(b[i].hi, SlotFamily(s))));
    } else {
      e.key.push_back(
          FieldValue::NumRange(static_cast<uint32_t>(b[i].lo), static_cast<uint32_t>(b[i].hi)));
    }
  }
  return e;
}

std::vector<Element> BoxElements(Slot s, const std::vector<Box>& boxes) {
  const std::vector<Box> disjoint = DisjointUnion(boxes, SlotDims(s));
  std::vector<Element> out;
  out.reserve(disjoint.size());
  for (const Box& b : disjoint) out.push_back(BoxElement(s, b));
  return out;
}

// ---- rule parts ----

std::string RuleSource(const NetworkPolicy& policy, Dir dir, size_t index) {
  return absl::StrCat(policy.Key(), " ", DirName(dir), "[", index, "]");
}

bool InRanges(const IpAddr& ip, const std::vector<IpRange>& ranges) {
  bool inside = false;
  for (const IpRange& r : ranges) inside = inside || (r.lo <= ip && ip <= r.hi);
  return inside;
}

std::optional<uint16_t> IngressPort(const PortSpec& ps, Dir dir, const Resolution& resolution) {
  if (ps.kind != PortSpec::Kind::kNamed || dir != Dir::kIngress) return std::nullopt;
  auto it = resolution.find({ps.name, ps.protocol});
  if (it == resolution.end() || !it->second) return std::nullopt;
  return static_cast<uint16_t>(*it->second);
}

Part AnyPeerPart(const PortSpec& ps, Dir dir, std::optional<uint16_t> ingress_port) {
  Part part;
  const uint32_t proto = static_cast<uint8_t>(ps.protocol);
  auto add = [&](Slot slot, Box b) {
    part.marked.push_back(slot);
    part.boxes.emplace_back(slot, std::move(b));
  };
  switch (ps.kind) {
    case PortSpec::Kind::kAny:
      part.all = true;
      break;
    case PortSpec::Kind::kProtoAll:
      add(kXr, {NumSpan(proto, proto), NumSpan(0, 65535)});
      break;
    case PortSpec::Kind::kRange:
      if (ps.lo == ps.hi) {
        add(kX, {NumSpan(proto, proto), NumSpan(ps.lo, ps.lo)});
      } else {
        add(kXr, {NumSpan(proto, proto), NumSpan(ps.lo, ps.hi)});
      }
      break;
    case PortSpec::Kind::kNamed:
      if (dir == Dir::kIngress) {
        part.marked.push_back(kX);
        if (ingress_port) {
          part.boxes.emplace_back(
              kX, Box{NumSpan(proto, proto), NumSpan(*ingress_port, *ingress_port)});
        }
      } else {
        // Any destination, but the port is the destination pod's: every known pod with it.
        part.marked = {kP4, kP6};
        part.pods_named_port = true;
      }
      break;
  }
  return part;
}

Part IpBlockPart(const PortSpec& ps, Dir dir, std::optional<uint16_t> ingress_port, int f,
                 const std::vector<IpRange>& ranges) {
  Part part;
  const uint32_t proto = static_cast<uint8_t>(ps.protocol);
  auto add_ranges = [&](Slot slot, const std::vector<Span>& rest) {
    part.marked.push_back(slot);
    for (const IpRange& r : ranges) {
      Box b{AddrSpan(r.lo, r.hi)};
      b.insert(b.end(), rest.begin(), rest.end());
      part.boxes.emplace_back(slot, std::move(b));
    }
  };
  switch (ps.kind) {
    case PortSpec::Kind::kAny:
      add_ranges(SRa(f), {NumSpan(0, 255)});
      break;
    case PortSpec::Kind::kProtoAll:
      add_ranges(SRa(f), {NumSpan(proto, proto)});
      break;
    case PortSpec::Kind::kRange:
      add_ranges(SRp(f), {NumSpan(proto, proto), NumSpan(ps.lo, ps.hi)});
      break;
    case PortSpec::Kind::kNamed:
      if (dir == Dir::kIngress) {
        if (ingress_port) {
          add_ranges(SRp(f), {NumSpan(proto, proto), NumSpan(*ingress_port, *ingress_port)});
        } else {
          part.marked.push_back(SRp(f));
        }
      } else {
        // The destination must be a known pod inside the block: its own port number.
        part.marked.push_back(SP(f));
        part.pods_named_port = true;
      }
      break;
  }
  return part;
}

Slot SelectorSlot(const PortSpec& ps, int f) {
  switch (ps.kind) {
    case PortSpec::Kind::kAny:
      return SA(f);
    case PortSpec::Kind::kProtoAll:
      return SRa(f);
    case PortSpec::Kind::kRange:
      return ps.lo == ps.hi ? SP(f) : SRp(f);
    case PortSpec::Kind::kNamed:
      break;
  }
  return SP(f);
}

// ---- large rules ----

bool LargeRulePort(const PortSpec& ps, Dir dir) {
  return ps.kind == PortSpec::Kind::kRange || ps.kind == PortSpec::Kind::kProtoAll ||
         (ps.kind == PortSpec::Kind::kNamed && dir == Dir::kIngress);
}

LargeShape LargeShapeOf(const Rule& rule, Dir dir, const std::vector<PortSpec>& specs) {
  LargeShape shape;
  for (const Peer& peer : rule.peers) {
    if (peer.ip_block) {
      shape.ranges += CidrMinus(peer.ip_block->cidr, peer.ip_block->except).size();
    } else if (peer.pod_selector || peer.namespace_selector) {
      shape.selectors = true;
    }
  }
  for (const PortSpec& ps : specs) shape.ports += LargeRulePort(ps, dir) ? 1 : 0;
  return shape;
}

bool IsLarge(const LargeShape& shape, uint64_t selector_addrs) {
  const uint64_t peers = shape.ranges + selector_addrs;
  return shape.ports >= 2 && peers >= 2 && peers * shape.ports > kLargeRuleProduct;
}

bool LargeDependsOnPods(const LargeShape& shape) {
  return shape.selectors && shape.ports >= 2 && !IsLarge(shape, 0);
}

absl::Status CheckPolicySize(const NetworkPolicy& policy) {
  uint64_t total = 0;
  for (Dir dir : {Dir::kIngress, Dir::kEgress}) {
    const std::vector<Rule>& rules = dir == Dir::kIngress ? policy.ingress : policy.egress;
    for (size_t i = 0; i < rules.size(); ++i) {
      ASSIGN_OR_RETURN(std::vector<PortSpec> specs, NormalizePorts(policy, dir, i, rules[i]));
      // Counted from the policy alone, as it always was (stored policies stay valid): a
      // selector peer weighs kBoundSelectorWeight ranges and adds no element of its own.
      const LargeShape shape = LargeShapeOf(rules[i], dir, specs);
      const uint64_t ranges = shape.ranges;
      const uint64_t ports = specs.size();
      uint64_t selectors = 0;
      for (const Peer& peer : rules[i].peers) {
        if (!peer.ip_block && (peer.pod_selector || peer.namespace_selector)) ++selectors;
      }
      const uint64_t weighted = ranges + kBoundSelectorWeight * selectors;
      if (!rules[i].peers.empty() && shape.ports >= 2 && weighted >= 2 &&
          weighted * shape.ports > kLargeRuleProduct) {
        total += ranges + ports;
      } else {
        total += std::max<uint64_t>(ranges, 1) * ports;
      }
    }
  }
  if (total > kMaxPolicyElements) {
    return absl::InvalidArgumentError(absl::StrCat(
        "networkpolicy ", policy.Key(), ": spec: needs ", total,
        " set elements, more than the ", kMaxPolicyElements,
        " one policy may use (per rule: ipBlock ranges x ports, or ranges + ports when that "
        "product is over ",
        kLargeRuleProduct, ")"));
  }
  return absl::OkStatus();
}

std::string LargeSuffix(size_t k, int part) {
  return absl::StrCat("-s", k, part == 0 ? "v4" : part == 1 ? "v6" : "p");
}

Slot LargeBaseSlot(int part) { return part == 2 ? kXr : SRa(part); }

const char* LargeCommentHead(int part) {
  return part == 2 ? "ports of a large rule: " : "peers of a large rule: ";
}

nft::Rule LargeRuleLookup(const std::string& peers, const std::string& ports, int f, Dir dir,
                          const std::string& comment) {
  return MakeRule({Lookup(SlotLookup(SRa(f), dir), peers), Lookup(SlotLookup(kXr, dir), ports)},
                  nft::Verdict::Return(), comment);
}

Box LargePeerBox(U128 lo, U128 hi) { return {Span{lo, hi}, NumSpan(0, 255)}; }

std::optional<Box> LargePortBox(const PortSpec& ps, std::optional<uint16_t> ingress_port) {
  const uint32_t proto = static_cast<uint8_t>(ps.protocol);
  switch (ps.kind) {
    case PortSpec::Kind::kProtoAll:
      return Box{NumSpan(proto, proto), NumSpan(0, 65535)};
    case PortSpec::Kind::kRange:
      return Box{NumSpan(proto, proto), NumSpan(ps.lo, ps.hi)};
    case PortSpec::Kind::kNamed:
      if (!ingress_port) return std::nullopt;
      return Box{NumSpan(proto, proto), NumSpan(*ingress_port, *ingress_port)};
    case PortSpec::Kind::kAny:
      break;
  }
  return std::nullopt;  // not a large-rule port (callers check LargeRulePort)
}

void CountRules(bool counters, nft::Chain* chain) {
  if (!counters) return;
  for (nft::Rule& r : chain->rules) r.counter = true;
}

nft::Rule MakeRule(std::vector<nft::Match> matches, std::optional<nft::Verdict> verdict,
                   std::string comment) {
  nft::Rule r;
  r.matches = std::move(matches);
  r.verdict = std::move(verdict);
  r.comment = std::move(comment);
  return r;
}

nft::LookupMatch Lookup(std::vector<Selector> key, std::string set, bool vmap) {
  nft::LookupMatch m;
  m.key = std::move(key);
  m.set = std::move(set);
  m.vmap = vmap;
  return m;
}

namespace {

// ICMPv6 neighbour discovery: router solicitation (133) .. neighbour advertisement (136).
constexpr uint8_t kNdFirstType = 133, kNdLastType = 136;

void AddEmptySet(nft::Program* prog, const std::string& name, std::vector<FieldType> key,
                 const std::string& comment, bool vmap) {
  nft::Set set;
  set.name = name;
  set.key = std::move(key);
  set.comment = comment;
  set.vmap = vmap;
  prog->sets[name] = std::move(set);
}

void EmitSkeleton(nft::Program* prog) {
  using nft::Chain;
  using nft::Verdict;
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

}  // namespace

nft::Program Skeleton(const CompileOptions& opts) {
  nft::Program prog;
  prog.table = opts.table;
  // A node name is a DNS subdomain of up to 253 characters: CommentFrom bounds the comment.
  prog.comment = nft::CommentFrom(opts.node_name.empty()
                                      ? "Kubernetes NetworkPolicy, managed by netpol"
                                      : absl::StrCat("Kubernetes NetworkPolicy for node ",
                                                     opts.node_name, ", managed by netpol"));
  EmitSkeleton(&prog);
  const char* dispatch_names[2][2] = {{kIngressDispatchV4, kIngressDispatchV6},
                                      {kEgressDispatchV4, kEgressDispatchV6}};
  for (int d = 0; d < 2; ++d) {
    for (int f = 0; f < 2; ++f) {
      AddEmptySet(&prog, dispatch_names[d][f],
                  {f == 0 ? FieldType::kIpv4Addr : FieldType::kIpv6Addr},
                  absl::StrCat(d == 0 ? "ingress" : "egress",
                               " dispatch: local isolated pod -> its group chain"),
                  true);
    }
  }
  AddEmptySet(&prog, kSelfV4, {FieldType::kIpv4Addr, FieldType::kIpv4Addr},
              "local isolated pods: address . same address", false);
  AddEmptySet(&prog, kSelfV6, {FieldType::kIpv6Addr, FieldType::kIpv6Addr},
              "local isolated pods: address . same address", false);
  return prog;
}

}  // namespace netpol::compiler::internal

// ---- compiler.h: what both the program's users and the writers call ----

namespace netpol::compiler {

bool IsLocalPod(const Pod& pod, const CompileOptions& opts) {
  if (pod.host_network) return false;
  if (!opts.node_name.empty() && pod.node_name == opts.node_name) return true;
  return opts.attached_pods.count(pod.Key()) > 0;
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
