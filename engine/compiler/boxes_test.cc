#include "engine/compiler/boxes.h"

#include <set>
#include <tuple>

#include "engine/compiler/testutil.h"
#include "gtest/gtest.h"

namespace netpol::compiler {
namespace {

using Point = std::tuple<int, int, int>;

std::set<Point> Points(const std::vector<Box>& boxes) {
  std::set<Point> pts;
  for (const Box& b : boxes) {
    for (U128 x = b[0].lo; x <= b[0].hi; ++x) {
      for (U128 y = b[1].lo; y <= b[1].hi; ++y) {
        for (U128 z = b[2].lo; z <= b[2].hi; ++z) pts.insert({int(x), int(y), int(z)});
      }
    }
  }
  return pts;
}

size_t Volume(const std::vector<Box>& boxes) {
  size_t v = 0;
  for (const Box& b : boxes) {
    v += size_t(b[0].hi - b[0].lo + 1) * size_t(b[1].hi - b[1].lo + 1) *
         size_t(b[2].hi - b[2].lo + 1);
  }
  return v;
}

TEST(DisjointUnionTest, RandomBoxesGiveDisjointCanonicalCover) {
  const std::vector<U128> max = {15, 3, 7};
  for (uint64_t seed = 1; seed <= 500; ++seed) {
    testing::Rng rng(seed);
    std::vector<Box> boxes;
    int n = 1 + rng.Uniform(6);
    for (int i = 0; i < n; ++i) {
      Box b;
      for (U128 m : max) {
        U128 a = rng.Uniform(int(m) + 1), c = rng.Uniform(int(m) + 1);
        b.push_back({std::min(a, c), std::max(a, c)});
      }
      boxes.push_back(b);
    }
    std::vector<Box> out = DisjointUnion(boxes, max);
    std::set<Point> want = Points(boxes);
    ASSERT_EQ(Points(out), want) << "seed " << seed;
    ASSERT_EQ(Volume(out), want.size()) << "seed " << seed << ": pieces overlap";
    // Canonical: the cover of the cover, and of the input in another order, is
    // the same.
    EXPECT_EQ(DisjointUnion(out, max), out) << "seed " << seed;
    std::vector<Box> reversed(boxes.rbegin(), boxes.rend());
    EXPECT_EQ(DisjointUnion(reversed, max), out) << "seed " << seed;
  }
}

TEST(DisjointUnionTest, FullRangeAtTheTopOfTheDimension) {
  const U128 all = ~U128{0};
  std::vector<Box> out = DisjointUnion({{{0, all}, {0, 255}}, {{5, 5}, {6, 6}}}, {all, 255});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0][0].hi == all);
}

TEST(DisjointUnionTest, AdjacentPointsMergeIntoOneRange) {
  std::vector<Box> out =
      DisjointUnion({{{1, 1}, {6, 6}}, {{2, 2}, {6, 6}}, {{4, 4}, {6, 6}}}, {255, 255});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0][0], (Span{1, 2}));
  EXPECT_EQ(out[1][0], (Span{4, 4}));
}

TEST(DisjointUnionTest, EmptyInputEmptyOutput) { EXPECT_TRUE(DisjointUnion({}, {255}).empty()); }

}  // namespace
}  // namespace netpol::compiler
