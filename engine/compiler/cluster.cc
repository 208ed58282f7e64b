// The ClusterNetworkPolicy tiers of the compiled program: see cluster.h and RULESET.md
// "ClusterNetworkPolicy tiers".
#include "engine/compiler/cluster.h"

#include <algorithm>
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

bool PodMatches(NsLabels& ns, const CnpPeer& peer, const Pod& pod) {
  if (pod.host_network) return false;
  if (peer.namespaces) return Matches(*peer.namespaces, ns.Of(pod.namespace_name));
  if (peer.pods) {
    return Matches(peer.pods->pod_selector, pod.labels) &&
           Matches(peer.pods->namespace_selector, ns.Of(pod.namespace_name));
  }
  return false;
}

// Non-hostNetwork pods by namespace.
using PodsByNs = std::map<std::string, std::vector<const Pod*>>;

std::vector<Span> PeerSpans(const State& s, NsLabels& ns, const PodsByNs& pods_by_ns,
                            const CnpPeer& peer, Family fam) {
  std::vector<Span> out;
  if (peer.namespaces || peer.pods) {
    const LabelSelector& ns_sel = peer.namespaces ? *peer.namespaces : peer.pods->namespace_selector;
    for (const auto& [name, pods] : pods_by_ns) {
      if (!Matches(ns_sel, ns.Of(name))) continue;
      for (const Pod* pod : pods) {
        if (peer.pods && !Matches(peer.pods->pod_selector, pod->labels)) continue;
        for (const IpAddr& ip : pod->ips) {
          if (ip.family == fam) out.push_back(AddrSpan(ip, ip));
        }
      }
    }
  } else if (peer.nodes) {
    for (const auto& [name, node] : s.nodes) {
      if (!Matches(*peer.nodes, node.labels)) continue;
      for (const IpAddr& ip : node.ips) {
        if (ip.family == fam) out.push_back(AddrSpan(ip, ip));
      }
    }
  } else {
    for (const Cidr& c : peer.networks) {
      if (c.addr.family == fam) out.push_back(AddrSpan(c.First(), c.Last()));
    }
  }
  return out;
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

// One tier chain: local pods of one direction with the same Admin CNPs, the same NetworkPolicy
// group chain (or, not isolated, the same Baseline CNPs) and the same resolution of the CNPs'
// ingress named ports.
struct TierChain {
  Dir dir = Dir::kIngress;
  std::vector<const ClusterNetworkPolicy*> admin;
  std::string np_chain;  // the group chain when NetworkPolicies isolate the pods
  std::vector<const ClusterNetworkPolicy*> baseline;  // only when not isolated
  Resolution resolution;
  std::vector<const Pod*> pods;
  std::string name;
};

class Builder {
 public:
  Builder(const State& s, const CompileOptions& opts,
          std::map<std::string, GroupRuleSources>* sources)
      : s_(s), opts_(opts), sources_(sources), ns_(s) {
    for (const auto& [key, pod] : s.pods) {
      if (!pod.host_network) pods_by_ns_[pod.namespace_name].push_back(&pod);
    }
    for (int f = 0; f < 2; ++f) {
      for (const auto& [key, pod] : s.pods) {
        if (pod.host_network) continue;
        for (const IpAddr& ip : pod.ips) {
          if (Fam(ip.family) == f) owners_[f].emplace(AddrToU128(ip), &pod);  // first by key
        }
      }
    }
  }

  // The addresses of `peer` in family index `f` (computed once per peer).
  const std::vector<Span>& Spans(const CnpPeer& peer, int f) {
    auto it = spans_[f].find(&peer);
    if (it == spans_[f].end()) {
      it = spans_[f].emplace(&peer, PeerSpans(s_, ns_, pods_by_ns_, peer, f == 0 ? Family::kV4 : Family::kV6)).first;
    }
    return it->second;
  }

  // The first-match boxes of `cnps`' rules for `dir`, family index `f` (computed once per tier
  // content: tier chains that differ only in what follows the tier share them).
  const std::vector<ValuedBox>& TierBoxes(const std::vector<const ClusterNetworkPolicy*>& cnps,
                                          Dir dir, int f, const Resolution& resolution) {
    std::string key = absl::StrCat(DirName(dir), "|", f);
    for (const ClusterNetworkPolicy* c : cnps) absl::StrAppend(&key, ",", c->name);
    for (const auto& [np_, port] : resolution) {
      absl::StrAppend(&key, "|", np_.first, "/", static_cast<int>(np_.second), "=",
                      port ? absl::StrCat(*port) : "none");
    }
    auto cached = tier_boxes_.find(key);
    if (cached != tier_boxes_.end()) return cached->second;
    std::vector<ValuedBox>& out = tier_boxes_[key];
    std::vector<ValuedBox> ordered;
    for (const ClusterNetworkPolicy* cnp : cnps) {
      for (const CnpRule& rule : dir == Dir::kIngress ? cnp->ingress : cnp->egress) {
        const int value = rule.action == CnpAction::kAccept ? kAccept
                          : rule.action == CnpAction::kDeny ? kDeny
                                                            : kPass;
        std::vector<Span> spans;
        for (const CnpPeer& peer : rule.peers) {
          const std::vector<Span>& more = Spans(peer, f);
          spans.insert(spans.end(), more.begin(), more.end());
        }
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
            if (dir == Dir::kIngress) {
              // Resolved on the subject pod: once per tier chain.
              auto it = resolution.find({*p.named_port, proto});
              if (it == resolution.end() || !it->second) continue;
              for (const Span& a : spans) add(a, NumSpan(pr, pr), NumSpan(*it->second, *it->second));
              continue;
            }
            // Egress: resolved on each destination pod inside the peer's addresses.
            for (const Span& a : spans) {
              for (auto it = owners_[f].lower_bound(a.lo); it != owners_[f].end() && it->first <= a.hi;
                   ++it) {
                std::optional<int32_t> n = it->second->ResolvePort(*p.named_port, proto);
                if (!n) continue;
                const uint32_t port = static_cast<uint32_t>(*n);
                add({it->first, it->first}, NumSpan(pr, pr), NumSpan(port, port));
              }
            }
          }
        }
      }
    }
    out = FirstMatch(ordered, SlotDims(SRp(f)));
    return out;
  }

  nft::Program Build(const nft::Program& np) {
    nft::Program prog = np;
    // Which tier chain each local pod goes to, per direction.
    std::map<std::string, TierChain> chains;              // by key
    std::map<std::string, std::string> chain_of[2];       // pod key -> tier chain key
    std::set<std::string> isolated[2];                    // pod keys isolated by NetworkPolicy
    std::vector<const ClusterNetworkPolicy*> tier[2];     // by CnpTier, in evaluation order
    for (const auto& [name, cnp] : s_.cluster_policies) tier[static_cast<int>(cnp.tier)].push_back(&cnp);
    for (auto& t : tier) {
      std::stable_sort(t.begin(), t.end(), [](const auto* a, const auto* b) {
        return a->priority < b->priority;  // equal priorities: by name (the map's order)
      });
    }
    for (const auto& [key, pod] : s_.pods) {
      if (!IsLocalPod(pod, opts_)) continue;
      for (int d = 0; d < 2; ++d) {
        const Dir dir = static_cast<Dir>(d);
        TierChain tc;
        tc.dir = dir;
        for (const auto& [pkey, policy] : s_.policies) {
          if (Selects(policy, pod, dir)) {
            isolated[d].insert(key);
            break;
          }
        }
        // A CNP without rules for this direction decides nothing there: it makes no tier (a pod
        // whose CNPs have none keeps its plain dispatch, without an empty tier chain).
        auto has_rules = [dir](const ClusterNetworkPolicy* c) {
          return !(dir == Dir::kIngress ? c->ingress : c->egress).empty();
        };
        for (const ClusterNetworkPolicy* c : tier[0]) {
          if (has_rules(c) && PodMatches(ns_, c->subject, pod)) tc.admin.push_back(c);
        }
        if (isolated[d].count(key) != 0) {
          // The pod's group chain, from the NetworkPolicy dispatch map.
          for (const IpAddr& ip : pod.ips) {
            const std::string map = DispatchMap(dir, ip.family);
            auto it = prog.elements.find(map);
            if (it == prog.elements.end()) continue;
            for (const nft::Element& e : it->second) {
              if (e.key[0].addr_lo == ip && e.verdict) tc.np_chain = e.verdict->chain;
            }
            if (!tc.np_chain.empty()) break;
          }
        } else {
          for (const ClusterNetworkPolicy* c : tier[1]) {
            if (has_rules(c) && PodMatches(ns_, c->subject, pod)) tc.baseline.push_back(c);
          }
        }
        if (tc.admin.empty() && tc.baseline.empty()) continue;
        if (isolated[d].count(key) != 0 && tc.np_chain.empty()) continue;  // no address
        std::string k = absl::StrCat(DirName(dir), "|A");
        for (const auto* list : {&tc.admin, &tc.baseline}) {
          for (const ClusterNetworkPolicy* c : *list) {
            if (dir == Dir::kIngress) {
              for (const CnpRule& r : c->ingress) {
                for (const CnpPort& p : r.ports) {
                  if (!p.named_port) continue;
                  for (Protocol proto : kProtocols) {
                    // Validated beforehand (ValidateClusterState): no error here.
                    auto port = ResolvePort(pod, *p.named_port, proto);
                    tc.resolution[{*p.named_port, proto}] =
                        port.ok() && port->has_value() ? std::optional<int32_t>(**port)
                                                       : std::nullopt;
                  }
                }
              }
            }
          }
        }
        for (const ClusterNetworkPolicy* c : tc.admin) absl::StrAppend(&k, ",", c->name);
        absl::StrAppend(&k, tc.np_chain.empty() ? "|B" : "|N,", tc.np_chain);
        for (const ClusterNetworkPolicy* c : tc.baseline) absl::StrAppend(&k, ",", c->name);
        absl::StrAppend(&k, "|R");
        for (const auto& [np_, port] : tc.resolution) {
          absl::StrAppend(&k, ",", np_.first, "/", ProtocolName(np_.second), "=",
                          port ? absl::StrCat(*port) : "none");
        }
        auto [it, fresh] = chains.emplace(k, std::move(tc));
        it->second.pods.push_back(&pod);
        chain_of[d][key] = k;
      }
    }

    std::set<std::string> names;
    for (const auto& [name, chain] : prog.chains) names.insert(name);
    for (auto& [key, tc] : chains) {
      const ClusterNetworkPolicy* first = !tc.admin.empty() ? tc.admin[0] : tc.baseline[0];
      const std::string readable = Sanitize(first->name).substr(0, kTierReadableBudget);
      for (int salt = 0;; ++salt) {
        const std::string salted = salt == 0 ? key : absl::StrCat(key, "#", salt);
        tc.name = absl::StrCat(tc.dir == Dir::kIngress ? "cin-" : "ceg-", readable, "-",
                               absl::StrFormat("%08x", static_cast<uint32_t>(Fnv1a64(salted) >> 32)));
        if (names.insert(tc.name).second) break;
      }
      GroupRuleSources sources;
      Emit(tc, &prog, &sources);
      if (sources_ != nullptr) (*sources_)[tc.name] = std::move(sources);
    }

    // Dispatch: per address the first local pod by key that has an entry (isolated by
    // NetworkPolicy, or under a tier chain) owns it, as without tiers.
    for (int d = 0; d < 2; ++d) {
      for (int f = 0; f < 2; ++f) {
        const Family fam = f == 0 ? Family::kV4 : Family::kV6;
        const std::string map = DispatchMap(static_cast<Dir>(d), fam);
        std::map<IpAddr, nft::Element> entries;
        for (nft::Element& e : prog.elements[map]) entries[e.key[0].addr_lo] = std::move(e);
        std::set<IpAddr> claimed;
        for (const auto& [key, pod] : s_.pods) {
          auto tier_it = chain_of[d].find(key);
          const bool tiered = tier_it != chain_of[d].end();
          if (!tiered && isolated[d].count(key) == 0) continue;
          for (const IpAddr& ip : pod.ips) {
            if (ip.family != fam || !claimed.insert(ip).second) continue;
            if (!tiered) continue;  // its group chain's entry stays
            entries[ip] = nft::Element{{nft::FieldValue::Addr(ip)},
                                       nft::Verdict::Jump(chains[tier_it->second].name),
                                       nft::CommentFrom(key)};
          }
        }
        std::vector<nft::Element>& out = prog.elements[map];
        out.clear();
        for (auto& [ip, e] : entries) out.push_back(std::move(e));
      }
    }
    // A pod always reaches itself: tiered pods join the self sets.
    for (int f = 0; f < 2; ++f) {
      const Family fam = f == 0 ? Family::kV4 : Family::kV6;
      std::vector<nft::Element>& self = prog.elements[f == 0 ? kSelfV4 : kSelfV6];
      std::set<IpAddr> have;
      for (const nft::Element& e : self) have.insert(e.key[0].addr_lo);
      for (int d = 0; d < 2; ++d) {
        for (const auto& [key, ck] : chain_of[d]) {
          for (const IpAddr& ip : s_.pods.at(key).ips) {
            if (ip.family != fam || !have.insert(ip).second) continue;
            self.push_back(nft::Element{
                {nft::FieldValue::Addr(ip), nft::FieldValue::Addr(ip)}, std::nullopt, ""});
          }
        }
      }
    }
    nft::Canonicalize(&prog);
    return prog;
  }

 private:
  static const char* DispatchMap(Dir d, Family f) {
    if (d == Dir::kIngress) return f == Family::kV4 ? kIngressDispatchV4 : kIngressDispatchV6;
    return f == Family::kV4 ? kEgressDispatchV4 : kEgressDispatchV6;
  }

  static std::vector<std::string> Names(const std::vector<const ClusterNetworkPolicy*>& cnps) {
    std::vector<std::string> out;
    for (const ClusterNetworkPolicy* c : cnps) out.push_back(c->name);
    return out;
  }

  // The rules of `cnps` for `dir` with action `action`, in evaluation order: what the tier's
  // lookup of that action holds (its comment as "name ingress[0]", and the counters' sources).
  static std::vector<TierRuleSource> RulesWith(const std::vector<const ClusterNetworkPolicy*>& cnps,
                                               Dir dir, CnpAction action) {
    std::vector<TierRuleSource> out;
    for (const ClusterNetworkPolicy* c : cnps) {
      const std::vector<CnpRule>& rules = dir == Dir::kIngress ? c->ingress : c->egress;
      for (size_t i = 0; i < rules.size(); ++i) {
        if (rules[i].action != action) continue;
        out.push_back(TierRuleSource{c->tier, c->name, c->priority, static_cast<int>(i),
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
    return JoinLimited(absl::StrCat(tier_name, " tier ", CnpActionName(action), ": "), texts);
  }

  // The tier's sets and rules: per family an Accept set (return: allowed) and a Deny set (drop;
  // with deny logs, goto the tier's deny-log chain, which logs within its limit and drops).
  // The sets are named after the tier's content (RULESET.md "Tier sets shared by content"):
  // every tier chain with the same CNPs in this tier, direction and named-port resolution looks
  // up the same sets, emitted once.
  void EmitTier(const TierChain& tc, const std::vector<const ClusterNetworkPolicy*>& cnps,
                char letter, const char* tier_name, nft::Chain* chain, nft::Program* prog,
                GroupRuleSources* sources) {
    const std::vector<std::string> names = Names(cnps);
    const std::vector<TierRuleSource> accepts = RulesWith(cnps, tc.dir, CnpAction::kAccept);
    const std::vector<TierRuleSource> denies = RulesWith(cnps, tc.dir, CnpAction::kDeny);
    const std::string accept_comment = RuleComment(tier_name, CnpAction::kAccept, tc.dir, accepts);
    const std::string deny_comment = RuleComment(tier_name, CnpAction::kDeny, tc.dir, denies);
    std::optional<std::string> log_chain;
    if (opts_.deny_log) {
      log_chain = absl::StrCat(tc.name, letter == 'a' ? kAdminDenyLogSuffix : kBaselineDenyLogSuffix);
      nft::Chain log;
      log.name = *log_chain;
      log.comment = JoinLimited(
          absl::StrCat("deny log of the ", tier_name, " tier of ", tc.name, ": "), names);
      nft::Rule logged = MakeRule({}, nft::Verdict::Drop(), deny_comment);
      logged.limit = DenyLimit(opts_);
      logged.log = DenyLogStmt(opts_);
      logged.log->prefix = absl::StrCat(kDenyLogPrefix, *log_chain);
      log.rules.push_back(std::move(logged));
      nft::Rule suppressed = MakeRule(
          {}, nft::Verdict::Drop(),
          nft::CommentFrom(absl::StrCat(kSuppressedCommentPrefix, deny_comment)));
      suppressed.counter = true;
      log.rules.push_back(std::move(suppressed));
      prog->chains[log.name] = std::move(log);
    }
    const Resolution resolution = TierResolution(cnps, tc.dir, tc.resolution);
    const std::string content = TierContentKey(cnps, tc.dir, letter, resolution);
    auto [named, fresh] = tier_set_names_.emplace(content, "");
    if (fresh) {
      for (int salt = 0;; ++salt) {
        named->second = TierSetBase(tc.dir, salt == 0 ? content : absl::StrCat(content, "#", salt));
        if (taken_set_bases_.insert(named->second).second) break;
      }
    }
    for (int f = 0; f < 2; ++f) {
      const std::vector<ValuedBox>& boxes = TierBoxes(cnps, tc.dir, f, resolution);
      for (int v : {kAccept, kDeny}) {
        const std::string set = absl::StrCat(named->second, "-", std::string(1, letter),
                                             v == kAccept ? "a" : "d", f == 0 ? "4" : "6");
        nft::Verdict verdict = v == kAccept ? nft::Verdict::Return()
                               : log_chain  ? nft::Verdict::Goto(*log_chain)
                                            : nft::Verdict::Drop();
        chain->rules.push_back(MakeRule({Lookup(SlotLookup(SRp(f), tc.dir), set)},
                                        std::move(verdict),
                                        v == kAccept ? accept_comment : deny_comment));
        sources->rules.push_back({});
        sources->tier_rules.push_back(v == kAccept ? accepts : denies);
        if (!fresh) continue;
        nft::Set def;
        def.name = set;
        def.key = SlotKey(SRp(f));
        def.interval = true;
        def.comment = JoinLimited(
            absl::StrCat(tier_name, " tier ", v == kAccept ? "Accept" : "Deny",
                         " (first match, peer . port): "),
            names);
        prog->sets[set] = def;
        std::vector<nft::Element>& elements = prog->elements[set];
        for (const ValuedBox& b : boxes) {
          if (b.value == v) elements.push_back(BoxElement(SRp(f), b.box));
        }
      }
    }
  }

  void Emit(const TierChain& tc, nft::Program* prog, GroupRuleSources* sources) {
    nft::Chain chain;
    chain.name = tc.name;
    sources->ingress = tc.dir == Dir::kIngress;
    std::vector<std::string> parts;
    for (const ClusterNetworkPolicy* c : tc.admin) parts.push_back(absl::StrCat("Admin ", c->name));
    if (!tc.np_chain.empty()) parts.push_back(absl::StrCat("then ", tc.np_chain));
    for (const ClusterNetworkPolicy* c : tc.baseline) parts.push_back(absl::StrCat("Baseline ", c->name));
    chain.comment = JoinLimited(absl::StrCat(DirName(tc.dir), " tiers: "), parts);
    if (!tc.admin.empty()) EmitTier(tc, tc.admin, 'a', "Admin", &chain, prog, sources);
    if (!tc.np_chain.empty()) {
      chain.rules.push_back(MakeRule({}, nft::Verdict::Jump(tc.np_chain),
                                     "NetworkPolicy tier: the pods' group chain"));
      sources->rules.push_back({});
      sources->tier_rules.push_back({});
    } else if (!tc.baseline.empty()) {
      EmitTier(tc, tc.baseline, 'b', "Baseline", &chain, prog, sources);
    }
    CountRules(opts_.rule_counters, &chain);
    prog->chains[chain.name] = std::move(chain);
  }

  const State& s_;
  const CompileOptions& opts_;
  std::map<std::string, GroupRuleSources>* const sources_;  // may be null
  NsLabels ns_;
  PodsByNs pods_by_ns_;
  std::map<U128, const Pod*> owners_[2];
  std::map<const CnpPeer*, std::vector<Span>> spans_[2];
  std::map<std::string, std::vector<ValuedBox>> tier_boxes_;
  std::map<std::string, std::string> tier_set_names_;  // tier content key -> set name base
  std::set<std::string> taken_set_bases_;
};

}  // namespace

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

nft::Program ApplyClusterPolicies(const State& state, const CompileOptions& opts,
                                  const nft::Program& np_program,
                                  std::map<std::string, GroupRuleSources>* sources) {
  if (sources != nullptr) sources->clear();
  return Builder(state, opts, sources).Build(np_program);
}

}  // namespace internal
}  // namespace netpol::compiler
