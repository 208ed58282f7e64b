// The objects that differ between two States: what IncrementalCompiler::Update is told and what
// the agent's datastore logs per generation.
#ifndef NETPOL_ENGINE_COMPILER_DELTA_H_
#define NETPOL_ENGINE_COMPILER_DELTA_H_

#include <cstddef>
#include <set>
#include <string>

#include "engine/model/model.h"

namespace netpol::compiler {

// The objects that differ between two States, by key: namespace names, pod and policy keys
// ("namespace/name"), ClusterNetworkPolicy and Node names. Each may be created, changed or
// deleted. A key listed that did not change
// costs a little work and is otherwise harmless; a change not listed is missed.
struct Delta {
  std::set<std::string> namespaces;
  std::set<std::string> pods;
  std::set<std::string> policies;
  std::set<std::string> cluster_policies;
  std::set<std::string> nodes;

  bool empty() const {
    return namespaces.empty() && pods.empty() && policies.empty() && cluster_policies.empty() &&
           nodes.empty();
  }
  size_t size() const {
    return namespaces.size() + pods.size() + policies.size() + cluster_policies.size() +
           nodes.size();
  }
  // Adds the keys of `other`.
  void Merge(const Delta& other);
  friend bool operator==(const Delta& a, const Delta& b) {
    return a.namespaces == b.namespaces && a.pods == b.pods && a.policies == b.policies &&
           a.cluster_policies == b.cluster_policies && a.nodes == b.nodes;
  }
};

// Returns the Delta between two States by comparing every object (a walk over both States).
Delta DiffStates(const State& from, const State& to);

}  // namespace netpol::compiler

#endif  // NETPOL_ENGINE_COMPILER_DELTA_H_
