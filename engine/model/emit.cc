// Writing objects back as Kubernetes-shaped YAML (see loader.h, ToYaml).
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "engine/model/loader.h"
#include "engine/model/yaml_scalar.h"

namespace netpol {
namespace {

// Strings that a YAML 1.1 reader would take for something else are double-quoted.
void EmitString(YAML::Emitter& e, const std::string& s) {
  if (yaml11::ResolvePlain(s) != yaml11::ScalarType::kString) {
    e << YAML::DoubleQuoted << s;
  } else {
    e << s;
  }
}

void EmitKey(YAML::Emitter& e, const char* key) { e << YAML::Key << key << YAML::Value; }

void EmitLabels(YAML::Emitter& e, const Labels& labels) {
  if (labels.empty()) {
    e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  e << YAML::BeginMap;
  for (const auto& [k, v] : labels) {
    e << YAML::Key;
    EmitString(e, k);
    e << YAML::Value;
    EmitString(e, v);
  }
  e << YAML::EndMap;
}

void EmitMeta(YAML::Emitter& e, const std::string& name, const std::string* ns,
              const Labels& labels, const Labels& annotations = {}) {
  EmitKey(e, "metadata");
  e << YAML::BeginMap;
  EmitKey(e, "name");
  EmitString(e, name);
  if (ns != nullptr) {
    EmitKey(e, "namespace");
    EmitString(e, *ns);
  }
  if (!labels.empty()) {
    EmitKey(e, "labels");
    EmitLabels(e, labels);
  }
  if (!annotations.empty()) {
    EmitKey(e, "annotations");
    EmitLabels(e, annotations);
  }
  e << YAML::EndMap;
}

void EmitSelector(YAML::Emitter& e, const LabelSelector& s) {
  if (s.Empty()) {
    e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  e << YAML::BeginMap;
  if (!s.match_labels.empty()) {
    EmitKey(e, "matchLabels");
    EmitLabels(e, s.match_labels);
  }
  if (!s.match_expressions.empty()) {
    EmitKey(e, "matchExpressions");
    e << YAML::BeginSeq;
    for (const LabelSelectorRequirement& r : s.match_expressions) {
      e << YAML::BeginMap;
      EmitKey(e, "key");
      EmitString(e, r.key);
      EmitKey(e, "operator");
      switch (r.op) {
        case LabelSelectorRequirement::Op::kIn:
          e << "In";
          break;
        case LabelSelectorRequirement::Op::kNotIn:
          e << "NotIn";
          break;
        case LabelSelectorRequirement::Op::kExists:
          e << "Exists";
          break;
        case LabelSelectorRequirement::Op::kDoesNotExist:
          e << "DoesNotExist";
          break;
      }
      if (!r.values.empty()) {
        EmitKey(e, "values");
        e << YAML::BeginSeq;
        for (const std::string& v : r.values) EmitString(e, v);
        e << YAML::EndSeq;
      }
      e << YAML::EndMap;
    }
    e << YAML::EndSeq;
  }
  e << YAML::EndMap;
}

void EmitRules(YAML::Emitter& e, const char* field, const char* peers_field,
               const std::vector<Rule>& rules) {
  if (rules.empty()) return;
  EmitKey(e, field);
  e << YAML::BeginSeq;
  for (const Rule& r : rules) {
    if (r.ports.empty() && r.peers.empty()) {
      e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
      continue;
    }
    e << YAML::BeginMap;
    if (!r.peers.empty()) {
      EmitKey(e, peers_field);
      e << YAML::BeginSeq;
      for (const Peer& peer : r.peers) {
        e << YAML::BeginMap;
        if (peer.pod_selector) {
          EmitKey(e, "podSelector");
          EmitSelector(e, *peer.pod_selector);
        }
        if (peer.namespace_selector) {
          EmitKey(e, "namespaceSelector");
          EmitSelector(e, *peer.namespace_selector);
        }
        if (peer.ip_block) {
          EmitKey(e, "ipBlock");
          e << YAML::BeginMap;
          EmitKey(e, "cidr");
          e << peer.ip_block->cidr.ToString();
          if (!peer.ip_block->except.empty()) {
            EmitKey(e, "except");
            e << YAML::BeginSeq;
            for (const Cidr& c : peer.ip_block->except) e << c.ToString();
            e << YAML::EndSeq;
          }
          e << YAML::EndMap;
        }
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
    }
    if (!r.ports.empty()) {
      EmitKey(e, "ports");
      e << YAML::BeginSeq;
      for (const PolicyPort& p : r.ports) {
        e << YAML::BeginMap;
        EmitKey(e, "protocol");
        e << ProtocolName(p.protocol);
        if (p.port) {
          EmitKey(e, "port");
          e << *p.port;
        } else if (p.named_port) {
          EmitKey(e, "port");
          EmitString(e, *p.named_port);
        }
        if (p.end_port) {
          EmitKey(e, "endPort");
          e << *p.end_port;
        }
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
    }
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
}

void EmitNamespacedPod(YAML::Emitter& e, const NamespacedPod& p) {
  e << YAML::BeginMap;
  EmitKey(e, "namespaceSelector");
  EmitSelector(e, p.namespace_selector);
  EmitKey(e, "podSelector");
  EmitSelector(e, p.pod_selector);
  e << YAML::EndMap;
}

void EmitCnpPeer(YAML::Emitter& e, const CnpPeer& peer) {
  e << YAML::BeginMap;
  if (peer.namespaces) {
    EmitKey(e, "namespaces");
    EmitSelector(e, *peer.namespaces);
  } else if (peer.pods) {
    EmitKey(e, "pods");
    EmitNamespacedPod(e, *peer.pods);
  } else if (peer.nodes) {
    EmitKey(e, "nodes");
    EmitSelector(e, *peer.nodes);
  } else if (!peer.networks.empty()) {
    EmitKey(e, "networks");
    e << YAML::BeginSeq;
    for (const Cidr& c : peer.networks) e << c.ToString();
    e << YAML::EndSeq;
  }
  e << YAML::EndMap;
}

const char* ProtocolField(Protocol p) {
  switch (p) {
    case Protocol::kTCP:
      return "tcp";
    case Protocol::kUDP:
      return "udp";
    case Protocol::kSCTP:
      return "sctp";
  }
  return "tcp";
}

void EmitCnpRules(YAML::Emitter& e, const char* field, const char* peers_field,
                  const std::vector<CnpRule>& rules) {
  if (rules.empty()) return;
  EmitKey(e, field);
  e << YAML::BeginSeq;
  for (const CnpRule& r : rules) {
    e << YAML::BeginMap;
    if (!r.name.empty()) {
      EmitKey(e, "name");
      EmitString(e, r.name);
    }
    EmitKey(e, "action");
    e << CnpActionName(r.action);
    EmitKey(e, peers_field);
    e << YAML::BeginSeq;
    for (const CnpPeer& peer : r.peers) EmitCnpPeer(e, peer);
    e << YAML::EndSeq;
    if (!r.ports.empty()) {
      EmitKey(e, "protocols");
      e << YAML::BeginSeq;
      for (const CnpPort& p : r.ports) {
        e << YAML::BeginMap;
        if (p.named_port) {
          EmitKey(e, "destinationNamedPort");
          EmitString(e, *p.named_port);
        } else {
          EmitKey(e, ProtocolField(p.protocol.value_or(Protocol::kTCP)));
          e << YAML::BeginMap;
          EmitKey(e, "destinationPort");
          e << YAML::BeginMap;
          if (p.end_port == 0) {
            EmitKey(e, "number");
            e << p.port;
          } else {
            EmitKey(e, "range");
            e << YAML::BeginMap;
            EmitKey(e, "start");
            e << p.port;
            EmitKey(e, "end");
            e << p.end_port;
            e << YAML::EndMap;
          }
          e << YAML::EndMap;
          e << YAML::EndMap;
        }
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
    }
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
}

void EmitObject(YAML::Emitter& e, const Object& object) {
  e << YAML::BeginMap;
  if (const Namespace* ns = object.AsNamespace()) {
    EmitKey(e, "apiVersion");
    e << "v1";
    EmitKey(e, "kind");
    e << "Namespace";
    EmitMeta(e, ns->name, nullptr, ns->labels);
  } else if (const Pod* pod = object.AsPod()) {
    EmitKey(e, "apiVersion");
    e << "v1";
    EmitKey(e, "kind");
    e << "Pod";
    EmitMeta(e, pod->name, &pod->namespace_name, pod->labels);
    EmitKey(e, "spec");
    e << YAML::BeginMap;
    if (!pod->node_name.empty()) {
      EmitKey(e, "nodeName");
      EmitString(e, pod->node_name);
    }
    if (pod->host_network) {
      EmitKey(e, "hostNetwork");
      e << true;
    }
    EmitKey(e, "containers");
    e << YAML::BeginSeq << YAML::BeginMap;
    EmitKey(e, "name");
    e << "main";
    if (!pod->ports.empty()) {
      EmitKey(e, "ports");
      e << YAML::BeginSeq;
      for (const ContainerPort& p : pod->ports) {
        e << YAML::BeginMap;
        if (!p.name.empty()) {
          EmitKey(e, "name");
          EmitString(e, p.name);
        }
        EmitKey(e, "containerPort");
        e << p.container_port;
        EmitKey(e, "protocol");
        e << ProtocolName(p.protocol);
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
    }
    e << YAML::EndMap << YAML::EndSeq;
    e << YAML::EndMap;
    if (!pod->ips.empty()) {
      EmitKey(e, "status");
      e << YAML::BeginMap;
      EmitKey(e, "podIP");
      e << pod->ips.front().ToString();
      EmitKey(e, "podIPs");
      e << YAML::BeginSeq;
      for (const IpAddr& ip : pod->ips) {
        e << YAML::BeginMap;
        EmitKey(e, "ip");
        e << ip.ToString();
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
      e << YAML::EndMap;
    }
  } else if (const NetworkPolicy* np = object.AsNetworkPolicy()) {
    EmitKey(e, "apiVersion");
    e << "networking.k8s.io/v1";
    EmitKey(e, "kind");
    e << "NetworkPolicy";
    Labels annotations;
    if (np->log_allowed) annotations[kLogAllowedAnnotation] = "true";
    EmitMeta(e, np->name, &np->namespace_name, {}, annotations);
    EmitKey(e, "spec");
    e << YAML::BeginMap;
    EmitKey(e, "podSelector");
    EmitSelector(e, np->pod_selector);
    EmitKey(e, "policyTypes");
    e << YAML::Flow << YAML::BeginSeq;
    if (np->ingress_type) e << "Ingress";
    if (np->egress_type) e << "Egress";
    e << YAML::EndSeq;
    EmitRules(e, "ingress", "from", np->ingress);
    EmitRules(e, "egress", "to", np->egress);
    e << YAML::EndMap;
  } else if (const ClusterNetworkPolicy* cnp = object.AsClusterNetworkPolicy()) {
    EmitKey(e, "apiVersion");
    e << kClusterNetworkPolicyApiVersion;
    EmitKey(e, "kind");
    e << "ClusterNetworkPolicy";
    EmitMeta(e, cnp->name, nullptr, {});
    EmitKey(e, "spec");
    e << YAML::BeginMap;
    EmitKey(e, "tier");
    e << CnpTierName(cnp->tier);
    EmitKey(e, "priority");
    e << cnp->priority;
    EmitKey(e, "subject");
    EmitCnpPeer(e, cnp->subject);
    EmitCnpRules(e, "ingress", "from", cnp->ingress);
    EmitCnpRules(e, "egress", "to", cnp->egress);
    e << YAML::EndMap;
  } else if (const Node* node = object.AsNode()) {
    EmitKey(e, "apiVersion");
    e << "v1";
    EmitKey(e, "kind");
    e << "Node";
    EmitMeta(e, node->name, nullptr, node->labels);
    if (!node->ips.empty()) {
      EmitKey(e, "status");
      e << YAML::BeginMap;
      EmitKey(e, "addresses");
      e << YAML::BeginSeq;
      for (const IpAddr& ip : node->ips) {
        e << YAML::BeginMap;
        EmitKey(e, "type");
        e << "InternalIP";
        EmitKey(e, "address");
        e << ip.ToString();
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
      e << YAML::EndMap;
    }
  }
  e << YAML::EndMap;
}

}  // namespace

std::string ToYaml(const Object& object) {
  YAML::Emitter e;
  EmitObject(e, object);
  std::string out = e.c_str();
  out += "\n";
  return out;
}

std::string ToYaml(const std::vector<Object>& objects) {
  std::string out;
  for (size_t i = 0; i < objects.size(); ++i) {
    if (i > 0) out += "---\n";
    out += ToYaml(objects[i]);
  }
  return out;
}

}  // namespace netpol