// NetworkPolicy (networking.k8s.io/v1): every field, as the API server validates it.
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

using yaml11::Describe;
using yaml11::Resolve;
using yaml11::ScalarType;

namespace {

void ParsePolicyPort(Walker& w, const YAML::Node& n, const std::string& path, PolicyPort* out) {
  std::optional<Fields> f = w.Map(n, path);
  if (!f) return;
  w.CheckFields(*f, path, {"protocol", "port", "endPort"});
  if (auto proto = w.ProtocolField(f->Get("protocol"), Child(path, "protocol"))) {
    out->protocol = *proto;
  }
  std::string ppath = Child(path, "port");
  YAML::Node port = f->Get("port");
  bool port_ok = true;
  if (!port.IsNull() && w.Visit(ppath)) {
    ScalarType t = port.IsScalar() ? Resolve(port) : ScalarType::kNull;
    if (port.IsScalar() && t == ScalarType::kInt) {
      auto v = w.IntInRange(port.Scalar(), ppath, 1, 65535);
      if (v) out->port = static_cast<int32_t>(*v);
      port_ok = v.has_value();
    } else if (port.IsScalar() && t == ScalarType::kString) {
      std::string problem = PortNameProblem(port.Scalar());
      if (!problem.empty()) {
        w.Error(ppath, absl::StrCat("invalid port name ", Show(port.Scalar()), ": ", problem));
        port_ok = false;
      }
      out->named_port = port.Scalar();
    } else {
      w.Error(ppath, absl::StrCat("must be a port number or name, got ", Describe(port)));
      port_ok = false;
    }
  }
  std::string epath = Child(path, "endPort");
  YAML::Node end = f->Get("endPort");
  if (!end.IsNull()) {
    auto e = w.Int(end, epath, 1, 65535);
    if (e) {
      out->end_port = static_cast<int32_t>(*e);
      std::string problem = EndPortProblem(*out);
      if (!problem.empty() && port_ok) w.Error(epath, problem);
    }
  }
}

void ParsePeer(Walker& w, const YAML::Node& n, const std::string& path, Peer* out) {
  std::optional<Fields> f = w.Map(n, path);
  if (!f) return;
  w.CheckFields(*f, path, {"podSelector", "namespaceSelector", "ipBlock"});
  YAML::Node pod = f->Get("podSelector");
  YAML::Node ns = f->Get("namespaceSelector");
  YAML::Node ip = f->Get("ipBlock");
  if (!pod.IsNull()) out->pod_selector = w.Selector(pod, Child(path, "podSelector"));
  if (!ns.IsNull()) out->namespace_selector = w.Selector(ns, Child(path, "namespaceSelector"));
  if (!ip.IsNull()) {
    std::string ipath = Child(path, "ipBlock");
    if (std::optional<Fields> b = w.Map(ip, ipath)) {
      w.CheckFields(*b, ipath, {"cidr", "except"});
      IPBlock block;
      std::optional<Cidr> cidr = w.CidrField(b->Get("cidr"), Child(ipath, "cidr"));
      if (cidr) block.cidr = *cidr;
      std::string epath = Child(ipath, "except");
      auto except = w.List(b->Get("except"), epath);
      for (size_t i = 0; except && i < except->size() && w.ok(); ++i) {
        std::string p = Index(epath, i);
        std::optional<Cidr> e = w.CidrField((*except)[i], p);
        if (!e) continue;
        if (cidr && !(cidr->Contains(*e) && e->prefix > cidr->prefix)) {
          w.Error(p, absl::StrCat("must be strictly inside cidr ", cidr->ToString()));
        }
        block.except.push_back(*e);
      }
      out->ip_block = std::move(block);
    }
  }
  if (pod.IsNull() && ns.IsNull() && ip.IsNull()) {
    w.Error(path, "must specify at least one of podSelector, namespaceSelector, ipBlock");
  } else if (!ip.IsNull() && (!pod.IsNull() || !ns.IsNull())) {
    w.Error(path, "ipBlock may not be combined with podSelector or namespaceSelector");
  }
}

void ParseRules(Walker& w, const YAML::Node& n, const std::string& path, bool ingress,
                std::vector<Rule>* out) {
  const char* peers_field = ingress ? "from" : "to";
  auto rules = w.List(n, path);
  for (size_t i = 0; rules && i < rules->size() && w.ok(); ++i) {
    std::string rpath = Index(path, i);
    std::optional<Fields> f = w.Map((*rules)[i], rpath);
    if (!f) continue;
    w.CheckFields(*f, rpath, {"ports", peers_field});
    Rule rule;
    std::string ppath = Child(rpath, "ports");
    auto ports = w.List(f->Get("ports"), ppath);
    for (size_t j = 0; ports && j < ports->size() && w.ok(); ++j) {
      PolicyPort port;
      ParsePolicyPort(w, (*ports)[j], Index(ppath, j), &port);
      rule.ports.push_back(std::move(port));
    }
    std::string peer_path = Child(rpath, peers_field);
    auto peers = w.List(f->Get(peers_field), peer_path);
    for (size_t j = 0; peers && j < peers->size() && w.ok(); ++j) {
      Peer peer;
      ParsePeer(w, (*peers)[j], Index(peer_path, j), &peer);
      rule.peers.push_back(std::move(peer));
    }
    out->push_back(std::move(rule));
  }
}

// metadata.annotations: netpol reads kLogAllowedAnnotation ("true" or "false") and ignores the
// others. Any other value of it is refused when strict (a manifest) and ignored with a warning
// otherwise (an object the API server already holds: Kubernetes takes any string).
void ParseAnnotations(Walker& w, const YAML::Node& metadata, NetworkPolicy* np) {
  if (!metadata.IsMap()) return;  // ParseMeta reported it
  const YAML::Node annotations = metadata["annotations"];
  if (!annotations || annotations.IsNull()) return;
  std::optional<Fields> f = w.Map(annotations, "metadata.annotations");
  if (!f) return;
  const YAML::Node value = f->Get(kLogAllowedAnnotation);
  if (value.IsNull()) return;
  const std::string path = PathKey("metadata.annotations", kLogAllowedAnnotation);
  std::optional<std::string> v = w.String(value, path);
  if (!v) return;
  if (*v == "true") {
    np->log_allowed = true;
  } else if (*v != "false") {
    w.Unusable(path, absl::StrCat("must be \"true\" or \"false\", got ", Show(*v)));
  }
}

}  // namespace

void ParseNetworkPolicy(Walker& w, const Fields& top, NetworkPolicy* np) {
  Meta meta;
  ParseMeta(w, top.Get("metadata"),
            MetaRules{/*dns_label_name=*/false, /*namespaced=*/true, /*object_meta_fields=*/true},
            &meta);
  np->name = meta.name;
  np->namespace_name = meta.namespace_name;
  ParseAnnotations(w, top.Get("metadata"), np);
  std::optional<Fields> spec = w.Map(top.Get("spec"), "spec");
  if (!spec) return;
  w.CheckFields(*spec, "spec", {"podSelector", "ingress", "egress", "policyTypes"});
  if (auto sel = w.Selector(spec->Get("podSelector"), "spec.podSelector")) {
    np->pod_selector = std::move(*sel);
  }
  ParseRules(w, spec->Get("ingress"), "spec.ingress", true, &np->ingress);
  ParseRules(w, spec->Get("egress"), "spec.egress", false, &np->egress);
  auto types = w.List(spec->Get("policyTypes"), "spec.policyTypes");
  if (!types) return;
  if (types->empty()) {
    // Defaulting, as the API server does when policyTypes is absent or empty.
    np->ingress_type = true;
    np->egress_type = !np->egress.empty();
    return;
  }
  if (types->size() > 2) {
    w.Error("spec.policyTypes", "may not have more than 2 entries");
  }
  for (size_t i = 0; i < types->size() && w.ok(); ++i) {
    std::string p = Index("spec.policyTypes", i);
    std::optional<std::string> t = w.String((*types)[i], p);
    if (!t) {
      if ((*types)[i].IsNull()) w.Error(p, "must be a string, got null");
      continue;
    }
    if (*t == "Ingress") {
      np->ingress_type = true;
    } else if (*t == "Egress") {
      np->egress_type = true;
    } else {
      w.Error(p, absl::StrCat("unsupported value ", Show(*t), " (supported: Ingress, Egress)"));
    }
  }
}

}  // namespace netpol::load
