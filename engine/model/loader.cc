// Kubernetes YAML/JSON -> model objects (with API-server validation), and back.
//
// This file is the document loop: the syntax pass and the cutting of a stream into documents
// (yaml_stream.h), then per document the kind table and the dispatch to one parser per kind
// (kinds.h), each walking its node tree defensively (walker.h): every node's type is checked
// before use, every exception is caught, and errors are collected with the object and field path
// they concern. Scalar rules: yaml_scalar.h; name rules: names.h; files: load_file.cc; writing:
// emit.cc.
#include "engine/model/loader.h"

#include <yaml-cpp/yaml.h>

#include <exception>
#include <istream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/kinds.h"
#include "engine/model/names.h"
#include "engine/model/walker.h"
#include "engine/model/yaml_scalar.h"
#include "engine/model/yaml_stream.h"

namespace netpol {

// ---------------------------------------------------------------------------------------------
// Object helpers.

const char* Object::Kind() const {
  switch (value.index()) {
    case 0:
      return "Namespace";
    case 1:
      return "Pod";
    case 2:
      return "NetworkPolicy";
    case 3:
      return "ClusterNetworkPolicy";
    default:
      return "Node";
  }
}

const std::string& Object::NamespaceName() const {
  static const std::string* const kEmpty = new std::string();
  if (const Pod* p = AsPod()) return p->namespace_name;
  if (const NetworkPolicy* np = AsNetworkPolicy()) return np->namespace_name;
  return *kEmpty;
}

const std::string& Object::Name() const {
  return std::visit([](const auto& o) -> const std::string& { return o.name; }, value);
}

std::string Object::Key() const {
  if (!Namespaced()) return Name();
  return absl::StrCat(NamespaceName(), "/", Name());
}

std::string Object::Ref() const { return absl::StrCat(absl::AsciiStrToLower(Kind()), " ", Key()); }

void Upsert(const Object& object, State* state) {
  if (const Namespace* ns = object.AsNamespace()) {
    state->namespaces.insert_or_assign(ns->name, *ns);
  } else if (const Pod* p = object.AsPod()) {
    state->pods.insert_or_assign(p->Key(), *p);
  } else if (const NetworkPolicy* np = object.AsNetworkPolicy()) {
    state->policies.insert_or_assign(np->Key(), *np);
  } else if (const ClusterNetworkPolicy* cnp = object.AsClusterNetworkPolicy()) {
    state->cluster_policies.insert_or_assign(cnp->name, *cnp);
  } else if (const Node* node = object.AsNode()) {
    state->nodes.insert_or_assign(node->name, *node);
  }
}

std::vector<Object> ObjectsOf(const State& state) {
  std::vector<Object> out;
  out.reserve(state.namespaces.size() + state.pods.size() + state.policies.size() +
              state.cluster_policies.size() + state.nodes.size());
  for (const auto& [key, ns] : state.namespaces) out.push_back(Object{ns});
  for (const auto& [key, pod] : state.pods) out.push_back(Object{pod});
  for (const auto& [key, np] : state.policies) out.push_back(Object{np});
  for (const auto& [key, cnp] : state.cluster_policies) out.push_back(Object{cnp});
  for (const auto& [key, node] : state.nodes) out.push_back(Object{node});
  return out;
}

namespace {

using load::Fields;
using load::Index;
using load::LoadState;
using load::Walker;
using yaml11::Describe;
using yaml11::Resolve;
using yaml11::ScalarType;

enum class Kind { kNamespace, kPod, kNetworkPolicy, kClusterNetworkPolicy, kNode, kList };

const char* KindLower(Kind k) {
  switch (k) {
    case Kind::kNamespace:
      return "namespace";
    case Kind::kPod:
      return "pod";
    case Kind::kNetworkPolicy:
      return "networkpolicy";
    case Kind::kClusterNetworkPolicy:
      return "clusternetworkpolicy";
    case Kind::kNode:
      return "node";
    case Kind::kList:
      return "list";
  }
  return "";
}

struct KindInfo {
  const char* name;
  Kind kind;
  const char* api_version;
  const char* item_kind;  // typed lists: the kind of their items
};

constexpr KindInfo kKinds[] = {
    {"Namespace", Kind::kNamespace, "v1", nullptr},
    {"Pod", Kind::kPod, "v1", nullptr},
    {"NetworkPolicy", Kind::kNetworkPolicy, "networking.k8s.io/v1", nullptr},
    {"ClusterNetworkPolicy", Kind::kClusterNetworkPolicy, kClusterNetworkPolicyApiVersion, nullptr},
    {"Node", Kind::kNode, "v1", nullptr},
    {"List", Kind::kList, "v1", nullptr},
    {"NamespaceList", Kind::kList, "v1", "Namespace"},
    {"PodList", Kind::kList, "v1", "Pod"},
    {"NetworkPolicyList", Kind::kList, "networking.k8s.io/v1", "NetworkPolicy"},
    {"ClusterNetworkPolicyList", Kind::kList, kClusterNetworkPolicyApiVersion,
     "ClusterNetworkPolicy"},
    {"NodeList", Kind::kList, "v1", "Node"},
};

const KindInfo* FindKind(absl::string_view name) {
  for (const KindInfo& k : kKinds) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

// Loads one object (or List) found at `locator` ("document 2", "document 1: items[3]").
// `default_kind` is the item kind of a typed list, whose items may omit kind and apiVersion.
void LoadObject(LoadState& st, const YAML::Node& doc, const std::string& locator, bool in_list,
                const KindInfo* default_kind, std::vector<Object>* out) {
  Walker dw(&st, locator);  // names the document until the object is identified
  std::optional<Fields> top;
  if (!doc.IsMap()) {
    dw.Error("", absl::StrCat("must be a map (a Kubernetes object), got ", Describe(doc)));
    return;
  }
  top = dw.Map(doc, "");
  if (!top) return;
  const KindInfo* info = default_kind;
  YAML::Node kind_node = top->Get("kind");
  if (!kind_node.IsNull() || !default_kind) {
    std::optional<std::string> kind = dw.String(kind_node, "kind");
    if (!kind) {
      if (kind_node.IsNull()) dw.Error("kind", "required");
      return;
    }
    info = FindKind(*kind);
    if (info == nullptr || (in_list && info->kind == Kind::kList)) {
      dw.Error("", absl::StrCat("unsupported kind ", Show(*kind),
                                " (supported: Namespace, Pod, NetworkPolicy, "
                                "ClusterNetworkPolicy, Node",
                                in_list ? ")" : ", List)"));
      return;
    }
  }

  // Name the object in messages as soon as its name is known.
  std::string ref = locator;
  if (info->kind != Kind::kList) {
    ref = absl::StrCat(locator, ": ", KindLower(info->kind));
    YAML::Node md = top->Get("metadata");
    if (md.IsMap()) {
      std::string name, ns = st.options->default_namespace;
      for (auto it = md.begin(); it != md.end(); ++it) {
        const YAML::Node key = it->first, value = it->second;
        if (!key.IsScalar() || !value.IsScalar() || Resolve(value) != ScalarType::kString) {
          continue;
        }
        if (key.Scalar() == "name" && name.empty()) name = value.Scalar();
        if (key.Scalar() == "namespace") ns = value.Scalar();
      }
      if (!name.empty()) {
        bool cluster_scoped = info->kind == Kind::kNamespace ||
                              info->kind == Kind::kClusterNetworkPolicy ||
                              info->kind == Kind::kNode;
        ref = cluster_scoped ? absl::StrCat(KindLower(info->kind), " ", Clip(name))
                             : absl::StrCat(KindLower(info->kind), " ", Clip(ns), "/", Clip(name));
      }
    }
  }
  Walker w(&st, ref);

  YAML::Node api = top->Get("apiVersion");
  if (!api.IsNull() || !default_kind) {
    std::optional<std::string> version = w.String(api, "apiVersion");
    if (!version && api.IsNull()) w.Error("apiVersion", "required");
    if (version && *version != info->api_version) {
      w.Error("apiVersion", absl::StrCat("unsupported value ", Show(*version), " for kind ",
                                         info->name, " (supported: ", info->api_version, ")"));
    }
  }

  switch (info->kind) {
    case Kind::kList: {
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "items"});
      w.Map(top->Get("metadata"), "metadata");
      const KindInfo* item_kind = info->item_kind ? FindKind(info->item_kind) : nullptr;
      auto items = w.List(top->Get("items"), "items");
      for (size_t i = 0; items && i < items->size() && !st.aborted; ++i) {
        LoadObject(st, (*items)[i], Index(absl::StrCat(locator, ": items"), i), true, item_kind,
                   out);
      }
      return;
    }
    case Kind::kNamespace: {
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "spec", "status"});
      Namespace ns;
      load::ParseNamespace(w, *top, &ns);
      out->push_back(Object{std::move(ns)});
      return;
    }
    case Kind::kPod: {
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "spec", "status"});
      Pod pod;
      load::ParsePod(w, *top, &pod);
      out->push_back(Object{std::move(pod)});
      return;
    }
    case Kind::kNetworkPolicy: {
      // `status` existed in networking.k8s.io/v1 from 1.24 to 1.27; exports may still carry it.
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "spec", "status"});
      NetworkPolicy np;
      load::ParseNetworkPolicy(w, *top, &np);
      out->push_back(Object{std::move(np)});
      return;
    }
    case Kind::kClusterNetworkPolicy: {
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "spec", "status"});
      ClusterNetworkPolicy cnp;
      load::ParseClusterNetworkPolicy(w, *top, &cnp);
      out->push_back(Object{std::move(cnp)});
      return;
    }
    case Kind::kNode: {
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "spec", "status"});
      Node node;
      load::ParseNode(w, *top, &node);
      out->push_back(Object{std::move(node)});
      return;
    }
  }
}

}  // namespace

absl::StatusOr<LoadResult> LoadYaml(absl::string_view text, const LoadOptions& options) {
  LoadResult result;
  LoadState st;
  st.options = &options;
  st.warnings = &result.warnings;
  st.max_nodes = load::kNodesPerByte * text.size() + load::kNodeSlack;
  if (absl::Status ns = ValidateDnsLabel("default namespace", options.default_namespace);
      !ns.ok()) {
    return absl::InvalidArgumentError(st.Prefix(std::string(ns.message())));
  }
  if (text.size() > options.max_bytes) {
    return load::TooLarge(st.Prefix(""), text.size(), options.max_bytes);
  }
  std::string copy(text);
  std::vector<int> starts;
  if (std::string problem = yaml_stream::CheckSyntax(copy, &starts); !problem.empty()) {
    return absl::InvalidArgumentError(st.Prefix(problem));
  }
  // One document's node tree at a time where the stream can be cut at document starts (a
  // manifest of thousands of objects would otherwise hold all their trees at once), else all.
  const std::vector<size_t> offsets = yaml_stream::DocumentOffsets(copy, starts);
  std::vector<YAML::Node> docs;
  if (offsets.empty()) {
    try {
      docs = YAML::LoadAll(copy);
    } catch (const std::exception& e) {  // not expected after CheckSyntax passed
      return absl::InvalidArgumentError(st.Prefix(e.what()));
    }
  }
  const size_t count = offsets.empty() ? docs.size() : offsets.size();
  for (size_t i = 0; i < count && !st.aborted; ++i) {
    std::optional<YAML::Node> own;  // document i's tree when parsed here, freed after its turn
    if (!offsets.empty()) {
      try {
        yaml_stream::ViewBuf buf(copy.data() + offsets[i], copy.data() + copy.size());
        std::istream in(&buf);
        own.emplace(YAML::Load(in));       // the first document from there: document i
      } catch (const std::exception& e) {  // not expected after CheckSyntax passed
        return absl::InvalidArgumentError(st.Prefix(e.what()));
      }
    }
    const YAML::Node& doc = own ? *own : docs[i];
    if (doc.IsNull()) continue;  // empty document, e.g. a trailing "---"
    std::string locator = absl::StrCat("document ", i + 1);
    try {
      LoadObject(st, doc, locator, false, nullptr, &result.objects);
    } catch (const std::exception& e) {
      st.AddError(st.Prefix(absl::StrCat(locator, ": unreadable: ", e.what())));
    }
  }
  if (st.suppressed_warnings > 0) {
    result.warnings.push_back(
        st.Prefix(absl::StrCat("... and ", st.suppressed_warnings, " more warnings")));
  }
  if (!st.errors.empty()) {
    std::string msg = absl::StrJoin(st.errors, "\n");
    if (st.suppressed_errors > 0) {
      absl::StrAppend(&msg, "\n... and ", st.suppressed_errors, " more errors");
    }
    return absl::InvalidArgumentError(msg);
  }
  return result;
}

}  // namespace netpol
