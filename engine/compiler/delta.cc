#include "engine/compiler/delta.h"

namespace netpol::compiler {

void Delta::Merge(const Delta& other) {
  namespaces.insert(other.namespaces.begin(), other.namespaces.end());
  pods.insert(other.pods.begin(), other.pods.end());
  policies.insert(other.policies.begin(), other.policies.end());
  cluster_policies.insert(other.cluster_policies.begin(), other.cluster_policies.end());
  nodes.insert(other.nodes.begin(), other.nodes.end());
}

Delta DiffStates(const State& from, const State& to) {
  Delta d;
  auto diff = [](const auto& a, const auto& b, std::set<std::string>* out) {
    for (const auto& [k, v] : a) {
      auto it = b.find(k);
      if (it == b.end() || !(it->second == v)) out->insert(k);
    }
    for (const auto& [k, v] : b) {
      if (!a.count(k)) out->insert(k);
    }
  };
  diff(from.namespaces, to.namespaces, &d.namespaces);
  diff(from.pods, to.pods, &d.pods);
  diff(from.policies, to.policies, &d.policies);
  diff(from.cluster_policies, to.cluster_policies, &d.cluster_policies);
  diff(from.nodes, to.nodes, &d.nodes);
  return d;
}

}  // namespace netpol::compiler
