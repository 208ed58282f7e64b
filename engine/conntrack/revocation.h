// Which established connections a policy change revokes: the pure half of engine/conntrack.
//
// A committed change can deny flows that conntrack still holds as established; the base chains
// accept established traffic before any policy lookup, so such a flow would go on forever. After
// the transaction commits, the agent computes the candidate flows from it (RevocationPlan), lists
// the conntrack table, and deletes the entries that are candidates and that the new program no
// longer allows (StillAllowed). Deleting an entry makes the flow's next packet a new connection
// that the new rules judge: a denied flow stops, an allowed one is picked up again.
//
// Everything here is pure (no I/O); engine/conntrack/conntrack.h does the kernel part.
//
// How a Transaction maps to flows, for any Program shaped like the compiler's (RULESET.md):
//   * A rule `<selectors> @S return|accept` in chain C is an allow; C is reached from a base
//     chain through a verdict map keyed by one address selector: `ip daddr vmap @D` (the local
//     pod is the destination: ingress) or `ip saddr vmap @D` (the local pod is the source:
//     egress). An element of D with verdict `jump C` names such a pod address P.
//   * A deleted element of an allow set S admitted, for every P dispatched into a chain using S,
//     the flows its key fields describe: `ip saddr` -> source range, `ip daddr` -> destination
//     range, `meta l4proto` -> protocol range, `th dport` -> destination port range; P fills in
//     the destination (ingress) or source (egress). E.g. deleting `10.0.0.7 . tcp . 80` from the
//     ingress set of the chain of pod 10.0.0.2 yields 10.0.0.7 -> 10.0.0.2 tcp/80.
//     A rule with two lookups (a large rule: a peer set and a port set) is an allow for each
//     of them: a deleted peer yields its flows on any port, a deleted port any peer's.
//   * A pod whose dispatch element is added (newly isolated) or re-pointed to another chain, and
//     every pod dispatched into a chain whose rules are flushed, yields "any traffic to P"
//     (ingress) or "any traffic from P" (egress): any of its flows may now be denied.
//   * A rule `<selectors> @S drop` in a regular chain (a ClusterNetworkPolicy tier's Deny set)
//     is a deny: an element added to S yields the flows its key fields describe, as a deleted
//     allow element does. A regular chain's `jump C` sends the pods dispatched into it on to C
//     (a tier chain to its pods' group chain), so C's allows are theirs too.
//   * A lookup in a base chain itself (e.g. `ip saddr . ip daddr @self-v4 accept`) yields the
//     flows of its deleted elements' fields alone.
// Filters over-approximate (another rule may still allow a flow): StillAllowed decides.
//
// Thread safety: all functions are pure and reentrant.
#ifndef NETPOL_ENGINE_CONNTRACK_REVOCATION_H_
#define NETPOL_ENGINE_CONNTRACK_REVOCATION_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/model/ip.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::conntrack {

// One connection as a policy sees it, read from a conntrack entry: `src` is the original
// source; `dst` and `dport` are the source address and port of the reply direction, i.e. the
// real destination after DNAT (netpol's chains run after DNAT, at priority filter).
struct Flow {
  Family family = Family::kV4;
  uint8_t l4proto = 0;
  IpAddr src, dst;
  // The source after source NAT (the reply direction's destination) when NAT changed it: what
  // the destination pod sees, and what netpol's ingress rules (postrouting, after SNAT) judge.
  std::optional<IpAddr> nat_src;
  uint16_t sport = 0, dport = 0;  // 0 for protocols without ports
  bool has_ports = false;         // TCP, UDP, UDP-Lite, SCTP, DCCP
  uint8_t icmp_type = 0;          // ICMP / ICMPv6 only: the original direction's type

  // "tcp 10.0.0.7:40000 -> 10.0.0.2:80", "icmp 10.0.0.7 -> 10.0.0.2".
  std::string ToString() const;
};

// The flows one removed allow admitted. Ranges are inclusive; a filter with the full protocol
// and port ranges means "any traffic from src to dst". A restricted port range never matches a
// flow without ports.
struct FlowFilter {
  Family family = Family::kV4;
  IpAddr src_lo, src_hi;
  IpAddr dst_lo, dst_hi;
  uint8_t proto_lo = 0, proto_hi = 255;
  uint16_t dport_lo = 0, dport_hi = 65535;
  // Why the filter exists, for logs: "in-set-0123456789abcdef-p4: deleted 10.0.0.7 . tcp . 80
  // (ingress of 10.0.0.2 x/a)".
  std::string reason;

  // A filter for every flow of `family` from src to dst (each a single address).
  static FlowFilter Any(const IpAddr& src, const IpAddr& dst);
  // Every flow of p's family whose source (AnyFrom) or destination (AnyTo) is `p`.
  static FlowFilter AnyFrom(const IpAddr& p);
  static FlowFilter AnyTo(const IpAddr& p);

  bool Matches(const Flow& flow) const;
  // "10.0.0.7 -> 10.0.0.2 tcp dport 80", "10.0.0.0-10.0.0.255 -> 10.0.0.2 any".
  std::string ToString() const;

  friend bool operator==(const FlowFilter& a, const FlowFilter& b);
  friend bool operator<(const FlowFilter& a, const FlowFilter& b);
};

// The candidate flows of a change, kept factored: a removed element of an allow set used in a
// per-pod chain is stored once for the chain together with the pods dispatched into it, not once
// per pod. Relabelling 1,000 clients of 1,000 servers thus stores ~1,000 element filters plus
// ~1,000 pod entries instead of 1,000,000 filters. Matches() finds the candidates of one flow
// through indexes on exact addresses, so judging a conntrack table costs about one lookup per
// entry plus the filters whose two address sides are both ranges.
class RevocationPlan {
 public:
  // The plan for the flows that `tx`, applied to `before` (the program the table held), may
  // have denied; see the file comment. Commands on other tables than before.table, and on sets
  // or chains `before` does not hold, contribute nothing. Reads of `before` only what
  // ReconcilerOptions::after_commit guarantees: chain and set definitions, the verdict maps'
  // elements and the elements of the sets `tx` flushes or deletes. Cost: linear in the size of
  // `tx`, of those elements and of the verdict maps' elements.
  static RevocationPlan Build(const nft::Program& before, const nft::Transaction& tx);

  bool empty() const { return size() == 0; }
  // Stored filters and pod entries: the plan's memory and build work, linear in the change
  // (never a product of elements and pods).
  size_t size() const;
  // The number of filters Expand() would return before merging duplicates, computed without
  // expanding (for logs).
  size_t expanded_size() const;
  // The families some candidate belongs to: the conntrack tables worth listing.
  std::set<Family> families() const;
  // Whether `flow` is a candidate: some filter of Expand() matches it.
  bool Matches(const Flow& flow) const;
  // Every candidate as a FlowFilter: pods times element filters, sorted and without
  // duplicates. Materializes the product; for tests and small changes only.
  std::vector<FlowFilter> Expand() const;

 private:
  friend class PlanBuilder;

  // Filters indexed by their exact source or destination address.
  class Index {
   public:
    void Add(FlowFilter f);
    bool Matches(const Flow& flow) const;
    const std::vector<FlowFilter>& filters() const { return filters_; }

   private:
    std::vector<FlowFilter> filters_;
    std::map<IpAddr, std::vector<size_t>> by_src_, by_dst_;
    std::vector<size_t> ranges_;  // neither side a single address
  };

  // A pod address dispatched into a chain with candidate element filters.
  struct Pod {
    bool source = false;  // the pod is the flows' source (egress) or destination (ingress)
    IpAddr addr;
    std::string text;  // "ingress of 10.0.0.2 x/a", for reasons
  };
  struct ChainCandidates {
    Index filters;        // the element's own constraints; the pod side is the pod's address
    std::vector<Pod> pods;
  };

  Index base_;                                         // lookups in base chains, whole filters
  std::map<IpAddr, std::string> any_to_, any_from_;    // pod -> reason: any traffic to / from it
  std::map<std::string, ChainCandidates> chains_;      // chain -> its candidates and pods
  // Pod address -> the chains of chains_ it is dispatched into, as destination and as source.
  std::map<IpAddr, std::vector<std::string>> by_dst_pod_, by_src_pod_;
};

// RevocationPlan::Build(before, tx).Expand(): every candidate filter. Sorted and without
// duplicates; the reasons of merged duplicates are those of the first. Materializes the product
// of element filters and pods: the agent uses RevocationPlan instead.
std::vector<FlowFilter> RevocationFilters(const nft::Program& before, const nft::Transaction& tx);

// Returns whether `after` still accepts `flow` as a new connection: traced (the packet tracer,
// engine/trace) through every base chain on the forward hook (with the original source) and on
// the postrouting hook (with the source after SNAT, as a forwarded packet: no local socket), a
// flow is allowed when all of them accept it. A program without such base chains, or one the
// tracer cannot evaluate, allows everything (revocation then keeps the flow: never revoke what
// cannot be judged).
bool StillAllowed(const nft::Program& after, const Flow& flow);

}  // namespace netpol::conntrack

#endif  // NETPOL_ENGINE_CONNTRACK_REVOCATION_H_
