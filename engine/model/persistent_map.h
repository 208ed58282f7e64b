// PersistentMap: an ordered map whose copies share their structure.
//
// A balanced (AVL) tree of reference-counted nodes, each holding a reference-counted entry (a
// `std::pair<const K, V>`). Copying a map copies one pointer (O(1)); a write copies only the
// O(log n) nodes on the path to the key it changes and allocates at most the one entry it
// replaces, so the other entries stay shared between the old and the new map (their addresses
// are equal in both). Nodes and entries owned by one map alone are changed in place, so a
// series of writes to a fresh copy costs what it would on a std::map after the first write to
// each path.
//
// The const interface follows std::map (find, at, count, contains, lower_bound, upper_bound,
// equal_range, begin/end, size, empty, ordered iteration yielding `const value_type&`); the
// writers are std::map's insert_or_assign, emplace, try_emplace, insert, erase and clear, and
// operator[], which returns a reference to a value owned by this map alone (an entry shared
// with another copy is copied first).
//
// Differences from std::map: iterators are const and any write to a map invalidates its
// iterators (a reference to a value stays valid while the map keeps that entry, unless
// operator[] copies it for writing). A map, like std::map, must not be written while it is
// read; distinct copies may be read and written on different threads.
#ifndef NETPOL_ENGINE_MODEL_PERSISTENT_MAP_H_
#define NETPOL_ENGINE_MODEL_PERSISTENT_MAP_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "absl/container/inlined_vector.h"

namespace netpol {

template <typename K, typename V, typename Compare = std::less<K>>
class PersistentMap {
 public:
  using key_type = K;
  using mapped_type = V;
  using value_type = std::pair<const K, V>;
  using size_type = size_t;
  using difference_type = ptrdiff_t;
  using key_compare = Compare;
  using reference = const value_type&;
  using const_reference = const value_type&;

 private:
  struct Node;
  using NodePtr = std::shared_ptr<Node>;
  using EntryPtr = std::shared_ptr<value_type>;
  struct Node {
    NodePtr left, right;
    EntryPtr entry;
    int height = 1;
  };

 public:
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = PersistentMap::value_type;
    using difference_type = ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    const_iterator() = default;
    reference operator*() const { return *path_.back()->entry; }
    pointer operator->() const { return path_.back()->entry.get(); }
    const_iterator& operator++() {
      const Node* n = path_.back();
      path_.pop_back();
      PushLeft(n->right.get());
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      if (a.path_.empty() || b.path_.empty()) return a.path_.empty() == b.path_.empty();
      return a.path_.back() == b.path_.back();
    }
    friend bool operator!=(const const_iterator& a, const const_iterator& b) { return !(a == b); }

   private:
    friend class PersistentMap;
    // The nodes whose entry is yet to be visited with their right subtree, innermost last: the
    // ancestors of the current node (itself last) whose left subtree holds it.
    void PushLeft(const Node* n) {
      for (; n != nullptr; n = n->left.get()) path_.push_back(n);
    }
    absl::InlinedVector<const Node*, 24> path_;
  };
  using iterator = const_iterator;

  PersistentMap() = default;
  PersistentMap(std::initializer_list<value_type> init) {
    for (const value_type& v : init) insert(v);
  }
  template <typename It>
  PersistentMap(It first, It last) {
    for (; first != last; ++first) insert(*first);
  }
  PersistentMap(const PersistentMap&) = default;
  PersistentMap& operator=(const PersistentMap&) = default;
  PersistentMap(PersistentMap&& o) noexcept : root_(std::move(o.root_)), size_(o.size_) {
    o.size_ = 0;
  }
  PersistentMap& operator=(PersistentMap&& o) noexcept {
    root_ = std::move(o.root_);
    size_ = o.size_;
    o.size_ = 0;
    return *this;
  }

  size_type size() const { return size_; }
  // The tree's height (0 when empty): at most ~1.44 log2(size + 2).
  int height() const { return Height(root_); }
  bool empty() const { return size_ == 0; }

  const_iterator begin() const {
    const_iterator it;
    it.PushLeft(root_.get());
    return it;
  }
  const_iterator end() const { return const_iterator(); }
  const_iterator cbegin() const { return begin(); }
  const_iterator cend() const { return end(); }

  // The first element whose key is not less than `k`.
  const_iterator lower_bound(const K& k) const {
    const_iterator it;
    for (const Node* n = root_.get(); n != nullptr;) {
      if (Compare()(n->entry->first, k)) {
        n = n->right.get();
      } else {
        it.path_.push_back(n);
        n = n->left.get();
      }
    }
    return it;
  }
  // The first element whose key is greater than `k`.
  const_iterator upper_bound(const K& k) const {
    const_iterator it;
    for (const Node* n = root_.get(); n != nullptr;) {
      if (Compare()(k, n->entry->first)) {
        it.path_.push_back(n);
        n = n->left.get();
      } else {
        n = n->right.get();
      }
    }
    return it;
  }
  std::pair<const_iterator, const_iterator> equal_range(const K& k) const {
    return {lower_bound(k), upper_bound(k)};
  }
  const_iterator find(const K& k) const {
    const_iterator it = lower_bound(k);
    if (it == end() || Compare()(k, it->first)) return end();
    return it;
  }
  size_type count(const K& k) const { return Lookup(k) != nullptr ? 1 : 0; }
  bool contains(const K& k) const { return Lookup(k) != nullptr; }
  const V& at(const K& k) const {
    const value_type* e = Lookup(k);
    if (e == nullptr) throw std::out_of_range("PersistentMap::at: no such key");
    return e->second;
  }
  // The entry of `k`, or nullptr: one descent, no iterator.
  const value_type* Lookup(const K& k) const {
    for (const Node* n = root_.get(); n != nullptr;) {
      if (Compare()(k, n->entry->first)) {
        n = n->left.get();
      } else if (Compare()(n->entry->first, k)) {
        n = n->right.get();
      } else {
        return n->entry.get();
      }
    }
    return nullptr;
  }

  // Writers (std::map's signatures; every one invalidates this map's iterators).
  template <typename M>
  std::pair<const_iterator, bool> insert_or_assign(const K& k, M&& v) {
    const bool inserted = Put(
        root_, k, [&] { return std::make_shared<value_type>(k, std::forward<M>(v)); },
        /*replace=*/true);
    return {find(k), inserted};
  }
  template <typename... Args>
  std::pair<const_iterator, bool> try_emplace(const K& k, Args&&... args) {
    bool inserted = false;
    if (Lookup(k) == nullptr) {
      inserted = Put(
          root_, k,
          [&] {
            return std::make_shared<value_type>(std::piecewise_construct, std::forward_as_tuple(k),
                                                std::forward_as_tuple(std::forward<Args>(args)...));
          },
          /*replace=*/false);
    }
    return {find(k), inserted};
  }
  template <typename KK, typename VV>
  std::pair<const_iterator, bool> emplace(KK&& k, VV&& v) {
    return try_emplace(K(std::forward<KK>(k)), std::forward<VV>(v));
  }
  std::pair<const_iterator, bool> insert(const value_type& v) {
    return try_emplace(v.first, v.second);
  }
  // A value of `k` owned by this map alone (default-constructed when absent), for writing.
  V& operator[](const K& k) {
    value_type* out = nullptr;
    Put(
        root_, k, [&] { return std::make_shared<value_type>(k, V()); }, /*replace=*/false, &out);
    return out->second;
  }
  size_type erase(const K& k) {
    if (Lookup(k) == nullptr) return 0;
    Remove(root_, k);
    return 1;
  }
  // Erases the element at `pos`; returns the one after it.
  const_iterator erase(const_iterator pos) {
    const K k = pos->first;
    erase(k);
    return upper_bound(k);
  }
  void clear() {
    root_.reset();
    size_ = 0;
  }
  void swap(PersistentMap& o) noexcept {
    root_.swap(o.root_);
    std::swap(size_, o.size_);
  }

  // Whether `a` and `b` hold the same entry for `k` (the same object, not only equal values):
  // true when neither holds `k`. What a write did not touch is shared this way.
  static bool SameEntry(const PersistentMap& a, const PersistentMap& b, const K& k) {
    return a.Lookup(k) == b.Lookup(k);
  }

  friend bool operator==(const PersistentMap& a, const PersistentMap& b) {
    if (a.size_ != b.size_) return false;
    if (a.root_ == b.root_) return true;
    for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
      if (&*ia == &*ib) continue;
      if (Compare()(ia->first, ib->first) || Compare()(ib->first, ia->first)) return false;
      if (!(ia->second == ib->second)) return false;
    }
    return true;
  }
  friend bool operator!=(const PersistentMap& a, const PersistentMap& b) { return !(a == b); }

 private:
  static int Height(const NodePtr& p) { return p ? p->height : 0; }
  // Whether this map alone holds `p`'s target (then it may change in place).
  template <typename T>
  static bool Unique(const std::shared_ptr<T>& p) {
    if (p.use_count() != 1) return false;
    // Pairs with the release of the other owners' (now dropped) references: their reads of the
    // object happen before our writes.
    std::atomic_thread_fence(std::memory_order_acquire);
    return true;
  }
  // Makes `*p` a node of this map alone (copying a shared one) and returns it.
  static Node* Own(NodePtr& p) {
    if (!Unique(p)) p = std::make_shared<Node>(*p);
    return p.get();
  }
  static void Fix(Node* n) { n->height = 1 + std::max(Height(n->left), Height(n->right)); }
  static void RotateRight(NodePtr& p) {
    Node* n = p.get();
    Own(n->left);
    NodePtr l = std::move(n->left);
    n->left = std::move(l->right);
    Fix(n);
    l->right = std::move(p);
    Fix(l.get());
    p = std::move(l);
  }
  static void RotateLeft(NodePtr& p) {
    Node* n = p.get();
    Own(n->right);
    NodePtr r = std::move(n->right);
    n->right = std::move(r->left);
    Fix(n);
    r->left = std::move(p);
    Fix(r.get());
    p = std::move(r);
  }
  // Restores the AVL balance at `p` (a node of this map alone whose subtrees are balanced).
  static void Rebalance(NodePtr& p) {
    Node* n = p.get();
    Fix(n);
    const int balance = Height(n->left) - Height(n->right);
    if (balance > 1) {
      if (Height(n->left->left) < Height(n->left->right)) {
        Own(n->left);
        RotateLeft(n->left);
      }
      RotateRight(p);
    } else if (balance < -1) {
      if (Height(n->right->right) < Height(n->right->left)) {
        Own(n->right);
        RotateRight(n->right);
      }
      RotateLeft(p);
    }
  }
  // Inserts `make()` at `k` when absent (returns true); when present, replaces its entry if
  // `replace`. `*out`, when given, receives the key's entry, owned by this map alone.
  template <typename Make>
  bool Put(NodePtr& p, const K& k, const Make& make, bool replace, value_type** out = nullptr) {
    if (!p) {
      p = std::make_shared<Node>();
      p->entry = make();
      ++size_;
      if (out != nullptr) *out = p->entry.get();
      return true;
    }
    Node* n = Own(p);
    bool inserted;
    if (Compare()(k, n->entry->first)) {
      inserted = Put(n->left, k, make, replace, out);
    } else if (Compare()(n->entry->first, k)) {
      inserted = Put(n->right, k, make, replace, out);
    } else {
      if (replace) {
        n->entry = make();
      } else if (out != nullptr && !Unique(n->entry)) {
        n->entry = std::make_shared<value_type>(*n->entry);
      }
      if (out != nullptr) *out = n->entry.get();
      return false;
    }
    if (inserted) Rebalance(p);
    return inserted;
  }
  // Removes the smallest entry under `p` (non-null, owned) and returns it.
  static EntryPtr RemoveMin(NodePtr& p) {
    Node* n = p.get();
    if (!n->left) {
      EntryPtr e = std::move(n->entry);
      NodePtr right = std::move(n->right);
      p = std::move(right);
      return e;
    }
    Own(n->left);
    EntryPtr e = RemoveMin(n->left);
    Rebalance(p);
    return e;
  }
  // Removes `k`, which is present under `p`.
  void Remove(NodePtr& p, const K& k) {
    Node* n = Own(p);
    if (Compare()(k, n->entry->first)) {
      Remove(n->left, k);
    } else if (Compare()(n->entry->first, k)) {
      Remove(n->right, k);
    } else {
      --size_;
      if (!n->left || !n->right) {
        NodePtr child = n->left ? std::move(n->left) : std::move(n->right);
        p = std::move(child);
        return;
      }
      Own(n->right);
      n->entry = RemoveMin(n->right);
    }
    Rebalance(p);
  }

  NodePtr root_;
  size_type size_ = 0;
};

}  // namespace netpol

#endif  // NETPOL_ENGINE_MODEL_PERSISTENT_MAP_H_
