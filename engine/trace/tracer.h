// A packet tracer over an nft::Program: a small interpreter of the rule
// vocabulary the compiler emits, walking a base chain rule by rule, through set
// lookups, verdict maps, jumps, gotos and returns, exactly as the kernel's
// nf_tables core does (an accept or drop anywhere ends the walk of the base
// chain; a return or the end of a non-base chain resumes the caller; the end of
// a base chain applies its policy).
//
// It answers "what would this table do to a packet?" without a kernel. Production
// code: conntrack revocation (engine/conntrack) asks it which established flows a
// new program drops. It also serves the differential tests that compare compiled
// programs against the reference evaluator.
#ifndef NETPOL_ENGINE_TRACE_TRACER_H_
#define NETPOL_ENGINE_TRACE_TRACER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/ip.h"
#include "engine/nft/program.h"

namespace netpol::trace {

enum class CtState { kNew, kEstablished, kRelated, kInvalid, kUntracked };

struct Packet {
  IpAddr src, dst;  // one family
  uint8_t l4proto = 6;
  // The transport header's bytes 2-3 (`th dport`): the destination port of
  // TCP/UDP/SCTP.
  uint16_t dport = 0;
  std::optional<uint8_t> icmpv6_type;  // with l4proto 58
  CtState ct = CtState::kNew;
  // The connection's original source (`ct original ip saddr`) when source NAT
  // changed it; unset: `src`.
  std::optional<IpAddr> orig_src;
  // Routing context for `fib saddr|daddr type local`: the address is one of the
  // node's own.
  bool src_local = false, dst_local = false;
  // A local socket sent the packet (`meta skuid >= 0` matches).
  bool local_socket = false;
};

struct TraceResult {
  bool accepted = false;
  // One line per rule that matched, e.g. "forward[5] ip saddr vmap
  // @egress-dispatch-v4 -> jump eg-x_a-1234abcd (egress of local isolated
  // pods)", and the final verdict.
  std::vector<std::string> steps;
  std::string ToString() const;
};

// Walks base chain `chain` of `program` for `packet`. Errors: NotFound for a
// missing chain or set, InvalidArgument for a rule the tracer cannot evaluate
// (interface matches; fib matches use the packet's src_local/dst_local) or a malformed
// lookup, FailedPrecondition for a jump loop deeper than the kernel allows.
// With `explain` false only the final verdict line is recorded (faster, for
// bulk comparisons).
absl::StatusOr<TraceResult> Trace(const nft::Program& program, const std::string& chain,
                                  const Packet& packet, bool explain = true);

}  // namespace netpol::trace

#endif  // NETPOL_ENGINE_TRACE_TRACER_H_
