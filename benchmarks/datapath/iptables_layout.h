// The iptables + ipset ruleset an iptables-based NetworkPolicy engine would install on a node
// for a State, laid out the way such engines do (kube-router's layout):
//
//   FORWARD -> NETPOL-FORWARD:
//     -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//     -m conntrack --ctstate INVALID -j DROP
//     -s <local pod> -j NPPE-<pod>     (pods isolated for egress)
//     -d <local pod> -j NPPI-<pod>     (pods isolated for ingress)
//   NPPI-<pod> / NPPE-<pod>: a per-pod chain that jumps to the chain of every policy selecting
//     the pod, then drops what no policy marked (0x10000) and clears the mark:
//     -j NPI-<policy> ... ; -m mark ! --mark 0x10000/0x10000 -j DROP ; -j MARK --set-xmark 0x0/0x10000
//   NPI-<policy> / NPE-<policy>: one rule per (rule, peer, port) that sets the mark:
//     -m set --match-set <peer set> src|dst [-p tcp --dport P[:E]] -j MARK --set-xmark 0x10000/0x10000
//     named ports match a hash:ip,port set of (pod address, resolved port) on dst,dst.
//   ipsets: per (policy, rule, peer): hash:ip of the selected pods' addresses, or hash:net of an
//     ipBlock with its excepts as `nomatch` entries.
//
// Every policy selecting a pod is walked for each new connection to it, so the cost per new
// connection grows with the number of policies on the pod. IPv4 only (the datapath benchmark
// measures IPv4); pods without an IPv4 address and hostNetwork pods are skipped.
#ifndef NETPOL_BENCHMARKS_DATAPATH_IPTABLES_LAYOUT_H_
#define NETPOL_BENCHMARKS_DATAPATH_IPTABLES_LAYOUT_H_

#include <string>

#include "engine/model/model.h"

namespace netpol::bench {

struct IptablesLayout {
  std::string ipset_restore;     // input for `ipset restore`
  std::string iptables_restore;  // input for `iptables-restore` (table filter)
  int sets = 0, chains = 0, rules = 0, set_entries = 0;
};

// Lays out the ruleset for the pods of `node`.
IptablesLayout LayOutIptables(const State& state, const std::string& node);

}  // namespace netpol::bench

#endif  // NETPOL_BENCHMARKS_DATAPATH_IPTABLES_LAYOUT_H_
