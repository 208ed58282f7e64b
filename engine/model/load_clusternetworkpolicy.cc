// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2): every field, as the API's CRD schema
// and its validation rules check it.
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/kinds.h"
#include "engine/model/names.h"

namespace netpol::load {
namespace {

// The API's list bounds (kubebuilder MaxItems).
constexpr size_t kMaxRules = 25;
constexpr size_t kMaxPeers = 25;
constexpr size_t kMaxProtocols = 25;
constexpr size_t kMaxNetworks = 25;
constexpr size_t kMaxRuleName = 100;
constexpr size_t kMaxCidrText = 43;

// A list field with bounds: nullopt after reporting. `required`: absent is an error.
std::optional<std::vector<YAML::Node>> BoundedList(Walker& w, const Fields& f,
                                                   absl::string_view field, absl::string_view path,
                                                   bool required, size_t min_items,
                                                   size_t max_items) {
  std::string p = Child(path, field);
  YAML::Node n = f.Get(field);
  if (n.IsNull()) {
    if (required) w.Error(p, "required");
    return std::nullopt;
  }
  auto items = w.List(n, p);
  if (!items) return std::nullopt;
  if (items->size() < min_items) {
    w.Error(p, absl::StrCat("must have at least ", min_items, " item", min_items == 1 ? "" : "s"));
    return std::nullopt;
  }
  if (items->size() > max_items) {
    w.Error(p, absl::StrCat("must have at most ", max_items, " items, got ", items->size()));
    return std::nullopt;
  }
  return items;
}

// Exactly one of `allowed` set in `f` (MinProperties=1, MaxProperties=1): the one set, or "".
std::string ExactlyOne(Walker& w, const Fields& f, absl::string_view path,
                       std::initializer_list<absl::string_view> allowed) {
  std::vector<std::string> set;
  for (const auto& [k, v] : f.entries()) {
    for (absl::string_view a : allowed) {
      if (k == a && !v.IsNull()) set.push_back(k);  // `field:` alone is absent, as in JSON
    }
  }
  if (set.size() == 1) return set[0];
  std::string names;
  for (absl::string_view a : allowed) absl::StrAppend(&names, names.empty() ? "" : ", ", a);
  if (set.empty()) {
    w.Error(path, absl::StrCat("must specify exactly one of ", names));
  } else {
    w.Error(path, absl::StrCat("must specify exactly one of ", names, ", got ", set.size()));
  }
  return "";
}

// A selector that must be present (an empty map {} selects everything).
std::optional<LabelSelector> RequiredSelector(Walker& w, const Fields& f, absl::string_view field,
                                              absl::string_view path) {
  bool present = false;
  for (const auto& [k, v] : f.entries()) present |= k == field && !v.IsNull();
  if (!present) {
    w.Error(Child(path, field), "required");
    return std::nullopt;
  }
  return w.Selector(f.Get(field), Child(path, field));
}

std::optional<NamespacedPod> ParseNamespacedPod(Walker& w, const YAML::Node& n,
                                                const std::string& path) {
  std::optional<Fields> f = w.Map(n, path);
  if (!f) return std::nullopt;
  w.CheckFields(*f, path, {"namespaceSelector", "podSelector"});
  NamespacedPod out;
  // namespaceSelector is optional (absent or empty: every namespace); podSelector is required.
  if (!f->Get("namespaceSelector").IsNull()) {
    auto ns = w.Selector(f->Get("namespaceSelector"), Child(path, "namespaceSelector"));
    if (!ns) return std::nullopt;
    out.namespace_selector = std::move(*ns);
  }
  auto pods = RequiredSelector(w, *f, "podSelector", path);
  if (!pods) return std::nullopt;
  out.pod_selector = std::move(*pods);
  return out;
}

enum class PeerKind { kSubject, kIngress, kEgress };

// A subject or peer: exactly one field. false after reporting.
bool ParseCnpPeer(Walker& w, const YAML::Node& n, const std::string& path, PeerKind kind,
                  CnpPeer* out) {
  std::optional<Fields> f = w.Map(n, path);
  if (!f) return false;
  std::string field;
  if (kind == PeerKind::kEgress) {
    w.CheckFields(*f, path, {"namespaces", "pods", "nodes", "networks", "domainNames"});
    if (!f->Get("domainNames").IsNull()) {
      w.Error(Child(path, "domainNames"),
              "not supported: netpol does not match domain names (use networks)");
      return false;
    }
    field = ExactlyOne(w, *f, path, {"namespaces", "pods", "nodes", "networks"});
  } else {
    w.CheckFields(*f, path, {"namespaces", "pods"});
    field = ExactlyOne(w, *f, path, {"namespaces", "pods"});
  }
  if (field.empty()) return false;
  std::string p = Child(path, field);
  YAML::Node value = f->Get(field);
  if (field == "namespaces" || field == "nodes") {
    auto sel = w.Selector(value, p);
    if (!sel) return false;
    (field == "nodes" ? out->nodes : out->namespaces) = std::move(*sel);
    return true;
  }
  if (field == "pods") {
    auto pods = ParseNamespacedPod(w, value, p);
    if (!pods) return false;
    out->pods = std::move(*pods);
    return true;
  }
  // networks: a set of 1-25 CIDRs.
  auto nets = BoundedList(w, *f, "networks", path, true, 1, kMaxNetworks);
  if (!nets) return false;
  bool good = true;
  std::set<std::string> seen;
  for (size_t i = 0; i < nets->size() && w.ok(); ++i) {
    std::string np = Index(p, i);
    if ((*nets)[i].IsScalar() && (*nets)[i].Scalar().size() > kMaxCidrText) {
      w.Error(np, absl::StrCat("must be no more than ", kMaxCidrText, " characters"));
      good = false;
      continue;
    }
    std::optional<Cidr> c = w.CidrField((*nets)[i], np);
    if (!c) {
      good = false;
      continue;
    }
    if (!seen.insert(c->ToString()).second) {
      w.Error(np, absl::StrCat("duplicate value ", Show(c->ToString())));
      good = false;
      continue;
    }
    out->networks.push_back(*c);
  }
  return good;
}

// A Port: exactly one of number/range. false after reporting.
bool ParseCnpPortValue(Walker& w, const YAML::Node& n, const std::string& path, CnpPort* out) {
  std::optional<Fields> f = w.Map(n, path);
  if (!f) return false;
  w.CheckFields(*f, path, {"number", "range"});
  std::string field = ExactlyOne(w, *f, path, {"number", "range"});
  if (field == "number") {
    auto v = w.Int(f->Get("number"), Child(path, "number"), 1, 65535);
    if (!v) return false;
    out->port = static_cast<int32_t>(*v);
    return true;
  }
  if (field != "range") return false;
  std::string rpath = Child(path, "range");
  std::optional<Fields> r = w.Map(f->Get("range"), rpath);
  if (!r) return false;
  w.CheckFields(*r, rpath, {"start", "end"});
  std::optional<int64_t> start, end;
  for (const char* bound : {"start", "end"}) {
    std::string bp = Child(rpath, bound);
    YAML::Node b = r->Get(bound);
    if (b.IsNull()) {
      w.Error(bp, "required");
      continue;
    }
    (bound[0] == 's' ? start : end) = w.Int(b, bp, 1, 65535);
  }
  if (!start || !end) return false;
  if (*start >= *end) {
    w.Error(rpath, absl::StrCat("start must be less than end, got ", *start, " and ", *end));
    return false;
  }
  out->port = static_cast<int32_t>(*start);
  out->end_port = static_cast<int32_t>(*end);
  return true;
}

// One `protocols` entry: exactly one of tcp/udp/sctp/destinationNamedPort.
bool ParseCnpProtocol(Walker& w, const YAML::Node& n, const std::string& path, CnpPort* out) {
  std::optional<Fields> f = w.Map(n, path);
  if (!f) return false;
  w.CheckFields(*f, path, {"tcp", "udp", "sctp", "destinationNamedPort"});
  std::string field = ExactlyOne(w, *f, path, {"tcp", "udp", "sctp", "destinationNamedPort"});
  if (field.empty()) return false;
  std::string p = Child(path, field);
  if (field == "destinationNamedPort") {
    auto name = w.String(f->Get(field), p);
    if (!name) {
      if (f->Get(field).IsNull()) w.Error(p, "must be a string, got null");
      return false;
    }
    std::string problem = PortNameProblem(*name);
    if (!problem.empty()) {
      w.Error(p, absl::StrCat("invalid port name ", Show(*name), ": ", problem));
      return false;
    }
    out->named_port = *name;
    return true;
  }
  out->protocol = field == "tcp"   ? Protocol::kTCP
                  : field == "udp" ? Protocol::kUDP
                                   : Protocol::kSCTP;
  std::optional<Fields> proto = w.Map(f->Get(field), p);
  if (!proto) return false;
  w.CheckFields(*proto, p, {"destinationPort"});
  YAML::Node dport = proto->Get("destinationPort");
  if (dport.IsNull()) {
    // MinProperties=1: a protocol without a port is not expressible in v1alpha2.
    w.Error(Child(p, "destinationPort"), "required");
    return false;
  }
  return ParseCnpPortValue(w, dport, Child(p, "destinationPort"), out);
}

void ParseCnpRules(Walker& w, const Fields& spec, bool ingress, std::vector<CnpRule>* out) {
  const char* field = ingress ? "ingress" : "egress";
  const char* peers_field = ingress ? "from" : "to";
  auto rules = BoundedList(w, spec, field, "spec", false, 0, kMaxRules);
  std::string path = Child("spec", field);
  for (size_t i = 0; rules && i < rules->size() && w.ok(); ++i) {
    std::string rpath = Index(path, i);
    std::optional<Fields> f = w.Map((*rules)[i], rpath);
    if (!f) continue;
    w.CheckFields(*f, rpath, {"name", "action", peers_field, "protocols"});
    CnpRule rule;
    if (auto name = w.String(f->Get("name"), Child(rpath, "name"))) {
      if (name->size() > kMaxRuleName) {
        w.Error(Child(rpath, "name"),
                absl::StrCat("must be no more than ", kMaxRuleName, " characters"));
      }
      rule.name = *name;
    }
    if (auto action = w.RequiredString(*f, "action", rpath)) {
      if (*action == "Accept") {
        rule.action = CnpAction::kAccept;
      } else if (*action == "Deny") {
        rule.action = CnpAction::kDeny;
      } else if (*action == "Pass") {
        rule.action = CnpAction::kPass;
      } else {
        w.Error(Child(rpath, "action"), absl::StrCat("unsupported value ", Show(*action),
                                                     " (supported: Accept, Deny, Pass)"));
      }
    }
    auto peers = BoundedList(w, *f, peers_field, rpath, true, 1, kMaxPeers);
    std::string ppath = Child(rpath, peers_field);
    bool address_peer = false;
    for (size_t j = 0; peers && j < peers->size() && w.ok(); ++j) {
      CnpPeer peer;
      if (!ParseCnpPeer(w, (*peers)[j], Index(ppath, j),
                        ingress ? PeerKind::kIngress : PeerKind::kEgress, &peer)) {
        continue;
      }
      address_peer |= peer.nodes.has_value() || !peer.networks.empty();
      rule.peers.push_back(std::move(peer));
    }
    auto protocols = BoundedList(w, *f, "protocols", rpath, false, 1, kMaxProtocols);
    std::string protopath = Child(rpath, "protocols");
    bool named = false;
    for (size_t j = 0; protocols && j < protocols->size() && w.ok(); ++j) {
      CnpPort port;
      if (!ParseCnpProtocol(w, (*protocols)[j], Index(protopath, j), &port)) continue;
      named |= port.named_port.has_value();
      rule.ports.push_back(std::move(port));
    }
    if (address_peer && named) {
      w.Error(rpath,
              "networks and nodes peers cannot be used with destinationNamedPort (addresses have "
              "no named ports)");
    }
    out->push_back(std::move(rule));
  }
}

}  // namespace

void ParseClusterNetworkPolicy(Walker& w, const Fields& top, ClusterNetworkPolicy* cnp) {
  Meta meta;
  ParseMeta(w, top.Get("metadata"),
            MetaRules{/*dns_label_name=*/false, /*namespaced=*/false, /*object_meta_fields=*/true},
            &meta);
  cnp->name = meta.name;
  if (top.Get("spec").IsNull()) {
    w.Error("spec", "required");
    return;
  }
  std::optional<Fields> spec = w.Map(top.Get("spec"), "spec");
  if (!spec) return;
  w.CheckFields(*spec, "spec", {"tier", "priority", "subject", "ingress", "egress"});
  if (auto tier = w.RequiredString(*spec, "tier", "spec")) {
    if (*tier == "Admin") {
      cnp->tier = CnpTier::kAdmin;
    } else if (*tier == "Baseline") {
      cnp->tier = CnpTier::kBaseline;
    } else {
      w.Error("spec.tier",
              absl::StrCat("unsupported value ", Show(*tier), " (supported: Admin, Baseline)"));
    }
  }
  YAML::Node priority = spec->Get("priority");
  if (priority.IsNull()) {
    w.Error("spec.priority", "required");
  } else if (auto p = w.Int(priority, "spec.priority", 0, 1000)) {
    cnp->priority = static_cast<int32_t>(*p);
  }
  if (spec->Get("subject").IsNull()) {
    w.Error("spec.subject", "required");
  } else {
    ParseCnpPeer(w, spec->Get("subject"), "spec.subject", PeerKind::kSubject, &cnp->subject);
  }
  ParseCnpRules(w, *spec, true, &cnp->ingress);
  ParseCnpRules(w, *spec, false, &cnp->egress);
}

}  // namespace netpol::load
