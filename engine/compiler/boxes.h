// Disjoint unions of boxes: the normal form of every interval-set element list
// the compiler emits.
//
// The kernel's concatenated interval sets (the pipapo backend) reject an
// element whose start or end lies inside an element already present, so
// overlapping rule parts (an ipBlock that also covers a pod with an endPort
// range, two ipBlocks that nest, ...) must be cut into disjoint pieces first. A
// box is a product of inclusive integer ranges, one per key field (address,
// protocol, port). DisjointUnion returns the canonical cover of the union:
// along the first field it cuts the line into maximal runs over which the
// cross-section is constant, and recurses on the cross-section. The result
// depends only on the union as a point set, never on how the input was split,
// which keeps element lists stable from one compile to the next.
#ifndef NETPOL_ENGINE_COMPILER_BOXES_H_
#define NETPOL_ENGINE_COMPILER_BOXES_H_

#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"

namespace netpol::compiler {

using U128 = unsigned __int128;

struct Span {
  U128 lo = 0, hi = 0;  // inclusive
  friend bool operator==(const Span& a, const Span& b) { return a.lo == b.lo && a.hi == b.hi; }
  friend bool operator<(const Span& a, const Span& b) {
    return a.lo != b.lo ? a.lo < b.lo : a.hi < b.hi;
  }
};

// One span per dimension (at most three: address, protocol, port), held inline: a box costs no
// allocation of its own, in the element counts of every set.
using Box = absl::InlinedVector<Span, 3>;

// Returns disjoint boxes whose union equals the union of `boxes`, sorted
// lexicographically. `dim_max[i]` is the largest value of dimension i; every
// box has dim_max.size() spans with lo <= hi <= dim_max[i] (callers guarantee
// it).
std::vector<Box> DisjointUnion(const std::vector<Box>& boxes, const std::vector<U128>& dim_max);

}  // namespace netpol::compiler

#endif  // NETPOL_ENGINE_COMPILER_BOXES_H_
