// The Datastore interface's shared helpers. See datastore.h.
#include "agent/datastore.h"

#include <set>
#include <string>

namespace netpol::agent {
namespace {

// Whether `a` and `b` hold different objects at `key` (one absent, or unequal values). An entry
// the write did not replace is shared by both maps and compares equal without a look inside.
template <typename T>
bool Differs(const ObjectMap<T>& a, const ObjectMap<T>& b, const std::string& key) {
  const auto* ea = a.Lookup(key);
  const auto* eb = b.Lookup(key);
  if (ea == eb) return false;
  if (ea == nullptr || eb == nullptr) return true;
  return !(ea->second == eb->second);
}

// Adds to `out` the keys in [lo, hi) whose objects differ between `a` and `b`.
template <typename T>
void DiffRange(const ObjectMap<T>& a, const ObjectMap<T>& b, const std::string& lo,
               const std::string& hi, std::set<std::string>* out) {
  auto ia = a.lower_bound(lo);
  auto ib = b.lower_bound(lo);
  const auto ea = a.lower_bound(hi);
  const auto eb = b.lower_bound(hi);
  while (ia != ea || ib != eb) {
    if (ib == eb || (ia != ea && ia->first < ib->first)) {
      out->insert(out->end(), ia->first);
      ++ia;
    } else if (ia == ea || ib->first < ia->first) {
      out->insert(out->end(), ib->first);
      ++ib;
    } else {
      if (&*ia != &*ib && !(ia->second == ib->second)) out->insert(out->end(), ia->first);
      ++ia;
      ++ib;
    }
  }
}

}  // namespace

ChangedKeys ResolveTouched(const State& base, const State& next, const ChangedKeys& touched) {
  ChangedKeys out;
  for (const std::string& ns : touched.namespaces) {
    if (!Differs(base.namespaces, next.namespaces, ns)) continue;
    out.namespaces.insert(ns);
    if (next.namespaces.count(ns) == 0) {
      // "ns0" sorts right after "ns/": the range holds exactly the keys "ns/...".
      const std::string lo = ns + "/", hi = ns + "0";
      DiffRange(base.pods, next.pods, lo, hi, &out.pods);
      DiffRange(base.policies, next.policies, lo, hi, &out.policies);
    }
  }
  for (const std::string& k : touched.pods) {
    if (Differs(base.pods, next.pods, k)) out.pods.insert(k);
  }
  for (const std::string& k : touched.policies) {
    if (Differs(base.policies, next.policies, k)) out.policies.insert(k);
  }
  for (const std::string& k : touched.cluster_policies) {
    if (Differs(base.cluster_policies, next.cluster_policies, k)) out.cluster_policies.insert(k);
  }
  for (const std::string& k : touched.nodes) {
    if (Differs(base.nodes, next.nodes, k)) out.nodes.insert(k);
  }
  return out;
}

}  // namespace netpol::agent
