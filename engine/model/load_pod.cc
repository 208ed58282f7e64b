// Pod (v1): the fields netpol reads; the rest of the schema is accepted and ignored.
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

void ParsePod(Walker& w, const Fields& top, Pod* pod) {
  Meta meta;
  ParseMeta(w, top.Get("metadata"), MetaRules{}, &meta);
  pod->name = meta.name;
  pod->namespace_name = meta.namespace_name;
  pod->labels = std::move(meta.labels);

  if (std::optional<Fields> spec = w.Map(top.Get("spec"), "spec")) {
    if (auto node = w.String(spec->Get("nodeName"), "spec.nodeName")) {
      if (!IsDnsSubdomainText(*node)) {
        w.Error("spec.nodeName",
                absl::StrCat("invalid node name ", Show(*node), ": ", kDnsSubdomainRule));
      }
      pod->node_name = *node;
    }
    if (auto host = w.Bool(spec->Get("hostNetwork"), "spec.hostNetwork")) {
      pod->host_network = *host;
    }
    std::set<std::string> names;
    auto containers = w.List(spec->Get("containers"), "spec.containers");
    for (size_t i = 0; containers && i < containers->size() && w.ok(); ++i) {
      std::string cpath = Index("spec.containers", i);
      std::optional<Fields> c = w.Map((*containers)[i], cpath);
      if (!c) continue;
      std::string ppath = Child(cpath, "ports");
      auto ports = w.List(c->Get("ports"), ppath);
      for (size_t j = 0; ports && j < ports->size() && w.ok(); ++j) {
        std::string p = Index(ppath, j);
        std::optional<Fields> port = w.Map((*ports)[j], p);
        if (!port) continue;
        ContainerPort cp;
        if (auto name = w.String(port->Get("name"), Child(p, "name"))) {
          std::string problem = PortNameProblem(*name);
          if (!problem.empty()) {
            w.Error(Child(p, "name"),
                    absl::StrCat("invalid port name ", Show(*name), ": ", problem));
          } else if (!names.insert(*name).second) {
            w.Error(Child(p, "name"), absl::StrCat("duplicate port name ", Show(*name)));
          }
          cp.name = *name;
        }
        YAML::Node number = port->Get("containerPort");
        if (number.IsNull()) {
          w.Error(Child(p, "containerPort"), "required");
        } else if (auto n = w.Int(number, Child(p, "containerPort"), 1, 65535)) {
          cp.container_port = static_cast<int32_t>(*n);
        }
        if (auto proto = w.ProtocolField(port->Get("protocol"), Child(p, "protocol"))) {
          cp.protocol = *proto;
        }
        pod->ports.push_back(std::move(cp));
      }
    }
  }

  if (std::optional<Fields> status = w.Map(top.Get("status"), "status")) {
    auto add = [&](const std::string& text, const std::string& path) {
      auto ip = IpAddr::Parse(text);
      if (!ip.ok()) {
        w.Error(path, std::string(ip.status().message()));
        return;
      }
      if (absl::Status mapped = RefuseV4Mapped(*ip); !mapped.ok()) {
        w.Error(path, std::string(mapped.message()));
        return;
      }
      if (std::find(pod->ips.begin(), pod->ips.end(), *ip) != pod->ips.end()) return;
      for (const IpAddr& other : pod->ips) {
        if (other.family == ip->family) {
          w.Error(path, absl::StrCat("a pod may have at most one address per family; ",
                                     other.ToString(), " and ", ip->ToString(), " conflict"));
          return;
        }
      }
      pod->ips.push_back(*ip);
    };
    if (auto ip = w.String(status->Get("podIP"), "status.podIP")) add(*ip, "status.podIP");
    auto ips = w.List(status->Get("podIPs"), "status.podIPs");
    for (size_t i = 0; ips && i < ips->size() && w.ok(); ++i) {
      std::string p = Index("status.podIPs", i);
      std::optional<Fields> entry = w.Map((*ips)[i], p);
      if (!entry) continue;
      if (auto ip = w.RequiredString(*entry, "ip", p)) add(*ip, Child(p, "ip"));
    }
  }
}

}  // namespace netpol::load
