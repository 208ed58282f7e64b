// Small behaviour of the model value types.
#include "engine/model/model.h"

namespace netpol {

const char* ProtocolName(Protocol p) {
  switch (p) {
    case Protocol::kTCP:
      return "TCP";
    case Protocol::kUDP:
      return "UDP";
    case Protocol::kSCTP:
      return "SCTP";
  }
  return "UNKNOWN";  // not reachable for values built by the loader
}

const char* CnpTierName(CnpTier t) { return t == CnpTier::kAdmin ? "Admin" : "Baseline"; }

const char* CnpActionName(CnpAction a) {
  switch (a) {
    case CnpAction::kAccept:
      return "Accept";
    case CnpAction::kDeny:
      return "Deny";
    case CnpAction::kPass:
      return "Pass";
  }
  return "UNKNOWN";
}

std::string EndPortProblem(const PolicyPort& p) {
  if (!p.end_port) return "";
  if (!p.port) return "may only be used with a numeric port";
  if (*p.end_port < *p.port) return "must be >= port";
  if (*p.end_port > 65535) return "must be between 1 and 65535";
  return "";
}

std::optional<int32_t> Pod::ResolvePort(const std::string& name, Protocol protocol) const {
  if (name.empty()) return std::nullopt;
  for (const ContainerPort& p : ports) {
    if (p.name == name && p.protocol == protocol) return p.container_port;
  }
  return std::nullopt;
}

const Namespace* State::FindNamespace(const std::string& name) const {
  const auto* e = namespaces.Lookup(name);
  return e == nullptr ? nullptr : &e->second;
}

const Pod* State::FindPod(const std::string& key) const {
  const auto* e = pods.Lookup(key);
  return e == nullptr ? nullptr : &e->second;
}

// Linear in the number of pods: State keeps no address index so that it stays a plain value.
// Callers that look up many addresses should build their own map.
const Pod* State::FindPodByIp(const IpAddr& a) const {
  for (const auto& [key, pod] : pods) {
    if (pod.host_network) continue;
    for (const IpAddr& ip : pod.ips) {
      if (ip == a) return &pod;
    }
  }
  return nullptr;
}

}  // namespace netpol
