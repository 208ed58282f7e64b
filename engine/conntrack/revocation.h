// Which established connections a policy change revokes: the pure half of engine/conntrack.
//
// A committed change can deny flows that conntrack still holds as established; the base chains
// accept established traffic before any policy lookup, so such a flow would go on forever. After
// the transaction commits, the agent computes FlowFilters from it (RevocationFilters), lists the
// conntrack table, and deletes the entries that match a filter and that the new program no
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
//   * A pod whose dispatch element is added (newly isolated) or re-pointed to another chain, and
//     every pod dispatched into a chain whose rules are flushed, yields "any traffic to P"
//     (ingress) or "any traffic from P" (egress): any of its flows may now be denied.
//   * A lookup in a base chain itself (e.g. `ip saddr . ip daddr @self-v4 accept`) yields the
//     flows of its deleted elements' fields alone.
// Filters over-approximate (another rule may still allow a flow): StillAllowed decides.
//
// Thread safety: all functions are pure and reentrant.
#ifndef NETPOL_ENGINE_CONNTRACK_REVOCATION_H_
#define NETPOL_ENGINE_CONNTRACK_REVOCATION_H_

#include <cstdint>
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
  // Why the filter exists, for logs: "in-x_a-1a2b3c4d-p4: deleted 10.0.0.7 . tcp . 80
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

// Returns the filters for the flows that `tx`, applied to `before` (the program the table held),
// may have denied; see the file comment. Sorted and without duplicates; the reasons of merged
// duplicates are those of the first. Commands on other tables than before.table, and on sets
// or chains `before` does not hold, contribute nothing.
std::vector<FlowFilter> RevocationFilters(const nft::Program& before, const nft::Transaction& tx);

// Returns whether `after` still accepts `flow` as a new connection: traced (engine/compiler's
// tracer) through every base chain on the forward hook, a flow is allowed when all of them
// accept it. A program without forward base chains, or one the tracer cannot evaluate,
// allows everything (revocation then keeps the flow: never revoke what cannot be judged).
bool StillAllowed(const nft::Program& after, const Flow& flow);

}  // namespace netpol::conntrack

#endif  // NETPOL_ENGINE_CONNTRACK_REVOCATION_H_
