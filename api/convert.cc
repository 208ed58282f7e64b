// Model <-> netpol.v1 conversions. See convert.h.
#include "api/convert.h"

#include <limits>

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace netpol::api {
namespace {

using google::protobuf::RepeatedPtrField;

void FillMeta(const std::string& ns, const std::string& name, const Labels& labels,
              v1::ObjectMeta* meta) {
  meta->set_name(name);
  meta->set_namespace_(ns);
  for (const auto& [k, v] : labels) (*meta->mutable_labels())[k] = v;
}

Labels LabelsOf(const google::protobuf::Map<std::string, std::string>& m) {
  return Labels(m.begin(), m.end());
}

void FillSelector(const LabelSelector& s, v1::LabelSelector* out) {
  for (const auto& [k, v] : s.match_labels) (*out->mutable_match_labels())[k] = v;
  for (const LabelSelectorRequirement& r : s.match_expressions) {
    v1::LabelSelectorRequirement* o = out->add_match_expressions();
    o->set_key(r.key);
    switch (r.op) {
      case LabelSelectorRequirement::Op::kIn:
        o->set_operator_(v1::LabelSelectorRequirement::In);
        break;
      case LabelSelectorRequirement::Op::kNotIn:
        o->set_operator_(v1::LabelSelectorRequirement::NotIn);
        break;
      case LabelSelectorRequirement::Op::kExists:
        o->set_operator_(v1::LabelSelectorRequirement::Exists);
        break;
      case LabelSelectorRequirement::Op::kDoesNotExist:
        o->set_operator_(v1::LabelSelectorRequirement::DoesNotExist);
        break;
    }
    for (const std::string& v : r.values) o->add_values(v);
  }
}

void FillPort(const PolicyPort& p, v1::NetworkPolicyPort* out) {
  out->set_protocol(ToApi(p.protocol));
  if (p.port) out->set_port(*p.port);
  if (p.named_port) out->set_named_port(*p.named_port);
  if (p.end_port) out->set_end_port(*p.end_port);
}

void FillPeer(const Peer& p, v1::NetworkPolicyPeer* out) {
  if (p.pod_selector) FillSelector(*p.pod_selector, out->mutable_pod_selector());
  if (p.namespace_selector) FillSelector(*p.namespace_selector, out->mutable_namespace_selector());
  if (p.ip_block) {
    out->mutable_ip_block()->set_cidr(p.ip_block->cidr.ToString());
    for (const Cidr& c : p.ip_block->except) out->mutable_ip_block()->add_except(c.ToString());
  }
}

void FillNamespacedPod(const NamespacedPod& p, v1::NamespacedPod* out) {
  FillSelector(p.namespace_selector, out->mutable_namespace_selector());
  FillSelector(p.pod_selector, out->mutable_pod_selector());
}

// The namespaces/pods side of a CNP subject or peer (every message kind has both fields).
template <typename M>
void FillCnpSelectors(const CnpPeer& p, M* out) {
  if (p.namespaces) FillSelector(*p.namespaces, out->mutable_namespaces());
  if (p.pods) FillNamespacedPod(*p.pods, out->mutable_pods());
}

void FillCnpEgressPeer(const CnpPeer& p, v1::ClusterNetworkPolicyEgressPeer* out) {
  FillCnpSelectors(p, out);
  if (p.nodes) FillSelector(*p.nodes, out->mutable_nodes());
  for (const Cidr& c : p.networks) out->add_networks(c.ToString());
}

void FillCnpPort(const CnpPort& p, v1::ClusterNetworkPolicyProtocol* out) {
  if (p.named_port) {
    out->set_destination_named_port(*p.named_port);
    return;
  }
  v1::ProtocolPort* pp = nullptr;
  switch (p.protocol.value_or(Protocol::kTCP)) {
    case Protocol::kTCP:
      pp = out->mutable_tcp();
      break;
    case Protocol::kUDP:
      pp = out->mutable_udp();
      break;
    case Protocol::kSCTP:
      pp = out->mutable_sctp();
      break;
  }
  v1::Port* port = pp->mutable_destination_port();
  if (p.end_port != 0) {
    port->mutable_range()->set_start(p.port);
    port->mutable_range()->set_end(p.end_port);
  } else {
    port->set_number(p.port);
  }
}

v1::ClusterNetworkPolicyRuleAction ActionToApi(CnpAction a) {
  switch (a) {
    case CnpAction::kAccept:
      return v1::Accept;
    case CnpAction::kDeny:
      return v1::Deny;
    case CnpAction::kPass:
      return v1::Pass;
  }
  return v1::RULE_ACTION_UNSPECIFIED;
}

template <typename RuleMsg>
void FillCnpRuleHead(const CnpRule& r, RuleMsg* out) {
  out->set_name(r.name);
  out->set_action(ActionToApi(r.action));
  for (const CnpPort& p : r.ports) FillCnpPort(p, out->add_protocols());
}

// ---- trusted API -> model ----

absl::StatusOr<LabelSelector> SelectorFrom(const v1::LabelSelector& s, const std::string& path) {
  LabelSelector out;
  out.match_labels = LabelsOf(s.match_labels());
  for (int i = 0; i < s.match_expressions_size(); ++i) {
    const v1::LabelSelectorRequirement& r = s.match_expressions(i);
    LabelSelectorRequirement o;
    o.key = r.key();
    switch (r.operator_()) {
      case v1::LabelSelectorRequirement::In:
        o.op = LabelSelectorRequirement::Op::kIn;
        break;
      case v1::LabelSelectorRequirement::NotIn:
        o.op = LabelSelectorRequirement::Op::kNotIn;
        break;
      case v1::LabelSelectorRequirement::Exists:
        o.op = LabelSelectorRequirement::Op::kExists;
        break;
      case v1::LabelSelectorRequirement::DoesNotExist:
        o.op = LabelSelectorRequirement::Op::kDoesNotExist;
        break;
      default:
        return absl::DataLossError(
            absl::StrCat(path, ".matchExpressions[", i, "].operator: unknown operator"));
    }
    o.values.assign(r.values().begin(), r.values().end());
    out.match_expressions.push_back(std::move(o));
  }
  return out;
}

absl::StatusOr<Rule> RuleFrom(const RepeatedPtrField<v1::NetworkPolicyPort>& ports,
                              const RepeatedPtrField<v1::NetworkPolicyPeer>& peers,
                              const std::string& path, const char* peers_name) {
  Rule rule;
  for (const v1::NetworkPolicyPort& p : ports) {
    PolicyPort o;
    o.protocol = FromApi(p.protocol());
    if (p.port_value_case() == v1::NetworkPolicyPort::kPort) o.port = p.port();
    if (p.port_value_case() == v1::NetworkPolicyPort::kNamedPort) o.named_port = p.named_port();
    if (p.end_port() != 0) o.end_port = p.end_port();
    rule.ports.push_back(std::move(o));
  }
  for (int i = 0; i < peers.size(); ++i) {
    const v1::NetworkPolicyPeer& p = peers.Get(i);
    const std::string ppath = absl::StrCat(path, ".", peers_name, "[", i, "]");
    Peer o;
    if (p.has_pod_selector()) {
      ASSIGN_OR_RETURN(o.pod_selector, SelectorFrom(p.pod_selector(), ppath + ".podSelector"));
    }
    if (p.has_namespace_selector()) {
      ASSIGN_OR_RETURN(o.namespace_selector,
                       SelectorFrom(p.namespace_selector(), ppath + ".namespaceSelector"));
    }
    if (p.has_ip_block()) {
      IPBlock b;
      auto cidr = Cidr::Parse(p.ip_block().cidr());
      if (!cidr.ok()) {
        return absl::DataLossError(
            absl::StrCat(ppath, ".ipBlock.cidr: ", cidr.status().message()));
      }
      b.cidr = *cidr;
      for (int j = 0; j < p.ip_block().except_size(); ++j) {
        auto e = Cidr::Parse(p.ip_block().except(j));
        if (!e.ok()) {
          return absl::DataLossError(
              absl::StrCat(ppath, ".ipBlock.except[", j, "]: ", e.status().message()));
        }
        b.except.push_back(*e);
      }
      o.ip_block = std::move(b);
    }
    rule.peers.push_back(std::move(o));
  }
  return rule;
}

absl::StatusOr<NamespacedPod> NamespacedPodFrom(const v1::NamespacedPod& p,
                                                const std::string& path) {
  NamespacedPod out;
  ASSIGN_OR_RETURN(out.namespace_selector,
                   SelectorFrom(p.namespace_selector(), path + ".namespaceSelector"));
  ASSIGN_OR_RETURN(out.pod_selector, SelectorFrom(p.pod_selector(), path + ".podSelector"));
  return out;
}

template <typename M>
absl::Status CnpSelectorsFrom(const M& m, const std::string& path, CnpPeer* out) {
  if (m.has_namespaces()) {
    ASSIGN_OR_RETURN(out->namespaces, SelectorFrom(m.namespaces(), path + ".namespaces"));
  }
  if (m.has_pods()) {
    ASSIGN_OR_RETURN(out->pods, NamespacedPodFrom(m.pods(), path + ".pods"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CnpPort> CnpPortFrom(const v1::ClusterNetworkPolicyProtocol& p,
                                    const std::string& path) {
  CnpPort out;
  if (!p.destination_named_port().empty()) {
    out.named_port = p.destination_named_port();
    return out;
  }
  const v1::ProtocolPort* pp = nullptr;
  if (p.has_tcp()) {
    out.protocol = Protocol::kTCP;
    pp = &p.tcp();
  } else if (p.has_udp()) {
    out.protocol = Protocol::kUDP;
    pp = &p.udp();
  } else if (p.has_sctp()) {
    out.protocol = Protocol::kSCTP;
    pp = &p.sctp();
  } else {
    return absl::DataLossError(path + ": no protocol");
  }
  const v1::Port& port = pp->destination_port();
  if (port.has_range()) {
    out.port = port.range().start();
    out.end_port = port.range().end();
  } else {
    out.port = port.number();
  }
  return out;
}

template <typename RuleMsg>
absl::Status CnpRuleHeadFrom(const RuleMsg& r, const std::string& path, CnpRule* out) {
  out->name = r.name();
  switch (r.action()) {
    case v1::Accept:
      out->action = CnpAction::kAccept;
      break;
    case v1::Deny:
      out->action = CnpAction::kDeny;
      break;
    case v1::Pass:
      out->action = CnpAction::kPass;
      break;
    default:
      return absl::DataLossError(path + ".action: unknown action");
  }
  for (int i = 0; i < r.protocols_size(); ++i) {
    ASSIGN_OR_RETURN(CnpPort port,
                     CnpPortFrom(r.protocols(i), absl::StrCat(path, ".protocols[", i, "]")));
    out->ports.push_back(std::move(port));
  }
  return absl::OkStatus();
}

absl::StatusOr<ClusterNetworkPolicy> CnpFrom(const v1::ClusterNetworkPolicy& p) {
  ClusterNetworkPolicy cnp;
  cnp.name = p.metadata().name();
  const v1::ClusterNetworkPolicySpec& spec = p.spec();
  switch (spec.tier()) {
    case v1::Admin:
      cnp.tier = CnpTier::kAdmin;
      break;
    case v1::Baseline:
      cnp.tier = CnpTier::kBaseline;
      break;
    default:
      return absl::DataLossError("spec.tier: unknown tier");
  }
  cnp.priority = spec.priority();
  RETURN_IF_ERROR(CnpSelectorsFrom(spec.subject(), "spec.subject", &cnp.subject));
  for (int i = 0; i < spec.ingress_size(); ++i) {
    const auto& r = spec.ingress(i);
    const std::string path = absl::StrCat("spec.ingress[", i, "]");
    CnpRule rule;
    RETURN_IF_ERROR(CnpRuleHeadFrom(r, path, &rule));
    for (int j = 0; j < r.from_size(); ++j) {
      CnpPeer peer;
      RETURN_IF_ERROR(CnpSelectorsFrom(r.from(j), absl::StrCat(path, ".from[", j, "]"), &peer));
      rule.peers.push_back(std::move(peer));
    }
    cnp.ingress.push_back(std::move(rule));
  }
  for (int i = 0; i < spec.egress_size(); ++i) {
    const auto& r = spec.egress(i);
    const std::string path = absl::StrCat("spec.egress[", i, "]");
    CnpRule rule;
    RETURN_IF_ERROR(CnpRuleHeadFrom(r, path, &rule));
    for (int j = 0; j < r.to_size(); ++j) {
      const std::string ppath = absl::StrCat(path, ".to[", j, "]");
      CnpPeer peer;
      RETURN_IF_ERROR(CnpSelectorsFrom(r.to(j), ppath, &peer));
      if (r.to(j).has_nodes()) {
        ASSIGN_OR_RETURN(peer.nodes, SelectorFrom(r.to(j).nodes(), ppath + ".nodes"));
      }
      for (int k = 0; k < r.to(j).networks_size(); ++k) {
        auto cidr = Cidr::Parse(r.to(j).networks(k));
        if (!cidr.ok()) {
          return absl::DataLossError(
              absl::StrCat(ppath, ".networks[", k, "]: ", cidr.status().message()));
        }
        peer.networks.push_back(*cidr);
      }
      rule.peers.push_back(std::move(peer));
    }
    cnp.egress.push_back(std::move(rule));
  }
  return cnp;
}

absl::StatusOr<Node> NodeFrom(const v1::Node& n) {
  Node node;
  node.name = n.metadata().name();
  node.labels = LabelsOf(n.metadata().labels());
  for (int i = 0; i < n.status().addresses_size(); ++i) {
    auto ip = IpAddr::Parse(n.status().addresses(i).address());
    if (!ip.ok()) {
      return absl::DataLossError(
          absl::StrCat("status.addresses[", i, "].address: ", ip.status().message()));
    }
    node.ips.push_back(*ip);
  }
  return node;
}

absl::StatusOr<Object> FromApiTrustedInner(const v1::Object& object) {
  switch (object.kind_case()) {
    case v1::Object::kNamespace: {
      Namespace ns;
      ns.name = object.namespace_().metadata().name();
      ns.labels = LabelsOf(object.namespace_().metadata().labels());
      return Object{std::move(ns)};
    }
    case v1::Object::kPod: {
      const v1::Pod& p = object.pod();
      Pod pod;
      pod.namespace_name = p.metadata().namespace_();
      pod.name = p.metadata().name();
      pod.labels = LabelsOf(p.metadata().labels());
      pod.node_name = p.spec().node_name();
      pod.host_network = p.spec().host_network();
      for (const v1::Container& c : p.spec().containers()) {
        for (const v1::ContainerPort& cp : c.ports()) {
          pod.ports.push_back({cp.name(), cp.container_port(), FromApi(cp.protocol())});
        }
      }
      for (int i = 0; i < p.status().pod_ips_size(); ++i) {
        auto ip = IpAddr::Parse(p.status().pod_ips(i).ip());
        if (!ip.ok()) {
          return absl::DataLossError(
              absl::StrCat("status.podIPs[", i, "].ip: ", ip.status().message()));
        }
        pod.ips.push_back(*ip);
      }
      return Object{std::move(pod)};
    }
    case v1::Object::kNetworkPolicy: {
      const v1::NetworkPolicy& p = object.network_policy();
      NetworkPolicy np;
      np.namespace_name = p.metadata().namespace_();
      np.name = p.metadata().name();
      auto log = p.metadata().annotations().find(kLogAllowedAnnotation);
      if (log != p.metadata().annotations().end()) {
        if (log->second != "true" && log->second != "false") {
          return absl::DataLossError(
              absl::StrCat("metadata.annotations[", kLogAllowedAnnotation,
                           "]: must be \"true\" or \"false\", got \"", log->second, "\""));
        }
        np.log_allowed = log->second == "true";
      }
      ASSIGN_OR_RETURN(np.pod_selector, SelectorFrom(p.spec().pod_selector(), "spec.podSelector"));
      for (int t : p.spec().policy_types()) {
        if (t == v1::NetworkPolicySpec::Ingress) np.ingress_type = true;
        if (t == v1::NetworkPolicySpec::Egress) np.egress_type = true;
      }
      for (int i = 0; i < p.spec().ingress_size(); ++i) {
        const auto& r = p.spec().ingress(i);
        ASSIGN_OR_RETURN(Rule rule, RuleFrom(r.ports(), r.from(),
                                             absl::StrCat("spec.ingress[", i, "]"), "from"));
        np.ingress.push_back(std::move(rule));
      }
      for (int i = 0; i < p.spec().egress_size(); ++i) {
        const auto& r = p.spec().egress(i);
        ASSIGN_OR_RETURN(Rule rule, RuleFrom(r.ports(), r.to(),
                                             absl::StrCat("spec.egress[", i, "]"), "to"));
        np.egress.push_back(std::move(rule));
      }
      return Object{std::move(np)};
    }
    case v1::Object::kClusterNetworkPolicy: {
      ASSIGN_OR_RETURN(ClusterNetworkPolicy cnp, CnpFrom(object.cluster_network_policy()));
      return Object{std::move(cnp)};
    }
    case v1::Object::kNode: {
      ASSIGN_OR_RETURN(Node node, NodeFrom(object.node()));
      return Object{std::move(node)};
    }
    case v1::Object::KIND_NOT_SET:
      break;
  }
  return absl::DataLossError("object without a kind");
}

// Rewrites `namedPort: x` into Kubernetes' int-or-string `port: x` in every rule's ports.
void FixPorts(google::protobuf::Struct* spec, const char* rules_field) {
  auto it = spec->mutable_fields()->find(rules_field);
  if (it == spec->mutable_fields()->end() || !it->second.has_list_value()) return;
  for (auto& rule : *it->second.mutable_list_value()->mutable_values()) {
    if (!rule.has_struct_value()) continue;
    auto pit = rule.mutable_struct_value()->mutable_fields()->find("ports");
    if (pit == rule.mutable_struct_value()->mutable_fields()->end() ||
        !pit->second.has_list_value()) {
      continue;
    }
    for (auto& port : *pit->second.mutable_list_value()->mutable_values()) {
      if (!port.has_struct_value()) continue;
      auto* fields = port.mutable_struct_value()->mutable_fields();
      auto nit = fields->find("namedPort");
      if (nit == fields->end()) continue;
      google::protobuf::Value v = nit->second;
      fields->erase(nit);
      (*fields)["port"] = v;
    }
  }
}

}  // namespace

v1::Protocol ToApi(Protocol p) {
  switch (p) {
    case Protocol::kTCP:
      return v1::TCP;
    case Protocol::kUDP:
      return v1::UDP;
    case Protocol::kSCTP:
      return v1::SCTP;
  }
  return v1::TCP;
}

Protocol FromApi(v1::Protocol p) {
  switch (p) {
    case v1::UDP:
      return Protocol::kUDP;
    case v1::SCTP:
      return Protocol::kSCTP;
    default:
      return Protocol::kTCP;
  }
}

v1::Namespace ToApi(const Namespace& ns) {
  v1::Namespace out;
  FillMeta("", ns.name, ns.labels, out.mutable_metadata());
  return out;
}

v1::Pod ToApi(const Pod& pod) {
  v1::Pod out;
  FillMeta(pod.namespace_name, pod.name, pod.labels, out.mutable_metadata());
  out.mutable_spec()->set_node_name(pod.node_name);
  out.mutable_spec()->set_host_network(pod.host_network);
  if (!pod.ports.empty()) {
    // The model keeps the ports of all containers together; they come back as one container,
    // as ToYaml writes them.
    v1::Container* c = out.mutable_spec()->add_containers();
    c->set_name("main");
    for (const ContainerPort& p : pod.ports) {
      v1::ContainerPort* o = c->add_ports();
      o->set_name(p.name);
      o->set_container_port(p.container_port);
      o->set_protocol(ToApi(p.protocol));
    }
  }
  if (!pod.ips.empty()) out.mutable_status()->set_pod_ip(pod.ips[0].ToString());
  for (const IpAddr& ip : pod.ips) out.mutable_status()->add_pod_ips()->set_ip(ip.ToString());
  return out;
}

v1::NetworkPolicy ToApi(const NetworkPolicy& policy) {
  v1::NetworkPolicy out;
  FillMeta(policy.namespace_name, policy.name, {}, out.mutable_metadata());
  if (policy.log_allowed) (*out.mutable_metadata()->mutable_annotations())[kLogAllowedAnnotation] = "true";
  v1::NetworkPolicySpec* spec = out.mutable_spec();
  FillSelector(policy.pod_selector, spec->mutable_pod_selector());
  if (policy.ingress_type) spec->add_policy_types(v1::NetworkPolicySpec::Ingress);
  if (policy.egress_type) spec->add_policy_types(v1::NetworkPolicySpec::Egress);
  for (const Rule& r : policy.ingress) {
    v1::NetworkPolicyIngressRule* o = spec->add_ingress();
    for (const PolicyPort& p : r.ports) FillPort(p, o->add_ports());
    for (const Peer& p : r.peers) FillPeer(p, o->add_from());
  }
  for (const Rule& r : policy.egress) {
    v1::NetworkPolicyEgressRule* o = spec->add_egress();
    for (const PolicyPort& p : r.ports) FillPort(p, o->add_ports());
    for (const Peer& p : r.peers) FillPeer(p, o->add_to());
  }
  return out;
}

v1::ClusterNetworkPolicy ToApi(const ClusterNetworkPolicy& cnp) {
  v1::ClusterNetworkPolicy out;
  FillMeta("", cnp.name, {}, out.mutable_metadata());
  v1::ClusterNetworkPolicySpec* spec = out.mutable_spec();
  spec->set_tier(cnp.tier == CnpTier::kAdmin ? v1::Admin : v1::Baseline);
  spec->set_priority(cnp.priority);
  FillCnpSelectors(cnp.subject, spec->mutable_subject());
  for (const CnpRule& r : cnp.ingress) {
    v1::ClusterNetworkPolicyIngressRule* o = spec->add_ingress();
    FillCnpRuleHead(r, o);
    for (const CnpPeer& p : r.peers) FillCnpSelectors(p, o->add_from());
  }
  for (const CnpRule& r : cnp.egress) {
    v1::ClusterNetworkPolicyEgressRule* o = spec->add_egress();
    FillCnpRuleHead(r, o);
    for (const CnpPeer& p : r.peers) FillCnpEgressPeer(p, o->add_to());
  }
  return out;
}

v1::Node ToApi(const Node& node) {
  v1::Node out;
  FillMeta("", node.name, node.labels, out.mutable_metadata());
  for (const IpAddr& ip : node.ips) {
    v1::NodeAddress* a = out.mutable_status()->add_addresses();
    a->set_type("InternalIP");
    a->set_address(ip.ToString());
  }
  return out;
}

v1::Object ToApi(const Object& object) {
  v1::Object out;
  if (const Namespace* ns = object.AsNamespace()) *out.mutable_namespace_() = ToApi(*ns);
  if (const Pod* pod = object.AsPod()) *out.mutable_pod() = ToApi(*pod);
  if (const NetworkPolicy* np = object.AsNetworkPolicy()) {
    *out.mutable_network_policy() = ToApi(*np);
  }
  if (const ClusterNetworkPolicy* cnp = object.AsClusterNetworkPolicy()) {
    *out.mutable_cluster_network_policy() = ToApi(*cnp);
  }
  if (const Node* node = object.AsNode()) *out.mutable_node() = ToApi(*node);
  return out;
}

const char* KindName(v1::Kind kind) {
  switch (kind) {
    case v1::NAMESPACE:
      return "Namespace";
    case v1::POD:
      return "Pod";
    case v1::NETWORK_POLICY:
      return "NetworkPolicy";
    case v1::CLUSTER_NETWORK_POLICY:
      return "ClusterNetworkPolicy";
    case v1::NODE:
      return "Node";
    default:
      return nullptr;
  }
}

v1::Kind KindOf(const Object& object) {
  if (object.AsNamespace()) return v1::NAMESPACE;
  if (object.AsPod()) return v1::POD;
  if (object.AsClusterNetworkPolicy()) return v1::CLUSTER_NETWORK_POLICY;
  if (object.AsNode()) return v1::NODE;
  return v1::NETWORK_POLICY;
}

v1::ObjectRef RefOf(const Object& object) {
  v1::ObjectRef ref;
  ref.set_kind(KindOf(object));
  ref.set_namespace_(object.NamespaceName());
  ref.set_name(object.Name());
  return ref;
}

std::string KubectlName(const v1::ObjectRef& ref) {
  switch (ref.kind()) {
    case v1::NAMESPACE:
      return "namespace/" + ref.name();
    case v1::POD:
      return "pod/" + ref.name();
    case v1::NETWORK_POLICY:
      return "networkpolicy.networking.k8s.io/" + ref.name();
    case v1::CLUSTER_NETWORK_POLICY:
      return "clusternetworkpolicy.policy.networking.k8s.io/" + ref.name();
    case v1::NODE:
      return "node/" + ref.name();
    default:
      return "unknown/" + ref.name();
  }
}

std::string RefString(const v1::ObjectRef& ref) {
  switch (ref.kind()) {
    case v1::NAMESPACE:
      return "namespace " + ref.name();
    case v1::POD:
      return "pod " + ref.namespace_() + "/" + ref.name();
    case v1::NETWORK_POLICY:
      return "networkpolicy " + ref.namespace_() + "/" + ref.name();
    case v1::CLUSTER_NETWORK_POLICY:
      return "clusternetworkpolicy " + ref.name();
    case v1::NODE:
      return "node " + ref.name();
    default:
      return "object " + ref.namespace_() + "/" + ref.name();
  }
}

bool IsClusterScoped(v1::Kind kind) {
  return kind == v1::NAMESPACE || kind == v1::CLUSTER_NETWORK_POLICY || kind == v1::NODE;
}

std::string KeyOf(const v1::ObjectRef& ref) {
  if (IsClusterScoped(ref.kind())) return ref.name();
  return ref.namespace_() + "/" + ref.name();
}

namespace {

// One client-sent object as a Kubernetes JSON object (apiVersion, kind, int-or-string ports).
// `index` names it in errors ("items[3]").
absl::StatusOr<google::protobuf::Struct> ApiObjectToStruct(const v1::Object& o, size_t index) {
  const google::protobuf::Message* inner = nullptr;
  const char* api_version = "v1";
  const char* kind = nullptr;
  switch (o.kind_case()) {
    case v1::Object::kNamespace:
      inner = &o.namespace_();
      kind = "Namespace";
      break;
    case v1::Object::kPod:
      inner = &o.pod();
      kind = "Pod";
      break;
    case v1::Object::kNetworkPolicy:
      inner = &o.network_policy();
      kind = "NetworkPolicy";
      api_version = "networking.k8s.io/v1";
      break;
    case v1::Object::kClusterNetworkPolicy:
      inner = &o.cluster_network_policy();
      kind = "ClusterNetworkPolicy";
      api_version = kClusterNetworkPolicyApiVersion;
      break;
    case v1::Object::kNode:
      inner = &o.node();
      kind = "Node";
      break;
    case v1::Object::KIND_NOT_SET:
      return absl::InvalidArgumentError(
          absl::StrCat("items[", index,
                       "]: no object: set one of namespace, pod, networkPolicy, "
                       "clusterNetworkPolicy, node"));
  }
  google::protobuf::util::JsonPrintOptions print;
  std::string json;
  auto st = google::protobuf::util::MessageToJsonString(*inner, &json, print);
  if (!st.ok()) return absl::InternalError(std::string(st.message()));
  google::protobuf::Struct s;
  st = google::protobuf::util::JsonStringToMessage(json, &s);
  if (!st.ok()) return absl::InternalError(std::string(st.message()));
  (*s.mutable_fields())["apiVersion"].set_string_value(api_version);
  (*s.mutable_fields())["kind"].set_string_value(kind);
  auto spec = s.mutable_fields()->find("spec");
  if (o.kind_case() == v1::Object::kNetworkPolicy && spec != s.mutable_fields()->end() &&
      spec->second.has_struct_value()) {
    FixPorts(spec->second.mutable_struct_value(), "ingress");
    FixPorts(spec->second.mutable_struct_value(), "egress");
  }
  return s;
}

}  // namespace

absl::StatusOr<std::string> ApiObjectsToJson(const std::vector<const v1::Object*>& objects) {
  google::protobuf::Struct list;
  (*list.mutable_fields())["apiVersion"].set_string_value("v1");
  (*list.mutable_fields())["kind"].set_string_value("List");
  google::protobuf::ListValue* items = (*list.mutable_fields())["items"].mutable_list_value();
  for (size_t i = 0; i < objects.size(); ++i) {
    ASSIGN_OR_RETURN(google::protobuf::Struct s, ApiObjectToStruct(*objects[i], i));
    *items->add_values()->mutable_struct_value() = std::move(s);
  }
  std::string out;
  auto st = google::protobuf::util::MessageToJsonString(list, &out,
                                                         google::protobuf::util::JsonPrintOptions());
  if (!st.ok()) return absl::InternalError(std::string(st.message()));
  return out;
}

absl::StatusOr<std::vector<Object>> ParseApiObjects(
    const google::protobuf::RepeatedPtrField<v1::Object>& objects, const std::string& source) {
  if (objects.empty()) return std::vector<Object>{};
  // One JSON document per object ("---" between them): the loader holds one document's node
  // tree at a time, and an error before an object is identified names "document <i + 1>".
  std::string stream;
  for (int i = 0; i < objects.size(); ++i) {
    absl::StatusOr<google::protobuf::Struct> s = ApiObjectToStruct(objects[i], i);
    if (!s.ok()) {
      return absl::Status(s.status().code(), absl::StrCat(source, ": ", s.status().message()));
    }
    std::string json;
    auto st = google::protobuf::util::MessageToJsonString(*s, &json,
                                                           google::protobuf::util::JsonPrintOptions());
    if (!st.ok()) return absl::InternalError(std::string(st.message()));
    absl::StrAppend(&stream, "---\n", json, "\n");
  }
  LoadOptions options;
  options.source = source;
  // This JSON is our rendering of objects the request already carried, not a manifest: the
  // request's own bounds apply (the server's kMaxRequestBytes and kMaxObjectsPerRequest), not
  // the loader's limit on a manifest's text.
  options.max_bytes = std::numeric_limits<size_t>::max();
  ASSIGN_OR_RETURN(LoadResult loaded, LoadYaml(stream, options));
  return std::move(loaded.objects);
}

absl::StatusOr<Object> FromApiTrusted(const v1::Object& object) {
  absl::StatusOr<Object> o = FromApiTrustedInner(object);
  if (o.ok()) return o;
  std::string who = "object";
  if (object.has_namespace_()) who = "namespace " + object.namespace_().metadata().name();
  if (object.has_pod()) {
    who = "pod " + object.pod().metadata().namespace_() + "/" + object.pod().metadata().name();
  }
  if (object.has_network_policy()) {
    who = "networkpolicy " + object.network_policy().metadata().namespace_() + "/" +
          object.network_policy().metadata().name();
  }
  if (object.has_cluster_network_policy()) {
    who = "clusternetworkpolicy " + object.cluster_network_policy().metadata().name();
  }
  if (object.has_node()) who = "node " + object.node().metadata().name();
  return absl::DataLossError(absl::StrCat(who, ": ", o.status().message()));
}

}  // namespace netpol::api
