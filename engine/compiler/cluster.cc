// The ClusterNetworkPolicy tiers of the compiled program: see cluster.h and RULESET.md
// "ClusterNetworkPolicy tiers".
#include "engine/compiler/cluster.h"

#include <algorithm>
#include <iterator>
#include <memory>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/compiler/common.h"
#include "engine/selector/selector.h"
#include "engine/util/status_macros.h"

namespace netpol::compiler {

namespace {

absl::Status CnpError(const ClusterNetworkPolicy& cnp, const std::string& field,
                      const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("clusternetworkpolicy ", cnp.name, ": ", field, ": ", what));
}

// The peer (or subject) `p` at `field`: exactly one of its kinds; `nodes`/`networks` only where
// `addresses` (egress peers).
absl::Status CheckPeer(const ClusterNetworkPolicy& cnp, const std::string& field, const CnpPeer& p,
                       bool addresses) {
  const int kinds = (p.namespaces ? 1 : 0) + (p.pods ? 1 : 0) + (p.nodes ? 1 : 0) +
                    (p.networks.empty() ? 0 : 1);
  if (kinds != 1) return CnpError(cnp, field, "exactly one of its fields must be set");
  if (!addresses && (p.nodes || !p.networks.empty())) {
    return CnpError(cnp, field, "nodes and networks are egress peers only");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateObject(const ClusterNetworkPolicy& cnp) {
  if (cnp.priority < 0 || cnp.priority > 1000) {
    return CnpError(cnp, "spec.priority", absl::StrCat(cnp.priority, ": must be between 0 and 1000"));
  }
  {
    const CnpPeer& s = cnp.subject;
    if ((s.namespaces ? 1 : 0) + (s.pods ? 1 : 0) != 1 || s.nodes || !s.networks.empty()) {
      return CnpError(cnp, "spec.subject", "exactly one of namespaces and pods must be set");
    }
  }
  for (int d = 0; d < 2; ++d) {
    const std::vector<CnpRule>& rules = d == 0 ? cnp.ingress : cnp.egress;
    const std::string dir = d == 0 ? "ingress" : "egress";
    for (size_t i = 0; i < rules.size(); ++i) {
      const std::string at = absl::StrCat("spec.", dir, "[", i, "]");
      if (rules[i].peers.empty()) {
        return CnpError(cnp, absl::StrCat(at, d == 0 ? ".from" : ".to"), "must not be empty");
      }
      for (size_t k = 0; k < rules[i].peers.size(); ++k) {
        RETURN_IF_ERROR(CheckPeer(cnp, absl::StrCat(at, d == 0 ? ".from[" : ".to[", k, "]"),
                                  rules[i].peers[k], /*addresses=*/d == 1));
      }
      for (size_t k = 0; k < rules[i].ports.size(); ++k) {
        const CnpPort& p = rules[i].ports[k];
        const std::string field = absl::StrCat(at, ".protocols[", k, "]");
        if (p.named_port) {
          if (p.named_port->empty()) return CnpError(cnp, field, "empty destinationNamedPort");
          continue;
        }
        if (!p.protocol) return CnpError(cnp, field, "a protocol is required");
        if (p.port < 1 || p.port > 65535) {
          return CnpError(cnp, field, absl::StrCat("port ", p.port, ": must be between 1 and 65535"));
        }
        if (p.end_port != 0 && (p.end_port <= p.port || p.end_port > 65535)) {
          return CnpError(cnp, field,
                          absl::StrCat("range ", p.port, "-", p.end_port,
                                       ": end must be above start and at most 65535"));
        }
      }
    }
  }
  return absl::OkStatus();
}

namespace internal {
namespace {

constexpr Protocol kProtocols[] = {Protocol::kTCP, Protocol::kUDP, Protocol::kSCTP};
enum Value { kAccept = 0, kDeny = 1, kPass = 2 };

// The chain name: "cin-"/"ceg-" (4) + readable + "-" + 8 hex digits + the longest set suffix
// "-aa4" (4) = at most nft::kMaxNameLength.
constexpr size_t kTierReadableBudget = nft::kMaxNameLength - 4 - 1 - kHashDigits - 4;

bool Full(const Box& b, size_t from, const std::vector<U128>& dims) {
  for (size_t k = from; k < dims.size(); ++k) {
    if (b[k].lo != 0 || b[k].hi != dims[k]) return false;
  }
  return true;
}

// FirstMatch on dimensions d.. of `active` (earlier first); the boxes returned span those only.
std::vector<ValuedBox> Cut(const std::vector<const ValuedBox*>& active, size_t d,
                           const std::vector<U128>& dims) {
  std::vector<ValuedBox> out;
  if (active.empty()) return out;
  std::vector<U128> pts;
  for (const ValuedBox* b : active) {
    pts.push_back(b->box[d].lo);
    if (b->box[d].hi < dims[d]) pts.push_back(b->box[d].hi + 1);
  }
  std::sort(pts.begin(), pts.end());
  pts.erase(std::unique(pts.begin(), pts.end()), pts.end());
  bool have_run = false;
  U128 run_lo = 0, run_hi = 0;
  std::vector<ValuedBox> run;
  auto flush = [&] {
    if (!have_run) return;
    for (ValuedBox& p : run) {
      ValuedBox vb;
      vb.box.reserve(p.box.size() + 1);
      vb.box.push_back({run_lo, run_hi});
      vb.box.insert(vb.box.end(), p.box.begin(), p.box.end());
      vb.value = p.value;
      out.push_back(std::move(vb));
    }
    have_run = false;
  };
  // A sweep along dimension d: the boxes covering the current segment, by input position (the
  // first-match order), so a segment costs the boxes that cover it, not all of them.
  std::vector<size_t> by_lo(active.size()), by_end(active.size());
  for (size_t i = 0; i < active.size(); ++i) by_lo[i] = by_end[i] = i;
  std::sort(by_lo.begin(), by_lo.end(),
            [&](size_t a, size_t b) { return active[a]->box[d].lo < active[b]->box[d].lo; });
  std::sort(by_end.begin(), by_end.end(),
            [&](size_t a, size_t b) { return active[a]->box[d].hi < active[b]->box[d].hi; });
  std::set<size_t> covering;
  size_t next_add = 0, next_remove = 0;
  std::vector<const ValuedBox*> sub;
  for (size_t i = 0; i < pts.size(); ++i) {
    const U128 lo = pts[i];
    const U128 hi = i + 1 < pts.size() ? pts[i + 1] - 1 : dims[d];
    while (next_add < by_lo.size() && active[by_lo[next_add]]->box[d].lo <= lo) {
      covering.insert(by_lo[next_add++]);
    }
    while (next_remove < by_end.size() && active[by_end[next_remove]]->box[d].hi < lo) {
      covering.erase(by_end[next_remove++]);
    }
    sub.clear();
    for (size_t k : covering) {
      sub.push_back(active[k]);
      if (Full(active[k]->box, d + 1, dims)) break;  // it shadows everything after it here
    }
    std::vector<ValuedBox> res;
    if (!sub.empty()) {
      if (d + 1 == dims.size()) {
        res.push_back({{}, sub[0]->value});
      } else {
        res = Cut(sub, d + 1, dims);
      }
    }
    if (have_run && run_hi + 1 == lo && res == run) {
      run_hi = hi;
      continue;
    }
    flush();
    if (!res.empty()) {
      have_run = true;
      run_lo = lo;
      run_hi = hi;
      run = std::move(res);
    }
  }
  flush();
  return out;
}

// The labels a namespace selector sees, per namespace (computed once per namespace).
class NsLabels {
 public:
  explicit NsLabels(const State& s) : s_(s) {}
  const Labels& Of(const std::string& ns) {
    auto it = cache_.find(ns);
    if (it == cache_.end()) it = cache_.emplace(ns, NamespaceLabels(s_, ns)).first;
    return it->second;
  }

 private:
  const State& s_;
  std::map<std::string, Labels> cache_;
};

bool PodMatches(const CnpPeer& peer, const Pod& pod, const Labels& ns_labels) {
  if (pod.host_network) return false;
  if (peer.namespaces) return Matches(*peer.namespaces, ns_labels);
  if (peer.pods) {
    return Matches(peer.pods->pod_selector, pod.labels) &&
           Matches(peer.pods->namespace_selector, ns_labels);
  }
  return false;
}

int ValueOf(CnpAction a) {
  return a == CnpAction::kAccept ? kAccept : a == CnpAction::kDeny ? kDeny : kPass;
}

// The part of a tier chain's named-port `resolution` that the ingress rules of `cnps` use (egress
// named ports resolve on the destination: none).
Resolution TierResolution(const std::vector<const ClusterNetworkPolicy*>& cnps, Dir dir,
                          const Resolution& resolution) {
  Resolution out;
  if (dir != Dir::kIngress) return out;
  for (const ClusterNetworkPolicy* c : cnps) {
    for (const CnpRule& r : c->ingress) {
      for (const CnpPort& p : r.ports) {
        if (!p.named_port) continue;
        for (Protocol proto : kProtocols) {
          auto it = resolution.find({*p.named_port, proto});
          if (it != resolution.end()) out.insert(*it);
        }
      }
    }
  }
  return out;
}

// What a tier's sets hold is a function of this key: direction, tier, the CNPs in evaluation
// order and the resolution of their ingress named ports.
std::string TierContentKey(const std::vector<const ClusterNetworkPolicy*>& cnps, Dir dir,
                           char tier_letter, const Resolution& resolution) {
  std::string key = absl::StrCat(DirName(dir), "|", std::string(1, tier_letter));
  for (const ClusterNetworkPolicy* c : cnps) absl::StrAppend(&key, ",", c->name);
  absl::StrAppend(&key, "|R");
  for (const auto& [np_, port] : resolution) {
    absl::StrAppend(&key, ",", np_.first, "/", ProtocolName(np_.second), "=",
                    port ? absl::StrCat(*port) : "none");
  }
  return key;
}

// The name of a tier's sets without their suffix: "cin-set-"/"ceg-set-" and 16 hex digits of
// the FNV-1a hash of the (salted) content key.
std::string TierSetBase(Dir dir, const std::string& salted_key) {
  return absl::StrCat(dir == Dir::kIngress ? "cin" : "ceg", "-set-",
                      absl::Hex(Fnv1a64(salted_key), absl::kZeroPad16));
}

const char* DispatchMap(Dir d, Family f) {
  if (d == Dir::kIngress) return f == Family::kV4 ? kIngressDispatchV4 : kIngressDispatchV6;
  return f == Family::kV4 ? kEgressDispatchV4 : kEgressDispatchV6;
}

const char* SelfSet(Family f) { return f == Family::kV4 ? kSelfV4 : kSelfV6; }

// The element of `held`'s set `set` whose key is `key`, or nullptr.
const nft::Element* FindElement(const nft::Program& held, const std::string& set,
                                const std::vector<nft::FieldValue>& key) {
  auto it = held.elements.find(set);
  if (it == held.elements.end()) return nullptr;
  auto e = std::lower_bound(it->second.begin(), it->second.end(), key,
                            [](const nft::Element& a, const std::vector<nft::FieldValue>& k) {
                              return a.key < k;
                            });
  return e != it->second.end() && e->key == key ? &*e : nullptr;
}

bool ByBoxThenValue(const ValuedBox& a, const ValuedBox& b) {
  return a.box < b.box || (a.box == b.box && a.value < b.value);
}

}  // namespace

// A tier's content (RULESET.md "Tier sets shared by content"): its sets and first-match boxes.
struct TierContent {
  Dir dir = Dir::kIngress;
  char letter = 'a';               // 'a' Admin, 'b' Baseline
  std::vector<std::string> cnps;  // in evaluation order
  Resolution resolution;          // of the named ports its ingress rules use
  std::string base;               // its sets' name without the suffix
  std::vector<int> idx;           // the CNPs' positions in their tier's order (-1: gone)
  std::vector<ValuedBox> out[2];  // FirstMatch per family index, sorted
  int refs = 0;                   // tier chains that look it up
};

// One tier chain: local pods of one direction with the same Admin CNPs, the same NetworkPolicy
// group chain (or, not isolated, the same Baseline CNPs) and the same resolution of the CNPs'
// ingress named ports.
struct TierChainRec {
  Dir dir = Dir::kIngress;
  std::vector<std::string> admin;
  std::string np_chain;  // the group chain when NetworkPolicies isolate the pods
  std::vector<std::string> baseline;  // only when not isolated
  Resolution resolution;
  std::string content[2];  // content keys of its Admin and Baseline tiers ("" none)
  std::string name;
  std::set<std::string> pods;
};

struct TierLayer::Impl {
  std::map<std::string, TierContent> contents;  // by content key
  std::set<std::string> set_bases;
  std::map<std::string, TierChainRec> chains;  // by chain key
  std::set<std::string> chain_names;
  bool clash = false;  // a name needed a salt: later updates compile afresh
  std::vector<std::string> order[2];  // CNP names by tier, in evaluation order
  std::map<std::string, int> pos;     // CNP name -> position in its tier's order
  std::set<std::string> local;        // local pod keys
  std::map<std::string, std::string> pod_chain[2];  // local pod key -> chain key
  std::map<std::string, std::vector<IpAddr>> pod_ips;  // tiered pods' addresses
  std::map<IpAddr, std::set<std::string>> tiered_at[2];  // address -> tiered pods, by Dir
  std::map<U128, std::set<std::string>> pods_at[2];      // non-hostNetwork pods by address
  std::map<std::string, GroupRuleSources> sources;        // by tier chain name

  // ---- per update ----
  const State* s = nullptr;
  const TierEnv* env = nullptr;
  const CompileOptions* opts = nullptr;
  std::unique_ptr<NsLabels> ns;
  std::vector<const ClusterNetworkPolicy*> ptrs[2];  // order[t]'s CNPs in the new State

  // The positions of `c`'s CNPs in their tier's order.
  void Index(TierContent* c) const {
    c->idx.clear();
    for (const std::string& n : c->cnps) {
      auto it = pos.find(n);
      c->idx.push_back(it == pos.end() ? -1 : it->second);
    }
  }

  const ClusterNetworkPolicy& Cnp(const std::string& name) const {
    return s->cluster_policies.find(name)->second;
  }

  void IndexPod(const Pod& pod, bool add) {
    if (pod.host_network) return;
    for (const IpAddr& ip : pod.ips) {
      auto& at = pods_at[Fam(ip.family)];
      const U128 a = AddrToU128(ip);
      if (add) {
        at[a].insert(pod.Key());
      } else {
        auto it = at.find(a);
        if (it == at.end()) continue;
        it->second.erase(pod.Key());
        if (it->second.empty()) at.erase(it);
      }
    }
  }

  // The chain key of local pod `pod` for `dir` in the State being updated to (nullopt: none).
  std::optional<std::pair<std::string, TierChainRec>> ChainOf(const Pod& pod, Dir dir) {
    if (pod.host_network || pod.ips.empty()) return std::nullopt;
    TierChainRec tc;
    tc.dir = dir;
    const Labels& labels = ns->Of(pod.namespace_name);
    // A CNP without rules for this direction decides nothing there: it makes no tier (a pod
    // whose CNPs have none keeps its plain dispatch, without an empty tier chain).
    auto has_rules = [dir](const ClusterNetworkPolicy& c) {
      return !(dir == Dir::kIngress ? c.ingress : c.egress).empty();
    };
    std::vector<const ClusterNetworkPolicy*> lists[2];
    for (const ClusterNetworkPolicy* c : ptrs[0]) {
      if (has_rules(*c) && PodMatches(c->subject, pod, labels)) lists[0].push_back(c);
    }
    tc.np_chain = env->group_chain(pod.Key(), dir);
    if (tc.np_chain.empty()) {
      for (const ClusterNetworkPolicy* c : ptrs[1]) {
        if (has_rules(*c) && PodMatches(c->subject, pod, labels)) lists[1].push_back(c);
      }
    }
    if (lists[0].empty() && lists[1].empty()) return std::nullopt;
    if (dir == Dir::kIngress) {
      for (const auto& list : lists) {
        for (const ClusterNetworkPolicy* c : list) {
          for (const CnpRule& r : c->ingress) {
            for (const CnpPort& p : r.ports) {
              if (!p.named_port) continue;
              for (Protocol proto : kProtocols) {
                // Validated beforehand (ValidateClusterState): no error here.
                auto port = ResolvePort(pod, *p.named_port, proto);
                tc.resolution[{*p.named_port, proto}] =
                    port.ok() && port->has_value() ? std::optional<int32_t>(**port) : std::nullopt;
              }
            }
          }
        }
      }
    }
    std::string k = absl::StrCat(DirName(dir), "|A");
    for (const ClusterNetworkPolicy* c : lists[0]) {
      absl::StrAppend(&k, ",", c->name);
      tc.admin.push_back(c->name);
    }
    absl::StrAppend(&k, tc.np_chain.empty() ? "|B" : "|N,", tc.np_chain);
    for (const ClusterNetworkPolicy* c : lists[1]) {
      absl::StrAppend(&k, ",", c->name);
      tc.baseline.push_back(c->name);
    }
    absl::StrAppend(&k, "|R");
    for (const auto& [np_, port] : tc.resolution) {
      absl::StrAppend(&k, ",", np_.first, "/", ProtocolName(np_.second), "=",
                      port ? absl::StrCat(*port) : "none");
    }
    // The contents' keys depend on the CNPs' bodies (the named ports they use): part of the
    // chain's key, so that a chain's sets are a function of its key.
    for (int t = 0; t < 2; ++t) {
      if (lists[t].empty()) continue;
      tc.content[t] = TierContentKey(lists[t], dir, t == 0 ? 'a' : 'b',
                                     TierResolution(lists[t], dir, tc.resolution));
      absl::StrAppend(&k, "|C", tc.content[t]);
    }
    return std::make_pair(std::move(k), std::move(tc));
  }

  // The input boxes of content `c` (earlier first) for family index `f` inside addresses
  // [lo, hi]; `full`: every address (pods through the selector indexes).
  std::vector<ValuedBox> InputBoxes(const TierContent& c, int f, U128 lo, U128 hi, bool full) {
    const Family fam = f == 0 ? Family::kV4 : Family::kV6;
    // The pods with an address in the window (not for a full one).
    std::vector<std::pair<U128, const Pod*>> window_pods;
    if (!full) {
      for (auto it = pods_at[f].lower_bound(lo); it != pods_at[f].end() && it->first <= hi; ++it) {
        for (const std::string& key : it->second) {
          if (const Pod* pod = s->FindPod(key)) window_pods.emplace_back(it->first, pod);
        }
      }
    }
    auto peer_spans = [&](const CnpPeer& peer, std::vector<Span>* out) {
      if (peer.namespaces || peer.pods) {
        if (!full) {
          for (const auto& [a, pod] : window_pods) {
            if (PodMatches(peer, *pod, ns->Of(pod->namespace_name))) out->push_back({a, a});
          }
          return;
        }
        const LabelSelector& ns_sel =
            peer.namespaces ? *peer.namespaces : peer.pods->namespace_selector;
        env->selector_candidates(peer.pods ? &peer.pods->pod_selector : nullptr, ns_sel,
                                 [&](const Pod& pod, const Labels& labels) {
                                   if (!PodMatches(peer, pod, labels)) return;
                                   for (const IpAddr& ip : pod.ips) {
                                     if (ip.family == fam) out->push_back(AddrSpan(ip, ip));
                                   }
                                 });
        return;
      }
      auto clip = [&](Span sp) {
        sp.lo = std::max(sp.lo, lo);
        sp.hi = std::min(sp.hi, hi);
        if (sp.lo <= sp.hi) out->push_back(sp);
      };
      if (peer.nodes) {
        for (const auto& [name, node] : s->nodes) {
          if (!Matches(*peer.nodes, node.labels)) continue;
          for (const IpAddr& ip : node.ips) {
            if (ip.family == fam) clip(AddrSpan(ip, ip));
          }
        }
        return;
      }
      for (const Cidr& cidr : peer.networks) {
        if (cidr.addr.family == fam) clip(AddrSpan(cidr.First(), cidr.Last()));
      }
    };
    std::vector<ValuedBox> ordered;
    std::vector<Span> spans;
    const std::vector<const ClusterNetworkPolicy*>& tier = ptrs[c.letter == 'a' ? 0 : 1];
    for (int i : c.idx) {
      if (i < 0) continue;  // a CNP gone: the content goes with its chains
      const ClusterNetworkPolicy& cnp = *tier.at(static_cast<size_t>(i));
      for (const CnpRule& rule : c.dir == Dir::kIngress ? cnp.ingress : cnp.egress) {
        const int value = ValueOf(rule.action);
        spans.clear();
        for (const CnpPeer& peer : rule.peers) peer_spans(peer, &spans);
        if (spans.empty()) continue;
        auto add = [&](const Span& a, Span proto, Span port) {
          ordered.push_back({{a, proto, port}, value});
        };
        if (rule.ports.empty()) {
          for (const Span& a : spans) add(a, NumSpan(0, 255), NumSpan(0, 65535));
          continue;
        }
        for (const CnpPort& p : rule.ports) {
          if (!p.named_port) {
            const uint32_t proto = static_cast<uint32_t>(*p.protocol);
            const uint32_t end = p.end_port != 0 ? p.end_port : p.port;
            for (const Span& a : spans) add(a, NumSpan(proto, proto), NumSpan(p.port, end));
            continue;
          }
          for (Protocol proto : kProtocols) {
            const uint32_t pr = static_cast<uint32_t>(proto);
            if (c.dir == Dir::kIngress) {
              // Resolved on the subject pod: part of the content.
              auto it = c.resolution.find({*p.named_port, proto});
              if (it == c.resolution.end() || !it->second) continue;
              for (const Span& a : spans) add(a, NumSpan(pr, pr), NumSpan(*it->second, *it->second));
              continue;
            }
            // Egress: resolved on the pod that owns each address inside the peer's (the first
            // non-hostNetwork pod by key).
            for (const Span& a : spans) {
              for (auto it = pods_at[f].lower_bound(a.lo); it != pods_at[f].end() && it->first <= a.hi;
                   ++it) {
                const Pod* owner = s->FindPod(*it->second.begin());
                if (owner == nullptr) continue;
                std::optional<int32_t> n = owner->ResolvePort(*p.named_port, proto);
                if (!n) continue;
                const uint32_t port = static_cast<uint32_t>(*n);
                add({it->first, it->first}, NumSpan(pr, pr), NumSpan(port, port));
              }
            }
          }
        }
      }
    }
    return ordered;
  }

  std::string SetName(const TierContent& c, int f, int v) const {
    return absl::StrCat(c.base, "-", std::string(1, c.letter), v == kAccept ? "a" : "d",
                        f == 0 ? "4" : "6");
  }

  nft::Set SetDef(const TierContent& c, int f, int v) const {
    nft::Set def;
    def.name = SetName(c, f, v);
    def.key = SlotKey(SRp(f));
    def.interval = true;
    def.comment = JoinLimited(absl::StrCat(c.letter == 'a' ? "Admin" : "Baseline", " tier ",
                                           v == kAccept ? "Accept" : "Deny",
                                           " (first match, peer . port): "),
                              c.cnps);
    return def;
  }

  // Adds the elements of `boxes` (Accept and Deny; Pass boxes have none) to the sets of `c`
  // in `prog`, with the sets' definitions.
  void PutElements(const TierContent& c, int f, const std::vector<ValuedBox>& boxes,
                   nft::Program* prog) const {
    for (int v : {kAccept, kDeny}) {
      nft::Set def = SetDef(c, f, v);
      std::vector<nft::Element>& els = prog->elements[def.name];
      for (const ValuedBox& b : boxes) {
        if (b.value == v) els.push_back(BoxElement(SRp(f), b.box));
      }
      std::sort(els.begin(), els.end());
      prog->sets[def.name] = std::move(def);
    }
  }

  // Replaces the boxes of `c` (family index f) in [lo, hi] (whole runs) by `next`, putting the
  // elements that go into `from` and those that come into `to`.
  void Replace(TierContent* c, int f, U128 lo, U128 hi, std::vector<ValuedBox> next,
               nft::Program* from, nft::Program* to) const {
    std::vector<ValuedBox>& out = c->out[f];
    auto first = std::lower_bound(out.begin(), out.end(), lo, [](const ValuedBox& b, U128 x) {
      return b.box[0].lo < x;
    });
    auto last = first;
    while (last != out.end() && last->box[0].lo <= hi) ++last;
    std::vector<ValuedBox> gone, came;
    std::set_difference(first, last, next.begin(), next.end(), std::back_inserter(gone),
                        ByBoxThenValue);
    std::set_difference(next.begin(), next.end(), first, last, std::back_inserter(came),
                        ByBoxThenValue);
    if (gone.empty() && came.empty()) return;
    const size_t at = static_cast<size_t>(first - out.begin());
    out.erase(first, last);
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(at), std::make_move_iterator(next.begin()),
               std::make_move_iterator(next.end()));
    PutElements(*c, f, gone, from);
    PutElements(*c, f, came, to);
  }

  // Cuts the windows of `c` around the changed addresses `points` (family index f) again.
  void Rewindow(TierContent* c, int f, const std::set<U128>& points, nft::Program* from,
                nft::Program* to) {
    const U128 max = SlotDims(SRp(f))[0];
    const std::vector<ValuedBox>& out = c->out[f];
    std::vector<Span> wins;
    for (U128 a : points) {
      U128 lo = a, hi = a;
      const U128 qlo = a == 0 ? 0 : a - 1, qhi = a == max ? max : a + 1;
      auto it = std::lower_bound(out.begin(), out.end(), qlo, [](const ValuedBox& b, U128 x) {
        return b.box[0].hi < x;
      });
      for (; it != out.end() && it->box[0].lo <= qhi; ++it) {
        lo = std::min(lo, it->box[0].lo);
        hi = std::max(hi, it->box[0].hi);
      }
      wins.push_back({lo, hi});
    }
    std::sort(wins.begin(), wins.end());
    std::vector<Span> merged;
    for (const Span& w : wins) {
      if (!merged.empty() && (merged.back().hi == max || w.lo <= merged.back().hi + 1)) {
        merged.back().hi = std::max(merged.back().hi, w.hi);
      } else {
        merged.push_back(w);
      }
    }
    const std::vector<U128> dims = SlotDims(SRp(f));
    for (const Span& w : merged) {
      std::vector<ValuedBox> next = FirstMatch(InputBoxes(*c, f, w.lo, w.hi, false), dims);
      Replace(c, f, w.lo, w.hi, std::move(next), from, to);
    }
  }

  // The rules of `cnps` for `dir` with action `action`, in evaluation order: what the tier's
  // lookup of that action holds (its comment as "name ingress[0]", and the counters' sources).
  std::vector<TierRuleSource> RulesWith(const std::vector<std::string>& cnps, Dir dir,
                                        CnpAction action) const {
    std::vector<TierRuleSource> out;
    for (const std::string& name : cnps) {
      const ClusterNetworkPolicy& c = Cnp(name);
      const std::vector<CnpRule>& rules = dir == Dir::kIngress ? c.ingress : c.egress;
      for (size_t i = 0; i < rules.size(); ++i) {
        if (rules[i].action != action) continue;
        out.push_back(TierRuleSource{c.tier, c.name, c.priority, static_cast<int>(i),
                                     rules[i].name, action});
      }
    }
    return out;
  }

  static std::string RuleComment(const char* tier_name, CnpAction action, Dir dir,
                                 const std::vector<TierRuleSource>& rules) {
    std::vector<std::string> texts;
    texts.reserve(rules.size());
    for (const TierRuleSource& r : rules) {
      texts.push_back(absl::StrCat(r.policy, " ", DirName(dir), "[", r.rule, "]"));
    }
    if (texts.empty()) texts.push_back("no rule");  // the lookup's set stays empty
    return JoinLimited(absl::StrCat(tier_name, " tier ", CnpActionName(action), ": "), texts);
  }

  // Emits chain `tc` (and its tiers' deny-log chains) into `prog`, and what its rules decide
  // into `sources`. A tier is per family an Accept lookup (return: allowed) and a Deny lookup
  // (drop; with deny logs, goto the tier's deny-log chain, which logs within its limit and
  // drops) of its content's sets.
  void EmitChain(const TierChainRec& tc, nft::Program* prog) {
    nft::Chain chain;
    chain.name = tc.name;
    GroupRuleSources& src = sources[tc.name];
    src = GroupRuleSources();
    src.ingress = tc.dir == Dir::kIngress;
    std::vector<std::string> parts;
    for (const std::string& c : tc.admin) parts.push_back(absl::StrCat("Admin ", c));
    if (!tc.np_chain.empty()) parts.push_back(absl::StrCat("then ", tc.np_chain));
    for (const std::string& c : tc.baseline) parts.push_back(absl::StrCat("Baseline ", c));
    chain.comment = JoinLimited(absl::StrCat(DirName(tc.dir), " tiers: "), parts);
    auto tier = [&](int t) {
      const TierContent& c = contents.at(tc.content[t]);
      const char* tier_name = t == 0 ? "Admin" : "Baseline";
      const std::vector<std::string>& names = t == 0 ? tc.admin : tc.baseline;
      const std::vector<TierRuleSource> accepts = RulesWith(names, tc.dir, CnpAction::kAccept);
      const std::vector<TierRuleSource> denies = RulesWith(names, tc.dir, CnpAction::kDeny);
      const std::string accept_comment =
          RuleComment(tier_name, CnpAction::kAccept, tc.dir, accepts);
      const std::string deny_comment = RuleComment(tier_name, CnpAction::kDeny, tc.dir, denies);
      std::optional<std::string> log_chain;
      if (opts->deny_log) {
        log_chain = absl::StrCat(tc.name, t == 0 ? kAdminDenyLogSuffix : kBaselineDenyLogSuffix);
        nft::Chain log;
        log.name = *log_chain;
        log.comment = JoinLimited(
            absl::StrCat("deny log of the ", tier_name, " tier of ", tc.name, ": "), names);
        nft::Rule logged = MakeRule({}, nft::Verdict::Drop(), deny_comment);
        logged.limit = DenyLimit(*opts);
        logged.log = DenyLogStmt(*opts);
        logged.log->prefix = absl::StrCat(kDenyLogPrefix, *log_chain);
        log.rules.push_back(std::move(logged));
        nft::Rule suppressed = MakeRule(
            {}, nft::Verdict::Drop(),
            nft::CommentFrom(absl::StrCat(kSuppressedCommentPrefix, deny_comment)));
        suppressed.counter = true;
        log.rules.push_back(std::move(suppressed));
        prog->chains[log.name] = std::move(log);
      }
      for (int f = 0; f < 2; ++f) {
        for (int v : {kAccept, kDeny}) {
          nft::Verdict verdict = v == kAccept ? nft::Verdict::Return()
                                 : log_chain  ? nft::Verdict::Goto(*log_chain)
                                              : nft::Verdict::Drop();
          chain.rules.push_back(MakeRule({Lookup(SlotLookup(SRp(f), tc.dir), SetName(c, f, v))},
                                         std::move(verdict),
                                         v == kAccept ? accept_comment : deny_comment));
          src.rules.push_back({});
          src.tier_rules.push_back(v == kAccept ? accepts : denies);
        }
      }
    };
    if (!tc.admin.empty()) tier(0);
    if (!tc.np_chain.empty()) {
      chain.rules.push_back(MakeRule({}, nft::Verdict::Jump(tc.np_chain),
                                     "NetworkPolicy tier: the pods' group chain"));
      src.rules.push_back({});
      src.tier_rules.push_back({});
    } else if (!tc.baseline.empty()) {
      tier(1);
    }
    CountRules(opts->rule_counters, &chain);
    prog->chains[chain.name] = std::move(chain);
  }

  // Copies chain `name` of `held` (and the chains that belong to it) into `prog`.
  static void CopyChain(const nft::Program& held, const std::string& name, nft::Program* prog) {
    for (const std::string& n : {name, absl::StrCat(name, kAdminDenyLogSuffix),
                                 absl::StrCat(name, kBaselineDenyLogSuffix)}) {
      auto it = held.chains.find(n);
      if (it != held.chains.end()) prog->chains[n] = it->second;
    }
  }

  bool Update(const State& old_state, const State& new_state, const Delta& delta,
              const std::set<std::string>& relocated, const std::set<IpAddr>& np_addrs,
              const TierEnv& e, const CompileOptions& o, const nft::Program& held,
              nft::Program* from, nft::Program* to) {
    if (clash) return false;
    s = &new_state;
    env = &e;
    opts = &o;
    ns = std::make_unique<NsLabels>(new_state);
    const bool first = chains.empty() && contents.empty() && local.empty() && pods_at[0].empty() &&
                       pods_at[1].empty();

    // The indexes: pods by address, local pods.
    std::set<std::string> moved(delta.pods.begin(), delta.pods.end());
    moved.insert(relocated.begin(), relocated.end());
    for (const std::string& key : delta.pods) {
      if (const Pod* pod = old_state.FindPod(key)) IndexPod(*pod, false);
      if (const Pod* pod = new_state.FindPod(key)) IndexPod(*pod, true);
    }
    for (const std::string& key : moved) {
      const Pod* pod = new_state.FindPod(key);
      if (pod != nullptr && IsLocalPod(*pod, o)) {
        local.insert(key);
      } else {
        local.erase(key);
      }
    }

    // The CNPs in tier order (priority, then name: the map's order), from the new State; their
    // names and positions when a CNP changed.
    const bool cnps_changed = !delta.cluster_policies.empty() || first;
    for (auto& p : ptrs) p.clear();
    for (const auto& [name, cnp] : new_state.cluster_policies) {
      ptrs[static_cast<int>(cnp.tier)].push_back(&cnp);
    }
    for (auto& p : ptrs) {
      std::stable_sort(p.begin(), p.end(),
                       [](const auto* a, const auto* b) { return a->priority < b->priority; });
    }
    if (cnps_changed) {
      pos.clear();
      for (int t = 0; t < 2; ++t) {
        order[t].clear();
        for (const ClusterNetworkPolicy* c : ptrs[t]) {
          pos[c->name] = static_cast<int>(order[t].size());
          order[t].push_back(c->name);
        }
      }
      for (auto& [key, c] : contents) Index(&c);
    }

    // Local pods whose tier chains may change: every one when a CNP changed; otherwise the
    // changed and relocated pods and the local pods of the namespaces whose labels or
    // NetworkPolicies changed.
    std::set<std::string> affected;
    if (cnps_changed) {
      affected = local;
      for (int d = 0; d < 2; ++d) {
        for (const auto& [key, ck] : pod_chain[d]) affected.insert(key);
      }
    } else {
      affected = moved;
      std::set<std::string> namespaces(delta.namespaces.begin(), delta.namespaces.end());
      for (const std::string& key : delta.policies) namespaces.insert(key.substr(0, key.find('/')));
      for (const std::string& n : namespaces) {
        const std::string prefix = n + "/";
        for (auto it = local.lower_bound(prefix);
             it != local.end() && it->compare(0, prefix.size(), prefix) == 0; ++it) {
          affected.insert(*it);
        }
      }
    }

    // Their chains in the new State.
    std::set<IpAddr> addrs = np_addrs;  // dispatch/self entries to look at again
    std::map<std::string, TierChainRec> fresh_chains;  // by key: chains that appear
    std::map<std::string, int> pods_delta;             // chain key -> member count change
    std::map<std::string, std::string> next_chain[2];  // affected pod -> new chain key
    for (const std::string& key : affected) {
      auto ips = pod_ips.find(key);
      if (ips != pod_ips.end()) addrs.insert(ips->second.begin(), ips->second.end());
      const Pod* pod = new_state.FindPod(key);
      const bool is_local = pod != nullptr && local.count(key) > 0;
      if (is_local) addrs.insert(pod->ips.begin(), pod->ips.end());
      for (int d = 0; d < 2; ++d) {
        auto old = pod_chain[d].find(key);
        if (old != pod_chain[d].end()) --pods_delta[old->second];
        if (!is_local) continue;
        auto next = ChainOf(*pod, static_cast<Dir>(d));
        if (!next) continue;
        ++pods_delta[next->first];
        next_chain[d][key] = next->first;
        if (!chains.count(next->first)) fresh_chains.emplace(next->first, std::move(next->second));
      }
    }

    // Chains that go (no pod left) and chains to emit again (a CNP of theirs changed).
    std::set<std::string> dying, dirty;
    for (const auto& [ck, d] : pods_delta) {
      auto it = chains.find(ck);
      if (it != chains.end() && static_cast<int>(it->second.pods.size()) + d <= 0) dying.insert(ck);
    }
    if (!delta.cluster_policies.empty()) {
      for (const auto& [ck, tc] : chains) {
        if (dying.count(ck)) continue;
        for (const auto* list : {&tc.admin, &tc.baseline}) {
          for (const std::string& c : *list) {
            if (delta.cluster_policies.count(c)) dirty.insert(ck);
          }
        }
      }
    }

    // Names of the chains that appear (salted in key order from the empty State).
    for (auto& [ck, tc] : fresh_chains) {
      const std::string& first_cnp = !tc.admin.empty() ? tc.admin[0] : tc.baseline[0];
      const std::string readable = Sanitize(first_cnp).substr(0, kTierReadableBudget);
      for (int salt = 0;; ++salt) {
        const std::string salted = salt == 0 ? ck : absl::StrCat(ck, "#", salt);
        tc.name = absl::StrCat(tc.dir == Dir::kIngress ? "cin-" : "ceg-", readable, "-",
                               absl::StrFormat("%08x", static_cast<uint32_t>(Fnv1a64(salted) >> 32)));
        if (!chain_names.count(tc.name)) break;
        if (!first) {
          clash = true;
          return false;
        }
      }
      if (tc.name != absl::StrCat(tc.dir == Dir::kIngress ? "cin-" : "ceg-", readable, "-",
                                  absl::StrFormat("%08x", static_cast<uint32_t>(Fnv1a64(ck) >> 32)))) {
        clash = true;  // salted from the empty State: later updates compile afresh
      }
      chain_names.insert(tc.name);
    }

    // Contents: references, the ones that appear (computed in full), the ones that go.
    std::map<std::string, int> refs_delta;
    for (const std::string& ck : dying) {
      for (const std::string& c : chains.at(ck).content) {
        if (!c.empty()) --refs_delta[c];
      }
    }
    std::set<std::string> fresh_contents;
    for (const auto& [ck, tc] : fresh_chains) {
      for (int t = 0; t < 2; ++t) {
        const std::string& c = tc.content[t];
        if (c.empty()) continue;
        ++refs_delta[c];
        if (contents.count(c)) continue;
        fresh_contents.insert(c);
        TierContent content;
        content.dir = tc.dir;
        content.letter = t == 0 ? 'a' : 'b';
        content.cnps = t == 0 ? tc.admin : tc.baseline;
        std::vector<const ClusterNetworkPolicy*> list;
        for (const std::string& n : content.cnps) list.push_back(&Cnp(n));
        content.resolution = TierResolution(list, tc.dir, tc.resolution);
        Index(&content);
        contents.emplace(c, std::move(content));
      }
    }
    for (const std::string& c : fresh_contents) {  // in key order: salted from the empty State
      TierContent& content = contents.at(c);
      for (int salt = 0;; ++salt) {
        content.base = TierSetBase(content.dir, salt == 0 ? c : absl::StrCat(c, "#", salt));
        if (!set_bases.count(content.base)) break;
        clash = true;  // from the empty State: salted, and later updates compile afresh
        if (!first) return false;
      }
      set_bases.insert(content.base);
    }

    // Change points: the addresses of changed pods (both versions), of the pods of relabelled
    // namespaces, and of changed Nodes.
    std::set<U128> points[2];
    auto point = [&](const IpAddr& ip) { points[Fam(ip.family)].insert(AddrToU128(ip)); };
    for (const std::string& key : delta.pods) {
      for (const State* st : {&old_state, &new_state}) {
        if (const Pod* pod = st->FindPod(key)) {
          for (const IpAddr& ip : pod->ips) point(ip);
        }
      }
    }
    for (const std::string& n : delta.namespaces) {
      for (const State* st : {&old_state, &new_state}) {
        const std::string prefix = n + "/";
        for (auto it = st->pods.lower_bound(prefix);
             it != st->pods.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
          for (const IpAddr& ip : it->second.ips) point(ip);
        }
      }
    }
    for (const std::string& n : delta.nodes) {
      for (const State* st : {&old_state, &new_state}) {
        auto it = st->nodes.find(n);
        if (it == st->nodes.end()) continue;
        for (const IpAddr& ip : it->second.ips) point(ip);
      }
    }

    // The contents' boxes: computed in full where new or where a CNP of theirs changed, cut
    // again around the change points elsewhere.
    for (auto& [key, c] : contents) {
      const auto rd = refs_delta.find(key);
      if (c.refs + (rd == refs_delta.end() ? 0 : rd->second) <= 0) {
        for (int f = 0; f < 2; ++f) {
          for (int v : {kAccept, kDeny}) {
            nft::Set def = SetDef(c, f, v);
            from->sets[def.name] = std::move(def);
          }
        }
        continue;
      }
      bool full = fresh_contents.count(key) > 0;
      if (!full && !delta.cluster_policies.empty()) {
        for (const std::string& n : c.cnps) full = full || delta.cluster_policies.count(n) > 0;
      }
      for (int f = 0; f < 2; ++f) {
        if (full) {
          const U128 max = SlotDims(SRp(f))[0];
          std::vector<ValuedBox> next =
              FirstMatch(InputBoxes(c, f, 0, max, true), SlotDims(SRp(f)));
          if (fresh_contents.count(key)) {
            c.out[f] = std::move(next);
            PutElements(c, f, c.out[f], to);
          } else {
            Replace(&c, f, 0, max, std::move(next), from, to);
          }
        } else if (!points[f].empty()) {
          Rewindow(&c, f, points[f], from, to);
        }
      }
    }
    for (auto& [key, d] : refs_delta) {
      auto it = contents.find(key);
      if (it == contents.end()) continue;
      it->second.refs += d;
      if (it->second.refs <= 0) {
        set_bases.erase(it->second.base);
        contents.erase(it);
      }
    }

    // The chains: the ones that go leave `held` (into `from`), the dirty ones are emitted again,
    // the fresh ones emitted.
    for (const std::string& ck : dying) {
      CopyChain(held, chains.at(ck).name, from);
    }
    for (const std::string& ck : dirty) {
      CopyChain(held, chains.at(ck).name, from);
      EmitChain(chains.at(ck), to);
    }
    for (auto& [ck, tc] : fresh_chains) EmitChain(tc, to);
    for (const std::string& ck : dying) {
      chain_names.erase(chains.at(ck).name);
      sources.erase(chains.at(ck).name);
      chains.erase(ck);
    }
    for (auto& [ck, tc] : fresh_chains) chains.emplace(ck, std::move(tc));

    // Memberships.
    for (const std::string& key : affected) {
      for (int d = 0; d < 2; ++d) {
        auto old = pod_chain[d].find(key);
        if (old != pod_chain[d].end()) {
          auto c = chains.find(old->second);
          if (c != chains.end()) c->second.pods.erase(key);
          pod_chain[d].erase(old);
        }
      }
      auto ips = pod_ips.find(key);
      if (ips != pod_ips.end()) {
        for (const IpAddr& ip : ips->second) {
          for (auto& at : tiered_at) {
            auto it = at.find(ip);
            if (it == at.end()) continue;
            it->second.erase(key);
            if (it->second.empty()) at.erase(it);
          }
        }
        pod_ips.erase(ips);
      }
      bool tiered = false;
      for (int d = 0; d < 2; ++d) {
        auto next = next_chain[d].find(key);
        if (next == next_chain[d].end()) continue;
        tiered = true;
        pod_chain[d][key] = next->second;
        chains.at(next->second).pods.insert(key);
        for (const IpAddr& ip : new_state.FindPod(key)->ips) tiered_at[d][ip].insert(key);
      }
      if (tiered) pod_ips[key] = new_state.FindPod(key)->ips;
    }

    // Dispatch and self entries of the addresses that may have changed: per address the first
    // local pod by key that has an entry (isolated by NetworkPolicy, or under a tier chain) owns
    // it; a tiered one goes to its tier chain.
    for (const IpAddr& ip : addrs) {
      for (int d = 0; d < 2; ++d) {
        const Dir dir = static_cast<Dir>(d);
        const std::string map = DispatchMap(dir, ip.family);
        std::optional<nft::Element> now;
        std::optional<std::pair<std::string, std::string>> np = env->np_dispatch(dir, ip);
        auto t = tiered_at[d].find(ip);
        if (t != tiered_at[d].end() && (!np || *t->second.begin() <= np->first)) {
          const std::string& pod = *t->second.begin();
          now = nft::Element{{nft::FieldValue::Addr(ip)},
                             nft::Verdict::Jump(chains.at(pod_chain[d].at(pod)).name),
                             nft::CommentFrom(pod)};
        } else if (np) {
          now = nft::Element{{nft::FieldValue::Addr(ip)}, nft::Verdict::Jump(np->second),
                             nft::CommentFrom(np->first)};
        }
        const nft::Element* was = FindElement(held, map, {nft::FieldValue::Addr(ip)});
        if (was != nullptr && now && *was == *now) continue;
        if (was == nullptr && !now) continue;
        from->sets[map] = held.sets.at(map);
        to->sets[map] = held.sets.at(map);
        if (was != nullptr) from->elements[map].push_back(*was);
        if (now) to->elements[map].push_back(*std::move(now));
      }
      const std::string self = SelfSet(ip.family);
      const std::vector<nft::FieldValue> key = {nft::FieldValue::Addr(ip), nft::FieldValue::Addr(ip)};
      const bool was = FindElement(held, self, key) != nullptr;
      const bool now = env->np_self(ip) || tiered_at[0].count(ip) > 0 || tiered_at[1].count(ip) > 0;
      if (was == now) continue;
      from->sets[self] = held.sets.at(self);
      to->sets[self] = held.sets.at(self);
      (was ? from : to)->elements[self].push_back(nft::Element{key, std::nullopt, ""});
    }
    nft::Canonicalize(from);
    nft::Canonicalize(to);
    s = nullptr;
    env = nullptr;
    opts = nullptr;
    ns.reset();
    for (auto& p : ptrs) p.clear();
    return true;
  }
};

TierLayer::TierLayer() : impl_(std::make_unique<Impl>()) {}
TierLayer::~TierLayer() = default;
TierLayer::TierLayer(TierLayer&&) noexcept = default;
TierLayer& TierLayer::operator=(TierLayer&&) noexcept = default;

bool TierLayer::Update(const State& old_state, const State& new_state, const Delta& delta,
                       const std::set<std::string>& relocated, const std::set<IpAddr>& np_addrs,
                       const TierEnv& env, const CompileOptions& opts, const nft::Program& held,
                       nft::Program* from, nft::Program* to) {
  return impl_->Update(old_state, new_state, delta, relocated, np_addrs, env, opts, held, from,
                       to);
}

const std::map<std::string, GroupRuleSources>& TierLayer::sources() const {
  return impl_->sources;
}

std::vector<ValuedBox> FirstMatch(const std::vector<ValuedBox>& ordered,
                                  const std::vector<U128>& dim_max) {
  std::vector<const ValuedBox*> active;
  active.reserve(ordered.size());
  for (const ValuedBox& b : ordered) active.push_back(&b);
  return Cut(active, 0, dim_max);
}

absl::Status ValidateClusterState(const State& state) {
  std::set<std::string> named;
  for (const auto& [name, cnp] : state.cluster_policies) {
    RETURN_IF_ERROR(ValidateObject(cnp));
    for (const auto* rules : {&cnp.ingress, &cnp.egress}) {
      for (const CnpRule& r : *rules) {
        for (const CnpPort& p : r.ports) {
          if (p.named_port) named.insert(*p.named_port);
        }
      }
    }
  }
  if (named.empty()) return absl::OkStatus();
  for (const auto& [key, pod] : state.pods) {
    if (pod.host_network) continue;
    for (const std::string& n : named) {
      for (Protocol proto : kProtocols) RETURN_IF_ERROR(ResolvePort(pod, n, proto).status());
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateClusterDelta(const State& state, const Delta& delta) {
  if (!delta.cluster_policies.empty()) return ValidateClusterState(state);
  if (delta.pods.empty()) return absl::OkStatus();
  std::set<std::string> named;
  for (const auto& [name, cnp] : state.cluster_policies) {
    for (const auto* rules : {&cnp.ingress, &cnp.egress}) {
      for (const CnpRule& r : *rules) {
        for (const CnpPort& p : r.ports) {
          if (p.named_port) named.insert(*p.named_port);
        }
      }
    }
  }
  if (named.empty()) return absl::OkStatus();
  for (const std::string& key : delta.pods) {
    const Pod* pod = state.FindPod(key);
    if (pod == nullptr || pod->host_network) continue;
    for (const std::string& n : named) {
      for (Protocol proto : kProtocols) RETURN_IF_ERROR(ResolvePort(*pod, n, proto).status());
    }
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace netpol::compiler
