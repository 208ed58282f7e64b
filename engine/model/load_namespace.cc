// Namespace (v1).
#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/kinds.h"
#include "engine/model/names.h"
#include "engine/model/yaml_scalar.h"

namespace netpol::load {

void ParseNamespace(Walker& w, const Fields& top, Namespace* ns) {
  Meta meta;
  ParseMeta(w, top.Get("metadata"),
            MetaRules{/*dns_label_name=*/true, /*namespaced=*/false, /*object_meta_fields=*/false},
            &meta);
  ns->name = meta.name;
  ns->labels = std::move(meta.labels);
  // Like the API server: the label always carries the namespace's own name.
  ns->labels[kNamespaceNameLabel] = ns->name;
}

}  // namespace netpol::load
