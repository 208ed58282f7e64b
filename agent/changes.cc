// State transitions for Apply and Delete. See changes.h.
#include "agent/changes.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "api/convert.h"

namespace netpol::agent {

using api::KeyOf;
using api::KindName;
using api::RefOf;
using api::RefString;

namespace {

template <typename T>
v1::Action Put(ObjectMap<T>* map, const std::string& key, const T& value) {
  const auto* old = map->Lookup(key);
  if (old != nullptr && old->second == value) return v1::UNCHANGED;
  map->insert_or_assign(key, value);
  return old == nullptr ? v1::CREATED : v1::CONFIGURED;
}

// Erases the objects of namespace `ns`, adding their keys to `keys`; returns how many.
template <typename T>
uint64_t EraseNamespace(ObjectMap<T>* map, const std::string& ns, std::set<std::string>* keys) {
  uint64_t n = 0;
  const std::string prefix = ns + "/";
  for (auto it = map->lower_bound(prefix); it != map->end() && it->first.rfind(prefix, 0) == 0;) {
    keys->insert(it->first);
    it = map->erase(it);
    ++n;
  }
  return n;
}

}  // namespace

ChangeResult ApplyObjects(const State& base, const std::vector<Object>& objects) {
  ChangeResult out;
  out.state = base;
  for (const Object& o : objects) {
    v1::Action action;
    std::set<std::string>* keys;
    std::string key;
    if (const Namespace* ns = o.AsNamespace()) {
      key = ns->name;
      keys = &out.delta.namespaces;
      action = Put(&out.state.namespaces, key, *ns);
    } else if (const Pod* pod = o.AsPod()) {
      key = pod->Key();
      keys = &out.delta.pods;
      action = Put(&out.state.pods, key, *pod);
    } else if (const ClusterNetworkPolicy* cnp = o.AsClusterNetworkPolicy()) {
      key = cnp->name;
      keys = &out.delta.cluster_policies;
      action = Put(&out.state.cluster_policies, key, *cnp);
    } else if (const Node* node = o.AsNode()) {
      key = node->name;
      keys = &out.delta.nodes;
      action = Put(&out.state.nodes, key, *node);
    } else {
      const NetworkPolicy* np = o.AsNetworkPolicy();
      key = np->Key();
      keys = &out.delta.policies;
      action = Put(&out.state.policies, key, *np);
    }
    if (action != v1::UNCHANGED) {
      ++out.objects_changed;
      keys->insert(std::move(key));
    }
    v1::ObjectResult r;
    *r.mutable_ref() = RefOf(o);
    r.set_action(action);
    out.results.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<ChangeResult> DeleteObjects(const State& base,
                                           const std::vector<v1::ObjectRef>& refs,
                                           bool ignore_not_found) {
  ChangeResult out;
  out.state = base;
  // Namespaces this request deleted: their pods and policies went with them, so naming those
  // later in the same request (as `delete -f` of a file holding the namespace does) is fine.
  std::set<std::string> cascaded;
  for (size_t i = 0; i < refs.size(); ++i) {
    const v1::ObjectRef& ref = refs[i];
    if (KindName(ref.kind()) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("refs[", i, "].kind: required (NAMESPACE, POD, NETWORK_POLICY, "
                       "CLUSTER_NETWORK_POLICY or NODE)"));
    }
    if (ref.name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("refs[", i, "].name: required"));
    }
    v1::ObjectRef r = ref;
    if (api::IsClusterScoped(r.kind())) {
      r.clear_namespace_();
    } else if (r.namespace_().empty()) {
      r.set_namespace_("default");
    }
    const std::string key = KeyOf(r);
    size_t erased = 0;
    switch (r.kind()) {
      case v1::NAMESPACE:
        erased = out.state.namespaces.erase(key);
        if (erased) {
          out.delta.namespaces.insert(key);
          out.objects_changed += EraseNamespace(&out.state.pods, key, &out.delta.pods);
          out.objects_changed += EraseNamespace(&out.state.policies, key, &out.delta.policies);
        }
        break;
      case v1::POD:
        erased = out.state.pods.erase(key);
        if (erased) out.delta.pods.insert(key);
        break;
      case v1::CLUSTER_NETWORK_POLICY:
        erased = out.state.cluster_policies.erase(key);
        if (erased) out.delta.cluster_policies.insert(key);
        break;
      case v1::NODE:
        erased = out.state.nodes.erase(key);
        if (erased) out.delta.nodes.insert(key);
        break;
      default:
        erased = out.state.policies.erase(key);
        if (erased) out.delta.policies.insert(key);
        break;
    }
    const bool gone_with_namespace = !erased && !api::IsClusterScoped(r.kind()) &&
                                     cascaded.count(r.namespace_()) &&
                                     (r.kind() == v1::POD ? base.pods.count(key)
                                                          : base.policies.count(key));
    if (r.kind() == v1::NAMESPACE && erased) cascaded.insert(key);
    if (!erased && !gone_with_namespace && !ignore_not_found) {
      return absl::NotFoundError(absl::StrCat(RefString(r), ": not found"));
    }
    out.objects_changed += erased;
    v1::ObjectResult res;
    *res.mutable_ref() = r;
    res.set_action(erased || gone_with_namespace ? v1::DELETED : v1::UNCHANGED);
    out.results.push_back(std::move(res));
  }
  return out;
}

}  // namespace netpol::agent
