#include "engine/compiler/boxes.h"

#include <algorithm>

namespace netpol::compiler {
namespace {

// Decomposes the union of boxes[i] for i in `idx`, restricted to dimensions
// d.., into canonical disjoint boxes (each holding dimensions d..).
std::vector<Box> Decompose(const std::vector<Box>& boxes, std::vector<size_t> idx, size_t d,
                           const std::vector<U128>& dim_max) {
  if (d == dim_max.size()) return {Box()};
  const U128 max = dim_max[d];
  // Cut points: every start and every (end + 1) inside the dimension. Between
  // two consecutive cuts the set of covering boxes is constant.
  std::vector<U128> cuts;
  cuts.reserve(idx.size() * 2);
  for (size_t i : idx) {
    cuts.push_back(boxes[i][d].lo);
    if (boxes[i][d].hi < max) cuts.push_back(boxes[i][d].hi + 1);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::sort(idx.begin(), idx.end(),
            [&](size_t a, size_t b) { return boxes[a][d].lo < boxes[b][d].lo; });

  struct Run {
    Span span;
    std::vector<Box> rest;
  };
  std::vector<Run> runs;
  std::vector<size_t> active;
  size_t next = 0;
  for (size_t c = 0; c < cuts.size(); ++c) {
    const Span seg{cuts[c], c + 1 < cuts.size() ? cuts[c + 1] - 1 : max};
    active.erase(std::remove_if(active.begin(), active.end(),
                                [&](size_t i) { return boxes[i][d].hi < seg.lo; }),
                 active.end());
    while (next < idx.size() && boxes[idx[next]][d].lo <= seg.lo) active.push_back(idx[next++]);
    if (active.empty()) continue;
    std::vector<Box> rest = Decompose(boxes, active, d + 1, dim_max);
    if (!runs.empty() && runs.back().span.hi + 1 == seg.lo && runs.back().rest == rest) {
      runs.back().span.hi = seg.hi;
    } else {
      runs.push_back(Run{seg, std::move(rest)});
    }
  }
  std::vector<Box> out;
  for (const Run& run : runs) {
    for (const Box& r : run.rest) {
      Box b;
      b.reserve(r.size() + 1);
      b.push_back(run.span);
      b.insert(b.end(), r.begin(), r.end());
      out.push_back(std::move(b));
    }
  }
  return out;
}

}  // namespace

std::vector<Box> DisjointUnion(const std::vector<Box>& boxes, const std::vector<U128>& dim_max) {
  if (boxes.empty()) return {};
  std::vector<size_t> idx(boxes.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  return Decompose(boxes, std::move(idx), 0, dim_max);
}

}  // namespace netpol::compiler
