// The etcd key layout and value encoding. See keys.h.
#include "agent/etcd/keys.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace netpol::agent::etcd {

std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

absl::StatusOr<KeyLayout> KeyLayout::Create(std::string prefix) {
  if (prefix.size() < 2 || prefix.front() != '/' || prefix.back() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd key prefix \"", prefix, "\": must start and end with '/' (e.g. /netpol/v1/)"));
  }
  return KeyLayout(std::move(prefix));
}

std::string KeyLayout::NamespaceKey(const std::string& name) const {
  return absl::StrCat(prefix_, kNamespacesDir, name);
}
std::string KeyLayout::PodKey(const std::string& state_key) const {
  return absl::StrCat(prefix_, kPodsDir, state_key);
}
std::string KeyLayout::PolicyKey(const std::string& state_key) const {
  return absl::StrCat(prefix_, kPoliciesDir, state_key);
}
std::string KeyLayout::ClusterPolicyKey(const std::string& name) const {
  return absl::StrCat(prefix_, kClusterPoliciesDir, name);
}
std::string KeyLayout::NodeKey(const std::string& name) const {
  return absl::StrCat(prefix_, kNodeObjectsDir, name);
}
std::string KeyLayout::PodsOfNamespace(const std::string& ns) const {
  return absl::StrCat(prefix_, kPodsDir, ns, "/");
}
std::string KeyLayout::PoliciesOfNamespace(const std::string& ns) const {
  return absl::StrCat(prefix_, kPoliciesDir, ns, "/");
}

std::string KeyLayout::KeyOf(const Object& object) const {
  if (const Namespace* ns = object.AsNamespace()) return NamespaceKey(ns->name);
  if (const Pod* pod = object.AsPod()) return PodKey(pod->Key());
  if (const ClusterNetworkPolicy* cnp = object.AsClusterNetworkPolicy()) {
    return ClusterPolicyKey(cnp->name);
  }
  if (const Node* node = object.AsNode()) return NodeKey(node->name);
  return PolicyKey(object.Key());
}

std::string KeyLayout::Encode(const Object& object) { return ToYaml(object); }

absl::StatusOr<Object> KeyLayout::Decode(absl::string_view key, absl::string_view value) const {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("etcd key ", key, ": ", why));
  };
  if (!absl::StartsWith(key, prefix_)) return bad(absl::StrCat("not under ", prefix_));
  absl::string_view rest = key.substr(prefix_.size());
  std::vector<absl::string_view> parts = absl::StrSplit(rest, '/');
  const char* want_kind = nullptr;
  std::string want_ns, want_name;
  if (parts.size() == 2 && absl::StrCat(parts[0], "/") == kNamespacesDir) {
    want_kind = "Namespace";
    want_name = std::string(parts[1]);
  } else if (parts.size() == 2 && absl::StrCat(parts[0], "/") == kClusterPoliciesDir) {
    want_kind = "ClusterNetworkPolicy";
    want_name = std::string(parts[1]);
  } else if (parts.size() == 2 && absl::StrCat(parts[0], "/") == kNodeObjectsDir) {
    want_kind = "Node";
    want_name = std::string(parts[1]);
  } else if (parts.size() == 3 && absl::StrCat(parts[0], "/") == kPodsDir) {
    want_kind = "Pod";
  } else if (parts.size() == 3 && absl::StrCat(parts[0], "/") == kPoliciesDir) {
    want_kind = "NetworkPolicy";
  } else {
    return bad(absl::StrCat("not a netpol object key (want ", prefix_, kNamespacesDir, "<name>, ",
                            prefix_, kPodsDir, "<namespace>/<name>, ", prefix_, kPoliciesDir,
                            "<namespace>/<name>, ", prefix_, kClusterPoliciesDir, "<name> or ",
                            prefix_, kNodeObjectsDir, "<name>)"));
  }
  if (parts.size() == 3) {
    want_ns = std::string(parts[1]);
    want_name = std::string(parts[2]);
  }
  if (want_name.empty() || (parts.size() == 3 && want_ns.empty())) {
    return bad("empty name or namespace in the key");
  }
  LoadOptions options;
  options.source = absl::StrCat("etcd key ", key);
  options.default_namespace = want_ns.empty() ? "default" : want_ns;
  absl::StatusOr<LoadResult> loaded = LoadYaml(value, options);
  if (!loaded.ok()) return loaded.status();
  if (loaded->objects.size() != 1) {
    return bad(absl::StrCat("the value holds ", loaded->objects.size(),
                            " objects; want exactly one"));
  }
  Object& object = loaded->objects[0];
  if (absl::string_view(object.Kind()) != want_kind || object.Name() != want_name ||
      object.NamespaceName() != want_ns) {
    return bad(absl::StrCat("the value is ", object.Ref(), ", which belongs under ",
                            KeyOf(object)));
  }
  return std::move(object);
}

}  // namespace netpol::agent::etcd
