#include "benchmarks/datapath/iptables_layout.h"

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/selector/selector.h"

namespace netpol::bench {
namespace {

constexpr char kMark[] = "0x10000/0x10000";

uint64_t Fnv(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;  // FNV-1a 64 prime
  }
  return h;
}

// 12 hex digits (48 bits): collision-free in practice for 10^5 names. Chains stay within
// iptables' 28-character limit and set names within ipset's 31.
std::string Hash12(const std::string& s) {
  return absl::StrFormat("%012x", Fnv(s) & 0xffffffffffffULL);
}

const IpAddr* V4Of(const Pod& pod) {
  for (const IpAddr& a : pod.ips) {
    if (a.family == Family::kV4) return &a;
  }
  return nullptr;
}

const char* Proto(Protocol p) {
  switch (p) {
    case Protocol::kTCP: return "tcp";
    case Protocol::kUDP: return "udp";
    case Protocol::kSCTP: return "sctp";
  }
  return "tcp";
}

bool NamespaceMatches(const State& state, const LabelSelector& sel, const std::string& ns) {
  const Namespace* n = state.FindNamespace(ns);
  Labels labels;
  if (n != nullptr) labels = n->labels;
  labels[kNamespaceNameLabel] = ns;
  return Matches(sel, labels);
}

// The pods a selector peer of a policy in `policy_ns` selects.
std::vector<const Pod*> PeerPods(const State& state, const Peer& peer,
                                 const std::string& policy_ns) {
  std::vector<const Pod*> out;
  for (const auto& [key, pod] : state.pods) {
    if (pod.host_network) continue;
    if (peer.namespace_selector) {
      if (!NamespaceMatches(state, *peer.namespace_selector, pod.namespace_name)) continue;
    } else if (pod.namespace_name != policy_ns) {
      continue;
    }
    if (peer.pod_selector && !Matches(*peer.pod_selector, pod.labels)) continue;
    out.push_back(&pod);
  }
  return out;
}

class Builder {
 public:
  Builder(const State& state, const std::string& node) : state_(state), node_(node) {}

  IptablesLayout Build() {
    for (const auto& [key, pod] : state_.pods) {
      if (pod.node_name != node_ || pod.host_network || V4Of(pod) == nullptr) continue;
      local_.push_back(&pod);
    }
    std::vector<std::string> dispatch_egress, dispatch_ingress;
    for (const Pod* pod : local_) {
      for (bool ingress : {false, true}) {
        std::vector<const NetworkPolicy*> selecting;
        for (const auto& [pkey, p] : state_.policies) {
          if (p.namespace_name != pod->namespace_name) continue;
          if (!(ingress ? p.ingress_type : p.egress_type)) continue;
          if (!Matches(p.pod_selector, pod->labels)) continue;
          selecting.push_back(&p);
        }
        if (selecting.empty()) continue;
        const std::string chain =
            absl::StrCat(ingress ? "NPPI-" : "NPPE-", Hash12(pod->Key()));
        Chain(chain);
        for (const NetworkPolicy* p : selecting) {
          Rule(chain, absl::StrCat("-j ", PolicyChain(*p, ingress)));
        }
        Rule(chain, absl::StrCat("-m mark ! --mark ", kMark, " -j DROP"));
        Rule(chain, "-j MARK --set-xmark 0x0/0x10000");
        const std::string addr = V4Of(*pod)->ToString() + "/32";
        (ingress ? dispatch_ingress : dispatch_egress)
            .push_back(absl::StrCat(ingress ? "-d " : "-s ", addr, " -j ", chain));
      }
    }
    IptablesLayout out;
    std::string rules = "*filter\n:NETPOL-FORWARD - [0:0]\n";
    for (const std::string& c : chains_) absl::StrAppend(&rules, ":", c, " - [0:0]\n");
    absl::StrAppend(&rules, "-A FORWARD -j NETPOL-FORWARD\n");
    absl::StrAppend(&rules,
                    "-A NETPOL-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    absl::StrAppend(&rules, "-A NETPOL-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
    int count = 3;
    for (const auto* list : {&dispatch_egress, &dispatch_ingress}) {
      for (const std::string& r : *list) {
        absl::StrAppend(&rules, "-A NETPOL-FORWARD ", r, "\n");
        ++count;
      }
    }
    absl::StrAppend(&rules, body_, "COMMIT\n");
    out.iptables_restore = std::move(rules);
    out.ipset_restore = std::move(sets_);
    out.sets = set_count_;
    out.chains = static_cast<int>(chains_.size()) + 1;
    out.rules = count + rule_count_;
    out.set_entries = entries_;
    return out;
  }

 private:
  void Chain(const std::string& name) { chains_.push_back(name); }
  void Rule(const std::string& chain, const std::string& spec) {
    absl::StrAppend(&body_, "-A ", chain, " ", spec, "\n");
    ++rule_count_;
  }

  void CreateSet(const std::string& name, const std::string& type,
                 const std::vector<std::string>& entries) {
    // maxelem: room for every entry (ipset's default is 65,536).
    size_t maxelem = std::max<size_t>(65536, entries.size() * 2);
    absl::StrAppend(&sets_, "create ", name, " ", type, " family inet maxelem ", maxelem, "\n");
    for (const std::string& e : entries) absl::StrAppend(&sets_, "add ", name, " ", e, "\n");
    ++set_count_;
    entries_ += static_cast<int>(entries.size());
  }

  // The port match of one policy port for non-named ports; "" for none.
  static std::string PortMatch(const PolicyPort& port) {
    if (!port.port) return absl::StrCat("-p ", Proto(port.protocol));
    if (port.end_port) {
      return absl::StrCat("-p ", Proto(port.protocol), " --dport ", *port.port, ":",
                          *port.end_port);
    }
    return absl::StrCat("-p ", Proto(port.protocol), " --dport ", *port.port);
  }

  // Returns the chain of policy `p` for a direction, creating it (and its sets) on first use.
  std::string PolicyChain(const NetworkPolicy& p, bool ingress) {
    const std::string key = absl::StrCat(ingress ? "i/" : "e/", p.Key());
    auto it = policy_chains_.find(key);
    if (it != policy_chains_.end()) return it->second;
    const std::string h = Hash12(p.Key());
    const std::string chain = absl::StrCat(ingress ? "NPI-" : "NPE-", h);
    policy_chains_[key] = chain;
    Chain(chain);
    const std::vector<netpol::Rule>& rules = ingress ? p.ingress : p.egress;
    // The local pods this policy selects: the targets of named ports on ingress.
    std::vector<const Pod*> targets;
    for (const Pod* pod : local_) {
      if (pod->namespace_name == p.namespace_name && Matches(p.pod_selector, pod->labels)) {
        targets.push_back(pod);
      }
    }
    const char* peer_dir = ingress ? "src" : "dst";
    for (size_t r = 0; r < rules.size(); ++r) {
      const netpol::Rule& rule = rules[r];
      // Peer matches: "" means any peer.
      std::vector<std::string> peer_matches;
      std::vector<std::vector<const Pod*>> peer_pods;  // for egress named ports
      if (rule.peers.empty()) {
        peer_matches.push_back("");
        peer_pods.push_back({});
      }
      for (size_t e = 0; e < rule.peers.size(); ++e) {
        const Peer& peer = rule.peers[e];
        const std::string set = absl::StrCat("N", h, ingress ? "i" : "e", r, "-", e);
        std::vector<std::string> entries;
        std::vector<const Pod*> pods;
        if (peer.ip_block) {
          if (peer.ip_block->cidr.addr.family != Family::kV4) continue;
          entries.push_back(peer.ip_block->cidr.ToString());
          for (const Cidr& ex : peer.ip_block->except) {
            if (ex.addr.family == Family::kV4) entries.push_back(ex.ToString() + " nomatch");
          }
          if (peer.ip_block->cidr.prefix == 0) {
            // hash:net cannot hold /0: two halves.
            entries[0] = "0.0.0.0/1";
            entries.insert(entries.begin() + 1, "128.0.0.0/1");
          }
          CreateSet(set, "hash:net", entries);
        } else {
          pods = PeerPods(state_, peer, p.namespace_name);
          for (const Pod* pod : pods) {
            if (const IpAddr* a = V4Of(*pod)) entries.push_back(a->ToString());
          }
          CreateSet(set, "hash:ip", entries);
        }
        peer_matches.push_back(absl::StrCat("-m set --match-set ", set, " ", peer_dir));
        peer_pods.push_back(std::move(pods));
      }
      for (size_t e = 0; e < peer_matches.size(); ++e) {
        const std::string& pm = peer_matches[e];
        const std::string sep = pm.empty() ? "" : " ";
        if (rule.ports.empty()) {
          Rule(chain, absl::StrCat(pm, sep, "-j MARK --set-xmark ", kMark));
          continue;
        }
        for (size_t k = 0; k < rule.ports.size(); ++k) {
          const PolicyPort& port = rule.ports[k];
          if (!port.named_port) {
            Rule(chain, absl::StrCat(pm, sep, PortMatch(port), " -j MARK --set-xmark ", kMark));
            continue;
          }
          // Named port: (destination address, resolved port) pairs in a hash:ip,port set.
          std::vector<std::string> entries;
          const std::vector<const Pod*>& dests = ingress ? targets : peer_pods[e];
          for (const Pod* d : dests) {
            std::optional<int32_t> n = d->ResolvePort(*port.named_port, port.protocol);
            const IpAddr* a = V4Of(*d);
            if (n && a) entries.push_back(absl::StrCat(a->ToString(), ",", Proto(port.protocol), ":", *n));
          }
          const std::string set = absl::StrCat("N", h, ingress ? "i" : "e", r, "-", e, "n", k);
          CreateSet(set, "hash:ip,port", entries);
          Rule(chain, absl::StrCat(pm, sep, "-m set --match-set ", set, " dst,dst -j MARK --set-xmark ",
                                   kMark));
        }
      }
    }
    return chain;
  }

  const State& state_;
  const std::string node_;
  std::vector<const Pod*> local_;
  std::vector<std::string> chains_;
  std::map<std::string, std::string> policy_chains_;
  std::string body_, sets_;
  int rule_count_ = 0, set_count_ = 0, entries_ = 0;
};

}  // namespace

IptablesLayout LayOutIptables(const State& state, const std::string& node) {
  return Builder(state, node).Build();
}

}  // namespace netpol::bench
