// Node (v1): the fields netpol reads (labels, status.addresses); the rest of the schema is
// accepted and ignored.
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "engine/model/kinds.h"

namespace netpol::load {

void ParseNode(Walker& w, const Fields& top, Node* node) {
  Meta meta;
  ParseMeta(w, top.Get("metadata"),
            MetaRules{/*dns_label_name=*/false, /*namespaced=*/false, /*object_meta_fields=*/false},
            &meta);
  node->name = meta.name;
  node->labels = std::move(meta.labels);
  std::optional<Fields> status = w.Map(top.Get("status"), "status");
  if (!status) return;
  auto addresses = w.List(status->Get("addresses"), "status.addresses");
  for (size_t i = 0; addresses && i < addresses->size() && w.ok(); ++i) {
    std::string p = Index("status.addresses", i);
    std::optional<Fields> entry = w.Map((*addresses)[i], p);
    if (!entry) continue;
    auto type = w.RequiredString(*entry, "type", p);
    auto address = w.RequiredString(*entry, "address", p);
    if (!type || !address) continue;
    // Hostname, InternalDNS and ExternalDNS entries are names, not addresses.
    if (*type != "InternalIP" && *type != "ExternalIP") continue;
    auto ip = IpAddr::Parse(*address);
    if (!ip.ok()) {
      w.Error(Child(p, "address"), std::string(ip.status().message()));
      continue;
    }
    if (absl::Status mapped = RefuseV4Mapped(*ip); !mapped.ok()) {
      w.Error(Child(p, "address"), std::string(mapped.message()));
      continue;
    }
    bool known = false;
    for (const IpAddr& other : node->ips) known |= other == *ip;
    if (!known) node->ips.push_back(*ip);
  }
}

}  // namespace netpol::load
