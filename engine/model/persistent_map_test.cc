#include "engine/model/persistent_map.h"

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace netpol {
namespace {

using Map = PersistentMap<int, std::string>;

// Every element of `m` against `ref`, in order, and the lookups of every key in [-1, limit].
void ExpectSame(const Map& m, const std::map<int, std::string>& ref, int limit) {
  ASSERT_EQ(m.size(), ref.size());
  ASSERT_EQ(m.empty(), ref.empty());
  auto it = m.begin();
  for (const auto& [k, v] : ref) {
    ASSERT_NE(it, m.end());
    EXPECT_EQ(it->first, k);
    EXPECT_EQ(it->second, v);
    ++it;
  }
  EXPECT_EQ(it, m.end());
  for (int k = -1; k <= limit; ++k) {
    EXPECT_EQ(m.count(k), ref.count(k)) << k;
    auto lb = m.lower_bound(k);
    auto rlb = ref.lower_bound(k);
    if (rlb == ref.end()) {
      EXPECT_EQ(lb, m.end()) << k;
    } else {
      ASSERT_NE(lb, m.end()) << k;
      EXPECT_EQ(lb->first, rlb->first) << k;
    }
    auto ub = m.upper_bound(k);
    auto rub = ref.upper_bound(k);
    if (rub == ref.end()) {
      EXPECT_EQ(ub, m.end()) << k;
    } else {
      ASSERT_NE(ub, m.end()) << k;
      EXPECT_EQ(ub->first, rub->first) << k;
    }
  }
  // AVL: height <= 1.4405 log2(n + 2) - 0.3277.
  EXPECT_LE(m.height(), 1.4405 * std::log2(static_cast<double>(m.size()) + 2)) << m.size();
}

TEST(PersistentMapTest, RandomOperationsMatchStdMapAndLeaveCopiesUnchanged) {
  std::mt19937 rng(20261206);
  constexpr int kKeys = 300;
  Map m;
  std::map<int, std::string> ref;
  // Earlier versions and what they held: writes to later copies must not change them.
  std::vector<std::pair<Map, std::map<int, std::string>>> versions;
  for (int step = 0; step < 6000; ++step) {
    const int k = static_cast<int>(rng() % kKeys);
    const std::string v = std::to_string(rng() % 1000);
    switch (rng() % 7) {
      case 0: {
        auto [it, inserted] = m.insert_or_assign(k, v);
        auto [rit, rinserted] = ref.insert_or_assign(k, v);
        EXPECT_EQ(inserted, rinserted);
        EXPECT_EQ(it->first, k);
        EXPECT_EQ(it->second, v);
        break;
      }
      case 1: {
        auto [it, inserted] = m.emplace(k, v);
        auto [rit, rinserted] = ref.emplace(k, v);
        EXPECT_EQ(inserted, rinserted);
        EXPECT_EQ(it->second, rit->second);
        break;
      }
      case 2:
        m[k] += v;
        ref[k] += v;
        break;
      case 3:
      case 4:
        EXPECT_EQ(m.erase(k), ref.erase(k));
        break;
      case 5: {
        // Erase through an iterator: the returned one is the next element.
        auto it = m.lower_bound(k);
        auto rit = ref.lower_bound(k);
        if (rit == ref.end()) {
          EXPECT_EQ(it, m.end());
          break;
        }
        it = m.erase(it);
        rit = ref.erase(rit);
        if (rit == ref.end()) {
          EXPECT_EQ(it, m.end());
        } else {
          ASSERT_NE(it, m.end());
          EXPECT_EQ(it->first, rit->first);
        }
        break;
      }
      default: {
        auto it = m.find(k);
        auto rit = ref.find(k);
        EXPECT_EQ(it == m.end(), rit == ref.end());
        if (rit != ref.end()) {
          EXPECT_EQ(m.at(k), rit->second);
        }
        break;
      }
    }
    if (step % 100 == 0) versions.emplace_back(m, ref);
    if (step % 500 == 0) ExpectSame(m, ref, kKeys);
  }
  ExpectSame(m, ref, kKeys);
  for (const auto& [old, old_ref] : versions) ExpectSame(old, old_ref, kKeys);
  // Equality: by content, whether or not structure is shared.
  Map rebuilt(ref.begin(), ref.end());
  EXPECT_EQ(rebuilt, m);
  rebuilt[kKeys + 1] = "x";
  EXPECT_NE(rebuilt, m);
}

TEST(PersistentMapTest, AtThrowsOnAMissingKey) {
  Map m{{1, "a"}};
  EXPECT_EQ(m.at(1), "a");
  EXPECT_THROW(m.at(2), std::out_of_range);
}

TEST(PersistentMapTest, AWriteSharesEveryEntryItDoesNotChange) {
  Map a;
  for (int i = 0; i < 1000; ++i) a.insert_or_assign(i, std::to_string(i));
  const Map b = a;  // O(1): the same tree
  Map c = a;
  c.insert_or_assign(500, "changed");
  c.erase(10);
  c[20] += "!";
  c.emplace(2000, "new");
  for (int i = 0; i < 1000; ++i) {
    const bool touched = i == 500 || i == 10 || i == 20;
    EXPECT_EQ(&*a.find(i), &*b.find(i)) << i;
    if (!touched) {
      EXPECT_EQ(&*a.find(i), &*c.find(i)) << i;  // the same entry object, not a copy
      EXPECT_TRUE(Map::SameEntry(a, c, i)) << i;
    } else {
      EXPECT_FALSE(Map::SameEntry(a, c, i)) << i;
    }
  }
  EXPECT_EQ(a.at(500), "500");
  EXPECT_EQ(a.at(20), "20");
  EXPECT_EQ(a.count(10), 1u);
  EXPECT_EQ(a.count(2000), 0u);
  EXPECT_EQ(c.at(500), "changed");
  EXPECT_EQ(c.at(20), "20!");
  EXPECT_EQ(c.count(10), 0u);
  EXPECT_EQ(c.size(), 1000u);
  EXPECT_EQ(a.size(), 1000u);
}

TEST(PersistentMapTest, WritesToAMapAloneChangeEntriesInPlace) {
  Map a;
  a[1] = "x";
  const auto* before = &*a.find(1);
  a[1] += "y";  // owned by `a` alone: no copy
  EXPECT_EQ(&*a.find(1), before);
  Map b = a;
  b[1] += "z";  // shared: copied for `b`
  EXPECT_EQ(&*a.find(1), before);
  EXPECT_NE(&*b.find(1), before);
  EXPECT_EQ(a.at(1), "xy");
  EXPECT_EQ(b.at(1), "xyz");
}

TEST(PersistentMapTest, IteratesInOrderWithStdAlgorithms) {
  PersistentMap<std::string, int> m;
  for (const char* k : {"b/x", "a/y", "b/a", "c/z", "b/"}) m[k] = 1;
  auto from = m.lower_bound("b/");
  auto to = m.lower_bound("b0");
  EXPECT_EQ(std::distance(from, to), 3);
  std::vector<std::string> keys;
  for (const auto& [k, v] : m) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"a/y", "b/", "b/a", "b/x", "c/z"}));
}

}  // namespace
}  // namespace netpol
